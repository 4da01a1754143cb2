/* Tensor parallelism in the graph: the marks a model leaves (brg_tensor_parallel), the rank's graph derived
 * from them (brg__graph_localize: shapes, slices, the group's collectives where Megatron-LM puts them, with
 * and without sequence parallelism), slices of parameters there and back, and what cannot be split. */
#include <stdlib.h>
#include <string.h>

#include "brigade.h"
#include "graph/graph_internal.h"
#include "harness.h"

static brg_graph *localized(const char *spec, int parts, int sequence, brg_status *status, char *msg) {
    brg_model_config cfg;
    brg_graph *g = brg_test_build(spec, &cfg), *l = NULL;
    if (!g) return NULL;
    *status = brg__graph_localize(g, parts, sequence, &l, msg);
    brg_graph_destroy(g);
    return l;
}

static int count_kind(const brg_graph *g, brg_op_kind kind) {
    int n = 0;
    for (int64_t i = 0; i < g->n_ops; i++) n += g->ops[i].kind == kind;
    return n;
}

static const brg_tensor *param(const brg_graph *g, const char *name) {
    for (int64_t p = 0; p < g->n_params; p++)
        if (strcmp(g->params[p]->name, name) == 0) return g->params[p];
    CU_FAIL("parameter missing");
    fprintf(stderr, "  no parameter '%s'\n", name);
    return NULL;
}

static void expect_shape(const brg_tensor *t, int64_t d0, int64_t d1) {
    if (!t) return;
    CU_ASSERT(t->shape[0] == d0);
    if (t->ndim > 1) CU_ASSERT(t->shape[1] == d1);
    if (t->shape[0] != d0 || (t->ndim > 1 && t->shape[1] != d1))
        fprintf(stderr, "  '%s' is (%lld, %lld), expected (%lld, %lld)\n", t->name, (long long)t->shape[0],
                (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)d0, (long long)d1);
}

#define GPT "gpt:layers=2,hidden=16,heads=4,vocab=64,seq=8"

/* Megatron's split of a GPT: q, k, v and c_fc by columns, the projections by rows, the vocabulary by rows;
 * an all-reduce after each row-parallel product and the embedding, a copy (summing gradients) before each
 * column-parallel one and the head. */
static void test_gpt_split(void) {
    brg_status s = BRG_OK;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_model_config cfg;
    brg_graph *whole = brg_test_build(GPT, &cfg);
    brg_graph *l = localized(GPT, 2, 0, &s, msg);
    BRG_ASSERT_OK(s, msg);
    if (!l || !whole) return;
    CU_ASSERT(l->tp_parts == 2 && l->tp_sequence == 0);
    BRG_ASSERT_EQ_INT(l->n_layers, whole->n_layers);
    for (int i = 0; i < l->n_layers && i < whole->n_layers; i++) CU_ASSERT_STRING_EQUAL(l->layers[i].name, whole->layers[i].name);
    BRG_ASSERT_EQ_INT(l->n_params, whole->n_params);
    expect_shape(param(l, "h.0.attn.c_attn.weight"), 24, 16); /* 3C / 2 rows: q, k, v halves */
    expect_shape(param(l, "h.0.attn.c_attn.bias"), 24, 0);
    expect_shape(param(l, "h.0.attn.c_proj.weight"), 16, 8);
    expect_shape(param(l, "h.0.attn.c_proj.bias"), 16, 0);
    expect_shape(param(l, "h.1.mlp.c_fc.weight"), 32, 16);
    expect_shape(param(l, "h.1.mlp.c_proj.weight"), 16, 32);
    expect_shape(param(l, "wte.weight"), 32, 16);
    expect_shape(param(l, "wpe.weight"), 8, 16);
    expect_shape(param(l, "h.0.ln_1.weight"), 16, 0);
    const brg_tensor *qkv = param(l, "h.0.attn.c_attn.weight"), *proj = param(l, "h.0.attn.c_proj.weight");
    if (qkv) CU_ASSERT(qkv->slice.dim == 0 && qkv->slice.blocks == 3 && qkv->slice.parts == 2 && qkv->slice.whole == 48);
    if (proj) CU_ASSERT(proj->slice.dim == 1 && proj->slice.blocks == 1 && proj->slice.whole == 16);
    const brg_tensor *ln = param(l, "h.0.ln_1.weight");
    if (ln) CU_ASSERT(ln->slice.parts < 2 && !ln->partial_grad);
    BRG_ASSERT_EQ_INT(count_kind(l, BRG_OP_TP_COPY), 2 * 2 + 1);
    BRG_ASSERT_EQ_INT(count_kind(l, BRG_OP_TP_REDUCE), 2 * 2 + 1);
    BRG_ASSERT_EQ_INT(count_kind(l, BRG_OP_TP_GATHER) + count_kind(l, BRG_OP_TP_SCATTER), 0);
    CU_ASSERT(l->loss_op >= 0 && l->ops[l->loss_op].tp_vocab == 64);
    for (int64_t i = 0; i < l->n_ops; i++) {
        const brg__op *op = &l->ops[i];
        if (op->kind == BRG_OP_ATTENTION) CU_ASSERT(op->heads == 2 && op->output->shape[2] == 8);
        if (op->kind == BRG_OP_EMBEDDING) CU_ASSERT(op->tp_vocab == 64);
    }
    /* The tied head reads the embedding's slice: its logits are the rank's 32 of the 64. */
    const brg_tensor *logits = l->ops[l->loss_op].inputs[0];
    CU_ASSERT(logits->shape[2] == 32);
    /* One rank's parameters: the whole model's over the group, bar the ones every rank holds. */
    int64_t local = brg_graph_param_count(l), all = brg_graph_param_count(whole);
    CU_ASSERT(local < all && local > all / 2);
    brg_graph_destroy(l);
    brg_graph_destroy(whole);
}

/* Sequence parallelism: the residual stream split over the positions; a gather before each column-parallel
 * product (and the head), a sum-and-scatter after each row-parallel one (and the embedding); the position
 * embedding by rows of positions; the layernorms' and row biases' gradients partial. */
static void test_sequence_parallel(void) {
    brg_status s = BRG_OK;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_graph *l = localized(GPT, 2, 1, &s, msg);
    BRG_ASSERT_OK(s, msg);
    if (!l) return;
    CU_ASSERT(l->tp_sequence == 1);
    BRG_ASSERT_EQ_INT(count_kind(l, BRG_OP_TP_GATHER), 2 * 2 + 1);
    BRG_ASSERT_EQ_INT(count_kind(l, BRG_OP_TP_SCATTER), 2 * 2 + 1);
    BRG_ASSERT_EQ_INT(count_kind(l, BRG_OP_TP_COPY) + count_kind(l, BRG_OP_TP_REDUCE), 0);
    expect_shape(param(l, "wpe.weight"), 4, 16);
    const brg_tensor *ln = param(l, "h.1.ln_2.bias"), *bias = param(l, "h.0.mlp.c_proj.bias"), *qkv_bias = param(l, "h.0.attn.c_attn.bias");
    if (ln) CU_ASSERT(ln->partial_grad);
    if (bias) CU_ASSERT(bias->partial_grad);
    if (qkv_bias) CU_ASSERT(!qkv_bias->partial_grad); /* split, not partial */
    /* Between layers the stream is the rank's 4 of 8 positions: what a stage boundary carries. */
    int64_t boundary = 0;
    BRG_ASSERT_OK(brg_graph_boundary_bytes(l, 2, &boundary), "");
    CU_ASSERT(boundary == 4 * 16 * 4);
    brg_graph_destroy(l);
    /* One rank: the whole model's graph again, no collective. */
    l = localized(GPT, 1, 1, &s, msg);
    BRG_ASSERT_OK(s, msg);
    if (l) {
        BRG_ASSERT_EQ_INT(count_kind(l, BRG_OP_TP_COPY) + count_kind(l, BRG_OP_TP_REDUCE) + count_kind(l, BRG_OP_TP_GATHER) +
                              count_kind(l, BRG_OP_TP_SCATTER), 0);
        expect_shape(param(l, "wte.weight"), 64, 16);
        CU_ASSERT(l->ops[l->loss_op].tp_vocab == 0);
    }
    brg_graph_destroy(l);
}

/* A vocabulary 4 does not divide: padded to 4 x 16 rows, the last rank's last rows never read. */
static void test_vocabulary_padding(void) {
    brg_status s = BRG_OK;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_graph *l = localized("gpt:layers=1,hidden=16,heads=4,vocab=61,seq=8", 4, 0, &s, msg);
    BRG_ASSERT_OK(s, msg);
    if (!l) return;
    const brg_tensor *wte = param(l, "wte.weight");
    expect_shape(wte, 16, 16);
    if (wte) CU_ASSERT(wte->slice.whole == 61 && brg__slice_whole_numel(wte) == 61 * 16);
    CU_ASSERT(l->ops[l->loss_op].tp_vocab == 61);
    brg_graph_destroy(l);
}

/* Slices there and back: q, k, v blocks, padding, the split dimension inside. */
static void test_slices(void) {
    brg_status s = BRG_OK;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_graph *l = localized("gpt:layers=1,hidden=8,heads=2,vocab=11,seq=4", 2, 0, &s, msg);
    BRG_ASSERT_OK(s, msg);
    if (!l) return;
    const char *names[] = {"h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias", "h.0.attn.c_proj.weight", "wte.weight",
                           "h.0.ln_1.weight"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const brg_tensor *t = param(l, names[k]);
        if (!t) continue;
        int64_t n = brg__slice_whole_numel(t), m = brg__tensor_numel(t, 1);
        float *whole = calloc((size_t)n, sizeof *whole), *back = calloc((size_t)n, sizeof *back);
        float *part = calloc((size_t)m, sizeof *part);
        for (int64_t i = 0; i < n; i++) whole[i] = (float)(i + 1);
        int64_t nonzero = 0;
        for (int rank = 0; rank < 2; rank++) {
            brg__slice_take(t, rank, whole, part);
            for (int64_t i = 0; i < m; i++) nonzero += part[i] != 0.0f;
            brg__slice_put(t, rank, part, back);
        }
        CU_ASSERT(memcmp(whole, back, (size_t)n * sizeof *whole) == 0);
        /* Every entry of the whole parameter on exactly one rank (or on both, if every rank holds it). */
        CU_ASSERT(nonzero == (t->slice.parts < 2 ? 2 * n : n));
        free(whole);
        free(back);
        free(part);
    }
    /* The first rank's q rows are the whole tensor's first 4, its k rows the whole's 8..11. */
    const brg_tensor *qkv = param(l, "h.0.attn.c_attn.bias");
    if (qkv) {
        float whole[24], part[12];
        for (int i = 0; i < 24; i++) whole[i] = (float)i;
        brg__slice_take(qkv, 1, whole, part);
        CU_ASSERT(part[0] == 4.0f && part[4] == 12.0f && part[8] == 20.0f);
    }
    brg_graph_destroy(l);
}

/* What a group of t cannot split, named. */
static void test_refused(void) {
    struct {
        const char *spec;
        int parts, sequence;
        const char *says;
    } cases[] = {
        {"gpt:layers=1,hidden=24,heads=3,vocab=64,seq=8", 2, 0, "does not divide the 3 heads of 'h.0.attn'"},
        {"gpt:layers=1,hidden=18,heads=6,vocab=64,seq=8", 4, 0, "does not divide the 18 output features of each block of 'h.0.attn.c_attn'"},
        {"gpt:layers=1,hidden=16,heads=4,vocab=64,seq=6", 4, 1, "positions are not divisible by 4"},
        {GPT, 0, 0, "a group of 0 ranks"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        brg_status s = BRG_OK;
        char msg[BRG_ERROR_MESSAGE_MAX] = "";
        brg_graph *l = localized(cases[i].spec, cases[i].parts, cases[i].sequence, &s, msg);
        BRG_ASSERT_STATUS(s, BRG_ERR_INVALID_ARGUMENT);
        CU_ASSERT(l == NULL);
        if (!strstr(msg, cases[i].says)) fprintf(stderr, "  case %zu: '%s' not in: %s\n", i, cases[i].says, msg);
        CU_ASSERT(strstr(msg, cases[i].says) != NULL);
        brg_graph_destroy(l);
    }
}

/* The marks: roles an op cannot take, blocks that do not divide, a finalized graph. */
static void test_marks(void) {
    brg_graph *g = NULL;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *tok = brg_input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, 4});
    brg_tensor *h = brg_embedding(g, tok, 8, 6, "wte");
    BRG_ASSERT_STATUS(brg_tensor_parallel(g, h, BRG_TP_COLUMN, 1), BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(brg_graph_last_error(g), "cannot take role") != NULL);
    brg_graph_destroy(g);
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    tok = brg_input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, 4});
    h = brg_embedding(g, tok, 8, 6, "wte");
    brg_tensor *y = brg_linear(g, h, 6, "fc");
    BRG_ASSERT_STATUS(brg_tensor_parallel(g, y, BRG_TP_COLUMN, 4), BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(brg_graph_last_error(g), "do not divide") != NULL);
    brg_graph_destroy(g);
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    tok = brg_input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, 4});
    h = brg_embedding(g, tok, 8, 6, "wte");
    y = brg_linear(g, h, 6, "fc");
    BRG_ASSERT_OK(brg_tensor_parallel(g, y, BRG_TP_COLUMN, 3), brg_graph_last_error(g));
    BRG_ASSERT_STATUS(brg_tensor_parallel(g, tok, BRG_TP_ROW, 1), BRG_ERR_INVALID_ARGUMENT);
    brg_graph_destroy(g);
    BRG_ASSERT_STATUS(brg_tensor_parallel(NULL, NULL, BRG_TP_ROW, 1), BRG_ERR_INVALID_ARGUMENT);
}

/* The collectives' costs: what crosses the group in each pass. */
static void test_costs(void) {
    brg_status s = BRG_OK;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    for (int sequence = 0; sequence <= 1; sequence++) {
        brg_graph *l = localized(GPT, 2, sequence, &s, msg);
        BRG_ASSERT_OK(s, msg);
        if (!l) return;
        double forward = 0, backward = 0;
        for (int64_t i = 0; i < l->n_ops; i++) {
            brg__op_costs c;
            brg__op_costs_get(&l->ops[i], 1, &c);
            if (l->ops[i].kind >= BRG_OP_TP_COPY) {
                CU_ASSERT(c.flops[BRG_PASS_FORWARD] == 0.0);
                CU_ASSERT(c.comm_kind[BRG_PASS_FORWARD] != BRG__COMM_NONE || c.comm_kind[BRG_PASS_BACKWARD_INPUT] != BRG__COMM_NONE);
            }
            if (l->ops[i].kind == BRG_OP_CROSS_ENTROPY) continue;
            /* What a ring moves: an all-reduce twice its buffer, a gather or a scatter once the whole. */
            forward += c.comm_bytes[BRG_PASS_FORWARD] * (c.comm_kind[BRG_PASS_FORWARD] == BRG__COMM_ALLREDUCE ? 2 : 1);
            backward += c.comm_bytes[BRG_PASS_BACKWARD_INPUT] *
                        (c.comm_kind[BRG_PASS_BACKWARD_INPUT] == BRG__COMM_ALLREDUCE ? 2 : 1);
        }
        /* Per block 2 sums forward and 2 backward of (T, C) activations, the embedding's one forward and the
         * head's one backward: 5 all-reduces of T x C x 4 bytes each way, or as many gathers and scatters
         * (sequence parallelism), which a ring moves in the same time (Korthikanti et al.). */
        CU_ASSERT(forward == 2 * 5.0 * 8 * 16 * 4);
        CU_ASSERT(backward == 2 * 5.0 * 8 * 16 * 4);
        brg_graph_destroy(l);
    }
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"gpt_split", test_gpt_split},
        {"sequence_parallel", test_sequence_parallel},
        {"vocabulary_padding", test_vocabulary_padding},
        {"slices", test_slices},
        {"refused", test_refused},
        {"marks", test_marks},
        {"costs", test_costs},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "tensor-parallel-graph", cases);
}
