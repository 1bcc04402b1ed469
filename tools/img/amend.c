#include "config.h"
/*
 * strata-img amend: change format-specific options of an existing image.
 *
 * No Strata format can amend its options yet; the command parses and
 * checks everything as the reference does and then refuses with the
 * reference's message for such formats.
 */
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/img/img.h"

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

/* "-o help" for a format: its amendable options, or why there are none.
 * No Strata driver has amendable options yet. */
static int amend_options_help(const char *fmt)
{
    const BlockDriver *drv = bdrv_find_format(fmt);
    Error *err = NULL;

    if (!drv) {
        error_report("Unknown file format '%s'", fmt);
        return 1;
    }
    if (bdrv_not_yet_supported_error(drv, &err)) {
        error_report_err(err);
        return 1;
    }
    error_report("Format driver '%s' does not support option amendment", fmt);
    return 1;
}

/* Open the image and amend it; returns the exit status. */
static int amend_image(const AmendArgs *a, const char *filename)
{
    int flags = BDRV_O_RDWR;
    bool writethrough;
    BlockBackend *blk;
    const char *fmt;

    if (!img_parse_cache(a->cache, &flags, &writethrough)) {
        return 1;
    }
    blk = img_open_common(&a->common, filename, flags, writethrough);
    if (!blk) {
        return 1;
    }
    fmt = bdrv_get_format_name(blk_bs(blk));
    error_report("Format driver '%s' does not support option amendment",
                 fmt ? fmt : "");
    blk_unref(blk);
    return 1;
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
    } else if (a.common.fmt && img_opts_is_help(a.options)) {
        ret = amend_options_help(a.common.fmt);
    } else if (optind != argc - 1) {
        error_report("Expecting one image file name");
        ret = 1;
    } else {
        ret = amend_image(&a, argv[optind]);
    }
    /* past the -o check, the progress line is ended whatever happened */
    img_progress_end(a.options && a.progress && !a.common.quiet);
out:
    g_free(a.options);
    return ret;
}
