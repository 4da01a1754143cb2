/* Training data: the synthetic repeated-pattern task and llm.c token shards (see brigade/data.h). */
#include "brigade/data.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define HEADER_BYTES ((int64_t)BRG_DATA_BIN_HEADER_INTS * 4)
/* splitmix64's increment: the j-th output of a stream is reached without drawing the j before it. */
#define SPLITMIX_GAMMA 0x9e3779b97f4a7c15ULL

struct brg_data {
    brg_data_kind kind;
    int64_t vocab;
    int64_t seq;
    /* synthetic */
    uint64_t key; /* derived from the seed */
    int64_t period;
    /* shard */
    char *path;
    unsigned char *map; /* the whole file, read-only */
    size_t map_bytes;
    const unsigned char *tokens; /* map + HEADER_BYTES: little-endian uint16 */
    int64_t n_tokens;
    char error[BRG_ERROR_MESSAGE_MAX];
};

/* ---- helpers ------------------------------------------------------------------------------------ */

static brg_status check_shape(const char *what, int64_t vocab, int64_t seq, brg_error *err) {
    if (vocab < 1 || vocab > BRG_DATA_MAX_VOCAB)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "%s: vocab %lld is out of range (1 to %lld)", what,
                              (long long)vocab, (long long)BRG_DATA_MAX_VOCAB);
    if (seq < 1 || seq > BRG_DATA_MAX_SEQ)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "%s: seq %lld is out of range (1 to %lld)", what,
                              (long long)seq, (long long)BRG_DATA_MAX_SEQ);
    return BRG_OK;
}

static uint32_t read_u16_le(const unsigned char *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

static int32_t read_i32_le(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static void write_i32_le(unsigned char *p, int32_t v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    p[0] = (unsigned char)u;
    p[1] = (unsigned char)(u >> 8);
    p[2] = (unsigned char)(u >> 16);
    p[3] = (unsigned char)(u >> 24);
}

static brg_status data_fail(brg_data *d, brg_status status, const char *fmt, ...) BRG__PRINTF(3, 4);
static brg_status data_fail(brg_data *d, brg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->error, sizeof d->error, fmt, ap);
    va_end(ap);
    return status;
}

/* ---- the synthetic task ------------------------------------------------------------------------- */

brg_status brg_data_synthetic_create(brg_data **out, int64_t vocab, int64_t seq, uint64_t seed,
                                     brg_error *err) {
    brg_synthetic_options options = BRG_SYNTHETIC_OPTIONS_INIT;
    if (seq >= 1 && options.period > seq + 1) options.period = seq + 1;
    return brg_data_synthetic_create_with_options(out, vocab, seq, seed, &options, err);
}

brg_status brg_data_synthetic_create_with_options(brg_data **out, int64_t vocab, int64_t seq, uint64_t seed,
                                                  const brg_synthetic_options *options, brg_error *err) {
    if (out) *out = NULL;
    if (!out) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_data_synthetic_create: out is NULL");
    BRG__CHECK(check_shape("brg_data_synthetic_create", vocab, seq, err));
    brg_synthetic_options defaults = BRG_SYNTHETIC_OPTIONS_INIT;
    if (!options) options = &defaults;
    if (options->period < 1 || options->period > seq + 1)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                              "brg_data_synthetic_create: period %lld is out of range (1 to seq + 1 = %lld)",
                              (long long)options->period, (long long)(seq + 1));
    brg_data *d = brg__calloc(1, sizeof *d);
    if (!d) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "brg_data_synthetic_create: out of memory");
    d->kind = BRG_DATA_SYNTHETIC;
    d->vocab = vocab;
    d->seq = seq;
    d->period = options->period;
    uint64_t state = seed;
    d->key = brg__splitmix64(&state);
    *out = d;
    return BRG_OK;
}

double brg_data_synthetic_optimal_loss(int64_t vocab, int64_t seq, int64_t period) {
    if (vocab < 1 || vocab > BRG_DATA_MAX_VOCAB || seq < 1 || seq > BRG_DATA_MAX_SEQ || period < 1 ||
        period > seq + 1)
        return NAN;
    return (double)(period - 1) * log((double)vocab) / (double)seq;
}

/* Token j (0 <= j < period) of sample `sample`'s pattern: output j of the splitmix64 stream seeded by
 * (seed, sample), mapped to [0, vocab) by a multiply-shift (no modulo bias worth the name). */
static int32_t synthetic_token(const brg_data *d, uint64_t sample_base, int64_t j) {
    uint64_t state = sample_base + (uint64_t)j * SPLITMIX_GAMMA;
    uint64_t x = brg__splitmix64(&state);
    return (int32_t)(((x >> 32) * (uint64_t)d->vocab) >> 32);
}

static void synthetic_sample(const brg_data *d, int64_t sample, int32_t *tokens, int32_t *targets) {
    uint64_t state = d->key ^ (uint64_t)sample;
    uint64_t base = brg__splitmix64(&state);
    /* w[t] = pattern[t mod period]; draw each pattern token once. */
    int64_t p = d->period;
    for (int64_t t = 0; t < p && t <= d->seq; t++) {
        int32_t w = synthetic_token(d, base, t);
        for (int64_t u = t; u <= d->seq; u += p) {
            if (tokens && u < d->seq) tokens[u] = w;
            if (targets && u >= 1) targets[u - 1] = w;
        }
    }
}

/* ---- token shards ------------------------------------------------------------------------------- */

static void bin_unmap(brg_data *d) {
    if (d->map) munmap(d->map, d->map_bytes);
    d->map = NULL;
}

/* Checks the mapped shard: header, size, token count, every token below vocab. */
static brg_status bin_validate(brg_data *d, brg_error *err) {
    const char *path = d->path;
    const unsigned char *h = d->map;
    int32_t magic = read_i32_le(h), version = read_i32_le(h + 4), count = read_i32_le(h + 8);
    if (magic != BRG_DATA_BIN_MAGIC)
        return brg__error_set(err, BRG_ERR_PARSE,
                              "'%s': bad magic %d at byte offset 0 (an llm.c token shard starts with %d)", path,
                              (int)magic, BRG_DATA_BIN_MAGIC);
    if (version != BRG_DATA_BIN_VERSION)
        return brg__error_set(err, BRG_ERR_PARSE,
                              "'%s': unsupported version %d at byte offset 4 (expected %d: uint16 tokens)", path,
                              (int)version, BRG_DATA_BIN_VERSION);
    if (count < 0)
        return brg__error_set(err, BRG_ERR_PARSE, "'%s': negative token count %d at byte offset 8", path,
                              (int)count);
    int64_t token_bytes = 0, expected = 0;
    /* count is an int32, so this holds; checked all the same, as every size read from a file is. */
    if (!brg__count_mul(count, 2, INT64_MAX, &token_bytes) ||
        !brg__count_add(token_bytes, HEADER_BYTES, INT64_MAX, &expected))
        return brg__error_set(err, BRG_ERR_PARSE, "'%s': token count %d at byte offset 8 is too large", path,
                              (int)count);
    if ((int64_t)d->map_bytes != expected)
        return brg__error_set(err, BRG_ERR_PARSE,
                              "'%s': the header (byte offset 8) says %d tokens, which take %lld bytes with the "
                              "header, but the file has %lld bytes (%s)",
                              path, (int)count, (long long)expected, (long long)d->map_bytes,
                              (int64_t)d->map_bytes < expected ? "truncated" : "trailing bytes");
    d->n_tokens = count;
    if (d->n_tokens < d->seq + 1)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                              "'%s': %lld tokens, fewer than the seq + 1 = %lld one sample needs", path,
                              (long long)d->n_tokens, (long long)(d->seq + 1));
    if (d->vocab < BRG_DATA_BIN_MAX_VOCAB) {
        for (int64_t i = 0; i < d->n_tokens; i++) {
            uint32_t token = read_u16_le(d->tokens + 2 * i);
            if ((int64_t)token >= d->vocab)
                return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                                      "'%s': token %lld (byte offset %lld) is %u, not below the vocabulary size "
                                      "%lld",
                                      path, (long long)i, (long long)(HEADER_BYTES + 2 * i), (unsigned)token,
                                      (long long)d->vocab);
        }
    }
    return BRG_OK;
}

static brg_status bin_map(brg_data *d, brg_error *err) {
    const char *path = d->path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return brg__error_set(err, BRG_ERR_IO, "cannot open token shard '%s': %s", path, strerror(errno));
    struct stat st;
    brg_status status = BRG_OK;
    if (fstat(fd, &st) != 0) {
        status = brg__error_set(err, BRG_ERR_IO, "cannot stat token shard '%s': %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        status = brg__error_set(err, BRG_ERR_IO, "token shard '%s' is not a regular file", path);
    } else if ((int64_t)st.st_size < HEADER_BYTES) {
        status = brg__error_set(err, BRG_ERR_PARSE,
                                "'%s': %lld bytes, shorter than the %lld-byte header of an llm.c token shard "
                                "(truncated)",
                                path, (long long)st.st_size, (long long)HEADER_BYTES);
    } else if ((uint64_t)st.st_size > SIZE_MAX) {
        status = brg__error_set(err, BRG_ERR_IO, "token shard '%s' is too large to map", path);
    } else {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            status = brg__error_set(err, BRG_ERR_IO, "cannot map token shard '%s': %s", path, strerror(errno));
        } else {
            d->map = map;
            d->map_bytes = (size_t)st.st_size;
            d->tokens = d->map + HEADER_BYTES;
        }
    }
    close(fd);
    return status;
}

brg_status brg_data_bin_open(brg_data **out, const char *path, int64_t vocab, int64_t seq, brg_error *err) {
    if (out) *out = NULL;
    if (!out) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_data_bin_open: out is NULL");
    if (!path) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_data_bin_open: path is NULL");
    if (!path[0]) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_data_bin_open: path is empty");
    BRG__CHECK(check_shape("brg_data_bin_open", vocab, seq, err));
    brg_data *d = brg__calloc(1, sizeof *d);
    char *copy = brg__strdup(path);
    if (!d || !copy) {
        free(d);
        free(copy);
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "brg_data_bin_open '%s': out of memory", path);
    }
    d->kind = BRG_DATA_BIN;
    d->vocab = vocab;
    d->seq = seq;
    d->path = copy;
    brg_status status = bin_map(d, err);
    if (status == BRG_OK) status = bin_validate(d, err);
    if (status != BRG_OK) {
        brg_data_destroy(d);
        return status;
    }
    *out = d;
    return BRG_OK;
}

/* Window start of sample i: (i * seq) mod (n - seq), without overflow. */
static int64_t bin_window_start(const brg_data *d, int64_t sample) {
    uint64_t m = (uint64_t)(d->n_tokens - d->seq);
    uint64_t a = (uint64_t)sample % m, b = (uint64_t)d->seq % m;
    /* a, b < m < 2^31 (an int32 token count), so the product fits in 64 bits. */
    return (int64_t)((a * b) % m);
}

static void bin_sample(const brg_data *d, int64_t sample, int32_t *tokens, int32_t *targets) {
    const unsigned char *w = d->tokens + 2 * bin_window_start(d, sample);
    for (int64_t t = 0; t < d->seq; t++) {
        if (tokens) tokens[t] = (int32_t)read_u16_le(w + 2 * t);
        if (targets) targets[t] = (int32_t)read_u16_le(w + 2 * (t + 1));
    }
}

/* ---- writing shards ----------------------------------------------------------------------------- */

static brg_status write_all(int fd, const unsigned char *buf, size_t size, const char *tmp, brg_error *err) {
    while (size > 0) {
        ssize_t n = write(fd, buf, size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return brg__error_set(err, BRG_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
        buf += n;
        size -= (size_t)n;
    }
    return BRG_OK;
}

/* Writes the header and the tokens to fd, in chunks. */
static brg_status write_shard(int fd, const int32_t *tokens, int64_t n, const char *tmp, brg_error *err) {
    unsigned char header[BRG_DATA_BIN_HEADER_INTS * 4] = {0};
    write_i32_le(header, BRG_DATA_BIN_MAGIC);
    write_i32_le(header + 4, BRG_DATA_BIN_VERSION);
    write_i32_le(header + 8, (int32_t)n);
    BRG__CHECK(write_all(fd, header, sizeof header, tmp, err));
    enum { CHUNK = 8192 };
    unsigned char chunk[2 * CHUNK];
    for (int64_t i = 0; i < n; i += CHUNK) {
        int64_t count = n - i < CHUNK ? n - i : CHUNK;
        for (int64_t j = 0; j < count; j++) {
            uint32_t token = (uint32_t)tokens[i + j];
            chunk[2 * j] = (unsigned char)token;
            chunk[2 * j + 1] = (unsigned char)(token >> 8);
        }
        BRG__CHECK(write_all(fd, chunk, (size_t)(2 * count), tmp, err));
    }
    return BRG_OK;
}

/* fsync of the directory holding path, so the rename itself is durable. Best effort. */
static void sync_parent_dir(const char *path) {
    char *dir = brg__strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    const char *name = ".";
    if (slash == dir)
        name = "/";
    else if (slash) {
        *slash = '\0';
        name = dir;
    }
    int fd = open(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

brg_status brg_data_write_bin(const char *path, const int32_t *tokens, int64_t n, brg_error *err) {
    if (!path || !path[0])
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_data_write_bin: path is %s",
                              path ? "empty" : "NULL");
    if (n < 0 || n > BRG_DATA_BIN_MAX_TOKENS)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                              "brg_data_write_bin '%s': token count %lld is out of range (0 to %d)", path,
                              (long long)n, BRG_DATA_BIN_MAX_TOKENS);
    if (!tokens && n > 0)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_data_write_bin '%s': tokens is NULL", path);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= BRG_DATA_BIN_MAX_VOCAB)
            return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                                  "brg_data_write_bin '%s': token %lld is %d, outside the uint16 range 0 to %d",
                                  path, (long long)i, (int)tokens[i], BRG_DATA_BIN_MAX_VOCAB - 1);
    size_t len = strlen(path);
    char *tmp = brg__malloc(len + 16);
    if (!tmp) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "brg_data_write_bin '%s': out of memory", path);
    snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        brg_status s = brg__error_set(err, BRG_ERR_IO, "cannot create a temporary file '%s' for '%s': %s", tmp,
                                      path, strerror(errno));
        free(tmp);
        return s;
    }
    brg_status status = BRG_OK;
    if (fchmod(fd, 0644) != 0)
        status = brg__error_set(err, BRG_ERR_IO, "cannot set the mode of '%s': %s", tmp, strerror(errno));
    if (status == BRG_OK) status = write_shard(fd, tokens, n, tmp, err);
    if (status == BRG_OK && fsync(fd) != 0)
        status = brg__error_set(err, BRG_ERR_IO, "cannot fsync '%s': %s", tmp, strerror(errno));
    if (close(fd) != 0 && status == BRG_OK)
        status = brg__error_set(err, BRG_ERR_IO, "cannot close '%s': %s", tmp, strerror(errno));
    if (status == BRG_OK && rename(tmp, path) != 0)
        status = brg__error_set(err, BRG_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    if (status != BRG_OK)
        unlink(tmp);
    else
        sync_parent_dir(path);
    free(tmp);
    return status;
}

/* ---- the handle --------------------------------------------------------------------------------- */

void brg_data_destroy(brg_data *d) {
    if (!d) return;
    bin_unmap(d);
    free(d->path);
    free(d);
}

brg_status brg_data_batch(brg_data *d, int64_t first_sample, int64_t batch_size, int32_t *tokens,
                          int32_t *targets) {
    if (!d) return BRG_ERR_INVALID_ARGUMENT;
    if (!tokens && !targets)
        return data_fail(d, BRG_ERR_INVALID_ARGUMENT, "brg_data_batch: tokens and targets are both NULL");
    if (first_sample < 0)
        return data_fail(d, BRG_ERR_INVALID_ARGUMENT, "brg_data_batch: first sample %lld is negative",
                         (long long)first_sample);
    if (batch_size < 1)
        return data_fail(d, BRG_ERR_INVALID_ARGUMENT, "brg_data_batch: batch size %lld is not positive",
                         (long long)batch_size);
    if (batch_size > INT64_MAX - first_sample)
        return data_fail(d, BRG_ERR_INVALID_ARGUMENT,
                         "brg_data_batch: samples %lld + %lld run past the largest sample index",
                         (long long)first_sample, (long long)batch_size);
    int64_t elements;
    if (!brg__count_mul(batch_size, d->seq, INT64_MAX / (int64_t)sizeof(int32_t), &elements))
        return data_fail(d, BRG_ERR_INVALID_ARGUMENT,
                         "brg_data_batch: %lld samples of %lld tokens are more tokens than a buffer can hold",
                         (long long)batch_size, (long long)d->seq);
    for (int64_t b = 0; b < batch_size; b++) {
        int32_t *tok = tokens ? tokens + b * d->seq : NULL;
        int32_t *tgt = targets ? targets + b * d->seq : NULL;
        if (d->kind == BRG_DATA_SYNTHETIC)
            synthetic_sample(d, first_sample + b, tok, tgt);
        else
            bin_sample(d, first_sample + b, tok, tgt);
    }
    return BRG_OK;
}

const char *brg_data_last_error(const brg_data *d) { return d ? d->error : "brg_data: the handle is NULL"; }

brg_data_kind brg_data_get_kind(const brg_data *d) { return d ? d->kind : BRG_DATA_SYNTHETIC; }

int64_t brg_data_vocab(const brg_data *d) { return d ? d->vocab : 0; }

int64_t brg_data_seq(const brg_data *d) { return d ? d->seq : 0; }

int64_t brg_data_period(const brg_data *d) { return d && d->kind == BRG_DATA_SYNTHETIC ? d->period : 0; }

int64_t brg_data_token_count(const brg_data *d) { return d && d->kind == BRG_DATA_BIN ? d->n_tokens : 0; }

brg_status brg_data_optimal_loss(const brg_data *d, double *loss) {
    if (!d || !loss) return BRG_ERR_INVALID_ARGUMENT;
    if (d->kind != BRG_DATA_SYNTHETIC) return BRG_ERR_UNSUPPORTED;
    *loss = brg_data_synthetic_optimal_loss(d->vocab, d->seq, d->period);
    return BRG_OK;
}
