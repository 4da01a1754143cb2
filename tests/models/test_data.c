/* Training data: the synthetic task and llm.c token shards. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "brigade/data.h"
#include "tests/harness.h"

enum { VOCAB = 64, SEQ = 16 };

/* ---- helpers ---- */

static brg_data *synthetic(int64_t vocab, int64_t seq, uint64_t seed, int64_t period) {
    brg_synthetic_options o = BRG_SYNTHETIC_OPTIONS_INIT;
    o.period = period;
    brg_data *d = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_data_synthetic_create_with_options(&d, vocab, seq, seed, &o, &err), err.message);
    return d;
}

/* Writes raw bytes to path (no validation: for malformed files). */
static void write_raw(const char *path, const void *bytes, size_t size) {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(fwrite(bytes, 1, size, f) == size);
    fclose(f);
}

/* An llm.c shard image: header (magic, version, count) then `n` uint16 tokens, with `file_tokens`
 * tokens actually present (to make truncated or padded files). Caller frees. */
static unsigned char *shard_image(int32_t magic, int32_t version, int32_t count, const uint16_t *tokens,
                                  int64_t file_tokens, size_t *size) {
    *size = 1024 + 2 * (size_t)file_tokens;
    unsigned char *buf = calloc(1, *size);
    int32_t h[3] = {magic, version, count};
    memcpy(buf, h, sizeof h); /* the host is little-endian, as the format */
    for (int64_t i = 0; i < file_tokens; i++) memcpy(buf + 1024 + 2 * i, &tokens[i], 2);
    return buf;
}

/* Files in path's directory named "<basename of path>.tmp.*". */
static int count_temporaries(const char *path) {
    char dir[512], prefix[512];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    CU_ASSERT_FATAL(slash != NULL);
    *slash = '\0';
    snprintf(prefix, sizeof prefix, "%s.tmp.", slash + 1);
    DIR *dh = opendir(dir);
    CU_ASSERT_FATAL(dh != NULL);
    int count = 0;
    for (struct dirent *e; (e = readdir(dh));)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) count++;
    closedir(dh);
    return count;
}

static brg_status open_bin(const char *path, int64_t vocab, int64_t seq, brg_error *err) {
    brg_data *d = (brg_data *)0x1;
    brg_status s = brg_data_bin_open(&d, path, vocab, seq, err);
    if (s != BRG_OK) CU_ASSERT(d == NULL);
    brg_data_destroy(s == BRG_OK ? d : NULL);
    return s;
}

/* ---- synthetic ---- */

static void test_synthetic_deterministic_across_splits(void) {
    enum { N = 12 };
    brg_data *d = synthetic(VOCAB, SEQ, 1234, 4);
    int32_t whole_tok[N * SEQ], whole_tgt[N * SEQ], part_tok[N * SEQ], part_tgt[N * SEQ];
    BRG_ASSERT_OK(brg_data_batch(d, 100, N, whole_tok, whole_tgt), brg_data_last_error(d));
    /* the same samples in micro-batches of 1, 3 and 5+... */
    const int64_t splits[] = {1, 3, 5, 3};
    int64_t at = 0;
    for (int i = 0; at < N; i++) {
        int64_t n = splits[i % 4] < N - at ? splits[i % 4] : N - at;
        BRG_ASSERT_OK(brg_data_batch(d, 100 + at, n, part_tok + at * SEQ, part_tgt + at * SEQ),
                      brg_data_last_error(d));
        at += n;
    }
    CU_ASSERT(memcmp(whole_tok, part_tok, sizeof whole_tok) == 0);
    CU_ASSERT(memcmp(whole_tgt, part_tgt, sizeof whole_tgt) == 0);
    /* a second handle with the same seed gives the same; another seed differs */
    brg_data *same = synthetic(VOCAB, SEQ, 1234, 4), *other = synthetic(VOCAB, SEQ, 1235, 4);
    int32_t tok2[N * SEQ];
    BRG_ASSERT_OK(brg_data_batch(same, 100, N, tok2, NULL), brg_data_last_error(same));
    CU_ASSERT(memcmp(whole_tok, tok2, sizeof tok2) == 0);
    BRG_ASSERT_OK(brg_data_batch(other, 100, N, tok2, NULL), brg_data_last_error(other));
    CU_ASSERT(memcmp(whole_tok, tok2, sizeof tok2) != 0);
    /* only targets asked for: same targets */
    int32_t tgt2[N * SEQ];
    BRG_ASSERT_OK(brg_data_batch(d, 100, N, NULL, tgt2), brg_data_last_error(d));
    CU_ASSERT(memcmp(whole_tgt, tgt2, sizeof tgt2) == 0);
    /* distinct samples differ */
    CU_ASSERT(memcmp(whole_tok, whole_tok + SEQ, SEQ * sizeof(int32_t)) != 0);
    brg_data_destroy(d);
    brg_data_destroy(same);
    brg_data_destroy(other);
}

static void test_synthetic_period_structure(void) {
    const int64_t periods[] = {1, 2, 4, 7, SEQ, SEQ + 1};
    for (size_t k = 0; k < sizeof periods / sizeof periods[0]; k++) {
        int64_t p = periods[k];
        brg_data *d = synthetic(VOCAB, SEQ, 7, p);
        BRG_ASSERT_EQ_INT(brg_data_period(d), p);
        int32_t tok[4 * SEQ], tgt[4 * SEQ];
        BRG_ASSERT_OK(brg_data_batch(d, 0, 4, tok, tgt), brg_data_last_error(d));
        for (int b = 0; b < 4; b++) {
            const int32_t *x = tok + b * SEQ, *y = tgt + b * SEQ;
            for (int t = 0; t < SEQ; t++) {
                CU_ASSERT(x[t] >= 0 && x[t] < VOCAB);
                CU_ASSERT(y[t] >= 0 && y[t] < VOCAB);
                if (t + 1 < SEQ) CU_ASSERT(y[t] == x[t + 1]); /* targets are the next tokens */
                if (t >= p) CU_ASSERT(x[t] == x[t - p]);      /* the pattern repeats */
                if (t + 1 >= p) CU_ASSERT(y[t] == x[(t + 1) % p]); /* determined by context */
            }
        }
        brg_data_destroy(d);
    }
}

static void test_synthetic_tokens_cover_vocab(void) {
    /* patterns are uniform: over many samples every token appears */
    brg_data *d = synthetic(VOCAB, SEQ, 99, 4);
    int32_t tok[256 * SEQ];
    BRG_ASSERT_OK(brg_data_batch(d, 0, 256, tok, NULL), brg_data_last_error(d));
    int seen[VOCAB] = {0};
    for (int i = 0; i < 256 * SEQ; i++) seen[tok[i]]++;
    for (int v = 0; v < VOCAB; v++) CU_ASSERT(seen[v] > 0);
    brg_data_destroy(d);
}

static void test_synthetic_optimal_loss(void) {
    BRG_ASSERT_NEAR(brg_data_synthetic_optimal_loss(64, 32, 4), 3.0 * log(64.0) / 32.0, 1e-12);
    BRG_ASSERT_NEAR(brg_data_synthetic_optimal_loss(64, 32, 4), 0.38987, 1e-4);
    BRG_ASSERT_NEAR(brg_data_synthetic_optimal_loss(50257, 1024, 1), 0.0, 0.0);
    BRG_ASSERT_NEAR(brg_data_synthetic_optimal_loss(64, 32, 33), log(64.0), 1e-12); /* all random */
    CU_ASSERT(isnan(brg_data_synthetic_optimal_loss(64, 32, 0)));
    CU_ASSERT(isnan(brg_data_synthetic_optimal_loss(64, 32, 34)));
    CU_ASSERT(isnan(brg_data_synthetic_optimal_loss(0, 32, 4)));
    CU_ASSERT(isnan(brg_data_synthetic_optimal_loss(64, 0, 4)));
    brg_data *d = synthetic(64, 32, 1, 4);
    double loss = 0;
    BRG_ASSERT_OK(brg_data_optimal_loss(d, &loss), "");
    BRG_ASSERT_NEAR(loss, brg_data_synthetic_optimal_loss(64, 32, 4), 0.0);
    BRG_ASSERT_STATUS(brg_data_optimal_loss(d, NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_data_optimal_loss(NULL, &loss), BRG_ERR_INVALID_ARGUMENT);
    brg_data_destroy(d);
}

static void test_synthetic_defaults_and_accessors(void) {
    brg_data *d = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, 50, 20, 3, &err), err.message);
    BRG_ASSERT_EQ_INT(brg_data_period(d), BRG_SYNTHETIC_DEFAULT_PERIOD);
    BRG_ASSERT_EQ_INT(brg_data_vocab(d), 50);
    BRG_ASSERT_EQ_INT(brg_data_seq(d), 20);
    BRG_ASSERT_EQ_INT(brg_data_get_kind(d), BRG_DATA_SYNTHETIC);
    BRG_ASSERT_EQ_INT(brg_data_token_count(d), 0);
    CU_ASSERT_STRING_EQUAL(brg_data_last_error(d), "");
    brg_data_destroy(d);
    BRG_ASSERT_EQ_INT(brg_data_vocab(NULL), 0);
    BRG_ASSERT_EQ_INT(brg_data_seq(NULL), 0);
    BRG_ASSERT_EQ_INT(brg_data_period(NULL), 0);
    CU_ASSERT(brg_data_last_error(NULL) != NULL);
    /* the default period shrinks to fit a short window */
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, 50, 2, 3, &err), err.message);
    BRG_ASSERT_EQ_INT(brg_data_period(d), 3);
    brg_data_destroy(d);
    /* NULL options: the defaults */
    BRG_ASSERT_OK(brg_data_synthetic_create_with_options(&d, 50, 20, 3, NULL, &err), err.message);
    BRG_ASSERT_EQ_INT(brg_data_period(d), BRG_SYNTHETIC_DEFAULT_PERIOD);
    brg_data_destroy(d);
    brg_data_destroy(NULL);
}

static void test_synthetic_bad_arguments(void) {
    brg_data *d = (brg_data *)0x1;
    brg_error err = {0};
    BRG_ASSERT_STATUS(brg_data_synthetic_create(&d, 0, 16, 1, &err), BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT(d == NULL);
    BRG_ASSERT_CONTAINS(err.message, "vocab 0");
    BRG_ASSERT_STATUS(brg_data_synthetic_create(&d, 64, 0, 1, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "seq 0");
    BRG_ASSERT_STATUS(brg_data_synthetic_create(&d, 64, -5, 1, NULL), BRG_ERR_INVALID_ARGUMENT);
    brg_synthetic_options o = BRG_SYNTHETIC_OPTIONS_INIT;
    o.period = 0;
    BRG_ASSERT_STATUS(brg_data_synthetic_create_with_options(&d, 64, 16, 1, &o, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "period 0");
    o.period = 18;
    BRG_ASSERT_STATUS(brg_data_synthetic_create_with_options(&d, 64, 16, 1, &o, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "period 18");
    /* options given: the period must fit the window */
    o.period = 4;
    BRG_ASSERT_STATUS(brg_data_synthetic_create_with_options(&d, 64, 2, 1, &o, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "period 4");
    BRG_ASSERT_STATUS(brg_data_synthetic_create(NULL, 64, 16, 1, &err), BRG_ERR_INVALID_ARGUMENT);
}

static void test_batch_bad_arguments(void) {
    brg_data *d = synthetic(VOCAB, SEQ, 1, 4);
    int32_t tok[SEQ], tgt[SEQ];
    BRG_ASSERT_STATUS(brg_data_batch(NULL, 0, 1, tok, tgt), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_data_batch(d, 0, 1, NULL, NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(brg_data_last_error(d), "NULL");
    BRG_ASSERT_STATUS(brg_data_batch(d, -1, 1, tok, tgt), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(brg_data_last_error(d), "-1");
    BRG_ASSERT_STATUS(brg_data_batch(d, 0, 0, tok, tgt), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(brg_data_last_error(d), "batch size 0");
    BRG_ASSERT_STATUS(brg_data_batch(d, INT64_MAX, 1, tok, tgt), BRG_ERR_INVALID_ARGUMENT);
    /* the largest index itself is fine */
    BRG_ASSERT_OK(brg_data_batch(d, INT64_MAX - 1, 1, tok, tgt), brg_data_last_error(d));
    brg_data_destroy(d);
}

/* ---- token shards ---- */

static void test_bin_round_trip(void) {
    enum { N = 100 };
    char path[512];
    brg_test_tmp_path(path, sizeof path, "round.bin");
    int32_t tokens[N];
    for (int i = 0; i < N; i++) tokens[i] = (i * 37 + 5) % 50;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_data_write_bin(path, tokens, N, &err), err.message);
    struct stat st;
    CU_ASSERT(stat(path, &st) == 0 && st.st_size == 1024 + 2 * N);
    /* the exact llm.c layout */
    FILE *f = fopen(path, "rb");
    CU_ASSERT_FATAL(f != NULL);
    int32_t header[256];
    uint16_t body[N];
    CU_ASSERT(fread(header, 4, 256, f) == 256);
    CU_ASSERT(fread(body, 2, N, f) == N);
    fclose(f);
    BRG_ASSERT_EQ_INT(header[0], 20240520);
    BRG_ASSERT_EQ_INT(header[1], 1);
    BRG_ASSERT_EQ_INT(header[2], N);
    for (int i = 3; i < 256; i++) CU_ASSERT(header[i] == 0);
    for (int i = 0; i < N; i++) CU_ASSERT(body[i] == tokens[i]);

    brg_data *d = NULL;
    BRG_ASSERT_OK(brg_data_bin_open(&d, path, 50, SEQ, &err), err.message);
    CU_ASSERT_FATAL(d != NULL);
    BRG_ASSERT_EQ_INT(brg_data_get_kind(d), BRG_DATA_BIN);
    BRG_ASSERT_EQ_INT(brg_data_token_count(d), N);
    BRG_ASSERT_EQ_INT(brg_data_vocab(d), 50);
    BRG_ASSERT_EQ_INT(brg_data_seq(d), SEQ);
    BRG_ASSERT_EQ_INT(brg_data_period(d), 0);
    double loss;
    BRG_ASSERT_STATUS(brg_data_optimal_loss(d, &loss), BRG_ERR_UNSUPPORTED);
    /* sample i starts at (i * seq) mod (n - seq), for many i, wrapping past the end */
    enum { B = 20 };
    int32_t tok[B * SEQ], tgt[B * SEQ];
    BRG_ASSERT_OK(brg_data_batch(d, 3, B, tok, tgt), brg_data_last_error(d));
    for (int b = 0; b < B; b++) {
        int64_t start = ((int64_t)(3 + b) * SEQ) % (N - SEQ);
        for (int t = 0; t < SEQ; t++) {
            CU_ASSERT(tok[b * SEQ + t] == tokens[start + t]);
            CU_ASSERT(tgt[b * SEQ + t] == tokens[start + t + 1]);
        }
    }
    /* any split gives the same samples */
    int32_t one[SEQ];
    for (int b = 0; b < B; b++) {
        BRG_ASSERT_OK(brg_data_batch(d, 3 + b, 1, one, NULL), brg_data_last_error(d));
        CU_ASSERT(memcmp(one, tok + b * SEQ, sizeof one) == 0);
    }
    /* huge sample indices do not overflow */
    BRG_ASSERT_OK(brg_data_batch(d, INT64_MAX - 2, 1, one, NULL), brg_data_last_error(d));
    brg_data_destroy(d);

    /* exactly seq + 1 tokens: one window, always */
    BRG_ASSERT_OK(brg_data_write_bin(path, tokens, SEQ + 1, &err), err.message);
    BRG_ASSERT_OK(brg_data_bin_open(&d, path, 50, SEQ, &err), err.message);
    BRG_ASSERT_OK(brg_data_batch(d, 12345, 1, one, NULL), brg_data_last_error(d));
    CU_ASSERT(memcmp(one, tokens, sizeof one) == 0);
    brg_data_destroy(d);

    /* the full uint16 range, with vocab 65536 */
    int32_t wide[SEQ + 1];
    for (int i = 0; i <= SEQ; i++) wide[i] = 65535 - i;
    BRG_ASSERT_OK(brg_data_write_bin(path, wide, SEQ + 1, &err), err.message);
    BRG_ASSERT_OK(brg_data_bin_open(&d, path, 65536, SEQ, &err), err.message);
    BRG_ASSERT_OK(brg_data_batch(d, 0, 1, one, NULL), brg_data_last_error(d));
    CU_ASSERT(one[0] == 65535 && one[SEQ - 1] == 65535 - (SEQ - 1));
    brg_data_destroy(d);
    unlink(path);
}

static void test_bin_write_is_atomic_and_checked(void) {
    char path[512];
    brg_test_tmp_path(path, sizeof path, "atomic.bin");
    int32_t tokens[40];
    for (int i = 0; i < 40; i++) tokens[i] = i;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_data_write_bin(path, tokens, 40, &err), err.message);
    /* a rejected write leaves the old file whole */
    tokens[7] = 70000;
    BRG_ASSERT_STATUS(brg_data_write_bin(path, tokens, 40, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "token 7");
    BRG_ASSERT_CONTAINS(err.message, "70000");
    tokens[7] = -1;
    BRG_ASSERT_STATUS(brg_data_write_bin(path, tokens, 40, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_data_write_bin(path, NULL, 4, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_data_write_bin(path, tokens, -1, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_data_write_bin(NULL, tokens, 4, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_data_write_bin("", tokens, 4, &err), BRG_ERR_INVALID_ARGUMENT);
    brg_data *d = NULL;
    BRG_ASSERT_OK(brg_data_bin_open(&d, path, 64, 8, &err), err.message);
    BRG_ASSERT_EQ_INT(brg_data_token_count(d), 40);
    brg_data_destroy(d);
    /* an empty shard is a valid file (but too short to open) */
    BRG_ASSERT_OK(brg_data_write_bin(path, NULL, 0, &err), err.message);
    /* an unwritable place: the message names the file */
    BRG_ASSERT_STATUS(brg_data_write_bin("/nonexistent-dir/x.bin", tokens, 4, &err), BRG_ERR_IO);
    BRG_ASSERT_CONTAINS(err.message, "/nonexistent-dir/x.bin");
    /* no temporary file is left beside the shard, after successes and failures */
    BRG_ASSERT_EQ_INT(count_temporaries(path), 0);
    unlink(path);
}

static void test_bin_missing(void) {
    char path[512];
    brg_test_tmp_path(path, sizeof path, "missing.bin");
    unlink(path);
    brg_error err = {0};
    BRG_ASSERT_STATUS(open_bin(path, 64, 8, &err), BRG_ERR_IO);
    BRG_ASSERT_EQ_INT(err.status, BRG_ERR_IO);
    BRG_ASSERT_CONTAINS(err.message, path);
    BRG_ASSERT_CONTAINS(err.message, strerror(ENOENT));
    /* a directory is not a shard */
    const char *dir = getenv("BRG_TEST_TMPDIR") ? getenv("BRG_TEST_TMPDIR") : "/tmp";
    BRG_ASSERT_STATUS(open_bin(dir, 64, 8, &err), BRG_ERR_IO);
    BRG_ASSERT_CONTAINS(err.message, dir);
    /* bad arguments */
    brg_data *d;
    BRG_ASSERT_STATUS(brg_data_bin_open(&d, NULL, 64, 8, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_data_bin_open(NULL, path, 64, 8, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_data_bin_open(&d, path, 0, 8, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_STATUS(brg_data_bin_open(&d, path, 64, 0, &err), BRG_ERR_INVALID_ARGUMENT);
}

static void test_bin_truncated_header(void) {
    char path[512];
    brg_test_tmp_path(path, sizeof path, "short.bin");
    int32_t header[10] = {20240520, 1, 0};
    write_raw(path, header, sizeof header);
    brg_error err = {0};
    BRG_ASSERT_STATUS(open_bin(path, 64, 8, &err), BRG_ERR_PARSE);
    BRG_ASSERT_CONTAINS(err.message, path);
    BRG_ASSERT_CONTAINS(err.message, "header");
    write_raw(path, "", 0); /* empty file */
    BRG_ASSERT_STATUS(open_bin(path, 64, 8, &err), BRG_ERR_PARSE);
    BRG_ASSERT_CONTAINS(err.message, path);
    unlink(path);
}

static void test_bin_bad_magic_and_version(void) {
    char path[512];
    brg_test_tmp_path(path, sizeof path, "magic.bin");
    uint16_t tokens[32] = {0};
    size_t size;
    unsigned char *img = shard_image(20240522, 1, 32, tokens, 32, &size);
    write_raw(path, img, size);
    free(img);
    brg_error err = {0};
    BRG_ASSERT_STATUS(open_bin(path, 64, 8, &err), BRG_ERR_PARSE);
    BRG_ASSERT_CONTAINS(err.message, path);
    BRG_ASSERT_CONTAINS(err.message, "magic 20240522");
    img = shard_image(20240520, 2, 32, tokens, 32, &size);
    write_raw(path, img, size);
    free(img);
    BRG_ASSERT_STATUS(open_bin(path, 64, 8, &err), BRG_ERR_PARSE);
    BRG_ASSERT_CONTAINS(err.message, path);
    BRG_ASSERT_CONTAINS(err.message, "version 2");
    unlink(path);
}

static void test_bin_size_mismatch(void) {
    char path[512];
    brg_test_tmp_path(path, sizeof path, "size.bin");
    uint16_t tokens[40] = {0};
    size_t size;
    /* header says 40, file holds 30: truncated */
    unsigned char *img = shard_image(20240520, 1, 40, tokens, 30, &size);
    write_raw(path, img, size);
    free(img);
    brg_error err = {0};
    BRG_ASSERT_STATUS(open_bin(path, 64, 8, &err), BRG_ERR_PARSE);
    BRG_ASSERT_CONTAINS(err.message, path);
    BRG_ASSERT_CONTAINS(err.message, "40 tokens");
    BRG_ASSERT_CONTAINS(err.message, "truncated");
    /* header says 30, file holds 40: trailing bytes */
    img = shard_image(20240520, 1, 30, tokens, 40, &size);
    write_raw(path, img, size);
    free(img);
    BRG_ASSERT_STATUS(open_bin(path, 64, 8, &err), BRG_ERR_PARSE);
    BRG_ASSERT_CONTAINS(err.message, "trailing");
    /* an odd byte after the tokens */
    img = shard_image(20240520, 1, 30, tokens, 30, &size);
    unsigned char *longer = calloc(1, size + 1);
    memcpy(longer, img, size);
    write_raw(path, longer, size + 1);
    free(img);
    free(longer);
    BRG_ASSERT_STATUS(open_bin(path, 64, 8, &err), BRG_ERR_PARSE);
    /* a negative count */
    img = shard_image(20240520, 1, -3, tokens, 0, &size);
    write_raw(path, img, size);
    free(img);
    BRG_ASSERT_STATUS(open_bin(path, 64, 8, &err), BRG_ERR_PARSE);
    BRG_ASSERT_CONTAINS(err.message, "-3");
    unlink(path);
}

static void test_bin_token_out_of_vocab(void) {
    char path[512];
    brg_test_tmp_path(path, sizeof path, "vocab.bin");
    int32_t tokens[30];
    for (int i = 0; i < 30; i++) tokens[i] = i;
    tokens[21] = 64;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_data_write_bin(path, tokens, 30, &err), err.message);
    BRG_ASSERT_STATUS(open_bin(path, 64, 8, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, path);
    BRG_ASSERT_CONTAINS(err.message, "token 21");
    BRG_ASSERT_CONTAINS(err.message, "byte offset 1066");
    BRG_ASSERT_CONTAINS(err.message, "is 64");
    /* a larger vocabulary accepts it */
    BRG_ASSERT_OK(open_bin(path, 65, 8, &err), err.message);
    unlink(path);
}

static void test_bin_too_few_tokens(void) {
    char path[512];
    brg_test_tmp_path(path, sizeof path, "few.bin");
    int32_t tokens[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    brg_error err = {0};
    BRG_ASSERT_OK(brg_data_write_bin(path, tokens, 8, &err), err.message);
    BRG_ASSERT_STATUS(open_bin(path, 64, 8, &err), BRG_ERR_INVALID_ARGUMENT); /* needs 9 */
    BRG_ASSERT_CONTAINS(err.message, path);
    BRG_ASSERT_CONTAINS(err.message, "8 tokens");
    BRG_ASSERT_OK(open_bin(path, 64, 7, &err), err.message);
    BRG_ASSERT_OK(brg_data_write_bin(path, NULL, 0, &err), err.message);
    BRG_ASSERT_STATUS(open_bin(path, 64, 1, &err), BRG_ERR_INVALID_ARGUMENT);
    unlink(path);
}

static void test_bin_random_corruption(void) {
    /* a valid shard with bytes of its header or body changed: never a crash, and either it opens (a
     * change that keeps it valid) with every token below vocab, or it fails with a message naming it */
    char path[512];
    brg_test_tmp_path(path, sizeof path, "corrupt.bin");
    enum { N = 64 };
    uint16_t tokens[N];
    for (int i = 0; i < N; i++) tokens[i] = (uint16_t)(i % 32);
    size_t size;
    unsigned char *img = shard_image(20240520, 1, N, tokens, N, &size);
    uint64_t state = 7;
    for (int round = 0; round < 200; round++) {
        unsigned char *copy = malloc(size);
        memcpy(copy, img, size);
        for (int k = 0; k < 3; k++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t at = (state >> 33) % (round % 2 ? 16 : size); /* half the rounds hit the header fields */
            copy[at] = (unsigned char)(state >> 13);
        }
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t len = round % 5 == 0 ? (size_t)((state >> 33) % size) : size; /* sometimes cut short */
        write_raw(path, copy, len);
        free(copy);
        brg_data *d = NULL;
        brg_error err = {0};
        brg_status s = brg_data_bin_open(&d, path, 32, 8, &err);
        if (s == BRG_OK) {
            int32_t tok[4 * 8];
            BRG_ASSERT_OK(brg_data_batch(d, round, 4, tok, NULL), brg_data_last_error(d));
            for (int i = 0; i < 4 * 8; i++) CU_ASSERT(tok[i] >= 0 && tok[i] < 32);
            brg_data_destroy(d);
        } else {
            CU_ASSERT(d == NULL);
            BRG_ASSERT_CONTAINS(err.message, path);
        }
    }
    free(img);
    unlink(path);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"synthetic_deterministic_across_splits", test_synthetic_deterministic_across_splits},
        {"synthetic_period_structure", test_synthetic_period_structure},
        {"synthetic_tokens_cover_vocab", test_synthetic_tokens_cover_vocab},
        {"synthetic_optimal_loss", test_synthetic_optimal_loss},
        {"synthetic_defaults_and_accessors", test_synthetic_defaults_and_accessors},
        {"synthetic_bad_arguments", test_synthetic_bad_arguments},
        {"batch_bad_arguments", test_batch_bad_arguments},
        {"bin_round_trip", test_bin_round_trip},
        {"bin_write_is_atomic_and_checked", test_bin_write_is_atomic_and_checked},
        {"bin_missing", test_bin_missing},
        {"bin_truncated_header", test_bin_truncated_header},
        {"bin_bad_magic_and_version", test_bin_bad_magic_and_version},
        {"bin_size_mismatch", test_bin_size_mismatch},
        {"bin_token_out_of_vocab", test_bin_token_out_of_vocab},
        {"bin_too_few_tokens", test_bin_too_few_tokens},
        {"bin_random_corruption", test_bin_random_corruption},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "data", cases);
}
