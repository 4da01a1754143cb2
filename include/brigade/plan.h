/* brigade: the partition planner.
 *
 * Given a finalized layer graph, a topology (the devices and the links between them) and a global batch,
 * the planner searches how to train: tensor-parallel width t (with or without sequence parallelism),
 * pipeline depth p, data-parallel width d (t * p * d = the topology's devices), micro-batch size b and
 * count m (d * b * m = the global batch), schedule and virtual chunks, the recomputation policy of every
 * stage, the cut points between stages, and which devices hold which (stage, replica): a tensor-parallel
 * group of t consecutive devices of one node for each. It returns a plan, which is
 *   - a versioned JSON file (brg_plan_save / brg_plan_load; schema in docs/plan.md) that
 *     `brigade train --plan` executes (brg_plan_train_options), fingerprinted against the model and the
 *     topology it was made for (brg_plan_check);
 *   - a review report (brg_plan_report_text for a terminal, brg_plan_write_report for Markdown with SVG
 *     pictures) that says what goes where, what it costs, what binds, and how it compares with the
 *     splits users would otherwise pick;
 *   - a predicted timeline (brg_plan_write_trace), in the Chrome trace format `brigade train --trace`
 *     writes.
 *
 * The model behind the plan:
 *   - time of an op pass on a device: the roofline max(FLOPs / (peak * compute_efficiency), bytes /
 *     (memory bandwidth * memory_efficiency)) plus a fixed per-pass overhead; or the layer times a
 *     profile measured (brg_profile, `brigade profile`), fitted as a + c * micro_batch; with t > 1 the
 *     figures of one rank's share of each op (the graph a rank of the group runs), plus the group's
 *     collectives on the group's slowest link: ring all-reduce 2 (t - 1) / t * bytes / bandwidth +
 *     2 (t - 1) * latency, all-gather and reduce-scatter half that, none of it overlapped;
 *   - a transfer between stages: per tensor the link's latency, plus bytes / bandwidth;
 *   - the data-parallel gradient all-reduce: a ring, 2 (d - 1) / d * bytes / bandwidth + 2 (d - 1) *
 *     latency, over the slowest link of the best ring through the replicas' devices;
 *   - memory per rank: parameters, gradients (one buffer per consuming op, plus one for the sum where a
 *     parameter has several), AdamW's two moments, all in fp32; activations as the runtime keeps them,
 *     walked instruction by instruction through the rank's stream under each stage's recompute policy;
 *     workspace; each allocation rounded as the backend's allocator rounds it;
 *   - iteration time: a discrete-event simulation of the very instruction streams the runtime executes
 *     (brg_schedule_simulate), transfers and all-reduce included.
 *
 * The search: every (t, sequence parallelism, p, d, b, m, schedule, chunks) allowed by the options, each
 * bounded below analytically (t by the graph one rank of its group runs, localized once per t); for each,
 * placements of the tensor-parallel groups (a group: t consecutive devices of one node; all of them, up to
 * symmetry, on 8 groups or fewer; otherwise tilings of stages and replicas over the nodes that keep
 * neighbours on fast links),
 * and cut points by dynamic programming over layers minimizing the bottleneck (stage compute or link
 * transfer, per micro-batch), with each stage's recomputation the cheapest that fits its memory. Where
 * the cut points are few enough (exhaustive mode) every cut is bounded and the ones that could win are
 * simulated, so the best plan is the best under the model; otherwise the DP's cuts are simulated in
 * order of their lower bounds until the bounds exceed the best score or a budget is spent, and the
 * summary reports the remaining gap to the lower bound.
 *
 * This example is compiled and run by the test suite:
 *
 *     brg_model_config cfg;
 *     brg_graph *g = NULL;
 *     brg_topology *t = NULL;
 *     brg_plan *plan = NULL;
 *     brg_error err = {0};
 *     int rc = 1;
 *     const char *cluster = "{\"version\": 1, \"node_groups\": [{\"preset\": \"dgx-h100\", \"count\": 1}]}";
 *     if (brg_model_parse("gpt2-small", &cfg, &err) != BRG_OK || brg_model_build(&cfg, &g, &err) != BRG_OK ||
 *         brg_topology_load_cluster_string(&t, cluster, NULL, NULL, &err) != BRG_OK)
 *         goto done;
 *     brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
 *     o.global_batch = 64;
 *     if (brg_plan_search(g, t, &o, &plan, &err) != BRG_OK) goto done;
 *     brg_plan_summary s;
 *     brg_plan_get_summary(plan, &s);
 *     rc = s.pipeline_stages * s.data_parallel == 8 && s.iteration_seconds > 0 ? 0 : 1;
 *     done:
 *     if (rc) fprintf(stderr, "%s\n", err.message);
 *     brg_plan_destroy(plan);
 *     brg_topology_destroy(t);
 *     brg_graph_destroy(g);
 *     return rc;
 *
 * Ownership: brg_plan_search and brg_plan_load give the caller a plan to free with brg_plan_destroy.
 * Strings and arrays in the info structs point into the plan and live until it is destroyed. A plan
 * keeps no pointer to the graph, topology, options or profile it was made from. */
#ifndef BRIGADE_PLAN_H
#define BRIGADE_PLAN_H

#include <stdint.h>

#include "brigade/graph.h"
#include "brigade/schedule.h"
#include "brigade/status.h"
#include "brigade/topology.h"
#include "brigade/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brg_plan brg_plan;
typedef struct brg_profile brg_profile;

/* The plan file's schema version (the "version" member). */
#define BRG_PLAN_FORMAT_VERSION 1
/* The profile file's schema version. */
#define BRG_PROFILE_FORMAT_VERSION 1

/* "Search it" for the int fields of brg_plan_options below. */
#define BRG_PLAN_AUTO 0
#define BRG_PLAN_SCHEDULE_AUTO (-1)
#define BRG_PLAN_RECOMPUTE_AUTO (-1)
#define BRG_PLAN_PRECISION_AUTO (-1)
#define BRG_PLAN_ZERO_AUTO (-1)
#define BRG_PLAN_SEQUENCE_PARALLEL_AUTO (-1)

typedef enum brg_plan_flags {
    BRG_PLAN_DEFAULT = 0,
    /* Place ranks in device order, replicas innermost (device = stage * d + replica, DeepSpeed's default
     * rank order) instead of searching placements: what a topology-blind planner does. */
    BRG_PLAN_TOPOLOGY_BLIND = 1,
    /* Never enumerate every cut point or placement, even where they are few: the heuristic path that
     * large searches take (for tests and benchmarks). */
    BRG_PLAN_HEURISTIC = 2,
} brg_plan_flags;

/* Limits on what plans and plan files hold (docs/plan.md): every product of these stays far inside int64.
 * A global batch past BRG_PLAN_MAX_GLOBAL_BATCH samples, or a sample past BRG_PLAN_MAX_TOKENS_PER_SAMPLE
 * tokens, is refused with BRG_ERR_INVALID_ARGUMENT (options) or BRG_ERR_PARSE (files). */
#define BRG_PLAN_MAX_GLOBAL_BATCH (INT64_C(1) << 30)
#define BRG_PLAN_MAX_TOKENS_PER_SAMPLE (INT64_C(1) << 24)

typedef struct brg_plan_options {
    int64_t global_batch;   /* samples per optimizer step, >= 1; required */
    int pipeline_stages;    /* p; BRG_PLAN_AUTO: search the divisors of the device count */
    int data_parallel;      /* d; BRG_PLAN_AUTO: devices / p */
    int64_t micro_batch;    /* b; BRG_PLAN_AUTO: search the divisors of the per-replica batch */
    int schedule;           /* a brg_schedule_kind, or BRG_PLAN_SCHEDULE_AUTO: all four */
    int chunks;             /* v, virtual stages per rank (interleaved 1F1B only); BRG_PLAN_AUTO: 2..4 */
    int recompute;          /* a brg_recompute for every stage, or BRG_PLAN_RECOMPUTE_AUTO: per stage, the
                               cheapest policy that fits its memory */
    int precision;          /* a brg_precision, or BRG_PLAN_PRECISION_AUTO: the fastest 16-bit tensor
                               precision the GPUs have (bf16, else fp16), fp32 on CPU devices */
    double compute_efficiency; /* share of peak FLOP/s that GEMMs and attention reach, in (0, 1] */
    double memory_efficiency;  /* share of memory bandwidth that memory-bound ops reach, in (0, 1] */
    double memory_headroom;    /* share of each device's memory kept free (fragmentation), in [0, 1) */
    int64_t memory_reserve_bytes; /* per device, for the runtime's context, libraries and NCCL buffers;
                                     -1: 1 GiB on GPUs, 0 on CPU devices */
    double pass_overhead_seconds; /* fixed cost of every op pass (kernel launches); -1: 4e-6 on GPUs,
                                     0 on CPU devices */
    double model_flops_per_sample; /* model FLOPs of one sample (forward and backward), the numerator of
                                      MFU; 0: 6 N T plus 6 C T^2 per attention op, N parameters, T the
                                      tokens of a sample (brg_model_flops_per_token's count) */
    const char *model_name;     /* for the plan file and the report (e.g. the model specification); NULL:
                                   "model"; copied */
    const char *topology_name;  /* for the report and the plan file ("dgx-h100 x 128"); NULL:
                                   brg_topology_source(t); copied */
    const brg_profile *profile; /* measured layer times for the devices it was measured on, or NULL;
                                   borrowed during brg_plan_search */
    int alternatives;           /* next-best plans (other p, d, b, m, schedule or chunks) to keep, 0..16 */
    int64_t max_simulated_instructions; /* search budget: instructions simulated in all, >= 1 */
    unsigned flags;             /* brg_plan_flags, or-ed */
    int zero;                   /* ZeRO-1 (AdamW moments split across the replicas of each stage): 0 off, 1 on
                                   wherever d > 1, or BRG_PLAN_ZERO_AUTO: weighed by the search (its memory
                                   against its all-gather) */
    int tensor_parallel;        /* t, the devices of one tensor-parallel group: each stage of each replica split
                                   over t devices of one node as the model's brg_tensor_parallel marks say
                                   (Megatron-LM), t x p x d = the devices; BRG_PLAN_AUTO: search the divisors of
                                   the devices per node (t = 1 alone for a model without marks); a fixed t must
                                   divide every node's device count, and the model's heads and features */
    int sequence_parallel;      /* with t > 1, also split the positions between the split ops (layernorms,
                                   residual adds): 0 off, 1 on wherever t > 1, or BRG_PLAN_SEQUENCE_PARALLEL_AUTO:
                                   weighed by the search (its memory against its extra collectives' latency) */
} brg_plan_options;

#define BRG_PLAN_OPTIONS_INIT                                                                               \
    {0, BRG_PLAN_AUTO, BRG_PLAN_AUTO, BRG_PLAN_AUTO, BRG_PLAN_SCHEDULE_AUTO, BRG_PLAN_AUTO,                \
     BRG_PLAN_RECOMPUTE_AUTO, BRG_PLAN_PRECISION_AUTO, 0.7, 0.8, 0.05, -1, -1.0, 0.0, NULL, NULL, NULL, 3, \
     8000000, BRG_PLAN_DEFAULT, BRG_PLAN_ZERO_AUTO, BRG_PLAN_AUTO, BRG_PLAN_SEQUENCE_PARALLEL_AUTO}

/* ---- searching ---------------------------------------------------------------------------------- */

/* Searches the best plan for training g on every device of t. Returns:
 *   BRG_OK, *out the plan (with its alternatives and baselines, see brg_plan_comparison);
 *   BRG_ERR_INVALID_ARGUMENT: NULL g, t, options or out; an option out of range (err names it);
 *   BRG_ERR_INVALID_USAGE: g not finalized or in error; t not final;
 *   BRG_ERR_INFEASIBLE: no plan satisfies the options: p not dividing the devices, a global batch not
 *     divisible by d (or by d * b), more stages than layers, interleaving with m not a multiple of p,
 *     no device with figures for the precision, a tensor-parallel t not dividing the devices of every
 *     node (or larger than a node), or one the model cannot be split into (t not dividing its heads or
 *     features: err says which op); or nothing fits in memory, in which case err names the
 *     stage that comes closest, the bytes it needs and the bytes a device offers, and the smallest
 *     change that would fit (recomputation, a smaller micro-batch, more stages), if any;
 *   BRG_ERR_MISMATCH: the profile was measured on another model;
 *   BRG_ERR_OUT_OF_MEMORY.
 * On failure *out is NULL (when out is not). */
brg_status brg_plan_search(const brg_graph *g, const brg_topology *t, const brg_plan_options *options,
                           brg_plan **out, brg_error *err);

/* Frees the plan. NULL is allowed. */
void brg_plan_destroy(brg_plan *plan);

/* ---- what a plan says ---------------------------------------------------------------------------- */

typedef struct brg_plan_summary {
    const char *model_name;     /* options.model_name of the search ("model" when none) */
    uint64_t model_fingerprint; /* brg_plan_model_fingerprint of the graph */
    uint64_t topology_fingerprint; /* brg_topology_fingerprint */
    const char *topology_source; /* options.topology_name, or brg_topology_source */
    int devices, nodes, layers;
    int64_t parameters;
    int64_t tokens_per_sample;
    int pipeline_stages, data_parallel, chunks;
    int64_t global_batch, micro_batch, micro_batches; /* micro-batches per replica per step */
    brg_schedule_kind schedule;
    brg_precision precision;
    /* Predictions (0 for a loaded plan whose file has none). */
    int predicted;               /* 1 when the figures below come from the model */
    double iteration_seconds;    /* simulated makespan of one step */
    double tokens_per_second;    /* global batch * tokens per sample / iteration */
    double mfu;                  /* model FLOPs / (iteration * sum of the devices' peaks at the precision) */
    double tflops_per_device;    /* model FLOP/s per device, in units of 1e12 */
    double bubble;               /* idle share of the ranks over the iteration (all-reduce counts as busy) */
    double allreduce_seconds;    /* the slowest rank's data-parallel all-reduce */
    int64_t peak_memory_bytes;   /* the fullest rank's peak */
    double lower_bound_seconds;  /* a proven lower bound on any plan's iteration time under the model */
    int exhaustive;              /* 1: every cut point and placement was bounded (the best is optimal) */
    int64_t configurations;      /* (p, d, b, m, schedule, chunks) combinations considered */
    int64_t placements;          /* distinct placements scored */
    int64_t simulations;         /* candidates simulated */
    double search_seconds;       /* wall time of the search */
    int zero;                    /* 1: ZeRO-1, the AdamW moments split across the replicas */
    int tensor_parallel;         /* t: devices per tensor-parallel group (1: none); ranks = t * p * d */
    int sequence_parallel;       /* 1: positions split between the split ops too */
    int64_t vocabulary_padding;  /* rows added to the vocabulary so that t divides it (Megatron-LM pads so),
                                    0 when none; known for plans from brg_plan_search */
} brg_plan_summary;

/* One virtual stage (S = p * v of them; v = 1 except for interleaved 1F1B). */
typedef struct brg_plan_stage {
    int index;                 /* virtual stage s */
    int rank;                  /* s % p: the pipeline rank holding it */
    int chunk;                 /* s / p */
    int first_layer, end_layer; /* layers [first_layer, end_layer) */
    const char *first_layer_name, *last_layer_name;
    brg_recompute recompute;
    int64_t parameters;        /* elements its ops read (a tied parameter counts in each stage it is in) */
    /* Per micro-batch on the rank's device (0 in a loaded plan without predictions): */
    double forward_seconds;
    double backward_seconds;   /* backward-input + backward-weight, recomputation included */
    double recompute_seconds;  /* the part of backward_seconds that redoes forward work */
    int64_t boundary_bytes;    /* activations sent to stage s + 1 per micro-batch (0 for the last) */
    brg_link_kind boundary_link; /* the slowest link they cross among the replicas */
    int boundary_crosses_nodes;
    double transfer_seconds;   /* per micro-batch over that link */
    /* With t > 1: what the tensor-parallel group's collectives carry per micro-batch, forward and backward
     * (the buffers all-reduced, gathered or scattered, at the plan's precision), and their time, part of
     * forward_seconds and backward_seconds (recomputation's collectives included). */
    int64_t tensor_parallel_bytes;
    double tensor_parallel_seconds;
} brg_plan_stage;

/* One pipeline rank and its d * t devices (a tensor-parallel group of t per data-parallel replica). */
typedef struct brg_plan_rank {
    int rank;
    int device_count;          /* d * t */
    const int *devices;        /* [d * t]: devices[r * t + i] is the device of replica r's tensor-parallel rank i */
    int64_t capacity_bytes;    /* the smallest device memory among them */
    int64_t usable_bytes;      /* capacity less headroom and reserve */
    /* Memory of one replica's device at its peak (0 in a loaded plan without predictions). */
    int64_t parameter_bytes, gradient_bytes, optimizer_bytes, activation_bytes, workspace_bytes;
    int64_t total_bytes;
    int peak_in_flight;        /* micro-batches (or chunk micro-batches) whose activations it holds at once */
    double busy_seconds;       /* compute of the rank in one step */
    double allreduce_seconds;  /* the part of the sums across replicas that backward does not hide */
    double optimizer_seconds;
    brg_link_kind allreduce_link;
    double allreduce_total_seconds; /* the sums across replicas in all (0 in a loaded plan) */
    int64_t allreduce_bytes;   /* gradient bytes summed across replicas per step */
    int64_t moment_bytes;      /* AdamW moments held by one replica's device */
    int tensor_parallel;       /* t */
    brg_link_kind tensor_parallel_link; /* the slowest link inside its tensor-parallel groups */
    double tensor_parallel_bandwidth;   /* bytes/s of that link (0 in a loaded plan) */
} brg_plan_rank;

/* Each returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL) or BRG_ERR_NOT_FOUND (index out of range). */
brg_status brg_plan_get_summary(const brg_plan *plan, brg_plan_summary *out);
brg_status brg_plan_get_stage(const brg_plan *plan, int stage, brg_plan_stage *out);
brg_status brg_plan_get_rank(const brg_plan *plan, int rank, brg_plan_rank *out);

/* The plan beside the ones users would otherwise pick, all scored by the same model. Index 0 is the plan
 * itself; then the baselines ("topology-blind placement", "uniform by layers", "balanced by parameters":
 * the plan's t, p, d, b, m and schedule with those cuts, placed in device order), then the next-best plans
 * (another t, sequence parallelism, p, d, b, m, schedule or chunks).
 * Present only in plans from brg_plan_search. */
typedef struct brg_plan_comparison {
    const char *label;         /* "this plan", "uniform by layers", "next best #1", ... */
    const char *description;   /* "p 4 x d 2, 1F1B, b 4 x m 16, cuts 0 13 26 39" */
    int feasible;              /* 0: it does not fit in memory (see why) */
    const char *why;           /* for an infeasible one: the stage, the bytes needed and available */
    int pipeline_stages, data_parallel, chunks;
    int64_t micro_batch, micro_batches;
    brg_schedule_kind schedule;
    double iteration_seconds, tokens_per_second, mfu, bubble;
    int64_t peak_memory_bytes;
    int tensor_parallel, sequence_parallel;
} brg_plan_comparison;

/* How many comparisons the plan holds (0 for a loaded plan). */
int brg_plan_comparison_count(const brg_plan *plan);
/* BRG_OK, BRG_ERR_INVALID_ARGUMENT or BRG_ERR_NOT_FOUND. */
brg_status brg_plan_get_comparison(const brg_plan *plan, int index, brg_plan_comparison *out);

/* ---- the review report --------------------------------------------------------------------------- */

/* The terminal report in *out (malloc'd; the caller frees it with free()): the plan, the predicted
 * iteration, what binds, one line per stage, and the comparison. For a loaded plan, what the file
 * holds. Returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL) or BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_plan_report_text(const brg_plan *plan, char **out);

/* Writes the Markdown report to markdown_path and its pictures beside it, as SVG files named after it
 * ("report.md" -> "report-gantt.svg", "report-memory.svg", "report-placement.svg"), drawn by brigade.
 * Needs a plan from brg_plan_search. Returns BRG_OK; BRG_ERR_INVALID_ARGUMENT (NULL); BRG_ERR_INVALID_USAGE
 * (a loaded plan: it has no timeline); BRG_ERR_IO (err names the file); BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_plan_write_report(const brg_plan *plan, const char *markdown_path, brg_error *err);

/* Writes the predicted timeline of one step as Chrome trace JSON, the format of `brigade train --trace`
 * (brg_trace_write, process label "stage"). Returns what brg_plan_write_report does. */
brg_status brg_plan_write_trace(const brg_plan *plan, const char *path, brg_error *err);

/* ---- plan files ---------------------------------------------------------------------------------- */

/* The plan as JSON (schema version BRG_PLAN_FORMAT_VERSION, docs/plan.md) in *out (malloc'd; free()).
 * BRG_OK, BRG_ERR_INVALID_ARGUMENT or BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_plan_to_json(const brg_plan *plan, char **out);

/* Writes the JSON to path, atomically (a temporary file beside it, then renamed). BRG_OK,
 * BRG_ERR_INVALID_ARGUMENT, BRG_ERR_IO (err names the file and the reason), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_plan_save(const brg_plan *plan, const char *path, brg_error *err);

/* Reads a plan file. Messages are "file:line:column: field: what is wrong". Returns BRG_OK;
 * BRG_ERR_INVALID_ARGUMENT (NULL); BRG_ERR_IO (missing or unreadable file); BRG_ERR_PARSE (malformed
 * JSON, a missing, mistyped or unknown field, a value out of range, stages that do not tile the layers,
 * devices repeated or missing); BRG_ERR_MISMATCH (another format or version); BRG_ERR_OUT_OF_MEMORY.
 * On failure *out is NULL (when out is not). */
brg_status brg_plan_load(const char *path, brg_plan **out, brg_error *err);

/* The same from a string; messages name `origin` (NULL: "<string>"). */
brg_status brg_plan_load_string(const char *json, const char *origin, brg_plan **out, brg_error *err);

/* ---- using a plan -------------------------------------------------------------------------------- */

/* A 64-bit hash of what a plan depends on in a graph: every layer's name and op range, every op's kind,
 * name and input and output shapes, every parameter's name and shape. 0 for NULL. */
uint64_t brg_plan_model_fingerprint(const brg_graph *g);

/* Checks that the plan was made for g (fingerprint, layer count) and, when t is not NULL, for t
 * (fingerprint, device count). Returns BRG_OK; BRG_ERR_INVALID_ARGUMENT (NULL plan or g, a micro-batch
 * that would make one of g's tensors hold more than BRG_MAX_TENSOR_ELEMENTS elements, or a tensor-parallel
 * t the model cannot be split into: err names the op);
 * BRG_ERR_MISMATCH (err says which fingerprint differs and what the plan was made for). */
brg_status brg_plan_check(const brg_plan *plan, const brg_graph *g, const brg_topology *t, brg_error *err);

/* Fills the pipeline part of *opts from the plan, after brg_plan_check(plan, g, NULL): stages (p),
 * chunks, schedule, micro_batch, micro_batches, split (into split[0 .. p*v - 2], which must have room
 * for p * v - 1 entries: split_capacity), and stage_recompute (into stage_recompute[0 .. p*v - 1],
 * capacity stage_recompute_capacity), recompute (the policy of stage 0), backend (CUDA where the plan's
 * devices are GPUs, else CPU) and precision. The other fields are left as they are; split and
 * stage_recompute borrow the caller's arrays; data_parallel (d), zero (the plan's ZeRO-1), tensor_parallel
 * (t) and sequence_parallel too, with rank_layout NULL (brg_plan_rank_layout gives the plan's). Returns BRG_OK; BRG_ERR_INVALID_ARGUMENT (NULL,
 * capacities too small); BRG_ERR_MISMATCH (as brg_plan_check); BRG_ERR_UNSUPPORTED (a precision the
 * runtime does not train in). */
brg_status brg_plan_train_options(const brg_plan *plan, const brg_graph *g, brg_train_options *opts, int *split,
                                  int split_capacity, brg_recompute *stage_recompute, int stage_recompute_capacity,
                                  brg_error *err);

/* Which rank runs each (replica, stage, tensor-parallel index) of the plan: layout[(d * stages + r) * t + i]
 * = the rank of tensor-parallel rank i of stage r of replica d, rank k running on the topology's device k
 * (the order devices are listed in: node after node). *count receives t x stages x replicas, the devices
 * (t = 1: stages x replicas entries, layout[d * stages + r], as before tensor parallelism). For
 * brg_train_options.rank_layout. BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL, capacity too small). */
brg_status brg_plan_rank_layout(const brg_plan *plan, int *layout, int capacity, int *count);

/* "none", "full", "selective"; "unknown" outside the enum. */
const char *brg_recompute_name(brg_recompute policy);
/* BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL) or BRG_ERR_NAME. */
brg_status brg_recompute_from_name(const char *name, brg_recompute *out);

/* ---- profiles: measured layer times ---------------------------------------------------------------- */

/* A profile holds, for one model on one kind of device, the forward, backward-input and backward-weight
 * time of every layer at one or more micro-batch sizes. The planner fits each layer's times as
 * a + c * micro_batch (a line through the origin with one size) and uses them for the devices whose
 * model string equals the profile's device model; other devices keep the roofline.
 *
 * Creates an empty profile for g (its fingerprint and layer names are copied) measured on `device_model`
 * (a brg_device_info.model string). BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL), BRG_ERR_INVALID_USAGE (g not
 * finalized), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_profile_create(brg_profile **out, const brg_graph *g, const char *device_model, brg_error *err);
void brg_profile_destroy(brg_profile *p);

/* Records layer `layer`'s times (seconds, finite, >= 0) at micro-batch size micro_batch (>= 1); a second
 * record for the same (layer, micro_batch) replaces the first. BRG_OK, BRG_ERR_INVALID_ARGUMENT,
 * BRG_ERR_NOT_FOUND (layer out of range), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_profile_set(brg_profile *p, int layer, int64_t micro_batch, double forward_seconds,
                           double backward_input_seconds, double backward_weight_seconds);

/* The fitted times of `layer` at micro-batch b. BRG_OK, BRG_ERR_INVALID_ARGUMENT, BRG_ERR_NOT_FOUND (no
 * such layer, or nothing recorded for it). */
brg_status brg_profile_get(const brg_profile *p, int layer, int64_t micro_batch, double *forward_seconds,
                           double *backward_input_seconds, double *backward_weight_seconds);

/* The latency of handing a value from one stage to the next on these devices as the runtime measured it
 * (posting, waking the receiving stage, copying), in seconds; 0 when unknown. The planner uses it, where it is
 * the larger, as the latency of links between two devices the profile applies to. Set: BRG_OK or
 * BRG_ERR_INVALID_ARGUMENT (NULL, negative or not finite). */
brg_status brg_profile_set_transfer_latency(brg_profile *p, double seconds);
double brg_profile_transfer_latency(const brg_profile *p);

/* The device model it was measured on (owned by p), its model fingerprint and layer count. */
const char *brg_profile_device_model(const brg_profile *p);
uint64_t brg_profile_model_fingerprint(const brg_profile *p);
int brg_profile_layer_count(const brg_profile *p);

/* JSON files, schema version BRG_PROFILE_FORMAT_VERSION (docs/plan.md). Save: atomically; BRG_OK,
 * BRG_ERR_INVALID_ARGUMENT, BRG_ERR_INVALID_USAGE (a layer without any record), BRG_ERR_IO. Load:
 * "file:line:column: field: what" messages; BRG_OK, BRG_ERR_INVALID_ARGUMENT, BRG_ERR_IO, BRG_ERR_PARSE,
 * BRG_ERR_MISMATCH (format or version), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg_profile_save(const brg_profile *p, const char *path, brg_error *err);
brg_status brg_profile_load(const char *path, brg_profile **out, brg_error *err);

#ifdef __cplusplus
}
#endif
#endif
