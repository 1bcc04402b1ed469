#include "config.h"
/*
 * strata-img convert: the copy engine.
 *
 * One walk over the concatenated sources, driven by block status: each
 * extent is cut into chunks of the request size and handed to one of
 * -m worker coroutines.  Zero extents are skipped when the target is
 * known to read as zeroes, else zeroed the cheapest way (write-zeroes
 * with unmap: hole punching / zero range in the file driver); data
 * chunks are read, scanned for zero runs of at least -S bytes, and
 * written.  Without -W, writes keep source order (see WriteOrder).
 *
 * Progress, like qemu-img's, is the share of the chunks that are read
 * (data, and zeroes with -S 0) done so far; their total comes from a
 * first walk that only asks for block status (no data is read), so a
 * mostly empty disk does not race to 97 % through its holes and stall.
 *
 * Sections, in file order: request size and buffers; the walk (block
 * status, cutting chunks, gathering short data extents); write order and
 * progress (turns, the window ring); errors and rate; zero runs and -S
 * runs; submitted writes (compressed, and ordered plain writes onto
 * qcow2); reads (salvage, across sources, part by part); copy offload;
 * the workers and the entry point.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "block/block.h"
#include "tools/img/convert.h"
#include "tools/img/img.h"
#include "util/cutils.h"
#include "util/progress.h"

#define CONVERT_MIN_REQ     (256 * 1024)
#define CONVERT_MAX_REQ     (2 * 1024 * 1024)
#define CONVERT_SALVAGE_UNIT 512
/* Extents one data chunk may gather, and its size when it does (see
 * merge_extents(); larger would only touch more of the buffers, which
 * a chunk of one short extent leaves unused). */
#define CONVERT_MAX_SEGS    64
#define CONVERT_MERGE_MAX   (256 * 1024)

/*
 * How strictly writes follow source order.  In-order writing (no -W)
 * exists so that a target which allocates as it is written ends up laid
 * out front to back like the source.
 *
 * - ORDER_STRICT: a chunk writes only once every earlier chunk has
 *   completed, one run after another.  Image formats allocate clusters in
 *   the order requests run, so they need this.
 * - ORDER_WINDOW: a raw image in a regular file or on a device.  File
 *   systems place a block by its offset in the file (the allocator's goal
 *   is the physical neighbour of the logical neighbour; buffered writes
 *   are only placed at writeback), so writes completing in any order
 *   within a short window give the same layout: on ext4, an O_DIRECT
 *   convert of the W1 image gives 32-33 extents either way, like the
 *   source.  A chunk waits only while it is a window (the -m chunks in
 *   flight) ahead of the oldest unfinished one, which bounds the skew.
 * - ORDER_SUBMIT: compressed writes (-c).  Like ORDER_STRICT, except that
 *   a compressed write passes the turn on as soon as it is submitted: the
 *   target stores compressed writes in submission order (block.h), so
 *   the next chunk may submit its own while the first is still being
 *   compressed, and clusters still land in guest order while -m chunks
 *   compress at once on the worker pool.  Other writes (zero runs, and
 *   the zero chunks -S 0 writes through do_write()) take the turn the
 *   strict way and also wait until every earlier compressed write has
 *   completed, so that nothing they allocate overtakes those.
 *   A target that honours BDRV_REQ_ALLOC_IN_ORDER (qcow2) promises the
 *   same for plain writes carrying it, so the data runs of a chunk
 *   are submitted in the chunk's turn and the next chunk submits its own
 *   while they are still being written: the target's file keeps a queue
 *   of writes instead of waiting for each to come back, and the layout
 *   is strict order's.
 * - ORDER_NONE: -W, except with -c: submitting compressed writes in
 *   order makes nobody wait, and gives the layout (and the speed) of -c
 *   without -W; writes in completion order measured slower (1.12x the
 *   wall time at the same CPU, see docs/benchmarks.md).
 */
typedef enum {
    ORDER_NONE,
    ORDER_WINDOW,
    ORDER_STRICT,
    ORDER_SUBMIT,
} WriteOrder;

typedef struct Chunk {
    int64_t off;          /* offset in the target (= concatenated source) */
    int64_t len;
    int src;              /* source index */
    int64_t src_off;      /* offset in that source */
    bool zero;
    bool skip;            /* -B: the target's backing file provides it */
    bool released;        /* its turn already passed (see write_compressed()) */
    bool keep_turn;       /* part of a chunk: may not release it */
    bool copy;            /* -C still on when it was handed out */
    uint64_t seq;
    /* a data chunk gathered from several short extents: where each
     * ends, from the chunk's start (one segment: seg_end[0] == len) */
    int nseg;
    int64_t seg_end[CONVERT_MAX_SEGS];
} Chunk;

typedef struct Convert {
    const ConvertParams *p;
    int64_t total;
    int64_t req;           /* request size */
    int64_t scan_unit;     /* -S: zero detection granularity */
    int64_t cut_unit;      /* see pick_cut_unit() */
    size_t align;          /* buffer alignment */
    /* the walk */
    CoMutex walk_lock;
    int64_t cursor;
    int cur_src;
    int64_t src_base;
    int64_t st_end;        /* cached block status covers [cursor, st_end) */
    bool st_zero;
    bool st_skip;
    /* ordering (see wait_turn()) */
    WriteOrder order;
    uint64_t seq_next;
    uint64_t seq_low;      /* oldest chunk not finished */
    bool seq_finished[CONVERT_MAX_COROUTINES];  /* window: [seq_low, +m) */
    int64_t seq_progress[CONVERT_MAX_COROUTINES]; /* what each counts */
    int seq_nseg[CONVERT_MAX_COROUTINES];         /* ... in segments */
    int64_t seq_seg[CONVERT_MAX_COROUTINES][CONVERT_MAX_SEGS];
    CoQueue order_q;
    int compressing;       /* submitted writes released, not yet done */
    /* window: the write error of the earliest chunk, reported last */
    bool werr_set;
    uint64_t werr_seq;
    int64_t werr_off;
    int werr;
    int workers;           /* -m, or 1 for --salvage (see convert_setup()) */
    /* accounting */
    RateLimit rl;
    int64_t alloc_total;   /* bytes of the chunks progress counts */
    int64_t alloc_done;
    int running;
    int ret;
    bool copy_range;
    bool sparse_copy;      /* see try_sparse_copy() */
    void *zero_buf;
} Convert;

/* Request size: the target's preference, else 2 MiB (qemu-img's buffer:
 * chunk boundaries decide where zero runs are cut, so they stay where the
 * reference puts them; -m 8 then keeps ~16 MiB in flight). */
static int64_t pick_request_size(const ConvertParams *p)
{
    uint64_t pref = bdrv_get_limits(blk_bs(p->dst))->opt_transfer;

    if (p->compressed) {
        return p->cluster_size;     /* one cluster per request, as qemu-img */
    }
    if (!pref) {
        pref = CONVERT_MAX_REQ;
    }
    pref = MAX(pref, CONVERT_MIN_REQ);
    return MIN(pref, CONVERT_MAX_REQ);
}

static size_t pick_alignment(const ConvertParams *p)
{
    size_t a = MAX(bdrv_get_limits(blk_bs(p->dst))->opt_mem_alignment, 4096);

    for (int i = 0; i < p->src_num; i++) {
        a = MAX(a, bdrv_get_limits(blk_bs(p->src[i]))->opt_mem_alignment);
    }
    return a;
}

static void *convert_alloc(Convert *s, size_t len)
{
    void *buf = NULL;

    if (posix_memalign(&buf, s->align, len)) {
        abort();
    }
    return buf;
}

/*
 * Block status at @soff of the current source.  With --salvage a failed
 * query is retried on a quarter of the range (in sectors, rounded up)
 * until it works, down to one sector, which is then reported and taken
 * as data: the extents and warnings are the reference's.
 */
static int coroutine_fn status_at(Convert *s, int64_t soff, int64_t left,
                                  int64_t *pnum, int *depth)
{
    const ConvertParams *p = s->p;
    BlockDriverState *bs = blk_bs(p->src[s->cur_src]);
    int64_t n = MIN(DIV_ROUND_UP(left, BDRV_SECTOR_SIZE),
                    BDRV_REQUEST_MAX_BYTES / BDRV_SECTOR_SIZE);
    int ret;

    for (;;) {
        if (p->target_backing) {
            *depth = 1;
            ret = bdrv_co_block_status(bs, soff,
                                       MIN(n * BDRV_SECTOR_SIZE, left),
                                       pnum, NULL, NULL);
        } else {
            ret = bdrv_co_block_status_above(bs, NULL, soff,
                                             MIN(n * BDRV_SECTOR_SIZE, left),
                                             pnum, NULL, NULL, depth);
        }
        if (ret >= 0 || !p->salvage) {
            return ret;
        }
        if (n == 1) {
            if (!p->quiet) {
                warn_report("error while reading block status at offset %"
                            PRId64 ": %s", soff, strerror(-ret));
            }
            *pnum = MIN(BDRV_SECTOR_SIZE, left);
            *depth = 0;
            return BDRV_BLOCK_DATA;     /* just try to read it */
        }
        n = DIV_ROUND_UP(n, 4);
    }
}

/* -B: where the target's backing file ends for the reference, which
 * counts it in whole sectors (its length rounded up); -1 without. */
static int64_t backing_end(const Convert *s)
{
    int64_t blen = s->p->target_backing_len;

    return blen >= 0 ? ROUND_UP(blen, BDRV_SECTOR_SIZE) : -1;
}

/*
 * -B: the target reads its backing file where it is left unallocated, so
 * only what the source's top layer holds is copied (its status alone, see
 * status_at()): data, and zeroes written as zeroes, except from the end
 * of the target's backing file (backing_end()) on, where the target
 * reads zeroes anyway.  Queries stop at that end (walk_status_quiet()).
 */
static void backing_status(Convert *s, int ret)
{
    int64_t bend = backing_end(s);

    if (ret & BDRV_BLOCK_ZERO) {
        s->st_zero = true;
        s->st_skip = bend >= 0 && s->cursor >= bend;
    } else {
        s->st_zero = false;
        s->st_skip = !(ret & BDRV_BLOCK_DATA);
    }
}

/* The reference's qcow2 answers a status query from one L2 table at
 * most, in every layer its walk asks: an extent of a qcow2 chain ends
 * where the table that maps its start ends in any of those layers (it
 * matters with small clusters: 32 KiB of guest disk per table with
 * 512-byte clusters, e.g. for -p's steps, or for -c, where an extent
 * shorter than a target cluster is copied whole).  With -B only the top
 * layer is asked. */
static int64_t cut_at_l2_table(const Convert *s, int64_t soff, int64_t pnum,
                               int depth)
{
    BlockDriverState *bs = blk_bs(s->p->src[s->cur_src]);

    img_cut_at_tables(bs, NULL, s->p->target_backing ? 1 : depth, soff,
                      &pnum);
    return pnum;
}

/* The unit the reference keeps its next status query aligned to: the
 * current source's request alignment or cluster size, whichever is
 * larger (whole sectors). */
static int64_t status_align(const Convert *s)
{
    BlockDriverState *bs = blk_bs(s->p->src[s->cur_src]);
    int64_t al = ROUND_UP(bdrv_get_limits(bs)->request_alignment,
                          BDRV_SECTOR_SIZE);
    BlockDriverInfo bdi;

    if (bdrv_get_info(bs, &bdi) == 0 && bdi.cluster_size > al) {
        al = ROUND_UP(bdi.cluster_size, BDRV_SECTOR_SIZE);
    }
    return al;
}

/* An extent of @pnum bytes at @soff ends where the reference's does: cut
 * back to a multiple of status_align() unless that leaves nothing (so an
 * image whose end is not cluster-aligned has its last partial cluster
 * as an extent, and a chunk, of its own). */
static int64_t align_status_end(const Convert *s, int64_t soff,
                                int64_t pnum)
{
    int64_t tail = (soff + pnum) % status_align(s);

    return pnum > tail ? pnum - tail : pnum;
}

/* Refresh the cached block status at the cursor (source s->cur_src);
 * a failure is left to the caller to report. */
static int coroutine_fn walk_status_quiet(Convert *s)
{
    const ConvertParams *p = s->p;
    int64_t soff = s->cursor - s->src_base, pnum = 0;
    int64_t slen = p->src_len[s->cur_src];
    int64_t want = slen - soff, bend = backing_end(s);
    int depth = 0, ret;

    if (p->target_backing && bend >= 0 && s->cursor < bend) {
        /* the reference splits its query at the backing file's end */
        want = MIN(want, bend - s->cursor);
    }
    ret = status_at(s, soff, want, &pnum, &depth);
    if (ret < 0) {
        return ret;
    }
    if (pnum <= 0) {
        /* a confused driver: treat a request as data */
        pnum = MIN(s->req, slen - soff);
        ret = BDRV_BLOCK_DATA;
    }
    /* qemu-img walks whole sectors: an extent ending inside one (the
     * file's EOF) takes the rest of it, so a data tail is written in
     * full, padded with zeroes, as the reference writes it */
    pnum = MIN(ROUND_UP(soff + pnum, BDRV_SECTOR_SIZE), slen) - soff;
    pnum = cut_at_l2_table(s, soff, pnum, depth);
    pnum = align_status_end(s, soff, pnum);
    s->st_end = s->cursor + pnum;
    s->st_zero = (ret & BDRV_BLOCK_ZERO) ||
                 (!(ret & BDRV_BLOCK_DATA) && depth == 0);
    s->st_skip = false;
    if (p->target_backing) {
        backing_status(s, ret);
    }
    return 0;
}

/* As walk_status_quiet(), reporting a failure as the reference does. */
static int coroutine_fn walk_status(Convert *s)
{
    int ret = walk_status_quiet(s);

    if (ret < 0) {
        error_report("error while reading block status at offset %" PRId64
                     ": %s", s->cursor - s->src_base, strerror(-ret));
    }
    return ret;
}

/* -c: whole clusters.  An extent shorter than one is taken as data for a
 * whole cluster (the cluster must be written in one go), longer ones are
 * cut to whole clusters, as qemu-img does. */
static int64_t walk_take_compressed(Convert *s)
{
    int64_t left = s->st_end - s->cursor, cl = s->p->cluster_size;

    if (left < cl) {
        s->st_zero = s->st_skip = false;
        return MIN(cl, s->total - s->cursor);
    }
    left = ROUND_DOWN(left, cl);
    return (s->st_zero && s->p->sparse) || s->st_skip ? left
                                                      : MIN(left, s->req);
}

/* A data chunk cut short by the request size ends on a multiple of the
 * target's cluster (when larger than the -S unit), as qemu-img's do.
 * Extents start on file system blocks, so chunks counted from there
 * would straddle target clusters: each would allocate its last cluster
 * partly (a second write zeroing the tail) only for the next chunk to
 * write the rest. */
static int64_t cut_data_chunk(const Convert *s, int64_t n)
{
    int64_t end = (s->cursor + n) / s->cut_unit * s->cut_unit;

    if (s->cut_unit == s->scan_unit || n < s->req || end <= s->cursor) {
        return n;
    }
    return end - s->cursor;
}

/* Length of the next chunk at the cursor (inside the cached extent). */
static int64_t walk_take(Convert *s)
{
    int64_t left = s->st_end - s->cursor;

    if (s->p->compressed) {
        return walk_take_compressed(s);
    }
    if (s->st_skip) {
        return left;
    }
    if (s->st_zero && s->p->sparse) {
        return left;        /* one request zeroes (or skips) the lot */
    }
    /* requests of the request size from the start of the extent, as
     * qemu-img cuts them: -S runs are judged within a chunk */
    return cut_data_chunk(s, MIN(left, s->req));
}

static int64_t merge_limit(const Convert *s)
{
    return MIN(s->req, CONVERT_MERGE_MAX);
}

/* May the data chunk @c, which ends at the cursor, take the next extent
 * too?  Only a plain copy's (-c cuts whole clusters; --salvage reports
 * as it goes; while -C is on, how many chunks are handed out before one
 * fails to offload decides which others still try, see try_copy_range()),
 * when @c ends where its extent does, short of a request, inside the
 * same source. */
static bool may_merge(const Convert *s, const Chunk *c)
{
    const ConvertParams *p = s->p;

    return !p->compressed && !p->salvage && !s->copy_range &&
           !c->zero && !c->skip &&
           c->nseg < CONVERT_MAX_SEGS && c->len < merge_limit(s) &&
           s->cursor == s->st_end &&
           s->cursor < s->src_base + p->src_len[s->cur_src];
}

/*
 * A data chunk ending with its extent, short of the request size, takes
 * the data extents that follow while the first chunk of each fits whole:
 * one read instead of many (a compressed qcow2 reports each cluster as
 * an extent of its own; the driver then reads the whole run at once).
 * Each extent stays a segment of its own, judged for -S zero runs within
 * its bounds and counted by the progress bar on its own, so that what is
 * written and reported is what chunk by chunk gives.  A block-status
 * failure here only stops the merge: the walk meets it again and
 * reports it in its turn.
 */
static void coroutine_fn merge_extents(Convert *s, Chunk *c)
{
    while (may_merge(s, c)) {
        int64_t n;

        if (walk_status_quiet(s) < 0) {
            s->st_end = s->cursor;      /* asked again, and reported, next */
            return;
        }
        if (s->st_zero || s->st_skip) {
            return;
        }
        n = walk_take(s);
        if (c->len + n > merge_limit(s)) {
            return;
        }
        c->len += n;
        c->seg_end[c->nseg++] = c->len;
        s->cursor += n;
    }
}

/* Hand out the next chunk; false at the end or after an error. */
static bool coroutine_fn next_chunk(Convert *s, Chunk *c)
{
    bool ok = false;

    co_mutex_lock(&s->walk_lock);
    while (s->ret == 0 && s->cursor < s->total &&
           s->cursor >= s->src_base + s->p->src_len[s->cur_src]) {
        s->src_base += s->p->src_len[s->cur_src++];
        s->st_end = s->src_base;
    }
    if (s->ret == 0 && s->cursor < s->total) {
        if (s->cursor >= s->st_end) {
            s->ret = walk_status(s);
        }
        if (s->ret == 0) {
            c->off = s->cursor;
            c->len = walk_take(s);
            c->src = s->cur_src;
            c->src_off = s->cursor - s->src_base;
            c->zero = s->st_zero;
            c->skip = s->st_skip;
            c->released = false;
            c->keep_turn = false;
            c->copy = s->copy_range;
            c->seq = s->seq_next++;
            c->nseg = 1;
            c->seg_end[0] = c->len;
            s->cursor += c->len;
            merge_extents(s, c);
            ok = true;
        }
    }
    co_mutex_unlock(&s->walk_lock);
    return ok;
}

/* May chunk @c write yet?  Strict: once every earlier chunk finished.
 * Window: once it is less than a window ahead of the oldest unfinished.
 * Submit: as strict, and a write other than a compressed one (@plain)
 * also waits for the compressed writes still running. */
static bool may_write(const Convert *s, const Chunk *c, bool plain)
{
    switch (s->order) {
    case ORDER_STRICT:
        return s->seq_low == c->seq;
    case ORDER_SUBMIT:
        return s->seq_low == c->seq && (!plain || s->compressing == 0);
    case ORDER_WINDOW:
        return c->seq < s->seq_low + (uint64_t)s->workers;
    default:
        return true;
    }
}

static void coroutine_fn wait_for(Convert *s, const Chunk *c, bool plain)
{
    while (!may_write(s, c, plain)) {
        co_queue_wait(&s->order_q, NULL);
    }
}

/* Before a write (see WriteOrder). */
static void coroutine_fn wait_turn(Convert *s, const Chunk *c)
{
    wait_for(s, c, true);
}

/* Does the progress bar count @c?  The chunks that are read: data, and
 * zeroes when they are written out (-S 0). */
static bool progress_counts(const Convert *s, const Chunk *c)
{
    return !c->skip && (!c->zero || !s->p->sparse);
}

static void progress_advance(Convert *s, int64_t bytes)
{
    if (bytes && s->alloc_total) {
        s->alloc_done += bytes;
        progress_set((float)((double)s->alloc_done * 100 / s->alloc_total));
    }
}

/* Advance by a chunk's @progress bytes one segment at a time, as
 * separate chunks would have moved it (@segs: the segments' ends). */
static void progress_advance_segs(Convert *s, int64_t progress,
                                  const int64_t *segs, int nseg)
{
    int64_t prev = 0;

    if (!progress || nseg <= 1) {
        progress_advance(s, progress);
        return;
    }
    for (int i = 0; i < nseg; i++) {
        progress_advance(s, segs[i] - prev);
        prev = segs[i];
    }
}

/* Chunk @c is over: move the oldest-unfinished mark past every finished
 * chunk and let the waiting ones look again. */
static void coroutine_fn chunk_finished(Convert *s, const Chunk *c,
                                        int64_t progress)
{
    int m = s->workers;

    if (c->released) {
        return;         /* counted when its turn passed */
    }
    if (s->order == ORDER_NONE) {
        progress_advance_segs(s, progress, c->seg_end, c->nseg);
        return;
    }
    /* a chunk that wrote nothing still waits: strict order keeps its
     * place, and the window's ring has one slot per chunk inside it.
     * The progress bar moves as the oldest chunks finish, in order, as
     * the reference's does. */
    wait_for(s, c, false);
    s->seq_finished[c->seq % m] = true;
    s->seq_progress[c->seq % m] = progress;
    s->seq_nseg[c->seq % m] = c->nseg;
    memcpy(s->seq_seg[c->seq % m], c->seg_end, c->nseg * sizeof(int64_t));
    while (s->seq_finished[s->seq_low % m]) {
        int k = s->seq_low % m;

        progress_advance_segs(s, s->seq_progress[k], s->seq_seg[k],
                              s->seq_nseg[k]);
        s->seq_finished[s->seq_low++ % m] = false;
    }
    co_queue_restart_all(&s->order_q);
}

/* Can writes of several chunks fail in any order (see write_failed())?
 * Not with -W: there qemu-img's chunks report each its own failure as
 * it comes (-c -W: every compressed write in flight, in any order). */
static bool errors_deferred(const Convert *s)
{
    return s->p->in_order &&
           (s->order == ORDER_WINDOW || s->order == ORDER_SUBMIT);
}

/* Where the chunk (segment: see merge_extents()) holding @off starts:
 * what a failed write names, as qemu-img names its chunk, whichever of
 * the chunk's runs failed. */
static int64_t failed_chunk_start(const Chunk *c, int64_t off)
{
    int64_t start = 0;

    for (int i = 0; i < c->nseg && c->off + c->seg_end[i] <= off; i++) {
        start = c->seg_end[i];
    }
    return c->off + start;
}

/* A write failed: stop later writes; report it now, or in window order
 * keep the earliest chunk's error so that the one line reported is the
 * one strict order would have given. */
static void write_failed(Convert *s, const Chunk *c, int64_t off, int ret)
{
    off = failed_chunk_start(c, off);
    if (s->ret == 0) {
        s->ret = ret;
    }
    if (!errors_deferred(s)) {
        error_report("error while writing at byte %" PRId64 ": %s", off,
                     strerror(-ret));
    } else if (!s->werr_set || c->seq < s->werr_seq ||
               (c->seq == s->werr_seq && off < s->werr_off)) {
        s->werr_set = true;
        s->werr_seq = c->seq;
        s->werr_off = off;
        s->werr = ret;
    }
}

/* Has an error stopped @c?  Any error does, except in window order a
 * write error of a later chunk: @c still writes, so that the error
 * reported is the earliest chunk's whatever order the chunks ran in. */
static bool stopped_by_error(const Convert *s, const Chunk *c)
{
    if (s->ret == 0) {
        return false;
    }
    return !(errors_deferred(s) && s->werr_set && s->werr_seq > c->seq);
}

/* -r: account @bytes about to be written, sleeping when over the rate. */
static void coroutine_fn rate_limit(Convert *s, int64_t bytes)
{
    int64_t delay;

    if (!s->p->rate) {
        return;
    }
    delay = ratelimit_calculate_delay(&s->rl, bytes);
    if (delay > 0) {
        co_sleep_ns(delay);
    }
}

static int coroutine_fn do_write(Convert *s, Chunk *c, int64_t off,
                                 int64_t len, const void *buf)
{
    int ret;

    wait_turn(s, c);
    if (stopped_by_error(s, c)) {
        return s->ret;      /* an earlier chunk failed: stop quietly */
    }
    rate_limit(s, len);
    ret = blk_co_pwrite(s->p->dst, off, len, buf,
                        s->p->compressed ? BDRV_REQ_WRITE_COMPRESSED : 0);
    if (ret < 0) {
        write_failed(s, c, off, ret);
    }
    return ret;
}

/* Write explicit zeroes (-S 0: the target must end up allocated). */
static int coroutine_fn write_zero_bytes(Convert *s, Chunk *c,
                                         int64_t off, int64_t len)
{
    int ret = 0;

    if (!s->zero_buf) {
        s->zero_buf = convert_alloc(s, s->req);
        memset(s->zero_buf, 0, s->req);
    }
    for (int64_t pos = 0; pos < len && ret == 0; pos += s->req) {
        ret = do_write(s, c, off + pos, MIN(s->req, len - pos), s->zero_buf);
    }
    return ret;
}

/* A zero run: skipped on a zeroed target, else write-zeroes with unmap. */
static int coroutine_fn write_zero_run(Convert *s, Chunk *c,
                                       int64_t off, int64_t len)
{
    int ret;

    if (!s->p->sparse) {
        return write_zero_bytes(s, c, off, len);
    }
    if (s->p->target_zero) {
        return 0;
    }
    wait_turn(s, c);
    if (stopped_by_error(s, c)) {
        return s->ret;
    }
    ret = blk_co_pwrite_zeroes(s->p->dst, off, len, BDRV_REQ_MAY_UNMAP);
    if (ret < 0) {
        write_failed(s, c, off, ret);
    }
    return ret;
}

/*
 * -S: which zero runs of a data chunk are left out.  The buffer is looked
 * at in units aligned to target offsets: -S rounded down to a power of
 * two, at least a sector and at least the target's request alignment (as
 * qemu-img aligns zero runs: the default -S 4k gives 4 KiB, what a file
 * system allocates; -S 512 onto 512-byte clusters gives sectors).  A run
 * of whole zero units is left out; with an -S that is not a power of two
 * it must also be at least -S long, unless the chunk's edge cuts it.
 */
static int64_t pick_scan_unit(int64_t sparse, uint32_t request_alignment)
{
    int64_t u = BDRV_SECTOR_SIZE;

    while (u * 2 <= sparse) {
        u *= 2;
    }
    while (u < request_alignment) {
        u *= 2;
    }
    return u;
}

/* The unit data chunks end on: the target's cluster when larger than
 * the -S unit (see cut_data_chunk()); else the -S unit, which leaves the
 * chunks as they are. */
static int64_t pick_cut_unit(const ConvertParams *p, int64_t scan_unit)
{
    if (p->cluster_size > scan_unit && p->cluster_size <= CONVERT_MAX_REQ) {
        return p->cluster_size;
    }
    return scan_unit;
}

/* Bytes from @pos in @buf, up to the end of its segment @seg_end, that
 * are all zero or all data, in whole scan units; *zero tells which. */
static int64_t scan_run(Convert *s, const Chunk *c, const uint8_t *buf,
                        int64_t pos, int64_t seg_end, bool *zero)
{
    int64_t unit = s->scan_unit, start = pos;
    bool first = true;

    while (pos < seg_end) {
        int64_t end = MIN(seg_end,
                          (c->off + pos) / unit * unit + unit - c->off);
        bool z = buffer_is_zero(buf + pos, end - pos);

        if (!first && z != *zero) {
            break;
        }
        *zero = z;
        first = false;
        pos = end;
    }
    return pos - start;
}

/* A zero run [pos, +n) that is left out: -S long, or cut by the
 * segment's edge (which qemu-img's chunk edges cut). */
static bool zero_run_skipped(Convert *s, int64_t pos, int64_t n,
                             int64_t seg_start, int64_t seg_end)
{
    return n >= s->p->sparse || pos == seg_start || pos + n == seg_end;
}

/* The run at @pos of segment [seg_start, seg_end): a zero run that is
 * left out, or data up to the next one (shorter zero runs are written
 * with the data around them, in one request, as qemu-img writes them). */
static int64_t run_length(Convert *s, const Chunk *c, const uint8_t *buf,
                          int64_t pos, int64_t seg_start, int64_t seg_end,
                          bool *zero)
{
    int64_t end = pos + scan_run(s, c, buf, pos, seg_end, zero);

    if (*zero && zero_run_skipped(s, pos, end - pos, seg_start, seg_end)) {
        return end - pos;
    }
    *zero = false;
    while (end < seg_end) {
        bool z = false;
        int64_t n = scan_run(s, c, buf, end, seg_end, &z);

        if (z && zero_run_skipped(s, end, n, seg_start, seg_end)) {
            break;
        }
        end += n;
    }
    return end - pos;
}

/*
 * The runs of one data chunk, written concurrently unless the order is
 * strict: each run is a coroutine of its own that queues its request
 * right away, so the target's queue (the file's write lane for buffered
 * files) holds the whole chunk instead of one run at a time with a round
 * trip through the loop in between.
 */
typedef struct RunGroup {
    Convert *s;
    Chunk *c;
    int pending;
    int ret;
    Coroutine *waiter;     /* the chunk, once every run is issued */
} RunGroup;

typedef struct Run {
    RunGroup *g;
    int64_t off, len;
    const uint8_t *buf;    /* NULL: a zero run */
} Run;

static int coroutine_fn write_run(Convert *s, Chunk *c, int64_t off,
                                  int64_t len, const uint8_t *buf)
{
    return buf ? do_write(s, c, off, len, buf)
               : write_zero_run(s, c, off, len);
}

static void coroutine_fn run_co(void *opaque)
{
    Run r = *(Run *)opaque;          /* the caller's copy goes away */
    RunGroup *g = r.g;
    int ret = write_run(g->s, g->c, r.off, r.len, r.buf);

    if (ret < 0 && g->ret == 0) {
        g->ret = ret;
    }
    if (--g->pending == 0 && g->waiter) {
        co_wake_later(g->waiter);
    }
}

/* Start one run; it runs until its request is queued. */
static void coroutine_fn run_start(RunGroup *g, int64_t off, int64_t len,
                                   const uint8_t *buf)
{
    Run r = { .g = g, .off = off, .len = len, .buf = buf };

    g->pending++;
    co_enter(co_create(run_co, &r));
}

/* With -m 1 qemu-img writes a chunk's runs one after another even with
 * -W, which fixes where a target that allocates as it goes puts them. */
static bool concurrent_runs(const Convert *s)
{
    return (s->order == ORDER_NONE || s->order == ORDER_WINDOW) &&
           s->workers > 1;
}

/*
 * Submitted writes (ORDER_SUBMIT): -c writes one compressed write per
 * chunk (whole clusters); onto a target that allocates in order, a data
 * chunk writes each of its data runs with BDRV_REQ_ALLOC_IN_ORDER.  Each
 * write runs in a coroutine of its own: entering it submits the request
 * (the target takes its place in the storing order before anything
 * yields), then the turn passes to the next chunk at once and this one
 * waits for its writes.  Progress moves when the turn passes.
 */
typedef struct SubmittedWrite {
    Convert *s;
    const Chunk *c;
    int64_t off, len;
    const uint8_t *buf;
    BdrvRequestFlags flags;
    int *pending;          /* the chunk's writes not done yet */
    int *ret;              /* the first error among them */
    Coroutine **waiter;
} SubmittedWrite;

/* One submitted write: on completion it lets the turn-waiters look
 * again and wakes its chunk after the chunk's last write. */
static void coroutine_fn submitted_write_co(void *opaque)
{
    SubmittedWrite w = *(SubmittedWrite *)opaque;  /* the caller's goes */
    Convert *s = w.s;
    int ret = blk_co_pwrite(s->p->dst, w.off, w.len, w.buf, w.flags);

    if (ret < 0) {
        write_failed(s, w.c, w.off, ret);
        *w.ret = *w.ret ? *w.ret : ret;
    }
    s->compressing--;
    co_queue_restart_all(&s->order_q);
    if (--*w.pending == 0 && *w.waiter) {
        co_wake_later(*w.waiter);
    }
}

/* Submit a write of the chunk in its turn (see ORDER_SUBMIT). */
static void coroutine_fn submit_write(SubmittedWrite *w, int64_t off,
                                      int64_t len, const uint8_t *buf)
{
    w->off = off;
    w->len = len;
    w->buf = buf;
    rate_limit(w->s, len);
    w->s->compressing++;
    ++*w->pending;
    co_enter(co_create(submitted_write_co, w));
}

/* Wait for the chunk's turn to submit; false when an error stopped the
 * conversion meanwhile (the caller returns s->ret). */
static bool coroutine_fn submit_turn(Convert *s, Chunk *c)
{
    wait_for(s, c, false);
    return !stopped_by_error(s, c);
}

/* The chunk's writes (@w's) are submitted: pass the turn, wait for them. */
static int coroutine_fn release_and_wait(Convert *s, Chunk *c,
                                         int64_t progress,
                                         const SubmittedWrite *w)
{
    chunk_finished(s, c, progress);    /* the next chunk may submit */
    c->released = true;
    if (*w->pending) {
        *w->waiter = co_self();
        co_yield();
    }
    return *w->ret;
}

static int coroutine_fn write_compressed(Convert *s, Chunk *c,
                                         const uint8_t *buf)
{
    Coroutine *waiter = NULL;
    int pending = 0, ret = 0;
    SubmittedWrite w = {
        .s = s, .c = c, .flags = BDRV_REQ_WRITE_COMPRESSED,
        .pending = &pending, .ret = &ret, .waiter = &waiter,
    };

    if (s->order != ORDER_SUBMIT) {
        return do_write(s, c, c->off, c->len, buf);
    }
    if (!submit_turn(s, c)) {
        return s->ret;
    }
    submit_write(&w, c->off, c->len, buf);
    return release_and_wait(s, c, c->len, &w);
}

/* The runs of segment [start, end) of a data chunk: started in @g, or
 * written one after another in strict order. */
static int coroutine_fn write_segment(Convert *s, Chunk *c, RunGroup *g,
                                      const uint8_t *buf, int64_t start,
                                      int64_t end)
{
    int64_t pos = start, n;
    bool zero = false;
    int ret = 0;

    if (!s->p->sparse) {
        return do_write(s, c, c->off + start, end - start, buf + start);
    }
    while (pos < end && ret == 0 && g->ret == 0) {
        n = run_length(s, c, buf, pos, start, end, &zero);
        if (concurrent_runs(s)) {
            run_start(g, c->off + pos, n, zero ? NULL : buf + pos);
        } else {
            ret = write_run(s, c, c->off + pos, n, zero ? NULL : buf + pos);
        }
        pos += n;
    }
    return ret;
}

/* ORDER_SUBMIT onto a target that reads as zeroes: the data runs of
 * every segment submitted in the chunk's turn (zero runs left out), then
 * the turn passes on while they are written. */
static int coroutine_fn write_data_submitted(Convert *s, Chunk *c,
                                             const uint8_t *buf)
{
    Coroutine *waiter = NULL;
    int pending = 0, ret = 0;
    SubmittedWrite w = {
        .s = s, .c = c, .flags = BDRV_REQ_ALLOC_IN_ORDER,
        .pending = &pending, .ret = &ret, .waiter = &waiter,
    };

    if (!submit_turn(s, c)) {
        return s->ret;
    }
    for (int i = 0; i < c->nseg; i++) {
        int64_t start = i ? c->seg_end[i - 1] : 0, pos = start, n;
        bool zero = false;

        for (; pos < c->seg_end[i]; pos += n) {
            n = run_length(s, c, buf, pos, start, c->seg_end[i], &zero);
            if (!zero) {
                submit_write(&w, c->off + pos, n, buf + pos);
            }
        }
    }
    return release_and_wait(s, c, progress_counts(s, c) ? c->len : 0, &w);
}

/* Write a data chunk, leaving out zero runs of at least -S bytes. */
static int coroutine_fn write_data(Convert *s, Chunk *c,
                                   const uint8_t *buf)
{
    RunGroup g = { .s = s, .c = c };
    int ret = 0;

    if (s->p->compressed) {
        /* a whole chunk of zeroes is a zero run (-S) */
        if (s->p->sparse && buffer_is_zero(buf, c->len)) {
            return write_zero_run(s, c, c->off, c->len);
        }
        return write_compressed(s, c, buf);
    }
    if (s->order == ORDER_SUBMIT && s->p->sparse && s->p->target_zero &&
        !c->keep_turn) {
        return write_data_submitted(s, c, buf);
    }
    if (s->p->sparse && concurrent_runs(s)) {
        wait_turn(s, c);     /* the runs then queue in order, unblocked */
    }
    for (int i = 0; i < c->nseg && ret == 0 && g.ret == 0; i++) {
        ret = write_segment(s, c, &g, buf, i ? c->seg_end[i - 1] : 0,
                            c->seg_end[i]);
    }
    if (g.pending) {
        g.waiter = co_self();
        co_yield();
    }
    return ret < 0 ? ret : g.ret;
}

/* --salvage: re-read a failed request sector by sector, zeroing (and
 * reporting) the sectors that still fail. */
static void coroutine_fn salvage_read(Convert *s, const Chunk *c,
                                      uint8_t *buf)
{
    BlockBackend *src = s->p->src[c->src];

    for (int64_t pos = 0; pos < c->len; pos += CONVERT_SALVAGE_UNIT) {
        int64_t n = MIN(CONVERT_SALVAGE_UNIT, c->len - pos);
        int ret = blk_co_pread(src, c->src_off + pos, n, buf + pos, 0);

        if (ret < 0) {
            if (!s->p->quiet) {
                warn_report("error while reading offset %" PRId64 ": %s",
                            c->off + pos, strerror(-ret));
            }
            memset(buf + pos, 0, n);
        }
    }
}

/* -c: a whole cluster may run past the end of its source into the next
 * ones (or past the last: zeroes). */
static int coroutine_fn read_across(Convert *s, const Chunk *c, uint8_t *buf)
{
    const ConvertParams *p = s->p;
    int64_t pos = 0, soff = c->src_off;
    int ret = 0;

    for (int i = c->src; i < p->src_num && pos < c->len && ret >= 0; i++) {
        int64_t n = MIN(c->len - pos, p->src_len[i] - soff);

        ret = n > 0 ? blk_co_pread(p->src[i], soff, n, buf + pos, 0) : 0;
        pos += MAX(n, 0);
        soff = 0;
    }
    if (pos < c->len) {
        memset(buf + pos, 0, c->len - pos);
    }
    return ret;
}

static int coroutine_fn read_data(Convert *s, const Chunk *c, uint8_t *buf)
{
    int ret = s->p->compressed ? read_across(s, c, buf) :
              blk_co_pread(s->p->src[c->src], c->src_off, c->len, buf, 0);

    if (ret < 0 && s->p->salvage) {
        salvage_read(s, c, buf);
        ret = 0;
    } else if (ret < 0) {
        error_report("error while reading at byte %" PRId64 ": %s", c->off,
                     strerror(-ret));
    }
    return ret;
}

/* -C: try copy offloading; false (and offloading off) when unsupported.
 * Keeps the turn: on failure the chunk falls back to writes.  Whether a
 * chunk tries is settled when it is handed out, as in qemu-img: a chunk
 * already waiting its turn when an earlier one gives up still offloads
 * (copying a backing file's zero data as data), later ones read. */
static bool coroutine_fn try_copy_range(Convert *s, const Chunk *c, int *ret)
{
    if (!c->copy) {
        return false;
    }
    wait_turn(s, c);
    rate_limit(s, c->len);
    *ret = blk_co_copy_range(s->p->src[c->src], c->src_off, s->p->dst, c->off,
                             c->len, 0, 0);
    if (*ret < 0) {
        s->copy_range = false;      /* fall back to reads and writes */
        return false;
    }
    return true;
}

/*
 * With -S 4k onto a target known to read as zeroes, what write_data()
 * does to a chunk (write it but for its zero 4 KiB blocks) is one request
 * to the block layer, which a driver can do better in one go (see the
 * file driver's sparse copy); when it cannot, or fails, the chunk and the
 * rest go through reads and writes, which also say what failed where.
 */
static bool sparse_copy_applies(const Convert *s)
{
    const ConvertParams *p = s->p;

    return p->sparse == 4096 && s->scan_unit == 4096 && p->target_zero &&
           !p->rate && !p->salvage && !p->compressed &&
           (s->order == ORDER_NONE || s->order == ORDER_WINDOW);
}

static bool coroutine_fn try_sparse_copy(Convert *s, const Chunk *c,
                                         int *ret)
{
    if (!s->sparse_copy) {
        return false;
    }
    wait_turn(s, c);
    if (stopped_by_error(s, c)) {
        *ret = s->ret;      /* an earlier chunk failed: stop quietly */
        return true;
    }
    *ret = blk_co_copy_range(s->p->src[c->src], c->src_off, s->p->dst,
                             c->off, c->len, 0, BDRV_REQ_SKIP_ZERO_BLOCKS);
    if (*ret < 0) {
        s->sparse_copy = false;
        return false;
    }
    return true;
}

/* A merged chunk whose read failed: segment by segment, as separate
 * chunks, so that the segments before the failing one are written and
 * the error names the failing one's offset. */
static int coroutine_fn copy_segments(Convert *s, const Chunk *c,
                                      uint8_t *buf)
{
    int ret = 0;

    for (int i = 0; i < c->nseg && ret == 0; i++) {
        int64_t start = i ? c->seg_end[i - 1] : 0;
        Chunk one = *c;

        one.off += start;
        one.src_off += start;
        one.len = c->seg_end[i] - start;
        one.nseg = 1;
        one.seg_end[0] = one.len;
        one.keep_turn = true;       /* the chunk's turn, for every part */
        ret = read_data(s, &one, buf);
        ret = ret < 0 ? ret : write_data(s, &one, buf);
    }
    return ret;
}

/* Read a data chunk (quietly first when merged: see copy_segments()). */
static int coroutine_fn read_chunk(Convert *s, Chunk *c, uint8_t *buf,
                                   bool *split)
{
    *split = false;
    if (c->nseg == 1) {
        return read_data(s, c, buf);
    }
    if (blk_co_pread(s->p->src[c->src], c->src_off, c->len, buf, 0) == 0) {
        return 0;
    }
    *split = true;
    return copy_segments(s, c, buf);
}

static int coroutine_fn copy_chunk(Convert *s, Chunk *c, uint8_t **buf)
{
    bool split;

    int ret;

    if (c->skip) {
        return 0;
    }
    if (c->zero) {
        return write_zero_run(s, c, c->off, c->len);
    }
    if (try_copy_range(s, c, &ret) || try_sparse_copy(s, c, &ret)) {
        return ret;
    }
    if (!*buf) {
        *buf = convert_alloc(s, s->req);
    }
    ret = read_chunk(s, c, *buf, &split);
    return ret < 0 || split ? ret : write_data(s, c, *buf);
}

/* A chunk is over: let the next one write, move the progress bar. */
static void coroutine_fn finish_chunk(Convert *s, Chunk *c, int ret)
{
    if (ret < 0 && s->ret == 0) {
        s->ret = ret;
    }
    chunk_finished(s, c, progress_counts(s, c) ? c->len : 0);
}

/* The first walk: what the progress bar's 100 % is.  Block status only;
 * the walk then starts over for the copy. */
static void coroutine_fn count_worker(void *opaque)
{
    Convert *s = opaque;
    Chunk c;

    while (next_chunk(s, &c)) {
        if (progress_counts(s, &c)) {
            s->alloc_total += c.len;
        }
    }
    s->cursor = s->src_base = s->st_end = 0;
    s->cur_src = 0;
    s->seq_next = 0;
    s->running--;
}

static void coroutine_fn convert_worker(void *opaque)
{
    Convert *s = opaque;
    uint8_t *buf = NULL;
    Chunk c;

    while (next_chunk(s, &c)) {
        finish_chunk(s, &c, copy_chunk(s, &c, &buf));
    }
    free(buf);
    s->running--;
}

/* A raw image straight on a file or device (see WriteOrder)? */
static bool target_places_by_offset(BlockBackend *dst)
{
    BlockDriverState *bs = blk_bs(dst);
    const char *fmt = bdrv_get_format_name(bs);

    if (fmt && !strcmp(fmt, "raw")) {
        fmt = bdrv_get_format_name(bdrv_file_bs(bs));
    }
    return fmt && (!strcmp(fmt, "file") || !strcmp(fmt, "host_device"));
}

/* Does the target allocate plain writes in the order they reach it
 * (see ORDER_SUBMIT)? */
static bool target_allocates_in_order(BlockBackend *dst)
{
    return bdrv_allocates_in_order(blk_bs(dst));
}

static WriteOrder pick_order(const ConvertParams *p)
{
    if (!p->in_order && !p->compressed) {
        return ORDER_NONE;
    }
    if (p->compressed || target_allocates_in_order(p->dst)) {
        return ORDER_SUBMIT;
    }
    return target_places_by_offset(p->dst) ? ORDER_WINDOW : ORDER_STRICT;
}

static void convert_setup(Convert *s, const ConvertParams *p)
{
    memset(s, 0, sizeof(*s));
    s->p = p;
    for (int i = 0; i < p->src_num; i++) {
        s->total += p->src_len[i];
    }
    s->req = pick_request_size(p);
    s->scan_unit = pick_scan_unit(p->sparse,
                                  bdrv_get_limits(blk_bs(p->dst))->request_alignment);
    s->cut_unit = pick_cut_unit(p, s->scan_unit);
    s->align = pick_alignment(p);
    s->copy_range = p->copy_range;
    /* salvaging goes one chunk at a time, so that what could not be read
     * is reported in order, as the reference reports it */
    s->workers = p->salvage ? 1 : p->coroutines;
    co_mutex_init(&s->walk_lock);
    co_queue_init(&s->order_q);
    s->order = pick_order(p);
    s->sparse_copy = sparse_copy_applies(s);
    ratelimit_set_speed(&s->rl, p->rate, 0);
}

int convert_run(const ConvertParams *p)
{
    Convert s;

    convert_setup(&s, p);
    s.running = 1;
    co_enter(co_create(count_worker, &s));
    AIO_WAIT_WHILE(aio_get_default(), s.running > 0);
    if (s.ret == 0) {
        s.running = s.workers;
        for (int i = 0; i < s.workers; i++) {
            co_enter(co_create(convert_worker, &s));
        }
    }
    AIO_WAIT_WHILE(aio_get_default(), s.running > 0);
    if (s.werr_set) {
        error_report("error while writing at byte %" PRId64 ": %s",
                     s.werr_off, strerror(-s.werr));
    }
    if (s.ret == 0 && p->compressed) {
        /* the end of the compressed stream: qcow2 aligns its file end
         * (a failure fails the convert without a message, as qemu-img) */
        s.ret = blk_pwrite(p->dst, 0, 0, NULL, BDRV_REQ_WRITE_COMPRESSED);
    }
    if (s.ret == 0) {
        s.ret = blk_flush(p->dst);
        if (s.ret < 0) {
            error_report("error while flushing: %s", strerror(-s.ret));
        }
    }
    free(s.zero_buf);
    return s.ret;
}
