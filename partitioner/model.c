/* The cost and memory models: what each layer costs on each kind of device at a micro-batch size, and
 * what a stage of layers holds, allocation by allocation, as the runtime holds it.
 *
 * Times: each op pass is a roofline, max(FLOPs / (peak * compute efficiency), bytes / (bandwidth * memory
 * efficiency)), plus a fixed overhead per pass (kernel launches); a profile replaces a layer's three pass
 * times on the devices it was measured on. Memory: the runtime allocates every tensor, internal and
 * parameter buffer separately, so each is rounded as the backend's allocator rounds it; sums are kept
 * as prefix sums over layers so a stage of any range costs O(1) to evaluate.
 *
 * Tensor parallelism of width t: every figure is that of the graph one rank of a group runs (its share of
 * each op, its slices of the parameters, the group's collectives as ops: brg__graph_localize), on groups of
 * t devices; the collectives' time, on the group's slowest link, adds to the pass that runs them, since
 * the ops after them wait for their result. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "partitioner_internal.h"

int64_t brg__alloc_round(brg_device_kind kind, int64_t bytes) {
    if (bytes <= 0) bytes = 1;
    if (kind == BRG_DEVICE_GPU) return (bytes + 255) / 256 * 256;
    /* jemalloc with MALLOCX_ALIGN(64): size classes 2^k (1 + i/4), i = 1..4, rounded to 64 bytes. */
    int64_t s = (bytes + 63) / 64 * 64;
    if (s <= 64) return 64;
    int64_t p = 64;
    while (p * 2 < s) p *= 2;
    int64_t step = p / 4 < 64 ? 64 : p / 4;
    return (s + step - 1) / step * step;
}

/* ---- building the model ------------------------------------------------------------------------ */

static brg_status check_options(const brg_plan_options *o, brg_error *err) {
#define OPTION(cond, ...) \
    if (!(cond)) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "plan option " __VA_ARGS__)
    OPTION(o->global_batch >= 1 && o->global_batch <= BRG_PLAN_MAX_GLOBAL_BATCH,
           "global_batch must be 1..%lld, got %lld", (long long)BRG_PLAN_MAX_GLOBAL_BATCH, (long long)o->global_batch);
    OPTION(o->pipeline_stages >= 0 && o->pipeline_stages <= BRG_TOPOLOGY_MAX_DEVICES,
           "pipeline_stages must be 0 (search) or 1..%d, got %d", BRG_TOPOLOGY_MAX_DEVICES, o->pipeline_stages);
    OPTION(o->data_parallel >= 0 && o->data_parallel <= BRG_TOPOLOGY_MAX_DEVICES,
           "data_parallel must be 0 (search) or 1..%d, got %d", BRG_TOPOLOGY_MAX_DEVICES, o->data_parallel);
    OPTION(o->micro_batch >= 0 && o->micro_batch <= o->global_batch,
           "micro_batch must be 0 (search) or 1..global_batch, got %lld", (long long)o->micro_batch);
    OPTION(o->schedule == BRG_PLAN_SCHEDULE_AUTO || (o->schedule >= 0 && o->schedule < BRG_SCHEDULE_KIND_COUNT),
           "schedule must be BRG_PLAN_SCHEDULE_AUTO or a brg_schedule_kind, got %d", o->schedule);
    OPTION(o->chunks >= 0 && o->chunks <= 16, "chunks must be 0 (search) or 1..16, got %d", o->chunks);
    OPTION(o->recompute == BRG_PLAN_RECOMPUTE_AUTO || (o->recompute >= BRG_RECOMPUTE_NONE &&
                                                      o->recompute <= BRG_RECOMPUTE_SELECTIVE),
           "recompute must be BRG_PLAN_RECOMPUTE_AUTO or a brg_recompute, got %d", o->recompute);
    OPTION(o->precision == BRG_PLAN_PRECISION_AUTO || (o->precision >= 0 && o->precision < BRG_PRECISION_COUNT),
           "precision must be BRG_PLAN_PRECISION_AUTO or a brg_precision, got %d", o->precision);
    OPTION(o->compute_efficiency > 0 && o->compute_efficiency <= 1, "compute_efficiency must be in (0, 1], got %g",
           o->compute_efficiency);
    OPTION(o->memory_efficiency > 0 && o->memory_efficiency <= 1, "memory_efficiency must be in (0, 1], got %g",
           o->memory_efficiency);
    OPTION(o->memory_headroom >= 0 && o->memory_headroom < 1, "memory_headroom must be in [0, 1), got %g",
           o->memory_headroom);
    OPTION(o->memory_reserve_bytes >= -1, "memory_reserve_bytes must be -1 (default) or >= 0, got %lld",
           (long long)o->memory_reserve_bytes);
    OPTION(o->pass_overhead_seconds == -1.0 || (o->pass_overhead_seconds >= 0 && isfinite(o->pass_overhead_seconds)),
           "pass_overhead_seconds must be -1 (default) or >= 0, got %g", o->pass_overhead_seconds);
    OPTION(o->model_flops_per_sample >= 0 && isfinite(o->model_flops_per_sample),
           "model_flops_per_sample must be >= 0, got %g", o->model_flops_per_sample);
    OPTION(o->alternatives >= 0 && o->alternatives <= 16, "alternatives must be 0..16, got %d", o->alternatives);
    OPTION(o->zero == 0 || o->zero == 1 || o->zero == BRG_PLAN_ZERO_AUTO, "zero must be 0, 1 or BRG_PLAN_ZERO_AUTO, got %d",
           o->zero);
    OPTION(o->tensor_parallel >= 0 && o->tensor_parallel <= BRG_TOPOLOGY_MAX_DEVICES,
           "tensor_parallel must be 0 (search) or 1..%d, got %d", BRG_TOPOLOGY_MAX_DEVICES, o->tensor_parallel);
    OPTION(o->sequence_parallel == 0 || o->sequence_parallel == 1 || o->sequence_parallel == BRG_PLAN_SEQUENCE_PARALLEL_AUTO,
           "sequence_parallel must be 0, 1 or BRG_PLAN_SEQUENCE_PARALLEL_AUTO, got %d", o->sequence_parallel);
    OPTION(o->max_simulated_instructions >= 1, "max_simulated_instructions must be >= 1, got %lld",
           (long long)o->max_simulated_instructions);
    OPTION((o->flags & ~(unsigned)(BRG_PLAN_TOPOLOGY_BLIND | BRG_PLAN_HEURISTIC)) == 0,
           "flags has unknown bits 0x%x", o->flags & ~(unsigned)(BRG_PLAN_TOPOLOGY_BLIND | BRG_PLAN_HEURISTIC));
#undef OPTION
    return BRG_OK;
}

/* The precision to plan at: the fastest 16-bit tensor precision every GPU has, else fp32. */
static brg_status choose_precision(brg__model *m, brg_error *err) {
    const brg_topology *t = m->topology;
    if (m->options.precision != BRG_PLAN_PRECISION_AUTO) {
        m->precision = (brg_precision)m->options.precision;
        for (int d = 0; d < m->all_devices; d++) {
            brg_device_info info;
            brg_topology_device_info(t, d, &info);
            if (info.peak_flops[m->precision] <= 0)
                return brg__error_set(err, BRG_ERR_INFEASIBLE,
                                      "device %d (%s, %s) has no %s figures: plan at another precision", d, info.name,
                                      info.model[0] ? info.model : "unknown model", brg_precision_name(m->precision));
        }
        return BRG_OK;
    }
    m->precision = BRG_PRECISION_FP32;
    if (m->kind != BRG_DEVICE_GPU) return BRG_OK;
    const brg_precision order[] = {BRG_PRECISION_BF16, BRG_PRECISION_FP16};
    for (int k = 0; k < 2; k++) {
        int all = 1;
        double slowest = INFINITY, slowest_fp32 = INFINITY;
        for (int d = 0; d < m->all_devices && all; d++) {
            brg_device_info info;
            brg_topology_device_info(t, d, &info);
            all = info.peak_flops[order[k]] > 0;
            slowest = fmin(slowest, info.peak_flops[order[k]]);
            slowest_fp32 = fmin(slowest_fp32, info.peak_flops[BRG_PRECISION_FP32]);
        }
        if (all && slowest > slowest_fp32) {
            m->precision = order[k];
            return BRG_OK;
        }
    }
    return BRG_OK;
}

/* out becomes the weaker of out and y: the smaller bandwidth (with its kind), the larger latency. */
static void link_weaker(brg_link *out, const brg_link *y) {
    if (y->bandwidth < out->bandwidth) {
        out->bandwidth = y->bandwidth;
        out->kind = y->kind;
    }
    if (y->latency > out->latency) out->latency = y->latency;
}

/* The device link a -> b and back: the smaller bandwidth, the larger latency. */
static void device_link(const brg__model *m, int a, int b, brg_link *out) {
    brg_link y;
    brg_topology_link(m->topology, a, b, out);
    brg_topology_link(m->topology, b, a, &y);
    link_weaker(out, &y);
}

void brg__model_link(const brg__model *m, int a, int b, brg_link *out) {
    device_link(m, brg__group_device(m, a, 0), brg__group_device(m, b, 0), out);
    for (int i = 1; i < m->tp; i++) {
        brg_link l;
        device_link(m, brg__group_device(m, a, i), brg__group_device(m, b, i), &l);
        link_weaker(out, &l);
    }
}

double brg__tp_collective_seconds(const brg__model *m, int kind, double bytes) {
    if (m->tp < 2 || kind == BRG__COMM_NONE || bytes <= 0) return 0.0;
    double t = (double)m->tp, steps = kind == BRG__COMM_ALLREDUCE ? 2.0 * (t - 1.0) : t - 1.0;
    return steps / t * bytes / m->tp_bandwidth + steps * m->tp_latency;
}

/* Groups of tp consecutive devices, each inside one node: the nodes' device counts must be multiples of tp. */
static brg_status build_groups(brg__model *m, brg_error *err) {
    const brg_topology *t = m->topology;
    m->node_first = brg__calloc((size_t)m->nodes, sizeof *m->node_first);
    m->node_groups = brg__calloc((size_t)m->nodes, sizeof *m->node_groups);
    if (!m->node_first || !m->node_groups) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    int smallest = INT32_MAX;
    for (int n = 0; n < m->nodes; n++) {
        brg_node_info ni;
        brg_topology_node_info(t, n, &ni);
        if (ni.device_count < smallest) smallest = ni.device_count;
    }
    for (int n = 0; n < m->nodes; n++) {
        brg_node_info ni;
        brg_topology_node_info(t, n, &ni);
        if (m->tp > ni.device_count)
            return brg__error_set(err, BRG_ERR_INFEASIBLE,
                                  "tensor parallelism of %d needs %d devices in one node, and node %d (%s) has %d: a "
                                  "tensor-parallel group stays inside a node, on its fast links (t must divide every "
                                  "node's devices: the smallest node has %d)",
                                  m->tp, m->tp, n, ni.name, ni.device_count, smallest);
        if (ni.device_count % m->tp || ni.first_device % m->tp)
            return brg__error_set(err, BRG_ERR_INFEASIBLE,
                                  "tensor parallelism of %d does not divide the %d devices of node %d (%s): a "
                                  "tensor-parallel group is %d devices of one node",
                                  m->tp, ni.device_count, n, ni.name, m->tp);
        m->node_first[n] = ni.first_device / m->tp;
        m->node_groups[n] = ni.device_count / m->tp;
    }
    /* The group's collectives run over its slowest pair (exact for a switch; a bound for a ring of pairs). */
    brg_link weakest = {BRG_LINK_SELF, INFINITY, 0.0};
    for (int g = 0; g < m->devices && m->tp > 1; g++)
        for (int i = 0; i < m->tp; i++)
            for (int j = i + 1; j < m->tp; j++) {
                brg_link l;
                device_link(m, brg__group_device(m, g, i), brg__group_device(m, g, j), &l);
                link_weaker(&weakest, &l);
            }
    m->tp_bandwidth = weakest.bandwidth;
    m->tp_latency = weakest.latency;
    m->tp_link = weakest.kind;
    /* A measured hand-off between ranks on these devices is the least a collective's step costs. */
    if (m->tp > 1 && m->profile) {
        brg_device_info info;
        brg_topology_device_info(t, 0, &info);
        if (strcmp(brg_profile_device_model(m->profile), info.model) == 0)
            m->tp_latency = fmax(m->tp_latency, brg_profile_transfer_latency(m->profile));
    }
    return BRG_OK;
}

static brg_status build_devices(brg__model *m, brg_error *err) {
    const brg_topology *t = m->topology;
    m->device_class = brg__calloc((size_t)m->devices, sizeof *m->device_class);
    m->device_capacity = brg__calloc((size_t)m->devices, sizeof *m->device_capacity);
    m->device_usable = brg__calloc((size_t)m->devices, sizeof *m->device_usable);
    m->device_node = brg__calloc((size_t)m->devices, sizeof *m->device_node);
    if (!m->device_class || !m->device_capacity || !m->device_usable || !m->device_node)
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    brg_device_info first;
    brg_topology_device_info(t, 0, &first);
    m->kind = first.kind;
    for (int d = 1; d < m->all_devices; d++) {
        brg_device_info info;
        brg_topology_device_info(t, d, &info);
        if (info.kind != m->kind)
            return brg__error_set(err, BRG_ERR_INFEASIBLE,
                                  "the topology mixes GPUs and CPU devices (device 0 is a %s, device %d a %s): a plan "
                                  "runs on devices of one kind",
                                  brg_device_kind_name(m->kind), d, brg_device_kind_name(info.kind));
    }
    BRG__CHECK(choose_precision(m, err));
    m->activation_element = m->precision == BRG_PRECISION_BF16 || m->precision == BRG_PRECISION_FP16 ? 2 : 4;
    const brg_plan_options *o = &m->options;
    m->reserve_bytes = o->memory_reserve_bytes >= 0 ? o->memory_reserve_bytes
                       : m->kind == BRG_DEVICE_GPU ? (INT64_C(1) << 30)
                                                   : 0;
    m->pass_overhead = o->pass_overhead_seconds >= 0 ? o->pass_overhead_seconds : m->kind == BRG_DEVICE_GPU ? 4e-6 : 0.0;
    /* A profile times whole layers on one device: it applies to the ranks of no tensor-parallel group. */
    const char *profile_model = m->profile && m->tp == 1 ? brg_profile_device_model(m->profile) : NULL;
    for (int d = 0; d < m->all_devices; d++) {
        brg_device_info info;
        brg_topology_device_info(t, d, &info);
        double peak = info.peak_flops[m->precision];
        if (peak <= 0 || info.memory_bandwidth <= 0 || info.memory_bytes == 0)
            return brg__error_set(err, BRG_ERR_INFEASIBLE,
                                  "device %d (%s) has no %s peak, memory bandwidth or capacity in the topology: the "
                                  "planner cannot cost it",
                                  d, info.name, brg_precision_name(m->precision));
        int c = 0;
        for (; c < m->class_count; c++) {
            const brg__device_class *k = &m->classes[c];
            if (k->peak_flops == peak && k->memory_bandwidth == info.memory_bandwidth && strcmp(k->model, info.model) == 0)
                break;
        }
        if (c == m->class_count) {
            if (c == BRG__MAX_DEVICE_CLASSES)
                return brg__error_set(err, BRG_ERR_INFEASIBLE, "more than %d kinds of devices in one topology",
                                      BRG__MAX_DEVICE_CLASSES);
            brg__device_class *k = &m->classes[m->class_count++];
            k->kind = info.kind;
            snprintf(k->model, sizeof k->model, "%s", info.model);
            k->peak_flops = peak;
            k->memory_bandwidth = info.memory_bandwidth;
            k->profiled = profile_model && strcmp(profile_model, info.model) == 0;
        }
        double usable = (double)info.memory_bytes * (1.0 - o->memory_headroom) - (double)m->reserve_bytes;
        int64_t usable_bytes = usable > 0 ? (int64_t)usable : 0;
        /* A group runs at its slowest device's pace and fits in its smallest. */
        int g = d / m->tp;
        if (d % m->tp == 0) {
            m->device_class[g] = c;
            m->device_capacity[g] = (int64_t)info.memory_bytes;
            m->device_usable[g] = usable_bytes;
            m->device_node[g] = info.node;
        } else {
            const brg__device_class *now = &m->classes[m->device_class[g]];
            if (peak < now->peak_flops || (peak == now->peak_flops && info.memory_bandwidth < now->memory_bandwidth))
                m->device_class[g] = c;
            if ((int64_t)info.memory_bytes < m->device_capacity[g]) m->device_capacity[g] = (int64_t)info.memory_bytes;
            if (usable_bytes < m->device_usable[g]) m->device_usable[g] = usable_bytes;
        }
        m->peak_sum += peak;
    }
    return BRG_OK;
}

static int64_t element_bytes(const brg__model *m, const brg_tensor *t) {
    return t->dtype == BRG_F32 ? m->activation_element : 4;
}

static brg_status build_graph_tables(brg__model *m, brg_error *err) {
    const brg_graph *g = m->graph;
    int L = g->n_layers;
    m->op_count = g->n_ops;
    m->ops = brg__calloc((size_t)g->n_ops, sizeof *m->ops);
    m->layer_op_begin = brg__calloc((size_t)L + 1, sizeof *m->layer_op_begin);
    m->layer_params = brg__calloc((size_t)L, sizeof *m->layer_params);
    m->layer_partial = brg__calloc((size_t)L, sizeof *m->layer_partial);
    m->simple_param_numel = brg__calloc((size_t)L, sizeof *m->simple_param_numel);
    int64_t *last_reader = brg__malloc(sizeof(int64_t) * (size_t)(g->n_tensors ? g->n_tensors : 1));
    if (!m->ops || !m->layer_op_begin || !m->layer_params || !m->layer_partial || !m->simple_param_numel || !last_reader) {
        free(last_reader);
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int l = 0; l < L; l++) {
        m->layer_op_begin[l] = g->layers[l].op_begin;
        brg_layer_info li;
        brg_graph_layer_info(g, l, &li);
        m->layer_params[l] = li.param_count;
    }
    m->layer_op_begin[L] = g->n_ops;
    for (int64_t i = 0; i < g->n_tensors; i++) last_reader[i] = -1;
    for (int64_t i = 0; i < g->n_ops; i++) {
        const brg__op *op = &g->ops[i];
        brg__model_op *mo = &m->ops[i];
        brg__op_costs c;
        brg__op_costs_get(op, 1, &c);
        mo->layer = op->layer;
        mo->is_loss = i == g->loss_op;
        mo->cheap = c.cheap_to_recompute;
        mo->out_numel = brg__tensor_numel(op->output, 1);
        mo->aux_floats = c.aux_floats;
        mo->scratch_floats = brg__op_scratch_floats(&c, m->kind == BRG_DEVICE_CPU);
        for (int p = 0; p < BRG_PASS_COUNT; p++) {
            mo->flops[p] = c.flops[p];
            mo->bytes[p] = c.bytes_moved[p];
            /* Activations cross the group at the plan's precision; the loss's per-row statistics in fp32. */
            mo->comm_kind[p] = c.comm_kind[p];
            mo->comm_bytes[p] = c.comm_bytes[p] * (mo->is_loss ? 1.0 : (double)m->activation_element / 4.0);
        }
        for (int q = 0; q < op->n_inputs; q++)
            if (op->inputs[q]->kind != BRG_TENSOR_PARAMETER && op->layer > last_reader[op->inputs[q]->index])
                last_reader[op->inputs[q]->index] = op->layer;
    }
    m->loss_numel = brg__tensor_numel(g->ops[g->loss_op].output, 1);
    /* Activations crossing layer boundaries. */
    int crossings = 0;
    for (int64_t i = 0; i < g->n_ops; i++)
        if (last_reader[g->ops[i].output->index] > g->ops[i].layer) crossings++;
    m->crossings = brg__calloc((size_t)(crossings ? crossings : 1), sizeof *m->crossings);
    if (!m->crossings) {
        free(last_reader);
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int64_t i = 0; i < g->n_ops; i++) {
        const brg_tensor *out = g->ops[i].output;
        if (last_reader[out->index] <= g->ops[i].layer) continue;
        brg__crossing *c = &m->crossings[m->crossing_count++];
        c->producer_layer = g->ops[i].layer;
        c->last_reader_layer = (int)last_reader[out->index];
        c->bytes_per_sample = brg__tensor_numel(out, 1) * element_bytes(m, out);
    }
    free(last_reader);
    /* Graph inputs and who reads them. */
    for (int64_t i = 0; i < g->n_tensors; i++) m->input_count += g->tensors[i]->kind == BRG_TENSOR_INPUT;
    m->inputs = brg__calloc((size_t)(m->input_count ? m->input_count : 1), sizeof *m->inputs);
    if (!m->inputs) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    int k = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const brg_tensor *t = g->tensors[i];
        if (t->kind != BRG_TENSOR_INPUT) continue;
        brg__model_input *in = &m->inputs[k++];
        in->bytes_per_sample = brg__tensor_numel(t, 1) * brg__dtype_size(t->dtype);
        in->readers_prefix = brg__calloc((size_t)L + 1, sizeof *in->readers_prefix);
        if (!in->readers_prefix) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        for (int l = 0; l < L; l++) {
            int reads = 0;
            for (int64_t j = g->layers[l].op_begin; j < g->layers[l].op_end && !reads; j++)
                for (int q = 0; q < g->ops[j].n_inputs; q++) reads |= g->ops[j].inputs[q] == t;
            in->readers_prefix[l + 1] = in->readers_prefix[l] + reads;
        }
        if (strcmp(t->name, "tokens") == 0 || !m->tokens_per_sample) m->tokens_per_sample = brg__tensor_numel(t, 1);
    }
    /* Parameters: read once (their memory is the layer's), or shared (it depends on the cut). */
    int *consumers = brg__calloc((size_t)(g->n_params ? g->n_params : 1), sizeof *consumers);
    if (!consumers) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t i = 0; i < g->n_ops; i++)
        for (int q = 0; q < g->ops[i].n_inputs; q++)
            if (g->ops[i].inputs[q]->kind == BRG_TENSOR_PARAMETER) consumers[g->ops[i].inputs[q]->param_index]++;
    for (int64_t p = 0; p < g->n_params; p++) m->shared_count += consumers[p] > 1;
    m->shared = brg__calloc((size_t)(m->shared_count ? m->shared_count : 1), sizeof *m->shared);
    if (!m->shared) {
        free(consumers);
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    int s = 0;
    for (int64_t p = 0; p < g->n_params; p++) {
        const brg_tensor *param = g->params[p];
        m->parameters += brg__tensor_numel(param, 1);
        if (consumers[p] == 0) continue;
        if (consumers[p] == 1) continue; /* its layer's, below */
        brg__shared_param *sp = &m->shared[s++];
        sp->numel = brg__tensor_numel(param, 1);
        sp->consumer_layer = brg__malloc(sizeof(int) * (size_t)consumers[p]);
        if (!sp->consumer_layer) {
            free(consumers);
            return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        }
        for (int64_t i = 0; i < g->n_ops; i++)
            for (int q = 0; q < g->ops[i].n_inputs; q++)
                if (g->ops[i].inputs[q] == param) sp->consumer_layer[sp->consumers++] = g->ops[i].layer;
    }
    /* Parameters read once belong to their reader's layer; those whose gradient each rank of the group
     * computes from its share of the positions only are summed over the group after the backward. */
    for (int64_t i = 0; i < g->n_ops; i++)
        for (int q = 0; q < g->ops[i].n_inputs; q++) {
            const brg_tensor *param = g->ops[i].inputs[q];
            if (param->kind != BRG_TENSOR_PARAMETER) continue;
            if (consumers[param->param_index] == 1)
                m->simple_param_numel[g->ops[i].layer] += brg__tensor_numel(param, 1);
            if (param->partial_grad && consumers[param->param_index] >= 1) {
                m->layer_partial[g->ops[i].layer] += brg__tensor_numel(param, 1) / consumers[param->param_index];
            }
        }
    free(consumers);
    m->param_tensors = g->n_params;
    const brg_graph *whole = m->whole;
    for (int64_t p = 0; p < whole->n_params; p++) m->model_parameters += brg__tensor_numel(whole->params[p], 1);
    /* The vocabulary rows a split embedding holds past the model's: padding so that t divides them. */
    for (int64_t p = 0; p < g->n_params; p++) {
        const brg_tensor *param = g->params[p];
        if (param->slice.parts >= 2 && param->slice.blocks == 1 && param->slice.dim == 0 &&
            brg__slice_local(&param->slice) * param->slice.parts > param->slice.whole)
            m->vocab_padding = brg__slice_local(&param->slice) * param->slice.parts - param->slice.whole;
    }
    /* MFU's numerator: 6 N T, plus attention's 6 C T^2 per sample (llm.c's count), of the whole model. */
    m->model_flops_per_sample = m->options.model_flops_per_sample;
    if (m->model_flops_per_sample <= 0) {
        double flops = 6.0 * (double)m->model_parameters * (double)m->tokens_per_sample;
        for (int64_t i = 0; i < whole->n_ops; i++) {
            const brg__op *op = &whole->ops[i];
            if (op->kind != BRG_OP_ATTENTION) continue;
            const brg_tensor *x = op->inputs[0];
            double t = (double)x->shape[1], c = (double)x->shape[2] / 3.0;
            flops += 6.0 * c * t * t;
        }
        m->model_flops_per_sample = flops;
    }
    return BRG_OK;
}

static brg_status check_profile(brg__model *m, brg_error *err) {
    if (!m->profile) return BRG_OK;
    uint64_t fp = brg_plan_model_fingerprint(m->whole);
    if (brg_profile_model_fingerprint(m->profile) != fp || brg_profile_layer_count(m->profile) != m->layers)
        return brg__error_set(err, BRG_ERR_MISMATCH,
                              "the profile was measured on another model (fingerprint %016llx, %d layers; this model "
                              "has %016llx, %d layers): profile this one with brigade profile",
                              (unsigned long long)brg_profile_model_fingerprint(m->profile),
                              brg_profile_layer_count(m->profile), (unsigned long long)fp, m->layers);
    for (int l = 0; l < m->layers; l++) {
        double f, bi, bw;
        if (brg_profile_get(m->profile, l, 1, &f, &bi, &bw) != BRG_OK)
            return brg__error_set(err, BRG_ERR_MISMATCH, "the profile has no times for layer %d", l);
    }
    return BRG_OK;
}

int brg__graph_has_tp_marks(const brg_graph *g) {
    for (int64_t i = 0; g && i < g->n_ops; i++)
        if (g->ops[i].tp_role != BRG_TP_REPLICATED) return 1;
    return 0;
}

brg_status brg__model_create(brg__model **out, const brg_graph *g, const brg_topology *t, const brg_plan_options *o,
                             brg_error *err) {
    int tp = o && o->tensor_parallel > 0 ? o->tensor_parallel : 1;
    return brg__model_create_tp(out, g, t, o, tp, o && o->sequence_parallel == 1, err);
}

brg_status brg__model_create_tp(brg__model **out, const brg_graph *g, const brg_topology *t, const brg_plan_options *o,
                                int tp, int sp, brg_error *err) {
    if (!out || !g || !t || !o)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_plan_search: %s is NULL",
                              !g ? "the graph" : !t ? "the topology" : !o ? "options" : "out");
    *out = NULL;
    if (brg_graph_status(g) != BRG_OK || !brg_graph_is_final(g))
        return brg__error_set(err, BRG_ERR_INVALID_USAGE, "brg_plan_search: the graph is %s",
                              brg_graph_status(g) != BRG_OK ? "in error" : "not finalized (call brg_graph_finalize)");
    if (!brg_topology_is_final(t) || brg_topology_device_count(t) < 1)
        return brg__error_set(err, BRG_ERR_INVALID_USAGE, "brg_plan_search: the topology is not final or has no device");
    BRG__CHECK(check_options(o, err));
    if (tp < 1) tp = 1;
    brg__model *m = brg__calloc(1, sizeof *m);
    if (!m) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    m->whole = g;
    m->graph = g;
    m->tp = tp;
    m->sp = tp > 1 && sp;
    m->topology = t;
    m->options = *o;
    m->profile = o->profile;
    m->options.profile = NULL;
    snprintf(m->model_name, sizeof m->model_name, "%s", o->model_name ? o->model_name : "model");
    snprintf(m->topology_name, sizeof m->topology_name, "%s", o->topology_name ? o->topology_name : brg_topology_source(t));
    m->options.model_name = NULL;
    m->options.topology_name = NULL;
    m->layers = g->n_layers;
    m->all_devices = brg_topology_device_count(t);
    m->devices = m->all_devices / tp;
    m->nodes = brg_topology_node_count(t);
    m->compute_efficiency = o->compute_efficiency;
    m->memory_efficiency = o->memory_efficiency;
    m->headroom = o->memory_headroom;
    /* Every node's devices in whole groups (so the topology's in all, too). */
    brg_status s = build_groups(m, err);
    if (s == BRG_OK && tp > 1) {
        char msg[BRG_ERROR_MESSAGE_MAX];
        brg_status ls = brg__graph_localize(g, tp, m->sp, &m->local, msg);
        if (ls == BRG_ERR_OUT_OF_MEMORY) s = brg__error_set(err, ls, "out of memory splitting the model %d ways", tp);
        else if (ls != BRG_OK) s = brg__error_set(err, BRG_ERR_INFEASIBLE, "%s", msg);
        else m->graph = m->local;
    }
    if (s == BRG_OK) s = build_devices(m, err);
    if (s == BRG_OK) s = build_graph_tables(m, err);
    if (s == BRG_OK) s = check_profile(m, err);
    if (s != BRG_OK) {
        brg__model_destroy(m);
        return s;
    }
    /* The fastest link between two groups, for the bounds on the data-parallel sums. */
    if (m->devices <= 256)
        for (int a = 0; a < m->devices; a++)
            for (int b = a + 1; b < m->devices; b++) {
                brg_link l;
                brg__model_link(m, a, b, &l);
                m->fastest_link = fmax(m->fastest_link, l.bandwidth);
            }
    *out = m;
    return BRG_OK;
}

void brg__model_destroy(brg__model *m) {
    if (!m) return;
    free(m->device_class);
    free(m->device_capacity);
    free(m->device_usable);
    free(m->device_node);
    free(m->node_first);
    free(m->node_groups);
    free(m->ops);
    free(m->layer_op_begin);
    free(m->layer_params);
    free(m->layer_partial);
    free(m->simple_param_numel);
    for (int i = 0; m->shared && i < m->shared_count; i++) free(m->shared[i].consumer_layer);
    free(m->shared);
    free(m->crossings);
    for (int i = 0; m->inputs && i < m->input_count; i++) free(m->inputs[i].readers_prefix);
    free(m->inputs);
    brg_graph_destroy(m->local);
    free(m);
}

/* ---- figures at one micro-batch size --------------------------------------------------------------- */

/* The pass's time; *bound_by_memory (may be NULL) receives it too when memory traffic sets it. */
static double pass_time(const brg__model *m, const brg__device_class *c, double flops, double bytes,
                        double *bound_by_memory) {
    if (flops <= 0 && bytes <= 0) return 0.0;
    double scale = (double)m->activation_element / 4.0; /* 16-bit activations move half the bytes */
    double compute = flops / (c->peak_flops * m->compute_efficiency);
    double memory = bytes * scale / (c->memory_bandwidth * m->memory_efficiency);
    double t = (compute > memory ? compute : memory) + m->pass_overhead;
    if (bound_by_memory && memory > compute) *bound_by_memory += t;
    return t;
}

void brg__batch_table_destroy(brg__batch_table *bt) {
    if (!bt) return;
    free(bt->forward);
    free(bt->backward_input);
    free(bt->backward_weight);
    free(bt->recompute_full);
    free(bt->recompute_selective);
    free(bt->memory_bound);
    free(bt->tp_forward);
    free(bt->tp_backward);
    free(bt->tp_bytes);
    free(bt->local_full);
    free(bt->drop_full);
    free(bt->drop_selective);
    free(bt->local_grads);
    free(bt->static_simple);
    free(bt->receive_bytes);
    free(bt->boundary_bytes);
    free(bt->boundary_tensors);
    free(bt->input_bytes);
    free(bt->layer_scratch);
    free(bt);
}

/* Seconds of layer l's tensor-parallel collectives per micro-batch of b: in forward, in backward; and the
 * bytes of their buffers in both. */
static void layer_collectives(const brg__model *m, int l, int64_t b, double *forward, double *backward, int64_t *bytes) {
    *forward = *backward = 0.0;
    *bytes = 0;
    for (int64_t i = m->layer_op_begin[l]; m->tp > 1 && i < m->layer_op_begin[l + 1]; i++) {
        const brg__model_op *op = &m->ops[i];
        for (int p = 0; p < BRG_PASS_COUNT; p++) {
            if (op->comm_kind[p] == BRG__COMM_NONE) continue;
            double buffer = op->comm_bytes[p] * (double)b;
            double seconds = brg__tp_collective_seconds(m, op->comm_kind[p], buffer);
            if (p == BRG_PASS_FORWARD) *forward += seconds;
            else *backward += seconds;
            *bytes += (int64_t)buffer;
        }
    }
}

/* The roofline times of the whole model's layer l (a profile's times scale by the share a rank does). */
static void whole_layer_roofline(const brg__model *m, const brg__device_class *c, int l, int64_t b, double *f, double *bi,
                                 double *bw) {
    const brg__layer *layer = &m->whole->layers[l];
    *f = *bi = *bw = 0.0;
    for (int64_t i = layer->op_begin; i < layer->op_end; i++) {
        brg__op_costs k;
        brg__op_costs_get(&m->whole->ops[i], b, &k);
        *f += pass_time(m, c, k.flops[BRG_PASS_FORWARD], k.bytes_moved[BRG_PASS_FORWARD], NULL);
        *bi += pass_time(m, c, k.flops[BRG_PASS_BACKWARD_INPUT], k.bytes_moved[BRG_PASS_BACKWARD_INPUT], NULL);
        *bw += pass_time(m, c, k.flops[BRG_PASS_BACKWARD_WEIGHT], k.bytes_moved[BRG_PASS_BACKWARD_WEIGHT], NULL);
    }
}

static void layer_times(const brg__model *m, const brg__device_class *c, int l, int64_t b, double *f, double *bi,
                        double *bw, double *rf, double *rs, double *memory_bound) {
    *f = *bi = *bw = *rf = *rs = *memory_bound = 0.0;
    for (int64_t i = m->layer_op_begin[l]; i < m->layer_op_begin[l + 1]; i++) {
        const brg__model_op *op = &m->ops[i];
        double bd = (double)b;
        double tf = pass_time(m, c, op->flops[BRG_PASS_FORWARD] * bd, op->bytes[BRG_PASS_FORWARD] * bd, memory_bound);
        *f += tf;
        *bi += pass_time(m, c, op->flops[BRG_PASS_BACKWARD_INPUT] * bd, op->bytes[BRG_PASS_BACKWARD_INPUT] * bd,
                         memory_bound);
        *bw += pass_time(m, c, op->flops[BRG_PASS_BACKWARD_WEIGHT] * bd, op->bytes[BRG_PASS_BACKWARD_WEIGHT] * bd,
                         memory_bound);
        if (!op->is_loss) {
            *rf += tf;
            if (op->cheap) *rs += tf;
        }
    }
    double comm_forward, comm_backward;
    int64_t comm_bytes;
    layer_collectives(m, l, b, &comm_forward, &comm_backward, &comm_bytes);
    if (m->tp > 1 && m->profile && !c->profiled && m->whole != m->graph) {
        /* Measured whole layers on these devices: a rank's share is the measured time scaled by the share of
         * the roofline its part of the layer takes (the collectives added below, as for any rank). */
        double pf, pbi, pbw, wf, wbi, wbw;
        if (strcmp(brg_profile_device_model(m->profile), c->model) == 0 &&
            brg_profile_get(m->profile, l, b, &pf, &pbi, &pbw) == BRG_OK) {
            whole_layer_roofline(m, c, l, b, &wf, &wbi, &wbw);
            double share_full = *f > 0 ? *rf / *f : 0.0, share_selective = *f > 0 ? *rs / *f : 0.0;
            double roofline = *f + *bi + *bw, measured = 0.0;
            if (wf > 0) *f = pf * *f / wf;
            if (wbi > 0) *bi = pbi * *bi / wbi;
            if (wbw > 0) *bw = pbw * *bw / wbw;
            measured = *f + *bi + *bw;
            *memory_bound = roofline > 0 ? *memory_bound / roofline * measured : 0.0;
            *rf = *f * share_full;
            *rs = *f * share_selective;
        }
    }
    /* The ops after a collective wait for it: its time adds to its pass (and to full recomputation's). */
    *f += comm_forward;
    *bi += comm_backward;
    *rf += comm_forward;
    if (!c->profiled) return;
    /* Measured: the profile's pass times; recomputation keeps the roofline's share of the forward. */
    double pf, pbi, pbw;
    if (brg_profile_get(m->profile, l, b, &pf, &pbi, &pbw) != BRG_OK) return;
    double share_full = *f > 0 ? *rf / *f : 0.0, share_selective = *f > 0 ? *rs / *f : 0.0;
    double roofline = *f + *bi + *bw;
    *memory_bound = roofline > 0 ? *memory_bound / roofline * (pf + pbi + pbw) : 0.0;
    *f = pf;
    *bi = pbi;
    *bw = pbw;
    *rf = pf * share_full;
    *rs = pf * share_selective;
}

brg_status brg__batch_table_create(const brg__model *m, int64_t b, brg__batch_table **out) {
    int L = m->layers, C = m->class_count;
    brg__batch_table *bt = brg__calloc(1, sizeof *bt);
    if (!bt) return BRG_ERR_OUT_OF_MEMORY;
    bt->micro_batch = b;
    size_t nt = (size_t)C * (size_t)(L + 1), nl = (size_t)L + 1;
    bt->forward = brg__calloc(nt, sizeof(double));
    bt->backward_input = brg__calloc(nt, sizeof(double));
    bt->backward_weight = brg__calloc(nt, sizeof(double));
    bt->recompute_full = brg__calloc(nt, sizeof(double));
    bt->recompute_selective = brg__calloc(nt, sizeof(double));
    bt->memory_bound = brg__calloc(nt, sizeof(double));
    bt->tp_forward = brg__calloc(nl, sizeof(double));
    bt->tp_backward = brg__calloc(nl, sizeof(double));
    bt->tp_bytes = brg__calloc(nl, sizeof(int64_t));
    bt->local_full = brg__calloc(nl, sizeof(int64_t));
    bt->drop_full = brg__calloc(nl, sizeof(int64_t));
    bt->drop_selective = brg__calloc(nl, sizeof(int64_t));
    bt->local_grads = brg__calloc(nl, sizeof(int64_t));
    bt->static_simple = brg__calloc(nl, sizeof(int64_t));
    bt->receive_bytes = brg__calloc(nl + 1, sizeof(int64_t));
    bt->boundary_bytes = brg__calloc(nl + 1, sizeof(int64_t));
    bt->boundary_tensors = brg__calloc(nl + 1, sizeof(int));
    bt->input_bytes = brg__calloc((size_t)(m->input_count ? m->input_count : 1), sizeof(int64_t));
    bt->layer_scratch = brg__calloc(nl, sizeof(int64_t));
    if (!bt->forward || !bt->backward_input || !bt->backward_weight || !bt->recompute_full || !bt->recompute_selective ||
        !bt->memory_bound || !bt->tp_forward || !bt->tp_backward || !bt->tp_bytes ||
        !bt->local_full || !bt->drop_full || !bt->drop_selective || !bt->local_grads || !bt->static_simple ||
        !bt->receive_bytes || !bt->boundary_bytes || !bt->boundary_tensors || !bt->input_bytes || !bt->layer_scratch) {
        brg__batch_table_destroy(bt);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    for (int c = 0; c < C; c++) {
        size_t base = (size_t)c * (size_t)(L + 1);
        for (int l = 0; l < L; l++) {
            double f, bi, bw, rf, rs, mbound;
            layer_times(m, &m->classes[c], l, b, &f, &bi, &bw, &rf, &rs, &mbound);
            bt->memory_bound[base + l + 1] = bt->memory_bound[base + l] + mbound;
            bt->forward[base + l + 1] = bt->forward[base + l] + f;
            bt->backward_input[base + l + 1] = bt->backward_input[base + l] + bi;
            bt->backward_weight[base + l + 1] = bt->backward_weight[base + l] + bw;
            bt->recompute_full[base + l + 1] = bt->recompute_full[base + l] + rf;
            bt->recompute_selective[base + l + 1] = bt->recompute_selective[base + l] + rs;
        }
    }
    for (int l = 0; l < L; l++) {
        double forward, backward;
        int64_t bytes;
        layer_collectives(m, l, b, &forward, &backward, &bytes);
        bt->tp_forward[l + 1] = bt->tp_forward[l] + forward;
        bt->tp_backward[l + 1] = bt->tp_backward[l] + backward;
        bt->tp_bytes[l + 1] = bt->tp_bytes[l] + bytes;
    }
    const brg_graph *g = m->graph;
    brg_device_kind kind = m->kind;
    for (int l = 0; l < L; l++) {
        int64_t full = 0, drop_full = 0, drop_selective = 0, grads = 0, scratch = 0;
        for (int64_t i = m->layer_op_begin[l]; i < m->layer_op_begin[l + 1]; i++) {
            const brg__op *op = &g->ops[i];
            const brg__model_op *mo = &m->ops[i];
            brg__op_costs c;
            brg__op_costs_get(op, b, &c);
            int64_t output = brg__alloc_round(kind, brg__tensor_numel(op->output, b) * element_bytes(m, op->output));
            int64_t aux = c.aux_floats ? brg__alloc_round(kind, c.aux_floats * 4) : 0;
            full += output + aux;
            if (!mo->is_loss) drop_full += output + aux;
            if (!mo->is_loss && mo->cheap) drop_selective += output + aux;
            if (op->output->dtype == BRG_F32) grads += output;
            int64_t need = brg__op_scratch_floats(&c, kind == BRG_DEVICE_CPU);
            if (need) {
                int64_t sc = brg__alloc_round(kind, need * 4);
                if (sc > scratch) scratch = sc;
            }
        }
        bt->local_full[l + 1] = bt->local_full[l] + full;
        bt->drop_full[l + 1] = bt->drop_full[l] + drop_full;
        bt->drop_selective[l + 1] = bt->drop_selective[l] + drop_selective;
        bt->local_grads[l + 1] = bt->local_grads[l] + grads;
        bt->layer_scratch[l] = scratch;
    }
    /* Parameters read once: one buffer each for the value, the gradient and the two moments. */
    for (int64_t i = 0; i < g->n_ops; i++)
        for (int q = 0; q < g->ops[i].n_inputs; q++) {
            const brg_tensor *t = g->ops[i].inputs[q];
            if (t->kind == BRG_TENSOR_PARAMETER && t->consumers == 1)
                bt->static_simple[g->ops[i].layer + 1] += brg__alloc_round(kind, brg__tensor_numel(t, 1) * 4);
        }
    for (int l = 0; l < L; l++) bt->static_simple[l + 1] += bt->static_simple[l];
    /* Cuts: a stage starting at layer l receives every activation produced before l and read from l on. */
    int64_t *diff = brg__calloc((size_t)L + 2, sizeof *diff), *diff_raw = brg__calloc((size_t)L + 2, sizeof *diff_raw);
    int *diff_count = brg__calloc((size_t)L + 2, sizeof *diff_count);
    if (!diff || !diff_raw || !diff_count) {
        free(diff);
        free(diff_raw);
        free(diff_count);
        brg__batch_table_destroy(bt);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    for (int k = 0; k < m->crossing_count; k++) {
        const brg__crossing *c = &m->crossings[k];
        int64_t raw = c->bytes_per_sample * b;
        int64_t rounded = brg__alloc_round(kind, raw);
        diff[c->producer_layer + 1] += rounded;
        diff[c->last_reader_layer + 1] -= rounded;
        diff_raw[c->producer_layer + 1] += raw;
        diff_raw[c->last_reader_layer + 1] -= raw;
        diff_count[c->producer_layer + 1]++;
        diff_count[c->last_reader_layer + 1]--;
    }
    int64_t run = 0, run_raw = 0;
    int run_count = 0;
    for (int l = 0; l <= L; l++) {
        run += diff[l];
        run_raw += diff_raw[l];
        run_count += diff_count[l];
        bt->receive_bytes[l] = run;
        bt->boundary_bytes[l] = run_raw;
        bt->boundary_tensors[l] = run_count;
    }
    free(diff);
    free(diff_raw);
    free(diff_count);
    for (int i = 0; i < m->input_count; i++) bt->input_bytes[i] = brg__alloc_round(kind, m->inputs[i].bytes_per_sample * b);
    bt->dloss_bytes = brg__alloc_round(kind, m->loss_numel * b * 4);
    *out = bt;
    return BRG_OK;
}

void brg__stage_times_get(const brg__batch_table *bt, const brg__model *m, int c, int a, int e, brg_recompute policy,
                          brg__stage_times *out) {
    size_t base = (size_t)c * (size_t)(m->layers + 1);
    out->forward = bt->forward[base + e] - bt->forward[base + a];
    out->backward_input = bt->backward_input[base + e] - bt->backward_input[base + a];
    out->backward_weight = bt->backward_weight[base + e] - bt->backward_weight[base + a];
    out->recompute = policy == BRG_RECOMPUTE_FULL ? bt->recompute_full[base + e] - bt->recompute_full[base + a]
                     : policy == BRG_RECOMPUTE_SELECTIVE
                         ? bt->recompute_selective[base + e] - bt->recompute_selective[base + a]
                         : 0.0;
}

void brg__stage_memory_get(const brg__batch_table *bt, const brg__model *m, int a, int e, brg_recompute policy,
                           brg__stage_memory *out) {
    memset(out, 0, sizeof *out);
    int64_t inputs = 0;
    for (int i = 0; i < m->input_count; i++)
        if (m->inputs[i].readers_prefix[e] > m->inputs[i].readers_prefix[a]) inputs += bt->input_bytes[i];
    out->receive = bt->receive_bytes[a] + inputs;
    out->full = bt->local_full[e] - bt->local_full[a];
    int64_t drop = policy == BRG_RECOMPUTE_FULL        ? bt->drop_full[e] - bt->drop_full[a]
                   : policy == BRG_RECOMPUTE_SELECTIVE ? bt->drop_selective[e] - bt->drop_selective[a]
                                                       : 0;
    out->kept = out->full - drop;
    out->grads = bt->receive_bytes[a] + bt->local_grads[e] - bt->local_grads[a];
    int64_t simple = bt->static_simple[e] - bt->static_simple[a];
    out->params = simple;
    out->gradients = simple;
    out->optimizer = 2 * simple;
    for (int s = 0; s < m->shared_count; s++) {
        const brg__shared_param *sp = &m->shared[s];
        int inside = 0;
        for (int k = 0; k < sp->consumers; k++) inside += sp->consumer_layer[k] >= a && sp->consumer_layer[k] < e;
        if (!inside) continue;
        int64_t bytes = brg__alloc_round(m->kind, sp->numel * 4);
        out->params += bytes;
        out->optimizer += 2 * bytes;
        /* One buffer per consuming op; one more for the sum when several read it, or when another stage
         * does (a tied parameter: every holder sums all contributions itself). */
        out->gradients += (int64_t)inside * bytes + (inside > 1 || inside < sp->consumers ? bytes : 0);
    }
    int64_t scratch = 0;
    for (int l = a; l < e; l++)
        if (bt->layer_scratch[l] > scratch) scratch = bt->layer_scratch[l];
    int loss_layer = m->ops[m->graph->loss_op].layer;
    out->workspace = scratch + (loss_layer >= a && loss_layer < e ? bt->dloss_bytes : 0);
}

int64_t brg__optimizer_tied_bytes(const brg__model *m, const int *held) {
    int64_t worst = 0;
    for (int s = 0; s < m->shared_count; s++) {
        if (!held[s] || held[s] == m->shared[s].consumers) continue;
        int64_t parts = (int64_t)(m->shared[s].consumers - held[s]) * brg__alloc_round(m->kind, m->shared[s].numel * 4);
        if (parts > worst) worst = parts;
    }
    return worst;
}

int64_t brg__optimizer_norm_bytes(const brg__model *m, int ranks) {
    return brg__alloc_round(m->kind, (int64_t)ranks * (m->param_tensors ? m->param_tensors : 1) * 8);
}

int64_t brg__optimizer_transient(const brg__model *m, const int *held, int ranks) {
    int64_t worst = brg__optimizer_tied_bytes(m, held), norm = brg__optimizer_norm_bytes(m, ranks);
    return worst > norm ? worst : norm;
}
