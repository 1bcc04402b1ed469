#include "config.h"
/*
 * The worker pool: one process-wide set of up to 64 detached threads,
 * created on demand when work is queued and no worker is idle; a worker
 * idle for 10 s exits.
 *
 * Submission is batched per context: thread_pool_run() only appends the
 * job to its context's batch (no lock) and the first job of a batch
 * schedules a BH that hands the whole batch over under one pool.lock
 * acquisition.  Idle workers sleep on their own semaphore, stacked most
 * recently idle first; the flush gives each of them a job directly and
 * posts only those semaphores (no shared condition variable, no herd).
 * Jobs left over go on the shared queue, taken by workers as they finish.
 * A job's completion is reported with aio_co_wake_node() (lock-free, one
 * eventfd write per batch), so the waiting coroutine is re-entered from
 * its context's loop, never from the worker thread.
 *
 * Lanes: jobs submitted on a ThreadPoolLane start in submission order,
 * at most the lane's width at a time.  A worker that finishes a lane's job
 * takes the lane's next queued job straight away, so back-to-back jobs on
 * a lane (buffered writes to one file, which the kernel serialises on the
 * inode lock anyway) leave no gap for a wake-up round trip through the
 * loop, and never spin against each other in the kernel.  The first
 * queued job goes to whichever of the lane's workers is free first, so a
 * slow job holds up only its own worker.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <time.h>
#include <glib.h>

#include "util/aio.h"
#include "util/aio-internal.h"

#define POOL_MAX_THREADS 64
#define POOL_IDLE_TIMEOUT_S 10

typedef struct PoolJob {
    ThreadPoolFunc *func;
    void *opaque;
    int ret;
    AioContext *ctx;
    AioWakeNode wake;
    ThreadPoolLane *lane;   /* NULL: any order */
    GList link;             /* on a batch, pool.jobs or lane->jobs */
} PoolJob;

typedef struct PoolWorker {
    sem_t sem;              /* posted once per hand-off */
    PoolJob *job;           /* handed over by the flush */
    bool idle;              /* on pool.idle; protected by pool.lock */
    GList link;
} PoolWorker;

/* One context's jobs not yet handed to the pool (home thread only). */
struct PoolBatch {
    AioBH *bh;
    GQueue jobs;
};

static struct {
    GMutex lock;
    GQueue jobs;            /* of PoolJob via link */
    GQueue idle;            /* of PoolWorker via link, newest first */
    int nthreads;
} pool;

/* Move every link of @src to the tail of @dst in O(1). */
static void queue_splice(GQueue *dst, GQueue *src)
{
    if (!src->head) {
        return;
    }
    if (dst->tail) {
        dst->tail->next = src->head;
        src->head->prev = dst->tail;
    } else {
        dst->head = src->head;
    }
    dst->tail = src->tail;
    dst->length += src->length;
    g_queue_init(src);
}

/* Run one job and queue the wake-up of its coroutine; then, while the
 * job's lane has more queued, run those too.  The job lives on its
 * coroutine's stack and the lane in its owner: the lane is updated before
 * the wake-up, and neither is touched after it. */
static void pool_run_job(PoolJob *job)
{
    while (job) {
        ThreadPoolLane *lane = job->lane;
        GList *next = NULL;

        job->ret = job->func(job->opaque);
        if (lane) {
            g_mutex_lock(&pool.lock);
            next = g_queue_pop_head_link(&lane->jobs);
            lane->busy -= next == NULL;
            g_mutex_unlock(&pool.lock);
        }
        aio_co_wake_node(job->ctx, &job->wake);
        job = next ? next->data : NULL;
    }
}

/* Idle timeout passed: leave if nobody picked us meanwhile; else a job
 * is being handed over and its post is on the way. */
static bool pool_worker_timeout(PoolWorker *w)
{
    bool leave;

    g_mutex_lock(&pool.lock);
    leave = w->idle;
    if (leave) {
        g_queue_unlink(&pool.idle, &w->link);
        w->idle = false;
        pool.nthreads--;
    }
    g_mutex_unlock(&pool.lock);
    if (!leave) {
        while (sem_wait(&w->sem) < 0 && errno == EINTR) {
        }
    }
    return !leave;
}

/* Sleep until a job is handed over (true) or the idle timeout expires
 * with none (false: the worker has been counted out and must exit). */
static bool pool_worker_sleep(PoolWorker *w)
{
    struct timespec deadline;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += POOL_IDLE_TIMEOUT_S;
    for (;;) {
        if (sem_clockwait(&w->sem, CLOCK_MONOTONIC, &deadline) == 0) {
            return true;
        }
        if (errno != EINTR) {
            return pool_worker_timeout(w);
        }
    }
}

/* Worker main loop: take queued jobs, else go idle and wait for one to
 * be handed over; exit after the idle timeout. */
static void *pool_worker(void *arg)
{
    PoolWorker *w = arg;

    for (;;) {
        GList *l;

        g_mutex_lock(&pool.lock);
        l = g_queue_pop_head_link(&pool.jobs);
        if (!l) {
            w->idle = true;
            w->job = NULL;
            g_queue_push_head_link(&pool.idle, &w->link);
        }
        g_mutex_unlock(&pool.lock);
        if (l) {
            pool_run_job(l->data);
            continue;
        }
        if (!pool_worker_sleep(w)) {
            break;
        }
        pool_run_job(w->job);
    }
    sem_destroy(&w->sem);
    g_free(w);
    return NULL;
}

/* Start one detached worker with all signals blocked (signals belong to
 * the main thread).  Called with pool.lock held. */
static void pool_spawn_worker(void)
{
    PoolWorker *w = g_new0(PoolWorker, 1);
    pthread_attr_t attr;
    pthread_t tid;
    sigset_t all, old;

    sem_init(&w->sem, 0, 0);
    w->link.data = w;
    sigfillset(&all);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&tid, &attr, pool_worker, w) == 0) {
        pool.nthreads++;
    } else {
        sem_destroy(&w->sem);
        g_free(w);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

/* Give idle workers one job each from @b; returns how many were handed
 * over (their workers in @woken).  Called with pool.lock held. */
static int pool_hand_over(PoolBatch *b, PoolWorker **woken)
{
    int n = 0;
    GList *wl;

    while (b->jobs.head && (wl = g_queue_pop_head_link(&pool.idle))) {
        PoolWorker *w = wl->data;

        w->idle = false;
        w->job = g_queue_pop_head_link(&b->jobs)->data;
        woken[n++] = w;
    }
    return n;
}

/* Jobs for a lane running at its width (counting what earlier jobs of
 * this batch claim) wait on the lane; others claim a place on it and are
 * handed out like any other.  Called with pool.lock held. */
static void pool_queue_lane_jobs(PoolBatch *b)
{
    GList *l = b->jobs.head;

    while (l) {
        GList *next = l->next;
        PoolJob *job = l->data;

        if (job->lane && job->lane->busy >= job->lane->width) {
            g_queue_unlink(&b->jobs, l);
            g_queue_push_tail_link(&job->lane->jobs, l);
        } else if (job->lane) {
            job->lane->busy++;
        }
        l = next;
    }
}

/* Hand the jobs of @b to the pool under one lock round trip. */
static void pool_submit(PoolBatch *b)
{
    PoolWorker *woken[POOL_MAX_THREADS];
    int n;

    g_mutex_lock(&pool.lock);
    pool_queue_lane_jobs(b);
    n = pool_hand_over(b, woken);
    for (guint i = 0; i < b->jobs.length &&
                      pool.nthreads < POOL_MAX_THREADS; i++) {
        pool_spawn_worker();
    }
    queue_splice(&pool.jobs, &b->jobs);
    g_assert(pool.nthreads > 0);
    g_mutex_unlock(&pool.lock);
    for (int i = 0; i < n; i++) {
        sem_post(&woken[i]->sem);
    }
}

/* The batch BH: every job of the iteration at once. */
static void pool_flush(void *opaque)
{
    pool_submit(opaque);
}

/* The context's batch, created on first use. */
static PoolBatch *pool_batch(AioContext *ctx)
{
    PoolBatch **slot = aio_context_pool_batch(ctx);

    if (!*slot) {
        *slot = g_new0(PoolBatch, 1);
        (*slot)->bh = aio_bh_new(ctx, pool_flush, *slot);
        g_queue_init(&(*slot)->jobs);
    }
    return *slot;
}

void thread_pool_batch_free(PoolBatch *b)
{
    if (b) {
        g_assert(g_queue_is_empty(&b->jobs));
        aio_bh_delete(b->bh);
        g_free(b);
    }
}

int coroutine_fn thread_pool_run(AioContext *ctx, ThreadPoolFunc *func,
                                 void *opaque)
{
    return thread_pool_run_lane(ctx, NULL, func, opaque);
}

void thread_pool_lane_init(ThreadPoolLane *lane, int width)
{
    g_assert(width > 0);
    g_queue_init(&lane->jobs);
    lane->busy = 0;
    lane->width = width;
}

int coroutine_fn thread_pool_run_lane(AioContext *ctx, ThreadPoolLane *lane,
                                      ThreadPoolFunc *func, void *opaque)
{
    PoolJob job = {
        .func = func, .opaque = opaque, .ctx = ctx, .wake.co = co_self(),
        .lane = lane, .link.data = &job,
    };
    PoolBatch *b = pool_batch(ctx);

    g_assert(job.wake.co);
    if (lane) {
        /* Lane jobs go at once: the lane's worker may be about to run dry
         * while this thread stays busy until the batch would be flushed
         * (an inline read, say), and a busy lane takes them lock-only. */
        PoolBatch one = { .jobs = G_QUEUE_INIT };

        g_queue_push_tail_link(&one.jobs, &job.link);
        pool_submit(&one);
        co_yield();
        return job.ret;
    }
    g_queue_push_tail_link(&b->jobs, &job.link);
    if (b->jobs.length == 1) {
        aio_bh_schedule(b->bh);
    }
    co_yield();
    return job.ret;
}
