/* GPU suite: each CUDA kernel against the CPU backend. Exits 77 (skipped) where brigade was built
 * without CUDA or no CUDA device is present. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "brigade_config.h"
#include "cpu/cpu.h"
#include "harness.h"
#if BRG_HAVE_CUDA
#include "cuda/cuda.h"
#endif

#if BRG_HAVE_CUDA
static void test_adamw_matches_cpu(void) {
    enum { N = 4099 };
    static float p_cpu[N], g[N], m_cpu[N], v_cpu[N], p_gpu[N], m_gpu[N], v_gpu[N];
    uint64_t seed = 3;
    for (int i = 0; i < N; i++) {
        p_cpu[i] = (float)((double)(seed = seed * 6364136223846793005ULL + 1) / 1.8e19 - 0.5);
        g[i] = (float)((double)(seed = seed * 6364136223846793005ULL + 1) / 1.8e19 - 0.5);
    }
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    float *dp = NULL, *dg = NULL, *dm = NULL, *dv = NULL;
    BRG_ASSERT_OK(brg__cuda_malloc((void **)&dp, sizeof p_cpu, msg), msg);
    BRG_ASSERT_OK(brg__cuda_malloc((void **)&dg, sizeof g, msg), msg);
    BRG_ASSERT_OK(brg__cuda_malloc((void **)&dm, sizeof m_cpu, msg), msg);
    BRG_ASSERT_OK(brg__cuda_malloc((void **)&dv, sizeof v_cpu, msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_device(dp, p_cpu, sizeof p_cpu, msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_device(dg, g, sizeof g, msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_device(dm, m_cpu, sizeof m_cpu, msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_device(dv, v_cpu, sizeof v_cpu, msg), msg);
    for (int step = 1; step <= 3; step++) {
        brg__cpu_adamw(p_cpu, g, m_cpu, v_cpu, N, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step);
        BRG_ASSERT_OK(brg__cuda_adamw(dp, dg, dm, dv, N, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, NULL, msg), msg);
    }
    BRG_ASSERT_OK(brg__cuda_copy_to_host(p_gpu, dp, sizeof p_gpu, msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_host(m_gpu, dm, sizeof m_gpu, msg), msg);
    BRG_ASSERT_OK(brg__cuda_copy_to_host(v_gpu, dv, sizeof v_gpu, msg), msg);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        worst = fmax(worst, fabs((double)p_gpu[i] - p_cpu[i]));
        worst = fmax(worst, fabs((double)m_gpu[i] - m_cpu[i]));
    }
    BRG_ASSERT_NEAR(worst, 0.0, 1e-6);
    brg__cuda_free(dp);
    brg__cuda_free(dg);
    brg__cuda_free(dm);
    brg__cuda_free(dv);
}
#endif

int main(int argc, char **argv) {
#if BRG_HAVE_CUDA
    if (brg__cuda_device_count() == 0) {
        printf("gpu: no CUDA device found; skipping the GPU suite\n");
        return BRG_TEST_SKIP;
    }
    static const brg_test_case cases[] = {
        {"adamw_matches_cpu", test_adamw_matches_cpu},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "gpu", cases);
#else
    (void)argc;
    (void)argv;
    printf("gpu: brigade was built without CUDA; skipping the GPU suite\n");
    return BRG_TEST_SKIP;
#endif
}
