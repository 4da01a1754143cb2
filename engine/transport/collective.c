/* Collectives over a group of ranks, on the transport's point-to-point messages (transport.h says why
 * our own and not MPI's). A reduction is a direct reduce-scatter, each member receiving its part from
 * every other and summing the parts in member order, then, for an all-reduce, a direct all-gather of the
 * reduced parts. Collectives of a group run one after another in the order posted, so the k-th message
 * between two members belongs to the same collective and phase on both sides. */
#include <stdlib.h>
#include <string.h>

#include "runtime/backend.h"
#include "transport.h"

enum { TAG_COLLECTIVE = 0x40 };

typedef struct collective {
    brg__collective_kind kind;
    unsigned char *buf;
    int64_t count;
    size_t elem;
    int root;
    int phase;               /* 0 queued; 1 exchanging parts to reduce; 2 gathering parts (or broadcasting); 3 done */
    unsigned char *scratch;  /* [size][part]: the others' contributions to this member's part */
    uint16_t seq;
} collective;

struct brg__group {
    brg__transport *tp;
    brg__backend *be;
    int size, index, id;
    int *members;
    collective *queue; /* [head, tail) pending, a ring of `capacity` */
    int head, tail, capacity;
    uint16_t next_seq;
    unsigned char *scratch; /* reserved for the head's reduction (brg__group_reserve), or NULL */
    size_t scratch_bytes;
    brg__request **reqs; /* the head's requests of its current phase: [2 * size] */
    int *req_peer;
    int n_reqs;
};

void brg__group_part(int64_t count, int size, int i, int64_t *offset, int64_t *length) {
    int64_t base = count / size, extra = count % size;
    *length = base + (i < extra ? 1 : 0);
    *offset = (int64_t)i * base + (i < extra ? i : extra);
}

brg_status brg__group_create(brg__group **out, brg__transport *t, brg__backend *be, const int *members, int size,
                             int id, char *msg) {
    if (!out || !t || !be || !members || size < 1)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "group: NULL argument or size %d",
                                size);
    int index = -1;
    for (int i = 0; i < size; i++) {
        if (members[i] < 0 || members[i] >= t->ranks)
            return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                    "group: member %d is rank %d of a transport of %d ranks", i, members[i], t->ranks);
        for (int j = 0; j < i; j++)
            if (members[j] == members[i])
                return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                        "group: rank %d is a member twice", members[i]);
        if (members[i] == t->rank) index = i;
    }
    if (index < 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "group: rank %d is not among its members", t->rank);
    brg__group *g = brg__calloc(1, sizeof *g);
    if (g) {
        g->members = brg__malloc((size_t)size * sizeof *g->members);
        g->reqs = brg__calloc((size_t)(2 * size), sizeof *g->reqs);
        g->req_peer = brg__calloc((size_t)(2 * size), sizeof *g->req_peer);
        g->capacity = 16;
        g->queue = brg__calloc((size_t)g->capacity, sizeof *g->queue);
    }
    if (!g || !g->members || !g->reqs || !g->req_peer || !g->queue) {
        brg__group_destroy(g);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    memcpy(g->members, members, (size_t)size * sizeof *members);
    g->tp = t;
    g->be = be;
    g->size = size;
    g->index = index;
    g->id = id;
    *out = g;
    return BRG_OK;
}

int brg__group_size(const brg__group *g) { return g ? g->size : 0; }
int brg__group_index(const brg__group *g) { return g ? g->index : -1; }
int brg__group_pending(const brg__group *g) { return g ? (g->tail - g->head + g->capacity) % g->capacity : 0; }

static void cancel_requests(brg__group *g) {
    for (int k = 0; k < g->n_reqs; k++)
        if (g->reqs[k]) g->tp->vt->cancel(g->tp, g->reqs[k]);
    memset(g->reqs, 0, (size_t)(2 * g->size) * sizeof *g->reqs);
    g->n_reqs = 0;
}

void brg__group_destroy(brg__group *g) {
    if (!g) return;
    if (g->reqs) cancel_requests(g);
    for (int i = g->head; g->queue && i != g->tail; i = (i + 1) % g->capacity)
        if (g->queue[i].scratch && g->queue[i].scratch != g->scratch) g->be->vt->free(g->be, g->queue[i].scratch);
    if (g->scratch) g->be->vt->free(g->be, g->scratch);
    free(g->queue);
    free(g->members);
    free(g->reqs);
    free(g->req_peer);
    free(g);
}

brg_status brg__group_post(brg__group *g, brg__collective_kind kind, void *buf, int64_t count, size_t elem_bytes,
                           int root, char *msg) {
    if (!g || (!buf && count > 0) || count < 0 || elem_bytes == 0 || kind < BRG__ALLREDUCE || kind > BRG__BROADCAST ||
        (kind == BRG__BROADCAST && (root < 0 || root >= g->size)) ||
        ((kind == BRG__ALLREDUCE || kind == BRG__REDUCE_SCATTER) && elem_bytes != sizeof(float)))
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "group collective: bad arguments (kind %d, %lld elements of %zu bytes, root %d)",
                                (int)kind, (long long)count, elem_bytes, root);
    if (brg__group_pending(g) == g->capacity - 1) { /* grow the ring, keeping its order */
        collective *q = brg__calloc((size_t)(2 * g->capacity), sizeof *q);
        if (!q) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        int n = 0;
        for (int i = g->head; i != g->tail; i = (i + 1) % g->capacity) q[n++] = g->queue[i];
        free(g->queue);
        g->queue = q;
        g->head = 0;
        g->tail = n;
        g->capacity *= 2;
    }
    g->queue[g->tail] = (collective){kind, buf, count, elem_bytes, root, 0, NULL, g->next_seq++};
    g->tail = (g->tail + 1) % g->capacity;
    return BRG_OK;
}

static uint64_t tag_of(const brg__group *g, const collective *c) {
    return brg__transfer_tag(TAG_COLLECTIVE, g->id, c->seq, c->phase);
}

static brg_status post_one(brg__group *g, int is_send, int member, void *buf, size_t bytes, uint64_t tag, char *msg) {
    int peer = g->members[member];
    brg_status s = is_send ? g->tp->vt->post_send(g->tp, peer, tag, buf, bytes, &g->reqs[g->n_reqs])
                           : g->tp->vt->post_recv(g->tp, peer, tag, buf, bytes, &g->reqs[g->n_reqs]);
    if (s != BRG_OK)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, s, "rank %d: posting a collective's %s rank %d failed: %s",
                                g->tp->rank, is_send ? "send to" : "receive from", peer, brg_status_string(s));
    g->req_peer[g->n_reqs++] = is_send ? peer : -1 - peer;
    return BRG_OK;
}

/* Posts the messages of c's current phase: receives first, then sends (a send may complete only once its
 * receive is posted). */
static brg_status start_phase(brg__group *g, collective *c, char *msg) {
    int me = g->index, n = g->size;
    uint64_t tag = tag_of(g, c);
    int64_t off = 0, len = 0, my_off = 0, my_len = 0;
    brg__group_part(c->count, n, me, &my_off, &my_len);
    if (c->phase == 1) { /* parts to reduce: part j of my buf to member j; mine from each into scratch[j] */
        size_t part = (size_t)my_len * c->elem;
        if (n > 1 && part && (size_t)n * part <= g->scratch_bytes) {
            c->scratch = g->scratch;
        } else if (n > 1 && part) {
            c->scratch = g->be->vt->alloc(g->be, (size_t)n * part);
            if (!c->scratch) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        }
        for (int j = 0; j < n; j++)
            if (j != me && part) BRG__CHECK(post_one(g, 0, j, c->scratch + (size_t)j * part, part, tag, msg));
        for (int j = 0; j < n; j++) {
            brg__group_part(c->count, n, j, &off, &len);
            if (j != me && len) BRG__CHECK(post_one(g, 1, j, c->buf + (size_t)off * c->elem, (size_t)len * c->elem, tag, msg));
        }
    } else if (c->kind == BRG__BROADCAST) {
        size_t bytes = (size_t)c->count * c->elem;
        for (int j = 0; j < n && bytes; j++)
            if (j != me && (me == c->root || j == c->root)) BRG__CHECK(post_one(g, me == c->root, j, c->buf, bytes, tag, msg));
    } else { /* gather: my part to everyone; part j from member j */
        for (int j = 0; j < n; j++) {
            brg__group_part(c->count, n, j, &off, &len);
            if (j != me && len) BRG__CHECK(post_one(g, 0, j, c->buf + (size_t)off * c->elem, (size_t)len * c->elem, tag, msg));
        }
        for (int j = 0; j < n && my_len; j++)
            if (j != me) BRG__CHECK(post_one(g, 1, j, c->buf + (size_t)my_off * c->elem, (size_t)my_len * c->elem, tag, msg));
    }
    return BRG_OK;
}

/* My part of the sum, in member order: ((b0 + b1) + b2) + ..., into my part of buf. */
static void reduce_part(brg__group *g, collective *c) {
    int me = g->index, n = g->size;
    int64_t off = 0, len = 0;
    brg__group_part(c->count, n, me, &off, &len);
    if (n == 1 || len == 0) return;
    float *mine = (float *)(c->buf + (size_t)off * c->elem), *slots = (float *)c->scratch;
    float *acc = me == 0 ? mine : slots; /* b0: mine, or member 0's in scratch[0] */
    for (int j = 1; j < n; j++)
        g->be->vt->accumulate(g->be, acc, j == me ? mine : slots + (size_t)j * (size_t)len, len);
    if (acc != mine) g->be->vt->copy(g->be, mine, acc, (size_t)len * sizeof(float));
}

/* Moves the head collective on once its phase's requests are done; `block`: wait for them. Returns BRG_OK
 * with *moved set when it advanced. */
static brg_status step_head(brg__group *g, int block, int *moved, char *msg) {
    *moved = 0;
    collective *c = &g->queue[g->head];
    if (c->phase == 0) {
        c->phase = c->kind == BRG__ALLREDUCE || c->kind == BRG__REDUCE_SCATTER ? 1 : 2;
        *moved = 1;
        return start_phase(g, c, msg);
    }
    for (int k = 0; k < g->n_reqs; k++) {
        if (!g->reqs[k]) continue;
        if (!block && (!g->tp->vt->test || !g->tp->vt->test(g->tp, g->reqs[k]))) return BRG_OK;
        char why[BRG_ERROR_MESSAGE_MAX] = "";
        brg_status s = g->tp->vt->wait(g->tp, g->reqs[k], why);
        g->reqs[k] = NULL;
        if (s != BRG_OK) {
            int peer = g->req_peer[k] >= 0 ? g->req_peer[k] : -1 - g->req_peer[k];
            return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, s, "rank %d: a collective of its data-parallel group, %s rank %d: %s",
                                    g->tp->rank, g->req_peer[k] >= 0 ? "sending to" : "receiving from", peer, why);
        }
    }
    g->n_reqs = 0;
    *moved = 1;
    if (c->phase == 1) {
        reduce_part(g, c);
        if (c->scratch && c->scratch != g->scratch) g->be->vt->free(g->be, c->scratch);
        c->scratch = NULL;
        if (c->kind == BRG__ALLREDUCE) {
            c->phase = 2;
            return start_phase(g, c, msg);
        }
    }
    c->phase = 3;
    g->head = (g->head + 1) % g->capacity;
    return BRG_OK;
}

static brg_status advance(brg__group *g, int block, char *msg) {
    if (!g) return BRG_ERR_INVALID_ARGUMENT;
    while (g->head != g->tail) {
        int moved = 0;
        brg_status s = step_head(g, block, &moved, msg);
        if (s != BRG_OK) { /* the group is spent: drop what is queued */
            cancel_requests(g);
            for (int i = g->head; i != g->tail; i = (i + 1) % g->capacity)
                if (g->queue[i].scratch && g->queue[i].scratch != g->scratch) g->be->vt->free(g->be, g->queue[i].scratch);
            g->head = g->tail = 0;
            return s;
        }
        if (!moved) break;
    }
    return BRG_OK;
}

brg_status brg__group_progress(brg__group *g, char *msg) { return advance(g, 0, msg); }
brg_status brg__group_wait_all(brg__group *g, char *msg) { return advance(g, 1, msg); }

brg_status brg__group_reserve(brg__group *g, int64_t count, char *msg) {
    if (!g || count < 0) return BRG_ERR_INVALID_ARGUMENT;
    int64_t off = 0, len = 0;
    brg__group_part(count, g->size, 0, &off, &len); /* part 0 is the longest */
    size_t bytes = g->size > 1 ? (size_t)g->size * (size_t)len * sizeof(float) : 0;
    if (bytes <= g->scratch_bytes) return BRG_OK;
    if (brg__group_pending(g) > 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_USAGE, "group: reserving with collectives pending");
    unsigned char *p = g->be->vt->alloc(g->be, bytes);
    if (!p) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    if (g->scratch) g->be->vt->free(g->be, g->scratch);
    g->scratch = p;
    g->scratch_bytes = bytes;
    return BRG_OK;
}
