/* Schedule generator, checker, simulator and trace writer. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brigade.h"
#include "brigade/schedule.h"
#include "harness.h"

/* ---- helpers --------------------------------------------------------------------------------- */

static brg_schedule *make(brg_schedule_kind kind, int p, int v, int m) {
    brg_schedule_options o = BRG_SCHEDULE_OPTIONS_INIT;
    o.kind = kind;
    o.stages = p;
    o.chunks = v;
    o.micro_batches = m;
    brg_schedule *s = NULL;
    brg_error err = {0};
    brg_status st = brg_schedule_create(&o, &s, &err);
    if (st != BRG_OK)
        fprintf(stderr, "create %s p=%d v=%d m=%d: %s\n", brg_schedule_kind_name(kind), p, v, m, err.message);
    return s;
}

static int accepted_by_rule(brg_schedule_kind kind, int p, int v, int m) {
    if (kind == BRG_SCHEDULE_INTERLEAVED_1F1B) return v >= 2 && m % p == 0;
    return v == 1;
}

/* Uniform per-pass costs over S virtual stages and p ranks. */
typedef struct costs_table {
    double forward[64], backward[64], backward_input[64], backward_weight[64], transfer[64];
    brg_schedule_costs costs;
} costs_table;

static void uniform_costs(costs_table *t, int stages, double f, double b, double bi, double w, double transfer) {
    for (int s = 0; s < stages; s++) {
        t->forward[s] = f;
        t->backward[s] = b;
        t->backward_input[s] = bi;
        t->backward_weight[s] = w;
        t->transfer[s] = transfer;
    }
    brg_schedule_costs c = BRG_SCHEDULE_COSTS_INIT;
    c.forward = t->forward;
    c.backward = t->backward;
    c.backward_input = t->backward_input;
    c.backward_weight = t->backward_weight;
    c.transfer_activation = t->transfer;
    t->costs = c;
}

static brg_timeline *simulate(brg_schedule *s, const brg_schedule_costs *costs) {
    brg_schedule_view view;
    brg_schedule_get_view(s, &view);
    brg_timeline *t = NULL;
    brg_error err = {0};
    brg_status st = brg_schedule_simulate(&view, costs, &t, &err);
    if (st != BRG_OK) fprintf(stderr, "simulate: %s\n", err.message);
    return t;
}

/* Every stage's FORWARD, BACKWARD / BACKWARD_INPUT and BACKWARD_WEIGHT passes in strictly increasing
 * micro-batch order (a fused BACKWARD counts for both backward parts). Independent of the checker. */
static int micro_batches_ascend(const brg_schedule *s) {
    int stages = brg_schedule_virtual_stage_count(s);
    int last[3][64];
    for (int k = 0; k < 3; k++)
        for (int st = 0; st < stages; st++) last[k][st] = -1;
    for (int r = 0; r < brg_schedule_rank_count(s); r++) {
        int64_t n;
        const brg_instruction *stream = brg_schedule_stream(s, r, &n);
        for (int64_t i = 0; i < n; i++) {
            const brg_instruction *in = &stream[i];
            int kinds[2] = {-1, -1};
            if (in->kind == BRG_INSTRUCTION_FORWARD) kinds[0] = 0;
            if (in->kind == BRG_INSTRUCTION_BACKWARD) kinds[0] = 1, kinds[1] = 2;
            if (in->kind == BRG_INSTRUCTION_BACKWARD_INPUT) kinds[0] = 1;
            if (in->kind == BRG_INSTRUCTION_BACKWARD_WEIGHT) kinds[0] = 2;
            for (int k = 0; k < 2; k++) {
                if (kinds[k] < 0) continue;
                if (in->micro_batch <= last[kinds[k]][in->stage]) return 0;
                last[kinds[k]][in->stage] = in->micro_batch;
            }
        }
    }
    return 1;
}

static int count_kind(const brg_schedule *s, brg_instruction_kind kind) {
    int n = 0;
    for (int r = 0; r < brg_schedule_rank_count(s); r++) {
        int64_t len;
        const brg_instruction *stream = brg_schedule_stream(s, r, &len);
        for (int64_t i = 0; i < len; i++) n += stream[i].kind == kind;
    }
    return n;
}

static int min_int(int a, int b) {
    return a < b ? a : b;
}

/* Hand-made streams. */
typedef struct hand {
    int p, v, m;
    brg_instruction s[4][64];
    int64_t n[4];
    const brg_instruction *ptr[4];
    brg_schedule_view view;
} hand;

static brg_instruction ins(brg_instruction_kind kind, int stage, int chunk, int micro_batch, int peer, int boundary) {
    brg_instruction in = {kind, micro_batch, stage, chunk, peer, boundary};
    return in;
}

#define LOAD(st, j) ins(BRG_INSTRUCTION_LOAD_BATCH, st, 0, j, -1, -1)
#define FWD(st, j) ins(BRG_INSTRUCTION_FORWARD, st, 0, j, -1, -1)
#define BWD(st, j) ins(BRG_INSTRUCTION_BACKWARD, st, 0, j, -1, -1)
#define BIN(st, j) ins(BRG_INSTRUCTION_BACKWARD_INPUT, st, 0, j, -1, -1)
#define BWT(st, j) ins(BRG_INSTRUCTION_BACKWARD_WEIGHT, st, 0, j, -1, -1)
#define SA(st, j, peer) ins(BRG_INSTRUCTION_SEND_ACTIVATION, st, 0, j, peer, st)
#define RA(st, j, peer) ins(BRG_INSTRUCTION_RECV_ACTIVATION, st, 0, j, peer, (st)-1)
#define SG(st, j, peer) ins(BRG_INSTRUCTION_SEND_GRAD, st, 0, j, peer, (st)-1)
#define RG(st, j, peer) ins(BRG_INSTRUCTION_RECV_GRAD, st, 0, j, peer, st)
#define STEP ins(BRG_INSTRUCTION_OPTIMIZER_STEP, -1, -1, -1, -1, -1)

static void hand_init(hand *h, int p, int v, int m) {
    memset(h, 0, sizeof *h);
    h->p = p;
    h->v = v;
    h->m = m;
}

static void hand_push(hand *h, int rank, brg_instruction in) {
    h->s[rank][h->n[rank]++] = in;
}

static void hand_pushv(hand *h, int rank, int count, const brg_instruction *ins_list) {
    for (int i = 0; i < count; i++) hand_push(h, rank, ins_list[i]);
}

static brg_schedule_view *hand_view(hand *h) {
    for (int r = 0; r < h->p; r++) h->ptr[r] = h->s[r];
    h->view = (brg_schedule_view){h->p, h->v, h->m, NULL, h->ptr, h->n};
    return &h->view;
}

#define PUSH(h, rank, ...)                                                                                             \
    do {                                                                                                               \
        const brg_instruction list_[] = {__VA_ARGS__};                                                                 \
        hand_pushv((h), (rank), (int)(sizeof list_ / sizeof list_[0]), list_);                                         \
    } while (0)

/* The 1F1B streams of p = 2, m = 2, with the receive on rank 1 placed before its send (deadlock-free). */
static void two_rank_1f1b(hand *h) {
    hand_init(h, 2, 1, 2);
    PUSH(h, 0, LOAD(0, 0), FWD(0, 0), SA(0, 0, 1), LOAD(0, 1), FWD(0, 1), SA(0, 1, 1), RG(0, 0, 1), BWD(0, 0),
         RG(0, 1, 1), BWD(0, 1), STEP);
    PUSH(h, 1, RA(1, 0, 0), LOAD(1, 0), FWD(1, 0), RA(1, 1, 0), BWD(1, 0), SG(1, 0, 0), LOAD(1, 1), FWD(1, 1),
         BWD(1, 1), SG(1, 1, 0), STEP);
}

static brg_schedule_check_result check_hand(hand *h) {
    brg_schedule_check_result result;
    brg_status st = brg_schedule_check_streams(hand_view(h), &result);
    CU_ASSERT((st == BRG_OK) == (result.violation == BRG_VIOLATION_NONE));
    if (st != BRG_OK) CU_ASSERT(result.message[0] != '\0');
    return result;
}

/* ---- generator: options ---------------------------------------------------------------------- */

static void test_validate_rejects(void) {
    struct {
        brg_schedule_kind kind;
        int p, v, m, dp;
        const char *needle;
    } bad[] = {
        {BRG_SCHEDULE_INTERLEAVED_1F1B, 4, 2, 6, 1,
         "interleaved 1F1B needs micro-batches (6) to be a multiple of stages (4)"},
        {BRG_SCHEDULE_INTERLEAVED_1F1B, 4, 1, 8, 1, "at least 2 virtual chunks per rank (got 1)"},
        {BRG_SCHEDULE_1F1B, 4, 2, 8, 1, "1F1B needs exactly 1 virtual chunk per rank (got 2)"},
        {BRG_SCHEDULE_GPIPE, 2, 3, 8, 1, "GPipe needs exactly 1 virtual chunk per rank (got 3)"},
        {BRG_SCHEDULE_ZB_H1, 2, 2, 8, 1, "ZB-H1 needs exactly 1 virtual chunk per rank (got 2)"},
        {BRG_SCHEDULE_1F1B, 0, 1, 8, 1, "at least 1 pipeline stage (got 0)"},
        {BRG_SCHEDULE_1F1B, 2, 0, 8, 1, "at least 1 virtual chunk per rank (got 0)"},
        {BRG_SCHEDULE_GPIPE, 2, 1, 0, 1, "at least 1 micro-batch (got 0)"},
        {BRG_SCHEDULE_GPIPE, 2, 1, -3, 1, "at least 1 micro-batch (got -3)"},
        {BRG_SCHEDULE_GPIPE, 2, 1, 4, 0, "data-parallel replicas >= 1 (got 0)"},
        {(brg_schedule_kind)7, 2, 1, 4, 1, "unknown schedule kind 7"},
        {(brg_schedule_kind)-1, 2, 1, 4, 1, "unknown schedule kind -1"},
        {BRG_SCHEDULE_1F1B, 4096, 1, 8192, 1, "too large"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        brg_schedule_options o = {bad[i].kind, bad[i].p, bad[i].v, bad[i].m, bad[i].dp};
        brg_error err = {0};
        BRG_ASSERT_STATUS(brg_schedule_validate(&o, &err), BRG_ERR_INVALID_ARGUMENT);
        BRG_ASSERT_CONTAINS(err.message, bad[i].needle);
        brg_schedule *s = (brg_schedule *)&err; /* must be reset to NULL */
        memset(&err, 0, sizeof err);
        BRG_ASSERT_STATUS(brg_schedule_create(&o, &s, &err), BRG_ERR_INVALID_ARGUMENT);
        CU_ASSERT_PTR_NULL(s);
        BRG_ASSERT_EQ_INT(err.status, BRG_ERR_INVALID_ARGUMENT);
        BRG_ASSERT_CONTAINS(err.message, bad[i].needle);
        BRG_ASSERT_STATUS(brg_schedule_create(&o, &s, NULL), BRG_ERR_INVALID_ARGUMENT);
    }
    brg_error err = {0};
    brg_schedule *s;
    BRG_ASSERT_STATUS(brg_schedule_validate(NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_schedule_create(NULL, &s, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "NULL");
    brg_schedule_options o = BRG_SCHEDULE_OPTIONS_INIT;
    BRG_ASSERT_STATUS(brg_schedule_create(&o, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_OK(brg_schedule_validate(&o, NULL), "defaults");
}

static void test_accessors_and_names(void) {
    brg_schedule *s = make(BRG_SCHEDULE_1F1B, 4, 1, 8);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    BRG_ASSERT_EQ_INT(brg_schedule_rank_count(s), 4);
    BRG_ASSERT_EQ_INT(brg_schedule_virtual_stage_count(s), 4);
    BRG_ASSERT_EQ_INT(brg_schedule_stage_rank(s, 3), 3);
    BRG_ASSERT_EQ_INT(brg_schedule_stage_rank(s, 4), -1);
    BRG_ASSERT_EQ_INT(brg_schedule_stage_rank(s, -1), -1);
    brg_schedule_options o;
    BRG_ASSERT_OK(brg_schedule_get_options(s, &o), "");
    BRG_ASSERT_EQ_INT(o.micro_batches, 8);
    BRG_ASSERT_STATUS(brg_schedule_get_options(NULL, &o), BRG_ERR_INVALID_ARGUMENT);
    int64_t n = brg_schedule_instruction_count(s, 0);
    CU_ASSERT(n > 0);
    BRG_ASSERT_EQ_INT(brg_schedule_instruction_count(s, 4), -1);
    BRG_ASSERT_EQ_INT(brg_schedule_instruction_count(NULL, 0), -1);
    brg_instruction in;
    BRG_ASSERT_OK(brg_schedule_instruction(s, 0, 0, &in), "");
    BRG_ASSERT_EQ_INT(in.kind, BRG_INSTRUCTION_LOAD_BATCH);
    BRG_ASSERT_EQ_INT(in.stage, 0);
    BRG_ASSERT_EQ_INT(in.micro_batch, 0);
    BRG_ASSERT_OK(brg_schedule_instruction(s, 0, n - 1, &in), "");
    BRG_ASSERT_EQ_INT(in.kind, BRG_INSTRUCTION_OPTIMIZER_STEP);
    BRG_ASSERT_STATUS(brg_schedule_instruction(s, 0, n, &in), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_schedule_instruction(s, 0, -1, &in), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_schedule_instruction(s, 9, 0, &in), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_schedule_instruction(NULL, 0, 0, &in), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_schedule_instruction(s, 0, 0, NULL), BRG_ERR_INVALID_ARGUMENT);
    int64_t count = 7;
    const brg_instruction *stream = brg_schedule_stream(s, 3, &count);
    CU_ASSERT_PTR_NOT_NULL(stream);
    BRG_ASSERT_EQ_INT(count, brg_schedule_instruction_count(s, 3));
    CU_ASSERT_PTR_NULL(brg_schedule_stream(s, 4, &count));
    BRG_ASSERT_EQ_INT(count, 0);
    CU_ASSERT_PTR_NULL(brg_schedule_stream(NULL, 0, NULL));
    /* The last rank loads targets before each forward and never sends an activation. */
    BRG_ASSERT_EQ_INT(stream[0].kind, BRG_INSTRUCTION_RECV_ACTIVATION);
    BRG_ASSERT_EQ_INT(stream[0].peer, 2);
    BRG_ASSERT_EQ_INT(stream[0].boundary, 2);
    BRG_ASSERT_EQ_INT(stream[1].kind, BRG_INSTRUCTION_LOAD_BATCH);
    BRG_ASSERT_EQ_INT(stream[1].stage, 3);
    BRG_ASSERT_OK(brg_schedule_check(s), brg_schedule_last_error(s));
    CU_ASSERT_STRING_EQUAL(brg_schedule_last_error(s), "");
    BRG_ASSERT_STATUS(brg_schedule_check(NULL), BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(brg_schedule_last_error(NULL));
    brg_schedule_view view;
    BRG_ASSERT_STATUS(brg_schedule_get_view(NULL, &view), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_schedule_get_view(s, NULL), BRG_ERR_INVALID_ARGUMENT);
    brg_schedule_destroy(s);
    brg_schedule_destroy(NULL);

    for (int k = 0; k < BRG_SCHEDULE_KIND_COUNT; k++) {
        brg_schedule_kind back;
        BRG_ASSERT_OK(brg_schedule_kind_from_name(brg_schedule_kind_name((brg_schedule_kind)k), &back), "");
        BRG_ASSERT_EQ_INT(back, k);
    }
    CU_ASSERT_STRING_EQUAL(brg_schedule_kind_name(BRG_SCHEDULE_ZB_H1), "zb-h1");
    CU_ASSERT_STRING_EQUAL(brg_schedule_kind_name(BRG_SCHEDULE_KIND_COUNT), "unknown");
    brg_schedule_kind kind;
    BRG_ASSERT_OK(brg_schedule_kind_from_name("interleaved", &kind), "");
    BRG_ASSERT_EQ_INT(kind, BRG_SCHEDULE_INTERLEAVED_1F1B);
    BRG_ASSERT_OK(brg_schedule_kind_from_name("zbh1", &kind), "");
    BRG_ASSERT_EQ_INT(kind, BRG_SCHEDULE_ZB_H1);
    BRG_ASSERT_STATUS(brg_schedule_kind_from_name("2f2b", &kind), BRG_ERR_NAME);
    BRG_ASSERT_STATUS(brg_schedule_kind_from_name(NULL, &kind), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_schedule_kind_from_name("gpipe", NULL), BRG_ERR_INVALID_ARGUMENT);

    CU_ASSERT_STRING_EQUAL(brg_instruction_kind_name(BRG_INSTRUCTION_BACKWARD_WEIGHT), "BACKWARD_WEIGHT");
    CU_ASSERT_STRING_EQUAL(brg_instruction_kind_name(BRG_INSTRUCTION_OPTIMIZER_STEP), "OPTIMIZER_STEP");
    CU_ASSERT_STRING_EQUAL(brg_instruction_kind_name(BRG_INSTRUCTION_KIND_COUNT), "UNKNOWN");
    CU_ASSERT_STRING_EQUAL(brg_instruction_kind_name((brg_instruction_kind)-2), "UNKNOWN");
    CU_ASSERT_STRING_EQUAL(brg_instruction_kind_label(BRG_INSTRUCTION_BACKWARD_INPUT), "BI");
    CU_ASSERT_STRING_EQUAL(brg_instruction_kind_label(BRG_INSTRUCTION_KIND_COUNT), "?");
    for (int k = 0; k < BRG_INSTRUCTION_KIND_COUNT; k++)
        CU_ASSERT(strcmp(brg_instruction_kind_name((brg_instruction_kind)k), "UNKNOWN") != 0);

    char buf[96];
    brg_instruction send = {BRG_INSTRUCTION_SEND_ACTIVATION, 5, 2, 0, 3, 2};
    CU_ASSERT_STRING_EQUAL(brg_instruction_format(&send, buf, sizeof buf),
                           "SEND_ACTIVATION stage 2 (chunk 0) micro-batch 5 to rank 3");
    brg_instruction recv = {BRG_INSTRUCTION_RECV_GRAD, 1, 4, 1, 1, 4};
    CU_ASSERT_STRING_EQUAL(brg_instruction_format(&recv, buf, sizeof buf),
                           "RECV_GRAD stage 4 (chunk 1) micro-batch 1 from rank 1");
    brg_instruction step = {BRG_INSTRUCTION_OPTIMIZER_STEP, -1, -1, -1, -1, -1};
    CU_ASSERT_STRING_EQUAL(brg_instruction_format(&step, buf, sizeof buf), "OPTIMIZER_STEP");
    brg_instruction fwd = {BRG_INSTRUCTION_FORWARD, 0, 1, 0, -1, -1};
    CU_ASSERT_STRING_EQUAL(brg_instruction_format(&fwd, buf, sizeof buf), "FORWARD stage 1 (chunk 0) micro-batch 0");
    brg_instruction odd = {(brg_instruction_kind)42, 0, 0, 0, -1, -1};
    BRG_ASSERT_CONTAINS(brg_instruction_format(&odd, buf, sizeof buf), "unknown");
    CU_ASSERT_STRING_EQUAL(brg_instruction_format(NULL, buf, sizeof buf), "");
    char tiny[8];
    CU_ASSERT_STRING_EQUAL(brg_instruction_format(&send, tiny, sizeof tiny), "SEND_AC");
}

/* The example at the top of brigade/schedule.h. */
static void test_header_example(void) {
    FILE *sink = fopen("/dev/null", "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sink);
    brg_schedule_options o = BRG_SCHEDULE_OPTIONS_INIT;
    o.kind = BRG_SCHEDULE_1F1B;
    o.stages = 4;
    o.micro_batches = 8;
    brg_error err;
    brg_schedule *s;
    if (brg_schedule_create(&o, &s, &err) != BRG_OK) {
        fprintf(stderr, "%s\n", err.message);
        CU_FAIL("create");
        fclose(sink);
        return;
    }
    for (int r = 0; r < brg_schedule_rank_count(s); r++) {
        int64_t n;
        const brg_instruction *stream = brg_schedule_stream(s, r, &n);
        for (int64_t i = 0; i < n; i++) {
            char line[96];
            fprintf(sink, "rank %d: %s\n", r, brg_instruction_format(&stream[i], line, sizeof line));
        }
    }
    if (brg_schedule_check(s) != BRG_OK) fprintf(stderr, "%s\n", brg_schedule_last_error(s));
    CU_ASSERT_STRING_EQUAL(brg_schedule_last_error(s), "");
    brg_schedule_destroy(s);
    fclose(sink);
}

static void test_data_parallel_allreduce(void) {
    brg_schedule_options o = {BRG_SCHEDULE_ZB_H1, 3, 1, 5, 4};
    brg_schedule *s;
    brg_error err;
    BRG_ASSERT_OK(brg_schedule_create(&o, &s, &err), err.message);
    for (int r = 0; r < 3; r++) {
        int64_t n;
        const brg_instruction *stream = brg_schedule_stream(s, r, &n);
        BRG_ASSERT_EQ_INT(stream[n - 2].kind, BRG_INSTRUCTION_ALLREDUCE_GRADS);
        BRG_ASSERT_EQ_INT(stream[n - 1].kind, BRG_INSTRUCTION_OPTIMIZER_STEP);
    }
    BRG_ASSERT_OK(brg_schedule_check(s), brg_schedule_last_error(s));
    BRG_ASSERT_EQ_INT(count_kind(s, BRG_INSTRUCTION_ALLREDUCE_GRADS), 3);
    brg_schedule_destroy(s);
    s = make(BRG_SCHEDULE_ZB_H1, 3, 1, 5);
    BRG_ASSERT_EQ_INT(count_kind(s, BRG_INSTRUCTION_ALLREDUCE_GRADS), 0);
    brg_schedule_destroy(s);
}

/* ---- every combination ----------------------------------------------------------------------- */

static double expected_bubble_fraction(brg_schedule_kind kind, int p, int m) {
    if (kind == BRG_SCHEDULE_ZB_H1) return (double)(p - 1) / (3.0 * m + p - 1);
    return (double)(p - 1) / (m + p - 1);
}

/* Generates every (kind, p <= 8, v <= 4, m <= 32); the accepted ones must pass the checker, keep
 * micro-batches ascending, hold the documented in-flight peaks and (uniform costs) bubbles. */
static void test_sweep_all_combinations(void) {
    int accepted = 0, rejected = 0, failures = 0;
    for (int kind = 0; kind < BRG_SCHEDULE_KIND_COUNT; kind++)
        for (int p = 1; p <= 8; p++)
            for (int v = 1; v <= 4; v++)
                for (int m = 1; m <= 32; m++) {
                    brg_schedule_options o = {(brg_schedule_kind)kind, p, v, m, 1};
                    brg_schedule *s = NULL;
                    brg_error err = {0};
                    brg_status st = brg_schedule_create(&o, &s, &err);
                    int expect = accepted_by_rule((brg_schedule_kind)kind, p, v, m);
                    if (!expect) {
                        rejected++;
                        if (st != BRG_ERR_INVALID_ARGUMENT || s != NULL || err.message[0] == '\0') {
                            fprintf(stderr, "%s p=%d v=%d m=%d should be rejected with a message\n",
                                    brg_schedule_kind_name(o.kind), p, v, m);
                            failures++;
                        }
                        continue;
                    }
                    accepted++;
                    if (st != BRG_OK) {
                        fprintf(stderr, "%s p=%d v=%d m=%d: %s\n", brg_schedule_kind_name(o.kind), p, v, m,
                                err.message);
                        failures++;
                        continue;
                    }
                    int ok = 1;
                    if (brg_schedule_check(s) != BRG_OK) {
                        fprintf(stderr, "%s p=%d v=%d m=%d: %s\n", brg_schedule_kind_name(o.kind), p, v, m,
                                brg_schedule_last_error(s));
                        ok = 0;
                    }
                    if (!micro_batches_ascend(s)) {
                        fprintf(stderr, "%s p=%d v=%d m=%d: micro-batches out of order\n",
                                brg_schedule_kind_name(o.kind), p, v, m);
                        ok = 0;
                    }
                    int sends =
                        count_kind(s, BRG_INSTRUCTION_SEND_ACTIVATION) + count_kind(s, BRG_INSTRUCTION_SEND_GRAD);
                    int receives =
                        count_kind(s, BRG_INSTRUCTION_RECV_ACTIVATION) + count_kind(s, BRG_INSTRUCTION_RECV_GRAD);
                    int crossings = p > 1 ? 2 * (p * v - 1) * m : 0; /* with p = 1 every value stays local */
                    if (sends != crossings || receives != crossings) {
                        fprintf(stderr, "%s p=%d v=%d m=%d: %d sends, %d receives, expected %d\n",
                                brg_schedule_kind_name(o.kind), p, v, m, sends, receives, crossings);
                        ok = 0;
                    }
                    brg_schedule_view view;
                    brg_schedule_get_view(s, &view);
                    for (int r = 0; r < p; r++) {
                        brg_in_flight f;
                        if (brg_schedule_in_flight(&view, r, &f) != BRG_OK) ok = 0;
                        int expect_peak = -1, expect_awaiting = -1;
                        switch (o.kind) {
                        case BRG_SCHEDULE_GPIPE: expect_peak = expect_awaiting = m; break;
                        case BRG_SCHEDULE_1F1B: expect_peak = expect_awaiting = min_int(p - r, m); break;
                        case BRG_SCHEDULE_ZB_H1:
                            expect_peak = min_int(p, m);
                            expect_awaiting = min_int(p - r, m);
                            break;
                        default:
                            /* Megatron's warm-up plus the one steady forward, at most all v·m */
                            expect_peak = expect_awaiting = min_int(2 * (p - r - 1) + (v - 1) * p + 1, v * m);
                            break;
                        }
                        if (f.peak_in_flight != expect_peak || f.peak_awaiting_backward != expect_awaiting) {
                            fprintf(stderr, "%s p=%d v=%d m=%d rank %d: peaks %d/%d, expected %d/%d\n",
                                    brg_schedule_kind_name(o.kind), p, v, m, r, f.peak_in_flight,
                                    f.peak_awaiting_backward, expect_peak, expect_awaiting);
                            ok = 0;
                        }
                    }
                    costs_table costs;
                    uniform_costs(&costs, p * v, 1, 2, 1, 1, 0);
                    brg_timeline *t = simulate(s, &costs.costs);
                    brg_timeline_summary sum;
                    if (!t || brg_timeline_get_summary(t, &sum) != BRG_OK) {
                        ok = 0;
                    } else if (o.kind == BRG_SCHEDULE_INTERLEAVED_1F1B) {
                        for (int r = 0; r < p; r++) {
                            brg_timeline_rank info;
                            brg_timeline_get_rank(t, r, &info);
                            double ratio = info.idle / info.busy, expect_ratio = (double)(p - 1) / (v * m);
                            if (fabs(ratio - expect_ratio) > 1e-9) {
                                fprintf(stderr, "interleaved p=%d v=%d m=%d rank %d: idle/busy %.6f, expected %.6f\n",
                                        p, v, m, r, ratio, expect_ratio);
                                ok = 0;
                            }
                        }
                    } else if (o.kind != BRG_SCHEDULE_ZB_H1 || m >= p) {
                        double expect_fraction = expected_bubble_fraction(o.kind, p, m);
                        if (fabs(sum.bubble_fraction - expect_fraction) > 1e-9) {
                            fprintf(stderr, "%s p=%d m=%d: bubble %.6f, expected %.6f\n",
                                    brg_schedule_kind_name(o.kind), p, m, sum.bubble_fraction, expect_fraction);
                            ok = 0;
                        }
                    } else if (sum.bubble_fraction >= expected_bubble_fraction(BRG_SCHEDULE_1F1B, p, m) && p > 1) {
                        fprintf(stderr, "zb-h1 p=%d m=%d: bubble %.6f not below 1F1B's\n", p, m, sum.bubble_fraction);
                        ok = 0;
                    }
                    brg_timeline_destroy(t);
                    if (!ok) failures++;
                    brg_schedule_destroy(s);
                }
    printf("\n    sweep: %d combinations accepted, %d rejected, %d failures\n", accepted, rejected, failures);
    BRG_ASSERT_EQ_INT(failures, 0);
    CU_ASSERT(accepted > 1000);
}

/* ---- bubbles and peaks for p = 4, m = 8 ------------------------------------------------------ */

static void test_bubble_uniform_p4_m8(void) {
    const int p = 4, m = 8;
    double fraction[BRG_SCHEDULE_KIND_COUNT], idle[BRG_SCHEDULE_KIND_COUNT];
    for (int kind = 0; kind < BRG_SCHEDULE_KIND_COUNT; kind++) {
        int v = kind == BRG_SCHEDULE_INTERLEAVED_1F1B ? 2 : 1;
        brg_schedule *s = make((brg_schedule_kind)kind, p, v, m);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        costs_table costs;
        uniform_costs(&costs, p * v, 1, 2, 1, 1, 0);
        brg_timeline *t = simulate(s, &costs.costs);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        brg_timeline_summary sum;
        BRG_ASSERT_OK(brg_timeline_get_summary(t, &sum), "");
        fraction[kind] = sum.bubble_fraction;
        idle[kind] = sum.idle;
        printf("\n    %-16s p=%d v=%d m=%d: makespan %.1f, bubble %.4f of the makespan, %.4f of ideal; peaks",
               brg_schedule_kind_name((brg_schedule_kind)kind), p, v, m, sum.makespan, sum.bubble_fraction,
               sum.bubble_ratio);
        for (int r = 0; r < p; r++) {
            brg_timeline_rank info;
            BRG_ASSERT_OK(brg_timeline_get_rank(t, r, &info), "");
            printf(" %d/%d", info.peak_in_flight, info.peak_awaiting_backward);
        }
        brg_timeline_destroy(t);
        brg_schedule_destroy(s);
    }
    printf("\n    zb-h1 / 1f1b: bubble fraction %.4f, idle time %.4f\n",
           fraction[BRG_SCHEDULE_ZB_H1] / fraction[BRG_SCHEDULE_1F1B],
           idle[BRG_SCHEDULE_ZB_H1] / idle[BRG_SCHEDULE_1F1B]);
    BRG_ASSERT_NEAR(fraction[BRG_SCHEDULE_GPIPE], 3.0 / 11.0, 1e-12);
    BRG_ASSERT_NEAR(fraction[BRG_SCHEDULE_1F1B], 3.0 / 11.0, 1e-12);
    CU_ASSERT(fraction[BRG_SCHEDULE_ZB_H1] < 0.5 * fraction[BRG_SCHEDULE_1F1B]);
    BRG_ASSERT_NEAR(idle[BRG_SCHEDULE_ZB_H1] / idle[BRG_SCHEDULE_1F1B], 1.0 / 3.0, 1e-12);
    CU_ASSERT(fraction[BRG_SCHEDULE_INTERLEAVED_1F1B] < fraction[BRG_SCHEDULE_1F1B]);
}

static void test_peaks_p4_m8(void) {
    const int p = 4, m = 8;
    const int expect[3][4] = {{8, 8, 8, 8}, {4, 3, 2, 1}, {4, 4, 4, 4}};
    const brg_schedule_kind kinds[3] = {BRG_SCHEDULE_GPIPE, BRG_SCHEDULE_1F1B, BRG_SCHEDULE_ZB_H1};
    for (int k = 0; k < 3; k++) {
        brg_schedule *s = make(kinds[k], p, 1, m);
        brg_schedule_view view;
        BRG_ASSERT_OK(brg_schedule_get_view(s, &view), "");
        for (int r = 0; r < p; r++) {
            brg_in_flight f;
            BRG_ASSERT_OK(brg_schedule_in_flight(&view, r, &f), "");
            BRG_ASSERT_EQ_INT(f.peak_in_flight, expect[k][r]);
            BRG_ASSERT_EQ_INT(f.peak_awaiting_backward, kinds[k] == BRG_SCHEDULE_GPIPE ? m : p - r);
        }
        brg_in_flight f;
        BRG_ASSERT_STATUS(brg_schedule_in_flight(&view, p, &f), BRG_ERR_NOT_FOUND);
        BRG_ASSERT_STATUS(brg_schedule_in_flight(&view, 0, NULL), BRG_ERR_INVALID_ARGUMENT);
        BRG_ASSERT_STATUS(brg_schedule_in_flight(NULL, 0, &f), BRG_ERR_INVALID_ARGUMENT);
        brg_schedule_destroy(s);
    }
}

/* p = 1 is the single-device reference: one rank, no transfers, every pass in micro-batch order. */
static void test_single_rank(void) {
    for (int kind = 0; kind < BRG_SCHEDULE_KIND_COUNT; kind++) {
        int v = kind == BRG_SCHEDULE_INTERLEAVED_1F1B ? 3 : 1;
        brg_schedule *s = make((brg_schedule_kind)kind, 1, v, 4);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        BRG_ASSERT_OK(brg_schedule_check(s), brg_schedule_last_error(s));
        BRG_ASSERT_EQ_INT(count_kind(s, BRG_INSTRUCTION_SEND_ACTIVATION) + count_kind(s, BRG_INSTRUCTION_RECV_GRAD), 0);
        /* loads: inputs on the first stage, targets on the last (one load when they are the same stage) */
        BRG_ASSERT_EQ_INT(count_kind(s, BRG_INSTRUCTION_LOAD_BATCH), v == 1 ? 4 : 8);
        costs_table costs;
        uniform_costs(&costs, v, 1, 2, 1, 1, 0);
        brg_timeline *t = simulate(s, &costs.costs);
        brg_timeline_summary sum;
        BRG_ASSERT_OK(brg_timeline_get_summary(t, &sum), "");
        BRG_ASSERT_NEAR(sum.bubble_fraction, 0.0, 1e-12);
        BRG_ASSERT_NEAR(sum.makespan, 3.0 * v * 4, 1e-12);
        brg_timeline_destroy(t);
        brg_schedule_destroy(s);
    }
}

/* ---- checker catches broken streams ---------------------------------------------------------- */

static void test_checker_accepts_hand_made(void) {
    hand h;
    two_rank_1f1b(&h);
    brg_schedule_check_result r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_NONE);
    BRG_ASSERT_EQ_INT(r.rank, -1);
    BRG_ASSERT_OK(brg_schedule_check_streams(hand_view(&h), NULL), "result may be NULL");
}

static void test_checker_catches_deadlock(void) {
    /* Rank 1 sends the gradient of micro-batch 0 before receiving activation 1, while rank 0 sends
     * activation 1 before receiving that gradient: both block in their sends. */
    hand h;
    hand_init(&h, 2, 1, 2);
    PUSH(&h, 0, LOAD(0, 0), FWD(0, 0), SA(0, 0, 1), LOAD(0, 1), FWD(0, 1), SA(0, 1, 1), RG(0, 0, 1), BWD(0, 0),
         RG(0, 1, 1), BWD(0, 1), STEP);
    PUSH(&h, 1, RA(1, 0, 0), LOAD(1, 0), FWD(1, 0), BWD(1, 0), SG(1, 0, 0), RA(1, 1, 0), LOAD(1, 1), FWD(1, 1),
         BWD(1, 1), SG(1, 1, 0), STEP);
    brg_schedule_check_result r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_DEADLOCK);
    BRG_ASSERT_EQ_INT(r.rank, 0);
    BRG_ASSERT_EQ_INT(r.index, 5);
    BRG_ASSERT_CONTAINS(r.message, "deadlock: rank 0 waits at instruction 5 (SEND_ACTIVATION stage 0");
    BRG_ASSERT_CONTAINS(r.message, "rank 1 waits at instruction 4 (SEND_GRAD stage 1");

    /* Two receives waiting on each other. */
    hand_init(&h, 2, 1, 1);
    PUSH(&h, 0, LOAD(0, 0), FWD(0, 0), RG(0, 0, 1), SA(0, 0, 1), BWD(0, 0), STEP);
    PUSH(&h, 1, LOAD(1, 0), RA(1, 0, 0), FWD(1, 0), BWD(1, 0), SG(1, 0, 0), STEP);
    r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_DEADLOCK);
    BRG_ASSERT_CONTAINS(r.message, "RECV_GRAD");
}

static void test_checker_catches_missing_transfers(void) {
    hand h;
    /* Rank 0 lacks the receive of gradient 1: its backward runs without its input. */
    two_rank_1f1b(&h);
    h.s[0][8] = BWD(0, 1);
    h.n[0] = 10;
    h.s[0][9] = STEP;
    brg_schedule_check_result r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_DEPENDENCY);
    BRG_ASSERT_EQ_INT(r.rank, 0);
    BRG_ASSERT_EQ_INT(r.index, 8);
    BRG_ASSERT_CONTAINS(r.message, "before RECV_GRAD");
    /* Rank 1 lacks the send of gradient 1: rank 0 waits for a rank that has finished. */
    two_rank_1f1b(&h);
    h.s[1][9] = STEP;
    h.n[1] = 10;
    r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_DEADLOCK);
    BRG_ASSERT_EQ_INT(r.rank, 0);
    BRG_ASSERT_EQ_INT(r.index, 8);
    BRG_ASSERT_CONTAINS(r.message, "finished its stream");
    /* Rank 1 lacks the receive of activation 1 (so its forward has no input). */
    two_rank_1f1b(&h);
    memmove(&h.s[1][3], &h.s[1][4], sizeof(brg_instruction) * 7);
    h.n[1] = 10;
    r = check_hand(&h);
    CU_ASSERT(r.violation == BRG_VIOLATION_DEADLOCK || r.violation == BRG_VIOLATION_DEPENDENCY);
}

static void test_checker_catches_wrong_order(void) {
    hand h;
    /* forwards out of micro-batch order on one stage */
    hand_init(&h, 1, 1, 2);
    PUSH(&h, 0, LOAD(0, 1), FWD(0, 1), LOAD(0, 0), FWD(0, 0), BWD(0, 0), BWD(0, 1), STEP);
    brg_schedule_check_result r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_ORDER);
    BRG_ASSERT_EQ_INT(r.index, 1);
    BRG_ASSERT_CONTAINS(r.message, "increasing micro-batch order");
    /* backwards out of order */
    hand_init(&h, 1, 1, 2);
    PUSH(&h, 0, LOAD(0, 0), FWD(0, 0), LOAD(0, 1), FWD(0, 1), BWD(0, 1), BWD(0, 0), STEP);
    r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_ORDER);
    BRG_ASSERT_EQ_INT(r.index, 4);
    /* weight gradients out of order */
    hand_init(&h, 1, 1, 2);
    PUSH(&h, 0, LOAD(0, 0), FWD(0, 0), LOAD(0, 1), FWD(0, 1), BIN(0, 0), BIN(0, 1), BWT(0, 1), BWT(0, 0), STEP);
    r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_ORDER);
    BRG_ASSERT_EQ_INT(r.index, 6);
    /* two transfers on one rank pair swapped: the sends cross the receives */
    hand_init(&h, 2, 1, 2);
    PUSH(&h, 0, LOAD(0, 0), FWD(0, 0), LOAD(0, 1), FWD(0, 1), SA(0, 1, 1), SA(0, 0, 1), RG(0, 0, 1), BWD(0, 0),
         RG(0, 1, 1), BWD(0, 1), STEP);
    PUSH(&h, 1, RA(1, 0, 0), LOAD(1, 0), FWD(1, 0), RA(1, 1, 0), BWD(1, 0), SG(1, 0, 0), LOAD(1, 1), FWD(1, 1),
         BWD(1, 1), SG(1, 1, 0), STEP);
    r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_MISMATCH);
    BRG_ASSERT_EQ_INT(r.rank, 0);
    BRG_ASSERT_EQ_INT(r.index, 4);
    BRG_ASSERT_CONTAINS(r.message, "out of order");
}

static void test_checker_catches_dependencies(void) {
    hand h;
    brg_schedule_check_result r;
    struct {
        brg_instruction list[10];
        int n;
        brg_schedule_violation violation;
        int index;
        const char *needle;
    } cases[] = {
        {{LOAD(0, 0), BWD(0, 0), FWD(0, 0), STEP}, 4, BRG_VIOLATION_DEPENDENCY, 1, "before FORWARD stage 0"},
        {{FWD(0, 0), LOAD(0, 0), BWD(0, 0), STEP}, 4, BRG_VIOLATION_DEPENDENCY, 0, "LOAD_BATCH"},
        {{LOAD(0, 0), FWD(0, 0), BWT(0, 0), BIN(0, 0), STEP}, 5, BRG_VIOLATION_DEPENDENCY, 2, "before BACKWARD_INPUT"},
        {{LOAD(0, 0), FWD(0, 0), BIN(0, 0), STEP, BWT(0, 0)},
         5,
         BRG_VIOLATION_DEPENDENCY,
         3,
         "0 of 1 weight gradients"},
        {{LOAD(0, 0), FWD(0, 0), FWD(0, 0), BWD(0, 0), STEP}, 5, BRG_VIOLATION_DUPLICATE, 2, "twice"},
        {{LOAD(0, 0), LOAD(0, 0), FWD(0, 0), BWD(0, 0), STEP}, 5, BRG_VIOLATION_DUPLICATE, 1, "loaded twice"},
        {{LOAD(0, 0), FWD(0, 0), BWD(0, 0), BWT(0, 0), STEP}, 5, BRG_VIOLATION_DUPLICATE, 3, "twice"},
        {{LOAD(0, 0), FWD(0, 0), BIN(0, 0), BWD(0, 0), STEP}, 5, BRG_VIOLATION_DUPLICATE, 3, "twice"},
        {{LOAD(0, 0), FWD(0, 0), BWD(0, 0), STEP, STEP}, 5, BRG_VIOLATION_DUPLICATE, 4, "a second one"},
        {{LOAD(0, 0), FWD(0, 0), BWD(0, 0)}, 3, BRG_VIOLATION_INCOMPLETE, -1, "no OPTIMIZER_STEP"},
        {{LOAD(0, 0), FWD(0, 0), BIN(0, 0), STEP}, 4, BRG_VIOLATION_DEPENDENCY, 3, "before every backward pass"},
        {{LOAD(0, 0), FWD(0, 0), BWD(0, 0), STEP, ins(BRG_INSTRUCTION_ALLREDUCE_GRADS, -1, -1, -1, -1, -1)},
         5,
         BRG_VIOLATION_DEPENDENCY,
         4,
         "after OPTIMIZER_STEP"},
        {{LOAD(0, 0), FWD(0, 0), ins(BRG_INSTRUCTION_FORWARD, 0, 0, 2, -1, -1), STEP},
         4,
         BRG_VIOLATION_MALFORMED,
         2,
         "micro-batch outside 0..0"},
        {{LOAD(0, 0), ins(BRG_INSTRUCTION_FORWARD, 0, 1, 0, -1, -1)}, 2, BRG_VIOLATION_MALFORMED, 1, "chunk 0"},
        {{LOAD(0, 0), FWD(1, 0)}, 2, BRG_VIOLATION_MALFORMED, 1, "stage outside 0..0"},
        {{ins((brg_instruction_kind)99, 0, 0, 0, -1, -1)}, 1, BRG_VIOLATION_MALFORMED, 0, "unknown kind 99"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hand_init(&h, 1, 1, 1);
        hand_pushv(&h, 0, cases[i].n, cases[i].list);
        r = check_hand(&h);
        if (r.violation != cases[i].violation) fprintf(stderr, "case %zu: %s\n", i, r.message);
        BRG_ASSERT_EQ_INT(r.violation, cases[i].violation);
        BRG_ASSERT_EQ_INT(r.index, cases[i].index);
        BRG_ASSERT_CONTAINS(r.message, cases[i].needle);
    }
    /* a micro-batch never run (the optimizer step would report it as a missing dependency) */
    hand_init(&h, 1, 1, 2);
    PUSH(&h, 0, LOAD(0, 0), FWD(0, 0), BWD(0, 0));
    r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_INCOMPLETE);
    BRG_ASSERT_CONTAINS(r.message, "stage 0 micro-batch 1 never runs its FORWARD pass");
    /* split backward without its weight pass */
    hand_init(&h, 1, 1, 1);
    PUSH(&h, 0, LOAD(0, 0), FWD(0, 0), BIN(0, 0));
    r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_INCOMPLETE);
    BRG_ASSERT_CONTAINS(r.message, "backward-weight");
    /* a send before its forward, a transfer to the wrong peer, a transfer between stages on one rank */
    hand_init(&h, 2, 1, 1);
    PUSH(&h, 0, LOAD(0, 0), SA(0, 0, 1), FWD(0, 0), RG(0, 0, 1), BWD(0, 0), STEP);
    PUSH(&h, 1, RA(1, 0, 0), LOAD(1, 0), FWD(1, 0), BWD(1, 0), SG(1, 0, 0), STEP);
    r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_DEPENDENCY);
    BRG_ASSERT_CONTAINS(r.message, "sends before the FORWARD");
    hand_init(&h, 2, 1, 1);
    PUSH(&h, 0, LOAD(0, 0), FWD(0, 0), SA(0, 0, 0), STEP);
    r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_MALFORMED);
    BRG_ASSERT_CONTAINS(r.message, "not rank 0");
    hand_init(&h, 1, 2, 1);
    PUSH(&h, 0, LOAD(0, 0), FWD(0, 0), SA(0, 0, 0));
    r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_MALFORMED);
    BRG_ASSERT_CONTAINS(r.message, "stays local");
    /* the last stage has no next stage */
    hand_init(&h, 2, 1, 1);
    PUSH(&h, 1, ins(BRG_INSTRUCTION_SEND_ACTIVATION, 1, 0, 0, 0, 1));
    r = check_hand(&h);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_MALFORMED);
    BRG_ASSERT_CONTAINS(r.message, "no next stage");
}

static void test_checker_arguments(void) {
    brg_schedule_check_result r;
    BRG_ASSERT_STATUS(brg_schedule_check_streams(NULL, &r), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_EQ_INT(r.violation, BRG_VIOLATION_MALFORMED);
    hand h;
    two_rank_1f1b(&h);
    brg_schedule_view *v = hand_view(&h);
    v->ranks = 0;
    BRG_ASSERT_STATUS(brg_schedule_check_streams(v, &r), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(r.message, ">= 1");
    v = hand_view(&h);
    v->streams = NULL;
    BRG_ASSERT_STATUS(brg_schedule_check_streams(v, &r), BRG_ERR_INVALID_ARGUMENT);
    v = hand_view(&h);
    h.n[1] = -1;
    BRG_ASSERT_STATUS(brg_schedule_check_streams(v, &r), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(r.message, "negative stream length");
    two_rank_1f1b(&h);
    v = hand_view(&h);
    int crowded[2] = {0, 0};
    v->stage_rank = crowded;
    BRG_ASSERT_STATUS(brg_schedule_check_streams(v, &r), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(r.message, "holds more than 1 stages");
    int outside[2] = {0, 5};
    v->stage_rank = outside;
    BRG_ASSERT_STATUS(brg_schedule_check_streams(v, &r), BRG_ERR_INVALID_ARGUMENT);
    int identity[2] = {0, 1};
    v->stage_rank = identity;
    BRG_ASSERT_OK(brg_schedule_check_streams(v, &r), r.message);
    /* the same streams with the stages swapped between the ranks are wrong */
    int swapped[2] = {1, 0};
    v->stage_rank = swapped;
    BRG_ASSERT_STATUS(brg_schedule_check_streams(v, &r), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(r.message, "lives on rank 1");
}

/* Every instruction of a generated stream is needed: the checker rejects each one-instruction
 * deletion, and never crashes on swapped neighbours. */
static void test_checker_rejects_every_deletion(void) {
    struct {
        brg_schedule_kind kind;
        int p, v, m;
    } configs[] = {
        {BRG_SCHEDULE_GPIPE, 2, 1, 3},
        {BRG_SCHEDULE_1F1B, 3, 1, 4},
        {BRG_SCHEDULE_ZB_H1, 3, 1, 3},
        {BRG_SCHEDULE_INTERLEAVED_1F1B, 2, 2, 4},
        {BRG_SCHEDULE_INTERLEAVED_1F1B, 1, 3, 2},
        {BRG_SCHEDULE_INTERLEAVED_1F1B, 3, 2, 3},
    };
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        brg_schedule *s = make(configs[c].kind, configs[c].p, configs[c].v, configs[c].m);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        brg_schedule_view base;
        brg_schedule_get_view(s, &base);
        int p = base.ranks, accepted_deletions = 0, swaps_failing = 0;
        const brg_instruction *ptr[8];
        int64_t lengths[8];
        for (int r = 0; r < p; r++) {
            int64_t n = base.lengths[r];
            brg_instruction *copy = malloc(sizeof *copy * (size_t)n);
            for (int64_t drop = 0; drop < n; drop++) {
                int64_t k = 0;
                for (int64_t i = 0; i < n; i++)
                    if (i != drop) copy[k++] = base.streams[r][i];
                for (int q = 0; q < p; q++) {
                    ptr[q] = q == r ? copy : base.streams[q];
                    lengths[q] = q == r ? n - 1 : base.lengths[q];
                }
                brg_schedule_view v = base;
                v.streams = ptr;
                v.lengths = lengths;
                brg_schedule_check_result result;
                if (brg_schedule_check_streams(&v, &result) == BRG_OK) {
                    char what[96];
                    fprintf(stderr, "%s: deleting rank %d instruction %lld (%s) went unnoticed\n",
                            brg_schedule_kind_name(configs[c].kind), r, (long long)drop,
                            brg_instruction_format(&base.streams[r][drop], what, sizeof what));
                    accepted_deletions++;
                } else {
                    CU_ASSERT(result.message[0] != '\0');
                }
            }
            for (int64_t i = 0; i + 1 < n; i++) {
                memcpy(copy, base.streams[r], sizeof *copy * (size_t)n);
                brg_instruction tmp = copy[i];
                copy[i] = copy[i + 1];
                copy[i + 1] = tmp;
                for (int q = 0; q < p; q++) {
                    ptr[q] = q == r ? copy : base.streams[q];
                    lengths[q] = base.lengths[q];
                }
                brg_schedule_view v = base;
                v.streams = ptr;
                v.lengths = lengths;
                brg_schedule_check_result result;
                if (brg_schedule_check_streams(&v, &result) != BRG_OK) {
                    swaps_failing++;
                    CU_ASSERT(result.violation != BRG_VIOLATION_NONE && result.message[0] != '\0');
                }
            }
            free(copy);
        }
        BRG_ASSERT_EQ_INT(accepted_deletions, 0);
        CU_ASSERT(swaps_failing > 0);
        brg_schedule_destroy(s);
    }
}

/* ---- simulator ------------------------------------------------------------------------------- */

static void test_simulate_transfers(void) {
    /* p = 2, m = 1: F(1) -> transfer 0.5 -> F(1) -> B(2) -> transfer 0.5 -> B(2) */
    brg_schedule *s = make(BRG_SCHEDULE_1F1B, 2, 1, 1);
    costs_table costs;
    uniform_costs(&costs, 2, 1, 2, 1, 1, 0.5);
    brg_timeline *t = simulate(s, &costs.costs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    brg_timeline_summary sum;
    BRG_ASSERT_OK(brg_timeline_get_summary(t, &sum), "");
    BRG_ASSERT_NEAR(sum.makespan, 7.0, 1e-12);
    BRG_ASSERT_NEAR(sum.busy, 6.0, 1e-12);
    BRG_ASSERT_NEAR(sum.idle, 8.0, 1e-12);
    BRG_ASSERT_NEAR(sum.bubble_fraction, 8.0 / 14.0, 1e-12);
    BRG_ASSERT_NEAR(sum.bubble_ratio, 8.0 / 6.0, 1e-12);
    /* rank 0: LOAD, FORWARD, SEND_ACTIVATION, RECV_GRAD, BACKWARD, OPTIMIZER_STEP */
    int64_t n;
    const brg_instruction *stream = brg_schedule_stream(s, 0, &n);
    for (int64_t i = 0; i < n; i++) {
        double start, end;
        BRG_ASSERT_OK(brg_timeline_instruction(t, 0, i, &start, &end), "");
        if (stream[i].kind == BRG_INSTRUCTION_SEND_ACTIVATION) {
            BRG_ASSERT_NEAR(start, 1.0, 1e-12);
            BRG_ASSERT_NEAR(end, 1.5, 1e-12);
        }
        if (stream[i].kind == BRG_INSTRUCTION_RECV_GRAD) BRG_ASSERT_NEAR(end, 5.0, 1e-12);
        if (stream[i].kind == BRG_INSTRUCTION_BACKWARD) {
            BRG_ASSERT_NEAR(start, 5.0, 1e-12);
            BRG_ASSERT_NEAR(end, 7.0, 1e-12);
        }
    }
    brg_timeline_rank info;
    BRG_ASSERT_OK(brg_timeline_get_rank(t, 1, &info), "");
    BRG_ASSERT_NEAR(info.busy, 3.0, 1e-12);
    BRG_ASSERT_NEAR(info.finish, 5.0, 1e-12); /* its gradient arrives on rank 0 at 5 */
    BRG_ASSERT_EQ_INT(info.instruction_count, brg_schedule_instruction_count(s, 1));
    double start;
    BRG_ASSERT_STATUS(brg_timeline_instruction(t, 0, n, &start, NULL), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_timeline_instruction(t, 2, 0, &start, NULL), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_timeline_instruction(NULL, 0, 0, &start, NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_timeline_get_rank(t, 2, &info), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_STATUS(brg_timeline_get_rank(NULL, 0, &info), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_timeline_get_summary(NULL, &sum), BRG_ERR_INVALID_ARGUMENT);
    brg_timeline_destroy(t);
    brg_timeline_destroy(NULL);
    brg_schedule_destroy(s);

    /* One link per direction, first in first out: with a transfer (3) longer than a forward (1), the
     * second activation waits for the first on the link. GPipe p = 2, m = 2. */
    s = make(BRG_SCHEDULE_GPIPE, 2, 1, 2);
    uniform_costs(&costs, 2, 1, 2, 1, 1, 3);
    t = simulate(s, &costs.costs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    stream = brg_schedule_stream(s, 1, &n);
    int forwards = 0;
    for (int64_t i = 0; i < n; i++) {
        if (stream[i].kind != BRG_INSTRUCTION_FORWARD) continue;
        double begin;
        BRG_ASSERT_OK(brg_timeline_instruction(t, 1, i, &begin, NULL), "");
        BRG_ASSERT_NEAR(begin, forwards == 0 ? 4.0 : 7.0, 1e-12);
        forwards++;
    }
    BRG_ASSERT_EQ_INT(forwards, 2);
    brg_timeline_destroy(t);

    /* Gradient transfers may differ; all-reduce and optimizer step add to every rank's busy time. */
    brg_schedule_destroy(s);
    brg_schedule_options o = {BRG_SCHEDULE_GPIPE, 2, 1, 2, 2};
    brg_error err;
    BRG_ASSERT_OK(brg_schedule_create(&o, &s, &err), err.message);
    uniform_costs(&costs, 2, 1, 2, 1, 1, 0);
    double grad[1] = {1.0}, allreduce[2] = {0.25, 0.25}, optimizer[2] = {0.5, 0.5};
    costs.costs.transfer_grad = grad;
    costs.costs.allreduce = allreduce;
    costs.costs.optimizer = optimizer;
    costs.costs.backward = NULL; /* fused backward = backward_input + backward_weight = 2 */
    t = simulate(s, &costs.costs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    BRG_ASSERT_OK(brg_timeline_get_summary(t, &sum), "");
    /* rank 1: F F at 1..3, B B 3..7; the gradients arrive on rank 0 at 6 and 8;
     * rank 0: B(0) 6..8, B(1) 8..10, all-reduce 10..10.25, step 10.25..10.75 */
    BRG_ASSERT_NEAR(sum.makespan, 10.75, 1e-12);
    BRG_ASSERT_OK(brg_timeline_get_rank(t, 0, &info), "");
    BRG_ASSERT_NEAR(info.busy, 6.75, 1e-12);
    brg_timeline_destroy(t);
    brg_schedule_destroy(s);
}

static void test_simulate_errors(void) {
    brg_schedule *s = make(BRG_SCHEDULE_1F1B, 2, 1, 2);
    brg_schedule_view view;
    brg_schedule_get_view(s, &view);
    costs_table costs;
    uniform_costs(&costs, 2, 1, 2, 1, 1, 0);
    brg_timeline *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_STATUS(brg_schedule_simulate(&view, &costs.costs, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_schedule_simulate(&view, NULL, &t, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_schedule_simulate(NULL, &costs.costs, &t, &err), BRG_ERR_INVALID_ARGUMENT);
    brg_schedule_costs c = costs.costs;
    c.forward = NULL;
    BRG_ASSERT_STATUS(brg_schedule_simulate(&view, &c, &t, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "`forward` is required");
    c = costs.costs;
    c.backward = NULL;
    c.backward_weight = NULL;
    BRG_ASSERT_STATUS(brg_schedule_simulate(&view, &c, &t, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "backward_weight");
    c = costs.costs;
    costs.transfer[0] = -1;
    BRG_ASSERT_STATUS(brg_schedule_simulate(&view, &c, &t, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "transfer_activation[0]");
    costs.transfer[0] = 0;
    costs.forward[1] = NAN;
    BRG_ASSERT_STATUS(brg_schedule_simulate(&view, &c, &t, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "forward[1]");
    costs.forward[1] = 1;
    CU_ASSERT_PTR_NULL(t);
    brg_schedule_destroy(s);

    /* streams that cannot run: a receive never matched, a pass before its input */
    hand h;
    two_rank_1f1b(&h);
    h.s[1][9] = STEP;
    h.n[1] = 10;
    BRG_ASSERT_STATUS(brg_schedule_simulate(hand_view(&h), &costs.costs, &t, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "never sent");
    hand_init(&h, 1, 1, 1);
    PUSH(&h, 0, LOAD(0, 0), BWD(0, 0), FWD(0, 0), STEP);
    BRG_ASSERT_STATUS(brg_schedule_simulate(hand_view(&h), &costs.costs, &t, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "before its FORWARD");
    hand_init(&h, 2, 1, 1);
    PUSH(&h, 0, LOAD(0, 0), FWD(0, 0), SA(0, 0, 0), STEP);
    BRG_ASSERT_STATUS(brg_schedule_simulate(hand_view(&h), &costs.costs, &t, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "placement");
    CU_ASSERT_PTR_NULL(t);
}

/* ---- trace ----------------------------------------------------------------------------------- */

static void test_trace_from_simulation(void) {
    brg_schedule *s = make(BRG_SCHEDULE_INTERLEAVED_1F1B, 4, 2, 8);
    costs_table costs;
    uniform_costs(&costs, 8, 1e-3, 2e-3, 1e-3, 1e-3, 1e-4);
    brg_timeline *t = simulate(s, &costs.costs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    int64_t count = 0;
    BRG_ASSERT_OK(brg_timeline_events(t, NULL, &count), "");
    int64_t expected = 0;
    for (int r = 0; r < 4; r++) {
        int64_t n;
        const brg_instruction *stream = brg_schedule_stream(s, r, &n);
        for (int64_t i = 0; i < n; i++)
            expected +=
                stream[i].kind != BRG_INSTRUCTION_RECV_ACTIVATION && stream[i].kind != BRG_INSTRUCTION_RECV_GRAD;
    }
    BRG_ASSERT_EQ_INT(count, expected);
    brg_trace_event few[3];
    int64_t capacity = 3;
    BRG_ASSERT_OK(brg_timeline_events(t, few, &capacity), "");
    BRG_ASSERT_EQ_INT(capacity, expected);
    CU_ASSERT_STRING_EQUAL(few[0].name, "LOAD0 c0");
    BRG_ASSERT_EQ_INT(few[1].kind, BRG_INSTRUCTION_FORWARD);
    CU_ASSERT_STRING_EQUAL(few[1].name, "F0 c0");
    BRG_ASSERT_NEAR(few[1].duration, 1e-3, 1e-15);
    capacity = 2;
    BRG_ASSERT_STATUS(brg_timeline_events(t, NULL, &capacity), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_timeline_events(NULL, NULL, &capacity), BRG_ERR_INVALID_ARGUMENT);

    char path[512];
    brg_test_tmp_path(path, sizeof path, "schedule-trace.json");
    brg_error err = {0};
    BRG_ASSERT_OK(brg_timeline_write_trace(t, path, "predicted", &err), err.message);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) fprintf(stderr, "%s:%d: %s\n", path, jerr.line, jerr.text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    json_t *list = json_object_get(root, "traceEvents");
    CU_ASSERT_FATAL(json_is_array(list));
    int64_t slices = 0, transfers = 0, names = 0;
    double last_end = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        const char *ph = json_string_value(json_object_get(e, "ph"));
        CU_ASSERT_PTR_NOT_NULL_FATAL(ph);
        json_t *pid = json_object_get(e, "pid"), *tid = json_object_get(e, "tid");
        CU_ASSERT(json_is_integer(pid) && json_integer_value(pid) >= 0 && json_integer_value(pid) < 4);
        CU_ASSERT(json_is_integer(tid));
        if (strcmp(ph, "M") == 0) {
            const char *what = json_string_value(json_object_get(e, "name"));
            if (what && strcmp(what, "process_name") == 0) {
                names++;
                BRG_ASSERT_CONTAINS(json_string_value(json_object_get(json_object_get(e, "args"), "name")),
                                    "predicted rank ");
            }
            continue;
        }
        CU_ASSERT_STRING_EQUAL(ph, "X");
        CU_ASSERT(json_is_string(json_object_get(e, "name")));
        CU_ASSERT(json_is_number(json_object_get(e, "ts")));
        CU_ASSERT(json_is_number(json_object_get(e, "dur")));
        double end = json_number_value(json_object_get(e, "ts")) + json_number_value(json_object_get(e, "dur"));
        if (end > last_end) last_end = end;
        transfers += json_integer_value(tid) == BRG_TRACE_TRANSFER;
        slices++;
    }
    BRG_ASSERT_EQ_INT(slices, expected);
    BRG_ASSERT_EQ_INT(names, 4);
    CU_ASSERT(transfers > 0);
    brg_timeline_summary sum;
    brg_timeline_get_summary(t, &sum);
    BRG_ASSERT_NEAR(last_end, sum.makespan * 1e6, 1e-2); /* microseconds */
    json_decref(root);
    remove(path);
    brg_timeline_destroy(t);
    brg_schedule_destroy(s);
}

static void test_trace_generic_events(void) {
    brg_trace_event events[3] = {0};
    events[0] = (brg_trace_event){1, BRG_TRACE_COMPUTE, BRG_INSTRUCTION_FORWARD, "", 3, 1, 0.5e-3, 1e-3};
    events[1] = (brg_trace_event){0, BRG_TRACE_COMPUTE, BRG_INSTRUCTION_BACKWARD, "wait \"B\"\\\n", -1, -1, 0, 2e-3};
    events[2] = (brg_trace_event){0, BRG_TRACE_TRANSFER, BRG_INSTRUCTION_SEND_ACTIVATION, "", 0, 0, 0, 0};
    char path[512];
    brg_test_tmp_path(path, sizeof path, "generic-trace.json");
    brg_error err = {0};
    BRG_ASSERT_OK(brg_trace_write(path, events, 3, NULL, &err), err.message);
    json_t *root = json_load_file(path, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    json_t *list = json_object_get(root, "traceEvents");
    int found = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        const char *ph = json_string_value(json_object_get(e, "ph"));
        const char *name = json_string_value(json_object_get(e, "name"));
        if (strcmp(ph, "M") == 0) {
            if (strcmp(name, "process_name") == 0) {
                const char *label = json_string_value(json_object_get(json_object_get(e, "args"), "name"));
                CU_ASSERT(strcmp(label, "rank 0") == 0 || strcmp(label, "rank 1") == 0);
            }
            continue;
        }
        if (strcmp(name, "F3") == 0) {
            found |= 1;
            BRG_ASSERT_NEAR(json_number_value(json_object_get(e, "ts")), 500.0, 1e-9);
            BRG_ASSERT_NEAR(json_number_value(json_object_get(e, "dur")), 1000.0, 1e-9);
            BRG_ASSERT_EQ_INT(json_integer_value(json_object_get(e, "pid")), 1);
            BRG_ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(e, "args"), "micro_batch")), 3);
            CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "cat")), "FORWARD");
        }
        if (strcmp(name, "wait \"B\"\\\n") == 0) found |= 2;
        if (strcmp(name, "SA0") == 0) {
            found |= 4;
            BRG_ASSERT_EQ_INT(json_integer_value(json_object_get(e, "tid")), BRG_TRACE_TRANSFER);
        }
    }
    BRG_ASSERT_EQ_INT(found, 7);
    json_decref(root);
    remove(path);

    BRG_ASSERT_OK(brg_trace_write(path, NULL, 0, "empty", &err), err.message);
    root = json_load_file(path, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL(root);
    CU_ASSERT(json_array_size(json_object_get(root, "traceEvents")) == 0);
    json_decref(root);
    remove(path);

    memset(&err, 0, sizeof err);
    BRG_ASSERT_STATUS(brg_trace_write("/nonexistent-dir/brigade/trace.json", events, 3, NULL, &err), BRG_ERR_IO);
    BRG_ASSERT_EQ_INT(err.status, BRG_ERR_IO);
    BRG_ASSERT_CONTAINS(err.message, "/nonexistent-dir/brigade/trace.json");
    BRG_ASSERT_STATUS(brg_trace_write(NULL, events, 3, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_trace_write(path, NULL, 2, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_trace_write(path, events, -1, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    events[0].duration = -1;
    BRG_ASSERT_STATUS(brg_trace_write(path, events, 3, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    events[0].duration = 1;
    events[0].start = INFINITY;
    BRG_ASSERT_STATUS(brg_trace_write(path, events, 3, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    events[0].start = 0;
    events[0].rank = -1;
    BRG_ASSERT_STATUS(brg_trace_write(path, events, 3, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    events[0].rank = 0;
    events[0].track = (brg_trace_track)5;
    BRG_ASSERT_STATUS(brg_trace_write(path, events, 3, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "unknown track 5");

    brg_schedule *s = make(BRG_SCHEDULE_GPIPE, 2, 1, 2);
    costs_table costs;
    uniform_costs(&costs, 2, 1, 2, 1, 1, 0);
    brg_timeline *t = simulate(s, &costs.costs);
    memset(&err, 0, sizeof err);
    BRG_ASSERT_STATUS(brg_timeline_write_trace(t, "/nonexistent-dir/t.json", NULL, &err), BRG_ERR_IO);
    BRG_ASSERT_CONTAINS(err.message, "/nonexistent-dir/t.json");
    BRG_ASSERT_STATUS(brg_timeline_write_trace(NULL, path, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    brg_timeline_destroy(t);
    brg_schedule_destroy(s);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"validate_rejects", test_validate_rejects},
        {"accessors_and_names", test_accessors_and_names},
        {"header_example", test_header_example},
        {"data_parallel_allreduce", test_data_parallel_allreduce},
        {"sweep_all_combinations", test_sweep_all_combinations},
        {"bubble_uniform_p4_m8", test_bubble_uniform_p4_m8},
        {"peaks_p4_m8", test_peaks_p4_m8},
        {"single_rank", test_single_rank},
        {"checker_accepts_hand_made", test_checker_accepts_hand_made},
        {"checker_catches_deadlock", test_checker_catches_deadlock},
        {"checker_catches_missing_transfers", test_checker_catches_missing_transfers},
        {"checker_catches_wrong_order", test_checker_catches_wrong_order},
        {"checker_catches_dependencies", test_checker_catches_dependencies},
        {"checker_arguments", test_checker_arguments},
        {"checker_rejects_every_deletion", test_checker_rejects_every_deletion},
        {"simulate_transfers", test_simulate_transfers},
        {"simulate_errors", test_simulate_errors},
        {"trace_from_simulation", test_trace_from_simulation},
        {"trace_generic_events", test_trace_generic_events},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "schedule", cases);
}
