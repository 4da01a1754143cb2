/* The CPU backend behind the backend vtable: engine/cpu/'s kernels and arena. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/cpu.h"

typedef struct cpu_backend {
    brg__backend base; /* first: a brg__backend * is a cpu_backend * */
    brg__arena *arena;
} cpu_backend;

static cpu_backend *cpu(brg__backend *b) { return (cpu_backend *)b; }
static const cpu_backend *cpu_const(const brg__backend *b) { return (const cpu_backend *)b; }

static int64_t cpu_element_bytes(const brg__backend *b, brg_dtype dtype) { return brg__dtype_size(dtype); }

static void *cpu_alloc(brg__backend *b, size_t bytes) { return brg__arena_alloc(cpu(b)->arena, bytes ? bytes : 1); }
static void *cpu_alloc_uninit(brg__backend *b, size_t bytes) {
    return brg__arena_alloc_uninit(cpu(b)->arena, bytes ? bytes : 1);
}
static void cpu_free(brg__backend *b, void *p) {
    if (p) brg__arena_free(cpu(b)->arena, p);
}
/* These run on the calling rank's kernel threads, in pieces fixed by the size (engine/cpu/vectors.c). */
static void cpu_zero(brg__backend *b, void *p, size_t bytes) { brg__cpu_zero(p, bytes); }
static void cpu_copy(brg__backend *b, void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }

static brg_status cpu_forward(brg__backend *b, const brg__op_call *call) { return brg__cpu_forward(call); }
static brg_status cpu_backward(brg__backend *b, const brg__op_call *call) { return brg__cpu_backward(call); }

static void cpu_accumulate(brg__backend *b, float *restrict dst, const float *restrict src, int64_t n) {
    brg__cpu_accumulate(dst, src, n);
}

static double cpu_sum_squares(brg__backend *b, const float *x, int64_t n) { return brg__cpu_sum_squares(x, n); }

static void cpu_scale(brg__backend *b, float *x, int64_t n, float factor) { brg__cpu_scale(x, n, factor); }

static void cpu_adamw(brg__backend *b, float *param, const float *grad, float *m, float *v, int64_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int step) {
    brg__cpu_adamw(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
}

static int64_t cpu_allocated(const brg__backend *b) { return brg__arena_allocated(cpu_const(b)->arena); }
static int64_t cpu_peak(const brg__backend *b) { return brg__arena_peak(cpu_const(b)->arena); }
static void cpu_reset_peak(brg__backend *b) { brg__arena_reset_peak(cpu(b)->arena); }

static void cpu_destroy(brg__backend *b) {
    brg__arena_destroy(cpu(b)->arena);
    free(b);
}

static const brg__backend_vtable cpu_vtable = {
    .name = "cpu",
    .element_bytes = cpu_element_bytes,
    .alloc = cpu_alloc,
    .alloc_uninit = cpu_alloc_uninit,
    .host_kernels = 1,
    .free = cpu_free,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .upload = cpu_copy,
    .download = cpu_copy,
    .forward = cpu_forward,
    .backward = cpu_backward,
    .accumulate = cpu_accumulate,
    .sum_squares = cpu_sum_squares,
    .scale = cpu_scale,
    .adamw = cpu_adamw,
    .allocated = cpu_allocated,
    .peak = cpu_peak,
    .reset_peak = cpu_reset_peak,
    .destroy = cpu_destroy,
};

brg_status brg__backend_cpu_create(brg__backend **out, char *msg) {
    cpu_backend *c = brg__calloc(1, sizeof *c);
    if (!c) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    brg_status s = brg__arena_create(&c->arena, msg);
    if (s != BRG_OK) {
        free(c);
        return s;
    }
    c->base.vt = &cpu_vtable;
    *out = &c->base;
    return BRG_OK;
}
