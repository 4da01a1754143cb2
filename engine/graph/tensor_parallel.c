/* A tensor-parallel rank's graph, derived from the whole model's and the marks brg_tensor_parallel left on
 * its ops (graph_internal.h: brg__graph_localize). The walk follows the ops in order, keeping for each tensor
 * how it lies across the group (its layout), and inserts the group's collectives where an op needs another:
 *
 *   WHOLE    every rank holds all of it, alike;
 *   SPLIT    its last dimension split (in `blocks` equal blocks, rank i holding piece i of each): what a
 *            column-parallel linear writes, and attention, GELU or a vocabulary-split head after it;
 *   SEQ      its positions (dimension 1) split in contiguous shares: the residual stream under sequence
 *            parallelism;
 *   PARTIAL  every rank holds a term of a sum over the group (a row-parallel product, a vocabulary-split
 *            embedding), settled at once: summed (TP_REDUCE, to WHOLE) or summed and scattered (TP_SCATTER,
 *            to SEQ).
 *
 * A column- or vocabulary-parallel op reads its input WHOLE and through TP_COPY (or, from SEQ, TP_GATHER),
 * whose backward sums the partial input gradients its share produces. That is Megatron-LM's f and g (and
 * their sequence-parallel forms), derived rather than written into the model. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_internal.h"

typedef enum layout { WHOLE, SPLIT, SEQ, PARTIAL } layout;

typedef struct local_tensor {
    brg_tensor *t; /* in the rank's graph; NULL until made */
    layout lay;
    int blocks;           /* SPLIT: equal blocks of the last dimension */
    int64_t vocab;        /* SPLIT over a vocabulary (logits): the whole model's entries */
    brg_tensor *copied;   /* t through TP_COPY, made once */
    brg_tensor *gathered; /* SEQ t through TP_GATHER, made once */
} local_tensor;

typedef struct localizer {
    const brg_graph *g;
    brg_graph *l;
    int parts, sequence;
    local_tensor *map; /* [g->n_tensors] */
    char *msg;
    brg_status status;
} localizer;

BRG__PRINTF(2, 3)
static brg_status refuse(localizer *z, const char *fmt, ...) {
    if (z->status == BRG_OK) {
        va_list ap;
        va_start(ap, fmt);
        char text[BRG_ERROR_MESSAGE_MAX];
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        z->status = brg__message_set(z->msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "tensor parallelism of %d%s: %s",
                                     z->parts, z->sequence ? " with sequence parallelism" : "", text);
    }
    return z->status;
}

/* The rank's graph failed (out of memory, a name too long): its own message. */
static brg_tensor *local_failed(localizer *z) {
    if (z->status == BRG_OK) z->status = brg__message_set(z->msg, BRG_ERROR_MESSAGE_MAX, brg_graph_status(z->l), "%s",
                                                          brg_graph_last_error(z->l));
    return NULL;
}

static int64_t piece(int64_t whole, int blocks, int parts) { return (whole / blocks + parts - 1) / parts; }

int64_t brg__slice_local(const brg__slice *s) { return (int64_t)s->blocks * piece(s->whole, s->blocks, s->parts); }

/* ---- slices of parameters ----------------------------------------------------------------------------- */

/* Copies between rank's slice (local, local's shape) and the whole parameter: to_local takes (padding
 * zeroed), else puts the valid entries back. */
static void slice_walk(const brg_tensor *local, int rank, float *whole, float *loc, int to_local) {
    const brg__slice *s = &local->slice;
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < s->dim; d++) outer *= local->shape[d];
    for (int d = s->dim + 1; d < local->ndim; d++) inner *= local->shape[d];
    int64_t local_dim = local->shape[s->dim], per_block = local_dim / s->blocks, whole_block = s->whole / s->blocks;
    size_t row = (size_t)inner * sizeof(float);
    for (int64_t o = 0; o < outer; o++)
        for (int b = 0; b < s->blocks; b++)
            for (int64_t j = 0; j < per_block; j++) {
                int64_t at = (int64_t)rank * per_block + j; /* within the whole block */
                float *lp = loc + ((o * local_dim) + b * per_block + j) * inner;
                float *wp = whole + ((o * s->whole) + b * whole_block + at) * inner;
                if (to_local) {
                    if (at < whole_block) memcpy(lp, wp, row);
                    else memset(lp, 0, row);
                } else if (at < whole_block) {
                    memcpy(wp, lp, row);
                }
            }
}

void brg__slice_take(const brg_tensor *local, int rank, const float *whole, float *dst) {
    if (local->slice.parts < 2) {
        memcpy(dst, whole, (size_t)brg__tensor_numel(local, 1) * sizeof(float));
        return;
    }
    slice_walk(local, rank, (float *)whole, dst, 1);
}

void brg__slice_put(const brg_tensor *local, int rank, const float *src, float *whole) {
    if (local->slice.parts < 2) {
        memcpy(whole, src, (size_t)brg__tensor_numel(local, 1) * sizeof(float));
        return;
    }
    slice_walk(local, rank, whole, (float *)src, 0);
}

int64_t brg__slice_whole_numel(const brg_tensor *local) {
    int64_t n = brg__tensor_numel(local, 1);
    if (local->slice.parts < 2) return n;
    return n / local->shape[local->slice.dim] * local->slice.whole;
}

/* ---- the rank's parameters and collectives -------------------------------------------------------------- */

static int same_slice(const brg__slice *a, const brg__slice *b) {
    if (a->parts < 2 || b->parts < 2) return a->parts < 2 && b->parts < 2;
    return a->dim == b->dim && a->blocks == b->blocks && a->parts == b->parts;
}

/* The rank's parameter for the whole model's p, as slice `sl` says (parts < 2: whole), made once: every op
 * that reads p (a tied embedding and head) must want the same slice. partial: its gradient is a partial sum
 * over the group (read by ops on a share of the positions). */
static brg_tensor *local_param(localizer *z, const brg_tensor *p, brg__slice sl, int partial) {
    local_tensor *m = &z->map[p->index];
    if (sl.parts >= 2) sl.whole = p->shape[sl.dim];
    if (m->t) {
        if (!same_slice(&m->t->slice, &sl)) {
            refuse(z, "parameter '%s' is read by ops that split it differently (its first reader decides)", p->name);
            return NULL;
        }
        m->t->partial_grad |= partial;
        return m->t;
    }
    int64_t shape[BRG_MAX_DIMS];
    memcpy(shape, p->shape, sizeof shape);
    if (sl.parts >= 2) shape[sl.dim] = brg__slice_local(&sl);
    brg_tensor *t = brg__graph_param_named(z->l, p->name, p->ndim, shape, p->init);
    if (!t) return local_failed(z);
    if (sl.parts >= 2) t->slice = sl;
    t->partial_grad = partial;
    m->t = t;
    m->lay = WHOLE;
    return t;
}

static brg__slice whole_slice(void) { return (brg__slice){0, 1, 1, 0}; }
static brg__slice split_slice(int dim, int blocks, int parts) { return (brg__slice){dim, blocks, parts, 0}; }

/* A collective of the group on `in`, named "<name>.<suffix>", of the given shape. */
static brg_tensor *collective(localizer *z, brg_op_kind kind, const char *name, const char *suffix, brg_tensor *in,
                              int ndim, const int64_t *shape) {
    char full[BRG_MAX_NAME * 2];
    snprintf(full, sizeof full, "%s.%s", name, suffix);
    brg_tensor *out = brg__graph_op_named(z->l, kind, full, 1, &in, ndim, shape, 0, BRG_MATMUL_NONE, 0.0f);
    return out ? out : local_failed(z);
}

/* The positions of a SEQ tensor gathered whole on every rank (made once). */
static brg_tensor *gathered(localizer *z, const brg_tensor *x) {
    local_tensor *m = &z->map[x->index];
    if (!m->gathered) {
        int64_t shape[BRG_MAX_DIMS];
        memcpy(shape, m->t->shape, sizeof shape);
        shape[1] *= z->parts;
        m->gathered = collective(z, BRG_OP_TP_GATHER, x->name, "tp_gather", m->t, m->t->ndim, shape);
    }
    return m->gathered;
}

/* x whole, for an op every rank computes whole. */
static brg_tensor *as_whole(localizer *z, const brg_tensor *x, const char *reader) {
    local_tensor *m = &z->map[x->index];
    if (m->lay == WHOLE) return m->t;
    if (m->lay == SEQ) return gathered(z, x);
    refuse(z, "op '%s' needs '%s' whole, but each rank holds a split of its features (only a row-parallel linear, "
              "attention over split heads, or an elementwise op may read it)",
           reader, x->name);
    return NULL;
}

/* x whole, for a column- or vocabulary-parallel op: through TP_COPY (its backward sums the partial input
 * gradients of the shares), or TP_GATHER from SEQ (whose backward sums and scatters). */
static brg_tensor *as_parallel_input(localizer *z, const brg_tensor *x, const char *reader) {
    local_tensor *m = &z->map[x->index];
    if (m->lay == SEQ) return gathered(z, x);
    if (m->lay != WHOLE) return as_whole(z, x, reader);
    if (!m->copied) m->copied = collective(z, BRG_OP_TP_COPY, x->name, "tp_copy", m->t, m->t->ndim, m->t->shape);
    return m->copied;
}

/* A PARTIAL result settled: summed over the group (WHOLE), or with sequence parallelism summed and
 * scattered over the positions (SEQ). */
static brg_tensor *settle(localizer *z, const char *name, brg_tensor *partial, layout *lay) {
    if (!z->sequence) {
        *lay = WHOLE;
        return collective(z, BRG_OP_TP_REDUCE, name, "tp_reduce", partial, partial->ndim, partial->shape);
    }
    if (partial->ndim < 2 || partial->shape[1] % z->parts != 0) {
        refuse(z, "op '%s''s %" PRId64 " positions are not divisible by %d (sequence parallelism splits them)", name,
               partial->ndim < 2 ? (int64_t)0 : partial->shape[1], z->parts);
        return NULL;
    }
    int64_t shape[BRG_MAX_DIMS];
    memcpy(shape, partial->shape, sizeof shape);
    shape[1] /= z->parts;
    *lay = SEQ;
    return collective(z, BRG_OP_TP_SCATTER, name, "tp_scatter", partial, partial->ndim, shape);
}

static brg_tensor *local_op(localizer *z, brg_op_kind kind, const char *name, int n, brg_tensor *const *in,
                            int ndim, const int64_t *shape, const brg__op *like) {
    brg_tensor *out = brg__graph_op_named(z->l, kind, name, n, in, ndim, shape, like ? like->heads : 0,
                                          like ? like->flags : BRG_MATMUL_NONE, like ? like->eps : 0.0f);
    return out ? out : local_failed(z);
}

/* Records the whole model's `out` as lying `lay` in the rank's graph. */
static void result(localizer *z, const brg_tensor *out, brg_tensor *t, layout lay, int blocks, int64_t vocab) {
    local_tensor *m = &z->map[out->index];
    m->t = t;
    m->lay = lay;
    m->blocks = blocks;
    m->vocab = vocab;
}

/* ---- each kind of op --------------------------------------------------------------------------------------- */

static void shape_last(const brg_tensor *like, int64_t last, int64_t *shape) {
    memcpy(shape, like->shape, sizeof like->shape);
    shape[like->ndim - 1] = last;
}

static brg_status embedding(localizer *z, const brg__op *op) {
    brg_tensor *tokens = as_whole(z, op->inputs[0], op->name);
    const brg_tensor *w = op->inputs[1];
    int split = z->parts > 1 && op->tp_role == BRG_TP_VOCAB;
    brg_tensor *wl = tokens ? local_param(z, w, split ? split_slice(0, 1, z->parts) : whole_slice(), 0) : NULL;
    if (!wl) return z->status;
    int64_t shape[BRG_MAX_DIMS];
    memcpy(shape, tokens->shape, sizeof shape);
    shape[tokens->ndim] = w->shape[1];
    brg_tensor *in[2] = {tokens, wl};
    brg_tensor *out = local_op(z, BRG_OP_EMBEDDING, op->name, 2, in, tokens->ndim + 1, shape, op);
    if (!out) return z->status;
    if (!split) {
        result(z, op->output, out, WHOLE, 1, 0);
        return BRG_OK;
    }
    z->l->ops[out->producer].tp_vocab = w->shape[0];
    layout lay;
    brg_tensor *settled = settle(z, op->name, out, &lay);
    if (settled) result(z, op->output, settled, lay, 1, 0);
    return z->status;
}

static brg_status linear(localizer *z, const brg__op *op) {
    const brg_tensor *x = op->inputs[0], *w = op->inputs[1], *b = op->inputs[2];
    local_tensor *mx = &z->map[x->index];
    int64_t out_features = w->shape[0], in_features = w->shape[1];
    brg_tp_role role = z->parts > 1 ? op->tp_role : BRG_TP_REPLICATED;
    int64_t shape[BRG_MAX_DIMS];
    if (role == BRG_TP_COLUMN) {
        int k = op->tp_blocks > 0 ? op->tp_blocks : 1;
        if ((out_features / k) % z->parts != 0)
            return refuse(z, "it does not divide the %" PRId64 " output features of %s'%s' (column-parallel)",
                          out_features / k, k > 1 ? "each block of " : "", op->name);
        brg_tensor *in = as_parallel_input(z, x, op->name);
        brg_tensor *wl = in ? local_param(z, w, split_slice(0, k, z->parts), 0) : NULL;
        brg_tensor *bl = wl ? local_param(z, b, split_slice(0, k, z->parts), 0) : NULL;
        if (!bl) return z->status;
        shape_last(in, out_features / z->parts, shape);
        brg_tensor *ins[3] = {in, wl, bl};
        brg_tensor *out = local_op(z, BRG_OP_LINEAR, op->name, 3, ins, in->ndim, shape, op);
        if (out) result(z, op->output, out, SPLIT, k, 0);
        return z->status;
    }
    if (role == BRG_TP_ROW) {
        if (mx->lay != SPLIT || mx->blocks != 1 || mx->vocab)
            return refuse(z, "row-parallel op '%s' reads '%s', which is not split over its features in one block "
                             "(a column-parallel linear, then attention or an elementwise op, must come first)",
                          op->name, x->name);
        if (in_features % z->parts != 0)
            return refuse(z, "it does not divide the %" PRId64 " input features of '%s' (row-parallel)", in_features,
                          op->name);
        brg_tensor *wl = local_param(z, w, split_slice(1, 1, z->parts), 0);
        if (!wl) return z->status;
        shape_last(mx->t, out_features, shape);
        brg_tensor *ins[2] = {mx->t, wl};
        brg__op product = *op;
        product.flags = BRG_MATMUL_TRANSPOSE_B;
        brg_tensor *partial = local_op(z, BRG_OP_MATMUL, op->name, 2, ins, mx->t->ndim, shape, &product);
        layout lay = WHOLE;
        brg_tensor *sum = partial ? settle(z, op->name, partial, &lay) : NULL;
        brg_tensor *bl = sum ? local_param(z, b, whole_slice(), lay == SEQ) : NULL;
        if (!bl) return z->status;
        char name[BRG_MAX_NAME * 2];
        snprintf(name, sizeof name, "%s.add_bias", op->name);
        brg_tensor *ins2[2] = {sum, bl};
        brg_tensor *out = local_op(z, BRG_OP_ADD, name, 2, ins2, sum->ndim, sum->shape, NULL);
        if (out) result(z, op->output, out, lay, 1, 0);
        return z->status;
    }
    /* Computed whole, position by position: on a share of the positions too. */
    brg_tensor *in = mx->lay == SEQ ? mx->t : as_whole(z, x, op->name);
    int partial = mx->lay == SEQ;
    brg_tensor *wl = in ? local_param(z, w, whole_slice(), partial) : NULL;
    brg_tensor *bl = wl ? local_param(z, b, whole_slice(), partial) : NULL;
    if (!bl) return z->status;
    shape_last(in, out_features, shape);
    brg_tensor *ins[3] = {in, wl, bl};
    brg_tensor *out = local_op(z, BRG_OP_LINEAR, op->name, 3, ins, in->ndim, shape, op);
    if (out) result(z, op->output, out, partial ? SEQ : WHOLE, 1, 0);
    return z->status;
}

static brg_status matmul(localizer *z, const brg__op *op) {
    const brg_tensor *a = op->inputs[0], *b = op->inputs[1];
    local_tensor *ma = &z->map[a->index], *mb = &z->map[b->index];
    int tb = (op->flags & BRG_MATMUL_TRANSPOSE_B) != 0, ta = (op->flags & BRG_MATMUL_TRANSPOSE_A) != 0;
    int64_t shape[BRG_MAX_DIMS];
    memcpy(shape, op->output->shape, sizeof shape);
    if (b->kind == BRG_TENSOR_PARAMETER && mb->t && mb->t->slice.parts >= 2) {
        /* An output head reading a vocabulary-split weight: each rank its share of the logits. */
        if (mb->t->slice.dim != (tb ? 0 : 1) || ta || b->ndim != 2)
            return refuse(z, "op '%s' reads '%s', split over the group, along another dimension than its output's",
                          op->name, b->name);
        brg_tensor *in = as_parallel_input(z, a, op->name);
        if (!in) return z->status;
        memcpy(shape, in->shape, sizeof shape);
        shape[in->ndim - 1] = mb->t->shape[mb->t->slice.dim];
        brg_tensor *ins[2] = {in, mb->t};
        brg_tensor *out = local_op(z, BRG_OP_MATMUL, op->name, 2, ins, in->ndim, shape, op);
        if (out) result(z, op->output, out, SPLIT, 1, mb->t->slice.whole);
        return z->status;
    }
    if (b->kind == BRG_TENSOR_PARAMETER && b->ndim == 2 && !ta && ma->lay == SEQ) {
        /* Position by position: on a share of the positions. */
        brg_tensor *bl = local_param(z, b, whole_slice(), 1);
        if (!bl) return z->status;
        shape[1] = ma->t->shape[1];
        brg_tensor *ins[2] = {ma->t, bl};
        brg_tensor *out = local_op(z, BRG_OP_MATMUL, op->name, 2, ins, a->ndim, shape, op);
        if (out) result(z, op->output, out, SEQ, 1, 0);
        return z->status;
    }
    brg_tensor *al = as_whole(z, a, op->name);
    brg_tensor *bl = !al ? NULL : b->kind == BRG_TENSOR_PARAMETER ? local_param(z, b, whole_slice(), 0) : as_whole(z, b, op->name);
    if (!bl) return z->status;
    brg_tensor *ins[2] = {al, bl};
    brg_tensor *out = local_op(z, BRG_OP_MATMUL, op->name, 2, ins, op->output->ndim, shape, op);
    if (out) result(z, op->output, out, WHOLE, 1, 0);
    return z->status;
}

static brg_status add(localizer *z, const brg__op *op) {
    const brg_tensor *a = op->inputs[0], *b = op->inputs[1];
    local_tensor *ma = &z->map[a->index], *mb = &z->map[b->index], whole = {.lay = WHOLE, .blocks = 1};
    brg_tensor *al = ma->t, *bl = NULL;
    if (b->kind == BRG_TENSOR_PARAMETER) {
        brg__slice sl = whole_slice();
        int partial = 0;
        if (ma->lay == SEQ && b->ndim == a->ndim - 1) {
            if (b->shape[0] % z->parts != 0)
                return refuse(z, "op '%s' adds '%s' over %" PRId64 " positions, not divisible by %d", op->name, b->name,
                              b->shape[0], z->parts);
            sl = split_slice(0, 1, z->parts); /* each rank its positions' rows (a position embedding) */
        } else if (ma->lay == SEQ) {
            partial = 1;
        } else if (ma->lay == SPLIT && b->ndim == 1) {
            sl = split_slice(0, ma->blocks, z->parts);
        } else if (ma->lay == SPLIT) {
            return refuse(z, "op '%s' adds '%s' to features split over the group", op->name, b->name);
        }
        bl = local_param(z, b, sl, partial);
    } else if (ma->lay == mb->lay && ma->blocks == mb->blocks && ma->vocab == mb->vocab) {
        bl = mb->t;
    } else if (ma->lay == SEQ || mb->lay == SEQ) {
        al = as_whole(z, a, op->name);
        bl = al ? as_whole(z, b, op->name) : NULL;
        if (bl) ma = &whole;
    } else {
        return refuse(z, "op '%s' adds '%s' and '%s', which lie differently across the group", op->name, a->name,
                      b->name);
    }
    if (!al || !bl) return z->status;
    brg_tensor *ins[2] = {al, bl};
    brg_tensor *out = local_op(z, BRG_OP_ADD, op->name, 2, ins, al->ndim, al->shape, op);
    if (out) result(z, op->output, out, ma->lay, ma->blocks, ma->vocab);
    return z->status;
}

/* Layernorm, GELU, ReLU: position by position; GELU and ReLU element by element (any split). */
static brg_status pointwise(localizer *z, const brg__op *op) {
    const brg_tensor *x = op->inputs[0];
    local_tensor *mx = &z->map[x->index];
    brg_tensor *in = mx->t;
    if (op->kind == BRG_OP_LAYERNORM && mx->lay == SPLIT) in = as_whole(z, x, op->name);
    if (!in) return z->status;
    local_tensor lay = op->kind == BRG_OP_LAYERNORM && mx->lay == SPLIT ? (local_tensor){.lay = WHOLE, .blocks = 1} : *mx;
    brg_tensor *ins[3] = {in, NULL, NULL};
    for (int q = 1; q < op->n_inputs; q++)
        if (!(ins[q] = local_param(z, op->inputs[q], whole_slice(), lay.lay == SEQ))) return z->status;
    brg_tensor *out = local_op(z, op->kind, op->name, op->n_inputs, ins, in->ndim, in->shape, op);
    if (out) result(z, op->output, out, lay.lay, lay.blocks, lay.vocab);
    return z->status;
}

static brg_status attention(localizer *z, const brg__op *op) {
    const brg_tensor *x = op->inputs[0];
    local_tensor *mx = &z->map[x->index];
    int64_t shape[BRG_MAX_DIMS];
    if (mx->lay == SPLIT && mx->blocks == 3 && !mx->vocab) {
        if (op->heads % z->parts != 0)
            return refuse(z, "it does not divide the %" PRId64 " heads of '%s'", op->heads, op->name);
        brg__op share = *op;
        share.heads = op->heads / z->parts;
        shape_last(mx->t, mx->t->shape[2] / 3, shape);
        brg_tensor *out = local_op(z, BRG_OP_ATTENTION, op->name, 1, &mx->t, 3, shape, &share);
        if (out) result(z, op->output, out, SPLIT, 1, 0);
        return z->status;
    }
    brg_tensor *in = as_whole(z, x, op->name);
    if (!in) return z->status;
    shape_last(in, in->shape[2] / 3, shape);
    brg_tensor *out = local_op(z, BRG_OP_ATTENTION, op->name, 1, &in, 3, shape, op);
    if (out) result(z, op->output, out, WHOLE, 1, 0);
    return z->status;
}

static brg_status cross_entropy(localizer *z, const brg__op *op) {
    const brg_tensor *x = op->inputs[0];
    local_tensor *mx = &z->map[x->index];
    brg_tensor *targets = as_whole(z, op->inputs[1], op->name);
    brg_tensor *logits = !targets ? NULL : mx->lay == SPLIT && mx->vocab ? mx->t : as_whole(z, x, op->name);
    if (!logits) return z->status;
    brg_tensor *ins[2] = {logits, targets};
    brg_tensor *out = local_op(z, BRG_OP_CROSS_ENTROPY, op->name, 2, ins, targets->ndim, targets->shape, op);
    if (!out) return z->status;
    if (mx->lay == SPLIT && mx->vocab) z->l->ops[out->producer].tp_vocab = mx->vocab;
    result(z, op->output, out, WHOLE, 1, 0);
    return BRG_OK;
}

static brg_status emit(localizer *z, const brg__op *op) {
    switch (op->kind) {
    case BRG_OP_EMBEDDING: return embedding(z, op);
    case BRG_OP_LINEAR: return linear(z, op);
    case BRG_OP_MATMUL: return matmul(z, op);
    case BRG_OP_ADD: return add(z, op);
    case BRG_OP_LAYERNORM:
    case BRG_OP_GELU:
    case BRG_OP_RELU: return pointwise(z, op);
    case BRG_OP_ATTENTION: return attention(z, op);
    case BRG_OP_CROSS_ENTROPY: return cross_entropy(z, op);
    default:
        return refuse(z, "op '%s' (%s) is already a rank's share", op->name, brg_op_kind_name(op->kind));
    }
}

brg_status brg__graph_localize(const brg_graph *g, int parts, int sequence, brg_graph **out, char *msg) {
    if (!out) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "brg__graph_localize: out is NULL");
    *out = NULL;
    if (!g || !g->finalized || g->status != BRG_OK || g->tp_parts > 1)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "tensor parallelism needs the whole model's graph, finalized");
    if (parts < 1)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "tensor parallelism: a group of %d ranks (at least 1)", parts);
    localizer z = {g, NULL, parts, sequence && parts > 1, NULL, msg, BRG_OK};
    z.map = brg__calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof *z.map);
    if (!z.map || brg_graph_create(&z.l) != BRG_OK) {
        free(z.map);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int64_t i = 0; i < g->n_tensors && z.status == BRG_OK; i++) {
        const brg_tensor *x = g->tensors[i];
        if (x->kind != BRG_TENSOR_INPUT) continue;
        brg_tensor *t = brg_input(z.l, x->name, x->dtype, x->ndim, x->shape);
        if (t) result(&z, x, t, WHOLE, 1, 0);
        else local_failed(&z);
    }
    for (int l = 0; l < g->n_layers && z.status == BRG_OK; l++) {
        const brg__layer *layer = &g->layers[l];
        if (brg__graph_open_layer(z.l, layer->name, layer->implicit) != BRG_OK) {
            local_failed(&z);
            break;
        }
        for (int64_t i = layer->op_begin; i < layer->op_end && z.status == BRG_OK; i++) emit(&z, &g->ops[i]);
        if (z.status == BRG_OK && brg__graph_close_layer(z.l) != BRG_OK) local_failed(&z);
    }
    /* Parameters no op reads: whole, so that the rank's graph names every parameter of the model. */
    for (int64_t p = 0; p < g->n_params && z.status == BRG_OK; p++)
        if (!z.map[g->params[p]->index].t) local_param(&z, g->params[p], whole_slice(), 0);
    if (z.status == BRG_OK && brg_graph_finalize(z.l) != BRG_OK) local_failed(&z);
    free(z.map);
    if (z.status != BRG_OK) {
        brg_graph_destroy(z.l);
        return z.status;
    }
    z.l->tp_parts = parts;
    z.l->tp_sequence = z.sequence;
    *out = z.l;
    return BRG_OK;
}
