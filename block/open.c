#include "config.h"
/*
 * Opening graphs: json: filenames, protocol prefixes, generic options,
 * children and their inherited flags, format probing; image creation and
 * reopen.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "block/drivers.h"
#include "util/cutils.h"

/* QEMU reads this much of an image to guess its format. */
#define PROBE_BUF_SIZE 2048


static bool is_protocol_driver(const BlockDriver *drv)
{
    return drv->protocol_name || drv->kind == BDRV_KIND_PROTOCOL;
}

/* "json:{...}" becomes flat options; keys given explicitly win. */
static int merge_json_filename(const char **filename, QDict *options,
                               Error **errp)
{
    Error *local_err = NULL;
    QObject *obj;
    QDict *dict;

    if (!*filename || strncmp(*filename, "json:", 5)) {
        return 0;
    }
    obj = qobject_from_json(*filename + 5, &local_err);
    if (!obj) {
        error_propagate_prepend(errp, local_err,
                                "Could not parse the JSON options: ");
        return -EINVAL;
    }
    dict = qobject_to_qdict(obj);
    if (!dict) {
        qobject_unref(obj);
        error_setg(errp, "Invalid JSON object given");
        return -EINVAL;
    }
    qdict_flatten(dict);
    qdict_join(options, dict, false);
    qobject_unref(dict);
    *filename = NULL;
    return 0;
}

/* Flags a child starts from: the parent's cache/read-only state; backing
 * files are read-only and probed, other children are protocols. */
int bdrv_child_flags(BlockDriverState *parent, BdrvChildRole role)
{
    int keep = BDRV_O_RDWR | BDRV_O_NOCACHE | BDRV_O_NO_FLUSH |
               BDRV_O_NO_IO | BDRV_O_FORCE_SHARE | BDRV_O_CREATE |
               BDRV_O_AIO_MASK;
    int flags = parent->open_flags & keep;

    if (role & BDRV_CHILD_COW) {
        return flags & ~(BDRV_O_RDWR | BDRV_O_CREATE);
    }
    if (role & BDRV_CHILD_METADATA) {
        flags &= ~BDRV_O_NO_IO;
    }
    return flags | BDRV_O_UNMAP | BDRV_O_PROTOCOL;
}

/* Common tail of attaching: edge bookkeeping and shortcuts. */
static BdrvChild *link_child(BlockDriverState *parent, BlockDriverState *child,
                             const char *name, BdrvChildRole role)
{
    BdrvChild *c = g_new0(BdrvChild, 1);

    c->bs = child;
    c->name = g_strdup(name);
    c->role = role;
    c->parent = parent;
    c->shared_perm = BLK_PERM_ALL;
    bdrv_parent_link(c);
    g_ptr_array_add(parent->children, c);
    bdrv_bsc_invalidate(parent);
    if (!strcmp(name, "file")) {
        parent->file = c;
    } else if (!strcmp(name, "backing")) {
        parent->backing = c;
    }
    return c;
}

/* Inverse of link_child(); permissions are the caller's business. */
static void unlink_child(BlockDriverState *parent, BdrvChild *c)
{
    g_ptr_array_remove(parent->children, c);
    bdrv_parent_unlink(c);
    bdrv_bsc_invalidate(parent);
    if (parent->file == c) {
        parent->file = NULL;
    }
    if (parent->backing == c) {
        parent->backing = NULL;
    }
}

BdrvChild *bdrv_attach_child(BlockDriverState *parent, BlockDriverState *child,
                             const char *name, BdrvChildRole role, Error **errp)
{
    BdrvChild *c = link_child(parent, child, name, role);

    if (bdrv_refresh_perms_edge(parent, errp) < 0) {
        unlink_child(parent, c);
        g_free(c->name);
        g_free(c);
        bdrv_unref(child);
        return NULL;
    }
    return c;
}

void bdrv_unref_child(BlockDriverState *parent, BdrvChild *child)
{
    BlockDriverState *bs = child->bs;

    unlink_child(parent, child);
    bdrv_refresh_perms_edge(bs, NULL);
    g_free(child->name);
    g_free(child);
    bdrv_unref(bs);
}

/* "file": "node-name" refers to an existing node (new reference). */
BlockDriverState *bdrv_lookup_reference(const char *ref, QDict *child_opts,
                                        Error **errp)
{
    BlockDriverState *bs;

    if (qdict_size(child_opts)) {
        error_setg(errp, "Cannot reference an existing block device with "
                   "additional options or a new filename");
        return NULL;
    }
    bs = bdrv_find_node(ref);
    if (!bs) {
        error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                   ref, ref);
        return NULL;
    }
    bdrv_ref(bs);
    return bs;
}

/* Opens (or looks up) the node for child @name; NULL without error when
 * nothing was specified and @allow_none. */
static BlockDriverState *open_child_bs(const char *filename, QDict *options,
                                       const char *name,
                                       BlockDriverState *parent,
                                       BdrvChildRole role, bool allow_none,
                                       Error **errp)
{
    g_autofree char *prefix = g_strdup_printf("%s.", name);
    g_autofree char *ref = g_strdup(qdict_get_try_str(options, name));
    QDict *child_opts = NULL;
    BlockDriverState *bs;

    qdict_extract_subqdict(options, &child_opts, prefix);
    if (ref) {
        qdict_del(options, name);
        bs = bdrv_lookup_reference(ref, child_opts, errp);
        qobject_unref(child_opts);
        return bs;
    }
    if (qdict_haskey(options, name)) {      /* "backing": null */
        qdict_del(options, name);
        qobject_unref(child_opts);
        return NULL;
    }
    if (!filename && !qdict_size(child_opts)) {
        qobject_unref(child_opts);
        if (!allow_none) {
            error_setg(errp, "A block device must be specified for \"%s\"",
                       name);
        }
        return NULL;
    }
    return bdrv_open_inherit(filename, child_opts,
                             bdrv_child_flags(parent, role), parent, role, errp);
}

BdrvChild *bdrv_open_child(const char *filename, QDict *options,
                           const char *name, BlockDriverState *parent,
                           BdrvChildRole role, bool allow_none, Error **errp)
{
    Error *local_err = NULL;
    BlockDriverState *bs;

    if (qdict_get_try_str(options, name)) {
        filename = NULL;    /* a node reference wins over a filename */
    }
    bs = open_child_bs(filename, options, name, parent, role, allow_none,
                       &local_err);
    if (!bs) {
        error_propagate(errp, local_err);
        return NULL;
    }
    return bdrv_attach_child(parent, bs, name, role, errp);
}

void bdrv_inherit_request_flags(BlockDriverState *bs, BdrvChild *child)
{
    bs->supported_write_flags = child->bs->supported_write_flags &
                                BDRV_REQ_FUA;
    bs->supported_zero_flags = child->bs->supported_zero_flags &
                               (BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP |
                                BDRV_REQ_NO_FALLBACK);
}

BdrvChild *bdrv_open_filtered_child(BlockDriverState *bs, const char *filename,
                                    QDict *options, const char *name,
                                    Error **errp)
{
    BdrvChild *child = bdrv_open_child(filename, options, name, bs,
                                       BDRV_CHILD_DATA | BDRV_CHILD_FILTERED |
                                       BDRV_CHILD_PRIMARY, false, errp);

    if (child) {
        bdrv_inherit_request_flags(bs, child);
    }
    return child;
}

/* ---- generic options ---- */

static int parse_detect_zeroes(QDict *options, int flags, DetectZeroes *dz,
                               Error **errp)
{
    const char *s = bdrv_opt_str(options, "detect-zeroes", "off");

    if (!strcmp(s, "off")) {
        *dz = DETECT_ZEROES_OFF;
    } else if (!strcmp(s, "on")) {
        *dz = DETECT_ZEROES_ON;
    } else if (!strcmp(s, "unmap")) {
        *dz = DETECT_ZEROES_UNMAP;
    } else {
        error_setg(errp, "invalid parameter value: %s", s);
        return -EINVAL;
    }
    if (*dz == DETECT_ZEROES_UNMAP && !(flags & BDRV_O_UNMAP)) {
        error_setg(errp, "setting detect-zeroes to unmap is not allowed "
                   "without setting discard operation to unmap");
        return -EINVAL;
    }
    return 0;
}

/* Sets or clears @flag from boolean option @key (default: current). */
static int bool_opt_flag(QDict *options, const char *key, int flag,
                         bool invert, int *flags, Error **errp)
{
    Error *local_err = NULL;
    bool cur = !!(*flags & flag) != invert;
    bool v = bdrv_opt_bool(options, key, cur, &local_err);

    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    *flags = (v != invert) ? (*flags | flag) : (*flags & ~flag);
    return 0;
}

typedef struct FlagOpt {
    const char *key;
    int flag;           /* 0: only checked */
    bool invert;
} FlagOpt;

/* The boolean generic options; children inherit all of them. */
static const FlagOpt flag_opts[] = {
    { "read-only", BDRV_O_RDWR, true },
    { "cache.direct", BDRV_O_NOCACHE, false },
    { "cache.no-flush", BDRV_O_NO_FLUSH, false },
    { "force-share", BDRV_O_FORCE_SHARE, false },
    { "auto-read-only", 0, false },
    { NULL },
};

/* One boolean option; @skip_overridden ignores errors in values the
 * "file" child replaces with its own. */
static int parse_flag_opt(QDict *options, const FlagOpt *o, int *flags,
                          bool skip_overridden, Error **errp)
{
    g_autofree char *child_key = g_strdup_printf("file.%s", o->key);
    Error *local_err = NULL;
    int tmp = *flags;

    if (skip_overridden && qdict_haskey(options, child_key)) {
        bool_opt_flag(options, o->key, o->flag, o->invert, &tmp, &local_err);
        error_free(local_err);
        return 0;
    }
    return bool_opt_flag(options, o->key, o->flag, o->invert,
                         o->flag ? flags : &tmp, errp);
}

/* The boolean generic options as BDRV_O_* flags. */
static int parse_flag_options(QDict *options, int *flags,
                              bool skip_overridden, Error **errp)
{
    for (const FlagOpt *o = flag_opts; o->key; o++) {
        if (parse_flag_opt(options, o, flags, skip_overridden, errp) < 0) {
            return -EINVAL;
        }
    }
    return 0;
}

/* Drivers that take a "filename" option cannot do without one. */
static bool driver_needs_filename(const BlockDriver *drv)
{
    for (const BlockOptDesc *d = drv->open_opts; d && d->name; d++) {
        if (!strcmp(d->name, "filename")) {
            return true;
        }
    }
    return false;
}

/* QEMU's order: force-share, file name, discard, detect-zeroes. */
static int check_generic_options(const BlockDriver *drv, QDict *options,
                                 int *flags, DetectZeroes *dz, Error **errp)
{
    const char *discard = bdrv_opt_str(options, "discard", NULL);
    const char *fn = qdict_get_try_str(options, "filename");

    if ((*flags & BDRV_O_FORCE_SHARE) && (*flags & BDRV_O_RDWR)) {
        error_setg(errp, "force-share=on can only be used with read-only "
                   "images");
        return -EINVAL;
    }
    if (driver_needs_filename(drv) && (!fn || !fn[0])) {
        error_setg(errp, "The '%s' block driver requires a file name",
                   drv->format_name);
        return -EINVAL;
    }
    if (discard && bdrv_parse_discard_flags(discard, flags) < 0) {
        error_setg(errp, "Invalid discard option");
        return -EINVAL;
    }
    return parse_detect_zeroes(options, *flags, dz, errp);
}

/* Flags the children inherit.  A bad value a child would inherit fails
 * now: QEMU's child reports it before anything else happens. */
static int preset_flags(BlockDriverState *bs, QDict *options, int flags,
                        Error **errp)
{
    if (parse_flag_options(options, &flags, true, errp) < 0) {
        return -EINVAL;
    }
    bs->open_flags = flags;
    bs->read_only = !(flags & BDRV_O_RDWR);
    return 0;
}

/* Turns the generic options into BDRV_O_* flags and node fields. */
static int apply_generic_options(BlockDriverState *bs, const BlockDriver *drv,
                                 QDict *options, int *flags, Error **errp)
{
    if (parse_flag_options(options, flags, false, errp) < 0 ||
        check_generic_options(drv, options, flags, &bs->detect_zeroes,
                              errp) < 0) {
        return -EINVAL;
    }
    bs->open_flags = *flags;
    bs->read_only = !(*flags & BDRV_O_RDWR);
    bs->force_share = !!(*flags & BDRV_O_FORCE_SHARE);
    return 0;
}

/* ---- driver selection ---- */

/* Decides the driver (or NULL: probe later) and the protocol flag, puts
 * the filename into the options of protocol nodes. */
static int select_driver(const char **filename, QDict *options, int *flags,
                         const BlockDriver **pdrv, Error **errp)
{
    const char *drvname = qdict_get_try_str(options, "driver");
    const BlockDriver *drv = NULL;
    bool parse_filename = false;

    if (drvname) {
        drv = bdrv_find_format(drvname);
        if (!drv) {
            error_setg(errp, "Unknown driver '%s'", drvname);
            return -EINVAL;
        }
        *flags = is_protocol_driver(drv) ? *flags | BDRV_O_PROTOCOL
                                         : *flags & ~BDRV_O_PROTOCOL;
    }
    if ((*flags & BDRV_O_PROTOCOL) && *filename) {
        if (qdict_haskey(options, "filename")) {
            error_setg(errp, "Can't specify 'file' and 'filename' options at "
                       "the same time");
            return -EINVAL;
        }
        qdict_put_str(options, "filename", *filename);
        parse_filename = true;
    }
    if ((*flags & BDRV_O_PROTOCOL) && !drv) {
        const char *fn = qdict_get_try_str(options, "filename");
        if (!fn) {
            error_setg(errp, "Must specify either driver or file");
            return -EINVAL;
        }
        drv = bdrv_find_protocol(fn, parse_filename, errp);
        if (!drv) {
            return -EINVAL;
        }
        qdict_put_str(options, "driver", drv->format_name);
    }
    if (drv && drv->parse_filename && parse_filename) {
        Error *local_err = NULL;
        g_autofree char *fn = g_strdup(qdict_get_str(options, "filename"));
        drv->parse_filename(fn, options, &local_err);
        if (local_err) {
            error_propagate(errp, local_err);
            return -EINVAL;
        }
        if (!driver_needs_filename(drv)) {
            qdict_del(options, "filename");
        }
    }
    *pdrv = drv;
    return 0;
}

/* ---- probing ---- */

typedef struct ProbeRead {
    BdrvChild *child;
    uint8_t *buf;
    int64_t len;
    int ret;
} ProbeRead;

/* Length first: only what the image has is read; the rest of the
 * buffer stays zero, as the reference's probe sees past the end. */
static void coroutine_fn probe_read_entry(void *opaque)
{
    ProbeRead *p = opaque;
    int64_t size = bdrv_co_getlength(p->child->bs);
    IOVector qiov;

    p->len = size < 0 ? PROBE_BUF_SIZE : MIN(size, PROBE_BUF_SIZE);
    if (p->len == 0) {
        p->ret = 0;
        return;
    }
    iov_vec_init_buf(&qiov, p->buf, p->len);
    p->ret = bdrv_co_preadv(p->child, 0, p->len, &qiov, 0);
    iov_vec_destroy(&qiov);
}

/* Reads the head of @file through a temporary, permission-less edge and
 * asks every driver; raw when nothing claims it.  Drivers always see the
 * whole (zero-padded) buffer, as in the reference: a short file with a
 * format's magic is that format, not raw. */
static const BlockDriver *probe_format(BlockDriverState *file,
                                       const char *filename, Error **errp)
{
    BdrvChild tmp = { .bs = file, .name = (char *)"probe",
                      .role = BDRV_CHILD_DATA, .shared_perm = BLK_PERM_ALL };
    g_autofree uint8_t *buf = g_malloc0(PROBE_BUF_SIZE);
    ProbeRead p = { .child = &tmp, .buf = buf };
    const BlockDriver *drv;

    co_run_sync(probe_read_entry, &p);
    if (p.ret < 0) {
        error_setg_errno(errp, -p.ret, "Could not read image for determining "
                         "its format");
        return NULL;
    }
    drv = p.len ? bdrv_probe_format(buf, PROBE_BUF_SIZE, filename) : NULL;
    drv = drv ? drv : bdrv_find_format("raw");
    if (!drv) {
        error_setg(errp, "Could not determine image format: No compatible "
                   "driver found");
    }
    return drv;
}

/* The warning QEMU prints when a writable image was guessed to be raw. */
static void warn_probed_raw(BlockDriverState *bs)
{
    if (!bs->probed || bs->read_only || strcmp(bs->drv->format_name, "raw")) {
        return;
    }
    fprintf(stderr,
            "WARNING: Image format was not specified for '%s' and probing "
            "guessed raw.\n"
            "         Automatically detecting the format is dangerous for raw "
            "images, write operations on block 0 will be restricted.\n"
            "         Specify the 'raw' format explicitly to remove the "
            "restrictions.\n",
            bs->file ? bdrv_get_filename(bs->file->bs) : bdrv_get_filename(bs));
}

/* ---- the node itself ---- */

/* The name while the node opens (drivers' messages use it): formats show
 * their file's name, protocols the one they were given, which stays
 * their plain name (block/filename.c renames the node once it is open). */
static void set_node_filename(BlockDriverState *bs, const char *filename,
                              QDict *options)
{
    const char *fn = qdict_get_try_str(options, "filename");

    if (bs->file && !is_protocol_driver(bs->drv)) {
        fn = bdrv_get_filename(bs->file->bs);
    } else if (!fn) {
        fn = filename;
    }
    g_free(bs->filename);
    bs->filename = g_strdup(fn ? fn : "");
    g_free(bs->exact_filename);
    bs->exact_filename = g_strdup(bs->filename);
}

/* QEMU words this differently for formats and protocols. */
static void unknown_option_error(const BlockDriver *drv, const char *key,
                                 Error **errp)
{
    if (is_protocol_driver(drv)) {
        error_setg(errp, "Block protocol '%s' doesn't support the option '%s'",
                   drv->format_name, key);
    } else {
        error_setg(errp, "Block format '%s' does not support the option '%s'",
                   drv->format_name, key);
    }
}

/* Undo a failed driver open: the node stays allocated for the caller. */
static void open_failed(BlockDriverState *bs)
{
    while (bs->children->len) {
        bdrv_unref_child(bs, g_ptr_array_index(bs->children,
                                               bs->children->len - 1));
    }
    g_clear_pointer(&bs->opaque, g_free);
    bs->drv = NULL;
}

/* QEMU's largest node: INT64_MAX aligned down to 1 GiB. */
#define OPEN_MAX_LENGTH (INT64_MAX - ((INT64_C(1) << 30) - 1))

typedef struct LengthCo {
    BlockDriverState *bs;
    int64_t len;
} LengthCo;

/* The driver's length, asked in coroutine context. */
static void coroutine_fn length_entry(void *opaque)
{
    LengthCo *l = opaque;

    l->len = bdrv_driver_io(l->bs->drv)->co_getlength(l->bs);
}

/* QEMU sizes every node right after the driver opened it; a node whose
 * length cannot be determined (or is too large) fails to open. */
static int check_node_length(BlockDriverState *bs, Error **errp)
{
    LengthCo l = { .bs = bs };

    if (!bdrv_driver_io(bs->drv)->co_getlength) {
        return 0;
    }
    co_run_sync(length_entry, &l);
    if (l.len < 0) {
        int err = l.len < -4095 ? EINVAL : (int)-l.len;
        error_setg_errno(errp, err, "Could not refresh total sector count");
        return -err;
    }
    if (ROUND_UP((uint64_t)l.len, BDRV_SECTOR_SIZE) > OPEN_MAX_LENGTH) {
        error_setg_errno(errp, EFBIG, "Could not refresh total sector count");
        return -EFBIG;
    }
    return 0;
}

/* Runs the driver's open and checks what it left unconsumed. */
static int open_common(BlockDriverState *bs, const BlockDriver *drv,
                       const char *filename, QDict *options, int flags,
                       Error **errp)
{
    const char *unknown;
    int ret;

    if (bdrv_assign_node_name(bs, qdict_get_try_str(options, "node-name"),
                              errp) < 0) {
        return -EINVAL;
    }
    /* copy-on-read writes what it reads: nowhere to write on a read-only
     * node (children never inherit the flag, so this is the top node) */
    if ((flags & BDRV_O_COPY_ON_READ) && !(flags & BDRV_O_RDWR)) {
        error_setg(errp, "Can't use copy-on-read on read-only device");
        return -EINVAL;
    }
    bs->drv = drv;
    bs->opaque = g_malloc0(MAX(drv->instance_size, 1));
    bs->options = qdict_clone_shallow(options);
    set_node_filename(bs, filename, options);
    ret = drv->open ? drv->open(bs, options, flags, errp) : 0;
    if (ret < 0) {
        open_failed(bs);
        return ret;
    }
    /* from the driver's open, as the reference's raw driver warns: so
     * before the options left over are refused */
    warn_probed_raw(bs);
    set_node_filename(bs, filename, options);
    ret = check_node_length(bs, errp);
    if (ret == 0) {
        /* the backing file takes its options before leftovers count */
        ret = bdrv_open_backing(bs, options, flags, errp);
    }
    unknown = ret == 0 ? bdrv_opts_first_unknown(options, drv->open_opts)
                       : NULL;
    if (ret < 0 || unknown) {
        if (ret == 0) {
            unknown_option_error(drv, unknown, errp);
        }
        if (drv->close) {
            drv->close(bs);
        }
        open_failed(bs);
        return -EINVAL;
    }
    bdrv_refresh_limits(bs, errp);
    bdrv_refresh_filename_node(bs);
    return 0;
}

/* Formats: open the protocol child first (needed for probing); the
 * driver then finds it again through the "file" node reference. */
static int open_file_first(BlockDriverState *bs, const char *filename,
                           QDict *options, BlockDriverState **file,
                           Error **errp)
{
    Error *local_err = NULL;

    *file = open_child_bs(filename, options, "file", bs,
                          BDRV_CHILD_DATA | BDRV_CHILD_PRIMARY, true,
                          &local_err);
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    if (*file) {
        qdict_put_str(options, "file", bdrv_get_node_name(*file));
    }
    return 0;
}

/* Everything after the options are merged: driver, generic options, the
 * file child, probing, the driver's open. */
static int open_node(BlockDriverState *bs, const char *filename,
                     QDict *options, int flags, Error **errp)
{
    const BlockDriver *drv = NULL;
    BlockDriverState *file = NULL;
    int ret;

    ret = select_driver(&filename, options, &flags, &drv, errp);
    if (ret == 0) {
        ret = preset_flags(bs, options, flags, errp);
    }
    if (ret == 0 && !(flags & BDRV_O_PROTOCOL)) {
        ret = open_file_first(bs, filename, options, &file, errp);
    }
    if (ret == 0 && drv && drv->check_open_opts) {
        ret = drv->check_open_opts(options, errp);
    }
    if (ret == 0 && !drv) {
        if (!file) {
            error_setg(errp, "Must specify either driver or file");
            return -EINVAL;
        }
        bs->probed = true;
        drv = probe_format(file, filename, errp);
        ret = drv ? 0 : -EINVAL;
        if (drv) {
            qdict_put_str(options, "driver", drv->format_name);
        }
    }
    if (ret == 0 && bdrv_not_yet_supported_error(drv, errp)) {
        ret = -ENOTSUP;     /* named or probed: never fall back to raw */
    }
    if (ret == 0) {
        ret = apply_generic_options(bs, drv, options, &flags, errp);
    }
    if (ret == 0) {
        ret = open_common(bs, drv, filename, options, flags, errp);
    }
    bdrv_unref(file);
    return ret;
}

BlockDriverState *bdrv_open_inherit(const char *filename, QDict *options,
                                    int flags, BlockDriverState *parent,
                                    BdrvChildRole role, Error **errp)
{
    BlockDriverState *bs;
    int ret;

    options = options ? options : qdict_new();
    if (merge_json_filename(&filename, options, errp) < 0) {
        qobject_unref(options);
        return NULL;
    }
    qdict_flatten(options);
    bdrv_backing_take_null(options, &flags);
    bs = bdrv_new();
    bs->explicit_options = qdict_clone_shallow(options);
    /* a backing file's own backing file checks the chain above */
    bs->backing_of = (role & BDRV_CHILD_COW) ? parent : NULL;
    ret = open_node(bs, filename, options, flags, errp);
    bs->backing_of = NULL;
    if (ret < 0) {
        bdrv_unref(bs);
        bs = NULL;
    }
    qobject_unref(options);
    return bs;
}

BlockDriverState *bdrv_open(const char *filename, const char *reference,
                            QDict *options, int flags, Error **errp)
{
    BlockDriverState *bs;

    if (reference) {
        if (filename || (options && qdict_size(options))) {
            qobject_unref(options);
            error_setg(errp, "Cannot reference an existing block device with "
                       "additional options or a new filename");
            return NULL;
        }
        qobject_unref(options);
        bs = bdrv_find_node(reference);
        if (!bs) {
            error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                       reference, reference);
            return NULL;
        }
        bdrv_ref(bs);
        return bs;
    }
    if (flags & BDRV_O_SNAPSHOT) {
        return bdrv_open_temp_snapshot(filename, options, flags, errp);
    }
    return bdrv_open_inherit(filename, options, flags, NULL, 0, errp);
}

/* ---- limits ---- */

/* Children that carry data set the defaults a parent starts from.  Not
 * the request alignment: a parent takes any request and the child pads
 * what it needs itself, as QEMU's nodes do (blkdebug then sees the
 * child's read-modify-write). */
static void merge_limits(BlockLimits *dst, const BlockLimits *src)
{
    dst->opt_transfer = MAX(dst->opt_transfer, src->opt_transfer);
    if (src->max_transfer &&
        (!dst->max_transfer || src->max_transfer < dst->max_transfer)) {
        dst->max_transfer = src->max_transfer;
    }
    if (src->max_iov && (!dst->max_iov || src->max_iov < dst->max_iov)) {
        dst->max_iov = src->max_iov;
    }
    dst->min_mem_alignment = MAX(dst->min_mem_alignment,
                                 src->min_mem_alignment);
    dst->opt_mem_alignment = MAX(dst->opt_mem_alignment,
                                 src->opt_mem_alignment);
}

void bdrv_refresh_limits(BlockDriverState *bs, Error **errp)
{
    bool have_limits = false;

    memset(&bs->bl, 0, sizeof(bs->bl));
    bs->bl.request_alignment = 1;
    for (unsigned i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        if (c->role & (BDRV_CHILD_DATA | BDRV_CHILD_FILTERED |
                       BDRV_CHILD_COW)) {
            merge_limits(&bs->bl, &c->bs->bl);
            have_limits = true;
        }
    }
    if (!have_limits) {
        bs->bl.min_mem_alignment = 512;
        bs->bl.opt_mem_alignment = 4096;
    }
    if (bs->drv && bs->drv->refresh_limits) {
        bs->drv->refresh_limits(bs, errp);
    }
}

/* ---- creation ---- */

typedef struct CreateCo {
    const BlockDriver *drv;
    const char *filename;
    QDict *opts;
    Error **errp;
    int ret;
} CreateCo;

/* Drivers create images in coroutine context. */
static void coroutine_fn create_entry(void *opaque)
{
    CreateCo *cc = opaque;

    cc->ret = cc->drv->co_create_opts(cc->drv, cc->filename, cc->opts,
                                      cc->errp);
}

int bdrv_create(const BlockDriver *drv, const char *filename, QDict *opts,
                Error **errp)
{
    g_autoptr(QDict) own = opts ? qobject_ref(opts) : qdict_new();
    CreateCo cc = { .drv = drv, .filename = filename, .opts = own,
                    .errp = errp };

    if (!drv->co_create_opts) {
        error_setg(errp, "Driver '%s' does not support image creation",
                   drv->format_name);
        return -ENOTSUP;
    }
    co_run_sync(create_entry, &cc);
    return cc.ret;
}

int bdrv_create_file(const char *filename, QDict *opts, Error **errp)
{
    const BlockDriver *drv = bdrv_find_protocol(filename, true, errp);

    if (!drv) {
        return -ENOENT;
    }
    return bdrv_create(drv, filename, opts, errp);
}

void bdrv_delete_created_file(const char *filename)
{
    const BlockDriver *drv = bdrv_find_protocol(filename, true, NULL);

    if (!drv || strcmp(bdrv_driver_name(drv), "file") != 0) {
        return;
    }
    if (g_str_has_prefix(filename, "file:")) {
        filename += strlen("file:");
    }
    unlink(filename);
}

/* ---- reopen ---- */

/* The driver's reopen hooks; an all-NULL group when it has none. */
static const BlockDriverReopenOps *reopen_ops(BlockDriverState *bs)
{
    static const BlockDriverReopenOps none;

    return bs->drv && bs->drv->reopen ? bs->drv->reopen : &none;
}

static int reopen_tree(BlockDriverState *bs, bool read_only, Error **errp);

/* The children of @bs (not backing files) follow the new mode. */
static int reopen_children(BlockDriverState *bs, bool read_only,
                           Error **errp)
{
    for (unsigned i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        if (!(c->role & BDRV_CHILD_COW) && c->bs->read_only != read_only) {
            int ret = reopen_tree(c->bs, read_only, errp);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

/* Drivers (protocols: their fd) follow the new mode: top-down to
 * read-only (a format flushes while it still may write), bottom-up to
 * read-write (a format may write, e.g. qcow2 marking its bitmaps
 * in-use, as it becomes writable). */
static int reopen_tree(BlockDriverState *bs, bool read_only, Error **errp)
{
    int ret = read_only ? 0 : reopen_children(bs, read_only, errp);

    if (ret == 0 && reopen_ops(bs)->read_only) {
        ret = reopen_ops(bs)->read_only(bs, read_only, errp);
    }
    if (ret < 0) {
        return ret;
    }
    bs->read_only = read_only;
    bs->open_flags = read_only ? bs->open_flags & ~BDRV_O_RDWR
                               : bs->open_flags | BDRV_O_RDWR;
    return read_only ? reopen_children(bs, read_only, errp) : 0;
}

/* Protocols below @bs switch their fds; every node records the flag. */
static int reopen_direct_tree(BlockDriverState *bs, bool direct, Error **errp)
{
    int ret;

    if (reopen_ops(bs)->direct) {
        ret = reopen_ops(bs)->direct(bs, direct, errp);
        if (ret < 0) {
            return ret;
        }
    }
    bs->open_flags = direct ? bs->open_flags | BDRV_O_NOCACHE
                            : bs->open_flags & ~BDRV_O_NOCACHE;
    for (unsigned i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        if (!(c->role & BDRV_CHILD_COW)) {
            ret = reopen_direct_tree(c->bs, direct, errp);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

/* Limits depend on the children's: refresh bottom-up. */
static void refresh_limits_tree(BlockDriverState *bs, Error **errp)
{
    for (unsigned i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        if (!(c->role & BDRV_CHILD_COW)) {
            refresh_limits_tree(c->bs, errp);
        }
    }
    bdrv_refresh_limits(bs, errp);
}

/* Staying direct is a reopen too: the reference's probes the O_DIRECT
 * alignment again, through the descriptor now in use. */
int bdrv_reopen_set_direct(BlockDriverState *bs, bool direct, Error **errp)
{
    Error *local_err = NULL;
    int ret;

    if (!(bs->open_flags & BDRV_O_NOCACHE) && !direct) {
        return 0;
    }
    bdrv_drained_begin(bs);
    ret = reopen_direct_tree(bs, direct, errp);
    if (ret < 0) {
        /* put the nodes that already switched back */
        reopen_direct_tree(bs, !direct, NULL);
    }
    refresh_limits_tree(bs, &local_err);
    bdrv_drained_end(bs);
    if (local_err) {
        error_propagate(errp, local_err);
        return ret < 0 ? ret : -EINVAL;
    }
    return ret;
}

int bdrv_reopen_set_read_only(BlockDriverState *bs, bool read_only,
                              Error **errp)
{
    int ret;

    if (bs->read_only == read_only) {
        return 0;
    }
    if (!read_only && bs->drv && bs->drv->read_only_driver) {
        error_setg(errp, "Block node is read-only");
        return -EACCES;
    }
    if (read_only && (bs->perm & BLK_PERM_WRITE)) {
        error_setg(errp, "Cannot make node '%s' read-only while it has "
                   "writers", bdrv_get_node_name(bs));
        return -EBUSY;
    }
    ret = reopen_tree(bs, read_only, errp);
    if (ret < 0) {
        return ret;
    }
    return bdrv_refresh_perms(bs, errp);
}

/* ---- reopen: driver options ---- */

/* Copies of the keys of @opts under @prefix ("file."), without it. */
static QDict *reopen_child_opts(QDict *opts, const char *prefix)
{
    size_t plen = strlen(prefix);
    QDict *sub = qdict_new();

    for (const QDictEntry *e = qdict_first(opts); e; e = qdict_next(opts, e)) {
        const char *key = qdict_entry_key(e);

        if (!strncmp(key, prefix, plen)) {
            qdict_put_obj(sub, key + plen, qobject_ref(qdict_entry_value(e)));
        }
    }
    return sub;
}

/* Removes from @opts the keys under @prefix that the child took (gone
 * from @sub).  The others stay where they were: the caller reports the
 * first option it cannot change in @opts' order. */
static void reopen_drop_taken(QDict *opts, QDict *sub, const char *prefix)
{
    g_autoptr(GPtrArray) taken = g_ptr_array_new_with_free_func(g_free);
    size_t plen = strlen(prefix);

    for (const QDictEntry *e = qdict_first(opts); e; e = qdict_next(opts, e)) {
        const char *key = qdict_entry_key(e);

        if (!strncmp(key, prefix, plen) && !qdict_haskey(sub, key + plen)) {
            g_ptr_array_add(taken, g_strdup(key));
        }
    }
    for (guint i = 0; i < taken->len; i++) {
        qdict_del(opts, g_ptr_array_index(taken, i));
    }
}

/* Top-down, as the reference reports a parent's bad option first. */
static int reopen_prepare_tree(BlockDriverState *bs, QDict *opts,
                               Error **errp)
{
    int ret;

    if (reopen_ops(bs)->prepare) {
        ret = reopen_ops(bs)->prepare(bs, opts, errp);
        if (ret < 0) {
            return ret;
        }
    }
    for (guint i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        g_autofree char *prefix = g_strdup_printf("%s.", c->name);
        g_autoptr(QDict) sub = reopen_child_opts(opts, prefix);

        if (qdict_size(sub) == 0) {
            continue;
        }
        ret = reopen_prepare_tree(c->bs, sub, errp);
        if (ret < 0) {
            return ret;
        }
        reopen_drop_taken(opts, sub, prefix);
    }
    return 0;
}

/* Commit or abort every node's staged options (drivers ignore the call
 * when they staged nothing). */
static void reopen_finish_tree(BlockDriverState *bs, bool commit)
{
    void (*fn)(BlockDriverState *) = commit ? reopen_ops(bs)->commit
                                            : reopen_ops(bs)->abort;

    if (fn) {
        fn(bs);
    }
    for (guint i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        reopen_finish_tree(c->bs, commit);
    }
}

int bdrv_reopen_prepare_opts(BlockDriverState *bs, QDict *opts, Error **errp)
{
    int ret = reopen_prepare_tree(bs, opts, errp);

    if (ret < 0) {
        /* nodes prepared before the failing one drop what they staged */
        reopen_finish_tree(bs, false);
    }
    return ret;
}

void bdrv_reopen_commit_opts(BlockDriverState *bs)
{
    bdrv_drained_begin(bs);
    reopen_finish_tree(bs, true);
    bdrv_drained_end(bs);
    /* the name carries the options that change what is read */
    bdrv_refresh_filename(bs);
}

void bdrv_reopen_abort_opts(BlockDriverState *bs)
{
    reopen_finish_tree(bs, false);
}
