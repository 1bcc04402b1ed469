#include "config.h"
/*
 * strata-img compare: do two images read the same?  Both are walked by
 * block status: ranges known to read as zeroes on both sides are skipped,
 * data is compared in large chunks.  Exit status: 0 identical, 1 differ,
 * 2 open error, 3 block status error, 4 read error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tools/img/img.h"
#include "util/cutils.h"
#include "util/progress.h"

#define CMP_CHUNK   (2 * MiB)
#define CMP_SECTOR  512

enum { CMP_SAME = 0, CMP_DIFFER = 1, CMP_OPEN_ERR = 2, CMP_STATUS_ERR = 3,
       CMP_READ_ERR = 4 };

typedef struct CmpArgs {
    const char *fmt1, *fmt2, *cache;
    const char *name1, *name2;
    bool image_opts, progress, quiet, strict, force_share;
} CmpArgs;

typedef struct CmpState {
    const CmpArgs *a;
    BlockBackend *blk1, *blk2;
    int64_t size1, size2, total;
    uint8_t *buf1, *buf2;
} CmpState;

/* One range's block status: allocated anywhere in the chain / zero. */
typedef struct CmpStatus {
    int64_t pnum;
    int flags;
    bool allocated;
    bool zero;
} CmpStatus;

/* One option; returns -1 to go on, else the exit status. */
static int cmp_option(CmpArgs *a, int c)
{
    switch (c) {
    case 'h':
        img_cmd_help("compare");
        return 0;
    case 'f': a->fmt1 = optarg; return -1;
    case 'F': a->fmt2 = optarg; return -1;
    case 'T': a->cache = optarg; return -1;
    case 'p': a->progress = true; return -1;
    case 'q': a->quiet = true; return -1;
    case 's': a->strict = true; return -1;
    case 'U': a->force_share = true; return -1;
    case OPTION_OBJECT:
        return img_object_add(optarg) ? -1 : CMP_OPEN_ERR;
    case OPTION_IMAGE_OPTS:
        a->image_opts = true;
        return -1;
    default:
        fprintf(stderr, "Try '%s compare --help' for more info\n",
                img_argv0());
        return 1;
    }
}

/* getopt over the command line; -1 when the images can be opened. */
static int cmp_parse(CmpArgs *a, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "a-format", required_argument, NULL, 'f' },
        { "b-format", required_argument, NULL, 'F' },
        { "left-format", required_argument, NULL, 'f' },
        { "right-format", required_argument, NULL, 'F' },
        { "cache", required_argument, NULL, 'T' },
        { "progress", no_argument, NULL, 'p' },
        { "quiet", no_argument, NULL, 'q' },
        { "strict", no_argument, NULL, 's' },
        { "force-share", no_argument, NULL, 'U' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    int c, ret;

    img_getopt_argv0(argv, "compare");
    while ((c = getopt_long(argc, argv, "hf:F:T:pqsU", longopts, NULL)) != -1) {
        ret = cmp_option(a, c);
        if (ret >= 0) {
            return ret;
        }
    }
    if (a->quiet) {
        a->progress = false;
    }
    if (optind != argc - 2) {
        return img_usage_error("compare", "Expecting two image file names");
    }
    a->name1 = argv[optind];
    a->name2 = argv[optind + 1];
    return -1;
}

/* Both images, read-only, in the -T cache mode. */
static int cmp_open(CmpState *s)
{
    const CmpArgs *a = s->a;
    int flags = 0;
    bool wt = false;

    if (bdrv_parse_cache_mode(a->cache ? a->cache : "writeback", &flags,
                              &wt) < 0) {
        error_report("Invalid source cache option: %s", a->cache);
        return CMP_OPEN_ERR;
    }
    /* each image checks its own -f/-F against --image-opts when it is
     * opened: a bad first image is reported before a -F conflict */
    s->blk1 = img_open_checked(a->image_opts, a->name1, a->fmt1, flags, wt,
                               a->quiet, a->force_share);
    if (!s->blk1) {
        return CMP_OPEN_ERR;
    }
    s->blk2 = img_open_checked(a->image_opts, a->name2, a->fmt2, flags, wt,
                               a->quiet, a->force_share);
    return s->blk2 ? -1 : CMP_OPEN_ERR;
}

/* Status of [off, off+bytes) of @blk; false after a report. */
/* The reference's qcow2 answers from one L2 table: an extent ends where
 * the table mapping @off ends, and is then not at the image's end
 * (strict mode compares the flags, EOF included). */
static int cut_at_table(BlockDriverState *bs, int64_t off, int64_t *pnum,
                        int ret)
{
    int64_t span = img_qcow2_table_span(bs);

    if (span > 0 && *pnum > span - off % span) {
        *pnum = span - off % span;
        ret &= ~BDRV_BLOCK_EOF;
    }
    return ret;
}

static bool cmp_status(BlockBackend *blk, const char *name, int64_t off,
                       int64_t bytes, CmpStatus *st)
{
    int depth = 0;
    int ret = blk_block_status(blk, true, off, bytes, &st->pnum, NULL, NULL,
                               &depth);

    if (ret < 0 || st->pnum <= 0) {
        error_report("Sector allocation test failed for %s", name);
        return false;
    }
    ret = cut_at_table(blk_bs(blk), off, &st->pnum, ret);
    st->flags = ret;
    st->allocated = (ret & BDRV_BLOCK_ALLOCATED) || depth > 0;
    st->zero = (ret & BDRV_BLOCK_ZERO) || !st->allocated;
    return true;
}

/* Read @bytes at @off of image @n (1 or 2) into its buffer. */
static bool cmp_read(CmpState *s, int n, int64_t off, int64_t bytes)
{
    BlockBackend *blk = n == 1 ? s->blk1 : s->blk2;
    int ret = blk_pread(blk, off, bytes, n == 1 ? s->buf1 : s->buf2, 0);

    if (ret < 0) {
        error_report("Error while reading offset %" PRId64 " of %s: %s",
                     off, n == 1 ? s->a->name1 : s->a->name2, strerror(-ret));
        return false;
    }
    return true;
}

/* Offset of the first differing (or, with @b NULL, non-zero) sector of
 * @bytes at @base, or -1. */
static int64_t first_mismatch(const uint8_t *a, const uint8_t *b,
                              int64_t bytes, int64_t base)
{
    for (int64_t i = 0; i < bytes; i += CMP_SECTOR) {
        int64_t n = MIN(CMP_SECTOR, bytes - i);
        bool same = b ? !memcmp(a + i, b + i, n) : buffer_is_zero(a + i, n);
        if (!same) {
            return base + i;
        }
    }
    return -1;
}

/* Fast path for whole chunks, then the sector search. */
static int64_t chunk_mismatch(const uint8_t *a, const uint8_t *b,
                              int64_t bytes, int64_t base)
{
    if (b ? !memcmp(a, b, bytes) : buffer_is_zero(a, bytes)) {
        return -1;
    }
    return first_mismatch(a, b, bytes, base);
}

static void cmp_report_mismatch(const CmpState *s, int64_t off)
{
    if (!s->a->quiet) {
        printf("Content mismatch at offset %" PRId64 "!\n", off);
    }
}

/* Compare one range of both images; returns -1 to go on or a status.
 * Ranges of zeroes on both sides pass whole (progress moves by whole
 * extents, as the reference's); data is read at most CMP_CHUNK at a time,
 * *@len is cut down to what was compared. */
static int cmp_range(CmpState *s, int64_t off, int64_t *len,
                     const CmpStatus *st1, const CmpStatus *st2)
{
    int64_t bad, bytes;

    if (st1->zero && st2->zero) {
        return -1;
    }
    bytes = *len = MIN(*len, CMP_CHUNK);
    if (!st1->zero && !cmp_read(s, 1, off, bytes)) {
        return CMP_READ_ERR;
    }
    if (!st2->zero && !cmp_read(s, 2, off, bytes)) {
        return CMP_READ_ERR;
    }
    if (st1->zero || st2->zero) {
        bad = chunk_mismatch(st1->zero ? s->buf2 : s->buf1, NULL, bytes, off);
    } else {
        bad = chunk_mismatch(s->buf1, s->buf2, bytes, off);
    }
    if (bad >= 0) {
        cmp_report_mismatch(s, bad);
        return CMP_DIFFER;
    }
    return -1;
}

static void cmp_progress(const CmpState *s, int64_t bytes)
{
    if (s->total > 0) {
        progress_print((float)bytes * 100 / s->total, 100);
    }
}

/* The common part of both images. */
static int cmp_common(CmpState *s, int64_t end)
{
    for (int64_t off = 0; off < end;) {
        CmpStatus st1, st2;
        int64_t n;
        int ret;

        /* asked up to each image's end: strict mode compares the flags,
         * EOF included, as the reference does */
        if (!cmp_status(s->blk1, s->a->name1, off, s->size1 - off, &st1)) {
            return CMP_STATUS_ERR;
        }
        if (!cmp_status(s->blk2, s->a->name2, off, s->size2 - off, &st2)) {
            return CMP_STATUS_ERR;
        }
        if (s->a->strict && st1.flags != st2.flags) {
            if (!s->a->quiet) {
                printf("Strict mode: Offset %" PRId64
                       " block status mismatch!\n", off);
            }
            return CMP_DIFFER;
        }
        n = MIN(end - off, MIN(st1.pnum, st2.pnum));
        ret = cmp_range(s, off, &n, &st1, &st2);
        if (ret >= 0) {
            return ret;
        }
        off += n;
        cmp_progress(s, n);
    }
    return -1;
}

/* The tail of the longer image must read as zeroes. */
static int cmp_tail(CmpState *s, int64_t start)
{
    bool first = s->size1 > s->size2;
    BlockBackend *blk = first ? s->blk1 : s->blk2;
    const char *name = first ? s->a->name1 : s->a->name2;
    int64_t end = first ? s->size1 : s->size2;
    CmpStatus zero = { .zero = true }, st;

    for (int64_t off = start; off < end;) {
        int64_t n;
        int ret;

        if (!cmp_status(blk, name, off, end - off, &st)) {
            return CMP_STATUS_ERR;
        }
        n = MIN(end - off, st.pnum);
        ret = first ? cmp_range(s, off, &n, &st, &zero)
                    : cmp_range(s, off, &n, &zero, &st);
        if (ret >= 0) {
            return ret;
        }
        off += n;
        cmp_progress(s, n);
    }
    return CMP_SAME;
}

/* Sizes, then the walk. */
static int cmp_images(CmpState *s)
{
    int64_t common;
    int ret;

    s->size1 = blk_getlength(s->blk1);
    s->size2 = blk_getlength(s->blk2);
    if (s->size1 < 0 || s->size2 < 0) {
        error_report("Can't get size of %s: %s",
                     s->size1 < 0 ? s->a->name1 : s->a->name2,
                     strerror((int)-(s->size1 < 0 ? s->size1 : s->size2)));
        return CMP_READ_ERR;
    }
    if (s->size1 != s->size2 && s->a->strict) {
        if (!s->a->quiet) {
            printf("Strict mode: Image size mismatch!\n");
        }
        return CMP_DIFFER;
    }
    common = MIN(s->size1, s->size2);
    s->total = MAX(s->size1, s->size2);
    ret = cmp_common(s, common);
    if (ret >= 0 || s->size1 == s->size2) {
        return ret >= 0 ? ret : CMP_SAME;
    }
    if (!s->a->quiet) {
        printf("Warning: Image size mismatch!\n");
    }
    return cmp_tail(s, common);
}

int img_compare(int argc, char **argv)
{
    CmpArgs a = { 0 };
    CmpState s = { .a = &a };
    int ret = cmp_parse(&a, argc, argv);

    if (ret >= 0) {
        return ret;
    }
    progress_init(a.progress, 2.0);
    ret = cmp_open(&s);
    if (ret < 0) {
        s.buf1 = g_malloc(CMP_CHUNK);
        s.buf2 = g_malloc(CMP_CHUNK);
        progress_print(0, 100);
        ret = cmp_images(&s);
        if (ret == CMP_SAME) {
            if (!a.quiet) {
                printf("Images are identical.\n");
            }
        }
    }
    progress_end();
    g_free(s.buf1);
    g_free(s.buf2);
    if (s.blk2) {
        blk_unref(s.blk2);
    }
    if (s.blk1) {
        blk_unref(s.blk1);
    }
    return ret;
}
