// Check macros for CUDA runtime calls inside launchers: on failure they write a message naming the call
// and the CUDA error, and return a brg_status from the enclosing function.
#pragma once
#include <cstdio>
#include <cuda_runtime.h>

#include "brigade/status.h"

#define BRG__CUDA_CHECK(call, msg)                                                                     \
    do {                                                                                               \
        cudaError_t brg__e_ = (call);                                                                  \
        if (brg__e_ != cudaSuccess) {                                                                  \
            if (msg) snprintf((msg), BRG_ERROR_MESSAGE_MAX, "%s failed: %s (%s:%d)", #call,             \
                              cudaGetErrorString(brg__e_), __FILE__, __LINE__);                        \
            return brg__e_ == cudaErrorMemoryAllocation ? BRG_ERR_OUT_OF_MEMORY : BRG_ERR_BACKEND;    \
        }                                                                                              \
    } while (0)
