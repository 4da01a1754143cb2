// AdamW, one thread per element; fp32 parameters and moments (the master copy in mixed precision), and
// the parameters' bf16 copy rewritten in the same pass when there is one.
#include <cmath>

#include "backend.cuh"
#include "cuda.h"

// param, m, v (n); grad (n); shadow (n) or NULL.
__global__ static void adamw_kernel(float *param, const float *grad, float *m, float *v, brg__bf16 *shadow, int64_t n,
                                    float lr, float beta1, float beta2, float m_correction, float v_correction,
                                    float eps, float weight_decay) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = grad[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float root = sqrtf(vi * v_correction);
        float p = param[i];
        p -= lr * (mi * m_correction / (root + eps) + weight_decay * p);
        param[i] = p;
        if (shadow) shadow[i] = __float2bfloat16_rn(p);
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
    adamw_kernel<<<brg__grid_for(n, threads), threads, 0, (cudaStream_t)stream>>>(
        param, grad, m, v, (brg__bf16 *)shadow, n, lr, beta1, beta2, m_correction, v_correction, eps, weight_decay);
    BRG__LAUNCH_CHECK("adamw", msg);
    return BRG_OK;
}
