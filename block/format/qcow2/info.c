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
    bdi->is_dirty = s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY;
    bdi->needs_compressed_writes = false;
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
    qdict_put_int(data, "refcount-bits", s->refcount_bits);
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

int qcow2_measure(QDict *opts, BlockDriverState *in_bs,
                  BlockMeasureInfo *info, Error **errp)
{
    Error *e = NULL;
    uint64_t cs = bdrv_opt_size(opts, "cluster_size", 65536, &e);
    uint64_t rb = e ? 16 : bdrv_opt_number(opts, "refcount_bits", 16, &e);
    bool ext = e ? false : bdrv_opt_bool(opts, "extended_l2", false, &e);
    const char *pa = bdrv_opt_str(opts, "preallocation", "off");
    const char *compat = bdrv_opt_str(opts, "compat", "1.1");
    PreallocMode mode;
    uint64_t size = 0, required = 0;
    int ret;

    if (!e && (cs < 512 || cs > 2 * MiB || !QEMU_IS_POW2(cs))) {
        error_setg(&e, "Cluster size must be a power of two between 512 "
                   "and 2048k");
    }
    if (!e && (rb > 64 || !QEMU_IS_POW2(rb))) {
        error_setg(&e, "Refcount width must be a power of two and may not "
                   "exceed 64 bits");
    }
    if (!e && !prealloc_mode_parse(pa, &mode)) {
        error_setg(&e, "Invalid preallocation mode: '%s'", pa);
    }
    if (!e && in_bs) {
        int64_t l = bdrv_getlength(in_bs);
        size = l < 0 ? 0 : l;
    } else if (!e) {
        size = bdrv_opt_size(opts, "size", 0, &e);
    }
    if (e) {
        error_propagate(errp, e);
        return -EINVAL;
    }
    size = ROUND_UP(size, cs);
    if (in_bs && bdrv_opt_str(opts, "backing_file", NULL)) {
        /* how much the backing file shares with the source is unknown:
         * count every cluster, as the reference does */
        required = size;
    } else if (in_bs && mode != PREALLOC_MODE_FULL &&
               mode != PREALLOC_MODE_FALLOC) {
        ret = measure_data(in_bs, cs, &required);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Unable to get block status");
            return ret;
        }
    } else if (mode == PREALLOC_MODE_FULL || mode == PREALLOC_MODE_FALLOC) {
        required = size;
    }
    info->fully_allocated = prealloc_size(size, cs, __builtin_ctzll(rb), ext);
    info->required = info->fully_allocated - size + required;
    info->has_bitmaps = in_bs && source_has_bitmaps(in_bs) &&
                        strcmp(compat, "0.10") && strcmp(compat, "v2");
    info->bitmaps = 0;
    return 0;
}

/* ---- truncate ---- */

/* Grow: a larger L1 table if needed, then the new size in the header. */
static int coroutine_fn set_size(BlockDriverState *bs, uint64_t size)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t b[8];
    int ret;

    co_mutex_lock(&s->lock);
    ret = qcow2_grow_l1_table(bs, qcow2_l1_entries(s->cluster_bits,
                                                   s->l2_bits, size), false);
    co_mutex_unlock(&s->lock);
    if (ret < 0) {
        return ret;
    }
    q_st64(b, size);
    ret = q_pwrite(bs->file, 24, 8, b);
    if (ret == 0) {
        s->h.size = size;
    }
    return ret;
}

int coroutine_fn qcow2_co_truncate(BlockDriverState *bs, int64_t offset,
                                   bool exact, PreallocMode prealloc,
                                   BdrvRequestFlags flags, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old = s->h.size;
    int ret;

    if (offset & 511) {
        error_setg(errp, "The new size must be a multiple of 512");
        return -EINVAL;
    }
    if (s->h.nb_snapshots && (uint64_t)offset < old) {
        error_setg(errp, "Can't shrink an image which has snapshots");
        return -ENOTSUP;
    }
    if ((uint64_t)offset < old && prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Preallocation can't be used for shrinking an "
                   "image");
        return -EINVAL;
    }
    if ((uint64_t)offset < old) {
        uint64_t from = ROUND_UP((uint64_t)offset, s->cluster_size);
        co_mutex_lock(&s->lock);
        ret = from < old ? qcow2_discard_range(bs, from,
                                               ROUND_UP(old, s->cluster_size) - from,
                                               true) : 0;
        co_mutex_unlock(&s->lock);
        if (ret == 0) {
            ret = qcow2_co_flush_to_os(bs);
        }
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to discard cropped clusters");
            return ret;
        }
    }
    ret = set_size(bs, offset);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update the image size");
        return ret;
    }
    if (prealloc != PREALLOC_MODE_OFF && (uint64_t)offset > old) {
        ret = qcow2_preallocate(bs, old, offset, prealloc, errp);
    }
    return ret;
}
