/* The search: configurations (t, sequence parallelism, p, d, b, m, schedule, chunks) in order of their lower
 * bounds; for each, the placements; for each placement, cut points by dynamic programming (the smallest
 * bottleneck, stage compute or link transfer per micro-batch), with every stage's recomputation the
 * cheapest that fits; candidates simulated while their lower bound can still beat the best few. Where cut
 * vectors are few, a branch and bound over all of them makes the best plan the optimum under the model.
 *
 * Each tensor-parallel width t (with sequence parallelism or not) is a variant: a model of the graph one
 * rank of a group runs, on groups of t devices, with its own tables and placements; the configurations of
 * every variant are ranked and pruned together, so a bound of one width cuts the search of another. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "partitioner_internal.h"

#define NODE_BUDGET INT64_C(20000000)

typedef struct result {
    int used;
    brg__config config;
    const brg__plan_placement *placement;
    int *first;
    brg_recompute *policy;
    double score, lower_bound;
} result;

typedef struct placement_set {
    int ranks, replicas;
    brg__plan_placement *items;
    int count;
    int exhaustive;
} placement_set;

typedef struct config_entry {
    brg__config config;
    double lower_bound;
} config_entry;

typedef struct closest {
    int known;
    double ratio; /* needed / usable of the fullest rank */
    char message[BRG_ERROR_MESSAGE_MAX];
} closest;

/* One tensor-parallel width (and sequence parallelism): its model, its tables by micro-batch, its
 * placements by (ranks, replicas). */
typedef struct variant {
    brg__model *m;
    brg__batch_table **tables;
    int table_count, table_capacity;
    placement_set *sets;
    int set_count, set_capacity;
} variant;

/* What the cut searches need of a stage [a, e), whatever its index: its memory under each policy, and the
 * tied gradients its rank would receive at the optimizer step. */
typedef struct stage_figures {
    brg__stage_memory memory[BRG__POLICY_COUNT];
    int64_t tied_bytes;
} stage_figures;

/* Stage figures for one table at a time: the cut searches ask for the same ranges at every stage index. */
typedef struct memory_memo {
    const brg__batch_table *table;
    int layers;
    stage_figures *entries; /* [(layers + 1)^2] */
    uint32_t *stamp;        /* entry valid when its stamp is the generation */
    uint32_t generation;
    stage_figures scratch;  /* where the memo cannot be kept */
} memory_memo;

/* Most layers for which the memo is kept ((L + 1)^2 entries of 200 bytes: 13 MB at 256). */
#define MEMO_MAX_LAYERS 256

typedef struct search {
    brg__model *m;  /* the current variant's model */
    variant *v;     /* the current variant */
    variant *variants;
    int variant_count;
    brg_error *err;
    brg__schedule_cache *schedules;
    result *results;
    int result_slots;
    int64_t instructions_left;
    int64_t configurations, placements_scored, simulations, nodes;
    int exhaustive;
    double lower_bound; /* on any plan, over the configurations not searched to the end */
    closest near;
    /* Out of memory where a helper cannot say so (a cut search, keeping a result): the search ends with it
     * rather than go on without what the allocation was for (which could change the plan). */
    brg_status failure;
    char infeasible_reason[BRG_ERROR_MESSAGE_MAX];
    memory_memo memo;
} search;

/* 0, or -1 when out of memory (the figures then hold the largest the tied gradients could take). */
static int figures_of(const brg__model *m, const brg__batch_table *bt, int a, int e, stage_figures *out) {
    for (int p = 0; p < BRG__POLICY_COUNT; p++) brg__stage_memory_get(bt, m, a, e, (brg_recompute)p, &out->memory[p]);
    int held_stack[16], *held = m->shared_count <= 16 ? held_stack : brg__malloc(sizeof(int) * (size_t)m->shared_count);
    out->tied_bytes = 0;
    if (!held) {
        for (int i = 0; i < m->shared_count; i++) {
            int64_t parts = (m->shared[i].consumers - 1) * brg__alloc_round(m->kind, m->shared[i].numel * 4);
            if (parts > out->tied_bytes) out->tied_bytes = parts;
        }
        return -1;
    }
    for (int i = 0; i < m->shared_count; i++) {
        held[i] = 0;
        for (int q = 0; q < m->shared[i].consumers; q++)
            held[i] += m->shared[i].consumer_layer[q] >= a && m->shared[i].consumer_layer[q] < e;
    }
    out->tied_bytes = brg__optimizer_tied_bytes(m, held);
    if (held != held_stack) free(held);
    return 0;
}

/* The figures of stage [a, e) through the memo (computed directly where it cannot be kept). */
static const stage_figures *stage_figures_of(search *x, const brg__batch_table *bt, int a, int e) {
    const brg__model *m = x->m;
    memory_memo *mm = &x->memo;
    int L = m->layers;
    if (L <= MEMO_MAX_LAYERS && !mm->entries && mm->layers != -1) {
        size_t n = (size_t)(L + 1) * (size_t)(L + 1);
        mm->entries = brg__malloc(n * sizeof *mm->entries);
        mm->stamp = brg__calloc(n, sizeof *mm->stamp);
        if (!mm->entries || !mm->stamp) { /* no memo then: the same figures, computed each time */
            free(mm->entries);
            free(mm->stamp);
            mm->entries = NULL;
            mm->stamp = NULL;
        }
        mm->layers = mm->entries ? L : -1;
        mm->generation = 1;
        mm->table = bt;
    }
    if (!mm->entries || mm->layers != L) {
        if (figures_of(m, bt, a, e, &mm->scratch) < 0) x->failure = BRG_ERR_OUT_OF_MEMORY;
        return &mm->scratch;
    }
    if (mm->table != bt) {
        mm->table = bt;
        if (++mm->generation == 0) { /* wrapped: forget every entry */
            memset(mm->stamp, 0, (size_t)(L + 1) * (size_t)(L + 1) * sizeof *mm->stamp);
            mm->generation = 1;
        }
    }
    size_t at = (size_t)a * (size_t)(L + 1) + (size_t)e;
    if (mm->stamp[at] != mm->generation) {
        if (figures_of(m, bt, a, e, &mm->entries[at]) < 0) {
            x->failure = BRG_ERR_OUT_OF_MEMORY; /* the search ends with it: not kept */
            return &mm->entries[at];
        }
        mm->stamp[at] = mm->generation;
    }
    return &mm->entries[at];
}

/* ---- caches ------------------------------------------------------------------------------------- */

/* Makes the variant of configuration c current (every configuration comes from one). */
static void use_variant(search *x, const brg__config *c) {
    int tp = brg__config_tp(c), sp = tp > 1 && c->sp;
    for (int i = 0; i < x->variant_count; i++)
        if (x->variants[i].m->tp == tp && x->variants[i].m->sp == sp) {
            x->v = &x->variants[i];
            x->m = x->v->m;
            return;
        }
}

static const brg__batch_table *table_for(search *x, int64_t b) {
    variant *v = x->v;
    for (int i = 0; i < v->table_count; i++)
        if (v->tables[i]->micro_batch == b) return v->tables[i];
    if (v->table_count == v->table_capacity) {
        int capacity = v->table_capacity ? 2 * v->table_capacity : 16;
        brg__batch_table **grown = brg__realloc(v->tables, sizeof *grown * (size_t)capacity);
        if (!grown) return NULL;
        v->tables = grown;
        v->table_capacity = capacity;
    }
    brg__batch_table *bt = NULL;
    if (brg__batch_table_create(v->m, b, &bt) != BRG_OK) return NULL;
    v->tables[v->table_count++] = bt;
    return bt;
}

static const placement_set *placements_for(search *x, int ranks, int replicas) {
    variant *v = x->v;
    for (int i = 0; i < v->set_count; i++)
        if (v->sets[i].ranks == ranks && v->sets[i].replicas == replicas) return &v->sets[i];
    if (v->set_count == v->set_capacity) {
        int capacity = v->set_capacity ? 2 * v->set_capacity : 8;
        placement_set *grown = brg__realloc(v->sets, sizeof *grown * (size_t)capacity);
        if (!grown) return NULL;
        v->sets = grown;
        v->set_capacity = capacity;
    }
    placement_set *ps = &v->sets[v->set_count];
    memset(ps, 0, sizeof *ps);
    ps->ranks = ranks;
    ps->replicas = replicas;
    if (brg__plan_placements_enumerate(v->m, ranks, replicas, &ps->items, &ps->count, &ps->exhaustive, x->err) != BRG_OK)
        return NULL;
    v->set_count++;
    x->placements_scored += ps->count;
    return ps;
}

brg_schedule_options brg__config_schedule_options(const brg__config *c) {
    brg_schedule_options so = BRG_SCHEDULE_OPTIONS_INIT;
    so.kind = c->kind;
    so.stages = c->ranks;
    so.chunks = c->chunks;
    so.micro_batches = (int)c->micro_batches;
    so.data_parallel = c->replicas;
    return so;
}

static const brg__schedule_entry *schedule_for(search *x, const brg__config *c) {
    brg_schedule_options so = brg__config_schedule_options(c);
    const brg__schedule_entry *e = NULL;
    if (brg__schedule_cache_get(x->schedules, &so, &e, x->err) != BRG_OK) return NULL;
    return e;
}

/* ---- the best few ------------------------------------------------------------------------------- */

static int same_config(const brg__config *a, const brg__config *b) {
    return a->ranks == b->ranks && a->replicas == b->replicas && a->chunks == b->chunks &&
           a->micro_batch == b->micro_batch && a->kind == b->kind && brg__config_tp(a) == brg__config_tp(b) &&
           (brg__config_tp(a) > 1 && a->sp) == (brg__config_tp(b) > 1 && b->sp);
}

/* Below what a candidate of config c must score to matter: its config's best, or the last of the few. */
static double threshold(const search *x, const brg__config *c) {
    double t = INFINITY;
    for (int i = 0; i < x->result_slots; i++)
        if (x->results[i].used && same_config(&x->results[i].config, c)) t = x->results[i].score;
    const result *last = &x->results[x->result_slots - 1];
    if (last->used && last->score < t) t = last->score;
    return t;
}

static int compare_results(const void *a, const void *b) {
    const result *x = a, *y = b;
    if (x->used != y->used) return y->used - x->used;
    return (x->score > y->score) - (x->score < y->score);
}

static void offer(search *x, const brg__config *c, const brg__plan_placement *p, const int *first,
                  const brg_recompute *policy, double score, double lower_bound) {
    int S = c->ranks * c->chunks;
    result *slot = NULL;
    for (int i = 0; i < x->result_slots; i++)
        if (x->results[i].used && same_config(&x->results[i].config, c)) {
            if (score >= x->results[i].score) return;
            slot = &x->results[i];
        }
    if (!slot) {
        slot = &x->results[x->result_slots - 1];
        if (slot->used && score >= slot->score) return;
    }
    int *f = brg__malloc(sizeof(int) * (size_t)(S + 1));
    brg_recompute *pol = brg__malloc(sizeof(brg_recompute) * (size_t)S);
    if (!f || !pol) {
        free(f);
        free(pol);
        x->failure = BRG_ERR_OUT_OF_MEMORY;
        return;
    }
    memcpy(f, first, sizeof(int) * (size_t)(S + 1));
    memcpy(pol, policy, sizeof(brg_recompute) * (size_t)S);
    free(slot->first);
    free(slot->policy);
    slot->used = 1;
    slot->config = *c;
    slot->placement = p;
    slot->first = f;
    slot->policy = pol;
    slot->score = score;
    slot->lower_bound = lower_bound;
    qsort(x->results, (size_t)x->result_slots, sizeof *x->results, compare_results);
}

/* Simulates a candidate when its bound can still matter and the budget allows. */
static brg_status consider(search *x, const brg__config *c, const brg__batch_table *bt, const brg__schedule_entry *se,
                           const brg__plan_placement *p, const int *first, const brg_recompute *policy, brg__evaluation *e) {
    BRG__CHECK(brg__evaluate(x->m, bt, se, c, p, first, policy, e));
    if (!e->feasible) return BRG_OK;
    if (e->lower_bound >= threshold(x, c)) return BRG_OK;
    if (x->instructions_left < se->instructions) {
        x->exhaustive = 0;
        return BRG_OK;
    }
    x->instructions_left -= se->instructions;
    x->simulations++;
    double makespan = 0.0;
    BRG__CHECK(brg__simulate(se, e, &makespan, NULL, x->err));
    offer(x, c, p, first, policy, makespan, e->lower_bound);
    return BRG_OK;
}

/* ---- stage costs for the cut searches ----------------------------------------------------------- */

typedef struct cut_context {
    search *x;
    const brg__config *c;
    const brg__batch_table *bt;
    const brg__schedule_entry *se;
    const brg__plan_placement *p;
    int ignore_memory;
    int64_t norm_bytes; /* the optimizer's norm buffer on a rank of this configuration */
} cut_context;

/* Per micro-batch compute of virtual stage s over [a, e) with its cheapest fitting policy (INFINITY when
 * none fits); *policy receives it. With v > 1 a chunk may use 1/v of its rank's memory. When none fits,
 * *hopeless (may be NULL) says whether no stage [a', e) with a' < a can fit either: what grows with the
 * layers (parameters, gradients, moments, workspace, each micro-batch's outputs and their gradients under
 * the policy that keeps the least) already exceeds the rank's memory. */
static double stage_cost_bounded(cut_context *k, int s, int a, int e, brg_recompute *policy, int *hopeless) {
    const brg__model *m = k->x->m;
    const brg__config *c = k->c;
    int R = c->ranks, r = s % R, chunk = s / R;
    static const brg_recompute order[BRG__POLICY_COUNT] = {BRG_RECOMPUTE_NONE, BRG_RECOMPUTE_SELECTIVE,
                                                            BRG_RECOMPUTE_FULL};
    int fixed = m->options.recompute;
    const stage_figures *fig = k->ignore_memory ? NULL : stage_figures_of(k->x, k->bt, a, e);
    int64_t transient = fig ? (fig->tied_bytes > k->norm_bytes ? fig->tied_bytes : k->norm_bytes) : 0;
    double usable = (double)k->p->rank_usable[r] / c->chunks;
    for (int i = 0; i < BRG__POLICY_COUNT; i++) {
        brg_recompute pol = fixed != BRG_PLAN_RECOMPUTE_AUTO ? (brg_recompute)fixed : order[i];
        if (fig) {
            const brg__stage_memory *sm = &fig->memory[pol];
            int64_t walk = brg__memory_walk_peak_chunk(&k->se->walks[r], chunk, sm);
            int64_t optimizer = c->zero && c->replicas > 1 ? sm->optimizer / c->replicas : sm->optimizer; /* ZeRO-1, about */
            int64_t total = sm->params + sm->gradients + optimizer + sm->workspace + (walk > transient ? walk : transient);
            if ((double)total > usable) {
                if (fixed != BRG_PLAN_RECOMPUTE_AUTO) break;
                continue;
            }
        }
        double t = 0.0;
        for (int cl = 0; cl < m->class_count; cl++) {
            if (!(k->p->rank_classes[r] & (1u << cl))) continue;
            brg__stage_times st;
            brg__stage_times_get(k->bt, m, cl, a, e, pol, &st);
            t = fmax(t, st.forward + st.backward_input + st.backward_weight + st.recompute);
        }
        *policy = pol;
        return t;
    }
    if (hopeless && fig) {
        brg_recompute least = fixed != BRG_PLAN_RECOMPUTE_AUTO ? (brg_recompute)fixed : BRG_RECOMPUTE_FULL;
        brg__stage_memory grows = fig->memory[least];
        int64_t received = k->bt->receive_bytes[a];
        grows.grads -= received; /* the received activations' gradients: what the cut point decides */
        grows.receive = 0;
        int64_t walk = brg__memory_walk_peak_chunk(&k->se->walks[r], chunk, &grows);
        int64_t optimizer = c->zero && c->replicas > 1 ? grows.optimizer / c->replicas : grows.optimizer;
        int64_t total = grows.params + grows.gradients + optimizer + grows.workspace + walk;
        *hopeless = (double)total > usable;
    }
    return INFINITY;
}

static double stage_cost(cut_context *k, int s, int a, int e, brg_recompute *policy) {
    return stage_cost_bounded(k, s, a, e, policy, NULL);
}

/* The cheapest possible time of the stage (no recomputation): a lower bound whatever the memory. */
static double stage_floor(cut_context *k, int s, int a, int e) {
    const brg__model *m = k->x->m;
    int r = s % k->c->ranks;
    double t = 0.0;
    for (int cl = 0; cl < m->class_count; cl++) {
        if (!(k->p->rank_classes[r] & (1u << cl))) continue;
        brg__stage_times st;
        brg__stage_times_get(k->bt, m, cl, a, e, BRG_RECOMPUTE_NONE, &st);
        t = fmax(t, st.forward + st.backward_input + st.backward_weight);
    }
    return t;
}

static double link_cost(cut_context *k, int s, int cut) {
    const brg__plan_placement *p = k->p;
    int l = s % k->c->ranks;
    if (p->ranks < 2 || k->bt->boundary_bytes[cut] <= 0) return 0.0;
    return (double)k->bt->boundary_tensors[cut] * p->link_latency[l] + (double)k->bt->boundary_bytes[cut] / p->link_bandwidth[l];
}

/* Cut points minimizing the bottleneck (then the sum) of stage compute and link transfer per micro-batch.
 * Returns 1 and fills first[S + 1], policy[S] when some cut fits. */
static int dp_cuts(cut_context *k, int *first, brg_recompute *policy) {
    const brg__model *m = k->x->m;
    int L = m->layers, S = k->c->ranks * k->c->chunks;
    size_t n = (size_t)S * (size_t)(L + 1);
    double *best = brg__malloc(sizeof(double) * n), *total = brg__malloc(sizeof(double) * n);
    int *from = brg__malloc(sizeof(int) * n);
    brg_recompute *chosen = brg__malloc(sizeof(brg_recompute) * n);
    int found = 0;
    if (!best || !total || !from || !chosen) goto done;
#define AT(s, e) ((size_t)(s) * (size_t)(L + 1) + (size_t)(e))
    for (size_t i = 0; i < n; i++) best[i] = INFINITY;
    for (int s = 0; s < S; s++) {
        int e_min = s + 1, e_max = L - (S - 1 - s);
        for (int e = e_min; e <= e_max; e++) {
            double b = INFINITY, sum = INFINITY;
            int arg = -1;
            brg_recompute arg_policy = BRG_RECOMPUTE_NONE;
            int a_min = s == 0 ? 0 : s, a_max = s == 0 ? 0 : e - 1;
            for (int a = a_max; a >= a_min; a--) {
                double floor_cost = stage_floor(k, s, a, e);
                if (floor_cost > b) break; /* more layers only cost more */
                double prev = 0.0, prev_sum = 0.0, link = 0.0;
                if (s > 0) {
                    prev = best[AT(s - 1, a)];
                    prev_sum = total[AT(s - 1, a)];
                    if (!isfinite(prev)) continue;
                    link = link_cost(k, s - 1, a);
                }
                /* The stage costs at least its floor: skip what could not be chosen whatever its policy. */
                double low = fmax(prev, fmax(link, floor_cost));
                if (low > b * (1 + 1e-12) || (low >= b * (1 - 1e-12) && prev_sum + link + floor_cost >= sum)) continue;
                brg_recompute pol;
                int hopeless = 0;
                double cost = stage_cost_bounded(k, s, a, e, &pol, &hopeless);
                if (!isfinite(cost)) {
                    if (hopeless) break; /* longer stages hold more */
                    continue;
                }
                double v = fmax(prev, fmax(link, cost)), w = prev_sum + link + cost;
                if (v < b * (1 - 1e-12) || (v <= b * (1 + 1e-12) && w < sum)) {
                    b = v;
                    sum = w;
                    arg = a;
                    arg_policy = pol;
                }
            }
            best[AT(s, e)] = b;
            total[AT(s, e)] = sum;
            from[AT(s, e)] = arg;
            chosen[AT(s, e)] = arg_policy;
        }
    }
    if (!isfinite(best[AT(S - 1, L)])) goto done;
    /* Second pass: under that bottleneck, the least total (stage compute, recomputation and transfers), which
     * shortens the pipeline's fill and drain and recomputes only where memory forces it. */
    double limit = best[AT(S - 1, L)] * (1 + 1e-9);
    for (size_t i = 0; i < n; i++) total[i] = INFINITY;
    for (int s = 0; s < S; s++) {
        int e_min = s + 1, e_max = L - (S - 1 - s);
        for (int e = e_min; e <= e_max; e++) {
            int a_min = s == 0 ? 0 : s, a_max = s == 0 ? 0 : e - 1;
            for (int a = a_max; a >= a_min; a--) {
                double floor_cost = stage_floor(k, s, a, e);
                if (floor_cost > limit) break;
                double prev = 0.0, link = 0.0;
                if (s > 0) {
                    prev = total[AT(s - 1, a)];
                    if (!isfinite(prev)) continue;
                    link = link_cost(k, s - 1, a);
                    if (link > limit) continue;
                }
                if (prev + link + floor_cost >= total[AT(s, e)]) continue; /* cannot lower the total */
                brg_recompute pol;
                int hopeless = 0;
                double cost = stage_cost_bounded(k, s, a, e, &pol, &hopeless);
                if (hopeless) break; /* longer stages hold more */
                if (!(cost <= limit)) continue;
                if (prev + link + cost < total[AT(s, e)]) {
                    total[AT(s, e)] = prev + link + cost;
                    from[AT(s, e)] = a;
                    chosen[AT(s, e)] = pol;
                }
            }
        }
    }
    first[S] = L;
    for (int s = S - 1, e = L; s >= 0; s--) {
        policy[s] = chosen[AT(s, e)];
        first[s] = from[AT(s, e)];
        e = first[s];
    }
    found = isfinite(total[AT(S - 1, L)]);
#undef AT
done:
    if (!best || !total || !from || !chosen) k->x->failure = BRG_ERR_OUT_OF_MEMORY;
    free(best);
    free(total);
    free(from);
    free(chosen);
    return found;
}

/* ---- branch and bound over every cut vector (exhaustive mode) ------------------------------------- */

typedef struct bnb {
    cut_context *k;
    brg__evaluation *e;
    int *first;
    brg_recompute *policy;
    double *floor_suffix; /* [L + 1] cheapest class, per micro-batch, layers l.. */
    int aborted;
} bnb;

static double log_binomial(int n, int k) {
    if (k < 0 || k > n) return -INFINITY;
    return lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0);
}

/* Fixed costs of a stage's rank at the end of the step, without tied exchanges (a lower bound). */
static double stage_finish(const cut_context *k, int s, int a, int e, brg_recompute pol) {
    const brg__model *m = k->x->m;
    const brg__plan_placement *p = k->p;
    int r = s % k->c->ranks;
    const brg__stage_memory *sm = &stage_figures_of(k->x, k->bt, a, e)->memory[pol];
    double params = (double)sm->params, fin = 0.0;
    int d = p->replicas, zero = k->c->zero && d > 1;
    /* The sums across replicas may hide behind backward entirely (0 here); ZeRO-1's all-gather of the
     * updated parameters cannot, and its optimizer updates 1/d of them. */
    if (zero) fin += (d - 1.0) / d * params / p->ring_bandwidth[r] + (d - 1) * p->ring_latency[r];
    double slowest = INFINITY;
    for (int c = 0; c < m->class_count; c++)
        if (p->rank_classes[r] & (1u << c)) slowest = fmin(slowest, m->classes[c].memory_bandwidth);
    return fin + 7.0 * params / (zero ? d : 1) / (slowest * m->memory_efficiency);
}

static brg_status branch(bnb *b, int s, double pre, double drain, double prev_bc, double prev_transfer, double bound) {
    cut_context *k = b->k;
    search *x = k->x;
    const brg__config *c = k->c;
    const brg__model *m = x->m;
    int L = m->layers, S = c->ranks * c->chunks, a = b->first[s];
    double mb = (double)c->micro_batches;
    int split = c->kind == BRG_SCHEDULE_ZB_H1;
    if (++x->nodes > NODE_BUDGET) {
        b->aborted = 1;
        return BRG_OK;
    }
    int e_min = s == S - 1 ? L : a + 1, e_max = L - (S - 1 - s);
    for (int e = e_min; e <= e_max && !b->aborted; e++) {
        double limit = threshold(x, c);
        brg_recompute pol = BRG_RECOMPUTE_NONE;
        double node_bound = bound, next_pre = pre, next_drain = drain, bc = 0.0, transfer = 0.0;
        if (c->chunks == 1) {
            if (!isfinite(stage_cost(k, s, a, e, &pol))) continue;
            int r = s % c->ranks;
            double f = 0.0, bi = 0.0, bw = 0.0, rc = 0.0;
            for (int cl = 0; cl < m->class_count; cl++) {
                if (!(k->p->rank_classes[r] & (1u << cl))) continue;
                brg__stage_times st;
                brg__stage_times_get(k->bt, m, cl, a, e, pol, &st);
                f = fmax(f, st.forward);
                bi = fmax(bi, st.backward_input);
                bw = fmax(bw, st.backward_weight);
                rc = fmax(rc, st.recompute);
            }
            double back = bi + rc + bw;
            bc = split ? bi + rc : back;
            double wx = split ? bw : 0.0, fin = stage_finish(k, s, a, e, pol);
            next_drain = s == 0 ? wx + fin : fmax(wx + fin, prev_transfer + prev_bc + drain);
            node_bound = fmax(node_bound, pre + f + (mb - 1.0) * f + mb * bc + next_drain);
            node_bound = fmax(node_bound, pre + mb * (f + back) + fin);
            if (s + 1 < S) {
                transfer = link_cost(k, s, e);
                next_pre = pre + f + transfer;
                node_bound = fmax(node_bound, next_pre + mb * b->floor_suffix[e] / (S - 1 - s));
            }
        } else {
            /* Interleaved: only the total work of the rank's stages fixed so far. */
            node_bound = fmax(node_bound, mb * stage_floor(k, s, a, e));
        }
        if (node_bound >= limit) continue;
        b->first[s + 1] = e;
        b->policy[s] = pol;
        if (s + 1 < S) {
            BRG__CHECK(branch(b, s + 1, next_pre, next_drain, bc, transfer, node_bound));
            continue;
        }
        if (c->chunks > 1) {
            int fit = brg__choose_policies(m, k->bt, k->se, c, k->p, b->first, b->policy);
            if (fit < 0) return BRG_ERR_OUT_OF_MEMORY;
            if (!fit) continue;
        }
        BRG__CHECK(consider(x, c, k->bt, k->se, k->p, b->first, b->policy, b->e));
    }
    return BRG_OK;
}

static brg_status exhaust_cuts(cut_context *k, brg__evaluation *e, int *first, brg_recompute *policy, int *complete) {
    const brg__model *m = k->x->m;
    int L = m->layers;
    bnb b = {k, e, first, policy, brg__calloc((size_t)L + 1, sizeof(double)), 0};
    if (!b.floor_suffix) return BRG_ERR_OUT_OF_MEMORY;
    for (int l = L - 1; l >= 0; l--) {
        double cheapest = INFINITY;
        for (int cl = 0; cl < m->class_count; cl++) {
            brg__stage_times st;
            brg__stage_times_get(k->bt, m, cl, l, l + 1, BRG_RECOMPUTE_NONE, &st);
            cheapest = fmin(cheapest, st.forward + st.backward_input + st.backward_weight);
        }
        b.floor_suffix[l] = b.floor_suffix[l + 1] + cheapest;
    }
    first[0] = 0;
    brg_status s = branch(&b, 0, 0.0, 0.0, 0.0, 0.0, 0.0);
    free(b.floor_suffix);
    *complete = !b.aborted;
    return s;
}

/* ---- configurations ------------------------------------------------------------------------------- */

static int compare_configs(const void *a, const void *b) {
    const config_entry *x = a, *y = b;
    return (x->lower_bound > y->lower_bound) - (x->lower_bound < y->lower_bound);
}

/* Every stage k waits for the first micro-batch's passes on the stages before it and then runs all of its
 * own: the iteration is at least max over k of max(C(before k) + m C(k), F(before k) + m W(k)), with C a layer's
 * forward and critical backward (the backward-input alone for ZB-H1), F its forward, W its forward and whole
 * backward, on the fastest device, without recomputation. Its least value over every cut comes from a
 * bisection with a greedy packing: taking as many layers as fit into each stage is optimal, since a later
 * start never hurts the stages after (a layer adds no more to the prefix than m times to a stage). */
static double staircase_bound(const brg__model *m, const brg__config *c, const brg__batch_table *bt) {
    int L = m->layers, S = c->ranks;
    double *chain = brg__malloc(sizeof(double) * (size_t)(L + 1) * 3);
    if (!chain) return -1.0; /* out of memory */
    double *forward = chain + (L + 1), *whole = forward + (L + 1);
    int split = c->kind == BRG_SCHEDULE_ZB_H1;
    chain[0] = forward[0] = whole[0] = 0.0;
    for (int l = 0; l < L; l++) {
        double cc = INFINITY, ff = INFINITY, ww = INFINITY;
        for (int cl = 0; cl < m->class_count; cl++) {
            brg__stage_times st;
            brg__stage_times_get(bt, m, cl, l, l + 1, BRG_RECOMPUTE_NONE, &st);
            cc = fmin(cc, st.forward + st.backward_input + (split ? 0.0 : st.backward_weight));
            ff = fmin(ff, st.forward);
            ww = fmin(ww, st.forward + st.backward_input + st.backward_weight);
        }
        chain[l + 1] = chain[l] + cc;
        forward[l + 1] = forward[l] + ff;
        whole[l + 1] = whole[l] + ww;
    }
    double mb = (double)c->micro_batches, lo = mb * whole[L] / S, hi = mb * whole[L] * (1 + 1e-12) + 1e-30;
    for (int it = 0; it < 60; it++) {
        double mid = 0.5 * (lo + hi);
        int a = 0, stages = 0;
        while (a < L && stages < S) {
            int e = a;
            while (e < L && chain[a] + mb * (chain[e + 1] - chain[a]) <= mid &&
                   forward[a] + mb * (whole[e + 1] - whole[a]) <= mid)
                e++;
            if (e == a) break;
            a = e;
            stages++;
        }
        if (a == L) hi = mid;
        else lo = mid;
    }
    free(chain);
    return lo;
}

static int compare_descending(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* Layers are indivisible: among the j R + 1 largest some rank holds j + 1 (R ranks), so some rank's passes
 * take at least the j + 1 smallest of those, m times, for every j. Where many layers share few ranks (deep
 * pipelines, interleaving: a rank of 3.1 layers on average holds 4 of them somewhere) this is what the
 * average rank's work misses. -1 when out of memory. */
static double granularity_bound(const brg__model *m, const brg__config *c, const brg__batch_table *bt) {
    int L = m->layers, R = c->ranks;
    double *w = brg__malloc(sizeof(double) * (size_t)L);
    if (!w) return -1.0;
    for (int l = 0; l < L; l++) {
        w[l] = INFINITY;
        for (int cl = 0; cl < m->class_count; cl++) {
            brg__stage_times st;
            brg__stage_times_get(bt, m, cl, l, l + 1, BRG_RECOMPUTE_NONE, &st);
            w[l] = fmin(w[l], st.forward + st.backward_input + st.backward_weight);
        }
    }
    qsort(w, (size_t)L, sizeof *w, compare_descending);
    double best = 0.0;
    for (int j = 0; (int64_t)j * R + 1 <= L; j++) {
        double sum = 0.0;
        for (int i = j * R - j; i <= j * R; i++) sum += w[i];
        best = fmax(best, sum);
    }
    free(w);
    return (double)c->micro_batches * best;
}

/* A bound on any plan of this configuration: the average rank's work, all-reduce and optimizer step, the
 * busiest rank's work where layers are indivisible, and one micro-batch's trip through every layer, on the
 * fastest devices. */
double brg__config_lower_bound(const brg__model *m, const brg__config *c, const brg__batch_table *bt) {
    int L = m->layers;
    double work = INFINITY, trip = INFINITY, bandwidth = 0.0;
    for (int cl = 0; cl < m->class_count; cl++) {
        brg__stage_times st;
        brg__stage_times_get(bt, m, cl, 0, L, BRG_RECOMPUTE_NONE, &st);
        work = fmin(work, st.forward + st.backward_input + st.backward_weight);
        /* One micro-batch's round trip: ZB-H1 defers the weight gradients off the critical path. */
        trip = fmin(trip, st.forward + st.backward_input + (c->kind == BRG_SCHEDULE_ZB_H1 ? 0.0 : st.backward_weight));
        bandwidth = fmax(bandwidth, m->classes[cl].memory_bandwidth);
    }
    /* The ranks' average step end: their passes, optimizer steps and all-reduces, the parameters spread evenly
     * and every ring as fast as the fastest link (all pairs on up to 256 devices; beyond, no all-reduce term). */
    double params = 4.0 * (double)m->parameters / c->ranks;
    int zero = c->zero && c->replicas > 1;
    double finish = 7.0 * params / (zero ? c->replicas : 1) / (bandwidth * m->memory_efficiency);
    if (c->replicas > 1 && m->devices <= 256) {
        double ring = m->fastest_link;
        /* What the last micro-batch's backward (at most a micro-batch's work per rank) cannot hide;
         * ZeRO-1: a reduce-scatter, hidden the same way, and an all-gather that is not. */
        double ar = ring > 0 ? 2.0 * (c->replicas - 1) / c->replicas * params / ring : 0.0;
        double window = work / c->ranks;
        finish += zero ? 0.5 * ar + fmax(0.0, 0.5 * ar - window) : fmax(0.0, ar - window);
    }
    double bound = fmax((double)c->micro_batches * work / c->ranks + finish, trip);
    double granular = granularity_bound(m, c, bt);
    if (granular < 0) return -1.0;
    bound = fmax(bound, granular);
    if (c->chunks == 1) {
        double staircase = staircase_bound(m, c, bt);
        if (staircase < 0) return -1.0;
        bound = fmax(bound, staircase);
    }
    return bound;
}

static int64_t divisors(int64_t n, int64_t *out, int capacity) {
    int count = 0;
    for (int64_t d = 1; d * d <= n && count < capacity; d++)
        if (n % d == 0) {
            out[count++] = d;
            if (d != n / d && count < capacity) out[count++] = n / d;
        }
    /* ascending */
    for (int i = 1; i < count; i++)
        for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
            int64_t t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return count;
}

/* Adds a reason why some configuration was left out, once. */
static void note_reason(search *x, const char *fmt, ...) BRG__PRINTF(2, 3);
static void note_reason(search *x, const char *fmt, ...) {
    char one[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(one, sizeof one, fmt, ap);
    va_end(ap);
    if (strstr(x->infeasible_reason, one)) return;
    size_t used = strlen(x->infeasible_reason);
    if (used + strlen(one) + 3 >= sizeof x->infeasible_reason) return;
    snprintf(x->infeasible_reason + used, sizeof x->infeasible_reason - used, "%s%s", used ? "; " : "", one);
}

static brg_status add_config(config_entry **list, int *count, int *capacity, const brg__config *c, double bound) {
    if (*count == *capacity) {
        int grown_capacity = *capacity ? 2 * *capacity : 64;
        config_entry *grown = brg__realloc(*list, sizeof *grown * (size_t)grown_capacity);
        if (!grown) return BRG_ERR_OUT_OF_MEMORY;
        *list = grown;
        *capacity = grown_capacity;
    }
    (*list)[(*count)++] = (config_entry){*c, bound};
    return BRG_OK;
}

/* The configurations of the current variant, appended to *out (*count of *capacity). */
static brg_status enumerate_configs(search *x, config_entry **out, int *count, int *capacity_io) {
    const brg__model *m = x->m;
    const brg_plan_options *o = &m->options;
    int N = m->devices, L = m->layers, capacity = *capacity_io;
    int64_t ranks_list[512];
    int nr = (int)divisors(N, ranks_list, 512);
    char reason[BRG_ERROR_MESSAGE_MAX] = "", groups[96] = "";
    if (m->tp > 1)
        snprintf(groups, sizeof groups, " (%d group%s of %d for tensor parallelism)", N, N > 1 ? "s" : "", m->tp);
    if (o->pipeline_stages && N % o->pipeline_stages)
        snprintf(reason, sizeof reason, "%d pipeline stages do not divide the topology's %d devices%s (%sp x d must be %d)",
                 o->pipeline_stages, N, groups, m->tp > 1 ? "t x " : "", m->all_devices);
    else if (o->data_parallel && N % o->data_parallel)
        snprintf(reason, sizeof reason, "%d data-parallel replicas do not divide the topology's %d devices%s",
                 o->data_parallel, N, groups);
    else if (o->pipeline_stages && o->data_parallel && o->pipeline_stages * o->data_parallel != N)
        snprintf(reason, sizeof reason, "%d stages x %d replicas = %d devices, but the topology has %d%s",
                 o->pipeline_stages, o->data_parallel, o->pipeline_stages * o->data_parallel, N, groups);
    const char *binding; /* the tensor or op that bounds the micro-batch */
    int64_t max_batch = brg__graph_max_batch(m->graph, &binding);
    for (int i = 0; i < nr && !reason[0]; i++) {
        int R = (int)ranks_list[i], D = N / R;
        if (o->pipeline_stages && R != o->pipeline_stages) continue;
        if (o->data_parallel && D != o->data_parallel) continue;
        if (R > L) {
            note_reason(x,
                     "%d pipeline stages but the model has only %d layers (a stage needs at least one)", R, L);
            continue;
        }
        if (o->global_batch % D) {
            note_reason(x,
                     "the global batch of %lld samples does not divide among %d data-parallel replicas",
                     (long long)o->global_batch, D);
            continue;
        }
        int64_t per_replica = o->global_batch / D;
        int64_t bs[4096];
        int nb = (int)divisors(per_replica, bs, 4096);
        if (o->micro_batch && per_replica % o->micro_batch) {
            note_reason(x,
                     "a micro-batch of %lld does not divide the %lld samples each of %d replicas gets per step",
                     (long long)o->micro_batch, (long long)per_replica, D);
            continue;
        }
        for (int j = 0; j < nb; j++) {
            int64_t b = bs[j], mb = per_replica / b;
            if (o->micro_batch && b != o->micro_batch) continue;
            if (mb > 65535) continue;
            if (b > max_batch) {
                note_reason(x, "a micro-batch of %lld samples makes '%s' hold more than %lld elements (at most %lld "
                            "samples fit)", (long long)b, binding ? binding : "?", (long long)BRG_MAX_TENSOR_ELEMENTS,
                            (long long)max_batch);
                continue;
            }
            const brg__batch_table *bt = table_for(x, b);
            if (!bt) return BRG_ERR_OUT_OF_MEMORY;
            for (int kind = 0; kind < BRG_SCHEDULE_KIND_COUNT; kind++) {
                if (o->schedule != BRG_PLAN_SCHEDULE_AUTO && kind != o->schedule) continue;
                /* One stage: every schedule is the same stream; 1F1B holds the least. */
                if (R == 1 && o->schedule == BRG_PLAN_SCHEDULE_AUTO && kind != BRG_SCHEDULE_1F1B) continue;
                int v_min = 1, v_max = 1;
                if (kind == BRG_SCHEDULE_INTERLEAVED_1F1B) {
                    if (R < 2 && o->schedule == BRG_PLAN_SCHEDULE_AUTO) continue;
                    v_min = o->chunks ? o->chunks : 2;
                    v_max = o->chunks ? o->chunks : 4;
                    if (v_min < 2) {
                        note_reason(x,
                                 "interleaved 1F1B needs at least 2 chunks per stage");
                        continue;
                    }
                    if (mb % R) {
                        note_reason(x,
                                 "interleaved 1F1B needs the micro-batches (%lld) to be a multiple of the stages (%d)",
                                 (long long)mb, R);
                        continue;
                    }
                } else if (o->chunks > 1) {
                    continue;
                }
                for (int v = v_min; v <= v_max; v++) {
                    if (R * v > L) {
                        note_reason(x,
                                 "%d stages x %d chunks = %d virtual stages, but the model has %d layers", R, v, R * v, L);
                        continue;
                    }
                    if ((int64_t)R * v * mb > BRG_SCHEDULE_MAX_PASSES) continue;
                    for (int zero = 0; zero <= 1; zero++) { /* ZeRO-1: weighed where there are replicas */
                        if (zero && (D < 2 || o->zero == 0)) continue;
                        if (!zero && D > 1 && o->zero == 1) continue;
                        brg__config c = {R, D, v, b, mb, (brg_schedule_kind)kind, zero, m->tp, m->sp};
                        double bound = brg__config_lower_bound(x->m, &c, bt);
                        if (bound < 0) return BRG_ERR_OUT_OF_MEMORY;
                        brg_status added = add_config(out, count, &capacity, &c, bound);
                        *capacity_io = capacity;
                        BRG__CHECK(added);
                    }
                }
            }
        }
    }
    if (reason[0]) note_reason(x, "%s", reason);
    return BRG_OK;
}

/* ---- when nothing fits ------------------------------------------------------------------------------ */

static void describe_overflow(search *x, const brg__config *c, const brg__plan_placement *p, const int *first,
                              const brg_recompute *policy, const brg__evaluation *e) {
    const brg__model *m = x->m;
    int r = e->worst_rank;
    double ratio = (double)e->rank_total[r] / fmax(1.0, (double)p->rank_usable[r]);
    if (x->near.known && ratio >= x->near.ratio) return;
    x->near.known = 1;
    x->near.ratio = ratio;
    char need[32], have[32], params[32], grads[32], optim[32], acts[32], work[32];
    int64_t pb = 0, gb = 0, ob = 0;
    for (int v = 0; v < c->chunks; v++) {
        const brg__stage_memory *sm = &e->memory[v * c->ranks + r];
        pb += sm->params;
        gb += sm->gradients;
        ob += sm->optimizer;
    }
    brg__format_bytes((double)e->rank_total[r], need, sizeof need);
    brg__format_bytes((double)p->rank_usable[r], have, sizeof have);
    brg__format_bytes((double)pb, params, sizeof params);
    brg__format_bytes((double)gb, grads, sizeof grads);
    brg__format_bytes((double)ob, optim, sizeof optim);
    brg__format_bytes((double)e->rank_activation[r], acts, sizeof acts);
    brg__format_bytes((double)e->rank_workspace[r], work, sizeof work);
    const brg_graph *g = m->graph;
    char layers[2 * BRG_MAX_NAME + 32] = "";
    if (c->chunks == 1)
        snprintf(layers, sizeof layers, " (layers %s..%s)", g->layers[first[r]].name, g->layers[first[r + 1] - 1].name);
    if (snprintf(x->near.message, sizeof x->near.message,
             "stage %d%s of the closest plan (p %d x d %d, micro-batch %lld, %s, %s recomputation) needs %s per device "
             "(parameters %s, gradients %s, optimizer state %s, activations %s, workspace %s) but a device offers %s "
             "(%.0f%% of its memory, less the runtime's reserve)",
             r, layers, c->ranks, c->replicas, (long long)c->micro_batch, brg__schedule_title(c->kind),
             policy[r] == BRG_RECOMPUTE_FULL ? "full" : policy[r] == BRG_RECOMPUTE_SELECTIVE ? "selective" : "no",
             need, params, grads, optim, acts, work, have, 100.0 * (1.0 - m->headroom)) < 0)
        x->near.message[0] = '\0';
}

/* With memory ignored and full recomputation: how far the best cut of c is from fitting. */
static brg_status measure_overflow(search *x, const brg__config *c) {
    const brg__batch_table *bt = table_for(x, c->micro_batch);
    const brg__schedule_entry *se = schedule_for(x, c);
    const placement_set *ps = placements_for(x, c->ranks, c->replicas);
    if (!bt || !se || !ps) return BRG_ERR_OUT_OF_MEMORY;
    int S = c->ranks * c->chunks;
    int *first = brg__malloc(sizeof(int) * (size_t)(S + 1));
    brg_recompute *policy = brg__malloc(sizeof(brg_recompute) * (size_t)S);
    brg__evaluation e;
    if (!first || !policy || brg__evaluation_alloc(&e, S, c->ranks) != BRG_OK) {
        free(first);
        free(policy);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    cut_context k = {x, c, bt, se, &ps->items[0], 1, brg__optimizer_norm_bytes(x->m, c->ranks)};
    int saved = x->m->options.recompute;
    /* The most memory a plan may save: full recomputation, unless the request fixes the policy. */
    brg_recompute policy_used = saved == BRG_PLAN_RECOMPUTE_AUTO ? BRG_RECOMPUTE_FULL : (brg_recompute)saved;
    x->m->options.recompute = policy_used;
    if (dp_cuts(&k, first, policy)) {
        for (int s = 0; s < S; s++) policy[s] = policy_used;
        if (brg__evaluate(x->m, bt, se, c, &ps->items[0], first, policy, &e) == BRG_OK)
            describe_overflow(x, c, &ps->items[0], first, policy, &e);
    }
    x->m->options.recompute = saved;
    brg__evaluation_free(&e);
    free(first);
    free(policy);
    return BRG_OK;
}

/* ---- the search ---------------------------------------------------------------------------------- */

/* Parameters, gradients and moments of the whole model, spread evenly: no fewer bytes per rank. */
static int statics_cannot_fit(const search *x, const brg__config *c) {
    const brg__model *m = x->m;
    double total = 16.0 * (double)m->parameters;
    double usable = 0.0;
    for (int d = 0; d < m->devices; d++) usable = fmax(usable, (double)m->device_usable[d]);
    return total / c->ranks > usable;
}

/* Searches one configuration; *settled says whether its best is known (every cut and placement bounded) or
 * it provably fits nowhere. */
static brg_status search_config(search *x, const config_entry *ce, int *settled) {
    const brg__config *c = &ce->config;
    const brg__model *m = x->m;
    const brg__batch_table *bt = table_for(x, c->micro_batch);
    *settled = 0;
    if (!bt) return BRG_ERR_OUT_OF_MEMORY;
    if (statics_cannot_fit(x, c)) {
        *settled = 1;
        return BRG_OK;
    }
    const brg__schedule_entry *se = schedule_for(x, c);
    const placement_set *ps = placements_for(x, c->ranks, c->replicas);
    if (!se || !ps) return x->err && x->err->status != BRG_OK ? x->err->status : BRG_ERR_OUT_OF_MEMORY;
    int S = c->ranks * c->chunks;
    int *first = brg__malloc(sizeof(int) * (size_t)(S + 1));
    brg_recompute *policy = brg__malloc(sizeof(brg_recompute) * (size_t)S);
    brg__evaluation e;
    if (!first || !policy || brg__evaluation_alloc(&e, S, c->ranks) != BRG_OK) {
        free(first);
        free(policy);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    int exact_cuts = !(m->options.flags & BRG_PLAN_HEURISTIC) &&
                     log_binomial(m->layers - 1, S - 1) <= log((double)BRG__EXACT_CUT_VECTORS);
    if (!exact_cuts || !ps->exhaustive) x->exhaustive = 0;
    brg_status s = BRG_OK;
    int complete_all = exact_cuts && ps->exhaustive, any_cut = 0;
    for (int i = 0; i < ps->count && s == BRG_OK; i++) {
        const brg__plan_placement *p = &ps->items[i];
        cut_context k = {x, c, bt, se, p, 0, brg__optimizer_norm_bytes(x->m, c->ranks)};
        int have = dp_cuts(&k, first, policy);
        any_cut |= have;
        if (have) {
            int fit = c->chunks > 1 ? brg__choose_policies(m, bt, se, c, p, first, policy) : 1;
            if (fit < 0) {
                s = BRG_ERR_OUT_OF_MEMORY;
            } else if (!fit) {
                /* the chunks' memory together exceeds the rank's: the exhaustive pass may still fit */
            } else {
                s = consider(x, c, bt, se, p, first, policy, &e);
            }
        }
        if (s == BRG_OK && exact_cuts) {
            int complete = 0;
            s = exhaust_cuts(&k, &e, first, policy, &complete);
            if (!complete) x->exhaustive = complete_all = 0;
        }
    }
    /* The dynamic program finds a fitting cut whenever one exists (one chunk per rank); every placement
     * holds the same memory per rank, so none fitting proves the configuration infeasible. */
    *settled = complete_all || (!any_cut && c->chunks == 1);
    brg__evaluation_free(&e);
    free(first);
    free(policy);
    return s;
}

static void search_free(search *x) {
    for (int j = 0; x->variants && j < x->variant_count; j++) {
        variant *v = &x->variants[j];
        for (int i = 0; i < v->table_count; i++) brg__batch_table_destroy(v->tables[i]);
        free(v->tables);
        for (int i = 0; i < v->set_count; i++) {
            for (int k = 0; k < v->sets[i].count; k++) brg__plan_placement_free(&v->sets[i].items[k]);
            free(v->sets[i].items);
        }
        free(v->sets);
        brg__model_destroy(v->m);
    }
    free(x->variants);
    free(x->memo.entries);
    free(x->memo.stamp);
    for (int i = 0; x->results && i < x->result_slots; i++) {
        free(x->results[i].first);
        free(x->results[i].policy);
    }
    free(x->results);
    brg__schedule_cache_destroy(x->schedules);
}

/* Builds the plan from the best result, with its comparisons. Defined in plan_build below. */
static brg_status build_plan(search *x, brg_plan **out, double seconds);

/* One search under m's options; *found says whether any plan fits. */
static brg_status run_search(search *x, int *found) {
    config_entry *configs = NULL;
    int count = 0, capacity = 0;
    *found = 0;
    brg_status listed = BRG_OK;
    for (int i = 0; i < x->variant_count && listed == BRG_OK; i++) {
        x->v = &x->variants[i];
        x->m = x->v->m;
        listed = enumerate_configs(x, &configs, &count, &capacity);
    }
    if (listed != BRG_OK) {
        free(configs);
        return listed;
    }
    if (count) qsort(configs, (size_t)count, sizeof *configs, compare_configs);
    x->configurations = count;
    if (count == 0) {
        free(configs);
        return BRG_OK;
    }
    /* A bound on every plan: configurations searched to the end contribute their best (at least the best
     * found), those left for their bounds too (they exceed it), those proven not to fit nothing; the ones
     * searched heuristically contribute their bounds. */
    x->lower_bound = INFINITY;
    brg_status s = BRG_OK;
    for (int i = 0; i < count && s == BRG_OK && x->failure == BRG_OK; i++) {
        const result *last = &x->results[x->result_slots - 1];
        if (last->used && configs[i].lower_bound >= last->score) break;
        int settled = 0;
        use_variant(x, &configs[i].config);
        s = search_config(x, &configs[i], &settled);
        if (!settled) x->lower_bound = fmin(x->lower_bound, configs[i].lower_bound);
    }
    *found = x->results[0].used;
    if (*found) x->lower_bound = fmin(x->lower_bound, x->results[0].score);
    if (s == BRG_OK && !*found) {
        for (int j = 0; j < count && s == BRG_OK; j++) {
            use_variant(x, &configs[j].config);
            if (!statics_cannot_fit(x, &configs[j].config) || j == 0) s = measure_overflow(x, &configs[j].config);
        }
    }
    free(configs);
    return s == BRG_OK ? x->failure : s;
}

/* The greatest common divisor of the nodes' device counts: every width t that divides it keeps each group of
 * t consecutive devices inside one node. */
static int node_device_gcd(const brg_topology *t) {
    int g = 0;
    for (int n = 0; n < brg_topology_node_count(t); n++) {
        brg_node_info ni;
        brg_topology_node_info(t, n, &ni);
        int a = ni.device_count, b = g;
        while (b) {
            int r = a % b;
            a = b;
            b = r;
        }
        g = a;
    }
    return g > 0 ? g : 1;
}

/* One variant per tensor-parallel width (and sequence parallelism) the options allow: a fixed width that does
 * not fit the topology or the model is the search's error; under BRG_PLAN_AUTO such widths are left out with
 * their reason noted. The first variant is the narrowest. */
static brg_status build_variants(search *x, const brg_graph *g, const brg_topology *t, const brg_plan_options *o,
                                 brg_error *err) {
    int widths[64], count = 0;
    if (o && o->tensor_parallel > 0) {
        widths[count++] = o->tensor_parallel;
    } else if (o && g && t && brg_topology_is_final(t)) {
        int per_node = brg__graph_has_tp_marks(g) ? node_device_gcd(t) : 1;
        for (int w = 1; w <= per_node && count < 64; w++)
            if (per_node % w == 0) widths[count++] = w;
    } else {
        widths[count++] = 1;
    }
    x->variants = brg__calloc((size_t)count * 2, sizeof *x->variants);
    if (!x->variants) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory starting the plan search");
    for (int i = 0; i < count; i++)
        for (int sp = 0; sp <= 1; sp++) {
            int tp = widths[i];
            if (sp && tp == 1) continue;
            if (tp > 1 && o->sequence_parallel != BRG_PLAN_SEQUENCE_PARALLEL_AUTO && sp != o->sequence_parallel) continue;
            int fixed = o && o->tensor_parallel > 0;
            brg_error mine = {0};
            brg__model *m = NULL;
            brg_status s = brg__model_create_tp(&m, g, t, o, tp, sp, fixed || tp == 1 ? err : &mine);
            if (s == BRG_ERR_INFEASIBLE && !fixed && tp > 1) {
                note_reason(x, "%s", mine.message);
                continue;
            }
            if (s != BRG_OK) {
                if (s == BRG_ERR_OUT_OF_MEMORY && !fixed && tp > 1) brg__error_set(err, s, "%s", mine.message);
                return s;
            }
            x->variants[x->variant_count++].m = m;
        }
    return BRG_OK;
}

static brg_status search_init(search *x, const brg_graph *g, const brg_topology *t, const brg_plan_options *o,
                              brg_error *err) {
    memset(x, 0, sizeof *x);
    x->err = err;
    x->exhaustive = 1;
    BRG__CHECK(build_variants(x, g, t, o, err));
    x->v = &x->variants[0];
    x->m = x->v->m;
    x->instructions_left = x->m->options.max_simulated_instructions;
    x->result_slots = 1 + x->m->options.alternatives;
    x->results = brg__calloc((size_t)x->result_slots, sizeof *x->results);
    if (!x->results || brg__schedule_cache_create(&x->schedules) != BRG_OK)
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory starting the plan search");
    return BRG_OK;
}

/* Whether the search under o (a relaxation of the failed one) finds a plan. */
static int fits_with(const brg_graph *g, const brg_topology *t, const brg_plan_options *o, const brg_profile *profile) {
    brg_plan_options copy = *o;
    copy.profile = profile;
    copy.alternatives = 0;
    search x;
    int found = 0;
    if (search_init(&x, g, t, &copy, NULL) == BRG_OK) run_search(&x, &found);
    search_free(&x);
    return found;
}

/* The smallest change of the user's constraints that fits: recomputation, a smaller micro-batch, more
 * stages, fewer replicas, a wider tensor-parallel group, in that order. */
static void suggest(const brg_graph *g, const brg_topology *t, const brg__model *m, char *buf, size_t size) {
    brg_plan_options o = m->options;
    buf[0] = '\0';
    if (o.recompute != BRG_PLAN_RECOMPUTE_AUTO && o.recompute != BRG_RECOMPUTE_FULL) {
        brg_plan_options r = o;
        r.recompute = BRG_RECOMPUTE_FULL;
        if (fits_with(g, t, &r, m->profile)) {
            snprintf(buf, size, "it fits with full recomputation (recompute full)");
            return;
        }
    }
    if (o.micro_batch > 1) {
        int tries = 0;
        for (int64_t b = o.micro_batch - 1; b >= 1 && tries < 64; b--) {
            if (o.global_batch % b) continue; /* no replica count could use it */
            tries++;
            brg_plan_options r = o;
            r.micro_batch = b;
            if (fits_with(g, t, &r, m->profile)) {
                snprintf(buf, size, "it fits with a micro-batch of %lld", (long long)b);
                return;
            }
        }
    }
    if (o.pipeline_stages) {
        for (int p = o.pipeline_stages + 1; p <= m->devices && p <= m->layers; p++) {
            if (m->devices % p) continue;
            brg_plan_options r = o;
            r.pipeline_stages = p;
            r.data_parallel = 0;
            if (fits_with(g, t, &r, m->profile)) {
                snprintf(buf, size, "it fits with %d pipeline stages", p);
                return;
            }
        }
    }
    if (o.data_parallel > 1) {
        for (int d = o.data_parallel - 1; d >= 1; d--) {
            if (m->devices % d) continue;
            brg_plan_options r = o;
            r.data_parallel = d;
            r.pipeline_stages = 0;
            if (fits_with(g, t, &r, m->profile)) {
                snprintf(buf, size, "it fits with %d data-parallel replicas (%d pipeline stages)", d, m->devices / d);
                return;
            }
        }
    }
    if (o.tensor_parallel > 0 && brg__graph_has_tp_marks(g)) {
        int per_node = node_device_gcd(t);
        for (int w = o.tensor_parallel + 1; w <= per_node; w++) {
            if (per_node % w) continue;
            brg_plan_options r = o;
            r.tensor_parallel = w;
            if (r.pipeline_stages && r.data_parallel) r.data_parallel = 0; /* t x p x d stays the devices */
            if (fits_with(g, t, &r, m->profile)) {
                snprintf(buf, size, "it fits with tensor parallelism of %d", w);
                return;
            }
        }
    }
    snprintf(buf, size,
             "no change of recomputation, micro-batch, tensor parallelism or pipeline depth fits on these %d devices: it "
             "needs devices with more memory, or more of them",
             m->all_devices);
}

brg_status brg_plan_search(const brg_graph *g, const brg_topology *t, const brg_plan_options *options,
                           brg_plan **out, brg_error *err) {
    double start = brg__now_seconds();
    if (out) *out = NULL;
    search x;
    brg_status s = search_init(&x, g, t, options, err);
    if (s == BRG_OK && !out) s = brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_plan_search: out is NULL");
    if (s != BRG_OK) {
        search_free(&x);
        return s;
    }
    const brg__model *m = x.variants[0].m;
    int found = 0;
    if (s == BRG_OK && (s = run_search(&x, &found)) == BRG_ERR_OUT_OF_MEMORY)
        s = brg__error_set(err, s, "out of memory searching plans (after %lld configurations)", (long long)x.configurations);
    if (s == BRG_OK && !found) {
        if (x.configurations == 0) {
            s = brg__error_set(err, BRG_ERR_INFEASIBLE, "no plan satisfies the constraints: %s",
                               x.infeasible_reason[0] ? x.infeasible_reason : "no configuration");
        } else {
            char change[BRG_ERROR_MESSAGE_MAX / 2];
            suggest(g, t, m, change, sizeof change);
            s = brg__error_set(err, BRG_ERR_INFEASIBLE, "nothing fits in memory: %s; %s",
                               x.near.known ? x.near.message : "no cut of the layers fits", change);
        }
    }
    if (s == BRG_OK && (s = build_plan(&x, out, brg__now_seconds() - start)) == BRG_ERR_OUT_OF_MEMORY)
        s = brg__error_set(err, s, "out of memory building the plan and its comparisons");
    search_free(&x);
    return s;
}

/* ---- the plan from the search ------------------------------------------------------------------------ */

/* DeepSpeed's partition_uniform: floor(L / S) layers each, the first L mod S stages one more. */
static void uniform_cuts(int L, int S, int *first) {
    int base = L / S, extra = L % S;
    first[0] = 0;
    for (int s = 0; s < S; s++) first[s + 1] = first[s] + base + (s < extra ? 1 : 0);
}

/* DeepSpeed's partition_balanced on parameter counts: the smallest largest stage. */
static void balanced_cuts(const brg__model *m, int S, int *first) {
    int L = m->layers;
    double *prefix = brg__calloc((size_t)L + 1, sizeof *prefix);
    double *best = brg__malloc(sizeof(double) * (size_t)(S + 1) * (size_t)(L + 1));
    int *cut = brg__malloc(sizeof(int) * (size_t)(S + 1) * (size_t)(L + 1));
    if (!prefix || !best || !cut) {
        free(prefix);
        free(best);
        free(cut);
        uniform_cuts(L, S, first);
        return;
    }
    for (int l = 0; l < L; l++) prefix[l + 1] = prefix[l] + (double)m->layer_params[l];
#define B(k, j) best[(size_t)(k) * (size_t)(L + 1) + (size_t)(j)]
#define C(k, j) cut[(size_t)(k) * (size_t)(L + 1) + (size_t)(j)]
    for (int j = 0; j <= L; j++) B(1, j) = j >= 1 ? prefix[j] : INFINITY;
    for (int k = 2; k <= S; k++)
        for (int j = 0; j <= L; j++) {
            B(k, j) = INFINITY;
            for (int i = k - 1; i < j; i++) {
                double v = fmax(B(k - 1, i), prefix[j] - prefix[i]);
                if (v < B(k, j)) {
                    B(k, j) = v;
                    C(k, j) = i;
                }
            }
        }
    first[S] = L;
    for (int k = S, j = L; k >= 2; k--) {
        j = C(k, j);
        first[k - 1] = j;
    }
    first[0] = 0;
#undef B
#undef C
    free(prefix);
    free(best);
    free(cut);
}

static void describe_config(const brg__config *c, const int *first, char *buf, size_t size) {
    int tp = brg__config_tp(c);
    int used = snprintf(buf, size, "p %d x d %d x t %d%s, %s", c->ranks, c->replicas, tp, tp > 1 && c->sp ? " (sp)" : "",
                        brg__schedule_title(c->kind));
    if (c->chunks > 1) used += snprintf(buf + used, size - (size_t)used, " (%d chunks)", c->chunks);
    used += snprintf(buf + used, size - (size_t)used, ", b %lld x m %lld", (long long)c->micro_batch,
                     (long long)c->micro_batches);
    int S = c->ranks * c->chunks;
    if (first && S > 1 && S <= 8) {
        used += snprintf(buf + used, size - (size_t)used, ", cuts");
        for (int s = 1; s < S && (size_t)used < size; s++)
            used += snprintf(buf + used, size - (size_t)used, "%s%d", s == 1 ? " " : ",", first[s]);
    }
}

/* Scores (config, placement, cuts) for a comparison row; policies are chosen as for any plan. */
static brg_status score_comparison(search *x, const brg__config *c, const brg__plan_placement *p, const int *given_first,
                                   const char *label, brg__comparison *row) {
    const brg__model *m = x->m;
    memset(row, 0, sizeof *row);
    snprintf(row->label, sizeof row->label, "%s", label);
    row->config = *c;
    int S = c->ranks * c->chunks;
    const brg__batch_table *bt = table_for(x, c->micro_batch);
    const brg__schedule_entry *se = schedule_for(x, c);
    if (!bt || !se) return BRG_ERR_OUT_OF_MEMORY;
    int *first = brg__malloc(sizeof(int) * (size_t)(S + 1));
    brg_recompute *policy = brg__malloc(sizeof(brg_recompute) * (size_t)S);
    brg__evaluation e;
    if (!first || !policy || brg__evaluation_alloc(&e, S, c->ranks) != BRG_OK) {
        free(first);
        free(policy);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    brg_status s = BRG_OK;
    int have_cuts = 1;
    if (given_first) {
        memcpy(first, given_first, sizeof(int) * (size_t)(S + 1));
    } else {
        cut_context k = {x, c, bt, se, p, 0, brg__optimizer_norm_bytes(x->m, c->ranks)};
        have_cuts = dp_cuts(&k, first, policy);
        if (!have_cuts) {
            k.ignore_memory = 1;
            have_cuts = dp_cuts(&k, first, policy);
        }
    }
    int fits = have_cuts ? brg__choose_policies(m, bt, se, c, p, first, policy) : 0;
    if (fits < 0) s = BRG_ERR_OUT_OF_MEMORY;
    describe_config(c, have_cuts ? first : NULL, row->description, sizeof row->description);
    if (have_cuts && s == BRG_OK) s = brg__evaluate(m, bt, se, c, p, first, policy, &e);
    if (s == BRG_OK && have_cuts) {
        int r = e.worst_rank;
        row->peak_memory_bytes = e.rank_total[r];
        row->feasible = fits && e.feasible;
        if (!row->feasible) {
            char need[32], have[32];
            brg__format_bytes((double)e.rank_total[r], need, sizeof need);
            brg__format_bytes((double)p->rank_usable[r], have, sizeof have);
            snprintf(row->why, sizeof row->why, "stage %d needs %s, a device offers %s", r, need, have);
        }
        brg_timeline *t = NULL;
        double makespan = 0.0;
        s = brg__simulate(se, &e, &makespan, &t, x->err);
        if (s == BRG_OK) {
            brg_timeline_summary sum;
            brg_timeline_get_summary(t, &sum);
            row->iteration_seconds = makespan;
            row->bubble = sum.bubble_fraction;
            double samples = (double)m->options.global_batch;
            row->tokens_per_second = samples * (double)m->tokens_per_sample / makespan;
            row->mfu = m->model_flops_per_sample * samples / (makespan * m->peak_sum);
        }
        brg_timeline_destroy(t);
    }
    brg__evaluation_free(&e);
    free(first);
    free(policy);
    return s;
}

/* What binds the plan, most important first. */
static void find_binds(brg_plan *plan, const brg__model *m, const brg__evaluation *e, const brg__plan_placement *p) {
    const brg__config *c = &plan->config;
    int R = c->ranks, S = R * c->chunks;
    double iteration = plan->summary.iteration_seconds;
    char a[32], b[32], t[32];
    plan->bind_count = 0;
    /* Memory: a rank nearly full, or recomputation forced by it. */
    int full_rank = -1, recomputing = 0;
    double fullest = 0.0;
    for (int r = 0; r < R; r++) {
        double used = (double)e->rank_total[r] / fmax(1.0, (double)p->rank_usable[r]);
        if (used > fullest) {
            fullest = used;
            full_rank = r;
        }
    }
    for (int s = 0; s < S; s++) recomputing += plan->policy[s] != BRG_RECOMPUTE_NONE;
    if (full_rank >= 0 && (recomputing || fullest > 0.9)) {
        brg__format_bytes((double)e->rank_total[full_rank], a, sizeof a);
        brg__format_bytes((double)p->rank_usable[full_rank], b, sizeof b);
        double redo = 0.0, work = 0.0;
        for (int s = 0; s < S; s++) {
            redo += e->recompute[s];
            work += e->forward[s] + e->backward[s];
        }
        if (recomputing && m->options.recompute == BRG_PLAN_RECOMPUTE_AUTO)
            snprintf(plan->binds[plan->bind_count++], sizeof plan->binds[0],
                     "memory of stage %d: %s of %s usable; %d stage%s recompute to fit, %.1f%% more compute", full_rank,
                     a, b, recomputing, recomputing > 1 ? "s" : "", work > 0 ? 100.0 * redo / (work - redo) : 0.0);
        else
            snprintf(plan->binds[plan->bind_count++], sizeof plan->binds[0],
                     "memory of stage %d: %s of %s usable (%.0f%% free)", full_rank, a, b, 100.0 * (1.0 - fullest));
    }
    /* Compute: the busiest rank against the mean. */
    double busiest = 0.0, mean = 0.0;
    int busy_rank = 0;
    for (int r = 0; r < R; r++) {
        double work = e->busy[r] - e->allreduce[r] - e->optimizer[r];
        mean += work / R;
        if (work > busiest) {
            busiest = work;
            busy_rank = r;
        }
    }
    if (R > 1 && busiest > mean * 1.02) {
        brg__format_seconds((e->forward[busy_rank] + e->backward[busy_rank]), t, sizeof t);
        snprintf(plan->binds[plan->bind_count++], sizeof plan->binds[0],
                 "compute of stage %d (layers %s..%s): %s per micro-batch, %.1f%% above the mean stage (layers are "
                 "indivisible)",
                 busy_rank, plan->layer_names[plan->first[busy_rank]], plan->layer_names[plan->first[busy_rank + 1] - 1],
                 t, 100.0 * (busiest / mean - 1.0));
    } else if (plan->bind_count < 4) {
        snprintf(plan->binds[plan->bind_count++], sizeof plan->binds[0],
                 "compute of every stage: the stages are balanced within 2%% and busy %.0f%% of the iteration; %.0f%% "
                 "of pass time is memory-bound ops (norms, activations, attention softmax, residual adds)",
                 100.0 * (1.0 - plan->summary.bubble), 100.0 * e->memory_bound_share);
    }
    /* Tensor parallelism: the group's collectives wait on every layer's critical path. */
    int tp_stage = -1;
    double tp_share = 0.0;
    for (int s = 0; s < S && m->tp > 1; s++) {
        double work = e->forward[s] + e->backward[s];
        if (work > 0 && e->tp_seconds[s] / work > tp_share) {
            tp_share = e->tp_seconds[s] / work;
            tp_stage = s;
        }
    }
    if (plan->bind_count < 4 && tp_stage >= 0 && tp_share > 0.05) {
        char bytes[32];
        brg__format_seconds(e->tp_seconds[tp_stage], t, sizeof t);
        brg__format_bytes((double)e->tp_bytes[tp_stage], bytes, sizeof bytes);
        snprintf(plan->binds[plan->bind_count++], sizeof plan->binds[0],
                 "the tensor-parallel collectives of stage %d over %s links (%.0f GB/s, t %d%s): %s per micro-batch "
                 "(%s), %.1f%% of its forward and backward",
                 tp_stage, brg_link_kind_name(m->tp_link), m->tp_bandwidth / 1e9, m->tp,
                 m->sp ? ", sequence parallel" : "", t, bytes, 100.0 * tp_share);
    }
    /* Links: an all-reduce or a boundary over the network. */
    int ar_rank = 0;
    for (int r = 1; r < R; r++)
        if (e->allreduce[r] > e->allreduce[ar_rank]) ar_rank = r;
    if (plan->bind_count < 4 && e->allreduce[ar_rank] > 0.03 * iteration) {
        brg__format_seconds(e->allreduce[ar_rank], t, sizeof t);
        snprintf(plan->binds[plan->bind_count++], sizeof plan->binds[0],
                 "the data-parallel all-reduce of stage %d over %s links (%.0f GB/s): %s, %.1f%% of the iteration",
                 ar_rank, brg_link_kind_name(p->ring_kind[ar_rank]), p->ring_bandwidth[ar_rank] / 1e9, t,
                 100.0 * e->allreduce[ar_rank] / iteration);
    }
    int slow = -1;
    for (int s = 0; s + 1 < S; s++) {
        double compute = e->forward[s] + e->backward[s];
        if (e->transfer[s] > 0.1 * compute && (slow < 0 || e->transfer[s] > e->transfer[slow])) slow = s;
    }
    if (plan->bind_count < 4 && slow >= 0) {
        brg__format_seconds(e->transfer[slow], t, sizeof t);
        int l = slow % R;
        snprintf(plan->binds[plan->bind_count++], sizeof plan->binds[0],
                 "the %s link after stage %d (%.0f GB/s%s): %s per micro-batch each way", brg_link_kind_name(p->link_kind[l]),
                 slow, p->link_bandwidth[l] / 1e9, p->link_cross_node[l] ? ", across nodes" : "", t);
    }
    if (plan->bind_count < 4 && R > 1)
        snprintf(plan->binds[plan->bind_count++], sizeof plan->binds[0],
                 "pipeline bubble: %.1f%% of the ranks' time idle (%s, p %d, m %lld)", 100.0 * plan->summary.bubble,
                 brg__schedule_title(c->kind), R, (long long)c->micro_batches);
}

static brg_status build_plan(search *x, brg_plan **out, double seconds) {
    const result *best = &x->results[0];
    const brg__config *c = &best->config;
    use_variant(x, c);
    const brg__model *m = x->m;
    int S = c->ranks * c->chunks, tp = m->tp;
    const brg__batch_table *bt = table_for(x, c->micro_batch);
    const brg__schedule_entry *se = schedule_for(x, c);
    if (!bt || !se) return brg__error_set(x->err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    brg_plan *plan = brg__plan_new(S, c->ranks, c->replicas, tp, m->layers);
    brg__evaluation e;
    if (!plan || brg__evaluation_alloc(&e, S, c->ranks) != BRG_OK) {
        brg_plan_destroy(plan);
        return brg__error_set(x->err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    snprintf(plan->model_name, sizeof plan->model_name, "%s", m->model_name);
    plan->model_fingerprint = brg_plan_model_fingerprint(m->whole);
    plan->topology_fingerprint = brg_topology_fingerprint(m->topology);
    snprintf(plan->topology_source, sizeof plan->topology_source, "%s", m->topology_name);
    plan->devices_total = m->all_devices;
    plan->nodes = m->nodes;
    plan->parameters = m->model_parameters;
    plan->vocab_padding = m->vocab_padding;
    plan->tp_link = m->tp_link;
    plan->tp_bandwidth = tp > 1 ? m->tp_bandwidth : 0.0;
    plan->tokens_per_sample = m->tokens_per_sample;
    plan->global_batch = m->options.global_batch;
    plan->config = *c;
    plan->precision = m->precision;
    plan->device_kind = m->kind;
    brg_device_info info;
    brg_topology_device_info(m->topology, 0, &info);
    snprintf(plan->device_model, sizeof plan->device_model, "%s", info.model);
    plan->device_peak_flops = m->classes[0].peak_flops;
    snprintf(plan->device_figures, sizeof plan->device_figures, "%s", brg_figure_source_name(info.figures));
    for (int d = 0; d < m->all_devices; d++) {
        brg_device_info di;
        brg_topology_device_info(m->topology, d, &di);
        if (di.figures == BRG_FIGURE_ESTIMATED || di.figures == BRG_FIGURE_UNKNOWN) {
            snprintf(plan->device_figures, sizeof plan->device_figures, "%s", brg_figure_source_name(di.figures));
            break;
        }
    }
    if (m->class_count > 1) {
        size_t used = 0;
        for (int c2 = 0; c2 < m->class_count && used < sizeof plan->device_mix; c2++) {
            int count = 0;
            for (int d = 0; d < m->all_devices; d++) {
                brg_device_info di;
                brg_topology_device_info(m->topology, d, &di);
                count += strcmp(di.model, m->classes[c2].model) == 0 && di.peak_flops[m->precision] == m->classes[c2].peak_flops;
            }
            int w = snprintf(plan->device_mix + used, sizeof plan->device_mix - used, "%s%d x %s", used ? ", " : "", count,
                             m->classes[c2].model[0] ? m->classes[c2].model : "unknown model");
            used += w > 0 ? (size_t)w : 0;
        }
    }
    if (brg__plan_fill_names(plan, m->whole) != BRG_OK) x->failure = BRG_ERR_OUT_OF_MEMORY;
    memcpy(plan->first, best->first, sizeof(int) * (size_t)(S + 1));
    memcpy(plan->policy, best->policy, sizeof(brg_recompute) * (size_t)S);
    /* Each (stage, replica) holds a group of tp devices: the plan lists them all. */
    for (int k = 0; k < c->ranks * c->replicas; k++)
        for (int i = 0; i < tp; i++) plan->devices[k * tp + i] = brg__group_device(m, best->placement->devices[k], i);
    for (int d = 0; d < m->all_devices; d++) plan->device_node[d] = m->device_node[d / tp];
    plan->node_devices = m->all_devices / (m->nodes ? m->nodes : 1);
    brg_status s = brg__evaluate(m, bt, se, c, best->placement, best->first, best->policy, &e);
    brg_timeline *timeline = NULL;
    double makespan = 0.0;
    if (s == BRG_OK) s = brg__simulate(se, &e, &makespan, &timeline, x->err);
    if (s == BRG_OK) {
        brg__plan_set_predictions(plan, m, &e, best->placement, timeline, makespan);
        plan->summary.lower_bound_seconds = fmin(x->lower_bound, makespan);
        plan->summary.exhaustive = x->exhaustive;
        plan->summary.configurations = x->configurations;
        plan->summary.placements = x->placements_scored;
        plan->summary.simulations = x->simulations;
        plan->summary.search_seconds = seconds;
        find_binds(plan, m, &e, best->placement);
    }
    /* The comparison: this plan, the baselines, the next best. */
    int rows = 4 + x->result_slots - 1;
    plan->comparisons = brg__calloc((size_t)rows, sizeof *plan->comparisons);
    if (s == BRG_OK && !plan->comparisons) s = BRG_ERR_OUT_OF_MEMORY;
    brg__plan_placement order;
    int have_order = s == BRG_OK && brg__plan_placement_device_order(m, c->ranks, c->replicas, &order) == BRG_OK;
    int *cuts = brg__malloc(sizeof(int) * (size_t)(S + 1));
    if (s == BRG_OK && (!have_order || !cuts)) s = BRG_ERR_OUT_OF_MEMORY;
    if (s == BRG_OK) {
        brg__comparison *row = &plan->comparisons[plan->comparison_count++];
        memset(row, 0, sizeof *row);
        snprintf(row->label, sizeof row->label, "this plan");
        describe_config(c, best->first, row->description, sizeof row->description);
        row->feasible = 1;
        row->config = *c;
        row->iteration_seconds = makespan;
        row->tokens_per_second = plan->summary.tokens_per_second;
        row->mfu = plan->summary.mfu;
        row->bubble = plan->summary.bubble;
        row->peak_memory_bytes = plan->summary.peak_memory_bytes;
    }
    if (s == BRG_OK)
        s = score_comparison(x, c, &order, NULL, "topology-blind placement", &plan->comparisons[plan->comparison_count++]);
    if (s == BRG_OK) {
        uniform_cuts(m->layers, S, cuts);
        s = score_comparison(x, c, &order, cuts, "uniform by layers", &plan->comparisons[plan->comparison_count++]);
    }
    if (s == BRG_OK) {
        balanced_cuts(m, S, cuts);
        s = score_comparison(x, c, &order, cuts, "balanced by parameters", &plan->comparisons[plan->comparison_count++]);
    }
    for (int i = 1; i < x->result_slots && s == BRG_OK; i++) {
        const result *r = &x->results[i];
        if (!r->used) break;
        char label[48];
        snprintf(label, sizeof label, "next best #%d", i);
        use_variant(x, &r->config); /* it may be of another tensor-parallel width */
        s = score_comparison(x, &r->config, r->placement, r->first, label, &plan->comparisons[plan->comparison_count++]);
    }
    use_variant(x, c);
    if (s == BRG_OK) {
        const char *mode = x->exhaustive ? "exhaustive: every cut point and placement was bounded, so this plan is "
                                           "the best under the model"
                                         : "heuristic: cut points by dynamic programming on each placement family";
        snprintf(plan->search_note, sizeof plan->search_note,
                 "%lld configurations, %lld distinct placements, %lld candidates simulated in %.3f s (%s)",
                 (long long)x->configurations, (long long)x->placements_scored, (long long)x->simulations, seconds,
                 mode);
    }
    free(cuts);
    if (have_order) brg__plan_placement_free(&order);
    brg__evaluation_free(&e);
    if (s == BRG_OK) s = x->failure;
    if (s != BRG_OK) {
        brg_plan_destroy(plan);
        if (x->err && x->err->status == BRG_OK) brg__error_set(x->err, s, "building the plan failed: %s", brg_status_string(s));
        return s;
    }
    *out = plan;
    return BRG_OK;
}
