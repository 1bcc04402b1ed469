#include "config.h"
/* Event loop and worker pool tests. */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>
#include <glib.h>

#include "util/aio.h"
#include "util/aio-internal.h"
#include "util/cutils.h"
#include "tests/unit/test-co.h"

#define MS (1000 * 1000LL)

/* Generic callback: count invocations. */
static void count_cb(void *opaque)
{
    (*(int *)opaque)++;
}

/* Several schedules before a poll run the BH once. */
static void test_bh_once(void)
{
    AioContext *ctx = aio_get_default();
    int count = 0;
    AioBH *bh = aio_bh_new(ctx, count_cb, &count);

    aio_bh_schedule(bh);
    aio_bh_schedule(bh);
    aio_bh_schedule(bh);
    while (aio_poll(ctx, false)) {
    }
    g_assert_cmpint(count, ==, 1);
    aio_bh_schedule(bh);
    g_assert_true(aio_poll(ctx, true));
    while (aio_poll(ctx, false)) {
    }
    g_assert_cmpint(count, ==, 2);
    aio_bh_delete(bh);
}

/* Cancelled and deleted BHs do not run. */
static void test_bh_cancel(void)
{
    AioContext *ctx = aio_get_default();
    int count = 0;
    AioBH *bh = aio_bh_new(ctx, count_cb, &count);

    aio_bh_schedule(bh);
    aio_bh_cancel(bh);
    while (aio_poll(ctx, false)) {
    }
    g_assert_cmpint(count, ==, 0);
    aio_bh_schedule(bh);
    aio_bh_delete(bh);
    while (aio_poll(ctx, false)) {
    }
    g_assert_cmpint(count, ==, 0);
}

/* Each oneshot schedule runs once. */
static void test_bh_oneshot(void)
{
    AioContext *ctx = aio_get_default();
    int count = 0;

    aio_bh_schedule_oneshot(ctx, count_cb, &count);
    aio_bh_schedule_oneshot(ctx, count_cb, &count);
    AIO_WAIT_WHILE(ctx, count < 2);
    while (aio_poll(ctx, false)) {
    }
    g_assert_cmpint(count, ==, 2);
}

/* A BH that reschedules itself must not starve the loop. */
static void resched_cb(void *opaque)
{
    int *count = opaque;

    if (++*count < 1000) {
        aio_bh_schedule_oneshot(aio_get_default(), resched_cb, opaque);
    }
}

/* A self-rescheduling BH runs once per poll, then to completion. */
static void test_bh_resched(void)
{
    AioContext *ctx = aio_get_default();
    int count = 0;

    aio_bh_schedule_oneshot(ctx, resched_cb, &count);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(count, ==, 1);
    AIO_WAIT_WHILE(ctx, count < 1000);
}

typedef struct TimerRec {
    int id;
    int64_t expire;
    int64_t fired_at;
    int *order;
    int *n;
} TimerRec;

/* Record firing time and order. */
static void timer_cb(void *opaque)
{
    TimerRec *r = opaque;

    r->fired_at = clock_ns();
    r->order[(*r->n)++] = r->id;
}

/* Timers fire in expiry order and never early. */
static void test_timers(void)
{
    AioContext *ctx = aio_get_default();
    static const int delays_ms[] = { 30, 10, 20, 5, 10 };
    int order[5], n = 0;
    TimerRec recs[5];
    AioTimer *t[5];
    int64_t now = clock_ns();

    for (int i = 0; i < 5; i++) {
        recs[i] = (TimerRec) { i, now + delays_ms[i] * MS, 0, order, &n };
        t[i] = aio_timer_new(ctx, timer_cb, &recs[i]);
        aio_timer_mod(t[i], recs[i].expire);
        g_assert_true(aio_timer_pending(t[i]));
    }
    AIO_WAIT_WHILE(ctx, n < 5);
    /* expiry order, ties in arming order */
    g_assert_cmpint(order[0], ==, 3);
    g_assert_cmpint(order[1], ==, 1);
    g_assert_cmpint(order[2], ==, 4);
    g_assert_cmpint(order[3], ==, 2);
    g_assert_cmpint(order[4], ==, 0);
    for (int i = 0; i < 5; i++) {
        g_assert_cmpint(recs[i].fired_at, >=, recs[i].expire);
        g_assert_false(aio_timer_pending(t[i]));
        aio_timer_free(t[i]);
    }
}

/* Deleted timers do not fire; re-arming replaces the deadline. */
static void test_timer_del(void)
{
    AioContext *ctx = aio_get_default();
    int count = 0;
    AioTimer *t = aio_timer_new(ctx, count_cb, &count);
    AioTimer *t2 = aio_timer_new(ctx, count_cb, &count);

    aio_timer_mod(t, clock_ns() + 5 * MS);
    aio_timer_mod(t2, clock_ns() + 15 * MS);
    aio_timer_del(t);
    g_assert_false(aio_timer_pending(t));
    AIO_WAIT_WHILE(ctx, aio_timer_pending(t2));
    g_assert_cmpint(count, ==, 1);
    /* re-arming moves the timer */
    aio_timer_mod(t, clock_ns() + 1000 * MS);
    aio_timer_mod(t, clock_ns() + 1 * MS);
    AIO_WAIT_WHILE(ctx, aio_timer_pending(t));
    g_assert_cmpint(count, ==, 2);
    aio_timer_free(t);
    aio_timer_free(t2);
}

typedef struct PipeState {
    int fds[2];
    int reads;
    int writes;
} PipeState;

/* Consume one byte per readiness callback. */
static void pipe_read_cb(void *opaque)
{
    PipeState *p = opaque;
    char c;

    g_assert_cmpint(read(p->fds[0], &c, 1), ==, 1);
    p->reads++;
}

/* Writable once: count it and stop watching. */
static void pipe_write_cb(void *opaque)
{
    PipeState *p = opaque;

    p->writes++;
    aio_set_fd_handler(aio_get_default(), p->fds[1], NULL, NULL, NULL);
}

/* Level-triggered read/write handlers on a pipe; removal works. */
static void test_fd_handler(void)
{
    AioContext *ctx = aio_get_default();
    PipeState p = { 0 };

    g_assert_cmpint(pipe(p.fds), ==, 0);
    aio_set_fd_handler(ctx, p.fds[0], pipe_read_cb, NULL, &p);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(write(p.fds[1], "ab", 2), ==, 2);
    /* level-triggered: two bytes, one read per callback: fires twice */
    AIO_WAIT_WHILE(ctx, p.reads < 2);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(p.reads, ==, 2);
    aio_set_fd_handler(ctx, p.fds[1], NULL, pipe_write_cb, &p);
    AIO_WAIT_WHILE(ctx, p.writes < 1);
    aio_set_fd_handler(ctx, p.fds[0], NULL, NULL, NULL);
    g_assert_cmpint(write(p.fds[1], "c", 1), ==, 1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(p.reads, ==, 2);
    close(p.fds[0]);
    close(p.fds[1]);
}

typedef struct ThreadArg {
    AioContext *ctx;
    Coroutine *co;
    int count;
    int64_t sent_at;
} ThreadArg;

/* Wake the main loop from another thread after a delay. */
static gpointer notify_thread(gpointer opaque)
{
    ThreadArg *a = opaque;

    g_usleep(30 * 1000);
    a->sent_at = clock_ns();
    aio_notify(a->ctx);
    return NULL;
}

/* A blocking aio_poll is woken by aio_notify from another thread. */
static void test_notify_cross_thread(void)
{
    AioContext *ctx = aio_get_default();
    ThreadArg a = { .ctx = ctx };
    int64_t start;
    GThread *th;

    while (aio_poll(ctx, false)) {
    }
    start = clock_ns();
    th = g_thread_new("notify", notify_thread, &a);
    /* nothing else can wake us: the notify must */
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(clock_ns() - start, >=, 25 * MS);
    g_thread_join(th);
}

/* Schedule a oneshot BH from another thread after a delay. */
static gpointer oneshot_thread(gpointer opaque)
{
    ThreadArg *a = opaque;

    g_usleep(20 * 1000);
    aio_bh_schedule_oneshot(a->ctx, count_cb, &a->count);
    return NULL;
}

/* A oneshot BH from another thread wakes the blocking loop. */
static void test_oneshot_cross_thread(void)
{
    AioContext *ctx = aio_get_default();
    ThreadArg a = { .ctx = ctx };
    GThread *th = g_thread_new("oneshot", oneshot_thread, &a);

    AIO_WAIT_WHILE(ctx, a.count == 0);
    g_assert_cmpint(a.count, ==, 1);
    g_thread_join(th);
}

/* Schedule the coroutine from another thread after a delay. */
static gpointer co_schedule_thread(gpointer opaque)
{
    ThreadArg *a = opaque;

    g_usleep(20 * 1000);
    aio_co_schedule(a->ctx, a->co);
    return NULL;
}

typedef struct CoSchedState {
    pthread_t main_thread;
    bool resumed_on_main;
    int stage;
} CoSchedState;

/* Yield once; record on which thread we were resumed. */
static void coroutine_fn co_sched_entry(void *opaque)
{
    CoSchedState *s = opaque;

    s->stage = 1;
    co_yield();
    s->resumed_on_main = pthread_equal(pthread_self(), s->main_thread);
    s->stage = 2;
}

/* aio_co_schedule from another thread resumes on the loop thread. */
static void test_co_schedule_cross_thread(void)
{
    AioContext *ctx = aio_get_default();
    CoSchedState s = { .main_thread = pthread_self() };
    ThreadArg a = { .ctx = ctx, .co = co_create(co_sched_entry, &s) };
    GThread *th;

    co_enter(a.co);
    g_assert_cmpint(s.stage, ==, 1);
    th = g_thread_new("co-schedule", co_schedule_thread, &a);
    AIO_WAIT_WHILE(ctx, s.stage < 2);
    g_assert_true(s.resumed_on_main);
    g_thread_join(th);
}

/* Measure one co_sleep_ns. */
static void coroutine_fn sleep_entry(void *opaque)
{
    int64_t *elapsed = opaque;
    int64_t start = clock_ns();

    co_sleep_ns(20 * MS);
    *elapsed = clock_ns() - start;
}

/* co_sleep_ns sleeps at least the requested time. */
static void test_co_sleep(void)
{
    int64_t elapsed = 0;

    run_in_coroutine(sleep_entry, &elapsed);
    g_assert_cmpint(elapsed, >=, 20 * MS);
    g_assert_cmpint(elapsed, <, 2000 * MS);
}

/* Yield to the loop three times. */
static void coroutine_fn yield_loop_entry(void *opaque)
{
    int *steps = opaque;

    for (int i = 0; i < 3; i++) {
        (*steps)++;
        co_yield_to_loop();
    }
}

/* co_yield_to_loop returns to the caller and resumes from the loop. */
static void test_co_yield_to_loop(void)
{
    AioContext *ctx = aio_get_default();
    int steps = 0;
    Coroutine *co = co_create(yield_loop_entry, &steps);

    co_enter(co);
    g_assert_cmpint(steps, ==, 1);       /* yielded back to us */
    AIO_WAIT_WHILE(ctx, steps < 3);
    while (aio_poll(ctx, false)) {
    }
    g_assert_cmpint(steps, ==, 3);
}

typedef struct PoolArg {
    pthread_t caller;
    bool off_main;
    int value;
} PoolArg;

/* Worker function: note the thread, return a derived value. */
static int pool_fn(void *opaque)
{
    PoolArg *p = opaque;

    p->off_main = !pthread_equal(pthread_self(), p->caller);
    g_usleep(1000);
    return p->value * 2;
}

/* Run pool_fn on the pool and check its return value. */
static void coroutine_fn pool_entry(void *opaque)
{
    PoolArg *p = opaque;
    int r = thread_pool_run(aio_get_default(), pool_fn, p);

    g_assert_cmpint(r, ==, p->value * 2);
    p->value = -1;
}

/* 100 concurrent jobs: right values, all off the main thread. */
static void test_thread_pool(void)
{
    AioContext *ctx = aio_get_default();
    enum { N = 100 };
    PoolArg args[N];
    int left;

    for (int i = 0; i < N; i++) {
        args[i] = (PoolArg) { .caller = pthread_self(), .value = i + 1 };
        co_enter(co_create(pool_entry, &args[i]));
    }
    do {
        left = 0;
        for (int i = 0; i < N; i++) {
            left += args[i].value != -1;
        }
        if (left) {
            aio_poll(ctx, true);
        }
    } while (left);
    for (int i = 0; i < N; i++) {
        g_assert_true(args[i].off_main);
    }
}

/* Lane jobs: width 1, one at a time, in submission order; width 2, never
 * more than two at once, and two do run at once; plain jobs run beside
 * them. */
typedef struct LaneArg {
    int index;
    int width;
    int *next;              /* width 1: the index the lane must run next */
    int *running;           /* lane jobs running now */
    int *most;              /* the most that ran at once */
    bool ok;
    bool done;
} LaneArg;

static int lane_fn(void *opaque)
{
    LaneArg *a = opaque;
    int running = __atomic_add_fetch(a->running, 1, __ATOMIC_SEQ_CST);
    int most = __atomic_load_n(a->most, __ATOMIC_SEQ_CST);

    while (running > most &&
           !__atomic_compare_exchange_n(a->most, &most, running, false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    a->ok = running <= a->width &&
            (a->width > 1 ||
             __atomic_load_n(a->next, __ATOMIC_SEQ_CST) == a->index);
    g_usleep(a->width > 1 ? 2000 : 200);  /* long enough for an overlap */
    __atomic_store_n(a->next, a->index + 1, __ATOMIC_SEQ_CST);
    __atomic_sub_fetch(a->running, 1, __ATOMIC_SEQ_CST);
    return a->index;
}

static ThreadPoolLane test_lane;

static void coroutine_fn lane_entry(void *opaque)
{
    LaneArg *a = opaque;
    int r = thread_pool_run_lane(aio_get_default(), &test_lane, lane_fn, a);

    g_assert_cmpint(r, ==, a->index);
    a->done = true;
}

static void test_thread_pool_lane_width(int width)
{
    AioContext *ctx = aio_get_default();
    enum { N = 64 };
    LaneArg args[N];
    PoolArg plain[N];
    int next = 0, running = 0, most = 0;
    bool left;

    thread_pool_lane_init(&test_lane, width);
    for (int i = 0; i < N; i++) {
        args[i] = (LaneArg) { .index = i, .width = width, .next = &next,
                              .running = &running, .most = &most };
        plain[i] = (PoolArg) { .caller = pthread_self(), .value = i + 1 };
        co_enter(co_create(lane_entry, &args[i]));
        co_enter(co_create(pool_entry, &plain[i]));
        if (i % 7 == 0) {
            aio_poll(ctx, false);   /* submissions over several batches */
        }
    }
    do {
        left = false;
        for (int i = 0; i < N; i++) {
            left |= !args[i].done || plain[i].value != -1;
        }
        if (left) {
            aio_poll(ctx, true);
        }
    } while (left);
    for (int i = 0; i < N; i++) {
        g_assert_true(args[i].ok);
    }
    if (width == 1) {
        g_assert_cmpint(next, ==, N);
    }
    g_assert_cmpint(most, ==, width);
    g_assert_true(g_queue_is_empty(&test_lane.jobs) && !test_lane.busy);
}

static void test_thread_pool_lane(void)
{
    test_thread_pool_lane_width(1);
}

static void test_thread_pool_lane2(void)
{
    test_thread_pool_lane_width(2);
}

/* A private context works and frees pending oneshots. */
static void test_context_new_free(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    int count = 0;
    AioBH *bh = aio_bh_new(ctx, count_cb, &count);

    aio_bh_schedule(bh);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(count, ==, 1);
    aio_bh_delete(bh);
    aio_bh_schedule_oneshot(ctx, count_cb, &count);   /* never runs */
    aio_context_free(ctx);
    g_assert_cmpint(count, ==, 1);
}

/* A thread's own default context: distinct, usable, freed at exit. */
static gpointer own_ctx_thread(gpointer opaque)
{
    AioContext *ctx = aio_get_default();
    int count = 0;

    g_assert_true(ctx != opaque);
    g_assert_true(ctx == aio_get_default());
    aio_bh_schedule_oneshot(ctx, count_cb, &count);
    AIO_WAIT_WHILE(ctx, count == 0);
    return GINT_TO_POINTER(count);
}

static void test_default_per_thread(void)
{
    GThread *th = g_thread_new("own-ctx", own_ctx_thread, aio_get_default());

    g_assert_cmpint(GPOINTER_TO_INT(g_thread_join(th)), ==, 1);
}

typedef struct ModeCase {
    GTestFunc fn;
    bool epoll;
} ModeCase;

/* Run one test on a fresh default context whose loop waits on its
 * io_uring (where available) or, forced, on epoll. */
static void run_in_mode(gconstpointer data)
{
    const ModeCase *c = data;

    aio_force_epoll(c->epoll);
    aio_context_free(aio_get_default());
    if (c->epoll) {
        g_assert_false(aio_context_uses_ring(aio_get_default()));
    } else if (g_test_verbose()) {
        g_test_message("ring mode: %d",
                       aio_context_uses_ring(aio_get_default()));
    }
    c->fn();
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        GTestFunc fn;
    } cases[] = {
        { "bh/once", test_bh_once },
        { "bh/cancel", test_bh_cancel },
        { "bh/oneshot", test_bh_oneshot },
        { "bh/reschedule", test_bh_resched },
        { "timer/order", test_timers },
        { "timer/del", test_timer_del },
        { "fd/pipe", test_fd_handler },
        { "thread/notify", test_notify_cross_thread },
        { "thread/oneshot", test_oneshot_cross_thread },
        { "thread/co-schedule", test_co_schedule_cross_thread },
        { "co/sleep", test_co_sleep },
        { "co/yield-to-loop", test_co_yield_to_loop },
        { "thread-pool/run", test_thread_pool },
        { "thread-pool/lane", test_thread_pool_lane },
        { "thread-pool/lane2", test_thread_pool_lane2 },
        { "context/new-free", test_context_new_free },
        { "context/per-thread", test_default_per_thread },
    };

    g_test_init(&argc, &argv, NULL);
    for (unsigned m = 0; m < 2; m++) {
        for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
            g_autofree char *path = g_strdup_printf(
                "/aio/%s/%s", m ? "epoll" : "ring", cases[i].name);
            ModeCase *c = g_new(ModeCase, 1);   /* lives until exit */

            c->fn = cases[i].fn;
            c->epoll = m;
            g_test_add_data_func_full(path, c, run_in_mode, g_free);
        }
    }
    return g_test_run();
}
