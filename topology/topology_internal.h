/* Internal representation of a topology, shared by its sources (hwloc, CUDA, presets, cluster files)
 * and its writers (JSON, summary). */
#ifndef BRIGADE_TOPOLOGY_INTERNAL_H
#define BRIGADE_TOPOLOGY_INTERNAL_H

#include <hwloc.h>
#include <stdint.h>

#include "brigade/topology.h"
#include "internal.h"

#define BRG__TOPO_NAME_MAX 64
#define BRG__TOPO_MODEL_MAX 128
#define BRG__TOPO_BUSID_MAX 32
#define BRG__TOPO_SOURCE_MAX 512
#define BRG__TOPO_MAX_DEVICES BRG_TOPOLOGY_MAX_DEVICES

typedef struct brg__device {
    brg_device_kind kind;
    char name[BRG__TOPO_NAME_MAX];
    char model[BRG__TOPO_MODEL_MAX];
    char preset[BRG__TOPO_NAME_MAX];
    char pci_bus_id[BRG__TOPO_BUSID_MAX];
    int node;
    int local_index;
    int numa_node;
    int package;
    int cores;
    uint64_t memory_bytes;
    double peak_flops[BRG_PRECISION_COUNT];
    double memory_bandwidth;
    int nearest_nic;
    brg_figure_source figures;
} brg__device;

typedef struct brg__nic {
    char name[BRG__TOPO_NAME_MAX];
    char pci_bus_id[BRG__TOPO_BUSID_MAX];
    int node;
    int numa_node;
    double bandwidth;
} brg__nic;

typedef struct brg__node {
    char name[BRG__TOPO_NAME_MAX];
    char source[BRG__TOPO_SOURCE_MAX];
    int first_device;
    int device_count;
    int first_nic;
    int nic_count;
} brg__node;

struct brg_topology {
    int final;
    int device_count;
    int node_count;
    int nic_count;
    int nic_capacity;
    brg__device *devices; /* device_count */
    brg_link *links;      /* device_count x device_count, row = from */
    brg__node *nodes;     /* node_count */
    brg__nic *nics;       /* nic_count */
    char source[BRG__TOPO_SOURCE_MAX];
};

/* ---- topology.c: construction ------------------------------------------------------------------ */

/* A zeroed, unfinished topology: device_count devices (numa/package/nearest_nic -1) spread over
 * node_count nodes as `devices_per_node` says (NULL: all on node 0), links all zero, no NICs. */
brg_status brg__topology_alloc(brg_topology **out, int device_count, int node_count,
                               const int *devices_per_node, brg_error *err);

static inline brg_link *brg__link_at(brg_topology *t, int from, int to) {
    return &t->links[(size_t)from * (size_t)t->device_count + (size_t)to];
}

/* Appends a NIC (copied); *index receives its index. Keeps node nic ranges in step when NICs are
 * added node by node in order. */
brg_status brg__topology_push_nic(brg_topology *t, const brg__nic *nic, int *index, brg_error *err);

/* Sets the SELF links from each device's memory bandwidth. */
void brg__topology_set_self_links(brg_topology *t);

/* Copies a string into a fixed buffer, truncating. */
void brg__copy_string(char *dst, size_t size, const char *src);

/* Index of the device kind / link kind named `name`, or -1. */
int brg__link_kind_from_name(const char *name);

/* A node's network bandwidth from device d: its nearest NIC's speed, or the fastest NIC of its
 * node; 0 when its node has no NIC of known speed. */
double brg__device_network_bandwidth(const brg_topology *t, int device);

/* Joins single-node topologies into one, in order (node names and sources kept); devices of
 * different nodes get NETWORK links at the slower of their NIC speeds and `network_latency`.
 * Fails with BRG_ERR_PARSE (message prefixed by `where`) when a node lacks a NIC of known speed and
 * there is more than one node. The parts stay owned by the caller. */
brg_status brg__topology_join(brg_topology **out, brg_topology *const *parts, int count,
                              double network_latency, const char *where, brg_error *err);

/* ---- presets.c --------------------------------------------------------------------------------- */

/* Fills a device's figures (and preset name; model too when the device has none) from p. */
void brg__device_apply_preset(brg__device *d, const brg_device_preset *p);

/* Figures of a one-core CPU device, estimated (no probe). */
void brg__cpu_estimate(brg__device *d, int cores);

/* A single-node topology of preset p. nic_count < 0 and nic_bandwidth < 0 keep the preset's NICs.
 * node_name and source name the node. */
brg_status brg__node_from_preset(brg_topology **out, const brg_node_preset *p, int nic_count,
                                 double nic_bandwidth, const char *node_name, brg_error *err);

/* Spreads `count` NICs of `bandwidth` evenly over node 0 of t (a single-node topology without
 * NICs) and points each device at its share. */
brg_status brg__add_spread_nics(brg_topology *t, int count, double bandwidth, brg_error *err);

/* ---- hwloc_source.c ---------------------------------------------------------------------------- */

/* A GPU found by a source, before it becomes a device. */
typedef struct brg__gpu_found {
    hwloc_obj_t pci; /* its PCI object, or NULL when it could not be matched */
    char model[BRG__TOPO_MODEL_MAX];
    char pci_bus_id[BRG__TOPO_BUSID_MAX];
    uint64_t memory_bytes;           /* 0: unknown */
    double estimated_fp32;           /* used when no preset matches; 0: unknown */
    double estimated_memory_bandwidth;
} brg__gpu_found;

/* Peer links a source knows better than the PCI tree (live CUDA): kind SELF means "not known". */
typedef struct brg__peer_hint {
    brg_link_kind kind;
    double bandwidth;
} brg__peer_hint;

typedef struct brg__hwloc_request {
    hwloc_topology_t hw;
    const char *node_name;     /* NULL: the topology's HostName, else "node0" */
    const char *source;        /* "live", "xml <path>" */
    const brg_topology_options *opts;
    brg__gpu_found *gpus;      /* NULL with gpu_count 0: CPU devices */
    int gpu_count;
    const brg__peer_hint *hints; /* gpu_count x gpu_count, or NULL */
    const brg_device_preset *gpu_preset; /* forced preset for unmatched models, or NULL */
    int live;                  /* read NIC speeds from sysfs */
    double probed_core_flops;  /* CPU devices: measured per-core sgemm rate, or 0 to estimate */
    double probed_core_bandwidth;
} brg__hwloc_request;

/* GPUs of an hwloc topology (PCI devices with a cudaN or nvmlN OS device), ordered by CUDA index then
 * NVML index. *out is malloc'd (NULL when none). */
/* GPUs (cudaN / nvmlN OS devices) of hw; `source` (a file name, "live") names the origin in errors:
 * BRG_ERR_PARSE for figures no device has (memory past 1 PiB, a count that is not a number). */
brg_status brg__hwloc_find_gpus(hwloc_topology_t hw, const char *source, brg__gpu_found **out, int *count,
                                brg_error *err);

/* A single-node topology from an hwloc topology and the GPUs found in it (or CPU devices). */
brg_status brg__topology_from_hwloc(brg_topology **out, const brg__hwloc_request *req, brg_error *err);

/* "%04x:%02x:%02x.%x" of a PCI object. */
void brg__pci_bus_id(hwloc_obj_t pci, char *buf, size_t size);

/* Keeps hwloc's plugins loaded for the life of the process (xml_guard.c says why); called before every
 * hwloc topology brigade creates. */
void brg__hwloc_pin_plugins(void);

/* Loads an XML file into an hwloc topology with I/O objects kept. `where` prefixes messages. */
brg_status brg__hwloc_load_xml(hwloc_topology_t *out, const char *path, const char *where, brg_error *err);

/* A single-node topology from an XML file (the loader behind brg_topology_load_xml and cluster
 * groups). gpu_preset may be NULL. */
brg_status brg__topology_from_xml(brg_topology **out, const char *path, const char *where,
                                  const brg_topology_options *opts, const brg_device_preset *gpu_preset,
                                  const char *node_name, brg_error *err);

/* ---- probe.c ----------------------------------------------------------------------------------- */

/* Measures one core's sgemm rate (FLOP/s) and memory copy bandwidth (bytes/s). */
brg_status brg__cpu_probe(double *flops_per_core, double *copy_bandwidth_per_core, brg_error *err);

/* ---- options ----------------------------------------------------------------------------------- */

/* Checks opts (NULL allowed: defaults into *resolved). */
brg_status brg__topology_options_check(const brg_topology_options *opts, brg_topology_options *resolved,
                                       brg_error *err);

/* hwloc XML files (xml_guard.c): brg__hwloc_load_xml reads the file, checks it (libxml2, where built with
 * it), probes hwloc's load of it in a child process and then loads it; a bad file is BRG_ERR_PARSE naming
 * the file (and line) and what is wrong, never a crash. `where` prefixes messages ("" or a cluster
 * file's "file:line:column: "). brg__hwloc_bitmap_ok: 1 when s is in hwloc's bitmap syntax (not empty; at
 * most BRG__HWLOC_BITMAP_MAX_WORDS 32-bit words, 2,097,152 PUs). */
#define BRG__HWLOC_BITMAP_MAX_WORDS 65536
int brg__hwloc_bitmap_ok(const char *s);
/* 1 when s is a plain decimal number (digits only, at most 20) no larger than max, its value then in
 * *value (when not NULL); 0 otherwise. For the numbers hwloc files carry as text. */
int brg__decimal_count(const char *s, uint64_t max, uint64_t *value);
/* Loads buffer (size bytes with its NUL) with hwloc in a child process: BRG_OK when hwloc loads it,
 * BRG_ERR_PARSE naming the signal when hwloc crashes on it, or what hwloc said when it refuses it. */
brg_status brg__hwloc_probe(const char *buffer, int size, const char *where, const char *path, brg_error *err);

#endif
