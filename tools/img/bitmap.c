#include "config.h"
/*
 * strata-img bitmap: add, remove, clear, enable, disable or merge the
 * persistent dirty bitmaps of an image.
 *
 * Actions run in command-line order on the node's dirty bitmaps
 * (block/dirty-bitmap.c) and stop at the first failure; the format
 * stores the persistent bitmaps when the image closes (qcow2:
 * block/format/qcow2/bitmap.c).
 */
#include <stdio.h>
#include <string.h>
#include "tools/img/img.h"

typedef enum {
    BITMAP_ADD, BITMAP_REMOVE, BITMAP_CLEAR, BITMAP_ENABLE, BITMAP_DISABLE,
    BITMAP_MERGE,
} BitmapOp;

static const char *const bitmap_op_names[] = {
    [BITMAP_ADD] = "add", [BITMAP_REMOVE] = "remove",
    [BITMAP_CLEAR] = "clear", [BITMAP_ENABLE] = "enable",
    [BITMAP_DISABLE] = "disable", [BITMAP_MERGE] = "merge",
};

typedef struct BitmapAction {
    BitmapOp op;
    const char *src;          /* --merge SOURCE */
} BitmapAction;

typedef struct BitmapArgs {
    GArray *actions;          /* BitmapAction */
    ImgCommonOpts common;
    const char *src_file;     /* -b */
    const char *src_fmt;      /* -F */
    bool merge;
    int64_t granularity;
} BitmapArgs;

/* --format is deliberately absent: the reference accepts only -f. */
static const struct option bitmap_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
    { "object", required_argument, NULL, OPTION_OBJECT },
    { "add", no_argument, NULL, OPTION_ADD },
    { "remove", no_argument, NULL, OPTION_REMOVE },
    { "clear", no_argument, NULL, OPTION_CLEAR },
    { "enable", no_argument, NULL, OPTION_ENABLE },
    { "disable", no_argument, NULL, OPTION_DISABLE },
    { "merge", required_argument, NULL, OPTION_MERGE },
    { "source-file", required_argument, NULL, 'b' },
    { "source-format", required_argument, NULL, 'F' },
    { "granularity", required_argument, NULL, 'g' },
    { NULL, 0, NULL, 0 },
};

static void add_action(BitmapArgs *a, BitmapOp op, const char *src)
{
    BitmapAction act = { .op = op, .src = src };

    g_array_append_val(a->actions, act);
    a->merge |= op == BITMAP_MERGE;
}

/* The action options; false if @c is not one of them. */
static bool action_option(int c, BitmapArgs *a)
{
    static const struct { int opt; BitmapOp op; } map[] = {
        { OPTION_ADD, BITMAP_ADD }, { OPTION_REMOVE, BITMAP_REMOVE },
        { OPTION_CLEAR, BITMAP_CLEAR }, { OPTION_ENABLE, BITMAP_ENABLE },
        { OPTION_DISABLE, BITMAP_DISABLE }, { OPTION_MERGE, BITMAP_MERGE },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(map); i++) {
        if (map[i].opt == c) {
            add_action(a, map[i].op, c == OPTION_MERGE ? optarg : NULL);
            return true;
        }
    }
    return false;
}

/* One option; returns -1 to go on, else the exit status. */
static int bitmap_option(int c, void *opaque)
{
    BitmapArgs *a = opaque;

    if (action_option(c, a)) {
        return -1;
    }
    switch (c) {
    case 'b':
        a->src_file = optarg;
        return -1;
    case 'F':
        a->src_fmt = optarg;
        return -1;
    case 'g':
        return img_cvtnum("granularity", optarg, &a->granularity) ? -1 : 1;
    default:
        return img_common_option(c, "bitmap", &a->common);
    }
}

/* Was --add among the actions? */
static bool has_add(const BitmapArgs *a)
{
    for (guint i = 0; i < a->actions->len; i++) {
        if (g_array_index(a->actions, BitmapAction, i).op == BITMAP_ADD) {
            return true;
        }
    }
    return false;
}

/* Combinations the reference refuses before opening anything. */
static bool bitmap_args_valid(const BitmapArgs *a, int operands)
{
    const char *msg = NULL;

    if (!a->actions->len) {
        msg = "Need at least one of --add, --remove, --clear, --enable, "
              "--disable, or --merge";
    } else if (a->granularity && !has_add(a)) {
        msg = "granularity only supported with --add";
    } else if (a->src_file && !a->merge) {
        msg = "Merge bitmap source file only supported with --merge";
    } else if (a->src_fmt && !a->src_file) {
        msg = "-F only supported with -b";
    } else if (operands != 2) {
        msg = "Expecting filename and bitmap name";
    }
    if (msg) {
        error_report("%s", msg);
    }
    return !msg;
}

/* --add: the name, the granularity, whether the format can store it,
 * then the bitmap itself (enabled; --disable is an action of its own).
 * The reference hands the granularity on as a 32-bit number: a size of
 * 4G or more is checked with its upper bits dropped. */
static void bitmap_add(BlockDriverState *bs, const char *name,
                       int64_t granularity, Error **errp)
{
    uint32_t g = (uint32_t)granularity;
    BdrvDirtyBitmap *bm;

    if (!name[0]) {
        error_setg(errp, "Bitmap name cannot be empty");
        return;
    }
    if (granularity && (g < 512 || (g & (g - 1)))) {
        error_setg(errp, "Granularity must be power of 2 and at least 512");
        return;
    }
    if (!granularity) {
        g = bdrv_default_bitmap_granularity(bs);
    }
    if (!bdrv_can_store_new_dirty_bitmap(bs, name, g, errp)) {
        return;
    }
    bm = bdrv_create_dirty_bitmap(bs, g, name, errp);
    if (bm) {
        bdrv_dirty_bitmap_set_persistent(bm, true);
    }
}

/* The bitmap @name of @bs, usable unless @any and inconsistent. */
static BdrvDirtyBitmap *lookup(BlockDriverState *bs, const char *name,
                               bool any, Error **errp)
{
    BdrvDirtyBitmap *bm = bdrv_find_dirty_bitmap(bs, name);

    if (!bm) {
        error_setg(errp, "Dirty bitmap '%s' not found", name);
        return NULL;
    }
    if (!any && bdrv_dirty_bitmap_check(bm, errp) < 0) {
        return NULL;
    }
    return bm;
}

/* --merge: the target checked first, then the source (in the -b image
 * when given). */
static void bitmap_merge(BlockDriverState *bs, BlockDriverState *src_bs,
                         const char *bitmap, const char *src, Error **errp)
{
    BdrvDirtyBitmap *dst = lookup(bs, bitmap, false, errp);
    BdrvDirtyBitmap *from = dst ? lookup(src_bs, src, false, errp) : NULL;

    if (from) {
        bdrv_merge_dirty_bitmap(dst, from, errp);
    }
}

/* Every action but add and merge: find the bitmap, then act. */
static void bitmap_simple(BlockDriverState *bs, BitmapOp op,
                          const char *bitmap, Error **errp)
{
    BdrvDirtyBitmap *bm = lookup(bs, bitmap, op == BITMAP_REMOVE, errp);

    if (!bm) {
        return;
    }
    switch (op) {
    case BITMAP_REMOVE:
        bdrv_remove_dirty_bitmap(bm, errp);
        break;
    case BITMAP_CLEAR:
        bdrv_clear_dirty_bitmap(bm);
        break;
    default:
        bdrv_dirty_bitmap_set_enabled(bm, op == BITMAP_ENABLE);
        break;
    }
}

/* Run one action; false (error printed) on failure. */
static bool bitmap_run(BlockBackend *blk, BlockBackend *src,
                       const BitmapArgs *a, const BitmapAction *act,
                       const char *bitmap)
{
    BlockDriverState *bs = blk_bs(blk);
    Error *err = NULL;

    if (act->op == BITMAP_ADD) {
        bitmap_add(bs, bitmap, a->granularity, &err);
    } else if (act->op == BITMAP_MERGE) {
        bitmap_merge(bs, src ? blk_bs(src) : bs, bitmap, act->src, &err);
    } else {
        bitmap_simple(bs, act->op, bitmap, &err);
    }
    if (err) {
        error_reportf_err(err, "Operation %s on bitmap %s failed: ",
                          bitmap_op_names[act->op], bitmap);
        return false;
    }
    return true;
}

/* The bitmaps written before the image closes, so that a failure
 * fails the command as in the reference (which then closes the image,
 * and tries again). */
static bool store_bitmaps(BlockBackend *blk)
{
    BlockDriverState *bs = blk_bs(blk);
    Error *err = NULL;

    if (bdrv_store_persistent_dirty_bitmaps(bs, &err) == 0) {
        return true;
    }
    error_reportf_err(err, "Lost persistent bitmaps during inactivation of "
                      "node '%s': ", bdrv_get_node_name(bs));
    error_report("Error while closing the image: %s", strerror(EINVAL));
    return false;
}

/* Open the image (and the merge source, -b) and run the actions in
 * order; the bitmaps are stored when the image closes, also after a
 * failed action.  Returns the status. */
static int bitmap_image(const BitmapArgs *a, const char *file,
                        const char *bitmap)
{
    BlockBackend *blk, *src = NULL;
    bool ok = true;

    /* bitmaps, not guest data: no backing files (as the reference) */
    blk = img_open_common(&a->common, file, BDRV_O_RDWR | BDRV_O_NO_BACKING,
                          false);
    if (!blk) {
        return 1;
    }
    if (a->src_file) {
        src = img_open(false, a->src_file, a->src_fmt, BDRV_O_NO_BACKING,
                       false, false, false);
        ok = src != NULL;
    }
    for (guint i = 0; ok && i < a->actions->len; i++) {
        ok = bitmap_run(blk, src, a,
                        &g_array_index(a->actions, BitmapAction, i), bitmap);
    }
    ok &= store_bitmaps(blk);
    if (src) {
        blk_unref(src);
    }
    blk_unref(blk);
    return ok ? 0 : 1;
}

int img_bitmap(int argc, char **argv)
{
    BitmapArgs a = { .actions = g_array_new(false, false,
                                            sizeof(BitmapAction)) };
    int ret;

    ret = img_getopt_loop(argc, argv, "bitmap", "b:f:F:g:h", bitmap_longopts,
                          bitmap_option, &a);
    if (ret < 0) {
        ret = bitmap_args_valid(&a, argc - optind)
              ? bitmap_image(&a, argv[optind], argv[optind + 1]) : 1;
    }
    g_array_free(a.actions, true);
    return ret;
}
