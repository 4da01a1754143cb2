/* Safetensors reader and writer (engine/io/safetensors.h). The header is parsed with jansson; the data is
 * read with positioned reads, on demand. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The format is little-endian, and F32 tensors are read straight into the caller's floats. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors.c assumes a little-endian host");

#define METADATA_KEY "__metadata__"

static const struct {
    const char *name;
    int size;
} dtype_table[BRG__ST_DTYPE_COUNT] = {
#define BRG__ST_DTYPE_ROW(name, bytes) {#name, bytes},
    BRG__ST_DTYPE_MAP(BRG__ST_DTYPE_ROW)
#undef BRG__ST_DTYPE_ROW
};

/* Dtypes of the format with fewer than 8 bits an element: known, refused. */
static const char *const sub_byte_dtypes[] = {"F4", "F6_E2M3", "F6_E3M2"};

const char *brg__st_dtype_name(brg__st_dtype dtype) {
    return (unsigned)dtype < BRG__ST_DTYPE_COUNT ? dtype_table[dtype].name : "?";
}

int brg__st_dtype_size(brg__st_dtype dtype) {
    return (unsigned)dtype < BRG__ST_DTYPE_COUNT ? dtype_table[dtype].size : 0;
}

static bool dtype_parse(const char *name, brg__st_dtype *out) {
    for (int d = 0; d < BRG__ST_DTYPE_COUNT; d++)
        if (strcmp(name, dtype_table[d].name) == 0) {
            *out = (brg__st_dtype)d;
            return true;
        }
    return false;
}

/* "path: tensor 'name': detail" (or "path: detail" without a tensor) into msg; returns status. */
static brg_status st_fail(char *msg, brg_status status, const char *file, const char *tensor, const char *fmt, ...)
    BRG__PRINTF(5, 6);
static brg_status st_fail(char *msg, brg_status status, const char *file, const char *tensor, const char *fmt, ...) {
    char detail[BRG_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (tensor) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, status, "%s: tensor '%s': %s", file, tensor, detail);
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, status, "%s: %s", file, detail);
}

/* "[5, 6]" into buf ("[]" for a scalar), cut short with "..." if it does not fit. */
static const char *format_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "a JSON value";
}

/* ---- where the bytes come from ------------------------------------------------------------------------ */

typedef struct st_source {
    const char *name;             /* for messages */
    int fd;                       /* -1 for a buffer in memory */
    const unsigned char *memory;  /* borrowed */
    int64_t size;                 /* at open */
} st_source;

/* Reads exactly `bytes` at `offset` into dst. A read that comes short is BRG_ERR_IO: the file shrank since
 * it was opened (or, for the header, while it was opened). */
static brg_status source_read(const st_source *src, int64_t offset, void *dst, int64_t bytes, const char *tensor,
                              char *msg) {
    int64_t done = 0;
    if (src->fd < 0) {
        done = offset < src->size ? (src->size - offset < bytes ? src->size - offset : bytes) : 0;
        if (done > 0) memcpy(dst, src->memory + offset, (size_t)done);
    }
    while (src->fd >= 0 && done < bytes) {
        int64_t want = bytes - done < (1 << 30) ? bytes - done : (1 << 30);
        ssize_t got = pread(src->fd, (char *)dst + done, (size_t)want, (off_t)(offset + done));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0)
            return st_fail(msg, BRG_ERR_IO, src->name, tensor, "cannot read bytes %lld to %lld of the file: %s",
                           (long long)offset, (long long)(offset + bytes), strerror(errno));
        if (got == 0) break;
        done += got;
    }
    if (done < bytes)
        return st_fail(msg, BRG_ERR_IO, src->name, tensor,
                       "the file ends at byte %lld, before byte %lld (was it truncated after it was opened?)",
                       (long long)(offset + done), (long long)(offset + bytes));
    return BRG_OK;
}

/* ---- reader ------------------------------------------------------------------------------------------- */

typedef struct st_metadata_entry {
    const char *key, *value;
} st_metadata_entry;

/* One allocation: this struct, then the tensors, the metadata entries and every string. */
struct brg__st_file {
    st_source source;
    int64_t data_start, data_size; /* the data area: its offset in the file and its length */
    int64_t count;
    brg__st_tensor *tensors; /* sorted by name */
    int64_t metadata_count;
    st_metadata_entry *metadata; /* sorted by key */
};

/* The key that jansson reported as duplicated: the JSON string that ends where it stopped reading (its
 * opening quote is the nearest unescaped quote before the closing one). "" when it cannot be found. */
static void duplicate_key(const char *text, size_t size, size_t position, char *key, size_t key_size) {
    key[0] = '\0';
    size_t close = position < size ? position : size;
    while (close > 0 && text[close - 1] != '"') close--;
    if (close < 2) return;
    for (size_t open = close - 1; open-- > 0;) {
        if (text[open] != '"') continue;
        size_t slashes = 0;
        while (open > slashes && text[open - 1 - slashes] == '\\') slashes++;
        if (slashes % 2) continue;
        json_t *s = json_loadb(text + open, close - open, JSON_DECODE_ANY, NULL);
        if (json_is_string(s)) snprintf(key, key_size, "%s", json_string_value(s));
        json_decref(s);
        return;
    }
}

/* A non-negative JSON integer into *out, or false. */
static bool json_count(const json_t *v, int64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (int64_t)json_integer_value(v);
    return true;
}

/* Checks one entry {dtype, shape, data_offsets} of the tensor `name` into t (all but the name). */
static brg_status parse_entry(const char *file, const char *name, const json_t *entry, int64_t data_size,
                              brg__st_tensor *t, char *msg) {
    if (!json_is_object(entry))
        return st_fail(msg, BRG_ERR_PARSE, file, name, "entry is %s, not an object {dtype, shape, data_offsets}",
                       json_kind(entry));
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)entry, key, value) {
        if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 && strcmp(key, "data_offsets") != 0)
            return st_fail(msg, BRG_ERR_PARSE, file, name,
                           "unknown key '%s' (an entry holds dtype, shape and data_offsets only)", key);
    }
    static const char *const required[] = {"dtype", "shape", "data_offsets"};
    for (int i = 0; i < 3; i++)
        if (!json_object_get(entry, required[i]))
            return st_fail(msg, BRG_ERR_PARSE, file, name, "missing key '%s'", required[i]);

    const json_t *dtype = json_object_get(entry, "dtype");
    if (!json_is_string(dtype))
        return st_fail(msg, BRG_ERR_PARSE, file, name, "dtype is %s, not a string", json_kind(dtype));
    const char *dtype_name = json_string_value(dtype);
    if (!dtype_parse(dtype_name, &t->dtype)) {
        for (size_t i = 0; i < sizeof sub_byte_dtypes / sizeof sub_byte_dtypes[0]; i++)
            if (strcmp(dtype_name, sub_byte_dtypes[i]) == 0)
                return st_fail(msg, BRG_ERR_UNSUPPORTED, file, name,
                               "dtype %s packs elements in less than a byte, which brigade does not read", dtype_name);
        return st_fail(msg, BRG_ERR_PARSE, file, name, "unknown dtype '%s'", dtype_name);
    }

    const json_t *shape = json_object_get(entry, "shape");
    if (!json_is_array(shape))
        return st_fail(msg, BRG_ERR_PARSE, file, name, "shape is %s, not an array of integers", json_kind(shape));
    if (json_array_size(shape) > BRG__ST_MAX_DIMS)
        return st_fail(msg, BRG_ERR_PARSE, file, name, "shape has %zu dimensions, more than the %d brigade reads",
                       json_array_size(shape), BRG__ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    t->count = 1;
    bool overflow = false;
    for (int i = 0; i < t->ndim; i++) {
        const json_t *dim = json_array_get(shape, (size_t)i);
        if (json_is_integer(dim) && json_integer_value(dim) < 0)
            return st_fail(msg, BRG_ERR_PARSE, file, name, "shape[%d] is %lld, negative", i,
                           (long long)json_integer_value(dim));
        if (!json_count(dim, &t->shape[i]))
            return st_fail(msg, BRG_ERR_PARSE, file, name, "shape[%d] is %s, not an integer", i, json_kind(dim));
        overflow |= !brg__count_mul(t->count, t->shape[i], INT64_MAX, &t->count);
    }
    char shape_text[200];
    format_shape(shape_text, sizeof shape_text, t->ndim, t->shape);
    int64_t bytes = 0;
    if (overflow || !brg__count_mul(t->count, dtype_table[t->dtype].size, INT64_MAX, &bytes))
        return st_fail(msg, BRG_ERR_PARSE, file, name, "%s %s has more than 2^63 - 1 %s", dtype_name, shape_text,
                       overflow ? "elements" : "bytes");

    const json_t *offsets = json_object_get(entry, "data_offsets");
    if (!json_is_array(offsets) || json_array_size(offsets) != 2 || !json_is_integer(json_array_get(offsets, 0)) ||
        !json_is_integer(json_array_get(offsets, 1)))
        return st_fail(msg, BRG_ERR_PARSE, file, name, "data_offsets is not an array of two integers");
    long long begin = json_integer_value(json_array_get(offsets, 0)), end = json_integer_value(json_array_get(offsets, 1));
    if (begin < 0 || end < 0)
        return st_fail(msg, BRG_ERR_PARSE, file, name, "data_offsets [%lld, %lld] are negative", begin, end);
    if (begin > end)
        return st_fail(msg, BRG_ERR_PARSE, file, name, "data_offsets [%lld, %lld] begin after they end", begin, end);
    if (end - begin != bytes)
        return st_fail(msg, BRG_ERR_PARSE, file, name, "data_offsets [%lld, %lld] hold %lld bytes, but %s %s needs %lld",
                       begin, end, end - begin, dtype_name, shape_text, (long long)bytes);
    if (end > data_size)
        return st_fail(msg, BRG_ERR_PARSE, file, name,
                       "data_offsets [%lld, %lld] end past the data area, which holds %lld bytes", begin, end,
                       (long long)data_size);
    t->begin = begin;
    t->end = end;
    return BRG_OK;
}

static int compare_by_offset(const void *a, const void *b) {
    const brg__st_tensor *x = *(const brg__st_tensor *const *)a, *y = *(const brg__st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int compare_by_name(const void *a, const void *b) {
    return strcmp(((const brg__st_tensor *)a)->name, ((const brg__st_tensor *)b)->name);
}

static int compare_by_key(const void *a, const void *b) {
    return strcmp(((const st_metadata_entry *)a)->key, ((const st_metadata_entry *)b)->key);
}

/* The tensors, in order of their offsets, must tile the data area: each begins where the one before ends,
 * and the last ends where the file does. */
static brg_status check_coverage(const brg__st_file *f, char *msg) {
    const char *file = f->source.name;
    if (f->count == 0) {
        if (f->data_size == 0) return BRG_OK;
        return st_fail(msg, BRG_ERR_PARSE, file,
                       NULL, "the header lists no tensor, but %lld bytes of data follow it", (long long)f->data_size);
    }
    const brg__st_tensor **order = malloc((size_t)f->count * sizeof *order);
    if (!order) return st_fail(msg, BRG_ERR_OUT_OF_MEMORY, file, NULL, "out of memory");
    for (int64_t i = 0; i < f->count; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->count, sizeof *order, compare_by_offset);
    brg_status s = BRG_OK;
    int64_t covered = 0;
    const brg__st_tensor *last = NULL;
    for (int64_t i = 0; i < f->count && s == BRG_OK; i++) {
        const brg__st_tensor *t = order[i];
        if (t->begin < covered)
            s = st_fail(msg, BRG_ERR_PARSE, file, t->name, "data_offsets [%lld, %lld] overlap tensor '%s' at [%lld, %lld]",
                        (long long)t->begin, (long long)t->end, last->name, (long long)last->begin,
                        (long long)last->end);
        else if (t->begin > covered)
            s = st_fail(msg, BRG_ERR_PARSE, file, NULL,
                        "bytes %lld to %lld of the data area belong to no tensor (a hole before tensor '%s'); "
                        "safetensors needs the tensors to cover the data area exactly",
                        (long long)covered, (long long)t->begin, t->name);
        covered = t->end;
        last = t;
    }
    if (s == BRG_OK && covered != f->data_size)
        s = st_fail(msg, BRG_ERR_PARSE, file, NULL,
                    "bytes %lld to %lld of the data area belong to no tensor (after the last one, '%s'); "
                    "safetensors needs the tensors to cover the data area exactly",
                    (long long)covered, (long long)f->data_size, last->name);
    free(order);
    return s;
}

/* Copies s into the string area at *chars and returns the copy. */
static const char *copy_string(char **chars, const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = memcpy(*chars, s, n);
    *chars += n;
    return copy;
}

/* Builds the handle from the parsed header: sizes first, one allocation, then every entry checked. */
static brg_status build_file(const st_source *src, const json_t *root, int64_t data_start, brg__st_file **out,
                             char *msg) {
    const char *file = src->name;
    int64_t tensors = 0, metadata = 0, chars = (int64_t)strlen(file) + 1;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)root, key, value) {
        if (strcmp(key, METADATA_KEY) != 0) {
            tensors++;
            chars += (int64_t)strlen(key) + 1;
            continue;
        }
        if (!json_is_object(value))
            return st_fail(msg, BRG_ERR_PARSE, file, NULL, METADATA_KEY " is %s, not an object of strings",
                           json_kind(value));
        const char *meta_key;
        json_t *meta_value;
        json_object_foreach(value, meta_key, meta_value) {
            if (!json_is_string(meta_value))
                return st_fail(msg, BRG_ERR_PARSE, file, NULL,
                               METADATA_KEY " entry '%s' is %s, not a string (metadata maps strings to strings)",
                               meta_key, json_kind(meta_value));
            metadata++;
            chars += (int64_t)(strlen(meta_key) + strlen(json_string_value(meta_value)) + 2);
        }
    }
    int64_t bytes = sizeof(brg__st_file), part;
    bool fits = brg__count_mul(tensors, sizeof(brg__st_tensor), INT64_MAX, &part) &&
                brg__count_add(bytes, part, INT64_MAX, &bytes) &&
                brg__count_mul(metadata, sizeof(st_metadata_entry), INT64_MAX, &part) &&
                brg__count_add(bytes, part, INT64_MAX, &bytes) && brg__count_add(bytes, chars, INT64_MAX, &bytes) &&
                (uint64_t)bytes <= SIZE_MAX;
    brg__st_file *f = fits ? malloc((size_t)bytes) : NULL;
    if (!f) return st_fail(msg, BRG_ERR_OUT_OF_MEMORY, file, NULL, "out of memory for %lld tensors", (long long)tensors);
    f->tensors = (brg__st_tensor *)(f + 1);
    f->metadata = (st_metadata_entry *)(f->tensors + tensors);
    char *strings = (char *)(f->metadata + metadata);
    f->source = *src;
    f->source.name = copy_string(&strings, file);
    f->data_start = data_start;
    f->data_size = src->size - data_start;
    f->count = f->metadata_count = 0;

    brg_status s = BRG_OK;
    json_object_foreach((json_t *)root, key, value) {
        if (strcmp(key, METADATA_KEY) == 0) {
            const char *meta_key;
            json_t *meta_value;
            json_object_foreach(value, meta_key, meta_value) {
                st_metadata_entry *m = &f->metadata[f->metadata_count++];
                m->key = copy_string(&strings, meta_key);
                m->value = copy_string(&strings, json_string_value(meta_value));
            }
            continue;
        }
        brg__st_tensor *t = &f->tensors[f->count++];
        t->name = copy_string(&strings, key);
        s = parse_entry(file, key, value, f->data_size, t, msg);
        if (s != BRG_OK) break;
    }
    if (s == BRG_OK) s = check_coverage(f, msg);
    if (s != BRG_OK) {
        free(f);
        return s;
    }
    qsort(f->tensors, (size_t)f->count, sizeof *f->tensors, compare_by_name);
    qsort(f->metadata, (size_t)f->metadata_count, sizeof *f->metadata, compare_by_key);
    *out = f;
    return BRG_OK;
}

/* Reads and checks the header of src, then builds the handle (which takes over src's fd). */
static brg_status open_source(const st_source *src, brg__st_file **out, char *msg) {
    const char *file = src->name;
    if (src->size < 8)
        return st_fail(msg, BRG_ERR_PARSE, file, NULL,
                       "%lld bytes long, too short for a safetensors file (its header length alone takes 8)",
                       (long long)src->size);
    unsigned char length_bytes[8];
    BRG__CHECK(source_read(src, 0, length_bytes, 8, NULL, msg));
    uint64_t length = 0;
    for (int i = 7; i >= 0; i--) length = length << 8 | length_bytes[i];
    uint64_t after = (uint64_t)src->size - 8;
    if (length > after)
        return st_fail(msg, BRG_ERR_PARSE, file, NULL,
                       "header length %llu runs past the end of the file (%llu bytes follow the 8-byte length)",
                       (unsigned long long)length, (unsigned long long)after);
    if (length > BRG__ST_HEADER_LIMIT)
        return st_fail(msg, BRG_ERR_PARSE, file, NULL, "header length %llu is above the limit of %d bytes",
                       (unsigned long long)length, BRG__ST_HEADER_LIMIT);
    if (length < 2)
        return st_fail(msg, BRG_ERR_PARSE, file, NULL, "header length %llu is too small for a JSON object",
                       (unsigned long long)length);
    char *text = malloc((size_t)length);
    if (!text) return st_fail(msg, BRG_ERR_OUT_OF_MEMORY, file, NULL, "out of memory for a header of %llu bytes",
                              (unsigned long long)length);
    brg_status s = source_read(src, 8, text, (int64_t)length, NULL, msg);
    if (s == BRG_OK && text[0] != '{')
        s = st_fail(msg, BRG_ERR_PARSE, file, NULL, "header does not start with '{' (its first byte is 0x%02x)",
                    (unsigned char)text[0]);
    json_t *root = NULL;
    if (s == BRG_OK) {
        json_error_t error;
        root = json_loadb(text, (size_t)length, JSON_REJECT_DUPLICATES, &error);
        if (!root && json_error_code(&error) == json_error_duplicate_key) {
            char key[256];
            duplicate_key(text, (size_t)length, (size_t)error.position, key, sizeof key);
            s = st_fail(msg, BRG_ERR_PARSE, file, NULL,
                        "header: the name '%s' appears twice in one object (line %d, column %d): tensor names and the "
                        "keys of each entry must be unique", key, error.line, error.column);
        } else if (!root) {
            s = st_fail(msg, BRG_ERR_PARSE, file, NULL, "header is not valid JSON: %s (line %d, column %d)", error.text,
                        error.line, error.column);
        } else if (!json_is_object(root)) {
            s = st_fail(msg, BRG_ERR_PARSE, file, NULL, "header is %s, not a JSON object", json_kind(root));
        }
    }
    free(text);
    if (s == BRG_OK) s = build_file(src, root, 8 + (int64_t)length, out, msg);
    json_decref(root);
    return s;
}

brg_status brg__st_open(const char *path, brg__st_file **out, char *msg) {
    if (out) *out = NULL;
    if (!path || !out)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "brg__st_open: NULL argument");
    st_source src = {.name = path, .fd = open(path, O_RDONLY | O_CLOEXEC), .memory = NULL, .size = 0};
    if (src.fd < 0) return st_fail(msg, BRG_ERR_IO, path, NULL, "cannot open: %s", strerror(errno));
    struct stat st;
    brg_status s = BRG_OK;
    if (fstat(src.fd, &st) != 0)
        s = st_fail(msg, BRG_ERR_IO, path, NULL, "cannot stat: %s", strerror(errno));
    else if (!S_ISREG(st.st_mode))
        s = st_fail(msg, BRG_ERR_IO, path, NULL, "not a regular file");
    src.size = (int64_t)st.st_size;
    if (s == BRG_OK) s = open_source(&src, out, msg);
    if (s != BRG_OK) close(src.fd);
    return s;
}

brg_status brg__st_open_memory(const void *data, size_t size, const char *name, brg__st_file **out, char *msg) {
    if (out) *out = NULL;
    if ((!data && size) || !name || !out || (uint64_t)size > INT64_MAX)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "brg__st_open_memory: NULL argument or size out of range");
    st_source src = {.name = name, .fd = -1, .memory = data, .size = (int64_t)size};
    return open_source(&src, out, msg);
}

int64_t brg__st_count(const brg__st_file *f) {
    return f ? f->count : 0;
}

const brg__st_tensor *brg__st_get(const brg__st_file *f, int64_t i) {
    return f && i >= 0 && i < f->count ? &f->tensors[i] : NULL;
}

const brg__st_tensor *brg__st_find(const brg__st_file *f, const char *name) {
    if (!f || !name) return NULL;
    int64_t lo = 0, hi = f->count;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *brg__st_metadata(const brg__st_file *f, const char *key) {
    if (!f || !key) return NULL;
    int64_t lo = 0, hi = f->metadata_count;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->metadata[mid].key, key);
        if (c == 0) return f->metadata[mid].value;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int64_t brg__st_metadata_count(const brg__st_file *f) {
    return f ? f->metadata_count : 0;
}

brg_status brg__st_metadata_entry(const brg__st_file *f, int64_t i, const char **key, const char **value) {
    if (!f || !key || !value || i < 0 || i >= f->metadata_count) return BRG_ERR_INVALID_ARGUMENT;
    *key = f->metadata[i].key;
    *value = f->metadata[i].value;
    return BRG_OK;
}

/* t must be one of f's tensors (compared as addresses, since t may point anywhere). */
static brg_status check_read(const brg__st_file *f, const brg__st_tensor *t, const void *dst, const char *call,
                             char *msg) {
    if (!f || !t || !dst)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "%s: NULL argument", call);
    uintptr_t first = (uintptr_t)f->tensors, at = (uintptr_t)t;
    if (at < first || at >= first + (uintptr_t)f->count * sizeof *t || (at - first) % sizeof *t != 0)
        return st_fail(msg, BRG_ERR_INVALID_ARGUMENT, f->source.name, NULL, "%s: the tensor is not one of this file's",
                       call);
    return BRG_OK;
}

brg_status brg__st_read_raw(brg__st_file *f, const brg__st_tensor *t, void *dst, int64_t bytes, char *msg) {
    static const char nothing;
    BRG__CHECK(check_read(f, t, dst || bytes == 0 ? (dst ? dst : &nothing) : NULL, "brg__st_read_raw", msg));
    if (bytes != t->end - t->begin)
        return st_fail(msg, BRG_ERR_SHAPE, f->source.name, t->name, "holds %lld bytes, not the %lld asked for",
                       (long long)(t->end - t->begin), (long long)bytes);
    return source_read(&f->source, f->data_start + t->begin, dst, bytes, t->name, msg);
}

/* IEEE half to single, exactly: subnormal halves become normal floats; NaN payloads are kept. */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu, bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | mantissa << 13;
    } else if (exponent != 0) {
        bits = sign | (exponent + 112) << 23 | mantissa << 13;
    } else if (mantissa == 0) {
        bits = sign;
    } else { /* mantissa * 2^-24: shift the leading 1 up to the implicit bit */
        uint32_t shift = 0;
        while (!(mantissa & 0x400u)) {
            mantissa <<= 1;
            shift++;
        }
        bits = sign | (113 - shift) << 23 | (mantissa & 0x3ffu) << 13;
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

brg_status brg__st_read_f32(brg__st_file *f, const brg__st_tensor *t, float *dst, int64_t count, char *msg) {
    BRG__CHECK(check_read(f, t, dst, "brg__st_read_f32", msg));
    brg__st_dtype d = t->dtype;
    if (d != BRG__ST_F32 && d != BRG__ST_F16 && d != BRG__ST_BF16 && d != BRG__ST_F64)
        return st_fail(msg, BRG_ERR_UNSUPPORTED, f->source.name, t->name,
                       "is %s; brg__st_read_f32 converts F32, F16, BF16 and F64 only", brg__st_dtype_name(d));
    if (count != t->count)
        return st_fail(msg, BRG_ERR_SHAPE, f->source.name, t->name, "holds %lld elements, not the %lld asked for",
                       (long long)t->count, (long long)count);
    int64_t offset = f->data_start + t->begin;
    if (d == BRG__ST_F32) return source_read(&f->source, offset, dst, t->end - t->begin, t->name, msg);
    /* Others go through a small buffer, a chunk at a time. */
    unsigned char chunk[16384];
    int size = dtype_table[d].size;
    int64_t per_chunk = (int64_t)sizeof chunk / size;
    for (int64_t i = 0; i < count; i += per_chunk) {
        int64_t n = count - i < per_chunk ? count - i : per_chunk;
        BRG__CHECK(source_read(&f->source, offset + i * size, chunk, n * size, t->name, msg));
        for (int64_t k = 0; k < n; k++) {
            const unsigned char *p = chunk + k * size;
            if (d == BRG__ST_F64) {
                double v;
                memcpy(&v, p, sizeof v);
                dst[i + k] = (float)v;
            } else {
                uint16_t h = (uint16_t)(p[0] | p[1] << 8);
                dst[i + k] = d == BRG__ST_F16 ? f16_to_f32(h) : bf16_to_f32(h);
            }
        }
    }
    return BRG_OK;
}

void brg__st_close(brg__st_file *f) {
    if (!f) return;
    if (f->source.fd >= 0) close(f->source.fd);
    free(f);
}

/* ---- writer ------------------------------------------------------------------------------------------- */

typedef struct st_entry {
    char *name;
    brg__st_dtype dtype;
    int ndim;
    int64_t shape[BRG__ST_MAX_DIMS];
    const void *data; /* borrowed */
    int64_t bytes;
} st_entry;

typedef struct st_pair {
    char *key, *value;
} st_pair;

struct brg__st_writer {
    st_entry *entries;
    int64_t count, capacity;
    st_pair *metadata;
    int64_t metadata_count, metadata_capacity;
};

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const char *text) {
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        unsigned c = *s, extra, min;
        if (c < 0x80) {
            s++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) extra = 1, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef) extra = 2, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4) extra = 3, min = 0x10000;
        else return false;
        unsigned code = c & (0x3fu >> extra);
        for (unsigned i = 1; i <= extra; i++) {
            if ((s[i] & 0xc0) != 0x80) return false;
            code = code << 6 | (s[i] & 0x3fu);
        }
        if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
        s += extra + 1;
    }
    return true;
}

/* Makes room for one more element of `size` bytes in *array. */
static bool grow(void **array, int64_t count, int64_t *capacity, size_t size) {
    if (count < *capacity) return true;
    int64_t wanted = *capacity ? *capacity * 2 : 16, bytes;
    if (!brg__count_mul(wanted, (int64_t)size, INT64_MAX, &bytes) || (uint64_t)bytes > SIZE_MAX) return false;
    void *grown = realloc(*array, (size_t)bytes);
    if (!grown) return false;
    *array = grown;
    *capacity = wanted;
    return true;
}

static char *copy_text(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    return copy ? memcpy(copy, s, n) : NULL;
}

brg_status brg__st_writer_create(brg__st_writer **out, char *msg) {
    if (!out)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "brg__st_writer_create: NULL out");
    *out = calloc(1, sizeof **out);
    if (!*out) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    return BRG_OK;
}

brg_status brg__st_writer_add(brg__st_writer *w, const char *name, brg__st_dtype dtype, int ndim, const int64_t *shape,
                              const void *data, char *msg) {
#define ADD_FAIL(status, ...) \
    brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, status, "safetensors writer: " __VA_ARGS__)
    if (!w || !name) return ADD_FAIL(BRG_ERR_INVALID_ARGUMENT, "NULL writer or name");
    if (!name[0]) return ADD_FAIL(BRG_ERR_INVALID_ARGUMENT, "a tensor's name is empty");
    if (strcmp(name, METADATA_KEY) == 0)
        return ADD_FAIL(BRG_ERR_INVALID_ARGUMENT, "'" METADATA_KEY "' is reserved for metadata, not a tensor name");
    if (!utf8_valid(name)) return ADD_FAIL(BRG_ERR_INVALID_ARGUMENT, "tensor name '%s' is not UTF-8", name);
    if ((unsigned)dtype >= BRG__ST_DTYPE_COUNT)
        return ADD_FAIL(BRG_ERR_INVALID_ARGUMENT, "tensor '%s': unknown dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > BRG__ST_MAX_DIMS || (ndim > 0 && !shape))
        return ADD_FAIL(BRG_ERR_INVALID_ARGUMENT, "tensor '%s': %d dimensions (0 to %d, with a shape)", name, ndim,
                        BRG__ST_MAX_DIMS);
    int64_t count = 1, bytes;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return ADD_FAIL(BRG_ERR_INVALID_ARGUMENT, "tensor '%s': shape[%d] is %lld, negative", name, i,
                            (long long)shape[i]);
        if (!brg__count_mul(count, shape[i], INT64_MAX, &count))
            return ADD_FAIL(BRG_ERR_INVALID_ARGUMENT, "tensor '%s': more than 2^63 - 1 elements", name);
    }
    if (!brg__count_mul(count, dtype_table[dtype].size, INT64_MAX, &bytes))
        return ADD_FAIL(BRG_ERR_INVALID_ARGUMENT, "tensor '%s': more than 2^63 - 1 bytes", name);
    if (!data && bytes > 0) return ADD_FAIL(BRG_ERR_INVALID_ARGUMENT, "tensor '%s': data is NULL", name);
    for (int64_t i = 0; i < w->count; i++)
        if (strcmp(w->entries[i].name, name) == 0)
            return ADD_FAIL(BRG_ERR_NAME, "a tensor named '%s' was added before", name);
    if (!grow((void **)&w->entries, w->count, &w->capacity, sizeof *w->entries))
        return ADD_FAIL(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    st_entry *e = &w->entries[w->count];
    memset(e, 0, sizeof *e);
    if (!(e->name = copy_text(name))) return ADD_FAIL(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->data = data;
    e->bytes = bytes;
    w->count++;
    return BRG_OK;
}

brg_status brg__st_writer_metadata(brg__st_writer *w, const char *key, const char *value, char *msg) {
    if (!w || !key || !value) return ADD_FAIL(BRG_ERR_INVALID_ARGUMENT, "NULL writer, key or value");
    if (!utf8_valid(key) || !utf8_valid(value))
        return ADD_FAIL(BRG_ERR_INVALID_ARGUMENT, "metadata '%s': key or value is not UTF-8", key);
    for (int64_t i = 0; i < w->metadata_count; i++)
        if (strcmp(w->metadata[i].key, key) == 0)
            return ADD_FAIL(BRG_ERR_NAME, "metadata '%s' was given before", key);
    if (!grow((void **)&w->metadata, w->metadata_count, &w->metadata_capacity, sizeof *w->metadata))
        return ADD_FAIL(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    st_pair *p = &w->metadata[w->metadata_count];
    p->key = copy_text(key);
    p->value = copy_text(value);
    if (!p->key || !p->value) {
        free(p->key);
        free(p->value);
        return ADD_FAIL(BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    w->metadata_count++;
    return BRG_OK;
#undef ADD_FAIL
}

static int compare_entries(const void *a, const void *b) {
    return strcmp((*(const st_entry *const *)a)->name, (*(const st_entry *const *)b)->name);
}

static int compare_pairs(const void *a, const void *b) {
    return strcmp((*(const st_pair *const *)a)->key, (*(const st_pair *const *)b)->key);
}

/* The header's JSON, compact: "__metadata__" first, then the tensors in `order`, each
 * {"dtype","shape","data_offsets"} (jansson keeps the order of insertion). NULL when out of memory. */
static char *header_json(const brg__st_writer *w, st_entry *const *order, st_pair *const *meta_order) {
    json_t *root = json_object();
    bool ok = root != NULL;
    if (ok && w->metadata_count > 0) {
        json_t *meta = json_object();
        ok = json_object_set_new(root, METADATA_KEY, meta) == 0;
        for (int64_t i = 0; ok && i < w->metadata_count; i++)
            ok = json_object_set_new(meta, meta_order[i]->key, json_string(meta_order[i]->value)) == 0;
    }
    int64_t offset = 0;
    for (int64_t i = 0; ok && i < w->count; i++) {
        const st_entry *e = order[i];
        json_t *shape = json_array();
        for (int k = 0; shape && k < e->ndim; k++)
            if (json_array_append_new(shape, json_integer((json_int_t)e->shape[k])) != 0) {
                json_decref(shape);
                shape = NULL;
            }
        ok = shape && brg__count_add(offset, e->bytes, INT64_MAX, &offset) &&
             json_object_set_new(root, e->name,
                                 json_pack("{s:s, s:o, s:[I, I]}", "dtype", brg__st_dtype_name(e->dtype), "shape", shape,
                                           "data_offsets", (json_int_t)(offset - e->bytes), (json_int_t)offset)) == 0;
    }
    char *text = ok ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}

/* Writes, flushes, syncs and closes; errno-based message on the first failure. */
static brg_status write_file(const char *path, const char *header, size_t header_length, size_t padded,
                             st_entry *const *order, int64_t count, char *msg) {
    FILE *out = fopen(path, "wb");
    if (!out)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    unsigned char length[8];
    for (int i = 0; i < 8; i++) length[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    const char *step = "write";
    bool ok = fwrite(length, 1, 8, out) == 8 && fwrite(header, 1, header_length, out) == header_length &&
              fwrite(spaces, 1, padded - header_length, out) == padded - header_length;
    for (int64_t i = 0; ok && i < count; i++)
        ok = order[i]->bytes == 0 || fwrite(order[i]->data, 1, (size_t)order[i]->bytes, out) == (size_t)order[i]->bytes;
    if (ok && fflush(out) != 0) ok = false, step = "flush";
    struct stat st;
    /* Pipes and devices have nothing to sync (and fsync fails on them with EINVAL). */
    if (ok && fstat(fileno(out), &st) == 0 && S_ISREG(st.st_mode) && fsync(fileno(out)) != 0) ok = false, step = "sync";
    int saved = errno;
    if (fclose(out) != 0 && ok) ok = false, step = "close", saved = errno;
    if (!ok)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_IO, "cannot %s '%s': %s", step, path,
                                strerror(saved));
    return BRG_OK;
}

brg_status brg__st_writer_write(brg__st_writer *w, const char *path, char *msg) {
    if (!w || !path)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "brg__st_writer_write: NULL argument");
    st_entry **order = malloc((size_t)(w->count ? w->count : 1) * sizeof *order);
    st_pair **meta_order = malloc((size_t)(w->metadata_count ? w->metadata_count : 1) * sizeof *meta_order);
    char *header = NULL;
    brg_status s = BRG_OK;
    if (!order || !meta_order) {
        s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "writing '%s': out of memory", path);
        goto cleanup;
    }
    for (int64_t i = 0; i < w->count; i++) order[i] = &w->entries[i];
    for (int64_t i = 0; i < w->metadata_count; i++) meta_order[i] = &w->metadata[i];
    qsort(order, (size_t)w->count, sizeof *order, compare_entries);
    qsort(meta_order, (size_t)w->metadata_count, sizeof *meta_order, compare_pairs);
    header = header_json(w, order, meta_order);
    if (!header) {
        s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "writing '%s': out of memory", path);
        goto cleanup;
    }
    size_t header_length = strlen(header), padded = (header_length + 7) / 8 * 8;
    if (padded > BRG__ST_HEADER_LIMIT) {
        s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                             "writing '%s': the header would take %zu bytes, above the limit of %d that readers accept",
                             path, padded, BRG__ST_HEADER_LIMIT);
        goto cleanup;
    }
    s = write_file(path, header, header_length, padded, order, w->count, msg);
cleanup:
    free(header);
    free(order);
    free(meta_order);
    return s;
}

void brg__st_writer_destroy(brg__st_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->count; i++) free(w->entries[i].name);
    for (int64_t i = 0; i < w->metadata_count; i++) {
        free(w->metadata[i].key);
        free(w->metadata[i].value);
    }
    free(w->entries);
    free(w->metadata);
    free(w);
}
