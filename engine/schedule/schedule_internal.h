/* Internal to engine/schedule: the schedule handle and helpers shared by the generator, the checker,
 * the simulator and the trace writer. */
#ifndef BRIGADE_SCHEDULE_INTERNAL_H
#define BRIGADE_SCHEDULE_INTERNAL_H

#include "brigade/schedule.h"
#include "internal.h"

struct brg_schedule {
    brg_schedule_options options;
    int ranks;          /* p */
    int virtual_stages; /* S = v·p */
    brg_instruction **streams; /* [p] */
    int64_t *lengths;          /* [p] */
    char last_error[BRG_ERROR_MESSAGE_MAX];
};

/* Where each virtual stage lives: rank and chunk (its index among the rank's stages, ascending). */
typedef struct brg__placement {
    int ranks;
    int chunks;
    int stages; /* S */
    int micro_batches;
    int *stage_rank;  /* [S] */
    int *stage_chunk; /* [S] */
} brg__placement;

/* Validates the view's counts and pointers and builds its placement (from view->stage_rank, or
 * Megatron's stage % p). Returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (message in msg) or
 * BRG_ERR_OUT_OF_MEMORY. Free with brg__placement_free. */
brg_status brg__placement_build(const brg_schedule_view *view, brg__placement *placement, char *msg,
                                size_t size);
void brg__placement_free(brg__placement *placement);

/* Ranks waiting to be advanced, each at most once; starts with every rank. */
typedef struct brg__rank_queue {
    int *items;
    unsigned char *queued;
    int ranks, head, count;
} brg__rank_queue;

brg_status brg__rank_queue_init(brg__rank_queue *q, int ranks);
void brg__rank_queue_push(brg__rank_queue *q, int rank);
/* The next rank, or -1 when empty. */
int brg__rank_queue_pop(brg__rank_queue *q);
void brg__rank_queue_free(brg__rank_queue *q);

/* Whether kind is a pass (FORWARD, BACKWARD, BACKWARD_INPUT, BACKWARD_WEIGHT). */
int brg__instruction_is_pass(brg_instruction_kind kind);
/* Whether kind is a SEND or RECV. */
int brg__instruction_is_transfer(brg_instruction_kind kind);

#endif
