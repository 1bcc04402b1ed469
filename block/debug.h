/*
 * Debug events and breakpoints: the hooks the blkdebug filter uses.
 *
 * Drivers fire events at interesting points (raw: read_aio/write_aio on
 * its file child before each data request; the core: flush_to_os and
 * flush_to_disk on the primary child; qcow2 later: l1_update,
 * cluster_alloc, ...).  An event is delivered to the node the child points
 * at, if its driver has a debug ops group.  The core's write path fires
 * pwritev, pwritev_zero, pwritev_done and the pwritev_rmw_* events at the
 * node the write is on itself (bdrv_debug_event_node).  Breakpoints
 * suspend the next request that fires an event until resumed; strata-io's
 * break/resume/wait_break commands use them.
 */
#ifndef STRATA_BLOCK_DEBUG_H
#define STRATA_BLOCK_DEBUG_H

#include "block/block.h"

typedef enum {
    BLKDBG_L1_UPDATE, BLKDBG_L1_GROW_ALLOC_TABLE, BLKDBG_L1_GROW_WRITE_TABLE,
    BLKDBG_L1_GROW_ACTIVATE_TABLE, BLKDBG_L2_LOAD, BLKDBG_L2_UPDATE,
    BLKDBG_L2_UPDATE_COMPRESSED, BLKDBG_L2_ALLOC_COW_READ,
    BLKDBG_L2_ALLOC_WRITE, BLKDBG_READ_AIO, BLKDBG_READ_BACKING_AIO,
    BLKDBG_READ_COMPRESSED, BLKDBG_WRITE_AIO, BLKDBG_WRITE_COMPRESSED,
    BLKDBG_VMSTATE_LOAD, BLKDBG_VMSTATE_SAVE, BLKDBG_COW_READ,
    BLKDBG_COW_WRITE,
    BLKDBG_REFTABLE_LOAD, BLKDBG_REFTABLE_GROW, BLKDBG_REFTABLE_UPDATE,
    BLKDBG_REFBLOCK_LOAD, BLKDBG_REFBLOCK_UPDATE, BLKDBG_REFBLOCK_UPDATE_PART,
    BLKDBG_REFBLOCK_ALLOC, BLKDBG_REFBLOCK_ALLOC_HOOKUP,
    BLKDBG_REFBLOCK_ALLOC_WRITE, BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS,
    BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE, BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE,
    BLKDBG_CLUSTER_ALLOC, BLKDBG_CLUSTER_ALLOC_BYTES, BLKDBG_CLUSTER_FREE,
    BLKDBG_FLUSH_TO_OS, BLKDBG_FLUSH_TO_DISK, BLKDBG_PWRITEV_RMW_HEAD,
    BLKDBG_PWRITEV_RMW_AFTER_HEAD, BLKDBG_PWRITEV_RMW_TAIL,
    BLKDBG_PWRITEV_RMW_AFTER_TAIL, BLKDBG_PWRITEV, BLKDBG_PWRITEV_ZERO,
    BLKDBG_PWRITEV_DONE, BLKDBG_EMPTY_IMAGE_PREPARE,
    BLKDBG_L1_SHRINK_WRITE_TABLE, BLKDBG_L1_SHRINK_FREE_L2_CLUSTERS,
    BLKDBG_COR_WRITE, BLKDBG_CLUSTER_ALLOC_SPACE, BLKDBG_NONE,
    BLKDBG_EVENT_MAX,
} BlkdebugEvent;

/* "read_aio" <-> BLKDBG_READ_AIO; the names QEMU's blkdebug accepts. */
const char *blkdebug_event_name(BlkdebugEvent ev);
bool blkdebug_event_parse(const char *name, BlkdebugEvent *ev);

typedef struct BlockDriverDebugOps {
    void coroutine_fn (*event)(BlockDriverState *bs, BlkdebugEvent ev);
    int (*breakpoint)(BlockDriverState *bs, const char *event, const char *tag);
    int (*remove_breakpoint)(BlockDriverState *bs, const char *tag);
    int (*resume)(BlockDriverState *bs, const char *tag);
    bool (*is_suspended)(BlockDriverState *bs, const char *tag);
} BlockDriverDebugOps;

/* Fire @ev at @child's node (no-op without a debug-capable driver). */
void coroutine_fn bdrv_debug_event(BdrvChild *child, BlkdebugEvent ev);
/* Fire @ev at @bs itself (@bs may be NULL). */
void coroutine_fn bdrv_debug_event_node(BlockDriverState *bs, BlkdebugEvent ev);
/* bdrv_debug_breakpoint() & co., the tools' side, are in block/block.h:
 * they find the first node at or below @bs (following file/filtered
 * children) whose driver handles breakpoints and forward to it. */

#endif
