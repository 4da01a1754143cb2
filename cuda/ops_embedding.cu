// Token embedding: out[n,:] = weight[tokens[n],:], the fp32 table read directly.
// Backward sums, per token, the gradient rows of its positions in ascending position order, as the CPU
// kernel does (so fp32 gives its very bits): the (token, position) pairs are sorted by token with a
// stable radix sort, and one block per distinct token adds its rows in order.
#include <cub/device/device_radix_sort.cuh>

#include "backend.cuh"

/* ---- kernels ---- */

/* Records the first id outside [0, limit) a kernel met (the host reports it). */
__device__ static void record_invalid(brg__cuda_error_record *rec, unsigned long long op, int64_t position,
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

// out (N, C) = weight[tokens] (V, C); an invalid token gives a zero row.
template <typename T>
__global__ void embedding_forward_kernel(T *out, const int32_t *tokens, const float *weight, int64_t n, int64_t dim,
                                         int64_t vocab, brg__cuda_error_record *rec, unsigned long long op) {
    int64_t total = n * dim;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t row = i / dim, c = i % dim;
        int32_t t = tokens[row];
        if (t < 0 || t >= vocab) {
            if (c == 0) record_invalid(rec, op, row, t, vocab);
            out[i] = brg__from_float<T>(0.0f);
        } else {
            out[i] = brg__from_float<T>(weight[(int64_t)t * dim + c]);
        }
    }
}

// keys (N) = tokens, an invalid one replaced by vocab (sorted last, skipped); positions (N) = 0 .. N-1.
__global__ static void embedding_keys_kernel(int32_t *keys, int32_t *positions, const int32_t *tokens, int64_t n,
                                             int64_t vocab, brg__cuda_error_record *rec, unsigned long long op) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int32_t t = tokens[i];
        if (t < 0 || t >= vocab) {
            record_invalid(rec, op, i, t, vocab);
            t = (int32_t)vocab;
        }
        keys[i] = t;
        positions[i] = (int32_t)i;
    }
}

// Block j starts a run of equal sorted keys: dweight[key] += dout rows of the run, in position order.
template <typename T>
__global__ void embedding_backward_kernel(float *dweight, const T *dout, const int32_t *keys, const int32_t *positions,
                                          int64_t n, int64_t dim, int64_t vocab) {
    for (int64_t j = blockIdx.x; j < n; j += gridDim.x) {
        int32_t token = keys[j];
        if (token >= vocab || (j > 0 && keys[j - 1] == token)) continue;
        for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
            float acc = dweight[(int64_t)token * dim + c];
            for (int64_t k = j; k < n && keys[k] == token; k++)
                acc += brg__to_float(dout[(int64_t)positions[k] * dim + c]);
            dweight[(int64_t)token * dim + c] = acc;
        }
    }
}

/* ---- launchers ---- */

static const int THREADS = 256;

template <typename T>
static brg_status embedding_forward(T *out, const int32_t *tokens, const float *weight, int64_t n, int64_t dim,
                                    int64_t vocab, brg__cuda_error_record *rec, const brg__op *op, cudaStream_t stream,
                                    char *msg) {
    if (n == 0 || dim == 0) return BRG_OK;
    embedding_forward_kernel<T><<<brg__grid_for(n * dim, THREADS), THREADS, 0, stream>>>(
        out, tokens, weight, n, dim, vocab, rec, (unsigned long long)(uintptr_t)op);
    BRG__LAUNCH_CHECK("embedding_forward", msg);
    return BRG_OK;
}

static int bits_for(int64_t v) {
    int bits = 1;
    while (bits < 31 && (INT64_C(1) << bits) <= v) bits++;
    return bits;
}

template <typename T>
static brg_status embedding_backward(brg__cuda_ctx *c, float *dweight, const int32_t *tokens, const T *dout, int64_t n,
                                     int64_t dim, int64_t vocab, const brg__op *op, char *msg) {
    if (n == 0 || dim == 0) return BRG_OK;
    BRG__REQUIRE(n <= INT32_MAX && vocab < INT32_MAX, msg, "embedding: %lld positions or %lld ids exceed int32",
                 (long long)n, (long long)vocab);
    int bits = bits_for(vocab); /* vocab itself (the invalid marker) must fit */
    size_t temp_bytes = 0;
    BRG__CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, temp_bytes, (const int32_t *)NULL, (int32_t *)NULL,
                                                    (const int32_t *)NULL, (int32_t *)NULL, (int)n, 0, bits, c->stream),
                    msg);
    size_t ints = (size_t)n, aligned_ints = (ints + 63) / 64 * 64;
    unsigned char *ws = (unsigned char *)brg__cuda_workspace(c, 4 * aligned_ints * sizeof(int32_t) + temp_bytes, msg);
    if (!ws) return BRG_ERR_OUT_OF_MEMORY;
    int32_t *keys_in = (int32_t *)ws, *positions_in = keys_in + aligned_ints;
    int32_t *keys = positions_in + aligned_ints, *positions = keys + aligned_ints;
    void *temp = positions + aligned_ints;
    unsigned long long op_id = (unsigned long long)(uintptr_t)op;
    embedding_keys_kernel<<<brg__grid_for(n, THREADS), THREADS, 0, c->stream>>>(keys_in, positions_in, tokens, n, vocab,
                                                                                c->errors, op_id);
    BRG__LAUNCH_CHECK("embedding_keys", msg);
    BRG__CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys, positions_in, positions, (int)n, 0,
                                                    bits, c->stream),
                    msg);
    unsigned grid = (unsigned)(n < 65536 ? n : 65536);
    int threads = dim >= 256 ? 256 : (int)((dim + 31) / 32 * 32);
    embedding_backward_kernel<T><<<grid, threads, 0, c->stream>>>(dweight, dout, keys, positions, n, dim, vocab);
    BRG__LAUNCH_CHECK("embedding_backward", msg);
    return BRG_OK;
}

/* ---- op entry points ---- */

static brg_status check_weight(const brg__cuda_ctx *c, const brg__op_call *call) {
    if (call->op->inputs[1]->kind != BRG_TENSOR_PARAMETER && c->act != BRG__CUDA_F32)
        return BRG__OP_FAIL(call, BRG_ERR_UNSUPPORTED, "%s", "the table must be a parameter on a bf16 backend");
    return BRG_OK;
}

brg_status brg__cuda_embedding_forward(brg__cuda_ctx *c, const brg__op_call *call) {
    BRG__CHECK(check_weight(c, call));
    const brg__op *op = call->op;
    int64_t n = brg__tensor_numel(op->inputs[0], call->batch); // tokens (N)
    int64_t vocab = op->inputs[1]->shape[0], dim = op->inputs[1]->shape[1];
    const int32_t *tokens = (const int32_t *)call->in[0];
    const float *weight = (const float *)call->in[1]; // (V, C)
    brg_status s = c->act == BRG__CUDA_BF16 ? embedding_forward((brg__bf16 *)call->out, tokens, weight, n, dim, vocab,
                                                                c->errors, op, c->stream, call->msg)
                                            : embedding_forward((float *)call->out, tokens, weight, n, dim, vocab,
                                                                c->errors, op, c->stream, call->msg);
    return s == BRG_OK ? brg__cuda_checked(c, call->msg) : s;
}

brg_status brg__cuda_embedding_backward(brg__cuda_ctx *c, const brg__op_call *call) {
    float *dweight = call->din[1]; // (V, C), fp32
    if (!dweight) return BRG_OK;   // token ids have no gradient
    BRG__CHECK(check_weight(c, call));
    const brg__op *op = call->op;
    int64_t n = brg__tensor_numel(op->inputs[0], call->batch);
    int64_t vocab = op->inputs[1]->shape[0], dim = op->inputs[1]->shape[1];
    const int32_t *tokens = (const int32_t *)call->in[0];
    brg_status s =
        c->act == BRG__CUDA_BF16
            ? embedding_backward(c, dweight, tokens, (const brg__bf16 *)call->dout, n, dim, vocab, op, call->msg)
            : embedding_backward(c, dweight, tokens, (const float *)call->dout, n, dim, vocab, op, call->msg);
    return s == BRG_OK ? brg__cuda_checked(c, call->msg) : s;
}
