#include "config.h"
/*
 * qcow2 internal snapshots (qcow2.txt "Snapshot table") and the VM state.
 *
 *   reading     the table, parsed at open (hostile: bounded sizes, the
 *               reference's messages); check-mode opens only keep what
 *               the overlap checks need
 *   writing     a new table in fresh clusters, then the header's count
 *               and offset in one 12-byte write, then the old table freed
 *   refcounts   every cluster an L1 table reaches gains or loses one
 *               reference, and OFLAG_COPIED follows (refcount == 1)
 *   operations  create, goto (apply), delete, list, load_tmp (convert
 *               -l), VM state read/write past the guest disk
 *
 * Crash safety: each step makes the image valid on its own, extra
 * references (leaks) being the only trace of an interrupted operation
 * (the caches are flushed before the next step depends on them).
 */
#include <stdio.h>
#include <stdlib.h>
#include "qcow2.h"

#define SN_HEADER_SIZE 40
#define SN_EXTRA_KNOWN 24           /* vm_state_size_large, disk_size, icount */
#define SN_MAX_EXTRA 1024
#define SN_MAX_TABLE (64 * MiB)

/* ---- reading the table ---- */

static void snapshot_clear(Qcow2Snapshot *sn)
{
    g_free(sn->id);
    g_free(sn->name);
    g_free(sn->unknown_extra);
    memset(sn, 0, sizeof(*sn));
}

void qcow2_free_snapshots(BDRVQcow2State *s)
{
    for (uint32_t i = 0; s->snapshots && i < s->nb_snapshots; i++) {
        snapshot_clear(&s->snapshots[i]);
    }
    g_clear_pointer(&s->snapshots, g_free);
    s->nb_snapshots = 0;
}

/* The fixed part and known extra data of one entry into @sn. */
static void sn_parse_fixed(BDRVQcow2State *s, const uint8_t *h,
                           const uint8_t *ex, Qcow2Snapshot *sn)
{
    sn->l1_offset = q_ld64(h);
    sn->l1_size = q_ld32(h + 8);
    sn->date_sec = q_ld32(h + 16);
    sn->date_nsec = q_ld32(h + 20);
    sn->vm_clock_nsec = q_ld64(h + 24);
    sn->vm_state_size = q_ld32(h + 32);
    sn->extra_size = q_ld32(h + 36);
    if (sn->extra_size >= 8) {
        sn->vm_state_size = q_ld64(ex);
    }
    sn->disk_size = sn->extra_size >= 16 ? q_ld64(ex + 8)
                                         : s->h.size / 512 * 512;
    sn->icount = sn->extra_size >= 24 ? q_ld64(ex + 16) : UINT64_MAX;
}

/* Read @len bytes at *off as a string (or raw bytes), moving *off. */
static int coroutine_fn sn_read_bytes(Qcow2Window *r, uint64_t *off,
                                      size_t len, char **out)
{
    char *p = g_malloc(len + 1);
    int ret = qcow2_window_read(r, *off, len, p);

    p[len] = 0;
    *off += len;
    *out = p;
    return ret;
}

/* Entry @i at *off (aligned to 8 already); moves *off past it. */
static int coroutine_fn sn_read_entry(Qcow2Window *r, uint32_t i, uint64_t *off,
                                      Qcow2Snapshot *sn, Error **errp)
{
    BDRVQcow2State *s = r->bs->opaque;
    uint8_t h[SN_HEADER_SIZE], ex[SN_EXTRA_KNOWN] = { 0 };
    int ret = qcow2_window_read(r, *off, sizeof(h), h);
    uint32_t known;

    if (ret < 0) {
        goto fail;
    }
    if (q_ld32(h + 36) > SN_MAX_EXTRA) {
        error_setg(errp, "Too much extra metadata in snapshot table "
                   "entry %" PRIu32, i);
        error_append_hint(errp, "You can force-remove this extra metadata "
                          "with qemu-img check -r all\n");
        return -EFBIG;
    }
    known = MIN(q_ld32(h + 36), SN_EXTRA_KNOWN);
    ret = qcow2_window_read(r, *off + sizeof(h), known, ex);
    if (ret < 0) {
        goto fail;
    }
    sn_parse_fixed(s, h, ex, sn);
    *off += sizeof(h) + known;
    if (sn->extra_size > SN_EXTRA_KNOWN) {
        ret = sn_read_bytes(r, off, sn->extra_size - SN_EXTRA_KNOWN,
                            (char **)&sn->unknown_extra);
    }
    if (ret == 0) {
        ret = sn_read_bytes(r, off, q_ld16(h + 12), &sn->id);
    }
    if (ret == 0) {
        ret = sn_read_bytes(r, off, q_ld16(h + 14), &sn->name);
    }
    if (ret == 0) {
        return 0;
    }
fail:
    error_setg_errno(errp, -ret, "Failed to read snapshot table");
    return ret;
}

/* The L1 tables of the snapshots, for the metadata overlap checks. */
static void sn_note_inactive_l1(BDRVQcow2State *s)
{
    if (!s->inactive_l1) {
        s->inactive_l1 = g_array_new(false, false, sizeof(Qcow2InactiveL1));
    }
    /* sized once: appending entry by entry reallocated a table of up
     * to 65536 entries a dozen times */
    qcow2_inactive_l1_changed(s);
    g_array_set_size(s->inactive_l1, s->nb_snapshots);
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        /* the reference's byte count is 32 bits wide: a hostile size
         * wraps there, and so does the range it guards */
        uint32_t bytes = s->snapshots[i].l1_size * 8u;

        g_array_index(s->inactive_l1, Qcow2InactiveL1, i) =
            (Qcow2InactiveL1) { s->snapshots[i].l1_offset, bytes / 8 };
    }
}

/* Parse the whole table as the reference does at open.  @tolerant (check
 * mode): a damaged table keeps the entries read so far, no error. */
int coroutine_fn qcow2_read_snapshots(BlockDriverState *bs, bool tolerant,
                                      Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    /* the table is read through a window: entries cost few requests */
    Qcow2Window r = { .bs = bs, .max = QCOW2_TABLE_WINDOW };
    uint64_t off = s->h.snapshots_offset;
    uint32_t nb = MIN(s->h.nb_snapshots, QCOW2_MAX_SNAPSHOTS);
    int ret = 0;

    qcow2_free_snapshots(s);
    s->snapshots_size = 0;
    if (!nb || (tolerant && !qcow2_snapshot_table_ok(s))) {
        sn_note_inactive_l1(s);
        return 0;
    }
    s->snapshots = g_new0(Qcow2Snapshot, nb);
    for (uint32_t i = 0; i < nb; i++) {
        off = ROUND_UP(off, 8);
        ret = sn_read_entry(&r, i, &off, &s->snapshots[i],
                            tolerant ? NULL : errp);
        s->nb_snapshots = i + 1;
        if (ret == 0 && off - s->h.snapshots_offset > SN_MAX_TABLE) {
            error_setg(tolerant ? NULL : errp, "Snapshot table is too big");
            error_append_hint(tolerant ? NULL : errp, "You can force-remove "
                              "all %" PRIu32 " overhanging snapshots with "
                              "qemu-img check -r all\n", nb - i);
            ret = -EFBIG;
        }
        if (ret < 0) {
            snapshot_clear(&s->snapshots[i]);
            s->nb_snapshots = i;
            break;
        }
    }
    qcow2_window_free(&r);
    s->snapshots_size = off - s->h.snapshots_offset;
    sn_note_inactive_l1(s);
    if (ret < 0 && !tolerant) {
        qcow2_free_snapshots(s);
        return ret;
    }
    return 0;
}

int coroutine_fn qcow2_read_snapshot_extents(BlockDriverState *bs)
{
    return qcow2_read_snapshots(bs, true, NULL);
}

/* ---- writing the table ---- */

/* Bytes of entry @sn in the table, without the alignment after it. */
static uint64_t sn_entry_size(const Qcow2Snapshot *sn)
{
    return SN_HEADER_SIZE + MAX(sn->extra_size, SN_EXTRA_KNOWN) +
           strlen(sn->id) + strlen(sn->name);
}

/* Encode entry @sn at @p (zeroed). */
static void sn_encode(const Qcow2Snapshot *sn, uint8_t *p)
{
    uint32_t extra = MAX(sn->extra_size, SN_EXTRA_KNOWN);
    size_t id_len = strlen(sn->id), name_len = strlen(sn->name);

    q_st64(p, sn->l1_offset);
    q_st32(p + 8, sn->l1_size);
    q_st16(p + 12, id_len);
    q_st16(p + 14, name_len);
    q_st32(p + 16, sn->date_sec);
    q_st32(p + 20, sn->date_nsec);
    q_st64(p + 24, sn->vm_clock_nsec);
    /* a state too large for 32 bits reads as none to old readers */
    if (sn->vm_state_size == (uint32_t)sn->vm_state_size) {
        q_st32(p + 32, sn->vm_state_size);
    }
    q_st32(p + 36, extra);
    p += SN_HEADER_SIZE;
    q_st64(p, sn->vm_state_size);
    q_st64(p + 8, sn->disk_size);
    q_st64(p + 16, sn->icount);
    if (extra > SN_EXTRA_KNOWN) {
        memcpy(p + SN_EXTRA_KNOWN, sn->unknown_extra, extra - SN_EXTRA_KNOWN);
    }
    p += extra;
    memcpy(p, sn->id, id_len);
    memcpy(p + id_len, sn->name, name_len);
}

/* The table for @list (@nb entries) in a new buffer; its size in *size,
 * -EFBIG beyond the reference's limit. */
static int sn_build_table(const Qcow2Snapshot *list, uint32_t nb,
                          uint8_t **buf, uint64_t *size)
{
    uint64_t total = 0, pos = 0;

    for (uint32_t i = 0; i < nb; i++) {
        total = ROUND_UP(total, 8) + sn_entry_size(&list[i]);
        if (total > SN_MAX_TABLE) {
            return -EFBIG;
        }
    }
    *buf = g_malloc0(MAX(total, 1));
    for (uint32_t i = 0; i < nb; i++) {
        pos = ROUND_UP(pos, 8);
        sn_encode(&list[i], *buf + pos);
        pos += sn_entry_size(&list[i]);
    }
    *size = total;
    return 0;
}

/* Everything cached reaches the file before the header points further. */
static int coroutine_fn sn_flush(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = qcow2_cache_flush(bs, &s->l2_cache);

    if (ret == 0) {
        ret = qcow2_cache_flush(bs, &s->refcount_cache);
    }
    return ret < 0 ? ret : bdrv_co_flush(bs->file->bs);
}

/* Free the table the header no longer points at.  Clusters without a
 * count (a table that lay outside the image) are left alone with the
 * reference's complaint: no refcount block (EAGAIN; EFBIG where the
 * refcount table could not reach), or a zero count (EINVAL).  The
 * cluster_free event comes first: as in the reference, a refcount block
 * not cached yet is read after it (a failed read leaves nothing dirty). */
static void coroutine_fn sn_free_old_table(BlockDriverState *bs,
                                           uint64_t off, uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (!size) {
        return;
    }
    bdrv_debug_event(bs->file, BLKDBG_CLUSTER_FREE);
    for (uint64_t c = off >> s->cluster_bits;
         c <= (off + size - 1) >> s->cluster_bits; c++) {
        uint64_t ti = c >> s->refblock_bits, rc = 0;
        bool block = ti < s->refcount_table_size &&
                     (s->refcount_table[ti] & ~511ULL);
        int err = ti >= QCOW2_MAX_REFTABLE_SIZE / 8 ? EFBIG : EAGAIN;

        ret = block ? qcow2_get_refcount(bs, c, &rc) : 0;
        if (!block || ret < 0 || !rc) {
            fprintf(stderr, "qcow2_free_clusters failed: %s\n",
                    strerror(ret < 0 ? -ret : block ? EINVAL : err));
            return;
        }
    }
    qcow2_free_clusters_noevent(bs, off, size,
                                s->discard_passthrough_snapshot);
    /* the reference's free writes the counts at once and says so when
     * that fails (the table then leaks) */
    ret = qcow2_cache_flush(bs, &s->refcount_cache);
    if (ret < 0) {
        fprintf(stderr, "qcow2_free_clusters failed: %s\n", strerror(-ret));
    }
}

/* Make @list (@nb entries, taken over on success) the snapshot table:
 * new table written and flushed, header switched in one write, old table
 * freed. */
static int coroutine_fn sn_write_table(BlockDriverState *bs,
                                       Qcow2Snapshot *list, uint32_t nb)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *buf = NULL;
    uint64_t size = 0, old_off = s->h.snapshots_offset;
    uint64_t old_size = s->snapshots_size;
    uint8_t hb[12];
    int64_t off;
    int ret = sn_build_table(list, nb, &buf, &size);

    /* an empty table lies nowhere: offset 0, as the reference writes */
    off = ret < 0 ? ret : size ? qcow2_alloc_clusters(bs, size) : 0;
    if (off < 0) {
        return off;
    }
    ret = sn_flush(bs);
    if (ret == 0 && size) {
        ret = qcow2_pre_write_overlap_check(bs, 0, off, size);
    }
    if (ret == 0 && size) {
        ret = q_pwrite(bs->file, off, size, buf);
    }
    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    q_st32(hb, nb);
    q_st64(hb + 4, off);
    if (ret == 0) {
        ret = q_pwrite(bs->file, 60, sizeof(hb), hb);
    }
    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    if (ret < 0) {
        qcow2_free_clusters(bs, off, size, false);
        return ret;
    }
    s->h.nb_snapshots = nb;
    s->h.snapshots_offset = off;
    s->snapshots_size = size;
    sn_free_old_table(bs, old_off, old_size);
    return 0;
}

/* Install @list (@nb entries) as the in-memory table, after it was
 * written. */
static void sn_set_list(BDRVQcow2State *s, Qcow2Snapshot *list, uint32_t nb)
{
    g_free(s->snapshots);
    s->snapshots = list;
    s->nb_snapshots = nb;
    sn_note_inactive_l1(s);
}

/* Write the in-memory table again (new clusters, then the header): for
 * amend and repair, which change entries (every entry gets at least the
 * 24 bytes of known extra data, as version 3 requires). */
int coroutine_fn qcow2_rewrite_snapshot_table(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = sn_write_table(bs, s->snapshots, s->nb_snapshots);

    for (uint32_t i = 0; ret == 0 && i < s->nb_snapshots; i++) {
        s->snapshots[i].extra_size = MAX(s->snapshots[i].extra_size,
                                         SN_EXTRA_KNOWN);
    }
    return ret;
}

/* ---- refcounts ---- */

/* One reference more or less for the clusters of [off, off + len); a
 * cluster losing its last one leaves the caches (and is discarded in the
 * file as pass-discard-snapshot says). */
static int coroutine_fn sn_add_ref(BlockDriverState *bs, uint64_t off,
                                   uint64_t len, int64_t addend)
{
    BDRVQcow2State *s = bs->opaque;

    if (addend > 0) {
        return qcow2_update_refcount(bs, off, len, addend);
    }
    if (addend < 0) {
        qcow2_free_clusters(bs, off, len, s->discard_passthrough_snapshot);
    }
    return 0;
}

/* New refcount-1 state of an L2 entry: COPIED set iff the cluster has
 * exactly one reference (compressed clusters never carry it). */
static int coroutine_fn sn_l2_entry(BlockDriverState *bs, uint64_t l2e,
                                    int64_t addend, uint64_t *out)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2ClusterType t = qcow2_cluster_type(s, l2e);
    uint64_t host, len, rc = 0;
    int ret = 0;

    /* a stray COPIED bit on any other kind of entry goes, as in the
     * reference */
    *out = l2e & ~QCOW_OFLAG_COPIED;
    if (t == QCOW2_CLUSTER_COMPRESSED) {
        qcow2_parse_compressed(s, l2e, &host, &len);
        return sn_add_ref(bs, host, len, addend);
    }
    if (t != QCOW2_CLUSTER_NORMAL && t != QCOW2_CLUSTER_ZERO_ALLOC) {
        return 0;
    }
    host = l2e & L2E_OFFSET_MASK;
    if (!host || s->data_file != bs->file) {
        *out = l2e;        /* external data: no refcounts for data */
        return 0;
    }
    if (qcow2_offset_into_cluster(s, host)) {
        qcow2_signal_corruption(bs, "Cluster allocation offset %#" PRIx64
                                " unaligned", host);
        return -EIO;
    }
    ret = sn_add_ref(bs, host, s->cluster_size, addend);
    if (ret == 0) {
        ret = qcow2_get_refcount(bs, host >> s->cluster_bits, &rc);
    }
    *out = rc == 1 ? l2e | QCOW_OFLAG_COPIED : l2e & ~QCOW_OFLAG_COPIED;
    return ret;
}

/* Every entry of the L2 table at @l2_off. */
static int coroutine_fn sn_update_l2(BlockDriverState *bs, uint64_t l2_off,
                                     int64_t addend)
{
    BDRVQcow2State *s = bs->opaque;
    void *l2;
    int ret = qcow2_cache_get(bs, &s->l2_cache, l2_off, &l2);

    for (int j = 0; ret == 0 && j < s->l2_size; j++) {
        uint64_t old = qcow2_l2_entry(s, l2, j), ne;

        ret = sn_l2_entry(bs, old, addend, &ne);
        if (ret == 0 && ne != old) {
            qcow2_set_l2_entry(s, l2, j, ne);
            qcow2_cache_mark_dirty(&s->l2_cache, l2);
        }
    }
    if (l2) {
        qcow2_cache_put(&s->l2_cache, &l2);
    }
    return ret;
}

/* One L1 entry: its L2 table's clusters, then the table itself. */
static int coroutine_fn sn_update_l1_entry(BlockDriverState *bs,
                                           uint64_t *l1e, int64_t addend,
                                           bool *modified)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l2_off = *l1e & L1E_OFFSET_MASK, rc = 0, ne;
    int ret;

    if (!l2_off) {
        return 0;
    }
    if (qcow2_offset_into_cluster(s, l2_off)) {
        qcow2_signal_corruption(bs, "L2 table offset %#" PRIx64 " unaligned",
                                l2_off);
        return -EIO;
    }
    ret = sn_update_l2(bs, l2_off, addend);
    if (ret == 0) {
        ret = sn_add_ref(bs, l2_off, s->cluster_size, addend);
    }
    if (ret == 0) {
        ret = qcow2_get_refcount(bs, l2_off >> s->cluster_bits, &rc);
    }
    ne = rc == 1 ? l2_off | QCOW_OFLAG_COPIED : l2_off;
    if (ret == 0 && ne != *l1e) {
        *l1e = ne;
        *modified = true;
    }
    return ret;
}

/* Write @l1 (@n entries, host order) to @offset. */
static int coroutine_fn sn_write_l1(BlockDriverState *bs, uint64_t offset,
                                    const uint64_t *l1, uint32_t n, int ign)
{
    g_autofree uint8_t *buf = g_malloc0(MAX((size_t)n * 8, 1));
    int ret;

    for (uint32_t i = 0; i < n; i++) {
        q_st64(buf + (size_t)i * 8, l1[i]);
    }
    ret = qcow2_pre_write_overlap_check(bs, ign, offset, (uint64_t)n * 8);
    if (ret == 0 && n) {
        ret = q_pwrite(bs->file, offset, (uint64_t)n * 8, buf);
    }
    return ret;
}

/* Read an L1 table of @n entries at @offset into @l1 (zeroed), in host
 * order. */
static int coroutine_fn sn_read_l1(BlockDriverState *bs, uint64_t offset,
                                   uint32_t n, uint64_t *l1)
{
    int64_t ret = qcow2_read_table64(bs, offset, n, l1);

    return ret < 0 ? ret : 0;
}

/*
 * Add @addend to the refcount of every cluster the L1 table at @l1_off
 * (@l1_size entries; the active one is taken from memory) reaches, and
 * set OFLAG_COPIED where a refcount is now one.  Refcount blocks go out
 * before L2 tables when counts rise and after them when they fall; the
 * L1 table is rewritten last (not when @addend < 0: it is going away).
 */
static int coroutine_fn sn_update_refcounts(BlockDriverState *bs,
                                            uint64_t l1_off, uint32_t l1_size,
                                            int64_t addend)
{
    BDRVQcow2State *s = bs->opaque;
    /* a hostile snapshot may name the active table with another size:
     * only the exact active table is taken from memory */
    bool active = l1_off == s->h.l1_table_offset && l1_size == s->l1_size;
    bool modified = false;
    g_autofree uint64_t *own = NULL;
    uint64_t *l1 = s->l1_table;
    int ret = 0;

    qcow2_discards_begin(bs);       /* freed clusters: merged at the end */
    if (!active) {
        own = g_new0(uint64_t, MAX(l1_size, 1));
        ret = sn_read_l1(bs, l1_off, l1_size, own);
        l1 = own;
    }
    if (ret == 0 && addend > 0) {
        ret = qcow2_cache_set_dependency(bs, &s->l2_cache,
                                         &s->refcount_cache);
    } else if (ret == 0 && addend < 0) {
        ret = qcow2_cache_set_dependency(bs, &s->refcount_cache,
                                         &s->l2_cache);
    }
    for (uint32_t i = 0; ret == 0 && i < l1_size; i++) {
        ret = sn_update_l1_entry(bs, &l1[i], addend, &modified);
    }
    if (ret == 0) {
        ret = sn_flush(bs);
    }
    if (ret == 0 && addend >= 0 && modified) {
        ret = sn_write_l1(bs, l1_off, l1, l1_size,
                          active ? QCOW2_OL_ACTIVE_L1 : QCOW2_OL_INACTIVE_L1);
    }
    qcow2_discards_end(bs, ret);
    return ret;
}

/* ---- lookups ---- */

/* Index of the snapshot matching @id and/or @name (NULL: any), -1. */
static int sn_find(BDRVQcow2State *s, const char *id, const char *name)
{
    for (uint32_t i = 0; (id || name) && i < s->nb_snapshots; i++) {
        if ((!id || !strcmp(s->snapshots[i].id, id)) &&
            (!name || !strcmp(s->snapshots[i].name, name))) {
            return i;
        }
    }
    return -1;
}

/* By ID first, then by name. */
static int sn_find_id_or_name(BDRVQcow2State *s, const char *id_or_name)
{
    int i = sn_find(s, id_or_name, NULL);

    return i >= 0 ? i : sn_find(s, NULL, id_or_name);
}

/* A snapshot's L1 table must be of a sane size, cluster aligned, and
 * end within the 63-bit file range (the reference's messages). */
int qcow2_check_snapshot_l1(BlockDriverState *bs, uint64_t l1_offset,
                            uint32_t l1_size, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t bytes = (uint64_t)l1_size * 8;

    if (l1_size > QCOW2_MAX_L1_SIZE / 8) {
        error_setg(errp, "Snapshot L1 table too large");
        return -EFBIG;
    }
    if (qcow2_offset_into_cluster(s, l1_offset) ||
        l1_offset > INT64_MAX - bytes) {
        error_setg(errp, "Snapshot L1 table offset invalid");
        return -EINVAL;
    }
    return 0;
}

static int sn_check_l1(BlockDriverState *bs, const Qcow2Snapshot *sn,
                       Error **errp)
{
    return qcow2_check_snapshot_l1(bs, sn->l1_offset, sn->l1_size, errp);
}

/* A new ID: one above the largest numeric one. */
static void sn_new_id(BDRVQcow2State *s, char *id, size_t size)
{
    unsigned long max = 0;

    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        unsigned long v = strtoul(s->snapshots[i].id, NULL, 10);
        max = MAX(max, v);
    }
    snprintf(id, size, "%lu", max + 1);
}

/* ---- operations ---- */

/* The table with @sn appended (copies of the strings). */
static Qcow2Snapshot *sn_list_append(BDRVQcow2State *s,
                                     const Qcow2Snapshot *sn)
{
    Qcow2Snapshot *list = g_new0(Qcow2Snapshot, s->nb_snapshots + 1);

    if (s->nb_snapshots) {
        memcpy(list, s->snapshots, sizeof(*list) * s->nb_snapshots);
    }
    list[s->nb_snapshots] = *sn;
    return list;
}

/* A copy of the active L1 table in new clusters; its offset. */
static int64_t coroutine_fn sn_copy_active_l1(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t bytes = (uint64_t)s->l1_size * 8;
    int64_t off = qcow2_alloc_clusters(bs, bytes);
    int ret;

    if (off < 0 || !bytes) {
        return off;
    }
    ret = sn_flush(bs);
    if (ret == 0) {
        ret = sn_write_l1(bs, off, s->l1_table, s->l1_size, 0);
    }
    if (ret < 0) {
        qcow2_free_clusters(bs, off, bytes, false);
        return ret;
    }
    return off;
}

static int coroutine_fn qcow2_sn_create_locked(BlockDriverState *bs,
                                               BdrvSnapshotInfo *info)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Snapshot sn = { 0 };
    Qcow2Snapshot *list;
    int64_t off;
    int ret;

    if (s->data_file != bs->file) {
        return -ENOTSUP;
    }
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS) {
        return -EFBIG;
    }
    if (!info->id[0]) {
        sn_new_id(s, info->id, sizeof(info->id));
    }
    if (sn_find(s, info->id, NULL) >= 0) {
        return -EEXIST;
    }
    off = sn_copy_active_l1(bs);
    if (off < 0) {
        return off;
    }
    ret = sn_update_refcounts(bs, s->h.l1_table_offset, s->l1_size, 1);
    if (ret < 0) {
        return ret;     /* the raised counts leak */
    }
    sn = (Qcow2Snapshot) {
        .l1_offset = off, .l1_size = s->l1_size,
        .id = g_strdup(info->id), .name = g_strdup(info->name),
        .disk_size = s->h.size / 512 * 512,
        .vm_state_size = info->vm_state_size,
        .date_sec = info->date_sec, .date_nsec = info->date_nsec,
        .vm_clock_nsec = info->vm_clock_nsec, .icount = info->icount,
        .extra_size = SN_EXTRA_KNOWN,
    };
    list = sn_list_append(s, &sn);
    ret = sn_write_table(bs, list, s->nb_snapshots + 1);
    if (ret < 0) {
        g_free(list);
        snapshot_clear(&sn);
        return ret;
    }
    sn_set_list(s, list, s->nb_snapshots + 1);
    return 0;
}

static int coroutine_fn qcow2_sn_create(BlockDriverState *bs,
                                        BdrvSnapshotInfo *info)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    co_mutex_lock(&s->lock);
    ret = qcow2_sn_create_locked(bs, info);
    co_mutex_unlock(&s->lock);
    return ret;
}

/* The table without entry @idx (copied, strings shared). */
static Qcow2Snapshot *sn_list_remove(BDRVQcow2State *s, int idx)
{
    Qcow2Snapshot *list = g_new0(Qcow2Snapshot, MAX(s->nb_snapshots, 1));

    memcpy(list, s->snapshots, sizeof(*list) * idx);
    memcpy(list + idx, s->snapshots + idx + 1,
           sizeof(*list) * (s->nb_snapshots - idx - 1));
    return list;
}

static int coroutine_fn qcow2_sn_delete_locked(BlockDriverState *bs,
                                               const char *id,
                                               const char *name,
                                               Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int idx = sn_find(s, id, name);
    Qcow2Snapshot sn, *list;
    int ret;

    if (idx < 0) {
        error_setg(errp, "Can't find the snapshot");
        return -ENOENT;
    }
    sn = s->snapshots[idx];
    ret = sn_check_l1(bs, &sn, errp);
    if (ret < 0) {
        return ret;
    }
    list = sn_list_remove(s, idx);
    ret = sn_write_table(bs, list, s->nb_snapshots - 1);
    if (ret < 0) {
        g_free(list);
        error_setg_errno(errp, -ret, "Failed to remove snapshot from "
                         "snapshot list");
        return ret;
    }
    sn_set_list(s, list, s->nb_snapshots - 1);
    /* from here on a failure leaks the snapshot's clusters, no more */
    ret = sn_update_refcounts(bs, sn.l1_offset, sn.l1_size, -1);
    if (ret == 0) {
        qcow2_free_clusters(bs, sn.l1_offset, (uint64_t)sn.l1_size * 8,
                            s->discard_passthrough_snapshot);
        ret = sn_update_refcounts(bs, s->h.l1_table_offset, s->l1_size, 0);
    }
    snapshot_clear(&sn);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to free the cluster and L1 "
                         "table");
    }
    return ret;
}

static int coroutine_fn qcow2_sn_delete(BlockDriverState *bs, const char *id,
                                        const char *name, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    co_mutex_lock(&s->lock);
    ret = qcow2_sn_delete_locked(bs, id, name, errp);
    co_mutex_unlock(&s->lock);
    return ret;
}

/* The snapshot's L1 table, padded with zeroes to @n entries. */
static uint64_t *sn_load_l1(BlockDriverState *bs, const Qcow2Snapshot *sn,
                            uint32_t n, int *ret)
{
    uint64_t *l1 = g_new0(uint64_t, MAX(n, 1));

    *ret = sn_read_l1(bs, sn->l1_offset, sn->l1_size, l1);
    if (*ret < 0) {
        g_free(l1);
        return NULL;
    }
    return l1;
}

/*
 * Revert: the snapshot's clusters gain a reference, its L1 table is
 * written over the active one, then the old active clusters lose theirs
 * and COPIED is set again where counts dropped to one.
 */
static int coroutine_fn qcow2_sn_goto_locked(BlockDriverState *bs,
                                             const Qcow2Snapshot *sn)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint64_t *l1 = NULL;
    int ret = qcow2_grow_l1_table(bs, sn->l1_size, false);

    if (ret < 0) {
        return ret;
    }
    /* the table is read after its counts rose: its COPIED bits are then
     * clear, as the active table must have them from the switch on */
    ret = sn_update_refcounts(bs, sn->l1_offset, sn->l1_size, 1);
    if (ret == 0) {
        l1 = sn_load_l1(bs, sn, s->l1_size, &ret);
    }
    if (ret == 0) {
        ret = sn_write_l1(bs, s->h.l1_table_offset, l1, s->l1_size,
                          QCOW2_OL_ACTIVE_L1);
    }
    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    if (ret < 0) {
        return ret;
    }
    /* the in-memory table is still the old one: its clusters lose the
     * reference the active table held */
    ret = sn_update_refcounts(bs, s->h.l1_table_offset, s->l1_size, -1);
    memcpy(s->l1_table, l1, (size_t)s->l1_size * 8);
    s->l1_used = s->l1_size;
    if (ret == 0) {
        ret = sn_update_refcounts(bs, s->h.l1_table_offset, s->l1_size, 0);
    }
    return ret;
}

/* The guest disk takes the snapshot's size first; as in the reference, a
 * failed resize is reported on the spot and the revert fails. */
static int coroutine_fn sn_goto_resize(BlockDriverState *bs,
                                       const Qcow2Snapshot *sn)
{
    BDRVQcow2State *s = bs->opaque;
    Error *err = NULL;
    int ret;

    if (sn->disk_size == s->h.size / 512 * 512) {
        return 0;
    }
    ret = qcow2_co_truncate(bs, sn->disk_size, true, PREALLOC_MODE_OFF, 0,
                            &err);
    if (ret < 0) {
        error_report_err(err);
        return ret;
    }
    bs->total_bytes = s->h.size;
    return 0;
}

/*
 * Revert: the snapshot's clusters gain a reference, its L1 table is
 * written over the active one, then the old active clusters lose theirs
 * and COPIED is set again where counts dropped to one.
 */
static int coroutine_fn qcow2_sn_goto(BlockDriverState *bs,
                                      const char *id_or_name, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int idx = sn_find_id_or_name(s, id_or_name);
    Error *err = NULL;
    Qcow2Snapshot sn;
    int ret;

    if (s->data_file != bs->file) {
        return -ENOTSUP;    /* before the search, as the reference */
    }
    if (idx < 0) {
        return -ENOENT;
    }
    sn = s->snapshots[idx];
    ret = sn_check_l1(bs, &sn, &err);
    if (ret < 0) {
        error_report_err(err);      /* printed on the spot, as the reference */
    } else {
        ret = sn_goto_resize(bs, &sn);
    }
    if (ret < 0) {
        return ret;
    }
    co_mutex_lock(&s->lock);
    ret = qcow2_sn_goto_locked(bs, &sn);
    co_mutex_unlock(&s->lock);
    bdrv_bsc_invalidate(bs);
    return ret;
}

static int qcow2_sn_list(BlockDriverState *bs, BdrvSnapshotInfo **tab)
{
    BDRVQcow2State *s = bs->opaque;
    BdrvSnapshotInfo *t = g_new0(BdrvSnapshotInfo, MAX(s->nb_snapshots, 1));

    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const Qcow2Snapshot *sn = &s->snapshots[i];

        g_strlcpy(t[i].id, sn->id, sizeof(t[i].id));
        g_strlcpy(t[i].name, sn->name, sizeof(t[i].name));
        t[i].vm_state_size = sn->vm_state_size;
        t[i].date_sec = sn->date_sec;
        t[i].date_nsec = sn->date_nsec;
        t[i].vm_clock_nsec = sn->vm_clock_nsec;
        t[i].icount = sn->icount;
    }
    *tab = t;
    return s->nb_snapshots;
}

/* convert -l: a read-only node reads through the snapshot's L1 table. */
static int coroutine_fn qcow2_sn_load_tmp(BlockDriverState *bs,
                                          const char *id, const char *name,
                                          Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int idx = sn_find(s, id, name), ret;
    uint64_t *l1;

    if (!bdrv_is_read_only(bs)) {
        error_setg(errp, "Snapshots can only be loaded read-only");
        return -EINVAL;
    }
    if (idx < 0) {
        error_setg(errp, "Can't find snapshot");
        return -ENOENT;
    }
    ret = sn_check_l1(bs, &s->snapshots[idx], errp);
    if (ret < 0) {
        return ret;
    }
    l1 = sn_load_l1(bs, &s->snapshots[idx], s->snapshots[idx].l1_size, &ret);
    if (!l1) {
        error_setg_errno(errp, -ret, "Failed to load snapshot L1 table");
        return ret;
    }
    co_mutex_lock(&s->lock);
    g_free(s->l1_table);
    s->l1_table = l1;
    s->l1_size = s->l1_used = s->snapshots[idx].l1_size;
    s->h.l1_table_offset = s->snapshots[idx].l1_offset;
    co_mutex_unlock(&s->lock);
    bdrv_bsc_invalidate(bs);
    return 0;
}

/* ---- VM state: stored right after the last L1 entry the disk needs ---- */

static uint64_t vm_state_offset(BDRVQcow2State *s)
{
    return qcow2_l1_entries(s->cluster_bits, s->l2_bits, s->h.size)
           << (s->cluster_bits + s->l2_bits);
}

/* Save and load differ only in direction: both check that the whole
 * range stays below INT64_MAX once moved past the disk's L1 reach. */
static int coroutine_fn vm_state_io(BlockDriverState *bs, IOVector *qiov,
                                    int64_t pos, bool write)
{
    uint64_t off = vm_state_offset(bs->opaque);

    if ((uint64_t)pos > INT64_MAX - off - qiov->size) {
        return -EINVAL;
    }
    if (!qiov->size) {
        return 0;
    }
    return write ? qcow2_co_pwritev(bs, off + pos, qiov->size, qiov, 0)
                 : qcow2_co_preadv(bs, off + pos, qiov->size, qiov, 0);
}

static int coroutine_fn qcow2_save_vmstate(BlockDriverState *bs,
                                           IOVector *qiov, int64_t pos)
{
    return vm_state_io(bs, qiov, pos, true);
}

static int coroutine_fn qcow2_load_vmstate(BlockDriverState *bs,
                                           IOVector *qiov, int64_t pos)
{
    return vm_state_io(bs, qiov, pos, false);
}

const BlockDriverSnapshotOps qcow2_snapshot_ops = {
    .co_create = qcow2_sn_create,
    .co_goto = qcow2_sn_goto,
    .co_delete = qcow2_sn_delete,
    .list = qcow2_sn_list,
    .co_load_tmp = qcow2_sn_load_tmp,
    .co_save_vmstate = qcow2_save_vmstate,
    .co_load_vmstate = qcow2_load_vmstate,
};
