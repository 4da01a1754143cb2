/* llm.c token shards (engine/runtime/data.c, brg_data_bin_open). The input's first 4 bytes choose the
 * vocabulary (1 + a little-endian uint16: 1 to 65536), the sequence length (1 + a byte) and the batch
 * (1 + a byte mod 8); the rest is the shard: 256 int32 header, uint16 tokens. A shard that opens gives
 * batches, whose tokens must all be below the vocabulary, at the first samples and at the largest. */
#include <stdint.h>
#include <stdlib.h>

#include "brigade.h"
#include "fuzz.h"

#define PREFIX 4

static void read_batches(brg_data *d, int64_t vocab, int64_t seq, int64_t batch) {
    int32_t *tokens = malloc((size_t)(batch * seq) * sizeof *tokens);
    int32_t *targets = malloc((size_t)(batch * seq) * sizeof *targets);
    const int64_t firsts[] = {0, 1, 12345, INT64_MAX - batch};
    for (size_t k = 0; tokens && targets && k < sizeof firsts / sizeof firsts[0]; k++) {
        if (brg_data_batch(d, firsts[k], batch, tokens, targets) != BRG_OK)
            brg_fuzz_fail(brg_data_last_error(d));
        for (int64_t i = 0; i < batch * seq; i++)
            if (tokens[i] < 0 || tokens[i] >= vocab || targets[i] < 0 || targets[i] >= vocab)
                brg_fuzz_fail("a batch holds a token outside the vocabulary");
    }
    double loss;
    (void)brg_data_optimal_loss(d, &loss);
    free(tokens);
    free(targets);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < PREFIX) return 0;
    int64_t vocab = 1 + (int64_t)(data[0] | data[1] << 8), seq = 1 + (int64_t)data[2], batch = 1 + data[3] % 8;
    const char *path = brg_fuzz_file(data + PREFIX, size - PREFIX);
    if (!path) return 0;
    brg_data *d = NULL;
    brg_error err = {0};
    brg_status s = brg_data_bin_open(&d, path, vocab, seq, &err);
    brg_fuzz_check_error(s, err.message, "brg_data_bin_open");
    if (s == BRG_OK) read_batches(d, vocab, seq, batch);
    brg_data_destroy(d);
    return 0;
}
