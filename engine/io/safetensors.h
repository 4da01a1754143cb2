/* Safetensors files (the Hugging Face format, https://github.com/huggingface/safetensors): a strict
 * reader and a deterministic writer, for checkpoints and GPT-2 weights. Internal.
 *
 * The format: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON (an object mapping each tensor
 * name to {"dtype", "shape", "data_offsets": [begin, end]}, plus an optional "__metadata__" object of
 * string -> string), padded with spaces; then the data area, which the tensors' byte ranges (relative to
 * its start) must cover exactly: no holes, no overlaps, nothing after the last tensor.
 *
 * Every call that takes `char *msg` writes a message of at most BRG_ERROR_MESSAGE_MAX bytes there on
 * failure (msg may be NULL). Messages start with the file's name and, where there is one, the tensor's:
 *   "model.safetensors: tensor 'wte': data_offsets [0, 100] hold 100 bytes, but F32 [5, 6] needs 120".
 * Nothing here exits or aborts; every allocation is checked. A handle is not safe to use from two
 * threads at once (reads are positioned reads, but the handle keeps no lock). */
#ifndef BRIGADE_IO_SAFETENSORS_H
#define BRIGADE_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* The most dimensions a tensor may have here (a file with more fails to open). */
#define BRG__ST_MAX_DIMS 8
/* The largest header read or written, in bytes: the limit of the reference implementation. */
#define BRG__ST_HEADER_LIMIT 100000000

/* X(name, bytes per element): every dtype of whole bytes the format defines. The sub-byte ones (F4,
 * F6_E2M3, F6_E3M2) are refused with BRG_ERR_UNSUPPORTED. */
#define BRG__ST_DTYPE_MAP(X) \
    X(BOOL, 1)               \
    X(U8, 1)                 \
    X(I8, 1)                 \
    X(F8_E5M2, 1)            \
    X(F8_E4M3, 1)            \
    X(F8_E8M0, 1)            \
    X(I16, 2)                \
    X(U16, 2)                \
    X(F16, 2)                \
    X(BF16, 2)               \
    X(I32, 4)                \
    X(U32, 4)                \
    X(F32, 4)                \
    X(F64, 8)                \
    X(C64, 8)                \
    X(I64, 8)                \
    X(U64, 8)

typedef enum brg__st_dtype {
#define BRG__ST_DTYPE_ENUM(name, bytes) BRG__ST_##name,
    BRG__ST_DTYPE_MAP(BRG__ST_DTYPE_ENUM)
#undef BRG__ST_DTYPE_ENUM
        BRG__ST_DTYPE_COUNT
} brg__st_dtype;

/* The dtype's name as the header spells it ("F32"); "?" outside the table. */
const char *brg__st_dtype_name(brg__st_dtype dtype);
/* Bytes per element; 0 outside the table. */
int brg__st_dtype_size(brg__st_dtype dtype);

/* One tensor of an open file. The name is owned by the file and lives until brg__st_close. */
typedef struct brg__st_tensor {
    const char *name;
    brg__st_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[BRG__ST_MAX_DIMS];
    int64_t count; /* elements: the product of shape (1 for a scalar) */
    int64_t begin, end; /* its bytes, relative to the start of the data area */
} brg__st_tensor;

/* ---- reader ---------------------------------------------------------------------------------------- */

typedef struct brg__st_file brg__st_file;

/* Opens path and reads and checks its whole header; the data is read later, on demand, and the file stays
 * open until brg__st_close. On success *out is a new handle; on failure *out is NULL.
 * BRG_ERR_INVALID_ARGUMENT (a NULL argument), BRG_ERR_IO (cannot open, stat or read; not a regular
 * file), BRG_ERR_PARSE (anything wrong with the file: too short, header length past the end or above
 * BRG__ST_HEADER_LIMIT, header not a JSON object, an entry that is not {dtype, shape, data_offsets} with
 * a known dtype, non-negative integer dimensions (at most BRG__ST_MAX_DIMS, element count and byte size
 * within 64 bits) and offsets [begin, end] that hold exactly the tensor's bytes inside the data area;
 * tensors that overlap or leave bytes of the data area uncovered; a name given twice; metadata that is
 * not string -> string), BRG_ERR_UNSUPPORTED (a sub-byte dtype such as F4), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__st_open(const char *path, brg__st_file **out, char *msg);

/* brg__st_open over `size` bytes at `data` instead of a file (fuzzing, files already in memory). The
 * bytes are borrowed: they must stay valid and unchanged until brg__st_close. `name` (copied) stands for
 * the file in messages. Same statuses, with BRG_ERR_IO only for a read past the end. */
brg_status brg__st_open_memory(const void *data, size_t size, const char *name, brg__st_file **out, char *msg);

/* Tensors, in the order of their names (strcmp), whatever the order of the file. */
int64_t brg__st_count(const brg__st_file *f);
/* The i-th tensor (0 <= i < count), or NULL when i is out of range or f is NULL. */
const brg__st_tensor *brg__st_get(const brg__st_file *f, int64_t i);
/* The tensor called name, or NULL when there is none. */
const brg__st_tensor *brg__st_find(const brg__st_file *f, const char *name);

/* The "__metadata__" value of key (owned by the file), or NULL when absent. */
const char *brg__st_metadata(const brg__st_file *f, const char *key);
/* Metadata entries, in the order of their keys (strcmp). */
int64_t brg__st_metadata_count(const brg__st_file *f);
/* The i-th metadata entry into *key and *value (owned by the file); BRG_ERR_INVALID_ARGUMENT when i is
 * out of range or an argument is NULL. */
brg_status brg__st_metadata_entry(const brg__st_file *f, int64_t i, const char **key, const char **value);

/* Reads tensor t of f (a pointer that brg__st_get or brg__st_find returned for f) into dst as float32,
 * `count` elements. F32 is copied; F16 (subnormals, infinities and NaNs included) and BF16 are converted
 * exactly; F64 is rounded to the nearest float (beyond float's range: an infinity).
 * BRG_ERR_INVALID_ARGUMENT (NULL f, t or dst, or t not a tensor of f), BRG_ERR_SHAPE (count is not the
 * tensor's element count), BRG_ERR_UNSUPPORTED (another dtype; the message names it), BRG_ERR_IO (a
 * read failed or came short: the file was truncated after it was opened). dst is undefined on failure. */
brg_status brg__st_read_f32(brg__st_file *f, const brg__st_tensor *t, float *dst, int64_t count, char *msg);

/* Reads the bytes of tensor t as stored (little-endian), `bytes` of them (must be t->end - t->begin,
 * BRG_ERR_SHAPE otherwise; dst may be NULL when that is 0). Otherwise as brg__st_read_f32. */
brg_status brg__st_read_raw(brg__st_file *f, const brg__st_tensor *t, void *dst, int64_t bytes, char *msg);

/* Closes the file and frees the handle; tensors and strings it returned become invalid. NULL is a no-op. */
void brg__st_close(brg__st_file *f);

/* ---- writer ---------------------------------------------------------------------------------------- */

/* Collects tensors and metadata, then writes one file. Given the same tensors and metadata, in any order,
 * it writes the same bytes: "__metadata__" first (keys sorted), then the tensors sorted by name (strcmp),
 * their data laid out in that order, the header padded with spaces so that the data starts at a multiple
 * of 8 bytes. */
typedef struct brg__st_writer brg__st_writer;

/* A new, empty writer into *out. BRG_ERR_INVALID_ARGUMENT (out NULL), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__st_writer_create(brg__st_writer **out, char *msg);

/* Adds a tensor of `ndim` dimensions (0 to BRG__ST_MAX_DIMS; shape may be NULL when ndim is 0) whose
 * elements are at `data`, little-endian, count * brg__st_dtype_size(dtype) bytes (data may be NULL
 * when that is 0). The name is copied; the data is borrowed until brg__st_writer_write returns.
 * BRG_ERR_INVALID_ARGUMENT (NULL writer or name, an empty name, "__metadata__", a name that is not
 * UTF-8, an unknown dtype, a bad ndim, a negative dimension, a size beyond 64 bits, data NULL with bytes
 * to write), BRG_ERR_NAME (a tensor of that name was added before), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__st_writer_add(brg__st_writer *w, const char *name, brg__st_dtype dtype, int ndim, const int64_t *shape,
                              const void *data, char *msg);

/* Adds a "__metadata__" entry (both strings copied; UTF-8). BRG_ERR_INVALID_ARGUMENT (NULL argument,
 * not UTF-8), BRG_ERR_NAME (key given before), BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__st_writer_metadata(brg__st_writer *w, const char *key, const char *value, char *msg);

/* Writes the file to exactly `path` (created or truncated; the caller picks temporary names and renames),
 * then flushes it and fsyncs it. The writer stays usable (it may write again).
 * BRG_ERR_INVALID_ARGUMENT (NULL argument; a header larger than BRG__ST_HEADER_LIMIT), BRG_ERR_IO
 * (cannot create, write, flush, sync or close it: the message names the path and the system's reason,
 * e.g. "No space left on device"; a partial file may be left at path for the caller to remove),
 * BRG_ERR_OUT_OF_MEMORY. */
brg_status brg__st_writer_write(brg__st_writer *w, const char *path, char *msg);

/* Frees the writer and its copies of names and metadata. NULL is a no-op. */
void brg__st_writer_destroy(brg__st_writer *w);

#endif
