// The NCCL transport (engine/transport/transport.h): ranks are threads of one process, each driving the GPU
// of its CUDA backend (brg__nccl_fabric_create), or one rank per process (brg__nccl_fabric_create_rank).
//
// Routes. A pair of ranks on distinct GPUs talks through NCCL: one communicator for the whole group when
// every rank has a GPU of its own, else one two-rank communicator per such pair. Communicators are
// non-blocking (ncclCommInitRankConfig with blocking = 0, made in one group from the creating thread) and
// polled with the fabric's timeout, at creation and after every group, so that a GPU or peer that never
// joins ends in an error instead of a host thread blocked inside NCCL.
// Ranks sharing a GPU (a pipeline of several stages on one GPU) cannot be NCCL ranks together, so they
// pass tensors by cudaMemcpyAsync. A rank sending to itself uses NCCL (a one-rank communicator when the
// group has none), which accepts a send and a receive to self inside one group.
//
// Ordering. A post records an event on the rank's compute stream: the transfer reads or overwrites the
// buffer only after the work queued there before the post. NCCL sends and receives are held until the
// rank queues more compute and posts again, or waits; then they are issued in posting order, consecutive
// ones of one communicator inside one ncclGroupStart/End on the rank's transfer stream (the tensors of
// one boundary, a send and a receive posted together, a send to self and its receive), and an event
// after the group marks their completion.
// A device copy is issued as soon as both of its halves are posted, on the stream of whichever posted
// second, after both posts' events. A wait returns once its transfer has completed (polled on the host),
// so the compute work queued after it needs no further ordering.
//
// Every post is also matched on the host, in order, with the other side's post of the same pair, so a
// tag or size that differs is reported (with both) instead of corrupting a buffer or hanging NCCL.
//
// One rank per process (multi_process). The fabric has the group's rank count but only this process's
// endpoint is set up (brg__nccl_endpoint gives NULL for the others). Rank 0 makes the NCCL unique id, the
// caller's broadcast (MPI) hands it to every rank, and each joins the group's one non-blocking communicator,
// polled with the timeout as above; every route, self included, goes through it. The host-side match is
// impossible across processes: posts are held and issued in posting order as above, with the receiver's
// sizes (the CPU transports check tags and sizes). An abort aborts the communicator and marks the fabric
// aborted; the peers learn of it through the CPU transport or their own timeout.
//
// Failures. A wait polls its event, the communicator's ncclCommGetAsyncError, the fabric's abort flag and
// its deadline. On an error, a timeout or an abort, the rank aborts its communicators (ncclCommAbort) so
// that no NCCL kernel stays blocked on a dead peer, marks the fabric aborted, and returns: BRG_ERR_TIMEOUT,
// BRG_ERR_TRANSPORT, or BRG_ERR_CANCELLED on the ranks that did not fail first.
#include <pthread.h>
#include <time.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <nvtx3/nvToolsExt.h>

#include "common.cuh"
#include "cuda.h"
extern "C" {
#include "runtime/backend.h"
#include "transport/transport.h"
}

#define FLUSH_AT 64 /* held NCCL operations that trigger an issue without waiting for a wait */

typedef enum route_kind { ROUTE_NCCL = 0, ROUTE_COPY = 1 } route_kind;

typedef struct route {
    route_kind kind;
    ncclComm_t comm; /* NCCL: the communicator the rank uses for this peer (NULL for self until needed) */
    int nccl_peer;   /* the peer's rank in that communicator */
} route;

/* An event and the requests that still need it. */
typedef struct completion {
    cudaEvent_t event;
    int refs;
} completion;

struct brg__request {
    int is_send, rank, peer;
    uint64_t tag;
    size_t bytes;
    void *buf;
    route_kind kind;
    ncclComm_t comm;
    cudaEvent_t ready; /* the compute stream's position at the post */
    completion *done;  /* set once the transfer is queued on a stream */
    brg_status status; /* a failure found before the transfer (a mismatch), reported by wait */
    char message[BRG_ERROR_MESSAGE_MAX];
    struct brg__request *next_in_pair;          /* unmatched posts of an ordered pair */
    struct brg__request *prev_live, *next_live; /* the endpoint's outstanding requests */
    int queued;
};

typedef struct pair_queue {
    brg__request *head, *tail;
} pair_queue;

typedef struct endpoint {
    brg__transport base; /* first */
    struct brg__nccl_fabric *fabric;
    int device;
    brg__backend *backend;
    cudaStream_t compute, transfer;
    route *routes;     /* [peer] */
    ncclComm_t *owned; /* communicators this rank uses (to abort or destroy) */
    int n_owned, cap_owned;
    int comms_aborted;
    brg__request **held; /* NCCL posts not issued yet, in posting order */
    int n_held, cap_held;
    uint64_t held_epoch; /* the backend's epoch when they were posted */
    brg__request *live;  /* every request not yet waited */
} endpoint;

struct brg__nccl_fabric {
    int ranks;
    int multi_process; /* one rank per process: only this process's endpoint is set up, no host-side match */
    double timeout;
    int sync_ready; /* lock and changed were initialized */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    brg_status aborted;
    char abort_message[BRG_ERROR_MESSAGE_MAX];
    pair_queue *queues;  /* [src * ranks + dst]; NULL when multi_process */
    endpoint *endpoints; /* [rank]; an endpoint never set up has no fabric */
};

static endpoint *endpoint_of(brg__transport *t) { return (endpoint *)t; }

static void sleep_briefly(void) {
    struct timespec ts = {0, 20000}; /* 20 us */
    nanosleep(&ts, NULL);
}

/* ---- non-blocking communicators ---- */

/* Polls comms until none is in progress: BRG_OK when all are ready, BRG_ERR_TRANSPORT naming the first
 * that failed, BRG_ERR_TIMEOUT past the deadline (0: none). Non-blocking communicators return from
 * ncclCommInitRankConfig and ncclGroupEnd before their work is done (connection set-up included): a peer
 * that never comes then shows as a timeout here, not as a host thread blocked inside NCCL. */
static brg_status poll_comms(const ncclComm_t *comms, int n, double deadline, const char *what, char *msg) {
    for (;;) {
        int busy = 0;
        for (int i = 0; i < n; i++) {
            if (!comms[i]) continue;
            ncclResult_t state = ncclInProgress;
            ncclResult_t nr = ncclCommGetAsyncError(comms[i], &state);
            if (nr != ncclSuccess) state = nr;
            if (state == ncclInProgress) busy = 1;
            else if (state != ncclSuccess)
                return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TRANSPORT, "%s: communicator %d of %d: %s",
                                        what, i, n, ncclGetErrorString(state));
        }
        if (!busy) return BRG_OK;
        if (deadline > 0 && brg__now_seconds() >= deadline)
            return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TIMEOUT,
                                    "%s: still in progress when the timeout ran out (a GPU or peer that never joined?)",
                                    what);
        sleep_briefly();
    }
}

/* Non-blocking communicators for ranks first .. first + n - 1 of a clique of `size` ranks that share id,
 * rank first + i on GPU devices[i], made from this thread in one group and polled with the timeout; on
 * failure every one made is aborted and comms[] is zeroed. */
static brg_status join_clique(ncclComm_t *comms, int n, const ncclUniqueId *id, int size, int first,
                              const int *devices, double timeout, const char *what, char *msg) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    brg_status s = BRG_OK;
    double deadline = timeout > 0 ? brg__now_seconds() + timeout : 0.0;
    memset(comms, 0, (size_t)n * sizeof *comms);
    ncclResult_t nr = ncclGroupStart();
    for (int i = 0; i < n && nr == ncclSuccess; i++) {
        if (cudaSetDevice(devices[i]) != cudaSuccess) {
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TRANSPORT, "%s: cudaSetDevice(%d) failed", what,
                                 devices[i]);
            break;
        }
        nr = ncclCommInitRankConfig(&comms[i], size, *id, first + i, &config);
        if (nr == ncclInProgress) nr = ncclSuccess;
    }
    ncclResult_t end = ncclGroupEnd();
    if (s == BRG_OK && nr != ncclSuccess)
        s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TRANSPORT, "%s: ncclCommInitRankConfig: %s", what,
                             ncclGetErrorString(nr));
    if (s == BRG_OK && end != ncclSuccess && end != ncclInProgress)
        s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TRANSPORT, "%s: ncclGroupEnd: %s", what,
                             ncclGetErrorString(end));
    if (s == BRG_OK) s = poll_comms(comms, n, deadline, what, msg);
    if (s != BRG_OK)
        for (int i = 0; i < n; i++)
            if (comms[i]) {
                ncclCommAbort(comms[i]);
                comms[i] = NULL;
            }
    return s;
}

/* n non-blocking communicators of one clique of this process, rank i on GPU devices[i] (join_clique). */
static brg_status init_comms(ncclComm_t *comms, int n, const int *devices, double timeout, const char *what,
                             char *msg) {
    ncclUniqueId id;
    ncclResult_t nr = ncclGetUniqueId(&id);
    if (nr != ncclSuccess)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TRANSPORT, "%s: ncclGetUniqueId: %s", what,
                                ncclGetErrorString(nr));
    return join_clique(comms, n, &id, n, 0, devices, timeout, what, msg);
}

/* The unique id of a clique of processes: rank 0 makes it, bcast hands it to every rank. Rank 0 broadcasts
 * even when ncclGetUniqueId failed (an all-zero id, which NCCL never makes), so that the others fail at
 * once rather than waiting out the timeout in the broadcast. */
static brg_status share_unique_id(ncclUniqueId *id, int rank, brg__bcast_fn bcast, void *bcast_ctx,
                                  const char *what, char *msg) {
    ncclUniqueId none;
    memset(&none, 0, sizeof none);
    *id = none;
    brg_status made = BRG_OK;
    if (rank == 0) {
        ncclResult_t nr = ncclGetUniqueId(id);
        if (nr != ncclSuccess) {
            made = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TRANSPORT, "%s: ncclGetUniqueId: %s", what,
                                    ncclGetErrorString(nr));
            *id = none;
        }
    }
    char text[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status s = bcast(bcast_ctx, id, sizeof *id, 0, text);
    if (made != BRG_OK) return made;
    if (s != BRG_OK)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, s, "%s: broadcasting the NCCL unique id from rank 0: %s",
                                what, text);
    if (memcmp(id, &none, sizeof none) == 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TRANSPORT,
                                "%s: rank 0 could not make the NCCL unique id", what);
    return BRG_OK;
}

/* ---- fabric state ---- */

static void fabric_abort_locked(brg__nccl_fabric *f, brg_status status, const char *message) {
    if (f->aborted != BRG_OK) return;
    f->aborted = status == BRG_OK ? BRG_ERR_CANCELLED : status;
    snprintf(f->abort_message, sizeof f->abort_message, "%s", message ? message : "");
    pthread_cond_broadcast(&f->changed);
}

static void fabric_abort(brg__nccl_fabric *f, brg_status status, const char *message) {
    pthread_mutex_lock(&f->lock);
    fabric_abort_locked(f, status, message);
    pthread_mutex_unlock(&f->lock);
}

static brg_status fabric_aborted(brg__nccl_fabric *f) {
    pthread_mutex_lock(&f->lock);
    brg_status s = f->aborted;
    pthread_mutex_unlock(&f->lock);
    return s;
}

/* Aborts the communicators this rank uses, so no NCCL kernel of its stays blocked. Its own thread only. */
static void abort_comms(endpoint *e) {
    if (e->comms_aborted) return;
    e->comms_aborted = 1;
    cudaSetDevice(e->device);
    for (int i = 0; i < e->n_owned; i++) ncclCommAbort(e->owned[i]);
    e->n_owned = 0;
}

static int own_comm(endpoint *e, ncclComm_t comm) {
    if (e->n_owned == e->cap_owned) {
        int cap = e->cap_owned ? 2 * e->cap_owned : 8;
        ncclComm_t *o = (ncclComm_t *)realloc(e->owned, (size_t)cap * sizeof *o);
        if (!o) return 0;
        e->owned = o;
        e->cap_owned = cap;
    }
    e->owned[e->n_owned++] = comm;
    return 1;
}

/* ---- requests ---- */

static void completion_release(completion *c) {
    if (c && --c->refs == 0) {
        cudaEventDestroy(c->event);
        free(c);
    }
}

static void live_remove(endpoint *e, brg__request *r) {
    if (r->prev_live)
        r->prev_live->next_live = r->next_live;
    else
        e->live = r->next_live;
    if (r->next_live) r->next_live->prev_live = r->prev_live;
}

/* Frees a request (the fabric lock held, so that its pair queue and completion are consistent). */
static void request_free_locked(brg__nccl_fabric *f, endpoint *e, brg__request *r) {
    if (r->queued) { /* still unmatched: take it out of its pair's queue */
        pair_queue *q =
            r->is_send ? &f->queues[r->rank * f->ranks + r->peer] : &f->queues[r->peer * f->ranks + r->rank];
        brg__request *prev = NULL;
        for (brg__request *x = q->head; x; prev = x, x = x->next_in_pair)
            if (x == r) {
                if (prev)
                    prev->next_in_pair = x->next_in_pair;
                else
                    q->head = x->next_in_pair;
                if (q->tail == x) q->tail = prev;
                break;
            }
    }
    for (int i = 0; i < e->n_held; i++)
        if (e->held[i] == r) {
            memmove(&e->held[i], &e->held[i + 1], (size_t)(e->n_held - i - 1) * sizeof *e->held);
            e->n_held--;
            break;
        }
    live_remove(e, r);
    completion_release(r->done);
    if (r->ready) cudaEventDestroy(r->ready);
    free(r);
}

static completion *completion_record(cudaStream_t stream, int refs, char *msg, brg_status *status) {
    completion *c = (completion *)calloc(1, sizeof *c);
    if (!c) {
        *status = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    cudaError_t err = cudaEventCreateWithFlags(&c->event, cudaEventDisableTiming);
    if (err == cudaSuccess) err = cudaEventRecord(c->event, stream);
    if (err != cudaSuccess) {
        *status = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TRANSPORT,
                                   "recording a transfer's completion: %s", cudaGetErrorString(err));
        if (c->event) cudaEventDestroy(c->event);
        free(c);
        return NULL;
    }
    c->refs = refs;
    *status = BRG_OK;
    return c;
}

/* Both halves of a device copy are posted: queue the copy on this rank's transfer stream. Lock held. */
static void issue_copy_locked(brg__nccl_fabric *f, endpoint *e, brg__request *send, brg__request *recv) {
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status s = BRG_OK;
    cudaError_t err = cudaStreamWaitEvent(e->transfer, send->ready, 0);
    if (err == cudaSuccess) err = cudaStreamWaitEvent(e->transfer, recv->ready, 0);
    if (err == cudaSuccess)
        err = cudaMemcpyAsync(recv->buf, send->buf, send->bytes, cudaMemcpyDeviceToDevice, e->transfer);
    if (err != cudaSuccess)
        s = brg__message_set(msg, sizeof msg, BRG_ERR_TRANSPORT, "copying %zu bytes from rank %d to rank %d: %s",
                             send->bytes, send->rank, recv->rank, cudaGetErrorString(err));
    completion *c = s == BRG_OK ? completion_record(e->transfer, 2, msg, &s) : NULL;
    if (s != BRG_OK) {
        send->status = recv->status = s;
        snprintf(send->message, sizeof send->message, "%s", msg);
        snprintf(recv->message, sizeof recv->message, "%s", msg);
        fabric_abort_locked(f, s, msg);
    } else {
        send->done = recv->done = c;
    }
    pthread_cond_broadcast(&f->changed);
}

/* Matches r with the other side's oldest unmatched post of the pair, or queues it. Lock held. */
static void match_locked(brg__nccl_fabric *f, endpoint *e, brg__request *r) {
    int src = r->is_send ? r->rank : r->peer, dst = r->is_send ? r->peer : r->rank;
    pair_queue *q = &f->queues[src * f->ranks + dst];
    brg__request *other = q->head;
    if (!other || other->is_send == r->is_send) {
        r->next_in_pair = NULL;
        if (q->tail)
            q->tail->next_in_pair = r;
        else
            q->head = r;
        q->tail = r;
        r->queued = 1;
        return;
    }
    q->head = other->next_in_pair;
    if (!q->head) q->tail = NULL;
    other->queued = 0;
    brg__request *send = r->is_send ? r : other, *recv = r->is_send ? other : r;
    if (send->tag != recv->tag || send->bytes != recv->bytes) {
        char msg[BRG_ERROR_MESSAGE_MAX];
        snprintf(msg, sizeof msg,
                 "rank %d expected a message from rank %d with tag %016llx and %zu bytes; rank %d sent tag %016llx "
                 "and %zu bytes",
                 recv->rank, send->rank, (unsigned long long)recv->tag, recv->bytes, send->rank,
                 (unsigned long long)send->tag, send->bytes);
        send->status = recv->status = BRG_ERR_TRANSPORT;
        snprintf(send->message, sizeof send->message, "%s", msg);
        snprintf(recv->message, sizeof recv->message, "%s", msg);
        fabric_abort_locked(f, BRG_ERR_TRANSPORT, msg);
        return;
    }
    if (r->kind == ROUTE_COPY) issue_copy_locked(f, e, send, recv);
}

/* Issues the held NCCL operations: runs of one communicator, each inside one group. */
static brg_status issue_held(endpoint *e, char *msg) {
    brg__nccl_fabric *f = e->fabric;
    brg_status s = BRG_OK;
    int i = 0;
    char local[BRG_ERROR_MESSAGE_MAX] = "";
    if (!msg) msg = local;
    if (e->n_held == 0) return BRG_OK;
    /* After a failure nothing more is issued (a mismatched pair would corrupt memory or hang NCCL). */
    if (e->comms_aborted || fabric_aborted(f) != BRG_OK) {
        s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_CANCELLED,
                             "rank %d: transfers stopped after a failure", e->base.rank);
        goto fail;
    }
    while (i < e->n_held && s == BRG_OK) {
        int j = i;
        while (j < e->n_held && e->held[j]->comm == e->held[i]->comm) j++;
        /* The last post's event covers the earlier ones: one compute stream. */
        BRG__CUDA_CHECK_GOTO(s, cudaStreamWaitEvent(e->transfer, e->held[j - 1]->ready, 0), msg, fail);
        BRG__NCCL_CHECK_GOTO(s, ncclGroupStart(), msg, fail);
        for (int k = i; k < j; k++) {
            brg__request *r = e->held[k];
            int peer = e->routes[r->peer].nccl_peer;
            ncclResult_t nr = r->is_send ? ncclSend(r->buf, r->bytes, ncclUint8, peer, r->comm, e->transfer)
                                         : ncclRecv(r->buf, r->bytes, ncclUint8, peer, r->comm, e->transfer);
            if (nr != ncclSuccess && nr != ncclInProgress && s == BRG_OK)
                s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TRANSPORT, "%s of %zu bytes %s rank %d: %s",
                                     r->is_send ? "ncclSend" : "ncclRecv", r->bytes, r->is_send ? "to" : "from",
                                     r->peer, ncclGetErrorString(nr));
        }
        ncclResult_t end = ncclGroupEnd();
        if (end != ncclSuccess && end != ncclInProgress && s == BRG_OK)
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TRANSPORT, "ncclGroupEnd: %s",
                                 ncclGetErrorString(end));
        /* A non-blocking communicator may still be enqueueing the group (connecting to a peer for the
         * first time): the completion event goes on the stream only after the kernels. */
        if (s == BRG_OK && end == ncclInProgress)
            s = poll_comms(&e->held[i]->comm, 1, f->timeout > 0 ? brg__now_seconds() + f->timeout : 0.0,
                           "enqueueing NCCL sends and receives", msg);
        if (s != BRG_OK) goto fail;
        completion *c = completion_record(e->transfer, j - i, msg, &s);
        if (!c) goto fail;
        pthread_mutex_lock(&f->lock);
        for (int k = i; k < j; k++) e->held[k]->done = c;
        pthread_mutex_unlock(&f->lock);
        i = j;
    }
    e->n_held = 0;
    return BRG_OK;
fail:
    pthread_mutex_lock(&f->lock);
    for (int k = i; k < e->n_held; k++)
        if (e->held[k]->status == BRG_OK) {
            e->held[k]->status = s;
            snprintf(e->held[k]->message, sizeof e->held[k]->message, "%s", msg);
        }
    fabric_abort_locked(f, s, msg);
    pthread_mutex_unlock(&f->lock);
    memmove(e->held, e->held + i, (size_t)(e->n_held - i) * sizeof *e->held);
    e->n_held -= i;
    return s;
}

/* ---- the endpoint's entries ---- */

/* The communicator for a transfer to self, made on first use when the group has none. */
static brg_status self_comm(endpoint *e, ncclComm_t *comm) {
    route *rt = &e->routes[e->base.rank];
    if (!rt->comm) {
        ncclComm_t c = NULL;
        int device = e->device;
        char msg[BRG_ERROR_MESSAGE_MAX];
        BRG__CHECK(init_comms(&c, 1, &device, e->fabric->timeout, "the communicator for sends to self", msg));
        if (!own_comm(e, c)) {
            ncclCommDestroy(c);
            return BRG_ERR_OUT_OF_MEMORY;
        }
        rt->comm = c;
        rt->nccl_peer = 0;
    }
    *comm = rt->comm;
    return BRG_OK;
}

static brg_status post(brg__transport *t, int is_send, int peer, uint64_t tag, void *buf, size_t bytes,
                       brg__request **out) {
    endpoint *e = endpoint_of(t);
    brg__nccl_fabric *f = e->fabric;
    if (!out || peer < 0 || peer >= t->ranks || (!buf && bytes)) return BRG_ERR_INVALID_ARGUMENT;
    if (!e->backend) return BRG_ERR_INVALID_USAGE; /* brg__nccl_fabric_attach first */
    BRG__CHECK(fabric_aborted(f) != BRG_OK ? BRG_ERR_CANCELLED : BRG_OK);
    if (cudaSetDevice(e->device) != cudaSuccess) return BRG_ERR_BACKEND;
    BRG__CHECK(brg__cuda_backend_flush(e->backend, NULL));
    /* Posts with no compute queued between them go out as one group; a post after new compute first
     * issues what is held, so a receive starts no later than the rank's next post or wait. */
    uint64_t epoch = brg__cuda_backend_epoch(e->backend);
    if (e->n_held > 0 && epoch != e->held_epoch) issue_held(e, NULL);
    e->held_epoch = epoch;
    route *rt = &e->routes[peer];
    ncclComm_t comm = rt->comm;
    if (rt->kind == ROUTE_NCCL && peer == t->rank) BRG__CHECK(self_comm(e, &comm));
    brg__request *r = (brg__request *)calloc(1, sizeof *r);
    if (!r) return BRG_ERR_OUT_OF_MEMORY;
    r->is_send = is_send;
    r->rank = t->rank;
    r->peer = peer;
    r->tag = tag;
    r->bytes = bytes;
    r->buf = buf;
    r->kind = rt->kind;
    r->comm = comm;
    if (cudaEventCreateWithFlags(&r->ready, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventRecord(r->ready, e->compute) != cudaSuccess) {
        cudaGetLastError();
        if (r->ready) cudaEventDestroy(r->ready);
        free(r);
        return BRG_ERR_BACKEND;
    }
    if (r->kind == ROUTE_NCCL) {
        if (e->n_held == e->cap_held) {
            int cap = e->cap_held ? 2 * e->cap_held : FLUSH_AT;
            brg__request **h = (brg__request **)realloc(e->held, (size_t)cap * sizeof *h);
            if (!h) {
                cudaEventDestroy(r->ready);
                free(r);
                return BRG_ERR_OUT_OF_MEMORY;
            }
            e->held = h;
            e->cap_held = cap;
        }
        e->held[e->n_held++] = r;
    }
    pthread_mutex_lock(&f->lock);
    r->next_live = e->live;
    if (e->live) e->live->prev_live = r;
    e->live = r;
    if (!f->multi_process) match_locked(f, e, r); /* the other side is in another process: nothing to match */
    pthread_mutex_unlock(&f->lock);
    *out = r;
    /* A send to self must meet its receive inside one group: never issue between the two halves. */
    if (e->n_held >= FLUSH_AT && peer != t->rank) issue_held(e, NULL);
    return BRG_OK;
}

static brg_status nccl_post_send(brg__transport *t, int peer, uint64_t tag, const void *buf, size_t bytes,
                                 brg__request **req) {
    return post(t, 1, peer, tag, (void *)buf, bytes, req);
}

static brg_status nccl_post_recv(brg__transport *t, int peer, uint64_t tag, void *buf, size_t bytes,
                                 brg__request **req) {
    return post(t, 0, peer, tag, buf, bytes, req);
}

/* Ends a failed wait: the rank's communicators are aborted and every rank told. */
static brg_status fail_wait(endpoint *e, brg__request *r, brg_status status, const char *message, char *msg) {
    brg__nccl_fabric *f = e->fabric;
    brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, status, "%s", message);
    abort_comms(e);
    pthread_mutex_lock(&f->lock);
    fabric_abort_locked(f, status, message);
    request_free_locked(f, e, r);
    pthread_mutex_unlock(&f->lock);
    return status;
}

static void describe(const brg__request *r, char *buf, size_t size) {
    snprintf(buf, size, "a %s of %zu bytes %s rank %d (tag %016llx)", r->is_send ? "send" : "receive", r->bytes,
             r->is_send ? "to" : "from", r->peer, (unsigned long long)r->tag);
}

static brg_status nccl_wait(brg__transport *t, brg__request *r, char *msg) {
    endpoint *e = endpoint_of(t);
    brg__nccl_fabric *f = e->fabric;
    if (!r) return BRG_ERR_INVALID_ARGUMENT;
    char what[160], text[BRG_ERROR_MESSAGE_MAX];
    describe(r, what, sizeof what);
    cudaSetDevice(e->device);
    nvtxRangePushA(r->is_send ? "wait: send" : "wait: receive");
    char issue_msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status issued = issue_held(e, issue_msg);
    double deadline = f->timeout > 0 ? brg__now_seconds() + f->timeout : 0.0;
    /* Until the transfer is queued (a device copy waits for the other half's post). */
    pthread_mutex_lock(&f->lock);
    while (!r->done && r->status == BRG_OK && f->aborted == BRG_OK && issued == BRG_OK) {
        if (deadline > 0 && brg__now_seconds() >= deadline) break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 1000000; /* 1 ms: the deadline is checked at least this often */
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&f->changed, &f->lock, &ts);
    }
    brg_status own = r->status, aborted = f->aborted;
    int queued = r->done != NULL;
    char own_message[BRG_ERROR_MESSAGE_MAX];
    snprintf(own_message, sizeof own_message, "%s", r->message);
    pthread_mutex_unlock(&f->lock);
    brg_status s = BRG_OK;
    if (own != BRG_OK) {
        s = fail_wait(e, r, own, own_message, msg);
    } else if (issued != BRG_OK) {
        snprintf(text, sizeof text, "rank %d: issuing transfers failed: %s", t->rank, issue_msg);
        s = fail_wait(e, r, issued, text, msg);
    } else if (!queued && aborted != BRG_OK) {
        snprintf(text, sizeof text, "rank %d stopped waiting for %s: another worker failed", t->rank, what);
        s = fail_wait(e, r, BRG_ERR_CANCELLED, text, msg);
    } else if (!queued) {
        snprintf(text, sizeof text, "rank %d waited %.0f s for %s, which rank %d never posted; giving up", t->rank,
                 f->timeout, what, r->peer);
        s = fail_wait(e, r, BRG_ERR_TIMEOUT, text, msg);
    }
    if (s != BRG_OK) {
        nvtxRangePop();
        return s;
    }
    /* Until the transfer has run. */
    for (long polls = 0;; polls++) {
        cudaError_t err = cudaEventQuery(r->done->event);
        if (err == cudaSuccess) break;
        if (err != cudaErrorNotReady) {
            snprintf(text, sizeof text, "rank %d: %s failed on the device: %s", t->rank, what, cudaGetErrorString(err));
            s = fail_wait(e, r, BRG_ERR_TRANSPORT, text, msg);
            break;
        }
        if (e->comms_aborted) { /* aborted after the transfer was issued: it may never complete */
            snprintf(text, sizeof text, "rank %d stopped waiting for %s: its transfers were aborted", t->rank, what);
            s = fail_wait(e, r, BRG_ERR_CANCELLED, text, msg);
            break;
        }
        ncclResult_t async = ncclSuccess;
        if (r->kind == ROUTE_NCCL && r->comm && ncclCommGetAsyncError(r->comm, &async) == ncclSuccess &&
            async != ncclSuccess && async != ncclInProgress) {
            snprintf(text, sizeof text, "rank %d: NCCL reported an error during %s: %s (%s)", t->rank, what,
                     ncclGetErrorString(async), ncclGetLastError(r->comm));
            s = fail_wait(e, r, BRG_ERR_TRANSPORT, text, msg);
            break;
        }
        if ((polls & 63) == 0 && fabric_aborted(f) != BRG_OK) {
            snprintf(text, sizeof text, "rank %d stopped waiting for %s: another worker failed", t->rank, what);
            s = fail_wait(e, r, BRG_ERR_CANCELLED, text, msg);
            break;
        }
        if (deadline > 0 && brg__now_seconds() >= deadline) {
            snprintf(text, sizeof text, "rank %d waited %.0f s for %s to complete; giving up (a dead or stalled peer)",
                     t->rank, f->timeout, what);
            s = fail_wait(e, r, BRG_ERR_TIMEOUT, text, msg);
            break;
        }
        if (polls > 32) sleep_briefly();
    }
    if (s == BRG_OK) {
        pthread_mutex_lock(&f->lock);
        request_free_locked(f, e, r);
        pthread_mutex_unlock(&f->lock);
    }
    nvtxRangePop();
    return s;
}

/* Frees a request a failed step will not wait for. A NCCL transfer still running then can no longer
 * complete (its step is over): the rank's communicators are aborted so that it ends. */
static void nccl_cancel(brg__transport *t, brg__request *r) {
    endpoint *e = endpoint_of(t);
    brg__nccl_fabric *f = e->fabric;
    if (!r) return;
    cudaSetDevice(e->device);
    int running = r->kind == ROUTE_NCCL && r->done && cudaEventQuery(r->done->event) == cudaErrorNotReady;
    cudaGetLastError();
    if (running) abort_comms(e);
    pthread_mutex_lock(&f->lock);
    request_free_locked(f, e, r);
    pthread_mutex_unlock(&f->lock);
}

/* Marks the fabric aborted (waking the other ranks of this process) and aborts this rank's communicators.
 * One rank per process: the same, with no other endpoint to wake; peers learn of it through the CPU
 * transport's stop_all or their own timeout. */
static void nccl_abort(brg__transport *t, brg_status status) {
    endpoint *e = endpoint_of(t);
    char text[BRG_ERROR_MESSAGE_MAX];
    snprintf(text, sizeof text, "rank %d failed", t->rank);
    fabric_abort(e->fabric, status, text);
    abort_comms(e);
}

/* Whether a wait would return at once: the transfer has run on its stream, or the request already failed.
 * Issues held posts first, so that collectives posted between computations start moving. */
static int nccl_test(brg__transport *t, brg__request *r) {
    endpoint *e = endpoint_of(t);
    brg__nccl_fabric *f = e->fabric;
    if (!r) return 0;
    cudaSetDevice(e->device);
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    if (issue_held(e, msg) != BRG_OK) return 1; /* the wait reports it */
    pthread_mutex_lock(&f->lock);
    int failed = r->status != BRG_OK || f->aborted != BRG_OK;
    completion *done = r->done;
    pthread_mutex_unlock(&f->lock);
    if (failed || e->comms_aborted) return 1;
    if (!done) return 0;
    return cudaEventQuery(done->event) != cudaErrorNotReady;
}

static void nccl_destroy(brg__transport *t) { (void)t; /* endpoints belong to the fabric */ }

static const brg__transport_vtable nccl_vtable = {
    /* name */ "nccl",
    /* post_send */ nccl_post_send,
    /* post_recv */ nccl_post_recv,
    /* wait */ nccl_wait,
    /* test */ nccl_test,
    /* cancel */ nccl_cancel,
    /* stop_all */ nccl_abort,
    /* destroy */ nccl_destroy,
};

/* ---- the fabric ---- */

/* Communicators for the pairs of ranks on distinct GPUs. */
static brg_status make_comms(brg__nccl_fabric *f, const int *physical, char *msg) {
    int ranks = f->ranks, distinct = 1;
    for (int a = 0; a < ranks; a++)
        for (int b = a + 1; b < ranks; b++) distinct &= physical[a] != physical[b];
    if (distinct && ranks >= 2) {
        ncclComm_t *comms = (ncclComm_t *)calloc((size_t)ranks, sizeof *comms);
        if (!comms) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        char what[96];
        snprintf(what, sizeof what, "NCCL communicators for %d GPUs", ranks);
        brg_status s = init_comms(comms, ranks, physical, f->timeout, what, msg);
        if (s != BRG_OK) {
            free(comms);
            return s;
        }
        int ok = 1;
        for (int r = 0; r < ranks; r++) {
            endpoint *e = &f->endpoints[r];
            ok &= own_comm(e, comms[r]);
            for (int p = 0; p < ranks; p++) {
                e->routes[p].kind = ROUTE_NCCL;
                e->routes[p].comm = comms[r];
                e->routes[p].nccl_peer = p;
            }
        }
        free(comms);
        return ok ? BRG_OK : brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int a = 0; a < ranks; a++) {
        f->endpoints[a].routes[a].kind = ROUTE_NCCL; /* self: a one-rank communicator when first used */
        for (int b = a + 1; b < ranks; b++) {
            route *ab = &f->endpoints[a].routes[b], *ba = &f->endpoints[b].routes[a];
            if (physical[a] == physical[b]) {
                ab->kind = ba->kind = ROUTE_COPY;
                continue;
            }
            ncclComm_t pair[2] = {NULL, NULL};
            int devices[2] = {physical[a], physical[b]};
            char what[96];
            snprintf(what, sizeof what, "the NCCL communicator of GPUs %d and %d (ranks %d and %d)", devices[0],
                     devices[1], a, b);
            BRG__CHECK(init_comms(pair, 2, devices, f->timeout, what, msg));
            if (!own_comm(&f->endpoints[a], pair[0]) || !own_comm(&f->endpoints[b], pair[1]))
                return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
            ab->kind = ba->kind = ROUTE_NCCL;
            ab->comm = pair[0];
            ab->nccl_peer = 1;
            ba->comm = pair[1];
            ba->nccl_peer = 0;
        }
    }
    return BRG_OK;
}

/* A fabric for `ranks` ranks, none of whose endpoints is set up yet; NULL when out of memory. */
static brg__nccl_fabric *fabric_new(int ranks, double timeout_seconds, int multi_process) {
    brg__nccl_fabric *f = (brg__nccl_fabric *)calloc(1, sizeof *f);
    if (!f) return NULL;
    f->ranks = ranks;
    f->multi_process = multi_process;
    f->timeout = timeout_seconds;
    if (!multi_process) f->queues = (pair_queue *)calloc((size_t)ranks * (size_t)ranks, sizeof *f->queues);
    f->endpoints = (endpoint *)calloc((size_t)ranks, sizeof *f->endpoints);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int ok = (multi_process || f->queues) && f->endpoints && pthread_mutex_init(&f->lock, NULL) == 0;
    if (ok && pthread_cond_init(&f->changed, &attr) != 0) {
        pthread_mutex_destroy(&f->lock);
        ok = 0;
    }
    f->sync_ready = ok;
    pthread_condattr_destroy(&attr);
    if (!ok) {
        brg__nccl_fabric_destroy(f);
        return NULL;
    }
    return f;
}

/* Sets up rank's endpoint, on GPU `device` (already reduced to the visible ones); 0 when out of memory. */
static int endpoint_setup(brg__nccl_fabric *f, int rank, int device) {
    endpoint *e = &f->endpoints[rank];
    e->base.vt = &nccl_vtable;
    e->base.rank = rank;
    e->base.ranks = f->ranks;
    e->fabric = f;
    e->device = device;
    e->routes = (route *)calloc((size_t)f->ranks, sizeof *e->routes);
    return e->routes != NULL;
}

extern "C" brg_status brg__nccl_fabric_create(brg__nccl_fabric **out, int ranks, const int *devices,
                                              double timeout_seconds, char *msg) {
    int visible = brg__cuda_device_count();
    if (visible == 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_NO_DEVICE, "no CUDA device: %s",
                                brg__cuda_no_device_reason());
    if (!out || ranks < 1 || !devices)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "NCCL transport: %d ranks (at least 1) and a device list are needed", ranks);
    for (int r = 0; r < ranks; r++)
        if (devices[r] < 0)
            return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                    "NCCL transport: rank %d has device %d", r, devices[r]);
    int *physical = (int *)calloc((size_t)ranks, sizeof *physical);
    brg__nccl_fabric *f = physical ? fabric_new(ranks, timeout_seconds, 0) : NULL;
    int ok = f != NULL;
    for (int r = 0; ok && r < ranks; r++) {
        physical[r] = devices[r] % visible;
        ok = endpoint_setup(f, r, physical[r]);
    }
    if (!ok) {
        brg__nccl_fabric_destroy(f);
        free(physical);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    brg_status s = make_comms(f, physical, msg);
    free(physical);
    if (s != BRG_OK) {
        brg__nccl_fabric_destroy(f);
        return s;
    }
    *out = f;
    return BRG_OK;
}

extern "C" brg_status brg__nccl_fabric_create_rank(brg__nccl_fabric **out, int rank, int ranks, int device,
                                                   brg__bcast_fn bcast, void *bcast_ctx, double timeout_seconds,
                                                   char *msg) {
    int visible = brg__cuda_device_count();
    if (visible == 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_NO_DEVICE, "no CUDA device: %s",
                                brg__cuda_no_device_reason());
    if (!out || ranks < 1 || rank < 0 || rank >= ranks || device < 0 || !bcast)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "NCCL transport: rank %d of %d on device %d with a broadcast is needed (rank in "
                                "0..ranks-1, device >= 0)",
                                rank, ranks, device);
    if (device >= visible) /* NCCL refuses two ranks of one communicator on one GPU */
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "NCCL transport: rank %d is local rank %d of its node, which has %d GPU%s visible: "
                                "one GPU per process (start at most %d processes per node)",
                                rank, device, visible, visible == 1 ? "" : "s", visible);
    brg__nccl_fabric *f = fabric_new(ranks, timeout_seconds, 1);
    if (!f || !endpoint_setup(f, rank, device)) {
        brg__nccl_fabric_destroy(f);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    endpoint *e = &f->endpoints[rank];
    char what[96];
    snprintf(what, sizeof what, "the NCCL communicator of rank %d of %d (GPU %d)", rank, ranks, e->device);
    ncclUniqueId id;
    ncclComm_t comm = NULL;
    brg_status s = share_unique_id(&id, rank, bcast, bcast_ctx, what, msg);
    if (s == BRG_OK) s = join_clique(&comm, 1, &id, ranks, rank, &e->device, timeout_seconds, what, msg);
    if (s == BRG_OK && !own_comm(e, comm)) {
        ncclCommAbort(comm);
        s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (s != BRG_OK) {
        brg__nccl_fabric_destroy(f);
        return s;
    }
    for (int p = 0; p < ranks; p++) { /* every peer, and self, through the group's communicator */
        e->routes[p].kind = ROUTE_NCCL;
        e->routes[p].comm = comm;
        e->routes[p].nccl_peer = p;
    }
    *out = f;
    return BRG_OK;
}

extern "C" brg_status brg__nccl_fabric_attach(brg__nccl_fabric *f, int rank, brg__backend *be, char *msg) {
    if (!f || rank < 0 || rank >= f->ranks || !brg__cuda_backend_is(be))
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "NCCL transport: rank %d needs a CUDA backend", rank);
    endpoint *e = &f->endpoints[rank];
    if (!e->fabric)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "NCCL transport: rank %d is in another process (this fabric has one rank per process)",
                                rank);
    int device = -1;
    void *compute = NULL, *transfer = NULL;
    brg__cuda_backend_streams(be, &device, &compute, &transfer);
    if (device != e->device)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "NCCL transport: rank %d is on GPU %d, its backend on GPU %d", rank, e->device, device);
    e->backend = be;
    e->compute = (cudaStream_t)compute;
    e->transfer = (cudaStream_t)transfer;
    return BRG_OK;
}

extern "C" brg__transport *brg__nccl_endpoint(brg__nccl_fabric *f, int rank) {
    return f && rank >= 0 && rank < f->ranks && f->endpoints[rank].fabric ? &f->endpoints[rank].base : NULL;
}

extern "C" void brg__nccl_fabric_destroy(brg__nccl_fabric *f) {
    if (!f) return;
    for (int r = 0; f->endpoints && r < f->ranks; r++) {
        endpoint *e = &f->endpoints[r];
        if (!e->fabric) continue; /* never set up: another process's rank, or creation failed first */
        if (f->sync_ready) {
            pthread_mutex_lock(&f->lock);
            while (e->live) request_free_locked(f, e, e->live);
            pthread_mutex_unlock(&f->lock);
        }
        cudaSetDevice(e->device);
        /* After a failure a communicator may still hold a blocked operation: abort rather than destroy. */
        /* Non-blocking: finalize, polled for a bounded time, then destroy; abort instead after a
         * failure or when finalizing does not finish. */
        for (int i = 0; i < e->n_owned; i++) {
            int clean = f->aborted == BRG_OK;
            if (clean) {
                ncclResult_t nr = ncclCommFinalize(e->owned[i]);
                char ignored[BRG_ERROR_MESSAGE_MAX];
                clean = (nr == ncclSuccess || nr == ncclInProgress) &&
                        poll_comms(&e->owned[i], 1, brg__now_seconds() + (f->timeout > 0 ? f->timeout : 60.0),
                                   "finalizing", ignored) == BRG_OK;
            }
            if (clean) ncclCommDestroy(e->owned[i]);
            else ncclCommAbort(e->owned[i]);
        }
        free(e->owned);
        free(e->held);
        free(e->routes);
    }
    if (f->sync_ready) {
        pthread_cond_destroy(&f->changed);
        pthread_mutex_destroy(&f->lock);
    }
    cudaGetLastError();
    free(f->queues);
    free(f->endpoints);
    free(f);
}
