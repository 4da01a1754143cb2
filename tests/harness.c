#include "harness.h"

#include <CUnit/Basic.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "brigade.h"
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

extern char **environ;

brg_graph *brg_test_build(const char *spec, brg_model_config *cfg) {
    brg_error err = {0};
    brg_graph *g = NULL;
    BRG_ASSERT_OK(brg_model_parse(spec, cfg, &err), err.message);
    BRG_ASSERT_OK(brg_model_build(cfg, &g, &err), err.message);
    return g;
}

brg_test_training brg_test_train(const brg_graph *g, const brg_model_config *cfg, const brg_train_options *o, int steps,
                                 brg_trainer **keep) {
    brg_test_training r;
    memset(&r, 0, sizeof r);
    brg_error err = {0};
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    if (keep) *keep = NULL;
    if (steps > BRG_TEST_MAX_STEPS) steps = BRG_TEST_MAX_STEPS;
    brg_status s = brg_data_synthetic_create(&d, cfg->vocab, cfg->seq, 3, &err);
    if (s == BRG_OK) s = brg_trainer_create(&t, g, o, &err);
    if (s != BRG_OK) snprintf(r.error, sizeof r.error, "%s", err.message);
    for (int i = 0; i < steps && s == BRG_OK; i++) {
        brg_step_stats st;
        s = brg_trainer_step(t, d, &st);
        r.losses[i] = st.loss;
    }
    if (s == BRG_OK) s = brg_trainer_fingerprint(t, &r.fingerprint);
    if (s != BRG_OK && t && !r.error[0]) snprintf(r.error, sizeof r.error, "%s", brg_trainer_last_error(t));
    r.status = (int)s;
    if (keep)
        *keep = t;
    else
        brg_trainer_destroy(t);
    brg_data_destroy(d);
    return r;
}

char *brg_test_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    size_t cap = 1 << 12, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    while (f) {
        if (n + 1 >= cap) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown) break;
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        if (got == 0) break;
        n += got;
    }
    buf[n] = '\0';
    if (f) fclose(f);
    return buf;
}

const brg_test_run *brg_test_run_brigade(const char *const *args) {
    static brg_test_run r;
    free(r.out);
    free(r.err);
    memset(&r, 0, sizeof r);
    r.exit_code = -1;
    const char *bin = getenv("BRG_BIN");
    char out_path[512], err_path[512];
    brg_test_tmp_path(out_path, sizeof out_path, "run.out");
    brg_test_tmp_path(err_path, sizeof err_path, "run.err");
    const char *argv[128];
    int n = 0;
    argv[n++] = bin ? bin : "brigade";
    for (int i = 0; args[i] && n < 127; i++) argv[n++] = args[i];
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    if (posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) == 0) {
        int status = 0;
        waitpid(pid, &status, 0);
        r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    posix_spawn_file_actions_destroy(&fa);
    r.out = brg_test_slurp(out_path);
    r.err = brg_test_slurp(err_path);
    unlink(out_path);
    unlink(err_path);
    return &r;
}
