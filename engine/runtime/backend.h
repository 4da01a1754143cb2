/* The backend interface: memory, the kernels of every op, the optimizer and memory statistics.
 * The runtime drives stages through it; the CPU backend (engine/runtime/backend_cpu.c over engine/cpu/)
 * and the CUDA backend (cuda/) implement it. Internal. */
#ifndef BRIGADE_BACKEND_H
#define BRIGADE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "graph/graph_internal.h"

typedef struct brg__backend brg__backend;

typedef struct brg__backend_vtable {
    const char *name;
    /* Bytes of one activation element of `dtype` in this backend's memory (4 for F32 and I32 on the CPU;
     * 2 for F32 activations of a bf16 CUDA backend). Parameters, their gradients and optimizer state are
     * always 4-byte fp32, and so is the loss op's output (stage.c sizes it so; cuda/cuda.h). */
    int64_t (*element_bytes)(const brg__backend *b, brg_dtype dtype);
    /* Zero-filled, 64-byte aligned device memory; NULL when out of memory. */
    void *(*alloc)(brg__backend *b, size_t bytes);
    /* The same, contents undefined: for buffers written, or zeroed, before anything reads them (a stage's
     * activations, ops' internals, activation gradients), so that no time goes to clearing them. The CPU
     * backend fills them with 0xff bytes (NaN) in builds with assertions, so a read before a write shows. */
    void *(*alloc_uninit)(brg__backend *b, size_t bytes);
    void (*free)(brg__backend *b, void *p);
    void (*zero)(brg__backend *b, void *p, size_t bytes);
    /* Device to device, host to device, device to host. */
    void (*copy)(brg__backend *b, void *dst, const void *src, size_t bytes);
    void (*upload)(brg__backend *b, void *dst, const void *host, size_t bytes);
    void (*download)(brg__backend *b, void *host, const void *src, size_t bytes);
    /* The op kernels (engine/graph/graph_internal.h: brg__op_call). backward fills the non-NULL din[]. */
    brg_status (*forward)(brg__backend *b, const brg__op_call *call);
    brg_status (*backward)(brg__backend *b, const brg__op_call *call);
    /* dst[i] += src[i], in element order. */
    void (*accumulate)(brg__backend *b, float *dst, const float *src, int64_t n);
    /* Sum of squares in double, in element order (the global gradient norm must not depend on placement). */
    double (*sum_squares)(brg__backend *b, const float *x, int64_t n);
    void (*scale)(brg__backend *b, float *x, int64_t n, float factor);
    void (*adamw)(brg__backend *b, float *param, const float *grad, float *m, float *v, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int step);
    /* Bytes held now, and the peak since creation or the last reset_peak. */
    int64_t (*allocated)(const brg__backend *b);
    int64_t (*peak)(const brg__backend *b);
    void (*reset_peak)(brg__backend *b);
    void (*destroy)(brg__backend *b);
    /* A failure of a void entry above (kept by the backend), or one its kernels recorded, with its message
     * into msg; BRG_OK when none. NULL for a backend whose void entries cannot fail. The runtime asks after
     * the optimizer, so a fault there fails the step instead of passing for a success. */
    brg_status (*status)(brg__backend *b, char *msg);
    /* The kernels run on the host: ops get their host_scratch_floats (brg__op_scratch_floats). */
    int host_kernels;
} brg__backend_vtable;

struct brg__backend {
    const brg__backend_vtable *vt;
};

/* The CPU backend: fp32 kernels, OpenBLAS GEMMs, memory from a jemalloc arena of its own. */
brg_status brg__backend_cpu_create(brg__backend **out, char *msg);

/* The CUDA backend on GPU `device` % (GPUs visible) (cuda/backend_cuda.cu), activations in bf16 when bf16
 * is non-zero (cuda/cuda.h gives the element types); BRG_ERR_UNSUPPORTED when brigade was built without
 * CUDA (engine/runtime/backend_none.c), BRG_ERR_NO_DEVICE when there is no GPU. */
brg_status brg__backend_cuda_create(brg__backend **out, int device, int bf16, char *msg);

static inline void brg__backend_destroy(brg__backend *b) {
    if (b) b->vt->destroy(b);
}

#endif
