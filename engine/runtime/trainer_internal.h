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

/* Makes every rank of data-parallel replica `replica` fail at its gradient sum (its buckets already
 * posted, the other replicas waiting on them), as a replica that dies mid all-reduce (-1 turns it off). */
void brg__trainer_inject_replica_failure(brg_trainer *t, int replica);

/* Makes the forward of (virtual stage, micro-batch) of replica 0 write a NaN into its first op's output,
 * as a kernel gone wrong would (stage -1 turns it off): the numerical checks then name it. */
void brg__trainer_inject_nan(brg_trainer *t, int stage, int micro_batch);

/* Cuts g's layers into n contiguous parts minimizing the largest part's forward + backward FLOPs;
 * first_layers[k] receives part k's first layer. BRG_OK, BRG_ERR_INVALID_ARGUMENT (n < 1 or n > layers),
 * BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__balanced_split(const brg_graph *g, int n, int *first_layers);

/* ---- state, for checkpoints (engine/io/checkpoint.c) ---- */

/* Steps done, and the index of the next global sample the data source gives. */
int64_t brg__trainer_steps_done(const brg_trainer *t);
int64_t brg__trainer_next_sample(const brg_trainer *t);
/* Sets both (a resumed run continues from them). BRG_OK or BRG_ERR_INVALID_ARGUMENT (negative, or not a
 * whole number of steps' samples). */
brg_status brg__trainer_set_progress(brg_trainer *t, int64_t steps_done, int64_t next_sample);

/* Whether this process holds parameter p's owner copy (the one checkpoints save), or any copy (the ones
 * a resume must fill). A parameter no op reads has neither. */
int brg__trainer_owns_param(const brg_trainer *t, int64_t p);
int brg__trainer_holds_param(const brg_trainer *t, int64_t p);

/* Parameter p's values and AdamW moments (m, v; each numel floats, host memory) from its owner copy.
 * BRG_OK, BRG_ERR_NOT_FOUND (not owned here), BRG_ERR_INVALID_ARGUMENT. */
brg_status brg__trainer_read_param_state(const brg_trainer *t, int64_t p, float *param, float *m, float *v);
/* Sets them on every copy this process holds (a tied parameter's holders alike). */
brg_status brg__trainer_write_param_state(brg_trainer *t, int64_t p, const float *param, const float *m,
                                          const float *v);

/* This process's rank and the number of ranks (1 rank per process under MPI hosting; 0 of 1, holding
 * every rank, in threads). */
int brg__trainer_process_rank(const brg_trainer *t);
int brg__trainer_process_count(const brg_trainer *t);

/* The trainer's graph; the process whose rank owns parameter p (-1: no op reads it); samples per step. */
const brg_graph *brg__trainer_graph(const brg_trainer *t);
int brg__trainer_param_owner_process(const brg_trainer *t, int64_t p);
int64_t brg__trainer_step_samples(const brg_trainer *t);

/* Every process's status of a collective piece of work, agreed: BRG_OK when all succeeded; else this
 * process's own failure, or (msg) the first rank that failed. Threads: `mine`. Collective under MPI. */
brg_status brg__trainer_agree(brg_trainer *t, brg_status mine, char *msg);

/* Replicas (data_parallel). */
int brg__trainer_replicas(const brg_trainer *t);

/* ZeRO-1: every replica's AdamW moment parts gathered into full moments on every stage (so that
 * brg__trainer_read_param_state reads them), and freed again. Collective; no-ops without ZeRO-1. */
brg_status brg__trainer_gather_moments(brg_trainer *t, char *msg);
void brg__trainer_release_moments(brg_trainer *t);

#endif
