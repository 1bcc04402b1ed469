#include "config.h"
/*
 * The "null-co" protocol: a sized device that discards writes.  Reads
 * leave the buffer alone unless read-zeroes=on; latency-ns delays every
 * request (to simulate a slow device).
 */
#include <errno.h>
#include <string.h>
#include "block/drivers.h"
#include "util/cutils.h"

typedef struct BDRVNullState {
    int64_t length;
    int64_t latency_ns;
    bool read_zeroes;
} BDRVNullState;

static const BlockOptDesc null_open_opts[] = {
    { "size", OPT_SIZE, "size of the null block", "1G" },
    { "latency-ns", OPT_NUMBER,
      "nanoseconds (approximated) to wait before completing request", "0" },
    { "read-zeroes", OPT_BOOL, "return zeroes when read", "off" },
    { NULL },
};

/* Only the canonical filename is accepted. */
static void null_parse_filename(const char *filename, QDict *options,
                                Error **errp)
{
    if (strcmp(filename, "null-co://")) {
        error_setg(errp, "The only allowed filename for this driver is "
                   "'null-co://'");
        return;
    }
    qdict_del(options, "filename");
}

/* Negative latencies get their own message (string or number). */
static bool null_latency_negative(QDict *options)
{
    const char *str = qdict_get_try_str(options, "latency-ns");

    if (str) {
        while (*str == ' ') {
            str++;
        }
        return *str == '-';
    }
    return qdict_get_try_int(options, "latency-ns", 0) < 0;
}

static int null_open(BlockDriverState *bs, QDict *options, int flags,
                     Error **errp)
{
    BDRVNullState *s = bs->opaque;
    Error *local_err = NULL;

    s->length = bdrv_opt_size(options, "size", GiB, &local_err);
    if (!local_err && null_latency_negative(options)) {
        error_setg(errp, "latency-ns is invalid");
        return -EINVAL;
    }
    if (!local_err) {
        s->latency_ns = bdrv_opt_number(options, "latency-ns", 0, &local_err);
    }
    if (!local_err) {
        s->read_zeroes = bdrv_opt_bool(options, "read-zeroes", false,
                                       &local_err);
    }
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    if (s->latency_ns < 0) {
        error_setg(errp, "latency-ns is invalid");
        return -EINVAL;
    }
    return 0;
}

/* Every request ends here: the configured delay, then success. */
static int coroutine_fn null_co_common(BlockDriverState *bs)
{
    BDRVNullState *s = bs->opaque;

    if (s->latency_ns) {
        co_sleep_ns(s->latency_ns);
    }
    return 0;
}

static int coroutine_fn null_co_preadv(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, IOVector *qiov,
                                       BdrvRequestFlags flags)
{
    BDRVNullState *s = bs->opaque;

    if (s->read_zeroes) {
        iov_vec_memset(qiov, 0, 0, bytes);
    }
    return null_co_common(bs);
}

static int coroutine_fn null_co_pwritev(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes, IOVector *qiov,
                                        BdrvRequestFlags flags)
{
    return null_co_common(bs);
}

static int coroutine_fn null_co_pwrite_zeroes(BlockDriverState *bs,
                                              int64_t offset, int64_t bytes,
                                              BdrvRequestFlags flags)
{
    return null_co_common(bs);
}

static int coroutine_fn null_co_flush(BlockDriverState *bs)
{
    return null_co_common(bs);
}

/* Zero only when reads really return zeroes; never "data". */
static int coroutine_fn null_co_block_status(BlockDriverState *bs,
                                             bool want_zero, int64_t offset,
                                             int64_t bytes, int64_t *pnum,
                                             int64_t *map,
                                             BlockDriverState **file)
{
    BDRVNullState *s = bs->opaque;

    *pnum = bytes;
    *map = offset;
    *file = bs;
    return BDRV_BLOCK_OFFSET_VALID | (s->read_zeroes ? BDRV_BLOCK_ZERO : 0);
}

static int64_t coroutine_fn null_co_getlength(BlockDriverState *bs)
{
    BDRVNullState *s = bs->opaque;
    return s->length;
}

static int64_t coroutine_fn null_co_allocated_file_size(BlockDriverState *bs)
{
    return 0;
}

const BlockDriver bdrv_null_co = {
    .format_name = "null-co",
    .kind = BDRV_KIND_PROTOCOL,
    .instance_size = sizeof(BDRVNullState),
    .protocol_name = "null-co",
    .open_opts = null_open_opts,
    .parse_filename = null_parse_filename,
    .open = null_open,
    .co_preadv = null_co_preadv,
    .co_pwritev = null_co_pwritev,
    .co_pwrite_zeroes = null_co_pwrite_zeroes,
    .co_flush_to_disk = null_co_flush,
    .co_block_status = null_co_block_status,
    .co_getlength = null_co_getlength,
    .co_get_allocated_file_size = null_co_allocated_file_size,
};
