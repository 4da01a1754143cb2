/* Model specifications (models/models.c): any text as brg_model_parse; a specification that parses is
 * built, its parameter count must be the one computed without building, and its canonical form must
 * parse back to the same model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brigade.h"
#include "fuzz.h"

static void check_round_trip(const brg_model_config *cfg) {
    char spec[BRG_MAX_NAME];
    brg_model_format(cfg, spec, sizeof spec);
    brg_model_config again;
    brg_error err = {0};
    if (brg_model_parse(spec, &again, &err) != BRG_OK) {
        fprintf(stderr, "'%s': %s\n", spec, err.message);
        brg_fuzz_fail("the canonical specification of a model does not parse");
    }
    if (again.family != cfg->family || again.layers != cfg->layers || again.hidden != cfg->hidden ||
        again.heads != cfg->heads || again.vocab != cfg->vocab || again.seq != cfg->seq)
        brg_fuzz_fail("the canonical specification parses to another model");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *spec = brg_fuzz_string(data, size);
    if (!spec) return 0;
    brg_model_config cfg;
    brg_error err = {0};
    brg_status s = brg_model_parse(spec, &cfg, &err);
    brg_fuzz_check_error(s, err.message, "brg_model_parse");
    if (s == BRG_OK) {
        check_round_trip(&cfg);
        brg_graph *g = NULL;
        s = brg_model_build(&cfg, &g, &err);
        brg_fuzz_check_error(s, err.message, "brg_model_build");
        if (s == BRG_OK && brg_graph_param_count(g) != brg_model_param_count(&cfg))
            brg_fuzz_fail("the built graph's parameter count is not brg_model_param_count");
        if (s == BRG_OK) (void)brg_plan_model_fingerprint(g);
        brg_graph_destroy(g);
    }
    free(spec);
    return 0;
}
