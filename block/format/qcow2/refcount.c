#include "config.h"
/*
 * qcow2 reference counts: the refcount table (in memory, written through)
 * points at refcount blocks (in the refcount cache).  Allocation finds
 * free clusters, makes sure every refcount block it needs exists, and
 * only then raises the refcounts, so a failure or a restart leaves
 * nothing half-counted.  New refcount blocks and reftable entries are
 * written before anything that depends on them.
 *
 * Sections: entry access, lookup, refcount block creation, reftable
 * growth, update/alloc/free, compressed byte allocation (the metadata
 * overlap checks are in overlap.c).
 */
#include <stdio.h>
#include "qcow2.h"

/* ---- entry access: 1..64-bit entries, sub-byte ones LSB first ---- */

uint64_t qcow2_get_refcount_entry(BDRVQcow2State *s, const void *block,
                                  uint64_t index)
{
    const uint8_t *b = block;
    int bits = s->refcount_bits;

    switch (bits) {
    case 1: case 2: case 4: {
        int per = 8 / bits;
        return (b[index / per] >> ((index % per) * bits)) & ((1 << bits) - 1);
    }
    case 8:
        return b[index];
    case 16:
        return q_ld16(b + index * 2);
    case 32:
        return q_ld32(b + index * 4);
    default:
        return q_ld64(b + index * 8);
    }
}

void qcow2_set_refcount_entry(BDRVQcow2State *s, void *block, uint64_t index,
                              uint64_t value)
{
    uint8_t *b = block;
    int bits = s->refcount_bits;

    switch (bits) {
    case 1: case 2: case 4: {
        int per = 8 / bits, shift = (index % per) * bits;
        uint8_t mask = ((1 << bits) - 1) << shift;
        b[index / per] = (b[index / per] & ~mask) | ((value << shift) & mask);
        break;
    }
    case 8:
        b[index] = value;
        break;
    case 16:
        q_st16(b + index * 2, value);
        break;
    case 32:
        q_st32(b + index * 4, value);
        break;
    default:
        q_st64(b + index * 8, value);
        break;
    }
}

/* ---- lookup ---- */

/* Read the refcount table at open (entries past EOF read as zero). */
int coroutine_fn qcow2_refcount_read_table(BlockDriverState *bs,
                                           Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t bytes = (uint64_t)s->h.refcount_table_clusters * s->cluster_size;
    int64_t in_file;

    s->refcount_table_size = bytes / 8;
    s->refcount_table = g_new0(uint64_t, s->refcount_table_size + 1);
    bdrv_debug_event(bs->file, BLKDBG_REFTABLE_LOAD);
    in_file = qcow2_read_table64(bs, s->h.refcount_table_offset,
                                 s->refcount_table_size, s->refcount_table);
    if (in_file < 0) {
        error_setg_errno(errp, -in_file,
                         "Could not initialize refcount handling");
        return in_file;
    }
    for (int64_t i = 0; i < in_file; i++) {
        if (s->refcount_table[i]) {
            qcow2_note_reftable(s, i);
        }
    }
    return 0;
}

/* The refcount block offset for table index @ti (0: none), checked. */
static int refblock_offset(BlockDriverState *bs, uint64_t ti, uint64_t *off)
{
    BDRVQcow2State *s = bs->opaque;

    *off = ti < s->refcount_table_size ?
           s->refcount_table[ti] & REFT_OFFSET_MASK : 0;
    if (*off && qcow2_offset_into_cluster(s, *off)) {
        qcow2_signal_corruption(bs, "Refblock offset %#" PRIx64 " unaligned "
                                "(reftable index: %#" PRIx64 ")", *off, ti);
        return -EIO;
    }
    if (*off && *off < s->cluster_size) {
        qcow2_signal_corruption(bs, "Refblock at offset %#" PRIx64
                                " overlaps with qcow2 header", *off);
        return -EIO;
    }
    return 0;
}

int coroutine_fn qcow2_get_refcount(BlockDriverState *bs, uint64_t cluster,
                                    uint64_t *refcount)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t ti = cluster >> s->refblock_bits, off;
    void *block;
    int ret = refblock_offset(bs, ti, &off);

    *refcount = 0;
    if (ret < 0 || !off) {
        return ret;
    }
    ret = qcow2_cache_get(bs, &s->refcount_cache, off, &block);
    if (ret < 0) {
        return ret;
    }
    *refcount = qcow2_get_refcount_entry(s, block,
                                         cluster & ((1ULL << s->refblock_bits) - 1));
    qcow2_cache_put(&s->refcount_cache, &block);
    return 0;
}

static void coroutine_fn process_discards(BlockDriverState *bs, int ret);

/* First run of @n clusters with refcount 0, from the free hint on. */
static int64_t coroutine_fn find_free(BlockDriverState *bs, uint64_t n)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t start = s->free_cluster_index, i = start, rc;
    int ret;

    /* a cluster freed in a batch may be handed out again: its discard
     * must reach the file before anything is written there */
    process_discards(bs, 0);
    /* cluster 0 (the header) is found free when its refcount is damaged:
     * the callers refuse it, each with the reference's message */
    while (i - start < n) {
        if (i >= (INT64_MAX >> s->cluster_bits) - n) {
            return -EFBIG;
        }
        ret = qcow2_get_refcount(bs, i, &rc);
        if (ret < 0) {
            return ret;
        }
        i++;
        if (rc) {
            start = i;
        }
    }
    return start;
}

/* ---- refcount table entries and new blocks ---- */

/* Write reftable entry @ti from memory. */
static int coroutine_fn write_reftable_entry(BlockDriverState *bs,
                                             uint64_t ti)
{
    BDRVQcow2State *s = bs->opaque;

    return qcow2_write_table_entry(bs, QCOW2_OL_REFCOUNT_TABLE,
                                   s->h.refcount_table_offset + ti * 8,
                                   s->refcount_table[ti],
                                   BLKDBG_REFBLOCK_ALLOC_HOOKUP);
}

static int coroutine_fn grow_reftable(BlockDriverState *bs, uint64_t ti,
                                      uint64_t c);
static int coroutine_fn ensure_refblock(BlockDriverState *bs, uint64_t ti);
static int coroutine_fn change_refcounts(BlockDriverState *bs, uint64_t first,
                                         uint64_t n, int64_t addend);

/* A new, empty refcount block for table index @ti at cluster @c; when it
 * describes itself its own refcount is 1.  Written and referenced in the
 * table before it is used (past the table's end: written only, the
 * caller grows the table around it). */
static int coroutine_fn make_refblock(BlockDriverState *bs, uint64_t ti,
                                      uint64_t c)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t off = c << s->cluster_bits;
    void *block;
    int ret;

    bdrv_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC);
    if ((c >> s->refblock_bits) != ti) {
        /* described by another block, made first if missing (it takes
         * the next free cluster, past @c), as the reference does */
        ret = ensure_refblock(bs, c >> s->refblock_bits);
        if (ret < 0 && ret != -EAGAIN) {
            return ret;
        }
        ret = change_refcounts(bs, c, 1, 1);
        if (ret == -EAGAIN) {
            /* @c lies where no block counts yet (a hole in a damaged
             * table): that block first, then the caller searches again
             * (retrying as it was would never end) */
            ret = ensure_refblock(bs, c >> s->refblock_bits);
            ret = ret == 0 ? -EAGAIN : ret;
        }
        if (ret < 0) {
            return ret;
        }
    }
    ret = qcow2_cache_get_empty(bs, &s->refcount_cache, off, &block);
    if (ret < 0) {
        return ret;
    }
    if ((c >> s->refblock_bits) == ti) {
        qcow2_set_refcount_entry(s, block, c & ((1ULL << s->refblock_bits) - 1),
                                 1);
    }
    qcow2_cache_mark_dirty(&s->refcount_cache, block);
    qcow2_cache_put(&s->refcount_cache, &block);
    bdrv_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC_WRITE);
    ret = qcow2_cache_flush(bs, &s->refcount_cache);
    if (ret < 0 || ti >= s->refcount_table_size) {
        return ret;     /* past the table: the grown table takes it */
    }
    s->refcount_table[ti] = off;
    qcow2_note_reftable(s, ti);
    ret = write_reftable_entry(bs, ti);
    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    return ret;
}

/* Make sure the refcount block for @ti exists.  -EAGAIN: one was made (or
 * the table grew), the caller must search again since the new metadata
 * may sit where it wanted to allocate.  As the reference, the block takes
 * the first free cluster even when the table must grow for it. */
static int coroutine_fn ensure_refblock(BlockDriverState *bs, uint64_t ti)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t off;
    int64_t c;
    int ret;

    if (ti < s->refcount_table_size) {
        ret = refblock_offset(bs, ti, &off);
        if (ret < 0 || off) {
            return ret;
        }
    }
    c = find_free(bs, 1);
    if (c < 0) {
        return c;
    }
    if (c == 0) {
        qcow2_signal_corruption(bs, "Preventing invalid allocation of "
                                "refcount block at offset 0");
        return -EIO;
    }
    s->free_cluster_index = MAX(s->free_cluster_index, (uint64_t)c + 1);
    ret = make_refblock(bs, ti, c);
    if (ret == 0 && ti >= s->refcount_table_size) {
        ret = grow_reftable(bs, ti, c);
    }
    return ret < 0 ? ret : -EAGAIN;
}

/* ---- reftable growth, laid out as the reference's: the new blocks,
 * then the new table, in a self-describing area that starts at the first
 * refcount block boundary past the blocks in use ---- */

/* Refcount blocks that count @clusters clusters plus these blocks and a
 * table for them (a fixed point); @generous first adds half the table's
 * clusters, the margin the reference gives a grown table. */
static uint64_t refblocks_needed(BDRVQcow2State *s, uint64_t clusters,
                                 bool generous)
{
    uint64_t per_block = 1ULL << s->refblock_bits;
    uint64_t per_table_cluster = s->cluster_size / 8;
    uint64_t blocks = 0, table = 0, n = 0, last;

    do {
        last = n;
        blocks = DIV_ROUND_UP(clusters + table + blocks, per_block);
        table = DIV_ROUND_UP(blocks, per_table_cluster);
        n = clusters + blocks + table;
        if (n == last && generous) {
            clusters += DIV_ROUND_UP(table, 2);
            n = 0;
            generous = false;
        }
    } while (n != last);
    return blocks;
}

/* Write the @nb new blocks (table indexes from @area's on, refcounts of
 * the area's own clusters set) and the @nt clusters of the new table. */
static int coroutine_fn write_growth_area(BlockDriverState *bs, uint64_t area,
                                          uint64_t nb, uint64_t nt,
                                          uint8_t *table)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t first_ti = area >> s->refblock_bits, end = area + nb + nt;
    g_autofree uint8_t *blk = g_malloc(s->cluster_size);
    int ret;

    for (uint64_t k = 0; k < nb; k++) {
        uint64_t ti = first_ti + k;
        uint64_t lo = MAX(area, ti << s->refblock_bits);
        uint64_t hi = MIN(end, (ti + 1) << s->refblock_bits);

        memset(blk, 0, s->cluster_size);
        for (uint64_t c = lo; c < hi; c++) {
            qcow2_set_refcount_entry(s, blk,
                                     c & ((1ULL << s->refblock_bits) - 1), 1);
        }
        bdrv_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS);
        ret = q_pwrite(bs->file, (area + k) << s->cluster_bits,
                       s->cluster_size, blk);
        if (ret < 0) {
            return ret;
        }
        q_st64(table + ti * 8, (area + k) << s->cluster_bits);
    }
    bdrv_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE);
    ret = q_pwrite(bs->file, (area + nb) << s->cluster_bits,
                   nt * s->cluster_size, table);
    return ret < 0 ? ret : bdrv_co_flush(bs->file->bs);
}

/* Point the header at the new table (one write: offset + clusters). */
static int coroutine_fn switch_reftable(BlockDriverState *bs, uint64_t off,
                                        uint64_t nt)
{
    uint8_t b[12];
    int ret;

    q_st64(b, off);
    q_st32(b + 8, nt);
    bdrv_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE);
    ret = q_pwrite(bs->file, 48, 12, b);
    return ret < 0 ? ret : bdrv_co_flush(bs->file->bs);
}

/* The new table in memory, the old one's clusters freed. */
static void install_reftable(BlockDriverState *bs, const uint8_t *table,
                             uint64_t off, uint64_t nt)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old_off = s->h.refcount_table_offset;
    uint64_t old_clusters = s->h.refcount_table_clusters;

    g_free(s->refcount_table);
    s->refcount_table_size = nt * s->cluster_size / 8;
    s->refcount_table = g_new0(uint64_t, s->refcount_table_size);
    for (uint32_t i = 0; i < s->refcount_table_size; i++) {
        s->refcount_table[i] = q_ld64(table + i * 8);
        if (s->refcount_table[i]) {
            qcow2_note_reftable(s, i);
        }
    }
    s->h.refcount_table_offset = off;
    s->h.refcount_table_clusters = nt;
    qcow2_free_clusters(bs, old_off, old_clusters * s->cluster_size,
                        s->discard_passthrough_other);
}

/* A table for index @ti, whose new block (written) is cluster @c: the
 * area starts past the blocks in use (@ti's and @c's included); the table
 * has room for half as many blocks again as it needs, in whole clusters. */
static int coroutine_fn grow_reftable(BlockDriverState *bs, uint64_t ti,
                                      uint64_t c)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t per_cluster = s->cluster_size / 8;
    uint64_t used = MAX(ti, c >> s->refblock_bits) + 1;
    uint64_t area = used << s->refblock_bits;
    uint64_t total = refblocks_needed(s, area, true);
    uint64_t entries = ROUND_UP(total + DIV_ROUND_UP(total, 2), per_cluster);
    uint64_t nt = entries / per_cluster, nb = total - used;
    g_autofree uint8_t *table = NULL;
    int ret;

    bdrv_debug_event(bs->file, BLKDBG_REFTABLE_GROW);
    if (entries * 8 > QCOW2_MAX_REFTABLE_SIZE || ti >= entries) {
        return -EFBIG;
    }
    ret = qcow2_cache_flush(bs, &s->refcount_cache);
    if (ret < 0) {
        return ret;
    }
    table = g_malloc0(entries * 8);
    for (uint32_t i = 0; i < MIN(s->refcount_table_size, entries); i++) {
        q_st64(table + i * 8, s->refcount_table[i]);
    }
    q_st64(table + ti * 8, (uint64_t)c << s->cluster_bits);
    ret = write_growth_area(bs, area, nb, nt, table);
    if (ret == 0) {
        ret = switch_reftable(bs, (area + nb) << s->cluster_bits, nt);
    }
    if (ret == 0) {
        install_reftable(bs, table, (area + nb) << s->cluster_bits, nt);
    }
    return ret;
}

/* ---- a refcount area for preallocated growth, as the reference's:
 * the missing blocks from @start on, then an exact-size table, counting
 * themselves and clusters past them; the old table freed ---- */

/* Set the refcounts of clusters [lo, hi) to 1 in the block for table
 * index @ti at @off (@fresh: a new block, emptied first). */
static int coroutine_fn area_fill_block(BlockDriverState *bs, uint64_t ti,
                                        uint64_t off, bool fresh,
                                        uint64_t lo, uint64_t hi)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t mask = (1ULL << s->refblock_bits) - 1;
    void *block;
    int ret = fresh ? qcow2_cache_get_empty(bs, &s->refcount_cache, off,
                                            &block)
                    : qcow2_cache_get(bs, &s->refcount_cache, off, &block);

    if (ret < 0) {
        return ret;
    }
    if (fresh) {
        memset(block, 0, s->cluster_size);
    }
    lo = MAX(lo, ti << s->refblock_bits);
    hi = MIN(hi, (ti + 1) << s->refblock_bits);
    for (uint64_t c = lo; c < hi; c++) {
        qcow2_set_refcount_entry(s, block, c & mask, 1);
    }
    qcow2_cache_mark_dirty(&s->refcount_cache, block);
    qcow2_cache_put(&s->refcount_cache, &block);
    return 0;
}

/* The blocks of table indexes [first, total) in @table (big-endian),
 * the missing ones made from cluster @start on; every block counts the
 * clusters of [start, end) it covers. */
static int coroutine_fn area_blocks(BlockDriverState *bs, uint8_t *table,
                                    uint64_t first, uint64_t total,
                                    uint64_t start, uint64_t end)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t next = start;

    for (uint64_t ti = first; ti < total; ti++) {
        uint64_t off = 0;
        bool fresh = false;
        int ret = refblock_offset(bs, ti, &off);

        if (ret == 0 && !off) {
            off = next++ << s->cluster_bits;
            fresh = true;
            q_st64(table + ti * 8, off);
        }
        if (ret == 0) {
            ret = area_fill_block(bs, ti, off, fresh, start, end);
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int64_t coroutine_fn qcow2_refcount_area(BlockDriverState *bs, uint64_t start,
                                         uint64_t extra)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t per_cluster = s->cluster_size / 8;
    uint64_t total = refblocks_needed(s, start + extra, false);
    uint64_t entries = ROUND_UP(total, per_cluster), nt, nb = 0, tc;
    uint64_t first = start >> s->refblock_bits;
    g_autofree uint8_t *table = NULL;
    int ret;

    if (entries * 8 > QCOW2_MAX_REFTABLE_SIZE) {
        return -EFBIG;
    }
    nt = entries / per_cluster;
    table = g_malloc0(entries * 8);
    for (uint64_t i = 0; i < MIN(s->refcount_table_size, entries); i++) {
        q_st64(table + i * 8, s->refcount_table[i]);
    }
    for (uint64_t ti = first; ti < total; ti++) {
        nb += !q_ld64(table + ti * 8);
    }
    tc = start + nb;
    ret = area_blocks(bs, table, first, total, start, tc + nt);
    if (ret == 0) {
        bdrv_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS);
        ret = qcow2_cache_flush(bs, &s->refcount_cache);
    }
    if (ret == 0) {
        bdrv_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE);
        ret = q_pwrite(bs->file, tc << s->cluster_bits, nt * s->cluster_size,
                       table);
    }
    ret = ret < 0 ? ret : bdrv_co_flush(bs->file->bs);
    if (ret == 0) {
        ret = switch_reftable(bs, tc << s->cluster_bits, nt);
    }
    if (ret < 0) {
        return ret;
    }
    install_reftable(bs, table, tc << s->cluster_bits, nt);
    return tc + nt;
}

int coroutine_fn qcow2_used_end(BlockDriverState *bs, uint64_t clusters,
                                uint64_t *end)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t c = MIN(clusters,
                     (uint64_t)s->refcount_table_size << s->refblock_bits);
    uint64_t rc = 0;
    int ret = 0;

    for (; c > 0; c--) {
        if (!s->refcount_table[(c - 1) >> s->refblock_bits]) {
            c = ((c - 1) >> s->refblock_bits) << s->refblock_bits;
            c++;    /* the loop's c-- lands on the block's start */
            continue;
        }
        ret = qcow2_get_refcount(bs, c - 1, &rc);
        if (ret < 0 || rc) {
            break;
        }
    }
    *end = c;
    return ret;
}

int coroutine_fn qcow2_file_used_end(BlockDriverState *bs, int64_t *flen,
                                     uint64_t *end)
{
    BDRVQcow2State *s = bs->opaque;

    *flen = bdrv_co_getlength(bs->file->bs);
    if (*flen < 0) {
        return *flen;
    }
    return qcow2_used_end(bs, DIV_ROUND_UP((uint64_t)*flen, s->cluster_size),
                          end);
}

/* Whether the refcount block at @off (table index @ti) counts nothing
 * but, possibly, itself.  An unaligned block cannot be read: the
 * reference's cache refuses it as a corruption. */
static int coroutine_fn refblock_unused(BlockDriverState *bs, uint64_t ti,
                                        uint64_t off, bool *unused)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t self = off >> s->cluster_bits;
    uint64_t n = 1ULL << s->refblock_bits;
    void *block;
    int ret;

    if (qcow2_offset_into_cluster(s, off)) {
        qcow2_signal_corruption(bs, "Cannot get entry from refcount block "
                                "cache: Offset %#" PRIx64 " is unaligned",
                                off);
        return -EIO;
    }
    ret = qcow2_cache_get(bs, &s->refcount_cache, off, &block);
    if (ret < 0) {
        return ret;
    }
    *unused = true;
    for (uint64_t i = 0; i < n && *unused; i++) {
        bool own = (self >> s->refblock_bits) == ti &&
                   (self & (n - 1)) == i;
        *unused = own || !qcow2_get_refcount_entry(s, block, i);
    }
    qcow2_cache_put(&s->refcount_cache, &block);
    return 0;
}

/* Refcount block @off left the table: its own refcount (1, in the
 * block covering it, which may be itself) drops to 0 and the cluster
 * is discarded.  A block nothing covers, or whose refcount is not 1,
 * is a corruption, in the reference's words. */
static int coroutine_fn discard_refblock(BlockDriverState *bs, uint64_t off)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t k = off >> s->cluster_bits, ti = k >> s->refblock_bits;
    uint64_t cover = ti < s->refcount_table_size ?
                     s->refcount_table[ti] & REFT_OFFSET_MASK : 0;
    uint64_t i = k & ((1ULL << s->refblock_bits) - 1);
    void *block;
    int ret;

    if (!cover) {
        qcow2_signal_corruption(bs, "Refblock at %#" PRIx64 " is not "
                                "covered by the refcount structures", off);
        return -EIO;
    }
    ret = refblock_offset(bs, ti, &cover);
    if (ret == 0) {
        ret = qcow2_cache_get(bs, &s->refcount_cache, cover, &block);
    }
    if (ret < 0) {
        return ret;
    }
    if (qcow2_get_refcount_entry(s, block, i) != 1) {
        qcow2_cache_put(&s->refcount_cache, &block);
        qcow2_signal_corruption(bs, "Invalid refcount: refblock offset %#"
                                PRIx64 ", reftable index %" PRIu64 ", block "
                                "offset %#" PRIx64 ", refblock %#" PRIx64,
                                off, ti, k, cover);
        return -EINVAL;
    }
    qcow2_set_refcount_entry(s, block, i, 0);
    qcow2_cache_mark_dirty(&s->refcount_cache, block);
    qcow2_cache_put(&s->refcount_cache, &block);
    s->free_cluster_index = MIN(s->free_cluster_index, k);
    qcow2_cache_discard(&s->refcount_cache, off);
    bdrv_co_pdiscard(bs->file, off, s->cluster_size);
    return 0;
}

/* The refcount table with the blocks that count nothing dropped (@t,
 * big-endian), written whole. */
static int coroutine_fn write_shrunk_reftable(BlockDriverState *bs,
                                              const uint64_t *t)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = q_pwrite(bs->file, s->h.refcount_table_offset,
                       s->refcount_table_size * 8, t);

    return ret < 0 ? ret : bdrv_co_flush(bs->file->bs);
}

/* After a shrink, refcount blocks that count no cluster any more leave the
 * table and are freed, in one pass as the reference does (a block that
 * only counted a dropped one stays), so the file can be trimmed. */
int coroutine_fn qcow2_shrink_reftable(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint64_t *t = g_new0(uint64_t, MAX(s->refcount_table_size, 1));
    int ret = 0;

    for (uint64_t ti = 0; ti < s->refcount_table_size; ti++) {
        uint64_t off = s->refcount_table[ti] & REFT_OFFSET_MASK;
        bool unused = false;

        if (off && (ret = refblock_unused(bs, ti, off, &unused)) < 0) {
            return ret;
        }
        q_st64((uint8_t *)&t[ti], off && !unused ? s->refcount_table[ti] : 0);
    }
    ret = write_shrunk_reftable(bs, t);
    /* a failed write may have left any mix on disk: the dropped blocks
     * are forgotten in memory either way */
    for (uint64_t ti = 0; ti < s->refcount_table_size; ti++) {
        if (s->refcount_table[ti] && !t[ti]) {
            if (ret == 0) {
                ret = discard_refblock(bs, s->refcount_table[ti] &
                                           REFT_OFFSET_MASK);
            }
            s->refcount_table[ti] = 0;
        }
    }
    return ret;
}

/* ---- update / allocate / free ---- */

/* Which cache reaches the disk first: a raised refcount before the L2
 * entry that will use the cluster (unless refcounts may be stale, lazy
 * refcounts), a lowered one only after the L2 entry that dropped the
 * reference (the caller changed and dirtied it already), or the cluster
 * could be reused while an old entry on disk still points at it. */
static int coroutine_fn refcount_order(BlockDriverState *bs, int64_t addend)
{
    BDRVQcow2State *s = bs->opaque;

    if (addend < 0) {
        /* a failed flush of the L2 tables (to settle the other
         * order) does not stop the free, as for the reference */
        qcow2_cache_set_dependency(bs, &s->refcount_cache, &s->l2_cache);
        return 0;
    }
    if (!s->use_lazy_refcounts) {
        return qcow2_cache_set_dependency(bs, &s->l2_cache,
                                          &s->refcount_cache);
    }
    return 0;
}

/* change_refcounts without ordering the caches: only for clusters that
 * nothing on disk references. */
static int coroutine_fn change_refcounts_unordered(BlockDriverState *bs,
                                                   uint64_t first, uint64_t n,
                                                   int64_t addend)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t mask = (1ULL << s->refblock_bits) - 1;
    int ret;

    for (uint64_t c = first; c < first + n; c++) {
        uint64_t off, rc;
        void *block;

        if (c == first || !(c & mask)) {
            /* the reference's events for each block an update touches */
            bdrv_debug_event(bs->file, BLKDBG_REFBLOCK_ALLOC);
        }
        ret = refblock_offset(bs, c >> s->refblock_bits, &off);
        if (ret == 0 && !off) {
            ret = addend > 0 ? -EAGAIN : -EINVAL;
        }
        if (ret == 0 && (c == first || !(c & mask))) {
            bdrv_debug_event(bs->file, BLKDBG_REFBLOCK_LOAD);
        }
        if (ret == 0) {
            ret = qcow2_cache_get(bs, &s->refcount_cache, off, &block);
        }
        if (ret < 0) {
            return ret;
        }
        rc = qcow2_get_refcount_entry(s, block, c & mask);
        /* overflow is -EINVAL too, as for the reference (its snapshot
         * messages say "Invalid argument"); no wrap past 64 bits */
        if ((addend < 0 && rc < (uint64_t)-addend) ||
            (addend > 0 && (rc > (uint64_t)s->refcount_max ||
                            (uint64_t)addend >
                            (uint64_t)s->refcount_max - rc))) {
            qcow2_cache_put(&s->refcount_cache, &block);
            return -EINVAL;
        }
        qcow2_set_refcount_entry(s, block, c & mask, rc + addend);
        qcow2_cache_mark_dirty(&s->refcount_cache, block);
        qcow2_cache_put(&s->refcount_cache, &block);
        if (rc + addend == 0 && c < s->free_cluster_index) {
            s->free_cluster_index = c;
        }
    }
    return 0;
}

/* Add @addend to the refcounts of clusters [first, first + n); every
 * block must exist when @addend > 0 (ensure_refblock ran). */
static int coroutine_fn change_refcounts(BlockDriverState *bs, uint64_t first,
                                         uint64_t n, int64_t addend)
{
    int ret = refcount_order(bs, addend);

    return ret < 0 ? ret : change_refcounts_unordered(bs, first, n, addend);
}

/* Give back the cluster at @offset, just allocated for a table that
 * never got referenced (its allocation failed half-way): no cache order
 * to keep, so a refcount block cache that cannot be written does not
 * fail this too; its cached tables are dropped. */
void coroutine_fn qcow2_free_unused_cluster(BlockDriverState *bs,
                                            uint64_t offset)
{
    BDRVQcow2State *s = bs->opaque;

    qcow2_cache_discard(&s->l2_cache, offset);
    qcow2_cache_discard(&s->refcount_cache, offset);
    change_refcounts_unordered(bs, offset >> s->cluster_bits, 1, -1);
}

/* Refcounts of the clusters touched by [offset, offset + length);
 * @ordered: the caches' write order follows (refcount_order). */
static int coroutine_fn update_refcount(BlockDriverState *bs, uint64_t offset,
                                        uint64_t length, int64_t addend,
                                        bool ordered)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t first = offset >> s->cluster_bits;
    uint64_t last = (offset + length - 1) >> s->cluster_bits;

    if (!length) {
        return 0;
    }
    if (addend > 0) {
        for (uint64_t ti = first >> s->refblock_bits;
             ti <= last >> s->refblock_bits; ti++) {
            int ret = ensure_refblock(bs, ti);
            if (ret < 0) {
                return ret;
            }
        }
    }
    if (!ordered && addend > 0) {
        return change_refcounts_unordered(bs, first, last - first + 1,
                                          addend);
    }
    return change_refcounts(bs, first, last - first + 1, addend);
}

int coroutine_fn qcow2_update_refcount(BlockDriverState *bs, uint64_t offset,
                                       uint64_t length, int64_t addend)
{
    return update_refcount(bs, offset, length, addend, true);
}

int coroutine_fn qcow2_repair_update_refcount(BlockDriverState *bs,
                                              uint64_t offset,
                                              uint64_t length, int64_t addend)
{
    return update_refcount(bs, offset, length, addend, false);
}

/* Whether cluster @c, which had no refcount block, got one (made now, the
 * table grown or not): the reference then searches again from @c, while
 * a block that could not be made yet moves the search on, so that the
 * retries always make progress. */
static bool made_first_block(BlockDriverState *bs, uint64_t c)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t block = 0;

    if ((c >> s->refblock_bits) >= s->refcount_table_size) {
        return false;
    }
    return refblock_offset(bs, c >> s->refblock_bits, &block) == 0 && block;
}

/* @size bytes of fresh clusters; returns the host offset, 0 when the
 * header's cluster is found free (a damaged refcount).  As in the
 * reference, a refcount block the run needs is searched for after the
 * run (the free hint has moved past it), and the run is searched again
 * from its old start once its first cluster has a block (made now, with
 * the table grown or not, or before); otherwise from past it. */
int64_t coroutine_fn qcow2_alloc_clusters_at0(BlockDriverState *bs,
                                              uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t n = DIV_ROUND_UP(size, s->cluster_size);
    int64_t c;
    int ret;

    bdrv_debug_event(bs->file, BLKDBG_CLUSTER_ALLOC);
    do {
        uint64_t block = 0;

        c = find_free(bs, n);
        if (c < 0) {
            return c;
        }
        if ((uint64_t)c >> s->refblock_bits < s->refcount_table_size) {
            refblock_offset(bs, (uint64_t)c >> s->refblock_bits, &block);
        }
        s->free_cluster_index = c + n;
        ret = qcow2_update_refcount(bs, (uint64_t)c << s->cluster_bits,
                                    n << s->cluster_bits, 1);
        if (ret == -EAGAIN && (block || made_first_block(bs, c))) {
            /* not past clusters freed meanwhile (an old table) */
            s->free_cluster_index = MIN(s->free_cluster_index, (uint64_t)c);
        }
    } while (ret == -EAGAIN);
    if (ret < 0) {
        return ret;
    }
    s->free_cluster_index = c + n;
    return (uint64_t)c << s->cluster_bits;
}

/* Metadata just allocated at offset 0 (the header's refcount damaged):
 * the reference writes the allocation's refcounts, then its overlap
 * check refuses the write and marks the image corrupt; the header's
 * cluster is left counted once, which a later check finds right.  A
 * refcount block its own overlap check refuses (on the refcount table)
 * is not written: the header's refusal comes first there, and the
 * reference's later write-back fails. */
int coroutine_fn qcow2_refuse_header_alloc(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    if (!qcow2_cache_writeback_refused(bs, &s->refcount_cache)) {
        qcow2_cache_flush(bs, &s->refcount_cache);
    }
    qcow2_signal_corruption(bs, "Preventing invalid write on metadata "
                            "(overlaps with qcow2_header)");
    return -EIO;
}

/* Fresh clusters never at offset 0: there the reference's overlap check
 * stops the write on the header; strata stops it whatever the check
 * options say, with the same message. */
int64_t coroutine_fn qcow2_alloc_clusters(BlockDriverState *bs, uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t off;

    /* nothing to allocate (an empty snapshot table): where the search
     * would start, as the reference answers, nothing written */
    if (!size) {
        return (int64_t)s->free_cluster_index << s->cluster_bits;
    }
    off = qcow2_alloc_clusters_at0(bs, size);

    if (off == 0) {
        qcow2_signal_corruption(bs, "Preventing invalid write on metadata "
                                "(overlaps with qcow2_header)");
        return -EIO;
    }
    return off;
}

/* Allocate exactly [offset, offset + n clusters) (preallocation); -EAGAIN
 * never escapes. */
int coroutine_fn qcow2_alloc_clusters_at(BlockDriverState *bs,
                                         uint64_t offset, int64_t n)
{
    int ret;

    do {
        ret = qcow2_update_refcount(bs, offset,
                                    n << ((BDRVQcow2State *)bs->opaque)->cluster_bits, 1);
    } while (ret == -EAGAIN);
    return ret;
}

/* Drop a reference; clusters reaching zero are discarded in the file
 * when @discard and the discard options allow it. */
void coroutine_fn qcow2_free_clusters(BlockDriverState *bs, uint64_t offset,
                                      uint64_t size, bool discard)
{
    if (size) {
        bdrv_debug_event(bs->file, BLKDBG_CLUSTER_FREE);
        qcow2_free_clusters_noevent(bs, offset, size, discard);
    }
}

/* ---- discards of freed clusters ---- */

/* At most this many separate runs wait; then they go out (bounds the
 * merge scan when a request frees a badly fragmented range). */
#define QCOW2_MAX_PENDING_DISCARDS 256

/* Add [offset, +bytes) to the pending runs, merged with a run it
 * touches, and that run with another it now touches. */
static void coroutine_fn queue_discard(BlockDriverState *bs, uint64_t offset,
                                       uint64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Discard *d = NULL;

    if (!s->discards) {
        s->discards = g_array_new(false, false, sizeof(Qcow2Discard));
    }
    for (guint i = 0; i < s->discards->len && !d; i++) {
        Qcow2Discard *e = &g_array_index(s->discards, Qcow2Discard, i);
        if (e->offset == offset + bytes || e->offset + e->bytes == offset) {
            e->offset = MIN(e->offset, offset);
            e->bytes += bytes;
            d = e;
        }
    }
    if (!d) {
        if (s->discards->len >= QCOW2_MAX_PENDING_DISCARDS) {
            process_discards(bs, 0);
        }
        g_array_append_val(s->discards, ((Qcow2Discard){ offset, bytes }));
        return;
    }
    for (guint i = 0; i < s->discards->len; i++) {
        Qcow2Discard *e = &g_array_index(s->discards, Qcow2Discard, i);
        if (e != d && (e->offset == d->offset + d->bytes ||
                       e->offset + e->bytes == d->offset)) {
            d->offset = MIN(d->offset, e->offset);
            d->bytes += e->bytes;
            g_array_remove_index(s->discards, i);
            return;
        }
    }
}

/* The pending runs go to the file (dropped after a failure, as the
 * reference drops them). */
static void coroutine_fn process_discards(BlockDriverState *bs, int ret)
{
    BDRVQcow2State *s = bs->opaque;

    if (!s->discards || !s->discards->len) {
        return;
    }
    for (guint i = 0; i < s->discards->len && ret >= 0; i++) {
        Qcow2Discard *d = &g_array_index(s->discards, Qcow2Discard, i);
        bdrv_co_pdiscard(bs->file, d->offset, d->bytes);
    }
    g_array_set_size(s->discards, 0);
}

void qcow2_discards_begin(BlockDriverState *bs)
{
    ((BDRVQcow2State *)bs->opaque)->discard_batch++;
}

void coroutine_fn qcow2_discards_end(BlockDriverState *bs, int ret)
{
    BDRVQcow2State *s = bs->opaque;

    if (--s->discard_batch == 0) {
        process_discards(bs, ret);
    }
}

/* Drop one reference of each cluster of [first, last]; those reaching
 * zero leave the caches and, when @discard, join the pending runs. */
static int coroutine_fn free_each(BlockDriverState *bs, uint64_t first,
                                  uint64_t last, bool discard)
{
    BDRVQcow2State *s = bs->opaque;

    for (uint64_t c = first; c <= last; c++) {
        uint64_t rc = 0;
        int ret = change_refcounts(bs, c, 1, -1);

        if (ret == -EINVAL && s->refcounts_stale) {
            continue;       /* stale refcounts: a leak, not corruption */
        }
        if (ret < 0) {
            /* an underflow or a refcount block that cannot be read is
             * no corruption for the reference: reported, the part of
             * the range already freed restored, a leak */
            if (c > first) {
                change_refcounts(bs, first, c - first, 1);
            }
            fprintf(stderr, "qcow2_free_clusters failed: %s\n",
                    strerror(-ret));
            return ret;
        }
        qcow2_get_refcount(bs, c, &rc);
        if (rc == 0) {
            qcow2_cache_discard(&s->l2_cache, c << s->cluster_bits);
            qcow2_cache_discard(&s->refcount_cache, c << s->cluster_bits);
            if (discard) {
                queue_discard(bs, c << s->cluster_bits, s->cluster_size);
            }
        }
    }
    return 0;
}

void coroutine_fn qcow2_free_clusters_noevent(BlockDriverState *bs,
                                              uint64_t offset, uint64_t size,
                                              bool discard)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (!size) {
        return;
    }
    ret = free_each(bs, offset >> s->cluster_bits,
                    (offset + size - 1) >> s->cluster_bits, discard);
    if (!s->discard_batch) {
        process_discards(bs, ret);
    }
}

/* Free what an L2 entry references (normal / preallocated zero /
 * compressed); guest discards pass down if pass-discard-request says so. */
void coroutine_fn qcow2_free_l2_entry(BlockDriverState *bs, uint64_t l2e)
{
    BDRVQcow2State *s = bs->opaque;

    qcow2_free_l2_entry_pass(bs, l2e, s->discard_passthrough_request);
}

/* The same, the freed clusters discarded in the file when @pass (for a
 * compressed cluster, the host clusters no longer used at all). */
void coroutine_fn qcow2_free_l2_entry_pass(BlockDriverState *bs, uint64_t l2e,
                                           bool pass)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t host, len;

    switch (qcow2_cluster_type(s, l2e)) {
    case QCOW2_CLUSTER_COMPRESSED:
        qcow2_parse_compressed(s, l2e, &host, &len);
        qcow2_free_clusters(bs, host & ~511ULL, len, pass);
        break;
    case QCOW2_CLUSTER_NORMAL:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        if (l2e & L2E_OFFSET_MASK & (s->cluster_size - 1)) {
            /* the reference leaves it (a leak) and only complains */
            qcow2_signal_corruption_nonfatal(bs, "Cannot free unaligned "
                "cluster %#" PRIx64, (uint64_t)(l2e & L2E_OFFSET_MASK));
            return;
        }
        if (s->data_file != bs->file) {
            /* external data: no refcounts; pass the discard on */
            if (pass && s->data_file) {
                bdrv_co_pdiscard(s->data_file, l2e & L2E_OFFSET_MASK,
                                 s->cluster_size);
            }
            return;
        }
        qcow2_free_clusters(bs, l2e & L2E_OFFSET_MASK, s->cluster_size,
                            pass);
        break;
    default:
        break;
    }
}

/* ---- compressed clusters: byte-granular allocation, packed ---- */

int64_t coroutine_fn qcow2_alloc_bytes(BlockDriverState *bs, int size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t offset = s->free_byte_offset, rc, free_in;
    int ret;

    bdrv_debug_event(bs->file, BLKDBG_CLUSTER_ALLOC_BYTES);

    if (offset) {
        ret = qcow2_get_refcount(bs, offset >> s->cluster_bits, &rc);
        if (ret < 0) {
            return ret;
        }
        if (rc >= (uint64_t)s->refcount_max) {
            offset = 0;
        }
    }
    free_in = offset ? s->cluster_size - qcow2_offset_into_cluster(s, offset) : 0;
    do {
        if (!offset || free_in < (uint64_t)size) {
            int64_t c = find_free(bs, 1);
            uint64_t nc;
            if (c < 0) {
                return c;
            }
            nc = (uint64_t)c << s->cluster_bits;
            if (c == 0) {
                qcow2_signal_corruption(bs, "Preventing invalid allocation "
                                        "of compressed cluster at offset 0");
                return -EIO;
            }
            s->free_cluster_index = c + 1;
            if (!offset || ROUND_UP(offset, s->cluster_size) != nc) {
                offset = nc;
                free_in = s->cluster_size;
            } else {
                free_in += s->cluster_size;
            }
        }
        ret = qcow2_update_refcount(bs, offset, size, 1);
    } while (ret == -EAGAIN);
    if (ret < 0) {
        return ret;
    }
    /* the refcount reaches the disk before the L2 entry, lazy refcounts
     * or not: compressed writes never set the dirty bit (the reference) */
    qcow2_cache_set_dependency(bs, &s->l2_cache, &s->refcount_cache);
    s->free_byte_offset = offset + size;
    if (!qcow2_offset_into_cluster(s, s->free_byte_offset)) {
        s->free_byte_offset = 0;
    }
    return offset;
}
