#include "config.h"
/*
 * strata-img resize: grow or shrink an image to an absolute size or by a
 * relative amount ("+1G", "-512M"; a negative delta directly after the
 * file name is not an option).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "tools/img/img.h"
#include "util/cutils.h"

typedef struct ResizeArgs {
    const char *fmt;
    const char *filename;
    const char *size;
    bool image_opts;
    bool quiet;
    bool shrink;
    PreallocMode prealloc;
} ResizeArgs;

/* A requested size: absolute, or relative with a sign (-1 / +1). */
typedef struct ResizeSize {
    int sign;
    uint64_t n;
} ResizeSize;

/* "-<digit>..." is a negative size, not an option. */
static bool is_negative_size(const char *arg)
{
    return arg && arg[0] == '-' && isdigit((unsigned char)arg[1]);
}

/* Positional arguments in order: file name, then size.  A third one is
 * an error at once, before any option after it is looked at (as the
 * reference); returns -1 to go on, else the exit status. */
static int take_operand(ResizeArgs *a, const char *arg, int argc,
                        char **argv)
{
    if (!a->filename) {
        a->filename = arg;
        if (optind < argc && is_negative_size(argv[optind])) {
            a->size = argv[optind++];
        }
    } else if (!a->size) {
        a->size = arg;
    } else {
        return img_usage_error("resize", "Extra argument(s) in command line");
    }
    return -1;
}

/* One option; returns -1 to go on, else the exit status. */
static int resize_option(ResizeArgs *a, int c, int argc, char **argv)
{
    switch (c) {
    case 1:
        return take_operand(a, optarg, argc, argv);
    case 'h':
        img_cmd_help("resize");
        return 0;
    case 'f':
        a->fmt = optarg;
        return -1;
    case 'q':
        a->quiet = true;
        return -1;
    case OPTION_OBJECT:
        return img_object_add(optarg) ? -1 : 1;
    case OPTION_IMAGE_OPTS:
        a->image_opts = true;
        return -1;
    case OPTION_SHRINK:
        a->shrink = true;
        return -1;
    case OPTION_PREALLOCATION:
        if (!prealloc_mode_parse(optarg, &a->prealloc)) {
            error_report("Invalid preallocation mode '%s'", optarg);
            return 1;
        }
        return -1;
    default:
        return 1;
    }
}

/* getopt over the command line; returns -1 when parsing succeeded. */
static int resize_parse(ResizeArgs *a, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "quiet", no_argument, NULL, 'q' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "preallocation", required_argument, NULL, OPTION_PREALLOCATION },
        { "shrink", no_argument, NULL, OPTION_SHRINK },
        { NULL, 0, NULL, 0 },
    };
    int c, ret;

    img_getopt_argv0(argv, "resize");
    while ((c = getopt_long(argc, argv, "-f:hq", longopts, NULL)) != -1) {
        if (c == '?') {
            fprintf(stderr, "Try '%s resize --help' for more info\n",
                    img_argv0());
            return 1;
        }
        ret = resize_option(a, c, argc, argv);
        if (ret >= 0) {
            return ret;
        }
    }
    /* after "--": the operands still missing, and nothing more (the
     * reference words a surplus there as a missing operand) */
    while (optind < argc && (!a->filename || !a->size)) {
        take_operand(a, argv[optind++], argc, argv);
    }
    if (optind < argc) {
        return img_usage_error("resize", "Expecting image file name and size");
    }
    return -1;
}

/* Sign and magnitude of the size argument, with the reference's
 * QemuOpts messages. */
static bool parse_size_arg(const char *arg, ResizeSize *s)
{
    uint64_t v;
    int ret;

    s->sign = 0;
    if (arg[0] == '+' || arg[0] == '-') {
        s->sign = arg[0] == '+' ? 1 : -1;
        arg++;
    }
    ret = size_parse(arg, NULL, &v);
    if (ret == -ERANGE) {
        error_report("Value '%s' is out of range for parameter 'size'", arg);
        return false;
    }
    if (ret < 0) {
        error_report("Parameter 'size' expects a non-negative number below "
                     "2^64\nOptional suffix k, M, G, T, P or E means kilo-, "
                     "mega-, giga-, tera-, peta-\nand exabytes, "
                     "respectively.");
        return false;
    }
    s->n = v;
    return true;
}

/* The new size from the current one (int64 arithmetic as the reference:
 * overflow shows up as a non-positive size). */
static int64_t target_size(int64_t current, const ResizeSize *s)
{
    if (s->sign > 0) {
        return (int64_t)((uint64_t)current + s->n);
    }
    if (s->sign < 0) {
        return (int64_t)((uint64_t)current - s->n);
    }
    return (int64_t)s->n;
}

/* Checks before truncating; false with the message printed. */
static bool check_target(const ResizeArgs *a, int64_t current, int64_t total)
{
    if (total <= 0) {
        error_report("New image size must be positive");
        return false;
    }
    if (a->prealloc != PREALLOC_MODE_OFF && total <= current) {
        error_report("Preallocation can only be used for growing images");
        return false;
    }
    if (total < current && !a->shrink) {
        error_report("Use the --shrink option to perform a shrink operation.");
        warn_report("Shrinking an image will delete all data beyond the "
                    "shrunken image's end. Before performing such an "
                    "operation, make sure there is no important data there.");
        return false;
    }
    return true;
}

/* Open for resizing: the resize permission (and the lock that goes
 * with it) is part of opening, so a conflict is an open error, as in
 * the reference. */
static BlockBackend *resize_open(const ResizeArgs *a)
{
    Error *err = NULL;
    uint64_t perm, shared;
    BlockBackend *blk;

    blk = img_open(a->image_opts, a->filename, a->fmt, BDRV_O_RDWR, false,
                   a->quiet, false);
    if (!blk) {
        return NULL;
    }
    blk_get_perm(blk, &perm, &shared);
    if (blk_set_perm(blk, perm | BLK_PERM_RESIZE, shared, &err) < 0) {
        error_reportf_err(err, "Could not open '%s': ", a->filename);
        blk_unref(blk);
        return NULL;
    }
    return blk;
}

/* Open, compute and truncate. */
static int do_resize(const ResizeArgs *a, const ResizeSize *s)
{
    Error *err = NULL;
    BlockBackend *blk;
    int64_t current, total;
    int ret = 1;

    blk = resize_open(a);
    if (!blk) {
        return 1;
    }
    current = blk_getlength(blk);
    if (current < 0) {
        error_report("Failed to inquire current image length: %s",
                     strerror((int)-current));
        goto out;
    }
    total = target_size(current, s);
    if (!check_target(a, current, total)) {
        goto out;
    }
    /* exact: a device that cannot take the new size is an error
     * ("Cannot resize device files"), not quietly kept as it is */
    if (blk_truncate(blk, total, true, a->prealloc, 0, &err) < 0) {
        error_report_err(err);
        goto out;
    }
    if (!a->quiet) {
        printf("Image resized.\n");
    }
    ret = 0;
out:
    blk_unref(blk);
    return ret;
}

int img_resize(int argc, char **argv)
{
    ResizeArgs a = { .prealloc = PREALLOC_MODE_OFF };
    ResizeSize s;
    int ret = resize_parse(&a, argc, argv);

    if (ret >= 0) {
        return ret;
    }
    if (!a.filename || !a.size) {
        return img_usage_error("resize", "Expecting image file name and size");
    }
    if (!parse_size_arg(a.size, &s)) {
        return 1;
    }
    if (a.image_opts && a.fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return 1;
    }
    return do_resize(&a, &s);
}
