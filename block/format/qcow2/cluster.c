#include "config.h"
/*
 * qcow2 cluster mapping: L1 table (in memory, written through), L2 tables
 * (through the L2 cache), entry types (normal, zero, unallocated,
 * compressed; per subcluster with extended L2 entries) and L2 table
 * allocation.  Callers hold s->lock.
 */
#include "qcow2.h"

/* ---- entries ---- */

uint64_t qcow2_l2_entry(BDRVQcow2State *s, const uint8_t *l2, int idx)
{
    return q_ld64(l2 + (size_t)idx * s->l2_entry_size);
}

uint64_t qcow2_l2_bitmap(BDRVQcow2State *s, const uint8_t *l2, int idx)
{
    return s->extended_l2 ? q_ld64(l2 + (size_t)idx * 16 + 8) : 0;
}

void qcow2_set_l2_entry(BDRVQcow2State *s, uint8_t *l2, int idx, uint64_t v)
{
    q_st64(l2 + (size_t)idx * s->l2_entry_size, v);
}

void qcow2_set_l2_bitmap(BDRVQcow2State *s, uint8_t *l2, int idx, uint64_t v)
{
    if (s->extended_l2) {
        q_st64(l2 + (size_t)idx * 16 + 8, v);
    }
}

/* Compressed descriptor: host byte offset and the bytes that may hold
 * the stream (to the end of its last 512-byte sector). */
void qcow2_parse_compressed(BDRVQcow2State *s, uint64_t l2e, uint64_t *host,
                            uint64_t *len)
{
    int x = 62 - (s->cluster_bits - 8);
    uint64_t nb = ((l2e >> x) & ((1ULL << (s->cluster_bits - 8)) - 1)) + 1;

    *host = l2e & ((1ULL << x) - 1);
    *len = nb * 512 - (*host & 511);
}

Qcow2ClusterType qcow2_cluster_type(BDRVQcow2State *s, uint64_t l2e)
{
    if (l2e & QCOW_OFLAG_COMPRESSED) {
        return QCOW2_CLUSTER_COMPRESSED;
    }
    if ((l2e & QCOW_OFLAG_ZERO) && !s->extended_l2) {
        return (l2e & L2E_OFFSET_MASK) ? QCOW2_CLUSTER_ZERO_ALLOC :
                                         QCOW2_CLUSTER_ZERO_PLAIN;
    }
    if (l2e & L2E_OFFSET_MASK) {
        return QCOW2_CLUSTER_NORMAL;
    }
    /* host offset 0 is a real cluster of an external data file (its
     * clusters map one to one); those entries always carry COPIED */
    return (s->h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) &&
           (l2e & QCOW_OFLAG_COPIED) ?
           QCOW2_CLUSTER_NORMAL : QCOW2_CLUSTER_UNALLOCATED;
}

/* An extended entry whose bitmap is impossible anywhere in the cluster:
 * a subcluster both allocated and zero, or an allocated subcluster in a
 * cluster without host offset.  As in the reference, every subcluster of
 * such an entry is invalid, not only the bad ones. */
bool qcow2_l2_bitmap_invalid(BDRVQcow2State *s, uint64_t l2e,
                             uint64_t bitmap)
{
    Qcow2ClusterType t = qcow2_cluster_type(s, l2e);
    uint64_t alloc = bitmap & 0xffffffffULL;

    if (!s->extended_l2 || t == QCOW2_CLUSTER_COMPRESSED) {
        return false;
    }
    return t == QCOW2_CLUSTER_NORMAL ? ((bitmap >> 32) & alloc) != 0
                                     : alloc != 0;
}

/* Subcluster @sc's type; without extended L2 the cluster's. */
Qcow2SubclusterType qcow2_subcluster_type(BDRVQcow2State *s, uint64_t l2e,
                                          uint64_t bitmap, int sc)
{
    Qcow2ClusterType t = qcow2_cluster_type(s, l2e);
    bool alloc, zero;

    if (t == QCOW2_CLUSTER_COMPRESSED) {
        return QCOW2_SC_COMPRESSED;
    }
    if (!s->extended_l2) {
        return t == QCOW2_CLUSTER_NORMAL ? QCOW2_SC_NORMAL :
               t == QCOW2_CLUSTER_ZERO_ALLOC ? QCOW2_SC_ZERO_ALLOC :
               t == QCOW2_CLUSTER_ZERO_PLAIN ? QCOW2_SC_ZERO_PLAIN :
               QCOW2_SC_UNALLOC_PLAIN;
    }
    if (qcow2_l2_bitmap_invalid(s, l2e, bitmap)) {
        return QCOW2_SC_INVALID;
    }
    alloc = bitmap & (1ULL << sc);
    zero = bitmap & (1ULL << (sc + 32));
    if (t == QCOW2_CLUSTER_NORMAL) {
        return zero ? QCOW2_SC_ZERO_ALLOC :
               alloc ? QCOW2_SC_NORMAL : QCOW2_SC_UNALLOC_ALLOC;
    }
    return zero ? QCOW2_SC_ZERO_PLAIN : QCOW2_SC_UNALLOC_PLAIN;
}

/* ---- L1 ---- */

/* One 64-bit entry of a metadata table (L1, refcount table) written in
 * place, after the overlap check of its kind, with its blkdebug event. */
int coroutine_fn qcow2_write_table_entry(BlockDriverState *bs, int ol_kind,
                                         uint64_t off, uint64_t value,
                                         BlkdebugEvent ev)
{
    uint8_t b[8];
    int ret;

    ret = qcow2_pre_write_overlap_check(bs, ol_kind, off, 8);
    if (ret < 0) {
        return ret;
    }
    q_st64(b, value);
    bdrv_debug_event(bs->file, ev);
    return q_pwrite(bs->file, off, 8, b);
}

/* An L1 entry goes to disk in the file's request alignment (at most a
 * cluster), its neighbours taken from memory and zero past the table's
 * end, as the reference writes it: under O_DIRECT a shrunk table's
 * cluster then holds zeroes after it, not what the cluster held before. */
int coroutine_fn qcow2_write_l1_entry(BlockDriverState *bs, uint64_t l1_index)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t align = bdrv_get_limits(bs->file->bs)->request_alignment;
    uint64_t n = MAX(8, MIN(align, s->cluster_size)) / 8;
    uint64_t first = l1_index / n * n, off = s->h.l1_table_offset + first * 8;
    g_autofree uint8_t *buf = NULL;
    int ret;

    if (n == 1) {
        return qcow2_write_table_entry(bs, QCOW2_OL_ACTIVE_L1, off,
                                       s->l1_table[l1_index],
                                       BLKDBG_L1_UPDATE);
    }
    buf = g_malloc0(n * 8);
    for (uint64_t i = 0; i < n && first + i < s->l1_size; i++) {
        q_st64(buf + i * 8, s->l1_table[first + i]);
    }
    ret = qcow2_pre_write_overlap_check(bs, QCOW2_OL_ACTIVE_L1, off, n * 8);
    if (ret < 0) {
        return ret;
    }
    bdrv_debug_event(bs->file, BLKDBG_L1_UPDATE);
    return q_pwrite(bs->file, off, n * 8, buf);
}

/* Write the new L1 table (current entries, rest zero) at @off. */
static int coroutine_fn write_new_l1(BlockDriverState *bs, int64_t off,
                                     uint64_t new_size, uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *buf = g_malloc0(bytes);
    int ret = qcow2_cache_flush(bs, &s->refcount_cache);

    for (uint32_t i = 0; i < s->l1_size; i++) {
        q_st64(buf + i * 8, s->l1_table[i]);
    }
    if (ret == 0) {
        ret = qcow2_pre_write_overlap_check(bs, 0, off, bytes);
    }
    if (ret == 0) {
        bdrv_debug_event(bs->file, BLKDBG_L1_GROW_WRITE_TABLE);
        ret = q_pwrite(bs->file, off, new_size * 8, buf);
    }
    return ret < 0 ? ret : bdrv_co_flush(bs->file->bs);
}

/* Point the header at the new table (size + offset in one write) and
 * release the old one. */
static int coroutine_fn switch_l1(BlockDriverState *bs, int64_t off,
                                  uint64_t new_size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t *tbl;
    uint8_t hb[12];
    int ret;

    q_st32(hb, new_size);
    q_st64(hb + 4, off);
    bdrv_debug_event(bs->file, BLKDBG_L1_GROW_ACTIVATE_TABLE);
    ret = q_pwrite(bs->file, 36, 12, hb);
    /* on disk before the old table's clusters can be reused, and before
     * a new size in the header needs the larger table */
    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    if (ret < 0) {
        return ret;
    }
    tbl = g_new0(uint64_t, new_size);
    memcpy(tbl, s->l1_table, (size_t)s->l1_size * 8);
    g_free(s->l1_table);
    s->l1_table = tbl;
    if (s->l1_size) {
        /* a freed table goes to the file as pass-discard-other says */
        qcow2_free_clusters(bs, s->h.l1_table_offset,
                            ROUND_UP((uint64_t)s->l1_size * 8, 512),
                            s->discard_passthrough_other);
    }
    s->l1_size = s->h.l1_size = new_size;
    s->h.l1_table_offset = off;
    return 0;
}

/* A larger L1 table elsewhere; the header switches to it in one write. */
int coroutine_fn qcow2_grow_l1_table(BlockDriverState *bs, uint64_t min_size,
                                     bool exact)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t new_size = min_size, bytes;
    int64_t off;
    int ret;

    if (min_size <= s->l1_size) {
        return 0;
    }
    if (!exact) {
        /* grown by half (rounded up) as often as needed, as the
         * reference grows it */
        new_size = MAX(s->l1_size, 1);
        while (new_size < min_size) {
            new_size = DIV_ROUND_UP(new_size * 3, 2);
        }
    }
    if (new_size > QCOW2_MAX_L1_SIZE / 8) {
        return -EFBIG;
    }
    bytes = ROUND_UP(new_size * 8, 512);
    bdrv_debug_event(bs->file, BLKDBG_L1_GROW_ALLOC_TABLE);
    ret = qcow2_cache_flush(bs, &s->refcount_cache);
    off = ret < 0 ? ret : qcow2_alloc_clusters_at0(bs, bytes);
    if (off <= 0) {
        return off < 0 ? off : qcow2_refuse_header_alloc(bs);
    }
    ret = write_new_l1(bs, off, new_size, bytes);
    if (ret == 0) {
        ret = switch_l1(bs, off, new_size);
    }
    if (ret < 0) {
        qcow2_free_clusters(bs, off, bytes, false);
    }
    return ret;
}

/* ---- L2 tables ---- */

/* Fill the new table at @off (empty, or a copy of @old) and write it.
 * The refcount blocks go first, with lazy refcounts too: a table is
 * never on disk with its own cluster counted free (the reference). */
static int coroutine_fn l2_fill(BlockDriverState *bs, int64_t off,
                                uint64_t old, void **table)
{
    BDRVQcow2State *s = bs->opaque;
    void *old_tbl = NULL;
    int ret = qcow2_cache_flush(bs, &s->refcount_cache);

    if (ret == 0) {
        ret = qcow2_cache_get_empty(bs, &s->l2_cache, off, table);
    }
    if (ret < 0) {
        return ret;
    }
    if (old) {
        bdrv_debug_event(bs->file, BLKDBG_L2_ALLOC_COW_READ);
        ret = qcow2_cache_get(bs, &s->l2_cache, old, &old_tbl);
        if (ret == 0) {
            memcpy(*table, old_tbl, s->cluster_size);
            qcow2_cache_put(&s->l2_cache, &old_tbl);
        }
    }
    qcow2_cache_mark_dirty(&s->l2_cache, *table);
    if (ret == 0) {
        bdrv_debug_event(bs->file, BLKDBG_L2_ALLOC_WRITE);
        ret = qcow2_cache_flush(bs, &s->l2_cache);
    }
    return ret;
}

/* A new L2 table for @l1i: empty, or a copy of the shared one (after
 * a snapshot) whose entries then lose the COPIED flag.  On failure the
 * L1 entry is restored and the new cluster freed with its dirty table
 * dropped from the cache (no second failure at close, as the reference). */
static int coroutine_fn l2_allocate(BlockDriverState *bs, uint64_t l1i,
                                    void **table)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old_l1e = s->l1_table[l1i], old = old_l1e & L1E_OFFSET_MASK;
    int64_t off = qcow2_alloc_clusters_at0(bs, s->cluster_size);
    int ret;

    if (off < 0) {
        return off;
    }
    if (off == 0) {
        /* the header's refcount is damaged */
        qcow2_signal_corruption(bs, "Preventing invalid allocation of L2 "
                                "table at offset 0");
        return -EIO;
    }
    *table = NULL;
    ret = l2_fill(bs, off, old, table);
    if (ret == 0) {
        s->l1_table[l1i] = off | QCOW_OFLAG_COPIED;
        qcow2_note_l1(s, l1i);
        ret = qcow2_write_l1_entry(bs, l1i);
    }
    if (ret < 0) {
        if (*table) {
            qcow2_cache_put(&s->l2_cache, table);
        }
        s->l1_table[l1i] = old_l1e;
        qcow2_free_unused_cluster(bs, off);
        return ret;
    }
    if (old) {
        qcow2_free_clusters(bs, old, s->cluster_size,
                            s->discard_passthrough_other);
    }
    return 0;
}

/* The L2 table covering @offset (a cache reference the caller puts) and
 * the entry index.  Without @alloc, *l2 is NULL when there is none. */
int coroutine_fn qcow2_get_l2_table(BlockDriverState *bs, uint64_t offset,
                                    bool alloc, void **l2, int *idx)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l1i = qcow2_l1_index(s, offset), l1e, off;
    int ret;

    *l2 = NULL;
    *idx = qcow2_l2_index(s, offset);
    if (l1i >= s->l1_size) {
        if (!alloc) {
            return 0;
        }
        ret = qcow2_grow_l1_table(bs, l1i + 1, false);
        if (ret < 0) {
            return ret;
        }
    }
    l1e = s->l1_table[l1i];
    off = l1e & L1E_OFFSET_MASK;
    if (off && (qcow2_offset_into_cluster(s, off) || off < s->cluster_size)) {
        qcow2_signal_corruption(bs, "L2 table offset %#" PRIx64
                                " unaligned (L1 index: %#" PRIx64 ")",
                                off, l1i);
        return -EIO;
    }
    if (alloc && (!off || !(l1e & QCOW_OFLAG_COPIED))) {
        return l2_allocate(bs, l1i, l2);
    }
    if (!off) {
        return 0;
    }
    return qcow2_cache_get(bs, &s->l2_cache, off, l2);
}

/* Can @next (cluster i + k) continue a run of @type started at @host?
 * Every type with a host cluster needs it contiguous, also unallocated
 * subclusters of an allocated cluster, as the reference's answers (and
 * so its callers' steps, e.g. rebase's pieces) end there. */
static bool run_continues(BDRVQcow2State *s, Qcow2SubclusterType type,
                          uint64_t host, uint64_t skipped, uint64_t next_host)
{
    if (type == QCOW2_SC_NORMAL || type == QCOW2_SC_ZERO_ALLOC ||
        type == QCOW2_SC_UNALLOC_ALLOC) {
        return next_host == host + skipped;
    }
    return type != QCOW2_SC_COMPRESSED;
}

/* The entry's host offset must be a cluster boundary; invalid subcluster
 * bit combinations are corruption too. */
static int check_entry(BlockDriverState *bs, uint64_t offset, int idx,
                       uint64_t base, Qcow2SubclusterType type)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l2_off = s->l1_table[qcow2_l1_index(s, offset)] & L1E_OFFSET_MASK;

    if (type == QCOW2_SC_INVALID) { /* two spaces: the reference's text */
        qcow2_signal_corruption(bs, "Invalid cluster entry found  (L2 offset: "
                                "%#" PRIx64 ", L2 index: %#x)", l2_off, idx);
        return -EIO;
    }
    if (type != QCOW2_SC_COMPRESSED && base &&
        (base & (s->cluster_size - 1))) {
        qcow2_signal_corruption(bs, "Cluster allocation offset %#" PRIx64
                                " unaligned (L2 offset: %#" PRIx64
                                ", L2 index: %#x)", base, l2_off, idx);
        return -EIO;
    }
    return 0;
}

/* How far from @offset (up to @want bytes, all in @l2) the subclusters
 * keep @type and, for data, stay contiguous in the host. */
static uint64_t run_length(BDRVQcow2State *s, const uint8_t *l2,
                           uint64_t offset, uint64_t want, uint64_t host,
                           Qcow2SubclusterType type)
{
    uint64_t got = s->subcluster_size - (offset & (s->subcluster_size - 1));

    while (got < want) {
        uint64_t pos = offset + got;
        int i2 = qcow2_l2_index(s, pos);
        int sc2 = qcow2_offset_into_cluster(s, pos) >> s->subcluster_bits;
        uint64_t e2 = qcow2_l2_entry(s, l2, i2);
        uint64_t b2 = qcow2_l2_bitmap(s, l2, i2);

        if (qcow2_subcluster_type(s, e2, b2, sc2) != type ||
            !run_continues(s, type, host, got,
                           (e2 & L2E_OFFSET_MASK) +
                           qcow2_offset_into_cluster(s, pos))) {
            break;
        }
        got += s->subcluster_size;
    }
    return MIN(got, want);
}

/* Type and host offset at @offset; *bytes is cut to the run of equal
 * subclusters (contiguous in the host for data) within one L2 table. */
/* An unallocated run that reaches the end of @offset's L2 range (@run
 * bytes) goes on through the following L1 entries without a table, up to
 * @want: one answer for a large empty area, whatever the cluster size. */
static uint64_t no_table_run(BDRVQcow2State *s, uint64_t offset,
                             uint64_t run, uint64_t want)
{
    uint64_t span = (uint64_t)s->l2_size << s->cluster_bits;
    uint64_t l1i = qcow2_l1_index(s, offset) + 1;

    while (run < want) {
        if (l1i >= s->l1_size) {
            return want;              /* past the L1 table: no data */
        }
        if (s->l1_table[l1i++] & L1E_OFFSET_MASK) {
            break;
        }
        run += span;
    }
    return MIN(run, want);
}

int coroutine_fn qcow2_get_host_offset(BlockDriverState *bs, uint64_t offset,
                                       uint64_t *bytes, uint64_t *host,
                                       Qcow2SubclusterType *type)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t limit = ((uint64_t)(s->l2_size - qcow2_l2_index(s, offset))
                      << s->cluster_bits) - qcow2_offset_into_cluster(s, offset);
    uint64_t asked = *bytes, want = MIN(asked, limit), l2e, base;
    int sc = qcow2_offset_into_cluster(s, offset) >> s->subcluster_bits;
    void *l2;
    int idx, ret = qcow2_get_l2_table(bs, offset, false, &l2, &idx);

    *host = 0;
    if (ret < 0 || !l2) {
        *type = QCOW2_SC_UNALLOC_PLAIN;
        *bytes = ret < 0 ? want : no_table_run(s, offset, want, asked);
        return ret;
    }
    l2e = qcow2_l2_entry(s, l2, idx);
    *type = qcow2_subcluster_type(s, l2e, qcow2_l2_bitmap(s, l2, idx), sc);
    base = l2e & L2E_OFFSET_MASK;
    ret = check_entry(bs, offset, idx, base, *type);
    if (ret == 0 && *type == QCOW2_SC_COMPRESSED) {
        *host = l2e;
        *bytes = MIN(want, s->cluster_size -
                           qcow2_offset_into_cluster(s, offset));
    } else if (ret == 0) {
        *host = base + qcow2_offset_into_cluster(s, offset);
        *bytes = run_length(s, l2, offset, want, *host, *type);
        if (*type == QCOW2_SC_UNALLOC_PLAIN && *bytes == limit) {
            *bytes = no_table_run(s, offset, limit, asked);
        }
    }
    qcow2_cache_put(&s->l2_cache, &l2);
    return ret;
}
