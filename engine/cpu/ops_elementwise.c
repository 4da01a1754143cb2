/* Element-wise ops: add (with broadcast of a trailing-shape b), GELU (tanh approximation), ReLU.
 * Kernels first (plain loops over restrict pointers), then the entry points that bind dimensions and
 * split the elements into pieces of BRG__CPU_PIECE_ELEMENTS (every element computed alike in any piece),
 * and the broadcast gradient into pieces of columns (each column summed over the rows in order). */
#include <string.h>

#include "cpu/kernels.h"

/* ---- kernels ---- */

/* out[e] = a[e] + b[e mod S] for e in [e0, e1), a run of the flattened (R, S) operands. */
static void add_forward(float *restrict out, const float *restrict a, const float *restrict b, int64_t inner,
                        int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1;) {
        int64_t j = e % inner, len = inner - j < e1 - e ? inner - j : e1 - e; // up to the row's end
        for (int64_t i = 0; i < len; i++) out[e + i] = a[e + i] + b[j + i];
        e += len;
    }
}

/* acc (S) += sum over rows of g (R, S) (row stride `stride`), rows in ascending order. */
static void add_rows(float *restrict acc, const float *restrict g, int64_t rows, int64_t inner, int64_t stride) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < inner; i++) acc[i] += g[r * stride + i];
}

/* 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + e^(-2u)): one exp and no tanh, the same function as
 * the tanh form, not a further approximation. u = sqrt(2/pi) (x + 0.044715 x^3). */
#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_CUBIC 0.044715f

static BRG__CPU_VECTOR_CLONES void gelu_forward(float *restrict out, const float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float u = GELU_SCALE * (v + GELU_CUBIC * v * v * v);
        out[i] = v / (1.0f + brg__cpu_exp(-2.0f * u));
    }
}

static BRG__CPU_VECTOR_CLONES void gelu_backward(float *restrict dx, const float *restrict x,
                                                 const float *restrict dout, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float u = GELU_SCALE * (v + GELU_CUBIC * v * v * v);
        float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * v * v);
        float s = 1.0f / (1.0f + brg__cpu_exp(-2.0f * u)); // 0.5 (1 + tanh u)
        /* d/dx [x s] = s + x 0.5 sech^2(u) u' = s + 2 x s (1 - s) u' */
        dx[i] += dout[i] * (s + 2.0f * v * s * (1.0f - s) * du);
    }
}

static void relu_forward(float *restrict out, const float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void relu_backward(float *restrict dx, const float *restrict x, const float *restrict dout, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dout[i] : 0.0f;
}

/* ---- entry points ---- */

typedef struct elementwise_job {
    float *out;            /* out, or the gradient accumulated into */
    const float *x, *y;    /* operands: a and b (add); x and dout (gradients) */
    int64_t n, inner;      /* elements; add: b's elements (the broadcast period) */
    int64_t per_piece;     /* columns per piece of the broadcast gradient */
    int fresh;             /* gradients: `out` holds nothing yet (din_fresh), zeroed piece by piece first */
} elementwise_job;

/* Runs fn over pieces of BRG__CPU_PIECE_ELEMENTS of the job's n elements. */
static void elementwise_run(elementwise_job *job, brg__cpu_piece_fn fn) {
    brg__cpu_parallel(brg__cpu_pieces(job->n, BRG__CPU_PIECE_ELEMENTS), fn, job);
}

/* Elements [e0, e1) of the job's piece. */
static const elementwise_job *piece_elements(void *ctx, int64_t piece, int64_t *e0, int64_t *e1) {
    const elementwise_job *job = ctx;
    brg__cpu_piece_range(piece, BRG__CPU_PIECE_ELEMENTS, job->n, e0, e1);
    return job;
}

/* A gradient written outright is 0 + the gradient, the same bits as added to a zeroed buffer; zeroing the
 * piece just before adding keeps it in cache rather than making a pass of its own. */
static void clear_if_fresh(const elementwise_job *job, int64_t e0, int64_t e1) {
    if (job->fresh) memset(job->out + e0, 0, (size_t)(e1 - e0) * sizeof *job->out);
}

static void add_forward_piece(void *ctx, int64_t piece, float *scratch) {
    int64_t e0, e1;
    const elementwise_job *job = piece_elements(ctx, piece, &e0, &e1);
    add_forward(job->out, job->x, job->y, job->inner, e0, e1);
}

static void add_same_piece(void *ctx, int64_t piece, float *scratch) {
    int64_t e0, e1;
    const elementwise_job *job = piece_elements(ctx, piece, &e0, &e1);
    clear_if_fresh(job, e0, e1);
    add_rows(job->out + e0, job->x + e0, 1, e1 - e0, 0);
}

static void gelu_forward_piece(void *ctx, int64_t piece, float *scratch) {
    int64_t e0, e1;
    const elementwise_job *job = piece_elements(ctx, piece, &e0, &e1);
    gelu_forward(job->out + e0, job->x + e0, e1 - e0);
}

static void gelu_backward_piece(void *ctx, int64_t piece, float *scratch) {
    int64_t e0, e1;
    const elementwise_job *job = piece_elements(ctx, piece, &e0, &e1);
    clear_if_fresh(job, e0, e1);
    gelu_backward(job->out + e0, job->x + e0, job->y + e0, e1 - e0);
}

static void relu_forward_piece(void *ctx, int64_t piece, float *scratch) {
    int64_t e0, e1;
    const elementwise_job *job = piece_elements(ctx, piece, &e0, &e1);
    relu_forward(job->out + e0, job->x + e0, e1 - e0);
}

static void relu_backward_piece(void *ctx, int64_t piece, float *scratch) {
    int64_t e0, e1;
    const elementwise_job *job = piece_elements(ctx, piece, &e0, &e1);
    clear_if_fresh(job, e0, e1);
    relu_backward(job->out + e0, job->x + e0, job->y + e0, e1 - e0);
}

/* Columns [j0, j1) of the broadcast operand's gradient, over every row in order. */
static void add_broadcast_piece(void *ctx, int64_t piece, float *scratch) {
    const elementwise_job *job = ctx;
    int64_t j0, j1;
    brg__cpu_piece_range(piece, job->per_piece, job->inner, &j0, &j1);
    clear_if_fresh(job, j0, j1);
    add_rows(job->out + j0, job->x + j0, job->n / job->inner, j1 - j0, job->inner);
}

brg_status brg__cpu_add_forward(const brg__op_call *call) {
    const brg__op *op = call->op;
    elementwise_job job = {.out = call->out, .x = call->in[0], .y = call->in[1]};
    job.n = brg__tensor_numel(op->inputs[0], call->batch);     // a: (R, S)
    job.inner = brg__tensor_numel(op->inputs[1], call->batch); // b: (S), a's trailing elements
    if (job.inner > 0) elementwise_run(&job, add_forward_piece);
    return BRG_OK;
}

brg_status brg__cpu_add_backward(const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t n = brg__tensor_numel(op->inputs[0], call->batch);
    int64_t inner = brg__tensor_numel(op->inputs[1], call->batch);
    const float *dout = call->dout; // (R, S)
    float *da = call->din[0];       // (R, S)
    float *db = call->din[1];       // (S)
    if (da) {
        elementwise_job job = {.out = da, .x = dout, .n = n, .fresh = (call->din_fresh & 1u) != 0};
        elementwise_run(&job, add_same_piece);
    }
    if (db && inner > 0) { // summed over the broadcast rows
        elementwise_job job = {.out = db, .x = dout, .n = n, .inner = inner, .fresh = (call->din_fresh & 2u) != 0};
        job.per_piece = brg__cpu_columns_per_piece(n / inner);
        brg__cpu_parallel(brg__cpu_pieces(inner, job.per_piece), add_broadcast_piece, &job);
    }
    return BRG_OK;
}

brg_status brg__cpu_gelu_forward(const brg__op_call *call) {
    elementwise_job job = {.out = call->out, .x = call->in[0]};
    job.n = brg__tensor_numel(call->op->inputs[0], call->batch); // (N)
    elementwise_run(&job, gelu_forward_piece);
    return BRG_OK;
}

brg_status brg__cpu_gelu_backward(const brg__op_call *call) {
    if (!call->din[0]) return BRG_OK;
    elementwise_job job = {.out = call->din[0], .x = call->in[0], .y = call->dout, .fresh = call->din_fresh & 1u};
    job.n = brg__tensor_numel(call->op->inputs[0], call->batch); // (N)
    elementwise_run(&job, gelu_backward_piece);
    return BRG_OK;
}

brg_status brg__cpu_relu_forward(const brg__op_call *call) {
    elementwise_job job = {.out = call->out, .x = call->in[0]};
    job.n = brg__tensor_numel(call->op->inputs[0], call->batch); // (N)
    elementwise_run(&job, relu_forward_piece);
    return BRG_OK;
}

brg_status brg__cpu_relu_backward(const brg__op_call *call) {
    if (!call->din[0]) return BRG_OK;
    elementwise_job job = {.out = call->din[0], .x = call->in[0], .y = call->dout, .fresh = call->din_fresh & 1u};
    job.n = brg__tensor_numel(call->op->inputs[0], call->batch); // (N)
    elementwise_run(&job, relu_backward_piece);
    return BRG_OK;
}
