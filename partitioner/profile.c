/* Profiles: measured forward, backward-input and backward-weight times of every layer of one model on one
 * kind of device, at one or more micro-batch sizes, and their JSON files. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "partitioner_internal.h"

#define PROFILE_FORMAT "brigade-profile"

typedef struct profile_record {
    int64_t micro_batch;
    double seconds[3]; /* forward, backward-input, backward-weight */
} profile_record;

typedef struct profile_layer {
    char *name;
    profile_record *records;
    int count, capacity;
} profile_layer;

struct brg_profile {
    char device_model[BRG_MAX_NAME];
    uint64_t fingerprint;
    double transfer_latency;
    int layer_count;
    profile_layer *layers;
};

static brg_profile *profile_new(int layers) {
    brg_profile *p = brg__calloc(1, sizeof *p);
    if (!p) return NULL;
    p->layer_count = layers;
    p->layers = brg__calloc((size_t)layers, sizeof *p->layers);
    if (!p->layers) {
        free(p);
        return NULL;
    }
    return p;
}

void brg_profile_destroy(brg_profile *p) {
    if (!p) return;
    for (int l = 0; l < p->layer_count; l++) {
        free(p->layers[l].name);
        free(p->layers[l].records);
    }
    free(p->layers);
    free(p);
}

brg_status brg_profile_create(brg_profile **out, const brg_graph *g, const char *device_model, brg_error *err) {
    if (out) *out = NULL;
    if (!out || !g || !device_model)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_profile_create: %s is NULL",
                              !out ? "out" : !g ? "the graph" : "device_model");
    if (!brg_graph_is_final(g) || brg_graph_status(g) != BRG_OK)
        return brg__error_set(err, BRG_ERR_INVALID_USAGE, "brg_profile_create: the graph is not finalized");
    brg_profile *p = profile_new(g->n_layers);
    if (!p) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    snprintf(p->device_model, sizeof p->device_model, "%s", device_model);
    p->fingerprint = brg_plan_model_fingerprint(g);
    for (int l = 0; l < g->n_layers; l++)
        if (!(p->layers[l].name = brg__strdup(g->layers[l].name))) {
            brg_profile_destroy(p);
            return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        }
    *out = p;
    return BRG_OK;
}

static brg_status record_set(profile_layer *l, int64_t b, const double *seconds) {
    for (int i = 0; i < l->count; i++)
        if (l->records[i].micro_batch == b) {
            memcpy(l->records[i].seconds, seconds, sizeof l->records[i].seconds);
            return BRG_OK;
        }
    if (l->count == l->capacity) {
        int capacity = l->capacity ? 2 * l->capacity : 4;
        profile_record *grown = brg__realloc(l->records, sizeof *grown * (size_t)capacity);
        if (!grown) return BRG_ERR_OUT_OF_MEMORY;
        l->records = grown;
        l->capacity = capacity;
    }
    l->records[l->count].micro_batch = b;
    memcpy(l->records[l->count].seconds, seconds, sizeof l->records[0].seconds);
    l->count++;
    return BRG_OK;
}

brg_status brg_profile_set(brg_profile *p, int layer, int64_t micro_batch, double forward_seconds,
                           double backward_input_seconds, double backward_weight_seconds) {
    if (!p || micro_batch < 1) return BRG_ERR_INVALID_ARGUMENT;
    double s[3] = {forward_seconds, backward_input_seconds, backward_weight_seconds};
    for (int k = 0; k < 3; k++)
        if (!isfinite(s[k]) || s[k] < 0) return BRG_ERR_INVALID_ARGUMENT;
    if (layer < 0 || layer >= p->layer_count) return BRG_ERR_NOT_FOUND;
    return record_set(&p->layers[layer], micro_batch, s);
}

/* t(b) = a + c b by least squares over the records, both >= 0; through the origin with one record. */
static double fit(const profile_layer *l, int pass, int64_t b) {
    int n = l->count;
    if (n == 1) return l->records[0].seconds[pass] * (double)b / (double)l->records[0].micro_batch;
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++) {
        double x = (double)l->records[i].micro_batch, y = l->records[i].seconds[pass];
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    double det = n * sxx - sx * sx;
    double slope = det > 0 ? (n * sxy - sx * sy) / det : 0.0;
    double intercept = (sy - slope * sx) / n;
    if (intercept < 0) {
        slope = sxy / sxx;
        intercept = 0.0;
    }
    if (slope < 0) {
        slope = 0.0;
        intercept = sy / n;
    }
    return intercept + slope * (double)b;
}

brg_status brg_profile_get(const brg_profile *p, int layer, int64_t micro_batch, double *forward_seconds,
                           double *backward_input_seconds, double *backward_weight_seconds) {
    if (!p || micro_batch < 1 || !forward_seconds || !backward_input_seconds || !backward_weight_seconds)
        return BRG_ERR_INVALID_ARGUMENT;
    if (layer < 0 || layer >= p->layer_count || p->layers[layer].count == 0) return BRG_ERR_NOT_FOUND;
    const profile_layer *l = &p->layers[layer];
    *forward_seconds = fit(l, 0, micro_batch);
    *backward_input_seconds = fit(l, 1, micro_batch);
    *backward_weight_seconds = fit(l, 2, micro_batch);
    return BRG_OK;
}

brg_status brg_profile_set_transfer_latency(brg_profile *p, double seconds) {
    if (!p || !isfinite(seconds) || seconds < 0) return BRG_ERR_INVALID_ARGUMENT;
    p->transfer_latency = seconds;
    return BRG_OK;
}

double brg_profile_transfer_latency(const brg_profile *p) { return p ? p->transfer_latency : 0.0; }

const char *brg_profile_device_model(const brg_profile *p) { return p ? p->device_model : ""; }
uint64_t brg_profile_model_fingerprint(const brg_profile *p) { return p ? p->fingerprint : 0; }
int brg_profile_layer_count(const brg_profile *p) { return p ? p->layer_count : 0; }

/* ---- files ----------------------------------------------------------------------------------------- */

brg_status brg_profile_save(const brg_profile *p, const char *path, brg_error *err) {
    if (!p || !path) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_profile_save: %s is NULL", !p ? "profile" : "path");
    for (int l = 0; l < p->layer_count; l++)
        if (p->layers[l].count == 0)
            return brg__error_set(err, BRG_ERR_INVALID_USAGE, "the profile has no times for layer %d (%s)", l,
                                  p->layers[l].name ? p->layers[l].name : "?");
    char fp[17];
    snprintf(fp, sizeof fp, "%016" PRIx64, p->fingerprint);
    uint64_t mark = brg__json_build_begin();
    json_t *root = json_object();
    brg__json_set(root, "format", json_string(PROFILE_FORMAT));
    brg__json_set(root, "version", json_integer(BRG_PROFILE_FORMAT_VERSION));
    brg__json_set(root, "model_fingerprint", json_string(fp));
    brg__json_set(root, "device_model", json_string(p->device_model));
    brg__json_set(root, "transfer_latency_seconds", json_real(p->transfer_latency));
    json_t *layers = json_array();
    for (int l = 0; l < p->layer_count; l++) {
        json_t *o = json_object();
        brg__json_set(o, "layer", json_integer(l));
        brg__json_set(o, "name", json_string(p->layers[l].name ? p->layers[l].name : ""));
        json_t *records = json_array();
        for (int i = 0; i < p->layers[l].count; i++) {
            const profile_record *r = &p->layers[l].records[i];
            json_t *ro = json_object();
            brg__json_set(ro, "micro_batch", json_integer(r->micro_batch));
            brg__json_set(ro, "forward_seconds", json_real(r->seconds[0]));
            brg__json_set(ro, "backward_input_seconds", json_real(r->seconds[1]));
            brg__json_set(ro, "backward_weight_seconds", json_real(r->seconds[2]));
            brg__json_append(records, ro);
        }
        brg__json_set(o, "times", records);
        brg__json_append(layers, o);
    }
    brg__json_set(root, "layers", layers);
    char *text = brg__json_dump(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9), mark);
    json_decref(root);
    if (!text) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    brg_status s = brg__write_text_file(path, text, err);
    free(text);
    return s;
}

typedef struct preader {
    const char *origin, *text;
    brg_error *err;
} preader;

static brg_status bad(const preader *rd, const brg__json_path *path, const char *field, const char *what) {
    return brg__json_fail(rd->err, BRG_ERR_PARSE, rd->origin, rd->text, path, field, "%s", what);
}

static int only_members(json_t *o, const char *const *known, const char **unknown) {
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        int ok = 0;
        for (const char *const *k = known; *k && !ok; k++) ok = strcmp(*k, key) == 0;
        if (!ok) {
            *unknown = key;
            return 0;
        }
    }
    return 1;
}

static brg_status parse_profile(const preader *rd, json_t *root, brg_profile **out) {
    brg__json_path top = {.depth = 0};
    if (!json_is_object(root)) return bad(rd, &top, NULL, "a profile is a JSON object");
    json_t *format = json_object_get(root, "format"), *version = json_object_get(root, "version");
    if (!json_is_string(format) || strcmp(json_string_value(format), PROFILE_FORMAT) != 0)
        return brg__json_fail(rd->err, BRG_ERR_MISMATCH, rd->origin, rd->text, &top, "format",
                              "not a brigade profile (expected \"%s\")", PROFILE_FORMAT);
    if (!json_is_integer(version) || json_integer_value(version) != BRG_PROFILE_FORMAT_VERSION)
        return brg__json_fail(rd->err, BRG_ERR_MISMATCH, rd->origin, rd->text, &top, "version",
                              "this brigade reads profile version %d", BRG_PROFILE_FORMAT_VERSION);
    static const char *const known[] = {"format", "version", "model_fingerprint", "device_model", "transfer_latency_seconds",
                                        "layers", NULL};
    const char *unknown = NULL;
    if (!only_members(root, known, &unknown)) return bad(rd, &top, unknown, "unknown field");
    json_t *fp = json_object_get(root, "model_fingerprint"), *model = json_object_get(root, "device_model");
    json_t *layers = json_object_get(root, "layers");
    if (!json_is_string(fp) || strlen(json_string_value(fp)) != 16)
        return bad(rd, &top, "model_fingerprint", "must be 16 hex digits");
    if (!json_is_string(model)) return bad(rd, &top, "device_model", "must be a string");
    if (!json_is_array(layers) || json_array_size(layers) == 0)
        return bad(rd, &top, "layers", "must be an array with one entry per layer");
    if (json_array_size(layers) > (1 << 20)) return bad(rd, &top, "layers", "more than 1048576 layers");
    brg_profile *p = profile_new((int)json_array_size(layers));
    if (!p) return brg__error_set(rd->err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    char *end = NULL;
    p->fingerprint = strtoull(json_string_value(fp), &end, 16);
    if (!end || *end) {
        brg_profile_destroy(p);
        return bad(rd, &top, "model_fingerprint", "must be 16 hex digits");
    }
    snprintf(p->device_model, sizeof p->device_model, "%s", json_string_value(model));
    json_t *latency = json_object_get(root, "transfer_latency_seconds");
    if (latency && (!json_is_number(latency) || !isfinite(json_number_value(latency)) || json_number_value(latency) < 0)) {
        brg_profile_destroy(p);
        return bad(rd, &top, "transfer_latency_seconds", "must be a number of seconds >= 0");
    }
    p->transfer_latency = latency ? json_number_value(latency) : 0.0;
    brg__json_path lp = brg__json_key(top, "layers");
    static const char *const known_layer[] = {"layer", "name", "times", NULL};
    static const char *const known_time[] = {"micro_batch", "forward_seconds", "backward_input_seconds",
                                             "backward_weight_seconds", NULL};
    for (int l = 0; l < p->layer_count; l++) {
        json_t *o = json_array_get(layers, (size_t)l);
        brg__json_path at = brg__json_index(lp, l);
        brg_status s = BRG_OK;
        if (!json_is_object(o)) s = bad(rd, &at, NULL, "must be an object");
        else if (!only_members(o, known_layer, &unknown)) s = bad(rd, &at, unknown, "unknown field");
        else if (!json_is_integer(json_object_get(o, "layer")) || json_integer_value(json_object_get(o, "layer")) != l)
            s = bad(rd, &at, "layer", "must be the entry's index");
        else if (!json_is_string(json_object_get(o, "name"))) s = bad(rd, &at, "name", "must be a string");
        else if (!json_is_array(json_object_get(o, "times")) || !json_array_size(json_object_get(o, "times")))
            s = bad(rd, &at, "times", "must be a non-empty array");
        if (s == BRG_OK && !(p->layers[l].name = brg__strdup(json_string_value(json_object_get(o, "name")))))
            s = brg__error_set(rd->err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        json_t *times = json_object_get(o, "times");
        for (size_t i = 0; s == BRG_OK && i < json_array_size(times); i++) {
            json_t *t = json_array_get(times, i);
            brg__json_path ti = brg__json_index(brg__json_key(at, "times"), (int)i);
            if (!json_is_object(t)) {
                s = bad(rd, &ti, NULL, "must be an object");
                break;
            }
            if (!only_members(t, known_time, &unknown)) {
                s = bad(rd, &ti, unknown, "unknown field");
                break;
            }
            json_t *mb = json_object_get(t, "micro_batch");
            if (!json_is_integer(mb) || json_integer_value(mb) < 1) {
                s = bad(rd, &ti, "micro_batch", "must be a whole number >= 1");
                break;
            }
            double sec[3];
            for (int k = 0; k < 3 && s == BRG_OK; k++) {
                json_t *v = json_object_get(t, known_time[k + 1]);
                if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0)
                    s = bad(rd, &ti, known_time[k + 1], "must be a number of seconds >= 0");
                else
                    sec[k] = json_number_value(v);
            }
            if (s == BRG_OK && record_set(&p->layers[l], (int64_t)json_integer_value(mb), sec) != BRG_OK)
                s = brg__error_set(rd->err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        }
        if (s != BRG_OK) {
            brg_profile_destroy(p);
            return s;
        }
    }
    *out = p;
    return BRG_OK;
}

brg_status brg_profile_load(const char *path, brg_profile **out, brg_error *err) {
    if (out) *out = NULL;
    if (!path || !out) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_profile_load: %s is NULL", !path ? "path" : "out");
    char *text = NULL;
    BRG__CHECK(brg__read_text_file(path, INT64_C(64) << 20, &text, err));
    json_error_t je;
    brg_status s;
    json_t *root = brg__json_parse(text, strlen(text), JSON_REJECT_DUPLICATES, &je, &s);
    if (!root && s == BRG_ERR_OUT_OF_MEMORY) {
        s = brg__error_set(err, s, "%s: out of memory reading the profile", path);
    } else if (!root) {
        s = brg__error_set(err, BRG_ERR_PARSE, "%s:%d:%d: malformed JSON: %s", path, je.line, je.column, je.text);
    } else {
        preader rd = {path, text, err};
        s = parse_profile(&rd, root, out);
        json_decref(root);
    }
    free(text);
    return s;
}
