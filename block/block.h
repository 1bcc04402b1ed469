/*
 * The block layer's public interface: nodes, opening, the request API and
 * BlockBackend handles for tool code.
 *
 * Threading: everything here runs on the main loop thread
 * (aio_get_default()).  Functions marked coroutine_fn must run in a
 * coroutine; the blk_* functions without "_co_" are synchronous wrappers
 * usable from plain code (they run a coroutine and poll the loop) and also
 * from a coroutine (then they call through directly).
 *
 * Return values: data path 0 (or a byte count where stated) / -errno;
 * control path also fills Error **errp.
 */
#ifndef STRATA_BLOCK_H
#define STRATA_BLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include "coroutine/coroutine.h"
#include "qobject/qobject.h"
#include "util/aio.h"
#include "util/error.h"
#include "util/iov.h"

typedef struct BlockDriver BlockDriver;
typedef struct BlockDriverState BlockDriverState;
typedef struct BdrvChild BdrvChild;
typedef struct BlockBackend BlockBackend;

#define BDRV_SECTOR_BITS   9
#define BDRV_SECTOR_SIZE   (1ULL << BDRV_SECTOR_BITS)
/* Largest image length and request end the core accepts: INT64_MAX
 * rounded down to 1 GiB, the largest alignment a node may ask for, as
 * QEMU (its messages print this maximum, 9223372035781033984). */
#define BDRV_MAX_ALIGNMENT (1LL << 30)
#define BDRV_MAX_LENGTH    (INT64_MAX & ~(int64_t)(BDRV_MAX_ALIGNMENT - 1))
#define BDRV_REQUEST_MAX_BYTES (INT32_MAX & ~(int64_t)(BDRV_SECTOR_SIZE - 1))
/* How much of an image format probing reads. */
#define BLOCK_PROBE_BUF_SIZE 512

/* ---- open flags ---- */
enum {
    BDRV_O_RDWR          = 0x0002,
    BDRV_O_SNAPSHOT      = 0x0008,  /* temporary overlay, discarded on close */
    BDRV_O_NOCACHE       = 0x0020,  /* O_DIRECT (cache.direct=on) */
    BDRV_O_NO_BACKING    = 0x0100,
    BDRV_O_NO_FLUSH      = 0x0200,  /* cache.no-flush=on (cache=unsafe) */
    BDRV_O_COPY_ON_READ  = 0x0400,
    BDRV_O_CHECK         = 0x1000,  /* opened by check: tables it reports on
                                     * are not judged at open */
    BDRV_O_UNMAP         = 0x4000,  /* discard=unmap */
    BDRV_O_PROTOCOL      = 0x8000,  /* open only a protocol node */
    BDRV_O_NO_IO         = 0x10000, /* metadata only: no data I/O will follow */
    BDRV_O_FORCE_SHARE   = 0x20000, /* -U: read-only, share everything */
    BDRV_O_CREATE        = 0x40000, /* opened by create: allow writes past EOF */
    BDRV_O_RESIZE        = 0x400000, /* the user takes the resize permission */
    /* The I/O engine for file nodes below that were given no aio= (qemu-img
     * bench -i/-n); nodes without an engine ignore them. */
    BDRV_O_AIO_THREADS   = 0x80000,
    BDRV_O_AIO_NATIVE    = 0x100000,
    BDRV_O_AIO_IO_URING  = 0x200000,
};
#define BDRV_O_AIO_MASK (BDRV_O_AIO_THREADS | BDRV_O_AIO_NATIVE | \
                         BDRV_O_AIO_IO_URING)

/* Cache mode names -> flags: none, directsync, writeback, writethrough,
 * unsafe.  *writethrough tells whether the backend's write cache is off. */
int bdrv_parse_cache_mode(const char *mode, int *flags, bool *writethrough);
/* discard mode: "ignore"/"off" or "unmap"/"on". */
int bdrv_parse_discard_flags(const char *mode, int *flags);

/* ---- request flags ---- */
typedef enum {
    BDRV_REQ_FUA             = 0x01,  /* write through to stable storage */
    BDRV_REQ_MAY_UNMAP       = 0x02,  /* write_zeroes may deallocate */
    BDRV_REQ_ZERO_WRITE      = 0x04,  /* (internal) pwritev carries zeroes */
    BDRV_REQ_NO_FALLBACK     = 0x08,  /* write_zeroes: fail fast (-ENOTSUP) if not efficient */
    /* Store the data compressed (cluster-aligned requests).  A node
     * stores compressed writes in the order they reach it, i.e. the order
     * of submission unless the backend was drained meanwhile or a
     * serialising request overlapped; compressing may run concurrently.
     * So a caller wanting the clusters laid out in guest order submits in
     * guest order without waiting for earlier writes to complete (convert,
     * see its WriteOrder). */
    BDRV_REQ_WRITE_COMPRESSED= 0x10,
    BDRV_REQ_SERIALISING     = 0x20,  /* wait for all overlapping requests */
    BDRV_REQ_PREFETCH        = 0x40,  /* copy-on-read without returning data */
    BDRV_REQ_UNSAFE_NO_PROBE_CHECK = 0x80, /* (internal) raw probed write ok */
    /* copy_range: blocks of the target's 4 KiB grid whose data is all
     * zero are left unwritten; the caller knows the target reads as
     * zeroes there (convert -S 4k onto a new image).  Drivers that
     * cannot do it return -ENOTSUP. */
    BDRV_REQ_SKIP_ZERO_BLOCKS = 0x100,
    /* read: data that comes from below this node (backing chain) is
     * also written into it, in whole clusters (copy-on-read); consumed
     * by the node that receives it.  With PREFETCH nothing is returned. */
    BDRV_REQ_COPY_ON_READ    = 0x200,
    /* write: a node that honours it (bdrv_allocates_in_order()) places
     * the writes carrying it in the order they reach it, as it does
     * compressed writes (see there): a caller wanting guest-order layout
     * submits in guest order without waiting for earlier writes to
     * complete.  Others ignore it. */
    BDRV_REQ_ALLOC_IN_ORDER  = 0x400,
} BdrvRequestFlags;

/* ---- block status ---- */
enum {
    BDRV_BLOCK_DATA         = 0x01,  /* reads return data from this layer */
    BDRV_BLOCK_ZERO         = 0x02,  /* reads return zeroes */
    BDRV_BLOCK_OFFSET_VALID = 0x04,  /* *map is a valid offset in *file */
    BDRV_BLOCK_RAW          = 0x08,  /* (driver) ask the core to look in *file at *map */
    BDRV_BLOCK_ALLOCATED    = 0x10,  /* content comes from this layer (not backing) */
    BDRV_BLOCK_EOF          = 0x20,  /* range ends at end of image */
    BDRV_BLOCK_RECURSE      = 0x40,  /* (driver) refine ZERO by asking *file */
    BDRV_BLOCK_COMPRESSED   = 0x80,
};

typedef enum {
    PREALLOC_MODE_OFF, PREALLOC_MODE_METADATA, PREALLOC_MODE_FALLOC,
    PREALLOC_MODE_FULL,
} PreallocMode;
/* "off", "metadata", "falloc", "full" */
bool prealloc_mode_parse(const char *s, PreallocMode *mode);
const char *prealloc_mode_name(PreallocMode mode);

typedef enum {
    DETECT_ZEROES_OFF, DETECT_ZEROES_ON, DETECT_ZEROES_UNMAP,
} DetectZeroes;

/* ---- permissions (bit values fixed: the file driver's lock byte for
 * permission bit i is 100 + i, for "not shared" 200 + i, as QEMU) ---- */
enum {
    BLK_PERM_CONSISTENT_READ = 0x01,
    BLK_PERM_WRITE           = 0x02,
    BLK_PERM_WRITE_UNCHANGED = 0x04,
    BLK_PERM_RESIZE          = 0x08,
    BLK_PERM_ALL             = 0x0f,
    DEFAULT_PERM_PASSTHROUGH = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE |
                               BLK_PERM_WRITE_UNCHANGED | BLK_PERM_RESIZE,
    DEFAULT_PERM_UNCHANGED   = BLK_PERM_ALL & ~(BLK_PERM_WRITE | BLK_PERM_RESIZE),
};
/* "consistent read", "write", "write unchanged", "resize" */
const char *bdrv_perm_name(uint64_t single_perm);
/* Comma-separated names of every bit in @perm (g_free()). */
char *bdrv_perm_names(uint64_t perm);

/* ---- option schemas: one per driver for open and one for create ---- */
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
/* Prints "Supported <fmt> options:" (@fmt NULL: "Supported options:") and
 * one line per option, sorted by name, as -o help. */
void bdrv_opts_print_help(const char *fmt, const BlockOptDesc *schema);
/* The same lines under the title line @title (e.g. "Amend options for
 * 'qcow2':"). */
void bdrv_opts_print_help_titled(const char *title, const BlockOptDesc *schema);

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

typedef struct BlockDriverInfo {
    int cluster_size;             /* 0 if none */
    int subcluster_size;          /* allocation unit if smaller; 0: none */
    bool is_dirty;
    bool needs_compressed_writes;
    bool is_encrypted;            /* the image's data is encrypted */
} BlockDriverInfo;

/* measure: bytes a new image of this format needs (qemu-img measure). */
typedef struct BlockMeasureInfo {
    uint64_t required;            /* for the data in use */
    uint64_t fully_allocated;     /* with every cluster allocated */
    bool has_bitmaps;
    uint64_t bitmaps;             /* persistent bitmaps' share, if any */
} BlockMeasureInfo;

/* check: consistency of a format's metadata (strata-img check).  The
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

/* What a check may repair (strata-img check -r leaks|all). */
typedef enum {
    BDRV_FIX_LEAKS  = 1,
    BDRV_FIX_ERRORS = 2,
} BdrvCheckMode;

/* Check @bs (plain or coroutine context): -ENOTSUP when its driver has no
 * check ops, -ENOMEDIUM without a driver; @res zeroed first (block.c). */
int bdrv_check(BlockDriverState *bs, BlockCheckResult *res, int fix);
/* Does the format store compressed writes (convert -c)?  For an open
 * node: does @bs take BDRV_REQ_WRITE_COMPRESSED? */
bool bdrv_format_supports_compression(const BlockDriver *drv);
bool bdrv_can_write_compressed(const BlockDriverState *bs);
/* Does @bs honour BDRV_REQ_ALLOC_IN_ORDER? */
bool bdrv_allocates_in_order(const BlockDriverState *bs);
/* Does @bs's driver have a check? */
bool bdrv_can_check(const BlockDriverState *bs);

/* amend: progress of a running amend, in work units (@done of @total). */
typedef void BlockAmendStatusCB(BlockDriverState *bs, int64_t done,
                                int64_t total, void *opaque);
/* The options @drv can amend (NULL: the format cannot amend). */
const BlockOptDesc *bdrv_amend_opts(const BlockDriver *drv);
/* Change format options of @bs's image in place (plain context); @opts
 * holds keys of bdrv_amend_opts() only.  -ENOTSUP ("Block driver 'x' does
 * not support option amendment") when the driver cannot; else the
 * driver's result, @errp set on failure. */
int bdrv_amend_options(BlockDriverState *bs, QDict *opts,
                       BlockAmendStatusCB *cb, void *cb_opaque, bool force,
                       Error **errp);

/* ---- drivers and nodes ---- */
const BlockDriver *bdrv_find_format(const char *name);     /* any kind, by name */
const BlockDriver *bdrv_find_protocol(const char *filename, bool allow_prefix,
                                      Error **errp);
const char *bdrv_driver_name(const BlockDriver *drv);
/* Calls @fn for every registered driver name, sorted (for help output). */
void bdrv_iterate_format(void (*fn)(void *opaque, const char *name), void *opaque,
                         bool read_only_too);
/* True, with @errp set, when @drv is a format Strata recognises but cannot
 * open or create yet ("The 'vmdk' format is not supported by this build
 * yet"); false (errp untouched) for NULL and for every real driver. */
bool bdrv_not_yet_supported_error(const BlockDriver *drv, Error **errp);
/* Probe @buf (first bytes of an image): best-scoring format driver, which
 * may be one that is not yet supported. */
const BlockDriver *bdrv_probe_format(const uint8_t *buf, int buf_size,
                                     const char *filename);

/*
 * Open a graph.  @filename (may be NULL, may be "json:{...}" or carry a
 * "proto:" prefix) and @options (flat dotted keys; ownership is taken;
 * may be NULL) are merged.  Recognised generic options: driver, node-name,
 * read-only, cache.direct, cache.no-flush, discard, detect-zeroes,
 * force-share, auto-read-only, file (child options as file.*, or a node
 * name), backing (as file), filename.  Without "driver" the format is
 * probed (raw is guessed with the reference's warning, and then writes to
 * the first sector are restricted).  Returns a node with one reference.
 */
BlockDriverState *bdrv_open(const char *filename, const char *reference,
                            QDict *options, int flags, Error **errp);
void bdrv_ref(BlockDriverState *bs);
void bdrv_unref(BlockDriverState *bs);
BlockDriverState *bdrv_find_node(const char *node_name);

const char *bdrv_get_format_name(const BlockDriverState *bs);   /* NULL if none */
const char *bdrv_get_node_name(const BlockDriverState *bs);
const char *bdrv_get_filename(const BlockDriverState *bs);
/* Recompute the names of @bs and of the nodes below it (block/filename.c):
 * the plain filename that opens the same graph, or "json:{...}" of the
 * options that change what is read (QEMU's bdrv_refresh_filename rules). */
void bdrv_refresh_filename(BlockDriverState *bs);
/* The same for @bs alone, its children's names taken as they are (the
 * end of an open: each child named itself when it was opened), so that
 * opening a chain of N images costs N namings, not N^2. */
void bdrv_refresh_filename_node(BlockDriverState *bs);
bool bdrv_is_read_only(const BlockDriverState *bs);
/* Drop the cached lengths of @bs and the nodes below (after a reopen). */
void bdrv_forget_lengths(BlockDriverState *bs);
/* A medium in @bs and every node below it (removable media: host_cdrom)? */
bool bdrv_is_inserted(BlockDriverState *bs);
BlockDriverState *bdrv_file_bs(const BlockDriverState *bs);      /* file child or NULL */
BlockDriverState *bdrv_backing_bs(const BlockDriverState *bs);   /* backing child or NULL */

/*
 * Backing files (block/backing.c).  A format records the name and format
 * of its backing file in its header; bdrv_open() opens it (unless
 * BDRV_O_NO_BACKING, "backing": null, or "backing": "<node-name>"; the
 * options "backing.*" drive the open when given) and attaches it as the
 * "backing" child.  A relative name is relative to the overlay's
 * directory.
 */
/* The backing file name / format as the image records them; NULL if none. */
const char *bdrv_get_backing_filename(const BlockDriverState *bs);
const char *bdrv_get_backing_format(const BlockDriverState *bs);
/* The recorded name resolved against @bs's directory (g_free()); NULL
 * without error when there is none, NULL with @errp set when a relative
 * name cannot be resolved ("Cannot generate a base directory for ..."). */
char *bdrv_get_full_backing_filename(BlockDriverState *bs, Error **errp);
/* @backing as named from an image called @backed (g_free()): a name with a
 * protocol prefix ("json:{...}", "nbd://...") or an absolute one stays as
 * it is, a relative one is put in @backed's directory; NULL with @errp set
 * when @backed is a json: name ("Cannot use relative backing file names
 * for 'x'"). */
char *bdrv_combine_backing_name(const char *backed, const char *backing,
                                Error **errp);
/* Record a new backing file name and format in @bs's image (NULL: none)
 * and in the node.  Does not open or detach anything.  -errno with @errp
 * set ("Could not change the backing file to 'x': <strerror>"). */
int bdrv_change_backing_file(BlockDriverState *bs, const char *file,
                             const char *fmt, Error **errp);
/* Does @bs's driver know how to empty an image (commit's make-empty)? */
bool bdrv_can_make_empty(const BlockDriverState *bs);
/* Drop everything @bs allocates so that reads fall through to its backing
 * file (qcow2: every cluster of the active tables).  Drains @bs around
 * it; -ENOTSUP when the driver cannot. */
int bdrv_make_empty(BlockDriverState *bs);
/* Longest backing chain bdrv_open() follows (the reference has no limit
 * and loops on a cycle until memory runs out). */
#define BDRV_BACKING_CHAIN_MAX 1000
/* Skip filters downward (filtered child) to the first non-filter node. */
BlockDriverState *bdrv_skip_filters(BlockDriverState *bs);
int bdrv_reopen_set_read_only(BlockDriverState *bs, bool read_only, Error **errp);
/* cache.direct for @bs and the nodes below it (not backing files);
 * limits are refreshed.  On failure the nodes keep their mode. */
int bdrv_reopen_set_direct(BlockDriverState *bs, bool direct, Error **errp);
/* Driver options on reopen, as a transaction: prepare lets the drivers of
 * @bs and of the nodes below (keys "<child>.x") check and take the options
 * they can change, removing them from @opts (flat; what is left is for the
 * caller to handle); on failure nothing is staged.  After a successful
 * prepare call commit, or abort if a later step of the reopen failed. */
int bdrv_reopen_prepare_opts(BlockDriverState *bs, QDict *opts, Error **errp);
void bdrv_reopen_commit_opts(BlockDriverState *bs);
void bdrv_reopen_abort_opts(BlockDriverState *bs);

/* Creating images: @opts holds create options (flat; "size" etc.);
 * borrowed, not taken. */
int bdrv_create(const BlockDriver *drv, const char *filename, QDict *opts,
                Error **errp);
int bdrv_create_file(const char *filename, QDict *opts, Error **errp);
/* Remove a file bdrv_create_file() made, when its format's create fails
 * afterwards (the reference deletes it too); only plain files are
 * removed, other protocols are left as they are. */
void bdrv_delete_created_file(const char *filename);

/* ---- the request path (block/io.c): every request of every node ---- */
int coroutine_fn bdrv_co_preadv(BdrvChild *child, int64_t offset, int64_t bytes,
                                IOVector *qiov, BdrvRequestFlags flags);
int coroutine_fn bdrv_co_pwritev(BdrvChild *child, int64_t offset, int64_t bytes,
                                 IOVector *qiov, BdrvRequestFlags flags);
int coroutine_fn bdrv_co_pwrite_zeroes(BdrvChild *child, int64_t offset,
                                       int64_t bytes, BdrvRequestFlags flags);
int coroutine_fn bdrv_co_pdiscard(BdrvChild *child, int64_t offset, int64_t bytes);
int coroutine_fn bdrv_co_flush(BlockDriverState *bs);
int coroutine_fn bdrv_co_truncate(BdrvChild *child, int64_t offset, bool exact,
                                  PreallocMode prealloc, BdrvRequestFlags flags,
                                  Error **errp);
int64_t coroutine_fn bdrv_co_getlength(BlockDriverState *bs);
/* bdrv_co_getlength() from plain (open, permission) context. */
int64_t bdrv_getlength(BlockDriverState *bs);
int64_t coroutine_fn bdrv_co_get_allocated_file_size(BlockDriverState *bs);
int coroutine_fn bdrv_co_copy_range(BdrvChild *src, int64_t src_offset,
                                    BdrvChild *dst, int64_t dst_offset,
                                    int64_t bytes, BdrvRequestFlags read_flags,
                                    BdrvRequestFlags write_flags);
/* Compare [a_offset, +bytes) of protocol node @a with [b_offset, +bytes)
 * of @b (e.g. where block status maps two chains' data) without reading
 * into the caller: differ[i] (bytes / unit entries) says whether unit i
 * differs; @keep_a (may be NULL; @bytes long) receives @a's data of the
 * units that differ, at their place, the rest left undefined.  -ENOTSUP
 * when the nodes cannot (the caller then reads both); @bytes must be a
 * positive multiple of @unit. */
int coroutine_fn bdrv_co_compare_range(BlockDriverState *a, int64_t a_offset,
                                       BlockDriverState *b, int64_t b_offset,
                                       int64_t bytes, int64_t unit,
                                       bool *differ, uint8_t *keep_a);
/*
 * Block status of [offset, offset+bytes) in @bs alone.  Returns
 * BDRV_BLOCK_* flags (>= 0) for the first *pnum bytes (*pnum > 0 unless
 * at EOF), or -errno.  map and file (may be NULL) name where the data lives
 * when BDRV_BLOCK_OFFSET_VALID is set.  Results may be cached per node.
 */
int coroutine_fn bdrv_co_block_status(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, int64_t *pnum,
                                      int64_t *map, BlockDriverState **file);
/* The same merged down the backing chain from @top to @base (exclusive;
 * NULL = whole chain); *depth (may be NULL) = 1 for @top, 2 for its
 * backing, ... and 0 if unallocated everywhere. */
int coroutine_fn bdrv_co_block_status_above(BlockDriverState *top,
                                            BlockDriverState *base,
                                            int64_t offset, int64_t bytes,
                                            int64_t *pnum, int64_t *map,
                                            BlockDriverState **file, int *depth);
int coroutine_fn bdrv_co_is_allocated(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, int64_t *pnum);

/* Drain: quiesce @bs and its subtree.  Nests.  While drained, backends
 * above queue new requests; in-flight ones finish before this returns. */
void bdrv_drained_begin(BlockDriverState *bs);
void bdrv_drained_end(BlockDriverState *bs);
void bdrv_drain_all(void);
/* Flush every node (tools call it before exit). */
int bdrv_flush_all(void);
/* Close every remaining node (at exit, after backends are gone). */
void bdrv_close_all(void);

/* co_run_sync(), used by the synchronous wrappers, is in util/aio.h. */

/* ---- BlockBackend: a tool's handle on the root of a graph ---- */
BlockBackend *blk_new(uint64_t perm, uint64_t shared_perm);
/* bdrv_open() + attach.  Permissions as the reference tools take them
 * (checked in /proc/locks): consistent read, plus write with BDRV_O_RDWR;
 * everything shared.  Resize is taken on the first truncate. */
BlockBackend *blk_new_open(const char *filename, const char *reference,
                           QDict *options, int flags, Error **errp);
int blk_insert_bs(BlockBackend *blk, BlockDriverState *bs, Error **errp);
void blk_remove_bs(BlockBackend *blk);
void blk_unref(BlockBackend *blk);
BlockDriverState *blk_bs(BlockBackend *blk);
int blk_set_perm(BlockBackend *blk, uint64_t perm, uint64_t shared, Error **errp);
void blk_get_perm(BlockBackend *blk, uint64_t *perm, uint64_t *shared);
/* Write cache off = writethrough: every write gets FUA (emulated by a
 * flush where the node lacks it). */
void blk_set_enable_write_cache(BlockBackend *blk, bool wce);
bool blk_enable_write_cache(BlockBackend *blk);
/* Allow writes past EOF (image creation). */
void blk_set_allow_write_beyond_eof(BlockBackend *blk, bool allow);
bool blk_is_read_only(BlockBackend *blk);

int coroutine_fn blk_co_preadv(BlockBackend *blk, int64_t offset, int64_t bytes,
                               IOVector *qiov, BdrvRequestFlags flags);
int coroutine_fn blk_co_pwritev(BlockBackend *blk, int64_t offset, int64_t bytes,
                                IOVector *qiov, BdrvRequestFlags flags);
int coroutine_fn blk_co_pread(BlockBackend *blk, int64_t offset, int64_t bytes,
                              void *buf, BdrvRequestFlags flags);
int coroutine_fn blk_co_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
                               const void *buf, BdrvRequestFlags flags);
int coroutine_fn blk_co_pwrite_zeroes(BlockBackend *blk, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags);
int coroutine_fn blk_co_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes);
int coroutine_fn blk_co_flush(BlockBackend *blk);
int coroutine_fn blk_co_truncate(BlockBackend *blk, int64_t offset, bool exact,
                                 PreallocMode prealloc, BdrvRequestFlags flags,
                                 Error **errp);
int coroutine_fn blk_co_copy_range(BlockBackend *src, int64_t src_offset,
                                   BlockBackend *dst, int64_t dst_offset,
                                   int64_t bytes, BdrvRequestFlags read_flags,
                                   BdrvRequestFlags write_flags);

int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags);
int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags);
int blk_preadv(BlockBackend *blk, int64_t offset, int64_t bytes,
               IOVector *qiov, BdrvRequestFlags flags);
int blk_pwritev(BlockBackend *blk, int64_t offset, int64_t bytes,
                IOVector *qiov, BdrvRequestFlags flags);
int blk_pwrite_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                      BdrvRequestFlags flags);
int blk_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes);
int blk_flush(BlockBackend *blk);
/* bdrv_save_vmstate() on the root, then a flush in writethrough mode. */
int blk_save_vmstate(BlockBackend *blk, const void *buf, int64_t pos,
                     int64_t bytes);
int blk_truncate(BlockBackend *blk, int64_t offset, bool exact,
                 PreallocMode prealloc, BdrvRequestFlags flags, Error **errp);
int64_t blk_getlength(BlockBackend *blk);
/* A node attached, with its medium in (removable media: host_cdrom)? */
bool blk_available(BlockBackend *blk);
/* The length even with no medium in (convert sizes its sources so, as the
 * reference does); blk_getlength() then fails with -ENOMEDIUM. */
int64_t blk_size(BlockBackend *blk);
/* Block status of the root node (merged over its backing chain when
 * @above is true), synchronous. */
int blk_block_status(BlockBackend *blk, bool above, int64_t offset,
                     int64_t bytes, int64_t *pnum, int64_t *map,
                     BlockDriverState **file, int *depth);
int blk_is_allocated(BlockBackend *blk, int64_t offset, int64_t bytes,
                     int64_t *pnum);

/* Backend-level drain: stops new requests (they queue) until drained_end. */
void blk_drain(BlockBackend *blk);
/* Number of requests in flight on this backend. */
unsigned blk_in_flight(BlockBackend *blk);

/* --object throttle-group,id=..,x-bps-total=..: create a throttle group
 * shared by throttle nodes naming it.  @opts: the object's options without
 * qom-type (details in block/filter/throttle-groups.h). */
bool throttle_group_create_from_opts(QDict *opts, Error **errp);

/* ---- what tools may ask of drivers and nodes (block.c, debug.c) ----
 * Tools see BlockDriver and BlockDriverState only as opaque handles. */
/* The driver's create options, or NULL if it cannot create images. */
const BlockOptDesc *bdrv_create_opts(const BlockDriver *drv);
/* Can images of this format have a backing file? */
bool bdrv_supports_backing(const BlockDriver *drv);
/* Size estimate for a new @drv image created with @opts (create options;
 * "size" set unless @in_bs) holding the data of @in_bs (may be NULL).
 * -ENOTSUP with "Block driver 'x' does not support size measurement"
 * when the format cannot be measured. */
int bdrv_measure(const BlockDriver *drv, QDict *opts, BlockDriverState *in_bs,
                 BlockMeasureInfo *info, Error **errp);

/* @bs's BlockDriverInfo (zeroed first): the driver's, a filter's
 * filtered child's when the filter has none, else -ENOTSUP (block.c). */
int bdrv_get_info(BlockDriverState *bs, BlockDriverInfo *bdi);
/* "format-specific" {type, data} of info, or NULL if the driver has none
 * (errp set only on failure). */
QDict *bdrv_get_specific_info(BlockDriverState *bs, Error **errp);
/* The protocol name of @bs's driver ("file"), NULL for formats/filters. */
const char *bdrv_get_protocol_name(const BlockDriverState *bs);
/* Was @bs's format guessed (no "driver" given)?  Then a raw format
 * restricts writes to the first sector. */
bool bdrv_format_probed(const BlockDriverState *bs);
/* The limits the node's requests obey (never NULL). */
const BlockLimits *bdrv_get_limits(const BlockDriverState *bs);
/* The @i-th child of @bs in attach order, its edge name in *@name (may be
 * NULL); NULL past the last one. */
BlockDriverState *bdrv_child_at(const BlockDriverState *bs, unsigned i,
                                const char **name);
/* The flat options @bs was opened with (borrowed; may be NULL). */
QDict *bdrv_get_options(const BlockDriverState *bs);
/* BDRV_O_* flags of @bs. */
int bdrv_get_flags(const BlockDriverState *bs);
DetectZeroes bdrv_get_detect_zeroes(const BlockDriverState *bs);
/* Change the flags the core reads on every request (BDRV_O_NO_FLUSH,
 * BDRV_O_UNMAP) and detect-zeroes in place, as a reopen does; the driver
 * is not involved.  BDRV_O_RDWR and BDRV_O_NOCACHE only change through
 * bdrv_reopen_set_read_only() / bdrv_reopen_set_direct() and are kept. */
void bdrv_reopen_set_flags(BlockDriverState *bs, int flags, DetectZeroes dz);

/* Debug breakpoints (strata-io break/resume/wait_break; block/debug.h):
 * forwarded to the first node at or below @bs whose driver handles
 * breakpoints (blkdebug).  -ENOTSUP if none. */
int bdrv_debug_breakpoint(BlockDriverState *bs, const char *event, const char *tag);
int bdrv_debug_remove_breakpoint(BlockDriverState *bs, const char *tag);
int bdrv_debug_resume(BlockDriverState *bs, const char *tag);
bool bdrv_debug_is_suspended(BlockDriverState *bs, const char *tag);

/* ---- internal snapshots (block/snapshot.c) ----
 * Strings are cut to the sizes the reference keeps (127 / 255 bytes). */
#define BDRV_SNAPSHOT_ID_MAX 128
#define BDRV_SNAPSHOT_NAME_MAX 256
typedef struct BdrvSnapshotInfo {
    char id[BDRV_SNAPSHOT_ID_MAX];        /* "" on create: the driver picks */
    char name[BDRV_SNAPSHOT_NAME_MAX];
    uint64_t vm_state_size;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;                      /* UINT64_MAX: none recorded */
} BdrvSnapshotInfo;
/* Does @bs's driver (filters skipped) store internal snapshots? */
bool bdrv_can_snapshot(BlockDriverState *bs);
/* The snapshots of @bs in table order (*tab g_free()d by the caller);
 * returns their number, or -ENOTSUP without snapshot support. */
int bdrv_snapshot_list(BlockDriverState *bs, BdrvSnapshotInfo **tab);
/* The first snapshot whose name is @name (as qemu-img looks them up);
 * 0 and *sn filled, or -ENOENT. */
int bdrv_snapshot_find(BlockDriverState *bs, BdrvSnapshotInfo *sn,
                       const char *name);
/* Create a snapshot of the current state described by @sn (sn->id
 * filled in when empty).  Returns 0 or -errno. */
int bdrv_snapshot_create(BlockDriverState *bs, BdrvSnapshotInfo *sn);
/* Revert to the snapshot with ID or name @id_or_name; errp carries the
 * reference's message ("Failed to load snapshot: ..."). */
int bdrv_snapshot_goto(BlockDriverState *bs, const char *id_or_name,
                       Error **errp);
/* Delete the snapshot matching @id and/or @name (either may be NULL). */
int bdrv_snapshot_delete(BlockDriverState *bs, const char *id,
                         const char *name, Error **errp);
/* Make a read-only node read the snapshot matching @id and/or @name
 * instead of the current state (convert -l). */
int bdrv_snapshot_load_tmp(BlockDriverState *bs, const char *id,
                           const char *name, Error **errp);
/* The same, @id_or_name tried as an ID first, then as a name. */
int bdrv_snapshot_load_tmp_by_id_or_name(BlockDriverState *bs,
                                         const char *id_or_name,
                                         Error **errp);
/* VM state (qemu-io read -b / write -b): @bytes at @pos of the state
 * area; -ENOTSUP for formats without one. */
int bdrv_save_vmstate(BlockDriverState *bs, const void *buf, int64_t pos,
                      int64_t bytes);
int bdrv_load_vmstate(BlockDriverState *bs, void *buf, int64_t pos,
                      int64_t bytes);
/* ---- dirty bitmaps (block/dirty-bitmap.c) ----
 * Named bitmaps on a node, one bit per granule (a power of two >= 512
 * bytes) of the node's length.  Every write, zero write, discard and copy
 * that reaches the node through the request path sets the bits of its
 * enabled bitmaps.  Persistent ones are stored by the format (qcow2) when
 * the node closes; an inconsistent one (in-use in the image) has unknown
 * contents and only removal is allowed (bdrv_dirty_bitmap_check()). */
typedef struct BdrvDirtyBitmap BdrvDirtyBitmap;
typedef struct HBitmap HBitmap;
#define BDRV_BITMAP_MAX_NAME_SIZE 1023
/* "Bitmap already exists: x" / "Bitmap name too long: x". */
BdrvDirtyBitmap *bdrv_create_dirty_bitmap(BlockDriverState *bs,
                                          uint32_t granularity,
                                          const char *name, Error **errp);
void bdrv_release_dirty_bitmap(BdrvDirtyBitmap *bm);
void bdrv_release_all_dirty_bitmaps(BlockDriverState *bs);
BdrvDirtyBitmap *bdrv_find_dirty_bitmap(BlockDriverState *bs,
                                        const char *name);
/* The @i-th bitmap, newest first (the reference's order), NULL past the
 * last. */
BdrvDirtyBitmap *bdrv_dirty_bitmap_at(BlockDriverState *bs, unsigned i);
const char *bdrv_dirty_bitmap_name(const BdrvDirtyBitmap *bm);
uint32_t bdrv_dirty_bitmap_granularity(const BdrvDirtyBitmap *bm);
uint64_t bdrv_dirty_bitmap_size(const BdrvDirtyBitmap *bm);
bool bdrv_dirty_bitmap_enabled(const BdrvDirtyBitmap *bm);
void bdrv_dirty_bitmap_set_enabled(BdrvDirtyBitmap *bm, bool enabled);
bool bdrv_dirty_bitmap_persistent(const BdrvDirtyBitmap *bm);
void bdrv_dirty_bitmap_set_persistent(BdrvDirtyBitmap *bm, bool persistent);
bool bdrv_dirty_bitmap_inconsistent(const BdrvDirtyBitmap *bm);
/* Mark inconsistent (and disabled). */
void bdrv_dirty_bitmap_set_inconsistent(BdrvDirtyBitmap *bm);
/* The bits are still in the image: bdrv_dirty_bitmap_load() reads them. */
void bdrv_dirty_bitmap_set_unloaded(BdrvDirtyBitmap *bm);
int bdrv_dirty_bitmap_load(BdrvDirtyBitmap *bm, Error **errp);
/* The bits, in bytes of the node (load first); allocated on first use. */
HBitmap *bdrv_dirty_bitmap_hbitmap(BdrvDirtyBitmap *bm);
/* The same, or NULL while no bit was ever set (nothing allocated). */
HBitmap *bdrv_dirty_bitmap_peek(BdrvDirtyBitmap *bm);
/* -EINVAL with the reference's message for an inconsistent bitmap. */
int bdrv_dirty_bitmap_check(const BdrvDirtyBitmap *bm, Error **errp);
void bdrv_clear_dirty_bitmap(BdrvDirtyBitmap *bm);
/* dst |= src (granularities may differ; sizes must not). */
int bdrv_merge_dirty_bitmap(BdrvDirtyBitmap *dst, BdrvDirtyBitmap *src,
                            Error **errp);
/* The request path: bytes [offset, offset+bytes) of @bs changed. */
void bdrv_dirty_bitmaps_mark(BlockDriverState *bs, int64_t offset,
                             int64_t bytes);
void bdrv_dirty_bitmaps_truncate(BlockDriverState *bs, int64_t size);
/* The cluster size clamped to [4 KiB, 64 KiB], else 64 KiB. */
uint32_t bdrv_default_bitmap_granularity(BlockDriverState *bs);
/* The format's checks for a new persistent bitmap ("Can't store
 * persistent bitmaps to x: Operation not supported" without support). */
bool bdrv_can_store_new_dirty_bitmap(BlockDriverState *bs, const char *name,
                                     uint32_t granularity, Error **errp);
bool bdrv_supports_persistent_dirty_bitmap(BlockDriverState *bs);
/* Store @bs's persistent bitmaps now, as closing it would, then release
 * them (the reference's inactivation, so that a tool learns of a failure
 * and close has nothing left to write); nothing without a format that
 * stores them.  On failure they stay. */
int bdrv_store_persistent_dirty_bitmaps(BlockDriverState *bs, Error **errp);
/* Release @bm; a persistent one is removed from the image first (on
 * failure it stays, -errno with @errp set). */
int bdrv_remove_dirty_bitmap(BdrvDirtyBitmap *bm, Error **errp);

/* Register every built-in driver (idempotent; tools call it first). */
void bdrv_init(void);

/* Block jobs (commit, rebase): block/job.h. */
#include "block/job.h"

#endif
