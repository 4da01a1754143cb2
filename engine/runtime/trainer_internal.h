/* Trainer internals that tests reach. */
#ifndef BRIGADE_TRAINER_INTERNAL_H
#define BRIGADE_TRAINER_INTERNAL_H

#include "brigade/train.h"

/* Makes the forward of (virtual stage, micro-batch) fail with BRG_ERR_BACKEND, as a kernel failure would
 * (stage -1 turns it off). For tests of failure handling. */
void brg__trainer_inject_failure(brg_trainer *t, int stage, int micro_batch);

/* Makes rank's backend report a kept error after the optimizer step, as a fault in an AdamW kernel (a
 * void entry) would (rank -1 turns it off). */
void brg__trainer_inject_optimizer_fault(brg_trainer *t, int rank);

/* Cuts g's layers into n contiguous parts minimizing the largest part's forward + backward FLOPs;
 * first_layers[k] receives part k's first layer. BRG_OK, BRG_ERR_INVALID_ARGUMENT (n < 1 or n > layers),
 * BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__balanced_split(const brg_graph *g, int n, int *first_layers);

#endif
