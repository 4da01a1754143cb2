/* Placements: which device holds (pipeline rank k, data-parallel replica r), and what that means for the
 * costs: the slowest device class and smallest memory of each rank, the slowest link between consecutive
 * ranks (over the replicas), and the all-reduce ring through each rank's replicas.
 *
 * On few devices every assignment is tried (replicas are interchangeable, so only those with each rank's
 * replicas in ascending order of their first rank's device), and assignments that cost the same are
 * merged. On more devices the candidates are tilings: each node holds `a` consecutive stages of `c`
 * replicas (a * c devices), consecutive stages of a replica on consecutive devices of a chain that
 * follows the node's fastest links, or replicas of a stage side by side; plus device order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "partitioner_internal.h"

brg_status brg__plan_placement_alloc(brg__plan_placement *p, int ranks, int replicas) {
    memset(p, 0, sizeof *p);
    p->ranks = ranks;
    p->replicas = replicas;
    size_t r = (size_t)ranks;
    p->devices = brg__calloc(r * (size_t)replicas, sizeof *p->devices);
    p->rank_classes = brg__calloc(r, sizeof *p->rank_classes);
    p->rank_usable = brg__calloc(r, sizeof *p->rank_usable);
    p->rank_capacity = brg__calloc(r, sizeof *p->rank_capacity);
    p->link_bandwidth = brg__calloc(r, sizeof *p->link_bandwidth);
    p->link_latency = brg__calloc(r, sizeof *p->link_latency);
    p->link_kind = brg__calloc(r, sizeof *p->link_kind);
    p->link_cross_node = brg__calloc(r, sizeof *p->link_cross_node);
    p->ring_bandwidth = brg__calloc(r, sizeof *p->ring_bandwidth);
    p->ring_latency = brg__calloc(r, sizeof *p->ring_latency);
    p->ring_kind = brg__calloc(r, sizeof *p->ring_kind);
    if (!p->devices || !p->rank_classes || !p->rank_usable || !p->rank_capacity || !p->link_bandwidth ||
        !p->link_latency || !p->link_kind || !p->link_cross_node || !p->ring_bandwidth || !p->ring_latency ||
        !p->ring_kind) {
        brg__plan_placement_free(p);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    return BRG_OK;
}

void brg__plan_placement_free(brg__plan_placement *p) {
    if (!p) return;
    free(p->devices);
    free(p->rank_classes);
    free(p->rank_usable);
    free(p->rank_capacity);
    free(p->link_bandwidth);
    free(p->link_latency);
    free(p->link_kind);
    free(p->link_cross_node);
    free(p->ring_bandwidth);
    free(p->ring_latency);
    free(p->ring_kind);
    memset(p, 0, sizeof *p);
}

/* The link a -> b and back (devices of the model: tensor-parallel groups), the smaller bandwidth, the larger
 * latency; between two devices a profile was measured on, at least the hand-off latency it measured. */
static void pair_link(const brg__model *m, int a, int b, brg_link *out) {
    brg__model_link(m, a, b, out);
    if (m->profile && m->classes[m->device_class[a]].profiled && m->classes[m->device_class[b]].profiled) {
        double measured = brg_profile_transfer_latency(m->profile);
        if (measured > out->latency) out->latency = measured;
    }
}

/* The best ring through devs[0..n): the largest bottleneck bandwidth over every cyclic order (subset
 * dynamic programming; n <= 12). Latency: the largest on that ring's edges. 0 when out of memory. */
static int ring_exact(const brg__model *m, const int *devs, int n, double *bandwidth, double *latency,
                       brg_link_kind *kind) {
    brg_link links[12][12];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (i != j) pair_link(m, devs[i], devs[j], &links[i][j]);
    size_t states = (size_t)1 << n;
    double *best = brg__malloc(sizeof(double) * states * (size_t)n);
    if (!best) return 0;
    for (size_t k = 0; k < states * (size_t)n; k++) best[k] = -1.0;
    best[1 * (size_t)n + 0] = INFINITY;
    for (size_t mask = 1; mask < states; mask += 2)
        for (int last = 0; last < n; last++) {
            double v = best[mask * (size_t)n + (size_t)last];
            if (v < 0) continue;
            for (int next = 1; next < n; next++) {
                if (mask & ((size_t)1 << next)) continue;
                double w = fmin(v, links[last][next].bandwidth);
                size_t to = (mask | ((size_t)1 << next)) * (size_t)n + (size_t)next;
                if (w > best[to]) best[to] = w;
            }
        }
    double top = -1.0;
    for (int last = 1; last < n; last++) {
        double v = best[(states - 1) * (size_t)n + (size_t)last];
        if (v >= 0) top = fmax(top, fmin(v, links[last][0].bandwidth));
    }
    free(best);
    *bandwidth = top;
    /* Latency and kind: of the ring's slowest edge class; every edge on such a ring has bandwidth >= top. */
    double lat = 0.0;
    brg_link_kind k = links[0][1].kind;
    double slowest = INFINITY;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            if (i == j || links[i][j].bandwidth < top) continue;
            if (links[i][j].latency > lat) lat = links[i][j].latency;
            if (links[i][j].bandwidth < slowest) {
                slowest = links[i][j].bandwidth;
                k = links[i][j].kind;
            }
        }
    *latency = lat;
    *kind = k;
    return 1;
}

static int compare_node_order(const void *a, const void *b, void *arg) {
    const int *node = arg;
    int x = *(const int *)a, y = *(const int *)b;
    if (node[x] != node[y]) return node[x] - node[y];
    return x - y;
}

/* A ring through devs in node order (what NCCL's rings do across nodes): its slowest edge. */
static void ring_in_node_order(const brg__model *m, const int *devs, int n, double *bandwidth, double *latency,
                               brg_link_kind *kind) {
    int *order = brg__malloc(sizeof(int) * (size_t)n);
    if (!order) {
        brg_link l;
        pair_link(m, devs[0], devs[1], &l);
        *bandwidth = l.bandwidth;
        *latency = l.latency;
        *kind = l.kind;
        return;
    }
    memcpy(order, devs, sizeof(int) * (size_t)n);
    qsort_r(order, (size_t)n, sizeof(int), compare_node_order, m->device_node);
    *bandwidth = INFINITY;
    *latency = 0.0;
    *kind = BRG_LINK_SELF;
    for (int i = 0; i < n; i++) {
        brg_link l;
        pair_link(m, order[i], order[(i + 1) % n], &l);
        if (l.bandwidth < *bandwidth) {
            *bandwidth = l.bandwidth;
            *kind = l.kind;
        }
        if (l.latency > *latency) *latency = l.latency;
    }
    free(order);
}

static uint64_t mix(uint64_t h, const void *data, size_t size) { return brg__fnv1a(h, data, size); }

/* Rings memoized by device set, for the enumeration of every placement on few devices. */
typedef struct ring_memo {
    unsigned char known[1 << BRG__EXACT_PLACEMENT_DEVICES];
    double bandwidth[1 << BRG__EXACT_PLACEMENT_DEVICES];
    double latency[1 << BRG__EXACT_PLACEMENT_DEVICES];
    brg_link_kind kind[1 << BRG__EXACT_PLACEMENT_DEVICES];
} ring_memo;

static brg_status describe(const brg__model *m, brg__plan_placement *p, int exact_ring, ring_memo *memo) {
    int R = p->ranks, D = p->replicas;
    int devs[64];
    for (int k = 0; k < R; k++) {
        p->rank_classes[k] = 0;
        p->rank_usable[k] = INT64_MAX;
        p->rank_capacity[k] = INT64_MAX;
        for (int r = 0; r < D; r++) {
            int d = p->devices[k * D + r];
            p->rank_classes[k] |= 1u << m->device_class[d];
            if (m->device_usable[d] < p->rank_usable[k]) p->rank_usable[k] = m->device_usable[d];
            if (m->device_capacity[d] < p->rank_capacity[k]) p->rank_capacity[k] = m->device_capacity[d];
        }
        /* The link to the next rank (the last wraps to rank 0: interleaved chunks use it). */
        p->link_bandwidth[k] = INFINITY;
        p->link_latency[k] = 0.0;
        p->link_kind[k] = BRG_LINK_SELF;
        p->link_cross_node[k] = 0;
        int next = (k + 1) % R;
        for (int r = 0; R > 1 && r < D; r++) {
            int a = p->devices[k * D + r], b = p->devices[next * D + r];
            brg_link l;
            pair_link(m, a, b, &l);
            if (l.bandwidth < p->link_bandwidth[k]) {
                p->link_bandwidth[k] = l.bandwidth;
                p->link_kind[k] = l.kind;
            }
            if (l.latency > p->link_latency[k]) p->link_latency[k] = l.latency;
            if (m->device_node[a] != m->device_node[b]) p->link_cross_node[k] = 1;
        }
        /* The all-reduce ring of the rank's replicas. */
        p->ring_bandwidth[k] = INFINITY;
        p->ring_latency[k] = 0.0;
        p->ring_kind[k] = BRG_LINK_SELF;
        if (D < 2) continue;
        if (D == 2) {
            brg_link l;
            pair_link(m, p->devices[k * D], p->devices[k * D + 1], &l);
            p->ring_bandwidth[k] = l.bandwidth;
            p->ring_latency[k] = l.latency;
            p->ring_kind[k] = l.kind;
        } else if (exact_ring && D <= 12) {
            unsigned mask = 0;
            for (int r = 0; r < D; r++) {
                devs[r] = p->devices[k * D + r];
                if (devs[r] < BRG__EXACT_PLACEMENT_DEVICES) mask |= 1u << devs[r];
            }
            if (memo && m->devices <= BRG__EXACT_PLACEMENT_DEVICES && memo->known[mask]) {
                p->ring_bandwidth[k] = memo->bandwidth[mask];
                p->ring_latency[k] = memo->latency[mask];
                p->ring_kind[k] = memo->kind[mask];
            } else {
                if (!ring_exact(m, devs, D, &p->ring_bandwidth[k], &p->ring_latency[k], &p->ring_kind[k]))
                    return BRG_ERR_OUT_OF_MEMORY;
                if (memo && m->devices <= BRG__EXACT_PLACEMENT_DEVICES) {
                    memo->known[mask] = 1;
                    memo->bandwidth[mask] = p->ring_bandwidth[k];
                    memo->latency[mask] = p->ring_latency[k];
                    memo->kind[mask] = p->ring_kind[k];
                }
            }
        } else {
            int *group = D <= 64 ? devs : brg__malloc(sizeof(int) * (size_t)D);
            if (!group) return BRG_ERR_OUT_OF_MEMORY;
            for (int r = 0; r < D; r++) group[r] = p->devices[k * D + r];
            ring_in_node_order(m, group, D, &p->ring_bandwidth[k], &p->ring_latency[k], &p->ring_kind[k]);
            if (group != devs) free(group);
        }
    }
    uint64_t h = BRG__FNV_OFFSET;
    h = mix(h, &R, sizeof R);
    h = mix(h, &D, sizeof D);
    h = mix(h, p->rank_classes, sizeof *p->rank_classes * (size_t)R);
    h = mix(h, p->rank_usable, sizeof *p->rank_usable * (size_t)R);
    h = mix(h, p->link_bandwidth, sizeof *p->link_bandwidth * (size_t)R);
    h = mix(h, p->link_latency, sizeof *p->link_latency * (size_t)R);
    h = mix(h, p->link_kind, sizeof *p->link_kind * (size_t)R);
    h = mix(h, p->link_cross_node, sizeof *p->link_cross_node * (size_t)R);
    h = mix(h, p->ring_bandwidth, sizeof *p->ring_bandwidth * (size_t)R);
    h = mix(h, p->ring_latency, sizeof *p->ring_latency * (size_t)R);
    p->hash = h;
    return BRG_OK;
}

brg_status brg__plan_placement_describe(const brg__model *m, brg__plan_placement *p, int exact_ring) {
    return describe(m, p, exact_ring, NULL);
}

int brg__plan_placement_equivalent(const brg__plan_placement *a, const brg__plan_placement *b) {
    if (a->hash != b->hash || a->ranks != b->ranks || a->replicas != b->replicas) return 0;
    size_t R = (size_t)a->ranks;
    return memcmp(a->rank_classes, b->rank_classes, sizeof *a->rank_classes * R) == 0 &&
           memcmp(a->rank_usable, b->rank_usable, sizeof *a->rank_usable * R) == 0 &&
           memcmp(a->link_bandwidth, b->link_bandwidth, sizeof *a->link_bandwidth * R) == 0 &&
           memcmp(a->link_latency, b->link_latency, sizeof *a->link_latency * R) == 0 &&
           memcmp(a->link_kind, b->link_kind, sizeof *a->link_kind * R) == 0 &&
           memcmp(a->link_cross_node, b->link_cross_node, sizeof *a->link_cross_node * R) == 0 &&
           memcmp(a->ring_bandwidth, b->ring_bandwidth, sizeof *a->ring_bandwidth * R) == 0 &&
           memcmp(a->ring_latency, b->ring_latency, sizeof *a->ring_latency * R) == 0;
}

brg_status brg__plan_placement_device_order(const brg__model *m, int ranks, int replicas, brg__plan_placement *out) {
    BRG__CHECK(brg__plan_placement_alloc(out, ranks, replicas));
    for (int i = 0; i < ranks * replicas; i++) out->devices[i] = i;
    snprintf(out->label, sizeof out->label, "device order (stage-major, replicas innermost)");
    brg_status s = describe(m, out, m->devices <= BRG__EXACT_PLACEMENT_DEVICES, NULL);
    if (s != BRG_OK) brg__plan_placement_free(out);
    return s;
}

/* ---- the list ------------------------------------------------------------------------------------ */

typedef struct placement_list {
    brg__plan_placement *items;
    int count, capacity;
    int *buckets; /* open addressing on hash: index + 1, 0 empty */
    int bucket_count;
} placement_list;

static int list_find(const placement_list *l, const brg__plan_placement *p) {
    if (!l->bucket_count) return -1;
    size_t mask = (size_t)l->bucket_count - 1;
    for (size_t i = (size_t)p->hash & mask;; i = (i + 1) & mask) {
        int v = l->buckets[i];
        if (!v) return -1;
        if (brg__plan_placement_equivalent(&l->items[v - 1], p)) return v - 1;
    }
}

static brg_status list_rehash(placement_list *l, int buckets) {
    int *grown = brg__calloc((size_t)buckets, sizeof *grown);
    if (!grown) return BRG_ERR_OUT_OF_MEMORY;
    free(l->buckets);
    l->buckets = grown;
    l->bucket_count = buckets;
    size_t mask = (size_t)buckets - 1;
    for (int k = 0; k < l->count; k++) {
        size_t i = (size_t)l->items[k].hash & mask;
        while (l->buckets[i]) i = (i + 1) & mask;
        l->buckets[i] = k + 1;
    }
    return BRG_OK;
}

/* Adds a copy of p unless an equivalent one is there. */
static brg_status list_add(placement_list *l, const brg__plan_placement *p) {
    if (list_find(l, p) >= 0) return BRG_OK;
    if (l->count == l->capacity) {
        int capacity = l->capacity ? 2 * l->capacity : 8;
        brg__plan_placement *grown = brg__realloc(l->items, sizeof *grown * (size_t)capacity);
        if (!grown) return BRG_ERR_OUT_OF_MEMORY;
        l->items = grown;
        l->capacity = capacity;
    }
    if (2 * (l->count + 1) > l->bucket_count) BRG__CHECK(list_rehash(l, l->bucket_count ? 2 * l->bucket_count : 16));
    brg__plan_placement *copy = &l->items[l->count];
    BRG__CHECK(brg__plan_placement_alloc(copy, p->ranks, p->replicas));
    size_t R = (size_t)p->ranks;
    memcpy(copy->devices, p->devices, sizeof *p->devices * R * (size_t)p->replicas);
    memcpy(copy->rank_classes, p->rank_classes, sizeof *p->rank_classes * R);
    memcpy(copy->rank_usable, p->rank_usable, sizeof *p->rank_usable * R);
    memcpy(copy->rank_capacity, p->rank_capacity, sizeof *p->rank_capacity * R);
    memcpy(copy->link_bandwidth, p->link_bandwidth, sizeof *p->link_bandwidth * R);
    memcpy(copy->link_latency, p->link_latency, sizeof *p->link_latency * R);
    memcpy(copy->link_kind, p->link_kind, sizeof *p->link_kind * R);
    memcpy(copy->link_cross_node, p->link_cross_node, sizeof *p->link_cross_node * R);
    memcpy(copy->ring_bandwidth, p->ring_bandwidth, sizeof *p->ring_bandwidth * R);
    memcpy(copy->ring_latency, p->ring_latency, sizeof *p->ring_latency * R);
    memcpy(copy->ring_kind, p->ring_kind, sizeof *p->ring_kind * R);
    copy->hash = p->hash;
    snprintf(copy->label, sizeof copy->label, "%s", p->label);
    l->count++;
    size_t mask = (size_t)l->bucket_count - 1;
    size_t i = (size_t)copy->hash & mask;
    while (l->buckets[i]) i = (i + 1) & mask;
    l->buckets[i] = l->count;
    return BRG_OK;
}

static void list_free(placement_list *l) {
    for (int k = 0; k < l->count; k++) brg__plan_placement_free(&l->items[k]);
    free(l->items);
    free(l->buckets);
}

/* Every assignment of the devices (Heap's algorithm), replicas in canonical order. */
static brg_status enumerate_all(const brg__model *m, brg__plan_placement *work, placement_list *l) {
    int n = m->devices, R = work->ranks, D = work->replicas;
    int perm[BRG__EXACT_PLACEMENT_DEVICES], c[BRG__EXACT_PLACEMENT_DEVICES] = {0};
    ring_memo *memo = brg__calloc(1, sizeof *memo);
    if (!memo) return BRG_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < n; i++) perm[i] = i;
    brg_status s = BRG_OK;
    int i = 0;
    for (int first = 1; s == BRG_OK;) {
        if (!first) {
            while (i < n && c[i] >= i) c[i++] = 0;
            if (i == n) break;
            int j = i % 2 == 0 ? 0 : c[i];
            int tmp = perm[j];
            perm[j] = perm[i];
            perm[i] = tmp;
            c[i]++;
            i = 0;
        }
        first = 0;
        /* Replicas are interchangeable: keep the order whose rank-0 devices ascend. */
        int canonical = 1;
        for (int r = 1; r < D && canonical; r++) canonical = perm[r] > perm[r - 1];
        if (!canonical) continue;
        memcpy(work->devices, perm, sizeof(int) * (size_t)(R * D));
        snprintf(work->label, sizeof work->label, "enumerated");
        s = describe(m, work, 1, memo);
        if (s == BRG_OK) s = list_add(l, work);
    }
    free(memo);
    return s;
}

/* The devices of node `node` in an order whose consecutive pairs are joined by the fastest links (the
 * widest path, by subset dynamic programming on up to 12 devices; device order otherwise). */
static void node_chain(const brg__model *m, int first, int count, int *order) {
    for (int i = 0; i < count; i++) order[i] = first + i;
    if (count < 3 || count > 12) return;
    double bw[12][12];
    for (int i = 0; i < count; i++)
        for (int j = 0; j < count; j++) {
            brg_link l;
            if (i != j) pair_link(m, first + i, first + j, &l);
            bw[i][j] = i == j ? 0 : l.bandwidth;
        }
    size_t states = (size_t)1 << count;
    double *best = brg__malloc(sizeof(double) * states * (size_t)count);
    int *from = brg__malloc(sizeof(int) * states * (size_t)count);
    if (!best || !from) {
        free(best);
        free(from);
        return;
    }
    /* Maximize the bottleneck, then the sum, of a path from device 0 of the node. */
    for (size_t k = 0; k < states * (size_t)count; k++) best[k] = -1.0;
    best[1 * (size_t)count] = 1e30;
    double *sum = brg__calloc(states * (size_t)count, sizeof *sum);
    if (!sum) {
        free(best);
        free(from);
        return;
    }
    for (size_t mask = 1; mask < states; mask += 2)
        for (int last = 0; last < count; last++) {
            size_t at = mask * (size_t)count + (size_t)last;
            if (best[at] < 0) continue;
            for (int next = 1; next < count; next++) {
                if (mask & ((size_t)1 << next)) continue;
                double w = fmin(best[at], bw[last][next]), t = sum[at] + bw[last][next];
                size_t to = (mask | ((size_t)1 << next)) * (size_t)count + (size_t)next;
                if (w > best[to] || (w == best[to] && t > sum[to])) {
                    best[to] = w;
                    sum[to] = t;
                    from[to] = last;
                }
            }
        }
    int last = -1;
    size_t full = states - 1;
    for (int k = 1; k < count; k++) {
        size_t at = full * (size_t)count + (size_t)k;
        if (best[at] < 0) continue;
        if (last < 0 || best[at] > best[full * (size_t)count + (size_t)last] ||
            (best[at] == best[full * (size_t)count + (size_t)last] && sum[at] > sum[full * (size_t)count + (size_t)last]))
            last = k;
    }
    if (last >= 0) {
        size_t mask = full;
        for (int pos = count - 1; pos >= 0; pos--) {
            order[pos] = first + last;
            if (pos == 0) break;
            int prev = from[mask * (size_t)count + (size_t)last];
            mask &= ~((size_t)1 << last);
            last = prev;
        }
    }
    free(best);
    free(from);
    free(sum);
}

/* Tilings over nodes of equal size G: `a` stages x `c` replicas per node (a * c = G). */
static brg_status enumerate_tiles(const brg__model *m, brg__plan_placement *work, placement_list *l) {
    int R = work->ranks, D = work->replicas, nodes = m->nodes;
    int G = m->devices / nodes;
    for (int n = 0; n < nodes; n++)
        if (m->node_groups[n] != G || m->node_first[n] != n * G) return BRG_OK; /* uneven nodes: device orders only */
    int *chain = brg__malloc(sizeof(int) * (size_t)m->devices);
    if (!chain) return BRG_ERR_OUT_OF_MEMORY;
    for (int n = 0; n < nodes; n++) node_chain(m, n * G, G, chain + n * G);
    brg_status s = BRG_OK;
    for (int a = 1; a <= G && s == BRG_OK; a++) {
        if (G % a || R % a || D % (G / a)) continue;
        int c = G / a, stage_groups = R / a;
        for (int local_order = 0; local_order < 2 && s == BRG_OK; local_order++)
            for (int replica_major = 0; replica_major < 2 && s == BRG_OK; replica_major++) {
                for (int k = 0; k < R; k++)
                    for (int r = 0; r < D; r++) {
                        int node = (r / c) * stage_groups + k / a;
                        int slot = replica_major ? (r % c) * a + (k % a) : (k % a) * c + (r % c);
                        work->devices[k * D + r] = local_order ? chain[node * G + slot] : node * G + slot;
                    }
                snprintf(work->label, sizeof work->label, "%d stage%s x %d replica%s per node%s%s", a, a > 1 ? "s" : "",
                         c, c > 1 ? "s" : "", replica_major ? ", each replica's stages side by side" : "",
                         local_order ? ", along the fastest links" : "");
                s = describe(m, work, 0, NULL);
                if (s == BRG_OK) s = list_add(l, work);
            }
    }
    free(chain);
    return s;
}

brg_status brg__plan_placements_enumerate(const brg__model *m, int ranks, int replicas, brg__plan_placement **out, int *count,
                                     int *exhaustive, brg_error *err) {
    placement_list l = {0};
    brg__plan_placement work;
    *out = NULL;
    *count = 0;
    *exhaustive = 0;
    if (brg__plan_placement_alloc(&work, ranks, replicas) != BRG_OK)
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    brg_status s = BRG_OK;
    unsigned flags = m->options.flags;
    int small = m->devices <= BRG__EXACT_PLACEMENT_DEVICES;
    /* Device order first: the baseline every other placement must beat. */
    for (int i = 0; i < ranks * replicas; i++) work.devices[i] = i;
    snprintf(work.label, sizeof work.label, "device order (stage-major, replicas innermost)");
    s = describe(m, &work, small, NULL);
    if (s == BRG_OK) s = list_add(&l, &work);
    if (s == BRG_OK && !(flags & BRG_PLAN_TOPOLOGY_BLIND)) {
        if (small && !(flags & BRG_PLAN_HEURISTIC)) {
            s = enumerate_all(m, &work, &l);
            *exhaustive = s == BRG_OK;
        } else {
            /* Replica-major device order: each replica's pipeline on consecutive devices. */
            for (int k = 0; k < ranks; k++)
                for (int r = 0; r < replicas; r++) work.devices[k * replicas + r] = r * ranks + k;
            snprintf(work.label, sizeof work.label, "replica-major (each pipeline on consecutive devices)");
            s = describe(m, &work, small, NULL);
            if (s == BRG_OK) s = list_add(&l, &work);
            if (s == BRG_OK) s = enumerate_tiles(m, &work, &l);
        }
    } else if (s == BRG_OK) {
        *exhaustive = 0;
    }
    brg__plan_placement_free(&work);
    if (s != BRG_OK) {
        list_free(&l);
        return brg__error_set(err, s, "out of memory enumerating placements");
    }
    free(l.buckets);
    *out = l.items;
    *count = l.count;
    return BRG_OK;
}
