#include "config.h"
/*
 * qemu-img info: what an image is (format, sizes, format-specific data)
 * and, since QEMU 8.0, the nodes below it ("children"), as human text or
 * the reference's JSON (keys inserted in the QAPI order of ImageInfo so the
 * dictionary's bucket order matches byte for byte).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/img/img.h"
#include "tools/img/snapshot-dump.h"
#include "tools/img/info-human.h"

typedef struct InfoArgs {
    ImgCommonOpts common;
    const char *filename;
    OutputFormat output;
    bool chain;
} InfoArgs;

typedef struct NodeLen {
    BlockDriverState *bs;
    int64_t len;
    bool allocated;     /* allocated file size instead of length */
} NodeLen;

static void coroutine_fn node_len_entry(void *opaque)
{
    NodeLen *nl = opaque;

    nl->len = nl->allocated ? bdrv_co_get_allocated_file_size(nl->bs)
                            : bdrv_co_getlength(nl->bs);
}

/* Length (or allocated bytes) of @bs from plain context; -errno. */
static int64_t node_len(BlockDriverState *bs, bool allocated)
{
    NodeLen nl = { .bs = bs, .len = -EINVAL, .allocated = allocated };

    co_run_sync(node_len_entry, &nl);
    return nl.len;
}

/* The node's BlockDriverInfo; false if it has none. */
static bool driver_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    return bdrv_get_info(bs, bdi) == 0;
}

/* "format-specific": {type, data} if the driver describes itself. */
static void put_specific_info(QDict *info, BlockDriverState *bs)
{
    Error *err = NULL;
    QDict *spec = bdrv_get_specific_info(bs, &err);

    if (spec) {
        qdict_put_obj(info, "format-specific", QOBJECT(spec));
    }
    error_free(err);
}

/* backing-filename, full-backing-filename, backing-filename-format:
 * the name the image records, resolved as an open would resolve it. */
static void put_backing_info(QDict *info, BlockDriverState *bs)
{
    const char *name = bdrv_get_backing_filename(bs);
    const char *fmt = bdrv_get_backing_format(bs);
    g_autofree char *full = NULL;

    if (!name) {
        return;
    }
    qdict_put_str(info, "backing-filename", name);
    full = bdrv_get_full_backing_filename(bs, NULL);
    if (full) {
        qdict_put_str(info, "full-backing-filename", full);
    }
    if (fmt) {
        qdict_put_str(info, "backing-filename-format", fmt);
    }
}

static QDict *node_info(BlockDriverState *bs);

/* "snapshots" when the node has internal snapshots. */
static void put_snapshots(QDict *info, BlockDriverState *bs)
{
    QList *list = snapshot_info_list(bs);

    if (list) {
        qdict_put_obj(info, "snapshots", QOBJECT(list));
    }
}

/* "children": [{"name": ..., "info": ...}] for every child node, the
 * newest first as the reference lists them (blkverify shows "test"
 * before "raw"). */
static QList *children_info(BlockDriverState *bs)
{
    QList *list = qlist_new();

    unsigned n = 0;

    while (bdrv_child_at(bs, n, NULL)) {
        n++;
    }
    for (unsigned i = n; i-- > 0;) {
        const char *name;
        BlockDriverState *child = bdrv_child_at(bs, i, &name);
        QDict *entry = qdict_new();

        qdict_put_str(entry, "name", name);
        qdict_put_obj(entry, "info", QOBJECT(node_info(child)));
        qlist_append_obj(list, QOBJECT(entry));
    }
    return list;
}

/* BlockGraphInfo of @bs, keys in ImageInfo's declaration order. */
static QDict *node_info(BlockDriverState *bs)
{
    QDict *info = qdict_new();
    int64_t actual = node_len(bs, true);
    BlockDriverInfo bdi;
    bool has_bdi = driver_info(bs, &bdi);

    qdict_put_str(info, "filename", bdrv_get_filename(bs));
    qdict_put_str(info, "format", bdrv_get_format_name(bs));
    if (has_bdi) {
        qdict_put_bool(info, "dirty-flag", bdi.is_dirty);
    }
    if (actual >= 0) {
        qdict_put_int(info, "actual-size", actual);
    }
    qdict_put_int(info, "virtual-size", MAX(node_len(bs, false), 0));
    if (has_bdi && bdi.cluster_size > 0) {
        qdict_put_int(info, "cluster-size", bdi.cluster_size);
    }
    if (has_bdi && bdi.is_encrypted) {
        qdict_put_bool(info, "encrypted", true);
    }
    put_backing_info(info, bs);
    put_snapshots(info, bs);
    put_specific_info(info, bs);
    qdict_put_obj(info, "children", QOBJECT(children_info(bs)));
    return info;
}

/* One option; returns -1 to go on, else the exit status. */
static int info_option(int c, void *opaque)
{
    InfoArgs *a = opaque;

    switch (c) {
    case 'b':
        a->chain = true;
        return -1;
    case OPTION_OUTPUT:
        return img_parse_output("info", optarg, &a->output) ? -1 : 1;
    default:
        return img_common_option(c, "info", &a->common);
    }
}

/* Options; returns -1 to go on, else the exit status. */
static int parse_info_opts(int argc, char **argv, InfoArgs *a)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPTION_OUTPUT },
        { "backing-chain", no_argument, NULL, 'b' },
        { "force-share", no_argument, NULL, 'U' },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { NULL, 0, NULL, 0 },
    };

    return img_getopt_loop(argc, argv, "info", "f:hbU", longopts,
                           info_option, a);
}

/* Operand and option consistency; returns -1 to go on. */
static int check_info_args(int argc, char **argv, InfoArgs *a)
{
    if (!img_expect_one_file("info", argc)) {
        return 1;
    }
    a->filename = argv[optind];
    return -1;
}

/* One image of the list, opened on its own (no backing file, no I/O)
 * with @fmt and @image_opts; NULL once the error is reported. */
static QDict *image_info(const InfoArgs *a, const char *name, const char *fmt,
                         bool image_opts)
{
    ImgCommonOpts o = a->common;
    BlockBackend *blk;
    QDict *info;

    o.fmt = fmt;
    o.image_opts = image_opts;
    blk = img_open_common(&o, name, BDRV_O_NO_BACKING | BDRV_O_NO_IO, false);
    if (!blk) {
        return NULL;
    }
    info = node_info(blk_bs(blk));
    blk_unref(blk);
    return info;
}

/* The next image of --backing-chain from @info: the resolved backing
 * file name and its recorded format (*name NULL at the end); false once
 * the error is reported. */
static bool next_in_chain(QDict *info, char **name, char **fmt)
{
    const char *bf = qdict_get_try_str(info, "backing-filename");
    const char *full = qdict_get_try_str(info, "full-backing-filename");

    if (bf && !full) {
        error_report("Could not determine absolute backing filename, but "
                     "backing filename '%s' present", bf);
        return false;
    }
    *name = g_strdup(full);
    *fmt = g_strdup(qdict_get_try_str(info, "backing-filename-format"));
    return true;
}

/* Has the chain come back to a name it had, or grown too long?  (The
 * reference compares names only and has no depth limit.) */
static bool chain_stops(GHashTable *seen, const char *name)
{
    if (g_hash_table_contains(seen, name)) {
        error_report("Backing file '%s' creates an infinite loop.", name);
        return true;
    }
    if (g_hash_table_size(seen) >= BDRV_BACKING_CHAIN_MAX) {
        error_report("Backing chain is too long (more than %d images)",
                     BDRV_BACKING_CHAIN_MAX);
        return true;
    }
    g_hash_table_add(seen, g_strdup(name));
    return false;
}

/* The image's info and, with --backing-chain, its backing files' down
 * the chain, each opened alone as the reference does; NULL on error. */
static QList *collect_infos(const InfoArgs *a)
{
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash,
                                                       g_str_equal, g_free,
                                                       NULL);
    char *name = g_strdup(a->filename), *fmt = g_strdup(a->common.fmt);
    bool image_opts = a->common.image_opts;
    QList *list = qlist_new();

    while (name) {
        QDict *info = chain_stops(seen, name) ? NULL
                      : image_info(a, name, fmt, image_opts);

        g_clear_pointer(&name, g_free);
        g_clear_pointer(&fmt, g_free);
        if (!info) {
            qobject_unref(list);
            return NULL;
        }
        qlist_append_obj(list, QOBJECT(info));
        image_opts = false;
        if (a->chain && !next_in_chain(info, &name, &fmt)) {
            qobject_unref(list);
            return NULL;
        }
    }
    return list;
}

/* Human output: the images one after the other, a blank line between. */
static void dump_human_list(QList *list)
{
    for (QListEntry *e = qlist_first(list); e; e = qlist_next(e)) {
        if (e != qlist_first(list)) {
            printf("\n");
        }
        info_human_dump(qobject_to_qdict(qlist_entry_obj(e)), "", 0);
    }
}

/* Print the image's info (and its chain's with --backing-chain). */
static int info_run(const InfoArgs *a)
{
    QList *list = collect_infos(a);

    if (!list) {
        return 1;
    }
    if (a->output == OFORMAT_JSON && a->chain) {
        img_print_json(QOBJECT(list));
    } else if (a->output == OFORMAT_JSON) {
        img_print_json(qlist_entry_obj(qlist_first(list)));
    } else {
        dump_human_list(list);
    }
    qobject_unref(list);
    return 0;
}

int img_info(int argc, char **argv)
{
    InfoArgs a = { .output = OFORMAT_HUMAN };
    int ret = parse_info_opts(argc, argv, &a);

    if (ret < 0) {
        ret = check_info_args(argc, argv, &a);
    }
    if (ret < 0) {
        ret = info_run(&a);
    }
    return ret;
}
