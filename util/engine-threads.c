#include "config.h"
/*
 * The "threads" engine: preadv/pwritev/fdatasync on the worker pool.
 * Always available.  Each call performs one syscall; engine.c continues
 * short transfers.
 */
#include <errno.h>
#include <unistd.h>
#include <sys/uio.h>
#include <glib.h>

#include "util/aio.h"
#include "util/aio-internal.h"

typedef struct ThreadsRequest {
    int fd;
    AioOp op;
    int64_t offset;
    struct iovec *iov;
    int niov;
    ssize_t ret;
} ThreadsRequest;

/* Runs on a worker: the blocking syscall itself.  The result is kept in
 * the request (it may not fit in the pool's int return value). */
static int threads_worker(void *opaque)
{
    ThreadsRequest *req = opaque;
    ssize_t r;

    switch (req->op) {
    case AIO_OP_READ:
        r = preadv(req->fd, req->iov, req->niov, req->offset);
        break;
    case AIO_OP_WRITE:
        r = pwritev(req->fd, req->iov, req->niov, req->offset);
        break;
    default:
        r = fdatasync(req->fd);
        break;
    }
    req->ret = r < 0 ? -errno : r;
    return 0;
}

/* One syscall on the pool; the coroutine sleeps meanwhile. */
static int64_t coroutine_fn threads_submit(AioEngine *e, ThreadPoolLane *lane,
                                           int fd, AioOp op, int64_t offset,
                                           struct iovec *iov, int niov)
{
    ThreadsRequest req = {
        .fd = fd, .op = op, .offset = offset, .iov = iov, .niov = niov,
    };

    thread_pool_run_lane(e->ctx, lane, threads_worker, &req);
    return req.ret;
}

/* Stateless: the pool is process-wide. */
static AioEngine *threads_create(AioContext *ctx, Error **errp)
{
    return g_new0(AioEngine, 1);
}

/* Nothing beyond the base struct. */
static void threads_destroy(AioEngine *e)
{
    g_free(e);
}

const AioEngineOps aio_engine_threads_ops = {
    .type = AIO_ENGINE_THREADS,
    .name = "threads",
    .create = threads_create,
    .destroy = threads_destroy,
    .submit = threads_submit,
};
