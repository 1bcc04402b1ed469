#include "config.h"
/*
 * qcow2: make an image empty (commit without -d), so that every read
 * falls through to the backing file again.
 *
 * Two ways, as the reference:
 *  - an image laid out as a fresh one (header, one cluster of refcount
 *    table, refcount block, L1 table, then data: what create writes) is
 *    turned back into exactly that: L1 zeroed, one refcount block
 *    counting only those clusters, the file cut after the L1 table.  The
 *    steps go in an order where each leaves a consistent image (at worst
 *    with leaked clusters): zero the L1 table (nothing is mapped any
 *    more), point the refcount table at the first block only, rewrite
 *    that block, cut the file; each is flushed before the next.
 *  - otherwise every cluster the active L1 table maps is dropped: its L2
 *    entry becomes 0 (unallocated, not "zero": the backing file must show
 *    through) and its refcount falls.  An L2 table shared with snapshots
 *    is copied first (the discard path does it), as the reference does:
 *    each data cluster counts every L1 table that reaches it, so letting
 *    go of the shared table alone would leave them counted once too
 *    often.
 */
#include <errno.h>
#include <string.h>
#include "block/format/qcow2/qcow2.h"

/* Drop the clusters of the L2 table behind L1 entry @i (lock held). */
static int coroutine_fn empty_l1_range(BlockDriverState *bs, uint32_t i)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cover = (uint64_t)s->l2_size << s->cluster_bits;
    uint64_t start = i * cover;
    uint64_t end = ROUND_UP((uint64_t)bs->total_bytes, s->cluster_size);

    if (!(s->l1_table[i] & L1E_OFFSET_MASK) || start >= end) {
        return 0;
    }
    return qcow2_discard_range(bs, start, MIN(cover, end - start), true,
                               s->discard_passthrough_snapshot);
}

/* Clusters of the L1 table. */
static uint64_t l1_clusters(BDRVQcow2State *s)
{
    return DIV_ROUND_UP((uint64_t)s->l1_size * 8, s->cluster_size);
}

/* Is the image laid out as create lays it out, with nothing else that
 * needs clusters of its own (snapshots, bitmaps, encryption, a data
 * file)? */
static bool fresh_layout(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;

    return s->h.version >= 3 && !s->h.nb_snapshots &&
           !(s->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) &&
           !s->h.crypt_method && !s->has_crypto_ext &&
           s->data_file == bs->file && !s->refcounts_stale &&
           s->h.refcount_table_offset == cs &&
           s->h.refcount_table_clusters == 1 &&
           s->refcount_table_size >= 1 && s->refcount_table[0] == 2 * cs &&
           s->h.l1_table_offset == 3 * cs &&
           3 + l1_clusters(s) <= (1ULL << s->refblock_bits);
}

/* Write @len bytes of @buf at @off in the file, then flush. */
static int coroutine_fn write_flushed(BlockDriverState *bs, uint64_t off,
                                      uint64_t len, void *buf)
{
    IOVector v;
    int ret;

    if (buf) {
        iov_vec_init_buf(&v, buf, len);
        ret = bdrv_co_pwritev(bs->file, off, len, &v, 0);
    } else {
        ret = bdrv_co_pwrite_zeroes(bs->file, off, len, 0);
    }
    return ret < 0 ? ret : bdrv_co_flush(bs->file->bs);
}

/* Forget every cached table (all were flushed before). */
static void drop_cache(Qcow2Cache *c)
{
    for (int i = 0; i < c->size; i++) {
        if (c->entries[i].offset) {
            qcow2_cache_discard(c, c->entries[i].offset);
        }
    }
}

/* The in-memory tables after fresh_empty()'s writes. */
static void reset_state(BDRVQcow2State *s)
{
    memset(s->l1_table, 0, (size_t)s->l1_size * sizeof(uint64_t));
    s->l1_used = 0;
    memset(s->refcount_table, 0, s->refcount_table_size * sizeof(uint64_t));
    s->refcount_table[0] = 2 * s->cluster_size;
    s->reftable_used = 1;
    s->free_cluster_index = 0;
    s->free_byte_offset = 0;
    drop_cache(&s->l2_cache);
    drop_cache(&s->refcount_cache);
}

/* The fast way (see the top of the file); lock held. */
static int coroutine_fn fresh_empty(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size, used = 3 + l1_clusters(s);
    g_autofree uint8_t *buf = g_malloc0(cs);
    int ret;

    ret = qcow2_cache_flush(bs, &s->l2_cache);
    if (ret == 0) {
        ret = qcow2_cache_flush(bs, &s->refcount_cache);
    }
    if (ret == 0) {
        bdrv_debug_event(bs->file, BLKDBG_L1_UPDATE);
        ret = write_flushed(bs, 3 * cs, (uint64_t)s->l1_size * 8, NULL);
    }
    if (ret == 0) {
        bdrv_debug_event(bs->file, BLKDBG_EMPTY_IMAGE_PREPARE);
        bdrv_debug_event(bs->file, BLKDBG_REFTABLE_UPDATE);
        q_st64(buf, 2 * cs);                    /* the one refcount block */
        ret = write_flushed(bs, cs, cs, buf);
    }
    if (ret == 0) {
        bdrv_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC);
        memset(buf, 0, cs);
        for (uint64_t i = 0; i < used; i++) {
            qcow2_set_refcount_entry(s, buf, i, 1);
        }
        ret = write_flushed(bs, 2 * cs, cs, buf);
    }
    if (ret == 0) {
        reset_state(s);
        ret = bdrv_co_truncate(bs->file, used * cs, false, PREALLOC_MODE_OFF,
                               0, NULL);
    }
    return ret;
}

int coroutine_fn qcow2_co_make_empty(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    co_mutex_lock(&s->lock);
    if (fresh_layout(bs)) {
        ret = fresh_empty(bs);
        co_mutex_unlock(&s->lock);
        return ret;
    }
    ret = qcow2_mark_dirty_if_lazy(bs);
    for (uint32_t i = 0; ret == 0 && i < s->l1_used && i < s->l1_size; i++) {
        ret = empty_l1_range(bs, i);
    }
    co_mutex_unlock(&s->lock);
    return ret;
}
