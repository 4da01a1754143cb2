/* Causal attention without the T x T matrix: FlashAttention-2's algorithm (Dao, 2023) in plain C, tile
 * by tile as a fused GPU kernel runs it, so that the algorithm is proven on the CPU before any GPU runs
 * it. The training kernels of the CPU backend stay the ones in ops_attention.c; this is the reference.
 *
 * Forward, per (b, head) and block of block_q query rows: the running max m and sum l of each row's
 * scores and its output accumulator o are updated block of block_k keys after block of keys (online
 * softmax: when a block raises the max, what was summed so far is rescaled by exp(m_old - m_new)); the
 * keys past the block's last row are never visited. The output is o / l; the log-sum-exp m + log l is
 * kept, one float per row: memory O(T) per head instead of the O(T^2) probabilities.
 * Backward recomputes each tile's probabilities from the log-sum-exp, p = exp(s - lse), with
 * D = rowsum(dout * out) for the softmax's backward: ds = p (dp - D), dp = dout v^T; then
 * dq += ds k / sqrt(hs), dk += ds^T q / sqrt(hs), dv += p^T dout. Accumulation is in fp32, as in the
 * GPU kernel with bf16 inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernels.h"

typedef struct tiled_dims {
    int64_t B, T, C, NH, hs;
} tiled_dims;

static brg_status dims_check(int64_t B, int64_t T, int64_t C, int64_t NH, int64_t block_q, int64_t block_k,
                             tiled_dims *d) {
    if (B < 1 || T < 1 || C < 1 || NH < 1 || C % NH != 0 || block_q < 1 || block_k < 1) return BRG_ERR_INVALID_ARGUMENT;
    *d = (tiled_dims){B, T, C, NH, C / NH};
    return BRG_OK;
}

/* Row t of head h of sample b: q, k, v in qkv (B, T, 3C); out, dout in (B, T, C). */
static const float *q_row(const float *qkv, const tiled_dims *d, int64_t b, int64_t t, int64_t h) {
    return qkv + (b * d->T + t) * 3 * d->C + h * d->hs;
}

brg_status brg__attention_tiled_forward(const float *qkv, float *out, float *lse, int64_t B, int64_t T, int64_t C,
                                        int64_t NH, int64_t block_q, int64_t block_k) {
    tiled_dims d;
    BRG__CHECK(dims_check(B, T, C, NH, block_q, block_k, &d));
    if (!qkv || !out || !lse) return BRG_ERR_INVALID_ARGUMENT;
    const float scale = 1.0f / sqrtf((float)d.hs);
    float *m = brg__malloc((size_t)block_q * sizeof *m), *l = brg__malloc((size_t)block_q * sizeof *l);
    float *o = brg__malloc((size_t)(block_q * d.hs) * sizeof *o), *s = brg__malloc((size_t)(block_q * block_k) * sizeof *s);
    if (!m || !l || !o || !s) {
        free(m), free(l), free(o), free(s);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t q0 = 0; q0 < T; q0 += block_q) {
                int64_t rows = q0 + block_q <= T ? block_q : T - q0;
                for (int64_t i = 0; i < rows; i++) m[i] = -INFINITY, l[i] = 0.0f;
                memset(o, 0, (size_t)(rows * d.hs) * sizeof *o);
                for (int64_t k0 = 0; k0 < q0 + rows; k0 += block_k) { /* causal: keys up to the last row */
                    int64_t cols = k0 + block_k <= T ? block_k : T - k0;
                    for (int64_t i = 0; i < rows; i++) {
                        int64_t t = q0 + i;
                        const float *q = q_row(qkv, &d, b, t, h);
                        float *srow = s + i * block_k, block_max = -INFINITY;
                        for (int64_t j = 0; j < cols; j++) {
                            int64_t u = k0 + j;
                            if (u > t) {
                                srow[j] = -INFINITY;
                                continue;
                            }
                            const float *k = q_row(qkv, &d, b, u, h) + d.C;
                            float acc = 0.0f;
                            for (int64_t c = 0; c < d.hs; c++) acc += q[c] * k[c];
                            srow[j] = acc * scale;
                            if (srow[j] > block_max) block_max = srow[j];
                        }
                        if (block_max == -INFINITY) continue; /* every key of the block is in the future */
                        float m_new = m[i] > block_max ? m[i] : block_max;
                        float rescale = expf(m[i] - m_new); /* 0 on the first block: m was -inf */
                        float *orow = o + i * d.hs;
                        for (int64_t c = 0; c < d.hs; c++) orow[c] *= rescale;
                        float sum = 0.0f;
                        for (int64_t j = 0; j < cols; j++) {
                            if (srow[j] == -INFINITY) continue;
                            float p = expf(srow[j] - m_new);
                            sum += p;
                            const float *v = q_row(qkv, &d, b, k0 + j, h) + 2 * d.C;
                            for (int64_t c = 0; c < d.hs; c++) orow[c] += p * v[c];
                        }
                        l[i] = l[i] * rescale + sum;
                        m[i] = m_new;
                    }
                }
                for (int64_t i = 0; i < rows; i++) {
                    int64_t t = q0 + i;
                    float *dst = out + (b * T + t) * C + h * d.hs;
                    for (int64_t c = 0; c < d.hs; c++) dst[c] = o[i * d.hs + c] / l[i];
                    lse[(b * NH + h) * T + t] = m[i] + logf(l[i]);
                }
            }
    free(m), free(l), free(o), free(s);
    return BRG_OK;
}

brg_status brg__attention_tiled_backward(const float *qkv, const float *out, const float *dout, const float *lse,
                                         float *dqkv, int64_t B, int64_t T, int64_t C, int64_t NH, int64_t block_q,
                                         int64_t block_k) {
    tiled_dims d;
    BRG__CHECK(dims_check(B, T, C, NH, block_q, block_k, &d));
    if (!qkv || !out || !dout || !lse || !dqkv) return BRG_ERR_INVALID_ARGUMENT;
    const float scale = 1.0f / sqrtf((float)d.hs);
    float *D = brg__malloc((size_t)T * sizeof *D);
    if (!D) return BRG_ERR_OUT_OF_MEMORY;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++) {
            for (int64_t t = 0; t < T; t++) {
                const float *o = out + (b * T + t) * C + h * d.hs, *g = dout + (b * T + t) * C + h * d.hs;
                float acc = 0.0f;
                for (int64_t c = 0; c < d.hs; c++) acc += o[c] * g[c];
                D[t] = acc;
            }
            /* As FlashAttention-2's backward: the outer loop over key blocks (dk, dv stay in registers
             * there), the inner over the query blocks that see them. */
            for (int64_t k0 = 0; k0 < T; k0 += block_k) {
                int64_t cols = k0 + block_k <= T ? block_k : T - k0;
                for (int64_t q0 = (k0 / block_q) * block_q; q0 < T; q0 += block_q) {
                    int64_t rows = q0 + block_q <= T ? block_q : T - q0;
                    for (int64_t i = 0; i < rows; i++) {
                        int64_t t = q0 + i;
                        const float *q = q_row(qkv, &d, b, t, h);
                        const float *g = dout + (b * T + t) * C + h * d.hs;
                        float row_lse = lse[(b * NH + h) * T + t];
                        float *dq = dqkv + (b * T + t) * 3 * C + h * d.hs;
                        for (int64_t j = 0; j < cols; j++) {
                            int64_t u = k0 + j;
                            if (u > t) break;
                            const float *k = q_row(qkv, &d, b, u, h) + C, *v = k + C;
                            float s = 0.0f, dp = 0.0f;
                            for (int64_t c = 0; c < d.hs; c++) s += q[c] * k[c];
                            float p = expf(s * scale - row_lse);
                            for (int64_t c = 0; c < d.hs; c++) dp += g[c] * v[c];
                            float ds = p * (dp - D[t]) * scale;
                            float *dk = dqkv + (b * T + u) * 3 * C + C + h * d.hs, *dv = dk + C;
                            for (int64_t c = 0; c < d.hs; c++) {
                                dq[c] += ds * k[c];
                                dk[c] += ds * q[c];
                                dv[c] += p * g[c];
                            }
                        }
                    }
                }
            }
        }
    free(D);
    return BRG_OK;
}
