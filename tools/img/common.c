#include "config.h"
/*
 * strata-img helpers shared by the commands: messages, common options,
 * opening images the way qemu-img does.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/img/img.h"
#include "util/cutils.h"

static const char *argv0 = "qemu-img";

void img_set_argv0(const char *a)
{
    argv0 = a;
}

const char *img_argv0(void)
{
    return argv0;
}

int img_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_vreport(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s%s%s --help' for more info\n", argv0,
            cmd ? " " : "", cmd ? cmd : "");
    return 1;
}

/* The first key of @arg that is not snapshot.id/snapshot.name, or NULL.
 * Keys are taken in the order written ("name=value", ",," a comma inside
 * a value, or a bare "name"/"noname", which is warned about), up to the
 * first bad one, as the reference's parser goes. */
static char *snapshot_param_bad_key(const char *arg)
{
    const char *p = arg;

    while (*p) {
        size_t len = strcspn(p, "=,");
        g_autofree char *name = g_strndup(p, len);
        const char *key = name, *value;

        p += len;
        if (*p == '=') {
            for (p++; *p && (*p != ',' || p[1] == ','); p += *p == ',' ? 2 : 1) {
            }
        } else {
            key = tool_opts_bare_key(name, &value);
        }
        if (strcmp(key, "snapshot.id") && strcmp(key, "snapshot.name")) {
            return g_strdup(key);
        }
        p += *p == ',';
    }
    return NULL;
}

bool img_check_snapshot_param(const char *arg)
{
    g_autofree char *bad = NULL;

    if (!g_str_has_prefix(arg, "snapshot.")) {
        return true;
    }
    bad = snapshot_param_bad_key(arg);
    if (bad) {
        error_report("Invalid parameter '%s'", bad);
        error_report("Failed in parsing snapshot param '%s'", arg);
        return false;
    }
    return true;
}

/* The value of "snapshot.id" / "snapshot.name" in option list @arg (the
 * last one given; a bare key is "on", "no" + key "off"), NULL if absent.
 * The list was checked by img_check_snapshot_param() already. */
static char *snapshot_param_value(const char *arg, const char *want)
{
    const char *p = arg;
    char *found = NULL;

    while (*p) {
        size_t len = strcspn(p, "=,");
        g_autofree char *name = g_strndup(p, len);
        GString *val = g_string_new(NULL);

        p += len;
        if (*p == '=') {
            for (p++; *p && (*p != ',' || p[1] == ','); p++) {
                g_string_append_c(val, *p);
                p += *p == ',';
            }
        } else {
            bool no = g_str_has_prefix(name, "no") && strcmp(name, want);
            g_string_assign(val, no ? "off" : "on");
            memmove(name, name + (no ? 2 : 0), strlen(name) + 1 - (no ? 2 : 0));
        }
        if (!strcmp(name, want)) {
            g_free(found);
            found = g_string_free(val, false);
        } else {
            g_string_free(val, true);
        }
        p += *p == ',';
    }
    return found;
}

bool img_load_snapshot(BlockBackend *blk, const char *snapshot)
{
    Error *err = NULL;
    int ret;

    if (!snapshot) {
        return true;
    }
    if (g_str_has_prefix(snapshot, "snapshot.")) {
        g_autofree char *id = snapshot_param_value(snapshot, "snapshot.id");
        g_autofree char *name = snapshot_param_value(snapshot,
                                                     "snapshot.name");
        ret = bdrv_snapshot_load_tmp(blk_bs(blk), id, name, &err);
    } else {
        ret = bdrv_snapshot_load_tmp_by_id_or_name(blk_bs(blk), snapshot,
                                                   &err);
    }
    if (ret < 0) {
        error_reportf_err(err, "Failed to load snapshot: ");
        return false;
    }
    return true;
}

bool img_parse_output(const char *cmd, const char *arg, OutputFormat *out)
{
    if (!strcmp(arg, "json")) {
        *out = OFORMAT_JSON;
    } else if (!strcmp(arg, "human")) {
        *out = OFORMAT_HUMAN;
    } else {
        img_usage_error(cmd, "--output expects 'human' or 'json' not '%s'", arg);
        return false;
    }
    return true;
}

bool img_object_add(const char *def)
{
    return tool_object_add(def);
}

char *img_opts_accumulate(char *acc, const char *arg)
{
    char *joined;

    if (!acc) {
        return g_strdup(arg);
    }
    joined = g_strdup_printf("%s,%s", acc, arg);
    g_free(acc);
    return joined;
}

/* An option-list element that asks for help: a bare "help" or "?" (no
 * '=').  As in -o parsing, a name ends at '=' or ','; a value runs to a
 * single ',' (",," is a comma in it): "help,,x" asks for help,
 * "size=1M,,help" does not. */
bool img_opts_is_help(const char *opts)
{
    const char *p = opts;

    while (p && *p) {
        size_t len = strcspn(p, "=,");
        bool help = p[len] != '=' && ((len == 4 && !strncmp(p, "help", 4)) ||
                                      (len == 1 && p[0] == '?'));

        if (help) {
            return true;
        }
        p += len;
        if (*p == '=') {
            for (p++; *p && (*p != ',' || p[1] == ','); p++) {
                p += *p == ',';
            }
        }
        p += *p == ',';
    }
    return false;
}

const BlockDriver *img_creating_format(const char *fmt)
{
    const BlockDriver *drv = bdrv_find_format(fmt);
    Error *err = NULL;

    if (!drv) {
        error_report("Unknown file format '%s'", fmt);
    } else if (bdrv_not_yet_supported_error(drv, &err)) {
        error_report_err(err);
        drv = NULL;
    } else if (!bdrv_create_opts(drv)) {
        error_report("Format driver '%s' does not support image creation",
                     fmt);
        drv = NULL;
    }
    return drv;
}

int img_print_create_opts_help(const char *fmt)
{
    const BlockDriver *drv = img_creating_format(fmt);

    if (!drv) {
        return 1;
    }
    bdrv_opts_print_help(fmt, bdrv_create_opts(drv));
    return 0;
}

bool img_parse_cache(const char *mode, int *flags, bool *writethrough)
{
    if (bdrv_parse_cache_mode(mode, flags, writethrough) < 0) {
        error_report("Invalid cache option: %s", mode);
        return false;
    }
    return true;
}

/* Options for img_open(): from --image-opts text or a format name. */
static QDict *open_options(bool image_opts, const char *name, const char *fmt)
{
    QDict *opts = qdict_new();

    if (image_opts) {
        if (!tool_opts_parse_implied(opts, name, "file")) {
            qobject_unref(opts);
            return NULL;
        }
    } else if (fmt) {
        qdict_put_str(opts, "driver", fmt);
    }
    return opts;
}

BlockBackend *img_open(bool image_opts, const char *name, const char *fmt,
                       int flags, bool writethrough, bool quiet,
                       bool force_share)
{
    Error *err = NULL;
    QDict *opts = open_options(image_opts, name, fmt);
    BlockBackend *blk;

    if (!opts) {
        return NULL;
    }
    if (force_share) {
        flags |= BDRV_O_FORCE_SHARE;
    }
    blk = blk_new_open(image_opts ? NULL : name, NULL, opts, flags, &err);
    if (!blk) {
        error_reportf_err(err, "Could not open '%s': ", name);
        return NULL;
    }
    blk_set_enable_write_cache(blk, !writethrough);
    return blk;
}

bool img_parse_image_size(const char *arg, int64_t *out)
{
    uint64_t v;
    int ret = size_parse(arg, NULL, &v);

    if (ret == -ERANGE || (ret == 0 && v > INT64_MAX)) {
        error_report("Invalid image size specified. Must be between 0 and "
                     "%" PRId64 ".", INT64_MAX);
        return false;
    }
    if (ret < 0) {
        error_report("Invalid image size specified: '%s'.", arg);
        return false;
    }
    *out = v;
    return true;
}

void img_print_json(const QObject *obj)
{
    GString *s = qobject_to_json_pretty(obj, true);

    printf("%s\n", s->str);
    g_string_free(s, true);
}

char *img_size_str(uint64_t bytes)
{
    return size_to_str(bytes);
}

/* ---- appended: getopt program name, named number options ---- */

void img_getopt_argv0(char **argv, const char *cmd)
{
    static char *name;

    g_free(name);
    name = g_strdup_printf("%s %s", img_argv0(), cmd);
    argv[0] = name;
}

bool img_cvtnum(const char *what, const char *arg, int64_t *out)
{
    uint64_t v;
    int ret = size_parse(arg, NULL, &v);

    if (ret == -ERANGE || (ret == 0 && v > INT64_MAX)) {
        error_report("Invalid %s specified. Must be between 0 and "
                     "%" PRId64 ".", what, INT64_MAX);
        return false;
    }
    if (ret < 0) {
        error_report("Invalid %s specified: '%s'.", what, arg);
        return false;
    }
    *out = v;
    return true;
}

/* ---- appended: ranged number options (bench, dd) ---- */

/* The reference's message for a number outside [min, max]. */
static bool range_error(const char *what, int64_t min, int64_t max)
{
    error_report("Invalid %s specified. Must be between %" PRId64 " and %"
                 PRId64 ".", what, min, max);
    return false;
}

bool img_cvtnum_full(const char *what, const char *arg, int64_t min,
                     int64_t max, int64_t *out)
{
    uint64_t v;
    int ret = size_parse(arg, NULL, &v);

    if (ret == -ERANGE || (ret == 0 && (v > (uint64_t)max ||
                                        (int64_t)v < min))) {
        return range_error(what, min, max);
    }
    if (ret < 0) {
        error_report("Invalid %s specified: '%s'.", what, arg);
        return false;
    }
    *out = v;
    return true;
}

bool img_strtonum_full(const char *what, const char *arg, int64_t min,
                       int64_t max, int64_t *out)
{
    int64_t v;
    int ret = parse_int64(arg, 0, &v);

    if (ret == -ERANGE || (ret == 0 && (v < min || v > max))) {
        return range_error(what, min, max);
    }
    if (ret < 0) {
        error_report("Invalid %s specified: '%s'.", what, arg);
        return false;
    }
    *out = v;
    return true;
}

/* ---- appended: getopt failures, -f/--image-opts, progress ---- */

int img_getopt_fail(const char *cmd)
{
    fprintf(stderr, "Try '%s %s --help' for more info\n", img_argv0(), cmd);
    return 1;
}

BlockBackend *img_open_checked(bool image_opts, const char *name,
                               const char *fmt, int flags, bool writethrough,
                               bool quiet, bool force_share)
{
    if (image_opts && fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return NULL;
    }
    return img_open(image_opts, name, fmt, flags, writethrough, quiet,
                    force_share);
}

void img_progress_print(bool enabled, double percent)
{
    if (enabled) {
        printf("    (%3.2f/100%%)\r", percent);
        fflush(stdout);
    }
}

void img_progress_end(bool enabled)
{
    if (enabled) {
        printf("\n");
        fflush(stdout);
    }
}

bool img_opts_list_valid(const char *arg)
{
    size_t len = strlen(arg), i = len;

    while (i > 0 && arg[i - 1] == ',') {
        i--;
    }
    if (!arg[0] || arg[0] == ',' || (len - i) % 2) {
        error_report("Invalid option list: %s", arg);
        return false;
    }
    return true;
}

/* ---- appended: option-loop scaffolding shared by the commands ---- */

int img_common_option(int c, const char *cmd, ImgCommonOpts *o)
{
    switch (c) {
    case 'h':
        img_cmd_help(cmd);
        return 0;
    case 'f':
        o->fmt = optarg;
        return -1;
    case 'q':
        o->quiet = true;
        return -1;
    case 'U':
        o->force_share = true;
        return -1;
    case OPTION_IMAGE_OPTS:
        o->image_opts = true;
        return -1;
    case OPTION_OBJECT:
        return img_object_add(optarg) ? -1 : 1;
    default:
        return img_getopt_fail(cmd);
    }
}

int img_getopt_loop(int argc, char **argv, const char *cmd,
                    const char *shortopts, const struct option *longopts,
                    ImgOptionFunc *fn, void *opaque)
{
    int c, ret;

    img_getopt_argv0(argv, cmd);
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        ret = fn(c, opaque);
        if (ret >= 0) {
            return ret;
        }
    }
    return -1;
}

bool img_expect_one_file(const char *cmd, int argc)
{
    if (optind != argc - 1) {
        img_usage_error(cmd, "Expecting one image file name");
        return false;
    }
    return true;
}

BlockBackend *img_open_common(const ImgCommonOpts *o, const char *name,
                              int flags, bool writethrough)
{
    return img_open_checked(o->image_opts, name, o->fmt, flags, writethrough,
                            o->quiet, o->force_share);
}

bool img_opts_add(char **acc, const char *arg)
{
    if (!img_opts_list_valid(arg)) {
        return false;
    }
    *acc = img_opts_accumulate(*acc, arg);
    return true;
}

int64_t img_qcow2_table_span(BlockDriverState *bs)
{
    const char *fmt = bdrv_get_format_name(bs);
    BlockDriverInfo bdi;
    int64_t entry;

    if (!fmt || strcmp(fmt, "qcow2") || bdrv_get_info(bs, &bdi) < 0 ||
        bdi.cluster_size <= 0) {
        return 0;
    }
    entry = bdi.subcluster_size && bdi.subcluster_size < bdi.cluster_size ?
            16 : 8;
    return (int64_t)bdi.cluster_size / entry * bdi.cluster_size;
}

void img_cut_at_tables(BlockDriverState *top, BlockDriverState *base,
                       int depth, int64_t off, int64_t *pnum)
{
    BlockDriverState *b = top;

    for (int i = 0; b && b != base && (depth <= 0 || i < depth); i++) {
        int64_t span = img_qcow2_table_span(b);

        if (off >= bdrv_getlength(b)) {
            break;          /* a short layer: the walk stops there */
        }
        if (span > 0) {
            *pnum = MIN(*pnum, span - off % span);
        }
        b = bdrv_backing_bs(b);
    }
}
