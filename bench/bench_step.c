/* One training step of a GPT on the CPU backend against the machine's sgemm rate (DESIGN §12: a
 * gpt2-small step at micro-batch 1, sequence 1024, should reach >= 60% of the sgemm rate on all cores).
 *
 * For the machine's cores (the trainer's default kernel threads: one stage gets them all) and for one
 * thread it measures:
 *   - the sgemm rate: a 1024 x 3072 x 768 product (the MLP's first GEMM) through the backend's own tiled
 *     GEMM (OpenBLAS single-threaded inside each tile, as the trainer runs it), in rounds of a quarter
 *     second for about two seconds, before and after the steps; the best round is the machine's rate.
 *     OpenBLAS's own threaded sgemm on the same product is shown beside it, and the step's share of it
 *     (the trainer cannot use it: it rounds differently with its thread count);
 *   - the step: a trainer at micro-batch 1 (one stage) through the public API, one warm-up step, then
 *     STEPS timed steps;
 * and prints tokens/s, the model's GFLOP/s (brg_model_flops_per_token x tokens / s) and its share of the
 * sgemm rate, over the timed steps on average and for the best one. Wall time and the process's CPU time
 * are both shown: on a machine shared with other work, wall time also counts the time the threads waited
 * for a core, which CPU time does not ("per core" divides the work by the CPU seconds spent).
 *   bench_step [MODEL_SPEC] [STEPS] [THREADS]   (default gpt2-small, 2 timed steps; THREADS measures that
 *                                                 thread count alone, e.g. under a profiler) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "brigade.h"
#include "cpu/cpu.h"

#define GEMM_M 1024
#define GEMM_N 3072
#define GEMM_K 768
#define SGEMM_ROUNDS 8
#define SGEMM_ROUND_SECONDS 0.25

static long minor_faults(void) {
    struct rusage u;
    return getrusage(RUSAGE_SELF, &u) == 0 ? u.ru_minflt : 0;
}

static double clock_seconds(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct rate {
    double wall; /* GFLOP per second of wall time, best round */
    double cpu;  /* GFLOP per CPU second of the process, best round */
} rate;

/* GFLOP/s of the tiled GEMM on `threads` threads of this thread's pool; or, with `openblas_threads`,
 * of one cblas_sgemm call on that many OpenBLAS threads. *out keeps the best rates it held and found. */
static int sgemm_rate(int threads, int openblas_threads, rate *out) {
    float *a = malloc((size_t)GEMM_M * GEMM_K * sizeof(float));
    float *b = malloc((size_t)GEMM_N * GEMM_K * sizeof(float));
    float *c = malloc((size_t)GEMM_M * GEMM_N * sizeof(float));
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        fprintf(stderr, "bench_step: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)GEMM_M * GEMM_K; i++) a[i] = (float)(i % 13) * 0.01f;
    for (size_t i = 0; i < (size_t)GEMM_N * GEMM_K; i++) b[i] = (float)(i % 7) * 0.01f;
    openblas_set_num_threads(openblas_threads > 0 ? openblas_threads : 1);
    brg__cpu_set_threads(threads);
    for (int round = -1; round < SGEMM_ROUNDS; round++) { /* round -1: warm-up */
        double wall0 = clock_seconds(CLOCK_MONOTONIC), cpu0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
        int calls = 0;
        do {
            if (openblas_threads > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, GEMM_M, GEMM_N, GEMM_K, 1.0f, a, GEMM_K, b,
                            GEMM_K, 0.0f, c, GEMM_N);
            else
                brg__cpu_gemm(0, 1, GEMM_M, GEMM_N, GEMM_K, 1.0f, a, GEMM_K, b, GEMM_K, 0.0f, c, GEMM_N);
            calls++;
        } while (clock_seconds(CLOCK_MONOTONIC) - wall0 < SGEMM_ROUND_SECONDS);
        if (round < 0) continue;
        double wall = clock_seconds(CLOCK_MONOTONIC) - wall0, cpu = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
        double gflop = 2e-9 * GEMM_M * GEMM_N * GEMM_K * calls;
        if (gflop / wall > out->wall) out->wall = gflop / wall;
        if (gflop / cpu > out->cpu) out->cpu = gflop / cpu;
    }
    brg__cpu_threads_release();
    brg__cpu_set_threads(1);
    openblas_set_num_threads(1);
    free(a), free(b), free(c);
    return 0;
}

typedef struct step_result {
    double seconds, cpu_seconds;           /* mean per timed step */
    double best_seconds, best_cpu_seconds; /* the fastest timed step (wall), and the least CPU time */
    double tokens;                         /* per step */
    uint64_t fingerprint;                  /* of the parameters after the last step */
} step_result;

static int measure_steps(const brg_graph *g, const brg_model_config *cfg, int threads, int steps, step_result *out) {
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.micro_batch = 1;
    o.micro_batches = 1;
    o.blas_threads = threads; /* 0: the machine's cores (one stage) */
    brg_error err = {0};
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    if (brg_data_synthetic_create(&d, cfg->vocab, cfg->seq, 1, &err) != BRG_OK ||
        brg_trainer_create(&t, g, &o, &err) != BRG_OK) {
        fprintf(stderr, "bench_step: %s\n", err.message);
        brg_data_destroy(d);
        return 1;
    }
    *out = (step_result){0, 0, 1e30, 1e30, 0, 0};
    for (int s = 0; s <= steps; s++) {
        brg_step_stats st;
        double cpu0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
        long faults0 = minor_faults();
        if (brg_trainer_step(t, d, &st) != BRG_OK) {
            fprintf(stderr, "bench_step: %s\n", brg_trainer_last_error(t));
            brg_trainer_destroy(t);
            brg_data_destroy(d);
            return 1;
        }
        double cpu = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
        printf("  %s step %d: %6.3f s wall, %6.3f s CPU, %7ld page faults, loss %.4f\n",
               s == 0 ? "warm-up" : "timed  ", s, st.seconds, cpu, minor_faults() - faults0, st.loss);
        fflush(stdout);
        if (s == 0) continue; /* first touch of memory, OpenBLAS buffers, the pool's threads */
        out->seconds += st.seconds / steps;
        out->cpu_seconds += cpu / steps;
        if (st.seconds < out->best_seconds) out->best_seconds = st.seconds;
        if (cpu < out->best_cpu_seconds) out->best_cpu_seconds = cpu;
        out->tokens = (double)st.tokens;
    }
    brg_status s = brg_trainer_fingerprint(t, &out->fingerprint);
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    return s != BRG_OK;
}

static void report(const char *label, int threads, double flops_per_token, const step_result *s, const rate *sgemm,
                   const rate *openblas) {
    double mean = s->tokens / s->seconds, best = s->tokens / s->best_seconds;
    double per_cpu = s->tokens / s->cpu_seconds;
    printf("%s, %d kernel thread%s (sgemm %.1f GFLOP/s wall, %.1f GFLOP per CPU-s):\n", label, threads,
           threads == 1 ? "" : "s", sgemm->wall, sgemm->cpu);
    printf("  wall, mean: %7.1f tokens/s  %6.1f GFLOP/s  %5.1f%% of sgemm  (%.2f s/step)\n", mean,
           flops_per_token * mean * 1e-9, 100.0 * flops_per_token * mean * 1e-9 / sgemm->wall, s->seconds);
    printf("  wall, best: %7.1f tokens/s  %6.1f GFLOP/s  %5.1f%% of sgemm  (%.2f s/step)\n", best,
           flops_per_token * best * 1e-9, 100.0 * flops_per_token * best * 1e-9 / sgemm->wall, s->best_seconds);
    printf("  CPU,  mean: %7.1f tokens/CPU-s  %6.1f GFLOP/CPU-s  %5.1f%% of sgemm per CPU-s  (%.2f CPU-s/step)\n",
           per_cpu, flops_per_token * per_cpu * 1e-9, 100.0 * flops_per_token * per_cpu * 1e-9 / sgemm->cpu,
           s->cpu_seconds);
    printf("  against OpenBLAS's own %d-thread sgemm (%.1f GFLOP/s): %.1f%% (mean), %.1f%% (best)\n", threads,
           openblas->wall, 100.0 * flops_per_token * mean * 1e-9 / openblas->wall,
           100.0 * flops_per_token * best * 1e-9 / openblas->wall);
}

static int measure_sgemm(int configs, const int *counts, rate *sgemm, rate *openblas) {
    for (int i = 0; i < configs; i++) {
        /* OpenBLAS's threads first: they poll a while after its calls, which the tiled GEMM then outlasts. */
        if (sgemm_rate(1, counts[i], &openblas[i]) || sgemm_rate(counts[i], 0, &sgemm[i])) return 1;
        printf("sgemm %dx%dx%d on %d thread%s: %.1f GFLOP/s through the tiled GEMM, %.1f GFLOP/s OpenBLAS's own "
               "(best so far)\n",
               GEMM_M, GEMM_N, GEMM_K, counts[i], counts[i] == 1 ? "" : "s", sgemm[i].wall, openblas[i].wall);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *spec = argc > 1 ? argv[1] : "gpt2-small";
    int steps = argc > 2 ? atoi(argv[2]) : 2;
    if (steps < 1) steps = 1;
    int only = argc > 3 ? atoi(argv[3]) : 0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int all = cores > 1 ? (int)cores : 1;
    brg_model_config cfg;
    brg_error err = {0};
    brg_graph *g = NULL;
    if (brg_model_parse(spec, &cfg, &err) != BRG_OK || brg_model_build(&cfg, &g, &err) != BRG_OK) {
        fprintf(stderr, "bench_step: %s\n", err.message);
        return 1;
    }
    double flops_per_token = brg_model_flops_per_token(&cfg);
    printf("model %s: %.1fM parameters, %.3f GFLOP per token; micro-batch 1, sequence %lld, one stage, %d timed "
           "step%s after one warm-up\n",
           spec, (double)brg_model_param_count(&cfg) * 1e-6, flops_per_token * 1e-9, (long long)cfg.seq, steps,
           steps == 1 ? "" : "s");
    int counts[2] = {only > 0 ? only : all, 1};
    int configs = only > 0 || all == 1 ? 1 : 2;
    rate sgemm[2] = {{0, 0}, {0, 0}}, openblas[2] = {{0, 0}, {0, 0}};
    step_result step[2];
    if (measure_sgemm(configs, counts, sgemm, openblas)) {
        brg_graph_destroy(g);
        return 1;
    }
    for (int i = 0; i < configs; i++) {
        printf("training, %d kernel thread%s:\n", counts[i], counts[i] == 1 ? "" : "s");
        /* The trainer's default (0) is what users get: the cores divided among the stages. */
        if (measure_steps(g, &cfg, only > 0 || i == 1 ? counts[i] : 0, steps, &step[i])) {
            brg_graph_destroy(g);
            return 1;
        }
    }
    /* The sgemm rates once more: the best of before and after, as other work on the machine comes and goes. */
    if (measure_sgemm(configs, counts, sgemm, openblas)) {
        brg_graph_destroy(g);
        return 1;
    }
    printf("\n");
    for (int i = 0; i < configs; i++)
        report(only > 0 ? "as asked" : i == 0 ? "all cores" : "one core", counts[i], flops_per_token, &step[i],
               &sgemm[i], &openblas[i]);
    if (configs == 2)
        printf("parameters after the steps: %016llx on %d threads, %016llx on one: %s\n",
               (unsigned long long)step[0].fingerprint, all, (unsigned long long)step[1].fingerprint,
               step[0].fingerprint == step[1].fingerprint ? "bitwise alike" : "DIFFERENT");
    if (configs == 2)
        printf("speed-up on %d threads: %.2fx (wall, mean), %.2fx (wall, best); target >= 60%% of the sgemm rate "
               "on all cores\n",
               all, step[1].seconds / step[0].seconds, step[1].best_seconds / step[0].best_seconds);
    brg_graph_destroy(g);
    return 0;
}
