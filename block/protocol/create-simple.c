#include "config.h"
/*
 * Creating an image on a protocol that cannot make new ones (host_device),
 * as qemu-img does it: the target must already exist.  It is opened,
 * sized to the image (shrinking is the device's business, growing
 * fails), and its first sector is zeroed, so that whatever format it
 * held before is not probed there again.  Only preallocation=off.
 */
#include <errno.h>
#include "block/drivers.h"

const BlockOptDesc bdrv_create_simple_opts[] = {
    { "preallocation", OPT_STRING, "Preallocation mode (allowed values: off)",
      NULL },
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { NULL },
};

static int create_simple_parse(QDict *opts, int64_t *size, Error **errp)
{
    Error *local_err = NULL;
    const char *p = bdrv_opt_str(opts, "preallocation", "off");
    PreallocMode mode;

    *size = bdrv_opt_size(opts, "size", 0, &local_err);
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    if (!prealloc_mode_parse(p, &mode)) {
        error_setg(errp, "invalid parameter value: %s", p);
        return -EINVAL;
    }
    if (mode != PREALLOC_MODE_OFF) {
        error_setg(errp, "Unsupported preallocation mode '%s'", p);
        return -ENOTSUP;
    }
    return 0;
}

/* Size the existing target; a protocol that cannot resize is fine when
 * it already holds the image. */
static int create_simple_size(BlockBackend *blk, int64_t size, Error **errp)
{
    Error *local_err = NULL;
    int ret = blk_truncate(blk, size, false, PREALLOC_MODE_OFF, 0,
                           &local_err);

    if (ret == -ENOTSUP && blk_getlength(blk) >= size) {
        error_free(local_err);
        return 0;
    }
    if (ret < 0) {
        error_propagate(errp, local_err);
    }
    return ret;
}

static int create_simple_clear(BlockBackend *blk, Error **errp)
{
    int64_t len = blk_getlength(blk);
    int ret;

    if (len <= 0) {
        return len < 0 ? (int)len : 0;
    }
    ret = blk_pwrite_zeroes(blk, 0, MIN(len, BDRV_SECTOR_SIZE),
                            BDRV_REQ_MAY_UNMAP);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to clear the new image's first "
                         "sector");
    }
    return ret;
}

int coroutine_fn bdrv_co_create_opts_simple(const BlockDriver *drv,
                                            const char *filename, QDict *opts,
                                            Error **errp)
{
    Error *local_err = NULL;
    BlockBackend *blk;
    QDict *options;
    int64_t size;
    int ret = create_simple_parse(opts, &size, errp);

    if (ret < 0) {
        return ret;
    }
    options = qdict_new();
    qdict_put_str(options, "driver", drv->format_name);
    blk = blk_new_open(filename, NULL, options, BDRV_O_RDWR | BDRV_O_PROTOCOL,
                       &local_err);
    if (!blk) {
        error_propagate_prepend(errp, local_err, "Protocol driver '%s' does "
                                "not support creating new images, so an "
                                "existing image must be selected as the "
                                "target; however, opening the given target "
                                "as an existing image failed: ",
                                drv->format_name);
        return -EINVAL;
    }
    ret = create_simple_size(blk, size, errp);
    if (ret == 0) {
        ret = create_simple_clear(blk, errp);
    }
    blk_unref(blk);
    return ret;
}
