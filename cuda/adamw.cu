// AdamW, one thread per element; fp32 parameters and moments (the master copy in mixed precision).
#include "common.cuh"
#include "cuda.h"

__global__ static void adamw_kernel(float *param, const float *grad, float *m, float *v, int64_t n, float lr,
                                    float beta1, float beta2, float m_correction, float v_correction, float eps,
                                    float weight_decay) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grad[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float m_hat = mi * m_correction, v_hat = vi * v_correction;
    param[i] -= lr * (m_hat / (sqrtf(v_hat) + eps) + weight_decay * param[i]);
}

extern "C" brg_status brg__cuda_adamw(float *param, const float *grad, float *m, float *v, int64_t n, float lr,
                                      float beta1, float beta2, float eps, float weight_decay, int step,
                                      void *stream, char *msg) {
    if (n <= 0) return BRG_OK;
    const int block = 256;
    int64_t grid = (n + block - 1) / block;
        // Bias corrections as the CPU backend computes them, so both give the same update.
    float m_correction = 1.0f / (1.0f - powf(beta1, (float)step));
    float v_correction = 1.0f / (1.0f - powf(beta2, (float)step));
    adamw_kernel<<<(unsigned)grid, block, 0, (cudaStream_t)stream>>>(param, grad, m, v, n, lr, beta1, beta2, m_correction,
                                                                      v_correction, eps, weight_decay);
    BRG__CUDA_CHECK(cudaGetLastError(), msg);
    return BRG_OK;
}
