/* Topology lifecycle, queries, synthetic topologies, joining nodes into a cluster, fingerprint. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "topology_internal.h"

static const char *const link_kind_names[BRG_LINK_KIND_COUNT] = {
    "self", "nvlink", "nvswitch", "pcie-switch", "pcie-host", "cross-socket", "shared-memory", "network",
};

const char *brg_link_kind_name(brg_link_kind kind) {
    return (unsigned)kind < BRG_LINK_KIND_COUNT ? link_kind_names[kind] : "?";
}

int brg__link_kind_from_name(const char *name) {
    for (int k = 0; k < BRG_LINK_KIND_COUNT; k++)
        if (strcmp(name, link_kind_names[k]) == 0) return k;
    return -1;
}

const char *brg_device_kind_name(brg_device_kind kind) {
    switch (kind) {
    case BRG_DEVICE_CPU:
        return "cpu";
    case BRG_DEVICE_GPU:
        return "gpu";
    }
    return "?";
}

const char *brg_precision_name(brg_precision precision) {
    static const char *const names[BRG_PRECISION_COUNT] = {"fp32", "tf32", "bf16", "fp16"};
    return (unsigned)precision < BRG_PRECISION_COUNT ? names[precision] : "?";
}

const char *brg_figure_source_name(brg_figure_source source) {
    static const char *const names[] = {"unknown", "preset", "measured", "estimated", "user"};
    return (unsigned)source < sizeof names / sizeof names[0] ? names[source] : "?";
}

void brg__copy_string(char *dst, size_t size, const char *src) {
    if (size == 0) return;
    snprintf(dst, size, "%s", src ? src : "");
}

brg_status brg__topology_options_check(const brg_topology_options *opts, brg_topology_options *resolved,
                                       brg_error *err) {
    brg_topology_options defaults = BRG_TOPOLOGY_OPTIONS_INIT;
    *resolved = opts ? *opts : defaults;
    if ((unsigned)resolved->cpu_grouping > BRG_CPU_PER_PACKAGE)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "topology options: cpu_grouping %d is not a "
                              "brg_cpu_grouping", (int)resolved->cpu_grouping);
    unsigned known = BRG_TOPOLOGY_PROBE_CPU | BRG_TOPOLOGY_IGNORE_GPUS;
    if (resolved->flags & ~known)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "topology options: unknown flags 0x%x",
                              resolved->flags & ~known);
    return BRG_OK;
}

/* ---- construction ------------------------------------------------------------------------------- */

brg_status brg__topology_alloc(brg_topology **out, int device_count, int node_count,
                               const int *devices_per_node, brg_error *err) {
    brg_topology *t = brg__calloc(1, sizeof *t);
    if (!t) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "topology: out of memory");
    size_t n = (size_t)device_count;
    t->device_count = device_count;
    t->node_count = node_count;
    t->devices = brg__calloc(n ? n : 1, sizeof *t->devices);
    size_t links = n * n;
    t->links = brg__calloc(links ? links : 1, sizeof *t->links);
    t->nodes = brg__calloc((size_t)(node_count ? node_count : 1), sizeof *t->nodes);
    if (!t->devices || !t->links || !t->nodes) {
        brg_topology_destroy(t);
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "topology: out of memory for %d devices",
                              device_count);
    }
    int device = 0;
    for (int node = 0; node < node_count; node++) {
        int count = devices_per_node ? devices_per_node[node] : (node == 0 ? device_count : 0);
        t->nodes[node].first_device = device;
        t->nodes[node].device_count = count;
        snprintf(t->nodes[node].name, sizeof t->nodes[node].name, "node%d", node);
        for (int i = 0; i < count; i++, device++) {
            brg__device *d = &t->devices[device];
            d->node = node;
            d->local_index = i;
            d->numa_node = -1;
            d->package = -1;
            d->nearest_nic = -1;
        }
    }
    brg__copy_string(t->source, sizeof t->source, "custom");
    *out = t;
    return BRG_OK;
}

void brg_topology_destroy(brg_topology *t) {
    if (!t) return;
    free(t->devices);
    free(t->links);
    free(t->nodes);
    free(t->nics);
    free(t);
}

/* NICs are kept grouped by node, in node order, so a node's NICs are one range. */
brg_status brg__topology_push_nic(brg_topology *t, const brg__nic *nic, int *index, brg_error *err) {
    if (t->nodes[nic->node].nic_count >= BRG_TOPOLOGY_MAX_NICS_PER_NODE)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "topology: node %d would hold more than %d network "
                              "interfaces, the most a node holds", nic->node, BRG_TOPOLOGY_MAX_NICS_PER_NODE);
    if (t->nic_count == t->nic_capacity) {
        /* Bounded by BRG_TOPOLOGY_MAX_NODES * BRG_TOPOLOGY_MAX_NICS_PER_NODE, far from INT_MAX / 2. */
        int capacity = t->nic_capacity ? 2 * t->nic_capacity : 8;
        brg__nic *grown = brg__realloc(t->nics, (size_t)capacity * sizeof *grown);
        if (!grown) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "topology: out of memory for NICs");
        t->nics = grown;
        t->nic_capacity = capacity;
    }
    int position = 0;
    for (int node = 0; node <= nic->node; node++) position += t->nodes[node].nic_count;
    memmove(&t->nics[position + 1], &t->nics[position], (size_t)(t->nic_count - position) * sizeof *t->nics);
    t->nics[position] = *nic;
    t->nic_count++;
    t->nodes[nic->node].nic_count++;
    for (int i = 0; i < t->device_count; i++)
        if (t->devices[i].nearest_nic >= position) t->devices[i].nearest_nic++;
    int first = 0;
    for (int node = 0; node < t->node_count; node++) {
        t->nodes[node].first_nic = first;
        first += t->nodes[node].nic_count;
    }
    if (index) *index = position;
    return BRG_OK;
}

void brg__topology_set_self_links(brg_topology *t) {
    for (int i = 0; i < t->device_count; i++)
        *brg__link_at(t, i, i) = (brg_link){BRG_LINK_SELF, t->devices[i].memory_bandwidth, 0.0};
}

static double default_latency(brg_link_kind kind) {
    switch (kind) {
    case BRG_LINK_SELF:
        return 0.0;
    case BRG_LINK_NVLINK:
    case BRG_LINK_NVSWITCH:
        return BRG_TOPOLOGY_LATENCY_NVLINK;
    case BRG_LINK_PCIE_SWITCH:
        return BRG_TOPOLOGY_LATENCY_PCIE_SWITCH;
    case BRG_LINK_PCIE_HOST:
        return BRG_TOPOLOGY_LATENCY_PCIE_HOST;
    case BRG_LINK_CROSS_SOCKET:
        return BRG_TOPOLOGY_LATENCY_CROSS_SOCKET;
    case BRG_LINK_SHARED_MEMORY:
        return BRG_TOPOLOGY_LATENCY_SHARED_MEMORY;
    case BRG_LINK_NETWORK:
    case BRG_LINK_KIND_COUNT:
        break;
    }
    return BRG_TOPOLOGY_NETWORK_LATENCY;
}

double brg__device_network_bandwidth(const brg_topology *t, int device) {
    const brg__device *d = &t->devices[device];
    if (d->nearest_nic >= 0 && t->nics[d->nearest_nic].bandwidth > 0) return t->nics[d->nearest_nic].bandwidth;
    const brg__node *node = &t->nodes[d->node];
    double best = 0.0;
    for (int k = node->first_nic; k < node->first_nic + node->nic_count; k++)
        if (t->nics[k].bandwidth > best) best = t->nics[k].bandwidth;
    return best;
}

/* ---- joining nodes ------------------------------------------------------------------------------- */

static brg_status join_count(brg_topology *const *parts, int count, int *devices, int *nodes, int *nics,
                             brg_error *err) {
    int64_t device_total = 0, node_total = 0, nic_total = 0;
    for (int p = 0; p < count; p++) {
        if (!brg__count_add(device_total, parts[p]->device_count, BRG__TOPO_MAX_DEVICES, &device_total))
            return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "topology: more than the %d devices a topology "
                                  "may hold", BRG__TOPO_MAX_DEVICES);
        if (!brg__count_add(node_total, parts[p]->node_count, BRG_TOPOLOGY_MAX_NODES, &node_total))
            return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "topology: more than the %d nodes a topology "
                                  "may hold", BRG_TOPOLOGY_MAX_NODES);
        if (!brg__count_add(nic_total, parts[p]->nic_count, (int64_t)BRG_TOPOLOGY_MAX_NODES * BRG_TOPOLOGY_MAX_NICS_PER_NODE,
                            &nic_total))
            return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "topology: more than the %d network interfaces "
                                  "a topology may hold", BRG_TOPOLOGY_MAX_NODES * BRG_TOPOLOGY_MAX_NICS_PER_NODE);
    }
    *devices = (int)device_total;
    *nodes = (int)node_total;
    *nics = (int)nic_total;
    return BRG_OK;
}

static void join_copy_part(brg_topology *t, const brg_topology *part, int device_offset, int node_offset,
                           int nic_offset) {
    for (int i = 0; i < part->device_count; i++) {
        brg__device *d = &t->devices[device_offset + i];
        *d = part->devices[i];
        d->node += node_offset;
        if (d->nearest_nic >= 0) d->nearest_nic += nic_offset;
        for (int j = 0; j < part->device_count; j++)
            *brg__link_at(t, device_offset + i, device_offset + j) =
                part->links[(size_t)i * (size_t)part->device_count + (size_t)j];
    }
    for (int n = 0; n < part->node_count; n++) {
        brg__node *node = &t->nodes[node_offset + n];
        *node = part->nodes[n];
        node->first_device += device_offset;
        node->first_nic += nic_offset;
    }
    /* A node without NICs may have no array at all: memcpy from NULL is undefined even for 0 bytes. */
    if (part->nic_count > 0) memcpy(&t->nics[nic_offset], part->nics, (size_t)part->nic_count * sizeof *part->nics);
    for (int k = 0; k < part->nic_count; k++) t->nics[nic_offset + k].node += node_offset;
}

static void join_network_links(brg_topology *t, double latency) {
    for (int i = 0; i < t->device_count; i++) {
        double bw_i = brg__device_network_bandwidth(t, i);
        for (int j = 0; j < t->device_count; j++) {
            if (t->devices[i].node == t->devices[j].node) continue;
            double bw_j = brg__device_network_bandwidth(t, j);
            *brg__link_at(t, i, j) = (brg_link){BRG_LINK_NETWORK, bw_i < bw_j ? bw_i : bw_j, latency};
        }
    }
}

brg_status brg__topology_join(brg_topology **out, brg_topology *const *parts, int count,
                              double network_latency, const char *where, brg_error *err) {
    int devices = 0, nodes = 0, nics = 0;
    BRG__CHECK(join_count(parts, count, &devices, &nodes, &nics, err));
    brg_topology *t;
    BRG__CHECK(brg__topology_alloc(&t, devices, nodes, NULL, err));
    t->nics = brg__malloc((size_t)(nics ? nics : 1) * sizeof *t->nics);
    if (!t->nics) {
        brg_topology_destroy(t);
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "topology: out of memory for NICs");
    }
    t->nic_capacity = nics ? nics : 1;
    int device_offset = 0, node_offset = 0, nic_offset = 0;
    for (int p = 0; p < count; p++) {
        join_copy_part(t, parts[p], device_offset, node_offset, nic_offset);
        device_offset += parts[p]->device_count;
        node_offset += parts[p]->node_count;
        nic_offset += parts[p]->nic_count;
    }
    t->nic_count = nics;
    if (nodes > 1)
        for (int i = 0; i < devices; i++)
            if (brg__device_network_bandwidth(t, i) <= 0) {
                brg_status s = brg__error_set(err, BRG_ERR_PARSE, "%s: node '%s' has no network interface "
                                              "of known speed, so it cannot reach the other nodes",
                                              where, t->nodes[t->devices[i].node].name);
                brg_topology_destroy(t);
                return s;
            }
    join_network_links(t, network_latency);
    t->final = 1;
    *out = t;
    return BRG_OK;
}

/* ---- synthetic topologies ------------------------------------------------------------------------- */

static void custom_default_links(brg_topology *t, brg_link_kind peer_kind, double peer_bandwidth) {
    for (int i = 0; i < t->device_count; i++)
        for (int j = 0; j < t->device_count; j++) {
            if (i == j) continue;
            if (t->devices[i].node == t->devices[j].node)
                *brg__link_at(t, i, j) = (brg_link){peer_kind, peer_bandwidth, default_latency(peer_kind)};
            else
                *brg__link_at(t, i, j) = (brg_link){BRG_LINK_NETWORK, 50e9, BRG_TOPOLOGY_NETWORK_LATENCY};
        }
    brg__topology_set_self_links(t);
}

brg_status brg_topology_create_custom(brg_topology **out, int node_count, int devices_per_node,
                                      const char *device_preset, brg_error *err) {
    if (!out || !device_preset)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_topology_create_custom: NULL argument");
    if (node_count < 1 || devices_per_node < 1 ||
        (long long)node_count * devices_per_node > BRG__TOPO_MAX_DEVICES)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_topology_create_custom: %d nodes of %d "
                              "devices: each count must be at least 1, and at most %d devices in all",
                              node_count, devices_per_node, BRG__TOPO_MAX_DEVICES);
    const brg_device_preset *preset = NULL;
    int cpu = strcmp(device_preset, "cpu") == 0;
    if (!cpu && !(preset = brg_device_preset_find(device_preset)))
        return brg__error_set(err, BRG_ERR_NAME, "brg_topology_create_custom: unknown device preset '%s'",
                              device_preset);
    int *per_node = brg__malloc((size_t)node_count * sizeof *per_node);
    if (!per_node) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "topology: out of memory");
    for (int n = 0; n < node_count; n++) per_node[n] = devices_per_node;
    brg_topology *t;
    brg_status s = brg__topology_alloc(&t, node_count * devices_per_node, node_count, per_node, err);
    free(per_node);
    if (s != BRG_OK) return s;
    for (int i = 0; i < t->device_count; i++) {
        brg__device *d = &t->devices[i];
        snprintf(d->name, sizeof d->name, "%s%d", cpu ? "cpu" : "gpu", d->local_index);
        if (cpu) brg__cpu_estimate(d, 1);
        else brg__device_apply_preset(d, preset);
    }
    if (cpu) custom_default_links(t, BRG_LINK_SHARED_MEMORY, t->devices[0].memory_bandwidth / 2);
    else custom_default_links(t, preset->peer_link, preset->peer_bandwidth);
    *out = t;
    return BRG_OK;
}

static int figure_ok(double x) { return isfinite(x) && x >= 0.0; }

static int device_info_ok(const brg_topology *t, int device, const brg_device_info *info) {
    if ((unsigned)info->kind > BRG_DEVICE_GPU || (unsigned)info->figures > BRG_FIGURE_USER) return 0;
    if (info->numa_node < -1 || info->package < -1 || info->cores < 0) return 0;
    if (!figure_ok(info->memory_bandwidth)) return 0;
    for (int p = 0; p < BRG_PRECISION_COUNT; p++)
        if (!figure_ok(info->peak_flops[p])) return 0;
    if (info->nearest_nic == -1) return 1;
    return info->nearest_nic >= 0 && info->nearest_nic < t->nic_count &&
           t->nics[info->nearest_nic].node == t->devices[device].node;
}

brg_status brg_topology_set_device(brg_topology *t, int device, const brg_device_info *info) {
    if (!t || !info || device < 0 || device >= t->device_count) return BRG_ERR_INVALID_ARGUMENT;
    if (t->final) return BRG_ERR_INVALID_USAGE;
    if (!device_info_ok(t, device, info)) return BRG_ERR_INVALID_ARGUMENT;
    brg__device *d = &t->devices[device];
    d->kind = info->kind;
    brg__copy_string(d->name, sizeof d->name, info->name);
    brg__copy_string(d->model, sizeof d->model, info->model);
    brg__copy_string(d->preset, sizeof d->preset, info->preset);
    brg__copy_string(d->pci_bus_id, sizeof d->pci_bus_id, info->pci_bus_id);
    d->numa_node = info->numa_node;
    d->package = info->package;
    d->cores = info->cores;
    d->memory_bytes = info->memory_bytes;
    memcpy(d->peak_flops, info->peak_flops, sizeof d->peak_flops);
    d->memory_bandwidth = info->memory_bandwidth;
    d->nearest_nic = info->nearest_nic;
    d->figures = info->figures;
    brg__topology_set_self_links(t);
    return BRG_OK;
}

brg_status brg_topology_set_link(brg_topology *t, int a, int b, const brg_link *link) {
    if (!t || !link || a < 0 || b < 0 || a >= t->device_count || b >= t->device_count || a == b)
        return BRG_ERR_INVALID_ARGUMENT;
    if (t->final) return BRG_ERR_INVALID_USAGE;
    int across = t->devices[a].node != t->devices[b].node;
    if ((unsigned)link->kind >= BRG_LINK_KIND_COUNT || link->kind == BRG_LINK_SELF ||
        across != (link->kind == BRG_LINK_NETWORK))
        return BRG_ERR_INVALID_ARGUMENT;
    if (!isfinite(link->bandwidth) || link->bandwidth <= 0.0 || !figure_ok(link->latency))
        return BRG_ERR_INVALID_ARGUMENT;
    *brg__link_at(t, a, b) = *link;
    *brg__link_at(t, b, a) = *link;
    return BRG_OK;
}

brg_status brg_topology_add_nic(brg_topology *t, const brg_nic_info *nic, int *index) {
    if (!t || !nic || nic->node < 0 || nic->node >= t->node_count || !figure_ok(nic->bandwidth) ||
        nic->numa_node < -1)
        return BRG_ERR_INVALID_ARGUMENT;
    if (t->final) return BRG_ERR_INVALID_USAGE;
    brg__nic n = {.node = nic->node, .numa_node = nic->numa_node, .bandwidth = nic->bandwidth};
    if (nic->name) brg__copy_string(n.name, sizeof n.name, nic->name);
    else snprintf(n.name, sizeof n.name, "nic%d", t->nodes[nic->node].nic_count);
    brg__copy_string(n.pci_bus_id, sizeof n.pci_bus_id, nic->pci_bus_id);
    return brg__topology_push_nic(t, &n, index, NULL);
}

brg_status brg_topology_finalize(brg_topology *t) {
    if (!t) return BRG_ERR_INVALID_ARGUMENT;
    if (t->final) return BRG_ERR_INVALID_USAGE;
    brg__topology_set_self_links(t);
    t->final = 1;
    return BRG_OK;
}

int brg_topology_is_final(const brg_topology *t) { return t ? t->final : 0; }

/* ---- queries ------------------------------------------------------------------------------------- */

int brg_topology_device_count(const brg_topology *t) { return t ? t->device_count : 0; }
int brg_topology_node_count(const brg_topology *t) { return t ? t->node_count : 0; }
int brg_topology_nic_count(const brg_topology *t) { return t ? t->nic_count : 0; }

int brg_topology_gpu_count(const brg_topology *t) {
    int n = 0;
    for (int i = 0; t && i < t->device_count; i++) n += t->devices[i].kind == BRG_DEVICE_GPU;
    return n;
}

brg_status brg_topology_device_info(const brg_topology *t, int device, brg_device_info *info) {
    if (!t || !info) return BRG_ERR_INVALID_ARGUMENT;
    if (device < 0 || device >= t->device_count) return BRG_ERR_NOT_FOUND;
    const brg__device *d = &t->devices[device];
    *info = (brg_device_info){
        .kind = d->kind, .name = d->name, .model = d->model, .preset = d->preset,
        .pci_bus_id = d->pci_bus_id, .node = d->node, .local_index = d->local_index,
        .numa_node = d->numa_node, .package = d->package, .cores = d->cores,
        .memory_bytes = d->memory_bytes, .memory_bandwidth = d->memory_bandwidth,
        .nearest_nic = d->nearest_nic, .figures = d->figures,
    };
    memcpy(info->peak_flops, d->peak_flops, sizeof info->peak_flops);
    return BRG_OK;
}

brg_status brg_topology_link(const brg_topology *t, int from, int to, brg_link *link) {
    if (!t || !link) return BRG_ERR_INVALID_ARGUMENT;
    if (from < 0 || to < 0 || from >= t->device_count || to >= t->device_count) return BRG_ERR_NOT_FOUND;
    *link = t->links[(size_t)from * (size_t)t->device_count + (size_t)to];
    return BRG_OK;
}

brg_status brg_topology_nic_info(const brg_topology *t, int nic, brg_nic_info *info) {
    if (!t || !info) return BRG_ERR_INVALID_ARGUMENT;
    if (nic < 0 || nic >= t->nic_count) return BRG_ERR_NOT_FOUND;
    const brg__nic *n = &t->nics[nic];
    *info = (brg_nic_info){n->name, n->pci_bus_id, n->node, n->numa_node, n->bandwidth};
    return BRG_OK;
}

brg_status brg_topology_node_info(const brg_topology *t, int node, brg_node_info *info) {
    if (!t || !info) return BRG_ERR_INVALID_ARGUMENT;
    if (node < 0 || node >= t->node_count) return BRG_ERR_NOT_FOUND;
    const brg__node *n = &t->nodes[node];
    *info = (brg_node_info){n->name, n->source, n->first_device, n->device_count, n->first_nic, n->nic_count};
    return BRG_OK;
}

const char *brg_topology_source(const brg_topology *t) { return t ? t->source : "(no topology)"; }

/* ---- fingerprint --------------------------------------------------------------------------------- */

static uint64_t hash_int(uint64_t h, long long v) { return brg__fnv1a(h, &v, sizeof v); }

static uint64_t hash_double(uint64_t h, double v) {
    if (v == 0.0) v = 0.0; /* -0.0 and 0.0 hash alike */
    return brg__fnv1a(h, &v, sizeof v);
}

static uint64_t hash_device(uint64_t h, const brg__device *d) {
    h = hash_int(h, d->kind);
    h = brg__fnv1a(h, d->model, strlen(d->model) + 1);
    h = hash_int(h, d->node);
    h = hash_int(h, d->numa_node);
    h = hash_int(h, d->package);
    h = hash_int(h, d->cores);
    h = hash_int(h, (long long)d->memory_bytes);
    for (int p = 0; p < BRG_PRECISION_COUNT; p++) h = hash_double(h, d->peak_flops[p]);
    h = hash_double(h, d->memory_bandwidth);
    return hash_int(h, d->nearest_nic);
}

uint64_t brg_topology_fingerprint(const brg_topology *t) {
    if (!t) return 0;
    uint64_t h = BRG__FNV_OFFSET;
    h = hash_int(h, t->device_count);
    h = hash_int(h, t->node_count);
    h = hash_int(h, t->nic_count);
    for (int i = 0; i < t->device_count; i++) h = hash_device(h, &t->devices[i]);
    for (size_t k = 0; k < (size_t)t->device_count * (size_t)t->device_count; k++) {
        h = hash_int(h, t->links[k].kind);
        h = hash_double(h, t->links[k].bandwidth);
        h = hash_double(h, t->links[k].latency);
    }
    for (int k = 0; k < t->nic_count; k++) {
        h = hash_int(h, t->nics[k].node);
        h = hash_int(h, t->nics[k].numa_node);
        h = hash_double(h, t->nics[k].bandwidth);
    }
    return h;
}
