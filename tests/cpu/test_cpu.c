/* The CPU backend suite: kernels against the double reference, helpers, AdamW, kernel threads, the arena. */
#include "harness.h"
#include "test_cases.h"

static const brg_test_case cases[] = {
    {"exp", test_exp},
    {"reductions", test_reductions},
    {"embedding", test_embedding},
    {"linear", test_linear},
    {"matmul_parameter_b", test_matmul_parameter_b},
    {"matmul_batched_b", test_matmul_batched_b},
    {"matmul_shared_activation_b", test_matmul_shared_activation_b},
    {"matmul_parameter_a", test_matmul_parameter_a},
    {"add", test_add},
    {"layernorm", test_layernorm},
    {"gelu", test_gelu},
    {"relu", test_relu},
    {"attention", test_attention},
    {"attention_tiled_matches", test_attention_tiled_matches},
    {"attention_tiled_memory", test_attention_tiled_memory},
    {"cross_entropy", test_cross_entropy},
    {"bad_token", test_bad_token},
    {"bad_target", test_bad_target},
    {"unknown_kind", test_unknown_kind},
    {"adamw", test_adamw},
    {"dims_and_gemm", test_dims_and_gemm},
    {"pool_every_piece", test_pool_every_piece},
    {"pool_nested", test_pool_nested},
    {"pool_scratch", test_pool_scratch},
    {"pool_thread_exit", test_pool_thread_exit},
    {"gemm_tiles", test_gemm_tiles},
    {"gemm_threads", test_gemm_threads},
    {"vectors_threads", test_vectors_threads},
    {"ops_threads", test_ops_threads},
    {"ops_threads_pieces", test_ops_threads_pieces},
    {"arena_alloc", test_arena_alloc},
    {"arena_stats", test_arena_stats},
    {"arena_threads", test_arena_threads},
    {"malloc_untouched", test_malloc_untouched},
    {NULL, NULL},
};

int main(int argc, char **argv) { return brg_test_main(argc, argv, "cpu", cases); }
