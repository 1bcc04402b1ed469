/*
 * qcow2 driver internals, shared by the files of block/format/qcow2/.
 *
 *   qcow2.c          driver table, open/close, probe, options
 *   header.c         header and extensions: parse, validate, rewrite
 *   cache.c          metadata table cache (L2 tables, refcount blocks)
 *   refcount.c       refcounts, cluster allocation and freeing
 *   cluster.c        L1/L2 lookup and L2 entry updates
 *   rw.c             read / write (COW, compressed) / block status / flush
 *   zero.c           zero writes and discards
 *   create.c         create, create options, preallocation
 *   info.c           get_info, format-specific info, measure, truncate
 *   bitmap.c         persistent bitmap directory (for info)
 *   snapshot.c       internal snapshots: table, create/goto/delete, vmstate
 *   compress.c       (de)compression of compressed clusters (compress.h)
 *   check.c          consistency check (strata-img check); check.h
 *   amend.c          option amendment (strata-img amend)
 *   refwidth.c       refcount width changes (amend refcount_bits)
 *   repair.c         check -r repairs, dirty-image repair at open
 *
 * Locking: s->lock (CoMutex) protects all metadata (caches, L1, refcount
 * table, free-cluster hints).  Reads take it only for the lookup;
 * allocating writes allocate under it, register the clusters in
 * s->inflight, write their data unlocked, then relock to update the L2
 * entries; every other request touching in-flight clusters waits
 * (qcow2_wait_inflight), which serialises allocations of one cluster.
 */
#ifndef STRATA_QCOW2_H
#define STRATA_QCOW2_H

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include "block/debug.h"
#include "block/drivers.h"
#include "util/cutils.h"
#include "compress.h"

#define QCOW_MAGIC 0x514649fbU          /* "QFI\xfb" */
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_DEFAULT_CLUSTER_BITS 16
#define QCOW2_MAX_REFTABLE_SIZE (8 * MiB)
#define QCOW2_MAX_L1_SIZE (32 * MiB)
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_CRYPT_AES 1              /* header crypt_method values */
#define QCOW2_CRYPT_LUKS 2
#define QCOW2_MAX_L2_CACHE_DEFAULT (32 * MiB)

/* header extension magics */
#define QCOW2_EXT_END           0x00000000U
#define QCOW2_EXT_BACKING_FMT   0xe2792acaU
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857U
#define QCOW2_EXT_CRYPTO        0x0537be77U
#define QCOW2_EXT_BITMAPS       0x23852875U
#define QCOW2_EXT_DATA_FILE     0x44415441U

/* incompatible / compatible / autoclear feature bits */
#define QCOW2_INCOMPAT_DIRTY        (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT      (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE    (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2        (1ULL << 4)
#define QCOW2_INCOMPAT_MASK         0x1fULL
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ULL << 0)
#define QCOW2_AUTOCLEAR_BITMAPS     (1ULL << 0)
#define QCOW2_AUTOCLEAR_DATA_RAW    (1ULL << 1)
#define QCOW2_AUTOCLEAR_MASK        0x3ULL

/* L1/L2 entry bits */
#define QCOW_OFLAG_COPIED     (1ULL << 63)
#define QCOW_OFLAG_COMPRESSED (1ULL << 62)
#define QCOW_OFLAG_ZERO       (1ULL << 0)
#define L1E_OFFSET_MASK       0x00fffffffffffe00ULL
#define REFT_OFFSET_MASK      0xfffffffffffffe00ULL
#define L2E_OFFSET_MASK       0x00fffffffffffe00ULL
#define L1E_RESERVED_MASK     0x7f000000000001ffULL
#define QCOW2_SUBCLUSTERS     32

typedef enum {
    QCOW2_CLUSTER_UNALLOCATED,
    QCOW2_CLUSTER_ZERO_PLAIN,     /* zero, no host cluster */
    QCOW2_CLUSTER_ZERO_ALLOC,     /* zero, host cluster preallocated */
    QCOW2_CLUSTER_NORMAL,
    QCOW2_CLUSTER_COMPRESSED,
} Qcow2ClusterType;

typedef enum {
    QCOW2_SC_NORMAL, QCOW2_SC_ZERO_PLAIN, QCOW2_SC_ZERO_ALLOC,
    QCOW2_SC_UNALLOC_PLAIN, QCOW2_SC_UNALLOC_ALLOC, QCOW2_SC_COMPRESSED,
    QCOW2_SC_INVALID,
} Qcow2SubclusterType;

/* overlap-check bits */
enum {
    QCOW2_OL_MAIN_HEADER = 1 << 0,
    QCOW2_OL_ACTIVE_L1 = 1 << 1,
    QCOW2_OL_ACTIVE_L2 = 1 << 2,
    QCOW2_OL_REFCOUNT_TABLE = 1 << 3,
    QCOW2_OL_REFCOUNT_BLOCK = 1 << 4,
    QCOW2_OL_SNAPSHOT_TABLE = 1 << 5,
    QCOW2_OL_INACTIVE_L1 = 1 << 6,
    QCOW2_OL_INACTIVE_L2 = 1 << 7,
    QCOW2_OL_BITMAP_DIRECTORY = 1 << 8,
    QCOW2_OL_ALL = 0x1ff,
    QCOW2_OL_CACHED = QCOW2_OL_ALL & ~QCOW2_OL_INACTIVE_L2,
    QCOW2_OL_CONSTANT = QCOW2_OL_MAIN_HEADER | QCOW2_OL_ACTIVE_L1 |
                        QCOW2_OL_REFCOUNT_TABLE | QCOW2_OL_SNAPSHOT_TABLE,
};

/* The fixed header, host byte order. */
typedef struct Qcow2Header {
    uint32_t magic, version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size, cluster_bits;
    uint64_t size;
    uint32_t crypt_method, l1_size;
    uint64_t l1_table_offset, refcount_table_offset;
    uint32_t refcount_table_clusters, nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompatible_features, compatible_features, autoclear_features;
    uint32_t refcount_order, header_length;
    uint8_t compression_type;
} Qcow2Header;

/* An extension we keep verbatim (unknown ones, bitmaps). */
typedef struct Qcow2UnknownExt {
    uint32_t magic;
    uint32_t len;
    uint8_t *data;
} Qcow2UnknownExt;

/* A bitmap directory entry (bitmap.c), host order. */
typedef struct Qcow2Bitmap {
    char *name;
    uint64_t table_offset;
    uint32_t table_size;          /* entries */
    uint32_t flags;               /* as on disk */
    uint8_t gran_bits;
    bool kept;                    /* store: the entry survives as it is */
} Qcow2Bitmap;

/* The snapshots' L1 tables sorted for the overlap checks (overlap.c). */
typedef struct Qcow2RangeIndex Qcow2RangeIndex;

typedef struct Qcow2InactiveL1 {
    uint64_t offset;
    uint32_t size;                /* entries */
} Qcow2InactiveL1;

/* One snapshot table entry, host order (qcow2.txt "Snapshot table"). */
typedef struct Qcow2Snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;             /* entries */
    char *id, *name;
    uint64_t disk_size, vm_state_size, vm_clock_nsec;
    uint64_t icount;              /* UINT64_MAX: none */
    uint32_t date_sec, date_nsec;
    uint32_t extra_size;          /* extra data bytes as read (<= 1024) */
    uint8_t *unknown_extra;       /* extra_size - 24 bytes kept verbatim */
} Qcow2Snapshot;

typedef struct Qcow2InFlight {
    uint64_t start, end;
} Qcow2InFlight;

typedef struct Qcow2Feature {
    uint8_t type, bit;
    char name[47];
} Qcow2Feature;

typedef struct Qcow2CacheEntry {
    uint64_t offset;              /* 0: free */
    uint8_t *table;
    uint64_t lru;
    int ref;
    bool dirty;
} Qcow2CacheEntry;

typedef struct Qcow2Cache {
    Qcow2CacheEntry *entries;
    int size;
    size_t table_size;
    uint64_t lru_counter;
    int overlap_kind;             /* QCOW2_OL_ACTIVE_L2 / REFCOUNT_BLOCK */
    struct Qcow2Cache *depends;   /* flush this one first */
    bool depends_on_flush;
} Qcow2Cache;

/* A run of freed host clusters to discard in the file (refcount.c). */
typedef struct Qcow2Discard {
    uint64_t offset, bytes;
} Qcow2Discard;

typedef struct BDRVQcow2State {
    Qcow2Header h;
    int cluster_bits;
    uint64_t cluster_size;
    int l2_bits;                  /* log2 entries per L2 table */
    int l2_size;                  /* entries per L2 table */
    int l2_entry_size;            /* 8, or 16 with extended L2 */
    int subcluster_bits;
    uint64_t subcluster_size;
    bool extended_l2;
    int refcount_order;
    int refcount_bits;
    int64_t refcount_max;
    int refblock_bits;            /* log2 entries per refcount block */
    uint64_t *l1_table;           /* host order */
    uint32_t l1_size;
    uint64_t *refcount_table;     /* host order */
    uint32_t refcount_table_size; /* entries */
    /* High-water marks: every non-zero L1 / refcount table entry is below
     * them (the overlap checks scan no further).  Whoever stores a
     * non-zero entry calls qcow2_note_l1() / qcow2_note_reftable(). */
    uint32_t l1_used;
    uint32_t reftable_used;
    Qcow2Cache l2_cache;
    Qcow2Cache refcount_cache;
    uint64_t free_cluster_index;
    uint64_t free_byte_offset;    /* compressed clusters pack from here */
    CoMutex lock;
    /* Guest ranges (whole clusters) whose allocating write is writing its
     * data with s->lock released; requests touching them wait. */
    GArray *inflight;             /* Qcow2InFlight */
    CoQueue inflight_wait;

    /* header extensions */
    char *image_backing_format;
    char *image_data_file;
    GPtrArray *unknown_exts;      /* Qcow2UnknownExt * */
    Qcow2Feature *features;
    int nb_features;
    bool has_crypto_ext;
    QList *bitmap_info;           /* info's "bitmaps", NULL if none */
    uint64_t snapshots_size;      /* bytes of the snapshot table */
    GArray *inactive_l1;          /* Qcow2InactiveL1 of the snapshots */
    Qcow2RangeIndex *inactive_l1_index; /* built from it when needed */
    Qcow2Snapshot *snapshots;     /* the parsed table (snapshot.c) */
    uint32_t nb_snapshots;        /* entries in snapshots */
    uint64_t crypto_offset, crypto_length;
    uint64_t header_ext_end;      /* where extensions end in cluster 0 */

    BdrvChild *data_file;         /* == bs->file without external data */
    int overlap_check;
    bool discard_passthrough_request, discard_passthrough_snapshot,
         discard_passthrough_other, discard_no_unref;
    GArray *discards;             /* Qcow2Discard: freed, not yet passed */
    int discard_batch;            /* > 0: discards wait for the batch end */
    bool use_lazy_refcounts;
    bool dirty_set;
    bool corrupt_reported;
    /* Marked corrupt while writable: requests fail with -ENOMEDIUM and
     * close writes nothing back (the reference drops the node's driver). */
    bool broken;
    /* closing: the reference frees its active L1 table before the close
     * writes back bitmaps and caches, so those writes are not checked
     * against active L2 tables */
    bool closing;
    bool prealloc_checked, metadata_prealloc; /* block status RECURSE */
    /* Opened dirty (lazy refcounts, not cleanly closed) by check -r
     * (other read-write opens repair first): refcounts may be too low
     * until its repair.  We allocate only past the end of the file,
     * ignore underflows (leaks at worst) and keep the dirty bit. */
    bool refcounts_stale;
    Qcow2CompressionType compression_type;
    uint64_t cache_clean_interval;
    AioTimer *cache_clean_timer;  /* drops unused cache entries */
    uint64_t l2_cache_bytes, l2_entry_bytes, refcount_cache_bytes;
    /* reopen: the values before a staged change, and its options */
    struct Qcow2Tunables *reopen_old;
    QDict *reopen_opts;

    /* compressed writes store in arrival order (rw.c, block.h) */
    uint64_t cw_next;             /* ticket of the next to arrive */
    uint64_t cw_turn;             /* ticket allowed to store now */
    CoQueue cw_queue;
    /* plain writes allocate in arrival order (rw.c, block.h) */
    uint64_t aw_next;             /* ticket of the next to arrive */
    uint64_t aw_turn;             /* ticket allowed to allocate now */
    CoQueue aw_queue;
    /* spare buffers of compressed reads (read-compressed.c) */
    GPtrArray *zread_spare;

    /* persistent bitmaps (bitmap.c): the directory as on disk */
    GArray *bitmaps;              /* Qcow2Bitmap */
    uint64_t bitmap_dir_offset, bitmap_dir_size;
    uint64_t bitmap_bytes_loaded; /* bits read into memory, all bitmaps */
} BDRVQcow2State;

/* A non-zero entry was stored at L1 index @i. */
static inline void qcow2_note_l1(BDRVQcow2State *s, uint32_t i)
{
    s->l1_used = MAX(s->l1_used, i + 1);
}

/* A non-zero entry was stored at refcount table index @i. */
static inline void qcow2_note_reftable(BDRVQcow2State *s, uint32_t i)
{
    s->reftable_used = MAX(s->reftable_used, i + 1);
}

/* ---- byte order ---- */
static inline uint32_t q_ld32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}
static inline uint64_t q_ld64(const uint8_t *p)
{
    return (uint64_t)q_ld32(p) << 32 | q_ld32(p + 4);
}
static inline uint16_t q_ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline void q_st32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static inline void q_st64(uint8_t *p, uint64_t v)
{
    q_st32(p, v >> 32);
    q_st32(p + 4, (uint32_t)v);
}
static inline void q_st16(uint8_t *p, uint16_t v)
{
    p[0] = v >> 8; p[1] = (uint8_t)v;
}

static inline uint64_t qcow2_offset_into_cluster(BDRVQcow2State *s,
                                                 uint64_t off)
{
    return off & (s->cluster_size - 1);
}
static inline uint64_t qcow2_start_of_cluster(BDRVQcow2State *s,
                                              uint64_t off)
{
    return off & ~(s->cluster_size - 1);
}
static inline int qcow2_l2_index(BDRVQcow2State *s, uint64_t off)
{
    return (off >> s->cluster_bits) & (s->l2_size - 1);
}
static inline uint64_t qcow2_l1_index(BDRVQcow2State *s, uint64_t off)
{
    return off >> (s->cluster_bits + s->l2_bits);
}
/* Entries needed in the L1 table for a disk of @size bytes. */
static inline uint64_t qcow2_l1_entries(int cluster_bits, int l2_bits,
                                        uint64_t size)
{
    int shift = cluster_bits + l2_bits;
    return (size + (1ULL << shift) - 1) >> shift;
}

/* Buffer-based I/O on a child (coroutine context). */
static inline int coroutine_fn q_pread(BdrvChild *c, uint64_t off,
                                       uint64_t len, void *buf)
{
    IOVector v;
    iov_vec_init_buf(&v, buf, len);
    return bdrv_co_preadv(c, off, len, &v, 0);
}
static inline int coroutine_fn q_pwrite(BdrvChild *c, uint64_t off,
                                        uint64_t len, const void *buf)
{
    IOVector v;
    iov_vec_init_buf(&v, (void *)buf, len);
    return bdrv_co_pwritev(c, off, len, &v, 0);
}

/* ---- qcow2.c ---- */
/* Read @bytes at @offset of the file; what lies past its end reads as
 * zeroes (tables of truncated images). */
int coroutine_fn qcow2_read_table(BlockDriverState *bs, uint64_t offset,
                                  uint64_t bytes, void *buf);
/* A table of @n big-endian 64-bit entries at @offset, into @out in host
 * order.  @out comes zeroed (g_new0) and what lies past the end of the
 * file is left untouched: a hostile table size then costs address space
 * the kernel never backs, not time.  Returns how many entries the file
 * held (a partial last one counts) or -errno. */
int64_t coroutine_fn qcow2_read_table64(BlockDriverState *bs, uint64_t offset,
                                       uint32_t n, uint64_t *out);

/* Many small reads of one table (the snapshot table: an entry is a few
 * reads) served from one buffered window of up to @max bytes, refilled
 * when a read leaves it.  The window holds only what the file holds:
 * reads past its end are zeroes without any I/O, so a hostile count of
 * entries past the end of a small file costs no memory or reads.
 * Zero-initialise, set .bs and .max, release with qcow2_window_free(). */
#define QCOW2_TABLE_WINDOW (1 * MiB)

typedef struct Qcow2Window {
    BlockDriverState *bs;
    size_t max;                 /* largest window (bytes) */
    uint64_t off;               /* file offset of buf[0] */
    size_t len;                 /* valid bytes in buf (zeroes past EOF) */
    size_t size;                /* bytes allocated for buf */
    uint8_t *buf;
} Qcow2Window;

int coroutine_fn qcow2_window_read(Qcow2Window *w, uint64_t off,
                                   size_t len, void *buf);
void qcow2_window_free(Qcow2Window *w);

/* ---- header.c ---- */
/* Open, in the reference's order: the fixed fields and feature bits
 * (unknown incompatible features named from the extensions' table)... */
int coroutine_fn qcow2_read_header(BlockDriverState *bs, Error **errp);
/* ...then, after the L1 and refcount tables, the header extensions... */
int coroutine_fn qcow2_read_header_exts(BlockDriverState *bs, Error **errp);
/* ...and, after the data file, the backing file name. */
int coroutine_fn qcow2_read_backing_name(BlockDriverState *bs, Error **errp);
int qcow2_check_header_tables(BlockDriverState *bs, int64_t file_len,
                              Error **errp);
/* Snapshot table offset aligned, table end representable. */
bool qcow2_snapshot_table_ok(BDRVQcow2State *s);
int coroutine_fn qcow2_update_header(BlockDriverState *bs);
/* .backing.change_backing_file: rewrite the backing name and format. */
/* empty.c: drop every cluster of the active tables (commit's make-empty). */
int coroutine_fn qcow2_co_make_empty(BlockDriverState *bs);
int qcow2_change_backing_file(BlockDriverState *bs, const char *file,
                              const char *fmt);
int coroutine_fn qcow2_write_incompat(BlockDriverState *bs, uint64_t bits);
/* The same bits written with the whole header cluster (the reference's
 * way to clear dirty/corrupt); the field alone if the header cannot be
 * rebuilt in one cluster. */
int coroutine_fn qcow2_write_incompat_header(BlockDriverState *bs,
                                             uint64_t bits);
int coroutine_fn qcow2_mark_dirty(BlockDriverState *bs);
int coroutine_fn qcow2_mark_clean(BlockDriverState *bs);
void qcow2_signal_corruption(BlockDriverState *bs, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);
/* The same without marking anything: "Image is corrupt: ..." once. */
void qcow2_signal_corruption_nonfatal(BlockDriverState *bs,
                                      const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);
void qcow2_free_header_exts(BDRVQcow2State *s);
/* ---- bitmap.c ---- */
/* Open: the bitmap directory checked, the node's persistent bitmaps
 * created (read-write: marked in-use in the image). */
int coroutine_fn qcow2_read_bitmap_list(BlockDriverState *bs, Error **errp);
/* Reopen read-write: the consistent bitmaps marked in-use. */
int coroutine_fn qcow2_bitmaps_reopen_rw(BlockDriverState *bs);
/* Close (read-write): every persistent bitmap stored, in-use cleared. */
int coroutine_fn qcow2_store_bitmaps(BlockDriverState *bs, Error **errp);
/* Does the image hold bitmaps we keep up to date (autoclear bit kept)? */
bool qcow2_keeps_bitmaps(BDRVQcow2State *s);
void qcow2_free_bitmaps(BDRVQcow2State *s);
/* measure's "bitmaps" for @in_bs's persistent bitmaps. */
uint64_t qcow2_bitmaps_measure(BlockDriverState *in_bs, uint64_t cluster_size);
extern const BlockDriverBitmapOps qcow2_bitmap_ops;
int coroutine_fn qcow2_read_snapshot_extents(BlockDriverState *bs);
/* ---- snapshot.c ---- */
/* Parse the snapshot table into s->snapshots with the reference's
 * errors; @tolerant (check mode): keep what could be read, no error. */
int coroutine_fn qcow2_read_snapshots(BlockDriverState *bs, bool tolerant,
                                      Error **errp);
void qcow2_free_snapshots(BDRVQcow2State *s);
/* Write s->snapshots as a new table and point the header at it (amend,
 * repair: after changing entries in place); 0 or -errno. */
int coroutine_fn qcow2_rewrite_snapshot_table(BlockDriverState *bs);
/* -EFBIG / -EINVAL with the reference's "Snapshot L1 table ..." error
 * when a snapshot's L1 size or offset is unusable; 0 otherwise. */
int qcow2_check_snapshot_l1(BlockDriverState *bs, uint64_t l1_offset,
                            uint32_t l1_size, Error **errp);
extern const BlockDriverSnapshotOps qcow2_snapshot_ops;

/* ---- cache.c ---- */
void qcow2_cache_init(Qcow2Cache *c, int entries, size_t table_size,
                      int overlap_kind);
void qcow2_cache_destroy(Qcow2Cache *c);
int coroutine_fn qcow2_cache_get(BlockDriverState *bs, Qcow2Cache *c,
                                 uint64_t offset, void **table);
int coroutine_fn qcow2_cache_get_empty(BlockDriverState *bs, Qcow2Cache *c,
                                       uint64_t offset, void **table);
void qcow2_cache_put(Qcow2Cache *c, void **table);
void qcow2_cache_mark_dirty(Qcow2Cache *c, void *table);
/* Would writing back @c's dirty entries fail the overlap check? */
bool coroutine_fn qcow2_cache_writeback_refused(BlockDriverState *bs,
                                                Qcow2Cache *c);
int coroutine_fn qcow2_cache_flush(BlockDriverState *bs, Qcow2Cache *c);
int coroutine_fn qcow2_cache_write(BlockDriverState *bs, Qcow2Cache *c);
void qcow2_cache_discard(Qcow2Cache *c, uint64_t offset);
/* The table cached for @offset, or NULL; no reference is taken (valid
 * until the next cache operation). */
const void *qcow2_cache_peek(Qcow2Cache *c, uint64_t offset);
/* @c's dirty entries may be written only after @dep's (flushes @c first
 * when @dep depended on @c). */
int coroutine_fn qcow2_cache_set_dependency(BlockDriverState *bs,
                                            Qcow2Cache *c, Qcow2Cache *dep);
void qcow2_cache_depends_on_flush(Qcow2Cache *c);
void qcow2_cache_clean_unused(Qcow2Cache *c);

/* ---- refcount.c ---- */
int coroutine_fn qcow2_get_refcount(BlockDriverState *bs, uint64_t cluster,
                                    uint64_t *refcount);
int64_t coroutine_fn qcow2_alloc_clusters(BlockDriverState *bs,
                                          uint64_t size);
int64_t coroutine_fn qcow2_alloc_clusters_at0(BlockDriverState *bs,
                                              uint64_t size);
int64_t coroutine_fn qcow2_alloc_bytes(BlockDriverState *bs, int size);
int coroutine_fn qcow2_alloc_clusters_at(BlockDriverState *bs,
                                         uint64_t offset, int64_t n);
int coroutine_fn qcow2_update_refcount(BlockDriverState *bs, uint64_t offset,
                                       uint64_t length, int64_t addend);
/* The same for check -r: a raised refcount does not order the L2 table
 * cache after the refcount blocks (no later free then flushes them
 * early: a repair the check throws away stays out of the file). */
int coroutine_fn qcow2_repair_update_refcount(BlockDriverState *bs,
                                              uint64_t offset,
                                              uint64_t length, int64_t addend);
void coroutine_fn qcow2_free_clusters(BlockDriverState *bs, uint64_t offset,
                                      uint64_t size, bool discard);
void coroutine_fn qcow2_free_unused_cluster(BlockDriverState *bs,
                                            uint64_t offset);
/* The same without the cluster_free debug event (the caller fired it). */
void coroutine_fn qcow2_free_clusters_noevent(BlockDriverState *bs,
                                              uint64_t offset, uint64_t size,
                                              bool discard);
/* Freed clusters are discarded in the file as merged runs: at once, or
 * (between begin and end) when the batch ends, as the reference does
 * for guest discards, zero writes and snapshot refcount updates. */
void qcow2_discards_begin(BlockDriverState *bs);
void coroutine_fn qcow2_discards_end(BlockDriverState *bs, int ret);
void coroutine_fn qcow2_free_l2_entry(BlockDriverState *bs, uint64_t l2e);
void coroutine_fn qcow2_free_l2_entry_pass(BlockDriverState *bs, uint64_t l2e,
                                           bool pass);
/* Whoever changes s->inactive_l1 calls this: the index is rebuilt from
 * it at the next check. */
void qcow2_inactive_l1_changed(BDRVQcow2State *s);
int coroutine_fn qcow2_check_metadata_overlap(BlockDriverState *bs, int ign,
                                              uint64_t offset, uint64_t size);
int coroutine_fn qcow2_refuse_header_alloc(BlockDriverState *bs);
int coroutine_fn qcow2_pre_write_overlap_check(BlockDriverState *bs, int ign,
                                               uint64_t offset,
                                               uint64_t size);
int coroutine_fn qcow2_refcount_read_table(BlockDriverState *bs,
                                           Error **errp);
int coroutine_fn qcow2_shrink_reftable(BlockDriverState *bs);
/* Preallocated growth (prealloc.c), as the reference lays it out: the
 * missing refcount blocks from cluster @start (the end of the used part
 * of the file) on, then a new table of the exact size, both counting
 * themselves and @extra clusters past them; the old table is freed.
 * Returns the first cluster past them, or -errno (lock held). */
int64_t coroutine_fn qcow2_refcount_area(BlockDriverState *bs, uint64_t start,
                                         uint64_t extra);
/* *end: one past the last cluster with a non-zero refcount among the
 * first @clusters, 0 when none (lock held). */
int coroutine_fn qcow2_used_end(BlockDriverState *bs, uint64_t clusters,
                                uint64_t *end);
/* The same over the whole file; *flen: the file's length (lock held). */
int coroutine_fn qcow2_file_used_end(BlockDriverState *bs, int64_t *flen,
                                     uint64_t *end);
uint64_t qcow2_get_refcount_entry(BDRVQcow2State *s, const void *block,
                                  uint64_t index);
void qcow2_set_refcount_entry(BDRVQcow2State *s, void *block, uint64_t index,
                              uint64_t value);

/* ---- cluster.c ---- */
uint64_t qcow2_l2_entry(BDRVQcow2State *s, const uint8_t *l2, int idx);
uint64_t qcow2_l2_bitmap(BDRVQcow2State *s, const uint8_t *l2, int idx);
void qcow2_set_l2_entry(BDRVQcow2State *s, uint8_t *l2, int idx,
                        uint64_t v);
void qcow2_set_l2_bitmap(BDRVQcow2State *s, uint8_t *l2, int idx,
                         uint64_t v);
Qcow2ClusterType qcow2_cluster_type(BDRVQcow2State *s, uint64_t l2e);
/* Extended entry with an impossible subcluster bitmap (whole entry). */
bool qcow2_l2_bitmap_invalid(BDRVQcow2State *s, uint64_t l2e,
                             uint64_t bitmap);
Qcow2SubclusterType qcow2_subcluster_type(BDRVQcow2State *s, uint64_t l2e,
                                          uint64_t bitmap, int sc);
/* Type of the subcluster at @offset and how many bytes (<= @bytes) from
 * @offset share it; *host the host offset (normal / zero_alloc) or the
 * compressed descriptor (compressed). */
int coroutine_fn qcow2_get_host_offset(BlockDriverState *bs, uint64_t offset,
                                       uint64_t *bytes, uint64_t *host,
                                       Qcow2SubclusterType *type);
int coroutine_fn qcow2_get_l2_table(BlockDriverState *bs, uint64_t offset,
                                    bool alloc, void **l2, int *idx);
int coroutine_fn qcow2_write_l1_entry(BlockDriverState *bs, uint64_t l1_index);
int coroutine_fn qcow2_write_table_entry(BlockDriverState *bs, int ol_kind,
                                         uint64_t off, uint64_t value,
                                         BlkdebugEvent ev);
int coroutine_fn qcow2_grow_l1_table(BlockDriverState *bs, uint64_t min_size,
                                     bool exact);
void qcow2_parse_compressed(BDRVQcow2State *s, uint64_t l2e,
                            uint64_t *host, uint64_t *len);

/* ---- rw.c ---- */
int coroutine_fn qcow2_co_copy_range_from(BlockDriverState *bs,
                                          BdrvChild *src, int64_t offset,
                                          BdrvChild *dst, int64_t dst_offset,
                                          int64_t bytes, BdrvRequestFlags rf,
                                          BdrvRequestFlags wf);
int coroutine_fn qcow2_co_copy_range_to(BlockDriverState *bs,
                                        BdrvChild *src, int64_t src_offset,
                                        BdrvChild *dst, int64_t offset,
                                        int64_t bytes, BdrvRequestFlags rf,
                                        BdrvRequestFlags wf);
int coroutine_fn qcow2_co_preadv(BlockDriverState *bs, int64_t offset,
                                 int64_t bytes, IOVector *qiov,
                                 BdrvRequestFlags flags);
int coroutine_fn qcow2_co_pwritev(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, IOVector *qiov,
                                  BdrvRequestFlags flags);
int coroutine_fn qcow2_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes, BdrvRequestFlags flags);
int coroutine_fn qcow2_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes);
int coroutine_fn qcow2_co_block_status(BlockDriverState *bs, bool want_zero,
                                       int64_t offset, int64_t bytes,
                                       int64_t *pnum, int64_t *map,
                                       BlockDriverState **file);
int coroutine_fn qcow2_co_flush_to_os(BlockDriverState *bs);
/* The flush of the data path: refcount blocks stay cached while the
 * dirty bit of lazy refcounts is on disk. */
int coroutine_fn qcow2_co_flush_user(BlockDriverState *bs);
int coroutine_fn qcow2_co_pwritev_compressed(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             IOVector *qiov);
int coroutine_fn qcow2_zero_range(BlockDriverState *bs, uint64_t offset,
                                  uint64_t bytes, bool unmap);
int coroutine_fn qcow2_discard_range(BlockDriverState *bs, uint64_t offset,
                                     uint64_t bytes, bool full_discard,
                                     bool pass_always);
/* A shrink's full discard of [offset, offset + bytes), laid out as the
 * reference's: L1 entries without an L2 table get one first. */
int coroutine_fn qcow2_discard_cropped(BlockDriverState *bs, uint64_t offset,
                                       uint64_t bytes);
int coroutine_fn qcow2_mark_dirty_if_lazy(BlockDriverState *bs);
/* Wait (s->lock held) until no allocation in flight touches the clusters
 * of [offset, offset + bytes). */
void coroutine_fn qcow2_wait_inflight(BlockDriverState *bs, uint64_t offset,
                                      uint64_t bytes);
int coroutine_fn qcow2_alloc_range(BlockDriverState *bs, uint64_t offset,
                                   uint64_t bytes, int64_t *host_out,
                                   bool keep_zero);

/* ---- read-compressed.c ---- */
/* Read the compressed cluster at @offset (descriptor @l2e, looked up by
 * the caller) and the compressed ones after it, up to @bytes: *done gets
 * the guest bytes read into @qiov at @qoff (at least the first
 * cluster's).  Takes s->lock itself (the caller must not hold it). */
int coroutine_fn qcow2_read_compressed_run(BlockDriverState *bs,
                                           uint64_t offset, uint64_t bytes,
                                           uint64_t l2e, IOVector *qiov,
                                           size_t qoff, uint64_t *done);
/* Free the node's spare read buffers (close). */
void qcow2_zread_free(BDRVQcow2State *s);

/* ---- create.c / info.c ---- */
/* The parsed and checked create options. */
typedef struct Qcow2CreateArgs {
    uint64_t size, cluster_size, refcount_bits;
    int version;
    const char *backing_file, *backing_fmt, *data_file;
    bool data_file_raw, lazy, extended_l2;
    PreallocMode prealloc;
    Qcow2CompressionType ctype;
} Qcow2CreateArgs;
/* Parse and check create options with the reference's messages. */
int qcow2_parse_create_args(QDict *opts, Qcow2CreateArgs *a, Error **errp);
extern const BlockOptDesc qcow2_create_opts[];
int coroutine_fn qcow2_co_create_opts(const BlockDriver *drv,
                                      const char *filename, QDict *opts,
                                      Error **errp);
int qcow2_measure(QDict *opts, BlockDriverState *in_bs,
                  BlockMeasureInfo *info, Error **errp);
int coroutine_fn qcow2_preallocate(BlockDriverState *bs, uint64_t from,
                                   uint64_t to, PreallocMode mode,
                                   Error **errp);
/* prealloc.c: growth of an image without an external data file to
 * @to with falloc/full preallocation (create and truncate), as the
 * reference does it: every guest cluster from the one @from lies in gets
 * a new host cluster (a partial last cluster moves, its head copied),
 * the file is extended over them with @mode.  With BDRV_REQ_ZERO_WRITE
 * in *@flags, the file's zeroes stand for it when the file can give
 * them (the flag is then cleared and the clusters marked allocated). */
int coroutine_fn qcow2_grow_preallocated(BlockDriverState *bs, uint64_t from,
                                         uint64_t to, PreallocMode mode,
                                         BdrvRequestFlags *flags,
                                         Error **errp);
extern const BlockDriverInfoOps qcow2_info_ops;
extern const BlockDriverCheckOps qcow2_check_ops;
/* amend.c: compat, refcount_bits, lazy_refcounts, data file, size. */
extern const BlockDriverAmendOps qcow2_amend_ops;
/* refwidth.c: rewrite the refcount structures with 2^@order-bit entries
 * (s->lock held); @cb (may be NULL) reports progress.  Errors carry the
 * reference's messages. */
int coroutine_fn qcow2_change_refcount_order(BlockDriverState *bs, int order,
                                             BlockAmendStatusCB *cb,
                                             void *cb_opaque, Error **errp);
/* check.c: check, and repair what @fix (BdrvCheckMode) allows; for
 * callers holding s->lock or opening (the dirty-image repair). */
int coroutine_fn qcow2_check_repair(BlockDriverState *bs,
                                    BlockCheckResult *res, int fix);
int coroutine_fn qcow2_co_truncate(BlockDriverState *bs, int64_t offset,
                                   bool exact, PreallocMode prealloc,
                                   BdrvRequestFlags flags, Error **errp);

#endif
