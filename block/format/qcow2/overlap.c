#include "config.h"
/*
 * qcow2 metadata overlap checks (the `overlap-check` option): before a
 * metadata or guest write, which kind of metadata the range would hit.
 * The header, the tables named by the header and the active L1/L2 and
 * refcount tables are compared as the reference compares them.  The
 * snapshots' L1 tables are looked up in a sorted index: a hostile or
 * merely old image may list 65536 snapshots, and check -r writes
 * thousands of refcount blocks, each write checked against all of them.
 */
#include "qcow2.h"

/* The snapshots' L1 tables as ranges sorted by start; max_end[i] is the
 * largest end among the first i + 1.  Ranges whose end wraps around
 * 2^64 (hostile offsets) are kept aside and compared one by one. */
struct Qcow2RangeIndex {
    guint n;
    uint64_t *start, *max_end;
    GArray *wrapped;              /* Qcow2InactiveL1 */
};

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b,
                           uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

void qcow2_inactive_l1_changed(BDRVQcow2State *s)
{
    Qcow2RangeIndex *x = s->inactive_l1_index;

    if (x) {
        g_free(x->start);
        g_free(x->max_end);
        g_array_unref(x->wrapped);
        g_free(x);
        s->inactive_l1_index = NULL;
    }
}

static int cmp_range_start(const void *a, const void *b)
{
    const Qcow2InactiveL1 *x = a, *y = b;

    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Build the index of s->inactive_l1 (empty tables left out: they claim
 * nothing). */
static Qcow2RangeIndex *index_inactive_l1(BDRVQcow2State *s)
{
    Qcow2RangeIndex *x = g_new0(Qcow2RangeIndex, 1);
    guint len = s->inactive_l1 ? s->inactive_l1->len : 0;
    g_autofree Qcow2InactiveL1 *r = g_new(Qcow2InactiveL1, MAX(len, 1));
    uint64_t max = 0;

    x->wrapped = g_array_new(false, false, sizeof(Qcow2InactiveL1));
    for (guint i = 0; i < len; i++) {
        Qcow2InactiveL1 e = g_array_index(s->inactive_l1, Qcow2InactiveL1, i);

        if (!e.size) {
            continue;
        }
        if (e.offset + (uint64_t)e.size * 8 < e.offset) {
            g_array_append_val(x->wrapped, e);
        } else {
            r[x->n++] = e;
        }
    }
    qsort(r, x->n, sizeof(*r), cmp_range_start);
    x->start = g_new(uint64_t, MAX(x->n, 1));
    x->max_end = g_new(uint64_t, MAX(x->n, 1));
    for (guint i = 0; i < x->n; i++) {
        max = MAX(max, r[i].offset + (uint64_t)r[i].size * 8);
        x->start[i] = r[i].offset;
        x->max_end[i] = max;
    }
    return x;
}

/* Does [offset, +size) meet a snapshot's L1 table?  The query must not
 * wrap (the caller compares those one by one). */
static bool overlap_inactive_l1(BDRVQcow2State *s, uint64_t offset,
                                uint64_t size)
{
    Qcow2RangeIndex *x = s->inactive_l1_index;
    guint lo = 0, hi;

    if (!x) {
        x = s->inactive_l1_index = index_inactive_l1(s);
    }
    for (guint i = 0; i < x->wrapped->len; i++) {
        Qcow2InactiveL1 *e = &g_array_index(x->wrapped, Qcow2InactiveL1, i);

        if (ranges_overlap(offset, size, e->offset, (uint64_t)e->size * 8)) {
            return true;
        }
    }
    /* the ranges starting before the query's end: one of them reaches
     * into it iff the furthest end among them lies past its start */
    hi = x->n;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;

        if (x->start[mid] < offset + size) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo > 0 && x->max_end[lo - 1] > offset;
}

/* The same, entry by entry: a query whose own end wraps (hostile
 * offsets) keeps the reference's arithmetic. */
static bool overlap_inactive_l1_scan(BDRVQcow2State *s, uint64_t offset,
                                     uint64_t size)
{
    for (guint i = 0; s->inactive_l1 && i < s->inactive_l1->len; i++) {
        Qcow2InactiveL1 *l1 = &g_array_index(s->inactive_l1,
                                             Qcow2InactiveL1, i);
        if (l1->size && ranges_overlap(offset, size, l1->offset,
                                       (uint64_t)l1->size * 8)) {
            return true;
        }
    }
    return false;
}

/* Tables found through the L1 table, the reftable, the snapshots. */
static int overlap_indirect(BDRVQcow2State *s, int chk, uint64_t offset,
                            uint64_t size)
{
    uint32_t l1_end = MIN(s->l1_used, s->l1_size);
    uint32_t rt_end = MIN(s->reftable_used, s->refcount_table_size);

    if (s->closing) {
        chk &= ~QCOW2_OL_ACTIVE_L2;
    }
    for (uint32_t i = 0; (chk & QCOW2_OL_ACTIVE_L2) && i < l1_end; i++) {
        uint64_t l2 = s->l1_table[i] & L1E_OFFSET_MASK;
        if (l2 && ranges_overlap(offset, size, l2, s->cluster_size)) {
            return QCOW2_OL_ACTIVE_L2;
        }
    }
    for (uint32_t i = 0; (chk & QCOW2_OL_REFCOUNT_BLOCK) &&
                         i < rt_end; i++) {
        uint64_t rb = s->refcount_table[i] & REFT_OFFSET_MASK;
        if (rb && ranges_overlap(offset, size, rb, s->cluster_size)) {
            return QCOW2_OL_REFCOUNT_BLOCK;
        }
    }
    if ((chk & QCOW2_OL_INACTIVE_L1) &&
        (offset + size < offset ? overlap_inactive_l1_scan(s, offset, size)
                                : overlap_inactive_l1(s, offset, size))) {
        return QCOW2_OL_INACTIVE_L1;
    }
    return 0;
}

/* The snapshots' L2 tables, found through their L1 tables on disk (only
 * with overlap-check.inactive-l2 or "all", as for the reference); a
 * snapshot whose L1 table is out of bounds fails the check (-errno). */
static int coroutine_fn overlap_inactive_l2(BlockDriverState *bs,
                                            uint64_t offset, uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;

    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const Qcow2Snapshot *sn = &s->snapshots[i];
        uint64_t bytes = (uint64_t)sn->l1_size * 8;
        g_autofree uint8_t *l1 = NULL;

        if (sn->l1_size > QCOW2_MAX_L1_SIZE / 8) {
            return -EFBIG;
        }
        if (qcow2_offset_into_cluster(s, sn->l1_offset) ||
            sn->l1_offset > INT64_MAX - bytes) {
            return -EINVAL;
        }
        l1 = g_try_malloc(MAX(bytes, 1));
        if (!l1 || qcow2_read_table(bs, sn->l1_offset, bytes, l1) < 0) {
            return l1 ? -EIO : -ENOMEM;
        }
        for (uint64_t j = 0; j < sn->l1_size; j++) {
            uint64_t l2 = q_ld64(l1 + j * 8) & L1E_OFFSET_MASK;
            if (l2 && ranges_overlap(offset, size, l2, s->cluster_size)) {
                return QCOW2_OL_INACTIVE_L2;
            }
        }
    }
    return 0;
}

/* Which kind of metadata (QCOW2_OL_*) [offset, +size) overlaps; 0: none,
 * -errno when the check itself failed. */
int coroutine_fn qcow2_check_metadata_overlap(BlockDriverState *bs, int ign,
                                              uint64_t offset, uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    int chk = s->overlap_check & ~ign;
    int ret;

    if (!size) {
        return 0;
    }
    if ((chk & QCOW2_OL_MAIN_HEADER) && offset < s->cluster_size) {
        return QCOW2_OL_MAIN_HEADER;
    }
    /* whole clusters are compared, as by the reference: a table at an
     * unaligned offset still claims the clusters it touches */
    size = ROUND_UP(qcow2_offset_into_cluster(s, offset) + size,
                    s->cluster_size);
    offset -= qcow2_offset_into_cluster(s, offset);
    if ((chk & QCOW2_OL_ACTIVE_L1) && s->l1_size &&
        ranges_overlap(offset, size, s->h.l1_table_offset,
                       (uint64_t)s->l1_size * 8)) {
        return QCOW2_OL_ACTIVE_L1;
    }
    if ((chk & QCOW2_OL_REFCOUNT_TABLE) &&
        ranges_overlap(offset, size, s->h.refcount_table_offset,
                       (uint64_t)s->h.refcount_table_clusters * s->cluster_size)) {
        return QCOW2_OL_REFCOUNT_TABLE;
    }
    if ((chk & QCOW2_OL_SNAPSHOT_TABLE) && s->snapshots_size &&
        ranges_overlap(offset, size, s->h.snapshots_offset,
                       s->snapshots_size)) {
        return QCOW2_OL_SNAPSHOT_TABLE;
    }
    if ((chk & QCOW2_OL_BITMAP_DIRECTORY) && s->bitmap_dir_size &&
        ranges_overlap(offset, size, s->bitmap_dir_offset,
                       s->bitmap_dir_size)) {
        return QCOW2_OL_BITMAP_DIRECTORY;
    }
    ret = overlap_indirect(s, chk, offset, size);
    if (ret == 0 && (chk & QCOW2_OL_INACTIVE_L2) && size) {
        ret = overlap_inactive_l2(bs, offset, size);
    }
    return ret;
}

static const char *overlap_name(int kind)
{
    switch (kind) {
    case QCOW2_OL_MAIN_HEADER: return "qcow2_header";
    case QCOW2_OL_ACTIVE_L1: return "active L1 table";
    case QCOW2_OL_ACTIVE_L2: return "active L2 table";
    case QCOW2_OL_REFCOUNT_TABLE: return "refcount table";
    case QCOW2_OL_REFCOUNT_BLOCK: return "refcount block";
    case QCOW2_OL_SNAPSHOT_TABLE: return "snapshot table";
    case QCOW2_OL_INACTIVE_L1: return "inactive L1 table";
    case QCOW2_OL_INACTIVE_L2: return "inactive L2 table";
    case QCOW2_OL_BITMAP_DIRECTORY: return "bitmap directory";
    default: return "metadata";
    }
}

/* Refuse (and mark the image corrupt) a write that would hit metadata. */
int coroutine_fn qcow2_pre_write_overlap_check(BlockDriverState *bs, int ign,
                                               uint64_t offset, uint64_t size)
{
    int kind = qcow2_check_metadata_overlap(bs, ign, offset, size);

    if (kind <= 0) {
        return kind;
    }
    qcow2_signal_corruption(bs, "Preventing invalid write on metadata "
                            "(overlaps with %s)", overlap_name(kind));
    return -EIO;
}
