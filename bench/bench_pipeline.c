/* Pipeline throughput on this machine: a balanced 2-stage 1F1B pipeline of an mlp, m = 8 micro-batches,
 * one BLAS thread per stage, against one stage with one BLAS thread. Prints tokens/s, the speed-up, and
 * the measured bubble beside the 1F1B expectation (p-1)/(m+p-1). Figures only: nothing is asserted.
 * The default model has 16 equal layers and a small head, so that two stages can be balanced to within a
 * few percent at layer granularity (with 8 wide layers and a large head the best split is ~15% uneven).
 *   bench_pipeline [MODEL_SPEC] [STEPS]   (default mlp:layers=16,hidden=768,vocab=64,seq=64, 8 steps) */
#include <stdio.h>
#include <stdlib.h>

#include "brigade.h"

typedef struct result {
    double tokens_per_second;
    double bubble;
    double seconds;
} result;

static int measure(const brg_graph *g, const brg_model_config *cfg, int stages, int steps, result *out) {
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.micro_batch = 8;
    o.micro_batches = 8;
    o.stages = stages;
    o.schedule = BRG_SCHEDULE_1F1B;
    o.blas_threads = 1;
    brg_error err = {0};
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    if (brg_data_synthetic_create(&d, cfg->vocab, cfg->seq, 1, &err) != BRG_OK ||
        brg_trainer_create(&t, g, &o, &err) != BRG_OK) {
        fprintf(stderr, "bench_pipeline: %s\n", err.message);
        brg_data_destroy(d);
        return 1;
    }
    double seconds = 0, tokens = 0, bubble = 0;
    for (int s = 0; s <= steps; s++) {
        brg_step_stats st;
        if (brg_trainer_step(t, d, &st) != BRG_OK) {
            fprintf(stderr, "bench_pipeline: %s\n", brg_trainer_last_error(t));
            brg_trainer_destroy(t);
            brg_data_destroy(d);
            return 1;
        }
        if (s == 0) continue; /* warm-up: page faults, BLAS buffers */
        seconds += st.seconds;
        tokens += (double)st.tokens;
        bubble += st.bubble;
    }
    out->tokens_per_second = tokens / seconds;
    out->bubble = bubble / steps;
    out->seconds = seconds / steps;
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    return 0;
}

int main(int argc, char **argv) {
    const char *spec = argc > 1 ? argv[1] : "mlp:layers=16,hidden=768,vocab=64,seq=64";
    int steps = argc > 2 ? atoi(argv[2]) : 8;
    if (steps < 1) steps = 1;
    brg_model_config cfg;
    brg_error err = {0};
    brg_graph *g = NULL;
    if (brg_model_parse(spec, &cfg, &err) != BRG_OK || brg_model_build(&cfg, &g, &err) != BRG_OK) {
        fprintf(stderr, "bench_pipeline: %s\n", err.message);
        return 1;
    }
    result one, two;
    if (measure(g, &cfg, 1, steps, &one) || measure(g, &cfg, 2, steps, &two)) {
        brg_graph_destroy(g);
        return 1;
    }
    int p = 2, m = 8;
    double expected = (double)(p - 1) / (m + p - 1);
    printf("model %s, micro-batch 8, m = %d, one BLAS thread per stage, %d timed steps\n", spec, m, steps);
    printf("pp=1:        %10.1f tokens/s  (%.3f s/step)\n", one.tokens_per_second, one.seconds);
    printf("pp=2, 1F1B:  %10.1f tokens/s  (%.3f s/step)\n", two.tokens_per_second, two.seconds);
    printf("speed-up:    %10.2fx  (1F1B bound 2m/(m+p-1) = %.2fx; target >= 1.60x)\n",
           two.tokens_per_second / one.tokens_per_second, 2.0 * m / (m + p - 1));
    printf("bubble:      %9.1f%% measured, %.1f%% expected (p-1)/(m+p-1)\n", 100 * two.bubble, 100 * expected);
    brg_graph_destroy(g);
    return 0;
}
