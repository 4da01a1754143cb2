/* Softmax cross-entropy per position: loss[n] = logsumexp(logits[n]) - logits[n, target[n]].
 * Forward keeps each row's log-sum-exp (aux); backward computes the softmax from it in one pass over the
 * row, adding to dlogits or, when the runtime says dlogits holds nothing yet (din_fresh), writing them.
 * Rows are independent: pieces of rows run on the threads. */
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

/* d += g softmax(x), the softmax given by the row's log-sum-exp. */
static BRG__CPU_VECTOR_CLONES void row_softmax_accumulate(float *restrict d, const float *restrict x, int64_t n,
                                                          float lse, float g) {
    for (int64_t j = 0; j < n; j++) d[j] += g * brg__cpu_exp(x[j] - lse);
}

/* d = g softmax(x), the softmax given by the row's log-sum-exp. */
static BRG__CPU_VECTOR_CLONES void row_softmax_write(float *restrict d, const float *restrict x, int64_t n, float lse,
                                                     float g) {
    for (int64_t j = 0; j < n; j++) d[j] = g * brg__cpu_exp(x[j] - lse);
}

/* drow = (drow if !fresh) + g (softmax(row) - onehot(t)) over a row of n logits; t outside [0, n) adds no
 * one-hot term (the target lies in another rank's part of a split vocabulary). */
static void row_gradient(float *drow, const float *row, int64_t n, int64_t t, float lse, float g, int fresh) {
    float before = !fresh && t >= 0 && t < n ? drow[t] : 0.0f;
    if (fresh) row_softmax_write(drow, row, n, lse, g);
    else row_softmax_accumulate(drow, row, n, lse, g);
    /* The target's entry is g (p_t - 1), added once to what it held before. */
    if (t >= 0 && t < n) drow[t] = before + g * (brg__cpu_exp(row[t] - lse) - 1.0f);
}

/* The sum of e^(x - m) over a row, in eight lanes. */
static BRG__CPU_VECTOR_CLONES float row_sum_exp(const float *restrict x, int64_t n, float m) {
    float acc[BRG__CPU_LANES] = {0};
    int64_t j = 0;
    for (; j + BRG__CPU_LANES <= n; j += BRG__CPU_LANES)
        for (int l = 0; l < BRG__CPU_LANES; l++) acc[l] += brg__cpu_exp(x[j + l] - m);
    for (; j < n; j++) acc[j % BRG__CPU_LANES] += brg__cpu_exp(x[j] - m);
    return brg__cpu_lanes_total(acc);
}

static brg_status check_targets(const brg__op_call *call, const int32_t *targets, int64_t n, int64_t vocab);

/* ---- over a vocabulary split across a tensor-parallel group (op->tp_vocab) ----
 * This rank holds logits [first, first + valid) of every row (its last columns may be padding past the
 * whole vocabulary, left out). Each row's maximum comes from every rank's (gathered), its sum of
 * exponentials and target logit are summed over the group (Megatron-LM's vocabulary-parallel loss); the
 * log-sum-exp is kept for backward. */
typedef struct split_rows {
    int64_t n, local, first, valid;
} split_rows;

static split_rows split_of(const brg__op_call *call) {
    split_rows r;
    r.local = brg__cpu_last_dim(call->op->inputs[0], call->batch);
    r.n = brg__cpu_rows(call->op->inputs[0], call->batch);
    r.first = (int64_t)call->tp_rank * r.local;
    int64_t left = call->op->tp_vocab - r.first;
    r.valid = left < 0 ? 0 : left < r.local ? left : r.local;
    return r;
}

static brg_status cross_entropy_split_forward(const brg__op_call *call) {
    const brg__tp_comm *comm = call->comm;
    if (!comm)
        return brg__message_set(call->msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INTERNAL,
                                "op '%s' (cross_entropy): a split vocabulary without its tensor-parallel group", call->op->name);
    split_rows r = split_of(call);
    const float *logits = call->in[0];     // (N, V / t)
    const int32_t *targets = call->in[1];  // (N)
    float *losses = call->out, *lse = call->aux; // (N), (N)
    float *maxima = call->scratch;               // (t, N)
    float *sums = maxima + (int64_t)comm->size * r.n; // (2, N): sums of exponentials, target logits
    BRG__CHECK(check_targets(call, targets, r.n, call->op->tp_vocab));
    for (int64_t i = 0; i < r.n; i++)
        maxima[(int64_t)comm->rank * r.n + i] = r.valid ? brg__cpu_max(logits + i * r.local, r.valid) : -INFINITY;
    BRG__CHECK(comm->allgather(comm->ctx, maxima, r.n, call->msg));
    for (int64_t i = 0; i < r.n; i++) {
        float m = maxima[i];
        for (int k = 1; k < comm->size; k++) m = fmaxf(m, maxima[(int64_t)k * r.n + i]);
        maxima[i] = m;
        const float *row = logits + i * r.local;
        int64_t t = (int64_t)targets[i] - r.first;
        sums[i] = r.valid ? row_sum_exp(row, r.valid, m) : 0.0f;
        sums[r.n + i] = t >= 0 && t < r.valid ? row[t] : 0.0f;
    }
    BRG__CHECK(comm->allreduce(comm->ctx, sums, 2 * r.n, call->msg));
    for (int64_t i = 0; i < r.n; i++) {
        lse[i] = maxima[i] + logf(sums[i]);
        losses[i] = lse[i] - sums[r.n + i];
    }
    return BRG_OK;
}

static brg_status cross_entropy_split_backward(const brg__op_call *call) {
    split_rows r = split_of(call);
    const float *logits = call->in[0], *lse = call->aux, *dlosses = call->dout;
    const int32_t *targets = call->in[1];
    float *dlogits = call->din[0];
    BRG__CHECK(check_targets(call, targets, r.n, call->op->tp_vocab));
    int fresh = (call->din_fresh & 1u) != 0;
    for (int64_t i = 0; i < r.n; i++) {
        float *drow = dlogits + i * r.local;
        row_gradient(drow, logits + i * r.local, r.valid, (int64_t)targets[i] - r.first, lse[i], dlosses[i], fresh);
        /* Padding columns past the whole vocabulary have no gradient. */
        if (fresh)
            for (int64_t j = r.valid; j < r.local; j++) drow[j] = 0.0f;
    }
    return BRG_OK;
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
    float *losses, *lse, *dlogits;
    int fresh; /* dlogits written, not added to */
} cross_entropy_job;

static void cross_entropy_forward_piece(void *ctx, int64_t piece, float *scratch) {
    const cross_entropy_job *job = ctx;
    int64_t i0, i1;
    brg__cpu_piece_range(piece, job->per_piece, job->n, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) {
        const float *row = job->logits + i * job->vocab; // (V)
        float m, sum;
        row_max_sum_exp(row, job->vocab, &m, &sum);
        job->lse[i] = m + logf(sum);
        job->losses[i] = job->lse[i] - row[job->targets[i]];
    }
}

static void cross_entropy_backward_piece(void *ctx, int64_t piece, float *scratch) {
    const cross_entropy_job *job = ctx;
    int64_t i0, i1;
    brg__cpu_piece_range(piece, job->per_piece, job->n, &i0, &i1);
    for (int64_t i = i0; i < i1; i++)
        row_gradient(job->dlogits + i * job->vocab, job->logits + i * job->vocab, job->vocab, job->targets[i],
                     job->lse[i], job->dlosses[i], job->fresh);
}

brg_status brg__cpu_cross_entropy_forward(const brg__op_call *call) {
    const brg__op *op = call->op;
    if (op->tp_vocab) return cross_entropy_split_forward(call);
    cross_entropy_job job = {0};
    job.vocab = brg__cpu_last_dim(op->inputs[0], call->batch);
    job.n = brg__cpu_rows(op->inputs[0], call->batch);
    job.logits = call->in[0];  // (N, V)
    job.targets = call->in[1]; // (N)
    job.losses = call->out;    // (N)
    job.lse = call->aux;       // (N)
    BRG__CHECK(check_targets(call, job.targets, job.n, job.vocab));
    job.per_piece = brg__cpu_rows_per_piece(job.vocab);
    brg__cpu_parallel(brg__cpu_pieces(job.n, job.per_piece), cross_entropy_forward_piece, &job);
    return BRG_OK;
}

brg_status brg__cpu_cross_entropy_backward(const brg__op_call *call) {
    if (!call->din[0]) return BRG_OK; // targets have no gradient
    const brg__op *op = call->op;
    if (op->tp_vocab) return cross_entropy_split_backward(call);
    cross_entropy_job job = {0};
    job.vocab = brg__cpu_last_dim(op->inputs[0], call->batch);
    job.n = brg__cpu_rows(op->inputs[0], call->batch);
    job.logits = call->in[0];  // (N, V)
    job.targets = call->in[1]; // (N)
    job.dlosses = call->dout;  // (N)
    job.lse = call->aux;        // (N)
    job.dlogits = call->din[0]; // (N, V)
    job.fresh = (call->din_fresh & 1u) != 0;
    BRG__CHECK(check_targets(call, job.targets, job.n, job.vocab));
    job.per_piece = brg__cpu_rows_per_piece(job.vocab);
    brg__cpu_parallel(brg__cpu_pieces(job.n, job.per_piece), cross_entropy_backward_piece, &job);
    return BRG_OK;
}
