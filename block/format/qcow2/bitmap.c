#include "config.h"
/*
 * qcow2 persistent bitmaps, as far as info shows them: the bitmap
 * directory's names, flags and granularities.  The extension itself is
 * kept verbatim; bitmaps are not updated by writes, so read-write opens
 * clear the "bitmaps" autoclear bit (header.c / qcow2.c).
 */
#include "qcow2.h"

#define BME_FLAG_IN_USE (1U << 0)
#define BME_FLAG_AUTO   (1U << 1)
#define MAX_BITMAPS 65535
#define MAX_DIR_SIZE (1024 * MAX_BITMAPS)

/* The bitmaps extension kept among the unknown ones, or NULL. */
static Qcow2UnknownExt *bitmaps_ext(BDRVQcow2State *s)
{
    for (guint i = 0; s->unknown_exts && i < s->unknown_exts->len; i++) {
        Qcow2UnknownExt *e = g_ptr_array_index(s->unknown_exts, i);
        if (e->magic == QCOW2_EXT_BITMAPS && e->len >= 24) {
            return e;
        }
    }
    return NULL;
}

#define BME_FLAGS_KNOWN (BME_FLAG_IN_USE | BME_FLAG_AUTO)
#define BME_TYPE_DIRTY_TRACKING 1
#define BME_MIN_GRANULARITY_BITS 9
#define BME_MAX_GRANULARITY_BITS 31
#define BME_MAX_NAME_SIZE 1023
#define BME_MAX_TABLE_SIZE 0x8000000U
#define BME_MAX_PHYS_SIZE (512 * MiB)

/* The size of the directory entry at @p (of @left bytes), or 0 when it
 * does not fit in the directory. */
static size_t entry_size(const uint8_t *p, size_t left)
{
    size_t size;

    if (left < 24) {
        return 0;
    }
    size = ROUND_UP(24 + (size_t)q_ld32(p + 20) + q_ld16(p + 18), 8);
    return size <= left ? size : 0;
}

/* The limits the reference puts on an entry before it trusts it: a
 * table in the file's clusters, of bounded size, known flags and type,
 * a granularity it supports. */
static bool entry_ok(BDRVQcow2State *s, const uint8_t *p)
{
    uint64_t toff = q_ld64(p);
    uint32_t tsize = q_ld32(p + 8);

    return tsize && tsize <= BME_MAX_TABLE_SIZE &&
           (uint64_t)tsize * s->cluster_size <= BME_MAX_PHYS_SIZE &&
           toff && !qcow2_offset_into_cluster(s, toff) &&
           !(q_ld32(p + 12) & ~BME_FLAGS_KNOWN) &&
           p[16] == BME_TYPE_DIRTY_TRACKING &&
           p[17] >= BME_MIN_GRANULARITY_BITS &&
           p[17] <= BME_MAX_GRANULARITY_BITS &&
           q_ld16(p + 18) <= BME_MAX_NAME_SIZE;
}

/* One checked directory entry at @p appended to @list. */
static void add_entry(const uint8_t *p, QList *list)
{
    uint32_t flags = q_ld32(p + 12);
    QDict *d = qdict_new();
    QList *fl = qlist_new();
    g_autofree char *name = g_strndup((const char *)p + 24 + q_ld32(p + 20),
                                      q_ld16(p + 18));

    if (flags & BME_FLAG_IN_USE) {
        qlist_append_str(fl, "in-use");
    }
    if (flags & BME_FLAG_AUTO) {
        qlist_append_str(fl, "auto");
    }
    qdict_put(d, "flags", fl);
    qdict_put_str(d, "name", name);
    qdict_put_int(d, "granularity", 1LL << p[17]);
    qlist_append(list, d);
}

/* Every entry of the directory @dir checked, then listed: an image the
 * reference refuses to open is refused with its message. */
static int parse_dir(BDRVQcow2State *s, const uint8_t *dir, size_t dsize,
                     uint32_t nb, Error **errp)
{
    size_t pos = 0;

    for (uint32_t i = 0; i < nb; i++) {
        size_t n = entry_size(dir + pos, dsize - pos);

        if (!n) {
            error_setg(errp, "Broken bitmap directory");
            return -EINVAL;
        }
        if (!entry_ok(s, dir + pos)) {
            g_autofree char *name = g_strndup(
                (const char *)dir + pos + 24 + q_ld32(dir + pos + 20),
                q_ld16(dir + pos + 18));
            error_setg(errp, "Bitmap '%s' doesn't satisfy the constraints",
                       name);
            return -EINVAL;
        }
        pos += n;
    }
    if (pos != dsize) {
        error_setg(errp, "Broken bitmap directory");
        return -EINVAL;
    }
    s->bitmap_info = qlist_new();
    for (pos = 0; pos < dsize; pos += entry_size(dir + pos, dsize - pos)) {
        add_entry(dir + pos, s->bitmap_info);
    }
    return 0;
}

int coroutine_fn qcow2_read_bitmap_list(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2UnknownExt *e = bitmaps_ext(s);
    uint32_t nb;
    uint64_t dsize, doff;
    g_autofree uint8_t *dir = NULL;
    int ret;

    if (!e || !(s->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)) {
        return 0;
    }
    nb = q_ld32(e->data);
    dsize = q_ld64(e->data + 8);
    doff = q_ld64(e->data + 16);
    if (!nb || nb > MAX_BITMAPS || !dsize || dsize > MAX_DIR_SIZE ||
        qcow2_offset_into_cluster(s, doff)) {
        return 0;       /* refused by the header's checks */
    }
    dir = g_malloc(dsize);
    ret = qcow2_read_table(bs, doff, dsize, dir);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read bitmap directory");
        return ret;
    }
    return parse_dir(s, dir, dsize, nb, errp);
}
