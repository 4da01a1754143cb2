/* Data parallelism in threads: the group collectives of the transport layer, and replicas of the
 * pipeline (with and without ZeRO-1) against one replica training on the same global batch.
 *
 * Tolerance. One replica sums a parameter's gradient over the step's micro-batches in one sequence,
 * ((g0 + g1) + g2) + ...; d replicas sum their own micro-batches, then the d partial sums in replica
 * order. Float addition is not associative, so the sums differ in their last bits (about 1e-7 of the
 * value each), the parameters after the first step with them, and the losses of the later steps by
 * about as much relative to the loss: 1e-6 relative bounds it with room, and is far below what a wrong
 * share of the data, a missed bucket or a wrong shard would give (1e-3 and more on these models). The
 * first step's loss, computed before any update, is bitwise the same. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brigade.h"
#include "brigade/checkpoint.h"
#include "harness.h"
#include "runtime/backend.h"
#include "runtime/trainer_internal.h"
#include "transport/transport.h"

#define build brg_test_build

/* ---- collectives --------------------------------------------------------------------------------- */

enum { MEMBERS = 3 };

typedef struct member {
    brg__transport *tp;
    brg__backend *be;
    int members[MEMBERS];
    int64_t count;
    float *buf[4];  /* one per collective kind */
    double *gathered;
    brg_status status;
    char msg[BRG_ERROR_MESSAGE_MAX];
} member;

static float value_of(int who, int64_t i) { return (float)(0.1 * (who + 1)) + 1e-3f * (float)(i % 97) + 1e-7f * (float)i; }

static void *member_main(void *arg) {
    member *m = arg;
    brg__group *g = NULL;
    m->status = brg__group_create(&g, m->tp, m->be, m->members, MEMBERS, 5, m->msg);
    int me = brg__group_index(g);
    for (int k = 0; k < 4 && m->status == BRG_OK; k++) {
        m->buf[k] = m->be->vt->alloc(m->be, (size_t)(m->count + 1) * sizeof(float));
        for (int64_t i = 0; i < m->count; i++) m->buf[k][i] = value_of(me, i);
        m->status = brg__group_post(g, (brg__collective_kind)k, m->buf[k], m->count, sizeof(float), 1, m->msg);
        if (m->status == BRG_OK) m->status = brg__group_progress(g, m->msg); /* without waiting */
    }
    /* Doubles through ALLGATHER: each member's part is its own. */
    m->gathered = m->be->vt->alloc(m->be, MEMBERS * 2 * sizeof(double));
    for (int j = 0; j < 2; j++) m->gathered[me * 2 + j] = me * 10.0 + j;
    if (m->status == BRG_OK) m->status = brg__group_post(g, BRG__ALLGATHER, m->gathered, MEMBERS * 2, sizeof(double), 0, m->msg);
    if (m->status == BRG_OK) m->status = brg__group_wait_all(g, m->msg);
    if (m->status == BRG_OK && brg__group_pending(g) != 0) m->status = BRG_ERR_INTERNAL;
    brg__group_destroy(g);
    return NULL;
}

/* All-reduce, reduce-scatter, all-gather and broadcast, in flight together, over members listed out of
 * rank order: every member ends with bitwise the sum in member order. */
static void test_collectives(void) {
    const int64_t counts[] = {0, 1, 2, 7, 1000, 100003};
    const int order[MEMBERS] = {2, 0, 1}; /* member i is rank order[i] */
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        for (int rendezvous = 0; rendezvous < 2; rendezvous++) {
            brg__inproc_fabric *f = NULL;
            char msg[BRG_ERROR_MESSAGE_MAX] = "";
            BRG_ASSERT_OK(brg__inproc_fabric_create(&f, MEMBERS, rendezvous ? 0 : 4, 30.0, msg), msg);
            member m[MEMBERS];
            memset(m, 0, sizeof m);
            pthread_t th[MEMBERS];
            for (int r = 0; r < MEMBERS; r++) {
                m[r].tp = brg__inproc_endpoint(f, r);
                BRG_ASSERT_OK(brg__backend_cpu_create(&m[r].be, msg), msg);
                memcpy(m[r].members, order, sizeof order);
                m[r].count = counts[c];
                pthread_create(&th[r], NULL, member_main, &m[r]);
            }
            for (int r = 0; r < MEMBERS; r++) pthread_join(th[r], NULL);
            int64_t n = counts[c];
            for (int r = 0; r < MEMBERS; r++) {
                BRG_ASSERT_OK(m[r].status, m[r].msg);
                if (m[r].status != BRG_OK) continue;
                int me = -1;
                for (int i = 0; i < MEMBERS; i++)
                    if (order[i] == r) me = i;
                int64_t off = 0, len = 0, bad_sum = 0, bad_part = 0, bad_gather = 0, bad_bcast = 0;
                brg__group_part(n, MEMBERS, me, &off, &len);
                for (int64_t i = 0; i < n; i++) {
                    float sum = value_of(0, i);
                    for (int j = 1; j < MEMBERS; j++) sum += value_of(j, i);
                    bad_sum += memcmp(&m[r].buf[BRG__ALLREDUCE][i], &sum, sizeof sum) != 0;
                    if (i >= off && i < off + len) bad_part += memcmp(&m[r].buf[BRG__REDUCE_SCATTER][i], &sum, sizeof sum) != 0;
                    int owner = 0;
                    for (int j = 0; j < MEMBERS; j++) {
                        int64_t o2, l2;
                        brg__group_part(n, MEMBERS, j, &o2, &l2);
                        if (i >= o2 && i < o2 + l2) owner = j;
                    }
                    bad_gather += m[r].buf[BRG__ALLGATHER][i] != value_of(owner, i);
                    bad_bcast += m[r].buf[BRG__BROADCAST][i] != value_of(1, i);
                }
                BRG_ASSERT_EQ_INT(bad_sum, 0);
                BRG_ASSERT_EQ_INT(bad_part, 0);
                BRG_ASSERT_EQ_INT(bad_gather, 0);
                BRG_ASSERT_EQ_INT(bad_bcast, 0);
                for (int j = 0; j < MEMBERS * 2; j++) BRG_ASSERT_NEAR(m[r].gathered[j], (j / 2) * 10.0 + j % 2, 0);
                for (int k = 0; k < 4; k++) m[r].be->vt->free(m[r].be, m[r].buf[k]);
                m[r].be->vt->free(m[r].be, m[r].gathered);
                brg__backend_destroy(m[r].be);
            }
            brg__inproc_fabric_destroy(f);
        }
    }
}

static void *lonely_main(void *arg) {
    member *m = arg;
    brg__group *g = NULL;
    m->status = brg__group_create(&g, m->tp, m->be, m->members, 2, 1, m->msg);
    float x[4] = {1, 2, 3, 4};
    if (m->status == BRG_OK) m->status = brg__group_post(g, BRG__ALLREDUCE, x, 4, sizeof(float), 0, m->msg);
    if (m->status == BRG_OK) m->status = brg__group_wait_all(g, m->msg);
    brg__group_destroy(g);
    return NULL;
}

/* A member that never takes part: the other gives up after the timeout, naming it; bad groups refused. */
static void test_collective_errors(void) {
    brg__inproc_fabric *f = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(brg__inproc_fabric_create(&f, 2, 4, 0.5, msg), msg);
    member m;
    memset(&m, 0, sizeof m);
    m.tp = brg__inproc_endpoint(f, 0);
    BRG_ASSERT_OK(brg__backend_cpu_create(&m.be, msg), msg);
    m.members[0] = 0;
    m.members[1] = 1;
    lonely_main(&m);
    BRG_ASSERT_STATUS(m.status, BRG_ERR_TIMEOUT);
    CU_ASSERT(strstr(m.msg, "receiving from rank 1") != NULL);
    brg__group *g = NULL;
    int twice[2] = {0, 0}, outside[2] = {1, 5};
    BRG_ASSERT_STATUS(brg__group_create(&g, m.tp, m.be, twice, 2, 0, msg), BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(msg, "twice") != NULL);
    BRG_ASSERT_STATUS(brg__group_create(&g, m.tp, m.be, outside, 2, 0, msg), BRG_ERR_INVALID_ARGUMENT);
    brg__backend_destroy(m.be);
    brg__inproc_fabric_destroy(f);
}

/* ---- replicas -------------------------------------------------------------------------------------- */

enum { STEPS = 4, GLOBAL_MICRO_BATCHES = 12 };

typedef struct run_result {
    brg_status status;
    char error[BRG_ERROR_MESSAGE_MAX];
    double losses[STEPS];
    uint64_t fingerprint;
    int64_t memory, moments[8];
    double eval;
} run_result;

static run_result run(const brg_graph *g, const brg_model_config *cfg, const brg_train_options *o) {
    run_result r;
    memset(&r, 0, sizeof r);
    brg_trainer *t = NULL;
    brg_test_training tr = brg_test_train(g, cfg, o, STEPS, &t); /* the fingerprint fails if replicas differ */
    r.status = (brg_status)tr.status;
    snprintf(r.error, sizeof r.error, "%s", tr.error);
    memcpy(r.losses, tr.losses, sizeof r.losses);
    r.fingerprint = tr.fingerprint;
    brg_data *d = NULL;
    if (r.status == BRG_OK) r.status = brg_data_synthetic_create(&d, cfg->vocab, cfg->seq, 3, NULL);
    if (r.status == BRG_OK) r.status = brg_trainer_evaluate(t, d, 6, &r.eval);
    if (r.status == BRG_OK) {
        r.memory = brg_trainer_memory_bytes(t);
        for (int k = 0; k < brg_trainer_rank_count(t) && k < 8; k++) {
            brg_rank_stats rs;
            brg_trainer_rank_stats(t, k, &rs);
            r.moments[k] = rs.moment_bytes;
        }
    }
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    return r;
}

static brg_train_options options(int pp, int dp, brg_schedule_kind kind, int zero) {
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.micro_batch = 1;
    o.micro_batches = GLOBAL_MICRO_BATCHES / dp; /* the same global batch for every dp */
    o.blas_threads = 1;
    o.lr = 3e-3f;
    o.grad_clip = 0.5f; /* active: the global norm across replicas and shards matters */
    o.timeout_seconds = 60;
    o.stages = pp;
    o.chunks = kind == BRG_SCHEDULE_INTERLEAVED_1F1B ? 2 : 1;
    o.schedule = kind;
    o.data_parallel = dp;
    o.zero = zero;
    o.bucket_bytes = 2048; /* several buckets per rank, posted during backward */
    return o;
}

static int close_losses(const run_result *a, const run_result *b) {
    int ok = a->losses[0] == b->losses[0]; /* before any update: bitwise */
    for (int s = 1; s < STEPS; s++) ok &= fabs(a->losses[s] - b->losses[s]) <= 1e-6 * fabs(b->losses[s]);
    if (!ok || getenv("BRG_TEST_VERBOSE"))
        for (int s = 0; s < STEPS; s++) fprintf(stderr, "  step %d: %.9g vs %.9g\n", s + 1, a->losses[s], b->losses[s]);
    return ok;
}

/* dp 1, 2, 3 x pp 1, 2 x every schedule x ZeRO-1 off and on: the replicas agree bitwise (the fingerprint
 * checks every replica's copy), each run is bitwise reproducible, and its losses are one replica's on the
 * same global batch within 1e-6 (the file's first comment says why not 0). */
static void test_matches_one_replica(void) {
    const char *specs[] = {"gpt:layers=4,hidden=16,heads=2,vocab=16,seq=8", "mlp:layers=4,hidden=16,vocab=16,seq=8"};
    const brg_schedule_kind kinds[] = {BRG_SCHEDULE_GPIPE, BRG_SCHEDULE_1F1B, BRG_SCHEDULE_INTERLEAVED_1F1B,
                                       BRG_SCHEDULE_ZB_H1};
    int compared = 0;
    for (size_t m = 0; m < sizeof specs / sizeof specs[0]; m++) {
        brg_model_config cfg;
        brg_graph *g = build(specs[m], &cfg);
        if (!g) continue;
        brg_train_options ro = options(1, 1, BRG_SCHEDULE_1F1B, 0);
        run_result ref = run(g, &cfg, &ro);
        BRG_ASSERT_OK(ref.status, ref.error);
        for (int dp = 1; dp <= 3; dp++)
            for (int pp = 1; pp <= 2; pp++)
                for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
                    for (int zero = 0; zero <= 1; zero++) {
                        if (pp == 1 && kinds[k] == BRG_SCHEDULE_INTERLEAVED_1F1B) continue; /* needs 2 stages */
                        brg_train_options o = options(pp, dp, kinds[k], zero);
                        run_result a = run(g, &cfg, &o);
                        BRG_ASSERT_OK(a.status, a.error);
                        if (a.status != BRG_OK) {
                            fprintf(stderr, "  %s dp %d pp %d %s zero %d\n", specs[m], dp, pp, brg_schedule_kind_name(kinds[k]), zero);
                            continue;
                        }
                        int close = close_losses(&a, &ref);
                        if (!close)
                            fprintf(stderr, "  %s dp %d pp %d %s zero %d\n", specs[m], dp, pp, brg_schedule_kind_name(kinds[k]), zero);
                        CU_ASSERT(close);
                        /* Evaluation shares its batches among the replicas and adds them in batch order. */
                        CU_ASSERT(fabs(a.eval - ref.eval) <= 1e-6 * ref.eval);
                        if (kinds[k] == BRG_SCHEDULE_1F1B || dp == 3) { /* reproducible, run to run */
                            run_result b = run(g, &cfg, &o);
                            CU_ASSERT(b.status == BRG_OK && b.fingerprint == a.fingerprint);
                            for (int s = 0; s < STEPS; s++) CU_ASSERT(b.losses[s] == a.losses[s]);
                        }
                        compared++;
                    }
        brg_graph_destroy(g);
    }
    BRG_ASSERT_EQ_INT(compared, 2 * (2 * 3 * 4 + 3 * 3 * 2));
}

/* Bucket sizes change when sums are posted, never what they add: the same bits from one bucket per rank
 * as from many; and a layout with the replicas' ranks interleaved trains bitwise alike. */
static void test_buckets_and_layout(void) {
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=4,hidden=16,heads=2,vocab=16,seq=8", &cfg);
    if (!g) return;
    brg_train_options o = options(2, 2, BRG_SCHEDULE_1F1B, 0);
    run_result small = run(g, &cfg, &o);
    o.bucket_bytes = 0; /* 4 MiB: one bucket */
    run_result one = run(g, &cfg, &o);
    int layout[4] = {0, 2, 1, 3}; /* replica 0 on ranks 0 and 2, replica 1 on 1 and 3 */
    o.rank_layout = layout;
    run_result laid = run(g, &cfg, &o);
    BRG_ASSERT_OK(small.status, small.error);
    BRG_ASSERT_OK(one.status, one.error);
    BRG_ASSERT_OK(laid.status, laid.error);
    CU_ASSERT(small.fingerprint == one.fingerprint);
    CU_ASSERT(small.fingerprint == laid.fingerprint);
    int bad[4] = {0, 1, 1, 3};
    o.rank_layout = bad;
    run_result r = run(g, &cfg, &o);
    BRG_ASSERT_STATUS(r.status, BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(r.error, "rank_layout") != NULL && strstr(r.error, "each of the 4 ranks once") != NULL);
    brg_graph_destroy(g);
}

/* ZeRO-1 keeps 1/d of the moments on each rank: the rank figures say so, and the arena holds that much
 * less. ZeRO-1 with one replica changes nothing. */
static void test_zero_memory(void) {
    brg_model_config cfg;
    brg_graph *g = build("mlp:layers=4,hidden=64,vocab=16,seq=8", &cfg);
    if (!g) return;
    for (int dp = 2; dp <= 3; dp++) {
        brg_train_options o = options(1, dp, BRG_SCHEDULE_1F1B, 0);
        run_result full = run(g, &cfg, &o);
        o.zero = 1;
        run_result zero = run(g, &cfg, &o);
        BRG_ASSERT_OK(full.status, full.error);
        BRG_ASSERT_OK(zero.status, zero.error);
        for (int r = 0; r < dp; r++) {
            /* ceil(count / d) per bucket: within one element per bucket of the exact share */
            double share = (double)full.moments[r] / dp;
            CU_ASSERT(fabs((double)zero.moments[r] - share) <= 64.0 * 8);
            CU_ASSERT(zero.moments[r] < full.moments[r] / dp + 64 * 8);
        }
        int64_t saved = 0;
        for (int r = 0; r < dp; r++) saved += full.moments[r] - zero.moments[r];
        /* The arena's statistics: what ZeRO-1 does not hold, as jemalloc rounds each allocation up to its
         * size class (at most a quarter more). */
        CU_ASSERT(llabs((full.memory - zero.memory) - saved) <= saved / 4);
        fprintf(stderr, "  dp %d: moments per rank %lld -> %lld bytes; arena %lld -> %lld bytes\n", dp,
                (long long)full.moments[0], (long long)zero.moments[0], (long long)full.memory, (long long)zero.memory);
    }
    brg_train_options o = options(1, 1, BRG_SCHEDULE_1F1B, 0);
    run_result plain = run(g, &cfg, &o);
    o.zero = 1;
    run_result noted = run(g, &cfg, &o);
    CU_ASSERT(plain.status == BRG_OK && noted.status == BRG_OK && plain.fingerprint == noted.fingerprint);
    brg_graph_destroy(g);
}

/* A failure in one replica's forward ends every rank of every replica with it, none hanging in a sum. */
static void test_replica_failure(void) {
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=2,hidden=16,heads=2,vocab=16,seq=8", &cfg);
    if (!g) return;
    brg_train_options o = options(2, 2, BRG_SCHEDULE_1F1B, 1);
    brg_error err = {0};
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 3, &err), err.message);
    BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
    if (t) {
        brg__trainer_inject_failure(t, 1, 5); /* stage 1, the last micro-batch: every replica's */
        brg_step_stats st;
        BRG_ASSERT_STATUS(brg_trainer_step(t, d, &st), BRG_ERR_BACKEND);
        CU_ASSERT(strstr(brg_trainer_last_error(t), "injected") != NULL);
    }
    brg_trainer_destroy(t);
    /* A replica that fails mid all-reduce: the other's ranks stop too, with the failing rank's message. */
    t = NULL;
    BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
    if (t) {
        brg__trainer_inject_replica_failure(t, 1);
        brg_step_stats st;
        BRG_ASSERT_STATUS(brg_trainer_step(t, d, &st), BRG_ERR_BACKEND);
        CU_ASSERT(strstr(brg_trainer_last_error(t), "replica 1): injected failure while summing gradients") != NULL);
    }
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    o.data_parallel = 0;
    BRG_ASSERT_STATUS(brg_trainer_create(&t, g, &o, &err), BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(err.message, "data_parallel") != NULL);
    brg_graph_destroy(g);
}

/* Save with ZeRO-1 (the moments gathered from the replicas), resume into a fresh trainer: the rest of the
 * run is bitwise the uninterrupted one; and a checkpoint saved with 2 replicas resumes with 1 and 3. */
static void test_zero_checkpoint(void) {
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=2,hidden=16,heads=2,vocab=16,seq=8", &cfg);
    if (!g) return;
    char root[512];
    brg_test_tmp_path(root, sizeof root, "dp-checkpoint");
    brg_error err = {0};
    brg_data *d = NULL;
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 3, &err), err.message);
    uint64_t fps[4] = {0};
    int variants[4][2] = {{2, -1}, {2, 2}, {1, 2}, {3, 2}}; /* {replicas, replicas of the run resumed from} */
    for (int v = 0; v < 4; v++) {
        brg_train_options o = options(1, variants[v][0], BRG_SCHEDULE_1F1B, 1);
        brg_trainer *t = NULL;
        BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
        if (!t) continue;
        brg_step_stats st;
        int64_t at = 0;
        if (variants[v][1] < 0) {
            for (int s = 0; s < 2; s++) BRG_ASSERT_OK(brg_trainer_step(t, d, &st), brg_trainer_last_error(t));
            BRG_ASSERT_OK(brg_checkpoint_save(t, root, NULL, &err), err.message);
        } else {
            BRG_ASSERT_OK(brg_checkpoint_resume(t, root, NULL, &at, &err), err.message);
            BRG_ASSERT_EQ_INT(at, 2);
        }
        for (int s = 0; s < 2; s++) BRG_ASSERT_OK(brg_trainer_step(t, d, &st), brg_trainer_last_error(t));
        BRG_ASSERT_OK(brg_trainer_fingerprint(t, &fps[v]), brg_trainer_last_error(t));
        brg_trainer_destroy(t);
    }
    CU_ASSERT(fps[1] == fps[0]);
    CU_ASSERT(fps[2] != 0 && fps[3] != 0); /* other replica counts sum in another order: close, not bitwise */
    brg_data_destroy(d);
    brg_graph_destroy(g);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"collectives", test_collectives},
        {"collective_errors", test_collective_errors},
        {"matches_one_replica", test_matches_one_replica},
        {"buckets_and_layout", test_buckets_and_layout},
        {"zero_memory", test_zero_memory},
        {"replica_failure", test_replica_failure},
        {"zero_checkpoint", test_zero_checkpoint},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "data-parallel", cases);
}
