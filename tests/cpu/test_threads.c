/* Kernel threads: the pool (every piece once, workspaces of their own, nested calls, many calls and
 * thread-count changes, threads that exit), the GEMM's tiles, and every kernel giving bitwise the same
 * results on 1, 2, 3 and 4 threads on shapes that make several pieces, the last one ragged. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernels.h"
#include "cpu_test.h"
#include "harness.h"
#include "test_cases.h"

/* ---- the pool ---- */

#define MAX_PIECES 300

typedef struct count_job {
    _Atomic int runs[MAX_PIECES];
} count_job;

static void count_piece(void *ctx, int64_t piece, float *scratch) {
    count_job *job = ctx;
    atomic_fetch_add(&job->runs[piece], 1);
}

/* Runs `pieces` pieces and checks each ran exactly once. */
static int every_piece_once(int64_t pieces) {
    count_job job;
    for (int i = 0; i < MAX_PIECES; i++) atomic_init(&job.runs[i], 0);
    brg__cpu_parallel(pieces, count_piece, &job);
    int ok = 1;
    for (int64_t i = 0; i < MAX_PIECES; i++) ok &= atomic_load(&job.runs[i]) == (i < pieces ? 1 : 0);
    return ok;
}

void test_pool_every_piece(void) {
    const int64_t counts[] = {0, 1, 2, 3, 7, 64, MAX_PIECES};
    int ok = 1;
    /* Many calls, the thread count changing between them: the pool is remade each time it changes. */
    for (int round = 0; round < 200; round++) {
        int threads = 1 + round % 4;
        brg__cpu_set_threads(threads);
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) ok &= every_piece_once(counts[c]);
        if (threads > 1) BRG_ASSERT_EQ_INT(brg__cpu_pool_helpers(), threads - 1);
    }
    CU_ASSERT(ok);
    brg__cpu_set_threads(3);
    for (int call = 0; call < 2000; call++) ok &= every_piece_once(1 + call % 17);
    CU_ASSERT(ok);
    BRG_ASSERT_EQ_INT(brg__cpu_pool_helpers(), 2);
    brg__cpu_threads_release();
    BRG_ASSERT_EQ_INT(brg__cpu_pool_helpers(), 0);
    CU_ASSERT(every_piece_once(50)); /* a new pool after a release */
    BRG_ASSERT_EQ_INT(brg__cpu_pool_helpers(), 2);
    brg__cpu_set_threads(1);
    CU_ASSERT(every_piece_once(50)); /* one thread: no pool at all */
    BRG_ASSERT_EQ_INT(brg__cpu_pool_helpers(), 0);
    brg__cpu_set_threads(0); /* out of range: one thread */
    BRG_ASSERT_EQ_INT(brg__cpu_threads(), 1);
    brg__cpu_threads_release();
}

typedef struct nested_job {
    _Atomic int inner_runs;
} nested_job;

static void inner_piece(void *ctx, int64_t piece, float *scratch) {
    nested_job *job = ctx;
    atomic_fetch_add(&job->inner_runs, 1);
}

static void outer_piece(void *ctx, int64_t piece, float *scratch) {
    /* A kernel called from a piece: runs its own pieces in order on this thread. */
    brg__cpu_parallel(5, inner_piece, ctx);
}

void test_pool_nested(void) {
    brg__cpu_set_threads(4);
    nested_job job;
    atomic_init(&job.inner_runs, 0);
    brg__cpu_parallel(9, outer_piece, &job);
    BRG_ASSERT_EQ_INT(atomic_load(&job.inner_runs), 45);
    brg__cpu_set_threads(1);
    brg__cpu_threads_release();
}

#define SCRATCH_FLOATS 4096

typedef struct scratch_job {
    float *own;     /* the caller's workspace */
    int64_t floats; /* each workspace's size */
    _Atomic int shared;   /* a piece found its workspace changed by another */
    _Atomic int missing;  /* a piece got no workspace */
    _Atomic int on_own;   /* pieces that ran on the caller's workspace */
} scratch_job;

static void scratch_piece(void *ctx, int64_t piece, float *scratch) {
    scratch_job *job = ctx;
    if (!scratch) {
        atomic_fetch_add(&job->missing, 1);
        return;
    }
    if (scratch == job->own) atomic_fetch_add(&job->on_own, 1);
    for (int64_t i = 0; i < job->floats; i++) scratch[i] = (float)piece;
    volatile float sink = 0;
    for (int rep = 0; rep < 20; rep++)
        for (int64_t i = 0; i < job->floats; i += 64) sink += scratch[i];
    for (int64_t i = 0; i < job->floats; i++)
        if (scratch[i] != (float)piece) {
            atomic_fetch_add(&job->shared, 1);
            break;
        }
}

void test_pool_scratch(void) {
    float *own = malloc(SCRATCH_FLOATS * sizeof(float));
    for (int threads = 1; threads <= 4; threads++) {
        brg__cpu_set_threads(threads);
        for (int round = 0; round < 20; round++) {
            /* the workspace grows between rounds */
            scratch_job job = {.own = own, .floats = SCRATCH_FLOATS / 2 + round * 100};
            atomic_init(&job.shared, 0);
            atomic_init(&job.missing, 0);
            atomic_init(&job.on_own, 0);
            brg__cpu_parallel_scratch(40, scratch_piece, &job, own, job.floats);
            BRG_ASSERT_EQ_INT(atomic_load(&job.shared), 0);
            BRG_ASSERT_EQ_INT(atomic_load(&job.missing), 0);
            if (threads == 1) BRG_ASSERT_EQ_INT(atomic_load(&job.on_own), 40);
        }
    }
    brg__cpu_set_threads(1);
    brg__cpu_threads_release();
    free(own);
}

static void *thread_with_pool(void *arg) {
    int threads = *(int *)arg;
    brg__cpu_set_threads(threads);
    int ok = every_piece_once(100);
    float *own = malloc(1000 * sizeof(float));
    scratch_job job = {.own = own, .floats = 1000};
    atomic_init(&job.shared, 0);
    atomic_init(&job.missing, 0);
    atomic_init(&job.on_own, 0);
    brg__cpu_parallel_scratch(10, scratch_piece, &job, own, 1000);
    free(own);
    ok &= atomic_load(&job.shared) == 0 && brg__cpu_pool_helpers() == threads - 1;
    /* no release: the pool goes with the thread (LeakSanitizer would report it otherwise) */
    return ok ? arg : NULL;
}

void test_pool_thread_exit(void) {
    int threads[4] = {2, 3, 4, 2};
    for (int round = 0; round < 5; round++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) CU_ASSERT_FATAL(pthread_create(&t[i], NULL, thread_with_pool, &threads[i]) == 0);
        for (int i = 0; i < 4; i++) {
            void *result = NULL;
            pthread_join(t[i], &result);
            CU_ASSERT(result == &threads[i]);
        }
    }
    /* The calling thread's count is its own. */
    BRG_ASSERT_EQ_INT(brg__cpu_threads(), 1);
    BRG_ASSERT_EQ_INT(brg__cpu_pool_helpers(), 0);
}

/* ---- the GEMM ---- */

static int64_t tiles(int64_t m, int64_t n, int64_t k, int64_t *rows, int64_t *cols) {
    brg__cpu_gemm_tiles(m, n, k, rows, cols);
    return brg__cpu_pieces(m, *rows) * brg__cpu_pieces(n, *cols);
}

void test_gemm_tiles(void) {
    int64_t r, c;
    /* gpt2-small's products at micro-batch 1: eight large tiles each */
    BRG_ASSERT_EQ_INT(tiles(1024, 3072, 768, &r, &c), 8);
    BRG_ASSERT_EQ_INT(r, 512);
    BRG_ASSERT_EQ_INT(c, 768);
    BRG_ASSERT_EQ_INT(tiles(1024, 2304, 768, &r, &c), 8);
    BRG_ASSERT_EQ_INT(tiles(1024, 768, 768, &r, &c), 8);
    BRG_ASSERT_EQ_INT(r, 256);
    BRG_ASSERT_EQ_INT(c, 384);
    /* the output head: tiles cut further, to about a GFLOP each */
    BRG_ASSERT_EQ_INT(tiles(1024, 50257, 768, &r, &c), 122);
    BRG_ASSERT_EQ_INT(r, 512);
    BRG_ASSERT_EQ_INT(c, 832);
    BRG_ASSERT_EQ_INT(tiles(50257, 768, 1024, &r, &c), 113);
    BRG_ASSERT_EQ_INT(tiles(1024, 768, 50257, &r, &c), 8); /* no side left to cut */
    /* small products stay whole; thin ones split only their long side */
    BRG_ASSERT_EQ_INT(tiles(100, 100, 100, &r, &c), 1);
    BRG_ASSERT_EQ_INT(tiles(8, 1 << 20, 64, &r, &c), 8);
    BRG_ASSERT_EQ_INT(r, 8);
    BRG_ASSERT_EQ_INT(tiles(700, 300, 5000, &r, &c), 2);
    BRG_ASSERT_EQ_INT(r, 384);
    BRG_ASSERT_EQ_INT(c, 300);
    BRG_ASSERT_EQ_INT(tiles(0, 10, 10, &r, &c), 0);
    /* Any shape: split sides are multiples of 64, no smaller than 256; splitting stops at 8 tiles of at
     * most 2^29 multiply-adds, or when no side is long enough to cut. */
    uint64_t rng = 3;
    int ok = 1;
    for (int i = 0; i < 2000; i++) {
        int64_t m = 1 + (int64_t)(brg__rand_uniform(&rng) * 5000), n = 1 + (int64_t)(brg__rand_uniform(&rng) * 5000);
        int64_t k = 1 + (int64_t)(brg__rand_uniform(&rng) * 2000);
        int64_t count = tiles(m, n, k, &r, &c);
        ok &= r == m || (r % 64 == 0 && r >= 256 && r < m);
        ok &= c == n || (c % 64 == 0 && c >= 256 && c < n);
        ok &= (count >= 8 && r * c * k <= ((int64_t)1 << 29)) || (r < 512 && c < 512) || m * n * k < (1 << 22);
        int64_t r2, c2;
        tiles(m, n, k, &r2, &c2);
        ok &= r2 == r && c2 == c;
    }
    CU_ASSERT(ok);
}

/* C = alpha op(A) op(B) + beta C on 1 to 4 threads (ragged tiles), against 1 thread and a double loop. */
static void gemm_case(int ta, int tb, int64_t m, int64_t n, int64_t k, uint64_t seed) {
    int64_t tile_rows, tile_cols;
    CU_ASSERT(tiles(m, n, k, &tile_rows, &tile_cols) > 1);
    CU_ASSERT(m % tile_rows != 0 || n % tile_cols != 0); // a ragged last tile
    float *a = malloc((size_t)(m * k) * sizeof(float)), *b = malloc((size_t)(k * n) * sizeof(float));
    float *c0 = malloc((size_t)(m * n) * sizeof(float)), *c1 = malloc((size_t)(m * n) * sizeof(float));
    float *cn = malloc((size_t)(m * n) * sizeof(float));
    uint64_t rng = seed;
    for (int64_t i = 0; i < m * k; i++) a[i] = brg__rand_normal(&rng);
    for (int64_t i = 0; i < k * n; i++) b[i] = brg__rand_normal(&rng);
    for (int64_t i = 0; i < m * n; i++) c0[i] = brg__rand_normal(&rng);
    int64_t lda = ta ? m : k, ldb = tb ? k : n;
    memcpy(c1, c0, (size_t)(m * n) * sizeof(float));
    brg__cpu_set_threads(1);
    brg__cpu_gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 0.25f, c1, n);
    for (int threads = 2; threads <= 4; threads++) {
        memcpy(cn, c0, (size_t)(m * n) * sizeof(float));
        brg__cpu_set_threads(threads);
        brg__cpu_gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 0.25f, cn, n);
        CU_ASSERT(memcmp(c1, cn, (size_t)(m * n) * sizeof(float)) == 0);
    }
    /* spot checks against the definition */
    double worst = 0;
    for (int s = 0; s < 200; s++) {
        int64_t i = (int64_t)(brg__rand_uniform(&rng) * (float)m) % m;
        int64_t j = (int64_t)(brg__rand_uniform(&rng) * (float)n) % n;
        double sum = 0, mag = 0;
        for (int64_t l = 0; l < k; l++) {
            double p = (double)(ta ? a[l * lda + i] : a[i * lda + l]) * (tb ? b[j * ldb + l] : b[l * ldb + j]);
            sum += p;
            mag += fabs(p);
        }
        double want = 0.5 * sum + 0.25 * c0[i * n + j];
        worst = fmax(worst, fabs(c1[i * n + j] - want) / (mag + 1.0));
    }
    CU_ASSERT(worst < 1e-5);
    brg__cpu_set_threads(1);
    brg__cpu_threads_release();
    free(a), free(b), free(c0), free(c1), free(cn);
}

void test_gemm_threads(void) {
    for (int flags = 0; flags < 4; flags++) gemm_case(flags & 1, flags >> 1, 700, 600, 40, 200 + flags);
    gemm_case(0, 1, 40, 1500, 100, 210); /* few rows: columns split */
    gemm_case(1, 0, 1300, 90, 50, 211);  /* few columns: rows split */
}

/* ---- whole-tensor kernels ---- */

void test_vectors_threads(void) {
    const int64_t n = 5 * BRG__CPU_PIECE_ELEMENTS + 123; /* several pieces, a ragged last one */
    float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
    float *ref[4], *got[4]; /* accumulate, scale, adamw param, adamw m/v */
    uint64_t rng = 17;
    for (int64_t i = 0; i < n; i++) {
        x[i] = brg__rand_normal(&rng);
        y[i] = brg__rand_normal(&rng);
    }
    double ref_squares = 0, naive = 0;
    for (int64_t i = 0; i < n; i++) naive += (double)x[i] * (double)x[i];
    int same = 1;
    for (int threads = 1; threads <= 4; threads++) {
        brg__cpu_set_threads(threads);
        float **out = threads == 1 ? ref : got;
        for (int v = 0; v < 4; v++) {
            out[v] = malloc((size_t)n * sizeof(float));
            memcpy(out[v], v == 3 ? y : x, (size_t)n * sizeof(float));
        }
        brg__cpu_accumulate(out[0], y, n);
        brg__cpu_scale(out[1], n, 0.37f);
        float *m = calloc((size_t)n, sizeof(float)), *v2 = calloc((size_t)n, sizeof(float));
        for (int step = 1; step <= 2; step++)
            brg__cpu_adamw(out[2], y, m, v2, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step);
        memcpy(out[3], m, (size_t)n * sizeof(float));
        free(m);
        free(v2);
        double squares = brg__cpu_sum_squares(x, n);
        if (threads == 1) {
            ref_squares = squares;
            BRG_ASSERT_NEAR(squares, naive, 1e-10 * naive);
        } else {
            same &= squares == ref_squares;
            for (int v = 0; v < 4; v++) {
                same &= memcmp(ref[v], got[v], (size_t)n * sizeof(float)) == 0;
                free(got[v]);
            }
        }
    }
    CU_ASSERT(same);
    int sums_right = 1;
    for (int64_t i = 0; i < n; i++) sums_right &= ref[0][i] == x[i] + y[i];
    CU_ASSERT(sums_right);
    /* the pieces of the sum of squares follow n, and stay few */
    BRG_ASSERT_EQ_INT(brg__cpu_sum_squares_piece(10), BRG__CPU_PIECE_ELEMENTS);
    CU_ASSERT(brg__cpu_pieces(124000000, brg__cpu_sum_squares_piece(124000000)) <= 256);
    BRG_ASSERT_NEAR(brg__cpu_sum_squares(x, 0), 0.0, 0.0);
    for (int v = 0; v < 4; v++) free(ref[v]);
    brg__cpu_set_threads(1);
    brg__cpu_threads_release();
    free(x);
    free(y);
}

/* ---- every op ---- */

static brg_tensor *input(brg_graph *g, const char *name, brg_dtype dtype, int ndim, const int64_t *shape) {
    return brg_input(g, name, dtype, ndim, shape);
}

static brg_tensor *param(brg_graph *g, const char *name, int ndim, const int64_t *shape) {
    return brg_param(g, name, ndim, shape, (brg_init){BRG_INIT_NORMAL, 0.02f});
}

void test_ops_threads(void) {
    brg_graph *g;
    /* Embedding: 600 positions (rows of 300: 12 pieces), 300 columns (2 pieces of the scatter-add). */
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *tok = input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, 300});
    check_op_threads("embedding 600 x 300", g, brg_embedding(g, tok, 50, 300, "wte"), 2, 300);
    brg_graph_destroy(g);

    /* Linear: 1400 x 96 -> 1100: tiled forward and backward GEMMs, 5 pieces of bias columns. */
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *x = input(g, "x", BRG_F32, 3, (int64_t[]){BRG_BATCH, 700, 96});
    check_op_threads("linear 1400 x 96 -> 1100", g, brg_linear(g, x, 1100, "fc"), 2, 301);
    brg_graph_destroy(g);

    for (int flags = 0; flags < 4; flags++) {
        int ta = flags & BRG_MATMUL_TRANSPOSE_A, tb = flags & BRG_MATMUL_TRANSPOSE_B;
        char label[64];
        /* batched: one product per leading index */
        BRG_ASSERT_OK(brg_graph_create(&g), "");
        int64_t m = 40, k = 24, n = 36;
        brg_tensor *a = input(g, "a", BRG_F32, 4, (int64_t[]){BRG_BATCH, 3, ta ? k : m, ta ? m : k});
        brg_tensor *b = input(g, "b", BRG_F32, 4, (int64_t[]){BRG_BATCH, 3, tb ? n : k, tb ? k : n});
        snprintf(label, sizeof label, "matmul batched flags %d", flags);
        check_op_threads(label, g, brg_matmul(g, a, b, flags, "mm"), 2, 310 + flags);
        brg_graph_destroy(g);
        /* b shared by every leading index: stacked (a not transposed) or summed over them in order */
        BRG_ASSERT_OK(brg_graph_create(&g), "");
        m = 300, k = 64, n = 600;
        a = input(g, "a", BRG_F32, 3, (int64_t[]){BRG_BATCH, ta ? k : m, ta ? m : k});
        b = param(g, "b", 2, (int64_t[]){tb ? n : k, tb ? k : n});
        snprintf(label, sizeof label, "matmul shared b flags %d", flags);
        check_op_threads(label, g, brg_matmul(g, a, b, flags, "mm"), 3, 320 + flags);
        brg_graph_destroy(g);
    }

    /* Add: same shapes (n = 5 pieces and a ragged one); a bias; a position embedding (T, C). */
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *a = input(g, "a", BRG_F32, 3, (int64_t[]){BRG_BATCH, 210, 200});
    brg_tensor *b = input(g, "b", BRG_F32, 3, (int64_t[]){BRG_BATCH, 210, 200});
    check_op_threads("add 2 x 210 x 200", g, brg_add(g, a, b, "sum"), 2, 330);
    brg_graph_destroy(g);
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    a = input(g, "a", BRG_F32, 3, (int64_t[]){BRG_BATCH, 210, 700});
    b = param(g, "b", 1, (int64_t[]){700});
    check_op_threads("add bias (700)", g, brg_add(g, a, b, "sum"), 2, 331);
    brg_graph_destroy(g);
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    a = input(g, "a", BRG_F32, 3, (int64_t[]){BRG_BATCH, 90, 500});
    b = input(g, "b", BRG_F32, 2, (int64_t[]){90, 500});
    check_op_threads("add position (90, 500)", g, brg_add(g, a, b, "sum"), 2, 332);
    brg_graph_destroy(g);

    /* Layernorm: rows of 600 (27 per piece: 4 pieces), 3 pieces of weight columns. */
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    x = input(g, "x", BRG_F32, 3, (int64_t[]){BRG_BATCH, 50, 600});
    check_op_threads("layernorm 100 x 600", g, brg_layernorm(g, x, 1e-5f, "ln"), 2, 340);
    brg_graph_destroy(g);

    /* GELU and ReLU: 7 pieces, the last ragged. */
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    x = input(g, "x", BRG_F32, 2, (int64_t[]){BRG_BATCH, 50001});
    check_op_threads("gelu 100002", g, brg_gelu(g, x, "act"), 2, 350);
    brg_graph_destroy(g);
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    x = input(g, "x", BRG_F32, 2, (int64_t[]){BRG_BATCH, 50001});
    check_op_threads("relu 100002", g, brg_relu(g, x, "act"), 2, 351);
    brg_graph_destroy(g);

    /* Attention: 3 query blocks x 8 (b, h) in forward (2 a piece), 8 pieces with workspaces in backward. */
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *qkv = input(g, "qkv", BRG_F32, 3, (int64_t[]){BRG_BATCH, 300, 3 * 48});
    check_op_threads("attention B=2 T=300 C=48 NH=4", g, brg_causal_attention(g, qkv, 4, "attn"), 2, 360);
    brg_graph_destroy(g);

    /* Cross-entropy: rows of 1000 (16 per piece): 90 rows, 6 pieces. */
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *logits = input(g, "logits", BRG_F32, 3, (int64_t[]){BRG_BATCH, 45, 1000});
    brg_tensor *targets = input(g, "targets", BRG_I32, 2, (int64_t[]){BRG_BATCH, 45});
    check_op_threads("cross_entropy 90 x 1000", g, brg_cross_entropy(g, logits, targets, "loss"), 2, 370);
    brg_graph_destroy(g);
}

/* The shapes above do make several pieces (else they would prove nothing). */
void test_ops_threads_pieces(void) {
    BRG_ASSERT_EQ_INT(brg__cpu_pieces(600, brg__cpu_rows_per_piece(300)), 12);
    BRG_ASSERT_EQ_INT(brg__cpu_pieces(300, brg__cpu_columns_per_piece(600)), 2);
    int64_t r, c;
    CU_ASSERT(tiles(1400, 1100, 96, &r, &c) > 2);  /* linear forward */
    CU_ASSERT(tiles(1400, 96, 1100, &r, &c) > 2);  /* its input gradient */
    CU_ASSERT(tiles(1100, 96, 1400, &r, &c) > 2);  /* its weight gradient */
    BRG_ASSERT_EQ_INT(brg__cpu_pieces(1100, brg__cpu_columns_per_piece(1400)), 5);
    CU_ASSERT(tiles(900, 600, 64, &r, &c) > 1);    /* shared b, stacked */
    CU_ASSERT(tiles(64, 600, 900, &r, &c) > 1);    /* its gradient */
    BRG_ASSERT_EQ_INT(brg__cpu_pieces(2 * 210 * 200, BRG__CPU_PIECE_ELEMENTS), 6);
    BRG_ASSERT_EQ_INT(brg__cpu_pieces(700, brg__cpu_columns_per_piece(420)), 3);
    BRG_ASSERT_EQ_INT(brg__cpu_pieces(90 * 500, brg__cpu_columns_per_piece(2)), 6);
    BRG_ASSERT_EQ_INT(brg__cpu_pieces(100, brg__cpu_rows_per_piece(600)), 4);
    BRG_ASSERT_EQ_INT(brg__cpu_pieces(600, brg__cpu_columns_per_piece(100)), 3);
    BRG_ASSERT_EQ_INT(brg__cpu_pieces(100002, BRG__CPU_PIECE_ELEMENTS), 7);
    BRG_ASSERT_EQ_INT(brg__cpu_pieces(90, brg__cpu_rows_per_piece(1000)), 6);
}
