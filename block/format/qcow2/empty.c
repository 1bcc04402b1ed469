#include "config.h"
/*
 * qcow2: make an image empty (commit without -d), so that every read
 * falls through to the backing file again.
 *
 * Every cluster the active L1 table maps is dropped: its L2 entry becomes
 * 0 (unallocated, not "zero": the backing file must show through) and its
 * refcount falls, as a discard of the whole disk that leaves nothing
 * behind.  The reference also has a fast path that rewrites the file as a
 * freshly created one; the guest sees the same either way.
 */
#include <errno.h>
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

int coroutine_fn qcow2_co_make_empty(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (s->h.nb_snapshots) {
        /* L2 tables may be shared with snapshots: not handled here */
        return -ENOTSUP;
    }
    co_mutex_lock(&s->lock);
    ret = qcow2_mark_dirty_if_lazy(bs);
    for (uint32_t i = 0; ret == 0 && i < s->l1_used && i < s->l1_size; i++) {
        ret = empty_l1_range(bs, i);
    }
    co_mutex_unlock(&s->lock);
    return ret;
}
