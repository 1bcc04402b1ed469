#include "config.h"
/*
 * The "copy-on-read" filter: reads pass to the "file" child with
 * BDRV_REQ_COPY_ON_READ, so the child node copies what it reads from its
 * backing chain into itself (the request path does the copying, see
 * block/io.c).  With "bottom": only data from the chain down to that
 * node (included) is copied; what lies below it is read without copying.
 * Everything else passes through.
 */
#include <errno.h>
#include "block/drivers.h"

typedef struct CorNode {
    BlockDriverState *bottom;     /* NULL: copy from the whole chain */
} CorNode;

static const BlockOptDesc cor_opts[] = {
    { "bottom", OPT_STRING, "The lowest node whose data is copied", NULL },
    { NULL },
};

static const char *const cor_strong_opts[] = { "bottom", NULL };

/* "bottom" names a node of the chain below our child. */
static int cor_find_bottom(BlockDriverState *bs, QDict *options, Error **errp)
{
    CorNode *s = bs->opaque;
    const char *name = bdrv_opt_str(options, "bottom", NULL);
    BlockDriverState *p;

    if (!name) {
        return 0;
    }
    s->bottom = bdrv_find_node(name);
    if (!s->bottom) {
        error_setg(errp, "Bottom node '%s' not found", name);
        return -EINVAL;
    }
    p = bdrv_skip_filters(bs->file->bs);
    while (p && p != s->bottom) {
        p = bdrv_backing_bs(p);
        p = p ? bdrv_skip_filters(p) : NULL;
    }
    if (!p) {
        error_setg(errp, "Bottom node '%s' is not in the backing chain of "
                   "'%s'", name, bdrv_get_node_name(bs->file->bs));
        return -EINVAL;
    }
    return 0;
}

static int cor_open(BlockDriverState *bs, QDict *options, int flags,
                    Error **errp)
{
    if (!bdrv_open_filtered_child(bs, NULL, options, "file", errp)) {
        return -EINVAL;
    }
    return cor_find_bottom(bs, options, errp);
}

/* We write what we read ("write unchanged") whatever our users need. */
static void cor_child_perm(BlockDriverState *bs, BdrvChild *c,
                           BdrvChildRole role, uint64_t perm, uint64_t shared,
                           uint64_t *nperm, uint64_t *nshared)
{
    bdrv_default_child_perm(bs, c, role, perm, shared, nperm, nshared);
    *nperm |= BLK_PERM_WRITE_UNCHANGED;
}

/* How much from @offset is (or is not) to be copied, with "bottom". */
static int coroutine_fn cor_extent(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, int64_t *pnum, bool *copy)
{
    CorNode *s = bs->opaque;
    BlockDriverState *top = bdrv_skip_filters(bs->file->bs);
    int ret;

    if (!s->bottom) {
        *pnum = bytes;
        *copy = true;
        return 0;
    }
    ret = bdrv_co_block_status_above(top, bdrv_backing_bs(s->bottom), offset,
                                     bytes, pnum, NULL, NULL, NULL);
    *copy = ret < 0 || (ret & BDRV_BLOCK_ALLOCATED);
    if (*pnum == 0) {
        *pnum = bytes;      /* past the end: the child reads zeroes */
    }
    return 0;
}

static int coroutine_fn cor_co_preadv(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, IOVector *qiov,
                                      BdrvRequestFlags flags)
{
    int64_t done = 0;

    while (done < bytes) {
        BdrvRequestFlags f = flags;
        IOVector slice;
        int64_t n;
        bool copy;
        int ret;

        cor_extent(bs, offset + done, bytes - done, &n, &copy);
        if (copy) {
            f |= BDRV_REQ_COPY_ON_READ;
        }
        iov_vec_init_slice(&slice, qiov, done, n);
        ret = bdrv_co_preadv(bs->file, offset + done, n, &slice, f);
        iov_vec_destroy(&slice);
        if (ret < 0) {
            return ret;
        }
        done += n;
    }
    return 0;
}

static const BlockDriverIO cor_io = {
    .co_preadv = cor_co_preadv,
};

static const BlockDriverPermOps cor_perm = {
    .child_perm = cor_child_perm,
};

static const BlockDriverNamingOps cor_naming = {
    .strong_opts = cor_strong_opts,
};

const BlockDriver bdrv_copy_on_read = {
    .format_name = "copy-on-read",
    .kind = BDRV_KIND_FILTER,
    .instance_size = sizeof(CorNode),
    .open_opts = cor_opts,
    .open = cor_open,
    .io = &cor_io,
    .perm = &cor_perm,
    .naming = &cor_naming,
};
