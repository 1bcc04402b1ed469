#include "config.h"
/*
 * convert --bitmaps: the persistent bitmaps of the (single) source copied
 * to the target after the data, with their names, granularities and
 * enabled state; --skip-broken-bitmaps leaves inconsistent ones out with
 * a warning instead of refusing the conversion.
 */
#include "tools/img/img.h"
#include "tools/img/convert.h"

bool convert_bitmaps_check_source(BlockBackend *src, bool skip_broken)
{
    BlockDriverState *bs = blk_bs(src);
    BdrvDirtyBitmap *bm;

    if (!bdrv_supports_persistent_dirty_bitmap(bs)) {
        error_report("Source lacks bitmap support");
        return false;
    }
    for (unsigned i = 0; !skip_broken && (bm = bdrv_dirty_bitmap_at(bs, i));
         i++) {
        if (bdrv_dirty_bitmap_persistent(bm) &&
            bdrv_dirty_bitmap_inconsistent(bm)) {
            Error *err = NULL;

            error_setg(&err, "Cannot copy inconsistent bitmap '%s'",
                       bdrv_dirty_bitmap_name(bm));
            error_append_hint(&err, "Try --skip-broken-bitmaps, or use "
                              "'qemu-img bitmap --remove' to delete it\n");
            error_report_err(err);
            return false;
        }
    }
    return true;
}

bool convert_bitmaps_check_target(BlockBackend *dst)
{
    BlockDriverState *bs = blk_bs(dst);

    if (!bdrv_supports_persistent_dirty_bitmap(bs)) {
        error_report("Format driver '%s' does not support bitmaps",
                     bdrv_get_format_name(bs));
        return false;
    }
    return true;
}

/* One bitmap: created on the target like the source's, then filled. */
static bool copy_one(BlockDriverState *dst, BdrvDirtyBitmap *bm)
{
    const char *name = bdrv_dirty_bitmap_name(bm);
    uint32_t gran = bdrv_dirty_bitmap_granularity(bm);
    BdrvDirtyBitmap *nb = NULL;
    Error *err = NULL;

    if (bdrv_can_store_new_dirty_bitmap(dst, name, gran, &err)) {
        nb = bdrv_create_dirty_bitmap(dst, gran, name, &err);
    }
    if (!nb) {
        error_reportf_err(err, "Failed to create bitmap %s: ", name);
        return false;
    }
    bdrv_dirty_bitmap_set_persistent(nb, true);
    bdrv_dirty_bitmap_set_enabled(nb, bdrv_dirty_bitmap_enabled(bm));
    if (bdrv_merge_dirty_bitmap(nb, bm, &err) < 0) {
        error_reportf_err(err, "Failed to populate bitmap %s: ", name);
        bdrv_release_dirty_bitmap(nb);
        return false;
    }
    return true;
}

bool convert_bitmaps_copy(BlockBackend *src, BlockBackend *dst,
                          bool skip_broken)
{
    BlockDriverState *bs = blk_bs(src);
    BdrvDirtyBitmap *bm;

    for (unsigned i = 0; (bm = bdrv_dirty_bitmap_at(bs, i)); i++) {
        if (!bdrv_dirty_bitmap_persistent(bm)) {
            continue;
        }
        if (skip_broken && bdrv_dirty_bitmap_inconsistent(bm)) {
            warn_report("Skipping inconsistent bitmap '%s'",
                        bdrv_dirty_bitmap_name(bm));
            continue;
        }
        if (!copy_one(blk_bs(dst), bm)) {
            return false;
        }
    }
    return true;
}
