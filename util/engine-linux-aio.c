#include "config.h"
/*
 * The "native" engine: Linux AIO (libaio), meant for O_DIRECT files (the
 * file driver enforces that; buffered fds just complete synchronously).
 *
 * One io_context per AioContext with depth 128.  Requests queue their iocb
 * and a submit BH hands the whole batch to io_submit() once per loop
 * iteration.  Each iocb carries io_set_eventfd(), so completions signal an
 * eventfd watched by the context's loop: read through the loop's io_uring
 * in ring mode (aio_ring_watch_eventfd(), no extra syscall), an fd handler
 * in epoll mode.  Completions are reaped straight from the completion
 * ring the kernel maps into our address space (the io_context_t points at
 * it; its header is checked first), else with a non-blocking
 * io_getevents(); each waiting coroutine is entered once.
 * fdatasync is not reliably supported by Linux AIO (IOCB_CMD_FDSYNC gives
 * -EINVAL on most filesystems), so flushes go to the worker pool.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <libaio.h>
#include <glib.h>

#include "util/aio.h"
#include "util/aio-internal.h"

#define LAIO_DEPTH 128
#define LAIO_MAX_BATCH 32      /* bigger batches serialise device writes */

/* The kernel's user-visible completion ring header (fs/aio.c, ABI since
 * 2.6.x; userspace reaping is supported: io_submit() re-reads head). */
#define LAIO_RING_MAGIC 0xa10a10a1
#define LAIO_RING_INCOMPAT_FEATURES 0

typedef struct LaioRing {
    unsigned id;
    unsigned nr;                /* events in the ring */
    unsigned head;              /* written by userspace (or the kernel) */
    unsigned tail;              /* written by the kernel */
    unsigned magic;
    unsigned compat_features;
    unsigned incompat_features;
    unsigned header_length;     /* sizeof(LaioRing) */
    struct io_event events[];
} LaioRing;

typedef struct LaioRequest {
    struct iocb iocb;
    Coroutine *co;
    long res;
    bool done;
} LaioRequest;

typedef struct LaioEngine {
    AioEngine base;
    io_context_t io;
    LaioRing *uring;        /* mapped completion ring, or NULL */
    int efd;
    AioEventWatch *watch;   /* ring mode: efd read through the loop's ring */
    AioBH *submit_bh;
    struct iocb *pending[LAIO_DEPTH];
    unsigned npending;      /* queued, not yet accepted by io_submit */
    unsigned max_batch;     /* submit at once when this many are queued */
    unsigned inflight;      /* queued or submitted, not yet reaped */
    CoQueue waiters;        /* coroutines waiting for queue depth */
} LaioEngine;

/* Hand one completion to its coroutine (from the loop, exactly once). */
static void laio_complete(LaioEngine *l, LaioRequest *req, long res)
{
    req->res = res;
    req->done = true;
    l->inflight--;
    co_enter(req->co);
    co_queue_next(&l->waiters);
}

/* Drop the first @n entries of the pending array. */
static void laio_pending_shift(LaioEngine *l, unsigned n)
{
    memmove(l->pending, l->pending + n,
            (l->npending - n) * sizeof(l->pending[0]));
    l->npending -= n;
}

/* Submit the pending batch.  io_submit accepts a prefix; an error for the
 * first iocb belongs to that request alone, so fail it and go on. */
static void laio_flush(LaioEngine *l)
{
    while (l->npending) {
        int r = io_submit(l->io, l->npending, l->pending);

        if (r == -EAGAIN) {
            if (l->inflight == l->npending) {
                aio_bh_schedule(l->submit_bh);   /* nothing to wait for */
            }
            return;     /* retried when completions arrive */
        }
        if (r < 0) {
            LaioRequest *req = (LaioRequest *)l->pending[0];
            laio_pending_shift(l, 1);
            laio_complete(l, req, r);
            continue;
        }
        laio_pending_shift(l, r);
    }
}

/* A full batch from inside a request's coroutine: submit it now so the
 * device starts on it, but leave errors (which complete, and so enter,
 * other coroutines) and leftovers to the submit BH. */
static void laio_flush_eager(LaioEngine *l)
{
    int r = io_submit(l->io, l->npending, l->pending);

    if (r > 0) {
        laio_pending_shift(l, r);
    }
    if (l->npending) {
        aio_bh_schedule(l->submit_bh);
    }
}

/* The per-iteration submit BH. */
static void laio_submit_bh(void *opaque)
{
    laio_flush(opaque);
}

/* Copy up to @max completions out of the mapped ring and release their
 * slots (the kernel sees the new head on the next io_submit). */
static int laio_ring_reap(LaioRing *r, struct io_event *evs, int max)
{
    unsigned head = r->head;
    unsigned tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    int n = 0;

    while (head != tail && n < max) {
        evs[n++] = r->events[head];
        head = head + 1 == r->nr ? 0 : head + 1;
    }
    __atomic_store_n(&r->head, head, __ATOMIC_RELEASE);
    return n;
}

/* Reap every completion without blocking, then submit what the woken
 * coroutines queued. */
static void laio_completions(void *opaque)
{
    LaioEngine *l = opaque;
    struct io_event evs[LAIO_DEPTH];
    struct timespec zero = { 0, 0 };
    int n;

    do {
        n = l->uring ? laio_ring_reap(l->uring, evs, LAIO_DEPTH)
                     : io_getevents(l->io, 0, LAIO_DEPTH, evs, &zero);
        for (int i = 0; i < n; i++) {
            LaioRequest *req = (LaioRequest *)evs[i].obj;
            laio_complete(l, req, (long)evs[i].res);
        }
    } while (n == LAIO_DEPTH);
    if (l->npending) {
        laio_flush(l);
    }
}

/* Epoll mode: the completion eventfd's fd handler. */
static void laio_efd_read(void *opaque)
{
    LaioEngine *l = opaque;
    uint64_t val;

    while (read(l->efd, &val, sizeof(val)) < 0 && errno == EINTR) {
    }
    laio_completions(l);
}

typedef struct LaioFlush {
    int fd;
    int ret;
} LaioFlush;

/* Worker-pool side of a flush. */
static int laio_fdatasync_worker(void *opaque)
{
    LaioFlush *f = opaque;

    f->ret = fdatasync(f->fd) < 0 ? -errno : 0;
    return 0;
}

/* Queue one iocb for the batch and sleep until its event is reaped. */
static int64_t coroutine_fn laio_submit(AioEngine *e, ThreadPoolLane *lane,
                                        int fd, AioOp op, int64_t offset,
                                        struct iovec *iov, int niov)
{
    LaioEngine *l = (LaioEngine *)e;
    LaioRequest req = { .co = co_self() };

    g_assert(req.co);
    if (op == AIO_OP_FDATASYNC) {
        LaioFlush f = { .fd = fd };
        thread_pool_run(e->ctx, laio_fdatasync_worker, &f);
        return f.ret;
    }
    while (l->inflight >= LAIO_DEPTH) {
        co_queue_wait(&l->waiters, NULL);
    }
    if (op == AIO_OP_READ) {
        io_prep_preadv(&req.iocb, fd, iov, niov, offset);
    } else {
        io_prep_pwritev(&req.iocb, fd, iov, niov, offset);
    }
    io_set_eventfd(&req.iocb, l->efd);
    l->pending[l->npending++] = &req.iocb;
    l->inflight++;
    if (l->npending >= l->max_batch) {
        laio_flush_eager(l);
    } else {
        aio_bh_schedule(l->submit_bh);
    }
    while (!req.done) {
        co_yield();
    }
    return req.res;
}

/* The mapped completion ring if its header is the layout we know. */
static LaioRing *laio_user_ring(io_context_t io)
{
    LaioRing *r = (LaioRing *)io;

    if (g_getenv("STRATA_LAIO_GETEVENTS") || !r ||
        r->magic != LAIO_RING_MAGIC ||
        r->incompat_features != LAIO_RING_INCOMPAT_FEATURES ||
        r->header_length != sizeof(LaioRing) || !r->nr) {
        return NULL;
    }
    return r;
}

/* The completion eventfd: read through the loop's ring when the loop
 * waits on one (the fd must then block), else an fd handler. */
static bool laio_efd_init(LaioEngine *l, AioContext *ctx, Error **errp)
{
    bool ring = aio_context_uses_ring(ctx);

    l->efd = eventfd(0, EFD_CLOEXEC | (ring ? 0 : EFD_NONBLOCK));
    if (l->efd < 0) {
        error_setg_errno(errp, errno, "Failed to create eventfd");
        return false;
    }
    if (ring) {
        l->watch = aio_ring_watch_eventfd(ctx, l->efd, laio_completions, l);
    } else {
        aio_set_fd_handler(ctx, l->efd, laio_efd_read, NULL, l);
    }
    return true;
}

/* io_context of LAIO_DEPTH, completion eventfd, submit BH. */
static AioEngine *laio_create(AioContext *ctx, Error **errp)
{
    LaioEngine *l = g_new0(LaioEngine, 1);
    int r = io_setup(LAIO_DEPTH, &l->io);

    if (r < 0) {
        error_setg_errno(errp, -r, "Failed to create linux AIO context");
        g_free(l);
        return NULL;
    }
    if (!laio_efd_init(l, ctx, errp)) {
        io_destroy(l->io);
        g_free(l);
        return NULL;
    }
    l->uring = laio_user_ring(l->io);
    l->max_batch = g_getenv("STRATA_LAIO_BATCH")
                   ? atoi(g_getenv("STRATA_LAIO_BATCH")) : LAIO_MAX_BATCH;
    co_queue_init(&l->waiters);
    l->submit_bh = aio_bh_new(ctx, laio_submit_bh, l);
    return &l->base;
}

/* Tear down; callers must have drained their requests. */
static void laio_destroy(AioEngine *e)
{
    LaioEngine *l = (LaioEngine *)e;

    if (l->inflight) {
        g_warning("linux-aio engine destroyed with %u requests in flight",
                  l->inflight);
    }
    if (l->watch) {
        aio_ring_unwatch_eventfd(l->watch);
    } else {
        aio_set_fd_handler(e->ctx, l->efd, NULL, NULL, NULL);
    }
    aio_bh_delete(l->submit_bh);
    io_destroy(l->io);
    close(l->efd);
    g_free(l);
}

/* Does the kernel allow io_setup (not limited by aio-max-nr/seccomp)? */
static bool laio_probe(void)
{
    io_context_t io = 0;

    if (io_setup(LAIO_DEPTH, &io) < 0) {
        return false;
    }
    io_destroy(io);
    return true;
}

const AioEngineOps aio_engine_linux_aio_ops = {
    .type = AIO_ENGINE_NATIVE,
    .name = "native",
    .create = laio_create,
    .destroy = laio_destroy,
    .submit = laio_submit,
    .probe = laio_probe,
};
