/* The in-process transport: ranks are threads of one process. A send copies its bytes into a message
 * queued for the receiving pair (eager, so the sender goes on computing); a receive takes the message
 * with its sequence number on that pair. Queues are bounded; waiting uses a condition variable, never
 * spinning; an abort wakes everyone.
 *
 * Rendezvous mode (capacity 0): a send still copies at its post, but waiting on it returns only once
 * the receiver has posted the matching receive, as a send completes on NCCL (always) and on MPI (past
 * the eager limit). Code that waits on a send before posting the receive its peer waits on deadlocks
 * there; here it times out, on the CPU, in a test. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "transport.h"

typedef struct message {
    struct message *next;
    uint64_t seq;
    uint64_t tag;
    size_t bytes;
    unsigned char *data;
} message;

typedef struct pair_queue {
    message *head, *tail;
    int count;
    uint64_t sent;    /* sequence of the next send */
    uint64_t posted;  /* sequence of the next posted receive */
} pair_queue;

typedef struct inproc_endpoint {
    brg__transport base; /* first */
    struct brg__inproc_fabric *fabric;
} inproc_endpoint;

struct brg__inproc_fabric {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int ranks, capacity;
    double timeout;
    brg_status aborted;
    pair_queue *queues; /* [src * ranks + dst] */
    inproc_endpoint *endpoints;
};

struct brg__request {
    int is_recv;
    int peer;
    uint64_t seq, tag;
    void *buf;
    size_t bytes;
};

static brg__inproc_fabric *fabric_of(brg__transport *t) { return ((inproc_endpoint *)t)->fabric; }

static pair_queue *queue(brg__inproc_fabric *f, int src, int dst) { return &f->queues[src * f->ranks + dst]; }

static void deadline_after(struct timespec *ts, double seconds) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    double whole = (double)(time_t)seconds;
    ts->tv_sec += (time_t)seconds;
    ts->tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits on the fabric's condition (lock held); returns ETIMEDOUT past the deadline. */
static int wait_changed(brg__inproc_fabric *f, const struct timespec *deadline) {
    if (f->timeout <= 0) return pthread_cond_wait(&f->changed, &f->lock);
    return pthread_cond_timedwait(&f->changed, &f->lock, deadline);
}

static brg__request *new_request(int is_recv, int peer, uint64_t tag, void *buf, size_t bytes) {
    brg__request *r = brg__calloc(1, sizeof *r);
    if (!r) return NULL;
    r->is_recv = is_recv;
    r->peer = peer;
    r->tag = tag;
    r->buf = buf;
    r->bytes = bytes;
    return r;
}

static brg_status check_peer(brg__transport *t, int peer) {
    return peer >= 0 && peer < t->ranks && peer != t->rank ? BRG_OK : BRG_ERR_INVALID_ARGUMENT;
}

static brg_status inproc_post_send(brg__transport *t, int peer, uint64_t tag, const void *buf, size_t bytes,
                                   brg__request **req) {
    BRG__CHECK(check_peer(t, peer));
    brg__inproc_fabric *f = fabric_of(t);
    message *m = brg__calloc(1, sizeof *m);
    unsigned char *data = brg__malloc(bytes ? bytes : 1);
    brg__request *r = new_request(0, peer, tag, NULL, bytes);
    if (!m || !data || !r) {
        free(m);
        free(data);
        free(r);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    memcpy(data, buf, bytes);
    m->tag = tag;
    m->bytes = bytes;
    m->data = data;
    struct timespec deadline;
    deadline_after(&deadline, f->timeout);
    pthread_mutex_lock(&f->lock);
    pair_queue *q = queue(f, t->rank, peer);
    brg_status st = BRG_OK;
    while (f->capacity > 0 && q->count >= f->capacity && f->aborted == BRG_OK)
        if (wait_changed(f, &deadline) == ETIMEDOUT) {
            st = BRG_ERR_TIMEOUT;
            break;
        }
    if (f->aborted != BRG_OK) st = BRG_ERR_CANCELLED;
    if (st == BRG_OK) {
        m->seq = r->seq = q->sent++;
        if (q->tail)
            q->tail->next = m;
        else
            q->head = m;
        q->tail = m;
        q->count++;
        pthread_cond_broadcast(&f->changed);
    }
    pthread_mutex_unlock(&f->lock);
    if (st != BRG_OK) {
        free(m);
        free(data);
        free(r);
        return st;
    }
    *req = r;
    return BRG_OK;
}

static brg_status inproc_post_recv(brg__transport *t, int peer, uint64_t tag, void *buf, size_t bytes,
                                   brg__request **req) {
    BRG__CHECK(check_peer(t, peer));
    brg__inproc_fabric *f = fabric_of(t);
    brg__request *r = new_request(1, peer, tag, buf, bytes);
    if (!r) return BRG_ERR_OUT_OF_MEMORY;
    pthread_mutex_lock(&f->lock);
    r->seq = queue(f, peer, t->rank)->posted++;
    if (f->capacity == 0) pthread_cond_broadcast(&f->changed); /* a sender waits for this post */
    pthread_mutex_unlock(&f->lock);
    *req = r;
    return BRG_OK;
}

/* Removes and returns the message with sequence `seq` from q, or NULL if it has not arrived. */
static message *take(pair_queue *q, uint64_t seq) {
    message *prev = NULL;
    for (message *m = q->head; m; prev = m, m = m->next) {
        if (m->seq != seq) continue;
        if (prev)
            prev->next = m->next;
        else
            q->head = m->next;
        if (q->tail == m) q->tail = prev;
        q->count--;
        return m;
    }
    return NULL;
}

/* Rendezvous: until the receiver has posted the receive this send's message is for. */
static brg_status wait_send_matched(brg__transport *t, brg__request *r, char *msg) {
    brg__inproc_fabric *f = fabric_of(t);
    struct timespec deadline;
    deadline_after(&deadline, f->timeout);
    pthread_mutex_lock(&f->lock);
    pair_queue *q = queue(f, t->rank, r->peer);
    brg_status st = BRG_OK;
    while (f->aborted == BRG_OK && q->posted <= r->seq)
        if (wait_changed(f, &deadline) == ETIMEDOUT) {
            st = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TIMEOUT,
                                  "rank %d waited %.0f s for rank %d to post the receive of message %llu (a send "
                                  "completes only once its receive is posted); giving up",
                                  t->rank, f->timeout, r->peer, (unsigned long long)r->seq);
            break;
        }
    if (st == BRG_OK && q->posted <= r->seq)
        st = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_CANCELLED,
                              "rank %d stopped waiting for rank %d: another worker failed", t->rank, r->peer);
    pthread_mutex_unlock(&f->lock);
    free(r);
    return st;
}

static brg_status inproc_wait(brg__transport *t, brg__request *r, char *msg) {
    if (!r) return BRG_ERR_INVALID_ARGUMENT;
    brg__inproc_fabric *f = fabric_of(t);
    if (!r->is_recv && f->capacity > 0) { /* eager: the bytes were copied when posted */
        free(r);
        return BRG_OK;
    }
    if (!r->is_recv) return wait_send_matched(t, r, msg);
    struct timespec deadline;
    deadline_after(&deadline, f->timeout);
    pthread_mutex_lock(&f->lock);
    pair_queue *q = queue(f, r->peer, t->rank);
    message *m = NULL;
    brg_status st = BRG_OK;
    while (f->aborted == BRG_OK && !(m = take(q, r->seq)))
        if (wait_changed(f, &deadline) == ETIMEDOUT) {
            st = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TIMEOUT,
                                  "rank %d waited %.0f s for message %llu from rank %d; giving up", t->rank,
                                  f->timeout, (unsigned long long)r->seq, r->peer);
            break;
        }
    if (!m && st == BRG_OK)
        st = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_CANCELLED,
                              "rank %d stopped waiting for rank %d: another worker failed", t->rank, r->peer);
    if (m) pthread_cond_broadcast(&f->changed); /* room for a blocked sender */
    pthread_mutex_unlock(&f->lock);
    if (m && (m->tag != r->tag || m->bytes != r->bytes))
        st = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TRANSPORT,
                              "rank %d expected message %llu from rank %d with tag %016llx and %zu bytes, got tag "
                              "%016llx and %zu bytes",
                              t->rank, (unsigned long long)r->seq, r->peer, (unsigned long long)r->tag, r->bytes,
                              (unsigned long long)m->tag, m->bytes);
    else if (m)
        memcpy(r->buf, m->data, m->bytes);
    if (m) {
        free(m->data);
        free(m);
    }
    free(r);
    return st;
}

static int inproc_test(brg__transport *t, brg__request *r) {
    if (!r) return 0;
    brg__inproc_fabric *f = fabric_of(t);
    if (!r->is_recv && f->capacity > 0) return 1;
    int done = 0;
    pthread_mutex_lock(&f->lock);
    if (f->aborted != BRG_OK) {
        done = 1; /* the wait returns at once, with the abort */
    } else if (!r->is_recv) {
        done = queue(f, t->rank, r->peer)->posted > r->seq;
    } else {
        for (message *m = queue(f, r->peer, t->rank)->head; m && !done; m = m->next) done = m->seq == r->seq;
    }
    pthread_mutex_unlock(&f->lock);
    return done;
}

static void inproc_stop_all(brg__transport *t, brg_status status) {
    brg__inproc_fabric *f = fabric_of(t);
    pthread_mutex_lock(&f->lock);
    if (f->aborted == BRG_OK) f->aborted = status == BRG_OK ? BRG_ERR_CANCELLED : status;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
}

static void inproc_cancel(brg__transport *t, brg__request *r) {
    (void)t;
    free(r);
}

static void inproc_destroy(brg__transport *t) { (void)t; /* endpoints belong to the fabric */ }

static const brg__transport_vtable inproc_vtable = {
    .name = "in-process",
    .post_send = inproc_post_send,
    .post_recv = inproc_post_recv,
    .wait = inproc_wait,
    .test = inproc_test,
    .cancel = inproc_cancel,
    .stop_all = inproc_stop_all,
    .destroy = inproc_destroy,
};

brg_status brg__inproc_fabric_create(brg__inproc_fabric **out, int ranks, int capacity, double timeout_seconds,
                                     char *msg) {
    if (!out || ranks < 1 || capacity < 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "in-process transport: %d ranks and capacity %d (ranks >= 1, capacity >= 0)", ranks,
                                capacity);
    brg__inproc_fabric *f = brg__calloc(1, sizeof *f);
    if (!f) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    f->queues = brg__calloc((size_t)ranks * (size_t)ranks, sizeof *f->queues);
    f->endpoints = brg__calloc((size_t)ranks, sizeof *f->endpoints);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int ok = f->queues && f->endpoints && pthread_mutex_init(&f->lock, NULL) == 0 &&
             pthread_cond_init(&f->changed, &attr) == 0;
    pthread_condattr_destroy(&attr);
    if (!ok) {
        free(f->queues);
        free(f->endpoints);
        free(f);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    f->ranks = ranks;
    f->capacity = capacity;
    f->timeout = timeout_seconds;
    for (int r = 0; r < ranks; r++) {
        f->endpoints[r].base.vt = &inproc_vtable;
        f->endpoints[r].base.rank = r;
        f->endpoints[r].base.ranks = ranks;
        f->endpoints[r].fabric = f;
    }
    *out = f;
    return BRG_OK;
}

brg__transport *brg__inproc_endpoint(brg__inproc_fabric *f, int rank) {
    return f && rank >= 0 && rank < f->ranks ? &f->endpoints[rank].base : NULL;
}

void brg__inproc_fabric_destroy(brg__inproc_fabric *f) {
    if (!f) return;
    for (int i = 0; i < f->ranks * f->ranks; i++)
        for (message *m = f->queues[i].head, *next; m; m = next) {
            next = m->next;
            free(m->data);
            free(m);
        }
    pthread_cond_destroy(&f->changed);
    pthread_mutex_destroy(&f->lock);
    free(f->queues);
    free(f->endpoints);
    free(f);
}
