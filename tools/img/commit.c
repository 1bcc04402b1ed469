#include "config.h"
/*
 * strata-img commit: write an overlay's data down into its backing file.
 *
 * Strata has no format with a backing file yet, so every image is a
 * chain of one: the command parses and checks its arguments as the
 * reference does and then reports that there is nothing to commit to.
 */
#include <stdio.h>
#include <string.h>
#include "tools/img/img.h"

typedef struct CommitArgs {
    ImgCommonOpts common;
    const char *cache;
    const char *base;
    bool progress;
    bool drop;
    int64_t rate;
} CommitArgs;

static const struct option commit_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "quiet", no_argument, NULL, 'q' },
    { "progress", no_argument, NULL, 'p' },
    { "format", required_argument, NULL, 'f' },
    { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
    { "cache", required_argument, NULL, 't' },
    { "drop", no_argument, NULL, 'd' },
    { "base", required_argument, NULL, 'b' },
    { "rate", required_argument, NULL, 'r' },
    { "object", required_argument, NULL, OPTION_OBJECT },
    { NULL, 0, NULL, 0 },
};

/* One option; returns -1 to go on, else the exit status. */
static int commit_option(int c, void *opaque)
{
    CommitArgs *a = opaque;

    switch (c) {
    case 't':
        a->cache = optarg;
        return -1;
    case 'b':
        a->base = optarg;
        a->drop = true;         /* -b implies -d */
        return -1;
    case 'd':
        a->drop = true;
        return -1;
    case 'p':
        a->progress = true;
        return -1;
    case 'r':
        return img_cvtnum("rate limit", optarg, &a->rate) ? -1 : 1;
    default:
        return img_common_option(c, "commit", &a->common);
    }
}

/* The node named @base in the backing chain below @bs, or NULL. */
static BlockDriverState *find_base(BlockDriverState *bs, const char *base)
{
    for (bs = bdrv_backing_bs(bs); bs; bs = bdrv_backing_bs(bs)) {
        if (!strcmp(bdrv_get_filename(bs), base)) {
            return bs;
        }
    }
    return NULL;
}

/* Find the commit target; false (error printed) if there is none. */
static bool commit_target(BlockBackend *blk, const CommitArgs *a,
                          const char *filename)
{
    BlockDriverState *bs = blk_bs(blk);

    if (a->base && !find_base(bs, a->base)) {
        error_report("Did not find '%s' in the backing chain of '%s'",
                     a->base, filename);
        return false;
    }
    if (!a->base && !bdrv_backing_bs(bs)) {
        error_report("Image does not have a backing file");
        return false;
    }
    error_report("Committing to a backing file is not supported");
    return false;
}

int img_commit(int argc, char **argv)
{
    CommitArgs a = { .cache = "writeback" };
    int ret, flags = BDRV_O_RDWR | BDRV_O_UNMAP;
    bool writethrough, ok;
    BlockBackend *blk;

    ret = img_getopt_loop(argc, argv, "commit", "f:ht:b:dpqr:",
                          commit_longopts, commit_option, &a);
    if (ret >= 0) {
        return ret;
    }
    if (!img_expect_one_file("commit", argc)) {
        return 1;
    }
    if (!img_parse_cache(a.cache, &flags, &writethrough)) {
        return 1;
    }
    blk = img_open_common(&a.common, argv[optind], flags, writethrough);
    if (!blk) {
        return 1;
    }
    a.progress = a.progress && !a.common.quiet;
    img_progress_print(a.progress, 0);
    ok = commit_target(blk, &a, argv[optind]);
    img_progress_end(a.progress);
    blk_unref(blk);
    return ok ? 0 : 1;
}
