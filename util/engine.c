#include "config.h"
/*
 * I/O engine selection and dispatch.  The engines only perform single
 * kernel operations; this file turns them into whole transfers:
 * continuing short reads/writes on the remainder, stopping a read at EOF,
 * retrying -EAGAIN/-EINTR.
 */
#include <errno.h>
#include <string.h>
#include <glib.h>

#include "util/aio.h"
#include "util/aio-internal.h"

static const char *const engine_names[] = {
    [AIO_ENGINE_THREADS] = "threads",
    [AIO_ENGINE_NATIVE] = "native",
    [AIO_ENGINE_IO_URING] = "io_uring",
};

/* The compiled-in implementation of @type, or NULL. */
static const AioEngineOps *engine_ops(AioEngineType type)
{
    switch (type) {
    case AIO_ENGINE_THREADS:
        return &aio_engine_threads_ops;
#ifdef CONFIG_LINUX_AIO
    case AIO_ENGINE_NATIVE:
        return &aio_engine_linux_aio_ops;
#endif
#ifdef CONFIG_LINUX_IO_URING
    case AIO_ENGINE_IO_URING:
        return &aio_engine_io_uring_ops;
#endif
    default:
        return NULL;
    }
}

bool aio_engine_parse(const char *name, AioEngineType *type)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(engine_names); i++) {
        if (name && !strcmp(name, engine_names[i])) {
            *type = i;
            return true;
        }
    }
    return false;
}

const char *aio_engine_name(AioEngineType type)
{
    if ((unsigned)type >= G_N_ELEMENTS(engine_names)) {
        return "unknown";
    }
    return engine_names[type];
}

bool aio_engine_available(AioEngineType type)
{
    /* 0 = not probed yet, 1 = usable, -1 = not usable */
    static int cached[G_N_ELEMENTS(engine_names)];
    static GMutex lock;
    const AioEngineOps *ops = engine_ops(type);
    bool ok;

    if (!ops) {
        return false;
    }
    g_mutex_lock(&lock);
    if (!cached[type]) {
        cached[type] = (!ops->probe || ops->probe()) ? 1 : -1;
    }
    ok = cached[type] > 0;
    g_mutex_unlock(&lock);
    return ok;
}

AioEngineType aio_engine_default(void)
{
    return aio_engine_available(AIO_ENGINE_IO_URING) ? AIO_ENGINE_IO_URING
                                                     : AIO_ENGINE_THREADS;
}

AioEngine *aio_engine_get(AioContext *ctx, AioEngineType type, Error **errp)
{
    const AioEngineOps *ops = engine_ops(type);
    AioEngine **slot;

    if (!ops) {
        error_setg(errp, "AIO engine '%s' is not supported by this build",
                   aio_engine_name(type));
        return NULL;
    }
    slot = aio_context_engine_slot(ctx, type);
    if (!*slot) {
        *slot = ops->create(ctx, errp);
        if (*slot) {
            (*slot)->ops = ops;
            (*slot)->ctx = ctx;
        }
    }
    return *slot;
}

void aio_engine_destroy(AioEngine *e)
{
    e->ops->destroy(e);
}

void aio_engine_register_fd(AioEngine *e, int fd)
{
    if (e->ops->register_fd) {
        e->ops->register_fd(e, fd);
    }
}

void aio_engine_unregister_fd(AioEngine *e, int fd)
{
    if (e->ops->unregister_fd) {
        e->ops->unregister_fd(e, fd);
    }
}

/* Drop @done bytes from the front of @iov (modified in place); returns the
 * new first element index. */
static int iov_advance(struct iovec *iov, int niov, int start, size_t done)
{
    while (start < niov && done >= iov[start].iov_len) {
        done -= iov[start].iov_len;
        start++;
    }
    if (start < niov && done) {
        iov[start].iov_base = (char *)iov[start].iov_base + done;
        iov[start].iov_len -= done;
    }
    return start;
}

/* Sum of the iovec lengths. */
static size_t iov_total(const struct iovec *iov, int niov)
{
    size_t n = 0;

    for (int i = 0; i < niov; i++) {
        n += iov[i].iov_len;
    }
    return n;
}

/* Continue a short transfer on a private copy of the iovec array. */
static int64_t coroutine_fn engine_continue(AioEngine *e,
                                            ThreadPoolLane *lane,
                                            int fd, AioOp op, int64_t offset,
                                            const struct iovec *iov, int niov,
                                            size_t total, int64_t done)
{
    g_autofree struct iovec *copy = g_memdup2(iov, sizeof(*iov) * niov);
    int start = iov_advance(copy, niov, 0, done);

    while ((size_t)done < total) {
        int64_t r = e->ops->submit(e, lane, fd, op, offset + done,
                                   copy + start, niov - start);
        if (r == -EAGAIN || r == -EINTR) {
            continue;
        }
        if (r < 0) {
            return r;
        }
        if (r == 0) {
            /* EOF for reads; a write making no progress would spin */
            return op == AIO_OP_READ ? done : -ENOSPC;
        }
        done += r;
        start = iov_advance(copy, niov, start, r);
    }
    return done;
}

int64_t coroutine_fn aio_engine_co_rw(AioEngine *e, int fd, AioOp op,
                                      int64_t offset, struct iovec *iov,
                                      int niov)
{
    return aio_engine_co_rw_lane(e, NULL, fd, op, offset, iov, niov);
}

int64_t coroutine_fn aio_engine_co_rw_lane(AioEngine *e, ThreadPoolLane *lane,
                                           int fd, AioOp op, int64_t offset,
                                           struct iovec *iov, int niov)
{
    size_t total;
    int64_t r;

    if (op == AIO_OP_FDATASYNC) {
        do {
            r = e->ops->submit(e, lane, fd, op, 0, NULL, 0);
        } while (r == -EAGAIN || r == -EINTR);
        return r < 0 ? r : 0;
    }
    total = iov_total(iov, niov);
    do {
        r = e->ops->submit(e, lane, fd, op, offset, iov, niov);
    } while (r == -EAGAIN || r == -EINTR);
    if (r < 0 || (size_t)r == total || (r == 0 && op == AIO_OP_READ)) {
        return r;
    }
    if (r == 0) {
        return -ENOSPC;
    }
    return engine_continue(e, lane, fd, op, offset, iov, niov, total, r);
}
