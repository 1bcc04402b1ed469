#include "config.h"
/* Unit tests for coroutine/: switching, stack pool, locks, misuse. */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "coroutine/coroutine.h"

/* ---- ping-pong ---- */

typedef struct {
    int in, out;
    bool finished;
} PingPong;

/* Square every value handed in until it is negative. */
static void coroutine_fn pingpong_entry(void *opaque)
{
    PingPong *pp = opaque;

    while (pp->in >= 0) {
        pp->out = pp->in * pp->in;
        co_yield();
    }
    pp->finished = true;
}

static void test_pingpong(void)
{
    PingPong pp = { 0 };
    Coroutine *co = co_create(pingpong_entry, &pp);

    g_assert_false(co_in_coroutine());
    for (int i = 0; i < 1000; i++) {
        pp.in = i;
        co_enter(co);
        g_assert_cmpint(pp.out, ==, i * i);
        g_assert_false(pp.finished);
        g_assert_false(co_is_entered(co));
    }
    pp.in = -1;
    co_enter(co);
    g_assert_true(pp.finished);
    g_assert_null(co_self());
}

/* ---- nesting ---- */

typedef struct {
    GString *log;
    Coroutine *outer, *inner;
} Nest;

static void coroutine_fn nest_inner(void *opaque)
{
    Nest *n = opaque;

    g_assert_true(co_self() == n->inner);
    g_assert_true(co_is_entered(n->outer));
    g_assert_true(co_is_entered(n->inner));
    g_string_append(n->log, "i1 ");
    co_yield();
    g_string_append(n->log, "i2 ");
}

static void coroutine_fn nest_outer(void *opaque)
{
    Nest *n = opaque;

    g_string_append(n->log, "o1 ");
    n->inner = co_create(nest_inner, n);
    co_enter(n->inner);
    g_assert_true(co_self() == n->outer);
    g_string_append(n->log, "o2 ");
    co_yield();
    g_string_append(n->log, "o3 ");
    co_enter(n->inner);
    g_string_append(n->log, "o4");
}

static void test_nesting(void)
{
    Nest n = { .log = g_string_new("") };

    n.outer = co_create(nest_outer, &n);
    co_enter(n.outer);
    g_string_append(n.log, "m ");
    co_enter(n.outer);
    g_assert_cmpstr(n.log->str, ==, "o1 i1 o2 m o3 i2 o4");
    g_string_free(n.log, TRUE);
}

/* ---- many coroutines alive at once ---- */

#define MANY 100000

static void coroutine_fn many_entry(void *opaque)
{
    int *alive = opaque;

    (*alive)++;
    co_yield();
    (*alive)--;
}

/* Kernel mappings of this process, from /proc/self/maps. */
static long count_maps(void)
{
    char *buf = NULL;
    long n = 0;

    g_assert_true(g_file_get_contents("/proc/self/maps", &buf, NULL, NULL));
    for (char *p = buf; *p; p++) {
        n += *p == '\n';
    }
    g_free(buf);
    return n;
}

static long read_max_map_count(void)
{
    char *buf = NULL;
    long v = 65530;

    if (g_file_get_contents("/proc/sys/vm/max_map_count", &buf, NULL, NULL)) {
        v = strtol(buf, NULL, 10);
        g_free(buf);
    }
    return v;
}

/*
 * Make sure MANY stacks fit in the map-count limit: with VMA-free guard
 * regions they always do; with mprotect guards (old kernels) try to raise
 * the limit (needs root).  Returns false if impossible.
 */
static bool ensure_map_budget(Coroutine **cos, int *alive)
{
    long before = count_maps(), per64, need;
    FILE *f;

    for (int i = 0; i < 64; i++) {
        cos[i] = co_create(many_entry, alive);
        co_enter(cos[i]);
    }
    per64 = count_maps() - before;
    need = before + per64 * (MANY / 64 + 1) + 4096;
    if (need <= read_max_map_count()) {
        return true;
    }
    f = fopen("/proc/sys/vm/max_map_count", "w");
    if (f) {
        fprintf(f, "%ld\n", need);
        fclose(f);
    }
    return need <= read_max_map_count();
}

static void test_many(void)
{
    size_t saved = co_get_stack_size();
    Coroutine **cos = g_new0(Coroutine *, MANY);
    int alive = 0;

    co_set_stack_size(64 * 1024);
    g_assert_cmpuint(co_get_stack_size(), ==, 64 * 1024);
    if (!ensure_map_budget(cos, &alive)) {
        g_test_skip("vm.max_map_count too low for guarded stacks "
                    "and cannot be raised (not root)");
    } else {
        for (int i = 64; i < MANY; i++) {
            cos[i] = co_create(many_entry, &alive);
            co_enter(cos[i]);
        }
        g_assert_cmpint(alive, ==, MANY);
    }
    for (int i = 0; i < MANY && cos[i]; i++) {
        g_assert_false(co_is_entered(cos[i]));
        co_enter(cos[i]);
    }
    g_assert_cmpint(alive, ==, 0);
    g_assert_cmpuint(co_pool_cached(), <=, 256);
    co_set_stack_size(saved);
    g_free(cos);
}

/* ---- stack pool reuse ---- */

static void coroutine_fn addr_entry(void *opaque)
{
    char marker;

    *(uintptr_t *)opaque = (uintptr_t)&marker;
}

static void test_pool_reuse(void)
{
    uintptr_t a1 = 0, a2 = 0;
    size_t cached;

    co_enter(co_create(addr_entry, &a1));
    cached = co_pool_cached();
    g_assert_cmpuint(cached, >=, 1);
    co_enter(co_create(addr_entry, &a2));
    g_assert_cmpuint(co_pool_cached(), ==, cached);
    g_assert_true(a1 == a2);        /* same stack, same frame position */

    /* A create takes a cached stack; finishing gives it back. */
    Coroutine *co = co_create(addr_entry, &a2);
    g_assert_cmpuint(co_pool_cached(), ==, cached - 1);
    co_enter(co);
    g_assert_cmpuint(co_pool_cached(), ==, cached);
}

static void test_stack_size(void)
{
    size_t saved = co_get_stack_size();

    g_assert_cmpuint(saved, >=, 64 * 1024);
    co_set_stack_size(1000);
    g_assert_cmpuint(co_get_stack_size(), ==, 64 * 1024);
    co_set_stack_size(300 * 1024 + 1);
    g_assert_cmpuint(co_get_stack_size(), >=, 300 * 1024 + 1);
    g_assert_cmpuint(co_get_stack_size() % 4096, ==, 0);
    co_set_stack_size(saved);
}

/* ---- co_wake_later ---- */

typedef struct {
    GString *log;
    Coroutine *a, *b;
} Wake;

static void coroutine_fn wake_b(void *opaque)
{
    Wake *w = opaque;

    g_string_append(w->log, "b ");
}

static void coroutine_fn wake_a(void *opaque)
{
    Wake *w = opaque;

    co_wake_later(w->b);
    co_wake_later(w->b);            /* duplicate request is ignored */
    g_string_append(w->log, "a1 ");
    co_yield();
    g_string_append(w->log, "a2 ");
}

static void test_wake_later(void)
{
    Wake w = { .log = g_string_new("") };

    w.a = co_create(wake_a, &w);
    w.b = co_create(wake_b, &w);
    co_enter(w.a);
    g_string_append(w.log, "m ");
    co_enter(w.a);
    g_assert_cmpstr(w.log->str, ==, "a1 b m a2 ");
    g_string_free(w.log, TRUE);
}

/* ---- CoMutex ---- */

typedef struct {
    CoMutex m;
    GArray *order;
    int id;
} MutexCtx;

typedef struct {
    MutexCtx *ctx;
    int id;
} MutexArg;

static void coroutine_fn mutex_holder(void *opaque)
{
    MutexCtx *c = opaque;

    co_mutex_lock(&c->m);
    co_yield();
    co_mutex_unlock(&c->m);
}

static void coroutine_fn mutex_contender(void *opaque)
{
    MutexArg *a = opaque;

    co_mutex_lock(&a->ctx->m);
    g_array_append_val(a->ctx->order, a->id);
    co_yield();
    co_mutex_unlock(&a->ctx->m);
}

static void test_mutex_fifo(void)
{
    MutexCtx c = { .order = g_array_new(FALSE, FALSE, sizeof(int)) };
    MutexArg args[6];
    Coroutine *holder, *cos[6];

    co_mutex_init(&c.m);
    holder = co_create(mutex_holder, &c);
    co_enter(holder);
    g_assert_true(co_mutex_is_locked(&c.m));
    for (int i = 0; i < 6; i++) {
        args[i] = (MutexArg){ &c, i };
        cos[i] = co_create(mutex_contender, &args[i]);
        co_enter(cos[i]);           /* blocks: the holder has the lock */
    }
    g_assert_cmpuint(c.order->len, ==, 0);
    co_enter(holder);               /* unlock hands over to waiter 0 */
    for (int i = 0; i < 6; i++) {
        g_assert_cmpuint(c.order->len, ==, i + 1);
        g_assert_cmpint(g_array_index(c.order, int, i), ==, i);
        co_enter(cos[i]);           /* unlock: hands over to waiter i+1 */
    }
    g_assert_false(co_mutex_is_locked(&c.m));
    g_array_free(c.order, TRUE);
}

static void coroutine_fn mutex_barger(void *opaque)
{
    MutexArg *a = opaque;

    /* Lock was just handed to a waiter: must not be taken over. */
    co_mutex_lock(&a->ctx->m);
    g_array_append_val(a->ctx->order, a->id);
    co_mutex_unlock(&a->ctx->m);
}

static void coroutine_fn mutex_releaser(void *opaque)
{
    MutexArg *a = opaque;

    co_mutex_lock(&a->ctx->m);
    co_yield();
    co_mutex_unlock(&a->ctx->m);
    co_enter(co_create(mutex_barger, a + 1));
}

static void test_mutex_no_barging(void)
{
    MutexCtx c = { .order = g_array_new(FALSE, FALSE, sizeof(int)) };
    MutexArg args[3] = { { &c, 0 }, { &c, 2 }, { &c, 1 } };
    Coroutine *rel, *waiter;

    co_mutex_init(&c.m);
    rel = co_create(mutex_releaser, &args[0]);
    co_enter(rel);
    waiter = co_create(mutex_barger, &args[2]);
    co_enter(waiter);
    co_enter(rel);
    g_assert_cmpuint(c.order->len, ==, 2);
    g_assert_cmpint(g_array_index(c.order, int, 0), ==, 1);
    g_assert_cmpint(g_array_index(c.order, int, 1), ==, 2);
    g_assert_false(co_mutex_is_locked(&c.m));
    g_array_free(c.order, TRUE);
}

/* A long hand-off chain must not nest coroutine entries on the stack. */
static void coroutine_fn mutex_chain_entry(void *opaque)
{
    MutexCtx *c = opaque;

    co_mutex_lock(&c->m);
    c->id++;
    co_mutex_unlock(&c->m);
}

static void test_mutex_long_chain(void)
{
    MutexCtx c = { 0 };
    Coroutine *holder;

    co_mutex_init(&c.m);
    holder = co_create(mutex_holder, &c);
    co_enter(holder);
    for (int i = 0; i < 20000; i++) {
        co_enter(co_create(mutex_chain_entry, &c));
    }
    g_assert_cmpint(c.id, ==, 0);
    co_enter(holder);
    g_assert_cmpint(c.id, ==, 20000);
    g_assert_false(co_mutex_is_locked(&c.m));
}

/* ---- CoQueue ---- */

typedef struct {
    CoQueue q;
    GArray *order;
} QueueCtx;

typedef struct {
    QueueCtx *ctx;
    int id;
} QueueArg;

static void coroutine_fn queue_waiter(void *opaque)
{
    QueueArg *a = opaque;

    co_queue_wait(&a->ctx->q, NULL);
    g_array_append_val(a->ctx->order, a->id);
}

static void coroutine_fn queue_restarter(void *opaque)
{
    QueueCtx *c = opaque;
    int marker = -1;

    co_queue_restart_all(&c->q);
    g_array_append_val(c->order, marker);   /* waiters run after we end */
}

static void test_queue_order(void)
{
    QueueCtx c = { .order = g_array_new(FALSE, FALSE, sizeof(int)) };
    QueueArg args[8];

    co_queue_init(&c.q);
    g_assert_true(co_queue_empty(&c.q));
    g_assert_false(co_queue_next(&c.q));
    for (int i = 0; i < 8; i++) {
        args[i] = (QueueArg){ &c, i };
        co_enter(co_create(queue_waiter, &args[i]));
    }
    g_assert_false(co_queue_empty(&c.q));
    g_assert_true(co_queue_next(&c.q));     /* outside: runs at once */
    g_assert_true(co_queue_next(&c.q));
    g_assert_cmpuint(c.order->len, ==, 2);
    co_enter(co_create(queue_restarter, &c));
    g_assert_true(co_queue_empty(&c.q));
    g_assert_cmpuint(c.order->len, ==, 9);
    g_assert_cmpint(g_array_index(c.order, int, 0), ==, 0);
    g_assert_cmpint(g_array_index(c.order, int, 1), ==, 1);
    g_assert_cmpint(g_array_index(c.order, int, 2), ==, -1);
    for (int i = 3; i < 9; i++) {
        g_assert_cmpint(g_array_index(c.order, int, i), ==, i - 1);
    }
    g_array_free(c.order, TRUE);
}

/* co_queue_wait() drops the mutex while asleep and retakes it after. */
typedef struct {
    CoQueue q;
    CoMutex m;
    bool ready;
    int seen;
} CondCtx;

static void coroutine_fn cond_consumer(void *opaque)
{
    CondCtx *c = opaque;

    co_mutex_lock(&c->m);
    while (!c->ready) {
        co_queue_wait(&c->q, &c->m);
    }
    g_assert_true(c->m.holder == co_self());
    c->seen++;
    co_mutex_unlock(&c->m);
}

static void coroutine_fn cond_producer(void *opaque)
{
    CondCtx *c = opaque;

    co_mutex_lock(&c->m);           /* free: consumers released it */
    c->ready = true;
    co_queue_restart_all(&c->q);
    co_mutex_unlock(&c->m);
}

static void test_queue_with_mutex(void)
{
    CondCtx c = { 0 };

    co_queue_init(&c.q);
    co_mutex_init(&c.m);
    for (int i = 0; i < 3; i++) {
        co_enter(co_create(cond_consumer, &c));
    }
    g_assert_false(co_mutex_is_locked(&c.m));
    g_assert_cmpint(c.seen, ==, 0);
    co_enter(co_create(cond_producer, &c));
    g_assert_cmpint(c.seen, ==, 3);
    g_assert_false(co_mutex_is_locked(&c.m));
}

/* ---- CoRwLock ---- */

typedef struct {
    CoRwLock l;
    int readers_in, writers_in, max_readers;
    GString *log;
} RwCtx;

typedef struct {
    RwCtx *ctx;
    bool writer;
    char name;
} RwArg;

/* Take the lock, check exclusion, hold it across one yield, release. */
static void coroutine_fn rw_entry(void *opaque)
{
    RwArg *a = opaque;
    RwCtx *c = a->ctx;

    (a->writer ? co_rwlock_wrlock : co_rwlock_rdlock)(&c->l);
    g_string_append_c(c->log, a->name);
    if (a->writer) {
        g_assert_cmpint(c->readers_in + c->writers_in, ==, 0);
        c->writers_in++;
    } else {
        g_assert_cmpint(c->writers_in, ==, 0);
        c->readers_in++;
        c->max_readers = MAX(c->max_readers, c->readers_in);
    }
    co_yield();
    *(a->writer ? &c->writers_in : &c->readers_in) -= 1;
    co_rwlock_unlock(&c->l);
}

static void test_rwlock(void)
{
    RwCtx c = { .log = g_string_new("") };
    /* r r W r W r r: the first W waits for two readers, blocks the rest */
    RwArg args[] = {
        { &c, false, 'a' }, { &c, false, 'b' }, { &c, true, 'W' },
        { &c, false, 'c' }, { &c, true, 'X' }, { &c, false, 'd' },
        { &c, false, 'e' },
    };
    enum { N = G_N_ELEMENTS(args) };
    Coroutine *cos[N];

    co_rwlock_init(&c.l);
    for (int i = 0; i < N; i++) {
        cos[i] = co_create(rw_entry, &args[i]);
        co_enter(cos[i]);
    }
    g_assert_cmpstr(c.log->str, ==, "ab");
    g_assert_cmpint(c.max_readers, ==, 2);
    co_enter(cos[0]);
    g_assert_cmpstr(c.log->str, ==, "ab");      /* b still reads */
    co_enter(cos[1]);
    g_assert_cmpstr(c.log->str, ==, "abW");
    co_enter(cos[2]);
    g_assert_cmpstr(c.log->str, ==, "abWc");
    co_enter(cos[3]);
    g_assert_cmpstr(c.log->str, ==, "abWcX");
    co_enter(cos[4]);
    g_assert_cmpstr(c.log->str, ==, "abWcXde");
    g_assert_cmpint(c.readers_in, ==, 2);
    co_enter(cos[5]);
    co_enter(cos[6]);
    g_assert_cmpint(c.readers_in + c.writers_in, ==, 0);
    g_assert_false(c.l.writer);
    g_assert_cmpint(c.l.readers, ==, 0);
    g_string_free(c.log, TRUE);
}

/* ---- threads: "current" is per thread ---- */

static void coroutine_fn thread_co(void *opaque)
{
    *(Coroutine **)opaque = co_self();
    co_yield();
}

static gpointer thread_fn(gpointer data)
{
    Coroutine *seen = NULL, *co = co_create(thread_co, &seen);

    co_enter(co);
    g_assert_true(seen == co);
    g_assert_null(co_self());
    co_enter(co);
    return GINT_TO_POINTER(co_pool_cached() >= 1);
}

static void test_threads(void)
{
    GThread *t[2];

    for (int i = 0; i < 2; i++) {
        t[i] = g_thread_new("co", thread_fn, NULL);
    }
    for (int i = 0; i < 2; i++) {
        g_assert_true(g_thread_join(t[i]) != NULL);
    }
}

/* ---- misuse aborts (checked in subprocesses) ---- */

static void coroutine_fn self_enter(void *opaque)
{
    co_enter(co_self());
}

static void coroutine_fn enter_caller_inner(void *opaque)
{
    co_enter(opaque);               /* our caller is still entered */
}

static void coroutine_fn enter_caller_outer(void *opaque)
{
    co_enter(co_create(enter_caller_inner, co_self()));
}

static void coroutine_fn recurse(void *opaque)
{
    volatile char pad[512];
    int depth = GPOINTER_TO_INT(opaque);

    pad[0] = (char)depth;
    pad[511] = pad[0];
    if (depth < G_MAXINT / 2) {
        recurse(GINT_TO_POINTER(depth + pad[511] + 1));
    }
    pad[1] = 0;                     /* defeat tail-call elimination */
}

/* Run @misuse in a child process; the child must die, printing @pattern. */
static void run_misuse(void (*misuse)(void), const char *pattern)
{
    if (g_test_subprocess()) {
        struct rlimit no_core = { 0, 0 };

        setrlimit(RLIMIT_CORE, &no_core);
        misuse();
        exit(0);                    /* surviving the misuse is a failure */
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    if (pattern) {
        g_test_trap_assert_stderr(pattern);
    }
}

static void misuse_yield(void)
{
    co_yield();
}

static void misuse_self(void)
{
    co_enter(co_create(self_enter, NULL));
}

static void misuse_caller(void)
{
    co_enter(co_create(enter_caller_outer, NULL));
}

static void misuse_overflow(void)
{
    co_set_stack_size(64 * 1024);
    co_enter(co_create(recurse, NULL));
}

static void test_misuse_yield(void)
{
    run_misuse(misuse_yield, "*outside coroutine*");
}

static void test_misuse_reenter_self(void)
{
    run_misuse(misuse_self, "*already entered*");
}

static void test_misuse_enter_caller(void)
{
    run_misuse(misuse_caller, "*already entered*");
}

static void test_stack_overflow(void)
{
    run_misuse(misuse_overflow, NULL);  /* SIGSEGV on the guard page */
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/coroutine/pingpong", test_pingpong);
    g_test_add_func("/coroutine/nesting", test_nesting);
    g_test_add_func("/coroutine/wake-later", test_wake_later);
    g_test_add_func("/coroutine/pool-reuse", test_pool_reuse);
    g_test_add_func("/coroutine/stack-size", test_stack_size);
    g_test_add_func("/coroutine/many", test_many);
    g_test_add_func("/coroutine/threads", test_threads);
    g_test_add_func("/coroutine/mutex/fifo", test_mutex_fifo);
    g_test_add_func("/coroutine/mutex/no-barging", test_mutex_no_barging);
    g_test_add_func("/coroutine/mutex/long-chain", test_mutex_long_chain);
    g_test_add_func("/coroutine/queue/order", test_queue_order);
    g_test_add_func("/coroutine/queue/with-mutex", test_queue_with_mutex);
    g_test_add_func("/coroutine/rwlock", test_rwlock);
    g_test_add_func("/coroutine/misuse/yield", test_misuse_yield);
    g_test_add_func("/coroutine/misuse/reenter-self", test_misuse_reenter_self);
    g_test_add_func("/coroutine/misuse/enter-caller", test_misuse_enter_caller);
    g_test_add_func("/coroutine/misuse/stack-overflow", test_stack_overflow);
    return g_test_run();
}
