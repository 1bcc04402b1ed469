#include "config.h"
/*
 * The "raw" format: the guest sees its file child as is, or a window
 * [offset, offset + size) of it.  When the format was guessed (probed),
 * writes that would make the first sector look like another format are
 * refused, so a guest cannot turn its disk into, say, a qcow2 header
 * pointing at host files.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include "block/debug.h"
#include "block/drivers.h"
#include "util/cutils.h"

/* Which bytes of the file the guest sees. */
typedef struct RawWindow {
    uint64_t offset;
    uint64_t size;
    bool has_size;
} RawWindow;

typedef struct BDRVRawFmtState {
    RawWindow win;
    /* reopen: the checked new window and the options saying it, kept
     * between prepare and commit (NULL: nothing staged) */
    RawWindow next_win;
    QDict *next_opts;
} BDRVRawFmtState;

static RawWindow *raw_win(BlockDriverState *bs)
{
    return &((BDRVRawFmtState *)bs->opaque)->win;
}

/* The window's options: a window reads other data, so they stay in the
 * node's name; reopen may change them. */
static const char *const raw_window_opts[] = { "offset", "size", NULL };

static const BlockOptDesc raw_fmt_open_opts[] = {
    { "offset", OPT_SIZE, "offset in the disk where the image starts", NULL },
    { "size", OPT_SIZE, "virtual disk size", NULL },
    { NULL },
};

static const BlockOptDesc raw_fmt_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { NULL },
};

/* The guess of last resort: anything is a raw image. */
static int raw_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    return 1;
}

/* Check the window against the file, with the reference's messages. */
static int raw_check_window(const RawWindow *s, int64_t real_size,
                            Error **errp)
{
    if (s->offset > (uint64_t)real_size) {
        error_setg(errp, "Offset (%" PRIu64 ") cannot be greater than size "
                   "of the containing file (%" PRId64 ")", s->offset,
                   real_size);
        return -EINVAL;
    }
    if (s->has_size && real_size - s->offset < s->size) {
        error_setg(errp, "The sum of offset (%" PRIu64 ") and size (%" PRIu64
                   ") has to be smaller or equal to the  actual size of the "
                   "containing file (%" PRId64 ")", s->offset, s->size,
                   real_size);
        return -EINVAL;
    }
    if (s->has_size && !IS_ALIGNED(s->size, BDRV_SECTOR_SIZE)) {
        error_setg(errp, "Specified size is not multiple of %llu",
                   BDRV_SECTOR_SIZE);
        return -EINVAL;
    }
    return 0;
}

/* offset and size must be sizes before anything is opened. */
static int raw_check_open_opts(QDict *options, Error **errp)
{
    Error *local_err = NULL;

    bdrv_opt_size(options, "offset", 0, &local_err);
    if (!local_err && qdict_haskey(options, "size")) {
        bdrv_opt_size(options, "size", 0, &local_err);
    }
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    return 0;
}

/* Parse offset/size from @options into @s and validate them against the
 * opened child, as open and reopen both do. */
static int raw_read_window(BlockDriverState *bs, QDict *options,
                           RawWindow *s, Error **errp)
{
    Error *local_err = NULL;
    int64_t real_size;

    s->offset = bdrv_opt_size(options, "offset", 0, &local_err);
    s->has_size = qdict_haskey(options, "size");
    if (!local_err && s->has_size) {
        s->size = bdrv_opt_size(options, "size", 0, &local_err);
    }
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    real_size = bdrv_getlength(bs->file->bs);
    if (real_size < 0) {
        error_setg_errno(errp, -real_size, "Could not get image size");
        return real_size;
    }
    if (!s->has_size) {
        s->size = real_size > (int64_t)s->offset ? real_size - s->offset : 0;
    }
    return raw_check_window(s, real_size, errp);
}

static int raw_open(BlockDriverState *bs, QDict *options, int flags,
                    Error **errp)
{
    bool window = qdict_haskey(options, "offset") ||
                  qdict_haskey(options, "size");
    BdrvChildRole role = BDRV_CHILD_PRIMARY |
                         (window ? BDRV_CHILD_DATA : BDRV_CHILD_FILTERED);
    BdrvChild *file;

    file = bdrv_open_child(NULL, options, "file", bs, role, false, errp);
    if (!file) {
        return -EINVAL;
    }
    bdrv_inherit_request_flags(bs, file);
    bs->supported_truncate_flags = file->bs->supported_truncate_flags;
    return raw_read_window(bs, options, raw_win(bs), errp);
}

/* Reopen may move the window: options not given keep their current value
 * (the reference merges them with the old ones), the result is checked as
 * at open and only staged, so a failed reopen keeps the old window. */
static int raw_reopen_prepare(BlockDriverState *bs, QDict *opts, Error **errp)
{
    BDRVRawFmtState *s = bs->opaque;
    g_autoptr(QDict) merged = qdict_new();
    bool given = false;
    RawWindow w;

    for (const char *const *k = raw_window_opts; *k; k++) {
        QDict *from = opts;

        if (qdict_haskey(opts, *k)) {
            given = true;
        } else if (bs->options && qdict_haskey(bs->options, *k)) {
            from = bs->options;
        } else {
            continue;
        }
        qdict_put_obj(merged, *k, qobject_ref(qdict_get(from, *k)));
    }
    if (!given) {
        return 0;
    }
    if (raw_read_window(bs, merged, &w, errp) < 0) {
        return -EINVAL;
    }
    for (const char *const *k = raw_window_opts; *k; k++) {
        qdict_del(opts, *k);
    }
    qobject_unref(s->next_opts);
    s->next_win = w;
    s->next_opts = qobject_ref(merged);
    return 0;
}

static void raw_reopen_commit(BlockDriverState *bs)
{
    BDRVRawFmtState *s = bs->opaque;

    if (!s->next_opts) {
        return;
    }
    s->win = s->next_win;
    qdict_join(bs->options, s->next_opts, true);
    qobject_unref(s->next_opts);
    s->next_opts = NULL;
    bs->total_bytes = -1;   /* the cached length was the old window's */
}

static void raw_reopen_abort(BlockDriverState *bs)
{
    BDRVRawFmtState *s = bs->opaque;

    qobject_unref(s->next_opts);
    s->next_opts = NULL;
}

/* Probed images: keep the first sector whole so it can be checked. */
static void raw_refresh_limits(BlockDriverState *bs, Error **errp)
{
    if (bs->probed) {
        bs->bl.request_alignment = MAX(bs->bl.request_alignment,
                                       BLOCK_PROBE_BUF_SIZE);
    }
}

/* The default storage rules add write/resize for data children; raw
 * only needs them when its own users do (fewer lock conflicts). */
static void raw_child_perm(BlockDriverState *bs, BdrvChild *c,
                           BdrvChildRole role, uint64_t perm, uint64_t shared,
                           uint64_t *nperm, uint64_t *nshared)
{
    bdrv_default_child_perm(bs, c, role, perm, shared, nperm, nshared);
    *nperm &= ~(BLK_PERM_WRITE | BLK_PERM_RESIZE);
    *nperm |= perm & (BLK_PERM_WRITE | BLK_PERM_RESIZE);
}

/* Window check and translation to the child's offsets. */
static int raw_adjust_offset(BlockDriverState *bs, int64_t *offset,
                             int64_t bytes, bool is_write)
{
    RawWindow *s = raw_win(bs);

    if (s->has_size && ((uint64_t)*offset > s->size ||
                        (uint64_t)bytes > s->size - *offset)) {
        return is_write ? -ENOSPC : -EINVAL;
    }
    if ((uint64_t)*offset > INT64_MAX - s->offset) {
        return -EINVAL;
    }
    *offset += s->offset;
    return 0;
}

static int coroutine_fn raw_co_preadv(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, IOVector *qiov,
                                      BdrvRequestFlags flags)
{
    int ret = raw_adjust_offset(bs, &offset, bytes, false);

    if (ret) {
        return ret;
    }
    bdrv_debug_event(bs->file, BLKDBG_READ_AIO);
    return bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

/* Would the first sector, as this write leaves it, probe as raw?  Copies
 * it into @head so the guest cannot change it after the check. */
static bool raw_first_sector_ok(IOVector *qiov, uint8_t *head)
{
    const BlockDriver *drv;

    iov_vec_to_buf(qiov, 0, head, BLOCK_PROBE_BUF_SIZE);
    drv = bdrv_probe_format(head, BLOCK_PROBE_BUF_SIZE, NULL);
    return !drv || drv == &bdrv_raw;
}

/* The checked write: first sector from our private copy. */
static int coroutine_fn raw_write_checked(BlockDriverState *bs,
                                          int64_t offset, int64_t bytes,
                                          IOVector *qiov,
                                          BdrvRequestFlags flags)
{
    g_autofree uint8_t *head = g_malloc(BLOCK_PROBE_BUF_SIZE);
    IOVector local;
    int ret;

    if (offset != 0 || bytes < BLOCK_PROBE_BUF_SIZE) {
        return -EINVAL;     /* refresh_limits keeps 512-byte alignment */
    }
    if (!raw_first_sector_ok(qiov, head)) {
        return -EPERM;
    }
    iov_vec_init(&local, qiov->niov + 1);
    iov_vec_add(&local, head, BLOCK_PROBE_BUF_SIZE);
    iov_vec_concat(&local, qiov, BLOCK_PROBE_BUF_SIZE,
                   bytes - BLOCK_PROBE_BUF_SIZE);
    ret = raw_adjust_offset(bs, &offset, bytes, true);
    if (ret == 0) {
        ret = bdrv_co_pwritev(bs->file, offset, bytes, &local, flags);
    }
    iov_vec_destroy(&local);
    return ret;
}

static int coroutine_fn raw_co_pwritev(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, IOVector *qiov,
                                       BdrvRequestFlags flags)
{
    int ret;

    bdrv_debug_event(bs->file, BLKDBG_WRITE_AIO);
    if (bs->probed && offset < BLOCK_PROBE_BUF_SIZE &&
        !(flags & BDRV_REQ_UNSAFE_NO_PROBE_CHECK)) {
        return raw_write_checked(bs, offset, bytes, qiov, flags);
    }
    ret = raw_adjust_offset(bs, &offset, bytes, true);
    if (ret) {
        return ret;
    }
    return bdrv_co_pwritev(bs->file, offset, bytes, qiov,
                           flags & ~BDRV_REQ_UNSAFE_NO_PROBE_CHECK);
}

static int coroutine_fn raw_co_pwrite_zeroes(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             BdrvRequestFlags flags)
{
    int ret = raw_adjust_offset(bs, &offset, bytes, true);

    if (ret) {
        return ret;
    }
    return bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int coroutine_fn raw_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes)
{
    int ret = raw_adjust_offset(bs, &offset, bytes, true);

    if (ret) {
        return ret;
    }
    return bdrv_co_pdiscard(bs->file, offset, bytes);
}

/* Everything is "look in the file at the same place (plus offset)". */
static int coroutine_fn raw_co_block_status(BlockDriverState *bs,
                                            bool want_zero, int64_t offset,
                                            int64_t bytes, int64_t *pnum,
                                            int64_t *map,
                                            BlockDriverState **file)
{
    RawWindow *s = raw_win(bs);

    *pnum = bytes;
    *file = bs->file->bs;
    *map = offset + s->offset;
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
}

static int64_t coroutine_fn raw_co_getlength(BlockDriverState *bs)
{
    RawWindow *s = raw_win(bs);
    int64_t len = bdrv_co_getlength(bs->file->bs);

    if (len < 0) {
        return len;
    }
    if (len < (int64_t)s->offset) {
        s->size = 0;
    } else if (s->has_size) {
        s->size = MIN(s->size, (uint64_t)len - s->offset);
    } else {
        s->size = len - s->offset;
    }
    return s->size;
}

static int64_t coroutine_fn raw_co_get_allocated_file_size(
    BlockDriverState *bs)
{
    return bdrv_co_get_allocated_file_size(bs->file->bs);
}

static int coroutine_fn raw_co_truncate(BlockDriverState *bs, int64_t offset,
                                        bool exact, PreallocMode prealloc,
                                        BdrvRequestFlags flags, Error **errp)
{
    RawWindow *s = raw_win(bs);

    if (s->has_size) {
        error_setg(errp, "Cannot resize fixed-size raw disks");
        return -ENOTSUP;
    }
    if (INT64_MAX - offset < (int64_t)s->offset) {
        error_setg(errp, "Disk size too large for the chosen offset");
        return -EINVAL;
    }
    s->size = offset;
    return bdrv_co_truncate(bs->file, offset + s->offset, exact, prealloc,
                            flags, errp);
}

static int coroutine_fn raw_co_copy_range_from(BlockDriverState *bs,
                                               BdrvChild *src,
                                               int64_t src_offset,
                                               BdrvChild *dst,
                                               int64_t dst_offset,
                                               int64_t bytes,
                                               BdrvRequestFlags rf,
                                               BdrvRequestFlags wf)
{
    int ret = raw_adjust_offset(bs, &src_offset, bytes, false);

    if (ret) {
        return ret;
    }
    return bdrv_co_copy_range_from(bs->file, src_offset, dst, dst_offset,
                                   bytes, rf, wf);
}

static int coroutine_fn raw_co_copy_range_to(BlockDriverState *bs,
                                             BdrvChild *src,
                                             int64_t src_offset,
                                             BdrvChild *dst,
                                             int64_t dst_offset,
                                             int64_t bytes,
                                             BdrvRequestFlags rf,
                                             BdrvRequestFlags wf)
{
    int ret;

    if (bs->probed && dst_offset < BLOCK_PROBE_BUF_SIZE) {
        return -ENOTSUP;    /* fall back to a checked write */
    }
    if ((wf & BDRV_REQ_SKIP_ZERO_BLOCKS) &&
        raw_win(bs)->offset % 4096) {
        return -ENOTSUP;    /* the file's grid is not the image's */
    }
    ret = raw_adjust_offset(bs, &dst_offset, bytes, true);
    if (ret) {
        return ret;
    }
    return bdrv_co_copy_range_to(src, src_offset, bs->file, dst_offset,
                                 bytes, rf, wf);
}

/* raw has no metadata: creating it is creating the protocol file. */
static int coroutine_fn raw_co_create_opts(const BlockDriver *drv,
                                           const char *filename, QDict *opts,
                                           Error **errp)
{
    return bdrv_create_file(filename, opts, errp);
}

/* raw needs exactly the virtual size, preallocated or not. */
static int raw_measure(QDict *opts, BlockDriverState *in_bs,
                       BlockMeasureInfo *info, Error **errp)
{
    Error *local_err = NULL;
    int64_t required;

    if (in_bs) {
        required = bdrv_getlength(in_bs);
        if (required < 0) {
            error_setg_errno(errp, -required, "Unable to get image size");
            return required;
        }
    } else {
        required = bdrv_opt_size(opts, "size", 0, &local_err);
        if (local_err) {
            error_propagate(errp, local_err);
            return -EINVAL;
        }
        required = ROUND_UP(required, BDRV_SECTOR_SIZE);
    }
    info->required = required;
    info->fully_allocated = required;
    return 0;
}

/* The file's info, as the reference: over a protocol without any (null-co)
 * info shows no "dirty-flag" and qemu-io's info fails. */
static int raw_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    return bs->file ? bdrv_get_info(bs->file->bs, bdi) : -ENOTSUP;
}

static const BlockDriverInfoOps raw_info_ops = {
    .get_info = raw_get_info,
};

static const BlockDriverIO raw_io = {
    .co_preadv = raw_co_preadv,
    .co_pwritev = raw_co_pwritev,
    .co_pwrite_zeroes = raw_co_pwrite_zeroes,
    .co_pdiscard = raw_co_pdiscard,
    .co_block_status = raw_co_block_status,
    .co_truncate = raw_co_truncate,
    .co_getlength = raw_co_getlength,
    .co_get_allocated_file_size = raw_co_get_allocated_file_size,
    .co_copy_range_from = raw_co_copy_range_from,
    .co_copy_range_to = raw_co_copy_range_to,
};

static const BlockDriverPermOps raw_perm_ops = {
    .child_perm = raw_child_perm,
};

static const BlockDriverReopenOps raw_reopen_ops = {
    .prepare = raw_reopen_prepare,
    .commit = raw_reopen_commit,
    .abort = raw_reopen_abort,
};

static const BlockDriverNamingOps raw_naming_ops = {
    .strong_opts = raw_window_opts,
};

static const BlockDriverMeasureOps raw_measure_ops = {
    .measure = raw_measure,
};

const BlockDriver bdrv_raw = {
    .format_name = "raw",
    .kind = BDRV_KIND_FORMAT,
    .instance_size = sizeof(BDRVRawFmtState),
    .open_opts = raw_fmt_open_opts,
    .create_opts = raw_fmt_create_opts,
    .probe = raw_probe,
    .open = raw_open,
    .co_create_opts = raw_co_create_opts,
    .refresh_limits = raw_refresh_limits,
    .check_open_opts = raw_check_open_opts,
    .info = &raw_info_ops,
    .io = &raw_io,
    .perm = &raw_perm_ops,
    .reopen = &raw_reopen_ops,
    .naming = &raw_naming_ops,
    .measure = &raw_measure_ops,
};
