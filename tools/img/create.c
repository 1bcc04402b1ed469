#include "config.h"
/*
 * qemu-img create: make a new image of a format, with -o create options,
 * printing the reference's "Formatting 'x', fmt=raw size=N" line.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/img/img.h"
#include "tools/img/create.h"

typedef struct CreateArgs {
    ImgCommonOpts common;       /* -f, -q */
    char *options;
    const char *backing;
    const char *backing_fmt;
    const char *filename;
    int64_t size;               /* -1: not given */
    bool unsafe;                /* -u: do not open the backing file */
} CreateArgs;

/*
 * The order in which the reference declares a driver's create options:
 * it prints them in that order (our schemas are sorted by name).  Drivers
 * not listed print in schema order.
 */
static const char *const *create_opt_order(const char *drv_name)
{
    static const char *const file_order[] = {
        "size", "nocow", "preallocation", "extent_size_hint", NULL,
    };
    static const char *const raw_order[] = { "size", NULL };

    if (!strcmp(drv_name, "file")) {
        return file_order;
    }
    if (!strcmp(drv_name, "raw")) {
        return raw_order;
    }
    return NULL;
}

static const BlockOptDesc *find_desc(const BlockOptDesc *schema,
                                     const char *name)
{
    for (; schema && schema->name; schema++) {
        if (!strcmp(schema->name, name)) {
            return schema;
        }
    }
    return NULL;
}

/* Append @d to @list unless an option of that name is there already. */
static void merge_one(GArray *list, const BlockOptDesc *d)
{
    for (guint i = 0; i < list->len; i++) {
        if (!strcmp(g_array_index(list, BlockOptDesc, i).name, d->name)) {
            return;
        }
    }
    g_array_append_val(list, *d);
}

/* Append the options of @drv in the reference's declaration order. */
static void merge_driver_opts(GArray *list, const BlockDriver *drv)
{
    const char *const *order = create_opt_order(bdrv_driver_name(drv));
    const BlockOptDesc *d;

    for (int i = 0; order && order[i]; i++) {
        d = find_desc(bdrv_create_opts(drv), order[i]);
        if (d) {
            merge_one(list, d);
        }
    }
    for (d = bdrv_create_opts(drv); d && d->name; d++) {
        merge_one(list, d);
    }
}

/* Format options followed by the protocol's (@proto may be NULL);
 * terminated by a zeroed entry. */
static GArray *merged_create_opts(const BlockDriver *drv,
                                  const BlockDriver *proto)
{
    GArray *list = g_array_new(true, true, sizeof(BlockOptDesc));

    merge_driver_opts(list, drv);
    if (proto) {
        merge_driver_opts(list, proto);
    }
    return list;
}

/* The format's driver if it can create images, else NULL and errp set. */
static const BlockDriver *create_driver(const char *fmt, Error **errp)
{
    const BlockDriver *drv = bdrv_find_format(fmt);

    if (!drv) {
        error_setg(errp, "Unknown file format '%s'", fmt);
        return NULL;
    }
    if (bdrv_not_yet_supported_error(drv, errp)) {
        return NULL;
    }
    if (!bdrv_create_opts(drv)) {
        error_setg(errp, "Format driver '%s' does not support image creation",
                   fmt);
        return NULL;
    }
    return drv;
}

/* The protocol driver for @filename that can create files. */
static const BlockDriver *create_protocol(const char *filename, Error **errp)
{
    const BlockDriver *proto = bdrv_find_protocol(filename, true, errp);

    if (proto && !bdrv_create_opts(proto)) {
        error_setg(errp, "Protocol driver '%s' does not support image "
                   "creation", bdrv_driver_name(proto));
        return NULL;
    }
    return proto;
}

/* -o help: the format's options, merged with the protocol's when a
 * filename tells which protocol. */
static int print_option_help(const char *filename, const char *fmt)
{
    Error *err = NULL;
    const BlockDriver *drv = create_driver(fmt, &err);
    const BlockDriver *proto = NULL;
    GArray *list;

    if (drv && filename) {
        proto = create_protocol(filename, &err);
    }
    if (err) {
        error_report_err(err);
        return 1;
    }
    list = merged_create_opts(drv, proto);
    bdrv_opts_print_help(filename ? NULL : fmt, (BlockOptDesc *)list->data);
    if (!filename) {
        printf("\nThe protocol level may support further options.\n"
               "Specify the target filename to include those options.\n");
    }
    g_array_free(list, true);
    return 0;
}

/* One "name[=value]" element at *p (consumed with its ','); ",," in a
 * value is a literal comma. */
static void parse_opt_element(QDict *d, const char **p)
{
    size_t len = strcspn(*p, "=,");
    g_autofree char *name = g_strndup(*p, len);
    GString *value = g_string_new(NULL);
    const char *c = *p + len;

    if (*c == '=') {
        for (c++; *c && (*c != ',' || c[1] == ','); c++) {
            g_string_append_c(value, *c);
            c += *c == ',';
        }
        qdict_put_str(d, name, value->str);
    } else if (g_str_has_prefix(name, "no")) {
        qdict_put_str(d, name + 2, "off");     /* "noX": X=off, silently */
    } else {
        qdict_put_str(d, name, "on");
    }
    g_string_free(value, true);
    *p = *c ? c + 1 : c;
}

bool img_parse_create_opts(QDict *d, const char *str)
{
    const char *p = str;

    while (*p) {
        parse_opt_element(d, &p);
    }
    return true;
}

/* Does the value of @d in @opts parse?  Sizes and numbers are stored back
 * normalised (the Formatting line prints them as numbers). */
static bool check_opt_value(QDict *opts, const BlockOptDesc *d, Error **errp)
{
    Error *err = NULL;
    uint64_t v = 0;

    switch (d->type) {
    case OPT_BOOL:
        bdrv_opt_bool(opts, d->name, false, &err);
        break;
    case OPT_SIZE:
        v = bdrv_opt_size(opts, d->name, 0, &err);
        break;
    case OPT_NUMBER:
        v = bdrv_opt_number(opts, d->name, 0, &err);
        break;
    default:
        return true;
    }
    if (err) {
        error_propagate(errp, err);
        return false;
    }
    if (d->type != OPT_BOOL) {
        g_autofree char *num = g_strdup_printf("%" PRId64, (int64_t)v);
        qdict_put_str(opts, d->name, num);
    }
    return true;
}

/* Check every -o option against @schema ("Invalid parameter 'x'"). */
static bool check_create_opts(QDict *opts, const BlockOptDesc *schema,
                              Error **errp)
{
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    const BlockOptDesc *d;

    for (const QDictEntry *e = qdict_first(opts); e; e = qdict_next(opts, e)) {
        g_ptr_array_add(keys, g_strdup(qdict_entry_key(e)));
    }
    for (guint i = 0; i < keys->len; i++) {
        d = find_desc(schema, g_ptr_array_index(keys, i));
        if (!d) {
            error_setg(errp, "Invalid parameter '%s'",
                       (char *)g_ptr_array_index(keys, i));
            return false;
        }
        if (!check_opt_value(opts, d, errp)) {
            return false;
        }
    }
    return true;
}

bool img_check_create_opts(QDict *opts, const BlockDriver *drv,
                           const BlockDriver *proto, Error **errp)
{
    GArray *list = merged_create_opts(drv, proto);
    bool ok = check_create_opts(opts, (BlockOptDesc *)list->data, errp);

    g_array_free(list, true);
    return ok;
}

/* Element by element, each checked before the next is looked at: the
 * first bad element of the list is the one reported, as the reference
 * checks them while parsing ("nocow=x,bogus=1" blames nocow). */
static bool parse_check_opts(QDict *opts, const char *str,
                             const BlockOptDesc *schema, Error **errp)
{
    const char *p = str;

    while (p && *p) {
        g_autoptr(QDict) one = qdict_new();

        parse_opt_element(one, &p);
        if (!check_create_opts(one, schema, errp)) {
            return false;
        }
        for (const QDictEntry *e = qdict_first(one); e;
             e = qdict_next(one, e)) {
            qdict_put_str(opts, qdict_entry_key(e),
                          qdict_get_str(one, qdict_entry_key(e)));
        }
    }
    return true;
}

bool img_parse_check_opts(QDict *opts, const char *str,
                          const BlockOptDesc *schema, Error **errp)
{
    return parse_check_opts(opts, str, schema, errp);
}

bool img_parse_check_create_opts(QDict *opts, const char *str,
                                 const BlockDriver *drv,
                                 const BlockDriver *proto, Error **errp)
{
    GArray *list = merged_create_opts(drv, proto);
    bool ok = parse_check_opts(opts, str, (BlockOptDesc *)list->data, errp);

    g_array_free(list, true);
    return ok;
}

/* "Formatting 'x', fmt=raw size=N ..." in the reference's option order. */
static void print_formatting(const CreateArgs *a, QDict *opts,
                             const BlockOptDesc *schema)
{
    const char *sep = "";

    printf("Formatting '%s', fmt=%s ", a->filename, a->common.fmt);
    for (const BlockOptDesc *d = schema; d->name; d++) {
        const char *v = qdict_get_try_str(opts, d->name);

        v = v ? v : d->def_value_str;
        if (v) {
            g_auto(GStrv) parts = g_strsplit(v, ",", -1);
            g_autofree char *esc = g_strjoinv(",,", parts);

            printf("%s%s=%s", sep, d->name, esc);
            sep = " ";
        }
    }
    printf("\n");
    fflush(stdout);
}

/* Backing options on a format without backing files. */
static bool check_backing(const CreateArgs *a, const BlockDriver *drv,
                          Error **errp)
{
    if (bdrv_supports_backing(drv)) {
        return true;
    }
    if (a->backing) {
        error_setg(errp, "Backing file not supported for file format '%s'",
                   a->common.fmt);
        return false;
    }
    if (a->backing_fmt) {
        error_setg(errp, "Backing file format not supported for file "
                   "format '%s'", a->common.fmt);
        return false;
    }
    return true;
}

/* Fill "size" from the command line: once, and required. */
static bool apply_size(const CreateArgs *a, QDict *opts, Error **errp)
{
    if (qdict_haskey(opts, "size") && a->size != -1) {
        error_setg(errp, "The image size must be specified only once");
        return false;
    }
    if (a->size != -1) {
        g_autofree char *num = g_strdup_printf("%" PRId64, a->size);
        qdict_put_str(opts, "size", num);
    }
    return true;
}

/* -b/-F become the backing_file/backing_fmt options. */
static void apply_backing(const CreateArgs *a, const BlockDriver *drv,
                          QDict *opts)
{
    if (!bdrv_supports_backing(drv)) {
        return;
    }
    if (a->backing) {
        qdict_put_str(opts, "backing_file", a->backing);
    }
    if (a->backing_fmt) {
        qdict_put_str(opts, "backing_fmt", a->backing_fmt);
    }
}

/* Without a backing format the reference still opens (probes) the
 * backing file first, unless -u; its failure comes first, else its
 * format makes the hint "Detected format of X." (that of the node a
 * json: name describes, not a probe of its guest data). */
static bool backing_opens(const char *path, char **detected, Error **errp)
{
    BlockDriverState *bs = bdrv_open(path, NULL, NULL,
                                     BDRV_O_NO_BACKING | BDRV_O_NO_IO, errp);

    if (!bs) {
        error_append_hint(errp, "Could not open backing image.\n");
        return false;
    }
    *detected = g_strdup(bdrv_get_format_name(bs));
    bdrv_unref(bs);
    return true;
}

/* The reference requires a backing format; it opens the backing file to
 * check it and to take the size from it when none was given. */
static bool check_backing_file(const CreateArgs *a, QDict *opts,
                               Error **errp)
{
    const char *bf = qdict_get_try_str(opts, "backing_file");
    const char *fmt = qdict_get_try_str(opts, "backing_fmt");
    g_autofree char *path = NULL;
    BlockDriverState *bs;
    QDict *o;
    int64_t len;

    if (!bf) {
        return true;
    }
    path = bdrv_combine_backing_name(a->filename, bf, errp);
    if (!path) {
        return false;
    }
    if (!fmt) {
        g_autofree char *detected = NULL;

        if (!a->unsafe && !backing_opens(path, &detected, errp)) {
            return false;
        }
        error_setg(errp, "Backing file specified without backing format");
        if (detected) {
            error_append_hint(errp, "Detected format of %s.\n", detected);
        }
        return false;
    }
    if (a->unsafe && qdict_haskey(opts, "size")) {
        return true;
    }
    o = qdict_new();
    qdict_put_str(o, "driver", fmt);
    bs = bdrv_open(path, NULL, o, BDRV_O_NO_BACKING | BDRV_O_NO_IO, errp);
    if (!bs) {
        error_append_hint(errp, "Could not open backing image.\n");
        return false;
    }
    len = bdrv_getlength(bs);
    bdrv_unref(bs);
    if (len >= 0 && !qdict_haskey(opts, "size")) {
        g_autofree char *num = g_strdup_printf("%" PRId64, len);
        qdict_put_str(opts, "size", num);
    }
    return true;
}

/* Without a backing file to take it from, the size is required. */
static bool check_size(QDict *opts, Error **errp)
{
    if (!qdict_haskey(opts, "size")) {
        error_setg(errp, "Image creation needs a size parameter");
        return false;
    }
    return true;
}

/* The reference adds a hint to its EFBIG message when the format has a
 * (non-zero) cluster size option. */
static const char *cluster_size_hint(const BlockOptDesc *schema, QDict *opts)
{
    const BlockOptDesc *d = find_desc(schema, "cluster_size");
    const char *v;

    if (!d) {
        return "";
    }
    v = qdict_haskey(opts, "cluster_size") ?
        qdict_get_try_str(opts, "cluster_size") : d->def_value_str;
    return v && strcmp(v, "0") ? " (try using a larger cluster size)" : "";
}

/* Validate the options, print the Formatting line and create. */
static int create_image_with(const CreateArgs *a, const BlockDriver *drv,
                             const BlockDriver *proto, Error **errp)
{
    GArray *list = merged_create_opts(drv, proto);
    const BlockOptDesc *schema = (const BlockOptDesc *)list->data;
    g_autoptr(QDict) opts = qdict_new();
    int ret = -EINVAL;

    if (parse_check_opts(opts, a->options, schema, errp) &&
        apply_size(a, opts, errp) &&
        check_backing(a, drv, errp) &&
        (apply_backing(a, drv, opts), check_backing_file(a, opts, errp)) &&
        check_size(opts, errp)) {
        if (!a->common.quiet) {
            print_formatting(a, opts, schema);
        }
        ret = bdrv_create(drv, a->filename, opts, errp);
    }
    if (ret == -EFBIG) {
        /* the reference words every EFBIG this way */
        error_free(*errp);
        *errp = NULL;
        error_setg(errp, "The image size is too large for file format '%s'%s",
                   bdrv_driver_name(drv), cluster_size_hint(schema, opts));
    }
    g_array_free(list, true);
    return ret;
}

/* bdrv_img_create: errors carry the filename as prefix. */
static int create_image(const CreateArgs *a)
{
    Error *err = NULL;
    const BlockDriver *drv = create_driver(a->common.fmt, &err);
    const BlockDriver *proto = drv ? create_protocol(a->filename, &err) : NULL;
    int ret = -EINVAL;

    if (proto) {
        ret = create_image_with(a, drv, proto, &err);
    }
    if (err) {
        error_reportf_err(err, "%s: ", a->filename);
    }
    return ret < 0 ? 1 : 0;
}

/* One option; returns -1 to go on, else the exit status. */
static int create_option(int c, void *opaque)
{
    CreateArgs *a = opaque;

    switch (c) {
    case 'F':
        a->backing_fmt = optarg;
        return -1;
    case 'b':
        a->backing = optarg;
        return -1;
    case 'o':
        return img_opts_add(&a->options, optarg) ? -1 : 1;
    case 'u':
        a->unsafe = true;
        return -1;
    default:
        return img_common_option(c, "create", &a->common);
    }
}

/* Options; returns -1 to go on, else the exit status. */
static int parse_create_opts(int argc, char **argv, CreateArgs *a)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "quiet", no_argument, NULL, 'q' },
        { "format", required_argument, NULL, 'f' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "options", required_argument, NULL, 'o' },
        { "backing", required_argument, NULL, 'b' },
        { "backing-format", required_argument, NULL, 'F' },
        { "backing-unsafe", no_argument, NULL, 'u' },
        { NULL, 0, NULL, 0 },
    };

    return img_getopt_loop(argc, argv, "create", "F:b:f:ho:qu", longopts,
                           create_option, a);
}

/* Operands: FILENAME [SIZE]; returns -1 to go on, else the exit status. */
static int parse_create_operands(int argc, char **argv, CreateArgs *a)
{
    if (optind >= argc) {
        return img_usage_error("create", "Expecting image file name");
    }
    a->filename = argv[optind++];
    if (optind < argc) {
        if (!img_parse_image_size(argv[optind++], &a->size)) {
            return 1;
        }
    }
    if (optind != argc) {
        return img_usage_error("create", "Unexpected argument: %s",
                               argv[optind]);
    }
    return -1;
}

int img_create(int argc, char **argv)
{
    CreateArgs a = { .common.fmt = "raw", .size = -1 };
    int ret = parse_create_opts(argc, argv, &a);

    if (ret < 0 && img_opts_is_help(a.options)) {
        ret = print_option_help(optind < argc ? argv[optind] : NULL,
                                a.common.fmt);
    }
    if (ret < 0) {
        ret = parse_create_operands(argc, argv, &a);
    }
    if (ret < 0) {
        ret = create_image(&a);
    }
    g_free(a.options);
    return ret;
}
