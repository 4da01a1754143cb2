/* Softmax cross-entropy per position: loss[n] = logsumexp(logits[n]) - logits[n, target[n]].
 * Backward recomputes each row's softmax from the saved logits (no aux). */
#include <math.h>

#include "cpu/kernels.h"

/* ---- kernels ---- */

/* The row's maximum m and the sum of e^(x - m), in eight lanes across the whole row. */
static BRG__CPU_VECTOR_CLONES void row_max_sum_exp(const float *restrict x, int64_t n, float *max, float *sum) {
    float m = brg__cpu_max(x, n);
    float acc[BRG__CPU_LANES] = {0};
    int64_t j = 0;
    for (; j + BRG__CPU_LANES <= n; j += BRG__CPU_LANES)
        for (int l = 0; l < BRG__CPU_LANES; l++) acc[l] += brg__cpu_exp(x[j + l] - m);
    for (; j < n; j++) acc[j % BRG__CPU_LANES] += brg__cpu_exp(x[j] - m);
    *max = m;
    *sum = brg__cpu_lanes_total(acc);
}

/* d += g softmax(x), the softmax given by the row's maximum m and 1 / sum. */
static BRG__CPU_VECTOR_CLONES void row_softmax_accumulate(float *restrict d, const float *restrict x, int64_t n,
                                                          float m, float inv_sum, float g) {
    for (int64_t j = 0; j < n; j++) d[j] += g * (brg__cpu_exp(x[j] - m) * inv_sum);
}

/* ---- entry points ---- */

static brg_status check_targets(const brg__op_call *call, const int32_t *targets, int64_t n, int64_t vocab) {
    for (int64_t i = 0; i < n; i++)
        if (targets[i] < 0 || targets[i] >= vocab)
            return brg__message_set(call->msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                    "op '%s' (cross_entropy): target %" PRId32 " at position %lld is outside [0, %lld)",
                                    call->op->name, targets[i], (long long)i, (long long)vocab);
    return BRG_OK;
}

brg_status brg__cpu_cross_entropy_forward(const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t vocab = brg__cpu_last_dim(op->inputs[0], call->batch);
    int64_t n = brg__cpu_rows(op->inputs[0], call->batch);
    const float *logits = call->in[0];    // (N, V)
    const int32_t *targets = call->in[1]; // (N)
    float *losses = call->out;            // (N)
    BRG__CHECK(check_targets(call, targets, n, vocab));
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits + i * vocab; // (V)
        float m, sum;
        row_max_sum_exp(row, vocab, &m, &sum);
        losses[i] = (m + logf(sum)) - row[targets[i]];
    }
    return BRG_OK;
}

brg_status brg__cpu_cross_entropy_backward(const brg__op_call *call) {
    float *dlogits = call->din[0]; // (N, V)
    if (!dlogits) return BRG_OK;   // targets have no gradient
    const brg__op *op = call->op;
    int64_t vocab = brg__cpu_last_dim(op->inputs[0], call->batch);
    int64_t n = brg__cpu_rows(op->inputs[0], call->batch);
    const float *logits = call->in[0];    // (N, V)
    const int32_t *targets = call->in[1]; // (N)
    const float *dlosses = call->dout;    // (N)
    BRG__CHECK(check_targets(call, targets, n, vocab));
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits + i * vocab; // (V)
        float *drow = dlogits + i * vocab;     // (V)
        float m, sum;
        row_max_sum_exp(row, vocab, &m, &sum);
        float inv = 1.0f / sum, g = dlosses[i];
        int64_t t = targets[i];
        float before = drow[t];
        row_softmax_accumulate(drow, row, vocab, m, inv, g);
        /* The target's entry is g (p_t - 1), added once to what it held before. */
        drow[t] = before + g * (brg__cpu_exp(row[t] - m) * inv - 1.0f);
    }
    return BRG_OK;
}
