#include "config.h"
/*
 * qcow2 reads of compressed clusters, many at a time.
 *
 * An image written by `convert -c` stores its compressed clusters packed
 * one after another in guest order.  A read over a run of them (convert
 * reads 2 MiB at a time) takes the compressed bytes of the whole run in
 * one file read and inflates the clusters on the worker pool in one part
 * per CPU, each cluster straight into the caller's buffer when it wants
 * the whole cluster: one read, one hand-over per part, no bounce copy,
 * instead of a read, an allocation, a hand-over and a copy per cluster.
 *
 * The run stops at the first cluster that is not compressed, at the end
 * of the L2 table, and where the next descriptor does not start inside
 * or right after the previous one (a hostile or rewritten image still
 * reads right: the rest goes in the next run).  The bytes read are those
 * the one-cluster path reads (qcow2_read_table(): zeroes past the end of
 * the file), so every cluster decodes exactly as it would alone.
 *
 * Under a node that acts on debug events (blkdebug), reads stay one per
 * cluster, each after its own read_compressed event, as the reference
 * issues them: fault injection that counts events or requests hits the
 * same cluster.
 */
#include "qcow2.h"

/* Compressed bytes read in one go (a run ends before it would need
 * more; a single cluster may, with large clusters). */
#define QCOW2_ZREAD_SPAN (256 * 1024)
/* Clusters in one run. */
#define QCOW2_ZREAD_MAX 64
/* Spare span buffers a node keeps (one per convert coroutine). */
#define QCOW2_ZREAD_SPARE 8

typedef struct ZRun {
    int n;
    uint64_t lo, hi;                    /* host bytes to read */
    uint64_t host[QCOW2_ZREAD_MAX];     /* each cluster's compressed bytes */
    uint64_t len[QCOW2_ZREAD_MAX];
    uint64_t skip[QCOW2_ZREAD_MAX];     /* wanted part of each cluster */
    uint64_t bytes[QCOW2_ZREAD_MAX];
    uint64_t total;                     /* guest bytes covered */
} ZRun;

/* Add the cluster with descriptor @l2e, @want guest bytes from @offset,
 * if it continues the run; false if the run ends before it. */
static bool zrun_add(BDRVQcow2State *s, ZRun *r, uint64_t l2e,
                     uint64_t offset, uint64_t want)
{
    uint64_t host, len, skip = qcow2_offset_into_cluster(s, offset);

    qcow2_parse_compressed(s, l2e, &host, &len);
    if (r->n == QCOW2_ZREAD_MAX) {
        return false;
    }
    if (r->n && (host < r->host[r->n - 1] || host > r->hi ||
                 MAX(r->hi, host + len) - r->lo > QCOW2_ZREAD_SPAN)) {
        return false;
    }
    if (!r->n) {
        r->lo = host;
    }
    r->hi = MAX(r->hi, host + len);
    r->host[r->n] = host;
    r->len[r->n] = len;
    r->skip[r->n] = skip;
    r->bytes[r->n] = MIN(want, s->cluster_size - skip);
    r->total += r->bytes[r->n];
    r->n++;
    return true;
}

/* The compressed clusters after the first, from the L2 table (s->lock
 * held; no I/O: the first lookup loaded the table). */
static void coroutine_fn zrun_extend(BlockDriverState *bs, ZRun *r,
                                     uint64_t offset, uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t pos = offset + r->total;
    void *l2;
    int idx;

    if (pos >= offset + bytes || qcow2_l2_index(s, pos) == 0 ||
        qcow2_get_l2_table(bs, pos, false, &l2, &idx) < 0 || !l2) {
        return;
    }
    while (pos < offset + bytes && idx < s->l2_size) {
        uint64_t l2e = qcow2_l2_entry(s, l2, idx++);

        if (qcow2_cluster_type(s, l2e) != QCOW2_CLUSTER_COMPRESSED ||
            !zrun_add(s, r, l2e, pos, offset + bytes - pos)) {
            break;
        }
        pos = offset + r->total;
    }
    qcow2_cache_put(&s->l2_cache, &l2);
}

/* Does the file node act on debug events (see the top of the file)? */
static bool events_watched(BlockDriverState *bs)
{
    BlockDriverState *f = bs->file ? bs->file->bs : NULL;

    return f && f->drv && f->drv->debug && f->drv->debug->event;
}

/* A span buffer: a spare one of the node's, or a new one. */
static uint8_t *zbuf_get(BDRVQcow2State *s, uint64_t len)
{
    if (len > QCOW2_ZREAD_SPAN) {
        return g_malloc(len);
    }
    if (s->zread_spare && s->zread_spare->len) {
        return g_ptr_array_steal_index_fast(s->zread_spare,
                                            s->zread_spare->len - 1);
    }
    return g_malloc(QCOW2_ZREAD_SPAN);
}

/* Keep a span buffer for the next run (reused buffers are already
 * mapped: fresh ones cost a page fault per page), or free it. */
static void zbuf_put(BDRVQcow2State *s, uint8_t *buf, uint64_t len)
{
    if (len > QCOW2_ZREAD_SPAN) {
        g_free(buf);
        return;
    }
    if (!s->zread_spare) {
        s->zread_spare = g_ptr_array_new_with_free_func(g_free);
    }
    if (s->zread_spare->len < QCOW2_ZREAD_SPARE) {
        g_ptr_array_add(s->zread_spare, buf);
    } else {
        g_free(buf);
    }
}

void qcow2_zread_free(BDRVQcow2State *s)
{
    if (s->zread_spare) {
        g_ptr_array_free(s->zread_spare, true);
        s->zread_spare = NULL;
    }
}

/* Where cluster @i of the run inflates: straight into @qiov at @pos
 * when it is wanted whole and lands in one iovec element, else a bounce
 * buffer of its own (bounce[i]). */
static void *zrun_dest(BDRVQcow2State *s, const ZRun *r, int i,
                       IOVector *qiov, size_t pos, uint8_t **bounce)
{
    if (r->bytes[i] == s->cluster_size) {
        for (int e = 0; e < qiov->niov; e++) {
            if (pos < qiov->iov[e].iov_len) {
                if (qiov->iov[e].iov_len - pos >= s->cluster_size) {
                    return (uint8_t *)qiov->iov[e].iov_base + pos;
                }
                break;
            }
            pos -= qiov->iov[e].iov_len;
        }
    }
    bounce[i] = g_malloc(s->cluster_size);
    return bounce[i];
}

/* Inflate every cluster of the run from @in (the bytes at r->lo) and
 * put the wanted parts into @qiov. */
static int coroutine_fn zrun_inflate(BDRVQcow2State *s, const ZRun *r,
                                     const uint8_t *in, IOVector *qiov,
                                     size_t qoff)
{
    Qcow2DecompressItem items[QCOW2_ZREAD_MAX];
    uint8_t *bounce[QCOW2_ZREAD_MAX] = { NULL };
    size_t pos = qoff;
    int ret;

    for (int i = 0; i < r->n; i++) {
        items[i] = (Qcow2DecompressItem) {
            .dest = zrun_dest(s, r, i, qiov, pos, bounce),
            .src = in + (r->host[i] - r->lo), .src_size = r->len[i],
        };
        pos += r->bytes[i];
    }
    ret = qcow2_co_decompress_many(s->compression_type, items, r->n,
                                   s->cluster_size);
    pos = qoff;
    for (int i = 0; i < r->n; i++) {
        if (bounce[i] && ret == 0) {
            iov_vec_from_buf(qiov, pos, bounce[i] + r->skip[i], r->bytes[i]);
        }
        g_free(bounce[i]);
        pos += r->bytes[i];
    }
    return ret < 0 ? -EIO : 0;
}

int coroutine_fn qcow2_read_compressed_run(BlockDriverState *bs,
                                           uint64_t offset, uint64_t bytes,
                                           uint64_t l2e, IOVector *qiov,
                                           size_t qoff, uint64_t *done)
{
    BDRVQcow2State *s = bs->opaque;
    ZRun r = { 0 };
    uint8_t *in;
    int ret;

    zrun_add(s, &r, l2e, offset, bytes);
    if (!events_watched(bs)) {
        co_mutex_lock(&s->lock);
        zrun_extend(bs, &r, offset, bytes);
        co_mutex_unlock(&s->lock);
    }
    in = zbuf_get(s, r.hi - r.lo);
    bdrv_debug_event(bs->file, BLKDBG_READ_COMPRESSED);
    ret = qcow2_read_table(bs, r.lo, r.hi - r.lo, in);
    if (ret == 0) {
        ret = zrun_inflate(s, &r, in, qiov, qoff);
    }
    zbuf_put(s, in, r.hi - r.lo);
    *done = r.total;
    return ret;
}
