// Shared by every CUDA source: the check macros (CUDA runtime, cuBLAS, NCCL, brg_status), element
// conversions between fp32 and bf16, deterministic warp and block reductions, and launch sizing.
//
// The check macros write a message naming the failed call, the library's own error text and the source
// line into `msg` (BRG_ERROR_MESSAGE_MAX bytes; may be NULL) and return a brg_status from the enclosing
// function; the _GOTO forms store the status and jump to a cleanup label instead.
#pragma once
#include <cstdint>
#include <cstdio>
#include <initializer_list>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "brigade/status.h"
extern "C" {
#include "internal.h"
}

static inline brg_status brg__cuda_status_of(cudaError_t e) {
    return e == cudaErrorMemoryAllocation ? BRG_ERR_OUT_OF_MEMORY : BRG_ERR_BACKEND;
}

#define BRG__CUDA_FAIL_MESSAGE(msg, what, text)                                                        \
    ((msg) ? (void)snprintf((msg), BRG_ERROR_MESSAGE_MAX, "%s failed: %s (%s:%d)", (what), (text),   \
                            __FILE__, __LINE__)                                                        \
           : (void)0)

#define BRG__CUDA_CHECK(call, msg)                                                                     \
    do {                                                                                               \
        cudaError_t brg__e_ = (call);                                                                  \
        if (brg__e_ != cudaSuccess) {                                                                  \
            BRG__CUDA_FAIL_MESSAGE(msg, #call, cudaGetErrorString(brg__e_));                           \
            return brg__cuda_status_of(brg__e_);                                                       \
        }                                                                                              \
    } while (0)

#define BRG__CUDA_CHECK_GOTO(status, call, msg, label)                                                 \
    do {                                                                                               \
        cudaError_t brg__e_ = (call);                                                                  \
        if (brg__e_ != cudaSuccess) {                                                                  \
            BRG__CUDA_FAIL_MESSAGE(msg, #call, cudaGetErrorString(brg__e_));                           \
            (status) = brg__cuda_status_of(brg__e_);                                                   \
            goto label;                                                                                \
        }                                                                                              \
    } while (0)

/* After a kernel launch: a bad configuration shows up here, a fault in a later synchronizing call. */
#define BRG__LAUNCH_CHECK(kernel_name, msg)                                                            \
    do {                                                                                               \
        cudaError_t brg__e_ = cudaGetLastError();                                                      \
        if (brg__e_ != cudaSuccess) {                                                                  \
            BRG__CUDA_FAIL_MESSAGE(msg, "launching " kernel_name, cudaGetErrorString(brg__e_));         \
            return brg__cuda_status_of(brg__e_);                                                       \
        }                                                                                              \
    } while (0)

#define BRG__CUBLAS_CHECK(call, msg)                                                                   \
    do {                                                                                               \
        cublasStatus_t brg__b_ = (call);                                                               \
        if (brg__b_ != CUBLAS_STATUS_SUCCESS) {                                                        \
            BRG__CUDA_FAIL_MESSAGE(msg, #call, cublasGetStatusString(brg__b_));                        \
            return brg__b_ == CUBLAS_STATUS_ALLOC_FAILED ? BRG_ERR_OUT_OF_MEMORY : BRG_ERR_BACKEND;    \
        }                                                                                              \
    } while (0)

#define BRG__CUBLAS_CHECK_GOTO(status, call, msg, label)                                               \
    do {                                                                                               \
        cublasStatus_t brg__b_ = (call);                                                               \
        if (brg__b_ != CUBLAS_STATUS_SUCCESS) {                                                        \
            BRG__CUDA_FAIL_MESSAGE(msg, #call, cublasGetStatusString(brg__b_));                        \
            (status) = brg__b_ == CUBLAS_STATUS_ALLOC_FAILED ? BRG_ERR_OUT_OF_MEMORY : BRG_ERR_BACKEND; \
            goto label;                                                                                \
        }                                                                                              \
    } while (0)

#define BRG__NCCL_CHECK(call, msg)                                                                     \
    do {                                                                                               \
        ncclResult_t brg__n_ = (call);                                                                 \
        if (brg__n_ != ncclSuccess && brg__n_ != ncclInProgress) {                                     \
            BRG__CUDA_FAIL_MESSAGE(msg, #call, ncclGetErrorString(brg__n_));                           \
            return BRG_ERR_TRANSPORT;                                                                  \
        }                                                                                              \
    } while (0)

#define BRG__NCCL_CHECK_GOTO(status, call, msg, label)                                                 \
    do {                                                                                               \
        ncclResult_t brg__n_ = (call);                                                                 \
        if (brg__n_ != ncclSuccess && brg__n_ != ncclInProgress) {                                     \
            BRG__CUDA_FAIL_MESSAGE(msg, #call, ncclGetErrorString(brg__n_));                           \
            (status) = BRG_ERR_TRANSPORT;                                                              \
            goto label;                                                                                \
        }                                                                                              \
    } while (0)

/* A precondition of a launcher (a shape, a size): the message names the launcher and what is wrong. */
#define BRG__REQUIRE(cond, msg, ...)                                                                   \
    do {                                                                                               \
        if (!(cond)) return brg__message_set((msg), BRG_ERROR_MESSAGE_MAX, BRG_ERR_SHAPE, __VA_ARGS__); \
    } while (0)

/* ---- elements ---- */

typedef __nv_bfloat16 brg__bf16;

template <typename T> __host__ __device__ __forceinline__ float brg__to_float(T v);
template <> __host__ __device__ __forceinline__ float brg__to_float<float>(float v) { return v; }
template <> __host__ __device__ __forceinline__ float brg__to_float<brg__bf16>(brg__bf16 v) {
    return __bfloat162float(v);
}

template <typename T> __host__ __device__ __forceinline__ T brg__from_float(float v);
template <> __host__ __device__ __forceinline__ float brg__from_float<float>(float v) { return v; }
template <> __host__ __device__ __forceinline__ brg__bf16 brg__from_float<brg__bf16>(float v) {
    return __float2bfloat16_rn(v);
}

/* ---- vector access ----
 * E consecutive elements as floats: with E = 8, one 16-byte load or store for bf16, two for fp32 (the
 * pointer 16-byte aligned); with E = 1, one element. Kernels take E as a template parameter and their
 * launchers pick 8 where brg__vectorized says so. */
#define BRG__VECTOR 8

/* Whether runs of n elements at each of these addresses (NULL: none) go as 16-byte vectors: n a multiple of
 * 8 (so rows of n stay aligned) and every address 16-byte aligned. */
static inline bool brg__vectorized(int64_t n, std::initializer_list<const void *> addresses) {
    if (n % BRG__VECTOR != 0) return false;
    for (const void *p : addresses)
        if (p && ((uintptr_t)p & 15u) != 0) return false;
    return true;
}

template <int E, typename T> __device__ __forceinline__ void brg__load(const T *p, float (&v)[E]) {
    if constexpr (E == 8 && sizeof(T) == 2) {
        uint4 raw = *reinterpret_cast<const uint4 *>(p);
        const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&raw);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float2 f = __bfloat1622float2(h[j]);
            v[2 * j] = f.x;
            v[2 * j + 1] = f.y;
        }
    } else if constexpr (E == 8 && sizeof(T) == 4) {
        float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
#pragma unroll
        for (int j = 0; j < E; j++) v[j] = brg__to_float(p[j]);
    }
}

/* Rounds to T as brg__from_float does, element by element. */
template <int E, typename T> __device__ __forceinline__ void brg__store(T *p, const float (&v)[E]) {
    if constexpr (E == 8 && sizeof(T) == 2) {
        uint4 raw;
        __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&raw);
#pragma unroll
        for (int j = 0; j < 4; j++) h[j] = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
        *reinterpret_cast<uint4 *>(p) = raw;
    } else if constexpr (E == 8 && sizeof(T) == 4) {
        reinterpret_cast<float4 *>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
        reinterpret_cast<float4 *>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
#pragma unroll
        for (int j = 0; j < E; j++) p[j] = brg__from_float<T>(v[j]);
    }
}

/* ---- reductions in a fixed order (the same bits on every run, whatever the placement) ---- */

/* Sum over the 32 lanes by a butterfly: every lane ends with the same value. */
template <typename A> __device__ __forceinline__ A brg__warp_sum(A v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float brg__warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

/* Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets the total.
 * `shared` holds 32 values. Warps first, then the first warp over the warp totals. */
template <typename A> __device__ __forceinline__ A brg__block_sum(A v, A *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = brg__warp_sum(v);
    __syncthreads(); /* shared may still be read by a previous call */
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    A total = lane < warps ? shared[lane] : A(0);
    return brg__warp_sum(total);
}

__device__ __forceinline__ float brg__block_max(float v, float *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = brg__warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float m = lane < warps ? shared[lane] : -INFINITY;
    return brg__warp_max(m);
}

/* ---- launch sizing ---- */

/* Blocks for n elements at `threads` per block, capped: kernels loop over the rest (grid stride). */
static inline unsigned brg__grid_for(int64_t n, int threads) {
    int64_t blocks = (n + threads - 1) / threads;
    if (blocks < 1) blocks = 1;
    return (unsigned)(blocks > 65536 ? 65536 : blocks);
}
