/* The CPU backend's small helpers (exp, the lane reductions) and AdamW. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernels.h"
#include "cpu_test.h"
#include "harness.h"
#include "test_cases.h"

void test_exp(void) {
    double worst = 0;
    for (double x = -87.0; x <= 88.0; x += 0.001) {
        float xf = (float)x;
        double e = rel_error(brg__cpu_exp(xf), exp((double)xf), 0.0);
        if (e > worst) worst = e;
    }
    printf("\n    exp: worst relative error %.2e on [-87, 88] ", worst);
    CU_ASSERT(worst < 3e-7);
    BRG_ASSERT_NEAR(brg__cpu_exp(0.0f), 1.0, 0.0);
    BRG_ASSERT_NEAR(brg__cpu_exp(-100.0f), 0.0, 0.0);  // underflows to 0, not to a subnormal
    BRG_ASSERT_NEAR(brg__cpu_exp(-INFINITY), 0.0, 0.0); // softmax of a masked score
    CU_ASSERT(isfinite(brg__cpu_exp(1000.0f)));         // saturates at e^88
    BRG_ASSERT_NEAR(brg__cpu_exp(1000.0f) / exp(88.0), 1.0, 1e-6);
    CU_ASSERT(isnan(brg__cpu_exp(NAN)));                // a NaN stays one (the numerical checks find it)
    CU_ASSERT(isfinite(brg__cpu_exp(INFINITY)));        // saturates like any large argument
}

void test_reductions(void) {
    uint64_t rng = 7;
    float x[203], y[203];
    for (int i = 0; i < 203; i++) {
        x[i] = brg__rand_normal(&rng);
        y[i] = brg__rand_normal(&rng);
    }
    /* every tail length, and lengths below one row of lanes */
    for (int64_t n = 1; n <= 203; n += (n < 20 ? 1 : 23)) {
        double sum = 0, dot = 0, mx = -INFINITY, abs_sum = 0, abs_dot = 0;
        for (int64_t i = 0; i < n; i++) {
            sum += x[i];
            dot += (double)x[i] * y[i];
            mx = fmax(mx, x[i]);
            abs_sum += fabs(x[i]);
            abs_dot += fabs((double)x[i] * y[i]);
        }
        BRG_ASSERT_NEAR(brg__cpu_sum(x, n), sum, 1e-6 * abs_sum);
        BRG_ASSERT_NEAR(brg__cpu_dot(x, y, n), dot, 1e-6 * abs_dot);
        BRG_ASSERT_NEAR(brg__cpu_max(x, n), mx, 0.0);
    }
    /* the maximum in the tail, and in the last lane */
    float z[11] = {0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 9};
    BRG_ASSERT_NEAR(brg__cpu_max(z, 11), 9.0, 0.0);
    BRG_ASSERT_NEAR(brg__cpu_max(z, 10), 5.0, 0.0);
    float neg[3] = {-3, -1, -2};
    BRG_ASSERT_NEAR(brg__cpu_max(neg, 3), -1.0, 0.0);
}

void test_adamw(void) {
    /* lr 0.01, betas (0.9, 0.999), eps 1e-8, weight decay 0.1. Element 0, step 1: m = 0.1 * 0.1 = 0.01,
     * v = 0.001 * 0.01 = 1e-5; m_hat = 0.01 / 0.1 = 0.1, v_hat = 1e-5 / 0.001 = 0.01, sqrt 0.1; so
     * param = 1 - 0.01 * (0.1 / (0.1 + 1e-8) + 0.1 * 1) = 0.989000001. */
    float param[4] = {1.0f, -2.0f, 0.5f, 0.0f};
    float m[4] = {0}, v[4] = {0};
    const float grad1[4] = {0.1f, -0.2f, 0.0f, 1.0f};
    const float grad2[4] = {0.3f, 0.1f, -0.4f, -1.0f};
    const double param1[4] = {0.989000001, -1.988, 0.4995, -0.0099999999};
    const double param2[4] = {0.97883319, -1.98334863, 0.506441868, -0.00946368412};
    const double m2[4] = {0.039, -0.008, -0.04, -0.01};
    const double v2[4] = {9.999e-05, 4.996e-05, 0.00016, 0.001999};
    brg__cpu_adamw(param, grad1, m, v, 4, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, 1);
    for (int i = 0; i < 4; i++) BRG_ASSERT_NEAR(param[i], param1[i], 1e-6 * fabs(param1[i]) + 1e-8);
    brg__cpu_adamw(param, grad2, m, v, 4, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, 2);
    for (int i = 0; i < 4; i++) {
        BRG_ASSERT_NEAR(param[i], param2[i], 1e-6 * fabs(param2[i]) + 1e-8);
        BRG_ASSERT_NEAR(m[i], m2[i], 1e-6 * fabs(m2[i]) + 1e-9);
        /* 1 - 0.999f is 0.000999987 in float: v carries that 1.3e-5 relative offset (and v_hat's
         * correction, computed from the same float beta2, cancels it in the update). */
        BRG_ASSERT_NEAR(v[i], v2[i], 3e-5 * fabs(v2[i]) + 1e-12);
    }
    /* n = 0 touches nothing */
    brg__cpu_adamw(param, grad2, m, v, 0, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, 3);
    BRG_ASSERT_NEAR(param[0], param2[0], 1e-6);
}

void test_dims_and_gemm(void) {
    brg_graph *g;
    BRG_ASSERT_OK(brg_graph_create(&g), "");
    brg_tensor *x = brg_input(g, "x", BRG_F32, 3, (int64_t[]){BRG_BATCH, 3, 5});
    brg_tensor *y = brg_linear(g, x, 4, "fc");
    CU_ASSERT_FATAL(y != NULL);
    BRG_ASSERT_EQ_INT(brg__cpu_dim(x, 0, 7), 7);
    BRG_ASSERT_EQ_INT(brg__cpu_dim(x, 1, 7), 3);
    BRG_ASSERT_EQ_INT(brg__cpu_last_dim(x, 7), 5);
    BRG_ASSERT_EQ_INT(brg__cpu_rows(x, 7), 21);
    BRG_ASSERT_EQ_INT(brg__cpu_rows(x, 0), 0);

    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__op_call c = {.op = &g->ops[y->producer], .batch = 1, .msg = msg};
    BRG_ASSERT_OK(brg__cpu_check_blas_dims(&c, 2, (const int64_t[]){0, INT_MAX}), msg);
    BRG_ASSERT_STATUS(brg__cpu_check_blas_dims(&c, 2, (const int64_t[]){4, (int64_t)INT_MAX + 1}),
                      BRG_ERR_UNSUPPORTED);
    BRG_ASSERT_CONTAINS(msg, "fc");
    BRG_ASSERT_CONTAINS(msg, "2147483648");

    /* C (2, 3) = alpha op(A) op(B) + beta C, every transpose combination, against plain loops. */
    const float a[6] = {1, 2, 3, 4, 5, 6};       // (2, 3) or, transposed, (3, 2)
    const float b[9] = {1, 0, 2, -1, 3, 1, 0, 2, 1}; // (3, 3)
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float cm[6] = {1, 1, 1, 1, 1, 1};
            // m = 2, n = 3, k = 3: op(A) (2, 3) is a as stored (ld 3) or a^T of a (3, 2) (ld 2)
            brg__cpu_gemm(ta, tb, 2, 3, 3, 2.0f, a, ta ? 2 : 3, b, 3, 1.0f, cm, 3);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 3; j++) {
                    double s = 0;
                    for (int l = 0; l < 3; l++)
                        s += (double)(ta ? a[l * 2 + i] : a[i * 3 + l]) * (tb ? b[j * 3 + l] : b[l * 3 + j]);
                    BRG_ASSERT_NEAR(cm[i * 3 + j], 2.0 * s + 1.0, 1e-5);
                }
        }
    float untouched[1] = {5};
    brg__cpu_gemm(0, 0, 0, 1, 3, 1.0f, a, 3, b, 1, 0.0f, untouched, 1); // empty C: nothing to do
    BRG_ASSERT_NEAR(untouched[0], 5.0, 0.0);
    brg_graph_destroy(g);
}
