/* brigade internal helpers shared by every module: check macros, error helpers, small utilities.
 * Not installed. Names are brg__ (internal, non-static). */
#ifndef BRIGADE_INTERNAL_H
#define BRIGADE_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "alloc.h"
#include "brigade/status.h"

#if defined(__GNUC__)
#define BRG__PRINTF(fmt_index, first) __attribute__((format(printf, fmt_index, first)))
#else
#define BRG__PRINTF(fmt_index, first)
#endif

/* Sets err (if not NULL) and returns status, so a caller writes `return brg__error_set(err, ...)`. */
brg_status brg__error_set(brg_error *err, brg_status status, const char *fmt, ...) BRG__PRINTF(3, 4);

/* Formats a message into buf (size bytes) and returns status. */
brg_status brg__message_set(char *buf, size_t size, brg_status status, const char *fmt, ...)
    BRG__PRINTF(4, 5);

/* Evaluates a brg_status expression; on failure returns it from the enclosing function. */
#define BRG__CHECK(expr)                   \
    do {                                   \
        brg_status brg__s_ = (expr);       \
        if (brg__s_ != BRG_OK) return brg__s_; \
    } while (0)

/* Evaluates a brg_status expression into `status`; on failure jumps to `label` (cleanup). */
#define BRG__CHECK_GOTO(status, expr, label) \
    do {                                     \
        (status) = (expr);                   \
        if ((status) != BRG_OK) goto label;  \
    } while (0)

/* ---- checked arithmetic ---------------------------------------------------------------------------
 * Every product or sum of counts that come from a file, a command line or a caller (node and NIC
 * counts, batch sizes, tensor shapes) goes through these before it sizes an allocation or a loop. Each
 * returns true and writes the result when both operands are >= 0 and the exact result is at most
 * `limit`; otherwise it returns false and leaves *out unchanged. */
static inline bool brg__count_mul(int64_t a, int64_t b, int64_t limit, int64_t *out) {
    int64_t r;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > limit) return false;
    *out = r;
    return true;
}

static inline bool brg__count_add(int64_t a, int64_t b, int64_t limit, int64_t *out) {
    int64_t r;
    if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r) || r > limit) return false;
    *out = r;
    return true;
}

/* 64-bit FNV-1a, used for fingerprints (parameters, plans) and for seeding by name. */
#define BRG__FNV_OFFSET 0xcbf29ce484222325ULL
uint64_t brg__fnv1a(uint64_t hash, const void *data, size_t size);

/* Seconds on the monotonic clock (for durations and deadlines). */
double brg__now_seconds(void);

/* splitmix64: a counter-based generator; every random stream in brigade is derived from a seed and a
 * name or index through it, so results do not depend on how work is split. */
uint64_t brg__splitmix64(uint64_t *state);
/* Uniform in [0, 1) with 24 bits, from the stream. */
float brg__rand_uniform(uint64_t *state);
/* Standard normal (Box-Muller), from the stream. */
float brg__rand_normal(uint64_t *state);

#endif
