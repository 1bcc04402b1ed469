/*
 * The driver interface.  A driver is one static const BlockDriver,
 * registered once with bdrv_register() from block/registry in block.c.
 * The core allocates drv->instance_size bytes of per-node state
 * (bs->opaque) before open and frees it after close.
 *
 * Data path contract (all coroutine_fn, return 0 / -errno):
 *  - the core has checked bounds, overflow and alignment
 *    (bl.request_alignment) and split requests to bl.max_transfer before a
 *    driver sees them; a driver never sees bytes == 0 reads/writes;
 *  - @qiov->size == @bytes;
 *  - drivers reach their children only through bdrv_co_*(child, ...);
 *  - the callbacks live in drv->io (BlockDriverIO, below); a NULL io
 *    group or member gets the core's default: filters pass through to
 *    their filtered child; pwrite_zeroes falls back to writing a zero
 *    buffer; flush_to_disk/flush_to_os NULL = nothing to do; discard NULL
 *    = -ENOTSUP (ignored by the core); block_status NULL = "all data,
 *    allocated" (protocols) or pass-through (filters).
 *
 * Backing files (block/backing.c): a format with .supports_backing only
 * sets bs->backing_file / bs->backing_format in its open (g_strdup'd,
 * NULL if none); the core then resolves, opens and attaches the backing
 * node (bs->backing, may stay NULL), and the driver reads what it has
 * not allocated from it (zeroes past its end).  Changing the recorded
 * name goes through .backing (bdrv_change_backing_file()).
 * Copy-on-read needs nothing from a driver: the core copies what block
 * status reports unallocated with ordinary writes.
 */
#ifndef STRATA_BLOCK_DRIVER_H
#define STRATA_BLOCK_DRIVER_H

#include "block/block.h"
#include "util/hbitmap.h"

typedef enum {
    BDRV_KIND_PROTOCOL, BDRV_KIND_FORMAT, BDRV_KIND_FILTER,
} BlockDriverKind;

/* ---- options (the schema types and typed access are in block.h) ---- */
/* Remove every key of @schema from @opts into a new dict (for drivers that
 * want their own options separated from children's). */
QDict *bdrv_opts_take(QDict *opts, const BlockOptDesc *schema);

/* ---- limits: BlockLimits is in block.h ---- */

/* ---- children ---- */
typedef enum {
    BDRV_CHILD_DATA     = 0x01,  /* guest data lives here */
    BDRV_CHILD_METADATA = 0x02,  /* format metadata lives here */
    BDRV_CHILD_FILTERED = 0x04,  /* the child a filter passes through to */
    BDRV_CHILD_COW      = 0x08,  /* backing file */
    BDRV_CHILD_PRIMARY  = 0x10,  /* the "file" of a format / filter */
} BdrvChildRole;

struct BdrvChild {
    BlockDriverState *bs;        /* the child node */
    char *name;                  /* "file", "backing", "data-file", ... */
    BdrvChildRole role;
    BlockDriverState *parent;    /* NULL when the parent is a BlockBackend */
    BlockBackend *parent_blk;
    uint64_t perm, shared_perm;  /* what this parent needs / lets others do */
};

/* ---- nodes ---- */
typedef struct BdrvTrackedRequest BdrvTrackedRequest;

struct BlockDriverState {
    const BlockDriver *drv;
    void *opaque;                 /* drv->instance_size bytes */
    char *node_name;
    /* The node's name (block/filename.c): exact_filename when a plain
     * filename opens this same node, else "json:{...}" of full_options. */
    char *filename;
    char *exact_filename;         /* plain filename or NULL */
    QDict *full_options;          /* options that matter, children nested */
    int open_flags;               /* BDRV_O_* */
    bool read_only;
    bool probed;                  /* format was guessed (raw restrictions) */
    bool force_share;
    DetectZeroes detect_zeroes;
    QDict *options;               /* full flat options it was opened with */
    QDict *explicit_options;
    int refcnt;

    GPtrArray *children;          /* BdrvChild *, ours */
    BdrvChild *file;              /* shortcut: child named "file" */
    BdrvChild *backing;           /* shortcut: child named "backing" */
    GPtrArray *parents;           /* BdrvChild *, pointing at us */

    BlockLimits bl;
    uint64_t supported_write_flags;     /* FUA etc. the driver honours */
    uint64_t supported_zero_flags;      /* MAY_UNMAP, FUA, NO_FALLBACK */
    uint64_t supported_truncate_flags;

    int64_t total_bytes;          /* cached length, -1 if unknown */
    uint64_t perm, shared_perm;   /* cumulative, from parents */

    /* request tracking (block/io.c) */
    unsigned in_flight;
    int quiesce_counter;
    BdrvTrackedRequest *tracked_head;
    unsigned serialising_in_flight; /* tracked requests marked serialising */
    CoQueue tracked_wait;         /* serialising requests wait here */
    CoMutex flush_lock;
    uint64_t write_gen;           /* bumped by every write */
    uint64_t flushed_gen;         /* write_gen at last completed flush */
    bool flush_active;
    CoQueue flush_queue;

    /* block status cache: one extent known to be data (see io.c) */
    struct {
        bool valid;
        int64_t data_start, data_end;
    } bsc;
    /* format/filter nodes: the driver's last block status answer, valid
     * while this node and its file child are unwritten (see io.c) */
    struct {
        bool valid, want_zero;
        bool cut;               /* ends where the request did, not the extent */
        int ret;
        int64_t start, end, map;
        BlockDriverState *file;
        BlockDriverState *file_child;
        uint64_t gen, file_gen;
    } fsc;

    AioContext *ctx;
    char *probed_format_hint;     /* internal */

    /* The backing file as the format recorded it (formats with backing
     * files set these in open, g_strdup'd; NULL: none / not recorded).
     * The core resolves the name and opens the backing node. */
    char *backing_file;
    char *backing_format;
    /* (core) The name the backing file opens by default: backing_file
     * after the format's open, the backing node's name once it was opened
     * without options.  A backing node named otherwise was overridden by
     * the user, and this node's name says so (block/filename.c). */
    char *auto_backing_file;
    /* (core, only while this node opens as a backing file) the overlay
     * it opens for: the chain above, for loop and depth checks. */
    BlockDriverState *backing_of;
    /* (core, loop checks) the device and inode of the file the node
     * reads, looked up once: 0 = not yet, 1 = known, -1 = no such file */
    int storage_id_state;
    uint64_t storage_dev, storage_ino;
    /* (core) dirty bitmaps, BdrvDirtyBitmap * newest first, NULL until
     * the first (block/dirty-bitmap.c) */
    GPtrArray *dirty_bitmaps;
};

/* Formats with backing files: record a new backing file name and format
 * in the image (@file NULL: none; @fmt NULL: none recorded).  Only the
 * header changes; the core updates the node (bdrv_change_backing_file()).
 * Returns 0 or -errno. */
typedef struct BlockDriverBackingOps {
    int (*change_backing_file)(BlockDriverState *bs, const char *file,
                               const char *fmt);
    /* Drop everything the image allocates so that reads fall through to
     * the backing file (commit without -d); NULL: commit leaves the
     * image as it is.  The caller has drained the node. */
    int coroutine_fn (*make_empty)(BlockDriverState *bs);
} BlockDriverBackingOps;

/* ---- info group (BlockDriverInfo and BlockMeasureInfo are in block.h) ---- */
typedef struct BlockDriverInfoOps {
    int (*get_info)(BlockDriverState *bs, BlockDriverInfo *bdi);
    /* "format-specific" {type, data} for info; NULL if none */
    QDict *(*get_specific_info)(BlockDriverState *bs, Error **errp);
} BlockDriverInfoOps;

/*
 * ---- the driver's ops groups ----
 *
 * struct BlockDriver keeps identity and lifecycle; everything else lives in
 * small const groups a driver points at only if it has them.  Rules:
 *  - a NULL group means every member is NULL, and a NULL member gets the
 *    core's default documented beside it;
 *  - members are appended to the end of a group, groups to the end of
 *    struct BlockDriver; nothing is reordered or removed (designated
 *    initialisers keep every driver compiling);
 *  - a group appears with the first feature that needs it (no empty
 *    placeholders): check, amend, snapshots, bitmaps, backing add theirs.
 *
 * Porting note (flat member of the old struct -> new place):
 *   co_preadv, co_pwritev, co_pwrite_zeroes, co_pdiscard, co_flush_to_os,
 *   co_flush_to_disk, co_block_status, co_truncate, co_getlength,
 *   co_get_allocated_file_size, co_copy_range_from, co_copy_range_to
 *                                  -> io->(same name)       BlockDriverIO
 *   child_perm, check_perm, set_perm, abort_perm_update
 *                                  -> perm->(same name)     BlockDriverPermOps
 *   reopen_read_only, reopen_direct, reopen_prepare, reopen_commit,
 *   reopen_abort                   -> reopen->read_only, direct, prepare,
 *                                     commit, abort         BlockDriverReopenOps
 *   strong_opts, plain_filename    -> naming->(same name)   BlockDriverNamingOps
 *   drained_begin, drained_end     -> drain->(same name)    BlockDriverDrainOps
 *   is_inserted                    -> media->is_inserted    BlockDriverMediaOps
 *   measure                        -> measure->measure      BlockDriverMeasureOps
 *   info, debug                    -> unchanged (already groups)
 *   identity fields, probe, probe_device, parse_filename, open, close,
 *   co_create_opts, refresh_limits, check_open_opts -> unchanged, top level
 *   BlockOptDesc, bdrv_opt_*(), bdrv_opts_print_help(), BlockLimits,
 *   BlockDriverInfo, bdrv_get_info(), BlockMeasureInfo -> block/block.h
 *                                  (still visible here: it is included)
 * e.g.   .co_preadv = foo_preadv,        becomes
 *        static const BlockDriverIO foo_io = { .co_preadv = foo_preadv, };
 *        .io = &foo_io,
 */

/* check: consistency of a format's metadata (strata-img check; the
 * result type and bdrv_check() are in block/block.h). */
typedef struct BlockDriverCheckOps {
    /* Fill @res (zeroed by the caller); per-problem lines go to stderr as
     * the reference prints them.  Returns 0 when the check completed
     * (whatever it found), -errno when it could not (the tool then says
     * "Check failed: <strerror>").  @fix: BdrvCheckMode bits; a driver
     * that cannot repair returns -ENOTSUP for fix != 0. */
    int coroutine_fn (*co_check)(BlockDriverState *bs, BlockCheckResult *res,
                                 int fix);
} BlockDriverCheckOps;

/* amend: change format options of an existing image in place
 * (strata-img amend; bdrv_amend_options() in block/block.h). */
typedef struct BlockDriverAmendOps {
    /* The options -o may name ("Amend options for 'fmt':" lists them). */
    const BlockOptDesc *opts;
    /* Apply @opts (a flat dict holding only keys of .opts, values as the
     * user gave them) in plain context.  @cb (may be NULL) reports
     * progress as done/total work units.  @force: the user passed
     * --force.  Returns 0 or -errno with @errp set. */
    int (*amend)(BlockDriverState *bs, QDict *opts, BlockAmendStatusCB *cb,
                 void *cb_opaque, bool force, Error **errp);
} BlockDriverAmendOps;

/* Data path (block/io.c; open.c also sizes a node with co_getlength).
 * All coroutine_fn, 0/-errno; see the contract at the top of this file
 * for the defaults. */
typedef struct BlockDriverIO {
    int coroutine_fn (*co_preadv)(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, IOVector *qiov,
                                  BdrvRequestFlags flags);
    int coroutine_fn (*co_pwritev)(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, IOVector *qiov,
                                   BdrvRequestFlags flags);
    int coroutine_fn (*co_pwrite_zeroes)(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes, BdrvRequestFlags flags);
    int coroutine_fn (*co_pdiscard)(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes);
    int coroutine_fn (*co_flush_to_os)(BlockDriverState *bs);
    int coroutine_fn (*co_flush_to_disk)(BlockDriverState *bs);
    int coroutine_fn (*co_block_status)(BlockDriverState *bs, bool want_zero,
                                        int64_t offset, int64_t bytes,
                                        int64_t *pnum, int64_t *map,
                                        BlockDriverState **file);
    /* NULL: filters pass through, others fail with "Image format driver
     * does not support resize". */
    int coroutine_fn (*co_truncate)(BlockDriverState *bs, int64_t offset,
                                    bool exact, PreallocMode prealloc,
                                    BdrvRequestFlags flags, Error **errp);
    /* NULL: a filter's filtered child's length, else the length found at
     * open. */
    int64_t coroutine_fn (*co_getlength)(BlockDriverState *bs);
    /* NULL: protocols -ENOTSUP, filters their filtered child's, formats
     * the sum over their children. */
    int64_t coroutine_fn (*co_get_allocated_file_size)(BlockDriverState *bs);
    /* copy offload: "from" is called on the source node, "to" on the
     * destination node; protocols implement both (copy_file_range),
     * formats map the range onto their data child (qcow2: "to" allocates
     * as a write would).  The core tracks "from" as a read of the source
     * and "to" as a write (serialised, dirty bitmaps, block status cache,
     * FUA by a flush) and refuses "to" off the request alignment.
     * NULL (even for filters): -ENOTSUP, the caller reads and writes;
     * a failure may leave part of the range copied. */
    int coroutine_fn (*co_copy_range_from)(BlockDriverState *bs, BdrvChild *src,
                                           int64_t src_offset, BdrvChild *dst,
                                           int64_t dst_offset, int64_t bytes,
                                           BdrvRequestFlags rf, BdrvRequestFlags wf);
    int coroutine_fn (*co_copy_range_to)(BlockDriverState *bs, BdrvChild *src,
                                         int64_t src_offset, BdrvChild *dst,
                                         int64_t dst_offset, int64_t bytes,
                                         BdrvRequestFlags rf, BdrvRequestFlags wf);
    /* compare offload (rebase): called on the protocol node holding
     * [offset, +bytes), compares it with [other_offset, +bytes) of
     * @other without copying the data to the caller; differ[i] tells
     * whether unit i (@unit bytes; @bytes is a multiple) differs, and
     * @keep (if not NULL; @bytes long) receives @bs's data of the units
     * that differ, at their place (the rest of it is undefined).
     * NULL or -ENOTSUP (e.g. @other of another driver, past either
     * file's end): the caller reads both and compares. */
    int coroutine_fn (*co_compare_range)(BlockDriverState *bs, int64_t offset,
                                         BlockDriverState *other,
                                         int64_t other_offset, int64_t bytes,
                                         int64_t unit, bool *differ,
                                         uint8_t *keep);
    /* The node's whole flush, children included (quorum: every child,
     * then a vote on the results); the core then neither calls
     * co_flush_to_os/co_flush_to_disk nor flushes the children itself.
     * NULL: the core flushes the node, then every child. */
    int coroutine_fn (*co_flush)(BlockDriverState *bs);
} BlockDriverIO;

/* Permissions and image locking (block/perm.c). */
typedef struct BlockDriverPermOps {
    /* What @bs needs from @c given its own cumulative perm/shared.
     * NULL: bdrv_default_child_perm(). */
    void (*child_perm)(BlockDriverState *bs, BdrvChild *c, BdrvChildRole role,
                       uint64_t perm, uint64_t shared,
                       uint64_t *nperm, uint64_t *nshared);
    /* Protocols: apply a new cumulative perm/shared (locking).  check may
     * fail; then abort reverts; otherwise set commits.  NULL: accepted. */
    int (*check_perm)(BlockDriverState *bs, uint64_t perm, uint64_t shared,
                      Error **errp);
    void (*set_perm)(BlockDriverState *bs, uint64_t perm, uint64_t shared);
    void (*abort_perm_update)(BlockDriverState *bs);
} BlockDriverPermOps;

/* Reopen (block/open.c). */
typedef struct BlockDriverReopenOps {
    /* Switch the node read-only or read-write.  NULL: nothing to do. */
    int (*read_only)(BlockDriverState *bs, bool read_only, Error **errp);
    /* Protocols: switch direct I/O (cache.direct) on or off.  NULL:
     * nothing to do. */
    int (*direct)(BlockDriverState *bs, bool direct, Error **errp);
    /* Reopen with new driver options (bdrv_reopen_prepare_opts()).
     * prepare: @opts are the new options of this node, flat (children's
     * under "<child>."); check those the driver can change, remove them
     * from @opts and stage their values (merged with the current ones).
     * Then commit (make the staged values current) or abort (drop them)
     * follows; both must do nothing when nothing is staged.  NULL
     * prepare: the driver changes none, its options may only keep their
     * values. */
    int (*prepare)(BlockDriverState *bs, QDict *opts, Error **errp);
    void (*commit)(BlockDriverState *bs);
    void (*abort)(BlockDriverState *bs);
} BlockDriverReopenOps;

/* Naming (block/filename.c). */
typedef struct BlockDriverNamingOps {
    /* The options that change what the node reads, kept in its
     * "json:{...}" name ("x." stands for every "x.*" key); NULL: none. */
    const char *const *strong_opts;
    /* A name in the driver's own syntax ("null-co://",
     * "blkdebug:CONF:IMAGE") for the node whose name options are @full, or
     * NULL when only json: can say it (g_free()).  Without the hook
     * protocols keep the filename they were opened with and formats take
     * their protocol child's. */
    char *(*plain_filename)(BlockDriverState *bs, QDict *full);
    /* Put the children's name options into @full the driver's way
     * (quorum: one "children" list in child order).  NULL: each child's
     * under its child name. */
    void (*gather_children)(BlockDriverState *bs, QDict *full);
} BlockDriverNamingOps;

/* Drain hooks (filters holding queued requests, e.g. throttle);
 * block/drain.c.  NULL: nothing to do. */
typedef struct BlockDriverDrainOps {
    void (*drained_begin)(BlockDriverState *bs);
    void (*drained_end)(BlockDriverState *bs);
} BlockDriverDrainOps;

/* Removable media (host_cdrom). */
typedef struct BlockDriverMediaOps {
    /* false while there is none, and every request then fails with
     * -ENOMEDIUM.  NULL: always there. */
    bool (*is_inserted)(BlockDriverState *bs);
} BlockDriverMediaOps;

/* qemu-img measure. */
typedef struct BlockDriverMeasureOps {
    /* Size estimate for an image created with @opts (create options;
     * "size" set unless @in_bs) holding the data of @in_bs (may be NULL).
     * Plain context.  NULL: the format cannot be measured. */
    int (*measure)(QDict *opts, BlockDriverState *in_bs,
                   BlockMeasureInfo *info, Error **errp);
} BlockDriverMeasureOps;

/* Internal snapshots and VM state (qcow2).  All coroutine_fn, 0 or
 * -errno; the core (block/snapshot.c) runs them in a coroutine, on the
 * node below any filters.  NULL group: the format has none. */
typedef struct BlockDriverSnapshotOps {
    /* Create from the current state; fills sn->id when it is empty. */
    int coroutine_fn (*co_create)(BlockDriverState *bs, BdrvSnapshotInfo *sn);
    /* Revert the current state to the snapshot (ID, else name). */
    int coroutine_fn (*co_goto)(BlockDriverState *bs, const char *id_or_name,
                                Error **errp);
    /* Delete the snapshot matching @id and/or @name (NULL: any). */
    int coroutine_fn (*co_delete)(BlockDriverState *bs, const char *id,
                                  const char *name, Error **errp);
    /* Returns the number of snapshots, *tab g_new'd. */
    int (*list)(BlockDriverState *bs, BdrvSnapshotInfo **tab);
    /* Read-only nodes: read the snapshot from now on. */
    int coroutine_fn (*co_load_tmp)(BlockDriverState *bs, const char *id,
                                    const char *name, Error **errp);
    /* VM state: @qiov->size bytes at @pos of the state area. */
    int coroutine_fn (*co_save_vmstate)(BlockDriverState *bs, IOVector *qiov,
                                        int64_t pos);
    int coroutine_fn (*co_load_vmstate)(BlockDriverState *bs, IOVector *qiov,
                                        int64_t pos);
} BlockDriverSnapshotOps;
/* Persistent dirty bitmaps (qcow2).  The format creates the node's
 * persistent bitmaps (bdrv_create_dirty_bitmap() and setters) in open and
 * stores them in close; bits it left on disk (bdrv_dirty_bitmap_set_
 * unloaded()) are read through load on first use. */
typedef struct BlockDriverBitmapOps {
    /* Can this node store persistent bitmaps at all (qcow2 v3)? */
    bool (*supported)(BlockDriverState *bs);
    /* May a new persistent bitmap @name of @granularity bytes be added?
     * false with @errp set in the reference's words. */
    bool (*can_store_new)(BlockDriverState *bs, const char *name,
                          uint32_t granularity, Error **errp);
    /* Read the bits of @bm from the image (plain context). */
    int (*load)(BlockDriverState *bs, BdrvDirtyBitmap *bm, Error **errp);
    /* Drop the stored bitmap @name from the image now (nothing to do if
     * it was never stored); plain context. */
    int (*remove_persistent)(BlockDriverState *bs, const char *name,
                             Error **errp);
    /* Store every persistent bitmap now (what close would do); plain
     * context.  -errno with @errp set on failure. */
    int (*store)(BlockDriverState *bs, Error **errp);
} BlockDriverBitmapOps;

struct BlockDriver {
    /* identity */
    const char *format_name;
    BlockDriverKind kind;
    size_t instance_size;
    const char *protocol_name;    /* protocols: "file" for "file:" prefixes */
    bool is_filter_for_backing;   /* filter whose filtered child is "backing" */
    const BlockOptDesc *open_opts;
    const BlockOptDesc *create_opts;
    bool supports_backing;
    bool read_only_driver;        /* bochs, cloop, dmg */
    bool supports_compression;    /* stores BDRV_REQ_WRITE_COMPRESSED writes */
    /* A format known only by its probe (block/format/probe-only.c): it
     * takes part in probing so that its images are never guessed to be
     * raw, but opening or creating one fails with
     * bdrv_not_yet_supported_error(); help lists leave it out. */
    bool not_yet_supported;

    /* lifecycle */
    int (*probe)(const uint8_t *buf, int buf_size, const char *filename);
    int (*probe_device)(const char *filename);
    /* Before open: fix up options parsed from a plain filename (protocols). */
    void (*parse_filename)(const char *filename, QDict *options, Error **errp);
    /* @options: this node's flat options, children's as "file.x" etc.
     * Formats/filters open their children with bdrv_open_child(). */
    int (*open)(BlockDriverState *bs, QDict *options, int flags, Error **errp);
    void (*close)(BlockDriverState *bs);
    int coroutine_fn (*co_create_opts)(const BlockDriver *drv,
                                       const char *filename, QDict *opts,
                                       Error **errp);
    void (*refresh_limits)(BlockDriverState *bs, Error **errp);
    /* Formats: option values checked once the file child is open (or
     * absent), before the driver's open asks for it: the reference's
     * formats read their options before requiring a file. */
    int (*check_open_opts)(QDict *options, Error **errp);

    /* ops groups (see above); append new ones at the end */
    const BlockDriverIO *io;
    const BlockDriverInfoOps *info;
    const struct BlockDriverDebugOps *debug;     /* block/debug.h */
    const BlockDriverPermOps *perm;
    const BlockDriverReopenOps *reopen;
    const BlockDriverNamingOps *naming;
    const BlockDriverDrainOps *drain;
    const BlockDriverMediaOps *media;
    const BlockDriverMeasureOps *measure;
    /* Formats with .supports_backing: change the recorded backing file
     * (rebase -u, commit).  NULL: -ENOTSUP. */
    const BlockDriverBackingOps *backing;
    /* Metadata check (strata-img check); NULL: "This image format does
     * not support checks". */
    const BlockDriverCheckOps *check;
    /* Option amendment (strata-img amend); NULL: "Format driver 'x' does
     * not support option amendment". */
    const BlockDriverAmendOps *amend;
    /* Internal snapshots and VM state; NULL: none. */
    const BlockDriverSnapshotOps *snapshot;
    /* Persistent dirty bitmaps; NULL: the format cannot store any. */
    const BlockDriverBitmapOps *bitmaps;
    /* A driver for tests only (crash-sim): usable when named, left out
     * of the formats lists of help texts. */
    bool test_only;
};

/* The data path group of @drv, or an all-NULL one (never NULL). */
const BlockDriverIO *bdrv_driver_io(const BlockDriver *drv);

void bdrv_register(const BlockDriver *drv);

/* Open a child of @parent from the options prefixed "<name>." in @options
 * (they are removed from @options) or from a node reference
 * ("<name>": "node-name") or from @filename.  @allow_none: return NULL
 * without error when nothing was specified. */
BdrvChild *bdrv_open_child(const char *filename, QDict *options,
                           const char *name, BlockDriverState *parent,
                           BdrvChildRole role, bool allow_none, Error **errp);
BdrvChild *bdrv_attach_child(BlockDriverState *parent, BlockDriverState *child,
                             const char *name, BdrvChildRole role, Error **errp);
void bdrv_unref_child(BlockDriverState *parent, BdrvChild *child);
/*
 * Non-node parents (BlockBackend, block/backend.c) use these three.
 * bdrv_root_attach_child(): new edge @name ("root") from @blk to @bs with
 * @perm/@shared; permissions are checked and applied for the whole subtree.
 * On success the edge owns one reference of @bs that the caller passed in
 * (call bdrv_ref() first if you keep yours); on failure NULL, errp set and
 * the caller still owns its reference.
 * bdrv_root_unref_child(): detach, refresh permissions, drop that reference.
 * bdrv_child_try_set_perm(): change one edge's perm/shared; on failure the
 * old values stay in force.
 */
BdrvChild *bdrv_root_attach_child(BlockDriverState *bs, const char *name,
                                  BlockBackend *blk, uint64_t perm,
                                  uint64_t shared, Error **errp);
void bdrv_root_unref_child(BdrvChild *child);
int bdrv_child_try_set_perm(BdrvChild *c, uint64_t perm, uint64_t shared,
                            Error **errp);
/* The child a filter passes through to (file or backing), or NULL. */
BdrvChild *bdrv_filter_child(const BlockDriverState *bs);
/* The first child with any of the @role bits, whatever its name (the
 * filtered child of blkdebug is called "image"). */
BdrvChild *bdrv_child_by_role(const BlockDriverState *bs, BdrvChildRole role);

void bdrv_default_child_perm(BlockDriverState *bs, BdrvChild *c,
                             BdrvChildRole role, uint64_t perm,
                             uint64_t shared, uint64_t *nperm,
                             uint64_t *nshared);
/* Recompute permissions of @bs's subtree after a change (check + set). */
int bdrv_refresh_perms(BlockDriverState *bs, Error **errp);
/* The same when the only change in @bs's subtree is an edge added to or
 * removed from @bs itself (a child attached to it, a parent detached):
 * only nodes whose incoming edges then change are checked again. */
int bdrv_refresh_perms_edge(BlockDriverState *bs, Error **errp);
void bdrv_refresh_limits(BlockDriverState *bs, Error **errp);
/* Forget cached block status of @bs (drivers call it on changes the core
 * cannot see: a mapping changed other than by a request to @bs or a write
 * to its "file" child, e.g. an L1 table switched in memory only). */
void bdrv_bsc_invalidate(BlockDriverState *bs);

/* ---- request path internals (block/io.c, drain.c, backend.c) ---- */
/* Copy offload halves: a driver's co_copy_range_from forwards to the
 * destination with bdrv_co_copy_range_to (and formats/filters forward
 * either half to their file child).  -ENOTSUP: caller falls back. */
int coroutine_fn bdrv_co_copy_range_from(BdrvChild *src, int64_t src_offset,
                                         BdrvChild *dst, int64_t dst_offset,
                                         int64_t bytes, BdrvRequestFlags rf,
                                         BdrvRequestFlags wf);
int coroutine_fn bdrv_co_copy_range_to(BdrvChild *src, int64_t src_offset,
                                       BdrvChild *dst, int64_t dst_offset,
                                       int64_t bytes, BdrvRequestFlags rf,
                                       BdrvRequestFlags wf);
/* Count work drain must wait for (background work of drivers too). */
void bdrv_inc_in_flight(BlockDriverState *bs);
void bdrv_dec_in_flight(BlockDriverState *bs);
/* Is @bs or a node below it inside a drained section?  (Backends above a
 * drained node queue new requests.) */
bool bdrv_subtree_quiesced(BlockDriverState *bs);
/*
 * The core does not call up into the BlockBackend layer (block/backend.c):
 * that layer registers what the drain needs from the parents above the
 * graph, when it creates its first backend.  Until then there are none.
 */
typedef struct BdrvRootParentOps {
    /* Requests in flight on @blk, the parent of a root edge. */
    unsigned (*in_flight)(BlockBackend *blk);
    /* A drained section ended: queued requests of every backend re-check
     * whether they may go. */
    void (*restart_queued)(void);
    /* bdrv_drain_all(), bdrv_flush_all(): every backend. */
    void (*drain_all)(void);
    int (*flush_all)(void);
} BdrvRootParentOps;
void bdrv_set_root_parent_ops(const BdrvRootParentOps *ops);
/* Jobs issuing requests inside their own drained section: never queue. */
void blk_set_disable_request_queuing(BlockBackend *blk, bool disable);

/* Human filename fix-ups shared by protocols: strips "proto:" prefixes. */
const char *bdrv_strip_protocol_prefix(const char *filename, const char *proto);

#endif
