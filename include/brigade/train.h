/* brigade: training a layer graph.
 *
 * A trainer owns everything one training run needs: the parameters (initialized deterministically from
 * a seed and each parameter's name, so placement never changes them), the optimizer state (AdamW), the
 * gradient buffers, the activation stash and a backend (the CPU backend: fp32, OpenBLAS, a jemalloc
 * arena of its own). Each step runs `micro_batches` micro-batches of `micro_batch` samples with gradient
 * accumulation; the loss is the mean over every position of the global batch.
 *
 * Lifecycle: brg_trainer_create (the graph must be finalized and outlive the trainer) ->
 * brg_trainer_step, repeatedly -> brg_trainer_destroy.
 *
 * This example is compiled and run by the test suite:
 *
 *     brg_model_config cfg;
 *     brg_graph *g = NULL;
 *     brg_data *data = NULL;
 *     brg_trainer *tr = NULL;
 *     brg_error err = {0};
 *     int rc = 1;
 *     if (brg_model_parse("gpt:layers=1,hidden=32,heads=2,vocab=16,seq=8", &cfg, &err) != BRG_OK ||
 *         brg_model_build(&cfg, &g, &err) != BRG_OK ||
 *         brg_data_synthetic_create(&data, cfg.vocab, cfg.seq, 1, &err) != BRG_OK)
 *         goto done;
 *     brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
 *     o.micro_batch = 2;
 *     if (brg_trainer_create(&tr, g, &o, &err) != BRG_OK) goto done;
 *     brg_step_stats st;
 *     for (int i = 0; i < 3; i++)
 *         if (brg_trainer_step(tr, data, &st) != BRG_OK) {
 *             snprintf(err.message, sizeof err.message, "%s", brg_trainer_last_error(tr));
 *             goto done;
 *         }
 *     rc = 0;
 *     done:
 *     if (rc) fprintf(stderr, "%s\n", err.message);
 *     brg_trainer_destroy(tr);
 *     brg_data_destroy(data);
 *     brg_graph_destroy(g);
 *     return rc;
 *
 * The graph's inputs must be named "tokens" and "targets", both I32 (BRG_BATCH, seq): the trainer feeds
 * them from a brg_data source (include/brigade/data.h). */
#ifndef BRIGADE_TRAIN_H
#define BRIGADE_TRAIN_H

#include <stdint.h>

#include "brigade/data.h"
#include "brigade/graph.h"
#include "brigade/schedule.h"
#include "brigade/status.h"
#include "brigade/topology.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brg_trainer brg_trainer;

/* What a stage keeps of a micro-batch between its forward and its backward. */
typedef enum brg_recompute {
    BRG_RECOMPUTE_NONE = 0,      /* every activation */
    BRG_RECOMPUTE_FULL = 1,      /* only the stage's inputs; the whole forward runs again before backward */
    BRG_RECOMPUTE_SELECTIVE = 2, /* GEMM outputs; ops cheap to recompute (norms, activations, attention) run again */
} brg_recompute;

/* Where the stages run. */
typedef enum brg_backend_kind {
    BRG_BACKEND_CPU = 0,  /* fp32, OpenBLAS */
    BRG_BACKEND_CUDA = 1, /* cuBLAS and NCCL: rank r on GPU r % (GPUs visible) */
} brg_backend_kind;

/* How the learning rate moves over the run (after a linear warm-up from lr / warmup_steps to lr). */
typedef enum brg_lr_schedule {
    BRG_LR_CONSTANT = 0, /* lr */
    BRG_LR_COSINE = 1,   /* lr down to min_lr along half a cosine, by total_steps */
    BRG_LR_LINEAR = 2,   /* lr down to min_lr in a straight line, by total_steps */
} brg_lr_schedule;

/* Where the ranks live. */
typedef enum brg_hosting {
    BRG_HOSTING_THREADS = 0, /* one thread per rank, in this process */
    BRG_HOSTING_MPI = 1,     /* one process per rank, launched by mpirun or srun */
} brg_hosting;

typedef struct brg_train_options {
    int64_t micro_batch;   /* samples per micro-batch (binds BRG_BATCH); >= 1 */
    int64_t micro_batches; /* micro-batches per step (gradient accumulation); >= 1 */
    float lr;              /* AdamW learning rate; > 0 */
    float beta1, beta2;    /* in [0, 1) */
    float eps;             /* > 0 */
    float weight_decay;    /* decoupled, on parameters of 2 or more dimensions; >= 0 */
    float grad_clip;       /* clip the global gradient norm to this; 0 turns clipping off */
    uint64_t seed;         /* parameter initialization */
    int blas_threads;      /* CPU kernel threads per rank (OpenBLAS itself runs single-threaded inside each
                            * call); 0: the machine's cores divided among the ranks. Results do not depend on it. */
    /* The pipeline. stages ranks (threads of this process) run chunks virtual stages each, under
     * `schedule`; the layers are split into stages * chunks contiguous virtual stages, at `split` when
     * given (split_count = stages * chunks - 1 first-layer indices of stages 1.., ascending), else so
     * that the stages' forward + backward FLOPs are as even as possible. */
    int stages;
    int chunks;
    brg_schedule_kind schedule;
    brg_recompute recompute;
    const int *split; /* borrowed during brg_trainer_create */
    int split_count;
    double timeout_seconds; /* a rank waiting longer than this on a peer fails the step; <= 0: never */
    int record_trace;       /* keep the last step's timeline for brg_trainer_write_trace */
    brg_backend_kind backend;
    brg_precision precision; /* of activations and GEMMs: FP32, or BF16 on CUDA (parameters stay fp32) */
    /* The recompute policy of each virtual stage (stage_recompute_count = stages * chunks entries), in
     * place of `recompute` (a plan picks the cheapest policy that fits each stage); NULL: `recompute` for
     * every stage. Borrowed during brg_trainer_create. */
    const brg_recompute *stage_recompute;
    int stage_recompute_count;
    /* CPU: transfers between ranks complete only once their receive is posted (rendezvous), as they do on
     * NCCL always and on MPI past the eager limit, instead of being buffered. An exchange that waits on a
     * send before posting the receive its peer waits on, which would hang there, then fails here with a
     * timeout; results are the same either way. 0 (buffered) by default; CUDA ranks ignore it. */
    int rendezvous;
    /* How ranks are hosted. BRG_HOSTING_THREADS: every rank is a thread of this process. BRG_HOSTING_MPI:
     * this process is one rank of an MPI job (include/brigade/launch.h): stage r runs in the process of rank
     * r of the communicator, which must have exactly `stages` ranks; every rank creates the trainer with
     * the same options and model (checked at creation: a hash of both, with `consistency_key`, compared
     * across ranks), and steps it together. CPU ranks talk through MPI, CUDA ranks through NCCL (bootstrapped
     * over MPI), each on the GPU of its local rank. */
    brg_hosting hosting;
    const void *mpi_comm;     /* BRG_HOSTING_MPI: an MPI_Comm * to run on; NULL: MPI_COMM_WORLD. Borrowed during create */
    uint64_t consistency_key; /* BRG_HOSTING_MPI: anything else every rank must agree on (the CLI: its flags) */
    /* The learning rate of step s (1, 2, ...): lr * s / warmup_steps while s <= warmup_steps; then per
     * lr_schedule, from lr at the warm-up's end to min_lr at total_steps (and min_lr after). total_steps
     * must exceed warmup_steps for cosine and linear. brg_lr_at computes it. */
    brg_lr_schedule lr_schedule;
    int64_t warmup_steps; /* >= 0 */
    float min_lr;         /* in [0, lr] */
    int64_t total_steps;  /* cosine, linear */
    /* Data parallelism: data_parallel replicas of the pipeline, stages * data_parallel ranks in all. Each
     * step's global batch is data_parallel * micro_batches * micro_batch samples, replica d training on the
     * d-th contiguous share (so the samples of a step do not depend on data_parallel); the replicas'
     * gradients are summed in buckets of about bucket_bytes (0: 4 MiB) posted as backward produces them,
     * in replica order, so every replica keeps bitwise the same parameters. rank_layout (data_parallel *
     * stages entries, a permutation of the ranks; borrowed during create): the rank of stage p of replica
     * d is rank_layout[d * stages + p]; NULL: d * stages + p (each replica's stages on consecutive ranks).
     * zero = 1: ZeRO-1, each replica keeps AdamW's moments of 1 / data_parallel of the parameters (ignored
     * with one replica). */
    int data_parallel;
    int zero;
    const int *rank_layout;
    int64_t bucket_bytes;
    /* Numerical checks. Every step, the loss of each micro-batch and the global gradient norm must be finite:
     * otherwise the step fails with BRG_ERR_NUMERICAL before the optimizer runs (the parameters stay as they
     * were). Steps 1, 1 + nan_check_every, 1 + 2 nan_check_every, ... also scan every op's output and every
     * gradient a backward writes, so the error names the stage, micro-batch, op and tensor where a NaN or an
     * infinity first appeared (a scan reads each tensor once more). 0: the loss and the norm alone; >= 0. */
    int64_t nan_check_every;
    /* Tensor parallelism (include/brigade/graph.h: brg_tensor_parallel): each stage of each replica runs on a
     * group of tensor_parallel ranks, each holding its slices of the stage's parameters and computing its
     * share of every marked op, the group summing and gathering between (Megatron-LM); sequence_parallel 1
     * also splits the positions between the split ops (layernorms, residual adds). Ranks: tensor_parallel x
     * stages x data_parallel; with rank_layout, the rank of (replica d, stage p, tensor-parallel index i) is
     * rank_layout[(d * stages + p) * tensor_parallel + i] (it then has that many entries); without, that
     * index itself (a group's ranks consecutive: on one node, on its fastest links). Parameters keep the
     * whole model's names: checkpoints and fingerprints are those of the whole model, whatever the split.
     * 1 and 0: none. */
    int tensor_parallel;
    int sequence_parallel;
} brg_train_options;

#define BRG_TRAIN_OPTIONS_INIT                                                                             \
    {4, 1, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1337, 0, 1, 1, BRG_SCHEDULE_1F1B, BRG_RECOMPUTE_NONE, NULL, 0, \
     600.0, 0, BRG_BACKEND_CPU, BRG_PRECISION_FP32, NULL, 0, 0, BRG_HOSTING_THREADS, NULL, 0, BRG_LR_CONSTANT, 0, \
     0.0f, 0, 1, 0, NULL, 0, 100, 1, 0}

/* The learning rate of step `step` (from 1) under o's schedule. */
double brg_lr_at(const brg_train_options *o, int64_t step);

/* Per rank figures of the last step. */
typedef struct brg_rank_stats {
    double compute_seconds;  /* forward, backward and optimizer passes */
    double transfer_seconds; /* posting sends, copying between stages */
    double wait_seconds;     /* blocked on a peer */
    double bubble;           /* 1 - compute / the step's wall time */
    int64_t peak_bytes;      /* the rank's backend at its peak in the step */
    int64_t activation_peak_bytes; /* peak minus what the rank held at the step's start */
    int peak_in_flight;      /* micro-batches whose activations were held at once, at most */
    int stage, replica;      /* the rank's pipeline stage and data-parallel replica */
    int64_t moment_bytes;    /* AdamW moments the rank holds (under ZeRO-1, its shards) */
    double allreduce_wait_seconds; /* waiting for the gradient sums after backward (not hidden by it) */
    int tensor_index;        /* the rank's index in its tensor-parallel group (0 without one) */
} brg_rank_stats;

typedef struct brg_step_stats {
    int64_t step;         /* 1 for the first step */
    double loss;          /* mean loss over the step's global batch */
    double grad_norm;     /* global gradient norm before clipping */
    double lr;            /* the learning rate the step used */
    int64_t tokens;       /* positions trained on in this step */
    double seconds;       /* wall time of the step */
    double tokens_per_second;
    int64_t peak_bytes;   /* peak bytes held during the step, all ranks together */
    double bubble;        /* idle share of the ranks' time: sum of idle / (ranks * wall time) */
} brg_step_stats;

/* Creates a trainer for the finalized graph g. Allocates and initializes parameters, optimizer state,
 * gradients and activations for one micro-batch. err (may be NULL) says what failed.
 * Returns BRG_OK; BRG_ERR_INVALID_ARGUMENT (NULL out/g/opts, an option out of range: the message names
 * it; a micro_batch that makes a tensor of g hold more than BRG_MAX_TENSOR_ELEMENTS elements: the message
 * names the tensor and the largest micro-batch that fits); BRG_ERR_INVALID_USAGE (graph not finalized, or in error); BRG_ERR_UNSUPPORTED (a graph input other
 * than "tokens"/"targets", or one that is not I32 (BRG_BATCH, T)); BRG_ERR_OUT_OF_MEMORY; BRG_ERR_BACKEND. */
brg_status brg_trainer_create(brg_trainer **out, const brg_graph *g, const brg_train_options *opts,
                              brg_error *err);

/* Runs one training step on the next global batch of `data` (samples numbered from 0 across steps). Under
 * MPI hosting every rank steps together, each with its own data source over the same samples.
 * stats (may be NULL) receives the step's figures. Returns BRG_OK; BRG_ERR_INVALID_ARGUMENT (NULL, a data
 * source whose vocabulary or sequence length does not fit the graph, a token or target out of range);
 * BRG_ERR_BACKEND. After a failure the trainer is in error and later steps return the same status. */
brg_status brg_trainer_step(brg_trainer *t, brg_data *data, brg_step_stats *stats);

/* The mean loss over `batches` micro-batches (micro_batch samples each) of `data`, samples 0.. (the same
 * ones every call: a validation set), through the pipeline's stages with forward passes only; the
 * parameters do not change. Collective under MPI hosting. BRG_OK; BRG_ERR_INVALID_ARGUMENT (NULL,
 * batches < 1, another sequence length); a backend or transport status (the trainer is then in error). */
brg_status brg_trainer_evaluate(brg_trainer *t, brg_data *data, int64_t batches, double *loss);

/* Figures of rank `rank` (0 .. brg_trainer_rank_count - 1) in the last step (under MPI hosting, every rank's, exchanged at the step's end).
 * BRG_OK, BRG_ERR_INVALID_ARGUMENT or BRG_ERR_NOT_FOUND. */
brg_status brg_trainer_rank_stats(const brg_trainer *t, int rank, brg_rank_stats *out);

/* Number of ranks (stages x data_parallel). */
int brg_trainer_rank_count(const brg_trainer *t);

/* First layer of each virtual stage (stages * chunks entries) into first_layers; *count receives the
 * number. BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL, capacity too small). */
brg_status brg_trainer_split(const brg_trainer *t, int *first_layers, int capacity, int *count);

/* Writes the last step's measured timeline as Chrome trace JSON (needs record_trace). Under MPI hosting
 * every rank calls it and rank 0 writes one file holding every rank's track (each rank's times count from
 * its own start of the step). BRG_OK; BRG_ERR_INVALID_USAGE (no step recorded); BRG_ERR_IO (err names
 * the path). */
brg_status brg_trainer_write_trace(const brg_trainer *t, const char *path, brg_error *err);

/* A 64-bit hash of every parameter's bytes in canonical (name) order (FNV-1a over each name and the
 * FNV-1a of its bytes): two runs with the same hash have bitwise the same parameters, however they were
 * hosted. Under MPI hosting every rank calls it (collective) and gets the same value. Returns BRG_OK,
 * BRG_ERR_INVALID_ARGUMENT, BRG_ERR_OUT_OF_MEMORY, or a transport's status. */
brg_status brg_trainer_fingerprint(const brg_trainer *t, uint64_t *out);

/* Copies parameter `name` (count elements) into dst. BRG_ERR_NAME for an unknown name, BRG_ERR_SHAPE for a
 * wrong count, BRG_ERR_INVALID_ARGUMENT for NULLs, BRG_ERR_NOT_FOUND under MPI hosting for a parameter
 * only another process's stage holds. */
brg_status brg_trainer_get_param(const brg_trainer *t, const char *name, float *dst, int64_t count);

/* Bytes the backends hold now (parameters, optimizer state, gradients, activations), all ranks together
 * (under MPI hosting, as of the last step's end, or creation). */
int64_t brg_trainer_memory_bytes(const brg_trainer *t);

/* The message of the last failure ("" if none). Never NULL; owned by the trainer. */
const char *brg_trainer_last_error(const brg_trainer *t);

/* Frees the trainer. NULL is allowed. */
void brg_trainer_destroy(brg_trainer *t);

#ifdef __cplusplus
}
#endif
#endif
