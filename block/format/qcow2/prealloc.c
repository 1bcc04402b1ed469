#include "config.h"
/*
 * qcow2 growth with falloc/full preallocation (create and truncate) of an
 * image whose data lives in its own file, laid out as the reference lays
 * it out, so that files, maps and disk usage match:
 *
 *   1. a refcount area at the end of the used part of the file: the
 *      missing refcount blocks and a new refcount table of the exact
 *      size, counting themselves and the clusters to come (the old table
 *      is freed, and the first new L2 table may take its place);
 *   2. one run of data clusters right after it, one for every guest
 *      cluster from the one the old end lies in to the new end, and the
 *      file extended over the run with the preallocation mode;
 *   3. per L2 table, the entries pointed at the run.  A last cluster cut
 *      by the old end moves to its new host cluster: its head (the guest
 *      data below the old end) is copied first, the entry switched, and
 *      only then its old host cluster freed; the L2 table reaches the
 *      disk after the copy, the lowered refcount after the L2 table.
 */
#include "qcow2.h"

/* Cluster where the refcount area goes: past the last cluster in use in
 * the file (the rest of the file is free space), lock held. */
static int64_t coroutine_fn area_start(BlockDriverState *bs)
{
    int64_t flen;
    uint64_t end = 0;
    int ret = qcow2_file_used_end(bs, &flen, &end);

    if (ret < 0) {
        return ret;
    }
    if (end == 0) {
        qcow2_signal_corruption(bs, "There are no references in the "
                                "refcount table.");
        return -EIO;
    }
    return end;
}

/* Steps 1 and 2 (refcounts only): the first data cluster, or -errno with
 * the reference's message; lock held. */
static int64_t coroutine_fn reserve_data(BlockDriverState *bs, uint64_t nb,
                                         Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t nl2 = DIV_ROUND_UP(nb, s->cluster_size / s->l2_entry_size) + 1;
    int64_t start = area_start(bs);
    int ret;

    if (start >= 0) {
        start = qcow2_refcount_area(bs, start, nb + nl2);
    }
    if (start < 0) {
        error_setg_errno(errp, (int)-start,
                         "Failed to resize refcount structures");
        return start;
    }
    ret = qcow2_alloc_clusters_at(bs, (uint64_t)start << s->cluster_bits,
                                  nb);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to allocate data clusters");
        return ret;
    }
    return start;
}

/* The file extended to @end with @mode; a zero write asked for is done
 * by the file itself when it can (then cleared from *@flags: true). */
static int coroutine_fn extend_file(BlockDriverState *bs, uint64_t end,
                                    PreallocMode mode,
                                    BdrvRequestFlags *flags, bool *zeroed,
                                    Error **errp)
{
    int ret = -ENOTSUP;

    *zeroed = false;
    if (flags && (*flags & BDRV_REQ_ZERO_WRITE)) {
        ret = bdrv_co_truncate(bs->file, end, false, mode,
                               BDRV_REQ_ZERO_WRITE, NULL);
        if (ret == 0) {
            *flags &= ~BDRV_REQ_ZERO_WRITE;
            *zeroed = true;
        }
    }
    if (ret < 0) {
        ret = bdrv_co_truncate(bs->file, end, false, mode, 0, errp);
    }
    if (ret < 0) {
        error_prepend(errp, "Failed to resize underlying file: ");
    }
    return ret;
}

/* The head of the cut last cluster (guest bytes [@guest, +@len), what
 * the disk reads there now) into its new host cluster @host; lock held,
 * dropped for the I/O. */
static int coroutine_fn copy_head(BlockDriverState *bs, uint64_t guest,
                                  uint64_t len, uint64_t host)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *buf = g_malloc(len);
    IOVector v;
    int ret;

    co_mutex_unlock(&s->lock);
    bdrv_debug_event(bs->file, BLKDBG_COW_READ);
    iov_vec_init_buf(&v, buf, len);
    ret = qcow2_co_preadv(bs, guest, len, &v, 0);
    co_mutex_lock(&s->lock);
    if (ret == 0) {
        ret = qcow2_pre_write_overlap_check(bs, 0, host, len);
    }
    if (ret == 0) {
        bdrv_debug_event(bs->file, BLKDBG_COW_WRITE);
        ret = q_pwrite(bs->file, host, len, buf);
    }
    if (ret == 0) {
        /* the entry pointing at the copy only after it is on disk */
        qcow2_cache_depends_on_flush(&s->l2_cache);
    }
    return ret;
}

/* Point the entries of guest clusters [@guest, +@n clusters), all in one
 * L2 table, at host clusters from @host on (@alloc: every subcluster
 * marked allocated, else the bitmaps stay); the clusters the old entries
 * held are freed afterwards.  Lock held. */
static int coroutine_fn link_chunk(BlockDriverState *bs, uint64_t guest,
                                   uint64_t host, int n, bool alloc)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint64_t *old = g_new(uint64_t, n);
    int idx, k = 0, ret = qcow2_mark_dirty_if_lazy(bs);
    void *l2;

    if (ret == 0) {
        ret = qcow2_get_l2_table(bs, guest, true, &l2, &idx);
    }
    if (ret < 0) {
        return ret;
    }
    for (int i = 0; i < n; i++) {
        uint64_t e = qcow2_l2_entry(s, l2, idx + i);

        if (e) {
            old[k++] = e;
        }
        qcow2_set_l2_entry(s, l2, idx + i,
                           (host + ((uint64_t)i << s->cluster_bits)) |
                           QCOW_OFLAG_COPIED);
        if (s->extended_l2 && alloc) {
            qcow2_set_l2_bitmap(s, l2, idx + i, 0xffffffffULL);
        }
    }
    qcow2_cache_mark_dirty(&s->l2_cache, l2);
    qcow2_cache_put(&s->l2_cache, &l2);
    for (int i = 0; i < k; i++) {
        qcow2_free_l2_entry_pass(bs, old[i], false);
    }
    return 0;
}

/* Step 3 for guest bytes [@from, @to), data clusters from cluster @first
 * on; on failure the clusters not linked yet are freed.  Lock held. */
static int coroutine_fn link_all(BlockDriverState *bs, uint64_t from,
                                 uint64_t to, uint64_t first, bool alloc,
                                 Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t guest = qcow2_start_of_cluster(s, from);
    uint64_t host = first << s->cluster_bits;
    uint64_t left = (ROUND_UP(to, s->cluster_size) - guest) >> s->cluster_bits;
    int ret = 0;

    if (from > guest) {
        ret = copy_head(bs, guest, from - guest, host);
    }
    while (left && ret == 0) {
        int n = MIN(left, (uint64_t)(s->l2_size -
                                     qcow2_l2_index(s, guest)));

        ret = link_chunk(bs, guest, host, n, alloc);
        if (ret == 0) {
            guest += (uint64_t)n << s->cluster_bits;
            host += (uint64_t)n << s->cluster_bits;
            left -= n;
        }
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update L2 tables");
        qcow2_free_clusters(bs, host, left << s->cluster_bits,
                            s->discard_passthrough_other);
    }
    return ret;
}

int coroutine_fn qcow2_grow_preallocated(BlockDriverState *bs, uint64_t from,
                                         uint64_t to, PreallocMode mode,
                                         BdrvRequestFlags *flags,
                                         Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t nb = (ROUND_UP(to, s->cluster_size) -
                   qcow2_start_of_cluster(s, from)) >> s->cluster_bits;
    bool zeroed = false;
    int64_t first;
    int ret;

    co_mutex_lock(&s->lock);
    first = reserve_data(bs, nb, errp);
    ret = first < 0 ? (int)first : 0;
    if (ret == 0) {
        ret = extend_file(bs, ((uint64_t)first + nb) << s->cluster_bits,
                          mode, flags, &zeroed, errp);
        if (ret < 0) {
            qcow2_free_clusters(bs, (uint64_t)first << s->cluster_bits,
                                nb << s->cluster_bits,
                                s->discard_passthrough_other);
        }
    }
    if (ret == 0) {
        ret = link_all(bs, from, to, first, zeroed, errp);
    }
    co_mutex_unlock(&s->lock);
    if (ret == 0) {
        ret = qcow2_co_flush_to_os(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to flush the preallocated "
                             "area to disk");
        }
    }
    return ret;
}
