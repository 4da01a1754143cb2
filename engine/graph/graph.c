/* The layer graph: building with a sticky error, shape inference, introspection. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "graph_internal.h"

static const char null_graph_message[] = "the graph handle is NULL";

/* ---- small helpers --------------------------------------------------------------------------- */

int64_t brg__dtype_size(brg_dtype dtype) { return dtype == BRG_I32 ? 4 : 4; }

int64_t brg__tensor_numel(const brg_tensor *t, int64_t batch) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d] == BRG_BATCH ? batch : t->shape[d];
    return n;
}

int64_t brg__shape_numel_checked(int ndim, const int64_t *shape, int64_t batch) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        if (!brg__count_mul(n, shape[d] == BRG_BATCH ? batch : shape[d], BRG_MAX_TENSOR_ELEMENTS, &n)) return -1;
    return n;
}

int64_t brg__graph_max_batch(const brg_graph *g, const char **binding) {
    int64_t best = BRG_MAX_TENSOR_ELEMENTS;
    if (binding) *binding = NULL;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const brg_tensor *t = g->tensors[i];
        if (t->ndim == 0 || t->shape[0] != BRG_BATCH) continue;
        int64_t per_sample = brg__tensor_numel(t, 1); /* <= BRG_MAX_TENSOR_ELEMENTS: checked when made */
        if (BRG_MAX_TENSOR_ELEMENTS / per_sample < best) {
            best = BRG_MAX_TENSOR_ELEMENTS / per_sample;
            if (binding) *binding = t->name;
        }
    }
    for (int64_t i = 0; i < g->n_ops; i++) {
        const brg__op *op = &g->ops[i];
        if (op->output->ndim == 0 || op->output->shape[0] != BRG_BATCH) continue;
        brg__op_costs c;
        brg__op_costs_get(op, 1, &c); /* kept buffers grow with the batch; scratch does not */
        if (c.aux_floats > 0 && BRG_MAX_TENSOR_ELEMENTS / c.aux_floats < best) {
            best = BRG_MAX_TENSOR_ELEMENTS / c.aux_floats;
            if (binding) *binding = op->name;
        }
    }
    return best;
}

brg_status brg__graph_check_batch(const brg_graph *g, int64_t batch, char *msg, size_t size) {
    const char *binding;
    int64_t most = brg__graph_max_batch(g, &binding);
    if (batch >= 1 && batch <= most) return BRG_OK;
    if (batch < 1) return brg__message_set(msg, size, BRG_ERR_INVALID_ARGUMENT, "micro-batch %lld is not positive",
                                           (long long)batch);
    return brg__message_set(msg, size, BRG_ERR_INVALID_ARGUMENT, "a micro-batch of %lld samples makes '%s' hold more "
                            "than %lld elements (at most %lld samples fit)", (long long)batch,
                            binding ? binding : "?", (long long)BRG_MAX_TENSOR_ELEMENTS, (long long)most);
}

/* "(B, 32, 192)": B stands for the symbolic micro-batch dimension. */
static const char *shape_str(const brg_tensor *t, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "(");
    for (int d = 0; d < t->ndim && used < size; d++) {
        if (t->shape[d] == BRG_BATCH)
            used += (size_t)snprintf(buf + used, size - used, "%sB", d ? ", " : "");
        else
            used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, d ? ", " : "", t->shape[d]);
    }
    if (used < size) snprintf(buf + used, size - used, ")");
    return buf;
}

static const char *dtype_name(brg_dtype dtype) { return dtype == BRG_I32 ? "i32" : "f32"; }

/* Records the graph's first error; later errors keep the first one (it is the cause). */
BRG__PRINTF(3, 4)
static brg_status fail(brg_graph *g, brg_status status, const char *fmt, ...) {
    if (g->status != BRG_OK) return g->status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->error, sizeof g->error, fmt, ap);
    va_end(ap);
    g->status = status;
    return status;
}

/* Whether building calls may change g; records why not. `what` names the call. */
static int can_build(brg_graph *g, const char *what) {
    if (!g) return 0;
    if (g->status != BRG_OK) return 0;
    if (g->finalized) {
        fail(g, BRG_ERR_INVALID_USAGE, "%s: the graph is finalized and can no longer change", what);
        return 0;
    }
    return 1;
}

static const char *current_layer_name(const brg_graph *g) {
    return g->layer_open >= 0 ? g->layers[g->layer_open].name : "(none)";
}

static int grow(void **array, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 1;
    int64_t next = *cap ? *cap * 2 : 16;
    while (next < need) next *= 2;
    void *p = brg__realloc(*array, (size_t)next * elem);
    if (!p) return 0;
    *array = p;
    *cap = next;
    return 1;
}

/* ---- tensor names -------------------------------------------------------------------------------
 * Every new tensor's name is checked against those already in the graph. A hash index keeps that check
 * constant-time, so building a graph is linear in its ops (a linear search made gpt:layers=1024 take
 * seconds). Open addressing over a power-of-two table, at most half full. */

static uint64_t name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static void name_index_put(int64_t *slots, int64_t n_slots, const brg_tensor *t) {
    uint64_t mask = (uint64_t)n_slots - 1, i = name_hash(t->name) & mask;
    while (slots[i]) i = (i + 1) & mask;
    slots[i] = t->index + 1;
}

/* Room in the index for one more name: the table doubled and refilled when it would pass half full. */
static int name_index_reserve(brg_graph *g) {
    if ((g->n_tensors + 1) * 2 <= g->n_name_slots) return 1;
    int64_t n = g->n_name_slots ? g->n_name_slots * 2 : 64;
    int64_t *slots = brg__calloc((size_t)n, sizeof *slots);
    if (!slots) return 0;
    for (int64_t i = 0; i < g->n_tensors; i++) name_index_put(slots, n, g->tensors[i]);
    free(g->name_slots);
    g->name_slots = slots;
    g->n_name_slots = n;
    return 1;
}

static brg_tensor *find_tensor(const brg_graph *g, const char *name) {
    if (!g->n_name_slots) return NULL;
    uint64_t mask = (uint64_t)g->n_name_slots - 1;
    for (uint64_t i = name_hash(name) & mask; g->name_slots[i]; i = (i + 1) & mask) {
        brg_tensor *t = g->tensors[g->name_slots[i] - 1];
        if (strcmp(t->name, name) == 0) return t;
    }
    return NULL;
}

/* Validates a name for a new tensor: present, short enough, unique. `what` names the call. */
static int check_new_name(brg_graph *g, const char *what, const char *name) {
    if (!name || !name[0]) {
        fail(g, BRG_ERR_NAME, "%s: a name is required (got %s) in layer '%s'", what, name ? "\"\"" : "NULL",
             current_layer_name(g));
        return 0;
    }
    if (strlen(name) >= BRG_MAX_NAME) {
        fail(g, BRG_ERR_NAME, "%s: name '%.40s...' is longer than %d bytes", what, name, BRG_MAX_NAME - 1);
        return 0;
    }
    if (find_tensor(g, name)) {
        fail(g, BRG_ERR_NAME, "%s: name '%s' is already used in this graph (layer '%s')", what, name,
             current_layer_name(g));
        return 0;
    }
    return 1;
}

static brg_tensor *new_tensor(brg_graph *g, const char *name, brg_tensor_kind kind, brg_dtype dtype, int ndim,
                              const int64_t *shape) {
    if (!grow((void **)&g->tensors, &g->cap_tensors, g->n_tensors + 1, sizeof *g->tensors) ||
        !name_index_reserve(g)) {
        fail(g, BRG_ERR_OUT_OF_MEMORY, "out of memory adding tensor '%s'", name);
        return NULL;
    }
    if (brg__shape_numel_checked(ndim, shape, 1) < 0) {
        brg_tensor probe = {.ndim = ndim};
        memcpy(probe.shape, shape, (size_t)ndim * sizeof *shape);
        char buf[96];
        fail(g, BRG_ERR_SHAPE, "tensor '%s' %s would hold more than %lld elements%s", name,
             shape_str(&probe, buf, sizeof buf), (long long)BRG_MAX_TENSOR_ELEMENTS, ndim && shape[0] == BRG_BATCH ?
             " per sample" : "");
        return NULL;
    }
    brg_tensor *t = brg__calloc(1, sizeof *t);
    if (!t) {
        fail(g, BRG_ERR_OUT_OF_MEMORY, "out of memory adding tensor '%s'", name);
        return NULL;
    }
    t->index = g->n_tensors;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->producer = -1;
    t->layer = -1;
    t->param_index = -1;
    t->graph = g;
    g->tensors[g->n_tensors++] = t;
    name_index_put(g->name_slots, g->n_name_slots, t);
    return t;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

brg_status brg_graph_create(brg_graph **out) {
    if (!out) return BRG_ERR_INVALID_ARGUMENT;
    *out = NULL;
    brg_graph *g = brg__calloc(1, sizeof *g);
    if (!g) return BRG_ERR_OUT_OF_MEMORY;
    g->layer_open = -1;
    g->loss_op = -1;
    *out = g;
    return BRG_OK;
}

void brg_graph_destroy(brg_graph *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i]);
    free(g->tensors);
    free(g->name_slots);
    free(g->ops);
    free(g->layers);
    free(g->params);
    free(g);
}

brg_status brg_graph_status(const brg_graph *g) { return g ? g->status : BRG_ERR_INVALID_ARGUMENT; }

const char *brg_graph_last_error(const brg_graph *g) { return g ? g->error : null_graph_message; }

int brg_graph_is_final(const brg_graph *g) { return g && g->finalized; }

brg_status brg_graph_finalize(brg_graph *g) {
    if (!g) return BRG_ERR_INVALID_ARGUMENT;
    if (g->status != BRG_OK) return g->status;
    if (g->finalized) return fail(g, BRG_ERR_INVALID_USAGE, "brg_graph_finalize: the graph is already finalized");
    if (g->layer_open >= 0)
        return fail(g, BRG_ERR_INVALID_USAGE, "brg_graph_finalize: layer '%s' was begun but never ended",
                    g->layers[g->layer_open].name);
    int inputs = 0, losses = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) inputs += g->tensors[i]->kind == BRG_TENSOR_INPUT;
    for (int64_t i = 0; i < g->n_ops; i++) losses += g->ops[i].kind == BRG_OP_CROSS_ENTROPY;
    if (inputs == 0) return fail(g, BRG_ERR_INVALID_USAGE, "brg_graph_finalize: the graph has no input");
    if (losses != 1)
        return fail(g, BRG_ERR_INVALID_USAGE,
                    "brg_graph_finalize: a graph needs exactly one cross-entropy loss, this one has %d", losses);
    g->finalized = 1;
    return BRG_OK;
}

/* ---- inputs, parameters, layers -------------------------------------------------------------- */

/* Checks ndim and shape for brg_input (batch_ok) and brg_param. */
static int check_shape(brg_graph *g, const char *what, const char *name, int ndim, const int64_t *shape,
                       int batch_ok) {
    if (ndim < 1 || ndim > BRG_MAX_DIMS) {
        fail(g, BRG_ERR_SHAPE, "%s '%s': %d dimensions given, 1 to %d allowed", what, name ? name : "?", ndim,
             BRG_MAX_DIMS);
        return 0;
    }
    if (!shape) {
        fail(g, BRG_ERR_INVALID_ARGUMENT, "%s '%s': shape is NULL", what, name ? name : "?");
        return 0;
    }
    for (int d = 0; d < ndim; d++) {
        if (shape[d] > 0) continue;
        if (shape[d] == BRG_BATCH && d == 0 && batch_ok) continue;
        fail(g, BRG_ERR_SHAPE, "%s '%s': dimension %d is %" PRId64 "; dimensions must be positive%s", what,
             name ? name : "?", d, shape[d], batch_ok ? " (BRG_BATCH only as the first)" : "");
        return 0;
    }
    return 1;
}

brg_tensor *brg_input(brg_graph *g, const char *name, brg_dtype dtype, int ndim, const int64_t *shape) {
    if (!can_build(g, "brg_input")) return NULL;
    if (dtype != BRG_F32 && dtype != BRG_I32) {
        fail(g, BRG_ERR_DTYPE, "brg_input '%s': unknown dtype %d", name ? name : "?", (int)dtype);
        return NULL;
    }
    if (!check_shape(g, "brg_input", name, ndim, shape, 1) || !check_new_name(g, "brg_input", name)) return NULL;
    return new_tensor(g, name, BRG_TENSOR_INPUT, dtype, ndim, shape);
}

static int check_init(brg_graph *g, const char *what, const char *name, brg_init init) {
    if ((init.kind != BRG_INIT_ZEROS && init.kind != BRG_INIT_ONES && init.kind != BRG_INIT_NORMAL) ||
        !(init.std >= 0.0f)) {
        fail(g, BRG_ERR_INVALID_ARGUMENT, "%s '%s': invalid initialization (kind %d, std %g)", what, name,
             (int)init.kind, (double)init.std);
        return 0;
    }
    return 1;
}

static brg_tensor *new_param(brg_graph *g, const char *what, const char *name, int ndim, const int64_t *shape,
                             brg_init init) {
    if (!check_shape(g, what, name, ndim, shape, 0) || !check_new_name(g, what, name) ||
        !check_init(g, what, name, init))
        return NULL;
    if (!grow((void **)&g->params, &g->cap_params, g->n_params + 1, sizeof *g->params)) {
        fail(g, BRG_ERR_OUT_OF_MEMORY, "out of memory adding parameter '%s'", name);
        return NULL;
    }
    brg_tensor *t = new_tensor(g, name, BRG_TENSOR_PARAMETER, BRG_F32, ndim, shape);
    if (!t) return NULL;
    t->init = init;
    t->param_index = g->n_params;
    g->params[g->n_params++] = t;
    return t;
}

brg_tensor *brg_param(brg_graph *g, const char *name, int ndim, const int64_t *shape, brg_init init) {
    if (!can_build(g, "brg_param")) return NULL;
    return new_param(g, "brg_param", name, ndim, shape, init);
}

brg_tensor *brg_graph_param(brg_graph *g, const char *name) {
    if (!g || g->status != BRG_OK) return NULL;
    brg_tensor *t = name ? find_tensor(g, name) : NULL;
    if (!t || t->kind != BRG_TENSOR_PARAMETER) {
        fail(g, BRG_ERR_NAME, "brg_graph_param: no parameter named '%s'%s", name ? name : "(NULL)",
             t ? " (that name is not a parameter)" : "");
        return NULL;
    }
    return t;
}

brg_status brg_param_set_init(brg_graph *g, brg_tensor *param, brg_init init) {
    if (!g) return BRG_ERR_INVALID_ARGUMENT;
    if (!can_build(g, "brg_param_set_init")) return g->status;
    if (!param || param->graph != g || param->kind != BRG_TENSOR_PARAMETER)
        return fail(g, BRG_ERR_INVALID_ARGUMENT, "brg_param_set_init: '%s' is not a parameter of this graph",
                    param ? param->name : "(NULL)");
    if (!check_init(g, "brg_param_set_init", param->name, init)) return g->status;
    param->init = init;
    return BRG_OK;
}

static brg__layer *add_layer(brg_graph *g, const char *name, int implicit) {
    for (int i = 0; i < g->n_layers; i++)
        if (strcmp(g->layers[i].name, name) == 0) {
            fail(g, BRG_ERR_NAME, "layer name '%s' is already used in this graph", name);
            return NULL;
        }
    int64_t cap = g->cap_layers;
    if (!grow((void **)&g->layers, &cap, g->n_layers + 1, sizeof *g->layers)) {
        fail(g, BRG_ERR_OUT_OF_MEMORY, "out of memory adding layer '%s'", name);
        return NULL;
    }
    g->cap_layers = (int)cap;
    brg__layer *l = &g->layers[g->n_layers++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->op_begin = l->op_end = g->n_ops;
    l->implicit = implicit;
    return l;
}

brg_status brg_layer_begin(brg_graph *g, const char *fmt, ...) {
    if (!g) return BRG_ERR_INVALID_ARGUMENT;
    if (!can_build(g, "brg_layer_begin")) return g->status;
    if (!fmt) return fail(g, BRG_ERR_NAME, "brg_layer_begin: the layer name is NULL");
    if (g->layer_open >= 0)
        return fail(g, BRG_ERR_INVALID_USAGE, "brg_layer_begin: layer '%s' is still open (layers do not nest)",
                    g->layers[g->layer_open].name);
    char name[BRG_MAX_NAME + 1];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (len <= 0) return fail(g, BRG_ERR_NAME, "brg_layer_begin: the layer name is empty");
    if (len >= BRG_MAX_NAME)
        return fail(g, BRG_ERR_NAME, "brg_layer_begin: layer name '%.40s...' is longer than %d bytes", name,
                    BRG_MAX_NAME - 1);
    if (!add_layer(g, name, 0)) return g->status;
    g->layer_open = g->n_layers - 1;
    return BRG_OK;
}

brg_status brg_layer_end(brg_graph *g) {
    if (!g) return BRG_ERR_INVALID_ARGUMENT;
    if (!can_build(g, "brg_layer_end")) return g->status;
    if (g->layer_open < 0) return fail(g, BRG_ERR_INVALID_USAGE, "brg_layer_end: no layer is open");
    brg__layer *l = &g->layers[g->layer_open];
    if (l->op_end == l->op_begin)
        return fail(g, BRG_ERR_INVALID_USAGE, "brg_layer_end: layer '%s' holds no op", l->name);
    g->layer_open = -1;
    return BRG_OK;
}

/* ---- ops ------------------------------------------------------------------------------------- */

/* What an op constructor checked and inferred, handed to add_op. */
typedef struct op_spec {
    brg_op_kind kind;
    const char *call; /* "brg_linear", for messages */
    const char *name; /* as given (not yet prefixed by the layer) */
    int n_inputs;
    brg_tensor *inputs[BRG__MAX_INPUTS];
    brg_dtype out_dtype;
    int out_ndim;
    int64_t out_shape[BRG_MAX_DIMS];
    int64_t heads;
    brg_matmul_flags flags;
    float eps;
} op_spec;

/* Checks an activation input: present, of this graph, of the right dtype. */
static int check_operand(brg_graph *g, const op_spec *s, const brg_tensor *t, const char *role, brg_dtype dtype) {
    if (!t) {
        fail(g, BRG_ERR_INVALID_ARGUMENT, "%s '%s' in layer '%s': %s is NULL", s->call, s->name ? s->name : "?",
             current_layer_name(g), role);
        return 0;
    }
    if (t->graph != g) {
        fail(g, BRG_ERR_INVALID_ARGUMENT, "%s '%s' in layer '%s': %s '%s' belongs to another graph", s->call,
             s->name ? s->name : "?", current_layer_name(g), role, t->name);
        return 0;
    }
    if (t->dtype != dtype) {
        fail(g, BRG_ERR_DTYPE, "%s '%s' in layer '%s': %s '%s' is %s, %s needed", s->call, s->name ? s->name : "?",
             current_layer_name(g), role, t->name, dtype_name(t->dtype), dtype_name(dtype));
        return 0;
    }
    return 1;
}

/* A shape error naming the op, the layer and the shapes involved. */
static void fail_shape(brg_graph *g, const op_spec *s, const char *why, const brg_tensor *a, const brg_tensor *b) {
    char sa[96], sb[96];
    if (b)
        fail(g, BRG_ERR_SHAPE, "%s '%s' in layer '%s': %s: '%s' %s and '%s' %s", s->call, s->name ? s->name : "?",
             current_layer_name(g), why, a->name, shape_str(a, sa, sizeof sa), b->name, shape_str(b, sb, sizeof sb));
    else
        fail(g, BRG_ERR_SHAPE, "%s '%s' in layer '%s': %s: '%s' %s", s->call, s->name ? s->name : "?",
             current_layer_name(g), why, a->name, shape_str(a, sa, sizeof sa));
}

/* Validates the op's name and writes its full name ("<layer>.<name>") into full. Constructors call it
 * before creating parameters, so a bad name fails with no side effect. */
static int check_op_name(brg_graph *g, const op_spec *s, char *full, size_t size) {
    if (!s->name || !s->name[0]) {
        fail(g, BRG_ERR_NAME, "%s: an op name is required (layer '%s')", s->call, current_layer_name(g));
        return 0;
    }
    if (g->layer_open >= 0)
        snprintf(full, size, "%s.%s", g->layers[g->layer_open].name, s->name);
    else
        snprintf(full, size, "%s", s->name);
    if (strlen(full) >= BRG_MAX_NAME - 8) { /* room for ".weight" */
        fail(g, BRG_ERR_NAME, "%s: op name '%.40s...' is too long (at most %d bytes with its layer prefix)",
             s->call, full, BRG_MAX_NAME - 9);
        return 0;
    }
    if (find_tensor(g, full)) {
        fail(g, BRG_ERR_NAME, "%s: name '%s' is already used in this graph (layer '%s')", s->call, full,
             current_layer_name(g));
        return 0;
    }
    return 1;
}

/* check_op_name for constructors that only validate. */
static int op_name_ok(brg_graph *g, const op_spec *s) {
    char full[BRG_MAX_NAME * 2 + 2];
    return check_op_name(g, s, full, sizeof full);
}

/* The op of spec s named `full` (checked: unique, short enough), in the open layer, or in a new implicit
 * layer of its own when none is open. */
static brg_tensor *add_op_full(brg_graph *g, op_spec *s, const char *full) {
    if (!grow((void **)&g->ops, &g->cap_ops, g->n_ops + 1, sizeof *g->ops)) {
        fail(g, BRG_ERR_OUT_OF_MEMORY, "out of memory adding op '%s'", full);
        return NULL;
    }
    if (g->layer_open < 0 && !add_layer(g, full, 1)) return NULL;
    brg_tensor *out = new_tensor(g, full, BRG_TENSOR_ACTIVATION, s->out_dtype, s->out_ndim, s->out_shape);
    if (!out) return NULL;
    int layer = g->layer_open >= 0 ? g->layer_open : g->n_layers - 1;
    brg__op *op = &g->ops[g->n_ops];
    memset(op, 0, sizeof *op);
    op->index = g->n_ops;
    op->kind = s->kind;
    memcpy(op->name, full, strlen(full) + 1); /* length checked by check_op_name */
    op->layer = layer;
    op->n_inputs = s->n_inputs;
    for (int i = 0; i < s->n_inputs; i++) {
        op->inputs[i] = s->inputs[i];
        s->inputs[i]->consumers++;
    }
    op->output = out;
    op->heads = s->heads;
    op->flags = s->flags;
    op->eps = s->eps;
    out->producer = op->index;
    out->layer = layer;
    g->n_ops++;
    g->layers[layer].op_end = g->n_ops;
    if (s->kind == BRG_OP_CROSS_ENTROPY && g->loss_op < 0) g->loss_op = op->index;
    return out;
}

static brg_tensor *add_op(brg_graph *g, op_spec *s) {
    char full[BRG_MAX_NAME * 2 + 2];
    if (!check_op_name(g, s, full, sizeof full)) return NULL;
    return add_op_full(g, s, full);
}

/* Creates "<layer>.<name>.<suffix>" as a parameter of the op being built. */
static brg_tensor *op_param(brg_graph *g, const op_spec *s, const char *suffix, int ndim, const int64_t *shape,
                            brg_init init) {
    char full[BRG_MAX_NAME * 2 + 16];
    if (g->layer_open >= 0)
        snprintf(full, sizeof full, "%s.%s.%s", g->layers[g->layer_open].name, s->name, suffix);
    else
        snprintf(full, sizeof full, "%s.%s", s->name, suffix);
    return new_param(g, s->call, full, ndim, shape, init);
}

static void spec_init(op_spec *s, brg_op_kind kind, const char *call, const char *name) {
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->call = call;
    s->name = name;
    s->out_dtype = BRG_F32;
}

/* Output shape = input shape with the last dimension replaced. */
static void shape_with_last(op_spec *s, const brg_tensor *x, int64_t last) {
    s->out_ndim = x->ndim;
    memcpy(s->out_shape, x->shape, sizeof s->out_shape);
    s->out_shape[x->ndim - 1] = last;
}

static int positive_arg(brg_graph *g, const op_spec *s, const char *what, int64_t v) {
    if (v > 0) return 1;
    fail(g, BRG_ERR_INVALID_ARGUMENT, "%s '%s' in layer '%s': %s must be positive, got %" PRId64, s->call,
         s->name ? s->name : "?", current_layer_name(g), what, v);
    return 0;
}

brg_tensor *brg_embedding(brg_graph *g, brg_tensor *tokens, int64_t num_embeddings, int64_t dim, const char *name) {
    op_spec s;
    spec_init(&s, BRG_OP_EMBEDDING, "brg_embedding", name);
    if (!can_build(g, s.call) || !check_operand(g, &s, tokens, "tokens", BRG_I32) ||
        !positive_arg(g, &s, "num_embeddings", num_embeddings) || !positive_arg(g, &s, "dim", dim) ||
        !op_name_ok(g, &s))
        return NULL;
    if (tokens->ndim >= BRG_MAX_DIMS) {
        fail_shape(g, &s, "tokens have too many dimensions for an added one", tokens, NULL);
        return NULL;
    }
    s.out_ndim = tokens->ndim + 1;
    memcpy(s.out_shape, tokens->shape, (size_t)tokens->ndim * sizeof(int64_t));
    s.out_shape[tokens->ndim] = dim;
    brg_tensor *w = op_param(g, &s, "weight", 2, (int64_t[]){num_embeddings, dim},
                             (brg_init){BRG_INIT_NORMAL, 0.02f});
    if (!w) return NULL;
    s.n_inputs = 2;
    s.inputs[0] = tokens;
    s.inputs[1] = w;
    return add_op(g, &s);
}

brg_tensor *brg_linear(brg_graph *g, brg_tensor *x, int64_t out_features, const char *name) {
    op_spec s;
    spec_init(&s, BRG_OP_LINEAR, "brg_linear", name);
    if (!can_build(g, s.call) || !check_operand(g, &s, x, "input", BRG_F32) ||
        !positive_arg(g, &s, "out_features", out_features) || !op_name_ok(g, &s))
        return NULL;
    int64_t in = x->shape[x->ndim - 1];
    if (in == BRG_BATCH) {
        fail_shape(g, &s, "the input's last dimension must be fixed", x, NULL);
        return NULL;
    }
    brg_tensor *w = op_param(g, &s, "weight", 2, (int64_t[]){out_features, in}, (brg_init){BRG_INIT_NORMAL, 0.02f});
    brg_tensor *b = w ? op_param(g, &s, "bias", 1, (int64_t[]){out_features}, (brg_init){BRG_INIT_ZEROS, 0}) : NULL;
    if (!b) return NULL;
    s.n_inputs = 3;
    s.inputs[0] = x;
    s.inputs[1] = w;
    s.inputs[2] = b;
    shape_with_last(&s, x, out_features);
    return add_op(g, &s);
}

brg_tensor *brg_matmul(brg_graph *g, brg_tensor *a, brg_tensor *b, brg_matmul_flags flags, const char *name) {
    op_spec s;
    spec_init(&s, BRG_OP_MATMUL, "brg_matmul", name);
    if (!can_build(g, s.call) || !check_operand(g, &s, a, "a", BRG_F32) || !check_operand(g, &s, b, "b", BRG_F32))
        return NULL;
    if ((unsigned)flags & ~(unsigned)(BRG_MATMUL_TRANSPOSE_A | BRG_MATMUL_TRANSPOSE_B)) {
        fail(g, BRG_ERR_INVALID_ARGUMENT, "brg_matmul '%s' in layer '%s': unknown flags 0x%x", name ? name : "?",
             current_layer_name(g), (unsigned)flags);
        return NULL;
    }
    if (!op_name_ok(g, &s)) return NULL;
    if (a->ndim < 2 || b->ndim < 2) {
        fail_shape(g, &s, "both operands need at least 2 dimensions", a, b);
        return NULL;
    }
    int ta = (flags & BRG_MATMUL_TRANSPOSE_A) != 0, tb = (flags & BRG_MATMUL_TRANSPOSE_B) != 0;
    int64_t m = a->shape[a->ndim - 2 + ta], ka = a->shape[a->ndim - 1 - ta];
    int64_t kb = b->shape[b->ndim - 2 + tb], n = b->shape[b->ndim - 1 - tb];
    if (m == BRG_BATCH || ka == BRG_BATCH || kb == BRG_BATCH || n == BRG_BATCH) {
        fail_shape(g, &s, "the matrix dimensions must be fixed (BRG_BATCH only as a leading dimension)", a, b);
        return NULL;
    }
    if (ka != kb) {
        fail_shape(g, &s, "inner dimensions differ", a, b);
        return NULL;
    }
    if (b->ndim != 2) {
        int same = b->ndim == a->ndim;
        for (int d = 0; same && d < a->ndim - 2; d++) same = a->shape[d] == b->shape[d];
        if (!same) {
            fail_shape(g, &s, "b must be 2-D or have a's leading dimensions", a, b);
            return NULL;
        }
    }
    s.n_inputs = 2;
    s.inputs[0] = a;
    s.inputs[1] = b;
    s.flags = flags;
    s.out_ndim = a->ndim;
    memcpy(s.out_shape, a->shape, sizeof s.out_shape);
    s.out_shape[a->ndim - 2] = m;
    s.out_shape[a->ndim - 1] = n;
    return add_op(g, &s);
}

brg_tensor *brg_add(brg_graph *g, brg_tensor *a, brg_tensor *b, const char *name) {
    op_spec s;
    spec_init(&s, BRG_OP_ADD, "brg_add", name);
    if (!can_build(g, s.call) || !check_operand(g, &s, a, "a", BRG_F32) || !check_operand(g, &s, b, "b", BRG_F32) ||
        !op_name_ok(g, &s))
        return NULL;
    int ok = b->ndim <= a->ndim;
    for (int d = 0; ok && d < b->ndim; d++) ok = b->shape[b->ndim - 1 - d] == a->shape[a->ndim - 1 - d];
    if (!ok) {
        fail_shape(g, &s, "b must have a's shape or the shape of a's trailing dimensions", a, b);
        return NULL;
    }
    s.n_inputs = 2;
    s.inputs[0] = a;
    s.inputs[1] = b;
    s.out_ndim = a->ndim;
    memcpy(s.out_shape, a->shape, sizeof s.out_shape);
    return add_op(g, &s);
}

brg_tensor *brg_layernorm(brg_graph *g, brg_tensor *x, float eps, const char *name) {
    op_spec s;
    spec_init(&s, BRG_OP_LAYERNORM, "brg_layernorm", name);
    if (!can_build(g, s.call) || !check_operand(g, &s, x, "input", BRG_F32)) return NULL;
    if (!(eps > 0.0f)) {
        fail(g, BRG_ERR_INVALID_ARGUMENT, "brg_layernorm '%s' in layer '%s': eps must be positive, got %g",
             name ? name : "?", current_layer_name(g), (double)eps);
        return NULL;
    }
    if (!op_name_ok(g, &s)) return NULL;
    int64_t c = x->shape[x->ndim - 1];
    if (c == BRG_BATCH) {
        fail_shape(g, &s, "the normalized (last) dimension must be fixed", x, NULL);
        return NULL;
    }
    brg_tensor *w = op_param(g, &s, "weight", 1, (int64_t[]){c}, (brg_init){BRG_INIT_ONES, 0});
    brg_tensor *b = w ? op_param(g, &s, "bias", 1, (int64_t[]){c}, (brg_init){BRG_INIT_ZEROS, 0}) : NULL;
    if (!b) return NULL;
    s.n_inputs = 3;
    s.inputs[0] = x;
    s.inputs[1] = w;
    s.inputs[2] = b;
    s.eps = eps;
    shape_with_last(&s, x, c);
    return add_op(g, &s);
}

static brg_tensor *unary(brg_graph *g, brg_op_kind kind, const char *call, brg_tensor *x, const char *name) {
    op_spec s;
    spec_init(&s, kind, call, name);
    if (!can_build(g, call) || !check_operand(g, &s, x, "input", BRG_F32) || !op_name_ok(g, &s)) return NULL;
    s.n_inputs = 1;
    s.inputs[0] = x;
    shape_with_last(&s, x, x->shape[x->ndim - 1]);
    return add_op(g, &s);
}

brg_tensor *brg_gelu(brg_graph *g, brg_tensor *x, const char *name) {
    return unary(g, BRG_OP_GELU, "brg_gelu", x, name);
}

brg_tensor *brg_relu(brg_graph *g, brg_tensor *x, const char *name) {
    return unary(g, BRG_OP_RELU, "brg_relu", x, name);
}

brg_tensor *brg_causal_attention(brg_graph *g, brg_tensor *qkv, int64_t heads, const char *name) {
    op_spec s;
    spec_init(&s, BRG_OP_ATTENTION, "brg_causal_attention", name);
    if (!can_build(g, s.call) || !check_operand(g, &s, qkv, "qkv", BRG_F32) || !positive_arg(g, &s, "heads", heads) ||
        !op_name_ok(g, &s))
        return NULL;
    if (qkv->ndim != 3 || qkv->shape[1] <= 0 || qkv->shape[2] <= 0) {
        fail_shape(g, &s, "qkv must be (B, T, 3C)", qkv, NULL);
        return NULL;
    }
    int64_t c3 = qkv->shape[2];
    if (c3 % 3 != 0 || (c3 / 3) % heads != 0) {
        char why[128];
        snprintf(why, sizeof why, "the last dimension must be 3C with C divisible by heads (%" PRId64 ")", heads);
        fail_shape(g, &s, why, qkv, NULL);
        return NULL;
    }
    /* The scores a sample's heads compute are (heads, T, T) (the CPU backend's workspace holds a head's). */
    int64_t probs = qkv->shape[0] == BRG_BATCH ? 1 : qkv->shape[0];
    if (!brg__count_mul(probs, heads, BRG_MAX_TENSOR_ELEMENTS, &probs) ||
        !brg__count_mul(probs, qkv->shape[1], BRG_MAX_TENSOR_ELEMENTS, &probs) ||
        !brg__count_mul(probs, qkv->shape[1], BRG_MAX_TENSOR_ELEMENTS, &probs)) {
        char why[128];
        snprintf(why, sizeof why, "%" PRId64 " heads x T x T attention scores pass %lld elements per sample",
                 heads, (long long)BRG_MAX_TENSOR_ELEMENTS);
        fail_shape(g, &s, why, qkv, NULL);
        return NULL;
    }
    s.n_inputs = 1;
    s.inputs[0] = qkv;
    s.heads = heads;
    shape_with_last(&s, qkv, c3 / 3);
    return add_op(g, &s);
}

brg_tensor *brg_cross_entropy(brg_graph *g, brg_tensor *logits, brg_tensor *targets, const char *name) {
    op_spec s;
    spec_init(&s, BRG_OP_CROSS_ENTROPY, "brg_cross_entropy", name);
    if (!can_build(g, s.call) || !check_operand(g, &s, logits, "logits", BRG_F32) ||
        !check_operand(g, &s, targets, "targets", BRG_I32) || !op_name_ok(g, &s))
        return NULL;
    int ok = targets->ndim == logits->ndim - 1 && logits->shape[logits->ndim - 1] > 0;
    for (int d = 0; ok && d < targets->ndim; d++) ok = targets->shape[d] == logits->shape[d];
    if (!ok) {
        fail_shape(g, &s, "targets must have the logits' leading dimensions", logits, targets);
        return NULL;
    }
    if (g->loss_op >= 0) {
        fail(g, BRG_ERR_INVALID_USAGE, "brg_cross_entropy '%s' in layer '%s': the graph already has a loss ('%s')",
             name, current_layer_name(g), g->ops[g->loss_op].name);
        return NULL;
    }
    s.n_inputs = 2;
    s.inputs[0] = logits;
    s.inputs[1] = targets;
    s.out_ndim = targets->ndim;
    memcpy(s.out_shape, targets->shape, sizeof s.out_shape);
    return add_op(g, &s);
}

/* ---- tensor parallelism ------------------------------------------------------------------------ */

brg_status brg_tensor_parallel(brg_graph *g, brg_tensor *output, brg_tp_role role, int blocks) {
    if (!g) return BRG_ERR_INVALID_ARGUMENT;
    if (!can_build(g, "brg_tensor_parallel")) return g->status;
    if (!output || output->graph != g || output->kind != BRG_TENSOR_ACTIVATION)
        return fail(g, BRG_ERR_INVALID_ARGUMENT, "brg_tensor_parallel: '%s' is not the output of an op of this graph",
                    output ? output->name : "(NULL)");
    brg__op *op = &g->ops[output->producer];
    int linear = op->kind == BRG_OP_LINEAR;
    int fits = role == BRG_TP_REPLICATED || ((role == BRG_TP_COLUMN || role == BRG_TP_ROW) && linear) ||
               (role == BRG_TP_VOCAB && op->kind == BRG_OP_EMBEDDING);
    if (role < BRG_TP_REPLICATED || role > BRG_TP_VOCAB || !fits)
        return fail(g, BRG_ERR_INVALID_ARGUMENT,
                    "brg_tensor_parallel: op '%s' (%s) cannot take role %d (column and row split a linear, vocab an "
                    "embedding)",
                    op->name, brg_op_kind_name(op->kind), (int)role);
    int64_t features = output->shape[output->ndim - 1];
    if (blocks < 1 || (blocks > 1 && (role != BRG_TP_COLUMN || features % blocks != 0)))
        return fail(g, BRG_ERR_INVALID_ARGUMENT,
                    "brg_tensor_parallel: op '%s': %d blocks%s", op->name, blocks,
                    blocks < 1 ? " (at least 1)" : role != BRG_TP_COLUMN ? " (only a column split has blocks)"
                                                                          : " do not divide its output features");
    op->tp_role = role;
    op->tp_blocks = blocks;
    return BRG_OK;
}

brg_status brg__graph_open_layer(brg_graph *g, const char *name, int implicit) {
    if (!can_build(g, "brg__graph_open_layer")) return g ? g->status : BRG_ERR_INVALID_ARGUMENT;
    if (g->layer_open >= 0) return fail(g, BRG_ERR_INVALID_USAGE, "layer '%s' is still open", g->layers[g->layer_open].name);
    if (!add_layer(g, name, implicit)) return g->status;
    g->layer_open = g->n_layers - 1;
    return BRG_OK;
}

brg_status brg__graph_close_layer(brg_graph *g) {
    if (!can_build(g, "brg__graph_close_layer")) return g ? g->status : BRG_ERR_INVALID_ARGUMENT;
    if (g->layer_open < 0) return fail(g, BRG_ERR_INVALID_USAGE, "no layer is open");
    g->layer_open = -1;
    return BRG_OK;
}

brg_tensor *brg__graph_param_named(brg_graph *g, const char *name, int ndim, const int64_t *shape, brg_init init) {
    if (!can_build(g, "brg__graph_param_named")) return NULL;
    return new_param(g, "brg__graph_param_named", name, ndim, shape, init);
}

brg_tensor *brg__graph_op_named(brg_graph *g, brg_op_kind kind, const char *name, int n_inputs, brg_tensor *const *inputs,
                                int ndim, const int64_t *shape, int64_t heads, brg_matmul_flags flags, float eps) {
    op_spec s;
    spec_init(&s, kind, "brg__graph_op_named", name);
    if (!can_build(g, s.call)) return NULL;
    if (g->layer_open < 0) {
        fail(g, BRG_ERR_INVALID_USAGE, "brg__graph_op_named '%s': no layer is open", name ? name : "?");
        return NULL;
    }
    if (!name || !name[0] || strlen(name) >= BRG_MAX_NAME - 8 || find_tensor(g, name) || n_inputs < 1 ||
        n_inputs > BRG__MAX_INPUTS || ndim < 1 || ndim > BRG_MAX_DIMS) {
        fail(g, BRG_ERR_NAME, "brg__graph_op_named: op name '%s' is empty, too long or used, or its inputs or "
             "dimensions are out of range", name ? name : "?");
        return NULL;
    }
    for (int i = 0; i < n_inputs; i++)
        if (!inputs[i] || inputs[i]->graph != g) {
            fail(g, BRG_ERR_INVALID_ARGUMENT, "brg__graph_op_named '%s': input %d is missing", name, i);
            return NULL;
        }
    s.n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) s.inputs[i] = inputs[i];
    s.out_dtype = BRG_F32;
    s.out_ndim = ndim;
    memcpy(s.out_shape, shape, (size_t)ndim * sizeof *shape);
    s.heads = heads;
    s.flags = flags;
    s.eps = eps;
    if (kind == BRG_OP_CROSS_ENTROPY && g->loss_op >= 0) {
        fail(g, BRG_ERR_INVALID_USAGE, "brg__graph_op_named '%s': the graph already has a loss", name);
        return NULL;
    }
    return add_op_full(g, &s, name);
}

/* ---- introspection --------------------------------------------------------------------------- */

int64_t brg_graph_tensor_count(const brg_graph *g) { return g ? g->n_tensors : 0; }
int64_t brg_graph_op_count(const brg_graph *g) { return g ? g->n_ops : 0; }
int brg_graph_layer_count(const brg_graph *g) { return g ? g->n_layers : 0; }

int64_t brg_graph_param_count(const brg_graph *g) {
    int64_t n = 0;
    for (int64_t i = 0; g && i < g->n_params; i++) n += brg__tensor_numel(g->params[i], 1);
    return n;
}

brg_status brg_tensor_get_info(const brg_tensor *t, brg_tensor_info *info) {
    if (!t || !info) return BRG_ERR_INVALID_ARGUMENT;
    memset(info, 0, sizeof *info);
    info->name = t->name;
    info->kind = t->kind;
    info->dtype = t->dtype;
    info->ndim = t->ndim;
    memcpy(info->shape, t->shape, sizeof info->shape);
    info->bytes_per_sample = brg__tensor_numel(t, 1) * brg__dtype_size(t->dtype);
    info->producer = t->producer;
    info->layer = t->layer;
    info->consumers = t->consumers;
    return BRG_OK;
}

brg_status brg_graph_tensor_info(const brg_graph *g, int64_t index, brg_tensor_info *info) {
    if (!g || !info) return BRG_ERR_INVALID_ARGUMENT;
    if (index < 0 || index >= g->n_tensors) return BRG_ERR_NOT_FOUND;
    return brg_tensor_get_info(g->tensors[index], info);
}

static int64_t op_param_bytes(const brg__op *op) {
    int64_t bytes = 0;
    for (int i = 0; i < op->n_inputs; i++)
        if (op->inputs[i]->kind == BRG_TENSOR_PARAMETER) bytes += brg__tensor_numel(op->inputs[i], 1) * 4;
    return bytes;
}

static int64_t op_saved_bytes(const brg__op *op, const brg__op_costs *c) {
    return brg__tensor_numel(op->output, 1) * brg__dtype_size(op->output->dtype) + c->aux_floats * 4;
}

brg_status brg_graph_op_info(const brg_graph *g, int64_t index, brg_op_info *info) {
    if (!g || !info) return BRG_ERR_INVALID_ARGUMENT;
    if (index < 0 || index >= g->n_ops) return BRG_ERR_NOT_FOUND;
    const brg__op *op = &g->ops[index];
    brg__op_costs c;
    brg__op_costs_get(op, 1, &c);
    memset(info, 0, sizeof *info);
    info->name = op->name;
    info->kind = op->kind;
    info->kind_name = brg_op_kind_name(op->kind);
    info->layer = op->layer;
    info->n_inputs = op->n_inputs;
    for (int i = 0; i < op->n_inputs; i++) info->inputs[i] = op->inputs[i];
    info->output = op->output;
    for (int p = 0; p < BRG_PASS_COUNT; p++) {
        info->flops[p] = c.flops[p];
        info->bytes_moved[p] = c.bytes_moved[p];
    }
    info->saved_bytes_per_sample = op_saved_bytes(op, &c);
    info->param_bytes = op_param_bytes(op);
    info->cheap_to_recompute = c.cheap_to_recompute;
    return BRG_OK;
}

brg_status brg_graph_layer_info(const brg_graph *g, int index, brg_layer_info *info) {
    if (!g || !info) return BRG_ERR_INVALID_ARGUMENT;
    if (index < 0 || index >= g->n_layers) return BRG_ERR_NOT_FOUND;
    const brg__layer *l = &g->layers[index];
    memset(info, 0, sizeof *info);
    info->name = l->name;
    info->op_begin = l->op_begin;
    info->op_end = l->op_end;
    for (int64_t i = l->op_begin; i < l->op_end; i++) {
        const brg__op *op = &g->ops[i];
        brg__op_costs c;
        brg__op_costs_get(op, 1, &c);
        for (int p = 0; p < BRG_PASS_COUNT; p++) info->flops[p] += c.flops[p];
        info->saved_bytes_per_sample += op_saved_bytes(op, &c);
        for (int k = 0; k < op->n_inputs; k++) {
            const brg_tensor *t = op->inputs[k];
            if (t->kind != BRG_TENSOR_PARAMETER) continue;
            int seen = 0; /* a parameter read twice inside one layer counts once */
            for (int64_t j = l->op_begin; j < i && !seen; j++)
                for (int q = 0; q < g->ops[j].n_inputs; q++) seen |= g->ops[j].inputs[q] == t;
            for (int q = 0; q < k; q++) seen |= op->inputs[q] == t;
            if (!seen) info->param_count += brg__tensor_numel(t, 1);
        }
    }
    info->param_bytes = info->param_count * 4;
    /* Activations produced here and read by a later layer. */
    for (int64_t i = l->op_begin; i < l->op_end; i++) {
        const brg_tensor *out = g->ops[i].output;
        int later = 0;
        for (int64_t j = l->op_end; j < g->n_ops && !later; j++)
            for (int q = 0; q < g->ops[j].n_inputs; q++) later |= g->ops[j].inputs[q] == out;
        if (later) info->output_bytes_per_sample += brg__tensor_numel(out, 1) * brg__dtype_size(out->dtype);
    }
    return BRG_OK;
}

brg_status brg_graph_boundary_bytes(const brg_graph *g, int layer, int64_t *bytes_per_sample) {
    if (!g || !bytes_per_sample) return BRG_ERR_INVALID_ARGUMENT;
    if (layer < 0 || layer >= g->n_layers) return BRG_ERR_NOT_FOUND;
    int64_t total = 0;
    int64_t cut = g->layers[layer].op_end; /* ops before index `cut` are on the left */
    for (int64_t i = 0; i < cut; i++) {
        const brg_tensor *out = g->ops[i].output;
        int crosses = 0;
        for (int64_t j = cut; j < g->n_ops && !crosses; j++)
            for (int q = 0; q < g->ops[j].n_inputs; q++) crosses |= g->ops[j].inputs[q] == out;
        if (crosses) total += brg__tensor_numel(out, 1) * brg__dtype_size(out->dtype);
    }
    *bytes_per_sample = total;
    return BRG_OK;
}
