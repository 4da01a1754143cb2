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

#endif
