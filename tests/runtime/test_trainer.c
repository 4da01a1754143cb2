/* The single-device trainer: options, graph checks, gradient accumulation, determinism, data errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "brigade.h"
#include "harness.h"

#define MLP "mlp:layers=2,hidden=16,vocab=16,seq=8"
#define GPT "gpt:layers=2,hidden=32,heads=4,vocab=32,seq=16"

static brg_graph *build(const char *spec) {
    brg_model_config cfg;
    brg_error err = {0};
    brg_graph *g = NULL;
    BRG_ASSERT_OK(brg_model_parse(spec, &cfg, &err), err.message);
    BRG_ASSERT_OK(brg_model_build(&cfg, &g, &err), err.message);
    return g;
}

static brg_data *synthetic(int64_t vocab, int64_t seq, uint64_t seed) {
    brg_data *d = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, vocab, seq, seed, &err), err.message);
    return d;
}

static brg_trainer *trainer(const brg_graph *g, const brg_train_options *o) {
    brg_trainer *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_trainer_create(&t, g, o, &err), err.message);
    return t;
}

/* Each option out of range is refused with a message naming it. */
static void test_bad_options(void) {
    brg_graph *g = build(MLP);
    enum { MB, MBS, LR, B1, B2, EPS, WD, CLIP, THREADS, COUNT };
    static const char *const names[COUNT] = {"micro_batch", "micro_batches", "lr", "beta1", "beta2",
                                             "eps", "weight_decay", "grad_clip", "blas_threads"};
    for (int k = 0; k < COUNT; k++) {
        brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
        switch (k) {
        case MB: o.micro_batch = 0; break;
        case MBS: o.micro_batches = -1; break;
        case LR: o.lr = 0.0f; break;
        case B1: o.beta1 = 1.0f; break;
        case B2: o.beta2 = -0.5f; break;
        case EPS: o.eps = 0.0f; break;
        case WD: o.weight_decay = NAN; break;
        case CLIP: o.grad_clip = -1.0f; break;
        case THREADS: o.blas_threads = -2; break;
        }
        brg_trainer *t = (brg_trainer *)1;
        brg_error err = {0};
        BRG_ASSERT_STATUS(brg_trainer_create(&t, g, &o, &err), BRG_ERR_INVALID_ARGUMENT);
        CU_ASSERT_PTR_NULL(t);
        BRG_ASSERT_CONTAINS(err.message, names[k]);
    }
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    brg_trainer *t = NULL;
    BRG_ASSERT_STATUS(brg_trainer_create(NULL, g, &o, NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_trainer_create(&t, NULL, &o, NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_trainer_create(&t, g, NULL, NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_trainer_step(NULL, NULL, NULL), BRG_ERR_INVALID_ARGUMENT);
    uint64_t fp;
    BRG_ASSERT_STATUS(brg_trainer_fingerprint(NULL, &fp), BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(brg_trainer_last_error(NULL));
    brg_trainer_destroy(NULL);
    brg_graph_destroy(g);
}

static void test_graph_requirements(void) {
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    brg_error err = {0};
    brg_trainer *t = NULL;
    /* not finalized */
    brg_graph *g = NULL;
    brg_graph_create(&g);
    brg_tensor *x = brg_input(g, "features", BRG_F32, 2, (int64_t[]){BRG_BATCH, 4});
    brg_tensor *tgt = brg_input(g, "targets", BRG_I32, 1, (int64_t[]){BRG_BATCH});
    brg_cross_entropy(g, brg_linear(g, x, 3, "fc"), tgt, "loss");
    BRG_ASSERT_STATUS(brg_trainer_create(&t, g, &o, &err), BRG_ERR_INVALID_USAGE);
    BRG_ASSERT_CONTAINS(err.message, "not finalized");
    /* an input the trainer has no source for */
    BRG_ASSERT_OK(brg_graph_finalize(g), brg_graph_last_error(g));
    BRG_ASSERT_STATUS(brg_trainer_create(&t, g, &o, &err), BRG_ERR_UNSUPPORTED);
    BRG_ASSERT_CONTAINS(err.message, "'features'");
    brg_graph_destroy(g);
    /* a graph in error */
    brg_graph_create(&g);
    brg_relu(g, NULL, "r");
    BRG_ASSERT_STATUS(brg_trainer_create(&t, g, &o, &err), BRG_ERR_INVALID_USAGE);
    BRG_ASSERT_CONTAINS(err.message, "in error");
    brg_graph_destroy(g);
}

/* The loss falls on the synthetic task, for every family. */
static void test_loss_falls(void) {
    const char *specs[] = {GPT, MLP, "skipnet:layers=2,hidden=16,vocab=16,seq=8"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        brg_graph *g = build(specs[i]);
        brg_model_config cfg;
        brg_model_parse(specs[i], &cfg, NULL);
        brg_data *d = synthetic(cfg.vocab, cfg.seq, 5);
        brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
        o.lr = 3e-3f;
        brg_trainer *t = trainer(g, &o);
        brg_step_stats first, last;
        BRG_ASSERT_OK(brg_trainer_step(t, d, &first), brg_trainer_last_error(t));
        for (int s = 0; s < 60; s++) BRG_ASSERT_OK(brg_trainer_step(t, d, &last), brg_trainer_last_error(t));
        fprintf(stderr, "%s: loss %.4f -> %.4f\n", specs[i], first.loss, last.loss);
        CU_ASSERT(last.loss < first.loss);
        BRG_ASSERT_NEAR(first.loss, log((double)cfg.vocab), 0.5); /* starts near chance */
        BRG_ASSERT_EQ_INT(last.step, 61);
        BRG_ASSERT_EQ_INT(last.tokens, o.micro_batch * cfg.seq);
        CU_ASSERT(last.peak_bytes > 0);
        brg_trainer_destroy(t);
        brg_data_destroy(d);
        brg_graph_destroy(g);
    }
}

/* m micro-batches of B samples train like one batch of m*B samples (up to float rounding). */
static void test_gradient_accumulation(void) {
    brg_graph *g = build(GPT);
    brg_data *d = synthetic(32, 16, 9);
    brg_train_options a = BRG_TRAIN_OPTIONS_INIT, b = BRG_TRAIN_OPTIONS_INIT;
    a.micro_batch = 4;
    a.micro_batches = 1;
    b.micro_batch = 2;
    b.micro_batches = 2;
    brg_trainer *ta = trainer(g, &a), *tb = trainer(g, &b);
    for (int s = 0; s < 3; s++) {
        brg_step_stats sa, sb;
        BRG_ASSERT_OK(brg_trainer_step(ta, d, &sa), brg_trainer_last_error(ta));
        BRG_ASSERT_OK(brg_trainer_step(tb, d, &sb), brg_trainer_last_error(tb));
        BRG_ASSERT_NEAR(sa.loss, sb.loss, 1e-5 * fabs(sa.loss));
        BRG_ASSERT_NEAR(sa.grad_norm, sb.grad_norm, 1e-4 * sa.grad_norm);
    }
    int64_t n = 3 * 32 * 32;
    float *pa = malloc((size_t)n * sizeof *pa), *pb = malloc((size_t)n * sizeof *pb);
    BRG_ASSERT_OK(brg_trainer_get_param(ta, "h.0.attn.c_attn.weight", pa, n), "get");
    BRG_ASSERT_OK(brg_trainer_get_param(tb, "h.0.attn.c_attn.weight", pb, n), "get");
    double worst = 0;
    for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)pa[i] - pb[i]));
    CU_ASSERT(worst < 1e-4);
    free(pa);
    free(pb);
    brg_trainer_destroy(ta);
    brg_trainer_destroy(tb);
    brg_data_destroy(d);
    brg_graph_destroy(g);
}

/* Same seed: bitwise the same run. Another seed: other parameters. */
static void test_determinism(void) {
    brg_graph *g = build(GPT);
    uint64_t fp[3];
    double loss[3];
    for (int r = 0; r < 3; r++) {
        brg_data *d = synthetic(32, 16, 1);
        brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
        o.seed = r < 2 ? 11 : 12;
        o.micro_batches = 2;
        brg_trainer *t = trainer(g, &o);
        brg_step_stats st;
        for (int s = 0; s < 4; s++) BRG_ASSERT_OK(brg_trainer_step(t, d, &st), brg_trainer_last_error(t));
        loss[r] = st.loss;
        BRG_ASSERT_OK(brg_trainer_fingerprint(t, &fp[r]), "fingerprint");
        brg_trainer_destroy(t);
        brg_data_destroy(d);
    }
    CU_ASSERT(fp[0] == fp[1]);
    CU_ASSERT(loss[0] == loss[1]);
    CU_ASSERT(fp[0] != fp[2]);
    brg_graph_destroy(g);
}

static void test_params_and_memory(void) {
    brg_graph *g = build(GPT);
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    brg_trainer *t = trainer(g, &o);
    float ln[32];
    BRG_ASSERT_OK(brg_trainer_get_param(t, "h.1.ln_2.weight", ln, 32), "get");
    for (int i = 0; i < 32; i++) CU_ASSERT(ln[i] == 1.0f);
    BRG_ASSERT_STATUS(brg_trainer_get_param(t, "h.1.ln_2.weight", ln, 31), BRG_ERR_SHAPE);
    BRG_ASSERT_STATUS(brg_trainer_get_param(t, "h.9.ln_2.weight", ln, 32), BRG_ERR_NAME);
    /* parameters, their gradient and two AdamW moments at least */
    int64_t params = brg_graph_param_count(g);
    CU_ASSERT(brg_trainer_memory_bytes(t) >= 4 * 4 * params);
    brg_trainer_destroy(t);
    brg_graph_destroy(g);
}

/* Data that does not fit the model fails the step with a message, and the trainer stays in error. */
static void test_bad_data(void) {
    brg_graph *g = build(GPT);
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    brg_trainer *t = trainer(g, &o);
    brg_data *wrong_seq = synthetic(32, 8, 1);
    BRG_ASSERT_STATUS(brg_trainer_step(t, wrong_seq, NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(brg_trainer_last_error(t), "sequences of 8 tokens, the model 16");
    brg_trainer_destroy(t);
    t = trainer(g, &o);
    brg_data *big_vocab = synthetic(1000, 16, 1);
    BRG_ASSERT_STATUS(brg_trainer_step(t, big_vocab, NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(brg_trainer_last_error(t), "wte");
    BRG_ASSERT_STATUS(brg_trainer_step(t, big_vocab, NULL), BRG_ERR_INVALID_ARGUMENT); /* sticky */
    brg_trainer_destroy(t);
    brg_data_destroy(wrong_seq);
    brg_data_destroy(big_vocab);
    brg_graph_destroy(g);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"bad_options", test_bad_options},
        {"graph_requirements", test_graph_requirements},
        {"loss_falls", test_loss_falls},
        {"gradient_accumulation", test_gradient_accumulation},
        {"determinism", test_determinism},
        {"params_and_memory", test_params_and_memory},
        {"bad_data", test_bad_data},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "runtime", cases);
}
