#include "config.h"
/*
 * qcow2 consistency check (strata-img check): detection and reporting,
 * with the reference's messages, counters and order.
 *
 *   1. count references: header, active L1 and its L2 tables and data
 *      clusters (with allocation statistics), snapshot L1/L2 tables, the
 *      snapshot table, the refcount table, the crypto header, refcount
 *      blocks (each must be referenced exactly once);
 *   2. compare the counts with the image's refcounts, cluster by cluster
 *      (one read per refcount block): too small is a corruption, too
 *      large a leak;
 *   3. OFLAG_COPIED of the active L1 and L2 entries against the image's
 *      refcounts (refcount 1 <=> flag set).
 *
 * Every table is read once: the L2 entries step 3 needs are kept from
 * step 1 (up to MAX_KEPT_ENTRIES, 2 MiB, then tables are read again).  The
 * counts live in chunks allocated on first reference, so memory follows
 * what the metadata references, not the virtual or file size; a cluster
 * may only be counted when it lies inside the file (as the reference),
 * which bounds the chunk directory by the file's length.  Counts are 16
 * bits wide, 32 for images with wider refcounts, and stop at the image's
 * refcount maximum (64-bit refcount images overflow at 2^32 - 1
 * references, which no real image reaches).
 *
 * With -r leaks|all (c->fix) each step repairs what the reference
 * repairs, through repair.c, printing "Repairing" where it would print
 * "ERROR"/"Leaked"; step 2 may instead rebuild the whole refcount
 * structure from the counts; the snapshot table is rewritten last.  A
 * repair that leaves no corruption clears the dirty and corrupt bits.
 * The same entry repairs a dirty lazy-refcounts image at open
 * (qcow2_check_repair).  The state is shared with repair.c (check.h).
 *
 * Sections: in-memory counts; the image's refcounts (refcount block
 * reads); step 1: L2 tables, L2 table reads (a window of concurrent
 * reads), L1 tables, snapshots, persistent bitmaps, refcount blocks;
 * step 2: compare; step 3: OFLAG_COPIED; entry (init, free, repair
 * order, co_check).
 */
#include <stdio.h>
#include "check.h"

/* A repair may grow the file (a refcount block past its end): up to
 * this many clusters, 512 MiB of 16-bit counts. */
#define MAX_GROWN_CLUSTERS (1ULL << 28)

/* ---- in-memory counts ---- */

static uint32_t count_get(CheckState *c, uint64_t k)
{
    void *ch = k < c->nb_chunks << CHUNK_BITS ? c->chunks[k >> CHUNK_BITS]
                                              : NULL;
    unsigned i = k & (CHUNK_LEN - 1);

    if (!ch) {
        return 0;
    }
    return c->wide ? ((uint32_t *)ch)[i] : ((uint16_t *)ch)[i];
}

static void count_set(CheckState *c, void *ch, uint64_t k, uint32_t v)
{
    unsigned i = k & (CHUNK_LEN - 1);

    if (c->wide) {
        ((uint32_t *)ch)[i] = v;
    } else {
        ((uint16_t *)ch)[i] = v;
    }
}

uint32_t qcow2_check_count(CheckState *c, uint64_t k)
{
    return count_get(c, k);
}

/* The chunk directory covers cluster @k (repairs allocate past the end
 * of the file). */
static int count_grow(CheckState *c, uint64_t k)
{
    uint64_t need = (k >> CHUNK_BITS) + 1;
    void **chunks;

    if (need <= c->nb_chunks) {
        return 0;
    }
    if (need > (UINT64_MAX / sizeof(void *)) / 2) {
        return -ENOMEM;
    }
    chunks = g_try_renew(void *, c->chunks, need);
    if (!chunks) {
        return -ENOMEM;
    }
    c->chunks = chunks;
    memset(c->chunks + c->nb_chunks, 0,
           (need - c->nb_chunks) * sizeof(void *));
    c->nb_chunks = need;
    return 0;
}

int qcow2_check_file_grew(CheckState *c, int64_t len)
{
    uint64_t clusters = DIV_ROUND_UP((uint64_t)len, c->s->cluster_size);

    /* the reference's counts for that many clusters would not fit in
     * the memory it may use either */
    if (clusters > MAX_GROWN_CLUSTERS || count_grow(c, clusters) < 0) {
        return -ENOMEM;
    }
    c->file_len = len;
    c->nb_clusters = MAX(c->nb_clusters, clusters);
    return 0;
}

int qcow2_check_count_set(CheckState *c, uint64_t k, uint32_t v)
{
    void **slot;

    if (count_grow(c, k) < 0) {
        return -ENOMEM;
    }
    slot = &c->chunks[k >> CHUNK_BITS];
    if (!*slot) {
        /* repairs allocate few clusters: not held to the budget */
        *slot = g_try_malloc0((size_t)CHUNK_LEN * (c->wide ? 4 : 2));
        if (!*slot) {
            return -ENOMEM;
        }
        c->chunks_used++;
    }
    count_set(c, *slot, k, v);
    c->nb_clusters = MAX(c->nb_clusters, k + 1);
    return 0;
}

uint64_t qcow2_check_skip_uncounted(CheckState *c, uint64_t k)
{
    while (k >> CHUNK_BITS < c->nb_chunks && !c->chunks[k >> CHUNK_BITS]) {
        k = ((k >> CHUNK_BITS) + 1) << CHUNK_BITS;
    }
    return k;
}

void qcow2_check_counts_clear(CheckState *c)
{
    for (uint64_t i = 0; i < c->nb_chunks; i++) {
        if (c->chunks[i]) {
            memset(c->chunks[i], 0, (size_t)CHUNK_LEN * (c->wide ? 4 : 2));
        }
    }
    g_array_set_size(c->kept, 0);
    g_array_set_size(c->kept_tables, 0);
}

void qcow2_check_forget_refblocks(CheckState *c)
{
    for (int i = 0; i < RB_CACHE_LEN; i++) {
        c->rb_off[i] = 0;
    }
}

/* The chunk holding cluster @k, allocated on first use within budget;
 * counts are as wide as the image's refcounts need (16 or 32 bits). */
static void *count_chunk(CheckState *c, uint64_t k)
{
    void **slot;

    if (k >> CHUNK_BITS >= c->nb_chunks) {
        return NULL;            /* past what the file (grown) can hold */
    }
    slot = &c->chunks[k >> CHUNK_BITS];
    if (!*slot) {
        if (c->chunks_used >= c->chunk_budget) {
            return NULL;
        }
        *slot = g_try_malloc0((size_t)CHUNK_LEN * (c->wide ? 4 : 2));
        c->chunks_used += *slot != NULL;
    }
    return *slot;
}

/* One more reference to every cluster of [offset, offset + size); the
 * last cluster of the file may be partly beyond its end, anything more is
 * a corruption that is not counted (so counts never outgrow the file). */
static int inc_refs(CheckState *c, int64_t offset, int64_t size)
{
    uint64_t cs = c->s->cluster_size;

    if (size <= 0) {
        return 0;
    }
    if (offset < 0 || offset > INT64_MAX - size ||
        offset + size - c->file_len >= (int64_t)cs) {
        fprintf(stderr, "ERROR: counting reference for region exceeding the "
                "end of the file by one cluster or more: offset 0x%" PRIx64
                " size 0x%" PRIx64 "\n", offset, size);
        c->res->corruptions++;
        return 0;
    }
    for (uint64_t k = offset >> c->s->cluster_bits;
         k <= (uint64_t)(offset + size - 1) >> c->s->cluster_bits; k++) {
        void *ch = count_chunk(c, k);
        uint32_t v;

        if (!ch) {
            c->res->check_errors++;
            return -ENOMEM;
        }
        c->nb_clusters = MAX(c->nb_clusters, k + 1);
        v = count_get(c, k);
        if (v == c->count_max) {
            fprintf(stderr, "ERROR: overflow cluster offset=0x%" PRIx64 "\n"
                    "Use qemu-img amend to increase the refcount entry "
                    "width or qemu-img convert to create a clean copy if "
                    "the image cannot be opened for writing\n", k * cs);
            c->res->corruptions++;
            continue;
        }
        count_set(c, ch, k, v + 1);
    }
    return 0;
}

/* ---- the image's refcounts ---- */

/* The first lookup through a misaligned refcount block reports it, as
 * a runtime corruption (the image is marked corrupt when writable). */
static void signal_unaligned(CheckState *c, uint64_t off, uint64_t ti)
{
    qcow2_signal_corruption(c->bs, "Refblock offset %#" PRIx64 " unaligned "
                            "(reftable index: %#" PRIx64 ")", off, ti);
}

/* Refcount block @ti: *buf NULL when there is none, -EIO when its
 * offset is misaligned.  A few blocks are kept for scattered lookups. */
static int coroutine_fn get_refblock(CheckState *c, uint64_t ti,
                                     uint8_t **buf)
{
    BDRVQcow2State *s = c->s;
    uint64_t off = ti < s->refcount_table_size ?
                   s->refcount_table[ti] & REFT_OFFSET_MASK : 0;
    const void *cached;
    int i, ret;

    *buf = NULL;
    if (!off) {
        return 0;
    }
    if (qcow2_offset_into_cluster(s, off)) {
        signal_unaligned(c, off, ti);
        return -EIO;
    }
    if (c->rb_buf[c->rb_last] && c->rb_off[c->rb_last] == off) {
        *buf = c->rb_buf[c->rb_last];
        return 0;
    }
    for (i = 0; i < RB_CACHE_LEN; i++) {
        if (c->rb_buf[i] && c->rb_off[i] == off) {
            c->rb_last = i;
            *buf = c->rb_buf[i];
            return 0;
        }
    }
    i = c->rb_next;
    c->rb_next = (c->rb_next + 1) % RB_CACHE_LEN;
    if (!c->rb_buf[i]) {
        c->rb_buf[i] = g_malloc(s->cluster_size);
    }
    c->rb_off[i] = 0;
    cached = qcow2_cache_peek(&s->refcount_cache, off);
    if (cached) {
        /* an earlier repair's refcounts, not written back yet */
        memcpy(c->rb_buf[i], cached, s->cluster_size);
    } else {
        ret = qcow2_read_table(c->bs, off, s->cluster_size, c->rb_buf[i]);
        if (ret < 0) {
            return ret;
        }
    }
    c->rb_off[i] = off;
    c->rb_last = i;
    *buf = c->rb_buf[i];
    return 0;
}

static int coroutine_fn image_refcount(CheckState *c, uint64_t k,
                                       uint64_t *rc)
{
    uint8_t *block;
    int ret = get_refblock(c, k >> c->s->refblock_bits, &block);

    *rc = 0;
    if (ret == 0 && block) {
        *rc = qcow2_get_refcount_entry(c->s, block,
                                       k & ((1ULL << c->s->refblock_bits) - 1));
    }
    return ret;
}

/* A refcount for step 3: repairs change refcounts in the refcount cache
 * (written back later, or never if the node breaks), so they are read
 * through it then. */
static int coroutine_fn step3_refcount(CheckState *c, uint64_t k,
                                       uint64_t *rc)
{
    if (c->fix) {
        return qcow2_get_refcount(c->bs, k, rc);
    }
    return image_refcount(c, k, rc);
}

int coroutine_fn qcow2_check_image_refcount(CheckState *c, uint64_t k,
                                            uint64_t *rc)
{
    return step3_refcount(c, k, rc);
}

/* ---- step 1: L2 tables ---- */

/* Entry type; with an external data file offset 0 is valid when the
 * COPIED flag says the cluster is allocated. */
Qcow2ClusterType qcow2_check_entry_type(CheckState *c, uint64_t e)
{
    Qcow2ClusterType t = qcow2_cluster_type(c->s, e);

    if (t == QCOW2_CLUSTER_UNALLOCATED && c->data_file &&
        (e & QCOW_OFLAG_COPIED)) {
        return QCOW2_CLUSTER_NORMAL;
    }
    return t;
}

/* Compressed cluster: flags that must be clear, then its bytes. */
static int check_compressed(CheckState *c, int i, uint64_t e, uint64_t bm,
                            bool frag)
{
    uint64_t host, len;

    qcow2_parse_compressed(c->s, e, &host, &len);
    if (e & QCOW_OFLAG_COPIED) {
        fprintf(stderr, "ERROR: coffset=0x%" PRIx64 ": copied flag must "
                "never be set for compressed clusters\n", host);
        e &= ~QCOW_OFLAG_COPIED;
        c->res->corruptions++;
    }
    if (c->data_file) {
        fprintf(stderr, "ERROR compressed cluster %d with data file, "
                "entry=0x%" PRIx64 "\n", i, e);
        c->res->corruptions++;
        return 0;
    }
    if (bm) {
        fprintf(stderr, "ERROR compressed cluster %d with non-zero "
                "subcluster allocation bitmap, entry=0x%" PRIx64 "\n", i, e);
        c->res->corruptions++;
        return 0;
    }
    if (frag) {
        /* compressed clusters count as fragmented: adjacent ones still
         * share sectors */
        c->res->bfi.allocated_clusters++;
        c->res->bfi.compressed_clusters++;
        c->res->bfi.fragmented_clusters++;
    }
    return inc_refs(c, host, len);
}

/* An allocated cluster at an unaligned offset; 1 when repair made it a
 * zero cluster (nothing left to count), -EIO when that write would have
 * hit metadata. */
static int coroutine_fn check_unaligned(CheckState *c, int i, uint64_t e,
                                        uint64_t bm)
{
    BDRVQcow2State *s = c->s;
    bool data = s->extended_l2 ? (bm & L2_BITMAP_ALL_ALLOC) != 0
                               : !(e & QCOW_OFLAG_ZERO);
    bool fix = !data && (c->fix & BDRV_FIX_ERRORS);
    int ret;

    c->res->corruptions++;
    fprintf(stderr, "%s offset=%" PRIx64 ": %s cluster is not "
            "properly aligned; L2 entry corrupted.\n",
            fix ? "Repairing" : "ERROR", (uint64_t)(e & L2E_OFFSET_MASK),
            data ? "Data" : "Preallocated");
    if (!fix) {
        return 0;
    }
    ret = qcow2_repair_l2_zero(c, i);
    return ret == -EIO ? ret : 1;
}

/* Normal or preallocated-zero cluster: bitmap, alignment, statistics. */
static int coroutine_fn check_allocated(CheckState *c, int i, uint64_t e,
                                        uint64_t bm, bool frag,
                                        uint64_t *next)
{
    BDRVQcow2State *s = c->s;
    uint64_t off = e & L2E_OFFSET_MASK;

    if ((bm >> 32) & bm) {
        c->res->corruptions++;
        fprintf(stderr, "ERROR offset=%" PRIx64 ": Allocated cluster has "
                "corrupted subcluster allocation bitmap\n", off);
    }
    if (qcow2_offset_into_cluster(s, off)) {
        int ret = check_unaligned(c, i, e, bm);

        if (ret != 0) {
            return ret < 0 ? ret : 0;
        }
    }
    if (frag) {
        c->res->bfi.allocated_clusters++;
        if (*next && off != *next) {
            c->res->bfi.fragmented_clusters++;
        }
        *next = off + s->cluster_size;
    }
    return c->data_file ? 0 : inc_refs(c, off, s->cluster_size);
}

/* Keep what step 3 needs of active table entry @e, within the budget. */
static void keep_entry(CheckState *c, uint64_t e, KeptTable *t)
{
    Qcow2ClusterType type = qcow2_check_entry_type(c, e);

    if (c->kept_dropped ||
        (type != QCOW2_CLUSTER_NORMAL && type != QCOW2_CLUSTER_ZERO_ALLOC)) {
        return;
    }
    g_array_append_val(c->kept, e);
    t->count++;
    if (c->kept->len > MAX_KEPT_ENTRIES) {
        c->kept_dropped = true;
        g_array_unref(c->kept);
        g_array_unref(c->kept_tables);
        c->kept = g_array_new(false, false, sizeof(uint64_t));
        c->kept_tables = g_array_new(false, false, sizeof(KeptTable));
    }
}

/* Index of the first entry at or after @i that is not all zero (entry
 * and bitmap: zero means unallocated, nothing to check), or l2_size.
 * Most of a sparse image's tables are zero: scan them 8 words at once. */
static int next_used_entry(CheckState *c, int i)
{
    int shift = c->s->extended_l2 ? 1 : 0;
    size_t w = (size_t)i << shift, nw = (size_t)c->s->l2_size << shift;
    uint64_t v[8];

    while (w < nw) {
        if (!(w & 7) && w + 8 <= nw) {
            memcpy(v, c->l2buf + w * 8, sizeof(v));
            if (!(v[0] | v[1] | v[2] | v[3] | v[4] | v[5] | v[6] | v[7])) {
                w += 8;
                continue;
            }
        }
        memcpy(v, c->l2buf + w * 8, 8);
        if (v[0]) {
            return w >> shift;
        }
        w++;
    }
    return c->s->l2_size;
}

/* One entry of an L2 table (qcow2.txt "Standard/Compressed Cluster
 * Descriptor", extended L2 bitmaps). */
static int check_l2_entry(CheckState *c, int i, bool frag, uint64_t *next)
{
    uint64_t e = qcow2_l2_entry(c->s, c->l2buf, i);
    uint64_t bm = qcow2_l2_bitmap(c->s, c->l2buf, i);
    Qcow2ClusterType type = qcow2_check_entry_type(c, e);

    if (type != QCOW2_CLUSTER_COMPRESSED && (e & L2E_STD_RESERVED_MASK)) {
        fprintf(stderr, "ERROR found l2 entry with reserved bits set: %"
                PRIx64 "\n", e);
        c->res->corruptions++;
    }
    switch (type) {
    case QCOW2_CLUSTER_COMPRESSED:
        return check_compressed(c, i, e, bm, frag);
    case QCOW2_CLUSTER_NORMAL:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        return check_allocated(c, i, e, bm, frag, next);
    case QCOW2_CLUSTER_UNALLOCATED:
        if (bm & L2_BITMAP_ALL_ALLOC) {
            c->res->corruptions++;
            fprintf(stderr, "ERROR: Unallocated cluster has non-zero "
                    "subcluster allocation map\n");
        }
        return 0;
    default:
        return 0;
    }
}

/* Table @k of the window, read with result @read_ret. */
static int check_l2(CheckState *c, int k, int read_ret, bool active,
                    uint32_t l1_index)
{
    KeptTable t = { l1_index, 0 };
    uint64_t next = 0;
    int ret;

    if (read_ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l2\n");
        c->res->check_errors++;
        return read_ret;
    }
    c->l2buf = c->win + (size_t)k * c->s->cluster_size;
    c->l2_offset = c->reads[k].offset;
    c->l2_active = active;
    for (int i = next_used_entry(c, 0); i < c->s->l2_size;
         i = next_used_entry(c, i + 1)) {
        ret = check_l2_entry(c, i, active, &next);
        if (ret < 0) {
            return ret;
        }
        if (active) {
            keep_entry(c, qcow2_l2_entry(c->s, c->l2buf, i), &t);
        }
    }
    if (active && !c->kept_dropped) {
        g_array_append_val(c->kept_tables, t);
    }
    return 0;
}

/* ---- step 1: L2 table reads, a window at a time ---- */

static void coroutine_fn l2_read_entry(void *opaque)
{
    L2Read *r = opaque;
    CheckState *c = r->c;

    r->ret = qcow2_read_table(c->bs, r->offset, c->s->cluster_size, r->buf);
    if (--c->pending == 0 && c->waiter) {
        co_wake_later(c->waiter);
    }
}

/* Read the L2 tables of L1 entries @idx[0..n) at once: the requests
 * overlap and batch instead of waiting for each other. */
static void coroutine_fn read_window(CheckState *c, const uint64_t *l1,
                                     const uint32_t *idx, int n)
{
    c->pending = n;
    c->waiter = NULL;
    for (int k = 0; k < n; k++) {
        c->reads[k] = (L2Read) {
            .c = c, .offset = l1[idx[k]] & L1E_OFFSET_MASK,
            .buf = c->win + (size_t)k * c->s->cluster_size,
        };
        co_enter(co_create(l2_read_entry, &c->reads[k]));
    }
    c->waiter = co_self();
    while (c->pending) {
        co_yield();
    }
    c->waiter = NULL;
}

/* ---- step 1: L1 tables ---- */

/* L1 entry @i whose table is window slot @k. */
static int check_l1_entry(CheckState *c, uint64_t e, uint32_t i, int k,
                          bool active)
{
    uint64_t l2_offset = e & L1E_OFFSET_MASK;
    int ret;

    if (e & L1E_RESERVED_MASK) {
        fprintf(stderr, "ERROR found L1 entry with reserved bits set: %"
                PRIx64 "\n", e);
        c->res->corruptions++;
    }
    ret = inc_refs(c, l2_offset, c->s->cluster_size);
    if (ret < 0) {
        return ret;
    }
    if (qcow2_offset_into_cluster(c->s, l2_offset)) {
        fprintf(stderr, "ERROR l2_offset=%" PRIx64 ": Table is not "
                "cluster aligned; L1 entry corrupted\n", l2_offset);
        c->res->corruptions++;
    }
    return check_l2(c, k, c->reads[k].ret, active, i);
}

static int coroutine_fn check_l1_entries(CheckState *c, const uint64_t *l1,
                                         uint32_t l1_size, bool active)
{
    uint32_t idx[WINDOW_MAX];
    uint32_t i = 0;

    while (i < l1_size) {
        int n = 0;

        for (; i < l1_size && n < c->win_len; i++) {
            if (l1[i]) {
                idx[n++] = i;
            }
        }
        read_window(c, l1, idx, n);
        for (int k = 0; k < n; k++) {
            int ret = check_l1_entry(c, l1[idx[k]], idx[k], k, active);

            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

/* Entries of an L1 table of @l1_size at @offset that lie inside the
 * file: those past its end read as zeroes, which reference nothing, so
 * a hostile size costs no memory beyond the file's length. */
static uint32_t l1_entries_in_file(CheckState *c, uint64_t offset,
                                   uint32_t l1_size)
{
    uint64_t in_file;

    if (offset >= (uint64_t)c->file_len) {
        return 0;
    }
    in_file = DIV_ROUND_UP((uint64_t)c->file_len - offset, 8);
    return MIN(in_file, l1_size);
}

/* An L1 table and everything below it, read from the file (the active
 * one too, as the reference reads it: a repair may have changed the
 * file under the copy in memory). */
static int coroutine_fn check_l1(CheckState *c, uint64_t offset,
                                 uint32_t l1_size, bool active)
{
    g_autofree uint64_t *l1 = NULL;
    int ret;

    if (!l1_size) {
        return 0;
    }
    ret = inc_refs(c, offset, (int64_t)l1_size * 8);
    if (ret < 0) {
        return ret;
    }
    l1_size = l1_entries_in_file(c, offset, l1_size);
    if (!l1_size) {
        return 0;
    }
    l1 = g_try_new(uint64_t, l1_size);
    if (!l1) {
        c->res->check_errors++;
        return -ENOMEM;
    }
    ret = qcow2_read_table(c->bs, offset, (uint64_t)l1_size * 8, l1);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l1\n");
        c->res->check_errors++;
        return ret;
    }
    for (uint32_t i = 0; i < l1_size; i++) {
        l1[i] = q_ld64((const uint8_t *)&l1[i]);
    }
    return check_l1_entries(c, l1, l1_size, active);
}

/* ---- snapshots ---- */

static void snapshot_clear(gpointer p)
{
    Snapshot *sn = p;

    g_free(sn->id);             /* sn->name lives in the same block */
    g_free(sn->unknown_extra);
}

/* ID and name of an entry, both in one block (the table may hold tens
 * of thousands of entries): the ID's NUL goes between them. */
static int coroutine_fn read_snapshot_strings(CheckState *c, uint64_t pos,
                                              uint16_t id_len,
                                              uint16_t name_len, Snapshot *sn)
{
    char *strs = g_malloc((size_t)id_len + name_len + 2);
    int ret = qcow2_window_read(&c->sn_win, pos,
                                (size_t)id_len + name_len, strs);

    if (ret < 0) {
        g_free(strs);
        return ret;
    }
    memmove(strs + id_len + 1, strs + id_len, name_len);
    strs[id_len] = 0;
    strs[id_len + 1 + name_len] = 0;
    sn->id = strs;
    sn->name = strs + id_len + 1;
    return 0;
}

/* The reference's words for a table it could not read. */
static void report_snapshot_read_error(int ret)
{
    error_report("ERROR failed to read the snapshot table: Failed to "
                 "read snapshot table: %s", strerror(-ret));
}

/* Too much extra data: an error, or with -r all dropped (cut to the
 * maximum) and counted. */
static int snapshot_extra_too_large(CheckState *c, uint32_t i, Snapshot *sn,
                                    bool *cut)
{
    if (!(c->fix & BDRV_FIX_ERRORS)) {
        error_report("ERROR failed to read the snapshot table: Too much "
                     "extra metadata in snapshot table entry %" PRIu32, i);
        fprintf(stderr, "You can force-remove this extra metadata with "
                "qemu-img check -r all\n");
        return -EFBIG;
    }
    fprintf(stderr, "Discarding too much extra metadata in snapshot table "
            "entry %" PRIu32 " (%" PRIu32 " > %u)\n", i, sn->extra,
            SN_MAX_EXTRA);
    c->sn_dropped++;
    *cut = true;
    return 0;
}

/* The known extra data (qcow2.txt "Snapshot table": VM state size, disk
 * size, icount, each present when the extra data is long enough) and
 * what follows it, kept for a rewrite. */
static int coroutine_fn read_snapshot_extra(CheckState *c, uint64_t pos,
                                            Snapshot *sn, bool cut)
{
    uint8_t e[SN_KNOWN_EXTRA] = { 0 };
    uint32_t known = MIN(sn->extra, SN_KNOWN_EXTRA);
    int ret = qcow2_window_read(&c->sn_win, pos, known, e);

    if (ret < 0) {
        return ret;
    }
    sn->vm_state_size = known >= 8 ? q_ld64(e) : sn->vm_state_size;
    sn->disk_size = known >= 16 ? q_ld64(e + 8) : c->s->h.size;
    sn->icount = known >= 24 ? q_ld64(e + 16) : UINT64_MAX;
    if (cut) {
        sn->extra = SN_MAX_EXTRA;
    }
    if (sn->extra <= SN_KNOWN_EXTRA) {
        return 0;
    }
    sn->unknown_extra = g_malloc(sn->extra - SN_KNOWN_EXTRA);
    return qcow2_window_read(&c->sn_win, pos + SN_KNOWN_EXTRA,
                             sn->extra - SN_KNOWN_EXTRA, sn->unknown_extra);
}

/* The fixed part of an entry at @pos. */
static int coroutine_fn read_snapshot_header(CheckState *c, uint64_t pos,
                                             Snapshot *sn, uint16_t *id_len,
                                             uint16_t *name_len)
{
    uint8_t h[SN_HEADER_LEN];
    int ret = qcow2_window_read(&c->sn_win, pos, sizeof(h), h);

    if (ret < 0) {
        return ret;
    }
    sn->l1_offset = q_ld64(h);
    sn->l1_size = q_ld32(h + 8);
    *id_len = q_ld16(h + 12);
    *name_len = q_ld16(h + 14);
    sn->date_sec = q_ld32(h + 16);
    sn->date_nsec = q_ld32(h + 20);
    sn->vm_clock = q_ld64(h + 24);
    sn->vm_state_size = q_ld32(h + 32);
    sn->extra = q_ld32(h + 36);
    return 0;
}

/* One snapshot table entry at *pos (qcow2.txt "Snapshot table"); moves
 * *pos past it and *len by its (possibly cut) size.  Failures are
 * reported as the reference's snapshot table reader words them. */
static int coroutine_fn read_snapshot(CheckState *c, uint32_t i,
                                      uint64_t *pos, uint64_t *len,
                                      Snapshot *sn)
{
    uint16_t id_len, name_len;
    uint32_t extra;
    bool cut = false;
    int ret = read_snapshot_header(c, *pos, sn, &id_len, &name_len);

    if (ret == 0 && sn->extra > SN_MAX_EXTRA) {
        ret = snapshot_extra_too_large(c, i, sn, &cut);
        if (ret < 0) {
            return ret;
        }
    }
    extra = sn->extra;
    if (ret == 0) {
        ret = read_snapshot_extra(c, *pos + SN_HEADER_LEN, sn, cut);
    }
    if (ret == 0) {
        ret = read_snapshot_strings(c, *pos + SN_HEADER_LEN + extra, id_len,
                                    name_len, sn);
    }
    if (ret < 0) {
        report_snapshot_read_error(ret);
        return ret;
    }
    /* 64-bit sums: a hostile extra size is close to 4 GiB */
    *pos += SN_HEADER_LEN + (uint64_t)extra + id_len + name_len;
    *len += SN_HEADER_LEN + (uint64_t)sn->extra + id_len + name_len;
    return 0;
}

/* The table (or its position) past what the reference accepts: an
 * error, or with -r all the entries from @i on dropped. */
static int snapshot_table_too_big(CheckState *c, uint32_t i, uint32_t nb)
{
    if (!(c->fix & BDRV_FIX_ERRORS)) {
        error_report("ERROR failed to read the snapshot table: Snapshot "
                     "table is too big");
        fprintf(stderr, "You can force-remove all %" PRIu32 " overhanging "
                "snapshots with qemu-img check -r all\n", nb - i);
        return -EFBIG;
    }
    fprintf(stderr, "Discarding %" PRIu32 " overhanging snapshots "
            "(snapshot table is too big)\n", nb - i);
    c->sn_reduced += nb - i;
    return 0;
}

/* The table as check read it becomes the one the overlap checks guard,
 * as the reference's check re-reads it (open skipped it in check mode):
 * a repair write into a table parsed past a bad entry is refused. */
static void publish_snapshot_table(CheckState *c)
{
    BDRVQcow2State *s = c->s;

    s->snapshots_size = c->snapshots_size;
    if (!s->inactive_l1) {
        s->inactive_l1 = g_array_new(false, false, sizeof(Qcow2InactiveL1));
    }
    qcow2_inactive_l1_changed(s);
    g_array_set_size(s->inactive_l1, c->snapshots->len);
    for (guint i = 0; i < c->snapshots->len; i++) {
        Snapshot *sn = &g_array_index(c->snapshots, Snapshot, i);
        /* 32-bit byte count, wrapping as the open-time list does */
        uint32_t bytes = sn->l1_size * 8u;

        g_array_index(s->inactive_l1, Qcow2InactiveL1, i) =
            (Qcow2InactiveL1) { sn->l1_offset, bytes / 8 };
    }
}

/* Every entry of the table; *nb may shrink (repair). */
static int coroutine_fn read_snapshot_entries(CheckState *c, uint32_t *nb)
{
    uint64_t pos = c->sn_table_offset, len = 0;

    for (uint32_t i = 0; i < *nb; i++) {
        Snapshot sn = { 0 };
        uint64_t before = pos;
        int ret;

        pos = ROUND_UP(pos, 8);
        len = ROUND_UP(len, 8);
        ret = read_snapshot(c, i, &pos, &len, &sn);
        if (ret == 0 && (len > SN_MAX_TABLE ||
                         pos - c->sn_table_offset > INT_MAX)) {
            ret = snapshot_table_too_big(c, i, *nb);
            if (ret == 0) {
                snapshot_clear(&sn);
                *nb = i;
                pos = before;
                break;
            }
        }
        if (ret < 0) {
            snapshot_clear(&sn);
            c->res->check_errors++;
            return ret;
        }
        g_array_append_val(c->snapshots, sn);
    }
    c->snapshots_size = pos - c->sn_table_offset;
    return 0;
}

/* Too many entries for the reference: -r all drops the overhang. */
static int too_many_snapshots(CheckState *c, uint32_t *nb)
{
    if (*nb <= QCOW2_MAX_SNAPSHOTS) {
        return 0;
    }
    if (c->fix & BDRV_FIX_ERRORS) {
        fprintf(stderr, "Discarding %" PRIu32 " overhanging snapshots\n",
                *nb - QCOW2_MAX_SNAPSHOTS);
        c->sn_reduced += *nb - QCOW2_MAX_SNAPSHOTS;
        *nb = QCOW2_MAX_SNAPSHOTS;
        c->s->h.nb_snapshots = *nb;     /* the table checked is this long */
        return 0;
    }
    error_report("ERROR snapshot table too large");
    fprintf(stderr, "You can force-remove all %" PRIu32 " overhanging "
            "snapshots with qemu-img check -r all\n",
            *nb - QCOW2_MAX_SNAPSHOTS);
    c->res->check_errors++;
    return -EFBIG;
}

/* Version 3 entries must carry at least the 16 bytes of extra data the
 * spec requires; -r all completes them when it rewrites the table. */
static void check_incomplete_snapshots(CheckState *c)
{
    bool fix = c->fix & BDRV_FIX_ERRORS;

    for (guint i = 0; c->s->h.version >= 3 && i < c->snapshots->len; i++) {
        if (g_array_index(c->snapshots, Snapshot, i).extra < 16) {
            fprintf(stderr, "%s snapshot table entry %u is incomplete\n",
                    fix ? "Repairing" : "ERROR", i);
            c->res->corruptions++;
            c->sn_corruptions++;
        }
    }
}

/* The snapshot table could not be read: as for the reference, the
 * header kept in memory forgets it (a later header write drops it). */
static int forget_snapshot_table(CheckState *c, int ret)
{
    c->s->h.nb_snapshots = 0;
    c->s->h.snapshots_offset = 0;
    return ret;
}

/* The snapshot count and table offset as the file's header has them
 * now: a repair may have changed them under the node (the reference
 * reads them again for every check; an old table freed with the header
 * cluster it sat on leaves none). */
static int coroutine_fn reread_snapshot_pointer(CheckState *c)
{
    uint8_t b[12];
    int ret = q_pread(c->bs->file, 60, sizeof(b), b);

    if (ret < 0) {
        c->res->check_errors++;
        fprintf(stderr, "ERROR failed to read the snapshot table pointer "
                "from the image header: %s\n", strerror(-ret));
        return ret;
    }
    c->s->h.nb_snapshots = q_ld32(b);
    c->s->h.snapshots_offset = q_ld64(b + 4);
    return 0;
}

/* The snapshot table: entries and its size in bytes. */
static int coroutine_fn read_snapshots(CheckState *c)
{
    uint32_t nb;
    int ret = reread_snapshot_pointer(c);

    if (ret < 0) {
        return ret;
    }
    nb = c->s->h.nb_snapshots;
    c->sn_table_offset = c->s->h.snapshots_offset;
    ret = too_many_snapshots(c, &nb);
    /* reserved once for the entries the header counts (at most 65536):
     * growing entry by entry copied the table a dozen times */
    c->snapshots = g_array_sized_new(false, true, sizeof(Snapshot),
                                     ret < 0 ? 0 : nb);
    g_array_set_clear_func(c->snapshots, snapshot_clear);
    if (ret < 0) {
        return forget_snapshot_table(c, ret);
    }
    if (!qcow2_snapshot_table_ok(c->s)) {
        error_report("ERROR snapshot table offset invalid");
        c->res->check_errors++;
        return forget_snapshot_table(c, -EINVAL);
    }
    /* the entries are read through a window: a few requests in all */
    c->sn_win = (Qcow2Window) { .bs = c->bs, .max = QCOW2_TABLE_WINDOW };
    ret = read_snapshot_entries(c, &nb);
    qcow2_window_free(&c->sn_win);
    if (ret < 0) {
        return forget_snapshot_table(c, ret);
    }
    publish_snapshot_table(c);
    c->res->corruptions += c->sn_dropped;
    c->sn_corruptions += c->sn_dropped;
    if (c->sn_reduced) {
        ret = qcow2_repair_snapshot_count(c);
        if (ret < 0) {
            return ret;
        }
    }
    check_incomplete_snapshots(c);
    return 0;
}

static int coroutine_fn check_snapshots(CheckState *c)
{
    if (c->data_file && c->snapshots->len) {
        fprintf(stderr, "ERROR %u snapshots in image with data file\n",
                c->snapshots->len);
        c->res->corruptions++;
    }
    for (guint i = 0; i < c->snapshots->len; i++) {
        Snapshot *sn = &g_array_index(c->snapshots, Snapshot, i);
        int ret;

        if (qcow2_offset_into_cluster(c->s, sn->l1_offset)) {
            fprintf(stderr, "ERROR snapshot %s (%s) l1_offset=%#" PRIx64
                    ": L1 table is not cluster aligned; snapshot table "
                    "entry corrupted\n", sn->id, sn->name, sn->l1_offset);
            c->res->corruptions++;
            continue;
        }
        if (sn->l1_size > QCOW2_MAX_L1_SIZE / 8) {
            fprintf(stderr, "ERROR snapshot %s (%s) l1_size=%#" PRIx32
                    ": L1 table is too large; snapshot table entry "
                    "corrupted\n", sn->id, sn->name, sn->l1_size);
            c->res->corruptions++;
            continue;
        }
        ret = check_l1(c, sn->l1_offset, sn->l1_size, false);
        if (ret < 0) {
            return ret;
        }
    }
    return inc_refs(c, c->s->h.snapshots_offset, c->snapshots_size);
}

/* ---- persistent bitmaps ---- */

#define BME_TABLE_OFFSET_MASK 0x00fffffffffffe00ULL
#define BME_TABLE_RESERVED_MASK 0xff000000000001feULL
#define BME_TABLE_ALL_ONES 1ULL
#define BME_MAX_TABLE_SIZE 0x8000000U
#define BME_DIR_HEADER_LEN 24
#define BM_MAX_DIRECTORY (64 * MiB)
#define BME_MAX_PHYS_SIZE (512 * MiB)     /* clusters one table may cover */
#define BM_MAX_ALL_TABLES (1ULL << 27)    /* entries of all tables: 1 GiB */

/* The bitmaps extension, when the image keeps it up to date (autoclear
 * bit set; otherwise the bitmaps do not count, as for the reference). */
static const uint8_t *bitmaps_ext(BDRVQcow2State *s)
{
    if (!(s->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) ||
        !s->unknown_exts) {
        return NULL;
    }
    for (guint i = 0; i < s->unknown_exts->len; i++) {
        Qcow2UnknownExt *e = g_ptr_array_index(s->unknown_exts, i);

        if (e->magic == QCOW2_EXT_BITMAPS && e->len >= 24) {
            return q_ld32(e->data) ? e->data : NULL;
        }
    }
    return NULL;
}

/* A bitmap table entry (qcow2.txt "Bitmap table"): reserved bits clear,
 * data clusters aligned, "all ones" only without a cluster. */
static bool bitmap_entry_ok(BDRVQcow2State *s, uint64_t e)
{
    uint64_t off = e & BME_TABLE_OFFSET_MASK;

    if (e & BME_TABLE_RESERVED_MASK) {
        return false;
    }
    return !off || (!qcow2_offset_into_cluster(s, off) &&
                    !(e & BME_TABLE_ALL_ONES));
}

/* One bitmap: its table and the clusters the table points at.  The
 * table is read in pieces: its size comes from the image. */
static int coroutine_fn check_one_bitmap(CheckState *c, uint64_t off,
                                         uint32_t size)
{
    const uint32_t piece = 65536;
    g_autofree uint8_t *t = NULL;
    int ret = inc_refs(c, off, (int64_t)size * 8);

    if (ret < 0 || !size) {
        return ret;
    }
    t = g_malloc((size_t)MIN(size, piece) * 8);
    for (uint32_t i = 0; i < size && ret == 0; i++) {
        uint64_t e;

        if (i % piece == 0) {
            ret = qcow2_read_table(c->bs, off + (uint64_t)i * 8,
                                   (uint64_t)MIN(size - i, piece) * 8, t);
            if (ret < 0) {
                c->res->corruptions++;
                return ret;
            }
        }
        e = q_ld64(t + (size_t)(i % piece) * 8);
        if (!bitmap_entry_ok(c->s, e)) {
            /* the reference loads (and validates) the whole table
             * before counting: one bad entry fails the check, counted
             * as a corruption by check_bitmaps() */
            return -EINVAL;
        } else if (e & BME_TABLE_OFFSET_MASK) {
            ret = inc_refs(c, e & BME_TABLE_OFFSET_MASK, c->s->cluster_size);
        }
    }
    return ret;
}

/* Walk the bitmap directory (qcow2.txt "Bitmap directory"); a directory
 * that cannot be parsed is a corruption that stops the check. */
static int coroutine_fn walk_bitmap_dir(CheckState *c, const uint8_t *d,
                                        uint64_t len, uint32_t nb)
{
    uint64_t pos = 0;

    for (uint32_t i = 0; i < nb; i++) {
        uint64_t toff, elen;
        uint32_t tsize;
        int ret;

        if (len - pos < BME_DIR_HEADER_LEN) {
            return -EINVAL;
        }
        toff = q_ld64(d + pos);
        tsize = q_ld32(d + pos + 8);
        elen = ROUND_UP(BME_DIR_HEADER_LEN + (uint64_t)q_ld32(d + pos + 20) +
                        q_ld16(d + pos + 18), 8);
        if (elen > len - pos || tsize > BME_MAX_TABLE_SIZE ||
            (uint64_t)tsize * c->s->cluster_size > BME_MAX_PHYS_SIZE ||
            tsize > c->bitmap_entries_left ||
            qcow2_offset_into_cluster(c->s, toff)) {
            return -EINVAL;
        }
        c->bitmap_entries_left -= tsize;
        ret = check_one_bitmap(c, toff, tsize);
        if (ret < 0) {
            return ret;
        }
        pos += elen;
    }
    return 0;
}

static int coroutine_fn check_bitmaps(CheckState *c)
{
    const uint8_t *ext = bitmaps_ext(c->s);
    uint64_t len, off;
    g_autofree uint8_t *dir = NULL;
    int ret;

    if (!ext) {
        return 0;
    }
    len = q_ld64(ext + 8);
    off = q_ld64(ext + 16);
    /* the tables of a sound image are distinct clusters of the file:
     * many bitmaps sharing one huge table must not make the walk last */
    c->bitmap_entries_left = MIN((uint64_t)c->file_len / 8,
                                 BM_MAX_ALL_TABLES);
    ret = inc_refs(c, off, len);
    if (ret < 0) {
        return ret;
    }
    if (c->s->broken && q_ld32(ext)) {
        /* a node marked corrupt has no length for the reference, and
         * every directory entry's check asks for it: the directory
         * does not load (the pass after a rebuild) */
        c->res->corruptions++;
        return -EINVAL;
    }
    dir = len <= BM_MAX_DIRECTORY ? g_try_malloc(len ? len : 1) : NULL;
    ret = dir ? qcow2_read_table(c->bs, off, len, dir) : -EINVAL;
    if (ret == 0) {
        ret = walk_bitmap_dir(c, dir, len, q_ld32(ext));
    }
    if (ret == -EINVAL) {
        c->res->corruptions++;
    }
    return ret;
}

/* ---- step 1: refcount blocks ---- */

/* A refcount block past the end of the file: a corruption, which
 * repair fixes by growing the file (the block then reads as zeroes). */
static int coroutine_fn refblock_outside(CheckState *c, uint64_t i,
                                         uint64_t off)
{
    bool fix = c->fix & BDRV_FIX_ERRORS;
    int ret;

    c->res->corruptions++;
    fprintf(stderr, "%s refcount block %" PRIu64 " is outside image\n",
            fix ? "Repairing" : "ERROR", i);
    if (!fix) {
        return 0;
    }
    ret = qcow2_repair_refblock_outside(c, i, off);
    if (ret == -ENOMEM) {
        c->res->check_errors++;     /* the counts cannot cover the file */
        return ret;
    }
    if (ret < 0) {
        c->rebuild = true;
        return 0;
    }
    c->res->corruptions--;
    c->res->corruptions_fixed++;
    return inc_refs(c, off, c->s->cluster_size);
}

/* Each refcount table entry: reserved bits, alignment, inside the file,
 * and its block referenced by nothing else.  The broken ones make the
 * refcount structure one to rebuild. */
static int coroutine_fn check_refblocks(CheckState *c)
{
    BDRVQcow2State *s = c->s;

    for (uint64_t i = 0; i < s->refcount_table_size; i++) {
        uint64_t off = s->refcount_table[i] & REFT_OFFSET_MASK;
        uint64_t k = off >> s->cluster_bits;
        int ret;

        if (s->refcount_table[i] & REFT_RESERVED_MASK) {
            fprintf(stderr, "ERROR refcount table entry %" PRIu64 " has "
                    "reserved bits set\n", i);
            c->res->corruptions++;
            c->rebuild = true;
            continue;
        }
        if (qcow2_offset_into_cluster(s, off)) {
            fprintf(stderr, "ERROR refcount block %" PRIu64 " is not "
                    "cluster aligned; refcount table entry corrupted\n", i);
            c->res->corruptions++;
            c->rebuild = true;
            continue;
        }
        if (k >= c->nb_clusters) {
            ret = refblock_outside(c, i, off);
            if (ret < 0) {
                return ret;
            }
            continue;
        }
        if (!off) {
            continue;
        }
        ret = inc_refs(c, off, s->cluster_size);
        if (ret < 0) {
            return ret;
        }
        if (count_get(c, k) != 1) {
            fprintf(stderr, "ERROR refcount block %" PRIu64 " refcount=%"
                    PRIu32 "\n", i, count_get(c, k));
            c->res->corruptions++;
            c->rebuild = true;
        }
    }
    return 0;
}

int coroutine_fn qcow2_check_count_references(CheckState *c)
{
    BDRVQcow2State *s = c->s;
    int ret = inc_refs(c, 0, s->cluster_size);

    if (ret == 0) {
        ret = check_l1(c, s->h.l1_table_offset, s->l1_size, true);
    }
    if (ret == 0) {
        ret = check_snapshots(c);
    }
    if (ret == 0) {
        ret = inc_refs(c, s->h.refcount_table_offset,
                       (int64_t)s->refcount_table_size * 8);
    }
    if (ret == 0 && s->has_crypto_ext) {
        ret = inc_refs(c, s->crypto_offset, s->crypto_length);
    }
    if (ret == 0) {
        ret = check_bitmaps(c);
    }
    return ret < 0 ? ret : check_refblocks(c);
}

/* ---- step 2: compare ---- */

/* One cluster whose count and refcount differ: repaired when @fix
 * allows (too high: a leak; too low: a corruption), except a missing
 * refcount, which only a rebuilt refcount structure can hold. */
static void coroutine_fn report_mismatch(CheckState *c, int fix, uint64_t k,
                                         uint64_t rc, uint64_t count)
{
    int *fixed = NULL;

    if (rc == 0) {
        c->rebuild = true;
    } else if (rc > count && (fix & BDRV_FIX_LEAKS)) {
        fixed = &c->res->leaks_fixed;
    } else if (rc < count && (fix & BDRV_FIX_ERRORS)) {
        fixed = &c->res->corruptions_fixed;
    }
    fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64
            " reference=%" PRIu64 "\n",
            fixed ? "Repairing" : rc < count ? "ERROR" : "Leaked",
            k, rc, count);
    if (fixed && qcow2_repair_refcount(c, k, rc, count)) {
        (*fixed)++;
    } else if (rc < count) {
        c->res->corruptions++;
    } else {
        c->res->leaks++;
    }
}

/* Clusters [from, to) covered by refcount block @ti. */
static void coroutine_fn compare_range(CheckState *c, int fix, uint64_t ti,
                                       uint64_t from, uint64_t to,
                                       uint64_t *highest)
{
    uint64_t mask = (1ULL << c->s->refblock_bits) - 1;
    uint8_t *block;
    int ret = get_refblock(c, ti, &block);

    for (uint64_t k = from; k < to; k++) {
        uint64_t rc = 0, count;

        if (!block && ret == 0) {
            /* no refcount block: only counted clusters matter */
            if (!c->chunks[k >> CHUNK_BITS]) {
                k |= CHUNK_LEN - 1;
                continue;
            }
        } else if (ret < 0) {
            fprintf(stderr, "Can't get refcount for cluster %" PRIu64 ": %s\n",
                    k, strerror(-ret));
            c->res->check_errors++;
            continue;
        } else {
            rc = qcow2_get_refcount_entry(c->s, block, k & mask);
        }
        count = count_get(c, k);
        if (rc || count) {
            *highest = k;
        }
        if (rc != count) {
            report_mismatch(c, fix, k, rc, count);
        }
    }
}

void coroutine_fn qcow2_check_compare(CheckState *c, int fix,
                                      uint64_t *highest)
{
    uint64_t per_block = 1ULL << c->s->refblock_bits;

    *highest = 0;
    for (uint64_t from = 0; from < c->nb_clusters; from += per_block) {
        compare_range(c, fix, from / per_block, from,
                      MIN(from + per_block, c->nb_clusters), highest);
    }
}

/* ---- step 3: OFLAG_COPIED ---- */

/* Where step 3 is in the tables kept by step 1. */
typedef struct KeptCursor {
    guint table;
    uint64_t base;                /* first entry of that table in kept */
} KeptCursor;

/* The normal / preallocated-zero entries of the active table at
 * @l1_index: kept from step 1, or read again. */
static int coroutine_fn active_entries(CheckState *c, uint32_t l1_index,
                                       uint64_t l2_offset, KeptCursor *cur,
                                       GArray *out)
{
    guint n;
    int ret;

    g_array_set_size(out, 0);
    for (; cur->table < c->kept_tables->len; cur->table++) {
        KeptTable *t = &g_array_index(c->kept_tables, KeptTable, cur->table);

        if (t->l1_index > l1_index) {
            break;
        }
        if (t->l1_index == l1_index) {
            if (t->count) {     /* an empty GArray has no data pointer */
                g_array_append_vals(out, &g_array_index(c->kept, uint64_t,
                                                        cur->base), t->count);
            }
            return 0;
        }
        cur->base += t->count;
    }
    c->l2buf = c->win;
    ret = qcow2_read_table(c->bs, l2_offset, c->s->cluster_size, c->l2buf);
    if (ret < 0) {
        fprintf(stderr, "ERROR: Could not read L2 table: %s\n",
                strerror(-ret));
        c->res->check_errors++;
        return ret;
    }
    g_array_set_size(out, c->s->l2_size);
    n = 0;
    for (int i = next_used_entry(c, 0); i < c->s->l2_size;
         i = next_used_entry(c, i + 1)) {
        uint64_t e = qcow2_l2_entry(c->s, c->l2buf, i);
        Qcow2ClusterType type = qcow2_check_entry_type(c, e);

        if (type == QCOW2_CLUSTER_NORMAL || type == QCOW2_CLUSTER_ZERO_ALLOC) {
            g_array_index(out, uint64_t, n++) = e;
        }
    }
    g_array_set_size(out, n);
    return 0;
}


static void coroutine_fn check_copied_data(CheckState *c, GArray *entries)
{
    for (guint j = 0; j < entries->len; j++) {
        uint64_t e = g_array_index(entries, uint64_t, j), rc = 1;

        if (!c->data_file &&
            step3_refcount(c, (e & L2E_OFFSET_MASK) >> c->s->cluster_bits,
                           &rc) < 0) {
            continue;
        }
        if (!qcow2_copied_ok(e, rc)) {
            c->res->corruptions++;
            fprintf(stderr, "ERROR OFLAG_COPIED data cluster: l2_entry=%"
                    PRIx64 " refcount=%" PRIu64 "\n", e, rc);
        }
    }
}

/* Whether step 3 repairs what it finds: always with -r all; with -r
 * leaks only when the refcounts it relies on are now known right.  The
 * snapshot table's corruptions do not count: the reference keeps them
 * in a result of their own until the check ends. */
static bool copied_repair(CheckState *c)
{
    if (c->fix & BDRV_FIX_ERRORS) {
        return true;
    }
    return (c->fix & BDRV_FIX_LEAKS) && !c->res->check_errors &&
           c->res->corruptions == c->sn_corruptions && !c->res->leaks;
}

/* Active L1 entry @i against its L2 table's refcount @rc. */
static int coroutine_fn check_copied_l1(CheckState *c, uint32_t i,
                                        uint64_t rc, bool repair)
{
    int ret;

    if (qcow2_copied_ok(c->s->l1_table[i], rc)) {
        return 0;
    }
    c->res->corruptions++;
    fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu32
            " l1_entry=%" PRIx64 " refcount=%" PRIu64 "\n",
            repair ? "Repairing" : "ERROR", i, c->s->l1_table[i], rc);
    if (!repair) {
        return 0;
    }
    ret = qcow2_repair_copied_l1(c, i, rc);
    if (ret < 0) {
        c->res->check_errors++;
        return ret;
    }
    c->res->corruptions--;
    c->res->corruptions_fixed++;
    return 0;
}

static int coroutine_fn check_oflag_copied(CheckState *c)
{
    BDRVQcow2State *s = c->s;
    g_autoptr(GArray) entries = g_array_new(false, false, sizeof(uint64_t));
    KeptCursor cursor = { 0, 0 };
    bool repair = copied_repair(c);

    for (uint32_t i = 0; i < MIN(s->l1_used, s->l1_size); i++) {
        uint64_t l2_offset = s->l1_table[i] & L1E_OFFSET_MASK, rc;
        int ret;

        if (!l2_offset ||
            step3_refcount(c, l2_offset >> s->cluster_bits, &rc) < 0) {
            continue;
        }
        ret = check_copied_l1(c, i, rc, repair);
        if (ret == 0 && repair) {
            ret = qcow2_repair_copied_l2(c, l2_offset);
        } else if (ret == 0) {
            ret = active_entries(c, i, l2_offset, &cursor, entries);
            if (ret == 0) {
                check_copied_data(c, entries);
            }
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* ---- entry ---- */

/* Sizes from the file; the chunk budget follows its allocated bytes so a
 * sparse hostile file cannot make the counts large. */
static int coroutine_fn check_init(CheckState *c)
{
    BDRVQcow2State *s = c->s;
    int64_t alloc = bdrv_co_get_allocated_file_size(c->bs->file->bs);
    uint64_t file_clusters;

    c->file_len = bdrv_co_getlength(c->bs->file->bs);
    if (c->file_len < 0) {
        c->res->check_errors++;
        return c->file_len;
    }
    file_clusters = DIV_ROUND_UP((uint64_t)c->file_len, s->cluster_size);
    if (file_clusters > INT_MAX) {
        c->res->check_errors++;
        return -EFBIG;
    }
    c->nb_clusters = file_clusters;
    c->nb_chunks = (file_clusters + 1 + CHUNK_LEN - 1) >> CHUNK_BITS;
    c->chunks = g_new0(void *, c->nb_chunks);
    c->wide = s->refcount_bits > 16;
    if (alloc < 0) {
        /* block devices, protocols that cannot tell: the length it is */
        alloc = c->file_len;
    }
    /* enough for every cluster of the allocated bytes and for every
     * L2 entry they could hold referencing clusters densely (metadata
     * preallocation): at most half the allocated bytes (a quarter with
     * 16-bit counts) plus 16 MiB */
    c->chunk_budget = MIN_CHUNK_BUDGET +
                      4 * ((uint64_t)alloc / (s->cluster_size << CHUNK_BITS)) +
                      (uint64_t)alloc / (8 << CHUNK_BITS);
    c->count_max = MIN((uint64_t)s->refcount_max, UINT32_MAX);
    c->data_file = s->h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE;
    c->win_len = MAX(1, MIN(WINDOW_MAX, WINDOW_BYTES / s->cluster_size));
    c->win = g_malloc((size_t)c->win_len * s->cluster_size);
    c->l2buf = c->win;
    c->kept_tables = g_array_new(false, false, sizeof(KeptTable));
    c->kept = g_array_new(false, false, sizeof(uint64_t));
    /* the reference counts whole sectors of the virtual size */
    c->res->bfi.total_clusters = DIV_ROUND_UP(s->h.size & ~511ULL,
                                              s->cluster_size);
    return 0;
}

static void check_free(CheckState *c)
{
    for (uint64_t i = 0; c->chunks && i < c->nb_chunks; i++) {
        g_free(c->chunks[i]);
    }
    for (int i = 0; i < RB_CACHE_LEN; i++) {
        g_free(c->rb_buf[i]);
    }
    g_free(c->chunks);
    g_free(c->win);
    if (c->kept_tables) {
        g_array_unref(c->kept_tables);
        g_array_unref(c->kept);
    }
    if (c->snapshots) {
        g_array_unref(c->snapshots);
    }
}

/* Step 2 for check -r: a refcount structure that cannot hold the
 * right refcounts is rebuilt (-r all); otherwise the mismatches found
 * are compared again, this time repaired. */
static int coroutine_fn compare_and_fix(CheckState *c, uint64_t *highest)
{
    BlockCheckResult before = *c->res;

    qcow2_check_compare(c, 0, highest);
    if (c->rebuild && (c->fix & BDRV_FIX_ERRORS)) {
        return qcow2_repair_rebuild(c, highest);
    }
    if (!c->fix) {
        return 0;
    }
    if (c->rebuild) {
        fprintf(stderr, "ERROR need to rebuild refcount structures\n");
        c->res->check_errors++;
        return -EIO;
    }
    if (!c->res->leaks && !c->res->corruptions) {
        return 0;
    }
    *c->res = before;
    qcow2_check_compare(c, c->fix, highest);
    return 0;
}

/* A dirty image under -r, once the refcounts were compared: no
 * referenced cluster has refcount 0 now (one would have failed the check
 * or rebuilt the structure), so later allocations (a snapshot table,
 * bitmaps stored at close) take the first free clusters again, as the
 * reference's allocator, which never left them, does; even when other
 * corruptions remain. */
static void refcounts_settled(BDRVQcow2State *s)
{
    if (s->refcounts_stale) {
        s->refcounts_stale = false;
        s->free_cluster_index = 0;
    }
}

/* -r all: a snapshot table with incomplete entries or dropped data is
 * written anew (after the refcounts are right: it allocates). */
static int coroutine_fn fix_snapshot_table(CheckState *c)
{
    int ret;

    if (!c->sn_corruptions || !(c->fix & BDRV_FIX_ERRORS)) {
        return 0;
    }
    refcounts_settled(c->s);
    ret = qcow2_repair_snapshot_table(c);
    if (ret < 0) {
        c->res->check_errors++;
        fprintf(stderr, "ERROR failed to update snapshot table: %s\n",
                strerror(-ret));
        return ret;
    }
    c->res->corruptions -= c->sn_corruptions;
    c->res->corruptions_fixed += c->sn_corruptions;
    return 0;
}

/* The check reads L2 tables from the file: what the L2 cache holds (a
 * writer's tables) goes there first.  Refcount blocks are read through
 * the refcount cache (an earlier repair's refcounts stay there until
 * close, as the reference's, which may refuse to write them). */
static int coroutine_fn write_back_caches(CheckState *c)
{
    int ret;

    if (!(c->bs->open_flags & BDRV_O_RDWR)) {
        return 0;
    }
    ret = qcow2_cache_write(c->bs, &c->s->l2_cache);
    if (ret < 0) {
        c->res->check_errors++;
    }
    return ret;
}

/* The snapshot table, steps 1-3, and with -r all the snapshot table
 * rewritten: the reference's order (its output depends on it). */
static int coroutine_fn check_run(CheckState *c)
{
    uint64_t highest;
    int ret = write_back_caches(c);

    if (ret == 0) {
        ret = check_init(c);
    }

    if (ret == 0) {
        ret = read_snapshots(c);
    }
    if (ret == 0) {
        ret = qcow2_check_count_references(c);
    }
    if (ret == 0) {
        ret = compare_and_fix(c, &highest);
    }
    if (ret == 0) {
        ret = check_oflag_copied(c);
    }
    if (ret < 0) {
        return ret;
    }
    c->res->image_end_offset = (highest + 1) * c->s->cluster_size;
    return fix_snapshot_table(c);
}

int coroutine_fn qcow2_check_repair(BlockDriverState *bs,
                                    BlockCheckResult *res, int fix)
{
    CheckState c = { .bs = bs, .s = bs->opaque, .res = res, .fix = fix };
    int ret = check_run(&c);

    check_free(&c);
    if (ret == 0 && fix) {
        refcounts_settled(c.s);
    }
    if (ret == 0 && fix && !res->check_errors && !res->corruptions) {
        ret = qcow2_repair_mark_consistent(bs);
    }
    return ret;
}

/* check ops: a node broken by an earlier corruption has no driver for
 * the reference, and so no check. */
static int coroutine_fn qcow2_co_check(BlockDriverState *bs,
                                       BlockCheckResult *res, int fix)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (s->broken) {
        return -ENOMEDIUM;      /* marked corrupt by an earlier repair */
    }
    co_mutex_lock(&s->lock);
    ret = qcow2_check_repair(bs, res, fix);
    co_mutex_unlock(&s->lock);
    return ret;
}

const BlockDriverCheckOps qcow2_check_ops = {
    .co_check = qcow2_co_check,
};
