#include "config.h"
/*
 * The worker pool: one process-wide set of up to 64 detached threads,
 * created on demand when work is queued and no worker is idle; a worker
 * idle for 10 s exits.  A job's completion is reported to the submitting
 * context with aio_co_wake_node() (lock-free, one eventfd write per batch),
 * so the waiting coroutine is re-entered from that context's loop (never
 * from the worker thread).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <glib.h>

#include "util/aio.h"
#include "util/aio-internal.h"

#define POOL_MAX_THREADS 64
#define POOL_IDLE_TIMEOUT_US (10 * G_TIME_SPAN_SECOND)

typedef struct PoolJob {
    ThreadPoolFunc *func;
    void *opaque;
    int ret;
    AioContext *ctx;
    AioWakeNode wake;
} PoolJob;

static struct {
    GMutex lock;
    GCond cond;
    GQueue jobs;
    int nthreads;
    int nidle;
    int nwaking;        /* signalled but not yet awake */
} pool;

/* Wait for a job; NULL once idle for too long (the worker then exits).
 * Called with pool.lock held. */
static PoolJob *pool_next_job(void)
{
    gint64 deadline = g_get_monotonic_time() + POOL_IDLE_TIMEOUT_US;

    while (g_queue_is_empty(&pool.jobs)) {
        bool signalled;

        pool.nidle++;
        signalled = g_cond_wait_until(&pool.cond, &pool.lock, deadline);
        pool.nidle--;
        if (pool.nwaking) {
            pool.nwaking--;
        }
        if (!signalled && g_queue_is_empty(&pool.jobs)) {
            return NULL;
        }
    }
    return g_queue_pop_head(&pool.jobs);
}

/* Worker main loop: run jobs until idle timeout. */
static void *pool_worker(void *arg)
{
    PoolJob *job;

    g_mutex_lock(&pool.lock);
    while ((job = pool_next_job())) {
        g_mutex_unlock(&pool.lock);
        job->ret = job->func(job->opaque);
        aio_co_wake_node(job->ctx, &job->wake);
        g_mutex_lock(&pool.lock);
    }
    pool.nthreads--;
    g_mutex_unlock(&pool.lock);
    return NULL;
}

/* Start one detached worker with all signals blocked (signals belong to
 * the main thread).  Called with pool.lock held. */
static void pool_spawn_worker(void)
{
    pthread_attr_t attr;
    pthread_t tid;
    sigset_t all, old;

    sigfillset(&all);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&tid, &attr, pool_worker, NULL) == 0) {
        pool.nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

/* Make sure somebody will run the job just queued: wake an idle worker
 * that is not already being woken (g_cond_signal always costs a futex
 * syscall), else start one.  Called with pool.lock held. */
static void pool_kick_worker(void)
{
    if (pool.nidle > pool.nwaking) {
        pool.nwaking++;
        g_cond_signal(&pool.cond);
    } else if (pool.nthreads < POOL_MAX_THREADS) {
        pool_spawn_worker();
    }
}

int coroutine_fn thread_pool_run(AioContext *ctx, ThreadPoolFunc *func,
                                 void *opaque)
{
    PoolJob job = {
        .func = func, .opaque = opaque, .ctx = ctx, .wake.co = co_self(),
    };

    g_assert(job.wake.co);
    g_mutex_lock(&pool.lock);
    g_queue_push_tail(&pool.jobs, &job);
    if ((guint)pool.nwaking < g_queue_get_length(&pool.jobs)) {
        pool_kick_worker();
    }
    g_assert(pool.nthreads > 0);
    g_mutex_unlock(&pool.lock);
    co_yield();
    return job.ret;
}
