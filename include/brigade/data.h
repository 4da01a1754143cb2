/* brigade: training data.
 *
 * A brg_data handle hands out batches by global sample index: sample i is always the same window of
 * tokens, however a step is split into micro-batches, stages or data-parallel replicas. A sample is a
 * window of seq + 1 tokens w[0..seq]; its inputs are tokens[t] = w[t] and its targets are the next
 * tokens, targets[t] = w[t + 1], for t in [0, seq).
 *
 * Two sources:
 *
 * - The synthetic task (brg_data_synthetic_create): a next-token task a small GPT provably learns. Each
 *   sample draws a pattern of `period` tokens, uniform over the vocabulary, from splitmix64 seeded by
 *   (seed, sample index), and repeats it: w[t] = w[t mod period] for t in [0, seq]. The first period - 1
 *   targets (w[1] .. w[period - 1]) are fresh random tokens that nothing predicts; every later target
 *   is a copy of the token `period` positions back, so context determines it. The lowest mean loss per
 *   position a model can reach is therefore
 *       (period - 1) * ln(vocab) / seq
 *   (brg_data_synthetic_optimal_loss), far below the ln(vocab) of an untrained model: with vocab 64,
 *   seq 32 and period 4, 0.390 against 4.159. Causal attention learns it (copy the token `period`
 *   positions back); a position-wise model (the mlp family) cannot get below ln(vocab), so the task
 *   also checks that attention works end to end.
 *
 * - llm.c token shards (brg_data_bin_open): a header of 256 little-endian int32 (magic 20240520,
 *   version 1, token count at index 2, the rest unused), then that many little-endian uint16 tokens.
 *   With n tokens in the shard, sample i is the window starting at token (i * seq) mod (n - seq): the
 *   samples tile the shard in consecutive, non-overlapping windows (sharing one boundary token, the
 *   last target of one window being the first input of the next), and wrap around at its end. The
 *   file is mapped into memory once, at open, and every token is checked against the vocabulary then.
 *
 * Ownership: the caller owns a handle from a create/open call and frees it with brg_data_destroy.
 * Strings returned by the handle are owned by it.
 *
 * Threads: brg_data_batch only reads the handle when it succeeds, so several threads (one per stage)
 * may call it at once on one handle; a failing call writes the handle's message. */
#ifndef BRIGADE_DATA_H
#define BRIGADE_DATA_H

#include <stdint.h>

#include "brigade/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brg_data brg_data;

typedef enum brg_data_kind {
    BRG_DATA_SYNTHETIC = 0,
    BRG_DATA_BIN = 1,
} brg_data_kind;

/* The llm.c shard header: 256 int32, of which these three are used. */
#define BRG_DATA_BIN_MAGIC 20240520
#define BRG_DATA_BIN_VERSION 1
#define BRG_DATA_BIN_HEADER_INTS 256
/* Largest vocabulary a shard can hold (uint16 tokens) and most tokens one shard can hold (int32 count). */
#define BRG_DATA_BIN_MAX_VOCAB 65536
#define BRG_DATA_BIN_MAX_TOKENS INT32_MAX

/* Limits on the shape of a sample, for either source. */
#define BRG_DATA_MAX_SEQ (INT64_C(1) << 24)
#define BRG_DATA_MAX_VOCAB INT64_C(2147483647) /* tokens are int32 */

typedef struct brg_synthetic_options {
    int64_t period; /* length of the repeated pattern, 1 <= period <= seq + 1 */
} brg_synthetic_options;
#define BRG_SYNTHETIC_OPTIONS_INIT {4}
#define BRG_SYNTHETIC_DEFAULT_PERIOD 4

/* Creates the synthetic task in *out, with the default period BRG_SYNTHETIC_DEFAULT_PERIOD (or seq + 1
 * when seq is shorter: the period must fit the window). vocab in [1, BRG_DATA_MAX_VOCAB], seq in
 * [1, BRG_DATA_MAX_SEQ]. Samples depend only on (vocab, seq, seed, period, sample index).
 * Returns BRG_OK; BRG_ERR_INVALID_ARGUMENT (out NULL, vocab, seq or period out of range: err names the
 * value and the allowed range); BRG_ERR_OUT_OF_MEMORY. On failure *out is NULL (when out is not). */
brg_status brg_data_synthetic_create(brg_data **out, int64_t vocab, int64_t seq, uint64_t seed, brg_error *err);

/* The same with options (NULL: BRG_SYNTHETIC_OPTIONS_INIT); options->period must be in [1, seq + 1]. */
brg_status brg_data_synthetic_create_with_options(brg_data **out, int64_t vocab, int64_t seq, uint64_t seed,
                                                  const brg_synthetic_options *options, brg_error *err);

/* The lowest mean cross-entropy per position on the synthetic task: (period - 1) * ln(vocab) / seq.
 * Arguments outside the ranges brg_data_synthetic_create accepts give NAN. */
double brg_data_synthetic_optimal_loss(int64_t vocab, int64_t seq, int64_t period);

/* Opens the llm.c token shard at `path` for samples of seq tokens over a vocabulary of `vocab`
 * (vocab in [1, BRG_DATA_MAX_VOCAB], seq in [1, BRG_DATA_MAX_SEQ]). Messages name the file, and the
 * byte offset and value where one is at fault. Returns:
 *   BRG_OK;
 *   BRG_ERR_IO: the file is missing, unreadable, not a regular file, or cannot be mapped (with strerror);
 *   BRG_ERR_PARSE: shorter than its 1024-byte header, wrong magic or version, a negative token count, or
 *     a token count that disagrees with the file's size (truncated or with trailing bytes);
 *   BRG_ERR_INVALID_ARGUMENT: out or path NULL, vocab or seq out of range, fewer than seq + 1 tokens in
 *     the shard, or a token >= vocab;
 *   BRG_ERR_OUT_OF_MEMORY. On failure *out is NULL (when out is not). */
brg_status brg_data_bin_open(brg_data **out, const char *path, int64_t vocab, int64_t seq, brg_error *err);

/* Writes n tokens (each in [0, 65535]) as an llm.c shard at `path`, atomically: into a temporary file
 * beside it, flushed with fsync, then renamed over `path`; a failure leaves `path` as it was. tokens may
 * be NULL when n is 0. Returns BRG_OK; BRG_ERR_INVALID_ARGUMENT (path NULL, tokens NULL with n > 0,
 * n < 0 or n > BRG_DATA_BIN_MAX_TOKENS, a token out of range: err names its index and value);
 * BRG_ERR_IO (create, write, fsync or rename failed: err names the file and strerror). */
brg_status brg_data_write_bin(const char *path, const int32_t *tokens, int64_t n, brg_error *err);

/* Frees the handle (and unmaps its shard). NULL is allowed. */
void brg_data_destroy(brg_data *d);

/* Fills samples [first_sample, first_sample + batch_size): tokens and targets are (batch_size, seq)
 * row-major, targets[b][t] being the token after tokens[b][t]. Either of tokens and targets may be NULL
 * when the caller needs only the other (a stage without the loss, one without the embedding), not both.
 * Returns BRG_OK or BRG_ERR_INVALID_ARGUMENT (d NULL, both buffers NULL, first_sample < 0,
 * batch_size < 1, or first_sample + batch_size past INT64_MAX); the message is in
 * brg_data_last_error(d). */
brg_status brg_data_batch(brg_data *d, int64_t first_sample, int64_t batch_size, int32_t *tokens,
                          int32_t *targets);

/* The handle's last failure, or "" when none. Never NULL; owned by the handle. For a NULL handle, a
 * static string saying so. */
const char *brg_data_last_error(const brg_data *d);

/* Accessors; each returns 0 (BRG_DATA_SYNTHETIC for the kind) for a NULL handle. */
brg_data_kind brg_data_get_kind(const brg_data *d);
int64_t brg_data_vocab(const brg_data *d);
int64_t brg_data_seq(const brg_data *d);
/* The synthetic task's period; 0 for a shard. */
int64_t brg_data_period(const brg_data *d);
/* Tokens in the shard; 0 for the synthetic task (it has no end). */
int64_t brg_data_token_count(const brg_data *d);

/* The lowest mean loss per position this data allows, when it is known: the synthetic task's
 * brg_data_synthetic_optimal_loss. Returns BRG_OK, BRG_ERR_INVALID_ARGUMENT (NULL) or
 * BRG_ERR_UNSUPPORTED (a token shard: its optimum is unknown). */
brg_status brg_data_optimal_loss(const brg_data *d, double *loss);

#ifdef __cplusplus
}
#endif
#endif
