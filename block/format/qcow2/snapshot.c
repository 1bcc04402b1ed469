#include "config.h"
/*
 * qcow2 internal snapshots, as far as writes must respect them: the size
 * of the snapshot table and where the inactive L1 tables lie, for the
 * metadata overlap checks.  (Clusters shared with snapshots have
 * refcounts above one; the write path copies them.)
 */
#include "qcow2.h"

#define SN_FIXED_SIZE 40
#define SN_MAX_TABLE (64 * MiB)

/* One table entry at @p (@left bytes); its size, 0 if it does not fit. */
static size_t snapshot_entry(BDRVQcow2State *s, const uint8_t *p, size_t left)
{
    uint64_t size;
    Qcow2InactiveL1 l1;

    if (left < SN_FIXED_SIZE) {
        return 0;
    }
    size = SN_FIXED_SIZE + (uint64_t)q_ld32(p + 36) + q_ld16(p + 12) +
           q_ld16(p + 14);
    size = ROUND_UP(size, 8);
    if (size > left) {
        return 0;
    }
    l1.offset = q_ld64(p);
    l1.size = q_ld32(p + 8);
    if (l1.size <= QCOW2_MAX_L1_SIZE / 8) {
        g_array_append_val(s->inactive_l1, l1);
    }
    return size;
}

/* Read the table once at open; a damaged table only narrows the checks
 * (the reference's check reports it). */
int coroutine_fn qcow2_read_snapshot_extents(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t max = MIN((uint64_t)s->h.nb_snapshots * 65536 + 1, SN_MAX_TABLE);
    g_autofree uint8_t *buf = NULL;
    size_t pos = 0;
    int ret;

    s->inactive_l1 = g_array_new(false, false, sizeof(Qcow2InactiveL1));
    s->snapshots_size = 0;
    if (!s->h.nb_snapshots) {
        return 0;
    }
    buf = g_try_malloc(max);
    if (!buf) {
        return -ENOMEM;
    }
    ret = qcow2_read_table(bs, s->h.snapshots_offset, max, buf);
    if (ret < 0) {
        return ret;
    }
    for (uint32_t i = 0; i < s->h.nb_snapshots; i++) {
        size_t n = snapshot_entry(s, buf + pos, max - pos);
        if (!n) {
            break;
        }
        pos += n;
    }
    s->snapshots_size = pos;
    return 0;
}
