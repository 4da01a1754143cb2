/* Plan files: JSON, schema version BRG_PLAN_FORMAT_VERSION (docs/plan.md). Unknown fields are errors, so
 * a misspelt field is reported, not ignored; every message names the file, line, column and field. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "partitioner_internal.h"

#define PLAN_FORMAT "brigade-plan"
#define PLAN_MAX_BYTES (INT64_C(256) << 20)

/* ---- writing ------------------------------------------------------------------------------------- */

static json_t *hex(uint64_t v) {
    char buf[17];
    snprintf(buf, sizeof buf, "%016" PRIx64, v);
    return json_string(buf);
}

static json_t *stage_json(const brg_plan *plan, int s) {
    const brg_plan_stage *st = &plan->stages[s];
    json_t *o = json_object();
    brg__json_set(o, "stage", json_integer(s));
    brg__json_set(o, "rank", json_integer(st->rank));
    brg__json_set(o, "first_layer", json_integer(st->first_layer));
    brg__json_set(o, "end_layer", json_integer(st->end_layer));
    brg__json_set(o, "first_layer_name", json_string(st->first_layer_name));
    brg__json_set(o, "last_layer_name", json_string(st->last_layer_name));
    brg__json_set(o, "recompute", json_string(brg_recompute_name(st->recompute)));
    if (plan->predicted) {
        json_t *p = json_object();
        brg__json_set(p, "parameters", json_integer(st->parameters));
        brg__json_set(p, "forward_seconds", json_real(st->forward_seconds));
        brg__json_set(p, "backward_seconds", json_real(st->backward_seconds));
        brg__json_set(p, "recompute_seconds", json_real(st->recompute_seconds));
        brg__json_set(p, "boundary_bytes", json_integer(st->boundary_bytes));
        brg__json_set(p, "boundary_link", json_string(brg_link_kind_name(st->boundary_link)));
        brg__json_set(p, "boundary_crosses_nodes", json_boolean(st->boundary_crosses_nodes));
        brg__json_set(p, "transfer_seconds", json_real(st->transfer_seconds));
        if (brg__config_tp(&plan->config) > 1) {
            brg__json_set(p, "tensor_parallel_bytes", json_integer(st->tensor_parallel_bytes));
            brg__json_set(p, "tensor_parallel_seconds", json_real(st->tensor_parallel_seconds));
        }
        brg__json_set(o, "predicted", p);
    }
    return o;
}

static json_t *rank_json(const brg_plan *plan, int r) {
    const brg_plan_rank *rk = &plan->ranks[r];
    json_t *o = json_object();
    brg__json_set(o, "rank", json_integer(r));
    json_t *devices = json_array();
    for (int i = 0; i < rk->device_count; i++) brg__json_append(devices, json_integer(rk->devices[i]));
    brg__json_set(o, "devices", devices);
    if (plan->predicted) {
        json_t *p = json_object();
        brg__json_set(p, "capacity_bytes", json_integer(rk->capacity_bytes));
        brg__json_set(p, "usable_bytes", json_integer(rk->usable_bytes));
        brg__json_set(p, "parameter_bytes", json_integer(rk->parameter_bytes));
        brg__json_set(p, "gradient_bytes", json_integer(rk->gradient_bytes));
        brg__json_set(p, "optimizer_bytes", json_integer(rk->optimizer_bytes));
        brg__json_set(p, "activation_bytes", json_integer(rk->activation_bytes));
        brg__json_set(p, "workspace_bytes", json_integer(rk->workspace_bytes));
        brg__json_set(p, "total_bytes", json_integer(rk->total_bytes));
        brg__json_set(p, "peak_in_flight", json_integer(rk->peak_in_flight));
        brg__json_set(p, "busy_seconds", json_real(rk->busy_seconds));
        brg__json_set(p, "allreduce_seconds", json_real(rk->allreduce_seconds));
        brg__json_set(p, "optimizer_seconds", json_real(rk->optimizer_seconds));
        brg__json_set(p, "allreduce_link", json_string(brg_link_kind_name(rk->allreduce_link)));
        if (rk->tensor_parallel > 1)
            brg__json_set(p, "tensor_parallel_link", json_string(brg_link_kind_name(rk->tensor_parallel_link)));
        brg__json_set(o, "predicted", p);
    }
    return o;
}

brg_status brg_plan_to_json(const brg_plan *plan, char **out) {
    if (!plan || !out) return BRG_ERR_INVALID_ARGUMENT;
    const brg__config *c = &plan->config;
    int R = c->ranks, S = R * c->chunks;
    uint64_t mark = brg__json_build_begin();
    json_t *root = json_object();
    brg__json_set(root, "format", json_string(PLAN_FORMAT));
    brg__json_set(root, "version", json_integer(BRG_PLAN_FORMAT_VERSION));
    json_t *model = json_object();
    brg__json_set(model, "name", json_string(plan->model_name));
    brg__json_set(model, "fingerprint", hex(plan->model_fingerprint));
    brg__json_set(model, "layers", json_integer(plan->layers));
    brg__json_set(model, "parameters", json_integer(plan->parameters));
    brg__json_set(model, "tokens_per_sample", json_integer(plan->tokens_per_sample));
    json_t *names = json_array();
    for (int l = 0; l < plan->layers; l++) brg__json_append(names, json_string(plan->layer_names[l] ? plan->layer_names[l] : ""));
    brg__json_set(model, "layer_names", names);
    brg__json_set(root, "model", model);
    json_t *topo = json_object();
    brg__json_set(topo, "source", json_string(plan->topology_source));
    brg__json_set(topo, "fingerprint", hex(plan->topology_fingerprint));
    brg__json_set(topo, "devices", json_integer(plan->devices_total));
    brg__json_set(topo, "nodes", json_integer(plan->nodes));
    brg__json_set(topo, "device_kind", json_string(brg_device_kind_name(plan->device_kind)));
    brg__json_set(topo, "device_model", json_string(plan->device_model));
    brg__json_set(topo, "device_peak_flops", json_real(plan->device_peak_flops));
    brg__json_set(topo, "device_figures", json_string(plan->device_figures[0] ? plan->device_figures : "unknown"));
    json_t *nodes = json_array();
    for (int d = 0; d < plan->devices_total; d++) brg__json_append(nodes, json_integer(plan->device_node[d]));
    brg__json_set(topo, "device_nodes", nodes);
    brg__json_set(root, "topology", topo);
    brg__json_set(root, "global_batch", json_integer(plan->global_batch));
    brg__json_set(root, "precision", json_string(brg_precision_name(plan->precision)));
    brg__json_set(root, "schedule", json_string(brg_schedule_kind_name(c->kind)));
    brg__json_set(root, "pipeline_stages", json_integer(R));
    brg__json_set(root, "data_parallel", json_integer(c->replicas));
    brg__json_set(root, "zero", json_integer(c->zero));
    brg__json_set(root, "tensor_parallel", json_integer(brg__config_tp(c)));
    brg__json_set(root, "sequence_parallel", json_integer(brg__config_tp(c) > 1 && c->sp));
    brg__json_set(root, "chunks", json_integer(c->chunks));
    brg__json_set(root, "micro_batch", json_integer(c->micro_batch));
    brg__json_set(root, "micro_batches", json_integer(c->micro_batches));
    json_t *stages = json_array();
    for (int s = 0; s < S; s++) brg__json_append(stages, stage_json(plan, s));
    brg__json_set(root, "stages", stages);
    json_t *ranks = json_array();
    for (int r = 0; r < R; r++) brg__json_append(ranks, rank_json(plan, r));
    brg__json_set(root, "ranks", ranks);
    if (plan->predicted) {
        const brg_plan_summary *sm = &plan->summary;
        json_t *p = json_object();
        brg__json_set(p, "iteration_seconds", json_real(sm->iteration_seconds));
        brg__json_set(p, "tokens_per_second", json_real(sm->tokens_per_second));
        brg__json_set(p, "mfu", json_real(sm->mfu));
        brg__json_set(p, "tflops_per_device", json_real(sm->tflops_per_device));
        brg__json_set(p, "bubble", json_real(sm->bubble));
        brg__json_set(p, "allreduce_seconds", json_real(sm->allreduce_seconds));
        brg__json_set(p, "peak_memory_bytes", json_integer(sm->peak_memory_bytes));
        brg__json_set(p, "lower_bound_seconds", json_real(sm->lower_bound_seconds));
        brg__json_set(p, "exhaustive", json_boolean(sm->exhaustive));
        if (plan->vocab_padding) brg__json_set(p, "vocabulary_padding", json_integer(plan->vocab_padding));
        brg__json_set(root, "predicted", p);
    }
    char *text = brg__json_dump(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10), mark);
    json_decref(root);
    if (!text) return BRG_ERR_OUT_OF_MEMORY;
    size_t n = strlen(text);
    char *copy = brg__malloc(n + 2);
    if (!copy) {
        free(text);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    memcpy(copy, text, n);
    copy[n] = '\n';
    copy[n + 1] = '\0';
    free(text);
    *out = copy;
    return BRG_OK;
}

brg_status brg_plan_save(const brg_plan *plan, const char *path, brg_error *err) {
    if (!plan || !path) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_plan_save: %s is NULL", !plan ? "plan" : "path");
    char *text = NULL;
    brg_status s = brg_plan_to_json(plan, &text);
    if (s != BRG_OK) return brg__error_set(err, s, "out of memory writing the plan");
    s = brg__write_text_file(path, text, err);
    free(text);
    return s;
}

/* ---- reading -------------------------------------------------------------------------------------- */

typedef struct reader {
    const char *origin;
    const char *text;
    brg_error *err;
} reader;

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static brg_status check_members(const reader *rd, json_t *obj, brg__json_path path, const char *const *known) {
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        int ok = 0;
        for (const char *const *k = known; *k && !ok; k++) ok = strcmp(*k, key) == 0;
        if (!ok) {
            char list[512] = "";
            size_t used = 0;
            for (const char *const *k = known; *k && used < sizeof list; k++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", *k);
            return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &path, key,
                                  "unknown field (expected one of: %s)", list);
        }
    }
    return BRG_OK;
}

static brg_status member(const reader *rd, json_t *obj, brg__json_path path, const char *key, json_type type,
                         const char *what, json_t **out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &path, key, "missing (%s)", what);
    int ok = json_typeof(v) == type || (type == JSON_REAL && json_is_integer(v)) ||
             (type == JSON_TRUE && json_is_boolean(v));
    if (!ok) {
        brg__json_path at = brg__json_key(path, key);
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL, "must be %s, not %s", what,
                              type_name(v));
    }
    *out = v;
    return BRG_OK;
}

static brg_status get_int(const reader *rd, json_t *obj, brg__json_path path, const char *key, int64_t min,
                          int64_t max, int64_t *out) {
    json_t *v = NULL;
    BRG__CHECK(member(rd, obj, path, key, JSON_INTEGER, "a whole number", &v));
    int64_t x = (int64_t)json_integer_value(v);
    if (x < min || x > max) {
        brg__json_path at = brg__json_key(path, key);
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL, "%lld is out of range (%lld..%lld)",
                              (long long)x, (long long)min, (long long)max);
    }
    *out = x;
    return BRG_OK;
}

static brg_status get_real(const reader *rd, json_t *obj, brg__json_path path, const char *key, double *out) {
    json_t *v = NULL;
    BRG__CHECK(member(rd, obj, path, key, JSON_REAL, "a number", &v));
    double x = json_number_value(v);
    if (!isfinite(x) || x < 0) {
        brg__json_path at = brg__json_key(path, key);
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL, "must be a finite number >= 0");
    }
    *out = x;
    return BRG_OK;
}

static brg_status get_string(const reader *rd, json_t *obj, brg__json_path path, const char *key, const char **out) {
    json_t *v = NULL;
    BRG__CHECK(member(rd, obj, path, key, JSON_STRING, "a string", &v));
    *out = json_string_value(v);
    return BRG_OK;
}

static brg_status get_hex(const reader *rd, json_t *obj, brg__json_path path, const char *key, uint64_t *out) {
    const char *s;
    BRG__CHECK(get_string(rd, obj, path, key, &s));
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 16);
    if (strlen(s) != 16 || !end || *end) {
        brg__json_path at = brg__json_key(path, key);
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL, "must be 16 hex digits, not '%s'", s);
    }
    *out = (uint64_t)v;
    return BRG_OK;
}

static brg_status get_link_kind(const reader *rd, json_t *obj, brg__json_path path, const char *key,
                                brg_link_kind *out) {
    const char *s;
    BRG__CHECK(get_string(rd, obj, path, key, &s));
    for (int k = 0; k < BRG_LINK_KIND_COUNT; k++)
        if (strcmp(s, brg_link_kind_name((brg_link_kind)k)) == 0) {
            *out = (brg_link_kind)k;
            return BRG_OK;
        }
    brg__json_path at = brg__json_key(path, key);
    return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL, "unknown link kind '%s'", s);
}

static brg_status read_model(const reader *rd, json_t *root, brg_plan *plan, int *layers_out) {
    brg__json_path path = brg__json_key((brg__json_path){.depth = 0}, "model");
    json_t *model;
    BRG__CHECK(member(rd, root, (brg__json_path){.depth = 0}, "model", JSON_OBJECT, "an object", &model));
    static const char *const known[] = {"name", "fingerprint", "layers", "parameters", "tokens_per_sample", "layer_names", NULL};
    BRG__CHECK(check_members(rd, model, path, known));
    const char *name;
    int64_t layers, params, tokens;
    BRG__CHECK(get_string(rd, model, path, "name", &name));
    BRG__CHECK(get_hex(rd, model, path, "fingerprint", &plan->model_fingerprint));
    BRG__CHECK(get_int(rd, model, path, "layers", 1, 1 << 20, &layers));
    BRG__CHECK(get_int(rd, model, path, "parameters", 0, INT64_MAX, &params));
    BRG__CHECK(get_int(rd, model, path, "tokens_per_sample", 0, BRG_PLAN_MAX_TOKENS_PER_SAMPLE, &tokens));
    json_t *names;
    BRG__CHECK(member(rd, model, path, "layer_names", JSON_ARRAY, "an array of strings", &names));
    if ((int64_t)json_array_size(names) != layers) {
        brg__json_path at = brg__json_key(path, "layer_names");
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL,
                              "has %zu names for %lld layers", json_array_size(names), (long long)layers);
    }
    snprintf(plan->model_name, sizeof plan->model_name, "%s", name);
    plan->parameters = params;
    plan->tokens_per_sample = tokens;
    *layers_out = (int)layers;
    return BRG_OK;
}

static brg_status read_names(const reader *rd, json_t *root, brg_plan *plan) {
    json_t *names = json_object_get(json_object_get(root, "model"), "layer_names");
    brg__json_path path = brg__json_key(brg__json_key((brg__json_path){.depth = 0}, "model"), "layer_names");
    for (int l = 0; l < plan->layers; l++) {
        json_t *v = json_array_get(names, (size_t)l);
        if (!json_is_string(v)) {
            brg__json_path at = brg__json_index(path, l);
            return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL, "must be a string");
        }
        plan->layer_names[l] = brg__strdup(json_string_value(v));
        if (!plan->layer_names[l]) return brg__error_set(rd->err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    return BRG_OK;
}

typedef struct header {
    int layers;
    int64_t devices, nodes, ranks, replicas, chunks, micro_batch, micro_batches, global_batch, zero, tp, sp;
    brg_schedule_kind kind;
    brg_precision precision;
    brg_device_kind device_kind;
} header;

static brg_status read_header(const reader *rd, json_t *root, brg_plan *plan, header *h) {
    brg__json_path top = {.depth = 0};
    static const char *const known[] = {"format", "version", "model", "topology", "global_batch", "precision", "schedule",
                                        "pipeline_stages", "data_parallel", "zero", "tensor_parallel",
                                        "sequence_parallel", "chunks", "micro_batch", "micro_batches", "stages", "ranks",
                                        "predicted", NULL};
    const char *format;
    int64_t version;
    BRG__CHECK(get_string(rd, root, top, "format", &format));
    if (strcmp(format, PLAN_FORMAT) != 0) {
        brg__json_path at = brg__json_key(top, "format");
        return brg__json_fail(rd->err, BRG_ERR_MISMATCH, rd->origin, rd->text, &at, NULL,
                              "'%s' is not a brigade plan (expected \"%s\")", format, PLAN_FORMAT);
    }
    BRG__CHECK(get_int(rd, root, top, "version", INT64_MIN, INT64_MAX, &version));
    if (version != BRG_PLAN_FORMAT_VERSION) {
        brg__json_path at = brg__json_key(top, "version");
        return brg__json_fail(rd->err, BRG_ERR_MISMATCH, rd->origin, rd->text, &at, NULL,
                              "plan version %lld; this brigade reads version %d (re-plan with this version)",
                              (long long)version, BRG_PLAN_FORMAT_VERSION);
    }
    BRG__CHECK(check_members(rd, root, top, known));
    BRG__CHECK(read_model(rd, root, plan, &h->layers));
    json_t *topo;
    brg__json_path tp = brg__json_key(top, "topology");
    BRG__CHECK(member(rd, root, top, "topology", JSON_OBJECT, "an object", &topo));
    static const char *const known_topo[] = {"source", "fingerprint", "devices", "nodes", "device_kind", "device_model",
                                             "device_peak_flops", "device_figures", "device_nodes", NULL};
    BRG__CHECK(check_members(rd, topo, tp, known_topo));
    const char *source, *kind, *model;
    BRG__CHECK(get_string(rd, topo, tp, "source", &source));
    BRG__CHECK(get_hex(rd, topo, tp, "fingerprint", &plan->topology_fingerprint));
    BRG__CHECK(get_int(rd, topo, tp, "devices", 1, BRG_TOPOLOGY_MAX_DEVICES, &h->devices));
    BRG__CHECK(get_int(rd, topo, tp, "nodes", 1, BRG_TOPOLOGY_MAX_DEVICES, &h->nodes));
    BRG__CHECK(get_string(rd, topo, tp, "device_kind", &kind));
    BRG__CHECK(get_string(rd, topo, tp, "device_model", &model));
    BRG__CHECK(get_real(rd, topo, tp, "device_peak_flops", &plan->device_peak_flops));
    if (strcmp(kind, "gpu") == 0) h->device_kind = BRG_DEVICE_GPU;
    else if (strcmp(kind, "cpu") == 0) h->device_kind = BRG_DEVICE_CPU;
    else {
        brg__json_path at = brg__json_key(tp, "device_kind");
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL, "must be \"gpu\" or \"cpu\", not '%s'", kind);
    }
    snprintf(plan->topology_source, sizeof plan->topology_source, "%s", source);
    snprintf(plan->device_model, sizeof plan->device_model, "%s", model);
    const char *figures = "unknown";
    if (json_object_get(topo, "device_figures")) BRG__CHECK(get_string(rd, topo, tp, "device_figures", &figures));
    snprintf(plan->device_figures, sizeof plan->device_figures, "%s", figures);
    const char *precision, *schedule;
    BRG__CHECK(get_int(rd, root, top, "global_batch", 1, BRG_PLAN_MAX_GLOBAL_BATCH, &h->global_batch));
    BRG__CHECK(get_string(rd, root, top, "precision", &precision));
    int found = 0;
    for (int k = 0; k < BRG_PRECISION_COUNT && !found; k++)
        if (strcmp(precision, brg_precision_name((brg_precision)k)) == 0) {
            h->precision = (brg_precision)k;
            found = 1;
        }
    if (!found) {
        brg__json_path at = brg__json_key(top, "precision");
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL,
                              "unknown precision '%s' (fp32, tf32, bf16 or fp16)", precision);
    }
    BRG__CHECK(get_string(rd, root, top, "schedule", &schedule));
    if (brg_schedule_kind_from_name(schedule, &h->kind) != BRG_OK) {
        brg__json_path at = brg__json_key(top, "schedule");
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL,
                              "unknown schedule '%s' (gpipe, 1f1b, interleaved-1f1b or zb-h1)", schedule);
    }
    BRG__CHECK(get_int(rd, root, top, "pipeline_stages", 1, h->devices, &h->ranks));
    BRG__CHECK(get_int(rd, root, top, "data_parallel", 1, h->devices, &h->replicas));
    h->zero = 0; /* a plan written before ZeRO-1: off */
    if (json_object_get(root, "zero")) BRG__CHECK(get_int(rd, root, top, "zero", 0, 1, &h->zero));
    h->tp = 1; /* a plan written before tensor parallelism: none */
    h->sp = 0;
    if (json_object_get(root, "tensor_parallel"))
        BRG__CHECK(get_int(rd, root, top, "tensor_parallel", 1, h->devices, &h->tp));
    if (json_object_get(root, "sequence_parallel")) BRG__CHECK(get_int(rd, root, top, "sequence_parallel", 0, 1, &h->sp));
    if (h->sp && h->tp < 2) {
        brg__json_path at = brg__json_key(top, "sequence_parallel");
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL,
                              "1 needs tensor_parallel above 1 (sequence parallelism splits the positions over its group)");
    }
    BRG__CHECK(get_int(rd, root, top, "chunks", 1, 64, &h->chunks));
    BRG__CHECK(get_int(rd, root, top, "micro_batch", 1, h->global_batch, &h->micro_batch));
    BRG__CHECK(get_int(rd, root, top, "micro_batches", 1, 65535, &h->micro_batches));
    int64_t used_devices = 0, groups = 0, virtual_stages = 0;
    if (!brg__count_mul(h->ranks, h->replicas, BRG_TOPOLOGY_MAX_DEVICES, &groups) ||
        !brg__count_mul(groups, h->tp, BRG_TOPOLOGY_MAX_DEVICES, &used_devices) || used_devices != h->devices) {
        brg__json_path at = brg__json_key(top, "data_parallel");
        if (h->tp > 1)
            return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL,
                                  "%lld stages x %lld replicas x tensor_parallel %lld must use the topology's %lld devices",
                                  (long long)h->ranks, (long long)h->replicas, (long long)h->tp, (long long)h->devices);
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL,
                              "%lld stages x %lld replicas must use the topology's %lld devices", (long long)h->ranks,
                              (long long)h->replicas, (long long)h->devices);
    }
    /* Checked: the three factors come from the file, and their product must not wrap past the check. */
    int64_t per_replica = 0, samples = 0;
    bool fits = brg__count_mul(h->micro_batch, h->micro_batches, BRG_PLAN_MAX_GLOBAL_BATCH, &per_replica) &&
                brg__count_mul(per_replica, h->replicas, BRG_PLAN_MAX_GLOBAL_BATCH, &samples);
    if (!fits || samples != h->global_batch) {
        brg__json_path at = brg__json_key(top, "global_batch");
        char product[64];
        if (fits) snprintf(product, sizeof product, "%lld", (long long)samples);
        else snprintf(product, sizeof product, "more than the limit %lld", (long long)BRG_PLAN_MAX_GLOBAL_BATCH);
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL,
                              "%lld is not data_parallel x micro_batch x micro_batches = %lld x %lld x %lld = %s",
                              (long long)h->global_batch, (long long)h->replicas, (long long)h->micro_batch,
                              (long long)h->micro_batches, product);
    }
    brg_schedule_options so = BRG_SCHEDULE_OPTIONS_INIT;
    so.kind = h->kind;
    so.stages = (int)h->ranks;
    so.chunks = (int)h->chunks;
    so.micro_batches = (int)h->micro_batches;
    brg_error serr = {0};
    if (brg_schedule_validate(&so, &serr) != BRG_OK) {
        brg__json_path at = brg__json_key(top, "schedule");
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL, "%s", serr.message);
    }
    if (!brg__count_mul(h->ranks, h->chunks, h->layers, &virtual_stages)) {
        brg__json_path at = brg__json_key(top, "pipeline_stages");
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL,
                              "%lld stages x %lld chunks is more virtual stages than the %d layers",
                              (long long)h->ranks, (long long)h->chunks, h->layers);
    }
    return BRG_OK;
}

static brg_status read_stages(const reader *rd, json_t *root, brg_plan *plan, const header *h) {
    brg__json_path top = {.depth = 0}, sp = brg__json_key(top, "stages");
    json_t *stages;
    BRG__CHECK(member(rd, root, top, "stages", JSON_ARRAY, "an array", &stages));
    int S = (int)(h->ranks * h->chunks);
    if ((int)json_array_size(stages) != S)
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &sp, NULL,
                              "has %zu stages; %lld stages x %lld chunks need %d", json_array_size(stages),
                              (long long)h->ranks, (long long)h->chunks, S);
    static const char *const known[] = {"stage", "rank", "first_layer", "end_layer", "first_layer_name", "last_layer_name",
                                        "recompute", "predicted", NULL};
    static const char *const known_predicted[] = {"parameters", "forward_seconds", "backward_seconds", "recompute_seconds",
                                                  "boundary_bytes", "boundary_link", "boundary_crosses_nodes",
                                                  "transfer_seconds", "tensor_parallel_bytes", "tensor_parallel_seconds",
                                                  NULL};
    int expected_first = 0;
    for (int s = 0; s < S; s++) {
        json_t *o = json_array_get(stages, (size_t)s);
        brg__json_path at = brg__json_index(sp, s);
        if (!json_is_object(o))
            return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL, "must be an object");
        BRG__CHECK(check_members(rd, o, at, known));
        int64_t index, rank, first, end;
        const char *policy, *n1, *n2;
        BRG__CHECK(get_int(rd, o, at, "stage", s, s, &index));
        BRG__CHECK(get_int(rd, o, at, "rank", s % h->ranks, s % h->ranks, &rank));
        BRG__CHECK(get_int(rd, o, at, "first_layer", 0, h->layers, &first));
        if (first != expected_first) {
            brg__json_path f = brg__json_key(at, "first_layer");
            return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &f, NULL,
                                  "must be %d (where the previous stage ends), not %lld", expected_first, (long long)first);
        }
        BRG__CHECK(get_int(rd, o, at, "end_layer", first + 1, s + 1 == S ? h->layers : h->layers - (S - 1 - s), &end));
        if (s + 1 == S && end != h->layers) {
            brg__json_path f = brg__json_key(at, "end_layer");
            return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &f, NULL,
                                  "the last stage must end at layer %d (the model's layers), not %lld", h->layers, (long long)end);
        }
        BRG__CHECK(get_string(rd, o, at, "first_layer_name", &n1));
        BRG__CHECK(get_string(rd, o, at, "last_layer_name", &n2));
        BRG__CHECK(get_string(rd, o, at, "recompute", &policy));
        if (brg_recompute_from_name(policy, &plan->policy[s]) != BRG_OK) {
            brg__json_path f = brg__json_key(at, "recompute");
            return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &f, NULL,
                                  "unknown policy '%s' (none, full or selective)", policy);
        }
        plan->first[s] = (int)first;
        expected_first = (int)end;
        json_t *p = json_object_get(o, "predicted");
        if (!p) continue;
        brg__json_path pp = brg__json_key(at, "predicted");
        if (!json_is_object(p)) return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &pp, NULL, "must be an object");
        BRG__CHECK(check_members(rd, p, pp, known_predicted));
        brg_plan_stage *st = &plan->stages[s];
        json_t *crosses;
        BRG__CHECK(get_int(rd, p, pp, "parameters", 0, INT64_MAX, &st->parameters));
        BRG__CHECK(get_real(rd, p, pp, "forward_seconds", &st->forward_seconds));
        BRG__CHECK(get_real(rd, p, pp, "backward_seconds", &st->backward_seconds));
        BRG__CHECK(get_real(rd, p, pp, "recompute_seconds", &st->recompute_seconds));
        BRG__CHECK(get_int(rd, p, pp, "boundary_bytes", 0, INT64_MAX, &st->boundary_bytes));
        BRG__CHECK(get_link_kind(rd, p, pp, "boundary_link", &st->boundary_link));
        BRG__CHECK(member(rd, p, pp, "boundary_crosses_nodes", JSON_TRUE, "a boolean", &crosses));
        st->boundary_crosses_nodes = json_is_true(crosses);
        BRG__CHECK(get_real(rd, p, pp, "transfer_seconds", &st->transfer_seconds));
        if (json_object_get(p, "tensor_parallel_bytes"))
            BRG__CHECK(get_int(rd, p, pp, "tensor_parallel_bytes", 0, INT64_MAX, &st->tensor_parallel_bytes));
        if (json_object_get(p, "tensor_parallel_seconds"))
            BRG__CHECK(get_real(rd, p, pp, "tensor_parallel_seconds", &st->tensor_parallel_seconds));
    }
    plan->first[S] = h->layers;
    return BRG_OK;
}

static brg_status read_ranks(const reader *rd, json_t *root, brg_plan *plan, const header *h, int *predicted) {
    brg__json_path top = {.depth = 0}, rp = brg__json_key(top, "ranks");
    json_t *ranks;
    BRG__CHECK(member(rd, root, top, "ranks", JSON_ARRAY, "an array", &ranks));
    if ((int64_t)json_array_size(ranks) != h->ranks)
        return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &rp, NULL, "has %zu ranks; the plan has %lld stages",
                              json_array_size(ranks), (long long)h->ranks);
    static const char *const known[] = {"rank", "devices", "predicted", NULL};
    static const char *const known_predicted[] = {"capacity_bytes", "usable_bytes", "parameter_bytes", "gradient_bytes",
                                                  "optimizer_bytes", "activation_bytes", "workspace_bytes", "total_bytes",
                                                  "peak_in_flight", "busy_seconds", "allreduce_seconds",
                                                  "optimizer_seconds", "allreduce_link", "tensor_parallel_link", NULL};
    unsigned char *seen = brg__calloc((size_t)h->devices, 1);
    if (!seen) return brg__error_set(rd->err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    brg_status s = BRG_OK;
    *predicted = 1;
    for (int r = 0; r < h->ranks && s == BRG_OK; r++) {
        json_t *o = json_array_get(ranks, (size_t)r);
        brg__json_path at = brg__json_index(rp, r);
        if (!json_is_object(o)) {
            s = brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &at, NULL, "must be an object");
            break;
        }
        int64_t index;
        json_t *devices;
        if ((s = check_members(rd, o, at, known)) != BRG_OK || (s = get_int(rd, o, at, "rank", r, r, &index)) != BRG_OK ||
            (s = member(rd, o, at, "devices", JSON_ARRAY, "an array of device indices", &devices)) != BRG_OK)
            break;
        brg__json_path dp = brg__json_key(at, "devices");
        int64_t listed = h->replicas * h->tp; /* bounded by the devices (read_header) */
        if ((int64_t)json_array_size(devices) != listed) {
            if (h->tp > 1)
                s = brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &dp, NULL,
                                   "has %zu devices; %lld replicas of tensor-parallel groups of %lld need %lld",
                                   json_array_size(devices), (long long)h->replicas, (long long)h->tp, (long long)listed);
            else
                s = brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &dp, NULL, "has %zu devices; %lld replicas need %lld",
                                   json_array_size(devices), (long long)h->replicas, (long long)h->replicas);
            break;
        }
        for (int i = 0; i < listed && s == BRG_OK; i++) {
            json_t *v = json_array_get(devices, (size_t)i);
            brg__json_path di = brg__json_index(dp, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= h->devices) {
                s = brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &di, NULL, "must be a device index in 0..%lld",
                                   (long long)h->devices - 1);
                break;
            }
            int d = (int)json_integer_value(v);
            if (seen[d]) {
                s = brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &di, NULL, "device %d is used twice", d);
                break;
            }
            seen[d] = 1;
            plan->devices[r * listed + i] = d;
        }
        json_t *p = json_object_get(o, "predicted");
        if (s != BRG_OK) break;
        if (!p) {
            *predicted = 0;
            continue;
        }
        brg__json_path pp = brg__json_key(at, "predicted");
        if (!json_is_object(p)) {
            s = brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &pp, NULL, "must be an object");
            break;
        }
        brg_plan_rank *rk = &plan->ranks[r];
        int64_t in_flight;
        if ((s = check_members(rd, p, pp, known_predicted)) != BRG_OK ||
            (s = get_int(rd, p, pp, "capacity_bytes", 0, INT64_MAX, &rk->capacity_bytes)) != BRG_OK ||
            (s = get_int(rd, p, pp, "usable_bytes", 0, INT64_MAX, &rk->usable_bytes)) != BRG_OK ||
            (s = get_int(rd, p, pp, "parameter_bytes", 0, INT64_MAX, &rk->parameter_bytes)) != BRG_OK ||
            (s = get_int(rd, p, pp, "gradient_bytes", 0, INT64_MAX, &rk->gradient_bytes)) != BRG_OK ||
            (s = get_int(rd, p, pp, "optimizer_bytes", 0, INT64_MAX, &rk->optimizer_bytes)) != BRG_OK ||
            (s = get_int(rd, p, pp, "activation_bytes", 0, INT64_MAX, &rk->activation_bytes)) != BRG_OK ||
            (s = get_int(rd, p, pp, "workspace_bytes", 0, INT64_MAX, &rk->workspace_bytes)) != BRG_OK ||
            (s = get_int(rd, p, pp, "total_bytes", 0, INT64_MAX, &rk->total_bytes)) != BRG_OK ||
            (s = get_int(rd, p, pp, "peak_in_flight", 0, 64 * 65535, &in_flight)) != BRG_OK ||
            (s = get_real(rd, p, pp, "busy_seconds", &rk->busy_seconds)) != BRG_OK ||
            (s = get_real(rd, p, pp, "allreduce_seconds", &rk->allreduce_seconds)) != BRG_OK ||
            (s = get_real(rd, p, pp, "optimizer_seconds", &rk->optimizer_seconds)) != BRG_OK ||
            (s = get_link_kind(rd, p, pp, "allreduce_link", &rk->allreduce_link)) != BRG_OK)
            break;
        rk->peak_in_flight = (int)in_flight;
        if (json_object_get(p, "tensor_parallel_link") &&
            (s = get_link_kind(rd, p, pp, "tensor_parallel_link", &plan->tp_link)) != BRG_OK)
            break;
    }
    free(seen);
    return s;
}

static brg_status read_predicted(const reader *rd, json_t *root, brg_plan *plan) {
    json_t *p = json_object_get(root, "predicted");
    if (!p) return BRG_OK;
    brg__json_path pp = brg__json_key((brg__json_path){.depth = 0}, "predicted");
    if (!json_is_object(p)) return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, &pp, NULL, "must be an object");
    static const char *const known[] = {"iteration_seconds", "tokens_per_second", "mfu", "tflops_per_device", "bubble",
                                        "allreduce_seconds", "peak_memory_bytes", "lower_bound_seconds", "exhaustive",
                                        "vocabulary_padding", NULL};
    BRG__CHECK(check_members(rd, p, pp, known));
    brg_plan_summary *sm = &plan->summary;
    json_t *exhaustive;
    BRG__CHECK(get_real(rd, p, pp, "iteration_seconds", &sm->iteration_seconds));
    BRG__CHECK(get_real(rd, p, pp, "tokens_per_second", &sm->tokens_per_second));
    BRG__CHECK(get_real(rd, p, pp, "mfu", &sm->mfu));
    BRG__CHECK(get_real(rd, p, pp, "tflops_per_device", &sm->tflops_per_device));
    BRG__CHECK(get_real(rd, p, pp, "bubble", &sm->bubble));
    BRG__CHECK(get_real(rd, p, pp, "allreduce_seconds", &sm->allreduce_seconds));
    BRG__CHECK(get_int(rd, p, pp, "peak_memory_bytes", 0, INT64_MAX, &sm->peak_memory_bytes));
    BRG__CHECK(get_real(rd, p, pp, "lower_bound_seconds", &sm->lower_bound_seconds));
    BRG__CHECK(member(rd, p, pp, "exhaustive", JSON_TRUE, "a boolean", &exhaustive));
    sm->exhaustive = json_is_true(exhaustive);
    if (json_object_get(p, "vocabulary_padding"))
        BRG__CHECK(get_int(rd, p, pp, "vocabulary_padding", 0, INT64_MAX, &plan->vocab_padding));
    return BRG_OK;
}

brg_status brg_plan_load_string(const char *json, const char *origin, brg_plan **out, brg_error *err) {
    if (out) *out = NULL;
    if (!json || !out)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_plan_load_string: %s is NULL", !json ? "json" : "out");
    reader rd = {origin ? origin : "<string>", json, err};
    json_error_t je;
    brg_status parsed;
    json_t *root = brg__json_parse(json, strlen(json), JSON_REJECT_DUPLICATES, &je, &parsed);
    if (!root && parsed == BRG_ERR_OUT_OF_MEMORY)
        return brg__error_set(err, parsed, "%s: out of memory reading the plan", rd.origin);
    if (!root)
        return brg__error_set(err, BRG_ERR_PARSE, "%s:%d:%d: malformed JSON: %s", rd.origin, je.line, je.column, je.text);
    brg_plan *plan = NULL;
    brg_status s = BRG_OK;
    header h = {0};
    if (!json_is_object(root)) {
        s = brg__json_fail(err, BRG_ERR_PARSE, rd.origin, json, &(brg__json_path){.depth = 0}, NULL,
                           "a plan is a JSON object, not %s", type_name(root));
        goto done;
    }
    /* A scratch plan for the header, then the real one sized from it. */
    brg_plan scratch;
    memset(&scratch, 0, sizeof scratch);
    if ((s = read_header(&rd, root, &scratch, &h)) != BRG_OK) goto done;
    plan = brg__plan_new((int)(h.ranks * h.chunks), (int)h.ranks, (int)h.replicas, (int)h.tp, h.layers);
    if (!plan) {
        s = brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    free(plan->device_node);
    plan->device_node = brg__calloc((size_t)h.devices, sizeof *plan->device_node);
    if (!plan->device_node) {
        s = brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    memcpy(plan->model_name, scratch.model_name, sizeof plan->model_name);
    plan->model_fingerprint = scratch.model_fingerprint;
    plan->topology_fingerprint = scratch.topology_fingerprint;
    memcpy(plan->topology_source, scratch.topology_source, sizeof plan->topology_source);
    memcpy(plan->device_model, scratch.device_model, sizeof plan->device_model);
    memcpy(plan->device_figures, scratch.device_figures, sizeof plan->device_figures);
    plan->device_peak_flops = scratch.device_peak_flops;
    plan->parameters = scratch.parameters;
    plan->tokens_per_sample = scratch.tokens_per_sample;
    plan->devices_total = (int)h.devices;
    plan->nodes = (int)h.nodes;
    plan->node_devices = (int)(h.devices / h.nodes);
    plan->global_batch = h.global_batch;
    plan->precision = h.precision;
    plan->device_kind = h.device_kind;
    plan->config = (brg__config){(int)h.ranks,      (int)h.replicas, (int)h.chunks, h.micro_batch, h.micro_batches,
                                 h.kind,            (int)h.zero,     (int)h.tp,     (int)h.sp};
    int predicted = 0;
    if ((s = read_names(&rd, root, plan)) != BRG_OK || (s = read_stages(&rd, root, plan, &h)) != BRG_OK ||
        (s = read_ranks(&rd, root, plan, &h, &predicted)) != BRG_OK || (s = read_predicted(&rd, root, plan)) != BRG_OK)
        goto done;
    /* Device nodes (for the placement picture); optional in spirit, required by the schema. */
    json_t *nodes = json_object_get(json_object_get(root, "topology"), "device_nodes");
    brg__json_path np = brg__json_key(brg__json_key((brg__json_path){.depth = 0}, "topology"), "device_nodes");
    if (!json_is_array(nodes) || (int64_t)json_array_size(nodes) != h.devices) {
        s = brg__json_fail(err, BRG_ERR_PARSE, rd.origin, json, &np, NULL, "must list the node of each of the %lld devices",
                           (long long)h.devices);
        goto done;
    }
    for (int d = 0; d < h.devices; d++) {
        json_t *v = json_array_get(nodes, (size_t)d);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= h.nodes) {
            brg__json_path at = brg__json_index(np, d);
            s = brg__json_fail(err, BRG_ERR_PARSE, rd.origin, json, &at, NULL, "must be a node index in 0..%lld",
                               (long long)h.nodes - 1);
            goto done;
        }
        plan->device_node[d] = (int)json_integer_value(v);
    }
    brg_plan_summary keep = plan->summary;
    brg__plan_structure(plan);
    plan->predicted = predicted && json_object_get(root, "predicted") != NULL;
    plan->summary.predicted = plan->predicted;
    plan->summary.iteration_seconds = keep.iteration_seconds;
    plan->summary.tokens_per_second = keep.tokens_per_second;
    plan->summary.mfu = keep.mfu;
    plan->summary.tflops_per_device = keep.tflops_per_device;
    plan->summary.bubble = keep.bubble;
    plan->summary.allreduce_seconds = keep.allreduce_seconds;
    plan->summary.peak_memory_bytes = keep.peak_memory_bytes;
    plan->summary.lower_bound_seconds = keep.lower_bound_seconds;
    plan->summary.exhaustive = keep.exhaustive;
done:
    json_decref(root);
    if (s != BRG_OK) {
        brg_plan_destroy(plan);
        return s;
    }
    *out = plan;
    return BRG_OK;
}

brg_status brg_plan_load(const char *path, brg_plan **out, brg_error *err) {
    if (out) *out = NULL;
    if (!path || !out)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_plan_load: %s is NULL", !path ? "path" : "out");
    char *text = NULL;
    BRG__CHECK(brg__read_text_file(path, PLAN_MAX_BYTES, &text, err));
    brg_status s = brg_plan_load_string(text, path, out, err);
    free(text);
    return s;
}
