/* Layer normalization over the last dimension, with weight and bias (llm.c's layernorm).
 * aux: mean (N) then rstd (N), written by forward, read by backward.
 * Threads: forward and the input gradient by pieces of rows; the weight and bias gradients by pieces of
 * columns, each column summed over the rows in ascending order, so no split changes a result. */
#include <math.h>
#include <string.h>

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

/* Columns [0, c) of dweight += xhat g and dbias += g over `rows` rows in ascending order (either may
 * be NULL); rows of x and g have stride `stride`. */
static void layernorm_columns_backward_weight(float *restrict dweight, float *restrict dbias, const float *restrict x,
                                              const float *restrict g, int64_t rows, int64_t c, int64_t stride,
                                              const float *restrict mean, const float *restrict rstd) {
    for (int64_t i = 0; i < rows; i++) {
        const float *xi = x + i * stride, *gi = g + i * stride;
        if (dbias)
            for (int64_t j = 0; j < c; j++) dbias[j] += gi[j];
        if (dweight)
            for (int64_t j = 0; j < c; j++) dweight[j] += (xi[j] - mean[i]) * rstd[i] * gi[j];
    }
}

/* ---- entry points ---- */

typedef struct layernorm_job {
    int64_t n, c;    /* rows, features */
    int64_t per_piece; /* rows (forward, input gradient) or columns (weight gradients) per piece */
    float eps;
    const float *x, *weight, *bias, *dout, *mean_in, *rstd_in;
    float *out, *mean, *rstd, *dx, *dweight, *dbias;
    int fresh; /* dx holds nothing yet (din_fresh): each row zeroed just before its gradient is added */
} layernorm_job;

static void layernorm_forward_piece(void *ctx, int64_t piece, float *scratch) {
    const layernorm_job *job = ctx;
    int64_t i0, i1, c = job->c;
    brg__cpu_piece_range(piece, job->per_piece, job->n, &i0, &i1);
    for (int64_t i = i0; i < i1; i++)
        layernorm_row_forward(job->out + i * c, job->x + i * c, job->weight, job->bias, c, job->eps, &job->mean[i],
                              &job->rstd[i]);
}

static void layernorm_backward_input_piece(void *ctx, int64_t piece, float *scratch) {
    const layernorm_job *job = ctx;
    int64_t i0, i1, c = job->c;
    brg__cpu_piece_range(piece, job->per_piece, job->n, &i0, &i1);
    if (job->fresh) memset(job->dx + i0 * c, 0, (size_t)((i1 - i0) * c) * sizeof *job->dx);
    for (int64_t i = i0; i < i1; i++)
        layernorm_row_backward_input(job->dx + i * c, job->x + i * c, job->weight, job->dout + i * c, c,
                                     job->mean_in[i], job->rstd_in[i]);
}

static void layernorm_backward_weight_piece(void *ctx, int64_t piece, float *scratch) {
    const layernorm_job *job = ctx;
    int64_t j0, j1;
    brg__cpu_piece_range(piece, job->per_piece, job->c, &j0, &j1);
    layernorm_columns_backward_weight(job->dweight ? job->dweight + j0 : NULL, job->dbias ? job->dbias + j0 : NULL,
                                      job->x + j0, job->dout + j0, job->n, j1 - j0, job->c, job->mean_in,
                                      job->rstd_in);
}

brg_status brg__cpu_layernorm_forward(const brg__op_call *call) {
    const brg__op *op = call->op;
    layernorm_job job = {.eps = op->eps};
    job.c = brg__cpu_last_dim(op->inputs[0], call->batch);
    job.n = brg__cpu_rows(op->inputs[0], call->batch);
    job.x = call->in[0];      // (N, C)
    job.weight = call->in[1]; // (C)
    job.bias = call->in[2];   // (C)
    job.out = call->out;      // (N, C)
    job.mean = call->aux;     // (N)
    job.rstd = call->aux + job.n; // (N)
    job.per_piece = brg__cpu_rows_per_piece(job.c);
    brg__cpu_parallel(brg__cpu_pieces(job.n, job.per_piece), layernorm_forward_piece, &job);
    return BRG_OK;
}

brg_status brg__cpu_layernorm_backward(const brg__op_call *call) {
    const brg__op *op = call->op;
    layernorm_job job = {0};
    job.c = brg__cpu_last_dim(op->inputs[0], call->batch);
    job.n = brg__cpu_rows(op->inputs[0], call->batch);
    job.x = call->in[0];              // (N, C)
    job.weight = call->in[1];         // (C)
    job.dout = call->dout;            // (N, C)
    job.mean_in = call->aux;          // (N)
    job.rstd_in = call->aux + job.n;  // (N)
    job.dx = call->din[0];            // (N, C)
    job.fresh = (call->din_fresh & 1u) != 0;
    job.dweight = call->din[1];       // (C)
    job.dbias = call->din[2];         // (C)
    if (job.dx) {
        job.per_piece = brg__cpu_rows_per_piece(job.c);
        brg__cpu_parallel(brg__cpu_pieces(job.n, job.per_piece), layernorm_backward_input_piece, &job);
    }
    if (job.dweight || job.dbias) {
        job.per_piece = brg__cpu_columns_per_piece(job.n);
        brg__cpu_parallel(brg__cpu_pieces(job.c, job.per_piece), layernorm_backward_weight_piece, &job);
    }
    return BRG_OK;
}
