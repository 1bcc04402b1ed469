/*
 * Built-in drivers (each defined in its own file under block/protocol,
 * block/format, block/filter) and the graph module's internal helpers
 * shared by block.c, open.c, options.c and perm.c.
 */
#ifndef STRATA_BLOCK_DRIVERS_H
#define STRATA_BLOCK_DRIVERS_H

#include "block/driver.h"

extern const BlockDriver bdrv_file, bdrv_host_device, bdrv_host_cdrom,
    bdrv_null_co, bdrv_raw, bdrv_qcow2,
    bdrv_throttle, bdrv_preallocate, bdrv_blkdebug;

/* ---- block.c ---- */
/* A fresh node: one reference, no driver yet, not in the node list until
 * it gets a name. */
BlockDriverState *bdrv_new(void);
/* Validate and set @name (NULL: generate "#block..."); adds @bs to the
 * list of named nodes. */
int bdrv_assign_node_name(BlockDriverState *bs, const char *name, Error **errp);
/* Close the driver and free a node whose refcnt reached zero (or that
 * failed to open). */
void bdrv_delete(BlockDriverState *bs);
/* The i-th registered driver or NULL past the end. */
const BlockDriver *bdrv_driver_at(unsigned i);

/* ---- open.c ---- */
/* Pass through the request flags of @child's node that a filter or raw
 * forwards unchanged: FUA for writes; FUA, MAY_UNMAP and NO_FALLBACK for
 * zero writes. */
void bdrv_inherit_request_flags(BlockDriverState *bs, BdrvChild *child);
/* block/create-simple.c: create on a protocol that cannot make new images
 * (the target must exist; see there). */
extern const BlockOptDesc bdrv_create_simple_opts[];
int coroutine_fn bdrv_co_create_opts_simple(const BlockDriver *drv,
                                            const char *filename, QDict *opts,
                                            Error **errp);
/* Open the mandatory filtered child @name (data, filtered, primary) of
 * filter @bs as bdrv_open_child() does and inherit its request flags. */
BdrvChild *bdrv_open_filtered_child(BlockDriverState *bs, const char *filename,
                                    QDict *options, const char *name,
                                    Error **errp);

/* ---- options.c ---- */
/* Options every node accepts (node-name, read-only, cache.*, ...). */
bool bdrv_opt_is_generic(const char *key);
/* First key of @opts that neither @schema nor the generic set knows, or
 * NULL. */
const char *bdrv_opts_first_unknown(QDict *opts, const BlockOptDesc *schema);

/* ---- perm.c ---- */
/* Node-parent edge bookkeeping without permission updates. */
void bdrv_parent_link(BdrvChild *c);
void bdrv_parent_unlink(BdrvChild *c);

#endif
