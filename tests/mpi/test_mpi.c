/* The MPI transport and one process per stage, run by meson under `mpirun -np 4`: every rank runs every
 * case in the same order (a case is collective); rank 0 prints the CUnit summary, and a failure on any
 * rank fails the case on rank 0 too.
 *
 * What it shows: for gpt, mlp and skipnet x every schedule x pp in {2, 3, 4} x every recompute policy,
 * the losses and fingerprint of the MPI run are bitwise those of the in-process run and of one stage
 * (with tensors above MPI's eager limit, so sends complete only once their receive is posted); a peer's
 * failure ends every rank at once with its rank named; a peer that never sends ends in a timeout naming
 * it; tags and sizes that do not match are errors; ranks started differently are refused at creation.
 * Validation (forward passes only) gives the same loss too. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "brigade.h"
#include "harness.h"
#include "runtime/trainer_internal.h"
#include "transport/transport.h"

#define RANKS 4

static int world_rank, world_size;
static MPI_Comm first_ranks[RANKS + 1]; /* [pp]: ranks 0..pp-1 (MPI_COMM_NULL on the others) */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wraps a collective case: a failed assertion on any rank fails it on rank 0, which reports. */
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

typedef struct run_result {
    uint64_t fingerprint;
    double losses[2];
    double val; /* brg_trainer_evaluate over 3 micro-batches after the steps */
    brg_status status;
    char error[BRG_ERROR_MESSAGE_MAX];
} run_result;

/* Trains two steps; the losses come to every rank, the fingerprint too (collective under MPI). */
static run_result run(const brg_graph *g, const brg_model_config *cfg, const brg_train_options *o) {
    run_result r;
    memset(&r, 0, sizeof r);
    brg_error err = {0};
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    r.status = brg_data_synthetic_create(&d, cfg->vocab, cfg->seq, 3, &err);
    if (r.status == BRG_OK) r.status = brg_trainer_create(&t, g, o, &err);
    if (r.status != BRG_OK) snprintf(r.error, sizeof r.error, "%s", err.message);
    for (int s = 0; s < 2 && r.status == BRG_OK; s++) {
        brg_step_stats st;
        r.status = brg_trainer_step(t, d, &st);
        if (r.status != BRG_OK) snprintf(r.error, sizeof r.error, "%s", brg_trainer_last_error(t));
        r.losses[s] = st.loss;
    }
    if (r.status == BRG_OK && (r.status = brg_trainer_evaluate(t, d, 3, &r.val)) != BRG_OK)
        snprintf(r.error, sizeof r.error, "%s", brg_trainer_last_error(t));
    if (r.status == BRG_OK) r.status = brg_trainer_fingerprint(t, &r.fingerprint);
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    return r;
}

static brg_train_options base_options(void) {
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.micro_batch = 2;
    o.micro_batches = 12; /* a multiple of every stage count, as interleaving needs */
    o.blas_threads = 1;
    o.lr = 3e-3f;
    o.timeout_seconds = 60;
    return o;
}

static int same_run(const run_result *a, const run_result *b) {
    return a->status == BRG_OK && b->status == BRG_OK && a->fingerprint == b->fingerprint &&
           a->losses[0] == b->losses[0] && a->losses[1] == b->losses[1] && a->val == b->val;
}

/* Every model x schedule x pp x recompute: MPI = threads = one stage, bitwise. Activations of 32 x 32
 * floats per sample (8 KiB a micro-batch) pass Open MPI's shared-memory eager limit (4 KiB): those sends
 * complete only once their receive is posted. */
COLLECTIVE(test_bitwise_like_threads) {
    const char *specs[] = {"gpt:layers=4,hidden=32,heads=2,vocab=64,seq=32", "mlp:layers=8,hidden=32,vocab=64,seq=32",
                           "skipnet:layers=3,hidden=32,vocab=64,seq=32"};
    const brg_schedule_kind kinds[] = {BRG_SCHEDULE_GPIPE, BRG_SCHEDULE_1F1B, BRG_SCHEDULE_INTERLEAVED_1F1B,
                                       BRG_SCHEDULE_ZB_H1};
    const brg_recompute policies[] = {BRG_RECOMPUTE_NONE, BRG_RECOMPUTE_FULL, BRG_RECOMPUTE_SELECTIVE};
    int compared = 0;
    for (size_t m = 0; m < sizeof specs / sizeof specs[0]; m++) {
        brg_model_config cfg;
        brg_graph *g = build(specs[m], &cfg);
        brg_train_options o = base_options();
        run_result one = {0};
        if (world_rank == 0) {
            one = run(g, &cfg, &o);
            BRG_ASSERT_OK(one.status, one.error);
        }
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
            for (int pp = 2; pp <= RANKS; pp++)
                for (size_t r = 0; r < sizeof policies / sizeof policies[0]; r++) {
                    o = base_options();
                    o.schedule = kinds[k];
                    o.stages = pp;
                    o.chunks = kinds[k] == BRG_SCHEDULE_INTERLEAVED_1F1B ? 2 : 1;
                    o.recompute = policies[r];
                    run_result threads = {0};
                    if (world_rank == 0) threads = run(g, &cfg, &o);
                    if (first_ranks[pp] == MPI_COMM_NULL) continue; /* this rank sits this one out */
                    o.hosting = BRG_HOSTING_MPI;
                    o.mpi_comm = &first_ranks[pp];
                    run_result mpi = run(g, &cfg, &o);
                    if (mpi.status != BRG_OK)
                        fprintf(stderr, "rank %d: %s, %s, pp=%d, recompute %d: %s\n", world_rank, specs[m],
                                brg_schedule_kind_name(kinds[k]), pp, (int)policies[r], mpi.error);
                    CU_ASSERT(mpi.status == BRG_OK);
                    if (world_rank != 0) continue;
                    int ok = same_run(&mpi, &threads) && same_run(&mpi, &one);
                    if (!ok)
                        fprintf(stderr,
                                "%s, %s, pp=%d, recompute %d: fingerprint mpi %016llx threads %016llx one stage "
                                "%016llx; loss %.9g %.9g %.9g\n",
                                specs[m], brg_schedule_kind_name(kinds[k]), pp, (int)policies[r],
                                (unsigned long long)mpi.fingerprint, (unsigned long long)threads.fingerprint,
                                (unsigned long long)one.fingerprint, mpi.losses[1], threads.losses[1], one.losses[1]);
                    CU_ASSERT(ok);
                    compared++;
                }
        brg_graph_destroy(g);
    }
    if (world_rank == 0) BRG_ASSERT_EQ_INT(compared, 3 * 4 * 3 * 3);
}

/* A rank whose kernel fails stops every other at once: they name it, long before their timeout. */
COLLECTIVE(test_failure_stops_every_rank) {
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=4,hidden=32,heads=2,vocab=64,seq=32", &cfg);
    brg_train_options o = base_options();
    o.stages = RANKS;
    o.hosting = BRG_HOSTING_MPI;
    o.timeout_seconds = 600;
    brg_error err = {0};
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 3, &err), err.message);
    BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
    brg__trainer_inject_failure(t, 2, 5); /* stage 2 is rank 2's */
    brg_step_stats st;
    double start = now_seconds();
    brg_status s = brg_trainer_step(t, d, &st);
    double took = now_seconds() - start;
    const char *why = brg_trainer_last_error(t);
    if (world_rank == 2) {
        BRG_ASSERT_STATUS(s, BRG_ERR_BACKEND);
        BRG_ASSERT_CONTAINS(why, "injected kernel failure");
    } else {
        BRG_ASSERT_STATUS(s, BRG_ERR_CANCELLED);
        BRG_ASSERT_CONTAINS(why, "rank 2 failed");
    }
    CU_ASSERT(took < 60); /* the notice, not the 600 s timeout, ended it */
    BRG_ASSERT_STATUS(brg_trainer_step(t, d, &st), s); /* in error from then on */
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    brg_graph_destroy(g);
}

/* Ranks started with other options, another model or other flags are refused before any step, on every
 * rank, naming the rank that differs. */
COLLECTIVE(test_inconsistent_ranks_refused) {
    brg_model_config cfg, other_cfg;
    brg_graph *g = build("gpt:layers=4,hidden=32,heads=2,vocab=64,seq=32", &cfg);
    brg_graph *other = build("gpt:layers=4,hidden=32,heads=4,vocab=64,seq=32", &other_cfg);
    for (int what = 0; what < 3; what++) {
        brg_train_options o = base_options();
        o.stages = RANKS;
        o.hosting = BRG_HOSTING_MPI;
        if (what == 0 && world_rank == 3) o.lr = 1e-2f;
        if (what == 2 && world_rank == 1) o.consistency_key = 42;
        const brg_graph *mine = what == 1 && world_rank == 2 ? other : g;
        brg_trainer *t = NULL;
        brg_error err = {0};
        BRG_ASSERT_STATUS(brg_trainer_create(&t, mine, &o, &err), BRG_ERR_INVALID_ARGUMENT);
        CU_ASSERT(t == NULL);
        const char *expect[3] = {"rank 3 was started with other training options",
                                 "rank 2 was started with other model", "rank 1 was started with other command-line"};
        BRG_ASSERT_CONTAINS(err.message, expect[what]);
    }
    /* A pipeline of another size than the job. */
    brg_train_options o = base_options();
    o.stages = 3;
    o.hosting = BRG_HOSTING_MPI;
    brg_trainer *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_STATUS(brg_trainer_create(&t, g, &o, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "the job has 4 processes but the pipeline 3 stages");
    brg_graph_destroy(g);
    brg_graph_destroy(other);
}

static brg__transport *endpoint(MPI_Comm *comm, double timeout) {
    brg__transport *t = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(brg__mpi_transport_create(&t, comm, timeout, msg), msg);
    return t;
}

/* Point to point between ranks 0 and 1: messages in several pieces arrive whole and in order; a tag or a
 * size that differs is an error with both; a message never sent is a timeout naming the peer. */
COLLECTIVE(test_point_to_point) {
    if (first_ranks[2] == MPI_COMM_NULL) return;
    brg__transport *t = endpoint(&first_ranks[2], 2.0);
    if (!t) return;
    BRG_ASSERT_EQ_INT(t->ranks, 2);
    BRG_ASSERT_EQ_INT(t->rank, world_rank);
    int peer = 1 - t->rank;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    enum { N = 100000 };
    float *a = malloc(N * sizeof *a), *b = calloc(N, sizeof *b);
    for (int i = 0; i < N; i++) a[i] = (float)i * 0.5f;
    brg__mpi_set_piece_bytes(4096); /* 98 pieces */
    brg__request *r1 = NULL, *r2 = NULL;
    if (t->rank == 0) {
        BRG_ASSERT_OK(t->vt->post_send(t, peer, 7, a, N * sizeof *a, &r1), "send");
        BRG_ASSERT_OK(t->vt->post_send(t, peer, 8, a, 16, &r2), "send");
        BRG_ASSERT_OK(t->vt->wait(t, r1, msg), msg);
        BRG_ASSERT_OK(t->vt->wait(t, r2, msg), msg);
    } else {
        BRG_ASSERT_OK(t->vt->post_recv(t, peer, 7, b, N * sizeof *b, &r1), "recv");
        BRG_ASSERT_OK(t->vt->post_recv(t, peer, 8, b + N - 4, 16, &r2), "recv");
        BRG_ASSERT_OK(t->vt->wait(t, r1, msg), msg);
        BRG_ASSERT_OK(t->vt->wait(t, r2, msg), msg);
        CU_ASSERT(memcmp(a, b, (N - 4) * sizeof *a) == 0);
        CU_ASSERT(memcmp(a, b + N - 4, 16) == 0);
    }
    brg__mpi_set_piece_bytes(0);
    /* A tag that differs; then a size that differs. */
    if (t->rank == 0) {
        BRG_ASSERT_OK(t->vt->post_send(t, peer, 100, a, 64, &r1), "send");
        BRG_ASSERT_OK(t->vt->wait(t, r1, msg), msg);
        BRG_ASSERT_OK(t->vt->post_send(t, peer, 101, a, 64, &r1), "send");
        BRG_ASSERT_OK(t->vt->wait(t, r1, msg), msg);
    } else {
        BRG_ASSERT_OK(t->vt->post_recv(t, peer, 999, b, 64, &r1), "recv");
        BRG_ASSERT_STATUS(t->vt->wait(t, r1, msg), BRG_ERR_TRANSPORT);
        BRG_ASSERT_CONTAINS(msg, "tag 00000000000003e7");
        BRG_ASSERT_OK(t->vt->post_recv(t, peer, 101, b, 32, &r1), "recv");
        BRG_ASSERT_STATUS(t->vt->wait(t, r1, msg), BRG_ERR_TRANSPORT);
    }
    MPI_Barrier(first_ranks[2]);
    /* Rank 1 waits for a message rank 0 never sends: a timeout after 2 s naming rank 0. */
    if (t->rank == 1) {
        BRG_ASSERT_OK(t->vt->post_recv(t, 0, 5, b, 64, &r1), "recv");
        BRG_ASSERT_STATUS(t->vt->wait(t, r1, msg), BRG_ERR_TIMEOUT);
        BRG_ASSERT_CONTAINS(msg, "rank 1 waited 2 s for rank 0");
    }
    MPI_Barrier(first_ranks[2]);
    /* A broadcast from rank 1, and the ranks' places on this node. */
    int value = t->rank == 1 ? 1234 : 0, local = -1, locals = 0;
    BRG_ASSERT_OK(brg__mpi_transport_bcast(t, &value, sizeof value, 1, msg), msg);
    BRG_ASSERT_EQ_INT(value, 1234);
    BRG_ASSERT_OK(brg__mpi_transport_local_rank(t, &local, &locals, msg), msg);
    BRG_ASSERT_EQ_INT(local, t->rank);
    BRG_ASSERT_EQ_INT(locals, 2);
    /* A peer out of range, and to self. */
    BRG_ASSERT_STATUS(t->vt->post_send(t, 2, 1, a, 4, &r1), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(t->vt->post_recv(t, t->rank, 1, b, 4, &r1), BRG_ERR_INVALID_ARGUMENT);
    free(a);
    free(b);
    MPI_Barrier(first_ranks[2]);
    t->vt->destroy(t);
}

/* A stop on one rank reaches every other's waits, which name it. */
COLLECTIVE(test_stop_notice) {
    brg__transport *t = endpoint(NULL, 600);
    if (!t) return;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    float x = 0;
    if (t->rank == 3) {
        t->vt->stop_all(t, BRG_ERR_BACKEND);
    } else {
        brg__request *r = NULL;
        BRG_ASSERT_OK(t->vt->post_recv(t, 3, 1, &x, sizeof x, &r), "recv");
        BRG_ASSERT_STATUS(t->vt->wait(t, r, msg), BRG_ERR_CANCELLED);
        BRG_ASSERT_CONTAINS(msg, "rank 3 failed");
        /* Later posts are refused at once. */
        BRG_ASSERT_STATUS(t->vt->post_send(t, 3, 1, &x, sizeof x, &r), BRG_ERR_CANCELLED);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    t->vt->destroy(t);
}

int main(int argc, char **argv) {
    brg_launch l;
    brg_error err = {0};
    if (brg_launch_init(&l, &err) != BRG_OK) {
        fprintf(stderr, "mpi: %s\n", err.message);
        return 1;
    }
    world_rank = l.rank;
    world_size = l.world;
    if (world_size != RANKS) {
        fprintf(stderr, "mpi: run under mpirun -np %d (got %d processes, launcher %s)\n", RANKS, world_size,
                l.launcher);
        brg_launch_finalize(&l, 1);
        return 1;
    }
    for (int pp = 1; pp <= RANKS; pp++)
        MPI_Comm_split(MPI_COMM_WORLD, world_rank < pp ? 0 : MPI_UNDEFINED, world_rank, &first_ranks[pp]);
    if (world_rank != 0 && !freopen("/dev/null", "w", stdout)) return 1; /* one CUnit summary: rank 0's */
    static const brg_test_case cases[] = {
        {"point_to_point", test_point_to_point},
        {"stop_notice", test_stop_notice},
        {"inconsistent_ranks_refused", test_inconsistent_ranks_refused},
        {"failure_stops_every_rank", test_failure_stops_every_rank},
        {"bitwise_like_threads", test_bitwise_like_threads},
        {NULL, NULL},
    };
    int rc = brg_test_main(argc, argv, "mpi", cases);
    int any = 0;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    for (int pp = 1; pp <= RANKS; pp++)
        if (first_ranks[pp] != MPI_COMM_NULL) MPI_Comm_free(&first_ranks[pp]);
    brg_launch_finalize(&l, 0);
    return any;
}
