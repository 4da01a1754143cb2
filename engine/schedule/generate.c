/* Schedule generator: per-rank pass orders for each kind, then transfers placed by a rendezvous
 * execution under nominal costs, so that the streams are deadlock-free even with blocking transfers. */
#include <stdlib.h>
#include <string.h>

#include "schedule/schedule_internal.h"

/* ---- names ----------------------------------------------------------------------------------- */

static const char *const kind_names[BRG_SCHEDULE_KIND_COUNT] = {"gpipe", "1f1b", "interleaved-1f1b", "zb-h1"};

const char *brg_schedule_kind_name(brg_schedule_kind kind) {
    if ((int)kind < 0 || kind >= BRG_SCHEDULE_KIND_COUNT) return "unknown";
    return kind_names[kind];
}

brg_status brg_schedule_kind_from_name(const char *name, brg_schedule_kind *out) {
    if (!name || !out) return BRG_ERR_INVALID_ARGUMENT;
    for (int k = 0; k < BRG_SCHEDULE_KIND_COUNT; k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (brg_schedule_kind)k;
            return BRG_OK;
        }
    }
    if (strcmp(name, "interleaved") == 0) {
        *out = BRG_SCHEDULE_INTERLEAVED_1F1B;
        return BRG_OK;
    }
    if (strcmp(name, "zbh1") == 0) {
        *out = BRG_SCHEDULE_ZB_H1;
        return BRG_OK;
    }
    return BRG_ERR_NAME;
}

/* Display names for messages. */
static const char *kind_title(brg_schedule_kind kind) {
    switch (kind) {
    case BRG_SCHEDULE_GPIPE: return "GPipe";
    case BRG_SCHEDULE_1F1B: return "1F1B";
    case BRG_SCHEDULE_INTERLEAVED_1F1B: return "interleaved 1F1B";
    case BRG_SCHEDULE_ZB_H1: return "ZB-H1";
    default: return "unknown";
    }
}

/* ---- validation ------------------------------------------------------------------------------ */

brg_status brg_schedule_validate(const brg_schedule_options *o, brg_error *err) {
    if (!o) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "schedule options are NULL");
    if ((int)o->kind < 0 || o->kind >= BRG_SCHEDULE_KIND_COUNT)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "unknown schedule kind %d (expected 0..%d)", (int)o->kind,
                              BRG_SCHEDULE_KIND_COUNT - 1);
    const char *title = kind_title(o->kind);
    if (o->stages < 1)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "%s needs at least 1 pipeline stage (got %d)", title,
                              o->stages);
    if (o->chunks < 1)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "%s needs at least 1 virtual chunk per rank (got %d)",
                              title, o->chunks);
    if (o->micro_batches < 1)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "%s needs at least 1 micro-batch (got %d)", title,
                              o->micro_batches);
    if (o->data_parallel < 1)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "%s needs data-parallel replicas >= 1 (got %d)", title,
                              o->data_parallel);
    if (o->kind == BRG_SCHEDULE_INTERLEAVED_1F1B) {
        if (o->chunks < 2)
            return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                                  "interleaved 1F1B needs at least 2 virtual chunks per rank (got %d); "
                                  "use 1F1B for one chunk",
                                  o->chunks);
        if (o->micro_batches % o->stages != 0)
            return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                                  "interleaved 1F1B needs micro-batches (%d) to be a multiple of stages (%d)",
                                  o->micro_batches, o->stages);
    } else if (o->chunks != 1) {
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                              "%s needs exactly 1 virtual chunk per rank (got %d); "
                              "virtual chunks need interleaved 1F1B",
                              title, o->chunks);
    }
    int64_t passes = (int64_t)o->stages * o->chunks * o->micro_batches;
    if (passes > BRG_SCHEDULE_MAX_PASSES)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                              "%s with %d stages x %d chunks x %d micro-batches is too large (at most %d)", title,
                              o->stages, o->chunks, o->micro_batches, BRG_SCHEDULE_MAX_PASSES);
    return BRG_OK;
}

/* ---- pass orders ----------------------------------------------------------------------------- */

typedef struct pass {
    brg_instruction_kind kind; /* FORWARD, BACKWARD, BACKWARD_INPUT or BACKWARD_WEIGHT */
    int stage;
    int micro_batch;
} pass;

typedef struct pass_list {
    pass *items;
    int64_t count;
} pass_list;

static void push(pass_list *l, brg_instruction_kind kind, int stage, int micro_batch) {
    l->items[l->count++] = (pass){kind, stage, micro_batch};
}

static void order_gpipe(pass_list *l, int rank, int m) {
    for (int j = 0; j < m; j++) push(l, BRG_INSTRUCTION_FORWARD, rank, j);
    for (int j = 0; j < m; j++) push(l, BRG_INSTRUCTION_BACKWARD, rank, j);
}

/* 1F1B: min(p-r-1, m) warm-up forwards, then one forward and one backward, then the remaining backwards.
 * With split_backward (ZB-H1) each backward is a BACKWARD_INPUT and the BACKWARD_WEIGHT passes wait in a
 * queue: in the steady phase rank r keeps r of them pending (they fill the drain bubble), in the drain
 * one runs after each BACKWARD_INPUT, and the rest run at the end. */
static void order_1f1b(pass_list *l, int p, int rank, int m, int split_backward) {
    int warmup = p - rank - 1 < m ? p - rank - 1 : m;
    int weight_next = 0; /* the queue of pending weight passes is [weight_next, backwards done) */
    int backwards = 0;
    brg_instruction_kind backward = split_backward ? BRG_INSTRUCTION_BACKWARD_INPUT : BRG_INSTRUCTION_BACKWARD;
    for (int j = 0; j < warmup; j++) push(l, BRG_INSTRUCTION_FORWARD, rank, j);
    for (int i = 0; i < m - warmup; i++) {
        push(l, BRG_INSTRUCTION_FORWARD, rank, warmup + i);
        push(l, backward, rank, backwards++);
        if (split_backward && backwards - weight_next > rank)
            push(l, BRG_INSTRUCTION_BACKWARD_WEIGHT, rank, weight_next++);
    }
    for (int j = m - warmup; j < m; j++) {
        push(l, backward, rank, backwards++);
        if (split_backward) push(l, BRG_INSTRUCTION_BACKWARD_WEIGHT, rank, weight_next++);
    }
    while (split_backward && weight_next < m) push(l, BRG_INSTRUCTION_BACKWARD_WEIGHT, rank, weight_next++);
}

/* Megatron's interleaved 1F1B. The rank's v·m forward passes are numbered k = 0..v·m-1 in groups of
 * p·v: within a group, p micro-batches of chunk 0, then the same p of chunk 1, ...; backward numbering is
 * the same with the chunks reversed. Warm-up runs 2(p-r-1) + (v-1)p forwards (at most all), then one
 * forward and one backward alternate, then the remaining backwards. (Megatron runs every forward first
 * when m = p; the general rule is dataflow-valid there too, with the same bubble and less memory.) */
static void order_interleaved(pass_list *l, int p, int v, int rank, int m) {
    int64_t total = (int64_t)v * m;
    int64_t warmup = 2 * (int64_t)(p - rank - 1) + (int64_t)(v - 1) * p;
    if (warmup > total) warmup = total;
    int64_t group = (int64_t)p * v;
#define CHUNK_OF(k, forward) ((forward) ? (int)(((k) % group) / p) : v - 1 - (int)(((k) % group) / p))
#define MICRO_BATCH_OF(k) ((int)(((k) / group) * p + (k) % p))
    for (int64_t k = 0; k < warmup; k++) push(l, BRG_INSTRUCTION_FORWARD, CHUNK_OF(k, 1) * p + rank, MICRO_BATCH_OF(k));
    for (int64_t i = 0; i < total - warmup; i++) {
        int64_t k = warmup + i;
        push(l, BRG_INSTRUCTION_FORWARD, CHUNK_OF(k, 1) * p + rank, MICRO_BATCH_OF(k));
        push(l, BRG_INSTRUCTION_BACKWARD, CHUNK_OF(i, 0) * p + rank, MICRO_BATCH_OF(i));
    }
    for (int64_t k = total - warmup; k < total; k++)
        push(l, BRG_INSTRUCTION_BACKWARD, CHUNK_OF(k, 0) * p + rank, MICRO_BATCH_OF(k));
#undef CHUNK_OF
#undef MICRO_BATCH_OF
}

/* ---- transfer placement ---------------------------------------------------------------------- */

/* Nominal pass costs used to place transfers: a backward costs twice a forward; split halves cost one. */
static int64_t nominal_cost(brg_instruction_kind kind) {
    return kind == BRG_INSTRUCTION_BACKWARD ? 2 : 1;
}

enum rank_state { RANK_FREE, RANK_COMPUTING, RANK_SENDING };

typedef struct rank_run {
    const pass_list *passes;
    int64_t next;
    enum rank_state state;
    int64_t end_time;
    pass current;
    brg_instruction send;    /* while RANK_SENDING: the SEND to emit */
    brg_instruction receive; /* and the matching RECV for send.peer */
} rank_run;

typedef struct generator {
    int p, v, m, stages; /* stages: S */
    brg_schedule *schedule;
    rank_run *runs;
    unsigned char *activation_ready; /* [S·m]: the input of (s, j) is on stage s's rank */
    unsigned char *gradient_ready;   /* [S·m]: the gradient of (s, j)'s output is on stage s's rank */
} generator;

static int rank_of(const generator *g, int stage) {
    return stage % g->p;
}

static brg_instruction instruction(brg_instruction_kind kind, int p, int stage, int micro_batch, int peer,
                                   int boundary) {
    return (brg_instruction){kind, micro_batch, stage, stage >= 0 ? stage / p : -1, peer, boundary};
}

static void emit(generator *g, int rank, brg_instruction in) {
    brg_schedule *s = g->schedule;
    s->streams[rank][s->lengths[rank]++] = in;
}

static int pass_ready(const generator *g, const pass *x) {
    size_t at = (size_t)x->stage * (size_t)g->m + (size_t)x->micro_batch;
    switch (x->kind) {
    case BRG_INSTRUCTION_FORWARD: return x->stage == 0 || g->activation_ready[at];
    case BRG_INSTRUCTION_BACKWARD:
    case BRG_INSTRUCTION_BACKWARD_INPUT: return x->stage == g->stages - 1 || g->gradient_ready[at];
    default: return 1; /* BACKWARD_WEIGHT follows its BACKWARD_INPUT on the same rank */
    }
}

static void start_pass(generator *g, int rank, int64_t now) {
    rank_run *run = &g->runs[rank];
    pass x = run->passes->items[run->next++];
    if (x.kind == BRG_INSTRUCTION_FORWARD) {
        if (x.stage == 0) emit(g, rank, instruction(BRG_INSTRUCTION_LOAD_BATCH, g->p, 0, x.micro_batch, -1, -1));
        if (x.stage == g->stages - 1 && g->stages > 1)
            emit(g, rank, instruction(BRG_INSTRUCTION_LOAD_BATCH, g->p, x.stage, x.micro_batch, -1, -1));
    }
    emit(g, rank, instruction(x.kind, g->p, x.stage, x.micro_batch, -1, -1));
    run->current = x;
    run->state = RANK_COMPUTING;
    run->end_time = now + nominal_cost(x.kind);
}

/* A pass ended: its output goes to the next (forward) or previous (backward) stage, locally or by a
 * transfer the rank now waits to hand over. */
static void finish_pass(generator *g, int rank) {
    rank_run *run = &g->runs[rank];
    pass x = run->current;
    run->state = RANK_FREE;
    int j = x.micro_batch;
    if (x.kind == BRG_INSTRUCTION_FORWARD && x.stage < g->stages - 1) {
        int to = rank_of(g, x.stage + 1);
        if (to == rank) {
            g->activation_ready[(size_t)(x.stage + 1) * (size_t)g->m + (size_t)j] = 1;
            return;
        }
        run->send = instruction(BRG_INSTRUCTION_SEND_ACTIVATION, g->p, x.stage, j, to, x.stage);
        run->receive = instruction(BRG_INSTRUCTION_RECV_ACTIVATION, g->p, x.stage + 1, j, rank, x.stage);
        run->state = RANK_SENDING;
    } else if ((x.kind == BRG_INSTRUCTION_BACKWARD || x.kind == BRG_INSTRUCTION_BACKWARD_INPUT) && x.stage > 0) {
        int to = rank_of(g, x.stage - 1);
        if (to == rank) {
            g->gradient_ready[(size_t)(x.stage - 1) * (size_t)g->m + (size_t)j] = 1;
            return;
        }
        run->send = instruction(BRG_INSTRUCTION_SEND_GRAD, g->p, x.stage, j, to, x.stage - 1);
        run->receive = instruction(BRG_INSTRUCTION_RECV_GRAD, g->p, x.stage - 1, j, rank, x.stage - 1);
        run->state = RANK_SENDING;
    }
}

/* The pending transfer of `rank` meets its receiver: SEND and RECV go into the two streams. */
static void hand_over(generator *g, int rank) {
    rank_run *run = &g->runs[rank];
    emit(g, rank, run->send);
    emit(g, run->send.peer, run->receive);
    size_t at = (size_t)run->receive.stage * (size_t)g->m + (size_t)run->receive.micro_batch;
    if (run->receive.kind == BRG_INSTRUCTION_RECV_ACTIVATION)
        g->activation_ready[at] = 1;
    else
        g->gradient_ready[at] = 1;
    run->state = RANK_FREE;
}

/* Runs the pass orders with blocking rendezvous transfers in nominal time. A rank that is not computing
 * accepts any transfer offered to it (if it has a SEND of its own pending, the RECV may go in before it),
 * so a transfer waits at most for the receiver's current pass, and two ranks sending to each other cannot
 * block. The resulting interleaving is an execution of the streams under rendezvous semantics, hence they
 * are deadlock-free by construction; each RECV sits where its value is ready under nominal costs. */
static brg_status place_transfers(generator *g, brg_error *err) {
    int p = g->p;
    int64_t now = 0;
    for (;;) {
        for (int r = 0; r < p; r++)
            if (g->runs[r].state == RANK_COMPUTING && g->runs[r].end_time == now) finish_pass(g, r);
        /* Transfers to idle receivers first, so that a rank posts its own SEND before a RECV where it can
         * (better for a runtime that blocks on either); a transfer to a rank that is itself sending only
         * when nothing else moves (two ranks sending to each other). */
        for (int matched = 1; matched;) {
            matched = 0;
            for (int pass_kind = 0; pass_kind < 2 && !matched; pass_kind++) {
                enum rank_state wanted = pass_kind == 0 ? RANK_FREE : RANK_SENDING;
                for (int r = 0; r < p; r++) {
                    rank_run *run = &g->runs[r];
                    if (run->state != RANK_SENDING || g->runs[run->send.peer].state != wanted) continue;
                    hand_over(g, r);
                    matched = 1;
                    if (pass_kind == 1) break;
                }
            }
        }
        int done = 1;
        int64_t next_time = INT64_MAX;
        for (int r = 0; r < p; r++) {
            rank_run *run = &g->runs[r];
            if (run->state == RANK_FREE && run->next < run->passes->count &&
                pass_ready(g, &run->passes->items[run->next]))
                start_pass(g, r, now);
            if (run->state == RANK_COMPUTING && run->end_time < next_time) next_time = run->end_time;
            if (run->state != RANK_FREE || run->next < run->passes->count) done = 0;
        }
        if (done) return BRG_OK;
        if (next_time == INT64_MAX) {
            for (int r = 0; r < p; r++) {
                rank_run *run = &g->runs[r];
                if (run->next < run->passes->count) {
                    pass x = run->passes->items[run->next];
                    return brg__error_set(err, BRG_ERR_INTERNAL,
                                          "%s schedule stuck: rank %d waits to run %s stage %d micro-batch %d",
                                          brg_schedule_kind_name(g->schedule->options.kind), r,
                                          brg_instruction_kind_name(x.kind), x.stage, x.micro_batch);
                }
            }
            return brg__error_set(err, BRG_ERR_INTERNAL, "schedule generation stuck");
        }
        now = next_time;
    }
}

/* ---- the handle ------------------------------------------------------------------------------ */

static brg_status build(brg_schedule *s, brg_error *err) {
    const brg_schedule_options *o = &s->options;
    int p = o->stages, v = o->chunks, m = o->micro_batches;
    int split = o->kind == BRG_SCHEDULE_ZB_H1;
    int64_t passes_per_rank = (int64_t)v * m * (split ? 3 : 2);
    /* Per pass at most one load, one send and one receive; then all-reduce and step. */
    int64_t capacity = 4 * passes_per_rank + 2;
    brg_status status = BRG_OK;
    generator g = {p, v, m, p * v, s, NULL, NULL, NULL};
    pass_list *lists = brg__calloc((size_t)p, sizeof *lists);
    g.runs = brg__calloc((size_t)p, sizeof *g.runs);
    g.activation_ready = brg__calloc((size_t)g.stages * (size_t)m, 1);
    g.gradient_ready = brg__calloc((size_t)g.stages * (size_t)m, 1);
    if (!lists || !g.runs || !g.activation_ready || !g.gradient_ready) goto out_of_memory;
    for (int r = 0; r < p; r++) {
        lists[r].items = brg__malloc(sizeof(pass) * (size_t)passes_per_rank);
        s->streams[r] = brg__malloc(sizeof(brg_instruction) * (size_t)capacity);
        if (!lists[r].items || !s->streams[r]) goto out_of_memory;
        switch (o->kind) {
        case BRG_SCHEDULE_GPIPE: order_gpipe(&lists[r], r, m); break;
        case BRG_SCHEDULE_1F1B: order_1f1b(&lists[r], p, r, m, 0); break;
        case BRG_SCHEDULE_ZB_H1: order_1f1b(&lists[r], p, r, m, 1); break;
        case BRG_SCHEDULE_INTERLEAVED_1F1B: order_interleaved(&lists[r], p, v, r, m); break;
        default: break;
        }
        if (lists[r].count != passes_per_rank) {
            status = brg__error_set(err, BRG_ERR_INTERNAL, "%s: rank %d has %lld passes, expected %lld",
                                    kind_title(o->kind), r, (long long)lists[r].count, (long long)passes_per_rank);
            goto cleanup;
        }
        g.runs[r].passes = &lists[r];
    }
    BRG__CHECK_GOTO(status, place_transfers(&g, err), cleanup);
    for (int r = 0; r < p; r++) {
        if (o->data_parallel > 1) emit(&g, r, instruction(BRG_INSTRUCTION_ALLREDUCE_GRADS, p, -1, -1, -1, -1));
        emit(&g, r, instruction(BRG_INSTRUCTION_OPTIMIZER_STEP, p, -1, -1, -1, -1));
        brg_instruction *shrunk = brg__realloc(s->streams[r], sizeof(brg_instruction) * (size_t)s->lengths[r]);
        if (shrunk) s->streams[r] = shrunk;
    }
    goto cleanup;
out_of_memory:
    status = brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory building a %s schedule (%d x %d x %d)",
                            kind_title(o->kind), p, v, m);
cleanup:
    if (lists)
        for (int r = 0; r < p; r++) free(lists[r].items);
    free(lists);
    free(g.runs);
    free(g.activation_ready);
    free(g.gradient_ready);
    return status;
}

brg_status brg_schedule_create(const brg_schedule_options *options, brg_schedule **out, brg_error *err) {
    if (!out) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_schedule_create: out is NULL");
    *out = NULL;
    BRG__CHECK(brg_schedule_validate(options, err));
    brg_schedule *s = brg__calloc(1, sizeof *s);
    if (!s) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory creating a schedule");
    s->options = *options;
    s->ranks = options->stages;
    s->virtual_stages = options->stages * options->chunks;
    s->streams = brg__calloc((size_t)s->ranks, sizeof *s->streams);
    s->lengths = brg__calloc((size_t)s->ranks, sizeof *s->lengths);
    if (!s->streams || !s->lengths) {
        brg_schedule_destroy(s);
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory creating a schedule");
    }
    brg_status status = build(s, err);
    if (status != BRG_OK) {
        brg_schedule_destroy(s);
        return status;
    }
    *out = s;
    return BRG_OK;
}

void brg_schedule_destroy(brg_schedule *s) {
    if (!s) return;
    if (s->streams)
        for (int r = 0; r < s->ranks; r++) free(s->streams[r]);
    free(s->streams);
    free(s->lengths);
    free(s);
}

const char *brg_schedule_last_error(const brg_schedule *s) {
    return s ? s->last_error : "the schedule is NULL";
}

brg_status brg_schedule_get_options(const brg_schedule *s, brg_schedule_options *out) {
    if (!s || !out) return BRG_ERR_INVALID_ARGUMENT;
    *out = s->options;
    return BRG_OK;
}

int brg_schedule_rank_count(const brg_schedule *s) {
    return s ? s->ranks : 0;
}

int brg_schedule_virtual_stage_count(const brg_schedule *s) {
    return s ? s->virtual_stages : 0;
}

int brg_schedule_stage_rank(const brg_schedule *s, int stage) {
    if (!s || stage < 0 || stage >= s->virtual_stages) return -1;
    return stage % s->ranks;
}

int64_t brg_schedule_instruction_count(const brg_schedule *s, int rank) {
    if (!s || rank < 0 || rank >= s->ranks) return -1;
    return s->lengths[rank];
}

brg_status brg_schedule_instruction(const brg_schedule *s, int rank, int64_t index, brg_instruction *out) {
    if (!s || !out) return BRG_ERR_INVALID_ARGUMENT;
    if (rank < 0 || rank >= s->ranks || index < 0 || index >= s->lengths[rank]) return BRG_ERR_NOT_FOUND;
    *out = s->streams[rank][index];
    return BRG_OK;
}

const brg_instruction *brg_schedule_stream(const brg_schedule *s, int rank, int64_t *count) {
    if (count) *count = 0;
    if (!s || rank < 0 || rank >= s->ranks) return NULL;
    if (count) *count = s->lengths[rank];
    return s->streams[rank];
}

brg_status brg_schedule_get_view(const brg_schedule *s, brg_schedule_view *view) {
    if (!s || !view) return BRG_ERR_INVALID_ARGUMENT;
    view->ranks = s->ranks;
    view->chunks = s->options.chunks;
    view->micro_batches = s->options.micro_batches;
    view->stage_rank = NULL;
    view->streams = (const brg_instruction *const *)s->streams;
    view->lengths = s->lengths;
    return BRG_OK;
}

brg_status brg_schedule_check(brg_schedule *s) {
    if (!s) return BRG_ERR_INVALID_ARGUMENT;
    brg_schedule_view view;
    brg_schedule_get_view(s, &view);
    brg_schedule_check_result result;
    brg_status status = brg_schedule_check_streams(&view, &result);
    if (status != BRG_OK)
        brg__message_set(s->last_error, sizeof s->last_error, status, "%s", result.message);
    else
        s->last_error[0] = '\0';
    return status;
}
