/* The reference forward of every op: double precision, plain loops, written from the op's definition
 * rather than from the kernels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_test.h"

static int64_t dim(const brg_tensor *t, int i, int64_t batch) { return t->shape[i] == BRG_BATCH ? batch : t->shape[i]; }
static int64_t last(const brg_tensor *t, int64_t batch) { return dim(t, t->ndim - 1, batch); }

static void embedding(const brg__op *op, int64_t batch, const int32_t *tok, const double *w, double *out) {
    int64_t n = brg__tensor_numel(op->inputs[0], batch), c = op->inputs[1]->shape[1];
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) out[i * c + j] = w[tok[i] * c + j];
}

static void linear(const brg__op *op, int64_t batch, const double *x, const double *w, const double *b, double *out) {
    int64_t k = last(op->inputs[0], batch), n = brg__tensor_numel(op->inputs[0], batch) / k;
    int64_t m = op->inputs[1]->shape[0];
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++) {
            double s = b[j];
            for (int64_t l = 0; l < k; l++) s += x[i * k + l] * w[j * k + l];
            out[i * m + j] = s;
        }
}

static void matmul(const brg__op *op, int64_t batch, const double *a, const double *b, double *out) {
    const brg_tensor *ta = op->inputs[0], *tb = op->inputs[1];
    int trans_a = (op->flags & BRG_MATMUL_TRANSPOSE_A) != 0, trans_b = (op->flags & BRG_MATMUL_TRANSPOSE_B) != 0;
    int64_t ar = dim(ta, ta->ndim - 2, batch), ac = dim(ta, ta->ndim - 1, batch);
    int64_t br = dim(tb, tb->ndim - 2, batch), bc = dim(tb, tb->ndim - 1, batch);
    int64_t m = trans_a ? ac : ar, k = trans_a ? ar : ac, n = trans_b ? br : bc;
    int64_t count = brg__tensor_numel(ta, batch) / (ar * ac);
    for (int64_t p = 0; p < count; p++) {
        const double *ap = a + p * m * k;
        const double *bp = tb->ndim == 2 ? b : b + p * k * n;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t l = 0; l < k; l++) {
                    double av = trans_a ? ap[l * m + i] : ap[i * k + l];
                    double bv = trans_b ? bp[j * k + l] : bp[l * n + j];
                    s += av * bv;
                }
                out[p * m * n + i * n + j] = s;
            }
    }
}

static void add(const brg__op *op, int64_t batch, const double *a, const double *b, double *out) {
    int64_t n = brg__tensor_numel(op->inputs[0], batch), nb = brg__tensor_numel(op->inputs[1], batch);
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i % nb];
}

static void layernorm(const brg__op *op, int64_t batch, const double *x, const double *w, const double *b, double *out) {
    int64_t c = last(op->inputs[0], batch), n = brg__tensor_numel(op->inputs[0], batch) / c;
    for (int64_t i = 0; i < n; i++) {
        const double *xi = x + i * c;
        double mean = 0, var = 0;
        for (int64_t j = 0; j < c; j++) mean += xi[j];
        mean /= (double)c;
        for (int64_t j = 0; j < c; j++) var += (xi[j] - mean) * (xi[j] - mean);
        var /= (double)c;
        double rstd = 1.0 / sqrt(var + (double)op->eps);
        for (int64_t j = 0; j < c; j++) out[i * c + j] = (xi[j] - mean) * rstd * w[j] + b[j];
    }
}

static void attention(const brg__op *op, int64_t batch, const double *qkv, double *out) {
    const brg_tensor *t = op->inputs[0];
    int64_t B = dim(t, 0, batch), T = dim(t, 1, batch), C = dim(t, 2, batch) / 3, NH = op->heads, hs = C / NH;
    double scale = 1.0 / sqrt((double)hs);
    double *p = malloc((size_t)T * sizeof *p); // one row of probabilities
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t i = 0; i < T; i++) {
                const double *q = qkv + (b * T + i) * 3 * C + h * hs;
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j <= i; j++) {
                    const double *k = qkv + (b * T + j) * 3 * C + C + h * hs;
                    double s = 0;
                    for (int64_t d = 0; d < hs; d++) s += q[d] * k[d];
                    p[j] = s * scale;
                    mx = fmax(mx, p[j]);
                }
                for (int64_t j = 0; j <= i; j++) sum += (p[j] = exp(p[j] - mx));
                double *o = out + (b * T + i) * C + h * hs;
                for (int64_t d = 0; d < hs; d++) {
                    double s = 0;
                    for (int64_t j = 0; j <= i; j++) s += p[j] / sum * qkv[(b * T + j) * 3 * C + 2 * C + h * hs + d];
                    o[d] = s;
                }
            }
    free(p);
}

static void cross_entropy(const brg__op *op, int64_t batch, const double *logits, const int32_t *targets,
                          double *out) {
    int64_t v = last(op->inputs[0], batch), n = brg__tensor_numel(op->inputs[0], batch) / v;
    for (int64_t i = 0; i < n; i++) {
        const double *row = logits + i * v;
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < v; j++) mx = fmax(mx, row[j]);
        for (int64_t j = 0; j < v; j++) sum += exp(row[j] - mx);
        out[i] = mx + log(sum) - row[targets[i]];
    }
}

void ref_forward(const brg__op *op, int64_t batch, double *const in[BRG__MAX_INPUTS],
                 const int32_t *const ids[BRG__MAX_INPUTS], double *out) {
    int64_t n = brg__tensor_numel(op->inputs[0], batch);
    switch (op->kind) {
    case BRG_OP_EMBEDDING: embedding(op, batch, ids[0], in[1], out); break;
    case BRG_OP_LINEAR: linear(op, batch, in[0], in[1], in[2], out); break;
    case BRG_OP_MATMUL: matmul(op, batch, in[0], in[1], out); break;
    case BRG_OP_ADD: add(op, batch, in[0], in[1], out); break;
    case BRG_OP_LAYERNORM: layernorm(op, batch, in[0], in[1], in[2], out); break;
    case BRG_OP_GELU:
        for (int64_t i = 0; i < n; i++) {
            double x = in[0][i];
            out[i] = 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
        }
        break;
    case BRG_OP_RELU:
        for (int64_t i = 0; i < n; i++) out[i] = in[0][i] > 0 ? in[0][i] : 0.0;
        break;
    case BRG_OP_ATTENTION: attention(op, batch, in[0], out); break;
    case BRG_OP_CROSS_ENTROPY: cross_entropy(op, batch, in[0], ids[1], out); break;
    default: break; /* the tensor-parallel collectives are not kernels */
    }
}
