/*
 * Layering: requests travel through a stack of filters in order, outer to
 * inner to the protocol, each exactly once; what a filter leaves out the
 * core passes through for it; nodes close from the top down.
 *
 * Three test drivers log every call into one string:
 *   layer-outer (filter, implements every data call and forwards),
 *   layer-inner (filter, implements only read and write: the core must
 *                pass the rest through),
 *   layer-mem   (protocol, memory-backed).
 */
#include "config.h"
#include <errno.h>
#include <string.h>
#include <glib.h>
#include "block/driver.h"

#define MEM_SIZE (1 << 20)

static GString *calls;

static void log_call(BlockDriverState *bs, const char *op)
{
    g_string_append_printf(calls, "%s:%s ", bs->drv->format_name, op);
}

/* ---- layer-mem: the protocol at the bottom ---- */

static int mem_open(BlockDriverState *bs, QDict *opts, int flags, Error **errp)
{
    log_call(bs, "open");
    *(uint8_t **)bs->opaque = g_malloc0(MEM_SIZE);
    return 0;
}

static void mem_close(BlockDriverState *bs)
{
    log_call(bs, "close");
    g_free(*(uint8_t **)bs->opaque);
}

static int coroutine_fn mem_preadv(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, IOVector *qiov,
                                   BdrvRequestFlags flags)
{
    log_call(bs, "read");
    iov_vec_from_buf(qiov, 0, *(uint8_t **)bs->opaque + offset, bytes);
    return 0;
}

static int coroutine_fn mem_pwritev(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes, IOVector *qiov,
                                    BdrvRequestFlags flags)
{
    log_call(bs, "write");
    iov_vec_to_buf(qiov, 0, *(uint8_t **)bs->opaque + offset, bytes);
    return 0;
}

static int coroutine_fn mem_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                          int64_t bytes, BdrvRequestFlags flags)
{
    log_call(bs, "zeroes");
    memset(*(uint8_t **)bs->opaque + offset, 0, bytes);
    return 0;
}

static int coroutine_fn mem_pdiscard(BlockDriverState *bs, int64_t offset,
                                     int64_t bytes)
{
    log_call(bs, "discard");
    return 0;
}

static int coroutine_fn mem_flush(BlockDriverState *bs)
{
    log_call(bs, "flush");
    return 0;
}

static int64_t coroutine_fn mem_getlength(BlockDriverState *bs)
{
    return MEM_SIZE;
}

static const BlockDriverIO mem_io = {
    .co_preadv = mem_preadv,
    .co_pwritev = mem_pwritev,
    .co_pwrite_zeroes = mem_pwrite_zeroes,
    .co_pdiscard = mem_pdiscard,
    .co_flush_to_disk = mem_flush,
    .co_getlength = mem_getlength,
};

static const BlockDriver bdrv_layer_mem = {
    .format_name = "layer-mem",
    .kind = BDRV_KIND_PROTOCOL,
    .instance_size = sizeof(uint8_t *),
    .open = mem_open,
    .close = mem_close,
    .io = &mem_io,
};

/* ---- the two filters ---- */

static int filter_open(BlockDriverState *bs, QDict *opts, int flags,
                       Error **errp)
{
    log_call(bs, "open");
    bs->file = bdrv_open_child(NULL, opts, "file", bs,
                               BDRV_CHILD_FILTERED | BDRV_CHILD_PRIMARY,
                               false, errp);
    return bs->file ? 0 : -EINVAL;
}

static void filter_close(BlockDriverState *bs)
{
    log_call(bs, "close");
}

static int coroutine_fn filter_preadv(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, IOVector *qiov,
                                      BdrvRequestFlags flags)
{
    log_call(bs, "read");
    return bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn filter_pwritev(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, IOVector *qiov,
                                       BdrvRequestFlags flags)
{
    log_call(bs, "write");
    return bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn filter_pwrite_zeroes(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             BdrvRequestFlags flags)
{
    log_call(bs, "zeroes");
    return bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int coroutine_fn filter_pdiscard(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes)
{
    log_call(bs, "discard");
    return bdrv_co_pdiscard(bs->file, offset, bytes);
}

static int coroutine_fn filter_flush(BlockDriverState *bs)
{
    log_call(bs, "flush");
    return 0;
}

static const BlockDriverIO outer_io = {
    .co_preadv = filter_preadv,
    .co_pwritev = filter_pwritev,
    .co_pwrite_zeroes = filter_pwrite_zeroes,
    .co_pdiscard = filter_pdiscard,
    .co_flush_to_os = filter_flush,
};

static const BlockDriver bdrv_layer_outer = {
    .format_name = "layer-outer",
    .kind = BDRV_KIND_FILTER,
    .open = filter_open,
    .close = filter_close,
    .io = &outer_io,
};

static const BlockDriverIO inner_io = {
    .co_preadv = filter_preadv,
    .co_pwritev = filter_pwritev,
};

static const BlockDriver bdrv_layer_inner = {
    .format_name = "layer-inner",
    .kind = BDRV_KIND_FILTER,
    .open = filter_open,
    .close = filter_close,
    .io = &inner_io,
};

/* ---- tests ---- */

static BlockBackend *open_stack(void)
{
    QDict *opts = qdict_new();

    qdict_put_str(opts, "driver", "layer-outer");
    qdict_put_str(opts, "file.driver", "layer-inner");
    qdict_put_str(opts, "file.file.driver", "layer-mem");
    return blk_new_open(NULL, NULL, opts, BDRV_O_RDWR | BDRV_O_UNMAP,
                        &error_abort);
}

/* Run @op on a fresh stack and return the calls it made. */
static char *calls_of(const char *op)
{
    BlockBackend *blk = open_stack();
    uint8_t buf[4096] = { 1 };

    g_string_truncate(calls, 0);
    if (!strcmp(op, "read")) {
        g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
    } else if (!strcmp(op, "write")) {
        g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    } else if (!strcmp(op, "zeroes")) {
        g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 4096, 0), ==, 0);
    } else if (!strcmp(op, "discard")) {
        g_assert_cmpint(blk_pdiscard(blk, 0, 4096), ==, 0);
    } else {
        g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
        g_string_truncate(calls, 0);
        g_assert_cmpint(blk_flush(blk), ==, 0);
    }
    char *result = g_strdup(calls->str);
    blk_unref(blk);
    return result;
}

static void test_read_order(void)
{
    g_autofree char *c = calls_of("read");
    g_assert_cmpstr(c, ==, "layer-outer:read layer-inner:read layer-mem:read ");
}

static void test_write_order(void)
{
    g_autofree char *c = calls_of("write");
    g_assert_cmpstr(c, ==, "layer-outer:write layer-inner:write layer-mem:write ");
}

/* layer-inner has no zeroes/discard: the core passes them through. */
static void test_passthrough_zeroes(void)
{
    g_autofree char *c = calls_of("zeroes");
    g_assert_cmpstr(c, ==, "layer-outer:zeroes layer-mem:zeroes ");
}

static void test_passthrough_discard(void)
{
    g_autofree char *c = calls_of("discard");
    g_assert_cmpstr(c, ==, "layer-outer:discard layer-mem:discard ");
}

/* A flush reaches every layer's own flush once, top down. */
static void test_flush_order(void)
{
    g_autofree char *c = calls_of("flush");
    g_assert_cmpstr(c, ==, "layer-outer:flush layer-mem:flush ");
}

/* Data written through the stack arrives unchanged at the bottom. */
static void test_data_round_trip(void)
{
    BlockBackend *blk = open_stack();
    uint8_t out[8192], in[8192];

    for (size_t i = 0; i < sizeof(out); i++) {
        out[i] = i * 7;
    }
    g_assert_cmpint(blk_pwrite(blk, 12345, sizeof(out), out, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 12345, sizeof(in), in, 0), ==, 0);
    g_assert_cmpmem(in, sizeof(in), out, sizeof(out));
    blk_unref(blk);
}

/* Parents close before their children. */
static void test_close_order(void)
{
    BlockBackend *blk = open_stack();

    g_string_truncate(calls, 0);
    blk_unref(blk);
    g_assert_cmpstr(calls->str, ==,
                    "layer-outer:close layer-inner:close layer-mem:close ");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    bdrv_init();
    bdrv_register(&bdrv_layer_mem);
    bdrv_register(&bdrv_layer_outer);
    bdrv_register(&bdrv_layer_inner);
    calls = g_string_new(NULL);
    g_test_add_func("/layers/read-order", test_read_order);
    g_test_add_func("/layers/write-order", test_write_order);
    g_test_add_func("/layers/passthrough-zeroes", test_passthrough_zeroes);
    g_test_add_func("/layers/passthrough-discard", test_passthrough_discard);
    g_test_add_func("/layers/flush-order", test_flush_order);
    g_test_add_func("/layers/data-round-trip", test_data_round_trip);
    g_test_add_func("/layers/close-order", test_close_order);
    return g_test_run();
}
