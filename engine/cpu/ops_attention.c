/* Causal multi-head self-attention (GPT-2) on a fused qkv input.
 *
 * qkv (B, T, 3C) holds q, k and v side by side; head h reads columns [h hs, (h+1) hs) of each, so the
 * GEMMs take the head slices in place with leading dimension 3C (and C for the output), without
 * copies. aux keeps one float per query row, the log-sum-exp of its scaled scores, lse (B, NH, T): what
 * backward needs to recompute the probabilities, p = exp(s - lse), so that what a micro-batch keeps from
 * forward to backward is O(T) per head, not the O(T^2) probabilities (the fused GPU kernel keeps the same).
 *
 * Queries are taken in blocks of rows: rows [r0, r1) attend only to keys [0, r1), so each block's
 * GEMMs skip the keys no row of the block can see. That halves the work of a long sequence compared
 * with full T x T products, while the GEMMs stay large enough to run near peak. Backward takes dk and
 * dv by blocks of key columns instead, whose GEMMs reduce over all the later query rows at once.
 *
 * Threads: forward's work items are (query block, b, h), independent of one another, each with a
 * (block rows, T) workspace for its scores; backward's are (b, h), since dk and dv gather over every
 * query block of their head; each thread then has two (T, T) workspaces of its own, the recomputed
 * probabilities and d(scores). A piece is one item, or several consecutive ones when items are small
 * (short sequences), so that no piece is shorter than waking a thread; the grouping follows the shapes
 * alone. Every GEMM inside an item is one sgemm call, and an item computes the same wherever it runs. */
#include <math.h>

#include "cpu/kernels.h"

/* Query rows per block. */
#define ATTENTION_BLOCK_ROWS 128
/* Multiply-adds a piece holds at least (a few microseconds), items permitting. */
#define ATTENTION_PIECE_MACS 1048576

typedef struct attention_dims {
    int64_t batch, seq, channels, heads, head_size; /* B, T, C, NH, hs */
} attention_dims;

static brg_status attention_dims_get(const brg__op_call *call, attention_dims *d) {
    const brg__op *op = call->op;
    const brg_tensor *qkv = op->inputs[0]; // (B, T, 3C)
    d->batch = brg__cpu_dim(qkv, 0, call->batch);
    d->seq = brg__cpu_dim(qkv, 1, call->batch);
    d->channels = brg__cpu_dim(qkv, 2, call->batch) / 3;
    d->heads = op->heads;
    d->head_size = d->channels / d->heads;
    return brg__cpu_check_blas_dims(call, 2, (const int64_t[]){d->seq, 3 * d->channels});
}

/* Row t of the scores (its first t + 1 entries) becomes its softmax; the entries after it up to `width`,
 * zero. Returns the row's log-sum-exp. */
static BRG__CPU_VECTOR_CLONES float softmax_causal_row(float *restrict row, int64_t t, int64_t width) {
    int64_t n = t + 1;
    float m = brg__cpu_max(row, n);
    /* The exponentials are stored and summed in one pass, in eight lanes. */
    float acc[BRG__CPU_LANES] = {0};
    int64_t j = 0;
    for (; j + BRG__CPU_LANES <= n; j += BRG__CPU_LANES)
        for (int l = 0; l < BRG__CPU_LANES; l++) {
            float e = brg__cpu_exp(row[j + l] - m);
            row[j + l] = e;
            acc[l] += e;
        }
    for (; j < n; j++) {
        float e = brg__cpu_exp(row[j] - m);
        row[j] = e;
        acc[j % BRG__CPU_LANES] += e;
    }
    float total = brg__cpu_lanes_total(acc), inv = 1.0f / total;
    for (j = 0; j < n; j++) row[j] *= inv;
    for (j = n; j < width; j++) row[j] = 0.0f;
    return m + logf(total);
}

/* Row t of the scores becomes the probabilities exp(s - lse) (its first t + 1 entries), zero after them up
 * to `width`: forward's softmax again, from the log-sum-exp it kept. */
static BRG__CPU_VECTOR_CLONES void probabilities_row(float *restrict row, float lse, int64_t t, int64_t width) {
    int64_t j = 0;
    for (; j <= t; j++) row[j] = brg__cpu_exp(row[j] - lse);
    for (; j < width; j++) row[j] = 0.0f;
}

/* In place, datt row -> dscores row: p_j (datt_j - sum_i p_i datt_i) for j <= t, 0 up to `width`. */
static BRG__CPU_VECTOR_CLONES void softmax_causal_row_backward(float *restrict drow, const float *restrict prow,
                                                               int64_t t, int64_t width) {
    float dot = brg__cpu_dot(prow, drow, t + 1);
    for (int64_t j = 0; j <= t; j++) drow[j] = prow[j] * (drow[j] - dot);
    for (int64_t j = t + 1; j < width; j++) drow[j] = 0.0f;
}

typedef struct attention_job {
    attention_dims d;
    float scale;
    const float *qkv, *lse_in, *dout;
    float *out, *lse, *dqkv;
    float dqkv_beta; /* 0 where dqkv holds nothing yet (din_fresh): each block of it is written once */
    int64_t blocks;    /* query blocks per (b, h) */
    int64_t items;     /* forward: blocks x B x NH; backward: B x NH */
    int64_t per_piece; /* consecutive items per piece */
} attention_job;

/* Items per piece when each holds about `macs` multiply-adds. */
static int64_t items_per_piece(int64_t macs) {
    return macs >= ATTENTION_PIECE_MACS ? 1 : (ATTENTION_PIECE_MACS + macs - 1) / (macs > 0 ? macs : 1);
}

/* Forward of query rows [r0, r0 + ATTENTION_BLOCK_ROWS) of one (b, h); att: this thread's
 * (ATTENTION_BLOCK_ROWS, T) workspace. Items run the last (largest) blocks first, which evens out the
 * threads' shares. */
static void attention_forward_item(const attention_job *job, int64_t item, float *att) {
    const attention_dims *d = &job->d;
    int64_t T = d->seq, C = d->channels, hs = d->head_size, pairs = d->batch * d->heads;
    int64_t block = job->blocks - 1 - item / pairs, bh = item % pairs, b = bh / d->heads, h = bh % d->heads;
    const float *q = job->qkv + b * T * 3 * C + h * hs; // (T, hs), row stride 3C
    const float *k = q + C;                             // (T, hs), row stride 3C
    const float *v = q + 2 * C;                         // (T, hs), row stride 3C
    float *lse_bh = job->lse + bh * T;                  // (T)
    float *o = job->out + b * T * C + h * hs;           // (T, hs), row stride C
    int64_t r0 = block * ATTENTION_BLOCK_ROWS;
    int64_t r1 = r0 + ATTENTION_BLOCK_ROWS < T ? r0 + ATTENTION_BLOCK_ROWS : T, rows = r1 - r0;
    // att (rows, r1) = scale q[r0:r1] k[0:r1]^T, row stride r1
    brg__cpu_sgemm(0, 1, rows, r1, hs, job->scale, q + r0 * 3 * C, 3 * C, k, 3 * C, 0.0f, att, r1);
    for (int64_t t = r0; t < r1; t++) lse_bh[t] = softmax_causal_row(att + (t - r0) * r1, t, r1);
    // o[r0:r1] (rows, hs) = att v[0:r1]
    brg__cpu_sgemm(0, 0, rows, hs, r1, 1.0f, att, r1, v, 3 * C, 0.0f, o + r0 * C, C);
}

static void attention_forward_piece(void *ctx, int64_t piece, float *att) {
    const attention_job *job = ctx;
    int64_t begin, end;
    brg__cpu_piece_range(piece, job->per_piece, job->items, &begin, &end);
    for (int64_t item = begin; item < end; item++) attention_forward_item(job, item, att);
}

brg_status brg__cpu_attention_forward(const brg__op_call *call) {
    attention_job job = {0};
    BRG__CHECK(attention_dims_get(call, &job.d));
    job.scale = 1.0f / sqrtf((float)job.d.head_size);
    job.qkv = call->in[0]; // (B, T, 3C)
    job.out = call->out;   // (B, T, C)
    job.lse = call->aux;   // (B, NH, T)
    job.blocks = brg__cpu_pieces(job.d.seq, ATTENTION_BLOCK_ROWS);
    job.items = job.blocks * job.d.batch * job.d.heads;
    int64_t block_rows = job.d.seq < ATTENTION_BLOCK_ROWS ? job.d.seq : ATTENTION_BLOCK_ROWS;
    job.per_piece = items_per_piece(2 * block_rows * job.d.seq * job.d.head_size); // scores and output, at most
    brg__cpu_parallel_scratch(brg__cpu_pieces(job.items, job.per_piece), attention_forward_piece, &job,
                              call->scratch, block_rows * job.d.seq);
    return BRG_OK;
}

/* Backward of one (b, h); work: this thread's two (T, T) workspaces, the probabilities att recomputed
 * from the log-sum-exp, and dscores, d(att) then d(scores). */
static void attention_backward_item(const attention_job *job, int64_t bh, float *work) {
    const attention_dims *d = &job->d;
    int64_t T = d->seq, C = d->channels, hs = d->head_size, b = bh / d->heads, h = bh % d->heads;
    float scale = job->scale;
    const float *q = job->qkv + b * T * 3 * C + h * hs; // (T, hs), row stride 3C
    const float *k = q + C;
    const float *v = q + 2 * C;
    float *dq = job->dqkv + b * T * 3 * C + h * hs; // (T, hs), row stride 3C
    float *dk = dq + C;
    float *dv = dq + 2 * C;
    const float *lse_bh = job->lse_in + bh * T;            // (T)
    const float *dout_bh = job->dout + b * T * C + h * hs; // (T, hs), row stride C
    float *att_bh = work, *dscores = work + T * T;         // (T, T) each
    /* Blocks of query rows: the probabilities again, d(att), the softmax backward, and dq, which needs
     * whole rows. */
    for (int64_t r0 = 0; r0 < T; r0 += ATTENTION_BLOCK_ROWS) {
        int64_t r1 = r0 + ATTENTION_BLOCK_ROWS < T ? r0 + ATTENTION_BLOCK_ROWS : T, rows = r1 - r0;
        float *ds = dscores + r0 * T; // (rows, r1), row stride T
        // att (rows, r1) = exp(scale q[r0:r1] k[0:r1]^T - lse), zero above the diagonal
        brg__cpu_sgemm(0, 1, rows, r1, hs, scale, q + r0 * 3 * C, 3 * C, k, 3 * C, 0.0f, att_bh + r0 * T, T);
        for (int64_t t = r0; t < r1; t++) probabilities_row(att_bh + t * T, lse_bh[t], t, r1);
        // datt (rows, r1) = dout[r0:r1] v[0:r1]^T
        brg__cpu_sgemm(0, 1, rows, r1, hs, 1.0f, dout_bh + r0 * C, C, v, 3 * C, 0.0f, ds, T);
        for (int64_t t = r0; t < r1; t++) softmax_causal_row_backward(ds + (t - r0) * T, att_bh + t * T, t, r1);
        // dq[r0:r1] (rows, hs) += scale dscores k[0:r1]
        brg__cpu_sgemm(0, 0, rows, hs, r1, scale, ds, T, k, 3 * C, job->dqkv_beta, dq + r0 * 3 * C, 3 * C);
    }
    /* Blocks of key columns: key j gathers from the query rows t >= j, so these GEMMs reduce over long
     * spans of rows (efficient), and each dk, dv row gets exactly one product. The entries above the
     * diagonal inside the diagonal block are zero in att and in dscores. */
    for (int64_t c0 = 0; c0 < T; c0 += ATTENTION_BLOCK_ROWS) {
        int64_t c1 = c0 + ATTENTION_BLOCK_ROWS < T ? c0 + ATTENTION_BLOCK_ROWS : T, cols = c1 - c0;
        // dv[c0:c1] (cols, hs) += att[c0:T, c0:c1]^T dout[c0:T]
        brg__cpu_sgemm(1, 0, cols, hs, T - c0, 1.0f, att_bh + c0 * T + c0, T, dout_bh + c0 * C, C, job->dqkv_beta,
                       dv + c0 * 3 * C, 3 * C);
        // dk[c0:c1] (cols, hs) += scale dscores[c0:T, c0:c1]^T q[c0:T]
        brg__cpu_sgemm(1, 0, cols, hs, T - c0, scale, dscores + c0 * T + c0, T, q + c0 * 3 * C, 3 * C,
                       job->dqkv_beta, dk + c0 * 3 * C, 3 * C);
    }
}

static void attention_backward_piece(void *ctx, int64_t piece, float *work) {
    const attention_job *job = ctx;
    int64_t begin, end;
    brg__cpu_piece_range(piece, job->per_piece, job->items, &begin, &end);
    for (int64_t bh = begin; bh < end; bh++) attention_backward_item(job, bh, work);
}

brg_status brg__cpu_attention_backward(const brg__op_call *call) {
    if (!call->din[0]) return BRG_OK;
    attention_job job = {0};
    BRG__CHECK(attention_dims_get(call, &job.d));
    job.scale = 1.0f / sqrtf((float)job.d.head_size);
    job.qkv = call->in[0];   // (B, T, 3C)
    job.lse_in = call->aux;  // (B, NH, T)
    job.dout = call->dout;   // (B, T, C)
    job.dqkv = call->din[0]; // (B, T, 3C)
    job.dqkv_beta = call->din_fresh & 1u ? 0.0f : 1.0f;
    job.items = job.d.batch * job.d.heads;
    job.per_piece = items_per_piece(5 * job.d.seq * job.d.seq * job.d.head_size / 2); // five causal GEMMs
    brg__cpu_parallel_scratch(brg__cpu_pieces(job.items, job.per_piece), attention_backward_piece, &job,
                              call->scratch, 2 * job.d.seq * job.d.seq);
    return BRG_OK;
}
