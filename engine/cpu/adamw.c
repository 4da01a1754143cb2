/* AdamW with decoupled weight decay (PyTorch's AdamW; the update llm.c uses). Every element is updated
 * on its own, so the pieces of ADAMW_PIECE elements run on the threads without changing a result. */
#include <math.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "cpu/kernels.h"

/* Elements per pass: the moments of one chunk stay in L1 between the three loops below. */
#define ADAMW_CHUNK 512
/* Elements per piece of parallel work: whole chunks. */
#define ADAMW_PIECE (32 * ADAMW_CHUNK)

/* x = sqrt(x) in place. The compiler keeps sqrtf scalar (it may set errno), so the vector form is
 * spelled out; sqrtps rounds exactly as sqrtf does. */
static void sqrt_in_place(float *x, int64_t n) {
    int64_t i = 0;
#if defined(__SSE__)
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
    for (; i < n; i++) x[i] = sqrtf(x[i]);
}

static BRG__CPU_VECTOR_CLONES void adamw_moments(float *restrict m, float *restrict v, float *restrict v_hat,
                                                 const float *restrict grad, int64_t n, float beta1, float beta2,
                                                 float v_correction) {
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        v_hat[i] = v[i] * v_correction;
    }
}

static BRG__CPU_VECTOR_CLONES void adamw_apply(float *restrict param, const float *restrict m,
                                               const float *restrict v_hat_sqrt, int64_t n, float lr,
                                               float m_correction, float eps, float weight_decay) {
    for (int64_t i = 0; i < n; i++)
        param[i] -= lr * (m[i] * m_correction / (v_hat_sqrt[i] + eps) + weight_decay * param[i]);
}

typedef struct adamw_job {
    float *param, *m, *v;
    const float *grad;
    int64_t n;
    float lr, beta1, beta2, eps, weight_decay, m_correction, v_correction;
} adamw_job;

static void adamw_piece(void *ctx, int64_t piece, float *scratch) {
    const adamw_job *job = ctx;
    int64_t begin, end;
    brg__cpu_piece_range(piece, ADAMW_PIECE, job->n, &begin, &end);
    float root[ADAMW_CHUNK]; // sqrt(v_hat) of one chunk
    for (int64_t i0 = begin; i0 < end; i0 += ADAMW_CHUNK) {
        int64_t len = end - i0 < ADAMW_CHUNK ? end - i0 : ADAMW_CHUNK;
        adamw_moments(job->m + i0, job->v + i0, root, job->grad + i0, len, job->beta1, job->beta2, job->v_correction);
        sqrt_in_place(root, len);
        adamw_apply(job->param + i0, job->m + i0, root, len, job->lr, job->m_correction, job->eps, job->weight_decay);
    }
}

void brg__cpu_adamw(float *param, const float *grad, float *m, float *v, int64_t n, float lr, float beta1,
                    float beta2, float eps, float weight_decay, int step) {
    /* Bias corrections 1 / (1 - beta^step), once per call. */
    adamw_job job = {.param = param, .m = m, .v = v, .grad = grad, .n = n, .lr = lr, .beta1 = beta1, .beta2 = beta2,
                     .eps = eps, .weight_decay = weight_decay,
                     .m_correction = 1.0f / (1.0f - powf(beta1, (float)step)),
                     .v_correction = 1.0f / (1.0f - powf(beta2, (float)step))};
    brg__cpu_parallel(brg__cpu_pieces(n, ADAMW_PIECE), adamw_piece, &job);
}
