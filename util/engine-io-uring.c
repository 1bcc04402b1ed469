#include "config.h"
/*
 * The io_uring engine (liburing).
 *
 * When the context waits on its own ring (ring mode, see aio-internal.h)
 * the engine shares that ring: a request only fills an SQE, the loop's
 * next io_uring_enter() submits it together with the wait, and the loop
 * hands each CQE to uring_request_done() directly.  No eventfd, no BH.
 *
 * In epoll mode the engine has a private ring.  Submission is batched: a
 * request fills an SQE and schedules the submit BH, which calls
 * io_uring_submit() once for everything queued during the loop iteration.
 * Completions signal an eventfd registered with io_uring_register_eventfd()
 * that is an ordinary fd handler of the context; it reaps the CQEs.
 *
 * In-flight requests are capped below the SQ size so the CQ never
 * overflows and an SQE is always free.  Registered files are kept in a
 * sparse fixed file table when the kernel supports it.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <liburing.h>
#include <glib.h>

#include "util/aio.h"
#include "util/aio-internal.h"

#define URING_ENTRIES 256
#define URING_FILES 64
#define URING_REAP_BATCH 64
#define URING_LOOP_RESERVE 8
#define URING_MAX_BATCH 32     /* bigger batches serialise device writes */

typedef struct UringFile {
    int fd;             /* -1: slot free */
    unsigned refs;
} UringFile;

typedef struct UringEngine {
    AioEngine base;
    struct io_uring *ring;  /* &own or the context's */
    struct io_uring own;    /* epoll mode only */
    bool shared;
    int efd;                /* epoll mode only */
    AioBH *submit_bh;       /* epoll mode only */
    unsigned cap;           /* max in flight */
    unsigned max_batch;     /* submit at once when this many are queued */
    unsigned inflight;      /* SQEs filled whose CQE has not been reaped */
    CoQueue waiters;        /* coroutines waiting for ring capacity */
    bool files_ok;
    UringFile files[URING_FILES];
} UringEngine;

typedef struct UringRequest {
    AioRingOp op;           /* first: the CQE user_data */
    UringEngine *u;
    Coroutine *co;
    int res;
    bool done;
} UringRequest;

/* Hand one completion to its coroutine (from the loop, exactly once). */
static bool uring_request_done(AioRingOp *op, int res, uint32_t flags)
{
    UringRequest *req = (UringRequest *)op;
    UringEngine *u = req->u;

    req->res = res;
    req->done = true;
    u->inflight--;
    co_enter(req->co);
    co_queue_next(&u->waiters);
    return true;
}

/* Epoll mode: reap all available CQEs of the private ring.  They are
 * collected before any coroutine runs so that the CQ ring is not touched
 * while coroutines submit new work. */
static void uring_reap(UringEngine *u)
{
    struct io_uring_cqe *cqes[URING_REAP_BATCH];
    AioRingOp *ops[URING_REAP_BATCH];
    int res[URING_REAP_BATCH];
    unsigned n;

    do {
        n = io_uring_peek_batch_cqe(u->ring, cqes, URING_REAP_BATCH);
        for (unsigned i = 0; i < n; i++) {
            ops[i] = io_uring_cqe_get_data(cqes[i]);
            res[i] = cqes[i]->res;
        }
        io_uring_cq_advance(u->ring, n);
        for (unsigned i = 0; i < n; i++) {
            ops[i]->complete(ops[i], res[i], 0);
        }
    } while (n == URING_REAP_BATCH);
}

/* Epoll mode: submit everything queued; on a transient failure retry on
 * the next loop iteration (completions in flight also make room). */
static void uring_flush(UringEngine *u)
{
    while (io_uring_sq_ready(u->ring)) {
        int r = io_uring_submit(u->ring);

        if (r == -EINTR) {
            continue;
        }
        if (r == -EAGAIN || r == -EBUSY || r == 0) {
            aio_bh_schedule(u->submit_bh);
            return;
        }
        if (r < 0) {
            g_error("io_uring_submit failed: %s", g_strerror(-r));
        }
    }
}

/* The per-iteration submit BH; also reaps what completed inline. */
static void uring_submit_bh(void *opaque)
{
    UringEngine *u = opaque;

    uring_flush(u);
    uring_reap(u);
}

/* Completion eventfd handler. */
static void uring_efd_read(void *opaque)
{
    UringEngine *u = opaque;
    uint64_t val;

    while (read(u->efd, &val, sizeof(val)) < 0 && errno == EINTR) {
    }
    uring_reap(u);
    if (io_uring_sq_ready(u->ring)) {
        uring_flush(u);
    }
}

/* Fixed-file slot of @fd, or -1. */
static int uring_file_slot(UringEngine *u, int fd)
{
    if (!u->files_ok) {
        return -1;
    }
    for (int i = 0; i < URING_FILES; i++) {
        if (u->files[i].fd == fd) {
            return i;
        }
    }
    return -1;
}

/* Fill an SQE for one operation. */
static void uring_prep(UringEngine *u, struct io_uring_sqe *sqe, int fd,
                       AioOp op, int64_t offset, struct iovec *iov, int niov)
{
    int slot = uring_file_slot(u, fd);
    int target = slot >= 0 ? slot : fd;

    /* a single buffer needs no iovec: the kernel skips copying it in */
    switch (op) {
    case AIO_OP_READ:
        if (niov == 1) {
            io_uring_prep_read(sqe, target, iov->iov_base, iov->iov_len,
                               offset);
        } else {
            io_uring_prep_readv(sqe, target, iov, niov, offset);
        }
        break;
    case AIO_OP_WRITE:
        if (niov == 1) {
            io_uring_prep_write(sqe, target, iov->iov_base, iov->iov_len,
                                offset);
        } else {
            io_uring_prep_writev(sqe, target, iov, niov, offset);
        }
        break;
    default:
        io_uring_prep_fsync(sqe, target, IORING_FSYNC_DATASYNC);
        break;
    }
    if (slot >= 0) {
        io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
    }
}

/* A free SQE: in ring mode the loop's ring may be full of SQEs of the
 * loop's own, which a submit clears. */
static struct io_uring_sqe *uring_get_sqe(UringEngine *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(u->ring);

    if (!sqe) {
        io_uring_submit(u->ring);
        sqe = io_uring_get_sqe(u->ring);
    }
    g_assert(sqe);  /* inflight < cap < SQ size */
    return sqe;
}

/* Queue one SQE for the batch and sleep until its CQE is reaped. */
static int64_t coroutine_fn uring_submit(AioEngine *e, ThreadPoolLane *lane,
                                         int fd, AioOp op, int64_t offset,
                                         struct iovec *iov, int niov)
{
    UringEngine *u = (UringEngine *)e;
    UringRequest req = {
        .op.complete = uring_request_done, .u = u, .co = co_self(),
    };
    struct io_uring_sqe *sqe;

    g_assert(req.co);
    while (u->inflight >= u->cap) {
        co_queue_wait(&u->waiters, NULL);
    }
    sqe = uring_get_sqe(u);
    uring_prep(u, sqe, fd, op, offset, iov, niov);
    io_uring_sqe_set_data(sqe, &req.op);
    u->inflight++;
    if (io_uring_sq_ready(u->ring) >= u->max_batch) {
        io_uring_submit(u->ring);
    } else if (!u->shared) {
        aio_bh_schedule(u->submit_bh);
    }
    while (!req.done) {
        co_yield();
    }
    return req.res;
}

/* Set up the sparse fixed-file table; registration is an optimisation
 * only, so failure just disables it. */
static void uring_files_init(UringEngine *u)
{
    for (int i = 0; i < URING_FILES; i++) {
        u->files[i].fd = -1;
    }
    u->files_ok = io_uring_register_files_sparse(u->ring, URING_FILES) == 0;
}

/* Put @fd in a free fixed-file slot (refcounted) to skip fget per I/O. */
static void uring_register_fd(AioEngine *e, int fd)
{
    UringEngine *u = (UringEngine *)e;
    int slot = uring_file_slot(u, fd);

    if (!u->files_ok || fd < 0) {
        return;
    }
    if (slot >= 0) {
        u->files[slot].refs++;
        return;
    }
    slot = uring_file_slot(u, -1);
    if (slot >= 0 && io_uring_register_files_update(u->ring, slot,
                                                    &fd, 1) == 1) {
        u->files[slot].fd = fd;
        u->files[slot].refs = 1;
    }
}

/* Drop one reference; the slot is cleared when the last one goes. */
static void uring_unregister_fd(AioEngine *e, int fd)
{
    UringEngine *u = (UringEngine *)e;
    int slot = uring_file_slot(u, fd);
    int none = -1;

    if (fd < 0 || slot < 0 || --u->files[slot].refs) {
        return;
    }
    io_uring_register_files_update(u->ring, slot, &none, 1);
    u->files[slot].fd = -1;
}

/* Epoll mode: a private ring whose completions signal an eventfd that
 * the loop watches; a BH submits each iteration's batch. */
static bool uring_own_ring(UringEngine *u, AioContext *ctx, Error **errp)
{
    int r = io_uring_queue_init(URING_ENTRIES, &u->own, 0);

    if (r < 0) {
        error_setg_errno(errp, -r, "Failed to set up io_uring");
        return false;
    }
    u->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r = u->efd < 0 ? -errno : io_uring_register_eventfd(&u->own, u->efd);
    if (r < 0) {
        error_setg_errno(errp, -r, "Failed to set up io_uring eventfd");
        if (u->efd >= 0) {
            close(u->efd);
        }
        io_uring_queue_exit(&u->own);
        return false;
    }
    u->ring = &u->own;
    u->cap = URING_ENTRIES;
    u->submit_bh = aio_bh_new(ctx, uring_submit_bh, u);
    aio_set_fd_handler(ctx, u->efd, uring_efd_read, NULL, u);
    return true;
}

/* The context's ring if it has one, else a private ring; then the fixed
 * file table. */
static AioEngine *uring_create(AioContext *ctx, Error **errp)
{
    UringEngine *u = g_new0(UringEngine, 1);

    u->ring = aio_context_ring(ctx);
    if (u->ring) {
        u->shared = true;
        u->efd = -1;
        /* leave room for the loop's own SQEs/CQEs */
        u->cap = u->ring->sq.ring_entries - URING_LOOP_RESERVE;
    } else if (!uring_own_ring(u, ctx, errp)) {
        g_free(u);
        return NULL;
    }
    u->max_batch = g_getenv("STRATA_URING_BATCH")
                   ? atoi(g_getenv("STRATA_URING_BATCH")) : URING_MAX_BATCH;
    co_queue_init(&u->waiters);
    uring_files_init(u);
    return &u->base;
}

/* Tear down; callers must have drained their requests. */
static void uring_destroy(AioEngine *e)
{
    UringEngine *u = (UringEngine *)e;

    if (u->inflight) {
        g_warning("io_uring engine destroyed with %u requests in flight",
                  u->inflight);
    }
    if (u->files_ok) {
        io_uring_unregister_files(u->ring);
    }
    if (!u->shared) {
        aio_set_fd_handler(e->ctx, u->efd, NULL, NULL, NULL);
        aio_bh_delete(u->submit_bh);
        io_uring_queue_exit(&u->own);
        close(u->efd);
    }
    g_free(u);
}

/* Can we create a ring (kernel support, not disabled by sysctl/seccomp)? */
static bool uring_probe(void)
{
    struct io_uring ring;

    if (io_uring_queue_init(4, &ring, 0) < 0) {
        return false;
    }
    io_uring_queue_exit(&ring);
    return true;
}

const AioEngineOps aio_engine_io_uring_ops = {
    .type = AIO_ENGINE_IO_URING,
    .name = "io_uring",
    .create = uring_create,
    .destroy = uring_destroy,
    .submit = uring_submit,
    .register_fd = uring_register_fd,
    .unregister_fd = uring_unregister_fd,
    .probe = uring_probe,
};
