/* brigade profile: measure every layer's forward, backward-input and backward-weight time on this machine's
 * backend, for the planner (brigade plan --profile).
 *
 * Each layer runs as one stage of a zero-bubble pipeline (ZB-H1 splits the backward in its two parts) with a
 * single micro-batch, so the stages run one after another and each pass is timed alone on one thread; the
 * runtime's own timeline gives the times. The median of a few steps is kept, after a warm-up step. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brigade.h"
#include "cli.h"

int brg_cmd_profile(int argc, char **argv);

static const char *const command = "profile";

#define MAX_SIZES 8

typedef struct profile_args {
    const char *model;
    const char *output;
    int64_t sizes[MAX_SIZES];
    int size_count;
    int64_t steps;
    brg_model_config model_cfg; /* --model, parsed */
} profile_args;

static void usage(FILE *f) {
    fprintf(f,
            "usage: brigade profile --model SPEC -o prof.json [--micro-batch B1,B2,...] [--steps N]\n"
            "\n"
            "Runs each layer of the model on this machine's CPU backend (one thread) and records its forward,\n"
            "backward-input and backward-weight times at each micro-batch size, for brigade plan --profile: the\n"
            "planner fits each layer's times as a + c x micro-batch and uses them for the devices of this model\n"
            "of CPU instead of the roofline estimate. It also records how long handing a value from one stage to\n"
            "the next takes (the median seen), which the planner uses as those devices' link latency. The whole\n"
            "model is allocated, with its optimizer state, so profile models that fit this machine's memory.\n"
            "\n"
            "flags:\n"
            "  --model SPEC          a preset or FAMILY:key=value,... (as brigade train)\n"
            "  -o, --output FILE     where to write the profile (JSON)\n"
            "  --micro-batch LIST    micro-batch sizes to time (default 1,4)\n"
            "  --steps N             timed steps per size, after one warm-up step; the median is kept (default 3)\n"
            "  -h, --help            this help\n");
}

static int parse_sizes(const char *text, profile_args *a) {
    a->size_count = 0;
    for (const char *p = text; *p;) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 65536 || (*end && *end != ',') || a->size_count == MAX_SIZES) {
            fprintf(stderr, "brigade profile: --micro-batch takes up to %d sizes like 1,4, not '%s'\n", MAX_SIZES, text);
            return BRG_EXIT_USAGE;
        }
        a->sizes[a->size_count++] = v;
        p = *end ? end + 1 : end;
    }
    return a->size_count ? 0 : BRG_EXIT_USAGE;
}

static int parse_args(int argc, char **argv, profile_args *a) {
    a->sizes[0] = 1;
    a->sizes[1] = 4;
    a->size_count = 2;
    a->steps = 3;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i], *v = NULL;
        if (brg_cli_is_help(flag)) {
            usage(stdout);
            return -1;
        }
        if (strcmp(flag, "--model") == 0) {
            if (!(v = brg_cli_value(command, argc, argv, &i))) return BRG_EXIT_USAGE;
            a->model = v;
        } else if (strcmp(flag, "-o") == 0 || strcmp(flag, "--output") == 0) {
            if (!(v = brg_cli_value(command, argc, argv, &i))) return BRG_EXIT_USAGE;
            a->output = v;
        } else if (strcmp(flag, "--micro-batch") == 0) {
            if (!(v = brg_cli_value(command, argc, argv, &i)) || parse_sizes(v, a)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--steps") == 0) {
            if (!(v = brg_cli_value(command, argc, argv, &i)) || brg_cli_int64(command, flag, v, 1, 1000, &a->steps))
                return BRG_EXIT_USAGE;
        } else {
            return brg_cli_unknown_flag(command, flag);
        }
    }
    if (!a->model || !a->output) {
        fprintf(stderr, "brigade profile: --model and -o are required (see 'brigade profile --help')\n");
        return BRG_EXIT_USAGE;
    }
    return 0;
}

/* Hand-off times seen between consecutive stages: from the end of a stage's pass to the start of the next
 * one's in the chain of the single micro-batch. */
typedef struct gaps {
    double *values;
    int count, capacity;
} gaps;

static void gaps_add(gaps *g, double v) {
    if (g->count == g->capacity) {
        int capacity = g->capacity ? 2 * g->capacity : 64;
        double *grown = realloc(g->values, sizeof *grown * (size_t)capacity);
        if (!grown) return;
        g->values = grown;
        g->capacity = capacity;
    }
    g->values[g->count++] = v;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Reads each stage's forward, backward-input and backward-weight time of one step from a trace file into
 * times[3 stage + pass] (left negative where a pass is missing), and the hand-offs between stages. */
static int read_trace(const char *path, int layers, double *times, gaps *handoffs) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    json_t *events = json_object_get(root, "traceEvents");
    if (!json_is_array(events)) {
        json_decref(root);
        return 0;
    }
    static const char *const kinds[3] = {"FORWARD", "BACKWARD_INPUT", "BACKWARD_WEIGHT"};
    double *start = malloc(sizeof(double) * 4 * (size_t)layers); /* forward and backward-input start, end */
    if (!start) {
        json_decref(root);
        return 0;
    }
    for (int k = 0; k < 4 * layers; k++) start[k] = -1.0;
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e) {
        const char *cat = json_string_value(json_object_get(e, "cat"));
        json_t *stage = json_object_get(json_object_get(e, "args"), "stage");
        if (!cat || !json_is_integer(stage)) continue;
        int s = (int)json_integer_value(stage);
        double ts = json_number_value(json_object_get(e, "ts")) * 1e-6;
        double seconds = json_number_value(json_object_get(e, "dur")) * 1e-6;
        for (int k = 0; k < 3; k++) {
            if (strcmp(cat, kinds[k]) != 0 || s < 0 || s >= layers) continue;
            times[3 * s + k] = seconds;
            if (k < 2) {
                start[4 * s + 2 * k] = ts;
                start[4 * s + 2 * k + 1] = ts + seconds;
            }
        }
    }
    for (int s = 0; s + 1 < layers; s++) {
        if (start[4 * s + 1] >= 0 && start[4 * (s + 1)] >= 0) gaps_add(handoffs, start[4 * (s + 1)] - start[4 * s + 1]);
        if (start[4 * (s + 1) + 3] >= 0 && start[4 * s + 2] >= 0) gaps_add(handoffs, start[4 * s + 2] - start[4 * (s + 1) + 3]);
    }
    free(start);
    json_decref(root);
    return 1;
}

/* The median forward, backward-input and backward-weight time of each of `stages` stages (layers split one
 * per stage when stages is the layer count, all in one when 1) into medians[3 * stages]. */
static int measure(const profile_args *a, const brg_model_config *cfg, const brg_graph *g, int64_t b, int L,
                   double *medians, gaps *handoffs, brg_error *err_out);

static int profile_size(const profile_args *a, const brg_model_config *cfg, const brg_graph *g, int64_t b,
                        brg_profile *profile, gaps *handoffs) {
    int L = brg_graph_layer_count(g);
    double *alone = malloc(sizeof(double) * 3 * (size_t)L), whole[3];
    brg_error err = {0};
    int rc = alone ? BRG_EXIT_OK : BRG_EXIT_FAILURE;
    if (rc == BRG_EXIT_OK) rc = measure(a, cfg, g, b, L, alone, handoffs, &err);
    /* Layers timed alone run cold: each on its own thread, its input arriving from another core's cache. A
     * stage runs its layers back to back on one thread, hot. Each layer keeps its share of the isolated
     * times, and the shares add up to what one stage of every layer measures. */
    if (rc == BRG_EXIT_OK && L > 1) rc = measure(a, cfg, g, b, 1, whole, NULL, &err);
    if (rc != BRG_EXIT_OK) {
        fprintf(stderr, "brigade profile: micro-batch %lld: %s\n", (long long)b, err.message);
        free(alone);
        return rc;
    }
    double scale[3] = {1.0, 1.0, 1.0};
    for (int k = 0; k < 3 && L > 1; k++) {
        double sum = 0.0;
        for (int l = 0; l < L; l++) sum += alone[3 * l + k];
        if (sum > 0 && whole[k] > 0) scale[k] = whole[k] / sum;
    }
    for (int l = 0; l < L; l++)
        brg_profile_set(profile, l, b, alone[3 * l] * scale[0], alone[3 * l + 1] * scale[1], alone[3 * l + 2] * scale[2]);
    free(alone);
    return BRG_EXIT_OK;
}

static int measure(const profile_args *a, const brg_model_config *cfg, const brg_graph *g, int64_t b, int L,
                   double *medians, gaps *handoffs, brg_error *err_out) {
    int steps = (int)a->steps;
    brg_error err = {0};
    brg_data *data = NULL;
    brg_trainer *tr = NULL;
    double *times = malloc(sizeof(double) * 3 * (size_t)L * (size_t)steps), *one = malloc(sizeof(double) * (size_t)steps);
    char trace[] = "/tmp/brigade-profile-XXXXXX";
    int fd = mkstemp(trace);
    int rc = BRG_EXIT_FAILURE;
    if (!times || !one || fd < 0) goto done;
    close(fd);
    for (int k = 0; k < 3 * L * steps; k++) times[k] = -1.0;
    if (brg_data_synthetic_create(&data, cfg->vocab, cfg->seq, 1, &err) != BRG_OK) goto fail;
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.stages = L;
    o.schedule = BRG_SCHEDULE_ZB_H1;
    o.micro_batch = b;
    o.micro_batches = 1;
    o.blas_threads = 1;
    o.record_trace = 1;
    o.lr = 1e-6f;
    if (brg_trainer_create(&tr, g, &o, &err) != BRG_OK) goto fail;
    for (int step = 0; step <= steps; step++) {
        if (brg_trainer_step(tr, data, NULL) != BRG_OK) {
            snprintf(err.message, sizeof err.message, "%s", brg_trainer_last_error(tr));
            goto fail;
        }
        if (step == 0) continue; /* warm-up: page faults, first-touch allocations */
        if (brg_trainer_write_trace(tr, trace, &err) != BRG_OK ||
            !read_trace(trace, L, times + (size_t)(step - 1) * 3 * (size_t)L, handoffs))
            goto fail;
    }
    /* The median of the timed steps: typical, where the least would be the luckiest. */
    for (int l = 0; l < L; l++) {
        double median[3];
        for (int k = 0; k < 3; k++) {
            int n = 0;
            for (int st = 0; st < steps; st++) {
                double v = times[(size_t)st * 3 * (size_t)L + 3 * (size_t)l + (size_t)k];
                if (v >= 0) one[n++] = v;
            }
            qsort(one, (size_t)n, sizeof(double), compare_double);
            median[k] = n ? one[n / 2] : 0.0; /* a layer without that pass (no parameters) */
        }
        for (int k = 0; k < 3; k++) medians[3 * l + k] = median[k];
    }
    rc = BRG_EXIT_OK;
    goto done;
fail:
    *err_out = err;
done:
    if (fd >= 0) unlink(trace);
    brg_trainer_destroy(tr);
    brg_data_destroy(data);
    free(times);
    free(one);
    return rc;
}

/* The parse step: the flags, then the model specification. -1: the help was printed; else 0 or an exit
 * code. */
static int parse_command(int argc, char **argv, profile_args *a) {
    int rc = parse_args(argc, argv, a);
    if (rc != 0) return rc;
    brg_error err = {0};
    if (brg_model_parse(a->model, &a->model_cfg, &err) != BRG_OK) {
        fprintf(stderr, "brigade profile: --model: %s\n", err.message);
        return BRG_EXIT_USAGE;
    }
    return 0;
}

int brg_cmd_profile_parse(int argc, char **argv) {
    profile_args a = {0};
    int rc = parse_command(argc, argv, &a);
    return rc < 0 ? BRG_EXIT_OK : rc;
}

int brg_cmd_profile(int argc, char **argv) {
    profile_args a = {0};
    int rc = parse_command(argc, argv, &a);
    if (rc != 0) return rc < 0 ? BRG_EXIT_OK : rc;
    brg_error err = {0};
    brg_model_config cfg = a.model_cfg;
    brg_graph *g = NULL;
    brg_topology *t = NULL;
    brg_profile *profile = NULL;
    if (brg_model_build(&cfg, &g, &err) != BRG_OK) {
        fprintf(stderr, "brigade profile: building %s: %s\n", cfg.name, err.message);
        return BRG_EXIT_FAILURE;
    }
    int L = brg_graph_layer_count(g);
    if (L > 256) {
        fprintf(stderr, "brigade profile: %s has %d layers; the profiler runs at most 256 (one stage each)\n", cfg.name, L);
        brg_graph_destroy(g);
        return BRG_EXIT_USAGE;
    }
    /* The devices the profile applies to: this machine's CPU devices. */
    brg_topology_options to = BRG_TOPOLOGY_OPTIONS_INIT;
    to.flags = BRG_TOPOLOGY_IGNORE_GPUS;
    brg_device_info info;
    if (brg_topology_load_live(&t, &to, &err) != BRG_OK || brg_topology_device_info(t, 0, &info) != BRG_OK) {
        fprintf(stderr, "brigade profile: reading this machine: %s\n", err.message);
        brg_graph_destroy(g);
        return BRG_EXIT_FAILURE;
    }
    if (brg_profile_create(&profile, g, info.model, &err) != BRG_OK) {
        fprintf(stderr, "brigade profile: %s\n", err.message);
        rc = BRG_EXIT_FAILURE;
    }
    gaps handoffs = {0};
    for (int i = 0; i < a.size_count && rc == BRG_EXIT_OK; i++) rc = profile_size(&a, &cfg, g, a.sizes[i], profile, &handoffs);
    double latency = 0.0;
    if (handoffs.count) {
        /* The median: typical of a hand-off, not of the rare one the scheduler delays. */
        qsort(handoffs.values, (size_t)handoffs.count, sizeof(double), compare_double);
        latency = handoffs.values[handoffs.count / 2];
        if (latency < 0) latency = 0.0;
        brg_profile_set_transfer_latency(profile, latency);
    }
    free(handoffs.values);
    if (rc == BRG_EXIT_OK && brg_profile_save(profile, a.output, &err) != BRG_OK) {
        fprintf(stderr, "brigade profile: -o: %s\n", err.message);
        rc = BRG_EXIT_FAILURE;
    }
    if (rc == BRG_EXIT_OK) {
        printf("profile of %s on %s (%d layers, micro-batch", cfg.name, info.model[0] ? info.model : "this CPU", L);
        for (int i = 0; i < a.size_count; i++) printf("%s%lld", i ? "," : " ", (long long)a.sizes[i]);
        printf("):\n  %-12s %12s %12s %12s   (micro-batch %lld)\n", "layer", "forward", "bwd-input", "bwd-weight",
               (long long)a.sizes[a.size_count - 1]);
        for (int l = 0; l < L; l++) {
            double f, bi, bw;
            brg_profile_get(profile, l, a.sizes[a.size_count - 1], &f, &bi, &bw);
            brg_layer_info li;
            brg_graph_layer_info(g, l, &li);
            printf("  %-12s %9.3f ms %9.3f ms %9.3f ms\n", li.name, f * 1e3, bi * 1e3, bw * 1e3);
        }
        printf("hand-off between stages (post, wake the next stage, copy): %.1f us, the median of what was seen\n",
               latency * 1e6);
        printf("profile: %s (use it with brigade plan --profile %s)\n", a.output, a.output);
    }
    brg_profile_destroy(profile);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
    return rc;
}
