/* CUDA backend: what C code (the runtime, tools, tests) may call. Internal, C linkage.
 *
 * Element types. A CUDA backend is created fp32 or bf16 (brg__backend_cuda_create's `bf16`):
 *   - I32 tensors (tokens, targets) are int32 in both.
 *   - fp32 backend: every F32 tensor is float, and the kernels compute as the CPU backend does.
 *   - bf16 backend (mixed precision): F32 activations (graph inputs and op outputs) and their gradients
 *     are stored as bf16 (__nv_bfloat16, 2 bytes; element_bytes(F32) == 2), and GEMMs take bf16
 *     operands with fp32 accumulation. Always fp32, on both:
 *       parameters (the master copy), parameter gradients (din[] of parameter inputs), AdamW moments;
 *       the loss op's output (one value per position; the runtime sums it on the host) and the gradient
 *       fed to it (brg__op_call.dout of the cross-entropy op);
 *       op internals in brg__op_call.aux: layernorm mean and rstd; attention keeps its softmax
 *       probabilities (B, NH, T, T) there in the activation type (bf16 fills the first half);
 *       everything the vtable's accumulate, sum_squares, scale and adamw touch (parameter gradients).
 *     A parameter read by a GEMM (linear weights and biases, a matmul operand such as the tied head)
 *     or by an element-wise op is read through a bf16 copy the backend keeps beside it: made when first
 *     needed, rewritten by every AdamW update of that parameter, and remade after the runtime writes
 *     the parameter (upload, copy, zero, scale, accumulate). Layernorm gains and biases and embedding
 *     tables are read in fp32.
 *   Kernels accumulate into din[] as the CPU backend does: din[i] += gradient, in din's type.
 *
 * Streams and ordering. Each backend owns a compute stream (every kernel, memset and copy of the
 * vtable) and a transfer stream (the NCCL transport's sends, receives and device copies). upload is
 * ordered on the compute stream (a pageable source is staged before the call returns); download waits
 * for the compute stream. Memory freed through the vtable is reused in compute-stream order.
 *
 * Errors. The vtable's void entries (zero, copy, upload, download, accumulate, scale, adamw,
 * sum_squares) cannot return a status: a failure there is kept and returned, with its message, by the
 * next forward or backward call, and the backend runs nothing more. Token ids and targets are checked
 * on the device; an id outside the vocabulary is recorded and reported, naming the op, the position
 * and the value, by the first forward or backward call after the kernel has finished (at the latest
 * after the step's next synchronizing call, such as the download of the loss). */
#ifndef BRIGADE_CUDA_H
#define BRIGADE_CUDA_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "brigade/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- devices ---- */

/* Number of CUDA devices the runtime sees; 0 when there is no driver or no device (never an error). */
int brg__cuda_device_count(void);

/* Why there is no device: the CUDA runtime's text for its device query ("no CUDA-capable device is
 * detected", "CUDA driver version is insufficient ..."), or "no CUDA device" when it reported none
 * without an error. Static storage. */
const char *brg__cuda_no_device_reason(void);

/* The physical GPU a rank uses: rank % the devices visible (0 when there are none). */
int brg__cuda_device_of_rank(int rank);

/* The device's name ("NVIDIA H100 80GB HBM3") into buf; BRG_OK or BRG_ERR_NO_DEVICE. */
brg_status brg__cuda_device_name(int device, char *buf, size_t size);

/* ---- plain device memory (tests and tools) ---- */

brg_status brg__cuda_malloc(void **ptr, size_t bytes, char *msg);
void brg__cuda_free(void *ptr);
brg_status brg__cuda_copy_to_device(void *dst, const void *src, size_t bytes, char *msg);
brg_status brg__cuda_copy_to_host(void *dst, const void *src, size_t bytes, char *msg);
brg_status brg__cuda_synchronize(char *msg);

/* AdamW on n fp32 elements on `stream` (a cudaStream_t, NULL for the default stream): the update of the
 * CPU backend's brg__cpu_adamw. shadow, when not NULL, receives the updated parameters as bf16. */
brg_status brg__cuda_adamw(float *param, const float *grad, float *m, float *v, void *shadow, int64_t n, float lr,
                           float beta1, float beta2, float eps, float weight_decay, int step, void *stream, char *msg);

/* ---- bf16 on the host (tests): round to nearest even, as __float2bfloat16_rn ---- */

static inline uint16_t brg__bf16_from_float(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40u); /* NaN stays NaN */
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

static inline float brg__bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* ---- the arena: one backend's device memory, carved from a few large reservations ----
 * Reservations (segments) come from `source` (cudaMalloc in the backend; anything in tests), at least
 * segment_bytes each (a larger request gets a segment of its own size). Blocks are 256-byte aligned,
 * carved best-fit from the free ranges and coalesced with their neighbours of the same segment when
 * freed. Segments are returned to the source only by brg__cuda_arena_destroy. Host bookkeeping only:
 * zero-filling and stream ordering are the backend's. Not thread-safe (one backend, one thread). */
typedef struct brg__cuda_arena brg__cuda_arena;

typedef struct brg__cuda_arena_source {
    void *(*reserve)(void *context, size_t bytes); /* NULL when out of memory */
    void (*release)(void *context, void *base);
    void *context;
} brg__cuda_arena_source;

#define BRG__CUDA_ARENA_ALIGNMENT 256

/* BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL out or source, segment_bytes 0), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__cuda_arena_create(brg__cuda_arena **out, const brg__cuda_arena_source *source, size_t segment_bytes,
                                  char *msg);
void brg__cuda_arena_destroy(brg__cuda_arena *a);
/* A block of at least `bytes` (0 counts as 1), aligned to BRG__CUDA_ARENA_ALIGNMENT; NULL when no free range
 * fits and the source refuses a new segment. */
void *brg__cuda_arena_alloc(brg__cuda_arena *a, size_t bytes);
/* Frees a block from brg__cuda_arena_alloc; NULL is ignored; a pointer the arena did not give returns
 * BRG_ERR_INVALID_ARGUMENT and changes nothing. */
brg_status brg__cuda_arena_free(brg__cuda_arena *a, void *p);
/* The block's size as carved (a multiple of the alignment), 0 for a pointer the arena did not give. */
size_t brg__cuda_arena_block_bytes(const brg__cuda_arena *a, const void *p);
/* Bytes in live blocks; their peak since creation or the last reset; bytes reserved from the source. */
int64_t brg__cuda_arena_allocated(const brg__cuda_arena *a);
int64_t brg__cuda_arena_peak(const brg__cuda_arena *a);
void brg__cuda_arena_reset_peak(brg__cuda_arena *a);
int64_t brg__cuda_arena_reserved(const brg__cuda_arena *a);
int brg__cuda_arena_segments(const brg__cuda_arena *a);

/* ---- a CUDA backend seen from outside the vtable (cuda/backend_cuda.cu) ---- */
struct brg__backend;

/* Whether b is a CUDA backend. */
int brg__cuda_backend_is(const struct brg__backend *b);
/* Its GPU and streams (cudaStream_t). */
void brg__cuda_backend_streams(const struct brg__backend *b, int *device, void **compute, void **transfer);
/* Enqueues work the backend has deferred (a GEMM waiting to be fused with the GELU after it), so that
 * what the compute stream holds is every result the runtime asked for; the transport calls it before it
 * records the compute stream's position. Returns the backend's kept error, if any. */
brg_status brg__cuda_backend_flush(struct brg__backend *b, char *msg);
/* A count that changes whenever the backend queues work on its compute stream (the flush above changes it
 * only when it queues deferred work): equal counts mean nothing was queued in between. */
uint64_t brg__cuda_backend_epoch(const struct brg__backend *b);
/* The backend's kept error (BRG_OK when none), its message into msg. */
brg_status brg__cuda_backend_status(const struct brg__backend *b, char *msg);

#ifdef __cplusplus
}
#endif
#endif
