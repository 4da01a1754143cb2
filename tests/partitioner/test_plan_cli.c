/* brigade plan, brigade profile and brigade train --plan from outside: files written, plans executed,
 * and clear errors for bad flags, infeasible requests and plans made for something else. */
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "brigade.h"
#include "harness.h"

extern char **environ;

#define SMALL_GPT "gpt:layers=4,hidden=64,heads=4,vocab=64,seq=32"

typedef brg_test_run run_result;

static const run_result *run_brigade(const char *const *args) { return brg_test_run_brigade(args); }

static void expect(const char *const *args, int code, const char *needle) {
    const run_result *r = run_brigade(args);
    if (r->exit_code != code) fprintf(stderr, "exit %d, expected %d\nstdout: %s\nstderr: %s\n", r->exit_code, code, r->out, r->err);
    BRG_ASSERT_EQ_INT(r->exit_code, code);
    if (needle) BRG_ASSERT_CONTAINS(code == 0 ? r->out : r->err, needle);
}

static int exists(const char *path) { return access(path, R_OK) == 0; }

static void test_plan_flags(void) {
    expect((const char *[]){"plan", "--help", NULL}, 0, "--global-batch");
    expect((const char *[]){"plan", "--global-batch", "8", "-o", "x.json", NULL}, 2, "--model is required");
    expect((const char *[]){"plan", "--model", SMALL_GPT, "-o", "x.json", NULL}, 2, "--global-batch is required");
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "8", NULL}, 2, "-o FILE is required");
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "8", "-o", "x.json", "--schedule", "best", NULL},
           2, "--schedule takes");
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "0", "-o", "x.json", NULL}, 2, "--global-batch");
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "8", "-o", "x.json", "--frobnicate", NULL}, 2,
           "unknown flag");
    expect((const char *[]){"plan", "--model", "gpt:layers=x", "--global-batch", "8", "-o", "x.json", NULL}, 2, "--model");
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "8", "-o", "x.json", "--xml", "/nonexistent.xml",
                            NULL},
           2, "nonexistent");
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "8", "-o", "x.json", "--preset", "dgx-h900", NULL},
           2, "unknown node preset");
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "8", "-o", "x.json", "--preset", "dgx-h100",
                            "--xml", "a.xml", NULL},
           2, "one of");
    /* Constraints no plan can meet, and a model that fits nowhere: exit 1 with the reason. */
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "8", "-o", "x.json", "--preset", "dgx-h100",
                            "--pp", "3", NULL},
           1, "do not divide");
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "12", "-o", "x.json", "--preset", "dgx-h100",
                            "--dp", "8", NULL},
           1, "does not divide among 8");
    expect((const char *[]){"plan", "--model", "gpt3-175b", "--global-batch", "8", "-o", "x.json", "--preset", "dgx-h100",
                            NULL},
           1, "nothing fits in memory");
    /* Tensor parallelism: bad widths are flags' errors or the request's. */
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "8", "-o", "x.json", "--tp", "many", NULL}, 2,
           "--tp takes a whole number from 1 to 8192 or auto");
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "8", "-o", "x.json", "--sp", "2", NULL}, 2,
           "--sp takes 0, 1 or auto");
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "8", "-o", "x.json", "--preset", "dgx-h100",
                            "--tp", "16", NULL},
           1, "needs 16 devices in one node");
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--global-batch", "8", "-o", "x.json", "--preset", "dgx-h100",
                            "--tp", "8", NULL},
           1, "does not divide the 4 heads");
}

/* --tp and --sp fix what the search weighs; the review says it. */
static void test_plan_tensor_parallel(void) {
    char plan[512];
    brg_test_tmp_path(plan, sizeof plan, "cli-tp-plan.json");
    const run_result *r = run_brigade((const char *[]){"plan", "--model", SMALL_GPT, "--preset", "dgx-h100", "--global-batch",
                                                 "16", "--tp", "2", "--sp", "1", "-o", plan, NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    if (r->exit_code) fprintf(stderr, "%s\n", r->err);
    BRG_ASSERT_CONTAINS(r->out, "x t 2 (tensor parallel, sequence parallel)");
    BRG_ASSERT_CONTAINS(r->out, "TENSOR PARALLEL (t 2 over nvswitch links");
    brg_plan *p = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_plan_load(plan, &p, &err), err.message);
    brg_plan_summary sm;
    if (p) {
        brg_plan_get_summary(p, &sm);
        BRG_ASSERT_EQ_INT(sm.tensor_parallel, 2);
        BRG_ASSERT_EQ_INT(sm.sequence_parallel, 1);
    }
    brg_plan_destroy(p);
    unlink(plan);
}

static void test_plan_writes_everything(void) {
    char plan[512], report[512], trace[512], gantt[600];
    brg_test_tmp_path(plan, sizeof plan, "cli-plan.json");
    brg_test_tmp_path(report, sizeof report, "cli-report.md");
    brg_test_tmp_path(trace, sizeof trace, "cli-trace.json");
    snprintf(gantt, sizeof gantt, "%.*s-gantt.svg", (int)strlen(report) - 3, report);
    const run_result *r = run_brigade((const char *[]){"plan", "--model", "gpt2-small", "--preset", "dgx-h100:2",
                                                 "--global-batch", "64", "-o", plan, "--report", report, "--trace", trace,
                                                 NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    if (r->exit_code) fprintf(stderr, "%s\n", r->err);
    BRG_ASSERT_CONTAINS(r->out, "PLAN  p ");
    BRG_ASSERT_CONTAINS(r->out, "WHAT BINDS");
    BRG_ASSERT_CONTAINS(r->out, "STAGES");
    BRG_ASSERT_CONTAINS(r->out, "balanced by parameters");
    BRG_ASSERT_CONTAINS(r->out, "16 x NVIDIA H100");
    CU_ASSERT(exists(plan) && exists(report) && exists(trace) && exists(gantt));
    brg_plan *p = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_plan_load(plan, &p, &err), err.message);
    brg_plan_destroy(p);
    unlink(plan);
    unlink(report);
    unlink(trace);
    unlink(gantt);
    char other[600];
    snprintf(other, sizeof other, "%.*s-memory.svg", (int)strlen(report) - 3, report);
    unlink(other);
    snprintf(other, sizeof other, "%.*s-placement.svg", (int)strlen(report) - 3, report);
    unlink(other);
}

/* The fingerprint line of a training run. */
static void fingerprint_of(const char *out, char fp[17]) {
    fp[0] = '\0';
    const char *p = strstr(out, "params fingerprint: ");
    if (p) snprintf(fp, 17, "%s", p + strlen("params fingerprint: "));
}

static void test_train_with_plan(void) {
    char plan[512], wide[512], elsewhere[512], broken[512];
    brg_test_tmp_path(plan, sizeof plan, "train-plan.json");
    brg_test_tmp_path(wide, sizeof wide, "train-wide.json");
    brg_test_tmp_path(elsewhere, sizeof elsewhere, "train-elsewhere.json");
    brg_test_tmp_path(broken, sizeof broken, "train-broken.json");
    /* A plan for this machine's cores, one replica. */
    const run_result *r = run_brigade((const char *[]){"plan", "--model", SMALL_GPT, "--cpu", "--global-batch", "8", "--dp", "1",
                                                 "-o", plan, "--quiet", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    if (r->exit_code) fprintf(stderr, "%s\n", r->err);
    brg_plan *p = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_plan_load(plan, &p, &err), err.message);
    CU_ASSERT_FATAL(p != NULL);
    brg_plan_summary sm;
    brg_plan_get_summary(p, &sm);
    brg_plan_destroy(p);
    r = run_brigade((const char *[]){"train", "--model", SMALL_GPT, "--plan", plan, "--steps", "2", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    if (r->exit_code) fprintf(stderr, "%s\n", r->err);
    BRG_ASSERT_CONTAINS(r->out, "recompute per stage");
    char planned[17], single[17];
    fingerprint_of(r->out, planned);
    /* The same step on one stage: bitwise the same parameters. */
    char b[32], m[32];
    snprintf(b, sizeof b, "%lld", (long long)sm.micro_batch);
    snprintf(m, sizeof m, "%lld", (long long)sm.micro_batches);
    r = run_brigade((const char *[]){"train", "--model", SMALL_GPT, "--micro-batch", b, "--micro-batches", m, "--steps", "2",
                                     NULL});
    fingerprint_of(r->out, single);
    CU_ASSERT(planned[0] && strcmp(planned, single) == 0);
    /* Flags that agree are fine; flags that disagree are refused before any work. */
    expect((const char *[]){"train", "--model", SMALL_GPT, "--plan", plan, "--micro-batch", b, "--steps", "1", NULL}, 0,
           "params fingerprint");
    expect((const char *[]){"train", "--model", SMALL_GPT, "--plan", plan, "--pp", "7", NULL}, 2, "conflicts with the plan");
    expect((const char *[]){"train", "--model", SMALL_GPT, "--plan", plan, "--micro-batches", "99", NULL}, 2,
           "conflicts with the plan");
    expect((const char *[]){"train", "--model", "gpt:layers=3,hidden=64,heads=4,vocab=64,seq=32", "--plan", plan, NULL}, 2,
           "another model");
    /* Made for other machines, or for several replicas. */
    r = run_brigade((const char *[]){"plan", "--model", SMALL_GPT, "--preset", "dgx-h100", "--global-batch", "8", "--dp", "1",
                                     "-o", elsewhere, "--quiet", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    expect((const char *[]){"train", "--model", SMALL_GPT, "--plan", elsewhere, NULL}, 2, "another topology");
    r = run_brigade((const char *[]){"plan", "--model", SMALL_GPT, "--preset", "dgx-h100", "--global-batch", "8", "--dp", "8",
                                     "-o", wide, "--quiet", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    FILE *f = fopen(broken, "w");
    fputs("{\"format\": \"brigade-plan\",\n \"version\": 1\n \"model\": {}}\n", f);
    fclose(f);
    char where[600];
    snprintf(where, sizeof where, "%s:3:8: malformed JSON", broken);
    expect((const char *[]){"train", "--model", SMALL_GPT, "--plan", broken, NULL}, 2, where);
    expect((const char *[]){"train", "--model", SMALL_GPT, "--plan", "/nonexistent/plan.json", NULL}, 2, "nonexistent");
    unlink(plan);
    unlink(wide);
    unlink(elsewhere);
    unlink(broken);
}

static void test_profile_command(void) {
    char profile[512], plan[512];
    brg_test_tmp_path(profile, sizeof profile, "profile.json");
    brg_test_tmp_path(plan, sizeof plan, "profiled-plan.json");
    expect((const char *[]){"profile", "--help", NULL}, 0, "backward-weight");
    expect((const char *[]){"profile", "--model", SMALL_GPT, NULL}, 2, "required");
    expect((const char *[]){"profile", "--model", SMALL_GPT, "-o", profile, "--micro-batch", "0", NULL}, 2, "--micro-batch");
    const run_result *r = run_brigade((const char *[]){"profile", "--model", SMALL_GPT, "-o", profile, "--micro-batch", "1,2",
                                                 "--steps", "1", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    if (r->exit_code) fprintf(stderr, "%s\n", r->err);
    BRG_ASSERT_CONTAINS(r->out, "lm_head");
    brg_profile *p = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_profile_load(profile, &p, &err), err.message);
    double f, bi, bw;
    if (p) {
        BRG_ASSERT_OK(brg_profile_get(p, 2, 2, &f, &bi, &bw), "");
        CU_ASSERT(f > 0 && bi > 0 && bw > 0);
    }
    brg_profile_destroy(p);
    expect((const char *[]){"plan", "--model", SMALL_GPT, "--cpu", "--global-batch", "8", "--dp", "1", "--profile", profile,
                            "-o", plan, NULL},
           0, "PLAN");
    expect((const char *[]){"plan", "--model", "gpt:layers=3,hidden=64,heads=4,vocab=64,seq=32", "--cpu", "--global-batch",
                            "8", "--profile", profile, "-o", plan, NULL},
           2, "profile");
    unlink(profile);
    unlink(plan);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"plan_flags", test_plan_flags},
        {"plan_writes_everything", test_plan_writes_everything},
        {"plan_tensor_parallel", test_plan_tensor_parallel},
        {"train_with_plan", test_train_with_plan},
        {"profile_command", test_profile_command},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "partitioner-cli", cases);
}
