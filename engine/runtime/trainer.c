/* Training on one device: micro-batches with gradient accumulation, global-norm clipping, AdamW. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "brigade/train.h"
#include "stage.h"

struct brg_trainer {
    const brg_graph *graph;
    brg_train_options opts;
    brg__backend *be;
    brg__stage *stage;
    const brg_tensor *tokens, *targets;
    int64_t seq;
    int32_t *host_tokens, *host_targets; /* (B, T) */
    int64_t steps_done;
    int64_t next_sample;
    brg_status status;
    char error[BRG_ERROR_MESSAGE_MAX];
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

BRG__PRINTF(3, 4)
static brg_status trainer_fail(brg_trainer *t, brg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->error, sizeof t->error, fmt, ap);
    va_end(ap);
    t->status = status;
    return status;
}

static brg_status check_options(const brg_train_options *o, brg_error *err) {
#define BRG__OPTION(cond, fmt, value) \
    if (!(cond)) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "training option " fmt, value)
    BRG__OPTION(o->micro_batch >= 1, "micro_batch must be at least 1, got %lld", (long long)o->micro_batch);
    BRG__OPTION(o->micro_batches >= 1, "micro_batches must be at least 1, got %lld", (long long)o->micro_batches);
    BRG__OPTION(o->lr > 0.0f && isfinite(o->lr), "lr must be a positive number, got %g", (double)o->lr);
    BRG__OPTION(o->beta1 >= 0.0f && o->beta1 < 1.0f, "beta1 must be in [0, 1), got %g", (double)o->beta1);
    BRG__OPTION(o->beta2 >= 0.0f && o->beta2 < 1.0f, "beta2 must be in [0, 1), got %g", (double)o->beta2);
    BRG__OPTION(o->eps > 0.0f && isfinite(o->eps), "eps must be positive, got %g", (double)o->eps);
    BRG__OPTION(o->weight_decay >= 0.0f && isfinite(o->weight_decay), "weight_decay must be >= 0, got %g",
                (double)o->weight_decay);
    BRG__OPTION(o->grad_clip >= 0.0f && isfinite(o->grad_clip), "grad_clip must be >= 0, got %g",
                (double)o->grad_clip);
    BRG__OPTION(o->blas_threads >= 0, "blas_threads must be >= 0, got %d", o->blas_threads);
#undef BRG__OPTION
    return BRG_OK;
}

/* The graph's inputs must be "tokens" and "targets", I32 (BRG_BATCH, T) with the same T. */
static brg_status find_inputs(brg_trainer *t, brg_error *err) {
    const brg_graph *g = t->graph;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const brg_tensor *x = g->tensors[i];
        if (x->kind != BRG_TENSOR_INPUT) continue;
        int is_tokens = strcmp(x->name, "tokens") == 0, is_targets = strcmp(x->name, "targets") == 0;
        if (!is_tokens && !is_targets)
            return brg__error_set(err, BRG_ERR_UNSUPPORTED,
                                  "graph input '%s' has no data source: the trainer feeds inputs named 'tokens' "
                                  "and 'targets'",
                                  x->name);
        if (x->dtype != BRG_I32 || x->ndim != 2 || x->shape[0] != BRG_BATCH)
            return brg__error_set(err, BRG_ERR_UNSUPPORTED, "graph input '%s' must be I32 (BRG_BATCH, T)", x->name);
        if (is_tokens) t->tokens = x;
        if (is_targets) t->targets = x;
    }
    if (!t->tokens || !t->targets)
        return brg__error_set(err, BRG_ERR_UNSUPPORTED, "the graph needs inputs named 'tokens' and 'targets'");
    if (t->tokens->shape[1] != t->targets->shape[1])
        return brg__error_set(err, BRG_ERR_UNSUPPORTED, "'tokens' has %lld positions but 'targets' has %lld",
                              (long long)t->tokens->shape[1], (long long)t->targets->shape[1]);
    t->seq = t->tokens->shape[1];
    return BRG_OK;
}

brg_status brg_trainer_create(brg_trainer **out, const brg_graph *g, const brg_train_options *opts,
                              brg_error *err) {
    if (!out || !g || !opts)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_trainer_create: %s is NULL",
                              !out ? "out" : !g ? "the graph" : "opts");
    *out = NULL;
    if (g->status != BRG_OK)
        return brg__error_set(err, BRG_ERR_INVALID_USAGE, "brg_trainer_create: the graph is in error: %s", g->error);
    if (!g->finalized)
        return brg__error_set(err, BRG_ERR_INVALID_USAGE,
                              "brg_trainer_create: the graph is not finalized (call brg_graph_finalize)");
    BRG__CHECK(check_options(opts, err));
    brg_trainer *t = calloc(1, sizeof *t);
    if (!t) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    t->graph = g;
    t->opts = *opts;
    brg_status s = find_inputs(t, err);
    if (s != BRG_OK) goto fail;
    if (opts->blas_threads > 0) openblas_set_num_threads(opts->blas_threads);
    size_t bt = (size_t)(opts->micro_batch * t->seq);
    t->host_tokens = malloc(bt * sizeof(int32_t));
    t->host_targets = malloc(bt * sizeof(int32_t));
    if (!t->host_tokens || !t->host_targets) {
        s = brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    s = brg__backend_cpu_create(&t->be, msg);
    if (s != BRG_OK) {
        brg__error_set(err, s, "creating the CPU backend: %s", msg);
        goto fail;
    }
    float dloss = (float)(1.0 / ((double)opts->micro_batches * (double)bt));
    s = brg__stage_create(&t->stage, g, t->be, 0, g->n_ops, opts->micro_batch, 1, opts->seed, dloss, msg);
    if (s != BRG_OK) {
        brg__error_set(err, s, "%s", msg);
        goto fail;
    }
    *out = t;
    return BRG_OK;
fail:
    brg_trainer_destroy(t);
    return s;
}

void brg_trainer_destroy(brg_trainer *t) {
    if (!t) return;
    brg__stage_destroy(t->stage);
    brg__backend_destroy(t->be);
    free(t->host_tokens);
    free(t->host_targets);
    free(t);
}

const char *brg_trainer_last_error(const brg_trainer *t) { return t ? t->error : "the trainer handle is NULL"; }

/* Loads micro-batch samples [first, first + B) into the stage's input slots. */
static brg_status load_batch(brg_trainer *t, brg_data *data, int64_t first) {
    brg__stage *s = t->stage;
    brg_status st = brg_data_batch(data, first, t->opts.micro_batch, t->host_tokens, t->host_targets);
    if (st != BRG_OK) return trainer_fail(t, st, "loading samples %lld..%lld: %s", (long long)first,
                                          (long long)(first + t->opts.micro_batch - 1), brg_data_last_error(data));
    size_t bytes = (size_t)(t->opts.micro_batch * t->seq) * sizeof(int32_t);
    t->be->vt->upload(t->be, s->acts[0][t->tokens->index], t->host_tokens, bytes);
    t->be->vt->upload(t->be, s->acts[0][t->targets->index], t->host_targets, bytes);
    return BRG_OK;
}

brg_status brg_trainer_step(brg_trainer *t, brg_data *data, brg_step_stats *stats) {
    if (!t || !data) return BRG_ERR_INVALID_ARGUMENT;
    if (t->status != BRG_OK) return t->status;
    if (brg_data_seq(data) != t->seq)
        return trainer_fail(t, BRG_ERR_INVALID_ARGUMENT, "the data has sequences of %lld tokens, the model %lld",
                            (long long)brg_data_seq(data), (long long)t->seq);
    brg__stage *s = t->stage;
    double t0 = now_seconds();
    t->be->vt->reset_peak(t->be);
    brg__stage_zero_grads(s);
    double loss_sum = 0.0;
    for (int64_t mb = 0; mb < t->opts.micro_batches; mb++) {
        BRG__CHECK(load_batch(t, data, t->next_sample));
        t->next_sample += t->opts.micro_batch;
        brg_status st = brg__stage_forward(s, 0);
        double part = 0.0;
        if (st == BRG_OK) st = brg__stage_loss_sum(s, 0, &part);
        if (st == BRG_OK) st = brg__stage_backward(s, 0, BRG__BACKWARD_FULL);
        if (st != BRG_OK) return trainer_fail(t, st, "step %lld, micro-batch %lld: %s", (long long)t->steps_done + 1,
                                              (long long)mb, s->msg[0] ? s->msg : brg_status_string(st));
        loss_sum += part;
    }
    brg__stage_reduce_grads(s);
    double squares = 0.0;
    for (int64_t p = 0; p < t->graph->n_params; p++) squares += brg__stage_grad_sum_squares(s, p);
    double norm = sqrt(squares);
    float scale = 1.0f;
    if (t->opts.grad_clip > 0.0f && norm > t->opts.grad_clip) scale = (float)(t->opts.grad_clip / norm);
    t->steps_done++;
    brg__stage_optimizer_step(s, scale, t->opts.lr, t->opts.beta1, t->opts.beta2, t->opts.eps, t->opts.weight_decay,
                              (int)t->steps_done);
    int64_t tokens = t->opts.micro_batches * t->opts.micro_batch * t->seq;
    double seconds = now_seconds() - t0;
    double loss = loss_sum / (double)tokens;
    if (!isfinite(loss))
        return trainer_fail(t, BRG_ERR_BACKEND, "step %lld: the loss is %g (diverged; lower the learning rate)",
                            (long long)t->steps_done, loss);
    if (stats) {
        stats->step = t->steps_done;
        stats->loss = loss;
        stats->grad_norm = norm;
        stats->tokens = tokens;
        stats->seconds = seconds;
        stats->tokens_per_second = seconds > 0 ? (double)tokens / seconds : 0.0;
        stats->peak_bytes = t->be->vt->peak(t->be);
    }
    return BRG_OK;
}

static int compare_names(const void *a, const void *b) {
    return strcmp((*(const brg_tensor *const *)a)->name, (*(const brg_tensor *const *)b)->name);
}

brg_status brg_trainer_fingerprint(const brg_trainer *t, uint64_t *out) {
    if (!t || !out) return BRG_ERR_INVALID_ARGUMENT;
    const brg_graph *g = t->graph;
    brg_tensor **sorted = malloc((size_t)(g->n_params ? g->n_params : 1) * sizeof *sorted);
    if (!sorted) return BRG_ERR_OUT_OF_MEMORY;
    memcpy(sorted, g->params, (size_t)g->n_params * sizeof *sorted);
    qsort(sorted, (size_t)g->n_params, sizeof *sorted, compare_names);
    uint64_t h = BRG__FNV_OFFSET;
    brg_status st = BRG_OK;
    for (int64_t i = 0; i < g->n_params && st == BRG_OK; i++) {
        int64_t n = brg__tensor_numel(sorted[i], 1);
        float *host = malloc((size_t)n * sizeof(float));
        if (!host) {
            st = BRG_ERR_OUT_OF_MEMORY;
            break;
        }
        t->be->vt->download(t->be, host, t->stage->param[sorted[i]->param_index], (size_t)n * sizeof(float));
        h = brg__fnv1a(h, sorted[i]->name, strlen(sorted[i]->name) + 1);
        h = brg__fnv1a(h, host, (size_t)n * sizeof(float));
        free(host);
    }
    free(sorted);
    if (st == BRG_OK) *out = h;
    return st;
}

brg_status brg_trainer_get_param(const brg_trainer *t, const char *name, float *dst, int64_t count) {
    if (!t || !name || !dst) return BRG_ERR_INVALID_ARGUMENT;
    const brg_graph *g = t->graph;
    for (int64_t p = 0; p < g->n_params; p++) {
        if (strcmp(g->params[p]->name, name) != 0) continue;
        if (brg__tensor_numel(g->params[p], 1) != count) return BRG_ERR_SHAPE;
        t->be->vt->download(t->be, dst, t->stage->param[p], (size_t)count * sizeof(float));
        return BRG_OK;
    }
    return BRG_ERR_NAME;
}

int64_t brg_trainer_memory_bytes(const brg_trainer *t) { return t ? t->be->vt->allocated(t->be) : 0; }
