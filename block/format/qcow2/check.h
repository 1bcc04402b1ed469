/*
 * qcow2 check and repair: the state of one check run, shared by check.c
 * (walking the metadata, comparing, reporting) and repair.c (fixing what
 * the walk found: refcounts, OFLAG_COPIED, L2 entries, the rebuilt
 * refcount structure).  Internal to block/format/qcow2/.
 */
#ifndef STRATA_QCOW2_CHECK_H
#define STRATA_QCOW2_CHECK_H

#include "qcow2.h"

#define CHUNK_BITS 12
#define CHUNK_LEN (1U << CHUNK_BITS)
#define REFT_RESERVED_MASK 0x1ffULL
#define L2E_STD_RESERVED_MASK 0x3f000000000001feULL
#define L2_BITMAP_ALL_ALLOC 0xffffffffULL
#define RB_CACHE_LEN 8
#define MAX_KEPT_ENTRIES (1U << 18)
#define MIN_CHUNK_BUDGET 1024
#define WINDOW_MAX 16
#define WINDOW_BYTES (2 * MiB)
#define SN_HEADER_LEN 40
#define SN_MAX_EXTRA 1024
#define SN_MAX_TABLE (64 * MiB)
#define SN_KNOWN_EXTRA 24         /* vm_state_size_large, disk_size, icount */

typedef struct KeptTable {
    uint32_t l1_index;
    uint32_t count;               /* entries in CheckState.kept */
} KeptTable;

typedef struct CheckState CheckState;

typedef struct L2Read {
    CheckState *c;
    uint64_t offset;
    uint8_t *buf;
    int ret;
} L2Read;

typedef struct Snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    uint32_t extra;               /* extra data bytes (as kept) */
    char *id, *name;              /* one block: free id only */
    /* what a rewritten table needs (check -r all, repair.c) */
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock, vm_state_size, disk_size, icount;
    uint8_t *unknown_extra;       /* extra data past the known 24 bytes */
} Snapshot;

struct CheckState {
    BlockDriverState *bs;
    BDRVQcow2State *s;
    BlockCheckResult *res;
    int64_t file_len;
    uint64_t nb_clusters;         /* clusters compared (file + at most 1) */
    void **chunks;                /* counts, CHUNK_LEN per chunk */
    bool wide;                    /* 32-bit counts (refcount_bits > 16) */
    uint64_t nb_chunks, chunks_used, chunk_budget;
    uint32_t count_max;
    uint64_t bitmap_entries_left; /* tables walked stay within the file */
    bool data_file;               /* external data file: data not counted */
    uint8_t *l2buf;               /* the L2 table being checked */
    GArray *kept_tables;          /* KeptTable */
    GArray *kept;                 /* uint64_t L2 entries (normal/zero-alloc) */
    bool kept_dropped;
    uint64_t rb_off[RB_CACHE_LEN];
    uint8_t *rb_buf[RB_CACHE_LEN];
    int rb_next, rb_last;
    GArray *snapshots;            /* Snapshot */
    Qcow2Window sn_win;           /* the snapshot table, while it is read */
    uint64_t snapshots_size;
    uint8_t *win;                 /* L2 tables read together */
    int win_len;
    L2Read reads[WINDOW_MAX];
    int pending;
    Coroutine *waiter;
    /* repair (check -r): BdrvCheckMode bits, and what the walk found */
    int fix;
    bool rebuild;                 /* refcount structure must be rebuilt */
    uint64_t l2_offset;           /* the L2 table being checked */
    bool l2_active;
    /* snapshot table: entries cut (table too big / too many), extra
     * data dropped, and the corruptions its rewrite would fix */
    uint32_t sn_reduced, sn_dropped;
    int sn_corruptions;
    uint64_t sn_table_offset;     /* where the table read starts */
};


/* OFLAG_COPIED must be set exactly when the refcount is 1. */
static inline bool qcow2_copied_ok(uint64_t entry, uint64_t rc)
{
    return (rc == 1) == ((entry & QCOW_OFLAG_COPIED) != 0);
}

/* ---- check.c ---- */
/* Cluster type of L2 entry @e (an external data file makes offset 0
 * with COPIED an allocated cluster). */
Qcow2ClusterType qcow2_check_entry_type(CheckState *c, uint64_t e);
/* Reference count of cluster @k in memory (0 when never counted). */
uint32_t qcow2_check_count(CheckState *c, uint64_t k);
/* Set the count of cluster @k, growing the counts past the file's end
 * if needed (repair allocations); -ENOMEM when that fails. */
int qcow2_check_count_set(CheckState *c, uint64_t k, uint32_t v);
/* The first cluster from @k on that may have a count (clusters no
 * reference reached are skipped a chunk at a time). */
uint64_t qcow2_check_skip_uncounted(CheckState *c, uint64_t k);
/* The file is @len bytes long now (a repair grew it): counts cover it
 * (and the one cluster a reference may reach past its end); -ENOMEM
 * when they cannot. */
int qcow2_check_file_grew(CheckState *c, int64_t len);
/* Forget every count and what step 1 kept (before counting again). */
void qcow2_check_counts_clear(CheckState *c);
/* Drop the refcount blocks the check read itself (after repairs). */
void qcow2_check_forget_refblocks(CheckState *c);
/* Step 1: count every reference (fix hooks per c->fix). */
int coroutine_fn qcow2_check_count_references(CheckState *c);
/* Step 2: compare counts with the image's refcounts, repairing what
 * @fix allows; *highest the last cluster in use. */
void coroutine_fn qcow2_check_compare(CheckState *c, int fix,
                                      uint64_t *highest);
/* The image's refcount of cluster @k, as the check reads it. */
int coroutine_fn qcow2_check_image_refcount(CheckState *c, uint64_t k,
                                            uint64_t *rc);

/* ---- repair.c ---- */
/* Cluster @k's refcount @rc made @count; false if that failed. */
bool coroutine_fn qcow2_repair_refcount(CheckState *c, uint64_t k,
                                        uint64_t rc, uint64_t count);
/* Entry @i of the L2 table being checked, a preallocated zero cluster
 * at an unaligned offset, becomes a plain zero cluster; -EIO when the
 * write would hit other metadata (the table is not checked further). */
int coroutine_fn qcow2_repair_l2_zero(CheckState *c, int i);
/* Refcount block @i lies past the end of the file: grow the file so it
 * is inside; < 0 if that failed (the structure must be rebuilt), and
 * -ENOMEM when the counts cannot follow (the check stops). */
int coroutine_fn qcow2_repair_refblock_outside(CheckState *c, uint64_t i,
                                               uint64_t off);
/* Active L1 entry @i gets the COPIED flag its L2 table's refcount asks. */
int coroutine_fn qcow2_repair_copied_l1(CheckState *c, uint32_t i,
                                        uint64_t rc);
/* The active L2 table at @l2_offset with the COPIED flags its data
 * clusters' refcounts ask for (each mismatch reported, then fixed). */
int coroutine_fn qcow2_repair_copied_l2(CheckState *c, uint64_t l2_offset);
/* Snapshot entries were cut: the header's count follows now. */
int coroutine_fn qcow2_repair_snapshot_count(CheckState *c);
/* The snapshot table written anew from what the check read (entries
 * completed, extra data cut), the old table freed. */
int coroutine_fn qcow2_repair_snapshot_table(CheckState *c);
/* Steps 1-2 with the refcount structure rebuilt from the counts. */
int coroutine_fn qcow2_repair_rebuild(CheckState *c, uint64_t *highest);
/* After a repair that left no corruption: dirty and corrupt bits off. */
int coroutine_fn qcow2_repair_mark_consistent(BlockDriverState *bs);

#endif
