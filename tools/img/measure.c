#include "config.h"
/*
 * qemu-img measure: how large a new image of a format would be, for a
 * given virtual size (--size) or to hold a converted source image.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/img/img.h"
#include "tools/img/create.h"

typedef struct MeasureArgs {
    ImgCommonOpts common;
    const char *out_fmt;
    const char *filename;
    const char *snapshot;
    char *options;
    OutputFormat output;
    int64_t size;               /* -1: not given */
} MeasureArgs;

/* One option; returns -1 to go on, else the exit status. */
static int measure_option(int c, void *opaque)
{
    MeasureArgs *a = opaque;

    switch (c) {
    case 'O':
        a->out_fmt = optarg;
        return -1;
    case 'o':
        return img_opts_add(&a->options, optarg) ? -1 : 1;
    case 'l':
        a->snapshot = optarg;
        return img_check_snapshot_param(optarg) ? -1 : 1;
    case OPTION_OUTPUT:
        return img_parse_output("measure", optarg, &a->output) ? -1 : 1;
    case OPTION_SIZE:
        return img_parse_image_size(optarg, &a->size) ? -1 : 1;
    default:
        return img_common_option(c, "measure", &a->common);
    }
}

static int parse_measure_opts(int argc, char **argv, MeasureArgs *a)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "options", required_argument, NULL, 'o' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "output", required_argument, NULL, OPTION_OUTPUT },
        { "snapshot", required_argument, NULL, 'l' },
        { "size", required_argument, NULL, OPTION_SIZE },
        { "format", required_argument, NULL, 'f' },
        { "force-share", no_argument, NULL, 'U' },
        { "target-format", required_argument, NULL, 'O' },
        { NULL, 0, NULL, 0 },
    };

    return img_getopt_loop(argc, argv, "measure", "hf:O:o:l:U", longopts,
                           measure_option, a);
}

/* Filename versus --size; returns -1 to go on, else the exit status. */
static int check_measure_args(int argc, char **argv, MeasureArgs *a)
{
    if (argc - optind > 1) {
        error_report("At most one filename argument is allowed.");
        return 1;
    }
    a->filename = argc - optind == 1 ? argv[optind] : NULL;
    if (!a->filename && (a->common.image_opts || a->common.fmt ||
                         a->snapshot)) {
        error_report("--image-opts, -f, and -l require a filename argument.");
        return 1;
    }
    if (a->common.image_opts && a->common.fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return 1;
    }
    if (a->filename && a->size != -1) {
        error_report("--size N cannot be used together with a filename.");
        return 1;
    }
    if (!a->filename && a->size == -1) {
        error_report("Either --size N or one filename must be specified.");
        return 1;
    }
    return -1;
}

/* -o options checked against the target's create options. */
static QDict *measure_create_opts(const MeasureArgs *a, const BlockDriver *drv)
{
    QDict *opts = qdict_new();
    Error *err = NULL;

    if (!img_parse_check_create_opts(opts, a->options, drv,
                                     bdrv_find_format("file"), &err)) {
        error_report_err(err);
        error_report("Invalid options for file format '%s'", a->out_fmt);
        qobject_unref(opts);
        return NULL;
    }
    if (a->size != -1) {
        g_autofree char *num = g_strdup_printf("%" PRId64, a->size);
        qdict_put_str(opts, "size", num);
    }
    return opts;
}

static void print_measure(const MeasureArgs *a, const BlockMeasureInfo *info)
{
    QDict *d;

    if (a->output == OFORMAT_HUMAN) {
        printf("required size: %" PRIu64 "\n", info->required);
        printf("fully allocated size: %" PRIu64 "\n", info->fully_allocated);
        if (info->has_bitmaps) {
            printf("bitmaps size: %" PRIu64 "\n", info->bitmaps);
        }
        return;
    }
    d = qdict_new();
    qdict_put_int(d, "required", info->required);
    qdict_put_int(d, "fully-allocated", info->fully_allocated);
    if (info->has_bitmaps) {
        qdict_put_int(d, "bitmaps", info->bitmaps);
    }
    img_print_json(QOBJECT(d));
    qobject_unref(d);
}

/* Measure with the target driver; returns the exit status. */
static int measure_with(const MeasureArgs *a, BlockDriverState *in_bs)
{
    const BlockDriver *drv = img_creating_format(a->out_fmt);
    BlockMeasureInfo info = { 0 };
    Error *err = NULL;
    QDict *opts;
    int ret;

    if (!drv || !(opts = measure_create_opts(a, drv))) {
        return 1;
    }
    ret = bdrv_measure(drv, opts, in_bs, &info, &err);
    qobject_unref(opts);
    if (ret < 0) {
        error_report_err(err);
        return 1;
    }
    print_measure(a, &info);
    return 0;
}

/* Open the source (if any) and measure. */
static int measure_run(const MeasureArgs *a)
{
    BlockBackend *blk = NULL;
    int ret;

    if (a->filename) {
        blk = img_open_common(&a->common, a->filename, 0, false);
        if (!blk) {
            return 1;
        }
    }
    if (blk && !img_load_snapshot(blk, a->snapshot)) {
        blk_unref(blk);
        return 1;
    }
    ret = measure_with(a, blk ? blk_bs(blk) : NULL);
    if (blk) {
        blk_unref(blk);
    }
    return ret;
}

int img_measure(int argc, char **argv)
{
    MeasureArgs a = { .out_fmt = "raw", .output = OFORMAT_HUMAN, .size = -1 };
    int ret = parse_measure_opts(argc, argv, &a);

    if (ret < 0) {
        ret = check_measure_args(argc, argv, &a);
    }
    if (ret < 0) {
        ret = measure_run(&a);
    }
    g_free(a.options);
    return ret;
}
