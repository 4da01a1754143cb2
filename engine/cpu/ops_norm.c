/* Layer normalization over the last dimension, with weight and bias (llm.c's layernorm).
 * aux: mean (N) then rstd (N), written by forward, read by backward. */
#include <math.h>

#include "cpu/kernels.h"

/* ---- kernels: one row of C features ---- */

/* out = (x - mean) rstd weight + bias; returns mean and rstd = 1 / sqrt(var + eps). */
static void layernorm_row_forward(float *restrict out, const float *restrict x, const float *restrict weight,
                                  const float *restrict bias, int64_t c, float eps, float *mean, float *rstd) {
    float m = brg__cpu_sum(x, c) / (float)c;
    /* The variance from centered values (a second pass): no cancellation for rows far from zero. */
    float acc[BRG__CPU_LANES] = {0};
    int64_t j = 0;
    for (; j + BRG__CPU_LANES <= c; j += BRG__CPU_LANES)
        for (int l = 0; l < BRG__CPU_LANES; l++) acc[l] += (x[j + l] - m) * (x[j + l] - m);
    for (; j < c; j++) acc[j % BRG__CPU_LANES] += (x[j] - m) * (x[j] - m);
    float s = 1.0f / sqrtf(brg__cpu_lanes_total(acc) / (float)c + eps);
    for (j = 0; j < c; j++) out[j] = (x[j] - m) * s * weight[j] + bias[j];
    *mean = m;
    *rstd = s;
}

/* dx += rstd (g w - mean(g w) - xhat mean(g w xhat)), xhat = (x - mean) rstd, g = dout. */
static void layernorm_row_backward_input(float *restrict dx, const float *restrict x, const float *restrict weight,
                                         const float *restrict g, int64_t c, float mean, float rstd) {
    float acc_g[BRG__CPU_LANES] = {0}, acc_gx[BRG__CPU_LANES] = {0};
    int64_t j = 0;
    for (; j + BRG__CPU_LANES <= c; j += BRG__CPU_LANES)
        for (int l = 0; l < BRG__CPU_LANES; l++) {
            float gw = weight[j + l] * g[j + l];
            acc_g[l] += gw;
            acc_gx[l] += gw * ((x[j + l] - mean) * rstd);
        }
    for (; j < c; j++) {
        float gw = weight[j] * g[j];
        acc_g[j % BRG__CPU_LANES] += gw;
        acc_gx[j % BRG__CPU_LANES] += gw * ((x[j] - mean) * rstd);
    }
    float g_mean = brg__cpu_lanes_total(acc_g) / (float)c;
    float gx_mean = brg__cpu_lanes_total(acc_gx) / (float)c;
    for (j = 0; j < c; j++) {
        float xhat = (x[j] - mean) * rstd;
        dx[j] += rstd * (weight[j] * g[j] - g_mean - xhat * gx_mean);
    }
}

/* dweight += xhat g; dbias += g (either may be NULL). */
static void layernorm_row_backward_weight(float *restrict dweight, float *restrict dbias, const float *restrict x,
                                          const float *restrict g, int64_t c, float mean, float rstd) {
    if (dbias)
        for (int64_t j = 0; j < c; j++) dbias[j] += g[j];
    if (dweight)
        for (int64_t j = 0; j < c; j++) dweight[j] += (x[j] - mean) * rstd * g[j];
}

/* ---- entry points ---- */

brg_status brg__cpu_layernorm_forward(const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t c = brg__cpu_last_dim(op->inputs[0], call->batch);
    int64_t n = brg__cpu_rows(op->inputs[0], call->batch);
    const float *x = call->in[0];      // (N, C)
    const float *weight = call->in[1]; // (C)
    const float *bias = call->in[2];   // (C)
    float *out = call->out;            // (N, C)
    float *mean = call->aux;           // (N)
    float *rstd = call->aux + n;       // (N)
    for (int64_t i = 0; i < n; i++)
        layernorm_row_forward(out + i * c, x + i * c, weight, bias, c, op->eps, &mean[i], &rstd[i]);
    return BRG_OK;
}

brg_status brg__cpu_layernorm_backward(const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t c = brg__cpu_last_dim(op->inputs[0], call->batch);
    int64_t n = brg__cpu_rows(op->inputs[0], call->batch);
    const float *x = call->in[0];      // (N, C)
    const float *weight = call->in[1]; // (C)
    const float *dout = call->dout;    // (N, C)
    const float *mean = call->aux;     // (N)
    const float *rstd = call->aux + n; // (N)
    float *dx = call->din[0];          // (N, C)
    float *dweight = call->din[1];     // (C)
    float *dbias = call->din[2];       // (C)
    /* Rows in ascending order: dweight and dbias sum over them in a fixed order. */
    for (int64_t i = 0; i < n; i++) {
        if (dx) layernorm_row_backward_input(dx + i * c, x + i * c, weight, dout + i * c, c, mean[i], rstd[i]);
        if (dweight || dbias)
            layernorm_row_backward_weight(dweight, dbias, x + i * c, dout + i * c, c, mean[i], rstd[i]);
    }
    return BRG_OK;
}
