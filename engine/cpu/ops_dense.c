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
static void column_sums(float *restrict acc, const float *restrict g, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) acc[j] += g[i * cols + j];
}

brg_status brg__cpu_linear_forward(const brg__op_call *call) {
    linear_dims d;
    BRG__CHECK(linear_dims_get(call, &d));
    int64_t n = d.rows, k = d.in_features, m = d.out_features;
    const float *x = call->in[0];    // (N, K)
    const float *w = call->in[1];    // (M, K)
    const float *bias = call->in[2]; // (M)
    float *out = call->out;          // (N, M)
    /* OpenBLAS clears C in a pass of its own when beta = 0; writing the bias there instead and letting
     * the GEMM accumulate onto it (beta = 1) saves the separate pass a bias add would take. */
    for (int64_t i = 0; i < n; i++) memcpy(out + i * m, bias, (size_t)m * sizeof *out);
    brg__cpu_gemm(0, 1, n, m, k, 1.0f, x, k, w, k, 1.0f, out, m);
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
    if (dx) brg__cpu_gemm(0, 0, n, k, m, 1.0f, dout, m, w, k, 1.0f, dx, k);
    if (dw) brg__cpu_gemm(1, 0, m, k, n, 1.0f, dout, m, x, k, 1.0f, dw, k);
    if (dbias) column_sums(dbias, dout, n, m);
    return BRG_OK;
}

/* ---- matmul ---- */

typedef struct matmul_dims {
    int64_t count;    /* P: leading indices of a (the batch of matrices) */
    int64_t m, k, n;  /* op(a) (M, K), op(b) (K, N), out (M, N) */
    int trans_a, trans_b;
    int b_shared;     /* b is 2-D: one matrix for every leading index of a */
    int64_t lda, ldb; /* row strides of a and b as stored */
} matmul_dims;

static brg_status matmul_dims_get(const brg__op_call *call, matmul_dims *d) {
    const brg__op *op = call->op;
    const brg_tensor *a = op->inputs[0], *b = op->inputs[1];
    d->trans_a = (op->flags & BRG_MATMUL_TRANSPOSE_A) != 0;
    d->trans_b = (op->flags & BRG_MATMUL_TRANSPOSE_B) != 0;
    int64_t a_rows = brg__cpu_dim(a, a->ndim - 2, call->batch), a_cols = brg__cpu_dim(a, a->ndim - 1, call->batch);
    int64_t b_rows = brg__cpu_dim(b, b->ndim - 2, call->batch), b_cols = brg__cpu_dim(b, b->ndim - 1, call->batch);
    d->m = d->trans_a ? a_cols : a_rows;
    d->k = d->trans_a ? a_rows : a_cols;
    d->n = d->trans_b ? b_rows : b_cols;
    d->lda = a_cols;
    d->ldb = b_cols;
    d->b_shared = b->ndim == 2;
    d->count = a_rows * a_cols > 0 ? brg__tensor_numel(a, call->batch) / (a_rows * a_cols) : 0;
    return brg__cpu_check_blas_dims(call, 3, (const int64_t[]){d->m, d->k, d->n});
}

/* Whether the GEMMs over a's rows can run as one (b shared, a not transposed: a is then one
 * (P M, K) matrix), the P M rows fitting the BLAS integer. */
static int matmul_stacked(const matmul_dims *d) {
    return d->b_shared && !d->trans_a && d->count * d->m <= INT_MAX;
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
    int64_t b_step = d.b_shared ? 0 : d.k * d.n;
    for (int64_t p = 0; p < d.count; p++)
        brg__cpu_gemm(d.trans_a, d.trans_b, d.m, d.n, d.k, 1.0f, a + p * d.m * d.k, d.lda, b + p * b_step, d.ldb,
                      0.0f, out + p * d.m * d.n, d.n);
    return BRG_OK;
}

/* da += dout op(b)^T for one matrix (or for the stacked rows). */
static void matmul_backward_a(const matmul_dims *d, int64_t m, const float *b, const float *dout, float *da) {
    if (!d->trans_a) // da (M, K) += dout (M, N) op(b)^T (N, K)
        brg__cpu_gemm(0, !d->trans_b, m, d->k, d->n, 1.0f, dout, d->n, b, d->ldb, 1.0f, da, d->lda);
    else // da (K, M) += op(b) (K, N) dout^T (N, M)
        brg__cpu_gemm(d->trans_b, 1, d->k, m, d->n, 1.0f, b, d->ldb, dout, d->n, 1.0f, da, d->lda);
}

/* db += op(a)^T dout (or its transpose) for one matrix (or for the stacked rows). */
static void matmul_backward_b(const matmul_dims *d, int64_t m, const float *a, const float *dout, float *db) {
    if (!d->trans_b) // db (K, N) += op(a)^T (K, M) dout (M, N)
        brg__cpu_gemm(!d->trans_a, 0, d->k, d->n, m, 1.0f, a, d->lda, dout, d->n, 1.0f, db, d->ldb);
    else // db (N, K) += dout^T (N, M) op(a) (M, K)
        brg__cpu_gemm(1, d->trans_a, d->n, d->k, m, 1.0f, dout, d->n, a, d->lda, 1.0f, db, d->ldb);
}

brg_status brg__cpu_matmul_backward(const brg__op_call *call) {
    matmul_dims d;
    BRG__CHECK(matmul_dims_get(call, &d));
    const float *a = call->in[0];   // (P, M, K) or (P, K, M)
    const float *b = call->in[1];   // (K, N) or (N, K), or (P, ..) of those
    const float *dout = call->dout; // (P, M, N)
    float *da = call->din[0];       // a's shape
    float *db = call->din[1];       // b's shape
    if (matmul_stacked(&d)) {
        /* One GEMM each; for db the sum over the P matrices happens inside it. */
        if (da) matmul_backward_a(&d, d.count * d.m, b, dout, da);
        if (db) matmul_backward_b(&d, d.count * d.m, a, dout, db);
        return BRG_OK;
    }
    int64_t b_step = d.b_shared ? 0 : d.k * d.n;
    /* A shared b sums its gradient over p in ascending order. */
    for (int64_t p = 0; p < d.count; p++) {
        const float *dout_p = dout + p * d.m * d.n;
        if (da) matmul_backward_a(&d, d.m, b + p * b_step, dout_p, da + p * d.m * d.k);
        if (db) matmul_backward_b(&d, d.m, a + p * d.m * d.k, dout_p, db + p * b_step);
    }
    return BRG_OK;
}
