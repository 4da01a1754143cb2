/* The op registry: per op kind, its name and its costs (FLOPs and bytes moved per pass, internals saved
 * for backward, workspace, whether selective recomputation redoes it). The partitioner's cost and memory
 * models and the runtime's allocations both read these figures, so the two cannot drift apart.
 *
 * FLOPs count multiply-adds as 2. Bytes moved are F32 reads plus writes of one pass, counting a GEMM's
 * operands once (what a roofline model wants, not a cache simulation). */
#include <string.h>

#include "graph_internal.h"

static const char *const kind_names[BRG_OP_KIND_COUNT] = {
    [BRG_OP_EMBEDDING] = "embedding", [BRG_OP_LINEAR] = "linear",       [BRG_OP_MATMUL] = "matmul",
    [BRG_OP_ADD] = "add",             [BRG_OP_LAYERNORM] = "layernorm", [BRG_OP_GELU] = "gelu",
    [BRG_OP_RELU] = "relu",           [BRG_OP_ATTENTION] = "attention", [BRG_OP_CROSS_ENTROPY] = "cross_entropy",
    [BRG_OP_TP_COPY] = "tp_copy",     [BRG_OP_TP_REDUCE] = "tp_reduce", [BRG_OP_TP_GATHER] = "tp_gather",
    [BRG_OP_TP_SCATTER] = "tp_scatter",
};

const char *brg_op_kind_name(brg_op_kind kind) {
    return (unsigned)kind < BRG_OP_KIND_COUNT ? kind_names[kind] : "unknown";
}

static int is_param(const brg_tensor *t) { return t->kind == BRG_TENSOR_PARAMETER; }

/* Adds `flops` and `bytes` to the backward-weight pass when t is a parameter, else to backward-input. */
static void backward_of(brg__op_costs *c, const brg_tensor *t, double flops, double bytes) {
    brg_pass p = is_param(t) ? BRG_PASS_BACKWARD_WEIGHT : BRG_PASS_BACKWARD_INPUT;
    c->flops[p] += flops;
    c->bytes_moved[p] += bytes;
}

static int64_t bound(const brg_tensor *t, int i, int64_t batch) {
    return t->shape[i] == BRG_BATCH ? batch : t->shape[i];
}

void brg__matmul_dims_get(const brg__op *op, int64_t batch, brg__matmul_dims *d) {
    const brg_tensor *a = op->inputs[0], *b = op->inputs[1];
    d->trans_a = (op->flags & BRG_MATMUL_TRANSPOSE_A) != 0;
    d->trans_b = (op->flags & BRG_MATMUL_TRANSPOSE_B) != 0;
    int64_t a_rows = bound(a, a->ndim - 2, batch), a_cols = bound(a, a->ndim - 1, batch);
    int64_t b_rows = bound(b, b->ndim - 2, batch), b_cols = bound(b, b->ndim - 1, batch);
    d->m = d->trans_a ? a_cols : a_rows;
    d->k = d->trans_a ? a_rows : a_cols;
    d->n = d->trans_b ? b_rows : b_cols;
    d->lda = a_cols;
    d->ldb = b_cols;
    d->b_shared = b->ndim == 2;
    d->count = a_rows * a_cols > 0 ? brg__tensor_numel(a, batch) / (a_rows * a_cols) : 0;
}

/* A buffer size from a product computed in double: exact below 2^53, and saturated rather than undefined
 * where a caller asks about a batch past what the graph allows (brg__graph_max_batch). */
static int64_t float_count(double x) { return x < 0x1p62 ? (int64_t)x : INT64_C(1) << 62; }

int brg__op_writes_fresh(const brg__op *op, int q) {
    switch (op->kind) {
    case BRG_OP_ADD: return q == 0 || q == 1;
    case BRG_OP_LINEAR:
    case BRG_OP_MATMUL:
    case BRG_OP_LAYERNORM:
    case BRG_OP_GELU:
    case BRG_OP_RELU:
    case BRG_OP_ATTENTION:
    case BRG_OP_CROSS_ENTROPY: return q == 0;
    case BRG_OP_EMBEDDING: /* its only gradient is the table's, a parameter's */
    case BRG_OP_TP_COPY:   /* the group's collectives: the stage runs them */
    case BRG_OP_TP_REDUCE:
    case BRG_OP_TP_GATHER:
    case BRG_OP_TP_SCATTER:
    case BRG_OP_KIND_COUNT: break;
    }
    return 0;
}

void brg__op_costs_get(const brg__op *op, int64_t batch, brg__op_costs *c) {
    memset(c, 0, sizeof *c);
    const brg_tensor *x = op->inputs[0];
    double out = (double)brg__tensor_numel(op->output, batch);
    double f = 4.0; /* bytes per F32 element */
    switch (op->kind) {
    case BRG_OP_EMBEDDING: {
        double rows = (double)brg__tensor_numel(x, batch);
        c->bytes_moved[BRG_PASS_FORWARD] = f * (rows + 2 * out);
        backward_of(c, op->inputs[1], out, f * (rows + 3 * out));
        c->cheap_to_recompute = 1;
        break;
    }
    case BRG_OP_LINEAR: {
        double k = (double)x->shape[x->ndim - 1], m = (double)op->output->shape[op->output->ndim - 1];
        double rows = out / m;
        c->flops[BRG_PASS_FORWARD] = 2 * rows * k * m + rows * m;
        c->bytes_moved[BRG_PASS_FORWARD] = f * (rows * k + k * m + m + rows * m);
        backward_of(c, x, 2 * rows * k * m, f * (rows * m + k * m + 2 * rows * k));
        backward_of(c, op->inputs[1], 2 * rows * k * m, f * (rows * m + rows * k + 2 * k * m));
        backward_of(c, op->inputs[2], rows * m, f * (rows * m + 2 * m));
        break;
    }
    case BRG_OP_MATMUL: {
        brg__matmul_dims d;
        brg__matmul_dims_get(op, batch, &d);
        double count = (double)d.count, m = (double)d.m, k = (double)d.k, n = (double)d.n;
        double b_elems = (double)brg__tensor_numel(op->inputs[1], batch);
        c->flops[BRG_PASS_FORWARD] = 2 * count * m * k * n;
        c->bytes_moved[BRG_PASS_FORWARD] = f * (count * m * k + b_elems + out);
        backward_of(c, x, 2 * count * m * k * n, f * (out + b_elems + 2 * count * m * k));
        backward_of(c, op->inputs[1], 2 * count * m * k * n, f * (out + count * m * k + 2 * b_elems));
        break;
    }
    case BRG_OP_ADD: {
        double b = (double)brg__tensor_numel(op->inputs[1], batch);
        c->flops[BRG_PASS_FORWARD] = out;
        c->bytes_moved[BRG_PASS_FORWARD] = f * (2 * out + b);
        backward_of(c, x, out, f * 3 * out);
        backward_of(c, op->inputs[1], out, f * (out + 2 * b));
        c->cheap_to_recompute = 1;
        break;
    }
    case BRG_OP_LAYERNORM: {
        double ch = (double)x->shape[x->ndim - 1], rows = out / ch;
        c->flops[BRG_PASS_FORWARD] = 8 * out;
        c->bytes_moved[BRG_PASS_FORWARD] = f * (2 * out + 2 * ch + 2 * rows);
        backward_of(c, x, 10 * out, f * (4 * out + 2 * rows + ch));
        backward_of(c, op->inputs[1], 4 * out, f * (2 * out + 2 * rows + 4 * ch));
        c->aux_floats = float_count(2 * rows); /* mean[rows], then rstd[rows] */
        c->cheap_to_recompute = 1;
        break;
    }
    case BRG_OP_GELU:
    case BRG_OP_RELU: {
        double per = op->kind == BRG_OP_GELU ? 12 : 1;
        c->flops[BRG_PASS_FORWARD] = per * out;
        c->bytes_moved[BRG_PASS_FORWARD] = f * 2 * out;
        backward_of(c, x, (per + 2) * out, f * 4 * out);
        c->cheap_to_recompute = 1;
        break;
    }
    case BRG_OP_ATTENTION: {
        /* x: (B, T, 3C). Scores and weighted sums are T x T products per (b, head), counted whole; backward
         * computes the scores again from the log-sum-exp forward kept (one float per query row: memory O(T)
         * per head from forward to backward, not the O(T^2) probabilities). */
        double b = (double)(x->shape[0] == BRG_BATCH ? batch : x->shape[0]);
        double t = (double)x->shape[1], ch = (double)x->shape[2] / 3, heads = (double)op->heads;
        double probs = b * heads * t * t, rows = b * heads * t;
        c->flops[BRG_PASS_FORWARD] = 4 * b * t * t * ch + 5 * probs;
        c->bytes_moved[BRG_PASS_FORWARD] = f * (b * t * 3 * ch + out) + 4 * rows;
        c->flops[BRG_PASS_BACKWARD_INPUT] = 10 * b * t * t * ch + 6 * probs;
        c->bytes_moved[BRG_PASS_BACKWARD_INPUT] = f * (2 * out + 2 * b * t * 3 * ch) + 4 * rows;
        c->aux_floats = float_count(rows); /* the log-sum-exp of each row (B, NH, T) */
        /* A CPU thread's workspace: the probabilities and d(scores) of one (b, head); a GPU's kernels keep
         * their tiles on chip. */
        c->host_scratch_floats = float_count(2 * t * t);
        c->cheap_to_recompute = 1; /* memory-heavy, FLOP-light relative to the GEMMs around it */
        break;
    }
    case BRG_OP_CROSS_ENTROPY: {
        double v = (double)x->shape[x->ndim - 1], rows = out;
        /* Forward reads the logits once (a running maximum and sum of exponentials) and keeps each row's
         * log-sum-exp; backward reads them once more and writes dlogits (brg__op_writes_fresh: no zero-fill,
         * no read of dlogits): two reads and a write in all, as one fused softmax-loss-gradient kernel. */
        c->flops[BRG_PASS_FORWARD] = 4 * rows * v;
        c->bytes_moved[BRG_PASS_FORWARD] = f * (rows * v + 3 * rows);
        backward_of(c, x, 4 * rows * v, f * (2 * rows * v + 3 * rows));
        c->aux_floats = float_count(rows); /* the log-sum-exp of each row */
        c->cheap_to_recompute = 1;
        if (op->tp_vocab) {
            /* Over a split vocabulary: each row's maximum gathered from the group, its sum of exponentials and
             * target logit summed over it. */
            int parts = op->output->graph ? op->output->graph->tp_parts : 1;
            c->scratch_floats = float_count(rows * (parts + 2));
            c->comm_kind[BRG_PASS_FORWARD] = BRG__COMM_ALLREDUCE;
            c->comm_bytes[BRG_PASS_FORWARD] = f * (2 + parts) * rows;
        }
        break;
    }
    case BRG_OP_TP_COPY:
    case BRG_OP_TP_REDUCE:
    case BRG_OP_TP_GATHER:
    case BRG_OP_TP_SCATTER: {
        /* A copy of the tensor through the group; what crosses the links is the collective's. The buffers the
         * group's layout needs come from the stage's scratch: a copy's summed gradient and a gather's
         * buffer one output, a scatter's two inputs (its reordered input, and backward the gathered
         * gradient with its reordering). */
        double in = (double)brg__tensor_numel(x, batch);
        c->bytes_moved[BRG_PASS_FORWARD] = f * (in + out);
        c->bytes_moved[BRG_PASS_BACKWARD_INPUT] = f * (in + out);
        c->scratch_floats = op->kind == BRG_OP_TP_REDUCE ? 0 : op->kind == BRG_OP_TP_SCATTER ? float_count(2 * in)
                                                                                           : float_count(out);
        int p_reduce = op->kind == BRG_OP_TP_COPY ? BRG_PASS_BACKWARD_INPUT : BRG_PASS_FORWARD;
        if (op->kind == BRG_OP_TP_COPY || op->kind == BRG_OP_TP_REDUCE) {
            c->comm_kind[p_reduce] = BRG__COMM_ALLREDUCE;
            c->comm_bytes[p_reduce] = f * out;
        } else {
            int gather = op->kind == BRG_OP_TP_GATHER;
            double whole = gather ? out : in; /* the gathered, or not yet scattered, size */
            c->comm_kind[BRG_PASS_FORWARD] = gather ? BRG__COMM_ALLGATHER : BRG__COMM_REDUCE_SCATTER;
            c->comm_kind[BRG_PASS_BACKWARD_INPUT] = gather ? BRG__COMM_REDUCE_SCATTER : BRG__COMM_ALLGATHER;
            c->comm_bytes[BRG_PASS_FORWARD] = c->comm_bytes[BRG_PASS_BACKWARD_INPUT] = f * whole;
        }
        break;
    }
    case BRG_OP_KIND_COUNT:
        break;
    }
}
