/* A stage's memory and its forward, recompute, backward and optimizer passes. */
#include "stage.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/backend.h"

static int64_t op_count(const brg__stage *s) { return s->op_end - s->op_begin; }

static const brg__op *stage_op(const brg__stage *s, int64_t i) { return &s->graph->ops[i]; }

size_t brg__stage_tensor_bytes(const brg__stage *s, const brg_tensor *t) {
    /* The per-position loss is fp32 on every backend: the host sums it (brg__stage_loss_sum). */
    int is_loss = t->producer >= 0 && t->producer == s->graph->loss_op;
    int64_t element = is_loss ? (int64_t)sizeof(float) : s->be->vt->element_bytes(s->be, t->dtype);
    return (size_t)(brg__tensor_numel(t, s->batch) * element);
}

/* Whether any op with index in [from, to) reads t. */
static int read_in(const brg_graph *g, const brg_tensor *t, int64_t from, int64_t to) {
    for (int64_t j = from; j < to; j++)
        for (int q = 0; q < g->ops[j].n_inputs; q++)
            if (g->ops[j].inputs[q] == t) return 1;
    return 0;
}

void brg__param_init_values(const brg_tensor *t, uint64_t seed, float *dst, int64_t n) {
    if (t->init.kind == BRG_INIT_ZEROS || t->init.kind == BRG_INIT_ONES) {
        float v = t->init.kind == BRG_INIT_ONES ? 1.0f : 0.0f;
        for (int64_t i = 0; i < n; i++) dst[i] = v;
        return;
    }
    /* The stream depends on the seed and the name only, so every placement initializes alike. */
    uint64_t state = brg__fnv1a(BRG__FNV_OFFSET ^ seed, t->name, strlen(t->name));
    for (int64_t i = 0; i < n; i++) dst[i] = t->init.std * brg__rand_normal(&state);
}

static void *stage_alloc(brg__stage *s, size_t bytes, int *failed) {
    void *p = s->be->vt->alloc(s->be, bytes);
    if (!p) *failed = 1;
    return p;
}

static void *calloc_array(size_t n, size_t size, int *failed) {
    void *p = brg__calloc(n ? n : 1, size);
    if (!p) *failed = 1;
    return p;
}

/* Parameters used by the stage: values (initialized), optimizer state, per-consumer gradients. */
static void alloc_params(brg__stage *s, uint64_t seed, int *failed) {
    const brg_graph *g = s->graph;
    for (int64_t i = s->op_begin; i < s->op_end && !*failed; i++) {
        const brg__op *op = stage_op(s, i);
        for (int q = 0; q < op->n_inputs && !*failed; q++) {
            const brg_tensor *t = op->inputs[q];
            if (t->kind != BRG_TENSOR_PARAMETER) continue;
            int64_t p = t->param_index, n = brg__tensor_numel(t, 1);
            size_t bytes = (size_t)n * sizeof(float);
            s->consumer_grad[(i - s->op_begin) * BRG__MAX_INPUTS + q] = stage_alloc(s, bytes, failed);
            s->param_consumers[p]++;
            if (s->param[p]) continue;
            s->param[p] = stage_alloc(s, bytes, failed);
            s->adam_m[p] = stage_alloc(s, bytes, failed);
            s->adam_v[p] = stage_alloc(s, bytes, failed);
            /* A tensor-parallel slice: the whole parameter's values, this rank's share of them. */
            int64_t whole_n = brg__slice_whole_numel(t);
            float *host = brg__malloc(bytes);
            float *whole = whole_n == n ? host : brg__malloc((size_t)whole_n * sizeof(float));
            if (!host || !whole || *failed) {
                if (whole != host) free(whole);
                free(host);
                *failed = 1;
                return;
            }
            brg__param_init_values(t, seed, whole, whole_n);
            if (whole != host) {
                brg__slice_take(t, s->tp_rank, whole, host);
                free(whole);
            }
            s->be->vt->upload(s->be, s->param[p], host, bytes);
            free(host);
        }
    }
    /* A parameter read by several ops of the stage gets a buffer of its own for the sum. */
    for (int64_t p = 0; p < g->n_params && !*failed; p++) {
        if (s->param_consumers[p] > 1) {
            s->param_grad[p] = stage_alloc(s, (size_t)brg__tensor_numel(g->params[p], 1) * sizeof(float), failed);
            s->grad_owned[p] = 1;
        } else if (s->param_consumers[p] == 1)
            for (int64_t k = 0; k < op_count(s) * BRG__MAX_INPUTS; k++) {
                const brg__op *op = stage_op(s, s->op_begin + k / BRG__MAX_INPUTS);
                int q = (int)(k % BRG__MAX_INPUTS);
                if (q < op->n_inputs && op->inputs[q] == g->params[p]) s->param_grad[p] = s->consumer_grad[k];
            }
    }
}

/* Appends t's index to a role list unless present (lists stay short: a few tensors per boundary). */
static void role_add(int64_t *list, int64_t *n, int64_t index) {
    for (int64_t i = 0; i < *n; i++)
        if (list[i] == index) return;
    list[(*n)++] = index;
}

static int compare_index(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Which tensors the stage receives, sends, loads and produces. */
static void find_roles(brg__stage *s, int *failed) {
    const brg_graph *g = s->graph;
    size_t nt = (size_t)g->n_tensors;
    s->recv = calloc_array(nt, sizeof *s->recv, failed);
    s->send = calloc_array(nt, sizeof *s->send, failed);
    s->inputs = calloc_array(nt, sizeof *s->inputs, failed);
    s->local = calloc_array(nt, sizeof *s->local, failed);
    if (*failed) return;
    for (int64_t i = 0; i < g->n_ops; i++) {
        const brg_tensor *out = g->ops[i].output;
        if (i >= s->op_begin && i < s->op_end) role_add(s->local, &s->n_local, out->index);
        if (i < s->op_begin && read_in(g, out, s->op_begin, g->n_ops)) role_add(s->recv, &s->n_recv, out->index);
        if (i < s->op_end && read_in(g, out, s->op_end, g->n_ops)) role_add(s->send, &s->n_send, out->index);
    }
    for (int64_t i = s->op_begin; i < s->op_end; i++)
        for (int q = 0; q < g->ops[i].n_inputs; q++)
            if (g->ops[i].inputs[q]->kind == BRG_TENSOR_INPUT) role_add(s->inputs, &s->n_inputs, g->ops[i].inputs[q]->index);
    qsort(s->recv, (size_t)s->n_recv, sizeof *s->recv, compare_index);
    qsort(s->send, (size_t)s->n_send, sizeof *s->send, compare_index);
    qsort(s->inputs, (size_t)s->n_inputs, sizeof *s->inputs, compare_index);
}

/* Where each activation gradient starts: zeroed before the backward of its last reader in this stage,
 * unless a later stage reads it too (its gradient then arrives from there, already summed in the same
 * order a single stage would sum it). */
static void plan_zeroing(brg__stage *s) {
    const brg_graph *g = s->graph;
    for (int64_t t = 0; t < g->n_tensors; t++) s->zero_before[t] = -1;
    for (int64_t i = s->op_begin; i < s->op_end; i++) {
        const brg__op *op = stage_op(s, i);
        for (int q = 0; q < op->n_inputs; q++) {
            const brg_tensor *t = op->inputs[q];
            if (t->kind == BRG_TENSOR_ACTIVATION) s->zero_before[t->index] = i; /* ascending: keeps the last */
        }
        /* An output nobody reads (and not the loss) has a zero gradient. */
        if (op->output->consumers == 0 && op->kind != BRG_OP_CROSS_ENTROPY) s->zero_before[op->output->index] = i;
    }
    for (int64_t t = 0; t < g->n_tensors; t++)
        if (s->zero_before[t] >= 0 && read_in(g, g->tensors[t], s->op_end, g->n_ops)) s->zero_before[t] = -1;
}

brg_status brg__stage_create(brg__stage **out, const brg_graph *g, brg__backend *be, int64_t op_begin,
                             int64_t op_end, int64_t batch, int n_slots, brg_recompute recompute, uint64_t seed,
                             float dloss_value, int tp_rank, char *msg) {
    brg__stage *s = brg__calloc(1, sizeof *s);
    if (!s) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    s->graph = g;
    s->tp_rank = tp_rank;
    s->tp_size = g->tp_parts > 1 ? g->tp_parts : 1;
    s->be = be;
    s->op_begin = op_begin;
    s->op_end = op_end;
    s->batch = batch;
    s->n_slots = n_slots;
    s->recompute = recompute;
    s->poison_slot = -1;
    int failed = 0;
    size_t nt = (size_t)g->n_tensors, np = (size_t)g->n_params, no = (size_t)op_count(s);
    s->acts = calloc_array((size_t)n_slots, sizeof *s->acts, &failed);
    s->act_grads = calloc_array((size_t)n_slots, sizeof *s->act_grads, &failed);
    s->aux = calloc_array((size_t)n_slots, sizeof *s->aux, &failed);
    s->dropped = calloc_array((size_t)n_slots, sizeof *s->dropped, &failed);
    for (int slot = 0; slot < n_slots && !failed; slot++) {
        s->acts[slot] = calloc_array(nt, sizeof **s->acts, &failed);
        s->act_grads[slot] = calloc_array(nt, sizeof **s->act_grads, &failed);
        s->aux[slot] = calloc_array(no, sizeof **s->aux, &failed);
    }
    s->zero_before = calloc_array(nt, sizeof *s->zero_before, &failed);
    s->param = calloc_array(np, sizeof *s->param, &failed);
    s->adam_m = calloc_array(np, sizeof *s->adam_m, &failed);
    s->adam_v = calloc_array(np, sizeof *s->adam_v, &failed);
    s->param_grad = calloc_array(np, sizeof *s->param_grad, &failed);
    s->param_consumers = calloc_array(np, sizeof *s->param_consumers, &failed);
    s->consumer_grad = calloc_array(no * BRG__MAX_INPUTS, sizeof *s->consumer_grad, &failed);
    s->grad_owned = calloc_array(np, sizeof *s->grad_owned, &failed);
    s->grad_lent = calloc_array(np, sizeof *s->grad_lent, &failed);
    if (!failed) find_roles(s, &failed);
    if (!failed) alloc_params(s, seed, &failed);
    int64_t scratch = 0;
    for (int64_t i = op_begin; i < op_end; i++) {
        brg__op_costs c;
        brg__op_costs_get(stage_op(s, i), batch, &c);
        int64_t need = brg__op_scratch_floats(&c, be->vt->host_kernels);
        if (need > scratch) scratch = need;
    }
    if (!failed && scratch) s->scratch = stage_alloc(s, (size_t)scratch * sizeof(float), &failed);
    if (!failed && g->loss_op >= op_begin && g->loss_op < op_end) {
        const brg_tensor *loss = g->ops[g->loss_op].output;
        int64_t n = brg__tensor_numel(loss, batch);
        float *host = brg__malloc((size_t)n * sizeof(float));
        s->dloss = stage_alloc(s, (size_t)n * sizeof(float), &failed);
        s->loss_kept = stage_alloc(s, (size_t)n * (size_t)n_slots * sizeof(float), &failed);
        if (host && !failed) {
            for (int64_t i = 0; i < n; i++) host[i] = dloss_value;
            be->vt->upload(be, s->dloss, host, (size_t)n * sizeof(float));
        }
        if (!host) failed = 1;
        free(host);
    }
    if (failed) {
        int64_t held = be->vt->allocated(be);
        brg__stage_destroy(s);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY,
                                "out of memory allocating the stage of ops %lld to %lld (micro-batch %lld) with "
                                "%lld bytes already held by the %s backend",
                                (long long)op_begin, (long long)op_end - 1, (long long)batch, (long long)held,
                                be->vt->name);
    }
    plan_zeroing(s);
    *out = s;
    return BRG_OK;
}

void brg__stage_destroy(brg__stage *s) {
    if (!s) return;
    const brg_graph *g = s->graph;
    brg__backend *be = s->be;
    /* Any array may be missing: creation may have failed part way (every one is calloc'd, so what exists
     * holds NULL or a buffer). */
    for (int slot = 0; s->acts && s->act_grads && s->aux && s->dropped && slot < s->n_slots; slot++) {
        if (s->acts[slot] && s->act_grads[slot] && s->aux[slot]) brg__stage_release(s, slot);
    }
    for (int slot = 0; slot < s->n_slots; slot++) {
        if (s->acts) free(s->acts[slot]);
        if (s->act_grads) free(s->act_grads[slot]);
        if (s->aux) free(s->aux[slot]);
    }
    for (int64_t p = 0; s->param && s->adam_m && s->adam_v && s->param_grad && s->grad_owned && s->grad_lent &&
                        s->consumer_grad && p < g->n_params; p++) {
        if (s->grad_lent[p] && !s->grad_owned[p]) /* the consumer's buffer is the view: not ours to free */
            for (int64_t k = 0; k < op_count(s) * BRG__MAX_INPUTS; k++)
                if (s->consumer_grad[k] == s->param_grad[p]) s->consumer_grad[k] = NULL;
        if (s->grad_owned[p] && !s->grad_lent[p]) be->vt->free(be, s->param_grad[p]);
        be->vt->free(be, s->param[p]);
        be->vt->free(be, s->adam_m[p]);
        be->vt->free(be, s->adam_v[p]);
    }
    for (int64_t k = 0; s->consumer_grad && k < op_count(s) * BRG__MAX_INPUTS; k++)
        be->vt->free(be, s->consumer_grad[k]);
    be->vt->free(be, s->scratch);
    be->vt->free(be, s->dloss);
    be->vt->free(be, s->loss_kept);
    free(s->acts);
    free(s->act_grads);
    free(s->aux);
    free(s->dropped);
    free(s->zero_before);
    free(s->param);
    free(s->adam_m);
    free(s->adam_v);
    free(s->param_grad);
    free(s->param_consumers);
    free(s->grad_owned);
    free(s->grad_lent);
    free(s->consumer_grad);
    free(s->recv);
    free(s->send);
    free(s->inputs);
    free(s->local);
    free(s);
}

static brg_status out_of_memory(brg__stage *s, const char *what, int slot) {
    return brg__message_set(s->msg, sizeof s->msg, BRG_ERR_OUT_OF_MEMORY,
                            "out of memory allocating %s of micro-batch %d for the stage of ops %lld to %lld (%lld "
                            "bytes held by the %s backend)",
                            what, slot, (long long)s->op_begin, (long long)s->op_end - 1,
                            (long long)s->be->vt->allocated(s->be), s->be->vt->name);
}

/* Allocates acts[slot][t] (and, for kind ACTIVATION, nothing else) unless present. */
static int ensure_act(brg__stage *s, int slot, int64_t t) {
    if (s->acts[slot][t]) return 1;
    s->acts[slot][t] = s->be->vt->alloc_uninit(s->be, brg__stage_tensor_bytes(s, s->graph->tensors[t]));
    return s->acts[slot][t] != NULL;
}

/* Allocates the outputs and internals of op i in slot unless present. */
static int ensure_op_memory(brg__stage *s, int slot, int64_t i) {
    const brg__op *op = stage_op(s, i);
    if (!ensure_act(s, slot, op->output->index)) return 0;
    float **aux = &s->aux[slot][i - s->op_begin];
    if (*aux) return 1;
    brg__op_costs c;
    brg__op_costs_get(op, s->batch, &c);
    if (!c.aux_floats) return 1;
    *aux = s->be->vt->alloc_uninit(s->be, (size_t)c.aux_floats * sizeof(float));
    return *aux != NULL;
}

brg_status brg__stage_acquire(brg__stage *s, int slot) {
    for (int64_t k = 0; k < s->n_recv; k++)
        if (!ensure_act(s, slot, s->recv[k])) return out_of_memory(s, "received activations", slot);
    for (int64_t k = 0; k < s->n_inputs; k++)
        if (!ensure_act(s, slot, s->inputs[k])) return out_of_memory(s, "inputs", slot);
    return BRG_OK;
}

brg_status brg__stage_acquire_grads(brg__stage *s, int slot) {
    const brg_graph *g = s->graph;
    const int64_t *lists[2] = {s->recv, s->local};
    int64_t counts[2] = {s->n_recv, s->n_local};
    for (int l = 0; l < 2; l++)
        for (int64_t k = 0; k < counts[l]; k++) {
            int64_t t = lists[l][k];
            if (s->act_grads[slot][t] || g->tensors[t]->dtype != BRG_F32) continue;
            s->act_grads[slot][t] = s->be->vt->alloc_uninit(s->be, brg__stage_tensor_bytes(s, g->tensors[t]));
            if (!s->act_grads[slot][t]) return out_of_memory(s, "activation gradients", slot);
        }
    return BRG_OK;
}

void brg__stage_release(brg__stage *s, int slot) {
    brg__backend *be = s->be;
    for (int64_t t = 0; t < s->graph->n_tensors; t++) {
        be->vt->free(be, s->acts[slot][t]);
        be->vt->free(be, s->act_grads[slot][t]);
        s->acts[slot][t] = NULL;
        s->act_grads[slot][t] = NULL;
    }
    for (int64_t i = 0; i < op_count(s); i++) {
        be->vt->free(be, s->aux[slot][i]);
        s->aux[slot][i] = NULL;
    }
    s->dropped[slot] = 0;
}

static const void *operand(const brg__stage *s, int slot, const brg_tensor *t) {
    return t->kind == BRG_TENSOR_PARAMETER ? (const void *)s->param[t->param_index] : s->acts[slot][t->index];
}

/* ---- the tensor-parallel group's collectives (ops TP_COPY, TP_REDUCE, TP_GATHER, TP_SCATTER) ----------
 * On the stage's activations, blocking: every rank of the group runs the same ops in the same order. The
 * group's collectives lay a buffer out member after member, so gathering and scattering positions (dim 1
 * of (B, T, ...)) reorders between (B, T) and (group, B, T / group). */

static brg_status group_run(brg__stage *s, brg__collective_kind kind, void *buf, int64_t count, const char *what) {
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status st = brg__group_post(s->tp_group, kind, buf, count, sizeof(float), 0, msg);
    if (st == BRG_OK) st = brg__group_wait_all(s->tp_group, msg);
    if (st != BRG_OK)
        return brg__message_set(s->msg, sizeof s->msg, st, "%s over the tensor-parallel group: %s", what, msg);
    return BRG_OK;
}

static brg_status comm_allreduce(void *ctx, float *buf, int64_t n, char *msg) {
    brg__stage *s = ctx;
    brg_status st = group_run(s, BRG__ALLREDUCE, buf, n, "a sum");
    if (st != BRG_OK && msg) snprintf(msg, BRG_ERROR_MESSAGE_MAX, "%s", s->msg);
    return st;
}

static brg_status comm_allgather(void *ctx, float *buf, int64_t n, char *msg) {
    brg__stage *s = ctx;
    brg_status st = group_run(s, BRG__ALLGATHER, buf, n * s->tp_size, "a gather");
    if (st != BRG_OK && msg) snprintf(msg, BRG_ERROR_MESSAGE_MAX, "%s", s->msg);
    return st;
}

void brg__stage_set_tensor_group(brg__stage *s, brg__group *group) {
    s->tp_group = group;
    s->comm = (brg__tp_comm){s->tp_rank, s->tp_size, s, comm_allreduce, comm_allgather};
}

/* Copies between x (B, T, ...) and the group's layout (group, B, T / group, ...): to_group, or back. */
static void reorder_positions(brg__stage *s, const brg_tensor *whole_shape, float *x, float *grouped, int to_group) {
    int64_t b = whole_shape->shape[0] == BRG_BATCH ? s->batch : whole_shape->shape[0];
    int64_t share = brg__tensor_numel(whole_shape, s->batch) / b / s->tp_size; /* floats of one member's positions */
    for (int64_t k = 0; k < b; k++)
        for (int i = 0; i < s->tp_size; i++) {
            float *in_x = x + (k * s->tp_size + i) * share, *in_g = grouped + (i * b + k) * share;
            if (to_group) s->be->vt->copy(s->be, in_g, in_x, (size_t)share * sizeof(float));
            else s->be->vt->copy(s->be, in_x, in_g, (size_t)share * sizeof(float));
        }
}

/* The forward of a collective: out from in, through the group. */
static brg_status tp_forward(brg__stage *s, const brg__op *op, const void *in, void *out) {
    const brg_tensor *x = op->inputs[0];
    size_t in_bytes = brg__stage_tensor_bytes(s, x), out_bytes = brg__stage_tensor_bytes(s, op->output);
    int64_t out_n = brg__tensor_numel(op->output, s->batch), in_n = brg__tensor_numel(x, s->batch);
    if (!s->tp_group) return brg__message_set(s->msg, sizeof s->msg, BRG_ERR_INTERNAL, "op '%s': no tensor-parallel group", op->name);
    switch (op->kind) {
    case BRG_OP_TP_COPY:
        s->be->vt->copy(s->be, out, in, out_bytes);
        return BRG_OK;
    case BRG_OP_TP_REDUCE:
        s->be->vt->copy(s->be, out, in, out_bytes);
        return group_run(s, BRG__ALLREDUCE, out, out_n, op->name);
    case BRG_OP_TP_GATHER: { /* (B, T/t, ..) -> (B, T, ..) */
        float *grouped = s->scratch; /* out_n floats (brg__op_costs) */
        s->be->vt->copy(s->be, grouped + (int64_t)s->tp_rank * in_n, in, in_bytes);
        brg_status st = group_run(s, BRG__ALLGATHER, grouped, out_n, op->name);
        if (st == BRG_OK) reorder_positions(s, op->output, out, grouped, 0);
        return st;
    }
    case BRG_OP_TP_SCATTER: { /* (B, T, ..) summed over the group, this rank's positions: (B, T/t, ..) */
        float *grouped = s->scratch; /* in_n floats of its 2 in_n */
        reorder_positions(s, x, (float *)in, grouped, 1);
        brg_status st = group_run(s, BRG__REDUCE_SCATTER, grouped, in_n, op->name);
        if (st == BRG_OK) s->be->vt->copy(s->be, out, grouped + (int64_t)s->tp_rank * out_n, out_bytes);
        return st;
    }
    default:
        return brg__message_set(s->msg, sizeof s->msg, BRG_ERR_INTERNAL, "op '%s' is not a collective", op->name);
    }
}

/* din += the gradient of the collective's input, from dout. */
static brg_status tp_backward(brg__stage *s, const brg__op *op, const float *dout, float *din) {
    const brg_tensor *x = op->inputs[0];
    size_t out_bytes = brg__stage_tensor_bytes(s, op->output);
    int64_t out_n = brg__tensor_numel(op->output, s->batch), in_n = brg__tensor_numel(x, s->batch);
    if (!din) return BRG_OK;
    if (op->kind == BRG_OP_TP_REDUCE) {
        s->be->vt->accumulate(s->be, din, dout, in_n);
        return BRG_OK;
    }
    float *work = s->scratch; /* the op's scratch (brg__op_costs): out_n floats, a scatter's 2 in_n */
    brg_status st = BRG_OK;
    switch (op->kind) {
    case BRG_OP_TP_COPY: /* the shares' input gradients summed */
        s->be->vt->copy(s->be, work, dout, out_bytes);
        st = group_run(s, BRG__ALLREDUCE, work, out_n, op->name);
        if (st == BRG_OK) s->be->vt->accumulate(s->be, din, work, in_n);
        break;
    case BRG_OP_TP_GATHER: /* summed over the group, this rank's positions */
        reorder_positions(s, op->output, (float *)dout, work, 1);
        st = group_run(s, BRG__REDUCE_SCATTER, work, out_n, op->name);
        if (st == BRG_OK) s->be->vt->accumulate(s->be, din, work + (int64_t)s->tp_rank * in_n, in_n);
        break;
    case BRG_OP_TP_SCATTER: { /* every rank's positions gathered */
        float *grouped = work + in_n;
        s->be->vt->copy(s->be, grouped + (int64_t)s->tp_rank * out_n, dout, out_bytes);
        st = group_run(s, BRG__ALLGATHER, grouped, in_n, op->name);
        if (st == BRG_OK) {
            reorder_positions(s, x, work, grouped, 0);
            s->be->vt->accumulate(s->be, din, work, in_n);
        }
        break;
    }
    default:
        st = brg__message_set(s->msg, sizeof s->msg, BRG_ERR_INTERNAL, "op '%s' is not a collective", op->name);
    }
    return st;
}

static int is_collective(const brg__op *op) { return op->kind >= BRG_OP_TP_COPY && op->kind <= BRG_OP_TP_SCATTER; }

static brg_status forward_op(brg__stage *s, int slot, int64_t i) {
    const brg__op *op = stage_op(s, i);
    if (is_collective(op)) return tp_forward(s, op, s->acts[slot][op->inputs[0]->index], s->acts[slot][op->output->index]);
    brg__op_call call = {.op = op, .batch = s->batch, .out = s->acts[slot][op->output->index],
                         .aux = s->aux[slot][i - s->op_begin], .scratch = s->scratch, .msg = s->msg,
                         .tp_rank = s->tp_rank, .comm = s->tp_group ? &s->comm : NULL};
    for (int q = 0; q < op->n_inputs; q++) call.in[q] = operand(s, slot, op->inputs[q]);
    return s->be->vt->forward(s->be, &call);
}

brg_status brg__stage_sum_partial_grads(brg__stage *s, int64_t only) {
    const brg_graph *g = s->graph;
    for (int64_t p = only >= 0 ? only : 0; p < (only >= 0 ? only + 1 : g->n_params); p++) {
        if (!g->params[p]->partial_grad || !s->param_grad[p] || !s->tp_group) continue;
        BRG__CHECK(group_run(s, BRG__ALLREDUCE, s->param_grad[p], brg__tensor_numel(g->params[p], 1), g->params[p]->name));
    }
    return BRG_OK;
}

/* ---- numerical checks ------------------------------------------------------------------------------ */

/* 0 when the 4-byte float or 2-byte bfloat16 at p is finite; else 1 for an infinity, 2 for a NaN (the
 * exponent bits all set, and the fraction zero or not). */
static int nonfinite_element(const unsigned char *p, int64_t element_bytes) {
    uint32_t v, exponent, fraction;
    if (element_bytes == 2) {
        uint16_t h;
        memcpy(&h, p, sizeof h);
        v = h;
        exponent = 0x7f80u;
        fraction = 0x007fu;
    } else {
        memcpy(&v, p, sizeof v);
        exponent = 0x7f800000u;
        fraction = 0x007fffffu;
    }
    if ((v & exponent) != exponent) return 0;
    return (v & fraction) ? 2 : 1;
}

/* The index of the first NaN or infinity among the elements of buf (bytes long, in the backend's memory),
 * or -1; *value says which. Read through the backend in pieces, so any backend's memory can be checked. */
static int64_t first_nonfinite(const brg__stage *s, const void *buf, size_t bytes, int64_t element_bytes,
                               const char **value) {
    unsigned char piece[16384]; /* a multiple of both element sizes */
    for (size_t at = 0; at < bytes; at += sizeof piece) {
        size_t n = bytes - at < sizeof piece ? bytes - at : sizeof piece;
        s->be->vt->download(s->be, piece, (const unsigned char *)buf + at, n);
        for (size_t k = 0; k + (size_t)element_bytes <= n; k += (size_t)element_bytes) {
            int kind = nonfinite_element(piece + k, element_bytes);
            if (kind) {
                *value = kind == 2 ? "NaN" : "an infinity";
                return (int64_t)((at + k) / (size_t)element_bytes);
            }
        }
    }
    return -1;
}

static const char *layer_of(const brg__stage *s, const brg__op *op) {
    return op->layer >= 0 && op->layer < s->graph->n_layers ? s->graph->layers[op->layer].name : "?";
}

/* Checks buf, written by op: its output in forward (t NULL), or the gradient of its input t in backward;
 * BRG_ERR_NUMERICAL with the message when it holds a NaN or an infinity. */
static brg_status check_written(brg__stage *s, const brg__op *op, const brg_tensor *t, const void *buf, int param) {
    if (!t) t = op->output;
    if (!buf || t->dtype != BRG_F32) return BRG_OK;
    int64_t element_bytes = param ? (int64_t)sizeof(float) : s->be->vt->element_bytes(s->be, t->dtype);
    size_t bytes = param ? (size_t)brg__tensor_numel(t, 1) * sizeof(float) : brg__stage_tensor_bytes(s, t);
    const char *value = "";
    int64_t at = first_nonfinite(s, buf, bytes, element_bytes, &value);
    if (at < 0) return BRG_OK;
    char what[BRG_MAX_NAME + 64] = "the output";
    if (t != op->output) snprintf(what, sizeof what, "the gradient of '%s' written by the backward", t->name);
    return brg__message_set(s->msg, sizeof s->msg, BRG_ERR_NUMERICAL, "%s in %s of op '%s' (%s, layer %s), element %lld of %lld",
                            value, what, op->name, brg_op_kind_name(op->kind), layer_of(s, op), (long long)at,
                            (long long)(bytes / (size_t)element_bytes));
}

/* A NaN into the first element of op i's output (the test hook), both in fp32 and in bf16 (all ones). */
static void poison(brg__stage *s, int slot, int64_t i) {
    const unsigned char ones[4] = {0xff, 0xff, 0xff, 0xff};
    const brg_tensor *out = stage_op(s, i)->output;
    if (out->dtype == BRG_F32 && brg__stage_tensor_bytes(s, out) >= sizeof ones)
        s->be->vt->upload(s->be, s->acts[slot][out->index], ones, sizeof ones);
}

brg_status brg__stage_forward(brg__stage *s, int slot) {
    BRG__CHECK(brg__stage_acquire(s, slot));
    for (int64_t i = s->op_begin; i < s->op_end; i++) {
        if (!ensure_op_memory(s, slot, i)) return out_of_memory(s, "activations", slot);
        BRG__CHECK(forward_op(s, slot, i));
        if (slot == s->poison_slot && i == s->op_begin) poison(s, slot, i);
        if (s->check_finite) {
            const brg__op *op = stage_op(s, i);
            BRG__CHECK(check_written(s, op, NULL, s->acts[slot][op->output->index], 0));
        }
    }
    return BRG_OK;
}

/* Whether policy drops op i's output and internals after forward. The loss is never dropped: it is read
 * right after forward anyway and is tiny. */
static int drops(const brg__stage *s, int64_t i) {
    const brg__op *op = stage_op(s, i);
    if (s->recompute == BRG_RECOMPUTE_NONE || op->kind == BRG_OP_CROSS_ENTROPY) return 0;
    if (s->recompute == BRG_RECOMPUTE_FULL) return 1;
    brg__op_costs c;
    brg__op_costs_get(op, 1, &c);
    return c.cheap_to_recompute;
}

void brg__stage_drop(brg__stage *s, int slot) {
    if (s->recompute == BRG_RECOMPUTE_NONE || s->dropped[slot]) return;
    for (int64_t i = s->op_begin; i < s->op_end; i++) {
        if (!drops(s, i)) continue;
        int64_t t = stage_op(s, i)->output->index;
        s->be->vt->free(s->be, s->acts[slot][t]);
        s->acts[slot][t] = NULL;
        s->be->vt->free(s->be, s->aux[slot][i - s->op_begin]);
        s->aux[slot][i - s->op_begin] = NULL;
    }
    s->dropped[slot] = 1;
}

brg_status brg__stage_recompute(brg__stage *s, int slot) {
    if (!s->dropped[slot]) return BRG_OK;
    for (int64_t i = s->op_begin; i < s->op_end; i++) {
        if (!drops(s, i)) continue;
        if (!ensure_op_memory(s, slot, i)) return out_of_memory(s, "recomputed activations", slot);
        BRG__CHECK(forward_op(s, slot, i));
    }
    s->dropped[slot] = 0;
    return BRG_OK;
}

brg_status brg__stage_backward(brg__stage *s, int slot, brg__backward_part part) {
    BRG__CHECK(brg__stage_recompute(s, slot));
    BRG__CHECK(brg__stage_acquire_grads(s, slot));
    for (int64_t i = s->op_end - 1; i >= s->op_begin; i--) {
        const brg__op *op = stage_op(s, i);
        brg__op_call call = {.op = op, .batch = s->batch, .out = s->acts[slot][op->output->index],
                             .aux = s->aux[slot][i - s->op_begin], .scratch = s->scratch, .msg = s->msg,
                             .tp_rank = s->tp_rank, .comm = s->tp_group ? &s->comm : NULL};
        call.dout = op->kind == BRG_OP_CROSS_ENTROPY ? s->dloss : s->act_grads[slot][op->output->index];
        int wanted = 0;
        if ((part & BRG__BACKWARD_INPUT) && s->zero_before[op->output->index] == i)
            s->be->vt->zero(s->be, s->act_grads[slot][op->output->index], brg__stage_tensor_bytes(s, op->output));
        for (int q = 0; q < op->n_inputs; q++) {
            const brg_tensor *t = op->inputs[q];
            call.in[q] = operand(s, slot, t);
            if (t->kind == BRG_TENSOR_PARAMETER && (part & BRG__BACKWARD_WEIGHT)) {
                call.din[q] = s->consumer_grad[(i - s->op_begin) * BRG__MAX_INPUTS + q];
            } else if (t->kind == BRG_TENSOR_ACTIVATION && (part & BRG__BACKWARD_INPUT)) {
                if (s->zero_before[t->index] == i) {
                    int first = 1, alone = 1; /* an op reading t twice zeroes it once */
                    for (int r = 0; r < op->n_inputs; r++) {
                        if (r == q || op->inputs[r] != t) continue;
                        alone = 0;
                        if (r < q) first = 0;
                    }
                    /* The sole reading of t by its first backward: the kernel writes the gradient outright
                     * where it can, sparing a zero-fill and a read of the whole buffer. */
                    if (alone && brg__op_writes_fresh(op, q)) call.din_fresh |= 1u << q;
                    else if (first) s->be->vt->zero(s->be, s->act_grads[slot][t->index], brg__stage_tensor_bytes(s, t));
                }
                call.din[q] = s->act_grads[slot][t->index];
            }
            wanted |= call.din[q] != NULL;
        }
        if (wanted && is_collective(op)) BRG__CHECK(tp_backward(s, op, call.dout, call.din[0]));
        else if (wanted) BRG__CHECK(s->be->vt->backward(s->be, &call));
        for (int q = 0; wanted && s->check_finite && q < op->n_inputs; q++)
            BRG__CHECK(check_written(s, op, op->inputs[q], call.din[q], op->inputs[q]->kind == BRG_TENSOR_PARAMETER));
        if (s->grad_hook && (part & BRG__BACKWARD_WEIGHT) && slot == s->hook_slot)
            BRG__CHECK(s->grad_hook(s->hook_ctx, s, i));
    }
    return BRG_OK;
}

brg_status brg__stage_own_param_grad(brg__stage *s, int64_t p) {
    if (!s->param[p] || s->grad_owned[p]) return BRG_OK;
    s->param_grad[p] = s->be->vt->alloc(s->be, (size_t)brg__tensor_numel(s->graph->params[p], 1) * sizeof(float));
    if (!s->param_grad[p]) return BRG_ERR_OUT_OF_MEMORY;
    s->grad_owned[p] = 1;
    return BRG_OK;
}

void brg__stage_zero_grads(brg__stage *s) {
    for (int64_t k = 0; k < op_count(s) * BRG__MAX_INPUTS; k++) {
        if (!s->consumer_grad[k]) continue;
        const brg_tensor *t = stage_op(s, s->op_begin + k / BRG__MAX_INPUTS)->inputs[k % BRG__MAX_INPUTS];
        s->be->vt->zero(s->be, s->consumer_grad[k], (size_t)brg__tensor_numel(t, 1) * sizeof(float));
    }
}

void brg__stage_reduce_param_grad(brg__stage *s, int64_t p) {
    const brg_graph *g = s->graph;
    if (s->param_consumers[p] < 2) return;
    int64_t n = brg__tensor_numel(g->params[p], 1);
    int first = 1;
    for (int64_t k = 0; k < op_count(s) * BRG__MAX_INPUTS; k++) {
        const brg__op *op = stage_op(s, s->op_begin + k / BRG__MAX_INPUTS);
        int q = (int)(k % BRG__MAX_INPUTS);
        if (q >= op->n_inputs || op->inputs[q] != g->params[p]) continue;
        if (first)
            s->be->vt->copy(s->be, s->param_grad[p], s->consumer_grad[k], (size_t)n * sizeof(float));
        else
            s->be->vt->accumulate(s->be, s->param_grad[p], s->consumer_grad[k], n);
        first = 0;
    }
}

void brg__stage_reduce_grads(brg__stage *s) {
    for (int64_t p = 0; p < s->graph->n_params; p++) brg__stage_reduce_param_grad(s, p);
}

int64_t brg__stage_first_consumer(const brg__stage *s, int64_t p) {
    const brg_tensor *param = s->graph->params[p];
    for (int64_t i = s->op_begin; i < s->op_end; i++) {
        const brg__op *op = stage_op(s, i);
        for (int q = 0; q < op->n_inputs; q++)
            if (op->inputs[q] == param) return i;
    }
    return -1;
}

void brg__stage_lend_grad(brg__stage *s, int64_t p, float *view) {
    if (!s->param[p] || s->grad_lent[p]) return;
    if (s->grad_owned[p]) {
        s->be->vt->free(s->be, s->param_grad[p]);
    } else {
        for (int64_t k = 0; k < op_count(s) * BRG__MAX_INPUTS; k++)
            if (s->consumer_grad[k] && s->consumer_grad[k] == s->param_grad[p]) s->consumer_grad[k] = view;
        s->be->vt->free(s->be, s->param_grad[p]);
    }
    s->param_grad[p] = view;
    s->grad_lent[p] = 1;
}

void brg__stage_release_moments(brg__stage *s, int64_t p) {
    s->be->vt->free(s->be, s->adam_m[p]);
    s->be->vt->free(s->be, s->adam_v[p]);
    s->adam_m[p] = s->adam_v[p] = NULL;
}

double brg__stage_grad_sum_squares(brg__stage *s, int64_t p) {
    if (!s->param_grad[p]) return 0.0;
    return s->be->vt->sum_squares(s->be, s->param_grad[p], brg__tensor_numel(s->graph->params[p], 1));
}

void brg__stage_optimizer_step(brg__stage *s, float grad_scale, float lr, float beta1, float beta2, float eps,
                               float weight_decay, int step) {
    const brg_graph *g = s->graph;
    for (int64_t p = 0; p < g->n_params; p++) {
        if (!s->param[p]) continue;
        const brg_tensor *t = g->params[p];
        int64_t n = brg__tensor_numel(t, 1);
        if (grad_scale != 1.0f) s->be->vt->scale(s->be, s->param_grad[p], n, grad_scale);
        /* Decay matrices and embeddings, not biases and norm gains (the usual GPT-2 recipe). */
        float wd = t->ndim >= 2 ? weight_decay : 0.0f;
        s->be->vt->adamw(s->be, s->param[p], s->param_grad[p], s->adam_m[p], s->adam_v[p], n, lr, beta1, beta2, eps,
                         wd, step);
    }
}

/* Positions of the loss output per micro-batch; 0 when this stage does not hold the loss. */
static int64_t loss_positions(const brg__stage *s) {
    const brg_graph *g = s->graph;
    if (g->loss_op < s->op_begin || g->loss_op >= s->op_end) return 0;
    return brg__tensor_numel(g->ops[g->loss_op].output, s->batch);
}

/* sums[j] = the values of host[j n, (j + 1) n) added in double, in order. */
static void sum_rows(const float *host, int64_t n, int count, double *sums) {
    for (int j = 0; j < count; j++) {
        double total = 0.0;
        for (int64_t i = 0; i < n; i++) total += host[(int64_t)j * n + i];
        sums[j] = total;
    }
}

brg_status brg__stage_loss_sum(brg__stage *s, int slot, double *sum) {
    int64_t n = loss_positions(s);
    if (!n) return BRG_ERR_INVALID_USAGE;
    const brg_tensor *loss = s->graph->ops[s->graph->loss_op].output;
    float *host = brg__malloc((size_t)n * sizeof(float));
    if (!host) return out_of_memory(s, "the loss values", slot);
    s->be->vt->download(s->be, host, s->acts[slot][loss->index], (size_t)n * sizeof(float));
    sum_rows(host, n, 1, sum);
    free(host);
    return BRG_OK;
}

brg_status brg__stage_loss_keep(brg__stage *s, int slot) {
    int64_t n = loss_positions(s);
    if (!n || slot < 0 || slot >= s->n_slots) return BRG_ERR_INVALID_USAGE;
    const brg_tensor *loss = s->graph->ops[s->graph->loss_op].output;
    s->be->vt->copy(s->be, s->loss_kept + (int64_t)slot * n, s->acts[slot][loss->index], (size_t)n * sizeof(float));
    return BRG_OK;
}

brg_status brg__stage_loss_sums(brg__stage *s, int count, double *sums) {
    int64_t n = loss_positions(s);
    if (!n || count < 0 || count > s->n_slots) return BRG_ERR_INVALID_USAGE;
    float *host = brg__malloc((size_t)n * (size_t)(count ? count : 1) * sizeof(float));
    if (!host)
        return brg__message_set(s->msg, sizeof s->msg, BRG_ERR_OUT_OF_MEMORY,
                                "out of memory reading the step's loss values (%lld floats) on the host",
                                (long long)(n * count));
    s->be->vt->download(s->be, host, s->loss_kept, (size_t)n * (size_t)count * sizeof(float));
    sum_rows(host, n, count, sums);
    free(host);
    return BRG_OK;
}
