/* A stage: the ops [op_begin, op_end) of a graph with the memory to run them on one backend: parameters
 * and optimizer state, gradients per (parameter, consuming op), and per micro-batch in flight its
 * activations, their gradients and the ops' saved internals, allocated when the micro-batch arrives and
 * freed when its backward is done (so the backend's peak memory follows the schedule). Internal. */
#ifndef BRIGADE_STAGE_H
#define BRIGADE_STAGE_H

#include <stdint.h>

#include "backend.h"
#include "brigade/train.h"
#include "graph/graph_internal.h"
#include "transport/transport.h"

typedef enum brg__backward_part {
    BRG__BACKWARD_INPUT = 1,  /* gradients of activation inputs */
    BRG__BACKWARD_WEIGHT = 2, /* gradients of parameters */
    BRG__BACKWARD_FULL = 3,
} brg__backward_part;

typedef struct brg__stage {
    const brg_graph *graph;
    brg__backend *be;
    int64_t op_begin, op_end;
    int64_t batch; /* samples per micro-batch */
    int n_slots;   /* micro-batches per step: slot = micro-batch index */
    brg_recompute recompute;

    /* Tensors by role (indices into graph->tensors, ascending). */
    int64_t *recv, n_recv;     /* activations produced before op_begin and read from op_begin on */
    int64_t *send, n_send;     /* activations produced before op_end and read from op_end on */
    int64_t *inputs, n_inputs; /* graph inputs the stage's ops read */
    int64_t *local, n_local;   /* outputs of the stage's ops */

    /* Per slot, per tensor index (NULL where not allocated). */
    void ***acts;
    float ***act_grads;
    float ***aux; /* [slot][op - op_begin] */
    unsigned char *dropped; /* [slot]: activations dropped after forward, to recompute before backward */
    int64_t *zero_before;   /* [tensor] op whose backward first adds to the gradient (zeroed then); -1 never */
    float *scratch;
    float *dloss; /* the loss output's gradient: dloss_value everywhere */
    float *loss_kept; /* [n_slots][loss positions]: each micro-batch's loss, read by the host once per step */

    /* Per parameter index; NULL where the stage does not use the parameter. */
    float **param;
    float **adam_m, **adam_v;
    float **param_grad;    /* the step's total gradient (aliases the consumer's buffer when it is the only one) */
    float **consumer_grad; /* [(op - op_begin) * BRG__MAX_INPUTS + input] */
    int *param_consumers;  /* [param] consumers inside this stage */
    unsigned char *grad_owned; /* [param] param_grad is a buffer of its own (else it aliases the consumer's) */
    unsigned char *grad_lent;  /* [param] param_grad (and its consumer's, if one) is a view into a bucket */

    /* Called after each op's weight gradients of slot `hook_slot` (the step's last micro-batch), in the
     * backward's order: the op's parameter gradients are final then (data parallelism posts them). NULL: none. */
    brg_status (*grad_hook)(void *ctx, struct brg__stage *s, int64_t op);
    void *hook_ctx;
    int hook_slot;

    /* Numerical checks, set by the trainer before each step. check_finite: every op's output in forward, and
     * every gradient an op's backward writes, are scanned for NaN and infinity; the first found fails the
     * pass with BRG_ERR_NUMERICAL naming the op, its layer and the tensor. poison_slot >= 0 (a test hook):
     * the forward of that micro-batch writes a NaN into its first op's output (then it is checked as ever). */
    int check_finite;
    int poison_slot;

    /* Tensor parallelism (the graph is a rank's share: brg__graph_localize): this rank's index in its group
     * of tp_size, the group (set by the trainer before the first pass; NULL with one rank), and the
     * collectives kernels reach through op calls. */
    int tp_rank, tp_size;
    brg__group *tp_group;
    brg__tp_comm comm;

    char msg[BRG_ERROR_MESSAGE_MAX];
} brg__stage;

/* Allocates the stage's parameters (initialized from `seed` and their names: a slice of a tensor-parallel
 * graph takes rank tp_rank's share of the whole parameter's values), optimizer state and gradients;
 * activations come per micro-batch (brg__stage_acquire). dloss_value is every position's loss gradient
 * (1 / positions in the global batch). */
brg_status brg__stage_create(brg__stage **out, const brg_graph *g, brg__backend *be, int64_t op_begin,
                             int64_t op_end, int64_t batch, int n_slots, brg_recompute recompute, uint64_t seed,
                             float dloss_value, int tp_rank, char *msg);
/* Joins the stage to its tensor-parallel group (members in index order; this rank at tp_rank). */
void brg__stage_set_tensor_group(brg__stage *s, brg__group *group);
/* Sums the gradient of every parameter the stage holds whole but computes from its share of the positions
 * (sequence parallelism: brg_tensor.partial_grad) over the group, in parameter order; p >= 0: that one
 * only. Collective over the group. */
brg_status brg__stage_sum_partial_grads(brg__stage *s, int64_t p);
void brg__stage_destroy(brg__stage *s);

/* Allocates slot's received activations and inputs (idempotent); forward allocates the rest. */
brg_status brg__stage_acquire(brg__stage *s, int slot);
/* Allocates slot's activation gradients (idempotent). */
brg_status brg__stage_acquire_grads(brg__stage *s, int slot);
/* Frees everything slot holds. */
void brg__stage_release(brg__stage *s, int slot);

/* Forward of every op for the micro-batch in `slot`; its received tensors and inputs must be in place. */
brg_status brg__stage_forward(brg__stage *s, int slot);
/* Applies the recompute policy after forward (and after the stage's outputs were sent): full drops every
 * activation but the received ones and the inputs; selective drops the outputs and internals of the ops
 * that are cheap to recompute. */
void brg__stage_drop(brg__stage *s, int slot);
/* Rebuilds what brg__stage_drop dropped by running those ops' forward again (bitwise the same). */
brg_status brg__stage_recompute(brg__stage *s, int slot);
/* Backward (a part, or both) for slot, ops in reverse order. Gradients of `send` tensors must be in place. */
brg_status brg__stage_backward(brg__stage *s, int slot, brg__backward_part part);

/* Gives parameter p's total gradient a buffer of its own (a tied parameter, summed across stages).
 * BRG_OK, BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__stage_own_param_grad(brg__stage *s, int64_t p);

/* Zeroes every parameter gradient (start of a step). */
void brg__stage_zero_grads(brg__stage *s);
/* Sums each parameter's consumer gradients inside the stage in op order into param_grad. */
void brg__stage_reduce_grads(brg__stage *s);
/* The same for parameter p alone (its consumers' gradients summed in op order into param_grad). */
void brg__stage_reduce_param_grad(brg__stage *s, int64_t p);
/* The first (lowest) op of the stage that reads parameter p: its backward is the last to add to p's
 * gradient. -1: none reads it. */
int64_t brg__stage_first_consumer(const brg__stage *s, int64_t p);
/* Makes parameter p's gradient live at `view` (numel floats of a data-parallel bucket, owned by the
 * caller, outliving the stage): the one consumer's buffer, or the buffer of the sum, is freed and replaced
 * by the view, so the bucket costs no memory of its own. */
void brg__stage_lend_grad(brg__stage *s, int64_t p, float *view);
/* Frees parameter p's AdamW moments (they live elsewhere: sharded across replicas). */
void brg__stage_release_moments(brg__stage *s, int64_t p);
/* Sum of squares of param_grad of parameter p (double, element order). */
double brg__stage_grad_sum_squares(brg__stage *s, int64_t p);
/* Scales every gradient, then AdamW on every parameter of the stage. */
void brg__stage_optimizer_step(brg__stage *s, float grad_scale, float lr, float beta1, float beta2, float eps,
                               float weight_decay, int step);

/* Sum over positions (double, in order) of the loss output in `slot`, if this stage holds the loss. */
brg_status brg__stage_loss_sum(brg__stage *s, int slot, double *sum);
/* The loss output of `slot` copied on the device into the stage's step buffer (no wait for the host). */
brg_status brg__stage_loss_keep(brg__stage *s, int slot);
/* sums[j] for the first `count` slots kept this step, as brg__stage_loss_sum adds them: one copy to the
 * host (one wait) for the whole step. */
brg_status brg__stage_loss_sums(brg__stage *s, int count, double *sums);

/* Bytes of t with BRG_BATCH bound to the stage's micro-batch. */
size_t brg__stage_tensor_bytes(const brg__stage *s, const brg_tensor *t);

/* Initial values of parameter t (n elements) from seed and its name, on the host. */
void brg__param_init_values(const brg_tensor *t, uint64_t seed, float *dst, int64_t n);

#endif
