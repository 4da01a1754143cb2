/* A small layer over CUnit: one suite per executable, a NULL-terminated table of cases, the CUnit
 * summary printed at the end, and assertions that print both values when they fail. */
#ifndef BRIGADE_TEST_HARNESS_H
#define BRIGADE_TEST_HARNESS_H

#include <CUnit/CUnit.h>
#include <inttypes.h>
#include <stdio.h>

typedef struct brg_test_case {
    const char *name;
    void (*fn)(void);
} brg_test_case;

/* Exit status meson reads as "skipped" (GPU suites on a machine without a GPU). */
#define BRG_TEST_SKIP 77

/* Runs every case of `cases` (ended by {NULL, NULL}) as the suite `suite`, prints the CUnit summary,
 * and returns 0 when every assertion passed, 1 otherwise. argv[1], when given, runs only the case
 * with that name. */
int brg_test_main(int argc, char **argv, const char *suite, const brg_test_case *cases);

/* The directory of test fixtures (tests/fixtures in the source tree). */
const char *brg_test_fixtures(void);

/* A path under the build's scratch directory, unique per process: "<tmp>/<name>". Static storage per
 * call site is the caller's; `buf` receives the path. */
const char *brg_test_tmp_path(char *buf, size_t size, const char *name);

/* The outcome of running the brigade program. out and err hold everything it printed (NUL-terminated,
 * owned by the harness, valid until the next brg_test_run_brigade). */
typedef struct brg_test_run {
    int exit_code; /* 128 + signal when it was killed */
    char *out;
    char *err;
} brg_test_run;

/* The model of `spec` (brg_model_parse) built and finalized, *cfg its configuration; failures are assertion
 * failures (and NULL). */
struct brg_graph;
struct brg_model_config;
struct brg_graph *brg_test_build(const char *spec, struct brg_model_config *cfg);

/* A training run: `steps` steps of the synthetic task (data seed 3), then the fingerprint (collective under
 * MPI hosting). Failures are in status and error (not assertions: a caller may expect one). With keep, the
 * trainer is left to *keep (the caller destroys it; NULL when creation failed); else it is destroyed. */
#define BRG_TEST_MAX_STEPS 20
typedef struct brg_test_training {
    int status; /* a brg_status */
    char error[512];
    double losses[BRG_TEST_MAX_STEPS];
    uint64_t fingerprint;
} brg_test_training;
struct brg_train_options;
struct brg_trainer;
brg_test_training brg_test_train(const struct brg_graph *g, const struct brg_model_config *cfg,
                                 const struct brg_train_options *o, int steps, struct brg_trainer **keep);

/* The whole file at path, NUL-terminated (malloc'd: the caller frees it; "" when unreadable, NULL when out
 * of memory). */
char *brg_test_slurp(const char *path);

/* Runs $BRG_BIN (the built brigade program) with args (NULL-terminated, program name excluded). */
const brg_test_run *brg_test_run_brigade(const char *const *args);

#define BRG_ASSERT_EQ_INT(actual, expected)                                                          \
    do {                                                                                             \
        long long brg_a_ = (long long)(actual), brg_e_ = (long long)(expected);                      \
        if (brg_a_ != brg_e_)                                                                        \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #actual, \
                    brg_a_, #expected, brg_e_);                                                      \
        CU_ASSERT(brg_a_ == brg_e_);                                                                 \
    } while (0)

#define BRG_ASSERT_NEAR(actual, expected, tol)                                                       \
    do {                                                                                             \
        double brg_a_ = (double)(actual), brg_e_ = (double)(expected);                               \
        int brg_ok_ = fabs(brg_a_ - brg_e_) <= (double)(tol);                                        \
        if (!brg_ok_)                                                                                \
            fprintf(stderr, "%s:%d: %s == %.9g, expected %.9g within %g\n", __FILE__, __LINE__,      \
                    #actual, brg_a_, brg_e_, (double)(tol));                                         \
        CU_ASSERT(brg_ok_);                                                                          \
    } while (0)

/* A brg_status call that must succeed; prints the status name and `detail` (a message string) if not. */
#define BRG_ASSERT_OK(expr, detail)                                                                  \
    do {                                                                                             \
        brg_status brg_s_ = (expr);                                                                  \
        if (brg_s_ != BRG_OK)                                                                        \
            fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #expr,                \
                    brg_status_name(brg_s_), (detail));                                              \
        CU_ASSERT(brg_s_ == BRG_OK);                                                                 \
    } while (0)

#define BRG_ASSERT_STATUS(expr, expected)                                                            \
    do {                                                                                             \
        brg_status brg_s_ = (expr);                                                                  \
        if (brg_s_ != (expected))                                                                    \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", __FILE__, __LINE__, #expr,       \
                    brg_status_name(brg_s_), brg_status_name(expected));                             \
        CU_ASSERT(brg_s_ == (expected));                                                             \
    } while (0)

/* A string that must contain `needle`. */
#define BRG_ASSERT_CONTAINS(haystack, needle)                                                        \
    do {                                                                                             \
        const char *brg_h_ = (haystack);                                                             \
        int brg_ok_ = brg_h_ && strstr(brg_h_, (needle)) != NULL;                                    \
        if (!brg_ok_)                                                                                \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,           \
                    brg_h_ ? brg_h_ : "(null)", (needle));                                           \
        CU_ASSERT(brg_ok_);                                                                          \
    } while (0)

#endif
