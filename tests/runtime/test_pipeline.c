/* The pipeline: bitwise equivalence with one stage for every schedule, stage count and recompute policy;
 * memory that follows the schedule; failures that stop every worker; bad requests refused up front. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brigade.h"
#include "harness.h"
#include "runtime/trainer_internal.h"

#define build brg_test_build

typedef struct run_result {
    uint64_t fingerprint;
    double losses[4];
    brg_status status;
    char error[BRG_ERROR_MESSAGE_MAX];
} run_result;

/* Trains `steps` steps and reports the fingerprint and losses. */
static run_result run(const brg_graph *g, const brg_model_config *cfg, const brg_train_options *o, int steps) {
    run_result r;
    memset(&r, 0, sizeof r);
    brg_error err = {0};
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    r.status = brg_data_synthetic_create(&d, cfg->vocab, cfg->seq, 3, &err);
    if (r.status == BRG_OK) r.status = brg_trainer_create(&t, g, o, &err);
    if (r.status != BRG_OK) snprintf(r.error, sizeof r.error, "%s", err.message);
    for (int s = 0; s < steps && r.status == BRG_OK; s++) {
        brg_step_stats st;
        r.status = brg_trainer_step(t, d, &st);
        if (r.status != BRG_OK) snprintf(r.error, sizeof r.error, "%s", brg_trainer_last_error(t));
        r.losses[s] = st.loss;
    }
    if (r.status == BRG_OK) r.status = brg_trainer_fingerprint(t, &r.fingerprint);
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    return r;
}

static brg_train_options base_options(void) {
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.micro_batch = 1;
    o.micro_batches = 12; /* a multiple of every stage count below, as interleaving needs */
    o.blas_threads = 1;   /* one BLAS thread per stage, as on a machine whose stages share cores */
    o.lr = 3e-3f;
    o.timeout_seconds = 60;
    return o;
}

/* Every schedule x stage count x recompute policy trains bitwise like one stage. */
static void test_bitwise_equivalence(void) {
    const char *specs[] = {"mlp:layers=8,hidden=16,vocab=16,seq=8", "gpt:layers=4,hidden=16,heads=2,vocab=16,seq=8",
                           "skipnet:layers=3,hidden=16,vocab=16,seq=8"};
    const brg_schedule_kind kinds[] = {BRG_SCHEDULE_GPIPE, BRG_SCHEDULE_1F1B, BRG_SCHEDULE_INTERLEAVED_1F1B,
                                       BRG_SCHEDULE_ZB_H1};
    const brg_recompute policies[] = {BRG_RECOMPUTE_NONE, BRG_RECOMPUTE_FULL, BRG_RECOMPUTE_SELECTIVE};
    int compared = 0;
    for (size_t m = 0; m < sizeof specs / sizeof specs[0]; m++) {
        brg_model_config cfg;
        brg_graph *g = build(specs[m], &cfg);
        brg_train_options o = base_options();
        run_result ref = run(g, &cfg, &o, 2);
        BRG_ASSERT_OK(ref.status, ref.error);
        /* Buffered sends, then rendezvous (a send completes only once its receive is posted, as on NCCL):
         * an exchange that relies on buffering times out there instead of passing. */
        for (int rendezvous = 0; rendezvous <= 1; rendezvous++)
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
            for (int pp = 1; pp <= 4; pp++)
                for (size_t r = 0; r < sizeof policies / sizeof policies[0]; r++) {
                    o = base_options();
                    o.rendezvous = rendezvous;
                    if (rendezvous) o.timeout_seconds = 20;
                    o.schedule = kinds[k];
                    o.stages = pp;
                    o.chunks = kinds[k] == BRG_SCHEDULE_INTERLEAVED_1F1B ? 2 : 1;
                    o.recompute = policies[r];
                    run_result got = run(g, &cfg, &o, 2);
                    int same = got.status == BRG_OK && got.fingerprint == ref.fingerprint &&
                               got.losses[0] == ref.losses[0] && got.losses[1] == ref.losses[1];
                    if (!same)
                        fprintf(stderr, "%s, %s, pp=%d, recompute %d%s: %s fingerprint %016llx vs %016llx, loss %.9g vs %.9g\n",
                                specs[m], brg_schedule_kind_name(kinds[k]), pp, (int)policies[r],
                                rendezvous ? ", rendezvous" : "", got.status == BRG_OK ? "" : got.error, (unsigned long long)got.fingerprint,
                                (unsigned long long)ref.fingerprint, got.losses[1], ref.losses[1]);
                    CU_ASSERT(same);
                    compared++;
                }
        brg_graph_destroy(g);
    }
    BRG_ASSERT_EQ_INT(compared, 2 * 3 * 4 * 4 * 3);
}

/* An explicit split and the balanced default agree with one stage too, and the split is reported. */
static void test_explicit_split(void) {
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=4,hidden=16,heads=2,vocab=16,seq=8", &cfg);
    brg_train_options o = base_options();
    run_result ref = run(g, &cfg, &o, 2);
    int cuts[] = {1, 5};
    o.stages = 3;
    o.split = cuts;
    o.split_count = 2;
    run_result got = run(g, &cfg, &o, 2);
    BRG_ASSERT_OK(got.status, got.error);
    CU_ASSERT(got.fingerprint == ref.fingerprint);
    brg_trainer *t = NULL;
    brg_error err;
    BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
    int first[3], n = 0;
    BRG_ASSERT_OK(brg_trainer_split(t, first, 3, &n), "split");
    BRG_ASSERT_EQ_INT(n, 3);
    BRG_ASSERT_EQ_INT(first[0], 0);
    BRG_ASSERT_EQ_INT(first[1], 1);
    BRG_ASSERT_EQ_INT(first[2], 5);
    brg_trainer_destroy(t);
    brg_graph_destroy(g);
}

/* Kernel threads per rank change nothing: 1, 2 and 3 threads, on one stage and on two, train bitwise
 * alike. The GPT is large enough that its kernels split into several pieces (GEMMs of 512 rows in
 * tiles, 16 rows of logits per piece, attention in 2 query blocks x 4 heads x 2 samples). */
static void test_kernel_threads(void) {
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=2,hidden=128,heads=4,vocab=512,seq=256", &cfg);
    brg_train_options o = base_options();
    o.micro_batch = 2;
    o.micro_batches = 2;
    run_result ref = run(g, &cfg, &o, 2);
    BRG_ASSERT_OK(ref.status, ref.error);
    for (int pp = 1; pp <= 2; pp++)
        for (int threads = 1; threads <= 3; threads++) {
            o.stages = pp;
            o.blas_threads = threads;
            run_result got = run(g, &cfg, &o, 2);
            int same = got.status == BRG_OK && got.fingerprint == ref.fingerprint && got.losses[0] == ref.losses[0] &&
                       got.losses[1] == ref.losses[1];
            if (!same)
                fprintf(stderr, "pp=%d, %d kernel threads: %s fingerprint %016llx vs %016llx, loss %.9g vs %.9g\n", pp,
                        threads, got.status == BRG_OK ? "" : got.error, (unsigned long long)got.fingerprint,
                        (unsigned long long)ref.fingerprint, got.losses[1], ref.losses[1]);
            CU_ASSERT(same);
        }
    brg_graph_destroy(g);
}

/* Runs one step and returns each rank's figures. */
static void rank_stats(const brg_graph *g, const brg_model_config *cfg, const brg_train_options *o,
                       brg_rank_stats *out) {
    brg_error err = {0};
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg->vocab, cfg->seq, 3, &err), err.message);
    BRG_ASSERT_OK(brg_trainer_create(&t, g, o, &err), err.message);
    brg_step_stats st;
    BRG_ASSERT_OK(brg_trainer_step(t, d, &st), brg_trainer_last_error(t));
    for (int r = 0; r < o->stages; r++) BRG_ASSERT_OK(brg_trainer_rank_stats(t, r, &out[r]), "rank stats");
    brg_trainer_destroy(t);
    brg_data_destroy(d);
}

/* Peak in-flight micro-batches per stage: GPipe m; 1F1B min(p - i, m); activation memory in step. */
static void test_memory_follows_schedule(void) {
    brg_model_config cfg;
    brg_graph *g = build("mlp:layers=8,hidden=64,vocab=16,seq=32", &cfg);
    brg_train_options o = base_options();
    o.micro_batches = 8;
    o.micro_batch = 4;
    o.stages = 4;
    brg_rank_stats gpipe[4], onef1b[4];
    o.schedule = BRG_SCHEDULE_GPIPE;
    rank_stats(g, &cfg, &o, gpipe);
    o.schedule = BRG_SCHEDULE_1F1B;
    rank_stats(g, &cfg, &o, onef1b);
    for (int r = 0; r < 4; r++) {
        BRG_ASSERT_EQ_INT(gpipe[r].peak_in_flight, 8);
        BRG_ASSERT_EQ_INT(onef1b[r].peak_in_flight, 4 - r < 8 ? 4 - r : 8);
        /* Activation memory grows with the in-flight count: GPipe holds 8, 1F1B 4 - r. */
        double ratio = (double)gpipe[r].activation_peak_bytes / (double)onef1b[r].activation_peak_bytes;
        fprintf(stderr, "stage %d: activation peak gpipe %lld, 1f1b %lld bytes (ratio %.2f, in flight 8 vs %d)\n", r,
                (long long)gpipe[r].activation_peak_bytes, (long long)onef1b[r].activation_peak_bytes, ratio, 4 - r);
        CU_ASSERT(ratio > 1.0);
        /* 1F1B holds fewer micro-batches on later stages, so GPipe's excess grows along the pipeline. */
        if (r > 0)
            CU_ASSERT(ratio > (double)gpipe[r - 1].activation_peak_bytes / (double)onef1b[r - 1].activation_peak_bytes);
    }
    /* The last stage holds one micro-batch under 1F1B, eight under GPipe. */
    CU_ASSERT((double)gpipe[3].activation_peak_bytes > 3.0 * (double)onef1b[3].activation_peak_bytes);
    brg_graph_destroy(g);
}

/* Full recomputation keeps only each stage's inputs: a GPT stage's activation peak falls >= 3x. */
static void test_full_recompute_memory(void) {
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=4,hidden=64,heads=4,vocab=64,seq=64", &cfg);
    brg_train_options o = base_options();
    o.micro_batches = 8;
    o.micro_batch = 2;
    o.stages = 2;
    o.schedule = BRG_SCHEDULE_GPIPE;
    brg_rank_stats none[2], full[2], selective[2];
    rank_stats(g, &cfg, &o, none);
    o.recompute = BRG_RECOMPUTE_FULL;
    rank_stats(g, &cfg, &o, full);
    o.recompute = BRG_RECOMPUTE_SELECTIVE;
    rank_stats(g, &cfg, &o, selective);
    for (int r = 0; r < 2; r++) {
        double cut = (double)none[r].activation_peak_bytes / (double)full[r].activation_peak_bytes;
        fprintf(stderr, "stage %d: activation peak none %lld, selective %lld, full %lld bytes (%.1fx less with full)\n",
                r, (long long)none[r].activation_peak_bytes, (long long)selective[r].activation_peak_bytes,
                (long long)full[r].activation_peak_bytes, cut);
        CU_ASSERT(cut >= 3.0);
        CU_ASSERT(selective[r].activation_peak_bytes < none[r].activation_peak_bytes);
        CU_ASSERT(selective[r].activation_peak_bytes > full[r].activation_peak_bytes);
    }
    brg_graph_destroy(g);
}

/* A kernel failing on one stage stops every worker with that error, and the trainer stays in error. */
static void test_failure_stops_everyone(void) {
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=4,hidden=16,heads=2,vocab=16,seq=8", &cfg);
    brg_error err = {0};
    brg_data *d = NULL;
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 1, &err), err.message);
    const brg_schedule_kind kinds[] = {BRG_SCHEDULE_GPIPE, BRG_SCHEDULE_1F1B, BRG_SCHEDULE_ZB_H1};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        brg_train_options o = base_options();
        o.stages = 4;
        o.schedule = kinds[k];
        brg_trainer *t = NULL;
        BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
        BRG_ASSERT_OK(brg_trainer_step(t, d, NULL), brg_trainer_last_error(t));
        brg__trainer_inject_failure(t, 2, 5);
        BRG_ASSERT_STATUS(brg_trainer_step(t, d, NULL), BRG_ERR_BACKEND);
        BRG_ASSERT_CONTAINS(brg_trainer_last_error(t), "stage 2, micro-batch 5: injected kernel failure");
        BRG_ASSERT_STATUS(brg_trainer_step(t, d, NULL), BRG_ERR_BACKEND);
        brg_trainer_destroy(t);
    }
    brg_data_destroy(d);
    brg_graph_destroy(g);
}

/* A fault in the optimizer's kernels (entries that return nothing) fails the step, naming the rank. */
static void test_optimizer_fault_fails_step(void) {
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=4,hidden=16,heads=2,vocab=16,seq=8", &cfg);
    brg_error err = {0};
    brg_data *d = NULL;
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 1, &err), err.message);
    for (int pp = 1; pp <= 2; pp++) {
        brg_train_options o = base_options();
        o.stages = pp;
        brg_trainer *t = NULL;
        BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
        BRG_ASSERT_OK(brg_trainer_step(t, d, NULL), brg_trainer_last_error(t));
        brg__trainer_inject_optimizer_fault(t, pp - 1);
        BRG_ASSERT_STATUS(brg_trainer_step(t, d, NULL), BRG_ERR_BACKEND);
        char want[64];
        snprintf(want, sizeof want, "rank %d: after the optimizer step: injected fault", pp - 1);
        BRG_ASSERT_CONTAINS(brg_trainer_last_error(t), want);
        brg_trainer_destroy(t);
    }
    brg_data_destroy(d);
    brg_graph_destroy(g);
}

static void expect_refused(const brg_graph *g, const brg_train_options *o, brg_status status, const char *needle) {
    brg_trainer *t = (brg_trainer *)1;
    brg_error err = {0};
    BRG_ASSERT_STATUS(brg_trainer_create(&t, g, o, &err), status);
    CU_ASSERT_PTR_NULL(t);
    BRG_ASSERT_CONTAINS(err.message, needle);
}

static void test_bad_requests(void) {
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=2,hidden=16,heads=2,vocab=16,seq=8", &cfg); /* 6 layers */
    brg_train_options o = base_options();
    o.stages = 7;
    expect_refused(g, &o, BRG_ERR_INVALID_ARGUMENT, "but the model has only 6 layers");
    o = base_options();
    o.stages = 2;
    o.chunks = 4;
    o.schedule = BRG_SCHEDULE_INTERLEAVED_1F1B;
    expect_refused(g, &o, BRG_ERR_INVALID_ARGUMENT, "8 virtual stages");
    o = base_options();
    o.stages = 4;
    o.micro_batches = 6;
    o.chunks = 2;
    o.schedule = BRG_SCHEDULE_INTERLEAVED_1F1B;
    brg_graph *big = build("gpt:layers=6,hidden=16,heads=2,vocab=16,seq=8", &cfg);
    expect_refused(big, &o, BRG_ERR_INVALID_ARGUMENT, "multiple");
    brg_graph_destroy(big);
    o = base_options();
    o.stages = 3;
    int cuts[] = {2};
    o.split = cuts;
    o.split_count = 1;
    expect_refused(g, &o, BRG_ERR_INVALID_ARGUMENT, "the split gives 1 cut points; 3 virtual stages need 2");
    int bad[] = {3, 3};
    o.split = bad;
    o.split_count = 2;
    expect_refused(g, &o, BRG_ERR_INVALID_ARGUMENT, "must ascend strictly");
    o = base_options();
    o.stages = 0;
    expect_refused(g, &o, BRG_ERR_INVALID_ARGUMENT, "stages must be");
    o = base_options();
    o.chunks = 2; /* only interleaving has chunks */
    expect_refused(g, &o, BRG_ERR_INVALID_ARGUMENT, "");
    brg_graph_destroy(g);
}

/* The measured timeline is Chrome trace JSON with the passes of every stage. */
static void test_trace(void) {
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=2,hidden=16,heads=2,vocab=16,seq=8", &cfg);
    brg_error err = {0};
    brg_data *d = NULL;
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 1, &err), err.message);
    brg_train_options o = base_options();
    o.stages = 2;
    o.micro_batches = 4;
    o.schedule = BRG_SCHEDULE_ZB_H1;
    o.record_trace = 1;
    brg_trainer *t = NULL;
    BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
    char path[512];
    brg_test_tmp_path(path, sizeof path, "pipeline.trace.json");
    BRG_ASSERT_STATUS(brg_trainer_write_trace(t, path, &err), BRG_ERR_INVALID_USAGE);
    BRG_ASSERT_OK(brg_trainer_step(t, d, NULL), brg_trainer_last_error(t));
    BRG_ASSERT_OK(brg_trainer_write_trace(t, path, &err), err.message);
    BRG_ASSERT_STATUS(brg_trainer_write_trace(t, "/nonexistent-dir/x.json", &err), BRG_ERR_IO);
    BRG_ASSERT_CONTAINS(err.message, "/nonexistent-dir/x.json");
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    json_t *events = json_object_get(root, "traceEvents");
    CU_ASSERT(json_is_array(events));
    int per_rank[2] = {0, 0};
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e) {
        const char *ph = json_string_value(json_object_get(e, "ph"));
        const char *cat = json_string_value(json_object_get(e, "cat"));
        json_int_t pid = json_integer_value(json_object_get(e, "pid"));
        if (ph && strcmp(ph, "X") == 0 && cat && strcmp(cat, "BACKWARD_WEIGHT") == 0 && pid >= 0 && pid < 2)
            per_rank[pid]++;
    }
    BRG_ASSERT_EQ_INT(per_rank[0], 4);
    BRG_ASSERT_EQ_INT(per_rank[1], 4);
    json_decref(root);
    unlink(path);
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    brg_graph_destroy(g);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"bitwise_equivalence", test_bitwise_equivalence},
        {"explicit_split", test_explicit_split},
        {"kernel_threads", test_kernel_threads},
        {"memory_follows_schedule", test_memory_follows_schedule},
        {"full_recompute_memory", test_full_recompute_memory},
        {"failure_stops_everyone", test_failure_stops_everyone},
        {"optimizer_fault_fails_step", test_optimizer_fault_fails_step},
        {"bad_requests", test_bad_requests},
        {"trace", test_trace},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "pipeline", cases);
}
