#include "config.h"
/*
 * The "native" engine: Linux AIO (libaio), meant for O_DIRECT files (the
 * file driver enforces that; buffered fds just complete synchronously).
 *
 * One io_context per AioContext with depth 128.  Requests queue their iocb
 * and a submit BH hands the whole batch to io_submit() once per loop
 * iteration.  Each iocb carries io_set_eventfd(), so completions signal an
 * eventfd watched by the context's loop; its handler reaps them with a
 * non-blocking io_getevents() and enters each waiting coroutine once.
 * fdatasync is not reliably supported by Linux AIO (IOCB_CMD_FDSYNC gives
 * -EINVAL on most filesystems), so flushes go to the worker pool.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <libaio.h>
#include <glib.h>

#include "util/aio.h"
#include "util/aio-internal.h"

#define LAIO_DEPTH 128

typedef struct LaioRequest {
    struct iocb iocb;
    Coroutine *co;
    long res;
    bool done;
} LaioRequest;

typedef struct LaioEngine {
    AioEngine base;
    io_context_t io;
    int efd;
    AioBH *submit_bh;
    struct iocb *pending[LAIO_DEPTH];
    unsigned npending;      /* queued, not yet accepted by io_submit */
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

/* The per-iteration submit BH. */
static void laio_submit_bh(void *opaque)
{
    laio_flush(opaque);
}

/* Completion eventfd handler: reap without blocking. */
static void laio_efd_read(void *opaque)
{
    LaioEngine *l = opaque;
    struct io_event evs[LAIO_DEPTH];
    struct timespec zero = { 0, 0 };
    uint64_t val;
    int n;

    while (read(l->efd, &val, sizeof(val)) < 0 && errno == EINTR) {
    }
    do {
        n = io_getevents(l->io, 0, LAIO_DEPTH, evs, &zero);
        for (int i = 0; i < n; i++) {
            LaioRequest *req = (LaioRequest *)evs[i].obj;
            laio_complete(l, req, (long)evs[i].res);
        }
    } while (n == LAIO_DEPTH);
    if (l->npending) {
        laio_flush(l);
    }
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
static int64_t coroutine_fn laio_submit(AioEngine *e, int fd, AioOp op,
                                        int64_t offset, struct iovec *iov,
                                        int niov)
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
    aio_bh_schedule(l->submit_bh);
    while (!req.done) {
        co_yield();
    }
    return req.res;
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
    l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->efd < 0) {
        error_setg_errno(errp, errno, "Failed to create eventfd");
        io_destroy(l->io);
        g_free(l);
        return NULL;
    }
    co_queue_init(&l->waiters);
    l->submit_bh = aio_bh_new(ctx, laio_submit_bh, l);
    aio_set_fd_handler(ctx, l->efd, laio_efd_read, NULL, l);
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
    aio_set_fd_handler(e->ctx, l->efd, NULL, NULL, NULL);
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
