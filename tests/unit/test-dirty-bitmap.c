/*
 * Dirty bitmaps of a node (block/dirty-bitmap.c): creation rules, what
 * the request path marks (writes, zero writes, discards; enabled bitmaps
 * only), clear, merge across granularities, inconsistent bitmaps and the
 * format hooks' defaults.  The node is a null-co protocol.
 */
#include "config.h"
#include <inttypes.h>
#include <string.h>
#include <glib.h>
#include "block/driver.h"

#define SIZE (1 << 20)

static BlockBackend *open_null(int64_t size)
{
    QDict *opts = qdict_new();
    g_autofree char *sz = g_strdup_printf("%" PRId64, size);

    qdict_put_str(opts, "driver", "null-co");
    qdict_put_str(opts, "size", sz);
    return blk_new_open(NULL, NULL, opts, BDRV_O_RDWR | BDRV_O_UNMAP,
                        &error_abort);
}

/* The dirty granules of @bm as "first-last," ranges in bytes. */
static char *dirty_ranges(BdrvDirtyBitmap *bm)
{
    HBitmap *hb = bdrv_dirty_bitmap_hbitmap(bm);
    uint64_t size = bdrv_dirty_bitmap_size(bm);
    GString *s = g_string_new(NULL);
    int64_t pos = 0;

    while ((pos = hbitmap_next_dirty(hb, pos, size - pos)) >= 0) {
        int64_t end = hbitmap_next_zero(hb, pos, size - pos);
        end = end < 0 ? (int64_t)size : end;
        g_string_append_printf(s, "%" PRId64 "-%" PRId64 ",", pos, end);
        pos = end;
    }
    return g_string_free(s, false);
}

static void test_create(void)
{
    BlockBackend *blk = open_null(SIZE);
    BlockDriverState *bs = blk_bs(blk);
    g_autofree char *longname = g_strnfill(1024, 'n');
    Error *err = NULL;
    BdrvDirtyBitmap *a = bdrv_create_dirty_bitmap(bs, 4096, "a", &error_abort);

    g_assert(bdrv_find_dirty_bitmap(bs, "a") == a);
    g_assert_null(bdrv_create_dirty_bitmap(bs, 512, "a", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Bitmap already exists: a");
    g_clear_pointer(&err, error_free);
    g_assert_null(bdrv_create_dirty_bitmap(bs, 512, longname, &err));
    g_assert(g_str_has_prefix(error_get_pretty(err), "Bitmap name too long"));
    g_clear_pointer(&err, error_free);
    g_assert_cmpuint(bdrv_dirty_bitmap_size(a), ==, SIZE);
    g_assert_cmpuint(bdrv_dirty_bitmap_granularity(a), ==, 4096);
    g_assert(bdrv_dirty_bitmap_enabled(a));
    g_assert(!bdrv_dirty_bitmap_persistent(a));
    g_assert_cmpuint(bdrv_default_bitmap_granularity(bs), ==, 65536);
    g_assert(bdrv_dirty_bitmap_at(bs, 0) == a && !bdrv_dirty_bitmap_at(bs, 1));
    bdrv_release_dirty_bitmap(a);
    g_assert_null(bdrv_find_dirty_bitmap(bs, "a"));
    blk_unref(blk);
}

static void test_requests_mark(void)
{
    BlockBackend *blk = open_null(SIZE);
    BlockDriverState *bs = blk_bs(blk);
    BdrvDirtyBitmap *on = bdrv_create_dirty_bitmap(bs, 4096, "on",
                                                   &error_abort);
    BdrvDirtyBitmap *off = bdrv_create_dirty_bitmap(bs, 512, "off",
                                                    &error_abort);
    g_autofree uint8_t *buf = g_malloc0(8192);
    g_autofree char *r1 = NULL, *r2 = NULL;

    bdrv_dirty_bitmap_set_enabled(off, false);
    g_assert_cmpint(blk_pwrite(blk, 5000, 100, buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 65536, 8192, 0), ==, 0);
    g_assert_cmpint(blk_pdiscard(blk, SIZE - 4096, 4096), ==, 0);
    r1 = dirty_ranges(on);
    g_assert_cmpstr(r1, ==, "4096-8192,65536-73728,1044480-1048576,");
    r2 = dirty_ranges(off);
    g_assert_cmpstr(r2, ==, "");
    bdrv_clear_dirty_bitmap(on);
    g_free(r1);
    r1 = dirty_ranges(on);
    g_assert_cmpstr(r1, ==, "");
    blk_unref(blk);
}

static void test_merge(void)
{
    BlockBackend *blk = open_null(SIZE), *other = open_null(SIZE / 2);
    BlockDriverState *bs = blk_bs(blk);
    BdrvDirtyBitmap *fine = bdrv_create_dirty_bitmap(bs, 512, "fine",
                                                     &error_abort);
    BdrvDirtyBitmap *coarse = bdrv_create_dirty_bitmap(bs, 65536, "coarse",
                                                       &error_abort);
    BdrvDirtyBitmap *half = bdrv_create_dirty_bitmap(blk_bs(other), 512, "h",
                                                     &error_abort);
    g_autofree char *r = NULL;
    Error *err = NULL;

    bdrv_dirty_bitmap_set_enabled(coarse, false);
    hbitmap_set(bdrv_dirty_bitmap_hbitmap(fine), 70000, 10);
    g_assert_cmpint(bdrv_merge_dirty_bitmap(coarse, fine, &error_abort), ==,
                    0);
    r = dirty_ranges(coarse);
    g_assert_cmpstr(r, ==, "65536-131072,");
    g_assert_cmpint(bdrv_merge_dirty_bitmap(half, fine, &err), ==, -EINVAL);
    g_assert_cmpstr(error_get_pretty(err), ==, "Bitmaps are of different "
                    "sizes (destination size is 524288, source size is "
                    "1048576) and can't be merged");
    error_free(err);
    blk_unref(other);
    blk_unref(blk);
}

static void test_inconsistent_and_hooks(void)
{
    BlockBackend *blk = open_null(SIZE);
    BlockDriverState *bs = blk_bs(blk);
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, 4096, "x",
                                                   &error_abort);
    g_autofree char *want = NULL;
    Error *err = NULL;

    g_assert_cmpint(bdrv_dirty_bitmap_check(bm, &error_abort), ==, 0);
    bdrv_dirty_bitmap_set_inconsistent(bm);
    g_assert(!bdrv_dirty_bitmap_enabled(bm));
    g_assert_cmpint(bdrv_dirty_bitmap_check(bm, &err), ==, -EINVAL);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Bitmap 'x' is inconsistent and cannot be used");
    g_assert(error_get_hint(err));
    g_clear_pointer(&err, error_free);
    g_assert(!bdrv_supports_persistent_dirty_bitmap(bs));
    g_assert(!bdrv_can_store_new_dirty_bitmap(bs, "y", 4096, &err));
    want = g_strdup_printf("Can't store persistent bitmaps to %s: "
                           "Operation not supported",
                           bdrv_get_node_name(bs));
    g_assert_cmpstr(error_get_pretty(err), ==, want);
    error_free(err);
    g_assert_cmpint(bdrv_remove_dirty_bitmap(bm, &error_abort), ==, 0);
    g_assert_null(bdrv_dirty_bitmap_at(bs, 0));
    blk_unref(blk);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    bdrv_init();
    g_test_add_func("/dirty-bitmap/create", test_create);
    g_test_add_func("/dirty-bitmap/requests-mark", test_requests_mark);
    g_test_add_func("/dirty-bitmap/merge", test_merge);
    g_test_add_func("/dirty-bitmap/inconsistent-and-hooks",
                    test_inconsistent_and_hooks);
    return g_test_run();
}
