/* brigade train: train a model on the synthetic task or on token shards, and report every step. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "brigade.h"
#include "brigade/checkpoint.h"
#include "brigade/train.h"
#include "cli.h"

static const char *const command = "train";

/* "brigade train: rank R: ..." on stderr, the rank named when the job has several. */
__attribute__((format(printf, 2, 3)))
static void rank_error(const brg_launch *l, const char *fmt, ...) {
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (l->world > 1)
        fprintf(stderr, "brigade train: rank %d of %d: %s\n", l->rank, l->world, text);
    else
        fprintf(stderr, "brigade train: %s\n", text);
}

static const char *recompute_name(brg_recompute r) {
    return r == BRG_RECOMPUTE_FULL ? "full" : r == BRG_RECOMPUTE_SELECTIVE ? "selective" : "none";
}

typedef struct train_args {
    const char *model;
    const char *data;
    const char *stats;
    const char *trace;
    int split[256];
    const char *plan;                   /* --plan FILE */
    unsigned given;                     /* flags given on the command line (GIVEN_*) */
    brg_recompute stage_recompute[256]; /* the plan's policy per virtual stage */
    int64_t steps;
    int64_t log_every;
    const char *checkpoint_dir; /* --checkpoint-dir */
    const char *resume;         /* --resume */
    const char *init_from;      /* --init-from */
    const char *val_data;       /* --val-data */
    int64_t val_every, val_batches;
    int64_t save_every;
    int64_t keep;
    int64_t global_batch;       /* --global-batch: samples per step, all replicas together */
    int layout[4096];           /* the plan's rank layout */
    brg_model_config model_cfg;
    brg_train_options opts;
    brg_launch launch; /* alone, or one rank of an mpirun / srun job */
} train_args;

/* Pipeline flags a plan also sets: given explicitly, they must agree with it. */
enum {
    GIVEN_PP = 1,
    GIVEN_CHUNKS = 2,
    GIVEN_SCHEDULE = 4,
    GIVEN_RECOMPUTE = 8,
    GIVEN_SPLIT = 16,
    GIVEN_MICRO_BATCH = 32,
    GIVEN_MICRO_BATCHES = 64,
    GIVEN_DP = 128,
    GIVEN_ZERO = 256,
    GIVEN_TP = 512,
    GIVEN_SP = 1024,
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: brigade train --model SPEC [flags]\n"
            "\n"
            "Trains a model and prints one line per step (step, loss, tokens/s, ms), then\n"
            "'params fingerprint: <16 hex digits>', a hash of every parameter's bytes in name order:\n"
            "two runs with the same fingerprint ended with bitwise the same parameters.\n"
            "\n"
            "flags:\n"
            "  --model SPEC          a preset (gpt2-small, gpt2-medium, ... see below) or\n"
            "                        FAMILY:key=value,... e.g. gpt:layers=2,hidden=64,heads=4,vocab=64,seq=32,\n"
            "                        mlp:layers=4,hidden=128,vocab=64,seq=32, skipnet:layers=3,hidden=64,vocab=64,seq=32\n"
            "  --steps N             training steps (default 10)\n"
            "  --micro-batch B       samples per micro-batch (default 4)\n"
            "  --micro-batches M     micro-batches per step, gradients accumulated (default 1)\n"
            "  --lr X                AdamW learning rate (default 1e-3)\n"
            "  --weight-decay X      AdamW decoupled weight decay on matrices and embeddings (default 0)\n"
            "  --warmup N            steps of linear learning-rate warm-up from lr/N to lr (default 0)\n"
            "  --lr-schedule KIND    constant, cosine or linear: after the warm-up, from lr down to --min-lr\n"
            "                        by --total-steps (default constant)\n"
            "  --min-lr X            the learning rate at the schedule's end (default 0)\n"
            "  --total-steps N       the step at which cosine and linear reach --min-lr (default --steps)\n"
            "  --grad-clip X         clip the global gradient norm to X; 0 turns it off (default 1)\n"
            "  --seed S              parameter initialization and synthetic data (default 1337)\n"
            "  --data FILE           llm.c-style token shard (.bin: 256 int32 header, uint16 tokens);\n"
            "                        without it, a built-in synthetic task (repeating random patterns)\n"
            "  --val-data FILE       a second shard for validation: the mean loss over --val-batches fixed\n"
            "                        micro-batches (its first samples), forward passes through the pipeline\n"
            "  --val-every N         validate every N steps (and after the last; default: after the last only)\n"
            "  --val-batches K       micro-batches of validation (default 4)\n"
            "  --threads N           OpenBLAS threads per stage (default: the cores divided among the stages)\n"
            "\n"
            );
    fprintf(f,
            "pipeline:\n"
            "  --pp N                pipeline stages, one thread each (default 1); under mpirun or srun, one\n"
            "                        process each: N x --dp must be the job's size (default: the job's size / --dp)\n"
            "  --dp D                data-parallel replicas of the pipeline (default 1): pp x D ranks, replica d\n"
            "                        on ranks d*pp .. d*pp+pp-1, each training on its share of every step's\n"
            "                        samples; --micro-batches counts one replica's (a step trains on\n"
            "                        D x micro-batches x micro-batch samples, whatever D: bitwise the same\n"
            "                        parameters on every replica, close to one replica's at equal global batch)\n"
            "  --tp T                tensor-parallel ranks per stage of each replica (default 1): each holds its\n"
            "                        slices of the stage's parameters and computes its share of every split op\n"
            "                        (attention heads, MLP columns, the vocabulary), T x pp x D ranks in all\n"
            "  --sp 0|1              1: sequence parallelism, the positions split between the split ops too\n"
            "  --global-batch N      samples per step, all replicas together: sets --micro-batches to\n"
            "                        N / (D x micro-batch), which must divide evenly\n"
            "  --zero 0|1            1: ZeRO-1, each replica keeps AdamW's moments of 1/D of the parameters\n"
            "                        (default 0; a note, and no effect, with one replica)\n"
            "  --bucket-mb X         gradients summed across replicas in buckets of about X MiB, each posted as\n"
            "                        soon as backward has finished it (default 4)\n"
            "  --nan-check N         scan every activation and gradient on steps 1, 1+N, 1+2N, ... and stop at the\n"
            "                        first NaN or infinity, naming its stage, micro-batch, op and tensor (default\n"
            "                        100; 0: only the loss and the gradient norm, which every step checks)\n"
            "  --schedule KIND       gpipe, 1f1b, interleaved or zb-h1 (default 1f1b)\n"
            "  --chunks V            virtual stages per pipeline stage, for interleaved (default 1; 2 with interleaved)\n"
            "  --recompute POLICY    none, full or selective: what a stage keeps of a micro-batch until its\n"
            "                        backward (default none)\n"
            "  --split L1,L2,...     first layer of every stage after the first (pp x chunks - 1 layer indices);\n"
            "                        default: stages with as even forward + backward FLOPs as the layers allow\n"
            "  --device KIND         cpu (fp32, OpenBLAS) or cuda (cuBLAS, NCCL; stage r on GPU r, or under\n"
            "                        mpirun / srun on the GPU of its local rank) (default cpu)\n"
            "  --dtype TYPE          fp32, or bf16 on cuda: activations and GEMMs; weights stay fp32 (default fp32)\n"
            "  --trace FILE          write the last step's timeline as Chrome trace JSON (opens in Perfetto)\n"
            "  --timeout S           a stage waiting longer than S seconds on another fails the run (default 600)\n"
            "  --plan FILE           run a plan from brigade plan: it sets --pp, --chunks, --schedule, --split,\n"
            "                        --micro-batch, --micro-batches, --dp, --zero, each stage's recomputation and\n"
            "                        which rank runs which (stage, replica); the plan must have been made for\n"
            "                        this model and this machine\n"
            "\n"
            );
    fprintf(f,
            "launch (one process per stage):\n"
            "  mpirun -np N brigade train --model SPEC --pp N [flags]   (Open MPI; srun -n N under Slurm)\n"
            "                        every process runs stage <its rank>; transfers go over MPI (CPU) or NCCL\n"
            "                        (GPU); only rank 0 prints step lines and writes --stats and --trace (one\n"
            "                        file, every rank's track); every rank must be given the same flags\n"
            "\n"
            "checkpoints (docs/checkpoints.md):\n"
            "  --checkpoint-dir DIR  save DIR/step-NNNNNN/ (safetensors, Hugging Face GPT-2 names) every\n"
            "                        --save-every steps and at the end; DIR/latest names the last complete one\n"
            "  --save-every N        steps between saves (default: only at the end)\n"
            "  --keep K              keep the K newest steps, removing older ones once a new one is complete\n"
            "  --init-from PATH      start from Hugging Face GPT-2 weights (a .safetensors file, or a directory\n"
            "                        with model.safetensors or a sharded index, and config.json); gpt models\n"
            "  --resume DIR          continue from DIR's last complete step (any --pp, split or schedule),\n"
            "                        bitwise as if never stopped, up to --steps in all; a DIR with no complete\n"
            "                        step starts from scratch (so --checkpoint-dir D --resume D suits restarts)\n"
            "\n"
            );
    fprintf(f,
            "output:\n"
            "  --log-every N         print every Nth step (first and last always; default 1)\n"
            "  --stats FILE          write JSON: every step's loss (%%.9g), the fingerprint, throughput\n"
            "  -h, --help            this help\n"
            "\n"
            "presets:\n");
    for (int i = 0; i < brg_model_preset_count(); i++) {
        brg_model_config cfg;
        const char *description = "";
        if (brg_model_preset_get(i, &cfg, &description) == BRG_OK) fprintf(f, "  %-14s %s\n", cfg.name, description);
    }
}

/* "3,6,9": ascending layer indices. */
static int parse_split(const char *text, train_args *a) {
    const char *p = text;
    a->opts.split_count = 0;
    while (*p) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1000000 || (*end && *end != ',') || a->opts.split_count >= 256) {
            fprintf(stderr, "brigade train: --split takes ascending layer indices like 3,6,9, not '%s'\n", text);
            return 1;
        }
        a->split[a->opts.split_count++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (a->opts.split_count == 0) {
        fprintf(stderr, "brigade train: --split needs at least one layer index\n");
        return 1;
    }
    a->opts.split = a->split;
    return 0;
}

static int parse_args(int argc, char **argv, train_args *a) {
    int chunks_given = 0;
    a->steps = 10;
    a->log_every = 1;
    brg_train_options defaults = BRG_TRAIN_OPTIONS_INIT;
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
        } else if (strcmp(flag, "--data") == 0) {
            VALUE();
            a->data = v;
        } else if (strcmp(flag, "--stats") == 0) {
            VALUE();
            a->stats = v;
        } else if (strcmp(flag, "--steps") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, INT64_C(1) << 40, &a->steps)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--log-every") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, INT64_C(1) << 40, &a->log_every)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--micro-batch") == 0) {
            VALUE();
            a->given |= GIVEN_MICRO_BATCH;
            if (brg_cli_int64(command, flag, v, 1, 1 << 20, &a->opts.micro_batch)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--micro-batches") == 0) {
            VALUE();
            a->given |= GIVEN_MICRO_BATCHES;
            if (brg_cli_int64(command, flag, v, 1, 1 << 20, &a->opts.micro_batches)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--seed") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 0, INT64_MAX, &n)) return BRG_EXIT_USAGE;
            a->opts.seed = (uint64_t)n;
        } else if (strcmp(flag, "--threads") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, 1024, &n)) return BRG_EXIT_USAGE;
            a->opts.blas_threads = (int)n;
        } else if (strcmp(flag, "--pp") == 0) {
            VALUE();
            a->given |= GIVEN_PP;
            if (brg_cli_int64(command, flag, v, 1, 64, &n)) return BRG_EXIT_USAGE;
            a->opts.stages = (int)n;
        } else if (strcmp(flag, "--dp") == 0) {
            VALUE();
            a->given |= GIVEN_DP;
            if (brg_cli_int64(command, flag, v, 1, 4096, &n)) return BRG_EXIT_USAGE;
            a->opts.data_parallel = (int)n;
        } else if (strcmp(flag, "--tp") == 0) {
            VALUE();
            a->given |= GIVEN_TP;
            if (brg_cli_int64(command, flag, v, 1, 64, &n)) return BRG_EXIT_USAGE;
            a->opts.tensor_parallel = (int)n;
        } else if (strcmp(flag, "--sp") == 0) {
            VALUE();
            a->given |= GIVEN_SP;
            if (brg_cli_int64(command, flag, v, 0, 1, &n)) return BRG_EXIT_USAGE;
            a->opts.sequence_parallel = (int)n;
        } else if (strcmp(flag, "--zero") == 0) {
            VALUE();
            a->given |= GIVEN_ZERO;
            if (brg_cli_int64(command, flag, v, 0, 1, &n)) return BRG_EXIT_USAGE;
            a->opts.zero = (int)n;
        } else if (strcmp(flag, "--nan-check") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 0, INT64_C(1) << 40, &a->opts.nan_check_every)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--bucket-mb") == 0) {
            VALUE();
            if (brg_cli_double(command, flag, v, 1.0 / 1024, 65536.0, &x)) return BRG_EXIT_USAGE;
            a->opts.bucket_bytes = (int64_t)(x * 1048576.0);
        } else if (strcmp(flag, "--global-batch") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, INT64_C(1) << 30, &a->global_batch)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--chunks") == 0) {
            VALUE();
            a->given |= GIVEN_CHUNKS;
            if (brg_cli_int64(command, flag, v, 1, 16, &n)) return BRG_EXIT_USAGE;
            a->opts.chunks = (int)n;
            chunks_given = 1;
        } else if (strcmp(flag, "--schedule") == 0) {
            VALUE();
            a->given |= GIVEN_SCHEDULE;
            if (brg_cli_schedule(command, flag, v, 0, &a->opts.schedule)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--recompute") == 0) {
            VALUE();
            a->given |= GIVEN_RECOMPUTE;
            int k = 0;
            if (brg_cli_choice(command, flag, v, brg_cli_recompute_names, 3, &k)) return BRG_EXIT_USAGE;
            a->opts.recompute = (brg_recompute)k;
        } else if (strcmp(flag, "--split") == 0) {
            VALUE();
            a->given |= GIVEN_SPLIT;
            if (parse_split(v, a)) return BRG_EXIT_USAGE;
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
        } else if (strcmp(flag, "--plan") == 0) {
            VALUE();
            a->plan = v;
        } else if (strcmp(flag, "--warmup") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 0, INT64_C(1) << 40, &a->opts.warmup_steps)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--lr-schedule") == 0) {
            VALUE();
            static const char *const kinds[3] = {"constant", "cosine", "linear"};
            int k = 0;
            if (brg_cli_choice(command, flag, v, kinds, 3, &k)) return BRG_EXIT_USAGE;
            a->opts.lr_schedule = (brg_lr_schedule)k;
        } else if (strcmp(flag, "--min-lr") == 0) {
            VALUE();
            if (brg_cli_double(command, flag, v, 0.0, 10.0, &x)) return BRG_EXIT_USAGE;
            a->opts.min_lr = (float)x;
        } else if (strcmp(flag, "--total-steps") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, INT64_C(1) << 40, &a->opts.total_steps)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--checkpoint-dir") == 0) {
            VALUE();
            a->checkpoint_dir = v;
        } else if (strcmp(flag, "--val-data") == 0) {
            VALUE();
            a->val_data = v;
        } else if (strcmp(flag, "--val-every") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, INT64_C(1) << 40, &a->val_every)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--val-batches") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, 1 << 20, &a->val_batches)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--init-from") == 0) {
            VALUE();
            a->init_from = v;
        } else if (strcmp(flag, "--resume") == 0) {
            VALUE();
            a->resume = v;
        } else if (strcmp(flag, "--save-every") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, INT64_C(1) << 40, &a->save_every)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--keep") == 0) {
            VALUE();
            if (brg_cli_int64(command, flag, v, 1, 1000000, &a->keep)) return BRG_EXIT_USAGE;
        } else if (strcmp(flag, "--trace") == 0) {
            VALUE();
            a->trace = v;
            a->opts.record_trace = 1;
        } else if (strcmp(flag, "--timeout") == 0) {
            VALUE();
            if (brg_cli_double(command, flag, v, 0.001, 1e7, &x)) return BRG_EXIT_USAGE;
            a->opts.timeout_seconds = x;
        } else if (strcmp(flag, "--lr") == 0) {
            VALUE();
            if (brg_cli_double(command, flag, v, 1e-12, 10.0, &x)) return BRG_EXIT_USAGE;
            a->opts.lr = (float)x;
        } else if (strcmp(flag, "--weight-decay") == 0) {
            VALUE();
            if (brg_cli_double(command, flag, v, 0.0, 10.0, &x)) return BRG_EXIT_USAGE;
            a->opts.weight_decay = (float)x;
        } else if (strcmp(flag, "--grad-clip") == 0) {
            VALUE();
            if (brg_cli_double(command, flag, v, 0.0, 1e9, &x)) return BRG_EXIT_USAGE;
            a->opts.grad_clip = (float)x;
        } else {
            return brg_cli_unknown_flag(command, flag);
        }
#undef VALUE
    }
    if (!a->model) {
        fprintf(stderr, "brigade train: --model is required (see 'brigade train --help')\n");
        return BRG_EXIT_USAGE;
    }
    if (a->opts.schedule == BRG_SCHEDULE_INTERLEAVED_1F1B && !chunks_given) a->opts.chunks = 2;
    if (a->opts.total_steps == 0) a->opts.total_steps = a->steps;
    if (a->opts.min_lr > a->opts.lr) {
        fprintf(stderr, "brigade train: --min-lr %g is above --lr %g\n", (double)a->opts.min_lr, (double)a->opts.lr);
        return BRG_EXIT_USAGE;
    }
    if (a->opts.lr_schedule != BRG_LR_CONSTANT && a->opts.total_steps <= a->opts.warmup_steps) {
        fprintf(stderr, "brigade train: --total-steps %lld must exceed --warmup %lld for a %s schedule\n",
                (long long)a->opts.total_steps, (long long)a->opts.warmup_steps,
                a->opts.lr_schedule == BRG_LR_COSINE ? "cosine" : "linear");
        return BRG_EXIT_USAGE;
    }
    if ((a->val_every || a->val_batches) && !a->val_data) {
        fprintf(stderr, "brigade train: --val-every and --val-batches need --val-data\n");
        return BRG_EXIT_USAGE;
    }
    if (!a->val_batches) a->val_batches = 4;
    if ((a->save_every || a->keep) && !a->checkpoint_dir) {
        fprintf(stderr, "brigade train: --save-every and --keep need --checkpoint-dir\n");
        return BRG_EXIT_USAGE;
    }
    return 0;
}

/* A flag given on the command line that disagrees with the plan. */
static int plan_conflict(const train_args *a, const brg_train_options *planned, char *buf, size_t size) {
    const brg_train_options *o = &a->opts;
    if ((a->given & GIVEN_PP) && o->stages != planned->stages)
        return snprintf(buf, size, "--pp %d conflicts with the plan's %d pipeline stages", o->stages, planned->stages) > 0;
    if ((a->given & GIVEN_CHUNKS) && o->chunks != planned->chunks)
        return snprintf(buf, size, "--chunks %d conflicts with the plan's %d chunks", o->chunks, planned->chunks) > 0;
    if ((a->given & GIVEN_SCHEDULE) && o->schedule != planned->schedule)
        return snprintf(buf, size, "--schedule %s conflicts with the plan's %s", brg_schedule_kind_name(o->schedule),
                        brg_schedule_kind_name(planned->schedule)) > 0;
    if ((a->given & GIVEN_MICRO_BATCH) && o->micro_batch != planned->micro_batch)
        return snprintf(buf, size, "--micro-batch %lld conflicts with the plan's micro-batch of %lld",
                        (long long)o->micro_batch, (long long)planned->micro_batch) > 0;
    if ((a->given & GIVEN_DP) && o->data_parallel != planned->data_parallel)
        return snprintf(buf, size, "--dp %d conflicts with the plan's %d replicas", o->data_parallel,
                        planned->data_parallel) > 0;
    if ((a->given & GIVEN_ZERO) && o->zero != planned->zero && planned->data_parallel > 1)
        return snprintf(buf, size, "--zero %d conflicts with the plan's ZeRO-1 %s", o->zero, planned->zero ? "on" : "off") > 0;
    if ((a->given & GIVEN_MICRO_BATCHES) && o->micro_batches != planned->micro_batches)
        return snprintf(buf, size, "--micro-batches %lld conflicts with the plan's %lld micro-batches",
                        (long long)o->micro_batches, (long long)planned->micro_batches) > 0;
    if (a->given & GIVEN_RECOMPUTE)
        for (int k = 0; k < planned->stage_recompute_count; k++)
            if (planned->stage_recompute[k] != o->recompute)
                return snprintf(buf, size, "--recompute %s conflicts with the plan's recomputation (stage %d: %s)",
                                recompute_name(o->recompute), k, recompute_name(planned->stage_recompute[k])) > 0;
    if (a->given & GIVEN_SPLIT) {
        int same = o->split_count == planned->split_count;
        for (int k = 0; same && k < o->split_count; k++) same = o->split[k] == planned->split[k];
        if (!same) return snprintf(buf, size, "--split conflicts with the plan's cut points") > 0;
    }
    return 0;
}

/* Whether the plan was made for this machine's cores seen as CPU devices (on a machine that has GPUs). */
static int cpu_devices_match(const brg_plan *plan, const brg_graph *g, brg_topology **t) {
    brg_topology_options to = BRG_TOPOLOGY_OPTIONS_INIT;
    to.flags = BRG_TOPOLOGY_IGNORE_GPUS;
    brg_topology *cpus = NULL;
    if (brg_topology_gpu_count(*t) == 0 || brg_topology_load_live(&cpus, &to, NULL) != BRG_OK) return 0;
    if (brg_plan_check(plan, g, cpus, NULL) != BRG_OK) {
        brg_topology_destroy(cpus);
        return 0;
    }
    brg_topology_destroy(*t);
    *t = cpus;
    return 1;
}

/* Loads --plan, checks it against the model and this machine, and sets the pipeline options from it. */
static int apply_plan(train_args *a, const brg_graph *g) {
    brg_error err = {0};
    brg_plan *plan = NULL;
    brg_topology *t = NULL;
    int rc = BRG_EXIT_USAGE;
    if (brg_plan_load(a->plan, &plan, &err) != BRG_OK) {
        fprintf(stderr, "brigade train: --plan: %s\n", err.message);
        return BRG_EXIT_USAGE;
    }
    brg_topology_options to = BRG_TOPOLOGY_OPTIONS_INIT;
    brg_train_options planned = a->opts;
    int split[256];
    char conflict[256];
    if (brg_plan_check(plan, g, NULL, &err) != BRG_OK) {
        fprintf(stderr, "brigade train: --plan %s: %s\n", a->plan, err.message);
    } else if (brg_topology_load_live(&t, &to, &err) != BRG_OK) {
        fprintf(stderr, "brigade train: reading this machine for --plan: %s\n", err.message);
        rc = BRG_EXIT_FAILURE;
    } else if (brg_plan_check(plan, g, t, &err) != BRG_OK && !cpu_devices_match(plan, g, &t)) {
        fprintf(stderr, "brigade train: --plan %s: %s\n", a->plan, err.message);
    } else if (brg_plan_train_options(plan, g, &planned, split, 256, a->stage_recompute, 256, &err) != BRG_OK) {
        fprintf(stderr, "brigade train: --plan %s: %s\n", a->plan, err.message);
    } else if (plan_conflict(a, &planned, conflict, sizeof conflict)) {
        fprintf(stderr, "brigade train: %s (%s): drop the flag, or make another plan with it\n", conflict, a->plan);
    } else {
        for (int k = 0; k < planned.split_count; k++) a->split[k] = split[k];
        planned.split = planned.split_count ? a->split : NULL;
        planned.stage_recompute = a->stage_recompute;
        int ranks = 0;
        if (brg_plan_rank_layout(plan, a->layout, 4096, &ranks) == BRG_OK) planned.rank_layout = a->layout;
        a->opts = planned;
        brg_plan_summary sm;
        brg_plan_get_summary(plan, &sm);
        printf("plan %s: %d stage%s x %d chunk%s x %d replica%s%s, %s, micro-batch %lld x %lld; recompute per stage:",
               a->plan, sm.pipeline_stages, sm.pipeline_stages > 1 ? "s" : "", sm.chunks, sm.chunks > 1 ? "s" : "",
               planned.data_parallel, planned.data_parallel > 1 ? "s" : "", planned.zero ? " (ZeRO-1)" : "",
               brg_schedule_kind_name(sm.schedule), (long long)sm.micro_batch, (long long)sm.micro_batches);
        for (int k = 0; k < planned.stage_recompute_count; k++) printf(" %s", recompute_name(a->stage_recompute[k]));
        if (sm.predicted)
            printf("; predicted %.1f tokens/s, %.2f ms per step", sm.tokens_per_second, sm.iteration_seconds * 1e3);
        printf("\n");
        rc = 0;
    }
    brg_topology_destroy(t);
    brg_plan_destroy(plan);
    return rc;
}

/* Fails early, before any training, when the stats file could not be written. */
static int check_writable(const char *path, const char *flag) {
    char *copy = strdup(path);
    if (!copy) return BRG_EXIT_FAILURE;
    const char *dir = dirname(copy);
    int ok = access(dir, W_OK) == 0 && (access(path, F_OK) != 0 || access(path, W_OK) == 0);
    int saved = errno;
    free(copy);
    if (!ok) {
        fprintf(stderr, "brigade train: cannot write %s file '%s': %s\n", flag, path, strerror(saved));
        return BRG_EXIT_USAGE;
    }
    return 0;
}

typedef struct run_record {
    uint64_t json_mark; /* brg__json_build_begin before the first record */
    json_t *steps;
    json_t *ranks; /* the last step's per-stage figures */
    double seconds;
    double seconds_after_first;
    int64_t tokens;
    int64_t tokens_after_first;
    int64_t peak_bytes;
} run_record;

static int write_stats(const train_args *a, const brg_model_config *cfg, const run_record *r, int64_t params,
                       uint64_t fingerprint) {
    char hex[17], tmp[4096];
    snprintf(hex, sizeof hex, "%016" PRIx64, fingerprint);
    json_t *root = json_object();
    brg__json_set(root, "model", json_string(cfg->name));
    brg__json_set(root, "parameters", json_integer(params));
    brg__json_set(root, "micro_batch", json_integer(a->opts.micro_batch));
    brg__json_set(root, "micro_batches", json_integer(a->opts.micro_batches));
    brg__json_set(root, "seq", json_integer(cfg->seq));
    brg__json_set(root, "pp", json_integer(a->opts.stages));
    brg__json_set(root, "chunks", json_integer(a->opts.chunks));
    brg__json_set(root, "schedule", json_string(brg_schedule_kind_name(a->opts.schedule)));
    brg__json_set(root, "recompute", json_string(recompute_name(a->opts.recompute)));
    brg__json_set(root, "data", json_string(a->data ? a->data : "synthetic"));
    brg__json_set(root, "steps", json_incref(r->steps));
    brg__json_set(root, "stages", json_incref(r->ranks));
    brg__json_set(root, "params_fingerprint", json_string(hex));
    brg__json_set(root, "seconds", json_real(r->seconds));
    brg__json_set(root, "tokens", json_integer(r->tokens));
    brg__json_set(root, "tokens_per_second", json_real(r->seconds > 0 ? (double)r->tokens / r->seconds : 0));
    /* The first step pays for warm-up (page faults, BLAS buffers); the steady rate leaves it out. */
    brg__json_set(root, "steady_tokens_per_second",
                        r->seconds_after_first > 0 ? json_real((double)r->tokens_after_first / r->seconds_after_first)
                                                   : json_null());
    brg__json_set(root, "peak_bytes", json_integer(r->peak_bytes));
    snprintf(tmp, sizeof tmp, "%s.tmp", a->stats);
    if (!brg__json_build_ok(r->json_mark)) {
        json_decref(root);
        fprintf(stderr, "brigade train: writing --stats file '%s' failed: out of memory\n", a->stats);
        return BRG_EXIT_FAILURE;
    }
    int rc = json_dump_file(root, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (rc != 0 || rename(tmp, a->stats) != 0) {
        fprintf(stderr, "brigade train: writing --stats file '%s' failed: %s\n", a->stats, strerror(errno));
        remove(tmp);
        return BRG_EXIT_FAILURE;
    }
    return 0;
}

static brg_status open_data(const train_args *a, const brg_model_config *cfg, brg_data **data, brg_error *err) {
    if (a->data) return brg_data_bin_open(data, a->data, cfg->vocab, cfg->seq, err);
    return brg_data_synthetic_create(data, cfg->vocab, cfg->seq, a->opts.seed, err);
}

static void format_bytes(int64_t bytes, char *buf, size_t size) {
    if (bytes >= (INT64_C(1) << 30))
        snprintf(buf, size, "%.2f GiB", (double)bytes / (double)(INT64_C(1) << 30));
    else
        snprintf(buf, size, "%.1f MiB", (double)bytes / (double)(1 << 20));
}

/* The per-stage figures of the last step, as JSON. */
static json_t *rank_figures(const brg_trainer *tr) {
    json_t *ranks = json_array();
    for (int r = 0; r < brg_trainer_rank_count(tr); r++) {
        brg_rank_stats rs;
        if (brg_trainer_rank_stats(tr, r, &rs) != BRG_OK) continue;
        json_t *o = json_object();
        brg__json_set(o, "rank", json_integer(r));
        brg__json_set(o, "stage", json_integer(rs.stage));
        brg__json_set(o, "replica", json_integer(rs.replica));
        brg__json_set(o, "tensor_index", json_integer(rs.tensor_index));
        brg__json_set(o, "moment_bytes", json_integer(rs.moment_bytes));
        brg__json_set(o, "allreduce_wait_seconds", json_real(rs.allreduce_wait_seconds));
        brg__json_set(o, "compute_seconds", json_real(rs.compute_seconds));
        brg__json_set(o, "transfer_seconds", json_real(rs.transfer_seconds));
        brg__json_set(o, "wait_seconds", json_real(rs.wait_seconds));
        brg__json_set(o, "bubble", json_real(rs.bubble));
        brg__json_set(o, "peak_bytes", json_integer(rs.peak_bytes));
        brg__json_set(o, "activation_peak_bytes", json_integer(rs.activation_peak_bytes));
        brg__json_set(o, "peak_in_flight", json_integer(rs.peak_in_flight));
        brg__json_append(ranks, o);
    }
    return ranks;
}

/* "12.3 MiB, 10.1 MiB": each stage's peak in the last step. */
static void format_stage_peaks(const brg_trainer *tr, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int r = 0; r < brg_trainer_rank_count(tr) && used < size; r++) {
        brg_rank_stats rs;
        char one[32];
        if (brg_trainer_rank_stats(tr, r, &rs) != BRG_OK) continue;
        format_bytes(rs.peak_bytes, one, sizeof one);
        used += (size_t)snprintf(buf + used, size - used, "%s%s", r ? ", " : "", one);
    }
}

static void print_plan(const train_args *a, const brg_trainer *tr, const brg_graph *g) {
    int first[512], n = 0;
    if (brg_trainer_split(tr, first, 512, &n) != BRG_OK) return;
    if (a->opts.tensor_parallel > 1)
        printf("tensor parallel: %d ranks per stage of each replica%s\n", a->opts.tensor_parallel,
               a->opts.sequence_parallel ? ", with sequence parallelism" : "");
    if (a->opts.data_parallel > 1)
        printf("data parallel: %d replicas of the pipeline, %lld samples per step%s\n", a->opts.data_parallel,
               (long long)(a->opts.data_parallel * a->opts.micro_batch * a->opts.micro_batches),
               a->opts.zero ? ", ZeRO-1 (AdamW moments split across the replicas)" : "");
    printf("pipeline: %d stage%s x %d chunk%s, %s, recompute %s; layers per virtual stage:", a->opts.stages,
           a->opts.stages > 1 ? "s" : "", a->opts.chunks, a->opts.chunks > 1 ? "s" : "",
           brg_schedule_kind_name(a->opts.schedule), recompute_name(a->opts.recompute));
    for (int k = 0; k < n; k++) {
        int end = k + 1 < n ? first[k + 1] : brg_graph_layer_count(g);
        brg_layer_info lo, hi;
        brg_graph_layer_info(g, first[k], &lo);
        brg_graph_layer_info(g, end - 1, &hi);
        printf(" [%d: %s..%s]", k, lo.name, hi.name);
    }
    printf("\n");
}

static int train(const train_args *a, const brg_model_config *cfg, brg_graph *g, brg_data *data, brg_data *val) {
    brg_trainer *tr = NULL;
    brg_error err = {0};
    if (brg_trainer_create(&tr, g, &a->opts, &err) != BRG_OK) {
        rank_error(&a->launch, "%s", err.message);
        return BRG_EXIT_USAGE;
    }
    if (a->launch.world > 1)
        printf("job: %d processes launched by %s, one per rank; transfers over %s\n", a->launch.world,
               a->launch.launcher, a->opts.backend == BRG_BACKEND_CUDA ? "NCCL" : "MPI");
    int64_t params = brg_graph_param_count(g);
    char mem[32], peaks[512];
    format_bytes(brg_trainer_memory_bytes(tr), mem, sizeof mem);
    char replicas[48] = "";
    if (a->opts.data_parallel > 1) snprintf(replicas, sizeof replicas, " x %d replicas", a->opts.data_parallel);
    printf("model %s: %" PRId64 " parameters, %d layers; %" PRId64 " x %" PRId64 " samples%s of %" PRId64
           " tokens per step; data: %s; memory %s\n",
           cfg->name, params, brg_graph_layer_count(g), a->opts.micro_batches, a->opts.micro_batch, replicas, cfg->seq,
           a->data ? a->data : "synthetic (repeating random patterns)", mem);
    print_plan(a, tr, g);
    uint64_t mark = brg__json_build_begin();
    run_record r = {.json_mark = mark, .steps = json_array(), .ranks = json_array()};
    int rc = BRG_EXIT_OK;
    brg_checkpoint_options co = BRG_CHECKPOINT_OPTIONS_INIT;
    co.model = &a->model_cfg;
    co.keep = (int)a->keep;
    int64_t first = 1, resumed = 0;
    if (a->resume) {
        int64_t at = 0;
        brg_status s = brg_checkpoint_resume(tr, a->resume, &co, &at, &err);
        if (s == BRG_OK) {
            printf("resumed from %s at step %lld\n", a->resume, (long long)at);
            first = at + 1;
            resumed = 1;
        } else if (s == BRG_ERR_NOT_FOUND) {
            printf("%s: no complete step yet: starting from scratch\n", a->resume);
        } else {
            rank_error(&a->launch, "--resume: %s", err.message);
            rc = BRG_EXIT_FAILURE;
            first = a->steps + 1;
        }
    }
    if (a->init_from && !resumed && rc == BRG_EXIT_OK) { /* a resumed run already holds its weights */
        if (brg_checkpoint_import_hf(tr, a->init_from, &a->model_cfg, &err) != BRG_OK) {
            rank_error(&a->launch, "--init-from: %s", err.message);
            rc = BRG_EXIT_FAILURE;
            first = a->steps + 1;
        } else {
            printf("weights from %s\n", a->init_from);
        }
    }
    for (int64_t step = first; step <= a->steps; step++) {
        brg_step_stats st;
        if (brg_trainer_step(tr, data, &st) != BRG_OK) {
            rank_error(&a->launch, "%s", brg_trainer_last_error(tr));
            rc = BRG_EXIT_FAILURE;
            break;
        }
        float loss = (float)st.loss;
        r.seconds += st.seconds;
        r.tokens += st.tokens;
        if (step > first) {
            r.seconds_after_first += st.seconds;
            r.tokens_after_first += st.tokens;
        }
        if (st.peak_bytes > r.peak_bytes) r.peak_bytes = st.peak_bytes;
        json_t *rec = json_object();
        brg__json_set(rec, "step", json_integer(st.step));
        brg__json_set(rec, "loss", json_real(loss));
        brg__json_set(rec, "grad_norm", json_real(st.grad_norm));
        brg__json_set(rec, "lr", json_real(st.lr));
        brg__json_set(rec, "ms", json_real(st.seconds * 1e3));
        brg__json_set(rec, "tokens_per_second", json_real(st.tokens_per_second));
        brg__json_set(rec, "bubble", json_real(st.bubble));
        double vloss = NAN;
        if (val && ((a->val_every && step % a->val_every == 0) || step == a->steps)) {
            if (brg_trainer_evaluate(tr, val, a->val_batches, &vloss) != BRG_OK) {
                rank_error(&a->launch, "--val-data: %s", brg_trainer_last_error(tr));
                json_decref(rec);
                rc = BRG_EXIT_FAILURE;
                break;
            }
            brg__json_set(rec, "val_loss", json_real(vloss));
        }
        brg__json_append(r.steps, rec);
        if (a->checkpoint_dir && ((a->save_every && step % a->save_every == 0) || step == a->steps)) {
            if (brg_checkpoint_save(tr, a->checkpoint_dir, &co, &err) != BRG_OK) {
                rank_error(&a->launch, "--checkpoint-dir: %s", err.message);
                rc = BRG_EXIT_FAILURE;
                break;
            }
        }
        if (step == first || step == a->steps || step % a->log_every == 0) {
            format_stage_peaks(tr, peaks, sizeof peaks);
            /* Remaining time from the mean step so far: progress on long runs. */
            double eta = (double)(a->steps - step) * r.seconds / (double)(step - first + 1);
            printf("step %5" PRId64 "/%" PRId64 " | loss %.6f | norm %7.4f | lr %.3e | %9.1f tokens/s | %9.1f ms | "
                   "bubble %4.1f%% | peak %s | eta %.0f s\n",
                   st.step, a->steps, (double)loss, st.grad_norm, st.lr, st.tokens_per_second, st.seconds * 1e3,
                   100.0 * st.bubble, peaks, eta);
        }
        if (!isnan(vloss)) {
            printf("step %5" PRId64 "/%" PRId64 " | val loss %.6f over %lld micro-batches of %s\n", step, a->steps, vloss,
                   (long long)a->val_batches, a->val_data);
            fflush(stdout);
        }
    }
    uint64_t fingerprint = 0;
    if (rc == BRG_EXIT_OK && brg_trainer_fingerprint(tr, &fingerprint) != BRG_OK) rc = BRG_EXIT_FAILURE;
    if (rc == BRG_EXIT_OK) {
        json_decref(r.ranks);
        r.ranks = rank_figures(tr);
        format_bytes(r.peak_bytes, mem, sizeof mem);
        printf("trained %" PRId64 " tokens in %.2f s: %.1f tokens/s (%.1f tokens/s after the first step), peak "
               "memory %s\n",
               r.tokens, r.seconds, r.seconds > 0 ? (double)r.tokens / r.seconds : 0.0,
               r.seconds_after_first > 0 ? (double)r.tokens_after_first / r.seconds_after_first : 0.0, mem);
        if (a->trace) {
            if (brg_trainer_write_trace(tr, a->trace, &err) != BRG_OK) {
                rank_error(&a->launch, "--trace: %s", err.message);
                rc = BRG_EXIT_FAILURE;
            } else {
                printf("timeline of the last step: %s (open it in https://ui.perfetto.dev or chrome://tracing)\n",
                       a->trace);
            }
        }
        printf("params fingerprint: %016" PRIx64 "\n", fingerprint);
        if (a->stats && rc == BRG_EXIT_OK && a->launch.rank == 0) rc = write_stats(a, cfg, &r, params, fingerprint);
    }
    json_decref(r.steps);
    json_decref(r.ranks);
    brg_trainer_destroy(tr);
    return rc;
}

static int train_model(train_args *a, int argc, char **argv);

/* --global-batch into micro-batches per replica; the note on ZeRO-1 with one replica. */
static int resolve_batch(train_args *a) {
    brg_train_options *o = &a->opts;
    if (a->global_batch) {
        int64_t per_step = (int64_t)o->data_parallel * o->micro_batch;
        if (a->global_batch % per_step != 0) {
            rank_error(&a->launch, "--global-batch %lld is not a multiple of %d replicas x a micro-batch of %lld = %lld "
                                   "samples (each replica runs whole micro-batches)",
                       (long long)a->global_batch, o->data_parallel, (long long)o->micro_batch, (long long)per_step);
            return BRG_EXIT_USAGE;
        }
        if ((a->given & GIVEN_MICRO_BATCHES) && o->micro_batches != a->global_batch / per_step) {
            rank_error(&a->launch, "--global-batch %lld gives %lld micro-batches per replica, not --micro-batches %lld",
                       (long long)a->global_batch, (long long)(a->global_batch / per_step), (long long)o->micro_batches);
            return BRG_EXIT_USAGE;
        }
        o->micro_batches = a->global_batch / per_step;
    }
    if (o->zero && o->data_parallel == 1 && a->launch.rank == 0)
        printf("note: --zero 1 with one replica: nothing to split the optimizer state across; it is kept whole\n");
    return 0;
}

/* A hash of the command line, which every rank of a job must share. */
static uint64_t command_line_key(int argc, char **argv) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 1; i < argc; i++)
        for (const unsigned char *p = (const unsigned char *)argv[i];; p++) {
            h = (h ^ *p) * 0x100000001b3ULL;
            if (!*p) break;
        }
    return h;
}

/* Under mpirun or srun: one rank (a stage of a replica, or its share with tensor parallelism) per process,
 * --pp x --dp x --tp the job's size. */
static int join_launch(train_args *a, int argc, char **argv) {
    const brg_launch *l = &a->launch;
    if (l->world <= 1) return 0;
    int dp = a->opts.data_parallel, tp = a->opts.tensor_parallel;
    if (!(a->given & GIVEN_PP) && !a->plan) {
        if (l->world % (dp * tp) != 0 && tp == 1) {
            rank_error(l, "--dp %d does not divide the %d processes %s started (one process per stage of each "
                          "replica: start a multiple of %d)",
                       dp, l->world, l->launcher, dp);
            return BRG_EXIT_USAGE;
        }
        if (l->world % (dp * tp) != 0) {
            rank_error(l, "--dp %d x --tp %d does not divide the %d processes %s started (one process per rank: start "
                          "a multiple of %d)",
                       dp, tp, l->world, l->launcher, dp * tp);
            return BRG_EXIT_USAGE;
        }
        a->opts.stages = l->world / (dp * tp);
    }
    if (tp > 1 && a->opts.stages * dp * tp != l->world) {
        rank_error(l, "%s%s gives %d pipeline stage%s x %d replica%s x %d tensor-parallel ranks = %d ranks, but %s "
                      "started %d processes: one process runs each rank (start %d)",
                   a->plan ? "the plan " : "--pp", a->plan ? a->plan : "", a->opts.stages, a->opts.stages == 1 ? "" : "s",
                   dp, dp == 1 ? "" : "s", tp, a->opts.stages * dp * tp, l->launcher, l->world, a->opts.stages * dp * tp);
        return BRG_EXIT_USAGE;
    }
    if (tp == 1 && a->opts.stages * dp != l->world && dp > 1) {
        rank_error(l, "%s%s gives %d pipeline stage%s x %d replicas = %d ranks, but %s started %d processes: one "
                      "process runs each rank (start %d)",
                   a->plan ? "the plan " : "--pp", a->plan ? a->plan : "", a->opts.stages, a->opts.stages == 1 ? "" : "s",
                   dp, a->opts.stages * dp,
                   l->launcher, l->world, a->opts.stages * dp);
        return BRG_EXIT_USAGE;
    }
    if (tp == 1 && a->opts.stages != l->world && dp == 1) {
        rank_error(l, "%s%s gives %d pipeline stages, but %s started %d processes: one process runs each "
                              "stage (start %d, or ask for --pp %d)",
                           a->plan ? "the plan " : "--pp", a->plan ? a->plan : "", a->opts.stages, l->launcher,
                           l->world, a->opts.stages, l->world);
        return BRG_EXIT_USAGE;
    }
    a->opts.hosting = BRG_HOSTING_MPI;
    a->opts.consistency_key = command_line_key(argc, argv);
    return 0;
}

/* The parse step: the flags, then the model specification. 0: go on; -1: the help was printed; else an
 * exit code. */
static int parse_command(int argc, char **argv, train_args *a) {
    int rc = parse_args(argc, argv, a);
    if (rc != 0) return rc;
    brg_error err = {0};
    if (brg_model_parse(a->model, &a->model_cfg, &err) != BRG_OK) {
        fprintf(stderr, "brigade train: --model: %s\n", err.message);
        return BRG_EXIT_USAGE;
    }
    return 0;
}

int brg_cmd_train_parse(int argc, char **argv) {
    train_args a = {0};
    int rc = parse_command(argc, argv, &a);
    return rc < 0 ? BRG_EXIT_OK : rc;
}

static int cmd_train(train_args *a, int argc, char **argv) {
    int rc = parse_command(argc, argv, a);
    if (rc != 0) return rc < 0 ? BRG_EXIT_OK : rc;
    if (a->launch.rank == 0 && a->stats && (rc = check_writable(a->stats, "--stats")) != 0) return rc;
    if (a->launch.rank == 0 && a->trace && (rc = check_writable(a->trace, "--trace")) != 0) return rc;
    rc = train_model(a, argc, argv);
    return rc;
}

int brg_cmd_train(int argc, char **argv) {
    train_args a = {0};
    brg_error err = {0};
    if (brg_launch_init(&a.launch, &err) != BRG_OK) {
        fprintf(stderr, "brigade train: %s\n", err.message);
        return BRG_EXIT_FAILURE;
    }
    /* Only rank 0 prints the run; the others speak only of their failures (stderr). */
    if (a.launch.rank != 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "brigade train: rank %d: silencing its output failed\n", a.launch.rank);
        brg_launch_finalize(&a.launch, 1);
        return BRG_EXIT_FAILURE;
    }
    int rc = cmd_train(&a, argc, argv);
    fflush(stdout);
    brg_launch_finalize(&a.launch, rc != BRG_EXIT_OK);
    return rc;
}

static int train_model(train_args *a, int argc, char **argv) {
    int rc;
    brg_model_config cfg = a->model_cfg;
    brg_error err = {0};
    brg_data *data = NULL;
    if (open_data(a, &cfg, &data, &err) != BRG_OK) {
        fprintf(stderr, "brigade train: %s%s\n", a->data ? "--data: " : "", err.message);
        return BRG_EXIT_USAGE;
    }
    brg_graph *g = NULL;
    if (brg_model_build(&cfg, &g, &err) != BRG_OK) {
        fprintf(stderr, "brigade train: building %s: %s\n", cfg.name, err.message);
        brg_data_destroy(data);
        return BRG_EXIT_FAILURE;
    }
    if ((a->plan && (rc = apply_plan(a, g)) != 0) || (rc = join_launch(a, argc, argv)) != 0 ||
        (rc = resolve_batch(a)) != 0) {
        brg_graph_destroy(g);
        brg_data_destroy(data);
        return rc;
    }
    brg_data *val = NULL;
    if (a->val_data && brg_data_bin_open(&val, a->val_data, cfg.vocab, cfg.seq, &err) != BRG_OK) {
        fprintf(stderr, "brigade train: --val-data: %s\n", err.message);
        brg_graph_destroy(g);
        brg_data_destroy(data);
        return BRG_EXIT_USAGE;
    }
    rc = train(a, &cfg, g, data, val);
    brg_data_destroy(val);
    brg_graph_destroy(g);
    brg_data_destroy(data);
    return rc;
}
