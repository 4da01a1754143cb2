/* brigade: the layer graph.
 *
 * A model is a DAG of ops. Each op has a kind, up to three inputs (activations or parameters), one
 * output, a name, and the layer it belongs to. Layers (brg_layer_begin / brg_layer_end) group ops and
 * are the unit the partitioner places: stages are cut only between layers. An op outside any layer is
 * a layer of its own.
 *
 * Lifecycle: brg_graph_create -> inputs, parameters, layers and ops -> brg_graph_finalize -> introspect
 * or train -> brg_graph_destroy. After finalize the graph is immutable: building calls return NULL and
 * set BRG_ERR_INVALID_USAGE.
 *
 * Errors are sticky, like cairo's: the first failing call records a status and a message (naming the
 * op, the layer and the shapes involved); every later building call on that graph returns NULL (or the
 * same status) and changes nothing, so a model builder checks once, at the end.
 * This example is compiled and run by the test suite:
 *
 *     brg_graph *g;
 *     if (brg_graph_create(&g) != BRG_OK) return 1;
 *     brg_tensor *tok = brg_input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, 32});
 *     brg_tensor *tgt = brg_input(g, "targets", BRG_I32, 2, (int64_t[]){BRG_BATCH, 32});
 *     brg_tensor *h = brg_embedding(g, tok, 64, 16, "wte");
 *     brg_layer_begin(g, "block");
 *     h = brg_add(g, h, brg_linear(g, brg_gelu(g, brg_linear(g, h, 64, "fc"), "act"), 16, "proj"), "res");
 *     brg_layer_end(g);
 *     brg_tensor *logits = brg_matmul(g, h, brg_graph_param(g, "wte.weight"), BRG_MATMUL_TRANSPOSE_B, "head");
 *     brg_cross_entropy(g, logits, tgt, "loss");
 *     if (brg_graph_finalize(g) != BRG_OK) {
 *         fprintf(stderr, "%s\n", brg_graph_last_error(g));
 *         brg_graph_destroy(g);
 *         return 1;
 *     }
 *     brg_graph_destroy(g);
 *     return 0;
 *
 * A graph in error stays inspectable: counts and infos describe what was built before the error.
 *
 * Tensors (brg_tensor *) are owned by their graph and live until brg_graph_destroy. Names passed in are
 * copied. The leading dimension BRG_BATCH is symbolic: the micro-batch size, bound at run time. */
#ifndef BRIGADE_GRAPH_H
#define BRIGADE_GRAPH_H

#include <stdint.h>

#include "brigade/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brg_graph brg_graph;
typedef struct brg_tensor brg_tensor;

/* The symbolic micro-batch dimension; allowed only as the first dimension of an input. */
#define BRG_BATCH (-1)
/* Most dimensions a tensor may have. */
#define BRG_MAX_DIMS 4
/* Longest name (layer, op, tensor, parameter), terminator included. */
#define BRG_MAX_NAME 128
/* Most elements one tensor may hold, per sample for shapes with BRG_BATCH and at the micro-batch the
 * trainer binds (2^40: 4 TiB of fp32). Shapes past it are BRG_ERR_SHAPE: sizes derived from them (bytes,
 * attention's B x heads x T x T) then stay far inside int64. */
#define BRG_MAX_TENSOR_ELEMENTS (INT64_C(1) << 40)

typedef enum brg_dtype {
    BRG_F32 = 0,
    BRG_I32 = 1,
} brg_dtype;

typedef enum brg_op_kind {
    BRG_OP_EMBEDDING = 0,     /* out[n,:] = weight[tokens[n],:] */
    BRG_OP_LINEAR = 1,        /* out = x weight^T + bias; weight (out_features, in_features) */
    BRG_OP_MATMUL = 2,        /* out = op(a) op(b), batched over leading dims; b may be 2-D (shared) */
    BRG_OP_ADD = 3,           /* out = a + b; b's shape equals a's or a suffix of it (broadcast) */
    BRG_OP_LAYERNORM = 4,     /* over the last dimension, with weight and bias */
    BRG_OP_GELU = 5,          /* tanh approximation */
    BRG_OP_RELU = 6,
    BRG_OP_ATTENTION = 7,     /* causal multi-head self-attention on a fused (.., T, 3C) q,k,v input */
    BRG_OP_CROSS_ENTROPY = 8, /* per-position softmax cross-entropy loss: (.., V) logits, (..) targets */
    /* The collectives of tensor parallelism, which only the graph a tensor-parallel rank runs holds (inserted
     * by the trainer and the planner from brg_tensor_parallel's marks, never built by hand), over the ranks
     * of one tensor-parallel group (Megatron-LM's f and g, and their sequence-parallel forms): */
    BRG_OP_TP_COPY = 9,     /* forward: identity; backward: the gradient summed over the group */
    BRG_OP_TP_REDUCE = 10,  /* forward: the input summed over the group; backward: identity */
    BRG_OP_TP_GATHER = 11,  /* forward: the sequence (dim 1) gathered from the group; backward: summed and scattered */
    BRG_OP_TP_SCATTER = 12, /* forward: summed over the group and scattered along the sequence; backward: gathered */
    BRG_OP_KIND_COUNT = 13,
} brg_op_kind;

typedef enum brg_matmul_flags {
    BRG_MATMUL_NONE = 0,
    BRG_MATMUL_TRANSPOSE_A = 1,
    BRG_MATMUL_TRANSPOSE_B = 2,
} brg_matmul_flags;

typedef enum brg_tensor_kind {
    BRG_TENSOR_INPUT = 0,      /* data fed per micro-batch (tokens, targets, features) */
    BRG_TENSOR_PARAMETER = 1,  /* trained; owned by the graph; may be used by several ops (tied) */
    BRG_TENSOR_ACTIVATION = 2, /* the output of an op */
} brg_tensor_kind;

typedef enum brg_init_kind {
    BRG_INIT_ZEROS = 0,
    BRG_INIT_ONES = 1,
    BRG_INIT_NORMAL = 2, /* mean 0, standard deviation `std` */
} brg_init_kind;

typedef struct brg_init {
    brg_init_kind kind;
    float std;
} brg_init;

/* ---- lifecycle ------------------------------------------------------------------------------- */

/* Creates an empty graph in *out. Returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (out is NULL) or
 * BRG_ERR_OUT_OF_MEMORY. The caller owns the graph and frees it with brg_graph_destroy. */
brg_status brg_graph_create(brg_graph **out);

/* Frees the graph and every tensor handle it gave out. NULL is allowed. */
void brg_graph_destroy(brg_graph *g);

/* The sticky status: BRG_OK until a call fails; BRG_ERR_INVALID_ARGUMENT for a NULL graph. */
brg_status brg_graph_status(const brg_graph *g);

/* A message naming what failed, or "" when the graph is fine. Never NULL; owned by the graph and valid
 * until the next call on it. For a NULL graph, a static string saying so. */
const char *brg_graph_last_error(const brg_graph *g);

/* Checks the whole graph and makes it immutable: layers balanced, exactly one cross-entropy op (the
 * loss), at least one input. Returns BRG_OK, the sticky status if the graph is already in error,
 * BRG_ERR_INVALID_USAGE (open layer, no loss, two losses, already finalized) or
 * BRG_ERR_INVALID_ARGUMENT (NULL). */
brg_status brg_graph_finalize(brg_graph *g);

/* Whether brg_graph_finalize succeeded (0 or 1; 0 for NULL). */
int brg_graph_is_final(const brg_graph *g);

/* ---- building -------------------------------------------------------------------------------- */
/* Every call below returns the new tensor, or NULL on failure (and the graph records why). `name` is
 * required, at most BRG_MAX_NAME - 1 bytes, and unique: inside a layer an op's full name is
 * "<layer>.<name>"; an op's parameters are "<full name>.weight" and "<full name>.bias". */

/* A per-micro-batch input. shape[0] may be BRG_BATCH; every other dimension must be positive. */
brg_tensor *brg_input(brg_graph *g, const char *name, brg_dtype dtype, int ndim, const int64_t *shape);

/* A free-standing F32 parameter named exactly `name` (not prefixed by the layer), every dimension
 * positive, initialized as `init` says. */
brg_tensor *brg_param(brg_graph *g, const char *name, int ndim, const int64_t *shape, brg_init init);

/* The parameter with that full name, for tying (the output head reusing the token embedding).
 * Unknown name: NULL and BRG_ERR_NAME. */
brg_tensor *brg_graph_param(brg_graph *g, const char *name);

/* Changes a parameter's initialization (GPT-2 scales its residual projections). Returns BRG_OK,
 * BRG_ERR_INVALID_ARGUMENT (NULL, not a parameter of g, std < 0), BRG_ERR_INVALID_USAGE (finalized), or
 * the sticky status. */
brg_status brg_param_set_init(brg_graph *g, brg_tensor *param, brg_init init);

/* Opens a layer named by printf-style `fmt`. Layers do not nest. Returns BRG_OK, the sticky status,
 * BRG_ERR_INVALID_USAGE (a layer is already open, or finalized) or BRG_ERR_NAME (duplicate, empty or
 * too long); a failure is recorded as the graph's error. */
brg_status brg_layer_begin(brg_graph *g, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Closes the open layer. BRG_ERR_INVALID_USAGE if none is open or it holds no op. */
brg_status brg_layer_end(brg_graph *g);

/* tokens: I32 (.., ) -> F32 (.., dim). Parameter "<name>.weight" (num_embeddings, dim), normal(0.02). */
brg_tensor *brg_embedding(brg_graph *g, brg_tensor *tokens, int64_t num_embeddings, int64_t dim,
                          const char *name);

/* x: F32 (.., in) -> (.., out_features). Parameters weight (out_features, in) normal(0.02), bias zeros. */
brg_tensor *brg_linear(brg_graph *g, brg_tensor *x, int64_t out_features, const char *name);

/* a: (.., M, K) ((.., K, M) with TRANSPOSE_A); b: (K, N) ((N, K) with TRANSPOSE_B), either 2-D and
 * shared by every leading index of a, or with a's leading dimensions. out: (.., M, N). Either operand
 * may be a parameter (a tied output head: h x wte^T). */
brg_tensor *brg_matmul(brg_graph *g, brg_tensor *a, brg_tensor *b, brg_matmul_flags flags, const char *name);

/* a + b. b has a's shape, or the shape of a's trailing dimensions (broadcast over the leading ones). */
brg_tensor *brg_add(brg_graph *g, brg_tensor *a, brg_tensor *b, const char *name);

/* Normalizes over the last dimension; weight ones, bias zeros. eps > 0 (GPT-2: 1e-5). */
brg_tensor *brg_layernorm(brg_graph *g, brg_tensor *x, float eps, const char *name);

/* Elementwise GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
brg_tensor *brg_gelu(brg_graph *g, brg_tensor *x, const char *name);

/* Elementwise max(x, 0). */
brg_tensor *brg_relu(brg_graph *g, brg_tensor *x, const char *name);

/* qkv: F32 (B, T, 3C), q, k and v side by side as in GPT-2; C divisible by heads. out: (B, T, C).
 * Scores are scaled by 1/sqrt(C / heads); position t attends to positions <= t. */
brg_tensor *brg_causal_attention(brg_graph *g, brg_tensor *qkv, int64_t heads, const char *name);

/* logits: F32 (.., V); targets: I32 with logits' leading dimensions. out: F32 (..), the loss of each
 * position. A graph has exactly one; training minimizes the mean over every position of the global
 * batch. A target outside [0, V) fails at run time with BRG_ERR_INVALID_ARGUMENT. */
brg_tensor *brg_cross_entropy(brg_graph *g, brg_tensor *logits, brg_tensor *targets, const char *name);

/* ---- tensor parallelism ------------------------------------------------------------------------------
 * A model says how its ops split over the t ranks of a tensor-parallel group (Megatron-LM: Shoeybi et al.
 * 2019; with sequence parallelism, Korthikanti et al. 2022); the trainer and the planner derive, for any t,
 * what each rank computes and where the group communicates. Parameters keep the unsplit model's names and
 * shapes here: each rank holds a slice, and checkpoints and fingerprints stay those of the whole model.
 *   COLUMN (linear): output features split; `blocks` > 1 when the output is that many equal blocks split
 *     alike (GPT-2's fused q, k, v: 3), so that an attention reading it keeps whole heads on each rank.
 *   ROW (linear): input features split (it reads a COLUMN output, through attention or an elementwise
 *     op); the partial outputs are summed over the group, then the bias added.
 *   VOCAB (embedding): vocabulary rows split; an output head reading the same weight (h x W^T) then gives
 *     each rank its share of the logits, and the cross-entropy reads them where they are. A vocabulary not
 *     divisible by t is padded (rows no token reaches, logits the loss leaves out).
 * Every other op is computed whole by every rank (with sequence parallelism: layernorms, residual adds and
 * elementwise ops on the rank's share of the positions). */
typedef enum brg_tp_role {
    BRG_TP_REPLICATED = 0,
    BRG_TP_COLUMN = 1,
    BRG_TP_ROW = 2,
    BRG_TP_VOCAB = 3,
} brg_tp_role;

/* Marks the op that produced `output` with its role (blocks: 1, or for COLUMN the equal blocks of its
 * output features, which it must divide). Returns BRG_OK, the sticky status, BRG_ERR_INVALID_ARGUMENT
 * (NULL, not an op output of g, a role the op kind cannot take: COLUMN and ROW need a linear, VOCAB an
 * embedding; blocks < 1 or not dividing), BRG_ERR_INVALID_USAGE (finalized). */
brg_status brg_tensor_parallel(brg_graph *g, brg_tensor *output, brg_tp_role role, int blocks);

/* ---- introspection (for the partitioner, the runtime and reports) ---------------------------- */
/* Per-sample figures count one unit of BRG_BATCH; multiply by the micro-batch size. Indices are
 * dense from 0. Each info call returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL) or BRG_ERR_NOT_FOUND
 * (index out of range). Strings and tensor handles in infos are owned by the graph. */

typedef enum brg_pass {
    BRG_PASS_FORWARD = 0,
    BRG_PASS_BACKWARD_INPUT = 1,  /* gradients of an op's activation inputs */
    BRG_PASS_BACKWARD_WEIGHT = 2, /* gradients of an op's parameters */
    BRG_PASS_COUNT = 3,
} brg_pass;

typedef struct brg_tensor_info {
    const char *name;
    brg_tensor_kind kind;
    brg_dtype dtype;
    int ndim;
    int64_t shape[BRG_MAX_DIMS]; /* shape[0] is BRG_BATCH for per-micro-batch tensors */
    int64_t bytes_per_sample;    /* for BRG_BATCH tensors; the whole size otherwise */
    int64_t producer;            /* index of the op producing it; -1 for inputs and parameters */
    int layer;                   /* layer of the producer; -1 for inputs and parameters */
    int consumers;               /* how many op inputs read it */
} brg_tensor_info;

typedef struct brg_op_info {
    const char *name; /* full name */
    brg_op_kind kind;
    const char *kind_name; /* "linear", "attention", ... */
    int layer;
    int n_inputs;
    const brg_tensor *inputs[3];
    const brg_tensor *output;
    double flops[BRG_PASS_COUNT];       /* per sample */
    double bytes_moved[BRG_PASS_COUNT]; /* memory traffic per sample (reads + writes), F32 */
    int64_t saved_bytes_per_sample;     /* kept from forward for backward (output and internals) */
    int64_t param_bytes;                /* parameters it reads (tied ones counted by each user) */
    int cheap_to_recompute;             /* no GEMM: selective recomputation redoes it */
} brg_op_info;

typedef struct brg_layer_info {
    const char *name;
    int64_t op_begin, op_end; /* ops [op_begin, op_end) in topological order */
    int64_t param_count;      /* parameter elements its ops read (a tied parameter counts in each layer) */
    int64_t param_bytes;
    double flops[BRG_PASS_COUNT]; /* per sample */
    int64_t saved_bytes_per_sample;
    int64_t output_bytes_per_sample; /* activations leaving the layer for later layers */
} brg_layer_info;

int64_t brg_graph_tensor_count(const brg_graph *g);
int64_t brg_graph_op_count(const brg_graph *g);
int brg_graph_layer_count(const brg_graph *g);

/* Total parameter elements, each parameter once (tied parameters counted once). */
int64_t brg_graph_param_count(const brg_graph *g);

brg_status brg_graph_tensor_info(const brg_graph *g, int64_t index, brg_tensor_info *info);
brg_status brg_tensor_get_info(const brg_tensor *t, brg_tensor_info *info);
brg_status brg_graph_op_info(const brg_graph *g, int64_t index, brg_op_info *info);
brg_status brg_graph_layer_info(const brg_graph *g, int index, brg_layer_info *info);

/* Bytes per sample of the activations produced in layers <= `layer` and read by layers > `layer`: what a
 * stage boundary after `layer` carries forward (and its gradient back). Tensors that skip several layers
 * count at every boundary they cross. Inputs are not counted (every stage loads its own). */
brg_status brg_graph_boundary_bytes(const brg_graph *g, int layer, int64_t *bytes_per_sample);

/* The name of an op kind ("embedding", "linear", ...); "unknown" outside the enum. */
const char *brg_op_kind_name(brg_op_kind kind);

#ifdef __cplusplus
}
#endif
#endif
