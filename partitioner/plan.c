/* The plan handle: what it holds, its accessors, its fingerprints, and how it becomes training options. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "partitioner_internal.h"

/* ---- formatting helpers ------------------------------------------------------------------------- */

void brg__format_bytes(double bytes, char *buf, size_t size) {
    if (bytes >= 1e12) snprintf(buf, size, "%.2f TB", bytes / 1e12);
    else if (bytes >= 1e9) snprintf(buf, size, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1e6) snprintf(buf, size, "%.1f MB", bytes / 1e6);
    else if (bytes >= 1e3) snprintf(buf, size, "%.1f kB", bytes / 1e3);
    else snprintf(buf, size, "%.0f B", bytes);
}

void brg__format_seconds(double seconds, char *buf, size_t size) {
    if (seconds >= 1.0) snprintf(buf, size, "%.3f s", seconds);
    else if (seconds >= 1e-3) snprintf(buf, size, "%.2f ms", seconds * 1e3);
    else snprintf(buf, size, "%.1f us", seconds * 1e6);
}

const char *brg__schedule_title(brg_schedule_kind kind) {
    switch (kind) {
    case BRG_SCHEDULE_GPIPE: return "GPipe";
    case BRG_SCHEDULE_1F1B: return "1F1B";
    case BRG_SCHEDULE_INTERLEAVED_1F1B: return "interleaved 1F1B";
    case BRG_SCHEDULE_ZB_H1: return "ZB-H1";
    default: return "unknown";
    }
}

/* Runs of consecutive devices as "a-b", arithmetic progressions of many as "a,b,...,z (n)". */
void brg__format_devices(const int *devices, int count, char *buf, size_t size) {
    buf[0] = '\0';
    if (count <= 0) return;
    if (count >= 4) {
        int step = devices[1] - devices[0], regular = step > 1;
        for (int i = 2; i < count && regular; i++) regular = devices[i] - devices[i - 1] == step;
        if (regular) {
            snprintf(buf, size, "%d,%d,...,%d (%d)", devices[0], devices[1], devices[count - 1], count);
            return;
        }
    }
    size_t used = 0;
    for (int i = 0; i < count && used < size;) {
        int j = i;
        while (j + 1 < count && devices[j + 1] == devices[j] + 1) j++;
        int n = j > i ? snprintf(buf + used, size - used, "%s%d-%d", used ? "," : "", devices[i], devices[j])
                      : snprintf(buf + used, size - used, "%s%d", used ? "," : "", devices[i]);
        used += n > 0 ? (size_t)n : 0;
        i = j + 1;
    }
}

const char *brg_recompute_name(brg_recompute policy) {
    switch (policy) {
    case BRG_RECOMPUTE_NONE: return "none";
    case BRG_RECOMPUTE_FULL: return "full";
    case BRG_RECOMPUTE_SELECTIVE: return "selective";
    default: return "unknown";
    }
}

brg_status brg_recompute_from_name(const char *name, brg_recompute *out) {
    if (!name || !out) return BRG_ERR_INVALID_ARGUMENT;
    for (int k = BRG_RECOMPUTE_NONE; k <= BRG_RECOMPUTE_SELECTIVE; k++)
        if (strcmp(name, brg_recompute_name((brg_recompute)k)) == 0) {
            *out = (brg_recompute)k;
            return BRG_OK;
        }
    return BRG_ERR_NAME;
}

/* ---- lifecycle ------------------------------------------------------------------------------------- */

brg_plan *brg__plan_new(int stages, int ranks, int replicas, int tp, int layers) {
    brg_plan *p = brg__calloc(1, sizeof *p);
    if (!p) return NULL;
    if (tp < 1) tp = 1;
    size_t devices = (size_t)ranks * (size_t)replicas * (size_t)tp;
    p->layers = layers;
    p->layer_names = brg__calloc((size_t)layers, sizeof *p->layer_names);
    p->first = brg__calloc((size_t)stages + 1, sizeof *p->first);
    p->policy = brg__calloc((size_t)stages, sizeof *p->policy);
    p->devices = brg__calloc(devices, sizeof *p->devices);
    p->device_node = brg__calloc(devices, sizeof *p->device_node);
    p->stages = brg__calloc((size_t)stages, sizeof *p->stages);
    p->ranks = brg__calloc((size_t)ranks, sizeof *p->ranks);
    if (!p->layer_names || !p->first || !p->policy || !p->devices || !p->device_node || !p->stages || !p->ranks) {
        brg_plan_destroy(p);
        return NULL;
    }
    p->config.ranks = ranks;
    p->config.replicas = replicas;
    p->config.chunks = stages / ranks;
    p->config.tp = tp;
    p->node_devices = (int)devices;
    return p;
}

void brg_plan_destroy(brg_plan *plan) {
    if (!plan) return;
    for (int l = 0; plan->layer_names && l < plan->layers; l++) free(plan->layer_names[l]);
    free(plan->layer_names);
    free(plan->first);
    free(plan->policy);
    free(plan->devices);
    free(plan->device_node);
    free(plan->stages);
    free(plan->ranks);
    brg_timeline_destroy(plan->timeline);
    free(plan->stage_bubble);
    free(plan->comparisons);
    free(plan);
}

brg_status brg__plan_fill_names(brg_plan *plan, const brg_graph *g) {
    for (int l = 0; l < plan->layers && l < g->n_layers; l++) {
        free(plan->layer_names[l]);
        plan->layer_names[l] = brg__strdup(g->layers[l].name);
        if (!plan->layer_names[l]) return BRG_ERR_OUT_OF_MEMORY;
    }
    return BRG_OK;
}

static const char *layer_name(const brg_plan *plan, int l) {
    return l >= 0 && l < plan->layers && plan->layer_names[l] ? plan->layer_names[l] : "?";
}

/* Fills the structural part of stages and ranks (what a loaded plan also has). */
static void fill_structure(brg_plan *plan) {
    const brg__config *c = &plan->config;
    int R = c->ranks, S = R * c->chunks;
    for (int s = 0; s < S; s++) {
        brg_plan_stage *st = &plan->stages[s];
        st->index = s;
        st->rank = s % R;
        st->chunk = s / R;
        st->first_layer = plan->first[s];
        st->end_layer = plan->first[s + 1];
        st->first_layer_name = layer_name(plan, st->first_layer);
        st->last_layer_name = layer_name(plan, st->end_layer - 1);
        st->recompute = plan->policy[s];
    }
    int tp = brg__config_tp(c);
    for (int r = 0; r < R; r++) {
        brg_plan_rank *rk = &plan->ranks[r];
        rk->rank = r;
        rk->device_count = c->replicas * tp;
        rk->devices = plan->devices + (size_t)r * (size_t)c->replicas * (size_t)tp;
        rk->tensor_parallel = tp;
        rk->tensor_parallel_link = tp > 1 ? plan->tp_link : BRG_LINK_SELF;
        rk->tensor_parallel_bandwidth = tp > 1 ? plan->tp_bandwidth : 0.0;
    }
    brg_plan_summary *sm = &plan->summary;
    sm->model_name = plan->model_name;
    sm->model_fingerprint = plan->model_fingerprint;
    sm->topology_fingerprint = plan->topology_fingerprint;
    sm->topology_source = plan->topology_source;
    sm->devices = plan->devices_total;
    sm->nodes = plan->nodes;
    sm->layers = plan->layers;
    sm->parameters = plan->parameters;
    sm->tokens_per_sample = plan->tokens_per_sample;
    sm->pipeline_stages = R;
    sm->data_parallel = c->replicas;
    sm->zero = c->zero;
    sm->chunks = c->chunks;
    sm->global_batch = plan->global_batch;
    sm->micro_batch = c->micro_batch;
    sm->micro_batches = c->micro_batches;
    sm->schedule = c->kind;
    sm->precision = plan->precision;
    sm->tensor_parallel = tp;
    sm->sequence_parallel = tp > 1 && c->sp;
    sm->vocabulary_padding = plan->vocab_padding;
}

void brg__plan_structure(brg_plan *plan) { fill_structure(plan); }

void brg__plan_set_predictions(brg_plan *plan, const brg__model *m, const brg__evaluation *e, const brg__plan_placement *p,
                               brg_timeline *timeline, double makespan) {
    const brg__config *c = &plan->config;
    int R = c->ranks, S = R * c->chunks;
    plan->devices_total = m->all_devices;
    fill_structure(plan);
    brg_plan_summary *sm = &plan->summary;
    plan->predicted = 1;
    sm->predicted = 1;
    sm->iteration_seconds = makespan;
    double samples = (double)plan->global_batch;
    sm->tokens_per_second = samples * (double)plan->tokens_per_sample / makespan;
    sm->mfu = m->model_flops_per_sample * samples / (makespan * m->peak_sum);
    sm->tflops_per_device = m->model_flops_per_sample * samples / makespan / m->all_devices / 1e12;
    brg_timeline_summary ts;
    brg_timeline_get_summary(timeline, &ts);
    sm->bubble = ts.bubble_fraction;
    plan->timeline = timeline;
    plan->model_flops_per_sample = m->model_flops_per_sample;
    plan->peak_sum = m->peak_sum;
    for (int s = 0; s < S; s++) {
        brg_plan_stage *st = &plan->stages[s];
        int64_t params = 0;
        for (int l = st->first_layer; l < st->end_layer; l++) params += m->layer_params[l];
        st->parameters = params;
        st->forward_seconds = e->forward[s];
        st->backward_seconds = e->backward[s];
        st->recompute_seconds = e->recompute[s];
        st->tensor_parallel_bytes = e->tp_bytes[s];
        st->tensor_parallel_seconds = e->tp_seconds[s];
        if (s + 1 < S) {
            int l = s % R;
            st->boundary_bytes = e->boundary_bytes[s];
            st->boundary_link = p->link_kind[l];
            st->boundary_crosses_nodes = p->link_cross_node[l];
            st->transfer_seconds = e->transfer[s];
        } else {
            st->boundary_link = BRG_LINK_SELF;
        }
    }
    for (int r = 0; r < R; r++) {
        brg_plan_rank *rk = &plan->ranks[r];
        rk->capacity_bytes = p->rank_capacity[r];
        rk->usable_bytes = p->rank_usable[r];
        rk->parameter_bytes = rk->gradient_bytes = rk->optimizer_bytes = 0;
        for (int v = 0; v < c->chunks; v++) {
            const brg__stage_memory *sm2 = &e->memory[v * R + r];
            rk->parameter_bytes += sm2->params;
            rk->gradient_bytes += sm2->gradients;
            rk->optimizer_bytes += sm2->optimizer;
        }
        rk->activation_bytes = e->rank_activation[r];
        rk->workspace_bytes = e->rank_workspace[r];
        rk->total_bytes = e->rank_total[r];
        rk->peak_in_flight = e->rank_in_flight[r];
        rk->busy_seconds = e->busy[r];
        rk->allreduce_seconds = e->allreduce[r];
        rk->optimizer_seconds = e->optimizer[r];
        rk->allreduce_link = p->ring_kind[r];
        rk->allreduce_total_seconds = e->allreduce_total[r];
        rk->allreduce_bytes = 0;
        rk->moment_bytes = e->rank_moment_bytes[r];
        if (c->replicas > 1) { /* the gradients in one flat buffer, ZeRO-1's moment parts */
            int64_t elements = 0;
            for (int v = 0; v < c->chunks; v++) elements += plan->stages[v * c->ranks + r].parameters;
            rk->allreduce_bytes = 4 * elements;
            if (c->zero) rk->optimizer_bytes = e->rank_moment_bytes[r];
            rk->gradient_bytes = e->rank_static[r] - rk->parameter_bytes - rk->optimizer_bytes;
        }
        if (rk->allreduce_seconds > sm->allreduce_seconds) sm->allreduce_seconds = rk->allreduce_seconds;
        if (rk->total_bytes > sm->peak_memory_bytes) sm->peak_memory_bytes = rk->total_bytes;
    }
}

/* ---- accessors ------------------------------------------------------------------------------------ */

brg_status brg_plan_get_summary(const brg_plan *plan, brg_plan_summary *out) {
    if (!plan || !out) return BRG_ERR_INVALID_ARGUMENT;
    *out = plan->summary;
    return BRG_OK;
}

brg_status brg_plan_get_stage(const brg_plan *plan, int stage, brg_plan_stage *out) {
    if (!plan || !out) return BRG_ERR_INVALID_ARGUMENT;
    if (stage < 0 || stage >= plan->config.ranks * plan->config.chunks) return BRG_ERR_NOT_FOUND;
    *out = plan->stages[stage];
    return BRG_OK;
}

brg_status brg_plan_get_rank(const brg_plan *plan, int rank, brg_plan_rank *out) {
    if (!plan || !out) return BRG_ERR_INVALID_ARGUMENT;
    if (rank < 0 || rank >= plan->config.ranks) return BRG_ERR_NOT_FOUND;
    *out = plan->ranks[rank];
    return BRG_OK;
}

int brg_plan_comparison_count(const brg_plan *plan) { return plan ? plan->comparison_count : 0; }

brg_status brg_plan_get_comparison(const brg_plan *plan, int index, brg_plan_comparison *out) {
    if (!plan || !out) return BRG_ERR_INVALID_ARGUMENT;
    if (index < 0 || index >= plan->comparison_count) return BRG_ERR_NOT_FOUND;
    const brg__comparison *c = &plan->comparisons[index];
    memset(out, 0, sizeof *out);
    out->label = c->label;
    out->description = c->description;
    out->feasible = c->feasible;
    out->why = c->why;
    out->pipeline_stages = c->config.ranks;
    out->data_parallel = c->config.replicas;
    out->chunks = c->config.chunks;
    out->micro_batch = c->config.micro_batch;
    out->micro_batches = c->config.micro_batches;
    out->schedule = c->config.kind;
    out->iteration_seconds = c->iteration_seconds;
    out->tokens_per_second = c->tokens_per_second;
    out->mfu = c->mfu;
    out->bubble = c->bubble;
    out->peak_memory_bytes = c->peak_memory_bytes;
    out->tensor_parallel = brg__config_tp(&c->config);
    out->sequence_parallel = out->tensor_parallel > 1 && c->config.sp;
    return BRG_OK;
}

/* ---- fingerprints and checks ------------------------------------------------------------------------ */

static uint64_t hash_tensor(uint64_t h, const brg_tensor *t) {
    int kind = t->kind, dtype = t->dtype;
    h = brg__fnv1a(h, &kind, sizeof kind);
    h = brg__fnv1a(h, &dtype, sizeof dtype);
    h = brg__fnv1a(h, &t->ndim, sizeof t->ndim);
    h = brg__fnv1a(h, t->shape, sizeof t->shape[0] * (size_t)t->ndim);
    if (t->kind != BRG_TENSOR_ACTIVATION) h = brg__fnv1a(h, t->name, strlen(t->name) + 1);
    return h;
}

uint64_t brg_plan_model_fingerprint(const brg_graph *g) {
    if (!g) return 0;
    uint64_t h = BRG__FNV_OFFSET;
    h = brg__fnv1a(h, &g->n_layers, sizeof g->n_layers);
    for (int l = 0; l < g->n_layers; l++) {
        h = brg__fnv1a(h, g->layers[l].name, strlen(g->layers[l].name) + 1);
        h = brg__fnv1a(h, &g->layers[l].op_begin, sizeof g->layers[l].op_begin);
        h = brg__fnv1a(h, &g->layers[l].op_end, sizeof g->layers[l].op_end);
    }
    for (int64_t i = 0; i < g->n_ops; i++) {
        const brg__op *op = &g->ops[i];
        int kind = op->kind;
        h = brg__fnv1a(h, &kind, sizeof kind);
        h = brg__fnv1a(h, op->name, strlen(op->name) + 1);
        for (int q = 0; q < op->n_inputs; q++) h = hash_tensor(h, op->inputs[q]);
        h = hash_tensor(h, op->output);
    }
    for (int64_t p = 0; p < g->n_params; p++) h = hash_tensor(h, g->params[p]);
    return h ? h : 1;
}

brg_status brg_plan_check(const brg_plan *plan, const brg_graph *g, const brg_topology *t, brg_error *err) {
    if (!plan || !g) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_plan_check: %s is NULL", !plan ? "the plan" : "the graph");
    uint64_t fp = brg_plan_model_fingerprint(g);
    if (fp != plan->model_fingerprint || brg_graph_layer_count(g) != plan->layers)
        return brg__error_set(err, BRG_ERR_MISMATCH,
                              "the plan was made for another model: '%s' (fingerprint %016llx, %d layers), and this one "
                              "has fingerprint %016llx and %d layers; plan this model with brigade plan",
                              plan->model_name, (unsigned long long)plan->model_fingerprint, plan->layers,
                              (unsigned long long)fp, brg_graph_layer_count(g));
    char batch_msg[BRG_ERROR_MESSAGE_MAX];
    if (brg__graph_check_batch(g, plan->config.micro_batch, batch_msg, sizeof batch_msg) != BRG_OK)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "the plan's micro_batch does not fit this model: %s",
                              batch_msg);
    int tp = brg__config_tp(&plan->config);
    if (tp > 1) {
        /* A hand-edited plan may ask for a split the model does not allow (t not dividing its heads). */
        brg_graph *local = NULL;
        brg_status s = brg__graph_localize(g, tp, plan->config.sp, &local, batch_msg);
        brg_graph_destroy(local);
        if (s == BRG_ERR_OUT_OF_MEMORY) return brg__error_set(err, s, "out of memory checking the plan's tensor parallelism");
        if (s != BRG_OK) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "the plan does not fit this model: %s", batch_msg);
    }
    if (!t) return BRG_OK;
    uint64_t tf = brg_topology_fingerprint(t);
    if (tf != plan->topology_fingerprint || brg_topology_device_count(t) != plan->devices_total)
        return brg__error_set(err, BRG_ERR_MISMATCH,
                              "the plan was made for other devices: %s (fingerprint %016llx, %d devices), and these "
                              "are %s (fingerprint %016llx, %d devices): another topology; plan for these devices with "
                              "brigade plan",
                              plan->topology_source, (unsigned long long)plan->topology_fingerprint, plan->devices_total,
                              brg_topology_source(t), (unsigned long long)tf, brg_topology_device_count(t));
    return BRG_OK;
}

brg_status brg_plan_train_options(const brg_plan *plan, const brg_graph *g, brg_train_options *opts, int *split,
                                  int split_capacity, brg_recompute *stage_recompute, int stage_recompute_capacity,
                                  brg_error *err) {
    if (!plan || !g || !opts)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_plan_train_options: %s is NULL",
                              !plan ? "the plan" : !g ? "the graph" : "opts");
    BRG__CHECK(brg_plan_check(plan, g, NULL, err));
    const brg__config *c = &plan->config;
    int S = c->ranks * c->chunks;
    if ((S > 1 && (!split || split_capacity < S - 1)) || !stage_recompute || stage_recompute_capacity < S)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                              "brg_plan_train_options: the plan has %d virtual stages: split needs room for %d and "
                              "stage_recompute for %d entries",
                              S, S - 1, S);
    brg_precision precision = plan->precision == BRG_PRECISION_TF32 ? BRG_PRECISION_FP32 : plan->precision;
    if (precision != BRG_PRECISION_FP32 && precision != BRG_PRECISION_BF16)
        return brg__error_set(err, BRG_ERR_UNSUPPORTED, "the plan trains in %s, and the runtime trains in fp32 or bf16",
                              brg_precision_name(plan->precision));
    opts->stages = c->ranks;
    opts->data_parallel = c->replicas;
    opts->tensor_parallel = brg__config_tp(c);
    opts->sequence_parallel = opts->tensor_parallel > 1 && c->sp;
    opts->zero = c->replicas > 1 ? c->zero : 0;
    opts->rank_layout = NULL; /* brg_plan_rank_layout */
    opts->chunks = c->chunks;
    opts->schedule = c->kind;
    opts->micro_batch = c->micro_batch;
    opts->micro_batches = c->micro_batches;
    for (int s = 1; s < S; s++) split[s - 1] = plan->first[s];
    opts->split = S > 1 ? split : NULL;
    opts->split_count = S - 1;
    for (int s = 0; s < S; s++) stage_recompute[s] = plan->policy[s];
    opts->stage_recompute = stage_recompute;
    opts->stage_recompute_count = S;
    opts->recompute = plan->policy[0];
    opts->backend = plan->device_kind == BRG_DEVICE_GPU ? BRG_BACKEND_CUDA : BRG_BACKEND_CPU;
    opts->precision = precision;
    return BRG_OK;
}

brg_status brg_plan_rank_layout(const brg_plan *plan, int *layout, int capacity, int *count) {
    if (!plan || !count || (!layout && capacity > 0)) return BRG_ERR_INVALID_ARGUMENT;
    const brg__config *c = &plan->config;
    int tp = brg__config_tp(c);
    *count = c->ranks * c->replicas * tp;
    if (capacity < *count) return BRG_ERR_INVALID_ARGUMENT;
    /* Rank k runs on device k (the topology's order: node after node, a node's GPUs in order). */
    for (int d = 0; d < c->replicas; d++)
        for (int r = 0; r < c->ranks; r++)
            for (int i = 0; i < tp; i++)
                layout[(d * c->ranks + r) * tp + i] = plan->devices[(r * c->replicas + d) * tp + i];
    return BRG_OK;
}
