/* brigade bench: train a few steps of a model on a device and report its throughput: tokens/s, the model
 * FLOP/s achieved and the model FLOPs utilization (MFU) against the device's dense peak. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "brigade.h"
#include "brigade/train.h"
#include "brigade_config.h"
#include "cli.h"
#if BRG_HAVE_CUDA
#include "cuda/cuda.h"
#endif

static const char *const command = "bench";

typedef struct bench_args {
    const char *model;
    const char *json;
    int64_t steps, warmup;
    double peak_tflops; /* 0: the device's */
    brg_train_options opts;
    brg_model_config model_cfg; /* --model, parsed */
} bench_args;

static void usage(FILE *f) {
    fprintf(f,
            "usage: brigade bench [--model SPEC] [flags]\n"
            "\n"
            "Trains a model for a few steps on synthetic data and reports its throughput: tokens/s, the\n"
            "TFLOP/s of model FLOPs achieved (6 N + 6 L C T per token for gpt, as llm.c counts them; forward\n"
            "and backward, recomputation not counted) and the MFU, those FLOP/s over the dense peak of the\n"
            "devices the stages run on: for CUDA the GPU's preset (989 TFLOP/s bf16 for H100 and H200 SXM),\n"
            "for the CPU this machine's sgemm rate, measured on every core.\n"
            "\n"
            "flags:\n"
            "  --model SPEC          a preset or FAMILY:key=value,... as for brigade train (default gpt2-small)\n"
            "  --device KIND         cpu or cuda (default cpu)\n"
            "  --dtype TYPE          fp32, or bf16 on cuda (default fp32)\n"
            "  --micro-batch B       samples per micro-batch (default 4)\n"
            "  --micro-batches M     micro-batches per step (default 1)\n"
            "  --pp N                pipeline stages (default 1); --schedule KIND as for brigade train\n"
            "  --steps N             timed steps (default 5)\n"
            "  --warmup N            steps run first and not timed (default 1)\n"
            "  --peak TFLOPS         the peak to measure MFU against, in TFLOP/s, instead of the device's\n"
            "  --json FILE           also write the figures as JSON\n"
            "  -h, --help            this help\n");
}

static int parse_args(int argc, char **argv, bench_args *a) {
    brg_train_options defaults = BRG_TRAIN_OPTIONS_INIT;
    a->opts = defaults;
    a->model = "gpt2-small";
    a->steps = 5;
    a->warmup = 1;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i], *v = NULL;
        int64_t n;
        if (brg_cli_is_help(flag)) {
            usage(stdout);
            return -1;
        }
#define VALUE() \
    if (!(v = brg_cli_value(command, argc, argv, &i))) return BRG_EXIT_USAGE
        if (strcmp(flag, "--model") == 0) {
            VALUE();
            a->model = v;
        } else if (strcmp(flag, "--json") == 0) {
            VALUE();
            a->json = v;
        } else if (strcmp(flag, "--device") == 0) {
            VALUE();
            int k = 0;
            if (brg_cli_choice(command, flag, v, brg_cli_device_names, 2, &k)) return BRG_EXIT_USAGE;
            a->opts.backend = k == 1 ? BRG_BACKEND_CUDA : BRG_BACKEND_CPU;
        } else if (strcmp(flag, "--dtype") == 0) {
            VALUE();
            int k = 0;
            if (brg_cli_choice(command, flag, v, brg_cli_dtype_names, 2, &k)) return BRG_EXIT_USAGE;
            a->opts.precision = k == 1 ? BRG_PRECISION_BF16 : BRG_PRECISION_FP32;
        } else if (strcmp(flag, "--micro-batch") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, 1 << 20, &a->opts.micro_batch)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--micro-batches") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, 65535, &a->opts.micro_batches)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--pp") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, 64, &n)) return BRG_EXIT_USAGE;
            a->opts.stages = (int)n;
        } else if (strcmp(flag, "--schedule") == 0) {
            VALUE();
            if (brg_cli_schedule(command, flag, v, 0, &a->opts.schedule)) return BRG_EXIT_USAGE;
            if (a->opts.schedule == BRG_SCHEDULE_INTERLEAVED_1F1B) a->opts.chunks = 2;
        } else if (strcmp(flag, "--steps") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, 1000000, &a->steps)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--warmup") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 0, 1000000, &a->warmup)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--peak") == 0) {
            VALUE();
            if (brg_cli_double(command, flag, v, 1e-6, 1e9, &a->peak_tflops)) return BRG_EXIT_USAGE;
        } else {
            return brg_cli_unknown_flag(command, flag);
        }
#undef VALUE
    }
    if (a->opts.precision == BRG_PRECISION_BF16 && a->opts.backend != BRG_BACKEND_CUDA) {
        fprintf(stderr, "brigade bench: --dtype bf16 needs --device cuda (the CPU backend is fp32)\n");
        return BRG_EXIT_USAGE;
    }
    return 0;
}

/* The dense peak the stages' devices offer together, and where the figure comes from. */
typedef struct peak {
    double flops;
    char what[BRG_ERROR_MESSAGE_MAX + 64];
} peak;

static void find_peak(const bench_args *a, peak *p) {
    if (a->peak_tflops > 0) {
        p->flops = a->peak_tflops * 1e12;
        snprintf(p->what, sizeof p->what, "given with --peak");
        return;
    }
    p->flops = brg_cli_peak_flops(&a->opts, p->what, sizeof p->what);
}

double brg_cli_peak_flops(const brg_train_options *opts, char *what, size_t size) {
    double flops = 0.0;
    char found[BRG_ERROR_MESSAGE_MAX + 64] = "unknown";
    int cuda = opts->backend == BRG_BACKEND_CUDA;
    brg_topology_options to = BRG_TOPOLOGY_OPTIONS_INIT;
    to.flags = cuda ? BRG_TOPOLOGY_DEFAULT : BRG_TOPOLOGY_PROBE_CPU | BRG_TOPOLOGY_IGNORE_GPUS;
    brg_topology *t = NULL;
    brg_error err = {0};
    if (brg_topology_load_live(&t, &to, &err) != BRG_OK) {
        if (size) snprintf(what, size, "unknown: %s", err.message);
        return 0.0;
    }
    brg_precision precision = opts->precision;
    if (cuda) {
        /* Rank r runs on GPU r % GPUs: count each GPU used once. */
        int gpus = brg_topology_gpu_count(t), used = opts->stages < gpus ? opts->stages : gpus, seen = 0;
        brg_device_info first = {0};
        for (int d = 0; d < brg_topology_device_count(t) && seen < used; d++) {
            brg_device_info info;
            if (brg_topology_device_info(t, d, &info) != BRG_OK || info.kind != BRG_DEVICE_GPU) continue;
            if (seen++ == 0) first = info;
            flops += info.peak_flops[precision];
        }
        if (seen > 0)
            snprintf(found, sizeof found, "%s dense peak of %d x %s (%s%s%s)", brg_precision_name(precision), seen,
                     first.model, brg_figure_source_name(first.figures), first.preset[0] ? " " : "", first.preset);
#if BRG_HAVE_CUDA
        /* The topology saw no GPU (a container hiding its PCI devices): the preset the CUDA name matches. */
        char name[256];
        const brg_device_preset *preset = NULL;
        if (seen == 0 && brg__cuda_device_name(0, name, sizeof name) == BRG_OK &&
            (preset = brg_device_preset_match(name)) != NULL) {
            int n = brg__cuda_device_count();
            used = opts->stages < n ? opts->stages : n;
            flops = used * preset->peak_flops[precision];
            snprintf(found, sizeof found, "%s dense peak of %d x %s (preset %s)", brg_precision_name(precision), used,
                     name, preset->name);
        }
#endif
    } else {
        int cores = 0;
        brg_figure_source source = BRG_FIGURE_UNKNOWN;
        for (int d = 0; d < brg_topology_device_count(t); d++) {
            brg_device_info info;
            if (brg_topology_device_info(t, d, &info) != BRG_OK || info.kind != BRG_DEVICE_CPU) continue;
            flops += info.peak_flops[BRG_PRECISION_FP32];
            cores += info.cores;
            source = info.figures;
        }
        snprintf(found, sizeof found, "fp32 sgemm rate of %d core%s (%s)", cores, cores == 1 ? "" : "s",
                 brg_figure_source_name(source));
    }
    brg_topology_destroy(t);
    if (size) snprintf(what, size, "%s", found);
    return flops;
}

typedef struct figures {
    double seconds, tokens, tokens_per_second, flops_per_token, flops, mfu;
    double first_loss, last_loss;
    int64_t peak_bytes;
} figures;

static int write_json(const bench_args *a, const brg_model_config *cfg, const figures *fg, const peak *p) {
    uint64_t mark = brg__json_build_begin();
    json_t *root = json_object();
    brg__json_set(root, "model", json_string(cfg->name));
    brg__json_set(root, "device", json_string(a->opts.backend == BRG_BACKEND_CUDA ? "cuda" : "cpu"));
    brg__json_set(root, "dtype", json_string(a->opts.precision == BRG_PRECISION_BF16 ? "bf16" : "fp32"));
    brg__json_set(root, "pp", json_integer(a->opts.stages));
    brg__json_set(root, "micro_batch", json_integer(a->opts.micro_batch));
    brg__json_set(root, "micro_batches", json_integer(a->opts.micro_batches));
    brg__json_set(root, "seq", json_integer(cfg->seq));
    brg__json_set(root, "steps", json_integer(a->steps));
    brg__json_set(root, "tokens_per_second", json_real(fg->tokens_per_second));
    brg__json_set(root, "model_flops_per_token", json_real(fg->flops_per_token));
    brg__json_set(root, "tflops", json_real(fg->flops / 1e12));
    brg__json_set(root, "peak_tflops", json_real(p->flops / 1e12));
    brg__json_set(root, "peak_source", json_string(p->what));
    brg__json_set(root, "mfu", p->flops > 0 ? json_real(fg->mfu) : json_null());
    brg__json_set(root, "peak_bytes", json_integer(fg->peak_bytes));
    brg__json_set(root, "loss_first", json_real(fg->first_loss));
    brg__json_set(root, "loss_last", json_real(fg->last_loss));
    int rc = brg__json_build_ok(mark) ? json_dump_file(root, a->json, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) : -1;
    json_decref(root);
    if (rc != 0) {
        fprintf(stderr, "brigade bench: writing --json file '%s' failed\n", a->json);
        return BRG_EXIT_FAILURE;
    }
    return 0;
}

static int run(const bench_args *a, const brg_model_config *cfg, const brg_graph *g, brg_data *data) {
    brg_trainer *tr = NULL;
    brg_error err = {0};
    if (brg_trainer_create(&tr, g, &a->opts, &err) != BRG_OK) {
        fprintf(stderr, "brigade bench: %s\n", err.message);
        return BRG_EXIT_FAILURE;
    }
    figures fg = {0};
    for (int64_t step = 1; step <= a->warmup + a->steps; step++) {
        brg_step_stats st;
        if (brg_trainer_step(tr, data, &st) != BRG_OK) {
            fprintf(stderr, "brigade bench: %s\n", brg_trainer_last_error(tr));
            brg_trainer_destroy(tr);
            return BRG_EXIT_FAILURE;
        }
        if (step == 1) fg.first_loss = st.loss;
        fg.last_loss = st.loss;
        if (step <= a->warmup) continue;
        fg.seconds += st.seconds;
        fg.tokens += (double)st.tokens;
        if (st.peak_bytes > fg.peak_bytes) fg.peak_bytes = st.peak_bytes;
    }
    brg_trainer_destroy(tr);
    peak p;
    find_peak(a, &p);
    fg.tokens_per_second = fg.seconds > 0 ? fg.tokens / fg.seconds : 0.0;
    fg.flops_per_token = brg_model_flops_per_token(cfg);
    fg.flops = fg.tokens_per_second * fg.flops_per_token;
    fg.mfu = p.flops > 0 ? fg.flops / p.flops : 0.0;
    const char *device = a->opts.backend == BRG_BACKEND_CUDA ? "cuda" : "cpu";
    const char *dtype = a->opts.precision == BRG_PRECISION_BF16 ? "bf16" : "fp32";
    printf("bench %s on %s (%s), pp %d, %" PRId64 " x %" PRId64 " samples of %" PRId64 " tokens per step: %" PRId64
           " timed steps after %" PRId64 " warm-up\n",
           cfg->name, device, dtype, a->opts.stages, a->opts.micro_batches, a->opts.micro_batch, cfg->seq, a->steps,
           a->warmup);
    printf("  tokens/s     %12.1f   (%.1f ms per step)\n", fg.tokens_per_second,
           a->steps > 0 ? 1e3 * fg.seconds / (double)a->steps : 0.0);
    printf("  TFLOP/s      %12.3f   (model FLOPs, %.4g per token)\n", fg.flops / 1e12, fg.flops_per_token);
    if (p.flops > 0)
        printf("  MFU          %11.1f%%   of %.1f TFLOP/s, the %s\n", 100.0 * fg.mfu, p.flops / 1e12, p.what);
    else
        printf("  MFU          %12s   (no peak known: %s; give one with --peak)\n", "unknown", p.what);
    printf("  loss         %12.4f   -> %.4f\n", fg.first_loss, fg.last_loss);
    printf("  peak memory  %12.1f MiB (all stages)\n", (double)fg.peak_bytes / (double)(1 << 20));
    return a->json ? write_json(a, cfg, &fg, &p) : BRG_EXIT_OK;
}

/* The parse step: the flags, then the model specification. -1: the help was printed; else 0 or an exit
 * code. */
static int parse_command(int argc, char **argv, bench_args *a) {
    memset(a, 0, sizeof *a);
    int rc = parse_args(argc, argv, a);
    if (rc != 0) return rc;
    brg_error err = {0};
    if (brg_model_parse(a->model, &a->model_cfg, &err) != BRG_OK) {
        fprintf(stderr, "brigade bench: --model: %s\n", err.message);
        return BRG_EXIT_USAGE;
    }
    return 0;
}

int brg_cmd_bench_parse(int argc, char **argv) {
    bench_args a;
    int rc = parse_command(argc, argv, &a);
    return rc < 0 ? BRG_EXIT_OK : rc;
}

int brg_cmd_bench(int argc, char **argv) {
    bench_args a;
    int rc = parse_command(argc, argv, &a);
    if (rc != 0) return rc < 0 ? BRG_EXIT_OK : rc;
    brg_model_config cfg = a.model_cfg;
    brg_error err = {0};
    brg_data *data = NULL;
    if (brg_data_synthetic_create(&data, cfg.vocab, cfg.seq, a.opts.seed, &err) != BRG_OK) {
        fprintf(stderr, "brigade bench: %s\n", err.message);
        return BRG_EXIT_USAGE;
    }
    brg_graph *g = NULL;
    if (brg_model_build(&cfg, &g, &err) != BRG_OK) {
        fprintf(stderr, "brigade bench: building %s: %s\n", cfg.name, err.message);
        brg_data_destroy(data);
        return BRG_EXIT_FAILURE;
    }
    rc = run(&a, &cfg, g, data);
    brg_graph_destroy(g);
    brg_data_destroy(data);
    return rc;
}
