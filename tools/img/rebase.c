#include "config.h"
/*
 * strata-img rebase: change the backing file of an image.
 *
 * The image, the old and the new backing files are opened and checked as
 * the reference does; no Strata format records a backing file yet, so
 * changing it then fails with the reference's message for such formats.
 * (Such formats have no backing file and every byte allocated, so the
 * safe mode's copy step has nothing to do.)
 */
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/img/img.h"

typedef struct RebaseArgs {
    ImgCommonOpts common;
    const char *cache;
    const char *backing;      /* -b; "" for none */
    const char *backing_fmt;
    const char *backing_cache;
    bool progress;
    bool unsafe;
    bool compress;
} RebaseArgs;

static const struct option rebase_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "quiet", no_argument, NULL, 'q' },
    { "progress", no_argument, NULL, 'p' },
    { "force-share", no_argument, NULL, 'U' },
    { "format", required_argument, NULL, 'f' },
    { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
    { "cache", required_argument, NULL, 't' },
    { "backing", required_argument, NULL, 'b' },
    { "backing-format", required_argument, NULL, 'F' },
    { "backing-cache", required_argument, NULL, 'T' },
    { "backing-unsafe", no_argument, NULL, 'u' },
    { "compress", no_argument, NULL, 'c' },
    { "object", required_argument, NULL, OPTION_OBJECT },
    { NULL, 0, NULL, 0 },
};

/* Options that only set a flag; false if @c is not one of them. */
static bool rebase_flag(int c, RebaseArgs *a)
{
    switch (c) {
    case 'p':
        a->progress = true;
        return true;
    case 'u':
        a->unsafe = true;
        return true;
    case 'c':
        a->compress = true;
        return true;
    default:
        return false;
    }
}

/* One option; returns -1 to go on, else the exit status. */
static int rebase_option(int c, void *opaque)
{
    RebaseArgs *a = opaque;

    if (rebase_flag(c, a)) {
        return -1;
    }
    switch (c) {
    case 't':
        a->cache = optarg;
        return -1;
    case 'b':
        a->backing = optarg;
        return -1;
    case 'F':
        a->backing_fmt = optarg;
        return -1;
    case 'T':
        a->backing_cache = optarg;
        return -1;
    default:
        return img_common_option(c, "rebase", &a->common);
    }
}

/* A relative backing name is relative to the image's directory. */
static char *backing_path(const char *image, const char *backing)
{
    const char *slash = strrchr(image, '/');

    if (backing[0] == '/' || !slash) {
        return g_strdup(backing);
    }
    return g_strdup_printf("%.*s%s", (int)(slash - image + 1), image,
                           backing);
}

/* Open the new backing file read-only, as the copy step would. */
static bool open_new_backing(const RebaseArgs *a, const char *image,
                             int flags)
{
    g_autofree char *path = backing_path(image, a->backing);
    QDict *opts = qdict_new();
    Error *err = NULL;
    BlockBackend *blk;

    if (a->backing_fmt) {
        qdict_put_str(opts, "driver", a->backing_fmt);
    }
    if (a->common.force_share) {
        flags |= BDRV_O_FORCE_SHARE;
    }
    blk = blk_new_open(path, NULL, opts, flags, &err);
    if (!blk) {
        error_reportf_err(err, "Could not open new backing file '%s': ",
                          a->backing);
        return false;
    }
    blk_unref(blk);
    return true;
}

/* Checks on the open image and the new backing file. */
static bool rebase_prepare(BlockBackend *blk, const RebaseArgs *a,
                           const char *image, int backing_flags)
{
    BlockDriverInfo bdi;

    if (a->compress) {
        /* no Strata format writes compressed clusters */
        error_report("Compression not supported for this file format");
        return false;
    }
    if (a->backing_fmt && !bdrv_find_format(a->backing_fmt)) {
        error_report("Invalid format name: '%s'", a->backing_fmt);
        return false;
    }
    /* the reference asks for the cluster size even in unsafe mode: a
     * node that cannot tell (null-co) fails here */
    if (bdrv_get_info(blk_bs(blk), &bdi) < 0) {
        error_report("could not get block driver info");
        return false;
    }
    if (!a->unsafe && a->backing[0]) {
        return open_new_backing(a, image, backing_flags);
    }
    return true;
}

/* Record the new backing file in the image's metadata. */
static bool change_backing(BlockBackend *blk, const RebaseArgs *a)
{
    const char *name = a->backing ? a->backing : "(null)";
    bool none = !a->backing || !a->backing[0];
    Error *err = NULL;
    int ret;

    if (!none && !a->backing_fmt) {
        error_report("Could not change the backing file to '%s': backing "
                     "format must be specified", name);
        return false;
    }
    ret = bdrv_change_backing_file(blk_bs(blk), none ? NULL : a->backing,
                                   none ? NULL : a->backing_fmt, &err);
    error_free(err);
    if (ret == -ENOSPC) {
        error_report("Could not change the backing file to '%s': No space "
                     "left in the file header", name);
    } else if (ret < 0) {
        error_report("Could not change the backing file to '%s': %s", name,
                     strerror(-ret));
    }
    return ret == 0;
}

/* Cache modes of the image and of the backing files (flags out). */
static bool rebase_cache_modes(const RebaseArgs *a, int *flags,
                               bool *writethrough, int *backing_flags)
{
    bool backing_wt;

    if (!img_parse_cache(a->cache, flags, writethrough)) {
        return false;
    }
    if (bdrv_parse_cache_mode(a->backing_cache, backing_flags,
                              &backing_wt) < 0) {
        error_report("Invalid source cache option: %s", a->backing_cache);
        return false;
    }
    return true;
}

/* Everything after the arguments were checked; returns the status. */
static int rebase_run(RebaseArgs *a, const char *image)
{
    int flags = BDRV_O_RDWR | (a->unsafe ? BDRV_O_NO_BACKING : 0);
    int backing_flags = 0;
    bool writethrough, ok = false;
    BlockBackend *blk = NULL;

    img_progress_print(a->progress, 0);
    if (!rebase_cache_modes(a, &flags, &writethrough, &backing_flags)) {
        goto out;
    }
    blk = img_open_checked(a->common.image_opts, image, a->common.fmt, flags,
                           writethrough, a->common.quiet, false);
    if (blk && rebase_prepare(blk, a, image, backing_flags)) {
        img_progress_print(a->progress, 100);
        ok = change_backing(blk, a);
    }
out:
    img_progress_end(a->progress);
    if (blk) {
        blk_unref(blk);
    }
    return ok ? 0 : 1;
}

int img_rebase(int argc, char **argv)
{
    RebaseArgs a = { .cache = "writeback", .backing_cache = "writeback" };
    int ret;

    ret = img_getopt_loop(argc, argv, "rebase", "hf:F:b:upt:T:qUc",
                          rebase_longopts, rebase_option, &a);
    if (ret >= 0) {
        return ret;
    }
    a.progress = a.progress && !a.common.quiet;
    if (!img_expect_one_file("rebase", argc)) {
        return 1;
    }
    if (!a.unsafe && !a.backing) {
        return img_usage_error("rebase", "Must specify backing file (-b) or "
                               "use unsafe mode (-u)");
    }
    return rebase_run(&a, argv[optind]);
}
