/* GPU suite: every CUDA kernel against the CPU backend (forward, backward-input and backward-weight, fp32
 * and bf16, with a tolerance per precision), a GPT training step against the CPU backend, pipelines of 2
 * and 4 stages on one GPU against one stage, and the NCCL transport (a send to self, device copies between
 * ranks on one GPU, tag checks, timeouts, a dead peer). Exits 77 (skipped) where brigade was built without
 * CUDA or no CUDA device is present. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "brigade.h"
#include "brigade_config.h"
#include "harness.h"
#if BRG_HAVE_CUDA
#include "cpu/cpu.h"
#include "cuda/cuda.h"
#include "graph/graph_internal.h"
#include "runtime/backend.h"
#include "runtime/trainer_internal.h"
#include "transport/transport.h"
#endif

#if BRG_HAVE_CUDA

/* Largest |got - want| over the largest |want| (1 when want is all zeros). */
#define TOL_FP32 2e-4
#define TOL_BF16 3e-2

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static float uniform(void) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rng >> 40) / (double)(1ULL << 24)) * 2.0f - 1.0f;
}

static double compare(const char *what, const char *op, const float *got, const float *want, int64_t n, double tol) {
    double worst = 0.0, scale = 0.0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)want[i]));
    if (scale == 0.0) scale = 1.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= worst)) { /* NaN counts as the worst */
            worst = isnan(d) ? INFINITY : d;
            at = i;
        }
    }
    double err = worst / scale;
    if (!(err <= tol))
        fprintf(stderr, "%s of op '%s': error %.3g (element %lld: %.9g, expected %.9g) above %.3g\n", what, op, err,
                (long long)at, n ? (double)got[at] : 0.0, n ? (double)want[at] : 0.0, tol);
    CU_ASSERT(err <= tol);
    return err;
}

/* ---- one op on both backends ---- */

typedef struct side {
    brg__backend *be;
    int bf16;
    void *in[BRG__MAX_INPUTS];
    void *out;
    float *aux, *scratch;
    void *dout;
    void *din[BRG__MAX_INPUTS];
} side;

static int is_loss(const brg__op *op) { return op->kind == BRG_OP_CROSS_ENTROPY; }

/* Whether t lives in the backend's activation type (bf16 on a bf16 backend). */
static int in_act_type(const brg_tensor *t) { return t->dtype == BRG_F32 && t->kind != BRG_TENSOR_PARAMETER; }

static size_t element_size(const side *s, int act) { return act && s->bf16 ? 2 : 4; }

static void *upload(side *s, const float *host, const int32_t *ints, int64_t n, int act) {
    size_t es = ints ? 4 : element_size(s, act);
    void *p = s->be->vt->alloc(s->be, (size_t)n * es);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    if (ints) {
        s->be->vt->upload(s->be, p, ints, (size_t)n * 4);
    } else if (es == 2) {
        uint16_t *h = malloc((size_t)n * 2);
        for (int64_t i = 0; i < n; i++) h[i] = brg__bf16_from_float(host[i]);
        s->be->vt->upload(s->be, p, h, (size_t)n * 2);
        free(h);
    } else {
        s->be->vt->upload(s->be, p, host, (size_t)n * 4);
    }
    return p;
}

static void download(side *s, float *host, const void *p, int64_t n, int act) {
    if (element_size(s, act) == 2) {
        uint16_t *h = malloc((size_t)n * 2);
        s->be->vt->download(s->be, h, p, (size_t)n * 2);
        for (int64_t i = 0; i < n; i++) host[i] = brg__bf16_to_float(h[i]);
        free(h);
    } else {
        s->be->vt->download(s->be, host, p, (size_t)n * 4);
    }
}

/* Host values for an op: inputs, output gradient and initial input gradients (rounded to bf16 where a bf16
 * backend keeps them, so both backends start from the same numbers). */
typedef struct host_values {
    float *in[BRG__MAX_INPUTS];
    int32_t *ints[BRG__MAX_INPUTS];
    int64_t n_in[BRG__MAX_INPUTS], n_out;
    float *dout;
    float *din0[BRG__MAX_INPUTS];
} host_values;

static float round_to(float x, int bf16) { return bf16 ? brg__bf16_to_float(brg__bf16_from_float(x)) : x; }

static void make_values(const brg__op *op, int64_t batch, int bf16, int64_t vocab, host_values *h) {
    memset(h, 0, sizeof *h);
    for (int q = 0; q < op->n_inputs; q++) {
        const brg_tensor *t = op->inputs[q];
        int64_t n = brg__tensor_numel(t, batch);
        h->n_in[q] = n;
        if (t->dtype == BRG_I32) {
            h->ints[q] = malloc((size_t)n * sizeof(int32_t));
            for (int64_t i = 0; i < n; i++)
                h->ints[q][i] = (int32_t)((uniform() + 1.0f) * 0.5f * (float)vocab) % (int32_t)vocab;
            if (n > 3) h->ints[q][3] = h->ints[q][0]; /* a repeated id */
            continue;
        }
        h->in[q] = malloc((size_t)n * sizeof(float));
        h->din0[q] = malloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) {
            h->in[q][i] = round_to(uniform(), bf16 && in_act_type(t));
            h->din0[q][i] = round_to(0.5f * uniform(), bf16 && in_act_type(t));
        }
    }
    h->n_out = brg__tensor_numel(op->output, batch);
    h->dout = malloc((size_t)h->n_out * sizeof(float));
    for (int64_t i = 0; i < h->n_out; i++)
        h->dout[i] = is_loss(op) ? 1.0f / (float)h->n_out : round_to(uniform(), bf16);
}

static void free_values(host_values *h) {
    for (int q = 0; q < BRG__MAX_INPUTS; q++) {
        free(h->in[q]);
        free(h->ints[q]);
        free(h->din0[q]);
    }
    free(h->dout);
}

static void side_setup(side *s, const brg__op *op, int64_t batch, const host_values *h) {
    brg__op_costs c;
    brg__op_costs_get(op, batch, &c);
    for (int q = 0; q < op->n_inputs; q++)
        s->in[q] = upload(s, h->in[q], h->ints[q], h->n_in[q], in_act_type(op->inputs[q]));
    s->out = s->be->vt->alloc(s->be, (size_t)h->n_out * element_size(s, !is_loss(op)));
    s->aux = s->be->vt->alloc(s->be, (size_t)(c.aux_floats ? c.aux_floats : 1) * sizeof(float));
    int64_t scratch = brg__op_scratch_floats(&c, s->be->vt->host_kernels);
    s->scratch = s->be->vt->alloc(s->be, (size_t)(scratch ? scratch : 1) * sizeof(float));
    s->dout = upload(s, h->dout, NULL, h->n_out, !is_loss(op));
}

static void side_free(side *s) {
    for (int q = 0; q < BRG__MAX_INPUTS; q++) {
        s->be->vt->free(s->be, s->in[q]);
        s->be->vt->free(s->be, s->din[q]);
    }
    s->be->vt->free(s->be, s->out);
    s->be->vt->free(s->be, s->aux);
    s->be->vt->free(s->be, s->scratch);
    s->be->vt->free(s->be, s->dout);
}

static brg__op_call call_of(const side *s, const brg__op *op, int64_t batch, char *msg) {
    brg__op_call call = {.op = op, .batch = batch, .out = s->out, .aux = s->aux, .scratch = s->scratch, .msg = msg};
    for (int q = 0; q < op->n_inputs; q++) call.in[q] = s->in[q];
    call.dout = s->dout;
    return call;
}

/* Backward of one part on a side: din of the inputs `params` selects (parameters, or the rest). With
 * `fresh`, the gradients brg__op_writes_fresh names start as NaN and are to be written outright. */
static void backward_part(side *s, const brg__op *op, int64_t batch, const host_values *h, int params, int fresh) {
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__op_call call = call_of(s, op, batch, msg);
    for (int q = 0; q < op->n_inputs; q++) {
        const brg_tensor *t = op->inputs[q];
        s->be->vt->free(s->be, s->din[q]);
        s->din[q] = NULL;
        if (t->dtype != BRG_F32 || (t->kind == BRG_TENSOR_PARAMETER) != params) continue;
        int written = fresh && brg__op_writes_fresh(op, q);
        float *start = h->din0[q];
        if (written) {
            start = malloc((size_t)h->n_in[q] * sizeof(float));
            for (int64_t i = 0; i < h->n_in[q]; i++) start[i] = NAN;
            call.din_fresh |= 1u << q;
        }
        s->din[q] = upload(s, start, NULL, h->n_in[q], in_act_type(t));
        if (written) free(start);
        call.din[q] = s->din[q];
    }
    BRG_ASSERT_OK(s->be->vt->backward(s->be, &call), msg);
}

/* The op at index `op_index` of g, forward and both backward parts, CUDA (fp32 or bf16) against CPU. */
static void check_op(brg_graph *g, int64_t op_index, int64_t batch, int bf16, int64_t vocab) {
    const brg__op *op = brg__graph_op(g, op_index);
    double tol = bf16 ? TOL_BF16 : TOL_FP32;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    side cpu = {0}, gpu = {0};
    gpu.bf16 = bf16;
    BRG_ASSERT_OK(brg__backend_cpu_create(&cpu.be, msg), msg);
    BRG_ASSERT_OK(brg__backend_cuda_create(&gpu.be, 0, bf16, msg), msg);
    if (!cpu.be || !gpu.be) {
        brg__backend_destroy(cpu.be);
        brg__backend_destroy(gpu.be);
        return;
    }
    host_values h;
    make_values(op, batch, bf16, vocab, &h);
    side_setup(&cpu, op, batch, &h);
    side_setup(&gpu, op, batch, &h);
    brg__op_call c1 = call_of(&cpu, op, batch, msg), c2 = call_of(&gpu, op, batch, msg);
    BRG_ASSERT_OK(cpu.be->vt->forward(cpu.be, &c1), msg);
    BRG_ASSERT_OK(gpu.be->vt->forward(gpu.be, &c2), msg);
    float *want = malloc((size_t)h.n_out * sizeof(float)), *got = malloc((size_t)h.n_out * sizeof(float));
    download(&cpu, want, cpu.out, h.n_out, 0);
    download(&gpu, got, gpu.out, h.n_out, !is_loss(op));
    compare(bf16 ? "bf16 forward" : "fp32 forward", op->name, got, want, h.n_out, tol);
    free(want);
    free(got);
    if (op->kind == BRG_OP_ATTENTION || is_loss(op)) { /* the log-sum-exp kept for backward, fp32 on both */
        brg__op_costs c;
        brg__op_costs_get(op, batch, &c);
        want = malloc((size_t)c.aux_floats * sizeof(float)), got = malloc((size_t)c.aux_floats * sizeof(float));
        download(&cpu, want, cpu.aux, c.aux_floats, 0);
        download(&gpu, got, gpu.aux, c.aux_floats, 0);
        compare(bf16 ? "bf16 log-sum-exp" : "fp32 log-sum-exp", op->name, got, want, c.aux_floats, tol);
        free(want);
        free(got);
    }
    /* backward-input, backward-weight, and backward-input writing what brg__op_writes_fresh names */
    for (int part = 0; part < 3; part++) {
        int params = part == 1, fresh = part == 2;
        backward_part(&cpu, op, batch, &h, params, fresh);
        backward_part(&gpu, op, batch, &h, params, fresh);
        for (int q = 0; q < op->n_inputs; q++) {
            if (!cpu.din[q]) continue;
            int64_t n = h.n_in[q];
            float *w = malloc((size_t)n * sizeof(float)), *g2 = malloc((size_t)n * sizeof(float));
            download(&cpu, w, cpu.din[q], n, 0);
            download(&gpu, g2, gpu.din[q], n, in_act_type(op->inputs[q]));
            char what[64];
            snprintf(what, sizeof what, "%s backward-%s of input %d", bf16 ? "bf16" : "fp32",
                     params ? "weight" : fresh ? "input (written)" : "input", q);
            compare(what, op->name, g2, w, n, tol);
            free(w);
            free(g2);
        }
    }
    BRG_ASSERT_OK(brg__cuda_backend_status(gpu.be, msg), msg);
    side_free(&cpu);
    side_free(&gpu);
    free_values(&h);
    brg__backend_destroy(cpu.be);
    brg__backend_destroy(gpu.be);
}

static void check_op_both(brg_graph *g, int64_t op_index, int64_t batch, int64_t vocab) {
    CU_ASSERT_EQUAL_FATAL(brg_graph_status(g), BRG_OK);
    check_op(g, op_index, batch, 0, vocab);
    check_op(g, op_index, batch, 1, vocab);
}

static brg_graph *new_graph(void) {
    brg_graph *g = NULL;
    CU_ASSERT_EQUAL_FATAL(brg_graph_create(&g), BRG_OK);
    return g;
}

static brg_tensor *input3(brg_graph *g, const char *name, int64_t a, int64_t b) {
    return brg_input(g, name, BRG_F32, 3, (int64_t[]){BRG_BATCH, a, b});
}

static void test_embedding(void) {
    brg_graph *g = new_graph();
    brg_tensor *tok = brg_input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, 9});
    brg_embedding(g, tok, 50, 24, "wte");
    check_op_both(g, 0, 3, 50);
    brg_graph_destroy(g);
}

static void test_linear(void) {
    brg_graph *g = new_graph();
    brg_tensor *x = input3(g, "x", 7, 40);
    brg_linear(g, x, 24, "fc");
    check_op_both(g, 0, 2, 0);
    brg_graph_destroy(g);
}

static void test_linear_odd_sizes(void) {
    brg_graph *g = new_graph();
    brg_tensor *x = input3(g, "x", 5, 13);
    brg_linear(g, x, 11, "fc");
    check_op_both(g, 0, 3, 0);
    brg_graph_destroy(g);
}

/* linear then GELU: on the CUDA backend one GEMM with the bias + GELU epilogue writes both outputs. */
static void check_linear_gelu(int bf16) {
    brg_graph *g = new_graph();
    brg_tensor *x = input3(g, "x", 16, 32);
    brg_layer_begin(g, "mlp"); /* fused only within a layer (a stage boundary never falls between) */
    brg_tensor *pre = brg_linear(g, x, 64, "fc");
    brg_gelu(g, pre, "act");
    brg_layer_end(g);
    CU_ASSERT_EQUAL_FATAL(brg_graph_status(g), BRG_OK);
    const brg__op *lin = brg__graph_op(g, 0), *act = brg__graph_op(g, 1);
    int64_t batch = 2;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    side cpu = {0}, gpu = {0};
    gpu.bf16 = bf16;
    BRG_ASSERT_OK(brg__backend_cpu_create(&cpu.be, msg), msg);
    BRG_ASSERT_OK(brg__backend_cuda_create(&gpu.be, 0, bf16, msg), msg);
    host_values h;
    make_values(lin, batch, bf16, 0, &h);
    /* Larger biases than the zero initialization, so the epilogue's bias shows. */
    for (int64_t i = 0; i < h.n_in[2]; i++) h.in[2][i] = 0.5f * uniform();
    side_setup(&cpu, lin, batch, &h);
    side_setup(&gpu, lin, batch, &h);
    side *sides[2] = {&cpu, &gpu};
    void *act_out[2];
    for (int k = 0; k < 2; k++) {
        side *s = sides[k];
        brg__op_call c = call_of(s, lin, batch, msg);
        BRG_ASSERT_OK(s->be->vt->forward(s->be, &c), msg);
        act_out[k] = s->be->vt->alloc(s->be, (size_t)h.n_out * element_size(s, 1));
        brg__op_call c2 = {.op = act, .batch = batch, .out = act_out[k], .msg = msg};
        c2.in[0] = s->out;
        BRG_ASSERT_OK(s->be->vt->forward(s->be, &c2), msg);
    }
    float *want = malloc((size_t)h.n_out * sizeof(float)), *got = malloc((size_t)h.n_out * sizeof(float));
    download(&cpu, want, cpu.out, h.n_out, 0);
    download(&gpu, got, gpu.out, h.n_out, 1);
    compare(bf16 ? "bf16 fused pre-activation" : "fp32 fused pre-activation", lin->name, got, want, h.n_out,
            bf16 ? TOL_BF16 : TOL_FP32);
    download(&cpu, want, act_out[0], h.n_out, 0);
    download(&gpu, got, act_out[1], h.n_out, 1);
    /* cuBLASLt's GELU is the same tanh form computed its own way: a little more room in fp32. */
    compare(bf16 ? "bf16 fused GELU" : "fp32 fused GELU", act->name, got, want, h.n_out, bf16 ? TOL_BF16 : 1e-3);
    free(want);
    free(got);
    cpu.be->vt->free(cpu.be, act_out[0]);
    gpu.be->vt->free(gpu.be, act_out[1]);
    side_free(&cpu);
    side_free(&gpu);
    free_values(&h);
    brg__backend_destroy(cpu.be);
    brg__backend_destroy(gpu.be);
    brg_graph_destroy(g);
}

static void test_linear_gelu_fused(void) {
    check_linear_gelu(0);
    check_linear_gelu(1);
}

/* Backward of linear -> GELU -> linear with fresh input gradients, as the runtime calls it: on the CUDA
 * backend the second linear's input gradient waits, and one GEMM with the DGELU epilogue writes the
 * GELU's input gradient; the GELU's output gradient is never formed (it is NaN here, and stays unread). */
static void check_linear_dgelu(int bf16) {
    brg_graph *g = new_graph();
    brg_tensor *x = input3(g, "x", 16, 32);
    brg_layer_begin(g, "mlp");
    brg_tensor *pre = brg_linear(g, x, 64, "fc");
    brg_tensor *act = brg_gelu(g, pre, "act");
    brg_linear(g, act, 24, "proj");
    brg_layer_end(g);
    CU_ASSERT_EQUAL_FATAL(brg_graph_status(g), BRG_OK);
    const brg__op *ops[3] = {brg__graph_op(g, 0), brg__graph_op(g, 1), brg__graph_op(g, 2)};
    int64_t batch = 2, rows = batch * 16;
    int64_t n_x = rows * 32, n_pre = rows * 64, n_y = rows * 24;
    int64_t n_w[2] = {64 * 32, 24 * 64}, n_b[2] = {64, 24};
    float *hx = malloc((size_t)n_x * sizeof(float)), *hdy = malloc((size_t)n_y * sizeof(float));
    float *hw[2], *hb[2], *nan_pre = malloc((size_t)n_pre * sizeof(float));
    for (int64_t i = 0; i < n_x; i++) hx[i] = round_to(uniform(), bf16);
    for (int64_t i = 0; i < n_y; i++) hdy[i] = round_to(uniform(), bf16);
    for (int64_t i = 0; i < n_pre; i++) nan_pre[i] = NAN;
    for (int l = 0; l < 2; l++) {
        hw[l] = malloc((size_t)n_w[l] * sizeof(float));
        hb[l] = malloc((size_t)n_b[l] * sizeof(float));
        for (int64_t i = 0; i < n_w[l]; i++) hw[l][i] = 0.3f * uniform();
        for (int64_t i = 0; i < n_b[l]; i++) hb[l][i] = 0.5f * uniform();
    }
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    side sides[2] = {{0}, {0}};
    sides[1].bf16 = bf16;
    BRG_ASSERT_OK(brg__backend_cpu_create(&sides[0].be, msg), msg);
    BRG_ASSERT_OK(brg__backend_cuda_create(&sides[1].be, 0, bf16, msg), msg);
    float *got[2][3]; /* [side][the GELU's input gradient, proj's weight gradient, proj's bias gradient] */
    for (int k = 0; k < 2; k++) {
        side *sd = &sides[k];
        brg__backend *be = sd->be;
        void *xbuf = upload(sd, hx, NULL, n_x, 1), *dout_y = upload(sd, hdy, NULL, n_y, 1);
        void *w[2], *bias[2];
        for (int l = 0; l < 2; l++) {
            w[l] = upload(sd, hw[l], NULL, n_w[l], 0);
            bias[l] = upload(sd, hb[l], NULL, n_b[l], 0);
        }
        void *pre_out = be->vt->alloc(be, (size_t)n_pre * element_size(sd, 1));
        void *act_out = be->vt->alloc(be, (size_t)n_pre * element_size(sd, 1));
        void *y = be->vt->alloc(be, (size_t)n_y * element_size(sd, 1));
        void *d_pre = upload(sd, nan_pre, NULL, n_pre, 1), *d_act = upload(sd, nan_pre, NULL, n_pre, 1);
        void *dw = be->vt->alloc(be, (size_t)n_w[1] * sizeof(float));
        void *db = be->vt->alloc(be, (size_t)n_b[1] * sizeof(float));
        brg__op_call fc = {.op = ops[0], .batch = batch, .in = {xbuf, w[0], bias[0]}, .out = pre_out, .msg = msg};
        brg__op_call ge = {.op = ops[1], .batch = batch, .in = {pre_out}, .out = act_out, .dout = d_act, .msg = msg};
        brg__op_call pr = {.op = ops[2], .batch = batch, .in = {act_out, w[1], bias[1]}, .out = y, .dout = dout_y, .msg = msg};
        BRG_ASSERT_OK(be->vt->forward(be, &fc), msg);
        BRG_ASSERT_OK(be->vt->forward(be, &ge), msg);
        BRG_ASSERT_OK(be->vt->forward(be, &pr), msg);
        pr.din[0] = d_act, pr.din[1] = dw, pr.din[2] = db, pr.din_fresh = 1u;
        ge.din[0] = d_pre, ge.din_fresh = 1u;
        BRG_ASSERT_OK(be->vt->backward(be, &pr), msg);
        BRG_ASSERT_OK(be->vt->backward(be, &ge), msg);
        int64_t counts[3] = {n_pre, n_w[1], n_b[1]};
        void *ptrs[3] = {d_pre, dw, db};
        for (int q = 0; q < 3; q++) {
            got[k][q] = malloc((size_t)counts[q] * sizeof(float));
            download(sd, got[k][q], ptrs[q], counts[q], q == 0);
        }
        void *all[] = {xbuf, dout_y, w[0], w[1], bias[0], bias[1], pre_out, act_out, y, d_pre, d_act, dw, db};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) be->vt->free(be, all[i]);
    }
    /* cuBLASLt's GELU derivative is the same tanh form computed its own way: a little more room in fp32. */
    compare(bf16 ? "bf16 fused input gradient" : "fp32 fused input gradient", "act", got[1][0], got[0][0], n_pre,
            bf16 ? TOL_BF16 : 1e-3);
    compare(bf16 ? "bf16 weight gradient" : "fp32 weight gradient", "proj", got[1][1], got[0][1], n_w[1],
            bf16 ? TOL_BF16 : TOL_FP32);
    compare(bf16 ? "bf16 bias gradient" : "fp32 bias gradient", "proj", got[1][2], got[0][2], n_b[1],
            bf16 ? TOL_BF16 : TOL_FP32);
    BRG_ASSERT_OK(brg__cuda_backend_status(sides[1].be, msg), msg);
    for (int k = 0; k < 2; k++) {
        for (int q = 0; q < 3; q++) free(got[k][q]);
        brg__backend_destroy(sides[k].be);
    }
    for (int l = 0; l < 2; l++) free(hw[l]), free(hb[l]);
    free(hx);
    free(hdy);
    free(nan_pre);
    brg_graph_destroy(g);
}

static void test_linear_dgelu_fused(void) {
    check_linear_dgelu(0);
    check_linear_dgelu(1);
}

static void test_matmul_head(void) { /* (B, T, C) x w^T, w a (V, C) parameter: the tied GPT head */
    brg_graph *g = new_graph();
    brg_tensor *x = input3(g, "x", 6, 16);
    brg_tensor *w = brg_param(g, "w", 2, (int64_t[]){21, 16}, (brg_init){BRG_INIT_NORMAL, 0.5f});
    brg_matmul(g, x, w, BRG_MATMUL_TRANSPOSE_B, "head");
    check_op_both(g, 0, 2, 0);
    brg_graph_destroy(g);
}

static void test_matmul_batched(void) { /* (B, M, K) x (B, K, N), both activations */
    brg_graph *g = new_graph();
    brg_tensor *a = input3(g, "a", 5, 8), *b = input3(g, "b", 8, 6);
    brg_matmul(g, a, b, BRG_MATMUL_NONE, "mm");
    check_op_both(g, 0, 3, 0);
    brg_graph_destroy(g);
}

static void test_matmul_transposed_a_shared_b(void) { /* (B, K, M)^T x (K, N) parameter: a loop for db */
    brg_graph *g = new_graph();
    brg_tensor *a = input3(g, "a", 8, 5);
    brg_tensor *w = brg_param(g, "w", 2, (int64_t[]){8, 6}, (brg_init){BRG_INIT_NORMAL, 0.5f});
    brg_matmul(g, a, w, BRG_MATMUL_TRANSPOSE_A, "mm");
    check_op_both(g, 0, 3, 0);
    brg_graph_destroy(g);
}

static void test_matmul_both_transposed(void) {
    brg_graph *g = new_graph();
    brg_tensor *a = input3(g, "a", 8, 5), *b = input3(g, "b", 6, 8);
    brg_matmul(g, a, b, BRG_MATMUL_TRANSPOSE_A | BRG_MATMUL_TRANSPOSE_B, "mm");
    check_op_both(g, 0, 2, 0);
    brg_graph_destroy(g);
}

/* Element counts and row lengths that are multiples of 8 run the 16-byte vector kernels, the others the
 * one-element ones: each element-wise, norm and loss test takes both. */
static void test_add(void) {
    const int64_t shapes[][2] = {{7, 12}, {4, 16}};
    for (int i = 0; i < 2; i++) {
        brg_graph *g = new_graph();
        brg_tensor *a = input3(g, "a", shapes[i][0], shapes[i][1]), *b = input3(g, "b", shapes[i][0], shapes[i][1]);
        brg_add(g, a, b, "sum");
        check_op_both(g, 0, 3, 0);
        brg_graph_destroy(g);
    }
}

static void test_add_broadcast_parameter(void) { /* + wpe (T, C), broadcast over the batch */
    const int64_t shapes[][2] = {{7, 12}, {8, 16}};
    for (int i = 0; i < 2; i++) {
        brg_graph *g = new_graph();
        brg_tensor *a = input3(g, "a", shapes[i][0], shapes[i][1]);
        brg_tensor *p = brg_param(g, "wpe", 2, (int64_t[]){shapes[i][0], shapes[i][1]},
                                  (brg_init){BRG_INIT_NORMAL, 0.5f});
        brg_add(g, a, p, "wpe_add");
        check_op_both(g, 0, 4, 0);
        brg_graph_destroy(g);
    }
}

static void test_layernorm(void) {
    const int64_t channels[] = {48, 20, 768};
    for (int i = 0; i < 3; i++) {
        brg_graph *g = new_graph();
        brg_tensor *x = input3(g, "x", 9, channels[i]);
        brg_layernorm(g, x, 1e-5f, "ln");
        check_op_both(g, 0, 3, 0);
        brg_graph_destroy(g);
    }
}

static void test_gelu_relu(void) {
    const int64_t shapes[][2] = {{9, 20}, {5, 7}};
    for (int i = 0; i < 2; i++) {
        brg_graph *g = new_graph();
        brg_tensor *x = input3(g, "x", shapes[i][0], shapes[i][1]);
        brg_gelu(g, x, "gelu");
        brg_relu(g, x, "relu");
        check_op_both(g, 0, 2, 0);
        check_op_both(g, 1, 2, 0);
        brg_graph_destroy(g);
    }
}

static void test_attention(void) {
    /* The fused kernel's cases: a head smaller than its template's 32 (tiles zero past it), T not a multiple
     * of the 64-row tiles, GPT-2's head size at T = 1024, and the largest head (128). */
    struct {
        int64_t seq, channels, heads, batch;
    } cases[] = {{16, 32, 4, 2}, {133, 96, 2, 2}, {1024, 128, 2, 1}, {200, 256, 2, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        brg_graph *g = new_graph();
        brg_tensor *qkv = input3(g, "qkv", cases[i].seq, 3 * cases[i].channels);
        brg_causal_attention(g, qkv, cases[i].heads, "attn");
        check_op_both(g, 0, cases[i].batch, 0); /* bf16 on the tensor cores */
        setenv("BRG_CUDA_ATTENTION", "simt", 1); /* bf16 on the SIMT kernels too (read as a backend is made) */
        check_op(g, 0, cases[i].batch, 1, 0);
        unsetenv("BRG_CUDA_ATTENTION");
        brg_graph_destroy(g);
    }
    /* A head past the kernel's 128 is refused with its size named. */
    brg_graph *g = new_graph();
    brg_tensor *qkv = input3(g, "qkv", 8, 3 * 160);
    brg_causal_attention(g, qkv, 1, "attn");
    brg__backend *be = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(brg__backend_cuda_create(&be, 0, 0, msg), msg);
    if (be) {
        side s = {.be = be};
        host_values h;
        const brg__op *op = brg__graph_op(g, 0);
        make_values(op, 1, 0, 0, &h);
        side_setup(&s, op, 1, &h);
        brg__op_call call = call_of(&s, op, 1, msg);
        BRG_ASSERT_STATUS(be->vt->forward(be, &call), BRG_ERR_UNSUPPORTED);
        BRG_ASSERT_CONTAINS(msg, "head size 160");
        side_free(&s);
        free_values(&h);
        brg__backend_destroy(be);
    }
    brg_graph_destroy(g);
}

static void test_cross_entropy(void) {
    const int64_t vocab[] = {37, 64, 5008}; /* 5008: more than one 4096-element sweep of a block */
    for (int i = 0; i < 3; i++) {
        brg_graph *g = new_graph();
        brg_tensor *logits = input3(g, "logits", 6, vocab[i]);
        brg_tensor *targets = brg_input(g, "targets", BRG_I32, 2, (int64_t[]){BRG_BATCH, 6});
        brg_cross_entropy(g, logits, targets, "loss");
        check_op_both(g, 0, 3, vocab[i]);
        brg_graph_destroy(g);
    }
}

/* A token outside the vocabulary is reported, naming the op, by a later call. */
static void test_bad_token_reported(void) {
    brg_graph *g = new_graph();
    brg_tensor *tok = brg_input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, 4});
    brg_embedding(g, tok, 10, 8, "wte");
    const brg__op *op = brg__graph_op(g, 0);
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__backend *be = NULL;
    BRG_ASSERT_OK(brg__backend_cuda_create(&be, 0, 0, msg), msg);
    int32_t tokens[4] = {1, 2, 10, 3};
    void *t = be->vt->alloc(be, sizeof tokens), *w = be->vt->alloc(be, 80 * sizeof(float));
    void *out = be->vt->alloc(be, 32 * sizeof(float));
    be->vt->upload(be, t, tokens, sizeof tokens);
    brg__op_call call = {.op = op, .batch = 1, .out = out, .msg = msg};
    call.in[0] = t;
    call.in[1] = w;
    (void)be->vt->forward(be, &call); /* the check runs on the device; the report comes later */
    float host[32];
    be->vt->download(be, host, out, sizeof host);
    BRG_ASSERT_STATUS(be->vt->forward(be, &call), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(msg, "token 10 at position 2");
    BRG_ASSERT_CONTAINS(msg, "wte");
    /* Reported once, not kept: the second forward's own report drained, good tokens then pass. */
    be->vt->download(be, host, out, sizeof host);
    (void)be->vt->status(be, msg);
    int32_t good[4] = {1, 2, 3, 4};
    be->vt->upload(be, t, good, sizeof good);
    BRG_ASSERT_OK(be->vt->forward(be, &call), msg);
    be->vt->download(be, host, out, sizeof host);
    BRG_ASSERT_OK(be->vt->status(be, msg), msg);
    BRG_ASSERT_OK(be->vt->forward(be, &call), msg);
    brg__backend_destroy(be);
    brg_graph_destroy(g);
}

/* AdamW on n elements: the CPU's update, bit for bit within 1e-6, and the bf16 copy rounded from it. */
static void check_adamw(int n) {
    size_t bytes = (size_t)n * sizeof(float);
    float *p_cpu = malloc(bytes), *g = malloc(bytes), *m_cpu = malloc(bytes), *v_cpu = malloc(bytes);
    float *p_gpu = malloc(bytes), *m_gpu = malloc(bytes), *v_gpu = malloc(bytes);
    uint16_t *shadow = malloc((size_t)n * sizeof(uint16_t));
    for (int i = 0; i < n; i++) {
        p_cpu[i] = 0.5f * uniform();
        g[i] = 0.5f * uniform();
        m_cpu[i] = v_cpu[i] = 0.0f;
    }
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    float *dp = NULL, *dg = NULL, *dm = NULL, *dv = NULL;
    uint16_t *dshadow = NULL;
    BRG_ASSERT_OK(brg__cuda_malloc((void **)&dp, bytes, msg), msg);
    BRG_ASSERT_OK(brg__cuda_malloc((void **)&dg, bytes, msg), msg);
    BRG_ASSERT_OK(brg__cuda_malloc((void **)&dm, bytes, msg), msg);
    BRG_ASSERT_OK(brg__cuda_malloc((void **)&dv, bytes, msg), msg);
    BRG_ASSERT_OK(brg__cuda_malloc((void **)&dshadow, (size_t)n * sizeof(uint16_t), msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_device(dp, p_cpu, bytes, msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_device(dg, g, bytes, msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_device(dm, m_cpu, bytes, msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_device(dv, v_cpu, bytes, msg), msg);
    for (int step = 1; step <= 3; step++) {
        brg__cpu_adamw(p_cpu, g, m_cpu, v_cpu, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step);
        BRG_ASSERT_OK(brg__cuda_adamw(dp, dg, dm, dv, dshadow, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, NULL, msg),
                      msg);
    }
    BRG_ASSERT_OK(brg__cuda_synchronize(msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_host(p_gpu, dp, bytes, msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_host(m_gpu, dm, bytes, msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_host(v_gpu, dv, bytes, msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_host(shadow, dshadow, (size_t)n * sizeof(uint16_t), msg), msg);
    double worst = 0, worst_shadow = 0;
    for (int i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)p_gpu[i] - p_cpu[i]));
        worst = fmax(worst, fabs((double)m_gpu[i] - m_cpu[i]));
        worst = fmax(worst, fabs((double)v_gpu[i] - v_cpu[i]));
        worst_shadow =
            fmax(worst_shadow, fabs((double)brg__bf16_to_float(shadow[i]) - p_gpu[i]) / (fabs(p_gpu[i]) + 1e-30));
    }
    BRG_ASSERT_NEAR(worst, 0.0, 1e-6);
    BRG_ASSERT_NEAR(worst_shadow, 0.0, 1.0 / 256);
    brg__cuda_free(dp);
    brg__cuda_free(dg);
    brg__cuda_free(dm);
    brg__cuda_free(dv);
    brg__cuda_free(dshadow);
    float *hosts[] = {p_cpu, g, m_cpu, v_cpu, p_gpu, m_gpu, v_gpu};
    for (size_t k = 0; k < sizeof hosts / sizeof hosts[0]; k++) free(hosts[k]);
    free(shadow);
}

/* 4099 elements take the one-element kernel, 4096 the 16-byte vector one. */
static void test_adamw_matches_cpu(void) {
    check_adamw(4099);
    check_adamw(4096);
}

/* Memory: zero-filled blocks, statistics, element sizes; sums of squares in double. */
static void test_backend_memory_and_helpers(void) {
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__backend *be = NULL;
    BRG_ASSERT_OK(brg__backend_cuda_create(&be, 0, 1, msg), msg);
    CU_ASSERT_EQUAL(be->vt->element_bytes(be, BRG_F32), 2);
    CU_ASSERT_EQUAL(be->vt->element_bytes(be, BRG_I32), 4);
    int64_t before = be->vt->allocated(be);
    enum { N = 100003 };
    float *x = be->vt->alloc(be, N * sizeof(float)), *y = be->vt->alloc(be, N * sizeof(float));
    CU_ASSERT(be->vt->allocated(be) >= before + 2 * (int64_t)(N * sizeof(float)));
    static float host[N];
    be->vt->download(be, host, x, sizeof host);
    int zeros = 1;
    for (int i = 0; i < N; i++) zeros &= host[i] == 0.0f;
    CU_ASSERT(zeros);
    double want = 0;
    for (int i = 0; i < N; i++) {
        host[i] = uniform();
        want += (double)host[i] * (double)host[i];
    }
    be->vt->upload(be, x, host, sizeof host);
    be->vt->copy(be, y, x, sizeof host);
    be->vt->accumulate(be, y, x, N); /* 2x */
    be->vt->scale(be, y, N, 0.5f);   /* x */
    double got = be->vt->sum_squares(be, y, N);
    BRG_ASSERT_NEAR(got / want, 1.0, 1e-6);
    /* A second run of the same calls is served by one batched pass: the same value. */
    be->vt->zero(be, x, 4);
    CU_ASSERT_EQUAL(be->vt->sum_squares(be, y, N), got);
    int64_t held = be->vt->allocated(be), block = (N * sizeof(float) + 255) / 256 * 256;
    be->vt->free(be, x);
    be->vt->free(be, y);
    BRG_ASSERT_EQ_INT(be->vt->allocated(be), held - 2 * block);
    BRG_ASSERT_OK(brg__cuda_backend_status(be, msg), msg);
    brg__backend_destroy(be);
}

/* ---- training ---- */

#define SMALL_GPT "gpt:layers=4,hidden=64,heads=4,vocab=64,seq=32"

typedef struct run {
    brg_status status;
    double losses[4];
    uint64_t fingerprint;
    float *wte;
    char error[BRG_ERROR_MESSAGE_MAX];
} run;

/* Data-parallel replicas of the runs below (the same global batch of 4 micro-batches), ZeRO-1. */
static int train_replicas = 1, train_zero = 0;

static run train(const char *spec, brg_backend_kind backend, brg_precision precision, int stages, int steps) {
    run r;
    memset(&r, 0, sizeof r);
    brg_model_config cfg;
    brg_error err = {0};
    brg_graph *g = NULL;
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    r.status = brg_model_parse(spec, &cfg, &err);
    if (r.status == BRG_OK) r.status = brg_model_build(&cfg, &g, &err);
    if (r.status == BRG_OK) r.status = brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 7, &err);
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.micro_batch = 2;
    o.micro_batches = 4 / train_replicas;
    o.data_parallel = train_replicas;
    o.zero = train_zero;
    o.bucket_bytes = 16384; /* several buckets, posted during backward */
    o.stages = stages;
    o.backend = backend;
    o.precision = precision;
    o.timeout_seconds = 60;
    if (r.status == BRG_OK) r.status = brg_trainer_create(&t, g, &o, &err);
    if (r.status != BRG_OK) snprintf(r.error, sizeof r.error, "%s", err.message);
    for (int s = 0; s < steps && r.status == BRG_OK; s++) {
        brg_step_stats st;
        r.status = brg_trainer_step(t, d, &st);
        if (r.status != BRG_OK) snprintf(r.error, sizeof r.error, "%s", brg_trainer_last_error(t));
        r.losses[s] = st.loss;
    }
    if (r.status == BRG_OK) r.status = brg_trainer_fingerprint(t, &r.fingerprint);
    if (r.status == BRG_OK) {
        int64_t n = cfg.vocab * cfg.hidden;
        r.wte = malloc((size_t)n * sizeof(float));
        r.status = brg_trainer_get_param(t, "wte.weight", r.wte, n);
    }
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    brg_graph_destroy(g);
    return r;
}

static void test_gpt_step_matches_cpu(void) {
    run cpu = train(SMALL_GPT, BRG_BACKEND_CPU, BRG_PRECISION_FP32, 1, 3);
    run fp32 = train(SMALL_GPT, BRG_BACKEND_CUDA, BRG_PRECISION_FP32, 1, 3);
    run bf16 = train(SMALL_GPT, BRG_BACKEND_CUDA, BRG_PRECISION_BF16, 1, 3);
    BRG_ASSERT_OK(cpu.status, cpu.error);
    BRG_ASSERT_OK(fp32.status, fp32.error);
    BRG_ASSERT_OK(bf16.status, bf16.error);
    for (int s = 0; s < 3 && cpu.status == BRG_OK && fp32.status == BRG_OK && bf16.status == BRG_OK; s++) {
        BRG_ASSERT_NEAR(fp32.losses[s], cpu.losses[s], 1e-4 * cpu.losses[s]);
        BRG_ASSERT_NEAR(bf16.losses[s], cpu.losses[s], 2e-2 * cpu.losses[s]);
    }
    if (cpu.wte && fp32.wte) {
        double worst = 0;
        for (int64_t i = 0; i < 64 * 64; i++) worst = fmax(worst, fabs((double)fp32.wte[i] - cpu.wte[i]));
        /* Three AdamW steps of lr 1e-3 move a weight by up to ~3e-3; the two agree far closer. */
        BRG_ASSERT_NEAR(worst, 0.0, 1e-3);
    }
    free(cpu.wte);
    free(fp32.wte);
    free(bf16.wte);
}

/* Stages on one GPU hand tensors over by device copies; kernels are deterministic: the same bits. */
static void test_pipeline_on_one_gpu_matches_one_stage(void) {
    for (int p = 0; p < 2; p++) {
        brg_precision precision = p ? BRG_PRECISION_BF16 : BRG_PRECISION_FP32;
        run one = train(SMALL_GPT, BRG_BACKEND_CUDA, precision, 1, 2);
        BRG_ASSERT_OK(one.status, one.error);
        for (int stages = 2; stages <= 4; stages += 2) {
            run many = train(SMALL_GPT, BRG_BACKEND_CUDA, precision, stages, 2);
            BRG_ASSERT_OK(many.status, many.error);
            if (many.fingerprint != one.fingerprint)
                fprintf(stderr, "%s, pp=%d: fingerprint %016llx, pp=1 %016llx (losses %.9g vs %.9g)\n",
                        p ? "bf16" : "fp32", stages, (unsigned long long)many.fingerprint,
                        (unsigned long long)one.fingerprint, many.losses[1], one.losses[1]);
            CU_ASSERT(many.fingerprint == one.fingerprint);
            free(many.wte);
        }
        free(one.wte);
    }
}

/* Two replicas (pp 1 and 2, ZeRO-1 off and on) on the GPUs there are (ranks sharing a GPU copy): the
 * replicas agree (the fingerprint checks them) and the losses are one replica's within 1e-5 (the sums
 * across replicas add in another order). */
static void test_data_parallel_matches_one_replica(void) {
    run one = train(SMALL_GPT, BRG_BACKEND_CUDA, BRG_PRECISION_FP32, 1, 3);
    BRG_ASSERT_OK(one.status, one.error);
    for (int stages = 1; stages <= 2; stages++)
        for (int zero = 0; zero <= 1; zero++) {
            train_replicas = 2;
            train_zero = zero;
            run dp = train(SMALL_GPT, BRG_BACKEND_CUDA, BRG_PRECISION_FP32, stages, 3);
            train_replicas = 1;
            train_zero = 0;
            BRG_ASSERT_OK(dp.status, dp.error);
            for (int s = 0; s < 3 && dp.status == BRG_OK && one.status == BRG_OK; s++)
                BRG_ASSERT_NEAR(dp.losses[s], one.losses[s], 1e-5 * one.losses[s]);
            free(dp.wte);
        }
    free(one.wte);
}

/* A stage that fails mid-step ends the step with its error on every rank: no hang. */
static void test_failed_stage_ends_the_step(void) {
    brg_model_config cfg;
    brg_error err = {0};
    brg_graph *g = NULL;
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    BRG_ASSERT_OK(brg_model_parse(SMALL_GPT, &cfg, &err), err.message);
    BRG_ASSERT_OK(brg_model_build(&cfg, &g, &err), err.message);
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 7, &err), err.message);
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.micro_batch = 2;
    o.micro_batches = 4;
    o.stages = 2;
    o.backend = BRG_BACKEND_CUDA;
    o.timeout_seconds = 30;
    BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
    if (t) {
        brg__trainer_inject_failure(t, 1, 2);
        brg_step_stats st;
        time_t start = time(NULL);
        BRG_ASSERT_STATUS(brg_trainer_step(t, d, &st), BRG_ERR_BACKEND);
        BRG_ASSERT_CONTAINS(brg_trainer_last_error(t), "injected");
        CU_ASSERT(time(NULL) - start < 20);
    }
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    brg_graph_destroy(g);
}

/* ---- the transport ---- */

typedef struct endpoint_fixture {
    brg__nccl_fabric *fabric;
    brg__backend *be[2];
    brg__transport *tp[2];
} endpoint_fixture;

static int fixture_open(endpoint_fixture *fx, int ranks, const int *devices, double timeout) {
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    memset(fx, 0, sizeof *fx);
    BRG_ASSERT_OK(brg__nccl_fabric_create(&fx->fabric, ranks, devices, timeout, msg), msg);
    if (!fx->fabric) return 0;
    for (int r = 0; r < ranks; r++) {
        BRG_ASSERT_OK(brg__backend_cuda_create(&fx->be[r], devices[r], 0, msg), msg);
        BRG_ASSERT_OK(brg__nccl_fabric_attach(fx->fabric, r, fx->be[r], msg), msg);
        fx->tp[r] = brg__nccl_endpoint(fx->fabric, r);
    }
    return 1;
}

static void fixture_close(endpoint_fixture *fx) {
    for (int r = 0; r < 2; r++) brg__backend_destroy(fx->be[r]);
    brg__nccl_fabric_destroy(fx->fabric);
}

/* NCCL lets a rank send to itself inside one group: a send and a receive posted back to back. */
static void test_nccl_send_to_self(void) {
    endpoint_fixture fx;
    if (!fixture_open(&fx, 1, (int[]){0}, 30)) return;
    brg__backend *be = fx.be[0];
    brg__transport *tp = fx.tp[0];
    enum { N = 1 << 16 };
    static float host[N], back[N];
    for (int i = 0; i < N; i++) host[i] = (float)i;
    float *src = be->vt->alloc(be, sizeof host), *dst = be->vt->alloc(be, sizeof host);
    be->vt->upload(be, src, host, sizeof host);
    brg__request *s = NULL, *r = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(tp->vt->post_send(tp, 0, 42, src, sizeof host, &s), "post_send");
    BRG_ASSERT_OK(tp->vt->post_recv(tp, 0, 42, dst, sizeof host, &r), "post_recv");
    BRG_ASSERT_OK(tp->vt->wait(tp, s, msg), msg);
    BRG_ASSERT_OK(tp->vt->wait(tp, r, msg), msg);
    be->vt->download(be, back, dst, sizeof back);
    CU_ASSERT(memcmp(host, back, sizeof host) == 0);
    /* A receive that names another tag is an error naming both, not a silent mix-up. */
    BRG_ASSERT_OK(tp->vt->post_send(tp, 0, 1, src, 64, &s), "post_send");
    BRG_ASSERT_OK(tp->vt->post_recv(tp, 0, 2, dst, 64, &r), "post_recv");
    BRG_ASSERT_STATUS(tp->vt->wait(tp, s, msg), BRG_ERR_TRANSPORT);
    BRG_ASSERT_CONTAINS(msg, "tag");
    tp->vt->wait(tp, r, msg);
    be->vt->free(be, src);
    be->vt->free(be, dst);
    fixture_close(&fx);
}

static brg_status bcast_alone(void *ctx, void *buf, size_t bytes, int root, char *msg) {
    (void)ctx, (void)buf, (void)bytes, (void)root, (void)msg;
    return BRG_OK; /* one rank: nothing to hand out */
}

/* The one-rank-per-process fabric (as under mpirun), here as a group of one: the unique id through the
 * broadcast callback, the non-blocking communicator, a transfer to self through it; a local rank past
 * the node's GPUs is refused before NCCL sees it. */
static void test_nccl_rank_per_process(void) {
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__nccl_fabric *f = NULL;
    BRG_ASSERT_OK(brg__nccl_fabric_create_rank(&f, 0, 1, 0, bcast_alone, NULL, 30, msg), msg);
    if (!f) return;
    brg__backend *be = NULL;
    BRG_ASSERT_OK(brg__backend_cuda_create(&be, 0, 0, msg), msg);
    BRG_ASSERT_OK(brg__nccl_fabric_attach(f, 0, be, msg), msg);
    brg__transport *tp = brg__nccl_endpoint(f, 0);
    CU_ASSERT(tp != NULL);
    enum { N = 1 << 16 };
    static float host[N], back[N];
    for (int i = 0; i < N; i++) host[i] = (float)(3 * i);
    float *src = be->vt->alloc(be, sizeof host), *dst = be->vt->alloc(be, sizeof host);
    be->vt->upload(be, src, host, sizeof host);
    brg__request *s = NULL, *r = NULL;
    BRG_ASSERT_OK(tp->vt->post_send(tp, 0, 7, src, sizeof host, &s), "post_send");
    BRG_ASSERT_OK(tp->vt->post_recv(tp, 0, 7, dst, sizeof host, &r), "post_recv");
    BRG_ASSERT_OK(tp->vt->wait(tp, s, msg), msg);
    BRG_ASSERT_OK(tp->vt->wait(tp, r, msg), msg);
    be->vt->download(be, back, dst, sizeof back);
    CU_ASSERT(memcmp(host, back, sizeof host) == 0);
    be->vt->free(be, src);
    be->vt->free(be, dst);
    brg__backend_destroy(be);
    brg__nccl_fabric_destroy(f);
    int visible = brg__cuda_device_count();
    f = NULL;
    BRG_ASSERT_STATUS(brg__nccl_fabric_create_rank(&f, 1, 2, visible, bcast_alone, NULL, 30, msg),
                      BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(msg, "one GPU per process");
    CU_ASSERT(f == NULL);
}

/* A receive nobody sends to ends in an error (a timeout, or NCCL's refusal of a lone receive from self),
 * its NCCL operation aborted, not in a hang. */
static void test_nccl_receive_times_out(void) {
    endpoint_fixture fx;
    if (!fixture_open(&fx, 1, (int[]){0}, 0.5)) return;
    brg__backend *be = fx.be[0];
    brg__transport *tp = fx.tp[0];
    void *dst = be->vt->alloc(be, 256);
    brg__request *r = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(tp->vt->post_recv(tp, 0, 9, dst, 256, &r), "post_recv");
    time_t start = time(NULL);
    brg_status s = tp->vt->wait(tp, r, msg);
    if (s != BRG_ERR_TIMEOUT && s != BRG_ERR_TRANSPORT)
        fprintf(stderr, "a lone receive ended with %s: %s\n", brg_status_name(s), msg);
    CU_ASSERT(s == BRG_ERR_TIMEOUT || s == BRG_ERR_TRANSPORT);
    CU_ASSERT(time(NULL) - start < 10);
    be->vt->free(be, dst);
    fixture_close(&fx);
}

typedef struct copy_job {
    brg__transport *tp;
    brg__backend *be;
    void *buf;
    size_t bytes;
    int send;
    uint64_t tag;
    brg_status status;
    char msg[BRG_ERROR_MESSAGE_MAX];
} copy_job;

static void *copy_worker(void *arg) {
    copy_job *j = arg;
    brg__request *req = NULL;
    int peer = 1 - j->tp->rank;
    j->status = j->send ? j->tp->vt->post_send(j->tp, peer, j->tag, j->buf, j->bytes, &req)
                        : j->tp->vt->post_recv(j->tp, peer, j->tag, j->buf, j->bytes, &req);
    if (j->status == BRG_OK) j->status = j->tp->vt->wait(j->tp, req, j->msg);
    return NULL;
}

/* Two ranks on one GPU: no NCCL (it refuses two ranks on one GPU); a device copy in order. */
static void test_two_ranks_on_one_gpu_copy(void) {
    endpoint_fixture fx;
    if (!fixture_open(&fx, 2, (int[]){0, 0}, 30)) return;
    enum { N = 12345 };
    static float host[N], back[N];
    for (int i = 0; i < N; i++) host[i] = uniform();
    void *src = fx.be[0]->vt->alloc(fx.be[0], sizeof host), *dst = fx.be[1]->vt->alloc(fx.be[1], sizeof host);
    fx.be[0]->vt->upload(fx.be[0], src, host, sizeof host);
    copy_job jobs[2] = {{fx.tp[0], fx.be[0], src, sizeof host, 1, 5, BRG_OK, ""},
                        {fx.tp[1], fx.be[1], dst, sizeof host, 0, 5, BRG_OK, ""}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, copy_worker, &jobs[k]);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    BRG_ASSERT_OK(jobs[0].status, jobs[0].msg);
    BRG_ASSERT_OK(jobs[1].status, jobs[1].msg);
    fx.be[1]->vt->download(fx.be[1], back, dst, sizeof back);
    CU_ASSERT(memcmp(host, back, sizeof host) == 0);
    /* No sender: the receive times out after the fabric's timeout. */
    brg__nccl_fabric_destroy(fx.fabric);
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(brg__nccl_fabric_create(&fx.fabric, 2, (int[]){0, 0}, 0.3, msg), msg);
    for (int r = 0; r < 2; r++) {
        BRG_ASSERT_OK(brg__nccl_fabric_attach(fx.fabric, r, fx.be[r], msg), msg);
        fx.tp[r] = brg__nccl_endpoint(fx.fabric, r);
    }
    brg__request *req = NULL;
    BRG_ASSERT_OK(fx.tp[1]->vt->post_recv(fx.tp[1], 0, 5, dst, sizeof host, &req), "post_recv");
    BRG_ASSERT_STATUS(fx.tp[1]->vt->wait(fx.tp[1], req, msg), BRG_ERR_TIMEOUT);
    BRG_ASSERT_CONTAINS(msg, "never posted");
    fx.be[0]->vt->free(fx.be[0], src);
    fx.be[1]->vt->free(fx.be[1], dst);
    fixture_close(&fx);
}

#endif

int main(int argc, char **argv) {
#if BRG_HAVE_CUDA
    if (brg__cuda_device_count() == 0) {
        printf("gpu: no CUDA device found (%s); skipping the GPU suite\n", brg__cuda_no_device_reason());
        return BRG_TEST_SKIP;
    }
    static const brg_test_case cases[] = {
        {"embedding", test_embedding},
        {"data_parallel_matches_one_replica", test_data_parallel_matches_one_replica},
        {"linear", test_linear},
        {"linear_odd_sizes", test_linear_odd_sizes},
        {"linear_gelu_fused", test_linear_gelu_fused},
        {"linear_dgelu_fused", test_linear_dgelu_fused},
        {"matmul_head", test_matmul_head},
        {"matmul_batched", test_matmul_batched},
        {"matmul_transposed_a_shared_b", test_matmul_transposed_a_shared_b},
        {"matmul_both_transposed", test_matmul_both_transposed},
        {"add", test_add},
        {"add_broadcast_parameter", test_add_broadcast_parameter},
        {"layernorm", test_layernorm},
        {"gelu_relu", test_gelu_relu},
        {"attention", test_attention},
        {"cross_entropy", test_cross_entropy},
        {"bad_token_reported", test_bad_token_reported},
        {"adamw_matches_cpu", test_adamw_matches_cpu},
        {"backend_memory_and_helpers", test_backend_memory_and_helpers},
        {"gpt_step_matches_cpu", test_gpt_step_matches_cpu},
        {"pipeline_on_one_gpu_matches_one_stage", test_pipeline_on_one_gpu_matches_one_stage},
        {"failed_stage_ends_the_step", test_failed_stage_ends_the_step},
        {"nccl_send_to_self", test_nccl_send_to_self},
        {"nccl_receive_times_out", test_nccl_receive_times_out},
        {"nccl_rank_per_process", test_nccl_rank_per_process},
        {"two_ranks_on_one_gpu_copy", test_two_ranks_on_one_gpu_copy},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "gpu", cases);
#else
    (void)argc;
    (void)argv;
    printf("gpu: brigade was built without CUDA; skipping the GPU suite\n");
    return BRG_TEST_SKIP;
#endif
}
