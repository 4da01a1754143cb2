/* The model builders behind brg_model_build. Not installed. */
#ifndef BRIGADE_MODELS_INTERNAL_H
#define BRIGADE_MODELS_INTERNAL_H

#include "brigade/graph.h"
#include "brigade/models.h"

/* Each adds the family's inputs, layers and loss to the empty graph g, from a validated config. They
 * rely on the graph's sticky error: the caller checks brg_graph_finalize once, at the end. */
void brg__model_add_gpt(brg_graph *g, const brg_model_config *cfg);
void brg__model_add_mlp(brg_graph *g, const brg_model_config *cfg);
void brg__model_add_skipnet(brg_graph *g, const brg_model_config *cfg);

/* Sets the initialization of the parameter named `name` (printf-style) to normal(0, std). */
void brg__model_init_normal(brg_graph *g, float std, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Ops "linear" (-> hidden; He-normal weight, std sqrt(2 / fan_in), for the ReLU after it) and "relu",
 * in the open layer named `layer`. x: (B, T, in) -> (B, T, hidden). */
brg_tensor *brg__model_linear_relu(brg_graph *g, brg_tensor *x, int64_t hidden, const char *layer);

/* Layer "head": ops "linear" (-> vocab, weight normal(0, 0.02)) and "loss" (cross-entropy). */
void brg__model_head(brg_graph *g, brg_tensor *x, brg_tensor *targets, int64_t vocab);

#endif
