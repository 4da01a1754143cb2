/* The library's allocator: every malloc, calloc, realloc and strdup of brigade's own code goes through
 * these, so that a test can make any one of them fail (brg__alloc_fail_at) and check that the failure
 * comes back as BRG_ERR_OUT_OF_MEMORY, with nothing leaked and every handle still destroyable. Memory
 * from them is released with free(). Not installed. */
#ifndef BRIGADE_ALLOC_H
#define BRIGADE_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *brg__malloc(size_t size);
void *brg__calloc(size_t count, size_t size);
void *brg__realloc(void *p, size_t size); /* on failure p is left as it was, as realloc does */
char *brg__strdup(const char *s);

/* ---- failure injection (tests) ----------------------------------------------------------------------
 * brg__alloc_fail_at(k), k >= 1: the k-th allocation counted from now fails (returns NULL), once; the
 * others succeed. Counted: the functions above, the CPU backend's arena and jansson's allocations
 * (engine/json.h), through brg__alloc_injected_failure. k = 0 disarms and resets the count. Arm and
 * disarm while no other thread of the library runs. */
void brg__alloc_fail_at(int64_t k);
/* Allocations counted since the last brg__alloc_fail_at. */
int64_t brg__alloc_counted(void);
/* The code address that asked for the failed allocation (its caller's return address), or NULL while
 * the armed failure has not happened. */
const void *brg__alloc_failed_site(void);
/* For allocators of their own (the arena): counts one allocation and says whether it is the one to
 * fail. `site` is the caller's address, for brg__alloc_failed_site. */
bool brg__alloc_injected_failure(const void *site);

#endif
