/* A stage: the ops [op_begin, op_end) of a graph with the memory to run them on one backend: parameters
 * and optimizer state, gradients per (parameter, consuming op), and per in-flight micro-batch slot the
 * activations, their gradients and the ops' saved internals. Internal. */
#ifndef BRIGADE_STAGE_H
#define BRIGADE_STAGE_H

#include <stdint.h>

#include "backend.h"
#include "graph/graph_internal.h"

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
    int n_slots;
    float dloss_value; /* d(step loss)/d(loss of one position) */

    /* per tensor index; NULL where the stage does not touch the tensor */
    void ***acts;       /* [slot][tensor] */
    float ***act_grads; /* [slot][tensor] */
    float ***aux;       /* [slot][op - op_begin] */
    int64_t *zero_before; /* [tensor] op whose backward first adds to the gradient (zeroed then); -1 never */
    float *scratch;
    float *dloss; /* the loss output's gradient: dloss_value everywhere */

    /* per parameter index; NULL where the stage does not use the parameter */
    float **param;
    float **adam_m, **adam_v;
    float **param_grad;    /* the step's total gradient (aliases the consumer's buffer when it is the only one) */
    float **consumer_grad; /* [(op - op_begin) * BRG__MAX_INPUTS + input] */
    int *param_consumers;  /* [param] consumers inside this stage */

    char msg[BRG_ERROR_MESSAGE_MAX];
} brg__stage;

/* Allocates everything the stage needs and initializes its parameters from `seed` and their names.
 * dloss_value is what every position's loss gradient is (1 / positions in the global batch). */
brg_status brg__stage_create(brg__stage **out, const brg_graph *g, brg__backend *be, int64_t op_begin,
                             int64_t op_end, int64_t batch, int n_slots, uint64_t seed, float dloss_value,
                             char *msg);
void brg__stage_destroy(brg__stage *s);

/* Forward of every op of the stage for the micro-batch in `slot`; its inputs must be in place. */
brg_status brg__stage_forward(brg__stage *s, int slot);
/* Backward (a part, or both) for the micro-batch in `slot`, ops in reverse order. */
brg_status brg__stage_backward(brg__stage *s, int slot, brg__backward_part part);

/* Zeroes every parameter gradient (start of a step). */
void brg__stage_zero_grads(brg__stage *s);
/* Sums each parameter's consumer gradients in op order into param_grad. */
void brg__stage_reduce_grads(brg__stage *s);
/* Sum of squares of param_grad of parameter p (double, element order). */
double brg__stage_grad_sum_squares(brg__stage *s, int64_t p);
/* Scales every gradient, then AdamW on every parameter of the stage. */
void brg__stage_optimizer_step(brg__stage *s, float grad_scale, float lr, float beta1, float beta2, float eps,
                               float weight_decay, int step);

/* Sum over positions (double, in order) of the loss output in `slot`, if this stage holds the loss. */
brg_status brg__stage_loss_sum(brg__stage *s, int slot, double *sum);

/* Initial values of parameter t (n elements) from seed and its name, on the host. */
void brg__param_init_values(const brg_tensor *t, uint64_t seed, float *dst, int64_t n);

#endif
