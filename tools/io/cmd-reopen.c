#include "config.h"
/*
 * strata-io: reopen.  Read-only/read-write switches go through the core;
 * cache mode, discard and detect-zeroes are node flags changed in place;
 * drivers take the options they can change (raw's offset/size) as a
 * prepare/commit/abort transaction; any other option may only be
 * "changed" to its current value.  A failure anywhere puts back what the
 * earlier steps changed, as the reference's single transaction does.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/io/io.h"

typedef struct ReopenOpts {
    int flags;
    bool writethrough, has_rw, has_cache;
    QDict *opts;
} ReopenOpts;

/* What a failed reopen must give back: the reference's reopen is one
 * transaction, so an error leaves every node as it was. */
typedef struct ReopenNodeState {
    BlockDriverState *bs;
    int open_flags;
    DetectZeroes detect_zeroes;
} ReopenNodeState;

typedef struct ReopenSaved {
    GArray *nodes;              /* of ReopenNodeState */
    uint64_t perm, shared;
    bool read_only, direct;
} ReopenSaved;

static void reopen_help(void)
{
    printf(
"\n"
" Changes the open options of an already opened image\n"
"\n"
" Example:\n"
" 'reopen -o lazy-refcounts=on' - activates lazy refcount writeback on a qcow2 image\n"
"\n"
" -r, -- Reopen the image read-only\n"
" -w, -- Reopen the image read-write\n"
" -c, -- Change the cache mode to the given value\n"
" -o, -- Changes block driver options (cf. 'open' command)\n"
"\n");
}

static int reopen_opt(int c, const char *arg, ReopenOpts *o)
{
    switch (c) {
    case 'c':
        o->has_cache = true;
        o->flags &= ~(BDRV_O_NOCACHE | BDRV_O_NO_FLUSH);
        if (bdrv_parse_cache_mode(arg, &o->flags, &o->writethrough) < 0) {
            error_report("Invalid cache option: %s", arg);
            return -EINVAL;
        }
        return 0;
    case 'o':
        if (!o->opts) {
            o->opts = qdict_new();
        }
        return tool_opts_parse_into(o->opts, arg) ? 0 : -EINVAL;
    case 'r': case 'w':
        if (o->has_rw) {
            error_report("Only one -r/-w option may be given");
            return -EINVAL;
        }
        o->has_rw = true;
        o->flags = c == 'r' ? o->flags & ~BDRV_O_RDWR : o->flags | BDRV_O_RDWR;
        return 0;
    default:
        io_command_usage(io_find_command("reopen"));
        return -EINVAL;
    }
}

static BlockDriverState *reopen_child(BlockDriverState *bs, const char *name)
{
    const char *cname;
    BlockDriverState *c;

    for (unsigned i = 0; (c = bdrv_child_at(bs, i, &cname)); i++) {
        if (!strcmp(cname, name)) {
            return c;
        }
    }
    return NULL;
}

static int reopen_bool(const char *key, const char *v, bool *out,
                       Error **errp)
{
    if (!strcmp(v, "on") || !strcmp(v, "true")) {
        *out = true;
    } else if (!strcmp(v, "off") || !strcmp(v, "false")) {
        *out = false;
    } else {
        error_setg(errp, "Parameter '%s' expects 'on' or 'off'", key);
        return -EINVAL;
    }
    return 0;
}

static int reopen_set_flag(BlockDriverState *bs, const char *key,
                           const char *v, int flag, Error **errp)
{
    int flags = bdrv_get_flags(bs);
    bool on;

    if (reopen_bool(key, v, &on, errp) < 0) {
        return -EINVAL;
    }
    flags = on ? flags | flag : flags & ~flag;
    bdrv_reopen_set_flags(bs, flags, bdrv_get_detect_zeroes(bs));
    return 0;
}

/* A detect-zeroes value, or -1. */
static int reopen_parse_detect_zeroes(const char *v)
{
    if (!strcmp(v, "off")) {
        return DETECT_ZEROES_OFF;
    } else if (!strcmp(v, "on")) {
        return DETECT_ZEROES_ON;
    } else if (!strcmp(v, "unmap")) {
        return DETECT_ZEROES_UNMAP;
    }
    return -1;
}

static int reopen_detect_zeroes(BlockDriverState *bs, const char *v,
                                Error **errp)
{
    int dz = reopen_parse_detect_zeroes(v);

    if (dz < 0) {
        error_setg(errp, "invalid parameter value: %s", v);
        return -EINVAL;
    }
    bdrv_reopen_set_flags(bs, bdrv_get_flags(bs), dz);
    return 0;
}

static int reopen_discard(BlockDriverState *bs, const char *v, Error **errp)
{
    int flags = bdrv_get_flags(bs) & ~BDRV_O_UNMAP;

    if (bdrv_parse_discard_flags(v, &flags) < 0) {
        error_setg(errp, "Invalid discard option");
        return -EINVAL;
    }
    bdrv_reopen_set_flags(bs, flags, bdrv_get_detect_zeroes(bs));
    return 0;
}

/* Options that cannot change: only their current value is accepted. */
static int reopen_same_value(BlockDriverState *bs, const char *key,
                             const char *v, Error **errp)
{
    QDict *opts = bdrv_get_options(bs);
    const char *cur;

    if (!strcmp(key, "driver")) {
        cur = bdrv_get_format_name(bs);
    } else {
        cur = opts ? qdict_get_try_str(opts, key) : NULL;
    }
    if (!cur || strcmp(cur, v)) {
        error_setg(errp, "Cannot change the option '%s'", key);
        return -EINVAL;
    }
    return 0;
}

/* One option of @bs (child options carry their child's name first). */
static int reopen_one(BlockDriverState *bs, const char *key, const char *v,
                      Error **errp)
{
    const char *dot = strchr(key, '.');

    if (dot && strncmp(key, "cache.", 6)) {
        g_autofree char *child = g_strndup(key, dot - key);
        BlockDriverState *cbs = reopen_child(bs, child);

        if (cbs) {
            return reopen_one(cbs, dot + 1, v, errp);
        }
    }
    if (!strcmp(key, "detect-zeroes")) {
        return reopen_detect_zeroes(bs, v, errp);
    }
    if (!strcmp(key, "discard")) {
        return reopen_discard(bs, v, errp);
    }
    if (!strcmp(key, "cache.no-flush")) {
        return reopen_set_flag(bs, key, v, BDRV_O_NO_FLUSH, errp);
    }
    if (!strcmp(key, "cache.direct")) {
        bool on;
        int ret = reopen_bool(key, v, &on, errp);
        return ret < 0 ? ret : bdrv_reopen_set_direct(bs, on, errp);
    }
    if (!strcmp(key, "auto-read-only")) {
        /* Only matters when opening read-write fails, which a reopen of
         * an open node never retries: accepted, with no effect. */
        bool on;
        return reopen_bool(key, v, &on, errp);
    }
    return reopen_same_value(bs, key, v, errp);
}

static int reopen_check_opts(BlockDriverState *bs, QDict *opts, Error **errp)
{
    for (const QDictEntry *e = qdict_first(opts); e; e = qdict_next(opts, e)) {
        QString *v = qobject_to_qstring(qdict_entry_value(e));
        const char *key = qdict_entry_key(e);

        if (!strcmp(key, "read-only")) {
            continue;
        }
        if (reopen_one(bs, key, v ? qstring_get_str(v) : "", errp) < 0) {
            return -EINVAL;
        }
    }
    return 0;
}

/* detect-zeroes=unmap needs discard=unmap, the node's values where the
 * options leave them (the reference checks the merged options). */
static int reopen_check_unmap(BlockDriverState *bs, QDict *opts, int flags,
                              Error **errp)
{
    const char *dz = qdict_get_try_str(opts, "detect-zeroes");
    bool unmap = qdict_haskey(opts, "discard") ? flags & BDRV_O_UNMAP
                 : bdrv_get_flags(bs) & BDRV_O_UNMAP;

    if ((dz ? reopen_parse_detect_zeroes(dz)
            : (int)bdrv_get_detect_zeroes(bs)) == DETECT_ZEROES_UNMAP &&
        !unmap) {
        error_setg(errp, "setting detect-zeroes to unmap is not allowed "
                   "without setting discard operation to unmap");
        return -EINVAL;
    }
    return 0;
}

/* The reference checks the values of the node's generic options, in this
 * order, before its driver sees any option. */
static int reopen_check_generic(BlockDriverState *bs, QDict *opts,
                                Error **errp)
{
    static const char *const bools[] = {
        "cache.no-flush", "auto-read-only", "read-only", "cache.direct", NULL
    };
    const char *v;
    int flags = 0;
    bool on;

    for (const char *const *k = bools; *k; k++) {
        v = qdict_get_try_str(opts, *k);
        if (v && reopen_bool(*k, v, &on, errp) < 0) {
            return -EINVAL;
        }
    }
    v = qdict_get_try_str(opts, "discard");
    if (v && bdrv_parse_discard_flags(v, &flags) < 0) {
        error_setg(errp, "Invalid discard option");
        return -EINVAL;
    }
    v = qdict_get_try_str(opts, "detect-zeroes");
    if (v && reopen_parse_detect_zeroes(v) < 0) {
        error_setg(errp, "invalid parameter value: %s", v);
        return -EINVAL;
    }
    return reopen_check_unmap(bs, opts, flags, errp);
}

/* "-o read-only=..." without -r/-w: the backend keeps its permissions. */
static int reopen_ro_option(BlockBackend *blk, ReopenOpts *o, Error **errp)
{
    const char *v = qdict_get_try_str(o->opts, "read-only");
    BlockDriverState *bs = blk_bs(blk);
    uint64_t perm, shared;
    bool ro;

    if (reopen_bool("read-only", v, &ro, errp) < 0) {
        return -EINVAL;
    }
    if (o->has_rw) {
        error_setg(errp, "Cannot set both -r/-w and 'read-only'");
        return -EINVAL;
    }
    blk_get_perm(blk, &perm, &shared);
    if (ro && (perm & BLK_PERM_WRITE)) {
        error_setg(errp, "Read-only block node '%s' cannot support "
                   "read-write users", bdrv_get_node_name(bs));
        return -EINVAL;
    }
    return bdrv_is_read_only(bs) == ro ? 0 :
           bdrv_reopen_set_read_only(bs, ro, errp);
}

static int reopen_set_rw(BlockBackend *blk, bool rw, Error **errp)
{
    BlockDriverState *bs = blk_bs(blk);
    uint64_t perm, shared;
    int ret;

    blk_get_perm(blk, &perm, &shared);
    if (!rw) {
        /* resize too: a later truncate then asks for it again and gets
         * the reference's "Block node is read-only" */
        blk_set_perm(blk, perm & ~(BLK_PERM_WRITE | BLK_PERM_WRITE_UNCHANGED |
                                   BLK_PERM_RESIZE), shared, NULL);
    }
    if (rw == !bdrv_is_read_only(bs)) {
        return 0;
    }
    ret = bdrv_reopen_set_read_only(bs, !rw, errp);
    if (ret < 0 && !rw) {
        blk_set_perm(blk, perm, shared, NULL);
    }
    return ret;
}

static void reopen_save_tree(GArray *nodes, BlockDriverState *bs)
{
    ReopenNodeState st = { bs, bdrv_get_flags(bs),
                           bdrv_get_detect_zeroes(bs) };
    BlockDriverState *c;

    g_array_append_val(nodes, st);
    for (unsigned i = 0; (c = bdrv_child_at(bs, i, NULL)); i++) {
        reopen_save_tree(nodes, c);
    }
}

static void reopen_save(BlockBackend *blk, ReopenSaved *sv)
{
    BlockDriverState *bs = blk_bs(blk);

    sv->nodes = g_array_new(false, false, sizeof(ReopenNodeState));
    reopen_save_tree(sv->nodes, bs);
    blk_get_perm(blk, &sv->perm, &sv->shared);
    sv->read_only = bdrv_is_read_only(bs);
    sv->direct = bdrv_get_flags(bs) & BDRV_O_NOCACHE;
}

/* Undo what the steps before a failure changed; best effort, errors of
 * the way back are not reported (the first error is what counts). */
static void reopen_restore(BlockBackend *blk, ReopenSaved *sv)
{
    BlockDriverState *bs = blk_bs(blk);

    bdrv_reopen_set_direct(bs, sv->direct, NULL);
    if (bdrv_is_read_only(bs) != sv->read_only) {
        bdrv_reopen_set_read_only(bs, sv->read_only, NULL);
    }
    blk_set_perm(blk, sv->perm, sv->shared, NULL);
    for (guint i = 0; i < sv->nodes->len; i++) {
        ReopenNodeState *st = &g_array_index(sv->nodes, ReopenNodeState, i);

        /* direct I/O and read-only were switched back through the core
         * above; bdrv_reopen_set_flags() keeps them */
        bdrv_reopen_set_flags(st->bs, st->open_flags, st->detect_zeroes);
    }
}

static int reopen_apply(BlockBackend *blk, ReopenOpts *o, Error **errp)
{
    BlockDriverState *bs = blk_bs(blk);
    ReopenSaved sv;
    int ret = 0;

    /* Drivers take the options they can change (raw's offset/size) before
     * anything else changes: the reference reports a bad window before a
     * read-only conflict, and a later failure must keep the old window. */
    if (o->opts) {
        ret = reopen_check_generic(bs, o->opts, errp);
        if (ret == 0) {
            ret = bdrv_reopen_prepare_opts(bs, o->opts, errp);
        }
        if (ret < 0) {
            return ret;
        }
    }
    /* Options are all checked before the read-only switch: the
     * reference reports an option it cannot change before a permission
     * conflict.  -c never meets cache.* options (refused earlier). */
    reopen_save(blk, &sv);
    ret = bdrv_reopen_set_direct(bs, o->flags & BDRV_O_NOCACHE, errp);
    if (ret == 0 && o->opts) {
        ret = reopen_check_opts(bs, o->opts, errp);
    }
    if (ret == 0 && o->opts && qdict_haskey(o->opts, "read-only")) {
        ret = reopen_ro_option(blk, o, errp);
    } else if (ret == 0) {
        ret = reopen_set_rw(blk, o->flags & BDRV_O_RDWR, errp);
    }
    if (ret == 0) {
        bdrv_reopen_set_flags(bs, (bdrv_get_flags(bs) & ~BDRV_O_NO_FLUSH) |
                                  (o->flags & BDRV_O_NO_FLUSH),
                              bdrv_get_detect_zeroes(bs));
    }
    if (ret < 0) {
        reopen_restore(blk, &sv);
    }
    g_array_free(sv.nodes, true);
    if (o->opts) {
        if (ret == 0) {
            bdrv_reopen_commit_opts(bs);
        } else {
            bdrv_reopen_abort_opts(bs);
        }
    }
    return ret;
}

/* Conflicts between the command's switches and -o, which the reference
 * reports before it looks at any option's value. */
static int reopen_check_conflicts(ReopenOpts *o)
{
    if (!o->opts) {
        return 0;
    }
    if (o->has_rw && qdict_haskey(o->opts, "read-only")) {
        error_report("Cannot set both -r/-w and 'read-only'");
        return -EINVAL;
    }
    if (o->has_cache && (qdict_haskey(o->opts, "cache.direct") ||
                         qdict_haskey(o->opts, "cache.no-flush"))) {
        error_report("Cannot set both -c and the cache options");
        return -EINVAL;
    }
    return 0;
}

static int reopen_f(BlockBackend *blk, int argc, char **argv)
{
    BlockDriverState *bs = blk_bs(blk);
    ReopenOpts o = { 0 };
    Error *err = NULL;
    int c, ret = 0;

    o.flags = bdrv_is_read_only(bs) ? bdrv_get_flags(bs) & ~BDRV_O_RDWR
                                    : bdrv_get_flags(bs) | BDRV_O_RDWR;
    o.writethrough = !blk_enable_write_cache(blk);
    while (ret == 0 && (c = getopt(argc, argv, "c:o:rw")) != -1) {
        ret = reopen_opt(c, optarg, &o);
    }
    if (ret == 0 && optind != argc) {
        io_command_usage(io_find_command("reopen"));
        ret = -EINVAL;
    }
    if (ret == 0) {
        ret = reopen_check_conflicts(&o);
    }
    if (ret == 0) {
        io_aio_drain();
        ret = reopen_apply(blk, &o, &err);
        if (ret < 0) {
            error_report_err(err);
        } else {
            blk_set_enable_write_cache(blk, !o.writethrough);
            bdrv_forget_lengths(bs);   /* the files are looked at again */
        }
    }
    qobject_unref(o.opts);
    return ret;
}

const IoCmd io_reopen_cmds[] = {
    { "reopen", NULL, reopen_f, 0, -1, 0, 0,
      "[(-r|-w)] [-c cache] [-o options]",
      "reopens an image with new options", reopen_help },
    { NULL },
};
