/* Internal view of the layer graph, shared by the graph module, the backends and the runtime. */
#ifndef BRIGADE_GRAPH_INTERNAL_H
#define BRIGADE_GRAPH_INTERNAL_H

#include <stdint.h>

#include "brigade/graph.h"
#include "internal.h"

#define BRG__MAX_INPUTS 3

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

/* Per-op metadata from the op registry, with BRG_BATCH bound to `batch`. */
typedef struct brg__op_costs {
    double flops[BRG_PASS_COUNT];
    double bytes_moved[BRG_PASS_COUNT];
    int64_t aux_floats;     /* internals saved by forward for backward (layernorm mean/rstd, attention probs) */
    int64_t scratch_floats; /* temporary workspace for one call of forward or backward */
    int cheap_to_recompute;
} brg__op_costs;
void brg__op_costs_get(const brg__op *op, int64_t batch, brg__op_costs *costs);

/* ---- executing one op (the backends' kernel interface) ----
 * Tensors are dense, row-major, with BRG_BATCH bound to `batch`. Forward writes `out` (and `aux`).
 * Backward accumulates: din[i] += d(loss)/d(input i), for every i whose din[i] is non-NULL; the runtime
 * asks for activation inputs in the backward-input pass and parameters in the backward-weight pass.
 * Kernels validate data they cannot trust (token ids, targets) and report through msg. */
typedef struct brg__op_call {
    const brg__op *op;
    int64_t batch;
    const void *in[BRG__MAX_INPUTS]; /* F32 or I32, as the input tensor's dtype */
    void *out;
    float *aux;     /* brg__op_costs.aux_floats elements, kept from forward to backward */
    float *scratch; /* brg__op_costs.scratch_floats elements, contents undefined */
    const float *dout;
    float *din[BRG__MAX_INPUTS];
    char *msg; /* BRG_ERROR_MESSAGE_MAX bytes for a failure message; may be NULL */
} brg__op_call;

#endif
