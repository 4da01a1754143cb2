/* Token embedding: out[n,:] = weight[tokens[n],:]. Threads: forward by pieces of positions; backward by
 * pieces of columns, each piece adding the rows of every position in ascending order (a token seen twice
 * sums in the same order whatever the split). */
#include "cpu/kernels.h"

/* The first token outside [0, vocab), reported with its position; BRG_OK when all are valid. */
static brg_status check_tokens(const brg__op_call *call, const int32_t *tokens, int64_t n, int64_t vocab) {
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return brg__message_set(call->msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                    "op '%s' (embedding): token %" PRId32 " at position %lld is outside [0, %lld)",
                                    call->op->name, tokens[i], (long long)i, (long long)vocab);
    return BRG_OK;
}

/* Tensor parallelism splits the vocabulary (op->tp_vocab): this rank holds rows [first, first + rows) of
 * the whole table; a token outside them gives a row of zeros here (another rank's row, summed after). */
typedef struct embedding_job {
    int64_t n, dim, per_piece; /* positions, embedding width, positions or columns per piece */
    int64_t first, rows;       /* the table's rows this rank holds, from the whole table's `first` */
    const int32_t *tokens;
    const float *weight, *dout;
    float *out, *dweight;
} embedding_job;

static void embedding_forward_piece(void *ctx, int64_t piece, float *scratch) {
    const embedding_job *job = ctx;
    int64_t i0, i1, dim = job->dim;
    brg__cpu_piece_range(piece, job->per_piece, job->n, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) {
        int64_t row = (int64_t)job->tokens[i] - job->first;
        if (row >= 0 && row < job->rows)
            memcpy(job->out + i * dim, job->weight + row * dim, (size_t)dim * sizeof(float));
        else
            memset(job->out + i * dim, 0, (size_t)dim * sizeof(float));
    }
}

/* Columns [c0, c1) of dweight[tokens[i]] += dout[i] for every position i in ascending order. */
static void embedding_backward_piece(void *ctx, int64_t piece, float *scratch) {
    const embedding_job *job = ctx;
    int64_t c0, c1, dim = job->dim;
    brg__cpu_piece_range(piece, job->per_piece, dim, &c0, &c1);
    for (int64_t i = 0; i < job->n; i++) {
        int64_t r = (int64_t)job->tokens[i] - job->first;
        if (r < 0 || r >= job->rows) continue;
        float *restrict row = job->dweight + r * dim;
        const float *restrict grad = job->dout + i * dim;
        for (int64_t c = c0; c < c1; c++) row[c] += grad[c];
    }
}

/* The rows this rank holds, and the vocabulary tokens are checked against. */
static int64_t embedding_rows(const brg__op_call *call, embedding_job *job) {
    int64_t rows = call->op->inputs[1]->shape[0];
    job->rows = rows;
    job->first = call->op->tp_vocab ? (int64_t)call->tp_rank * rows : 0;
    return call->op->tp_vocab ? call->op->tp_vocab : rows;
}

brg_status brg__cpu_embedding_forward(const brg__op_call *call) {
    const brg__op *op = call->op;
    embedding_job job = {0};
    job.n = brg__tensor_numel(op->inputs[0], call->batch); // tokens (S)
    int64_t vocab = embedding_rows(call, &job);
    job.dim = op->inputs[1]->shape[1];
    job.tokens = call->in[0]; // (S)
    job.weight = call->in[1]; // (V, C): this rank's rows of it
    job.out = call->out;      // (S, C)
    BRG__CHECK(check_tokens(call, job.tokens, job.n, vocab));
    job.per_piece = brg__cpu_rows_per_piece(job.dim);
    brg__cpu_parallel(brg__cpu_pieces(job.n, job.per_piece), embedding_forward_piece, &job);
    return BRG_OK;
}

brg_status brg__cpu_embedding_backward(const brg__op_call *call) {
    const brg__op *op = call->op;
    embedding_job job = {0};
    job.dweight = call->din[1]; // (V, C)
    if (!job.dweight) return BRG_OK; // token ids have no gradient
    job.n = brg__tensor_numel(op->inputs[0], call->batch);
    int64_t vocab = embedding_rows(call, &job);
    job.dim = op->inputs[1]->shape[1];
    job.tokens = call->in[0]; // (S)
    job.dout = call->dout;    // (S, C)
    BRG__CHECK(check_tokens(call, job.tokens, job.n, vocab));
    job.per_piece = brg__cpu_columns_per_piece(job.n);
    brg__cpu_parallel(brg__cpu_pieces(job.dim, job.per_piece), embedding_backward_piece, &job);
    return BRG_OK;
}
