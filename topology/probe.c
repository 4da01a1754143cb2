/* The CPU probe: one core's sgemm rate and memory copy bandwidth, measured in well under a second. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "topology_internal.h"

#define PROBE_N 384                    /* 2 * 384^3 = 113 MFLOP per call */
#define PROBE_GEMM_SECONDS 0.15
#define PROBE_COPY_BYTES (16u << 20)   /* beyond the last-level cache of most parts */
#define PROBE_COPY_SECONDS 0.1
#define PROBE_MAX_REPEATS 1000

/* Best of repeated calls, so that a preempted call does not lower the figure. */
static double probe_gemm(float *a, float *b, float *c) {
    const int n = PROBE_N;
    double best = 0.0, start = brg__now_seconds();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
    for (int r = 0; r < PROBE_MAX_REPEATS && (r < 3 || brg__now_seconds() - start < PROBE_GEMM_SECONDS); r++) {
        double t0 = brg__now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = brg__now_seconds() - t0;
        double rate = dt > 0 ? 2.0 * n * (double)n * n / dt : 0.0;
        if (rate > best) best = rate;
    }
    return best;
}

/* A copy moves each byte twice through memory (read and write): that is the figure a roofline wants. */
static double probe_copy(char *src, char *dst) {
    double best = 0.0, start = brg__now_seconds();
    memcpy(dst, src, PROBE_COPY_BYTES); /* warm-up: fault the pages in */
    for (int r = 0; r < PROBE_MAX_REPEATS && (r < 3 || brg__now_seconds() - start < PROBE_COPY_SECONDS); r++) {
        src[r % PROBE_COPY_BYTES] = (char)r;
        double t0 = brg__now_seconds();
        memcpy(dst, src, PROBE_COPY_BYTES);
        double dt = brg__now_seconds() - t0;
        double rate = dt > 0 ? 2.0 * PROBE_COPY_BYTES / dt : 0.0;
        if (rate > best) best = rate;
    }
    return best;
}

brg_status brg__cpu_probe(double *flops_per_core, double *copy_bandwidth_per_core, brg_error *err) {
    size_t elems = (size_t)PROBE_N * PROBE_N;
    float *a = brg__malloc(3 * elems * sizeof *a);
    char *src = brg__malloc(PROBE_COPY_BYTES), *dst = brg__malloc(PROBE_COPY_BYTES);
    if (!a || !src || !dst) {
        free(a);
        free(src);
        free(dst);
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "CPU probe: out of memory");
    }
    for (size_t i = 0; i < 3 * elems; i++) a[i] = (float)(i % 17) * 0.125f;
    memset(src, 1, PROBE_COPY_BYTES);
    int threads = openblas_get_num_threads();
    openblas_set_num_threads(1); /* one core's rate; a device's peak is that times its cores */
    *flops_per_core = probe_gemm(a, a + elems, a + 2 * elems);
    openblas_set_num_threads(threads);
    *copy_bandwidth_per_core = probe_copy(src, dst);
    free(a);
    free(src);
    free(dst);
    if (*flops_per_core <= 0 || *copy_bandwidth_per_core <= 0)
        return brg__error_set(err, BRG_ERR_BACKEND, "CPU probe: the clock did not advance");
    return BRG_OK;
}
