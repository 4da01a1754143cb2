/* brigade plan: search how to train a model on some devices, write the plan, and print its review. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "brigade.h"
#include "cli.h"

int brg_cmd_plan(int argc, char **argv);

static const char *const command = "plan";

typedef struct plan_args {
    const char *model;
    const char *xml, *cluster, *preset;
    const char *profile;
    const char *output, *report, *trace;
    int quiet;
    int cpu; /* this machine's cores as the devices, even where it has GPUs */
    brg_plan_options opts;
    brg_model_config model_cfg; /* --model, parsed */
    char preset_name[64];       /* --preset NODE[:COUNT], parsed */
    long preset_count;
} plan_args;

static void usage(FILE *f) {
    fprintf(f,
            "usage: brigade plan --model SPEC [--xml F | --cluster F | --preset NODE[:COUNT]] --global-batch N\n"
            "                    -o plan.json [--report report.md] [--trace FILE] [search flags]\n"
            "\n"
            "Searches how to train a model on every device of a topology: pipeline stages (p) x data-parallel\n"
            "replicas (d) x tensor-parallel devices (t), micro-batch size and count, schedule, recomputation per\n"
            "stage, the cut points between stages and which devices hold which stage. Every candidate is scored by\n"
            "simulating the instruction streams the runtime executes. Prints the review: the plan, the predicted\n"
            "iteration, what binds, every stage's layers, devices, memory and times, and the plan beside the\n"
            "splits users would otherwise pick.\n"
            "\n"
            "where:\n"
            "  --model SPEC          a preset (gpt2-xl, gpt3-175b, ...) or FAMILY:key=value,... (as brigade train)\n"
            "  --xml FILE            an hwloc XML topology of one machine\n"
            "  --cluster FILE        a cluster description (docs/cluster.md)\n"
            "  --preset NODE[:N]     N nodes (default 1) of a node preset, e.g. dgx-h100:128 (brigade topo --list-presets)\n"
            "                        without any of the three: this machine (its GPUs, else its cores)\n"
            "  --cpu                 this machine's cores as the devices, even where it has GPUs\n"
            "\n"
            "what:\n"
            "  --global-batch N      samples per optimizer step (required): d x micro-batch x micro-batches\n"
            "  -o, --output FILE     where to write the plan (JSON, docs/plan.md); brigade train --plan runs it\n"
            "  --report FILE         also write the review as Markdown, with SVG pictures beside it\n"
            "                        (FILE-gantt.svg, FILE-memory.svg, FILE-placement.svg, named after FILE)\n"
            "  --trace FILE          the predicted timeline of one step as Chrome trace JSON (as brigade train --trace)\n"
            "  --quiet               print only where the files went\n"
            "\n"
            "search (each defaults to searching it):\n"
            "  --tp N|auto           devices of one tensor-parallel group (each stage of each replica split over N\n"
            "                        devices of one node, Megatron-LM's tensor parallelism); auto: the divisors of\n"
            "                        the devices per node, weighed by the search (default)\n"
            "  --sp 0|1|auto         sequence parallelism with tensor parallelism: the positions split between the\n"
            "                        split ops too (default auto: weighed by the search)\n"
            "  --pp N                pipeline stages\n"
            "  --dp N                data-parallel replicas (t x p x d = the devices)\n"
            "  --zero 0|1|auto       ZeRO-1, AdamW moments split across the replicas: off, on, or weighed by the\n"
            "                        search against its extra all-gather (default auto)\n"
            "  --micro-batch B       samples per micro-batch\n"
            "  --schedule KIND       auto, gpipe, 1f1b, interleaved or zb-h1\n"
            "  --chunks V            virtual stages per stage (interleaved)\n"
            "  --recompute POLICY    auto (per stage, the cheapest that fits), none, selective or full\n"
            "  --precision P         auto (bf16 on GPUs that have it), fp32, tf32, bf16 or fp16\n"
            "  --profile FILE        measured layer times (brigade profile) for the devices they were measured on\n"
            "\n"
            "model:\n"
            "  --compute-efficiency X  share of peak FLOP/s GEMMs reach (default 0.7)\n"
            "  --memory-efficiency X   share of memory bandwidth (default 0.8)\n"
            "  --headroom X            share of device memory kept free (default 0.05)\n"
            "  --reserve GB            memory per device for the runtime's context and libraries (default 1 GiB on\n"
            "                          GPUs, 0 on CPU devices)\n"
            "  --alternatives N        next-best plans to show (default 3)\n"
            "  --topology-blind        place stages in device order instead of searching placements\n"
            "  -h, --help              this help\n"
            "\n"
            "Exit status: 0 a plan was written, 1 no plan fits (the message says which stage is short by how\n"
            "much and what change would fit), 2 bad flags or input files.\n");
}

static int parse_args(int argc, char **argv, plan_args *a) {
    brg_plan_options defaults = BRG_PLAN_OPTIONS_INIT;
    a->opts = defaults;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i], *v = NULL;
        int64_t n;
        double x;
        if (brg_cli_is_help(flag)) {
            usage(stdout);
            return -1;
        }
#define VALUE() \
    if (!(v = brg_cli_value(command, argc, argv, &i))) return BRG_EXIT_USAGE
        if (strcmp(flag, "--model") == 0) {
            VALUE();
            a->model = v;
        } else if (strcmp(flag, "--xml") == 0) {
            VALUE();
            a->xml = v;
        } else if (strcmp(flag, "--cluster") == 0) {
            VALUE();
            a->cluster = v;
        } else if (strcmp(flag, "--preset") == 0) {
            VALUE();
            a->preset = v;
        } else if (strcmp(flag, "--profile") == 0) {
            VALUE();
            a->profile = v;
        } else if (strcmp(flag, "-o") == 0 || strcmp(flag, "--output") == 0) {
            VALUE();
            a->output = v;
        } else if (strcmp(flag, "--report") == 0) {
            VALUE();
            a->report = v;
        } else if (strcmp(flag, "--trace") == 0) {
            VALUE();
            a->trace = v;
        } else if (strcmp(flag, "--quiet") == 0) {
            a->quiet = 1;
        } else if (strcmp(flag, "--cpu") == 0) {
            a->cpu = 1;
        } else if (strcmp(flag, "--global-batch") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, INT64_C(1) << 40, &a->opts.global_batch)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--pp") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, BRG_TOPOLOGY_MAX_DEVICES, &n)) return BRG_EXIT_USAGE;
            a->opts.pipeline_stages = (int)n;
        } else if (strcmp(flag, "--tp") == 0) {
            VALUE();
            if (strcmp(v, "auto") == 0) {
                a->opts.tensor_parallel = BRG_PLAN_AUTO;
            } else if (v[0] < '0' || v[0] > '9') {
                fprintf(stderr, "brigade plan: --tp takes a whole number from 1 to %d or auto, not '%s'\n",
                        BRG_TOPOLOGY_MAX_DEVICES, v);
                return BRG_EXIT_USAGE;
            } else if (brg_cli_int64(command, flag, v, 1, BRG_TOPOLOGY_MAX_DEVICES, &n)) {
                return BRG_EXIT_USAGE;
            } else {
                a->opts.tensor_parallel = (int)n;
            }
        } else if (strcmp(flag, "--sp") == 0) {
            VALUE();
            static const char *const choices[3] = {"0", "1", "auto"};
            int k = 0;
            if (brg_cli_choice(command, flag, v, choices, 3, &k)) return BRG_EXIT_USAGE;
            a->opts.sequence_parallel = k == 2 ? BRG_PLAN_SEQUENCE_PARALLEL_AUTO : k;
        } else if (strcmp(flag, "--dp") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, BRG_TOPOLOGY_MAX_DEVICES, &n)) return BRG_EXIT_USAGE;
            a->opts.data_parallel = (int)n;
        } else if (strcmp(flag, "--zero") == 0) {
            VALUE();
            static const char *const zeros[3] = {"0", "1", "auto"};
            int k = 0;
            if (brg_cli_choice(command, flag, v, zeros, 3, &k)) return BRG_EXIT_USAGE;
            a->opts.zero = k == 2 ? BRG_PLAN_ZERO_AUTO : k;
        } else if (strcmp(flag, "--micro-batch") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, INT64_C(1) << 40, &a->opts.micro_batch)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--chunks") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, 16, &n)) return BRG_EXIT_USAGE;
            a->opts.chunks = (int)n;
        } else if (strcmp(flag, "--schedule") == 0) {
            VALUE();
            brg_schedule_kind kind;
            if (strcmp(v, "auto") == 0)
                a->opts.schedule = BRG_PLAN_SCHEDULE_AUTO;
            else if (brg_cli_schedule(command, flag, v, 1, &kind))
                return BRG_EXIT_USAGE;
            else
                a->opts.schedule = (int)kind;
        } else if (strcmp(flag, "--recompute") == 0) {
            VALUE();
            static const char *const names[] = {"auto", "none", "full", "selective"};
            int k;
            if (brg_cli_choice(command, flag, v, names, 4, &k)) return BRG_EXIT_USAGE;
            a->opts.recompute = k - 1; /* "auto" is -1 */
        } else if (strcmp(flag, "--precision") == 0) {
            VALUE();
            static const char *const names[] = {"auto", "fp32", "tf32", "bf16", "fp16"};
            int k;
            if (brg_cli_choice(command, flag, v, names, 5, &k)) return BRG_EXIT_USAGE;
            a->opts.precision = k - 1; /* "auto" is -1 */
        } else if (strcmp(flag, "--compute-efficiency") == 0) {
            VALUE();
            if (brg_cli_double(command, flag, v, 0.01, 1.0, &x)) return BRG_EXIT_USAGE;
            a->opts.compute_efficiency = x;
        } else if (strcmp(flag, "--memory-efficiency") == 0) {
            VALUE();
            if (brg_cli_double(command, flag, v, 0.01, 1.0, &x)) return BRG_EXIT_USAGE;
            a->opts.memory_efficiency = x;
        } else if (strcmp(flag, "--headroom") == 0) {
            VALUE();
            if (brg_cli_double(command, flag, v, 0.0, 0.9, &x)) return BRG_EXIT_USAGE;
            a->opts.memory_headroom = x;
        } else if (strcmp(flag, "--reserve") == 0) {
            VALUE();
            if (brg_cli_double(command, flag, v, 0.0, 1e6, &x)) return BRG_EXIT_USAGE;
            a->opts.memory_reserve_bytes = (int64_t)(x * 1e9);
        } else if (strcmp(flag, "--alternatives") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 0, 16, &n)) return BRG_EXIT_USAGE;
            a->opts.alternatives = (int)n;
        } else if (strcmp(flag, "--topology-blind") == 0) {
            a->opts.flags |= BRG_PLAN_TOPOLOGY_BLIND;
        } else {
            return brg_cli_unknown_flag(command, flag);
        }
#undef VALUE
    }
    if (!a->model) {
        fprintf(stderr, "brigade plan: --model is required (see 'brigade plan --help')\n");
        return BRG_EXIT_USAGE;
    }
    if (!a->opts.global_batch) {
        fprintf(stderr, "brigade plan: --global-batch is required: the samples of one optimizer step\n");
        return BRG_EXIT_USAGE;
    }
    if (!a->output) {
        fprintf(stderr, "brigade plan: -o FILE is required: where to write the plan\n");
        return BRG_EXIT_USAGE;
    }
    if ((a->xml != NULL) + (a->cluster != NULL) + (a->preset != NULL) > 1) {
        fprintf(stderr, "brigade plan: give one of --xml, --cluster and --preset\n");
        return BRG_EXIT_USAGE;
    }
    return 0;
}

/* "dgx-h100:128" -> the node preset's name and the node count; an error message otherwise. */
static brg_status parse_preset(const char *text, plan_args *a, brg_error *err) {
    a->preset_count = 1;
    const char *colon = strchr(text, ':');
    size_t len = colon ? (size_t)(colon - text) : strlen(text);
    if (len == 0 || len >= sizeof a->preset_name) {
        snprintf(err->message, sizeof err->message, "--preset takes NODE[:COUNT], e.g. dgx-h100:16, not '%s'", text);
        return BRG_ERR_PARSE;
    }
    memcpy(a->preset_name, text, len);
    a->preset_name[len] = '\0';
    if (colon) {
        char *end = NULL;
        a->preset_count = strtol(colon + 1, &end, 10);
        if (!end || end == colon + 1 || *end || a->preset_count < 1 || a->preset_count > BRG_TOPOLOGY_MAX_DEVICES) {
            snprintf(err->message, sizeof err->message, "--preset: the node count in '%s' must be 1 to %d", text,
                     BRG_TOPOLOGY_MAX_DEVICES);
            return BRG_ERR_PARSE;
        }
    }
    if (!brg_node_preset_find(a->preset_name)) {
        int used = snprintf(err->message, sizeof err->message, "--preset: unknown node preset '%s' (known:",
                            a->preset_name);
        for (int i = 0; i < brg_node_preset_count() && used > 0 && (size_t)used < sizeof err->message; i++)
            used += snprintf(err->message + used, sizeof err->message - (size_t)used, " %s", brg_node_preset_at(i)->name);
        if (used > 0 && (size_t)used < sizeof err->message)
            snprintf(err->message + used, sizeof err->message - (size_t)used, ")");
        return BRG_ERR_NAME;
    }
    return BRG_OK;
}

/* A cluster description of the preset's nodes (parse_preset has checked them). */
static brg_status load_preset(const plan_args *a, brg_topology **out, brg_error *err) {
    char json[256];
    snprintf(json, sizeof json, "{\"version\": 1, \"node_groups\": [{\"preset\": \"%s\", \"count\": %ld}]}",
             a->preset_name, a->preset_count);
    return brg_topology_load_cluster_string(out, json, NULL, NULL, err);
}

/* The parse step: the flags, the model specification and --preset. -1: the help was printed; else 0 or an
 * exit code. */
static int parse_command(int argc, char **argv, plan_args *a) {
    int rc = parse_args(argc, argv, a);
    if (rc != 0) return rc;
    brg_error err = {0};
    if (brg_model_parse(a->model, &a->model_cfg, &err) != BRG_OK) {
        fprintf(stderr, "brigade plan: --model: %s\n", err.message);
        return BRG_EXIT_USAGE;
    }
    if (a->preset && parse_preset(a->preset, a, &err) != BRG_OK) {
        fprintf(stderr, "brigade plan: %s\n", err.message);
        return BRG_EXIT_USAGE;
    }
    return 0;
}

int brg_cmd_plan_parse(int argc, char **argv) {
    plan_args a = {0};
    int rc = parse_command(argc, argv, &a);
    return rc < 0 ? BRG_EXIT_OK : rc;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int brg_cmd_plan(int argc, char **argv) {
    plan_args a = {0};
    int rc = parse_command(argc, argv, &a);
    if (rc != 0) return rc < 0 ? BRG_EXIT_OK : rc;
    brg_error err = {0};
    brg_model_config cfg = a.model_cfg;
    brg_graph *g = NULL;
    brg_topology *t = NULL;
    brg_profile *profile = NULL;
    brg_plan *plan = NULL;
    if (brg_model_build(&cfg, &g, &err) != BRG_OK) {
        fprintf(stderr, "brigade plan: building %s: %s\n", cfg.name, err.message);
        return BRG_EXIT_FAILURE;
    }
    brg_status s;
    double t0 = now_seconds();
    if (a.xml) s = brg_topology_load_xml(&t, a.xml, NULL, &err);
    else if (a.cluster) s = brg_topology_load_cluster(&t, a.cluster, NULL, &err);
    else if (a.preset) s = load_preset(&a, &t, &err);
    else {
        brg_topology_options to = BRG_TOPOLOGY_OPTIONS_INIT;
        if (a.cpu) to.flags |= BRG_TOPOLOGY_IGNORE_GPUS;
        s = brg_topology_load_live(&t, &to, &err);
    }
    double t1 = now_seconds();
    if (s != BRG_OK) {
        fprintf(stderr, "brigade plan: %s%s\n", a.xml ? "--xml: " : a.cluster ? "--cluster: " : "", err.message);
        rc = a.xml || a.cluster || a.preset ? BRG_EXIT_USAGE : BRG_EXIT_FAILURE;
        goto done;
    }
    if (a.profile && brg_profile_load(a.profile, &profile, &err) != BRG_OK) {
        fprintf(stderr, "brigade plan: --profile: %s\n", err.message);
        rc = BRG_EXIT_USAGE;
        goto done;
    }
    a.opts.profile = profile;
    a.opts.model_name = cfg.name;
    char topology_name[256];
    if (a.preset) {
        /* "dgx-h100:16" -> "dgx-h100 node preset x 16" */
        const char *colon = strchr(a.preset, ':');
        int len = colon ? (int)(colon - a.preset) : (int)strlen(a.preset);
        snprintf(topology_name, sizeof topology_name, "%.*s node preset x %s", len, a.preset, colon ? colon + 1 : "1");
        a.opts.topology_name = topology_name;
    }
    a.opts.model_flops_per_sample = brg_model_flops_per_token(&cfg) * (double)cfg.seq;
    s = brg_plan_search(g, t, &a.opts, &plan, &err);
    double t2 = now_seconds();
    if (s != BRG_OK) {
        fprintf(stderr, "brigade plan: %s\n", err.message);
        rc = s == BRG_ERR_INVALID_ARGUMENT || s == BRG_ERR_MISMATCH ? BRG_EXIT_USAGE : BRG_EXIT_FAILURE;
        goto done;
    }
    if (!a.quiet) {
        char *text = NULL;
        if (brg_plan_report_text(plan, &text) == BRG_OK) fputs(text, stdout);
        free(text);
        printf("topology loaded in %.3f s; search %.3f s\n", t1 - t0, t2 - t1);
    }
    if (brg_plan_save(plan, a.output, &err) != BRG_OK) {
        fprintf(stderr, "brigade plan: -o: %s\n", err.message);
        rc = BRG_EXIT_FAILURE;
        goto done;
    }
    printf("plan: %s (run it with brigade train --model %s --plan %s)\n", a.output, cfg.name, a.output);
    if (a.report) {
        if (brg_plan_write_report(plan, a.report, &err) != BRG_OK) {
            fprintf(stderr, "brigade plan: --report: %s\n", err.message);
            rc = BRG_EXIT_FAILURE;
            goto done;
        }
        printf("report: %s, with its pictures beside it as SVG files (view it in any Markdown previewer, e.g. on "
               "GitHub or in VS Code; the .svg files open in a browser)\n",
               a.report);
    }
    if (a.trace) {
        if (brg_plan_write_trace(plan, a.trace, &err) != BRG_OK) {
            fprintf(stderr, "brigade plan: --trace: %s\n", err.message);
            rc = BRG_EXIT_FAILURE;
            goto done;
        }
        printf("predicted timeline: %s (open it in https://ui.perfetto.dev or chrome://tracing)\n", a.trace);
    }
done:
    brg_plan_destroy(plan);
    brg_profile_destroy(profile);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
    return rc;
}
