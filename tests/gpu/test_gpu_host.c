/* The CUDA build's parts that run without a GPU: the device arena's bookkeeping, and the command line on a
 * machine without one (brigade train --device cuda says which device is missing; brigade bench measures
 * the CPU). Runs everywhere; the arena cases only where brigade was built with CUDA. */
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "brigade.h"
#include "brigade_config.h"
#include "harness.h"
#if BRG_HAVE_CUDA
#include "cuda/cuda.h"
#endif

extern char **environ;

#define TINY_GPT "gpt:layers=1,hidden=32,heads=2,vocab=16,seq=8"

/* ---- the arena, over host memory ---- */
#if BRG_HAVE_CUDA

typedef struct host_source {
    int reserves, releases, refuse;
    size_t last_bytes;
} host_source;

static void *host_reserve(void *context, size_t bytes) {
    host_source *s = context;
    if (s->refuse) return NULL;
    s->reserves++;
    s->last_bytes = bytes;
    return aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
}

static void host_release(void *context, void *base) {
    host_source *s = context;
    s->releases++;
    free(base);
}

static brg__cuda_arena *new_arena(host_source *hs, size_t segment) {
    brg__cuda_arena_source src = {host_reserve, host_release, hs};
    brg__cuda_arena *a = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(brg__cuda_arena_create(&a, &src, segment, msg), msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    return a;
}

static void test_arena_alignment_and_statistics(void) {
    host_source hs = {0};
    brg__cuda_arena *a = new_arena(&hs, 1 << 20);
    void *p = brg__cuda_arena_alloc(a, 1), *q = brg__cuda_arena_alloc(a, 300), *z = brg__cuda_arena_alloc(a, 0);
    CU_ASSERT_PTR_NOT_NULL(p);
    CU_ASSERT_PTR_NOT_NULL(q);
    CU_ASSERT_PTR_NOT_NULL(z);
    CU_ASSERT_EQUAL((uintptr_t)p % BRG__CUDA_ARENA_ALIGNMENT, 0);
    CU_ASSERT_EQUAL((uintptr_t)q % BRG__CUDA_ARENA_ALIGNMENT, 0);
    BRG_ASSERT_EQ_INT(brg__cuda_arena_block_bytes(a, p), 256);
    BRG_ASSERT_EQ_INT(brg__cuda_arena_block_bytes(a, q), 512);
    BRG_ASSERT_EQ_INT(brg__cuda_arena_allocated(a), 1024);
    BRG_ASSERT_EQ_INT(brg__cuda_arena_peak(a), 1024);
    BRG_ASSERT_EQ_INT(brg__cuda_arena_segments(a), 1);
    CU_ASSERT(brg__cuda_arena_reserved(a) >= (1 << 20));
    BRG_ASSERT_OK(brg__cuda_arena_free(a, q), "free");
    BRG_ASSERT_EQ_INT(brg__cuda_arena_allocated(a), 512);
    BRG_ASSERT_EQ_INT(brg__cuda_arena_peak(a), 1024);
    brg__cuda_arena_reset_peak(a);
    BRG_ASSERT_EQ_INT(brg__cuda_arena_peak(a), 512);
    /* A pointer it did not give, twice freed or foreign, changes nothing. */
    BRG_ASSERT_STATUS(brg__cuda_arena_free(a, q), BRG_ERR_INVALID_ARGUMENT);
    int local;
    BRG_ASSERT_STATUS(brg__cuda_arena_free(a, &local), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_OK(brg__cuda_arena_free(a, NULL), "free(NULL)");
    BRG_ASSERT_EQ_INT(brg__cuda_arena_allocated(a), 512);
    BRG_ASSERT_EQ_INT(brg__cuda_arena_block_bytes(a, q), 0);
    brg__cuda_arena_destroy(a);
    BRG_ASSERT_EQ_INT(hs.releases, hs.reserves);
}

/* Blocks never overlap; freeing everything coalesces back into whole segments that are reused. */
static void test_arena_reuse_and_coalescing(void) {
    host_source hs = {0};
    brg__cuda_arena *a = new_arena(&hs, 4 << 20);
    enum { N = 600 };
    static void *blocks[N];
    static size_t sizes[N];
    uint64_t rng = 12345;
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < N; i++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            sizes[i] = 1 + (size_t)(rng >> 33) % 20000;
            blocks[i] = brg__cuda_arena_alloc(a, sizes[i]);
            CU_ASSERT_PTR_NOT_NULL_FATAL(blocks[i]);
            memset(blocks[i], i & 0xff, sizes[i]);
        }
        int intact = 1;
        for (int i = 0; i < N; i++)
            for (size_t k = 0; k < sizes[i]; k += 97) intact &= ((unsigned char *)blocks[i])[k] == (i & 0xff);
        CU_ASSERT(intact); /* no block overlaps another */
        for (int i = 0; i < N; i += 2) BRG_ASSERT_OK(brg__cuda_arena_free(a, blocks[i]), "free even");
        for (int i = 1; i < N; i += 2) BRG_ASSERT_OK(brg__cuda_arena_free(a, blocks[i]), "free odd");
        BRG_ASSERT_EQ_INT(brg__cuda_arena_allocated(a), 0);
    }
    int segments = brg__cuda_arena_segments(a);
    CU_ASSERT(segments <= 4); /* rounds after the first reuse the coalesced space */
    /* Everything free again: one block nearly the size of a segment fits without a new one. */
    void *big = brg__cuda_arena_alloc(a, (4 << 20) - 4096);
    CU_ASSERT_PTR_NOT_NULL(big);
    BRG_ASSERT_EQ_INT(brg__cuda_arena_segments(a), segments);
    brg__cuda_arena_destroy(a);
    BRG_ASSERT_EQ_INT(hs.releases, hs.reserves);
}

static void test_arena_large_blocks_and_refusal(void) {
    host_source hs = {0};
    brg__cuda_arena *a = new_arena(&hs, 1 << 20);
    void *big = brg__cuda_arena_alloc(a, (size_t)5 << 20); /* larger than a segment: a segment of its own */
    CU_ASSERT_PTR_NOT_NULL(big);
    CU_ASSERT(hs.last_bytes >= ((size_t)5 << 20));
    hs.refuse = 1;
    CU_ASSERT_PTR_NULL(brg__cuda_arena_alloc(a, (size_t)64 << 20)); /* the source says no: NULL */
    void *small = brg__cuda_arena_alloc(a, 1000);                   /* what is reserved still serves */
    CU_ASSERT_PTR_NOT_NULL(small);
    hs.refuse = 0;
    brg__cuda_arena_destroy(a);
    BRG_ASSERT_EQ_INT(hs.releases, hs.reserves);
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg__cuda_arena *none = NULL;
    brg__cuda_arena_source src = {host_reserve, host_release, &hs};
    BRG_ASSERT_STATUS(brg__cuda_arena_create(&none, &src, 0, msg), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg__cuda_arena_create(&none, NULL, 1, msg), BRG_ERR_INVALID_ARGUMENT);
}

static void test_bf16_rounding(void) {
    CU_ASSERT_EQUAL(brg__bf16_from_float(1.0f), 0x3f80);
    CU_ASSERT_EQUAL(brg__bf16_to_float(0x3f80), 1.0f);
    CU_ASSERT_EQUAL(brg__bf16_from_float(-2.0f), 0xc000);
    /* 1 + 2^-8 is halfway between two bf16 values: to the even one (1.0); 1 + 3 2^-9 rounds up. */
    CU_ASSERT_EQUAL(brg__bf16_from_float(1.0f + 1.0f / 256), 0x3f80);
    CU_ASSERT_EQUAL(brg__bf16_from_float(1.0f + 3.0f / 512), 0x3f81);
    CU_ASSERT(brg__bf16_to_float(brg__bf16_from_float(__builtin_nanf(""))) !=
              brg__bf16_to_float(brg__bf16_from_float(__builtin_nanf(""))));
}
#endif

/* ---- the command line ---- */

typedef brg_test_run run_result;

static const run_result *run_brigade(const char *const *args) { return brg_test_run_brigade(args); }

static int gpu_present(void) {
#if BRG_HAVE_CUDA
    return brg__cuda_device_count() > 0;
#else
    return 0;
#endif
}

/* Without a GPU, --device cuda fails before any training and says what is missing. */
static void expect_no_device(const char *const *args) {
    const run_result *r = run_brigade(args);
    CU_ASSERT(r->exit_code != 0 && r->exit_code < 128);
#if BRG_HAVE_CUDA
    BRG_ASSERT_CONTAINS(r->err, "no CUDA device");
#else
    BRG_ASSERT_CONTAINS(r->err, "without CUDA");
#endif
    if (strstr(r->err, "not built yet")) fprintf(stderr, "stale message: %s\n", r->err);
    CU_ASSERT(strstr(r->err, "not built yet") == NULL);
}

static void test_train_cuda_without_gpu(void) {
    if (gpu_present()) {
        printf("(a CUDA device is present: the no-device message is not checked)\n");
        return;
    }
    expect_no_device((const char *const[]){"train", "--model", TINY_GPT, "--steps", "1", "--device", "cuda", NULL});
    expect_no_device((const char *const[]){"train", "--model", TINY_GPT, "--steps", "1", "--device", "cuda", "--pp",
                                           "2", "--dtype", "bf16", NULL});
    expect_no_device((const char *const[]){"bench", "--model", TINY_GPT, "--steps", "1", "--device", "cuda", NULL});
}

static void test_bench_on_cpu(void) {
    char json_path[512];
    brg_test_tmp_path(json_path, sizeof json_path, "bench.json");
    const run_result *r = run_brigade((const char *const[]){"bench", "--model", TINY_GPT, "--device", "cpu", "--micro-batch",
                                                      "2", "--steps", "2", "--warmup", "1", "--json", json_path, NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    if (r->exit_code != 0) fprintf(stderr, "%s", r->err);
    BRG_ASSERT_CONTAINS(r->out, "tokens/s");
    BRG_ASSERT_CONTAINS(r->out, "TFLOP/s");
    BRG_ASSERT_CONTAINS(r->out, "MFU");
    BRG_ASSERT_CONTAINS(r->out, "sgemm rate");
    json_error_t jerr;
    json_t *root = json_load_file(json_path, 0, &jerr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    double tps = json_real_value(json_object_get(root, "tokens_per_second"));
    double tflops = json_real_value(json_object_get(root, "tflops"));
    double per_token = json_real_value(json_object_get(root, "model_flops_per_token"));
    double peak = json_real_value(json_object_get(root, "peak_tflops"));
    double mfu = json_real_value(json_object_get(root, "mfu"));
    CU_ASSERT(tps > 0);
    CU_ASSERT(peak > 0);
    /* TFLOP/s = tokens/s x model FLOPs per token; MFU = that over the peak. */
    BRG_ASSERT_NEAR(tflops, tps * per_token / 1e12, 1e-9 * (1 + tflops));
    BRG_ASSERT_NEAR(mfu, tflops / peak, 1e-9);
    brg_model_config cfg;
    CU_ASSERT_EQUAL(brg_model_parse(TINY_GPT, &cfg, NULL), BRG_OK);
    BRG_ASSERT_NEAR(per_token, brg_model_flops_per_token(&cfg), 1e-6);
    json_decref(root);
    unlink(json_path);
    /* A given peak replaces the measured one. */
    r = run_brigade(
        (const char *const[]){"bench", "--model", TINY_GPT, "--steps", "1", "--warmup", "0", "--peak", "2", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    BRG_ASSERT_CONTAINS(r->out, "of 2.0 TFLOP/s");
}

static void test_bench_usage_errors(void) {
    const run_result *r = run_brigade((const char *const[]){"bench", "--dtype", "bf16", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 2);
    BRG_ASSERT_CONTAINS(r->err, "--device cuda");
    r = run_brigade((const char *const[]){"bench", "--device", "tpu", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 2);
    r = run_brigade((const char *const[]){"bench", "--steps", "0", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 2);
    r = run_brigade((const char *const[]){"bench", "--model", "nonsense", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 2);
    r = run_brigade((const char *const[]){"bench", "--help", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    BRG_ASSERT_CONTAINS(r->out, "MFU");
    r = run_brigade((const char *const[]){"--help", NULL});
    BRG_ASSERT_CONTAINS(r->out, "bench");
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
#if BRG_HAVE_CUDA
        {"arena_alignment_and_statistics", test_arena_alignment_and_statistics},
        {"arena_reuse_and_coalescing", test_arena_reuse_and_coalescing},
        {"arena_large_blocks_and_refusal", test_arena_large_blocks_and_refusal},
        {"bf16_rounding", test_bf16_rounding},
#endif
        {"train_cuda_without_gpu", test_train_cuda_without_gpu},
        {"bench_on_cpu", test_bench_on_cpu},
        {"bench_usage_errors", test_bench_usage_errors},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "gpu-host", cases);
}
