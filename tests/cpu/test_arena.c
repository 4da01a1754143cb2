/* The CPU backend's jemalloc arena: alignment, zero-fill, statistics against jemalloc's own, threads,
 * and the application's malloc left alone. */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "harness.h"
#include "test_cases.h"

static const size_t sizes[] = {1, 7, 64, 100, 1000, 4096, 14000, 100000, 3u << 20};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

static int all_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* jemalloc's count agrees with ours (or its statistics are compiled out, said once). */
static void assert_stats_agree(const brg__arena *a) {
    int64_t theirs = -1;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status s = brg__arena_jemalloc_allocated(a, &theirs, msg);
    if (s == BRG_ERR_UNSUPPORTED) {
        printf("\n    (%s) ", msg);
        return;
    }
    BRG_ASSERT_OK(s, msg);
    BRG_ASSERT_EQ_INT(theirs, brg__arena_allocated(a));
}

void test_arena_alloc(void) {
    brg__arena *a = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(brg__arena_create(&a, msg), msg);
    CU_ASSERT_FATAL(a != NULL);
    BRG_ASSERT_EQ_INT(brg__arena_allocated(a), 0);
    BRG_ASSERT_EQ_INT(brg__arena_peak(a), 0);
    void *p[N_SIZES];
    int64_t total = 0;
    for (size_t i = 0; i < N_SIZES; i++) {
        p[i] = brg__arena_alloc(a, sizes[i]);
        CU_ASSERT_FATAL(p[i] != NULL);
        BRG_ASSERT_EQ_INT((uintptr_t)p[i] % 64, 0);
        CU_ASSERT(all_zero(p[i], sizes[i]));
        int64_t now = brg__arena_allocated(a);
        CU_ASSERT(now >= total + (int64_t)sizes[i]); // usable size: the request rounded up to its class
        total = now;
        memset(p[i], 0xab, sizes[i]); // dirty it: a reuse must come back zeroed
    }
    BRG_ASSERT_EQ_INT(brg__arena_peak(a), total);
    /* Free the large ones: allocated falls, the peak stays. */
    int64_t large = brg__arena_allocated(a);
    brg__arena_free(a, p[N_SIZES - 1]);
    brg__arena_free(a, p[N_SIZES - 2]);
    CU_ASSERT(brg__arena_allocated(a) < large - (int64_t)sizes[N_SIZES - 1]);
    BRG_ASSERT_EQ_INT(brg__arena_peak(a), total);
    brg__arena_reset_peak(a);
    BRG_ASSERT_EQ_INT(brg__arena_peak(a), brg__arena_allocated(a));
    /* Reallocated memory comes back zeroed. */
    void *again = brg__arena_alloc(a, sizes[N_SIZES - 1]);
    CU_ASSERT_FATAL(again != NULL);
    CU_ASSERT(all_zero(again, sizes[N_SIZES - 1]));
    brg__arena_free(a, again);
    for (size_t i = 0; i < N_SIZES - 2; i++) brg__arena_free(a, p[i]);
    BRG_ASSERT_EQ_INT(brg__arena_allocated(a), 0);
    /* zero bytes still gives a distinct, freeable pointer; NULL frees nothing */
    void *empty = brg__arena_alloc(a, 0);
    CU_ASSERT(empty != NULL);
    brg__arena_free(a, empty);
    brg__arena_free(a, NULL);
    BRG_ASSERT_EQ_INT(brg__arena_allocated(a), 0);
    brg__arena_destroy(a);
    brg__arena_destroy(NULL);
    BRG_ASSERT_STATUS(brg__arena_create(NULL, msg), BRG_ERR_INVALID_ARGUMENT);
}

void test_arena_stats(void) {
    brg__arena *a = NULL, *b = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(brg__arena_create(&a, msg), msg);
    BRG_ASSERT_OK(brg__arena_create(&b, msg), msg);
    CU_ASSERT_FATAL(a && b);
    assert_stats_agree(a);
    void *p[N_SIZES];
    for (size_t i = 0; i < N_SIZES; i++) {
        p[i] = brg__arena_alloc(a, sizes[i]);
        assert_stats_agree(a);
    }
    /* another arena counts on its own */
    void *q = brg__arena_alloc(b, 5000);
    assert_stats_agree(a);
    assert_stats_agree(b);
    BRG_ASSERT_EQ_INT(brg__arena_allocated(b), 5120); // jemalloc's size class of 5000 bytes
    for (size_t i = 0; i < N_SIZES; i += 2) {
        brg__arena_free(a, p[i]);
        assert_stats_agree(a);
    }
    for (size_t i = 1; i < N_SIZES; i += 2) brg__arena_free(a, p[i]);
    assert_stats_agree(a);
    BRG_ASSERT_EQ_INT(brg__arena_allocated(a), 0);
    brg__arena_free(b, q);
    assert_stats_agree(b);
    /* destroying an arena with live allocations releases them */
    brg__arena_alloc(b, 1 << 20);
    brg__arena_destroy(b);
    brg__arena_destroy(a);
}

enum { THREAD_ROUNDS = 2000 };

static void *churn(void *arg) {
    brg__arena *a = arg;
    void *keep[8] = {0};
    for (int i = 0; i < THREAD_ROUNDS; i++) {
        int slot = i % 8;
        brg__arena_free(a, keep[slot]);
        keep[slot] = brg__arena_alloc(a, (size_t)(16 + (i * 37) % 20000));
    }
    for (int slot = 0; slot < 8; slot++) brg__arena_free(a, keep[slot]);
    return NULL;
}

void test_arena_threads(void) {
    brg__arena *a = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(brg__arena_create(&a, msg), msg);
    CU_ASSERT_FATAL(a != NULL);
    pthread_t t[3];
    for (int i = 0; i < 3; i++) CU_ASSERT(pthread_create(&t[i], NULL, churn, a) == 0);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    BRG_ASSERT_EQ_INT(brg__arena_allocated(a), 0);
    CU_ASSERT(brg__arena_peak(a) > 0);
    assert_stats_agree(a);
    brg__arena_destroy(a);
}

/* The first object in the program's symbol lookup order that defines malloc, a sanitizer's interposer
 * aside: whose malloc the program calls in a build without sanitizers. */
typedef struct malloc_owner {
    char name[512];
} malloc_owner;

static int find_malloc_owner(struct dl_phdr_info *info, size_t size, void *data) {
    malloc_owner *owner = data;
    if (!info->dlpi_name[0] || strstr(info->dlpi_name, "libasan") || strstr(info->dlpi_name, "libubsan")) return 0;
    void *handle = dlopen(info->dlpi_name, RTLD_NOW | RTLD_NOLOAD);
    if (!handle) return 0;
    void *p = dlsym(handle, "malloc");
    Dl_info where;
    int defines = p && dladdr(p, &where) && where.dli_fname && strcmp(where.dli_fname, info->dlpi_name) == 0;
    dlclose(handle);
    if (!defines) return 0;
    snprintf(owner->name, sizeof owner->name, "%s", info->dlpi_name);
    return 1; // stop: objects come in lookup (load) order
}

void test_malloc_untouched(void) {
    /* jemalloc is loaded (libbrigade depends on it) ... */
    void *jemalloc = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_NOLOAD);
    CU_ASSERT_FATAL(jemalloc != NULL);
    void *jemalloc_malloc = dlsym(jemalloc, "malloc");
    /* ... but the program's malloc is not jemalloc's, ... */
    void *program_malloc = dlsym(RTLD_DEFAULT, "malloc");
    CU_ASSERT(program_malloc != NULL && program_malloc != jemalloc_malloc);
    Dl_info info;
    CU_ASSERT_FATAL(dladdr(program_malloc, &info) != 0);
    printf("\n    malloc comes from %s ", info.dli_fname);
    CU_ASSERT(strstr(info.dli_fname, "jemalloc") == NULL);
    /* ... nor would it be without a sanitizer: the first definition in lookup order is libc's. (A program
     * linking libjemalloc itself, ahead of libc, would get jemalloc's malloc.) */
    malloc_owner owner = {""};
    dl_iterate_phdr(find_malloc_owner, &owner);
    printf("(first definition outside sanitizers: %s) ", owner.name);
    BRG_ASSERT_CONTAINS(owner.name, "libc.so");
#if !defined(__SANITIZE_ADDRESS__)
    /* Without AddressSanitizer (which interposes its own), it is glibc's. */
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    CU_ASSERT_FATAL(libc != NULL);
    CU_ASSERT(program_malloc == dlsym(libc, "malloc"));
    dlclose(libc);
#endif
    /* The program's allocations do not count in the arena. */
    brg__arena *a = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(brg__arena_create(&a, msg), msg);
    void *p = malloc(1 << 20);
    CU_ASSERT(p != NULL);
    BRG_ASSERT_EQ_INT(brg__arena_allocated(a), 0);
    assert_stats_agree(a);
    free(p);
    brg__arena_destroy(a);
    dlclose(jemalloc);
}
