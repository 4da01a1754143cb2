/* mlp: a position-wise stack of ReLU layers over a token embedding. */
#include <stdio.h>

#include "models/models_internal.h"

void brg__model_add_mlp(brg_graph *g, const brg_model_config *cfg) {
    int64_t T = cfg->seq, C = cfg->hidden, V = cfg->vocab;
    brg_tensor *tokens = brg_input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, T});   // (B, T)
    brg_tensor *targets = brg_input(g, "targets", BRG_I32, 2, (int64_t[]){BRG_BATCH, T}); // (B, T)
    brg_tensor *h = brg_embedding(g, tokens, V, C, "wte");                               // (B, T, C)
    brg__model_init_normal(g, 1.0f, "wte.weight");
    for (int l = 0; l < (int)cfg->layers; l++) {
        char layer[BRG_MAX_NAME];
        snprintf(layer, sizeof layer, "fc.%d", l);
        brg_layer_begin(g, "%s", layer);
        h = brg__model_linear_relu(g, h, C, layer); // (B, T, C)
        brg_layer_end(g);
    }
    brg__model_head(g, h, targets, V);
}
