/* Cluster descriptions (JSON, schema in include/brigade/topology.h and docs/cluster.md).
 *
 * jansson parses and reports syntax errors with line and column; it keeps no positions for values, so
 * a small scanner walks the (already valid) text to the value a semantic error is about. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "topology_internal.h"

#define CLUSTER_VERSION 1
#define CLUSTER_MAX_BYTES (16 << 20)
#define GROUP_NAME_MAX 40

/* ---- parsing context ---------------------------------------------------------------------------- */

typedef struct cluster_ctx {
    const char *file;
    const char *text;
    const char *base_dir;
    brg_topology_options opts;
    brg_error *err;
} cluster_ctx;

/* "file:line:column: field: message", located at `path`; `field`, when given, is a missing member of
 * the object at `path`. */
static brg_status fail(const cluster_ctx *c, brg_status status, const brg__json_path *path, const char *field,
                       const char *fmt, ...) BRG__PRINTF(5, 6);

static brg_status fail(const cluster_ctx *c, brg_status status, const brg__json_path *path, const char *field,
                       const char *fmt, ...) {
    char message[BRG_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return brg__json_fail(c->err, status, c->file, c->text, path, field, "%s", message);
}

/* Every member of obj must be one of `known` (NULL-terminated): a typo is an error, not a default. */
static brg_status check_members(const cluster_ctx *c, json_t *obj, const brg__json_path *path, const char *const *known) {
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        int ok = 0;
        for (const char *const *k = known; *k && !ok; k++) ok = strcmp(*k, key) == 0;
        if (!ok) {
            brg__json_path at = brg__json_key(*path, key);
            char list[256] = "";
            for (const char *const *k = known; *k; k++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k == known ? "" : ", ", *k);
            return fail(c, BRG_ERR_PARSE, &at, NULL, "unknown field (expected one of: %s)", list);
        }
    }
    return BRG_OK;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "a whole number";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        break;
    }
    return "null";
}

/* A whole number in [min, max] from member `key` of obj; *present says whether it was there. */
static brg_status get_integer(const cluster_ctx *c, json_t *obj, const brg__json_path *path, const char *key,
                              long long min, long long max, int required, long long *out, int *present) {
    json_t *v = json_object_get(obj, key);
    brg__json_path at = brg__json_key(*path, key);
    *present = v != NULL;
    if (!v) return required ? fail(c, BRG_ERR_PARSE, path, key, "missing field") : BRG_OK;
    if (!json_is_integer(v))
        return fail(c, BRG_ERR_PARSE, &at, NULL, "must be a whole number, not %s", json_kind(v));
    *out = json_integer_value(v);
    if (*out < min) return fail(c, BRG_ERR_PARSE, &at, NULL, "must be at least %lld, not %lld", min, *out);
    if (*out > max) return fail(c, BRG_ERR_PARSE, &at, NULL, "must be at most %lld, not %lld", max, *out);
    return BRG_OK;
}

/* A finite number > 0 from member `key`. */
static brg_status get_positive(const cluster_ctx *c, json_t *obj, const brg__json_path *path, const char *key,
                               double *out, int *present) {
    json_t *v = json_object_get(obj, key);
    brg__json_path at = brg__json_key(*path, key);
    *present = v != NULL;
    if (!v) return BRG_OK;
    if (!json_is_number(v)) return fail(c, BRG_ERR_PARSE, &at, NULL, "must be a number, not %s", json_kind(v));
    *out = json_number_value(v);
    if (!isfinite(*out) || *out <= 0)
        return fail(c, BRG_ERR_PARSE, &at, NULL, "must be a number greater than 0, not %g", *out);
    return BRG_OK;
}

static brg_status get_string(const cluster_ctx *c, json_t *obj, const brg__json_path *path, const char *key,
                             const char **out) {
    json_t *v = json_object_get(obj, key);
    brg__json_path at = brg__json_key(*path, key);
    *out = NULL;
    if (!v) return BRG_OK;
    if (!json_is_string(v) || json_string_length(v) == 0)
        return fail(c, BRG_ERR_PARSE, &at, NULL, "must be a non-empty string, not %s",
                    json_is_string(v) ? "an empty one" : json_kind(v));
    *out = json_string_value(v);
    return BRG_OK;
}

/* ---- one node group ----------------------------------------------------------------------------- */

typedef struct group {
    brg_topology *node; /* one node, the template of every node of the group */
    long long count;
    char name[GROUP_NAME_MAX + 1];
} group;

typedef struct nic_request {
    long long count; /* -1: not given */
    double bandwidth; /* bytes/s; -1: not given */
} nic_request;

static brg_status parse_nics(const cluster_ctx *c, json_t *group_obj, const brg__json_path *path, nic_request *nics) {
    static const char *const known[] = {"count", "gbps", NULL};
    nics->count = -1;
    nics->bandwidth = -1;
    json_t *v = json_object_get(group_obj, "nics");
    if (!v) return BRG_OK;
    brg__json_path at = brg__json_key(*path, "nics");
    if (!json_is_object(v)) return fail(c, BRG_ERR_PARSE, &at, NULL, "must be an object, not %s", json_kind(v));
    BRG__CHECK(check_members(c, v, &at, known));
    int present;
    double gbps = 0;
    BRG__CHECK(get_integer(c, v, &at, "count", 0, BRG_TOPOLOGY_MAX_NICS_PER_NODE, 0, &nics->count, &present));
    if (!present) nics->count = -1;
    BRG__CHECK(get_positive(c, v, &at, "gbps", &gbps, &present));
    if (present) nics->bandwidth = gbps * 1e9 / 8;
    return BRG_OK;
}

static void list_node_presets(char *buf, size_t size) {
    buf[0] = '\0';
    for (int i = 0; i < brg_node_preset_count(); i++)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? ", " : "", brg_node_preset_at(i)->name);
}

static void list_device_presets(char *buf, size_t size) {
    buf[0] = '\0';
    for (int i = 0; i < brg_device_preset_count(); i++)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? ", " : "", brg_device_preset_at(i)->name);
}

static brg_status group_from_preset(const cluster_ctx *c, const brg__json_path *path, const char *name,
                                    const nic_request *nics, group *g) {
    const brg_node_preset *p = brg_node_preset_find(name);
    if (!p) {
        char known[512];
        list_node_presets(known, sizeof known);
        brg__json_path at = brg__json_key(*path, "preset");
        return fail(c, BRG_ERR_NAME, &at, NULL, "unknown node preset '%s' (known: %s)", name, known);
    }
    if (!g->name[0]) brg__copy_string(g->name, sizeof g->name, p->name);
    return brg__node_from_preset(&g->node, p, (int)nics->count, nics->bandwidth, g->name, c->err);
}

static void resolve_path(const cluster_ctx *c, const char *xml, char *buf, size_t size) {
    if (xml[0] == '/' || !c->base_dir || !c->base_dir[0]) snprintf(buf, size, "%s", xml);
    else snprintf(buf, size, "%s/%s", c->base_dir, xml);
}

static void xml_base_name(const char *xml, char *buf, size_t size) {
    const char *slash = strrchr(xml, '/');
    snprintf(buf, size, "%s", slash ? slash + 1 : xml);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf) *dot = '\0';
}

static brg_status xml_nics(const cluster_ctx *c, const brg__json_path *path, const nic_request *nics, brg_topology *t) {
    brg__json_path at = brg__json_key(brg__json_key(*path, "nics"), "count");
    if (nics->count >= 0 && t->nic_count > 0 && nics->count != t->nic_count)
        return fail(c, BRG_ERR_PARSE, &at, NULL, "the XML file shows %d network interfaces, not %lld",
                    t->nic_count, nics->count);
    if (nics->count > 0 && t->nic_count == 0)
        BRG__CHECK(brg__add_spread_nics(t, (int)nics->count, nics->bandwidth > 0 ? nics->bandwidth : 0.0, c->err));
    for (int k = 0; nics->bandwidth > 0 && k < t->nic_count; k++) t->nics[k].bandwidth = nics->bandwidth;
    return BRG_OK;
}

static brg_status group_from_xml(const cluster_ctx *c, const brg__json_path *path, const char *xml, const char *gpu,
                                 const nic_request *nics, group *g) {
    const brg_device_preset *gpu_preset = NULL;
    brg__json_path gpu_at = brg__json_key(*path, "gpu");
    if (gpu && !(gpu_preset = brg_device_preset_find(gpu))) {
        char known[512];
        list_device_presets(known, sizeof known);
        return fail(c, BRG_ERR_NAME, &gpu_at, NULL, "unknown device preset '%s' (known: %s)", gpu, known);
    }
    char file[4096], where[600];
    resolve_path(c, xml, file, sizeof file);
    brg__json_path at = brg__json_key(*path, "xml");
    brg__json_where(c->file, c->text, &at, NULL, where, sizeof where - 2);
    strcat(where, ": ");
    if (!g->name[0]) xml_base_name(xml, g->name, sizeof g->name);
    BRG__CHECK(brg__topology_from_xml(&g->node, file, where, &c->opts, gpu_preset, g->name, c->err));
    brg_status s = xml_nics(c, path, nics, g->node);
    if (s != BRG_OK) {
        brg_topology_destroy(g->node);
        g->node = NULL;
    }
    return s;
}

static brg_status group_check_name(const cluster_ctx *c, const brg__json_path *path, const char *name,
                                   const group *groups, int index) {
    brg__json_path at = brg__json_key(*path, "name");
    if (name && strlen(name) > GROUP_NAME_MAX)
        return fail(c, BRG_ERR_PARSE, &at, NULL, "longer than %d characters", GROUP_NAME_MAX);
    for (int i = 0; name && i < index; i++)
        if (strcmp(groups[i].name, name) == 0)
            return fail(c, BRG_ERR_NAME, &at, NULL, "a second group named '%s'", name);
    return BRG_OK;
}

static brg_status parse_group(const cluster_ctx *c, json_t *obj, const brg__json_path *path, group *groups, int index) {
    static const char *const known[] = {"name", "preset", "xml", "count", "gpu", "nics", NULL};
    group *g = &groups[index];
    if (!json_is_object(obj)) return fail(c, BRG_ERR_PARSE, path, NULL, "must be an object, not %s", json_kind(obj));
    BRG__CHECK(check_members(c, obj, path, known));
    const char *name, *preset, *xml, *gpu;
    int present;
    BRG__CHECK(get_string(c, obj, path, "name", &name));
    BRG__CHECK(group_check_name(c, path, name, groups, index));
    BRG__CHECK(get_string(c, obj, path, "preset", &preset));
    BRG__CHECK(get_string(c, obj, path, "xml", &xml));
    BRG__CHECK(get_string(c, obj, path, "gpu", &gpu));
    BRG__CHECK(get_integer(c, obj, path, "count", 1, BRG_TOPOLOGY_MAX_NODES, 1, &g->count, &present));
    nic_request nics;
    BRG__CHECK(parse_nics(c, obj, path, &nics));
    if (preset && xml) return fail(c, BRG_ERR_PARSE, path, NULL, "give either \"preset\" or \"xml\", not both");
    if (!preset && !xml) return fail(c, BRG_ERR_PARSE, path, "preset", "missing field (or \"xml\")");
    if (preset && gpu) {
        brg__json_path at = brg__json_key(*path, "gpu");
        return fail(c, BRG_ERR_PARSE, &at, NULL, "applies to \"xml\" groups only (a preset names its GPUs)");
    }
    brg__copy_string(g->name, sizeof g->name, name);
    if (preset) return group_from_preset(c, path, preset, &nics, g);
    return group_from_xml(c, path, xml, gpu, &nics, g);
}

/* ---- the whole cluster -------------------------------------------------------------------------- */

static brg_status check_sizes(const cluster_ctx *c, const brg__json_path *groups_path, group *groups, int count,
                              long long *nodes) {
    int64_t devices = 0, node_total = 0, group_devices;
    *nodes = 0;
    for (int i = 0; i < count; i++) {
        brg__json_path at = brg__json_key(brg__json_index(*groups_path, i), "count");
        if (!brg__count_add(node_total, groups[i].count, BRG_TOPOLOGY_MAX_NODES, &node_total))
            return fail(c, BRG_ERR_PARSE, &at, NULL, "the cluster would hold more than %d nodes, the most a "
                        "topology holds", BRG_TOPOLOGY_MAX_NODES);
        if (!brg__count_mul(groups[i].count, groups[i].node->device_count, BRG__TOPO_MAX_DEVICES, &group_devices) ||
            !brg__count_add(devices, group_devices, BRG__TOPO_MAX_DEVICES, &devices))
            return fail(c, BRG_ERR_PARSE, &at, NULL, "the cluster would hold more than %d devices, the most a "
                        "topology holds", BRG__TOPO_MAX_DEVICES);
        /* NICs need no check of their own: at most BRG_TOPOLOGY_MAX_NICS_PER_NODE on each of at most
         * BRG_TOPOLOGY_MAX_NODES nodes (and brg__topology_join counts them with checks all the same). */
    }
    *nodes = node_total;
    for (int i = 0; *nodes > 1 && i < count; i++)
        for (int d = 0; d < groups[i].node->device_count; d++)
            if (brg__device_network_bandwidth(groups[i].node, d) <= 0) {
                brg__json_path at = brg__json_index(*groups_path, i);
                return fail(c, BRG_ERR_PARSE, &at, NULL, "its nodes have no network interface of known speed, "
                            "so they cannot reach the other nodes: give \"nics\": {\"gbps\": ...}");
            }
    return BRG_OK;
}

static brg_status assemble(const cluster_ctx *c, group *groups, int count, long long nodes, double latency,
                           brg_topology **out) {
    brg_topology **parts = brg__malloc((size_t)nodes * sizeof *parts);
    if (!parts) return brg__error_set(c->err, BRG_ERR_OUT_OF_MEMORY, "%s: out of memory", c->file);
    int n = 0;
    for (int i = 0; i < count; i++)
        for (long long k = 0; k < groups[i].count; k++) parts[n++] = groups[i].node;
    brg_status s = brg__topology_join(out, parts, n, latency, c->file, c->err);
    free(parts);
    if (s != BRG_OK) return s;
    n = 0;
    for (int i = 0; i < count; i++)
        for (long long k = 0; k < groups[i].count; k++, n++)
            snprintf((*out)->nodes[n].name, sizeof (*out)->nodes[n].name, "%s-%lld", groups[i].name, k);
    snprintf((*out)->source, sizeof (*out)->source, "cluster %s", c->file);
    return BRG_OK;
}

static brg_status parse_groups(const cluster_ctx *c, json_t *root, double latency, brg_topology **out) {
    brg__json_path root_path = {.depth = 0};
    brg__json_path groups_path = brg__json_key(root_path, "node_groups");
    json_t *array = json_object_get(root, "node_groups");
    if (!array) return fail(c, BRG_ERR_PARSE, &root_path, "node_groups", "missing field");
    if (!json_is_array(array) || json_array_size(array) == 0)
        return fail(c, BRG_ERR_PARSE, &groups_path, NULL, "must be an array of at least one node group, not %s",
                    json_is_array(array) ? "an empty one" : json_kind(array));
    int count = (int)json_array_size(array);
    group *groups = brg__calloc((size_t)count, sizeof *groups);
    if (!groups) return brg__error_set(c->err, BRG_ERR_OUT_OF_MEMORY, "%s: out of memory", c->file);
    brg_status s = BRG_OK;
    for (int i = 0; s == BRG_OK && i < count; i++) {
        brg__json_path at = brg__json_index(groups_path, i);
        s = parse_group(c, json_array_get(array, (size_t)i), &at, groups, i);
    }
    long long nodes = 0;
    if (s == BRG_OK) s = check_sizes(c, &groups_path, groups, count, &nodes);
    if (s == BRG_OK) s = assemble(c, groups, count, nodes, latency, out);
    for (int i = 0; i < count; i++) brg_topology_destroy(groups[i].node);
    free(groups);
    return s;
}

static brg_status parse_root(const cluster_ctx *c, json_t *root, brg_topology **out) {
    static const char *const known[] = {"version", "inter_node_latency_us", "node_groups", NULL};
    brg__json_path root_path = {.depth = 0};
    if (!json_is_object(root))
        return fail(c, BRG_ERR_PARSE, &root_path, NULL, "a cluster description is a JSON object, not %s",
                    json_kind(root));
    BRG__CHECK(check_members(c, root, &root_path, known));
    long long version = 0;
    int present;
    BRG__CHECK(get_integer(c, root, &root_path, "version", 0, LLONG_MAX, 1, &version, &present));
    if (version != CLUSTER_VERSION) {
        brg__json_path at = brg__json_key(root_path, "version");
        return fail(c, BRG_ERR_MISMATCH, &at, NULL, "%lld is not a version this brigade reads (it reads %d)", version,
                    CLUSTER_VERSION);
    }
    double latency_us = BRG_TOPOLOGY_NETWORK_LATENCY * 1e6;
    BRG__CHECK(get_positive(c, root, &root_path, "inter_node_latency_us", &latency_us, &present));
    return parse_groups(c, root, latency_us * 1e-6, out);
}

static brg_status parse_text(cluster_ctx *c, brg_topology **out) {
    json_error_t je;
    brg_status parsed;
    json_t *root = brg__json_parse(c->text, strlen(c->text), JSON_REJECT_DUPLICATES, &je, &parsed);
    if (!root && parsed == BRG_ERR_OUT_OF_MEMORY)
        return brg__error_set(c->err, parsed, "%s: out of memory reading the cluster description", c->file);
    if (!root)
        return brg__error_set(c->err, BRG_ERR_PARSE, "%s:%d:%d: malformed JSON: %s", c->file, je.line, je.column,
                              je.text);
    brg_status s = parse_root(c, root, out);
    json_decref(root);
    return s;
}

brg_status brg_topology_load_cluster_string(brg_topology **out, const char *json, const char *base_dir,
                                            const brg_topology_options *opts, brg_error *err) {
    if (!out || !json)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_topology_load_cluster_string: NULL argument");
    cluster_ctx c = {.file = "<string>", .text = json, .base_dir = base_dir, .err = err};
    BRG__CHECK(brg__topology_options_check(opts, &c.opts, err));
    return parse_text(&c, out);
}

brg_status brg_topology_load_cluster(brg_topology **out, const char *path, const brg_topology_options *opts,
                                     brg_error *err) {
    if (!out || !path) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_topology_load_cluster: NULL argument");
    cluster_ctx c = {.file = path, .err = err};
    BRG__CHECK(brg__topology_options_check(opts, &c.opts, err));
    char *text = NULL;
    BRG__CHECK(brg__read_file(path, "", CLUSTER_MAX_BYTES, &text, NULL, err));
    char base_dir[4096];
    snprintf(base_dir, sizeof base_dir, "%s", path);
    char *slash = strrchr(base_dir, '/');
    if (slash) slash[slash == base_dir] = '\0'; /* "/c.json" keeps "/" */
    else base_dir[0] = '\0';
    c.text = text;
    c.base_dir = base_dir;
    brg_status s = parse_text(&c, out);
    free(text);
    return s;
}
