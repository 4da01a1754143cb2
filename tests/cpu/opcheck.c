/* check_op: one op's CPU kernels against the double reference, forward and both backward halves. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_test.h"
#include "harness.h"

#define FORWARD_TOLERANCE 1e-5
#define GRADIENT_TOLERANCE 1e-3
/* Finite differences of the double reference: central, step h (truncation error ~ h^2). */
#define FD_STEP 1e-4
/* Elements per input checked by finite differences (a seeded sample beyond that). */
#define FD_MAX_POINTS 300
/* What gradients are pre-filled with to check that backward accumulates. */
#define PREFILL 0.375f

double rel_error(double a, double b, double floor) {
    double scale = fmax(fmax(fabs(a), fabs(b)), floor);
    return scale > 0 ? fabs(a - b) / scale : 0.0;
}

typedef struct op_buffers {
    const brg__op *op;
    int64_t batch;
    int64_t in_numel[BRG__MAX_INPUTS];
    float *in[BRG__MAX_INPUTS];     /* F32 inputs */
    int32_t *ids[BRG__MAX_INPUTS];  /* I32 inputs */
    double *in_d[BRG__MAX_INPUTS];  /* F32 inputs as double, for the reference */
    int64_t out_numel;
    float *out, *aux, *scratch, *dout;
    double *ref_out, *proj;
    brg__op_costs costs;
} op_buffers;

static void fill_nan(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
}

/* Input values by op kind and operand: in the range each op sees in GPT-2, away from ReLU's kink. */
static void fill_input(const brg__op *op, int i, float *x, int32_t *ids, int64_t n, uint64_t *rng) {
    if (ids) {
        /* tokens index the embedding rows, targets the logits' last dimension */
        int64_t range = op->kind == BRG_OP_EMBEDDING ? op->inputs[1]->shape[0]
                                                     : op->inputs[0]->shape[op->inputs[0]->ndim - 1];
        for (int64_t j = 0; j < n; j++) ids[j] = (int32_t)(brg__rand_uniform(rng) * (float)range);
        return;
    }
    for (int64_t j = 0; j < n; j++) {
        float r = brg__rand_normal(rng);
        if (op->kind == BRG_OP_LAYERNORM && i == 1) r = 1.0f + 0.3f * r;
        else if (op->kind == BRG_OP_LAYERNORM && i == 2) r = 0.3f * r;
        else if (op->kind == BRG_OP_RELU) r = r < 0 ? r - 0.05f : r + 0.05f;
        else if (op->kind == BRG_OP_GELU) r = 2.5f * r;
        else if (op->kind == BRG_OP_CROSS_ENTROPY) r = 2.0f * r;
        x[j] = r;
    }
}

static void buffers_init(op_buffers *b, const brg__op *op, int64_t batch, uint64_t seed) {
    memset(b, 0, sizeof *b);
    b->op = op;
    b->batch = batch;
    uint64_t rng = seed;
    for (int i = 0; i < op->n_inputs; i++) {
        int64_t n = b->in_numel[i] = brg__tensor_numel(op->inputs[i], batch);
        if (op->inputs[i]->dtype == BRG_I32) {
            b->ids[i] = calloc((size_t)n, sizeof(int32_t));
            fill_input(op, i, NULL, b->ids[i], n, &rng);
        } else {
            b->in[i] = calloc((size_t)n, sizeof(float));
            b->in_d[i] = calloc((size_t)n, sizeof(double));
            fill_input(op, i, b->in[i], NULL, n, &rng);
            for (int64_t j = 0; j < n; j++) b->in_d[i][j] = b->in[i][j];
        }
    }
    brg__op_costs_get(op, batch, &b->costs);
    b->out_numel = brg__tensor_numel(op->output, batch);
    b->out = calloc((size_t)b->out_numel, sizeof(float));
    b->dout = calloc((size_t)b->out_numel, sizeof(float));
    b->ref_out = calloc((size_t)b->out_numel, sizeof(double));
    b->proj = calloc((size_t)b->out_numel, sizeof(double));
    b->aux = calloc((size_t)b->costs.aux_floats + 1, sizeof(float));
    b->scratch = calloc((size_t)brg__op_scratch_floats(&b->costs, 1) + 1, sizeof(float));
    /* The loss is L = sum(out . r): dL/dout = r. */
    for (int64_t j = 0; j < b->out_numel; j++) b->proj[j] = b->dout[j] = brg__rand_normal(&rng);
}

static void buffers_free(op_buffers *b) {
    for (int i = 0; i < BRG__MAX_INPUTS; i++) {
        free(b->in[i]);
        free(b->ids[i]);
        free(b->in_d[i]);
    }
    free(b->out);
    free(b->dout);
    free(b->ref_out);
    free(b->proj);
    free(b->aux);
    free(b->scratch);
}

static brg__op_call make_call(const op_buffers *b, char *msg) {
    brg__op_call c;
    memset(&c, 0, sizeof c);
    c.op = b->op;
    c.batch = b->batch;
    for (int i = 0; i < b->op->n_inputs; i++) c.in[i] = b->in[i] ? (const void *)b->in[i] : (const void *)b->ids[i];
    c.out = b->out;
    c.aux = b->aux;
    c.scratch = b->scratch;
    c.dout = b->dout;
    c.msg = msg;
    return c;
}

/* L = sum(ref_forward(inputs) . r), in double. */
static double ref_loss(op_buffers *b, double *scratch_out) {
    ref_forward(b->op, b->batch, b->in_d, (const int32_t *const *)b->ids, scratch_out);
    double l = 0;
    for (int64_t j = 0; j < b->out_numel; j++) l += scratch_out[j] * b->proj[j];
    return l;
}

/* Whether input i's gradient is computed in the given pass: parameters in backward-weight, other F32
 * inputs in backward-input; I32 inputs never. */
static int in_pass(const brg__op *op, int i, brg_pass pass) {
    if (op->inputs[i]->dtype != BRG_F32) return 0;
    int param = op->inputs[i]->kind == BRG_TENSOR_PARAMETER;
    return pass == BRG_PASS_BACKWARD_WEIGHT ? param : !param;
}

/* Runs backward for the inputs of `pass`, their gradients starting at `start`; grads[i] receives them.
 * With `fresh`, the gradients brg__op_writes_fresh names start as NaN and are asked to be written. */
static brg_status run_backward_as(op_buffers *b, brg_pass pass, float start, int fresh,
                                  float *grads[BRG__MAX_INPUTS]) {
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__op_call c = make_call(b, msg);
    for (int i = 0; i < BRG__MAX_INPUTS; i++) grads[i] = NULL;
    for (int i = 0; i < b->op->n_inputs; i++) {
        if (!in_pass(b->op, i, pass)) continue;
        grads[i] = malloc((size_t)b->in_numel[i] * sizeof(float));
        int written = fresh && brg__op_writes_fresh(b->op, i);
        for (int64_t j = 0; j < b->in_numel[i]; j++) grads[i][j] = written ? NAN : start;
        if (written) c.din_fresh |= 1u << i;
        c.din[i] = grads[i];
    }
    fill_nan(b->scratch, brg__op_scratch_floats(&b->costs, 1));
    brg_status s = brg__cpu_backward(&c);
    if (s != BRG_OK) fprintf(stderr, "backward of '%s': %s\n", b->op->name, msg);
    return s;
}

static brg_status run_backward(op_buffers *b, brg_pass pass, float start, float *grads[BRG__MAX_INPUTS]) {
    return run_backward_as(b, pass, start, 0, grads);
}

static void free_grads(float *grads[BRG__MAX_INPUTS]) {
    for (int i = 0; i < BRG__MAX_INPUTS; i++) free(grads[i]);
}

/* Worst relative error of the gradients of `pass` against finite differences; also checks that a second
 * run gives bitwise the same gradients, that pre-filled gradients accumulate, and that gradients written
 * outright (din_fresh, over NaN) equal those added to zeros. */
static double check_pass(op_buffers *b, brg_pass pass, const char *label, uint64_t seed) {
    float *grads[BRG__MAX_INPUTS], *again[BRG__MAX_INPUTS], *filled[BRG__MAX_INPUTS], *fresh[BRG__MAX_INPUTS];
    BRG_ASSERT_OK(run_backward(b, pass, 0.0f, grads), b->op->name);
    BRG_ASSERT_OK(run_backward(b, pass, 0.0f, again), b->op->name);
    BRG_ASSERT_OK(run_backward(b, pass, PREFILL, filled), b->op->name);
    BRG_ASSERT_OK(run_backward_as(b, pass, 0.0f, 1, fresh), b->op->name);
    double *tmp = malloc((size_t)b->out_numel * sizeof(double));
    uint64_t rng = seed ^ 0x5eedULL;
    double worst = 0;
    for (int i = 0; i < b->op->n_inputs; i++) {
        if (!grads[i]) continue;
        int64_t n = b->in_numel[i];
        CU_ASSERT(memcmp(grads[i], again[i], (size_t)n * sizeof(float)) == 0);
        int64_t unlike = 0; /* == rather than memcmp: 0 + (-0) is +0 */
        for (int64_t j = 0; j < n; j++) unlike += !(fresh[i][j] == grads[i][j]);
        if (unlike)
            fprintf(stderr, "%s: input %d: %lld gradients written outright differ from those added to zeros\n", label,
                    i, (long long)unlike);
        CU_ASSERT(unlike == 0);
        double worst_fill = 0;
        for (int64_t j = 0; j < n; j++)
            worst_fill = fmax(worst_fill, rel_error(filled[i][j], (double)grads[i][j] + PREFILL, 1.0));
        if (worst_fill > 1e-6)
            fprintf(stderr, "%s: input %d: gradient does not accumulate (relative %g)\n", label, i, worst_fill);
        CU_ASSERT(worst_fill <= 1e-6);
        /* Finite differences over every element, or a seeded sample of a large input. */
        int64_t points = n < FD_MAX_POINTS ? n : FD_MAX_POINTS;
        double *numeric = malloc((size_t)points * sizeof(double));
        int64_t *where = malloc((size_t)points * sizeof(int64_t));
        double scale = 0;
        for (int64_t p = 0; p < points; p++) {
            int64_t j = n <= FD_MAX_POINTS ? p : (int64_t)(brg__rand_uniform(&rng) * (float)n) % n;
            double x = b->in_d[i][j];
            b->in_d[i][j] = x + FD_STEP;
            double lp = ref_loss(b, tmp);
            b->in_d[i][j] = x - FD_STEP;
            double lm = ref_loss(b, tmp);
            b->in_d[i][j] = x;
            numeric[p] = (lp - lm) / (2 * FD_STEP);
            where[p] = j;
            scale = fmax(scale, fabs(numeric[p]));
        }
        /* The floor keeps gradients that cancel to near zero from counting float rounding as error. */
        double floor = 1e-3 * scale + 1e-6;
        double worst_input = 0;
        int64_t worst_at = 0;
        for (int64_t p = 0; p < points; p++) {
            double e = rel_error(grads[i][where[p]], numeric[p], floor);
            if (e > worst_input) worst_input = e, worst_at = p;
        }
        if (worst_input > GRADIENT_TOLERANCE)
            fprintf(stderr, "%s: input %d ('%s') element %lld: analytic %.9g, numeric %.9g (relative %g)\n", label, i,
                    b->op->inputs[i]->name, (long long)where[worst_at], grads[i][where[worst_at]], numeric[worst_at],
                    worst_input);
        CU_ASSERT(worst_input <= GRADIENT_TOLERANCE);
        worst = fmax(worst, worst_input);
        free(numeric);
        free(where);
    }
    free(tmp);
    free_grads(grads);
    free_grads(again);
    free_grads(filled);
    free_grads(fresh);
    return worst;
}

op_errors check_op(const char *label, brg_graph *g, const brg_tensor *out, int64_t batch, uint64_t seed) {
    op_errors e = {0, 0, 0};
    CU_ASSERT_FATAL(out != NULL);
    if (!out) return e;
    BRG_ASSERT_EQ_INT(brg_graph_status(g), BRG_OK);
    const brg__op *op = &g->ops[out->producer];
    op_buffers b;
    buffers_init(&b, op, batch, seed);
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__op_call c = make_call(&b, msg);

    /* Forward: every output and aux element written (none left NaN), repeatable bit for bit. */
    fill_nan(b.out, b.out_numel);
    fill_nan(b.aux, b.costs.aux_floats);
    fill_nan(b.scratch, brg__op_scratch_floats(&b.costs, 1));
    BRG_ASSERT_OK(brg__cpu_forward(&c), msg);
    float *first = malloc((size_t)b.out_numel * sizeof(float));
    memcpy(first, b.out, (size_t)b.out_numel * sizeof(float));
    fill_nan(b.scratch, brg__op_scratch_floats(&b.costs, 1));
    BRG_ASSERT_OK(brg__cpu_forward(&c), msg);
    CU_ASSERT(memcmp(first, b.out, (size_t)b.out_numel * sizeof(float)) == 0);
    free(first);
    int aux_written = 1;
    for (int64_t j = 0; j < b.costs.aux_floats; j++) aux_written &= !isnan(b.aux[j]);
    CU_ASSERT(aux_written);

    ref_forward(op, batch, b.in_d, (const int32_t *const *)b.ids, b.ref_out);
    double scale = 0;
    for (int64_t j = 0; j < b.out_numel; j++) scale = fmax(scale, fabs(b.ref_out[j]));
    for (int64_t j = 0; j < b.out_numel; j++) {
        /* Outputs far below the largest are held to an absolute 1e-7 of it (about two float ulps). */
        double err = isnan(b.out[j]) ? INFINITY : rel_error(b.out[j], b.ref_out[j], 1e-2 * scale + 1e-6);
        if (err > e.forward) e.forward = err;
    }
    if (e.forward > FORWARD_TOLERANCE) fprintf(stderr, "%s: forward relative error %g\n", label, e.forward);
    CU_ASSERT(e.forward <= FORWARD_TOLERANCE);

    /* A backward asking for nothing is allowed and does nothing. */
    BRG_ASSERT_OK(brg__cpu_backward(&c), msg);

    e.backward_input = check_pass(&b, BRG_PASS_BACKWARD_INPUT, label, seed);
    e.backward_weight = check_pass(&b, BRG_PASS_BACKWARD_WEIGHT, label, seed);
    printf("\n    %-34s forward %.2e  backward-input %.2e  backward-weight %.2e ", label, e.forward,
           e.backward_input, e.backward_weight);
    buffers_free(&b);
    return e;
}

/* ---- the same results on any number of threads ---- */

/* Everything one thread count produced: the output, aux, and the gradients of both backward halves. */
typedef struct op_results {
    float *out, *aux;
    float *grads[2][BRG__MAX_INPUTS]; /* [backward-input, backward-weight][input] */
} op_results;

static void results_free(op_results *r) {
    free(r->out);
    free(r->aux);
    for (int p = 0; p < 2; p++) free_grads(r->grads[p]);
}

static void run_all(op_buffers *b, op_results *r) {
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__op_call c = make_call(b, msg);
    fill_nan(b->out, b->out_numel);
    fill_nan(b->aux, b->costs.aux_floats);
    fill_nan(b->scratch, brg__op_scratch_floats(&b->costs, 1));
    BRG_ASSERT_OK(brg__cpu_forward(&c), msg);
    r->out = malloc((size_t)b->out_numel * sizeof(float));
    r->aux = malloc((size_t)b->costs.aux_floats * sizeof(float) + 1);
    memcpy(r->out, b->out, (size_t)b->out_numel * sizeof(float));
    memcpy(r->aux, b->aux, (size_t)b->costs.aux_floats * sizeof(float));
    /* Pre-filled gradients: accumulation is part of what must not change. */
    BRG_ASSERT_OK(run_backward(b, BRG_PASS_BACKWARD_INPUT, PREFILL, r->grads[0]), b->op->name);
    BRG_ASSERT_OK(run_backward(b, BRG_PASS_BACKWARD_WEIGHT, PREFILL, r->grads[1]), b->op->name);
}

static int same_floats(const float *a, const float *b, int64_t n) {
    return n == 0 || memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

void check_op_threads(const char *label, brg_graph *g, const brg_tensor *out, int64_t batch, uint64_t seed) {
    CU_ASSERT_FATAL(out != NULL);
    if (!out) return;
    BRG_ASSERT_EQ_INT(brg_graph_status(g), BRG_OK);
    const brg__op *op = &g->ops[out->producer];
    op_buffers b;
    buffers_init(&b, op, batch, seed);
    op_results one;
    brg__cpu_set_threads(1);
    run_all(&b, &one);
    int compared = 0;
    for (int threads = 2; threads <= 4; threads++) {
        op_results many;
        brg__cpu_set_threads(threads);
        run_all(&b, &many);
        BRG_ASSERT_EQ_INT(brg__cpu_pool_helpers(), threads - 1);
        int same = same_floats(one.out, many.out, b.out_numel) && same_floats(one.aux, many.aux, b.costs.aux_floats);
        for (int p = 0; p < 2; p++)
            for (int i = 0; i < op->n_inputs; i++) {
                CU_ASSERT((one.grads[p][i] == NULL) == (many.grads[p][i] == NULL));
                if (one.grads[p][i] && many.grads[p][i])
                    same &= same_floats(one.grads[p][i], many.grads[p][i], b.in_numel[i]);
            }
        if (!same) fprintf(stderr, "%s: %d threads differ from one\n", label, threads);
        CU_ASSERT(same);
        compared += same;
        results_free(&many);
    }
    brg__cpu_set_threads(1);
    brg__cpu_threads_release();
    results_free(&one);
    buffers_free(&b);
    printf("\n    %-44s bitwise alike on 1-4 threads: %s ", label, compared == 3 ? "yes" : "NO");
}
