#include "config.h"
/*
 * qemu-img map: the image's extents (data, zero, where in which file),
 * merged over the backing chain, as a human table of mapped data or the
 * reference's one-object-per-line JSON.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/img/img.h"

typedef struct MapArgs {
    ImgCommonOpts common;
    const char *filename;
    OutputFormat output;
    int64_t start;
    int64_t max_length;         /* -1: to the end */
} MapArgs;

typedef struct MapEntry {
    int64_t start, length, offset, depth;
    bool present, zero, data, compressed, has_offset;
    const char *filename;       /* of the node holding the data */
} MapEntry;

typedef struct StatusCo {
    BlockDriverState *bs;
    int64_t offset, bytes, pnum, map;
    BlockDriverState *file;
    int depth;
    int ret;
} StatusCo;

/*
 * The first layer (filters skipped) that holds data or zeroes for
 * [offset, offset+bytes) decides; depth counts the layers passed.  Every
 * layer is asked for the whole range (its answer is cached for the next
 * extents), the extent is what all layers passed agree on.  One coroutine
 * walks all layers: a deep chain pays the switch once per extent.
 */
static void coroutine_fn chain_status_entry(void *opaque)
{
    StatusCo *s = opaque;
    BlockDriverState *bs = s->bs;
    int64_t limit = s->bytes;

    for (;;) {
        bs = bdrv_skip_filters(bs);
        s->file = NULL;
        s->ret = bdrv_co_block_status(bs, s->offset, s->bytes, &s->pnum,
                                      &s->map, &s->file);
        if (s->ret < 0) {
            return;
        }
        s->pnum = limit = MIN(s->pnum, limit);
        if (s->ret & (BDRV_BLOCK_ZERO | BDRV_BLOCK_DATA)) {
            return;
        }
        bs = bdrv_backing_bs(bs);
        if (!bs) {
            s->ret = 0;
            return;
        }
        s->depth++;
    }
}

/* One extent at @offset, from plain context. */
static int get_block_status(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, MapEntry *e)
{
    StatusCo s = { .bs = bs, .offset = offset, .bytes = bytes };
    int ret;

    co_run_sync(chain_status_entry, &s);
    ret = s.ret;
    if (ret < 0) {
        return ret;
    }
    *e = (MapEntry) {
        .start = offset, .length = s.pnum, .depth = s.depth,
        .data = ret & BDRV_BLOCK_DATA, .zero = ret & BDRV_BLOCK_ZERO,
        .compressed = ret & BDRV_BLOCK_COMPRESSED,
        .has_offset = ret & BDRV_BLOCK_OFFSET_VALID, .offset = s.map,
        .present = ret & BDRV_BLOCK_ALLOCATED,
    };
    e->filename = s.file && e->has_offset ? bdrv_get_filename(s.file) : NULL;
    return 0;
}

/* Can @next extend @curr into one entry? */
static bool entry_mergeable(const MapEntry *curr, const MapEntry *next)
{
    if (curr->length == 0 || curr->depth != next->depth ||
        curr->present != next->present || curr->zero != next->zero ||
        curr->data != next->data || curr->compressed != next->compressed ||
        curr->has_offset != next->has_offset) {
        return false;
    }
    if (curr->has_offset && curr->offset + curr->length != next->offset) {
        return false;
    }
    if (g_strcmp0(curr->filename, next->filename)) {
        return false;
    }
    return true;
}

static const char *json_bool(bool b)
{
    return b ? "true" : "false";
}

/* One JSON line; "]" closes the last (map_run() opened the list). */
static void dump_json_entry(const MapEntry *e, bool first, bool last)
{
    printf("%s{ \"start\": %" PRId64 ", \"length\": %" PRId64 ", "
           "\"depth\": %" PRId64 ", \"present\": %s, \"zero\": %s, "
           "\"data\": %s, \"compressed\": %s",
           first ? "" : ",\n", e->start, e->length, e->depth,
           json_bool(e->present), json_bool(e->zero), json_bool(e->data),
           json_bool(e->compressed));
    if (e->has_offset) {
        printf(", \"offset\": %" PRId64, e->offset);
    }
    printf("}");
    if (last) {
        printf("]\n");
    }
}

/* Human rows: only data that is not read as zeroes. */
static int dump_human_entry(const MapEntry *e)
{
    if (e->data && !e->has_offset) {
        error_report("File contains external, encrypted or compressed "
                     "clusters.");
        return -1;
    }
    if (e->data && !e->zero) {
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n",
               (uint64_t)e->start, (uint64_t)e->length,
               (uint64_t)e->offset, e->filename ? e->filename : "");
    }
    return 0;
}

static int dump_entry(OutputFormat out, const MapEntry *e, bool first,
                      bool last)
{
    if (out == OFORMAT_JSON) {
        dump_json_entry(e, first, last);
        return 0;
    }
    return dump_human_entry(e);
}

/* Walk [start, end), merging adjacent extents, printing as it goes. */
static int map_walk(const MapArgs *a, BlockDriverState *bs, int64_t end)
{
    MapEntry curr = { .start = a->start }, next;
    bool first = true;
    int ret;

    while (curr.start + curr.length < end) {
        int64_t off = curr.start + curr.length;

        ret = get_block_status(bs, off, MIN(end - off, 1LL << 30), &next);
        if (ret < 0) {
            error_report("Could not read file metadata: %s", strerror(-ret));
            return 1;
        }
        if (entry_mergeable(&curr, &next)) {
            curr.length += next.length;
            continue;
        }
        if (curr.length > 0 && dump_entry(a->output, &curr, first, false) < 0) {
            return 1;
        }
        first = first && curr.length == 0;
        curr = next;
    }
    return dump_entry(a->output, &curr, first, true) < 0;
}

/* Open, print the header, walk. */
static int map_run(const MapArgs *a)
{
    BlockBackend *blk = img_open_common(&a->common, a->filename, 0, false);
    int64_t len, end;
    int ret;

    if (!blk) {
        return 1;
    }
    /* the header (or the JSON list's "[") comes first, even when the
     * length then fails */
    if (a->output == OFORMAT_HUMAN) {
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    } else {
        printf("[");
    }
    len = blk_getlength(blk);
    if (len < 0) {
        error_report("Failed to get size for '%s'", a->filename);
        blk_unref(blk);
        return 1;
    }
    /* start + length wraps as in the reference: a negative end maps
     * nothing */
    end = a->max_length < 0 ? len
          : MIN(len, (int64_t)((uint64_t)a->start + a->max_length));
    ret = map_walk(a, blk_bs(blk), end);
    blk_unref(blk);
    return ret;
}

/* One option; returns -1 to go on, else the exit status. */
static int map_option(int c, void *opaque)
{
    MapArgs *a = opaque;

    switch (c) {
    case OPTION_OUTPUT:
        return img_parse_output("map", optarg, &a->output) ? -1 : 1;
    case 's':
    case OPTION_START_OFFSET:
        return img_cvtnum("start offset", optarg, &a->start) ? -1 : 1;
    case 'l':
    case OPTION_MAX_LENGTH:
        return img_cvtnum("max length", optarg, &a->max_length) ? -1 : 1;
    default:
        return img_common_option(c, "map", &a->common);
    }
}

static int parse_map_opts(int argc, char **argv, MapArgs *a)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPTION_OUTPUT },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "start-offset", required_argument, NULL, OPTION_START_OFFSET },
        { "max-length", required_argument, NULL, OPTION_MAX_LENGTH },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };

    return img_getopt_loop(argc, argv, "map", "f:s:l:hU", longopts,
                           map_option, a);
}

int img_map(int argc, char **argv)
{
    MapArgs a = { .output = OFORMAT_HUMAN, .max_length = -1 };
    int ret = parse_map_opts(argc, argv, &a);

    if (ret >= 0) {
        return ret;
    }
    if (!img_expect_one_file("map", argc)) {
        return 1;
    }
    a.filename = argv[optind];
    return map_run(&a);
}
