#include "config.h"
/*
 * The "preallocate" filter: when a write goes past the end of its "file"
 * child, grow the file first by prealloc-size (rounded up to
 * prealloc-align) with fallocate, so that a file growing by small appends
 * grows in large, contiguous steps.
 *
 * It keeps two ends: data_end (where guest data ends; what the node
 * reports as its length) and file_end (the child's real size, including
 * the preallocated tail).  When the node is closed or loses its writers,
 * the file is cut back to data_end.  Without write and resize permission
 * on the child the filter just passes requests through.
 */
#include <errno.h>
#include "block/drivers.h"
#include "util/cutils.h"

typedef struct PreallocNode {
    uint64_t align;            /* prealloc-align */
    uint64_t size;             /* prealloc-size */
    int64_t data_end;          /* -1: not known yet */
    int64_t file_end;          /* -1: not known yet */
} PreallocNode;

static const BlockOptDesc prealloc_opts[] = {
    { "prealloc-align", OPT_SIZE, "on preallocation, align file length to "
      "this number", "1M" },
    { "prealloc-size", OPT_SIZE, "how much to preallocate", "128M" },
    { NULL },
};

/* Options, with the reference's check on the alignment. */
static int prealloc_parse_opts(PreallocNode *s, QDict *options, Error **errp)
{
    Error *local_err = NULL;

    s->align = bdrv_opt_size(options, "prealloc-align", 1 << 20, &local_err);
    if (!local_err) {
        s->size = bdrv_opt_size(options, "prealloc-size", 128 << 20,
                                &local_err);
    }
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    if (s->align % BDRV_SECTOR_SIZE) {
        error_setg(errp, "prealloc-align parameter of preallocate filter is "
                   "not aligned to %llu", BDRV_SECTOR_SIZE);
        return -EINVAL;
    }
    s->align = MAX(s->align, 1);
    return 0;
}

static int prealloc_open(BlockDriverState *bs, QDict *options, int flags,
                         Error **errp)
{
    PreallocNode *s = bs->opaque;

    s->data_end = s->file_end = -1;
    if (prealloc_parse_opts(s, options, errp) < 0) {
        return -EINVAL;
    }
    if (!bdrv_open_filtered_child(bs, NULL, options, "file", errp)) {
        return -EINVAL;
    }
    return 0;
}

/* Preallocation needs to write and resize the child. */
static bool prealloc_can_grow(BlockDriverState *bs)
{
    uint64_t need = BLK_PERM_WRITE | BLK_PERM_RESIZE;

    return bs->file && (bs->file->perm & need) == need;
}

/* Learn the ends from the child the first time we need them. */
static int coroutine_fn prealloc_init_ends(BlockDriverState *bs)
{
    PreallocNode *s = bs->opaque;
    int64_t len;

    if (s->data_end >= 0) {
        return 0;
    }
    len = bdrv_co_getlength(bs->file->bs);
    if (len < 0) {
        return len;
    }
    s->data_end = s->file_end = len;
    return 0;
}

/* Grow the child to @new_end, allocated: fallocate through truncate,
 * else efficient zero writes.  Failure is not fatal for the write. */
static bool coroutine_fn prealloc_grow_file(BlockDriverState *bs,
                                            int64_t new_end)
{
    PreallocNode *s = bs->opaque;
    int ret;

    ret = bdrv_co_truncate(bs->file, new_end, false, PREALLOC_MODE_FALLOC, 0,
                           NULL);
    if (ret < 0) {
        ret = bdrv_co_pwrite_zeroes(bs->file, s->file_end,
                                    new_end - s->file_end,
                                    BDRV_REQ_NO_FALLBACK);
    }
    if (ret < 0) {
        return false;
    }
    s->file_end = new_end;
    return true;
}

/* Before a write ending at @end: move data_end, preallocate if needed. */
static void coroutine_fn prealloc_before_write(BlockDriverState *bs,
                                               int64_t end)
{
    PreallocNode *s = bs->opaque;
    int64_t new_end;

    if (!prealloc_can_grow(bs) || prealloc_init_ends(bs) < 0) {
        return;
    }
    if (end > s->file_end) {
        new_end = ROUND_UP(end + (int64_t)s->size, (int64_t)s->align);
        if (!prealloc_grow_file(bs, new_end)) {
            s->file_end = MAX(s->file_end, end);
        }
    }
    s->data_end = MAX(s->data_end, end);
}

static int coroutine_fn prealloc_co_pwritev(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            IOVector *qiov,
                                            BdrvRequestFlags flags)
{
    prealloc_before_write(bs, offset + bytes);
    return bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn prealloc_co_pwrite_zeroes(BlockDriverState *bs,
                                                  int64_t offset,
                                                  int64_t bytes,
                                                  BdrvRequestFlags flags)
{
    prealloc_before_write(bs, offset + bytes);
    return bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int64_t coroutine_fn prealloc_co_getlength(BlockDriverState *bs)
{
    PreallocNode *s = bs->opaque;

    if (s->data_end >= 0) {
        return s->data_end;
    }
    return bdrv_co_getlength(bs->file->bs);
}

/* Growing inside the preallocated (zeroed) tail only moves data_end;
 * everything else resizes the file for real. */
static int coroutine_fn prealloc_co_truncate(BlockDriverState *bs,
                                             int64_t offset, bool exact,
                                             PreallocMode prealloc,
                                             BdrvRequestFlags flags,
                                             Error **errp)
{
    PreallocNode *s = bs->opaque;
    int ret = prealloc_init_ends(bs);

    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not get the file length");
        return ret;
    }
    if (prealloc == PREALLOC_MODE_OFF && offset >= s->data_end &&
        offset <= s->file_end) {
        s->data_end = offset;
        return 0;
    }
    ret = bdrv_co_truncate(bs->file, offset, exact, prealloc, flags, errp);
    if (ret == 0) {
        s->data_end = s->file_end = offset;
    }
    return ret;
}

/* Cut the preallocated tail off the file again. */
static void coroutine_fn prealloc_trim_entry(void *opaque)
{
    BlockDriverState *bs = opaque;
    PreallocNode *s = bs->opaque;

    if (bdrv_co_truncate(bs->file, s->data_end, true, PREALLOC_MODE_OFF, 0,
                         NULL) == 0) {
        s->file_end = s->data_end;
    }
}

/* Trim if we preallocated and may still resize the child. */
static void prealloc_trim(BlockDriverState *bs)
{
    PreallocNode *s = bs->opaque;

    if (s->data_end >= 0 && s->file_end > s->data_end &&
        prealloc_can_grow(bs)) {
        co_run_sync(prealloc_trim_entry, bs);
    }
    s->data_end = s->file_end = -1;
}

static void prealloc_close(BlockDriverState *bs)
{
    prealloc_trim(bs);
}

/* Losing our last writer: trim now, while the child edge still has the
 * resize permission (it is updated after this check). */
static int prealloc_check_perm(BlockDriverState *bs, uint64_t perm,
                               uint64_t shared, Error **errp)
{
    if (!(perm & BLK_PERM_WRITE)) {
        prealloc_trim(bs);
    }
    return 0;
}

/* Writers of the filter need resize on the file; nobody else may resize
 * it under us. */
static void prealloc_child_perm(BlockDriverState *bs, BdrvChild *c,
                                BdrvChildRole role, uint64_t perm,
                                uint64_t shared, uint64_t *nperm,
                                uint64_t *nshared)
{
    bdrv_default_child_perm(bs, c, role, perm, shared, nperm, nshared);
    if (perm & BLK_PERM_WRITE) {
        *nperm |= BLK_PERM_RESIZE;
        *nshared &= ~BLK_PERM_RESIZE;
    }
}

static const BlockDriverIO prealloc_io = {
    .co_pwritev = prealloc_co_pwritev,
    .co_pwrite_zeroes = prealloc_co_pwrite_zeroes,
    .co_truncate = prealloc_co_truncate,
    .co_getlength = prealloc_co_getlength,
};

static const BlockDriverPermOps prealloc_perm_ops = {
    .child_perm = prealloc_child_perm,
    .check_perm = prealloc_check_perm,
};

const BlockDriver bdrv_preallocate = {
    .format_name = "preallocate",
    .kind = BDRV_KIND_FILTER,
    .instance_size = sizeof(PreallocNode),
    .open_opts = prealloc_opts,
    .open = prealloc_open,
    .close = prealloc_close,
    .io = &prealloc_io,
    .perm = &prealloc_perm_ops,
};
