/* The MPI transport: one process per rank. A transfer is MPI_Isend / MPI_Irecv on a duplicate of the
 * caller's communicator (so its messages never meet the application's), completed by MPI_Test polling:
 * a wait honours the timeout and an abort, which an MPI_Wait could not.
 *
 * Matching. Receives are posted from their source with MPI_ANY_TAG, so the k-th send from a to b meets
 * the k-th receive on b from a (MPI's non-overtaking rule), as the vtable requires. The 64-bit transfer
 * tag travels folded into the MPI tag; a receive that gets another tag or another size than it expects
 * fails with both, instead of filling a buffer with the wrong tensor. Messages above 1 GiB go as several
 * MPI messages (MPI counts are int).
 *
 * Aborts. stop_all sends a one-message notice to every peer on a second duplicate communicator; each
 * endpoint keeps one receive posted there, tested by every wait, so a rank whose peer failed stops at
 * once with an error naming it instead of waiting out the timeout. A peer that dies without a word (a
 * killed process) ends the job through the launcher (mpirun kills the other ranks), or, where the
 * launcher lets the others live, through the timeout: the wait names the rank it was waiting on.
 *
 * Threads: every call comes from one thread at a time (MPI_THREAD_SERIALIZED, checked at creation). */
#include "brigade_config.h"
#include "transport.h"

#if BRG_HAVE_MPI

#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t CHUNK_BYTES = (size_t)1 << 30; /* largest piece of one MPI message */

void brg__mpi_set_piece_bytes(size_t bytes) { CHUNK_BYTES = bytes ? bytes : (size_t)1 << 30; }

typedef struct mpi_endpoint {
    brg__transport base; /* first */
    MPI_Comm comm;       /* transfers */
    MPI_Comm ctrl;       /* abort notices */
    int tag_ub;
    double timeout;
    brg_status aborted;
    int abort_from; /* the rank whose notice stopped us; -1: this rank (or none) */
    int notice_in[2];      /* {rank, status} of a peer's notice */
    MPI_Request notice_recv;
    int notice_out[2];
    MPI_Request *notice_sends; /* [ranks] */
    int have_comm, have_ctrl;
    struct brg__request *spare; /* one-piece requests kept for reuse: no allocation per message */
} mpi_endpoint;

struct brg__request {
    struct brg__request *next_spare;
    int is_recv, peer, mpi_tag;
    uint64_t tag;
    size_t bytes;
    int n;                 /* MPI messages */
    MPI_Request reqs[];    /* [n] */
};

static mpi_endpoint *endpoint_of(brg__transport *t) { return (mpi_endpoint *)t; }

int brg__mpi_built(void) { return 1; }

static brg_status mpi_error(char *msg, brg_status status, int code, const char *what) {
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(code, text, &len);
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, status, "%s: MPI error %d: %s", what, code, text);
}

/* The transfer tag folded into [0, tag_ub]: equal tags fold equally; distinct ones almost never do. */
static int fold_tag(const mpi_endpoint *e, uint64_t tag) {
    uint64_t h = brg__fnv1a(BRG__FNV_OFFSET, &tag, sizeof tag);
    return (int)((h ^ (h >> 31) ^ (h >> 62)) % ((uint64_t)e->tag_ub + 1));
}

static int pieces(size_t bytes) { return bytes == 0 ? 1 : (int)((bytes + CHUNK_BYTES - 1) / CHUNK_BYTES); }

static brg__request *new_request(mpi_endpoint *e, int is_recv, int peer, uint64_t tag, int mpi_tag, size_t bytes) {
    int n = pieces(bytes);
    brg__request *r = NULL;
    if (n == 1 && e->spare) {
        r = e->spare;
        e->spare = r->next_spare;
    } else {
        r = brg__malloc(sizeof *r + (size_t)n * sizeof(MPI_Request));
        if (!r) return NULL;
    }
    r->next_spare = NULL;
    r->is_recv = is_recv;
    r->peer = peer;
    r->tag = tag;
    r->mpi_tag = mpi_tag;
    r->bytes = bytes;
    r->n = n;
    for (int i = 0; i < n; i++) r->reqs[i] = MPI_REQUEST_NULL;
    return r;
}

/* A finished request back to the endpoint's spares (one piece) or to the heap. */
static void free_request(mpi_endpoint *e, brg__request *r) {
    if (r->n == 1) {
        r->next_spare = e->spare;
        e->spare = r;
    } else {
        free(r);
    }
}

/* A send given up on may still read its buffer: past the eager limit, MPI reads it only once the receive
 * is posted, which may have happened (a peer that posted its receives, then failed or heard of a failure).
 * Progress it a little while, so that it is done before the caller frees the buffer; a send whose receive
 * never comes reads nothing more, and is freed. */
static void finish_send(MPI_Request *req) {
    double start = brg__now_seconds();
    for (int flag = 0; !flag;) {
        if (MPI_Test(req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) break;
        if (!flag && brg__now_seconds() - start > 1.0) break;
        if (!flag) sched_yield();
    }
    if (*req != MPI_REQUEST_NULL) MPI_Request_free(req); /* never matched: dies with the job */
}

static void release_request(mpi_endpoint *e, brg__request *r) {
    for (int i = 0; i < r->n; i++)
        if (r->reqs[i] != MPI_REQUEST_NULL) {
            if (r->is_recv) {
                MPI_Cancel(&r->reqs[i]);
                MPI_Wait(&r->reqs[i], MPI_STATUS_IGNORE);
            } else {
                finish_send(&r->reqs[i]);
            }
        }
    free_request(e, r);
}

static brg_status check_peer(brg__transport *t, int peer) {
    return peer >= 0 && peer < t->ranks && peer != t->rank ? BRG_OK : BRG_ERR_INVALID_ARGUMENT;
}

static brg_status post(brg__transport *t, int is_recv, int peer, uint64_t tag, void *buf, size_t bytes,
                       brg__request **req) {
    BRG__CHECK(check_peer(t, peer));
    mpi_endpoint *e = endpoint_of(t);
    if (e->aborted != BRG_OK) return BRG_ERR_CANCELLED;
    brg__request *r = new_request(e, is_recv, peer, tag, fold_tag(e, tag), bytes);
    if (!r) return BRG_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < r->n; i++) {
        size_t off = (size_t)i * CHUNK_BYTES, len = bytes - off < CHUNK_BYTES ? bytes - off : CHUNK_BYTES;
        char *p = (char *)buf + off;
        int rc = is_recv ? MPI_Irecv(p, (int)len, MPI_BYTE, peer, MPI_ANY_TAG, e->comm, &r->reqs[i])
                         : MPI_Isend(p, (int)len, MPI_BYTE, peer, r->mpi_tag, e->comm, &r->reqs[i]);
        if (rc != MPI_SUCCESS) {
            release_request(e, r);
            return BRG_ERR_TRANSPORT;
        }
    }
    *req = r;
    return BRG_OK;
}

static brg_status mpi_post_send(brg__transport *t, int peer, uint64_t tag, const void *buf, size_t bytes,
                                brg__request **req) {
    return post(t, 0, peer, tag, (void *)buf, bytes, req);
}

static brg_status mpi_post_recv(brg__transport *t, int peer, uint64_t tag, void *buf, size_t bytes,
                                brg__request **req) {
    return post(t, 1, peer, tag, buf, bytes, req);
}

/* Whether a peer's abort notice has arrived (then the endpoint is aborted). */
static int notice_arrived(mpi_endpoint *e) {
    if (e->aborted != BRG_OK) return 1;
    int flag = 0;
    if (e->notice_recv == MPI_REQUEST_NULL || MPI_Test(&e->notice_recv, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS ||
        !flag)
        return 0;
    e->aborted = BRG_ERR_CANCELLED;
    e->abort_from = e->notice_in[0];
    return 1;
}

/* Polling: spin first (the common case is a message already on its way), then yield the core to the
 * other ranks sharing it, then sleep briefly, so an idle rank costs little and a busy one loses little. */
static void back_off(double waited) {
    if (waited < 1e-4) return;
    if (waited < 1e-2) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, 50000}; /* 50 us */
    nanosleep(&ts, NULL);
}

static brg_status check_received(const mpi_endpoint *e, const brg__request *r, const MPI_Status *st, char *msg) {
    for (int i = 0; i < r->n; i++) {
        size_t off = (size_t)i * CHUNK_BYTES, len = r->bytes - off < CHUNK_BYTES ? r->bytes - off : CHUNK_BYTES;
        int count = 0;
        MPI_Get_count(&st[i], MPI_BYTE, &count);
        if (st[i].MPI_TAG != r->mpi_tag || (size_t)count != len)
            return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TRANSPORT,
                                    "rank %d expected a message from rank %d with tag %016llx (MPI tag %d) and %zu "
                                    "bytes, got MPI tag %d and %d bytes%s",
                                    e->base.rank, r->peer, (unsigned long long)r->tag, r->mpi_tag, len, st[i].MPI_TAG,
                                    count, r->n > 1 ? " in one of its pieces" : "");
    }
    return BRG_OK;
}

static brg_status mpi_wait(brg__transport *t, brg__request *r, char *msg) {
    if (!r) return BRG_ERR_INVALID_ARGUMENT;
    mpi_endpoint *e = endpoint_of(t);
    MPI_Status stack[4], *st = r->n <= 4 ? stack : brg__malloc((size_t)r->n * sizeof *st);
    if (!st) {
        release_request(e, r);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    double start = 0.0; /* read at the first check: a message already there costs no clock read */
    brg_status s = BRG_OK;
    for (unsigned spin = 0;; spin++) {
        int flag = 0;
        int rc = r->n == 1 ? MPI_Test(&r->reqs[0], &flag, &st[0]) : MPI_Testall(r->n, r->reqs, &flag, st);
        if (rc != MPI_SUCCESS) {
            int code = rc;
            for (int i = 0; rc == MPI_ERR_IN_STATUS && i < r->n; i++)
                if (st[i].MPI_ERROR != MPI_SUCCESS && st[i].MPI_ERROR != MPI_ERR_PENDING) code = st[i].MPI_ERROR;
            char what[160];
            snprintf(what, sizeof what, "rank %d %s rank %d (tag %016llx, %zu bytes)", t->rank,
                     r->is_recv ? "receiving from" : "sending to", r->peer, (unsigned long long)r->tag, r->bytes);
            s = mpi_error(msg, BRG_ERR_TRANSPORT, code, what);
            break;
        }
        if (flag) {
            if (r->is_recv) s = check_received(e, r, st, msg);
            break;
        }
        if ((spin & 63) != 63) continue;
        if (start == 0.0) start = brg__now_seconds();
        double waited = brg__now_seconds() - start;
        if (notice_arrived(e)) {
            if (e->abort_from >= 0)
                s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_CANCELLED,
                                     "rank %d stopped waiting for rank %d: rank %d failed (its own message says why)",
                                     t->rank, r->peer, e->abort_from);
            else
                s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_CANCELLED,
                                     "rank %d stopped waiting for rank %d: this rank failed", t->rank, r->peer);
            break;
        }
        if (e->timeout > 0 && waited > e->timeout) {
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TIMEOUT,
                                 "rank %d waited %.0f s for rank %d to %s (tag %016llx, %zu bytes); giving up: rank "
                                 "%d is dead, stuck or far behind",
                                 t->rank, e->timeout, r->peer,
                                 r->is_recv ? "send a message" : "receive a message", (unsigned long long)r->tag,
                                 r->bytes, r->peer);
            break;
        }
        back_off(waited);
    }
    if (st != stack) free(st);
    if (s == BRG_OK)
        free_request(e, r);
    else
        release_request(e, r);
    return s;
}

/* MPI_Request_get_status completes nothing: the wait that follows finds the pieces done and checks them. */
static int mpi_test(brg__transport *t, brg__request *r) {
    if (!r) return 0;
    mpi_endpoint *e = endpoint_of(t);
    if (notice_arrived(e)) return 1;
    for (int i = 0; i < r->n; i++) {
        int flag = 0;
        if (MPI_Request_get_status(r->reqs[i], &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) return 1; /* the wait says why */
        if (!flag) return 0;
    }
    return 1;
}

static void mpi_cancel(brg__transport *t, brg__request *r) {
    if (r) release_request(endpoint_of(t), r);
}

static void mpi_stop_all(brg__transport *t, brg_status status) {
    mpi_endpoint *e = endpoint_of(t);
    if (e->aborted != BRG_OK) return; /* first call wins; a peer's notice counts as one */
    e->aborted = status == BRG_OK ? BRG_ERR_CANCELLED : status;
    e->abort_from = -1;
    e->notice_out[0] = t->rank;
    e->notice_out[1] = (int)e->aborted;
    for (int p = 0; p < t->ranks; p++)
        if (p != t->rank && e->notice_sends[p] == MPI_REQUEST_NULL)
            MPI_Isend(e->notice_out, 2, MPI_INT, p, 0, e->ctrl, &e->notice_sends[p]);
}

static void mpi_destroy(brg__transport *t) {
    if (!t) return;
    mpi_endpoint *e = endpoint_of(t);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
        if (e->notice_recv != MPI_REQUEST_NULL) {
            MPI_Cancel(&e->notice_recv);
            MPI_Wait(&e->notice_recv, MPI_STATUS_IGNORE);
        }
        for (int p = 0; e->notice_sends && p < t->ranks; p++)
            if (e->notice_sends[p] != MPI_REQUEST_NULL) MPI_Request_free(&e->notice_sends[p]);
        /* After an abort, messages of the failed exchange may still be in flight; a freed communicator's
         * context can be reused by the next one, where they would meet its receives. Keep it. */
        if (e->have_ctrl && e->aborted == BRG_OK) MPI_Comm_free(&e->ctrl);
        if (e->have_comm && e->aborted == BRG_OK) MPI_Comm_free(&e->comm);
    }
    for (brg__request *r = e->spare, *next; r; r = next) {
        next = r->next_spare;
        free(r);
    }
    free(e->notice_sends);
    free(e);
}

static const brg__transport_vtable mpi_vtable = {
    .name = "mpi",
    .post_send = mpi_post_send,
    .post_recv = mpi_post_recv,
    .wait = mpi_wait,
    .test = mpi_test,
    .cancel = mpi_cancel,
    .stop_all = mpi_stop_all,
    .destroy = mpi_destroy,
};

brg_status brg__mpi_transport_create(brg__transport **out, const void *comm, double timeout_seconds, char *msg) {
    if (!out)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "MPI transport: out is NULL");
    int initialized = 0, finalized = 0, level = MPI_THREAD_SINGLE;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_USAGE,
                                "MPI transport: MPI is %s (call brg_launch_init, or MPI_Init_thread, first)",
                                finalized ? "already finalized" : "not initialized");
    MPI_Query_thread(&level);
    if (level < MPI_THREAD_SERIALIZED)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_USAGE,
                                "MPI transport: MPI was initialized at thread level %d; brigade needs "
                                "MPI_THREAD_SERIALIZED (%d) or above (MPI_Init_thread)",
                                level, MPI_THREAD_SERIALIZED);
    MPI_Comm base = comm ? *(const MPI_Comm *)comm : MPI_COMM_WORLD;
    mpi_endpoint *e = brg__calloc(1, sizeof *e);
    if (!e) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    e->base.vt = &mpi_vtable;
    e->timeout = timeout_seconds;
    e->abort_from = -1;
    e->notice_recv = MPI_REQUEST_NULL;
    int rc = MPI_Comm_dup(base, &e->comm);
    e->have_comm = rc == MPI_SUCCESS;
    if (rc == MPI_SUCCESS) rc = MPI_Comm_dup(base, &e->ctrl);
    e->have_ctrl = e->have_comm && rc == MPI_SUCCESS;
    if (rc != MPI_SUCCESS) {
        mpi_destroy(&e->base);
        return mpi_error(msg, BRG_ERR_TRANSPORT, rc, "MPI transport: duplicating the communicator");
    }
    MPI_Comm_set_errhandler(e->comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(e->ctrl, MPI_ERRORS_RETURN);
    MPI_Comm_rank(e->comm, &e->base.rank);
    MPI_Comm_size(e->comm, &e->base.ranks);
    int *ub = NULL, found = 0;
    MPI_Comm_get_attr(e->comm, MPI_TAG_UB, &ub, &found);
    e->tag_ub = found && ub && *ub > 0 ? *ub : 32767;
    e->notice_sends = brg__malloc((size_t)e->base.ranks * sizeof *e->notice_sends);
    if (!e->notice_sends) {
        mpi_destroy(&e->base);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int p = 0; p < e->base.ranks; p++) e->notice_sends[p] = MPI_REQUEST_NULL;
    if (e->base.ranks > 1) MPI_Irecv(e->notice_in, 2, MPI_INT, MPI_ANY_SOURCE, 0, e->ctrl, &e->notice_recv);
    *out = &e->base;
    return BRG_OK;
}

brg_status brg__mpi_transport_bcast(void *ctx, void *buf, size_t bytes, int root, char *msg) {
    brg__transport *t = ctx;
    if (!t || t->vt != &mpi_vtable || (!buf && bytes) || bytes > INT_MAX || root < 0 || root >= t->ranks)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "MPI broadcast: needs an MPI endpoint, a buffer of at most 2 GiB and a root rank");
    mpi_endpoint *e = endpoint_of(t);
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Ibcast(buf, (int)bytes, MPI_BYTE, root, e->comm, &req);
    if (rc != MPI_SUCCESS) return mpi_error(msg, BRG_ERR_TRANSPORT, rc, "MPI broadcast");
    double start = brg__now_seconds();
    for (unsigned spin = 0;; spin++) {
        int flag = 0;
        rc = MPI_Test(&req, &flag, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_error(msg, BRG_ERR_TRANSPORT, rc, "MPI broadcast");
        if (flag) return BRG_OK;
        if ((spin & 63) != 63) continue;
        double waited = brg__now_seconds() - start;
        if (e->timeout > 0 && waited > e->timeout)
            /* The request stays with MPI: a broadcast cannot be cancelled. The job is failing anyway. */
            return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_TIMEOUT,
                                    "rank %d waited %.0f s for the broadcast from rank %d; giving up (a rank did not "
                                    "join)",
                                    t->rank, e->timeout, root);
        back_off(waited);
    }
}

brg_status brg__mpi_transport_local_rank(brg__transport *t, int *local_rank, int *local_ranks, char *msg) {
    if (!t || t->vt != &mpi_vtable || !local_rank || !local_ranks)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "MPI local rank: needs an MPI endpoint");
    mpi_endpoint *e = endpoint_of(t);
    MPI_Comm node;
    int rc = MPI_Comm_split_type(e->comm, MPI_COMM_TYPE_SHARED, t->rank, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) return mpi_error(msg, BRG_ERR_TRANSPORT, rc, "splitting the ranks by node");
    MPI_Comm_rank(node, local_rank);
    MPI_Comm_size(node, local_ranks);
    MPI_Comm_free(&node);
    return BRG_OK;
}

#else /* no MPI in this build */

int brg__mpi_built(void) { return 0; }

void brg__mpi_set_piece_bytes(size_t bytes) { (void)bytes; }

brg_status brg__mpi_transport_create(brg__transport **out, const void *comm, double timeout_seconds, char *msg) {
    (void)out;
    (void)comm;
    (void)timeout_seconds;
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED,
                            "this brigade was built without MPI (install Open MPI, libopenmpi-dev on Debian, and "
                            "configure with -Dmpi=enabled)");
}

brg_status brg__mpi_transport_bcast(void *ctx, void *buf, size_t bytes, int root, char *msg) {
    (void)ctx;
    (void)buf;
    (void)bytes;
    (void)root;
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED, "this brigade was built without MPI");
}

brg_status brg__mpi_transport_local_rank(brg__transport *t, int *local_rank, int *local_ranks, char *msg) {
    (void)t;
    (void)local_rank;
    (void)local_ranks;
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED, "this brigade was built without MPI");
}

#endif
