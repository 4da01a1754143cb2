// GEMM ops: linear (x W^T + b, the bias added by the GEMM's epilogue, and GELU with it when a GELU reads
// the output) and matmul (op(a) op(b), batched, with transpose flags). Shapes bind as the CPU kernels
// bind them (engine/cpu/ops_dense.c); the products go through brg__cuda_gemm.
#include "backend.cuh"

/* ---- linear ---- */

typedef struct linear_dims {
    int64_t rows;         /* N: every leading index of x */
    int64_t in_features;  /* K */
    int64_t out_features; /* M */
} linear_dims;

static void linear_dims_get(const brg__op_call *call, linear_dims *d) {
    const brg__op *op = call->op;
    d->in_features = brg__cuda_last_dim(op->inputs[0], call->batch);
    d->rows = brg__cuda_rows(op->inputs[0], call->batch);
    d->out_features = op->inputs[1]->shape[0];
}

/* The linear's GEMM: out (N, M) = x (N, K) W^T (M, K) [+ bias by the epilogue]. */
static brg__cuda_gemm_args linear_product(const brg__cuda_ctx *c, const linear_dims *d, const void *x, const void *w,
                                          void *out) {
    brg__cuda_gemm_args g;
    memset(&g, 0, sizeof g);
    g.trans_b = 1;
    g.m = d->rows;
    g.n = d->out_features;
    g.k = d->in_features;
    g.alpha = 1.0f;
    g.a = x;
    g.lda = d->in_features;
    g.b = w;
    g.ldb = d->in_features;
    g.ab_type = c->act;
    g.c = out;
    g.ldc = d->out_features;
    g.c_type = c->act;
    return g;
}

/* out (N, M) += bias (M) on every row, when the epilogue could not. */
template <typename T> __global__ void bias_rows_kernel(T *out, const T *bias, int64_t n, int64_t cols) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = brg__from_float<T>(brg__to_float(out[i]) + brg__to_float(bias[i % cols]));
}

static brg_status add_bias_rows(brg__cuda_ctx *c, void *out, const void *bias, int64_t rows, int64_t cols, char *msg) {
    int64_t n = rows * cols;
    if (n == 0) return BRG_OK;
    unsigned grid = brg__grid_for(n, 256);
    if (c->act == BRG__CUDA_BF16)
        bias_rows_kernel<brg__bf16><<<grid, 256, 0, c->stream>>>((brg__bf16 *)out, (const brg__bf16 *)bias, n, cols);
    else
        bias_rows_kernel<float><<<grid, 256, 0, c->stream>>>((float *)out, (const float *)bias, n, cols);
    BRG__LAUNCH_CHECK("bias_rows", msg);
    return BRG_OK;
}

static brg_status linear_operands(brg__cuda_ctx *c, const brg__op_call *call, const void **x, const void **w,
                                  const void **bias) {
    BRG__CHECK(brg__cuda_operand(c, call, 0, x));
    BRG__CHECK(brg__cuda_operand(c, call, 1, w));
    BRG__CHECK(brg__cuda_operand(c, call, 2, bias));
    return BRG_OK;
}

brg_status brg__cuda_linear_forward(brg__cuda_ctx *c, const brg__op_call *call) {
    linear_dims d;
    linear_dims_get(call, &d);
    const void *x, *w, *bias;
    BRG__CHECK(linear_operands(c, call, &x, &w, &bias)); // x (N, K), w (M, K), bias (M)
    brg__cuda_gemm_args g = linear_product(c, &d, x, w, call->out);
    g.epilogue = BRG__CUDA_EPILOGUE_BIAS;
    g.bias = bias;
    brg_status s = brg__cuda_gemm(c, &g, call->msg);
    if (s != BRG_ERR_UNSUPPORTED) return s;
    /* No cuBLASLt algorithm with the bias epilogue for this shape: the product, then the bias. */
    g.epilogue = BRG__CUDA_EPILOGUE_NONE;
    g.bias = NULL;
    BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
    return add_bias_rows(c, call->out, bias, d.rows, d.out_features, call->msg);
}

brg_status brg__cuda_linear_gelu_forward(brg__cuda_ctx *c, const brg__op_call *linear, const brg__op_call *gelu) {
    linear_dims d;
    linear_dims_get(linear, &d);
    const void *x, *w, *bias;
    BRG__CHECK(linear_operands(c, linear, &x, &w, &bias));
    brg__cuda_gemm_args g = linear_product(c, &d, x, w, gelu->out); // GELU(x W^T + b) (N, M)
    g.epilogue = BRG__CUDA_EPILOGUE_GELU_AUX_BIAS;
    g.bias = bias;
    g.aux = linear->out; // x W^T + b (N, M): the linear's own output
    g.ld_aux = d.out_features;
    return brg__cuda_gemm(c, &g, gelu->msg);
}

/* The input gradient's GEMM: dx (N, K) += dout (N, M) W (M, K), or = (beta 0: dx not read) when fresh. */
static brg__cuda_gemm_args linear_dx_product(const brg__cuda_ctx *c, const brg__op_call *call, const linear_dims *d,
                                             const void *w, void *dx, brg__cuda_dtype dx_type, int fresh) {
    brg__cuda_gemm_args g;
    memset(&g, 0, sizeof g);
    g.m = d->rows, g.n = d->in_features, g.k = d->out_features, g.alpha = 1.0f, g.beta = fresh ? 0.0f : 1.0f;
    g.a = call->dout, g.lda = d->out_features, g.b = w, g.ldb = d->in_features, g.ab_type = c->act;
    g.c = dx, g.ldc = d->in_features, g.c_type = dx_type;
    return g;
}

brg_status brg__cuda_linear_dgelu_backward(brg__cuda_ctx *c, const brg__op_call *linear, const brg__op_call *gelu) {
    linear_dims d;
    linear_dims_get(linear, &d);
    const void *x, *w, *bias;
    BRG__CHECK(linear_operands(c, linear, &x, &w, &bias));
    const void *pre;
    BRG__CHECK(brg__cuda_operand(c, gelu, 0, &pre)); // (N, K): GELU's input, the fused forward's aux
    // dpre (N, K) = GELU'(pre) (dout (N, M) W (M, K)); the GELU output's gradient is never formed
    brg__cuda_gemm_args g = linear_dx_product(c, linear, &d, w, gelu->din[0], brg__cuda_grad_type(c, gelu, 0), 1);
    g.epilogue = BRG__CUDA_EPILOGUE_DGELU;
    g.aux = (void *)pre;
    g.ld_aux = d.in_features;
    return brg__cuda_gemm(c, &g, gelu->msg);
}

brg_status brg__cuda_linear_backward(brg__cuda_ctx *c, const brg__op_call *call) {
    linear_dims d;
    linear_dims_get(call, &d);
    int64_t n = d.rows, k = d.in_features, m = d.out_features;
    const void *x, *w, *bias;
    BRG__CHECK(linear_operands(c, call, &x, &w, &bias));
    const void *dout = call->dout; // (N, M)
    brg__cuda_gemm_args g;
    if (call->din[0]) {
        g = linear_dx_product(c, call, &d, w, call->din[0], brg__cuda_grad_type(c, call, 0), call->din_fresh & 1u);
        BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
    }
    int bias_done = 0;
    if (call->din[1]) { // dW (M, K) += dout^T (M, N) x (N, K)
        memset(&g, 0, sizeof g);
        g.trans_a = 1, g.m = m, g.n = k, g.k = n, g.alpha = 1.0f, g.beta = 1.0f;
        g.a = dout, g.lda = m, g.b = x, g.ldb = k, g.ab_type = c->act;
        g.c = call->din[1], g.ldc = k, g.c_type = brg__cuda_grad_type(c, call, 1);
        float *sums = NULL; /* dout's column sums from the same GEMM's epilogue, added to dbias after */
        if (call->din[2] && brg__cuda_grad_type(c, call, 2) == BRG__CUDA_F32 && n > 0) {
            sums = (float *)brg__cuda_workspace(c, (size_t)m * sizeof(float), call->msg);
            if (!sums) return BRG_ERR_OUT_OF_MEMORY;
            g.epilogue = BRG__CUDA_EPILOGUE_ROW_SUMS_A, g.bias = sums;
        }
        brg_status s = brg__cuda_gemm(c, &g, call->msg);
        if (s == BRG_ERR_UNSUPPORTED && sums) { // no cuBLASLt algorithm with the epilogue: column sums below
            g.epilogue = BRG__CUDA_EPILOGUE_NONE, g.bias = NULL, sums = NULL;
            s = brg__cuda_gemm(c, &g, call->msg);
        }
        BRG__CHECK(s);
        if (sums) BRG__CHECK(brg__cuda_accumulate((float *)call->din[2], sums, m, c->stream, call->msg));
        bias_done = sums != NULL;
    }
    if (call->din[2] && !bias_done) // dbias (M) += column sums of dout (N, M)
        BRG__CHECK(
            brg__cuda_column_sums(c, call->din[2], brg__cuda_grad_type(c, call, 2), dout, c->act, n, m, call->msg));
    return BRG_OK;
}

/* ---- matmul ---- */

typedef brg__matmul_dims matmul_dims;

static void matmul_dims_get(const brg__op_call *call, matmul_dims *d) { brg__matmul_dims_get(call->op, call->batch, d); }

/* b shared and a not transposed: the P products are one GEMM over a's P M rows (the GPT output head). */
static int matmul_stacked(const matmul_dims *d) { return d->b_shared && !d->trans_a; }

brg_status brg__cuda_matmul_forward(brg__cuda_ctx *c, const brg__op_call *call) {
    matmul_dims d;
    matmul_dims_get(call, &d);
    const void *a, *b;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &a)); // (P, M, K) or (P, K, M)
    BRG__CHECK(brg__cuda_operand(c, call, 1, &b)); // (K, N) or (N, K), or (P, ..) of those
    brg__cuda_gemm_args g;
    memset(&g, 0, sizeof g);
    g.trans_a = d.trans_a, g.trans_b = d.trans_b, g.k = d.k, g.n = d.n, g.alpha = 1.0f;
    g.a = a, g.lda = d.lda, g.b = b, g.ldb = d.ldb, g.ab_type = c->act;
    g.c = call->out, g.ldc = d.n, g.c_type = c->act; // (P, M, N)
    if (matmul_stacked(&d)) {
        g.m = d.count * d.m;
    } else {
        g.m = d.m;
        g.batch = d.count;
        g.stride_a = d.m * d.k, g.stride_b = d.b_shared ? 0 : d.k * d.n, g.stride_c = d.m * d.n;
    }
    return brg__cuda_gemm(c, &g, call->msg);
}

/* da += dout op(b)^T over `rows` rows of a (or, transposed, its columns), batched as given. */
static brg__cuda_gemm_args matmul_grad_a(const matmul_dims *d, int64_t m, const void *b, const void *dout, void *da) {
    brg__cuda_gemm_args g;
    memset(&g, 0, sizeof g);
    g.alpha = 1.0f, g.beta = 1.0f;
    if (!d->trans_a) { // da (M, K) += dout (M, N) op(b)^T (N, K)
        g.trans_b = !d->trans_b, g.m = m, g.n = d->k, g.k = d->n;
        g.a = dout, g.lda = d->n, g.b = b, g.ldb = d->ldb;
    } else { // da (K, M) += op(b) (K, N) dout^T (N, M)
        g.trans_a = d->trans_b, g.trans_b = 1, g.m = d->k, g.n = m, g.k = d->n;
        g.a = b, g.lda = d->ldb, g.b = dout, g.ldb = d->n;
    }
    g.c = da, g.ldc = d->lda;
    return g;
}

/* db += op(a)^T dout (or its transpose). */
static brg__cuda_gemm_args matmul_grad_b(const matmul_dims *d, int64_t m, const void *a, const void *dout, void *db) {
    brg__cuda_gemm_args g;
    memset(&g, 0, sizeof g);
    g.alpha = 1.0f, g.beta = 1.0f;
    if (!d->trans_b) { // db (K, N) += op(a)^T (K, M) dout (M, N)
        g.trans_a = !d->trans_a, g.m = d->k, g.n = d->n, g.k = m;
        g.a = a, g.lda = d->lda, g.b = dout, g.ldb = d->n;
    } else { // db (N, K) += dout^T (N, M) op(a) (M, K)
        g.trans_a = 1, g.trans_b = d->trans_a, g.m = d->n, g.n = d->k, g.k = m;
        g.a = dout, g.lda = d->n, g.b = a, g.ldb = d->lda;
    }
    g.c = db, g.ldc = d->ldb;
    return g;
}

brg_status brg__cuda_matmul_backward(brg__cuda_ctx *c, const brg__op_call *call) {
    matmul_dims d;
    matmul_dims_get(call, &d);
    const void *a, *b;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &a));
    BRG__CHECK(brg__cuda_operand(c, call, 1, &b));
    const void *dout = call->dout; // (P, M, N)
    void *da = call->din[0], *db = call->din[1];
    float da_beta = call->din_fresh & 1u ? 0.0f : 1.0f; /* da written (not read) when fresh */
    int64_t a_step = d.m * d.k, b_step = d.b_shared ? 0 : d.k * d.n, out_step = d.m * d.n;
    if (matmul_stacked(&d)) {
        /* One GEMM each; for db the sum over the P matrices happens inside it. */
        brg__cuda_gemm_args g;
        if (da) {
            g = matmul_grad_a(&d, d.count * d.m, b, dout, da);
            g.ab_type = c->act, g.c_type = brg__cuda_grad_type(c, call, 0), g.beta = da_beta;
            BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
        }
        if (db) {
            g = matmul_grad_b(&d, d.count * d.m, a, dout, db);
            g.ab_type = c->act, g.c_type = brg__cuda_grad_type(c, call, 1);
            BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
        }
        return BRG_OK;
    }
    if (da) { // every da[p] is its own matrix: one batched GEMM
        brg__cuda_gemm_args g = matmul_grad_a(&d, d.m, b, dout, da);
        g.ab_type = c->act, g.c_type = brg__cuda_grad_type(c, call, 0), g.beta = da_beta;
        g.batch = d.count;
        if (!d.trans_a)
            g.stride_a = out_step, g.stride_b = b_step;
        else
            g.stride_a = b_step, g.stride_b = out_step;
        g.stride_c = a_step;
        BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
    }
    if (db && !d.b_shared) { // every db[p] is its own matrix: one batched GEMM
        brg__cuda_gemm_args g = matmul_grad_b(&d, d.m, a, dout, db);
        g.ab_type = c->act, g.c_type = brg__cuda_grad_type(c, call, 1);
        g.batch = d.count;
        if (!d.trans_b)
            g.stride_a = a_step, g.stride_b = out_step;
        else
            g.stride_a = out_step, g.stride_b = a_step;
        g.stride_c = b_step;
        BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
    } else if (db) { // a shared b sums its gradient over p in ascending order, as the CPU kernel
        size_t ab = brg__cuda_dtype_bytes(c->act);
        for (int64_t p = 0; p < d.count; p++) {
            brg__cuda_gemm_args g = matmul_grad_b(&d, d.m, (const char *)a + (size_t)(p * a_step) * ab,
                                                  (const char *)dout + (size_t)(p * out_step) * ab, db);
            g.ab_type = c->act, g.c_type = brg__cuda_grad_type(c, call, 1);
            BRG__CHECK(brg__cuda_gemm(c, &g, call->msg));
        }
    }
    return BRG_OK;
}
