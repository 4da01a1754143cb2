/* Tensor parallelism with one process per rank, run by meson under `mpirun -np 8` (every layout up to 8
 * ranks) and `mpirun -np 16` (the 16 ranks of t 4 x pp 2 x dp 2 alone): every rank runs every case in the
 * same order; rank 0 prints the CUnit summary.
 *
 * What it shows: for t in {1, 2, 4} x pp in {1, 2} x dp in {1, 2}, sequence parallelism off and on, the run
 * on the first t x pp x dp processes has bitwise the losses and fingerprint of the same layout in threads
 * (the group's collectives add in one fixed order on every transport), and its losses are one rank's within
 * 1e-5 relative over 20 steps (tests/runtime/test_tensor_parallel.c says why not 0). */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "brigade.h"
#include "brigade/checkpoint.h"
#include "harness.h"

#define RANKS 16 /* at most */
#define SPEC "gpt:layers=4,hidden=32,heads=4,vocab=63,seq=8"

static int world_rank, world_size;
static MPI_Comm first_ranks[RANKS + 1]; /* [n]: ranks 0..n-1 (MPI_COMM_NULL on the others) */

enum { STEPS = 20, GLOBAL_MICRO_BATCHES = 4 };

static brg_train_options options(int tp, int sp, int pp, int dp) {
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.micro_batch = 2;
    o.micro_batches = GLOBAL_MICRO_BATCHES / dp;
    o.blas_threads = 1;
    o.lr = 3e-3f;
    o.grad_clip = 0.5f;
    o.timeout_seconds = 120;
    o.stages = pp;
    o.data_parallel = dp;
    o.tensor_parallel = tp;
    o.sequence_parallel = sp;
    o.zero = dp > 1;
    o.bucket_bytes = 8192;
    return o;
}

static void test_like_threads_and_one_rank(void) {
    brg_model_config cfg;
    brg_graph *g = brg_test_build(SPEC, &cfg);
    brg_test_training ref = {0};
    brg_train_options ro = options(1, 0, 1, 1);
    if (world_rank == 0) ref = brg_test_train(g, &cfg, &ro, STEPS, NULL);
    int compared = 0, failed = 0;
    const int tps[] = {1, 2, 4};
    for (size_t k = 0; k < sizeof tps / sizeof tps[0]; k++)
        for (int sp = 0; sp <= (tps[k] > 1); sp++)
            for (int pp = 1; pp <= 2; pp++)
                for (int dp = 1; dp <= 2; dp++) {
                    int ranks = tps[k] * pp * dp;
                    /* 8 processes: every layout that fits; 16: the one that needs them */
                    if (ranks > world_size || (world_size > 8 && ranks <= 8)) continue;
                    brg_train_options o = options(tps[k], sp, pp, dp);
                    brg_test_training threads = {0};
                    if (world_rank == 0) threads = brg_test_train(g, &cfg, &o, STEPS, NULL);
                    if (first_ranks[ranks] == MPI_COMM_NULL) continue; /* this rank sits this one out */
                    o.hosting = BRG_HOSTING_MPI;
                    o.mpi_comm = &first_ranks[ranks];
                    brg_test_training mpi = brg_test_train(g, &cfg, &o, STEPS, NULL);
                    if (mpi.status != BRG_OK)
                        fprintf(stderr, "rank %d: t %d sp %d pp %d dp %d: %s\n", world_rank, tps[k], sp, pp, dp, mpi.error);
                    failed |= mpi.status != BRG_OK;
                    if (world_rank != 0) continue;
                    int same = mpi.status == BRG_OK && threads.status == BRG_OK && mpi.fingerprint == threads.fingerprint;
                    int close = ref.status == BRG_OK;
                    for (int s = 0; s < STEPS; s++) {
                        same &= mpi.losses[s] == threads.losses[s];
                        close &= fabs(mpi.losses[s] - ref.losses[s]) <= 1e-5 * fabs(ref.losses[s]);
                    }
                    if (!same || !close)
                        fprintf(stderr, "t %d sp %d pp %d dp %d: fingerprint mpi %016llx threads %016llx; last loss %.9g %.9g, "
                                        "one rank %.9g\n",
                                tps[k], sp, pp, dp, (unsigned long long)mpi.fingerprint,
                                (unsigned long long)threads.fingerprint, mpi.losses[STEPS - 1], threads.losses[STEPS - 1],
                                ref.losses[STEPS - 1]);
                    CU_ASSERT(same);
                    CU_ASSERT(close);
                    compared++;
                }
    CU_ASSERT(!failed);
    if (world_rank == 0) BRG_ASSERT_EQ_INT(compared, world_size > 8 ? 2 : 4 + 8 + 6);
    brg_graph_destroy(g);
}

/* Four processes (t 2 x pp 2) save a checkpoint, each split parameter gathered from its group: threads with
 * one rank per stage resume it with the whole parameters, bitwise (the same fingerprint). */
static void test_checkpoint_to_threads(void) {
    brg_model_config cfg;
    brg_graph *g = brg_test_build(SPEC, &cfg);
    char root[512];
    snprintf(root, sizeof root, "%s/mpi-tp-checkpoint", getenv("BRG_TEST_TMPDIR") ? getenv("BRG_TEST_TMPDIR") : "/tmp");
    brg_checkpoint_options co = BRG_CHECKPOINT_OPTIONS_INIT;
    co.model = &cfg;
    uint64_t saved = 0;
    brg_error err = {0};
    if (first_ranks[4] != MPI_COMM_NULL) {
        brg_train_options o = options(2, 1, 2, 1);
        o.hosting = BRG_HOSTING_MPI;
        o.mpi_comm = &first_ranks[4];
        brg_trainer *t = NULL;
        brg_data *d = NULL;
        BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 3, &err), err.message);
        BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
        brg_step_stats st;
        for (int s = 0; t && s < 2; s++) BRG_ASSERT_OK(brg_trainer_step(t, d, &st), brg_trainer_last_error(t));
        if (t) BRG_ASSERT_OK(brg_checkpoint_save(t, root, &co, &err), err.message);
        if (t) BRG_ASSERT_OK(brg_trainer_fingerprint(t, &saved), brg_trainer_last_error(t));
        brg_trainer_destroy(t);
        brg_data_destroy(d);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank == 0) {
        brg_train_options o = options(1, 0, 2, 1);
        brg_trainer *t = NULL;
        int64_t at = 0;
        uint64_t resumed = 1;
        BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
        if (t) BRG_ASSERT_OK(brg_checkpoint_resume(t, root, &co, &at, &err), err.message);
        if (t) BRG_ASSERT_OK(brg_trainer_fingerprint(t, &resumed), brg_trainer_last_error(t));
        CU_ASSERT(at == 2 && resumed == saved);
        brg_trainer_destroy(t);
    }
    brg_graph_destroy(g);
}

/* 8 processes for 2 x 2 x 1 ranks: refused on every rank, naming the counts. */
static void test_wrong_job_size(void) {
    brg_model_config cfg;
    brg_graph *g = brg_test_build(SPEC, &cfg);
    brg_train_options o = options(2, 0, 2, 1);
    o.hosting = BRG_HOSTING_MPI;
    brg_trainer *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_STATUS(brg_trainer_create(&t, g, &o, &err), BRG_ERR_INVALID_ARGUMENT);
    char expect[96];
    snprintf(expect, sizeof expect, "%d processes but 2 stages x 1 replicas x 2 tensor-parallel ranks make 4", world_size);
    CU_ASSERT(strstr(err.message, expect) != NULL);
    brg_trainer_destroy(t);
    brg_graph_destroy(g);
}

int main(int argc, char **argv) {
    brg_launch l;
    brg_error err = {0};
    if (brg_launch_init(&l, &err) != BRG_OK) {
        fprintf(stderr, "mpi-tp: %s\n", err.message);
        return 1;
    }
    world_rank = l.rank;
    world_size = l.world;
    if (l.world != 8 && l.world != 16) {
        fprintf(stderr, "mpi-tp: run under mpirun -np 8 or 16 (got %d processes)\n", l.world);
        brg_launch_finalize(&l, 1);
        return 1;
    }
    for (int n = 1; n <= RANKS; n++)
        MPI_Comm_split(MPI_COMM_WORLD, world_rank < n && n <= world_size ? 0 : MPI_UNDEFINED, world_rank, &first_ranks[n]);
    if (world_rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;
    static const brg_test_case cases[] = {
        {"wrong_job_size", test_wrong_job_size},
        {"like_threads_and_one_rank", test_like_threads_and_one_rank},
        {"checkpoint_to_threads", test_checkpoint_to_threads},
        {NULL, NULL},
    };
    static const brg_test_case largest[] = {
        {"like_threads_and_one_rank", test_like_threads_and_one_rank},
        {NULL, NULL},
    };
    int rc = brg_test_main(argc, argv, "mpi-tp", world_size > 8 ? largest : cases);
    int any = 0;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    for (int n = 1; n <= RANKS; n++)
        if (first_ranks[n] != MPI_COMM_NULL) MPI_Comm_free(&first_ranks[n]);
    brg_launch_finalize(&l, 0);
    return any;
}
