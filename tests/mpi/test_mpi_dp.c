/* Data parallelism with one process per rank, run by meson under `mpirun -np 6`: every rank runs every
 * case in the same order; rank 0 prints the CUnit summary.
 *
 * What it shows: for gpt and mlp x dp in {1, 2, 3} x pp in {1, 2} x every schedule x ZeRO-1 off and on,
 * the run on the first dp x pp processes has bitwise the losses and fingerprint of the same layout in
 * threads (the collectives add in one fixed order on every transport), its replicas agree (the
 * fingerprint checks them), and its losses are one replica's at the same global batch within 1e-6
 * relative (tests/runtime/test_dp.c says why not 0); a job of another size is refused; a replica that
 * fails mid all-reduce ends every rank with an error, none hanging. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "brigade.h"
#include "harness.h"
#include "runtime/trainer_internal.h"

#define RANKS 6

static int world_rank;
static MPI_Comm first_ranks[RANKS + 1]; /* [n]: ranks 0..n-1 (MPI_COMM_NULL on the others) */

#define COLLECTIVE(name)                                                                                  \
    static void name##_body(void);                                                                        \
    static void name(void) {                                                                              \
        unsigned before = CU_get_number_of_failures();                                                    \
        name##_body();                                                                                    \
        int mine = CU_get_number_of_failures() > before, any = 0;                                         \
        MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);                                  \
        if (world_rank == 0 && any && !mine) CU_FAIL("an assertion failed on another rank (see its stderr)"); \
    }                                                                                                     \
    static void name##_body(void)

#define build brg_test_build

enum { STEPS = 3, GLOBAL_MICRO_BATCHES = 12 };

typedef struct run_result {
    uint64_t fingerprint;
    double losses[STEPS];
    brg_status status;
    char error[BRG_ERROR_MESSAGE_MAX];
} run_result;

static run_result run(const brg_graph *g, const brg_model_config *cfg, const brg_train_options *o) {
    brg_test_training tr = brg_test_train(g, cfg, o, STEPS, NULL);
    run_result r;
    memset(&r, 0, sizeof r);
    r.status = (brg_status)tr.status;
    snprintf(r.error, sizeof r.error, "%s", tr.error);
    memcpy(r.losses, tr.losses, sizeof r.losses);
    r.fingerprint = tr.fingerprint;
    return r;
}

static brg_train_options options(int pp, int dp, brg_schedule_kind kind, int zero) {
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.micro_batch = 2;
    o.micro_batches = GLOBAL_MICRO_BATCHES / dp;
    o.blas_threads = 1;
    o.lr = 3e-3f;
    o.grad_clip = 0.5f;
    o.timeout_seconds = 60;
    o.stages = pp;
    o.chunks = kind == BRG_SCHEDULE_INTERLEAVED_1F1B ? 2 : 1;
    o.schedule = kind;
    o.data_parallel = dp;
    o.zero = zero;
    o.bucket_bytes = 8192; /* several buckets: sums posted during backward, past the eager limit */
    return o;
}

COLLECTIVE(test_like_threads_and_one_replica) {
    const char *specs[] = {"gpt:layers=4,hidden=32,heads=2,vocab=64,seq=32", "mlp:layers=4,hidden=32,vocab=64,seq=32"};
    const brg_schedule_kind kinds[] = {BRG_SCHEDULE_GPIPE, BRG_SCHEDULE_1F1B, BRG_SCHEDULE_INTERLEAVED_1F1B,
                                       BRG_SCHEDULE_ZB_H1};
    int compared = 0;
    for (size_t m = 0; m < sizeof specs / sizeof specs[0]; m++) {
        brg_model_config cfg;
        brg_graph *g = build(specs[m], &cfg);
        run_result ref = {0};
        brg_train_options ro = options(1, 1, BRG_SCHEDULE_1F1B, 0);
        if (world_rank == 0) ref = run(g, &cfg, &ro);
        for (int dp = 1; dp <= 3; dp++)
            for (int pp = 1; pp <= 2; pp++)
                for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
                    for (int zero = 0; zero <= 1; zero++) {
                        if (pp == 1 && kinds[k] == BRG_SCHEDULE_INTERLEAVED_1F1B) continue;
                        if (dp == 1 && zero) continue; /* ignored with one replica */
                        brg_train_options o = options(pp, dp, kinds[k], zero);
                        run_result threads = {0};
                        if (world_rank == 0) threads = run(g, &cfg, &o);
                        if (first_ranks[pp * dp] == MPI_COMM_NULL) continue; /* this rank sits this one out */
                        o.hosting = BRG_HOSTING_MPI;
                        o.mpi_comm = &first_ranks[pp * dp];
                        run_result mpi = run(g, &cfg, &o);
                        if (mpi.status != BRG_OK)
                            fprintf(stderr, "rank %d: %s dp %d pp %d %s zero %d: %s\n", world_rank, specs[m], dp, pp,
                                    brg_schedule_kind_name(kinds[k]), zero, mpi.error);
                        CU_ASSERT(mpi.status == BRG_OK);
                        if (world_rank != 0) continue;
                        int same = mpi.status == BRG_OK && threads.status == BRG_OK && mpi.fingerprint == threads.fingerprint;
                        int close = ref.status == BRG_OK && mpi.losses[0] == ref.losses[0];
                        for (int s = 0; s < STEPS; s++) {
                            same &= mpi.losses[s] == threads.losses[s];
                            close &= fabs(mpi.losses[s] - ref.losses[s]) <= 1e-6 * fabs(ref.losses[s]);
                        }
                        if (!same || !close)
                            fprintf(stderr, "%s dp %d pp %d %s zero %d: fingerprint mpi %016llx threads %016llx; last loss "
                                            "%.9g %.9g, one replica %.9g\n",
                                    specs[m], dp, pp, brg_schedule_kind_name(kinds[k]), zero,
                                    (unsigned long long)mpi.fingerprint, (unsigned long long)threads.fingerprint,
                                    mpi.losses[STEPS - 1], threads.losses[STEPS - 1], ref.losses[STEPS - 1]);
                        CU_ASSERT(same);
                        CU_ASSERT(close);
                        compared++;
                    }
        brg_graph_destroy(g);
    }
    if (world_rank == 0) BRG_ASSERT_EQ_INT(compared, 2 * (3 + 4 + 2 * (3 * 2 + 4 * 2)));
}

/* 6 processes for 2 stages x 2 replicas: refused on every rank, naming both counts. */
COLLECTIVE(test_wrong_job_size) {
    brg_model_config cfg;
    brg_graph *g = build("mlp:layers=2,hidden=16,vocab=16,seq=8", &cfg);
    brg_train_options o = options(2, 2, BRG_SCHEDULE_1F1B, 0);
    o.hosting = BRG_HOSTING_MPI;
    brg_trainer *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_STATUS(brg_trainer_create(&t, g, &o, &err), BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(err.message, "6 processes but 2 stages x 2 replicas make 4 ranks") != NULL);
    brg_trainer_destroy(t);
    brg_graph_destroy(g);
}

/* Replica 1 fails while its buckets are on their way: every rank of both replicas ends its step with an
 * error (the failing ranks with theirs, the others naming a failed rank), within the timeout's margin. */
COLLECTIVE(test_replica_dies_mid_allreduce) {
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=2,hidden=32,heads=2,vocab=64,seq=32", &cfg);
    brg_train_options o = options(2, 3, BRG_SCHEDULE_1F1B, 1);
    o.hosting = BRG_HOSTING_MPI;
    o.timeout_seconds = 30;
    brg_error err = {0};
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 3, &err), err.message);
    BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
    if (t) {
        brg__trainer_inject_replica_failure(t, 1);
        double start = MPI_Wtime();
        brg_step_stats st;
        brg_status s = brg_trainer_step(t, d, &st);
        CU_ASSERT(s != BRG_OK);
        CU_ASSERT(MPI_Wtime() - start < 20.0); /* the notice, not the 30 s timeout */
        const char *e = brg_trainer_last_error(t);
        CU_ASSERT(strstr(e, "injected failure while summing gradients") != NULL || strstr(e, "failed") != NULL);
    }
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    brg_graph_destroy(g);
}

int main(int argc, char **argv) {
    brg_launch l;
    brg_error err = {0};
    if (brg_launch_init(&l, &err) != BRG_OK) {
        fprintf(stderr, "mpi-dp: %s\n", err.message);
        return 1;
    }
    world_rank = l.rank;
    if (l.world != RANKS) {
        fprintf(stderr, "mpi-dp: run under mpirun -np %d (got %d processes)\n", RANKS, l.world);
        brg_launch_finalize(&l, 1);
        return 1;
    }
    for (int n = 1; n <= RANKS; n++)
        MPI_Comm_split(MPI_COMM_WORLD, world_rank < n ? 0 : MPI_UNDEFINED, world_rank, &first_ranks[n]);
    if (world_rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;
    static const brg_test_case cases[] = {
        {"wrong_job_size", test_wrong_job_size},
        {"like_threads_and_one_replica", test_like_threads_and_one_replica},
        {"replica_dies_mid_allreduce", test_replica_dies_mid_allreduce},
        {NULL, NULL},
    };
    int rc = brg_test_main(argc, argv, "mpi-dp", cases);
    int any = 0;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    for (int n = 1; n <= RANKS; n++)
        if (first_ranks[n] != MPI_COMM_NULL) MPI_Comm_free(&first_ranks[n]);
    brg_launch_finalize(&l, 0);
    return any;
}
