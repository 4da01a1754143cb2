// Softmax cross-entropy per position: loss[n] = logsumexp(logits[n]) - logits[n, target[n]], fp32.
// One block per row; the row's maximum and sum of exponentials come from fixed-order block reductions.
// Backward recomputes each row's softmax from the logits (no aux); its incoming gradient is fp32.
#include "backend.cuh"

#define THREADS 512

/* ---- kernels ---- */

/* Records the first target outside [0, limit). */
__device__ static void record_invalid_target(brg__cuda_error_record *rec, unsigned long long op, int64_t position,
                                             int64_t value, int64_t limit) {
    if (atomicCAS(&rec->flag, 0, -1) == 0) {
        rec->op = op;
        rec->position = position;
        rec->value = value;
        rec->limit = limit;
        __threadfence();
        atomicExch(&rec->flag, 1);
    }
}

/* The row's maximum and sum of e^(x - max), the same in every thread of the block. */
template <typename T>
__device__ static void row_max_sum_exp(const T *row, int64_t vocab, float *shared, float *max_out, float *sum_out) {
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) m = fmaxf(m, brg__to_float(row[j]));
    m = brg__block_max(m, shared);
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) s += expf(brg__to_float(row[j]) - m);
    *sum_out = brg__block_sum(s, shared);
    *max_out = m;
}

// losses (N) from logits (N, V) and targets (N).
template <typename T>
__global__ void cross_entropy_forward_kernel(float *losses, const T *logits, const int32_t *targets, int64_t rows,
                                             int64_t vocab, brg__cuda_error_record *rec, unsigned long long op) {
    __shared__ float shared[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *row = logits + r * vocab; // (V)
        float m, sum;
        row_max_sum_exp(row, vocab, shared, &m, &sum);
        if (threadIdx.x == 0) {
            int32_t t = targets[r];
            if (t < 0 || t >= vocab) {
                record_invalid_target(rec, op, r, t, vocab);
                losses[r] = 0.0f;
            } else {
                losses[r] = (m + logf(sum)) - brg__to_float(row[t]);
            }
        }
    }
}

// dlogits (N, V) += dlosses[n] (softmax(logits[n]) - onehot(target[n])).
template <typename T, typename TD>
__global__ void cross_entropy_backward_kernel(TD *dlogits, const T *logits, const int32_t *targets,
                                              const float *dlosses, int64_t rows, int64_t vocab,
                                              brg__cuda_error_record *rec, unsigned long long op) {
    __shared__ float shared[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *row = logits + r * vocab; // (V)
        TD *drow = dlogits + r * vocab;    // (V)
        int32_t t = targets[r];
        if (t < 0 || t >= vocab) {
            if (threadIdx.x == 0) record_invalid_target(rec, op, r, t, vocab);
            continue; /* the whole block agrees: t is the same for every thread */
        }
        float m, sum;
        row_max_sum_exp(row, vocab, shared, &m, &sum);
        float inv = 1.0f / sum, g = dlosses[r];
        for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
            float p = expf(brg__to_float(row[j]) - m) * inv;
            float d = j == t ? g * (p - 1.0f) : g * p;
            drow[j] = brg__from_float<TD>(brg__to_float(drow[j]) + d);
        }
    }
}

/* ---- launchers ---- */

static unsigned rows_grid(int64_t rows) { return (unsigned)(rows < 65536 ? rows : 65536); }

template <typename T>
static brg_status cross_entropy_forward(float *losses, const T *logits, const int32_t *targets, int64_t rows,
                                        int64_t vocab, brg__cuda_error_record *rec, const brg__op *op,
                                        cudaStream_t stream, char *msg) {
    BRG__REQUIRE(vocab > 0, msg, "cross-entropy: %lld classes", (long long)vocab);
    if (rows == 0) return BRG_OK;
    cross_entropy_forward_kernel<T><<<rows_grid(rows), THREADS, 0, stream>>>(losses, logits, targets, rows, vocab, rec,
                                                                             (unsigned long long)(uintptr_t)op);
    BRG__LAUNCH_CHECK("cross_entropy_forward", msg);
    return BRG_OK;
}

template <typename T, typename TD>
static brg_status cross_entropy_backward(TD *dlogits, const T *logits, const int32_t *targets, const float *dlosses,
                                         int64_t rows, int64_t vocab, brg__cuda_error_record *rec, const brg__op *op,
                                         cudaStream_t stream, char *msg) {
    if (rows == 0 || vocab == 0) return BRG_OK;
    cross_entropy_backward_kernel<T, TD><<<rows_grid(rows), THREADS, 0, stream>>>(
        dlogits, logits, targets, dlosses, rows, vocab, rec, (unsigned long long)(uintptr_t)op);
    BRG__LAUNCH_CHECK("cross_entropy_backward", msg);
    return BRG_OK;
}

/* ---- op entry points ---- */

brg_status brg__cuda_cross_entropy_forward(brg__cuda_ctx *c, const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t vocab = brg__cuda_last_dim(op->inputs[0], call->batch);
    int64_t rows = brg__cuda_rows(op->inputs[0], call->batch);
    const void *logits;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &logits));
    const int32_t *targets = (const int32_t *)call->in[1]; // (N)
    float *losses = (float *)call->out;                    // (N), fp32 on every backend
    brg_status s = c->act == BRG__CUDA_BF16 ? cross_entropy_forward(losses, (const brg__bf16 *)logits, targets, rows,
                                                                    vocab, c->errors, op, c->stream, call->msg)
                                            : cross_entropy_forward(losses, (const float *)logits, targets, rows, vocab,
                                                                    c->errors, op, c->stream, call->msg);
    return s == BRG_OK ? brg__cuda_checked(c, call->msg) : s;
}

template <typename T> static brg_status backward_typed(brg__cuda_ctx *c, const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t vocab = brg__cuda_last_dim(op->inputs[0], call->batch);
    int64_t rows = brg__cuda_rows(op->inputs[0], call->batch);
    const void *logits;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &logits));
    const int32_t *targets = (const int32_t *)call->in[1];
    if (brg__cuda_grad_type(c, call, 0) == BRG__CUDA_BF16)
        return cross_entropy_backward((brg__bf16 *)call->din[0], (const T *)logits, targets, call->dout, rows, vocab,
                                      c->errors, op, c->stream, call->msg);
    return cross_entropy_backward((float *)call->din[0], (const T *)logits, targets, call->dout, rows, vocab, c->errors,
                                  op, c->stream, call->msg);
}

brg_status brg__cuda_cross_entropy_backward(brg__cuda_ctx *c, const brg__op_call *call) {
    if (!call->din[0]) return BRG_OK; // targets have no gradient
    brg_status s = c->act == BRG__CUDA_BF16 ? backward_typed<brg__bf16>(c, call) : backward_typed<float>(c, call);
    return s == BRG_OK ? brg__cuda_checked(c, call->msg) : s;
}
