#include "config.h"
/*
 * The "null-co" protocol: a sized device that discards writes.  Reads
 * leave the buffer alone unless read-zeroes=on; latency-ns delays every
 * request (to simulate a slow device).
 */
#include <errno.h>
#include <limits.h>
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

/* Size and read-zeroes change what a read returns; latency only when. */
static const char *const null_strong_opts[] = { "size", "read-zeroes", NULL };

/* "null-co://" names the node unless a strong option was given. */
static char *null_plain_filename(BlockDriverState *bs, QDict *full)
{
    for (const char *const *p = null_strong_opts; *p; p++) {
        if (qdict_haskey(full, *p)) {
            return NULL;
        }
    }
    return g_strdup_printf("%s://", bs->drv->format_name);
}

/* Only the canonical filename "@name://" is accepted. */
static void null_check_filename(const char *filename, const char *name,
                                QDict *options, Error **errp)
{
    g_autofree char *canon = g_strdup_printf("%s://", name);

    if (strcmp(filename, canon)) {
        error_setg(errp, "The only allowed filename for this driver is "
                   "'%s'", canon);
        return;
    }
    qdict_del(options, "filename");
}

static void null_co_parse_filename(const char *filename, QDict *options,
                                   Error **errp)
{
    null_check_filename(filename, "null-co", options, errp);
}

static void null_aio_parse_filename(const char *filename, QDict *options,
                                    Error **errp)
{
    null_check_filename(filename, "null-aio", options, errp);
}

/* A negative JSON latency gets its own message (strings wrap around
 * like strtoull() and are checked after parsing). */
static bool null_latency_negative(QDict *options)
{
    return qdict_get_try_int(options, "latency-ns", 0) < 0;
}

/* QEMU's largest image: INT64_MAX aligned down to 1 GiB. */
#define NULL_MAX_LENGTH (INT64_MAX - ((INT64_C(1) << 30) - 1))

/* QEMU sizes the node at open: lengths past its maximum fail, "negative"
 * ones (2^63 and up) fail with their low 32 bits as an errno, or give an
 * empty device when those bits are not negative. */
static int null_check_length(BDRVNullState *s, uint64_t size, Error **errp)
{
    int low;

    if (size <= (uint64_t)NULL_MAX_LENGTH) {
        s->length = (int64_t)size;
        return 0;
    }
    if (size <= (uint64_t)INT64_MAX) {
        error_setg_errno(errp, EFBIG, "Could not refresh total sector count");
        return -EFBIG;
    }
    low = (int)(uint32_t)(size & 0xffffffffu);
    if (low < 0) {
        if (low == INT_MIN) {   /* QEMU's negation wraps to itself */
            error_setg(errp, "Could not refresh total sector count: "
                       "Unknown error %d", INT_MIN);
            return -EINVAL;
        }
        error_setg_errno(errp, -low, "Could not refresh total sector count");
        return low;
    }
    s->length = 0;
    return 0;
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
    return null_check_length(s, (uint64_t)s->length, errp);
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

static const BlockDriverIO null_io = {
    .co_preadv = null_co_preadv,
    .co_pwritev = null_co_pwritev,
    .co_pwrite_zeroes = null_co_pwrite_zeroes,
    .co_flush_to_disk = null_co_flush,
    .co_block_status = null_co_block_status,
    .co_getlength = null_co_getlength,
    .co_get_allocated_file_size = null_co_allocated_file_size,
};

static const BlockDriverNamingOps null_naming_ops = {
    .strong_opts = null_strong_opts,
    .plain_filename = null_plain_filename,
};

const BlockDriver bdrv_null_co = {
    .format_name = "null-co",
    .kind = BDRV_KIND_PROTOCOL,
    .instance_size = sizeof(BDRVNullState),
    .protocol_name = "null-co",
    .open_opts = null_open_opts,
    .parse_filename = null_co_parse_filename,
    .open = null_open,
    .io = &null_io,
    .naming = &null_naming_ops,
};

/* QEMU's AIO-callback flavour; the same device here. */
const BlockDriver bdrv_null_aio = {
    .format_name = "null-aio",
    .kind = BDRV_KIND_PROTOCOL,
    .instance_size = sizeof(BDRVNullState),
    .protocol_name = "null-aio",
    .open_opts = null_open_opts,
    .parse_filename = null_aio_parse_filename,
    .open = null_open,
    .io = &null_io,
    .naming = &null_naming_ops,
};
