/* skipnet: a U-Net-like stack whose tensors skip over several layers, to exercise non-chain graphs. */
#include <stdio.h>

#include "models/models_internal.h"

/* Layer `layer`: an optional "skip" add, then "linear" and "relu". h: (B, T, C) -> (B, T, C). */
static brg_tensor *skipnet_layer(brg_graph *g, brg_tensor *h, brg_tensor *skip, int64_t hidden,
                                 const char *layer) {
    brg_layer_begin(g, "%s", layer);
    if (skip) h = brg_add(g, h, skip, "skip"); // (B, T, C)
    h = brg__model_linear_relu(g, h, hidden, layer); // (B, T, C)
    brg_layer_end(g);
    return h;
}

void brg__model_add_skipnet(brg_graph *g, const brg_model_config *cfg) {
    int64_t T = cfg->seq, C = cfg->hidden, V = cfg->vocab;
    int L = (int)cfg->layers;
    brg_tensor *tokens = brg_input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, T});   // (B, T)
    brg_tensor *targets = brg_input(g, "targets", BRG_I32, 2, (int64_t[]){BRG_BATCH, T}); // (B, T)
    brg_tensor *h = brg_embedding(g, tokens, V, C, "wte");                               // (B, T, C)
    brg__model_init_normal(g, 1.0f, "wte.weight");

    /* The outputs of the down layers, read again by the mirrored up layers (L is validated). */
    brg_tensor *down[BRG_MODEL_MAX_LAYERS];
    char layer[BRG_MAX_NAME];
    for (int i = 0; i < L; i++) {
        snprintf(layer, sizeof layer, "down.%d", i);
        down[i] = h = skipnet_layer(g, h, NULL, C, layer);
    }
    h = skipnet_layer(g, h, NULL, C, "mid");
    for (int j = 0; j < L; j++) {
        snprintf(layer, sizeof layer, "up.%d", j);
        h = skipnet_layer(g, h, down[L - 1 - j], C, layer);
    }
    brg__model_head(g, h, targets, V);
}
