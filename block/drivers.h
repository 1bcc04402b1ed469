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
    bdrv_throttle, bdrv_preallocate, bdrv_blkdebug,
    bdrv_copy_on_read, bdrv_crash_sim, bdrv_compress, bdrv_quorum;
/* Formats known only by their probe; ends with a NULL format_name. */
extern const BlockDriver bdrv_probe_only_formats[];

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
/* Open a node for a child of @parent (NULL: none) with @role from
 * @filename and @options (taken), with @flags as bdrv_child_flags()
 * computes them. */
BlockDriverState *bdrv_open_inherit(const char *filename, QDict *options,
                                    int flags, BlockDriverState *parent,
                                    BdrvChildRole role, Error **errp);
/* Flags a child of @parent with @role starts from (inherited cache and
 * read-only state; backing files read-only). */
int bdrv_child_flags(BlockDriverState *parent, BdrvChildRole role);
/* "child": "node-name": the existing node (new reference), refusing
 * further @child_opts. */
BlockDriverState *bdrv_lookup_reference(const char *ref, QDict *child_opts,
                                        Error **errp);

/* ---- temp-snapshot.c ---- */
/* BDRV_O_SNAPSHOT: opens @filename/@options (taken) read-only and returns
 * a temporary qcow2 overlay on top of it, already deleted from its
 * directory (it disappears with the last reference). */
BlockDriverState *bdrv_open_temp_snapshot(const char *filename,
                                          QDict *options, int flags,
                                          Error **errp);

/* ---- backing.c ---- */
/* "backing": null (or "", with the reference's deprecation warning) in
 * @options: no backing file (BDRV_O_NO_BACKING); the key is removed. */
void bdrv_backing_take_null(QDict *options, int *flags);
/* After a format's open: open and attach the backing file it recorded,
 * or the one "backing"/"backing.*" in @options names (removed from
 * @options), unless BDRV_O_NO_BACKING. */
int bdrv_open_backing(BlockDriverState *bs, QDict *options, int flags,
                      Error **errp);
/* Pass through the request flags of @child's node that a filter or raw
 * forwards unchanged: FUA for writes; FUA, MAY_UNMAP and NO_FALLBACK for
 * zero writes. */
void bdrv_inherit_request_flags(BlockDriverState *bs, BdrvChild *child);
/* block/protocol/create-simple.c: create on a protocol that cannot make
 * new images (the target must exist; see there).  A driver-side helper:
 * it opens a BlockBackend, which the core itself never does. */
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
