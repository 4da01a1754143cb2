/* Training through a pipeline: one worker thread per rank executes its instruction stream from the
 * schedule module (engine/schedule), over stages (engine/runtime/stage.c) on the CPU backend, with the
 * in-process transport between ranks. One stage on one rank is the single-device case: the same code
 * path, so a pipeline and a single device compute alike by construction.
 *
 * Bitwise equivalence with one stage rests on three rules: every stage runs its micro-batches in
 * increasing order (the schedules guarantee it); an activation gradient is summed in reverse op order
 * whatever the split (stage.c: zero_before); and each parameter's gradient is the sum of its consumers'
 * contributions in op order, assembled the same way on every rank that holds a copy (tied parameters),
 * with the global norm summed per parameter in parameter order. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "cpu/cpu.h"
#include "dp.h"
#include "brigade/train.h"
#include "hosting.h"
#include "stage.h"
#include "trainer_internal.h"
#include "transport/transport.h"

enum { TAG_ACTIVATION = 1, TAG_GRAD = 2, TAG_TIED = 3, TAG_NORM = 4, TAG_SUMMARY = 5, TAG_FINGERPRINT = 6, TAG_TRACE = 7,
       TAG_EVAL = 8 };

/* State of one (virtual stage, micro-batch) within a step. */
typedef struct mb_state {
    unsigned char forward_done, activations_sent, backward_input_done, backward_done, grads_sent, acquired;
    unsigned char stashed; /* counted in flight: from its forward until its memory is released */
    brg__request **act_reqs;  /* [n_recv] posted receives of the stage's inputs */
    brg__request **grad_reqs; /* [n_send] posted receives of its outputs' gradients */
} mb_state;

typedef struct vstage {
    int index; /* global virtual stage s */
    int rank;  /* its pipeline rank (the schedule's) */
    int copy, grank; /* its copy of the pipeline (trainer.copies), and the rank that runs it */
    int first_layer, end_layer; /* layers [first_layer, end_layer) */
    int64_t op_begin, op_end;   /* its ops */
    brg__stage *st;             /* NULL when its rank runs in another process */
    mb_state *mb; /* [micro_batches] */
    double *loss_sums; /* [micro_batches], last stage only */
} vstage;

typedef struct worker {
    struct brg_trainer *trainer;
    int rank;            /* among every rank of the job */
    int prank, copy;     /* its pipeline rank (stage of the schedule) and copy of the pipeline */
    int replica, tp_index; /* the copy's data-parallel replica and index in its tensor-parallel group */
    struct vstage *vs;   /* its copy's virtual stages */
    brg__dp *dp;         /* data parallelism: its group of replicas; NULL with one replica */
    brg__group *tp_group; /* tensor parallelism: its group (the copies of its replica); NULL with one rank */
    brg__backend *be;
    brg__transport *tp;
    pthread_t thread;
    brg_data *data;
    int32_t *host_tokens, *host_targets;
    brg_status status;
    char msg[BRG_ERROR_MESSAGE_MAX];
    /* figures of the step */
    double step_start;
    brg_rank_stats stats;
    int64_t held_at_start;
    int in_flight;
    brg_trace_event *events;
    int64_t n_events, cap_events;
} worker;

/* A parameter read by ops of several virtual stages (a tied embedding and output head). */
typedef struct tied_param {
    int64_t param;
    int n_consumers;
    int64_t *consumer_op;    /* op index, ascending */
    int *consumer_stage;     /* virtual stage of each consumer */
    int *consumer_input;     /* input slot of each consumer */
} tied_param;

/* Copies of the pipeline: every data-parallel replica's, and with tensor parallelism every rank of its
 * group: copy c is index c % tp of replica c / tp. Each copy has the schedule's ranks and virtual stages. */
struct brg_trainer {
    const brg_graph *graph; /* what the ranks run: the model's graph, or a tensor-parallel rank's share of it */
    const brg_graph *model; /* the model's graph as given (names and shapes of the whole parameters) */
    brg_graph *local;       /* owned: graph, when it is a share (tensor parallelism) */
    brg_train_options opts;
    int ranks, n_stages; /* ranks: every rank of the job, pp * dp * tp */
    int pp, dp, tp;      /* pipeline ranks, replicas, tensor-parallel group size */
    int copies;          /* dp * tp */
    int *layout;         /* [copies * pp]: rank of (copy c, pipeline rank p) at c * pp + p */
    unsigned char *tied_mask; /* [param] summed across pipeline stages */
    vstage *stages;      /* [copies][n_stages]: copy c's at c * n_stages */
    worker *workers;
    brg_schedule *schedule;
    brg__inproc_fabric *fabric; /* CPU ranks */
    brg__nccl_fabric *nccl;     /* CUDA ranks */
    const brg_tensor *tokens, *targets;
    int64_t seq;
    tied_param *tied;
    int n_tied;
    int *param_owner; /* [param] virtual stage of its first consumer */
    double *norm_partials; /* [ranks][params] */
    int64_t steps_done;
    int64_t next_sample;
    int inject_stage, inject_micro_batch;
    int inject_optimizer_rank; /* -1: none */
    int inject_replica;        /* -1: none */
    int inject_nan_stage, inject_nan_micro_batch; /* -1: none */
    int trace_ready;
    int threads_per_rank; /* CPU kernel threads of each rank */
    /* Hosting: this process runs ranks [local_begin, local_end): all of them as threads, or one of an MPI
     * job, whose endpoint carries the exchanges of figures (and, on the CPU, the transfers). */
    int local_begin, local_end;
    brg__transport *mpi;
    int64_t *rank_bytes; /* [ranks] bytes each rank's backend held at the last exchange (MPI) */
    int local_rank, node_ranks; /* this process among the ranks sharing its node (picks its GPU), and their number */
    float **assembled;    /* MPI hosting, tensor parallelism: [param][value, m, v] whole, on replica 0's index 0
                             (brg__trainer_gather_moments), for brg__trainer_read_param_state */
    int64_t eval_batches; /* brg_trainer_evaluate: micro-batches, and each one's loss sum */
    double *eval_sums;
    brg_status status;
    char error[BRG_ERROR_MESSAGE_MAX];
};

/* Whether this process runs `rank`. */
static int is_local(const brg_trainer *t, int rank) { return rank >= t->local_begin && rank < t->local_end; }

/* The rank of pipeline rank `prank` in copy c. */
static int rank_of(const brg_trainer *t, int copy, int prank) { return t->layout[copy * t->pp + prank]; }
/* The copy of index i of replica d's tensor-parallel group. */
static int copy_of(const brg_trainer *t, int replica, int tp_index) { return replica * t->tp + tp_index; }
/* The rank of w's pipeline peer `prank` (the same copy). */
static int peer_of(const worker *w, int prank) { return rank_of(w->trainer, w->copy, prank); }

BRG__PRINTF(3, 4)
static brg_status trainer_fail(brg_trainer *t, brg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->error, sizeof t->error, fmt, ap);
    va_end(ap);
    t->status = status;
    return status;
}

/* ---- creation -------------------------------------------------------------------------------- */

static brg_status check_options(const brg_train_options *o, brg_error *err) {
#define BRG__OPTION(cond, fmt, value) \
    if (!(cond)) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "training option " fmt, value)
    BRG__OPTION(o->micro_batch >= 1, "micro_batch must be at least 1, got %lld", (long long)o->micro_batch);
    BRG__OPTION(o->micro_batches >= 1 && o->micro_batches <= 65535, "micro_batches must be 1 to 65535, got %lld",
                (long long)o->micro_batches);
    BRG__OPTION(o->lr > 0.0f && isfinite(o->lr), "lr must be a positive number, got %g", (double)o->lr);
    BRG__OPTION(o->beta1 >= 0.0f && o->beta1 < 1.0f, "beta1 must be in [0, 1), got %g", (double)o->beta1);
    BRG__OPTION(o->beta2 >= 0.0f && o->beta2 < 1.0f, "beta2 must be in [0, 1), got %g", (double)o->beta2);
    BRG__OPTION(o->eps > 0.0f && isfinite(o->eps), "eps must be positive, got %g", (double)o->eps);
    BRG__OPTION(o->weight_decay >= 0.0f && isfinite(o->weight_decay), "weight_decay must be >= 0, got %g",
                (double)o->weight_decay);
    BRG__OPTION(o->grad_clip >= 0.0f && isfinite(o->grad_clip), "grad_clip must be >= 0, got %g",
                (double)o->grad_clip);
    BRG__OPTION(o->blas_threads >= 0, "blas_threads must be >= 0, got %d", o->blas_threads);
    BRG__OPTION(o->rendezvous == 0 || o->rendezvous == 1, "rendezvous must be 0 or 1, got %d", o->rendezvous);
    BRG__OPTION(o->hosting == BRG_HOSTING_THREADS || o->hosting == BRG_HOSTING_MPI,
                "hosting must be threads or mpi, got %d", (int)o->hosting);
    BRG__OPTION(o->stages >= 1 && o->stages <= 256, "stages must be 1 to 256, got %d", o->stages);
    BRG__OPTION(o->data_parallel >= 1 && o->data_parallel <= 4096 && o->data_parallel * o->stages <= 65536,
                "data_parallel must be 1 to 4096 with stages x data_parallel <= 65536 ranks, got %d", o->data_parallel);
    BRG__OPTION(o->zero == 0 || o->zero == 1, "zero must be 0 or 1 (ZeRO-1), got %d", o->zero);
    BRG__OPTION(o->bucket_bytes >= 0, "bucket_bytes must be >= 0, got %lld", (long long)o->bucket_bytes);
    BRG__OPTION(o->nan_check_every >= 0, "nan_check_every must be >= 0, got %lld", (long long)o->nan_check_every);
    BRG__OPTION(o->tensor_parallel >= 1 && o->tensor_parallel <= 64 &&
                    (int64_t)o->tensor_parallel * o->data_parallel * o->stages <= 65536,
                "tensor_parallel must be 1 to 64 with tensor_parallel x stages x data_parallel <= 65536 ranks, got %d",
                o->tensor_parallel);
    BRG__OPTION(o->sequence_parallel == 0 || o->sequence_parallel == 1, "sequence_parallel must be 0 or 1, got %d",
                o->sequence_parallel);
    BRG__OPTION(o->chunks >= 1 && o->chunks <= 64, "chunks must be 1 to 64, got %d", o->chunks);
    BRG__OPTION(o->backend == BRG_BACKEND_CPU || o->backend == BRG_BACKEND_CUDA, "backend must be cpu or cuda, got %d",
                (int)o->backend);
    BRG__OPTION(o->precision == BRG_PRECISION_FP32 || (o->precision == BRG_PRECISION_BF16 && o->backend == BRG_BACKEND_CUDA),
                "precision bf16 needs the CUDA backend (the CPU backend is fp32), got precision %d", (int)o->precision);
    BRG__OPTION(o->recompute >= BRG_RECOMPUTE_NONE && o->recompute <= BRG_RECOMPUTE_SELECTIVE,
                "recompute must be none, full or selective, got %d", (int)o->recompute);
    BRG__OPTION(!o->stage_recompute || o->stage_recompute_count == o->stages * o->chunks,
                "stage_recompute needs stages x chunks policies, got %d", o->stage_recompute_count);
    for (int k = 0; o->stage_recompute && k < o->stage_recompute_count; k++)
        BRG__OPTION(o->stage_recompute[k] >= BRG_RECOMPUTE_NONE && o->stage_recompute[k] <= BRG_RECOMPUTE_SELECTIVE,
                    "stage_recompute entries must be none, full or selective, got %d", (int)o->stage_recompute[k]);
    BRG__OPTION(o->lr_schedule >= BRG_LR_CONSTANT && o->lr_schedule <= BRG_LR_LINEAR,
                "lr_schedule must be constant, cosine or linear, got %d", (int)o->lr_schedule);
    BRG__OPTION(o->warmup_steps >= 0, "warmup_steps must be >= 0, got %lld", (long long)o->warmup_steps);
    BRG__OPTION(o->min_lr >= 0.0f && o->min_lr <= o->lr, "min_lr must be in [0, lr], got %g", (double)o->min_lr);
    BRG__OPTION(o->lr_schedule == BRG_LR_CONSTANT || o->total_steps > o->warmup_steps,
                "total_steps must exceed warmup_steps for a decaying learning rate, got %lld", (long long)o->total_steps);
#undef BRG__OPTION
    if (o->tensor_parallel > 1 && o->backend != BRG_BACKEND_CPU)
        return brg__error_set(err, BRG_ERR_UNSUPPORTED,
                              "training option tensor_parallel: tensor parallelism runs on the CPU backend in this build "
                              "(its CUDA kernels for a split vocabulary and bf16 sums over the group are not written yet)");
    if (o->hosting == BRG_HOSTING_MPI && !brg__mpi_built())
        return brg__error_set(err, BRG_ERR_UNSUPPORTED,
                              "training option hosting: this brigade was built without MPI (install Open MPI, "
                              "libopenmpi-dev on Debian, and configure with -Dmpi=enabled)");
    return BRG_OK;
}

/* MPI hosting: this process's endpoint, and the check that every rank runs the same job, before anything
 * is allocated. */
static brg_status join_job(brg_trainer *t, const brg_train_options *o, brg_error *err) {
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status s = brg__mpi_transport_create(&t->mpi, o->mpi_comm, o->timeout_seconds, msg);
    if (s != BRG_OK) return brg__error_set(err, s, "%s", msg);
    int world = o->stages * o->data_parallel * o->tensor_parallel;
    if (t->mpi->ranks != world && o->tensor_parallel > 1)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                              "the job has %d processes but %d stages x %d replicas x %d tensor-parallel ranks make %d: "
                              "one process runs each (start %d processes, e.g. mpirun -np %d)",
                              t->mpi->ranks, o->stages, o->data_parallel, o->tensor_parallel, world, world, world);
    if (t->mpi->ranks != world && o->data_parallel == 1)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                              "the job has %d processes but the pipeline %d stages: one process runs each stage "
                              "(start %d processes, e.g. mpirun -np %d, or ask for --pp %d)",
                              t->mpi->ranks, o->stages, o->stages, o->stages, t->mpi->ranks);
    if (t->mpi->ranks != world)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                              "the job has %d processes but %d stages x %d replicas make %d ranks: one process runs "
                              "each (start %d processes, e.g. mpirun -np %d)",
                              t->mpi->ranks, o->stages, o->data_parallel, world, world, world);
    t->local_begin = t->mpi->rank;
    t->local_end = t->mpi->rank + 1;
    s = brg__mpi_transport_local_rank(t->mpi, &t->local_rank, &t->node_ranks, msg);
    if (s != BRG_OK) return brg__error_set(err, s, "%s", msg);
    s = brg__exchange_check_job(t->mpi, brg__options_hash(o), brg__graph_hash(t->graph), o->consistency_key, msg);
    return s == BRG_OK ? BRG_OK : brg__error_set(err, s, "%s", msg);
}

/* MPI hosting: every rank learns whether every other made its stage (a rank that failed says why in its
 * own message) and how much memory each holds. */
static brg_status agree_created(brg_trainer *t, brg_status mine, brg_error *err) {
    int64_t me[2] = {(int64_t)mine, 0}, *all = brg__calloc((size_t)t->ranks, sizeof me);
    t->rank_bytes = brg__calloc((size_t)t->ranks, sizeof *t->rank_bytes);
    if (!all || !t->rank_bytes) mine = BRG_ERR_OUT_OF_MEMORY;
    if (mine == BRG_OK) me[1] = t->workers[t->mpi->rank].be->vt->allocated(t->workers[t->mpi->rank].be);
    me[0] = mine;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status s = all ? brg__exchange_allgather(t->mpi, brg__transfer_tag(TAG_SUMMARY, 0, 0, 0), me, all, sizeof me, msg)
                       : BRG_ERR_OUT_OF_MEMORY;
    for (int r = 0; s == BRG_OK && r < t->ranks; r++) {
        t->rank_bytes[r] = all[2 * r + 1];
        if (all[2 * r] != BRG_OK && mine == BRG_OK)
            s = brg__message_set(msg, sizeof msg, (brg_status)all[2 * r],
                                 "rank %d could not make its stage (%s; its own message says why)", r,
                                 brg_status_string((brg_status)all[2 * r]));
    }
    free(all);
    if (mine != BRG_OK) return mine; /* this rank's own error is already in err */
    return s == BRG_OK ? BRG_OK : brg__error_set(err, s, "%s", msg);
}

/* The graph's inputs must be "tokens" and "targets", I32 (BRG_BATCH, T) with the same T. */
static brg_status find_inputs(brg_trainer *t, brg_error *err) {
    const brg_graph *g = t->graph;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const brg_tensor *x = g->tensors[i];
        if (x->kind != BRG_TENSOR_INPUT) continue;
        int is_tokens = strcmp(x->name, "tokens") == 0, is_targets = strcmp(x->name, "targets") == 0;
        if (!is_tokens && !is_targets)
            return brg__error_set(err, BRG_ERR_UNSUPPORTED,
                                  "graph input '%s' has no data source: the trainer feeds inputs named 'tokens' "
                                  "and 'targets'",
                                  x->name);
        if (x->dtype != BRG_I32 || x->ndim != 2 || x->shape[0] != BRG_BATCH)
            return brg__error_set(err, BRG_ERR_UNSUPPORTED, "graph input '%s' must be I32 (BRG_BATCH, T)", x->name);
        if (is_tokens) t->tokens = x;
        if (is_targets) t->targets = x;
    }
    if (!t->tokens || !t->targets)
        return brg__error_set(err, BRG_ERR_UNSUPPORTED, "the graph needs inputs named 'tokens' and 'targets'");
    if (t->tokens->shape[1] != t->targets->shape[1])
        return brg__error_set(err, BRG_ERR_UNSUPPORTED, "'tokens' has %lld positions but 'targets' has %lld",
                              (long long)t->tokens->shape[1], (long long)t->targets->shape[1]);
    t->seq = t->tokens->shape[1];
    return BRG_OK;
}

/* Cuts the layers into n contiguous parts minimizing the largest part's forward + backward FLOPs. */
brg_status brg__balanced_split(const brg_graph *g, int n, int *first_layers) {
    int L = g->n_layers;
    if (n < 1 || n > L) return BRG_ERR_INVALID_ARGUMENT;
    double *prefix = brg__calloc((size_t)L + 1, sizeof *prefix);
    double *best = brg__malloc((size_t)(n + 1) * (size_t)(L + 1) * sizeof *best);
    int *cut = brg__malloc((size_t)(n + 1) * (size_t)(L + 1) * sizeof *cut);
    if (!prefix || !best || !cut) {
        free(prefix);
        free(best);
        free(cut);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    for (int l = 0; l < L; l++) {
        brg_layer_info li;
        brg_graph_layer_info(g, l, &li);
        prefix[l + 1] = prefix[l] + li.flops[0] + li.flops[1] + li.flops[2];
    }
    /* best[k][j]: the smallest bottleneck splitting layers [0, j) into k parts. */
#define BEST(k, j) best[(size_t)(k) * (size_t)(L + 1) + (size_t)(j)]
#define CUT(k, j) cut[(size_t)(k) * (size_t)(L + 1) + (size_t)(j)]
    for (int j = 0; j <= L; j++) BEST(1, j) = prefix[j];
    for (int k = 2; k <= n; k++)
        for (int j = k; j <= L; j++) {
            BEST(k, j) = INFINITY;
            for (int i = k - 1; i < j; i++) {
                double v = fmax(BEST(k - 1, i), prefix[j] - prefix[i]);
                if (v < BEST(k, j)) {
                    BEST(k, j) = v;
                    CUT(k, j) = i;
                }
            }
        }
    int j = L;
    for (int k = n; k >= 2; k--) {
        j = CUT(k, j);
        first_layers[k - 1] = j;
    }
    first_layers[0] = 0;
#undef BEST
#undef CUT
    free(prefix);
    free(best);
    free(cut);
    return BRG_OK;
}

static brg_status choose_split(brg_trainer *t, int *first, brg_error *err) {
    const brg_graph *g = t->graph;
    int S = t->n_stages, L = g->n_layers;
    if (S > L)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                              "%d stages x %d chunks = %d virtual stages, but the model has only %d layers "
                              "(a stage needs at least one)",
                              t->opts.stages, t->opts.chunks, S, L);
    if (!t->opts.split) {
        brg_status s = brg__balanced_split(g, S, first);
        return s == BRG_OK ? BRG_OK : brg__error_set(err, s, "splitting the layers failed: out of memory");
    }
    if (t->opts.split_count != S - 1)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                              "the split gives %d cut points; %d virtual stages need %d", t->opts.split_count, S,
                              S - 1);
    first[0] = 0;
    for (int k = 0; k < S - 1; k++) {
        int c = t->opts.split[k];
        if (c <= first[k] || c >= L)
            return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                                  "split point %d is layer %d: points must ascend strictly within 1..%d", k + 1, c,
                                  L - 1);
        first[k + 1] = c;
    }
    return BRG_OK;
}

/* Tied parameters and each parameter's owner stage (the stage of its first consumer). */
static brg_status find_tied(brg_trainer *t) {
    const brg_graph *g = t->graph;
    t->param_owner = brg__malloc((size_t)(g->n_params ? g->n_params : 1) * sizeof *t->param_owner);
    t->tied = brg__calloc((size_t)(g->n_params ? g->n_params : 1), sizeof *t->tied);
    t->tied_mask = brg__calloc((size_t)(g->n_params ? g->n_params : 1), sizeof *t->tied_mask);
    if (!t->param_owner || !t->tied || !t->tied_mask) return BRG_ERR_OUT_OF_MEMORY;
    for (int64_t p = 0; p < g->n_params; p++) {
        const brg_tensor *param = g->params[p];
        int n = 0, first_stage = -1, several = 0;
        t->param_owner[p] = -1;
        for (int s = 0; s < t->n_stages; s++)
            for (int64_t i = t->stages[s].op_begin; i < t->stages[s].op_end; i++)
                for (int q = 0; q < g->ops[i].n_inputs; q++)
                    if (g->ops[i].inputs[q] == param) {
                        if (first_stage < 0) first_stage = s;
                        several |= s != first_stage;
                        n++;
                    }
        t->param_owner[p] = first_stage;
        if (!several) continue;
        t->tied_mask[p] = 1;
        tied_param *tp = &t->tied[t->n_tied++];
        tp->param = p;
        tp->consumer_op = brg__malloc((size_t)n * sizeof *tp->consumer_op);
        tp->consumer_stage = brg__malloc((size_t)n * sizeof *tp->consumer_stage);
        tp->consumer_input = brg__malloc((size_t)n * sizeof *tp->consumer_input);
        if (!tp->consumer_op || !tp->consumer_stage || !tp->consumer_input) return BRG_ERR_OUT_OF_MEMORY;
        for (int s = 0; s < t->n_stages; s++)
            for (int64_t i = t->stages[s].op_begin; i < t->stages[s].op_end; i++)
                for (int q = 0; q < g->ops[i].n_inputs; q++)
                    if (g->ops[i].inputs[q] == param) {
                        tp->consumer_op[tp->n_consumers] = i;
                        tp->consumer_stage[tp->n_consumers] = s;
                        tp->consumer_input[tp->n_consumers++] = q;
                    }
        /* Every holder sums all contributions itself: its gradient needs a buffer of its own. */
        for (int d = 0; d < t->copies; d++)
            for (int c = 0; c < tp->n_consumers; c++) {
                brg__stage *st = t->stages[d * t->n_stages + tp->consumer_stage[c]].st;
                if (st) BRG__CHECK(brg__stage_own_param_grad(st, p));
            }
    }
    return BRG_OK;
}

/* Sequence parallelism: a parameter's gradient summed over the tensor-parallel group as it is final, before
 * its sum over the replicas. */
static brg_status partial_grad_hook(void *ctx, brg__stage *st, int64_t p, char *msg) {
    (void)ctx;
    brg_status s = brg__stage_sum_partial_grads(st, p);
    if (s != BRG_OK) snprintf(msg, BRG_ERROR_MESSAGE_MAX, "%s", st->msg);
    return s;
}

static brg_status dp_hook(void *ctx, brg__stage *st, int64_t op) {
    worker *w = ctx;
    return brg__dp_grad_ready(w->dp, st, op, st->msg);
}

/* Each local rank's group of replicas: its pipeline rank in every replica (at its own index of the
 * tensor-parallel group), in replica order. */
static brg_status create_data_parallel(brg_trainer *t, char *msg) {
    int *members = brg__calloc((size_t)t->dp, sizeof *members);
    brg__stage **mine = brg__calloc((size_t)t->n_stages, sizeof *mine);
    brg_status s = members && mine ? BRG_OK : brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    for (int r = t->local_begin; r < t->local_end && s == BRG_OK; r++) {
        worker *w = &t->workers[r];
        int n = 0;
        for (int k = 0; k < t->n_stages; k++)
            if (w->vs[k].rank == w->prank) mine[n++] = w->vs[k].st;
        for (int d = 0; d < t->dp; d++) members[d] = rank_of(t, copy_of(t, d, w->tp_index), w->prank);
        int64_t bucket = t->opts.bucket_bytes > 0 ? t->opts.bucket_bytes : (int64_t)4 << 20;
        s = brg__dp_create(&w->dp, mine, n, t->tied_mask, w->tp, w->be, members, t->dp, t->opts.zero, bucket, msg);
        if (s == BRG_OK && w->tp_group) brg__dp_set_piece_hook(w->dp, partial_grad_hook, w);
        for (int k = 0; k < n && s == BRG_OK; k++) {
            mine[k]->grad_hook = dp_hook;
            mine[k]->hook_ctx = w;
            mine[k]->hook_slot = (int)t->opts.micro_batches - 1;
        }
    }
    free(members);
    free(mine);
    return s;
}

/* Each local rank's tensor-parallel group: its pipeline rank in every copy of its replica, in index order;
 * its stages run their collectives on it. */
static brg_status create_tensor_groups(brg_trainer *t, char *msg) {
    int *members = brg__calloc((size_t)t->tp, sizeof *members);
    brg_status s = members ? BRG_OK : brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    for (int r = t->local_begin; r < t->local_end && s == BRG_OK; r++) {
        worker *w = &t->workers[r];
        for (int i = 0; i < t->tp; i++) members[i] = rank_of(t, copy_of(t, w->replica, i), w->prank);
        s = brg__group_create(&w->tp_group, w->tp, w->be, members, t->tp, 1, msg);
        for (int k = 0; k < t->n_stages && s == BRG_OK; k++)
            if (w->vs[k].rank == w->prank) brg__stage_set_tensor_group(w->vs[k].st, w->tp_group);
    }
    free(members);
    return s;
}

static brg_status create_pipeline(brg_trainer *t, brg_error *err) {
    const brg_graph *g = t->graph;
    const brg_train_options *o = &t->opts;
    brg_schedule_options so = BRG_SCHEDULE_OPTIONS_INIT;
    so.kind = o->schedule;
    so.stages = o->stages;
    so.chunks = o->chunks;
    so.micro_batches = (int)o->micro_batches;
    so.data_parallel = o->data_parallel;
    BRG__CHECK(brg_schedule_create(&so, &t->schedule, err));
    brg_status checked = brg_schedule_check(t->schedule);
    if (checked == BRG_ERR_OUT_OF_MEMORY)
        return brg__error_set(err, checked, "%s", brg_schedule_last_error(t->schedule));
    if (checked != BRG_OK)
        return brg__error_set(err, BRG_ERR_INTERNAL, "the generated schedule failed its check: %s",
                              brg_schedule_last_error(t->schedule));
    t->n_stages = o->stages * o->chunks;
    int *first = brg__calloc((size_t)t->n_stages + 1, sizeof *first);
    t->stages = brg__calloc((size_t)t->n_stages * (size_t)t->copies, sizeof *t->stages);
    t->workers = brg__calloc((size_t)t->ranks, sizeof *t->workers);
    t->norm_partials = brg__calloc((size_t)t->ranks * (size_t)(g->n_params + 1), sizeof *t->norm_partials);
    if (!first || !t->stages || !t->workers || !t->norm_partials) {
        free(first);
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    brg_status s = choose_split(t, first, err);
    first[t->n_stages] = g->n_layers;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    int *devices = brg__calloc((size_t)t->ranks, sizeof *devices);
    for (int r = 0; devices && r < t->ranks; r++) devices[r] = r;
    if (!devices && s == BRG_OK) s = brg__message_set(msg, sizeof msg, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    if (s == BRG_OK && t->mpi && o->backend == BRG_BACKEND_CUDA) {
        /* One GPU per process: the local rank's; NCCL's unique id goes from rank 0 over MPI. */
        s = brg__nccl_fabric_create_rank(&t->nccl, t->mpi->rank, t->ranks, t->local_rank, brg__mpi_transport_bcast,
                                         t->mpi, o->timeout_seconds, msg);
    } else if (s == BRG_OK && o->backend == BRG_BACKEND_CUDA) {
        s = brg__nccl_fabric_create(&t->nccl, t->ranks, devices, o->timeout_seconds, msg);
    } else if (s == BRG_OK && !t->mpi) {
        s = brg__inproc_fabric_create(&t->fabric, t->ranks, o->rendezvous ? 0 : 1 << 16, o->timeout_seconds, msg);
    }
    free(devices);
    size_t bt = (size_t)(o->micro_batch * t->seq);
    for (int r = 0; r < t->ranks && s == BRG_OK; r++) {
        worker *w = &t->workers[r];
        w->trainer = t;
        w->rank = r;
        for (int k = 0; k < t->ranks; k++)
            if (t->layout[k] == r) {
                w->copy = k / t->pp;
                w->prank = k % t->pp;
            }
        w->replica = w->copy / t->tp;
        w->tp_index = w->copy % t->tp;
        w->vs = &t->stages[(size_t)w->copy * (size_t)t->n_stages];
        if (!is_local(t, r)) continue; /* another process runs it */
        w->tp = t->nccl ? brg__nccl_endpoint(t->nccl, r) : t->mpi ? t->mpi : brg__inproc_endpoint(t->fabric, r);
        w->host_tokens = brg__malloc(bt * sizeof(int32_t));
        w->host_targets = brg__malloc(bt * sizeof(int32_t));
        if (!w->host_tokens || !w->host_targets) s = brg__message_set(msg, sizeof msg, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        if (s == BRG_OK && o->backend == BRG_BACKEND_CUDA)
            s = brg__backend_cuda_create(&w->be, t->mpi ? t->local_rank : r, o->precision == BRG_PRECISION_BF16, msg);
        else if (s == BRG_OK)
            s = brg__backend_cpu_create(&w->be, msg);
        if (s == BRG_OK && t->nccl) s = brg__nccl_fabric_attach(t->nccl, r, w->be, msg);
    }
    /* Every position of the global batch (every replica's) weighs alike in the loss. */
    float dloss = (float)(1.0 / ((double)t->dp * (double)o->micro_batches * (double)bt));
    for (int i = 0; i < t->n_stages * t->copies && s == BRG_OK; i++) {
        vstage *v = &t->stages[i];
        int k = i % t->n_stages;
        v->index = k;
        v->rank = brg_schedule_stage_rank(t->schedule, k);
        v->copy = i / t->n_stages;
        v->grank = rank_of(t, v->copy, v->rank);
        v->first_layer = first[k];
        v->end_layer = first[k + 1];
        v->op_begin = g->layers[v->first_layer].op_begin;
        v->op_end = g->layers[v->end_layer - 1].op_end;
        if (!is_local(t, v->grank)) continue;
        brg_recompute policy = o->stage_recompute ? o->stage_recompute[k] : o->recompute;
        s = brg__stage_create(&v->st, g, t->workers[v->grank].be, v->op_begin, v->op_end, o->micro_batch,
                              (int)o->micro_batches, policy, o->seed, dloss, v->copy % t->tp, msg);
        v->mb = s == BRG_OK ? brg__calloc((size_t)o->micro_batches, sizeof *v->mb) : NULL;
        v->loss_sums = s == BRG_OK ? brg__calloc((size_t)o->micro_batches, sizeof *v->loss_sums) : NULL;
        if (s == BRG_OK && (!v->mb || !v->loss_sums)) s = brg__message_set(msg, sizeof msg, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        for (int64_t j = 0; j < o->micro_batches && s == BRG_OK; j++) {
            v->mb[j].act_reqs = brg__calloc((size_t)v->st->n_recv + 1, sizeof *v->mb[j].act_reqs);
            v->mb[j].grad_reqs = brg__calloc((size_t)v->st->n_send + 1, sizeof *v->mb[j].grad_reqs);
            if (!v->mb[j].act_reqs || !v->mb[j].grad_reqs)
                s = brg__message_set(msg, sizeof msg, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        }
    }
    if (s == BRG_OK) {
        s = find_tied(t);
        if (s != BRG_OK) brg__message_set(msg, sizeof msg, s, "out of memory preparing tied parameters");
    }
    if (s == BRG_OK && t->tp > 1) s = create_tensor_groups(t, msg);
    if (s == BRG_OK && t->dp > 1) s = create_data_parallel(t, msg);
    free(first);
    if (s != BRG_OK && msg[0]) brg__error_set(err, s, "%s", msg);
    return s;
}

/* The rank of every (copy, pipeline rank): the caller's layout (entry (d * pp + p) * tp + i: replica d,
 * stage p, tensor-parallel index i), checked, or that entry's index itself. */
static brg_status make_layout(brg_trainer *t, const int *given, brg_error *err) {
    t->layout = brg__malloc((size_t)t->ranks * sizeof *t->layout);
    unsigned char *seen = brg__calloc((size_t)t->ranks, 1);
    brg_status s = t->layout && seen ? BRG_OK : brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    for (int k = 0; k < t->ranks && s == BRG_OK; k++) {
        int i = k % t->tp, p = k / t->tp % t->pp, d = k / t->tp / t->pp;
        int r = given ? given[k] : k;
        if (r < 0 || r >= t->ranks || seen[r])
            s = brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                               "training option rank_layout: entry %d (stage %d of replica %d%s) is rank %d: the layout "
                               "must give each of the %d ranks once",
                               k, p, d, t->tp > 1 ? ", at its tensor-parallel index" : "", r, t->ranks);
        else
            seen[r] = 1;
        if (s == BRG_OK) t->layout[copy_of(t, d, i) * t->pp + p] = r;
    }
    free(seen);
    return s;
}

brg_status brg_trainer_create(brg_trainer **out, const brg_graph *g, const brg_train_options *opts,
                              brg_error *err) {
    if (!out || !g || !opts)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_trainer_create: %s is NULL",
                              !out ? "out" : !g ? "the graph" : "opts");
    *out = NULL;
    if (g->status != BRG_OK)
        return brg__error_set(err, BRG_ERR_INVALID_USAGE, "brg_trainer_create: the graph is in error: %s", g->error);
    if (!g->finalized)
        return brg__error_set(err, BRG_ERR_INVALID_USAGE,
                              "brg_trainer_create: the graph is not finalized (call brg_graph_finalize)");
    BRG__CHECK(check_options(opts, err));
    char batch_msg[BRG_ERROR_MESSAGE_MAX];
    if (brg__graph_check_batch(g, opts->micro_batch, batch_msg, sizeof batch_msg) != BRG_OK)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "training option micro_batch: %s", batch_msg);
    brg_trainer *t = brg__calloc(1, sizeof *t);
    if (!t) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    t->graph = t->model = g;
    t->opts = *opts;
    t->opts.split = NULL; /* borrowed: not kept */
    t->opts.stage_recompute = NULL;
    t->opts.mpi_comm = NULL;
    t->inject_stage = -1;
    t->inject_optimizer_rank = -1;
    t->inject_replica = -1;
    t->inject_nan_stage = -1;
    t->opts.rank_layout = NULL;
    t->pp = opts->stages;
    t->dp = opts->data_parallel;
    t->tp = opts->tensor_parallel;
    t->copies = t->dp * t->tp;
    t->ranks = t->pp * t->copies;
    t->local_begin = 0;
    t->local_end = t->ranks;
    brg_status s = BRG_OK;
    if (t->tp > 1) { /* every rank runs its share of the model */
        char msg[BRG_ERROR_MESSAGE_MAX] = "";
        s = brg__graph_localize(g, t->tp, opts->sequence_parallel, &t->local, msg);
        if (s != BRG_OK) brg__error_set(err, s, "%s", msg);
        else t->graph = t->local;
    }
    if (s == BRG_OK) s = make_layout(t, opts->rank_layout, err);
    if (s == BRG_OK) s = find_inputs(t, err);
    if (s == BRG_OK && opts->hosting == BRG_HOSTING_MPI) s = join_job(t, opts, err);
    int joined = s == BRG_OK && t->mpi;
    if (s == BRG_OK) {
        t->opts.split = opts->split;
        t->opts.stage_recompute = opts->stage_recompute;
        s = create_pipeline(t, err);
        t->opts.split = NULL;
        t->opts.stage_recompute = NULL;
    }
    if (joined) s = agree_created(t, s, err);
    if (s != BRG_OK) {
        brg_trainer_destroy(t);
        return s;
    }
    int threads = opts->blas_threads;
    if (threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (int)(cores / (t->mpi ? t->node_ranks : t->ranks));
        if (threads < 1) threads = 1;
    }
    /* OpenBLAS runs single-threaded inside each call: its threaded paths round differently with the
     * thread count. The CPU kernels split work themselves, in pieces whose size does not depend on it. */
    openblas_set_num_threads(1);
    t->threads_per_rank = threads;
    *out = t;
    return BRG_OK;
}

void brg_trainer_destroy(brg_trainer *t) {
    if (!t) return;
    for (int r = 0; t->workers && r < t->ranks; r++) brg__group_destroy(t->workers[r].tp_group);
    for (int k = 0; t->stages && k < t->n_stages * t->copies; k++) {
        vstage *v = &t->stages[k];
        for (int64_t j = 0; v->mb && j < t->opts.micro_batches; j++) {
            free(v->mb[j].act_reqs);
            free(v->mb[j].grad_reqs);
        }
        free(v->mb);
        free(v->loss_sums);
        brg__stage_destroy(v->st);
    }
    for (int r = 0; t->workers && r < t->ranks; r++) {
        brg__dp_destroy(t->workers[r].dp);
        brg__backend_destroy(t->workers[r].be);
        free(t->workers[r].host_tokens);
        free(t->workers[r].host_targets);
        free(t->workers[r].events);
    }
    for (int i = 0; t->tied && i < t->n_tied; i++) {
        free(t->tied[i].consumer_op);
        free(t->tied[i].consumer_stage);
        free(t->tied[i].consumer_input);
    }
    brg__inproc_fabric_destroy(t->fabric);
    brg__nccl_fabric_destroy(t->nccl);
    if (t->mpi) t->mpi->vt->destroy(t->mpi);
    free(t->rank_bytes);
    brg_schedule_destroy(t->schedule);
    free(t->tied);
    free(t->tied_mask);
    free(t->layout);
    free(t->eval_sums);
    free(t->param_owner);
    free(t->norm_partials);
    for (int64_t i = 0; t->assembled && i < 3 * t->graph->n_params; i++) free(t->assembled[i]);
    free(t->assembled);
    free(t->stages);
    free(t->workers);
    brg_graph_destroy(t->local);
    free(t);
}

const char *brg_trainer_last_error(const brg_trainer *t) { return t ? t->error : "the trainer handle is NULL"; }

/* ---- the worker ------------------------------------------------------------------------------ */

BRG__PRINTF(3, 4)
static brg_status worker_fail(worker *w, brg_status status, const char *fmt, ...) {
    if (w->status == BRG_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->msg, sizeof w->msg, fmt, ap);
        va_end(ap);
        w->status = status;
    }
    return status;
}

static void record(worker *w, brg_instruction_kind kind, brg_trace_track track, int mb, int stage, double start,
                   double end) {
    if (!w->trainer->opts.record_trace) return;
    if (w->n_events == w->cap_events) {
        int64_t cap = w->cap_events ? 2 * w->cap_events : 256;
        brg_trace_event *e = brg__realloc(w->events, (size_t)cap * sizeof *e);
        if (!e) return; /* the trace is best effort; the step goes on */
        w->events = e;
        w->cap_events = cap;
    }
    brg_trace_event *e = &w->events[w->n_events++];
    memset(e, 0, sizeof *e);
    e->rank = w->rank;
    e->track = track;
    e->kind = kind;
    e->micro_batch = mb;
    e->stage = stage;
    e->start = start - w->step_start;
    e->duration = end - start;
}

static int remote_next(const brg_trainer *t, const vstage *v) {
    return v->index + 1 < t->n_stages && t->stages[v->index + 1].rank != v->rank;
}
static int remote_prev(const brg_trainer *t, const vstage *v) {
    return v->index > 0 && t->stages[v->index - 1].rank != v->rank;
}

static brg_status acquire(worker *w, vstage *v, int mb) {
    if (v->mb[mb].acquired) return BRG_OK;
    brg_status s = brg__stage_acquire(v->st, mb);
    if (s != BRG_OK) return worker_fail(w, s, "%s", v->st->msg);
    v->mb[mb].acquired = 1;
    return BRG_OK;
}

static void maybe_drop(worker *w, vstage *v, int mb) {
    mb_state *m = &v->mb[mb];
    if (m->forward_done && (m->activations_sent || !remote_next(w->trainer, v))) brg__stage_drop(v->st, mb);
}

static void maybe_release(worker *w, vstage *v, int mb) {
    mb_state *m = &v->mb[mb];
    if (m->acquired && m->backward_done && (m->grads_sent || !remote_prev(w->trainer, v))) {
        brg__stage_release(v->st, mb);
        m->acquired = 0;
        if (m->stashed) w->in_flight--;
        m->stashed = 0;
    }
}

/* Loads the graph inputs stage v reads for micro-batch mb of the current step. */
/* Samples [first, first + micro_batch) of w->data into slot `mb`'s graph inputs of stage v. */
static brg_status upload_samples(worker *w, vstage *v, int mb, int64_t first) {
    brg_trainer *t = w->trainer;
    brg__stage *st = v->st;
    if (st->n_inputs == 0) return BRG_OK;
    brg_status s = brg_data_batch(w->data, first, t->opts.micro_batch, w->host_tokens, w->host_targets);
    if (s != BRG_OK)
        return worker_fail(w, s, "loading samples %lld..%lld: %s", (long long)first,
                           (long long)(first + t->opts.micro_batch - 1), brg_data_last_error(w->data));
    size_t bytes = (size_t)(t->opts.micro_batch * t->seq) * sizeof(int32_t);
    for (int64_t k = 0; k < st->n_inputs; k++) {
        int64_t idx = st->inputs[k];
        const int32_t *src = idx == t->tokens->index ? w->host_tokens : w->host_targets;
        w->be->vt->upload(w->be, st->acts[mb][idx], src, bytes);
    }
    return BRG_OK;
}

/* Replica d trains on the d-th contiguous share of the step's samples. */
static brg_status load_inputs(worker *w, vstage *v, int mb) {
    BRG__CHECK(acquire(w, v, mb));
    const brg_trainer *t = w->trainer;
    int64_t index = (int64_t)w->replica * t->opts.micro_batches + mb;
    return upload_samples(w, v, mb, t->next_sample + index * t->opts.micro_batch);
}

static brg_status wait_all(worker *w, brg__request **reqs, int64_t n) {
    brg_status first = BRG_OK;
    for (int64_t k = 0; k < n; k++) {
        if (!reqs[k]) continue;
        char msg[BRG_ERROR_MESSAGE_MAX] = "";
        brg_status s = w->tp->vt->wait(w->tp, reqs[k], msg);
        reqs[k] = NULL;
        if (s != BRG_OK && first == BRG_OK) first = worker_fail(w, s, "%s", msg);
    }
    return first;
}

static brg_status post_recvs(worker *w, vstage *v, int mb, int grads, int prank) {
    int peer = peer_of(w, prank);
    brg__stage *st = v->st;
    const int64_t *list = grads ? st->send : st->recv;
    int64_t n = grads ? st->n_send : st->n_recv;
    brg__request **reqs = grads ? v->mb[mb].grad_reqs : v->mb[mb].act_reqs;
    int boundary = grads ? v->index : v->index - 1;
    for (int64_t k = 0; k < n; k++) {
        const brg_tensor *x = st->graph->tensors[list[k]];
        void *dst = grads ? (void *)st->act_grads[mb][x->index] : st->acts[mb][x->index];
        brg_status s = w->tp->vt->post_recv(w->tp, peer, brg__transfer_tag(grads ? TAG_GRAD : TAG_ACTIVATION, boundary, mb, x->index),
                                            dst, brg__stage_tensor_bytes(st, x), &reqs[k]);
        if (s != BRG_OK) return worker_fail(w, s, "rank %d: posting a receive from rank %d failed: %s", w->rank, peer, brg_status_string(s));
    }
    return BRG_OK;
}

static brg_status send_tensors(worker *w, vstage *v, int mb, int grads, int prank) {
    int peer = peer_of(w, prank);
    brg__stage *st = v->st;
    const int64_t *list = grads ? st->recv : st->send;
    int64_t n = grads ? st->n_recv : st->n_send;
    int boundary = grads ? v->index - 1 : v->index;
    for (int64_t k = 0; k < n; k++) {
        const brg_tensor *x = st->graph->tensors[list[k]];
        const void *src = grads ? (const void *)st->act_grads[mb][x->index] : st->acts[mb][x->index];
        brg__request *req = NULL;
        char msg[BRG_ERROR_MESSAGE_MAX] = "";
        brg_status s = w->tp->vt->post_send(w->tp, peer, brg__transfer_tag(grads ? TAG_GRAD : TAG_ACTIVATION, boundary, mb, x->index), src,
                                            brg__stage_tensor_bytes(st, x), &req);
        if (s == BRG_OK) s = w->tp->vt->wait(w->tp, req, msg);
        if (s != BRG_OK) return worker_fail(w, s, "rank %d: sending to rank %d failed: %s", w->rank, peer, msg[0] ? msg : brg_status_string(s));
    }
    return BRG_OK;
}

/* Stages on the same rank (one rank, several chunks) hand values over by copying. */
static brg_status copy_forward(worker *w, vstage *from, int mb) {
    vstage *to = from + 1; /* the same replica's */
    BRG__CHECK(acquire(w, to, mb));
    for (int64_t k = 0; k < to->st->n_recv; k++) {
        int64_t x = to->st->recv[k];
        w->be->vt->copy(w->be, to->st->acts[mb][x], from->st->acts[mb][x],
                        brg__stage_tensor_bytes(to->st, to->st->graph->tensors[x]));
    }
    return BRG_OK;
}

static brg_status copy_backward(worker *w, vstage *from, int mb) {
    vstage *to = from - 1;
    brg_status s = brg__stage_acquire_grads(to->st, mb);
    if (s != BRG_OK) return worker_fail(w, s, "%s", to->st->msg);
    for (int64_t k = 0; k < from->st->n_recv; k++) {
        int64_t x = from->st->recv[k];
        w->be->vt->copy(w->be, to->st->act_grads[mb][x], from->st->act_grads[mb][x],
                        brg__stage_tensor_bytes(to->st, to->st->graph->tensors[x]));
    }
    return BRG_OK;
}

/* How a non-finite figure reads in a message (printf's "-nan" says more than it knows). */
static const char *nonfinite_name(double x) { return isnan(x) ? "NaN" : x > 0 ? "+infinity" : "-infinity"; }

static brg_status run_forward(worker *w, vstage *v, int mb) {
    brg_trainer *t = w->trainer;
    BRG__CHECK(acquire(w, v, mb));
    double t0 = brg__now_seconds();
    BRG__CHECK(wait_all(w, v->mb[mb].act_reqs, v->st->n_recv));
    double t1 = brg__now_seconds();
    w->stats.wait_seconds += t1 - t0;
    if (!v->mb[mb].stashed) {
        v->mb[mb].stashed = 1;
        if (++w->in_flight > w->stats.peak_in_flight) w->stats.peak_in_flight = w->in_flight;
    }
    if (v->index == t->inject_stage && mb == t->inject_micro_batch)
        return worker_fail(w, BRG_ERR_BACKEND, "stage %d, micro-batch %d: injected kernel failure", v->index, mb);
    brg_status s = brg__stage_forward(v->st, mb);
    /* The loss stays on the device until the step's end (read_losses): no wait per micro-batch. */
    if (s == BRG_OK && v->index == t->n_stages - 1) s = brg__stage_loss_keep(v->st, mb);
    if (s != BRG_OK) return worker_fail(w, s, "stage %d, micro-batch %d, forward: %s", v->index, mb, v->st->msg);
    double t2 = brg__now_seconds();
    w->stats.compute_seconds += t2 - t1;
    record(w, BRG_INSTRUCTION_FORWARD, BRG_TRACE_COMPUTE, mb, v->index, t1, t2);
    v->mb[mb].forward_done = 1;
    if (v->index + 1 < t->n_stages && !remote_next(t, v)) BRG__CHECK(copy_forward(w, v, mb));
    maybe_drop(w, v, mb);
    return BRG_OK;
}

static brg_status run_backward(worker *w, vstage *v, int mb, brg__backward_part part) {
    brg_trainer *t = w->trainer;
    double t0 = brg__now_seconds();
    if (part & BRG__BACKWARD_INPUT) {
        BRG__CHECK(wait_all(w, v->mb[mb].grad_reqs, v->st->n_send));
    }
    double t1 = brg__now_seconds();
    w->stats.wait_seconds += t1 - t0;
    brg_status s = brg__stage_backward(v->st, mb, part);
    if (s != BRG_OK) return worker_fail(w, s, "stage %d, micro-batch %d, backward: %s", v->index, mb, v->st->msg);
    double t2 = brg__now_seconds();
    w->stats.compute_seconds += t2 - t1;
    brg_instruction_kind kind = part == BRG__BACKWARD_FULL    ? BRG_INSTRUCTION_BACKWARD
                                : part == BRG__BACKWARD_INPUT ? BRG_INSTRUCTION_BACKWARD_INPUT
                                                              : BRG_INSTRUCTION_BACKWARD_WEIGHT;
    record(w, kind, BRG_TRACE_COMPUTE, mb, v->index, t1, t2);
    if (part & BRG__BACKWARD_INPUT) {
        v->mb[mb].backward_input_done = 1;
        if (v->index > 0 && !remote_prev(t, v)) BRG__CHECK(copy_backward(w, v, mb));
    }
    if (part & BRG__BACKWARD_WEIGHT) v->mb[mb].backward_done = 1;
    maybe_release(w, v, mb);
    return BRG_OK;
}

/* ---- the step's end: tied gradients, global norm, optimizer ---------------------------------- */

/* Whether pipeline rank `prank` holds a copy of the tied parameter. */
static int rank_holds(const brg_trainer *t, const tied_param *tp, int prank) {
    for (int c = 0; c < tp->n_consumers; c++)
        if (t->stages[tp->consumer_stage[c]].rank == prank) return 1;
    return 0;
}

static float *consumer_grad_of(const worker *w, const tied_param *tp, int c) {
    const brg__stage *st = w->vs[tp->consumer_stage[c]].st;
    return st->consumer_grad[(tp->consumer_op[c] - st->op_begin) * BRG__MAX_INPUTS + tp->consumer_input[c]];
}

/* Requests posted by one exchange, waited for together. */
typedef struct pending {
    brg__request *req;
    int peer, is_send;
} pending;

/* Waits for every request of an exchange; after the first failure the rest are cancelled. `what` names
 * the exchange in the message. */
static brg_status wait_exchange(worker *w, pending *list, int n, const char *what) {
    brg_status s = BRG_OK;
    for (int i = 0; i < n; i++) {
        if (s != BRG_OK) {
            w->tp->vt->cancel(w->tp, list[i].req);
            continue;
        }
        char msg[BRG_ERROR_MESSAGE_MAX] = "";
        double t0 = brg__now_seconds();
        s = w->tp->vt->wait(w->tp, list[i].req, msg);
        w->stats.wait_seconds += brg__now_seconds() - t0;
        if (s != BRG_OK)
            worker_fail(w, s, "rank %d: %s %s rank %d: %s", w->rank, list[i].is_send ? "sending" : "receiving", what,
                        list[i].peer, msg);
    }
    return s;
}

/* Every holder of a tied parameter sums all its consumers' gradients in op order. A send may complete
 * only once its receive is posted (NCCL always, MPI past the eager limit), so each rank posts every
 * receive of the exchange, then every send, and only then waits: no rank waits on a send while its peer
 * waits on one too. On NCCL the held posts go out as one group. */
static brg_status reduce_tied(worker *w) {
    brg_trainer *t = w->trainer;
    const brg_graph *g = t->graph;
    if (t->n_tied <= 0) return BRG_OK;
    size_t capacity = 0;
    for (int i = 0; i < t->n_tied; i++) capacity += (size_t)t->tied[i].n_consumers * (size_t)t->pp;
    pending *list = brg__calloc(capacity, sizeof *list);
    float ***parts = brg__calloc((size_t)t->n_tied, sizeof *parts);
    int n = 0;
    brg_status s = list && parts ? BRG_OK : worker_fail(w, BRG_ERR_OUT_OF_MEMORY, "out of memory reducing tied gradients");
    /* Receives: the others' consumers' gradients, into buffers of their own. */
    for (int i = 0; i < t->n_tied && s == BRG_OK; i++) {
        const tied_param *tp = &t->tied[i];
        if (!rank_holds(t, tp, w->prank)) continue;
        size_t bytes = (size_t)brg__tensor_numel(g->params[tp->param], 1) * sizeof(float);
        parts[i] = brg__calloc((size_t)tp->n_consumers, sizeof **parts);
        if (!parts[i]) s = worker_fail(w, BRG_ERR_OUT_OF_MEMORY, "out of memory reducing tied gradients");
        for (int c = 0; c < tp->n_consumers && s == BRG_OK; c++) {
            int from = peer_of(w, t->stages[tp->consumer_stage[c]].rank);
            if (from == w->rank) {
                parts[i][c] = consumer_grad_of(w, tp, c);
                continue;
            }
            parts[i][c] = w->be->vt->alloc(w->be, bytes);
            if (!parts[i][c]) {
                s = worker_fail(w, BRG_ERR_OUT_OF_MEMORY, "out of memory receiving tied gradients");
                break;
            }
            list[n] = (pending){NULL, from, 0};
            s = w->tp->vt->post_recv(w->tp, from, brg__transfer_tag(TAG_TIED, c, 0, tp->param), parts[i][c], bytes,
                                     &list[n].req);
            if (s == BRG_OK) n++;
            else worker_fail(w, s, "rank %d: posting the receive of tied gradients from rank %d failed: %s", w->rank, from, brg_status_string(s));
        }
    }
    /* Sends: each local consumer's gradient to every other rank holding the parameter. */
    for (int i = 0; i < t->n_tied && s == BRG_OK; i++) {
        const tied_param *tp = &t->tied[i];
        size_t bytes = (size_t)brg__tensor_numel(g->params[tp->param], 1) * sizeof(float);
        for (int c = 0; c < tp->n_consumers && s == BRG_OK; c++) {
            if (t->stages[tp->consumer_stage[c]].rank != w->prank) continue;
            for (int q = 0; q < t->pp && s == BRG_OK; q++) {
                if (q == w->prank || !rank_holds(t, tp, q)) continue;
                int r = peer_of(w, q);
                list[n] = (pending){NULL, r, 1};
                s = w->tp->vt->post_send(w->tp, r, brg__transfer_tag(TAG_TIED, c, 0, tp->param),
                                         consumer_grad_of(w, tp, c), bytes, &list[n].req);
                if (s == BRG_OK) n++;
                else worker_fail(w, s, "rank %d: posting tied gradients to rank %d failed: %s", w->rank, r, brg_status_string(s));
            }
        }
    }
    if (list) {
        brg_status waited = wait_exchange(w, list, n, "tied gradients");
        if (s == BRG_OK) s = waited;
    }
    /* The sum, in op order, into each local holder's gradient. */
    for (int i = 0; i < t->n_tied && parts; i++) {
        const tied_param *tp = &t->tied[i];
        if (!parts[i]) continue;
        int64_t count = brg__tensor_numel(g->params[tp->param], 1);
        size_t bytes = (size_t)count * sizeof(float);
        for (int k = 0; k < t->n_stages && s == BRG_OK; k++) {
            vstage *v = &w->vs[k];
            if (v->rank != w->prank || !v->st->param[tp->param]) continue;
            float *total = v->st->param_grad[tp->param];
            w->be->vt->copy(w->be, total, parts[i][0], bytes);
            for (int c = 1; c < tp->n_consumers; c++) w->be->vt->accumulate(w->be, total, parts[i][c], count);
        }
        for (int c = 0; c < tp->n_consumers; c++)
            if (t->stages[tp->consumer_stage[c]].rank != w->prank) w->be->vt->free(w->be, parts[i][c]);
        free(parts[i]);
    }
    free(parts);
    free(list);
    return s;
}

/* Tensor parallelism: each parameter's sum of squares over the group, in index order (a slice's from every
 * rank; a parameter every rank holds whole once, index 0's), so that every rank of the group, and of the
 * pipeline after the exchange below, adds the same figures. */
static brg_status tensor_group_squares(worker *w, double *host, size_t bytes) {
    brg_trainer *t = w->trainer;
    const brg_graph *g = t->graph;
    int64_t np = g->n_params;
    double *gathered = w->be->vt->alloc(w->be, (size_t)t->tp * bytes), *all = brg__malloc((size_t)t->tp * bytes);
    if (!gathered || !all) {
        w->be->vt->free(w->be, gathered);
        free(all);
        return worker_fail(w, BRG_ERR_OUT_OF_MEMORY, "out of memory summing gradient norms over the tensor-parallel group");
    }
    w->be->vt->upload(w->be, (unsigned char *)gathered + (size_t)w->tp_index * bytes, host, bytes);
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status s = brg__group_post(w->tp_group, BRG__ALLGATHER, gathered, (int64_t)t->tp * (int64_t)(bytes / sizeof(double)),
                                   sizeof(double), 0, msg);
    if (s == BRG_OK) s = brg__group_wait_all(w->tp_group, msg);
    if (s == BRG_OK) {
        w->be->vt->download(w->be, all, gathered, (size_t)t->tp * bytes);
        size_t stride = bytes / sizeof(double);
        for (int64_t p = 0; p < np; p++) {
            double sum = all[p];
            if (g->params[p]->slice.parts >= 2)
                for (int i = 1; i < t->tp; i++) sum += all[(size_t)i * stride + (size_t)p];
            host[p] = sum;
        }
    }
    w->be->vt->free(w->be, gathered);
    free(all);
    if (s != BRG_OK) return worker_fail(w, s, "rank %d: summing gradient norms over the tensor-parallel group: %s", w->rank, msg);
    return BRG_OK;
}

/* The global gradient norm: per parameter a sum of squares on its owner's rank, exchanged (through the
 * backend's memory, as every transfer goes), then added in parameter order on every rank, as one stage
 * adds them. */
static brg_status global_norm(worker *w, double *norm) {
    brg_trainer *t = w->trainer;
    const brg_graph *g = t->graph;
    int64_t np = g->n_params;
    double *host = &t->norm_partials[(size_t)w->rank * (size_t)(np + 1)];
    int zero = brg__dp_zero(w->dp);
    for (int64_t p = 0; p < np; p++) {
        int owner = t->param_owner[p];
        int mine = owner >= 0 && w->vs[owner].rank == w->prank;
        host[p] = !mine ? 0.0 : zero ? brg__dp_sum_squares(w->dp, p) : brg__stage_grad_sum_squares(w->vs[owner].st, p);
    }
    size_t bytes = (size_t)(np ? np : 1) * sizeof(double);
    if (w->tp_group) BRG__CHECK(tensor_group_squares(w, host, bytes));
    double *all = brg__malloc((size_t)t->pp * bytes);
    void *device = w->be->vt->alloc(w->be, (size_t)t->pp * bytes);
    if (!all || !device) {
        free(all);
        w->be->vt->free(w->be, device);
        return worker_fail(w, BRG_ERR_OUT_OF_MEMORY, "out of memory exchanging gradient norms");
    }
    unsigned char *slots = device; /* [pipeline rank] */
    w->be->vt->upload(w->be, slots + (size_t)w->prank * bytes, host, bytes);
    /* Every receive posted before any send is waited on (see reduce_tied). */
    pending *list = brg__calloc((size_t)(2 * t->pp), sizeof *list);
    int n = 0;
    brg_status s = list ? BRG_OK : worker_fail(w, BRG_ERR_OUT_OF_MEMORY, "out of memory exchanging gradient norms");
    for (int q = 0; q < t->pp && s == BRG_OK; q++) {
        if (q == w->prank) continue;
        int r = peer_of(w, q);
        list[n] = (pending){NULL, r, 0};
        s = w->tp->vt->post_recv(w->tp, r, brg__transfer_tag(TAG_NORM, 0, 0, 0), slots + (size_t)q * bytes, bytes,
                                 &list[n].req);
        if (s == BRG_OK) n++;
        else worker_fail(w, s, "rank %d: posting the receive of norm partials from rank %d failed: %s", w->rank, r, brg_status_string(s));
    }
    for (int q = 0; q < t->pp && s == BRG_OK; q++) {
        if (q == w->prank) continue;
        int r = peer_of(w, q);
        list[n] = (pending){NULL, r, 1};
        s = w->tp->vt->post_send(w->tp, r, brg__transfer_tag(TAG_NORM, 0, 0, 0), slots + (size_t)w->prank * bytes, bytes,
                                 &list[n].req);
        if (s == BRG_OK) n++;
        else worker_fail(w, s, "rank %d: posting norm partials to rank %d failed: %s", w->rank, r, brg_status_string(s));
    }
    if (list) {
        brg_status waited = wait_exchange(w, list, n, "norm partials");
        if (s == BRG_OK) s = waited;
    }
    free(list);
    if (s == BRG_OK) w->be->vt->download(w->be, all, device, (size_t)t->pp * bytes);
    double squares = 0.0;
    for (int64_t p = 0; p < np && s == BRG_OK; p++) {
        int owner = t->param_owner[p];
        if (owner >= 0) squares += all[(size_t)t->stages[owner].rank * (size_t)(np ? np : 1) + (size_t)p];
    }
    free(all);
    w->be->vt->free(w->be, device);
    *norm = sqrt(squares);
    return s;
}

double brg_lr_at(const brg_train_options *o, int64_t step) {
    if (!o) return 0.0;
    double lr = o->lr, min = o->min_lr;
    if (o->warmup_steps > 0 && step <= o->warmup_steps) return lr * (double)step / (double)o->warmup_steps;
    if (o->lr_schedule == BRG_LR_CONSTANT) return lr;
    double span = (double)(o->total_steps - o->warmup_steps);
    double progress = span > 0 ? (double)(step - o->warmup_steps) / span : 1.0;
    if (progress > 1.0) progress = 1.0;
    if (progress < 0.0) progress = 0.0;
    if (o->lr_schedule == BRG_LR_COSINE) return min + 0.5 * (lr - min) * (1.0 + cos(M_PI * progress));
    return min + (lr - min) * (1.0 - progress);
}

/* Data parallelism, after backward: the tied parameters' sums across stages, then every bucket's sum
 * across replicas (the last posted now, the others long since), waited for. */
static brg_status reduce_replicas(worker *w) {
    double t0 = brg__now_seconds();
    if (w->replica == w->trainer->inject_replica) /* its buckets are on their way: the others wait on them */
        return worker_fail(w, BRG_ERR_BACKEND, "rank %d (stage %d, replica %d): injected failure while summing gradients",
                           w->rank, w->prank, w->replica);
    BRG__CHECK(reduce_tied(w));
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    double t1 = brg__now_seconds();
    brg_status s = brg__dp_reduce(w->dp, msg);
    if (s == BRG_OK && brg__dp_zero(w->dp)) s = brg__dp_norm_partials(w->dp, msg);
    double t2 = brg__now_seconds();
    w->stats.allreduce_wait_seconds += t2 - t1;
    w->stats.wait_seconds += t2 - t1;
    w->stats.transfer_seconds += t1 - t0;
    record(w, BRG_INSTRUCTION_ALLREDUCE_GRADS, BRG_TRACE_TRANSFER, -1, -1, t1, t2);
    if (s != BRG_OK) return worker_fail(w, s, "rank %d (stage %d, replica %d): summing gradients across replicas: %s",
                                        w->rank, w->prank, w->replica, msg);
    return BRG_OK;
}

/* The last stage's losses of the step, one copy to the host for every micro-batch, checked before any
 * update: a non-finite one stops the step, naming the first micro-batch that has it. */
static brg_status read_losses(worker *w) {
    brg_trainer *t = w->trainer;
    vstage *v = &w->vs[t->n_stages - 1];
    if (v->rank != w->prank || !v->st) return BRG_OK;
    brg_status s = brg__stage_loss_sums(v->st, (int)t->opts.micro_batches, v->loss_sums);
    if (s != BRG_OK) return worker_fail(w, s, "stage %d: %s", v->index, v->st->msg);
    for (int64_t j = 0; j < t->opts.micro_batches; j++)
        if (!isfinite(v->loss_sums[j]))
            return worker_fail(w, BRG_ERR_NUMERICAL,
                               "stage %d, micro-batch %lld, forward: the loss is %s (this step's ops were not "
                               "scanned: nan_check_every 1, or --nan-check 1, names the op where it first appears)",
                               v->index, (long long)j, nonfinite_name(v->loss_sums[j]));
    return BRG_OK;
}

static brg_status run_optimizer(worker *w, double *norm_out) {
    brg_trainer *t = w->trainer;
    double t0 = brg__now_seconds();
    BRG__CHECK(read_losses(w));
    if (!w->dp) {
        for (int k = 0; k < t->n_stages; k++)
            if (w->vs[k].rank == w->prank) brg__stage_reduce_grads(w->vs[k].st);
        BRG__CHECK(reduce_tied(w));
        for (int k = 0; k < t->n_stages && w->tp_group; k++) /* sequence parallelism: shares' gradients summed */
            if (w->vs[k].rank == w->prank) {
                brg_status s = brg__stage_sum_partial_grads(w->vs[k].st, -1);
                if (s != BRG_OK) return worker_fail(w, s, "rank %d: %s", w->rank, w->vs[k].st->msg);
            }
    } /* else reduce_replicas did it, at ALLREDUCE_GRADS (the shares' sums as each gradient was final) */
    double norm = 0.0;
    BRG__CHECK(global_norm(w, &norm));
    if (!isfinite(norm)) /* every rank adds the same partials: all stop here, none steps */
        return worker_fail(w, BRG_ERR_NUMERICAL,
                           "rank %d: the global gradient norm is %s: no optimizer step was taken (the parameters are "
                           "as before this step); nan_check_every 1, or --nan-check 1, names the op where it first "
                           "appears",
                           w->rank, nonfinite_name(norm));
    float scale = 1.0f;
    if (t->opts.grad_clip > 0.0f && norm > t->opts.grad_clip) scale = (float)(t->opts.grad_clip / norm);
    const brg_train_options *o = &t->opts;
    float lr = (float)brg_lr_at(o, t->steps_done + 1);
    if (brg__dp_zero(w->dp)) {
        char msg[BRG_ERROR_MESSAGE_MAX] = "";
        brg_status s = brg__dp_optimizer_step(w->dp, scale, lr, o->beta1, o->beta2, o->eps, o->weight_decay,
                                              (int)t->steps_done + 1, msg);
        if (s != BRG_OK) return worker_fail(w, s, "rank %d (stage %d, replica %d): ZeRO-1 optimizer step: %s", w->rank,
                                            w->prank, w->replica, msg);
    } else {
        for (int k = 0; k < t->n_stages; k++)
            if (w->vs[k].rank == w->prank)
                brg__stage_optimizer_step(w->vs[k].st, scale, lr, o->beta1, o->beta2, o->eps, o->weight_decay,
                                          (int)t->steps_done + 1);
    }
    /* The optimizer's entries return nothing: a fault in them is the backend's kept error. */
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status kept = w->be->vt->status ? w->be->vt->status(w->be, msg) : BRG_OK;
    if (kept == BRG_OK && w->rank == t->inject_optimizer_rank)
        kept = brg__message_set(msg, sizeof msg, BRG_ERR_BACKEND, "injected fault in an optimizer kernel");
    if (kept != BRG_OK) return worker_fail(w, kept, "rank %d: after the optimizer step: %s", w->rank, msg);
    double t1 = brg__now_seconds();
    w->stats.compute_seconds += t1 - t0;
    record(w, BRG_INSTRUCTION_OPTIMIZER_STEP, BRG_TRACE_COMPUTE, -1, -1, t0, t1);
    *norm_out = norm;
    return BRG_OK;
}

static brg_status execute(worker *w, const brg_instruction *in, double *norm) {
    brg_trainer *t = w->trainer;
    vstage *v = in->stage >= 0 ? &w->vs[in->stage] : NULL;
    int mb = in->micro_batch;
    double t0 = brg__now_seconds();
    brg_status s = BRG_OK;
    switch (in->kind) {
    case BRG_INSTRUCTION_LOAD_BATCH:
        s = load_inputs(w, v, mb);
        record(w, in->kind, BRG_TRACE_COMPUTE, mb, v->index, t0, brg__now_seconds());
        return s;
    case BRG_INSTRUCTION_RECV_ACTIVATION:
        BRG__CHECK(acquire(w, v, mb));
        return post_recvs(w, v, mb, 0, in->peer);
    case BRG_INSTRUCTION_RECV_GRAD:
        s = brg__stage_acquire_grads(v->st, mb);
        if (s != BRG_OK) return worker_fail(w, s, "%s", v->st->msg);
        return post_recvs(w, v, mb, 1, in->peer);
    case BRG_INSTRUCTION_FORWARD:
        if (v->st->n_inputs && v->index != 0 && v->index != t->n_stages - 1) BRG__CHECK(load_inputs(w, v, mb));
        return run_forward(w, v, mb);
    case BRG_INSTRUCTION_SEND_ACTIVATION:
        s = send_tensors(w, v, mb, 0, in->peer);
        w->stats.transfer_seconds += brg__now_seconds() - t0;
        record(w, in->kind, BRG_TRACE_TRANSFER, mb, v->index, t0, brg__now_seconds());
        v->mb[mb].activations_sent = 1;
        maybe_drop(w, v, mb);
        return s;
    case BRG_INSTRUCTION_SEND_GRAD:
        s = send_tensors(w, v, mb, 1, in->peer);
        w->stats.transfer_seconds += brg__now_seconds() - t0;
        record(w, in->kind, BRG_TRACE_TRANSFER, mb, v->index, t0, brg__now_seconds());
        v->mb[mb].grads_sent = 1;
        maybe_release(w, v, mb);
        return s;
    case BRG_INSTRUCTION_BACKWARD:
        return run_backward(w, v, mb, BRG__BACKWARD_FULL);
    case BRG_INSTRUCTION_BACKWARD_INPUT:
        return run_backward(w, v, mb, BRG__BACKWARD_INPUT);
    case BRG_INSTRUCTION_BACKWARD_WEIGHT:
        return run_backward(w, v, mb, BRG__BACKWARD_WEIGHT);
    case BRG_INSTRUCTION_ALLREDUCE_GRADS:
        if (!w->dp) return worker_fail(w, BRG_ERR_INTERNAL, "rank %d: a gradient all-reduce with one replica", w->rank);
        return reduce_replicas(w);
    case BRG_INSTRUCTION_OPTIMIZER_STEP:
        return run_optimizer(w, norm);
    case BRG_INSTRUCTION_KIND_COUNT:
        break;
    }
    return worker_fail(w, BRG_ERR_INTERNAL, "rank %d: unknown instruction kind %d", w->rank, (int)in->kind);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    brg_trainer *t = w->trainer;
    brg__cpu_set_threads(t->threads_per_rank);
    int64_t n = 0;
    const brg_instruction *stream = brg_schedule_stream(t->schedule, w->prank, &n);
    double norm = 0.0;
    for (int64_t i = 0; i < n && w->status == BRG_OK; i++) {
        if (execute(w, &stream[i], &norm) != BRG_OK) break;
        char msg[BRG_ERROR_MESSAGE_MAX] = "";
        brg_status s = w->dp ? brg__dp_progress(w->dp, msg) : BRG_OK; /* the buckets move between instructions */
        if (s != BRG_OK)
            worker_fail(w, s, "rank %d (stage %d, replica %d): summing gradients across replicas: %s", w->rank, w->prank,
                        w->replica, msg);
    }
    if (w->status != BRG_OK) w->tp->vt->stop_all(w->tp, w->status);
    t->norm_partials[(size_t)w->rank * (size_t)(t->graph->n_params + 1) + (size_t)t->graph->n_params] = norm;
    return NULL;
}

/* ---- evaluation: forward passes only ---------------------------------------------------------- */

static const worker *failed_worker(const brg_trainer *t);

/* Runs fn for every rank of this process: in the calling thread when there is one, else a thread each. */
static void run_workers(brg_trainer *t, void *(*fn)(void *)) {
    if (t->local_end - t->local_begin == 1) {
        fn(&t->workers[t->local_begin]);
        return;
    }
    int started = 0;
    for (int r = t->local_begin; r < t->local_end; r++, started++)
        if (pthread_create(&t->workers[r].thread, NULL, fn, &t->workers[r]) != 0) {
            worker_fail(&t->workers[r], BRG_ERR_INTERNAL, "could not start the thread of rank %d", r);
            t->workers[r].tp->vt->stop_all(t->workers[r].tp, BRG_ERR_INTERNAL);
            break;
        }
    for (int r = t->local_begin; r < t->local_begin + started; r++) pthread_join(t->workers[r].thread, NULL);
}

/* Micro-batch after micro-batch, each through every virtual stage in order (a rank waits for its
 * input, runs the forward, hands the outputs on), in slot 0, released at once: no pipelining, no
 * gradients, the parameters untouched. Every rank visits (micro-batch, stage) in the same global
 * order, so receives are posted before the sends they meet wait. */
static void *eval_main(void *arg) {
    worker *w = arg;
    brg_trainer *t = w->trainer;
    brg__cpu_set_threads(t->threads_per_rank);
    for (int64_t j = w->replica; j < t->eval_batches && w->status == BRG_OK; j += t->dp) /* replicas share the batches */
        for (int k = 0; k < t->n_stages && w->status == BRG_OK; k++) {
            vstage *v = &w->vs[k];
            if (v->rank != w->prank) continue;
            brg__stage *st = v->st;
            char msg[BRG_ERROR_MESSAGE_MAX] = "";
            brg_status s = brg__stage_acquire(st, 0);
            if (s != BRG_OK) {
                worker_fail(w, s, "%s", st->msg);
                break;
            }
            uint16_t mb = (uint16_t)(j & 0xffff);
            if (remote_prev(t, v))
                for (int64_t q = 0; q < st->n_recv && s == BRG_OK; q++) {
                    const brg_tensor *x = t->graph->tensors[st->recv[q]];
                    brg__request *req = NULL;
                    s = w->tp->vt->post_recv(w->tp, peer_of(w, v[-1].rank), brg__transfer_tag(TAG_EVAL, k - 1, mb, x->index),
                                             st->acts[0][x->index], brg__stage_tensor_bytes(st, x), &req);
                    if (s == BRG_OK) s = w->tp->vt->wait(w->tp, req, msg);
                    if (s != BRG_OK) worker_fail(w, s, "rank %d: evaluation: receiving from rank %d: %s", w->rank,
                                                 peer_of(w, v[-1].rank), msg[0] ? msg : brg_status_string(s));
                }
            else if (k > 0)
                for (int64_t q = 0; q < st->n_recv; q++) { /* the previous stage is on this rank: in its slot 0 */
                    int64_t x = st->recv[q];
                    w->be->vt->copy(w->be, st->acts[0][x], v[-1].st->acts[0][x],
                                    brg__stage_tensor_bytes(st, t->graph->tensors[x]));
                }
            if (s == BRG_OK) s = upload_samples(w, v, 0, j * t->opts.micro_batch);
            if (s == BRG_OK && (s = brg__stage_forward(st, 0)) != BRG_OK)
                worker_fail(w, s, "stage %d, evaluation batch %lld: %s", k, (long long)j, st->msg);
            double sum = 0.0;
            if (s == BRG_OK && k == t->n_stages - 1) {
                if ((s = brg__stage_loss_sum(st, 0, &sum)) == BRG_OK && w->tp_index == 0) /* the group's ranks agree */
                    t->eval_sums[j] = sum;
                else
                    worker_fail(w, s, "stage %d, evaluation batch %lld: %s", k, (long long)j, st->msg);
            }
            if (s == BRG_OK && remote_next(t, v))
                for (int64_t q = 0; q < st->n_send && s == BRG_OK; q++) {
                    const brg_tensor *x = t->graph->tensors[st->send[q]];
                    brg__request *req = NULL;
                    s = w->tp->vt->post_send(w->tp, peer_of(w, v[1].rank), brg__transfer_tag(TAG_EVAL, k, mb, x->index),
                                             st->acts[0][x->index], brg__stage_tensor_bytes(st, x), &req);
                    if (s == BRG_OK) s = w->tp->vt->wait(w->tp, req, msg);
                    if (s != BRG_OK) worker_fail(w, s, "rank %d: evaluation: sending to rank %d: %s", w->rank,
                                                 peer_of(w, v[1].rank), msg[0] ? msg : brg_status_string(s));
                }
            /* The next stage on this rank copies from slot 0 first; release the one before. */
            if (k > 0 && v[-1].rank == w->prank) brg__stage_release(v[-1].st, 0);
            if (k + 1 == t->n_stages || v[1].rank != w->prank || s != BRG_OK) brg__stage_release(st, 0);
        }
    if (w->status != BRG_OK) w->tp->vt->stop_all(w->tp, w->status);
    return NULL;
}

brg_status brg_trainer_evaluate(brg_trainer *t, brg_data *data, int64_t batches, double *loss) {
    if (!t || !data || !loss || batches < 1) return BRG_ERR_INVALID_ARGUMENT;
    if (t->status != BRG_OK) return t->status;
    if (brg_data_seq(data) != t->seq)
        return trainer_fail(t, BRG_ERR_INVALID_ARGUMENT, "the evaluation data has sequences of %lld tokens, the model %lld",
                            (long long)brg_data_seq(data), (long long)t->seq);
    t->eval_batches = batches;
    free(t->eval_sums);
    t->eval_sums = brg__calloc((size_t)batches, sizeof *t->eval_sums);
    if (!t->eval_sums) return trainer_fail(t, BRG_ERR_OUT_OF_MEMORY, "evaluation: out of memory");
    for (int r = t->local_begin; r < t->local_end; r++) {
        worker *w = &t->workers[r];
        w->data = data;
        w->status = BRG_OK;
        w->msg[0] = '\0';
    }
    run_workers(t, eval_main);
    const worker *bad = failed_worker(t);
    if (bad) return trainer_fail(t, bad->status, "evaluation: %s", bad->msg);
    if (t->mpi) { /* each batch's sum from the last stage that ran it, to every rank */
        double *all = brg__calloc((size_t)t->ranks * (size_t)batches, sizeof *all);
        char msg[BRG_ERROR_MESSAGE_MAX] = "";
        brg_status s = all ? brg__exchange_allgather(t->mpi, brg__transfer_tag(TAG_EVAL, 0xffff, 0, 0), t->eval_sums, all,
                                                     (size_t)batches * sizeof *all, msg)
                           : BRG_ERR_OUT_OF_MEMORY;
        for (int64_t j = 0; j < batches && s == BRG_OK; j++)
            t->eval_sums[j] = all[(size_t)rank_of(t, copy_of(t, (int)(j % t->dp), 0), t->pp - 1) * (size_t)batches + (size_t)j];
        free(all);
        if (s != BRG_OK) return trainer_fail(t, s, "evaluation: %s", msg);
    }
    double sum = 0.0;
    for (int64_t j = 0; j < batches; j++) sum += t->eval_sums[j]; /* in batch order, however many replicas */
    *loss = sum / ((double)batches * (double)t->opts.micro_batch * (double)t->seq);
    return BRG_OK;
}

/* ---- the step -------------------------------------------------------------------------------- */

static void reset_step_state(brg_trainer *t, brg_data *data, double start) {
    int64_t every = t->opts.nan_check_every;
    int check = every > 0 && t->steps_done % every == 0;
    for (int k = 0; k < t->n_stages * t->copies; k++) {
        vstage *v = &t->stages[k];
        if (!v->st) continue;
        v->st->check_finite = check;
        v->st->poison_slot = k == t->inject_nan_stage ? t->inject_nan_micro_batch : -1; /* replica 0's */
        for (int64_t j = 0; j < t->opts.micro_batches; j++) {
            mb_state *m = &v->mb[j];
            m->forward_done = m->activations_sent = m->backward_input_done = m->backward_done = m->grads_sent = 0;
            v->loss_sums[j] = 0.0;
        }
        brg__stage_zero_grads(v->st);
    }
    for (int r = t->local_begin; r < t->local_end; r++) {
        worker *w = &t->workers[r];
        w->data = data;
        w->status = BRG_OK;
        w->msg[0] = '\0';
        memset(&w->stats, 0, sizeof w->stats);
        w->in_flight = 0;
        w->n_events = 0;
        w->step_start = start;
        w->be->vt->reset_peak(w->be);
        w->held_at_start = w->be->vt->allocated(w->be);
        if (w->dp) brg__dp_begin_step(w->dp);
    }
}

/* Frees the receives a failed step posted but never waited for. */
static void cancel_pending(brg_trainer *t) {
    for (int k = 0; k < t->n_stages * t->copies; k++) {
        vstage *v = &t->stages[k];
        if (!v->st) continue;
        brg__transport *tp = t->workers[v->grank].tp;
        for (int64_t j = 0; j < t->opts.micro_batches; j++) {
            for (int64_t q = 0; q < v->st->n_recv; q++)
                if (v->mb[j].act_reqs[q]) tp->vt->cancel(tp, v->mb[j].act_reqs[q]);
            for (int64_t q = 0; q < v->st->n_send; q++)
                if (v->mb[j].grad_reqs[q]) tp->vt->cancel(tp, v->mb[j].grad_reqs[q]);
            memset(v->mb[j].act_reqs, 0, (size_t)v->st->n_recv * sizeof *v->mb[j].act_reqs);
            memset(v->mb[j].grad_reqs, 0, (size_t)v->st->n_send * sizeof *v->mb[j].grad_reqs);
        }
    }
}

/* The origin of a failure: the first worker whose error is not the echo of another's. */
static const worker *failed_worker(const brg_trainer *t) {
    const worker *echo = NULL;
    for (int r = t->local_begin; r < t->local_end; r++) {
        const worker *w = &t->workers[r];
        if (w->status == BRG_OK) continue;
        if (w->status != BRG_ERR_CANCELLED) return w;
        if (!echo) echo = w;
    }
    return echo;
}

/* The AdamW moments a rank holds: its stages' (those not sharded) and its ZeRO-1 parts. */
static int64_t rank_moment_bytes(const brg_trainer *t, const worker *w) {
    int64_t bytes = brg__dp_zero(w->dp) ? brg__dp_moment_bytes(w->dp) : 0;
    for (int k = 0; k < t->n_stages; k++) {
        const brg__stage *st = w->vs[k].st;
        if (w->vs[k].rank != w->prank || !st) continue;
        for (int64_t p = 0; p < t->graph->n_params; p++)
            if (st->adam_m[p]) bytes += 2 * brg__tensor_numel(t->graph->params[p], 1) * (int64_t)sizeof(float);
    }
    return bytes;
}

/* What each rank tells the others at the end of a step (MPI hosting). */
typedef struct rank_summary {
    brg_rank_stats stats;
    double loss_sum; /* the last rank's: the step's summed loss */
    int64_t allocated;
} rank_summary;

/* MPI hosting: every rank's figures of the step, and the loss, to every rank. */
static brg_status share_summaries(brg_trainer *t, double local_loss, double *loss_sum) {
    rank_summary mine = {t->workers[t->mpi->rank].stats, local_loss, 0}, *all = brg__calloc((size_t)t->ranks, sizeof mine);
    if (!all) return trainer_fail(t, BRG_ERR_OUT_OF_MEMORY, "step %lld: out of memory", (long long)t->steps_done + 1);
    worker *me = &t->workers[t->mpi->rank];
    mine.allocated = me->be->vt->allocated(me->be);
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status s = brg__exchange_allgather(t->mpi, brg__transfer_tag(TAG_SUMMARY, 0, 0, 0), &mine, all, sizeof mine, msg);
    if (s == BRG_OK) {
        for (int r = 0; r < t->ranks; r++) {
            if (r != t->mpi->rank) t->workers[r].stats = all[r].stats;
            t->rank_bytes[r] = all[r].allocated;
        }
        *loss_sum = 0.0; /* the replicas' last stages, in replica order */
        for (int d = 0; d < t->dp; d++) *loss_sum += all[rank_of(t, copy_of(t, d, 0), t->pp - 1)].loss_sum;
    }
    free(all);
    return s == BRG_OK ? BRG_OK : trainer_fail(t, s, "step %lld: %s", (long long)t->steps_done + 1, msg);
}

brg_status brg_trainer_step(brg_trainer *t, brg_data *data, brg_step_stats *stats) {
    if (!t || !data) return BRG_ERR_INVALID_ARGUMENT;
    if (t->status != BRG_OK) return t->status;
    if (brg_data_seq(data) != t->seq)
        return trainer_fail(t, BRG_ERR_INVALID_ARGUMENT, "the data has sequences of %lld tokens, the model %lld",
                            (long long)brg_data_seq(data), (long long)t->seq);
    double start = brg__now_seconds();
    reset_step_state(t, data, start);
    t->trace_ready = 0;
    run_workers(t, worker_main);
    double seconds = brg__now_seconds() - start;
    const worker *bad = failed_worker(t);
    if (bad) cancel_pending(t);
    if (bad) return trainer_fail(t, bad->status, "step %lld: %s", (long long)t->steps_done + 1, bad->msg);
    for (int r = t->local_begin; r < t->local_end; r++) {
        worker *w = &t->workers[r];
        w->stats.bubble = seconds > 0 ? 1.0 - w->stats.compute_seconds / seconds : 0.0;
        if (w->stats.bubble < 0) w->stats.bubble = 0;
        w->stats.peak_bytes = w->be->vt->peak(w->be);
        w->stats.activation_peak_bytes = w->stats.peak_bytes - w->held_at_start;
        w->stats.stage = w->prank;
        w->stats.replica = w->replica;
        w->stats.tensor_index = w->tp_index;
        w->stats.moment_bytes = rank_moment_bytes(t, w);
    }
    double loss_sum = 0.0;
    for (int d = 0; d < t->dp; d++) { /* every rank of a tensor-parallel group has the same loss: index 0's */
        const vstage *last = &t->stages[(size_t)copy_of(t, d, 0) * (size_t)t->n_stages + (size_t)t->n_stages - 1];
        double replica_sum = 0.0;
        for (int64_t j = 0; last->st && j < t->opts.micro_batches; j++) replica_sum += last->loss_sums[j];
        loss_sum += replica_sum;
    }
    if (t->mpi) BRG__CHECK(share_summaries(t, loss_sum, &loss_sum));
    t->steps_done++;
    t->next_sample += brg__trainer_step_samples(t);
    t->trace_ready = t->opts.record_trace;
    int64_t tokens = brg__trainer_step_samples(t) * t->seq;
    double loss = loss_sum / (double)tokens;
    if (!isfinite(loss))
        return trainer_fail(t, BRG_ERR_NUMERICAL, "step %lld: the loss is %s (diverged; lower the learning rate)",
                            (long long)t->steps_done, nonfinite_name(loss));
    double idle = 0.0;
    int64_t peak = 0;
    for (int r = 0; r < t->ranks; r++) {
        const worker *w = &t->workers[r];
        idle += seconds - w->stats.compute_seconds;
        peak += w->stats.peak_bytes;
    }
    if (stats) {
        stats->step = t->steps_done;
        stats->loss = loss;
        stats->lr = brg_lr_at(&t->opts, t->steps_done);
        stats->grad_norm = t->norm_partials[(size_t)t->local_begin * (size_t)(t->graph->n_params + 1) + (size_t)t->graph->n_params];
        stats->tokens = tokens;
        stats->seconds = seconds;
        stats->tokens_per_second = seconds > 0 ? (double)tokens / seconds : 0.0;
        stats->peak_bytes = peak;
        stats->bubble = seconds > 0 ? fmax(0.0, idle / ((double)t->ranks * seconds)) : 0.0;
    }
    return BRG_OK;
}

/* ---- queries --------------------------------------------------------------------------------- */

brg_status brg_trainer_rank_stats(const brg_trainer *t, int rank, brg_rank_stats *out) {
    if (!t || !out) return BRG_ERR_INVALID_ARGUMENT;
    if (rank < 0 || rank >= t->ranks) return BRG_ERR_NOT_FOUND;
    *out = t->workers[rank].stats;
    return BRG_OK;
}

int brg_trainer_rank_count(const brg_trainer *t) { return t ? t->ranks : 0; }

int brg__trainer_replicas(const brg_trainer *t) { return t ? t->dp : 0; }

brg_status brg_trainer_split(const brg_trainer *t, int *first_layers, int capacity, int *count) {
    if (!t || !count || (!first_layers && capacity > 0)) return BRG_ERR_INVALID_ARGUMENT;
    *count = t->n_stages;
    if (capacity < t->n_stages) return BRG_ERR_INVALID_ARGUMENT;
    for (int k = 0; k < t->n_stages; k++) first_layers[k] = t->stages[k].first_layer;
    return BRG_OK;
}

/* MPI hosting: every rank's events to rank 0, in rank order (*all and *total on rank 0 only). */
static brg_status gather_events(const brg_trainer *t, brg_trace_event **all, int64_t *total, char *msg) {
    brg__transport *tp = t->mpi;
    const worker *me = &t->workers[tp->rank];
    int64_t *counts = brg__calloc((size_t)t->ranks, sizeof *counts);
    if (!counts) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    uint64_t tag = brg__transfer_tag(TAG_TRACE, 0, 0, 0);
    brg_status s = brg__exchange_gather(tp, tag, &me->n_events, counts, sizeof *counts, msg);
    if (s == BRG_OK && tp->rank != 0) {
        brg__request *req = NULL;
        s = tp->vt->post_send(tp, 0, tag, me->events, (size_t)me->n_events * sizeof *me->events, &req);
        if (s == BRG_OK) s = tp->vt->wait(tp, req, msg);
    } else if (s == BRG_OK) {
        int64_t n = 0;
        for (int r = 0; r < t->ranks; r++) n += counts[r];
        *all = brg__malloc((size_t)(n ? n : 1) * sizeof **all);
        if (!*all) s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        memcpy(*all, me->events, (size_t)me->n_events * sizeof **all);
        *total = me->n_events;
        for (int r = 1; r < t->ranks && s == BRG_OK; r++) {
            brg__request *req = NULL;
            s = tp->vt->post_recv(tp, r, tag, *all + *total, (size_t)counts[r] * sizeof **all, &req);
            if (s == BRG_OK) s = tp->vt->wait(tp, req, msg);
            *total += counts[r];
        }
    }
    free(counts);
    return s;
}

brg_status brg_trainer_write_trace(const brg_trainer *t, const char *path, brg_error *err) {
    if (!t || !path) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_trainer_write_trace: NULL argument");
    if (!t->trace_ready)
        return brg__error_set(err, BRG_ERR_INVALID_USAGE,
                              "no timeline to write: set record_trace and run a step first");
    brg_trace_event *all = NULL;
    int64_t n = 0;
    if (t->mpi) {
        char msg[BRG_ERROR_MESSAGE_MAX] = "";
        brg_status s = gather_events(t, &all, &n, msg);
        if (s != BRG_OK) {
            free(all);
            return brg__error_set(err, s, "gathering the ranks' timelines: %s", msg);
        }
        if (t->mpi->rank != 0) return BRG_OK; /* rank 0 writes the merged file */
    } else {
        int64_t total = 0;
        for (int r = 0; r < t->ranks; r++) total += t->workers[r].n_events;
        all = brg__malloc((size_t)(total ? total : 1) * sizeof *all);
        if (!all) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        for (int r = 0; r < t->ranks; r++) {
            memcpy(all + n, t->workers[r].events, (size_t)t->workers[r].n_events * sizeof *all);
            n += t->workers[r].n_events;
        }
    }
    brg_status s = brg_trace_write(path, all, n, "stage", err);
    free(all);
    return s;
}

static int compare_names(const void *a, const void *b) {
    return strcmp((*(const brg_tensor *const *)a)->name, (*(const brg_tensor *const *)b)->name);
}

/* Parameter p as held by its owner stage in copy c, when this process runs that stage. */
static const vstage *owner_stage(const brg_trainer *t, int64_t p, int copy) {
    int owner = t->param_owner[p];
    if (owner < 0) return NULL;
    const vstage *v = &t->stages[(size_t)copy * (size_t)t->n_stages + (size_t)owner];
    return is_local(t, v->grank) ? v : NULL;
}

static const float *param_copy_of(const brg_trainer *t, int64_t p, int copy, brg__backend **be) {
    const vstage *v = owner_stage(t, p, copy);
    if (!v) return NULL;
    *be = t->workers[v->grank].be;
    return v->st->param[p];
}

/* The owner copy of the first replica this process runs it for (index 0 of a tensor-parallel group). */
static const float *param_copy(const brg_trainer *t, int64_t p, brg__backend **be) {
    for (int d = 0; d < t->dp; d++) {
        const float *x = param_copy_of(t, p, copy_of(t, d, 0), be);
        if (x) return x;
    }
    return NULL;
}

/* Each parameter's hash (of its bytes: a tensor-parallel rank's slice) in each copy ([copy][param]), by its
 * owner's process; 0 for parameters owned elsewhere or read by no op. */
static brg_status local_param_hashes(const brg_trainer *t, uint64_t *hashes) {
    const brg_graph *g = t->graph;
    for (int64_t i = 0; i < (int64_t)t->copies * g->n_params; i++) {
        int64_t p = i % g->n_params;
        uint64_t *h = hashes + (i - p);
        brg__backend *be = NULL;
        const float *src = param_copy_of(t, p, (int)(i / g->n_params), &be);
        h[p] = 0;
        if (!src) continue;
        int64_t n = brg__tensor_numel(g->params[p], 1);
        float *host = brg__malloc((size_t)n * sizeof(float));
        if (!host) return BRG_ERR_OUT_OF_MEMORY;
        be->vt->download(be, host, src, (size_t)n * sizeof(float));
        h[p] = brg__fnv1a(BRG__FNV_OFFSET, host, (size_t)n * sizeof(float));
        free(host);
    }
    return BRG_OK;
}

/* Whether every replica's parameters hash alike (h: [copy][param], np per copy), each slice against the same
 * slice of replica 0, and whether a tensor-parallel group's ranks hold alike what each holds whole; names
 * the first that differs in the trainer's error. */
static brg_status check_replicas(const brg_trainer *t, const uint64_t *h, size_t np) {
    for (int c = 1; c < t->copies; c++)
        for (int64_t p = 0; p < t->graph->n_params; p++) {
            int d = c / t->tp, i = c % t->tp, whole = t->graph->params[p]->slice.parts < 2;
            size_t against = (size_t)(d == 0 ? copy_of(t, 0, 0) : copy_of(t, 0, i)) * np + (size_t)p;
            if (d == 0 && !whole) continue; /* replica 0's slices: nothing to compare with */
            if (h[(size_t)c * np + (size_t)p] != h[against])
                return trainer_fail((brg_trainer *)t, BRG_ERR_INTERNAL,
                                    "replica %d's parameter '%s'%s differs from %s: the %s diverged", d,
                                    t->graph->params[p]->name, t->tp > 1 ? " (tensor-parallel index)" : "",
                                    d == 0 ? "index 0's" : "replica 0's", d == 0 ? "tensor-parallel ranks" : "replicas");
        }
    return BRG_OK;
}

/* Tensor parallelism: each parameter's hash of the whole model's bytes, assembled from replica 0's slices
 * (threads: straight from the ranks; MPI: gathered on rank 0, one parameter at a time), into whole[param]
 * on rank 0. Collective under MPI. */
static brg_status whole_param_hashes(const brg_trainer *t, uint64_t *whole, char *msg) {
    const brg_graph *g = t->graph;
    brg_status s = BRG_OK;
    for (int64_t p = 0; p < g->n_params; p++) {
        const brg_tensor *x = g->params[p];
        int64_t n = brg__tensor_numel(x, 1), wn = brg__slice_whole_numel(x);
        size_t bytes = (size_t)n * sizeof(float);
        int gathering = t->mpi != NULL, root = !t->mpi || t->mpi->rank == 0;
        float *slice = brg__malloc(bytes), *assembled = root ? brg__malloc((size_t)wn * sizeof(float)) : NULL;
        float *all = gathering && root ? brg__malloc((size_t)t->ranks * bytes) : NULL;
        if (!slice || (root && !assembled) || (gathering && root && !all))
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory assembling '%s'", x->name);
        int owner = t->param_owner[p];
        for (int i = 0; i < t->tp && s == BRG_OK && owner >= 0; i++) {
            brg__backend *be = NULL;
            const float *src = param_copy_of(t, p, copy_of(t, 0, i), &be);
            if (src) be->vt->download(be, slice, src, bytes);
            if (!gathering && src) brg__slice_put(x, i, slice, assembled);
        }
        if (gathering && s == BRG_OK) {
            int mine = owner >= 0 && param_copy_of(t, p, copy_of(t, 0, t->workers[t->mpi->rank].tp_index), &(brg__backend *){NULL});
            if (!mine) memset(slice, 0, bytes);
            s = brg__exchange_gather(t->mpi, brg__transfer_tag(TAG_FINGERPRINT, 2, 0, (uint64_t)p), slice, all, bytes, msg);
            for (int i = 0; i < t->tp && s == BRG_OK && root && owner >= 0; i++)
                brg__slice_put(x, i, all + (size_t)rank_of(t, copy_of(t, 0, i), t->stages[owner].rank) * (size_t)n, assembled);
        }
        if (s == BRG_OK && root && whole)
            whole[p] = owner >= 0 ? brg__fnv1a(BRG__FNV_OFFSET, assembled, (size_t)wn * sizeof(float)) : 0;
        free(slice);
        free(assembled);
        free(all);
        if (s != BRG_OK) return s;
    }
    return BRG_OK;
}

brg_status brg_trainer_fingerprint(const brg_trainer *t, uint64_t *out) {
    if (!t || !out) return BRG_ERR_INVALID_ARGUMENT;
    const brg_graph *g = t->graph;
    size_t np = (size_t)(g->n_params ? g->n_params : 1), nd = (size_t)t->copies;
    brg_tensor **sorted = brg__malloc(np * sizeof *sorted);
    uint64_t *h = brg__calloc(np * nd, sizeof *h);
    uint64_t *all = t->mpi && t->mpi->rank == 0 ? brg__calloc(np * nd * (size_t)t->ranks, sizeof *all) : NULL;
    brg_status st = sorted && h && (!t->mpi || t->mpi->rank != 0 || all) ? BRG_OK : BRG_ERR_OUT_OF_MEMORY;
    if (st == BRG_OK) st = local_param_hashes(t, h);
    if (t->mpi) { /* collective: every rank takes part, even after a local failure */
        char msg[BRG_ERROR_MESSAGE_MAX];
        uint64_t tag = brg__transfer_tag(TAG_FINGERPRINT, 0, 0, 0);
        brg_status s = h ? brg__exchange_gather(t->mpi, tag, h, all, np * nd * sizeof *h, msg) : BRG_ERR_OUT_OF_MEMORY;
        if (st == BRG_OK) st = s;
        for (size_t i = 0; st == BRG_OK && all && i < nd * (size_t)g->n_params; i++) { /* from each copy's owner */
            size_t d = i / (size_t)g->n_params, p = i % (size_t)g->n_params;
            int owner = t->param_owner[p];
            h[d * np + p] = owner >= 0 ? all[(size_t)rank_of(t, (int)d, t->stages[owner].rank) * np * nd + d * np + p] : 0;
        }
    }
    if (st == BRG_OK && (!t->mpi || t->mpi->rank == 0)) st = check_replicas(t, h, np);
    if (t->tp > 1) { /* the whole parameters' hashes, in place of replica 0's slices' (collective under MPI) */
        char msg[BRG_ERROR_MESSAGE_MAX] = "";
        brg_status s = whole_param_hashes(t, h, msg);
        if (st == BRG_OK && s != BRG_OK) st = trainer_fail((brg_trainer *)t, s, "the parameters' fingerprint: %s", msg);
    }
    uint64_t fp = BRG__FNV_OFFSET;
    if (st == BRG_OK && sorted && h) {
        memcpy(sorted, g->params, (size_t)g->n_params * sizeof *sorted);
        qsort(sorted, (size_t)g->n_params, sizeof *sorted, compare_names);
        for (int64_t i = 0; i < g->n_params; i++) {
            if (t->param_owner[sorted[i]->param_index] < 0) continue; /* a parameter no op reads */
            fp = brg__fnv1a(fp, sorted[i]->name, strlen(sorted[i]->name) + 1);
            fp = brg__fnv1a(fp, &h[sorted[i]->param_index], sizeof(uint64_t));
        }
    }
    if (t->mpi) { /* rank 0's verdict: its status and the fingerprint */
        uint64_t verdict[2] = {(uint64_t)st, fp};
        char msg[BRG_ERROR_MESSAGE_MAX];
        brg_status s = brg__exchange_bcast(t->mpi, brg__transfer_tag(TAG_FINGERPRINT, 0, 0, 1), verdict, sizeof verdict, msg);
        if (st == BRG_OK) st = s != BRG_OK ? s : (brg_status)verdict[0];
        fp = verdict[1];
    }
    free(sorted);
    free(h);
    free(all);
    if (st == BRG_ERR_OUT_OF_MEMORY)
        return trainer_fail((brg_trainer *)t, st, "computing the parameters' fingerprint: out of memory");
    if (st == BRG_OK) *out = fp;
    return st;
}

brg_status brg_trainer_get_param(const brg_trainer *t, const char *name, float *dst, int64_t count) {
    if (!t || !name || !dst) return BRG_ERR_INVALID_ARGUMENT;
    const brg_graph *g = t->graph;
    for (int64_t p = 0; p < g->n_params; p++) {
        const brg_tensor *x = g->params[p];
        if (strcmp(x->name, name) != 0) continue;
        if (brg__slice_whole_numel(x) != count) return BRG_ERR_SHAPE;
        if (t->param_owner[p] < 0) return BRG_ERR_NAME;
        int split = x->slice.parts >= 2;
        size_t bytes = (size_t)brg__tensor_numel(x, 1) * sizeof(float);
        float *slice = split ? brg__malloc(bytes) : NULL;
        if (split && !slice) return BRG_ERR_OUT_OF_MEMORY;
        brg_status s = BRG_OK;
        for (int i = 0; i < (split ? t->tp : 1) && s == BRG_OK; i++) { /* replica 0's slices, the whole */
            brg__backend *be = NULL;
            const float *src = split ? param_copy_of(t, p, copy_of(t, 0, i), &be) : param_copy(t, p, &be);
            if (!src) {
                s = BRG_ERR_NOT_FOUND; /* held by a rank of another process */
                break;
            }
            be->vt->download(be, split ? slice : dst, src, bytes);
            if (split) brg__slice_put(x, i, slice, dst);
        }
        free(slice);
        return s;
    }
    return BRG_ERR_NAME;
}

int64_t brg_trainer_memory_bytes(const brg_trainer *t) {
    int64_t total = 0;
    for (int r = 0; t && r < t->ranks; r++)
        total += t->mpi ? t->rank_bytes[r] : t->workers[r].be->vt->allocated(t->workers[r].be);
    return total;
}

/* ---- state, for checkpoints ----------------------------------------------------------------- */

int64_t brg__trainer_steps_done(const brg_trainer *t) { return t ? t->steps_done : 0; }
int64_t brg__trainer_next_sample(const brg_trainer *t) { return t ? t->next_sample : 0; }

brg_status brg__trainer_set_progress(brg_trainer *t, int64_t steps_done, int64_t next_sample) {
    if (!t || steps_done < 0 || next_sample < 0 || next_sample % (t->opts.micro_batch * t->opts.micro_batches) != 0)
        return BRG_ERR_INVALID_ARGUMENT;
    t->steps_done = steps_done;
    t->next_sample = next_sample;
    return BRG_OK;
}

/* The parameters below are the model's (brg__trainer_graph: whole shapes); with tensor parallelism each
 * maps by name to the ranks' parameter holding its slices. -1: none. */
static int64_t local_param(const brg_trainer *t, int64_t p) {
    if (!t || p < 0 || p >= t->model->n_params) return -1;
    if (t->graph == t->model) return p;
    const char *name = t->model->params[p]->name;
    for (int64_t q = 0; q < t->graph->n_params; q++)
        if (strcmp(t->graph->params[q]->name, name) == 0) return q;
    return -1;
}

int brg__trainer_owns_param(const brg_trainer *t, int64_t p) { /* replica 0's owner copy (index 0's) */
    brg__backend *be = NULL;
    int64_t q = local_param(t, p);
    return q >= 0 && param_copy_of(t, q, 0, &be) != NULL;
}

int brg__trainer_holds_param(const brg_trainer *t, int64_t p) {
    int64_t q = local_param(t, p);
    if (q < 0) return 0;
    for (int k = 0; k < t->n_stages * t->copies; k++)
        if (t->stages[k].st && t->stages[k].st->param[q]) return 1;
    return 0;
}

brg_status brg__trainer_read_param_state(const brg_trainer *t, int64_t p, float *param, float *m, float *v) {
    int64_t q = local_param(t, p);
    if (q < 0 || !param || !m || !v) return BRG_ERR_INVALID_ARGUMENT;
    const brg_tensor *x = t->graph->params[q];
    size_t bytes = (size_t)brg__tensor_numel(x, 1) * sizeof(float);
    float *slices[3] = {NULL, NULL, NULL}, *whole[3] = {param, m, v};
    int split = x->slice.parts >= 2;
    if (split && t->assembled && t->assembled[3 * q]) { /* gathered from the group's processes */
        for (int k = 0; k < 3; k++)
            memcpy(whole[k], t->assembled[3 * q + k], (size_t)brg__slice_whole_numel(x) * sizeof(float));
        return BRG_OK;
    }
    for (int k = 0; split && k < 3; k++)
        if (!(slices[k] = brg__malloc(bytes))) {
            for (int j = 0; j < k; j++) free(slices[j]);
            return BRG_ERR_OUT_OF_MEMORY;
        }
    brg_status s = BRG_OK;
    /* A slice's ranks all in this process (threads), index after index; else replica 0's owner copy. */
    for (int i = 0; i < (split ? t->tp : 1) && s == BRG_OK; i++) {
        const vstage *owner = owner_stage(t, q, copy_of(t, 0, i));
        if (!owner) {
            s = split && i > 0 ? BRG_ERR_UNSUPPORTED : BRG_ERR_NOT_FOUND; /* a slice in another process */
            break;
        }
        const brg__stage *st = owner->st;
        if (!st->adam_m[q]) {
            s = BRG_ERR_INVALID_USAGE; /* ZeRO-1 shards: brg__trainer_gather_moments first */
            break;
        }
        brg__backend *be = t->workers[owner->grank].be;
        const float *src[3] = {st->param[q], st->adam_m[q], st->adam_v[q]};
        for (int k = 0; k < 3; k++) {
            be->vt->download(be, split ? slices[k] : whole[k], src[k], bytes);
            if (split) brg__slice_put(x, i, slices[k], whole[k]);
        }
    }
    for (int k = 0; k < 3; k++) free(slices[k]);
    return s;
}

brg_status brg__trainer_write_param_state(brg_trainer *t, int64_t p, const float *param, const float *m,
                                          const float *v) {
    int64_t q = local_param(t, p);
    if (q < 0 || !param || !m || !v) return BRG_ERR_INVALID_ARGUMENT;
    const brg_tensor *x = t->graph->params[q];
    size_t bytes = (size_t)brg__tensor_numel(x, 1) * sizeof(float);
    int split = x->slice.parts >= 2;
    float *slices[3] = {NULL, NULL, NULL};
    const float *whole[3] = {param, m, v};
    for (int k = 0; split && k < 3; k++)
        if (!(slices[k] = brg__malloc(bytes))) {
            for (int j = 0; j < k; j++) free(slices[j]);
            return BRG_ERR_OUT_OF_MEMORY;
        }
    brg_status s = BRG_OK;
    for (int k = 0; k < t->n_stages * t->copies && s == BRG_OK; k++) {
        brg__stage *st = t->stages[k].st;
        if (!st || !st->param[q]) continue;
        const float *values[3] = {param, m, v};
        for (int j = 0; split && j < 3; j++) { /* this copy's index's slice */
            brg__slice_take(x, t->stages[k].copy % t->tp, whole[j], slices[j]);
            values[j] = slices[j];
        }
        const worker *w = &t->workers[t->stages[k].grank];
        w->be->vt->upload(w->be, st->param[q], values[0], bytes);
        if (st->adam_m[q]) {
            w->be->vt->upload(w->be, st->adam_m[q], values[1], bytes);
            w->be->vt->upload(w->be, st->adam_v[q], values[2], bytes);
        } else {
            s = brg__dp_set_moments(w->dp, st, q, values[1], values[2]); /* ZeRO-1: this replica's part */
        }
    }
    for (int k = 0; k < 3; k++) free(slices[k]);
    return s;
}

brg_status brg__trainer_agree(brg_trainer *t, brg_status mine, char *msg) {
    if (!t || !t->mpi) return mine;
    int32_t me = (int32_t)mine, *all = brg__calloc((size_t)t->ranks, sizeof *all);
    if (!all) return mine != BRG_OK ? mine : brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    char why[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status s = brg__exchange_allgather(t->mpi, brg__transfer_tag(TAG_SUMMARY, 1, 0, 0), &me, all, sizeof me, why);
    for (int r = 0; s == BRG_OK && mine == BRG_OK && r < t->ranks; r++)
        if (all[r] != BRG_OK)
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, (brg_status)all[r], "rank %d failed (%s; its own message says why)",
                                 r, brg_status_string((brg_status)all[r]));
    if (s != BRG_OK && mine == BRG_OK && why[0]) brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, s, "%s", why);
    free(all);
    return mine != BRG_OK ? mine : s;
}

const brg_graph *brg__trainer_graph(const brg_trainer *t) { return t ? t->model : NULL; }

int brg__trainer_param_owner_process(const brg_trainer *t, int64_t p) {
    int64_t q = local_param(t, p);
    if (q < 0 || t->param_owner[q] < 0) return -1;
    return t->mpi ? rank_of(t, 0, t->stages[t->param_owner[q]].rank) : 0;
}

int64_t brg__trainer_step_samples(const brg_trainer *t) {
    return t ? (int64_t)t->dp * t->opts.micro_batch * t->opts.micro_batches : 0;
}

static void *gather_main(void *arg) {
    worker *w = arg;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status s = w->dp ? brg__dp_gather_moments(w->dp, msg) : BRG_OK;
    if (s != BRG_OK) {
        worker_fail(w, s, "rank %d: gathering the ZeRO-1 moments: %s", w->rank, msg);
        w->tp->vt->stop_all(w->tp, s);
    }
    return NULL;
}

/* MPI hosting with tensor parallelism: replica 0's slices of every split parameter (values and moments)
 * gathered over each group, whole on index 0's process (t->assembled). Collective over the groups. */
static brg_status assemble_slices(brg_trainer *t, char *msg) {
    worker *w = &t->workers[t->mpi->rank];
    const brg_graph *g = t->graph;
    if (w->replica != 0) return BRG_OK; /* replica 0's copies are the ones saved */
    t->assembled = brg__calloc((size_t)g->n_params * 3 + 1, sizeof *t->assembled);
    if (!t->assembled) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    brg_status s = BRG_OK;
    for (int64_t q = 0; q < g->n_params && s == BRG_OK; q++) {
        const brg_tensor *x = g->params[q];
        const vstage *owner = owner_stage(t, q, w->copy);
        if (x->slice.parts < 2 || !owner) continue; /* whole, or held by another pipeline rank */
        int64_t n = brg__tensor_numel(x, 1);
        size_t bytes = (size_t)n * sizeof(float);
        float *all = w->be->vt->alloc(w->be, (size_t)t->tp * bytes), *host = brg__malloc((size_t)t->tp * bytes);
        const float *src[3] = {owner->st->param[q], owner->st->adam_m[q], owner->st->adam_v[q]};
        if (!all || !host || !src[1]) s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, !src[1] ? BRG_ERR_INTERNAL : BRG_ERR_OUT_OF_MEMORY,
                                                       "assembling '%s' from the tensor-parallel group: %s", x->name,
                                                       !src[1] ? "no moments" : "out of memory");
        for (int k = 0; k < 3 && s == BRG_OK; k++) {
            w->be->vt->copy(w->be, all + (int64_t)w->tp_index * n, src[k], bytes);
            s = brg__group_post(w->tp_group, BRG__ALLGATHER, all, (int64_t)t->tp * n, sizeof(float), 0, msg);
            if (s == BRG_OK) s = brg__group_wait_all(w->tp_group, msg);
            if (s != BRG_OK || w->tp_index != 0) continue;
            float *whole = brg__malloc((size_t)brg__slice_whole_numel(x) * sizeof(float));
            if (!whole) {
                s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
                break;
            }
            w->be->vt->download(w->be, host, all, (size_t)t->tp * bytes);
            for (int i = 0; i < t->tp; i++) brg__slice_put(x, i, host + (int64_t)i * n, whole);
            t->assembled[3 * q + k] = whole;
        }
        w->be->vt->free(w->be, all);
        free(host);
    }
    return s;
}

brg_status brg__trainer_gather_moments(brg_trainer *t, char *msg) {
    if (!t) return BRG_OK;
    if (t->dp > 1 && t->opts.zero) {
        for (int r = t->local_begin; r < t->local_end; r++) t->workers[r].status = BRG_OK;
        run_workers(t, gather_main); /* collective over each group: every member at once */
        const worker *bad = failed_worker(t);
        if (bad) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, bad->status, "%s", bad->msg);
    }
    return t->mpi && t->tp > 1 ? assemble_slices(t, msg) : BRG_OK;
}

void brg__trainer_release_moments(brg_trainer *t) {
    for (int r = t->local_begin; r < t->local_end; r++) brg__dp_release_moments(t->workers[r].dp);
    for (int64_t i = 0; t->assembled && i < 3 * t->graph->n_params; i++) free(t->assembled[i]);
    free(t->assembled);
    t->assembled = NULL;
}

int brg__trainer_process_rank(const brg_trainer *t) { return t && t->mpi ? t->mpi->rank : 0; }
int brg__trainer_process_count(const brg_trainer *t) { return t && t->mpi ? t->mpi->ranks : 1; }

void brg__trainer_inject_optimizer_fault(brg_trainer *t, int rank) {
    if (t) t->inject_optimizer_rank = rank;
}

void brg__trainer_inject_failure(brg_trainer *t, int stage, int micro_batch) {
    if (!t) return;
    t->inject_stage = stage;
    t->inject_micro_batch = micro_batch;
}

void brg__trainer_inject_nan(brg_trainer *t, int stage, int micro_batch) {
    if (!t) return;
    t->inject_nan_stage = stage;
    t->inject_nan_micro_batch = micro_batch;
}

void brg__trainer_inject_replica_failure(brg_trainer *t, int replica) {
    if (t) t->inject_replica = replica;
}
