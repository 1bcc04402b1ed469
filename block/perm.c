#include "config.h"
/*
 * Permissions: every edge (BdrvChild) carries what its parent needs (perm)
 * and tolerates from others (shared).  A node's cumulative perm is the OR
 * over its parents, its shared set the AND.  Changes are applied as one
 * transaction over the affected subtree: compute and check everything
 * (protocol drivers take their locks in check_perm), then commit
 * (set_perm) or roll back (abort_perm_update).
 */
#include <errno.h>
#include <string.h>
#include "block/drivers.h"

static const char *const perm_names[] = {
    "consistent read", "write", "write unchanged", "resize",
};

const char *bdrv_perm_name(uint64_t single_perm)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(perm_names); i++) {
        if (single_perm == (1ULL << i)) {
            return perm_names[i];
        }
    }
    return NULL;
}

char *bdrv_perm_names(uint64_t perm)
{
    GString *s = g_string_new("");

    for (unsigned i = 0; i < G_N_ELEMENTS(perm_names); i++) {
        if (perm & (1ULL << i)) {
            g_string_append_printf(s, "%s%s", s->len ? ", " : "",
                                   perm_names[i]);
        }
    }
    return g_string_free(s, false);
}

void bdrv_parent_link(BdrvChild *c)
{
    g_ptr_array_add(c->bs->parents, c);
}

void bdrv_parent_unlink(BdrvChild *c)
{
    g_ptr_array_remove(c->bs->parents, c);
}

/* Formats touch metadata on their own: they need a consistent, writable
 * (when we are) file child and cannot let others write or resize it. */
static void storage_child_perm(BlockDriverState *bs, BdrvChildRole role,
                               uint64_t *nperm, uint64_t *nshared)
{
    if (role & BDRV_CHILD_METADATA) {
        if (!bs->read_only) {
            *nperm |= BLK_PERM_WRITE | BLK_PERM_RESIZE;
        }
        if (!(bs->open_flags & BDRV_O_NO_IO)) {
            *nperm |= BLK_PERM_CONSISTENT_READ;
        }
        *nshared &= ~(BLK_PERM_WRITE | BLK_PERM_RESIZE);
    }
    if (role & BDRV_CHILD_DATA) {
        /* the format may rely on the size; unchanged writes may still
         * have to be real writes (copy-on-read), which may grow the file */
        *nshared &= ~BLK_PERM_RESIZE;
        if (*nperm & BLK_PERM_WRITE_UNCHANGED) {
            *nperm |= BLK_PERM_WRITE;
        }
        if (*nperm & BLK_PERM_WRITE) {
            *nperm |= BLK_PERM_RESIZE;
        }
    }
}

/* Backing files are only read; others may write them only if our users
 * allow writes to us. */
static void cow_child_perm(uint64_t perm, uint64_t shared,
                           uint64_t *nperm, uint64_t *nshared)
{
    *nperm = perm & BLK_PERM_CONSISTENT_READ;
    *nshared = (shared & BLK_PERM_WRITE) ? BLK_PERM_WRITE | BLK_PERM_RESIZE : 0;
    *nshared |= BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED;
}

void bdrv_default_child_perm(BlockDriverState *bs, BdrvChild *c,
                             BdrvChildRole role, uint64_t perm,
                             uint64_t shared, uint64_t *nperm,
                             uint64_t *nshared)
{
    if (role & BDRV_CHILD_COW) {
        cow_child_perm(perm, shared, nperm, nshared);
        return;
    }
    *nperm = perm & DEFAULT_PERM_PASSTHROUGH;
    *nshared = (shared & DEFAULT_PERM_PASSTHROUGH) | DEFAULT_PERM_UNCHANGED;
    if (!(role & BDRV_CHILD_FILTERED)) {
        storage_child_perm(bs, role, nperm, nshared);
    }
}

/* ---- the transaction ---- */

typedef struct PermUndo {
    BlockDriverState *bs;         /* a node ... */
    BdrvChild *c;                 /* ... or an edge */
    uint64_t perm, shared;
    bool checked;                 /* drv->perm->check_perm succeeded */
} PermUndo;

typedef struct PermTran {
    GPtrArray *undo;              /* PermUndo *, g_free */
} PermTran;

/* Remember a value before the transaction changes it. */
static void tran_record(PermTran *t, BlockDriverState *bs, BdrvChild *c)
{
    PermUndo *u = g_new0(PermUndo, 1);

    u->bs = bs;
    u->c = c;
    u->perm = bs ? bs->perm : c->perm;
    u->shared = bs ? bs->shared_perm : c->shared_perm;
    g_ptr_array_add(t->undo, u);
}

/* Reverse post-order of the subtree: each node after all its parents
 * inside the subtree, so cumulative values are final when we reach it. */
static void topo_visit(BlockDriverState *bs, GHashTable *seen, GSList **order)
{
    if (!g_hash_table_add(seen, bs)) {
        return;
    }
    for (unsigned i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        topo_visit(c->bs, seen, order);
    }
    *order = g_slist_prepend(*order, bs);
}

/* How a conflict message names the user of an edge. */
static char *parent_desc(BdrvChild *c)
{
    if (c->parent) {
        return g_strdup_printf("node '%s'", bdrv_get_node_name(c->parent));
    }
    return g_strdup("an unnamed block device");
}

/* @a must share everything @b takes. */
static bool a_allows_b(BdrvChild *a, BdrvChild *b, Error **errp)
{
    uint64_t missing = b->perm & ~a->shared_perm;
    g_autofree char *perms = NULL, *a_user = NULL, *b_user = NULL;
    const char *node;

    if (!missing) {
        return true;
    }
    perms = bdrv_perm_names(missing);
    a_user = parent_desc(a);
    b_user = parent_desc(b);
    node = bdrv_get_node_name(b->bs);
    error_setg(errp, "Permission conflict on node '%s': permissions '%s' are "
               "both required by %s (uses node '%s' as '%s' child) and "
               "unshared by %s (uses node '%s' as '%s' child).",
               node, perms, b_user, node, b->name, a_user, node, a->name);
    return false;
}

/* Every parent must tolerate what every other parent takes. */
static bool parents_compatible(BlockDriverState *bs, Error **errp)
{
    for (unsigned i = 0; i < bs->parents->len; i++) {
        for (unsigned j = 0; j < bs->parents->len; j++) {
            if (i != j &&
                !a_allows_b(g_ptr_array_index(bs->parents, i),
                            g_ptr_array_index(bs->parents, j), errp)) {
                return false;
            }
        }
    }
    return true;
}

/* OR of what parents take, AND of what they share. */
static void cumulative_perm(BlockDriverState *bs, uint64_t *perm,
                            uint64_t *shared)
{
    *perm = 0;
    *shared = BLK_PERM_ALL;
    for (unsigned i = 0; i < bs->parents->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->parents, i);
        *perm |= c->perm;
        *shared &= c->shared_perm;
    }
}

/* The driver's permission hooks; an all-NULL group when it has none. */
static const BlockDriverPermOps *perm_ops(BlockDriverState *bs)
{
    static const BlockDriverPermOps none;

    return bs && bs->drv && bs->drv->perm ? bs->drv->perm : &none;
}

/* What @bs needs from child edge @c.  A force-share child (a read-only
 * -U open, inherited down the graph) tolerates anything from others, so
 * another process may keep the image open read-write. */
static void child_edge_perm(BlockDriverState *bs, BdrvChild *c,
                            uint64_t *np, uint64_t *ns)
{
    if (perm_ops(bs)->child_perm) {
        perm_ops(bs)->child_perm(bs, c, c->role, bs->perm, bs->shared_perm,
                                 np, ns);
    } else {
        bdrv_default_child_perm(bs, c, c->role, bs->perm, bs->shared_perm,
                                np, ns);
    }
    if (c->bs && c->bs->force_share) {
        *ns = BLK_PERM_ALL;
    }
}

/* Tentatively give each child edge what @bs now needs from it; with
 * @dirty, the children whose edge changed are queued on it. */
static void update_child_edges(BlockDriverState *bs, PermTran *t,
                               GQueue *dirty)
{
    for (unsigned i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        uint64_t np, ns;

        child_edge_perm(bs, c, &np, &ns);
        if (dirty && (np != c->perm || ns != c->shared_perm)) {
            g_queue_push_tail(dirty, c->bs);
        }
        tran_record(t, NULL, c);
        c->perm = np;
        c->shared_perm = ns;
    }
}

/*
 * Writing without the resize permission needs a length that is a
 * multiple of the request alignment: a write to the tail would be padded
 * to whole alignment units, past the end, which is a resize.  Lengths
 * count in whole sectors, as QEMU counts them; unknown lengths pass.
 */
static int check_write_alignment(BlockDriverState *bs, uint64_t perm,
                                 Error **errp)
{
    int64_t len;

    if (!(perm & (BLK_PERM_WRITE | BLK_PERM_WRITE_UNCHANGED)) ||
        (perm & BLK_PERM_RESIZE) || !bs->drv ||
        bs->bl.request_alignment <= BDRV_SECTOR_SIZE) {
        return 0;
    }
    len = bdrv_getlength(bs);
    if (len >= 0 && len % bs->bl.request_alignment) {
        error_setg(errp, "Cannot get 'write' permission without 'resize': "
                   "Image size is not a multiple of request alignment");
        return -EPERM;
    }
    return 0;
}

/* Check phase for one node (its parents' edges are already final). */
static int check_node(BlockDriverState *bs, PermTran *t, GQueue *dirty,
                      Error **errp)
{
    uint64_t perm, shared;
    int ret;

    if (!parents_compatible(bs, errp)) {
        return -EPERM;
    }
    cumulative_perm(bs, &perm, &shared);
    /* As in QEMU, only the write permissions conflict with a read-only
     * node; resize is refused by the truncate itself. */
    if ((perm & (BLK_PERM_WRITE | BLK_PERM_WRITE_UNCHANGED)) &&
        bs->read_only) {
        error_setg(errp, "Block node is read-only");
        return -EPERM;
    }
    ret = check_write_alignment(bs, perm, errp);
    if (ret < 0) {
        return ret;
    }
    tran_record(t, bs, NULL);
    bs->perm = perm;
    bs->shared_perm = shared;
    if (perm_ops(bs)->check_perm) {
        ret = perm_ops(bs)->check_perm(bs, perm, shared, errp);
        if (ret < 0) {
            return ret;
        }
        ((PermUndo *)g_ptr_array_index(t->undo, t->undo->len - 1))->checked
            = true;
    }
    update_child_edges(bs, t, dirty);
    return 0;
}

/* Everything checked: protocols make the new state final. */
static void tran_commit(PermTran *t)
{
    for (unsigned i = 0; i < t->undo->len; i++) {
        PermUndo *u = g_ptr_array_index(t->undo, i);
        if (u->checked && perm_ops(u->bs)->set_perm) {
            perm_ops(u->bs)->set_perm(u->bs, u->bs->perm, u->bs->shared_perm);
        }
    }
}

/* Newest first: release tentative locks, restore values. */
static void tran_abort(PermTran *t)
{
    for (unsigned i = t->undo->len; i-- > 0;) {
        PermUndo *u = g_ptr_array_index(t->undo, i);
        if (u->checked && perm_ops(u->bs)->abort_perm_update) {
            perm_ops(u->bs)->abort_perm_update(u->bs);
        }
        if (u->bs) {
            u->bs->perm = u->perm;
            u->bs->shared_perm = u->shared;
        } else {
            u->c->perm = u->perm;
            u->c->shared_perm = u->shared;
        }
    }
}

/* End of a transaction: commit it, or undo it after a failure. */
static int tran_finish(PermTran *t, int ret)
{
    if (ret < 0) {
        tran_abort(t);
    } else {
        tran_commit(t);
    }
    g_ptr_array_unref(t->undo);
    return ret;
}

int bdrv_refresh_perms(BlockDriverState *bs, Error **errp)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(NULL, NULL);
    GSList *order = NULL;
    PermTran t = { .undo = g_ptr_array_new_with_free_func(g_free) };
    int ret = 0;

    topo_visit(bs, seen, &order);
    for (GSList *l = order; l && ret == 0; l = l->next) {
        ret = check_node(l->data, &t, NULL, errp);
    }
    g_slist_free(order);
    return tran_finish(&t, ret);
}

/*
 * The caller knows nothing in @bs's subtree changed since its last
 * refresh but an edge of @bs itself (a child just attached or a parent
 * detached), so only @bs and the nodes whose incoming edges then change
 * are checked, in the order the changes reach them (a node reached again
 * by a later change is checked again: the transaction keeps the first
 * values for an undo).  A chain of N images so opens and closes with
 * O(N) node checks instead of O(N^2) walks of the whole subtree.
 */
int bdrv_refresh_perms_edge(BlockDriverState *bs, Error **errp)
{
    GQueue dirty = G_QUEUE_INIT;
    PermTran t = { .undo = g_ptr_array_new_with_free_func(g_free) };
    int ret = 0;

    g_queue_push_tail(&dirty, bs);
    while (ret == 0 && !g_queue_is_empty(&dirty)) {
        ret = check_node(g_queue_pop_head(&dirty), &t, &dirty, errp);
    }
    g_queue_clear(&dirty);
    return tran_finish(&t, ret);
}

BdrvChild *bdrv_root_attach_child(BlockDriverState *bs, const char *name,
                                  BlockBackend *blk, uint64_t perm,
                                  uint64_t shared, Error **errp)
{
    BdrvChild *c = g_new0(BdrvChild, 1);

    c->bs = bs;
    c->name = g_strdup(name);
    c->parent_blk = blk;
    c->perm = perm;
    c->shared_perm = shared;
    bdrv_parent_link(c);
    if (bdrv_refresh_perms(bs, errp) < 0) {
        bdrv_parent_unlink(c);
        g_free(c->name);
        g_free(c);
        return NULL;
    }
    return c;
}

void bdrv_root_unref_child(BdrvChild *child)
{
    BlockDriverState *bs = child->bs;

    bdrv_parent_unlink(child);
    bdrv_refresh_perms(bs, NULL);
    g_free(child->name);
    g_free(child);
    bdrv_unref(bs);
}

int bdrv_child_try_set_perm(BdrvChild *c, uint64_t perm, uint64_t shared,
                            Error **errp)
{
    uint64_t old_perm = c->perm, old_shared = c->shared_perm;
    int ret;

    c->perm = perm;
    c->shared_perm = shared;
    ret = bdrv_refresh_perms(c->bs, errp);
    if (ret < 0) {
        c->perm = old_perm;
        c->shared_perm = old_shared;
        bdrv_refresh_perms(c->bs, NULL);
    }
    return ret;
}
