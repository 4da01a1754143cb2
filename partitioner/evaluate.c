/* Scoring one candidate: its per-stage costs and per-rank memory, a lower bound on its iteration time,
 * and the simulation of its instruction streams. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "partitioner_internal.h"

brg_status brg__evaluation_alloc(brg__evaluation *e, int stages, int ranks) {
    memset(e, 0, sizeof *e);
    e->stages = stages;
    size_t S = (size_t)stages, R = (size_t)ranks;
    e->forward = brg__calloc(S, sizeof(double));
    e->backward = brg__calloc(S, sizeof(double));
    e->backward_input = brg__calloc(S, sizeof(double));
    e->backward_weight = brg__calloc(S, sizeof(double));
    e->recompute = brg__calloc(S, sizeof(double));
    e->transfer = brg__calloc(S, sizeof(double));
    e->boundary_bytes = brg__calloc(S, sizeof(int64_t));
    e->tp_seconds = brg__calloc(S, sizeof(double));
    e->tp_bytes = brg__calloc(S, sizeof(int64_t));
    e->allreduce = brg__calloc(R, sizeof(double));
    e->allreduce_total = brg__calloc(R, sizeof(double));
    e->rank_dp_bytes = brg__calloc(R, sizeof(int64_t));
    e->rank_moment_bytes = brg__calloc(R, sizeof(int64_t));
    e->optimizer = brg__calloc(R, sizeof(double));
    e->busy = brg__calloc(R, sizeof(double));
    e->memory = brg__calloc(S, sizeof *e->memory);
    e->rank_static = brg__calloc(R, sizeof(int64_t));
    e->rank_activation = brg__calloc(R, sizeof(int64_t));
    e->rank_workspace = brg__calloc(R, sizeof(int64_t));
    e->rank_total = brg__calloc(R, sizeof(int64_t));
    e->rank_in_flight = brg__calloc(R, sizeof(int));
    if (!e->forward || !e->backward || !e->backward_input || !e->backward_weight || !e->recompute || !e->transfer ||
        !e->boundary_bytes || !e->tp_seconds || !e->tp_bytes || !e->allreduce || !e->allreduce_total || !e->rank_dp_bytes || !e->rank_moment_bytes ||
        !e->optimizer || !e->busy || !e->memory || !e->rank_static ||
        !e->rank_activation || !e->rank_workspace || !e->rank_total || !e->rank_in_flight) {
        brg__evaluation_free(e);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    return BRG_OK;
}

void brg__evaluation_free(brg__evaluation *e) {
    if (!e) return;
    free(e->forward);
    free(e->backward);
    free(e->backward_input);
    free(e->backward_weight);
    free(e->recompute);
    free(e->transfer);
    free(e->boundary_bytes);
    free(e->tp_seconds);
    free(e->tp_bytes);
    free(e->allreduce);
    free(e->allreduce_total);
    free(e->rank_dp_bytes);
    free(e->rank_moment_bytes);
    free(e->optimizer);
    free(e->busy);
    free(e->memory);
    free(e->rank_static);
    free(e->rank_activation);
    free(e->rank_workspace);
    free(e->rank_total);
    free(e->rank_in_flight);
    memset(e, 0, sizeof *e);
}

/* What rank r's chunk v keeps beside its workspace: the last stage's step buffer of losses, one per
 * position and micro-batch, which the host reads once per step (engine/runtime/stage.c: loss_kept). */
static int64_t loss_kept_bytes(const brg__model *m, const brg__batch_table *bt, const brg__config *c, int s) {
    if (s != c->ranks * c->chunks - 1) return 0;
    return brg__alloc_round(m->kind, m->loss_numel * bt->micro_batch * 4 * (int64_t)c->micro_batches);
}

/* Stage times on a rank: the slowest of its devices' classes. */
static void rank_stage_times(const brg__model *m, const brg__batch_table *bt, unsigned classes, int a, int e,
                             brg_recompute policy, brg__stage_times *out) {
    memset(out, 0, sizeof *out);
    for (int c = 0; c < m->class_count; c++) {
        if (!(classes & (1u << c))) continue;
        brg__stage_times t;
        brg__stage_times_get(bt, m, c, a, e, policy, &t);
        out->forward = fmax(out->forward, t.forward);
        out->backward_input = fmax(out->backward_input, t.backward_input);
        out->backward_weight = fmax(out->backward_weight, t.backward_weight);
        out->recompute = fmax(out->recompute, t.recompute);
    }
}

/* Seconds to move `bytes` in `tensors` transfers over link k of the placement. */
static double transfer_time(const brg__plan_placement *p, int k, int64_t bytes, int tensors) {
    if (p->ranks < 2 || bytes <= 0) return 0.0;
    return (double)tensors * p->link_latency[k] + (double)bytes / p->link_bandwidth[k];
}

static double ring_allreduce(const brg__plan_placement *p, int k, double bytes) {
    int d = p->replicas;
    if (d < 2 || bytes <= 0) return 0.0;
    return 2.0 * (d - 1) / d * bytes / p->ring_bandwidth[k] + 2.0 * (d - 1) * p->ring_latency[k];
}

/* Data parallelism on pipeline rank r, as engine/runtime/dp.c lays it out: one piece per (virtual stage
 * of r, parameter it reads); the untied ones (read in one virtual stage only) in the order the last
 * micro-batch's backward finishes them (later stages first, inside a stage by the first op reading the
 * parameter, from the last), then the tied ones (summed across their stages first), in one flat buffer
 * where the gradients then live (their own buffers freed); buckets are ranges of exactly bucket_bytes of
 * it, the untied region's then the tied one's. What it allocates: the flat buffer, a scratch for the
 * largest bucket's reduction, and under ZeRO-1 the moments of this replica's part of every bucket in place
 * of the stages' moments. */
typedef struct dp_layout {
    int64_t elements;      /* of every bucket */
    int64_t exposed_elements; /* of the buckets posted last: the last untied bucket and the tied one */
    int64_t static_bytes;  /* what the runtime adds to the rank (may be negative under ZeRO-1) */
    int64_t moment_bytes;  /* the rank's AdamW moments (as requested, before the allocator rounds them) */
} dp_layout;

typedef struct dp_piece {
    int64_t first_op, param, numel;
} dp_piece;

static int compare_dp_pieces(const void *a, const void *b) {
    const dp_piece *x = a, *y = b;
    if (x->first_op != y->first_op) return x->first_op < y->first_op ? 1 : -1;
    return (x->param > y->param) - (x->param < y->param);
}

static brg_status dp_rank_layout(const brg__model *m, const brg__config *c, const int *first, int r, int zero,
                                 dp_layout *out) {
    memset(out, 0, sizeof *out);
    const brg_graph *g = m->graph;
    int S = c->ranks * c->chunks, d = c->replicas;
    int64_t np = g->n_params, bucket_elements = ((int64_t)4 << 20) / 4; /* the runtime's default bucket_bytes */
    int *stage_of = brg__malloc((size_t)(np ? np : 1) * sizeof *stage_of);
    unsigned char *tied = brg__calloc((size_t)(np ? np : 1), 1);
    int64_t *first_op = brg__malloc((size_t)(np ? np : 1) * sizeof *first_op);
    dp_piece *pieces = brg__malloc((size_t)(np ? np : 1) * (size_t)c->chunks * 2 * sizeof *pieces);
    if (!stage_of || !tied || !first_op || !pieces) {
        free(stage_of);
        free(tied);
        free(first_op);
        free(pieces);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    for (int64_t p = 0; p < np; p++) stage_of[p] = -1;
    for (int s = 0; s < S; s++)
        for (int64_t i = m->layer_op_begin[first[s]]; i < m->layer_op_begin[first[s + 1]]; i++)
            for (int q = 0; q < g->ops[i].n_inputs; q++) {
                const brg_tensor *t = g->ops[i].inputs[q];
                if (t->kind != BRG_TENSOR_PARAMETER) continue;
                if (stage_of[t->param_index] >= 0 && stage_of[t->param_index] != s) tied[t->param_index] = 1;
                stage_of[t->param_index] = s;
            }
    int n = 0, n_tied = 0;
    dp_piece *tied_pieces = pieces + (size_t)np * (size_t)c->chunks;
    for (int v = c->chunks - 1; v >= 0; v--) { /* the rank's virtual stages, from the last */
        int s = v * c->ranks + r, begin = n;
        for (int64_t p = 0; p < np; p++) first_op[p] = -1;
        for (int64_t i = m->layer_op_begin[first[s]]; i < m->layer_op_begin[first[s + 1]]; i++)
            for (int q = 0; q < g->ops[i].n_inputs; q++) {
                const brg_tensor *t = g->ops[i].inputs[q];
                if (t->kind == BRG_TENSOR_PARAMETER && first_op[t->param_index] < 0) first_op[t->param_index] = i;
            }
        for (int64_t p = 0; p < np; p++) {
            if (first_op[p] < 0) continue;
            dp_piece pc = {first_op[p], p, brg__tensor_numel(g->params[p], 1)};
            if (tied[p])
                tied_pieces[n_tied++] = pc;
            else
                pieces[n++] = pc;
        }
        qsort(pieces + begin, (size_t)(n - begin), sizeof *pieces, compare_dp_pieces);
    }
    /* One flat buffer holds every piece's gradient (each piece's own buffer freed); buckets are ranges of
     * exactly bucket_elements of it, the untied region's and then the tied region's. */
    int64_t untied = 0, tied_total = 0, grads_freed = 0, moments_freed = 0;
    for (int i = 0; i < n; i++) {
        untied += pieces[i].numel;
        grads_freed += brg__alloc_round(m->kind, pieces[i].numel * 4);
    }
    for (int k = 0; k < n_tied; k++) {
        tied_total += tied_pieces[k].numel;
        grads_freed += brg__alloc_round(m->kind, tied_pieces[k].numel * 4);
    }
    moments_freed = 2 * grads_freed;
    int64_t parts = 0, exact_parts = 0, largest = 0, last = 0;
    const int64_t regions[2] = {untied, tied_total};
    for (int k = 0; k < 2; k++)
        for (int64_t at = 0; at < regions[k]; at += bucket_elements) {
            int64_t count = regions[k] - at < bucket_elements ? regions[k] - at : bucket_elements;
            int64_t part = count / d + (count % d ? 1 : 0); /* replica 0's: the longest */
            parts += 2 * brg__alloc_round(m->kind, (part ? part : 1) * 4);
            exact_parts += 2 * part * 4;
            if (count > largest) largest = count;
            if (k == 0) last = count;
        }
    out->elements = untied + tied_total;
    out->exposed_elements = last + tied_total;
    int64_t longest = largest / d + (largest % d ? 1 : 0);
    int64_t scratch = d > 1 && longest ? brg__alloc_round(m->kind, (int64_t)d * longest * 4) : 0;
    int64_t flat = brg__alloc_round(m->kind, (out->elements ? out->elements : 1) * 4);
    out->static_bytes = flat - grads_freed + scratch + (zero ? parts - moments_freed : 0);
    out->moment_bytes = zero ? exact_parts : 8 * out->elements;
    free(stage_of);
    free(tied);
    free(first_op);
    free(pieces);
    return BRG_OK;
}

/* Consumers of each shared parameter held by rank r. */
static void held_by_rank(const brg__model *m, const brg__config *c, const int *first, int r, int *held) {
    int S = c->ranks * c->chunks;
    for (int s = 0; s < m->shared_count; s++) {
        held[s] = 0;
        for (int k = 0; k < m->shared[s].consumers; k++) {
            int layer = m->shared[s].consumer_layer[k];
            for (int v = r; v < S; v += c->ranks)
                if (layer >= first[v] && layer < first[v + 1]) held[s]++;
        }
    }
}

/* The rank holding layer `layer`. */
static int rank_of_layer(const brg__config *c, const int *first, int layer) {
    int S = c->ranks * c->chunks;
    for (int s = 0; s < S; s++)
        if (layer >= first[s] && layer < first[s + 1]) return s % c->ranks;
    return 0;
}

/* Receiving a tied parameter's other gradients at the optimizer step (trainer.c: reduce_tied). */
static double tied_exchange(const brg__model *m, const brg__config *c, const brg__plan_placement *p, const int *first,
                            int r, const int *held) {
    double t = 0.0;
    for (int s = 0; s < m->shared_count; s++) {
        if (!held[s] || held[s] == m->shared[s].consumers) continue;
        double bytes = (double)m->shared[s].numel * 4.0;
        for (int k = 0; k < m->shared[s].consumers; k++) {
            int other = rank_of_layer(c, first, m->shared[s].consumer_layer[k]);
            if (other == r) continue;
            brg_link l;
            brg__model_link(m, p->devices[r * p->replicas], p->devices[other * p->replicas], &l);
            t += l.latency + bytes / l.bandwidth;
        }
    }
    return t;
}

brg_status brg__evaluate(const brg__model *m, const brg__batch_table *bt, const brg__schedule_entry *se,
                         const brg__config *c, const brg__plan_placement *p, const int *first, const brg_recompute *policy,
                         brg__evaluation *e) {
    int R = c->ranks, S = R * c->chunks;
    double mb = (double)c->micro_batches;
    int held_stack[16];
    int *held = m->shared_count <= 16 ? held_stack : brg__malloc(sizeof(int) * (size_t)m->shared_count);
    if (!held) return BRG_ERR_OUT_OF_MEMORY;
    for (int s = 0; s < S; s++) {
        int r = s % R;
        brg__stage_times t;
        rank_stage_times(m, bt, p->rank_classes[r], first[s], first[s + 1], policy[s], &t);
        e->forward[s] = t.forward;
        e->recompute[s] = t.recompute;
        e->backward_input[s] = t.backward_input + t.recompute;
        e->backward_weight[s] = t.backward_weight;
        e->backward[s] = e->backward_input[s] + e->backward_weight[s];
        brg__stage_memory_get(bt, m, first[s], first[s + 1], policy[s], &e->memory[s]);
        int a = first[s], z = first[s + 1];
        double tp_forward = bt->tp_forward[z] - bt->tp_forward[a];
        e->tp_seconds[s] = tp_forward + bt->tp_backward[z] - bt->tp_backward[a] +
                           (policy[s] == BRG_RECOMPUTE_FULL ? tp_forward : 0.0);
        e->tp_bytes[s] = bt->tp_bytes[z] - bt->tp_bytes[a];
        if (s + 1 < S) {
            int cut = first[s + 1];
            e->boundary_bytes[s] = bt->boundary_bytes[cut];
            e->transfer[s] = transfer_time(p, r, bt->boundary_bytes[cut], bt->boundary_tensors[cut]);
        }
    }
    double passes = 0.0, bound = 0.0;
    for (int s = 0; s < S; s++) {
        int r = s % R, cl = 0;
        while (cl + 1 < m->class_count && !(p->rank_classes[r] & (1u << cl))) cl++;
        size_t base = (size_t)cl * (size_t)(m->layers + 1);
        bound += bt->memory_bound[base + first[s + 1]] - bt->memory_bound[base + first[s]];
        passes += e->forward[s] + e->backward[s] - e->recompute[s];
    }
    e->memory_bound_share = passes > 0 ? bound / passes : 0.0;
    e->feasible = 1;
    e->worst_rank = 0;
    double worst_ratio = -1.0;
    brg__stage_memory chunk_memory[64];
    for (int r = 0; r < R; r++) {
        int64_t statics = 0, workspace = 0, params = 0, partial = 0;
        double busy = 0.0;
        for (int v = 0; v < c->chunks; v++) {
            int s = v * R + r;
            const brg__stage_memory *sm = &e->memory[s];
            statics += sm->params + sm->gradients + sm->optimizer;
            workspace += sm->workspace + loss_kept_bytes(m, bt, c, s);
            params += sm->params;
            for (int l = first[s]; l < first[s + 1]; l++) partial += m->layer_partial[l];
            busy += mb * (e->forward[s] + e->backward[s]);
            if (v < 64) chunk_memory[v] = *sm;
        }
        held_by_rank(m, c, first, r, held);
        int64_t walk = brg__memory_walk_peak(&se->walks[r], chunk_memory);
        int64_t transient = brg__optimizer_transient(m, held, R);
        dp_layout dl = {0};
        if (c->replicas > 1 && dp_rank_layout(m, c, first, r, c->zero, &dl) != BRG_OK) {
            if (held != held_stack) free(held);
            return BRG_ERR_OUT_OF_MEMORY;
        }
        statics += dl.static_bytes;
        if (c->zero && c->replicas > 1) { /* the replicas' sums of squares, exchanged after backward (dp.c) */
            int64_t norms = brg__alloc_round(m->kind, (int64_t)c->replicas * (m->param_tensors ? m->param_tensors : 1) * 8);
            if (norms > transient) transient = norms;
        }
        e->rank_dp_bytes[r] = dl.static_bytes;
        e->rank_moment_bytes[r] = c->replicas > 1 ? dl.moment_bytes : 2 * params; /* 1 replica: rounded */
        e->rank_static[r] = statics;
        e->rank_activation[r] = walk > transient ? walk : transient;
        e->rank_workspace[r] = workspace;
        e->rank_total[r] = statics + e->rank_activation[r] + workspace;
        e->rank_in_flight[r] = se->peak_in_flight[r];
        /* The sums across replicas: buckets posted as the last micro-batch's backward finishes them move
         * while the rest of it runs; what is exposed is the larger of the buckets posted last (the last
         * untied one and the tied one, posted after the step's end) and what the window of the last
         * micro-batch's backward on this rank cannot hide. Under ZeRO-1 a reduce-scatter (half an
         * all-reduce's traffic) there, and an all-gather of the updated parameters after the optimizer,
         * exposed. */
        double bytes = 4.0 * (double)dl.elements, last = 4.0 * (double)dl.exposed_elements, window = 0.0;
        for (int v = 0; v < c->chunks; v++) window += e->backward[v * R + r];
        double total = ring_allreduce(p, r, bytes), tail = ring_allreduce(p, r, last);
        if (c->zero) {
            total *= 0.5;
            tail *= 0.5;
        }
        e->allreduce_total[r] = total;
        e->allreduce[r] = fmax(tail, total - window);
        double gather = c->zero ? 0.5 * ring_allreduce(p, r, bytes) : 0.0;
        /* AdamW reads the value, gradient and moments and writes three of them back: 7 fp32 per parameter
         * (under ZeRO-1, of this replica's part). */
        double slowest_bandwidth = INFINITY;
        for (int k = 0; k < m->class_count; k++)
            if (p->rank_classes[r] & (1u << k)) slowest_bandwidth = fmin(slowest_bandwidth, m->classes[k].memory_bandwidth);
        double updated = c->zero && c->replicas > 1 ? (double)params / c->replicas : (double)params;
        /* Sequence parallelism: the gradients each rank of the group took from its positions alone (the
         * layernorms', the row-parallel biases') summed over the group, in fp32, before the step. */
        double partial_sum = brg__tp_collective_seconds(m, BRG__COMM_ALLREDUCE, 4.0 * (double)partial);
        e->optimizer[r] = 7.0 * updated / (slowest_bandwidth * m->memory_efficiency) + gather +
                          tied_exchange(m, c, p, first, r, held) + partial_sum;
        e->busy[r] = busy + e->allreduce[r] + e->optimizer[r];
        if (e->rank_total[r] > p->rank_usable[r]) e->feasible = 0;
        double ratio = p->rank_usable[r] > 0 ? (double)e->rank_total[r] / (double)p->rank_usable[r] : INFINITY;
        if (ratio > worst_ratio) {
            worst_ratio = ratio;
            e->worst_rank = r;
        }
    }
    if (held != held_stack) free(held);
    e->lower_bound = brg__lower_bound(c, e);
    return e->lower_bound < 0 ? BRG_ERR_OUT_OF_MEMORY : BRG_OK;
}

double brg__lower_bound(const brg__config *c, const brg__evaluation *e) {
    int R = c->ranks, S = R * c->chunks;
    double m = (double)c->micro_batches;
    int split = c->kind == BRG_SCHEDULE_ZB_H1;
    double lb = 0.0;
#define BC(s) (split ? e->backward_input[s] : e->backward[s])
#define WX(s) (split ? e->backward_weight[s] : 0.0)
#define FIN(r) (e->allreduce[r] + e->optimizer[r])
    /* One micro-batch's round trip through every stage, then rank 0's last work. */
    double trip = WX(0) + FIN(0);
    for (int s = 0; s < S; s++) trip += e->forward[s] + BC(s) + (s + 1 < S ? 2.0 * e->transfer[s] : 0.0);
    lb = fmax(lb, trip);
    double pre = 0.0, drain = 0.0;
    if (c->chunks == 1) {
        /* rt[k]: from stage k's first forward until its gradient returns. */
        double *rt = brg__malloc(sizeof(double) * (size_t)S);
        if (!rt) return -1.0; /* out of memory */
        rt[S - 1] = 0.0;
        for (int k = S - 2; k >= 0; k--) rt[k] = rt[k + 1] + e->forward[k + 1] + BC(k + 1) + 2.0 * e->transfer[k];
        for (int k = 0; k < S; k++) {
            drain = k == 0 ? WX(0) + FIN(0) : fmax(WX(k) + FIN(k), e->transfer[k - 1] + BC(k - 1) + drain);
            double f = e->forward[k];
            double chain = pre + f + fmax((m - 1.0) * f, rt[k]) + m * BC(k) + drain;
            double busy = pre + m * (f + e->backward[k]) + FIN(k);
            lb = fmax(lb, fmax(chain, busy));
            pre += f + e->transfer[k];
        }
        free(rt);
    } else {
        for (int r = 0; r < R; r++) {
            drain = r == 0 ? WX(0) + FIN(0) : fmax(WX(r) + FIN(r), e->transfer[r - 1] + BC(r - 1) + drain);
            double passes = 0.0, critical = 0.0;
            for (int s = r; s < S; s += R) {
                passes += m * (e->forward[s] + e->backward[s]);
                critical += m * (e->forward[s] + BC(s));
            }
            lb = fmax(lb, fmax(pre + passes + FIN(r), pre + critical + drain));
            pre += e->forward[r] + e->transfer[r];
        }
    }
#undef BC
#undef WX
#undef FIN
    return lb;
}

brg_status brg__simulate(const brg__schedule_entry *se, const brg__evaluation *e, double *makespan,
                         brg_timeline **timeline, brg_error *err) {
    brg_schedule_costs costs = BRG_SCHEDULE_COSTS_INIT;
    costs.forward = e->forward;
    costs.backward = e->backward;
    costs.backward_input = e->backward_input;
    costs.backward_weight = e->backward_weight;
    costs.transfer_activation = e->transfer;
    costs.transfer_grad = e->transfer;
    costs.allreduce = e->allreduce;
    costs.optimizer = e->optimizer;
    brg_timeline *t = NULL;
    BRG__CHECK(brg_schedule_simulate(&se->view, &costs, &t, err));
    brg_timeline_summary summary;
    brg_timeline_get_summary(t, &summary);
    *makespan = summary.makespan;
    if (timeline)
        *timeline = t;
    else
        brg_timeline_destroy(t);
    return BRG_OK;
}

/* ---- recomputation ------------------------------------------------------------------------------ */

/* Whether rank r fits with these policies for its chunks. */
/* Whether rank r fits with these policies for its chunks, counted as brg__evaluate counts it: dp_static is
 * what data parallelism adds or takes away (dp_rank_layout's static_bytes: the flat gradient buffer, the
 * reduction's scratch, ZeRO-1's moment parts), dp_transient the replicas' norms under ZeRO-1. */
static int rank_fits(const brg__model *m, const brg__batch_table *bt, const brg__schedule_entry *se,
                     const brg__config *c, const brg__plan_placement *p, const int *first, const brg_recompute *policy,
                     int r, const int *held, int64_t dp_static, int64_t dp_transient, int64_t *total) {
    brg__stage_memory chunk_memory[64];
    int64_t statics = dp_static, workspace = 0;
    for (int v = 0; v < c->chunks && v < 64; v++) {
        int s = v * c->ranks + r;
        brg__stage_memory_get(bt, m, first[s], first[s + 1], policy[s], &chunk_memory[v]);
        statics += chunk_memory[v].params + chunk_memory[v].gradients + chunk_memory[v].optimizer;
        workspace += chunk_memory[v].workspace + loss_kept_bytes(m, bt, c, s);
    }
    int64_t walk = brg__memory_walk_peak(&se->walks[r], chunk_memory);
    int64_t transient = brg__optimizer_transient(m, held, c->ranks);
    if (dp_transient > transient) transient = dp_transient;
    *total = statics + (walk > transient ? walk : transient) + workspace;
    return *total <= p->rank_usable[r];
}

int brg__choose_policies(const brg__model *m, const brg__batch_table *bt, const brg__schedule_entry *se,
                         const brg__config *c, const brg__plan_placement *p, const int *first, brg_recompute *policy) {
    int R = c->ranks, V = c->chunks;
    int fixed = m->options.recompute;
    int held_stack[16];
    int *held = m->shared_count <= 16 ? held_stack : brg__malloc(sizeof(int) * (size_t)m->shared_count);
    if (!held) return -1;
    int all_fit = 1;
    for (int r = 0; r < R; r++) {
        held_by_rank(m, c, first, r, held);
        int64_t total, dp_transient = 0;
        dp_layout dl = {0};
        if (c->replicas > 1 && dp_rank_layout(m, c, first, r, c->zero, &dl) != BRG_OK) {
            all_fit = -1;
            break;
        }
        if (c->zero && c->replicas > 1)
            dp_transient = brg__alloc_round(m->kind, (int64_t)c->replicas * (m->param_tensors ? m->param_tensors : 1) * 8);
        if (fixed != BRG_PLAN_RECOMPUTE_AUTO) {
            for (int v = 0; v < V; v++) policy[v * R + r] = (brg_recompute)fixed;
            all_fit &= rank_fits(m, bt, se, c, p, first, policy, r, held, dl.static_bytes, dp_transient, &total);
            continue;
        }
        /* The combinations of the rank's chunks' policies, cheapest recomputation first. */
        static const brg_recompute by_cost[BRG__POLICY_COUNT] = {BRG_RECOMPUTE_NONE, BRG_RECOMPUTE_SELECTIVE,
                                                                  BRG_RECOMPUTE_FULL};
        int combos = 1;
        for (int v = 0; v < V && v < 4; v++) combos *= BRG__POLICY_COUNT;
        int best = -1;
        double best_cost = INFINITY;
        for (int k = 0; k < combos; k++) {
            double cost = 0.0;
            int code = k;
            for (int v = 0; v < V; v++) {
                int choice = v < 4 ? code % BRG__POLICY_COUNT : 2;
                code /= v < 4 ? BRG__POLICY_COUNT : 1;
                int s = v * R + r;
                policy[s] = by_cost[choice];
                brg__stage_times t;
                rank_stage_times(m, bt, p->rank_classes[r], first[s], first[s + 1], policy[s], &t);
                cost += t.recompute;
            }
            if (cost >= best_cost) continue;
            if (rank_fits(m, bt, se, c, p, first, policy, r, held, dl.static_bytes, dp_transient, &total)) {
                best = k;
                best_cost = cost;
            }
        }
        int code = best >= 0 ? best : combos - 1;
        for (int v = 0; v < V; v++) {
            int choice = v < 4 ? code % BRG__POLICY_COUNT : 2;
            code /= v < 4 ? BRG__POLICY_COUNT : 1;
            policy[v * R + r] = by_cost[choice];
        }
        if (best < 0) all_fit = 0;
    }
    if (held != held_stack) free(held);
    return all_fit;
}
