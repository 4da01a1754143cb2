// AdamW, eight elements a thread in 16-byte vectors where the lengths and addresses allow, else one;
// fp32 parameters and moments (the master copy in mixed precision), and the parameters' bf16 copy
// rewritten in the same pass when there is one.
#include <cmath>

#include "backend.cuh"
#include "cuda.h"

// param, m, v (n); grad (n); shadow (n) or NULL. E elements a thread at a time (16-byte vectors with E = 8).
template <int E>
__global__ static void adamw_kernel(float *param, const float *grad, float *m, float *v, brg__bf16 *shadow, int64_t n,
                                    float lr, float beta1, float beta2, float m_correction, float v_correction,
                                    float eps, float weight_decay) {
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * E; i < n;
         i += (int64_t)gridDim.x * blockDim.x * E) {
        float g[E], mi[E], vi[E], p[E];
        brg__load<E>(grad + i, g);
        brg__load<E>(m + i, mi);
        brg__load<E>(v + i, vi);
        brg__load<E>(param + i, p);
#pragma unroll
        for (int k = 0; k < E; k++) {
            mi[k] = beta1 * mi[k] + (1.0f - beta1) * g[k];
            vi[k] = beta2 * vi[k] + (1.0f - beta2) * g[k] * g[k];
            float root = sqrtf(vi[k] * v_correction);
            p[k] -= lr * (mi[k] * m_correction / (root + eps) + weight_decay * p[k]);
        }
        brg__store<E>(m + i, mi);
        brg__store<E>(v + i, vi);
        brg__store<E>(param + i, p);
        if (shadow) brg__store<E>(shadow + i, p);
    }
}

extern "C" brg_status brg__cuda_adamw(float *param, const float *grad, float *m, float *v, void *shadow, int64_t n,
                                      float lr, float beta1, float beta2, float eps, float weight_decay, int step,
                                      void *stream, char *msg) {
    if (n <= 0) return BRG_OK;
    BRG__REQUIRE(step >= 1, msg, "adamw: step %d (steps count from 1)", step);
    /* Bias corrections as the CPU backend computes them, so both give the same update. */
    float m_correction = 1.0f / (1.0f - powf(beta1, (float)step));
    float v_correction = 1.0f / (1.0f - powf(beta2, (float)step));
    const int threads = 256;
    cudaStream_t s = (cudaStream_t)stream;
    brg__bf16 *copy = (brg__bf16 *)shadow;
    if (brg__vectorized(n, {param, grad, m, v, copy}))
        adamw_kernel<BRG__VECTOR><<<brg__grid_for(n / BRG__VECTOR, threads), threads, 0, s>>>(
            param, grad, m, v, copy, n, lr, beta1, beta2, m_correction, v_correction, eps, weight_decay);
    else
        adamw_kernel<1><<<brg__grid_for(n, threads), threads, 0, s>>>(
            param, grad, m, v, copy, n, lr, beta1, beta2, m_correction, v_correction, eps, weight_decay);
    BRG__LAUNCH_CHECK("adamw", msg);
    return BRG_OK;
}
