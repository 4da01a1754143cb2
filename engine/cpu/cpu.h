/* CPU backend: fp32 kernels of every op (OpenBLAS for GEMMs) and the jemalloc arena. Internal. */
#ifndef BRIGADE_CPU_H
#define BRIGADE_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "graph/graph_internal.h"

/* Forward of call->op: writes call->out and call->aux. Returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (a token
 * or target out of range; message in call->msg) or BRG_ERR_UNSUPPORTED (unknown kind). */
brg_status brg__cpu_forward(const brg__op_call *call);

/* Backward of call->op: din[i] += gradient for every non-NULL din[i]. Reads in, out, aux and dout. */
brg_status brg__cpu_backward(const brg__op_call *call);

/* AdamW on n elements (step counts from 1); decoupled weight decay as in PyTorch's AdamW.
 * param -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * param). */
void brg__cpu_adamw(float *param, const float *grad, float *m, float *v, int64_t n, float lr, float beta1,
                    float beta2, float eps, float weight_decay, int step);

/* Sets `bytes` bytes at p to zero. */
void brg__cpu_zero(void *p, size_t bytes);

/* dst += src, n elements. */
void brg__cpu_accumulate(float *dst, const float *src, int64_t n);

/* x *= factor, n elements. */
void brg__cpu_scale(float *x, int64_t n, float factor);

/* Sum of x[i]^2 in double. The sum runs over pieces of brg__cpu_sum_squares_piece(n) elements (eight
 * double lanes each, then a fixed tree), then adds the pieces' sums in order: its rounding depends on n
 * alone, never on the thread count. */
double brg__cpu_sum_squares(const float *x, int64_t n);
int64_t brg__cpu_sum_squares_piece(int64_t n);

/* ---- the arena: the backend's own jemalloc arena, the application's malloc untouched ---- */
typedef struct brg__arena brg__arena;
brg_status brg__arena_create(brg__arena **out, char *msg);
void brg__arena_destroy(brg__arena *a);
/* 64-byte aligned, zero-filled. NULL when out of memory. */
void *brg__arena_alloc(brg__arena *a, size_t bytes);
/* 64-byte aligned, contents undefined (0xff bytes in builds with assertions). NULL when out of memory. */
void *brg__arena_alloc_uninit(brg__arena *a, size_t bytes);
void brg__arena_free(brg__arena *a, void *p);
/* Bytes currently allocated through the arena (as jemalloc counts them), and the peak since creation
 * or the last reset. */
int64_t brg__arena_allocated(const brg__arena *a);
int64_t brg__arena_peak(const brg__arena *a);
void brg__arena_reset_peak(brg__arena *a);
/* jemalloc's own count of the bytes allocated in the arena (its small and large statistics, refreshed),
 * which agrees with brg__arena_allocated. Returns BRG_OK, BRG_ERR_UNSUPPORTED (jemalloc built without
 * statistics) or BRG_ERR_BACKEND, with a message in msg (may be NULL). */
brg_status brg__arena_jemalloc_allocated(const brg__arena *a, int64_t *bytes, char *msg);

/* ---- threads ---- */
/* The number of threads the kernels called from this thread may use (1 to 1024; values outside are
 * clamped). Each pipeline rank's worker thread sets its own. Results never depend on it: work is split
 * into pieces whose bounds follow from the problem's size alone, whatever the thread count, so a stage
 * computes bitwise alike on 1 thread or many. */
void brg__cpu_set_threads(int threads);
int brg__cpu_threads(void);

/* One piece of a kernel's work. scratch: the running thread's workspace (brg__cpu_parallel_scratch),
 * else NULL. */
typedef void (*brg__cpu_piece_fn)(void *ctx, int64_t piece, float *scratch);

/* Runs fn(ctx, piece, ...) for every piece in [0, pieces), on the calling thread and the helpers of its
 * pool (brg__cpu_threads() threads in all; the pool is made on first use and remade when the count
 * changes), and returns when all are done. Pieces may run in any order and at the same time, so each
 * must write only its own part of the output. A call from inside a piece runs its pieces in order on
 * that thread. Never fails: without a pool (threads = 1, or threads or memory not to be had) the
 * pieces run on the calling thread. */
void brg__cpu_parallel(int64_t pieces, brg__cpu_piece_fn fn, void *ctx);

/* The same, each running thread with a workspace of scratch_floats floats: the calling thread's is
 * `scratch` (the call's own, as planned), the helpers' belong to the pool (grown on demand). A helper
 * whose workspace cannot be allocated sits the call out. */
void brg__cpu_parallel_scratch(int64_t pieces, brg__cpu_piece_fn fn, void *ctx, float *scratch,
                               int64_t scratch_floats);

/* Stops and frees the calling thread's pool now (it is otherwise freed when the thread exits); the next
 * parallel call makes a new one. */
void brg__cpu_threads_release(void);

/* Helper threads in the calling thread's pool now (0: none made yet, released, or one thread). */
int brg__cpu_pool_helpers(void);

/* ---- GEMM ---- */
/* C (m, n) = alpha op(A) op(B) + beta C, row-major, op(A) (m, k), op(B) (k, n); leading dimensions are
 * the row strides of the matrices as stored; dimensions fit an int (brg__cpu_check_blas_dims). C is cut
 * into the tiles of brg__cpu_gemm_tiles, each one single-threaded cblas_sgemm call, run in parallel.
 * An empty C is left alone. */
void brg__cpu_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* C (m, n) = op(A) op(B) + bias (n) on every row; C's previous contents are ignored. */
void brg__cpu_gemm_bias(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                        const float *b, int64_t ldb, const float *bias, float *c, int64_t ldc);

/* The tiles of C that brg__cpu_gemm computes, tile_rows x tile_cols each (the last row and column of
 * tiles ragged): a function of (m, n, k) alone. */
void brg__cpu_gemm_tiles(int64_t m, int64_t n, int64_t k, int64_t *tile_rows, int64_t *tile_cols);

#endif
