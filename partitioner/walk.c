/* Schedules the search scores, built once per (kind, p, v, m, d), and what each rank holds at every
 * instant of its stream.
 *
 * The walk follows the runtime (engine/runtime/trainer.c and stage.c) event by event: a micro-batch's
 * received activations and loaded inputs are allocated when its receive is posted or its batch loaded; its
 * forward allocates every output and internal of the stage's ops; once its activations are sent (or at
 * once on the last stage) the recompute policy drops its share; posting the receive of its gradient
 * allocates the activation gradients; the backward recomputes what was dropped; and everything is freed
 * when both backward parts are done and its input gradients are sent. Each instant is a vector of counts
 * per chunk (received, full, kept, gradients), so the peak for any stage sizes is a maximum of dot
 * products over the few instants that no other instant dominates. */
#include <stdlib.h>
#include <string.h>

#include "partitioner_internal.h"

enum { LOCAL_NONE = 0, LOCAL_FULL = 1, LOCAL_KEPT = 2 };

typedef struct pair_state {
    unsigned char acquired, local, grads, forward_done, sent, backward_done, grads_sent;
} pair_state;

typedef struct walker {
    int rank, ranks, stages, chunks, micro_batches;
    pair_state *state; /* [chunks][micro_batches] */
    int *counts;       /* [4 chunks] now */
    int *points;
    int64_t *sums;     /* [point_capacity] each point's counts added: a point dominates another only with a larger sum */
    int point_count, point_capacity;
    /* Every instant recorded before, to skip the repeats of a steady state at once: each is dominated by
     * (or equal to) a point still kept, since a point is dropped only for one that dominates it. */
    int *seen;           /* [seen_count][4 chunks] */
    int seen_count, seen_capacity;
    int *slots;          /* open addressing on the counts' hash: index + 1 into seen, 0 empty */
    int slot_count;      /* a power of two */
} walker;

static uint64_t counts_hash(const int *counts, int n) {
    uint64_t h = 0;
    for (int k = 0; k < n; k++) h = (h ^ (uint64_t)(unsigned)counts[k]) * UINT64_C(0x9e3779b97f4a7c15);
    return h ^ (h >> 29);
}

/* Whether these counts were recorded before; otherwise remembers them. -1: out of memory. */
static int seen_before(walker *w, int n) {
    uint64_t h = counts_hash(w->counts, n);
    if (w->slot_count) {
        size_t mask = (size_t)w->slot_count - 1;
        for (size_t i = (size_t)h & mask; w->slots[i]; i = (i + 1) & mask)
            if (memcmp(&w->seen[(size_t)(w->slots[i] - 1) * (size_t)n], w->counts, sizeof(int) * (size_t)n) == 0) return 1;
    }
    if (w->seen_count == w->seen_capacity) {
        int capacity = w->seen_capacity ? 2 * w->seen_capacity : 64;
        int *grown = brg__realloc(w->seen, sizeof(int) * (size_t)capacity * (size_t)n);
        if (!grown) return -1;
        w->seen = grown;
        w->seen_capacity = capacity;
    }
    if (2 * (w->seen_count + 1) > w->slot_count) {
        int slots = w->slot_count ? 2 * w->slot_count : 128;
        int *grown = brg__calloc((size_t)slots, sizeof *grown);
        if (!grown) return -1;
        free(w->slots);
        w->slots = grown;
        w->slot_count = slots;
        for (int k = 0; k < w->seen_count; k++) {
            size_t i = (size_t)counts_hash(&w->seen[(size_t)k * (size_t)n], n) & ((size_t)slots - 1);
            while (w->slots[i]) i = (i + 1) & ((size_t)slots - 1);
            w->slots[i] = k + 1;
        }
    }
    memcpy(&w->seen[(size_t)w->seen_count * (size_t)n], w->counts, sizeof(int) * (size_t)n);
    size_t i = (size_t)h & ((size_t)w->slot_count - 1);
    while (w->slots[i]) i = (i + 1) & ((size_t)w->slot_count - 1);
    w->slots[i] = ++w->seen_count;
    return 0;
}

static pair_state *at(walker *w, int stage, int mb) {
    return &w->state[(size_t)(stage / w->ranks) * (size_t)w->micro_batches + (size_t)mb];
}

static int remote_next(const walker *w, int s) { return s + 1 < w->stages && (s + 1) % w->ranks != w->rank; }
static int remote_prev(const walker *w, int s) { return s > 0 && (s - 1) % w->ranks != w->rank; }

static void count(walker *w, int stage, int slot, int delta) { w->counts[4 * (stage / w->ranks) + slot] += delta; }

static void set_local(walker *w, int s, pair_state *p, int local) {
    if (p->local == local) return;
    if (p->local == LOCAL_FULL) count(w, s, 1, -1);
    if (p->local == LOCAL_KEPT) count(w, s, 2, -1);
    if (local == LOCAL_FULL) count(w, s, 1, 1);
    if (local == LOCAL_KEPT) count(w, s, 2, 1);
    p->local = (unsigned char)local;
}

static void acquire(walker *w, int s, int mb) {
    pair_state *p = at(w, s, mb);
    if (!p->acquired) count(w, s, 0, 1);
    p->acquired = 1;
}

static void acquire_grads(walker *w, int s, int mb) {
    pair_state *p = at(w, s, mb);
    if (!p->grads) count(w, s, 3, 1);
    p->grads = 1;
}

static void maybe_drop(walker *w, int s, int mb) {
    pair_state *p = at(w, s, mb);
    if (p->forward_done && (p->sent || !remote_next(w, s)) && p->local == LOCAL_FULL) set_local(w, s, p, LOCAL_KEPT);
}

static void maybe_release(walker *w, int s, int mb) {
    pair_state *p = at(w, s, mb);
    if (!p->acquired || !p->backward_done || !(p->grads_sent || !remote_prev(w, s))) return;
    count(w, s, 0, -1);
    if (p->grads) count(w, s, 3, -1);
    set_local(w, s, p, LOCAL_NONE);
    p->acquired = p->grads = 0;
}

/* Records the counts now, unless an earlier instant dominates them; drops the ones they dominate. */
static int record(walker *w) {
    int n = 4 * w->chunks;
    int repeat = seen_before(w, n);
    if (repeat) return repeat > 0;
    int64_t sum = 0;
    for (int k = 0; k < n; k++) sum += w->counts[k];
    /* Newest first: the instant just recorded is the likeliest to dominate this one. */
    for (int i = w->point_count - 1; i >= 0; i--) {
        if (w->sums[i] < sum) continue;
        const int *q = &w->points[(size_t)i * (size_t)n];
        int dominated = 1;
        for (int k = 0; k < n && dominated; k++) dominated = q[k] >= w->counts[k];
        if (dominated) return 1;
    }
    int kept = 0;
    for (int i = 0; i < w->point_count; i++) {
        const int *q = &w->points[(size_t)i * (size_t)n];
        int dominates = w->sums[i] <= sum;
        for (int k = 0; k < n && dominates; k++) dominates = w->counts[k] >= q[k];
        if (!dominates) {
            if (kept != i) {
                memmove(&w->points[(size_t)kept * (size_t)n], q, sizeof(int) * (size_t)n);
                w->sums[kept] = w->sums[i];
            }
            kept++;
        }
    }
    w->point_count = kept;
    if (w->point_count == w->point_capacity) {
        int capacity = w->point_capacity ? 2 * w->point_capacity : 8;
        int *grown = brg__realloc(w->points, sizeof(int) * (size_t)capacity * (size_t)n);
        if (!grown) return 0;
        w->points = grown;
        int64_t *grown_sums = brg__realloc(w->sums, sizeof(int64_t) * (size_t)capacity);
        if (!grown_sums) return 0;
        w->sums = grown_sums;
        w->point_capacity = capacity;
    }
    w->sums[w->point_count] = sum;
    memcpy(&w->points[(size_t)w->point_count++ * (size_t)n], w->counts, sizeof(int) * (size_t)n);
    return 1;
}

static int step(walker *w, const brg_instruction *in) {
    int s = in->stage, j = in->micro_batch;
    switch (in->kind) {
    case BRG_INSTRUCTION_LOAD_BATCH:
    case BRG_INSTRUCTION_RECV_ACTIVATION:
        acquire(w, s, j);
        return record(w);
    case BRG_INSTRUCTION_RECV_GRAD:
        acquire_grads(w, s, j);
        return record(w);
    case BRG_INSTRUCTION_FORWARD: {
        acquire(w, s, j);
        pair_state *p = at(w, s, j);
        set_local(w, s, p, LOCAL_FULL);
        if (s + 1 < w->stages && !remote_next(w, s)) acquire(w, s + 1, j);
        if (!record(w)) return 0;
        p->forward_done = 1;
        maybe_drop(w, s, j);
        return 1;
    }
    case BRG_INSTRUCTION_SEND_ACTIVATION:
        at(w, s, j)->sent = 1;
        maybe_drop(w, s, j);
        return 1;
    case BRG_INSTRUCTION_BACKWARD:
    case BRG_INSTRUCTION_BACKWARD_INPUT:
    case BRG_INSTRUCTION_BACKWARD_WEIGHT: {
        pair_state *p = at(w, s, j);
        if (p->local == LOCAL_KEPT) set_local(w, s, p, LOCAL_FULL);
        acquire_grads(w, s, j);
        if (in->kind != BRG_INSTRUCTION_BACKWARD_WEIGHT && s > 0 && !remote_prev(w, s)) acquire_grads(w, s - 1, j);
        if (!record(w)) return 0;
        if (in->kind != BRG_INSTRUCTION_BACKWARD_INPUT) {
            p->backward_done = 1;
            maybe_release(w, s, j);
        }
        return 1;
    }
    case BRG_INSTRUCTION_SEND_GRAD:
        at(w, s, j)->grads_sent = 1;
        maybe_release(w, s, j);
        return 1;
    default:
        return 1;
    }
}

brg_status brg__memory_walk_build(const brg_schedule *s, int rank, brg__memory_walk *out) {
    memset(out, 0, sizeof *out);
    brg_schedule_options o;
    BRG__CHECK(brg_schedule_get_options(s, &o));
    walker w = {0};
    w.rank = rank;
    w.ranks = o.stages;
    w.chunks = o.chunks;
    w.stages = o.stages * o.chunks;
    w.micro_batches = o.micro_batches;
    w.state = brg__calloc((size_t)o.chunks * (size_t)o.micro_batches, sizeof *w.state);
    w.counts = brg__calloc((size_t)4 * (size_t)o.chunks, sizeof *w.counts);
    int ok = w.state && w.counts;
    int64_t n = 0;
    const brg_instruction *stream = brg_schedule_stream(s, rank, &n);
    for (int64_t i = 0; ok && i < n; i++) ok = step(&w, &stream[i]);
    free(w.state);
    free(w.counts);
    free(w.seen);
    free(w.slots);
    free(w.sums);
    if (!ok) {
        free(w.points);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    out->chunks = o.chunks;
    out->point_count = w.point_count;
    out->points = w.points;
    /* Each chunk's own instants (the others' counts left out), none dominated: the cut search sizes one
     * chunk at a time, and these are far fewer than the rank's. */
    out->chunk_first = brg__calloc((size_t)o.chunks + 1, sizeof *out->chunk_first);
    out->chunk_points = brg__malloc(sizeof(int) * 4 * (size_t)(w.point_count ? w.point_count : 1) * (size_t)o.chunks);
    if (!out->chunk_first || !out->chunk_points) {
        brg__memory_walk_free(out);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    int kept = 0;
    for (int c = 0; c < o.chunks; c++) {
        out->chunk_first[c] = kept;
        for (int i = 0; i < w.point_count; i++) {
            const int *q = &w.points[(size_t)i * 4 * (size_t)o.chunks + 4 * (size_t)c];
            int dominated = 0;
            for (int j = out->chunk_first[c]; j < kept && !dominated; j++) {
                const int *k = &out->chunk_points[4 * (size_t)j];
                dominated = k[0] >= q[0] && k[1] >= q[1] && k[2] >= q[2] && k[3] >= q[3];
            }
            if (dominated) continue;
            /* Drop the ones this one dominates. */
            int keep = out->chunk_first[c];
            for (int j = out->chunk_first[c]; j < kept; j++) {
                const int *k = &out->chunk_points[4 * (size_t)j];
                if (q[0] >= k[0] && q[1] >= k[1] && q[2] >= k[2] && q[3] >= k[3]) continue;
                if (keep != j) memmove(&out->chunk_points[4 * (size_t)keep], k, sizeof(int) * 4);
                keep++;
            }
            kept = keep;
            memcpy(&out->chunk_points[4 * (size_t)kept++], q, sizeof(int) * 4);
        }
    }
    out->chunk_first[o.chunks] = kept;
    return BRG_OK;
}

void brg__memory_walk_free(brg__memory_walk *w) {
    if (!w) return;
    free(w->points);
    free(w->chunk_first);
    free(w->chunk_points);
    w->points = NULL;
    w->chunk_first = NULL;
    w->chunk_points = NULL;
    w->point_count = 0;
}

int64_t brg__memory_walk_peak_chunk(const brg__memory_walk *w, int chunk, const brg__stage_memory *sm) {
    int64_t peak = 0;
    for (int i = w->chunk_first[chunk]; i < w->chunk_first[chunk + 1]; i++) {
        const int *q = &w->chunk_points[4 * (size_t)i];
        int64_t bytes = q[0] * sm->receive + q[1] * sm->full + q[2] * sm->kept + q[3] * sm->grads;
        if (bytes > peak) peak = bytes;
    }
    return peak;
}

int64_t brg__memory_walk_peak(const brg__memory_walk *w, const brg__stage_memory *chunks) {
    int64_t peak = 0;
    for (int i = 0; i < w->point_count; i++) {
        const int *q = &w->points[(size_t)i * 4 * (size_t)w->chunks];
        int64_t bytes = 0;
        for (int c = 0; c < w->chunks; c++) {
            const brg__stage_memory *sm = &chunks[c];
            bytes += q[4 * c] * sm->receive + q[4 * c + 1] * sm->full + q[4 * c + 2] * sm->kept + q[4 * c + 3] * sm->grads;
        }
        if (bytes > peak) peak = bytes;
    }
    return peak;
}

/* ---- the cache ---------------------------------------------------------------------------------- */

struct brg__schedule_cache {
    brg__schedule_entry **entries;
    int count, capacity;
};

brg_status brg__schedule_cache_create(brg__schedule_cache **out) {
    *out = brg__calloc(1, sizeof **out);
    return *out ? BRG_OK : BRG_ERR_OUT_OF_MEMORY;
}

static void entry_free(brg__schedule_entry *e) {
    if (!e) return;
    for (int r = 0; e->walks && r < e->stages; r++) brg__memory_walk_free(&e->walks[r]);
    free(e->walks);
    free(e->peak_in_flight);
    brg_schedule_destroy(e->schedule);
    free(e);
}

void brg__schedule_cache_destroy(brg__schedule_cache *c) {
    if (!c) return;
    for (int i = 0; i < c->count; i++) entry_free(c->entries[i]);
    free(c->entries);
    free(c);
}

brg_status brg__schedule_cache_get(brg__schedule_cache *c, const brg_schedule_options *o,
                                   const brg__schedule_entry **out, brg_error *err) {
    int dp = o->data_parallel > 1 ? 2 : 1; /* only whether there is an all-reduce matters */
    for (int i = 0; i < c->count; i++) {
        const brg__schedule_entry *e = c->entries[i];
        if (e->kind == o->kind && e->stages == o->stages && e->chunks == o->chunks &&
            e->micro_batches == o->micro_batches && e->data_parallel == dp) {
            *out = e;
            return BRG_OK;
        }
    }
    brg__schedule_entry *e = brg__calloc(1, sizeof *e);
    if (!e) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    e->kind = o->kind;
    e->stages = o->stages;
    e->chunks = o->chunks;
    e->micro_batches = o->micro_batches;
    e->data_parallel = dp;
    brg_schedule_options so = *o;
    so.data_parallel = dp;
    brg_status s = brg_schedule_create(&so, &e->schedule, err);
    if (s == BRG_OK) s = brg_schedule_get_view(e->schedule, &e->view);
    e->walks = s == BRG_OK ? brg__calloc((size_t)o->stages, sizeof *e->walks) : NULL;
    e->peak_in_flight = s == BRG_OK ? brg__calloc((size_t)o->stages, sizeof *e->peak_in_flight) : NULL;
    if (s == BRG_OK && (!e->walks || !e->peak_in_flight)) s = BRG_ERR_OUT_OF_MEMORY;
    for (int r = 0; r < o->stages && s == BRG_OK; r++) {
        e->instructions += e->view.lengths[r];
        s = brg__memory_walk_build(e->schedule, r, &e->walks[r]);
        brg_in_flight f;
        if (s == BRG_OK) s = brg_schedule_in_flight(&e->view, r, &f);
        if (s == BRG_OK) e->peak_in_flight[r] = f.peak_in_flight;
    }
    if (s == BRG_OK && c->count == c->capacity) {
        int capacity = c->capacity ? 2 * c->capacity : 16;
        brg__schedule_entry **grown = brg__realloc(c->entries, sizeof *grown * (size_t)capacity);
        if (!grown) s = BRG_ERR_OUT_OF_MEMORY;
        else {
            c->entries = grown;
            c->capacity = capacity;
        }
    }
    if (s != BRG_OK) {
        entry_free(e);
        if (s == BRG_ERR_OUT_OF_MEMORY) brg__error_set(err, s, "out of memory building a schedule");
        return s;
    }
    c->entries[c->count++] = e;
    *out = e;
    return BRG_OK;
}
