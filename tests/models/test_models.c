/* Model builders: specifications, presets, graphs, names and counts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "brigade/graph.h"
#include "brigade/models.h"
#include "graph/graph_internal.h"
#include "tests/harness.h"

/* ---- helpers ---- */

static int same_config(const brg_model_config *a, const brg_model_config *b) {
    return a->family == b->family && a->layers == b->layers && a->hidden == b->hidden && a->heads == b->heads &&
           a->vocab == b->vocab && a->seq == b->seq && strcmp(a->name, b->name) == 0;
}

static brg_model_config parse_ok(const char *spec) {
    brg_model_config cfg = BRG_MODEL_CONFIG_INIT;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_model_parse(spec, &cfg, &err), err.message);
    return cfg;
}

static brg_graph *build_ok(const brg_model_config *cfg) {
    brg_graph *g = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_model_build(cfg, &g, &err), err.message);
    CU_ASSERT_FATAL(g != NULL);
    CU_ASSERT(brg_graph_is_final(g));
    return g;
}

static int64_t find_tensor(const brg_graph *g, const char *name) {
    for (int64_t i = 0; i < brg_graph_tensor_count(g); i++) {
        brg_tensor_info info;
        if (brg_graph_tensor_info(g, i, &info) == BRG_OK && strcmp(info.name, name) == 0) return i;
    }
    return -1;
}

static brg_tensor_info tensor_named(const brg_graph *g, const char *name) {
    brg_tensor_info info = {0};
    int64_t i = find_tensor(g, name);
    if (i < 0) fprintf(stderr, "no tensor named '%s'\n", name);
    CU_ASSERT_FATAL(i >= 0);
    BRG_ASSERT_OK(brg_graph_tensor_info(g, i, &info), name);
    return info;
}

static int64_t find_op(const brg_graph *g, const char *name, brg_op_info *info) {
    for (int64_t i = 0; i < brg_graph_op_count(g); i++)
        if (brg_graph_op_info(g, i, info) == BRG_OK && strcmp(info->name, name) == 0) return i;
    return -1;
}

/* The graph's layer names, in order, joined by spaces. */
static const char *layer_names(const brg_graph *g, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < brg_graph_layer_count(g) && used < size; i++) {
        brg_layer_info info;
        BRG_ASSERT_OK(brg_graph_layer_info(g, i, &info), "");
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? " " : "", info.name);
    }
    return buf;
}

/* The graph's parameter names, in order, joined by spaces. */
static const char *param_names(const brg_graph *g, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int64_t i = 0; i < brg_graph_tensor_count(g) && used < size; i++) {
        brg_tensor_info info;
        BRG_ASSERT_OK(brg_graph_tensor_info(g, i, &info), "");
        if (info.kind == BRG_TENSOR_PARAMETER)
            used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? " " : "", info.name);
    }
    return buf;
}

static void assert_shape2(const brg_graph *g, const char *name, int64_t d0, int64_t d1) {
    brg_tensor_info info = tensor_named(g, name);
    if (info.ndim != 2 || info.shape[0] != d0 || info.shape[1] != d1)
        fprintf(stderr, "'%s': %d dims (%lld, %lld), expected (%lld, %lld)\n", name, info.ndim,
                (long long)info.shape[0], (long long)info.shape[1], (long long)d0, (long long)d1);
    CU_ASSERT(info.ndim == 2 && info.shape[0] == d0 && info.shape[1] == d1);
}

static void assert_shape1(const brg_graph *g, const char *name, int64_t d0) {
    brg_tensor_info info = tensor_named(g, name);
    CU_ASSERT(info.ndim == 1 && info.shape[0] == d0);
}

/* Every model: inputs "tokens" and "targets", I32 (BRG_BATCH, seq); exactly one cross-entropy op, whose
 * inputs are the logits (.., vocab) and "targets". */
static void assert_model_contract(const brg_graph *g, const brg_model_config *cfg) {
    const char *inputs[] = {"tokens", "targets"};
    for (int i = 0; i < 2; i++) {
        brg_tensor_info info = tensor_named(g, inputs[i]);
        BRG_ASSERT_EQ_INT(info.kind, BRG_TENSOR_INPUT);
        BRG_ASSERT_EQ_INT(info.dtype, BRG_I32);
        BRG_ASSERT_EQ_INT(info.ndim, 2);
        BRG_ASSERT_EQ_INT(info.shape[0], BRG_BATCH);
        BRG_ASSERT_EQ_INT(info.shape[1], cfg->seq);
    }
    int losses = 0;
    for (int64_t i = 0; i < brg_graph_op_count(g); i++) {
        brg_op_info op;
        BRG_ASSERT_OK(brg_graph_op_info(g, i, &op), "");
        if (op.kind != BRG_OP_CROSS_ENTROPY) continue;
        losses++;
        brg_tensor_info logits, targets;
        BRG_ASSERT_OK(brg_tensor_get_info(op.inputs[0], &logits), "");
        BRG_ASSERT_OK(brg_tensor_get_info(op.inputs[1], &targets), "");
        BRG_ASSERT_EQ_INT(logits.shape[logits.ndim - 1], cfg->vocab);
        CU_ASSERT_STRING_EQUAL(targets.name, "targets");
        BRG_ASSERT_EQ_INT(i, brg_graph_op_count(g) - 1); /* the loss comes last */
    }
    BRG_ASSERT_EQ_INT(losses, 1);
    BRG_ASSERT_EQ_INT(brg_graph_param_count(g), brg_model_param_count(cfg));
}

/* ---- specifications ---- */

static void test_parse_families_and_defaults(void) {
    brg_model_config c = parse_ok("gpt");
    BRG_ASSERT_EQ_INT(c.family, BRG_MODEL_GPT);
    BRG_ASSERT_EQ_INT(c.layers, 2);
    BRG_ASSERT_EQ_INT(c.hidden, 64);
    BRG_ASSERT_EQ_INT(c.heads, 4);
    BRG_ASSERT_EQ_INT(c.vocab, 64);
    BRG_ASSERT_EQ_INT(c.seq, 32);
    CU_ASSERT_STRING_EQUAL(c.name, "gpt:layers=2,hidden=64,heads=4,vocab=64,seq=32");
    /* the INIT macro is the gpt defaults */
    brg_model_config init = BRG_MODEL_CONFIG_INIT;
    CU_ASSERT(same_config(&init, &c));

    c = parse_ok("mlp");
    BRG_ASSERT_EQ_INT(c.family, BRG_MODEL_MLP);
    BRG_ASSERT_EQ_INT(c.layers, 4);
    BRG_ASSERT_EQ_INT(c.hidden, 128);
    BRG_ASSERT_EQ_INT(c.vocab, 64);
    BRG_ASSERT_EQ_INT(c.seq, 32);
    CU_ASSERT_STRING_EQUAL(c.name, "mlp:layers=4,hidden=128,vocab=64,seq=32");

    c = parse_ok("skipnet");
    BRG_ASSERT_EQ_INT(c.family, BRG_MODEL_SKIPNET);
    BRG_ASSERT_EQ_INT(c.layers, 3);
    BRG_ASSERT_EQ_INT(c.hidden, 64);
    CU_ASSERT_STRING_EQUAL(c.name, "skipnet:layers=3,hidden=64,vocab=64,seq=32");

    CU_ASSERT_STRING_EQUAL(brg_model_family_name(BRG_MODEL_GPT), "gpt");
    CU_ASSERT_STRING_EQUAL(brg_model_family_name(BRG_MODEL_MLP), "mlp");
    CU_ASSERT_STRING_EQUAL(brg_model_family_name(BRG_MODEL_SKIPNET), "skipnet");
    CU_ASSERT_STRING_EQUAL(brg_model_family_name((brg_model_family)17), "unknown");
}

static void test_parse_key_values(void) {
    brg_model_config c = parse_ok("gpt:layers=3,hidden=96,heads=6,vocab=100,seq=17");
    BRG_ASSERT_EQ_INT(c.layers, 3);
    BRG_ASSERT_EQ_INT(c.hidden, 96);
    BRG_ASSERT_EQ_INT(c.heads, 6);
    BRG_ASSERT_EQ_INT(c.vocab, 100);
    BRG_ASSERT_EQ_INT(c.seq, 17);
    CU_ASSERT_STRING_EQUAL(c.name, "gpt:layers=3,hidden=96,heads=6,vocab=100,seq=17");
    /* any order, some keys: the rest from the defaults; the name is canonical */
    c = parse_ok("gpt:seq=8,layers=1");
    BRG_ASSERT_EQ_INT(c.layers, 1);
    BRG_ASSERT_EQ_INT(c.seq, 8);
    BRG_ASSERT_EQ_INT(c.hidden, 64);
    CU_ASSERT_STRING_EQUAL(c.name, "gpt:layers=1,hidden=64,heads=4,vocab=64,seq=8");
    c = parse_ok("mlp:layers=4,hidden=128,vocab=64,seq=32");
    BRG_ASSERT_EQ_INT(c.family, BRG_MODEL_MLP);
    c = parse_ok("skipnet:layers=5,hidden=32");
    BRG_ASSERT_EQ_INT(c.layers, 5);
    BRG_ASSERT_EQ_INT(c.hidden, 32);
    /* the limits themselves are allowed */
    c = parse_ok("mlp:layers=1024,hidden=65536,vocab=2147483647,seq=1048576");
    BRG_ASSERT_EQ_INT(c.vocab, 2147483647);
    c = parse_ok("gpt:layers=1,hidden=1,heads=1,vocab=1,seq=1");
    BRG_ASSERT_EQ_INT(c.hidden, 1);
    c = parse_ok("gpt:layers=007");
    BRG_ASSERT_EQ_INT(c.layers, 7);
    /* a preset with changes */
    c = parse_ok("gpt2-small:seq=256,layers=2");
    BRG_ASSERT_EQ_INT(c.hidden, 768);
    BRG_ASSERT_EQ_INT(c.heads, 12);
    BRG_ASSERT_EQ_INT(c.vocab, 50257);
    BRG_ASSERT_EQ_INT(c.seq, 256);
    BRG_ASSERT_EQ_INT(c.layers, 2);
    CU_ASSERT_STRING_EQUAL(c.name, "gpt:layers=2,hidden=768,heads=12,vocab=50257,seq=256");
}

static void test_format_round_trip(void) {
    const char *specs[] = {"gpt:layers=3,hidden=96,heads=6,vocab=100,seq=17", "mlp:hidden=7", "skipnet:seq=3",
                           "gpt3-175b", "gpt2-xl"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        brg_model_config a = parse_ok(specs[i]);
        char buf[BRG_MAX_NAME];
        int n = brg_model_format(&a, buf, sizeof buf);
        BRG_ASSERT_EQ_INT(n, (int)strlen(buf));
        brg_model_config b = parse_ok(buf);
        CU_ASSERT(a.family == b.family && a.layers == b.layers && a.hidden == b.hidden && a.vocab == b.vocab &&
                  a.seq == b.seq && a.heads == b.heads);
    }
    /* truncation reports the length needed, like snprintf */
    brg_model_config c = parse_ok("gpt");
    char small[8];
    int n = brg_model_format(&c, small, sizeof small);
    BRG_ASSERT_EQ_INT(n, (int)strlen(c.name));
    CU_ASSERT_STRING_EQUAL(small, "gpt:lay");
    BRG_ASSERT_EQ_INT(brg_model_format(&c, NULL, 0), (int)strlen(c.name));
}

/* A spec that must fail with `status`, leave cfg untouched, and name each of the `needles`. */
static void assert_rejected(const char *spec, brg_status status, const char *needle1, const char *needle2) {
    brg_model_config cfg = BRG_MODEL_CONFIG_INIT, before = cfg;
    brg_error err = {0};
    brg_status s = brg_model_parse(spec, &cfg, &err);
    if (s != status) fprintf(stderr, "spec '%s': %s (%s)\n", spec, brg_status_name(s), err.message);
    BRG_ASSERT_STATUS(s, status);
    BRG_ASSERT_EQ_INT(err.status, status);
    CU_ASSERT(same_config(&cfg, &before));
    if (needle1) BRG_ASSERT_CONTAINS(err.message, needle1);
    if (needle2) BRG_ASSERT_CONTAINS(err.message, needle2);
    /* err may be NULL */
    BRG_ASSERT_STATUS(brg_model_parse(spec, &cfg, NULL), status);
}

static void test_reject_unknown_family(void) {
    assert_rejected("gtp:layers=2", BRG_ERR_NAME, "unknown family 'gtp'", "gpt, mlp, skipnet");
    assert_rejected("GPT:layers=2", BRG_ERR_NAME, "'GPT'", "gpt2-small");
    assert_rejected(":layers=2", BRG_ERR_NAME, "unknown family ''", NULL);
}

static void test_reject_unknown_key(void) {
    assert_rejected("gpt:layer=2", BRG_ERR_NAME, "unknown key 'layer'", "layers, hidden, heads, vocab, seq");
    /* heads belongs to gpt only */
    assert_rejected("mlp:heads=4", BRG_ERR_NAME, "unknown key 'heads'", "layers, hidden, vocab, seq");
    assert_rejected("skipnet:depth=4", BRG_ERR_NAME, "'depth'", "skipnet");
    assert_rejected("gpt: layers=2", BRG_ERR_NAME, "' layers'", NULL);
}

static void test_reject_bad_number(void) {
    assert_rejected("gpt:layers=two", BRG_ERR_PARSE, "'two'", "layers");
    assert_rejected("gpt:layers=-2", BRG_ERR_PARSE, "'-2'", NULL);
    assert_rejected("gpt:layers=1.5", BRG_ERR_PARSE, "'1.5'", NULL);
    assert_rejected("gpt:layers=2x", BRG_ERR_PARSE, "'2x'", NULL);
    assert_rejected("gpt:layers=+2", BRG_ERR_PARSE, "'+2'", NULL);
    assert_rejected("gpt:layers= 2", BRG_ERR_PARSE, "' 2'", NULL);
    assert_rejected("gpt:layers=2000", BRG_ERR_INVALID_ARGUMENT, "layers=2000", "at most 1024");
    assert_rejected("gpt:vocab=99999999999999999999999", BRG_ERR_INVALID_ARGUMENT, "vocab=9999", "too large");
    assert_rejected("gpt:seq=1048577", BRG_ERR_INVALID_ARGUMENT, "seq=1048577", NULL);
    assert_rejected("gpt:layers", BRG_ERR_PARSE, "'layers' has no '='", NULL);
    assert_rejected("gpt:layers=", BRG_ERR_PARSE, "'layers' has no value", NULL);
    assert_rejected("gpt:layers=2,,seq=4", BRG_ERR_PARSE, "empty item", NULL);
    assert_rejected("gpt:layers=2,", BRG_ERR_PARSE, "empty item", NULL);
    assert_rejected("gpt:", BRG_ERR_PARSE, "nothing after ':'", NULL);
}

static void test_reject_zero(void) {
    assert_rejected("gpt:layers=0", BRG_ERR_INVALID_ARGUMENT, "layers=0", "positive");
    assert_rejected("mlp:hidden=000", BRG_ERR_INVALID_ARGUMENT, "hidden=000", NULL);
    assert_rejected("skipnet:seq=0", BRG_ERR_INVALID_ARGUMENT, "seq=0", NULL);
}

static void test_reject_duplicate_key(void) {
    assert_rejected("gpt:layers=2,hidden=64,layers=3", BRG_ERR_NAME, "'layers' is given twice", NULL);
    assert_rejected("gpt2-small:seq=2,seq=2", BRG_ERR_NAME, "'seq'", NULL);
}

static void test_reject_indivisible_heads(void) {
    assert_rejected("gpt:hidden=64,heads=5", BRG_ERR_INVALID_ARGUMENT, "hidden 64 is not divisible by heads 5",
                    "gpt:hidden=64,heads=5");
    assert_rejected("gpt:heads=3", BRG_ERR_INVALID_ARGUMENT, "heads 3", NULL); /* default hidden 64 */
    assert_rejected("gpt2-small:heads=7", BRG_ERR_INVALID_ARGUMENT, "hidden 768", NULL);
}

static void test_reject_unknown_preset(void) {
    assert_rejected("gpt2-tiny", BRG_ERR_NAME, "unknown model preset 'gpt2-tiny'", "gpt2-small, gpt2-medium");
    assert_rejected("gpt3-175B", BRG_ERR_NAME, "gpt3-175b", NULL); /* names are case-sensitive; the list shows it */
    assert_rejected("gpt2-tiny:layers=2", BRG_ERR_NAME, "'gpt2-tiny'", "gpt3-175b");
}

static void test_reject_empty_spec(void) {
    assert_rejected("", BRG_ERR_PARSE, "empty model specification", "gpt2-small");
    brg_model_config cfg;
    brg_error err = {0};
    BRG_ASSERT_STATUS(brg_model_parse(NULL, &cfg, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "spec");
    BRG_ASSERT_STATUS(brg_model_parse("gpt", NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "cfg");
}

static void test_validate_and_build_reject_bad_configs(void) {
    brg_error err = {0};
    brg_model_config c = BRG_MODEL_CONFIG_INIT;
    BRG_ASSERT_OK(brg_model_validate(&c, &err), err.message);
    c.heads = 3;
    BRG_ASSERT_STATUS(brg_model_validate(&c, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "heads 3");
    brg_graph *g = (brg_graph *)0x1;
    BRG_ASSERT_STATUS(brg_model_build(&c, &g, &err), BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT(g == NULL);
    BRG_ASSERT_EQ_INT(brg_model_param_count(&c), -1);
    CU_ASSERT(brg_model_flops_per_token(&c) < 0);
    c = (brg_model_config)BRG_MODEL_CONFIG_INIT;
    c.family = (brg_model_family)9;
    BRG_ASSERT_STATUS(brg_model_validate(&c, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "family 9");
    c = (brg_model_config)BRG_MODEL_CONFIG_INIT;
    c.layers = 0;
    BRG_ASSERT_STATUS(brg_model_validate(&c, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "layers 0");
    c = (brg_model_config)BRG_MODEL_CONFIG_INIT;
    c.seq = BRG_MODEL_MAX_SEQ + 1;
    BRG_ASSERT_STATUS(brg_model_validate(&c, &err), BRG_ERR_INVALID_ARGUMENT);
    /* heads is not looked at outside gpt */
    c = parse_ok("mlp");
    c.heads = 12345;
    BRG_ASSERT_OK(brg_model_validate(&c, &err), err.message);
    BRG_ASSERT_STATUS(brg_model_validate(NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_model_build(NULL, &g, &err), BRG_ERR_INVALID_ARGUMENT);
    c = (brg_model_config)BRG_MODEL_CONFIG_INIT;
    BRG_ASSERT_STATUS(brg_model_build(&c, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
}

static void test_parse_random_specs(void) {
    /* random strings over the specification alphabet: never a crash; OK or a status with a message */
    static const char alphabet[] = "gptmlskine23-:=,0189lyrsdhvocabq. ";
    uint64_t state = 42;
    char spec[40];
    int accepted = 0;
    for (int i = 0; i < 20000; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t len = (size_t)(state >> 59); /* 0 to 31 */
        for (size_t k = 0; k < len; k++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            spec[k] = alphabet[(state >> 33) % (sizeof alphabet - 1)];
        }
        spec[len] = '\0';
        if (i % 3 == 0 && len > 4) memcpy(spec, "gpt:", 4);
        brg_model_config cfg = BRG_MODEL_CONFIG_INIT;
        brg_error err = {0};
        brg_status s = brg_model_parse(spec, &cfg, &err);
        if (s == BRG_OK) {
            accepted++;
            CU_ASSERT(brg_model_validate(&cfg, NULL) == BRG_OK);
        } else {
            CU_ASSERT(err.status == s && err.message[0] != '\0');
        }
    }
    CU_ASSERT(accepted < 20000);
}

/* ---- presets ---- */

static void test_presets_listed(void) {
    static const struct {
        const char *name;
        int64_t layers, hidden, heads, seq;
    } expected[] = {
        {"gpt2-small", 12, 768, 12, 1024}, {"gpt2-medium", 24, 1024, 16, 1024}, {"gpt2-large", 36, 1280, 20, 1024},
        {"gpt2-xl", 48, 1600, 25, 1024},   {"gpt3-small", 12, 768, 12, 2048},   {"gpt3-medium", 24, 1024, 16, 2048},
        {"gpt3-large", 24, 1536, 16, 2048}, {"gpt3-xl", 24, 2048, 16, 2048},     {"gpt3-2.7b", 32, 2560, 32, 2048},
        {"gpt3-6.7b", 32, 4096, 32, 2048}, {"gpt3-13b", 40, 5120, 40, 2048},    {"gpt3-175b", 96, 12288, 96, 2048},
    };
    int n = (int)(sizeof expected / sizeof expected[0]);
    BRG_ASSERT_EQ_INT(brg_model_preset_count(), n);
    for (int i = 0; i < n; i++) {
        brg_model_config c;
        const char *description = NULL;
        BRG_ASSERT_OK(brg_model_preset_get(i, &c, &description), expected[i].name);
        CU_ASSERT_STRING_EQUAL(c.name, expected[i].name);
        CU_ASSERT(description && description[0]);
        BRG_ASSERT_EQ_INT(c.family, BRG_MODEL_GPT);
        BRG_ASSERT_EQ_INT(c.layers, expected[i].layers);
        BRG_ASSERT_EQ_INT(c.hidden, expected[i].hidden);
        BRG_ASSERT_EQ_INT(c.heads, expected[i].heads);
        BRG_ASSERT_EQ_INT(c.vocab, 50257);
        BRG_ASSERT_EQ_INT(c.seq, expected[i].seq);
        /* the name parses to the same */
        brg_model_config p = parse_ok(expected[i].name);
        CU_ASSERT(same_config(&p, &c));
        BRG_ASSERT_OK(brg_model_validate(&c, NULL), expected[i].name);
    }
    BRG_ASSERT_STATUS(brg_model_preset_get(-1, NULL, NULL), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_model_preset_get(n, NULL, NULL), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_OK(brg_model_preset_get(0, NULL, NULL), "");
}

static void test_preset_param_counts(void) {
    /* gpt2-small: 124,439,808 with the tied head counted once (as llm.c and Hugging Face report) */
    brg_model_config c = parse_ok("gpt2-small");
    BRG_ASSERT_EQ_INT(brg_model_param_count(&c), 124439808);
    BRG_ASSERT_NEAR(brg_model_flops_per_token(&c), 6.0 * 124439808 + 6.0 * 12 * 768 * 1024, 0.5);
    /* the published sizes, to the precision the papers give them */
    static const struct {
        const char *name;
        double params, tolerance;
    } published[] = {
        {"gpt2-medium", 355e6, 0.01}, {"gpt2-large", 774e6, 0.01}, {"gpt2-xl", 1558e6, 0.01},
        {"gpt3-small", 125e6, 0.02},  {"gpt3-medium", 350e6, 0.03}, {"gpt3-large", 760e6, 0.03},
        {"gpt3-xl", 1.3e9, 0.03},     {"gpt3-2.7b", 2.7e9, 0.03},   {"gpt3-6.7b", 6.7e9, 0.03},
        {"gpt3-13b", 13e9, 0.03},     {"gpt3-175b", 175e9, 0.01},
    };
    for (size_t i = 0; i < sizeof published / sizeof published[0]; i++) {
        brg_model_config p = parse_ok(published[i].name);
        double n = (double)brg_model_param_count(&p);
        double rel = fabs(n / published[i].params - 1.0);
        if (rel > published[i].tolerance)
            fprintf(stderr, "%s: %.0f parameters, published %.3g\n", published[i].name, n, published[i].params);
        CU_ASSERT(rel <= published[i].tolerance);
    }
}

static void test_every_preset_builds(void) {
    /* graphs only: even gpt3-175b allocates nothing for its parameters */
    for (int i = 0; i < brg_model_preset_count(); i++) {
        brg_model_config c;
        BRG_ASSERT_OK(brg_model_preset_get(i, &c, NULL), "");
        brg_graph *g = build_ok(&c);
        assert_model_contract(g, &c);
        /* wte, wpe, the blocks, ln_f, lm_head */
        BRG_ASSERT_EQ_INT(brg_graph_layer_count(g), c.layers + 4);
        brg_graph_destroy(g);
    }
}

/* ---- gpt ---- */

static void test_gpt_layers_and_names(void) {
    brg_model_config c = parse_ok("gpt:layers=2,hidden=64,heads=4,vocab=64,seq=32");
    brg_graph *g = build_ok(&c);
    assert_model_contract(g, &c);
    char buf[2048];
    CU_ASSERT_STRING_EQUAL(layer_names(g, buf, sizeof buf), "wte wpe h.0 h.1 ln_f lm_head");
    /* Hugging Face GPT-2 names, in creation order */
    CU_ASSERT_STRING_EQUAL(param_names(g, buf, sizeof buf),
                           "wte.weight wpe.weight "
                           "h.0.ln_1.weight h.0.ln_1.bias h.0.attn.c_attn.weight h.0.attn.c_attn.bias "
                           "h.0.attn.c_proj.weight h.0.attn.c_proj.bias h.0.ln_2.weight h.0.ln_2.bias "
                           "h.0.mlp.c_fc.weight h.0.mlp.c_fc.bias h.0.mlp.c_proj.weight h.0.mlp.c_proj.bias "
                           "h.1.ln_1.weight h.1.ln_1.bias h.1.attn.c_attn.weight h.1.attn.c_attn.bias "
                           "h.1.attn.c_proj.weight h.1.attn.c_proj.bias h.1.ln_2.weight h.1.ln_2.bias "
                           "h.1.mlp.c_fc.weight h.1.mlp.c_fc.bias h.1.mlp.c_proj.weight h.1.mlp.c_proj.bias "
                           "ln_f.weight ln_f.bias");
    /* shapes: linear weights (out, in) */
    assert_shape2(g, "wte.weight", 64, 64);
    assert_shape2(g, "wpe.weight", 32, 64);
    assert_shape2(g, "h.1.attn.c_attn.weight", 192, 64);
    assert_shape1(g, "h.1.attn.c_attn.bias", 192);
    assert_shape2(g, "h.1.attn.c_proj.weight", 64, 64);
    assert_shape2(g, "h.0.mlp.c_fc.weight", 256, 64);
    assert_shape2(g, "h.0.mlp.c_proj.weight", 64, 256);
    assert_shape1(g, "ln_f.weight", 64);
    /* the ops of a block, in order */
    static const char *const block_ops[] = {"ln_1",     "attn.c_attn", "attn",       "attn.c_proj",
                                            "attn_residual", "ln_2",    "mlp.c_fc",   "mlp.gelu",
                                            "mlp.c_proj", "mlp_residual"};
    static const brg_op_kind block_kinds[] = {BRG_OP_LAYERNORM, BRG_OP_LINEAR, BRG_OP_ATTENTION, BRG_OP_LINEAR,
                                              BRG_OP_ADD,       BRG_OP_LAYERNORM, BRG_OP_LINEAR, BRG_OP_GELU,
                                              BRG_OP_LINEAR,    BRG_OP_ADD};
    brg_layer_info layer;
    BRG_ASSERT_OK(brg_graph_layer_info(g, 3, &layer), "");
    CU_ASSERT_STRING_EQUAL(layer.name, "h.1");
    BRG_ASSERT_EQ_INT(layer.op_end - layer.op_begin, 10);
    for (int k = 0; k < 10 && layer.op_begin + k < layer.op_end; k++) {
        brg_op_info op;
        BRG_ASSERT_OK(brg_graph_op_info(g, layer.op_begin + k, &op), "");
        char full[BRG_MAX_NAME];
        snprintf(full, sizeof full, "h.1.%s", block_ops[k]);
        CU_ASSERT_STRING_EQUAL(op.name, full);
        BRG_ASSERT_EQ_INT(op.kind, block_kinds[k]);
    }
    /* the residual adds read the block input and the projections */
    brg_op_info op;
    CU_ASSERT_FATAL(find_op(g, "h.1.attn_residual", &op) >= 0);
    brg_tensor_info in0, in1;
    brg_tensor_get_info(op.inputs[0], &in0);
    brg_tensor_get_info(op.inputs[1], &in1);
    CU_ASSERT_STRING_EQUAL(in0.name, "h.0.mlp_residual");
    CU_ASSERT_STRING_EQUAL(in1.name, "h.1.attn.c_proj");
    /* positions: wte + wpe.weight, broadcast */
    CU_ASSERT_FATAL(find_op(g, "wpe", &op) >= 0);
    BRG_ASSERT_EQ_INT(op.kind, BRG_OP_ADD);
    brg_tensor_get_info(op.inputs[1], &in1);
    CU_ASSERT_STRING_EQUAL(in1.name, "wpe.weight");
    brg_graph_destroy(g);
}

static void test_gpt_head_tied_to_embedding(void) {
    brg_model_config c = parse_ok("gpt:layers=1,hidden=32,heads=2,vocab=50,seq=8");
    brg_graph *g = build_ok(&c);
    brg_op_info op;
    CU_ASSERT_FATAL(find_op(g, "lm_head.logits", &op) >= 0);
    BRG_ASSERT_EQ_INT(op.kind, BRG_OP_MATMUL);
    BRG_ASSERT_EQ_INT(op.layer, brg_graph_layer_count(g) - 1);
    brg_tensor_info a, b, out;
    brg_tensor_get_info(op.inputs[0], &a);
    brg_tensor_get_info(op.inputs[1], &b);
    brg_tensor_get_info(op.output, &out);
    CU_ASSERT_STRING_EQUAL(a.name, "ln_f");
    CU_ASSERT_STRING_EQUAL(b.name, "wte.weight");
    BRG_ASSERT_EQ_INT(op.output->ndim, 3);
    BRG_ASSERT_EQ_INT(out.shape[2], 50); /* (B, T, V) */
    BRG_ASSERT_EQ_INT(brg__graph_op(g, find_op(g, "lm_head.logits", &op))->flags, BRG_MATMUL_TRANSPOSE_B);
    /* one parameter, read by the embedding and the head, counted once */
    brg_tensor_info wte = tensor_named(g, "wte.weight");
    BRG_ASSERT_EQ_INT(wte.consumers, 2);
    BRG_ASSERT_EQ_INT(brg_graph_param_count(g), brg_model_param_count(&c));
    CU_ASSERT_FATAL(find_op(g, "lm_head.loss", &op) >= 0);
    BRG_ASSERT_EQ_INT(op.kind, BRG_OP_CROSS_ENTROPY);
    brg_graph_destroy(g);
}

static void test_gpt_initialization(void) {
    brg_model_config c = parse_ok("gpt:layers=8,hidden=64,heads=4");
    brg_graph *g = build_ok(&c);
    float residual = 0.02f / sqrtf(16.0f);
    static const struct {
        const char *name;
        brg_init_kind kind;
        float std;
    } expected[] = {
        {"wte.weight", BRG_INIT_NORMAL, 0.02f},          {"wpe.weight", BRG_INIT_NORMAL, 0.02f},
        {"h.3.ln_1.weight", BRG_INIT_ONES, 0},           {"h.3.ln_1.bias", BRG_INIT_ZEROS, 0},
        {"h.3.attn.c_attn.weight", BRG_INIT_NORMAL, 0.02f}, {"h.3.attn.c_attn.bias", BRG_INIT_ZEROS, 0},
        {"h.3.attn.c_proj.weight", BRG_INIT_NORMAL, -1},  {"h.3.attn.c_proj.bias", BRG_INIT_ZEROS, 0},
        {"h.7.mlp.c_fc.weight", BRG_INIT_NORMAL, 0.02f},  {"h.7.mlp.c_proj.weight", BRG_INIT_NORMAL, -1},
        {"h.0.mlp.c_proj.weight", BRG_INIT_NORMAL, -1},   {"h.0.mlp.c_proj.bias", BRG_INIT_ZEROS, 0},
        {"ln_f.weight", BRG_INIT_ONES, 0},               {"ln_f.bias", BRG_INIT_ZEROS, 0},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        const brg_tensor *t = brg_graph_param(g, expected[i].name);
        CU_ASSERT_FATAL(t != NULL);
        BRG_ASSERT_EQ_INT(t->init.kind, expected[i].kind);
        if (expected[i].kind == BRG_INIT_NORMAL)
            BRG_ASSERT_NEAR(t->init.std, expected[i].std < 0 ? residual : expected[i].std, 1e-9);
    }
    brg_graph_destroy(g);
}

static void test_gpt_boundaries_carry_the_residual_stream(void) {
    brg_model_config c = parse_ok("gpt:layers=3,hidden=32,heads=4,vocab=40,seq=16");
    brg_graph *g = build_ok(&c);
    int n = brg_graph_layer_count(g);
    /* every cut before the head carries one (T, C) tensor */
    for (int l = 0; l < n - 1; l++) {
        int64_t bytes = -1;
        BRG_ASSERT_OK(brg_graph_boundary_bytes(g, l, &bytes), "");
        BRG_ASSERT_EQ_INT(bytes, 16 * 32 * 4);
    }
    brg_graph_destroy(g);
}

/* ---- mlp and skipnet ---- */

static void test_mlp_layers_and_names(void) {
    brg_model_config c = parse_ok("mlp:layers=4,hidden=128,vocab=64,seq=32");
    brg_graph *g = build_ok(&c);
    assert_model_contract(g, &c);
    char buf[2048];
    CU_ASSERT_STRING_EQUAL(layer_names(g, buf, sizeof buf), "wte fc.0 fc.1 fc.2 fc.3 head");
    CU_ASSERT_STRING_EQUAL(param_names(g, buf, sizeof buf),
                           "wte.weight fc.0.linear.weight fc.0.linear.bias fc.1.linear.weight fc.1.linear.bias "
                           "fc.2.linear.weight fc.2.linear.bias fc.3.linear.weight fc.3.linear.bias "
                           "head.linear.weight head.linear.bias");
    assert_shape2(g, "fc.2.linear.weight", 128, 128);
    assert_shape2(g, "head.linear.weight", 64, 128);
    const brg_tensor *t = brg_graph_param(g, "fc.2.linear.weight");
    BRG_ASSERT_NEAR(t->init.std, sqrtf(2.0f / 128.0f), 1e-7);
    t = brg_graph_param(g, "wte.weight");
    BRG_ASSERT_NEAR(t->init.std, 1.0, 0);
    t = brg_graph_param(g, "head.linear.weight");
    BRG_ASSERT_NEAR(t->init.std, 0.02, 1e-9);
    brg_op_info op;
    CU_ASSERT(find_op(g, "fc.0.relu", &op) >= 0 && op.kind == BRG_OP_RELU);
    CU_ASSERT(find_op(g, "head.loss", &op) >= 0 && op.kind == BRG_OP_CROSS_ENTROPY);
    brg_graph_destroy(g);
}

static void test_skipnet_layers_and_names(void) {
    brg_model_config c = parse_ok("skipnet:layers=3,hidden=16,vocab=20,seq=8");
    brg_graph *g = build_ok(&c);
    assert_model_contract(g, &c);
    char buf[2048];
    CU_ASSERT_STRING_EQUAL(layer_names(g, buf, sizeof buf), "wte down.0 down.1 down.2 mid up.0 up.1 up.2 head");
    brg_op_info op;
    CU_ASSERT(find_op(g, "up.0.skip", &op) >= 0 && op.kind == BRG_OP_ADD);
    BRG_ASSERT_EQ_INT(brg_graph_param_count(g), 20 * 16 + 7 * (16 * 16 + 16) + 16 * 20 + 20);
    brg_graph_destroy(g);
}

static void test_skipnet_tensors_cross_several_layers(void) {
    brg_model_config c = parse_ok("skipnet:layers=3,hidden=16,vocab=20,seq=8");
    brg_graph *g = build_ok(&c);
    const int64_t A = 8 * 16 * 4; /* one (T, C) F32 tensor per sample */
    /* layers: 0 wte, 1 down.0, 2 down.1, 3 down.2, 4 mid, 5 up.0, 6 up.1, 7 up.2, 8 head: the cut after
     * mid carries mid's output and the three kept down outputs */
    const int64_t expected[] = {A, A, 2 * A, 3 * A, 4 * A, 3 * A, 2 * A, A};
    for (int l = 0; l < 8; l++) {
        int64_t bytes = -1;
        BRG_ASSERT_OK(brg_graph_boundary_bytes(g, l, &bytes), "");
        BRG_ASSERT_EQ_INT(bytes, expected[l]);
    }
    /* down.0's output: made in layer 1, read in layer 2 (down.1) and in layer 7 (up.2's skip) */
    brg_tensor_info d0 = tensor_named(g, "down.0.relu");
    BRG_ASSERT_EQ_INT(d0.layer, 1);
    BRG_ASSERT_EQ_INT(d0.consumers, 2);
    brg_op_info op;
    CU_ASSERT_FATAL(find_op(g, "up.2.skip", &op) >= 0);
    BRG_ASSERT_EQ_INT(op.layer, 7);
    brg_tensor_info skip;
    brg_tensor_get_info(op.inputs[1], &skip);
    CU_ASSERT_STRING_EQUAL(skip.name, "down.0.relu");
    brg_layer_info down0;
    BRG_ASSERT_OK(brg_graph_layer_info(g, 1, &down0), "");
    BRG_ASSERT_EQ_INT(down0.output_bytes_per_sample, A);
    brg_graph_destroy(g);
}

/* ---- counts ---- */

static void test_param_counts_match_graphs(void) {
    const char *specs[] = {"gpt",
                           "gpt:layers=1,hidden=8,heads=2,vocab=10,seq=4",
                           "gpt:layers=5,hidden=48,heads=6,vocab=97,seq=13",
                           "gpt:layers=1,hidden=1,heads=1,vocab=1,seq=1",
                           "gpt2-small:layers=2,seq=64",
                           "mlp",
                           "mlp:layers=1,hidden=3,vocab=5,seq=2",
                           "mlp:layers=7,hidden=33,vocab=70,seq=9",
                           "skipnet",
                           "skipnet:layers=1,hidden=4,vocab=6,seq=3",
                           "skipnet:layers=6,hidden=24,vocab=31,seq=5"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        brg_model_config c = parse_ok(specs[i]);
        brg_graph *g = build_ok(&c);
        int64_t graph_count = brg_graph_param_count(g), analytic = brg_model_param_count(&c);
        if (graph_count != analytic) fprintf(stderr, "%s\n", specs[i]);
        BRG_ASSERT_EQ_INT(graph_count, analytic);
        assert_model_contract(g, &c);
        brg_graph_destroy(g);
    }
    /* the formulas themselves, on gpt:layers=2,hidden=64,vocab=64,seq=32 */
    brg_model_config c = parse_ok("gpt");
    BRG_ASSERT_EQ_INT(brg_model_param_count(&c), 64 * 64 + 32 * 64 + 2 * (12 * 64 * 64 + 13 * 64) + 2 * 64);
    c = parse_ok("mlp");
    BRG_ASSERT_EQ_INT(brg_model_param_count(&c), 64 * 128 + 4 * (128 * 128 + 128) + 128 * 64 + 64);
}

static void test_flops_per_token(void) {
    brg_model_config c = parse_ok("gpt:layers=3,hidden=48,heads=4,vocab=70,seq=20");
    double n = (double)brg_model_param_count(&c);
    BRG_ASSERT_NEAR(brg_model_flops_per_token(&c), 6 * n + 6.0 * 3 * 48 * 20, 1e-6);
    c = parse_ok("mlp");
    BRG_ASSERT_NEAR(brg_model_flops_per_token(&c), 6.0 * (double)brg_model_param_count(&c), 1e-6);
    c = parse_ok("skipnet");
    BRG_ASSERT_NEAR(brg_model_flops_per_token(&c), 6.0 * (double)brg_model_param_count(&c), 1e-6);
    c = parse_ok("gpt3-175b");
    double f = brg_model_flops_per_token(&c);
    CU_ASSERT(f > 6 * 174e9 && f < 6 * 176e9 + 6.0 * 96 * 12288 * 2048);
    CU_ASSERT(brg_model_flops_per_token(NULL) < 0);
    BRG_ASSERT_EQ_INT(brg_model_param_count(NULL), -1);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"parse_families_and_defaults", test_parse_families_and_defaults},
        {"parse_key_values", test_parse_key_values},
        {"format_round_trip", test_format_round_trip},
        {"reject_unknown_family", test_reject_unknown_family},
        {"reject_unknown_key", test_reject_unknown_key},
        {"reject_bad_number", test_reject_bad_number},
        {"reject_zero", test_reject_zero},
        {"reject_duplicate_key", test_reject_duplicate_key},
        {"reject_indivisible_heads", test_reject_indivisible_heads},
        {"reject_unknown_preset", test_reject_unknown_preset},
        {"reject_empty_spec", test_reject_empty_spec},
        {"parse_random_specs", test_parse_random_specs},
        {"validate_and_build_reject_bad_configs", test_validate_and_build_reject_bad_configs},
        {"presets_listed", test_presets_listed},
        {"preset_param_counts", test_preset_param_counts},
        {"every_preset_builds", test_every_preset_builds},
        {"gpt_layers_and_names", test_gpt_layers_and_names},
        {"gpt_head_tied_to_embedding", test_gpt_head_tied_to_embedding},
        {"gpt_initialization", test_gpt_initialization},
        {"gpt_boundaries_carry_the_residual_stream", test_gpt_boundaries_carry_the_residual_stream},
        {"mlp_layers_and_names", test_mlp_layers_and_names},
        {"skipnet_layers_and_names", test_skipnet_layers_and_names},
        {"skipnet_tensors_cross_several_layers", test_skipnet_tensors_cross_several_layers},
        {"param_counts_match_graphs", test_param_counts_match_graphs},
        {"flops_per_token", test_flops_per_token},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "models", cases);
}
