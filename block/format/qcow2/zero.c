#include "config.h"
/*
 * qcow2 zero writes and discards: L2 entry changes only (zero flag or
 * zero bits of the subcluster bitmap; unmapped entries), the entry first,
 * then the old cluster's reference dropped.
 */
#include "qcow2.h"

#define L2_BITMAP_ALL_ZEROES 0xffffffff00000000ULL

/* Zero one whole cluster's entry; @unmap releases its host cluster
 * (with discard-no-unref an own cluster stays allocated, zero).
 * False when the entry already said so (the table stays clean). */
static bool coroutine_fn zero_cluster(BlockDriverState *bs, uint8_t *l2,
                                      int idx, bool unmap)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old = qcow2_l2_entry(s, l2, idx);
    uint64_t oldbm = qcow2_l2_bitmap(s, l2, idx);
    Qcow2ClusterType t = qcow2_cluster_type(s, old);
    bool own = (t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC) &&
               (old & QCOW_OFLAG_COPIED);
    uint64_t ne;

    /* discard-no-unref: an own cluster keeps its reference, as in the
     * reference (its data is still discarded when requests pass) */
    bool keep = unmap && own && s->discard_no_unref;

    unmap = (unmap || !own) && !keep;
    ne = unmap ? 0 : (old & L2E_OFFSET_MASK) | QCOW_OFLAG_COPIED;
    if (!s->extended_l2) {
        ne |= QCOW_OFLAG_ZERO;
    }
    if (ne == old && (!s->extended_l2 || oldbm == L2_BITMAP_ALL_ZEROES)) {
        return false;
    }
    qcow2_set_l2_entry(s, l2, idx, ne);
    qcow2_set_l2_bitmap(s, l2, idx, L2_BITMAP_ALL_ZEROES);
    if (unmap) {
        /* dirty first: the lowered refcount waits for this table */
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
        qcow2_free_l2_entry(bs, old);
    } else if (keep && s->discard_passthrough_request) {
        bdrv_co_pdiscard(s->data_file, old & L2E_OFFSET_MASK,
                         s->cluster_size);
    }
    return true;
}

/* Zero subclusters [start, end) of one cluster (extended L2); 1 when
 * the bitmap changed. */
static int zero_subclusters(BDRVQcow2State *s, uint8_t *l2, int idx,
                            uint64_t start, uint64_t end)
{
    uint64_t l2e = qcow2_l2_entry(s, l2, idx);
    uint64_t bm = qcow2_l2_bitmap(s, l2, idx);
    int first = start >> s->subcluster_bits;
    int n = (end - start) >> s->subcluster_bits;
    uint64_t mask = (n == 32 ? 0xffffffffULL : ((1ULL << n) - 1)) << first;

    if (qcow2_cluster_type(s, l2e) == QCOW2_CLUSTER_COMPRESSED) {
        return -ENOTSUP;
    }
    if (((bm | (mask << 32)) & ~mask) == bm) {
        return 0;
    }
    qcow2_set_l2_bitmap(s, l2, idx, (bm | (mask << 32)) & ~mask);
    return 1;
}

static int coroutine_fn zero_range(BlockDriverState *bs, uint64_t offset,
                                   uint64_t bytes, bool unmap);
static int coroutine_fn discard_zeroing(BlockDriverState *bs, uint64_t offset,
                                        uint64_t bytes);

/* Zero [offset, offset + bytes), subcluster-aligned (lock held); the
 * clusters it frees are discarded in merged runs at the end. */
int coroutine_fn qcow2_zero_range(BlockDriverState *bs, uint64_t offset,
                                  uint64_t bytes, bool unmap)
{
    int ret;

    qcow2_discards_begin(bs);
    ret = zero_range(bs, offset, bytes, unmap);
    qcow2_discards_end(bs, ret);
    return ret;
}

static int coroutine_fn zero_range(BlockDriverState *bs, uint64_t offset,
                                   uint64_t bytes, bool unmap)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t done = 0;

    while (done < bytes) {
        uint64_t pos = offset + done, in = qcow2_offset_into_cluster(s, pos);
        uint64_t len = MIN(bytes - done, s->cluster_size - in);
        void *l2;
        int idx, ret = qcow2_get_l2_table(bs, pos, true, &l2, &idx);

        if (ret < 0) {
            return ret;
        }
        if (len == s->cluster_size) {
            ret = zero_cluster(bs, l2, idx, unmap);
        } else {
            ret = zero_subclusters(s, l2, idx, in, in + len);
        }
        if (ret > 0) {      /* unchanged entries leave the table clean */
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
            ret = 0;
        }
        qcow2_cache_put(&s->l2_cache, &l2);
        if (ret < 0) {
            return ret;
        }
        done += len;
    }
    return 0;
}

/* Does [offset, offset + bytes) read as zeroes, by block status alone? */
static bool coroutine_fn reads_as_zero(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes)
{
    bytes = MIN(bytes, bs->total_bytes - offset);
    while (bytes > 0) {
        int64_t pnum = 0;
        int ret = bdrv_co_block_status_above(bs, NULL, offset, bytes, &pnum,
                                             NULL, NULL, NULL);

        if (ret < 0 || !(ret & BDRV_BLOCK_ZERO) || pnum <= 0) {
            return false;
        }
        offset += pnum;
        bytes -= pnum;
    }
    return true;
}

/*
 * A zero write covering part of one grain (cluster, or subcluster with
 * extended L2) becomes a zero write of the whole grain when the rest of
 * it reads as zeroes and it holds no data (unallocated or already zero),
 * as the reference does; otherwise -ENOTSUP (the block layer writes zero
 * bytes).  On success the lock is held and the range widened.
 */
static int coroutine_fn widen_to_grain(BlockDriverState *bs, uint64_t grain,
                                       int64_t *offset, uint64_t *end)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t start = ROUND_DOWN(*offset, grain), n = grain, host;
    Qcow2SubclusterType type;
    int ret;

    if (!reads_as_zero(bs, start, *offset - start) ||
        !reads_as_zero(bs, *end, ROUND_UP(*end, grain) - *end)) {
        return -ENOTSUP;
    }
    co_mutex_lock(&s->lock);
    /* a write still allocating the grain has not linked it yet: the
     * checks above saw it unallocated, its data is about to land */
    qcow2_wait_inflight(bs, start, grain);
    ret = qcow2_get_host_offset(bs, start, &n, &host, &type);
    if (ret < 0 || (type != QCOW2_SC_UNALLOC_PLAIN &&
                    type != QCOW2_SC_UNALLOC_ALLOC &&
                    type != QCOW2_SC_ZERO_PLAIN &&
                    type != QCOW2_SC_ZERO_ALLOC)) {
        co_mutex_unlock(&s->lock);
        return ret < 0 ? ret : -ENOTSUP;
    }
    *offset = start;
    *end = start + grain;
    return 0;
}

int coroutine_fn qcow2_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes, BdrvRequestFlags flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t grain = s->extended_l2 ? s->subcluster_size : s->cluster_size;
    uint64_t end = offset + bytes;
    int64_t req_offset = offset;
    int ret;

    if (s->h.version < 3 && bs->backing) {
        return -ENOTSUP;    /* v2 has no zero flag */
    }
    if (end == (uint64_t)bs->total_bytes) {
        end = ROUND_UP(end, grain);
        /* a last cluster zeroed from its start is zeroed whole, the
         * subclusters past the image's end too, as the reference does */
        if (qcow2_start_of_cluster(s, end - 1) >= (uint64_t)offset) {
            end = ROUND_UP(end, s->cluster_size);
        }
    }
    if (offset % grain || end % grain) {
        /* the block layer sends an unaligned piece alone, inside one grain */
        ret = widen_to_grain(bs, grain, &offset, &end);
        if (ret < 0) {
            return ret;
        }
    } else {
        co_mutex_lock(&s->lock);
    }
    if (s->data_file != bs->file &&
        (s->h.autoclear_features & QCOW2_AUTOCLEAR_DATA_RAW)) {
        /* the raw data file must read as the guest sees it */
        ret = bdrv_co_pwrite_zeroes(s->data_file, req_offset, bytes, flags);
        if (ret < 0) {
            co_mutex_unlock(&s->lock);
            return ret;
        }
    }
    qcow2_wait_inflight(bs, offset, end - offset);
    /* no dirty bit with lazy refcounts: zeroing only drops references
     * (written after the L2 entries) or allocates L2 tables (written
     * after their refcounts), as with the reference */
    if (s->h.version < 3) {
        /* v2 without backing file: unallocated reads as zeroes */
        ret = discard_zeroing(bs, offset, end - offset);
    } else {
        ret = qcow2_zero_range(bs, offset, end - offset,
                               flags & BDRV_REQ_MAY_UNMAP);
    }
    co_mutex_unlock(&s->lock);
    return ret;
}

/* The entry a discarded cluster gets.  With discard-no-unref a guest
 * discard keeps any reference but a compressed one, as the reference
 * does: the entry keeps its offset, zero flag (or zero bitmap) added. */
static void discard_entry(BDRVQcow2State *s, uint64_t old, uint64_t oldbm,
                          bool allocated, bool has_backing, bool full,
                          bool keep, uint64_t *ne, uint64_t *nbm)
{
    /* nothing to drop and nothing below: the entry reads as zeroes
     * already and stays as it is, as the reference leaves it */
    *ne = full ? 0 : old;
    *nbm = full ? 0 : oldbm;
    if (full || !(has_backing || allocated)) {
        return;
    }
    *ne = keep ? old : 0;
    *nbm = 0;
    if (s->extended_l2) {
        *nbm = L2_BITMAP_ALL_ZEROES;
    } else if (s->h.version >= 3) {
        *ne |= QCOW_OFLAG_ZERO;
    }
}

static void discard_cluster(BlockDriverState *bs, uint8_t *l2, int idx,
                            bool full, bool pass_always)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old = qcow2_l2_entry(s, l2, idx);
    uint64_t oldbm = qcow2_l2_bitmap(s, l2, idx);
    Qcow2ClusterType t = qcow2_cluster_type(s, old);
    bool allocated = t == QCOW2_CLUSTER_NORMAL ||
                     t == QCOW2_CLUSTER_ZERO_ALLOC ||
                     t == QCOW2_CLUSTER_COMPRESSED;
    bool keep = s->discard_no_unref && !full &&
                t != QCOW2_CLUSTER_COMPRESSED;
    uint64_t ne, nbm;

    discard_entry(s, old, oldbm, allocated, bs->backing, full, keep,
                  &ne, &nbm);
    if (ne == old && nbm == oldbm) {
        return;
    }
    qcow2_set_l2_entry(s, l2, idx, ne);
    qcow2_set_l2_bitmap(s, l2, idx, nbm);
    qcow2_cache_mark_dirty(&s->l2_cache, l2);  /* before the refcount drops */
    if (!keep) {
        qcow2_free_l2_entry_pass(bs, old, pass_always ||
                                 s->discard_passthrough_request);
    } else if (s->discard_passthrough_request &&
               (t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC) &&
               (old & QCOW_OFLAG_COPIED)) {
        /* the data goes too; not a snapshot's (the reference's discard
         * of a shared cluster also empties the snapshot's data) */
        bdrv_co_pdiscard(s->data_file, old & L2E_OFFSET_MASK,
                         s->cluster_size);
    }
}

/* Is the L2 table covering @pos shared with a snapshot?  Then even a full
 * discard must change a copy of it (COPIED missing from the L1 entry). */
static bool l2_table_shared(BDRVQcow2State *s, uint64_t pos)
{
    uint64_t l1i = qcow2_l1_index(s, pos);

    return l1i < s->l1_size && (s->l1_table[l1i] & L1E_OFFSET_MASK) &&
           !(s->l1_table[l1i] & QCOW_OFLAG_COPIED);
}

/* Discard whole clusters [offset, offset + bytes) (lock held); the freed
 * clusters are discarded in the file when @pass_always (a shrink) or as
 * pass-discard-request says.  @alloc_l2 gives every L1 entry of the range
 * an L2 table of its own first, even a full discard's. */
static int coroutine_fn discard_range(BlockDriverState *bs, uint64_t offset,
                                      uint64_t bytes, bool full_discard,
                                      bool pass_always, bool alloc_l2)
{
    BDRVQcow2State *s = bs->opaque;

    for (uint64_t pos = offset; pos < offset + bytes; pos += s->cluster_size) {
        void *l2;
        bool alloc = alloc_l2 || !full_discard || l2_table_shared(s, pos);
        int idx, ret = qcow2_get_l2_table(bs, pos, alloc, &l2, &idx);

        if (ret < 0) {
            return ret;
        }
        if (!l2) {
            continue;
        }
        discard_cluster(bs, l2, idx, full_discard, pass_always);
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
        qcow2_cache_put(&s->l2_cache, &l2);
    }
    return 0;
}

/* The freed clusters are discarded in merged runs at the end. */
static int coroutine_fn discard_batched(BlockDriverState *bs, uint64_t offset,
                                        uint64_t bytes, bool full_discard,
                                        bool pass_always, bool alloc_l2)
{
    int ret;

    qcow2_discards_begin(bs);
    ret = discard_range(bs, offset, bytes, full_discard, pass_always,
                        alloc_l2);
    qcow2_discards_end(bs, ret);
    return ret;
}

int coroutine_fn qcow2_discard_range(BlockDriverState *bs, uint64_t offset,
                                     uint64_t bytes, bool full_discard,
                                     bool pass_always)
{
    return discard_batched(bs, offset, bytes, full_discard, pass_always,
                           false);
}

/* A v2 image's zero write without a backing file: a full discard that
 * gives every L1 entry of the range an L2 table first, as the reference
 * (its discard always goes through a table of its own). */
static int coroutine_fn discard_zeroing(BlockDriverState *bs, uint64_t offset,
                                        uint64_t bytes)
{
    return discard_batched(bs, offset, bytes, true, false, true);
}

/* The reference discards a shrink's cropped range through its L2 tables,
 * giving a table to each L1 entry without one (the temporary tables are
 * freed with the cropped L1 entries, but take free clusters in between,
 * which end up zeroed, and the kept last entry keeps its new table). */
int coroutine_fn qcow2_discard_cropped(BlockDriverState *bs, uint64_t offset,
                                       uint64_t bytes)
{
    return discard_batched(bs, offset, bytes, true, true, true);
}

int coroutine_fn qcow2_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t end = offset + bytes;
    int ret;

    if (s->h.version < 3 && bs->backing) {
        /* v2 cannot mark a cluster zero, and an unallocated one would
         * show the backing file's data: the reference leaves it as is */
        return -ENOTSUP;
    }
    if (end == (uint64_t)bs->total_bytes) {
        end = ROUND_UP(end, s->cluster_size);
    }
    if (qcow2_offset_into_cluster(s, offset) ||
        qcow2_offset_into_cluster(s, end)) {
        return -ENOTSUP;
    }
    if (s->h.version < 3 && bs->backing) {
        /* v2 has no zero flag: the backing file would show through */
        return -ENOTSUP;
    }
    co_mutex_lock(&s->lock);
    qcow2_wait_inflight(bs, offset, end - offset);
    /* only references dropped: no dirty bit (see above) */
    ret = qcow2_discard_range(bs, offset, end - offset, false, false);
    co_mutex_unlock(&s->lock);
    return ret;
}
