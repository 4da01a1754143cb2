// Placeholder translation unit replaced by the CUDA backend.
extern "C" int brg__cuda_device_count(void);
#include <cuda_runtime.h>
extern "C" int brg__cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}
