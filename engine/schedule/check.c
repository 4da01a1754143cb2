/* Schedule checker: runs the streams with rendezvous transfers and checks every dependency. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "schedule/schedule_internal.h"

typedef struct checker {
    const brg_schedule_view *view;
    brg__placement place;
    int stages, m;
    brg_schedule_check_result *result;
    int64_t *pc;                                     /* [p] next instruction of each rank */
    int64_t *weights_done;                           /* [p] (stage, micro-batch) pairs whose weight gradient is done */
    unsigned char *step_done;                        /* [p] */
    unsigned char *allreduce_done;                   /* [p] */
    int *next_forward, *next_backward, *next_weight; /* [S] next micro-batch expected per pass kind */
    /* [S·m] flags */
    unsigned char *loaded, *forwarded, *input_grad_done, *weight_done;
    unsigned char *activation_sent, *activation_received, *grad_sent, *grad_received;
} checker;

#define AT(c, s, j) ((size_t)(s) * (size_t)(c)->m + (size_t)(j))

static brg_status fail(checker *c, brg_schedule_violation violation, int rank, int64_t index, const char *fmt, ...)
    BRG__PRINTF(5, 6);

static brg_status fail(checker *c, brg_schedule_violation violation, int rank, int64_t index, const char *fmt, ...) {
    brg_schedule_check_result *r = c->result;
    r->violation = violation;
    r->rank = rank;
    r->index = index;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    return BRG_ERR_INVALID_ARGUMENT;
}

static const char *describe(const brg_instruction *in, char *buf, size_t size) {
    return brg_instruction_format(in, buf, size);
}

/* fail() with the message prefixed by "rank R, instruction I (description): ". Formats only on failure. */
static brg_status fail_at(checker *c, brg_schedule_violation violation, int rank, int64_t index, const char *fmt, ...)
    BRG__PRINTF(5, 6);

static brg_status fail_at(checker *c, brg_schedule_violation violation, int rank, int64_t index, const char *fmt, ...) {
    char what[128], detail[BRG_ERROR_MESSAGE_MAX];
    describe(&c->view->streams[rank][index], what, sizeof what);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return fail(c, violation, rank, index, "rank %d, instruction %lld (%s): %s", rank, (long long)index, what, detail);
}

/* Fields of one instruction: in range, the stage on this rank, and a transfer's peer and boundary. */
static brg_status validate(checker *c, int rank, int64_t index, const brg_instruction *in) {
    if ((int)in->kind < 0 || in->kind >= BRG_INSTRUCTION_KIND_COUNT)
        return fail(c, BRG_VIOLATION_MALFORMED, rank, index, "rank %d, instruction %lld: unknown kind %d", rank,
                    (long long)index, (int)in->kind);
    if (in->kind == BRG_INSTRUCTION_ALLREDUCE_GRADS || in->kind == BRG_INSTRUCTION_OPTIMIZER_STEP) return BRG_OK;
    int s = in->stage;
    if (s < 0 || s >= c->stages)
        return fail_at(c, BRG_VIOLATION_MALFORMED, rank, index, "stage outside 0..%d", c->stages - 1);
    if (c->place.stage_rank[s] != rank)
        return fail_at(c, BRG_VIOLATION_MALFORMED, rank, index, "stage %d lives on rank %d", s, c->place.stage_rank[s]);
    if (in->chunk != c->place.stage_chunk[s])
        return fail_at(c, BRG_VIOLATION_MALFORMED, rank, index, "stage %d is chunk %d of its rank", s,
                       c->place.stage_chunk[s]);
    if (in->micro_batch < 0 || in->micro_batch >= c->m)
        return fail_at(c, BRG_VIOLATION_MALFORMED, rank, index, "micro-batch outside 0..%d", c->m - 1);
    if (!brg__instruction_is_transfer(in->kind)) return BRG_OK;
    int toward_next = in->kind == BRG_INSTRUCTION_SEND_ACTIVATION || in->kind == BRG_INSTRUCTION_RECV_GRAD;
    int other = toward_next ? s + 1 : s - 1;
    if (other < 0 || other >= c->stages)
        return fail_at(c, BRG_VIOLATION_MALFORMED, rank, index, "stage %d has no %s stage", s,
                       toward_next ? "next" : "previous");
    int peer = c->place.stage_rank[other];
    if (peer == rank)
        return fail_at(c, BRG_VIOLATION_MALFORMED, rank, index,
                       "stages %d and %d share the rank, so the value stays local and needs no transfer", s, other);
    if (in->peer != peer)
        return fail_at(c, BRG_VIOLATION_MALFORMED, rank, index, "stage %d lives on rank %d, not rank %d", other, peer,
                       in->peer);
    int boundary = toward_next ? s : s - 1;
    if (in->boundary != boundary)
        return fail_at(c, BRG_VIOLATION_MALFORMED, rank, index, "boundary %d, expected %d", in->boundary, boundary);
    return BRG_OK;
}

static int rank_weights_expected(const checker *c) {
    return c->place.chunks * c->m;
}

/* Runs one non-transfer instruction after checking its dependencies. */
static brg_status run_local(checker *c, int rank, int64_t index, const brg_instruction *in) {
    int s = in->stage, j = in->micro_batch;
    switch (in->kind) {
    case BRG_INSTRUCTION_LOAD_BATCH:
        if (c->loaded[AT(c, s, j)]) return fail_at(c, BRG_VIOLATION_DUPLICATE, rank, index, "loaded twice");
        c->loaded[AT(c, s, j)] = 1;
        return BRG_OK;
    case BRG_INSTRUCTION_FORWARD:
        if (c->forwarded[AT(c, s, j)]) return fail_at(c, BRG_VIOLATION_DUPLICATE, rank, index, "runs twice");
        if (j != c->next_forward[s])
            return fail_at(c, BRG_VIOLATION_ORDER, rank, index,
                           "micro-batch %d of stage %d has not run forward yet; a stage runs its passes in increasing "
                           "micro-batch order",
                           c->next_forward[s], s);
        if ((s == 0 || s == c->stages - 1) && !c->loaded[AT(c, s, j)])
            return fail_at(c, BRG_VIOLATION_DEPENDENCY, rank, index, "runs before its LOAD_BATCH (%s)",
                           s == 0 ? "inputs" : "targets");
        if (s > 0) {
            if (c->place.stage_rank[s - 1] == rank) {
                if (!c->forwarded[AT(c, s - 1, j)])
                    return fail_at(
                        c, BRG_VIOLATION_DEPENDENCY, rank, index,
                        "runs before FORWARD stage %d micro-batch %d, which produces its input on the same rank", s - 1,
                        j);
            } else if (!c->activation_received[AT(c, s, j)]) {
                return fail_at(c, BRG_VIOLATION_DEPENDENCY, rank, index,
                               "runs before RECV_ACTIVATION of its input from rank %d", c->place.stage_rank[s - 1]);
            }
        }
        c->forwarded[AT(c, s, j)] = 1;
        c->next_forward[s]++;
        return BRG_OK;
    case BRG_INSTRUCTION_BACKWARD:
    case BRG_INSTRUCTION_BACKWARD_INPUT:
        if (c->input_grad_done[AT(c, s, j)])
            return fail_at(c, BRG_VIOLATION_DUPLICATE, rank, index,
                           "the input gradient of stage %d micro-batch %d is computed twice", s, j);
        if (j != c->next_backward[s])
            return fail_at(c, BRG_VIOLATION_ORDER, rank, index,
                           "micro-batch %d of stage %d has not run backward yet; a stage runs its passes in increasing "
                           "micro-batch order",
                           c->next_backward[s], s);
        if (!c->forwarded[AT(c, s, j)])
            return fail_at(c, BRG_VIOLATION_DEPENDENCY, rank, index, "runs before FORWARD stage %d micro-batch %d", s,
                           j);
        if (s < c->stages - 1) {
            if (c->place.stage_rank[s + 1] == rank) {
                if (!c->input_grad_done[AT(c, s + 1, j)])
                    return fail_at(c, BRG_VIOLATION_DEPENDENCY, rank, index,
                                   "runs before the backward of stage %d micro-batch %d, which produces its output "
                                   "gradient on the same rank",
                                   s + 1, j);
            } else if (!c->grad_received[AT(c, s, j)]) {
                return fail_at(c, BRG_VIOLATION_DEPENDENCY, rank, index,
                               "runs before RECV_GRAD of its output gradient from rank %d", c->place.stage_rank[s + 1]);
            }
        }
        if (in->kind == BRG_INSTRUCTION_BACKWARD) {
            if (j != c->next_weight[s])
                return fail_at(c, BRG_VIOLATION_ORDER, rank, index,
                               "the weight gradient of micro-batch %d of stage %d is not done yet; weight gradients "
                               "accumulate in increasing micro-batch order",
                               c->next_weight[s], s);
            c->weight_done[AT(c, s, j)] = 1;
            c->next_weight[s]++;
            c->weights_done[rank]++;
        }
        c->input_grad_done[AT(c, s, j)] = 1;
        c->next_backward[s]++;
        return BRG_OK;
    case BRG_INSTRUCTION_BACKWARD_WEIGHT:
        if (c->weight_done[AT(c, s, j)])
            return fail_at(c, BRG_VIOLATION_DUPLICATE, rank, index,
                           "the weight gradient of stage %d micro-batch %d is computed twice", s, j);
        if (!c->input_grad_done[AT(c, s, j)])
            return fail_at(c, BRG_VIOLATION_DEPENDENCY, rank, index,
                           "runs before BACKWARD_INPUT stage %d micro-batch %d", s, j);
        if (j != c->next_weight[s])
            return fail_at(c, BRG_VIOLATION_ORDER, rank, index,
                           "the weight gradient of micro-batch %d of stage %d is not done yet; weight gradients "
                           "accumulate in increasing micro-batch order",
                           c->next_weight[s], s);
        c->weight_done[AT(c, s, j)] = 1;
        c->next_weight[s]++;
        c->weights_done[rank]++;
        return BRG_OK;
    case BRG_INSTRUCTION_ALLREDUCE_GRADS:
    case BRG_INSTRUCTION_OPTIMIZER_STEP: {
        int step = in->kind == BRG_INSTRUCTION_OPTIMIZER_STEP;
        unsigned char *done = step ? &c->step_done[rank] : &c->allreduce_done[rank];
        if (*done) return fail_at(c, BRG_VIOLATION_DUPLICATE, rank, index, "a second one");
        if (!step && c->step_done[rank])
            return fail_at(c, BRG_VIOLATION_DEPENDENCY, rank, index, "after OPTIMIZER_STEP");
        if (c->weights_done[rank] < rank_weights_expected(c))
            return fail_at(c, BRG_VIOLATION_DEPENDENCY, rank, index,
                           "runs before every backward pass of the rank (%lld of %d weight gradients done)",
                           (long long)c->weights_done[rank], rank_weights_expected(c));
        *done = 1;
        return BRG_OK;
    }
    default: return fail_at(c, BRG_VIOLATION_MALFORMED, rank, index, "not a local instruction");
    }
}

/* A SEND on `from` meets a RECV on `to`: the SEND's value must exist, both must name the same value, and
 * neither may have happened before. */
static brg_status run_transfer(checker *c, int from, const brg_instruction *send, int to,
                               const brg_instruction *receive) {
    int64_t send_index = c->pc[from], receive_index = c->pc[to];
    int s = send->stage, j = send->micro_batch;
    int activation = send->kind == BRG_INSTRUCTION_SEND_ACTIVATION;
    unsigned char *sent = activation ? &c->activation_sent[AT(c, s, j)] : &c->grad_sent[AT(c, s, j)];
    int produced = activation ? c->forwarded[AT(c, s, j)] : c->input_grad_done[AT(c, s, j)];
    if (*sent) return fail_at(c, BRG_VIOLATION_DUPLICATE, from, send_index, "sent twice");
    if (!produced)
        return fail_at(c, BRG_VIOLATION_DEPENDENCY, from, send_index, "sends before the %s that produces the value",
                       activation ? "FORWARD" : "backward");
    brg_instruction_kind expected = activation ? BRG_INSTRUCTION_RECV_ACTIVATION : BRG_INSTRUCTION_RECV_GRAD;
    int expected_stage = activation ? s + 1 : s - 1;
    if (receive->kind != expected || receive->stage != expected_stage || receive->micro_batch != j) {
        char receive_text[128];
        describe(receive, receive_text, sizeof receive_text);
        return fail_at(c, BRG_VIOLATION_MISMATCH, from, send_index,
                       "meets rank %d, instruction %lld (%s): transfers between the two ranks are out of order", to,
                       (long long)receive_index, receive_text);
    }
    unsigned char *received =
        activation ? &c->activation_received[AT(c, expected_stage, j)] : &c->grad_received[AT(c, expected_stage, j)];
    if (*received) return fail_at(c, BRG_VIOLATION_DUPLICATE, to, receive_index, "received twice");
    *sent = 1;
    *received = 1;
    c->pc[from]++;
    c->pc[to]++;
    return BRG_OK;
}

static int is_send(brg_instruction_kind k) {
    return k == BRG_INSTRUCTION_SEND_ACTIVATION || k == BRG_INSTRUCTION_SEND_GRAD;
}

static int is_receive(brg_instruction_kind k) {
    return k == BRG_INSTRUCTION_RECV_ACTIVATION || k == BRG_INSTRUCTION_RECV_GRAD;
}

/* Advances `rank` as far as it goes. A peer whose transfer completed goes back to the queue; so does the
 * peer `rank` stops at, when `rank` moved (it may now hold the matching half). */
static brg_status advance(checker *c, int rank, brg__rank_queue *queue) {
    const brg_schedule_view *v = c->view;
    int moved = 0;
    while (c->pc[rank] < v->lengths[rank]) {
        int64_t index = c->pc[rank];
        const brg_instruction *in = &v->streams[rank][index];
        BRG__CHECK(validate(c, rank, index, in));
        if (!brg__instruction_is_transfer(in->kind)) {
            BRG__CHECK(run_local(c, rank, index, in));
            c->pc[rank]++;
            moved = 1;
            continue;
        }
        int peer = in->peer;
        const brg_instruction *other = c->pc[peer] < v->lengths[peer] ? &v->streams[peer][c->pc[peer]] : NULL;
        if (other) BRG__CHECK(validate(c, peer, c->pc[peer], other));
        int meets = other && brg__instruction_is_transfer(other->kind) && other->peer == rank &&
                    (is_send(in->kind) ? is_receive(other->kind) : is_send(other->kind));
        if (!meets) {
            if (moved) brg__rank_queue_push(queue, peer);
            return BRG_OK; /* waits for the peer (for good if it has finished: reported as a deadlock) */
        }
        if (is_send(in->kind))
            BRG__CHECK(run_transfer(c, rank, in, peer, other));
        else
            BRG__CHECK(run_transfer(c, peer, other, rank, in));
        brg__rank_queue_push(queue, peer);
        moved = 1;
    }
    return BRG_OK;
}

static brg_status report_deadlock(checker *c) {
    const brg_schedule_view *v = c->view;
    for (int r = 0; r < v->ranks; r++) {
        if (c->pc[r] >= v->lengths[r]) continue;
        char what[128], other_text[128];
        const brg_instruction *in = &v->streams[r][c->pc[r]];
        describe(in, what, sizeof what);
        int peer = in->peer;
        if (c->pc[peer] >= v->lengths[peer])
            return fail(c, BRG_VIOLATION_DEADLOCK, r, c->pc[r],
                        "deadlock: rank %d waits at instruction %lld (%s) for rank %d, which has finished its stream "
                        "without a matching %s",
                        r, (long long)c->pc[r], what, peer, is_send(in->kind) ? "RECV" : "SEND");
        describe(&v->streams[peer][c->pc[peer]], other_text, sizeof other_text);
        return fail(c, BRG_VIOLATION_DEADLOCK, r, c->pc[r],
                    "deadlock: rank %d waits at instruction %lld (%s) while rank %d waits at instruction %lld (%s)", r,
                    (long long)c->pc[r], what, peer, (long long)c->pc[peer], other_text);
    }
    return fail(c, BRG_VIOLATION_DEADLOCK, -1, -1, "deadlock");
}

static brg_status check_complete(checker *c) {
    static const char *const pass_names[3] = {"FORWARD", "backward-input", "backward-weight"};
    for (int s = 0; s < c->stages; s++) {
        int next[3] = {c->next_forward[s], c->next_backward[s], c->next_weight[s]};
        for (int k = 0; k < 3; k++)
            if (next[k] < c->m)
                return fail(c, BRG_VIOLATION_INCOMPLETE, c->place.stage_rank[s], -1,
                            "rank %d: stage %d micro-batch %d never runs its %s pass", c->place.stage_rank[s], s,
                            next[k], pass_names[k]);
    }
    for (int r = 0; r < c->view->ranks; r++)
        if (!c->step_done[r])
            return fail(c, BRG_VIOLATION_INCOMPLETE, r, -1, "rank %d: the stream has no OPTIMIZER_STEP", r);
    return BRG_OK;
}

static void checker_free(checker *c) {
    brg__placement_free(&c->place);
    free(c->pc);
    free(c->weights_done);
    free(c->step_done);
    free(c->allreduce_done);
    free(c->next_forward);
    free(c->next_backward);
    free(c->next_weight);
    free(c->loaded);
    free(c->forwarded);
    free(c->input_grad_done);
    free(c->weight_done);
    free(c->activation_sent);
    free(c->activation_received);
    free(c->grad_sent);
    free(c->grad_received);
}

brg_status brg_schedule_check_streams(const brg_schedule_view *view, brg_schedule_check_result *result) {
    brg_schedule_check_result local;
    if (!result) result = &local;
    memset(result, 0, sizeof *result);
    result->rank = -1;
    result->index = -1;
    checker c = {0};
    c.view = view;
    c.result = result;
    brg_status status = brg__placement_build(view, &c.place, result->message, sizeof result->message);
    if (status != BRG_OK) {
        result->violation = BRG_VIOLATION_MALFORMED;
        return status;
    }
    c.stages = c.place.stages;
    c.m = c.place.micro_batches;
    size_t p = (size_t)view->ranks, S = (size_t)c.stages, pairs = S * (size_t)c.m;
    c.pc = brg__calloc(p, sizeof *c.pc);
    c.weights_done = brg__calloc(p, sizeof *c.weights_done);
    c.step_done = brg__calloc(p, 1);
    c.allreduce_done = brg__calloc(p, 1);
    c.next_forward = brg__calloc(S, sizeof(int));
    c.next_backward = brg__calloc(S, sizeof(int));
    c.next_weight = brg__calloc(S, sizeof(int));
    c.loaded = brg__calloc(pairs, 1);
    c.forwarded = brg__calloc(pairs, 1);
    c.input_grad_done = brg__calloc(pairs, 1);
    c.weight_done = brg__calloc(pairs, 1);
    c.activation_sent = brg__calloc(pairs, 1);
    c.activation_received = brg__calloc(pairs, 1);
    c.grad_sent = brg__calloc(pairs, 1);
    c.grad_received = brg__calloc(pairs, 1);
    if (!c.pc || !c.weights_done || !c.step_done || !c.allreduce_done || !c.next_forward || !c.next_backward ||
        !c.next_weight || !c.loaded || !c.forwarded || !c.input_grad_done || !c.weight_done || !c.activation_sent ||
        !c.activation_received || !c.grad_sent || !c.grad_received) {
        checker_free(&c);
        snprintf(result->message, sizeof result->message, "out of memory checking a schedule");
        return BRG_ERR_OUT_OF_MEMORY;
    }
    brg__rank_queue queue;
    if (brg__rank_queue_init(&queue, view->ranks) != BRG_OK) {
        checker_free(&c);
        snprintf(result->message, sizeof result->message, "out of memory checking a schedule");
        return BRG_ERR_OUT_OF_MEMORY;
    }
    for (int r = brg__rank_queue_pop(&queue); r >= 0 && status == BRG_OK; r = brg__rank_queue_pop(&queue))
        status = advance(&c, r, &queue);
    brg__rank_queue_free(&queue);
    if (status == BRG_OK) {
        int finished = 1;
        for (int r = 0; r < view->ranks; r++)
            if (c.pc[r] < view->lengths[r]) finished = 0;
        status = finished ? check_complete(&c) : report_deadlock(&c);
    }
    checker_free(&c);
    return status;
}
