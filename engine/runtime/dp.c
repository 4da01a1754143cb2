/* Data parallelism for one rank: gradient buckets over its data-parallel group, posted as backward
 * finishes them, and ZeRO-1 (dp.h). */
#include <stdlib.h>
#include <string.h>

#include "dp.h"

typedef struct piece {
    brg__stage *st;
    int64_t param;
    int64_t ready_op; /* the stage's first op reading it: its backward finishes the gradient */
    int64_t offset;   /* in the rank's flat gradient buffer, elements */
    int64_t count;
    int tied;       /* summed across pipeline stages first: posted after the step's end */
    int first_copy; /* the first piece of this parameter on the rank (tied copies count once in norms) */
    int ready;
} piece;

typedef struct bucket {
    int64_t start, count; /* elements [start, start + count) of the flat buffer */
    int first, end;       /* the pieces overlapping it: [first, end) */
    int waiting;          /* of them, not yet final this step */
    int posted;
    int64_t part_offset, part_count; /* this member's part, from start */
    float *m, *v;                    /* ZeRO-1: its moments */
} bucket;

struct brg__dp {
    brg__backend *be;
    brg__group *group;
    int size, index, zero;
    float *flat;    /* every gradient of the rank's stages, in piece order: the buckets are ranges of it */
    int64_t total;
    piece *pieces;
    int n_pieces;
    bucket *buckets;
    int n_buckets;
    int64_t n_params;
    double *sum_squares; /* ZeRO-1: [n_params] over every member's part */
    int gathered;        /* ZeRO-1: full moments on the stages (brg__dp_gather_moments) */
    brg__dp_piece_hook hook; /* called on each gradient as it is final, before its bucket goes */
    void *hook_ctx;
};

static brg_status oom(char *msg) { return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory"); }

static int compare_pieces(const void *a, const void *b) { /* the backward's order: later stages, later ops first */
    const piece *x = a, *y = b;
    if (x->st != y->st) return x->st->op_begin < y->st->op_begin ? 1 : -1;
    if (x->ready_op != y->ready_op) return x->ready_op < y->ready_op ? 1 : -1;
    return (x->param > y->param) - (x->param < y->param);
}

/* Buckets of `elems` elements (the last of a region shorter) over the flat range [from, to). */
static void cut_buckets(brg__dp *dp, int64_t from, int64_t to, int64_t elems) {
    for (int64_t at = from; at < to; at += elems) {
        bucket *b = &dp->buckets[dp->n_buckets++];
        memset(b, 0, sizeof *b);
        b->start = at;
        b->count = to - at < elems ? to - at : elems;
        b->first = dp->n_pieces;
        for (int i = 0; i < dp->n_pieces; i++) {
            const piece *pc = &dp->pieces[i];
            if (pc->offset < b->start + b->count && pc->offset + pc->count > b->start) {
                if (i < b->first) b->first = i;
                b->end = i + 1;
            }
        }
        if (b->first > b->end) b->first = b->end;
        brg__group_part(b->count, dp->size, dp->index, &b->part_offset, &b->part_count);
    }
}

brg_status brg__dp_create(brg__dp **out, brg__stage **stages, int n, const unsigned char *tied, brg__transport *tp,
                          brg__backend *be, const int *members, int size, int zero, int64_t bucket_bytes, char *msg) {
    if (!out || !stages || n < 1 || !tied || !tp || !be || !members || size < 1 || bucket_bytes < 1)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "data parallelism: bad arguments");
    const brg_graph *g = stages[0]->graph;
    brg__dp *dp = brg__calloc(1, sizeof *dp);
    if (!dp) return oom(msg);
    dp->be = be;
    dp->zero = zero;
    dp->n_params = g->n_params;
    int cap = 0;
    int64_t total = 0;
    for (int k = 0; k < n; k++)
        for (int64_t p = 0; p < g->n_params; p++)
            if (stages[k]->param[p]) {
                cap++;
                total += brg__tensor_numel(g->params[p], 1);
            }
    int64_t elems = bucket_bytes / (int64_t)sizeof(float);
    if (elems < 1) elems = 1;
    dp->pieces = brg__calloc((size_t)cap + 1, sizeof *dp->pieces);
    dp->buckets = brg__calloc((size_t)(total / elems + 3), sizeof *dp->buckets);
    dp->sum_squares = brg__calloc((size_t)g->n_params + 1, sizeof *dp->sum_squares);
    if (!dp->pieces || !dp->buckets || !dp->sum_squares) {
        brg__dp_destroy(dp);
        return oom(msg);
    }
    brg_status s = brg__group_create(&dp->group, tp, be, members, size, 0, msg);
    if (s != BRG_OK) {
        brg__dp_destroy(dp);
        return s;
    }
    dp->size = size;
    dp->index = brg__group_index(dp->group);
    /* Untied parameters in the backward's order, then the tied ones. */
    int n_untied = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = n - 1; k >= 0; k--)
            for (int64_t p = 0; p < g->n_params; p++) {
                if (!stages[k]->param[p] || (tied[p] != 0) != pass) continue;
                piece *pc = &dp->pieces[dp->n_pieces++];
                pc->st = stages[k];
                pc->param = p;
                pc->ready_op = brg__stage_first_consumer(stages[k], p);
                pc->count = brg__tensor_numel(g->params[p], 1);
                pc->tied = pass;
                n_untied += !pass;
            }
    qsort(dp->pieces, (size_t)n_untied, sizeof *dp->pieces, compare_pieces);
    int64_t untied_total = 0;
    for (int i = 0; i < dp->n_pieces; i++) {
        piece *pc = &dp->pieces[i];
        pc->first_copy = 1;
        for (int j = 0; j < i; j++) pc->first_copy &= dp->pieces[j].param != pc->param;
    }
    int64_t at = 0;
    for (int i = 0; i < dp->n_pieces; i++) {
        dp->pieces[i].offset = at;
        at += dp->pieces[i].count;
        if (i == n_untied - 1) untied_total = at;
    }
    dp->total = total;
    /* Buckets of exactly bucket_bytes (a parameter may span several), the untied region then the tied one. */
    cut_buckets(dp, 0, untied_total, elems);
    cut_buckets(dp, untied_total, total, elems);
    dp->flat = be->vt->alloc(be, (size_t)(total ? total : 1) * sizeof(float));
    if (!dp->flat) s = oom(msg);
    for (int b = 0; b < dp->n_buckets && s == BRG_OK; b++) {
        bucket *bk = &dp->buckets[b];
        if (zero) {
            size_t bytes = (size_t)(bk->part_count ? bk->part_count : 1) * sizeof(float);
            bk->m = be->vt->alloc(be, bytes);
            bk->v = be->vt->alloc(be, bytes);
            if (!bk->m || !bk->v) s = oom(msg);
        }
        if (s == BRG_OK) s = brg__group_reserve(dp->group, bk->count, msg);
    }
    if (s != BRG_OK) {
        brg__dp_destroy(dp);
        return s;
    }
    for (int i = 0; i < dp->n_pieces; i++) { /* the gradients live in the flat buffer */
        piece *pc = &dp->pieces[i];
        brg__stage_lend_grad(pc->st, pc->param, dp->flat + pc->offset);
        if (zero) brg__stage_release_moments(pc->st, pc->param);
    }
    *out = dp;
    return BRG_OK;
}

void brg__dp_destroy(brg__dp *dp) {
    if (!dp) return;
    brg__group_destroy(dp->group);
    for (int b = 0; dp->buckets && b < dp->n_buckets; b++) {
        dp->be->vt->free(dp->be, dp->buckets[b].m);
        dp->be->vt->free(dp->be, dp->buckets[b].v);
    }
    dp->be->vt->free(dp->be, dp->flat);
    free(dp->pieces);
    free(dp->buckets);
    free(dp->sum_squares);
    free(dp);
}

int brg__dp_zero(const brg__dp *dp) { return dp && dp->zero; }
int brg__dp_bucket_count(const brg__dp *dp) { return dp ? dp->n_buckets : 0; }

void brg__dp_begin_step(brg__dp *dp) {
    for (int b = 0; b < dp->n_buckets; b++) {
        dp->buckets[b].waiting = dp->buckets[b].end - dp->buckets[b].first;
        dp->buckets[b].posted = 0;
    }
    for (int i = 0; i < dp->n_pieces; i++) dp->pieces[i].ready = 0;
}

static brg_status post_bucket(brg__dp *dp, bucket *b, char *msg) {
    b->posted = 1;
    return brg__group_post(dp->group, dp->zero ? BRG__REDUCE_SCATTER : BRG__ALLREDUCE, dp->flat + b->start, b->count,
                           sizeof(float), 0, msg);
}

/* A piece's gradient is final: a parameter read by several ops of its stage has its sum made now (in its
 * view); the buckets it completes are posted. */
static brg_status piece_ready(brg__dp *dp, piece *pc, char *msg) {
    pc->ready = 1;
    if (!pc->tied) brg__stage_reduce_param_grad(pc->st, pc->param); /* tied ones: summed across stages */
    if (dp->hook) BRG__CHECK(dp->hook(dp->hook_ctx, pc->st, pc->param, msg));
    for (int b = 0; b < dp->n_buckets; b++) {
        bucket *bk = &dp->buckets[b];
        int i = (int)(pc - dp->pieces);
        if (i < bk->first || i >= bk->end) continue;
        if (--bk->waiting == 0) BRG__CHECK(post_bucket(dp, bk, msg));
    }
    return BRG_OK;
}

brg_status brg__dp_grad_ready(brg__dp *dp, brg__stage *s, int64_t op, char *msg) {
    for (int i = 0; i < dp->n_pieces; i++) {
        piece *pc = &dp->pieces[i];
        if (pc->st != s || pc->ready_op != op || pc->tied || pc->ready) continue;
        BRG__CHECK(piece_ready(dp, pc, msg));
    }
    return brg__group_progress(dp->group, msg);
}

brg_status brg__dp_progress(brg__dp *dp, char *msg) { return brg__group_progress(dp->group, msg); }

void brg__dp_set_piece_hook(brg__dp *dp, brg__dp_piece_hook hook, void *ctx) {
    dp->hook = hook;
    dp->hook_ctx = ctx;
}

brg_status brg__dp_reduce(brg__dp *dp, char *msg) {
    /* The tied pieces now (their sums across stages are done), and any piece no backward finished. */
    for (int i = 0; i < dp->n_pieces; i++)
        if (!dp->pieces[i].ready) BRG__CHECK(piece_ready(dp, &dp->pieces[i], msg));
    return brg__group_wait_all(dp->group, msg); /* the sums are in place: the gradients are the buckets */
}

/* Calls fn for every piece's elements [lo, hi) (of the piece) that fall in this member's part of bucket b. */
typedef void (*part_fn)(brg__dp *dp, const piece *pc, const bucket *b, int64_t lo, int64_t hi, void *ctx);

static void for_my_parts(brg__dp *dp, part_fn fn, void *ctx) {
    for (int b = 0; b < dp->n_buckets; b++) {
        const bucket *bk = &dp->buckets[b];
        int64_t a = bk->start + bk->part_offset, z = a + bk->part_count;
        for (int i = bk->first; i < bk->end; i++) {
            const piece *pc = &dp->pieces[i];
            int64_t lo = pc->offset > a ? pc->offset : a, hi = pc->offset + pc->count < z ? pc->offset + pc->count : z;
            if (hi > lo) fn(dp, pc, bk, lo - pc->offset, hi - pc->offset, ctx);
        }
    }
}

static void add_squares(brg__dp *dp, const piece *pc, const bucket *b, int64_t lo, int64_t hi, void *ctx) {
    (void)b;
    double *host = ctx;
    if (pc->first_copy)
        host[(size_t)dp->index * (size_t)dp->n_params + (size_t)pc->param] +=
            dp->be->vt->sum_squares(dp->be, pc->st->param_grad[pc->param] + lo, hi - lo);
}

brg_status brg__dp_norm_partials(brg__dp *dp, char *msg) {
    int64_t np = dp->n_params, n = dp->size;
    size_t bytes = (size_t)(np ? np : 1) * (size_t)n * sizeof(double);
    double *host = brg__calloc((size_t)(np ? np : 1) * (size_t)n, sizeof *host);
    double *device = dp->be->vt->alloc(dp->be, bytes);
    brg_status s = host && device ? BRG_OK : oom(msg);
    if (s == BRG_OK) for_my_parts(dp, add_squares, host);
    if (s == BRG_OK) {
        dp->be->vt->upload(dp->be, device, host, bytes);
        s = brg__group_post(dp->group, BRG__ALLGATHER, device, np * n, sizeof(double), 0, msg);
    }
    if (s == BRG_OK) s = brg__group_wait_all(dp->group, msg);
    if (s == BRG_OK) dp->be->vt->download(dp->be, host, device, bytes);
    for (int64_t p = 0; p < np && s == BRG_OK; p++) {
        double total = 0.0;
        for (int64_t j = 0; j < n; j++) total += host[(size_t)j * (size_t)np + (size_t)p];
        dp->sum_squares[p] = total;
    }
    free(host);
    dp->be->vt->free(dp->be, device);
    return s;
}

double brg__dp_sum_squares(const brg__dp *dp, int64_t p) { return dp->sum_squares[p]; }

typedef struct adamw_args {
    float grad_scale, lr, beta1, beta2, eps, weight_decay;
    int step;
} adamw_args;

static void update_part(brg__dp *dp, const piece *pc, const bucket *b, int64_t lo, int64_t hi, void *ctx) {
    const adamw_args *a = ctx;
    float *param = pc->st->param[pc->param] + lo, *grad = pc->st->param_grad[pc->param] + lo;
    int64_t at = pc->offset + lo - (b->start + b->part_offset); /* in the moments of the part */
    if (a->grad_scale != 1.0f) dp->be->vt->scale(dp->be, grad, hi - lo, a->grad_scale);
    float wd = pc->st->graph->params[pc->param]->ndim >= 2 ? a->weight_decay : 0.0f; /* as brg__stage_optimizer_step */
    dp->be->vt->adamw(dp->be, param, grad, b->m + at, b->v + at, hi - lo, a->lr, a->beta1, a->beta2, a->eps, wd, a->step);
    dp->be->vt->copy(dp->be, grad, param, (size_t)(hi - lo) * sizeof(float)); /* its gradient is spent */
}

brg_status brg__dp_optimizer_step(brg__dp *dp, float grad_scale, float lr, float beta1, float beta2, float eps,
                                  float weight_decay, int step, char *msg) {
    adamw_args a = {grad_scale, lr, beta1, beta2, eps, weight_decay, step};
    for_my_parts(dp, update_part, &a);
    for (int b = 0; b < dp->n_buckets; b++)
        BRG__CHECK(brg__group_post(dp->group, BRG__ALLGATHER, dp->flat + dp->buckets[b].start, dp->buckets[b].count,
                                   sizeof(float), 0, msg));
    BRG__CHECK(brg__group_wait_all(dp->group, msg));
    for (int i = 0; i < dp->n_pieces; i++) { /* every member's updated values, from the flat buffer */
        const piece *pc = &dp->pieces[i];
        dp->be->vt->copy(dp->be, pc->st->param[pc->param], dp->flat + pc->offset, (size_t)pc->count * sizeof(float));
    }
    return BRG_OK;
}

int64_t brg__dp_moment_bytes(const brg__dp *dp) {
    int64_t bytes = 0;
    for (int b = 0; dp && dp->zero && b < dp->n_buckets; b++) bytes += 2 * dp->buckets[b].part_count * (int64_t)sizeof(float);
    for (int i = 0; dp && !dp->zero && i < dp->n_pieces; i++) bytes += 2 * dp->pieces[i].count * (int64_t)sizeof(float);
    return bytes;
}

static void put_part(brg__dp *dp, const piece *pc, const bucket *b, int64_t lo, int64_t hi, void *ctx) {
    (void)pc;
    int which = *(const int *)ctx;
    int64_t at = pc->offset + lo - (b->start + b->part_offset);
    dp->be->vt->copy(dp->be, dp->flat + pc->offset + lo, (which ? b->v : b->m) + at, (size_t)(hi - lo) * sizeof(float));
}

/* The full moments of every piece from every member's parts: m (which = 0) or v, through the flat buffer
 * (free between steps: the next step's backward writes it anew). */
static brg_status gather_moment(brg__dp *dp, int which, char *msg) {
    for_my_parts(dp, put_part, &which);
    for (int b = 0; b < dp->n_buckets; b++)
        BRG__CHECK(brg__group_post(dp->group, BRG__ALLGATHER, dp->flat + dp->buckets[b].start, dp->buckets[b].count,
                                   sizeof(float), 0, msg));
    BRG__CHECK(brg__group_wait_all(dp->group, msg));
    for (int i = 0; i < dp->n_pieces; i++) {
        const piece *pc = &dp->pieces[i];
        float *dst = which ? pc->st->adam_v[pc->param] : pc->st->adam_m[pc->param];
        dp->be->vt->copy(dp->be, dst, dp->flat + pc->offset, (size_t)pc->count * sizeof(float));
    }
    return BRG_OK;
}

brg_status brg__dp_gather_moments(brg__dp *dp, char *msg) {
    if (!dp->zero || dp->gathered) return BRG_OK;
    brg_status s = BRG_OK;
    for (int i = 0; i < dp->n_pieces && s == BRG_OK; i++) {
        brg__stage *st = dp->pieces[i].st;
        size_t bytes = (size_t)dp->pieces[i].count * sizeof(float);
        int64_t p = dp->pieces[i].param;
        st->adam_m[p] = dp->be->vt->alloc(dp->be, bytes);
        st->adam_v[p] = dp->be->vt->alloc(dp->be, bytes);
        if (!st->adam_m[p] || !st->adam_v[p]) s = oom(msg);
    }
    dp->gathered = 1;
    if (s == BRG_OK) s = gather_moment(dp, 0, msg);
    if (s == BRG_OK) s = gather_moment(dp, 1, msg);
    return s;
}

void brg__dp_release_moments(brg__dp *dp) {
    if (!dp || !dp->zero || !dp->gathered) return;
    for (int i = 0; i < dp->n_pieces; i++) brg__stage_release_moments(dp->pieces[i].st, dp->pieces[i].param);
    dp->gathered = 0;
}

typedef struct set_args {
    const brg__stage *st;
    int64_t param;
    const float *m, *v;
    int found;
} set_args;

static void set_part(brg__dp *dp, const piece *pc, const bucket *b, int64_t lo, int64_t hi, void *ctx) {
    set_args *a = ctx;
    if (pc->st != a->st || pc->param != a->param) return;
    int64_t at = pc->offset + lo - (b->start + b->part_offset);
    dp->be->vt->upload(dp->be, b->m + at, a->m + lo, (size_t)(hi - lo) * sizeof(float));
    dp->be->vt->upload(dp->be, b->v + at, a->v + lo, (size_t)(hi - lo) * sizeof(float));
}

brg_status brg__dp_set_moments(brg__dp *dp, const brg__stage *s, int64_t p, const float *m, const float *v) {
    int held = 0;
    for (int i = 0; i < dp->n_pieces; i++) held |= dp->pieces[i].st == s && dp->pieces[i].param == p;
    if (!held) return BRG_ERR_NOT_FOUND;
    set_args a = {s, p, m, v, 0};
    for_my_parts(dp, set_part, &a);
    return BRG_OK;
}
