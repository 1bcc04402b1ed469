#include "config.h"
/*
 * I/O engine tests, run once per engine.  Unavailable engines are skipped.
 * The native (linux-aio) engine is exercised with O_DIRECT and aligned
 * buffers, so the files live in a directory that supports O_DIRECT
 * (STRATA_TEST_DIR, else /var/tmp, else the build directory).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>

#include "util/cutils.h"

#include "util/aio.h"
#include "util/aio-internal.h"
#include "tests/unit/test-co.h"

#define BLK 4096

typedef struct EngineFixture {
    AioEngineType type;
    AioContext *ctx;
    AioEngine *e;
    char *path;
    int fd;
} EngineFixture;

/* Directory for temp files: must not be tmpfs for O_DIRECT. */
static const char *test_dir(void)
{
    const char *d = g_getenv("STRATA_TEST_DIR");

    if (d) {
        return d;
    }
    return g_file_test("/var/tmp", G_FILE_TEST_IS_DIR) ? "/var/tmp" : ".";
}

/* Block-aligned buffer (O_DIRECT requirement). */
static void *aligned_buf(size_t len)
{
    void *p = NULL;

    g_assert_cmpint(posix_memalign(&p, BLK, len), ==, 0);
    return p;
}

/* Deterministic, position- and seed-dependent bytes. */
static void fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 7 + seed * 13 + (i >> 12));
    }
}

/* Test data: engine type, plus this bit to run with the loop in epoll
 * mode instead of waiting on its io_uring. */
#define MODE_EPOLL 0x100

/* Start the test on a fresh default context in the wait mode of @data. */
static AioEngineType fixture_mode(int data)
{
    aio_force_epoll(data & MODE_EPOLL);
    aio_context_free(aio_get_default());
    if (data & MODE_EPOLL) {
        g_assert_false(aio_context_uses_ring(aio_get_default()));
    }
    return data & ~MODE_EPOLL;
}

/* Open the temp file; false (test skipped) if the engine is unusable.
 * @data: engine type | MODE_EPOLL. */
static bool fixture_setup(EngineFixture *f, int data)
{
    AioEngineType type = fixture_mode(data);

    memset(f, 0, sizeof(*f));
    f->type = type;
    f->fd = -1;
    if (!aio_engine_available(type)) {
        g_autofree char *msg = g_strdup_printf(
            "engine %s not usable on this kernel/build", aio_engine_name(type));
        g_test_skip(msg);
        return false;
    }
    f->path = g_strdup_printf("%s/strata-engine-XXXXXX", test_dir());
    f->fd = g_mkstemp_full(f->path, O_RDWR, 0600);
    g_assert_cmpint(f->fd, >=, 0);
    close(f->fd);
    if (type == AIO_ENGINE_NATIVE) {
        f->fd = open(f->path, O_RDWR | O_DIRECT);
        if (f->fd < 0 && errno == EINVAL) {
            g_test_skip("O_DIRECT not supported in the test directory");
            unlink(f->path);
            return false;
        }
    } else {
        f->fd = open(f->path, O_RDWR);
    }
    g_assert_cmpint(f->fd, >=, 0);
    f->ctx = aio_get_default();
    f->e = aio_engine_get(f->ctx, type, &error_abort);
    g_assert_nonnull(f->e);
    return true;
}

/* Close and remove the temp file. */
static void fixture_teardown(EngineFixture *f)
{
    if (f->fd >= 0) {
        close(f->fd);
    }
    if (f->path) {
        unlink(f->path);
    }
    g_free(f->path);
}

/* ---- pattern write/read with several iovecs ---- */

static void coroutine_fn rw_iov_co(void *opaque)
{
    EngineFixture *f = opaque;
    const size_t len = 8 * BLK;
    uint8_t *src = aligned_buf(len), *dst = aligned_buf(len);
    struct iovec wiov[4] = {
        { src, BLK }, { src + BLK, 2 * BLK },
        { src + 3 * BLK, BLK }, { src + 4 * BLK, 4 * BLK },
    };
    struct iovec riov[3] = {
        { dst, 3 * BLK }, { dst + 3 * BLK, 4 * BLK }, { dst + 7 * BLK, BLK },
    };

    fill_pattern(src, len, 1);
    memset(dst, 0xaa, len);
    g_assert_cmpint(aio_engine_co_rw(f->e, f->fd, AIO_OP_WRITE, BLK,
                                     wiov, 4), ==, len);
    g_assert_cmpint(aio_engine_co_rw(f->e, f->fd, AIO_OP_READ, BLK,
                                     riov, 3), ==, len);
    g_assert_cmpmem(src, len, dst, len);
    free(src);
    free(dst);
}

/* Write/read with differently split iovecs, plain and fixed fd. */
static void test_rw_iov(gconstpointer data)
{
    EngineFixture f;

    if (!fixture_setup(&f, GPOINTER_TO_INT(data))) {
        return;
    }
    run_in_coroutine(rw_iov_co, &f);
    /* the same through a registered (fixed) fd */
    aio_engine_register_fd(f.e, f.fd);
    run_in_coroutine(rw_iov_co, &f);
    aio_engine_unregister_fd(f.e, f.fd);
    run_in_coroutine(rw_iov_co, &f);
    fixture_teardown(&f);
}

/* ---- short read at EOF ---- */

static void coroutine_fn eof_co(void *opaque)
{
    EngineFixture *f = opaque;
    uint8_t *buf = aligned_buf(4 * BLK);
    struct iovec iov[2] = { { buf, BLK }, { buf + BLK, 3 * BLK } };

    fill_pattern(buf, 4 * BLK, 2);
    g_assert_cmpint(aio_engine_co_rw(f->e, f->fd, AIO_OP_WRITE, 0,
                                     iov, 1), ==, BLK);
    g_assert_cmpint(aio_engine_co_rw(f->e, f->fd, AIO_OP_WRITE, BLK,
                                     iov, 1), ==, BLK);
    /* file is 2 blocks: reading 4 from block 1 stops at EOF after 1 */
    g_assert_cmpint(aio_engine_co_rw(f->e, f->fd, AIO_OP_READ, BLK,
                                     iov, 2), ==, BLK);
    /* entirely past EOF */
    g_assert_cmpint(aio_engine_co_rw(f->e, f->fd, AIO_OP_READ, 2 * BLK,
                                     iov, 2), ==, 0);
    free(buf);
}

/* Reads crossing or beyond EOF return the bytes available. */
static void test_eof(gconstpointer data)
{
    EngineFixture f;

    if (!fixture_setup(&f, GPOINTER_TO_INT(data))) {
        return;
    }
    run_in_coroutine(eof_co, &f);
    fixture_teardown(&f);
}

/* ---- many concurrent requests ---- */

#define NCONC 300

typedef struct ConcReq {
    EngineFixture *f;
    AioOp op;
    int index;
    uint8_t *buf;
    int64_t ret;
    bool done;
} ConcReq;

/* One block-sized request of a concurrent round. */
static void coroutine_fn conc_co(void *opaque)
{
    ConcReq *r = opaque;
    struct iovec iov = { r->buf, BLK };

    r->ret = aio_engine_co_rw(r->f->e, r->f->fd, r->op,
                              (int64_t)r->index * BLK, &iov, 1);
    r->done = true;
}

/* Have all requests of the round completed? */
static bool conc_all_done(ConcReq *reqs)
{
    for (int i = 0; i < NCONC; i++) {
        if (!reqs[i].done) {
            return false;
        }
    }
    return true;
}

/* Start NCONC coroutines doing @op at once, then wait for all of them. */
static void conc_round(EngineFixture *f, ConcReq *reqs, uint8_t *bufs,
                       AioOp op)
{
    for (int i = 0; i < NCONC; i++) {
        reqs[i] = (ConcReq) { f, op, i, bufs + (size_t)i * BLK, -1, false };
    }
    for (int i = 0; i < NCONC; i++) {
        co_enter(co_create(conc_co, &reqs[i]));
    }
    AIO_WAIT_WHILE(f->ctx, !conc_all_done(reqs));
    for (int i = 0; i < NCONC; i++) {
        g_assert_cmpint(reqs[i].ret, ==, BLK);
    }
}

/* NCONC concurrent writes then reads, data verified. */
static void test_concurrent(gconstpointer data)
{
    EngineFixture f;
    ConcReq *reqs = g_new0(ConcReq, NCONC);
    uint8_t *src, *dst;

    if (!fixture_setup(&f, GPOINTER_TO_INT(data))) {
        g_free(reqs);
        return;
    }
    src = aligned_buf((size_t)NCONC * BLK);
    dst = aligned_buf((size_t)NCONC * BLK);
    for (int i = 0; i < NCONC; i++) {
        fill_pattern(src + (size_t)i * BLK, BLK, i);
    }
    memset(dst, 0, (size_t)NCONC * BLK);
    conc_round(&f, reqs, src, AIO_OP_WRITE);
    conc_round(&f, reqs, dst, AIO_OP_READ);
    g_assert_cmpmem(src, NCONC * BLK, dst, NCONC * BLK);
    free(src);
    free(dst);
    g_free(reqs);
    fixture_teardown(&f);
}

/* ---- fdatasync and errors ---- */

static void coroutine_fn flush_co(void *opaque)
{
    EngineFixture *f = opaque;
    uint8_t *buf = aligned_buf(BLK);
    struct iovec iov = { buf, BLK };

    fill_pattern(buf, BLK, 3);
    g_assert_cmpint(aio_engine_co_rw(f->e, f->fd, AIO_OP_WRITE, 0,
                                     &iov, 1), ==, BLK);
    g_assert_cmpint(aio_engine_co_rw(f->e, f->fd, AIO_OP_FDATASYNC, 0,
                                     NULL, 0), ==, 0);
    free(buf);
}

/* fdatasync after a write succeeds. */
static void test_flush(gconstpointer data)
{
    EngineFixture f;

    if (!fixture_setup(&f, GPOINTER_TO_INT(data))) {
        return;
    }
    run_in_coroutine(flush_co, &f);
    fixture_teardown(&f);
}

/* Every op on a closed fd gives -EBADF; the engine survives. */
static void coroutine_fn badfd_co(void *opaque)
{
    EngineFixture *f = opaque;
    uint8_t *buf = aligned_buf(BLK);
    struct iovec iov = { buf, BLK };
    int bad = 1000 + f->fd;     /* not open */

    fill_pattern(buf, BLK, 4);
    g_assert_cmpint(fcntl(bad, F_GETFD), ==, -1);
    g_assert_cmpint(aio_engine_co_rw(f->e, bad, AIO_OP_READ, 0, &iov, 1),
                    ==, -EBADF);
    g_assert_cmpint(aio_engine_co_rw(f->e, bad, AIO_OP_WRITE, 0, &iov, 1),
                    ==, -EBADF);
    g_assert_cmpint(aio_engine_co_rw(f->e, bad, AIO_OP_FDATASYNC, 0,
                                     NULL, 0), ==, -EBADF);
    /* the engine still works afterwards */
    g_assert_cmpint(aio_engine_co_rw(f->e, f->fd, AIO_OP_WRITE, 0,
                                     &iov, 1), ==, BLK);
    free(buf);
}

/* Errors come back as -errno, not crashes. */
static void test_badfd(gconstpointer data)
{
    EngineFixture f;

    if (!fixture_setup(&f, GPOINTER_TO_INT(data))) {
        return;
    }
    run_in_coroutine(badfd_co, &f);
    fixture_teardown(&f);
}

/* ---- dispatcher: short transfers and retries, via a mock engine ---- */

typedef struct MockEngine {
    AioEngine base;
    unsigned calls;
    size_t chunk;       /* at most this many bytes per operation */
} MockEngine;

/* One synchronous, deliberately short operation; every 3rd call -EINTR,
 * every 5th -EAGAIN, to exercise the dispatcher's loops. */
static int64_t coroutine_fn mock_submit(AioEngine *e, ThreadPoolLane *lane,
                                        int fd, AioOp op, int64_t offset,
                                        struct iovec *iov, int niov)
{
    MockEngine *m = (MockEngine *)e;
    struct iovec one;
    ssize_t r;

    m->calls++;
    if (m->calls % 3 == 0) {
        return -EINTR;
    }
    if (m->calls % 5 == 0) {
        return -EAGAIN;
    }
    if (op == AIO_OP_FDATASYNC) {
        return fdatasync(fd) < 0 ? -errno : 0;
    }
    g_assert_cmpint(niov, >, 0);
    one = (struct iovec) { iov[0].iov_base, MIN(iov[0].iov_len, m->chunk) };
    r = op == AIO_OP_READ ? preadv(fd, &one, 1, offset)
                          : pwritev(fd, &one, 1, offset);
    return r < 0 ? -errno : r;
}

static const AioEngineOps mock_ops = {
    .type = AIO_ENGINE_THREADS,
    .name = "mock",
    .submit = mock_submit,
};

/* Whole transfers despite 1000-byte operations and spurious retries. */
static void coroutine_fn mock_co(void *opaque)
{
    EngineFixture *f = opaque;
    MockEngine m = { .base = { &mock_ops, f->ctx }, .chunk = 1000 };
    const size_t len = 3 * BLK + 100;
    g_autofree uint8_t *src = g_malloc(len), *dst = g_malloc0(len + 50);
    struct iovec wiov[3] = {
        { src, 10 }, { src + 10, 2 * BLK },
        { src + 10 + 2 * BLK, len - 10 - 2 * BLK },
    };
    struct iovec riov[2] = { { dst, 5000 }, { dst + 5000, len + 50 - 5000 } };

    fill_pattern(src, len, 5);
    g_assert_cmpint(aio_engine_co_rw(&m.base, f->fd, AIO_OP_WRITE, 0,
                                     wiov, 3), ==, len);
    /* caller's iovecs are left untouched */
    g_assert_true(wiov[1].iov_base == src + 10);
    g_assert_cmpint(wiov[1].iov_len, ==, 2 * BLK);
    /* asks for 50 bytes more than the file has: stops at EOF */
    g_assert_cmpint(aio_engine_co_rw(&m.base, f->fd, AIO_OP_READ, 0,
                                     riov, 2), ==, len);
    g_assert_cmpmem(src, len, dst, len);
    g_assert_cmpint(aio_engine_co_rw(&m.base, f->fd, AIO_OP_FDATASYNC, 0,
                                     NULL, 0), ==, 0);
    g_assert_cmpint(m.calls, >, 2 * DIV_ROUND_UP(len, 1000));
}

static void test_dispatch_short(void)
{
    EngineFixture f;

    if (!fixture_setup(&f, AIO_ENGINE_THREADS)) {
        return;
    }
    run_in_coroutine(mock_co, &f);
    fixture_teardown(&f);
}

/* ---- selection ---- */

static void test_names(void)
{
    AioEngineType t;

    g_assert_true(aio_engine_parse("threads", &t));
    g_assert_cmpint(t, ==, AIO_ENGINE_THREADS);
    g_assert_true(aio_engine_parse("native", &t));
    g_assert_cmpint(t, ==, AIO_ENGINE_NATIVE);
    g_assert_true(aio_engine_parse("io_uring", &t));
    g_assert_cmpint(t, ==, AIO_ENGINE_IO_URING);
    g_assert_false(aio_engine_parse("bogus", &t));
    g_assert_cmpstr(aio_engine_name(AIO_ENGINE_IO_URING), ==, "io_uring");
    g_assert_true(aio_engine_available(AIO_ENGINE_THREADS));
    t = aio_engine_default();
    g_assert_true(aio_engine_available(t));
    g_assert_cmpint(t, ==, aio_engine_available(AIO_ENGINE_IO_URING)
                    ? AIO_ENGINE_IO_URING : AIO_ENGINE_THREADS);
    if (g_test_verbose()) {
        g_test_message("io_uring %s, native %s",
                       aio_engine_available(AIO_ENGINE_IO_URING) ? "yes" : "no",
                       aio_engine_available(AIO_ENGINE_NATIVE) ? "yes" : "no");
    }
}

/* A second context gets its own engine instance; same context shares. */
static void test_instances(void)
{
    AioEngineType t = aio_engine_default();
    AioContext *ctx = aio_context_new(&error_abort);
    AioEngine *a = aio_engine_get(aio_get_default(), t, &error_abort);
    AioEngine *b = aio_engine_get(ctx, t, &error_abort);

    g_assert_true(a == aio_engine_get(aio_get_default(), t, &error_abort));
    g_assert_true(a != b);
    aio_context_free(ctx);
}

/* Where io_uring works, the loop waits on it unless told otherwise. */
static void test_ring_mode(void)
{
    const char *env = g_getenv("STRATA_AIO_EPOLL");
    bool want = aio_engine_available(AIO_ENGINE_IO_URING) &&
                !(env && *env && strcmp(env, "0"));

    fixture_mode(0);
    g_assert_cmpint(aio_context_uses_ring(aio_get_default()), ==, want);
}

int main(int argc, char **argv)
{
    static const AioEngineType types[] = {
        AIO_ENGINE_THREADS, AIO_ENGINE_NATIVE, AIO_ENGINE_IO_URING,
    };
    static const struct {
        const char *name;
        GTestDataFunc fn;
    } cases[] = {
        { "rw-iov", test_rw_iov },
        { "eof", test_eof },
        { "concurrent", test_concurrent },
        { "fdatasync", test_flush },
        { "bad-fd", test_badfd },
    };

    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engines/names", test_names);
    g_test_add_func("/engines/instances", test_instances);
    g_test_add_func("/engines/dispatch/short-transfers", test_dispatch_short);
    g_test_add_func("/engines/ring-mode", test_ring_mode);
    for (unsigned m = 0; m < 2; m++) {
        for (unsigned i = 0; i < G_N_ELEMENTS(types); i++) {
            for (unsigned j = 0; j < G_N_ELEMENTS(cases); j++) {
                g_autofree char *path = g_strdup_printf(
                    "/engines/%s/%s/%s", m ? "epoll" : "ring",
                    aio_engine_name(types[i]), cases[j].name);
                g_test_add_data_func(path, GINT_TO_POINTER(
                                         types[i] | (m ? MODE_EPOLL : 0)),
                                     cases[j].fn);
            }
        }
    }
    return g_test_run();
}
