/* Internal to partitioner/: the cost and memory models, placements, candidates and the plan handle.
 * Tests reach these to check the search against brute force and the memory model against the runtime. */
#ifndef BRIGADE_PARTITIONER_INTERNAL_H
#define BRIGADE_PARTITIONER_INTERNAL_H

#include <stdint.h>

#include "brigade/plan.h"
#include "graph/graph_internal.h"
#include "internal.h"
#include "json.h"

#define BRG__MAX_DEVICE_CLASSES 16
#define BRG__POLICY_COUNT 3
/* Most devices for which every placement is enumerated (n! assignments, deduplicated). */
#define BRG__EXACT_PLACEMENT_DEVICES 8
/* Most cut vectors per (configuration, placement) for which every cut is bounded. */
#define BRG__EXACT_CUT_VECTORS 20000

/* ---- allocation rounding ------------------------------------------------------------------------ */

/* Bytes an allocation of `bytes` really takes: jemalloc's size classes (64-byte aligned, four classes per
 * doubling) for CPU devices, as the CPU backend's arena allocates; 256-byte granules on GPUs. */
int64_t brg__alloc_round(brg_device_kind kind, int64_t bytes);

/* ---- the model of the graph on the topology ------------------------------------------------------ */

typedef struct brg__device_class {
    brg_device_kind kind;
    char model[BRG_MAX_NAME];
    double peak_flops;       /* at the plan's precision, FLOP/s */
    double memory_bandwidth; /* bytes/s */
    int profiled;            /* the profile's times apply */
} brg__device_class;

/* An op as the models see it (per sample figures). */
typedef struct brg__model_op {
    int layer;
    int is_loss;
    int cheap;           /* selective recomputation redoes it */
    int64_t out_numel;   /* per sample */
    int64_t aux_floats;  /* per sample (linear in the micro-batch for every op kind) */
    int64_t scratch_floats; /* at micro-batch 1; attention's does not grow with it */
    double flops[BRG_PASS_COUNT];
    double bytes[BRG_PASS_COUNT];
    /* A tensor-parallel rank's collective in each pass (brg__comm_kind) and its buffer, per sample, in bytes
     * at the plan's precision. */
    int comm_kind[BRG_PASS_COUNT];
    double comm_bytes[BRG_PASS_COUNT];
} brg__model_op;

/* An activation read by a later layer than its producer's: it crosses the cuts between. */
typedef struct brg__crossing {
    int producer_layer;
    int last_reader_layer;
    int64_t bytes_per_sample; /* at the plan's precision */
} brg__crossing;

/* A graph input and the layers reading it. */
typedef struct brg__model_input {
    int64_t bytes_per_sample;
    int *readers_prefix; /* [L + 1]: layers < l reading it */
} brg__model_input;

/* A parameter read by more than one op (tied, or read twice): its memory depends on the cut. */
typedef struct brg__shared_param {
    int64_t numel;
    int consumers;
    int *consumer_layer; /* [consumers], ascending */
} brg__shared_param;

/* The model of one tensor-parallel width t: the graph one rank of a group runs (brg__graph_localize; the
 * model's own graph when t = 1) on the topology's devices taken t at a time. Every "device" below is a
 * tensor-parallel group: group g holds the topology's devices g * t .. g * t + t - 1, consecutive on one
 * node (the nodes' device counts are multiples of t); its links to another group are the slowest of the t
 * pairs of rank i to rank i, which carry a stage boundary (and the data-parallel rings) in parallel. */
typedef struct brg__model {
    const brg_graph *graph;    /* what one rank runs: the localized graph when tp > 1 */
    const brg_graph *whole;    /* the model's graph: fingerprint, names, model FLOPs */
    brg_graph *local;          /* owned localization (graph), NULL when tp == 1 */
    int tp, sp;                /* tensor-parallel width, sequence parallelism */
    int all_devices;           /* the topology's devices: devices * tp */
    double tp_bandwidth, tp_latency; /* the slowest link inside any group (bytes/s, seconds) */
    brg_link_kind tp_link;
    int64_t vocab_padding;     /* vocabulary rows added so that tp divides it */
    int64_t model_parameters;  /* elements of the whole model, each once */
    int *node_first, *node_groups; /* [nodes] each node's first group and group count */
    double fastest_link;       /* the largest bandwidth between two groups, where devices <= 256; else 0 */
    const brg_topology *topology;
    brg_plan_options options;
    char model_name[BRG_MAX_NAME];
    char topology_name[256];
    const brg_profile *profile;
    int layers, devices, nodes;
    brg_device_kind kind;      /* of every device */
    brg_precision precision;
    int64_t activation_element; /* bytes of an F32 activation element at the precision (4 or 2) */
    double pass_overhead;
    int64_t reserve_bytes;
    double compute_efficiency, memory_efficiency, headroom;
    int64_t tokens_per_sample;
    double model_flops_per_sample;
    int64_t parameters;        /* elements one rank holds, each once */
    int64_t param_tensors;     /* parameter tensors */
    double peak_sum;           /* sum of the devices' peaks at the precision */
    /* devices */
    int class_count;
    brg__device_class classes[BRG__MAX_DEVICE_CLASSES];
    int *device_class;         /* [devices] (of a group: its slowest device's) */
    int64_t *device_capacity;  /* [devices] bytes (of a group: its smallest device's) */
    int64_t *device_usable;    /* [devices] capacity less headroom and reserve */
    int *device_node;          /* [devices] */
    /* graph */
    int64_t op_count;
    brg__model_op *ops;
    int64_t *layer_op_begin;   /* [layers + 1] */
    int64_t *layer_params;     /* [layers] elements its ops read (tied counted per layer) */
    int64_t *layer_partial;    /* [layers] elements of parameters whose gradients are partial over the group
                                  (sequence parallelism), summed over it before the optimizer */
    int64_t *simple_param_numel; /* [layers] sum of parameters read once in the whole graph */
    int shared_count;
    brg__shared_param *shared;
    int crossing_count;
    brg__crossing *crossings;
    int input_count;
    brg__model_input *inputs;
    int64_t loss_numel;        /* per sample */
} brg__model;

/* Builds the model at the tensor-parallel width o->tensor_parallel (BRG_PLAN_AUTO: 1) with o's sequence
 * parallelism (1: on); err says what is wrong (statuses of brg_plan_search). */
brg_status brg__model_create(brg__model **out, const brg_graph *g, const brg_topology *t, const brg_plan_options *o,
                             brg_error *err);
/* The same at width tp (>= 1) with sequence parallelism sp (0 or 1, ignored when tp == 1). BRG_ERR_INFEASIBLE
 * when tp does not divide every node's devices or the model cannot be split tp ways (err says why). */
brg_status brg__model_create_tp(brg__model **out, const brg_graph *g, const brg_topology *t, const brg_plan_options *o,
                                int tp, int sp, brg_error *err);
void brg__model_destroy(brg__model *m);

/* Whether g has any brg_tensor_parallel mark: without one, tensor parallelism only repeats the work. */
int brg__graph_has_tp_marks(const brg_graph *g);

/* The link between groups a and b, both directions (the smaller bandwidth, the larger latency): over the tp
 * pairs of rank i to rank i, the slowest. */
void brg__model_link(const brg__model *m, int a, int b, brg_link *out);

/* Seconds of one tensor-parallel collective of kind `kind` (brg__comm_kind) on `bytes` over the group's
 * slowest link: ring all-reduce 2 (t - 1) / t * bytes / bandwidth + 2 (t - 1) * latency; all-gather and
 * reduce-scatter (t - 1) / t * bytes / bandwidth + (t - 1) * latency; 0 when tp == 1. */
double brg__tp_collective_seconds(const brg__model *m, int kind, double bytes);

/* The devices of group g: its rank i is device g * tp + i. */
static inline int brg__group_device(const brg__model *m, int g, int i) { return g * m->tp + i; }

/* Figures of the model at one micro-batch size: prefix sums over layers. */
typedef struct brg__batch_table {
    int64_t micro_batch;
    /* per device class, [class][layers + 1], seconds per micro-batch */
    double *forward, *backward_input, *backward_weight, *recompute_full, *recompute_selective;
    double *memory_bound; /* the part of the three passes that memory traffic, not FLOPs, sets */
    /* the tensor-parallel collectives, [layers + 1] prefix sums per micro-batch (every class alike): their
     * seconds in forward and in backward, and the bytes of their buffers in both */
    double *tp_forward, *tp_backward;
    int64_t *tp_bytes;
    /* bytes, rounded per allocation, [layers + 1] prefix sums */
    int64_t *local_full;    /* outputs and saved internals of the layers' ops */
    int64_t *drop_full;     /* what full recomputation drops (all but the loss) */
    int64_t *drop_selective;
    int64_t *local_grads;   /* activation gradient buffers of the layers' op outputs */
    int64_t *static_simple; /* parameters read once: value, gradient, two moments */
    /* per cut point l (a stage starting at layer l), [layers + 1] */
    int64_t *receive_bytes;     /* rounded buffers of the activations it receives */
    int64_t *boundary_bytes;    /* the same, not rounded: what crosses the link */
    int *boundary_tensors;      /* how many tensors */
    int64_t *input_bytes;       /* [inputs] rounded */
    int64_t *layer_scratch;     /* [layers] rounded scratch of the largest op */
    int64_t dloss_bytes;
} brg__batch_table;

brg_status brg__batch_table_create(const brg__model *m, int64_t micro_batch, brg__batch_table **out);
void brg__batch_table_destroy(brg__batch_table *bt);

/* Times of layers [a, e) per micro-batch on device class c. */
typedef struct brg__stage_times {
    double forward, backward_input, backward_weight, recompute;
} brg__stage_times;
void brg__stage_times_get(const brg__batch_table *bt, const brg__model *m, int c, int a, int e,
                          brg_recompute policy, brg__stage_times *out);

/* Memory of the virtual stage of layers [a, e) (last: whether it holds the loss). */
typedef struct brg__stage_memory {
    int64_t receive;   /* R: received activations and loaded inputs of one micro-batch */
    int64_t full;      /* LF: the stage's outputs and internals of one micro-batch */
    int64_t kept;      /* LK: what stays after the recompute policy drops its share */
    int64_t grads;     /* G: activation gradients of one micro-batch */
    int64_t params, gradients, optimizer; /* static, per the runtime's buffers */
    int64_t workspace; /* scratch and the loss gradient */
} brg__stage_memory;
void brg__stage_memory_get(const brg__batch_table *bt, const brg__model *m, int a, int e, brg_recompute policy,
                           brg__stage_memory *out);

/* Bytes the optimizer phase allocates on a rank holding `held` (per shared parameter, how many of its
 * consumers the rank holds) in a pipeline of `ranks` ranks: received tied gradients and the norm buffer. */
int64_t brg__optimizer_transient(const brg__model *m, const int *held, int ranks);
/* Its two parts: the tied gradients received (the largest), and the norm buffer of `ranks` ranks. */
int64_t brg__optimizer_tied_bytes(const brg__model *m, const int *held);
int64_t brg__optimizer_norm_bytes(const brg__model *m, int ranks);

/* ---- schedules and their memory walks ------------------------------------------------------------ */

/* What one rank holds at an instant: per chunk c, entries [4 c .. 4 c + 3] count the (chunk, micro-batch)
 * pairs with received buffers (R), full local activations (LF), kept ones (LK) and gradient buffers (G). */
typedef struct brg__memory_walk {
    int chunks;
    int point_count;
    int *points; /* [point_count][4 chunks]: the instants that can be a peak (none dominated by another) */
    int *chunk_first;  /* [chunks + 1]: chunk c's own instants are chunk_points[chunk_first[c] .. chunk_first[c + 1]) */
    int *chunk_points; /* [4] each: one chunk's counts, the other chunks' left out, none dominated */
} brg__memory_walk;

typedef struct brg__schedule_entry {
    brg_schedule_kind kind;
    int stages, chunks, micro_batches, data_parallel;
    brg_schedule *schedule;
    brg_schedule_view view;
    int64_t instructions;
    brg__memory_walk *walks; /* [stages] */
    int *peak_in_flight;      /* [stages] */
} brg__schedule_entry;

/* Walks rank r's stream as the runtime allocates and frees (trainer.c, stage.c). */
brg_status brg__memory_walk_build(const brg_schedule *s, int rank, brg__memory_walk *out);
void brg__memory_walk_free(brg__memory_walk *w);
/* Peak activation bytes of the rank given each chunk's (R, LF, LK, G). */
int64_t brg__memory_walk_peak(const brg__memory_walk *w, const brg__stage_memory *chunks);
/* The same when only chunk `chunk` holds anything (its figures sm): what the cut search sizes. */
int64_t brg__memory_walk_peak_chunk(const brg__memory_walk *w, int chunk, const brg__stage_memory *sm);

typedef struct brg__schedule_cache brg__schedule_cache;
brg_status brg__schedule_cache_create(brg__schedule_cache **out);
void brg__schedule_cache_destroy(brg__schedule_cache *c);
/* The cached entry for these options (built on first use). */
brg_status brg__schedule_cache_get(brg__schedule_cache *c, const brg_schedule_options *o,
                                   const brg__schedule_entry **out, brg_error *err);

/* ---- placements ---------------------------------------------------------------------------------- */

/* Which device holds (rank k, replica r), and what the costs need from it. Links: k -> k + 1 for
 * k < p - 1, and p - 1 -> 0 (index p - 1) used between chunks when v > 1. */
typedef struct brg__plan_placement {
    int ranks, replicas;
    int *devices;            /* [ranks * replicas]: devices[k * replicas + r] */
    unsigned *rank_classes;  /* [ranks] bitmask of device classes */
    int64_t *rank_usable;    /* [ranks] smallest usable memory among its devices */
    int64_t *rank_capacity;  /* [ranks] */
    double *link_bandwidth, *link_latency; /* [ranks] slowest replica, both directions */
    brg_link_kind *link_kind;
    unsigned char *link_cross_node;
    double *ring_bandwidth, *ring_latency; /* [ranks] the all-reduce ring of its replicas */
    brg_link_kind *ring_kind;
    uint64_t hash;           /* of the cost-relevant fields */
    char label[160];
} brg__plan_placement;

/* Fills the cost-relevant fields of p from p->devices (ranks, replicas and devices set). exact_ring: find
 * the best ring by enumeration (small groups) rather than in node order. */
brg_status brg__plan_placement_describe(const brg__model *m, brg__plan_placement *p, int exact_ring);
brg_status brg__plan_placement_alloc(brg__plan_placement *p, int ranks, int replicas);
void brg__plan_placement_free(brg__plan_placement *p);
/* Whether two placements cost the same for every candidate (same rank figures and links). */
int brg__plan_placement_equivalent(const brg__plan_placement *a, const brg__plan_placement *b);

/* The placements worth scoring for (ranks, replicas): every distinct one on few devices, tilings
 * otherwise; only the device-order one with BRG_PLAN_TOPOLOGY_BLIND. *exhaustive says whether the list is
 * complete. The caller frees each and the array. */
brg_status brg__plan_placements_enumerate(const brg__model *m, int ranks, int replicas, brg__plan_placement **out, int *count,
                                     int *exhaustive, brg_error *err);
/* The device-order placement: device = k * replicas + r. */
brg_status brg__plan_placement_device_order(const brg__model *m, int ranks, int replicas, brg__plan_placement *out);

/* ---- candidates ---------------------------------------------------------------------------------- */

typedef struct brg__config {
    int ranks, replicas, chunks;
    int64_t micro_batch, micro_batches;
    brg_schedule_kind kind;
    int zero; /* ZeRO-1: AdamW moments split across the replicas of each stage */
    int tp;   /* tensor-parallel width (0 and 1: none); ranks and replicas count groups of tp devices */
    int sp;   /* sequence parallelism (with tp > 1) */
} brg__config;
/* The schedule options of configuration c: its kind, ranks as stages, chunks, micro-batches, replicas. */
brg_schedule_options brg__config_schedule_options(const brg__config *c);

/* The tensor-parallel width of a configuration (1 for 0). */
static inline int brg__config_tp(const brg__config *c) { return c->tp > 1 ? c->tp : 1; }

/* Everything the simulator and the report need for one (config, placement, cuts, policies). */
typedef struct brg__evaluation {
    int stages; /* S */
    double *forward, *backward, *backward_input, *backward_weight, *recompute; /* [S] */
    double *transfer;       /* [S - 1] */
    double memory_bound_share; /* of pass time, over the stages */
    int64_t *boundary_bytes; /* [S - 1] per micro-batch, not rounded */
    double *tp_seconds;      /* [S] the tensor-parallel collectives' part of forward + backward */
    int64_t *tp_bytes;       /* [S] their buffers' bytes per micro-batch */
    double *allreduce, *optimizer, *busy; /* [ranks]; allreduce: what backward does not hide */
    double *allreduce_total;  /* [ranks] the sums across replicas in all, hidden or not */
    int64_t *rank_dp_bytes;   /* [ranks] what data parallelism adds (buckets, scratch; ZeRO-1's change) */
    int64_t *rank_moment_bytes; /* [ranks] AdamW moments held */
    brg__stage_memory *memory;   /* [S] */
    int64_t *rank_static, *rank_activation, *rank_workspace, *rank_total; /* [ranks] */
    int *rank_in_flight;     /* [ranks] */
    int feasible;
    int worst_rank;          /* largest total / usable */
    double lower_bound;
} brg__evaluation;

brg_status brg__evaluation_alloc(brg__evaluation *e, int stages, int ranks);
void brg__evaluation_free(brg__evaluation *e);

/* Costs and memory of a candidate: first[S + 1] (first[S] = layers), policy[S]. */
brg_status brg__evaluate(const brg__model *m, const brg__batch_table *bt, const brg__schedule_entry *se,
                         const brg__config *c, const brg__plan_placement *p, const int *first, const brg_recompute *policy,
                         brg__evaluation *e);

/* The simulated iteration time of an evaluated candidate (timeline kept in *timeline when not NULL). */
brg_status brg__simulate(const brg__schedule_entry *se, const brg__evaluation *e, double *makespan,
                         brg_timeline **timeline, brg_error *err);

/* A proven lower bound on the simulated iteration time of every plan of configuration c (any cuts, placement
 * and recomputation); -1 when out of memory. */
double brg__config_lower_bound(const brg__model *m, const brg__config *c, const brg__batch_table *bt);

/* A proven lower bound on the simulated iteration time of an evaluated candidate; -1 when out of memory. */
double brg__lower_bound(const brg__config *c, const brg__evaluation *e);

/* The cheapest recompute policy for every stage (every rank's chunks jointly when v > 1) that fits memory,
 * or the fixed one; returns 1, 0 when none fits (policy then holds the best try), -1 when out of memory. */
int brg__choose_policies(const brg__model *m, const brg__batch_table *bt, const brg__schedule_entry *se,
                         const brg__config *c, const brg__plan_placement *p, const int *first, brg_recompute *policy);

/* ---- the plan handle ------------------------------------------------------------------------------- */

typedef struct brg__comparison {
    char label[48];
    char description[256];
    char why[256];
    int feasible;
    brg__config config;
    double iteration_seconds, tokens_per_second, mfu, bubble;
    int64_t peak_memory_bytes;
} brg__comparison;

struct brg_plan {
    char model_name[BRG_MAX_NAME];
    uint64_t model_fingerprint, topology_fingerprint;
    char topology_source[256];
    int devices_total, nodes, layers;
    int64_t parameters, tokens_per_sample;
    int64_t global_batch;
    double model_flops_per_sample, peak_sum;
    brg__config config;       /* tp, sp: 1 and 0 without tensor parallelism */
    brg_precision precision;
    brg_device_kind device_kind;
    int64_t vocab_padding;
    brg_link_kind tp_link;
    double tp_bandwidth;
    char device_model[BRG_MAX_NAME];
    char device_mix[512];     /* "32 x V100, 8 x L40S" where the devices differ; "" otherwise */
    char device_figures[16];  /* where the peaks come from (brg_figure_source_name) of the least sure device */
    double device_peak_flops; /* per device at the precision */
    char **layer_names;       /* [layers] */
    int *first;               /* [S + 1] */
    brg_recompute *policy;    /* [S] */
    int *devices;             /* [ranks * replicas * tp]: devices[(k * replicas + r) * tp + i] */
    int *device_node;         /* [devices] node of each device (0 for loaded plans) */
    int node_devices;         /* devices per node (for pictures) */
    /* predictions */
    int predicted;
    brg_plan_summary summary;
    brg_plan_stage *stages;   /* [S] */
    brg_plan_rank *ranks;     /* [ranks] */
    brg_timeline *timeline;   /* NULL for loaded plans */
    double *stage_bubble;     /* unused */
    int comparison_count;
    brg__comparison *comparisons;
    char search_note[512];    /* how the search went, for the report */
    char binds[4][256];       /* what binds, most important first */
    int bind_count;
};

brg_plan *brg__plan_new(int stages, int ranks, int replicas, int tp, int layers);
/* The layers' names from g (BRG_ERR_OUT_OF_MEMORY). */
brg_status brg__plan_fill_names(brg_plan *plan, const brg_graph *g);
/* Fills stages, ranks and summary fields that follow from the configuration, cuts and devices. */
void brg__plan_structure(brg_plan *plan);

/* Predictions of the plan from an evaluation and its simulation (owns timeline afterwards). */
void brg__plan_set_predictions(brg_plan *plan, const brg__model *m, const brg__evaluation *e, const brg__plan_placement *p,
                               brg_timeline *timeline, double makespan);

/* "0-3,8-11" or "0,64,...,960 (16)" */
void brg__format_devices(const int *devices, int count, char *buf, size_t size);
/* "1.23 GB", "456 MB" */
void brg__format_bytes(double bytes, char *buf, size_t size);
/* "1.23 s", "45.6 ms", "789 us" */
void brg__format_seconds(double seconds, char *buf, size_t size);
const char *brg__schedule_title(brg_schedule_kind kind);

#endif
