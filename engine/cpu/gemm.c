/* The GEMM wrapper: C in tiles, one single-threaded cblas_sgemm per tile, the tiles spread over the
 * calling thread's pool.
 *
 * OpenBLAS's own threads would round differently with their number, so OpenBLAS stays single-threaded
 * and C is cut into tiles instead. The tiles depend only on (m, n, k): every C element comes from the
 * same sgemm call with the same operands whatever the thread count, hence bitwise the same result on
 * 1 thread or many. Each tile repacks its share of A and B, so tiles are kept large (at least
 * GEMM_PANEL_MIN on a side they split) and few (about GEMM_TILES_TARGET, more only for products of
 * many GFLOP): enough to keep a handful of threads busy, few enough that packing stays a few percent
 * of the multiply (measured on gpt2-small's shapes: 0-10% below one whole call, single-threaded). */
#include "cpu/kernels.h"

/* Tiles a split aims at; a dimension is halved (the longer first) until C has this many, and further
 * while a tile holds more than GEMM_TILE_MACS_MAX multiply-adds (a large product then has pieces short
 * enough that the threads finish together). */
#define GEMM_TILES_TARGET 8
#define GEMM_TILE_MACS_MAX ((int64_t)1 << 29)
/* No tile side is cut below this (rows or columns): narrower panels repack too often. A multiple of
 * every sgemm micro-kernel's unroll. */
#define GEMM_PANEL_MIN 256
#define GEMM_PANEL_ALIGN 64
/* Products of fewer multiply-adds than this run as one call: splitting them costs more than it saves. */
#define GEMM_SPLIT_MIN_MACS ((int64_t)1 << 22)

static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

static int64_t tiles_along(int64_t length, int64_t tile) { return tile > 0 ? (length + tile - 1) / tile : 0; }

/* Multiply-adds of a (rows, cols) block of C over k, in double: int64 could overflow (each side fits an
 * int), and the comparisons below only need to be the same every time. */
static double macs(int64_t rows, int64_t cols, int64_t k) {
    return (double)rows * (double)cols * (double)(k > 0 ? k : 1);
}

void brg__cpu_gemm_tiles(int64_t m, int64_t n, int64_t k, int64_t *tile_rows, int64_t *tile_cols) {
    int64_t rows = m, cols = n;
    if (m > 0 && n > 0 && macs(m, n, k) >= (double)GEMM_SPLIT_MIN_MACS) {
        while (tiles_along(m, rows) * tiles_along(n, cols) < GEMM_TILES_TARGET ||
               macs(rows, cols, k) > (double)GEMM_TILE_MACS_MAX) {
            int rows_can = rows >= 2 * GEMM_PANEL_MIN, cols_can = cols >= 2 * GEMM_PANEL_MIN;
            if (rows_can && (rows >= cols || !cols_can)) rows = round_up((rows + 1) / 2, GEMM_PANEL_ALIGN);
            else if (cols_can) cols = round_up((cols + 1) / 2, GEMM_PANEL_ALIGN);
            else break;
        }
    }
    *tile_rows = rows;
    *tile_cols = cols;
}

typedef struct gemm_job {
    int trans_a, trans_b;
    int64_t m, n, k;
    float alpha, beta;
    const float *a, *b;
    int64_t lda, ldb;
    float *c;
    int64_t ldc;
    const float *bias;             /* (n) or NULL: C's rows start as the bias (beta is then 1) */
    int64_t tile_rows, tile_cols;  /* from brg__cpu_gemm_tiles */
    int64_t col_tiles;             /* tiles along n */
} gemm_job;

static void gemm_tile(void *ctx, int64_t piece, float *scratch) {
    const gemm_job *g = ctx;
    int64_t i0 = piece / g->col_tiles * g->tile_rows, j0 = piece % g->col_tiles * g->tile_cols;
    int64_t rows = g->m - i0 < g->tile_rows ? g->m - i0 : g->tile_rows;
    int64_t cols = g->n - j0 < g->tile_cols ? g->n - j0 : g->tile_cols;
    const float *a = g->trans_a ? g->a + i0 : g->a + i0 * g->lda; // op(A) rows [i0, i0 + rows)
    const float *b = g->trans_b ? g->b + j0 * g->ldb : g->b + j0; // op(B) columns [j0, j0 + cols)
    float *c = g->c + i0 * g->ldc + j0;
    float beta = g->beta;
    if (g->bias) {
        /* OpenBLAS clears C in a pass of its own when beta = 0; writing the bias there instead and
         * accumulating onto it (beta = 1) saves the separate pass a bias add would take. */
        for (int64_t i = 0; i < rows; i++) memcpy(c + i * g->ldc, g->bias + j0, (size_t)cols * sizeof *c);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans,
                (int)rows, (int)cols, (int)g->k, g->alpha, a, (int)g->lda, b, (int)g->ldb, beta, c, (int)g->ldc);
}

static void gemm_run(gemm_job *g) {
    if (g->m == 0 || g->n == 0) return;
    brg__cpu_gemm_tiles(g->m, g->n, g->k, &g->tile_rows, &g->tile_cols);
    g->col_tiles = tiles_along(g->n, g->tile_cols);
    brg__cpu_parallel(tiles_along(g->m, g->tile_rows) * g->col_tiles, gemm_tile, g);
}

void brg__cpu_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    gemm_job g = {.trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k, .alpha = alpha, .beta = beta,
                  .a = a, .b = b, .lda = lda, .ldb = ldb, .c = c, .ldc = ldc};
    gemm_run(&g);
}

void brg__cpu_gemm_bias(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                        const float *b, int64_t ldb, const float *bias, float *c, int64_t ldc) {
    gemm_job g = {.trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k, .alpha = 1.0f, .beta = 1.0f,
                  .a = a, .b = b, .lda = lda, .ldb = ldb, .c = c, .ldc = ldc, .bias = bias};
    gemm_run(&g);
}
