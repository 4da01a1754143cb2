#include "harness.h"

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brigade/status.h"

int brg_test_main(int argc, char **argv, const char *suite, const brg_test_case *cases) {
    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "%s: CUnit: %s\n", suite, CU_get_error_msg());
        return 1;
    }
    CU_pSuite s = CU_add_suite(suite, NULL, NULL);
    const char *only = argc > 1 ? argv[1] : NULL;
    int added = 0;
    for (const brg_test_case *c = cases; c->name; c++) {
        if (only && strcmp(only, c->name) != 0) continue;
        if (!CU_add_test(s, c->name, c->fn)) {
            fprintf(stderr, "%s: CUnit: %s\n", suite, CU_get_error_msg());
            CU_cleanup_registry();
            return 1;
        }
        added++;
    }
    if (only && added == 0) {
        fprintf(stderr, "%s: no test case named '%s'\n", suite, only);
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}

const char *brg_test_fixtures(void) {
    const char *dir = getenv("BRG_TEST_FIXTURES");
    return dir ? dir : "tests/fixtures";
}

const char *brg_test_tmp_path(char *buf, size_t size, const char *name) {
    const char *dir = getenv("BRG_TEST_TMPDIR");
    snprintf(buf, size, "%s/brg-%ld-%s", dir ? dir : "/tmp", (long)getpid(), name);
    return buf;
}
