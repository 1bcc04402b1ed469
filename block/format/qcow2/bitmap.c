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

/* One directory entry at @p (of @left bytes); its size or 0 if bad. */
static size_t parse_entry(const uint8_t *p, size_t left, QList *list)
{
    uint32_t flags, extra;
    uint16_t name_len;
    size_t size;
    QDict *d;
    QList *fl;

    if (left < 24) {
        return 0;
    }
    flags = q_ld32(p + 12);
    name_len = q_ld16(p + 18);
    extra = q_ld32(p + 20);
    size = ROUND_UP(24 + (size_t)extra + name_len, 8);
    if (size > left || p[17] > 63) {
        return 0;
    }
    d = qdict_new();
    fl = qlist_new();
    if (flags & BME_FLAG_IN_USE) {
        qlist_append_str(fl, "in-use");
    }
    if (flags & BME_FLAG_AUTO) {
        qlist_append_str(fl, "auto");
    }
    qdict_put(d, "flags", fl);
    {
        g_autofree char *name = g_strndup((const char *)p + 24 + extra,
                                          name_len);
        qdict_put_str(d, "name", name);
    }
    qdict_put_int(d, "granularity", 1LL << p[17]);
    qlist_append(list, d);
    return size;
}

int coroutine_fn qcow2_read_bitmap_list(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2UnknownExt *e = bitmaps_ext(s);
    uint32_t nb;
    uint64_t dsize, doff;
    g_autofree uint8_t *dir = NULL;
    size_t pos = 0;
    int ret;

    if (!e || !(s->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)) {
        return 0;
    }
    nb = q_ld32(e->data);
    dsize = q_ld64(e->data + 8);
    doff = q_ld64(e->data + 16);
    if (!nb || nb > MAX_BITMAPS || dsize > MAX_DIR_SIZE ||
        qcow2_offset_into_cluster(s, doff)) {
        return 0;
    }
    dir = g_malloc(dsize);
    ret = qcow2_read_table(bs, doff, dsize, dir);
    if (ret < 0) {
        return ret;
    }
    s->bitmap_info = qlist_new();
    for (uint32_t i = 0; i < nb; i++) {
        size_t n = parse_entry(dir + pos, dsize - pos, s->bitmap_info);
        if (!n) {
            break;
        }
        pos += n;
    }
    return 0;
}
