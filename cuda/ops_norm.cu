// Layer normalization over the last dimension, with fp32 weight and bias (llm.c's layernorm).
// aux: mean (N) then rstd (N), fp32, written by forward, read by backward. One warp per row, rows whose
// length is a multiple of 8 in 16-byte vectors; the weight and bias gradients sum the rows in blocks (row
// order), then the blocks (block order).
#include "backend.cuh"

#define WARPS_PER_BLOCK 8
#define WEIGHT_GRAD_BLOCKS 128

/* ---- kernels ---- */

// out (N, C) = (x - mean) rstd weight + bias; mean (N), rstd (N) = 1 / sqrt(var + eps). Each lane takes E
// consecutive channels at a time (16-byte vectors with E = 8).
template <typename T, int E>
__global__ void layernorm_forward_kernel(T *out, float *mean, float *rstd, const T *x, const float *weight,
                                         const float *bias, int64_t rows, int64_t channels, float eps) {
    int64_t row = (int64_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *xr = x + row * channels; // (C)
    T *yr = out + row * channels;     // (C)
    float sum = 0.0f;
    for (int64_t c = lane * E; c < channels; c += 32 * E) {
        float v[E];
        brg__load<E>(xr + c, v);
#pragma unroll
        for (int k = 0; k < E; k++) sum += v[k];
    }
    float m = brg__warp_sum(sum) / (float)channels;
    /* The variance from centered values (a second pass), as the CPU kernel. */
    float sq = 0.0f;
    for (int64_t c = lane * E; c < channels; c += 32 * E) {
        float v[E];
        brg__load<E>(xr + c, v);
#pragma unroll
        for (int k = 0; k < E; k++) sq += (v[k] - m) * (v[k] - m);
    }
    float s = 1.0f / sqrtf(brg__warp_sum(sq) / (float)channels + eps);
    for (int64_t c = lane * E; c < channels; c += 32 * E) {
        float v[E], w[E], b[E];
        brg__load<E>(xr + c, v);
        brg__load<E>(weight + c, w);
        brg__load<E>(bias + c, b);
#pragma unroll
        for (int k = 0; k < E; k++) v[k] = (v[k] - m) * s * w[k] + b[k];
        brg__store<E>(yr + c, v);
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = s;
    }
}

// dx (N, C) += rstd (g w - mean(g w) - xhat mean(g w xhat)), xhat = (x - mean) rstd, g = dout.
template <typename T, typename TD, int E>
__global__ void layernorm_backward_input_kernel(TD *dx, const T *x, const float *weight, const T *dout,
                                                const float *mean, const float *rstd, int64_t rows, int64_t channels,
                                                int fresh) {
    int64_t row = (int64_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *xr = x + row * channels, *gr = dout + row * channels;
    TD *dxr = dx + row * channels;
    float m = mean[row], s = rstd[row];
    float acc_g = 0.0f, acc_gx = 0.0f;
    for (int64_t c = lane * E; c < channels; c += 32 * E) {
        float v[E], g[E], w[E];
        brg__load<E>(xr + c, v);
        brg__load<E>(gr + c, g);
        brg__load<E>(weight + c, w);
#pragma unroll
        for (int k = 0; k < E; k++) {
            float gw = w[k] * g[k];
            acc_g += gw;
            acc_gx += gw * ((v[k] - m) * s);
        }
    }
    float g_mean = brg__warp_sum(acc_g) / (float)channels;
    float gx_mean = brg__warp_sum(acc_gx) / (float)channels;
    for (int64_t c = lane * E; c < channels; c += 32 * E) {
        float v[E], g[E], w[E], d[E];
        brg__load<E>(xr + c, v);
        brg__load<E>(gr + c, g);
        brg__load<E>(weight + c, w);
        if (fresh) {
#pragma unroll
            for (int k = 0; k < E; k++) d[k] = 0.0f; /* 0 + the gradient: dx holds nothing yet */
        } else {
            brg__load<E>(dxr + c, d);
        }
#pragma unroll
        for (int k = 0; k < E; k++) {
            float xhat = (v[k] - m) * s;
            d[k] += s * (w[k] * g[k] - g_mean - xhat * gx_mean);
        }
        brg__store<E>(dxr + c, d);
    }
}

// partials (2, blocks, C): block k sums xhat g and g over its rows, in row order.
template <typename T>
__global__ void layernorm_weight_partial_kernel(float *partials, const T *x, const T *dout, const float *mean,
                                                const float *rstd, int64_t rows, int64_t channels, int64_t span,
                                                int64_t blocks) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t k = blockIdx.y;
    if (c >= channels) return;
    int64_t r0 = k * span, r1 = r0 + span < rows ? r0 + span : rows;
    float dw = 0.0f, db = 0.0f;
    for (int64_t r = r0; r < r1; r++) {
        float g = brg__to_float(dout[r * channels + c]);
        dw += (brg__to_float(x[r * channels + c]) - mean[r]) * rstd[r] * g;
        db += g;
    }
    partials[k * channels + c] = dw;
    partials[(blocks + k) * channels + c] = db;
}

__global__ static void layernorm_weight_finish_kernel(float *dweight, float *dbias, const float *partials,
                                                      int64_t channels, int64_t blocks) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    float dw = 0.0f, db = 0.0f;
    for (int64_t k = 0; k < blocks; k++) {
        dw += partials[k * channels + c];
        db += partials[(blocks + k) * channels + c];
    }
    if (dweight) dweight[c] += dw;
    if (dbias) dbias[c] += db;
}

/* ---- launchers ---- */

template <typename T>
static brg_status layernorm_forward(T *out, float *mean, float *rstd, const T *x, const float *weight,
                                    const float *bias, int64_t rows, int64_t channels, float eps, cudaStream_t stream,
                                    char *msg) {
    BRG__REQUIRE(channels > 0, msg, "layernorm: %lld channels", (long long)channels);
    if (rows == 0) return BRG_OK;
    unsigned grid = (unsigned)((rows + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    if (brg__vectorized(channels, {out, x, weight, bias}))
        layernorm_forward_kernel<T, BRG__VECTOR>
            <<<grid, 32 * WARPS_PER_BLOCK, 0, stream>>>(out, mean, rstd, x, weight, bias, rows, channels, eps);
    else
        layernorm_forward_kernel<T, 1>
            <<<grid, 32 * WARPS_PER_BLOCK, 0, stream>>>(out, mean, rstd, x, weight, bias, rows, channels, eps);
    BRG__LAUNCH_CHECK("layernorm_forward", msg);
    return BRG_OK;
}

template <typename T, typename TD>
static brg_status layernorm_backward_input(TD *dx, const T *x, const float *weight, const T *dout, const float *mean,
                                           const float *rstd, int64_t rows, int64_t channels, int fresh,
                                           cudaStream_t stream, char *msg) {
    unsigned grid = (unsigned)((rows + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    if (brg__vectorized(channels, {dx, x, weight, dout}))
        layernorm_backward_input_kernel<T, TD, BRG__VECTOR>
            <<<grid, 32 * WARPS_PER_BLOCK, 0, stream>>>(dx, x, weight, dout, mean, rstd, rows, channels, fresh);
    else
        layernorm_backward_input_kernel<T, TD, 1>
            <<<grid, 32 * WARPS_PER_BLOCK, 0, stream>>>(dx, x, weight, dout, mean, rstd, rows, channels, fresh);
    BRG__LAUNCH_CHECK("layernorm_backward_input", msg);
    return BRG_OK;
}

template <typename T>
static brg_status layernorm_backward_weight(brg__cuda_ctx *c, float *dweight, float *dbias, const T *x, const T *dout,
                                            const float *mean, const float *rstd, int64_t rows, int64_t channels,
                                            char *msg) {
    int64_t blocks = rows < WEIGHT_GRAD_BLOCKS ? rows : WEIGHT_GRAD_BLOCKS;
    int64_t span = (rows + blocks - 1) / blocks;
    blocks = (rows + span - 1) / span;
    float *partials = (float *)brg__cuda_workspace(c, (size_t)(2 * blocks * channels) * sizeof(float), msg);
    if (!partials) return BRG_ERR_OUT_OF_MEMORY;
    const int threads = 256;
    dim3 grid((unsigned)((channels + threads - 1) / threads), (unsigned)blocks);
    layernorm_weight_partial_kernel<T>
        <<<grid, threads, 0, c->stream>>>(partials, x, dout, mean, rstd, rows, channels, span, blocks);
    BRG__LAUNCH_CHECK("layernorm_weight_partial", msg);
    layernorm_weight_finish_kernel<<<(unsigned)((channels + threads - 1) / threads), threads, 0, c->stream>>>(
        dweight, dbias, partials, channels, blocks);
    BRG__LAUNCH_CHECK("layernorm_weight_finish", msg);
    return BRG_OK;
}

/* ---- op entry points ---- */

static brg_status require_fp32_params(brg__cuda_ctx *c, const brg__op_call *call) {
    for (int q = 1; q <= 2; q++)
        if (c->act != BRG__CUDA_F32 && call->op->inputs[q]->kind != BRG_TENSOR_PARAMETER)
            return BRG__OP_FAIL(call, BRG_ERR_UNSUPPORTED, "input %d must be a parameter on a bf16 backend", q);
    return BRG_OK;
}

template <typename T> static brg_status forward_typed(brg__cuda_ctx *c, const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t channels = brg__cuda_last_dim(op->inputs[0], call->batch);
    int64_t rows = brg__cuda_rows(op->inputs[0], call->batch);
    const void *x;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &x));
    const float *weight = (const float *)call->in[1];  // (C)
    const float *bias = (const float *)call->in[2];    // (C)
    float *mean = call->aux, *rstd = call->aux + rows; // (N), (N)
    return layernorm_forward((T *)call->out, mean, rstd, (const T *)x, weight, bias, rows, channels, op->eps, c->stream,
                             call->msg);
}

template <typename T> static brg_status backward_typed(brg__cuda_ctx *c, const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t channels = brg__cuda_last_dim(op->inputs[0], call->batch);
    int64_t rows = brg__cuda_rows(op->inputs[0], call->batch);
    if (rows == 0 || channels == 0) return BRG_OK;
    const void *xv;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &xv));
    const T *x = (const T *)xv;                       // (N, C)
    const T *dout = (const T *)call->dout;            // (N, C)
    const float *weight = (const float *)call->in[1]; // (C)
    const float *mean = call->aux, *rstd = call->aux + rows;
    if (call->din[0]) {
        brg_status s = brg__cuda_grad_type(c, call, 0) == BRG__CUDA_BF16
                           ? layernorm_backward_input((brg__bf16 *)call->din[0], x, weight, dout, mean, rstd, rows,
                                                      channels, (int)(call->din_fresh & 1u), c->stream, call->msg)
                           : layernorm_backward_input((float *)call->din[0], x, weight, dout, mean, rstd, rows,
                                                      channels, (int)(call->din_fresh & 1u), c->stream, call->msg);
        BRG__CHECK(s);
    }
    if (call->din[1] || call->din[2]) {
        if ((call->din[1] && brg__cuda_grad_type(c, call, 1) != BRG__CUDA_F32) ||
            (call->din[2] && brg__cuda_grad_type(c, call, 2) != BRG__CUDA_F32))
            return BRG__OP_FAIL(call, BRG_ERR_UNSUPPORTED, "%s", "weight and bias gradients must be fp32");
        BRG__CHECK(
            layernorm_backward_weight(c, call->din[1], call->din[2], x, dout, mean, rstd, rows, channels, call->msg));
    }
    return BRG_OK;
}

brg_status brg__cuda_layernorm_forward(brg__cuda_ctx *c, const brg__op_call *call) {
    BRG__CHECK(require_fp32_params(c, call));
    return c->act == BRG__CUDA_BF16 ? forward_typed<brg__bf16>(c, call) : forward_typed<float>(c, call);
}

brg_status brg__cuda_layernorm_backward(brg__cuda_ctx *c, const brg__op_call *call) {
    BRG__CHECK(require_fp32_params(c, call));
    return c->act == BRG__CUDA_BF16 ? backward_typed<brg__bf16>(c, call) : backward_typed<float>(c, call);
}
