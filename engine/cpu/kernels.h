/* CPU backend internals: the kernels of each op family (one file per family) and the small helpers
 * they share: dimensions with BRG_BATCH bound, a single sgemm call, the fixed pieces work is split into,
 * vectorizable reductions and exp. Not installed. */
#ifndef BRIGADE_CPU_KERNELS_H
#define BRIGADE_CPU_KERNELS_H

/* The element-wise loops below are the hot path outside the GEMMs. The default build (-O2) leaves
 * loops scalar, so these files ask GCC for the loop vectorizer. Neither option changes a result:
 * no reassociation is allowed (reductions are written with explicit lanes, in a fixed order), and
 * nothing here reads errno or floating-point exception flags. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "no-math-errno", "no-trapping-math")
#endif

/* The hottest element-wise loops are compiled twice, for AVX2 and for the x86-64 baseline, and the
 * loader picks one. Only the vector width differs (no FMA, which would change rounding): every element
 * sees the same operations in the same order, so both give bitwise the same results. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__)
#define BRG__CPU_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define BRG__CPU_VECTOR_CLONES
#endif

#include <cblas.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "cpu/cpu.h"

/* ---- kernels, one entry point per op and direction (the dispatcher picks by kind) ---- */
brg_status brg__cpu_embedding_forward(const brg__op_call *call);
brg_status brg__cpu_embedding_backward(const brg__op_call *call);
brg_status brg__cpu_linear_forward(const brg__op_call *call);
brg_status brg__cpu_linear_backward(const brg__op_call *call);
brg_status brg__cpu_matmul_forward(const brg__op_call *call);
brg_status brg__cpu_matmul_backward(const brg__op_call *call);
brg_status brg__cpu_add_forward(const brg__op_call *call);
brg_status brg__cpu_add_backward(const brg__op_call *call);
brg_status brg__cpu_gelu_forward(const brg__op_call *call);
brg_status brg__cpu_gelu_backward(const brg__op_call *call);
brg_status brg__cpu_relu_forward(const brg__op_call *call);
brg_status brg__cpu_relu_backward(const brg__op_call *call);
brg_status brg__cpu_layernorm_forward(const brg__op_call *call);
brg_status brg__cpu_layernorm_backward(const brg__op_call *call);
brg_status brg__cpu_attention_forward(const brg__op_call *call);
brg_status brg__cpu_attention_backward(const brg__op_call *call);
/* Causal attention tile by tile without the T x T matrix (attention_tiled.c): the algorithm of the fused
 * GPU kernel, as a CPU reference. qkv (B, T, 3C), out (B, T, C), lse (B, NH, T) the log-sum-exp of each
 * row's scaled scores; backward adds into dqkv (B, T, 3C). BRG_ERR_INVALID_ARGUMENT for NULL or bad
 * dimensions (C not a multiple of NH, a block < 1), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__attention_tiled_forward(const float *qkv, float *out, float *lse, int64_t B, int64_t T, int64_t C,
                                        int64_t NH, int64_t block_q, int64_t block_k);
brg_status brg__attention_tiled_backward(const float *qkv, const float *out, const float *dout, const float *lse,
                                         float *dqkv, int64_t B, int64_t T, int64_t C, int64_t NH, int64_t block_q,
                                         int64_t block_k);
brg_status brg__cpu_cross_entropy_forward(const brg__op_call *call);
brg_status brg__cpu_cross_entropy_backward(const brg__op_call *call);

/* ---- dimensions ---- */

/* Dimension i of t with BRG_BATCH bound to `batch`. */
static inline int64_t brg__cpu_dim(const brg_tensor *t, int i, int64_t batch) {
    return t->shape[i] == BRG_BATCH ? batch : t->shape[i];
}

/* The last dimension of t (the feature dimension of every row-wise op). */
static inline int64_t brg__cpu_last_dim(const brg_tensor *t, int64_t batch) {
    return brg__cpu_dim(t, t->ndim - 1, batch);
}

/* Rows of t seen as a (rows, last dimension) matrix. */
static inline int64_t brg__cpu_rows(const brg_tensor *t, int64_t batch) {
    int64_t last = brg__cpu_last_dim(t, batch);
    return last > 0 ? brg__tensor_numel(t, batch) / last : 0;
}

/* Whether every value fits the BLAS integer type (OpenBLAS's cblas takes int). Sets the message of
 * the call when one does not. */
brg_status brg__cpu_check_blas_dims(const brg__op_call *call, int count, const int64_t *dims);

/* ---- one sgemm call ---- */

/* C (m, n) = alpha op(A) op(B) + beta C as one single-threaded cblas_sgemm call: for the products
 * inside a piece, which is already the unit of parallel work (brg__cpu_gemm tiles and spreads C). */
static inline void brg__cpu_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                                  int64_t ldc) {
    if (m == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m,
                (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* ---- pieces ---- */

/* Elements a piece of an element-wise or row-wise kernel covers (about 64 KiB of floats): large enough
 * that claiming a piece costs nothing next to it, small enough for several pieces per tensor. */
#define BRG__CPU_PIECE_ELEMENTS 16384

/* Pieces of `chunk` items that cover `count` items (the last one ragged). */
static inline int64_t brg__cpu_pieces(int64_t count, int64_t chunk) {
    return count > 0 && chunk > 0 ? (count + chunk - 1) / chunk : 0;
}

/* Rows per piece for rows of `width` elements: about BRG__CPU_PIECE_ELEMENTS elements, at least one row. */
static inline int64_t brg__cpu_rows_per_piece(int64_t width) {
    return width > 0 && width < BRG__CPU_PIECE_ELEMENTS ? BRG__CPU_PIECE_ELEMENTS / width : 1;
}

/* Columns per piece of a reduction over `rows` rows that splits the columns (each column still summed
 * over the rows in ascending order, so the split never changes a result): about BRG__CPU_PIECE_ELEMENTS
 * elements, at least BRG__CPU_REDUCE_COLUMNS_MIN columns (long contiguous runs of each row). */
#define BRG__CPU_REDUCE_COLUMNS_MIN 256
static inline int64_t brg__cpu_columns_per_piece(int64_t rows) {
    int64_t cols = rows > 0 ? (BRG__CPU_PIECE_ELEMENTS + rows - 1) / rows : BRG__CPU_PIECE_ELEMENTS;
    cols = (cols + 15) / 16 * 16;
    return cols > BRG__CPU_REDUCE_COLUMNS_MIN ? cols : BRG__CPU_REDUCE_COLUMNS_MIN;
}

/* [*begin, *end): the items of piece `piece` when pieces hold `chunk` of `count` items. */
static inline void brg__cpu_piece_range(int64_t piece, int64_t chunk, int64_t count, int64_t *begin, int64_t *end) {
    *begin = piece * chunk;
    *end = *begin + chunk < count ? *begin + chunk : count;
}

/* ---- reductions in a fixed order: eight lanes over the row, then a fixed tree ---- */

#define BRG__CPU_LANES 8

static inline float brg__cpu_lanes_total(const float *acc) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Sum of x[0..n). */
static inline float brg__cpu_sum(const float *restrict x, int64_t n) {
    float acc[BRG__CPU_LANES] = {0};
    int64_t i = 0;
    for (; i + BRG__CPU_LANES <= n; i += BRG__CPU_LANES)
        for (int l = 0; l < BRG__CPU_LANES; l++) acc[l] += x[i + l];
    for (; i < n; i++) acc[i % BRG__CPU_LANES] += x[i];
    return brg__cpu_lanes_total(acc);
}

/* Sum of x[i] * y[i] over [0, n). */
static inline float brg__cpu_dot(const float *restrict x, const float *restrict y, int64_t n) {
    float acc[BRG__CPU_LANES] = {0};
    int64_t i = 0;
    for (; i + BRG__CPU_LANES <= n; i += BRG__CPU_LANES)
        for (int l = 0; l < BRG__CPU_LANES; l++) acc[l] += x[i + l] * y[i + l];
    for (; i < n; i++) acc[i % BRG__CPU_LANES] += x[i] * y[i];
    return brg__cpu_lanes_total(acc);
}

/* Largest of x[0..n), n >= 1. */
static inline float brg__cpu_max(const float *restrict x, int64_t n) {
    float acc[BRG__CPU_LANES];
    for (int l = 0; l < BRG__CPU_LANES; l++) acc[l] = x[0];
    int64_t i = 0;
    for (; i + BRG__CPU_LANES <= n; i += BRG__CPU_LANES)
        for (int l = 0; l < BRG__CPU_LANES; l++) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
    for (; i < n; i++) acc[0] = x[i] > acc[0] ? x[i] : acc[0];
    float m = acc[0];
    for (int l = 1; l < BRG__CPU_LANES; l++) m = acc[l] > m ? acc[l] : m;
    return m;
}

/* ---- exp ---- */

/* e^x within about 1e-7 relative (Cephes' expf: Cody-Waite reduction by ln 2, a degree-6 polynomial,
 * then 2^k from the exponent bits), written without calls or branches so that loops over it vectorize.
 * Arguments below -87.3 give 0 (where float would go subnormal); above 88, e^88; a NaN gives itself (the
 * clamp sends it to -87.3 first, so that no NaN reaches the integer conversion, which it would overflow).
 * The kernels call it on x <= 0 (softmax) and in GELU, where e^88 already saturates the result. */
static inline float brg__cpu_exp(float x) {
    float c = x > 88.0f ? 88.0f : x;
    c = c >= -87.3f ? c : -87.3f;
    /* k = round(c / ln 2): adding 1.5 * 2^23 leaves the rounded integer in the low mantissa bits. */
    float k = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = c - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    float z = r * r;
    float p = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
                1.6666665459e-1f) * r + 5.0000001201e-1f) * z + r + 1.0f;
    int32_t bits = ((int32_t)k + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float e = x < -87.3f ? 0.0f : p * scale;
    return x == x ? e : x;
}

#endif
