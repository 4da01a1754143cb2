/* Device and node presets: published figures of common GPUs and servers.
 *
 * Peaks are dense (the datasheets' "with sparsity" figures are twice these). Memory is as the
 * datasheet states it, in decimal GB; a live device reports its exact capacity instead. NVLink
 * datasheet figures are totals over both directions: the per-direction figure is half.
 *
 * Sources (NVIDIA product datasheets and architecture whitepapers):
 *   H100 SXM5 80GB   NVIDIA H100 Tensor Core GPU datasheet (2023) and the "NVIDIA H100 Tensor Core GPU
 *                    Architecture" whitepaper (2022): FP32 66.9 TFLOP/s, TF32 494.7, BF16/FP16 989.4
 *                    (1,979 with sparsity), 80 GB HBM3 at 3.35 TB/s, NVLink 4 900 GB/s.
 *   H200 SXM 141GB   NVIDIA H200 Tensor Core GPU datasheet (2024): the H100 SXM's compute, 141 GB HBM3e at
 *                    4.8 TB/s, NVLink 900 GB/s.
 *   A100 SXM4 80GB   NVIDIA A100 Tensor Core GPU datasheet (2021): FP32 19.5, TF32 156, BF16/FP16 312,
 *                    80 GB HBM2e at 2,039 GB/s, NVLink 3 600 GB/s.
 *   V100 SXM2 32GB   NVIDIA Tesla V100 datasheet (2018): FP32 15.7, tensor (FP16) 125, 32 GB HBM2 at
 *                    900 GB/s, NVLink 2 300 GB/s. V100 has no bf16 or tf32 units: those peaks are 0, and
 *                    the fp16 slot holds the tensor peak, which only an fp16 plan can use.
 *   L40S             NVIDIA L40S datasheet (2023): FP32 91.6, TF32 183, BF16/FP16 362.05, 48 GB GDDR6 at
 *                    864 GB/s, PCIe Gen4 x16 64 GB/s bidirectional.
 *   P100 SXM2 16GB   NVIDIA Tesla P100 datasheet (2016): FP32 10.6, FP16 21.2 (no tensor cores), 16 GB
 *                    HBM2 at 732 GB/s, NVLink 1 160 GB/s.
 *   DGX H100         NVIDIA DGX H100 datasheet (2023): 8 H100 SXM5, 4 NVSwitches, 900 GB/s GPU-to-GPU,
 *                    2 Xeon Platinum 8480C, 8 single-port ConnectX-7 at 400 Gb/s for the compute fabric.
 *   DGX H200         NVIDIA DGX H200 datasheet (2024): the DGX H100 with 8 H200 (1,128 GB in all).
 *   HGX H100 / H200  NVIDIA HGX datasheet (2024): the 8-GPU NVSwitch baseboard; servers built on it pair
 *                    each GPU with a 400 Gb/s NIC, as the DGX does.
 *   DGX A100         NVIDIA DGX A100 datasheet (640 GB model, 2021): 8 A100 80GB, 6 NVSwitches, 600 GB/s,
 *                    2 AMD EPYC 7742, 8 single-port ConnectX-6 at 200 Gb/s (HDR).
 *   DGX-2            NVIDIA DGX-2 datasheet (2018): 16 V100 32GB, 12 NVSwitches, 2 Xeon Platinum 8168,
 *                    8 x 100 Gb/s InfiniBand EDR / 100 GbE.
 *   ConnectX-7 400 Gb/s = 50 GB/s per direction; ConnectX-6 HDR 200 Gb/s = 25 GB/s; EDR 100 Gb/s = 12.5. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "topology_internal.h"

#define TFLOPS 1e12
#define GB 1e9

static const brg_device_preset device_presets[] = {
    {"h100-sxm", "NVIDIA H100 SXM5 80GB", 80000000000ULL,
     {66.9 * TFLOPS, 494.7 * TFLOPS, 989.4 * TFLOPS, 989.4 * TFLOPS}, 3350 * GB, BRG_LINK_NVSWITCH, 450 * GB},
    {"h200", "NVIDIA H200 SXM 141GB", 141000000000ULL,
     {66.9 * TFLOPS, 494.7 * TFLOPS, 989.4 * TFLOPS, 989.4 * TFLOPS}, 4800 * GB, BRG_LINK_NVSWITCH, 450 * GB},
    {"a100-sxm-80gb", "NVIDIA A100 SXM4 80GB", 80000000000ULL,
     {19.5 * TFLOPS, 156 * TFLOPS, 312 * TFLOPS, 312 * TFLOPS}, 2039 * GB, BRG_LINK_NVSWITCH, 300 * GB},
    {"v100-sxm2-32gb", "NVIDIA Tesla V100 SXM2 32GB", 32000000000ULL,
     {15.7 * TFLOPS, 0, 0, 125 * TFLOPS}, 900 * GB, BRG_LINK_NVLINK, 150 * GB},
    {"l40s", "NVIDIA L40S", 48000000000ULL,
     {91.6 * TFLOPS, 183 * TFLOPS, 362.05 * TFLOPS, 362.05 * TFLOPS}, 864 * GB, BRG_LINK_PCIE_HOST, 32 * GB},
    {"p100-sxm2", "NVIDIA Tesla P100 SXM2 16GB", 16000000000ULL,
     {10.6 * TFLOPS, 0, 0, 21.2 * TFLOPS}, 732 * GB, BRG_LINK_NVLINK, 80 * GB},
};

static const brg_node_preset node_presets[] = {
    {"dgx-h100", "NVIDIA DGX H100: 8 H100 SXM5 on 4 NVSwitches, 2 sockets, 8 x 400 Gb/s ConnectX-7",
     "h100-sxm", 8, 2, BRG_LINK_NVSWITCH, 450 * GB, 0, 8, 50 * GB},
    {"hgx-h100", "NVIDIA HGX H100 8-GPU server: 8 H100 SXM5 on NVSwitch, 2 sockets, 8 x 400 Gb/s NICs",
     "h100-sxm", 8, 2, BRG_LINK_NVSWITCH, 450 * GB, 0, 8, 50 * GB},
    {"dgx-h200", "NVIDIA DGX H200: 8 H200 on 4 NVSwitches, 2 sockets, 8 x 400 Gb/s ConnectX-7",
     "h200", 8, 2, BRG_LINK_NVSWITCH, 450 * GB, 0, 8, 50 * GB},
    {"hgx-h200", "NVIDIA HGX H200 8-GPU server: 8 H200 on NVSwitch, 2 sockets, 8 x 400 Gb/s NICs",
     "h200", 8, 2, BRG_LINK_NVSWITCH, 450 * GB, 0, 8, 50 * GB},
    {"dgx-a100", "NVIDIA DGX A100 (640 GB): 8 A100 80GB on 6 NVSwitches, 2 sockets, 8 x 200 Gb/s ConnectX-6",
     "a100-sxm-80gb", 8, 2, BRG_LINK_NVSWITCH, 300 * GB, 0, 8, 25 * GB},
    {"dgx-2", "NVIDIA DGX-2: 16 V100 32GB on 12 NVSwitches, 2 sockets, 8 x 100 Gb/s EDR InfiniBand",
     "v100-sxm2-32gb", 16, 2, BRG_LINK_NVSWITCH, 150 * GB, 0, 8, 12.5 * GB},
    {"pcie-8gpu", "PCIe-only 8-GPU server: 8 L40S (PCIe Gen4 x16), two per PCIe switch, two switches per "
     "socket, one 200 Gb/s NIC per switch (a representative layout, not one vendor's product)",
     "l40s", 8, 2, BRG_LINK_PCIE_SWITCH, 32 * GB, 2, 4, 25 * GB},
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

int brg_device_preset_count(void) { return COUNT(device_presets); }

const brg_device_preset *brg_device_preset_at(int index) {
    return index >= 0 && index < COUNT(device_presets) ? &device_presets[index] : NULL;
}

const brg_device_preset *brg_device_preset_find(const char *name) {
    for (int i = 0; name && i < COUNT(device_presets); i++)
        if (strcasecmp(name, device_presets[i].name) == 0) return &device_presets[i];
    return NULL;
}

int brg_node_preset_count(void) { return COUNT(node_presets); }

const brg_node_preset *brg_node_preset_at(int index) {
    return index >= 0 && index < COUNT(node_presets) ? &node_presets[index] : NULL;
}

const brg_node_preset *brg_node_preset_find(const char *name) {
    for (int i = 0; name && i < COUNT(node_presets); i++)
        if (strcasecmp(name, node_presets[i].name) == 0) return &node_presets[i];
    return NULL;
}

static int contains(const char *haystack, const char *needle) { return strcasestr(haystack, needle) != NULL; }

/* Model strings as the CUDA runtime, NVML and hwloc give them. SXM parts only: the PCIe and NVL variants
 * run at lower clocks and power, so they get no preset rather than a wrong one. */
const brg_device_preset *brg_device_preset_match(const char *model) {
    if (!model || !*model) return NULL;
    const brg_device_preset *exact = brg_device_preset_find(model);
    if (exact) return exact;
    int pcie = contains(model, "pcie") || contains(model, " nvl");
    if (contains(model, "h200") && !pcie) return brg_device_preset_find("h200");
    if (contains(model, "h100") && !pcie) return brg_device_preset_find("h100-sxm");
    if (contains(model, "a100") && contains(model, "sxm")) return brg_device_preset_find("a100-sxm-80gb");
    if (contains(model, "v100") && contains(model, "sxm")) return brg_device_preset_find("v100-sxm2-32gb");
    if (contains(model, "l40s")) return brg_device_preset_find("l40s");
    if (contains(model, "p100") && contains(model, "sxm")) return brg_device_preset_find("p100-sxm2");
    return NULL;
}

void brg__device_apply_preset(brg__device *d, const brg_device_preset *p) {
    d->kind = BRG_DEVICE_GPU;
    brg__copy_string(d->preset, sizeof d->preset, p->name);
    if (!d->model[0]) brg__copy_string(d->model, sizeof d->model, p->model);
    if (!d->memory_bytes) d->memory_bytes = p->memory_bytes;
    memcpy(d->peak_flops, p->peak_flops, sizeof d->peak_flops);
    d->memory_bandwidth = p->memory_bandwidth;
    d->figures = BRG_FIGURE_PRESET;
}

/* A conservative core: 256-bit FMA at about 2 GHz reaches 64 GFLOP/s in theory and OpenBLAS sgemm about
 * half of it on older parts; a core streams about 10 GB/s from memory. The probe replaces both. */
#define CPU_CORE_FLOPS 32e9
#define CPU_CORE_BANDWIDTH 10e9

void brg__cpu_estimate(brg__device *d, int cores) {
    d->kind = BRG_DEVICE_CPU;
    d->cores = cores;
    memset(d->peak_flops, 0, sizeof d->peak_flops);
    d->peak_flops[BRG_PRECISION_FP32] = CPU_CORE_FLOPS * cores;
    d->memory_bandwidth = CPU_CORE_BANDWIDTH * cores;
    d->figures = BRG_FIGURE_ESTIMATED;
}

/* ---- node presets -------------------------------------------------------------------------------- */

static brg_link preset_gpu_link(const brg_node_preset *p, int a, int b) {
    if (p->gpu_link != BRG_LINK_PCIE_SWITCH)
        return (brg_link){p->gpu_link, p->gpu_link_bandwidth, BRG_TOPOLOGY_LATENCY_NVLINK};
    int socket_a = a * p->sockets / p->gpus, socket_b = b * p->sockets / p->gpus;
    if (a / p->gpus_per_pcie_switch == b / p->gpus_per_pcie_switch)
        return (brg_link){BRG_LINK_PCIE_SWITCH, p->gpu_link_bandwidth, BRG_TOPOLOGY_LATENCY_PCIE_SWITCH};
    if (socket_a == socket_b)
        return (brg_link){BRG_LINK_PCIE_HOST, p->gpu_link_bandwidth, BRG_TOPOLOGY_LATENCY_PCIE_HOST};
    double bw = p->gpu_link_bandwidth < BRG_TOPOLOGY_SOCKET_BANDWIDTH ? p->gpu_link_bandwidth
                                                                       : BRG_TOPOLOGY_SOCKET_BANDWIDTH;
    return (brg_link){BRG_LINK_CROSS_SOCKET, bw, BRG_TOPOLOGY_LATENCY_CROSS_SOCKET};
}

brg_status brg__add_spread_nics(brg_topology *t, int count, double bandwidth, brg_error *err) {
    int devices = t->device_count;
    for (int k = 0; k < count; k++) {
        /* NIC k serves the devices g with g * count / devices == k; it sits by the first of them. */
        int first = (k * devices + count - 1) / count;
        brg__nic nic = {.node = 0, .numa_node = first < devices ? t->devices[first].numa_node : -1,
                        .bandwidth = bandwidth};
        snprintf(nic.name, sizeof nic.name, "nic%d", k);
        BRG__CHECK(brg__topology_push_nic(t, &nic, NULL, err));
    }
    for (int g = 0; count > 0 && g < devices; g++) t->devices[g].nearest_nic = g * count / devices;
    return BRG_OK;
}

brg_status brg__node_from_preset(brg_topology **out, const brg_node_preset *p, int nic_count,
                                 double nic_bandwidth, const char *node_name, brg_error *err) {
    const brg_device_preset *gpu = brg_device_preset_find(p->device_preset);
    brg_topology *t;
    BRG__CHECK(brg__topology_alloc(&t, p->gpus, 1, NULL, err));
    for (int g = 0; g < p->gpus; g++) {
        brg__device *d = &t->devices[g];
        snprintf(d->name, sizeof d->name, "gpu%d", g);
        brg__device_apply_preset(d, gpu);
        d->numa_node = d->package = g * p->sockets / p->gpus;
        for (int h = 0; h < p->gpus; h++)
            if (h != g) *brg__link_at(t, g, h) = preset_gpu_link(p, g, h);
    }
    brg__topology_set_self_links(t);
    brg_status s = brg__add_spread_nics(t, nic_count < 0 ? p->nics : nic_count,
                                        nic_bandwidth < 0 ? p->nic_bandwidth : nic_bandwidth, err);
    if (s != BRG_OK) {
        brg_topology_destroy(t);
        return s;
    }
    brg__copy_string(t->nodes[0].name, sizeof t->nodes[0].name, node_name);
    snprintf(t->nodes[0].source, sizeof t->nodes[0].source, "preset %s", p->name);
    snprintf(t->source, sizeof t->source, "preset %s", p->name);
    t->final = 1;
    *out = t;
    return BRG_OK;
}
