/* The CPU backend's memory: an arena of its own inside jemalloc, reached only through mallocx and
 * dallocx, so the application's malloc (glibc's: programs link the shared libbrigade, which alone
 * depends on jemalloc) is never replaced or touched. */
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "alloc.h"
#include "cpu/cpu.h"

struct brg__arena {
    unsigned index; /* jemalloc's arena index */
    int flags;      /* for mallocx: this arena, no thread cache (its frees return to the arena at once) */
    /* Usable bytes (sallocx) of live allocations and their peak; atomics because stages on different
     * threads may share one arena. */
    _Atomic int64_t allocated;
    _Atomic int64_t peak;
};

/* jemalloc's options, read when it starts (its documented hook: the program or a library may define
 * malloc_conf). A freed extent serves a later request only if it is at most 2^lg_extent_max_active_fit
 * times larger (64 by default); the activations a step frees coalesce into extents far larger than most
 * of the next step's requests, which then came from fresh pages: page faults and kernel clearing for
 * hundreds of megabytes every gpt2-small step. 2^16 lets them reuse the freed memory. The option shapes
 * only where jemalloc carves requests from; jemalloc serves this library alone (the program's malloc
 * stays its own), and MALLOC_CONF in the environment still overrides it. */
const char *malloc_conf = "lg_extent_max_active_fit:16";

/* A training step frees and allocates the same activations again every micro-batch. jemalloc would give
 * freed pages back to the kernel after its decay time (10 s), which a CPU step outlasts; the arena keeps
 * its freed pages instead: its resident size stays at the peak the stage reaches anyway, and everything
 * goes back when the arena is destroyed. A failure only costs speed. */
static void keep_freed_pages(unsigned index) {
    ssize_t never = -1;
    char name[64];
    snprintf(name, sizeof name, "arena.%u.dirty_decay_ms", index);
    (void)mallctl(name, NULL, NULL, &never, sizeof never);
    snprintf(name, sizeof name, "arena.%u.muzzy_decay_ms", index);
    (void)mallctl(name, NULL, NULL, &never, sizeof never);
}

brg_status brg__arena_create(brg__arena **out, char *msg) {
    if (!out) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT, "arena: out is NULL");
    *out = NULL;
    /* The handle comes from the library's ordinary allocator: only tensor memory lives in the arena. */
    brg__arena *a = brg__calloc(1, sizeof *a);
    if (!a) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "arena: out of memory");
    size_t size = sizeof a->index;
    int rc = mallctl("arenas.create", &a->index, &size, NULL, 0);
    if (rc != 0) {
        free(a);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, rc == ENOMEM ? BRG_ERR_OUT_OF_MEMORY : BRG_ERR_BACKEND,
                                "arena: jemalloc mallctl(\"arenas.create\") failed: %s", strerror(rc));
    }
    a->flags = (int)MALLOCX_ARENA(a->index) | MALLOCX_TCACHE_NONE;
    keep_freed_pages(a->index);
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

/* An allocation of the arena for `site` (its caller, as the allocation-failure sweep names sites): zeroed
 * when zero is set; else, in builds with assertions, filled with 0xff bytes (NaN as fp32, -1 as int32), so
 * that a read before the first write shows in the tests. */
static void *arena_take(brg__arena *a, size_t bytes, int zero, const void *site) {
    /* mallocx needs a positive size. Not MALLOCX_ZERO: jemalloc zeroes a reused large extent by handing
     * its pages back to the kernel (madvise), so every reuse would fault each 4 KiB page in again and
     * have the kernel clear it (about 600k faults per gpt2-small step); clearing the memory here, on
     * the calling thread's kernel threads, is several times cheaper. */
    if (brg__alloc_injected_failure(site)) return NULL;
    void *p = mallocx(bytes ? bytes : 1, a->flags | MALLOCX_ALIGN(64));
    if (!p) return NULL;
    if (zero)
        brg__cpu_zero(p, bytes);
#ifndef NDEBUG
    else
        memset(p, 0xff, bytes);
#endif
    int64_t usable = (int64_t)sallocx(p, 0); // what jemalloc's statistics count
    int64_t now = atomic_fetch_add(&a->allocated, usable) + usable;
    int64_t peak = atomic_load(&a->peak);
    while (now > peak && !atomic_compare_exchange_weak(&a->peak, &peak, now)) {
        /* another thread moved the peak: peak now holds its value, compare again */
    }
    return p;
}

void *brg__arena_alloc(brg__arena *a, size_t bytes) { return arena_take(a, bytes, 1, __builtin_return_address(0)); }

void *brg__arena_alloc_uninit(brg__arena *a, size_t bytes) {
    return arena_take(a, bytes, 0, __builtin_return_address(0));
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
