#include "config.h"
/*
 * qcow2 header: parsing and validating the fixed fields and the header
 * extensions of a (hostile) image, and rewriting cluster 0 with every
 * extension we know plus the unknown ones kept verbatim.
 */
#include <stdarg.h>
#include <stdio.h>
#include "qcow2.h"

/* The fixed fields from the first 112 bytes (shorter v2 headers leave
 * the v3 fields zero; the caller sets their defaults). */
static void header_decode(Qcow2Header *h, const uint8_t *b)
{
    h->magic = q_ld32(b);
    h->version = q_ld32(b + 4);
    h->backing_file_offset = q_ld64(b + 8);
    h->backing_file_size = q_ld32(b + 16);
    h->cluster_bits = q_ld32(b + 20);
    h->size = q_ld64(b + 24);
    h->crypt_method = q_ld32(b + 32);
    h->l1_size = q_ld32(b + 36);
    h->l1_table_offset = q_ld64(b + 40);
    h->refcount_table_offset = q_ld64(b + 48);
    h->refcount_table_clusters = q_ld32(b + 56);
    h->nb_snapshots = q_ld32(b + 60);
    h->snapshots_offset = q_ld64(b + 64);
    h->incompatible_features = q_ld64(b + 72);
    h->compatible_features = q_ld64(b + 80);
    h->autoclear_features = q_ld64(b + 88);
    h->refcount_order = q_ld32(b + 96);
    h->header_length = q_ld32(b + 100);
    h->compression_type = b[104];
}

static void header_encode(const Qcow2Header *h, uint8_t *b)
{
    q_st32(b, h->magic);
    q_st32(b + 4, h->version);
    q_st64(b + 8, h->backing_file_offset);
    q_st32(b + 16, h->backing_file_size);
    q_st32(b + 20, h->cluster_bits);
    q_st64(b + 24, h->size);
    q_st32(b + 32, h->crypt_method);
    q_st32(b + 36, h->l1_size);
    q_st64(b + 40, h->l1_table_offset);
    q_st64(b + 48, h->refcount_table_offset);
    q_st32(b + 56, h->refcount_table_clusters);
    q_st32(b + 60, h->nb_snapshots);
    q_st64(b + 64, h->snapshots_offset);
    if (h->version < 3) {
        return;
    }
    q_st64(b + 72, h->incompatible_features);
    q_st64(b + 80, h->compatible_features);
    q_st64(b + 88, h->autoclear_features);
    q_st32(b + 96, h->refcount_order);
    q_st32(b + 100, h->header_length);
    b[104] = h->compression_type;
}

void qcow2_free_header_exts(BDRVQcow2State *s)
{
    g_clear_pointer(&s->image_backing_format, g_free);
    g_clear_pointer(&s->image_data_file, g_free);
    g_clear_pointer(&s->features, g_free);
    s->nb_features = 0;
    if (s->unknown_exts) {
        for (guint i = 0; i < s->unknown_exts->len; i++) {
            Qcow2UnknownExt *e = g_ptr_array_index(s->unknown_exts, i);
            g_free(e->data);
            g_free(e);
        }
        g_ptr_array_free(s->unknown_exts, true);
        s->unknown_exts = NULL;
    }
}

/* Feature name table: 48-byte entries (type, bit, name); a short last
 * entry counts, zero-padded, as with the reference. */
static void parse_feature_table(BDRVQcow2State *s, const uint8_t *d,
                                uint32_t len)
{
    int n = DIV_ROUND_UP(len, 48);

    g_free(s->features);
    s->features = g_new0(Qcow2Feature, n ? n : 1);
    s->nb_features = n;
    for (int i = 0; i < n; i++) {
        uint8_t e[48] = { 0 };

        memcpy(e, d + i * 48, MIN(48, len - i * 48));
        s->features[i].type = e[0];
        s->features[i].bit = e[1];
        memcpy(s->features[i].name, e + 2, 46);
    }
}

/* Bits of @mask with names from the table, as the reference lists the
 * features it refuses. */
static char *unsupported_features(BDRVQcow2State *s, uint64_t mask)
{
    GString *str = g_string_new("");

    for (int i = 0; i < s->nb_features && s->features[i].name[0]; i++) {
        Qcow2Feature *f = &s->features[i];
        if (f->type == 0 && f->bit < 64 && (mask & (1ULL << f->bit))) {
            g_string_append_printf(str, "%s%.46s", str->len ? ", " : "",
                                   f->name);
            mask &= ~(1ULL << f->bit);
        }
    }
    if (mask) {
        g_string_append_printf(str, "%sUnknown incompatible feature: %" PRIx64,
                               str->len ? ", " : "", mask);
    }
    return g_string_free(str, false);
}

static void keep_unknown_ext(BDRVQcow2State *s, uint32_t magic,
                             const uint8_t *d, uint32_t len)
{
    Qcow2UnknownExt *e = g_new0(Qcow2UnknownExt, 1);

    e->magic = magic;
    e->len = len;
    e->data = g_memdup2(d, len);
    g_ptr_array_add(s->unknown_exts, e);
}

#define BITMAPS_MAX 65535
#define BITMAPS_MAX_DIR_SIZE (1024ULL * BITMAPS_MAX)

/* A bitmaps extension without its autoclear bit: a program without
 * bitmap support wrote the image.  The reference warns while it walks
 * the extensions (the bitmaps are then ignored, bitmap.c). */
static void warn_stale_bitmaps(BDRVQcow2State *s)
{
    if (s->h.version < 3) {
        warn_report("This qcow2 v2 image contains bitmaps, but they may "
                    "have been modified by a program without persistent "
                    "bitmap support; so now they must all be considered "
                    "inconsistent");
    } else {
        warn_report("a program lacking bitmap support modified this file, "
                    "so all bitmaps are now considered inconsistent");
    }
    fprintf(stderr, "Some clusters may be leaked, run 'qemu-img check -r' "
            "on the image file to fix.");
}

/* The bitmaps extension: its length always, then, when the autoclear bit
 * says it is in use, its fields in the reference's order, bounded before
 * anything is read or allocated from them.  A zero directory size is
 * refused later, when the directory is loaded (bitmap.c). */
static int check_bitmaps_ext(BDRVQcow2State *s, const uint8_t *d,
                             uint32_t len, Error **errp)
{
    uint64_t dsize;

    if (len != 24) {
        error_setg(errp, "bitmaps_ext: Invalid extension length");
        return -EINVAL;
    }
    if (!(s->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)) {
        warn_stale_bitmaps(s);
        return 0;
    }
    if (q_ld32(d + 4)) {
        error_setg(errp, "bitmaps_ext: Reserved field is not zero");
    } else if (q_ld32(d) > BITMAPS_MAX) {
        error_setg(errp, "bitmaps_ext: Image has %" PRIu32 " bitmaps, "
                   "exceeding the QEMU supported maximum of %d",
                   q_ld32(d), BITMAPS_MAX);
    } else if (q_ld32(d) == 0) {
        error_setg(errp, "found bitmaps extension with zero bitmaps");
    } else if (q_ld64(d + 16) & ((1ULL << s->h.cluster_bits) - 1)) {
        error_setg(errp, "bitmaps_ext: invalid bitmap directory offset");
    } else if ((dsize = q_ld64(d + 8)) > BITMAPS_MAX_DIR_SIZE) {
        error_setg(errp, "bitmaps_ext: bitmap directory size (%" PRIu64
                   ") exceeds the maximum supported size (%llu)", dsize,
                   BITMAPS_MAX_DIR_SIZE);
    } else {
        return 0;
    }
    return -EINVAL;
}

/* The LUKS header extension.  While the features are only probed
 * (@probe) the encryption method is not known yet: the reference then
 * refuses the extension whatever the method. */
static int parse_crypto_ext(BDRVQcow2State *s, const uint8_t *d,
                            uint32_t len, bool probe, Error **errp)
{
    if (probe || s->h.crypt_method != QCOW2_CRYPT_LUKS) {
        error_setg(errp, "CRYPTO header extension only expected with LUKS "
                   "encryption method");
        return -EINVAL;
    }
    if (len != 16) {
        error_setg(errp, "CRYPTO header extension size %" PRIu32 ", but "
                   "expected size %d", len, 16);
        return -EINVAL;
    }
    s->has_crypto_ext = true;
    s->crypto_offset = q_ld64(d);
    s->crypto_length = q_ld64(d + 8);
    if (s->crypto_offset % s->cluster_size) {
        error_setg(errp, "Encryption header offset '%" PRIu64 "' is not a "
                   "multiple of cluster size '%" PRIu64 "'", s->crypto_offset,
                   s->cluster_size);
        return -EINVAL;
    }
    return 0;
}

/* One extension; messages as the reference's.  @probe: only looking
 * for the feature name table (see parse_crypto_ext). */
static int parse_one_ext(BlockDriverState *bs, uint32_t magic,
                         const uint8_t *d, uint32_t len, bool probe,
                         Error **errp)
{
    BDRVQcow2State *s = bs->opaque;

    switch (magic) {
    case QCOW2_EXT_BACKING_FMT:
        if (len >= 16) {
            error_setg(errp, "ERROR: ext_backing_format: len=%" PRIu32
                       " too large (>=%d)", len, 16);
            return -EINVAL;
        }
        g_free(s->image_backing_format);
        s->image_backing_format = g_strndup((const char *)d, len);
        break;
    case QCOW2_EXT_FEATURE_TABLE:
        parse_feature_table(s, d, len);
        break;
    case QCOW2_EXT_CRYPTO:
        return parse_crypto_ext(s, d, len, probe, errp);
    case QCOW2_EXT_BITMAPS:
        if (check_bitmaps_ext(s, d, len, errp) < 0) {
            return -EINVAL;
        }
        keep_unknown_ext(s, magic, d, len);
        break;
    case QCOW2_EXT_DATA_FILE:
        g_free(s->image_data_file);
        s->image_data_file = g_strndup((const char *)d, len);
        break;
    default:
        keep_unknown_ext(s, magic, d, len);
        break;
    }
    return 0;
}

/* Walk the extensions in cluster 0 (@buf holds all of it, @end <= its
 * size).  An extension header is read even when it crosses @end, as the
 * reference does: it is then too large. */
static int parse_exts(BlockDriverState *bs, const uint8_t *buf,
                      uint64_t start, uint64_t end, bool probe, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t off = start;

    while (off < end) {
        uint32_t magic, len;
        int ret;

        if (off + 8 > (1ULL << s->h.cluster_bits)) {
            error_setg(errp, "qcow2_read_extension: ERROR: "
                       "pread fail from offset %" PRIu64, off);
            return -EINVAL;
        }
        magic = q_ld32(buf + off);
        len = q_ld32(buf + off + 4);
        off += 8;
        if (off > end || len > end - off) {
            error_setg(errp, "Header extension too large");
            return -EINVAL;
        }
        if (magic == QCOW2_EXT_END) {
            break;
        }
        ret = parse_one_ext(bs, magic, buf + off, len, probe, errp);
        if (ret < 0) {
            return ret;
        }
        off += ROUND_UP((uint64_t)len, 8);
    }
    return 0;
}

/* Cluster 0 read whole and its extensions walked (@probe: see
 * parse_crypto_ext). */
static int coroutine_fn read_exts(BlockDriverState *bs, bool probe,
                                  Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t csize = 1ULL << s->h.cluster_bits;
    uint64_t end = s->h.backing_file_offset ? s->h.backing_file_offset :
                   csize;
    g_autofree uint8_t *buf = g_malloc0(csize);
    int ret = q_pread(bs->file, 0, csize, buf);

    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read qcow2 header");
        return ret;
    }
    qcow2_free_header_exts(s);
    s->unknown_exts = g_ptr_array_new();
    if (s->h.header_length >= end) {
        return 0;
    }
    return parse_exts(bs, buf, s->h.header_length, end, probe, errp);
}

int coroutine_fn qcow2_read_header_exts(BlockDriverState *bs, Error **errp)
{
    return read_exts(bs, false, errp);
}

/* Version, cluster size and header length checks. */
static int check_basic(BDRVQcow2State *s, Error **errp)
{
    Qcow2Header *h = &s->h;

    if (h->magic != QCOW_MAGIC) {
        error_setg(errp, "Image is not in qcow2 format");
        return -EINVAL;
    }
    if (h->version < 2 || h->version > 3) {
        error_setg(errp, "Unsupported qcow2 version %" PRIu32, h->version);
        return -ENOTSUP;
    }
    if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
        h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        error_setg(errp, "Unsupported cluster size: 2^%" PRIu32,
                   h->cluster_bits);
        return -EINVAL;
    }
    if (h->version == 2) {
        h->incompatible_features = h->compatible_features = 0;
        h->autoclear_features = 0;
        h->refcount_order = 4;
        h->header_length = QCOW2_V2_HEADER_LEN;
        h->compression_type = 0;
    } else if (h->header_length < QCOW2_V3_HEADER_LEN) {
        error_setg(errp, "qcow2 header too short");
        return -EINVAL;
    }
    if (h->header_length > (1U << h->cluster_bits)) {
        error_setg(errp, "qcow2 header exceeds cluster size");
        return -EINVAL;
    }
    if (h->header_length <= 104) {
        h->compression_type = 0;
    }
    if (h->backing_file_offset > (1ULL << h->cluster_bits)) {
        error_setg(errp, "Invalid backing file offset");
        return -EINVAL;
    }
    return 0;
}

/* Unknown incompatible features refuse the image, named from the
 * feature table the extensions hold up to the first bad one (the
 * reference walks them for the table only, ignoring their errors). */
static int coroutine_fn refuse_unknown_features(BlockDriverState *bs,
                                                uint64_t unknown,
                                                Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree char *list = NULL;
    int ret = read_exts(bs, true, NULL);

    if (ret < 0 && ret != -EINVAL) {
        error_setg_errno(errp, -ret, "Could not read qcow2 header");
        return ret;
    }
    list = unsupported_features(s, unknown);
    error_setg(errp, "Unsupported qcow2 feature(s): %s", list);
    return -ENOTSUP;
}

/* Feature bits: unknown incompatible ones refuse the image, corrupt ones
 * open read-only only; then the subcluster size and refcount width. */
static int coroutine_fn check_features(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Header *h = &s->h;
    uint64_t unknown = h->incompatible_features & ~QCOW2_INCOMPAT_MASK;

    if (unknown) {
        return refuse_unknown_features(bs, unknown, errp);
    }
    /* a corrupt image may be written only by its repair (check -r) */
    if ((h->incompatible_features & QCOW2_INCOMPAT_CORRUPT) &&
        (bs->open_flags & BDRV_O_RDWR) &&
        !(bs->open_flags & BDRV_O_CHECK)) {
        error_setg(errp, "qcow2: Image is corrupt; cannot be opened "
                   "read/write");
        return -EACCES;
    }
    /* extended L2: 32 subclusters, each at least 512 bytes */
    if ((h->incompatible_features & QCOW2_INCOMPAT_EXTL2) &&
        h->cluster_bits < QCOW2_MIN_CLUSTER_BITS + 5) {
        error_setg(errp, "Unsupported subcluster size: %d",
                   1 << (h->cluster_bits - 5));
        return -EINVAL;
    }
    if (h->refcount_order > 6) {
        error_setg(errp, "Reference count entry width too large; may not "
                   "exceed 64 bits");
        return -EINVAL;
    }
    return 0;
}

/* Compression type byte and its feature bit must agree. */
static int check_compression(BDRVQcow2State *s, Error **errp)
{
    bool bit = s->h.incompatible_features & QCOW2_INCOMPAT_COMPRESSION;

    if (s->h.compression_type > QCOW2_COMPRESSION_ZSTD) {
        error_setg(errp, "qcow2: unknown compression type: %u",
                   s->h.compression_type);
        return -ENOTSUP;
    }
    if (s->h.compression_type == QCOW2_COMPRESSION_ZLIB && bit) {
        error_setg(errp, "qcow2: Compression type incompatible feature bit "
                   "must not be set");
        return -EINVAL;
    }
    if (s->h.compression_type != QCOW2_COMPRESSION_ZLIB && !bit) {
        error_setg(errp, "qcow2: Compression type incompatible feature bit "
                   "must be set");
        return -EINVAL;
    }
    s->compression_type = s->h.compression_type;
    return 0;
}

/* Derived geometry from the validated fields. */
static int set_geometry(BDRVQcow2State *s, Error **errp)
{
    s->cluster_bits = s->h.cluster_bits;
    s->cluster_size = 1ULL << s->cluster_bits;
    s->extended_l2 = s->h.incompatible_features & QCOW2_INCOMPAT_EXTL2;
    s->l2_entry_size = s->extended_l2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->extended_l2 ? 4 : 3);
    s->l2_size = 1 << s->l2_bits;
    s->subcluster_bits = s->cluster_bits - (s->extended_l2 ? 5 : 0);
    s->subcluster_size = 1ULL << s->subcluster_bits;
    s->refcount_order = s->h.refcount_order;
    s->refcount_bits = 1 << s->refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? INT64_MAX :
                      (int64_t)((1ULL << s->refcount_bits) - 1);
    s->refblock_bits = s->cluster_bits + 3 - s->refcount_order;
    return 0;
}

/* Is a table of @entries * @esize bytes at @offset possible at all?
 * (aligned, no overflow) */
static bool table_offset_ok(BDRVQcow2State *s, uint64_t offset,
                            uint64_t entries, uint64_t esize)
{
    if (entries > INT64_MAX / esize) {
        return false;
    }
    if ((uint64_t)INT64_MAX - entries * esize < offset) {
        return false;
    }
    return qcow2_offset_into_cluster(s, offset) == 0;
}

bool qcow2_snapshot_table_ok(BDRVQcow2State *s)
{
    return table_offset_ok(s, s->h.snapshots_offset, s->h.nb_snapshots, 40);
}

/* Refcount table, snapshot table and L1 table fields. */
int qcow2_check_header_tables(BlockDriverState *bs, int64_t file_len,
                              Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Header *h = &s->h;

    if (h->refcount_table_clusters >
        QCOW2_MAX_REFTABLE_SIZE / s->cluster_size) {
        error_setg(errp, "Reference count table too large");
        return -EINVAL;
    }
    if (h->refcount_table_clusters == 0 &&
        !(bs->open_flags & BDRV_O_CHECK)) {
        error_setg(errp, "Image does not contain a reference count table");
        return -EINVAL;
    }
    if (!table_offset_ok(s, h->refcount_table_offset,
                         (uint64_t)h->refcount_table_clusters, s->cluster_size)) {
        error_setg(errp, "Reference count table offset invalid");
        return -EINVAL;
    }
    /* check reports a bad snapshot table pointer itself */
    if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS &&
        !(bs->open_flags & BDRV_O_CHECK)) {
        error_setg(errp, "Snapshot table too large");
        return -EINVAL;
    }
    if (!qcow2_snapshot_table_ok(s) && !(bs->open_flags & BDRV_O_CHECK)) {
        error_setg(errp, "Snapshot table offset invalid");
        return -EINVAL;
    }
    if (h->l1_size > QCOW2_MAX_L1_SIZE / 8) {
        error_setg(errp, "Active L1 table too large");
        return -EFBIG;
    }
    /* the table's own offset before its size against the disk size */
    if (!table_offset_ok(s, h->l1_table_offset, h->l1_size, 8)) {
        error_setg(errp, "Active L1 table offset invalid");
        return -EINVAL;
    }
    if (qcow2_l1_entries(s->cluster_bits, s->l2_bits, h->size) > INT32_MAX) {
        error_setg(errp, "Image is too big");
        return -EFBIG;
    }
    if (h->l1_size < qcow2_l1_entries(s->cluster_bits, s->l2_bits, h->size)) {
        error_setg(errp, "L1 table is too small");
        return -EINVAL;
    }
    return 0;
}

/* The backing file name, read from cluster 0 where the header says. */
int coroutine_fn qcow2_read_backing_name(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Header *h = &s->h;
    g_autofree char *name = NULL;
    int ret;

    if (!h->backing_file_offset) {
        return 0;
    }
    if (h->backing_file_size > QCOW2_MAX_BACKING_NAME ||
        h->backing_file_size > s->cluster_size - h->backing_file_offset) {
        error_setg(errp, "Backing file name too long");
        return -EINVAL;
    }
    name = g_malloc0(h->backing_file_size + 1);
    ret = q_pread(bs->file, h->backing_file_offset, h->backing_file_size,
                  name);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read backing file name");
        return ret;
    }
    bs->backing_file = g_steal_pointer(&name);
    if (s->image_backing_format) {
        bs->backing_format = g_strdup(s->image_backing_format);
    }
    return 0;
}

/* Read and check the fixed fields of the header, in the reference's
 * order: basics, compression type, feature bits, refcount width. */
int coroutine_fn qcow2_read_header(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t buf[112] = { 0 };
    int ret = q_pread(bs->file, 0, sizeof(buf), buf);

    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read qcow2 header");
        return ret;
    }
    header_decode(&s->h, buf);
    ret = check_basic(s, errp);
    if (ret == 0) {
        ret = check_compression(s, errp);
    }
    if (ret == 0) {
        ret = check_features(bs, errp);
    }
    if (ret == 0) {
        ret = set_geometry(s, errp);
    }
    return ret;
}

/* ---- rewriting ---- */

static const struct {
    uint8_t type, bit;
    const char *name;
} std_features[] = {
    { 0, 0, "dirty bit" },
    { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" },
    { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" },
    { 2, 1, "raw external data" },
};

/* Append one extension at *pos; false if the cluster is full. */
static bool put_ext(uint8_t *buf, size_t size, size_t *pos, uint32_t magic,
                    const void *data, uint32_t len)
{
    size_t need = 8 + ROUND_UP((size_t)len, 8);

    if (size - *pos < need) {
        return false;
    }
    q_st32(buf + *pos, magic);
    q_st32(buf + *pos + 4, len);
    if (len) {
        memcpy(buf + *pos + 8, data, len);
    }
    *pos += need;
    return true;
}

/* Extensions in the reference's order: backing format, data file, crypto,
 * feature table (clusters over 4 KiB), then the kept ones (bitmaps,
 * unknown). */
static bool put_all_exts(BDRVQcow2State *s, uint8_t *buf, size_t size,
                         size_t *pos, const char *backing_fmt)
{
    bool ok = true;

    if (backing_fmt) {
        ok = put_ext(buf, size, pos, QCOW2_EXT_BACKING_FMT, backing_fmt,
                     strlen(backing_fmt));
    }
    /* the name only while the feature bit says there is a data file */
    if (ok && s->image_data_file &&
        (s->h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE)) {
        ok = put_ext(buf, size, pos, QCOW2_EXT_DATA_FILE, s->image_data_file,
                     strlen(s->image_data_file));
    }
    if (ok && s->has_crypto_ext) {
        uint8_t c[16];
        q_st64(c, s->crypto_offset);
        q_st64(c + 8, s->crypto_length);
        ok = put_ext(buf, size, pos, QCOW2_EXT_CRYPTO, c, 16);
    }
    /* the reference leaves the (informational) feature name table out of
     * images with clusters of 4 KiB or less */
    if (ok && s->h.version >= 3 && s->cluster_size > 4096) {
        uint8_t t[G_N_ELEMENTS(std_features) * 48] = { 0 };
        for (size_t i = 0; i < G_N_ELEMENTS(std_features); i++) {
            t[i * 48] = std_features[i].type;
            t[i * 48 + 1] = std_features[i].bit;
            strncpy((char *)t + i * 48 + 2, std_features[i].name, 46);
        }
        ok = put_ext(buf, size, pos, QCOW2_EXT_FEATURE_TABLE, t, sizeof(t));
    }
    for (guint i = 0; ok && s->unknown_exts && i < s->unknown_exts->len; i++) {
        Qcow2UnknownExt *e = g_ptr_array_index(s->unknown_exts, i);
        ok = put_ext(buf, size, pos, e->magic, e->data, e->len);
    }
    return ok && put_ext(buf, size, pos, QCOW2_EXT_END, NULL, 0);
}

/* Build cluster 0 into @buf (cluster_size bytes); -ENOSPC if it does not
 * fit. */
static int build_header(BlockDriverState *bs, uint8_t *buf)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Header h = s->h;
    size_t pos, blen = bs->backing_file ? strlen(bs->backing_file) : 0;
    const char *bfmt = bs->backing_file ? bs->backing_format : NULL;

    h.header_length = h.version >= 3 ? 112 : QCOW2_V2_HEADER_LEN;
    pos = h.header_length;
    if (!put_all_exts(s, buf, s->cluster_size, &pos, bfmt)) {
        return -ENOSPC;
    }
    if (blen) {
        if (s->cluster_size - pos < blen) {
            return -ENOSPC;
        }
        memcpy(buf + pos, bs->backing_file, blen);
        h.backing_file_offset = pos;
        h.backing_file_size = blen;
    } else {
        h.backing_file_offset = 0;
        h.backing_file_size = 0;
    }
    s->h.header_length = h.header_length;
    s->h.backing_file_offset = h.backing_file_offset;
    s->h.backing_file_size = h.backing_file_size;
    header_encode(&h, buf);
    return 0;
}

/* Rewrite cluster 0 from the in-memory state. */
int coroutine_fn qcow2_update_header(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *buf = g_malloc0(s->cluster_size);
    int ret = build_header(bs, buf);

    if (ret < 0) {
        return ret;
    }
    ret = q_pwrite(bs->file, 0, s->cluster_size, buf);
    if (ret < 0) {
        return ret;
    }
    return bdrv_co_flush(bs->file->bs);
}

/* Write only the incompatible features field (dirty/corrupt bits). */
int coroutine_fn qcow2_write_incompat(BlockDriverState *bs, uint64_t bits)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t b[8];
    int ret;

    q_st64(b, bits);
    ret = q_pwrite(bs->file, 72, 8, b);
    if (ret == 0) {
        s->h.incompatible_features = bits;
    }
    return ret;
}

/* New dirty/corrupt bits written with the whole header cluster, as the
 * reference clears them (bytes past the extensions become zeroes);
 * only the field when the header no longer fits. */
int coroutine_fn qcow2_write_incompat_header(BlockDriverState *bs,
                                             uint64_t bits)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old = s->h.incompatible_features;
    int ret;

    s->h.incompatible_features = bits;
    ret = qcow2_update_header(bs);
    if (ret == -ENOSPC) {
        s->h.incompatible_features = old;
        return qcow2_write_incompat(bs, bits);
    }
    if (ret < 0) {
        s->h.incompatible_features = old;
    }
    return ret;
}

/* Lazy refcounts: set the dirty bit (flushed) before the first write
 * that may leave refcounts stale. */
int coroutine_fn qcow2_mark_dirty(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY) {
        return 0;
    }
    ret = bdrv_co_flush(bs->file->bs);
    if (ret == 0) {
        ret = qcow2_write_incompat(bs, s->h.incompatible_features |
                                   QCOW2_INCOMPAT_DIRTY);
    }
    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    return ret;
}

/* Clean close: everything is on disk, the refcounts are right. */
int coroutine_fn qcow2_mark_clean(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (!(s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
        return 0;
    }
    ret = qcow2_co_flush_to_os(bs);
    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    if (ret == 0) {
        ret = qcow2_write_incompat_header(bs, s->h.incompatible_features &
                                          ~QCOW2_INCOMPAT_DIRTY);
    }
    return ret;
}

/* Reported once; nothing is marked (a read-only node, or an
 * inconsistency the reference only complains about). */
static void corruption_nonfatal(BDRVQcow2State *s, const char *msg)
{
    if (s->corrupt_reported) {
        return;
    }
    s->corrupt_reported = true;
    fprintf(stderr, "qcow2: Image is corrupt: %s; further non-fatal "
            "corruption events will be suppressed\n", msg);
}

void qcow2_signal_corruption_nonfatal(BlockDriverState *bs,
                                      const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    corruption_nonfatal(bs->opaque, msg);
}

/* Metadata corruption seen at runtime: mark the image corrupt (once) so
 * the reference refuses to open it read/write, as it would.  A writable
 * node is unusable afterwards (s->broken: every request fails with
 * ENOMEDIUM, nothing more is written back), as the reference's is. */
void qcow2_signal_corruption(BlockDriverState *bs, const char *fmt, ...)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (bs->read_only || !(bs->open_flags & BDRV_O_RDWR)) {
        corruption_nonfatal(s, msg);
        return;
    }
    /* after a non-fatal report, the first fatal one still counts */
    if (s->corrupt_reported &&
        (s->broken || (s->h.incompatible_features & QCOW2_INCOMPAT_CORRUPT))) {
        return;
    }
    s->corrupt_reported = true;
    /* the reference prints these without the program name */
    fprintf(stderr, "qcow2: Marking image as corrupt: %s; further corruption "
            "events will be suppressed\n", msg);
    s->h.incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
    if (co_in_coroutine()) {
        /* the whole header cluster, as the reference writes it */
        if (qcow2_update_header(bs) == -ENOSPC) {
            qcow2_write_incompat(bs, s->h.incompatible_features);
        }
    }
    s->broken = true;
}

typedef struct ChangeBacking {
    BlockDriverState *bs;
    const char *file;
    const char *fmt;
    int ret;
} ChangeBacking;

/* Rewrite cluster 0 with the new names in place of the node's; the node
 * keeps its old names (the core updates them on success). */
static void coroutine_fn change_backing_entry(void *opaque)
{
    ChangeBacking *c = opaque;
    BlockDriverState *bs = c->bs;
    BDRVQcow2State *s = bs->opaque;
    char *old_file = bs->backing_file, *old_fmt = bs->backing_format;

    bs->backing_file = c->file && c->file[0] ? (char *)c->file : NULL;
    bs->backing_format = c->fmt && c->fmt[0] ? (char *)c->fmt : NULL;
    co_mutex_lock(&s->lock);
    c->ret = qcow2_update_header(bs);
    co_mutex_unlock(&s->lock);
    bs->backing_file = old_file;
    bs->backing_format = old_fmt;
}

int qcow2_change_backing_file(BlockDriverState *bs, const char *file,
                              const char *fmt)
{
    BDRVQcow2State *s = bs->opaque;
    ChangeBacking c = { bs, file, fmt, 0 };

    if (file && strlen(file) > QCOW2_MAX_BACKING_NAME) {
        return -EINVAL;
    }
    /* a raw external data file alone must stay the whole image */
    if (file && file[0] &&
        (s->h.autoclear_features & QCOW2_AUTOCLEAR_DATA_RAW)) {
        return -EINVAL;
    }
    co_run_sync(change_backing_entry, &c);
    return c.ret;
}
