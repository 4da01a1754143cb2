/* Safetensors (engine/io/safetensors.h): the header is read whole and checked before any data is
 * touched; data is read on demand with positioned reads (or from memory). The writer sorts names, so the
 * same tensors give the same bytes. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "io/safetensors.h"

#define ST_MSG(status, ...) brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, (status), __VA_ARGS__)

static const struct {
    const char *name;
    int bytes;
} dtypes[] = {
#define BRG__ST_DTYPE_ROW(name, bytes) {#name, bytes},
    BRG__ST_DTYPE_MAP(BRG__ST_DTYPE_ROW)
#undef BRG__ST_DTYPE_ROW
};

const char *brg__st_dtype_name(brg__st_dtype dtype) {
    return dtype >= 0 && dtype < BRG__ST_DTYPE_COUNT ? dtypes[dtype].name : "?";
}

int brg__st_dtype_size(brg__st_dtype dtype) { return dtype >= 0 && dtype < BRG__ST_DTYPE_COUNT ? dtypes[dtype].bytes : 0; }

struct brg__st_file {
    char *name;           /* for messages */
    int fd;               /* -1: in memory */
    const unsigned char *memory;
    uint64_t data_start;  /* 8 + header length */
    uint64_t data_size;
    brg__st_tensor *tensors;
    int64_t n;
    char **meta_keys, **meta_values;
    int64_t n_meta;
};

/* ---- reader ---------------------------------------------------------------------------------------- */

static int by_name(const void *a, const void *b) {
    return strcmp(((const brg__st_tensor *)a)->name, ((const brg__st_tensor *)b)->name);
}

static int by_begin(const void *a, const void *b) {
    const brg__st_tensor *x = *(const brg__st_tensor *const *)a, *y = *(const brg__st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* A whole number >= 0 that fits int64 (jansson gives json_int_t, a long long). */
static int nonneg_integer(const json_t *j, int64_t *out) {
    if (!json_is_integer(j) || json_integer_value(j) < 0) return 0;
    *out = (int64_t)json_integer_value(j);
    return 1;
}

static void close_file(brg__st_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    for (int64_t i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
    for (int64_t i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->tensors);
    free(f->name);
    free(f);
}

void brg__st_close(brg__st_file *f) { close_file(f); }

static brg_status parse_metadata(brg__st_file *f, json_t *meta, char *msg) {
    if (!json_is_object(meta)) return ST_MSG(BRG_ERR_PARSE, "%s: __metadata__ is not an object", f->name);
    size_t n = json_object_size(meta);
    f->meta_keys = brg__calloc(n ? n : 1, sizeof *f->meta_keys);
    f->meta_values = brg__calloc(n ? n : 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) return ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value) {
        if (!json_is_string(value))
            return ST_MSG(BRG_ERR_PARSE, "%s: __metadata__ '%s' is not a string", f->name, key);
        f->meta_keys[f->n_meta] = brg__strdup(key);
        f->meta_values[f->n_meta] = brg__strdup(json_string_value(value));
        if (!f->meta_keys[f->n_meta] || !f->meta_values[f->n_meta]) {
            f->n_meta++;
            return ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
        }
        f->n_meta++;
    }
    /* sort keys (and values with them) */
    for (int64_t i = 1; i < f->n_meta; i++)
        for (int64_t j = i; j > 0 && strcmp(f->meta_keys[j - 1], f->meta_keys[j]) > 0; j--) {
            char *k = f->meta_keys[j], *v = f->meta_values[j];
            f->meta_keys[j] = f->meta_keys[j - 1];
            f->meta_values[j] = f->meta_values[j - 1];
            f->meta_keys[j - 1] = k;
            f->meta_values[j - 1] = v;
        }
    return BRG_OK;
}

static brg_status parse_tensor(brg__st_file *f, const char *name, json_t *e, brg__st_tensor *t, char *msg) {
    if (!json_is_object(e)) return ST_MSG(BRG_ERR_PARSE, "%s: tensor '%s' is not an object", f->name, name);
    const char *key;
    json_t *value;
    json_object_foreach(e, key, value) if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
        return ST_MSG(BRG_ERR_PARSE, "%s: tensor '%s' has an unknown key '%s'", f->name, name, key);
    json_t *dt = json_object_get(e, "dtype"), *shape = json_object_get(e, "shape"),
           *off = json_object_get(e, "data_offsets");
    if (!dt || !shape || !off)
        return ST_MSG(BRG_ERR_PARSE, "%s: tensor '%s' lacks \"%s\"", f->name, name,
                      !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    const char *dts = json_string_value(dt);
    if (!dts) return ST_MSG(BRG_ERR_PARSE, "%s: tensor '%s': dtype is not a string", f->name, name);
    t->dtype = BRG__ST_DTYPE_COUNT;
    for (int d = 0; d < BRG__ST_DTYPE_COUNT; d++)
        if (strcmp(dts, dtypes[d].name) == 0) t->dtype = (brg__st_dtype)d;
    if (t->dtype == BRG__ST_DTYPE_COUNT) {
        int sub = strcmp(dts, "F4") == 0 || strcmp(dts, "F6_E2M3") == 0 || strcmp(dts, "F6_E3M2") == 0;
        return ST_MSG(sub ? BRG_ERR_UNSUPPORTED : BRG_ERR_PARSE, "%s: tensor '%s': %s dtype '%s'", f->name, name,
                      sub ? "unsupported sub-byte" : "unknown", dts);
    }
    if (!json_is_array(shape) || json_array_size(shape) > BRG__ST_MAX_DIMS)
        return ST_MSG(BRG_ERR_PARSE, "%s: tensor '%s': shape must be an array of at most %d dimensions", f->name, name,
                      BRG__ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    t->count = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (!nonneg_integer(json_array_get(shape, (size_t)d), &t->shape[d]))
            return ST_MSG(BRG_ERR_PARSE, "%s: tensor '%s': dimension %d is not a whole number >= 0", f->name, name, d);
        if (t->shape[d] && t->count > INT64_MAX / t->shape[d])
            return ST_MSG(BRG_ERR_PARSE, "%s: tensor '%s': its element count overflows 64 bits", f->name, name);
        t->count *= t->shape[d];
    }
    int64_t size = brg__st_dtype_size(t->dtype);
    if (t->count > INT64_MAX / size)
        return ST_MSG(BRG_ERR_PARSE, "%s: tensor '%s': its byte size overflows 64 bits", f->name, name);
    if (!json_is_array(off) || json_array_size(off) != 2 || !nonneg_integer(json_array_get(off, 0), &t->begin) ||
        !nonneg_integer(json_array_get(off, 1), &t->end) || t->begin > t->end)
        return ST_MSG(BRG_ERR_PARSE, "%s: tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= end", f->name,
                      name);
    if (t->end - t->begin != t->count * size) {
        char dims[160] = "";
        for (int d = 0; d < t->ndim; d++)
            snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        return ST_MSG(BRG_ERR_PARSE, "%s: tensor '%s': data_offsets [%lld, %lld] hold %lld bytes, but %s [%s] needs %lld",
                      f->name, name, (long long)t->begin, (long long)t->end, (long long)(t->end - t->begin), dts, dims,
                      (long long)(t->count * size));
    }
    if ((uint64_t)t->end > f->data_size)
        return ST_MSG(BRG_ERR_PARSE, "%s: tensor '%s': data_offsets [%lld, %lld] reach past the %llu bytes of data", f->name,
                      name, (long long)t->begin, (long long)t->end, (unsigned long long)f->data_size);
    return BRG_OK;
}

/* The header (len bytes at text) of f, whose data area has f->data_size bytes. */
static brg_status parse_header(brg__st_file *f, const char *text, size_t len, char *msg) {
    json_error_t je;
    brg_status parsed;
    json_t *root = brg__json_parse(text, len, JSON_REJECT_DUPLICATES, &je, &parsed);
    if (!root && parsed == BRG_ERR_OUT_OF_MEMORY) return ST_MSG(parsed, "%s: header: out of memory", f->name);
    if (!root) return ST_MSG(BRG_ERR_PARSE, "%s: header: %s (line %d, column %d)", f->name, je.text, je.line, je.column);
    brg_status s = BRG_OK;
    if (!json_is_object(root)) s = ST_MSG(BRG_ERR_PARSE, "%s: the header is not a JSON object", f->name);
    size_t n = s == BRG_OK ? json_object_size(root) : 0;
    f->tensors = brg__calloc(n ? n : 1, sizeof *f->tensors);
    if (s == BRG_OK && !f->tensors) s = ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    const char *key;
    json_t *value;
    if (s == BRG_OK) json_object_foreach(root, key, value) {
        if (strcmp(key, "__metadata__") == 0) {
            s = parse_metadata(f, value, msg);
        } else {
            brg__st_tensor *t = &f->tensors[f->n];
            s = parse_tensor(f, key, value, t, msg);
            if (s == BRG_OK && !(t->name = brg__strdup(key))) s = ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
            if (s == BRG_OK) f->n++;
        }
        if (s != BRG_OK) break;
    }
    json_decref(root);
    if (s != BRG_OK) return s;
    /* The data area: covered exactly, no overlaps, no holes. */
    brg__st_tensor **order = brg__malloc((size_t)(f->n ? f->n : 1) * sizeof *order);
    if (!order) return ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t i = 0; i < f->n; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n, sizeof *order, by_begin);
    int64_t at = 0;
    for (int64_t i = 0; i < f->n && s == BRG_OK; i++) {
        const brg__st_tensor *t = order[i];
        if (t->begin == t->end) continue; /* empty tensors take no bytes */
        if (t->begin < at)
            s = ST_MSG(BRG_ERR_PARSE, "%s: tensor '%s' [%lld, %lld] overlaps '%s'", f->name, t->name, (long long)t->begin,
                       (long long)t->end, order[i - 1]->name);
        else if (t->begin > at)
            s = ST_MSG(BRG_ERR_PARSE, "%s: bytes [%lld, %lld) of the data belong to no tensor (before '%s')", f->name,
                       (long long)at, (long long)t->begin, t->name);
        at = t->end;
    }
    free(order);
    if (s == BRG_OK && (uint64_t)at != f->data_size)
        s = ST_MSG(BRG_ERR_PARSE, "%s: %llu bytes after the last tensor belong to no tensor", f->name,
                   (unsigned long long)(f->data_size - (uint64_t)at));
    if (s == BRG_OK) qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, by_name);
    return s;
}

static uint64_t le64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static brg_status new_file(const char *name, brg__st_file **out, char *msg) {
    brg__st_file *f = brg__calloc(1, sizeof *f);
    if (!f || !(f->name = brg__strdup(name))) {
        free(f);
        return ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    f->fd = -1;
    *out = f;
    return BRG_OK;
}

/* Checks the size word and parses the header that follows; `header` holds its bytes. */
static brg_status finish_open(brg__st_file *f, uint64_t total, uint64_t n, const char *header, char *msg) {
    f->data_start = 8 + n;
    f->data_size = total - f->data_start;
    return parse_header(f, header, (size_t)n, msg);
}

static brg_status check_length(const brg__st_file *f, uint64_t total, uint64_t n, char *msg) {
    if (n > BRG__ST_HEADER_LIMIT)
        return ST_MSG(BRG_ERR_PARSE, "%s: header length %llu is above the limit of %d bytes", f->name,
                      (unsigned long long)n, BRG__ST_HEADER_LIMIT);
    if (n > total - 8)
        return ST_MSG(BRG_ERR_PARSE, "%s: header length %llu reaches past the end of the file (%llu bytes)", f->name,
                      (unsigned long long)n, (unsigned long long)total);
    return BRG_OK;
}

brg_status brg__st_open(const char *path, brg__st_file **out, char *msg) {
    if (out) *out = NULL;
    if (!path || !out) return ST_MSG(BRG_ERR_INVALID_ARGUMENT, "brg__st_open: NULL argument");
    const char *base = strrchr(path, '/');
    brg__st_file *f = NULL;
    BRG__CHECK(new_file(base ? base + 1 : path, &f, msg));
    struct stat st;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    brg_status s = BRG_OK;
    if (f->fd < 0 || fstat(f->fd, &st) != 0)
        s = ST_MSG(BRG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        s = ST_MSG(BRG_ERR_IO, "%s: not a regular file", path);
    else if (st.st_size < 8)
        s = ST_MSG(BRG_ERR_PARSE, "%s: %lld bytes: too short for a safetensors file (8-byte header length)", f->name,
                   (long long)st.st_size);
    unsigned char word[8];
    uint64_t n = 0, total = (uint64_t)st.st_size;
    if (s == BRG_OK && pread(f->fd, word, 8, 0) != 8) s = ST_MSG(BRG_ERR_IO, "%s: reading: %s", path, strerror(errno));
    if (s == BRG_OK) n = le64(word);
    if (s == BRG_OK) s = check_length(f, total, n, msg);
    char *header = s == BRG_OK ? brg__malloc((size_t)n + 1) : NULL;
    if (s == BRG_OK && !header) s = ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    if (s == BRG_OK && pread(f->fd, header, (size_t)n, 8) != (ssize_t)n)
        s = ST_MSG(BRG_ERR_IO, "%s: reading the header: %s", path, errno ? strerror(errno) : "short read");
    if (s == BRG_OK) s = finish_open(f, total, n, header, msg);
    free(header);
    if (s != BRG_OK) {
        close_file(f);
        return s;
    }
    *out = f;
    return BRG_OK;
}

brg_status brg__st_open_memory(const void *data, size_t size, const char *name, brg__st_file **out, char *msg) {
    if (out) *out = NULL;
    if ((!data && size) || !name || !out) return ST_MSG(BRG_ERR_INVALID_ARGUMENT, "brg__st_open_memory: NULL argument");
    brg__st_file *f = NULL;
    BRG__CHECK(new_file(name, &f, msg));
    f->memory = data;
    brg_status s = BRG_OK;
    if (size < 8) s = ST_MSG(BRG_ERR_PARSE, "%s: %zu bytes: too short for a safetensors file (8-byte header length)", name, size);
    uint64_t n = s == BRG_OK ? le64(f->memory) : 0;
    if (s == BRG_OK) s = check_length(f, size, n, msg);
    if (s == BRG_OK) s = finish_open(f, size, n, (const char *)f->memory + 8, msg);
    if (s != BRG_OK) {
        close_file(f);
        return s;
    }
    *out = f;
    return BRG_OK;
}

int64_t brg__st_count(const brg__st_file *f) { return f ? f->n : 0; }

const brg__st_tensor *brg__st_get(const brg__st_file *f, int64_t i) {
    return f && i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const brg__st_tensor *brg__st_find(const brg__st_file *f, const char *name) {
    if (!f || !name) return NULL;
    int64_t lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

const char *brg__st_metadata(const brg__st_file *f, const char *key) {
    for (int64_t i = 0; f && key && i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

int64_t brg__st_metadata_count(const brg__st_file *f) { return f ? f->n_meta : 0; }

brg_status brg__st_metadata_entry(const brg__st_file *f, int64_t i, const char **key, const char **value) {
    if (!f || !key || !value || i < 0 || i >= f->n_meta) return BRG_ERR_INVALID_ARGUMENT;
    *key = f->meta_keys[i];
    *value = f->meta_values[i];
    return BRG_OK;
}

static int is_tensor_of(const brg__st_file *f, const brg__st_tensor *t) {
    return f && t && t >= f->tensors && t < f->tensors + f->n;
}

/* bytes [off, off + len) of the data area into dst. */
static brg_status read_bytes(brg__st_file *f, const brg__st_tensor *t, uint64_t off, void *dst, size_t len, char *msg) {
    if (f->memory) {
        memcpy(dst, f->memory + f->data_start + off, len);
        return BRG_OK;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t got = pread(f->fd, (char *)dst + done, len - done, (off_t)(f->data_start + off + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return ST_MSG(BRG_ERR_IO, "%s: tensor '%s': %s", f->name, t->name,
                          got < 0 ? strerror(errno) : "the file ends early (truncated after it was opened?)");
        done += (size_t)got;
    }
    return BRG_OK;
}

brg_status brg__st_read_raw(brg__st_file *f, const brg__st_tensor *t, void *dst, int64_t bytes, char *msg) {
    if (!is_tensor_of(f, t) || (!dst && bytes)) return ST_MSG(BRG_ERR_INVALID_ARGUMENT, "brg__st_read_raw: bad argument");
    if (bytes != t->end - t->begin)
        return ST_MSG(BRG_ERR_SHAPE, "%s: tensor '%s' has %lld bytes, not %lld", f->name, t->name,
                      (long long)(t->end - t->begin), (long long)bytes);
    return bytes ? read_bytes(f, t, (uint64_t)t->begin, dst, (size_t)bytes, msg) : BRG_OK;
}

static float half_to_float(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float v;
    if (exp == 0)
        v = ldexpf((float)mant, -24); /* zero and subnormals */
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexpf((float)(mant | 0x400), exp - 25);
    return sign ? -v : v;
}

static float bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

brg_status brg__st_read_f32(brg__st_file *f, const brg__st_tensor *t, float *dst, int64_t count, char *msg) {
    if (!is_tensor_of(f, t) || (!dst && count)) return ST_MSG(BRG_ERR_INVALID_ARGUMENT, "brg__st_read_f32: bad argument");
    if (count != t->count)
        return ST_MSG(BRG_ERR_SHAPE, "%s: tensor '%s' has %lld elements, not %lld", f->name, t->name,
                      (long long)t->count, (long long)count);
    if (t->dtype == BRG__ST_F32) return read_bytes(f, t, (uint64_t)t->begin, dst, (size_t)count * 4, msg);
    if (t->dtype != BRG__ST_F16 && t->dtype != BRG__ST_BF16 && t->dtype != BRG__ST_F64)
        return ST_MSG(BRG_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; brigade reads F32, F16, BF16 and F64", f->name,
                      t->name, brg__st_dtype_name(t->dtype));
    int size = brg__st_dtype_size(t->dtype);
    enum { CHUNK = 1 << 14 };
    unsigned char buf[CHUNK * 8];
    for (int64_t i = 0; i < count; i += CHUNK) {
        int64_t k = count - i < CHUNK ? count - i : CHUNK;
        BRG__CHECK(read_bytes(f, t, (uint64_t)(t->begin + i * size), buf, (size_t)(k * size), msg));
        for (int64_t j = 0; j < k; j++) {
            const unsigned char *b = buf + j * size;
            if (t->dtype == BRG__ST_F64) {
                double d;
                uint64_t bits = le64(b);
                memcpy(&d, &bits, sizeof d);
                dst[i + j] = (float)d;
            } else {
                uint16_t h = (uint16_t)(b[0] | (b[1] << 8));
                dst[i + j] = t->dtype == BRG__ST_F16 ? half_to_float(h) : bf16_to_float(h);
            }
        }
    }
    return BRG_OK;
}

/* ---- writer ---------------------------------------------------------------------------------------- */

typedef struct pending_tensor {
    char *name;
    brg__st_dtype dtype;
    int ndim;
    int64_t shape[BRG__ST_MAX_DIMS];
    int64_t bytes;
    const void *data;
} pending_tensor;

struct brg__st_writer {
    pending_tensor *tensors;
    int64_t n, cap;
    char **keys, **values;
    int64_t n_meta, cap_meta;
};

brg_status brg__st_writer_create(brg__st_writer **out, char *msg) {
    if (!out) return ST_MSG(BRG_ERR_INVALID_ARGUMENT, "brg__st_writer_create: out is NULL");
    *out = brg__calloc(1, sizeof **out);
    return *out ? BRG_OK : ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
}

static int valid_utf8(const char *s) {
    json_t *j = json_string(s); /* jansson checks UTF-8 */
    int ok = j != NULL;
    json_decref(j);
    return ok;
}

brg_status brg__st_writer_add(brg__st_writer *w, const char *name, brg__st_dtype dtype, int ndim, const int64_t *shape,
                              const void *data, char *msg) {
    if (!w || !name || !*name || strcmp(name, "__metadata__") == 0 || !valid_utf8(name))
        return ST_MSG(BRG_ERR_INVALID_ARGUMENT, "safetensors writer: a tensor needs a UTF-8 name other than __metadata__");
    if (dtype < 0 || dtype >= BRG__ST_DTYPE_COUNT || ndim < 0 || ndim > BRG__ST_MAX_DIMS || (ndim && !shape))
        return ST_MSG(BRG_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': bad dtype or dimensions", name);
    int64_t count = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] && count > INT64_MAX / shape[d] / 8))
            return ST_MSG(BRG_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': bad dimension %d", name, d);
        count *= shape[d];
    }
    int64_t bytes = count * brg__st_dtype_size(dtype);
    if (bytes && !data) return ST_MSG(BRG_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s' has no data", name);
    for (int64_t i = 0; i < w->n; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return ST_MSG(BRG_ERR_NAME, "safetensors writer: tensor '%s' added twice", name);
    if (w->n == w->cap) {
        int64_t cap = w->cap ? 2 * w->cap : 16;
        pending_tensor *t = brg__realloc(w->tensors, (size_t)cap * sizeof *t);
        if (!t) return ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
        w->tensors = t;
        w->cap = cap;
    }
    pending_tensor *t = &w->tensors[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = brg__strdup(name))) return ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->bytes = bytes;
    t->data = data;
    w->n++;
    return BRG_OK;
}

brg_status brg__st_writer_metadata(brg__st_writer *w, const char *key, const char *value, char *msg) {
    if (!w || !key || !value || !valid_utf8(key) || !valid_utf8(value))
        return ST_MSG(BRG_ERR_INVALID_ARGUMENT, "safetensors writer: metadata needs UTF-8 strings");
    for (int64_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->keys[i], key) == 0) return ST_MSG(BRG_ERR_NAME, "safetensors writer: metadata '%s' given twice", key);
    if (w->n_meta == w->cap_meta) {
        int64_t cap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **k = brg__realloc(w->keys, (size_t)cap * sizeof *k);
        if (k) w->keys = k;
        char **v = brg__realloc(w->values, (size_t)cap * sizeof *v);
        if (v) w->values = v;
        if (!k || !v) return ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
        w->cap_meta = cap;
    }
    w->keys[w->n_meta] = brg__strdup(key);
    w->values[w->n_meta] = brg__strdup(value);
    if (!w->keys[w->n_meta] || !w->values[w->n_meta]) {
        free(w->keys[w->n_meta]);
        free(w->values[w->n_meta]);
        return ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    w->n_meta++;
    return BRG_OK;
}

static int pending_by_name(const void *a, const void *b) {
    return strcmp(((const pending_tensor *)a)->name, ((const pending_tensor *)b)->name);
}

/* The header: "__metadata__" first, then the tensors in name order (jansson keeps insertion order). */
static char *header_text(brg__st_writer *w) {
    if (w->n) qsort(w->tensors, (size_t)w->n, sizeof *w->tensors, pending_by_name); /* a shard of no tensors: NULL */
    uint64_t mark = brg__json_build_begin();
    json_t *root = json_object();
    if (w->n_meta) {
        json_t *meta = json_object();
        /* sorted keys */
        int64_t *order = brg__malloc((size_t)w->n_meta * sizeof *order);
        if (!order) {
            json_decref(meta);
            json_decref(root);
            return NULL;
        }
        for (int64_t i = 0; order && i < w->n_meta; i++) order[i] = i;
        for (int64_t i = 1; order && i < w->n_meta; i++)
            for (int64_t j = i; j > 0 && strcmp(w->keys[order[j - 1]], w->keys[order[j]]) > 0; j--) {
                int64_t x = order[j];
                order[j] = order[j - 1];
                order[j - 1] = x;
            }
        for (int64_t i = 0; order && i < w->n_meta; i++)
            brg__json_set(meta, w->keys[order[i]], json_string(w->values[order[i]]));
        free(order);
        brg__json_set(root, "__metadata__", meta);
    }
    int64_t at = 0;
    for (int64_t i = 0; i < w->n; i++) {
        const pending_tensor *t = &w->tensors[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) brg__json_append(shape, json_integer(t->shape[d]));
        brg__json_set(root, t->name,
                            json_pack("{s:s, s:o, s:[I, I]}", "dtype", brg__st_dtype_name(t->dtype), "shape", shape,
                                      "data_offsets", (json_int_t)at, (json_int_t)(at + t->bytes)));
        at += t->bytes;
    }
    char *text = brg__json_dump(root, JSON_COMPACT | JSON_PRESERVE_ORDER, mark);
    json_decref(root);
    return text;
}

static int write_all(int fd, const void *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

brg_status brg__st_writer_write(brg__st_writer *w, const char *path, char *msg) {
    if (!w || !path) return ST_MSG(BRG_ERR_INVALID_ARGUMENT, "brg__st_writer_write: NULL argument");
    char *text = header_text(w);
    if (!text) return ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    size_t len = strlen(text), padded = (len + 8 + 7) / 8 * 8 - 8;
    if (padded > BRG__ST_HEADER_LIMIT) {
        free(text);
        return ST_MSG(BRG_ERR_INVALID_ARGUMENT, "%s: the header would take %zu bytes, above the limit", path, padded);
    }
    char *header = brg__malloc(padded + 8);
    if (!header) {
        free(text);
        return ST_MSG(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int i = 0; i < 8; i++) header[i] = (char)(((uint64_t)padded >> (8 * i)) & 0xff);
    memcpy(header + 8, text, len);
    memset(header + 8 + len, ' ', padded - len);
    free(text);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int failed = fd < 0 || write_all(fd, header, padded + 8) != 0;
    for (int64_t i = 0; !failed && i < w->n; i++)
        failed = w->tensors[i].bytes && write_all(fd, w->tensors[i].data, (size_t)w->tensors[i].bytes) != 0;
    if (!failed) failed = fsync(fd) != 0;
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && !failed) {
        failed = 1;
        saved = errno;
    }
    free(header);
    if (failed) return ST_MSG(BRG_ERR_IO, "writing '%s': %s", path, strerror(saved));
    return BRG_OK;
}

void brg__st_writer_destroy(brg__st_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n; i++) free(w->tensors[i].name);
    for (int64_t i = 0; i < w->n_meta; i++) {
        free(w->keys[i]);
        free(w->values[i]);
    }
    free(w->tensors);
    free(w->keys);
    free(w->values);
    free(w);
}
