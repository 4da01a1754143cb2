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
#include "brigade/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brg_trainer brg_trainer;

typedef struct brg_train_options {
    int64_t micro_batch;   /* samples per micro-batch (binds BRG_BATCH); >= 1 */
    int64_t micro_batches; /* micro-batches per step (gradient accumulation); >= 1 */
    float lr;              /* AdamW learning rate; > 0 */
    float beta1, beta2;    /* in [0, 1) */
    float eps;             /* > 0 */
    float weight_decay;    /* decoupled, on parameters of 2 or more dimensions; >= 0 */
    float grad_clip;       /* clip the global gradient norm to this; 0 turns clipping off */
    uint64_t seed;         /* parameter initialization */
    int blas_threads;      /* OpenBLAS threads; 0 leaves OpenBLAS's own setting */
} brg_train_options;

#define BRG_TRAIN_OPTIONS_INIT {4, 1, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1337, 0}

typedef struct brg_step_stats {
    int64_t step;         /* 1 for the first step */
    double loss;          /* mean loss over the step's global batch */
    double grad_norm;     /* global gradient norm before clipping */
    int64_t tokens;       /* positions trained on in this step */
    double seconds;       /* wall time of the step */
    double tokens_per_second;
    int64_t peak_bytes;   /* peak bytes the backend held during the step */
} brg_step_stats;

/* Creates a trainer for the finalized graph g. Allocates and initializes parameters, optimizer state,
 * gradients and activations for one micro-batch. err (may be NULL) says what failed.
 * Returns BRG_OK; BRG_ERR_INVALID_ARGUMENT (NULL out/g/opts, an option out of range: the message names
 * it); BRG_ERR_INVALID_USAGE (graph not finalized, or in error); BRG_ERR_UNSUPPORTED (a graph input other
 * than "tokens"/"targets", or one that is not I32 (BRG_BATCH, T)); BRG_ERR_OUT_OF_MEMORY; BRG_ERR_BACKEND. */
brg_status brg_trainer_create(brg_trainer **out, const brg_graph *g, const brg_train_options *opts,
                              brg_error *err);

/* Runs one training step on the next global batch of `data` (samples numbered from 0 across steps).
 * stats (may be NULL) receives the step's figures. Returns BRG_OK; BRG_ERR_INVALID_ARGUMENT (NULL, a data
 * source whose vocabulary or sequence length does not fit the graph, a token or target out of range);
 * BRG_ERR_BACKEND. After a failure the trainer is in error and later steps return the same status. */
brg_status brg_trainer_step(brg_trainer *t, brg_data *data, brg_step_stats *stats);

/* A 64-bit hash of every parameter's bytes in canonical (name) order: two runs with the same hash have
 * bitwise the same parameters. Returns BRG_OK or BRG_ERR_INVALID_ARGUMENT. */
brg_status brg_trainer_fingerprint(const brg_trainer *t, uint64_t *out);

/* Copies parameter `name` (count elements) into dst. BRG_ERR_NAME for an unknown name, BRG_ERR_SHAPE for a
 * wrong count, BRG_ERR_INVALID_ARGUMENT for NULLs. */
brg_status brg_trainer_get_param(const brg_trainer *t, const char *name, float *dst, int64_t count);

/* Bytes the backend holds now (parameters, optimizer state, gradients, activations). */
int64_t brg_trainer_memory_bytes(const brg_trainer *t);

/* The message of the last failure ("" if none). Never NULL; owned by the trainer. */
const char *brg_trainer_last_error(const brg_trainer *t);

/* Frees the trainer. NULL is allowed. */
void brg_trainer_destroy(brg_trainer *t);

#ifdef __cplusplus
}
#endif
#endif
