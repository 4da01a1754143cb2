/* Numerical faults: a NaN written into one stage's forward (brg__trainer_inject_nan, as a kernel gone wrong
 * would) ends the step with BRG_ERR_NUMERICAL naming the stage, the micro-batch, the op and the tensor where
 * it first appeared, on steps that scan (nan_check_every); on the others the loss check catches it, naming
 * the micro-batch; and no optimizer step is taken either way, so the parameters stay as they were. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "brigade.h"
#include "harness.h"
#include "runtime/trainer_internal.h"

#define SPEC "gpt:layers=4,hidden=16,heads=2,vocab=16,seq=8"

static brg_train_options options(int stages, int replicas, int64_t every) {
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.stages = stages;
    o.micro_batch = 1;
    o.micro_batches = 4;
    o.data_parallel = replicas;
    o.zero = replicas > 1;
    o.blas_threads = 1;
    o.timeout_seconds = 30;
    o.nan_check_every = every;
    return o;
}

/* Runs `clean` good steps, then injects a NaN into (stage, micro-batch) and steps once more; returns that
 * step's status, with its message in msg, and whether the parameters are those before the step. */
static brg_status poisoned_step(const brg_train_options *o, int clean, int stage, int micro_batch, char *msg,
                                size_t size, int *unchanged) {
    brg_model_config cfg;
    brg_graph *g = brg_test_build(SPEC, &cfg);
    brg_error err = {0};
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    brg_status s = BRG_ERR_INTERNAL;
    *unchanged = 0;
    msg[0] = '\0';
    if (!g) return s;
    if (brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 3, &err) != BRG_OK || brg_trainer_create(&t, g, o, &err) != BRG_OK) {
        snprintf(msg, size, "%s", err.message);
        goto done;
    }
    for (int i = 0; i < clean; i++) {
        brg_step_stats st;
        BRG_ASSERT_OK(brg_trainer_step(t, d, &st), brg_trainer_last_error(t));
    }
    uint64_t before = 0, after = 1;
    BRG_ASSERT_OK(brg_trainer_fingerprint(t, &before), brg_trainer_last_error(t));
    brg__trainer_inject_nan(t, stage, micro_batch);
    brg_step_stats st;
    s = brg_trainer_step(t, d, &st);
    snprintf(msg, size, "%s", brg_trainer_last_error(t));
    if (brg_trainer_fingerprint(t, &after) == BRG_OK) *unchanged = after == before;
done:
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    brg_graph_destroy(g);
    return s;
}

static void expect(const char *msg, const char *part) {
    if (!strstr(msg, part)) fprintf(stderr, "  expected '%s' in: %s\n", part, msg);
    CU_ASSERT(strstr(msg, part) != NULL);
}

/* A scanned step: the error names the stage, the micro-batch, the first op of the stage and its output. */
static void test_scanned_step_names_the_op(void) {
    const int depths[] = {1, 2, 3};
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++) {
        int stages = depths[i];
        brg_train_options o = options(stages, 1, 1);
        brg_model_config cfg;
        brg_graph *g = brg_test_build(SPEC, &cfg);
        if (!g) return;
        /* The first op of the last stage (the trainer's balanced split): found by running once with a NaN there. */
        char msg[BRG_ERROR_MESSAGE_MAX];
        int unchanged = 0;
        int stage = stages - 1, mb = 2;
        brg_status s = poisoned_step(&o, 1, stage, mb, msg, sizeof msg, &unchanged);
        BRG_ASSERT_STATUS(s, BRG_ERR_NUMERICAL);
        char where[96];
        snprintf(where, sizeof where, "step 2: stage %d, micro-batch %d, forward: NaN in the output of", stage, mb);
        expect(msg, where);
        expect(msg, "NaN in the output of op '");
        expect(msg, "element 0 of");
        CU_ASSERT(unchanged);
        brg_graph_destroy(g);
    }
}

/* The scan also follows the NaN's first appearance with recomputation and every schedule. */
static void test_every_schedule(void) {
    const brg_schedule_kind kinds[] = {BRG_SCHEDULE_GPIPE, BRG_SCHEDULE_1F1B, BRG_SCHEDULE_INTERLEAVED_1F1B,
                                       BRG_SCHEDULE_ZB_H1};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        brg_train_options o = options(2, 1, 1);
        o.schedule = kinds[k];
        o.chunks = kinds[k] == BRG_SCHEDULE_INTERLEAVED_1F1B ? 2 : 1;
        o.recompute = BRG_RECOMPUTE_FULL;
        char msg[BRG_ERROR_MESSAGE_MAX];
        int unchanged = 0;
        int stage = o.chunks == 2 ? 2 : 1; /* a virtual stage of rank 0 with interleaving */
        BRG_ASSERT_STATUS(poisoned_step(&o, 0, stage, 1, msg, sizeof msg, &unchanged), BRG_ERR_NUMERICAL);
        char where[64];
        snprintf(where, sizeof where, "stage %d, micro-batch 1, forward: NaN in the output", stage);
        expect(msg, where);
        CU_ASSERT(unchanged);
    }
}

/* Steps between scans: the loss check stops the step (naming the micro-batch), before any update; the next
 * scanned step names the op. */
static void test_between_scans(void) {
    brg_train_options o = options(2, 1, 3); /* steps 1, 4, 7, ... scan */
    char msg[BRG_ERROR_MESSAGE_MAX];
    int unchanged = 0;
    BRG_ASSERT_STATUS(poisoned_step(&o, 1, 0, 3, msg, sizeof msg, &unchanged), BRG_ERR_NUMERICAL);
    expect(msg, "step 2: stage 1, micro-batch 3, forward: the loss is NaN");
    CU_ASSERT(unchanged);
    BRG_ASSERT_STATUS(poisoned_step(&o, 3, 0, 3, msg, sizeof msg, &unchanged), BRG_ERR_NUMERICAL);
    expect(msg, "step 4: stage 0, micro-batch 3, forward: NaN in the output of");
    CU_ASSERT(unchanged);
    o.nan_check_every = 0; /* never scans */
    BRG_ASSERT_STATUS(poisoned_step(&o, 0, 1, 0, msg, sizeof msg, &unchanged), BRG_ERR_NUMERICAL);
    expect(msg, "step 1: stage 1, micro-batch 0, forward: the loss is NaN");
    CU_ASSERT(unchanged);
}

/* With replicas and ZeRO-1: replica 0's NaN stops every rank, none steps, the replicas still agree. */
static void test_replicas(void) {
    brg_train_options o = options(2, 2, 1);
    char msg[BRG_ERROR_MESSAGE_MAX];
    int unchanged = 0;
    BRG_ASSERT_STATUS(poisoned_step(&o, 1, 1, 0, msg, sizeof msg, &unchanged), BRG_ERR_NUMERICAL);
    expect(msg, "stage 1, micro-batch 0, forward: NaN in the output of");
    CU_ASSERT(unchanged); /* the fingerprint also checks that the replicas hold the same parameters */
}

/* Scans change no result: the same fingerprint with nan_check_every 1 and 0. */
static void test_scans_change_nothing(void) {
    brg_model_config cfg;
    brg_graph *g = brg_test_build(SPEC, &cfg);
    if (!g) return;
    brg_train_options o = options(2, 1, 1);
    brg_test_training a = brg_test_train(g, &cfg, &o, 4, NULL);
    o.nan_check_every = 0;
    brg_test_training b = brg_test_train(g, &cfg, &o, 4, NULL);
    BRG_ASSERT_OK(a.status, a.error);
    BRG_ASSERT_OK(b.status, b.error);
    CU_ASSERT(a.fingerprint == b.fingerprint);
    o.nan_check_every = -1;
    brg_trainer *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_STATUS(brg_trainer_create(&t, g, &o, &err), BRG_ERR_INVALID_ARGUMENT);
    expect(err.message, "nan_check_every must be >= 0");
    brg_graph_destroy(g);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"scanned_step_names_the_op", test_scanned_step_names_the_op},
        {"every_schedule", test_every_schedule},
        {"between_scans", test_between_scans},
        {"replicas", test_replicas},
        {"scans_change_nothing", test_scans_change_nothing},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "numerical", cases);
}
