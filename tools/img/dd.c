#include "config.h"
/*
 * strata-img dd: copy (part of) an image into a newly created one, with
 * dd-style operands bs=, count=, skip=, if=, of=.
 *
 * Extensions, those of Proxmox VE's qemu-img, whose tools call them:
 * - a missing (or "-") if= reads a raw stream from stdin, a missing (or
 *   "-") of= writes the raw data to stdout;
 * - osize=SIZE: the output's size; the copy stops there, and a stream
 *   to stdout is padded with zeroes up to it;
 * - isize=SIZE: how much stdin holds, so that an earlier end of input is
 *   an error (isize=0: unknown, read to the end);
 * - -n: write into an existing output instead of creating it;
 * - -l SNAPSHOT: read a snapshot of the input.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "block/block.h"
#include "tools/img/img.h"
#include "util/cutils.h"

#define DD_CHUNK (1 * MiB)

typedef struct DdArgs {
    const char *fmt, *out_fmt;
    const char *in, *out;
    const char *snapshot;
    int64_t bs, count, skip;
    int64_t osize, isize;
    bool has_count, has_skip, has_osize, has_isize;
    bool image_opts, force_share, no_create;
} DdArgs;

typedef struct DdState {
    const DdArgs *a;
    BlockBackend *src, *dst;
    int64_t in_off;          /* where reading starts */
    int64_t size;            /* bytes to copy (-1: until EOF of stdin) */
    uint8_t *buf;
    size_t buf_size;
    bool skip_past_end;      /* skip= beyond the input: reported late */
    bool stream_exact;       /* isize=: stdin must hold all of size */
} DdState;

static bool is_stream(const char *name)
{
    return !name || !strcmp(name, "-");
}

/* "key=value" operand into @a; false after a report. */
static bool dd_operand(DdArgs *a, const char *arg)
{
    const char *eq = strchr(arg, '=');
    g_autofree char *key = eq ? g_strndup(arg, eq - arg) : g_strdup(arg);
    const char *val = eq ? eq + 1 : NULL;

    if (val && !strcmp(key, "bs")) {
        return img_cvtnum_full("bs", val, 1, INT_MAX, &a->bs);
    } else if (val && !strcmp(key, "count")) {
        a->has_count = true;
        return img_strtonum_full("count", val, 0, INT64_MAX, &a->count);
    } else if (val && !strcmp(key, "skip")) {
        a->has_skip = true;
        return img_strtonum_full("skip", val, 0, INT64_MAX, &a->skip);
    } else if (val && !strcmp(key, "osize")) {
        a->has_osize = true;
        return img_cvtnum_full("osize", val, 0, INT64_MAX, &a->osize);
    } else if (val && !strcmp(key, "isize")) {
        a->has_isize = true;
        return img_cvtnum_full("isize", val, 0, INT64_MAX, &a->isize);
    } else if (val && !strcmp(key, "if")) {
        a->in = val;
    } else if (val && !strcmp(key, "of")) {
        a->out = val;
    } else {
        error_report("unrecognized operand %s", key);
        return false;
    }
    return true;
}

/* One option; returns -1 to go on, else the exit status. */
static int dd_option(DdArgs *a, int c)
{
    switch (c) {
    case 'h':
        img_cmd_help("dd");
        return 0;
    case 'f': a->fmt = optarg; return -1;
    case 'O': a->out_fmt = optarg; return -1;
    case 'U': a->force_share = true; return -1;
    case 'n': a->no_create = true; return -1;
    case 'l':
        a->snapshot = optarg;
        return img_check_snapshot_param(optarg) ? -1 : 1;
    case OPTION_OBJECT:
        return img_object_add(optarg) ? -1 : 1;
    case OPTION_IMAGE_OPTS:
        a->image_opts = true;
        return -1;
    default:
        fprintf(stderr, "Try '%s dd --help' for more info\n", img_argv0());
        return 1;
    }
}

/* Options and operands; -1 when the copy can start. */
static int dd_parse(DdArgs *a, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "output-format", required_argument, NULL, 'O' },
        { "force-share", no_argument, NULL, 'U' },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    int c, ret;

    img_getopt_argv0(argv, "dd");
    while ((c = getopt_long(argc, argv, "hf:O:Unl:", longopts, NULL)) != -1) {
        ret = dd_option(a, c);
        if (ret >= 0) {
            return ret;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (!dd_operand(a, argv[i])) {
            return 1;
        }
    }
    if (a->image_opts && a->fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return 1;
    }
    return -1;
}

/* Input image size, clipped by count= and skip= as the reference does
 * (count counts from the start of the input, skip is taken off that). */
static int64_t dd_size(DdState *s, int64_t in_size)
{
    const DdArgs *a = s->a;
    int64_t size = in_size;

    if (a->has_count && a->count <= INT64_MAX / a->bs &&
        a->count * a->bs < size) {
        size = a->count * a->bs;
    }
    s->in_off = 0;
    if (a->has_skip) {
        if (a->skip > INT64_MAX / a->bs || a->skip * a->bs > size) {
            s->skip_past_end = true;
            return 0;
        }
        s->in_off = a->skip * a->bs;
        size -= s->in_off;
    }
    return size;
}

/* The output format driver; NULL after a report.  The output's protocol
 * is looked up and must create files too, with the reference's order
 * of messages (before the "error while creating output image" ones). */
static const BlockDriver *dd_out_driver(const DdArgs *a)
{
    const BlockDriver *drv = bdrv_find_format(a->out_fmt ? a->out_fmt : "raw");
    const BlockDriver *proto;
    Error *err = NULL;

    if (!drv) {
        error_report("Unknown file format");
        return NULL;
    }
    if (bdrv_not_yet_supported_error(drv, &err)) {
        error_report_err(err);
        return NULL;
    }
    proto = bdrv_find_protocol(a->out, true, &err);
    if (!proto) {
        error_report_err(err);
        return NULL;
    }
    if (!bdrv_create_opts(drv)) {
        error_report("Format driver '%s' does not support image creation",
                     bdrv_driver_name(drv));
        return NULL;
    }
    if (!bdrv_create_opts(proto)) {
        error_report("Protocol driver '%s' does not support image creation",
                     bdrv_driver_name(proto));
        return NULL;
    }
    return drv;
}

/* Create the output image of @size and open it. */
static bool dd_create_out(DdState *s, int64_t size)
{
    const DdArgs *a = s->a;
    const BlockDriver *drv = dd_out_driver(a);
    Error *err = NULL;
    QDict *opts;
    int ret;

    if (!drv) {
        return false;
    }
    opts = qdict_new();
    qdict_put_int(opts, "size", size);
    ret = bdrv_create(drv, a->out, opts, &err);
    qobject_unref(opts);
    if (ret < 0) {
        error_reportf_err(err, "%s: error while creating output image: ",
                          a->out);
        return false;
    }
    s->dst = img_open(false, a->out, bdrv_driver_name(drv),
                      BDRV_O_RDWR | BDRV_O_RESIZE, false, false, false);
    return s->dst != NULL;
}

/* Read up to @len bytes of stdin (short only at EOF); -errno on error. */
static ssize_t read_full(int fd, uint8_t *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = read(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            break;
        }
        done += n;
    }
    return done;
}

/* Write all of @buf to stdout. */
static bool write_full(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            error_report("error while writing to output image file: %s",
                         strerror(errno));
            return false;
        }
        buf += n;
        len -= n;
    }
    return true;
}

/* Next chunk of input at input offset @pos; its length, 0 at EOF,
 * -1 after a report. */
static int64_t dd_read(DdState *s, int64_t pos, int64_t want)
{
    int64_t n = MIN((int64_t)s->buf_size, want);
    int ret;

    if (!s->src) {
        ssize_t r = read_full(STDIN_FILENO, s->buf, n);
        if (r < 0) {
            error_report("error while reading from input image file: %s",
                         strerror((int)-r));
            return -1;
        }
        return r;
    }
    ret = blk_pread(s->src, pos, n, s->buf, 0);
    if (ret < 0) {
        error_report("error while reading from input image file: %s",
                     strerror(-ret));
        return -1;
    }
    return n;
}

/* Store a chunk at output offset @pos.  Zeroes are written too: the
 * output is as allocated as the reference's, which writes every block. */
static bool dd_write(DdState *s, int64_t pos, int64_t n)
{
    Error *err = NULL;
    int ret;

    if (!s->dst) {
        return write_full(STDOUT_FILENO, s->buf, n);
    }
    if (s->size < 0 && !s->a->no_create && blk_truncate(s->dst, pos + n, false,
                                    PREALLOC_MODE_OFF, 0, &err) < 0) {
        error_report_err(err);
        return false;
    }
    ret = blk_pwrite(s->dst, pos, n, s->buf, 0);
    if (ret < 0) {
        error_report("error while writing to output image file: %s",
                     strerror(-ret));
        return false;
    }
    return true;
}

/* osize= on stdout: zeroes from @pos up to it, so the stream is as long
 * as the output it stands for. */
static bool dd_pad_stream(DdState *s, int64_t pos)
{
    memset(s->buf, 0, s->buf_size);
    while (pos < s->a->osize) {
        int64_t n = MIN((int64_t)s->buf_size, s->a->osize - pos);
        if (!write_full(STDOUT_FILENO, s->buf, n)) {
            return false;
        }
        pos += n;
    }
    return true;
}

/* The copy loop; @size < 0 copies until the input ends. */
static int dd_copy(DdState *s)
{
    int64_t pos = 0;

    while (s->size < 0 || pos < s->size) {
        int64_t want = s->size < 0 ? INT64_MAX : s->size - pos;
        int64_t n = dd_read(s, s->in_off + pos, want);
        if (n < 0) {
            return 1;
        }
        if (n == 0) {
            if (s->stream_exact) {
                error_report("-: input ended after %" PRId64 " of %" PRId64
                             " bytes", pos, s->size);
                return 1;
            }
            break;
        }
        if (!dd_write(s, pos, n)) {
            return 1;
        }
        pos += n;
    }
    if (!s->dst && s->a->has_osize && !dd_pad_stream(s, pos)) {
        return 1;
    }
    return 0;
}

/* Discard @bytes of stdin; false (reported) if it ends first. */
static bool dd_skip_stream(DdState *s, int64_t bytes)
{
    while (bytes > 0) {
        ssize_t r = read_full(STDIN_FILENO, s->buf,
                              MIN((int64_t)s->buf_size, bytes));
        if (r <= 0) {
            error_report("-: cannot skip to specified offset");
            return false;
        }
        bytes -= r;
    }
    return true;
}

/* stdin: the size is what isize= and count= allow (or unknown), skip=
 * is read. */
static bool dd_stream_input(DdState *s)
{
    const DdArgs *a = s->a;

    s->size = -1;
    if (a->has_isize && a->isize > 0) {
        s->size = a->isize;
        s->stream_exact = true;
    }
    if (a->has_count) {
        int64_t n = a->count <= INT64_MAX / a->bs ? a->count * a->bs
                                                  : INT64_MAX;
        s->size = s->size < 0 ? n : MIN(s->size, n);
    }
    if (a->has_skip && a->skip > 0) {
        if (a->skip > INT64_MAX / a->bs) {
            error_report("-: cannot skip to specified offset");
            return false;
        }
        if (!dd_skip_stream(s, a->skip * a->bs)) {
            s->size = 0;
        } else if (s->size >= 0) {
            s->size = MAX(0, s->size - a->skip * a->bs);
        }
    }
    return true;
}

/* Open the input image (or take stdin) and work out the size. */
static bool dd_open_input(DdState *s)
{
    const DdArgs *a = s->a;
    int64_t in_size;

    if (is_stream(a->in)) {
        if (a->snapshot) {
            error_report("-l needs an input image (if=)");
            return false;
        }
        if (a->image_opts || (a->fmt && strcmp(a->fmt, "raw"))) {
            error_report("Input format must be raw when reading from stdin");
            return false;
        }
        return dd_stream_input(s);
    }
    s->src = img_open(a->image_opts, a->in, a->fmt, 0, false, false,
                      a->force_share);
    if (!s->src || !img_load_snapshot(s->src, a->snapshot)) {
        return false;
    }
    in_size = blk_getlength(s->src);
    if (in_size < 0) {
        error_report("Failed to get size for '%s'", a->in);
        return false;
    }
    s->size = dd_size(s, in_size);
    return true;
}

/* -n: the existing output, in the -O format (default raw). */
static bool dd_open_existing_out(DdState *s)
{
    const DdArgs *a = s->a;

    s->dst = img_open(false, a->out, a->out_fmt ? a->out_fmt : "raw",
                      BDRV_O_RDWR | BDRV_O_RESIZE, false, false, false);
    return s->dst != NULL;
}

/* Output: osize= is its size and where the copy stops; stdout takes raw
 * data only. */
static bool dd_open_output(DdState *s)
{
    const DdArgs *a = s->a;

    if (a->has_osize) {
        s->size = s->size < 0 ? a->osize : MIN(s->size, a->osize);
    }
    if (!is_stream(a->out)) {
        if (a->no_create) {
            return dd_open_existing_out(s);
        }
        return dd_create_out(s, a->has_osize ? a->osize : MAX(s->size, 0));
    }
    if (a->out_fmt && strcmp(a->out_fmt, "raw")) {
        error_report("Output format must be raw when writing to stdout");
        return false;
    }
    return true;
}

int img_dd(int argc, char **argv)
{
    DdArgs a = { .bs = 512 };
    DdState s = { .a = &a };
    int ret = dd_parse(&a, argc, argv);

    if (ret >= 0) {
        return ret;
    }
    s.buf_size = ROUND_UP(DD_CHUNK, a.bs);
    if (posix_memalign((void **)&s.buf, 4096, s.buf_size)) {
        error_report("Could not allocate buffer: %s", strerror(ENOMEM));
        return 1;
    }
    ret = 1;
    if (dd_open_input(&s) && dd_open_output(&s)) {
        /* as the reference: once the (empty) output exists, and no
         * failure */
        if (s.skip_past_end) {
            error_report("%s: cannot skip to specified offset", a.in);
        }
        ret = dd_copy(&s);
    }
    if (s.dst) {
        blk_unref(s.dst);
    }
    if (s.src) {
        blk_unref(s.src);
    }
    free(s.buf);
    return ret;
}
