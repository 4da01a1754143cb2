/* Data parallelism for one rank: gradient buckets over its data-parallel group, posted as backward
 * finishes them, and ZeRO-1 (dp.h). */
#include <stdlib.h>
#include <string.h>

#include "dp.h"

typedef struct piece {
    brg__stage *st;
    int64_t param;
    int64_t ready_op; /* the stage's first op reading it: its backward finishes the gradient */
    int64_t offset;   /* in the bucket, elements */
    int64_t count;
    int bucket;
    int first_copy; /* the first piece of this parameter on the rank (tied copies count once in norms) */
} piece;

typedef struct bucket {
    int first, n;   /* pieces [first, first + n) */
    int64_t count;  /* elements */
    float *buf;
    int waiting;    /* pieces not yet final this step */
    int posted;
    int tied;       /* the last bucket: tied parameters, posted after their sums across stages */
    int64_t part_offset, part_count; /* ZeRO-1: this member's part */
    float *m, *v;                    /* ZeRO-1: its moments */
} bucket;

struct brg__dp {
    brg__backend *be;
    brg__group *group;
    int size, index, zero;
    piece *pieces;
    int n_pieces;
    bucket *buckets;
    int n_buckets;
    int64_t n_params;
    double *sum_squares; /* ZeRO-1: [n_params] over every member's part */
    int gathered;        /* ZeRO-1: full moments on the stages (brg__dp_gather_moments) */
};

static brg_status oom(char *msg) { return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory"); }

static int compare_pieces(const void *a, const void *b) { /* the backward's order: later stages, later ops first */
    const piece *x = a, *y = b;
    if (x->st != y->st) return x->st->op_begin < y->st->op_begin ? 1 : -1;
    if (x->ready_op != y->ready_op) return x->ready_op < y->ready_op ? 1 : -1;
    return (x->param > y->param) - (x->param < y->param);
}

static void close_bucket(brg__dp *dp, int first, int end, int tied) {
    bucket *b = &dp->buckets[dp->n_buckets];
    memset(b, 0, sizeof *b);
    b->first = first;
    b->n = end - first;
    b->tied = tied;
    for (int i = first; i < end; i++) {
        dp->pieces[i].bucket = dp->n_buckets;
        dp->pieces[i].offset = b->count;
        b->count += dp->pieces[i].count;
    }
    brg__group_part(b->count, dp->size, dp->index, &b->part_offset, &b->part_count);
    dp->n_buckets++;
}

brg_status brg__dp_create(brg__dp **out, brg__stage **stages, int n, const unsigned char *tied, brg__transport *tp,
                          brg__backend *be, const int *members, int size, int zero, int64_t bucket_bytes, char *msg) {
    if (!out || !stages || n < 1 || !tied || !tp || !be || !members || size < 1 || bucket_bytes < 1)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "data parallelism: bad arguments");
    const brg_graph *g = stages[0]->graph;
    brg__dp *dp = calloc(1, sizeof *dp);
    if (!dp) return oom(msg);
    dp->be = be;
    dp->zero = zero;
    dp->n_params = g->n_params;
    int cap = 0;
    for (int k = 0; k < n; k++)
        for (int64_t p = 0; p < g->n_params; p++) cap += stages[k]->param[p] != NULL;
    dp->pieces = calloc((size_t)cap + 1, sizeof *dp->pieces);
    dp->buckets = calloc((size_t)cap + 1, sizeof *dp->buckets);
    dp->sum_squares = calloc((size_t)g->n_params + 1, sizeof *dp->sum_squares);
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
                n_untied += !pass;
            }
    qsort(dp->pieces, (size_t)n_untied, sizeof *dp->pieces, compare_pieces);
    for (int i = 0; i < dp->n_pieces; i++) {
        dp->pieces[i].first_copy = 1;
        for (int j = 0; j < i; j++) dp->pieces[i].first_copy &= dp->pieces[j].param != dp->pieces[i].param;
    }
    int start = 0;
    int64_t elems = bucket_bytes / (int64_t)sizeof(float);
    for (int i = 0; i < n_untied; i++) {
        int64_t count = 0;
        for (int j = start; j <= i; j++) count += dp->pieces[j].count;
        if (count >= elems || i == n_untied - 1) {
            close_bucket(dp, start, i + 1, 0);
            start = i + 1;
        }
    }
    if (dp->n_pieces > n_untied) close_bucket(dp, n_untied, dp->n_pieces, 1);
    for (int b = 0; b < dp->n_buckets && s == BRG_OK; b++) {
        bucket *bk = &dp->buckets[b];
        bk->buf = be->vt->alloc(be, (size_t)(bk->count ? bk->count : 1) * sizeof(float));
        if (zero) {
            size_t bytes = (size_t)(bk->part_count ? bk->part_count : 1) * sizeof(float);
            bk->m = be->vt->alloc(be, bytes);
            bk->v = be->vt->alloc(be, bytes);
        }
        if (!bk->buf || (zero && (!bk->m || !bk->v))) s = oom(msg);
        if (s == BRG_OK) s = brg__group_reserve(dp->group, bk->count, msg);
    }
    if (s != BRG_OK) {
        brg__dp_destroy(dp);
        return s;
    }
    if (zero)
        for (int i = 0; i < dp->n_pieces; i++) brg__stage_release_moments(dp->pieces[i].st, dp->pieces[i].param);
    *out = dp;
    return BRG_OK;
}

void brg__dp_destroy(brg__dp *dp) {
    if (!dp) return;
    brg__group_destroy(dp->group);
    for (int b = 0; dp->buckets && b < dp->n_buckets; b++) {
        dp->be->vt->free(dp->be, dp->buckets[b].buf);
        dp->be->vt->free(dp->be, dp->buckets[b].m);
        dp->be->vt->free(dp->be, dp->buckets[b].v);
    }
    free(dp->pieces);
    free(dp->buckets);
    free(dp->sum_squares);
    free(dp);
}

int brg__dp_zero(const brg__dp *dp) { return dp && dp->zero; }
int brg__dp_bucket_count(const brg__dp *dp) { return dp ? dp->n_buckets : 0; }

void brg__dp_begin_step(brg__dp *dp) {
    for (int b = 0; b < dp->n_buckets; b++) {
        dp->buckets[b].waiting = dp->buckets[b].n;
        dp->buckets[b].posted = 0;
    }
}

static brg_status post_bucket(brg__dp *dp, bucket *b, char *msg) {
    for (int i = b->first; i < b->first + b->n; i++) {
        const piece *pc = &dp->pieces[i];
        if (!b->tied) brg__stage_reduce_param_grad(pc->st, pc->param); /* tied ones: summed across stages */
        dp->be->vt->copy(dp->be, b->buf + pc->offset, pc->st->param_grad[pc->param], (size_t)pc->count * sizeof(float));
    }
    b->posted = 1;
    return brg__group_post(dp->group, dp->zero ? BRG__REDUCE_SCATTER : BRG__ALLREDUCE, b->buf, b->count, sizeof(float),
                           0, msg);
}

brg_status brg__dp_grad_ready(brg__dp *dp, brg__stage *s, int64_t op, char *msg) {
    for (int i = 0; i < dp->n_pieces; i++) {
        piece *pc = &dp->pieces[i];
        bucket *b = &dp->buckets[pc->bucket];
        if (pc->st != s || pc->ready_op != op || b->tied) continue;
        if (--b->waiting == 0) BRG__CHECK(post_bucket(dp, b, msg));
    }
    return brg__group_progress(dp->group, msg);
}

brg_status brg__dp_progress(brg__dp *dp, char *msg) { return brg__group_progress(dp->group, msg); }

brg_status brg__dp_reduce(brg__dp *dp, char *msg) {
    /* Buckets in their order (a bucket whose gradients never came, one no op reads, goes now). */
    for (int b = 0; b < dp->n_buckets; b++)
        if (!dp->buckets[b].posted) BRG__CHECK(post_bucket(dp, &dp->buckets[b], msg));
    BRG__CHECK(brg__group_wait_all(dp->group, msg));
    for (int i = 0; i < dp->n_pieces; i++) {
        const piece *pc = &dp->pieces[i];
        const bucket *b = &dp->buckets[pc->bucket];
        int64_t lo = pc->offset, hi = pc->offset + pc->count;
        if (dp->zero) { /* only this member's part is summed */
            lo = lo > b->part_offset ? lo : b->part_offset;
            hi = hi < b->part_offset + b->part_count ? hi : b->part_offset + b->part_count;
        }
        if (hi > lo)
            dp->be->vt->copy(dp->be, pc->st->param_grad[pc->param] + (lo - pc->offset), b->buf + lo,
                             (size_t)(hi - lo) * sizeof(float));
    }
    return BRG_OK;
}

/* The elements [lo, hi) of piece pc that fall in this member's part of its bucket; 0 when none. */
static int my_range(const brg__dp *dp, const piece *pc, int64_t *lo, int64_t *hi) {
    const bucket *b = &dp->buckets[pc->bucket];
    int64_t a = pc->offset > b->part_offset ? pc->offset : b->part_offset;
    int64_t z = pc->offset + pc->count < b->part_offset + b->part_count ? pc->offset + pc->count
                                                                         : b->part_offset + b->part_count;
    *lo = a - pc->offset;
    *hi = z - pc->offset;
    return z > a;
}

brg_status brg__dp_norm_partials(brg__dp *dp, char *msg) {
    int64_t np = dp->n_params, n = dp->size;
    size_t bytes = (size_t)(np ? np : 1) * (size_t)n * sizeof(double);
    double *host = calloc((size_t)(np ? np : 1) * (size_t)n, sizeof *host);
    double *device = dp->be->vt->alloc(dp->be, bytes);
    brg_status s = host && device ? BRG_OK : oom(msg);
    for (int i = 0; i < dp->n_pieces && s == BRG_OK; i++) {
        const piece *pc = &dp->pieces[i];
        int64_t lo, hi;
        if (pc->first_copy && my_range(dp, pc, &lo, &hi))
            host[(size_t)dp->index * (size_t)np + (size_t)pc->param] =
                dp->be->vt->sum_squares(dp->be, pc->st->param_grad[pc->param] + lo, hi - lo);
    }
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

brg_status brg__dp_optimizer_step(brg__dp *dp, float grad_scale, float lr, float beta1, float beta2, float eps,
                                  float weight_decay, int step, char *msg) {
    const brg_graph *g = dp->pieces[0].st->graph;
    for (int i = 0; i < dp->n_pieces; i++) {
        const piece *pc = &dp->pieces[i];
        bucket *b = &dp->buckets[pc->bucket];
        int64_t lo, hi;
        if (!my_range(dp, pc, &lo, &hi)) continue;
        float *param = pc->st->param[pc->param] + lo, *grad = pc->st->param_grad[pc->param] + lo;
        int64_t at = pc->offset + lo - b->part_offset; /* in the moments of the part */
        if (grad_scale != 1.0f) dp->be->vt->scale(dp->be, grad, hi - lo, grad_scale);
        float wd = g->params[pc->param]->ndim >= 2 ? weight_decay : 0.0f; /* as brg__stage_optimizer_step */
        dp->be->vt->adamw(dp->be, param, grad, b->m + at, b->v + at, hi - lo, lr, beta1, beta2, eps, wd, step);
        dp->be->vt->copy(dp->be, b->buf + pc->offset + lo, param, (size_t)(hi - lo) * sizeof(float));
    }
    for (int b = 0; b < dp->n_buckets; b++)
        BRG__CHECK(brg__group_post(dp->group, BRG__ALLGATHER, dp->buckets[b].buf, dp->buckets[b].count, sizeof(float), 0, msg));
    BRG__CHECK(brg__group_wait_all(dp->group, msg));
    for (int i = 0; i < dp->n_pieces; i++) {
        const piece *pc = &dp->pieces[i];
        dp->be->vt->copy(dp->be, pc->st->param[pc->param], dp->buckets[pc->bucket].buf + pc->offset,
                         (size_t)pc->count * sizeof(float));
    }
    return BRG_OK;
}

int64_t brg__dp_moment_bytes(const brg__dp *dp) {
    int64_t bytes = 0;
    for (int b = 0; dp && dp->zero && b < dp->n_buckets; b++) bytes += 2 * dp->buckets[b].part_count * (int64_t)sizeof(float);
    for (int i = 0; dp && !dp->zero && i < dp->n_pieces; i++) bytes += 2 * dp->pieces[i].count * (int64_t)sizeof(float);
    return bytes;
}

/* The full moments of every piece from every member's parts: m (which = 0) or v, through the buckets'
 * buffers (free between steps). */
static brg_status gather_moment(brg__dp *dp, int which, char *msg) {
    for (int b = 0; b < dp->n_buckets; b++) {
        bucket *bk = &dp->buckets[b];
        if (bk->part_count)
            dp->be->vt->copy(dp->be, bk->buf + bk->part_offset, which ? bk->v : bk->m, (size_t)bk->part_count * sizeof(float));
        BRG__CHECK(brg__group_post(dp->group, BRG__ALLGATHER, bk->buf, bk->count, sizeof(float), 0, msg));
    }
    BRG__CHECK(brg__group_wait_all(dp->group, msg));
    for (int i = 0; i < dp->n_pieces; i++) {
        const piece *pc = &dp->pieces[i];
        float *dst = which ? pc->st->adam_v[pc->param] : pc->st->adam_m[pc->param];
        dp->be->vt->copy(dp->be, dst, dp->buckets[pc->bucket].buf + pc->offset, (size_t)pc->count * sizeof(float));
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

brg_status brg__dp_set_moments(brg__dp *dp, const brg__stage *s, int64_t p, const float *m, const float *v) {
    for (int i = 0; i < dp->n_pieces; i++) {
        const piece *pc = &dp->pieces[i];
        if (pc->st != s || pc->param != p) continue;
        const bucket *b = &dp->buckets[pc->bucket];
        int64_t lo, hi;
        if (!my_range(dp, pc, &lo, &hi)) return BRG_OK;
        int64_t at = pc->offset + lo - b->part_offset;
        dp->be->vt->upload(dp->be, b->m + at, m + lo, (size_t)(hi - lo) * sizeof(float));
        dp->be->vt->upload(dp->be, b->v + at, v + lo, (size_t)(hi - lo) * sizeof(float));
        return BRG_OK;
    }
    return BRG_ERR_NOT_FOUND;
}
