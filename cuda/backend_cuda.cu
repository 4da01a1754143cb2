// The CUDA backend behind the backend vtable (engine/runtime/backend.h): device memory from the arena,
// the op families' kernels on a compute stream, bf16 copies of parameters for a bf16 backend, one
// deferred GEMM to fuse a linear with the GELU after it, batched sums of squares, and errors kept for the
// next call that can return them (cuda/cuda.h has the conventions).
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <nvtx3/nvToolsExt.h>

#include "backend.cuh"
#include "cuda.h"
extern "C" {
#include "runtime/backend.h"
}

#define SEGMENT_BYTES ((size_t)256 << 20)
#define BLAS_WORKSPACE_BYTES ((size_t)32 << 20)
#define WORKSPACE_GRANULE ((size_t)1 << 20)

typedef struct shadow_entry {
    const float *param;
    brg__bf16 *copy;
    int64_t n;
    int valid;
} shadow_entry;

typedef struct squares_entry {
    const float *x;
    int64_t n;
} squares_entry;

/* What a held-back linear call is (cuda_backend.pending). */
typedef enum pending_kind { PENDING_NONE, PENDING_FORWARD, PENDING_BACKWARD } pending_kind;

typedef struct cuda_backend {
    brg__backend base; /* first: a brg__backend * is a cuda_backend * */
    brg__cuda_ctx ctx;
    cudaStream_t transfer;
    brg__cuda_arena *arena;
    void *workspace;
    size_t workspace_bytes;
    shadow_entry *shadows;
    int n_shadows, cap_shadows;
    /* A linear call held back until the next call on the backend, fused with it when that is the GELU next
     * to it: a forward with the GELU's forward reading its output (GELU_AUX_BIAS), the input gradient of a
     * backward with the backward of the GELU making its input (DGELU). Anything else runs it first. */
    pending_kind pending;
    brg__op_call pending_call;
    /* Sums of squares: the last run of consecutive calls is the plan; the next run computes all of it at once. */
    squares_entry *plan, *run;
    int plan_len, run_len, squares_cap;
    int in_run, cache_valid;
    double *host_squares;       /* pinned, squares_cap */
    uint64_t *host_descriptors; /* pinned, 2 * squares_cap */
    /* The device's record of invalid ids, copied to pinned memory after each kernel that checks ids. */
    brg__cuda_error_record *record_host;
    cudaEvent_t record_event;
    int record_pending;
    uint64_t epoch; /* counts calls that queued work on the compute stream */
    /* An invalid id found by a kernel: the error of the one call that reports it, not kept (the data was
     * wrong, not the backend), and the device record cleared for the next batch. */
    brg_status id_error;
    char id_msg[BRG_ERROR_MESSAGE_MAX];
    brg_status error;
    char error_msg[BRG_ERROR_MESSAGE_MAX];
} cuda_backend;

static cuda_backend *cb(brg__backend *b) { return (cuda_backend *)b; }
static const cuda_backend *cb_const(const brg__backend *b) { return (const cuda_backend *)b; }

/* Keeps the first failure; every later call returns it. */
static void keep_error(cuda_backend *b, brg_status s, const char *msg) {
    if (s == BRG_OK || b->error != BRG_OK) return;
    b->error = s;
    /* The message is cut to leave room for the prefix. */
    snprintf(b->error_msg, sizeof b->error_msg, "CUDA backend (device %d): %.*s", b->ctx.device,
             (int)sizeof b->error_msg - 40, msg && msg[0] ? msg : brg_status_string(s));
}

static void keep_cuda_error(cuda_backend *b, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return;
    char msg[BRG_ERROR_MESSAGE_MAX];
    snprintf(msg, sizeof msg, "%s failed: %s", what, cudaGetErrorString(e));
    keep_error(b, brg__cuda_status_of(e), msg);
}

static void enter(cuda_backend *b) { keep_cuda_error(b, cudaSetDevice(b->ctx.device), "cudaSetDevice"); }

/* ---- deferred work ---- */

static void flush_pending(cuda_backend *b) {
    if (b->pending == PENDING_NONE) return;
    int forward = b->pending == PENDING_FORWARD;
    b->pending = PENDING_NONE;
    b->epoch++;
    brg_status s = forward ? brg__cuda_linear_forward(&b->ctx, &b->pending_call)
                           : brg__cuda_linear_backward(&b->ctx, &b->pending_call);
    keep_error(b, s, b->pending_call.msg);
}

static void end_squares_run(cuda_backend *b) {
    if (!b->in_run) return;
    b->in_run = 0;
    b->cache_valid = 0;
    squares_entry *t = b->plan;
    b->plan = b->run;
    b->run = t;
    b->plan_len = b->run_len;
    b->run_len = 0;
}

/* What every entry that reads or writes device memory does first. */
static void before_call(cuda_backend *b) {
    enter(b);
    flush_pending(b);
    end_squares_run(b);
    b->epoch++;
}

/* ---- invalid ids recorded by the kernels ---- */

static void check_record(cuda_backend *b) {
    if (!b->record_pending) return;
    cudaError_t e = cudaEventQuery(b->record_event);
    if (e == cudaErrorNotReady) return;
    b->record_pending = 0;
    if (e != cudaSuccess) {
        keep_cuda_error(b, e, "the copy of the id check");
        return;
    }
    brg__cuda_error_record *r = b->record_host;
    if (r->flag != 1) return;
    const brg__op *op = (const brg__op *)(uintptr_t)r->op;
    int embedding = op && op->kind == BRG_OP_EMBEDDING;
    if (b->id_error == BRG_OK) {
        b->id_error = BRG_ERR_INVALID_ARGUMENT;
        snprintf(b->id_msg, sizeof b->id_msg, "op '%s' (%s): %s %lld at position %lld is outside [0, %lld)",
                 op ? op->name : "?", op ? brg_op_kind_name(op->kind) : "?", embedding ? "token" : "target", r->value,
                 r->position, r->limit);
    }
    /* Reported once: the record starts afresh, in stream order, for the kernels queued after this. */
    memset(r, 0, sizeof *r);
    keep_cuda_error(b, cudaMemsetAsync(b->ctx.errors, 0, sizeof *b->ctx.errors, b->ctx.stream),
                    "clearing the id check's record");
}

/* The kept error, else an invalid id not yet reported (once), into msg. */
static brg_status take_error(cuda_backend *b, char *msg) {
    check_record(b);
    if (b->error != BRG_OK) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, b->error, "%s", b->error_msg);
    brg_status s = b->id_error;
    if (s != BRG_OK) brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, s, "%s", b->id_msg);
    b->id_error = BRG_OK;
    return s;
}

brg_status brg__cuda_checked(brg__cuda_ctx *c, char *msg) {
    cuda_backend *b = c->owner;
    BRG__CUDA_CHECK(
        cudaMemcpyAsync(b->record_host, c->errors, sizeof *b->record_host, cudaMemcpyDeviceToHost, c->stream), msg);
    BRG__CUDA_CHECK(cudaEventRecord(b->record_event, c->stream), msg);
    b->record_pending = 1;
    return BRG_OK;
}

/* ---- memory ---- */

static void *reserve_segment(void *context, size_t bytes) {
    cuda_backend *b = (cuda_backend *)context;
    void *p = NULL;
    if (cudaSetDevice(b->ctx.device) != cudaSuccess || cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError(); /* out of memory is reported as NULL, not kept */
        return NULL;
    }
    return p;
}

static void release_segment(void *context, void *base) {
    (void)context;
    cudaFree(base);
}

void *brg__cuda_workspace(brg__cuda_ctx *c, size_t bytes, char *msg) {
    cuda_backend *b = c->owner;
    if (bytes <= b->workspace_bytes) return b->workspace;
    /* Kernels still queued on the compute stream may read the old block; the new one is used after them. */
    brg__cuda_arena_free(b->arena, b->workspace);
    b->workspace_bytes = 0;
    size_t want = (bytes + WORKSPACE_GRANULE - 1) / WORKSPACE_GRANULE * WORKSPACE_GRANULE;
    b->workspace = brg__cuda_arena_alloc(b->arena, want);
    if (!b->workspace) {
        brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY,
                         "out of device memory for %zu bytes of workspace (%lld bytes held)", want,
                         (long long)brg__cuda_arena_allocated(b->arena));
        return NULL;
    }
    b->workspace_bytes = want;
    return b->workspace;
}

/* ---- bf16 copies of parameters ---- */

static shadow_entry *shadow_find(cuda_backend *b, const void *param) {
    for (int i = 0; i < b->n_shadows; i++)
        if (b->shadows[i].param == param) return &b->shadows[i];
    return NULL;
}

static void shadow_invalidate(cuda_backend *b, const void *p) {
    shadow_entry *e = shadow_find(b, p);
    if (e) e->valid = 0;
}

static void shadow_drop(cuda_backend *b, const void *p) {
    shadow_entry *e = shadow_find(b, p);
    if (!e) return;
    brg__cuda_arena_free(b->arena, e->copy);
    *e = b->shadows[--b->n_shadows];
}

static brg_status shadow_of(cuda_backend *b, const float *param, int64_t n, const void **out, char *msg) {
    shadow_entry *e = shadow_find(b, param);
    if (!e) {
        if (b->n_shadows == b->cap_shadows) {
            int cap = b->cap_shadows ? 2 * b->cap_shadows : 64;
            shadow_entry *s = (shadow_entry *)realloc(b->shadows, (size_t)cap * sizeof *s);
            if (!s) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
            b->shadows = s;
            b->cap_shadows = cap;
        }
        brg__bf16 *copy = (brg__bf16 *)brg__cuda_arena_alloc(b->arena, (size_t)n * sizeof(brg__bf16));
        if (!copy)
            return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY,
                                    "out of device memory for the bf16 copy of a parameter of %lld elements (%lld "
                                    "bytes held)",
                                    (long long)n, (long long)brg__cuda_arena_allocated(b->arena));
        e = &b->shadows[b->n_shadows++];
        e->param = param;
        e->copy = copy;
        e->n = n;
        e->valid = 0;
    }
    if (!e->valid) {
        BRG__CHECK(brg__cuda_convert(e->copy, BRG__CUDA_BF16, param, BRG__CUDA_F32, n, b->ctx.stream, msg));
        e->valid = 1;
    }
    *out = e->copy;
    return BRG_OK;
}

brg_status brg__cuda_operand(brg__cuda_ctx *c, const brg__op_call *call, int q, const void **ptr) {
    const brg_tensor *t = call->op->inputs[q];
    if (t->kind == BRG_TENSOR_PARAMETER && t->dtype == BRG_F32 && c->act == BRG__CUDA_BF16)
        return shadow_of(c->owner, (const float *)call->in[q], brg__tensor_numel(t, 1), ptr, call->msg);
    *ptr = call->in[q];
    return BRG_OK;
}

brg__cuda_dtype brg__cuda_operand_type(const brg__cuda_ctx *c, const brg__op_call *call, int q) {
    return call->op->inputs[q]->dtype == BRG_I32 ? BRG__CUDA_I32 : c->act;
}

brg__cuda_dtype brg__cuda_grad_type(const brg__cuda_ctx *c, const brg__op_call *call, int q) {
    return call->op->inputs[q]->kind == BRG_TENSOR_PARAMETER ? BRG__CUDA_F32 : c->act;
}

/* ---- ops ---- */

typedef brg_status (*op_fn)(brg__cuda_ctx *, const brg__op_call *);

static op_fn forward_of(brg_op_kind kind) {
    switch (kind) {
    case BRG_OP_EMBEDDING: return brg__cuda_embedding_forward;
    case BRG_OP_LINEAR: return brg__cuda_linear_forward;
    case BRG_OP_MATMUL: return brg__cuda_matmul_forward;
    case BRG_OP_ADD: return brg__cuda_add_forward;
    case BRG_OP_LAYERNORM: return brg__cuda_layernorm_forward;
    case BRG_OP_GELU: return brg__cuda_gelu_forward;
    case BRG_OP_RELU: return brg__cuda_relu_forward;
    case BRG_OP_ATTENTION: return brg__cuda_attention_forward;
    case BRG_OP_CROSS_ENTROPY: return brg__cuda_cross_entropy_forward;
    case BRG_OP_TP_COPY: /* the group's collectives: the stage runs them, not a kernel */
    case BRG_OP_TP_REDUCE:
    case BRG_OP_TP_GATHER:
    case BRG_OP_TP_SCATTER:
    case BRG_OP_KIND_COUNT: break;
    }
    return NULL;
}

static op_fn backward_of(brg_op_kind kind) {
    switch (kind) {
    case BRG_OP_EMBEDDING: return brg__cuda_embedding_backward;
    case BRG_OP_LINEAR: return brg__cuda_linear_backward;
    case BRG_OP_MATMUL: return brg__cuda_matmul_backward;
    case BRG_OP_ADD: return brg__cuda_add_backward;
    case BRG_OP_LAYERNORM: return brg__cuda_layernorm_backward;
    case BRG_OP_GELU: return brg__cuda_gelu_backward;
    case BRG_OP_RELU: return brg__cuda_relu_backward;
    case BRG_OP_ATTENTION: return brg__cuda_attention_backward;
    case BRG_OP_CROSS_ENTROPY: return brg__cuda_cross_entropy_backward;
    case BRG_OP_TP_COPY:
    case BRG_OP_TP_REDUCE:
    case BRG_OP_TP_GATHER:
    case BRG_OP_TP_SCATTER:
    case BRG_OP_KIND_COUNT: break;
    }
    return NULL;
}

/* Whether the linear's forward may wait for the next call: the op right after it, in the same layer (so
 * in the same stage), is a GELU and the only reader of its output. */
static int fusable(const brg__op_call *call) {
    const brg__op *op = call->op;
    const brg_graph *g = op->output->graph;
    if (op->kind != BRG_OP_LINEAR || op->output->consumers != 1 || op->index + 1 >= g->n_ops) return 0;
    const brg__op *next = &g->ops[op->index + 1];
    return next->kind == BRG_OP_GELU && next->inputs[0] == op->output && next->layer == op->layer &&
           op->inputs[1]->shape[0] % 8 == 0;
}

/* A failure worth keeping: a CUDA or library failure leaves the backend unusable; a bad shape or an
 * invalid id is the call's alone. */
static brg_status finish_call(cuda_backend *b, const brg__op_call *call, brg_status s) {
    if (s == BRG_ERR_BACKEND || s == BRG_ERR_OUT_OF_MEMORY) keep_error(b, s, call->msg);
    return s;
}

static brg_status returned_error(cuda_backend *b, const brg__op_call *call) { return take_error(b, call->msg); }

static brg_status run_op(cuda_backend *b, const brg__op_call *call, int forward) {
    op_fn fn = forward ? forward_of(call->op->kind) : backward_of(call->op->kind);
    if (!fn)
        return brg__message_set(call->msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED,
                                "op '%s': kind %d has no CUDA %s kernel", call->op->name, (int)call->op->kind,
                                forward ? "forward" : "backward");
    char range[BRG_MAX_NAME + 48];
    snprintf(range, sizeof range, "%s %s (%s)", forward ? "forward" : "backward", call->op->name,
             brg_op_kind_name(call->op->kind));
    nvtxRangePushA(range);
    brg_status s = fn(&b->ctx, call);
    nvtxRangePop();
    return finish_call(b, call, s);
}

/* The held-back linear call and `call` (the GELU next to it) as one GEMM, or, where cuBLASLt has no fused
 * algorithm, one after the other. */
static brg_status run_fused(cuda_backend *b, const brg__op_call *call,
                            brg_status (*fused)(brg__cuda_ctx *, const brg__op_call *, const brg__op_call *),
                            const char *range, int forward) {
    b->pending = PENDING_NONE;
    BRG__CHECK(returned_error(b, call));
    nvtxRangePushA(range);
    brg_status s = fused(&b->ctx, &b->pending_call, call);
    nvtxRangePop();
    if (s != BRG_ERR_UNSUPPORTED) return finish_call(b, call, s);
    BRG__CHECK(run_op(b, &b->pending_call, forward));
    return run_op(b, call, forward);
}

static brg_status cuda_forward(brg__backend *be, const brg__op_call *call) {
    cuda_backend *b = cb(be);
    enter(b);
    end_squares_run(b);
    b->epoch++;
    if (b->pending == PENDING_FORWARD && call->op->kind == BRG_OP_GELU && call->in[0] == b->pending_call.out)
        return run_fused(b, call, brg__cuda_linear_gelu_forward, "forward linear + gelu (cuBLASLt epilogue)", 1);
    flush_pending(b);
    BRG__CHECK(returned_error(b, call));
    if (fusable(call)) {
        b->pending_call = *call;
        b->pending = PENDING_FORWARD;
        return BRG_OK;
    }
    return run_op(b, call, 1);
}

/* Whether the input gradient of a linear's backward may wait for the next call: its input is the output
 * of the GELU right before it in the same layer, read by nothing else, and the gradient is fresh (it holds
 * nothing the fused GEMM would leave out). */
static int backward_fusable(const brg__op_call *call) {
    const brg__op *op = call->op;
    const brg_graph *g = op->output->graph;
    if (op->kind != BRG_OP_LINEAR || !call->din[0] || !(call->din_fresh & 1u) || op->index < 1) return 0;
    const brg__op *prev = &g->ops[op->index - 1];
    return prev->kind == BRG_OP_GELU && prev->output == op->inputs[0] && prev->output->consumers == 1 &&
           prev->layer == op->layer && op->inputs[0]->shape[op->inputs[0]->ndim - 1] % 8 == 0;
}

/* The GELU's backward meets the held-back input gradient of the linear reading its output, and its own
 * gradient is fresh too: GELU'(pre) times the product is all of it. */
static int meets_pending_backward(const cuda_backend *b, const brg__op_call *call) {
    const brg__op_call *p = &b->pending_call;
    return b->pending == PENDING_BACKWARD && call->op->kind == BRG_OP_GELU &&
           call->op->index + 1 == p->op->index && call->out == p->in[0] && call->din[0] &&
           (call->din_fresh & 1u);
}

static brg_status cuda_backward(brg__backend *be, const brg__op_call *call) {
    cuda_backend *b = cb(be);
    enter(b);
    end_squares_run(b);
    b->epoch++;
    if (meets_pending_backward(b, call))
        return run_fused(b, call, brg__cuda_linear_dgelu_backward,
                         "backward linear input + gelu (cuBLASLt DGELU epilogue)", 0);
    flush_pending(b);
    BRG__CHECK(returned_error(b, call));
    if (backward_fusable(call)) {
        /* The weight and bias gradients now; the input gradient waits for the GELU's backward. */
        brg__op_call now = *call;
        now.din[0] = NULL;
        now.din_fresh &= ~1u;
        if (now.din[1] || now.din[2]) BRG__CHECK(run_op(b, &now, 0));
        b->pending_call = *call;
        b->pending_call.din[1] = b->pending_call.din[2] = NULL;
        b->pending = PENDING_BACKWARD;
        return BRG_OK;
    }
    return run_op(b, call, 0);
}

/* ---- memory entries of the vtable ---- */

static int64_t cuda_element_bytes(const brg__backend *be, brg_dtype dtype) {
    return dtype == BRG_F32 && cb_const(be)->ctx.act == BRG__CUDA_BF16 ? 2 : 4;
}

static void *cuda_alloc_uninit(brg__backend *be, size_t bytes) {
    cuda_backend *b = cb(be);
    enter(b);
    end_squares_run(b);
    b->epoch++;
    return brg__cuda_arena_alloc(b->arena, bytes);
}

static void *cuda_alloc(brg__backend *be, size_t bytes) {
    cuda_backend *b = cb(be);
    void *p = cuda_alloc_uninit(be, bytes);
    if (!p) return NULL;
    cudaError_t e = cudaMemsetAsync(p, 0, brg__cuda_arena_block_bytes(b->arena, p), b->ctx.stream);
    if (e != cudaSuccess) {
        keep_cuda_error(b, e, "cudaMemsetAsync (zero-filling an allocation)");
        brg__cuda_arena_free(b->arena, p);
        return NULL;
    }
    return p;
}

static int pending_uses(const cuda_backend *b, const void *p) {
    if (b->pending == PENDING_NONE) return 0;
    const brg__op_call *c = &b->pending_call;
    int uses = c->out == p || c->dout == p;
    for (int q = 0; q < BRG__MAX_INPUTS; q++) uses |= c->in[q] == p || c->din[q] == p;
    return uses;
}

static void cuda_free(brg__backend *be, void *p) {
    cuda_backend *b = cb(be);
    if (!p) return;
    enter(b);
    end_squares_run(b);
    if (pending_uses(b, p)) flush_pending(b);
    shadow_drop(b, p);
    if (brg__cuda_arena_free(b->arena, p) != BRG_OK)
        keep_error(b, BRG_ERR_INTERNAL, "free of a pointer the arena did not give");
}

static void cuda_zero(brg__backend *be, void *p, size_t bytes) {
    cuda_backend *b = cb(be);
    before_call(b);
    shadow_invalidate(b, p);
    keep_cuda_error(b, cudaMemsetAsync(p, 0, bytes, b->ctx.stream), "cudaMemsetAsync");
}

static void cuda_copy(brg__backend *be, void *dst, const void *src, size_t bytes) {
    cuda_backend *b = cb(be);
    before_call(b);
    shadow_invalidate(b, dst);
    keep_cuda_error(b, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, b->ctx.stream),
                    "cudaMemcpyAsync (device to device)");
}

static void cuda_upload(brg__backend *be, void *dst, const void *host, size_t bytes) {
    cuda_backend *b = cb(be);
    before_call(b);
    shadow_invalidate(b, dst);
    /* From pageable memory the bytes are staged before the call returns: the caller may reuse `host`. */
    keep_cuda_error(b, cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, b->ctx.stream),
                    "cudaMemcpyAsync (host to device)");
}

static void cuda_download(brg__backend *be, void *host, const void *src, size_t bytes) {
    cuda_backend *b = cb(be);
    before_call(b);
    cudaError_t e = cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, b->ctx.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(b->ctx.stream);
    if (e != cudaSuccess) {
        memset(host, 0, bytes);
        keep_cuda_error(b, e, "cudaMemcpyAsync (device to host)");
    }
    check_record(b);
}

static void cuda_accumulate(brg__backend *be, float *dst, const float *src, int64_t n) {
    cuda_backend *b = cb(be);
    before_call(b);
    shadow_invalidate(b, dst);
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    keep_error(b, brg__cuda_accumulate(dst, src, n, b->ctx.stream, msg), msg);
}

static void cuda_scale(brg__backend *be, float *x, int64_t n, float factor) {
    cuda_backend *b = cb(be);
    before_call(b);
    shadow_invalidate(b, x);
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    keep_error(b, brg__cuda_scale(x, n, factor, b->ctx.stream, msg), msg);
}

static void cuda_adamw(brg__backend *be, float *param, const float *grad, float *m, float *v, int64_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, int step) {
    cuda_backend *b = cb(be);
    before_call(b);
    shadow_entry *e = shadow_find(b, param);
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status s = brg__cuda_adamw(param, grad, m, v, e ? (void *)e->copy : NULL, n, lr, beta1, beta2, eps,
                                   weight_decay, step, b->ctx.stream, msg);
    if (e) e->valid = s == BRG_OK;
    keep_error(b, s, msg);
}

/* ---- sums of squares ---- */

static int squares_reserve(cuda_backend *b, int count) {
    if (count <= b->squares_cap) return 1;
    int cap = b->squares_cap ? b->squares_cap : 256;
    while (cap < count) cap *= 2;
    squares_entry *plan = (squares_entry *)realloc(b->plan, (size_t)cap * sizeof *plan);
    if (plan) b->plan = plan;
    squares_entry *run = (squares_entry *)realloc(b->run, (size_t)cap * sizeof *run);
    if (run) b->run = run;
    double *squares = NULL;
    uint64_t *descriptors = NULL;
    if (!plan || !run || cudaMallocHost((void **)&squares, (size_t)cap * sizeof *squares) != cudaSuccess ||
        cudaMallocHost((void **)&descriptors, (size_t)cap * 2 * sizeof *descriptors) != cudaSuccess) {
        cudaGetLastError();
        if (squares) cudaFreeHost(squares);
        return 0;
    }
    if (b->host_squares) cudaFreeHost(b->host_squares);
    if (b->host_descriptors) cudaFreeHost(b->host_descriptors);
    b->host_squares = squares;
    b->host_descriptors = descriptors;
    b->squares_cap = cap;
    return 1;
}

/* host_squares[i] = the sum of squares of entries[i], for count entries, in one pass and one wait. */
static brg_status compute_squares(cuda_backend *b, const squares_entry *entries, int count, char *msg) {
    for (int i = 0; i < count; i++) {
        b->host_descriptors[2 * i] = (uint64_t)(uintptr_t)entries[i].x;
        b->host_descriptors[2 * i + 1] = (uint64_t)entries[i].n;
    }
    size_t descriptor_bytes = (size_t)count * 2 * sizeof(uint64_t);
    size_t partial_bytes = (size_t)count * BRG__CUDA_SQUARES_BLOCKS * sizeof(double);
    unsigned char *ws = (unsigned char *)brg__cuda_workspace(
        &b->ctx, descriptor_bytes + partial_bytes + (size_t)count * sizeof(double), msg);
    if (!ws) return BRG_ERR_OUT_OF_MEMORY;
    uint64_t *descriptors = (uint64_t *)ws;
    double *partials = (double *)(ws + descriptor_bytes);
    double *out = partials + (size_t)count * BRG__CUDA_SQUARES_BLOCKS;
    BRG__CHECK(brg__cuda_sum_squares(out, b->host_descriptors, descriptors, partials, count, b->ctx.stream, msg));
    BRG__CUDA_CHECK(
        cudaMemcpyAsync(b->host_squares, out, (size_t)count * sizeof(double), cudaMemcpyDeviceToHost, b->ctx.stream),
        msg);
    /* The descriptors' upload reads host_descriptors: the wait also covers it before they are rewritten. */
    BRG__CUDA_CHECK(cudaStreamSynchronize(b->ctx.stream), msg);
    return BRG_OK;
}

static int same_entry(const squares_entry *e, const float *x, int64_t n) { return e->x == x && e->n == n; }

static double cuda_sum_squares(brg__backend *be, const float *x, int64_t n) {
    cuda_backend *b = cb(be);
    enter(b);
    flush_pending(b);
    if (b->error != BRG_OK || n <= 0) return 0.0;
    if (!b->in_run) {
        b->in_run = 1;
        b->run_len = 0;
        b->cache_valid = 0;
    }
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    int index = b->run_len;
    if (!squares_reserve(b, b->plan_len > index + 1 ? b->plan_len : index + 1)) {
        keep_error(b, BRG_ERR_OUT_OF_MEMORY, "out of host memory for sums of squares");
        return 0.0;
    }
    b->run[b->run_len++] = (squares_entry){x, n};
    /* The first call of a run that repeats the last one computes every sum the last run asked for. */
    if (index == 0 && b->plan_len > 0 && same_entry(&b->plan[0], x, n)) {
        brg_status s = compute_squares(b, b->plan, b->plan_len, msg);
        keep_error(b, s, msg);
        b->cache_valid = s == BRG_OK;
    }
    if (b->cache_valid && index < b->plan_len && same_entry(&b->plan[index], x, n)) return b->host_squares[index];
    b->cache_valid = 0; /* the run left the plan: one at a time from here */
    squares_entry one = {x, n};
    brg_status s = compute_squares(b, &one, 1, msg);
    keep_error(b, s, msg);
    check_record(b);
    return s == BRG_OK ? b->host_squares[0] : 0.0;
}

/* ---- statistics and lifetime ---- */

static int64_t cuda_allocated(const brg__backend *be) { return brg__cuda_arena_allocated(cb_const(be)->arena); }
static int64_t cuda_peak(const brg__backend *be) { return brg__cuda_arena_peak(cb_const(be)->arena); }
static void cuda_reset_peak(brg__backend *be) { brg__cuda_arena_reset_peak(cb(be)->arena); }

static void release(cuda_backend *b) {
    if (!b) return;
    cudaSetDevice(b->ctx.device);
    if (b->ctx.stream) cudaStreamSynchronize(b->ctx.stream);
    if (b->ctx.blas) cublasDestroy(b->ctx.blas);
    if (b->ctx.lt) cublasLtDestroy(b->ctx.lt);
    brg__cuda_gemm_cache_destroy(b->ctx.gemm_cache);
    if (b->ctx.errors) cudaFree(b->ctx.errors);
    if (b->record_host) cudaFreeHost(b->record_host);
    if (b->record_event) cudaEventDestroy(b->record_event);
    if (b->host_squares) cudaFreeHost(b->host_squares);
    if (b->host_descriptors) cudaFreeHost(b->host_descriptors);
    /* The transfer stream is the transport's too: a transfer left running ends with its communicator. */
    if (b->transfer) cudaStreamDestroy(b->transfer);
    if (b->ctx.stream) cudaStreamDestroy(b->ctx.stream);
    brg__cuda_arena_destroy(b->arena);
    free(b->shadows);
    free(b->plan);
    free(b->run);
    cudaGetLastError();
    free(b);
}

static void cuda_destroy(brg__backend *be) {
    cuda_backend *b = cb(be);
    enter(b);
    flush_pending(b);
    release(b);
}

static brg_status cuda_status(brg__backend *be, char *msg) {
    cuda_backend *b = cb(be);
    enter(b);
    flush_pending(b);
    return take_error(b, msg);
}

static const brg__backend_vtable cuda_vtable = {
    /* name */ "cuda",
    /* element_bytes */ cuda_element_bytes,
    /* alloc */ cuda_alloc,
    /* alloc_uninit */ cuda_alloc_uninit,
    /* free */ cuda_free,
    /* zero */ cuda_zero,
    /* copy */ cuda_copy,
    /* upload */ cuda_upload,
    /* download */ cuda_download,
    /* forward */ cuda_forward,
    /* backward */ cuda_backward,
    /* accumulate */ cuda_accumulate,
    /* sum_squares */ cuda_sum_squares,
    /* scale */ cuda_scale,
    /* adamw */ cuda_adamw,
    /* allocated */ cuda_allocated,
    /* peak */ cuda_peak,
    /* reset_peak */ cuda_reset_peak,
    /* destroy */ cuda_destroy,
    /* status */ cuda_status,
    /* host_kernels */ 0,
};

/* ---- creation and the entries cuda.h gives C callers ---- */

static brg_status create(cuda_backend *b, int bf16, char *msg) {
    brg__cuda_ctx *c = &b->ctx;
    c->act = bf16 ? BRG__CUDA_BF16 : BRG__CUDA_F32;
    c->owner = b;
    const char *attention = getenv("BRG_CUDA_ATTENTION"); /* docs/cuda.md: the attention kernels */
    c->attention_simt = attention && strcmp(attention, "simt") == 0;
    BRG__CUDA_CHECK(cudaSetDevice(c->device), msg);
    BRG__CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), msg);
    BRG__CUDA_CHECK(cudaStreamCreateWithFlags(&b->transfer, cudaStreamNonBlocking), msg);
    BRG__CUDA_CHECK(cudaEventCreateWithFlags(&b->record_event, cudaEventDisableTiming), msg);
    BRG__CUDA_CHECK(cudaMalloc((void **)&c->errors, sizeof *c->errors), msg);
    /* On the compute stream, which is non-blocking: a cudaMemset on the legacy stream is not ordered with
     * it, so the first id-checking kernel could run before the record is cleared. */
    BRG__CUDA_CHECK(cudaMemsetAsync(c->errors, 0, sizeof *c->errors, c->stream), msg);
    BRG__CUDA_CHECK(cudaMallocHost((void **)&b->record_host, sizeof *b->record_host), msg);
    memset(b->record_host, 0, sizeof *b->record_host);
    brg__cuda_arena_source source = {reserve_segment, release_segment, b};
    BRG__CHECK(brg__cuda_arena_create(&b->arena, &source, SEGMENT_BYTES, msg));
    c->blas_workspace = brg__cuda_arena_alloc(b->arena, BLAS_WORKSPACE_BYTES);
    if (!c->blas_workspace)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY,
                                "out of device memory for the cuBLAS workspace on GPU %d", c->device);
    c->blas_workspace_bytes = BLAS_WORKSPACE_BYTES;
    BRG__CUBLAS_CHECK(cublasCreate(&c->blas), msg);
    BRG__CUBLAS_CHECK(cublasLtCreate(&c->lt), msg);
    BRG__CUBLAS_CHECK(cublasSetStream(c->blas, c->stream), msg);
    /* A workspace of its own keeps cuBLAS's choices fixed for a given problem (no allocation-dependent
     * fallbacks), which with one stream per handle makes its products repeatable. */
    BRG__CUBLAS_CHECK(cublasSetWorkspace(c->blas, c->blas_workspace, c->blas_workspace_bytes), msg);
    BRG__CHECK(brg__cuda_gemm_cache_create(&c->gemm_cache, msg));
    return BRG_OK;
}

extern "C" brg_status brg__backend_cuda_create(brg__backend **out, int device, int bf16, char *msg) {
    int n = brg__cuda_device_count();
    if (n == 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_NO_DEVICE, "no CUDA device: %s",
                                brg__cuda_no_device_reason());
    if (!out || device < 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "CUDA backend: device %d",
                                device);
    cuda_backend *b = (cuda_backend *)calloc(1, sizeof *b);
    if (!b) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    b->base.vt = &cuda_vtable;
    b->ctx.device = device % n;
    brg_status s = create(b, bf16, msg);
    if (s != BRG_OK) {
        release(b);
        return s;
    }
    *out = &b->base;
    return BRG_OK;
}

extern "C" int brg__cuda_backend_is(const brg__backend *b) { return b && b->vt == &cuda_vtable; }

extern "C" void brg__cuda_backend_streams(const brg__backend *be, int *device, void **compute, void **transfer) {
    const cuda_backend *b = cb_const(be);
    if (device) *device = b->ctx.device;
    if (compute) *compute = b->ctx.stream;
    if (transfer) *transfer = b->transfer;
}

extern "C" brg_status brg__cuda_backend_flush(brg__backend *be, char *msg) {
    cuda_backend *b = cb(be);
    enter(b);
    flush_pending(b);
    end_squares_run(b);
    return brg__cuda_backend_status(be, msg);
}

extern "C" uint64_t brg__cuda_backend_epoch(const brg__backend *be) { return cb_const(be)->epoch; }

extern "C" brg_status brg__cuda_backend_status(const brg__backend *be, char *msg) {
    const cuda_backend *b = cb_const(be);
    if (b->error == BRG_OK) return BRG_OK;
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, b->error, "%s", b->error_msg);
}
