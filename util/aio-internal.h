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
 * retries -EAGAIN/-EINTR, so engines stay simple.
 */
typedef struct AioEngineOps {
    AioEngineType type;
    const char *name;
    /* Create an instance for @ctx (NULL + errp on failure). */
    AioEngine *(*create)(AioContext *ctx, Error **errp);
    void (*destroy)(AioEngine *e);
    int64_t coroutine_fn (*submit)(AioEngine *e, int fd, AioOp op,
                                   int64_t offset, struct iovec *iov,
                                   int niov);
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

/* Engine instance slots owned by the context (aio.c). */
AioEngine **aio_context_engine_slot(AioContext *ctx, AioEngineType type);
/* Destroy the engine instance (engine.c), used by aio_context_free(). */
void aio_engine_destroy(AioEngine *e);

#endif
