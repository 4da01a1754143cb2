/* Placement of virtual stages on ranks, shared by the checker and the simulator; instruction names. */
#include <stdlib.h>
#include <string.h>

#include "schedule/schedule_internal.h"

brg_status brg__placement_build(const brg_schedule_view *view, brg__placement *placement, char *msg, size_t size) {
    memset(placement, 0, sizeof *placement);
    if (!view) return brg__message_set(msg, size, BRG_ERR_INVALID_ARGUMENT, "the streams view is NULL");
    if (view->ranks < 1 || view->chunks < 1 || view->micro_batches < 1)
        return brg__message_set(msg, size, BRG_ERR_INVALID_ARGUMENT,
                                "the view needs ranks, chunks and micro-batches >= 1 (got %d, %d, %d)", view->ranks,
                                view->chunks, view->micro_batches);
    int64_t stages = (int64_t)view->ranks * view->chunks;
    if (stages * view->micro_batches > BRG_SCHEDULE_MAX_PASSES)
        return brg__message_set(msg, size, BRG_ERR_INVALID_ARGUMENT,
                                "the view is too large: %d ranks x %d chunks x %d micro-batches exceeds %d",
                                view->ranks, view->chunks, view->micro_batches, BRG_SCHEDULE_MAX_PASSES);
    if (!view->streams || !view->lengths)
        return brg__message_set(msg, size, BRG_ERR_INVALID_ARGUMENT, "the view's streams or lengths are NULL");
    for (int r = 0; r < view->ranks; r++) {
        if (view->lengths[r] < 0)
            return brg__message_set(msg, size, BRG_ERR_INVALID_ARGUMENT, "rank %d: negative stream length %lld", r,
                                    (long long)view->lengths[r]);
        if (view->lengths[r] > 0 && !view->streams[r])
            return brg__message_set(msg, size, BRG_ERR_INVALID_ARGUMENT, "rank %d: stream is NULL", r);
    }
    placement->ranks = view->ranks;
    placement->chunks = view->chunks;
    placement->stages = (int)stages;
    placement->micro_batches = view->micro_batches;
    placement->stage_rank = brg__malloc(sizeof(int) * (size_t)stages);
    placement->stage_chunk = brg__malloc(sizeof(int) * (size_t)stages);
    int *held = brg__calloc((size_t)view->ranks, sizeof(int));
    if (!placement->stage_rank || !placement->stage_chunk || !held) {
        free(held);
        brg__placement_free(placement);
        return brg__message_set(msg, size, BRG_ERR_OUT_OF_MEMORY, "out of memory building the placement");
    }
    for (int s = 0; s < placement->stages; s++) {
        int r = view->stage_rank ? view->stage_rank[s] : s % view->ranks;
        if (r < 0 || r >= view->ranks || held[r] >= view->chunks) {
            free(held);
            brg__placement_free(placement);
            if (r < 0 || r >= view->ranks)
                return brg__message_set(msg, size, BRG_ERR_INVALID_ARGUMENT,
                                        "placement: stage %d on rank %d, outside 0..%d", s, r, view->ranks - 1);
            return brg__message_set(msg, size, BRG_ERR_INVALID_ARGUMENT,
                                    "placement: rank %d holds more than %d stages (stage %d)", r, view->chunks, s);
        }
        placement->stage_rank[s] = r;
        placement->stage_chunk[s] = held[r]++;
    }
    free(held);
    return BRG_OK;
}

void brg__placement_free(brg__placement *placement) {
    if (!placement) return;
    free(placement->stage_rank);
    free(placement->stage_chunk);
    placement->stage_rank = placement->stage_chunk = NULL;
}

brg_status brg__rank_queue_init(brg__rank_queue *q, int ranks) {
    q->items = brg__malloc(sizeof(int) * (size_t)ranks);
    q->queued = brg__malloc((size_t)ranks);
    q->ranks = ranks;
    q->head = 0;
    q->count = 0;
    if (!q->items || !q->queued) {
        brg__rank_queue_free(q);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    memset(q->queued, 0, (size_t)ranks);
    for (int r = 0; r < ranks; r++) brg__rank_queue_push(q, r);
    return BRG_OK;
}

void brg__rank_queue_push(brg__rank_queue *q, int rank) {
    if (q->queued[rank]) return;
    q->queued[rank] = 1;
    q->items[(q->head + q->count++) % q->ranks] = rank;
}

int brg__rank_queue_pop(brg__rank_queue *q) {
    if (q->count == 0) return -1;
    int rank = q->items[q->head];
    q->head = (q->head + 1) % q->ranks;
    q->count--;
    q->queued[rank] = 0;
    return rank;
}

void brg__rank_queue_free(brg__rank_queue *q) {
    free(q->items);
    free(q->queued);
    q->items = NULL;
    q->queued = NULL;
}

int brg__instruction_is_pass(brg_instruction_kind kind) {
    return kind == BRG_INSTRUCTION_FORWARD || kind == BRG_INSTRUCTION_BACKWARD ||
           kind == BRG_INSTRUCTION_BACKWARD_INPUT || kind == BRG_INSTRUCTION_BACKWARD_WEIGHT;
}

int brg__instruction_is_transfer(brg_instruction_kind kind) {
    return kind == BRG_INSTRUCTION_SEND_ACTIVATION || kind == BRG_INSTRUCTION_RECV_ACTIVATION ||
           kind == BRG_INSTRUCTION_SEND_GRAD || kind == BRG_INSTRUCTION_RECV_GRAD;
}

static const char *const instruction_names[BRG_INSTRUCTION_KIND_COUNT] = {
    "FORWARD",   "BACKWARD",  "BACKWARD_INPUT", "BACKWARD_WEIGHT", "SEND_ACTIVATION", "RECV_ACTIVATION",
    "SEND_GRAD", "RECV_GRAD", "LOAD_BATCH",     "ALLREDUCE_GRADS", "OPTIMIZER_STEP",
};

static const char *const instruction_labels[BRG_INSTRUCTION_KIND_COUNT] = {
    "F", "B", "BI", "W", "SA", "RA", "SG", "RG", "LOAD", "ALLREDUCE", "STEP",
};

const char *brg_instruction_kind_name(brg_instruction_kind kind) {
    if ((int)kind < 0 || kind >= BRG_INSTRUCTION_KIND_COUNT) return "UNKNOWN";
    return instruction_names[kind];
}

const char *brg_instruction_kind_label(brg_instruction_kind kind) {
    if ((int)kind < 0 || kind >= BRG_INSTRUCTION_KIND_COUNT) return "?";
    return instruction_labels[kind];
}

char *brg_instruction_format(const brg_instruction *in, char *buf, size_t size) {
    if (!buf || size == 0) return buf;
    buf[0] = '\0';
    if (!in) return buf;
    const char *name = brg_instruction_kind_name(in->kind);
    switch (in->kind) {
    case BRG_INSTRUCTION_SEND_ACTIVATION:
    case BRG_INSTRUCTION_SEND_GRAD:
        snprintf(buf, size, "%s stage %d (chunk %d) micro-batch %d to rank %d", name, in->stage, in->chunk,
                 in->micro_batch, in->peer);
        break;
    case BRG_INSTRUCTION_RECV_ACTIVATION:
    case BRG_INSTRUCTION_RECV_GRAD:
        snprintf(buf, size, "%s stage %d (chunk %d) micro-batch %d from rank %d", name, in->stage, in->chunk,
                 in->micro_batch, in->peer);
        break;
    case BRG_INSTRUCTION_ALLREDUCE_GRADS:
    case BRG_INSTRUCTION_OPTIMIZER_STEP: snprintf(buf, size, "%s", name); break;
    case BRG_INSTRUCTION_FORWARD:
    case BRG_INSTRUCTION_BACKWARD:
    case BRG_INSTRUCTION_BACKWARD_INPUT:
    case BRG_INSTRUCTION_BACKWARD_WEIGHT:
    case BRG_INSTRUCTION_LOAD_BATCH:
        snprintf(buf, size, "%s stage %d (chunk %d) micro-batch %d", name, in->stage, in->chunk, in->micro_batch);
        break;
    default: snprintf(buf, size, "unknown instruction kind %d", (int)in->kind); break;
    }
    return buf;
}
