#include "config.h"
/*
 * qcow2 information (get_info, the "format-specific" data of info),
 * measure and truncate.
 */
#include "qcow2.h"

static int qcow2_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    BDRVQcow2State *s = bs->opaque;

    bdi->cluster_size = s->cluster_size;
    bdi->subcluster_size = s->extended_l2 ? s->subcluster_size : 0;
    bdi->is_dirty = s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY;
    bdi->needs_compressed_writes = false;
    bdi->is_encrypted = s->h.crypt_method != 0;
    return 0;
}

/* compat, compression type, and for v3 the feature flags. */
static QDict *qcow2_get_specific_info(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    QDict *spec = qdict_new();
    QDict *data = qdict_new();
    uint64_t inc = s->h.incompatible_features;

    qdict_put_str(data, "compat", s->h.version >= 3 ? "1.1" : "0.10");
    qdict_put_str(data, "compression-type",
                  s->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" :
                  "zlib");
    if (s->h.version >= 3) {
        qdict_put_bool(data, "lazy-refcounts",
                       s->h.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS);
    }
    if (s->bitmap_info && !qlist_empty(s->bitmap_info)) {
        qdict_put(data, "bitmaps", qobject_ref(s->bitmap_info));
    }
    qdict_put_int(data, "refcount-bits", s->refcount_bits);
    if (s->h.crypt_method == QCOW2_CRYPT_AES) {
        /* (LUKS adds its header's details: not described yet) */
        QDict *enc = qdict_new();

        qdict_put_str(enc, "format", "aes");
        qdict_put(data, "encrypt", enc);
    }
    if (s->h.version >= 3) {
        if (s->image_data_file) {
            qdict_put_str(data, "data-file", s->image_data_file);
        }
        if (inc & QCOW2_INCOMPAT_DATA_FILE) {
            qdict_put_bool(data, "data-file-raw", s->h.autoclear_features &
                           QCOW2_AUTOCLEAR_DATA_RAW);
        }
        qdict_put_bool(data, "corrupt", inc & QCOW2_INCOMPAT_CORRUPT);
        qdict_put_bool(data, "extended-l2", s->extended_l2);
    }
    qdict_put_str(spec, "type", "qcow2");
    qdict_put(spec, "data", data);
    return spec;
}

const BlockDriverInfoOps qcow2_info_ops = {
    .get_info = qcow2_get_info,
    .get_specific_info = qcow2_get_specific_info,
};

/* ---- measure ---- */

/* Refcount table + blocks needed to count @clusters clusters plus
 * themselves: iterate to the fixed point. */
static uint64_t refcount_meta_size(uint64_t clusters, uint64_t cs, int order)
{
    uint64_t per_block = cs * 8 >> order, per_table = cs / 8;
    uint64_t blocks = 0, table = 0, n = 0, last;

    do {
        last = n;
        blocks = DIV_ROUND_UP(clusters + table + blocks, per_block);
        table = DIV_ROUND_UP(blocks, per_table);
        n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cs;
}

/* Every byte a fully allocated image of @size needs. */
static uint64_t prealloc_size(uint64_t size, uint64_t cs, int order,
                              bool ext_l2)
{
    uint64_t esize = ext_l2 ? 16 : 8, meta = cs, nl2e, nl1e;
    uint64_t aligned = ROUND_UP(size, cs);

    nl2e = ROUND_UP(aligned / cs, cs / esize);
    meta += nl2e * esize;
    nl1e = ROUND_UP(nl2e * esize / cs, cs / 8);
    meta += nl1e * 8;
    meta += refcount_meta_size((meta + aligned) / cs, cs, order);
    return meta + aligned;
}

typedef struct StatusCo {
    BlockDriverState *bs;
    int64_t off, bytes, pnum;
    int ret;
} StatusCo;

static void coroutine_fn status_entry(void *opaque)
{
    StatusCo *c = opaque;

    c->ret = bdrv_co_block_status_above(c->bs, NULL, c->off, c->bytes,
                                        &c->pnum, NULL, NULL, NULL);
}

/* Data clusters of @in_bs that hold data (not zero, allocated). */
static int measure_data(BlockDriverState *in_bs, uint64_t cs, uint64_t *req)
{
    int64_t len = bdrv_getlength(in_bs), off = 0, pnum;
    uint64_t last_end = 0;

    if (len < 0) {
        return len;
    }
    *req = 0;
    while (off < len) {
        StatusCo c = { in_bs, off, len - off, 0, 0 };
        int ret;

        co_run_sync(status_entry, &c);
        ret = c.ret;
        pnum = c.pnum;
        if (ret < 0) {
            return ret;
        }
        if ((ret & BDRV_BLOCK_DATA) && !(ret & BDRV_BLOCK_ZERO)) {
            uint64_t a = MAX(ROUND_DOWN(off, cs), last_end);
            uint64_t b = ROUND_UP(off + pnum, cs);
            if (b > a) {
                *req += b - a;
                last_end = b;
            }
        }
        off += pnum;
    }
    return 0;
}

/* Can the source hold persistent bitmaps (a qcow2 v3 image)?  Only then
 * does measure report their share, as the reference. */
static bool source_has_bitmaps(BlockDriverState *in_bs)
{
    BDRVQcow2State *s = in_bs->opaque;

    return in_bs->drv && !strcmp(in_bs->drv->format_name, "qcow2") &&
           s->h.version >= 3;
}

/* A refcount width given as a power of two up to 64 other than 16. */
static bool odd_refcount_width(const char *v)
{
    char *end;
    unsigned long long n = v ? strtoull(v, &end, 10) : 16;

    return v && *v && !*end && n && n <= 64 && !(n & (n - 1)) && n != 16;
}

/* The options measure reads, checked with the reference's measure's
 * messages; it ignores the others (encryption, lazy refcounts, data
 * file, compression type, a backing format without a file). */
static int measure_args(QDict *opts, Qcow2CreateArgs *a, Error **errp)
{
    /* not backing_file: measure lets a backing file go with any
     * preallocation (qcow2_measure reads it from @opts itself) */
    static const char *const keys[] = {
        "size", "cluster_size", "extended_l2", "refcount_bits",
        "preallocation", NULL
    };
    static const char *const modes[] = {
        "off", "metadata", "falloc", "full", NULL
    };
    g_autoptr(QDict) o = qdict_new();
    const char *compat = qdict_get_try_str(opts, "compat");
    const char *pre = qdict_get_try_str(opts, "preallocation");

    for (const char *const *k = keys; *k; k++) {
        if (qdict_haskey(opts, *k)) {
            qdict_put_obj(o, *k, qobject_ref(qdict_get(opts, *k)));
        }
    }
    if (compat && strcmp(compat, "0.10") && strcmp(compat, "1.1")) {
        error_setg(errp, "Invalid compatibility level: '%s'", compat);
        return -EINVAL;
    }
    /* compat takes no further part: the reference's measure sizes an
     * extended-L2 image of compat=0.10 without complaint */
    if (compat && !strcmp(compat, "0.10") &&
        odd_refcount_width(qdict_get_try_str(opts, "refcount_bits"))) {
        error_setg(errp, "Different refcount widths than 16 bits require "
                   "compatibility level 1.1 or above (use compat=1.1 or "
                   "greater)");
        return -EINVAL;
    }
    if (pre && !g_strv_contains(modes, pre)) {
        error_setg(errp, "invalid parameter value: %s", pre);
        return -EINVAL;
    }
    return qcow2_parse_create_args(o, a, errp);
}

/* The LUKS key material's bytes for encrypt.cipher-alg/-mode: the
 * master key's length (doubled for xts), or 0 for an unknown cipher. */
static uint64_t luks_key_bytes(QDict *opts)
{
    static const struct { const char *alg; unsigned len; } algs[] = {
        { "aes-128", 16 }, { "aes-192", 24 }, { "aes-256", 32 },
        { "twofish-128", 16 }, { "twofish-192", 24 }, { "twofish-256", 32 },
        { "serpent-128", 16 }, { "serpent-192", 24 }, { "serpent-256", 32 },
        { "cast5-128", 16 },
    };
    const char *alg = bdrv_opt_str(opts, "encrypt.cipher-alg", "aes-256");
    const char *mode = bdrv_opt_str(opts, "encrypt.cipher-mode", "xts");

    for (size_t i = 0; i < G_N_ELEMENTS(algs); i++) {
        if (!strcmp(alg, algs[i].alg)) {
            return algs[i].len * (strcmp(mode, "xts") ? 1 : 2);
        }
    }
    return 0;
}

/* A LUKS header in front of the data (encrypt.format=luks): a 4 KiB
 * header then 8 key slots, each the key split over 4000 stripes in
 * 512-byte sectors aligned to 4 KiB; the data starts after them. */
static int luks_payload(QDict *opts, uint64_t *bytes, Error **errp)
{
    uint64_t key = luks_key_bytes(opts), slot;

    *bytes = 0;
    if (g_strcmp0(bdrv_opt_str(opts, "encrypt.format", NULL), "luks")) {
        return 0;
    }
    if (!qdict_haskey(opts, "encrypt.key-secret")) {
        error_setg(errp, "Parameter 'encrypt.key-secret' is required for "
                   "cipher");
        return -EINVAL;
    }
    if (!key) {
        error_setg(errp, "Unsupported LUKS cipher for measure");
        return -ENOTSUP;
    }
    slot = ROUND_UP(DIV_ROUND_UP(key * 4000, 512), 8);
    *bytes = (8 + 8 * slot) * 512;
    return 0;
}

int qcow2_measure(QDict *opts, BlockDriverState *in_bs,
                  BlockMeasureInfo *info, Error **errp)
{
    Qcow2CreateArgs a = { 0 };
    uint64_t size, required = 0, luks = 0;
    bool full;
    int ret = measure_args(opts, &a, errp);

    if (ret == 0) {
        ret = luks_payload(opts, &luks, errp);
    }
    if (ret < 0) {
        return ret;
    }
    size = a.size;
    if (in_bs) {
        int64_t l = bdrv_getlength(in_bs);
        if (l < 0) {
            error_setg_errno(errp, -l, "Unable to get image size");
            return l;
        }
        size = l;
    }
    size = ROUND_UP(size, a.cluster_size);
    if (qcow2_l1_entries(__builtin_ctzll(a.cluster_size),
                         __builtin_ctzll(a.cluster_size) -
                         (a.extended_l2 ? 4 : 3), size) > QCOW2_MAX_L1_SIZE / 8) {
        error_setg(errp, "The image size is too large (try using a larger "
                   "cluster size)");
        return -EFBIG;
    }
    full = a.prealloc == PREALLOC_MODE_FULL ||
           a.prealloc == PREALLOC_MODE_FALLOC;
    if (full || (in_bs && bdrv_opt_str(opts, "backing_file", NULL))) {
        /* with a backing file, how much it shares with the source is
         * unknown: count every cluster, as the reference does */
        required = size;
    } else if (in_bs) {
        ret = measure_data(in_bs, a.cluster_size, &required);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Unable to get block status");
            return ret;
        }
    }
    info->fully_allocated = prealloc_size(size, a.cluster_size,
                                          __builtin_ctzll(a.refcount_bits),
                                          a.extended_l2);
    info->fully_allocated += ROUND_UP(luks, a.cluster_size);
    info->required = info->fully_allocated - size + required;
    /* a v2 target cannot hold them (measure_args keeps compat out of @a) */
    info->has_bitmaps = in_bs && source_has_bitmaps(in_bs) &&
                        g_strcmp0(qdict_get_try_str(opts, "compat"), "0.10");
    info->bitmaps = info->has_bitmaps ?
                    qcow2_bitmaps_measure(in_bs, a.cluster_size) : 0;
    return 0;
}

/* ---- truncate ---- */

/* After a shrink: the file ends after the last used cluster, as the
 * reference leaves it.  As the reference, only a file whose sector-rounded
 * length goes past that end is cut: one ending inside its last used
 * cluster (a small bitmap directory at the end of a 64k-cluster file, an
 * L1 table written only to its own length) stays untouched. */
static int coroutine_fn trim_file(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t flen;
    uint64_t c = 0;
    int ret;

    co_mutex_lock(&s->lock);
    ret = qcow2_file_used_end(bs, &flen, &c);
    co_mutex_unlock(&s->lock);
    if (ret == 0 && (c << s->cluster_bits) < (uint64_t)flen) {
        ret = bdrv_co_truncate(bs->file, c << s->cluster_bits, false,
                               PREALLOC_MODE_OFF, 0, errp);
    }
    return ret;
}

/* Grow: a larger L1 table if needed, then the new size in the header
 * (each failure with the reference's message). */
static int coroutine_fn set_size(BlockDriverState *bs, uint64_t size,
                                 Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t b[8];
    int ret;

    co_mutex_lock(&s->lock);
    ret = qcow2_grow_l1_table(bs, qcow2_l1_entries(s->cluster_bits,
                                                   s->l2_bits, size), true);
    co_mutex_unlock(&s->lock);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to grow the L1 table");
        return ret;
    }
    q_st64(b, size);
    ret = q_pwrite(bs->file, 24, 8, b);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update the image size");
        return ret;
    }
    s->h.size = size;
    return 0;
}

/* Growing over a longer backing file: the new area must read as zeroes,
 * not as the backing file's data (zero clusters, explicit zeroes for the
 * unaligned head). */
static int coroutine_fn zero_grown_area(BlockDriverState *bs, uint64_t old,
                                        uint64_t new_size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t grain = s->extended_l2 ? s->subcluster_size : s->cluster_size;
    uint64_t zstart = ROUND_UP(old, grain);
    int ret = 0;

    if (new_size > zstart) {
        /* as the reference marks them: whole clusters up to the end of
         * the last one, but a growth within the cluster it starts in
         * only up to its last (sub)cluster */
        uint64_t end = ROUND_UP(zstart, s->cluster_size) >= new_size ?
                       ROUND_UP(new_size, grain) :
                       ROUND_UP(new_size, s->cluster_size);

        co_mutex_lock(&s->lock);
        ret = qcow2_zero_range(bs, zstart, end - zstart, false);
        co_mutex_unlock(&s->lock);
    }
    if (ret == 0 && zstart > old) {
        uint64_t n = MIN(zstart, new_size) - old;
        g_autofree uint8_t *buf = g_malloc0(n);
        IOVector v;

        iov_vec_init_buf(&v, buf, n);
        ret = qcow2_co_pwritev(bs, old, n, &v, 0);
    }
    return ret;
}

/* The shrink or growth is allowed, with the reference's messages. */
static int check_truncate(BDRVQcow2State *s, uint64_t offset,
                          PreallocMode prealloc, Error **errp)
{
    if (offset & 511) {
        error_setg(errp, "The new size must be a multiple of 512");
        return -EINVAL;
    }
    /* v2 snapshots need not record their disk size: any resize could
     * leave one that no longer knows it */
    if (s->h.nb_snapshots && s->h.version < 3) {
        error_setg(errp, "Can't resize a v2 image which has snapshots");
        return -ENOTSUP;
    }
    if (offset < s->h.size && prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Preallocation can't be used for shrinking an "
                   "image");
        return -EINVAL;
    }
    return 0;
}

/* Shrink: L1 entries past those @size needs are cleared and their L2
 * tables freed (and discarded in the file), as the reference does; the
 * header keeps the L1 table's size.  The cleared entries reach the disk
 * (flushed) before any table's refcount drops: a power cut in between
 * would otherwise leave an entry pointing at a free cluster. */
static int coroutine_fn shrink_l1(BlockDriverState *bs, uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t keep = qcow2_l1_entries(s->cluster_bits, s->l2_bits, size);
    g_autoptr(GArray) freed = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    int ret = 0;

    for (uint64_t i = keep; i < s->l1_size && ret == 0; i++) {
        uint64_t l2 = s->l1_table[i] & L1E_OFFSET_MASK;

        if (!s->l1_table[i]) {
            continue;
        }
        s->l1_table[i] = 0;
        ret = qcow2_write_l1_entry(bs, i);
        if (ret == 0 && l2) {
            g_array_append_val(freed, l2);
        }
    }
    if (freed->len) {
        int r = bdrv_co_flush(bs->file->bs);
        ret = ret < 0 ? ret : r;
    }
    if (freed->len && ret == 0) {
        bdrv_debug_event(bs->file, BLKDBG_L1_SHRINK_FREE_L2_CLUSTERS);
    }
    for (guint k = 0; k < freed->len && ret == 0; k++) {
        uint64_t l2 = g_array_index(freed, uint64_t, k);

        qcow2_cache_discard(&s->l2_cache, l2);
        qcow2_free_clusters(bs, l2, s->cluster_size, true);
    }
    return ret;
}

/* Shrink step @what failed with @ret: the reference's words for it. */
static int shrink_failed(int ret, const char *what, Error **errp)
{
    error_setg_errno(errp, -ret, "%s", what);
    return ret;
}

/* Shrink: the clusters past the new end go, then the L2 tables and the
 * refcount blocks nothing needs, the file is trimmed. */
static int coroutine_fn shrink(BlockDriverState *bs, uint64_t offset,
                               Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t from = ROUND_UP(offset, s->cluster_size);
    uint64_t end = ROUND_UP(s->h.size, s->cluster_size);
    int ret = 0;

    co_mutex_lock(&s->lock);
    if (from < end) {
        ret = qcow2_discard_cropped(bs, from, end - from);
        if (ret < 0) {
            co_mutex_unlock(&s->lock);
            return shrink_failed(ret, "Failed to discard cropped clusters",
                                 errp);
        }
        ret = shrink_l1(bs, offset);
    }
    co_mutex_unlock(&s->lock);
    if (ret == 0) {
        ret = qcow2_co_flush_to_os(bs);
    }
    if (ret < 0) {
        return shrink_failed(ret, "Failed to reduce the number of L2 tables",
                             errp);
    }
    co_mutex_lock(&s->lock);
    ret = qcow2_shrink_reftable(bs);
    co_mutex_unlock(&s->lock);
    if (ret == 0) {
        ret = qcow2_co_flush_to_os(bs);
    }
    if (ret < 0) {
        return shrink_failed(ret, "Failed to discard unused refblocks", errp);
    }
    trim_file(bs, NULL);    /* freed L2 tables too, with a data file */
    return 0;
}

/* An external data file follows the new size when no preallocation
 * writes it (a raw one gets its clusters mapped, as metadata
 * preallocation does). */
static int coroutine_fn resize_data_file(BlockDriverState *bs,
                                         uint64_t offset, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;

    return bdrv_co_truncate(s->data_file, offset, false, PREALLOC_MODE_OFF,
                            0, errp);
}

/* Does a growth's preallocation give clusters that read as zeroes (new
 * clusters at the end of the image's own file, which grows as zeroes)?
 * Then nothing is left to zero, even without a zero flag (v2). */
static bool grows_into_zeroes(BlockDriverState *bs, uint64_t old,
                              uint64_t offset, PreallocMode prealloc)
{
    BDRVQcow2State *s = bs->opaque;

    return s->data_file == bs->file && offset >= old &&
           (prealloc == PREALLOC_MODE_FALLOC ||
            prealloc == PREALLOC_MODE_FULL);
}

int coroutine_fn qcow2_co_truncate(BlockDriverState *bs, int64_t offset,
                                   bool exact, PreallocMode prealloc,
                                   BdrvRequestFlags flags, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old = s->h.size;
    bool external = s->data_file && s->data_file != bs->file;
    int ret = check_truncate(s, offset, prealloc, errp);

    if (external && prealloc == PREALLOC_MODE_OFF && (uint64_t)offset > old &&
        (s->h.autoclear_features & QCOW2_AUTOCLEAR_DATA_RAW)) {
        prealloc = PREALLOC_MODE_METADATA;
    }

    if (ret == 0 && (uint64_t)offset < old) {
        ret = shrink(bs, offset, errp);
    }
    if (ret < 0) {
        return ret;
    }
    if ((flags & BDRV_REQ_ZERO_WRITE) && s->h.version < 3 &&
        (uint64_t)offset > ROUND_UP(old, s->cluster_size) &&
        !grows_into_zeroes(bs, old, offset, prealloc)) {
        /* no zero flag: the reference grows the L1 table, then fails
         * before the new size is written */
        co_mutex_lock(&s->lock);
        ret = qcow2_grow_l1_table(bs, qcow2_l1_entries(s->cluster_bits,
                                                       s->l2_bits, offset),
                                  true);
        co_mutex_unlock(&s->lock);
        error_setg_errno(errp, ENOTSUP, "Failed to zero out new clusters");
        return -ENOTSUP;
    }
    ret = set_size(bs, offset, errp);
    if (ret < 0) {
        return ret;
    }
    if (external && prealloc == PREALLOC_MODE_OFF) {
        ret = resize_data_file(bs, offset, errp);
        if (ret < 0) {
            return ret;
        }
    }
    /* preallocation before any zeroing, as the reference: the zeroes
     * then mark its clusters, and its file may give them */
    /* (also to the same size: the refcount area moves all the same) */
    if (!external && (uint64_t)offset >= old &&
        (prealloc == PREALLOC_MODE_FALLOC || prealloc == PREALLOC_MODE_FULL)) {
        ret = qcow2_grow_preallocated(bs, old, offset, prealloc, &flags,
                                      errp);
    } else if (prealloc != PREALLOC_MODE_OFF && (uint64_t)offset > old) {
        ret = qcow2_preallocate(bs, old, offset, prealloc, errp);
    }
    if (ret == 0 && (flags & BDRV_REQ_ZERO_WRITE) && (uint64_t)offset > old) {
        ret = zero_grown_area(bs, old, offset);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to zero the new area");
        }
    }
    return ret;
}
