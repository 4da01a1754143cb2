/* The cases of the cpu suite, by file. */
#ifndef BRIGADE_TEST_CPU_CASES_H
#define BRIGADE_TEST_CPU_CASES_H

/* test_ops.c */
void test_embedding(void);
void test_linear(void);
void test_matmul_parameter_b(void);
void test_matmul_batched_b(void);
void test_matmul_shared_activation_b(void);
void test_matmul_parameter_a(void);
void test_add(void);
void test_layernorm(void);
void test_gelu(void);
void test_relu(void);
void test_attention(void);
void test_attention_tiled_matches(void);
void test_attention_tiled_memory(void);
void test_cross_entropy(void);
void test_bad_token(void);
void test_bad_target(void);
void test_unknown_kind(void);

/* test_helpers.c */
void test_exp(void);
void test_reductions(void);
void test_adamw(void);
void test_dims_and_gemm(void);

/* test_threads.c */
void test_pool_every_piece(void);
void test_pool_nested(void);
void test_pool_scratch(void);
void test_pool_thread_exit(void);
void test_gemm_tiles(void);
void test_gemm_threads(void);
void test_vectors_threads(void);
void test_ops_threads(void);
void test_ops_threads_pieces(void);

/* test_arena.c */
void test_arena_alloc(void);
void test_arena_stats(void);
void test_arena_threads(void);
void test_malloc_untouched(void);

#endif
