/* The layer-graph API: building, shape inference, sticky errors, bad input on every call, introspection. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "brigade.h"
#include "harness.h"

#define T 8
#define C 16

static brg_graph *new_graph(void) {
    brg_graph *g = NULL;
    BRG_ASSERT_OK(brg_graph_create(&g), "create");
    return g;
}

static brg_tensor *tokens_input(brg_graph *g, const char *name) {
    return brg_input(g, name, BRG_I32, 2, (int64_t[]){BRG_BATCH, T});
}

/* A tiny GPT-like block graph: embedding, one attention block, tied head, loss. */
static brg_graph *tiny_gpt(void) {
    brg_graph *g = new_graph();
    brg_tensor *tok = tokens_input(g, "tokens");
    brg_tensor *tgt = tokens_input(g, "targets");
    brg_tensor *h = brg_embedding(g, tok, 32, C, "wte");
    brg_tensor *wpe = brg_param(g, "wpe.weight", 2, (int64_t[]){T, C}, (brg_init){BRG_INIT_NORMAL, 0.01f});
    h = brg_add(g, h, wpe, "wpe_add");
    brg_layer_begin(g, "h.%d", 0);
    brg_tensor *a = brg_layernorm(g, h, 1e-5f, "ln_1");
    a = brg_linear(g, a, 3 * C, "attn.c_attn");
    a = brg_causal_attention(g, a, 4, "attn");
    a = brg_linear(g, a, C, "attn.c_proj");
    h = brg_add(g, h, a, "res");
    brg_layer_end(g);
    brg_layer_begin(g, "head");
    h = brg_layernorm(g, h, 1e-5f, "ln_f");
    brg_tensor *logits = brg_matmul(g, h, brg_graph_param(g, "wte.weight"), BRG_MATMUL_TRANSPOSE_B, "lm_head");
    brg_cross_entropy(g, logits, tgt, "loss");
    brg_layer_end(g);
    return g;
}

static void test_build_and_shapes(void) {
    brg_graph *g = tiny_gpt();
    BRG_ASSERT_OK(brg_graph_finalize(g), brg_graph_last_error(g));
    CU_ASSERT_STRING_EQUAL(brg_graph_last_error(g), "");
    CU_ASSERT(brg_graph_is_final(g));
    /* layers: wte, wpe_add (ops outside layers are layers of their own), h.0, head */
    BRG_ASSERT_EQ_INT(brg_graph_layer_count(g), 4);
    brg_layer_info li;
    BRG_ASSERT_OK(brg_graph_layer_info(g, 2, &li), "layer 2");
    CU_ASSERT_STRING_EQUAL(li.name, "h.0");
    BRG_ASSERT_EQ_INT(li.op_end - li.op_begin, 5);
    BRG_ASSERT_OK(brg_graph_layer_info(g, 0, &li), "layer 0");
    CU_ASSERT_STRING_EQUAL(li.name, "wte");
    /* the attention op: (B, T, 3C) -> (B, T, C) */
    brg_op_info oi;
    int found = 0;
    for (int64_t i = 0; i < brg_graph_op_count(g); i++) {
        BRG_ASSERT_OK(brg_graph_op_info(g, i, &oi), "op info");
        if (strcmp(oi.name, "h.0.attn") != 0) continue;
        found = 1;
        brg_tensor_info ti;
        BRG_ASSERT_OK(brg_tensor_get_info(oi.output, &ti), "tensor info");
        BRG_ASSERT_EQ_INT(ti.ndim, 3);
        BRG_ASSERT_EQ_INT(ti.shape[0], BRG_BATCH);
        BRG_ASSERT_EQ_INT(ti.shape[1], T);
        BRG_ASSERT_EQ_INT(ti.shape[2], C);
        CU_ASSERT_STRING_EQUAL(oi.kind_name, "attention");
        CU_ASSERT(oi.cheap_to_recompute);
        /* saved: output (T*C) plus one log-sum-exp per row and head (heads*T), per sample */
        BRG_ASSERT_EQ_INT(oi.saved_bytes_per_sample, 4 * (T * C + 4 * T));
    }
    CU_ASSERT(found);
    /* parameters: wte, wpe, ln_1 (2), c_attn (2), c_proj (2), ln_f (2) */
    int64_t expect = 32 * C + T * C + 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C;
    BRG_ASSERT_EQ_INT(brg_graph_param_count(g), expect);
    brg_graph_destroy(g);
}

static void test_linear_costs(void) {
    brg_graph *g = new_graph();
    brg_tensor *x = brg_input(g, "x", BRG_F32, 3, (int64_t[]){BRG_BATCH, T, C});
    brg_linear(g, x, 2 * C, "fc");
    brg_op_info oi;
    BRG_ASSERT_OK(brg_graph_op_info(g, 0, &oi), "op info");
    double gemm = 2.0 * T * C * 2 * C; /* per sample */
    BRG_ASSERT_NEAR(oi.flops[BRG_PASS_FORWARD], gemm + T * 2 * C, 1e-9);
    BRG_ASSERT_NEAR(oi.flops[BRG_PASS_BACKWARD_INPUT], gemm, 1e-9);
    BRG_ASSERT_NEAR(oi.flops[BRG_PASS_BACKWARD_WEIGHT], gemm + T * 2 * C, 1e-9);
    BRG_ASSERT_EQ_INT(oi.param_bytes, 4 * (2 * C * C + 2 * C));
    CU_ASSERT_FALSE(oi.cheap_to_recompute);
    brg_tensor_info ti;
    BRG_ASSERT_OK(brg_graph_tensor_info(g, 1, &ti), "tensor 1");
    CU_ASSERT_STRING_EQUAL(ti.name, "fc.weight");
    CU_ASSERT_EQUAL(ti.kind, BRG_TENSOR_PARAMETER);
    brg_graph_destroy(g);
}

static void test_boundary_bytes_skip(void) {
    /* l0 produces a (skip) read by l2: the boundaries after l0 and after l1 both carry it. */
    brg_graph *g = new_graph();
    brg_tensor *x = brg_input(g, "x", BRG_F32, 2, (int64_t[]){BRG_BATCH, C});
    brg_layer_begin(g, "l0");
    brg_tensor *a = brg_relu(g, x, "r");
    brg_layer_end(g);
    brg_layer_begin(g, "l1");
    brg_tensor *b = brg_linear(g, a, C, "fc");
    brg_layer_end(g);
    brg_layer_begin(g, "l2");
    brg_tensor *c = brg_add(g, b, a, "skip");
    brg_layer_end(g);
    (void)c;
    int64_t bytes = 0;
    BRG_ASSERT_OK(brg_graph_boundary_bytes(g, 0, &bytes), "boundary 0");
    BRG_ASSERT_EQ_INT(bytes, 4 * C);
    BRG_ASSERT_OK(brg_graph_boundary_bytes(g, 1, &bytes), "boundary 1");
    BRG_ASSERT_EQ_INT(bytes, 2 * 4 * C); /* b and the skipping a */
    BRG_ASSERT_OK(brg_graph_boundary_bytes(g, 2, &bytes), "boundary 2");
    BRG_ASSERT_EQ_INT(bytes, 0);
    BRG_ASSERT_STATUS(brg_graph_boundary_bytes(g, 3, &bytes), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_graph_boundary_bytes(NULL, 0, &bytes), BRG_ERR_INVALID_ARGUMENT);
    brg_layer_info li;
    BRG_ASSERT_OK(brg_graph_layer_info(g, 0, &li), "layer 0");
    BRG_ASSERT_EQ_INT(li.output_bytes_per_sample, 4 * C);
    brg_graph_destroy(g);
}

static void test_null_handles(void) {
    brg_tensor *dummy = NULL;
    BRG_ASSERT_STATUS(brg_graph_create(NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_graph_status(NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_graph_finalize(NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_layer_begin(NULL, "x"), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_layer_end(NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_param_set_init(NULL, dummy, (brg_init){BRG_INIT_ZEROS, 0}), BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(brg_graph_last_error(NULL));
    CU_ASSERT_PTR_NULL(brg_input(NULL, "x", BRG_F32, 1, (int64_t[]){4}));
    CU_ASSERT_PTR_NULL(brg_param(NULL, "p", 1, (int64_t[]){4}, (brg_init){BRG_INIT_ZEROS, 0}));
    CU_ASSERT_PTR_NULL(brg_graph_param(NULL, "p"));
    CU_ASSERT_PTR_NULL(brg_embedding(NULL, dummy, 4, 4, "e"));
    CU_ASSERT_PTR_NULL(brg_linear(NULL, dummy, 4, "l"));
    CU_ASSERT_PTR_NULL(brg_matmul(NULL, dummy, dummy, BRG_MATMUL_NONE, "m"));
    CU_ASSERT_PTR_NULL(brg_add(NULL, dummy, dummy, "a"));
    CU_ASSERT_PTR_NULL(brg_layernorm(NULL, dummy, 1e-5f, "n"));
    CU_ASSERT_PTR_NULL(brg_gelu(NULL, dummy, "g"));
    CU_ASSERT_PTR_NULL(brg_relu(NULL, dummy, "r"));
    CU_ASSERT_PTR_NULL(brg_causal_attention(NULL, dummy, 2, "att"));
    CU_ASSERT_PTR_NULL(brg_cross_entropy(NULL, dummy, dummy, "ce"));
    BRG_ASSERT_EQ_INT(brg_graph_op_count(NULL), 0);
    BRG_ASSERT_EQ_INT(brg_graph_tensor_count(NULL), 0);
    BRG_ASSERT_EQ_INT(brg_graph_layer_count(NULL), 0);
    brg_op_info oi;
    brg_layer_info li;
    brg_tensor_info ti;
    BRG_ASSERT_STATUS(brg_graph_op_info(NULL, 0, &oi), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_graph_layer_info(NULL, 0, &li), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_graph_tensor_info(NULL, 0, &ti), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_tensor_get_info(NULL, &ti), BRG_ERR_INVALID_ARGUMENT);
    brg_graph_destroy(NULL);
}

/* Each case: a fresh graph with an F32 (B, T, C) input "x" and an I32 (B, T) input "tok", one bad call,
 * then the expected status, a word the message must contain, and a check that nothing was added. */
typedef brg_tensor *(*bad_call)(brg_graph *g, brg_tensor *x, brg_tensor *tok);

static brg_tensor *null_operand(brg_graph *g, brg_tensor *x, brg_tensor *tok) { return brg_linear(g, NULL, 4, "fc"); }
static brg_tensor *wrong_dtype_linear(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_linear(g, tok, 4, "fc");
}
static brg_tensor *wrong_dtype_embedding(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_embedding(g, x, 10, 4, "emb");
}
static brg_tensor *wrong_dtype_targets(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_cross_entropy(g, x, x, "ce");
}
static brg_tensor *matmul_inner(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    brg_tensor *w = brg_param(g, "w", 2, (int64_t[]){C + 1, 4}, (brg_init){BRG_INIT_ZEROS, 0});
    return brg_matmul(g, x, w, BRG_MATMUL_NONE, "mm");
}
static brg_tensor *matmul_bad_flags(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_matmul(g, x, x, (brg_matmul_flags)8, "mm");
}
static brg_tensor *add_mismatch(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    brg_tensor *b = brg_param(g, "b", 1, (int64_t[]){C + 1}, (brg_init){BRG_INIT_ZEROS, 0});
    return brg_add(g, x, b, "add");
}
static brg_tensor *attention_heads(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_causal_attention(g, brg_linear(g, x, 3 * C, "qkv"), 5, "att");
}
static brg_tensor *attention_not3(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_causal_attention(g, x, 2, "att");
}
static brg_tensor *ce_targets_shape(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    brg_tensor *t3 = brg_input(g, "t3", BRG_I32, 2, (int64_t[]){BRG_BATCH, T + 1});
    return brg_cross_entropy(g, x, t3, "ce");
}
static brg_tensor *zero_features(brg_graph *g, brg_tensor *x, brg_tensor *tok) { return brg_linear(g, x, 0, "fc"); }
static brg_tensor *bad_eps(brg_graph *g, brg_tensor *x, brg_tensor *tok) { return brg_layernorm(g, x, 0.0f, "ln"); }
static brg_tensor *duplicate_op(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    brg_relu(g, x, "act");
    return brg_relu(g, x, "act");
}
static brg_tensor *duplicate_input(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_input(g, "x", BRG_F32, 1, (int64_t[]){4});
}
static brg_tensor *duplicate_param(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    brg_linear(g, x, 4, "fc");
    return brg_param(g, "fc.weight", 1, (int64_t[]){4}, (brg_init){BRG_INIT_ZEROS, 0});
}
static brg_tensor *unknown_param(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_graph_param(g, "no.such.weight");
}
static brg_tensor *not_a_param(brg_graph *g, brg_tensor *x, brg_tensor *tok) { return brg_graph_param(g, "x"); }
static brg_tensor *empty_name(brg_graph *g, brg_tensor *x, brg_tensor *tok) { return brg_gelu(g, x, ""); }
static brg_tensor *null_name(brg_graph *g, brg_tensor *x, brg_tensor *tok) { return brg_gelu(g, x, NULL); }
static brg_tensor *long_name(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    char name[300];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    return brg_gelu(g, x, name);
}
static brg_tensor *bad_input_shape(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_input(g, "y", BRG_F32, 2, (int64_t[]){4, BRG_BATCH});
}
static brg_tensor *bad_input_ndim(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_input(g, "y", BRG_F32, 5, (int64_t[]){1, 1, 1, 1, 1});
}
static brg_tensor *bad_input_dtype(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_input(g, "y", (brg_dtype)7, 1, (int64_t[]){4});
}
static brg_tensor *param_batch(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_param(g, "p", 2, (int64_t[]){BRG_BATCH, 4}, (brg_init){BRG_INIT_ZEROS, 0});
}
static brg_tensor *param_bad_init(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    return brg_param(g, "p", 1, (int64_t[]){4}, (brg_init){BRG_INIT_NORMAL, -1.0f});
}
static brg_tensor *foreign_tensor(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    brg_graph *other = NULL;
    brg_graph_create(&other);
    brg_tensor *y = brg_input(other, "y", BRG_F32, 2, (int64_t[]){BRG_BATCH, C});
    brg_tensor *r = brg_add(g, x, y, "add");
    brg_graph_destroy(other);
    return r;
}
static brg_tensor *nested_layer(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    brg_layer_begin(g, "outer");
    brg_layer_begin(g, "inner");
    return NULL;
}
static brg_tensor *end_without_begin(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    brg_layer_end(g);
    return NULL;
}
static brg_tensor *empty_layer(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    brg_layer_begin(g, "empty");
    brg_layer_end(g);
    return NULL;
}
static brg_tensor *duplicate_layer(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    brg_layer_begin(g, "l");
    brg_relu(g, x, "r");
    brg_layer_end(g);
    brg_layer_begin(g, "l");
    return NULL;
}
static brg_tensor *second_loss(brg_graph *g, brg_tensor *x, brg_tensor *tok) {
    brg_cross_entropy(g, x, tok, "ce");
    return brg_cross_entropy(g, x, tok, "ce2");
}

typedef struct bad_case {
    const char *what;
    bad_call call;
    brg_status status;
    const char *needle; /* must appear in the message */
} bad_case;

static const bad_case bad_cases[] = {
    {"NULL operand", null_operand, BRG_ERR_INVALID_ARGUMENT, "input is NULL"},
    {"linear on I32", wrong_dtype_linear, BRG_ERR_DTYPE, "'tok' is i32, f32 needed"},
    {"embedding of F32", wrong_dtype_embedding, BRG_ERR_DTYPE, "tokens 'x' is f32"},
    {"F32 targets", wrong_dtype_targets, BRG_ERR_DTYPE, "targets 'x'"},
    {"matmul inner dims", matmul_inner, BRG_ERR_SHAPE, "inner dimensions differ: 'x' (B, 8, 16) and 'w' (17, 4)"},
    {"matmul flags", matmul_bad_flags, BRG_ERR_INVALID_ARGUMENT, "unknown flags"},
    {"add shapes", add_mismatch, BRG_ERR_SHAPE, "'x' (B, 8, 16) and 'b' (17)"},
    {"attention heads", attention_heads, BRG_ERR_SHAPE, "divisible by heads (5)"},
    {"attention width", attention_not3, BRG_ERR_SHAPE, "3C"},
    {"targets shape", ce_targets_shape, BRG_ERR_SHAPE, "targets must have the logits' leading dimensions"},
    {"zero out_features", zero_features, BRG_ERR_INVALID_ARGUMENT, "out_features must be positive"},
    {"eps 0", bad_eps, BRG_ERR_INVALID_ARGUMENT, "eps must be positive"},
    {"duplicate op", duplicate_op, BRG_ERR_NAME, "name 'act' is already used"},
    {"duplicate input", duplicate_input, BRG_ERR_NAME, "name 'x' is already used"},
    {"duplicate param", duplicate_param, BRG_ERR_NAME, "'fc.weight' is already used"},
    {"unknown param", unknown_param, BRG_ERR_NAME, "no parameter named 'no.such.weight'"},
    {"not a param", not_a_param, BRG_ERR_NAME, "not a parameter"},
    {"empty name", empty_name, BRG_ERR_NAME, "name is required"},
    {"NULL name", null_name, BRG_ERR_NAME, "name is required"},
    {"long name", long_name, BRG_ERR_NAME, "too long"},
    {"batch not first", bad_input_shape, BRG_ERR_SHAPE, "dimension 1 is -1"},
    {"too many dims", bad_input_ndim, BRG_ERR_SHAPE, "5 dimensions"},
    {"unknown dtype", bad_input_dtype, BRG_ERR_DTYPE, "unknown dtype"},
    {"batch parameter", param_batch, BRG_ERR_SHAPE, "dimensions must be positive"},
    {"bad init", param_bad_init, BRG_ERR_INVALID_ARGUMENT, "invalid initialization"},
    {"foreign tensor", foreign_tensor, BRG_ERR_INVALID_ARGUMENT, "belongs to another graph"},
    {"nested layers", nested_layer, BRG_ERR_INVALID_USAGE, "layer 'outer' is still open"},
    {"end without begin", end_without_begin, BRG_ERR_INVALID_USAGE, "no layer is open"},
    {"empty layer", empty_layer, BRG_ERR_INVALID_USAGE, "holds no op"},
    {"duplicate layer", duplicate_layer, BRG_ERR_NAME, "layer name 'l' is already used"},
    {"second loss", second_loss, BRG_ERR_INVALID_USAGE, "already has a loss ('ce')"},
};

static void test_bad_input(void) {
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        brg_graph *g = new_graph();
        brg_tensor *x = brg_input(g, "x", BRG_F32, 3, (int64_t[]){BRG_BATCH, T, C});
        brg_tensor *tok = tokens_input(g, "tok");
        CU_ASSERT_PTR_NULL(c->call(g, x, tok));
        if (brg_graph_status(g) != c->status)
            fprintf(stderr, "case '%s': status %s, expected %s (%s)\n", c->what, brg_status_name(brg_graph_status(g)),
                    brg_status_name(c->status), brg_graph_last_error(g));
        CU_ASSERT_EQUAL(brg_graph_status(g), c->status);
        BRG_ASSERT_CONTAINS(brg_graph_last_error(g), c->needle);
        /* The graph stays inspectable and sticky: later calls fail and add nothing. */
        int64_t tensors = brg_graph_tensor_count(g), ops = brg_graph_op_count(g);
        CU_ASSERT_PTR_NULL(brg_relu(g, x, "after_error"));
        BRG_ASSERT_EQ_INT(brg_graph_tensor_count(g), tensors);
        BRG_ASSERT_EQ_INT(brg_graph_op_count(g), ops);
        CU_ASSERT_EQUAL(brg_graph_finalize(g), c->status);
        brg_tensor_info ti;
        BRG_ASSERT_OK(brg_graph_tensor_info(g, 0, &ti), "inspect");
        CU_ASSERT_STRING_EQUAL(ti.name, "x");
        brg_graph_destroy(g);
    }
}

static void test_finalize_rules(void) {
    brg_graph *g = new_graph();
    BRG_ASSERT_STATUS(brg_graph_finalize(g), BRG_ERR_INVALID_USAGE);
    BRG_ASSERT_CONTAINS(brg_graph_last_error(g), "no input");
    brg_graph_destroy(g);

    g = new_graph();
    brg_tensor *x = brg_input(g, "x", BRG_F32, 2, (int64_t[]){BRG_BATCH, C});
    brg_relu(g, x, "r");
    BRG_ASSERT_STATUS(brg_graph_finalize(g), BRG_ERR_INVALID_USAGE);
    BRG_ASSERT_CONTAINS(brg_graph_last_error(g), "exactly one cross-entropy loss, this one has 0");
    brg_graph_destroy(g);

    g = tiny_gpt();
    brg_layer_begin(g, "open");
    brg_relu(g, brg_graph_param(g, "wpe.weight"), "r");
    BRG_ASSERT_STATUS(brg_graph_finalize(g), BRG_ERR_INVALID_USAGE);
    BRG_ASSERT_CONTAINS(brg_graph_last_error(g), "layer 'open' was begun but never ended");
    brg_graph_destroy(g);

    /* After finalize: building calls fail with INVALID_USAGE. */
    g = tiny_gpt();
    BRG_ASSERT_OK(brg_graph_finalize(g), brg_graph_last_error(g));
    brg_tensor *p = brg_graph_param(g, "wpe.weight");
    CU_ASSERT_PTR_NOT_NULL(p); /* lookups still work */
    BRG_ASSERT_STATUS(brg_param_set_init(g, p, (brg_init){BRG_INIT_ZEROS, 0}), BRG_ERR_INVALID_USAGE);
    BRG_ASSERT_CONTAINS(brg_graph_last_error(g), "finalized");
    brg_graph_destroy(g);

    g = tiny_gpt();
    BRG_ASSERT_OK(brg_graph_finalize(g), "finalize");
    BRG_ASSERT_STATUS(brg_layer_begin(g, "late"), BRG_ERR_INVALID_USAGE);
    brg_graph_destroy(g);
}

static void test_introspection_bounds(void) {
    brg_graph *g = tiny_gpt();
    brg_op_info oi;
    brg_layer_info li;
    brg_tensor_info ti;
    BRG_ASSERT_STATUS(brg_graph_op_info(g, -1, &oi), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_graph_op_info(g, brg_graph_op_count(g), &oi), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_graph_layer_info(g, brg_graph_layer_count(g), &li), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_graph_tensor_info(g, brg_graph_tensor_count(g), &ti), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_graph_op_info(g, 0, NULL), BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT_STRING_EQUAL(brg_op_kind_name(BRG_OP_CROSS_ENTROPY), "cross_entropy");
    CU_ASSERT_STRING_EQUAL(brg_op_kind_name((brg_op_kind)99), "unknown");
    brg_graph_destroy(g);
}

static void test_set_init(void) {
    brg_graph *g = tiny_gpt();
    brg_tensor *p = brg_graph_param(g, "h.0.attn.c_proj.weight");
    CU_ASSERT_PTR_NOT_NULL(p);
    BRG_ASSERT_OK(brg_param_set_init(g, p, (brg_init){BRG_INIT_NORMAL, 0.01f}), brg_graph_last_error(g));
    brg_tensor *x = brg_graph_param(g, "wte.weight");
    BRG_ASSERT_OK(brg_param_set_init(g, x, (brg_init){BRG_INIT_NORMAL, 0.02f}), brg_graph_last_error(g));
    brg_graph_destroy(g);
    /* an activation is not a parameter */
    g = new_graph();
    brg_tensor *in = brg_input(g, "x", BRG_F32, 2, (int64_t[]){BRG_BATCH, C});
    BRG_ASSERT_STATUS(brg_param_set_init(g, in, (brg_init){BRG_INIT_ZEROS, 0}), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(brg_graph_last_error(g), "'x' is not a parameter");
    brg_graph_destroy(g);
}

static void test_status_strings(void) {
    CU_ASSERT_STRING_EQUAL(brg_status_name(BRG_OK), "BRG_OK");
    CU_ASSERT_STRING_EQUAL(brg_status_name(BRG_ERR_SHAPE), "BRG_ERR_SHAPE");
    CU_ASSERT_STRING_EQUAL(brg_status_name((brg_status)999), "BRG_UNKNOWN");
    CU_ASSERT_STRING_EQUAL(brg_status_string((brg_status)999), "unknown status");
    CU_ASSERT_STRING_EQUAL(brg_status_string(BRG_OK), "success");
    for (int s = 0; s <= BRG_ERR_NUMERICAL; s++) {
        CU_ASSERT(strlen(brg_status_string((brg_status)s)) > 0);
        CU_ASSERT(strncmp(brg_status_name((brg_status)s), "BRG_", 4) == 0);
    }
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", BRG_VERSION_MAJOR, BRG_VERSION_MINOR, BRG_VERSION_PATCH);
    CU_ASSERT_STRING_EQUAL(brg_version(), expect);
}

/* Tensor names are found through a hash index (engine/graph/graph.c; a linear search made large models
 * slow to build): among thousands of tensors, across the index's growth, a repeated name is still refused,
 * naming it, and a new one still accepted. */
static void test_many_names(void) {
    brg_graph *g = NULL;
    BRG_ASSERT_OK(brg_graph_create(&g), "brg_graph_create");
    brg_tensor *x = brg_input(g, "x", BRG_F32, 2, (int64_t[]){BRG_BATCH, 4});
    char name[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "act.%d", i);
        x = brg_gelu(g, x, name);
    }
    BRG_ASSERT_OK(brg_graph_status(g), brg_graph_last_error(g));
    BRG_ASSERT_EQ_INT(brg_graph_tensor_count(g), 3001);
    CU_ASSERT(brg_gelu(g, x, "act.2999") == NULL);
    BRG_ASSERT_STATUS(brg_graph_status(g), BRG_ERR_NAME);
    BRG_ASSERT_CONTAINS(brg_graph_last_error(g), "name 'act.2999' is already used");
    brg_graph_destroy(g);
    BRG_ASSERT_OK(brg_graph_create(&g), "brg_graph_create");
    x = brg_input(g, "x", BRG_F32, 2, (int64_t[]){BRG_BATCH, 4});
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof name, "act.%d", i);
        x = brg_gelu(g, x, name);
    }
    CU_ASSERT(brg_gelu(g, x, "x") == NULL);
    BRG_ASSERT_CONTAINS(brg_graph_last_error(g), "name 'x' is already used");
    brg_graph_destroy(g);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"build_and_shapes", test_build_and_shapes},
        {"linear_costs", test_linear_costs},
        {"boundary_bytes_skip", test_boundary_bytes_skip},
        {"null_handles", test_null_handles},
        {"bad_input", test_bad_input},
        {"finalize_rules", test_finalize_rules},
        {"introspection_bounds", test_introspection_bounds},
        {"set_init", test_set_init},
        {"status_strings", test_status_strings},
        {"many_names", test_many_names},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "graph", cases);
}
