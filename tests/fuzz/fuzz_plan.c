/* Plan files (partitioner/plan_json.c): any text as brg_plan_load_string; a plan that loads is summarized,
 * reported, laid out on ranks, and written back, and what is written must load again. */
#include <stdio.h>
#include <stdlib.h>

#include "brigade.h"
#include "fuzz.h"

static void use_plan(const brg_plan *plan) {
    brg_plan_summary sm;
    if (brg_plan_get_summary(plan, &sm) != BRG_OK) brg_fuzz_fail("brg_plan_get_summary refused a loaded plan");
    char *text = NULL;
    if (brg_plan_report_text(plan, &text) == BRG_OK) free(text);
    int layout[512], count = 0;
    (void)brg_plan_rank_layout(plan, layout, 512, &count);
    char *json = NULL;
    if (brg_plan_to_json(plan, &json) != BRG_OK) return;
    brg_plan *again = NULL;
    brg_error err = {0};
    if (brg_plan_load_string(json, "written", &again, &err) != BRG_OK) {
        fprintf(stderr, "%s\n%s\n", json, err.message);
        brg_fuzz_fail("a loaded plan, written back, does not load");
    }
    brg_plan_destroy(again);
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = brg_fuzz_string(data, size);
    if (!json) return 0;
    brg_plan *plan = NULL;
    brg_error err = {0};
    brg_status s = brg_plan_load_string(json, "fuzz.json", &plan, &err);
    brg_fuzz_check_error(s, err.message, "brg_plan_load_string");
    if (s == BRG_OK) use_plan(plan);
    brg_plan_destroy(plan);
    free(json);
    return 0;
}
