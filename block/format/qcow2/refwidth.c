#include "config.h"
/*
 * qcow2 refcount width changes (amend -o refcount_bits=N): new refcount
 * blocks and a new table are built beside the old ones, allocated
 * through the old structures until a sizing walk allocates nothing more,
 * then written and flushed; one header update switches to them, and the
 * old blocks and table are freed in the new structures.  A crash before
 * the switch leaves the old structures in force with the new clusters
 * leaked; after it, the old ones leaked.  The walks and the allocation
 * order are the reference's, so the resulting file is the same.
 */
#include "qcow2.h"

typedef struct RcWalk {
    BlockAmendStatusCB *cb;       /* progress, may be NULL */
    void *cb_opaque;
    uint64_t *table;              /* the new reftable, host order */
    uint64_t size;                /* its entries */
    uint64_t index;               /* reftable index of the block filling */
    int bits;                     /* new width */
    uint64_t per_block;           /* entries per new refcount block */
    uint8_t *block;               /* the block filling; NULL: sizing only */
    uint64_t fill;
    bool empty;
    bool allocated;
    int walk, walks;              /* for progress */
} RcWalk;

typedef int coroutine_fn RcBlockDone(BlockDriverState *bs, RcWalk *w,
                                     Error **errp);

/* An entry of a refcount block of width @bits (sub-byte: LSB first). */
static void rc_set(uint8_t *b, uint64_t i, int bits, uint64_t v)
{
    if (bits < 8) {
        int per = 8 / bits, shift = (i % per) * bits;
        uint8_t mask = ((1 << bits) - 1) << shift;
        b[i / per] = (b[i / per] & ~mask) | ((v << shift) & mask);
    } else if (bits == 8) {
        b[i] = v;
    } else if (bits == 16) {
        q_st16(b + i * 2, v);
    } else if (bits == 32) {
        q_st32(b + i * 4, v);
    } else {
        q_st64(b + i * 8, v);
    }
}

/* Sizing: a table entry and a cluster (allocated in the old structures)
 * for every new block that counts something. */
static int coroutine_fn rc_alloc_block(BlockDriverState *bs, RcWalk *w,
                                       Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t per_cluster = s->cluster_size / 8;

    if (w->empty) {
        return 0;           /* no table entry either: the table may end */
    }
    if (w->index >= w->size) {
        uint64_t n = ROUND_UP(w->index + 1, per_cluster);
        if (n > QCOW2_MAX_REFTABLE_SIZE / 8) {
            error_setg(errp, "This operation would make the refcount table "
                       "grow beyond the maximum size supported by QEMU, "
                       "aborting");
            return -ENOTSUP;
        }
        w->table = g_renew(uint64_t, w->table, n);
        memset(w->table + w->size, 0, (n - w->size) * 8);
        w->size = n;
    }
    if (!w->table[w->index]) {
        /* as the reference: a block allocated at offset 0 (the header's
         * refcount damaged) leaves the entry empty, so the next walk
         * allocates again, and the header is counted */
        int64_t off = qcow2_alloc_clusters_at0(bs, s->cluster_size);
        if (off < 0) {
            error_setg_errno(errp, -off, "Failed to allocate refblock");
            return off;
        }
        w->table[w->index] = off;
        w->allocated = true;
    }
    return 0;
}

/* Writing: the filled block goes to its cluster. */
static int coroutine_fn rc_write_block(BlockDriverState *bs, RcWalk *w,
                                       Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t off = w->index < w->size ? w->table[w->index] : 0;
    int ret;

    if (!off) {
        if (w->empty) {
            return 0;
        }
        error_setg(errp, "Refcounts changed while rewriting them");
        return -EIO;
    }
    ret = qcow2_pre_write_overlap_check(bs, 0, off, s->cluster_size);
    if (ret == 0) {
        ret = q_pwrite(bs->file, off, s->cluster_size, w->block);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to write refblock");
    }
    return ret;
}

/* The new block at w->index is complete (or the walk ended). */
static int coroutine_fn rc_block_done(BlockDriverState *bs, RcWalk *w,
                                      RcBlockDone *done, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = done(bs, w, errp);

    if (w->block && !w->empty) {
        /* an empty block is still all zeroes: a table of 2 MiB
         * clusters has many of them, each cleared in vain otherwise */
        memset(w->block, 0, s->cluster_size);
    }
    w->index++;
    w->fill = 0;
    w->empty = true;
    return ret;
}

/* Copy the refcounts of old block @old (table index @ti; NULL: all
 * zero) into the new blocks, completing them as they fill. */
static int coroutine_fn rc_copy(BlockDriverState *bs, RcWalk *w,
                                const void *old, uint64_t ti, RcBlockDone *done,
                                Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t per_old = 1ULL << s->refblock_bits;

    for (uint64_t i = 0; i < per_old;) {
        if (w->fill == w->per_block) {
            int ret = rc_block_done(bs, w, done, errp);
            if (ret < 0) {
                return ret;
            }
        }
        if (!old) {         /* no block: zeroes, the new block is zeroed */
            uint64_t n = MIN(per_old - i, w->per_block - w->fill);
            w->fill += n;
            i += n;
            continue;
        }
        uint64_t rc = qcow2_get_refcount_entry(s, old, i);
        if (w->bits < 64 && (rc >> w->bits)) {
            error_setg(errp, "Cannot decrease refcount entry width to %i "
                       "bits: Cluster at offset %#" PRIx64 " has a refcount "
                       "of %" PRIu64, w->bits,
                       ((ti << s->refblock_bits) + i) << s->cluster_bits, rc);
            return -EINVAL;
        }
        if (w->block) {
            rc_set(w->block, w->fill, w->bits, rc);
        }
        w->fill++;
        w->empty = w->empty && rc == 0;
        i++;
    }
    return 0;
}

/* One old reftable entry's worth of refcounts. */
static int coroutine_fn rc_walk_entry(BlockDriverState *bs, RcWalk *w,
                                      uint64_t ti, RcBlockDone *done,
                                      Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t off = s->refcount_table[ti] & REFT_OFFSET_MASK;
    void *old = NULL;
    int ret;

    if (off && qcow2_offset_into_cluster(s, off)) {
        qcow2_signal_corruption(bs, "Refblock offset %#" PRIx64 " unaligned "
                                "(reftable index: %#" PRIx64 ")", off, ti);
        error_setg(errp, "Image is corrupt (unaligned refblock offset)");
        return -EIO;
    }
    if (off) {
        ret = qcow2_cache_get(bs, &s->refcount_cache, off, &old);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to retrieve refblock");
            return ret;
        }
    }
    ret = rc_copy(bs, w, old, ti, done, errp);
    if (old) {
        qcow2_cache_put(&s->refcount_cache, &old);
    }
    return ret;
}

/* Walk progress: @done of all walks' reftable entries. */
static void rc_status(BlockDriverState *bs, RcWalk *w, int64_t done)
{
    BDRVQcow2State *s = bs->opaque;

    if (w->cb) {
        w->cb(bs, done, (int64_t)w->walks * s->refcount_table_size,
              w->cb_opaque);
    }
}

/* Every refcount the old table covers (it may grow meanwhile). */
static int coroutine_fn rc_walk(BlockDriverState *bs, RcWalk *w,
                                RcBlockDone *done, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;

    w->index = 0;
    w->fill = 0;
    w->empty = true;
    for (uint64_t ti = 0; ti < s->refcount_table_size && ret == 0; ti++) {
        rc_status(bs, w, (int64_t)w->walk * s->refcount_table_size + ti);
        ret = rc_walk_entry(bs, w, ti, done, errp);
    }
    if (ret == 0 && w->fill > 0) {
        ret = rc_block_done(bs, w, done, errp);
    }
    w->walk++;
    if (ret == 0) {
        rc_status(bs, w, (int64_t)w->walk * s->refcount_table_size);
    }
    return ret;
}

/* Size and allocate until a walk allocates nothing more; the new table
 * goes wherever the last walk's allocations left room. */
static int coroutine_fn rc_allocate(BlockDriverState *bs, RcWalk *w,
                                    int64_t *rt_off, uint64_t *rt_size,
                                    Error **errp)
{
    int ret;

    do {
        w->allocated = false;
        w->walks = MAX(w->walk + 2, 3);
        ret = rc_walk(bs, w, rc_alloc_block, errp);
        if (ret < 0) {
            return ret;
        }
        if (w->allocated || *rt_size != w->size) {
            if (*rt_off > 0) {
                qcow2_free_clusters(bs, *rt_off, *rt_size * 8, false);
            }
            *rt_off = qcow2_alloc_clusters_at0(bs, w->size * 8);
            if (*rt_off < 0) {
                error_setg_errno(errp, -*rt_off, "Failed to allocate the "
                                 "new reftable");
                return *rt_off;
            }
            *rt_size = w->size;
            w->allocated = true;
        }
    } while (w->allocated);
    return 0;
}

/* The new blocks, then the new table, all stable before the switch. */
static int coroutine_fn rc_write_all(BlockDriverState *bs, RcWalk *w,
                                     int64_t rt_off, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *buf = g_malloc(w->size * 8);
    int ret;

    w->block = g_malloc0(s->cluster_size);
    w->walks = w->walk + 1;
    ret = rc_walk(bs, w, rc_write_block, errp);
    if (ret < 0) {
        return ret;
    }
    for (uint64_t i = 0; i < w->size; i++) {
        q_st64(buf + i * 8, w->table[i]);
    }
    ret = qcow2_pre_write_overlap_check(bs, 0, rt_off, w->size * 8);
    if (ret == 0) {
        ret = q_pwrite(bs->file, rt_off, w->size * 8, buf);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to write the new reftable");
        return ret;
    }
    ret = qcow2_cache_flush(bs, &s->refcount_cache);
    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to flush the refblock cache");
    }
    return ret;
}

/* Derived refcount geometry for order @order. */
static void rc_set_geometry(BDRVQcow2State *s, int order)
{
    s->refcount_order = order;
    s->refcount_bits = 1 << order;
    s->refcount_max = s->refcount_bits == 64 ? INT64_MAX :
                      (int64_t)((1ULL << s->refcount_bits) - 1);
    s->refblock_bits = s->cluster_bits + 3 - order;
}

/* One header update makes the new structures live; then memory follows
 * and the old table is handed back in *@table / *@size for freeing. */
static int coroutine_fn rc_switch(BlockDriverState *bs, int order,
                                  int64_t rt_off, uint64_t **table,
                                  uint64_t *size, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Header old = s->h;
    uint64_t *old_table = s->refcount_table;
    uint64_t old_size = s->refcount_table_size;
    int ret;

    s->h.refcount_order = order;
    s->h.refcount_table_offset = rt_off;
    s->h.refcount_table_clusters = *size * 8 / s->cluster_size;
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        s->h = old;
        error_setg_errno(errp, -ret, "Failed to update the image header");
        return ret;
    }
    for (int i = 0; i < s->refcount_cache.size; i++) {
        if (s->refcount_cache.entries[i].offset) {
            qcow2_cache_discard(&s->refcount_cache,
                                s->refcount_cache.entries[i].offset);
        }
    }
    s->refcount_table = *table;
    s->refcount_table_size = *size;
    s->reftable_used = 0;
    for (uint64_t i = 0; i < *size; i++) {
        if (s->refcount_table[i]) {
            qcow2_note_reftable(s, i);
        }
    }
    rc_set_geometry(s, order);
    *table = old_table;
    *size = old_size;
    return 0;
}

/* Give back a table's blocks and the table itself (leaks at worst). */
static void coroutine_fn rc_free(BlockDriverState *bs, const uint64_t *table,
                                 uint64_t size, int64_t off)
{
    BDRVQcow2State *s = bs->opaque;

    for (uint64_t i = 0; table && i < size; i++) {
        if (table[i] & REFT_OFFSET_MASK) {
            qcow2_free_clusters(bs, table[i] & REFT_OFFSET_MASK,
                                s->cluster_size, false);
        }
    }
    if (off > 0) {
        qcow2_free_clusters(bs, off, size * 8, false);
    }
}

/* New structures, one switch, old ones freed; a failure before the
 * switch frees the new ones instead. */
int coroutine_fn qcow2_change_refcount_order(BlockDriverState *bs, int order,
                                             BlockAmendStatusCB *cb,
                                             void *cb_opaque, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    RcWalk w = {
        .cb = cb,
        .cb_opaque = cb_opaque,
        .bits = 1 << order,
        .per_block = s->cluster_size * 8 >> order,
    };
    int64_t rt_off = 0, old_off = s->h.refcount_table_offset;
    uint64_t rt_size = 0;
    int ret = rc_allocate(bs, &w, &rt_off, &rt_size, errp);

    if (ret == 0) {
        ret = rc_write_all(bs, &w, rt_off, errp);
    }
    if (ret == 0) {
        ret = rc_switch(bs, order, rt_off, &w.table, &w.size, errp);
        rt_off = ret == 0 ? old_off : rt_off;
    }
    /* on success the old structures go, else the new ones */
    rc_free(bs, w.table, w.size, rt_off);
    g_free(w.table);
    g_free(w.block);
    return ret;
}

