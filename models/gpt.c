/* GPT-2 (llm.c's train_gpt2.c) as a layer graph, with Hugging Face GPT-2 parameter names. */
#include <math.h>

#include "models/models_internal.h"

#define GPT_LAYERNORM_EPS 1e-5f
#define GPT_INIT_STD 0.02f

/* One transformer block, as layer "h.<index>". h: (B, T, C) -> (B, T, C). Under tensor parallelism
 * (Megatron-LM) the heads split over the group: c_attn by columns (q, k and v alike), c_proj by rows; the
 * MLP's c_fc by columns, its c_proj by rows. */
static brg_tensor *gpt_block(brg_graph *g, brg_tensor *h, const brg_model_config *cfg, int index) {
    int64_t C = cfg->hidden;
    brg_layer_begin(g, "h.%d", index);
    brg_tensor *x = brg_layernorm(g, h, GPT_LAYERNORM_EPS, "ln_1");   // (B, T, C)
    brg_tensor *qkv = brg_linear(g, x, 3 * C, "attn.c_attn");          // (B, T, 3C)
    brg_tensor_parallel(g, qkv, BRG_TP_COLUMN, 3);
    brg_tensor *a = brg_causal_attention(g, qkv, cfg->heads, "attn"); // (B, T, C)
    a = brg_linear(g, a, C, "attn.c_proj");                             // (B, T, C)
    brg_tensor_parallel(g, a, BRG_TP_ROW, 1);
    h = brg_add(g, h, a, "attn_residual");                              // (B, T, C)
    x = brg_layernorm(g, h, GPT_LAYERNORM_EPS, "ln_2");                // (B, T, C)
    x = brg_linear(g, x, 4 * C, "mlp.c_fc");                            // (B, T, 4C)
    brg_tensor_parallel(g, x, BRG_TP_COLUMN, 1);
    x = brg_gelu(g, x, "mlp.gelu");                                     // (B, T, 4C)
    x = brg_linear(g, x, C, "mlp.c_proj");                              // (B, T, C)
    brg_tensor_parallel(g, x, BRG_TP_ROW, 1);
    h = brg_add(g, h, x, "mlp_residual");                               // (B, T, C)
    brg_layer_end(g);

    /* GPT-2 scales the projections that feed the residual stream by 1/sqrt(2 L): each block adds two. */
    float residual_std = GPT_INIT_STD / sqrtf(2.0f * (float)cfg->layers);
    brg__model_init_normal(g, residual_std, "h.%d.attn.c_proj.weight", index);
    brg__model_init_normal(g, residual_std, "h.%d.mlp.c_proj.weight", index);
    return h;
}

void brg__model_add_gpt(brg_graph *g, const brg_model_config *cfg) {
    int64_t T = cfg->seq, C = cfg->hidden, V = cfg->vocab;
    brg_tensor *tokens = brg_input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, T});   // (B, T)
    brg_tensor *targets = brg_input(g, "targets", BRG_I32, 2, (int64_t[]){BRG_BATCH, T}); // (B, T)

    /* Outside any layer, so that the layer and parameter names are Hugging Face's: "wte.weight". */
    brg_tensor *h = brg_embedding(g, tokens, V, C, "wte"); // (B, T, C)
    brg_tensor_parallel(g, h, BRG_TP_VOCAB, 1);            // rows of the vocabulary split (and the tied head's)
    brg_tensor *wpe = brg_param(g, "wpe.weight", 2, (int64_t[]){T, C},
                                (brg_init){BRG_INIT_NORMAL, GPT_INIT_STD}); // (T, C)
    h = brg_add(g, h, wpe, "wpe");                                           // (B, T, C)

    for (int l = 0; l < (int)cfg->layers; l++) h = gpt_block(g, h, cfg, l);

    h = brg_layernorm(g, h, GPT_LAYERNORM_EPS, "ln_f"); // (B, T, C)
    /* The output head is the token embedding, transposed: tied, counted once. */
    brg_layer_begin(g, "lm_head");
    brg_tensor *logits = brg_matmul(g, h, brg_graph_param(g, "wte.weight"), BRG_MATMUL_TRANSPOSE_B,
                                    "logits"); // (B, T, V)
    brg_cross_entropy(g, logits, targets, "loss"); // (B, T)
    brg_layer_end(g);
}
