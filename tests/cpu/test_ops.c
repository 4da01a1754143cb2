/* Every op's CPU kernels against the double reference, ops built through the public graph API (so the
 * shapes the kernels see are the ones shape inference produced). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_test.h"
#include "harness.h"
#include "test_cases.h"

#define BATCH 2

static brg_tensor *input(brg_graph *g, const char *name, brg_dtype dtype, int ndim, const int64_t *shape) {
    return brg_input(g, name, dtype, ndim, shape);
}

static brg_tensor *param(brg_graph *g, const char *name, int ndim, const int64_t *shape) {
    return brg_param(g, name, ndim, shape, (brg_init){BRG_INIT_NORMAL, 0.02f});
}

void test_embedding(void) {
    brg_graph *g;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    /* 8 tokens over a vocabulary of 5: repeated rows exercise the ordered accumulation. */
    brg_tensor *tok = input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, 4});
    check_op("embedding", g, brg_embedding(g, tok, 5, 6, "wte"), BATCH, 1);
    brg_graph_destroy(g);
}

void test_linear(void) {
    brg_graph *g;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *x = input(g, "x", BRG_F32, 3, (int64_t[]){BRG_BATCH, 3, 7});
    check_op("linear", g, brg_linear(g, x, 5, "fc"), BATCH, 2);
    brg_graph_destroy(g);
}

static const char *flags_name(brg_matmul_flags flags) {
    static const char *names[] = {"", "^T a", "^T b", "^T a,b"};
    return names[flags & 3];
}

/* a (B, M, K) activation x b (K, N) parameter: the GPT output head's shape (b transposed: h wte^T). */
void test_matmul_parameter_b(void) {
    for (int flags = 0; flags < 4; flags++) {
        brg_graph *g;
        BRG_ASSERT_OK(brg_graph_create(&g), "");
        int ta = flags & BRG_MATMUL_TRANSPOSE_A, tb = flags & BRG_MATMUL_TRANSPOSE_B;
        int64_t m = 3, k = 4, n = 5;
        brg_tensor *a = input(g, "a", BRG_F32, 3, (int64_t[]){BRG_BATCH, ta ? k : m, ta ? m : k});
        brg_tensor *b = param(g, "b", 2, (int64_t[]){tb ? n : k, tb ? k : n});
        char label[64];
        snprintf(label, sizeof label, "matmul param b %s", flags_name(flags));
        check_op(label, g, brg_matmul(g, a, b, flags, "mm"), BATCH, 10 + flags);
        brg_graph_destroy(g);
    }
}

/* a (B, 2, M, K) x b (B, 2, K, N), both activations, 4-D: one product per leading index. */
void test_matmul_batched_b(void) {
    for (int flags = 0; flags < 4; flags++) {
        brg_graph *g;
        BRG_ASSERT_OK(brg_graph_create(&g), "");
        int ta = flags & BRG_MATMUL_TRANSPOSE_A, tb = flags & BRG_MATMUL_TRANSPOSE_B;
        int64_t m = 4, k = 3, n = 5;
        brg_tensor *a = input(g, "a", BRG_F32, 4, (int64_t[]){BRG_BATCH, 2, ta ? k : m, ta ? m : k});
        brg_tensor *b = input(g, "b", BRG_F32, 4, (int64_t[]){BRG_BATCH, 2, tb ? n : k, tb ? k : n});
        char label[64];
        snprintf(label, sizeof label, "matmul batched b %s", flags_name(flags));
        check_op(label, g, brg_matmul(g, a, b, flags, "mm"), BATCH, 20 + flags);
        brg_graph_destroy(g);
    }
}

/* a (B, M, K) x b (K, N), b an activation shared by every leading index: its gradient sums over them. */
void test_matmul_shared_activation_b(void) {
    for (int flags = 0; flags < 4; flags++) {
        brg_graph *g;
        BRG_ASSERT_OK(brg_graph_create(&g), "");
        int ta = flags & BRG_MATMUL_TRANSPOSE_A, tb = flags & BRG_MATMUL_TRANSPOSE_B;
        int64_t m = 3, k = 6, n = 2;
        brg_tensor *a = input(g, "a", BRG_F32, 3, (int64_t[]){BRG_BATCH, ta ? k : m, ta ? m : k});
        brg_tensor *b = input(g, "b", BRG_F32, 2, (int64_t[]){tb ? n : k, tb ? k : n});
        char label[64];
        snprintf(label, sizeof label, "matmul shared activation b %s", flags_name(flags));
        check_op(label, g, brg_matmul(g, a, b, flags, "mm"), BATCH, 30 + flags);
        brg_graph_destroy(g);
    }
}

/* a a parameter: 2-D times a 2-D activation, and 3-D (leading index 2) times a shared parameter. */
void test_matmul_parameter_a(void) {
    for (int flags = 0; flags < 4; flags++) {
        int ta = flags & BRG_MATMUL_TRANSPOSE_A, tb = flags & BRG_MATMUL_TRANSPOSE_B;
        int64_t m = 5, k = 3, n = 4;
        char label[64];
        brg_graph *g;
        BRG_ASSERT_OK(brg_graph_create(&g), "");
        brg_tensor *a = param(g, "a", 2, (int64_t[]){ta ? k : m, ta ? m : k});
        brg_tensor *b = input(g, "b", BRG_F32, 2, (int64_t[]){tb ? n : k, tb ? k : n});
        snprintf(label, sizeof label, "matmul param a %s", flags_name(flags));
        check_op(label, g, brg_matmul(g, a, b, flags, "mm"), BATCH, 40 + flags);
        brg_graph_destroy(g);

        BRG_ASSERT_OK(brg_graph_create(&g), "");
        a = param(g, "a", 3, (int64_t[]){2, ta ? k : m, ta ? m : k});
        b = param(g, "b", 2, (int64_t[]){tb ? n : k, tb ? k : n});
        snprintf(label, sizeof label, "matmul param a, b %s", flags_name(flags));
        check_op(label, g, brg_matmul(g, a, b, flags, "mm"), BATCH, 50 + flags);
        brg_graph_destroy(g);
    }
}

void test_add(void) {
    brg_graph *g;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *a = input(g, "a", BRG_F32, 3, (int64_t[]){BRG_BATCH, 3, 4});
    brg_tensor *b = input(g, "b", BRG_F32, 3, (int64_t[]){BRG_BATCH, 3, 4});
    check_op("add", g, brg_add(g, a, b, "sum"), BATCH, 60);
    brg_graph_destroy(g);

    /* b a parameter over the last dimension (a bias) */
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    a = input(g, "a", BRG_F32, 3, (int64_t[]){BRG_BATCH, 3, 4});
    b = param(g, "b", 1, (int64_t[]){4});
    check_op("add broadcast param (C)", g, brg_add(g, a, b, "sum"), BATCH, 61);
    brg_graph_destroy(g);

    /* b an activation over the two trailing dimensions (a position embedding) */
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    a = input(g, "a", BRG_F32, 3, (int64_t[]){BRG_BATCH, 3, 4});
    b = input(g, "b", BRG_F32, 2, (int64_t[]){3, 4});
    check_op("add broadcast activation (T, C)", g, brg_add(g, a, b, "sum"), BATCH, 62);
    brg_graph_destroy(g);
}

void test_layernorm(void) {
    brg_graph *g;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    /* C = 19: neither a multiple of the eight reduction lanes nor small */
    brg_tensor *x = input(g, "x", BRG_F32, 3, (int64_t[]){BRG_BATCH, 3, 19});
    check_op("layernorm", g, brg_layernorm(g, x, 1e-5f, "ln"), BATCH, 70);
    brg_graph_destroy(g);
}

void test_gelu(void) {
    brg_graph *g;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *x = input(g, "x", BRG_F32, 3, (int64_t[]){BRG_BATCH, 5, 13});
    check_op("gelu", g, brg_gelu(g, x, "act"), BATCH, 80);
    brg_graph_destroy(g);
}

void test_relu(void) {
    brg_graph *g;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *x = input(g, "x", BRG_F32, 3, (int64_t[]){BRG_BATCH, 5, 13});
    check_op("relu", g, brg_relu(g, x, "act"), BATCH, 90);
    brg_graph_destroy(g);
}

static void attention_case(const char *label, int64_t batch, int64_t seq, int64_t channels, int64_t heads,
                           uint64_t seed) {
    brg_graph *g;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *qkv = input(g, "qkv", BRG_F32, 3, (int64_t[]){BRG_BATCH, seq, 3 * channels});
    check_op(label, g, brg_causal_attention(g, qkv, heads, "attn"), batch, seed);
    brg_graph_destroy(g);
}

void test_attention(void) {
    attention_case("attention B=2 T=5 C=12 NH=3", 2, 5, 12, 3, 100);
    attention_case("attention B=1 T=4 C=4 NH=1", 1, 4, 4, 1, 101);
    /* longer than one block of query rows */
    attention_case("attention B=1 T=133 C=8 NH=2", 1, 133, 8, 2, 102);
}

void test_cross_entropy(void) {
    brg_graph *g;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *logits = input(g, "logits", BRG_F32, 3, (int64_t[]){BRG_BATCH, 3, 11});
    brg_tensor *targets = input(g, "targets", BRG_I32, 2, (int64_t[]){BRG_BATCH, 3});
    check_op("cross_entropy", g, brg_cross_entropy(g, logits, targets, "loss"), BATCH, 110);
    brg_graph_destroy(g);

    /* (B, V) logits, V past one exp chunk of the kernel */
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    logits = input(g, "logits", BRG_F32, 2, (int64_t[]){BRG_BATCH, 1500});
    targets = input(g, "targets", BRG_I32, 1, (int64_t[]){BRG_BATCH});
    check_op("cross_entropy V=1500", g, brg_cross_entropy(g, logits, targets, "loss"), BATCH, 111);
    brg_graph_destroy(g);
}

/* ---- data the kernels cannot trust ---- */

void test_bad_token(void) {
    brg_graph *g;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *tok = input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, 3});
    brg_tensor *out = brg_embedding(g, tok, 10, 4, "wte");
    CU_ASSERT_FATAL(out != NULL);
    int32_t tokens[6] = {1, 2, 3, 4, 10, 5};
    float weight[40] = {0}, emb[24], dweight[40] = {0}, dout[24] = {0};
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__op_call c = {.op = &g->ops[out->producer], .batch = 2, .in = {tokens, weight}, .out = emb,
                      .dout = dout, .din = {NULL, dweight}, .msg = msg};
    BRG_ASSERT_STATUS(brg__cpu_forward(&c), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(msg, "wte");
    BRG_ASSERT_CONTAINS(msg, "token 10");
    BRG_ASSERT_CONTAINS(msg, "position 4");
    msg[0] = '\0';
    BRG_ASSERT_STATUS(brg__cpu_backward(&c), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(msg, "token 10");
    float zero[40] = {0};
    CU_ASSERT(memcmp(dweight, zero, sizeof zero) == 0); // nothing accumulated before the check failed
    tokens[4] = -3;
    c.msg = NULL; // no message buffer: the status alone
    BRG_ASSERT_STATUS(brg__cpu_forward(&c), BRG_ERR_INVALID_ARGUMENT);
    brg_graph_destroy(g);
}

void test_bad_target(void) {
    brg_graph *g;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *logits = input(g, "logits", BRG_F32, 2, (int64_t[]){BRG_BATCH, 6});
    brg_tensor *targets = input(g, "targets", BRG_I32, 1, (int64_t[]){BRG_BATCH});
    brg_tensor *out = brg_cross_entropy(g, logits, targets, "loss");
    CU_ASSERT_FATAL(out != NULL);
    int32_t ids[3] = {0, -1, 5};
    float x[18] = {0}, losses[3], lse[3], dx[18] = {0}, dout[3] = {1, 1, 1};
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__op_call c = {.op = &g->ops[out->producer], .batch = 3, .in = {x, ids}, .out = losses, .aux = lse,
                      .dout = dout, .din = {dx, NULL}, .msg = msg};
    BRG_ASSERT_STATUS(brg__cpu_forward(&c), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(msg, "loss");
    BRG_ASSERT_CONTAINS(msg, "target -1");
    BRG_ASSERT_CONTAINS(msg, "position 1");
    ids[1] = 6;
    BRG_ASSERT_STATUS(brg__cpu_backward(&c), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(msg, "target 6");
    ids[1] = 2;
    BRG_ASSERT_OK(brg__cpu_forward(&c), msg);
    BRG_ASSERT_NEAR(losses[0], log(6.0), 1e-6); // uniform logits
    BRG_ASSERT_NEAR(lse[2], log(6.0), 1e-6);    // the log-sum-exp kept for backward
    brg_graph_destroy(g);
}

void test_unknown_kind(void) {
    brg__op op;
    memset(&op, 0, sizeof op);
    snprintf(op.name, sizeof op.name, "mystery");
    op.kind = BRG_OP_KIND_COUNT;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__op_call c = {.op = &op, .batch = 1, .msg = msg};
    BRG_ASSERT_STATUS(brg__cpu_forward(&c), BRG_ERR_UNSUPPORTED);
    BRG_ASSERT_CONTAINS(msg, "mystery");
    BRG_ASSERT_STATUS(brg__cpu_backward(&c), BRG_ERR_UNSUPPORTED);
}
