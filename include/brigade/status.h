/* brigade: status codes, error strings, version.
 *
 * Every fallible call returns a brg_status. BRG_OK is 0; the other values are append-only and never
 * renumbered. brg_status_string() returns a static string (never NULL, never to be freed). Handles keep a
 * detailed message of their last failure (brg_graph_last_error(), ...); calls that fail before a handle
 * exists fill a caller-provided brg_error when one is given. */
#ifndef BRIGADE_STATUS_H
#define BRIGADE_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#define BRG_VERSION_MAJOR 0
#define BRG_VERSION_MINOR 1
#define BRG_VERSION_PATCH 0

/* X(name, value, text): one table generates the enum and the strings. */
#define BRG_STATUS_MAP(X)                                                                          \
    X(OK, 0, "success")                                                                            \
    X(ERR_INVALID_ARGUMENT, 1, "invalid argument (a NULL handle or pointer, or a value out of range)") \
    X(ERR_INVALID_USAGE, 2, "invalid usage (the call is not allowed in the handle's current state)") \
    X(ERR_SHAPE, 3, "tensor shapes do not match what the operation needs")                       \
    X(ERR_DTYPE, 4, "tensor element type is not what the operation needs")                        \
    X(ERR_NAME, 5, "duplicate or unknown name")                                                    \
    X(ERR_OUT_OF_MEMORY, 6, "out of memory")                                                       \
    X(ERR_IO, 7, "input/output error (file missing, unreadable or unwritable)")                   \
    X(ERR_PARSE, 8, "malformed input (file or specification could not be parsed)")                \
    X(ERR_UNSUPPORTED, 9, "not supported by this build or backend")                                \
    X(ERR_BACKEND, 10, "a backend kernel or library call failed")                                  \
    X(ERR_INFEASIBLE, 11, "the request cannot fit the devices (memory or constraints)")            \
    X(ERR_TRANSPORT, 12, "a transfer between stages failed")                                       \
    X(ERR_TIMEOUT, 13, "timed out waiting for a peer")                                             \
    X(ERR_NOT_FOUND, 14, "not found")                                                              \
    X(ERR_MISMATCH, 15, "the file was made for another model, topology or version")              \
    X(ERR_NO_DEVICE, 16, "no usable device found")                                                 \
    X(ERR_CANCELLED, 17, "cancelled because another worker failed")                                \
    X(ERR_INTERNAL, 18, "internal error (a bug in brigade: please report it)")                    \
    X(ERR_NUMERICAL, 19, "a NaN or an infinity appeared in the loss, an activation or a gradient")

typedef enum brg_status {
#define BRG__STATUS_ENUM(name, value, text) BRG_##name = value,
    BRG_STATUS_MAP(BRG__STATUS_ENUM)
#undef BRG__STATUS_ENUM
} brg_status;

/* A static description of s; "unknown status" for values outside the table. */
const char *brg_status_string(brg_status s);

/* The symbolic name of s ("BRG_ERR_SHAPE"); "BRG_UNKNOWN" outside the table. */
const char *brg_status_name(brg_status s);

/* Detail for calls that fail before a handle exists (opening files, parsing specifications).
 * Such calls take a `brg_error *err` that may be NULL; on failure they set status and message. */
#define BRG_ERROR_MESSAGE_MAX 512
typedef struct brg_error {
    brg_status status;
    char message[BRG_ERROR_MESSAGE_MAX];
} brg_error;

/* "MAJOR.MINOR.PATCH" of the library actually linked. */
const char *brg_version(void);

#ifdef __cplusplus
}
#endif
#endif
