/*
 * Internal interface between the event loop (aio.c), the engine
 * dispatcher (engine.c) and the individual I/O engines.  Not for use
 * outside util/.
 */
#ifndef STRATA_AIO_INTERNAL_H
#define STRATA_AIO_INTERNAL_H

#include "util/aio.h"

/*
 * One engine implementation.  submit() performs ONE kernel operation
 * (which may be short) and returns its raw result: bytes transferred or
 * -errno.  The dispatcher in engine.c continues short transfers and
 * retries -EAGAIN/-EINTR, so engines stay simple.  @lane (may be NULL)
 * asks for the operation to run in order with the lane's others: the
 * pool-based engine honours it; kernel-queue engines ignore it.
 */
typedef struct AioEngineOps {
    AioEngineType type;
    const char *name;
    /* Create an instance for @ctx (NULL + errp on failure). */
    AioEngine *(*create)(AioContext *ctx, Error **errp);
    void (*destroy)(AioEngine *e);
    int64_t coroutine_fn (*submit)(AioEngine *e, ThreadPoolLane *lane,
                                   int fd, AioOp op, int64_t offset,
                                   struct iovec *iov, int niov);
    void (*register_fd)(AioEngine *e, int fd);
    void (*unregister_fd)(AioEngine *e, int fd);
    /* Can the running kernel use this engine?  Called once, cached. */
    bool (*probe)(void);
} AioEngineOps;

/* Every engine instance starts with this. */
struct AioEngine {
    const AioEngineOps *ops;
    AioContext *ctx;
};

extern const AioEngineOps aio_engine_threads_ops;
#ifdef CONFIG_LINUX_IO_URING
extern const AioEngineOps aio_engine_io_uring_ops;
#endif
#ifdef CONFIG_LINUX_AIO
extern const AioEngineOps aio_engine_linux_aio_ops;
#endif

/*
 * Lock-free coroutine wake-up for other threads (the worker pool): the
 * node lives in the caller's request, so nothing is allocated.  Only the
 * first push onto an empty list schedules the context's wake BH (and so
 * writes the eventfd at most once per loop iteration); the BH enters
 * every queued coroutine in push order.
 */
typedef struct AioWakeNode {
    Coroutine *co;
    struct AioWakeNode *next;
} AioWakeNode;
void aio_co_wake_node(AioContext *ctx, AioWakeNode *node);

/*
 * The loop's io_uring ("ring mode"): when the kernel has io_uring with
 * IORING_FEAT_EXT_ARG and STRATA_AIO_EPOLL is not set in the environment,
 * each context owns a ring and its blocking wait is one io_uring_enter()
 * that also submits every SQE queued since the last one.  The epoll fd
 * (fd handlers) is watched on the ring with a (multishot) POLL_ADD, the
 * timeout is the enter's timeout argument.  Otherwise the wait is
 * epoll_pwait2() ("epoll mode").
 *
 * Every SQE put on the ring carries an AioRingOp as user_data; the loop
 * calls its complete() for each CQE (after copying a batch out of the CQ,
 * so complete() may queue new SQEs).  complete() returns true if the CQE
 * counts as a dispatched event for aio_poll()'s return value.
 */
typedef struct AioRingOp AioRingOp;
typedef bool AioRingComplete(AioRingOp *op, int res, uint32_t cqe_flags);
struct AioRingOp {
    AioRingComplete *complete;
};

/* Force epoll mode for contexts created from now on (tests). */
void aio_force_epoll(bool on);
bool aio_context_uses_ring(AioContext *ctx);

#ifdef CONFIG_LINUX_IO_URING
struct io_uring;
struct io_uring_sqe;
/* The context's ring, or NULL in epoll mode. */
struct io_uring *aio_context_ring(AioContext *ctx);
/* A free SQE on the context's ring (submits what is queued if the SQ is
 * full); NULL only if the kernel accepts nothing right now. */
struct io_uring_sqe *aio_ring_get_sqe(AioContext *ctx);
#endif

/*
 * Ring mode only (NULL in epoll mode): read the *blocking* eventfd @fd on
 * the ring and call @cb(opaque) from the loop each time the read
 * completes (the counter is then reset), then read again.  Saves the
 * epoll round trip and the read() syscall of an fd handler.  Unwatch
 * before closing @fd; the watch is freed once its read is flushed.
 */
typedef struct AioEventWatch AioEventWatch;
AioEventWatch *aio_ring_watch_eventfd(AioContext *ctx, int fd, IOHandler *cb,
                                      void *opaque);
void aio_ring_unwatch_eventfd(AioEventWatch *w);

/* The worker pool's per-context submission batch (thread-pool.c): the
 * slot lives in the context, freed with it. */
typedef struct PoolBatch PoolBatch;
PoolBatch **aio_context_pool_batch(AioContext *ctx);
void thread_pool_batch_free(PoolBatch *b);

/* Engine instance slots owned by the context (aio.c). */
AioEngine **aio_context_engine_slot(AioContext *ctx, AioEngineType type);
/* Destroy the engine instance (engine.c), used by aio_context_free(). */
void aio_engine_destroy(AioEngine *e);

#endif
