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
#include "block/block.h"
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
    bool sparse_given;         /* -S on the command line */
    int64_t sparse;
    uint64_t rate;
    int coroutines;
    char **files;           /* sources then the target */
    int nfiles;
    GPtrArray *owned_args;  /* argv words spelled out by parse_args() */
} ConvertOpts;

/* qemu-img 10.0's own long options, in its order: abbreviations resolve
 * against these first, so "--p" stays --parallel as there. */
static const struct option convert_ref_longopts[] = {
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
    { NULL, 0, NULL, 0 },
};

/* The names convert --help documents (COMPAT.md); qemu-img 10.0's table
 * lacks them. */
static const struct option convert_doc_longopts[] = {
    { "progress", no_argument, NULL, 'p' },
    { "source-snapshot", required_argument, NULL, 'l' },
    { "target-format", required_argument, NULL, 'O' },
    { "target-options", required_argument, NULL, 'o' },
    { "compress", no_argument, NULL, 'c' },
    { "target-cache", required_argument, NULL, 't' },
    { "no-create", no_argument, NULL, 'n' },
    { NULL, 0, NULL, 0 },
};

#define CONVERT_SHORTOPTS "hf:O:B:b:CcF:o:l:S:pt:T:qnm:WUr:"

static size_t longopts_count(const struct option *o)
{
    size_t n = 0;

    while (o[n].name) {
        n++;
    }
    return n;
}

/* Both tables, the reference's first (g_free the result). */
static struct option *convert_all_longopts(void)
{
    size_t r = longopts_count(convert_ref_longopts);
    size_t d = longopts_count(convert_doc_longopts);
    struct option *all = g_new0(struct option, r + d + 1);

    memcpy(all, convert_ref_longopts, r * sizeof(*all));
    memcpy(all + r, convert_doc_longopts, d * sizeof(*all));
    return all;
}

static const struct option *longopt_exact(const struct option *tbl,
                                          const char *name, size_t len)
{
    for (; tbl->name; tbl++) {
        if (strlen(tbl->name) == len && !strncmp(tbl->name, name, len)) {
            return tbl;
        }
    }
    return NULL;
}

/* getopt's rule for an abbreviation in @tbl: the first prefix match,
 * unless a later one differs from it (*ambiguous). */
static const struct option *longopt_prefix(const struct option *tbl,
                                           const char *name, size_t len,
                                           bool *ambiguous)
{
    const struct option *found = NULL;

    *ambiguous = false;
    for (; tbl->name; tbl++) {
        if (strncmp(tbl->name, name, len)) {
            continue;
        }
        if (!found) {
            found = tbl;
        } else if (found->has_arg != tbl->has_arg || found->val != tbl->val) {
            *ambiguous = true;
        }
    }
    return found;
}

/* Does short option @c take an argument? */
static bool shortopt_has_arg(char c)
{
    const char *p = strchr(CONVERT_SHORTOPTS, c);

    return c != ':' && p && p[1] == ':';
}

/* Index of the word after the long option word at @i (and its value). */
static int skip_option_value(int i, const struct option *o, const char *eq)
{
    if (o && o->has_arg == required_argument && !eq) {
        return i + 2;
    }
    return i + 1;
}

/* Index of the word after the short options at @i (and their value). */
static int skip_short_cluster(char **argv, int i)
{
    for (const char *c = argv[i] + 1; *c; c++) {
        if (shortopt_has_arg(*c)) {
            return c[1] ? i + 1 : i + 2;
        }
    }
    return i + 1;
}

/*
 * Abbreviated long options resolve as in qemu-img 10.0, whose table lacks
 * the documented extra names: a unique abbreviation there is spelled out
 * (*@ref_only stays false); one ambiguous there makes the caller parse with
 * the reference's table alone, so getopt names the same candidates.
 * Rewritten words are kept in @owned.
 */
static void resolve_abbreviations(int argc, char **argv, GPtrArray *owned,
                                  bool *ref_only)
{
    int i = 1;

    *ref_only = false;
    while (i < argc && strcmp(argv[i], "--")) {
        const char *w = argv[i], *name = w + 2, *eq;
        const struct option *o;
        size_t len;
        bool amb;

        if (w[0] != '-' || !w[1]) {
            i++;
            continue;
        }
        if (w[1] != '-') {
            i = skip_short_cluster(argv, i);
            continue;
        }
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        o = longopt_exact(convert_ref_longopts, name, len);
        o = o ? o : longopt_exact(convert_doc_longopts, name, len);
        if (!o) {
            o = longopt_prefix(convert_ref_longopts, name, len, &amb);
            if (o && amb) {
                *ref_only = true;
                return;
            }
            if (o) {
                argv[i] = g_strdup_printf("--%s%s", o->name, eq ? eq : "");
                g_ptr_array_add(owned, argv[i]);
            } else {
                o = longopt_prefix(convert_doc_longopts, name, len, &amb);
            }
        }
        i = skip_option_value(i, o, eq);
    }
}

/* -m NUM: 1..16 coroutines; C syntax (0x10, 010), out of range of the
 * type is out of range too. */
static bool parse_coroutines(const char *arg, int *out)
{
    int64_t v;

    if (!img_strtonum_full("number of coroutines", arg, 1,
                           CONVERT_MAX_COROUTINES, &v)) {
        return false;
    }
    *out = v;
    return true;
}

/* -S SIZE: multiples of 512 up to 16 MiB (0 = fully allocate). */
static bool parse_sparse(const char *arg, int64_t *out)
{
    int64_t v;

    /* a size first (negative, too big: the generic range message) */
    if (!img_cvtnum("buffer size for sparse output", arg, &v)) {
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

    if (ret == -ERANGE || (ret == 0 && v > INT64_MAX)) {
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
    case 'l':
        o->snapshot = arg;
        return img_check_snapshot_param(arg);
    case 'm':
        return parse_coroutines(arg, &o->coroutines);
    case 'S':
        o->sparse_given = true;
        return parse_sparse(arg, &o->sparse);
    case 'r':
        return parse_rate(arg, &o->rate);
    case 'o':
        return img_opts_add(&o->options, arg);
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

/* getopt loop over @longopts; returns -1 to go on, else the status. */
static int parse_with(ConvertOpts *o, int argc, char **argv,
                      const struct option *longopts)
{
    int c;

    while ((c = getopt_long(argc, argv, CONVERT_SHORTOPTS, longopts,
                            NULL)) != -1) {
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

static int parse_args(ConvertOpts *o, int argc, char **argv)
{
    g_autofree struct option *all = convert_all_longopts();
    bool ref_only;

    img_getopt_argv0(argv, "convert");
    o->owned_args = g_ptr_array_new_with_free_func(g_free);
    resolve_abbreviations(argc, argv, o->owned_args, &ref_only);
    return parse_with(o, argc, argv, ref_only ? convert_ref_longopts : all);
}

/* Combinations the reference refuses, in its order, before it looks at
 * -o help or the operands.  (--image-opts with -f is refused when the
 * first source is opened.) */
static bool check_flags(const ConvertOpts *o)
{
    const char *msg = NULL;

    if (o->skip_broken && !o->bitmaps) {
        msg = "Use of --skip-broken-bitmaps requires --bitmaps";
    } else if (o->copy_range && o->compress) {
        msg = "Cannot enable copy offloading when -c is used";
    } else if (o->copy_range && o->sparse_given) {
        /* even -S 0: the reference refuses any -S with -C */
        msg = "Cannot enable copy offloading when -S is used";
    } else if (o->copy_range && o->salvage) {
        msg = "Cannot use copy offloading in salvaging mode";
    } else if (o->tgt_image_opts && !o->skip_create) {
        msg = "--target-image-opts requires use of -n flag";
    } else if (o->target_is_zero && !o->skip_create) {
        msg = "--target-is-zero requires use of -n flag";
    } else if (o->skip_create && o->options) {
        msg = "-o has no effect when skipping image creation";
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
    const BlockOptDesc *lists[2] = { bdrv_create_opts(fmt),
                                     bdrv_create_opts(proto) };

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

/* The protocol driver of the target file name, if it can create files. */
static const BlockDriver *creating_protocol(const char *filename)
{
    Error *err = NULL;
    const BlockDriver *proto = bdrv_find_protocol(filename, true, &err);

    if (!proto) {
        error_report_err(err);
    } else if (!bdrv_create_opts(proto)) {
        error_report("Protocol driver '%s' does not support image creation",
                     bdrv_driver_name(proto));
        proto = NULL;
    }
    return proto;
}

/* -o help: with a target file name (two operands at least), format and
 * protocol options merged, else the format's and a hint. */
static int print_opts_help(const ConvertOpts *o)
{
    const BlockDriver *drv = img_creating_format(o->out_fmt);
    const BlockDriver *proto;
    g_autofree BlockOptDesc *all = NULL;

    if (!drv) {
        return 1;
    }
    if (o->nfiles < 2) {
        bdrv_opts_print_help(o->out_fmt, bdrv_create_opts(drv));
        printf("\nThe protocol level may support further options.\n"
               "Specify the target filename to include those options.\n");
        return 0;
    }
    proto = creating_protocol(o->files[o->nfiles - 1]);
    if (!proto) {
        return 1;
    }
    all = merged_create_opts(drv, proto);
    bdrv_opts_print_help(NULL, all);
    return 0;
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
    const BlockDriver *drv, *proto;     /* target format, protocol */
    QDict *create_opts;                 /* -o, checked */
    bool exit_zero;                     /* failed, yet the status is 0 */
} ConvertState;

/* Sources are read by a copy that must stay consistent: unless -U, nobody
 * else may write or resize them meanwhile (the reference's lock bytes). */
static bool lock_source(BlockBackend *blk, const char *name)
{
    Error *err = NULL;
    uint64_t perm, shared;

    blk_get_perm(blk, &perm, &shared);
    shared &= ~(BLK_PERM_WRITE | BLK_PERM_RESIZE);
    if (blk_set_perm(blk, perm, shared, &err) < 0) {
        error_reportf_err(err, "Could not open '%s': ", name);
        return false;
    }
    return true;
}

/* Open every source (read-only, -T cache) and learn their lengths. */
static bool open_sources(ConvertState *st)
{
    ConvertOpts *o = &st->o;
    int n = o->nfiles - 1;

    st->p.src = g_new0(BlockBackend *, n);
    st->p.src_len = g_new0(int64_t, n);
    for (int i = 0; i < n; i++) {
        BlockBackend *blk = img_open_checked(o->image_opts, o->files[i],
                                             o->src_fmt, st->src_flags,
                                             st->src_wt, o->quiet,
                                             o->force_share);
        if (!blk) {
            return false;
        }
        st->p.src[i] = blk;
        st->p.src_num = i + 1;
        if (!o->force_share && !lock_source(blk, o->files[i])) {
            return false;
        }
        st->p.src_len[i] = blk_size(blk);
        if (st->p.src_len[i] < 0) {
            error_report("Could not get size of %s: %s", o->files[i],
                         strerror(-st->p.src_len[i]));
            return false;
        }
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

/* Length of the -o element at @p ("name[=value]", ",," escaped in the
 * value), its separating comma included. */
static size_t opts_element_len(const char *p)
{
    const char *c = p + strcspn(p, "=,");

    if (*c == '=') {
        for (c++; *c && (*c != ',' || c[1] == ','); c++) {
            c += *c == ',';
        }
    }
    return (c - p) + (*c == ',');
}

/* Parse -o element by element, checking each name and typed value as
 * it comes, so the first bad element is the one reported. */
static bool parse_create_opts(ConvertState *st)
{
    const char *p = st->o.options;
    Error *err = NULL;

    st->create_opts = qdict_new();
    while (p && *p) {
        size_t len = opts_element_len(p);
        g_autofree char *elem = g_strndup(p, len);
        g_autoptr(QDict) one = qdict_new();

        img_parse_create_opts(one, elem);
        if (!img_check_create_opts(one, st->drv, st->proto, &err)) {
            error_report_err(err);
            return false;
        }
        img_parse_create_opts(st->create_opts, elem);
        p += len;
    }
    return true;
}

/* -B and -F go into the create options (the reference's old-style
 * options): only formats with backing files take them. */
static bool add_backing_opts(ConvertState *st)
{
    ConvertOpts *o = &st->o;
    const char *out_fmt = bdrv_driver_name(st->drv);

    if (o->backing) {
        if (!bdrv_supports_backing(st->drv)) {
            error_report("Backing file not supported for file format '%s'",
                         out_fmt);
            return false;
        }
        qdict_put_str(st->create_opts, "backing_file", o->backing);
    }
    if (o->backing_fmt) {
        if (!bdrv_supports_backing(st->drv)) {
            error_report("Backing file format not supported for file format "
                         "'%s'", out_fmt);
            return false;
        }
        qdict_put_str(st->create_opts, "backing_fmt", o->backing_fmt);
    }
    return true;
}

/* The target's backing file (-B or -o backing_file), checked as the
 * reference checks it. */
static bool check_backing(ConvertState *st)
{
    ConvertOpts *o = &st->o;
    const char *param = st->create_opts ?
                        bdrv_opt_str(st->create_opts, "backing_file", NULL) :
                        NULL;

    st->p.target_backing = param || o->backing;
    if (o->target_is_zero && st->p.target_backing) {
        error_report("Cannot use --target-is-zero when the destination image "
                     "has a backing file");
        st->exit_zero = true;       /* the reference's status, though */
        return false;
    }
    if (st->p.src_num > 1 && st->p.target_backing) {
        error_report("Having a backing file for the target makes no sense "
                     "when concatenating multiple input images");
        return false;
    }
    if (param && !bdrv_opt_str(st->create_opts, "backing_fmt", NULL)) {
        error_report("Use of backing file requires explicit backing format");
        return false;
    }
    return true;
}


/* -c with the create options: what the reference refuses. */
static bool check_compress(ConvertState *st)
{
    QDict *opts = st->create_opts;
    const char *prealloc = opts ? bdrv_opt_str(opts, "preallocation", NULL)
                                : NULL;
    bool encrypt = opts && (bdrv_opt_bool(opts, "encryption", false, NULL) ||
                            bdrv_opt_str(opts, "encrypt.format", NULL));

    if (!st->o.compress) {
        return true;
    }
    if (st->drv && !bdrv_format_supports_compression(st->drv)) {
        error_report("Compression not supported for this file format");
        return false;
    }
    if (encrypt) {
        error_report("Compression and encryption not supported at the same "
                     "time");
        return false;
    }
    if (prealloc && strcmp(prealloc, "off")) {
        error_report("Compression and preallocation not supported at the "
                     "same time");
        return false;
    }
    return true;
}

/* Target format checks, in the reference's order: creation support,
 * protocol, -o, backing file; then compression. */
static bool check_target_format(ConvertState *st)
{
    ConvertOpts *o = &st->o;
    const char *out = o->files[o->nfiles - 1];

    if (!o->skip_create) {
        st->drv = img_creating_format(o->out_fmt);
        st->proto = st->drv ? creating_protocol(out) : NULL;
        if (!st->proto || !parse_create_opts(st) || !add_backing_opts(st)) {
            return false;
        }
    }
    return check_backing(st) && check_compress(st);
}

/* Create the target: format options from -o, size of the sources. */
static bool create_target(ConvertState *st)
{
    const char *out = st->o.files[st->o.nfiles - 1];
    Error *err = NULL;

    qdict_put_int(st->create_opts, "size", total_size(&st->p));
    if (bdrv_create(st->drv, out, st->create_opts, &err) < 0) {
        error_reportf_err(err, "%s: error while converting %s: ", out,
                          bdrv_driver_name(st->drv));
        return false;
    }
    return true;
}

/* What the copy needs to know of the opened target: its cluster size
 * (-c writes whole clusters) and, for a new image with a backing file,
 * where that backing file ends (zeroes past it need no writing). */
static bool target_geometry(ConvertState *st)
{
    BlockDriverState *bs = blk_bs(st->p.dst);
    BlockDriverState *backing = bdrv_backing_bs(bs);
    BlockDriverInfo bdi;

    st->p.target_backing_len = -1;
    if (st->p.target_backing && !st->o.skip_create && backing) {
        st->p.target_backing_len = bdrv_getlength(backing);
    }
    if (bdrv_get_info(bs, &bdi) < 0) {
        if (st->o.compress) {
            error_report("could not get block driver info");
            return false;
        }
        return true;
    }
    st->o.compress |= bdi.needs_compressed_writes;
    st->p.cluster_size = bdi.cluster_size;
    if (st->o.compress && (bdi.cluster_size <= 0 ||
                           bdi.cluster_size > 2 * 1024 * 1024)) {
        error_report("invalid cluster size");
        return false;
    }
    return true;
}

/* Open the target with -t (default unsafe); -n: it must be big enough.
 * Zeroes may be punched as holes unless -S 0 asks for full allocation.
 * The reference takes the resize permission too, so a target whose size
 * is not a multiple of its O_DIRECT alignment can still be written. */
static bool open_target(ConvertState *st)
{
    ConvertOpts *o = &st->o;
    const char *out = o->files[o->nfiles - 1];
    int flags = BDRV_O_RDWR;
    bool wt = false;

    if (!img_parse_cache(o->tgt_cache ? o->tgt_cache : "unsafe", &flags, &wt)) {
        return false;
    }
    flags |= BDRV_O_RDWR | BDRV_O_RESIZE | (o->sparse ? BDRV_O_UNMAP : 0);
    st->p.dst = img_open_checked(o->tgt_image_opts, out, o->out_fmt, flags,
                                 wt, o->quiet, false);
    if (!st->p.dst) {
        return false;
    }
    if (o->compress &&
        !bdrv_can_write_compressed(blk_bs(st->p.dst))) {
        error_report("Compression not supported for this file format");
        return false;
    }
    if (o->skip_create && blk_getlength(st->p.dst) < total_size(&st->p)) {
        error_report("output file is smaller than input file");
        return false;
    }
    return target_geometry(st);
}

/* Sources, target format, creation, target: all but the copy. */
static bool prepare(ConvertState *st)
{
    ConvertOpts *o = &st->o;

    if (bdrv_parse_cache_mode(o->src_cache ? o->src_cache : "writeback",
                              &st->src_flags, &st->src_wt) < 0) {
        error_report("Invalid source cache option: %s", o->src_cache);
        return false;
    }
    progress_init(o->progress && !o->quiet, 1.0);
    progress_print(0, 100);
    st->progress_started = true;
    if (!open_sources(st) || !check_multi_source(o) ||
        !img_load_snapshot(st->p.src[0], o->snapshot)) {
        return false;
    }
    if (o->out_fmt && !bdrv_find_format(o->out_fmt)) {
        error_report("Unknown file format '%s'", o->out_fmt);
        return false;
    }
    if (!check_target_format(st)) {
        return false;
    }
    if (o->bitmaps &&
        !convert_bitmaps_check_source(st->p.src[0], o->skip_broken)) {
        return false;
    }
    if (!o->skip_create && !create_target(st)) {
        return false;
    }
    return open_target(st) &&
           (!o->bitmaps || convert_bitmaps_check_target(st->p.dst));
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
    st->p.compressed = o->compress;
    if (st->p.target_backing) {
        st->p.target_zero = false;      /* it reads the backing file */
    }
    ret = convert_run(&st->p);
    if (ret == 0 && o->bitmaps &&
        !convert_bitmaps_copy(st->p.src[0], st->p.dst, o->skip_broken)) {
        ret = -EINVAL;
    }
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
    qobject_unref(st->create_opts);
    if (st->o.owned_args) {
        g_ptr_array_free(st->o.owned_args, true);
    }
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
    if (o->nfiles < 2) {
        error_report("Must specify image file name");
        return 1;
    }
    return -1;
}

int img_convert(int argc, char **argv)
{
    ConvertState st = { .o = { .sparse = 4096, .coroutines = 8 } };
    int status = convert_options(&st.o, argc, argv);

    if (status < 0) {
        status = prepare(&st) ? run_copy(&st) : !st.exit_zero;
    }
    if (st.progress_started) {
        progress_end();
    }
    close_all(&st);
    return status;
}
