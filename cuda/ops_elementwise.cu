// Element-wise ops (add with a broadcast trailing operand, GELU in its tanh form, ReLU) and the helpers
// other families share: column sums in a fixed order, type conversion, fp32 accumulate and scale, and
// sums of squares in double. Kernels first, launchers after, op entry points last.
#include "backend.cuh"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_CUBIC 0.044715f

/* Rows per block of the column sums: the partition depends on the shape only. */
#define COLUMN_SUM_BLOCKS 128

/* ---- kernels ---- */

/* Each thread takes E consecutive elements at a time (16-byte vectors with E = 8: brg__load). */
#define FOR_EACH_VECTOR(i, n, E)                                                                       \
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * (E); i < (n);                 \
         i += (int64_t)gridDim.x * blockDim.x * (E))

// out (R, S) = a (R, S) + b (S) broadcast over the rows; S = n when the shapes are equal. With E = 8, S is a
// multiple of 8, so the 8 elements of b are consecutive too.
template <typename T, int E>
__global__ void add_forward_kernel(T *out, const T *a, const T *b, int64_t n, int64_t inner) {
    FOR_EACH_VECTOR(i, n, E) {
        float va[E], vb[E];
        brg__load<E>(a + i, va);
        brg__load<E>(b + i % inner, vb);
#pragma unroll
        for (int k = 0; k < E; k++) va[k] += vb[k];
        brg__store<E>(out + i, va);
    }
}

/* Gradients: `fresh` (din_fresh) starts each element at 0 instead of reading it (0 + g: the same bits as
 * adding to a zeroed buffer). */
template <int E, typename TD> __device__ __forceinline__ void load_or_zero(const TD *p, float (&v)[E], int fresh) {
    if (fresh) {
#pragma unroll
        for (int k = 0; k < E; k++) v[k] = 0.0f;
    } else {
        brg__load<E>(p, v);
    }
}

// acc (n) += g (n); acc = 0 + g when fresh
template <typename TD, typename TG, int E>
__global__ void add_into_kernel(TD *acc, const TG *g, int64_t n, int fresh) {
    FOR_EACH_VECTOR(i, n, E) {
        float va[E], vg[E];
        load_or_zero<E>(acc + i, va, fresh);
        brg__load<E>(g + i, vg);
#pragma unroll
        for (int k = 0; k < E; k++) va[k] += vg[k];
        brg__store<E>(acc + i, va);
    }
}

/* GELU in its tanh form, 0.5 (1 + tanh(u)) written as 1 / (1 + e^(-2u)) as the CPU kernel does, or ReLU. */
template <bool GELU> __device__ __forceinline__ float unary(float v) {
    if constexpr (GELU) {
        float u = GELU_SCALE * (v + GELU_CUBIC * v * v * v);
        return v / (1.0f + expf(-2.0f * u));
    } else {
        return v > 0.0f ? v : 0.0f;
    }
}

/* d += g f'(v). ReLU adds nothing where v <= 0: those elements are stored back as they were (a float holds
 * a bf16 exactly). */
template <bool GELU> __device__ __forceinline__ void unary_grad_add(float &d, float v, float g) {
    if constexpr (GELU) {
        float u = GELU_SCALE * (v + GELU_CUBIC * v * v * v);
        float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * v * v);
        float s = 1.0f / (1.0f + expf(-2.0f * u));
        d += g * (s + 2.0f * v * s * (1.0f - s) * du);
    } else if (v > 0.0f) {
        d += g;
    }
}

template <typename T, int E, bool GELU> __global__ void unary_forward_kernel(T *out, const T *x, int64_t n) {
    FOR_EACH_VECTOR(i, n, E) {
        float v[E];
        brg__load<E>(x + i, v);
#pragma unroll
        for (int k = 0; k < E; k++) v[k] = unary<GELU>(v[k]);
        brg__store<E>(out + i, v);
    }
}

template <typename T, typename TD, int E, bool GELU>
__global__ void unary_backward_kernel(TD *dx, const T *x, const T *dout, int64_t n, int fresh) {
    FOR_EACH_VECTOR(i, n, E) {
        float v[E], g[E], d[E];
        brg__load<E>(x + i, v);
        brg__load<E>(dout + i, g);
        load_or_zero<E>(dx + i, d, fresh);
#pragma unroll
        for (int k = 0; k < E; k++) unary_grad_add<GELU>(d[k], v[k], g[k]);
        brg__store<E>(dx + i, d);
    }
}

// partials (blocks, cols): block k sums rows [k * span, (k + 1) * span) of g (rows, cols) in row order.
template <typename TG>
__global__ void column_sums_partial_kernel(float *partials, const TG *g, int64_t rows, int64_t cols, int64_t span) {
    int64_t col = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t block = blockIdx.y;
    if (col >= cols) return;
    int64_t r0 = block * span, r1 = r0 + span < rows ? r0 + span : rows;
    float acc = 0.0f;
    for (int64_t r = r0; r < r1; r++) acc += brg__to_float(g[r * cols + col]);
    partials[block * cols + col] = acc;
}

// acc (cols) += the sum of partials (blocks, cols) over the blocks, in block order; acc = 0 + .. when fresh.
template <typename TA>
__global__ void column_sums_finish_kernel(TA *acc, const float *partials, int64_t blocks, int64_t cols, int fresh) {
    int64_t col = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    float total = 0.0f;
    for (int64_t k = 0; k < blocks; k++) total += partials[k * cols + col];
    acc[col] = brg__from_float<TA>((fresh ? 0.0f : brg__to_float(acc[col])) + total);
}

template <typename TD, typename TS, int E> __global__ void convert_kernel(TD *dst, const TS *src, int64_t n) {
    FOR_EACH_VECTOR(i, n, E) {
        float v[E];
        brg__load<E>(src + i, v);
        brg__store<E>(dst + i, v);
    }
}

template <int E> __global__ void scale_kernel(float *x, int64_t n, float factor) {
    FOR_EACH_VECTOR(i, n, E) {
        float v[E];
        brg__load<E>(x + i, v);
#pragma unroll
        for (int k = 0; k < E; k++) v[k] *= factor;
        brg__store<E>(x + i, v);
    }
}

// partials[t][k]: block k of tensor t sums squares of its slice [k * span, (k + 1) * span) in double.
__global__ static void sum_squares_partial_kernel(double *partials, const uint64_t *descriptors) {
    __shared__ double shared[32];
    int tensor = blockIdx.x / BRG__CUDA_SQUARES_BLOCKS, k = blockIdx.x % BRG__CUDA_SQUARES_BLOCKS;
    const float *x = (const float *)descriptors[2 * tensor];
    int64_t n = (int64_t)descriptors[2 * tensor + 1];
    int64_t span = (n + BRG__CUDA_SQUARES_BLOCKS - 1) / BRG__CUDA_SQUARES_BLOCKS;
    int64_t i0 = k * span, i1 = i0 + span < n ? i0 + span : n;
    double acc = 0.0;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) acc += (double)x[i] * (double)x[i];
    acc = brg__block_sum(acc, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ static void sum_squares_finish_kernel(double *out, const double *partials, int count) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= count) return;
    double total = 0.0;
    for (int k = 0; k < BRG__CUDA_SQUARES_BLOCKS; k++) total += partials[t * BRG__CUDA_SQUARES_BLOCKS + k];
    out[t] = total;
}

/* ---- launchers ---- */

static const int THREADS = 256;


/* Blocks for n elements taken E at a time. */
static unsigned grid_of(int64_t n, int e) { return brg__grid_for((n + e - 1) / e, THREADS); }


template <typename T>
static brg_status add_forward(T *out, const T *a, const T *b, int64_t n, int64_t inner, cudaStream_t stream,
                              char *msg) {
    BRG__REQUIRE(inner > 0 && n % inner == 0, msg, "add: %lld elements do not repeat a trailing shape of %lld",
                 (long long)n, (long long)inner);
    if (brg__vectorized(n, {out, a, b}) && inner % BRG__VECTOR == 0)
        add_forward_kernel<T, BRG__VECTOR><<<grid_of(n, BRG__VECTOR), THREADS, 0, stream>>>(out, a, b, n, inner);
    else
        add_forward_kernel<T, 1><<<grid_of(n, 1), THREADS, 0, stream>>>(out, a, b, n, inner);
    BRG__LAUNCH_CHECK("add_forward", msg);
    return BRG_OK;
}

template <typename TD, typename TG>
static brg_status add_into(TD *acc, const TG *g, int64_t n, int fresh, cudaStream_t stream, char *msg) {
    if (n <= 0) return BRG_OK;
    if (brg__vectorized(n, {acc, g}))
        add_into_kernel<TD, TG, BRG__VECTOR><<<grid_of(n, BRG__VECTOR), THREADS, 0, stream>>>(acc, g, n, fresh);
    else
        add_into_kernel<TD, TG, 1><<<grid_of(n, 1), THREADS, 0, stream>>>(acc, g, n, fresh);
    BRG__LAUNCH_CHECK("add_into", msg);
    return BRG_OK;
}

template <typename TA, typename TG>
static brg_status column_sums(brg__cuda_ctx *c, TA *acc, const TG *g, int64_t rows, int64_t cols, int fresh,
                              char *msg) {
    if (rows <= 0 || cols <= 0) return BRG_OK;
    int64_t blocks = rows < COLUMN_SUM_BLOCKS ? rows : COLUMN_SUM_BLOCKS;
    int64_t span = (rows + blocks - 1) / blocks;
    blocks = (rows + span - 1) / span;
    float *partials = (float *)brg__cuda_workspace(c, (size_t)(blocks * cols) * sizeof(float), msg);
    if (!partials) return BRG_ERR_OUT_OF_MEMORY;
    dim3 grid((unsigned)((cols + THREADS - 1) / THREADS), (unsigned)blocks);
    column_sums_partial_kernel<TG><<<grid, THREADS, 0, c->stream>>>(partials, g, rows, cols, span);
    BRG__LAUNCH_CHECK("column_sums_partial", msg);
    column_sums_finish_kernel<TA>
        <<<(unsigned)((cols + THREADS - 1) / THREADS), THREADS, 0, c->stream>>>(acc, partials, blocks, cols, fresh);
    BRG__LAUNCH_CHECK("column_sums_finish", msg);
    return BRG_OK;
}

static brg_status column_sums_typed(brg__cuda_ctx *c, void *acc, brg__cuda_dtype acc_type, const void *g,
                                    brg__cuda_dtype g_type, int64_t rows, int64_t cols, int fresh, char *msg) {
    int bf16_acc = acc_type == BRG__CUDA_BF16, bf16_g = g_type == BRG__CUDA_BF16;
    if (bf16_acc && bf16_g) return column_sums(c, (brg__bf16 *)acc, (const brg__bf16 *)g, rows, cols, fresh, msg);
    if (bf16_acc) return column_sums(c, (brg__bf16 *)acc, (const float *)g, rows, cols, fresh, msg);
    if (bf16_g) return column_sums(c, (float *)acc, (const brg__bf16 *)g, rows, cols, fresh, msg);
    return column_sums(c, (float *)acc, (const float *)g, rows, cols, fresh, msg);
}

brg_status brg__cuda_column_sums(brg__cuda_ctx *c, void *acc, brg__cuda_dtype acc_type, const void *g,
                                 brg__cuda_dtype g_type, int64_t rows, int64_t cols, char *msg) {
    return column_sums_typed(c, acc, acc_type, g, g_type, rows, cols, 0, msg);
}

brg_status brg__cuda_convert(void *dst, brg__cuda_dtype dst_type, const void *src, brg__cuda_dtype src_type, int64_t n,
                             cudaStream_t stream, char *msg) {
    if (n <= 0) return BRG_OK;
    bool vector = brg__vectorized(n, {dst, src});
    unsigned grid = grid_of(n, vector ? BRG__VECTOR : 1);
    if (dst_type == BRG__CUDA_BF16 && src_type == BRG__CUDA_F32 && vector)
        convert_kernel<brg__bf16, float, BRG__VECTOR>
            <<<grid, THREADS, 0, stream>>>((brg__bf16 *)dst, (const float *)src, n);
    else if (dst_type == BRG__CUDA_BF16 && src_type == BRG__CUDA_F32)
        convert_kernel<brg__bf16, float, 1><<<grid, THREADS, 0, stream>>>((brg__bf16 *)dst, (const float *)src, n);
    else if (dst_type == BRG__CUDA_F32 && src_type == BRG__CUDA_BF16 && vector)
        convert_kernel<float, brg__bf16, BRG__VECTOR>
            <<<grid, THREADS, 0, stream>>>((float *)dst, (const brg__bf16 *)src, n);
    else if (dst_type == BRG__CUDA_F32 && src_type == BRG__CUDA_BF16)
        convert_kernel<float, brg__bf16, 1><<<grid, THREADS, 0, stream>>>((float *)dst, (const brg__bf16 *)src, n);
    else if (dst_type == src_type)
        BRG__CUDA_CHECK(
            cudaMemcpyAsync(dst, src, (size_t)n * brg__cuda_dtype_bytes(src_type), cudaMemcpyDeviceToDevice, stream),
            msg);
    else
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_DTYPE, "convert: types %d to %d", (int)src_type,
                                (int)dst_type);
    BRG__LAUNCH_CHECK("convert", msg);
    return BRG_OK;
}

brg_status brg__cuda_accumulate(float *dst, const float *src, int64_t n, cudaStream_t stream, char *msg) {
    return add_into(dst, src, n, 0, stream, msg);
}

brg_status brg__cuda_scale(float *x, int64_t n, float factor, cudaStream_t stream, char *msg) {
    if (n <= 0) return BRG_OK;
    if (brg__vectorized(n, {x}))
        scale_kernel<BRG__VECTOR><<<grid_of(n, BRG__VECTOR), THREADS, 0, stream>>>(x, n, factor);
    else
        scale_kernel<1><<<grid_of(n, 1), THREADS, 0, stream>>>(x, n, factor);
    BRG__LAUNCH_CHECK("scale", msg);
    return BRG_OK;
}

brg_status brg__cuda_sum_squares(double *out, const uint64_t *host_descriptors, uint64_t *descriptors, double *partials,
                                 int count, cudaStream_t stream, char *msg) {
    if (count <= 0) return BRG_OK;
    BRG__CUDA_CHECK(cudaMemcpyAsync(descriptors, host_descriptors, (size_t)count * 2 * sizeof(uint64_t),
                                    cudaMemcpyHostToDevice, stream),
                    msg);
    sum_squares_partial_kernel<<<(unsigned)count * BRG__CUDA_SQUARES_BLOCKS, THREADS, 0, stream>>>(partials,
                                                                                                   descriptors);
    BRG__LAUNCH_CHECK("sum_squares_partial", msg);
    sum_squares_finish_kernel<<<(unsigned)((count + THREADS - 1) / THREADS), THREADS, 0, stream>>>(out, partials,
                                                                                                   count);
    BRG__LAUNCH_CHECK("sum_squares_finish", msg);
    return BRG_OK;
}

/* ---- op entry points ---- */

brg_status brg__cuda_add_forward(brg__cuda_ctx *c, const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t n = brg__tensor_numel(op->inputs[0], call->batch);     // a: (R, S)
    int64_t inner = brg__tensor_numel(op->inputs[1], call->batch); // b: (S)
    if (n == 0) return BRG_OK;
    const void *a, *b;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &a));
    BRG__CHECK(brg__cuda_operand(c, call, 1, &b));
    if (c->act == BRG__CUDA_BF16)
        return add_forward((brg__bf16 *)call->out, (const brg__bf16 *)a, (const brg__bf16 *)b, n, inner, c->stream,
                           call->msg);
    return add_forward((float *)call->out, (const float *)a, (const float *)b, n, inner, c->stream, call->msg);
}

/* acc (rows * cols of acc_type) += g (rows * cols) when summed == 0, else acc (cols) += column sums of g;
 * written (0 + ..) when fresh. */
template <typename TG>
static brg_status add_backward_into(brg__cuda_ctx *c, void *acc, brg__cuda_dtype acc_type, const TG *g, int64_t rows,
                                    int64_t cols, int summed, int fresh, char *msg) {
    if (summed) return column_sums_typed(c, acc, acc_type, g, c->act, rows, cols, fresh, msg);
    if (acc_type == BRG__CUDA_BF16) return add_into((brg__bf16 *)acc, g, rows * cols, fresh, c->stream, msg);
    return add_into((float *)acc, g, rows * cols, fresh, c->stream, msg);
}

brg_status brg__cuda_add_backward(brg__cuda_ctx *c, const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t n = brg__tensor_numel(op->inputs[0], call->batch);
    int64_t inner = brg__tensor_numel(op->inputs[1], call->batch);
    if (n == 0 || inner == 0) return BRG_OK;
    for (int q = 0; q < 2; q++) {
        if (!call->din[q]) continue;
        int summed = q == 1 && inner != n; /* b broadcast over the rows: its gradient sums them */
        brg__cuda_dtype t = brg__cuda_grad_type(c, call, q);
        int fresh = (call->din_fresh >> q) & 1u;
        brg_status s = c->act == BRG__CUDA_BF16 ? add_backward_into(c, call->din[q], t, (const brg__bf16 *)call->dout,
                                                                    n / inner, inner, summed, fresh, call->msg)
                                                : add_backward_into(c, call->din[q], t, (const float *)call->dout,
                                                                    n / inner, inner, summed, fresh, call->msg);
        BRG__CHECK(s);
    }
    return BRG_OK;
}

template <typename T> static brg_status unary_forward(brg__cuda_ctx *c, const brg__op_call *call, int gelu) {
    int64_t n = brg__tensor_numel(call->op->inputs[0], call->batch); // (N)
    if (n == 0) return BRG_OK;
    const void *x;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &x));
    T *out = (T *)call->out;
    const T *in = (const T *)x;
    if (brg__vectorized(n, {out, in})) {
        unsigned grid = grid_of(n, BRG__VECTOR);
        if (gelu) unary_forward_kernel<T, BRG__VECTOR, true><<<grid, THREADS, 0, c->stream>>>(out, in, n);
        else unary_forward_kernel<T, BRG__VECTOR, false><<<grid, THREADS, 0, c->stream>>>(out, in, n);
    } else {
        unsigned grid = grid_of(n, 1);
        if (gelu) unary_forward_kernel<T, 1, true><<<grid, THREADS, 0, c->stream>>>(out, in, n);
        else unary_forward_kernel<T, 1, false><<<grid, THREADS, 0, c->stream>>>(out, in, n);
    }
    BRG__LAUNCH_CHECK("gelu_forward or relu_forward", call->msg);
    return BRG_OK;
}

template <typename T, typename TD>
static brg_status unary_backward_typed(brg__cuda_ctx *c, const brg__op_call *call, const T *x, int64_t n, int gelu) {
    TD *dx = (TD *)call->din[0];
    const T *dout = (const T *)call->dout;
    int fresh = call->din_fresh & 1u;
    if (brg__vectorized(n, {dx, x, dout})) {
        unsigned grid = grid_of(n, BRG__VECTOR);
        if (gelu)
            unary_backward_kernel<T, TD, BRG__VECTOR, true><<<grid, THREADS, 0, c->stream>>>(dx, x, dout, n, fresh);
        else
            unary_backward_kernel<T, TD, BRG__VECTOR, false><<<grid, THREADS, 0, c->stream>>>(dx, x, dout, n, fresh);
    } else {
        unsigned grid = grid_of(n, 1);
        if (gelu) unary_backward_kernel<T, TD, 1, true><<<grid, THREADS, 0, c->stream>>>(dx, x, dout, n, fresh);
        else unary_backward_kernel<T, TD, 1, false><<<grid, THREADS, 0, c->stream>>>(dx, x, dout, n, fresh);
    }
    BRG__LAUNCH_CHECK("gelu_backward or relu_backward", call->msg);
    return BRG_OK;
}

template <typename T> static brg_status unary_backward(brg__cuda_ctx *c, const brg__op_call *call, int gelu) {
    int64_t n = brg__tensor_numel(call->op->inputs[0], call->batch);
    if (!call->din[0] || n == 0) return BRG_OK;
    const void *x;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &x));
    if (brg__cuda_grad_type(c, call, 0) == BRG__CUDA_BF16)
        return unary_backward_typed<T, brg__bf16>(c, call, (const T *)x, n, gelu);
    return unary_backward_typed<T, float>(c, call, (const T *)x, n, gelu);
}

brg_status brg__cuda_gelu_forward(brg__cuda_ctx *c, const brg__op_call *call) {
    return c->act == BRG__CUDA_BF16 ? unary_forward<brg__bf16>(c, call, 1) : unary_forward<float>(c, call, 1);
}
brg_status brg__cuda_gelu_backward(brg__cuda_ctx *c, const brg__op_call *call) {
    return c->act == BRG__CUDA_BF16 ? unary_backward<brg__bf16>(c, call, 1) : unary_backward<float>(c, call, 1);
}
brg_status brg__cuda_relu_forward(brg__cuda_ctx *c, const brg__op_call *call) {
    return c->act == BRG__CUDA_BF16 ? unary_forward<brg__bf16>(c, call, 0) : unary_forward<float>(c, call, 0);
}
brg_status brg__cuda_relu_backward(brg__cuda_ctx *c, const brg__op_call *call) {
    return c->act == BRG__CUDA_BF16 ? unary_backward<brg__bf16>(c, call, 0) : unary_backward<float>(c, call, 0);
}
