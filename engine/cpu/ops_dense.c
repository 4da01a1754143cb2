/* GEMM ops: linear (x W^T + b) and matmul (op(a) op(b), batched, with transpose flags). */
#include "cpu/kernels.h"

/* ---- linear ---- */

typedef struct linear_dims {
    int64_t rows;         /* N: every leading index of x */
    int64_t in_features;  /* K */
    int64_t out_features; /* M */
} linear_dims;

static brg_status linear_dims_get(const brg__op_call *call, linear_dims *d) {
    const brg__op *op = call->op;
    d->in_features = brg__cpu_last_dim(op->inputs[0], call->batch);
    d->rows = brg__cpu_rows(op->inputs[0], call->batch);
    d->out_features = op->inputs[1]->shape[0];
    return brg__cpu_check_blas_dims(call, 3, (const int64_t[]){d->rows, d->in_features, d->out_features});
}

/* acc (M) += the column sums of g (N, M), rows in ascending order. */
static void column_sums(float *restrict acc, const float *restrict g, int64_t rows, int64_t cols, int64_t stride) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) acc[j] += g[i * stride + j];
}

typedef struct column_sums_job {
    float *acc;
    const float *g;
    int64_t rows, cols, per_piece;
} column_sums_job;

/* Columns [j0, j1) of the sums: every column adds the same rows in the same order whatever the split. */
static void column_sums_piece(void *ctx, int64_t piece, float *scratch) {
    const column_sums_job *job = ctx;
    int64_t j0, j1;
    brg__cpu_piece_range(piece, job->per_piece, job->cols, &j0, &j1);
    column_sums(job->acc + j0, job->g + j0, job->rows, j1 - j0, job->cols);
}

static void column_sums_parallel(float *acc, const float *g, int64_t rows, int64_t cols) {
    column_sums_job job = {acc, g, rows, cols, brg__cpu_columns_per_piece(rows)};
    brg__cpu_parallel(brg__cpu_pieces(cols, job.per_piece), column_sums_piece, &job);
}

brg_status brg__cpu_linear_forward(const brg__op_call *call) {
    linear_dims d;
    BRG__CHECK(linear_dims_get(call, &d));
    int64_t n = d.rows, k = d.in_features, m = d.out_features;
    const float *x = call->in[0];    // (N, K)
    const float *w = call->in[1];    // (M, K)
    const float *bias = call->in[2]; // (M)
    float *out = call->out;          // (N, M)
    if (bias) brg__cpu_gemm_bias(0, 1, n, m, k, x, k, w, k, bias, out, m);
    else brg__cpu_gemm(0, 1, n, m, k, 1.0f, x, k, w, k, 0.0f, out, m);
    return BRG_OK;
}

brg_status brg__cpu_linear_backward(const brg__op_call *call) {
    linear_dims d;
    BRG__CHECK(linear_dims_get(call, &d));
    int64_t n = d.rows, k = d.in_features, m = d.out_features;
    const float *x = call->in[0];   // (N, K)
    const float *w = call->in[1];   // (M, K)
    const float *dout = call->dout; // (N, M)
    float *dx = call->din[0];       // (N, K)
    float *dw = call->din[1];       // (M, K)
    float *dbias = call->din[2];    // (M)
    if (dx) brg__cpu_gemm(0, 0, n, k, m, 1.0f, dout, m, w, k, call->din_fresh & 1u ? 0.0f : 1.0f, dx, k);
    if (dw) brg__cpu_gemm(1, 0, m, k, n, 1.0f, dout, m, x, k, 1.0f, dw, k);
    if (dbias) column_sums_parallel(dbias, dout, n, m);
    return BRG_OK;
}

/* ---- matmul ---- */

typedef brg__matmul_dims matmul_dims;

static brg_status matmul_dims_get(const brg__op_call *call, matmul_dims *d) {
    brg__matmul_dims_get(call->op, call->batch, d);
    return brg__cpu_check_blas_dims(call, 3, (const int64_t[]){d->m, d->k, d->n});
}

static int matmul_stacked(const matmul_dims *d) {
    return d->b_shared && !d->trans_a && d->count * d->m <= INT_MAX;
}

/* One product per leading index p, the products spread over threads (each one sgemm call). */
typedef struct matmul_job {
    const matmul_dims *d;
    const float *a, *b, *dout;
    float *out, *da, *db;
    int64_t b_step;
    int fresh; /* da written, not added to */
} matmul_job;

static void matmul_forward_piece(void *ctx, int64_t p, float *scratch) {
    const matmul_job *job = ctx;
    const matmul_dims *d = job->d;
    brg__cpu_sgemm(d->trans_a, d->trans_b, d->m, d->n, d->k, 1.0f, job->a + p * d->m * d->k, d->lda,
                   job->b + p * job->b_step, d->ldb, 0.0f, job->out + p * d->m * d->n, d->n);
}

brg_status brg__cpu_matmul_forward(const brg__op_call *call) {
    matmul_dims d;
    BRG__CHECK(matmul_dims_get(call, &d));
    const float *a = call->in[0]; // (P, M, K) or (P, K, M)
    const float *b = call->in[1]; // (K, N) or (N, K), or (P, ..) of those
    float *out = call->out;       // (P, M, N)
    if (matmul_stacked(&d)) {
        /* The GPT output head: (B T, C) x wte^T in one GEMM. */
        brg__cpu_gemm(0, d.trans_b, d.count * d.m, d.n, d.k, 1.0f, a, d.lda, b, d.ldb, 0.0f, out, d.n);
        return BRG_OK;
    }
    if (d.count == 1) {
        brg__cpu_gemm(d.trans_a, d.trans_b, d.m, d.n, d.k, 1.0f, a, d.lda, b, d.ldb, 0.0f, out, d.n);
        return BRG_OK;
    }
    matmul_job job = {.d = &d, .a = a, .b = b, .out = out, .b_step = d.b_shared ? 0 : d.k * d.n};
    brg__cpu_parallel(d.count, matmul_forward_piece, &job);
    return BRG_OK;
}

/* brg__cpu_gemm (C tiled over the threads) or brg__cpu_sgemm (one call, inside a piece). */
typedef void (*gemm_fn)(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t,
                        float, float *, int64_t);

/* da += dout op(b)^T for one matrix (or for the stacked rows); da = .. when fresh. */
static void matmul_backward_a(const matmul_dims *d, int64_t m, const float *b, const float *dout, float *da,
                              int fresh, int tiled) {
    gemm_fn gemm = tiled ? brg__cpu_gemm : brg__cpu_sgemm;
    float beta = fresh ? 0.0f : 1.0f;
    if (!d->trans_a) // da (M, K) += dout (M, N) op(b)^T (N, K)
        gemm(0, !d->trans_b, m, d->k, d->n, 1.0f, dout, d->n, b, d->ldb, beta, da, d->lda);
    else // da (K, M) += op(b) (K, N) dout^T (N, M)
        gemm(d->trans_b, 1, d->k, m, d->n, 1.0f, b, d->ldb, dout, d->n, beta, da, d->lda);
}

/* db += op(a)^T dout (or its transpose) for one matrix (or for the stacked rows). */
static void matmul_backward_b(const matmul_dims *d, int64_t m, const float *a, const float *dout, float *db,
                              int tiled) {
    gemm_fn gemm = tiled ? brg__cpu_gemm : brg__cpu_sgemm;
    if (!d->trans_b) // db (K, N) += op(a)^T (K, M) dout (M, N)
        gemm(!d->trans_a, 0, d->k, d->n, m, 1.0f, a, d->lda, dout, d->n, 1.0f, db, d->ldb);
    else // db (N, K) += dout^T (N, M) op(a) (M, K)
        gemm(1, d->trans_a, d->n, d->k, m, 1.0f, dout, d->n, a, d->lda, 1.0f, db, d->ldb);
}

/* The gradients of product p that no other product touches: da always, db when b is not shared. */
static void matmul_backward_piece(void *ctx, int64_t p, float *scratch) {
    const matmul_job *job = ctx;
    const matmul_dims *d = job->d;
    const float *dout_p = job->dout + p * d->m * d->n;
    if (job->da) matmul_backward_a(d, d->m, job->b + p * job->b_step, dout_p, job->da + p * d->m * d->k, job->fresh, 0);
    if (job->db && !d->b_shared)
        matmul_backward_b(d, d->m, job->a + p * d->m * d->k, dout_p, job->db + p * job->b_step, 0);
}

brg_status brg__cpu_matmul_backward(const brg__op_call *call) {
    matmul_dims d;
    BRG__CHECK(matmul_dims_get(call, &d));
    const float *a = call->in[0];   // (P, M, K) or (P, K, M)
    const float *b = call->in[1];   // (K, N) or (N, K), or (P, ..) of those
    const float *dout = call->dout; // (P, M, N)
    float *da = call->din[0];       // a's shape
    float *db = call->din[1];       // b's shape
    int fresh = (call->din_fresh & 1u) != 0; // da written, not added to
    if (matmul_stacked(&d) || d.count == 1) {
        /* One GEMM each; for db the sum over the P matrices happens inside it. */
        int64_t rows = matmul_stacked(&d) ? d.count * d.m : d.m;
        if (da) matmul_backward_a(&d, rows, b, dout, da, fresh, 1);
        if (db) matmul_backward_b(&d, rows, a, dout, db, 1);
        return BRG_OK;
    }
    int64_t b_step = d.b_shared ? 0 : d.k * d.n;
    matmul_job job = {.d = &d, .a = a, .b = b, .dout = dout, .da = da, .db = db, .b_step = b_step, .fresh = fresh};
    if (da || (db && !d.b_shared)) brg__cpu_parallel(d.count, matmul_backward_piece, &job);
    /* A shared b sums its gradient over p in ascending order, each product tiled over the threads. */
    if (db && d.b_shared)
        for (int64_t p = 0; p < d.count; p++)
            matmul_backward_b(&d, d.m, a + p * d.m * d.k, dout + p * d.m * d.n, db, 1);
    return BRG_OK;
}
