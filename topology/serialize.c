/* Writing a topology out: JSON (for tools and plan files) and a readable summary (for people). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "topology_internal.h"

/* ---- link classes: the distinct (kind, bandwidth, latency) triples, in order of first use --------- */

typedef struct link_classes {
    brg_link *classes;
    int count;
    int capacity;
    int *slots; /* open addressing, 2 x capacity: class index + 1, or 0 */
    size_t slot_count;
    int *of;    /* device_count x device_count: the class of each link */
} link_classes;

static int same_link(const brg_link *a, const brg_link *b) {
    return a->kind == b->kind && a->bandwidth == b->bandwidth && a->latency == b->latency;
}

static size_t link_hash(const brg_link *l) {
    uint64_t h = brg__fnv1a(BRG__FNV_OFFSET, &l->kind, sizeof l->kind);
    h = brg__fnv1a(h, &l->bandwidth, sizeof l->bandwidth);
    return (size_t)brg__fnv1a(h, &l->latency, sizeof l->latency);
}

static size_t slot_of(const link_classes *lc, const brg_link *l) {
    size_t s = link_hash(l) & (lc->slot_count - 1);
    while (lc->slots[s] && !same_link(&lc->classes[lc->slots[s] - 1], l)) s = (s + 1) & (lc->slot_count - 1);
    return s;
}

/* Doubles the class table and rebuilds the slots; most topologies have a handful of classes. */
static int classes_grow(link_classes *lc) {
    int capacity = 2 * lc->capacity;
    brg_link *classes = brg__realloc(lc->classes, (size_t)capacity * sizeof *classes);
    if (!classes) return 0;
    lc->classes = classes;
    int *slots = brg__calloc(2 * (size_t)capacity, sizeof *slots);
    if (!slots) return 0;
    free(lc->slots);
    lc->slots = slots;
    lc->slot_count = 2 * (size_t)capacity;
    lc->capacity = capacity;
    for (int c = 0; c < lc->count; c++) lc->slots[slot_of(lc, &lc->classes[c])] = c + 1;
    return 1;
}

static int class_of(link_classes *lc, const brg_link *l) {
    size_t s = slot_of(lc, l);
    if (lc->slots[s]) return lc->slots[s] - 1;
    if (lc->count == lc->capacity) {
        if (!classes_grow(lc)) return -1;
        s = slot_of(lc, l);
    }
    lc->classes[lc->count] = *l;
    lc->slots[s] = ++lc->count;
    return lc->count - 1;
}

static void classes_free(link_classes *lc) {
    free(lc->classes);
    free(lc->slots);
    free(lc->of);
}

static brg_status classes_build(const brg_topology *t, link_classes *lc) {
    size_t links = (size_t)t->device_count * (size_t)t->device_count;
    lc->count = 0;
    lc->capacity = 16;
    lc->slot_count = 32; /* a power of two, twice the capacity */
    lc->classes = brg__malloc((size_t)lc->capacity * sizeof *lc->classes);
    lc->slots = brg__calloc(lc->slot_count, sizeof *lc->slots);
    lc->of = brg__malloc((links ? links : 1) * sizeof *lc->of);
    int ok = lc->classes && lc->slots && lc->of;
    for (size_t k = 0; ok && k < links; k++) ok = (lc->of[k] = class_of(lc, &t->links[k])) >= 0;
    if (!ok) {
        classes_free(lc);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    return BRG_OK;
}

/* ---- JSON ------------------------------------------------------------------------------------------ */

static json_t *device_json(const brg_topology *t, int i) {
    const brg__device *d = &t->devices[i];
    json_t *peaks = json_object();
    for (int p = 0; p < BRG_PRECISION_COUNT; p++)
        brg__json_set(peaks, brg_precision_name((brg_precision)p), json_real(d->peak_flops[p]));
    return json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:I, s:f, s:o, s:s, s:i}",
                     "index", i, "kind", brg_device_kind_name(d->kind), "name", d->name, "model", d->model,
                     "preset", d->preset, "pci_bus_id", d->pci_bus_id, "node", d->node, "local_index",
                     d->local_index, "numa_node", d->numa_node, "package", d->package, "cores", d->cores,
                     "memory_bytes", (json_int_t)d->memory_bytes, "memory_bandwidth", d->memory_bandwidth,
                     "peak_flops", peaks, "figures", brg_figure_source_name(d->figures), "nearest_nic",
                     d->nearest_nic);
}

static json_t *links_json(const brg_topology *t, const link_classes *lc) {
    json_t *classes = json_array(), *matrix = json_array();
    for (int c = 0; c < lc->count; c++)
        brg__json_append(classes, json_pack("{s:s, s:f, s:f}", "kind", brg_link_kind_name(lc->classes[c].kind),
                                                 "bandwidth", lc->classes[c].bandwidth, "latency",
                                                 lc->classes[c].latency));
    for (int i = 0; i < t->device_count; i++) {
        json_t *row = json_array();
        for (int j = 0; j < t->device_count; j++)
            brg__json_append(row, json_integer(lc->of[(size_t)i * (size_t)t->device_count + (size_t)j]));
        brg__json_append(matrix, row);
    }
    return json_pack("{s:o, s:o}", "classes", classes, "matrix", matrix);
}

static json_t *topology_json(const brg_topology *t, const link_classes *lc) {
    json_t *nodes = json_array(), *devices = json_array(), *nics = json_array();
    for (int n = 0; n < t->node_count; n++) {
        const brg__node *node = &t->nodes[n];
        brg__json_append(nodes, json_pack("{s:s, s:s, s:[i,i], s:[i,i]}", "name", node->name, "source",
                                               node->source, "devices", node->first_device, node->device_count,
                                               "nics", node->first_nic, node->nic_count));
    }
    for (int i = 0; i < t->device_count; i++) brg__json_append(devices, device_json(t, i));
    for (int k = 0; k < t->nic_count; k++) {
        const brg__nic *nic = &t->nics[k];
        brg__json_append(nics, json_pack("{s:i, s:s, s:s, s:i, s:i, s:f}", "index", k, "name", nic->name,
                                              "pci_bus_id", nic->pci_bus_id, "node", nic->node, "numa_node",
                                              nic->numa_node, "bandwidth", nic->bandwidth));
    }
    char fingerprint[24];
    snprintf(fingerprint, sizeof fingerprint, "%016llx", (unsigned long long)brg_topology_fingerprint(t));
    return json_pack("{s:s, s:i, s:s, s:s, s:o, s:o, s:o, s:o}", "format", "brigade-topology", "version", 1,
                     "source", t->source, "fingerprint", fingerprint, "nodes", nodes, "devices", devices, "nics",
                     nics, "links", links_json(t, lc));
}

brg_status brg_topology_to_json(const brg_topology *t, char **out) {
    if (!t || !out) return BRG_ERR_INVALID_ARGUMENT;
    link_classes lc;
    BRG__CHECK(classes_build(t, &lc));
    uint64_t mark = brg__json_build_begin();
    json_t *root = topology_json(t, &lc);
    classes_free(&lc);
    /* One line, not indented: a link matrix grows as the square of the device count. */
    char *text = brg__json_dump(root, JSON_PRESERVE_ORDER, mark);
    json_decref(root);
    if (!text) return BRG_ERR_OUT_OF_MEMORY;
    *out = text;
    return BRG_OK;
}

/* ---- summary --------------------------------------------------------------------------------------- */

static const char *format_flops(char *buf, size_t size, double x) {
    if (x <= 0) snprintf(buf, size, "-");
    else if (x >= 1e12) snprintf(buf, size, "%.1fT", x / 1e12);
    else snprintf(buf, size, "%.1fG", x / 1e9);
    return buf;
}

static const char *format_bandwidth(char *buf, size_t size, double x) {
    if (x <= 0) snprintf(buf, size, "unknown");
    else if (x >= 1e12) snprintf(buf, size, "%.2f TB/s", x / 1e12);
    else if (x >= 1e9) snprintf(buf, size, "%.1f GB/s", x / 1e9);
    else snprintf(buf, size, "%.1f MB/s", x / 1e6);
    return buf;
}

static const char *format_bytes(char *buf, size_t size, uint64_t x) {
    if (x == 0) snprintf(buf, size, "unknown");
    else if (x >= 1000000000ULL) snprintf(buf, size, "%.1f GB", (double)x / 1e9);
    else snprintf(buf, size, "%.1f MB", (double)x / 1e6);
    return buf;
}

static const char *format_index(char *buf, size_t size, int x) {
    if (x < 0) snprintf(buf, size, "-");
    else snprintf(buf, size, "%d", x);
    return buf;
}

static int same_device(const brg__device *a, const brg__device *b) {
    return a->kind == b->kind && strcmp(a->model, b->model) == 0 && a->memory_bytes == b->memory_bytes &&
           memcmp(a->peak_flops, b->peak_flops, sizeof a->peak_flops) == 0 && a->numa_node == b->numa_node;
}

/* Node b has the same devices, inner links and NIC speeds as node a: the summary says so in one line. */
static int same_node(const brg_topology *t, int a, int b) {
    const brg__node *na = &t->nodes[a], *nb = &t->nodes[b];
    if (na->device_count != nb->device_count || na->nic_count != nb->nic_count) return 0;
    size_t n = (size_t)t->device_count;
    for (int i = 0; i < na->device_count; i++) {
        size_t ra = (size_t)(na->first_device + i), rb = (size_t)(nb->first_device + i);
        if (!same_device(&t->devices[ra], &t->devices[rb])) return 0;
        for (int j = 0; j < na->device_count; j++)
            if (!same_link(&t->links[ra * n + (size_t)(na->first_device + j)],
                           &t->links[rb * n + (size_t)(nb->first_device + j)]))
                return 0;
    }
    for (int k = 0; k < na->nic_count; k++)
        if (t->nics[na->first_nic + k].bandwidth != t->nics[nb->first_nic + k].bandwidth) return 0;
    return 1;
}

static void summary_device(FILE *f, const brg_topology *t, int i) {
    const brg__device *d = &t->devices[i];
    char mem[32], bw[32], numa[16], nic[16], p[BRG_PRECISION_COUNT][16];
    for (int k = 0; k < BRG_PRECISION_COUNT; k++) format_flops(p[k], sizeof p[k], d->peak_flops[k]);
    fprintf(f, "  %4d  %-6s %-4s %-28.28s %4s %10s %7s %7s %7s %7s %11s  %-9s %-13s %s\n", i, d->name,
            brg_device_kind_name(d->kind), d->model, format_index(numa, sizeof numa, d->numa_node),
            format_bytes(mem, sizeof mem, d->memory_bytes), p[0], p[1], p[2], p[3],
            format_bandwidth(bw, sizeof bw, d->memory_bandwidth), brg_figure_source_name(d->figures),
            d->pci_bus_id[0] ? d->pci_bus_id : "-", format_index(nic, sizeof nic, d->nearest_nic));
}

/* The last node of the run of nodes like node n. */
static int node_run_end(const brg_topology *t, int n) {
    int last = n;
    while (last + 1 < t->node_count && same_node(t, n, last + 1)) last++;
    return last;
}

static void summary_run_line(FILE *f, const brg_topology *t, int n, int last, const char *what) {
    if (last == n + 1)
        fprintf(f, "node %d: %s, %s as node %d\n", last, t->nodes[last].name, what, n);
    else if (last > n)
        fprintf(f, "nodes %d-%d: %s .. %s, %s as node %d\n", n + 1, last, t->nodes[n + 1].name,
                t->nodes[last].name, what, n);
}

static void summary_nodes(FILE *f, const brg_topology *t) {
    fprintf(f, "\ndevices (peak FLOP/s dense, T = 1e12, G = 1e9; memory in GB = 1e9 bytes):\n");
    for (int n = 0; n < t->node_count;) {
        const brg__node *node = &t->nodes[n];
        int last = node_run_end(t, n);
        fprintf(f, "node %d: %s (%s), %d device%s, %d NIC%s\n", n, node->name, node->source, node->device_count,
                node->device_count == 1 ? "" : "s", node->nic_count, node->nic_count == 1 ? "" : "s");
        fprintf(f, "  %4s  %-6s %-4s %-28s %4s %10s %7s %7s %7s %7s %11s  %-9s %-13s %s\n", "dev", "name", "kind",
                "model", "numa", "memory", "fp32", "tf32", "bf16", "fp16", "memory bw", "figures", "pci bus id",
                "nic");
        for (int i = 0; i < node->device_count; i++) summary_device(f, t, node->first_device + i);
        char what[64];
        snprintf(what, sizeof what, "devices %d-%d,", last > n ? t->nodes[n + 1].first_device : 0,
                 t->nodes[last].first_device + t->nodes[last].device_count - 1);
        summary_run_line(f, t, n, last, what);
        n = last + 1;
    }
}

/* Pairs joined by class c (each unordered pair once), a few of them named. */
static void summary_class(FILE *f, const brg_topology *t, const link_classes *lc, int c) {
    const brg_link *l = &lc->classes[c];
    long long pairs = 0;
    char bw[32], shown[512] = "";
    size_t used = 0;
    int listed = 0;
    for (int i = 0; i < t->device_count; i++)
        for (int j = i + 1; j < t->device_count; j++) {
            if (lc->of[(size_t)i * (size_t)t->device_count + (size_t)j] != c) continue;
            pairs++;
            if (listed < 8 && used < sizeof shown - 32) {
                int w = snprintf(shown + used, sizeof shown - used, "%s%d-%d", listed ? " " : "", i, j);
                used += w > 0 ? (size_t)w : 0;
                listed++;
            }
        }
    if (pairs == 0) return;
    fprintf(f, "  %-14s %11s %7.1f us %7lld pair%s: %s%s\n", brg_link_kind_name(l->kind),
            format_bandwidth(bw, sizeof bw, l->bandwidth), l->latency * 1e6, pairs, pairs == 1 ? " " : "s", shown,
            pairs > listed ? " ..." : "");
}

static void summary_links(FILE *f, const brg_topology *t, const link_classes *lc) {
    fprintf(f, "\nlinks by kind (bandwidth per direction, latency, device pairs):\n");
    if (t->device_count < 2) fprintf(f, "  (one device: no links)\n");
    for (int k = 1; k < BRG_LINK_KIND_COUNT; k++)
        for (int c = 0; c < lc->count; c++)
            if ((int)lc->classes[c].kind == k) summary_class(f, t, lc, c);
}

static const char *kind_letters(brg_link_kind kind) {
    static const char *const letters[BRG_LINK_KIND_COUNT] = {"--", "NV", "SW", "PX", "PH", "XS", "SM", "NET"};
    return (unsigned)kind < BRG_LINK_KIND_COUNT ? letters[kind] : "?";
}

static void summary_matrix(FILE *f, const brg_topology *t) {
    if (t->device_count < 2 || t->device_count > 16) return;
    fprintf(f, "\nlink matrix (GB/s per direction; NV nvlink, SW nvswitch, PX pcie-switch, PH pcie-host, "
               "XS cross-socket, SM shared-memory, NET network):\n      ");
    for (int j = 0; j < t->device_count; j++) fprintf(f, " %9d", j);
    fprintf(f, "\n");
    for (int i = 0; i < t->device_count; i++) {
        fprintf(f, "  %4d", i);
        for (int j = 0; j < t->device_count; j++) {
            brg_link l = t->links[(size_t)i * (size_t)t->device_count + (size_t)j];
            if (i == j) fprintf(f, " %9s", "--");
            else fprintf(f, " %3s %5.4g", kind_letters(l.kind), l.bandwidth / 1e9);
        }
        fprintf(f, "\n");
    }
}

static void summary_nic(FILE *f, const brg_topology *t, int k) {
    const brg__nic *nic = &t->nics[k];
    char bw[32], numa[16];
    fprintf(f, "  %4d  node %-3d %-10s numa %-3s %11s  %-13s devices:", k, nic->node, nic->name,
            format_index(numa, sizeof numa, nic->numa_node), format_bandwidth(bw, sizeof bw, nic->bandwidth),
            nic->pci_bus_id[0] ? nic->pci_bus_id : "-");
    int listed = 0, total = 0;
    for (int i = 0; i < t->device_count; i++)
        if (t->devices[i].nearest_nic == k && listed++ < 16) fprintf(f, " %d", i);
    for (int i = 0; i < t->device_count; i++) total += t->devices[i].nearest_nic == k;
    fprintf(f, "%s\n", total == 0 ? " none" : total > listed ? " ..." : "");
}

static void summary_nics(FILE *f, const brg_topology *t) {
    fprintf(f, "\nNICs (speed per direction) and the devices nearest each:\n");
    if (t->nic_count == 0) fprintf(f, "  (none)\n");
    for (int n = 0; n < t->node_count && t->nic_count > 0;) {
        int last = node_run_end(t, n);
        for (int k = 0; k < t->nodes[n].nic_count; k++) summary_nic(f, t, t->nodes[n].first_nic + k);
        summary_run_line(f, t, n, last, "NICs");
        n = last + 1;
    }
}

static void summary_write(FILE *f, const brg_topology *t, const link_classes *lc) {
    int gpus = brg_topology_gpu_count(t);
    fprintf(f, "topology: %s\n", t->source);
    fprintf(f, "%d node%s, %d device%s (%d GPU%s, %d CPU), %d NIC%s; fingerprint %016llx\n", t->node_count,
            t->node_count == 1 ? "" : "s", t->device_count, t->device_count == 1 ? "" : "s", gpus,
            gpus == 1 ? "" : "s", t->device_count - gpus, t->nic_count, t->nic_count == 1 ? "" : "s",
            (unsigned long long)brg_topology_fingerprint(t));
    summary_nodes(f, t);
    summary_links(f, t, lc);
    summary_matrix(f, t);
    summary_nics(f, t);
}

brg_status brg_topology_summary(const brg_topology *t, char **out) {
    if (!t || !out) return BRG_ERR_INVALID_ARGUMENT;
    link_classes lc;
    BRG__CHECK(classes_build(t, &lc));
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f) {
        classes_free(&lc);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    summary_write(f, t, &lc);
    int failed = fclose(f) != 0;
    classes_free(&lc);
    if (failed || !text) {
        free(text);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    *out = text;
    return BRG_OK;
}
