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
 * dq += ds k / sqrt(hs), dk += ds^T q / sqrt(hs), dv += p^T dout, in two passes as the GPU's two backward
 * kernels take them (cuda/ops_attention.cu), so that each sum has one owner and no atomics: blocks of
 * query rows walk the key tiles for dq, blocks of key rows walk the query tiles for dk and dv.
 * Accumulation is in fp32, as in the GPU kernel with bf16 inputs. */
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

/* The probability p and d(score) ds of query row t against key u of head h, sample b (u <= t). */
static void tile_entry(const float *qkv, const float *dout, const float *lse, const float *D, const tiled_dims *d,
                       int64_t b, int64_t h, int64_t t, int64_t u, float scale, float *p, float *ds) {
    const float *q = q_row(qkv, d, b, t, h), *k = q_row(qkv, d, b, u, h) + d->C, *v = k + d->C;
    const float *g = dout + (b * d->T + t) * d->C + h * d->hs;
    float s = 0.0f, dp = 0.0f;
    for (int64_t c = 0; c < d->hs; c++) s += q[c] * k[c];
    for (int64_t c = 0; c < d->hs; c++) dp += g[c] * v[c];
    *p = expf(s * scale - lse[(b * d->NH + h) * d->T + t]);
    *ds = *p * (dp - D[t]);
}

brg_status brg__attention_tiled_backward(const float *qkv, const float *out, const float *dout, const float *lse,
                                         float *dqkv, int64_t B, int64_t T, int64_t C, int64_t NH, int64_t block_q,
                                         int64_t block_k) {
    tiled_dims d;
    BRG__CHECK(dims_check(B, T, C, NH, block_q, block_k, &d));
    if (!qkv || !out || !dout || !lse || !dqkv) return BRG_ERR_INVALID_ARGUMENT;
    const float scale = 1.0f / sqrtf((float)d.hs);
    int64_t most = block_q > block_k ? block_q : block_k;
    float *D = brg__malloc((size_t)T * sizeof *D), *acc = brg__malloc((size_t)(2 * most * d.hs) * sizeof *acc);
    if (!D || !acc) {
        free(D), free(acc);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++) {
            for (int64_t t = 0; t < T; t++) {
                const float *o = out + (b * T + t) * C + h * d.hs, *g = dout + (b * T + t) * C + h * d.hs;
                float dot = 0.0f;
                for (int64_t c = 0; c < d.hs; c++) dot += o[c] * g[c];
                D[t] = dot;
            }
            /* dq, as the GPU's dq kernel: a block of query rows walks the key tiles up to its last row,
             * summing ds k in fp32 accumulators; dq += scale * the sum at the end. */
            for (int64_t q0 = 0; q0 < T; q0 += block_q) {
                int64_t rows = q0 + block_q <= T ? block_q : T - q0;
                memset(acc, 0, (size_t)(rows * d.hs) * sizeof *acc);
                for (int64_t k0 = 0; k0 < q0 + rows; k0 += block_k) {
                    int64_t cols = k0 + block_k <= T ? block_k : T - k0;
                    for (int64_t i = 0; i < rows; i++)
                        for (int64_t j = 0; j < cols && k0 + j <= q0 + i; j++) {
                            float p, ds;
                            tile_entry(qkv, dout, lse, D, &d, b, h, q0 + i, k0 + j, scale, &p, &ds);
                            const float *k = q_row(qkv, &d, b, k0 + j, h) + C;
                            for (int64_t c = 0; c < d.hs; c++) acc[i * d.hs + c] += ds * k[c];
                        }
                }
                for (int64_t i = 0; i < rows; i++) {
                    float *dq = dqkv + (b * T + q0 + i) * 3 * C + h * d.hs;
                    for (int64_t c = 0; c < d.hs; c++) dq[c] += scale * acc[i * d.hs + c];
                }
            }
            /* dk and dv, as the GPU's dk/dv kernel: a block of key rows walks the query tiles from the one
             * holding its first key, summing ds^T q and p^T dout; added at the end. */
            for (int64_t k0 = 0; k0 < T; k0 += block_k) {
                int64_t rows = k0 + block_k <= T ? block_k : T - k0;
                float *acc_k = acc, *acc_v = acc + rows * d.hs;
                memset(acc, 0, (size_t)(2 * rows * d.hs) * sizeof *acc);
                for (int64_t q0 = (k0 / block_q) * block_q; q0 < T; q0 += block_q) {
                    int64_t cols = q0 + block_q <= T ? block_q : T - q0;
                    for (int64_t j = 0; j < rows; j++)
                        for (int64_t i = 0; i < cols; i++) {
                            int64_t t = q0 + i, u = k0 + j;
                            if (t < u) continue;
                            float p, ds;
                            tile_entry(qkv, dout, lse, D, &d, b, h, t, u, scale, &p, &ds);
                            const float *q = q_row(qkv, &d, b, t, h), *g = dout + (b * T + t) * C + h * d.hs;
                            for (int64_t c = 0; c < d.hs; c++) {
                                acc_k[j * d.hs + c] += ds * q[c];
                                acc_v[j * d.hs + c] += p * g[c];
                            }
                        }
                }
                for (int64_t j = 0; j < rows; j++) {
                    float *dk = dqkv + (b * T + k0 + j) * 3 * C + C + h * d.hs, *dv = dk + C;
                    for (int64_t c = 0; c < d.hs; c++) {
                        dk[c] += scale * acc_k[j * d.hs + c];
                        dv[c] += acc_v[j * d.hs + c];
                    }
                }
            }
        }
    free(D), free(acc);
    return BRG_OK;
}
