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

/* ---- the arena: the backend's own jemalloc arena, the application's malloc untouched ---- */
typedef struct brg__arena brg__arena;
brg_status brg__arena_create(brg__arena **out, char *msg);
void brg__arena_destroy(brg__arena *a);
/* 64-byte aligned, zero-filled. NULL when out of memory. */
void *brg__arena_alloc(brg__arena *a, size_t bytes);
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
/* The number of threads the kernels called from this thread may use (>= 1). Each pipeline rank's worker
 * thread sets its own. Results never depend on it: work is split into pieces of a fixed size, whatever
 * the thread count, so a stage computes bitwise alike on 1 thread or many. */
void brg__cpu_set_threads(int threads);
int brg__cpu_threads(void);

#endif
