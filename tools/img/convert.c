#include "config.h"
/*
 * strata-img convert: options, checks, opening the sources, creating and
 * opening the target.  The copying itself is convert-engine.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "block/driver.h"
#include "tools/img/convert.h"
#include "tools/img/create.h"
#include "tools/img/img.h"
#include "util/cutils.h"
#include "util/progress.h"

typedef struct ConvertOpts {
    const char *src_fmt, *out_fmt, *backing, *backing_fmt, *snapshot;
    const char *src_cache, *tgt_cache;
    char *options;
    bool image_opts, tgt_image_opts, compress, skip_create, target_is_zero;
    bool salvage, bitmaps, skip_broken, force_share, progress, quiet;
    bool oob, copy_range;
    int64_t sparse;
    uint64_t rate;
    int coroutines;
    char **files;           /* sources then the target */
    int nfiles;
} ConvertOpts;

static const struct option convert_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "source-image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
    { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
    { "source-format", required_argument, NULL, 'f' },
    { "source-cache", required_argument, NULL, 'T' },
    { "snapshot", required_argument, NULL, 'l' },
    { "object", required_argument, NULL, OPTION_OBJECT },
    { "output-format", required_argument, NULL, 'O' },
    { "options", required_argument, NULL, 'o' },
    { "output-cache", required_argument, NULL, 't' },
    { "backing", required_argument, NULL, 'B' },
    { "backing-format", required_argument, NULL, 'F' },
    { "sparse-size", required_argument, NULL, 'S' },
    { "target-image-opts", no_argument, NULL, OPTION_TARGET_IMAGE_OPTS },
    { "target-is-zero", no_argument, NULL, OPTION_TARGET_IS_ZERO },
    { "force-share", no_argument, NULL, 'U' },
    { "rate", required_argument, NULL, 'r' },
    { "parallel", required_argument, NULL, 'm' },
    { "oob-writes", no_argument, NULL, 'W' },
    { "copy-range-offloading", no_argument, NULL, 'C' },
    { "salvage", no_argument, NULL, OPTION_SALVAGE },
    { "bitmaps", no_argument, NULL, OPTION_BITMAPS },
    { "skip-broken-bitmaps", no_argument, NULL, OPTION_SKIP_BROKEN },
    { "quiet", no_argument, NULL, 'q' },
    /* The names convert --help documents (COMPAT.md); qemu-img 10.0's
     * table lacks them, so they come after its own for prefix matching. */
    { "progress", no_argument, NULL, 'p' },
    { "source-snapshot", required_argument, NULL, 'l' },
    { "target-format", required_argument, NULL, 'O' },
    { "target-options", required_argument, NULL, 'o' },
    { "compress", no_argument, NULL, 'c' },
    { "target-cache", required_argument, NULL, 't' },
    { "no-create", no_argument, NULL, 'n' },
    { NULL, 0, NULL, 0 },
};

/* -m NUM: 1..16 coroutines. */
static bool parse_coroutines(const char *arg, int *out)
{
    int64_t v;

    if (parse_int64(arg, 10, &v) < 0) {
        error_report("Invalid number of coroutines specified: '%s'.", arg);
        return false;
    }
    if (v < 1 || v > CONVERT_MAX_COROUTINES) {
        error_report("Invalid number of coroutines specified. Must be "
                     "between 1 and %d.", CONVERT_MAX_COROUTINES);
        return false;
    }
    *out = v;
    return true;
}

/* -S SIZE: multiples of 512 up to 16 MiB (0 = fully allocate). */
static bool parse_sparse(const char *arg, int64_t *out)
{
    uint64_t v;

    if (size_parse(arg, NULL, &v) < 0) {
        error_report("Invalid buffer size for sparse output specified: "
                     "'%s'.", arg);
        return false;
    }
    if (v > CONVERT_MAX_SPARSE || v % BDRV_SECTOR_SIZE) {
        error_report("Invalid buffer size for sparse output specified. "
                     "Valid sizes are multiples of 512 up to %d. Select 0 "
                     "to disable sparse detection (fully allocates output).",
                     CONVERT_MAX_SPARSE);
        return false;
    }
    *out = v;
    return true;
}

/* -r RATE: bytes per second. */
static bool parse_rate(const char *arg, uint64_t *out)
{
    uint64_t v;
    int ret = size_parse(arg, NULL, &v);

    if (ret == -ERANGE || (ret == 0 && v > INT64_MAX) ||
        (ret < 0 && arg[0] == '-')) {
        error_report("Invalid rate limit specified. Must be between 0 and "
                     "%" PRId64 ".", INT64_MAX);
        return false;
    }
    if (ret < 0) {
        error_report("Invalid rate limit specified: '%s'.", arg);
        return false;
    }
    *out = v;
    return true;
}

/* Options taking a value that is checked on the spot. */
static bool parse_valued(ConvertOpts *o, int c, const char *arg)
{
    switch (c) {
    case 'm':
        return parse_coroutines(arg, &o->coroutines);
    case 'S':
        return parse_sparse(arg, &o->sparse);
    case 'r':
        return parse_rate(arg, &o->rate);
    case 'o':
        o->options = img_opts_accumulate(o->options, arg);
        return true;
    case OPTION_OBJECT:
        return img_object_add(arg);
    }
    return true;
}

/* Flags and plain string options; false for an unknown @c. */
static bool parse_simple(ConvertOpts *o, int c, const char *arg)
{
    switch (c) {
    case 'f': o->src_fmt = arg; break;
    case 'O': o->out_fmt = arg; break;
    case 'B':
    case 'b': o->backing = arg; break;   /* -b: newer releases' spelling */
    case 'F': o->backing_fmt = arg; break;
    case 'l': o->snapshot = arg; break;
    case 't': o->tgt_cache = arg; break;
    case 'T': o->src_cache = arg; break;
    case 'c': o->compress = true; break;
    case 'C': o->copy_range = true; break;
    case 'n': o->skip_create = true; break;
    case 'p': o->progress = true; break;
    case 'q': o->quiet = true; break;
    case 'U': o->force_share = true; break;
    case 'W': o->oob = true; break;
    case OPTION_IMAGE_OPTS: o->image_opts = true; break;
    case OPTION_TARGET_IMAGE_OPTS: o->tgt_image_opts = true; break;
    case OPTION_TARGET_IS_ZERO: o->target_is_zero = true; break;
    case OPTION_SALVAGE: o->salvage = true; break;
    case OPTION_BITMAPS: o->bitmaps = true; break;
    case OPTION_SKIP_BROKEN: o->skip_broken = true; break;
    default: return false;
    }
    return true;
}

/* getopt loop; returns -1 to go on, else the exit status. */
static int parse_args(ConvertOpts *o, int argc, char **argv)
{
    int c;

    img_getopt_argv0(argv, "convert");
    while ((c = getopt_long(argc, argv, "hf:O:B:b:CcF:o:l:S:pt:T:qnm:WUr:",
                            convert_longopts, NULL)) != -1) {
        if (c == 'h') {
            img_cmd_help("convert");
            return 0;
        }
        if (c == '?') {
            return img_getopt_fail("convert");
        }
        if (!parse_simple(o, c, optarg) && !parse_valued(o, c, optarg)) {
            return 1;
        }
    }
    o->files = argv + optind;
    o->nfiles = argc - optind;
    return -1;
}

/* Combinations the reference refuses, in its order. */
static bool check_flags(const ConvertOpts *o)
{
    const char *msg = NULL;

    if (o->skip_broken && !o->bitmaps) {
        msg = "Use of --skip-broken-bitmaps requires --bitmaps";
    } else if (o->copy_range && o->compress) {
        msg = "Cannot enable copy offloading when -c is used";
    } else if (o->copy_range && o->salvage) {
        msg = "Cannot use copy offloading in salvaging mode";
    } else if (o->tgt_image_opts && !o->skip_create) {
        msg = "--target-image-opts requires use of -n flag";
    } else if (o->target_is_zero && !o->skip_create) {
        msg = "--target-is-zero requires use of -n flag";
    } else if (o->image_opts && o->src_fmt) {
        msg = "--image-opts and --format are mutually exclusive";
    }
    if (msg) {
        error_report("%s", msg);
    }
    return !msg;
}

/* The create options of the target's format and protocol, merged. */
static BlockOptDesc *merged_create_opts(const BlockDriver *fmt,
                                        const BlockDriver *proto)
{
    GArray *a = g_array_new(true, true, sizeof(BlockOptDesc));
    const BlockOptDesc *lists[2] = { fmt->create_opts,
                                     proto ? proto->create_opts : NULL };

    for (int l = 0; l < 2; l++) {
        for (const BlockOptDesc *d = lists[l]; d && d->name; d++) {
            bool dup = false;

            for (unsigned i = 0; i < a->len; i++) {
                dup |= !strcmp(g_array_index(a, BlockOptDesc, i).name, d->name);
            }
            if (!dup) {
                g_array_append_vals(a, d, 1);
            }
        }
    }
    return (BlockOptDesc *)g_array_free(a, false);
}

/* -o help: with a target file name, format and protocol options merged. */
static int print_opts_help(const ConvertOpts *o)
{
    const BlockDriver *drv = bdrv_find_format(o->out_fmt);
    const BlockDriver *proto;
    g_autofree BlockOptDesc *all = NULL;

    int ret;

    if (!drv || o->nfiles < 1 || !drv->create_opts) {
        ret = img_print_create_opts_help(o->out_fmt);
        if (ret == 0) {
            printf("\nThe protocol level may support further options.\n"
                   "Specify the target filename to include those options.\n");
        }
        return ret;
    }
    proto = bdrv_find_protocol(o->files[o->nfiles - 1], true, NULL);
    all = merged_create_opts(drv, proto);
    bdrv_opts_print_help(NULL, all);
    return 0;
}

/* Checks on the operands and on what -n excludes. */
static bool check_operands(const ConvertOpts *o)
{
    if (o->nfiles < 2) {
        error_report("Must specify image file name");
        return false;
    }
    if (o->skip_create && o->options) {
        error_report("-o has no effect when skipping image creation");
        return false;
    }
    return true;
}

/* Checks the reference makes once the sources are open. */
static bool check_multi_source(const ConvertOpts *o)
{
    if (o->nfiles > 2 && o->snapshot) {
        error_report("No support for concatenating multiple snapshot");
        return false;
    }
    if (o->bitmaps && o->nfiles > 2) {
        error_report("Copying bitmaps only possible with single source");
        return false;
    }
    return true;
}

typedef struct ConvertState {
    ConvertOpts o;
    ConvertParams p;
    int src_flags;
    bool src_wt;
    bool progress_started;  /* progress_end() owed at exit */
} ConvertState;

/* Open every source (read-only, -T cache) and learn their lengths. */
static bool open_sources(ConvertState *st)
{
    ConvertOpts *o = &st->o;
    int n = o->nfiles - 1;

    st->p.src = g_new0(BlockBackend *, n);
    st->p.src_len = g_new0(int64_t, n);
    for (int i = 0; i < n; i++) {
        BlockBackend *blk = img_open(o->image_opts, o->files[i], o->src_fmt,
                                     st->src_flags, st->src_wt, o->quiet,
                                     o->force_share);
        if (!blk) {
            return false;
        }
        st->p.src[i] = blk;
        st->p.src_num = i + 1;
        st->p.src_len[i] = blk_getlength(blk);
        if (st->p.src_len[i] < 0) {
            error_report("Could not get size of %s: %s", o->files[i],
                         strerror(-st->p.src_len[i]));
            return false;
        }
    }
    return true;
}

/* -l and --bitmaps: no driver here can honour them on a source. */
static bool check_source_features(ConvertState *st)
{
    BlockDriverState *bs = blk_bs(st->p.src[0]);

    if (st->o.snapshot) {
        error_report("Failed to load snapshot: Block format '%s' used by "
                     "device '' does not support temporarily loading "
                     "internal snapshots", bdrv_get_format_name(bs));
        return false;
    }
    if (st->o.bitmaps) {
        error_report("Source lacks bitmap support");
        return false;
    }
    return true;
}

static int64_t total_size(const ConvertParams *p)
{
    int64_t total = 0;

    for (int i = 0; i < p->src_num; i++) {
        total += p->src_len[i];
    }
    return total;
}

/* Reject -o keys neither the format nor the protocol knows. */
static bool check_create_keys(QDict *opts, const BlockOptDesc *schema)
{
    for (const QDictEntry *e = qdict_first(opts); e; e = qdict_next(opts, e)) {
        const char *key = qdict_entry_key(e);
        bool known = false;

        for (const BlockOptDesc *d = schema; d && d->name; d++) {
            known |= !strcmp(d->name, key);
        }
        if (!known) {
            error_report("Invalid parameter '%s'", key);
            return false;
        }
    }
    return true;
}

/* Target format checks made before anything is created. */
static bool check_target_format(const ConvertOpts *o, const BlockDriver *drv)
{
    const char *fmt = bdrv_driver_name(drv);

    if (o->backing && !o->skip_create) {
        error_report("Backing file not supported for file format '%s'", fmt);
        return false;
    }
    if (o->backing_fmt && !o->skip_create) {
        error_report("Backing file format not supported for file format "
                     "'%s'", fmt);
        return false;
    }
    if (o->compress) {
        error_report("Compression not supported for this file format");
        return false;
    }
    return true;
}

/* Create the target: format options from -o, size of the sources. */
static bool create_target(ConvertState *st, const BlockDriver *drv)
{
    const char *out = st->o.files[st->o.nfiles - 1];
    g_autoptr(QDict) opts = qdict_new();
    const BlockDriver *proto = bdrv_find_protocol(out, true, NULL);
    g_autofree BlockOptDesc *schema = merged_create_opts(drv, proto);
    Error *err = NULL;

    if (st->o.options && !img_parse_create_opts(opts, st->o.options)) {
        return false;
    }
    if (!check_create_keys(opts, schema)) {
        return false;
    }
    qdict_put_int(opts, "size", total_size(&st->p));
    if (bdrv_create(drv, out, opts, &err) < 0) {
        error_reportf_err(err, "%s: error while converting %s: ", out,
                          bdrv_driver_name(drv));
        return false;
    }
    return true;
}

/* Open the target with -t (default unsafe); -n: it must be big enough. */
static bool open_target(ConvertState *st)
{
    ConvertOpts *o = &st->o;
    const char *out = o->files[o->nfiles - 1];
    int flags = BDRV_O_RDWR;
    bool wt = false;

    if (!img_parse_cache(o->tgt_cache ? o->tgt_cache : "unsafe", &flags, &wt)) {
        return false;
    }
    flags |= BDRV_O_RDWR;
    st->p.dst = img_open(o->tgt_image_opts, out,
                         o->tgt_image_opts ? NULL : o->out_fmt, flags, wt,
                         o->quiet, false);
    if (!st->p.dst) {
        return false;
    }
    if (o->skip_create && blk_getlength(st->p.dst) < total_size(&st->p)) {
        error_report("output file is smaller than input file");
        return false;
    }
    return true;
}

/* Sources, target format, creation, target: all but the copy. */
static bool prepare(ConvertState *st)
{
    ConvertOpts *o = &st->o;
    const BlockDriver *drv = NULL;

    if (bdrv_parse_cache_mode(o->src_cache ? o->src_cache : "writeback",
                              &st->src_flags, &st->src_wt) < 0) {
        error_report("Invalid source cache option: %s", o->src_cache);
        return false;
    }
    progress_init(o->progress && !o->quiet, 1.0);
    progress_print(0, 100);
    st->progress_started = true;
    if (!open_sources(st) || !check_multi_source(o) ||
        !check_source_features(st)) {
        return false;
    }
    if (o->out_fmt) {
        drv = bdrv_find_format(o->out_fmt);
        if (!drv) {
            error_report("Unknown file format '%s'", o->out_fmt);
            return false;
        }
    }
    if (drv && !check_target_format(o, drv)) {
        return false;
    }
    if (!o->skip_create && !create_target(st, drv)) {
        return false;
    }
    return open_target(st);
}

/* Copy with the engine, progress from 0 to 100 around it. */
static int run_copy(ConvertState *st)
{
    ConvertOpts *o = &st->o;
    int ret;

    st->p.sparse = o->sparse;
    st->p.target_zero = !o->skip_create || o->target_is_zero;
    st->p.in_order = !o->oob;
    st->p.copy_range = o->copy_range;
    st->p.salvage = o->salvage;
    st->p.quiet = o->quiet;
    st->p.coroutines = o->coroutines;
    st->p.rate = o->rate;
    ret = convert_run(&st->p);
    if (ret == 0) {
        progress_print(100, 0);
    }
    return ret < 0 ? 1 : 0;
}

static void close_all(ConvertState *st)
{
    for (int i = 0; i < st->p.src_num; i++) {
        blk_unref(st->p.src[i]);
    }
    if (st->p.dst) {
        blk_unref(st->p.dst);
    }
    g_free(st->p.src);
    g_free(st->p.src_len);
    g_free(st->o.options);
}

/* Parse and check everything that needs no image; -1 = go on. */
static int convert_options(ConvertOpts *o, int argc, char **argv)
{
    int status = parse_args(o, argc, argv);

    if (status >= 0) {
        return status;
    }
    if (!o->out_fmt && !o->tgt_image_opts) {
        o->out_fmt = "raw";
    }
    if (!check_flags(o)) {
        return 1;
    }
    if (img_opts_is_help(o->options)) {
        return print_opts_help(o);
    }
    return check_operands(o) ? -1 : 1;
}

int img_convert(int argc, char **argv)
{
    ConvertState st = { .o = { .sparse = 4096, .coroutines = 8 } };
    int status = convert_options(&st.o, argc, argv);

    if (status < 0) {
        status = prepare(&st) ? run_copy(&st) : 1;
    }
    if (st.progress_started) {
        progress_end();
    }
    close_all(&st);
    return status;
}
