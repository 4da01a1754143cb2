// Softmax cross-entropy per position: loss[n] = logsumexp(logits[n]) - logits[n, target[n]], fp32.
// One block per row. Forward reads the row once, each thread keeping a running maximum and sum of
// exponentials, merged over the block in a fixed order; it keeps the row's log-sum-exp (aux). Backward
// reads the row once more and writes dlogits = dloss (softmax - onehot), or adds it to what dlogits hold
// (din_fresh): with forward, two reads and one write of the logits, as a fused classifier makes. Rows
// whose length is a multiple of 8 move in 16-byte vectors. The incoming gradient is fp32.
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

/* A running maximum m and sum s of e^(x - m); empty: m = -inf, s = 0. */
typedef struct max_sum {
    float m, s;
} max_sum;

/* Adds E values: one rescale to their maximum, if it is new, then their exponentials. */
template <int E> __device__ __forceinline__ void max_sum_add(max_sum &a, const float (&v)[E]) {
    float m = v[0];
#pragma unroll
    for (int k = 1; k < E; k++) m = fmaxf(m, v[k]);
    if (m > a.m) {
        a.s *= expf(a.m - m);
        a.m = m;
    }
    if (a.m > -INFINITY)
#pragma unroll
        for (int k = 0; k < E; k++) a.s += expf(v[k] - a.m);
}

/* Commutative bit for bit, so both lanes of a butterfly pair agree: a sum of two products each rounded
 * on its own (__fmul_rn is never contracted into an FMA, which would round the two differently). */
__device__ __forceinline__ max_sum max_sum_merge(max_sum a, max_sum b) {
    float m = fmaxf(a.m, b.m);
    if (m == -INFINITY) return a;
    max_sum r = {m, __fmul_rn(a.s, expf(a.m - m)) + __fmul_rn(b.s, expf(b.m - m))};
    return r;
}

__device__ __forceinline__ max_sum warp_max_sum(max_sum v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        max_sum o = {__shfl_xor_sync(0xffffffffu, v.m, offset), __shfl_xor_sync(0xffffffffu, v.s, offset)};
        v = max_sum_merge(v, o);
    }
    return v;
}

/* Over the block, in a fixed order (warps, then the first warp over their results); every thread gets the
 * row's. `shared` holds 64 floats. */
__device__ static max_sum block_max_sum(max_sum v, float *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = warp_max_sum(v);
    __syncthreads(); /* shared may still be read for the previous row */
    if (lane == 0) shared[warp] = v.m, shared[32 + warp] = v.s;
    __syncthreads();
    max_sum w = {-INFINITY, 0.0f};
    if (lane < warps) w.m = shared[lane], w.s = shared[32 + lane];
    return warp_max_sum(w);
}

// losses (N) and lse (N) from logits (N, V) and targets (N).
template <typename T, int E>
__global__ void cross_entropy_forward_kernel(float *losses, float *lse, const T *logits, const int32_t *targets,
                                             int64_t rows, int64_t vocab, brg__cuda_error_record *rec,
                                             unsigned long long op) {
    __shared__ float shared[64];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *row = logits + r * vocab; // (V)
        max_sum a = {-INFINITY, 0.0f};
        for (int64_t j = (int64_t)threadIdx.x * E; j < vocab; j += (int64_t)blockDim.x * E) {
            float v[E];
            brg__load<E>(row + j, v);
            max_sum_add<E>(a, v);
        }
        a = block_max_sum(a, shared);
        if (threadIdx.x == 0) {
            float l = a.m + logf(a.s);
            int32_t t = targets[r];
            lse[r] = l;
            if (t < 0 || t >= vocab) {
                record_invalid_target(rec, op, r, t, vocab);
                losses[r] = 0.0f;
            } else {
                losses[r] = l - brg__to_float(row[t]);
            }
        }
    }
}

// dlogits (N, V) (+)= dlosses[n] (softmax(logits[n]) - onehot(target[n])), the softmax from lse. Written
// outright (FRESH) as 0 + the gradient: the same bits as added to zeros.
template <typename T, typename TD, int E, bool FRESH>
__global__ void cross_entropy_backward_kernel(TD *dlogits, const T *logits, const float *lse, const int32_t *targets,
                                              const float *dlosses, int64_t rows, int64_t vocab,
                                              brg__cuda_error_record *rec, unsigned long long op) {
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *row = logits + r * vocab; // (V)
        TD *drow = dlogits + r * vocab;    // (V)
        int32_t t = targets[r];
        if (t < 0 || t >= vocab) {
            if (threadIdx.x == 0) record_invalid_target(rec, op, r, t, vocab);
            continue; /* the whole block agrees: t is the same for every thread */
        }
        float l = lse[r], g = dlosses[r];
        for (int64_t j = (int64_t)threadIdx.x * E; j < vocab; j += (int64_t)blockDim.x * E) {
            float v[E], d[E];
            brg__load<E>(row + j, v);
            if constexpr (FRESH) {
#pragma unroll
                for (int k = 0; k < E; k++) d[k] = 0.0f;
            } else {
                brg__load<E>(drow + j, d);
            }
#pragma unroll
            for (int k = 0; k < E; k++) {
                float p = expf(v[k] - l);
                d[k] += j + k == t ? g * (p - 1.0f) : g * p;
            }
            brg__store<E>(drow + j, d);
        }
    }
}

/* ---- launchers ---- */

static unsigned rows_grid(int64_t rows) { return (unsigned)(rows < 65536 ? rows : 65536); }

template <typename T>
static brg_status cross_entropy_forward(float *losses, float *lse, const T *logits, const int32_t *targets,
                                        int64_t rows, int64_t vocab, brg__cuda_error_record *rec, const brg__op *op,
                                        cudaStream_t stream, char *msg) {
    BRG__REQUIRE(vocab > 0, msg, "cross-entropy: %lld classes", (long long)vocab);
    if (rows == 0) return BRG_OK;
    unsigned long long id = (unsigned long long)(uintptr_t)op;
    if (brg__vectorized(vocab, {logits}))
        cross_entropy_forward_kernel<T, BRG__VECTOR>
            <<<rows_grid(rows), THREADS, 0, stream>>>(losses, lse, logits, targets, rows, vocab, rec, id);
    else
        cross_entropy_forward_kernel<T, 1>
            <<<rows_grid(rows), THREADS, 0, stream>>>(losses, lse, logits, targets, rows, vocab, rec, id);
    BRG__LAUNCH_CHECK("cross_entropy_forward", msg);
    return BRG_OK;
}

template <typename T, typename TD, int E>
static void launch_backward(TD *dlogits, const T *logits, const float *lse, const int32_t *targets,
                            const float *dlosses, int64_t rows, int64_t vocab, int fresh, brg__cuda_error_record *rec,
                            unsigned long long id, cudaStream_t stream) {
    if (fresh)
        cross_entropy_backward_kernel<T, TD, E, true>
            <<<rows_grid(rows), THREADS, 0, stream>>>(dlogits, logits, lse, targets, dlosses, rows, vocab, rec, id);
    else
        cross_entropy_backward_kernel<T, TD, E, false>
            <<<rows_grid(rows), THREADS, 0, stream>>>(dlogits, logits, lse, targets, dlosses, rows, vocab, rec, id);
}

template <typename T, typename TD>
static brg_status cross_entropy_backward(TD *dlogits, const T *logits, const float *lse, const int32_t *targets,
                                         const float *dlosses, int64_t rows, int64_t vocab, int fresh,
                                         brg__cuda_error_record *rec, const brg__op *op, cudaStream_t stream,
                                         char *msg) {
    if (rows == 0 || vocab == 0) return BRG_OK;
    unsigned long long id = (unsigned long long)(uintptr_t)op;
    if (brg__vectorized(vocab, {logits, dlogits}))
        launch_backward<T, TD, BRG__VECTOR>(dlogits, logits, lse, targets, dlosses, rows, vocab, fresh, rec, id,
                                            stream);
    else
        launch_backward<T, TD, 1>(dlogits, logits, lse, targets, dlosses, rows, vocab, fresh, rec, id, stream);
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
    float *lse = call->aux;                                // (N)
    brg_status s = c->act == BRG__CUDA_BF16
                       ? cross_entropy_forward(losses, lse, (const brg__bf16 *)logits, targets, rows, vocab, c->errors,
                                               op, c->stream, call->msg)
                       : cross_entropy_forward(losses, lse, (const float *)logits, targets, rows, vocab, c->errors, op,
                                               c->stream, call->msg);
    return s == BRG_OK ? brg__cuda_checked(c, call->msg) : s;
}

template <typename T> static brg_status backward_typed(brg__cuda_ctx *c, const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t vocab = brg__cuda_last_dim(op->inputs[0], call->batch);
    int64_t rows = brg__cuda_rows(op->inputs[0], call->batch);
    const void *logits;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &logits));
    const int32_t *targets = (const int32_t *)call->in[1];
    int fresh = (call->din_fresh & 1u) != 0;
    if (brg__cuda_grad_type(c, call, 0) == BRG__CUDA_BF16)
        return cross_entropy_backward((brg__bf16 *)call->din[0], (const T *)logits, call->aux, targets, call->dout,
                                      rows, vocab, fresh, c->errors, op, c->stream, call->msg);
    return cross_entropy_backward((float *)call->din[0], (const T *)logits, call->aux, targets, call->dout, rows, vocab,
                                  fresh, c->errors, op, c->stream, call->msg);
}

brg_status brg__cuda_cross_entropy_backward(brg__cuda_ctx *c, const brg__op_call *call) {
    if (!call->din[0]) return BRG_OK; // targets have no gradient
    brg_status s = c->act == BRG__CUDA_BF16 ? backward_typed<brg__bf16>(c, call) : backward_typed<float>(c, call);
    return s == BRG_OK ? brg__cuda_checked(c, call->msg) : s;
}
