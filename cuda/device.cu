// Device discovery and memory helpers.
#include "common.cuh"
#include "cuda.h"

extern "C" int brg__cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error
        return 0;
    }
    return n;
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
