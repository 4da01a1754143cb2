/* brigade: pipeline schedules.
 *
 * A schedule turns (pipeline stages p, virtual chunks v, micro-batches m, kind) into one instruction
 * stream per rank (rank r = pipeline device 0..p-1). The runtime executes these streams; the partitioner
 * simulates the very same streams, so a predicted timeline and a measured one line up.
 *
 * Placement (Megatron's): the model is cut into S = v·p virtual stages; virtual stage s lives on rank
 * s % p as that rank's chunk s / p. Stage 0 reads the batch inputs, stage S-1 computes the loss.
 *
 *     brg_schedule_options o = BRG_SCHEDULE_OPTIONS_INIT;
 *     o.kind = BRG_SCHEDULE_1F1B;
 *     o.stages = 4;
 *     o.micro_batches = 8;
 *     brg_error err;
 *     brg_schedule *s;
 *     if (brg_schedule_create(&o, &s, &err) != BRG_OK) { fprintf(stderr, "%s\n", err.message); return; }
 *     for (int r = 0; r < brg_schedule_rank_count(s); r++) {
 *         int64_t n;
 *         const brg_instruction *stream = brg_schedule_stream(s, r, &n);
 *         for (int64_t i = 0; i < n; i++) {
 *             char line[96];
 *             printf("rank %d: %s\n", r, brg_instruction_format(&stream[i], line, sizeof line));
 *         }
 *     }
 *     if (brg_schedule_check(s) != BRG_OK) fprintf(stderr, "%s\n", brg_schedule_last_error(s));
 *     brg_schedule_destroy(s);
 *
 * Conventions of every stream:
 * - The loss is part of the last virtual stage: its FORWARD computes it (the loss op belongs to that
 *   stage's layers) and its BACKWARD / BACKWARD_INPUT starts from it. There is no separate loss
 *   instruction.
 * - LOAD_BATCH(s, j) loads the per-micro-batch inputs stage s reads: the inputs on stage 0, the targets
 *   on stage S-1 (both when S = 1). It comes before that stage's FORWARD of micro-batch j.
 * - A value crossing between virtual stages on different ranks is an explicit SEND on the producer's
 *   rank and a matching RECV on the consumer's; on each ordered pair of ranks the k-th SEND matches the
 *   k-th RECV (NCCL's ordering). Between virtual stages on the same rank (only when p = 1) there is no
 *   instruction: the value stays in the rank's memory.
 * - Every rank runs the FORWARD, the BACKWARD (or BACKWARD_INPUT) and the BACKWARD_WEIGHT passes of each
 *   of its stages in increasing micro-batch order, so gradients accumulate in the same order as on a
 *   single stage (bitwise-equal results).
 * - Each stream ends with ALLREDUCE_GRADS (only when data_parallel > 1) and OPTIMIZER_STEP.
 * - A runtime should post SEND and RECV asynchronously and wait for a RECV only before the pass that
 *   consumes it. The streams are also correct when both block (rendezvous): brg_schedule_check proves
 *   it. Each RECV sits where its data is ready under nominal costs, so a blocking RECV rarely waits. */
#ifndef BRIGADE_SCHEDULE_H
#define BRIGADE_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "brigade/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brg_schedule brg_schedule;
typedef struct brg_timeline brg_timeline;

typedef enum brg_schedule_kind {
    /* Fill-drain: every forward, then every backward (micro-batches ascending). Any m >= 1. Peak
     * in-flight micro-batches m on every rank. */
    BRG_SCHEDULE_GPIPE = 0,
    /* PipeDream-Flush / Megatron non-interleaved: rank r runs min(p-r-1, m) forwards, then alternates one
     * forward and one backward, then drains. Any m >= 1 (m < p cannot fill the pipeline but is correct).
     * Peak in-flight min(p-r, m) on rank r. */
    BRG_SCHEDULE_1F1B = 1,
    /* Megatron's interleaved 1F1B with v >= 2 chunks per rank; needs m to be a multiple of p. Rank r
     * warms up with w = min(2(p-r-1) + (v-1)p, v·m) chunk forwards, then alternates, then drains; its peak
     * in-flight count is min(w + 1, v·m) (chunk, micro-batch) pairs, each 1/v of the rank's layers when
     * chunks are equal. Unlike Megatron, m = p uses the same rule (same bubble, less memory). */
    BRG_SCHEDULE_INTERLEAVED_1F1B = 2,
    /* Zero-bubble H1 (Qi et al. 2023): 1F1B's order with each backward split into BACKWARD_INPUT (on the
     * critical path) and BACKWARD_WEIGHT, which rank r defers by r steps to fill the drain bubble. Any
     * m >= 1. Counting a micro-batch as in flight from its FORWARD until its BACKWARD_WEIGHT, the peak is
     * min(p, m) on every rank, that is 1F1B's peak on rank 0; the full stash (FORWARD until
     * BACKWARD_INPUT) peaks at min(p-r, m) as in 1F1B, and between BACKWARD_INPUT and BACKWARD_WEIGHT a
     * micro-batch keeps only what the weight gradients read (the inputs of parameterized ops and the
     * gradients of their outputs). */
    BRG_SCHEDULE_ZB_H1 = 3,
    BRG_SCHEDULE_KIND_COUNT = 4,
} brg_schedule_kind;

typedef enum brg_instruction_kind {
    BRG_INSTRUCTION_FORWARD = 0,         /* forward of (stage, micro_batch) */
    BRG_INSTRUCTION_BACKWARD = 1,        /* fused backward-input and backward-weight */
    BRG_INSTRUCTION_BACKWARD_INPUT = 2,  /* gradients of the stage's inputs (ZB-H1) */
    BRG_INSTRUCTION_BACKWARD_WEIGHT = 3, /* gradients of the stage's parameters (ZB-H1) */
    BRG_INSTRUCTION_SEND_ACTIVATION = 4, /* stage's output to stage + 1 on `peer` */
    BRG_INSTRUCTION_RECV_ACTIVATION = 5, /* stage's input from stage - 1 on `peer` */
    BRG_INSTRUCTION_SEND_GRAD = 6,       /* gradient of stage's input to stage - 1 on `peer` */
    BRG_INSTRUCTION_RECV_GRAD = 7,       /* gradient of stage's output from stage + 1 on `peer` */
    BRG_INSTRUCTION_LOAD_BATCH = 8,      /* the micro-batch inputs (or targets) stage reads */
    BRG_INSTRUCTION_ALLREDUCE_GRADS = 9, /* data-parallel gradient all-reduce of the rank's parameters */
    BRG_INSTRUCTION_OPTIMIZER_STEP = 10, /* update of the rank's parameters */
    BRG_INSTRUCTION_KIND_COUNT = 11,
} brg_instruction_kind;

/* One instruction. `stage` and `chunk` always name a stage held by the executing rank (for a transfer:
 * the stage whose value or gradient is sent or received there). Fields that do not apply are -1. */
typedef struct brg_instruction {
    brg_instruction_kind kind;
    int micro_batch; /* 0..m-1; -1 for ALLREDUCE_GRADS and OPTIMIZER_STEP */
    int stage;       /* global virtual stage 0..S-1; -1 for ALLREDUCE_GRADS and OPTIMIZER_STEP */
    int chunk;       /* the stage's index among the rank's stages (stage / p); -1 likewise */
    int peer;        /* the other rank of a SEND / RECV; -1 otherwise */
    int boundary;    /* for a SEND / RECV, the boundary b crossed: between stages b and b + 1; else -1 */
} brg_instruction;

/* ---- generator ------------------------------------------------------------------------------- */

typedef struct brg_schedule_options {
    brg_schedule_kind kind;
    int stages;         /* pipeline stages p = ranks (devices), >= 1 */
    int chunks;         /* virtual chunks per rank v, >= 1; > 1 only for BRG_SCHEDULE_INTERLEAVED_1F1B */
    int micro_batches;  /* m >= 1 per optimizer step */
    int data_parallel;  /* replicas of the pipeline, >= 1; > 1 adds ALLREDUCE_GRADS before the step */
} brg_schedule_options;

#define BRG_SCHEDULE_OPTIONS_INIT {BRG_SCHEDULE_1F1B, 1, 1, 1, 1}

/* Largest v·p·m accepted (keeps every stream and index far from overflow). */
#define BRG_SCHEDULE_MAX_PASSES (1 << 24)

/* Checks options without building anything: BRG_OK or BRG_ERR_INVALID_ARGUMENT (options NULL, a count
 * below 1, an unknown kind, v > 1 for a kind other than interleaved, v = 1 for interleaved, m not a
 * multiple of p for interleaved, v·p·m above BRG_SCHEDULE_MAX_PASSES), with err (may be NULL) naming the
 * value and the requirement. */
brg_status brg_schedule_validate(const brg_schedule_options *options, brg_error *err);

/* Builds the streams into *out. Returns BRG_OK; BRG_ERR_INVALID_ARGUMENT (out NULL, or what
 * brg_schedule_validate rejects); BRG_ERR_OUT_OF_MEMORY; BRG_ERR_INTERNAL (a bug). On failure *out is
 * NULL and err (may be NULL) says why. The caller owns the schedule: brg_schedule_destroy. */
brg_status brg_schedule_create(const brg_schedule_options *options, brg_schedule **out, brg_error *err);

/* Frees the schedule and its streams. NULL is allowed. */
void brg_schedule_destroy(brg_schedule *s);

/* The message of the last failing call on s ("" when none). Never NULL; owned by s, valid until the next
 * call on it. For a NULL schedule, a static string saying so. */
const char *brg_schedule_last_error(const brg_schedule *s);

/* The options s was built from (BRG_ERR_INVALID_ARGUMENT for NULL). */
brg_status brg_schedule_get_options(const brg_schedule *s, brg_schedule_options *out);

/* p, and S = v·p; 0 for NULL. */
int brg_schedule_rank_count(const brg_schedule *s);
int brg_schedule_virtual_stage_count(const brg_schedule *s);

/* The rank holding virtual stage `stage` (stage % p); -1 for NULL or a stage out of range. */
int brg_schedule_stage_rank(const brg_schedule *s, int stage);

/* Instructions in rank's stream; -1 for NULL or a rank out of range. */
int64_t brg_schedule_instruction_count(const brg_schedule *s, int rank);

/* Copies instruction `index` of rank's stream into *out. BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL) or
 * BRG_ERR_NOT_FOUND (rank or index out of range). */
brg_status brg_schedule_instruction(const brg_schedule *s, int rank, int64_t index, brg_instruction *out);

/* Rank's whole stream (owned by s, valid until brg_schedule_destroy) and its length in *count (may be
 * NULL). NULL (and *count 0) for NULL or a rank out of range. */
const brg_instruction *brg_schedule_stream(const brg_schedule *s, int rank, int64_t *count);

/* "gpipe", "1f1b", "interleaved-1f1b", "zb-h1"; "unknown" outside the enum. */
const char *brg_schedule_kind_name(brg_schedule_kind kind);

/* The kind named by `name` (the names above; also "interleaved" and "zbh1"). BRG_OK,
 * BRG_ERR_INVALID_ARGUMENT (NULL) or BRG_ERR_NAME (unknown name). */
brg_status brg_schedule_kind_from_name(const char *name, brg_schedule_kind *out);

/* "FORWARD", "BACKWARD_INPUT", "SEND_ACTIVATION", ...; "UNKNOWN" outside the enum. */
const char *brg_instruction_kind_name(brg_instruction_kind kind);

/* Short label for timelines: "F", "B", "BI", "W", "SA", "RA", "SG", "RG", "LOAD", "ALLREDUCE", "STEP";
 * "?" outside the enum. */
const char *brg_instruction_kind_label(brg_instruction_kind kind);

/* Writes a one-line description ("SEND_ACTIVATION stage 2 (chunk 0) micro-batch 5 to rank 3") into buf
 * (size bytes, truncated if short) and returns buf; "" for a NULL instruction. */
char *brg_instruction_format(const brg_instruction *instruction, char *buf, size_t size);

/* ---- streams as plain data (checker, simulator) ---------------------------------------------- */

/* A borrowed description of a set of streams: a schedule's, or hand-made ones. */
typedef struct brg_schedule_view {
    int ranks;                              /* p >= 1 */
    int chunks;                             /* v >= 1: virtual stages per rank; S = v·p */
    int micro_batches;                      /* m >= 1 */
    const int *stage_rank;                  /* [S] rank of each virtual stage, each rank holding v;
                                               NULL: stage % p (Megatron's placement) */
    const brg_instruction *const *streams;  /* [p] */
    const int64_t *lengths;                 /* [p] */
} brg_schedule_view;

/* Fills *view with s's streams (borrowed from s, valid until brg_schedule_destroy). BRG_OK or
 * BRG_ERR_INVALID_ARGUMENT (NULL). */
brg_status brg_schedule_get_view(const brg_schedule *s, brg_schedule_view *view);

/* ---- checker --------------------------------------------------------------------------------- */

typedef enum brg_schedule_violation {
    BRG_VIOLATION_NONE = 0,
    BRG_VIOLATION_MALFORMED = 1,  /* a field out of range or inconsistent (stage not on the rank, peer) */
    BRG_VIOLATION_DEPENDENCY = 2, /* a pass or send before what it needs */
    BRG_VIOLATION_ORDER = 3,      /* micro-batches of a stage's passes not in increasing order */
    BRG_VIOLATION_DUPLICATE = 4,  /* a pass, load, transfer or step a second time */
    BRG_VIOLATION_MISMATCH = 5,   /* a send met a receive of another value (order on a rank pair) */
    BRG_VIOLATION_DEADLOCK = 6,   /* every unfinished rank waits on a send or receive that cannot match */
    BRG_VIOLATION_INCOMPLETE = 7, /* at the end a pass or the optimizer step is missing */
} brg_schedule_violation;

typedef struct brg_schedule_check_result {
    brg_schedule_violation violation;
    int rank;      /* where the first violation was found; -1 for none */
    int64_t index; /* instruction index in that rank's stream; -1 for none or "at the end" */
    char message[BRG_ERROR_MESSAGE_MAX]; /* names the rank, the instruction and what is wrong; "" if none */
} brg_schedule_check_result;

/* Executes the streams with blocking, rendezvous transfers (a SEND completes only when the matching
 * RECV is posted, a RECV blocks) and checks, at every instruction: fields in range and the stage on that
 * rank; FORWARD(s, j) after LOAD_BATCH (stages 0 and S-1) and after its input (RECV_ACTIVATION, or
 * FORWARD(s-1, j) on the same rank); BACKWARD / BACKWARD_INPUT(s, j) after FORWARD(s, j) and after the
 * gradient of its output (RECV_GRAD, or the backward of s+1 on the same rank; the last stage turns
 * around on its own forward, the loss); BACKWARD_WEIGHT after BACKWARD_INPUT of the same (s, j); each
 * pass of a stage in increasing micro-batch order; a SEND after the pass producing its value; the k-th
 * SEND on each ordered rank pair meeting the k-th RECV of the same value; ALLREDUCE_GRADS (optional) and
 * OPTIMIZER_STEP (exactly one per rank) after every backward pass of the rank; at the end, every
 * (s, j) forwarded and both backward parts done exactly once, and no rank left waiting.
 * Returns BRG_OK (result->violation NONE); BRG_ERR_INVALID_ARGUMENT when the streams break a rule
 * (result says which, where, and why) or the view is NULL or inconsistent (violation MALFORMED);
 * BRG_ERR_OUT_OF_MEMORY. result may be NULL when only the status matters. */
brg_status brg_schedule_check_streams(const brg_schedule_view *view, brg_schedule_check_result *result);

/* brg_schedule_check_streams on s's own streams; on failure the message is s's last error. */
brg_status brg_schedule_check(brg_schedule *s);

/* Peak in-flight counts of one rank, from the order of its stream alone. A (stage, micro-batch) pair is
 * in flight from its FORWARD until its last backward pass (BACKWARD, or BACKWARD_WEIGHT); it awaits
 * backward from its FORWARD until BACKWARD or BACKWARD_INPUT. With v > 1 the counts are of (chunk,
 * micro-batch) pairs. A memory model may bound a rank's stash by full · peak_awaiting_backward +
 * weight_part · (peak_in_flight - peak_awaiting_backward). */
typedef struct brg_in_flight {
    int peak_in_flight;
    int peak_awaiting_backward;
} brg_in_flight;

/* BRG_OK; BRG_ERR_INVALID_ARGUMENT (view or out NULL, or view counts invalid); BRG_ERR_NOT_FOUND (rank
 * out of range); BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_schedule_in_flight(const brg_schedule_view *view, int rank, brg_in_flight *out);

/* ---- simulator ------------------------------------------------------------------------------- */

/* Durations in seconds (any unit works if used throughout; the trace writer reads seconds). Arrays are
 * borrowed for the call. Per virtual stage [S]: forward is required; streams with BACKWARD need
 * `backward` or both split arrays (their sum is used); streams with BACKWARD_INPUT / _WEIGHT need both
 * split arrays. Per boundary [S-1] (boundary b between stages b and b+1): transfer times of the
 * activation and of its gradient. Per rank [p]: all-reduce and optimizer step. NULL optional arrays
 * count as zeros; transfer_grad NULL uses transfer_activation. Every value finite and >= 0. */
typedef struct brg_schedule_costs {
    const double *forward;
    const double *backward;
    const double *backward_input;
    const double *backward_weight;
    const double *load_batch;
    const double *transfer_activation;
    const double *transfer_grad;
    const double *allreduce;
    const double *optimizer;
} brg_schedule_costs;

#define BRG_SCHEDULE_COSTS_INIT {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL}

/* Discrete-event simulation of the streams. The model: every rank starts at 0 and runs its stream in
 * order; compute instructions (passes, LOAD_BATCH, ALLREDUCE_GRADS, OPTIMIZER_STEP) occupy the rank for
 * their duration; a SEND is posted without occupying the rank, and its transfer starts when posted or
 * when the previous transfer on the same ordered rank pair ends (one link per pair and direction,
 * first in first out), and lasts the boundary's transfer time; a RECV is posted without occupying the
 * rank and completes when the transfer arrives; a pass starts when the rank is free and its inputs have
 * arrived (no rendezvous: sends never wait for receivers). The all-reduce is with the rank's own
 * data-parallel replicas, which run the same schedule, so it waits for nothing else.
 * Returns BRG_OK and a timeline in *out (the caller's: brg_timeline_destroy); BRG_ERR_INVALID_ARGUMENT
 * (NULL, a cost array missing or a value negative or not finite, a malformed stream, or streams that
 * cannot run: check them with brg_schedule_check_streams); BRG_ERR_OUT_OF_MEMORY. err may be NULL. */
brg_status brg_schedule_simulate(const brg_schedule_view *view, const brg_schedule_costs *costs,
                                 brg_timeline **out, brg_error *err);

void brg_timeline_destroy(brg_timeline *t);

/* Bubble: a rank is busy while a compute instruction runs and idle for the rest of [0, makespan]
 * (before its first pass, while waiting, and after it finishes); bubble_fraction = idle / (p ·
 * makespan) summed over ranks; bubble_ratio = idle / busy, the bubble "of ideal time" (1F1B: (p-1)/m).
 * For uniform passes these give GPipe and 1F1B (p-1)/(m+p-1), interleaved 1F1B a ratio of (p-1)/(v·m). */
typedef struct brg_timeline_summary {
    int ranks;
    double makespan;
    double busy;
    double idle;
    double bubble_fraction;
    double bubble_ratio;
} brg_timeline_summary;

typedef struct brg_timeline_rank {
    int64_t instruction_count;
    double busy;
    double idle;   /* makespan - busy */
    double finish; /* end of the rank's last instruction (a SEND ends when its transfer arrives) */
    int peak_in_flight;
    int peak_awaiting_backward;
} brg_timeline_rank;

/* Each returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL) or BRG_ERR_NOT_FOUND (rank or index out of
 * range). For an instruction: a compute's start and end; a SEND's post time and its transfer's arrival;
 * a RECV's post time and the arrival. */
brg_status brg_timeline_get_summary(const brg_timeline *t, brg_timeline_summary *out);
brg_status brg_timeline_get_rank(const brg_timeline *t, int rank, brg_timeline_rank *out);
brg_status brg_timeline_instruction(const brg_timeline *t, int rank, int64_t index, double *start,
                                    double *end);

/* ---- timelines as Chrome trace JSON ---------------------------------------------------------- */

#define BRG_TRACE_NAME_MAX 48

typedef enum brg_trace_track {
    BRG_TRACE_COMPUTE = 0,  /* passes, loads, all-reduce, optimizer step */
    BRG_TRACE_TRANSFER = 1, /* transfers, drawn beside compute because they overlap it */
} brg_trace_track;

/* One slice on a rank's timeline; simulated and measured timelines use the same events. */
typedef struct brg_trace_event {
    int rank;                      /* >= 0: one process per rank */
    brg_trace_track track;         /* a thread of that process */
    brg_instruction_kind kind;     /* written as the category */
    char name[BRG_TRACE_NAME_MAX]; /* the slice's label; "" writes the kind's label and micro-batch */
    int micro_batch;               /* -1: none */
    int stage;                     /* -1: none */
    double start;                  /* seconds from the start of the step */
    double duration;               /* seconds, >= 0 */
} brg_trace_event;

/* The timeline's events (compute instructions on BRG_TRACE_COMPUTE, SENDs with their transfer on
 * BRG_TRACE_TRANSFER; RECVs are not drawn). hwloc-style: *count holds the capacity of `events` (which may
 * be NULL with capacity 0) and receives the number of events; min(capacity, number) are written.
 * BRG_OK or BRG_ERR_INVALID_ARGUMENT (t or count NULL, events NULL with a capacity). */
brg_status brg_timeline_events(const brg_timeline *t, brg_trace_event *events, int64_t *count);

/* Writes {"traceEvents": [...]} to path: an "X" event per event (ts and dur in microseconds, pid the
 * rank, tid the track, args micro_batch and stage) plus names for processes ("<label> rank r", label
 * "rank" when NULL) and tracks. Opens in Perfetto and chrome://tracing. Returns BRG_OK;
 * BRG_ERR_INVALID_ARGUMENT (path NULL, events NULL with count > 0, count < 0, an event with a negative
 * rank, an unknown track, or a negative or non-finite time); BRG_ERR_IO (path cannot be written: err
 * names it and the reason). */
brg_status brg_trace_write(const char *path, const brg_trace_event *events, int64_t count, const char *label,
                           brg_error *err);

/* brg_timeline_events then brg_trace_write. Same statuses, plus BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_timeline_write_trace(const brg_timeline *t, const char *path, const char *label, brg_error *err);

#ifdef __cplusplus
}
#endif
#endif
