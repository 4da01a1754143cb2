/* brigade: the machines a plan runs on.
 *
 * A topology is a set of devices (GPUs, or groups of CPU cores for the CPU backend) spread over one or
 * more nodes, and for every ordered pair of devices the link between them: its kind, its bandwidth in
 * each direction and its latency. It also lists the network interfaces (NICs) of each node and, for
 * every device, the NIC nearest it. The partitioner reads nothing else about the machines.
 *
 * Units, everywhere in this header: bandwidth in bytes per second (per direction), latency in
 * seconds, memory in bytes, compute in FLOP/s (dense, not "with sparsity"). A figure of 0 means
 * "unknown" or, for a precision, "the device has no units for it".
 *
 * Sources:
 *   - brg_topology_load_live: this machine, through hwloc; with the CUDA toolkit present and a GPU
 *     visible, each CUDA device matched to its hwloc PCI object by PCI bus id, peer reachability from
 *     the CUDA runtime. Without a GPU, CPU cores (or NUMA nodes, or packages) become CPU devices.
 *   - brg_topology_load_xml: an hwloc XML export (lstopo --of xml) of some machine: GPU OS devices
 *     (cudaN, nvmlN), the NVLinkBandwidth distances, PCI link speeds, NUMA locality, NICs.
 *   - brg_topology_load_cluster: a JSON description of many nodes (schema below, docs/cluster.md).
 *   - brg_topology_create_custom + setters + brg_topology_finalize: a synthetic topology (tests,
 *     what-if studies).
 *
 * This example is compiled and run by the test suite:
 *
 *     brg_topology *t = NULL;
 *     brg_error err = {0};
 *     const char *cluster = "{\"version\": 1, \"node_groups\": [{\"preset\": \"dgx-h100\", \"count\": 2}]}";
 *     if (brg_topology_load_cluster_string(&t, cluster, NULL, NULL, &err) != BRG_OK) {
 *         fprintf(stderr, "%s\n", err.message);
 *         return 1;
 *     }
 *     brg_link inside, across;
 *     brg_topology_link(t, 0, 7, &inside);  // same node: NVSwitch, 450e9 bytes/s each way
 *     brg_topology_link(t, 0, 8, &across);  // two nodes: network, one 400 Gb/s NIC per GPU
 *     int ok = brg_topology_device_count(t) == 16 && inside.kind == BRG_LINK_NVSWITCH &&
 *              across.kind == BRG_LINK_NETWORK && across.bandwidth == 50e9;
 *     brg_topology_destroy(t);
 *     return ok ? 0 : 1;
 *
 * Lifecycle: load (or create, set, finalize) -> query -> brg_topology_destroy. A loaded topology is
 * final (immutable); setters on it return BRG_ERR_INVALID_USAGE. Queries work in any state.
 *
 * Strings in the info structs below point into the topology and stay valid until it is destroyed.
 *
 * Link kinds and how their figures are derived:
 *   SELF           a device to itself; bandwidth is the device's memory bandwidth, latency 0.
 *   NVLINK         direct NVLink: the NVLinkBandwidth entry of the pair (hwloc reports MB/s per
 *                  direction; 1 MB = 1e6 bytes), or a preset's NVLink figure.
 *   NVSWITCH       through NVSwitch: hwloc's transitive closure of the NVLinkBandwidth matrix (the
 *                  smaller of the two GPUs' total bandwidth to all switches; on a DGX-2 6 x 25 GB/s =
 *                  150 GB/s), or a preset's per-direction NVLink bandwidth.
 *   PCIE_SWITCH    PCIe peer-to-peer under one PCIe switch: the slowest PCI link on the path.
 *   PCIE_HOST      PCIe through one CPU's root complex (same socket): the slowest PCI link on the path.
 *   CROSS_SOCKET   across the CPU sockets' interconnect: the slower of the two devices' paths to their
 *                  CPU (PCIe, or NVLink to the CPU where the matrix lists one) and
 *                  BRG_TOPOLOGY_SOCKET_BANDWIDTH.
 *   SHARED_MEMORY  two CPU devices of one node: a memory copy, half the smaller memory bandwidth.
 *   NETWORK        devices of two nodes: the slower of the two devices' nearest NICs, and the
 *                  cluster's inter-node latency. Contention on a shared NIC is not modelled here.
 * A PCI link speed that hwloc does not know is taken as BRG_TOPOLOGY_PCIE_DEFAULT_BANDWIDTH.
 * Latencies other than the network's are assumed software-visible figures for a point-to-point
 * transfer (copy or NCCL setup included), not datasheet numbers: see BRG_TOPOLOGY_LATENCY_*. */
#ifndef BRIGADE_TOPOLOGY_H
#define BRIGADE_TOPOLOGY_H

#include <stdint.h>

#include "brigade/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brg_topology brg_topology;

typedef enum brg_device_kind {
    BRG_DEVICE_CPU = 0, /* a group of CPU cores (the CPU backend) */
    BRG_DEVICE_GPU = 1,
} brg_device_kind;

typedef enum brg_precision {
    BRG_PRECISION_FP32 = 0, /* plain fp32 (CUDA cores, or the CPU's SIMD units) */
    BRG_PRECISION_TF32 = 1, /* tensor cores on fp32 data (Ampere and later) */
    BRG_PRECISION_BF16 = 2, /* tensor cores, bf16 inputs, fp32 accumulation (Ampere and later) */
    BRG_PRECISION_FP16 = 3, /* tensor cores, fp16 inputs (Volta and later); V100's only tensor peak */
    BRG_PRECISION_COUNT = 4,
} brg_precision;

typedef enum brg_link_kind {
    BRG_LINK_SELF = 0,
    BRG_LINK_NVLINK = 1,
    BRG_LINK_NVSWITCH = 2,
    BRG_LINK_PCIE_SWITCH = 3,
    BRG_LINK_PCIE_HOST = 4,
    BRG_LINK_CROSS_SOCKET = 5,
    BRG_LINK_SHARED_MEMORY = 6,
    BRG_LINK_NETWORK = 7,
    BRG_LINK_KIND_COUNT = 8,
} brg_link_kind;

/* Where a device's compute and memory figures come from. */
typedef enum brg_figure_source {
    BRG_FIGURE_UNKNOWN = 0,   /* nothing known: the figures are 0 */
    BRG_FIGURE_PRESET = 1,    /* a device preset (published datasheet figures) */
    BRG_FIGURE_MEASURED = 2,  /* the CPU probe (sgemm and memory copy) on this machine */
    BRG_FIGURE_ESTIMATED = 3, /* a rough estimate from core or SM counts and clocks */
    BRG_FIGURE_USER = 4,      /* given through brg_topology_set_device */
} brg_figure_source;

/* Most devices a topology holds: the link matrix grows as the square (8192 devices: 1.6 GB). */
#define BRG_TOPOLOGY_MAX_DEVICES 8192
/* Most nodes a topology holds (every node has at least one device). */
#define BRG_TOPOLOGY_MAX_NODES BRG_TOPOLOGY_MAX_DEVICES
/* Most network interfaces one node holds (a DGX H100 has 10; hwloc files and cluster descriptions that
 * give more are refused rather than sized from). */
#define BRG_TOPOLOGY_MAX_NICS_PER_NODE 64

/* Defaults used where the sources say nothing. */
#define BRG_TOPOLOGY_PCIE_DEFAULT_BANDWIDTH 15.75e9 /* PCIe Gen3 x16, per direction */
#define BRG_TOPOLOGY_SOCKET_BANDWIDTH 10.0e9        /* CPU-socket interconnect for peer traffic (what
                                                       NCCL's topology model assumes for UPI) */
#define BRG_TOPOLOGY_NETWORK_LATENCY 6.0e-6         /* inter-node, when a cluster file gives none */
#define BRG_TOPOLOGY_LATENCY_NVLINK 2.0e-6          /* NVLINK and NVSWITCH */
#define BRG_TOPOLOGY_LATENCY_PCIE_SWITCH 3.0e-6
#define BRG_TOPOLOGY_LATENCY_PCIE_HOST 4.0e-6
#define BRG_TOPOLOGY_LATENCY_CROSS_SOCKET 5.0e-6
#define BRG_TOPOLOGY_LATENCY_SHARED_MEMORY 1.0e-6

typedef struct brg_device_info {
    brg_device_kind kind;
    const char *name;       /* "gpu3", "cpu0": unique within its node */
    const char *model;      /* "NVIDIA H100 80GB HBM3", "AMD EPYC 7B13", or "" */
    const char *preset;     /* the device preset its figures come from, or "" */
    const char *pci_bus_id; /* "0000:34:00.0", or "" (CPU devices, presets) */
    int node;               /* index of its node, 0 .. brg_topology_node_count() - 1 */
    int local_index;        /* index among the devices of its node */
    int numa_node;          /* OS index of the NUMA node nearest it, or -1 when unknown or several */
    int package;            /* OS index of the CPU package (socket) nearest it, or -1 */
    int cores;              /* CPU devices: cores in the group; GPUs: 0 */
    uint64_t memory_bytes;  /* capacity; for CPU devices their share of their NUMA node's memory */
    double peak_flops[BRG_PRECISION_COUNT]; /* FLOP/s, dense; 0 = no units for it, or unknown */
    double memory_bandwidth;                /* bytes/s */
    int nearest_nic;                        /* topology-wide NIC index, or -1 when its node has none */
    brg_figure_source figures;              /* where peak_flops and memory_bandwidth come from */
} brg_device_info;

typedef struct brg_link {
    brg_link_kind kind;
    double bandwidth; /* bytes/s in each direction */
    double latency;   /* seconds */
} brg_link;

typedef struct brg_nic_info {
    const char *name;       /* "mlx5_0", "eth0", "nic3" (presets) */
    const char *pci_bus_id; /* or "" */
    int node;
    int numa_node;          /* or -1 */
    double bandwidth;       /* bytes/s per direction; 0 when unknown (an XML file does not say) */
} brg_nic_info;

typedef struct brg_node_info {
    const char *name;   /* host name, or "<group>-<i>" in a cluster */
    const char *source; /* "live", "xml <path>", "preset <name>" */
    int first_device;   /* its devices are first_device .. first_device + device_count - 1 */
    int device_count;
    int first_nic;      /* its NICs are first_nic .. first_nic + nic_count - 1 */
    int nic_count;
} brg_node_info;

/* ---- loading -------------------------------------------------------------------------------- */

/* How CPU devices are formed when a machine has no GPU (or GPUs are ignored). */
typedef enum brg_cpu_grouping {
    BRG_CPU_PER_CORE = 0,      /* one device per core: a pipeline stage per core */
    BRG_CPU_PER_NUMA_NODE = 1, /* one device per NUMA node */
    BRG_CPU_PER_PACKAGE = 2,   /* one device per package (socket) */
} brg_cpu_grouping;

typedef enum brg_topology_flags {
    BRG_TOPOLOGY_DEFAULT = 0,
    BRG_TOPOLOGY_PROBE_CPU = 1,   /* live only: measure CPU devices' peak with a short sgemm (and
                                     their memory bandwidth with a copy), under a second in all; it
                                     sets OpenBLAS to one thread meanwhile and restores it */
    BRG_TOPOLOGY_IGNORE_GPUS = 2, /* make CPU devices even where GPUs are present */
} brg_topology_flags;

typedef struct brg_topology_options {
    brg_cpu_grouping cpu_grouping;
    unsigned flags; /* brg_topology_flags, or-ed */
} brg_topology_options;

#define BRG_TOPOLOGY_OPTIONS_INIT {BRG_CPU_PER_CORE, BRG_TOPOLOGY_DEFAULT}

/* Every loader below: `out` receives a final topology the caller frees with brg_topology_destroy;
 * `opts` may be NULL (the defaults); `err` may be NULL, and on failure receives the status and a
 * message naming the file (and, for JSON, line:column and the field). *out is untouched on failure.
 * Common returns: BRG_OK; BRG_ERR_INVALID_ARGUMENT (out or path NULL, flags or grouping out of range);
 * BRG_ERR_OUT_OF_MEMORY. */

/* This machine. Also returns BRG_ERR_BACKEND when hwloc cannot read the machine (or the CPU probe
 * cannot time itself) and BRG_ERR_NO_DEVICE when it shows neither a usable GPU nor a core. A CUDA
 * runtime that finds no GPU (or no driver) is not an error: the cores become the devices. */
brg_status brg_topology_load_live(brg_topology **out, const brg_topology_options *opts, brg_error *err);

/* An hwloc XML file. Also returns BRG_ERR_IO (missing or unreadable file), BRG_ERR_PARSE (not an
 * hwloc XML topology) and BRG_ERR_NO_DEVICE (neither GPUs nor cores in it). GPUs are the PCI devices
 * with a cudaN or nvmlN OS device, numbered by CUDA index (else NVML index). Without GPUs (or with
 * BRG_TOPOLOGY_IGNORE_GPUS) its cores become CPU devices with estimated figures. */
brg_status brg_topology_load_xml(brg_topology **out, const char *path, const brg_topology_options *opts,
                                 brg_error *err);

/* A cluster description (JSON). Schema, version 1 (unknown fields are errors, to catch typos):
 *
 *   {
 *     "version": 1,                      required; 1
 *     "inter_node_latency_us": 6.0,      optional, > 0; default BRG_TOPOLOGY_NETWORK_LATENCY
 *     "node_groups": [                   required, at least one group; nodes are numbered in order
 *       {
 *         "name": "dgx",                 optional; nodes are "<name>-<i>"; default the preset's
 *                                        name or the XML file's base name; unique
 *         "preset": "dgx-h100",          exactly one of "preset" (a node preset) and "xml" (an
 *         "xml": "nodes/a.xml",          hwloc XML file, relative to the cluster file's folder)
 *         "count": 16,                   required, whole number >= 1
 *         "gpu": "h100-sxm",             optional: the device preset for this group's GPUs, where
 *                                        the XML's model names match none
 *         "nics": {"count": 8, "gbps": 400}
 *                                        optional: NICs per node and their speed in Gb/s per
 *                                        direction (> 0). For a preset, replaces its NICs (spread
 *                                        evenly over its GPUs). For an XML file, gbps sets the speed
 *                                        of the NICs it shows; count, if given, must match them, or
 *                                        adds that many evenly spread NICs where it shows none.
 *       }
 *     ]
 *   }
 *
 * Every node of a cluster of more than one node needs at least one NIC of known speed.
 * Also returns BRG_ERR_IO (the file, or an XML file it names, missing or unreadable), BRG_ERR_PARSE
 * (malformed JSON, a missing or mistyped field, a value out of range, an unknown field, a bad XML
 * file), BRG_ERR_NAME (an unknown node or device preset, a duplicate group name), BRG_ERR_MISMATCH
 * (a version other than 1) and BRG_ERR_NO_DEVICE (an XML file without devices). */
brg_status brg_topology_load_cluster(brg_topology **out, const char *path, const brg_topology_options *opts,
                                     brg_error *err);

/* The same from a string. Relative XML paths are resolved against base_dir (NULL: the current
 * directory); messages name the origin "<string>". Returns what brg_topology_load_cluster does. */
brg_status brg_topology_load_cluster_string(brg_topology **out, const char *json, const char *base_dir,
                                            const brg_topology_options *opts, brg_error *err);

/* Frees the topology. NULL is allowed. */
void brg_topology_destroy(brg_topology *t);

/* ---- synthetic topologies ------------------------------------------------------------------- */

/* Creates an unfinished topology of node_count nodes with devices_per_node devices each, every one
 * carrying the figures of `device_preset` (a device preset name, or "cpu" for a one-core CPU device
 * with estimated figures). Default links: SELF; inside a node the preset's own peer link (NVSWITCH
 * for SXM GPUs, PCIE_HOST for PCIe GPUs, SHARED_MEMORY for CPU devices); across nodes NETWORK at
 * 50e9 bytes/s (400 Gb/s) and BRG_TOPOLOGY_NETWORK_LATENCY. No NICs. Change it with the setters
 * below, then call brg_topology_finalize.
 * Returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (out or device_preset NULL, a count < 1, more than
 * BRG_TOPOLOGY_MAX_DEVICES devices), BRG_ERR_NAME (unknown preset) or BRG_ERR_OUT_OF_MEMORY; err as
 * for the loaders. */
brg_status brg_topology_create_custom(brg_topology **out, int node_count, int devices_per_node,
                                      const char *device_preset, brg_error *err);

/* Replaces device `device`'s description with a copy of *info (strings are copied; NULL means "").
 * info->node and info->local_index are ignored (a device stays on its node); info->nearest_nic must
 * be -1 or a NIC of the device's node. Returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL, index out of
 * range, a negative or non-finite figure, a kind or figure source out of range, a bad NIC index) or
 * BRG_ERR_INVALID_USAGE (the topology is final). */
brg_status brg_topology_set_device(brg_topology *t, int device, const brg_device_info *info);

/* Sets the link between devices a and b, both directions. Returns BRG_OK, BRG_ERR_INVALID_ARGUMENT
 * (NULL, index out of range, a == b, a kind out of range, SELF or NETWORK where they do not belong,
 * NETWORK missing between nodes, bandwidth <= 0 or not finite, latency < 0 or not finite) or
 * BRG_ERR_INVALID_USAGE (final). */
brg_status brg_topology_set_link(brg_topology *t, int a, int b, const brg_link *link);

/* Adds a NIC to node nic->node (name copied; NULL gives "nicN"); its index in *index when index is
 * not NULL. Returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL, node out of range, bandwidth < 0 or not
 * finite, the node holding BRG_TOPOLOGY_MAX_NICS_PER_NODE already), BRG_ERR_INVALID_USAGE (final) or
 * BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_topology_add_nic(brg_topology *t, const brg_nic_info *nic, int *index);

/* Checks and freezes a synthetic topology. Returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL) or
 * BRG_ERR_INVALID_USAGE (already final). */
brg_status brg_topology_finalize(brg_topology *t);

/* Whether the topology is final (1) or still being set (0; also for NULL). */
int brg_topology_is_final(const brg_topology *t);

/* ---- queries -------------------------------------------------------------------------------- */

/* Counts; 0 for NULL. */
int brg_topology_device_count(const brg_topology *t);
int brg_topology_node_count(const brg_topology *t);
int brg_topology_nic_count(const brg_topology *t);
/* GPUs in the topology (the rest are CPU devices); 0 for NULL. */
int brg_topology_gpu_count(const brg_topology *t);

/* Each returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL) or BRG_ERR_NOT_FOUND (index out of range). */
brg_status brg_topology_device_info(const brg_topology *t, int device, brg_device_info *info);
brg_status brg_topology_link(const brg_topology *t, int from, int to, brg_link *link);
brg_status brg_topology_nic_info(const brg_topology *t, int nic, brg_nic_info *info);
brg_status brg_topology_node_info(const brg_topology *t, int node, brg_node_info *info);

/* What the topology was loaded from: "live", "xml <path>", "cluster <path>", "custom". Owned by the
 * topology; a static string for NULL. */
const char *brg_topology_source(const brg_topology *t);

/* A 64-bit fingerprint of everything a plan depends on: device kinds, models, nodes, memory,
 * peaks, memory bandwidths, the link matrix, NIC speeds and affinities. Names and file paths do not
 * count, so the same cluster loaded from two places has one fingerprint. 0 for NULL. */
uint64_t brg_topology_fingerprint(const brg_topology *t);

/* The topology as JSON, on one line, in *out (malloc'd; the caller frees it with free()):
 *   {"format": "brigade-topology", "version": 1, "source", "fingerprint" (hex string),
 *    "nodes": [{name, source, devices: [first, count], nics: [first, count]}],
 *    "devices": [{index, kind ("gpu"|"cpu"), name, model, preset, pci_bus_id, node, local_index,
 *                 numa_node, package, cores, memory_bytes, memory_bandwidth, peak_flops: {fp32,
 *                 tf32, bf16, fp16}, figures, nearest_nic}],
 *    "nics": [{index, name, pci_bus_id, node, numa_node, bandwidth}],
 *    "links": {"classes": [{kind, bandwidth, latency}], "matrix": [[class index, ...], ...]}}
 * links.matrix[i][j] names the class of the link from device i to device j.
 * Returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL) or BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_topology_to_json(const brg_topology *t, char **out);

/* A readable summary in *out (malloc'd; free()): nodes, devices with memory and peaks, link kinds
 * with their figures and the pairs they join, the link matrix (up to 16 devices), NIC affinity.
 * Returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL) or BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_topology_summary(const brg_topology *t, char **out);

/* Static names: "self", "nvlink", "nvswitch", "pcie-switch", "pcie-host", "cross-socket",
 * "shared-memory", "network"; "gpu", "cpu"; "fp32", "tf32", "bf16", "fp16"; "unknown", "preset",
 * "measured", "estimated", "user". "?" outside the enums. */
const char *brg_link_kind_name(brg_link_kind kind);
const char *brg_device_kind_name(brg_device_kind kind);
const char *brg_precision_name(brg_precision precision);
const char *brg_figure_source_name(brg_figure_source source);

/* ---- presets -------------------------------------------------------------------------------- */

/* A device preset: published figures of one GPU model (sources cited in topology/presets.c). */
typedef struct brg_device_preset {
    const char *name;  /* "h100-sxm" */
    const char *model; /* "NVIDIA H100 SXM5 80GB" */
    uint64_t memory_bytes; /* as the datasheet states it, in decimal GB */
    double peak_flops[BRG_PRECISION_COUNT];
    double memory_bandwidth;
    brg_link_kind peer_link; /* NVSWITCH (SXM boards) or PCIE_HOST */
    double peer_bandwidth;   /* per direction: NVLink total / 2, or the PCIe link */
} brg_device_preset;

/* A node preset: a whole server (GPUs, their links, CPU sockets, NICs). */
typedef struct brg_node_preset {
    const char *name;          /* "dgx-h100" */
    const char *description;
    const char *device_preset; /* its GPUs */
    int gpus;
    int sockets;
    brg_link_kind gpu_link;    /* NVSWITCH, or PCIE_SWITCH for PCIe-only servers */
    double gpu_link_bandwidth; /* per direction */
    int gpus_per_pcie_switch;  /* PCIe-only servers: GPUs sharing one switch */
    int nics;
    double nic_bandwidth;      /* per NIC, per direction */
} brg_node_preset;

/* Presets by index (0 .. count - 1; NULL outside) or by name (case-insensitive; NULL if unknown).
 * Returned pointers are static. */
int brg_device_preset_count(void);
const brg_device_preset *brg_device_preset_at(int index);
const brg_device_preset *brg_device_preset_find(const char *name);
int brg_node_preset_count(void);
const brg_node_preset *brg_node_preset_at(int index);
const brg_node_preset *brg_node_preset_find(const char *name);

/* The device preset a model string names ("NVIDIA H100 80GB HBM3", "Tesla V100-SXM3-32GB-H"), or
 * NULL when none fits (PCIe and NVL variants of SXM parts have other peaks and match none). */
const brg_device_preset *brg_device_preset_match(const char *model);

#ifdef __cplusplus
}
#endif
#endif
