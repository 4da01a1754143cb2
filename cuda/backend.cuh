// What the op families need from the backend that runs them: its stream, BLAS handles, element type,
// workspace and parameter views; the GEMM entry point; each family's entry points (one per op and
// direction, as engine/cpu/). C++ only, internal to cuda/.
#pragma once
#include "common.cuh"
extern "C" {
#include "graph/graph_internal.h"
}

typedef enum brg__cuda_dtype {
    BRG__CUDA_F32 = 0,
    BRG__CUDA_BF16 = 1,
    BRG__CUDA_I32 = 2,
} brg__cuda_dtype;

static inline size_t brg__cuda_dtype_bytes(brg__cuda_dtype t) { return t == BRG__CUDA_BF16 ? 2 : 4; }

/* The first invalid id a kernel met (device memory; the backend copies it to the host and reports it). */
typedef struct brg__cuda_error_record {
    unsigned long long op; /* the brg__op * of the call, as an integer (host pointer) */
    long long position;
    long long value;
    long long limit;
    int flag; /* 0 none, else 1 */
} brg__cuda_error_record;

struct brg__cuda_gemm_cache;
struct cuda_backend;

typedef struct brg__cuda_ctx {
    int device;
    brg__cuda_dtype act; /* activations and their gradients: F32 or BF16 */
    int attention_simt;  /* bf16 attention on the SIMT kernels, not the tensor cores (BRG_CUDA_ATTENTION=simt) */
    cudaStream_t stream; /* compute */
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    void *blas_workspace;
    size_t blas_workspace_bytes;
    brg__cuda_error_record *errors; /* device memory */
    struct brg__cuda_gemm_cache *gemm_cache;
    struct cuda_backend *owner;
} brg__cuda_ctx;

/* ---- services of the backend (cuda/backend_cuda.cu) ---- */

/* Scratch device memory of at least `bytes`, valid until the next call (compute-stream ordered: a
 * kernel launched before the next call may still use it). NULL with a message when out of memory. */
void *brg__cuda_workspace(brg__cuda_ctx *c, size_t bytes, char *msg);
/* Input q of the call as the kernels read it: activations as they are; parameters as they are on an
 * fp32 backend and through their bf16 copy on a bf16 one. */
brg_status brg__cuda_operand(brg__cuda_ctx *c, const brg__op_call *call, int q, const void **ptr);
/* After a kernel that checks ids against errors: queues the record's copy to the host, where the next
 * forward or backward call finds it once the kernel has run. */
brg_status brg__cuda_checked(brg__cuda_ctx *c, char *msg);
/* The type of input q as brg__cuda_operand gives it, and of din[q]. */
brg__cuda_dtype brg__cuda_operand_type(const brg__cuda_ctx *c, const brg__op_call *call, int q);
brg__cuda_dtype brg__cuda_grad_type(const brg__cuda_ctx *c, const brg__op_call *call, int q);

/* ---- GEMM (cuda/gemm.cu) ----
 * Row-major, as the CPU backend's brg__cpu_gemm: C (m, n) = alpha op(A) op(B) + beta C, op(A) (m, k),
 * op(B) (k, n), leading dimensions the row strides as stored; `batch` products at element strides
 * stride_a/b/c (stride_b 0: one B for all). A and B share a type (F32 or BF16); C may be F32 or BF16.
 * Epilogues (cuBLASLt, batch 1 only): BIAS adds bias (n, C's type) to every row; GELU_AUX_BIAS also
 * writes the pre-GELU values to aux (m, n, row stride ld_aux, C's type) and GELU (tanh) of them to C.
 * ROW_SUMS_A writes (not adds) to bias (m floats, fp32) the sums of op(A)'s rows over k: with op(A) =
 * dout^T, a linear's bias gradient from the GEMM that makes its weight gradient (cuBLASLt's BGRADB, B
 * being cuBLAS's name for our A). DGELU multiplies the product by GELU's derivative (tanh form) at aux (m,
 * n, row stride ld_aux, C's type): with beta 0, the gradient of a GELU's input from the product that
 * makes the gradient of its output. Without an epilogue the product goes through cublasGemmStridedBatchedEx.
 * An epilogue cuBLASLt has no algorithm for returns BRG_ERR_UNSUPPORTED (message set), so the caller can do
 * it unfused. */
typedef enum brg__cuda_epilogue {
    BRG__CUDA_EPILOGUE_NONE = 0,
    BRG__CUDA_EPILOGUE_BIAS = 1,
    BRG__CUDA_EPILOGUE_GELU_AUX_BIAS = 2,
    BRG__CUDA_EPILOGUE_ROW_SUMS_A = 3,
    BRG__CUDA_EPILOGUE_DGELU = 4,
} brg__cuda_epilogue;

typedef struct brg__cuda_gemm_args {
    int trans_a, trans_b;
    int64_t m, n, k;
    float alpha, beta;
    const void *a;
    int64_t lda, stride_a;
    const void *b;
    int64_t ldb, stride_b;
    brg__cuda_dtype ab_type;
    void *c;
    int64_t ldc, stride_c;
    brg__cuda_dtype c_type;
    int64_t batch; /* 0 counts as 1 */
    brg__cuda_epilogue epilogue;
    const void *bias; /* written with ROW_SUMS_A */
    void *aux;
    int64_t ld_aux;
} brg__cuda_gemm_args;

brg_status brg__cuda_gemm(brg__cuda_ctx *c, const brg__cuda_gemm_args *g, char *msg);
brg_status brg__cuda_gemm_cache_create(struct brg__cuda_gemm_cache **out, char *msg);
void brg__cuda_gemm_cache_destroy(struct brg__cuda_gemm_cache *cache);

/* ---- element-wise helpers shared by families (cuda/ops_elementwise.cu) ---- */

/* acc (cols, acc_type) += the column sums of g (rows, cols, g_type), in a fixed order: blocks of rows
 * summed in row order, then the blocks in block order. Uses workspace. */
brg_status brg__cuda_column_sums(brg__cuda_ctx *c, void *acc, brg__cuda_dtype acc_type, const void *g,
                                 brg__cuda_dtype g_type, int64_t rows, int64_t cols, char *msg);
/* dst (n, dst_type) = src (n, src_type), converted (F32 and BF16). */
brg_status brg__cuda_convert(void *dst, brg__cuda_dtype dst_type, const void *src, brg__cuda_dtype src_type, int64_t n,
                             cudaStream_t stream, char *msg);
/* dst[i] += src[i] (fp32), x[i] *= factor (fp32). */
brg_status brg__cuda_accumulate(float *dst, const float *src, int64_t n, cudaStream_t stream, char *msg);
brg_status brg__cuda_scale(float *x, int64_t n, float factor, cudaStream_t stream, char *msg);
/* out[t] = sum of squares of tensors[t] (fp32, counts[t] elements), in double, for `count` tensors at
 * once; each tensor's sum depends only on its own data and length (fixed partition, fixed order).
 * descriptors: device memory for 2 * count 64-bit words (pointer, length), filled from host_descriptors
 * (pinned); partials: device memory for count * BRG__CUDA_SQUARES_BLOCKS doubles. */
#define BRG__CUDA_SQUARES_BLOCKS 32
brg_status brg__cuda_sum_squares(double *out, const uint64_t *host_descriptors, uint64_t *descriptors, double *partials,
                                 int count, cudaStream_t stream, char *msg);

/* ---- op entry points, one file per family ---- */
brg_status brg__cuda_embedding_forward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_embedding_backward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_linear_forward(brg__cuda_ctx *c, const brg__op_call *call);
/* linear then the GELU reading it, as one GEMM with the GELU_AUX_BIAS epilogue: the linear's output
 * gets the pre-activation, the GELU's output its GELU. BRG_ERR_UNSUPPORTED when cuBLASLt cannot. */
brg_status brg__cuda_linear_gelu_forward(brg__cuda_ctx *c, const brg__op_call *linear, const brg__op_call *gelu);
brg_status brg__cuda_linear_backward(brg__cuda_ctx *c, const brg__op_call *call);
/* The input gradient of `linear` (x = GELU(pre), held back) and `gelu`'s backward in one GEMM with the
 * DGELU epilogue: gelu->din[0] = GELU'(pre) (dout W). Both gradients must be fresh (din_fresh). */
brg_status brg__cuda_linear_dgelu_backward(brg__cuda_ctx *c, const brg__op_call *linear, const brg__op_call *gelu);
brg_status brg__cuda_matmul_forward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_matmul_backward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_add_forward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_add_backward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_gelu_forward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_gelu_backward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_relu_forward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_relu_backward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_layernorm_forward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_layernorm_backward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_attention_forward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_attention_backward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_cross_entropy_forward(brg__cuda_ctx *c, const brg__op_call *call);
brg_status brg__cuda_cross_entropy_backward(brg__cuda_ctx *c, const brg__op_call *call);

/* ---- dimensions, as engine/cpu/kernels.h binds them ---- */

static inline int64_t brg__cuda_dim(const brg_tensor *t, int i, int64_t batch) {
    return t->shape[i] == BRG_BATCH ? batch : t->shape[i];
}
static inline int64_t brg__cuda_last_dim(const brg_tensor *t, int64_t batch) {
    return brg__cuda_dim(t, t->ndim - 1, batch);
}
static inline int64_t brg__cuda_rows(const brg_tensor *t, int64_t batch) {
    int64_t last = brg__cuda_last_dim(t, batch);
    return last > 0 ? brg__tensor_numel(t, batch) / last : 0;
}

/* A message naming the call's op, as the CPU kernels' messages do. */
#define BRG__OP_FAIL(call, status, fmt, ...)                                                                           \
    brg__message_set((call)->msg, BRG_ERROR_MESSAGE_MAX, (status), "op '%s' (%s): " fmt, (call)->op->name,             \
                     brg_op_kind_name((call)->op->kind), __VA_ARGS__)
