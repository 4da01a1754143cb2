/* Token embedding: out[n,:] = weight[tokens[n],:]. */
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

/* row (C) += grad (C) */
static void add_row(float *restrict row, const float *restrict grad, int64_t dim) {
    for (int64_t c = 0; c < dim; c++) row[c] += grad[c];
}

brg_status brg__cpu_embedding_forward(const brg__op_call *call) {
    const brg__op *op = call->op;
    int64_t n = brg__tensor_numel(op->inputs[0], call->batch); // tokens (S)
    int64_t vocab = op->inputs[1]->shape[0], dim = op->inputs[1]->shape[1];
    const int32_t *tokens = call->in[0]; // (S)
    const float *weight = call->in[1];   // (V, C)
    float *out = call->out;              // (S, C)
    BRG__CHECK(check_tokens(call, tokens, n, vocab));
    for (int64_t i = 0; i < n; i++)
        memcpy(out + i * dim, weight + (int64_t)tokens[i] * dim, (size_t)dim * sizeof *out);
    return BRG_OK;
}

brg_status brg__cpu_embedding_backward(const brg__op_call *call) {
    const brg__op *op = call->op;
    float *dweight = call->din[1]; // (V, C)
    if (!dweight) return BRG_OK;   // token ids have no gradient
    int64_t n = brg__tensor_numel(op->inputs[0], call->batch);
    int64_t vocab = op->inputs[1]->shape[0], dim = op->inputs[1]->shape[1];
    const int32_t *tokens = call->in[0]; // (S)
    const float *dout = call->dout;      // (S, C)
    BRG__CHECK(check_tokens(call, tokens, n, vocab));
    /* Positions in ascending order: a token seen twice sums its rows in a fixed order. */
    for (int64_t i = 0; i < n; i++) add_row(dweight + (int64_t)tokens[i] * dim, dout + i * dim, dim);
    return BRG_OK;
}
