#include "config.h"
/*
 * qcow2 data path: reads (data, zero, unallocated -> backing, compressed),
 * writes (in place, or allocating with copy-on-write merged into one
 * request), and block status.
 *
 * Allocating writes hold s->lock from the allocation until the L2 entry
 * points at the written data: concurrent allocations of one cluster are
 * serialised, and a new cluster is never visible before its data.
 *
 * Sections: reads (runs of compressed clusters: read-compressed.c); copy
 * offload from this image; writes (a payload: the caller's vector, or a
 * copy offload onto this image); allocation order (ordered writes);
 * allocations in flight; plain writes and copies onto this image;
 * compressed writes; flush; block status; preallocation.
 */
#include "qcow2.h"

/* ---- reads ---- */

/* Unallocated range: the backing node's data (zeroes past its end). */
static int coroutine_fn read_backing(BlockDriverState *bs, uint64_t offset,
                                     uint64_t bytes, IOVector *qiov,
                                     size_t qoff)
{
    int64_t blen;
    uint64_t n = 0;
    IOVector slice;
    int ret = 0;

    if (bs->backing) {
        blen = bdrv_co_getlength(bs->backing->bs);
        if (blen < 0) {
            return blen;
        }
        n = (int64_t)offset < blen ? MIN(bytes, (uint64_t)blen - offset) : 0;
    }
    if (n) {
        iov_vec_init_slice(&slice, qiov, qoff, n);
        bdrv_debug_event(bs->file, BLKDBG_READ_BACKING_AIO);
        ret = bdrv_co_preadv(bs->backing, offset, n, &slice, 0);
        iov_vec_destroy(&slice);
    }
    if (ret == 0 && bytes > n) {
        iov_vec_memset(qiov, qoff + n, 0, bytes - n);
    }
    return ret;
}

/* Inflate the compressed cluster described by @l2e into @out. */
static int coroutine_fn read_compressed_cluster(BlockDriverState *bs,
                                                uint64_t l2e, uint8_t *out)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t host, len;
    g_autofree uint8_t *in = NULL;
    int ret;

    qcow2_parse_compressed(s, l2e, &host, &len);
    in = g_malloc(len);
    bdrv_debug_event(bs->file, BLKDBG_READ_COMPRESSED);
    ret = qcow2_read_table(bs, host, len, in);
    if (ret < 0) {
        return ret;
    }
    ret = qcow2_co_decompress(s->compression_type, out, s->cluster_size, in,
                              len);
    return ret < 0 ? -EIO : 0;
}

static int coroutine_fn read_compressed(BlockDriverState *bs, uint64_t offset,
                                        uint64_t bytes, uint64_t l2e,
                                        IOVector *qiov, size_t qoff)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *buf = g_malloc(s->cluster_size);
    int ret = read_compressed_cluster(bs, l2e, buf);

    if (ret == 0) {
        iov_vec_from_buf(qiov, qoff, buf + qcow2_offset_into_cluster(s, offset),
                         bytes);
    }
    return ret;
}

/* One run of equal subclusters. */
static int coroutine_fn read_run(BlockDriverState *bs, uint64_t offset,
                                 uint64_t bytes, uint64_t host,
                                 Qcow2SubclusterType type, IOVector *qiov,
                                 size_t qoff)
{
    BDRVQcow2State *s = bs->opaque;
    IOVector slice;
    int ret;

    switch (type) {
    case QCOW2_SC_UNALLOC_PLAIN:
    case QCOW2_SC_UNALLOC_ALLOC:
        return read_backing(bs, offset, bytes, qiov, qoff);
    case QCOW2_SC_ZERO_PLAIN:
    case QCOW2_SC_ZERO_ALLOC:
        iov_vec_memset(qiov, qoff, 0, bytes);
        return 0;
    case QCOW2_SC_COMPRESSED:
        return read_compressed(bs, offset, bytes, host, qiov, qoff);
    case QCOW2_SC_NORMAL:
        iov_vec_init_slice(&slice, qiov, qoff, bytes);
        bdrv_debug_event(bs->file, BLKDBG_READ_AIO);
        ret = bdrv_co_preadv(s->data_file, host, bytes, &slice, 0);
        iov_vec_destroy(&slice);
        return ret;
    default:
        return -EIO;
    }
}

/* Read the guest range; @locked: the caller holds s->lock (COW). */
static int coroutine_fn read_guest(BlockDriverState *bs, uint64_t offset,
                                   uint64_t bytes, IOVector *qiov,
                                   size_t qoff, bool locked)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t done = 0;
    int ret = 0;

    while (done < bytes && ret == 0) {
        uint64_t cur = bytes - done, host;
        Qcow2SubclusterType type;

        if (!locked) {
            co_mutex_lock(&s->lock);
        }
        ret = qcow2_get_host_offset(bs, offset + done, &cur, &host, &type);
        if (!locked) {
            co_mutex_unlock(&s->lock);
        }
        if (ret == 0 && type == QCOW2_SC_COMPRESSED && !locked) {
            /* with the compressed clusters after it, in one go */
            ret = qcow2_read_compressed_run(bs, offset + done, bytes - done,
                                            host, qiov, qoff + done, &cur);
        } else if (ret == 0) {
            ret = read_run(bs, offset + done, cur, host, type, qiov,
                           qoff + done);
        }
        done += cur;
    }
    return ret;
}

int coroutine_fn qcow2_co_preadv(BlockDriverState *bs, int64_t offset,
                                 int64_t bytes, IOVector *qiov,
                                 BdrvRequestFlags flags)
{
    return read_guest(bs, offset, bytes, qiov, 0, false);
}

/* ---- copy offload from this image ---- */

/* An unallocated run over a backing node: that node's own copy offload
 * at the same guest offsets.  Past its end the guest reads zeroes: left
 * to reads and writes. */
static int coroutine_fn copy_run_backing(BlockDriverState *bs,
                                         uint64_t offset, uint64_t bytes,
                                         BdrvChild *dst, int64_t dst_offset,
                                         BdrvRequestFlags rf,
                                         BdrvRequestFlags wf)
{
    int64_t blen = bdrv_co_getlength(bs->backing->bs);

    if (blen < 0) {
        return blen;
    }
    if (offset + bytes > (uint64_t)blen) {
        return -ENOTSUP;
    }
    return bdrv_co_copy_range_from(bs->backing, offset, dst, dst_offset,
                                   bytes, rf, wf);
}

/* One run of the source at guest @offset: data clusters are the data
 * file's bytes, copied below the formats (convert's sparse copy between
 * memory files, or copy_file_range); unallocated ones the backing
 * node's; zero runs need nothing on a target that skips zero blocks, a
 * zero write otherwise.  Compressed clusters are left to reads and
 * writes (-ENOTSUP). */
static int coroutine_fn copy_run_from(BlockDriverState *bs, uint64_t offset,
                                      uint64_t bytes, uint64_t host,
                                      Qcow2SubclusterType type,
                                      BdrvChild *dst, int64_t dst_offset,
                                      BdrvRequestFlags rf,
                                      BdrvRequestFlags wf)
{
    BDRVQcow2State *s = bs->opaque;
    bool unalloc = type == QCOW2_SC_UNALLOC_PLAIN ||
                   type == QCOW2_SC_UNALLOC_ALLOC;

    if (type == QCOW2_SC_NORMAL) {
        return bdrv_co_copy_range_from(s->data_file, host, dst, dst_offset,
                                       bytes, rf, wf);
    }
    if (unalloc && bs->backing) {
        return copy_run_backing(bs, offset, bytes, dst, dst_offset, rf, wf);
    }
    if (!unalloc && type != QCOW2_SC_ZERO_PLAIN &&
        type != QCOW2_SC_ZERO_ALLOC) {
        return -ENOTSUP;            /* compressed */
    }
    if (wf & BDRV_REQ_SKIP_ZERO_BLOCKS) {
        return 0;
    }
    return bdrv_co_pwrite_zeroes(dst, dst_offset, bytes, wf & BDRV_REQ_FUA);
}

int coroutine_fn qcow2_co_copy_range_from(BlockDriverState *bs,
                                          BdrvChild *src, int64_t offset,
                                          BdrvChild *dst, int64_t dst_offset,
                                          int64_t bytes, BdrvRequestFlags rf,
                                          BdrvRequestFlags wf)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t done = 0;
    int ret = 0;

    while (done < (uint64_t)bytes && ret == 0) {
        uint64_t cur = bytes - done, host;
        Qcow2SubclusterType type;

        co_mutex_lock(&s->lock);
        ret = qcow2_get_host_offset(bs, offset + done, &cur, &host, &type);
        co_mutex_unlock(&s->lock);
        if (ret == 0) {
            ret = copy_run_from(bs, offset + done, cur, host, type, dst,
                                dst_offset + done, rf, wf);
        }
        done += cur;
    }
    return ret;
}

/* ---- writes ---- */

/* Where a write's guest data comes from: the caller's vector, or (copy
 * offload onto this image) a range of another node's child, moved into
 * the data file below the formats. */
typedef struct Payload {
    IOVector *qiov;
    BdrvChild *src;               /* copy offload: the source child */
    int64_t src_offset;
    BdrvRequestFlags rf;          /* its read flags */
} Payload;

/* @bytes of the payload from @qoff into the data file at @host (no write
 * flags, as for writes: FUA is the core's). */
static int coroutine_fn payload_write(BlockDriverState *bs, const Payload *pl,
                                      size_t qoff, uint64_t host,
                                      uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    IOVector slice;
    int ret;

    if (pl->src) {
        return bdrv_co_copy_range_to(pl->src, pl->src_offset + qoff,
                                     s->data_file, host, bytes, pl->rf, 0);
    }
    iov_vec_init_slice(&slice, pl->qiov, qoff, bytes);
    ret = bdrv_co_pwritev(s->data_file, host, bytes, &slice, 0);
    iov_vec_destroy(&slice);
    return ret;
}

/* What a cluster's L2 entry says about writing into it. */
typedef struct ClusterState {
    uint64_t l2e, bitmap;
    Qcow2ClusterType type;
    bool in_place;                /* own data cluster (COPIED) */
} ClusterState;

static ClusterState cluster_state(BDRVQcow2State *s, uint8_t *l2, int idx)
{
    ClusterState c;

    c.l2e = qcow2_l2_entry(s, l2, idx);
    c.bitmap = qcow2_l2_bitmap(s, l2, idx);
    c.type = qcow2_cluster_type(s, c.l2e);
    c.in_place = (c.type == QCOW2_CLUSTER_NORMAL ||
                  c.type == QCOW2_CLUSTER_ZERO_ALLOC) &&
                 (c.l2e & QCOW_OFLAG_COPIED);
    return c;
}

/* Is cluster @k of a run starting with @c0 in the part of a write the
 * reference handles at once?  Its own clusters contiguous in the host, or
 * clusters that all need new ones. */
static bool same_write_part(BDRVQcow2State *s, const ClusterState *c0,
                            const ClusterState *c, int k)
{
    if (!c0->in_place) {
        return !c->in_place;
    }
    return c->in_place && (c->l2e & L2E_OFFSET_MASK) ==
           (c0->l2e & L2E_OFFSET_MASK) + ((uint64_t)k << s->cluster_bits);
}

/* Can a write to [start, end) of this cluster go straight to its host
 * cluster, without COW or entry change? */
static bool write_in_place_ok(BDRVQcow2State *s, const ClusterState *c,
                              uint64_t start, uint64_t end)
{
    if (!c->in_place || c->type != QCOW2_CLUSTER_NORMAL) {
        return false;
    }
    if (!s->extended_l2) {
        return true;
    }
    for (uint64_t sc = start >> s->subcluster_bits;
         sc <= (end - 1) >> s->subcluster_bits; sc++) {
        if (qcow2_subcluster_type(s, c->l2e, c->bitmap, sc) != QCOW2_SC_NORMAL) {
            return false;
        }
    }
    return true;
}

/* COW granularity: subclusters with extended L2 entries (the rest of the
 * cluster keeps its state), whole clusters without them or for a
 * compressed cluster. */
static uint64_t cow_grain(BDRVQcow2State *s, const ClusterState *c)
{
    if (s->extended_l2 && c->type != QCOW2_CLUSTER_COMPRESSED) {
        return s->subcluster_size;
    }
    return s->cluster_size;
}

/* Extended L2, a host cluster shared with a snapshot: as the reference,
 * the copy spans from the first allocated subcluster (or the write's
 * start) to the last (or the write's end), and the zero and unallocated
 * subclusters outside that span stay as they are. */
static bool cow_spans_alloc(BDRVQcow2State *s, const ClusterState *c)
{
    return s->extended_l2 && !c->in_place &&
           (c->type == QCOW2_CLUSTER_NORMAL ||
            c->type == QCOW2_CLUSTER_ZERO_ALLOC);
}

/* Alloc bits of the subclusters covering [start, end) in a cluster. */
static uint64_t sc_mask(BDRVQcow2State *s, uint64_t start, uint64_t end)
{
    int first = start >> s->subcluster_bits;
    int last = (end - 1) >> s->subcluster_bits;

    return ((last - first + 1 == 32) ? 0xffffffffULL :
            ((1ULL << (last - first + 1)) - 1)) << first;
}

/* A planned allocating write of clusters [first, first + n) of one L2
 * table, covering guest bytes [ws, we) after COW padding. */
typedef struct AllocPlan {
    uint64_t offset, bytes;       /* the guest write */
    uint64_t ws, we;              /* padded to the COW grain */
    uint64_t host;                /* host offset of the first cluster */
    int idx, n;
    bool new_clusters;
    bool at_hint;                 /* new clusters right after the last */
    bool zero_cow;                /* COW areas read as zeroes */
    GArray *replaced;             /* uint64_t L2 entries to free later */
} AllocPlan;

/* Entries after the write: host | COPIED, bitmap updated. */
static void plan_update_l2(BlockDriverState *bs, AllocPlan *p, uint8_t *l2)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cstart = qcow2_start_of_cluster(s, p->ws);

    for (int i = 0; i < p->n; i++) {
        ClusterState c = cluster_state(s, l2, p->idx + i);
        uint64_t gs = cstart + ((uint64_t)i << s->cluster_bits);
        uint64_t a = MAX(p->ws, gs) - gs;
        uint64_t b = MIN(p->we, gs + s->cluster_size) - gs;
        uint64_t host = p->host + ((uint64_t)i << s->cluster_bits);

        qcow2_set_l2_entry(s, l2, p->idx + i, host | QCOW_OFLAG_COPIED);
        if (s->extended_l2) {
            uint64_t m = sc_mask(s, a, b), bm = c.bitmap;
            if (cow_grain(s, &c) == s->cluster_size &&
                !cow_spans_alloc(s, &c)) {
                bm = 0;
                m = 0xffffffffULL;
            }
            qcow2_set_l2_bitmap(s, l2, p->idx + i, (bm & ~(m << 32)) | m);
        }
        if (p->new_clusters && c.type != QCOW2_CLUSTER_UNALLOCATED &&
            c.type != QCOW2_CLUSTER_ZERO_PLAIN) {
            /* dirty now: the lowered refcount (freed at the end of the
             * request) waits for this table */
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
            g_array_append_val(p->replaced, c.l2e);
        }
    }
}

/* How many of the @n clusters from host offset @host are free. */
static int coroutine_fn free_run_at(BlockDriverState *bs, uint64_t host,
                                    int n)
{
    BDRVQcow2State *s = bs->opaque;
    int k = 0;

    for (; k < n; k++) {
        uint64_t rc = 1;

        if (qcow2_get_refcount(bs, (host >> s->cluster_bits) + k, &rc) < 0 ||
            rc) {
            break;
        }
    }
    return k;
}

/* The @n clusters at @host if they are still free once the refcount
 * blocks they need exist (making one may take one of them): 1 if
 * allocated, 0 if not. */
static int coroutine_fn alloc_at_hint(BlockDriverState *bs, uint64_t host,
                                      int n)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    do {
        if (free_run_at(bs, host, n) < n) {
            return 0;
        }
        ret = qcow2_update_refcount(bs, host, (uint64_t)n << s->cluster_bits,
                                    1);
    } while (ret == -EAGAIN);
    return ret < 0 ? ret : 1;
}

/* Host clusters for the plan: new ones, or the existing one. */
static int coroutine_fn plan_host(BlockDriverState *bs, AllocPlan *p,
                                  const ClusterState *first)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t host;
    int ret;

    if (!p->new_clusters) {
        p->host = first->l2e & L2E_OFFSET_MASK;
        return 0;
    }
    if (s->data_file != bs->file) {
        /* external data: guest offset = host offset, not refcounted */
        p->host = qcow2_start_of_cluster(s, p->ws);
        return 0;
    }
    if (p->at_hint) {
        ret = alloc_at_hint(bs, p->host, p->n);
        if (ret < 0) {
            return ret;
        }
        if (ret) {
            return qcow2_pre_write_overlap_check(bs, 0, p->host,
                                        (uint64_t)p->n << s->cluster_bits);
        }
    }
    host = qcow2_alloc_clusters(bs, (uint64_t)p->n << s->cluster_bits);
    if (host < 0) {
        return host;
    }
    p->host = host;
    ret = s->data_file == bs->file ?
          qcow2_pre_write_overlap_check(bs, 0, host,
                                        (uint64_t)p->n << s->cluster_bits) : 0;
    return ret;
}

/* Copy offload of the plan: the guest data is moved below the formats,
 * so the COW head and tail (already read) are written on their own. */
static int coroutine_fn plan_copy(BlockDriverState *bs, AllocPlan *p,
                                  const Payload *pl, size_t qoff,
                                  const uint8_t *hbuf, const uint8_t *tbuf)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t head = p->offset - p->ws, tail = p->we - p->offset - p->bytes;
    uint64_t at = p->host + qcow2_offset_into_cluster(s, p->ws);
    int ret = 0;

    if (head) {
        ret = q_pwrite(s->data_file, at, head, hbuf);
    }
    if (ret == 0) {
        ret = payload_write(bs, pl, qoff, at + head, p->bytes);
    }
    if (ret == 0 && tail) {
        ret = q_pwrite(s->data_file, at + head + p->bytes, tail, tbuf);
    }
    return ret;
}

/* The backing chain reads [offset, offset + bytes) as zeroes by its
 * block status (past its end, or without a backing file, too). */
static bool coroutine_fn backing_reads_zero(BlockDriverState *bs,
                                            uint64_t offset, uint64_t bytes)
{
    while (bs->backing && bytes) {
        int64_t pnum = 0;
        int ret = bdrv_co_block_status_above(bs->backing->bs, NULL, offset,
                                             bytes, &pnum, NULL, NULL, NULL);

        if (ret < 0 || (pnum > 0 && !(ret & BDRV_BLOCK_ZERO))) {
            return false;
        }
        if (pnum <= 0) {
            break;
        }
        offset += pnum;
        bytes -= pnum;
    }
    return true;
}

/* [offset, offset + bytes) known to read as zeroes by block status: zero
 * (sub)clusters here (the entries before the write), or unallocated ones
 * over a backing chain that reads as zeroes.  (s->lock held) */
static bool coroutine_fn cow_area_zero(BlockDriverState *bs, uint64_t offset,
                                       uint64_t bytes)
{
    for (uint64_t done = 0, cur; done < bytes; done += cur) {
        uint64_t host;
        Qcow2SubclusterType type;

        cur = bytes - done;
        if (qcow2_get_host_offset(bs, offset + done, &cur, &host, &type) < 0) {
            return false;
        }
        if (type == QCOW2_SC_ZERO_PLAIN || type == QCOW2_SC_ZERO_ALLOC) {
            continue;
        }
        if ((type != QCOW2_SC_UNALLOC_PLAIN && type != QCOW2_SC_UNALLOC_ALLOC) ||
            !backing_reads_zero(bs, offset + done, cur)) {
            return false;
        }
    }
    return true;
}

/* The reference zeroes the clusters instead of copying COW areas that
 * its block status says read as zeroes (when the data file can write
 * zeroes without fallback): no cow_read / cow_write events then, and
 * the areas need no read. */
static bool coroutine_fn plan_zero_cow(BlockDriverState *bs,
                                       const AllocPlan *p)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t end = p->offset + p->bytes;

    if (!(s->data_file->bs->supported_zero_flags & BDRV_REQ_NO_FALLBACK)) {
        return false;
    }
    return cow_area_zero(bs, p->ws, p->offset - p->ws) &&
           cow_area_zero(bs, end, p->we - end);
}

/* One COW area read, after the reference's cow_read event (a suspended
 * request may find the node broken when it resumes). */
static int coroutine_fn cow_read(BlockDriverState *bs, uint64_t offset,
                                 uint64_t bytes, uint8_t *buf, bool event)
{
    IOVector v;

    if (event) {
        bdrv_debug_event(bs->file, BLKDBG_COW_READ);
    }
    if (((BDRVQcow2State *)bs->opaque)->broken) {
        return -ENOMEDIUM;
    }
    iov_vec_init_buf(&v, buf, bytes);
    return read_guest(bs, offset, bytes, &v, 0, true);
}

/* Both COW areas into @hbuf / @tbuf: zeroes without a read for a zero
 * COW; else read with the reference's events (one cow_read for both
 * areas when it reads them in one go: a data part of up to 16 KiB). */
static int coroutine_fn plan_read_cow(BlockDriverState *bs, AllocPlan *p,
                                      uint8_t *hbuf, uint8_t *tbuf)
{
    uint64_t head = p->offset - p->ws, tail = p->we - p->offset - p->bytes;
    int ret = 0;

    if (!head && !tail) {
        return 0;
    }
    if (p->zero_cow) {
        bdrv_debug_event(bs->file, BLKDBG_CLUSTER_ALLOC_SPACE);
        return 0;
    }
    if (head) {
        ret = cow_read(bs, p->ws, head, hbuf, true);
    }
    if (ret == 0 && tail) {
        ret = cow_read(bs, p->offset + p->bytes, tail, tbuf,
                       !head || p->bytes > 16384);
    }
    return ret;
}

/* Data write of the plan: COW head, guest data, COW tail in one request. */
static int coroutine_fn plan_write(BlockDriverState *bs, AllocPlan *p,
                                   const Payload *pl, size_t qoff)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t head = p->offset - p->ws, tail = p->we - p->offset - p->bytes;
    g_autofree uint8_t *hbuf = head ? g_malloc0(head) : NULL;
    g_autofree uint8_t *tbuf = tail ? g_malloc0(tail) : NULL;
    IOVector v;
    int ret = plan_read_cow(bs, p, hbuf, tbuf);

    if (ret < 0) {
        return ret;
    }
    bdrv_debug_event(bs->file, BLKDBG_WRITE_AIO);
    if ((head || tail) && !p->zero_cow) {
        bdrv_debug_event(bs->file, BLKDBG_COW_WRITE);
    }
    if (pl->src) {
        return plan_copy(bs, p, pl, qoff, hbuf, tbuf);
    }
    iov_vec_init(&v, pl->qiov->niov + 2);
    if (head) {
        iov_vec_add(&v, hbuf, head);
    }
    iov_vec_concat(&v, pl->qiov, qoff, p->bytes);
    if (tail) {
        iov_vec_add(&v, tbuf, tail);
    }
    ret = bdrv_co_pwritev(s->data_file,
                          p->host + qcow2_offset_into_cluster(s, p->ws),
                          p->we - p->ws, &v, 0);
    iov_vec_destroy(&v);
    return ret;
}

/* Lazy refcounts: the dirty bit goes to disk before the first
 * allocation whose refcounts may be written late. */
int coroutine_fn qcow2_mark_dirty_if_lazy(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    if (!s->use_lazy_refcounts || s->dirty_set) {
        return 0;
    }
    s->dirty_set = true;
    return qcow2_mark_dirty(bs);
}

/* A shared data cluster (extended L2) is copied at least from its first to
 * its last allocated subcluster, as the reference does: the copy keeps the
 * other subclusters' zero or unallocated state. */
static void plan_widen_shared(BDRVQcow2State *s, uint8_t *l2, AllocPlan *p)
{
    uint64_t cstart = qcow2_start_of_cluster(s, p->offset);
    uint64_t clast = cstart + ((uint64_t)(p->n - 1) << s->cluster_bits);
    ClusterState first = cluster_state(s, l2, p->idx);
    ClusterState last = cluster_state(s, l2, p->idx + p->n - 1);
    uint32_t a0 = (uint32_t)first.bitmap, a1 = (uint32_t)last.bitmap;

    if (!s->extended_l2) {
        return;
    }
    if (first.type == QCOW2_CLUSTER_NORMAL && !first.in_place && a0) {
        p->ws = MIN(p->ws, cstart + ((uint64_t)__builtin_ctz(a0)
                                     << s->subcluster_bits));
    }
    if (last.type == QCOW2_CLUSTER_NORMAL && !last.in_place && a1) {
        p->we = MAX(p->we, clast + ((uint64_t)(32 - __builtin_clz(a1))
                                    << s->subcluster_bits));
    }
}

/* Own clusters need no COW where the write starts or ends inside a data
 * (sub)cluster: the reference writes there directly, copies nothing. */
static void plan_trim_own_edges(BDRVQcow2State *s, uint8_t *l2, AllocPlan *p)
{
    ClusterState first = cluster_state(s, l2, p->idx);
    ClusterState last = cluster_state(s, l2, p->idx + p->n - 1);
    uint64_t end = p->offset + p->bytes;
    int sc0 = qcow2_offset_into_cluster(s, p->offset) >> s->subcluster_bits;
    int sc1 = qcow2_offset_into_cluster(s, end - 1) >> s->subcluster_bits;

    if (first.in_place && qcow2_subcluster_type(s, first.l2e, first.bitmap,
                                                sc0) == QCOW2_SC_NORMAL) {
        p->ws = p->offset;
    }
    if (last.in_place && qcow2_subcluster_type(s, last.l2e, last.bitmap,
                                               sc1) == QCOW2_SC_NORMAL) {
        p->we = end;
    }
}

/* Plan the write of [offset, offset + bytes) within one L2 table: the
 * longest prefix handled by one data request (clusters needing new ones,
 * compressed ones too, up to an own one; or own clusters contiguous in
 * the host), as the reference groups them. */
static void make_plan(BDRVQcow2State *s, uint8_t *l2, int idx,
                      uint64_t offset, uint64_t bytes, AllocPlan *p)
{
    ClusterState c0 = cluster_state(s, l2, idx);
    uint64_t cstart = qcow2_start_of_cluster(s, offset);
    uint64_t grain = cow_grain(s, &c0);
    int n = 1;

    p->idx = idx;
    p->offset = offset;
    p->new_clusters = !c0.in_place;
    while (idx + n < s->l2_size &&
           cstart + ((uint64_t)n << s->cluster_bits) < offset + bytes) {
        ClusterState c = cluster_state(s, l2, idx + n);

        if (p->new_clusters ? c.in_place : !same_write_part(s, &c0, &c, n)) {
            break;
        }
        n++;
    }
    p->n = n;
    p->bytes = MIN(bytes, cstart + ((uint64_t)n << s->cluster_bits) - offset);
    p->ws = ROUND_DOWN(offset, grain);
    p->we = offset + p->bytes;
    {
        ClusterState cl = cluster_state(s, l2, idx + n - 1);
        uint64_t g2 = cow_grain(s, &cl);
        p->we = MIN(ROUND_UP(p->we, g2),
                    cstart + ((uint64_t)n << s->cluster_bits));
    }
    plan_widen_shared(s, l2, p);
    plan_trim_own_edges(s, l2, p);
}

/* ---- allocation order ----
 *
 * Plain writes with BDRV_REQ_ALLOC_IN_ORDER allocate in the order they
 * reach the driver, as block.h promises: each takes a ticket on entry,
 * before anything yields; it
 * looks at its clusters only in its turn, and the turn passes once the
 * request has placed its last clusters, before that step's data write
 * (a request that allocates nothing passes it before its data write).  A caller submitting in guest order without waiting for
 * completion (convert without -W) so gets the layout of strictly ordered
 * writes with several writes' data in flight at once.  Writes without
 * the flag take no turn (a request waiting for an allocation in flight
 * would hold up the unrelated ones behind it).
 */
typedef struct WriteTurn {
    uint64_t ticket;
    bool passed;
} WriteTurn;

static void coroutine_fn aw_wait_turn(BDRVQcow2State *s, WriteTurn *t)
{
    while (!t->passed && s->aw_turn != t->ticket) {
        co_queue_wait(&s->aw_queue, &s->lock);
    }
}

/* Once placed (s->lock held): the next ticket may allocate. */
static void coroutine_fn aw_pass_turn(BDRVQcow2State *s, WriteTurn *t)
{
    if (!t->passed) {
        aw_wait_turn(s, t);
        t->passed = true;
        s->aw_turn = t->ticket + 1;
        co_queue_restart_all(&s->aw_queue);
    }
}

/* ---- allocations in flight ---- */

void coroutine_fn qcow2_wait_inflight(BlockDriverState *bs, uint64_t offset,
                                      uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t start = qcow2_start_of_cluster(s, offset);
    uint64_t end = ROUND_UP(offset + bytes, s->cluster_size);
    bool busy = true;

    while (busy) {
        busy = false;
        for (guint i = 0; i < s->inflight->len && !busy; i++) {
            Qcow2InFlight *f = &g_array_index(s->inflight, Qcow2InFlight, i);
            busy = f->start < end && start < f->end;
        }
        if (busy) {
            co_queue_wait(&s->inflight_wait, &s->lock);
        }
    }
}

static void inflight_remove(BDRVQcow2State *s, uint64_t start)
{
    for (guint i = 0; i < s->inflight->len; i++) {
        if (g_array_index(s->inflight, Qcow2InFlight, i).start == start) {
            g_array_remove_index_fast(s->inflight, i);
            break;
        }
    }
    co_queue_restart_all(&s->inflight_wait);
}

/* The data of the plan, written with s->lock released: the clusters are
 * registered in flight so nobody else changes their entries meanwhile. */
static int coroutine_fn plan_write_unlocked(BlockDriverState *bs,
                                            AllocPlan *p, const Payload *pl,
                                            size_t qoff)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2InFlight f = {
        .start = qcow2_start_of_cluster(s, p->ws),
        .end = qcow2_start_of_cluster(s, p->ws) +
               ((uint64_t)p->n << s->cluster_bits),
    };
    int ret;

    g_array_append_val(s->inflight, f);
    co_mutex_unlock(&s->lock);
    ret = plan_write(bs, p, pl, qoff);
    co_mutex_lock(&s->lock);
    return ret;
}

/* Entries point at the written data (or the new clusters go back).
 * Lazy refcounts: the dirty bit goes to disk only now, before the first
 * entry that may reach the disk ahead of its refcounts, as the reference
 * marks it when it links the L2 entries: a write that failed before
 * (overlap check, I/O error) leaves a clean image clean. */
static int coroutine_fn plan_finish(BlockDriverState *bs, AllocPlan *p,
                                    int ret)
{
    BDRVQcow2State *s = bs->opaque;
    void *l2 = NULL;
    int idx;

    if (ret == 0) {
        ret = qcow2_mark_dirty_if_lazy(bs);
    }
    if (ret == 0) {
        ret = qcow2_get_l2_table(bs, p->offset, true, &l2, &idx);
    }
    if (ret == 0) {
        plan_update_l2(bs, p, l2);
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
        qcow2_cache_put(&s->l2_cache, &l2);
    } else if (p->new_clusters && p->host && s->data_file == bs->file &&
               !s->broken) {
        /* (marked corrupt meanwhile: no more metadata writes, a leak) */
        qcow2_free_clusters(bs, p->host, (uint64_t)p->n << s->cluster_bits,
                            false);
    }
    inflight_remove(s, qcow2_start_of_cluster(s, p->ws));
    return ret;
}

/* A run of @k free clusters at @hint crossing into a refcount block the
 * table does not have yet: the reference counts the run cluster by
 * cluster, so the block is made while the part before its boundary is
 * counted already; it lands past that part (at the boundary when the
 * file ends there), the part is uncounted again and the run then stops
 * at the block.  Done here the same way, before the run is measured
 * again.  Only where the table has room (a growth is another story). */
static void coroutine_fn hint_refblock_first(BlockDriverState *bs,
                                             uint64_t hint, int k)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t c0 = hint >> s->cluster_bits;
    uint64_t b = ((c0 >> s->refblock_bits) + 1) << s->refblock_bits;
    uint64_t ti = b >> s->refblock_bits;
    uint64_t head = (b - c0) << s->cluster_bits;

    if (b >= c0 + k || ti >= s->refcount_table_size ||
        (s->refcount_table[ti] & ~0x1ffULL) ||
        qcow2_update_refcount(bs, hint, head, 1) < 0) {
        return;
    }
    if (qcow2_update_refcount(bs, b << s->cluster_bits, s->cluster_size,
                              1) == 0) {
        /* (counted after all: nothing was missing) */
        qcow2_update_refcount(bs, b << s->cluster_bits, s->cluster_size, -1);
    }
    qcow2_update_refcount(bs, hint, head, -1);
}

/* New clusters go right after the host clusters the request wrote last
 * (*hint, 0: none) when they are free there, as many as are, as the
 * reference continues a contiguous host range before it allocates
 * elsewhere. */
static void coroutine_fn plan_at_hint(BlockDriverState *bs, uint8_t *l2,
                                      int idx, uint64_t offset,
                                      uint64_t bytes, uint64_t hint,
                                      AllocPlan *p)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cstart = qcow2_start_of_cluster(s, offset);
    int k;

    if (!p->new_clusters || !hint || s->data_file != bs->file) {
        return;
    }
    k = free_run_at(bs, hint, p->n);
    if (k > 1) {
        hint_refblock_first(bs, hint, k);
        k = free_run_at(bs, hint, p->n);
    }
    if (k == 0) {
        return;
    }
    if (k < p->n) {
        make_plan(s, l2, idx, offset,
                  MIN(bytes, cstart + ((uint64_t)k << s->cluster_bits) -
                      offset), p);
    }
    p->at_hint = true;
    p->host = hint;
}

/* One allocating step (s->lock held); *done gets the guest bytes, *hint
 * the host offset after the clusters written. */
static int coroutine_fn alloc_step(BlockDriverState *bs, uint64_t offset,
                                   uint64_t bytes, const Payload *pl,
                                   size_t qoff, uint64_t *done,
                                   uint64_t *hint, GArray *replaced,
                                   WriteTurn *turn)
{
    BDRVQcow2State *s = bs->opaque;
    AllocPlan p = { .replaced = replaced };
    ClusterState c0;
    void *l2;
    int idx, ret;

    ret = qcow2_get_l2_table(bs, offset, true, &l2, &idx);
    if (ret < 0) {
        return ret;
    }
    make_plan(s, l2, idx, offset, bytes, &p);
    plan_at_hint(bs, l2, idx, offset, bytes, *hint, &p);
    c0 = cluster_state(s, l2, idx);
    qcow2_cache_put(&s->l2_cache, &l2);
    ret = plan_host(bs, &p, &c0);
    if (ret < 0) {
        return ret;
    }
    p.zero_cow = plan_zero_cow(bs, &p);
    if (p.bytes == bytes) {
        aw_pass_turn(s, turn);      /* the request's last clusters */
    }
    ret = plan_write_unlocked(bs, &p, pl, qoff);
    *done = p.bytes;
    *hint = p.host + ((uint64_t)p.n << s->cluster_bits);
    return plan_finish(bs, &p, ret);
}

/* How many bytes from @offset (in one L2 table) go straight to their
 * host clusters, contiguous from *host; 0 if the first needs an
 * allocation. */
static uint64_t in_place_extent(BDRVQcow2State *s, uint8_t *l2, int idx,
                                uint64_t offset, uint64_t bytes,
                                uint64_t *host)
{
    uint64_t n = 0;

    while (n < bytes && idx < s->l2_size) {
        ClusterState c = cluster_state(s, l2, idx);
        uint64_t in = qcow2_offset_into_cluster(s, offset + n);
        uint64_t len = MIN(bytes - n, s->cluster_size - in);
        uint64_t h = (c.l2e & L2E_OFFSET_MASK) + in;

        if (!write_in_place_ok(s, &c, in, in + len)) {
            /* an own cluster that needs its entry changed, contiguous
             * with the run: the whole run goes through one plan */
            return c.in_place && (!n || h == *host + n) ? 0 : n;
        }
        if (n && h != *host + n) {
            break;
        }
        if (!n) {
            *host = h;
        }
        n += len;
        idx++;
    }
    return n;
}

/* The reference checks every entry of that part before it writes any of
 * it: an own cluster at an unaligned host offset, or an impossible
 * subcluster bitmap there fails the write (one space in its text, where
 * the read path has two). */
static int check_write_part(BlockDriverState *bs, uint8_t *l2, int idx,
                            uint64_t offset, uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    ClusterState c0 = cluster_state(s, l2, idx);
    uint64_t cstart = qcow2_start_of_cluster(s, offset);
    uint64_t host0 = c0.l2e & L2E_OFFSET_MASK;

    if (c0.in_place && (host0 & (s->cluster_size - 1))) {
        /* the reference writes nowhere near such an entry */
        qcow2_signal_corruption(bs, "%s cluster offset %#" PRIx64
                                " unaligned (guest offset: %#" PRIx64 ")",
                                (c0.l2e & QCOW_OFLAG_ZERO) ?
                                "Preallocated zero" : "Data", host0, offset);
        return -EIO;
    }
    for (int k = 0; s->extended_l2 && idx + k < s->l2_size &&
         cstart + ((uint64_t)k << s->cluster_bits) < offset + bytes; k++) {
        ClusterState c = cluster_state(s, l2, idx + k);

        if (!same_write_part(s, &c0, &c, k)) {
            break;
        }
        if (qcow2_l2_bitmap_invalid(s, c.l2e, c.bitmap)) {
            qcow2_signal_corruption(bs, "Invalid cluster entry found (L2 "
                "offset: %#" PRIx64 ", L2 index: %#x)",
                (uint64_t)(s->l1_table[qcow2_l1_index(s, offset)] &
                           L1E_OFFSET_MASK),
                idx + k);
            return -EIO;
        }
    }
    return 0;
}

/* Whether the L2 table of @offset exists but is not ours alone (its L1
 * entry lacks COPIED): the reference copies such a table before it
 * looks at the entry, even for a data cluster it then writes in place
 * (an interrupted snapshot deletion leaves both flags so). */
static bool l2_needs_copy(BDRVQcow2State *s, uint64_t offset)
{
    uint64_t l1i = qcow2_l1_index(s, offset);

    return l1i < s->l1_size && (s->l1_table[l1i] & L1E_OFFSET_MASK) &&
           !(s->l1_table[l1i] & QCOW_OFLAG_COPIED);
}

/* The in-place prefix: normal own clusters written directly (no lock
 * during the I/O).  *done: bytes written, 0 if the first cluster needs
 * an allocation. */
static int coroutine_fn in_place_step(BlockDriverState *bs, uint64_t offset,
                                      uint64_t bytes, const Payload *pl,
                                      size_t qoff, uint64_t *done,
                                      uint64_t *hint, WriteTurn *turn)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t n, host = 0;
    void *l2;
    int idx, ret = qcow2_get_l2_table(bs, offset, l2_needs_copy(s, offset),
                                      &l2, &idx);

    *done = 0;
    if (ret < 0 || !l2) {
        return ret;
    }
    ret = check_write_part(bs, l2, idx, offset, bytes);
    n = ret < 0 ? 0 : in_place_extent(s, l2, idx, offset, bytes, &host);
    qcow2_cache_put(&s->l2_cache, &l2);
    if (!n) {
        return ret;
    }
    if (s->data_file == bs->file) {
        ret = qcow2_pre_write_overlap_check(bs, 0, host, n);
        if (ret < 0) {
            return ret;
        }
    }
    if (n == bytes) {
        aw_pass_turn(s, turn);      /* nothing left to allocate */
    }
    co_mutex_unlock(&s->lock);
    bdrv_debug_event(bs->file, BLKDBG_WRITE_AIO);
    ret = payload_write(bs, pl, qoff, host, n);
    co_mutex_lock(&s->lock);
    *done = n;
    *hint = host + n;
    return ret;
}

/* ---- plain writes and copies onto this image ---- */

/* A plain write of [offset, offset + bytes): in place where the clusters
 * are ours, else allocating (with COW), whatever the payload. */
static int coroutine_fn write_guest(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes, const Payload *pl,
                                    BdrvRequestFlags flags)
{
    BDRVQcow2State *s = bs->opaque;
    g_autoptr(GArray) replaced = g_array_new(false, false, sizeof(uint64_t));
    uint64_t done = 0, hint = 0;
    WriteTurn turn;
    int ret = 0;

    /* the ticket before any yield; unordered writes never wait */
    turn = (flags & BDRV_REQ_ALLOC_IN_ORDER)
           ? (WriteTurn) { .ticket = s->aw_next++ }
           : (WriteTurn) { .passed = true };
    co_mutex_lock(&s->lock);
    while (done < (uint64_t)bytes && ret == 0) {
        uint64_t n = 0;

        /* in turn, then nobody allocating where we write (both may
         * drop the lock; the turn stays ours) */
        aw_wait_turn(s, &turn);
        qcow2_wait_inflight(bs, offset + done, bytes - done);
        ret = in_place_step(bs, offset + done, bytes - done, pl, done, &n,
                            &hint, &turn);
        if (ret == 0 && n == 0) {
            ret = alloc_step(bs, offset + done, bytes - done, pl, done,
                             &n, &hint, replaced, &turn);
        }
        done += n;
    }
    aw_pass_turn(s, &turn);     /* failed, or empty: in its turn anyway */
    /* The clusters replaced go once the whole request is placed: the
     * reference links its parts to their L2 tables (freeing the old
     * clusters) after it has allocated the following ones. */
    for (guint i = 0; i < replaced->len; i++) {
        qcow2_free_l2_entry_pass(bs, g_array_index(replaced, uint64_t, i),
                                 false);
    }
    co_mutex_unlock(&s->lock);
    return ret;
}

int coroutine_fn qcow2_co_pwritev(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, IOVector *qiov,
                                  BdrvRequestFlags flags)
{
    Payload pl = { .qiov = qiov };

    if (flags & BDRV_REQ_WRITE_COMPRESSED) {
        return qcow2_co_pwritev_compressed(bs, offset, bytes, qiov);
    }
    return write_guest(bs, offset, bytes, &pl, flags);
}

/*
 * Copy offload onto this image: clusters are allocated and linked as a
 * write of the range would (same order, COW, L2 entries after the data),
 * the data moved with the data file's copy offload.  A sparse copy
 * (BDRV_REQ_SKIP_ZERO_BLOCKS) is refused: which of the new clusters
 * would be zero is only known by reading them.
 */
int coroutine_fn qcow2_co_copy_range_to(BlockDriverState *bs,
                                        BdrvChild *src, int64_t src_offset,
                                        BdrvChild *dst, int64_t offset,
                                        int64_t bytes, BdrvRequestFlags rf,
                                        BdrvRequestFlags wf)
{
    BDRVQcow2State *s = bs->opaque;
    const BlockDriverIO *io = bdrv_driver_io(s->data_file->bs->drv);
    Payload pl = { .src = src, .src_offset = src_offset, .rf = rf };

    if ((wf & BDRV_REQ_SKIP_ZERO_BLOCKS) || !io->co_copy_range_to) {
        return -ENOTSUP;    /* before anything is allocated */
    }
    return write_guest(bs, offset, bytes, &pl, wf & BDRV_REQ_ALLOC_IN_ORDER);
}

/* ---- compressed writes ---- */

/* Compressed descriptor for @len bytes at host byte @host. */
static uint64_t compressed_entry(BDRVQcow2State *s, uint64_t host,
                                 uint64_t len)
{
    int x = 62 - (s->cluster_bits - 8);
    uint64_t nb = ((host + len - 1) >> 9) - (host >> 9);

    return QCOW_OFLAG_COMPRESSED | host | (nb << x);
}

/* Store the compressed bytes and point the L2 entry at them. */
static int coroutine_fn store_compressed(BlockDriverState *bs,
                                         uint64_t offset, const uint8_t *buf,
                                         size_t len)
{
    BDRVQcow2State *s = bs->opaque;
    void *l2;
    int idx, ret;
    int64_t host;
    ClusterState c;

    ret = qcow2_get_l2_table(bs, offset, true, &l2, &idx);
    if (ret < 0) {
        return ret;
    }
    if (qcow2_l2_entry(s, l2, idx) & L2E_OFFSET_MASK) {
        qcow2_cache_put(&s->l2_cache, &l2);
        return -EIO;    /* compression never overwrites, as the reference */
    }
    host = qcow2_alloc_bytes(bs, len);
    ret = host < 0 ? host :
          qcow2_pre_write_overlap_check(bs, 0, host, len);
    if (ret == 0) {
        /* the reference updates the L2 entry here, before the data */
        bdrv_debug_event(bs->file, BLKDBG_L2_UPDATE_COMPRESSED);
        bdrv_debug_event(bs->file, BLKDBG_WRITE_COMPRESSED);
        ret = q_pwrite(bs->file, host, len, buf);
    }
    if (ret == 0) {
        c = cluster_state(s, l2, idx);
        qcow2_set_l2_entry(s, l2, idx, compressed_entry(s, host, len));
        qcow2_set_l2_bitmap(s, l2, idx, 0);
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
        qcow2_free_l2_entry_pass(bs, c.l2e, false);
    }
    qcow2_cache_put(&s->l2_cache, &l2);
    return ret;
}

/*
 * Compressed writes are stored (host space allocated, L2 entry set) in
 * the order they reach the driver, as block.h promises for
 * BDRV_REQ_WRITE_COMPRESSED: each request takes a ticket on entry, before
 * anything yields, compresses while others do too (the worker pool), and
 * waits for its turn only to store.  A caller submitting in guest order
 * (convert without -W) thus gets clusters laid out in guest order
 * without serialising the compression.
 */
static uint64_t cw_take_ticket(BDRVQcow2State *s)
{
    return s->cw_next++;
}

static void coroutine_fn cw_wait_turn(BDRVQcow2State *s, uint64_t ticket)
{
    while (s->cw_turn != ticket) {
        co_queue_wait(&s->cw_queue, NULL);
    }
}

/* Done storing (or failed): the next ticket may store. */
static void cw_pass_turn(BDRVQcow2State *s, uint64_t ticket)
{
    s->cw_turn = ticket + 1;
    co_queue_restart_all(&s->cw_queue);
}

/* Store one compressed cluster, or write it plainly when compressing
 * did not make it smaller. */
static int coroutine_fn store_cluster(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, IOVector *qiov,
                                      size_t qoff, const uint8_t *dst,
                                      ssize_t clen)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (clen == -ENOMEM) {
        IOVector slice;
        iov_vec_init_slice(&slice, qiov, qoff, bytes);
        ret = qcow2_co_pwritev(bs, offset, bytes, &slice, 0);
        iov_vec_destroy(&slice);
        return ret;
    }
    if (clen < 0) {
        return clen;
    }
    co_mutex_lock(&s->lock);
    qcow2_wait_inflight(bs, offset, bytes);
    ret = store_compressed(bs, offset, dst, clen);
    co_mutex_unlock(&s->lock);
    return ret;
}

/* One whole cluster (the image's last one may be short): compress, then
 * store when @ticket's turn has come. */
static int coroutine_fn write_compressed_cluster(BlockDriverState *bs,
                                                 int64_t offset, int64_t bytes,
                                                 IOVector *qiov, size_t qoff,
                                                 uint64_t ticket)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *src = g_malloc0(s->cluster_size);
    g_autofree uint8_t *dst = g_malloc(s->cluster_size);
    ssize_t clen;

    iov_vec_to_buf(qiov, qoff, src, bytes);
    clen = qcow2_co_compress(s->compression_type, dst, s->cluster_size - 1,
                             src, s->cluster_size);
    cw_wait_turn(s, ticket);
    return store_cluster(bs, offset, bytes, qiov, qoff, dst, clen);
}

/* The empty compressed write ending a stream of them (convert -c): the
 * file's end goes to a sector boundary, so that the last compressed
 * cluster can be read in whole sectors, as QEMU's qcow2 leaves it. */
static int coroutine_fn align_file_end(BlockDriverState *bs)
{
    int64_t len = bdrv_co_getlength(bs->file->bs);

    if (len < 0) {
        return len;
    }
    /* the length is counted in whole sectors: it is the aligned end */
    return bdrv_co_truncate(bs->file, ROUND_UP(len, BDRV_SECTOR_SIZE), false,
                            PREALLOC_MODE_OFF, 0, NULL);
}

/* Cluster-aligned requests, cluster by cluster.  The reference runs up
 * to 8 clusters at a time and starts no new one once it has seen a
 * failure; how many after the failing one have started by then varies
 * run to run: always 8 when the first cluster fails, mostly 7 when the
 * second or a later one does (fewer the further in).  The clusters up
 * to those are written, and the first error is returned. */
#define QCOW2_CW_WINDOW 7

int coroutine_fn qcow2_co_pwritev_compressed(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             IOVector *qiov)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t done = 0, stop = INT64_MAX;
    uint64_t ticket;
    int ret = 0;

    if (s->data_file != bs->file) {
        return -ENOTSUP;
    }
    if (bytes == 0) {
        return align_file_end(bs);
    }
    if (qcow2_offset_into_cluster(s, offset) ||
        (qcow2_offset_into_cluster(s, bytes) &&
         offset + bytes != bs->total_bytes)) {
        return -EINVAL;
    }
    ticket = cw_take_ticket(s);
    for (int64_t i = 0; done < bytes && i <= stop; i++) {
        int64_t n = MIN(bytes - done, (int64_t)s->cluster_size);
        int r = write_compressed_cluster(bs, offset + done, n, qiov, done,
                                         ticket);

        if (r < 0 && ret == 0) {
            ret = r;
            stop = i + QCOW2_CW_WINDOW + (i == 0);
        }
        done += n;
    }
    cw_wait_turn(s, ticket);
    cw_pass_turn(s, ticket);
    return ret;
}

/* ---- flush ---- */

/* Metadata caches to the file (L2 tables wait for the refcount blocks
 * they depend on); without @refcounts the refcount blocks stay cached. */
static int coroutine_fn write_caches(BlockDriverState *bs, bool refcounts)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    co_mutex_lock(&s->lock);
    ret = qcow2_cache_write(bs, &s->l2_cache);
    if (ret == 0 && refcounts) {
        ret = qcow2_cache_write(bs, &s->refcount_cache);
    }
    co_mutex_unlock(&s->lock);
    return ret;
}

int coroutine_fn qcow2_co_flush_to_os(BlockDriverState *bs)
{
    return write_caches(bs, true);
}

/* A user's flush.  While the dirty bit is on disk (lazy refcounts) the
 * refcounts need not be right there: the next read-write open repairs
 * them, so, as the reference, they are written only when evicted or
 * when the image is marked clean. */
int coroutine_fn qcow2_co_flush_user(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    return write_caches(bs, !(s->h.incompatible_features &
                              QCOW2_INCOMPAT_DIRTY));
}

/* ---- block status ---- */

/* More clusters referenced than the file really stores: the image was
 * probably preallocated (metadata), so normal clusters may still be holes
 * in the file and block status should look there, as the reference does. */
static bool coroutine_fn detect_metadata_prealloc(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t flen = bdrv_co_getlength(bs->file->bs);
    int64_t alloc = bdrv_co_get_allocated_file_size(bs->file->bs);
    uint64_t real, threshold, n = 0, rc, end;

    if (flen < 0 || alloc < 0) {
        return false;
    }
    real = alloc / s->cluster_size;
    threshold = MAX(real * 10 / 9, real + 2);
    end = MIN(DIV_ROUND_UP((uint64_t)flen, s->cluster_size),
              (uint64_t)s->refcount_table_size << s->refblock_bits);
    for (uint64_t i = 0; i < end && n < threshold; i++) {
        if (!(i & ((1ULL << s->refblock_bits) - 1)) &&
            !s->refcount_table[i >> s->refblock_bits]) {
            i += (1ULL << s->refblock_bits) - 1;    /* no block: all 0 */
            continue;
        }
        if (qcow2_get_refcount(bs, i, &rc) < 0) {
            return false;
        }
        n += rc > 0;
    }
    return n >= threshold;
}

int coroutine_fn qcow2_co_block_status(BlockDriverState *bs, bool want_zero,
                                       int64_t offset, int64_t bytes,
                                       int64_t *pnum, int64_t *map,
                                       BlockDriverState **file)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cur = bytes, host;
    Qcow2SubclusterType type;
    int ret, status = 0;

    co_mutex_lock(&s->lock);
    if (!s->prealloc_checked) {
        s->metadata_prealloc = detect_metadata_prealloc(bs);
        s->prealloc_checked = true;
    }
    ret = qcow2_get_host_offset(bs, offset, &cur, &host, &type);
    co_mutex_unlock(&s->lock);
    if (ret < 0) {
        return ret;
    }
    *pnum = cur;
    if (type == QCOW2_SC_NORMAL || type == QCOW2_SC_ZERO_ALLOC ||
        type == QCOW2_SC_UNALLOC_ALLOC) {
        *map = host;
        *file = s->data_file->bs;
        status |= BDRV_BLOCK_OFFSET_VALID;
    }
    if (type == QCOW2_SC_ZERO_PLAIN || type == QCOW2_SC_ZERO_ALLOC) {
        status |= BDRV_BLOCK_ZERO;
    } else if (type == QCOW2_SC_NORMAL || type == QCOW2_SC_COMPRESSED) {
        status |= BDRV_BLOCK_DATA;
    }
    if (type == QCOW2_SC_COMPRESSED) {
        status |= BDRV_BLOCK_COMPRESSED;
    }
    /* only on that guess: not for a raw external data file as such (the
     * reference reports its clusters as data, holes or not) */
    if (type == QCOW2_SC_NORMAL && s->metadata_prealloc) {
        status |= BDRV_BLOCK_RECURSE;
    }
    return status;
}

/* ---- preallocation ---- */

/* The L2 entry and bitmap of a cluster given host cluster @host, from
 * its old ones: parts already marked zero (a grown area over a longer
 * backing file) must never show the backing through, so they stay zero
 * (@keep_zero) or become allocated over host clusters that read as
 * zeroes; an extended entry's other subclusters stay unallocated. */
static void prealloc_entry(BDRVQcow2State *s, void *l2, int idx,
                           uint64_t host, bool keep_zero)
{
    uint64_t e = qcow2_l2_entry(s, l2, idx);
    uint64_t bm = s->extended_l2 ? qcow2_l2_bitmap(s, l2, idx) : 0;
    uint64_t zero = e & QCOW_OFLAG_ZERO;

    if (s->extended_l2) {
        zero = 0;
        bm &= 0xffffffff00000000ULL;        /* the zero half */
        bm = keep_zero ? bm : bm >> 32;
    } else if (!keep_zero) {
        zero = 0;
    }
    qcow2_set_l2_entry(s, l2, idx, host | QCOW_OFLAG_COPIED | zero);
    qcow2_set_l2_bitmap(s, l2, idx, bm);
}

/* Host clusters for the unallocated clusters from @offset on, within one
 * L2 table and less than 2 GiB (lock held): returns the guest bytes
 * covered (> 0) and in *host_end the end of the last host cluster, or
 * -errno.  @keep_zero: see prealloc_entry. */
int coroutine_fn qcow2_alloc_range(BlockDriverState *bs, uint64_t offset,
                                   uint64_t bytes, int64_t *host_end,
                                   bool keep_zero)
{
    BDRVQcow2State *s = bs->opaque;
    bool raw = s->data_file != bs->file;    /* host offset = guest offset */
    uint64_t cstart = qcow2_start_of_cluster(s, offset);
    int64_t host;
    void *l2;
    int idx, n = 0, ret = qcow2_get_l2_table(bs, offset, true, &l2, &idx);

    if (ret < 0) {
        return ret;
    }
    while (idx + n < s->l2_size && n < (INT_MAX >> s->cluster_bits) &&
           ((uint64_t)n << s->cluster_bits) < offset + bytes - cstart &&
           !(qcow2_l2_entry(s, l2, idx + n) & L2E_OFFSET_MASK)) {
        n++;
    }
    if (n == 0) {
        /* allocated already: go on at the next cluster (@offset may lie
         * inside this one: a growth from an unaligned end) */
        qcow2_cache_put(&s->l2_cache, &l2);
        *host_end = 0;
        return s->cluster_size - (offset - cstart);
    }
    host = raw ? (int64_t)cstart :
           qcow2_alloc_clusters(bs, (uint64_t)n << s->cluster_bits);
    if (host < 0) {
        qcow2_cache_put(&s->l2_cache, &l2);
        return host;
    }
    for (int i = 0; i < n; i++) {
        prealloc_entry(s, l2, idx + i,
                       host + ((uint64_t)i << s->cluster_bits), keep_zero);
    }
    qcow2_cache_mark_dirty(&s->l2_cache, l2);
    qcow2_cache_put(&s->l2_cache, &l2);
    *host_end = host + ((int64_t)n << s->cluster_bits);
    return MIN((uint64_t)n << s->cluster_bits, offset + bytes - cstart) -
           (offset - cstart);
}
