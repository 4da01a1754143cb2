/* Per calling thread: how many threads the CPU kernels may use, and the pool of helper threads that
 * runs their pieces.
 *
 * Each calling thread (a pipeline rank's worker) owns a pool of brg__cpu_threads() - 1 helpers, made on
 * its first parallel call and remade when its thread count changes. Helpers sleep on a condition
 * variable between calls. The pool goes away with its thread (a thread-specific destructor) or on
 * brg__cpu_threads_release. Which thread runs a piece never matters: pieces write disjoint outputs, and
 * every one is computed the same way wherever it runs. So anything that stops a helper from taking
 * part (a failed pthread_create or malloc) costs speed, never a different result.
 *
 * Kernels come in quick succession (a step is hundreds of them), and waking a sleeping thread takes
 * tens of microseconds (more in a virtual machine), longer than many pieces. So a helper that finished
 * a job polls for the next one for HELPER_SPIN_NS before it goes to sleep: a pool whose caller is busy
 * with kernels keeps its helpers awake, an idle one sleeps. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "cpu.h"

typedef struct pool pool;

typedef struct helper {
    pool *owner;
    pthread_t thread;
    int index;              /* worker index, from 1 (0 is the calling thread) */
    float *scratch;         /* workspace of this helper's pieces, grown on demand */
    int64_t scratch_floats; /* its size */
} helper;

struct pool {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* helpers: a job was posted, or the pool closes */
    pthread_cond_t idle; /* the caller: the last helper inside the job left it */
    int requested;       /* threads asked for: brg__cpu_threads() - 1 when made */
    int helpers;         /* threads started (fewer if pthread_create failed) */
    _Atomic int closing;
    /* The job; fields below are written by the caller while no helper is inside a job. */
    _Atomic uint64_t generation; /* bumped per job: a helper joins each job at most once */
    int open;            /* helpers may still join the job */
    int allowed;         /* helpers with index < allowed may join (those with workspace) */
    int inside;          /* helpers now running pieces of the job */
    brg__cpu_piece_fn fn;
    void *ctx;
    int64_t pieces;
    int with_scratch;     /* the helpers pass their workspace to fn (else NULL) */
    _Atomic int64_t next; /* the next unclaimed piece */
    helper helper[];
};

/* How long a helper polls for the next job before it sleeps. */
#define HELPER_SPIN_NS 100000

/* More threads than this per caller is a mistake, not a machine. */
#define THREADS_MAX 1024

static _Thread_local int kernel_threads = 1;
/* Set while this thread runs pieces: a kernel called from a piece runs its own pieces in order on this
 * thread rather than wait on a pool that is busy with the caller's job. */
static _Thread_local int in_job = 0;

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t pool_key;
static int key_ok; /* 0 if pthread_key_create failed: then no pool, everything runs on the caller */

void brg__cpu_set_threads(int threads) {
    kernel_threads = threads < 1 ? 1 : threads > THREADS_MAX ? THREADS_MAX : threads;
}

int brg__cpu_threads(void) { return kernel_threads; }

/* Claims and runs pieces until none is left. */
static void run_pieces(pool *p, float *scratch) {
    for (;;) {
        int64_t piece = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (piece >= p->pieces) return;
        p->fn(p->ctx, piece, scratch);
    }
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
}

/* Polls for a job after `seen` (or the pool closing) for HELPER_SPIN_NS, without the lock. */
static void spin_for_job(pool *p, uint64_t seen) {
    int64_t until = now_ns() + HELPER_SPIN_NS;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(&p->generation, memory_order_relaxed) != seen ||
                atomic_load_explicit(&p->closing, memory_order_relaxed))
                return;
            cpu_relax();
        }
        if (now_ns() > until) return;
    }
}

static void *helper_main(void *arg) {
    helper *h = arg;
    pool *p = h->owner;
    in_job = 1; /* a helper never posts jobs of its own */
    uint64_t seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (!p->closing && p->generation == seen) {
            pthread_mutex_unlock(&p->lock);
            spin_for_job(p, seen);
            pthread_mutex_lock(&p->lock);
        }
        while (!p->closing && p->generation == seen) pthread_cond_wait(&p->wake, &p->lock);
        if (p->closing) break;
        seen = p->generation;
        if (!p->open || h->index >= p->allowed) continue;
        p->inside++;
        pthread_mutex_unlock(&p->lock);
        run_pieces(p, p->with_scratch ? h->scratch : NULL);
        pthread_mutex_lock(&p->lock);
        if (--p->inside == 0) pthread_cond_signal(&p->idle);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void pool_destroy(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->closing = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->helpers; i++) pthread_join(p->helper[i].thread, NULL);
    for (int i = 0; i < p->helpers; i++) free(p->helper[i].scratch);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* A pool of up to `helpers` threads; NULL when not even one could be had. */
static pool *pool_create(int helpers) {
    pool *p = brg__calloc(1, sizeof *p + (size_t)helpers * sizeof(helper));
    if (!p) return NULL;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->wake, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->idle, NULL) != 0) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
    }
    atomic_init(&p->next, 0);
    p->requested = helpers;
    for (int i = 0; i < helpers; i++) {
        helper *h = &p->helper[i];
        h->owner = p;
        h->index = i + 1;
        if (pthread_create(&h->thread, NULL, helper_main, h) != 0) break;
        p->helpers++;
    }
    if (p->helpers == 0) {
        pool_destroy(p);
        return NULL;
    }
    return p;
}

static void key_destructor(void *value) { pool_destroy(value); }

static void key_create(void) { key_ok = pthread_key_create(&pool_key, key_destructor) == 0; }

/* The calling thread's pool, made or remade for its current thread count; NULL: run on this thread. */
static pool *pool_get(void) {
    pthread_once(&key_once, key_create);
    if (!key_ok) return NULL;
    pool *p = pthread_getspecific(pool_key);
    int helpers = kernel_threads - 1;
    /* A pool that could not start every thread it asked for is kept as it is: asking again on every
     * call would be slow. */
    if (p && p->requested == helpers) return p;
    if (p) {
        pthread_setspecific(pool_key, NULL);
        pool_destroy(p);
        p = NULL;
    }
    if (helpers < 1) return NULL;
    p = pool_create(helpers);
    if (p && pthread_setspecific(pool_key, p) != 0) {
        pool_destroy(p);
        return NULL;
    }
    return p;
}

void brg__cpu_threads_release(void) {
    pthread_once(&key_once, key_create);
    if (!key_ok) return;
    pool *p = pthread_getspecific(pool_key);
    if (!p) return;
    pthread_setspecific(pool_key, NULL);
    pool_destroy(p);
}

int brg__cpu_pool_helpers(void) {
    pthread_once(&key_once, key_create);
    if (!key_ok) return 0;
    pool *p = pthread_getspecific(pool_key);
    return p ? p->helpers : 0;
}

/* Gives helpers 0 .. n - 1 at least `floats` floats of workspace; returns how many have it. */
static int grow_scratch(pool *p, int n, int64_t floats) {
    for (int i = 0; i < n; i++) {
        helper *h = &p->helper[i];
        if (h->scratch_floats >= floats) continue;
        float *s = brg__malloc((size_t)floats * sizeof(float));
        if (!s) return i;
        free(h->scratch);
        h->scratch = s;
        h->scratch_floats = floats;
    }
    return n;
}

void brg__cpu_parallel_scratch(int64_t pieces, brg__cpu_piece_fn fn, void *ctx, float *scratch,
                               int64_t scratch_floats) {
    if (pieces <= 0) return;
    /* pool_get also frees a pool the thread count no longer asks for. */
    pool *p = in_job ? NULL : pool_get();
    int allowed = 0;
    if (p && pieces > 1) {
        allowed = p->helpers < pieces - 1 ? p->helpers : (int)(pieces - 1);
        if (scratch_floats > 0) allowed = grow_scratch(p, allowed, scratch_floats);
    }
    if (allowed == 0) {
        int outer = in_job;
        in_job = 1;
        for (int64_t piece = 0; piece < pieces; piece++) fn(ctx, piece, scratch);
        in_job = outer;
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ctx = ctx;
    p->pieces = pieces;
    p->with_scratch = scratch_floats > 0;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->allowed = allowed + 1; /* helper indices start at 1 */
    p->open = 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    in_job = 1;
    run_pieces(p, scratch);
    in_job = 0;
    /* Every piece is claimed; wait for the helpers still running one, and keep late ones out. */
    pthread_mutex_lock(&p->lock);
    p->open = 0;
    while (p->inside > 0) pthread_cond_wait(&p->idle, &p->lock);
    p->fn = NULL;
    p->ctx = NULL;
    pthread_mutex_unlock(&p->lock);
}

void brg__cpu_parallel(int64_t pieces, brg__cpu_piece_fn fn, void *ctx) {
    brg__cpu_parallel_scratch(pieces, fn, ctx, NULL, 0);
}
