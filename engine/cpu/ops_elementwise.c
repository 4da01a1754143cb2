/* Element-wise ops: add (with broadcast of a trailing-shape b), GELU (tanh approximation), ReLU.
 * Kernels first (plain loops over restrict pointers), then the entry points that bind dimensions. */
#include "cpu/kernels.h"

/* ---- kernels ---- */

/* out (R, S) = a (R, S) + b (S) broadcast over the rows; S = R S for same-shape operands. */
static void add_forward(float *restrict out, const float *restrict a, const float *restrict b, int64_t rows,
                        int64_t inner) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < inner; i++) out[r * inner + i] = a[r * inner + i] + b[i];
}

/* acc (S) += sum over rows of g (R, S), rows in ascending order. */
static void add_rows(float *restrict acc, const float *restrict g, int64_t rows, int64_t inner) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < inner; i++) acc[i] += g[r * inner + i];
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

brg_status brg__cpu_add_forward(const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t n = brg__tensor_numel(op->inputs[0], call->batch);     // a: (R, S)
    int64_t inner = brg__tensor_numel(op->inputs[1], call->batch); // b: (S), a's trailing elements
    if (inner > 0) add_forward(call->out, call->in[0], call->in[1], n / inner, inner);
    return BRG_OK;
}

brg_status brg__cpu_add_backward(const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t n = brg__tensor_numel(op->inputs[0], call->batch);
    int64_t inner = brg__tensor_numel(op->inputs[1], call->batch);
    const float *dout = call->dout; // (R, S)
    float *da = call->din[0];       // (R, S)
    float *db = call->din[1];       // (S)
    if (da) add_rows(da, dout, 1, n);
    if (db && inner > 0) add_rows(db, dout, n / inner, inner); // summed over the broadcast rows
    return BRG_OK;
}

brg_status brg__cpu_gelu_forward(const brg__op_call *call) {
    gelu_forward(call->out, call->in[0], brg__tensor_numel(call->op->inputs[0], call->batch)); // (N)
    return BRG_OK;
}

brg_status brg__cpu_gelu_backward(const brg__op_call *call) {
    if (call->din[0])
        gelu_backward(call->din[0], call->in[0], call->dout, brg__tensor_numel(call->op->inputs[0], call->batch));
    return BRG_OK;
}

brg_status brg__cpu_relu_forward(const brg__op_call *call) {
    relu_forward(call->out, call->in[0], brg__tensor_numel(call->op->inputs[0], call->batch)); // (N)
    return BRG_OK;
}

brg_status brg__cpu_relu_backward(const brg__op_call *call) {
    if (call->din[0])
        relu_backward(call->din[0], call->in[0], call->dout, brg__tensor_numel(call->op->inputs[0], call->batch));
    return BRG_OK;
}
