/* Discrete-event simulation of instruction streams: asynchronous transfers that overlap compute, one
 * first-in-first-out link per ordered rank pair. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "schedule/schedule_internal.h"

struct brg_timeline {
    int ranks;
    int chunks;
    double makespan;
    int64_t *lengths;               /* [p] */
    brg_instruction **instructions; /* [p][lengths[r]] copies */
    double **start, **end;          /* [p][lengths[r]] */
    brg_timeline_rank *rank_info;   /* [p] */
};

/* ---- in-flight counts ------------------------------------------------------------------------ */

static void count_in_flight(const brg_instruction *stream, int64_t n, brg_in_flight *out) {
    int in_flight = 0, awaiting = 0;
    out->peak_in_flight = 0;
    out->peak_awaiting_backward = 0;
    for (int64_t i = 0; i < n; i++) {
        switch (stream[i].kind) {
        case BRG_INSTRUCTION_FORWARD: in_flight++, awaiting++; break;
        case BRG_INSTRUCTION_BACKWARD: in_flight--, awaiting--; break;
        case BRG_INSTRUCTION_BACKWARD_INPUT: awaiting--; break;
        case BRG_INSTRUCTION_BACKWARD_WEIGHT: in_flight--; break;
        default: break;
        }
        if (in_flight > out->peak_in_flight) out->peak_in_flight = in_flight;
        if (awaiting > out->peak_awaiting_backward) out->peak_awaiting_backward = awaiting;
    }
}

brg_status brg_schedule_in_flight(const brg_schedule_view *view, int rank, brg_in_flight *out) {
    if (!out) return BRG_ERR_INVALID_ARGUMENT;
    char message[BRG_ERROR_MESSAGE_MAX];
    brg__placement place;
    BRG__CHECK(brg__placement_build(view, &place, message, sizeof message));
    brg__placement_free(&place);
    if (rank < 0 || rank >= view->ranks) return BRG_ERR_NOT_FOUND;
    count_in_flight(view->streams[rank], view->lengths[rank], out);
    return BRG_OK;
}

/* ---- simulation ------------------------------------------------------------------------------ */

typedef struct transfer_link {
    int peer;
    double free_at;
} transfer_link;

typedef struct simulator {
    const brg_schedule_view *view;
    const brg_schedule_costs *costs;
    brg__placement place;
    int stages, m;
    brg_timeline *t;
    brg_error *err;
    int64_t *pc;
    double *clock;
    transfer_link **links; /* [p] up to links_count[r] outgoing links */
    int *link_count;
    /* [S·m]; NAN until known */
    double *forward_end, *input_grad_end, *activation_arrival, *grad_arrival;
    unsigned char *activation_posted, *grad_posted; /* a RECV for it was posted */
} simulator;

#define AT(x, s, j) ((size_t)(s) * (size_t)(x)->m + (size_t)(j))

static double cost_or_zero(const double *table, int index) {
    return table ? table[index] : 0.0;
}

static double backward_cost(const brg_schedule_costs *c, int stage) {
    if (c->backward) return c->backward[stage];
    return c->backward_input[stage] + c->backward_weight[stage];
}

static brg_status check_table(const double *table, int n, const char *name, int required, brg_error *err) {
    if (!table) {
        if (required) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "costs: `%s` is required", name);
        return BRG_OK;
    }
    for (int i = 0; i < n; i++)
        if (!isfinite(table[i]) || table[i] < 0)
            return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "costs: %s[%d] = %g is not a finite value >= 0", name,
                                  i, table[i]);
    return BRG_OK;
}

static brg_status check_costs(const brg_schedule_view *view, const brg_schedule_costs *c, int stages, brg_error *err) {
    int fused = 0, split = 0;
    for (int r = 0; r < view->ranks; r++)
        for (int64_t i = 0; i < view->lengths[r]; i++) {
            brg_instruction_kind k = view->streams[r][i].kind;
            fused |= k == BRG_INSTRUCTION_BACKWARD;
            split |= k == BRG_INSTRUCTION_BACKWARD_INPUT || k == BRG_INSTRUCTION_BACKWARD_WEIGHT;
        }
    int need_split = split || (fused && !c->backward);
    BRG__CHECK(check_table(c->forward, stages, "forward", 1, err));
    BRG__CHECK(check_table(c->backward, stages, "backward", 0, err));
    BRG__CHECK(check_table(c->backward_input, stages, "backward_input", need_split, err));
    BRG__CHECK(check_table(c->backward_weight, stages, "backward_weight", need_split, err));
    BRG__CHECK(check_table(c->load_batch, stages, "load_batch", 0, err));
    BRG__CHECK(check_table(c->transfer_activation, stages - 1, "transfer_activation", 0, err));
    BRG__CHECK(check_table(c->transfer_grad, stages - 1, "transfer_grad", 0, err));
    BRG__CHECK(check_table(c->allreduce, view->ranks, "allreduce", 0, err));
    BRG__CHECK(check_table(c->optimizer, view->ranks, "optimizer", 0, err));
    return BRG_OK;
}

static brg_status malformed(simulator *x, int rank, int64_t index, const char *why) {
    char what[128];
    brg_instruction_format(&x->view->streams[rank][index], what, sizeof what);
    return brg__error_set(x->err, BRG_ERR_INVALID_ARGUMENT,
                          "simulation: rank %d, instruction %lld (%s): %s; check the streams with "
                          "brg_schedule_check_streams",
                          rank, (long long)index, what, why);
}

/* The link rank -> peer, added on first use. */
static transfer_link *link_to(simulator *x, int rank, int peer) {
    for (int i = 0; i < x->link_count[rank]; i++)
        if (x->links[rank][i].peer == peer) return &x->links[rank][i];
    transfer_link *grown = brg__realloc(x->links[rank], sizeof(transfer_link) * (size_t)(x->link_count[rank] + 1));
    if (!grown) return NULL;
    x->links[rank] = grown;
    grown[x->link_count[rank]] = (transfer_link){peer, 0.0};
    return &grown[x->link_count[rank]++];
}

/* The time the input of a pass is available on its rank: *ready; *blocked when a transfer it needs has
 * not been posted yet. */
static brg_status pass_inputs(simulator *x, int rank, int64_t index, const brg_instruction *in, double *ready,
                              int *blocked) {
    int s = in->stage, j = in->micro_batch;
    *ready = 0.0;
    *blocked = 0;
    if (in->kind == BRG_INSTRUCTION_FORWARD) {
        if (s == 0) return BRG_OK;
        if (x->place.stage_rank[s - 1] == rank) {
            *ready = x->forward_end[AT(x, s - 1, j)];
            return isnan(*ready) ? malformed(x, rank, index, "runs before the forward producing its input") : BRG_OK;
        }
        if (!x->activation_posted[AT(x, s, j)]) return malformed(x, rank, index, "no RECV_ACTIVATION before it");
        *ready = x->activation_arrival[AT(x, s, j)];
        *blocked = isnan(*ready);
        return BRG_OK;
    }
    if (in->kind == BRG_INSTRUCTION_BACKWARD_WEIGHT) {
        *ready = x->input_grad_end[AT(x, s, j)];
        return isnan(*ready) ? malformed(x, rank, index, "runs before its BACKWARD_INPUT") : BRG_OK;
    }
    /* BACKWARD, BACKWARD_INPUT */
    if (isnan(x->forward_end[AT(x, s, j)])) return malformed(x, rank, index, "runs before its FORWARD");
    if (s == x->stages - 1) return BRG_OK;
    if (x->place.stage_rank[s + 1] == rank) {
        *ready = x->input_grad_end[AT(x, s + 1, j)];
        return isnan(*ready) ? malformed(x, rank, index, "runs before the backward producing its gradient") : BRG_OK;
    }
    if (!x->grad_posted[AT(x, s, j)]) return malformed(x, rank, index, "no RECV_GRAD before it");
    *ready = x->grad_arrival[AT(x, s, j)];
    *blocked = isnan(*ready);
    return BRG_OK;
}

static double compute_cost(const simulator *x, int rank, const brg_instruction *in) {
    const brg_schedule_costs *c = x->costs;
    switch (in->kind) {
    case BRG_INSTRUCTION_FORWARD: return c->forward[in->stage];
    case BRG_INSTRUCTION_BACKWARD: return backward_cost(c, in->stage);
    case BRG_INSTRUCTION_BACKWARD_INPUT: return c->backward_input[in->stage];
    case BRG_INSTRUCTION_BACKWARD_WEIGHT: return c->backward_weight[in->stage];
    case BRG_INSTRUCTION_LOAD_BATCH: return cost_or_zero(c->load_batch, in->stage);
    case BRG_INSTRUCTION_ALLREDUCE_GRADS: return cost_or_zero(c->allreduce, rank);
    case BRG_INSTRUCTION_OPTIMIZER_STEP: return cost_or_zero(c->optimizer, rank);
    default: return 0.0;
    }
}

static brg_status validate_fields(simulator *x, int rank, int64_t index, const brg_instruction *in) {
    if ((int)in->kind < 0 || in->kind >= BRG_INSTRUCTION_KIND_COUNT)
        return malformed(x, rank, index, "unknown instruction kind");
    if (in->kind == BRG_INSTRUCTION_ALLREDUCE_GRADS || in->kind == BRG_INSTRUCTION_OPTIMIZER_STEP) return BRG_OK;
    if (in->stage < 0 || in->stage >= x->stages || x->place.stage_rank[in->stage] != rank)
        return malformed(x, rank, index, "stage out of range or not on this rank");
    if (in->micro_batch < 0 || in->micro_batch >= x->m) return malformed(x, rank, index, "micro-batch out of range");
    if (!brg__instruction_is_transfer(in->kind)) return BRG_OK;
    int toward_next = in->kind == BRG_INSTRUCTION_SEND_ACTIVATION || in->kind == BRG_INSTRUCTION_RECV_GRAD;
    int other = toward_next ? in->stage + 1 : in->stage - 1;
    if (other < 0 || other >= x->stages || x->place.stage_rank[other] != in->peer || in->peer == rank)
        return malformed(x, rank, index, "transfer to a stage or rank that does not match the placement");
    return BRG_OK;
}

/* Runs `rank` until it finishes or waits for a transfer not yet posted; the receiver of each SEND goes
 * back to the queue. */
static brg_status advance(simulator *x, int rank, brg__rank_queue *queue) {
    const brg_schedule_view *v = x->view;
    brg_timeline *t = x->t;
    while (x->pc[rank] < v->lengths[rank]) {
        int64_t i = x->pc[rank];
        const brg_instruction *in = &v->streams[rank][i];
        BRG__CHECK(validate_fields(x, rank, i, in));
        int s = in->stage, j = in->micro_batch;
        double now = x->clock[rank];
        if (in->kind == BRG_INSTRUCTION_SEND_ACTIVATION || in->kind == BRG_INSTRUCTION_SEND_GRAD) {
            int activation = in->kind == BRG_INSTRUCTION_SEND_ACTIVATION;
            double produced = activation ? x->forward_end[AT(x, s, j)] : x->input_grad_end[AT(x, s, j)];
            if (isnan(produced)) return malformed(x, rank, i, "sends before the pass producing the value");
            transfer_link *l = link_to(x, rank, in->peer);
            if (!l) return brg__error_set(x->err, BRG_ERR_OUT_OF_MEMORY, "simulation: out of memory");
            double begin = now > l->free_at ? now : l->free_at;
            double duration = activation ? cost_or_zero(x->costs->transfer_activation, s)
                                         : cost_or_zero(x->costs->transfer_grad ? x->costs->transfer_grad
                                                                                : x->costs->transfer_activation,
                                                        s - 1);
            l->free_at = begin + duration;
            if (activation)
                x->activation_arrival[AT(x, s + 1, j)] = l->free_at;
            else
                x->grad_arrival[AT(x, s - 1, j)] = l->free_at;
            t->start[rank][i] = now;
            t->end[rank][i] = l->free_at;
            brg__rank_queue_push(queue, in->peer);
        } else if (in->kind == BRG_INSTRUCTION_RECV_ACTIVATION || in->kind == BRG_INSTRUCTION_RECV_GRAD) {
            unsigned char *posted = in->kind == BRG_INSTRUCTION_RECV_ACTIVATION ? &x->activation_posted[AT(x, s, j)]
                                                                                : &x->grad_posted[AT(x, s, j)];
            if (*posted) return malformed(x, rank, i, "received twice");
            *posted = 1;
            t->start[rank][i] = now;
            t->end[rank][i] = NAN; /* the arrival, filled in at the end */
        } else {
            double ready = 0.0;
            int blocked = 0;
            if (brg__instruction_is_pass(in->kind)) BRG__CHECK(pass_inputs(x, rank, i, in, &ready, &blocked));
            if (blocked) return BRG_OK;
            double begin = now > ready ? now : ready;
            double duration = compute_cost(x, rank, in);
            t->start[rank][i] = begin;
            t->end[rank][i] = begin + duration;
            x->clock[rank] = begin + duration;
            t->rank_info[rank].busy += duration;
            if (in->kind == BRG_INSTRUCTION_FORWARD) x->forward_end[AT(x, s, j)] = begin + duration;
            if (in->kind == BRG_INSTRUCTION_BACKWARD || in->kind == BRG_INSTRUCTION_BACKWARD_INPUT)
                x->input_grad_end[AT(x, s, j)] = begin + duration;
        }
        x->pc[rank]++;
    }
    return BRG_OK;
}

static brg_status run(simulator *x) {
    const brg_schedule_view *v = x->view;
    brg__rank_queue queue;
    if (brg__rank_queue_init(&queue, v->ranks) != BRG_OK)
        return brg__error_set(x->err, BRG_ERR_OUT_OF_MEMORY, "simulation: out of memory");
    brg_status status = BRG_OK;
    for (int r = brg__rank_queue_pop(&queue); r >= 0 && status == BRG_OK; r = brg__rank_queue_pop(&queue))
        status = advance(x, r, &queue);
    brg__rank_queue_free(&queue);
    if (status != BRG_OK) return status;
    for (int r = 0; r < v->ranks; r++)
        if (x->pc[r] < v->lengths[r]) return malformed(x, r, x->pc[r], "waits for a value that is never sent");
    return BRG_OK;
}

/* RECV ends, makespan, per-rank figures. */
static void finish(simulator *x) {
    brg_timeline *t = x->t;
    const brg_schedule_view *v = x->view;
    double makespan = 0.0;
    for (int r = 0; r < v->ranks; r++) {
        double last = 0.0;
        for (int64_t i = 0; i < v->lengths[r]; i++) {
            const brg_instruction *in = &v->streams[r][i];
            if (in->kind == BRG_INSTRUCTION_RECV_ACTIVATION)
                t->end[r][i] = x->activation_arrival[AT(x, in->stage, in->micro_batch)];
            else if (in->kind == BRG_INSTRUCTION_RECV_GRAD)
                t->end[r][i] = x->grad_arrival[AT(x, in->stage, in->micro_batch)];
            if (t->end[r][i] > last) last = t->end[r][i];
        }
        t->rank_info[r].finish = last;
        if (last > makespan) makespan = last;
    }
    t->makespan = makespan;
    for (int r = 0; r < v->ranks; r++) {
        brg_timeline_rank *info = &t->rank_info[r];
        info->instruction_count = v->lengths[r];
        info->idle = makespan - info->busy;
        brg_in_flight f;
        count_in_flight(v->streams[r], v->lengths[r], &f);
        info->peak_in_flight = f.peak_in_flight;
        info->peak_awaiting_backward = f.peak_awaiting_backward;
    }
}

static void simulator_free(simulator *x) {
    brg__placement_free(&x->place);
    free(x->pc);
    free(x->clock);
    if (x->links)
        for (int r = 0; r < x->view->ranks; r++) free(x->links[r]);
    free(x->links);
    free(x->link_count);
    free(x->forward_end);
    free(x->input_grad_end);
    free(x->activation_arrival);
    free(x->grad_arrival);
    free(x->activation_posted);
    free(x->grad_posted);
}

static double *nan_array(size_t n) {
    double *a = brg__malloc(sizeof(double) * (n ? n : 1));
    if (a)
        for (size_t i = 0; i < n; i++) a[i] = NAN;
    return a;
}

static brg_timeline *timeline_new(const brg_schedule_view *v) {
    brg_timeline *t = brg__calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ranks = v->ranks;
    t->chunks = v->chunks;
    t->lengths = brg__calloc((size_t)v->ranks, sizeof *t->lengths);
    t->instructions = brg__calloc((size_t)v->ranks, sizeof *t->instructions);
    t->start = brg__calloc((size_t)v->ranks, sizeof *t->start);
    t->end = brg__calloc((size_t)v->ranks, sizeof *t->end);
    t->rank_info = brg__calloc((size_t)v->ranks, sizeof *t->rank_info);
    if (!t->lengths || !t->instructions || !t->start || !t->end || !t->rank_info) goto fail;
    for (int r = 0; r < v->ranks; r++) {
        size_t n = (size_t)v->lengths[r];
        t->lengths[r] = v->lengths[r];
        t->instructions[r] = brg__malloc(sizeof(brg_instruction) * (n ? n : 1));
        t->start[r] = brg__calloc(n ? n : 1, sizeof(double));
        t->end[r] = brg__calloc(n ? n : 1, sizeof(double));
        if (!t->instructions[r] || !t->start[r] || !t->end[r]) goto fail;
        if (n) memcpy(t->instructions[r], v->streams[r], sizeof(brg_instruction) * n);
    }
    return t;
fail:
    brg_timeline_destroy(t);
    return NULL;
}

brg_status brg_schedule_simulate(const brg_schedule_view *view, const brg_schedule_costs *costs, brg_timeline **out,
                                 brg_error *err) {
    if (!out) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_schedule_simulate: out is NULL");
    *out = NULL;
    if (!costs) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_schedule_simulate: costs are NULL");
    simulator x = {0};
    x.view = view;
    x.costs = costs;
    x.err = err;
    char message[BRG_ERROR_MESSAGE_MAX];
    brg_status status = brg__placement_build(view, &x.place, message, sizeof message);
    if (status != BRG_OK) return brg__error_set(err, status, "simulation: %s", message);
    x.stages = x.place.stages;
    x.m = x.place.micro_batches;
    status = check_costs(view, costs, x.stages, err);
    if (status != BRG_OK) {
        simulator_free(&x);
        return status;
    }
    size_t p = (size_t)view->ranks, pairs = (size_t)x.stages * (size_t)x.m;
    x.pc = brg__calloc(p, sizeof *x.pc);
    x.clock = brg__calloc(p, sizeof *x.clock);
    x.links = brg__calloc(p, sizeof *x.links);
    x.link_count = brg__calloc(p, sizeof *x.link_count);
    x.forward_end = nan_array(pairs);
    x.input_grad_end = nan_array(pairs);
    x.activation_arrival = nan_array(pairs);
    x.grad_arrival = nan_array(pairs);
    x.activation_posted = brg__calloc(pairs, 1);
    x.grad_posted = brg__calloc(pairs, 1);
    x.t = timeline_new(view);
    if (!x.pc || !x.clock || !x.links || !x.link_count || !x.forward_end || !x.input_grad_end ||
        !x.activation_arrival || !x.grad_arrival || !x.activation_posted || !x.grad_posted || !x.t) {
        status = brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "simulation: out of memory");
        goto cleanup;
    }
    BRG__CHECK_GOTO(status, run(&x), cleanup);
    finish(&x);
    *out = x.t;
    x.t = NULL;
cleanup:
    brg_timeline_destroy(x.t);
    simulator_free(&x);
    return status;
}

/* ---- timeline -------------------------------------------------------------------------------- */

void brg_timeline_destroy(brg_timeline *t) {
    if (!t) return;
    for (int r = 0; r < t->ranks; r++) {
        if (t->instructions) free(t->instructions[r]);
        if (t->start) free(t->start[r]);
        if (t->end) free(t->end[r]);
    }
    free(t->lengths);
    free(t->instructions);
    free(t->start);
    free(t->end);
    free(t->rank_info);
    free(t);
}

brg_status brg_timeline_get_summary(const brg_timeline *t, brg_timeline_summary *out) {
    if (!t || !out) return BRG_ERR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    out->ranks = t->ranks;
    out->makespan = t->makespan;
    for (int r = 0; r < t->ranks; r++) {
        out->busy += t->rank_info[r].busy;
        out->idle += t->rank_info[r].idle;
    }
    double total = t->makespan * t->ranks;
    out->bubble_fraction = total > 0 ? out->idle / total : 0.0;
    out->bubble_ratio = out->busy > 0 ? out->idle / out->busy : 0.0;
    return BRG_OK;
}

brg_status brg_timeline_get_rank(const brg_timeline *t, int rank, brg_timeline_rank *out) {
    if (!t || !out) return BRG_ERR_INVALID_ARGUMENT;
    if (rank < 0 || rank >= t->ranks) return BRG_ERR_NOT_FOUND;
    *out = t->rank_info[rank];
    return BRG_OK;
}

brg_status brg_timeline_instruction(const brg_timeline *t, int rank, int64_t index, double *start, double *end) {
    if (!t) return BRG_ERR_INVALID_ARGUMENT;
    if (rank < 0 || rank >= t->ranks || index < 0 || index >= t->lengths[rank]) return BRG_ERR_NOT_FOUND;
    if (start) *start = t->start[rank][index];
    if (end) *end = t->end[rank][index];
    return BRG_OK;
}

brg_status brg_timeline_events(const brg_timeline *t, brg_trace_event *events, int64_t *count) {
    if (!t || !count || *count < 0 || (!events && *count > 0)) return BRG_ERR_INVALID_ARGUMENT;
    int64_t capacity = *count, n = 0;
    for (int r = 0; r < t->ranks; r++) {
        for (int64_t i = 0; i < t->lengths[r]; i++) {
            const brg_instruction *in = &t->instructions[r][i];
            if (in->kind == BRG_INSTRUCTION_RECV_ACTIVATION || in->kind == BRG_INSTRUCTION_RECV_GRAD) continue;
            if (n < capacity) {
                brg_trace_event *e = &events[n];
                memset(e, 0, sizeof *e);
                e->rank = r;
                e->track = brg__instruction_is_transfer(in->kind) ? BRG_TRACE_TRANSFER : BRG_TRACE_COMPUTE;
                e->kind = in->kind;
                e->micro_batch = in->micro_batch;
                e->stage = in->stage;
                e->start = t->start[r][i];
                e->duration = t->end[r][i] - t->start[r][i];
                const char *label = brg_instruction_kind_label(in->kind);
                if (in->micro_batch < 0)
                    snprintf(e->name, sizeof e->name, "%s", label);
                else if (t->chunks > 1)
                    snprintf(e->name, sizeof e->name, "%s%d c%d", label, in->micro_batch, in->chunk);
                else
                    snprintf(e->name, sizeof e->name, "%s%d", label, in->micro_batch);
            }
            n++;
        }
    }
    *count = n;
    return BRG_OK;
}

brg_status brg_timeline_write_trace(const brg_timeline *t, const char *path, const char *label, brg_error *err) {
    int64_t n = 0;
    if (!t) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_timeline_write_trace: timeline is NULL");
    BRG__CHECK(brg_timeline_events(t, NULL, &n));
    brg_trace_event *events = brg__malloc(sizeof *events * (size_t)(n ? n : 1));
    if (!events) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory writing a trace");
    brg_status status = brg_timeline_events(t, events, &n);
    if (status == BRG_OK) status = brg_trace_write(path, events, n, label, err);
    free(events);
    return status;
}
