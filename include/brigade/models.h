/* brigade: model builders.
 *
 * A model is described by a brg_model_config (a family and its sizes), parsed from a specification
 * string, and turned into a finalized layer graph by brg_model_build. Building allocates no parameter
 * memory, so the largest presets (gpt3-175b) build in milliseconds, for planning.
 *
 * Specifications:
 *     PRESET                     e.g. "gpt2-small", "gpt3-175b" (brg_model_preset_get lists them)
 *     FAMILY                     the family's defaults, e.g. "gpt"
 *     FAMILY:key=value,...       e.g. "gpt:layers=2,hidden=64,heads=4,vocab=64,seq=32"
 *     PRESET:key=value,...       a preset with some sizes changed, e.g. "gpt2-small:seq=256"
 * Values are positive whole numbers (decimal). Keys and their defaults, per family:
 *     gpt      layers=2 hidden=64 heads=4 vocab=64 seq=32   (hidden divisible by heads)
 *     mlp      layers=4 hidden=128 vocab=64 seq=32
 *     skipnet  layers=3 hidden=64 vocab=64 seq=32
 * Limits: layers <= 1024, hidden <= 65536, heads <= 65536, vocab <= 2^31 - 1, seq <= 2^20.
 *
 * Every model has two inputs, "tokens" and "targets", both I32 (BRG_BATCH, seq), and one
 * cross-entropy op, the loss (one value per position). The families:
 *
 * gpt — GPT-2 (as in llm.c's train_gpt2.c), with Hugging Face GPT-2 parameter names. Layers, in order:
 *     "wte"      embedding op "wte": tokens -> (B, T, C); parameter wte.weight (V, C)
 *     "wpe"      add op "wpe": + wpe.weight (T, C), broadcast over the batch
 *     "h.0" .. "h.{L-1}", each: ln_1 (layernorm, eps 1e-5), attn.c_attn (linear -> 3C), attn (causal
 *                attention), attn.c_proj (linear -> C), attn_residual (add), ln_2, mlp.c_fc (linear -> 4C),
 *                mlp.gelu, mlp.c_proj (linear -> C), mlp_residual (add)
 *     "ln_f"     layernorm op "ln_f"
 *     "lm_head"  ops "logits" (matmul with wte.weight transposed: the head tied to the embedding,
 *                (B, T, V)) and "loss" (cross-entropy with "targets")
 *   Parameters: wte.weight, wpe.weight, h.N.ln_1.weight/.bias, h.N.attn.c_attn.weight/.bias,
 *   h.N.attn.c_proj.weight/.bias, h.N.ln_2.weight/.bias, h.N.mlp.c_fc.weight/.bias,
 *   h.N.mlp.c_proj.weight/.bias, ln_f.weight/.bias. Linear weights are (out, in), as in llm.c; Hugging
 *   Face's Conv1D stores the same matrices transposed (in, out). Initialization as GPT-2 / llm.c:
 *   weights and embeddings normal(0, 0.02), biases zeros, layernorm ones/zeros, and the residual
 *   projections (attn.c_proj.weight, mlp.c_proj.weight) normal(0, 0.02 / sqrt(2 L)).
 *
 * mlp — position-wise: "wte" (embedding), "fc.0" .. "fc.{L-1}" (ops "linear" -> hidden, "relu"),
 *   "head" (ops "linear" -> vocab, "loss"). Embedding normal(0, 1), hidden weights He-normal
 *   (std sqrt(2 / hidden)), head weight normal(0, 0.02), biases zeros.
 *
 * skipnet — a U-Net-like stack whose tensors skip over several layers: "wte" (embedding), "down.0" ..
 *   "down.{L-1}" (ops "linear", "relu"; each output kept), "mid" (ops "linear", "relu"), "up.0" ..
 *   "up.{L-1}" (op "skip" adds the output of down.{L-1-j} to the running tensor, then "linear",
 *   "relu"), "head" (ops "linear" -> vocab, "loss"). The output of down.i is read by up.{L-1-i}, so it
 *   crosses 2 (L - i) layer boundaries. 2L + 1 hidden layers in all; initialization as mlp.
 *
 * Parameter counts (V vocab, C hidden, T seq, L layers):
 *     gpt      V C + T C + L (12 C^2 + 13 C) + 2 C      (the tied head counted once)
 *     mlp      V C + L (C^2 + C) + C V + V
 *     skipnet  V C + (2 L + 1)(C^2 + C) + C V + V
 *
 * Ownership: configs are plain values; brg_model_build gives the caller a graph to free with
 * brg_graph_destroy. Strings returned here are static. */
#ifndef BRIGADE_MODELS_H
#define BRIGADE_MODELS_H

#include <stdint.h>

#include "brigade/graph.h"
#include "brigade/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum brg_model_family {
    BRG_MODEL_GPT = 0,
    BRG_MODEL_MLP = 1,
    BRG_MODEL_SKIPNET = 2,
    BRG_MODEL_FAMILY_COUNT = 3,
} brg_model_family;

#define BRG_MODEL_MAX_LAYERS 1024
#define BRG_MODEL_MAX_HIDDEN 65536
#define BRG_MODEL_MAX_HEADS 65536
#define BRG_MODEL_MAX_VOCAB INT64_C(2147483647)
#define BRG_MODEL_MAX_SEQ (INT64_C(1) << 20)

typedef struct brg_model_config {
    brg_model_family family;
    int64_t layers; /* gpt: blocks; mlp: hidden layers; skipnet: down layers (as many up layers, plus mid) */
    int64_t hidden; /* model width C */
    int64_t heads;  /* gpt: attention heads; unused by mlp and skipnet */
    int64_t vocab;  /* V */
    int64_t seq;    /* T, tokens per sample */
    char name[BRG_MAX_NAME]; /* the preset's name, or the full specification; set by brg_model_parse */
} brg_model_config;

/* The gpt family's defaults: a small GPT-2 that learns the synthetic task on a CPU in seconds. */
#define BRG_MODEL_CONFIG_INIT {BRG_MODEL_GPT, 2, 64, 4, 64, 32, "gpt:layers=2,hidden=64,heads=4,vocab=64,seq=32"}

/* "gpt", "mlp", "skipnet"; "unknown" outside the enum. */
const char *brg_model_family_name(brg_model_family family);

/* Parses a specification (see the top of this header) into *cfg, the family's defaults filling the
 * keys not given, and cfg->name set. Returns:
 *   BRG_OK;
 *   BRG_ERR_INVALID_ARGUMENT: spec or cfg NULL; a value of 0 or above its limit; hidden not divisible
 *     by heads;
 *   BRG_ERR_PARSE: an empty specification or item, an item without '=' or without a value, a value
 *     that is not a whole number;
 *   BRG_ERR_NAME: an unknown family or preset (err lists them), an unknown key (err lists the family's
 *     keys), a key given twice.
 * err names the offending part of the specification. *cfg is changed only on success. */
brg_status brg_model_parse(const char *spec, brg_model_config *cfg, brg_error *err);

/* Checks a config filled by hand: family known, every size in range, hidden divisible by heads (gpt).
 * Returns BRG_OK or BRG_ERR_INVALID_ARGUMENT (err names the field). */
brg_status brg_model_validate(const brg_model_config *cfg, brg_error *err);

/* Writes the canonical specification of cfg ("gpt:layers=2,hidden=64,...") into buf (size bytes,
 * truncated to fit, always terminated when size > 0). Returns the length it needed, as snprintf. */
int brg_model_format(const brg_model_config *cfg, char *buf, int64_t size);

/* Presets: GPT-2 (Radford et al. 2019) and GPT-3 (Brown et al. 2020, Table 2.1) sizes. */
int brg_model_preset_count(void);
/* Fills *cfg (may be NULL) with preset `index` and *description (may be NULL) with a static line
 * ("GPT-3 XL, 1.3B parameters ..."). Returns BRG_OK or BRG_ERR_NOT_FOUND (index out of range). */
brg_status brg_model_preset_get(int index, brg_model_config *cfg, const char **description);

/* Builds and finalizes the model's graph in *out (NULL on failure). Returns BRG_OK;
 * BRG_ERR_INVALID_ARGUMENT (cfg or out NULL, or brg_model_validate fails); BRG_ERR_OUT_OF_MEMORY; or
 * the graph's status if a graph call fails (err then holds the graph's message). */
brg_status brg_model_build(const brg_model_config *cfg, brg_graph **out, brg_error *err);

/* Parameter elements of the model, computed without building it; equals brg_graph_param_count of
 * the built graph. -1 for a config brg_model_validate rejects. */
int64_t brg_model_param_count(const brg_model_config *cfg);

/* Model FLOPs per trained token (forward and backward), the numerator of MFU:
 *     gpt          6 N + 6 L C T
 *     mlp, skipnet 6 N
 * with N = brg_model_param_count. 6 N is 2 FLOPs per multiply-add per parameter for forward and twice
 * that for backward; like llm.c it counts every parameter (embeddings, biases and layernorms too:
 * the tied embedding does take part in the head's GEMM). 6 L C T is attention's two GEMMs (Q K^T and
 * A V, 2 T C each per token and layer, forward), halved by the causal mask, times three for forward
 * and backward. Recomputation is not counted. -1 for a config brg_model_validate rejects. */
double brg_model_flops_per_token(const brg_model_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
