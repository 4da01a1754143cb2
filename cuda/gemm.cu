// GEMMs: row-major products mapped onto cuBLAS's column-major ones, through cublasGemmStridedBatchedEx, or
// through cuBLASLt when an epilogue (bias, bias + GELU, the bias gradient) rides along. cuBLASLt's algorithm
// is chosen once per problem (shapes, types, alignments) and kept, so a given product runs the same kernel
// every time: results do not change from call to call, or with the pipeline's split.
#include <climits>
#include <cstdlib>
#include <cstring>

#include "backend.cuh"

/* A row-major C (m, n) is a column-major C^T (n, m): C^T = op(B)^T op(A)^T, so cuBLAS gets B as its
 * first operand and A as its second, with m and n swapped. */
typedef struct column_major {
    cublasOperation_t op_first, op_second;
    int64_t rows, cols, depth; /* cuBLAS m, n, k */
} column_major;

static column_major to_column_major(const brg__cuda_gemm_args *g) {
    column_major cm;
    cm.op_first = g->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cm.op_second = g->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cm.rows = g->n;
    cm.cols = g->m;
    cm.depth = g->k;
    return cm;
}

static cudaDataType_t data_type(brg__cuda_dtype t) { return t == BRG__CUDA_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

/* Largest power of two (at most 256) dividing the address. */
static int alignment_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int align = 256;
    while (align > 1 && (a % (uintptr_t)align) != 0) align /= 2;
    return align;
}

static brg_status check_args(const brg__cuda_gemm_args *g, char *msg) {
    int64_t batch = g->batch ? g->batch : 1;
    int64_t dims[] = {g->m, g->n, g->k, g->lda, g->ldb, g->ldc, batch};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        BRG__REQUIRE(dims[i] >= 0 && dims[i] <= INT_MAX, msg,
                     "GEMM (%lld x %lld x %lld, batch %lld): a dimension or leading dimension is outside the cuBLAS "
                     "integer range",
                     (long long)g->m, (long long)g->n, (long long)g->k, (long long)batch);
    BRG__REQUIRE(g->ab_type == BRG__CUDA_F32 || g->ab_type == BRG__CUDA_BF16, msg, "GEMM: operand type %d",
                 (int)g->ab_type);
    BRG__REQUIRE(g->c_type == BRG__CUDA_F32 || g->c_type == BRG__CUDA_BF16, msg, "GEMM: result type %d",
                 (int)g->c_type);
    int64_t a_cols = g->trans_a ? g->m : g->k, b_cols = g->trans_b ? g->k : g->n;
    BRG__REQUIRE(
        g->lda >= (a_cols > 1 ? a_cols : 1) && g->ldb >= (b_cols > 1 ? b_cols : 1) && g->ldc >= (g->n > 1 ? g->n : 1),
        msg, "GEMM (%lld x %lld x %lld): leading dimensions %lld, %lld, %lld are shorter than the rows",
        (long long)g->m, (long long)g->n, (long long)g->k, (long long)g->lda, (long long)g->ldb, (long long)g->ldc);
    BRG__REQUIRE(g->epilogue == BRG__CUDA_EPILOGUE_NONE || batch == 1, msg, "GEMM: an epilogue needs batch 1, got %lld",
                 (long long)batch);
    return BRG_OK;
}

static brg_status gemm_classic(brg__cuda_ctx *c, const brg__cuda_gemm_args *g, char *msg) {
    column_major cm = to_column_major(g);
    int64_t batch = g->batch ? g->batch : 1;
    /* The handle's stream was set once, at creation, before its workspace: cublasSetStream here would
     * reset the workspace to cuBLAS's default pool. */
    BRG__CUBLAS_CHECK(cublasGemmStridedBatchedEx(
                          c->blas, cm.op_first, cm.op_second, (int)cm.rows, (int)cm.cols, (int)cm.depth, &g->alpha,
                          g->b, data_type(g->ab_type), (int)g->ldb, (long long)g->stride_b, g->a, data_type(g->ab_type),
                          (int)g->lda, (long long)g->stride_a, &g->beta, g->c, data_type(g->c_type), (int)g->ldc,
                          (long long)g->stride_c, (int)batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                      msg);
    return BRG_OK;
}

/* ---- cuBLASLt with epilogues ---- */

typedef struct gemm_key {
    int op_first, op_second;
    int64_t rows, cols, depth, lda, ldb, ldc, ld_aux;
    int ab_type, c_type, epilogue;
    int align_a, align_b, align_c, align_bias, align_aux;
} gemm_key;

typedef struct gemm_entry {
    gemm_key key;
    int found;
    cublasLtMatmulAlgo_t algo;
} gemm_entry;

struct brg__cuda_gemm_cache {
    gemm_entry *entries;
    int count, capacity;
};

brg_status brg__cuda_gemm_cache_create(brg__cuda_gemm_cache **out, char *msg) {
    brg__cuda_gemm_cache *cache = (brg__cuda_gemm_cache *)calloc(1, sizeof *cache);
    if (!cache) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    *out = cache;
    return BRG_OK;
}

void brg__cuda_gemm_cache_destroy(brg__cuda_gemm_cache *cache) {
    if (!cache) return;
    free(cache->entries);
    free(cache);
}

static gemm_entry *cache_find(brg__cuda_gemm_cache *cache, const gemm_key *key) {
    for (int i = 0; i < cache->count; i++)
        if (memcmp(&cache->entries[i].key, key, sizeof *key) == 0) return &cache->entries[i];
    return NULL;
}

static gemm_entry *cache_add(brg__cuda_gemm_cache *cache, const gemm_key *key) {
    if (cache->count == cache->capacity) {
        int capacity = cache->capacity ? 2 * cache->capacity : 32;
        gemm_entry *e = (gemm_entry *)realloc(cache->entries, (size_t)capacity * sizeof *e);
        if (!e) return NULL;
        cache->entries = e;
        cache->capacity = capacity;
    }
    gemm_entry *e = &cache->entries[cache->count++];
    memset(e, 0, sizeof *e);
    e->key = *key;
    return e;
}

typedef struct lt_problem {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t first, second, result;
    cublasLtMatmulPreference_t preference;
} lt_problem;

static void lt_problem_free(lt_problem *p) {
    if (p->preference) cublasLtMatmulPreferenceDestroy(p->preference);
    if (p->result) cublasLtMatrixLayoutDestroy(p->result);
    if (p->second) cublasLtMatrixLayoutDestroy(p->second);
    if (p->first) cublasLtMatrixLayoutDestroy(p->first);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
}

static brg_status lt_problem_make(brg__cuda_ctx *c, const brg__cuda_gemm_args *g, const column_major *cm, lt_problem *p,
                                  char *msg) {
    brg_status s = BRG_OK;
    cublasLtEpilogue_t epilogue = g->epilogue == BRG__CUDA_EPILOGUE_GELU_AUX_BIAS ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS
                                  : g->epilogue == BRG__CUDA_EPILOGUE_ROW_SUMS_A  ? CUBLASLT_EPILOGUE_BGRADB
                                  : g->epilogue == BRG__CUDA_EPILOGUE_DGELU       ? CUBLASLT_EPILOGUE_DGELU
                                                                                  : CUBLASLT_EPILOGUE_BIAS;
    int32_t op_first = cm->op_first, op_second = cm->op_second;
    uint64_t workspace = c->blas_workspace_bytes;
    /* Stored shapes: an operand used transposed is stored (depth, rows) rather than (rows, depth). */
    uint64_t first_rows = cm->op_first == CUBLAS_OP_N ? cm->rows : cm->depth;
    uint64_t first_cols = cm->op_first == CUBLAS_OP_N ? cm->depth : cm->rows;
    uint64_t second_rows = cm->op_second == CUBLAS_OP_N ? cm->depth : cm->cols;
    uint64_t second_cols = cm->op_second == CUBLAS_OP_N ? cm->cols : cm->depth;
    uint32_t align_a = (uint32_t)alignment_of(g->b), align_b = (uint32_t)alignment_of(g->a),
             align_c = (uint32_t)alignment_of(g->c);
    BRG__CUBLAS_CHECK_GOTO(s, cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), msg, fail);
    BRG__CUBLAS_CHECK_GOTO(
        s, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first), msg, fail);
    BRG__CUBLAS_CHECK_GOTO(
        s, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second), msg, fail);
    BRG__CUBLAS_CHECK_GOTO(
        s, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue), msg, fail);
    BRG__CUBLAS_CHECK_GOTO(
        s, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof g->bias), msg,
        fail);
    if (g->epilogue == BRG__CUDA_EPILOGUE_ROW_SUMS_A) {
        cudaDataType_t sums_type = CUDA_R_32F;
        BRG__CUBLAS_CHECK_GOTO(s,
                               cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &sums_type,
                                                              sizeof sums_type),
                               msg, fail);
    }
    if (g->epilogue == BRG__CUDA_EPILOGUE_GELU_AUX_BIAS || g->epilogue == BRG__CUDA_EPILOGUE_DGELU) {
        int64_t ld_aux = g->ld_aux;
        BRG__CUBLAS_CHECK_GOTO(
            s, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g->aux, sizeof g->aux),
            msg, fail);
        BRG__CUBLAS_CHECK_GOTO(
            s, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld_aux, sizeof ld_aux), msg,
            fail);
    }
    BRG__CUBLAS_CHECK_GOTO(
        s, cublasLtMatrixLayoutCreate(&p->first, data_type(g->ab_type), first_rows, first_cols, g->ldb), msg, fail);
    BRG__CUBLAS_CHECK_GOTO(
        s, cublasLtMatrixLayoutCreate(&p->second, data_type(g->ab_type), second_rows, second_cols, g->lda), msg, fail);
    BRG__CUBLAS_CHECK_GOTO(
        s, cublasLtMatrixLayoutCreate(&p->result, data_type(g->c_type), (uint64_t)cm->rows, (uint64_t)cm->cols, g->ldc),
        msg, fail);
    BRG__CUBLAS_CHECK_GOTO(s, cublasLtMatmulPreferenceCreate(&p->preference), msg, fail);
    BRG__CUBLAS_CHECK_GOTO(s,
                           cublasLtMatmulPreferenceSetAttribute(p->preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                                &workspace, sizeof workspace),
                           msg, fail);
    BRG__CUBLAS_CHECK_GOTO(s,
                           cublasLtMatmulPreferenceSetAttribute(
                               p->preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof align_a),
                           msg, fail);
    BRG__CUBLAS_CHECK_GOTO(s,
                           cublasLtMatmulPreferenceSetAttribute(
                               p->preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof align_b),
                           msg, fail);
    BRG__CUBLAS_CHECK_GOTO(s,
                           cublasLtMatmulPreferenceSetAttribute(
                               p->preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof align_c),
                           msg, fail);
    BRG__CUBLAS_CHECK_GOTO(s,
                           cublasLtMatmulPreferenceSetAttribute(
                               p->preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof align_c),
                           msg, fail);
    return BRG_OK;
fail:
    lt_problem_free(p);
    memset(p, 0, sizeof *p);
    return s;
}

static brg_status gemm_lt(brg__cuda_ctx *c, const brg__cuda_gemm_args *g, char *msg) {
    column_major cm = to_column_major(g);
    if ((g->epilogue == BRG__CUDA_EPILOGUE_GELU_AUX_BIAS || g->epilogue == BRG__CUDA_EPILOGUE_DGELU) &&
        (g->ld_aux % 8 != 0 || g->ld_aux < g->n))
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED,
                                "GELU epilogue: the pre-activation's row stride %lld is not a multiple of 8",
                                (long long)g->ld_aux);
    gemm_key key;
    memset(&key, 0, sizeof key); /* padding too: keys compare with memcmp */
    key.op_first = cm.op_first;
    key.op_second = cm.op_second;
    key.rows = cm.rows;
    key.cols = cm.cols;
    key.depth = cm.depth;
    key.lda = g->lda;
    key.ldb = g->ldb;
    key.ldc = g->ldc;
    key.ld_aux = g->ld_aux;
    key.ab_type = g->ab_type;
    key.c_type = g->c_type;
    key.epilogue = g->epilogue;
    key.align_a = alignment_of(g->a);
    key.align_b = alignment_of(g->b);
    key.align_c = alignment_of(g->c);
    key.align_bias = alignment_of(g->bias);
    key.align_aux = g->aux ? alignment_of(g->aux) : 0;
    lt_problem p;
    memset(&p, 0, sizeof p);
    BRG__CHECK(lt_problem_make(c, g, &cm, &p, msg));
    brg_status s = BRG_OK;
    gemm_entry *e = cache_find(c->gemm_cache, &key);
    if (!e) {
        cublasLtMatmulHeuristicResult_t result;
        int returned = 0;
        memset(&result, 0, sizeof result);
        cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(c->lt, p.op, p.first, p.second, p.result, p.result,
                                                           p.preference, 1, &result, &returned);
        e = cache_add(c->gemm_cache, &key);
        if (!e) {
            lt_problem_free(&p);
            return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        }
        e->found = hs == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS;
        if (e->found) e->algo = result.algo;
    }
    if (!e->found) {
        lt_problem_free(&p);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED,
                                "cuBLASLt has no algorithm for a %lld x %lld x %lld product with this epilogue",
                                (long long)g->m, (long long)g->n, (long long)g->k);
    }
    BRG__CUBLAS_CHECK_GOTO(s,
                           cublasLtMatmul(c->lt, p.op, &g->alpha, g->b, p.first, g->a, p.second, &g->beta, g->c,
                                          p.result, g->c, p.result, &e->algo, c->blas_workspace,
                                          c->blas_workspace_bytes, c->stream),
                           msg, done);
done:
    lt_problem_free(&p);
    return s;
}

brg_status brg__cuda_gemm(brg__cuda_ctx *c, const brg__cuda_gemm_args *g, char *msg) {
    BRG__CHECK(check_args(g, msg));
    int64_t batch = g->batch ? g->batch : 1;
    if (g->m == 0 || g->n == 0 || batch == 0) return BRG_OK;
    if (g->epilogue != BRG__CUDA_EPILOGUE_NONE) return gemm_lt(c, g, msg);
    return gemm_classic(c, g, msg);
}
