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
 *  - a missing callback gets the core's default: filters pass through to
 *    their filtered child; pwrite_zeroes falls back to writing a zero
 *    buffer; flush_to_disk/flush_to_os NULL = nothing to do; discard NULL
 *    = -ENOTSUP (ignored by the core); block_status NULL = "all data,
 *    allocated" (protocols) or pass-through (filters).
 */
#ifndef STRATA_BLOCK_DRIVER_H
#define STRATA_BLOCK_DRIVER_H

#include "block/block.h"
#include "util/hbitmap.h"

typedef enum {
    BDRV_KIND_PROTOCOL, BDRV_KIND_FORMAT, BDRV_KIND_FILTER,
} BlockDriverKind;

/* ---- option schema: one per driver for open and one for create ---- */
typedef enum {
    OPT_STRING, OPT_BOOL, OPT_NUMBER, OPT_SIZE,
} BlockOptType;

typedef struct BlockOptDesc {
    const char *name;
    BlockOptType type;
    const char *help;
    const char *def_value_str;    /* shown by -o help and used as default */
} BlockOptDesc;

/* Typed access to options in a flat QDict (values may be QStrings from the
 * command line or typed values from JSON).  A malformed value sets errp
 * with the reference's message ("Parameter 'x' expects a size", "Parameter
 * 'x' expects 'on' or 'off'", ...).  Absent: @def. */
const char *bdrv_opt_str(QDict *opts, const char *name, const char *def);
bool bdrv_opt_bool(QDict *opts, const char *name, bool def, Error **errp);
uint64_t bdrv_opt_size(QDict *opts, const char *name, uint64_t def, Error **errp);
uint64_t bdrv_opt_number(QDict *opts, const char *name, uint64_t def, Error **errp);
/* Remove every key of @schema from @opts into a new dict (for drivers that
 * want their own options separated from children's). */
QDict *bdrv_opts_take(QDict *opts, const BlockOptDesc *schema);
/* Prints "Supported <fmt> options:" (@fmt NULL: "Supported options:") and
 * one line per option, sorted by name, as -o help. */
void bdrv_opts_print_help(const char *fmt, const BlockOptDesc *schema);

/* ---- limits ---- */
typedef struct BlockLimits {
    uint32_t request_alignment;   /* bytes; 1 = any */
    uint64_t max_transfer;        /* bytes; 0 = no limit */
    uint64_t opt_transfer;        /* preferred request size; 0 = none */
    uint64_t pwrite_zeroes_alignment;
    uint64_t max_pwrite_zeroes;   /* 0 = BDRV_REQUEST_MAX_BYTES */
    uint64_t pdiscard_alignment;
    uint64_t max_pdiscard;
    size_t min_mem_alignment;     /* buffer alignment needed (O_DIRECT) */
    size_t opt_mem_alignment;
    int max_iov;                  /* 0 = IOV_MAX */
} BlockLimits;

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

    AioContext *ctx;
    char *probed_format_hint;     /* internal */

    /* The backing file as the format recorded it (formats with backing
     * files set these in open, g_strdup'd; NULL: none / not recorded).
     * The core resolves the name and opens the backing node. */
    char *backing_file;
    char *backing_format;
};

/* ---- optional ops groups ---- */
typedef struct BlockDriverInfo {
    int cluster_size;             /* 0 if none */
    bool is_dirty;
    bool needs_compressed_writes;
} BlockDriverInfo;

typedef struct BlockDriverInfoOps {
    int (*get_info)(BlockDriverState *bs, BlockDriverInfo *bdi);
    /* "format-specific" {type, data} for info; NULL if none */
    QDict *(*get_specific_info)(BlockDriverState *bs, Error **errp);
} BlockDriverInfoOps;

/* @bs's BlockDriverInfo (zeroed first): the driver's, a filter's
 * filtered child's when the filter has none, else -ENOTSUP (block.c). */
int bdrv_get_info(BlockDriverState *bs, BlockDriverInfo *bdi);

/* measure: bytes a new image of this format needs (qemu-img measure). */
typedef struct BlockMeasureInfo {
    uint64_t required;            /* for the data in use */
    uint64_t fully_allocated;     /* with every cluster allocated */
    bool has_bitmaps;
    uint64_t bitmaps;             /* persistent bitmaps' share, if any */
} BlockMeasureInfo;

/* check: consistency of a format's metadata (qemu-img check).  The
 * counters are what the tool prints; bfi the allocation statistics. */
typedef struct BlockCheckResult {
    int corruptions;              /* metadata errors (not fixed) */
    int leaks;                    /* clusters counted but unused */
    int check_errors;             /* the check itself failed somewhere */
    int corruptions_fixed;
    int leaks_fixed;
    int64_t image_end_offset;     /* end of the last used host cluster */
    struct {
        uint64_t total_clusters;      /* of the virtual disk */
        uint64_t allocated_clusters;
        uint64_t fragmented_clusters;
        uint64_t compressed_clusters;
    } bfi;
} BlockCheckResult;

/* What a check may repair (qemu-img check -r leaks|all). */
typedef enum {
    BDRV_FIX_LEAKS  = 1,
    BDRV_FIX_ERRORS = 2,
} BdrvCheckMode;

typedef struct BlockDriverCheckOps {
    /* Fill @res (zeroed by the caller); per-problem lines go to stderr as
     * the reference prints them.  Returns 0 when the check completed
     * (whatever it found), -errno when it could not (the tool then says
     * "Check failed: <strerror>").  @fix: BdrvCheckMode bits; a driver
     * that cannot repair returns -ENOTSUP for fix != 0. */
    int coroutine_fn (*co_check)(BlockDriverState *bs, BlockCheckResult *res,
                                 int fix);
} BlockDriverCheckOps;

/* Check @bs (plain or coroutine context): -ENOTSUP when its driver has no
 * check ops, -ENOMEDIUM without a driver; @res zeroed first (block.c). */
int bdrv_check(BlockDriverState *bs, BlockCheckResult *res, int fix);

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
    /* What @bs needs from @c given its own cumulative perm/shared.
     * NULL: bdrv_default_child_perm(). */
    void (*child_perm)(BlockDriverState *bs, BdrvChild *c, BdrvChildRole role,
                       uint64_t perm, uint64_t shared,
                       uint64_t *nperm, uint64_t *nshared);
    /* Protocols: apply a new cumulative perm/shared (locking).  check may
     * fail; then abort reverts; otherwise set commits. */
    int (*check_perm)(BlockDriverState *bs, uint64_t perm, uint64_t shared,
                      Error **errp);
    void (*set_perm)(BlockDriverState *bs, uint64_t perm, uint64_t shared);
    void (*abort_perm_update)(BlockDriverState *bs);
    int (*reopen_read_only)(BlockDriverState *bs, bool read_only, Error **errp);
    /* Protocols: switch direct I/O (cache.direct) on or off. */
    int (*reopen_direct)(BlockDriverState *bs, bool direct, Error **errp);

    /* data path */
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
    int coroutine_fn (*co_truncate)(BlockDriverState *bs, int64_t offset,
                                    bool exact, PreallocMode prealloc,
                                    BdrvRequestFlags flags, Error **errp);
    int64_t coroutine_fn (*co_getlength)(BlockDriverState *bs);
    int64_t coroutine_fn (*co_get_allocated_file_size)(BlockDriverState *bs);
    /* copy offload: "from" is called on the source node, "to" on the
     * destination node; protocols implement both (copy_file_range). */
    int coroutine_fn (*co_copy_range_from)(BlockDriverState *bs, BdrvChild *src,
                                           int64_t src_offset, BdrvChild *dst,
                                           int64_t dst_offset, int64_t bytes,
                                           BdrvRequestFlags rf, BdrvRequestFlags wf);
    int coroutine_fn (*co_copy_range_to)(BlockDriverState *bs, BdrvChild *src,
                                         int64_t src_offset, BdrvChild *dst,
                                         int64_t dst_offset, int64_t bytes,
                                         BdrvRequestFlags rf, BdrvRequestFlags wf);

    /* drain hooks (filters holding queued requests, e.g. throttle) */
    void (*drained_begin)(BlockDriverState *bs);
    void (*drained_end)(BlockDriverState *bs);

    /* optional groups; append new ones at the end */
    const BlockDriverInfoOps *info;
    const struct BlockDriverDebugOps *debug;     /* block/debug.h */
    /* Size estimate for an image created with @opts (create options; "size"
     * set unless @in_bs) holding the data of @in_bs (may be NULL).  Plain
     * context.  NULL: the format cannot be measured. */
    int (*measure)(QDict *opts, BlockDriverState *in_bs,
                   BlockMeasureInfo *info, Error **errp);
    /* Naming (block/filename.c).  strong_opts: the options that change
     * what the node reads, kept in its "json:{...}" name ("x." stands for
     * every "x.*" key); NULL: none.  plain_filename: a name in the
     * driver's own syntax ("null-co://", "blkdebug:CONF:IMAGE") for the
     * node whose name options are @full, or NULL when only json: can say
     * it (g_free()).  Without the hook protocols keep the filename they
     * were opened with and formats take their protocol child's. */
    const char *const *strong_opts;
    char *(*plain_filename)(BlockDriverState *bs, QDict *full);
    /* Reopen with new driver options (bdrv_reopen_prepare_opts()).
     * prepare: @opts are the new options of this node, flat (children's
     * under "<child>."); check those the driver can change, remove them
     * from @opts and stage their values (merged with the current ones).
     * Then commit (make the staged values current) or abort (drop them)
     * follows; both must do nothing when nothing is staged.  NULL
     * prepare: the driver changes none, its options may only keep their
     * values. */
    int (*reopen_prepare)(BlockDriverState *bs, QDict *opts, Error **errp);
    void (*reopen_commit)(BlockDriverState *bs);
    void (*reopen_abort)(BlockDriverState *bs);
    /* Removable media (host_cdrom): false while there is none, and every
     * request then fails with -ENOMEDIUM.  NULL: always there. */
    bool (*is_inserted)(BlockDriverState *bs);
    /* Formats: option values checked once the file child is open (or
     * absent), before the driver's open asks for it: the reference's
     * formats read their options before requiring a file. */
    int (*check_open_opts)(QDict *options, Error **errp);
    /* Metadata check (strata-img check); NULL: "This image format does
     * not support checks". */
    const BlockDriverCheckOps *check;
};

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
void bdrv_refresh_limits(BlockDriverState *bs, Error **errp);
/* Forget cached block status of @bs (drivers call it on changes the core
 * cannot see). */
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
/* drain.c -> backend.c: a drained section ended; queued requests of
 * every backend re-check whether they may go. */
void blk_restart_all_queued(void);
/* Call @fn for every BlockBackend (drain_all / flush_all). */
void blk_foreach(void (*fn)(BlockBackend *blk, void *opaque), void *opaque);
/* Jobs issuing requests inside their own drained section: never queue. */
void blk_set_disable_request_queuing(BlockBackend *blk, bool disable);

/* Human filename fix-ups shared by protocols: strips "proto:" prefixes. */
const char *bdrv_strip_protocol_prefix(const char *filename, const char *proto);

#endif
