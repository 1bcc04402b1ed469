/*
 * Debug events and breakpoints: dispatch from drivers and tools to the
 * node whose driver implements BlockDriverDebugOps (blkdebug).
 */
#include "config.h"
#include <errno.h>
#include <string.h>
#include "block/debug.h"
#include "block/driver.h"

/* Event names as users write them in blkdebug rules (QEMU-compatible). */
static const char *const event_names[BLKDBG_EVENT_MAX] = {
    [BLKDBG_L1_UPDATE] = "l1_update",
    [BLKDBG_L1_GROW_ALLOC_TABLE] = "l1_grow_alloc_table",
    [BLKDBG_L1_GROW_WRITE_TABLE] = "l1_grow_write_table",
    [BLKDBG_L1_GROW_ACTIVATE_TABLE] = "l1_grow_activate_table",
    [BLKDBG_L2_LOAD] = "l2_load",
    [BLKDBG_L2_UPDATE] = "l2_update",
    [BLKDBG_L2_UPDATE_COMPRESSED] = "l2_update_compressed",
    [BLKDBG_L2_ALLOC_COW_READ] = "l2_alloc_cow_read",
    [BLKDBG_L2_ALLOC_WRITE] = "l2_alloc_write",
    [BLKDBG_READ_AIO] = "read_aio",
    [BLKDBG_READ_BACKING_AIO] = "read_backing_aio",
    [BLKDBG_READ_COMPRESSED] = "read_compressed",
    [BLKDBG_WRITE_AIO] = "write_aio",
    [BLKDBG_WRITE_COMPRESSED] = "write_compressed",
    [BLKDBG_VMSTATE_LOAD] = "vmstate_load",
    [BLKDBG_VMSTATE_SAVE] = "vmstate_save",
    [BLKDBG_COW_READ] = "cow_read",
    [BLKDBG_COW_WRITE] = "cow_write",
    [BLKDBG_REFTABLE_LOAD] = "reftable_load",
    [BLKDBG_REFTABLE_GROW] = "reftable_grow",
    [BLKDBG_REFTABLE_UPDATE] = "reftable_update",
    [BLKDBG_REFBLOCK_LOAD] = "refblock_load",
    [BLKDBG_REFBLOCK_UPDATE] = "refblock_update",
    [BLKDBG_REFBLOCK_UPDATE_PART] = "refblock_update_part",
    [BLKDBG_REFBLOCK_ALLOC] = "refblock_alloc",
    [BLKDBG_REFBLOCK_ALLOC_HOOKUP] = "refblock_alloc_hookup",
    [BLKDBG_REFBLOCK_ALLOC_WRITE] = "refblock_alloc_write",
    [BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS] = "refblock_alloc_write_blocks",
    [BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE] = "refblock_alloc_write_table",
    [BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE] = "refblock_alloc_switch_table",
    [BLKDBG_CLUSTER_ALLOC] = "cluster_alloc",
    [BLKDBG_CLUSTER_ALLOC_BYTES] = "cluster_alloc_bytes",
    [BLKDBG_CLUSTER_FREE] = "cluster_free",
    [BLKDBG_FLUSH_TO_OS] = "flush_to_os",
    [BLKDBG_FLUSH_TO_DISK] = "flush_to_disk",
    [BLKDBG_PWRITEV_RMW_HEAD] = "pwritev_rmw_head",
    [BLKDBG_PWRITEV_RMW_AFTER_HEAD] = "pwritev_rmw_after_head",
    [BLKDBG_PWRITEV_RMW_TAIL] = "pwritev_rmw_tail",
    [BLKDBG_PWRITEV_RMW_AFTER_TAIL] = "pwritev_rmw_after_tail",
    [BLKDBG_PWRITEV] = "pwritev",
    [BLKDBG_PWRITEV_ZERO] = "pwritev_zero",
    [BLKDBG_PWRITEV_DONE] = "pwritev_done",
    [BLKDBG_EMPTY_IMAGE_PREPARE] = "empty_image_prepare",
    [BLKDBG_L1_SHRINK_WRITE_TABLE] = "l1_shrink_write_table",
    [BLKDBG_L1_SHRINK_FREE_L2_CLUSTERS] = "l1_shrink_free_l2_clusters",
    [BLKDBG_COR_WRITE] = "cor_write",
    [BLKDBG_CLUSTER_ALLOC_SPACE] = "cluster_alloc_space",
    [BLKDBG_NONE] = "none",
};

const char *blkdebug_event_name(BlkdebugEvent ev)
{
    return ev < BLKDBG_EVENT_MAX ? event_names[ev] : NULL;
}

bool blkdebug_event_parse(const char *name, BlkdebugEvent *ev)
{
    for (int i = 0; i < BLKDBG_EVENT_MAX; i++) {
        if (event_names[i] && !strcmp(name, event_names[i])) {
            *ev = i;
            return true;
        }
    }
    return false;
}

void coroutine_fn bdrv_debug_event_node(BlockDriverState *bs, BlkdebugEvent ev)
{
    if (bs && bs->drv && bs->drv->debug && bs->drv->debug->event) {
        bs->drv->debug->event(bs, ev);
    }
}

void coroutine_fn bdrv_debug_event(BdrvChild *child, BlkdebugEvent ev)
{
    bdrv_debug_event_node(child ? child->bs : NULL, ev);
}

/* The first node at or below @bs whose driver implements breakpoints:
 * descend through the primary child (file, or a filter's filtered child). */
static BlockDriverState *debug_node(BlockDriverState *bs)
{
    while (bs && bs->drv) {
        if (bs->drv->debug && bs->drv->debug->breakpoint) {
            return bs;
        }
        BdrvChild *c = bs->file ? bs->file : bdrv_filter_child(bs);
        bs = c ? c->bs : NULL;
    }
    return NULL;
}

int bdrv_debug_breakpoint(BlockDriverState *bs, const char *event, const char *tag)
{
    bs = debug_node(bs);
    return bs ? bs->drv->debug->breakpoint(bs, event, tag) : -ENOTSUP;
}

int bdrv_debug_remove_breakpoint(BlockDriverState *bs, const char *tag)
{
    bs = debug_node(bs);
    return bs ? bs->drv->debug->remove_breakpoint(bs, tag) : -ENOTSUP;
}

int bdrv_debug_resume(BlockDriverState *bs, const char *tag)
{
    bs = debug_node(bs);
    return bs ? bs->drv->debug->resume(bs, tag) : -ENOTSUP;
}

bool bdrv_debug_is_suspended(BlockDriverState *bs, const char *tag)
{
    bs = debug_node(bs);
    return bs && bs->drv->debug->is_suspended(bs, tag);
}
