#include "config.h"
/*
 * Internal snapshots and VM state (block.h): synchronous entry points for
 * tools, each running the driver's coroutine_fn on the node below any
 * filters, and the messages the reference wraps driver failures in.
 */
#include <errno.h>
#include <string.h>
#include "block/drivers.h"

typedef enum {
    SN_OP_CREATE, SN_OP_GOTO, SN_OP_DELETE, SN_OP_LOAD_TMP, SN_OP_SAVE_VM,
    SN_OP_LOAD_VM,
} SnapshotOp;

typedef struct SnapshotCo {
    SnapshotOp op;
    BlockDriverState *bs;
    BdrvSnapshotInfo *sn;
    const char *id, *name;
    IOVector qiov;
    int64_t pos;
    Error **errp;
    int ret;
} SnapshotCo;

/* The node whose driver keeps the snapshots: filters pass through. */
static BlockDriverState *snapshot_node(BlockDriverState *bs)
{
    bs = bdrv_skip_filters(bs);
    return bs && bs->drv && bs->drv->snapshot ? bs : NULL;
}

static void coroutine_fn snapshot_entry(void *opaque)
{
    SnapshotCo *c = opaque;
    const BlockDriverSnapshotOps *ops = c->bs->drv->snapshot;

    switch (c->op) {
    case SN_OP_CREATE:
        c->ret = ops->co_create(c->bs, c->sn);
        break;
    case SN_OP_GOTO:
        c->ret = ops->co_goto(c->bs, c->id, c->errp);
        break;
    case SN_OP_DELETE:
        c->ret = ops->co_delete(c->bs, c->id, c->name, c->errp);
        break;
    case SN_OP_LOAD_TMP:
        c->ret = ops->co_load_tmp(c->bs, c->id, c->name, c->errp);
        break;
    case SN_OP_SAVE_VM:
        c->ret = ops->co_save_vmstate(c->bs, &c->qiov, c->pos);
        break;
    case SN_OP_LOAD_VM:
        c->ret = ops->co_load_vmstate(c->bs, &c->qiov, c->pos);
        break;
    }
}

/* Run @c->op on the snapshot node of @bs, -ENOTSUP without one. */
static int snapshot_run(SnapshotCo *c, BlockDriverState *bs)
{
    c->bs = snapshot_node(bs);
    if (!c->bs) {
        return -ENOTSUP;
    }
    co_run_sync(snapshot_entry, c);
    return c->ret;
}

bool bdrv_can_snapshot(BlockDriverState *bs)
{
    return snapshot_node(bs) != NULL;
}

int bdrv_snapshot_list(BlockDriverState *bs, BdrvSnapshotInfo **tab)
{
    BlockDriverState *node = snapshot_node(bs);

    *tab = NULL;
    return node ? node->drv->snapshot->list(node, tab) : -ENOTSUP;
}

int bdrv_snapshot_find(BlockDriverState *bs, BdrvSnapshotInfo *sn,
                       const char *name)
{
    g_autofree BdrvSnapshotInfo *tab = NULL;
    int n = bdrv_snapshot_list(bs, &tab);

    for (int i = 0; i < n; i++) {
        if (!strcmp(tab[i].name, name)) {
            *sn = tab[i];
            return 0;
        }
    }
    return n < 0 ? n : -ENOENT;
}

int bdrv_snapshot_create(BlockDriverState *bs, BdrvSnapshotInfo *sn)
{
    SnapshotCo c = { .op = SN_OP_CREATE, .sn = sn };

    return snapshot_run(&c, bs);
}

int bdrv_snapshot_goto(BlockDriverState *bs, const char *id_or_name,
                       Error **errp)
{
    Error *err = NULL;
    SnapshotCo c = { .op = SN_OP_GOTO, .id = id_or_name, .errp = &err };
    int ret;

    /* as the reference: any named bitmap, enabled or not, refuses the
     * switch, before the snapshot is looked up */
    if (bdrv_dirty_bitmap_at(bs, 0)) {
        error_setg(errp, "Device has active dirty bitmaps");
        return -EBUSY;
    }
    ret = snapshot_run(&c, bs);

    if (ret < 0 && !err) {
        error_setg_errno(&err, -ret, "Failed to load snapshot");
    }
    if (err) {
        error_propagate(errp, err);
    }
    return ret;
}

int bdrv_snapshot_delete(BlockDriverState *bs, const char *id,
                         const char *name, Error **errp)
{
    SnapshotCo c = { .op = SN_OP_DELETE, .id = id, .name = name,
                     .errp = errp };
    int ret;

    if (!id && !name) {
        error_setg(errp, "snapshot_id and snapshot_name can not be both "
                   "empty");
        return -EINVAL;
    }
    ret = snapshot_run(&c, bs);
    if (ret == -ENOTSUP && !c.bs) {
        error_setg(errp, "Block format '%s' used by device '' does not "
                   "support internal snapshots", bdrv_get_format_name(bs));
    }
    return ret;
}

int bdrv_snapshot_load_tmp(BlockDriverState *bs, const char *id,
                           const char *name, Error **errp)
{
    SnapshotCo c = { .op = SN_OP_LOAD_TMP, .id = id, .name = name,
                     .errp = errp };
    int ret;

    if (!id && !name) {
        error_setg(errp, "snapshot_id and name are both NULL");
        return -EINVAL;
    }
    ret = snapshot_run(&c, bs);
    if (ret == -ENOTSUP && !c.bs) {
        error_setg(errp, "Block format '%s' used by device '' does not "
                   "support temporarily loading internal snapshots",
                   bdrv_get_format_name(bs));
    }
    return ret;
}

int bdrv_snapshot_load_tmp_by_id_or_name(BlockDriverState *bs,
                                         const char *id_or_name,
                                         Error **errp)
{
    Error *err = NULL;
    int ret = bdrv_snapshot_load_tmp(bs, id_or_name, NULL, &err);

    if (ret == -ENOENT || ret == -EINVAL) {
        error_free(err);
        err = NULL;
        ret = bdrv_snapshot_load_tmp(bs, NULL, id_or_name, &err);
    }
    if (err) {
        error_propagate(errp, err);
    }
    return ret;
}

int bdrv_save_vmstate(BlockDriverState *bs, const void *buf, int64_t pos,
                      int64_t bytes)
{
    SnapshotCo c = { .op = SN_OP_SAVE_VM, .pos = pos };

    if (pos < 0 || bytes < 0 || bytes > INT64_MAX - pos) {
        return -EINVAL;
    }
    iov_vec_init_buf(&c.qiov, (void *)buf, bytes);
    return snapshot_run(&c, bs);
}

int bdrv_load_vmstate(BlockDriverState *bs, void *buf, int64_t pos,
                      int64_t bytes)
{
    SnapshotCo c = { .op = SN_OP_LOAD_VM, .pos = pos };

    if (pos < 0 || bytes < 0 || bytes > INT64_MAX - pos) {
        return -EINVAL;
    }
    iov_vec_init_buf(&c.qiov, buf, bytes);
    return snapshot_run(&c, bs);
}
