/* brigade train under mpirun, as users launch it: fingerprints equal to the in-process run's, rank 0 alone
 * printing and writing every rank's figures, a killed or stopped rank ending the job with the rank named,
 * Ctrl-C ending every rank, and launches that cannot work refused before any step. Each run is bounded:
 * past its deadline the whole job is killed and the case fails. */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

extern char **environ;

#define SMALL "gpt:layers=4,hidden=32,heads=2,vocab=64,seq=32"
/* Steps of some tens of milliseconds, for runs stopped from outside. */
#define SLOW "gpt:layers=4,hidden=128,heads=4,vocab=256,seq=64"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct job {
    pid_t pid;
    char marker[64];
    char out_path[512], err_path[512];
    double start;
    int exit_code; /* 128 + signal when killed; -1 while running */
    double seconds;
    char *out, *err;
} job;

/* The pids of the job's ranks: processes whose environment holds its marker and the rank. */
static int rank_pids(const job *j, pid_t *pids, int cap, int rank) {
    DIR *d = opendir("/proc");
    int n = 0;
    struct dirent *e;
    char want_marker[96], want_rank[64];
    snprintf(want_marker, sizeof want_marker, "BRG_TEST_JOB=%s", j->marker);
    snprintf(want_rank, sizeof want_rank, "OMPI_COMM_WORLD_RANK=%d", rank);
    while (d && (e = readdir(d)) && n < cap) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0 || pid == getpid() || pid == j->pid) continue;
        char path[64], env[1 << 15];
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t len = read(fd, env, sizeof env - 1);
        close(fd);
        if (len <= 0) continue;
        int has_marker = 0, has_rank = rank < 0;
        for (ssize_t i = 0; i < len; i += (ssize_t)strlen(env + i) + 1) {
            env[len] = '\0';
            if (strcmp(env + i, want_marker) == 0) has_marker = 1;
            if (rank >= 0 && strcmp(env + i, want_rank) == 0) has_rank = 1;
        }
        if (has_marker && has_rank) pids[n++] = pid;
    }
    if (d) closedir(d);
    return n;
}

/* Starts mpirun with args (NULL-terminated), its output into files. */
static void job_start(job *j, const char *const *args) {
    static int serial;
    memset(j, 0, sizeof *j);
    snprintf(j->marker, sizeof j->marker, "%d-%d", (int)getpid(), ++serial);
    setenv("BRG_TEST_JOB", j->marker, 1);
    char name[64];
    snprintf(name, sizeof name, "job%d.out", serial);
    brg_test_tmp_path(j->out_path, sizeof j->out_path, name);
    snprintf(name, sizeof name, "job%d.err", serial);
    brg_test_tmp_path(j->err_path, sizeof j->err_path, name);
    const char *argv[160];
    int n = 0;
    argv[n++] = "mpirun";
    argv[n++] = "--oversubscribe";
    for (int i = 0; args[i] && n < 159; i++) argv[n++] = strcmp(args[i], "BRIGADE") == 0 ? getenv("BRG_BIN") : args[i];
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, j->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, j->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    j->exit_code = -1;
    j->start = now_seconds();
    if (posix_spawnp(&j->pid, "mpirun", &fa, NULL, (char *const *)argv, environ) != 0) j->pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    unsetenv("BRG_TEST_JOB");
    CU_ASSERT(j->pid > 0);
}

/* Whether the job ended (then exit_code, seconds, out and err are set). */
static int job_poll(job *j) {
    if (j->exit_code >= 0) return 1;
    int status = 0;
    if (j->pid <= 0 || waitpid(j->pid, &status, WNOHANG) != j->pid) return j->pid <= 0;
    j->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    j->seconds = now_seconds() - j->start;
    j->out = brg_test_slurp(j->out_path);
    j->err = brg_test_slurp(j->err_path);
    return 1;
}

static char *job_output_now(const job *j) { return brg_test_slurp(j->out_path); }

/* Kills the job and every rank still alive (a run past its deadline, or the end of a case). */
static void job_kill_all(job *j) {
    pid_t pids[64];
    int n = rank_pids(j, pids, 64, -1);
    for (int i = 0; i < n; i++) kill(pids[i], SIGKILL);
    if (j->exit_code < 0 && j->pid > 0) kill(j->pid, SIGKILL);
}

/* Waits for the end, at most `limit` seconds; 0 if it ended in time. */
static int job_wait(job *j, double limit) {
    while (!job_poll(j)) {
        if (now_seconds() - j->start > limit) {
            fprintf(stderr, "job %s still running after %.0f s: killed\n", j->marker, limit);
            job_kill_all(j);
            while (!job_poll(j)) usleep(10000);
            return 1;
        }
        usleep(10000);
    }
    return 0;
}

static void job_free(job *j) {
    job_kill_all(j); /* leftovers, if any */
    free(j->out);
    free(j->err);
    unlink(j->out_path);
    unlink(j->err_path);
}

/* Waits until rank 0 printed the step line of `step`; 0 on success. */
static int wait_for_step(job *j, int step, double limit) {
    char want[32];
    snprintf(want, sizeof want, "step %5d/", step);
    while (now_seconds() - j->start < limit && !job_poll(j)) {
        char *out = job_output_now(j);
        int seen = out && strstr(out, want);
        free(out);
        if (seen) return 0;
        usleep(20000);
    }
    return 1;
}

static int count(const char *haystack, const char *needle) {
    int n = 0;
    for (const char *p = haystack; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* "params fingerprint: <hex>" of an output, or "" */
static void fingerprint_of(const char *out, char hex[17]) {
    const char *p = out ? strstr(out, "params fingerprint: ") : NULL;
    hex[0] = '\0';
    if (p) snprintf(hex, 17, "%.16s", p + strlen("params fingerprint: "));
}

/* The same training in threads and under mpirun: the same fingerprint, and every loss. */
static void expect_same_as_threads(const char *const *train_args, const char *np, const char *btl) {
    const char *args[64];
    int n = 0;
    for (int i = 0; train_args[i]; i++) args[n++] = train_args[i];
    args[n] = NULL;
    const brg_test_run *r = brg_test_run_brigade(args);
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    char threads[17];
    fingerprint_of(r->out, threads);
    CU_ASSERT(threads[0] != '\0');
    const char *margs[80];
    int m = 0;
    if (btl) {
        margs[m++] = "--mca";
        margs[m++] = "btl";
        margs[m++] = btl;
    }
    margs[m++] = "-np";
    margs[m++] = np;
    margs[m++] = "BRIGADE";
    for (int i = 0; train_args[i]; i++) margs[m++] = train_args[i];
    margs[m] = NULL;
    job j;
    job_start(&j, margs);
    CU_ASSERT(job_wait(&j, 120) == 0);
    BRG_ASSERT_EQ_INT(j.exit_code, 0);
    char mpi[17];
    fingerprint_of(j.out, mpi);
    if (strcmp(mpi, threads) != 0)
        fprintf(stderr, "fingerprint under mpirun -np %s%s%s: '%s', in threads '%s'\n%s\n", np, btl ? " btl " : "",
                btl ? btl : "", mpi, threads, j.err ? j.err : "");
    CU_ASSERT(strcmp(mpi, threads) == 0);
    CU_ASSERT(j.out && strstr(j.out, "job: ") && strstr(j.out, "processes launched by mpirun"));
    job_free(&j);
}

static void test_fingerprints_equal_threads(void) {
    expect_same_as_threads((const char *[]){"train", "--model", SMALL, "--pp", "2", "--steps", "3",
                                            "--micro-batches", "4", NULL},
                           "2", NULL);
    expect_same_as_threads((const char *[]){"train", "--model", "mlp:layers=8,hidden=32,vocab=64,seq=32", "--pp", "2",
                                            "--schedule", "interleaved", "--steps", "3", "--micro-batches", "4", NULL},
                           "2", NULL);
    expect_same_as_threads((const char *[]){"train", "--model", "skipnet:layers=3,hidden=32,vocab=64,seq=32", "--pp",
                                            "3", "--schedule", "zb-h1", "--recompute", "full", "--steps", "3",
                                            "--micro-batches", "6", NULL},
                           "3", NULL);
    /* Data parallelism: 2 replicas x 2 stages, ZeRO-1, several buckets; 3 replicas of one stage. */
    expect_same_as_threads((const char *[]){"train", "--model", SMALL, "--pp", "2", "--dp", "2", "--zero", "1",
                                            "--bucket-mb", "0.01", "--steps", "3", "--global-batch", "16", "--micro-batch",
                                            "2", NULL},
                           "4", NULL);
    expect_same_as_threads((const char *[]){"train", "--model", SMALL, "--dp", "3", "--steps", "3", "--global-batch",
                                            "12", "--micro-batch", "2", NULL},
                           "3", NULL);
    /* TCP alone, no shared memory: as between nodes. */
    expect_same_as_threads((const char *[]){"train", "--model", SMALL, "--pp", "4", "--schedule", "gpipe",
                                            "--recompute", "selective", "--steps", "3", "--micro-batches", "8", NULL},
                           "4", "tcp,self");
}

/* A plan runs under mpirun as in threads; one made for another number of processes is refused. */
static void test_plan(void) {
    char plan[512];
    brg_test_tmp_path(plan, sizeof plan, "mpi-plan.json");
    const brg_test_run *r = brg_test_run_brigade((const char *[]){"plan", "--model", SMALL, "--cpu", "--pp", "2",
                                                                   "--dp", "1", "--global-batch", "8", "-o", plan, NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    if (r->exit_code != 0) fprintf(stderr, "%s", r->err);
    expect_same_as_threads((const char *[]){"train", "--model", SMALL, "--plan", plan, "--steps", "2", NULL}, "2", NULL);
    job j;
    job_start(&j, (const char *[]){"-np", "3", "BRIGADE", "train", "--model", SMALL, "--plan", plan, "--steps", "2",
                                   NULL});
    CU_ASSERT(job_wait(&j, 60) == 0);
    CU_ASSERT(j.exit_code != 0);
    BRG_ASSERT_CONTAINS(j.err, "gives 2 pipeline stages, but mpirun started 3 processes");
    CU_ASSERT(!strstr(j.out, "step "));
    job_free(&j);
    /* A plan with two replicas: its rank layout, under mpirun as in threads; a launch of another size refused. */
    r = brg_test_run_brigade((const char *[]){"plan", "--model", SMALL, "--cpu", "--pp", "1", "--dp", "2",
                                               "--global-batch", "8", "-o", plan, NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    expect_same_as_threads((const char *[]){"train", "--model", SMALL, "--plan", plan, "--steps", "2", NULL}, "2", NULL);
    job_start(&j, (const char *[]){"-np", "3", "BRIGADE", "train", "--model", SMALL, "--plan", plan, "--steps", "2",
                                   NULL});
    CU_ASSERT(job_wait(&j, 60) == 0);
    CU_ASSERT(j.exit_code != 0);
    BRG_ASSERT_CONTAINS(j.err, "gives 1 pipeline stage x 2 replicas = 2 ranks, but mpirun started 3 processes");
    job_free(&j);
    unlink(plan);
}

/* Rank 0 alone prints the steps and writes --stats (every rank's figures) and --trace (every rank's
 * track in one file). */
static void test_rank_zero_reports_every_rank(void) {
    char stats[512], trace[512];
    brg_test_tmp_path(stats, sizeof stats, "mpi-stats.json");
    brg_test_tmp_path(trace, sizeof trace, "mpi-trace.json");
    job j;
    job_start(&j, (const char *[]){"-np", "4", "BRIGADE", "train", "--model", SMALL, "--steps", "5",
                                   "--micro-batches", "8", "--stats", stats, "--trace", trace, NULL});
    CU_ASSERT(job_wait(&j, 120) == 0);
    BRG_ASSERT_EQ_INT(j.exit_code, 0);
    BRG_ASSERT_EQ_INT(count(j.out, "\nstep "), 5);
    BRG_ASSERT_EQ_INT(count(j.out, "params fingerprint: "), 1);
    json_error_t e;
    json_t *s = json_load_file(stats, 0, &e);
    CU_ASSERT(s != NULL);
    json_t *stages = json_object_get(s, "stages");
    BRG_ASSERT_EQ_INT(json_array_size(stages), 4);
    for (size_t k = 0; k < json_array_size(stages); k++) {
        json_t *st = json_array_get(stages, k);
        BRG_ASSERT_EQ_INT(json_integer_value(json_object_get(st, "stage")), (long long)k);
        CU_ASSERT(json_real_value(json_object_get(st, "compute_seconds")) > 0);
        CU_ASSERT(json_integer_value(json_object_get(st, "peak_bytes")) > 0);
    }
    BRG_ASSERT_EQ_INT(json_integer_value(json_object_get(s, "pp")), 4);
    json_decref(s);
    json_t *t = json_load_file(trace, 0, &e);
    CU_ASSERT(t != NULL);
    int seen[4] = {0};
    json_t *events = json_object_get(t, "traceEvents");
    for (size_t i = 0; i < json_array_size(events); i++) {
        json_t *ev = json_array_get(events, i);
        const char *ph = json_string_value(json_object_get(ev, "ph"));
        long long pid = json_integer_value(json_object_get(ev, "pid"));
        if (ph && strcmp(ph, "X") == 0 && pid >= 0 && pid < 4) seen[pid] = 1;
    }
    CU_ASSERT(seen[0] && seen[1] && seen[2] && seen[3]);
    json_decref(t);
    job_free(&j);
    unlink(stats);
    unlink(trace);
}

/* A 2-stage run with a 3 s timeout; once rank 0 printed step 2, rank 1 gets `sig`. Returns the seconds
 * from the signal to the job's end (the job ended non-zero, or the case failed). */
static double signal_rank_one(job *j, int sig, pid_t *rank1) {
    job_start(j, (const char *[]){"-np", "2", "BRIGADE", "train", "--model", SLOW, "--pp", "2", "--steps", "100000",
                                  "--micro-batches", "4", "--timeout", "3", NULL});
    CU_ASSERT(wait_for_step(j, 2, 60) == 0);
    int n = rank_pids(j, rank1, 1, 1);
    BRG_ASSERT_EQ_INT(n, 1);
    double sent = now_seconds();
    if (n == 1) kill(*rank1, sig);
    CU_ASSERT(job_wait(j, 120) == 0);
    double took = now_seconds() - sent;
    CU_ASSERT(j->exit_code != 0);
    if (took > 3 + 5) fprintf(stderr, "the job ended %.1f s after rank 1 got signal %d\n", took, sig);
    CU_ASSERT(took <= 3 + 5);
    return took;
}

/* kill -9 of one rank mid-run: the job ends non-zero within the timeout + 5 s, naming the dead rank. */
static void test_killed_rank(void) {
    job j;
    pid_t rank1 = 0;
    signal_rank_one(&j, SIGKILL, &rank1);
    BRG_ASSERT_CONTAINS(j.err, "rank 1");
    job_free(&j);
}

/* A rank that stops answering (SIGSTOP: alive, silent, as a hung node): rank 0 gives up after the
 * timeout with a message naming it, and the job ends non-zero. */
static void test_stuck_rank(void) {
    job j;
    pid_t rank1 = 0;
    signal_rank_one(&j, SIGSTOP, &rank1);
    BRG_ASSERT_CONTAINS(j.err, "rank 0 of 2: step");
    BRG_ASSERT_CONTAINS(j.err, "waited 3 s for rank 1");
    if (rank1 > 0) kill(rank1, SIGKILL);
    job_free(&j);
}

/* Ctrl-C on mpirun ends every rank. */
static void test_interrupt_ends_every_rank(void) {
    job j;
    job_start(&j, (const char *[]){"-np", "3", "BRIGADE", "train", "--model", SLOW, "--pp", "3", "--steps", "100000",
                                   "--micro-batches", "3", NULL});
    CU_ASSERT(wait_for_step(&j, 1, 60) == 0);
    pid_t pids[8];
    BRG_ASSERT_EQ_INT(rank_pids(&j, pids, 8, -1), 3);
    kill(j.pid, SIGINT);
    CU_ASSERT(job_wait(&j, 30) == 0);
    CU_ASSERT(j.exit_code != 0);
    double start = now_seconds();
    int left = 3;
    while ((left = rank_pids(&j, pids, 8, -1)) > 0 && now_seconds() - start < 10) usleep(50000);
    BRG_ASSERT_EQ_INT(left, 0);
    job_free(&j);
}

/* Launches that cannot work end before any step, with what is wrong. */
static void test_bad_launches(void) {
    struct {
        const char *const *args;
        const char *expect;
    } cases[] = {
        {(const char *[]){"-np", "3", "BRIGADE", "train", "--model", SMALL, "--pp", "2", NULL},
         "--pp gives 2 pipeline stages, but mpirun started 3 processes"},
        {(const char *[]){"-np", "3", "BRIGADE", "train", "--model", SMALL, "--dp", "2", NULL},
         "--dp 2 does not divide the 3 processes mpirun started"},
        {(const char *[]){"-np", "4", "BRIGADE", "train", "--model", SMALL, "--dp", "2", "--pp", "1", NULL},
         "--pp gives 1 pipeline stage x 2 replicas = 2 ranks, but mpirun started 4 processes"},
        {(const char *[]){"-np", "2", "BRIGADE", "train", "--model", SMALL, "--dp", "2", "--global-batch", "6", NULL},
         "--global-batch 6 is not a multiple of 2 replicas x a micro-batch of 4 = 8 samples"},
        /* Ranks started with other flags: one process per command line (MPMD). */
        {(const char *[]){"-np", "1", "BRIGADE", "train", "--model", SMALL, "--lr", "1e-3", ":", "-np", "1",
                          "BRIGADE", "train", "--model", SMALL, "--lr", "2e-3", NULL},
         "rank 1 was started with other training options than rank 0"},
        {(const char *[]){"-np", "1", "BRIGADE", "train", "--model", SMALL, "--log-every", "3", ":", "-np", "1",
                          "BRIGADE", "train", "--model", SMALL, "--log-every", "4", NULL},
         "rank 1 was started with other command-line flags or data than rank 0"},
        {(const char *[]){"-np", "1", "BRIGADE", "train", "--model", SMALL, ":", "-np", "1", "BRIGADE", "train",
                          "--model", "gpt:layers=4,hidden=32,heads=4,vocab=64,seq=32", NULL},
         "rank 1 was started with other model than rank 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        job j;
        job_start(&j, cases[i].args);
        CU_ASSERT(job_wait(&j, 60) == 0);
        CU_ASSERT(j.exit_code != 0);
        BRG_ASSERT_CONTAINS(j.err, cases[i].expect);
        CU_ASSERT(!strstr(j.out, "step "));
        job_free(&j);
    }
}

/* A checkpoint saved by two processes (each its own shard) resumes in threads with one stage, and one
 * saved in threads resumes under mpirun: the uninterrupted run's fingerprint both ways. */
static void test_checkpoint_across_hosting(void) {
    char dir[512], want[17], got[17];
    brg_test_tmp_path(dir, sizeof dir, "mpi-ckpt");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CU_ASSERT(system(cmd) == 0);
    const brg_test_run *r = brg_test_run_brigade((const char *[]){"train", "--model", SMALL, "--steps", "6",
                                                                   "--micro-batches", "4", NULL});
    fingerprint_of(r->out, want);
    job j;
    job_start(&j, (const char *[]){"-np", "2", "BRIGADE", "train", "--model", SMALL, "--steps", "3", "--micro-batches",
                                   "4", "--checkpoint-dir", dir, NULL});
    CU_ASSERT(job_wait(&j, 120) == 0);
    BRG_ASSERT_EQ_INT(j.exit_code, 0);
    job_free(&j);
    char shard[600];
    snprintf(shard, sizeof shard, "%s/step-000003/model-00002-of-00002.safetensors", dir);
    CU_ASSERT(access(shard, F_OK) == 0);
    r = brg_test_run_brigade((const char *[]){"train", "--model", SMALL, "--steps", "6", "--micro-batches", "4",
                                              "--resume", dir, NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    BRG_ASSERT_CONTAINS(r->out, "resumed from");
    fingerprint_of(r->out, got);
    CU_ASSERT(want[0] && strcmp(got, want) == 0);
    /* Threads save at 3 (pp 1), two processes resume. */
    CU_ASSERT(system(cmd) == 0);
    r = brg_test_run_brigade((const char *[]){"train", "--model", SMALL, "--steps", "3", "--micro-batches", "4",
                                              "--checkpoint-dir", dir, NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    job_start(&j, (const char *[]){"-np", "2", "BRIGADE", "train", "--model", SMALL, "--steps", "6", "--micro-batches",
                                   "4", "--resume", dir, NULL});
    CU_ASSERT(job_wait(&j, 120) == 0);
    BRG_ASSERT_EQ_INT(j.exit_code, 0);
    fingerprint_of(j.out, got);
    CU_ASSERT(strcmp(got, want) == 0);
    job_free(&j);
    CU_ASSERT(system(cmd) == 0);
}

/* Slurm's variables: a task of an srun step is one rank of the job, and an MPI that does not see the same
 * job (no Slurm support) is refused with what to do; a batch script's variables alone (no step) are no
 * job: the run trains alone. */
static void test_slurm_variables(void) {
    setenv("SLURM_NTASKS", "2", 1);
    setenv("SLURM_PROCID", "1", 1);
    setenv("SLURM_LOCALID", "1", 1);
    const brg_test_run *r = brg_test_run_brigade((const char *[]){"train", "--model", SMALL, "--steps", "1", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    CU_ASSERT(!strstr(r->out, "job: "));
    setenv("SLURM_STEP_ID", "0", 1);
    r = brg_test_run_brigade((const char *[]){"train", "--model", SMALL, "--steps", "1", NULL});
    CU_ASSERT(r->exit_code != 0);
    BRG_ASSERT_CONTAINS(r->err, "srun started this process as rank 1 of 2, but MPI sees rank 0 of 1");
    BRG_ASSERT_CONTAINS(r->err, "srun --mpi=pmix");
    unsetenv("SLURM_STEP_ID");
    unsetenv("SLURM_NTASKS");
    unsetenv("SLURM_PROCID");
    unsetenv("SLURM_LOCALID");
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"fingerprints_equal_threads", test_fingerprints_equal_threads},
        {"plan", test_plan},
        {"rank_zero_reports_every_rank", test_rank_zero_reports_every_rank},
        {"killed_rank", test_killed_rank},
        {"stuck_rank", test_stuck_rank},
        {"interrupt_ends_every_rank", test_interrupt_ends_every_rank},
        {"bad_launches", test_bad_launches},
        {"slurm_variables", test_slurm_variables},
        {"checkpoint_across_hosting", test_checkpoint_across_hosting},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "mpi-cli", cases);
}
