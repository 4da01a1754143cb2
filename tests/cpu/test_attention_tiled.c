/* The tiled (FlashAttention-2-style) attention reference against the CPU backend's attention: forward
 * and both halves of backward (dq, and dk with dv), at T = 1024 with GPT-2's head size, and at shapes
 * whose blocks do not divide T. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_test.h"
#include "cpu/kernels.h"
#include "harness.h"
#include "test_cases.h"

static float uniform_at(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*state >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

/* Worst |a - b| / max(|b|, floor) over n. */
static double worst(const float *a, const float *b, int64_t n, double floor) {
    double w = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = rel_error(a[i], b[i], floor);
        if (e > w) w = e;
    }
    return w;
}

static void compare(int64_t B, int64_t T, int64_t C, int64_t NH, int64_t bq, int64_t bk, double *errors) {
    brg_graph *g = NULL;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *x = brg_input(g, "qkv", BRG_F32, 3, (int64_t[]){BRG_BATCH, T, 3 * C});
    brg_causal_attention(g, x, NH, "attn");
    const brg__op *op = brg__graph_op(g, 0);
    brg__op_costs costs;
    brg__op_costs_get(op, B, &costs);
    int64_t n_in = B * T * 3 * C, n_out = B * T * C;
    float *qkv = malloc((size_t)n_in * sizeof *qkv), *dout = malloc((size_t)n_out * sizeof *dout);
    float *out_ref = malloc((size_t)n_out * sizeof *out_ref), *out_tiled = malloc((size_t)n_out * sizeof *out_tiled);
    float *dqkv_ref = calloc((size_t)n_in, sizeof *dqkv_ref), *dqkv_tiled = calloc((size_t)n_in, sizeof *dqkv_tiled);
    float *aux = malloc((size_t)costs.aux_floats * sizeof *aux), *lse = malloc((size_t)(B * NH * T) * sizeof *lse);
    int64_t scratch_floats = brg__op_scratch_floats(&costs, 1);
    float *scratch = malloc((size_t)(scratch_floats ? scratch_floats : 1) * sizeof *scratch);
    CU_ASSERT_FATAL(qkv && dout && out_ref && out_tiled && dqkv_ref && dqkv_tiled && aux && lse && scratch);
    uint64_t state = (uint64_t)(T * 31 + C);
    for (int64_t i = 0; i < n_in; i++) qkv[i] = uniform_at(&state);
    for (int64_t i = 0; i < n_out; i++) dout[i] = uniform_at(&state);
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__op_call call = {.op = op, .batch = B, .out = out_ref, .aux = aux, .scratch = scratch, .msg = msg};
    call.in[0] = qkv;
    BRG_ASSERT_OK(brg__cpu_attention_forward(&call), msg);
    call.dout = dout;
    call.din[0] = dqkv_ref;
    BRG_ASSERT_OK(brg__cpu_attention_backward(&call), msg);
    BRG_ASSERT_OK(brg__attention_tiled_forward(qkv, out_tiled, lse, B, T, C, NH, bq, bk), "");
    BRG_ASSERT_OK(brg__attention_tiled_backward(qkv, out_tiled, dout, lse, dqkv_tiled, B, T, C, NH, bq, bk), "");
    /* dq is the first C columns of each row of dqkv, dk and dv the other 2C. */
    float *dq_ref = malloc((size_t)n_out * sizeof *dq_ref), *dq_tiled = malloc((size_t)n_out * sizeof *dq_tiled);
    float *dkv_ref = malloc((size_t)(2 * n_out) * sizeof *dkv_ref);
    float *dkv_tiled = malloc((size_t)(2 * n_out) * sizeof *dkv_tiled);
    for (int64_t r = 0; r < B * T; r++) {
        memcpy(dq_ref + r * C, dqkv_ref + r * 3 * C, (size_t)C * sizeof(float));
        memcpy(dq_tiled + r * C, dqkv_tiled + r * 3 * C, (size_t)C * sizeof(float));
        memcpy(dkv_ref + r * 2 * C, dqkv_ref + r * 3 * C + C, (size_t)(2 * C) * sizeof(float));
        memcpy(dkv_tiled + r * 2 * C, dqkv_tiled + r * 3 * C + C, (size_t)(2 * C) * sizeof(float));
    }
    errors[0] = worst(out_tiled, out_ref, n_out, 1e-2);
    errors[1] = worst(dq_tiled, dq_ref, n_out, 1e-2);
    errors[2] = worst(dkv_tiled, dkv_ref, 2 * n_out, 1e-2);
    printf("\n    tiled attention B=%lld T=%lld C=%lld NH=%lld blocks %lldx%lld: worst relative error forward %.2e, "
           "dq %.2e, dk/dv %.2e",
           (long long)B, (long long)T, (long long)C, (long long)NH, (long long)bq, (long long)bk, errors[0], errors[1],
           errors[2]);
    free(qkv), free(dout), free(out_ref), free(out_tiled), free(dqkv_ref), free(dqkv_tiled);
    free(aux), free(lse), free(scratch), free(dq_ref), free(dq_tiled), free(dkv_ref), free(dkv_tiled);
    brg_graph_destroy(g);
}

void test_attention_tiled_matches(void) {
    /* fp32 tolerance: both sum the same products in different orders over up to T terms. */
    const double tolerance = 1e-4;
    struct {
        int64_t B, T, C, NH, bq, bk;
    } cases[] = {
        {1, 1024, 128, 2, 64, 64}, /* GPT-2's head size 64, T = 1024 */
        {2, 133, 24, 3, 16, 32},   /* blocks that divide nothing */
        {1, 7, 4, 1, 64, 64},      /* one block larger than the sequence */
        {1, 50, 8, 2, 1, 1},       /* one row and one key at a time */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double e[3];
        compare(cases[i].B, cases[i].T, cases[i].C, cases[i].NH, cases[i].bq, cases[i].bk, e);
        for (int k = 0; k < 3; k++) CU_ASSERT(e[k] < tolerance);
    }
    float one = 0;
    BRG_ASSERT_STATUS(brg__attention_tiled_forward(&one, &one, &one, 1, 4, 6, 4, 8, 8), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg__attention_tiled_forward(&one, &one, &one, 1, 4, 4, 1, 0, 8), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg__attention_tiled_backward(NULL, &one, &one, &one, &one, 1, 4, 4, 1, 8, 8),
                      BRG_ERR_INVALID_ARGUMENT);
}

void test_attention_tiled_memory(void) {
    /* What attention keeps for backward, per (sample, head): one log-sum-exp per row (T floats), where the
     * probabilities were T x T; at T = 1024 and twice that, the bytes double with T. */
    int64_t C = 768, NH = 12, kept[2];
    for (int i = 0; i < 2; i++) {
        int64_t T = 1024 << i;
        brg_graph *g = NULL;
        BRG_ASSERT_OK(brg_graph_create(&g), "");
        brg_tensor *x = brg_input(g, "qkv", BRG_F32, 3, (int64_t[]){BRG_BATCH, T, 3 * C});
        brg_causal_attention(g, x, NH, "attn");
        brg__op_costs costs;
        brg__op_costs_get(brg__graph_op(g, 0), 1, &costs);
        BRG_ASSERT_EQ_INT(costs.aux_floats, NH * T);
        /* Workspace: the CPU's threads hold a (b, head)'s probabilities and d(scores); the GPU's fused
         * kernels none, so neither its stages nor the memory model of a GPU count it. */
        BRG_ASSERT_EQ_INT(brg__op_scratch_floats(&costs, 1), 2 * T * T);
        BRG_ASSERT_EQ_INT(brg__op_scratch_floats(&costs, 0), 0);
        kept[i] = costs.aux_floats * 4;
        printf("\n    kept for backward per sample at T=%lld, 12 heads: %.1f KiB (the probabilities were %.1f MiB)",
               (long long)T, (double)kept[i] / 1024, (double)(NH * T * T) * 4 / (1 << 20));
        brg_graph_destroy(g);
    }
    CU_ASSERT(kept[1] == 2 * kept[0]);
}
