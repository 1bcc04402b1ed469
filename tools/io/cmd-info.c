#include "config.h"
/*
 * strata-io: image inspection commands: alloc, map, info, length.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/io/io.h"
#include "util/cutils.h"

/* ---- alloc ---- */

static int alloc_f(BlockBackend *blk, int argc, char **argv)
{
    int64_t offset, start, bytes, remaining, sum = 0, num;
    char s1[64];
    int ret;

    start = offset = io_num_arg(argv[1]);
    if (offset < 0) {
        return offset;
    }
    bytes = argc == 3 ? io_num_arg(argv[2]) : (int64_t)BDRV_SECTOR_SIZE;
    if (bytes < 0) {
        return bytes;
    }
    for (remaining = bytes; remaining; remaining -= num, offset += num) {
        ret = blk_is_allocated(blk, offset, remaining, &num);
        if (ret < 0) {
            printf("is_allocated failed: %s\n", strerror(-ret));
            return ret;
        }
        sum += ret ? num : 0;
        if (num == 0) {
            bytes -= remaining;
            break;
        }
    }
    io_cvtstr(start, s1, sizeof(s1));
    printf("%" PRId64 "/%" PRId64 " bytes allocated at offset %s\n",
           sum, bytes, s1);
    return 0;
}

/* ---- map ---- */

/* Allocation status of a run of extents with the same status. */
static int map_is_allocated(BlockBackend *blk, int64_t offset, int64_t bytes,
                            int64_t *pnum)
{
    int64_t num;
    int ret, first;

    first = ret = blk_is_allocated(blk, offset, bytes, &num);
    if (ret < 0) {
        return ret;
    }
    *pnum = num;
    while (bytes > 0 && ret == first) {
        offset += num;
        bytes -= num;
        ret = blk_is_allocated(blk, offset, bytes, &num);
        if (ret != first || !num) {
            break;
        }
        *pnum += num;
    }
    return first;
}

static int map_f(BlockBackend *blk, int argc, char **argv)
{
    int64_t offset = 0, bytes = blk_getlength(blk), num;
    char s1[64], s2[64];
    int ret;

    if (bytes < 0) {
        error_report("Failed to query image length: %s", strerror(-bytes));
        return bytes;
    }
    for (; bytes; offset += num, bytes -= num) {
        ret = map_is_allocated(blk, offset, bytes, &num);
        if (ret < 0) {
            error_report("Failed to get allocation status: %s",
                         strerror(-ret));
            return ret;
        }
        if (!num) {
            error_report("Unexpected end of image");
            return -EIO;
        }
        io_cvtstr(num, s1, sizeof(s1));
        io_cvtstr(offset, s2, sizeof(s2));
        printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n",
               s1, num, ret ? "    allocated" : "not allocated", s2,
               offset);
    }
    return 0;
}

/* ---- info ---- */

static void dump_qdict(int indent, QDict *d);
static void dump_qlist(int indent, QList *l);

static bool is_composite(QObject *obj)
{
    QType t = qobject_type(obj);

    return t == QTYPE_QDICT || t == QTYPE_QLIST;
}

static void dump_scalar(QObject *obj)
{
    QNum *n = qobject_to_qnum(obj);
    int64_t i;
    uint64_t u;

    switch (qobject_type(obj)) {
    case QTYPE_QNUM:
        if (qnum_get_try_int(n, &i)) {
            printf("%" PRId64, i);
        } else if (qnum_get_try_uint(n, &u)) {
            printf("%" PRIu64, u);
        } else {
            printf("%.17g", qnum_get_double(n));
        }
        break;
    case QTYPE_QSTRING:
        printf("%s", qstring_get_str(qobject_to_qstring(obj)));
        break;
    case QTYPE_QBOOL:
        printf("%s", qbool_get_bool(qobject_to_qbool(obj)) ? "true" : "false");
        break;
    default:
        break;
    }
}

void io_dump_qobject(int indent, QObject *obj)
{
    if (qobject_type(obj) == QTYPE_QDICT) {
        dump_qdict(indent, qobject_to_qdict(obj));
    } else if (qobject_type(obj) == QTYPE_QLIST) {
        dump_qlist(indent, qobject_to_qlist(obj));
    } else {
        dump_scalar(obj);
    }
}

static void dump_entry(int indent, const char *label, QObject *value)
{
    bool composite = is_composite(value);

    printf("%*s%s:%c", indent * 4, "", label, composite ? '\n' : ' ');
    io_dump_qobject(indent + 1, value);
    if (!composite) {
        printf("\n");
    }
}

static void dump_qlist(int indent, QList *l)
{
    QListEntry *e;
    int i = 0;

    QLIST_FOREACH_ENTRY(l, e) {
        char label[32];

        snprintf(label, sizeof(label), "[%d]", i++);
        dump_entry(indent, label, qlist_entry_obj(e));
    }
}

static void dump_qdict(int indent, QDict *d)
{
    for (const QDictEntry *e = qdict_first(d); e; e = qdict_next(d, e)) {
        char *key = g_strdup(qdict_entry_key(e));

        g_strdelimit(key, "-", ' ');
        dump_entry(indent, key, qdict_entry_value(e));
        g_free(key);
    }
}

/* Where qcow2 keeps the VM state: past the space its L1 table covers.
 * Filters above it (compress) report their child's. */
static int64_t info_vm_state_offset(BlockBackend *blk, int cluster_size)
{
    BlockDriverState *bs = bdrv_skip_filters(blk_bs(blk));
    int64_t len = blk_getlength(blk);
    int cluster_bits, l2_bits;
    QDict *spec, *data;

    if (!cluster_size || len < 0 || !bs ||
        strcmp(bdrv_get_format_name(bs) ?: "", "qcow2")) {
        return 0;
    }
    cluster_bits = __builtin_ctz(cluster_size);
    l2_bits = cluster_bits - 3;
    spec = bdrv_get_specific_info(bs, NULL);
    data = spec ? qdict_get_qdict(spec, "data") : NULL;
    if (data && qdict_get_try_bool(data, "extended-l2", false)) {
        l2_bits--;
    }
    qobject_unref(spec);
    return DIV_ROUND_UP(len, (int64_t)1 << (cluster_bits + l2_bits)) <<
           (cluster_bits + l2_bits);
}

/* Drivers whose info the reference reports as all zeroes. */

/* The reference prints nothing for empty data (the file driver's). */
static bool info_has_specific_data(QDict *spec)
{
    QObject *data = qdict_get(spec, "data");
    QDict *dict = qobject_to_qdict(data);

    return data && (!dict || qdict_size(dict));
}

static QDict *info_specific(BlockDriverState *bs, Error **errp)
{
    return bdrv_get_specific_info(bs, errp);
}

static int info_f(BlockBackend *blk, int argc, char **argv)
{
    BlockDriverState *bs = blk_bs(blk);
    BlockDriverInfo bdi;
    Error *err = NULL;
    QDict *spec;
    char s1[64], s2[64];
    int ret;

    if (bdrv_get_format_name(bs)) {
        printf("format name: %s\n", bdrv_get_format_name(bs));
    }
    if (bdrv_get_protocol_name(bs)) {
        printf("format name: %s\n", bdrv_get_protocol_name(bs));
    }
    ret = bdrv_get_info(bs, &bdi);
    if (ret) {
        return ret;
    }
    spec = info_specific(bs, &err);
    io_cvtstr(bdi.cluster_size, s1, sizeof(s1));
    io_cvtstr(info_vm_state_offset(blk, bdi.cluster_size), s2,
              sizeof(s2));
    printf("cluster size: %s\n", s1);
    printf("vm state offset: %s\n", s2);
    if (err) {
        error_report_err(err);
        return -EIO;
    }
    if (spec && info_has_specific_data(spec)) {
        printf("Format specific information:\n");
        io_dump_qobject(1, qdict_get(spec, "data"));
    }
    qobject_unref(spec);
    return 0;
}

/* ---- length ---- */

static int length_f(BlockBackend *blk, int argc, char **argv)
{
    int64_t size = blk_getlength(blk);
    char s1[64];

    if (size < 0) {
        printf("getlength: %s\n", strerror(-size));
        return size;
    }
    io_cvtstr(size, s1, sizeof(s1));
    printf("%s\n", s1);
    return 0;
}

const IoCmd io_info_cmds[] = {
    { "alloc", "a", alloc_f, 1, 2, 0, 0, "offset [count]",
      "checks if offset is allocated in the file", NULL },
    { "map", NULL, map_f, 0, 0, 0, 0, "",
      "prints the allocated areas of a file", NULL },
    { "info", "i", info_f, 0, 0, 0, 0, NULL,
      "prints information about the current file", NULL },
    { "length", "l", length_f, 0, 0, 0, 0, NULL,
      "gets the length of the current file", NULL },
    { NULL },
};
