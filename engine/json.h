/* JSON files: where a value is in the text (jansson reports line and column for syntax errors only, so a
 * small scanner walks the already valid text to the value an error is about), whole-file reads and atomic
 * writes. Shared by the cluster description and plan parsers. Internal. */
#ifndef BRIGADE_JSON_H
#define BRIGADE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

typedef struct brg__json_path {
    const char *keys[8];
    int indices[8];
    int depth;
} brg__json_path;

brg__json_path brg__json_key(brg__json_path p, const char *key);
brg__json_path brg__json_index(brg__json_path p, int index);
/* "origin:line:column: path.to.field" (field appended when given) into buf. */
void brg__json_where(const char *origin, const char *text, const brg__json_path *path, const char *field, char *buf,
                    size_t size);
/* "origin:line:column: path.to.field: message" into err, located by scanning `text`. */
brg_status brg__json_fail(brg_error *err, brg_status status, const char *origin, const char *text,
                          const brg__json_path *path, const char *field, const char *fmt, ...) BRG__PRINTF(7, 8);
/* Reads a whole file (at most max_bytes, which must be under SIZE_MAX - 2) into a malloc'd, NUL-terminated
 * buffer, its length (without the NUL) into *size when size is not NULL. Messages start with `where`
 * (a prefix such as "cluster.json:3:9: ", or "") and the path. BRG_ERR_IO (cannot open or read),
 * BRG_ERR_PARSE (larger than max_bytes), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__read_file(const char *path, const char *where, int64_t max_bytes, char **out, size_t *size,
                          brg_error *err);
/* brg__read_file without a prefix or a length, for text files. */
brg_status brg__read_text_file(const char *path, int64_t max_bytes, char **out, brg_error *err);
/* Writes text to path atomically (temporary file beside it, fsync, rename). */
brg_status brg__write_text_file(const char *path, const char *text, brg_error *err);

/* ---- building JSON -----------------------------------------------------------------------------------
 * jansson's setters fail (out of memory, or a NULL value from a constructor that ran out of memory)
 * without a trace in the tree, which would then be written with members missing. brg__json_set and
 * brg__json_append count such failures on the calling thread; a writer takes a mark with
 * brg__json_build_begin() before building a tree and checks brg__json_build_ok(mark) (or passes the mark
 * to brg__json_dump) before turning it into text. Builds may nest (a checkpoint written while a run's
 * statistics are being gathered). */
struct json_t;
struct json_error_t;
uint64_t brg__json_build_begin(void);
bool brg__json_build_ok(uint64_t mark);
int brg__json_set(struct json_t *object, const char *key, struct json_t *value);  /* json_object_set_new */
int brg__json_append(struct json_t *array, struct json_t *value);                 /* json_array_append_new */

/* The text of a tree built since `mark` (brg__json_build_begin), NUL-terminated, from brg__malloc (free() it);
 * NULL when a member went missing while building or memory ran out. Not json_dumps: jansson 2.14 ignores
 * a failed append while writing an object's key, and writes the object without it; json_dumpb writes
 * into a buffer measured first, and any allocation that still fails is seen. */
char *brg__json_dump(const struct json_t *root, size_t flags, uint64_t mark);

/* json_loadb, telling malformed text from a lack of memory: a parse during which one of jansson's
 * allocations failed gives BRG_ERR_OUT_OF_MEMORY, whatever jansson made of it (it may report a syntax
 * error, or succeed with a character missing). Returns the root, or NULL with *status BRG_ERR_PARSE (je
 * says where) or BRG_ERR_OUT_OF_MEMORY. */
struct json_t *brg__json_parse(const char *text, size_t length, size_t flags, struct json_error_t *je,
                               brg_status *status);

#endif
