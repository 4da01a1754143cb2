/* Live discovery: this machine through hwloc, its GPUs through the CUDA runtime when the build has it.
 *
 * Debian's hwloc has no CUDA or NVML plugin, so GPUs appear only as PCI devices: each CUDA device is
 * matched to its PCI object by bus id. The CUDA runtime says whether two GPUs reach each other
 * peer-to-peer, and native atomics over the link mark NVLink (PCIe peer access has none); it does not
 * say how many links, so NVLink bandwidth comes from the device preset. */
#include <stdlib.h>
#include <string.h>

#include "brigade_config.h"
#include "topology_internal.h"

#if BRG_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#if BRG_HAVE_CUDA

/* FP32 lanes per SM by compute capability, for GPUs no preset knows. */
static int cores_per_sm(int major, int minor) {
    switch (major) {
    case 3:
        return 192;
    case 6:
        return minor == 0 ? 64 : 128;
    case 7:
        return 64;
    case 8:
        return minor == 0 ? 64 : 128;
    default:
        return 128;
    }
}

static int device_attribute(enum cudaDeviceAttr attr, int device) {
    int v = 0;
    if (cudaDeviceGetAttribute(&v, attr, device) != cudaSuccess) v = 0;
    return v;
}

static void cuda_estimate(brg__gpu_found *g, const struct cudaDeviceProp *prop, int device) {
    double clock_hz = 1e3 * device_attribute(cudaDevAttrClockRate, device);
    double memory_clock_hz = 1e3 * device_attribute(cudaDevAttrMemoryClockRate, device);
    double bus_bits = device_attribute(cudaDevAttrGlobalMemoryBusWidth, device);
    g->estimated_fp32 = 2.0 * prop->multiProcessorCount * cores_per_sm(prop->major, prop->minor) * clock_hz;
    g->estimated_memory_bandwidth = 2.0 * memory_clock_hz * bus_bits / 8; /* double data rate */
}

static void cuda_gpu(hwloc_topology_t hw, brg__gpu_found *g, int device) {
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) == cudaSuccess) {
        brg__copy_string(g->model, sizeof g->model, prop.name);
        g->memory_bytes = prop.totalGlobalMem;
        cuda_estimate(g, &prop, device);
    }
    char bus[64] = "";
    if (cudaDeviceGetPCIBusId(bus, sizeof bus, device) != cudaSuccess) bus[0] = '\0';
    g->pci = bus[0] ? hwloc_get_pcidev_by_busidstring(hw, bus) : NULL;
    if (g->pci) brg__pci_bus_id(g->pci, g->pci_bus_id, sizeof g->pci_bus_id);
    else brg__copy_string(g->pci_bus_id, sizeof g->pci_bus_id, bus);
}

static brg__peer_hint cuda_peer(const brg__gpu_found *gpus, int g, int h) {
    int access = 0, atomics = 0;
    if (cudaDeviceCanAccessPeer(&access, g, h) != cudaSuccess) access = 0;
    if (access && cudaDeviceGetP2PAttribute(&atomics, cudaDevP2PAttrNativeAtomicSupported, g, h) != cudaSuccess)
        atomics = 0;
    const brg_device_preset *p = brg_device_preset_match(gpus[g].model);
    if (!access || !atomics || !p || (p->peer_link != BRG_LINK_NVLINK && p->peer_link != BRG_LINK_NVSWITCH))
        return (brg__peer_hint){BRG_LINK_SELF, 0.0}; /* the PCI tree decides */
    return (brg__peer_hint){p->peer_link, p->peer_bandwidth};
}

static brg_status cuda_gpus(hwloc_topology_t hw, brg__hwloc_request *req, brg__peer_hint **hints, brg_error *err) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
        (void)cudaGetLastError(); /* no driver or no GPU: CPU devices */
        return BRG_OK;
    }
    brg__gpu_found *gpus = brg__calloc((size_t)n, sizeof *gpus);
    brg__peer_hint *peer = brg__calloc((size_t)n * (size_t)n, sizeof *peer);
    if (!gpus || !peer) {
        free(gpus);
        free(peer);
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "live topology: out of memory");
    }
    for (int g = 0; g < n; g++) cuda_gpu(hw, &gpus[g], g);
    for (int g = 0; g < n; g++)
        for (int h = 0; h < n; h++)
            if (g != h) peer[g * n + h] = cuda_peer(gpus, g, h);
    req->gpus = gpus;
    req->gpu_count = n;
    *hints = peer;
    return BRG_OK;
}

#else

static brg_status cuda_gpus(hwloc_topology_t hw, brg__hwloc_request *req, brg__peer_hint **hints, brg_error *err) {
    (void)hw, (void)req, (void)hints, (void)err;
    return BRG_OK;
}

#endif

static brg_status load_hwloc_live(hwloc_topology_t *out, brg_error *err) {
    hwloc_topology_t hw;
    brg__hwloc_pin_plugins();
    if (hwloc_topology_init(&hw) != 0)
        return brg__error_set(err, BRG_ERR_BACKEND, "live topology: hwloc_topology_init failed");
    hwloc_topology_set_io_types_filter(hw, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    /* hwloc's Linux backend reads the PCI tree from sysfs by itself; the libpciaccess component would
     * only repeat it (and leaks on the way), and the OpenCL and GL components would start drivers. */
    hwloc_topology_set_components(hw, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "pci");
    hwloc_topology_set_components(hw, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "opencl");
    hwloc_topology_set_components(hw, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "gl");
    if (hwloc_topology_load(hw) != 0) {
        hwloc_topology_destroy(hw);
        return brg__error_set(err, BRG_ERR_BACKEND, "live topology: hwloc could not read this machine");
    }
    *out = hw;
    return BRG_OK;
}

brg_status brg_topology_load_live(brg_topology **out, const brg_topology_options *opts, brg_error *err) {
    if (!out) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_topology_load_live: NULL argument");
    brg_topology_options o;
    BRG__CHECK(brg__topology_options_check(opts, &o, err));
    hwloc_topology_t hw = NULL;
    BRG__CHECK(load_hwloc_live(&hw, err));
    brg__hwloc_request req = {.hw = hw, .source = "live", .opts = &o, .live = 1};
    brg__peer_hint *hints = NULL;
    brg_status s = BRG_OK;
    if (!(o.flags & BRG_TOPOLOGY_IGNORE_GPUS)) s = cuda_gpus(hw, &req, &hints, err);
    req.hints = hints;
    if (s == BRG_OK && req.gpu_count == 0 && (o.flags & BRG_TOPOLOGY_PROBE_CPU))
        s = brg__cpu_probe(&req.probed_core_flops, &req.probed_core_bandwidth, err);
    if (s == BRG_OK) s = brg__topology_from_hwloc(out, &req, err);
    free(req.gpus);
    free(hints);
    hwloc_topology_destroy(hw);
    return s;
}
