#include "config.h"
/*
 * Request path tests: a memory-backed test protocol driver ("testmem")
 * records what the core hands it, so the tests can assert splitting,
 * alignment, write-zeroes fallback, FUA emulation, flush skipping,
 * detect-zeroes, block status, drain and backend queuing.
 */
#include <errno.h>
#include <string.h>
#include <glib.h>
#include "block/driver.h"
#include "util/cutils.h"

typedef struct TestMem {
    uint8_t *data;
    int64_t size;
    uint32_t align;
    uint64_t max_transfer;
    bool no_zeroes;
    int64_t latency_ns;
    int reads, writes, zeroes, flushes, discards;
    int64_t max_req;
    bool misaligned_seen;
    bool fua_seen;
} TestMem;

static const BlockOptDesc testmem_opts[] = {
    { "size", OPT_SIZE, "size", "1M" },
    { "align", OPT_NUMBER, "request alignment", "1" },
    { "max-transfer", OPT_SIZE, "max transfer", "0" },
    { "no-zeroes", OPT_BOOL, "no write-zeroes support", "off" },
    { "fua", OPT_BOOL, "honour FUA", "off" },
    { "latency-ns", OPT_NUMBER, "latency", "0" },
    { NULL },
};

static int testmem_open(BlockDriverState *bs, QDict *opts, int flags,
                        Error **errp)
{
    TestMem *s = bs->opaque;

    s->size = bdrv_opt_size(opts, "size", MiB, errp);
    s->align = bdrv_opt_number(opts, "align", 1, errp);
    s->max_transfer = bdrv_opt_size(opts, "max-transfer", 0, errp);
    s->no_zeroes = bdrv_opt_bool(opts, "no-zeroes", false, errp);
    s->latency_ns = bdrv_opt_number(opts, "latency-ns", 0, errp);
    if (bdrv_opt_bool(opts, "fua", false, errp)) {
        bs->supported_write_flags = BDRV_REQ_FUA;
    }
    for (const BlockOptDesc *d = testmem_opts; d->name; d++) {
        qdict_del(opts, d->name);
    }
    s->data = g_malloc0(s->size);
    return 0;
}

static void testmem_close(BlockDriverState *bs)
{
    TestMem *s = bs->opaque;
    g_free(s->data);
}

static void testmem_refresh_limits(BlockDriverState *bs, Error **errp)
{
    TestMem *s = bs->opaque;

    bs->bl.request_alignment = s->align;
    bs->bl.max_transfer = s->max_transfer;
    bs->bl.min_mem_alignment = s->align;
}

/* Common request accounting: alignment and size seen by the driver. */
static void testmem_note(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    TestMem *s = bs->opaque;

    if (offset % s->align || bytes % s->align) {
        s->misaligned_seen = true;
    }
    s->max_req = MAX(s->max_req, bytes);
    g_assert_cmpint(bytes, >, 0);
}

static void coroutine_fn testmem_delay(TestMem *s)
{
    if (s->latency_ns) {
        co_sleep_ns(s->latency_ns);
    }
}

static int coroutine_fn testmem_preadv(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, IOVector *qiov,
                                       BdrvRequestFlags flags)
{
    TestMem *s = bs->opaque;

    testmem_note(bs, offset, bytes);
    s->reads++;
    testmem_delay(s);
    g_assert_cmpint(offset + bytes, <=, s->size);
    iov_vec_from_buf(qiov, 0, s->data + offset, bytes);
    return 0;
}

static int coroutine_fn testmem_pwritev(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes, IOVector *qiov,
                                        BdrvRequestFlags flags)
{
    TestMem *s = bs->opaque;

    testmem_note(bs, offset, bytes);
    s->writes++;
    s->fua_seen |= !!(flags & BDRV_REQ_FUA);
    testmem_delay(s);
    if (offset + bytes > s->size) {
        return -ENOSPC;
    }
    iov_vec_to_buf(qiov, 0, s->data + offset, bytes);
    return 0;
}

static int coroutine_fn testmem_pwrite_zeroes(BlockDriverState *bs,
                                              int64_t offset, int64_t bytes,
                                              BdrvRequestFlags flags)
{
    TestMem *s = bs->opaque;

    if (s->no_zeroes) {
        return -ENOTSUP;
    }
    s->zeroes++;
    memset(s->data + offset, 0, bytes);
    return 0;
}

static int coroutine_fn testmem_flush(BlockDriverState *bs)
{
    TestMem *s = bs->opaque;
    s->flushes++;
    return 0;
}

static int coroutine_fn testmem_pdiscard(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes)
{
    TestMem *s = bs->opaque;
    s->discards++;
    return 0;
}

static int64_t coroutine_fn testmem_getlength(BlockDriverState *bs)
{
    TestMem *s = bs->opaque;
    return s->size;
}

static const BlockDriverIO testmem_io = {
    .co_preadv = testmem_preadv,
    .co_pwritev = testmem_pwritev,
    .co_pwrite_zeroes = testmem_pwrite_zeroes,
    .co_pdiscard = testmem_pdiscard,
    .co_flush_to_disk = testmem_flush,
    .co_getlength = testmem_getlength,
};

static const BlockDriver bdrv_testmem = {
    .format_name = "testmem",
    .kind = BDRV_KIND_PROTOCOL,
    .instance_size = sizeof(TestMem),
    .protocol_name = "testmem",
    .open_opts = testmem_opts,
    .open = testmem_open,
    .close = testmem_close,
    .refresh_limits = testmem_refresh_limits,
    .io = &testmem_io,
};

/* Open a testmem node under a backend; @extra is "key=value,..." */
static BlockBackend *open_mem(const char *extra, int flags)
{
    QDict *opts = qdict_new();
    BlockBackend *blk;

    qdict_put_str(opts, "driver", "testmem");
    if (extra) {
        g_auto(GStrv) kv = g_strsplit(extra, ",", -1);
        for (int i = 0; kv[i]; i++) {
            g_auto(GStrv) p = g_strsplit(kv[i], "=", 2);
            qdict_put_str(opts, p[0], p[1]);
        }
    }
    blk = blk_new_open(NULL, NULL, opts, flags | BDRV_O_RDWR, &error_abort);
    g_assert(blk);
    return blk;
}

static TestMem *mem_of(BlockBackend *blk)
{
    return blk_bs(blk)->opaque;
}

static void test_bounds(void)
{
    BlockBackend *blk = open_mem("size=64k", 0);
    uint8_t buf[512] = { 0 };

    g_assert_cmpint(blk_getlength(blk), ==, 64 * KiB);
    g_assert_cmpint(blk_pread(blk, 64 * KiB - 512, 512, buf, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 64 * KiB - 256, 512, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pread(blk, 64 * KiB, 1, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite(blk, 64 * KiB, 1, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pread(blk, -1, 1, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pread(blk, INT64_MAX - 10, 100, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite_zeroes(blk, INT64_MAX - 10, 100, 0), ==, -EIO);
    g_assert_cmpint(blk_pdiscard(blk, 64 * KiB, 512), ==, -EIO);
    g_assert_cmpint(blk_pread(blk, 0, 0, buf, 0), ==, 0);
    blk_unref(blk);
}

static void test_beyond_eof_allowed(void)
{
    BlockBackend *blk = open_mem("size=64k", 0);
    uint8_t buf[512] = { 1 };

    blk_set_allow_write_beyond_eof(blk, true);
    /* the driver's own limit answers now, not the core's EOF check */
    g_assert_cmpint(blk_pwrite(blk, 64 * KiB, 512, buf, 0), ==, -ENOSPC);
    blk_unref(blk);
}

static void test_read_only(void)
{
    QDict *opts = qdict_new();
    BlockBackend *blk;
    uint8_t buf[512] = { 0 };

    qdict_put_str(opts, "driver", "testmem");
    blk = blk_new_open(NULL, NULL, opts, 0, &error_abort);
    g_assert(blk_is_read_only(blk));
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, -EPERM);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 512, 0), ==, -EPERM);
    g_assert_cmpint(blk_pread(blk, 0, 512, buf, 0), ==, 0);
    blk_unref(blk);
}

static void test_split(void)
{
    BlockBackend *blk = open_mem("max-transfer=4096", 0);
    TestMem *s = mem_of(blk);
    g_autofree uint8_t *buf = g_malloc(10000);
    g_autofree uint8_t *rbuf = g_malloc0(10000);

    for (int i = 0; i < 10000; i++) {
        buf[i] = i * 7;
    }
    g_assert_cmpint(blk_pwrite(blk, 100, 10000, buf, 0), ==, 0);
    g_assert_cmpint(s->writes, ==, 3);
    g_assert_cmpint(s->max_req, <=, 4096);
    g_assert_cmpint(blk_pread(blk, 100, 10000, rbuf, 0), ==, 0);
    g_assert_cmpint(s->reads, ==, 3);
    g_assert(memcmp(buf, rbuf, 10000) == 0);
    blk_unref(blk);
}

static void test_rmw(void)
{
    BlockBackend *blk = open_mem("align=4096", 0);
    TestMem *s = mem_of(blk);
    uint8_t pat[100], rbuf[300];

    memset(s->data, 0xaa, s->size);
    memset(pat, 0x55, sizeof(pat));
    g_assert_cmpint(blk_pwrite(blk, 5000, 100, pat, 0), ==, 0);
    g_assert(!s->misaligned_seen);
    for (int i = 0; i < 8192; i++) {
        g_assert_cmpint(s->data[i], ==,
                        (i >= 5000 && i < 5100) ? 0x55 : 0xaa);
    }
    /* write straddling two blocks, read back unaligned */
    g_assert_cmpint(blk_pwrite(blk, 8000, 100, pat, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 7950, 300, rbuf, 0), ==, 0);
    for (int i = 0; i < 300; i++) {
        int off = 7950 + i;
        g_assert_cmpint(rbuf[i], ==, (off >= 8000 && off < 8100) ? 0x55 : 0xaa);
    }
    /* unaligned zero write: head/tail as data, middle as zeroes */
    g_assert_cmpint(blk_pwrite_zeroes(blk, 100, 3 * 4096, 0), ==, 0);
    g_assert(buffer_is_zero(s->data + 100, 3 * 4096));
    g_assert_cmpint(s->data[99], ==, 0xaa);
    g_assert_cmpint(s->data[100 + 3 * 4096], ==, 0xaa);
    g_assert(!s->misaligned_seen);
    blk_unref(blk);
}

static void test_zero_fallback(void)
{
    BlockBackend *blk = open_mem("size=4M,no-zeroes=on", 0);
    TestMem *s = mem_of(blk);

    memset(s->data, 0xff, s->size);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 1000, 3 * MiB, 0), ==, 0);
    g_assert_cmpint(s->zeroes, ==, 0);
    g_assert_cmpint(s->writes, >=, 3);
    g_assert_cmpint(s->max_req, <=, MiB);
    g_assert_cmpint(s->data[999], ==, 0xff);
    g_assert(buffer_is_zero(s->data + 1000, 3 * MiB));
    g_assert_cmpint(s->data[1000 + 3 * MiB], ==, 0xff);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 4096, BDRV_REQ_NO_FALLBACK),
                    ==, -ENOTSUP);
    blk_unref(blk);
}

static void test_fua_emulation(void)
{
    BlockBackend *blk = open_mem(NULL, 0);
    TestMem *s = mem_of(blk);
    uint8_t buf[512] = { 1 };

    blk_set_enable_write_cache(blk, false);
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(s->flushes, ==, 1);
    g_assert(!s->fua_seen);
    blk_unref(blk);

    blk = open_mem("fua=on", 0);
    s = mem_of(blk);
    blk_set_enable_write_cache(blk, false);
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(s->flushes, ==, 0);
    g_assert(s->fua_seen);
    blk_unref(blk);
}

static void test_flush_skip(void)
{
    BlockBackend *blk = open_mem(NULL, 0);
    TestMem *s = mem_of(blk);
    uint8_t buf[512] = { 1 };

    g_assert_cmpint(blk_flush(blk), ==, 0);
    g_assert_cmpint(s->flushes, ==, 0);
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    g_assert_cmpint(s->flushes, ==, 1);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    g_assert_cmpint(s->flushes, ==, 1);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 512, 0), ==, 0);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    g_assert_cmpint(s->flushes, ==, 2);
    blk_unref(blk);
}

static void test_detect_zeroes(void)
{
    BlockBackend *blk = open_mem("detect-zeroes=on", 0);
    TestMem *s = mem_of(blk);
    uint8_t zero[4096] = { 0 }, one[4096];

    memset(one, 1, sizeof(one));
    g_assert_cmpint(blk_pwrite(blk, 0, 4096, one, 0), ==, 0);
    g_assert_cmpint(s->writes, ==, 1);
    g_assert_cmpint(blk_pwrite(blk, 0, 4096, zero, 0), ==, 0);
    g_assert_cmpint(s->writes, ==, 1);
    g_assert_cmpint(s->zeroes, ==, 1);
    g_assert(buffer_is_zero(s->data, 4096));
    blk_unref(blk);
}

static void test_discard(void)
{
    BlockBackend *blk = open_mem(NULL, 0);
    TestMem *s = mem_of(blk);

    g_assert_cmpint(blk_pdiscard(blk, 0, 4096), ==, 0);
    g_assert_cmpint(s->discards, ==, 0);     /* discard=ignore: no-op */
    blk_unref(blk);
    blk = open_mem("discard=unmap", 0);
    s = mem_of(blk);
    g_assert_cmpint(blk_pdiscard(blk, 0, 4096), ==, 0);
    g_assert_cmpint(s->discards, ==, 1);
    blk_unref(blk);
}

static void test_block_status(void)
{
    BlockBackend *blk = open_mem("size=64k", 0);
    BlockDriverState *file = NULL;
    int64_t pnum = 0, map = -1;
    int depth = -1;
    int ret;

    ret = blk_block_status(blk, true, 4096, 1 * MiB, &pnum, &map, &file,
                           &depth);
    g_assert_cmpint(ret, ==, BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID |
                    BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_EOF);
    g_assert_cmpint(pnum, ==, 60 * KiB);
    g_assert_cmpint(map, ==, 4096);
    g_assert(file == blk_bs(blk));
    g_assert_cmpint(depth, ==, 1);
    ret = blk_block_status(blk, false, 64 * KiB, 512, &pnum, NULL, NULL, NULL);
    g_assert_cmpint(ret, ==, BDRV_BLOCK_EOF);
    g_assert_cmpint(pnum, ==, 0);
    g_assert_cmpint(blk_is_allocated(blk, 0, 512, &pnum), ==, 1);
    blk_unref(blk);
}

static void test_truncate(void)
{
    BlockBackend *blk = open_mem("size=64k", 0);
    Error *err = NULL;

    /* testmem has no truncate: the core reports it */
    g_assert_cmpint(blk_truncate(blk, 128 * KiB, false, PREALLOC_MODE_OFF,
                                 0, &err), ==, -ENOTSUP);
    g_assert(err);
    error_free(err);
    g_assert_cmpint(blk_getlength(blk), ==, 64 * KiB);
    blk_unref(blk);
}

typedef struct AsyncReq {
    BlockBackend *blk;
    int64_t offset;
    bool write;
    bool done;
    int ret;
    uint8_t buf[512];
} AsyncReq;

static void coroutine_fn async_req_entry(void *opaque)
{
    AsyncReq *r = opaque;

    if (r->write) {
        r->ret = blk_co_pwrite(r->blk, r->offset, 512, r->buf, 0);
    } else {
        r->ret = blk_co_pread(r->blk, r->offset, 512, r->buf, 0);
    }
    r->done = true;
}

static void async_start(AsyncReq *r)
{
    co_enter(co_create(async_req_entry, r));
}

static void test_drain(void)
{
    BlockBackend *blk = open_mem("latency-ns=20000000", 0);
    BlockDriverState *bs = blk_bs(blk);
    AsyncReq a = { .blk = blk }, b = { .blk = blk, .write = true };
    int64_t deadline;

    async_start(&a);
    g_assert(!a.done);
    g_assert_cmpint(bs->in_flight, ==, 1);
    bdrv_drained_begin(bs);
    g_assert(a.done);
    g_assert_cmpint(a.ret, ==, 0);
    g_assert_cmpint(bs->in_flight, ==, 0);

    /* new backend requests queue until the drained section ends */
    async_start(&b);
    deadline = clock_ns() + 60 * 1000000LL;
    while (clock_ns() < deadline) {
        aio_poll(aio_get_default(), false);
    }
    g_assert(!b.done);
    g_assert_cmpint(blk_in_flight(blk), ==, 0);
    bdrv_drained_end(bs);
    AIO_WAIT_WHILE(aio_get_default(), !b.done);
    g_assert_cmpint(b.ret, ==, 0);
    blk_unref(blk);
}

static void test_blk_drain(void)
{
    BlockBackend *blk = open_mem("latency-ns=10000000", 0);
    AsyncReq r[4];

    for (int i = 0; i < 4; i++) {
        r[i] = (AsyncReq) { .blk = blk, .offset = i * 512, .write = i & 1 };
        async_start(&r[i]);
    }
    g_assert_cmpint(blk_in_flight(blk), ==, 4);
    blk_drain(blk);
    g_assert_cmpint(blk_in_flight(blk), ==, 0);
    for (int i = 0; i < 4; i++) {
        g_assert(r[i].done);
        g_assert_cmpint(r[i].ret, ==, 0);
    }
    blk_unref(blk);
}

/* Concurrent overlapping unaligned writes must not lose each other's
 * bytes (RMW serialisation). */
static void test_rmw_serialise(void)
{
    BlockBackend *blk = open_mem("align=4096,latency-ns=5000000", 0);
    TestMem *s = mem_of(blk);
    AsyncReq a = { .blk = blk, .offset = 0, .write = true };
    AsyncReq b = { .blk = blk, .offset = 512, .write = true };

    memset(a.buf, 0x11, 512);
    memset(b.buf, 0x22, 512);
    async_start(&a);
    async_start(&b);
    AIO_WAIT_WHILE(aio_get_default(), !a.done || !b.done);
    g_assert_cmpint(a.ret, ==, 0);
    g_assert_cmpint(b.ret, ==, 0);
    g_assert_cmpint(s->data[0], ==, 0x11);
    g_assert_cmpint(s->data[511], ==, 0x11);
    g_assert_cmpint(s->data[512], ==, 0x22);
    g_assert_cmpint(s->data[1023], ==, 0x22);
    g_assert_cmpint(s->data[1024], ==, 0);
    blk_unref(blk);
}

static void test_misaligned_memory(void)
{
    BlockBackend *blk = open_mem("align=512", 0);
    TestMem *s = mem_of(blk);
    g_autofree uint8_t *raw = g_malloc(4096 + 1);
    uint8_t *buf = raw + 1;

    memset(buf, 0x5a, 4096);
    g_assert_cmpint(blk_pwrite(blk, 512, 4096, buf, 0), ==, 0);
    g_assert_cmpint(s->data[511], ==, 0);
    g_assert_cmpint(s->data[512], ==, 0x5a);
    g_assert_cmpint(s->data[512 + 4095], ==, 0x5a);
    memset(buf, 0, 4096);
    g_assert_cmpint(blk_pread(blk, 512, 4096, buf, 0), ==, 0);
    g_assert_cmpint(buf[0], ==, 0x5a);
    g_assert_cmpint(buf[4095], ==, 0x5a);
    blk_unref(blk);
}

/* ---- "testfmt": a format whose first half is allocated, over a file,
 * with an optional backing file, for block status merging ---- */

static int testfmt_open(BlockDriverState *bs, QDict *opts, int flags,
                        Error **errp)
{
    if (!bdrv_open_child(NULL, opts, "file", bs,
                         BDRV_CHILD_DATA | BDRV_CHILD_PRIMARY, false, errp)) {
        return -EINVAL;
    }
    bdrv_open_child(NULL, opts, "backing", bs, BDRV_CHILD_COW, true, errp);
    return 0;
}

static int coroutine_fn testfmt_block_status(BlockDriverState *bs,
                                             bool want_zero, int64_t offset,
                                             int64_t bytes, int64_t *pnum,
                                             int64_t *map,
                                             BlockDriverState **file)
{
    int64_t half = bdrv_co_getlength(bs->file->bs) / 2;

    if (offset < half) {
        *pnum = MIN(bytes, half - offset);
        *map = offset;
        *file = bs->file->bs;
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    *pnum = bytes;
    return 0;
}

static int coroutine_fn testfmt_preadv(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, IOVector *qiov,
                                       BdrvRequestFlags flags)
{
    return bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

static int64_t coroutine_fn testfmt_getlength(BlockDriverState *bs)
{
    return bdrv_co_getlength(bs->file->bs);
}

static const BlockDriverIO testfmt_io = {
    .co_preadv = testfmt_preadv,
    .co_block_status = testfmt_block_status,
    .co_getlength = testfmt_getlength,
};

static const BlockDriver bdrv_testfmt = {
    .format_name = "testfmt",
    .kind = BDRV_KIND_FORMAT,
    .supports_backing = true,
    .open = testfmt_open,
    .io = &testfmt_io,
};

static BlockBackend *open_chain(const char *backing_size)
{
    QDict *opts = qdict_new();

    qdict_put_str(opts, "driver", "testfmt");
    qdict_put_str(opts, "file.driver", "testmem");
    qdict_put_str(opts, "file.size", "64k");
    qdict_put_str(opts, "backing.driver", "testmem");
    qdict_put_str(opts, "backing.size", backing_size);
    return blk_new_open(NULL, NULL, opts, 0, &error_abort);
}

static void test_status_chain(void)
{
    BlockBackend *blk = open_chain("128k");
    BlockDriverState *top = blk_bs(blk), *file = NULL;
    int64_t pnum, map;
    int depth, ret;

    g_assert(top->backing);
    ret = blk_block_status(blk, true, 0, 64 * KiB, &pnum, &map, &file, &depth);
    g_assert_cmpint(ret, ==, BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID |
                    BDRV_BLOCK_ALLOCATED);
    g_assert_cmpint(pnum, ==, 32 * KiB);
    g_assert(file == top->file->bs);
    g_assert_cmpint(depth, ==, 1);
    ret = blk_block_status(blk, true, 32 * KiB, 64 * KiB, &pnum, &map, &file,
                           &depth);
    g_assert_cmpint(ret, ==, BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID |
                    BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_EOF);
    g_assert_cmpint(pnum, ==, 32 * KiB);
    g_assert(file == top->backing->bs);
    g_assert_cmpint(depth, ==, 2);
    /* top alone: unallocated, not zero (backing covers it) */
    ret = blk_block_status(blk, false, 32 * KiB, 64 * KiB, &pnum, NULL, NULL,
                           &depth);
    g_assert_cmpint(ret & (BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_ZERO), ==, 0);
    g_assert_cmpint(depth, ==, 0);
    g_assert_cmpint(blk_is_allocated(blk, 32 * KiB, 4096, &pnum), ==, 0);
    blk_unref(blk);
}

static void test_status_short_backing(void)
{
    BlockBackend *blk = open_chain("48k");
    int64_t pnum;
    int depth, ret;

    ret = blk_block_status(blk, true, 32 * KiB, 64 * KiB, &pnum, NULL, NULL,
                           &depth);
    g_assert_cmpint(ret & BDRV_BLOCK_DATA, !=, 0);
    g_assert_cmpint(pnum, ==, 16 * KiB);
    g_assert_cmpint(depth, ==, 2);
    ret = blk_block_status(blk, true, 48 * KiB, 64 * KiB, &pnum, NULL, NULL,
                           &depth);
    g_assert_cmpint(ret, ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED |
                    BDRV_BLOCK_EOF);
    g_assert_cmpint(pnum, ==, 16 * KiB);
    g_assert_cmpint(depth, ==, 2);
    blk_unref(blk);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    bdrv_init();
    bdrv_register(&bdrv_testmem);
    bdrv_register(&bdrv_testfmt);
    g_test_add_func("/block/io/bounds", test_bounds);
    g_test_add_func("/block/io/beyond-eof-allowed", test_beyond_eof_allowed);
    g_test_add_func("/block/io/read-only", test_read_only);
    g_test_add_func("/block/io/split", test_split);
    g_test_add_func("/block/io/rmw", test_rmw);
    g_test_add_func("/block/io/rmw-serialise", test_rmw_serialise);
    g_test_add_func("/block/io/misaligned-memory", test_misaligned_memory);
    g_test_add_func("/block/io/zero-fallback", test_zero_fallback);
    g_test_add_func("/block/io/fua-emulation", test_fua_emulation);
    g_test_add_func("/block/io/flush-skip", test_flush_skip);
    g_test_add_func("/block/io/detect-zeroes", test_detect_zeroes);
    g_test_add_func("/block/io/discard", test_discard);
    g_test_add_func("/block/io/block-status", test_block_status);
    g_test_add_func("/block/io/truncate", test_truncate);
    g_test_add_func("/block/io/status-chain", test_status_chain);
    g_test_add_func("/block/io/status-short-backing",
                    test_status_short_backing);
    g_test_add_func("/block/io/drain", test_drain);
    g_test_add_func("/block/backend/drain", test_blk_drain);
    return g_test_run();
}
