#include "config.h"
/*
 * strata-img check: consistency check of an image's metadata.
 *
 * None of the formats Strata implements keeps metadata that can be
 * checked, so after opening the image the command reports what the
 * reference reports for such formats (exit status 63).
 */
#include <stdio.h>
#include <string.h>
#include "tools/img/img.h"

/* Exit status: the format cannot be checked at all. */
#define CHECK_NOT_SUPPORTED 63

typedef struct CheckArgs {
    ImgCommonOpts common;
    const char *cache;
    int flags;
    int fix;                  /* 0, CHECK_FIX_LEAKS or CHECK_FIX_ALL */
    OutputFormat output;
} CheckArgs;

enum { CHECK_FIX_LEAKS = 1, CHECK_FIX_ALL = 3 };

static const struct option check_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "quiet", no_argument, NULL, 'q' },
    { "format", required_argument, NULL, 'f' },
    { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
    { "cache", required_argument, NULL, 'T' },
    { "force-share", no_argument, NULL, 'U' },
    { "output", required_argument, NULL, OPTION_OUTPUT },
    { "repair", required_argument, NULL, 'r' },
    { "object", required_argument, NULL, OPTION_OBJECT },
    { NULL, 0, NULL, 0 },
};

/* -r leaks|all */
static bool parse_repair(const char *arg, CheckArgs *a)
{
    if (!strcmp(arg, "leaks")) {
        a->fix = CHECK_FIX_LEAKS;
    } else if (!strcmp(arg, "all")) {
        a->fix = CHECK_FIX_ALL;
    } else {
        img_usage_error("check", "--repair (-r) expects 'leaks' or 'all' "
                        "not '%s'", arg);
        return false;
    }
    a->flags |= BDRV_O_RDWR;
    return true;
}

/* One option; returns -1 to go on, else the exit status. */
static int check_option(int c, void *opaque)
{
    CheckArgs *a = opaque;

    switch (c) {
    case 'T':
        a->cache = optarg;
        return -1;
    case 'r':
        return parse_repair(optarg, a) ? -1 : 1;
    case OPTION_OUTPUT:
        return img_parse_output("check", optarg, &a->output) ? -1 : 1;
    default:
        return img_common_option(c, "check", &a->common);
    }
}

int img_check(int argc, char **argv)
{
    CheckArgs a = { .cache = "writeback", .output = OFORMAT_HUMAN };
    bool writethrough;
    BlockBackend *blk;
    int ret;

    ret = img_getopt_loop(argc, argv, "check", "hf:r:T:qU", check_longopts,
                          check_option, &a);
    if (ret >= 0) {
        return ret;
    }
    if (!img_expect_one_file("check", argc)) {
        return 1;
    }
    if (bdrv_parse_cache_mode(a.cache, &a.flags, &writethrough) < 0) {
        error_report("Invalid source cache option: %s", a.cache);
        return 1;
    }
    blk = img_open_common(&a.common, argv[optind], a.flags, writethrough);
    if (!blk) {
        return 1;
    }
    /* no Strata format has checkable metadata (yet) */
    error_report("This image format does not support checks");
    blk_unref(blk);
    return CHECK_NOT_SUPPORTED;
}
