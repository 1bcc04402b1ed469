#include "config.h"
/*
 * qcow2 amend: change the options of an existing image in place, in the
 * reference's order: upgrade to v3, refcount width, data file options
 * (header rewritten), backing file check, lazy refcounts, size, and the
 * downgrade to v2 last (so that what v2 cannot hold is gone by then).
 *
 * Crash safety: every step writes its new structures and flushes them
 * before the header (or the one table entry) that makes them live, so a
 * killed amend leaves a consistent image, at worst with leaked clusters.
 *
 * Sections: options, progress, snapshot table facts, upgrade, zero
 * cluster expansion, downgrade, the driver entry.  The refcount width
 * change is in refwidth.c.
 */
#include "qcow2.h"

#define SN_FIXED_SIZE 40

/* The amendable options, in the order the reference looks at them (its
 * first complaint wins); -o help sorts them by name. */
static const BlockOptDesc qcow2_amend_opts[] = {
    { "encrypt.state", OPT_STRING,
      "Select new state of affected keyslots (active/inactive)", NULL },
    { "encrypt.keyslot", OPT_NUMBER,
      "Select a single keyslot to modify explicitly", NULL },
    { "encrypt.old-secret", OPT_STRING,
      "Select all keyslots that match this password", NULL },
    { "encrypt.new-secret", OPT_STRING,
      "New secret to set in the matching keyslots. Empty string to erase",
      NULL },
    { "encrypt.iter-time", OPT_NUMBER,
      "Time to spend in PBKDF in milliseconds", NULL },
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "compat", OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])",
      NULL },
    { "backing_file", OPT_STRING, "File name of a base image", NULL },
    { "backing_fmt", OPT_STRING, "Image format of the base image", NULL },
    { "data_file", OPT_STRING, "File name of an external data file", NULL },
    { "data_file_raw", OPT_BOOL,
      "The external data file must stay valid as a raw image", NULL },
    { "lazy_refcounts", OPT_BOOL, "Postpone refcount updates", NULL },
    { "refcount_bits", OPT_NUMBER,
      "Width of a reference count entry in bits", NULL },
    { NULL },
};

/* What the user asked for, checked; unset fields keep the image's. */
typedef struct AmendPlan {
    int new_version;
    uint64_t new_size;            /* 0: unchanged */
    const char *backing_file, *backing_fmt;
    const char *data_file;        /* NULL: unchanged, "": none */
    bool data_file_raw;
    bool lazy;
    int64_t refcount_bits;
} AmendPlan;

/* The operations that report progress, each weighted by its own work. */
typedef enum {
    AMEND_OP_NONE, AMEND_OP_UPGRADE, AMEND_OP_REFCOUNT, AMEND_OP_DOWNGRADE,
} AmendOp;

typedef struct AmendProgress {
    BlockAmendStatusCB *cb;
    void *opaque;
    int total_ops, ops_done;
    AmendOp current, last;
    int64_t offset_done, last_work;
} AmendProgress;

typedef struct AmendCo {
    BlockDriverState *bs;
    AmendPlan *plan;
    AmendProgress *prog;
    Error **errp;
    int ret;
} AmendCo;

/* ---- options ---- */

static bool has_data_file(BDRVQcow2State *s)
{
    return s->h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE;
}

static bool data_file_is_raw(BDRVQcow2State *s)
{
    return s->h.autoclear_features & QCOW2_AUTOCLEAR_DATA_RAW;
}

/* compat=: 2 or 3, or the reference's complaint. */
static int parse_compat(const char *v, int *version, Error **errp)
{
    if (!strcmp(v, "0.10") || !strcmp(v, "v2")) {
        *version = 2;
    } else if (!strcmp(v, "1.1") || !strcmp(v, "v3")) {
        *version = 3;
    } else {
        error_setg(errp, "Unknown compatibility level %s", v);
        return -EINVAL;
    }
    return 0;
}

/* Encryption options need LUKS encryption, which no open here has. */
static int check_encrypt_opt(BDRVQcow2State *s, Error **errp)
{
    if (!s->h.crypt_method) {
        error_setg(errp, "Can't amend encryption options - encryption not "
                   "present");
        return -EINVAL;
    }
    if (s->h.crypt_method != 2) {
        error_setg(errp, "Only LUKS encryption options can be amended");
        return -ENOTSUP;
    }
    error_setg(errp, "Amending LUKS encryption options is not supported by "
               "this build yet");
    return -ENOTSUP;
}

/* refcount_bits=: a power of two up to 64. */
static int parse_refcount_bits(QDict *opts, AmendPlan *p, Error **errp)
{
    Error *err = NULL;
    uint64_t v = bdrv_opt_number(opts, "refcount_bits", p->refcount_bits,
                                 &err);

    if (err) {
        error_propagate(errp, err);
        return -EINVAL;
    }
    if (v == 0 || v > 64 || (v & (v - 1))) {
        error_setg(errp, "Refcount width must be a power of two and may not "
                   "exceed 64 bits");
        return -EINVAL;
    }
    p->refcount_bits = v;
    return 0;
}

/* The data file options: only images that have one may name it; raw
 * may be cleared, not set. */
static int parse_data_file_opt(BDRVQcow2State *s, QDict *opts,
                               const char *name, AmendPlan *p, Error **errp)
{
    Error *err = NULL;

    if (!strcmp(name, "data_file")) {
        p->data_file = bdrv_opt_str(opts, name, NULL);
        if (!has_data_file(s)) {
            error_setg(errp, "data-file can only be set for images that use "
                       "an external data file");
            return -EINVAL;
        }
        return 0;
    }
    p->data_file_raw = bdrv_opt_bool(opts, name, p->data_file_raw, &err);
    if (err) {
        error_propagate(errp, err);
        return -EINVAL;
    }
    if (p->data_file_raw && !data_file_is_raw(s)) {
        error_setg(errp, "data-file-raw cannot be set on existing images");
        return -EINVAL;
    }
    return 0;
}

/* One option the user gave (@name, in schema order). */
static int parse_one(BDRVQcow2State *s, QDict *opts, const char *name,
                     AmendPlan *p, Error **errp)
{
    Error *err = NULL;

    if (g_str_has_prefix(name, "encrypt.")) {
        return check_encrypt_opt(s, errp);
    } else if (!strcmp(name, "compat")) {
        return parse_compat(bdrv_opt_str(opts, name, ""), &p->new_version,
                            errp);
    } else if (!strcmp(name, "size")) {
        p->new_size = bdrv_opt_size(opts, name, 0, &err);
    } else if (!strcmp(name, "backing_file")) {
        p->backing_file = bdrv_opt_str(opts, name, NULL);
    } else if (!strcmp(name, "backing_fmt")) {
        p->backing_fmt = bdrv_opt_str(opts, name, NULL);
    } else if (!strcmp(name, "lazy_refcounts")) {
        p->lazy = bdrv_opt_bool(opts, name, p->lazy, &err);
    } else if (!strcmp(name, "refcount_bits")) {
        return parse_refcount_bits(opts, p, errp);
    } else {
        return parse_data_file_opt(s, opts, name, p, errp);
    }
    if (err) {
        error_propagate(errp, err);
        return -EINVAL;
    }
    return 0;
}

/* The plan from @opts, the image's current values as defaults. */
static int parse_plan(BlockDriverState *bs, QDict *opts, AmendPlan *p,
                      Error **errp)
{
    BDRVQcow2State *s = bs->opaque;

    *p = (AmendPlan) {
        .new_version = s->h.version,
        .data_file_raw = data_file_is_raw(s),
        .lazy = s->use_lazy_refcounts,
        .refcount_bits = s->refcount_bits,
    };
    for (const BlockOptDesc *d = qcow2_amend_opts; d->name; d++) {
        if (qdict_haskey(opts, d->name)) {
            int ret = parse_one(s, opts, d->name, p, errp);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

/* ---- progress: operations after the first are projected from the
 * work seen so far, so the total only settles at the end ---- */

static void amend_status(BlockDriverState *bs, AmendProgress *pr,
                         int64_t done, int64_t work)
{
    int64_t current, projected;

    if (pr->current != pr->last) {
        if (pr->last != AMEND_OP_NONE) {
            pr->offset_done += pr->last_work;
            pr->ops_done++;
        }
        pr->last = pr->current;
    }
    if (!pr->cb || pr->total_ops <= pr->ops_done) {
        return;
    }
    pr->last_work = work;
    current = pr->offset_done + work;
    projected = current * (pr->total_ops - pr->ops_done - 1) /
                (pr->ops_done + 1);
    pr->cb(bs, pr->offset_done + done, current + projected, pr->opaque);
}

/* ---- snapshot table facts (the table itself is not rewritten) ---- */

typedef struct SnapFacts {
    bool short_extra;             /* an entry lacks the v3 extra fields */
    bool blocks_v2;               /* big VM state or other disk size */
} SnapFacts;

/* One entry at @p of @left bytes: its size (0: damaged), facts noted. */
static size_t snap_entry_facts(BlockDriverState *bs, const uint8_t *p,
                               size_t left, SnapFacts *f)
{
    BDRVQcow2State *s = bs->opaque;
    uint32_t extra;
    uint64_t size, vmstate, disk = s->h.size;

    if (left < SN_FIXED_SIZE) {
        return 0;
    }
    extra = q_ld32(p + 36);
    size = ROUND_UP(SN_FIXED_SIZE + (uint64_t)extra + q_ld16(p + 12) +
                    q_ld16(p + 14), 8);
    if (size > left) {
        return 0;
    }
    vmstate = extra >= 8 ? q_ld64(p + SN_FIXED_SIZE) : q_ld32(p + 32);
    if (extra >= 16) {
        disk = q_ld64(p + SN_FIXED_SIZE + 8);
    }
    f->short_extra |= extra < 16;
    f->blocks_v2 |= vmstate > UINT32_MAX || disk != s->h.size;
    return size;
}

/* Read the snapshot table for what up- and downgrades must know. */
static int coroutine_fn read_snap_facts(BlockDriverState *bs, SnapFacts *f)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t max = MIN((uint64_t)s->h.nb_snapshots * 65536 + 1, 64 * MiB);
    g_autofree uint8_t *buf = NULL;
    size_t pos = 0;
    int ret;

    *f = (SnapFacts) { 0 };
    if (!s->h.nb_snapshots) {
        return 0;
    }
    buf = g_try_malloc(max);
    if (!buf) {
        return -ENOMEM;
    }
    ret = qcow2_read_table(bs, s->h.snapshots_offset, max, buf);
    for (uint32_t i = 0; ret == 0 && i < s->h.nb_snapshots; i++) {
        size_t n = snap_entry_facts(bs, buf + pos, max - pos, f);
        if (!n) {
            return -EINVAL;
        }
        pos += n;
    }
    return ret;
}

/* ---- upgrade to v3 ---- */

/* A header update failed: the reference's message. */
static int header_failed(int ret, Error **errp)
{
    error_setg_errno(errp, -ret, "Failed to update the image header");
    return ret;
}

/* v2 -> v3: snapshot entries without the extra data v3 requires are
 * written again first (the reference's order), then the header. */
static int coroutine_fn upgrade(BlockDriverState *bs, AmendProgress *pr,
                                Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    SnapFacts f;
    int ret;

    amend_status(bs, pr, 0, 2);
    ret = read_snap_facts(bs, &f);
    if (ret == 0 && f.short_extra) {
        co_mutex_lock(&s->lock);
        ret = qcow2_rewrite_snapshot_table(bs);
        co_mutex_unlock(&s->lock);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update the snapshot table");
        return ret;
    }
    amend_status(bs, pr, 1, 2);
    s->h.version = 3;
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        s->h.version = 2;
        return header_failed(ret, errp);
    }
    amend_status(bs, pr, 2, 2);
    return 0;
}

/* ---- zero clusters -> v2 (no zero flag there) ---- */

typedef struct ExpandL2 {
    uint64_t l2_offset;
    uint64_t l2_refcount;         /* L2 tables shared with snapshots: > 1 */
    bool dirty;
} ExpandL2;

/* A plain zero cluster of a backed image needs a zeroed host cluster of
 * its own, counted once per L2 table referencing it. */
static int64_t coroutine_fn alloc_zero_target(BlockDriverState *bs,
                                              const ExpandL2 *x)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t off = qcow2_alloc_clusters(bs, s->cluster_size);
    int ret;

    if (off < 0 || x->l2_refcount <= 1) {
        return off;
    }
    ret = qcow2_update_refcount(bs, off, s->cluster_size,
                                (int64_t)x->l2_refcount - 1);
    if (ret < 0) {
        qcow2_free_clusters(bs, off, s->cluster_size, false);
        return ret;
    }
    return off;
}

/* Zero the host cluster @off and point entry @j at it. */
static int coroutine_fn zero_into(BlockDriverState *bs, uint8_t *l2, int j,
                                  uint64_t off, ExpandL2 *x)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (qcow2_offset_into_cluster(s, off)) {
        qcow2_signal_corruption(bs, "Cluster allocation offset %#" PRIx64
                                " unaligned (L2 offset: %#" PRIx64
                                ", L2 index: %#x)", off, x->l2_offset, j);
        return -EIO;
    }
    ret = qcow2_pre_write_overlap_check(bs, 0, off, s->cluster_size);
    if (ret == 0) {
        ret = bdrv_co_pwrite_zeroes(s->data_file, off, s->cluster_size, 0);
    }
    if (ret < 0) {
        return ret;
    }
    /* the zeroes reach the disk before the entry pointing at them */
    qcow2_cache_depends_on_flush(&s->l2_cache);
    qcow2_set_l2_entry(s, l2, j, off |
                       (x->l2_refcount == 1 ? QCOW_OFLAG_COPIED : 0));
    x->dirty = true;
    return 0;
}

/* Is the preallocated cluster @off of a zero entry referenced from
 * elsewhere too (a snapshot's own L2 table)?  Zeroing it in place would
 * change what that snapshot reads. */
static int coroutine_fn zero_alloc_shared(BlockDriverState *bs, uint64_t off,
                                          const ExpandL2 *x, bool *shared)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t rc;
    int ret = qcow2_get_refcount(bs, off >> s->cluster_bits, &rc);

    *shared = ret == 0 && rc > x->l2_refcount;
    return ret;
}

/* One zero entry: unallocated without a backing file, else a zeroed
 * host cluster (its own, or the preallocated one).  Unlike the
 * reference, a preallocated cluster shared with a snapshot is replaced
 * by a fresh one rather than zeroed under the snapshot. */
static int coroutine_fn expand_entry(BlockDriverState *bs, uint8_t *l2, int j,
                                     ExpandL2 *x)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t e = qcow2_l2_entry(s, l2, j);
    Qcow2ClusterType t = qcow2_cluster_type(s, e);
    int64_t off = e & L2E_OFFSET_MASK;
    bool fresh = t == QCOW2_CLUSTER_ZERO_PLAIN;
    int ret = 0;

    if (t != QCOW2_CLUSTER_ZERO_PLAIN && t != QCOW2_CLUSTER_ZERO_ALLOC) {
        return 0;
    }
    if (fresh && !bs->backing) {
        qcow2_set_l2_entry(s, l2, j, 0);
        x->dirty = true;
        return 0;
    }
    if (!fresh && !qcow2_offset_into_cluster(s, off)) {
        ret = zero_alloc_shared(bs, off, x, &fresh);
    }
    if (ret == 0 && fresh) {
        off = alloc_zero_target(bs, x);
        ret = off < 0 ? (int)off : 0;
    }
    if (ret == 0) {
        ret = zero_into(bs, l2, j, off, x);
    }
    if (ret < 0 && fresh && off > 0) {
        qcow2_free_clusters(bs, off, s->cluster_size, false);
    }
    if (ret == 0 && fresh && t == QCOW2_CLUSTER_ZERO_ALLOC) {
        /* the old cluster loses this table's references (after the
         * entry reaches the disk: the refcount cache depends on it) */
        ret = qcow2_update_refcount(bs, e & L2E_OFFSET_MASK, s->cluster_size,
                                    -(int64_t)x->l2_refcount);
    }
    return ret;
}

/* Every entry of one L2 table. */
static int coroutine_fn expand_table(BlockDriverState *bs, uint8_t *l2,
                                     ExpandL2 *x)
{
    BDRVQcow2State *s = bs->opaque;

    for (int j = 0; j < s->l2_size; j++) {
        int ret = expand_entry(bs, l2, j, x);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* An active L2 table, through the cache. */
static int coroutine_fn expand_active_l2(BlockDriverState *bs, ExpandL2 *x)
{
    BDRVQcow2State *s = bs->opaque;
    void *l2;
    int ret = qcow2_cache_get(bs, &s->l2_cache, x->l2_offset, &l2);

    if (ret < 0) {
        return ret;
    }
    ret = expand_table(bs, l2, x);
    if (x->dirty) {
        qcow2_cache_mark_dirty(&s->l2_cache, l2);
    }
    qcow2_cache_put(&s->l2_cache, &l2);
    return ret;
}

/* A snapshot's L2 table, read and written directly once the refcounts
 * and zeroes it will point at are stable. */
static int coroutine_fn expand_inactive_l2(BlockDriverState *bs, ExpandL2 *x)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *l2 = g_malloc(s->cluster_size);
    int ign = QCOW2_OL_INACTIVE_L2 |
              (x->l2_refcount > 1 ? QCOW2_OL_ACTIVE_L2 : 0);
    int ret = qcow2_read_table(bs, x->l2_offset, s->cluster_size, l2);

    if (ret == 0) {
        ret = expand_table(bs, l2, x);
    }
    if (ret < 0 || !x->dirty) {
        return ret;
    }
    ret = qcow2_cache_flush(bs, &s->refcount_cache);
    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    if (ret == 0) {
        ret = qcow2_pre_write_overlap_check(bs, ign, x->l2_offset,
                                            s->cluster_size);
    }
    return ret < 0 ? ret : q_pwrite(bs->file, x->l2_offset, s->cluster_size,
                                    l2);
}

typedef struct ExpandWalk {
    int64_t visited, total;
    AmendProgress *pr;
} ExpandWalk;

/* Every L2 table of one L1 table (@active: the image's own). */
static int coroutine_fn expand_l1(BlockDriverState *bs, const uint64_t *l1,
                                  uint32_t n, bool active, ExpandWalk *w)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;

    for (uint32_t i = 0; i < n && ret == 0; i++) {
        ExpandL2 x = { .l2_offset = l1[i] & L1E_OFFSET_MASK };

        if (!x.l2_offset) {
            amend_status(bs, w->pr, ++w->visited, w->total);
            continue;
        }
        if (qcow2_offset_into_cluster(s, x.l2_offset)) {
            qcow2_signal_corruption(bs, "L2 table offset %#" PRIx64
                                    " unaligned (L1 index: %#" PRIx32 ")",
                                    x.l2_offset, i);
            return -EIO;
        }
        ret = qcow2_get_refcount(bs, x.l2_offset >> s->cluster_bits,
                                 &x.l2_refcount);
        if (ret == 0 && x.l2_refcount > INT32_MAX) {
            return -EINVAL;     /* hostile: no table is shared that often */
        }
        if (ret == 0) {
            ret = active ? expand_active_l2(bs, &x)
                         : expand_inactive_l2(bs, &x);
        }
        amend_status(bs, w->pr, ++w->visited, w->total);
    }
    return ret;
}

/* A snapshot's L1 table, host order (NULL: unreadable, *ret says why).
 * A bad size or offset is reported on its own first, as the reference
 * does, and nothing is read. */
static uint64_t *coroutine_fn read_snapshot_l1(BlockDriverState *bs,
                                               const Qcow2InactiveL1 *sn,
                                               int *ret)
{
    g_autofree uint8_t *buf = NULL;
    uint64_t *l1;
    Error *err = NULL;

    *ret = qcow2_check_snapshot_l1(bs, sn->offset, sn->size, &err);
    if (*ret < 0) {
        error_report_err(err);
        return NULL;
    }
    buf = g_malloc((size_t)sn->size * 8 + 1);
    l1 = g_new(uint64_t, sn->size + 1);
    *ret = qcow2_read_table(bs, sn->offset, (uint64_t)sn->size * 8, buf);
    if (*ret < 0) {
        g_free(l1);
        return NULL;
    }
    for (uint32_t i = 0; i < sn->size; i++) {
        l1[i] = q_ld64(buf + i * 8);
    }
    return l1;
}

/* Drop every cached L2 table after writing it back: snapshot L2 tables
 * are read from the file and may be the active ones. */
static int coroutine_fn empty_l2_cache(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = qcow2_cache_flush(bs, &s->l2_cache);

    for (int i = 0; ret == 0 && i < s->l2_cache.size; i++) {
        if (s->l2_cache.entries[i].offset) {
            qcow2_cache_discard(&s->l2_cache, s->l2_cache.entries[i].offset);
        }
    }
    return ret;
}

/* Zero flags do not exist in v2: expand them in every L1 table. */
static int coroutine_fn expand_zero_clusters(BlockDriverState *bs,
                                             AmendProgress *pr)
{
    BDRVQcow2State *s = bs->opaque;
    guint nsn = s->inactive_l1 ? s->inactive_l1->len : 0;
    ExpandWalk w = { 0, s->l1_size, pr };
    int ret;

    for (guint i = 0; i < nsn; i++) {
        w.total += g_array_index(s->inactive_l1, Qcow2InactiveL1, i).size;
    }
    ret = expand_l1(bs, s->l1_table, s->l1_size, true, &w);
    if (ret == 0) {
        ret = empty_l2_cache(bs);
    }
    for (guint i = 0; ret == 0 && i < nsn; i++) {
        const Qcow2InactiveL1 *sn = &g_array_index(s->inactive_l1,
                                                   Qcow2InactiveL1, i);
        g_autofree uint64_t *l1 = read_snapshot_l1(bs, sn, &ret);
        if (l1) {
            ret = expand_l1(bs, l1, sn->size, false, &w);
        }
    }
    if (ret == 0) {
        ret = qcow2_cache_flush(bs, &s->refcount_cache);
    }
    return ret == 0 ? empty_l2_cache(bs) : ret;
}

/* ---- downgrade to v2 ---- */

/* Does the active image hold a compressed cluster? */
static int coroutine_fn has_compressed_clusters(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t off = 0;

    while (off < s->h.size) {
        uint64_t n = MIN(s->h.size - off, (uint64_t)INT32_MAX), host;
        Qcow2SubclusterType t;
        int ret = qcow2_get_host_offset(bs, off, &n, &host, &t);

        if (ret < 0) {
            return ret;
        }
        if (t == QCOW2_SC_COMPRESSED) {
            return 1;
        }
        off += n;
    }
    return 0;
}

/* What v2 cannot hold, refused with the reference's messages. */
static int coroutine_fn downgrade_refusals(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    SnapFacts f;
    int ret;

    if (s->refcount_order != 4) {
        error_setg(errp, "compat=0.10 requires refcount_bits=16");
        return -ENOTSUP;
    }
    if (has_data_file(s)) {
        error_setg(errp, "Cannot downgrade an image with a data file");
        return -ENOTSUP;
    }
    ret = read_snap_facts(bs, &f);
    if (ret < 0 || f.blocks_v2) {
        error_setg(errp, "Internal snapshots prevent downgrade of image");
        return -ENOTSUP;
    }
    return 0;
}

/* The dirty bit of lazy refcounts goes first (the refcounts must be
 * right), then every other incompatible feature refuses. */
static int coroutine_fn downgrade_features(BlockDriverState *bs,
                                           Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t left;
    int ret;

    if (s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY) {
        ret = qcow2_mark_clean(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to make the image clean");
            return ret;
        }
    }
    left = s->h.incompatible_features & ~QCOW2_INCOMPAT_COMPRESSION;
    if (left) {
        error_setg(errp, "Cannot downgrade an image with incompatible "
                   "features 0x%" PRIx64 " set", left);
        return -ENOTSUP;
    }
    return 0;
}

/* zstd has no place in v2: fine only while nothing is compressed. */
static int coroutine_fn downgrade_compression(BlockDriverState *bs,
                                              Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (s->h.compression_type == QCOW2_COMPRESSION_ZLIB) {
        return 0;
    }
    ret = has_compressed_clusters(bs);
    if (ret < 0) {
        error_setg(errp, "Failed to check block status");
        return -EINVAL;
    }
    if (ret) {
        error_setg(errp, "Cannot downgrade an image with zstd compression "
                   "type and existing compressed clusters");
        return -ENOTSUP;
    }
    s->h.incompatible_features &= ~QCOW2_INCOMPAT_COMPRESSION;
    s->h.compression_type = QCOW2_COMPRESSION_ZLIB;
    s->compression_type = QCOW2_COMPRESSION_ZLIB;
    return 0;
}

/* v3 -> v2: refusals first, then the zero clusters, then the header. */
static int coroutine_fn downgrade(BlockDriverState *bs, AmendProgress *pr,
                                  Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = downgrade_refusals(bs, errp);

    if (ret == 0) {
        ret = downgrade_features(bs, errp);
    }
    if (ret < 0) {
        return ret;
    }
    /* compatible and autoclear features may simply go */
    s->h.compatible_features = 0;
    s->h.autoclear_features = 0;
    s->use_lazy_refcounts = false;
    co_mutex_lock(&s->lock);
    ret = expand_zero_clusters(bs, pr);
    co_mutex_unlock(&s->lock);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to turn zero into data clusters");
        return ret;
    }
    ret = downgrade_compression(bs, errp);
    if (ret < 0) {
        return ret;
    }
    s->h.version = 2;
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        s->h.version = 3;
        return header_failed(ret, errp);
    }
    return 0;
}

/* ---- the driver entry ---- */

/* data_file / data_file_raw go into the header, which is rewritten
 * whatever was asked (as the reference does). */
static int coroutine_fn apply_data_file(BlockDriverState *bs,
                                        const AmendPlan *p, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (p->data_file_raw) {
        s->h.autoclear_features |= QCOW2_AUTOCLEAR_DATA_RAW;
    } else {
        s->h.autoclear_features &= ~QCOW2_AUTOCLEAR_DATA_RAW;
    }
    if (p->data_file) {
        g_free(s->image_data_file);
        s->image_data_file = p->data_file[0] ? g_strdup(p->data_file) : NULL;
    }
    ret = qcow2_update_header(bs);
    return ret < 0 ? header_failed(ret, errp) : 0;
}

/* backing_file / backing_fmt may only repeat what the image records. */
static int check_backing(BlockDriverState *bs, const AmendPlan *p,
                         Error **errp)
{
    if (!p->backing_file && !p->backing_fmt) {
        return 0;
    }
    if (g_strcmp0(p->backing_file, bs->backing_file) ||
        g_strcmp0(p->backing_fmt, bs->backing_format)) {
        error_setg(errp, "Cannot amend the backing file");
        error_append_hint(errp, "You can use 'qemu-img rebase' instead.\n");
        return -EINVAL;
    }
    return 0;
}

/* lazy_refcounts: on needs v3; off makes the image clean first. */
static int coroutine_fn apply_lazy(BlockDriverState *bs, const AmendPlan *p,
                                   Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old = s->h.compatible_features;
    int ret;

    if (p->lazy == s->use_lazy_refcounts) {
        return 0;
    }
    if (p->lazy && p->new_version < 3) {
        error_setg(errp, "Lazy refcounts only supported with compatibility "
                   "level 1.1 and above (use compat=1.1 or greater)");
        return -EINVAL;
    }
    if (!p->lazy) {
        ret = qcow2_mark_clean(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to make the image clean");
            return ret;
        }
    }
    s->h.compatible_features ^= QCOW2_COMPAT_LAZY_REFCOUNTS;
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        s->h.compatible_features = old;
        return header_failed(ret, errp);
    }
    s->use_lazy_refcounts = p->lazy;
    return 0;
}

/* The refcount width walks report through the amend progress. */
static void refwidth_status(BlockDriverState *bs, int64_t done, int64_t total,
                            void *opaque)
{
    amend_status(bs, opaque, done, total);
}

/* Refcount width: v3 only (refwidth.c does the work). */
static int coroutine_fn apply_refcount_bits(BlockDriverState *bs,
                                            const AmendPlan *p,
                                            AmendProgress *pr, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (p->refcount_bits == s->refcount_bits) {
        return 0;
    }
    if (p->new_version < 3 && p->refcount_bits != 16) {
        error_setg(errp, "Refcount widths other than 16 bits require "
                   "compatibility level 1.1 or above (use compat=1.1 or "
                   "greater)");
        return -EINVAL;
    }
    pr->current = AMEND_OP_REFCOUNT;
    co_mutex_lock(&s->lock);
    ret = qcow2_change_refcount_order(bs, __builtin_ctzll(p->refcount_bits),
                                      refwidth_status, pr, errp);
    co_mutex_unlock(&s->lock);
    return ret;
}

/* Everything before the size change, in the reference's order. */
static void coroutine_fn amend_first(void *opaque)
{
    AmendCo *c = opaque;
    BlockDriverState *bs = c->bs;
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;

    if (c->plan->new_version > (int)s->h.version) {
        c->prog->current = AMEND_OP_UPGRADE;
        ret = upgrade(bs, c->prog, c->errp);
    }
    if (ret == 0) {
        ret = apply_refcount_bits(bs, c->plan, c->prog, c->errp);
    }
    if (ret == 0) {
        ret = apply_data_file(bs, c->plan, c->errp);
    }
    if (ret == 0) {
        ret = check_backing(bs, c->plan, c->errp);
    }
    if (ret == 0) {
        ret = apply_lazy(bs, c->plan, c->errp);
    }
    c->ret = ret;
}

/* The downgrade comes last. */
static void coroutine_fn amend_last(void *opaque)
{
    AmendCo *c = opaque;
    BDRVQcow2State *s = c->bs->opaque;

    c->ret = 0;
    if (c->plan->new_version < (int)s->h.version) {
        c->prog->current = AMEND_OP_DOWNGRADE;
        c->ret = downgrade(c->bs, c->prog, c->errp);
    }
}

/* size=: an exact resize through a backend of our own, as a user's. */
static int amend_resize(BlockDriverState *bs, uint64_t size, Error **errp)
{
    BlockBackend *blk;
    int ret;

    if (size > INT64_MAX) {
        error_setg(errp, "Image size too large");
        return -EFBIG;
    }
    blk = blk_new(BLK_PERM_RESIZE, BLK_PERM_ALL);
    ret = blk_insert_bs(blk, bs, errp);
    if (ret == 0) {
        ret = blk_truncate(blk, size, true, PREALLOC_MODE_OFF, 0, errp);
    }
    blk_unref(blk);
    return ret;
}

/* .amend->amend: check everything asked, then apply it in order. */
static int qcow2_amend(BlockDriverState *bs, QDict *opts,
                       BlockAmendStatusCB *cb, void *cb_opaque, bool force,
                       Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    AmendPlan plan;
    AmendProgress prog = { .cb = cb, .opaque = cb_opaque };
    AmendCo c = { bs, &plan, &prog, errp, 0 };
    int ret = parse_plan(bs, opts, &plan, errp);

    (void)force;                /* only encryption changes need it */
    if (ret < 0) {
        return ret;
    }
    prog.total_ops = (plan.new_version != (int)s->h.version) +
                     (plan.refcount_bits != s->refcount_bits);
    co_run_sync(amend_first, &c);
    if (c.ret == 0 && plan.new_size) {
        c.ret = amend_resize(bs, plan.new_size, errp);
    }
    if (c.ret == 0) {
        co_run_sync(amend_last, &c);
    }
    return c.ret;
}

const BlockDriverAmendOps qcow2_amend_ops = {
    .opts = qcow2_amend_opts,
    .amend = qcow2_amend,
};
