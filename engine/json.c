/* JSON locations, file reads and atomic writes (engine/json.h). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "json.h"

brg__json_path brg__json_key(brg__json_path p, const char *key) {
    if (p.depth < 8) {
        p.keys[p.depth] = key;
        p.indices[p.depth] = 0;
        p.depth++;
    }
    return p;
}

brg__json_path brg__json_index(brg__json_path p, int index) {
    if (p.depth < 8) {
        p.keys[p.depth] = NULL;
        p.indices[p.depth] = index;
        p.depth++;
    }
    return p;
}

static const char *skip_space(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

static const char *skip_string(const char *p) {
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1]) p++;
    return *p ? p + 1 : p;
}

static const char *skip_value(const char *p) {
    p = skip_space(p);
    if (*p == '"') return skip_string(p);
    if (*p != '{' && *p != '[') {
        while (*p && !strchr(",}] \t\r\n", *p)) p++;
        return p;
    }
    int depth = 0;
    do {
        if (*p == '"') {
            p = skip_string(p);
            continue;
        }
        if (*p == '{' || *p == '[') depth++;
        else if (*p == '}' || *p == ']') depth--;
        p++;
    } while (*p && depth > 0);
    return p;
}

static const char *skip_separator(const char *p) {
    p = skip_space(p);
    return *p == ',' ? skip_space(p + 1) : p;
}

static const char *find_member(const char *p, const char *key) {
    if (*p != '{') return NULL;
    size_t len = strlen(key);
    for (const char *q = skip_space(p + 1); *q == '"';) {
        const char *end = skip_string(q);
        int match = (size_t)(end - q) == len + 2 && strncmp(q + 1, key, len) == 0;
        q = skip_space(end);
        if (*q == ':') q = skip_space(q + 1);
        if (match) return q;
        q = skip_separator(skip_value(q));
    }
    return NULL;
}

static const char *find_element(const char *p, int index) {
    if (*p != '[') return NULL;
    const char *q = skip_space(p + 1);
    for (int i = 0; i < index && *q && *q != ']'; i++) q = skip_separator(skip_value(q));
    return *q && *q != ']' ? q : NULL;
}

static const char *locate(const char *text, const brg__json_path *path) {
    const char *p = skip_space(text);
    for (int s = 0; s < path->depth; s++) {
        const char *next = path->keys[s] ? find_member(p, path->keys[s]) : find_element(p, path->indices[s]);
        if (!next) break;
        p = next;
    }
    return p;
}

static void line_column(const char *text, const char *at, int *line, int *column) {
    *line = 1;
    *column = 1;
    for (const char *p = text; p < at && *p; p++) {
        if (*p == '\n') {
            (*line)++;
            *column = 1;
        } else {
            (*column)++;
        }
    }
}

void brg__json_where(const char *origin, const char *text, const brg__json_path *path, const char *field, char *buf,
                    size_t size) {
    int line = 1, column = 1;
    if (text) line_column(text, locate(text, path), &line, &column);
    int used = snprintf(buf, size, "%s:%d:%d: ", origin, line, column);
    size_t at = used > 0 && (size_t)used < size ? (size_t)used : size;
    size_t start = at;
    for (int s = 0; s < path->depth && at < size; s++) {
        int n = path->keys[s] ? snprintf(buf + at, size - at, "%s%s", at > start ? "." : "", path->keys[s])
                              : snprintf(buf + at, size - at, "[%d]", path->indices[s]);
        at += n > 0 ? (size_t)n : 0;
    }
    if (field && at < size) snprintf(buf + at, size - at, "%s%s", at > start ? "." : "", field);
}

brg_status brg__json_fail(brg_error *err, brg_status status, const char *origin, const char *text,
                          const brg__json_path *path, const char *field, const char *fmt, ...) {
    char where[512], message[BRG_ERROR_MESSAGE_MAX];
    brg__json_where(origin, text, path, field, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    /* "origin:line:column: " alone when the path is the document itself */
    size_t n = strlen(where);
    int bare = n >= 2 && where[n - 2] == ':' && where[n - 1] == ' ';
    return brg__error_set(err, status, "%s%s%s", where, bare ? "" : ": ", message);
}

brg_status brg__read_file(const char *path, const char *where, int64_t max_bytes, char **out, size_t *size,
                          brg_error *err) {
    *out = NULL;
    if (size) *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return brg__error_set(err, BRG_ERR_IO, "%s%s: cannot open: %s", where, path, strerror(errno));
    /* Grown as it is read (pipes have no size), never past max_bytes + 2: one byte past the limit tells a
     * file that is too large, one more holds the NUL. */
    size_t limit = (size_t)max_bytes + 2, capacity = limit < (1 << 16) ? limit : (1 << 16), used = 0;
    char *text = brg__malloc(capacity);
    brg_status s = text ? BRG_OK : brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "%s%s: out of memory", where, path);
    while (s == BRG_OK) {
        used += fread(text + used, 1, capacity - 1 - used, f);
        if ((int64_t)used > max_bytes) {
            s = brg__error_set(err, BRG_ERR_PARSE, "%s%s: larger than %lld MiB, the most brigade reads of such a file",
                               where, path, (long long)(max_bytes >> 20));
            break;
        }
        if (used < capacity - 1) break; /* the end, or an error */
        size_t grown_capacity = capacity * 2 < limit ? capacity * 2 : limit;
        char *grown = brg__realloc(text, grown_capacity);
        if (!grown) {
            s = brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "%s%s: out of memory", where, path);
            break;
        }
        text = grown;
        capacity = grown_capacity;
    }
    if (s == BRG_OK && ferror(f))
        s = brg__error_set(err, BRG_ERR_IO, "%s%s: cannot read: %s", where, path, strerror(errno));
    fclose(f);
    if (s != BRG_OK) {
        free(text);
        return s;
    }
    text[used] = '\0';
    *out = text;
    if (size) *size = used;
    return BRG_OK;
}

brg_status brg__read_text_file(const char *path, int64_t max_bytes, char **out, brg_error *err) {
    return brg__read_file(path, "", max_bytes, out, NULL, err);
}

brg_status brg__write_text_file(const char *path, const char *text, brg_error *err) {
    size_t len = strlen(path);
    char *tmp = brg__malloc(len + 16);
    if (!tmp) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    snprintf(tmp, len + 16, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        brg_status s = brg__error_set(err, BRG_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        free(tmp);
        return s;
    }
    size_t n = strlen(text);
    int failed = fwrite(text, 1, n, f) != n;
    failed |= fflush(f) != 0;
    failed |= fsync(fileno(f)) != 0;
    int saved = errno;
    failed |= fclose(f) != 0;
    if (failed || rename(tmp, path) != 0) {
        if (!failed) saved = errno;
        remove(tmp);
        free(tmp);
        return brg__error_set(err, BRG_ERR_IO, "cannot write '%s': %s", path, strerror(saved));
    }
    free(tmp);
    return BRG_OK;
}

static _Thread_local uint64_t build_failures; /* only grows */

/* jansson 2.14 carries on after some allocations fail: its lexer drops a character of a string, its
 * writer an object's key, and both then succeed. Every jansson allocation goes through counting_malloc
 * (installed once, in front of whatever allocator jansson had), so that a parse or a dump during which
 * one failed is known and refused. */
static json_malloc_t prior_malloc;
static json_free_t prior_free;
static _Thread_local int64_t jansson_failures;
static pthread_once_t counting_installed = PTHREAD_ONCE_INIT;

static void *counting_malloc(size_t size) {
    void *p = brg__alloc_injected_failure(__builtin_return_address(0)) ? NULL : prior_malloc(size);
    if (!p) jansson_failures++;
    return p;
}

static void install_counting(void) {
    json_get_alloc_funcs(&prior_malloc, &prior_free);
    if (!prior_malloc) prior_malloc = malloc;
    if (!prior_free) prior_free = free;
    json_set_alloc_funcs(counting_malloc, prior_free);
}

static void count_jansson_allocations(void) { pthread_once(&counting_installed, install_counting); }

json_t *brg__json_parse(const char *text, size_t length, size_t flags, json_error_t *je, brg_status *status) {
    count_jansson_allocations();
    int64_t before = jansson_failures;
    json_t *root = json_loadb(text, length, flags, je);
    if (jansson_failures != before) { /* whatever jansson made of it */
        json_decref(root);
        *status = BRG_ERR_OUT_OF_MEMORY;
        return NULL;
    }
    *status = root ? BRG_OK : json_error_code(je) == json_error_out_of_memory ? BRG_ERR_OUT_OF_MEMORY : BRG_ERR_PARSE;
    return root;
}


char *brg__json_dump(const json_t *root, size_t flags, uint64_t mark) {
    if (!root || build_failures != mark) return NULL;
    int64_t before = jansson_failures;
    /* Into a buffer of our own, measured first: jansson then allocates nothing while writing. */
    size_t size = json_dumpb(root, NULL, 0, flags);
    char *text = size ? brg__malloc(size + 1) : NULL;
    if (!text) return NULL;
    if (json_dumpb(root, text, size, flags) != size || jansson_failures != before) {
        free(text);
        return NULL;
    }
    text[size] = '\0';
    return text;
}

uint64_t brg__json_build_begin(void) {
    count_jansson_allocations();
    return build_failures;
}

bool brg__json_build_ok(uint64_t mark) { return build_failures == mark; }

int brg__json_set(json_t *object, const char *key, json_t *value) {
    int rc = json_object_set_new(object, key, value); /* takes value, even on failure */
    if (rc != 0) build_failures++;
    return rc;
}

int brg__json_append(json_t *array, json_t *value) {
    int rc = json_array_append_new(array, value);
    if (rc != 0) build_failures++;
    return rc;
}
