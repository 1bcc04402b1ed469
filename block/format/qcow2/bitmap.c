#include "config.h"
/*
 * qcow2 persistent dirty bitmaps (qcow2.txt "Bitmaps extension", "Bitmap
 * directory", "Bitmap table"; ../shared/specs/bitmaps.rst).
 *
 *   directory   parse and check the directory named by the extension
 *   tables      read and check a bitmap table; load a bitmap's bits
 *   open        engine bitmaps for every entry; read-write opens mark
 *               the consistent ones in-use in the image while open
 *   store       at close: every persistent bitmap written afresh (data,
 *               table, directory), the extension switched over, then the
 *               old clusters freed; a crash leaves leaks at worst
 *   ops         can_store_new / load for the engine (block/dirty-bitmap.c)
 *
 * A bitmap in-use in the image when opened is inconsistent: its bits are
 * unknown, its entry is kept as found until it is removed.
 */
#include <stdio.h>
#include "qcow2.h"

#define BME_FLAG_IN_USE (1U << 0)
#define BME_FLAG_AUTO   (1U << 1)
#define BME_FLAGS_KNOWN (BME_FLAG_IN_USE | BME_FLAG_AUTO)
#define BME_TYPE_DIRTY_TRACKING 1
#define BME_MIN_GRANULARITY_BITS 9
#define BME_MAX_GRANULARITY_BITS 31
#define BME_MAX_NAME_SIZE 1023
#define BME_MAX_TABLE_SIZE 0x8000000U
#define BME_MAX_PHYS_SIZE (512 * MiB)
#define BME_TABLE_RESERVED 0xff000000000001feULL
#define BME_TABLE_OFFSET   0x00fffffffffffe00ULL
#define BME_TABLE_ALL_ONES 1ULL
#define MAX_BITMAPS 65535
#define MAX_DIR_SIZE (1024 * MAX_BITMAPS)
/* Bitmap tables read at open, all bitmaps together: hostile directories
 * pointing many entries at huge tables fail instead of taking minutes. */
#define MAX_TABLE_BYTES_AT_OPEN (256 * MiB)
/* Bits held in memory for one image, all bitmaps together (one bitmap
 * takes at most 512 MiB): a hostile directory of thousands of maximal
 * bitmaps fails to load instead of exhausting memory. */
#define MAX_BITS_BYTES_LOADED (4ULL * GiB)

/* ---- the extension ---- */

/* The bitmaps extension kept among the unknown ones, or NULL. */
static Qcow2UnknownExt *bitmaps_ext(BDRVQcow2State *s)
{
    for (guint i = 0; s->unknown_exts && i < s->unknown_exts->len; i++) {
        Qcow2UnknownExt *e = g_ptr_array_index(s->unknown_exts, i);
        if (e->magic == QCOW2_EXT_BITMAPS) {
            return e;
        }
    }
    return NULL;
}

/* Set the extension to @nb bitmaps in @dsize bytes at @doff, or drop it
 * when there are none (the header is rewritten by the caller). */
static void set_bitmaps_ext(BDRVQcow2State *s, uint32_t nb, uint64_t dsize,
                            uint64_t doff)
{
    Qcow2UnknownExt *e = bitmaps_ext(s);

    if (!nb) {
        if (e) {
            g_ptr_array_remove(s->unknown_exts, e);
            g_free(e->data);
            g_free(e);
        }
        s->h.autoclear_features &= ~QCOW2_AUTOCLEAR_BITMAPS;
        return;
    }
    if (!e) {
        e = g_new0(Qcow2UnknownExt, 1);
        e->magic = QCOW2_EXT_BITMAPS;
        g_ptr_array_add(s->unknown_exts, e);
    }
    g_free(e->data);
    e->len = 24;
    e->data = g_malloc0(24);
    q_st32(e->data, nb);
    q_st64(e->data + 8, dsize);
    q_st64(e->data + 16, doff);
    s->h.autoclear_features |= QCOW2_AUTOCLEAR_BITMAPS;
}

static void bitmap_entry_clear(gpointer p)
{
    g_free(((Qcow2Bitmap *)p)->name);
}

/* An empty directory (Qcow2Bitmap entries owning their names). */
static GArray *bitmap_list_new(void)
{
    GArray *a = g_array_new(false, true, sizeof(Qcow2Bitmap));

    g_array_set_clear_func(a, bitmap_entry_clear);
    return a;
}

void qcow2_free_bitmaps(BDRVQcow2State *s)
{
    g_clear_pointer(&s->bitmaps, g_array_unref);
    qobject_unref(s->bitmap_info);
    s->bitmap_info = NULL;
}

/* ---- directory ---- */

/* A bitmap not in-use has a table big enough for the whole disk (one
 * left in-use by a resize may not). */
static bool table_covers(BDRVQcow2State *s, const uint8_t *p)
{
    uint64_t bits = (uint64_t)q_ld32(p + 8) * s->cluster_size * 8;
    uint64_t len = ROUND_UP(s->h.size, 512);

    if ((q_ld32(p + 12) & BME_FLAG_IN_USE) || p[17] > 63) {
        return true;
    }
    return p[17] >= 64 - __builtin_clzll(MAX(bits, 1)) ||
           len <= bits << p[17];
}

/* The limits the reference puts on an entry before it trusts it: a
 * table in the file's clusters, of bounded size, known flags and type,
 * a granularity it supports. */
static bool entry_ok(BDRVQcow2State *s, const uint8_t *p)
{
    uint64_t toff = q_ld64(p);
    uint32_t tsize = q_ld32(p + 8);

    return tsize && tsize <= BME_MAX_TABLE_SIZE &&
           table_covers(s, p) &&
           (uint64_t)tsize * s->cluster_size <= BME_MAX_PHYS_SIZE &&
           toff && !qcow2_offset_into_cluster(s, toff) &&
           !(q_ld32(p + 12) & ~BME_FLAGS_KNOWN) &&
           p[16] == BME_TYPE_DIRTY_TRACKING &&
           p[17] >= BME_MIN_GRANULARITY_BITS &&
           p[17] <= BME_MAX_GRANULARITY_BITS &&
           q_ld16(p + 18) <= BME_MAX_NAME_SIZE;
}

/* Bytes an entry with a @name_len name takes in the directory. */
static size_t dir_entry_size(size_t name_len)
{
    return ROUND_UP(24 + name_len, 8);
}

/* The checked entry at @p appended to s->bitmaps. */
static void add_entry(BDRVQcow2State *s, const uint8_t *p)
{
    Qcow2Bitmap b = {
        .table_offset = q_ld64(p),
        .table_size = q_ld32(p + 8),
        .flags = q_ld32(p + 12),
        .gran_bits = p[17],
        .name = g_strndup((const char *)p + 24, q_ld16(p + 18)),
    };

    g_array_append_val(s->bitmaps, b);
}

/* One entry at @p, @left bytes before the directory's end; its size or
 * 0 with @errp set.  Checks in the reference's order. */
static size_t parse_entry(BDRVQcow2State *s, const uint8_t *p, size_t left,
                          Error **errp)
{
    size_t size;

    size = ROUND_UP(24 + (size_t)q_ld32(p + 20) + q_ld16(p + 18), 8);
    if (size > left) {
        error_setg(errp, "Broken bitmap directory");
        return 0;
    }
    if (q_ld32(p + 20)) {
        error_setg(errp, "Bitmap extra data is not supported");
        return 0;
    }
    if (!entry_ok(s, p)) {
        error_setg(errp, "Bitmap '%.*s' doesn't satisfy the constraints",
                   (int)q_ld16(p + 18), (const char *)p + 24);
        return 0;
    }
    add_entry(s, p);
    return size;
}

/* Every entry of the directory @dir into s->bitmaps; an image the
 * reference refuses to open is refused with its message. */
static int parse_dir(BDRVQcow2State *s, const uint8_t *dir, size_t dsize,
                     uint32_t nb, Error **errp)
{
    size_t pos = 0, n;
    uint32_t found = 0;

    while (pos < dsize) {
        if (dsize - pos < 24) {
            error_setg(errp, "Broken bitmap directory");
            return -EINVAL;
        }
        if (++found > nb) {
            error_setg(errp, "More bitmaps found than specified in header "
                       "extension");
            return -EINVAL;
        }
        n = parse_entry(s, dir + pos, dsize - pos, errp);
        if (!n) {
            return -EINVAL;
        }
        pos += n;
    }
    if (found != nb) {
        error_setg(errp, "Less bitmaps found than specified in header "
                   "extension");
        return -EINVAL;
    }
    return 0;
}

/* info's "bitmaps": name, granularity and flags of every entry. */
static QList *bitmap_info_list(BDRVQcow2State *s)
{
    QList *list = qlist_new();

    for (guint i = 0; i < s->bitmaps->len; i++) {
        Qcow2Bitmap *b = &g_array_index(s->bitmaps, Qcow2Bitmap, i);
        QDict *d = qdict_new();
        QList *fl = qlist_new();

        if (b->flags & BME_FLAG_IN_USE) {
            qlist_append_str(fl, "in-use");
        }
        if (b->flags & BME_FLAG_AUTO) {
            qlist_append_str(fl, "auto");
        }
        qdict_put(d, "flags", fl);
        qdict_put_str(d, "name", b->name);
        qdict_put_int(d, "granularity", 1LL << b->gran_bits);
        qlist_append(list, d);
    }
    return list;
}

/* The directory as it should be on disk (big-endian entries). */
static uint8_t *build_dir(GArray *list, size_t *size)
{
    size_t total = 0, pos = 0;
    uint8_t *dir;

    for (guint i = 0; i < list->len; i++) {
        total += dir_entry_size(strlen(
            g_array_index(list, Qcow2Bitmap, i).name));
    }
    dir = g_malloc0(MAX(total, 1));
    for (guint i = 0; i < list->len; i++) {
        Qcow2Bitmap *b = &g_array_index(list, Qcow2Bitmap, i);
        size_t nl = strlen(b->name);

        q_st64(dir + pos, b->table_offset);
        q_st32(dir + pos + 8, b->table_size);
        q_st32(dir + pos + 12, b->flags);
        dir[pos + 16] = BME_TYPE_DIRTY_TRACKING;
        dir[pos + 17] = b->gran_bits;
        q_st16(dir + pos + 18, nl);
        memcpy(dir + pos + 24, b->name, nl);
        pos += dir_entry_size(nl);
    }
    *size = total;
    return dir;
}

/* ---- tables and bits ---- */

/* Table entries a bitmap of @gran_bits over @len bytes needs. */
static uint64_t table_entries(BDRVQcow2State *s, uint64_t len, int gran_bits)
{
    uint64_t bits = DIV_ROUND_UP(len, 1ULL << gran_bits);

    return DIV_ROUND_UP(DIV_ROUND_UP(bits, 8), s->cluster_size);
}

/* A bitmap table entry (qcow2.txt "Bitmap table"): reserved bits clear,
 * a data cluster aligned, the all-ones bit only without one. */
static bool table_entry_ok(BDRVQcow2State *s, uint64_t e)
{
    uint64_t off = e & BME_TABLE_OFFSET;

    if (e & BME_TABLE_RESERVED) {
        return false;
    }
    return !off || (!(e & BME_TABLE_ALL_ONES) &&
                    !qcow2_offset_into_cluster(s, off));
}

/* Read and check the table of @b for a node of @len bytes into *@table
 * (host order, g_free()): every entry first, then the size. */
static int coroutine_fn read_bitmap_table(BlockDriverState *bs,
                                          const Qcow2Bitmap *b, uint64_t len,
                                          uint64_t **table, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint64_t *t = g_new(uint64_t, b->table_size);
    int ret = qcow2_read_table(bs, b->table_offset, b->table_size * 8ULL, t);

    for (uint32_t i = 0; ret == 0 && i < b->table_size; i++) {
        t[i] = GUINT64_FROM_BE(t[i]);
        if (!table_entry_ok(s, t[i])) {
            ret = -EINVAL;
        }
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read bitmap_table table "
                         "from image for bitmap '%s'", b->name);
        return ret;
    }
    if (b->table_size != table_entries(s, len, b->gran_bits)) {
        error_setg_errno(errp, EINVAL, "Could not read bitmap '%s' from "
                         "image", b->name);
        return -EINVAL;
    }
    *table = g_steal_pointer(&t);
    return 0;
}

/* Bit @i of the serialized bitmap @buf (granule i: least significant
 * bit of byte i / 8 first). */
static inline bool bit_at(const uint8_t *buf, uint64_t i)
{
    return buf[i / 8] & (1U << (i % 8));
}

/* The set bits of one data cluster @buf of @n bytes into @hb from byte
 * @start on, one hbitmap_set() per run of set bits. */
static void deserialize(HBitmap *hb, const uint8_t *buf, size_t n,
                        uint64_t start, int gran_bits)
{
    uint64_t len = hbitmap_size(hb), nbits = (uint64_t)n * 8, i = 0;

    while (i < nbits) {
        uint64_t first, off;

        if (!buf[i / 8]) {
            i = (i / 8 + 1) * 8;
            continue;
        }
        if (!bit_at(buf, i)) {
            i++;
            continue;
        }
        for (first = i; i < nbits && bit_at(buf, i); i++) {
            /* the run */
        }
        off = start + (first << gran_bits);
        if (off >= len) {
            return;
        }
        hbitmap_set(hb, off, MIN((i - first) << gran_bits, len - off));
    }
}

/* @bm's bits, allocated on the first set one and charged to the image's
 * budget of bits in memory; NULL (-ENOMEM) past it. */
static HBitmap *bits_for(BDRVQcow2State *s, BdrvDirtyBitmap *bm)
{
    uint64_t need = DIV_ROUND_UP(DIV_ROUND_UP(bdrv_dirty_bitmap_size(bm),
                                 bdrv_dirty_bitmap_granularity(bm)), 8);

    if (!bdrv_dirty_bitmap_peek(bm)) {
        if (need > MAX_BITS_BYTES_LOADED - s->bitmap_bytes_loaded) {
            return NULL;
        }
        s->bitmap_bytes_loaded += need;
    }
    return bdrv_dirty_bitmap_hbitmap(bm);
}

/* The bits of @b, whose table is @table, into @bm. */
static int coroutine_fn load_bits(BlockDriverState *bs, const Qcow2Bitmap *b,
                                  const uint64_t *table, BdrvDirtyBitmap *bm)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t len = bdrv_dirty_bitmap_size(bm);
    uint64_t per_cluster = (s->cluster_size * 8) << b->gran_bits;
    g_autofree uint8_t *buf = g_malloc(s->cluster_size);

    for (uint32_t i = 0; i < b->table_size; i++) {
        uint64_t start = i * per_cluster, off = table[i] & BME_TABLE_OFFSET;
        HBitmap *hb;
        int ret;

        if (start >= len || !table[i]) {
            continue;
        }
        hb = bits_for(s, bm);
        if (!hb) {
            return -ENOMEM;
        }
        if (!off) {
            hbitmap_set(hb, start, MIN(per_cluster, len - start));
            continue;
        }
        ret = qcow2_read_table(bs, off, s->cluster_size, buf);
        if (ret < 0) {
            return ret;
        }
        deserialize(hb, buf, s->cluster_size, start, b->gran_bits);
    }
    return 0;
}

/* Serialize the bits of @hb from byte @start into one cluster @buf of
 * @n bytes; false if none is set. */
static bool serialize(HBitmap *hb, uint8_t *buf, size_t n, uint64_t start,
                      int gran_bits)
{
    uint64_t len = hbitmap_size(hb), gran = 1ULL << gran_bits;
    uint64_t end = MIN(len, start + (((uint64_t)n * 8) << gran_bits));
    int64_t pos = start;
    bool any = false;

    memset(buf, 0, n);
    while ((uint64_t)pos < end &&
           (pos = hbitmap_next_dirty(hb, pos, end - pos)) >= 0) {
        int64_t z = hbitmap_next_zero(hb, pos, end - pos);
        uint64_t last = DIV_ROUND_UP((z < 0 ? end : (uint64_t)z) - start,
                                     gran);

        for (uint64_t g = (pos - start) >> gran_bits; g < last; g++) {
            buf[g / 8] |= 1U << (g % 8);
        }
        any = true;
        pos = z < 0 ? (int64_t)end : z;
    }
    return any;
}

/* ---- open ---- */

/* The node's engine bitmap for entry @b: inconsistent when in-use,
 * else its table checked and, read-write, its bits read. */
static int coroutine_fn open_one(BlockDriverState *bs, Qcow2Bitmap *b,
                                 uint64_t *budget, Error **errp)
{
    BdrvDirtyBitmap *bm;
    g_autofree uint64_t *table = NULL;
    int ret;

    bm = bdrv_create_dirty_bitmap(bs, 1U << b->gran_bits, b->name, errp);
    if (!bm) {
        return -EINVAL;
    }
    bdrv_dirty_bitmap_set_persistent(bm, true);
    if (b->flags & BME_FLAG_IN_USE) {
        bdrv_dirty_bitmap_set_inconsistent(bm);
        return 0;
    }
    bdrv_dirty_bitmap_set_enabled(bm, b->flags & BME_FLAG_AUTO);
    if ((uint64_t)b->table_size * 8 > *budget) {
        error_setg_errno(errp, ENOMEM, "Could not read bitmap_table table "
                         "from image for bitmap '%s'", b->name);
        return -ENOMEM;
    }
    *budget -= (uint64_t)b->table_size * 8;
    ret = read_bitmap_table(bs, b, bdrv_dirty_bitmap_size(bm), &table, errp);
    if (ret < 0 || !(bs->open_flags & BDRV_O_RDWR)) {
        bdrv_dirty_bitmap_set_unloaded(bm);
        return ret;
    }
    ret = load_bits(bs, b, table, bm);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read bitmap '%s' from image",
                         b->name);
    }
    return ret;
}

/* The directory rewritten in place must not hit other metadata (a
 * refcount table whose size covers it): the reference clears the
 * autoclear bit in the header first, then its overlap check refuses
 * the write and marks the image corrupt. */
static int coroutine_fn dir_write_refused(BlockDriverState *bs, size_t size)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = qcow2_check_metadata_overlap(bs, QCOW2_OL_BITMAP_DIRECTORY,
                                           s->bitmap_dir_offset, size);

    if (ret <= 0) {
        return ret;
    }
    s->h.autoclear_features &= ~(uint64_t)QCOW2_AUTOCLEAR_BITMAPS;
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        return ret;
    }
    return qcow2_pre_write_overlap_check(bs, QCOW2_OL_BITMAP_DIRECTORY,
                                         s->bitmap_dir_offset, size);
}

/* Read-write: the consistent bitmaps marked in-use in the directory
 * (rewritten in place) before anything can change the guest data. */
static int coroutine_fn mark_in_use(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *dir = NULL;
    bool change = false;
    size_t size;
    int ret;

    for (guint i = 0; i < s->bitmaps->len; i++) {
        Qcow2Bitmap *b = &g_array_index(s->bitmaps, Qcow2Bitmap, i);
        change |= !(b->flags & BME_FLAG_IN_USE);
        b->flags |= BME_FLAG_IN_USE;
    }
    if (!change) {
        return 0;
    }
    dir = build_dir(s->bitmaps, &size);
    ret = dir_write_refused(bs, size);
    if (ret < 0) {
        return ret;
    }
    ret = q_pwrite(bs->file, s->bitmap_dir_offset, size, dir);
    if (ret < 0) {
        return ret;
    }
    /* info shows the directory as the image now holds it */
    qobject_unref(s->bitmap_info);
    s->bitmap_info = bitmap_info_list(s);
    return bdrv_co_flush(bs->file->bs);
}

/* The extension present but the autoclear bit clear: a program without
 * bitmap support wrote the image; the bitmaps are ignored (and dropped
 * from the header on a read-write open), as by the reference (the
 * warning came with the header extensions, header.c). */
static int coroutine_fn ignore_stale_ext(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    if (!(bs->open_flags & BDRV_O_RDWR)) {
        return 0;
    }
    set_bitmaps_ext(s, 0, 0, 0);
    return qcow2_update_header(bs);
}

/* Directory read and parsed into s->bitmaps. */
static int coroutine_fn read_dir(BlockDriverState *bs, uint32_t nb,
                                 uint64_t dsize, uint64_t doff, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *dir = g_malloc(dsize);
    int ret = qcow2_read_table(bs, doff, dsize, dir);

    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to read bitmap directory");
        return ret;
    }
    s->bitmap_dir_offset = doff;
    s->bitmap_dir_size = dsize;
    return parse_dir(s, dir, dsize, nb, errp);
}

int coroutine_fn qcow2_read_bitmap_list(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2UnknownExt *e = bitmaps_ext(s);
    uint64_t budget = MAX_TABLE_BYTES_AT_OPEN;
    int ret;

    s->bitmaps = bitmap_list_new();
    if (!e) {
        return 0;
    }
    if (!(s->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)) {
        return ignore_stale_ext(bs);
    }
    if (e->len != 24 || !q_ld32(e->data)) {
        return 0;       /* refused by the header's checks */
    }
    if (!q_ld64(e->data + 8)) {
        error_setg(errp, "Requested bitmap directory size is zero");
        return -EINVAL;
    }
    ret = read_dir(bs, q_ld32(e->data), q_ld64(e->data + 8),
                   q_ld64(e->data + 16), errp);
    if (ret < 0) {
        return ret;
    }
    s->bitmap_info = bitmap_info_list(s);
    for (guint i = 0; ret == 0 && i < s->bitmaps->len; i++) {
        ret = open_one(bs, &g_array_index(s->bitmaps, Qcow2Bitmap, i),
                       &budget, errp);
    }
    if (ret == 0 && (bs->open_flags & BDRV_O_RDWR)) {
        ret = mark_in_use(bs);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Can't update bitmap directory");
        }
    }
    return ret;
}

int coroutine_fn qcow2_bitmaps_reopen_rw(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    if (!s->bitmaps || !s->bitmaps->len || s->h.version < 3) {
        return 0;
    }
    return mark_in_use(bs);
}

bool qcow2_keeps_bitmaps(BDRVQcow2State *s)
{
    return s->bitmaps && s->bitmaps->len && s->h.version >= 3;
}

/* The format's limits on a bitmap of the node: its size in bits for
 * the granularity, its name (messages as the reference's). */
static bool constraints_ok(BlockDriverState *bs, const char *name,
                           uint32_t granularity, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t len = bdrv_getlength(bs);
    uint64_t bytes;

    if (len < 0) {
        error_setg_errno(errp, (int)-len, "Failed to get size of '%s'",
                         bdrv_get_node_name(bs));
        return false;
    }
    bytes = DIV_ROUND_UP(DIV_ROUND_UP((uint64_t)len, granularity), 8);
    if (bytes > BME_MAX_PHYS_SIZE ||
        bytes > (uint64_t)BME_MAX_TABLE_SIZE * s->cluster_size) {
        error_setg(errp, "Too much space will be occupied by the bitmap. "
                   "Use larger granularity");
        return false;
    }
    if (strlen(name) > BME_MAX_NAME_SIZE) {
        error_setg(errp, "Name length exceeds maximum (%u characters)",
                   BME_MAX_NAME_SIZE);
        return false;
    }
    return true;
}

/* Anything to store (a persistent bitmap that is not inconsistent), and
 * does each still fit the format (after a resize)? */
static int need_store(BlockDriverState *bs, Error **errp)
{
    BdrvDirtyBitmap *bm;
    int need = 0;

    for (unsigned i = 0; (bm = bdrv_dirty_bitmap_at(bs, i)); i++) {
        const char *name = bdrv_dirty_bitmap_name(bm);

        if (!bdrv_dirty_bitmap_persistent(bm) ||
            bdrv_dirty_bitmap_inconsistent(bm)) {
            continue;
        }
        if (!constraints_ok(bs, name, bdrv_dirty_bitmap_granularity(bm),
                            errp)) {
            error_prepend(errp, "Bitmap '%s' doesn't satisfy the "
                          "constraints: ", name);
            return -EINVAL;
        }
        need = 1;
    }
    return need;
}

/* ---- store ---- */

/* The entry named @name in @list, or NULL. */
static Qcow2Bitmap *find_entry(GArray *list, const char *name)
{
    for (guint i = 0; list && i < list->len; i++) {
        Qcow2Bitmap *b = &g_array_index(list, Qcow2Bitmap, i);
        if (!strcmp(b->name, name)) {
            return b;
        }
    }
    return NULL;
}

/* Allocate a cluster range for @n bytes of bitmap @name and write @buf
 * there; the reference's messages on failure.  @data: a data cluster
 * (freed with a discard when refused, as the reference frees the
 * clusters of its bitmap table), else the table itself. */
static int64_t coroutine_fn write_new(BlockDriverState *bs, const void *buf,
                                      uint64_t n, const char *name,
                                      bool data, Error **errp)
{
    int64_t off = qcow2_alloc_clusters_at0(bs, n);
    int ret;

    if (off < 0) {
        error_setg_errno(errp, (int)-off, "Failed to allocate clusters for "
                         "bitmap '%s'", name);
        return off;
    }
    ret = off ? qcow2_pre_write_overlap_check(bs, 0, off, n)
              : qcow2_refuse_header_alloc(bs);
    if (ret < 0) {
        /* the image is corrupt now, but the reference still frees what
         * it allocated (a data cluster on other metadata: its discard
         * punches that metadata out of the file); never cluster 0 */
        if (off) {
            qcow2_free_clusters(bs, off, n, data);
        }
        error_setg_errno(errp, -ret, "Qcow2 overlap check failed");
        return ret;
    }
    ret = q_pwrite(bs->file, off, n, buf);
    if (ret < 0) {
        qcow2_free_clusters(bs, off, n, false);
        error_setg_errno(errp, -ret, "Failed to write bitmap '%s' to file",
                         name);
        return ret;
    }
    return off;
}

/* A failed store_one() frees the data clusters it wrote, as the
 * reference does: a later attempt (close after a failed inactivation)
 * finds the space again. */
static void coroutine_fn free_new_data(BlockDriverState *bs,
                                       const uint64_t *table, uint64_t n)
{
    BDRVQcow2State *s = bs->opaque;

    for (uint64_t i = 0; i < n; i++) {
        if (table[i]) {
            qcow2_free_clusters(bs, GUINT64_FROM_BE(table[i]),
                                s->cluster_size, true);
        }
    }
}

/* The data clusters and table of @bm written to new clusters; @b gets
 * the entry that describes them. */
static int coroutine_fn store_one(BlockDriverState *bs, BdrvDirtyBitmap *bm,
                                  Qcow2Bitmap *b, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    HBitmap *hb = bdrv_dirty_bitmap_peek(bm);      /* NULL: all clear */
    const char *name = bdrv_dirty_bitmap_name(bm);
    int gb = __builtin_ctz(bdrv_dirty_bitmap_granularity(bm));
    uint64_t n = table_entries(s, bdrv_dirty_bitmap_size(bm), gb);
    uint64_t per_cluster = (s->cluster_size * 8) << gb;
    g_autofree uint64_t *table = g_new0(uint64_t, MAX(n, 1));
    g_autofree uint8_t *buf = g_malloc(s->cluster_size);
    int64_t off;

    for (uint64_t i = 0; i < n; i++) {
        if (hb && serialize(hb, buf, s->cluster_size, i * per_cluster, gb)) {
            off = write_new(bs, buf, s->cluster_size, name, true, errp);
            if (off < 0) {
                free_new_data(bs, table, i);
                return off;
            }
            table[i] = GUINT64_TO_BE(off);
        }
    }
    off = write_new(bs, table, n * 8, name, false, errp);
    if (off < 0) {
        free_new_data(bs, table, n);
        return off;
    }
    b->table_offset = off;
    b->table_size = n;
    b->gran_bits = gb;
    b->flags = bdrv_dirty_bitmap_enabled(bm) ? BME_FLAG_AUTO : 0;
    b->name = g_strdup(name);
    return 0;
}

/* The entry for the image's entry @o: its bitmap stored afresh, or @o
 * kept (inconsistent, or no bitmap in memory: the reference leaves it). */
static int coroutine_fn store_old(BlockDriverState *bs, Qcow2Bitmap *o,
                                  GArray *list, Error **errp)
{
    BdrvDirtyBitmap *bm = bdrv_find_dirty_bitmap(bs, o->name);
    Qcow2Bitmap b = *o;

    if (!bm || !bdrv_dirty_bitmap_persistent(bm) ||
        bdrv_dirty_bitmap_inconsistent(bm)) {
        b.name = g_strdup(o->name);
        o->kept = b.kept = true;     /* not freed afterwards */
    } else {
        int ret = store_one(bs, bm, &b, errp);
        if (ret < 0) {
            return ret;
        }
    }
    g_array_append_val(list, b);
    return 0;
}

/* The new directory @list: the image's entries in their order, then the
 * persistent bitmaps it did not hold, newest first (the reference's
 * order). */
static int coroutine_fn store_all(BlockDriverState *bs, GArray *old,
                                  GArray *list, Error **errp)
{
    BdrvDirtyBitmap *bm;
    int ret = 0;

    for (guint i = 0; i < old->len; i++) {
        g_array_index(old, Qcow2Bitmap, i).kept = false;
    }
    for (guint i = 0; ret == 0 && i < old->len; i++) {
        ret = store_old(bs, &g_array_index(old, Qcow2Bitmap, i), list,
                        errp);
    }
    for (unsigned i = 0; ret == 0 && (bm = bdrv_dirty_bitmap_at(bs, i));
         i++) {
        Qcow2Bitmap b = { 0 };

        if (!bdrv_dirty_bitmap_persistent(bm) ||
            find_entry(old, bdrv_dirty_bitmap_name(bm))) {
            continue;
        }
        ret = store_one(bs, bm, &b, errp);
        if (ret == 0) {
            g_array_append_val(list, b);
        }
    }
    return ret;
}

/* Drop a reference to each cluster of [off, off+size), all or none: a
 * cluster already free (a hostile directory sharing tables) leaves the
 * range alone with the reference's message, not a corrupt image. */
static void coroutine_fn free_range(BlockDriverState *bs, uint64_t off,
                                    uint64_t size, bool discard)
{
    BDRVQcow2State *s = bs->opaque;

    for (uint64_t c = off; size && c < off + size; c += s->cluster_size) {
        uint64_t rc = 0, i = c >> (s->cluster_bits + s->refblock_bits);
        int err = 0;

        if (i >= s->refcount_table_size || !s->refcount_table[i]) {
            err = EAGAIN;       /* no refcount block: the reference fails so */
        } else if (qcow2_get_refcount(bs, c >> s->cluster_bits, &rc) < 0 ||
                   !rc) {
            err = EINVAL;
        }
        if (err) {
            fprintf(stderr, "qcow2_free_clusters failed: %s\n",
                    strerror(err));
            return;
        }
    }
    qcow2_free_clusters(bs, off, size, discard);
}

/* The clusters of an old entry no longer used: data (always discarded
 * in the file, as by the reference), then the table.  A table with one
 * bad entry is left whole: the reference loads (and validates) it
 * before freeing anything. */
static void coroutine_fn free_entry(BlockDriverState *bs, Qcow2Bitmap *b)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint64_t *t = g_new(uint64_t, b->table_size);

    if (qcow2_read_table(bs, b->table_offset, b->table_size * 8ULL, t) < 0) {
        return;
    }
    for (uint32_t i = 0; i < b->table_size; i++) {
        t[i] = GUINT64_FROM_BE(t[i]);
        if (!table_entry_ok(s, t[i])) {
            return;
        }
    }
    for (uint32_t i = 0; i < b->table_size; i++) {
        if (t[i] & BME_TABLE_OFFSET) {
            free_range(bs, t[i] & BME_TABLE_OFFSET, s->cluster_size, true);
        }
    }
    free_range(bs, b->table_offset, b->table_size * 8ULL,
               s->discard_passthrough_other);
}

/* The new directory written, the header switched to it. */
static int coroutine_fn switch_dir(BlockDriverState *bs, GArray *list)
{
    BDRVQcow2State *s = bs->opaque;
    size_t size;
    g_autofree uint8_t *dir = build_dir(list, &size);
    int64_t off = 0;
    int ret;

    if (list->len) {
        off = qcow2_alloc_clusters(bs, size);
        ret = off < 0 ? (int)off : q_pwrite(bs->file, off, size, dir);
        if (ret < 0) {
            if (off > 0) {
                qcow2_free_clusters(bs, off, size, false);
            }
            return ret;
        }
    }
    ret = qcow2_cache_flush(bs, &s->refcount_cache);
    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    if (ret < 0) {
        return ret;
    }
    set_bitmaps_ext(s, list->len, size, off);
    ret = qcow2_update_header(bs);
    s->bitmap_dir_offset = off;
    s->bitmap_dir_size = size;
    return ret;
}

/* A failed store: the clusters of the entries written afresh freed (the
 * entries kept as found hold the image's own). */
static void coroutine_fn free_new_entries(BlockDriverState *bs, GArray *list)
{
    for (guint i = 0; i < list->len; i++) {
        Qcow2Bitmap *b = &g_array_index(list, Qcow2Bitmap, i);
        if (!b->kept) {
            free_entry(bs, b);
        }
    }
}

/* The old entries stored afresh freed in the order of the node's
 * bitmaps (newest first), as the reference drops their tables: with a
 * hostile table on a refcount block, which frees fail depends on it. */
static void coroutine_fn free_old_entries(BlockDriverState *bs, GArray *old)
{
    BdrvDirtyBitmap *bm;

    for (unsigned i = 0; (bm = bdrv_dirty_bitmap_at(bs, i)); i++) {
        Qcow2Bitmap *b = find_entry(old, bdrv_dirty_bitmap_name(bm));

        if (b && !b->kept) {
            free_entry(bs, b);
            b->kept = true;     /* a name twice: freed once */
        }
    }
}

/* Bits still on disk (the node was opened read-only, then reopened
 * read-write) read in, ORed with those set since. */
static int coroutine_fn load_all(BlockDriverState *bs, Error **errp)
{
    BdrvDirtyBitmap *bm;

    for (unsigned i = 0; (bm = bdrv_dirty_bitmap_at(bs, i)); i++) {
        int ret = bdrv_dirty_bitmap_persistent(bm) ?
                  bdrv_dirty_bitmap_load(bm, errp) : 0;
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* The directory read again before it is replaced, as the reference
 * does: a file that fails reads fails the store the same way. */
static int coroutine_fn reread_dir(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *dir = NULL;
    int ret;

    if (!s->bitmaps->len) {
        return 0;
    }
    dir = g_malloc(s->bitmap_dir_size);
    ret = q_pread(bs->file, s->bitmap_dir_offset, s->bitmap_dir_size, dir);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to read bitmap directory");
    }
    return ret;
}

int coroutine_fn qcow2_store_bitmaps(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    GArray *old = s->bitmaps;
    uint64_t old_off = s->bitmap_dir_offset, old_size = s->bitmap_dir_size;
    int ret;

    if (!(bs->open_flags & BDRV_O_RDWR) || !old) {
        return 0;
    }
    ret = reread_dir(bs, errp);
    if (ret == 0) {
        ret = need_store(bs, errp);
    }
    if (ret <= 0) {
        return ret;     /* nothing to write: the directory stays */
    }
    ret = load_all(bs, errp);
    if (ret < 0) {
        return ret;
    }
    s->bitmaps = bitmap_list_new();
    ret = store_all(bs, old, s->bitmaps, errp);
    if (ret == 0) {
        ret = switch_dir(bs, s->bitmaps);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to update bitmap extension");
        }
    }
    if (ret < 0) {
        /* the image still holds the old directory (in-use): keep it, and
         * give back what the new one took */
        free_new_entries(bs, s->bitmaps);
        g_array_unref(s->bitmaps);
        s->bitmaps = old;
        return ret;
    }
    /* the old directory goes with the header switch, before the old
     * tables (the reference's order: freeing a table may discard a
     * refcount block a hostile table points at, failing what follows) */
    if (old->len) {
        free_range(bs, old_off, old_size, s->discard_passthrough_other);
    }
    free_old_entries(bs, old);
    g_array_unref(old);
    return 0;
}

/* ---- removal ---- */

/* --remove of a bitmap the image holds: the directory rewritten without
 * it at once (new clusters, header switched), then its clusters freed. */
static int coroutine_fn remove_stored(BlockDriverState *bs, guint idx)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2Bitmap gone = g_array_index(s->bitmaps, Qcow2Bitmap, idx);
    uint64_t old_off = s->bitmap_dir_offset, old_size = s->bitmap_dir_size;
    int ret;

    gone.name = g_strdup(gone.name);
    g_array_remove_index(s->bitmaps, idx);
    ret = switch_dir(bs, s->bitmaps);
    if (ret == 0) {
        free_range(bs, old_off, old_size, s->discard_passthrough_other);
        free_entry(bs, &gone);
    }
    g_free(gone.name);
    return ret;
}

typedef struct RemoveCo {
    BlockDriverState *bs;
    const char *name;
    int ret;
} RemoveCo;

/* The entry named r->name removed from the image, if it is there. */
static void coroutine_fn remove_entry_co(void *opaque)
{
    RemoveCo *r = opaque;
    BDRVQcow2State *s = r->bs->opaque;

    r->ret = 0;
    for (guint i = 0; s->bitmaps && i < s->bitmaps->len; i++) {
        if (!strcmp(g_array_index(s->bitmaps, Qcow2Bitmap, i).name,
                    r->name)) {
            r->ret = remove_stored(r->bs, i);
            break;
        }
    }
}

static int qcow2_remove_bitmap(BlockDriverState *bs, const char *name,
                               Error **errp)
{
    RemoveCo r = { bs, name, 0 };

    co_run_sync(remove_entry_co, &r);
    if (r.ret < 0) {
        error_setg_errno(errp, -r.ret, "Failed to update bitmap extension");
    }
    return r.ret;
}

/* ---- engine ops ---- */

static bool qcow2_bitmaps_supported(BlockDriverState *bs)
{
    return ((BDRVQcow2State *)bs->opaque)->h.version >= 3;
}

/* The format's limits on a new bitmap and on the directory (count,
 * size), messages as the reference's. */
static bool new_bitmap_fits(BlockDriverState *bs, const char *name,
                            uint32_t granularity, Error **errp)
{
    uint64_t nb = 1, dsize = dir_entry_size(strlen(name));
    BdrvDirtyBitmap *bm;

    if (!constraints_ok(bs, name, granularity, errp)) {
        return false;
    }
    for (unsigned i = 0; (bm = bdrv_dirty_bitmap_at(bs, i)); i++) {
        if (bdrv_dirty_bitmap_persistent(bm)) {
            nb++;
            dsize += dir_entry_size(strlen(bdrv_dirty_bitmap_name(bm)));
        }
    }
    if (nb > MAX_BITMAPS) {
        error_setg(errp, "Maximum number of persistent bitmaps is already "
                   "reached");
    } else if (dsize > MAX_DIR_SIZE) {
        error_setg(errp, "Not enough space in the bitmap directory");
    }
    return nb <= MAX_BITMAPS && dsize <= MAX_DIR_SIZE;
}

/* .can_store_new: v3 only, then the limits; failures carry the
 * reference's "Can't make bitmap ... persistent" prefix. */
static bool qcow2_can_store_new_bitmap(BlockDriverState *bs, const char *name,
                                       uint32_t granularity, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    bool ok;

    if (bdrv_find_dirty_bitmap(bs, name)) {
        error_setg(errp, "Bitmap already exists: %s", name);
        return false;
    }
    if (s->h.version < 3) {
        error_setg(errp, "Cannot store dirty bitmaps in qcow2 v2 files");
        ok = false;
    } else {
        ok = new_bitmap_fits(bs, name, granularity, errp);
    }
    if (!ok) {
        error_prepend(errp, "Can't make bitmap '%s' persistent in '%s': ",
                      name, bdrv_get_node_name(bs));
    }
    return ok;
}

/* Arguments and result of the load and store coroutines (bm: load only). */
typedef struct BitmapCo {
    BlockDriverState *bs;
    BdrvDirtyBitmap *bm;
    Error **errp;
    int ret;
} BitmapCo;

/* Bits of a bitmap left on disk at a read-only open, read on demand. */
static void coroutine_fn load_entry_co(void *opaque)
{
    BitmapCo *l = opaque;
    BDRVQcow2State *s = l->bs->opaque;
    Qcow2Bitmap *b = find_entry(s->bitmaps, bdrv_dirty_bitmap_name(l->bm));
    g_autofree uint64_t *table = NULL;

    l->ret = -ENOENT;
    if (b) {
        l->ret = read_bitmap_table(l->bs, b, bdrv_dirty_bitmap_size(l->bm),
                                   &table, l->errp);
    }
    if (l->ret == 0) {
        l->ret = load_bits(l->bs, b, table, l->bm);
    }
    if (l->ret < 0 && !(l->errp && *l->errp)) {
        error_setg_errno(l->errp, -l->ret, "Could not read bitmap '%s' from "
                         "image", bdrv_dirty_bitmap_name(l->bm));
    }
}

static int qcow2_load_bitmap(BlockDriverState *bs, BdrvDirtyBitmap *bm,
                             Error **errp)
{
    BitmapCo l = { bs, bm, errp, 0 };

    co_run_sync(load_entry_co, &l);
    return l.ret;
}

static void coroutine_fn store_entry_co(void *opaque)
{
    BitmapCo *c = opaque;

    c->ret = qcow2_store_bitmaps(c->bs, c->errp);
}

/* .store: what close does, on demand (strata-img bitmap checks it). */
static int qcow2_store_bitmaps_now(BlockDriverState *bs, Error **errp)
{
    BitmapCo c = { bs, NULL, errp, 0 };

    co_run_sync(store_entry_co, &c);
    return c.ret;
}

const BlockDriverBitmapOps qcow2_bitmap_ops = {
    .supported = qcow2_bitmaps_supported,
    .can_store_new = qcow2_can_store_new_bitmap,
    .load = qcow2_load_bitmap,
    .remove_persistent = qcow2_remove_bitmap,
    .store = qcow2_store_bitmaps_now,
};

/* measure: what the persistent bitmaps of @in_bs take in a qcow2 image
 * of @cluster_size clusters, every data cluster counted. */
uint64_t qcow2_bitmaps_measure(BlockDriverState *in_bs, uint64_t cluster_size)
{
    BdrvDirtyBitmap *bm;
    uint64_t total = 0, dsize = 0;

    for (unsigned i = 0; (bm = bdrv_dirty_bitmap_at(in_bs, i)); i++) {
        uint64_t bits, clusters;

        if (!bdrv_dirty_bitmap_persistent(bm)) {
            continue;
        }
        bits = DIV_ROUND_UP(bdrv_dirty_bitmap_size(bm),
                            bdrv_dirty_bitmap_granularity(bm));
        clusters = DIV_ROUND_UP(DIV_ROUND_UP(bits, 8), cluster_size);
        total += clusters * cluster_size + ROUND_UP(clusters * 8,
                                                    cluster_size);
        dsize += dir_entry_size(strlen(bdrv_dirty_bitmap_name(bm)));
    }
    return total + ROUND_UP(dsize, cluster_size);
}
