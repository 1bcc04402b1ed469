#include "config.h"
/*
 * strata-img amend: change format-specific options of an existing image.
 *
 * The command parses -o against the format's amend options (block.h:
 * bdrv_amend_opts()) with the reference's messages, then hands them to
 * the driver (bdrv_amend_options()), printing -p progress as it goes.
 */
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/img/create.h"
#include "tools/img/img.h"
#include "util/progress.h"

typedef struct AmendArgs {
    ImgCommonOpts common;
    char *options;            /* accumulated -o */
    const char *cache;
    bool progress;
    bool force;
} AmendArgs;

static const struct option amend_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "quiet", no_argument, NULL, 'q' },
    { "progress", no_argument, NULL, 'p' },
    { "format", required_argument, NULL, 'f' },
    { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
    { "cache", required_argument, NULL, 't' },
    { "object", required_argument, NULL, OPTION_OBJECT },
    { "options", required_argument, NULL, 'o' },
    { "force", no_argument, NULL, OPTION_FORCE },
    { NULL, 0, NULL, 0 },
};

/* One option; returns -1 to go on, else the exit status. */
static int amend_option(int c, void *opaque)
{
    AmendArgs *a = opaque;

    switch (c) {
    case 'o':
        return img_opts_add(&a->options, optarg) ? -1 : 1;
    case 't':
        a->cache = optarg;
        return -1;
    case 'p':
        a->progress = true;
        return -1;
    case OPTION_FORCE:
        a->force = true;
        return -1;
    default:
        return img_common_option(c, "amend", &a->common);
    }
}

/* "-o help" for a format: its amendable options, or why there are none. */
static int amend_options_help(const char *fmt)
{
    const BlockDriver *drv = bdrv_find_format(fmt);
    g_autofree char *title = NULL;
    Error *err = NULL;

    if (!drv) {
        error_report("Unknown file format '%s'", fmt);
        return 1;
    }
    if (bdrv_not_yet_supported_error(drv, &err)) {
        error_report_err(err);
        return 1;
    }
    if (!bdrv_amend_opts(drv)) {
        error_report("Format driver '%s' does not support option amendment",
                     fmt);
        return 1;
    }
    title = g_strdup_printf("Amend options for '%s':", fmt);
    bdrv_opts_print_help_titled(title, bdrv_amend_opts(drv));
    return 0;
}

/* -o against the amend options; a name only creation knows gets the
 * reference's hint.  NULL (reported) on error. */
static QDict *amend_parse_opts(const BlockDriver *drv, const char *str)
{
    QDict *opts = qdict_new();
    g_autoptr(QDict) as_create = qdict_new();
    Error *err = NULL;

    if (img_parse_check_opts(opts, str, bdrv_amend_opts(drv), &err)) {
        return opts;
    }
    qobject_unref(opts);
    if (img_parse_check_create_opts(as_create, str, drv, NULL, NULL)) {
        error_append_hint(&err, "This option is only supported for image "
                          "creation\n");
    }
    error_report_err(err);
    return NULL;
}

/* The driver's progress as the percentage -p prints. */
static void amend_status(BlockDriverState *bs, int64_t done, int64_t total,
                         void *opaque)
{
    progress_print(total > 0 ? 100.f * done / total : 0.f, 0);
}

/* Parse the options for the open image's format and amend it. */
static int amend_open_image(const AmendArgs *a, BlockBackend *blk)
{
    BlockDriverState *bs = blk_bs(blk);
    const char *fmt = bdrv_get_format_name(bs);
    const BlockDriver *drv = fmt ? bdrv_find_format(fmt) : NULL;
    g_autoptr(QDict) opts = NULL;
    Error *err = NULL;
    int ret;

    if (img_opts_is_help(a->options)) {
        /* the format was probed: its help now */
        return amend_options_help(fmt ? fmt : "");
    }
    if (!bdrv_amend_opts(drv)) {
        error_report("Format driver '%s' does not support option amendment",
                     fmt ? fmt : "");
        return 1;
    }
    opts = amend_parse_opts(drv, a->options);
    if (!opts) {
        return 1;
    }
    progress_print(0.f, 0);
    ret = bdrv_amend_options(bs, opts, amend_status, NULL, a->force, &err);
    progress_print(100.f, 0);
    if (ret < 0) {
        error_report_err(err);
        return 1;
    }
    return 0;
}

/* Open the image and amend it; returns the exit status. */
static int amend_image(const AmendArgs *a, const char *filename)
{
    int flags = BDRV_O_RDWR;
    bool writethrough;
    BlockBackend *blk;
    int ret;

    if (!img_parse_cache(a->cache, &flags, &writethrough)) {
        return 1;
    }
    blk = img_open_common(&a->common, filename, flags, writethrough);
    if (!blk) {
        return 1;
    }
    ret = amend_open_image(a, blk);
    blk_unref(blk);
    return ret;
}

int img_amend(int argc, char **argv)
{
    AmendArgs a = { .cache = "writeback" };
    int ret;

    ret = img_getopt_loop(argc, argv, "amend", "ho:f:t:pq", amend_longopts,
                          amend_option, &a);
    if (ret >= 0) {
        goto out;
    }
    if (!a.options) {
        ret = img_usage_error("amend", "Must specify options (-o)");
        goto out;
    }
    a.progress = a.progress && !a.common.quiet;
    progress_init(a.progress, 1.0);
    if (a.common.fmt && img_opts_is_help(a.options)) {
        ret = amend_options_help(a.common.fmt);
    } else if (optind != argc - 1) {
        error_report("Expecting one image file name");
        ret = 1;
    } else {
        ret = amend_image(&a, argv[optind]);
    }
    /* past the -o check, the progress line is ended whatever happened */
    progress_end();
out:
    g_free(a.options);
    return ret;
}
