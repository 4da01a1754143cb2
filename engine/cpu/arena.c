/* The CPU backend's memory: an arena of its own inside jemalloc, reached only through mallocx and
 * dallocx, so the application's malloc (glibc's: programs link the shared libbrigade, which alone
 * depends on jemalloc) is never replaced or touched. */
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"

struct brg__arena {
    unsigned index; /* jemalloc's arena index */
    int flags;      /* for mallocx: this arena, no thread cache (its frees return to the arena at once) */
    /* Usable bytes (sallocx) of live allocations and their peak; atomics because stages on different
     * threads may share one arena. */
    _Atomic int64_t allocated;
    _Atomic int64_t peak;
};

brg_status brg__arena_create(brg__arena **out, char *msg) {
    if (!out) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "arena: out is NULL");
    *out = NULL;
    /* The handle comes from the library's ordinary allocator: only tensor memory lives in the arena. */
    brg__arena *a = calloc(1, sizeof *a);
    if (!a) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "arena: out of memory");
    size_t size = sizeof a->index;
    int rc = mallctl("arenas.create", &a->index, &size, NULL, 0);
    if (rc != 0) {
        free(a);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, rc == ENOMEM ? BRG_ERR_OUT_OF_MEMORY : BRG_ERR_BACKEND,
                                "arena: jemalloc mallctl(\"arenas.create\") failed: %s", strerror(rc));
    }
    a->flags = (int)MALLOCX_ARENA(a->index) | MALLOCX_TCACHE_NONE;
    atomic_init(&a->allocated, 0);
    atomic_init(&a->peak, 0);
    *out = a;
    return BRG_OK;
}

void brg__arena_destroy(brg__arena *a) {
    if (!a) return;
    char name[64];
    snprintf(name, sizeof name, "arena.%u.destroy", a->index);
    /* Releases every extent of the arena, including allocations never freed. A failure leaves the
     * arena to jemalloc (nothing else to do from a destructor). */
    (void)mallctl(name, NULL, NULL, NULL, 0);
    free(a);
}

void *brg__arena_alloc(brg__arena *a, size_t bytes) {
    /* mallocx needs a positive size. */
    void *p = mallocx(bytes ? bytes : 1, a->flags | MALLOCX_ALIGN(64) | MALLOCX_ZERO);
    if (!p) return NULL;
    int64_t usable = (int64_t)sallocx(p, 0); // what jemalloc's statistics count
    int64_t now = atomic_fetch_add(&a->allocated, usable) + usable;
    int64_t peak = atomic_load(&a->peak);
    while (now > peak && !atomic_compare_exchange_weak(&a->peak, &peak, now)) {
        /* another thread moved the peak: peak now holds its value, compare again */
    }
    return p;
}

void brg__arena_free(brg__arena *a, void *p) {
    if (!p) return;
    atomic_fetch_sub(&a->allocated, (int64_t)sallocx(p, 0));
    dallocx(p, MALLOCX_TCACHE_NONE);
}

int64_t brg__arena_allocated(const brg__arena *a) { return atomic_load(&a->allocated); }

int64_t brg__arena_peak(const brg__arena *a) { return atomic_load(&a->peak); }

void brg__arena_reset_peak(brg__arena *a) { atomic_store(&a->peak, atomic_load(&a->allocated)); }

/* One size_t statistic of this arena, "stats.arenas.<i>.<what>". */
static int arena_stat(const brg__arena *a, const char *what, size_t *value) {
    char name[96];
    snprintf(name, sizeof name, "stats.arenas.%u.%s", a->index, what);
    size_t size = sizeof *value;
    return mallctl(name, value, &size, NULL, 0);
}

brg_status brg__arena_jemalloc_allocated(const brg__arena *a, int64_t *bytes, char *msg) {
    /* jemalloc's statistics are snapshots refreshed by advancing the epoch. */
    uint64_t epoch = 1;
    size_t size = sizeof epoch;
    int rc = mallctl("epoch", &epoch, &size, &epoch, size);
    size_t small = 0, large = 0;
    if (rc == 0) rc = arena_stat(a, "small.allocated", &small);
    if (rc == 0) rc = arena_stat(a, "large.allocated", &large);
    if (rc != 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, rc == ENOENT ? BRG_ERR_UNSUPPORTED : BRG_ERR_BACKEND,
                                "arena %u: jemalloc statistics unavailable (%s)%s", a->index, strerror(rc),
                                rc == ENOENT ? ": jemalloc was built without --enable-stats" : "");
    *bytes = (int64_t)(small + large);
    return BRG_OK;
}
