#include "config.h"
/*
 * Node names, as qemu-img and qemu-io print them.  A node opened from a
 * plain filename keeps it.  A node whose options a filename cannot
 * express is named "json:{...}" after the options that change what it
 * reads (the driver's "strong" options, plus driver and filename), with
 * its children's name options nested under their child names; options
 * that only tune how it runs (cache, aio, locking, node-name...) are left
 * out.  Formats take their protocol child's plain name when they have no
 * strong option of their own; filters never do; drivers with a filename
 * syntax of their own build it in a hook.  Names are recomputed
 * bottom-up, each node from its children's results.
 */
#include <string.h>
#include "block/drivers.h"

/* The reference keeps names in a 4096-byte buffer: a longer json: name is
 * cut to fit and ends in "...", a longer plain one is unusable. */
#define NAME_MAX_LEN 4095
#define NAME_CUT_MARK "..."

static bool is_protocol(const BlockDriver *drv)
{
    return drv->protocol_name || drv->kind == BDRV_KIND_PROTOCOL;
}

/* "x." in a strong list stands for every "x.<more>" key. */
static bool strong_matches(const char *key, const char *pattern)
{
    size_t len = strlen(pattern);

    if (len && pattern[len - 1] == '.') {
        return !strncmp(key, pattern, len);
    }
    return !strcmp(key, pattern);
}

/* Copies the options of @from matching @pattern into @to; true if any.
 * Keys sharing a hash bucket keep their order: a node's options are a
 * copy of what it was opened with (one reversal), the reference copies
 * the originals (the same reversal), so copying in reverse matches it. */
static bool copy_matching(QDict *to, const QDict *from, const char *pattern)
{
    g_autoptr(GPtrArray) hits = g_ptr_array_new();

    for (const QDictEntry *e = from ? qdict_first(from) : NULL; e;
         e = qdict_next(from, e)) {
        if (strong_matches(qdict_entry_key(e), pattern)) {
            g_ptr_array_add(hits, (gpointer)e);
        }
    }
    for (guint i = hits->len; i-- > 0;) {
        const QDictEntry *e = g_ptr_array_index(hits, i);
        qdict_put_obj(to, qdict_entry_key(e),
                      qobject_ref(qdict_entry_value(e)));
    }
    return hits->len > 0;
}

/* driver, filename and the driver's strong options, as they were given
 * (strings from the command line, typed values from JSON).  True if a
 * strong option is set: then only a json: name describes the node. */
static bool put_own_options(QDict *full, BlockDriverState *bs)
{
    const BlockDriverNamingOps *naming = bs->drv->naming;
    bool strong = false;

    qdict_put_str(full, "driver", bs->drv->format_name);
    copy_matching(full, bs->options, "filename");
    for (const char *const *p = naming ? naming->strong_opts : NULL;
         p && *p; p++) {
        strong |= copy_matching(full, bs->options, *p);
    }
    return strong;
}

/* Did the user choose the backing file instead of the image (options,
 * a node reference, "backing": null)?  Then only a json: name opens the
 * same graph.  Without I/O (qemu-img info) the backing file changes
 * nothing, and the reference pretends it was not overridden. */
static bool backing_overridden(BlockDriverState *bs)
{
    const char *autob = bs->auto_backing_file ? bs->auto_backing_file : "";

    if (bs->open_flags & BDRV_O_NO_IO) {
        return false;
    }
    if (bs->backing) {
        return strcmp(autob, bdrv_get_filename(bs->backing->bs)) != 0;
    }
    return *autob != '\0';
}

/* Children's name options under their child names, newest child first
 * (the reference's list order).  The backing file only when the user
 * overrode it (else the image names its own); "backing": null when the
 * user refused it. */
static void put_children(QDict *full, BlockDriverState *bs, bool overridden)
{
    const BlockDriverNamingOps *naming = bs->drv->naming;

    if (naming && naming->gather_children) {
        naming->gather_children(bs, full);
        return;
    }
    for (guint i = bs->children->len; i-- > 0;) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        QDict *opts = c->bs->full_options;

        if (c == bs->backing && !overridden) {
            continue;
        }
        qdict_put_obj(full, c->name,
                      opts ? qobject_ref(QOBJECT(opts)) : QOBJECT(qdict_new()));
    }
    if (overridden && !bs->backing) {
        qdict_put_obj(full, "backing", QOBJECT(qnull()));
    }
}

/* A format without strong options opens the same graph from its
 * protocol child's plain name (probing finds it again); a filter cannot
 * be probed, so it has no plain name of its own. */
static char *inherited_name(BlockDriverState *bs, BdrvChild *c, bool strong)
{
    const char *name = c->bs->exact_filename;

    if (strong || bs->drv->kind == BDRV_KIND_FILTER || !name || !*name ||
        !is_protocol(c->bs->drv)) {
        return NULL;
    }
    return g_strdup(name);
}

/* The node's plain name or NULL.  Protocols without a hook keep the
 * filename they were opened with. */
static char *plain_name(BlockDriverState *bs, QDict *full, bool strong)
{
    BdrvChild *primary = bdrv_child_by_role(bs, BDRV_CHILD_PRIMARY);
    char *name;

    if (bs->drv->naming && bs->drv->naming->plain_filename) {
        name = bs->drv->naming->plain_filename(bs, full);
    } else if (primary) {
        name = inherited_name(bs, primary, strong);
    } else {
        name = g_strdup(bs->exact_filename);
    }
    if (name && (!*name || strlen(name) > NAME_MAX_LEN)) {
        g_clear_pointer(&name, g_free);
    }
    return name;
}

/* "json:" and the compact JSON of @full, cut to the reference's limit. */
static char *json_name(QDict *full)
{
    g_autofree char *json = qobject_to_json_str(QOBJECT(full));
    char *name = g_strdup_printf("json:%s", json);

    if (strlen(name) > NAME_MAX_LEN) {
        strcpy(name + NAME_MAX_LEN - strlen(NAME_CUT_MARK), NAME_CUT_MARK);
    }
    return name;
}

void bdrv_refresh_filename(BlockDriverState *bs)
{
    if (!bs || !bs->drv) {
        return;
    }
    for (guint i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        bdrv_refresh_filename(c->bs);
    }
    bdrv_refresh_filename_node(bs);
}

void bdrv_refresh_filename_node(BlockDriverState *bs)
{
    QDict *full;
    char *exact;
    bool strong, overridden;

    if (!bs || !bs->drv) {
        return;
    }
    full = qdict_new();
    overridden = backing_overridden(bs);
    strong = put_own_options(full, bs) || overridden;
    put_children(full, bs, overridden);
    qobject_unref(bs->full_options);
    bs->full_options = full;

    exact = plain_name(bs, full, strong);
    g_free(bs->exact_filename);
    bs->exact_filename = exact;
    g_free(bs->filename);
    bs->filename = exact ? g_strdup(exact) : json_name(full);
}
