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
#include "block/driver.h"
#include "tools/img/img.h"

typedef struct AmendArgs {
    char *options;            /* accumulated -o */
    const char *fmt;
    const char *cache;
    bool image_opts;
    bool quiet;
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

/* An -o value: not empty, not starting with a comma, and any trailing
 * commas come in escaped pairs. */
static bool option_list_valid(const char *s)
{
    size_t len = strlen(s), i = len;

    if (!s[0] || s[0] == ',') {
        return false;
    }
    while (i > 0 && s[i - 1] == ',') {
        i--;
    }
    return (len - i) % 2 == 0;
}

/* -o: validate and accumulate. */
static bool add_options(AmendArgs *a, const char *arg)
{
    if (!option_list_valid(arg)) {
        error_report("Invalid option list: %s", arg);
        return false;
    }
    a->options = img_opts_accumulate(a->options, arg);
    return true;
}

/* One option; returns -1 to go on, else the exit status. */
static int amend_option(int c, AmendArgs *a)
{
    switch (c) {
    case 'h':
        img_cmd_help("amend");
        return 0;
    case 'o':
        return add_options(a, optarg) ? -1 : 1;
    case 'f':
        a->fmt = optarg;
        return -1;
    case 't':
        a->cache = optarg;
        return -1;
    case 'p':
        a->progress = true;
        return -1;
    case 'q':
        a->quiet = true;
        return -1;
    case OPTION_IMAGE_OPTS:
        a->image_opts = true;
        return -1;
    case OPTION_FORCE:
        a->force = true;
        return -1;
    case OPTION_OBJECT:
        return img_object_add(optarg) ? -1 : 1;
    default:
        return img_getopt_fail("amend");
    }
}

/* "-o help" for a format: its amendable options, or why there are none.
 * No Strata driver has amendable options yet. */
static int amend_options_help(const char *fmt)
{
    if (!bdrv_find_format(fmt)) {
        error_report("Unknown file format '%s'", fmt);
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

    if (bdrv_parse_cache_mode(a->cache, &flags, &writethrough) < 0) {
        error_report("Invalid cache option: %s", a->cache);
        return 1;
    }
    blk = img_open_checked(a->image_opts, filename, a->fmt, flags,
                           writethrough, a->quiet, false);
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
    int c, ret;

    img_getopt_argv0(argv, "amend");
    while ((c = getopt_long(argc, argv, "ho:f:t:pq", amend_longopts,
                            NULL)) != -1) {
        ret = amend_option(c, &a);
        if (ret >= 0) {
            goto out;
        }
    }
    if (!a.options) {
        ret = img_usage_error("amend", "Must specify options (-o)");
    } else if (a.fmt && img_opts_is_help(a.options)) {
        ret = amend_options_help(a.fmt);
    } else if (optind != argc - 1) {
        error_report("Expecting one image file name");
        ret = 1;
    } else {
        ret = amend_image(&a, argv[optind]);
    }
    /* past the -o check, the progress line is ended whatever happened */
    img_progress_end(a.options && a.progress && !a.quiet);
out:
    g_free(a.options);
    return ret;
}
