#include "config.h"
/*
 * Block status, the request path's query side (see io.c for the data
 * side): the per-node caches of the last answers (bs->bsc for a
 * protocol's data extents, bs->fsc for a format's whole answer), the
 * driver call with its fallbacks and refinements, and the walk down a
 * backing chain (bdrv_co_block_status_above and its users).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>
#include "block/debug.h"
#include "block/driver.h"
#include "block/io-internal.h"
#include "util/cutils.h"

/* ---- block status cache ---- */

void bdrv_bsc_invalidate(BlockDriverState *bs)
{
    bs->bsc.valid = false;
    bs->fsc.valid = false;
}

/* Drop the cached data extent if [offset, offset+bytes) touches it. */
void bsc_invalidate_range(BlockDriverState *bs, int64_t offset,
                          int64_t bytes)
{
    if (bs->bsc.valid && offset < bs->bsc.data_end &&
        offset + bytes > bs->bsc.data_start) {
        bs->bsc.valid = false;
    }
}

/* If @offset lies in the cached data extent, the bytes left in it. */
static bool bsc_lookup(BlockDriverState *bs, int64_t offset, int64_t *pnum)
{
    if (bs->bsc.valid && offset >= bs->bsc.data_start &&
        offset < bs->bsc.data_end) {
        *pnum = bs->bsc.data_end - offset;
        return true;
    }
    return false;
}

static void bsc_fill(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    bs->bsc.valid = true;
    bs->bsc.data_start = offset;
    bs->bsc.data_end = offset + bytes;
}

/*
 * Format nodes keep the driver's last block status answer
 * whole, not trimmed to the request: a walk down a backing chain asks each
 * layer again at every extent boundary of the layers above it, and this
 * turns those repeats into lookups, so a deep chain costs one pass of the
 * driver per layer.  The answer depends on the node's mapping, which
 * changes only by requests to the node (write_gen counts them when they
 * complete), by the driver writing its metadata to its "file" child (that
 * child's write_gen), by a graph change or by bdrv_bsc_invalidate().
 */
typedef struct FscKey {
    BlockDriverState *file_child;
    uint64_t gen, file_gen;
} FscKey;

/* What a cached answer of @bs is valid for, as of now. */
static FscKey fsc_key(BlockDriverState *bs)
{
    BlockDriverState *fc = bs->file ? bs->file->bs : NULL;

    return (FscKey) {
        .file_child = fc, .gen = bs->write_gen,
        .file_gen = fc ? fc->write_gen : 0,
    };
}

/* The cached answer for an (aligned) [start, end), if still valid.  An
 * answer that was cut at its own request's end says nothing about what
 * follows: a request reaching further asks the driver again (else the
 * extent would look shorter than it is: the reference's callers, e.g.
 * rebase's walk, step by the lengths they are told). */
static bool fsc_lookup(BlockDriverState *bs, bool want_zero, int64_t start,
                       int64_t end, int64_t *pnum, int64_t *map,
                       BlockDriverState **file, int *ret)
{
    FscKey k = fsc_key(bs);

    if (!bs->fsc.valid || (want_zero && !bs->fsc.want_zero) ||
        start < bs->fsc.start || start >= bs->fsc.end ||
        (bs->fsc.cut && end > bs->fsc.end) ||
        k.gen != bs->fsc.gen || k.file_child != bs->fsc.file_child ||
        k.file_gen != bs->fsc.file_gen) {
        return false;
    }
    *pnum = bs->fsc.end - start;
    *ret = bs->fsc.ret;
    *map = bs->fsc.map + ((*ret & BDRV_BLOCK_OFFSET_VALID)
                          ? start - bs->fsc.start : 0);
    *file = bs->fsc.file;
    return true;
}

/* Remember the driver's answer for [start, start+pnum), taken under @k
 * (the key from before the call: a write completing meanwhile voids it). */
static void fsc_fill(BlockDriverState *bs, const FscKey *k, bool want_zero,
                     int64_t start, int64_t pnum, int64_t len, int ret,
                     int64_t map, BlockDriverState *file)
{
    bs->fsc.valid = pnum > 0;
    bs->fsc.cut = pnum >= len;
    bs->fsc.want_zero = want_zero;
    bs->fsc.ret = ret;
    bs->fsc.start = start;
    bs->fsc.end = start + pnum;
    bs->fsc.map = map;
    bs->fsc.file = file;
    bs->fsc.file_child = k->file_child;
    bs->fsc.gen = k->gen;
    bs->fsc.file_gen = k->file_gen;
}

/* ---- block status ---- */

static int coroutine_fn do_block_status(BlockDriverState *bs, bool want_zero,
                                        int64_t offset, int64_t bytes,
                                        int64_t *pnum, int64_t *map,
                                        BlockDriverState **file);

/* Default status for drivers without co_block_status. */
static int default_block_status(BlockDriverState *bs, int64_t offset,
                                int64_t bytes, int64_t *pnum, int64_t *map,
                                BlockDriverState **file)
{
    BdrvChild *fc = is_filter(bs) ? bdrv_filter_child(bs) : NULL;

    *pnum = bytes;
    *map = offset;
    if (fc) {
        *file = fc->bs;
        return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
    }
    if (bs->drv->kind == BDRV_KIND_PROTOCOL) {
        *file = bs;
        return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID;
    }
    *file = NULL;
    return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED;
}

/* The driver's own answer for an aligned range, remembered in the
 * node's cache (formats: any answer; protocols: data extents only). */
static int coroutine_fn driver_answer(BlockDriverState *bs, bool want_zero,
                                      int64_t start, int64_t len,
                                      int64_t *pnum, int64_t *map,
                                      BlockDriverState **file)
{
    FscKey key = fsc_key(bs);
    int ret;

    *file = NULL;
    ret = io_of(bs)->co_block_status(bs, want_zero, start, len, pnum, map,
                                     file);
    if (ret < 0) {
        return ret;
    }
    if (bs->drv->kind == BDRV_KIND_FORMAT) {
        fsc_fill(bs, &key, want_zero, start, *pnum, len, ret, *map,
                 *file);
    } else if (bs->drv->kind == BDRV_KIND_PROTOCOL && want_zero &&
               *pnum > 0 && *file == bs &&
               ret == (BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID) &&
               *map == start) {
        bsc_fill(bs, start, *pnum);
    }
    return ret;
}

/* Ask the driver for the aligned range covering the request (or answer
 * from the node's cache), then trim to the request. */
static int coroutine_fn driver_block_status(BlockDriverState *bs,
                                            bool want_zero, int64_t offset,
                                            int64_t bytes, int64_t *pnum,
                                            int64_t *map,
                                            BlockDriverState **file)
{
    int64_t align = req_align(bs);
    int64_t start = ROUND_DOWN(offset, align);
    int64_t len = ROUND_UP(offset + bytes, align) - start;
    bool protocol = bs->drv->kind == BDRV_KIND_PROTOCOL;
    int ret;

    if (protocol && want_zero && bsc_lookup(bs, start, pnum)) {
        ret = BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
        *map = start;
        *file = bs;
    } else if (bs->drv->kind != BDRV_KIND_FORMAT ||
               !fsc_lookup(bs, want_zero, start, start + len, pnum, map, file,
                           &ret)) {
        ret = driver_answer(bs, want_zero, start, len, pnum, map, file);
        if (ret < 0) {
            return ret;
        }
    }
    *pnum = MIN(*pnum - (offset - start), bytes);
    if (*pnum <= 0) {
        *pnum = 0;
    }
    if (ret & BDRV_BLOCK_OFFSET_VALID) {
        *map += offset - start;
    }
    return ret;
}

/* Zero flags for unallocated areas of a format node: no backing file or
 * past the backing file's end reads as zeroes. */
static int coroutine_fn unallocated_flags(BlockDriverState *bs,
                                          bool want_zero, int64_t offset)
{
    int64_t blen;

    if (!bs->drv->supports_backing) {
        return 0;
    }
    if (!bs->backing) {
        return BDRV_BLOCK_ZERO;
    }
    if (want_zero) {
        blen = bdrv_co_getlength(bs->backing->bs);
        if (blen >= 0 && offset >= blen) {
            return BDRV_BLOCK_ZERO;
        }
    }
    return 0;
}

/* BDRV_BLOCK_RECURSE: data in the format may still be zero in the file. */
static int coroutine_fn refine_recurse(int ret, int64_t *pnum, int64_t map,
                                       BlockDriverState *file)
{
    int64_t file_pnum;
    int ret2 = do_block_status(file, true, map, *pnum, &file_pnum, NULL, NULL);

    if (ret2 < 0) {
        return ret;
    }
    if ((ret2 & BDRV_BLOCK_EOF) && (!file_pnum || (ret2 & BDRV_BLOCK_ZERO))) {
        return ret | BDRV_BLOCK_ZERO;
    }
    *pnum = file_pnum;
    return ret | (ret2 & BDRV_BLOCK_ZERO);
}

/* Post-process a driver answer: RAW recursion, ALLOCATED, zero
 * synthesis and RECURSE. */
static int coroutine_fn finish_block_status(BlockDriverState *bs,
                                            bool want_zero, int ret,
                                            int64_t offset, int64_t *pnum,
                                            int64_t *map,
                                            BlockDriverState **file)
{
    if (ret & BDRV_BLOCK_RAW) {
        g_assert((ret & BDRV_BLOCK_OFFSET_VALID) && *file);
        return do_block_status(*file, want_zero, *map, *pnum, pnum, map,
                               file);
    }
    if (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) {
        ret |= BDRV_BLOCK_ALLOCATED;
    } else {
        ret |= unallocated_flags(bs, want_zero, offset);
    }
    if (want_zero && (ret & BDRV_BLOCK_RECURSE) && *file && *file != bs &&
        (ret & BDRV_BLOCK_DATA) && !(ret & BDRV_BLOCK_ZERO) &&
        (ret & BDRV_BLOCK_OFFSET_VALID)) {
        ret = refine_recurse(ret, pnum, *map, *file);
    }
    return ret & ~BDRV_BLOCK_RECURSE;
}

static int coroutine_fn do_block_status(BlockDriverState *bs, bool want_zero,
                                        int64_t offset, int64_t bytes,
                                        int64_t *pnum, int64_t *map,
                                        BlockDriverState **file)
{
    int64_t total, local_map = 0;
    BlockDriverState *local_file = NULL;
    int ret;

    *pnum = 0;
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    total = bdrv_co_getlength(bs);
    if (total < 0) {
        return (int)total;
    }
    if (offset >= total) {
        return BDRV_BLOCK_EOF;
    }
    if (bytes <= 0) {
        return 0;
    }
    bytes = MIN(bytes, total - offset);
    bdrv_inc_in_flight(bs);
    if (!io_of(bs)->co_block_status) {
        ret = default_block_status(bs, offset, bytes, pnum, &local_map,
                                   &local_file);
    } else {
        ret = driver_block_status(bs, want_zero, offset, bytes, pnum,
                                  &local_map, &local_file);
    }
    if (ret >= 0) {
        ret = finish_block_status(bs, want_zero, ret, offset, pnum,
                                  &local_map, &local_file);
    }
    bdrv_dec_in_flight(bs);
    if (ret < 0) {
        *pnum = 0;
        return ret;
    }
    if (offset + *pnum == total) {
        ret |= BDRV_BLOCK_EOF;
    }
    if (map) {
        *map = local_map;
    }
    if (file) {
        *file = local_file;
    }
    return ret;
}

int coroutine_fn bdrv_co_block_status(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, int64_t *pnum,
                                      int64_t *map, BlockDriverState **file)
{
    int64_t dummy;

    return do_block_status(bs, true, offset, bytes, pnum ? pnum : &dummy,
                           map, file);
}

/* The next layer down: a filter's filtered child or the backing file. */
static BlockDriverState *filter_or_cow_bs(BlockDriverState *bs)
{
    BdrvChild *c = is_filter(bs) ? bdrv_filter_child(bs) : NULL;

    if (c) {
        return c->bs;
    }
    return bs->backing ? bs->backing->bs : NULL;
}

typedef struct StatusAbove {
    BlockDriverState *base;
    bool want_zero;
    int64_t offset;
    int64_t *pnum, *map;
    BlockDriverState **file;
    int depth;
    int64_t req;                /* the caller's length */
} StatusAbove;

/*
 * Walk below @bs while the first @bytes stay unallocated.  Each layer is
 * asked for the caller's whole range, not just what the layers above left
 * open: its driver's answer (cached, see fsc_lookup()) then covers the
 * next queries of the walk too, and only the result is cut to @bytes.
 */
static int coroutine_fn status_below(StatusAbove *s, BlockDriverState *bs,
                                     int64_t bytes, int ret)
{
    for (BlockDriverState *p = filter_or_cow_bs(bs); p && p != s->base;
         p = filter_or_cow_bs(p)) {
        ret = do_block_status(p, s->want_zero, s->offset, s->req, s->pnum,
                              s->map, s->file);
        s->depth++;
        if (ret < 0) {
            return ret;
        }
        if (*s->pnum == 0) {
            /* the lower layer is short: synthesised zeroes count as its */
            *s->pnum = bytes;
            if (s->file) {
                *s->file = p;
            }
            return BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED;
        }
        if (*s->pnum > bytes) {
            *s->pnum = bytes;
            ret &= ~BDRV_BLOCK_EOF;
        }
        if (ret & BDRV_BLOCK_ALLOCATED) {
            return ret & ~BDRV_BLOCK_EOF;
        }
        bytes = *s->pnum;
    }
    return ret;
}

static int coroutine_fn common_status_above(BlockDriverState *top,
                                            StatusAbove *s, int64_t bytes)
{
    int64_t eof = -1;
    int ret;

    if (top == s->base) {
        *s->pnum = bytes;
        return 0;
    }
    ret = do_block_status(top, s->want_zero, s->offset, bytes, s->pnum,
                          s->map, s->file);
    s->depth++;
    if (ret < 0 || *s->pnum == 0 || (ret & BDRV_BLOCK_ALLOCATED)) {
        return ret;
    }
    if (ret & BDRV_BLOCK_EOF) {
        eof = s->offset + *s->pnum;
    }
    ret = status_below(s, top, *s->pnum, ret);
    if (ret >= 0 && s->offset + *s->pnum == eof) {
        ret |= BDRV_BLOCK_EOF;
    }
    return ret;
}

int coroutine_fn bdrv_co_block_status_above(BlockDriverState *top,
                                            BlockDriverState *base,
                                            int64_t offset, int64_t bytes,
                                            int64_t *pnum, int64_t *map,
                                            BlockDriverState **file, int *depth)
{
    int64_t dummy;
    StatusAbove s = {
        .base = base, .want_zero = true, .offset = offset,
        .pnum = pnum ? pnum : &dummy, .map = map, .file = file,
        .req = bytes,
    };
    int ret = common_status_above(top, &s, bytes);

    if (depth) {
        *depth = (ret >= 0 && (ret & BDRV_BLOCK_ALLOCATED)) ? s.depth : 0;
    }
    return ret;
}

int coroutine_fn bdrv_co_is_allocated(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, int64_t *pnum)
{
    int64_t n;
    int ret;

    ret = do_block_status(bs, false, offset, bytes, &n, NULL, NULL);
    if (pnum) {
        *pnum = n;
    }
    if (ret < 0) {
        return ret;
    }
    return !!(ret & BDRV_BLOCK_ALLOCATED);
}
