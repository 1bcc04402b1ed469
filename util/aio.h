/*
 * The event loop, the worker pool and the I/O engines.
 *
 * One AioContext per thread that runs the block graph (normally only the
 * main thread: aio_get_default()).  Everything registered with a context
 * runs on that context's thread, from aio_poll().
 *
 * Thread safety: aio_notify(), aio_bh_schedule(), aio_bh_schedule_oneshot()
 * and aio_co_schedule() may be called from any thread; everything else only
 * from the context's own thread.
 *
 * Waiting: aio_poll(ctx, true) blocks until at least one event (fd
 * readiness, bottom half, expired timer, engine completion, notify) has
 * been dispatched; aio_poll(ctx, false) dispatches what is ready and
 * returns at once.  Returns true if anything was dispatched.  Where the
 * kernel allows, the loop waits on an io_uring (one io_uring_enter per
 * iteration, also submitting the io_uring engine's requests); otherwise,
 * or with STRATA_AIO_EPOLL=1 in the environment, on epoll (see util/aio.c).
 */
#ifndef STRATA_AIO_H
#define STRATA_AIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <glib.h>
#include "coroutine/coroutine.h"
#include "util/error.h"

typedef struct AioContext AioContext;
typedef void IOHandler(void *opaque);
typedef void AioBHFunc(void *opaque);
typedef void AioTimerFunc(void *opaque);
typedef struct AioBH AioBH;
typedef struct AioTimer AioTimer;

AioContext *aio_context_new(Error **errp);
void aio_context_free(AioContext *ctx);
/* The calling thread's default context (created on first use). */
AioContext *aio_get_default(void);

bool aio_poll(AioContext *ctx, bool blocking);
void aio_notify(AioContext *ctx);

/* Poll the loop until @cond is false.  @cond is re-evaluated after each
 * dispatched event.  Must not be called from a coroutine. */
#define AIO_WAIT_WHILE(ctx, cond) \
    do { while (cond) { aio_poll((ctx), true); } } while (0)

/* fd handlers: NULL for both removes.  Level-triggered. */
void aio_set_fd_handler(AioContext *ctx, int fd, IOHandler *io_read,
                        IOHandler *io_write, void *opaque);

/* Bottom halves: run once per schedule, on the next loop iteration. */
AioBH *aio_bh_new(AioContext *ctx, AioBHFunc *cb, void *opaque);
void aio_bh_schedule(AioBH *bh);
void aio_bh_cancel(AioBH *bh);
void aio_bh_delete(AioBH *bh);
void aio_bh_schedule_oneshot(AioContext *ctx, AioBHFunc *cb, void *opaque);

/* Timers on the monotonic clock (clock_ns() in util/cutils.h), absolute ns. */
AioTimer *aio_timer_new(AioContext *ctx, AioTimerFunc *cb, void *opaque);
void aio_timer_mod(AioTimer *t, int64_t expire_ns);
void aio_timer_del(AioTimer *t);
bool aio_timer_pending(const AioTimer *t);
void aio_timer_free(AioTimer *t);

/* Enter @co from @ctx's loop on its next iteration (any thread). */
void aio_co_schedule(AioContext *ctx, Coroutine *co);
/* Sleep the current coroutine for @ns on the default context's clock. */
void coroutine_fn co_sleep_ns(int64_t ns);
/* Give other ready work a turn: reschedule self and yield. */
void coroutine_fn co_yield_to_loop(void);
/* Run @fn(opaque) in a new coroutine and poll the default context until it
 * returns (plain context), or call it directly (coroutine context). */
void co_run_sync(CoroutineEntry *fn, void *opaque);

/* ---- Worker pool: blocking syscalls and CPU work ---- */
typedef int ThreadPoolFunc(void *opaque);
/* Run func(opaque) on a worker thread; the calling coroutine sleeps until
 * it completes and gets its return value.  Pool size: up to 64 workers,
 * created on demand, idle ones exit after a while. */
int coroutine_fn thread_pool_run(AioContext *ctx, ThreadPoolFunc *func, void *opaque);
/* A lane: at most @width of its jobs run at a time, started in submission
 * order; a worker that finishes one takes the lane's next straight away
 * (see util/thread-pool.c).  Width 1: one at a time, back to back on one
 * worker.  Opaque; the owner keeps it alive while jobs are queued (a
 * coroutine waits on each). */
typedef struct ThreadPoolLane {
    GQueue jobs;            /* waiting; protected by the pool's lock */
    int busy;               /* workers running the lane's jobs */
    int width;
} ThreadPoolLane;
void thread_pool_lane_init(ThreadPoolLane *lane, int width);
int coroutine_fn thread_pool_run_lane(AioContext *ctx, ThreadPoolLane *lane,
                                      ThreadPoolFunc *func, void *opaque);

/* ---- I/O engines ----
 * One small ops set per engine, selected per file node.  An engine
 * instance belongs to one AioContext (created lazily, shared by every node
 * using that engine type in that context).
 *
 * aio_engine_co_rw(): performs the whole transfer: short transfers are
 * continued (a read hitting EOF stops and returns the bytes done), -EAGAIN
 * and -EINTR are retried.  Returns bytes transferred (>= 0) or -errno.
 * Flush returns 0 or -errno.  Completion wakes the calling coroutine from
 * the loop exactly once.
 */
typedef enum {
    AIO_ENGINE_THREADS,
    AIO_ENGINE_NATIVE,
    AIO_ENGINE_IO_URING,
} AioEngineType;

typedef enum {
    AIO_OP_READ,
    AIO_OP_WRITE,
    AIO_OP_FDATASYNC,
} AioOp;

typedef struct AioEngine AioEngine;

/* "threads", "native", "io_uring" -> type; false if unknown. */
bool aio_engine_parse(const char *name, AioEngineType *type);
const char *aio_engine_name(AioEngineType type);
/* Is this engine compiled in and usable by the running kernel? */
bool aio_engine_available(AioEngineType type);
/* The best available default (io_uring, else threads). */
AioEngineType aio_engine_default(void);
AioEngine *aio_engine_get(AioContext *ctx, AioEngineType type, Error **errp);

int64_t coroutine_fn aio_engine_co_rw(AioEngine *e, int fd, AioOp op,
                                      int64_t offset, struct iovec *iov,
                                      int niov);
/* The same, in order with the other operations on @lane where the engine
 * runs requests on the worker pool (threads); other engines ignore it. */
int64_t coroutine_fn aio_engine_co_rw_lane(AioEngine *e, ThreadPoolLane *lane,
                                           int fd, AioOp op, int64_t offset,
                                           struct iovec *iov, int niov);
/* Optional: register @fd for fixed-file submission (no-op if unsupported).
 * Unregister before closing the fd. */
void aio_engine_register_fd(AioEngine *e, int fd);
void aio_engine_unregister_fd(AioEngine *e, int fd);

#endif
