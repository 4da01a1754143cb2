// Causal multi-head self-attention (GPT-2) on a fused qkv input, as batched GEMMs around a masked softmax.
//
// qkv (B, T, 3C) holds q, k and v side by side; head h reads columns [h hs, (h+1) hs) of each, so for one
// sample the NH heads are one strided batch (stride hs, leading dimension 3C), with no copies. aux keeps
// the softmax probabilities att (B, NH, T, T) in the activation type, zero above the diagonal; forward
// computes the scaled scores into it and turns each row into its softmax in place. Backward takes
// d(att) per sample into workspace, turns it into d(scores) in place (softmax backward), then dq, dk and
// dv. The products are full T x T ones; the masked half is zeros.
#include <cmath>

#include "backend.cuh"

#define ROWS_PER_BLOCK 8 /* one warp per row */

/* ---- kernels ---- */

// Each row t of att (rows, T) holds the scaled scores; entries [0, t] become their softmax, the rest 0.
template <typename T> __global__ void softmax_causal_kernel(T *att, int64_t rows, int64_t seq) {
    int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (r >= rows) return;
    int64_t t = r % seq;
    T *row = att + r * seq; // (T)
    float m = -INFINITY;
    for (int64_t j = lane; j <= t; j += 32) m = fmaxf(m, brg__to_float(row[j]));
    m = brg__warp_max(m);
    float s = 0.0f;
    for (int64_t j = lane; j <= t; j += 32) s += expf(brg__to_float(row[j]) - m);
    float inv = 1.0f / brg__warp_sum(s);
    for (int64_t j = lane; j < seq; j += 32)
        row[j] = brg__from_float<T>(j <= t ? expf(brg__to_float(row[j]) - m) * inv : 0.0f);
}

// In place, d(att) -> d(scores): p_j (datt_j - sum_i p_i datt_i) for j <= t, 0 after.
template <typename T> __global__ void softmax_causal_backward_kernel(T *datt, const T *att, int64_t rows, int64_t seq) {
    int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (r >= rows) return;
    int64_t t = r % seq;
    T *drow = datt + r * seq;      // (T)
    const T *prow = att + r * seq; // (T)
    float dot = 0.0f;
    for (int64_t j = lane; j <= t; j += 32) dot += brg__to_float(prow[j]) * brg__to_float(drow[j]);
    dot = brg__warp_sum(dot);
    for (int64_t j = lane; j < seq; j += 32)
        drow[j] = brg__from_float<T>(j <= t ? brg__to_float(prow[j]) * (brg__to_float(drow[j]) - dot) : 0.0f);
}

/* ---- launchers ---- */

template <typename T>
static brg_status softmax_causal(T *att, int64_t rows, int64_t seq, cudaStream_t stream, char *msg) {
    if (rows == 0) return BRG_OK;
    unsigned grid = (unsigned)((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    softmax_causal_kernel<T><<<grid, 32 * ROWS_PER_BLOCK, 0, stream>>>(att, rows, seq);
    BRG__LAUNCH_CHECK("softmax_causal", msg);
    return BRG_OK;
}

template <typename T>
static brg_status softmax_causal_backward(T *datt, const T *att, int64_t rows, int64_t seq, cudaStream_t stream,
                                          char *msg) {
    if (rows == 0) return BRG_OK;
    unsigned grid = (unsigned)((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    softmax_causal_backward_kernel<T><<<grid, 32 * ROWS_PER_BLOCK, 0, stream>>>(datt, att, rows, seq);
    BRG__LAUNCH_CHECK("softmax_causal_backward", msg);
    return BRG_OK;
}

/* ---- op entry points ---- */

typedef struct attention_dims {
    int64_t batch, seq, channels, heads, head_size; /* B, T, C, NH, hs */
} attention_dims;

static brg_status attention_dims_get(const brg__op_call *call, attention_dims *d) {
    const brg_tensor *qkv = call->op->inputs[0]; // (B, T, 3C)
    d->batch = brg__cuda_dim(qkv, 0, call->batch);
    d->seq = brg__cuda_dim(qkv, 1, call->batch);
    d->channels = brg__cuda_dim(qkv, 2, call->batch) / 3;
    d->heads = call->op->heads;
    d->head_size = d->heads > 0 ? d->channels / d->heads : 0;
    if (d->heads <= 0 || d->head_size * d->heads != d->channels ||
        3 * d->channels != brg__cuda_dim(qkv, 2, call->batch))
        return BRG__OP_FAIL(call, BRG_ERR_SHAPE, "%lld channels do not split into 3 x %lld heads",
                            (long long)brg__cuda_dim(qkv, 2, call->batch), (long long)d->heads);
    return BRG_OK;
}

/* One strided batch over the heads of one sample: rows of every operand are at the given strides. */
static brg__cuda_gemm_args head_batch(const attention_dims *d, brg__cuda_dtype type) {
    brg__cuda_gemm_args g;
    memset(&g, 0, sizeof g);
    g.ab_type = type;
    g.c_type = type;
    g.batch = d->heads;
    return g;
}

template <typename T> static brg_status forward_typed(brg__cuda_ctx *c, const brg__op_call *call) {
    attention_dims d;
    BRG__CHECK(attention_dims_get(call, &d));
    int64_t T_ = d.seq, C = d.channels, hs = d.head_size, NH = d.heads;
    float scale = 1.0f / sqrtf((float)hs);
    const void *qkv_v;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &qkv_v));
    const T *qkv = (const T *)qkv_v; // (B, T, 3C)
    T *out = (T *)call->out;         // (B, T, C)
    T *att = (T *)call->aux;         // (B, NH, T, T)
    for (int64_t b = 0; b < d.batch; b++) {
        const T *q = qkv + b * T_ * 3 * C; // head h: (T, hs) at column h hs, row stride 3C
        const T *k = q + C, *v = q + 2 * C;
        T *att_b = att + b * NH * T_ * T_; // (NH, T, T)
        // scores (T, T) = scale q k^T, per head
        brg__cuda_gemm_args g = head_batch(&d, c->act);
        g.trans_b = 1, g.m = T_, g.n = T_, g.k = hs, g.alpha = scale;
        g.a = q, g.lda = 3 * C, g.stride_a = hs;
        g.b = k, g.ldb = 3 * C, g.stride_b = hs;
        g.c = att_b, g.ldc = T_, g.stride_c = T_ * T_;
        BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
    }
    BRG__CHECK(softmax_causal(att, d.batch * NH * T_, T_, c->stream, call->msg));
    for (int64_t b = 0; b < d.batch; b++) {
        const T *v = qkv + b * T_ * 3 * C + 2 * C;
        // o (T, hs) = att (T, T) v (T, hs), per head, into out's columns h hs (row stride C)
        brg__cuda_gemm_args g = head_batch(&d, c->act);
        g.m = T_, g.n = hs, g.k = T_, g.alpha = 1.0f;
        g.a = att + b * NH * T_ * T_, g.lda = T_, g.stride_a = T_ * T_;
        g.b = v, g.ldb = 3 * C, g.stride_b = hs;
        g.c = out + b * T_ * C, g.ldc = C, g.stride_c = hs;
        BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
    }
    return BRG_OK;
}

template <typename T> static brg_status backward_typed(brg__cuda_ctx *c, const brg__op_call *call) {
    attention_dims d;
    BRG__CHECK(attention_dims_get(call, &d));
    if (brg__cuda_grad_type(c, call, 0) != c->act)
        return BRG__OP_FAIL(call, BRG_ERR_UNSUPPORTED, "%s", "the input must be an activation");
    int64_t T_ = d.seq, C = d.channels, hs = d.head_size, NH = d.heads;
    float scale = 1.0f / sqrtf((float)hs);
    const void *qkv_v;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &qkv_v));
    const T *qkv = (const T *)qkv_v;                                                         // (B, T, 3C)
    const T *att = (const T *)call->aux;                                                     // (B, NH, T, T)
    const T *dout = (const T *)call->dout;                                                   // (B, T, C)
    T *dqkv = (T *)call->din[0];                                                             // (B, T, 3C)
    T *dscores = (T *)brg__cuda_workspace(c, (size_t)(NH * T_ * T_) * sizeof(T), call->msg); // (NH, T, T), one sample
    if (!dscores) return BRG_ERR_OUT_OF_MEMORY;
    for (int64_t b = 0; b < d.batch; b++) {
        const T *q = qkv + b * T_ * 3 * C, *k = q + C, *v = q + 2 * C;
        T *dq = dqkv + b * T_ * 3 * C, *dk = dq + C, *dv = dq + 2 * C;
        const T *att_b = att + b * NH * T_ * T_;
        const T *dout_b = dout + b * T_ * C;
        // datt (T, T) = dout (T, hs) v^T
        brg__cuda_gemm_args g = head_batch(&d, c->act);
        g.trans_b = 1, g.m = T_, g.n = T_, g.k = hs, g.alpha = 1.0f;
        g.a = dout_b, g.lda = C, g.stride_a = hs;
        g.b = v, g.ldb = 3 * C, g.stride_b = hs;
        g.c = dscores, g.ldc = T_, g.stride_c = T_ * T_;
        BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
        BRG__CHECK(softmax_causal_backward(dscores, att_b, NH * T_, T_, c->stream, call->msg));
        // dq (T, hs) += scale dscores (T, T) k (T, hs)
        g = head_batch(&d, c->act);
        g.m = T_, g.n = hs, g.k = T_, g.alpha = scale, g.beta = 1.0f;
        g.a = dscores, g.lda = T_, g.stride_a = T_ * T_;
        g.b = k, g.ldb = 3 * C, g.stride_b = hs;
        g.c = dq, g.ldc = 3 * C, g.stride_c = hs;
        BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
        // dk (T, hs) += scale dscores^T q
        g = head_batch(&d, c->act);
        g.trans_a = 1, g.m = T_, g.n = hs, g.k = T_, g.alpha = scale, g.beta = 1.0f;
        g.a = dscores, g.lda = T_, g.stride_a = T_ * T_;
        g.b = q, g.ldb = 3 * C, g.stride_b = hs;
        g.c = dk, g.ldc = 3 * C, g.stride_c = hs;
        BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
        // dv (T, hs) += att^T dout
        g = head_batch(&d, c->act);
        g.trans_a = 1, g.m = T_, g.n = hs, g.k = T_, g.alpha = 1.0f, g.beta = 1.0f;
        g.a = att_b, g.lda = T_, g.stride_a = T_ * T_;
        g.b = dout_b, g.ldb = C, g.stride_b = hs;
        g.c = dv, g.ldc = 3 * C, g.stride_c = hs;
        BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
    }
    return BRG_OK;
}

brg_status brg__cuda_attention_forward(brg__cuda_ctx *c, const brg__op_call *call) {
    return c->act == BRG__CUDA_BF16 ? forward_typed<brg__bf16>(c, call) : forward_typed<float>(c, call);
}

brg_status brg__cuda_attention_backward(brg__cuda_ctx *c, const brg__op_call *call) {
    if (!call->din[0]) return BRG_OK;
    return c->act == BRG__CUDA_BF16 ? backward_typed<brg__bf16>(c, call) : backward_typed<float>(c, call);
}
