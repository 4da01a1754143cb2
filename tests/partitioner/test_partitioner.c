/* The partitioner: the search against brute force, placements on uneven links, the memory model against
 * the runtime's measurements, plan files and their errors, infeasible requests, reports and profiles. */
#include <jansson.h>
#include <jemalloc/jemalloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brigade.h"
#include "harness.h"
#include "plan_test.h"
#include "partitioner/partitioner_internal.h"
#include "runtime/trainer_internal.h"

#define SMALL_GPT "gpt:layers=4,hidden=64,heads=4,vocab=64,seq=32"

static brg_graph *build(const char *spec) {
    brg_model_config cfg;
    brg_graph *g = NULL;
    brg_error err = {0};
    if (brg_model_parse(spec, &cfg, &err) != BRG_OK || brg_model_build(&cfg, &g, &err) != BRG_OK) {
        fprintf(stderr, "building %s: %s\n", spec, err.message);
        return NULL;
    }
    return g;
}

/* ---- helpers --------------------------------------------------------------------------------------- */

static void test_alloc_round_matches_jemalloc(void) {
    unsigned arena;
    size_t size = sizeof arena;
    CU_ASSERT_FATAL(mallctl("arenas.create", &arena, &size, NULL, 0) == 0);
    int flags = (int)MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE | MALLOCX_ALIGN(64);
    int mismatches = 0;
    for (int64_t b = 1; b < (INT64_C(1) << 24); b = b < 3000 ? b + 1 : b + b / 61 + 7) {
        void *p = mallocx((size_t)b, flags);
        int64_t real = (int64_t)sallocx(p, 0);
        dallocx(p, MALLOCX_TCACHE_NONE);
        if (real != brg__alloc_round(BRG_DEVICE_CPU, b) && mismatches++ < 5)
            fprintf(stderr, "%lld bytes: jemalloc %lld, model %lld\n", (long long)b, (long long)real,
                    (long long)brg__alloc_round(BRG_DEVICE_CPU, b));
    }
    BRG_ASSERT_EQ_INT(mismatches, 0);
    BRG_ASSERT_EQ_INT(brg__alloc_round(BRG_DEVICE_GPU, 1), 256);
    BRG_ASSERT_EQ_INT(brg__alloc_round(BRG_DEVICE_GPU, 257), 512);
}

static void test_format_helpers(void) {
    char buf[64];
    brg__format_devices((int[]){0, 1, 2, 3}, 4, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "0-3");
    brg__format_devices((int[]){0, 64, 128, 192}, 4, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "0,64,...,192 (4)");
    brg__format_devices((int[]){0, 2, 3, 7}, 4, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "0,2-3,7");
    brg__format_bytes(1.5e9, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "1.50 GB");
    brg__format_seconds(0.0123, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "12.30 ms");
    brg_recompute r;
    BRG_ASSERT_OK(brg_recompute_from_name("selective", &r), "");
    BRG_ASSERT_EQ_INT(r, BRG_RECOMPUTE_SELECTIVE);
    BRG_ASSERT_STATUS(brg_recompute_from_name("some", &r), BRG_ERR_NAME);
    CU_ASSERT_STRING_EQUAL(brg_recompute_name((brg_recompute)9), "unknown");
}

/* ---- the memory model against the runtime ---------------------------------------------------------- */

typedef struct memory_case {
    const char *spec;
    int stages, chunks;
    brg_schedule_kind kind;
    brg_recompute policy[8]; /* per virtual stage */
    int replicas, zero;      /* data parallelism (0: one replica) */
} memory_case;

/* Predicts each rank's activation peak for the case and trains two steps to measure it. The model follows
 * the runtime allocation by allocation (each rounded by jemalloc's size classes), so the two agree to the
 * byte today; the 2% allowed leaves room for an allocator built with other size classes, while anything
 * structural (a buffer missed, a wrong in-flight count) moves the peak by a whole micro-batch's
 * activations: more than 5% in every case here. */
static void check_memory_case(const memory_case *mc) {
    brg_graph *g = build(mc->spec);
    int d = mc->replicas ? mc->replicas : 1;
    brg_topology *t = brg_test_cpu_node(mc->stages * d, 8000000000ULL, 0);
    CU_ASSERT_FATAL(g && t);
    int S = mc->stages * mc->chunks, mb = 2 * mc->stages, b = 2;
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    o.global_batch = mb * b * d;
    brg_error err = {0};
    brg__model *m = NULL;
    brg__batch_table *bt = NULL;
    brg__schedule_cache *sc = NULL;
    const brg__schedule_entry *se = NULL;
    brg__plan_placement p;
    BRG_ASSERT_OK(brg__model_create(&m, g, t, &o, &err), err.message);
    BRG_ASSERT_OK(brg__batch_table_create(m, b, &bt), "");
    BRG_ASSERT_OK(brg__schedule_cache_create(&sc), "");
    brg_schedule_options so = BRG_SCHEDULE_OPTIONS_INIT;
    so.kind = mc->kind;
    so.stages = mc->stages;
    so.chunks = mc->chunks;
    so.micro_batches = mb;
    BRG_ASSERT_OK(brg__schedule_cache_get(sc, &so, &se, &err), err.message);
    BRG_ASSERT_OK(brg__plan_placement_device_order(m, mc->stages, d, &p), "");
    int first[16];
    BRG_ASSERT_OK(brg__balanced_split(g, S, first), "");
    first[S] = brg_graph_layer_count(g);
    brg__config c = {mc->stages, d, mc->chunks, b, mb, mc->kind, mc->zero, 1, 0};
    brg__evaluation e;
    BRG_ASSERT_OK(brg__evaluation_alloc(&e, S, mc->stages), "");
    BRG_ASSERT_OK(brg__evaluate(m, bt, se, &c, &p, first, mc->policy, &e), "");

    brg_data *data = NULL;
    brg_trainer *tr = NULL;
    brg_model_config cfg;
    brg_model_parse(mc->spec, &cfg, &err);
    BRG_ASSERT_OK(brg_data_synthetic_create(&data, cfg.vocab, cfg.seq, 1, &err), err.message);
    brg_train_options to = BRG_TRAIN_OPTIONS_INIT;
    to.stages = mc->stages;
    to.chunks = mc->chunks;
    to.schedule = mc->kind;
    to.micro_batch = b;
    to.micro_batches = mb;
    to.split = first + 1;
    to.split_count = S - 1;
    to.stage_recompute = mc->policy;
    to.stage_recompute_count = S;
    to.data_parallel = d;
    to.zero = mc->zero;
    BRG_ASSERT_OK(brg_trainer_create(&tr, g, &to, &err), err.message);
    for (int step = 0; step < 2 && tr; step++) BRG_ASSERT_OK(brg_trainer_step(tr, data, NULL), brg_trainer_last_error(tr));
    for (int k = 0; tr && k < mc->stages * d; k++) {
        brg_rank_stats rs;
        brg_trainer_rank_stats(tr, k, &rs);
        int r = rs.stage;
        double predicted = (double)e.rank_activation[r], measured = (double)rs.activation_peak_bytes;
        double total = (double)e.rank_total[r];
        if (d > 1 && rs.moment_bytes != e.rank_moment_bytes[r] && rs.replica == 0) {
            fprintf(stderr, "%s, d %d zero %d, rank %d: moments predicted %lld measured %lld\n", mc->spec, d, mc->zero, r,
                    (long long)e.rank_moment_bytes[r], (long long)rs.moment_bytes);
            CU_FAIL("moment bytes");
        }
        int ok = fabs(predicted - measured) <= 0.02 * measured && fabs(total - (double)rs.peak_bytes) <= 0.02 * (double)rs.peak_bytes;
        if (!ok)
            fprintf(stderr, "%s, %s, p %d v %d d %d zero %d, rank %d replica %d: activations predicted %.0f measured %.0f; "
                            "peak predicted %.0f measured %lld\n",
                    mc->spec, brg_schedule_kind_name(mc->kind), mc->stages, mc->chunks, d, mc->zero, r, rs.replica,
                    predicted, measured, total, (long long)rs.peak_bytes);
        CU_ASSERT(ok);
    }
    brg_trainer_destroy(tr);
    brg_data_destroy(data);
    brg__evaluation_free(&e);
    brg__plan_placement_free(&p);
    brg__schedule_cache_destroy(sc);
    brg__batch_table_destroy(bt);
    brg__model_destroy(m);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
}

static void test_memory_matches_runtime(void) {
    const brg_recompute N = BRG_RECOMPUTE_NONE, F = BRG_RECOMPUTE_FULL, S = BRG_RECOMPUTE_SELECTIVE;
    const char *models[] = {"gpt:layers=6,hidden=64,heads=4,vocab=64,seq=32", "skipnet:layers=3,hidden=64,vocab=64,seq=32"};
    int cases = 0;
    for (int mi = 0; mi < 2; mi++)
        for (int kind = 0; kind < BRG_SCHEDULE_KIND_COUNT; kind++)
            for (int pol = 0; pol < 4; pol++) {
                memory_case mc = {models[mi], kind == BRG_SCHEDULE_INTERLEAVED_1F1B ? 2 : 4,
                                  kind == BRG_SCHEDULE_INTERLEAVED_1F1B ? 2 : 1, (brg_schedule_kind)kind, {N}, 0, 0};
                for (int s = 0; s < 8; s++) {
                    static const brg_recompute mixed[4] = {BRG_RECOMPUTE_FULL, BRG_RECOMPUTE_NONE, BRG_RECOMPUTE_SELECTIVE,
                                                           BRG_RECOMPUTE_NONE};
                    mc.policy[s] = pol == 0 ? N : pol == 1 ? F : pol == 2 ? S : mixed[s % 4];
                }
                check_memory_case(&mc);
                cases++;
            }
    BRG_ASSERT_EQ_INT(cases, 32);
}

/* The same with replicas: the gradient buckets, the reduction's scratch, and ZeRO-1's moment parts in
 * place of whole moments, as the runtime allocates them (engine/runtime/dp.c). */
static void test_memory_matches_runtime_data_parallel(void) {
    const brg_recompute N = BRG_RECOMPUTE_NONE;
    const char *models[] = {"gpt:layers=6,hidden=64,heads=4,vocab=64,seq=32", "skipnet:layers=3,hidden=64,vocab=64,seq=32"};
    int cases = 0;
    for (int mi = 0; mi < 2; mi++)
        for (int pp = 1; pp <= 2; pp++)
            for (int d = 2; d <= 3; d++)
                for (int zero = 0; zero <= 1; zero++) {
                    memory_case mc = {models[mi], pp, 1, BRG_SCHEDULE_1F1B, {N, N, N, N, N, N, N, N}, d, zero};
                    check_memory_case(&mc);
                    cases++;
                }
    BRG_ASSERT_EQ_INT(cases, 16);
}

/* Per-stage recomputation (the runtime's extension for plans) trains bitwise like one stage. */
static void test_per_stage_recompute_bitwise(void) {
    brg_graph *g = build("gpt:layers=4,hidden=32,heads=2,vocab=32,seq=16");
    CU_ASSERT_FATAL(g != NULL);
    brg_error err = {0};
    uint64_t reference = 0;
    static const brg_recompute policies[4] = {BRG_RECOMPUTE_FULL, BRG_RECOMPUTE_NONE, BRG_RECOMPUTE_SELECTIVE,
                                              BRG_RECOMPUTE_FULL};
    for (int run = 0; run < 3; run++) {
        brg_data *data = NULL;
        brg_trainer *tr = NULL;
        brg_data_synthetic_create(&data, 32, 16, 7, &err);
        brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
        o.micro_batch = 2;
        o.micro_batches = 4;
        if (run > 0) {
            o.stages = 4;
            o.schedule = run == 1 ? BRG_SCHEDULE_1F1B : BRG_SCHEDULE_ZB_H1;
            o.stage_recompute = policies;
            o.stage_recompute_count = 4;
        }
        BRG_ASSERT_OK(brg_trainer_create(&tr, g, &o, &err), err.message);
        for (int s = 0; tr && s < 3; s++) BRG_ASSERT_OK(brg_trainer_step(tr, data, NULL), brg_trainer_last_error(tr));
        uint64_t fp = 0;
        if (tr) brg_trainer_fingerprint(tr, &fp);
        if (run == 0) reference = fp;
        else CU_ASSERT(fp == reference && fp != 0);
        brg_trainer_destroy(tr);
        brg_data_destroy(data);
    }
    /* A wrong count or policy is refused. */
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    brg_trainer *tr = NULL;
    o.stages = 2;
    o.stage_recompute = policies;
    o.stage_recompute_count = 3;
    BRG_ASSERT_STATUS(brg_trainer_create(&tr, g, &o, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "stage_recompute");
    brg_graph_destroy(g);
}

/* ---- the search against brute force ---------------------------------------------------------------- */

static uint64_t next_random(uint64_t *s) { return brg__splitmix64(s); }
static int random_int(uint64_t *s, int lo, int hi) { return lo + (int)(next_random(s) % (uint64_t)(hi - lo + 1)); }

/* A chain of `hidden` linear + relu layers of random widths between an embedding and a head. */
static brg_graph *random_graph(uint64_t *rng, int hidden) {
    static const int64_t widths[] = {16, 32, 64, 128, 256};
    brg_graph *g = NULL;
    brg_graph_create(&g);
    int64_t T = random_int(rng, 0, 1) ? 8 : 16, V = 32;
    brg_tensor *tok = brg_input(g, "tokens", BRG_I32, 2, (int64_t[]){BRG_BATCH, T});
    brg_tensor *tgt = brg_input(g, "targets", BRG_I32, 2, (int64_t[]){BRG_BATCH, T});
    brg_tensor *h = brg_embedding(g, tok, V, widths[random_int(rng, 0, 4)], "wte");
    for (int l = 0; l < hidden; l++) {
        brg_layer_begin(g, "fc.%d", l);
        h = brg_relu(g, brg_linear(g, h, widths[random_int(rng, 0, 4)], "linear"), "relu");
        brg_layer_end(g);
    }
    brg_layer_begin(g, "head");
    brg_cross_entropy(g, brg_linear(g, h, V, "linear"), tgt, "loss");
    brg_layer_end(g);
    if (brg_graph_finalize(g) != BRG_OK) {
        fprintf(stderr, "%s\n", brg_graph_last_error(g));
        brg_graph_destroy(g);
        return NULL;
    }
    return g;
}

/* n devices on one node with random compute; each pair joined by a fast or a slow link. */
static brg_topology *random_topology(uint64_t *rng, int n) {
    brg_topology *t = NULL;
    brg_error err = {0};
    if (brg_topology_create_custom(&t, 1, n, "cpu", &err) != BRG_OK) return NULL;
    double peak = 2e9 * random_int(rng, 1, 20), bandwidth = 2e9 * random_int(rng, 1, 10);
    for (int d = 0; d < n; d++) {
        brg_device_info info;
        brg_topology_device_info(t, d, &info);
        info.memory_bytes = 8000000000ULL;
        info.peak_flops[BRG_PRECISION_FP32] = peak;
        info.memory_bandwidth = bandwidth;
        brg_topology_set_device(t, d, &info);
    }
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++) {
            int fast = random_int(rng, 0, 1);
            brg_link l = {fast ? BRG_LINK_NVLINK : BRG_LINK_PCIE_HOST, fast ? 4e10 : 1e9, fast ? 2e-6 : 2e-5};
            brg_topology_set_link(t, a, b, &l);
        }
    brg_topology_finalize(t);
    return t;
}

typedef struct memo_entry {
    uint64_t key;
    double value;
} memo_entry;

typedef struct memo {
    memo_entry *entries;
    size_t capacity, count;
} memo;

static int memo_get(const memo *mm, uint64_t key, double *value) {
    for (size_t i = key % mm->capacity;; i = (i + 1) % mm->capacity) {
        if (!mm->entries[i].key) return 0;
        if (mm->entries[i].key == key) {
            *value = mm->entries[i].value;
            return 1;
        }
    }
}

static void memo_put(memo *mm, uint64_t key, double value) {
    if (2 * (mm->count + 1) > mm->capacity) {
        memo grown = {calloc(mm->capacity * 2, sizeof(memo_entry)), mm->capacity * 2, 0};
        for (size_t i = 0; i < mm->capacity; i++)
            if (mm->entries[i].key) memo_put(&grown, mm->entries[i].key, mm->entries[i].value);
        free(mm->entries);
        *mm = grown;
    }
    size_t i = key % mm->capacity;
    while (mm->entries[i].key) i = (i + 1) % mm->capacity;
    mm->entries[i] = (memo_entry){key, value};
    mm->count++;
}

static uint64_t evaluation_key(const brg__evaluation *e, int ranks) {
    uint64_t h = BRG__FNV_OFFSET;
    int S = e->stages;
    h = brg__fnv1a(h, e->forward, sizeof(double) * (size_t)S);
    h = brg__fnv1a(h, e->backward_input, sizeof(double) * (size_t)S);
    h = brg__fnv1a(h, e->backward_weight, sizeof(double) * (size_t)S);
    h = brg__fnv1a(h, e->transfer, sizeof(double) * (size_t)(S - 1));
    h = brg__fnv1a(h, e->allreduce, sizeof(double) * (size_t)ranks);
    h = brg__fnv1a(h, e->optimizer, sizeof(double) * (size_t)ranks);
    return h ? h : 1;
}

typedef struct brute {
    const brg__model *m;
    const brg__batch_table *bt;
    const brg__schedule_entry *se;
    const brg__config *c;
    brg__evaluation e;
    memo cache;
    double best;
    int64_t candidates, simulations, bound_violations;
} brute;

/* Every cut vector of the remaining stages, for one placement. */
static void brute_cuts(brute *bf, const brg__plan_placement *p, int *first, int s) {
    int L = bf->m->layers, S = bf->c->ranks * bf->c->chunks;
    if (s == S) {
        brg_recompute policy[64];
        if (brg__choose_policies(bf->m, bf->bt, bf->se, bf->c, p, first, policy) <= 0) return;
        brg__evaluate(bf->m, bf->bt, bf->se, bf->c, p, first, policy, &bf->e);
        if (!bf->e.feasible) return;
        bf->candidates++;
        uint64_t key = evaluation_key(&bf->e, bf->c->ranks);
        double makespan;
        if (!memo_get(&bf->cache, key, &makespan)) {
            brg__simulate(bf->se, &bf->e, &makespan, NULL, NULL);
            memo_put(&bf->cache, key, makespan);
            bf->simulations++;
        }
        /* The search prunes with this bound: it must never exceed the simulated time. */
        if (bf->e.lower_bound > makespan * (1 + 1e-9)) bf->bound_violations++;
        if (makespan < bf->best) bf->best = makespan;
        return;
    }
    for (int e = first[s] + 1; e <= L - (S - 1 - s); e++) {
        if (s == S - 1 && e != L) continue;
        first[s + 1] = e;
        brute_cuts(bf, p, first, s + 1);
    }
}

static double binomial(int n, int k) { return k < 0 || k > n ? 0 : exp(lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0)); }

/* One random case: the search's best against every placement and every cut. Returns 1 when it was run. */
static int64_t brute_candidates, brute_placements, brute_devices_8;

/* The best simulated time of configuration c over every assignment of devices (replica labels are
 * interchangeable: only assignments whose rank-0 devices ascend) and every cut; INFINITY when none fits. */
static double brute_force_config(brg__model *model, const brg__config *c, int64_t *bound_violations) {
    brg_error err = {0};
    int n = model->devices, S = c->ranks * c->chunks;
    brg__batch_table *bt = NULL;
    brg__schedule_cache *sc = NULL;
    const brg__schedule_entry *se = NULL;
    brg__batch_table_create(model, c->micro_batch, &bt);
    brg__schedule_cache_create(&sc);
    brg_schedule_options so = brg__config_schedule_options(c);
    brg__schedule_cache_get(sc, &so, &se, &err);
    brute bf = {model, bt, se, c, {0}, {calloc(1024, sizeof(memo_entry)), 1024, 0}, INFINITY, 0, 0, 0};
    brg__evaluation_alloc(&bf.e, S, c->ranks);
    brg__plan_placement p, *seen = calloc(40320, sizeof *seen);
    int seen_count = 0;
    brg__plan_placement_alloc(&p, c->ranks, c->replicas);
    int perm[8];
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int more = 1; more; more = brg_test_next_permutation(perm, n)) {
        int canonical = 1;
        for (int r = 1; r < c->replicas; r++) canonical &= perm[r] > perm[r - 1];
        if (!canonical) continue;
        memcpy(p.devices, perm, sizeof(int) * (size_t)n);
        brg__plan_placement_describe(model, &p, 1);
        int duplicate = 0;
        for (int k = 0; k < seen_count && !duplicate; k++) duplicate = brg__plan_placement_equivalent(&seen[k], &p);
        if (duplicate) continue;
        brg__plan_placement_alloc(&seen[seen_count], c->ranks, c->replicas);
        brg__plan_placement *q = &seen[seen_count++];
        memcpy(q->devices, p.devices, sizeof(int) * (size_t)n);
        brg__plan_placement_describe(model, q, 1);
        int first[64] = {0};
        brute_cuts(&bf, q, first, 0);
    }
    /* The bound that orders and prunes configurations holds too. */
    double config_bound = brg__config_lower_bound(model, c, bt);
    if (isfinite(bf.best) && config_bound > bf.best * (1 + 1e-9)) {
        fprintf(stderr, "p %d x d %d, %s (v %d), b %lld x m %lld: configuration bound %.9g above the best %.9g\n",
                c->ranks, c->replicas, brg_schedule_kind_name(c->kind), c->chunks, (long long)c->micro_batch,
                (long long)c->micro_batches, config_bound, bf.best);
        (*bound_violations)++;
    }
    *bound_violations += bf.bound_violations;
    brute_candidates += bf.candidates;
    brute_placements += seen_count;
    for (int k = 0; k < seen_count; k++) brg__plan_placement_free(&seen[k]);
    free(seen);
    brg__plan_placement_free(&p);
    brg__evaluation_free(&bf.e);
    free(bf.cache.entries);
    brg__schedule_cache_destroy(sc);
    brg__batch_table_destroy(bt);
    return bf.best;
}

/* One random case: the search's best against brute force. With free_config, the schedule, chunks and
 * micro-batch size are left to the search and the brute force tries every one of them too. */
static int brute_force_case(uint64_t seed, int free_config, int *exhaustive_cases) {
    uint64_t rng = seed;
    int n = random_int(&rng, 2, free_config ? 4 : 8);
    int divisors[8], nd = 0;
    for (int d = 1; d <= n; d++)
        if (n % d == 0) divisors[nd++] = d;
    int ranks = divisors[random_int(&rng, 0, nd - 1)], replicas = n / ranks;
    brg_schedule_kind kind = (brg_schedule_kind)random_int(&rng, 0, 3);
    if (ranks == 1 && kind == BRG_SCHEDULE_INTERLEAVED_1F1B) kind = BRG_SCHEDULE_1F1B;
    int chunks = kind == BRG_SCHEDULE_INTERLEAVED_1F1B ? 2 : 1, S = ranks * chunks;
    /* Layers: enough for the stages, few enough that the brute force stays small. */
    int max_layers = free_config ? 7 : 12;
    while (max_layers > S && binomial(max_layers - 1, S - 1) * (ranks >= 4 ? 64 : 8) > 6000) max_layers--;
    int layers = random_int(&rng, S > 3 ? S : 3, max_layers > S ? max_layers : S);
    if (layers < 3) layers = 3;
    int64_t b = random_int(&rng, 1, 2), m = random_int(&rng, 1, 6);
    if (kind == BRG_SCHEDULE_INTERLEAVED_1F1B || free_config) m = (int64_t)ranks * random_int(&rng, 1, 2);
    brg_graph *g = random_graph(&rng, layers - 2);
    brg_topology *t = random_topology(&rng, n);
    if (!g || !t) {
        brg_graph_destroy(g);
        brg_topology_destroy(t);
        CU_FAIL("building a random case failed");
        return 0;
    }
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    o.global_batch = replicas * b * m;
    o.pipeline_stages = ranks;
    o.data_parallel = replicas;
    if (!free_config) {
        o.micro_batch = b;
        o.schedule = kind;
        o.chunks = chunks;
    }
    o.alternatives = 0;
    o.pass_overhead_seconds = 1e-6 * random_int(&rng, 0, 20);
    brg_error err = {0};
    brg_plan *plan = NULL;
    BRG_ASSERT_OK(brg_plan_search(g, t, &o, &plan, &err), err.message);
    brg_plan_summary sm = {0};
    if (plan) brg_plan_get_summary(plan, &sm);
    *exhaustive_cases += sm.exhaustive;
    brg__model *model = NULL;
    brg__model_create(&model, g, t, &o, &err);
    double best = INFINITY;
    int64_t violations = 0;
    if (!free_config) {
        for (int z = 0; z <= (replicas > 1); z++) { /* ZeRO-1 off and on, as the search weighs it */
            brg__config c = {ranks, replicas, chunks, b, m, kind, z, 1, 0};
            best = fmin(best, brute_force_config(model, &c, &violations));
        }
    } else {
        int64_t per_replica = o.global_batch / replicas;
        for (int64_t bb = 1; bb <= per_replica; bb++) {
            if (per_replica % bb) continue;
            int64_t mm = per_replica / bb;
            for (int k = 0; k < BRG_SCHEDULE_KIND_COUNT; k++)
                for (int v = 1; v <= 4; v++) {
                    int interleaved = k == BRG_SCHEDULE_INTERLEAVED_1F1B;
                    if (interleaved != (v > 1) || (interleaved && (ranks < 2 || mm % ranks || ranks * v > layers))) continue;
                    for (int z = 0; z <= (replicas > 1); z++) {
                        brg__config c = {ranks, replicas, v, bb, mm, (brg_schedule_kind)k, z, 1, 0};
                        best = fmin(best, brute_force_config(model, &c, &violations));
                    }
                }
        }
    }
    brute_devices_8 += n == 8;
    double search = sm.iteration_seconds;
    int ok = plan && isfinite(best) && search <= best * 1.001 && search >= best * (1 - 1e-9);
    if (!ok)
        fprintf(stderr, "seed %llu: %d devices, p %d x d %d, %s, b %lld x m %lld, %d layers%s: search %.9g s (%s, b %lld), "
                        "brute force %.9g s\n",
                (unsigned long long)seed, n, ranks, replicas, brg_schedule_kind_name(kind), (long long)b, (long long)m,
                layers, free_config ? " (schedule and micro-batch free)" : "", search, brg_schedule_kind_name(sm.schedule),
                (long long)sm.micro_batch, best);
    CU_ASSERT(ok);
    if (violations)
        fprintf(stderr, "seed %llu: a lower bound exceeded the simulated time %lld times\n", (unsigned long long)seed,
                (long long)violations);
    BRG_ASSERT_EQ_INT(violations, 0);
    brg__model_destroy(model);
    brg_plan_destroy(plan);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
    return 1;
}

static void test_search_matches_brute_force(void) {
    int cases = 0, exhaustive = 0;
    const char *only = getenv("BRG_TEST_CASE_SEED");
    for (uint64_t seed = 1; seed <= 220; seed++)
        if (!only || (uint64_t)atoll(only) == seed) cases += brute_force_case(seed * 0x9e3779b97f4a7c15ULL, 0, &exhaustive);
    printf("\n    %d random cases checked against brute force (%d searched exhaustively; %lld distinct placements and %lld "
           "cut-and-placement candidates in all; %lld cases on 8 devices)\n",
           cases, exhaustive, (long long)brute_placements, (long long)brute_candidates, (long long)brute_devices_8);
    CU_ASSERT(only || cases >= 200);
    BRG_ASSERT_EQ_INT(exhaustive, cases);
    /* Schedule, chunks and micro-batch left to the search: the bounds that rank configurations hold too. */
    int free_cases = 0, free_exhaustive = 0;
    for (uint64_t seed = 1; seed <= 40 && !only; seed++)
        free_cases += brute_force_case(seed * 0xbf58476d1ce4e5b9ULL, 1, &free_exhaustive);
    printf("    %d more with the schedule and micro-batch free (%d exhaustive)\n", free_cases, free_exhaustive);
    BRG_ASSERT_EQ_INT(free_exhaustive, free_cases);
}

/* ---- topology ------------------------------------------------------------------------------------ */

/* Models whose activations outweigh their parameters: neighbours should talk over the fast links. */
#define NARROW_GPT "gpt:layers=8,hidden=64,heads=4,vocab=256,seq=256"
#define WIDE_GPT "gpt:layers=8,hidden=256,heads=4,vocab=256,seq=1024"

static void check_neighbours_on_fast_links(brg_graph *g, brg_topology *t, int pp, int dp, brg_link_kind fast,
                                           double margin) {
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    o.global_batch = 64;
    o.pipeline_stages = pp;
    o.data_parallel = dp;
    brg_error err = {0};
    brg_plan *plan = NULL, *blind = NULL;
    BRG_ASSERT_OK(brg_plan_search(g, t, &o, &plan, &err), err.message);
    o.flags = BRG_PLAN_TOPOLOGY_BLIND;
    BRG_ASSERT_OK(brg_plan_search(g, t, &o, &blind, &err), err.message);
    CU_ASSERT_FATAL(plan && blind);
    brg_plan_summary a, b;
    brg_plan_get_summary(plan, &a);
    brg_plan_get_summary(blind, &b);
    for (int s = 0; s + 1 < a.pipeline_stages * a.chunks; s++) {
        brg_plan_stage st;
        brg_plan_get_stage(plan, s, &st);
        if (st.boundary_link != fast)
            fprintf(stderr, "stage %d sends over %s, not %s\n", s, brg_link_kind_name(st.boundary_link), brg_link_kind_name(fast));
        CU_ASSERT(st.boundary_link == fast);
        CU_ASSERT(!st.boundary_crosses_nodes);
    }
    printf("\n    topology-aware %.4f s, device order %.4f s (%.1f%% slower)\n", a.iteration_seconds, b.iteration_seconds,
           100.0 * (b.iteration_seconds / a.iteration_seconds - 1.0));
    CU_ASSERT(a.iteration_seconds * (1.0 + margin) < b.iteration_seconds);
    /* The report's comparison shows the same baseline. */
    brg_plan_comparison row;
    BRG_ASSERT_OK(brg_plan_get_comparison(plan, 1, &row), "");
    CU_ASSERT_STRING_EQUAL(row.label, "topology-blind placement");
    CU_ASSERT(row.iteration_seconds > a.iteration_seconds);
    brg_plan_destroy(plan);
    brg_plan_destroy(blind);
}

static void test_topology_power8(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/topologies/power8gpudistances.xml", brg_test_fixtures());
    brg_topology *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_topology_load_xml(&t, path, NULL, &err), err.message);
    brg_graph *g = build(NARROW_GPT);
    CU_ASSERT_FATAL(t && g);
    /* NVLink joins 0-1 and 2-3; device order would put the pipeline across the sockets. */
    check_neighbours_on_fast_links(g, t, 2, 2, BRG_LINK_NVLINK, 0.03);
    brg_graph_destroy(g);
    brg_topology_destroy(t);
}

static void test_topology_slow_network(void) {
    /* Two nodes of two GPUs joined by 10 Gb/s Ethernet. */
    brg_topology *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_topology_create_custom(&t, 2, 2, "h100-sxm", &err), err.message);
    for (int a = 0; a < 2; a++)
        for (int b = 2; b < 4; b++) {
            brg_link l = {BRG_LINK_NETWORK, 1.25e9, 2e-5};
            BRG_ASSERT_OK(brg_topology_set_link(t, a, b, &l), "");
        }
    BRG_ASSERT_OK(brg_topology_finalize(t), "");
    brg_graph *g = build(WIDE_GPT);
    CU_ASSERT_FATAL(g != NULL);
    check_neighbours_on_fast_links(g, t, 2, 2, BRG_LINK_NVSWITCH, 0.10);
    brg_graph_destroy(g);
    brg_topology_destroy(t);
}

/* ---- feasibility and bad requests ---------------------------------------------------------------- */

static void test_infeasible_memory(void) {
    brg_graph *g = build("gpt:layers=8,hidden=256,heads=4,vocab=1024,seq=64");
    brg_topology *t = brg_test_cpu_node(4, 40000000ULL, 0); /* 40 MB per device; the model's state is ~120 MB */
    CU_ASSERT_FATAL(g && t);
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    o.global_batch = 8;
    o.pipeline_stages = 1;
    o.tensor_parallel = 1; /* pipeline and data parallelism only (test_tensor_parallel_plan.c: the rest) */
    brg_error err = {0};
    brg_plan *plan = NULL;
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INFEASIBLE);
    CU_ASSERT(plan == NULL);
    printf("\n    %s\n", err.message);
    BRG_ASSERT_CONTAINS(err.message, "stage 0");
    BRG_ASSERT_CONTAINS(err.message, "needs");
    BRG_ASSERT_CONTAINS(err.message, "offers");
    BRG_ASSERT_CONTAINS(err.message, "it fits with 4 pipeline stages");
    /* Recomputation as the smallest change. */
    o.pipeline_stages = 4;
    o.recompute = BRG_RECOMPUTE_NONE;
    o.micro_batch = 16;
    o.global_batch = 64;
    brg_topology_destroy(t);
    t = brg_test_cpu_node(4, 130000000ULL, 0);
    brg_status s = brg_plan_search(g, t, &o, &plan, &err);
    if (s == BRG_ERR_INFEASIBLE) {
        printf("    %s\n", err.message);
        BRG_ASSERT_CONTAINS(err.message, "it fits with full recomputation");
    } else {
        CU_FAIL("130 MB devices with 16-sample micro-batches and no recomputation should not fit");
        brg_plan_destroy(plan);
        plan = NULL;
    }
    /* Nothing fits at all. */
    brg_topology_destroy(t);
    t = brg_test_cpu_node(4, 2000000ULL, 0);
    o = (brg_plan_options)BRG_PLAN_OPTIONS_INIT;
    o.global_batch = 8;
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INFEASIBLE);
    BRG_ASSERT_CONTAINS(err.message, "no change");
    brg_topology_destroy(t);
    brg_graph_destroy(g);
}

static void test_impossible_constraints(void) {
    brg_graph *g = build(SMALL_GPT);
    brg_topology *t = brg_test_cpu_node(4, 8000000000ULL, 0);
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    brg_error err = {0};
    brg_plan *plan = NULL;
    o.global_batch = 16;
    o.pipeline_stages = 3;
    o.tensor_parallel = 1; /* p x d = the devices */
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INFEASIBLE);
    BRG_ASSERT_CONTAINS(err.message, "do not divide the topology's 4 devices");
    o.pipeline_stages = 2;
    o.data_parallel = 1;
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INFEASIBLE);
    BRG_ASSERT_CONTAINS(err.message, "2 stages x 1 replicas = 2 devices");
    o = (brg_plan_options)BRG_PLAN_OPTIONS_INIT;
    o.global_batch = 6;
    o.data_parallel = 4;
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INFEASIBLE);
    BRG_ASSERT_CONTAINS(err.message, "does not divide among 4 data-parallel replicas");
    o.global_batch = 16;
    o.micro_batch = 3;
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INFEASIBLE);
    BRG_ASSERT_CONTAINS(err.message, "micro-batch of 3");
    o = (brg_plan_options)BRG_PLAN_OPTIONS_INIT;
    o.global_batch = 16;
    o.schedule = BRG_SCHEDULE_INTERLEAVED_1F1B;
    o.pipeline_stages = 4;
    o.chunks = 4; /* 16 virtual stages for 8 layers */
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INFEASIBLE);
    BRG_ASSERT_CONTAINS(err.message, "virtual stages");
    CU_ASSERT(plan == NULL);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
}

static void test_bad_arguments(void) {
    brg_graph *g = build(SMALL_GPT);
    brg_topology *t = brg_test_cpu_node(2, 8000000000ULL, 0);
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    brg_error err = {0};
    brg_plan *plan = NULL;
    o.global_batch = 8;
    BRG_ASSERT_STATUS(brg_plan_search(NULL, t, &o, &plan, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_search(g, NULL, &o, &plan, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_search(g, t, NULL, &plan, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    o.global_batch = 0;
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "global_batch");
    o.global_batch = 8;
    o.compute_efficiency = 0;
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "compute_efficiency");
    o.compute_efficiency = 0.7;
    o.flags = 64;
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INVALID_ARGUMENT);
    o.flags = 0;
    o.precision = BRG_PRECISION_BF16; /* CPU devices have no bf16 figures */
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INFEASIBLE);
    BRG_ASSERT_CONTAINS(err.message, "bf16");
    brg_graph *open = NULL;
    brg_graph_create(&open);
    o.precision = BRG_PLAN_PRECISION_AUTO;
    BRG_ASSERT_STATUS(brg_plan_search(open, t, &o, &plan, &err), BRG_ERR_INVALID_USAGE);
    brg_graph_destroy(open);
    CU_ASSERT(plan == NULL);
    /* Accessors on NULL and out of range. */
    brg_plan_summary sm;
    brg_plan_stage st;
    brg_plan_rank rk;
    brg_plan_comparison row;
    BRG_ASSERT_STATUS(brg_plan_get_summary(NULL, &sm), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_get_stage(NULL, 0, &st), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_get_rank(NULL, 0, &rk), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_get_comparison(NULL, 0, &row), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_EQ_INT(brg_plan_comparison_count(NULL), 0);
    BRG_ASSERT_EQ_INT(brg_plan_model_fingerprint(NULL), 0);
    char *text = NULL;
    BRG_ASSERT_STATUS(brg_plan_report_text(NULL, &text), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_to_json(NULL, &text), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_save(NULL, "x", &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_load(NULL, &plan, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_load_string(NULL, NULL, &plan, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_check(NULL, g, t, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_write_report(NULL, "x.md", &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_plan_write_trace(NULL, "x.json", &err), BRG_ERR_INVALID_ARGUMENT);
    brg_plan_destroy(NULL);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
}

/* ---- plan files -------------------------------------------------------------------------------------- */

static brg_plan *small_plan(brg_graph *g, brg_topology *t, int dp) {
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    o.global_batch = 16;
    o.data_parallel = dp;
    o.model_name = SMALL_GPT;
    brg_error err = {0};
    brg_plan *plan = NULL;
    BRG_ASSERT_OK(brg_plan_search(g, t, &o, &plan, &err), err.message);
    return plan;
}

static void test_plan_roundtrip_and_train_options(void) {
    brg_graph *g = build(SMALL_GPT);
    brg_topology *t = brg_test_cpu_node(4, 8000000000ULL, 0);
    brg_plan *plan = small_plan(g, t, 1);
    CU_ASSERT_FATAL(plan != NULL);
    char path[512], *a = NULL, *b = NULL;
    brg_test_tmp_path(path, sizeof path, "plan.json");
    brg_error err = {0};
    BRG_ASSERT_OK(brg_plan_save(plan, path, &err), err.message);
    brg_plan *loaded = NULL;
    BRG_ASSERT_OK(brg_plan_load(path, &loaded, &err), err.message);
    CU_ASSERT_FATAL(loaded != NULL);
    BRG_ASSERT_OK(brg_plan_to_json(plan, &a), "");
    BRG_ASSERT_OK(brg_plan_to_json(loaded, &b), "");
    CU_ASSERT(a && b && strcmp(a, b) == 0);
    BRG_ASSERT_OK(brg_plan_check(loaded, g, t, &err), err.message);
    brg_plan_summary s1, s2;
    brg_plan_get_summary(plan, &s1);
    brg_plan_get_summary(loaded, &s2);
    BRG_ASSERT_EQ_INT(s2.pipeline_stages, s1.pipeline_stages);
    BRG_ASSERT_NEAR(s2.iteration_seconds, s1.iteration_seconds, 1e-12);
    CU_ASSERT(s2.predicted);
    /* The loaded plan reports on the terminal, but has no timeline for pictures. */
    char *text = NULL;
    BRG_ASSERT_OK(brg_plan_report_text(loaded, &text), "");
    BRG_ASSERT_CONTAINS(text, "STAGES");
    free(text);
    char md[512];
    brg_test_tmp_path(md, sizeof md, "loaded.md");
    BRG_ASSERT_STATUS(brg_plan_write_report(loaded, md, &err), BRG_ERR_INVALID_USAGE);
    /* Training options: what the runtime needs, split and per-stage recomputation included. */
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    int split[64];
    brg_recompute policy[64];
    BRG_ASSERT_OK(brg_plan_train_options(loaded, g, &o, split, 64, policy, 64, &err), err.message);
    BRG_ASSERT_EQ_INT(o.stages, s1.pipeline_stages);
    BRG_ASSERT_EQ_INT(o.micro_batch * o.micro_batches, 16);
    BRG_ASSERT_EQ_INT(o.split_count, s1.pipeline_stages * s1.chunks - 1);
    BRG_ASSERT_EQ_INT(o.stage_recompute_count, s1.pipeline_stages * s1.chunks);
    BRG_ASSERT_EQ_INT(o.backend, BRG_BACKEND_CPU);
    for (int s = 1; s < s1.pipeline_stages * s1.chunks; s++) {
        brg_plan_stage st;
        brg_plan_get_stage(plan, s, &st);
        BRG_ASSERT_EQ_INT(split[s - 1], st.first_layer);
    }
    /* It trains. */
    brg_trainer *tr = NULL;
    brg_data *data = NULL;
    brg_data_synthetic_create(&data, 64, 32, 1, &err);
    BRG_ASSERT_OK(brg_trainer_create(&tr, g, &o, &err), err.message);
    if (tr) BRG_ASSERT_OK(brg_trainer_step(tr, data, NULL), brg_trainer_last_error(tr));
    brg_trainer_destroy(tr);
    brg_data_destroy(data);
    BRG_ASSERT_STATUS(brg_plan_train_options(loaded, g, &o, split, 0, policy, 64, &err), BRG_ERR_INVALID_ARGUMENT);
    /* Two replicas: the options and the plan's rank layout train, every replica alike. */
    brg_plan *wide = small_plan(g, t, 2);
    BRG_ASSERT_OK(brg_plan_train_options(wide, g, &o, split, 64, policy, 64, &err), err.message);
    BRG_ASSERT_EQ_INT(o.data_parallel, 2);
    int layout[64], ranks = 0;
    BRG_ASSERT_OK(brg_plan_rank_layout(wide, layout, 64, &ranks), "layout");
    BRG_ASSERT_EQ_INT(ranks, o.stages * 2);
    BRG_ASSERT_STATUS(brg_plan_rank_layout(wide, layout, 1, &ranks), BRG_ERR_INVALID_ARGUMENT);
    o.rank_layout = layout;
    brg_data_synthetic_create(&data, 64, 32, 1, &err);
    BRG_ASSERT_OK(brg_trainer_create(&tr, g, &o, &err), err.message);
    uint64_t fp = 0;
    if (tr) BRG_ASSERT_OK(brg_trainer_step(tr, data, NULL), brg_trainer_last_error(tr));
    if (tr) BRG_ASSERT_OK(brg_trainer_fingerprint(tr, &fp), brg_trainer_last_error(tr));
    brg_trainer_destroy(tr);
    brg_data_destroy(data);
    brg_plan_destroy(wide);
    free(a);
    free(b);
    unlink(path);
    brg_plan_destroy(loaded);
    brg_plan_destroy(plan);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
}

static void test_plan_for_other_model_or_topology(void) {
    brg_graph *g = build(SMALL_GPT), *other = build("gpt:layers=3,hidden=64,heads=4,vocab=64,seq=32");
    brg_topology *t = brg_test_cpu_node(2, 8000000000ULL, 0), *t4 = brg_test_cpu_node(4, 8000000000ULL, 0);
    brg_plan *plan = small_plan(g, t, 1);
    CU_ASSERT_FATAL(plan && other && t4);
    brg_error err = {0};
    BRG_ASSERT_STATUS(brg_plan_check(plan, other, t, &err), BRG_ERR_MISMATCH);
    BRG_ASSERT_CONTAINS(err.message, "another model");
    BRG_ASSERT_STATUS(brg_plan_check(plan, g, t4, &err), BRG_ERR_MISMATCH);
    BRG_ASSERT_CONTAINS(err.message, "another topology");
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    int split[8];
    brg_recompute policy[8];
    BRG_ASSERT_STATUS(brg_plan_train_options(plan, other, &o, split, 8, policy, 8, &err), BRG_ERR_MISMATCH);
    CU_ASSERT(brg_plan_model_fingerprint(g) != brg_plan_model_fingerprint(other));
    brg_plan_destroy(plan);
    brg_topology_destroy(t);
    brg_topology_destroy(t4);
    brg_graph_destroy(g);
    brg_graph_destroy(other);
}

/* Loads `json` (an edit of a good plan) and expects `status` with `needle` in the message. */
static void test_plan_file_errors(void) {
    brg_graph *g = build(SMALL_GPT);
    brg_topology *t = brg_test_cpu_node(4, 8000000000ULL, 0);
    brg_plan *plan = small_plan(g, t, 1);
    char *good = NULL;
    BRG_ASSERT_OK(brg_plan_to_json(plan, &good), "");
    CU_ASSERT_FATAL(good != NULL);
    brg_test_expect_plan_load_error("{\"format\": \"brigade-plan\",\n  \"version\": 1,,\n}", BRG_ERR_PARSE, "plan.json:2:16: malformed JSON");
    brg_test_expect_plan_load_error("[1, 2]", BRG_ERR_PARSE, "plan.json:1:1");
    brg_test_expect_plan_load_error("{\"format\": \"brigade-cluster\", \"version\": 1}", BRG_ERR_MISMATCH, "not a brigade plan");
    struct edit {
        const char *from, *to;
        brg_status status;
        const char *needle;
    } edits[] = {
        {"\"version\": 1", "\"version\": 2", BRG_ERR_MISMATCH, "plan version 2"},
        {"\"global_batch\": 16", "\"global_batch\": 17", BRG_ERR_PARSE, "global_batch"},
        {"\"global_batch\": 16", "\"global_batch\": \"16\"", BRG_ERR_PARSE, "global_batch: must be a whole number, not a string"},
        {"\"schedule\": \"", "\"schedule\": \"x", BRG_ERR_PARSE, "unknown schedule"},
        {"\"precision\": \"fp32\"", "\"precision\": \"fp64\"", BRG_ERR_PARSE, "unknown precision 'fp64'"},
        {"\"recompute\": \"", "\"recompute\": \"some", BRG_ERR_PARSE, "stages[0].recompute: unknown policy"},
        {"\"first_layer\": 0", "\"first_layer\": 1", BRG_ERR_PARSE, "stages[0].first_layer: must be 0"},
        {"\"micro_batch\":", "\"micro_batchs\": 1, \"micro_batch\":", BRG_ERR_PARSE, "micro_batchs: unknown field"},
        {"\"devices\": [\n        0", "\"devices\": [\n        9", BRG_ERR_PARSE, "ranks[0].devices[0]: must be a device index"},
        {"\"fingerprint\": \"", "\"fingerprint\": \"zz", BRG_ERR_PARSE, "model.fingerprint: must be 16 hex digits"},
        {"\"pipeline_stages\": ", "\"pipeline_stages\": 1000", BRG_ERR_PARSE, "pipeline_stages"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char *bad = brg_test_edited(good, edits[i].from, edits[i].to);
        if (!bad) {
            fprintf(stderr, "the plan has no '%s' to edit\n", edits[i].from);
            CU_FAIL("edit not applicable");
            continue;
        }
        brg_test_expect_plan_load_error(bad, edits[i].status, edits[i].needle);
        free(bad);
    }
    /* Errors name the line and column of the value. */
    char *bad = brg_test_edited(good, "\"global_batch\": 16", "\"global_batch\": -5");
    brg_plan *p2 = NULL;
    brg_error err = {0};
    BRG_ASSERT_STATUS(brg_plan_load_string(bad, "plan.json", &p2, &err), BRG_ERR_PARSE);
    int line = 0, column = 0;
    CU_ASSERT(sscanf(err.message, "plan.json:%d:%d:", &line, &column) == 2 && line > 1 && column > 1);
    free(bad);
    BRG_ASSERT_STATUS(brg_plan_load("/nonexistent/plan.json", &p2, &err), BRG_ERR_IO);
    BRG_ASSERT_CONTAINS(err.message, "/nonexistent/plan.json");
    free(good);
    brg_plan_destroy(plan);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
}

/* ---- reports ------------------------------------------------------------------------------------------ */

static int file_starts_with(const char *path, const char *prefix) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[64] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strncmp(buf, prefix, strlen(prefix)) == 0;
}

static void test_reports_and_trace(void) {
    brg_graph *g = build("gpt2-small");
    brg_topology *t = brg_test_cluster("dgx-h100", 2);
    CU_ASSERT_FATAL(g && t);
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    o.global_batch = 128;
    o.pipeline_stages = 4; /* a pipeline, so the baselines differ */
    o.model_name = "gpt2-small";
    brg_error err = {0};
    brg_plan *plan = NULL;
    BRG_ASSERT_OK(brg_plan_search(g, t, &o, &plan, &err), err.message);
    CU_ASSERT_FATAL(plan != NULL);
    char *text = NULL;
    BRG_ASSERT_OK(brg_plan_report_text(plan, &text), "");
    BRG_ASSERT_CONTAINS(text, "brigade plan: gpt2-small");
    BRG_ASSERT_CONTAINS(text, "WHAT BINDS");
    BRG_ASSERT_CONTAINS(text, "uniform by layers");
    BRG_ASSERT_CONTAINS(text, "balanced by parameters");
    BRG_ASSERT_CONTAINS(text, "next best #1");
    BRG_ASSERT_CONTAINS(text, "MFU");
    free(text);
    BRG_ASSERT_EQ_INT(brg_plan_comparison_count(plan), 7);
    brg_plan_comparison row;
    for (int i = 0; i < brg_plan_comparison_count(plan); i++) {
        BRG_ASSERT_OK(brg_plan_get_comparison(plan, i, &row), "");
        CU_ASSERT(row.iteration_seconds > 0);
        brg_plan_comparison best;
        brg_plan_get_comparison(plan, 0, &best);
        /* Nothing the search could have picked scores better than its pick. */
        if (row.feasible) CU_ASSERT(row.iteration_seconds >= best.iteration_seconds * (1 - 1e-9));
    }
    BRG_ASSERT_STATUS(brg_plan_get_comparison(plan, 7, &row), BRG_ERR_NOT_FOUND);
    char md[512], gantt[600], memory[600], placement[600], trace[512];
    brg_test_tmp_path(md, sizeof md, "report.md");
    brg_test_tmp_path(trace, sizeof trace, "trace.json");
    snprintf(gantt, sizeof gantt, "%.*s-gantt.svg", (int)strlen(md) - 3, md);
    snprintf(memory, sizeof memory, "%.*s-memory.svg", (int)strlen(md) - 3, md);
    snprintf(placement, sizeof placement, "%.*s-placement.svg", (int)strlen(md) - 3, md);
    BRG_ASSERT_OK(brg_plan_write_report(plan, md, &err), err.message);
    CU_ASSERT(file_starts_with(md, "# Plan: gpt2-small"));
    CU_ASSERT(file_starts_with(gantt, "<svg"));
    CU_ASSERT(file_starts_with(memory, "<svg"));
    CU_ASSERT(file_starts_with(placement, "<svg"));
    BRG_ASSERT_OK(brg_plan_write_trace(plan, trace, &err), err.message);
    json_error_t je;
    json_t *root = json_load_file(trace, 0, &je);
    CU_ASSERT(json_array_size(json_object_get(root, "traceEvents")) > 10);
    json_decref(root);
    BRG_ASSERT_STATUS(brg_plan_write_report(plan, "/nonexistent/dir/r.md", &err), BRG_ERR_IO);
    unlink(md);
    unlink(gantt);
    unlink(memory);
    unlink(placement);
    unlink(trace);
    brg_plan_destroy(plan);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
}

/* The heuristic path (what large searches take) against the exhaustive one on a small case. */
static void test_heuristic_close_to_exhaustive(void) {
    brg_graph *g = build("gpt:layers=6,hidden=128,heads=4,vocab=128,seq=64");
    brg_topology *t = brg_test_cpu_node(4, 8000000000ULL, 0);
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    o.global_batch = 32;
    brg_error err = {0};
    brg_plan *exact = NULL, *heuristic = NULL;
    BRG_ASSERT_OK(brg_plan_search(g, t, &o, &exact, &err), err.message);
    o.flags = BRG_PLAN_HEURISTIC;
    BRG_ASSERT_OK(brg_plan_search(g, t, &o, &heuristic, &err), err.message);
    brg_plan_summary a, b;
    brg_plan_get_summary(exact, &a);
    brg_plan_get_summary(heuristic, &b);
    CU_ASSERT(a.exhaustive && !b.exhaustive);
    CU_ASSERT(b.iteration_seconds >= a.iteration_seconds * (1 - 1e-9));
    CU_ASSERT(b.iteration_seconds <= a.iteration_seconds * 1.05);
    CU_ASSERT(a.lower_bound_seconds <= a.iteration_seconds * (1 + 1e-9));
    brg_plan_destroy(exact);
    brg_plan_destroy(heuristic);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
}

/* ---- profiles ------------------------------------------------------------------------------------------ */

static void test_profiles(void) {
    brg_graph *g = build(SMALL_GPT), *other = build("gpt:layers=3,hidden=64,heads=4,vocab=64,seq=32");
    brg_topology *t = brg_test_cpu_node(2, 8000000000ULL, 0);
    brg_profile *p = NULL, *loaded = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_profile_create(&p, g, "AMD EPYC", &err), err.message);
    int L = brg_graph_layer_count(g);
    char path[512];
    brg_test_tmp_path(path, sizeof path, "profile.json");
    BRG_ASSERT_STATUS(brg_profile_save(p, path, &err), BRG_ERR_INVALID_USAGE); /* no times yet */
    for (int l = 0; l < L; l++) {
        BRG_ASSERT_OK(brg_profile_set(p, l, 1, 1e-3 + 1e-4 * l, 2e-3, 1e-3), "");
        BRG_ASSERT_OK(brg_profile_set(p, l, 4, 1e-3 + 4e-4 * l + 3e-3, 8e-3, 4e-3), "");
    }
    BRG_ASSERT_STATUS(brg_profile_set(p, L, 1, 1, 1, 1), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_profile_set(p, 0, 1, -1, 1, 1), BRG_ERR_INVALID_ARGUMENT);
    double f, bi, bw;
    BRG_ASSERT_OK(brg_profile_get(p, 2, 2, &f, &bi, &bw), "");
    BRG_ASSERT_NEAR(bi, 4e-3, 1e-12); /* through the origin: 2 ms per sample */
    BRG_ASSERT_NEAR(f, 2.4e-3, 1e-12); /* the line through (1, 1.2 ms) and (4, 4.8 ms) */
    BRG_ASSERT_STATUS(brg_profile_set_transfer_latency(p, -1.0), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_OK(brg_profile_set_transfer_latency(p, 1e-4), "");
    BRG_ASSERT_OK(brg_profile_save(p, path, &err), err.message);
    BRG_ASSERT_OK(brg_profile_load(path, &loaded, &err), err.message);
    BRG_ASSERT_NEAR(brg_profile_transfer_latency(loaded), 1e-4, 1e-15);
    double f2, bi2, bw2;
    BRG_ASSERT_OK(brg_profile_get(loaded, 2, 2, &f2, &bi2, &bw2), "");
    BRG_ASSERT_NEAR(f2, f, 1e-12);
    CU_ASSERT_STRING_EQUAL(brg_profile_device_model(loaded), "AMD EPYC");
    /* The planner uses it for devices of that model: times follow the profile. */
    brg_topology *custom = NULL;
    brg_topology_create_custom(&custom, 1, 2, "cpu", &err);
    for (int d = 0; d < 2; d++) {
        brg_device_info info;
        brg_topology_device_info(custom, d, &info);
        info.model = "AMD EPYC";
        info.memory_bytes = 8000000000ULL;
        info.peak_flops[0] = 5e10;
        info.memory_bandwidth = 1e10;
        brg_topology_set_device(custom, d, &info);
    }
    brg_topology_finalize(custom);
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    o.global_batch = 8;
    o.pipeline_stages = 1;
    o.micro_batch = 4;
    o.profile = loaded;
    brg_plan *plan = NULL;
    BRG_ASSERT_OK(brg_plan_search(g, custom, &o, &plan, &err), err.message);
    brg_plan_stage st;
    if (plan) {
        brg_plan_get_stage(plan, 0, &st);
        double expected = 0.0;
        for (int l = 0; l < L; l++) {
            brg_profile_get(loaded, l, 4, &f, &bi, &bw);
            expected += f;
        }
        BRG_ASSERT_NEAR(st.forward_seconds, expected, 1e-12);
    }
    /* Two stages: the boundary between the profiled devices costs at least the measured hand-off. */
    o.pipeline_stages = 2;
    o.micro_batch = 4;
    brg_plan_destroy(plan);
    plan = NULL;
    BRG_ASSERT_OK(brg_plan_search(g, custom, &o, &plan, &err), err.message);
    if (plan) {
        brg_plan_get_stage(plan, 0, &st);
        CU_ASSERT(st.transfer_seconds >= 1e-4);
    }
    brg_plan_destroy(plan);
    /* A profile of another model is refused. */
    plan = NULL;
    BRG_ASSERT_STATUS(brg_plan_search(other, custom, &o, &plan, &err), BRG_ERR_MISMATCH);
    BRG_ASSERT_CONTAINS(err.message, "profile");
    /* Bad files. */
    FILE *fh = fopen(path, "w");
    fputs("{\"format\": \"brigade-profile\", \"version\": 1, \"layers\": 3}", fh);
    fclose(fh);
    brg_profile *bad = NULL;
    BRG_ASSERT_STATUS(brg_profile_load(path, &bad, &err), BRG_ERR_PARSE);
    fh = fopen(path, "w");
    fputs("{\"format\": \"brigade-profile\",\n \"version\": ]", fh);
    fclose(fh);
    BRG_ASSERT_STATUS(brg_profile_load(path, &bad, &err), BRG_ERR_PARSE);
    BRG_ASSERT_CONTAINS(err.message, ":2:");
    unlink(path);
    brg_profile_destroy(p);
    brg_profile_destroy(loaded);
    brg_topology_destroy(custom);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
    brg_graph_destroy(other);
}

/* ---- the large presets --------------------------------------------------------------------------------- */

static void test_gpt3_on_a_cluster(void) {
    brg_graph *g = build("gpt3-175b");
    brg_topology *t = brg_test_cluster("dgx-h100", 16), *one = brg_test_cluster("dgx-h100", 1);
    CU_ASSERT_FATAL(g && t && one);
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    o.global_batch = 1536;
    o.tensor_parallel = 1; /* with it: test_tensor_parallel_plan.c */
    brg_error err = {0};
    brg_plan *plan = NULL;
    /* 175 B parameters with fp32 AdamW state are 2.8 TB: on 128 H100s only 64 stages (of 100 layers) hold them
     * without tensor parallelism. */
    BRG_ASSERT_OK(brg_plan_search(g, t, &o, &plan, &err), err.message);
    CU_ASSERT_FATAL(plan != NULL);
    brg_plan_summary sm;
    brg_plan_get_summary(plan, &sm);
    BRG_ASSERT_EQ_INT(sm.pipeline_stages, 64);
    BRG_ASSERT_EQ_INT(sm.data_parallel, 2);
    CU_ASSERT(sm.mfu > 0.1 && sm.mfu < 0.7);
    CU_ASSERT(sm.lower_bound_seconds <= sm.iteration_seconds);
    for (int r = 0; r < sm.pipeline_stages; r++) {
        brg_plan_rank rk;
        brg_plan_get_rank(plan, r, &rk);
        CU_ASSERT(rk.total_bytes <= rk.usable_bytes);
    }
    brg_plan_destroy(plan);
    /* One node cannot hold it, whatever the change. */
    plan = NULL;
    BRG_ASSERT_STATUS(brg_plan_search(g, one, &o, &plan, &err), BRG_ERR_INFEASIBLE);
    BRG_ASSERT_CONTAINS(err.message, "needs");
    BRG_ASSERT_CONTAINS(err.message, "more of them");
    CU_ASSERT(plan == NULL);
    brg_topology_destroy(one);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"alloc_round_matches_jemalloc", test_alloc_round_matches_jemalloc},
        {"format_helpers", test_format_helpers},
        {"memory_matches_runtime", test_memory_matches_runtime},
        {"memory_matches_runtime_data_parallel", test_memory_matches_runtime_data_parallel},
        {"per_stage_recompute_bitwise", test_per_stage_recompute_bitwise},
        {"search_matches_brute_force", test_search_matches_brute_force},
        {"topology_power8", test_topology_power8},
        {"topology_slow_network", test_topology_slow_network},
        {"infeasible_memory", test_infeasible_memory},
        {"impossible_constraints", test_impossible_constraints},
        {"bad_arguments", test_bad_arguments},
        {"plan_roundtrip_and_train_options", test_plan_roundtrip_and_train_options},
        {"plan_for_other_model_or_topology", test_plan_for_other_model_or_topology},
        {"plan_file_errors", test_plan_file_errors},
        {"reports_and_trace", test_reports_and_trace},
        {"heuristic_close_to_exhaustive", test_heuristic_close_to_exhaustive},
        {"profiles", test_profiles},
        {"gpt3_on_a_cluster", test_gpt3_on_a_cluster},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "partitioner", cases);
}
