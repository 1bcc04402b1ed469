#include "config.h"
/*
 * Backing files, the core's side.  A format's open only records the
 * backing file's name and format from its header (bs->backing_file,
 * bs->backing_format).  Here, after that open, the name is resolved
 * against the overlay's directory, the backing node is opened (the
 * options "backing.*" or a node reference "backing": "name" may stand in
 * for it) and attached as the "backing" child, with the reference's rules
 * and messages.  Also: loop and depth checks of a chain being opened, and
 * recording a new backing file in an image.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include "block/drivers.h"

const char *bdrv_get_backing_filename(const BlockDriverState *bs)
{
    return bs->backing_file && *bs->backing_file ? bs->backing_file : NULL;
}

const char *bdrv_get_backing_format(const BlockDriverState *bs)
{
    return bs->backing_format && *bs->backing_format ? bs->backing_format
                                                      : NULL;
}

/* "proto:rest": a colon before any slash names a protocol. */
static bool path_has_protocol(const char *path)
{
    return path[strcspn(path, ":/")] == ':';
}

/* The directory part of @name with its slash ("" when there is none); a
 * protocol prefix counts as one ("file:"), as the reference combines
 * paths, but a colon after a slash is part of a file name. */
static char *dir_prefix(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *colon = strchr(name, ':');
    const char *end = slash ? slash + 1 : name;

    if (colon && path_has_protocol(name) && colon + 1 > end) {
        end = colon + 1;
    }
    return g_strndup(name, end - name);
}

/* The node whose plain name places @bs: down the primary children (the
 * format's file, a filter's filtered child) to the protocol. */
static BlockDriverState *placing_node(BlockDriverState *bs)
{
    BdrvChild *primary;

    while ((primary = bdrv_child_by_role(bs, BDRV_CHILD_PRIMARY))) {
        bs = primary->bs;
    }
    return bs;
}

/* The directory a relative name in @bs's header is relative to. */
static char *node_dirname(BlockDriverState *bs, Error **errp)
{
    BlockDriverState *leaf = placing_node(bs);

    if (!leaf->exact_filename || !*leaf->exact_filename) {
        error_setg(errp, "Cannot generate a base directory for %s nodes",
                   leaf->drv ? leaf->drv->format_name : "ejected");
        return NULL;
    }
    return dir_prefix(leaf->exact_filename);
}

char *bdrv_get_full_backing_filename(BlockDriverState *bs, Error **errp)
{
    const char *name = bdrv_get_backing_filename(bs);
    g_autofree char *dir = NULL;

    if (!name) {
        return NULL;
    }
    if (path_has_protocol(name) || name[0] == '/') {
        return g_strdup(name);
    }
    dir = node_dirname(bs, errp);
    return dir ? g_strconcat(dir, name, NULL) : NULL;
}

char *bdrv_combine_backing_name(const char *backed, const char *backing,
                                Error **errp)
{
    g_autofree char *dir = NULL;

    if (!*backing || path_has_protocol(backing) || backing[0] == '/') {
        return g_strdup(backing);
    }
    if (!*backed || !strncmp(backed, "json:", 5)) {
        error_setg(errp, "Cannot use relative backing file names for '%s'",
                   backed);
        return NULL;
    }
    dir = dir_prefix(backed);
    return g_strconcat(dir, backing, NULL);
}

/* ---- the chain being opened: loops and depth ---- */

/* The device and inode of the file @bs reads, stat'ed once per node (a
 * chain of N images is checked against N overlays each). */
static bool storage_id(BlockDriverState *bs)
{
    struct stat st;

    if (bs->storage_id_state == 0) {
        bs->storage_id_state = -1;
        if (stat(bdrv_get_filename(placing_node(bs)), &st) == 0) {
            bs->storage_id_state = 1;
            bs->storage_dev = st.st_dev;
            bs->storage_ino = st.st_ino;
        }
    }
    return bs->storage_id_state > 0;
}

/* Do two nodes read the same file?  Their protocol nodes' files are
 * compared by device and inode, other protocols by name. */
static bool same_storage(BlockDriverState *a, BlockDriverState *b)
{
    if (storage_id(a) && storage_id(b)) {
        return a->storage_dev == b->storage_dev &&
               a->storage_ino == b->storage_ino;
    }
    return !strcmp(bdrv_get_filename(placing_node(a)),
                   bdrv_get_filename(placing_node(b)));
}

/* Opening the backing file of @bs, itself a backing file being opened:
 * a file that is one of the overlays above would open without end (the
 * reference's qemu-io does, until memory runs out), and so would a
 * chain that never ends. */
static int check_chain(BlockDriverState *bs, Error **errp)
{
    int images = 1;

    for (BlockDriverState *p = bs->backing_of; p; p = p->backing_of) {
        if (same_storage(bs, p)) {
            error_setg(errp, "Backing file '%s' creates an infinite loop.",
                       bdrv_get_filename(bs));
            return -ELOOP;
        }
        images++;
    }
    if (images >= BDRV_BACKING_CHAIN_MAX) {
        error_setg(errp, "Backing chain is too long (more than %d images)",
                   BDRV_BACKING_CHAIN_MAX);
        return -EMLINK;
    }
    return 0;
}

/* ---- opening ---- */

void bdrv_backing_take_null(QDict *options, int *flags)
{
    QObject *v = qdict_get(options, "backing");
    const char *s = qdict_get_try_str(options, "backing");

    if (!v || (s && *s) || (!s && qobject_type(v) != QTYPE_QNULL)) {
        return;
    }
    if (s) {
        warn_report("Use of \"backing\": \"\" is deprecated; use "
                    "\"backing\": null instead");
    }
    *flags |= BDRV_O_NO_BACKING;
    qdict_del(options, "backing");
}

typedef struct BackingOpen {
    char *ref;               /* "backing": "node-name" */
    QDict *opts;             /* "backing.*" without the prefix */
    char *filename;          /* resolved name from the header, or NULL */
    bool implicit;           /* opened as the header says, no options */
} BackingOpen;

static void backing_open_clear(BackingOpen *o)
{
    g_free(o->ref);
    qobject_unref(o->opts);
    g_free(o->filename);
}

/* What to open, from @options and the header; false with *ret set when
 * there is nothing to open (0) or the name cannot be resolved. */
static bool backing_plan(BlockDriverState *bs, QDict *options, BackingOpen *o,
                         int *ret, Error **errp)
{
    Error *local_err = NULL;

    *ret = 0;
    o->ref = g_strdup(qdict_get_try_str(options, "backing"));
    if (o->ref) {
        qdict_del(options, "backing");
    }
    qdict_extract_subqdict(options, &o->opts, "backing.");
    if (o->ref || qdict_haskey(o->opts, "file.filename")) {
        return true;
    }
    if (!bdrv_get_backing_filename(bs) && !qdict_size(o->opts)) {
        return false;
    }
    o->implicit = qdict_size(o->opts) == 0;
    o->filename = bdrv_get_full_backing_filename(bs, &local_err);
    if (local_err) {
        error_propagate(errp, local_err);
        *ret = -EINVAL;
        return false;
    }
    return true;
}

/* Opens the node the plan names, read-only, as a backing file of @bs. */
static BlockDriverState *backing_node(BlockDriverState *bs, BackingOpen *o,
                                      Error **errp)
{
    QDict *opts = o->opts;

    o->opts = NULL;
    if (o->ref) {
        BlockDriverState *ref = bdrv_lookup_reference(o->ref, opts, errp);
        qobject_unref(opts);
        return ref;
    }
    if (bdrv_get_backing_format(bs) && !qdict_haskey(opts, "driver")) {
        qdict_put_str(opts, "driver", bdrv_get_backing_format(bs));
    }
    return bdrv_open_inherit(o->filename, opts,
                             bdrv_child_flags(bs, BDRV_CHILD_COW), bs,
                             BDRV_CHILD_COW, errp);
}

/* The role of the backing edge: filters over their backing file pass
 * through to it. */
static BdrvChildRole backing_role(BlockDriverState *bs)
{
    if (bs->drv->is_filter_for_backing) {
        return BDRV_CHILD_DATA | BDRV_CHILD_FILTERED | BDRV_CHILD_PRIMARY;
    }
    return BDRV_CHILD_COW;
}

int bdrv_open_backing(BlockDriverState *bs, QDict *options, int flags,
                      Error **errp)
{
    BackingOpen o = { 0 };
    Error *local_err = NULL;
    BlockDriverState *backing;
    int ret;

    g_free(bs->auto_backing_file);
    bs->auto_backing_file = g_strdup(bs->backing_file);
    if (bs->backing) {
        return 0;           /* the driver opened one itself */
    }
    if ((flags & BDRV_O_NO_BACKING) ||
        !backing_plan(bs, options, &o, &ret, errp)) {
        backing_open_clear(&o);
        return (flags & BDRV_O_NO_BACKING) ? 0 : ret;
    }
    if (!bs->drv->supports_backing) {
        error_setg(errp, "Driver doesn't support backing files");
        backing_open_clear(&o);
        return -EINVAL;
    }
    ret = check_chain(bs, errp);
    backing = ret < 0 ? NULL : backing_node(bs, &o, &local_err);
    if (!backing) {
        if (ret == 0) {
            error_propagate_prepend(errp, local_err,
                                    "Could not open backing file: ");
        }
        backing_open_clear(&o);
        return ret < 0 ? ret : -EINVAL;
    }
    if (o.implicit) {
        g_free(bs->auto_backing_file);
        bs->auto_backing_file = g_strdup(bdrv_get_filename(backing));
    }
    backing_open_clear(&o);
    return bdrv_attach_child(bs, backing, "backing", backing_role(bs),
                             errp) ? 0 : -EINVAL;
}

/* ---- recording a new backing file ---- */

int bdrv_change_backing_file(BlockDriverState *bs, const char *file,
                             const char *fmt, Error **errp)
{
    const BlockDriverBackingOps *ops = bs->drv ? bs->drv->backing : NULL;
    int ret = -ENOTSUP;

    if (ops && ops->change_backing_file) {
        ret = ops->change_backing_file(bs, file, fmt);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not change the backing file to "
                         "'%s'", file ? file : "");
        return ret;
    }
    g_free(bs->backing_file);
    bs->backing_file = g_strdup(file);
    g_free(bs->backing_format);
    bs->backing_format = g_strdup(fmt);
    g_free(bs->auto_backing_file);
    bs->auto_backing_file = g_strdup(file);
    bdrv_refresh_filename(bs);
    return 0;
}

typedef struct MakeEmpty {
    BlockDriverState *bs;
    int ret;
} MakeEmpty;

static void coroutine_fn make_empty_entry(void *opaque)
{
    MakeEmpty *m = opaque;

    m->ret = m->bs->drv->backing->make_empty(m->bs);
}

bool bdrv_can_make_empty(const BlockDriverState *bs)
{
    return bs->drv && bs->drv->backing && bs->drv->backing->make_empty;
}

int bdrv_make_empty(BlockDriverState *bs)
{
    MakeEmpty m = { .bs = bs, .ret = -ENOTSUP };

    if (!bdrv_can_make_empty(bs)) {
        return -ENOTSUP;
    }
    bdrv_drained_begin(bs);
    co_run_sync(make_empty_entry, &m);
    bdrv_drained_end(bs);
    return m.ret;
}
