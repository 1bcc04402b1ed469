#include "config.h"
/*
 * The "compress" filter: every data write that passes through it reaches
 * the "file" child as a compressed write (BDRV_REQ_WRITE_COMPRESSED).
 * Reads, zero writes and discards pass through unchanged.
 *
 * A compressed write must cover whole clusters of the format below, so
 * the filter's request alignment is the child's cluster size: the core
 * pads an unaligned write with what it reads from the child first
 * (block/io.c, layer A), and then the whole clusters go down compressed.
 * The child must be a format that stores compressed writes (qcow2);
 * anything else fails at open, in the reference's words.
 */
#include <errno.h>
#include "block/drivers.h"

/* Refuse children that cannot store what we would send them. */
static int compress_check_child(BlockDriverState *bs, Error **errp)
{
    BlockDriverState *child = bs->file->bs;
    const char *fmt;

    if (child->drv && child->drv->supports_compression) {
        return 0;
    }
    fmt = bdrv_get_format_name(child);
    error_setg(errp, "Compression is not supported for underlying format: "
               "%s", fmt ? fmt : "(no format)");
    return -ENOTSUP;
}

static int compress_open(BlockDriverState *bs, QDict *options, int flags,
                         Error **errp)
{
    if (!bdrv_open_filtered_child(bs, NULL, options, "file", errp)) {
        return -EINVAL;
    }
    return compress_check_child(bs, errp);
}

/* Whole clusters of the child: the unit its compressed writes take. */
static void compress_refresh_limits(BlockDriverState *bs, Error **errp)
{
    BlockDriverInfo bdi;

    (void)errp;
    if (!bs->file || bdrv_get_info(bs->file->bs, &bdi) < 0 ||
        bdi.cluster_size <= 0) {
        return;
    }
    bs->bl.request_alignment = MAX(bs->bl.request_alignment,
                                   (uint32_t)bdi.cluster_size);
}

static int coroutine_fn compress_co_pwritev(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            IOVector *qiov,
                                            BdrvRequestFlags flags)
{
    return bdrv_co_pwritev(bs->file, offset, bytes, qiov,
                           flags | BDRV_REQ_WRITE_COMPRESSED);
}

static const BlockDriverIO compress_io = {
    .co_pwritev = compress_co_pwritev,
};

const BlockDriver bdrv_compress = {
    .format_name = "compress",
    .kind = BDRV_KIND_FILTER,
    .open = compress_open,
    .refresh_limits = compress_refresh_limits,
    .io = &compress_io,
};
