// The CUDA backend behind the backend vtable (engine/runtime/backend.h).
#include "common.cuh"
#include "cuda.h"
extern "C" {
#include "runtime/backend.h"
}

extern "C" brg_status brg__backend_cuda_create(brg__backend **out, int device, int bf16, char *msg) {
    (void)out;
    (void)bf16;
    int n = brg__cuda_device_count();
    if (device >= n) {
        if (msg) snprintf(msg, BRG_ERROR_MESSAGE_MAX, "no CUDA device %d: %d visible", device, n);
        return BRG_ERR_NO_DEVICE;
    }
    if (msg) snprintf(msg, BRG_ERROR_MESSAGE_MAX, "the CUDA backend's kernels are not built yet");
    return BRG_ERR_UNSUPPORTED;
}
