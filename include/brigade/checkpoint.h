/* brigade: checkpoints. A step of training saved as a directory of safetensors files that any layout
 * (another pipeline depth, split or schedule) resumes bitwise, and that Hugging Face transformers loads
 * for GPT-2 models (their parameter names and layouts).
 *
 *     root/step-000100/model-00001-of-00002.safetensors      parameters owned by rank 0 (fp32)
 *     root/step-000100/model-00002-of-00002.safetensors      ... by rank 1
 *     root/step-000100/model.safetensors.index.json          {"metadata": {"total_size"}, "weight_map"}
 *     root/step-000100/optimizer-0000r-of-0000R.safetensors  AdamW's m and v ("<name>.exp_avg", ".exp_avg_sq")
 *     root/step-000100/config.json                           GPT2Config (gpt models)
 *     root/step-000100/trainer.json                          step, data position, model hash, fingerprint
 *     root/latest                                            "step-000100": the last complete step
 *
 * A step is written under a temporary name, every file and the directory fsync'ed, then renamed, and
 * `latest` is replaced (temporary name, fsync, rename) only after: a crash at any moment leaves the
 * previous complete step as `latest`. Under MPI hosting every rank writes its own files into the same
 * directory (a file system all ranks share) and rank 0 the rest. */
#ifndef BRIGADE_CHECKPOINT_H
#define BRIGADE_CHECKPOINT_H

#include <stdint.h>

#include "brigade/models.h"
#include "brigade/status.h"
#include "brigade/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brg_checkpoint_options {
    /* The model the trainer's graph was built from: config.json, and Hugging Face names and layouts for
     * the gpt family ("transformer.h.0.attn.c_attn.weight", Conv1D weights as (in, out)); NULL or another
     * family: brigade's names and layouts. */
    const brg_model_config *model;
    int keep; /* complete steps kept under root (older ones removed once the new one is complete); 0: all */
} brg_checkpoint_options;

#define BRG_CHECKPOINT_OPTIONS_INIT {NULL, 0}

/* Saves the trainer's current state (after brg_trainer_step k: step k) under root (created if needed).
 * Collective under MPI hosting. Returns BRG_OK; BRG_ERR_INVALID_ARGUMENT; BRG_ERR_IO (a file could not be
 * written: err names it and why; the previous complete step stays `latest`); BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_checkpoint_save(brg_trainer *t, const char *root, const brg_checkpoint_options *o, brg_error *err);

/* Loads the last complete step under root into t, whatever layout saved it: parameters, AdamW state, the
 * step count and the data position, so that training goes on as if it had never stopped. *step (may be
 * NULL) receives the step. Collective under MPI hosting. Returns BRG_OK; BRG_ERR_NOT_FOUND (root holds no
 * complete step: t is unchanged, a run starts from scratch); BRG_ERR_PARSE or BRG_ERR_IO (a damaged or
 * foreign checkpoint: err names the file and what is wrong); BRG_ERR_SHAPE (a tensor of another shape);
 * BRG_ERR_INVALID_ARGUMENT (a checkpoint of another model). After a failure other than NOT_FOUND the
 * trainer's parameters may be partly loaded: destroy it. */
brg_status brg_checkpoint_resume(brg_trainer *t, const char *root, const brg_checkpoint_options *o, int64_t *step,
                                 brg_error *err);

/* Loads Hugging Face GPT-2 weights into t's parameters (its AdamW state stays zero, its step 0): `path`
 * is a .safetensors file, or a directory holding model.safetensors or a sharded
 * model.safetensors.index.json, with config.json beside it (checked against `model` when present:
 * n_embd, n_layer, n_head, vocab_size, and n_positions at least the model's seq). Names may carry the
 * `transformer.` prefix (GPT2LMHeadModel.save_pretrained) or not (the published gpt2 files); the
 * attn.bias and attn.masked_bias causal-mask buffers and lm_head.weight (tied to wte) are skipped;
 * Conv1D weights are transposed into brigade's layout; wpe's first seq rows are taken. `model` must be
 * of the gpt family. Collective under MPI hosting. Returns BRG_OK; BRG_ERR_INVALID_ARGUMENT (another
 * family, a config.json that does not match: err names the field); BRG_ERR_PARSE, BRG_ERR_IO (a damaged
 * or missing file, a tensor missing: err names it); BRG_ERR_SHAPE (a tensor of another shape);
 * BRG_ERR_UNSUPPORTED (a dtype other than F32, F16, BF16, F64). */
brg_status brg_checkpoint_import_hf(brg_trainer *t, const char *path, const brg_model_config *model, brg_error *err);

#ifdef __cplusplus
}
#endif
#endif
