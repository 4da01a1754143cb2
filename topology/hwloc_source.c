/* From an hwloc topology (live or XML) to a single-node brigade topology: GPUs with their PCI locality
 * and links (NVLink distances, else the PCI tree), or CPU core groups; NICs and their nearest devices. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topology_internal.h"

void brg__pci_bus_id(hwloc_obj_t pci, char *buf, size_t size) {
    snprintf(buf, size, "%04x:%02x:%02x.%x", pci->attr->pcidev.domain, pci->attr->pcidev.bus,
             pci->attr->pcidev.dev, pci->attr->pcidev.func);
}

/* ---- tree helpers (hwloc's common-ancestor helper does not handle I/O objects) ------------------- */

static int tree_depth(hwloc_obj_t obj) {
    int depth = 0;
    for (; obj && obj->parent; obj = obj->parent) depth++;
    return depth;
}

static hwloc_obj_t common_ancestor(hwloc_obj_t a, hwloc_obj_t b) {
    int da = tree_depth(a), db = tree_depth(b);
    for (; da > db; da--) a = a->parent;
    for (; db > da; db--) b = b->parent;
    while (a != b) {
        a = a->parent;
        b = b->parent;
    }
    return a;
}

static int is_pci_switch(hwloc_obj_t obj) {
    return obj->type == HWLOC_OBJ_BRIDGE && obj->attr->bridge.upstream_type == HWLOC_OBJ_BRIDGE_PCI;
}

/* The slowest known PCI link from obj up to (not including) stop, in bytes/s; 0 when none is known. */
static double pci_path_bandwidth(hwloc_obj_t obj, hwloc_obj_t stop) {
    double slowest = 0.0;
    for (; obj && obj != stop; obj = obj->parent) {
        double speed = 0.0;
        if (obj->type == HWLOC_OBJ_PCI_DEVICE) speed = obj->attr->pcidev.linkspeed;
        else if (is_pci_switch(obj)) speed = obj->attr->bridge.upstream.pci.linkspeed;
        if (speed > 0.0 && (slowest == 0.0 || speed < slowest)) slowest = speed;
    }
    return slowest * 1e9; /* hwloc gives GB/s */
}

static double or_default_pcie(double bandwidth) {
    return bandwidth > 0.0 ? bandwidth : BRG_TOPOLOGY_PCIE_DEFAULT_BANDWIDTH;
}

/* NUMA node (when exactly one is near) and package of an object, as OS indices; -1 when unknown. */
static void locality(hwloc_topology_t hw, hwloc_obj_t obj, int *numa, int *package) {
    *numa = *package = -1;
    if (!obj) return;
    hwloc_obj_t anchor = hwloc_get_non_io_ancestor_obj(hw, obj);
    if (!anchor) return;
    if (anchor->nodeset && hwloc_bitmap_weight(anchor->nodeset) == 1) *numa = hwloc_bitmap_first(anchor->nodeset);
    hwloc_obj_t pkg = anchor->type == HWLOC_OBJ_PACKAGE ? anchor
                                                        : hwloc_get_ancestor_obj_by_type(hw, HWLOC_OBJ_PACKAGE, anchor);
    if (!pkg && hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_PACKAGE) == 1)
        pkg = hwloc_get_obj_by_type(hw, HWLOC_OBJ_PACKAGE, 0);
    if (pkg) *package = (int)pkg->os_index;
}

/* ---- finding GPUs --------------------------------------------------------------------------------- */

typedef struct gpu_candidate {
    brg__gpu_found found;
    int cuda_index; /* -1 when none */
    int nvml_index;
} gpu_candidate;

static int osdev_index(const char *name, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0 || !name[n]) return -1;
    char *end;
    long v = strtol(name + n, &end, 10);
    return *end == '\0' && v >= 0 && v < 1000000 ? (int)v : -1;
}

/* Most KiB a GPU's CUDAGlobalMemorySize may claim (1 PiB), and most SMs or cores per SM: figures past
 * these are not a device, and converting them to integers would overflow. */
#define GPU_MAX_MEMORY_KIB (UINT64_C(1) << 40)
#define GPU_MAX_SM_FIGURE 1000000

/* Info attribute `name` of obj as a whole number in [0, max] into *out (0 when absent). A value that is
 * not a plain decimal number in range is an error naming the device, the attribute and the limit. */
static brg_status info_count(hwloc_obj_t obj, const char *name, uint64_t max, const char *unit, const char *source,
                             uint64_t *out, brg_error *err) {
    const char *v = hwloc_obj_get_info_by_name(obj, name);
    *out = 0;
    if (!v || brg__decimal_count(v, max, out)) return BRG_OK;
    return brg__error_set(err, BRG_ERR_PARSE, "%s: GPU %s: %s \"%.40s\" is not a whole number of %s in 0..%llu",
                          source, obj->name ? obj->name : "?", name, v, unit, (unsigned long long)max);
}

/* Folds one cudaN / nvmlN OS device into the candidate of its PCI device. */
static brg_status candidate_take_osdev(gpu_candidate *c, hwloc_obj_t osdev, int cuda, int nvml, const char *source,
                                       brg_error *err) {
    if (cuda >= 0) c->cuda_index = cuda;
    if (nvml >= 0) c->nvml_index = nvml;
    const char *model = hwloc_obj_get_info_by_name(osdev, "GPUModel");
    if (model && !c->found.model[0]) brg__copy_string(c->found.model, sizeof c->found.model, model);
    uint64_t kib, sms, cores;
    BRG__CHECK(info_count(osdev, "CUDAGlobalMemorySize", GPU_MAX_MEMORY_KIB, "KiB", source, &kib, err));
    BRG__CHECK(info_count(osdev, "CUDAMultiProcessors", GPU_MAX_SM_FIGURE, "SMs", source, &sms, err));
    BRG__CHECK(info_count(osdev, "CUDACoresPerMP", GPU_MAX_SM_FIGURE, "cores", source, &cores, err));
    if (kib > 0) c->found.memory_bytes = kib * 1024u;
    /* Without a clock in the XML, 1 GHz: an order of magnitude, marked as an estimate. */
    if (sms > 0 && cores > 0) c->found.estimated_fp32 = 2.0 * (double)sms * (double)cores * 1e9;
    return BRG_OK;
}

static int candidate_order(const void *pa, const void *pb) {
    const gpu_candidate *a = pa, *b = pb;
    long ka = a->cuda_index >= 0 ? a->cuda_index : 1000000L + a->nvml_index;
    long kb = b->cuda_index >= 0 ? b->cuda_index : 1000000L + b->nvml_index;
    return (ka > kb) - (ka < kb);
}

static int candidate_of(gpu_candidate *c, int n, hwloc_obj_t pci) {
    for (int i = 0; i < n; i++)
        if (c[i].found.pci == pci) return i;
    return -1;
}

brg_status brg__hwloc_find_gpus(hwloc_topology_t hw, const char *source, brg__gpu_found **out, int *count,
                                 brg_error *err) {
    int capacity = 0, n = 0;
    for (hwloc_obj_t o = hwloc_get_next_osdev(hw, NULL); o; o = hwloc_get_next_osdev(hw, o)) capacity++;
    gpu_candidate *c = brg__calloc((size_t)(capacity ? capacity : 1), sizeof *c);
    if (!c) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "topology: out of memory");
    for (hwloc_obj_t o = hwloc_get_next_osdev(hw, NULL); o; o = hwloc_get_next_osdev(hw, o)) {
        int cuda = osdev_index(o->name ? o->name : "", "cuda"), nvml = osdev_index(o->name ? o->name : "", "nvml");
        if ((cuda < 0 && nvml < 0) || !o->parent || o->parent->type != HWLOC_OBJ_PCI_DEVICE) continue;
        int i = candidate_of(c, n, o->parent);
        if (i < 0 && n == BRG__TOPO_MAX_DEVICES) {
            free(c);
            return brg__error_set(err, BRG_ERR_PARSE, "%s: more than %d GPUs, the most a topology holds", source,
                                  BRG__TOPO_MAX_DEVICES);
        }
        if (i < 0) {
            i = n++;
            c[i].found.pci = o->parent;
            c[i].cuda_index = c[i].nvml_index = -1;
            brg__pci_bus_id(o->parent, c[i].found.pci_bus_id, sizeof c[i].found.pci_bus_id);
        }
        brg_status s = candidate_take_osdev(&c[i], o, cuda, nvml, source, err);
        if (s != BRG_OK) {
            free(c);
            return s;
        }
    }
    qsort(c, (size_t)n, sizeof *c, candidate_order);
    brg__gpu_found *gpus = n ? brg__calloc((size_t)n, sizeof *gpus) : NULL;
    if (n && !gpus) {
        free(c);
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "topology: out of memory");
    }
    for (int i = 0; i < n; i++) gpus[i] = c[i].found;
    free(c);
    *out = gpus;
    *count = n;
    return BRG_OK;
}

/* ---- NVLink distances ------------------------------------------------------------------------------ */

typedef struct nvlink_matrix {
    double *peer; /* n x n bytes/s, 0 where no NVLink */
    double *host; /* n: NVLink bandwidth to a CPU package, 0 where none */
    int switched; /* the matrix goes through NVSwitches */
} nvlink_matrix;

static int is_nvswitch(hwloc_obj_t obj) { return obj && obj->subtype && strcmp(obj->subtype, "NVSwitch") == 0; }

static int gpu_of_object(const brg__hwloc_request *req, hwloc_obj_t obj) {
    hwloc_obj_t pci = obj && obj->type == HWLOC_OBJ_OS_DEVICE ? obj->parent : obj;
    for (int g = 0; pci && g < req->gpu_count; g++)
        if (req->gpus[g].pci == pci) return g;
    return -1;
}

/* hwloc reports NVLinkBandwidth in MB/s per direction (1 MB = 1e6 bytes). Through NVSwitches, hwloc's
 * transitive closure gives each GPU pair the smaller of the two GPUs' summed bandwidth to all switches:
 * what the pair can move when every link of both is used. */
static void nvlink_fill(const brg__hwloc_request *req, hwloc_topology_t hw, struct hwloc_distances_s *d,
                        nvlink_matrix *m) {
    unsigned n = d->nbobjs;
    int gpus = req->gpu_count;
    for (unsigned k = 0; k < n; k++) {
        int g = gpu_of_object(req, d->objs[k]);
        for (unsigned l = 0; g >= 0 && l < n; l++)
            if (d->objs[l] && d->objs[l]->type == HWLOC_OBJ_PACKAGE && (double)d->values[k * n + l] * 1e6 > m->host[g])
                m->host[g] = (double)d->values[k * n + l] * 1e6;
        m->switched |= is_nvswitch(d->objs[k]);
    }
    if (m->switched && hwloc_distances_transform(hw, d, HWLOC_DISTANCES_TRANSFORM_TRANSITIVE_CLOSURE, NULL, 0) != 0)
        m->switched = 0;
    for (unsigned k = 0; k < n; k++) {
        int g = gpu_of_object(req, d->objs[k]);
        for (unsigned l = 0; g >= 0 && l < n; l++) {
            int h = gpu_of_object(req, d->objs[l]);
            if (h >= 0 && h != g) m->peer[g * gpus + h] = (double)d->values[k * n + l] * 1e6;
        }
    }
}

static brg_status nvlink_read(const brg__hwloc_request *req, nvlink_matrix *m, brg_error *err) {
    int n = req->gpu_count;
    m->peer = brg__calloc((size_t)(n ? n * n : 1), sizeof *m->peer);
    m->host = brg__calloc((size_t)(n ? n : 1), sizeof *m->host);
    m->switched = 0;
    if (!m->peer || !m->host) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "topology: out of memory");
    struct hwloc_distances_s *d[1] = {NULL};
    unsigned found = 1;
    if (n == 0 || hwloc_distances_get_by_name(req->hw, "NVLinkBandwidth", &found, d, 0) != 0 || found == 0)
        return BRG_OK;
    nvlink_fill(req, req->hw, d[0], m);
    hwloc_distances_release(req->hw, d[0]);
    return BRG_OK;
}

/* ---- links between GPUs ----------------------------------------------------------------------------- */

static double host_bandwidth(const brg__hwloc_request *req, const nvlink_matrix *m, int g) {
    double pcie = or_default_pcie(req->gpus[g].pci ? pci_path_bandwidth(req->gpus[g].pci, NULL) : 0.0);
    return m->host[g] > pcie ? m->host[g] : pcie;
}

static double min3(double a, double b, double c) {
    double m = a < b ? a : b;
    return m < c ? m : c;
}

static brg_link pci_link(const brg__hwloc_request *req, const nvlink_matrix *m, const brg_topology *t, int g,
                         int h) {
    hwloc_obj_t a = req->gpus[g].pci, b = req->gpus[h].pci;
    int pkg_g = t->devices[g].package, pkg_h = t->devices[h].package;
    int same_socket = pkg_g == pkg_h;
    if (a && b) {
        hwloc_obj_t ancestor = common_ancestor(a, b);
        double bw_a = pci_path_bandwidth(a, ancestor), bw_b = pci_path_bandwidth(b, ancestor);
        double bw = or_default_pcie(bw_a > 0 && bw_b > 0 ? (bw_a < bw_b ? bw_a : bw_b) : bw_a + bw_b);
        if (is_pci_switch(ancestor)) return (brg_link){BRG_LINK_PCIE_SWITCH, bw, BRG_TOPOLOGY_LATENCY_PCIE_SWITCH};
        if (ancestor->type == HWLOC_OBJ_BRIDGE || same_socket)
            return (brg_link){BRG_LINK_PCIE_HOST, bw, BRG_TOPOLOGY_LATENCY_PCIE_HOST};
    } else if (same_socket && pkg_g >= 0) {
        return (brg_link){BRG_LINK_PCIE_HOST, BRG_TOPOLOGY_PCIE_DEFAULT_BANDWIDTH, BRG_TOPOLOGY_LATENCY_PCIE_HOST};
    }
    double bw = min3(host_bandwidth(req, m, g), host_bandwidth(req, m, h), BRG_TOPOLOGY_SOCKET_BANDWIDTH);
    return (brg_link){BRG_LINK_CROSS_SOCKET, bw, BRG_TOPOLOGY_LATENCY_CROSS_SOCKET};
}

static brg_link gpu_link(const brg__hwloc_request *req, const nvlink_matrix *m, const brg_topology *t, int g,
                         int h) {
    if (req->hints && req->hints[g * req->gpu_count + h].kind != BRG_LINK_SELF) {
        brg__peer_hint hint = req->hints[g * req->gpu_count + h];
        if (hint.kind == BRG_LINK_NVLINK || hint.kind == BRG_LINK_NVSWITCH)
            return (brg_link){hint.kind, hint.bandwidth, BRG_TOPOLOGY_LATENCY_NVLINK};
        return pci_link(req, m, t, g, h);
    }
    double bw = m->peer[g * req->gpu_count + h];
    if (bw > 0)
        return (brg_link){m->switched ? BRG_LINK_NVSWITCH : BRG_LINK_NVLINK, bw, BRG_TOPOLOGY_LATENCY_NVLINK};
    return pci_link(req, m, t, g, h);
}

/* ---- GPU devices ------------------------------------------------------------------------------------ */

static void gpu_device(const brg__hwloc_request *req, brg__device *d, int g) {
    const brg__gpu_found *found = &req->gpus[g];
    snprintf(d->name, sizeof d->name, "gpu%d", g);
    brg__copy_string(d->model, sizeof d->model, found->model);
    brg__copy_string(d->pci_bus_id, sizeof d->pci_bus_id, found->pci_bus_id);
    d->memory_bytes = found->memory_bytes;
    locality(req->hw, found->pci, &d->numa_node, &d->package);
    const brg_device_preset *preset = brg_device_preset_match(found->model);
    if (!preset) preset = req->gpu_preset;
    if (preset) {
        brg__device_apply_preset(d, preset);
        return;
    }
    d->kind = BRG_DEVICE_GPU;
    d->peak_flops[BRG_PRECISION_FP32] = found->estimated_fp32;
    d->memory_bandwidth = found->estimated_memory_bandwidth;
    d->figures = found->estimated_fp32 > 0 ? BRG_FIGURE_ESTIMATED : BRG_FIGURE_UNKNOWN;
}

static brg_status gpu_devices(const brg__hwloc_request *req, brg_topology **out, brg_error *err) {
    brg_topology *t;
    BRG__CHECK(brg__topology_alloc(&t, req->gpu_count, 1, NULL, err));
    for (int g = 0; g < req->gpu_count; g++) gpu_device(req, &t->devices[g], g);
    nvlink_matrix m;
    brg_status s = nvlink_read(req, &m, err);
    for (int g = 0; s == BRG_OK && g < req->gpu_count; g++)
        for (int h = 0; h < req->gpu_count; h++)
            if (h != g) *brg__link_at(t, g, h) = gpu_link(req, &m, t, g, h);
    free(m.peer);
    free(m.host);
    if (s != BRG_OK) {
        brg_topology_destroy(t);
        return s;
    }
    *out = t;
    return BRG_OK;
}

/* ---- CPU devices ------------------------------------------------------------------------------------ */

static hwloc_obj_type_t group_type(brg_cpu_grouping grouping) {
    switch (grouping) {
    case BRG_CPU_PER_NUMA_NODE:
        return HWLOC_OBJ_NUMANODE;
    case BRG_CPU_PER_PACKAGE:
        return HWLOC_OBJ_PACKAGE;
    case BRG_CPU_PER_CORE:
        break;
    }
    return HWLOC_OBJ_CORE;
}

static int cores_in(hwloc_topology_t hw, hwloc_const_cpuset_t set) {
    int cores = hwloc_get_nbobjs_inside_cpuset_by_type(hw, set, HWLOC_OBJ_CORE);
    return cores > 0 ? cores : hwloc_get_nbobjs_inside_cpuset_by_type(hw, set, HWLOC_OBJ_PU);
}

/* Memory of the NUMA nodes inside `nodeset`, and the cores that share it. */
static void numa_memory(hwloc_topology_t hw, hwloc_const_nodeset_t nodeset, uint64_t *bytes, int *cores) {
    *bytes = 0;
    *cores = 0;
    for (hwloc_obj_t n = hwloc_get_next_obj_by_type(hw, HWLOC_OBJ_NUMANODE, NULL); n;
         n = hwloc_get_next_obj_by_type(hw, HWLOC_OBJ_NUMANODE, n))
        if (hwloc_bitmap_isset(nodeset, (int)n->os_index)) {
            *bytes += n->attr->numanode.local_memory;
            *cores += cores_in(hw, n->cpuset);
        }
}

static void cpu_device(const brg__hwloc_request *req, brg__device *d, hwloc_obj_t group, int index) {
    hwloc_topology_t hw = req->hw;
    int cores = cores_in(hw, group->cpuset);
    snprintf(d->name, sizeof d->name, "cpu%d", index);
    hwloc_obj_t pkg = group->type == HWLOC_OBJ_PACKAGE ? group
                                                        : hwloc_get_ancestor_obj_by_type(hw, HWLOC_OBJ_PACKAGE, group);
    const char *model = pkg ? hwloc_obj_get_info_by_name(pkg, "CPUModel") : NULL;
    brg__copy_string(d->model, sizeof d->model, model ? model : "CPU");
    d->package = pkg ? (int)pkg->os_index : -1;
    d->numa_node = group->nodeset && hwloc_bitmap_weight(group->nodeset) == 1 ? hwloc_bitmap_first(group->nodeset) : -1;
    brg__cpu_estimate(d, cores);
    if (req->probed_core_flops > 0) {
        d->peak_flops[BRG_PRECISION_FP32] = req->probed_core_flops * cores;
        d->memory_bandwidth = req->probed_core_bandwidth * cores;
        d->figures = BRG_FIGURE_MEASURED;
    }
    /* Cores of one NUMA node share its memory: each group gets its cores' share. */
    uint64_t bytes;
    int sharing;
    numa_memory(hw, group->nodeset, &bytes, &sharing);
    d->memory_bytes = sharing > 0 ? (uint64_t)((double)bytes * cores / sharing) : bytes;
}

static brg_link cpu_link(const brg__device *a, const brg__device *b) {
    double bw_a = a->memory_bandwidth, bw_b = b->memory_bandwidth;
    double copy = (bw_a < bw_b ? bw_a : bw_b) / 2; /* a copy reads and writes the same memory system */
    if (a->package >= 0 && b->package >= 0 && a->package != b->package)
        return (brg_link){BRG_LINK_CROSS_SOCKET,
                          copy < BRG_TOPOLOGY_SOCKET_BANDWIDTH ? copy : BRG_TOPOLOGY_SOCKET_BANDWIDTH,
                          BRG_TOPOLOGY_LATENCY_CROSS_SOCKET};
    return (brg_link){BRG_LINK_SHARED_MEMORY, copy, BRG_TOPOLOGY_LATENCY_SHARED_MEMORY};
}

static brg_status cpu_devices(const brg__hwloc_request *req, brg_topology **out, brg_error *err) {
    hwloc_obj_type_t type = group_type(req->opts->cpu_grouping);
    if (type == HWLOC_OBJ_CORE && hwloc_get_nbobjs_by_type(req->hw, type) == 0) type = HWLOC_OBJ_PU;
    if (type == HWLOC_OBJ_PACKAGE && hwloc_get_nbobjs_by_type(req->hw, type) == 0) type = HWLOC_OBJ_MACHINE;
    int groups = 0;
    for (hwloc_obj_t o = hwloc_get_next_obj_by_type(req->hw, type, NULL); o;
         o = hwloc_get_next_obj_by_type(req->hw, type, o))
        groups += o->cpuset && cores_in(req->hw, o->cpuset) > 0;
    if (groups == 0)
        return brg__error_set(err, BRG_ERR_NO_DEVICE, "%s: neither a GPU nor a CPU core found", req->source);
    brg_topology *t;
    BRG__CHECK(brg__topology_alloc(&t, groups, 1, NULL, err));
    int index = 0;
    for (hwloc_obj_t o = hwloc_get_next_obj_by_type(req->hw, type, NULL); o;
         o = hwloc_get_next_obj_by_type(req->hw, type, o))
        if (o->cpuset && cores_in(req->hw, o->cpuset) > 0) cpu_device(req, &t->devices[index], o, index), index++;
    for (int i = 0; i < groups; i++)
        for (int j = 0; j < groups; j++)
            if (i != j) *brg__link_at(t, i, j) = cpu_link(&t->devices[i], &t->devices[j]);
    *out = t;
    return BRG_OK;
}

/* ---- NICs ------------------------------------------------------------------------------------------- */

static int is_nic_osdev(hwloc_obj_t o) {
    return (o->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK || o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS) &&
           o->parent && o->parent->type == HWLOC_OBJ_PCI_DEVICE;
}

static double read_number_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0.0;
    double v = 0.0;
    if (fscanf(f, "%lf", &v) != 1) v = 0.0;
    fclose(f);
    return v;
}

/* Live NIC speed in bytes/s: Ethernet from /sys/class/net (Mb/s), InfiniBand from the port rate (Gb/s). */
static double live_nic_speed(const char *name, int openfabrics) {
    char path[256];
    if (openfabrics) {
        snprintf(path, sizeof path, "/sys/class/infiniband/%s/ports/1/rate", name);
        return read_number_file(path) * 1e9 / 8;
    }
    snprintf(path, sizeof path, "/sys/class/net/%s/speed", name);
    double mbits = read_number_file(path);
    return mbits > 0 ? mbits * 1e6 / 8 : 0.0;
}

/* One NIC per PCI device; named after its OpenFabrics device where it has one (what NCCL_IB_HCA takes). */
static void nic_take_osdev(brg__nic *nic, hwloc_obj_t o, int live) {
    int openfabrics = o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS;
    if (openfabrics || !nic->name[0]) brg__copy_string(nic->name, sizeof nic->name, o->name);
    if (live) {
        double speed = live_nic_speed(o->name, openfabrics);
        if (speed > nic->bandwidth) nic->bandwidth = speed;
    }
}

static brg_status collect_nics(const brg__hwloc_request *req, brg_topology *t, hwloc_obj_t **pcis, brg_error *err) {
    int capacity = 0;
    for (hwloc_obj_t o = hwloc_get_next_osdev(req->hw, NULL); o; o = hwloc_get_next_osdev(req->hw, o)) capacity++;
    *pcis = brg__calloc((size_t)(capacity ? capacity : 1), sizeof **pcis);
    if (!*pcis) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "topology: out of memory");
    for (hwloc_obj_t o = hwloc_get_next_osdev(req->hw, NULL); o; o = hwloc_get_next_osdev(req->hw, o)) {
        if (!is_nic_osdev(o)) continue;
        int k = 0;
        while (k < t->nic_count && (*pcis)[k] != o->parent) k++;
        if (k == t->nic_count) {
            if (t->nic_count >= BRG_TOPOLOGY_MAX_NICS_PER_NODE)
                return brg__error_set(err, BRG_ERR_PARSE, "%s: more than %d network interfaces in one node, the most "
                                      "a node holds", req->source, BRG_TOPOLOGY_MAX_NICS_PER_NODE);
            brg__nic nic = {.node = 0};
            brg__pci_bus_id(o->parent, nic.pci_bus_id, sizeof nic.pci_bus_id);
            locality(req->hw, o->parent, &nic.numa_node, &(int){0});
            BRG__CHECK(brg__topology_push_nic(t, &nic, NULL, err));
            (*pcis)[k] = o->parent;
        }
        nic_take_osdev(&t->nics[k], o, req->live);
    }
    return BRG_OK;
}

/* The NIC sharing the deepest PCI ancestor with the device (same PCIe switch before same socket); for
 * devices without a PCI object, the first NIC of its NUMA node, else the first NIC. */
static int nearest_nic(const brg_topology *t, hwloc_obj_t *pcis, hwloc_obj_t pci, int numa) {
    int best = -1, best_depth = -1;
    for (int k = 0; k < t->nic_count; k++) {
        int depth = pci ? tree_depth(common_ancestor(pci, pcis[k])) : (numa >= 0 && t->nics[k].numa_node == numa);
        if (depth > best_depth) best = k, best_depth = depth;
    }
    return best;
}

static brg_status add_nics(const brg__hwloc_request *req, brg_topology *t, brg_error *err) {
    hwloc_obj_t *pcis = NULL;
    brg_status s = collect_nics(req, t, &pcis, err);
    for (int i = 0; s == BRG_OK && i < t->device_count; i++) {
        hwloc_obj_t pci = t->devices[i].kind == BRG_DEVICE_GPU ? req->gpus[i].pci : NULL;
        t->devices[i].nearest_nic = nearest_nic(t, pcis, pci, t->devices[i].numa_node);
    }
    free(pcis);
    return s;
}

/* ---- the node ---------------------------------------------------------------------------------------- */

brg_status brg__topology_from_hwloc(brg_topology **out, const brg__hwloc_request *req, brg_error *err) {
    brg_topology *t = NULL;
    if (req->gpu_count > 0) BRG__CHECK(gpu_devices(req, &t, err));
    else BRG__CHECK(cpu_devices(req, &t, err));
    brg_status s = add_nics(req, t, err);
    if (s != BRG_OK) {
        brg_topology_destroy(t);
        return s;
    }
    brg__topology_set_self_links(t);
    const char *host = hwloc_obj_get_info_by_name(hwloc_get_root_obj(req->hw), "HostName");
    brg__copy_string(t->nodes[0].name, sizeof t->nodes[0].name,
                     req->node_name ? req->node_name : host ? host : "node0");
    brg__copy_string(t->nodes[0].source, sizeof t->nodes[0].source, req->source);
    brg__copy_string(t->source, sizeof t->source, req->source);
    t->final = 1;
    *out = t;
    return BRG_OK;
}

/* ---- XML files --------------------------------------------------------------------------------------- */

/* brg__hwloc_load_xml, which checks a file before hwloc reads it, is in xml_guard.c. */

brg_status brg__topology_from_xml(brg_topology **out, const char *path, const char *where,
                                  const brg_topology_options *opts, const brg_device_preset *gpu_preset,
                                  const char *node_name, brg_error *err) {
    hwloc_topology_t hw;
    BRG__CHECK(brg__hwloc_load_xml(&hw, path, where, err));
    char source[BRG__TOPO_SOURCE_MAX];
    snprintf(source, sizeof source, "xml %s", path);
    brg__hwloc_request req = {.hw = hw, .node_name = node_name, .source = source, .opts = opts,
                              .gpu_preset = gpu_preset};
    brg_status s = BRG_OK;
    if (!(opts->flags & BRG_TOPOLOGY_IGNORE_GPUS)) s = brg__hwloc_find_gpus(hw, path, &req.gpus, &req.gpu_count, err);
    if (s == BRG_OK) s = brg__topology_from_hwloc(out, &req, err);
    free(req.gpus);
    hwloc_topology_destroy(hw);
    return s;
}

brg_status brg_topology_load_xml(brg_topology **out, const char *path, const brg_topology_options *opts,
                                 brg_error *err) {
    if (!out || !path) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_topology_load_xml: NULL argument");
    brg_topology_options o;
    BRG__CHECK(brg__topology_options_check(opts, &o, err));
    return brg__topology_from_xml(out, path, "", &o, NULL, NULL, err);
}
