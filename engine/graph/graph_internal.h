/* Internal view of the layer graph, shared by the graph module, the backends and the runtime. */
#ifndef BRIGADE_GRAPH_INTERNAL_H
#define BRIGADE_GRAPH_INTERNAL_H

#include <stdint.h>

#include "brigade/graph.h"
#include "internal.h"

#define BRG__MAX_INPUTS 3

/* How a tensor-parallel rank's parameter is a slice of the whole model's (engine/graph/tensor_parallel.c).
 * parts < 2 (a zeroed slice): the whole parameter, which every rank holds. Else dimension `dim` of the
 * whole parameter, of `whole`
 * entries, is `blocks` equal blocks, each cut into `parts` pieces of ceil(whole / blocks / parts) entries,
 * and rank i holds piece i of every block (pieces past the end are padding: a vocabulary t does not
 * divide). */
typedef struct brg__slice {
    int dim;
    int blocks;
    int parts;
    int64_t whole;
} brg__slice;

struct brg_tensor {
    int64_t index; /* position in graph->tensors */
    char name[BRG_MAX_NAME];
    brg_tensor_kind kind;
    brg_dtype dtype;
    int ndim;
    int64_t shape[BRG_MAX_DIMS]; /* shape[0] == BRG_BATCH for per-micro-batch tensors */
    int64_t producer;            /* op index, -1 for inputs and parameters */
    int layer;                   /* producer's layer, -1 for inputs and parameters */
    int consumers;               /* number of op inputs reading it */
    int64_t param_index;         /* dense index among parameters, -1 otherwise */
    brg_init init;
    struct brg_graph *graph;
    /* A tensor-parallel rank's graph (brg__graph_localize): parameters' slices of the whole model's; and
     * partial_grad, for a parameter every rank holds whole but whose gradient each computes from its share
     * of the positions only (sequence parallelism), to be summed over the group before the optimizer. */
    brg__slice slice;
    int partial_grad;
};

typedef struct brg__op {
    int64_t index;
    brg_op_kind kind;
    char name[BRG_MAX_NAME];
    int layer;
    int n_inputs;
    brg_tensor *inputs[BRG__MAX_INPUTS];
    brg_tensor *output;
    int64_t heads;          /* attention */
    brg_matmul_flags flags; /* matmul */
    float eps;              /* layernorm */
    brg_tp_role tp_role;    /* the model's mark (brg_tensor_parallel) */
    int tp_blocks;
    /* A tensor-parallel rank's embedding or cross-entropy over its rows of a split vocabulary: the whole
     * model's vocabulary (rank i's rows start at i times its local rows); 0 otherwise. */
    int64_t tp_vocab;
} brg__op;

typedef struct brg__layer {
    char name[BRG_MAX_NAME];
    int64_t op_begin, op_end;
    int implicit; /* an op outside brg_layer_begin/end */
} brg__layer;

struct brg_graph {
    brg_status status;
    char error[BRG_ERROR_MESSAGE_MAX];
    brg_tensor **tensors;
    int64_t n_tensors, cap_tensors;
    int64_t *name_slots; /* hash index of the tensors' names (graph.c): tensor index + 1, 0 when empty */
    int64_t n_name_slots;
    brg__op *ops;
    int64_t n_ops, cap_ops;
    brg__layer *layers;
    int n_layers, cap_layers;
    brg_tensor **params; /* dense parameter list, creation order */
    int64_t n_params, cap_params;
    int layer_open; /* index of the open layer, -1 when none */
    int finalized;
    int64_t loss_op; /* the cross-entropy op, -1 until there is one */
    int tp_parts, tp_sequence; /* a tensor-parallel rank's graph: the group's size, sequence parallelism; 0, 0 */
};

/* Elements of t with BRG_BATCH bound to `batch`. */
int64_t brg__tensor_numel(const brg_tensor *t, int64_t batch);
/* Elements of a shape at micro-batch `batch`, or -1 when past BRG_MAX_TENSOR_ELEMENTS (or a dimension is
 * negative): for shapes and batch sizes not yet checked. */
int64_t brg__shape_numel_checked(int ndim, const int64_t *shape, int64_t batch);
/* The largest micro-batch for which every tensor of g, and every op's kept buffers, stay within
 * BRG_MAX_TENSOR_ELEMENTS; *binding (when not NULL) names the tensor or op that sets it, NULL when none. */
int64_t brg__graph_max_batch(const brg_graph *g, const char **binding);
/* Checks that binding BRG_BATCH to `batch` (>= 1) keeps every tensor of g, and every op's kept buffers,
 * within BRG_MAX_TENSOR_ELEMENTS (scratch does not grow with the batch); BRG_ERR_INVALID_ARGUMENT naming
 * the tensor or op that binds, and the largest batch that fits, in msg. */
brg_status brg__graph_check_batch(const brg_graph *g, int64_t batch, char *msg, size_t size);
/* Bytes of one element. */
int64_t brg__dtype_size(brg_dtype dtype);
/* ---- building a tensor-parallel rank's graph (brg__graph_localize) ---- */

/* The graph one rank of a tensor-parallel group of `parts` runs, for the whole model g (finalized; its ops
 * marked by brg_tensor_parallel), with sequence parallelism when `sequence`: g's layers in g's order, with
 * each op's share of the work, parameters of g's names holding their slices (brg__slice), and the group's
 * collectives (BRG_OP_TP_*) where shares must be summed or gathered. parts 1 gives g's equal. Finalized;
 * the caller destroys it. BRG_ERR_INVALID_ARGUMENT naming what parts does not divide (heads, features,
 * positions) or what cannot be split (a layernorm over split features), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__graph_localize(const brg_graph *g, int parts, int sequence, brg_graph **out, char *msg);

/* Entries of dimension slice->dim a rank holds (every block's piece, padding included). */
int64_t brg__slice_local(const brg__slice *slice);
/* Rank `rank`'s slice of the whole parameter (host memory, whole_shape: local's shape with the slice's
 * dimension `whole`), into local (local->shape; padding entries zero); and back: put writes rank's valid
 * entries into whole. */
void brg__slice_take(const brg_tensor *local, int rank, const float *whole, float *dst);
void brg__slice_put(const brg_tensor *local, int rank, const float *src, float *whole);
/* Elements of the whole parameter a local one is a slice of. */
int64_t brg__slice_whole_numel(const brg_tensor *local);

/* Low-level builders for derived graphs: a layer opened (implicit: named after its one op) or closed, a
 * parameter and an op named exactly `name` (no layer prefix), in the open layer. NULL / status on failure,
 * recorded as the graph's error. */
brg_status brg__graph_open_layer(brg_graph *g, const char *name, int implicit);
brg_status brg__graph_close_layer(brg_graph *g);
brg_tensor *brg__graph_param_named(brg_graph *g, const char *name, int ndim, const int64_t *shape, brg_init init);
brg_tensor *brg__graph_op_named(brg_graph *g, brg_op_kind kind, const char *name, int n_inputs, brg_tensor *const *inputs,
                                int ndim, const int64_t *shape, int64_t heads, brg_matmul_flags flags, float eps);

/* The op at index i (no checks). */
static inline const brg__op *brg__graph_op(const brg_graph *g, int64_t i) { return &g->ops[i]; }

/* A matmul's matrices with BRG_BATCH bound to `batch`: op(a) (M, K) times op(b) (K, N) for each of
 * `count` leading indices of a; the backends and the cost model read them alike. */
typedef struct brg__matmul_dims {
    int64_t count;    /* P: leading indices of a (the batch of matrices) */
    int64_t m, k, n;  /* op(a) (M, K), op(b) (K, N), out (M, N) */
    int trans_a, trans_b;
    int b_shared;     /* b is 2-D: one matrix for every leading index of a */
    int64_t lda, ldb; /* row strides of a and b as stored */
} brg__matmul_dims;
void brg__matmul_dims_get(const brg__op *op, int64_t batch, brg__matmul_dims *d);

/* The collectives of tensor parallelism, as the cost model times them on the group's links. */
typedef enum brg__comm_kind {
    BRG__COMM_NONE = 0,
    BRG__COMM_ALLREDUCE = 1,      /* comm_bytes: the buffer summed */
    BRG__COMM_ALLGATHER = 2,      /* comm_bytes: the gathered whole */
    BRG__COMM_REDUCE_SCATTER = 3, /* comm_bytes: the whole before scattering */
} brg__comm_kind;

/* Per-op metadata from the op registry, with BRG_BATCH bound to `batch`. */
typedef struct brg__op_costs {
    double flops[BRG_PASS_COUNT];
    double bytes_moved[BRG_PASS_COUNT];
    int64_t aux_floats;     /* internals saved by forward for backward (layernorm mean/rstd, attention probs) */
    int64_t scratch_floats; /* temporary workspace for one call of forward or backward */
    int64_t host_scratch_floats; /* what kernels running on the host need instead, when more (the CPU
                                  * attention's probabilities and d(scores) of one (b, head); the GPU's
                                  * fused kernels keep their tiles on chip) */
    int cheap_to_recompute;
    brg__comm_kind comm_kind[BRG_PASS_COUNT]; /* a tensor-parallel rank's collective in that pass, if any */
    double comm_bytes[BRG_PASS_COUNT];
} brg__op_costs;
void brg__op_costs_get(const brg__op *op, int64_t batch, brg__op_costs *costs);
/* Whether every backend's backward of op can write the gradient of input q rather than add to it
 * (brg__op_call.din_fresh): every activation input of the ops with kernels (the products' by GEMMs with
 * beta 0), where a zero-fill and a read of the whole buffer would otherwise come first. */
int brg__op_writes_fresh(const brg__op *op, int q);
/* The workspace one call needs on a backend whose kernels run on the host (host != 0) or not. */
static inline int64_t brg__op_scratch_floats(const brg__op_costs *c, int host) {
    return host && c->host_scratch_floats > c->scratch_floats ? c->host_scratch_floats : c->scratch_floats;
}

/* ---- executing one op (the backends' kernel interface) ----
 * Tensors are dense, row-major, with BRG_BATCH bound to `batch`. Forward writes `out` (and `aux`).
 * Backward accumulates: din[i] += d(loss)/d(input i), for every i whose din[i] is non-NULL; the runtime
 * asks for activation inputs in the backward-input pass and parameters in the backward-weight pass.
 * Where bit i of din_fresh is set, din[i] holds no gradient yet (its contents are undefined) and backward
 * writes it instead: din[i] = d(loss)/d(input i). The runtime sets that bit only where
 * brg__op_writes_fresh(op, i) says every backend honours it; elsewhere it zeroes din[i] first.
 * Kernels validate data they cannot trust (token ids, targets) and report through msg. */
/* The tensor-parallel group's collectives, for a kernel that communicates inside (the cross-entropy over a
 * split vocabulary): on backend memory, blocking, every member calling in the same order. */
typedef struct brg__tp_comm {
    int rank, size;
    void *ctx;
    /* buf[0, n) summed over the group in member order: bitwise alike on every member */
    brg_status (*allreduce)(void *ctx, float *buf, int64_t n, char *msg);
    /* buf[size * n]: member i's n entries at i * n (this member's already in place) */
    brg_status (*allgather)(void *ctx, float *buf, int64_t n, char *msg);
} brg__tp_comm;

typedef struct brg__op_call {
    const brg__op *op;
    int64_t batch;
    const void *in[BRG__MAX_INPUTS]; /* F32 or I32, as the input tensor's dtype */
    void *out;
    float *aux;     /* brg__op_costs.aux_floats elements, kept from forward to backward */
    float *scratch; /* brg__op_costs.scratch_floats elements, contents undefined */
    const float *dout;
    float *din[BRG__MAX_INPUTS];
    unsigned din_fresh; /* bit i: din[i] is written, not added to (see above) */
    char *msg; /* BRG_ERROR_MESSAGE_MAX bytes for a failure message; may be NULL */
    int tp_rank;               /* this rank's index in its tensor-parallel group (0 without one) */
    const brg__tp_comm *comm;  /* the group, for ops with tp_vocab; NULL without one */
} brg__op_call;

#endif
