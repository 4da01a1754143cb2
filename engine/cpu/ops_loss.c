/* Softmax cross-entropy per position: loss[n] = logsumexp(logits[n]) - logits[n, target[n]].
 * Backward recomputes each row's softmax from the saved logits (no aux). Rows are independent: pieces of
 * rows run on the threads. */
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

typedef struct cross_entropy_job {
    int64_t n, vocab, per_piece; /* rows, their length, rows per piece */
    const float *logits, *dlosses;
    const int32_t *targets;
    float *losses, *dlogits;
} cross_entropy_job;

static void cross_entropy_forward_piece(void *ctx, int64_t piece, float *scratch) {
    const cross_entropy_job *job = ctx;
    int64_t i0, i1;
    brg__cpu_piece_range(piece, job->per_piece, job->n, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) {
        const float *row = job->logits + i * job->vocab; // (V)
        float m, sum;
        row_max_sum_exp(row, job->vocab, &m, &sum);
        job->losses[i] = (m + logf(sum)) - row[job->targets[i]];
    }
}

static void cross_entropy_backward_piece(void *ctx, int64_t piece, float *scratch) {
    const cross_entropy_job *job = ctx;
    int64_t i0, i1;
    brg__cpu_piece_range(piece, job->per_piece, job->n, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) {
        const float *row = job->logits + i * job->vocab; // (V)
        float *drow = job->dlogits + i * job->vocab;     // (V)
        float m, sum;
        row_max_sum_exp(row, job->vocab, &m, &sum);
        float inv = 1.0f / sum, g = job->dlosses[i];
        int64_t t = job->targets[i];
        float before = drow[t];
        row_softmax_accumulate(drow, row, job->vocab, m, inv, g);
        /* The target's entry is g (p_t - 1), added once to what it held before. */
        drow[t] = before + g * (brg__cpu_exp(row[t] - m) * inv - 1.0f);
    }
}

brg_status brg__cpu_cross_entropy_forward(const brg__op_call *call) {
    const brg__op *op = call->op;
    cross_entropy_job job = {0};
    job.vocab = brg__cpu_last_dim(op->inputs[0], call->batch);
    job.n = brg__cpu_rows(op->inputs[0], call->batch);
    job.logits = call->in[0];  // (N, V)
    job.targets = call->in[1]; // (N)
    job.losses = call->out;    // (N)
    BRG__CHECK(check_targets(call, job.targets, job.n, job.vocab));
    job.per_piece = brg__cpu_rows_per_piece(job.vocab);
    brg__cpu_parallel(brg__cpu_pieces(job.n, job.per_piece), cross_entropy_forward_piece, &job);
    return BRG_OK;
}

brg_status brg__cpu_cross_entropy_backward(const brg__op_call *call) {
    if (!call->din[0]) return BRG_OK; // targets have no gradient
    const brg__op *op = call->op;
    cross_entropy_job job = {0};
    job.vocab = brg__cpu_last_dim(op->inputs[0], call->batch);
    job.n = brg__cpu_rows(op->inputs[0], call->batch);
    job.logits = call->in[0];  // (N, V)
    job.targets = call->in[1]; // (N)
    job.dlosses = call->dout;  // (N)
    job.dlogits = call->din[0]; // (N, V)
    BRG__CHECK(check_targets(call, job.targets, job.n, job.vocab));
    job.per_piece = brg__cpu_rows_per_piece(job.vocab);
    brg__cpu_parallel(brg__cpu_pieces(job.n, job.per_piece), cross_entropy_backward_piece, &job);
    return BRG_OK;
}
