// The backend's memory arena: a few large reservations (segments) carved into 256-byte aligned blocks.
// Free ranges are kept sorted by address and coalesced with their neighbours of the same segment; a
// request takes the smallest free range that fits (lowest address on ties), so a step that frees and
// allocates the same sizes every time reuses the same blocks. Live blocks are found by address in an
// open-addressing table. Host bookkeeping only: no CUDA call happens here (cuda.h documents the API).
#include <cstdlib>
#include <cstring>

#include "cuda.h"
extern "C" {
#include "internal.h"
}

#define ALIGNMENT ((size_t)BRG__CUDA_ARENA_ALIGNMENT)
#define SEGMENT_GRANULE ((size_t)2 << 20) /* segments are whole multiples of 2 MiB */

typedef struct segment {
    void *base;      /* as the source gave it */
    uintptr_t start; /* first aligned address */
    uintptr_t end;
} segment;

typedef struct free_range {
    uintptr_t start;
    size_t bytes;
    int segment;
} free_range;

typedef struct live_block {
    uintptr_t ptr; /* 0: empty; TOMBSTONE: removed */
    size_t bytes;
} live_block;

#define TOMBSTONE ((uintptr_t)1)

struct brg__cuda_arena {
    brg__cuda_arena_source source;
    size_t segment_bytes;
    segment *segments;
    int n_segments, cap_segments;
    free_range *ranges; /* sorted by start */
    int n_ranges, cap_ranges;
    live_block *table;
    size_t table_cap, table_live, table_used; /* used counts tombstones too */
    int64_t allocated, peak, reserved;
};

static size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

/* ---- the table of live blocks ---- */

static size_t slot_of(const brg__cuda_arena *a, uintptr_t p) {
    uint64_t h = (uint64_t)(p / ALIGNMENT) * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h ^ (h >> 29)) & (a->table_cap - 1);
}

static live_block *table_find(const brg__cuda_arena *a, uintptr_t p) {
    if (!a->table_cap || p == 0 || p == TOMBSTONE) return NULL;
    for (size_t i = slot_of(a, p), probes = 0; probes < a->table_cap; i = (i + 1) & (a->table_cap - 1), probes++) {
        if (a->table[i].ptr == 0) return NULL;
        if (a->table[i].ptr == p) return &a->table[i];
    }
    return NULL;
}

static int table_grow(brg__cuda_arena *a) {
    size_t cap = a->table_cap ? a->table_cap : 256;
    while (a->table_live * 2 + 2 > cap) cap *= 2;
    live_block *old = a->table;
    size_t old_cap = a->table_cap;
    live_block *table = (live_block *)calloc(cap, sizeof *table);
    if (!table) return 0;
    a->table = table;
    a->table_cap = cap;
    a->table_used = a->table_live;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].ptr == 0 || old[i].ptr == TOMBSTONE) continue;
        size_t j = slot_of(a, old[i].ptr);
        while (table[j].ptr != 0) j = (j + 1) & (cap - 1);
        table[j] = old[i];
    }
    free(old);
    return 1;
}

static int table_insert(brg__cuda_arena *a, uintptr_t p, size_t bytes) {
    if ((a->table_used + 1) * 2 > a->table_cap && !table_grow(a)) return 0;
    size_t i = slot_of(a, p);
    while (a->table[i].ptr != 0 && a->table[i].ptr != TOMBSTONE) i = (i + 1) & (a->table_cap - 1);
    if (a->table[i].ptr == 0) a->table_used++;
    a->table[i].ptr = p;
    a->table[i].bytes = bytes;
    a->table_live++;
    return 1;
}

/* ---- free ranges ---- */

/* Index of the first range starting at or after p. */
static int range_position(const brg__cuda_arena *a, uintptr_t p) {
    int lo = 0, hi = a->n_ranges;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (a->ranges[mid].start < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int ranges_reserve(brg__cuda_arena *a) {
    if (a->n_ranges < a->cap_ranges) return 1;
    int cap = a->cap_ranges ? 2 * a->cap_ranges : 64;
    free_range *r = (free_range *)realloc(a->ranges, (size_t)cap * sizeof *r);
    if (!r) return 0;
    a->ranges = r;
    a->cap_ranges = cap;
    return 1;
}

/* Adds [start, start + bytes) of segment seg, merged with adjacent ranges of the same segment. Room for
 * one more range must have been reserved. */
static void range_add(brg__cuda_arena *a, uintptr_t start, size_t bytes, int seg) {
    int i = range_position(a, start);
    int merge_prev =
        i > 0 && a->ranges[i - 1].segment == seg && a->ranges[i - 1].start + a->ranges[i - 1].bytes == start;
    int merge_next = i < a->n_ranges && a->ranges[i].segment == seg && start + bytes == a->ranges[i].start;
    if (merge_prev && merge_next) {
        a->ranges[i - 1].bytes += bytes + a->ranges[i].bytes;
        memmove(&a->ranges[i], &a->ranges[i + 1], (size_t)(a->n_ranges - i - 1) * sizeof *a->ranges);
        a->n_ranges--;
    } else if (merge_prev) {
        a->ranges[i - 1].bytes += bytes;
    } else if (merge_next) {
        a->ranges[i].start = start;
        a->ranges[i].bytes += bytes;
    } else {
        memmove(&a->ranges[i + 1], &a->ranges[i], (size_t)(a->n_ranges - i) * sizeof *a->ranges);
        a->ranges[i].start = start;
        a->ranges[i].bytes = bytes;
        a->ranges[i].segment = seg;
        a->n_ranges++;
    }
}

/* The smallest range holding `bytes` (the lowest on ties), or -1. */
static int best_fit(const brg__cuda_arena *a, size_t bytes) {
    int best = -1;
    for (int i = 0; i < a->n_ranges; i++)
        if (a->ranges[i].bytes >= bytes && (best < 0 || a->ranges[i].bytes < a->ranges[best].bytes)) best = i;
    return best;
}

static int segment_of(const brg__cuda_arena *a, uintptr_t p) {
    for (int s = 0; s < a->n_segments; s++)
        if (p >= a->segments[s].start && p < a->segments[s].end) return s;
    return -1;
}

/* A new segment holding at least `bytes`, its space added as a free range. */
static int add_segment(brg__cuda_arena *a, size_t bytes) {
    size_t want = round_up((bytes > a->segment_bytes ? bytes : a->segment_bytes) + ALIGNMENT, SEGMENT_GRANULE);
    if (a->n_segments == a->cap_segments) {
        int cap = a->cap_segments ? 2 * a->cap_segments : 8;
        segment *s = (segment *)realloc(a->segments, (size_t)cap * sizeof *s);
        if (!s) return 0;
        a->segments = s;
        a->cap_segments = cap;
    }
    if (!ranges_reserve(a)) return 0;
    void *base = a->source.reserve(a->source.context, want);
    if (!base) return 0;
    segment *s = &a->segments[a->n_segments];
    s->base = base;
    s->start = round_up((uintptr_t)base, ALIGNMENT);
    s->end = (uintptr_t)base + want;
    a->reserved += (int64_t)want;
    range_add(a, s->start, (size_t)(s->end - s->start), a->n_segments);
    a->n_segments++;
    return 1;
}

/* ---- the API ---- */

extern "C" brg_status brg__cuda_arena_create(brg__cuda_arena **out, const brg__cuda_arena_source *source,
                                             size_t segment_bytes, char *msg) {
    if (!out || !source || !source->reserve || !source->release || segment_bytes == 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                "arena: a NULL argument or a zero segment size");
    brg__cuda_arena *a = (brg__cuda_arena *)calloc(1, sizeof *a);
    if (!a) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    a->source = *source;
    a->segment_bytes = segment_bytes;
    if (!table_grow(a)) {
        free(a);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    *out = a;
    return BRG_OK;
}

extern "C" void brg__cuda_arena_destroy(brg__cuda_arena *a) {
    if (!a) return;
    for (int s = 0; s < a->n_segments; s++) a->source.release(a->source.context, a->segments[s].base);
    free(a->segments);
    free(a->ranges);
    free(a->table);
    free(a);
}

extern "C" void *brg__cuda_arena_alloc(brg__cuda_arena *a, size_t bytes) {
    if (!a || bytes > SIZE_MAX / 2) return NULL;
    size_t size = round_up(bytes ? bytes : 1, ALIGNMENT);
    int i = best_fit(a, size);
    if (i < 0) {
        if (!add_segment(a, size)) return NULL;
        i = best_fit(a, size);
        if (i < 0) return NULL;
    }
    uintptr_t p = a->ranges[i].start;
    if (!table_insert(a, p, size)) return NULL;
    a->ranges[i].start += size;
    a->ranges[i].bytes -= size;
    if (a->ranges[i].bytes == 0) {
        memmove(&a->ranges[i], &a->ranges[i + 1], (size_t)(a->n_ranges - i - 1) * sizeof *a->ranges);
        a->n_ranges--;
    }
    a->allocated += (int64_t)size;
    if (a->allocated > a->peak) a->peak = a->allocated;
    return (void *)p;
}

extern "C" brg_status brg__cuda_arena_free(brg__cuda_arena *a, void *p) {
    if (!p) return BRG_OK;
    if (!a) return BRG_ERR_INVALID_ARGUMENT;
    live_block *b = table_find(a, (uintptr_t)p);
    int seg = segment_of(a, (uintptr_t)p);
    if (!b || seg < 0) return BRG_ERR_INVALID_ARGUMENT;
    /* Room for the range first, so that a failure leaves the block live rather than lost. */
    if (!ranges_reserve(a)) return BRG_ERR_OUT_OF_MEMORY;
    size_t bytes = b->bytes;
    b->ptr = TOMBSTONE;
    a->table_live--;
    range_add(a, (uintptr_t)p, bytes, seg);
    a->allocated -= (int64_t)bytes;
    return BRG_OK;
}

extern "C" size_t brg__cuda_arena_block_bytes(const brg__cuda_arena *a, const void *p) {
    const live_block *b = a ? table_find(a, (uintptr_t)p) : NULL;
    return b ? b->bytes : 0;
}

extern "C" int64_t brg__cuda_arena_allocated(const brg__cuda_arena *a) { return a ? a->allocated : 0; }
extern "C" int64_t brg__cuda_arena_peak(const brg__cuda_arena *a) { return a ? a->peak : 0; }
extern "C" void brg__cuda_arena_reset_peak(brg__cuda_arena *a) {
    if (a) a->peak = a->allocated;
}
extern "C" int64_t brg__cuda_arena_reserved(const brg__cuda_arena *a) { return a ? a->reserved : 0; }
extern "C" int brg__cuda_arena_segments(const brg__cuda_arena *a) { return a ? a->n_segments : 0; }
