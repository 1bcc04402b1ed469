#include "config.h"
/*
 * The event loop.
 *
 * Map: notification; coroutine scheduling; context lifetime; fd handlers;
 * bottom halves; timers; the wait (epoll); the io_uring wait (ring mode);
 * aio_poll(); coroutine helpers.
 *
 * Design: fd handlers live in an epoll instance (level-triggered).  Where
 * io_uring works, each AioContext owns a ring and its wait is ONE
 * io_uring_enter() per loop iteration ("ring mode", see aio-internal.h):
 * it submits the SQEs queued since the last one (the io_uring engine
 * shares this ring, so its requests go in the same call), waits for one
 * CQE with the timer deadline as its timeout, and the CQEs are then
 * dispatched to their AioRingOp.  The epoll fd is watched on the ring with
 * a multishot POLL_ADD and only asked (epoll_wait with timeout 0) when
 * that poll fired or epoll's previous answer was non-empty.  aio_notify()'s
 * eventfd and the linux-aio completion eventfd are read through the ring
 * (AioEventWatch).  Otherwise ("epoll mode", or STRATA_AIO_EPOLL=1) the
 * wait is epoll_pwait2 with a nanosecond timeout (falling back to
 * millisecond epoll_wait rounded up, so timers never fire early), the
 * notify eventfd is an fd handler, and the engines' completion eventfds
 * are fd handlers too.
 *
 * Bottom halves live on a mutex-protected FIFO so that any thread may
 * schedule them; timers sit on a list sorted by expiry (only the owner
 * thread touches them).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <glib.h>
#ifdef CONFIG_LINUX_IO_URING
#include <poll.h>
#include <liburing.h>
#endif

#include "util/aio.h"
#include "util/aio-internal.h"
#include "util/cutils.h"

#define AIO_MAX_EVENTS 64
#define AIO_RING_ENTRIES 256
#define AIO_RING_REAP 64

/* An eventfd read through the loop's ring (aio_ring_watch_eventfd()). */
struct AioEventWatch {
    AioRingOp op;           /* first: the CQE user_data */
    AioContext *ctx;
    int fd;
    IOHandler *cb;          /* NULL once unwatched */
    void *opaque;
    uint64_t val;           /* read target */
    bool armed;             /* a READ is in flight */
};

typedef struct AioHandler {
    int fd;
    IOHandler *io_read;
    IOHandler *io_write;
    void *opaque;
} AioHandler;

struct AioBH {
    AioContext *ctx;
    AioBHFunc *cb;
    void *opaque;
    bool scheduled;     /* on ctx->bh_ready; protected by ctx->bh_lock */
    bool oneshot;
    GList link;
};

struct AioTimer {
    AioContext *ctx;
    AioTimerFunc *cb;
    void *opaque;
    int64_t expire_ns;
    bool pending;
    GList link;
};

struct AioContext {
    int epfd;
    int notify_fd;
    GHashTable *handlers;       /* fd -> AioHandler */
    GMutex bh_lock;
    GQueue bh_ready;            /* of AioBH, via bh->link */
    GQueue timers;              /* of AioTimer sorted by expiry */
    GMutex co_lock;
    GQueue co_ready;            /* of Coroutine * */
    AioWakeNode *wake_stack;    /* lock-free, newest first (atomic) */
    AioBH *co_bh;
    AioEngine *engines[3];
    PoolBatch *pool_batch;      /* thread-pool.c's */
    AioEngine *waiter;          /* engine that performs the wait, or NULL */
    pthread_t home;             /* thread that polls us (atomic access) */
    bool kicked;                /* home-thread aio_notify() (atomic) */
    bool epoll_dirty;           /* epoll may have ready fds (ring mode) */
#ifdef CONFIG_LINUX_IO_URING
    bool use_ring;              /* the wait is io_uring_enter on ring */
    bool epoll_polled;          /* POLL_ADD on epfd in flight */
    bool poll_multishot;        /* kernel accepts IORING_POLL_ADD_MULTI */
    struct io_uring ring;
    AioRingOp epoll_op;
    AioEventWatch *notify_watch;
    GQueue watches;             /* of AioEventWatch, incl. unwatched ones */
#endif
};

static __thread AioContext *default_ctx;

/* Thread exit: free that thread's default context. */
static void aio_default_destroy(gpointer ctx)
{
    aio_context_free(ctx);
}

static GPrivate default_ctx_key = G_PRIVATE_INIT(aio_default_destroy);

/* ---- notification ---- */

static bool aio_on_home_thread(AioContext *ctx);

/* From the polling thread itself nobody is asleep in the wait: a flag that
 * makes the current or next aio_poll() return is enough (no syscall). */
void aio_notify(AioContext *ctx)
{
    uint64_t one = 1;
    ssize_t r;

    if (aio_on_home_thread(ctx)) {
        __atomic_store_n(&ctx->kicked, true, __ATOMIC_RELAXED);
        return;
    }
    do {
        r = write(ctx->notify_fd, &one, sizeof(one));
    } while (r < 0 && errno == EINTR);
}

/* The polling thread checks for pending BHs before each wait, so a BH
 * scheduled from that very thread needs no eventfd wake-up. */
static bool aio_on_home_thread(AioContext *ctx)
{
    pthread_t home = __atomic_load_n(&ctx->home, __ATOMIC_ACQUIRE);

    return pthread_equal(home, pthread_self());
}

/* Reset the eventfd so level-triggered epoll stops reporting it. */
static void aio_notify_drain(void *opaque)
{
    AioContext *ctx = opaque;
    uint64_t val;

    while (read(ctx->notify_fd, &val, sizeof(val)) < 0 && errno == EINTR) {
    }
}

/* ---- coroutine scheduling ---- */

/* Take the whole wake stack at once and enter its coroutines oldest
 * first (the stack is newest first, so reverse it). */
static void aio_wake_stack_run(AioContext *ctx)
{
    AioWakeNode *n = __atomic_exchange_n(&ctx->wake_stack, NULL,
                                         __ATOMIC_ACQUIRE);
    AioWakeNode *fifo = NULL;

    while (n) {
        AioWakeNode *next = n->next;
        n->next = fifo;
        fifo = n;
        n = next;
    }
    while (fifo) {
        /* the node dies with its request once the coroutine runs */
        AioWakeNode *next = fifo->next;
        co_enter(fifo->co);
        fifo = next;
    }
}

void aio_co_wake_node(AioContext *ctx, AioWakeNode *node)
{
    AioWakeNode *old = __atomic_load_n(&ctx->wake_stack, __ATOMIC_RELAXED);

    do {
        node->next = old;
    } while (!__atomic_compare_exchange_n(&ctx->wake_stack, &old, node, true,
                                          __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    if (!old) {
        aio_bh_schedule(ctx->co_bh);
    }
}

/* Enter every coroutine queued by aio_co_schedule() or aio_co_wake_node()
 * so far. */
static void aio_co_bh(void *opaque)
{
    AioContext *ctx = opaque;
    GQueue batch = G_QUEUE_INIT;
    Coroutine *co;

    aio_wake_stack_run(ctx);

    g_mutex_lock(&ctx->co_lock);
    batch = ctx->co_ready;
    g_queue_init(&ctx->co_ready);
    g_mutex_unlock(&ctx->co_lock);
    while ((co = g_queue_pop_head(&batch))) {
        co_enter(co);
    }
}

void aio_co_schedule(AioContext *ctx, Coroutine *co)
{
    g_mutex_lock(&ctx->co_lock);
    g_queue_push_tail(&ctx->co_ready, co);
    g_mutex_unlock(&ctx->co_lock);
    aio_bh_schedule(ctx->co_bh);
}

/* ---- context lifetime ---- */

static bool force_epoll;

void aio_force_epoll(bool on)
{
    __atomic_store_n(&force_epoll, on, __ATOMIC_RELAXED);
}

bool aio_context_uses_ring(AioContext *ctx)
{
#ifdef CONFIG_LINUX_IO_URING
    return ctx->use_ring;
#else
    return false;
#endif
}

static void aio_ring_init(AioContext *ctx);
static void aio_ring_cleanup(AioContext *ctx);
static void aio_notify_watched(void *opaque);

/* The notify eventfd: read through the ring in ring mode (so it must
 * block there), an ordinary fd handler in epoll mode. */
static bool aio_notify_init(AioContext *ctx, Error **errp)
{
    bool ring = aio_context_uses_ring(ctx);

    ctx->notify_fd = eventfd(0, EFD_CLOEXEC | (ring ? 0 : EFD_NONBLOCK));
    if (ctx->notify_fd < 0) {
        error_setg_errno(errp, errno, "Failed to create eventfd");
        return false;
    }
#ifdef CONFIG_LINUX_IO_URING
    if (ring) {
        ctx->notify_watch = aio_ring_watch_eventfd(ctx, ctx->notify_fd,
                                                   aio_notify_watched, ctx);
        return true;
    }
#endif
    aio_set_fd_handler(ctx, ctx->notify_fd, aio_notify_drain, NULL, ctx);
    return true;
}

AioContext *aio_context_new(Error **errp)
{
    AioContext *ctx = g_new0(AioContext, 1);

    ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ctx->epfd < 0) {
        error_setg_errno(errp, errno, "Failed to create epoll instance");
        g_free(ctx);
        return NULL;
    }
    ctx->handlers = g_hash_table_new_full(g_direct_hash, g_direct_equal,
                                          NULL, g_free);
    aio_ring_init(ctx);
    if (!aio_notify_init(ctx, errp)) {
        aio_ring_cleanup(ctx);
        g_hash_table_destroy(ctx->handlers);
        close(ctx->epfd);
        g_free(ctx);
        return NULL;
    }
    g_mutex_init(&ctx->bh_lock);
    g_mutex_init(&ctx->co_lock);
    g_queue_init(&ctx->bh_ready);
    g_queue_init(&ctx->timers);
    g_queue_init(&ctx->co_ready);
    ctx->home = pthread_self();
    ctx->epoll_dirty = true;
    ctx->co_bh = aio_bh_new(ctx, aio_co_bh, ctx);
    return ctx;
}

/* Drop oneshot BHs that never ran (regular BHs belong to their owners). */
static void aio_free_pending_oneshots(AioContext *ctx)
{
    GList *l = ctx->bh_ready.head;

    while (l) {
        AioBH *bh = l->data;
        l = l->next;
        if (bh->oneshot) {
            g_queue_unlink(&ctx->bh_ready, &bh->link);
            g_free(bh);
        }
    }
}

void aio_context_free(AioContext *ctx)
{
    if (!ctx) {
        return;
    }
    for (int i = 0; i < 3; i++) {
        if (ctx->engines[i]) {
            aio_engine_destroy(ctx->engines[i]);
        }
    }
    aio_set_fd_handler(ctx, ctx->notify_fd, NULL, NULL, NULL);
    aio_ring_cleanup(ctx);      /* after the engines: they may use it */
    thread_pool_batch_free(ctx->pool_batch);
    aio_bh_delete(ctx->co_bh);
    aio_free_pending_oneshots(ctx);
    g_hash_table_destroy(ctx->handlers);
    g_mutex_clear(&ctx->bh_lock);
    g_mutex_clear(&ctx->co_lock);
    g_queue_clear(&ctx->co_ready);
    close(ctx->notify_fd);
    close(ctx->epfd);
    if (default_ctx == ctx) {
        default_ctx = NULL;
        /* no-op at thread exit: the key is already cleared then */
        g_private_set(&default_ctx_key, NULL);
    }
    g_free(ctx);
}

AioContext *aio_get_default(void)
{
    if (!default_ctx) {
        default_ctx = aio_context_new(&error_abort);
        g_private_set(&default_ctx_key, default_ctx);
    }
    return default_ctx;
}

PoolBatch **aio_context_pool_batch(AioContext *ctx)
{
    return &ctx->pool_batch;
}

AioEngine **aio_context_engine_slot(AioContext *ctx, AioEngineType type)
{
    g_assert((unsigned)type < G_N_ELEMENTS(ctx->engines));
    return &ctx->engines[type];
}

/* ---- fd handlers ---- */

/* Add, modify or remove @fd in the epoll set to match @h (NULL: remove). */
static void aio_epoll_update(AioContext *ctx, int fd, AioHandler *h,
                             bool existed)
{
    struct epoll_event ev = { .data.fd = fd };
    int r;

    if (!h) {
        r = epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, fd, NULL);
    } else {
        ev.events = (h->io_read ? EPOLLIN | EPOLLRDHUP : 0) |
                    (h->io_write ? EPOLLOUT : 0);
        r = epoll_ctl(ctx->epfd, existed ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
                      fd, &ev);
    }
    if (r < 0 && errno != EBADF && errno != ENOENT) {
        g_warning("epoll_ctl(fd %d) failed: %s", fd, g_strerror(errno));
    }
}

void aio_set_fd_handler(AioContext *ctx, int fd, IOHandler *io_read,
                        IOHandler *io_write, void *opaque)
{
    AioHandler *h = g_hash_table_lookup(ctx->handlers, GINT_TO_POINTER(fd));
    bool existed = h != NULL;

    if (!io_read && !io_write) {
        if (existed) {
            aio_epoll_update(ctx, fd, NULL, true);
            g_hash_table_remove(ctx->handlers, GINT_TO_POINTER(fd));
        }
        return;
    }
    if (!h) {
        h = g_new0(AioHandler, 1);
        h->fd = fd;
        g_hash_table_insert(ctx->handlers, GINT_TO_POINTER(fd), h);
    }
    h->io_read = io_read;
    h->io_write = io_write;
    h->opaque = opaque;
    aio_epoll_update(ctx, fd, h, existed);
    ctx->epoll_dirty = true;    /* it may be ready already */
}

/* Run the handlers for one epoll event; the handler table is re-checked
 * between callbacks because a callback may remove its own handler. */
static void aio_dispatch_fd(AioContext *ctx, const struct epoll_event *ev)
{
    gpointer key = GINT_TO_POINTER(ev->data.fd);
    AioHandler *h = g_hash_table_lookup(ctx->handlers, key);

    if (h && h->io_read &&
        (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        h->io_read(h->opaque);
        h = g_hash_table_lookup(ctx->handlers, key);
    }
    if (h && h->io_write && (ev->events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
        h->io_write(h->opaque);
    }
}

/* ---- bottom halves ---- */

AioBH *aio_bh_new(AioContext *ctx, AioBHFunc *cb, void *opaque)
{
    AioBH *bh = g_new0(AioBH, 1);

    bh->ctx = ctx;
    bh->cb = cb;
    bh->opaque = opaque;
    bh->link.data = bh;
    return bh;
}

void aio_bh_schedule(AioBH *bh)
{
    AioContext *ctx = bh->ctx;
    bool was_scheduled;

    g_mutex_lock(&ctx->bh_lock);
    was_scheduled = bh->scheduled;
    if (!was_scheduled) {
        bh->scheduled = true;
        g_queue_push_tail_link(&ctx->bh_ready, &bh->link);
    }
    g_mutex_unlock(&ctx->bh_lock);
    if (!was_scheduled && !aio_on_home_thread(ctx)) {
        aio_notify(ctx);
    }
}

void aio_bh_cancel(AioBH *bh)
{
    AioContext *ctx = bh->ctx;

    g_mutex_lock(&ctx->bh_lock);
    if (bh->scheduled) {
        g_queue_unlink(&ctx->bh_ready, &bh->link);
        bh->scheduled = false;
    }
    g_mutex_unlock(&ctx->bh_lock);
}

void aio_bh_delete(AioBH *bh)
{
    if (bh) {
        aio_bh_cancel(bh);
        g_free(bh);
    }
}

void aio_bh_schedule_oneshot(AioContext *ctx, AioBHFunc *cb, void *opaque)
{
    AioBH *bh = aio_bh_new(ctx, cb, opaque);

    bh->oneshot = true;
    aio_bh_schedule(bh);
}

/* Is any BH waiting?  Decides whether the wait may block. */
static bool aio_bh_pending(AioContext *ctx)
{
    bool pending;

    g_mutex_lock(&ctx->bh_lock);
    pending = !g_queue_is_empty(&ctx->bh_ready);
    g_mutex_unlock(&ctx->bh_lock);
    return pending;
}

/* Run the BHs scheduled before this call; ones scheduled by the callbacks
 * wait for the next iteration so a self-rescheduling BH cannot starve the
 * loop. */
static bool aio_bh_dispatch(AioContext *ctx)
{
    guint n;
    bool progress = false;

    g_mutex_lock(&ctx->bh_lock);
    n = g_queue_get_length(&ctx->bh_ready);
    g_mutex_unlock(&ctx->bh_lock);
    for (guint i = 0; i < n; i++) {
        AioBH *bh;
        AioBHFunc *cb;
        void *opaque;

        g_mutex_lock(&ctx->bh_lock);
        GList *l = g_queue_pop_head_link(&ctx->bh_ready);
        bh = l ? l->data : NULL;
        if (bh) {
            bh->scheduled = false;
        }
        g_mutex_unlock(&ctx->bh_lock);
        if (!bh) {
            break;
        }
        cb = bh->cb;
        opaque = bh->opaque;
        if (bh->oneshot) {
            g_free(bh);
        }
        cb(opaque);
        progress = true;
    }
    return progress;
}

/* ---- timers ---- */

AioTimer *aio_timer_new(AioContext *ctx, AioTimerFunc *cb, void *opaque)
{
    AioTimer *t = g_new0(AioTimer, 1);

    t->ctx = ctx;
    t->cb = cb;
    t->opaque = opaque;
    t->link.data = t;
    return t;
}

void aio_timer_del(AioTimer *t)
{
    if (t->pending) {
        g_queue_unlink(&t->ctx->timers, &t->link);
        t->pending = false;
    }
}

void aio_timer_mod(AioTimer *t, int64_t expire_ns)
{
    GQueue *q = &t->ctx->timers;
    GList *l;

    aio_timer_del(t);
    t->expire_ns = expire_ns;
    t->pending = true;
    /* Insert after every timer expiring at or before us: FIFO for ties. */
    for (l = q->tail; l; l = l->prev) {
        AioTimer *o = l->data;
        if (o->expire_ns <= expire_ns) {
            break;
        }
    }
    g_queue_insert_after_link(q, l, &t->link);   /* NULL: at the head */
}

bool aio_timer_pending(const AioTimer *t)
{
    return t->pending;
}

void aio_timer_free(AioTimer *t)
{
    if (t) {
        aio_timer_del(t);
        g_free(t);
    }
}

/* Nanoseconds until the first timer expires: -1 if none, 0 if expired. */
static int64_t aio_timers_deadline(AioContext *ctx)
{
    AioTimer *t = g_queue_peek_head(&ctx->timers);
    int64_t delta;

    if (!t) {
        return -1;
    }
    delta = t->expire_ns - clock_ns();
    return delta > 0 ? delta : 0;
}

/* Fire expired timers in expiry order. */
static bool aio_timers_dispatch(AioContext *ctx)
{
    bool progress = false;
    int64_t now = clock_ns();
    AioTimer *t;

    while ((t = g_queue_peek_head(&ctx->timers)) && t->expire_ns <= now) {
        aio_timer_del(t);
        t->cb(t->opaque);
        progress = true;
    }
    return progress;
}

/* ---- the wait ---- */

/* epoll wait with a ns timeout (-1: forever); never returns early for a
 * timeout because the ms fallback rounds up. */
static int aio_epoll_wait(AioContext *ctx, struct epoll_event *evs,
                          int64_t timeout_ns)
{
    static bool no_pwait2;
    struct timespec ts;
    int r;

    if (!no_pwait2) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        r = epoll_pwait2(ctx->epfd, evs, AIO_MAX_EVENTS,
                         timeout_ns < 0 ? NULL : &ts, NULL);
        if (r >= 0 || errno != ENOSYS) {
            return r;
        }
        no_pwait2 = true;
    }
    return epoll_wait(ctx->epfd, evs, AIO_MAX_EVENTS,
                      timeout_ns < 0 ? -1
                      : (int)MIN((timeout_ns + 999999) / 1000000, INT_MAX));
}

/* Dispatch what epoll reports within @timeout_ns; true if anything. */
static bool aio_epoll_dispatch(AioContext *ctx, int64_t timeout_ns)
{
    struct epoll_event evs[AIO_MAX_EVENTS];
    int n = aio_epoll_wait(ctx, evs, timeout_ns);

    for (int i = 0; i < n; i++) {
        aio_dispatch_fd(ctx, &evs[i]);
    }
    return n > 0;
}

/* ---- the io_uring wait (ring mode) ---- */

/* Cross-thread aio_notify() in ring mode: the read itself was the event. */
static void aio_notify_watched(void *opaque)
{
}

#ifdef CONFIG_LINUX_IO_URING
static bool aio_epoll_op_done(AioRingOp *op, int res, uint32_t flags);

/* Ring mode needs a ring with timeouts as enter arguments (so no timeout
 * SQEs of liburing's own show up in the CQ); anything else: epoll. */
static void aio_ring_init(AioContext *ctx)
{
    struct io_uring_params p = { 0 };
    const char *env = g_getenv("STRATA_AIO_EPOLL");

    g_queue_init(&ctx->watches);
    if (__atomic_load_n(&force_epoll, __ATOMIC_RELAXED) ||
        (env && *env && strcmp(env, "0"))) {
        return;
    }
    if (io_uring_queue_init_params(AIO_RING_ENTRIES, &ctx->ring, &p) < 0) {
        return;
    }
    if (!(p.features & IORING_FEAT_EXT_ARG)) {
        io_uring_queue_exit(&ctx->ring);
        return;
    }
    ctx->use_ring = true;
    ctx->poll_multishot = true;
    ctx->epoll_op.complete = aio_epoll_op_done;
}

/* Cancel the loop's own reads and polls synchronously (the kernel must
 * not write into a watch after it is freed), exit the ring, then free the
 * watches whose final CQE will never be reaped. */
static void aio_ring_cleanup(AioContext *ctx)
{
    struct io_uring_sync_cancel_reg reg = {
        .flags = IORING_ASYNC_CANCEL_ANY,
        .timeout = { .tv_sec = -1, .tv_nsec = -1 },
    };
    AioEventWatch *w;

    if (ctx->use_ring) {
        io_uring_register_sync_cancel(&ctx->ring, &reg);   /* best effort */
        io_uring_queue_exit(&ctx->ring);
        ctx->use_ring = false;
    }
    while ((w = g_queue_pop_head(&ctx->watches))) {
        g_free(w);
    }
}

struct io_uring *aio_context_ring(AioContext *ctx)
{
    return ctx->use_ring ? &ctx->ring : NULL;
}

struct io_uring_sqe *aio_ring_get_sqe(AioContext *ctx)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ctx->ring);

    if (!sqe) {
        io_uring_submit(&ctx->ring);
        sqe = io_uring_get_sqe(&ctx->ring);
    }
    return sqe;
}

/* The epoll fd became readable (or the poll ended): look at it after the
 * wait, and re-arm a poll that will post no more CQEs. */
static bool aio_epoll_op_done(AioRingOp *op, int res, uint32_t flags)
{
    AioContext *ctx = (AioContext *)((char *)op -
                                     offsetof(AioContext, epoll_op));

    ctx->epoll_dirty = true;
    if (!(flags & IORING_CQE_F_MORE)) {
        ctx->epoll_polled = false;
        if (res == -EINVAL && ctx->poll_multishot) {
            ctx->poll_multishot = false;    /* kernel < 5.13 */
        }
    }
    return false;
}

/* A watched eventfd read completed: run the callback, free an unwatched
 * watch (its last read is flushed). */
static bool aio_watch_done(AioRingOp *op, int res, uint32_t flags)
{
    AioEventWatch *w = (AioEventWatch *)op;

    w->armed = false;
    if (!w->cb) {
        g_queue_remove(&w->ctx->watches, w);
        g_free(w);
        return false;
    }
    if (res < 0) {
        if (res != -EINTR && res != -EAGAIN && res != -ECANCELED) {
            g_warning("eventfd read on the ring failed: %s", g_strerror(-res));
        }
        return false;
    }
    w->cb(w->opaque);
    return true;
}

AioEventWatch *aio_ring_watch_eventfd(AioContext *ctx, int fd, IOHandler *cb,
                                      void *opaque)
{
    AioEventWatch *w;

    if (!ctx->use_ring) {
        return NULL;
    }
    w = g_new0(AioEventWatch, 1);
    w->op.complete = aio_watch_done;
    w->ctx = ctx;
    w->fd = fd;
    w->cb = cb;
    w->opaque = opaque;
    g_queue_push_tail(&ctx->watches, w);
    return w;
}

void aio_ring_unwatch_eventfd(AioEventWatch *w)
{
    uint64_t one = 1;

    if (!w) {
        return;
    }
    w->cb = NULL;
    if (!w->armed) {
        g_queue_remove(&w->ctx->watches, w);
        g_free(w);
        return;
    }
    /* complete the read in flight; its CQE frees the watch */
    while (write(w->fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

/* Put the loop's own requests on the ring: the epoll fd poll and one read
 * per watched eventfd.  A full SQ leaves them for the next iteration. */
static void aio_ring_arm(AioContext *ctx)
{
    struct io_uring_sqe *sqe;

    if (!ctx->epoll_polled && (sqe = aio_ring_get_sqe(ctx))) {
        if (ctx->poll_multishot) {
            io_uring_prep_poll_multishot(sqe, ctx->epfd, POLLIN);
        } else {
            io_uring_prep_poll_add(sqe, ctx->epfd, POLLIN);
        }
        io_uring_sqe_set_data(sqe, &ctx->epoll_op);
        ctx->epoll_polled = true;
    }
    for (GList *l = ctx->watches.head; l; l = l->next) {
        AioEventWatch *w = l->data;

        if (w->cb && !w->armed && (sqe = aio_ring_get_sqe(ctx))) {
            io_uring_prep_read(sqe, w->fd, &w->val, sizeof(w->val), 0);
            io_uring_sqe_set_data(sqe, &w->op);
            w->armed = true;
        }
    }
}

/* Submit what is queued and wait up to @timeout_ns (-1: forever, 0: do
 * not wait) for one CQE: a single io_uring_enter(), or none at all when
 * there is nothing to submit and nothing to wait for. */
static void aio_ring_wait(AioContext *ctx, int64_t timeout_ns)
{
    struct __kernel_timespec ts = {
        .tv_sec = timeout_ns / 1000000000,
        .tv_nsec = timeout_ns % 1000000000,
    };
    struct io_uring_cqe *cqe;
    int r;

    if (timeout_ns == 0 || io_uring_cq_ready(&ctx->ring)) {
        r = io_uring_sq_ready(&ctx->ring) ? io_uring_submit(&ctx->ring) : 0;
    } else {
        r = io_uring_submit_and_wait_timeout(&ctx->ring, &cqe, 1,
                                             timeout_ns < 0 ? NULL : &ts,
                                             NULL);
    }
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN &&
        r != -EBUSY) {
        g_error("io_uring_enter failed: %s", g_strerror(-r));
    }
}

/* Dispatch every CQE; a batch is copied out and the CQ advanced before
 * any completion runs (they may queue SQEs and re-enter the kernel). */
static bool aio_ring_reap(AioContext *ctx)
{
    struct io_uring_cqe *cqes[AIO_RING_REAP];
    AioRingOp *ops[AIO_RING_REAP];
    int res[AIO_RING_REAP];
    uint32_t flags[AIO_RING_REAP];
    bool progress = false;
    unsigned n;

    do {
        n = io_uring_peek_batch_cqe(&ctx->ring, cqes, AIO_RING_REAP);
        for (unsigned i = 0; i < n; i++) {
            ops[i] = io_uring_cqe_get_data(cqes[i]);
            res[i] = cqes[i]->res;
            flags[i] = cqes[i]->flags;
        }
        io_uring_cq_advance(&ctx->ring, n);
        for (unsigned i = 0; i < n; i++) {
            if (ops[i]) {
                progress |= ops[i]->complete(ops[i], res[i], flags[i]);
            }
        }
    } while (n == AIO_RING_REAP);
    return progress;
}

/* Ring-mode round: arm, one enter, reap.  epoll is only asked when its
 * poll fired or its last answer was non-empty (level-triggered fds may
 * still be ready): the poll CQE is posted by task work that runs on our
 * next return to user space, so no syscall is needed to notice it. */
static bool aio_ring_poll(AioContext *ctx, int64_t timeout_ns)
{
    bool progress;

    aio_ring_arm(ctx);
    aio_ring_wait(ctx, ctx->epoll_dirty ? 0 : timeout_ns);
    progress = aio_ring_reap(ctx);
    if (ctx->epoll_dirty) {
        ctx->epoll_dirty = aio_epoll_dispatch(ctx, 0);
        progress |= ctx->epoll_dirty;
    }
    return progress;
}
#else
/* Without liburing every context is in epoll mode. */
static void aio_ring_init(AioContext *ctx)
{
}

/* Nothing to tear down in epoll mode. */
static void aio_ring_cleanup(AioContext *ctx)
{
}

AioEventWatch *aio_ring_watch_eventfd(AioContext *ctx, int fd, IOHandler *cb,
                                      void *opaque)
{
    return NULL;
}

void aio_ring_unwatch_eventfd(AioEventWatch *w)
{
}
#endif

/* One wait + dispatch round; @timeout_ns as for aio_epoll_wait. */
static bool aio_poll_once(AioContext *ctx, int64_t timeout_ns)
{
    bool progress;

#ifdef CONFIG_LINUX_IO_URING
    if (ctx->use_ring) {
        progress = aio_ring_poll(ctx, timeout_ns);
    } else
#endif
    {
        progress = aio_epoll_dispatch(ctx, timeout_ns);
    }
    progress |= aio_bh_dispatch(ctx);
    progress |= aio_timers_dispatch(ctx);
    return progress;
}

/* A home-thread aio_notify() counts as one dispatched event, exactly as
 * the eventfd handler would. */
bool aio_poll(AioContext *ctx, bool blocking)
{
    bool kicked;

    __atomic_store_n(&ctx->home, pthread_self(), __ATOMIC_SEQ_CST);
    kicked = __atomic_exchange_n(&ctx->kicked, false, __ATOMIC_RELAXED);
    for (;;) {
        int64_t timeout = 0;
        bool progress;

        if (blocking && !kicked && !aio_bh_pending(ctx)) {
            timeout = aio_timers_deadline(ctx);
        }
        progress = aio_poll_once(ctx, timeout) || kicked;
        if (progress || !blocking) {
            /* this call returns: it answers any kick made meanwhile */
            __atomic_store_n(&ctx->kicked, false, __ATOMIC_RELAXED);
            return progress;
        }
    }
}

/* ---- coroutine helpers ---- */

/* Timer callback of co_sleep_ns(): wake the sleeper from the loop. */
static void co_sleep_cb(void *opaque)
{
    co_enter(opaque);
}

void coroutine_fn co_sleep_ns(int64_t ns)
{
    AioTimer t = {
        .ctx = aio_get_default(),
        .cb = co_sleep_cb,
        .opaque = co_self(),
    };

    g_assert(t.opaque);
    t.link.data = &t;
    aio_timer_mod(&t, clock_ns() + MAX(ns, 0));
    co_yield();
    aio_timer_del(&t);
}

void coroutine_fn co_yield_to_loop(void)
{
    Coroutine *self = co_self();

    g_assert(self);
    aio_co_schedule(aio_get_default(), self);
    co_yield();
}

typedef struct SyncCo {
    CoroutineEntry *fn;
    void *opaque;
    bool done;
} SyncCo;

/* The coroutine co_run_sync() starts: run the function, wake the poller. */
static void coroutine_fn sync_co_entry(void *opaque)
{
    SyncCo *s = opaque;

    s->fn(s->opaque);
    s->done = true;
    aio_notify(aio_get_default());
}

void co_run_sync(CoroutineEntry *fn, void *opaque)
{
    SyncCo s = { .fn = fn, .opaque = opaque };

    if (co_in_coroutine()) {
        fn(opaque);
        return;
    }
    co_enter(co_create(sync_co_entry, &s));
    AIO_WAIT_WHILE(aio_get_default(), !s.done);
}
