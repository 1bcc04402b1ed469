#include "config.h"
/*
 * Dirty bitmaps of a node: named, with a granularity, enabled or not,
 * persistent (stored by the format at close) or not.  The request path
 * (block/io.c) marks every enabled bitmap of a node on each write, zero
 * write, discard and copy into it, through bdrv_dirty_bitmaps_mark().
 *
 * A node keeps its bitmaps in bs->dirty_bitmaps newest first, the order
 * in which the reference walks them (convert --bitmaps copies, reports
 * and stores new ones in it).  A bitmap's bits live in an HBitmap over
 * the node's bytes (one bit per granule).
 */
#include <inttypes.h>
#include <string.h>
#include "block/driver.h"

struct BdrvDirtyBitmap {
    BlockDriverState *bs;
    char *name;
    HBitmap *hb;           /* allocated on first use */
    uint64_t size;         /* bytes covered */
    uint32_t granularity;
    bool disabled;
    bool persistent;
    bool inconsistent;     /* in-use in the image: contents unknown */
    bool loaded;           /* bits read (or nothing to read) */
};

/* The node's list, created on first use. */
static GPtrArray *bitmaps_of(BlockDriverState *bs)
{
    if (!bs->dirty_bitmaps) {
        bs->dirty_bitmaps = g_ptr_array_new();
    }
    return bs->dirty_bitmaps;
}

BdrvDirtyBitmap *bdrv_find_dirty_bitmap(BlockDriverState *bs,
                                        const char *name)
{
    for (guint i = 0; bs->dirty_bitmaps && i < bs->dirty_bitmaps->len; i++) {
        BdrvDirtyBitmap *bm = g_ptr_array_index(bs->dirty_bitmaps, i);
        if (!strcmp(bm->name, name)) {
            return bm;
        }
    }
    return NULL;
}

BdrvDirtyBitmap *bdrv_create_dirty_bitmap(BlockDriverState *bs,
                                          uint32_t granularity,
                                          const char *name, Error **errp)
{
    BdrvDirtyBitmap *bm;
    int64_t len;

    g_assert(granularity >= 512 && !(granularity & (granularity - 1)));
    if (bdrv_find_dirty_bitmap(bs, name)) {
        error_setg(errp, "Bitmap already exists: %s", name);
        return NULL;
    }
    if (strlen(name) > BDRV_BITMAP_MAX_NAME_SIZE) {
        error_setg(errp, "Bitmap name too long: %s", name);
        return NULL;
    }
    len = bdrv_getlength(bs);
    if (len < 0) {
        error_setg_errno(errp, (int)-len, "could not get length of device");
        return NULL;
    }
    bm = g_new0(BdrvDirtyBitmap, 1);
    bm->bs = bs;
    bm->name = g_strdup(name);
    bm->granularity = granularity;
    bm->size = len;
    bm->loaded = true;
    g_ptr_array_insert(bitmaps_of(bs), 0, bm);
    return bm;
}

void bdrv_release_dirty_bitmap(BdrvDirtyBitmap *bm)
{
    g_ptr_array_remove(bm->bs->dirty_bitmaps, bm);
    hbitmap_free(bm->hb);
    g_free(bm->name);
    g_free(bm);
}

void bdrv_release_all_dirty_bitmaps(BlockDriverState *bs)
{
    while (bs->dirty_bitmaps && bs->dirty_bitmaps->len) {
        bdrv_release_dirty_bitmap(g_ptr_array_index(bs->dirty_bitmaps, 0));
    }
    g_clear_pointer(&bs->dirty_bitmaps, g_ptr_array_unref);
}

BdrvDirtyBitmap *bdrv_dirty_bitmap_at(BlockDriverState *bs, unsigned i)
{
    if (!bs->dirty_bitmaps || i >= bs->dirty_bitmaps->len) {
        return NULL;
    }
    return g_ptr_array_index(bs->dirty_bitmaps, i);
}

const char *bdrv_dirty_bitmap_name(const BdrvDirtyBitmap *bm)
{
    return bm->name;
}

uint32_t bdrv_dirty_bitmap_granularity(const BdrvDirtyBitmap *bm)
{
    return bm->granularity;
}

uint64_t bdrv_dirty_bitmap_size(const BdrvDirtyBitmap *bm)
{
    return bm->size;
}

bool bdrv_dirty_bitmap_enabled(const BdrvDirtyBitmap *bm)
{
    return !bm->disabled;
}

void bdrv_dirty_bitmap_set_enabled(BdrvDirtyBitmap *bm, bool enabled)
{
    bm->disabled = !enabled;
}

bool bdrv_dirty_bitmap_persistent(const BdrvDirtyBitmap *bm)
{
    return bm->persistent;
}

void bdrv_dirty_bitmap_set_persistent(BdrvDirtyBitmap *bm, bool persistent)
{
    bm->persistent = persistent;
}

bool bdrv_dirty_bitmap_inconsistent(const BdrvDirtyBitmap *bm)
{
    return bm->inconsistent;
}

void bdrv_dirty_bitmap_set_inconsistent(BdrvDirtyBitmap *bm)
{
    bm->inconsistent = true;
    bm->disabled = true;
}

void bdrv_dirty_bitmap_set_unloaded(BdrvDirtyBitmap *bm)
{
    bm->loaded = false;
}

/* The bits, allocated on first use: bitmaps nobody reads or sets (info
 * of an image with many large ones) cost no memory. */
HBitmap *bdrv_dirty_bitmap_hbitmap(BdrvDirtyBitmap *bm)
{
    if (!bm->hb) {
        bm->hb = hbitmap_alloc(bm->size, __builtin_ctz(bm->granularity));
    }
    return bm->hb;
}

HBitmap *bdrv_dirty_bitmap_peek(BdrvDirtyBitmap *bm)
{
    return bm->hb;
}

/* Bits still on disk are read by the driver before anyone looks. */
int bdrv_dirty_bitmap_load(BdrvDirtyBitmap *bm, Error **errp)
{
    const BlockDriver *drv = bm->bs->drv;
    int ret;

    if (bm->loaded || bm->inconsistent) {
        return 0;
    }
    if (!drv->bitmaps || !drv->bitmaps->load) {
        error_setg(errp, "Could not read bitmap '%s' from image", bm->name);
        return -ENOTSUP;
    }
    ret = drv->bitmaps->load(bm->bs, bm, errp);
    if (ret == 0) {
        bm->loaded = true;
    }
    return ret;
}

int bdrv_dirty_bitmap_check(const BdrvDirtyBitmap *bm, Error **errp)
{
    if (bm->inconsistent) {
        error_setg(errp, "Bitmap '%s' is inconsistent and cannot be used",
                   bm->name);
        error_append_hint(errp, "Try block-dirty-bitmap-remove to delete "
                          "this bitmap from disk\n");
        return -EINVAL;
    }
    return 0;
}

void bdrv_clear_dirty_bitmap(BdrvDirtyBitmap *bm)
{
    if (bm->hb) {
        hbitmap_reset_all(bm->hb);
    }
    bm->loaded = true;
}

int bdrv_merge_dirty_bitmap(BdrvDirtyBitmap *dst, BdrvDirtyBitmap *src,
                            Error **errp)
{
    uint64_t size = src->size;
    HBitmap *from, *to;
    int64_t pos = 0;

    if (dst->size != size) {
        error_setg(errp, "Bitmaps are of different sizes (destination size "
                   "is %" PRIu64 ", source size is %" PRIu64 ") and can't "
                   "be merged", dst->size, size);
        return -EINVAL;
    }
    if (bdrv_dirty_bitmap_load(src, errp) < 0 ||
        bdrv_dirty_bitmap_load(dst, errp) < 0) {
        return -EIO;
    }
    from = bdrv_dirty_bitmap_hbitmap(src);
    to = bdrv_dirty_bitmap_hbitmap(dst);
    while ((pos = hbitmap_next_dirty(from, pos, size - pos)) >= 0) {
        int64_t end = hbitmap_next_zero(from, pos, size - pos);

        end = end < 0 ? (int64_t)size : end;
        hbitmap_set(to, pos, end - pos);
        pos = end;
    }
    return 0;
}

void bdrv_dirty_bitmaps_mark(BlockDriverState *bs, int64_t offset,
                             int64_t bytes)
{
    for (guint i = 0; bs->dirty_bitmaps && i < bs->dirty_bitmaps->len; i++) {
        BdrvDirtyBitmap *bm = g_ptr_array_index(bs->dirty_bitmaps, i);

        if (!bm->disabled && bytes > 0) {
            hbitmap_set(bdrv_dirty_bitmap_hbitmap(bm), offset, bytes);
        }
    }
}

void bdrv_dirty_bitmaps_truncate(BlockDriverState *bs, int64_t size)
{
    for (guint i = 0; bs->dirty_bitmaps && i < bs->dirty_bitmaps->len; i++) {
        BdrvDirtyBitmap *bm = g_ptr_array_index(bs->dirty_bitmaps, i);

        bm->size = size;
        if (bm->hb) {
            hbitmap_truncate(bm->hb, size);
        }
    }
}

uint32_t bdrv_default_bitmap_granularity(BlockDriverState *bs)
{
    BlockDriverInfo bdi;

    if (bdrv_get_info(bs, &bdi) >= 0 && bdi.cluster_size > 0) {
        return MIN(MAX(4096, (uint32_t)bdi.cluster_size), 65536);
    }
    return 65536;
}

bool bdrv_can_store_new_dirty_bitmap(BlockDriverState *bs, const char *name,
                                     uint32_t granularity, Error **errp)
{
    const BlockDriver *drv = bs->drv;

    if (drv && drv->bitmaps && drv->bitmaps->can_store_new) {
        return drv->bitmaps->can_store_new(bs, name, granularity, errp);
    }
    error_setg_errno(errp, ENOTSUP, "Can't store persistent bitmaps to %s",
                     bdrv_get_node_name(bs));
    return false;
}

bool bdrv_supports_persistent_dirty_bitmap(BlockDriverState *bs)
{
    const BlockDriver *drv = bs->drv;

    return drv && drv->bitmaps && drv->bitmaps->supported &&
           drv->bitmaps->supported(bs);
}

int bdrv_remove_dirty_bitmap(BdrvDirtyBitmap *bm, Error **errp)
{
    const BlockDriver *drv = bm->bs->drv;

    if (bm->persistent && drv && drv->bitmaps &&
        drv->bitmaps->remove_persistent) {
        int ret = drv->bitmaps->remove_persistent(bm->bs, bm->name, errp);
        if (ret < 0) {
            return ret;
        }
    }
    bdrv_release_dirty_bitmap(bm);
    return 0;
}

int bdrv_store_persistent_dirty_bitmaps(BlockDriverState *bs, Error **errp)
{
    const BlockDriver *drv = bs->drv;
    unsigned i = 0;
    BdrvDirtyBitmap *bm;
    int ret;

    if (!drv || !drv->bitmaps || !drv->bitmaps->store) {
        return 0;
    }
    ret = drv->bitmaps->store(bs, errp);
    while (ret == 0 && (bm = bdrv_dirty_bitmap_at(bs, i))) {
        if (bm->persistent) {
            bdrv_release_dirty_bitmap(bm);
        } else {
            i++;
        }
    }
    return ret;
}
