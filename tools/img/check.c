#include "config.h"
/*
 * strata-img check: consistency check of an image's metadata.
 *
 * The format driver's check ops (block/driver.h) do the work and print
 * per-problem lines on stderr; this file prints the summary (human or
 * JSON) and picks the exit status as the reference does.  Formats without
 * check ops answer "This image format does not support checks" (63).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "block/block.h"
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

enum { CHECK_FIX_LEAKS = BDRV_FIX_LEAKS,
       CHECK_FIX_ALL = BDRV_FIX_LEAKS | BDRV_FIX_ERRORS };

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

/* The summary lines of a check, as the reference words them. */
static void print_human(const BlockCheckResult *r, bool quiet)
{
    if (quiet) {
        return;
    }
    if (!r->corruptions && !r->leaks && !r->check_errors) {
        printf("No errors were found on the image.\n");
    }
    if (r->corruptions) {
        printf("\n%d errors were found on the image.\nData may be "
               "corrupted, or further writes to the image may corrupt "
               "it.\n", r->corruptions);
    }
    if (r->leaks) {
        printf("\n%d leaked clusters were found on the image.\nThis means "
               "waste of disk space, but no harm to data.\n", r->leaks);
    }
    if (r->check_errors) {
        printf("\n%d internal errors have occurred during the check.\n",
               r->check_errors);
    }
    if (r->bfi.total_clusters && r->bfi.allocated_clusters) {
        double a = r->bfi.allocated_clusters;
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% "
               "fragmented, %0.2f%% compressed clusters\n",
               r->bfi.allocated_clusters, r->bfi.total_clusters,
               a * 100.0 / r->bfi.total_clusters,
               r->bfi.fragmented_clusters * 100.0 / a,
               r->bfi.compressed_clusters * 100.0 / a);
    }
    if (r->image_end_offset) {
        printf("Image end offset: %" PRId64 "\n", r->image_end_offset);
    }
}

static void put_nonzero(QDict *d, const char *key, int64_t v)
{
    if (v) {
        qdict_put_int(d, key, v);
    }
}

/* The reference's ImageCheck object: counters only when non-zero,
 * inserted in its field order (the key order depends on it). */
static void print_json(const BlockCheckResult *r, const char *filename,
                       const char *format, bool quiet)
{
    QDict *d;

    if (quiet) {
        return;
    }
    d = qdict_new();
    qdict_put_str(d, "filename", filename);
    qdict_put_str(d, "format", format);
    qdict_put_int(d, "check-errors", r->check_errors);
    put_nonzero(d, "image-end-offset", r->image_end_offset);
    put_nonzero(d, "corruptions", r->corruptions);
    put_nonzero(d, "leaks", r->leaks);
    put_nonzero(d, "corruptions-fixed", r->corruptions_fixed);
    put_nonzero(d, "leaks-fixed", r->leaks_fixed);
    put_nonzero(d, "total-clusters", r->bfi.total_clusters);
    put_nonzero(d, "allocated-clusters", r->bfi.allocated_clusters);
    put_nonzero(d, "fragmented-clusters", r->bfi.fragmented_clusters);
    put_nonzero(d, "compressed-clusters", r->bfi.compressed_clusters);
    img_print_json(QOBJECT(d));
    qobject_unref(d);
}

/* After a repair that fixed something: say what, then check again
 * without repairing; the report is the second check's, with the first
 * one's fixed counters (as the reference reports a repair). */
static int recheck_after_fix(BlockDriverState *bs, BlockCheckResult *r,
                             const CheckArgs *a)
{
    int leaks_fixed = r->leaks_fixed, corruptions_fixed = r->corruptions_fixed;
    int ret;

    if (a->output == OFORMAT_HUMAN && !a->common.quiet) {
        printf("The following inconsistencies were found and repaired:\n\n"
               "    %d leaked clusters\n    %d corruptions\n\n"
               "Double checking the fixed image now...\n",
               leaks_fixed, corruptions_fixed);
    }
    ret = bdrv_check(bs, r, 0);
    r->leaks_fixed = leaks_fixed;
    r->corruptions_fixed = corruptions_fixed;
    return ret;
}

/* Run the driver's check and report; returns the exit status. */
static int run_check(BlockBackend *blk, const CheckArgs *a,
                     const char *filename)
{
    BlockDriverState *bs = blk_bs(blk);
    BlockCheckResult r;
    int ret = bdrv_check(bs, &r, a->fix);

    if (ret == -ENOTSUP && !bdrv_can_check(bs)) {
        error_report("This image format does not support checks");
        return CHECK_NOT_SUPPORTED;
    }
    if (ret == 0 && (r.leaks_fixed || r.corruptions_fixed)) {
        ret = recheck_after_fix(bs, &r, a);
    }
    if (ret == 0 && a->output == OFORMAT_JSON) {
        print_json(&r, filename, bdrv_get_format_name(bs), a->common.quiet);
    } else if (ret == 0) {
        print_human(&r, a->common.quiet);
    }
    if (ret < 0 || r.check_errors) {
        if (ret < 0) {
            error_report("Check failed: %s", strerror(-ret));
        } else {
            error_report("Check failed");
        }
        return 1;
    }
    return r.corruptions ? 2 : r.leaks ? 3 : 0;
}

/* Opened as the reference opens it: read-write with -r (the probing
 * warning and locking errors come from that open), and with
 * BDRV_O_CHECK so a corrupt or dirty image opens for its repair. */
static BlockBackend *open_for_check(const CheckArgs *a, const char *name,
                                    bool writethrough)
{
    return img_open_common(&a->common, name, a->flags, writethrough);
}

int img_check(int argc, char **argv)
{
    CheckArgs a = { .cache = "writeback", .output = OFORMAT_HUMAN,
                    .flags = BDRV_O_CHECK };
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
    blk = open_for_check(&a, argv[optind], writethrough);
    if (!blk) {
        return 1;
    }
    ret = run_check(blk, &a, argv[optind]);
    blk_unref(blk);
    return ret;
}
