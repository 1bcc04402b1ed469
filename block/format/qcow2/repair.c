#include "config.h"
/*
 * qcow2 repair (strata-img check -r leaks|all, and the repair of a dirty
 * lazy-refcounts image when it is opened read-write).  check.c walks the
 * metadata and calls in here for each inconsistency it may fix; the
 * messages, counters and order are the reference's.
 *
 * Sections: single fixes (a refcount, an L2 entry, a refcount block past
 * the end of the file, OFLAG_COPIED); the rebuilt refcount structure
 * (refcount blocks written from the check's counts, then a table placed
 * where it fits, repeated until the table stops growing); the dirty and
 * corrupt bits cleared.
 */
#include <stdio.h>
#include "check.h"

#define L2_BITMAP_ALL_ZEROES 0xffffffff00000000ULL

/* ---- single fixes ---- */

bool coroutine_fn qcow2_repair_refcount(CheckState *c, uint64_t k,
                                        uint64_t rc, uint64_t count)
{
    BDRVQcow2State *s = c->s;
    uint64_t off = k << s->cluster_bits;
    int ret;

    /* a 64-bit refcount may be more than INT64_MAX too high: lowered in
     * steps (the counts themselves stay below 2^32) */
    while (rc > count) {
        uint64_t step = MIN(rc - count, (uint64_t)INT64_MAX);

        ret = qcow2_repair_update_refcount(c->bs, off, s->cluster_size,
                                           -(int64_t)step);
        if (ret < 0) {
            return false;
        }
        rc -= step;
    }
    while (rc < count) {
        ret = qcow2_repair_update_refcount(c->bs, off, s->cluster_size,
                                           (int64_t)(count - rc));
        if (ret < 0 && ret != -EAGAIN) {
            return false;
        }
        rc = ret < 0 ? rc : count;
    }
    if (count == 0) {
        /* freed: as any freed cluster, its space goes back to the file */
        qcow2_cache_discard(&s->l2_cache, off);
        qcow2_cache_discard(&s->refcount_cache, off);
        bdrv_co_pdiscard(c->bs->file, off, s->cluster_size);
    }
    return true;
}

/* The entry (and, with extended L2, its bitmap) made a zero cluster in
 * the table buffer: allocated subclusters read as zeroes afterwards. */
static void zero_entry(BDRVQcow2State *s, uint8_t *l2, int i)
{
    if (s->extended_l2) {
        uint64_t bm = qcow2_l2_bitmap(s, l2, i);

        bm |= bm << 32;
        qcow2_set_l2_bitmap(s, l2, i, bm & L2_BITMAP_ALL_ZEROES);
        qcow2_set_l2_entry(s, l2, i, 0);
    } else {
        qcow2_set_l2_entry(s, l2, i, QCOW_OFLAG_ZERO);
    }
}

int coroutine_fn qcow2_repair_l2_zero(CheckState *c, int i)
{
    BDRVQcow2State *s = c->s;
    uint64_t esz = s->l2_entry_size;
    uint64_t at = c->l2_offset + (uint64_t)i * esz;
    int ign = c->l2_active ? QCOW2_OL_ACTIVE_L2 : QCOW2_OL_INACTIVE_L2;
    int ret;

    zero_entry(s, c->l2buf, i);
    ret = qcow2_pre_write_overlap_check(c->bs, ign, at, esz);
    if (ret < 0) {
        fprintf(stderr, "ERROR: Overlap check failed\n");
        c->res->check_errors++;
        return -EIO;
    }
    ret = q_pwrite(c->bs->file, at, esz, c->l2buf + (size_t)i * esz);
    if (ret == 0) {
        ret = bdrv_co_flush(c->bs->file->bs);
    }
    if (ret < 0) {
        fprintf(stderr, "ERROR: Failed to overwrite L2 table entry: %s\n",
                strerror(-ret));
        c->res->check_errors++;
        return 0;
    }
    qcow2_cache_discard(&s->l2_cache, c->l2_offset);
    c->res->corruptions--;
    c->res->corruptions_fixed++;
    return 0;
}

/* Grow the file to end past @off's cluster; the new length. */
static int64_t coroutine_fn grow_file_over(CheckState *c, uint64_t off)
{
    Error *err = NULL;
    int ret;

    if (off > INT64_MAX - c->s->cluster_size) {
        return -EINVAL;
    }
    ret = bdrv_co_truncate(c->bs->file, off + c->s->cluster_size, false,
                           PREALLOC_MODE_OFF, 0, &err);
    if (ret < 0) {
        error_report_err(err);
        return ret;
    }
    return bdrv_co_getlength(c->bs->file->bs);
}

int coroutine_fn qcow2_repair_refblock_outside(CheckState *c, uint64_t i,
                                               uint64_t off)
{
    int64_t len = grow_file_over(c, off);
    int ret = len < 0 ? (int)len : qcow2_check_file_grew(c, len);

    if (ret == -ENOMEM) {
        return ret;
    }
    if (ret == 0 && (off >> c->s->cluster_bits) >= c->nb_clusters) {
        ret = -EINVAL;
    }
    if (ret < 0) {
        fprintf(stderr, "ERROR could not resize image: %s\n",
                strerror(-ret));
    }
    return ret;
}

int coroutine_fn qcow2_repair_copied_l1(CheckState *c, uint32_t i,
                                        uint64_t rc)
{
    BDRVQcow2State *s = c->s;

    if (rc == 1) {
        s->l1_table[i] |= QCOW_OFLAG_COPIED;
    } else {
        s->l1_table[i] &= ~QCOW_OFLAG_COPIED;
    }
    return qcow2_write_l1_entry(c->bs, i);
}

/* Entry @j of the table in c->l2buf: reported, and fixed in the buffer;
 * true when it changed. */
static bool coroutine_fn fix_copied_entry(CheckState *c, int j)
{
    BDRVQcow2State *s = c->s;
    uint64_t e = qcow2_l2_entry(s, c->l2buf, j), rc = 1;
    Qcow2ClusterType t = qcow2_check_entry_type(c, e);

    if (t != QCOW2_CLUSTER_NORMAL && t != QCOW2_CLUSTER_ZERO_ALLOC) {
        return false;
    }
    if (!c->data_file &&
        qcow2_check_image_refcount(c, (e & L2E_OFFSET_MASK) >>
                                   s->cluster_bits, &rc) < 0) {
        return false;
    }
    if (qcow2_copied_ok(e, rc)) {
        return false;
    }
    c->res->corruptions++;
    fprintf(stderr, "Repairing OFLAG_COPIED data cluster: l2_entry=%" PRIx64
            " refcount=%" PRIu64 "\n", e, rc);
    qcow2_set_l2_entry(s, c->l2buf, j, rc == 1 ? e | QCOW_OFLAG_COPIED
                                               : e & ~QCOW_OFLAG_COPIED);
    return true;
}

/* Write back an active L2 table whose flags were fixed. */
static int coroutine_fn write_fixed_l2(CheckState *c, uint64_t l2_offset)
{
    BDRVQcow2State *s = c->s;
    int ret = qcow2_pre_write_overlap_check(c->bs, QCOW2_OL_ACTIVE_L2,
                                            l2_offset, s->cluster_size);

    if (ret < 0) {
        fprintf(stderr, "ERROR: Could not write L2 table; metadata "
                "overlap check failed: %s\n", strerror(-ret));
        return ret;
    }
    ret = q_pwrite(c->bs->file, l2_offset, s->cluster_size, c->l2buf);
    if (ret < 0) {
        fprintf(stderr, "ERROR: Could not write L2 table: %s\n",
                strerror(-ret));
        return ret;
    }
    qcow2_cache_discard(&s->l2_cache, l2_offset);
    return 0;
}

int coroutine_fn qcow2_repair_copied_l2(CheckState *c, uint64_t l2_offset)
{
    BDRVQcow2State *s = c->s;
    int dirty = 0, ret;

    c->l2buf = c->win;
    ret = qcow2_read_table(c->bs, l2_offset, s->cluster_size, c->l2buf);
    if (ret < 0) {
        fprintf(stderr, "ERROR: Could not read L2 table: %s\n",
                strerror(-ret));
        c->res->check_errors++;
        return ret;
    }
    for (int j = 0; j < s->l2_size; j++) {
        dirty += fix_copied_entry(c, j);
    }
    if (!dirty) {
        return 0;
    }
    ret = write_fixed_l2(c, l2_offset);
    if (ret < 0) {
        c->res->check_errors++;
        return ret;
    }
    c->res->corruptions -= dirty;
    c->res->corruptions_fixed += dirty;
    return 0;
}

/* ---- the rebuilt refcount structure ---- */

/* The new refcount table, in memory until it is placed. */
typedef struct NewTable {
    uint64_t *entries;
    uint64_t size;
} NewTable;

/* @n contiguous clusters with count 0 from *@first_free on (past the
 * counted clusters if need be), counted 1 now; *@first_free moves to the
 * first free cluster seen.  Returns the offset. */
static int64_t alloc_counted(CheckState *c, uint64_t n, uint64_t *first_free)
{
    uint64_t k = *first_free, run = 0;
    bool seen = false;

    for (; k < c->nb_clusters && run < n; k++) {
        if (qcow2_check_count(c, k)) {
            run = 0;
            continue;
        }
        run++;
        if (!seen) {
            *first_free = k;
            seen = true;
        }
    }
    k -= run;
    if (k + n > (uint64_t)INT64_MAX >> c->s->cluster_bits) {
        return -EFBIG;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (qcow2_check_count_set(c, k + i, 1) < 0) {
            return -ENOMEM;
        }
    }
    return (int64_t)(k << c->s->cluster_bits);
}

/* Table entries for index @ti: whole clusters of them. */
static int table_cover(CheckState *c, NewTable *t, uint64_t ti)
{
    uint64_t per = c->s->cluster_size / 8;
    uint64_t size = (ti / per + 1) * per;

    if (size * 8 > QCOW2_MAX_REFTABLE_SIZE) {
        return -EFBIG;
    }
    t->entries = g_renew(uint64_t, t->entries, size);
    memset(t->entries + t->size, 0, (size - t->size) * 8);
    t->size = size;
    return 1;
}

/* Write refcount block @ti from the counts, at @off. */
static int coroutine_fn write_block(CheckState *c, uint64_t ti, uint64_t off)
{
    BDRVQcow2State *s = c->s;
    uint64_t per = 1ULL << s->refblock_bits, first = ti << s->refblock_bits;
    g_autofree uint8_t *buf = g_malloc0(s->cluster_size);
    int ret = qcow2_pre_write_overlap_check(c->bs, 0, off, s->cluster_size);

    if (ret < 0) {
        return ret;
    }
    for (uint64_t i = 0; i < per; i++) {
        uint32_t v = qcow2_check_count(c, first + i);

        if (v) {
            qcow2_set_refcount_entry(s, buf, i, v);
        }
    }
    return q_pwrite(c->bs->file, off, s->cluster_size, buf);
}

/* The block for table index @ti: the one placed already, or a new one
 * (not inside a block written before: its counts are on disk).  *@end
 * grows when the new block lies past it; 1 when the table grew. */
static int64_t place_block(CheckState *c, NewTable *t, uint64_t ti,
                           uint64_t *first_free, uint64_t *end, int *grown)
{
    uint64_t start = ti << c->s->refblock_bits;
    int64_t off;

    if (ti < t->size && t->entries[ti]) {
        return t->entries[ti];
    }
    *first_free = MAX(*first_free, start);
    off = alloc_counted(c, 1, first_free);
    if (off < 0) {
        return off;
    }
    *end = MAX(*end, ((uint64_t)off >> c->s->cluster_bits) + 1);
    if (ti >= t->size) {
        int ret = table_cover(c, t, ti);
        if (ret < 0) {
            return ret;
        }
        *grown = 1;
    }
    t->entries[ti] = off;
    return off;
}

/* Refcount blocks for every counted cluster of [first, end), written
 * from the counts; 1 when the table had to grow, 0, or -errno. */
static int coroutine_fn write_blocks(CheckState *c, NewTable *t,
                                     uint64_t first, uint64_t end)
{
    uint64_t first_free = 0;
    int grown = 0;

    for (uint64_t k = first; k < end; k++) {
        uint64_t ti;
        int64_t off;
        int ret;

        k = qcow2_check_skip_uncounted(c, k);
        if (k >= end || !qcow2_check_count(c, k)) {
            continue;
        }
        ti = k >> c->s->refblock_bits;
        off = place_block(c, t, ti, &first_free, &end, &grown);
        if (off < 0) {
            error_report("ERROR allocating refblock: %s", strerror(-off));
            return off;
        }
        ret = write_block(c, ti, off);
        if (ret < 0) {
            error_report("ERROR writing refblock: %s", strerror(-ret));
            return ret;
        }
        k = ((ti + 1) << c->s->refblock_bits) - 1;
    }
    return grown;
}

/* Place the table: each placement changes counts its blocks must hold,
 * which may need more blocks and a larger table, placed again. */
static int coroutine_fn place_table(CheckState *c, NewTable *t,
                                    int64_t *off, uint64_t *clusters)
{
    int ret;

    do {
        uint64_t first_free = 0, start;

        *clusters = DIV_ROUND_UP(t->size * 8, c->s->cluster_size);
        *off = alloc_counted(c, *clusters, &first_free);
        if (*off < 0) {
            error_report("ERROR allocating reftable: %s", strerror(-*off));
            return *off;
        }
        start = (uint64_t)*off >> c->s->cluster_bits;
        ret = write_blocks(c, t, start, start + *clusters);
    } while (ret > 0);
    return ret;
}

/* The table on disk and the header pointing at it (one write: offset
 * and cluster count are adjacent, header bytes 48..59). */
static int coroutine_fn write_table(CheckState *c, NewTable *t, int64_t off,
                                    uint64_t clusters)
{
    g_autofree uint8_t *buf = g_malloc0(clusters * c->s->cluster_size);
    uint8_t h[12];
    int ret = qcow2_pre_write_overlap_check(c->bs, 0, off,
                                            clusters * c->s->cluster_size);

    for (uint64_t i = 0; i < t->size; i++) {
        q_st64(buf + i * 8, t->entries[i]);
    }
    if (ret == 0) {
        ret = q_pwrite(c->bs->file, off, clusters * c->s->cluster_size, buf);
    }
    if (ret < 0) {
        error_report("ERROR writing reftable: %s", strerror(-ret));
        return ret;
    }
    q_st64(h, off);
    q_st32(h + 8, clusters);
    ret = q_pwrite(c->bs->file, 48, sizeof(h), h);
    if (ret == 0) {
        ret = bdrv_co_flush(c->bs->file->bs);
    }
    if (ret < 0) {
        error_report("ERROR setting reftable: %s", strerror(-ret));
    }
    return ret;
}

/* The node uses the new table from now on. */
static void install_table(CheckState *c, NewTable *t, int64_t off,
                          uint64_t clusters)
{
    BDRVQcow2State *s = c->s;

    g_free(s->refcount_table);
    s->refcount_table = g_new0(uint64_t, t->size + 1);
    memcpy(s->refcount_table, t->entries, t->size * 8);
    s->refcount_table_size = t->size;
    s->h.refcount_table_offset = off;
    s->h.refcount_table_clusters = clusters;
    s->reftable_used = 0;
    for (uint64_t i = 0; i < t->size; i++) {
        if (t->entries[i]) {
            qcow2_note_reftable(s, i);
        }
    }
    s->free_cluster_index = 0;
}

/* The old refcount blocks are forgotten unwritten: the new structure is
 * written from the counts. */
static void drop_refcount_cache(BDRVQcow2State *s)
{
    for (int i = 0; i < s->refcount_cache.size; i++) {
        uint64_t off = s->refcount_cache.entries[i].offset;

        if (off) {
            qcow2_cache_discard(&s->refcount_cache, off);
        }
    }
}

/* New refcount blocks and table from the counts; the old ones are left
 * in place, counted by nothing: leaks the caller frees. */
static int coroutine_fn rebuild_structure(CheckState *c)
{
    NewTable t = { NULL, 0 };
    int64_t off = -1;
    uint64_t clusters = 0;
    int ret;

    drop_refcount_cache(c->s);
    ret = write_blocks(c, &t, 0, c->nb_clusters);
    if (ret >= 0) {
        ret = place_table(c, &t, &off, &clusters);
    }
    if (ret < 0) {
        c->res->check_errors++;
    } else {
        ret = write_table(c, &t, off, clusters);
    }
    if (ret == 0) {
        install_table(c, &t, off, clusters);
    }
    g_free(t.entries);
    return ret;
}

/* Count again under the new structure; with -r leaks|all free what
 * the old one leaves behind.  Leaks that remain are fresh ones. */
static int coroutine_fn recount(CheckState *c, uint64_t *highest,
                                int *fresh_leaks)
{
    int fix = c->fix, ret;
    int64_t len;
    BlockCheckResult saved;

    c->rebuild = false;
    c->fix = 0;
    qcow2_check_counts_clear(c);
    qcow2_check_forget_refblocks(c);
    len = bdrv_co_getlength(c->bs->file->bs);
    ret = len < 0 ? (int)len : qcow2_check_file_grew(c, len);
    if (ret == 0) {
        ret = qcow2_check_count_references(c);
    }
    c->fix = fix;
    if (ret < 0 || !(fix & BDRV_FIX_LEAKS)) {
        return ret;
    }
    saved = *c->res;
    *c->res = (BlockCheckResult) { 0 };
    qcow2_check_compare(c, BDRV_FIX_LEAKS, highest);
    if (c->rebuild) {
        fprintf(stderr, "ERROR rebuilt refcount structure is still "
                "broken\n");
    }
    *fresh_leaks = c->res->leaks;
    *c->res = saved;
    return 0;
}

/* The snapshot table's own corruptions (fixed later by the table's
 * rewrite) stay out of what the rebuild counts as fixed: the reference
 * keeps them in a result of their own. */
int coroutine_fn qcow2_repair_rebuild(CheckState *c, uint64_t *highest)
{
    BlockCheckResult *res = c->res, old = *res;
    int fresh_leaks = 0;
    int ret;

    old.corruptions -= c->sn_corruptions;
    fprintf(stderr, "Rebuilding refcount structure\n");
    ret = rebuild_structure(c);
    if (ret < 0) {
        return ret;
    }
    res->corruptions = 0;
    res->leaks = 0;
    ret = recount(c, highest, &fresh_leaks);
    if (ret < 0) {
        return ret;
    }
    if (res->corruptions < old.corruptions) {
        res->corruptions_fixed += old.corruptions - res->corruptions;
    }
    if (res->leaks < old.leaks) {
        res->leaks_fixed += old.leaks - res->leaks;
    }
    res->leaks += fresh_leaks;
    res->corruptions += c->sn_corruptions;
    return 0;
}

/* ---- the snapshot table ---- */

int coroutine_fn qcow2_repair_snapshot_count(CheckState *c)
{
    BDRVQcow2State *s = c->s;
    uint8_t b[4];
    int ret;

    s->h.nb_snapshots = c->snapshots->len;
    q_st32(b, s->h.nb_snapshots);
    ret = q_pwrite(c->bs->file, 60, sizeof(b), b);
    if (ret == 0) {
        ret = bdrv_co_flush(c->bs->file->bs);
    }
    if (ret < 0) {
        c->res->check_errors++;
        fprintf(stderr, "ERROR failed to update the snapshot count in the "
                "image header: %s\n", strerror(-ret));
        return ret;
    }
    c->res->corruptions_fixed += c->sn_reduced;
    return 0;
}

/* Bytes the rewritten table takes: every entry with at least the known
 * extra data, 8-byte aligned. */
static int64_t snapshot_table_size(CheckState *c)
{
    uint64_t size = 0;

    for (guint i = 0; i < c->snapshots->len; i++) {
        Snapshot *sn = &g_array_index(c->snapshots, Snapshot, i);

        size = ROUND_UP(size, 8) + SN_HEADER_LEN +
               MAX(SN_KNOWN_EXTRA, sn->extra) + strlen(sn->id) +
               strlen(sn->name);
        if (size > SN_MAX_TABLE) {
            return -EFBIG;
        }
    }
    return size;
}

/* One entry into @buf (its fixed part and known extra data), returning
 * its length without names and unknown extra data. */
static size_t snapshot_entry_head(const Snapshot *sn, uint8_t *buf)
{
    memset(buf, 0, SN_HEADER_LEN + SN_KNOWN_EXTRA);
    q_st64(buf, sn->l1_offset);
    q_st32(buf + 8, sn->l1_size);
    q_st16(buf + 12, strlen(sn->id));
    q_st16(buf + 14, strlen(sn->name));
    q_st32(buf + 16, sn->date_sec);
    q_st32(buf + 20, sn->date_nsec);
    q_st64(buf + 24, sn->vm_clock);
    /* a VM state too large for 32 bits: older readers see none */
    q_st32(buf + 32, sn->vm_state_size <= UINT32_MAX ? sn->vm_state_size : 0);
    q_st32(buf + 36, MAX(SN_KNOWN_EXTRA, sn->extra));
    q_st64(buf + 40, sn->vm_state_size);
    q_st64(buf + 48, sn->disk_size);
    q_st64(buf + 56, sn->icount);
    return SN_HEADER_LEN + SN_KNOWN_EXTRA;
}

/* The entries laid out in @buf (@size bytes, from snapshot_table_size()),
 * padding zeroed. */
static void snapshot_table_fill(CheckState *c, uint8_t *buf, size_t size)
{
    size_t off = 0;

    for (guint i = 0; i < c->snapshots->len; i++) {
        Snapshot *sn = &g_array_index(c->snapshots, Snapshot, i);
        size_t more = sn->extra > SN_KNOWN_EXTRA ?
                      sn->extra - SN_KNOWN_EXTRA : 0;

        off = ROUND_UP(off, 8);
        off += snapshot_entry_head(sn, buf + off);
        if (more) {
            memcpy(buf + off, sn->unknown_extra, more);
            off += more;
        }
        memcpy(buf + off, sn->id, strlen(sn->id));
        off += strlen(sn->id);
        memcpy(buf + off, sn->name, strlen(sn->name));
        off += strlen(sn->name);
    }
    g_assert(off == size);
}

/* The whole table in one write: a table of tens of thousands of entries
 * written field by field would be a request per field. */
static int coroutine_fn write_snapshot_entries(CheckState *c, uint64_t off,
                                               size_t size)
{
    g_autofree uint8_t *buf = g_try_malloc0(size);

    if (size && !buf) {
        return -ENOMEM;
    }
    snapshot_table_fill(c, buf, size);
    return size ? q_pwrite(c->bs->file, off, size, buf) : 0;
}

/* Everything written so far on disk (the node's own flush would take
 * the lock the check holds). */
static int coroutine_fn flush_locked(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = qcow2_cache_write(bs, &s->l2_cache);

    if (ret == 0) {
        ret = qcow2_cache_write(bs, &s->refcount_cache);
    }
    return ret < 0 ? ret : bdrv_co_flush(bs->file->bs);
}

/* The header's snapshot count and table offset (adjacent: bytes 60-71). */
static int coroutine_fn write_snapshot_pointer(CheckState *c, uint64_t off)
{
    uint8_t b[12];
    int ret;

    q_st32(b, c->snapshots->len);
    q_st64(b + 4, off);
    ret = q_pwrite(c->bs->file, 60, sizeof(b), b);
    return ret < 0 ? ret : bdrv_co_flush(c->bs->file->bs);
}

int coroutine_fn qcow2_repair_snapshot_table(CheckState *c)
{
    BDRVQcow2State *s = c->s;
    int64_t size = snapshot_table_size(c), off;
    int ret;

    if (size < 0) {
        return size;
    }
    off = qcow2_alloc_clusters(c->bs, size);
    if (off < 0) {
        return off;
    }
    ret = flush_locked(c->bs);
    if (ret == 0) {
        ret = qcow2_pre_write_overlap_check(c->bs, 0, off, size);
    }
    if (ret == 0) {
        ret = write_snapshot_entries(c, off, size);
    }
    if (ret == 0) {
        ret = flush_locked(c->bs);
    }
    if (ret == 0) {
        ret = write_snapshot_pointer(c, off);
    }
    if (ret < 0) {
        qcow2_free_clusters(c->bs, off, size, true);
        return ret;
    }
    qcow2_free_clusters(c->bs, c->sn_table_offset, c->snapshots_size,
                        s->discard_passthrough_snapshot);
    s->h.nb_snapshots = c->snapshots->len;
    s->h.snapshots_offset = off;
    /* the overlap checks follow the new table */
    g_clear_pointer(&s->inactive_l1, g_array_unref);
    qcow2_inactive_l1_changed(s);
    qcow2_read_snapshot_extents(c->bs);
    return 0;
}

/* ---- dirty and corrupt bits ---- */

int coroutine_fn qcow2_repair_mark_consistent(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t bits = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT;
    int ret;

    if (!(s->h.incompatible_features & bits)) {
        return 0;
    }
    ret = qcow2_cache_write(bs, &s->l2_cache);
    if (ret == 0) {
        ret = qcow2_cache_write(bs, &s->refcount_cache);
    }
    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    if (ret == 0) {
        ret = qcow2_write_incompat_header(bs,
                                          s->h.incompatible_features & ~bits);
    }
    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    if (ret == 0) {
        s->dirty_set = false;
        s->corrupt_reported = false;
    }
    return ret;
}
