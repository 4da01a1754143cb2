/* Allocation failures, injected one at a time (engine/alloc.h): for a small pipeline run and for a plan
 * search, the k-th allocation fails, for k = 1, 2, ... until a run makes fewer than k allocations. Every
 * run must end with BRG_ERR_OUT_OF_MEMORY and a message that says so (or, where the failed allocation
 * was one a caller can do without, succeed), never crash, leave every handle destroyable, and leak
 * nothing: under AddressSanitizer each run ends with LeakSanitizer's check, so a leak names its k.
 *
 * Set BRG_ALLOC_SWEEP_STRIDE=n to fail only every n-th k (a quicker look), BRG_TEST_VERBOSE to print
 * every failed site. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "brigade.h"
#include "harness.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define HAVE_LSAN 1
#else
#define HAVE_LSAN 0
#endif

/* What one run did, as the sweep sees it: its status and message, and a digest of what it produced (a
 * run that does without a failed allocation must produce exactly what a run without failures does). */
typedef struct outcome {
    brg_status status;
    char message[BRG_ERROR_MESSAGE_MAX];
    uint64_t digest;
} outcome;

static uint64_t digest_of(uint64_t h, const void *data, size_t size) {
    const unsigned char *p = data;
    if (!h) h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < size; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

typedef outcome (*scenario_fn)(void);

/* ---- the scenarios --------------------------------------------------------------------------------- */

static outcome fail_with(brg_status s, const char *message) {
    outcome o = {s, "", 0};
    snprintf(o.message, sizeof o.message, "%s", message ? message : "");
    return o;
}

/* A model built from its specification, a 2-stage 1F1B pipeline of two data-parallel replicas (ZeRO-1)
 * in threads, two steps, an evaluation, the fingerprint. */
static outcome pipeline_run(void) {
    brg_error err = {0};
    brg_model_config cfg;
    brg_graph *g = NULL;
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    brg_status s = brg_model_parse("gpt:layers=2,hidden=16,heads=2,vocab=16,seq=8", &cfg, &err);
    if (s == BRG_OK) s = brg_model_build(&cfg, &g, &err);
    if (s == BRG_OK) s = brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 3, &err);
    if (s == BRG_OK) {
        brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
        o.stages = 2;
        o.schedule = BRG_SCHEDULE_1F1B;
        o.micro_batch = 1;
        o.micro_batches = 4;
        o.data_parallel = 2;
        o.zero = 1;
        o.bucket_bytes = 1024;
        o.blas_threads = 1;
        o.timeout_seconds = 20;
        s = brg_trainer_create(&t, g, &o, &err);
    }
    double loss = 0, losses[2] = {0, 0};
    uint64_t fp = 0;
    for (int step = 0; step < 2 && s == BRG_OK; step++) {
        brg_step_stats st;
        s = brg_trainer_step(t, d, &st);
        losses[step] = st.loss;
    }
    if (s == BRG_OK) s = brg_trainer_evaluate(t, d, 2, &loss);
    if (s == BRG_OK) s = brg_trainer_fingerprint(t, &fp);
    outcome out = fail_with(s, t && s != BRG_OK ? brg_trainer_last_error(t) : err.message);
    out.digest = digest_of(digest_of(digest_of(0, &fp, sizeof fp), &loss, sizeof loss), losses, sizeof losses);
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    brg_graph_destroy(g);
    return out;
}

/* A cluster description loaded, a model planned on it (search, report, plan file text), the plan loaded
 * back. */
static outcome plan_search(void) {
    brg_error err = {0};
    brg_model_config cfg;
    brg_graph *g = NULL;
    brg_topology *topo = NULL;
    brg_plan *plan = NULL, *again = NULL;
    char *report = NULL, *json = NULL;
    brg_status s = brg_model_parse("gpt:layers=4,hidden=256,heads=4,vocab=512,seq=128", &cfg, &err);
    if (s == BRG_OK) s = brg_model_build(&cfg, &g, &err);
    if (s == BRG_OK)
        s = brg_topology_load_cluster_string(
            &topo, "{\"version\": 1, \"node_groups\": [{\"preset\": \"dgx-h100\", \"count\": 1}]}", NULL, NULL, &err);
    if (s == BRG_OK) {
        brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
        o.global_batch = 16;
        o.alternatives = 1;
        o.tensor_parallel = 2; /* one width: the tensor-parallel paths, in fewer allocations than a search of all */
        s = brg_plan_search(g, topo, &o, &plan, &err);
    }
    /* These two say what failed by their status alone (they take no brg_error). */
    if (s == BRG_OK && (s = brg_plan_report_text(plan, &report)) != BRG_OK)
        snprintf(err.message, sizeof err.message, "brg_plan_report_text: %s", brg_status_string(s));
    if (s == BRG_OK && (s = brg_plan_to_json(plan, &json)) != BRG_OK)
        snprintf(err.message, sizeof err.message, "brg_plan_to_json: %s", brg_status_string(s));
    if (s == BRG_OK) s = brg_plan_load_string(json, "plan.json", &again, &err);
    if (s != BRG_OK && !err.message[0]) snprintf(err.message, sizeof err.message, "(no message)");
    outcome out = fail_with(s, err.message);
    if (json) out.digest = digest_of(0, json, strlen(json));
    free(report);
    free(json);
    brg_plan_destroy(again);
    brg_plan_destroy(plan);
    brg_topology_destroy(topo);
    brg_graph_destroy(g);
    return out;
}

/* ---- the sweep ------------------------------------------------------------------------------------- */

enum { MAX_SITES = 4096 };

typedef struct sweep {
    const char *name;
    int64_t runs, failed_runs, succeeded_despite, different, crashes, leaks;
    int64_t allocations; /* of a run with nothing failed */
    const void *sites[MAX_SITES];
    int site_count;
} sweep;

static void note_site(sweep *sw, const void *site) {
    for (int i = 0; i < sw->site_count; i++)
        if (sw->sites[i] == site) return;
    if (sw->site_count < MAX_SITES) sw->sites[sw->site_count++] = site;
}

static const char *site_name(const void *site, char *buf, size_t size) {
    Dl_info info;
    if (dladdr(site, &info) && info.dli_sname)
        snprintf(buf, size, "%s+0x%zx", info.dli_sname, (size_t)((const char *)site - (const char *)info.dli_saddr));
    else if (dladdr(site, &info) && info.dli_fname)
        snprintf(buf, size, "%s+0x%zx", info.dli_fname, (size_t)((const char *)site - (const char *)info.dli_fbase));
    else
        snprintf(buf, size, "%p", site);
    return buf;
}

/* The message an allocation failure must leave: it says memory ran out (the failing call's own words,
 * or a peer's that names the failed rank). */
static int says_out_of_memory(const outcome *o) {
    return strstr(o->message, "out of memory") != NULL || strstr(o->message, "Out of memory") != NULL ||
           strstr(o->message, "cannot allocate") != NULL || strstr(o->message, "could not allocate") != NULL;
}

/* What a child run reports back through its pipe: its outcome, the failed site and the count. */
typedef struct report {
    outcome o;
    const void *site;
    int64_t counted;
} report;

enum { LEAKED = 23 }; /* a child's exit code when LeakSanitizer found a leak (LeakSanitizer's own default) */

/* Runs the scenario with the k-th allocation failing, in a child process: a crash or a leak there is
 * named by its k and the sweep goes on. Returns 0 when the child reported, else its wait status. */
static int run_child(scenario_fn scenario, int64_t k, report *rep) {
    int fds[2];
    memset(rep, 0, sizeof *rep);
    if (pipe(fds) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        brg__alloc_fail_at(k);
        report r;
        r.o = scenario();
        r.site = brg__alloc_failed_site();
        r.counted = brg__alloc_counted();
        brg__alloc_fail_at(0);
        ssize_t wrote = write(fds[1], &r, sizeof r);
        close(fds[1]);
#if HAVE_LSAN
        if (__lsan_do_recoverable_leak_check()) _exit(LEAKED);
#endif
        _exit(wrote == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = 0, n;
    while (got < (ssize_t)sizeof *rep && (n = read(fds[0], (char *)rep + got, sizeof *rep - (size_t)got)) > 0) got += n;
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got == (ssize_t)sizeof *rep && WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    return status ? status : -1;
}

static void run_sweep(sweep *sw, scenario_fn scenario) {
    const char *stride_env = getenv("BRG_ALLOC_SWEEP_STRIDE");
    int64_t stride = stride_env ? atoll(stride_env) : 1;
    if (stride < 1) stride = 1;
    const int verbose = getenv("BRG_TEST_VERBOSE") != NULL;

    /* A clean run first, counting: it must succeed, and says how many allocations a run makes. */
    report clean;
    int st = run_child(scenario, INT64_MAX, &clean);
    sw->allocations = clean.counted;
    CU_ASSERT(st == 0);
    BRG_ASSERT_OK(clean.o.status, clean.o.message);
    if (st != 0 || clean.o.status != BRG_OK) return;

    char where[256];
    for (int64_t k = 1;; k += stride) {
        report rep;
        st = run_child(scenario, k, &rep);
        sw->runs++;
        if (st != 0) { /* a crash, a sanitizer report or a leak: its output is above */
            const char *what = WIFSIGNALED(st) ? "was killed by a signal" : WIFEXITED(st) && WEXITSTATUS(st) == LEAKED ? "leaked" : "failed";
            fprintf(stderr, "%s: k %lld: the run %s (failed site %s)\n", sw->name, (long long)k, what,
                    rep.site ? site_name(rep.site, where, sizeof where) : "unknown");
            if (WIFEXITED(st) && WEXITSTATUS(st) == LEAKED) sw->leaks++;
            else sw->crashes++;
            CU_FAIL("a run with one allocation failing crashed or leaked");
            if (rep.counted == 0 && sw->crashes > 20) break; /* nothing reported: do not go on for ever */
            continue;
        }
        if (!rep.site) { /* fewer than k allocations (threads may order them differently from the clean run) */
            BRG_ASSERT_OK(rep.o.status, rep.o.message);
            if (rep.counted < k) break;
            continue;
        }
        note_site(sw, rep.site);
        const outcome *o = &rep.o;
        if (o->status == BRG_OK) {
            sw->succeeded_despite++;
            if (o->digest != clean.o.digest) {
                sw->different++;
                fprintf(stderr, "%s: k %lld at %s: completed without the allocation, but with another result\n", sw->name,
                        (long long)k, site_name(rep.site, where, sizeof where));
            }
            CU_ASSERT(o->digest == clean.o.digest);
            if (verbose) fprintf(stderr, "%s: k %lld at %s: done without it\n", sw->name, (long long)k, site_name(rep.site, where, sizeof where));
            continue;
        }
        sw->failed_runs++;
        int clear = o->message[0] != '\0' && says_out_of_memory(o);
        int status_ok = o->status == BRG_ERR_OUT_OF_MEMORY || (o->status != BRG_ERR_INTERNAL && clear);
        if (!clear || !status_ok || verbose)
            fprintf(stderr, "%s: k %lld at %s: %s: %s\n", sw->name, (long long)k, site_name(rep.site, where, sizeof where),
                    brg_status_name(o->status), o->message);
        CU_ASSERT(clear);
        CU_ASSERT(status_ok);
    }
    fprintf(stderr,
            "  %s: %lld allocations in a run; %lld runs, each failing one allocation: %d distinct allocation sites; "
            "%lld runs ended with out of memory, %lld completed without the allocation (%lld of them with another result), "
            "%lld crashed, %lld leaked\n",
            sw->name, (long long)sw->allocations, (long long)sw->runs, sw->site_count, (long long)sw->failed_runs,
            (long long)sw->succeeded_despite, (long long)sw->different, (long long)sw->crashes, (long long)sw->leaks);
}

static void test_pipeline_run(void) {
    static sweep sw = {.name = "pipeline run"};
    run_sweep(&sw, pipeline_run);
    CU_ASSERT(sw.site_count > 50);
}

static void test_plan_search(void) {
    static sweep sw = {.name = "plan search"};
    run_sweep(&sw, plan_search);
    CU_ASSERT(sw.site_count > 50);
}

/* The hook itself: the k-th allocation fails once, the count and the site say so, disarming restores. */
static void test_hook(void) {
    brg__alloc_fail_at(2);
    void *a = brg__malloc(8), *b = brg__malloc(8), *c = brg__calloc(1, 8);
    CU_ASSERT(a != NULL && b == NULL && c != NULL);
    CU_ASSERT(brg__alloc_counted() == 3);
    CU_ASSERT(brg__alloc_failed_site() != NULL);
    brg__alloc_fail_at(0);
    CU_ASSERT(brg__alloc_failed_site() == NULL && brg__alloc_counted() == 0);
    void *d = brg__realloc(a, 64);
    char *e = brg__strdup("x");
    CU_ASSERT(d != NULL && e != NULL && brg__alloc_counted() == 0);
    free(d);
    free(e);
    free(c);
    brg__alloc_fail_at(1);
    CU_ASSERT(brg__strdup("y") == NULL);
    brg__alloc_fail_at(0);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"hook", test_hook},
        {"pipeline_run", test_pipeline_run},
        {"plan_search", test_plan_search},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "alloc-failure", cases);
}
