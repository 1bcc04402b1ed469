#include "config.h"
/*
 * Per-thread coroutine stack pool.
 *
 * Stacks are carved out of slabs: one mmap() holds SLAB_SLOTS stacks, each
 * with an inaccessible guard region below it.  The guard is installed with
 * MADV_GUARD_INSTALL when the kernel has it (Linux >= 6.13), which does not
 * split the mapping, so a slab costs one kernel VMA no matter how many
 * stacks it holds; 100 000 live coroutines then fit well under the default
 * vm.max_map_count.  Older kernels fall back to mprotect(PROT_NONE), which
 * costs two VMAs per stack.
 *
 * Freed stacks are kept in a small per-thread cache (still populated, so a
 * new coroutine starts on warm memory).  Beyond the cache cap a stack's
 * pages are dropped and the slot returns to its slab; an empty slab is
 * unmapped.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "coroutine/coroutine-int.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define SLAB_SLOTS 16
#define POOL_MAX_CACHED 256
#define GUARD_BYTES (64 * 1024)
#define STACK_MIN (64 * 1024)
#define STACK_DEFAULT (1024 * 1024)

struct CoSlab {
    char *mem;
    size_t len;
    size_t stack_size;
    unsigned used;
    bool listed;                /* on the pool's list of slabs with room */
    CoStack *free;
    CoSlab *prev, *next;
    CoStack slots[SLAB_SLOTS];
};

typedef struct CoPool {
    CoStack *cached;
    size_t ncached;
    CoSlab *partial;            /* slabs with at least one free slot */
    bool registered;
} CoPool;

enum { GUARD_UNKNOWN, GUARD_MADVISE, GUARD_MPROTECT };

static __thread CoPool pool;
static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static int guard_mode = GUARD_UNKNOWN;
static size_t stack_size = STACK_DEFAULT;

void co_die(const char *msg)
{
    fprintf(stderr, "strata: coroutine: %s\n", msg);
    fflush(stderr);
    abort();
}

static size_t page_size(void)
{
    static size_t ps;

    if (!ps) {
        ps = (size_t)sysconf(_SC_PAGESIZE);
    }
    return ps;
}

void co_set_stack_size(size_t bytes)
{
    size_t ps = page_size();

    if (bytes < STACK_MIN) {
        bytes = STACK_MIN;
    }
    bytes = (bytes + ps - 1) & ~(ps - 1);
    __atomic_store_n(&stack_size, bytes, __ATOMIC_RELAXED);
}

size_t co_get_stack_size(void)
{
    return __atomic_load_n(&stack_size, __ATOMIC_RELAXED);
}

size_t co_pool_cached(void)
{
    return pool.ncached;
}

/* Make [p, p+len) fault on any access, preferring a VMA-free guard. */
static void install_guard(char *p, size_t len)
{
    int mode = __atomic_load_n(&guard_mode, __ATOMIC_RELAXED);

    if (mode != GUARD_MPROTECT) {
        if (madvise(p, len, MADV_GUARD_INSTALL) == 0) {
            __atomic_store_n(&guard_mode, GUARD_MADVISE, __ATOMIC_RELAXED);
            return;
        }
        if (mode == GUARD_MADVISE) {
            co_die("madvise(MADV_GUARD_INSTALL) failed on a fresh slab");
        }
        __atomic_store_n(&guard_mode, GUARD_MPROTECT, __ATOMIC_RELAXED);
    }
    if (mprotect(p, len, PROT_NONE) != 0) {
        co_die("cannot protect stack guard page (vm.max_map_count?)");
    }
}

static void partial_link(CoSlab *s)
{
    s->prev = NULL;
    s->next = pool.partial;
    if (pool.partial) {
        pool.partial->prev = s;
    }
    pool.partial = s;
    s->listed = true;
}

static void partial_unlink(CoSlab *s)
{
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        pool.partial = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    }
    s->prev = s->next = NULL;
    s->listed = false;
}

/* Map a new slab of SLAB_SLOTS guarded stacks and put it on the list. */
static CoSlab *slab_new(size_t size)
{
    size_t stride = GUARD_BYTES + size;
    CoSlab *s = g_new0(CoSlab, 1);

    s->len = stride * SLAB_SLOTS;
    s->stack_size = size;
    s->mem = mmap(NULL, s->len, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (s->mem == MAP_FAILED) {
        co_die("cannot mmap coroutine stacks");
    }
    madvise(s->mem, s->len, MADV_NOHUGEPAGE);
    for (int i = SLAB_SLOTS - 1; i >= 0; i--) {
        CoStack *st = &s->slots[i];
        install_guard(s->mem + i * stride, GUARD_BYTES);
        st->slab = s;
        st->base = s->mem + i * stride + GUARD_BYTES;
        st->size = size;
        st->next = s->free;
        s->free = st;
    }
    partial_link(s);
    return s;
}

/* Give a stack back to its slab: drop its pages, unmap an empty slab. */
static void slab_give(CoStack *st)
{
    CoSlab *s = st->slab;

    madvise(st->base, st->size, MADV_DONTNEED);
    st->next = s->free;
    s->free = st;
    s->used--;
    if (s->used == 0) {
        if (s->listed) {
            partial_unlink(s);
        }
        munmap(s->mem, s->len);
        g_free(s);
    } else if (!s->listed) {
        partial_link(s);
    }
}

/* Take a free slot from a slab on the list that has the right stack size. */
static CoStack *slab_take(size_t size)
{
    CoSlab *s = pool.partial;
    CoStack *st;

    while (s && s->stack_size != size) {
        s = s->next;
    }
    if (!s) {
        s = slab_new(size);
    }
    st = s->free;
    s->free = st->next;
    s->used++;
    if (!s->free) {
        partial_unlink(s);
    }
    st->next = NULL;
    return st;
}

/* Thread exit: release the cached stacks (live coroutines are leaked). */
static void pool_destroy(void *unused)
{
    while (pool.cached) {
        CoStack *st = pool.cached;
        pool.cached = st->next;
        pool.ncached--;
        slab_give(st);
    }
}

static void pool_key_init(void)
{
    pthread_key_create(&pool_key, pool_destroy);
}

/* Arrange for pool_destroy() to run when this thread exits. */
static void pool_register(void)
{
    pthread_once(&pool_once, pool_key_init);
    pthread_setspecific(pool_key, &pool);
    pool.registered = true;
}

CoStack *co_stack_alloc(size_t size)
{
    if (G_UNLIKELY(!pool.registered)) {
        pool_register();
    }
    while (pool.cached) {
        CoStack *st = pool.cached;
        pool.cached = st->next;
        pool.ncached--;
        if (st->size == size) {
            st->next = NULL;
            return st;
        }
        slab_give(st);      /* stale size after co_set_stack_size() */
    }
    return slab_take(size);
}

void co_stack_free(CoStack *st)
{
    if (pool.ncached < POOL_MAX_CACHED && st->size == co_get_stack_size()) {
        st->next = pool.cached;
        pool.cached = st;
        pool.ncached++;
        return;
    }
    slab_give(st);
}
