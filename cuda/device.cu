// Device discovery and plain memory helpers.
#include "common.cuh"
#include "cuda.h"

static cudaError_t query_devices(int *n) {
    *n = 0;
    cudaError_t e = cudaGetDeviceCount(n);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no driver" error */
        *n = 0;
    }
    return e;
}

extern "C" int brg__cuda_device_count(void) {
    int n = 0;
    query_devices(&n);
    return n;
}

extern "C" const char *brg__cuda_no_device_reason(void) {
    int n = 0;
    cudaError_t e = query_devices(&n);
    return e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device";
}

extern "C" int brg__cuda_device_of_rank(int rank) {
    int n = brg__cuda_device_count();
    return n > 0 && rank >= 0 ? rank % n : 0;
}

extern "C" brg_status brg__cuda_device_name(int device, char *buf, size_t size) {
    cudaDeviceProp prop;
    if (device < 0 || device >= brg__cuda_device_count() || cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
        cudaGetLastError();
        if (size) buf[0] = '\0';
        return BRG_ERR_NO_DEVICE;
    }
    snprintf(buf, size, "%s", prop.name);
    return BRG_OK;
}

extern "C" brg_status brg__cuda_malloc(void **ptr, size_t bytes, char *msg) {
    BRG__CUDA_CHECK(cudaMalloc(ptr, bytes), msg);
    return BRG_OK;
}

extern "C" void brg__cuda_free(void *ptr) {
    if (ptr) cudaFree(ptr);
}

extern "C" brg_status brg__cuda_copy_to_device(void *dst, const void *src, size_t bytes, char *msg) {
    BRG__CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), msg);
    return BRG_OK;
}

extern "C" brg_status brg__cuda_copy_to_host(void *dst, const void *src, size_t bytes, char *msg) {
    BRG__CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), msg);
    return BRG_OK;
}

extern "C" brg_status brg__cuda_synchronize(char *msg) {
    BRG__CUDA_CHECK(cudaDeviceSynchronize(), msg);
    return BRG_OK;
}
