/* The transport between pipeline ranks: point-to-point messages, matched in order on each ordered pair
 * of ranks (the k-th send from a to b meets the k-th receive on b from a, as NCCL orders them).
 * Implementations: in-process (threads; engine/transport/inproc.c), MPI (processes; engine/transport/mpi.c)
 * and NCCL (cuda/nccl_transport.cu: threads of one process, or one process per rank). Internal.
 *
 * Sends and receives are posted and complete later (brg__transport_wait), so transfers overlap compute.
 * A transport can be aborted (a worker failed): every pending and later wait returns BRG_ERR_CANCELLED
 * at once, so no worker hangs on a dead peer. A wait also gives up after the transport's timeout. */
#ifndef BRIGADE_TRANSPORT_H
#define BRIGADE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

typedef struct brg__transport brg__transport; /* one rank's endpoint */
typedef struct brg__request brg__request;     /* a posted send or receive */

typedef struct brg__transport_vtable {
    const char *name;
    /* Posts a send of bytes at buf to peer; buf may be reused once the request completes. `tag` labels the
     * message; the receiver's tag must match (a mismatch is an error naming both). */
    brg_status (*post_send)(brg__transport *t, int peer, uint64_t tag, const void *buf, size_t bytes,
                            brg__request **req);
    /* Posts a receive of exactly `bytes` from peer into buf. */
    brg_status (*post_recv)(brg__transport *t, int peer, uint64_t tag, void *buf, size_t bytes,
                            brg__request **req);
    /* Waits for a request, then frees it. BRG_OK, BRG_ERR_CANCELLED (aborted), BRG_ERR_TIMEOUT,
     * BRG_ERR_TRANSPORT (size or tag mismatch); the message goes to msg. */
    brg_status (*wait)(brg__transport *t, brg__request *req, char *msg);
    /* Whether a posted request has completed, so that a wait on it returns at once; never blocks and
     * keeps the request. 1: complete, 0: not yet. May be NULL (then only a wait completes a request). */
    int (*test)(brg__transport *t, brg__request *req);
    /* Frees a posted request that will never be waited for (after a failure). */
    void (*cancel)(brg__transport *t, brg__request *req);
    /* Stops every rank's transfers with `status` (first call wins). */
    void (*stop_all)(brg__transport *t, brg_status status);
    void (*destroy)(brg__transport *t);
} brg__transport_vtable;

struct brg__transport {
    const brg__transport_vtable *vt;
    int rank, ranks;
};

/* A tag from a transfer's identity, so mismatched sends and receives are caught, not silently mixed. */
static inline uint64_t brg__transfer_tag(int kind, int boundary, int micro_batch, int64_t tensor) {
    return ((uint64_t)(kind & 0xff) << 56) | ((uint64_t)(boundary & 0xffff) << 40) |
           ((uint64_t)(micro_batch & 0xffff) << 24) | ((uint64_t)tensor & 0xffffff);
}

/* ---- in-process transport: one endpoint per thread of one process ---- */
typedef struct brg__inproc_fabric brg__inproc_fabric;

/* A fabric for `ranks` endpoints; at most `capacity` undelivered messages per ordered pair (a send beyond
 * that waits, without spinning); capacity 0 is rendezvous mode: sends are buffered without bound, but a
 * wait on a send returns only once the peer has posted its receive. Waits give up after timeout_seconds
 * (<= 0: never). */
brg_status brg__inproc_fabric_create(brg__inproc_fabric **out, int ranks, int capacity, double timeout_seconds,
                                     char *msg);
/* Rank's endpoint (owned by the fabric). */
brg__transport *brg__inproc_endpoint(brg__inproc_fabric *f, int rank);
/* Frees the fabric, its endpoints and any undelivered message. */
void brg__inproc_fabric_destroy(brg__inproc_fabric *f);

/* ---- NCCL transport: ranks are threads of one process, on GPUs of one node (cuda/) ---- */
typedef struct brg__nccl_fabric brg__nccl_fabric;
struct brg__backend;

/* Transfers for `ranks` threads, rank r on GPU devices[r] % (GPUs visible). Ranks on distinct GPUs talk
 * through NCCL (one non-blocking communicator for the group, made with the timeout, when every rank has
 * a GPU of its own; else one per pair of GPUs); ranks sharing a GPU pass tensors by device-to-device copies. Waits
 * give up after timeout_seconds (<= 0: never), polling ncclCommGetAsyncError. Buffers are device memory
 * of the rank's CUDA backend. Returns BRG_OK; BRG_ERR_NO_DEVICE (no CUDA device: checked first);
 * BRG_ERR_INVALID_ARGUMENT; BRG_ERR_TRANSPORT (NCCL could not make the communicators);
 * BRG_ERR_OUT_OF_MEMORY; BRG_ERR_UNSUPPORTED in a build without CUDA. */
brg_status brg__nccl_fabric_create(brg__nccl_fabric **out, int ranks, const int *devices, double timeout_seconds,
                                   char *msg);
/* Gives rank's endpoint its CUDA backend, whose compute stream transfers are ordered against and whose
 * transfer stream they run on; required before the endpoint posts. BRG_OK, BRG_ERR_INVALID_ARGUMENT (not
 * a CUDA backend, a rank out of range, another GPU than the rank's), BRG_ERR_UNSUPPORTED without CUDA. */
brg_status brg__nccl_fabric_attach(brg__nccl_fabric *f, int rank, struct brg__backend *be, char *msg);
brg__transport *brg__nccl_endpoint(brg__nccl_fabric *f, int rank);
void brg__nccl_fabric_destroy(brg__nccl_fabric *f);

/* Broadcasts `bytes` at buf from rank `root` to every rank of a group, within the group's timeout
 * (the bootstrap of a multi-process NCCL group: MPI, through brg__mpi_transport_bcast). */
typedef brg_status (*brg__bcast_fn)(void *ctx, void *buf, size_t bytes, int root, char *msg);

/* The endpoint of this process in a group of `ranks` processes (one rank each, on GPU `device` of this
 * node, which must exist: NCCL wants a GPU per rank, so a node's local ranks must not outnumber its
 * GPUs: BRG_ERR_INVALID_ARGUMENT says so): rank 0 makes the NCCL unique id, `bcast` hands it to every rank, then ncclCommInitRankConfig
 * (blocking = 0) polled with the timeout, so that a rank that never joins ends in BRG_ERR_TIMEOUT, not
 * a host blocked in NCCL. Peers are in other processes: the host-side match of tags and sizes that the
 * one-process fabric does is not possible, so sizes are the receiver's (the CPU transports check
 * them, on the same instruction streams). Needs brg__nccl_fabric_attach(f, rank, be) before posts. Same
 * statuses as brg__nccl_fabric_create. */
brg_status brg__nccl_fabric_create_rank(brg__nccl_fabric **out, int rank, int ranks, int device, brg__bcast_fn bcast,
                                        void *bcast_ctx, double timeout_seconds, char *msg);

/* ---- MPI transport: one process per rank (engine/transport/mpi.c; built when MPI is found) ---- */

/* Whether this build has the MPI transport. */
int brg__mpi_built(void);

/* This process's endpoint in the communicator *comm (an MPI_Comm *; NULL: MPI_COMM_WORLD), which it
 * duplicates (its messages never meet the application's). MPI must be initialized with at least
 * MPI_THREAD_SERIALIZED. Collective: every rank of the communicator calls it. Waits poll MPI_Test, so
 * they honour the timeout (<= 0: never) and an abort from any rank (stop_all tells every peer).
 * BRG_OK; BRG_ERR_INVALID_USAGE (MPI not initialized, or at a lower thread level); BRG_ERR_TRANSPORT;
 * BRG_ERR_OUT_OF_MEMORY; BRG_ERR_UNSUPPORTED in a build without MPI. */
brg_status brg__mpi_transport_create(brg__transport **out, const void *comm, double timeout_seconds, char *msg);

/* brg__bcast_fn over an MPI endpoint (ctx: the brg__transport *). */
brg_status brg__mpi_transport_bcast(void *ctx, void *buf, size_t bytes, int root, char *msg);

/* Sets the largest piece a message is cut into (default, and 0: 1 GiB, below MPI's int counts). For tests
 * of messages in several pieces. */
void brg__mpi_set_piece_bytes(size_t bytes);

/* This rank's index among the ranks of the endpoint's communicator on its node, and their number. */
brg_status brg__mpi_transport_local_rank(brg__transport *t, int *local_rank, int *local_ranks, char *msg);

/* ---- collectives over a group of ranks (engine/transport/collective.c) ----
 *
 * A group is some ranks of one transport (the replicas of one pipeline stage). Its collectives run on
 * the transport's point-to-point messages, so every transport has them, and they reduce in one fixed
 * order: element i of a sum is ((b0 + b1) + b2) + ... over the members in member order, whatever the
 * transport, the process layout or the message sizes. So every member ends with bitwise the same
 * result, and a run is bitwise the same under threads, MPI or NCCL. (MPI_Iallreduce promises neither:
 * Open MPI picks its algorithm, and with it the order of the additions, by message size, communicator
 * size and tuning parameters.) The bandwidth is a ring's: each member sends and receives
 * (size - 1) / size of the buffer once to reduce-scatter and once to all-gather.
 *
 * Collectives are posted in order and run in that order, one after another, each member progressing its
 * own: brg__group_progress advances them without blocking (call it between pieces of other work: that is
 * the overlap), brg__group_wait_all until every posted one is done. Every member must post the same
 * collectives, with the same sizes, in the same order. */
struct brg__backend;
typedef struct brg__group brg__group;

typedef enum brg__collective_kind {
    BRG__ALLREDUCE = 0,      /* every member: the sum of every member's buf (float) */
    BRG__REDUCE_SCATTER = 1, /* member i: part i of the sum, in part i of its buf; the other parts undefined */
    BRG__ALLGATHER = 2,      /* every member: part i of member i's buf, for every i */
    BRG__BROADCAST = 3,      /* every member: root's buf */
} brg__collective_kind;

/* The group of transport ranks members[0..size) (distinct; t->rank among them), its messages tagged
 * with `id` (distinct per group of a transport); buffers are memory of backend be, which sums them.
 * BRG_OK, BRG_ERR_INVALID_ARGUMENT (msg says why), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__group_create(brg__group **out, brg__transport *t, struct brg__backend *be, const int *members, int size,
                             int id, char *msg);
void brg__group_destroy(brg__group *g); /* cancels what is still pending */
int brg__group_size(const brg__group *g);
int brg__group_index(const brg__group *g); /* this rank's position among the members */

/* Part i of a buffer of count elements among size members: contiguous, the first count % size parts one
 * element longer. */
void brg__group_part(int64_t count, int size, int i, int64_t *offset, int64_t *length);

/* Queues a collective over count elements of elem_bytes each at buf (device memory; 4-byte floats for the
 * reductions), root: BRG__BROADCAST's source member. buf must stay untouched until the collective is
 * done. BRG_OK, BRG_ERR_INVALID_ARGUMENT, BRG_ERR_OUT_OF_MEMORY, or a transport status (msg). */
brg_status brg__group_post(brg__group *g, brg__collective_kind kind, void *buf, int64_t count, size_t elem_bytes,
                           int root, char *msg);
/* Advances the queued collectives as far as they go without waiting. BRG_OK or a failure (msg). */
brg_status brg__group_progress(brg__group *g, char *msg);
/* Until every posted collective is done. BRG_OK, or the first failure (the rest are cancelled). */
brg_status brg__group_wait_all(brg__group *g, char *msg);
/* Keeps the scratch memory a reduction of up to `count` floats needs (size x its longest part): from
 * then on such reductions allocate nothing, so the memory a step holds does not depend on timing. */
brg_status brg__group_reserve(brg__group *g, int64_t count, char *msg);
/* Collectives posted and not yet done. */
int brg__group_pending(const brg__group *g);

#endif
