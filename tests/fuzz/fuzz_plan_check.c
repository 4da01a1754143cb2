/* A plan file as `brigade train --plan` takes it (tools/cmd_train.c, apply_plan): loaded, checked against
 * the model alone, then against a topology, then turned into training options and a rank layout. The
 * model is fixed (the one the seed plans were made for), and so are the topologies: one DGX H100 node
 * and two PCIe-only 8-GPU nodes (node presets, so that the seeds' fingerprints stay valid). */
#include <stdio.h>
#include <stdlib.h>

#include "brigade.h"
#include "fuzz.h"

#define MODEL "gpt:layers=4,hidden=64,heads=4,vocab=64,seq=32"
#define TOPOLOGIES 2

typedef struct fixed {
    brg_graph *graph;
    brg_topology *topologies[TOPOLOGIES];
} fixed;

static brg_topology *preset_nodes(const char *preset, int count) {
    char json[256];
    snprintf(json, sizeof json, "{\"version\": 1, \"node_groups\": [{\"preset\": \"%s\", \"count\": %d}]}", preset,
             count);
    brg_topology *t = NULL;
    brg_error err = {0};
    if (brg_topology_load_cluster_string(&t, json, NULL, NULL, &err) != BRG_OK) {
        fprintf(stderr, "%s\n", err.message);
        brg_fuzz_fail("a preset topology does not load");
    }
    return t;
}

/* Built once: the model and the topologies stay for the life of the process. */
static const fixed *fixtures(void) {
    static fixed f;
    if (f.graph) return &f;
    brg_model_config cfg;
    brg_error err = {0};
    if (brg_model_parse(MODEL, &cfg, &err) != BRG_OK || brg_model_build(&cfg, &f.graph, &err) != BRG_OK) {
        fprintf(stderr, "%s\n", err.message);
        brg_fuzz_fail("the fixed model does not build");
    }
    f.topologies[0] = preset_nodes("dgx-h100", 1);
    f.topologies[1] = preset_nodes("pcie-8gpu", 2);
    return &f;
}

static void train_options(const brg_plan *plan, const brg_graph *g) {
    brg_train_options opts = BRG_TRAIN_OPTIONS_INIT;
    int split[256], layout[4096], ranks = 0;
    brg_recompute recompute[256];
    brg_error err = {0};
    brg_status s = brg_plan_train_options(plan, g, &opts, split, 256, recompute, 256, &err);
    brg_fuzz_check_error(s, err.message, "brg_plan_train_options");
    if (s == BRG_OK) (void)brg_plan_rank_layout(plan, layout, 4096, &ranks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const fixed *f = fixtures();
    char *json = brg_fuzz_string(data, size);
    if (!json) return 0;
    brg_plan *plan = NULL;
    brg_error err = {0};
    brg_status s = brg_plan_load_string(json, "fuzz-plan.json", &plan, &err);
    brg_fuzz_check_error(s, err.message, "brg_plan_load_string");
    if (s == BRG_OK) {
        s = brg_plan_check(plan, f->graph, NULL, &err);
        brg_fuzz_check_error(s, err.message, "brg_plan_check (model)");
    }
    for (int k = 0; s == BRG_OK && k < TOPOLOGIES; k++) {
        brg_error terr = {0};
        brg_status ts = brg_plan_check(plan, f->graph, f->topologies[k], &terr);
        brg_fuzz_check_error(ts, terr.message, "brg_plan_check (topology)");
        if (ts == BRG_OK) train_options(plan, f->graph);
    }
    brg_plan_destroy(plan);
    free(json);
    return 0;
}
