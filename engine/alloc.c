#include "alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* 0 when disarmed: the allocation functions then cost one relaxed load. */
static _Atomic int64_t fail_at;
static _Atomic int64_t counted;
static _Atomic(const void *) failed_site;

bool brg__alloc_injected_failure(const void *site) {
    int64_t k = atomic_load_explicit(&fail_at, memory_order_relaxed);
    if (k == 0) return false;
    if (atomic_fetch_add(&counted, 1) + 1 != k) return false;
    atomic_store(&failed_site, site);
    return true;
}

void *brg__malloc(size_t size) {
    if (brg__alloc_injected_failure(__builtin_return_address(0))) return NULL;
    return malloc(size);
}

void *brg__calloc(size_t count, size_t size) {
    if (brg__alloc_injected_failure(__builtin_return_address(0))) return NULL;
    return calloc(count, size);
}

void *brg__realloc(void *p, size_t size) {
    if (brg__alloc_injected_failure(__builtin_return_address(0))) return NULL;
    return realloc(p, size);
}

char *brg__strdup(const char *s) {
    if (brg__alloc_injected_failure(__builtin_return_address(0))) return NULL;
    return strdup(s);
}

void brg__alloc_fail_at(int64_t k) {
    atomic_store(&counted, 0);
    atomic_store(&failed_site, NULL);
    atomic_store(&fail_at, k > 0 ? k : 0);
}

int64_t brg__alloc_counted(void) { return atomic_load(&counted); }

const void *brg__alloc_failed_site(void) { return atomic_load(&failed_site); }
