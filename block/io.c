#include "config.h"
/*
 * The request path: every read, write, zero-write, discard, flush,
 * truncate and block-status query of every node passes through here.
 *
 * Layers of a read/write:
 *   A  bdrv_co_preadv/pwritev: checks, in-flight count, request tracking,
 *      padding to bl.request_alignment (read-modify-write for writes,
 *      firing the pwritev_rmw_* debug events; padded vectors kept within
 *      IOV_MAX);
 *   B  aligned request: zero-fill past EOF (reads), detect-zeroes, the
 *      pwritev/pwritev_zero/pwritev_done debug events, splitting by
 *      bl.max_transfer, write-zeroes with fallback, generation counters;
 *   C  driver call: bounce buffers for badly aligned memory, FUA
 *      emulation, filter pass-through.
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

/* Biggest zero buffer used when a driver cannot write zeroes itself. */
#define ZERO_BOUNCE_MAX     (1 * MiB)
/* Biggest bounce buffer for memory-misaligned requests (per chunk). */
#define MEM_BOUNCE_MAX      (1 * MiB)
#ifndef IOV_MAX
#define IOV_MAX             1024    /* what Linux's preadv/pwritev accept */
#endif

typedef enum {
    TRACKED_READ, TRACKED_WRITE, TRACKED_DISCARD, TRACKED_TRUNCATE,
} TrackedType;

struct BdrvTrackedRequest {
    BlockDriverState *bs;
    int64_t offset, bytes;
    int64_t overlap_offset, overlap_bytes;
    TrackedType type;
    bool serialising;
    bool waiting;              /* in wait_serialising, for another request */
    BdrvTrackedRequest *next, *prev;
};

/* ---- small helpers ---- */

void bdrv_inc_in_flight(BlockDriverState *bs)
{
    bs->in_flight++;
}

void bdrv_dec_in_flight(BlockDriverState *bs)
{
    g_assert(bs->in_flight > 0);
    bs->in_flight--;
    aio_notify(aio_get_default());
}

uint32_t req_align(BlockDriverState *bs)
{
    return bs->bl.request_alignment ? bs->bl.request_alignment : 1;
}

static size_t mem_align(BlockDriverState *bs)
{
    return bs->bl.min_mem_alignment ? bs->bl.min_mem_alignment : 1;
}

static void *bdrv_blockalign(BlockDriverState *bs, size_t size)
{
    size_t align = MAX(mem_align(bs), sizeof(void *));
    void *p = NULL;

    align = MAX(align, bs->bl.opt_mem_alignment);
    if (posix_memalign(&p, align, size ? size : 1)) {
        return NULL;
    }
    return p;
}

/* The same checks QEMU applies to every request: -EIO for out-of-range. */
static int check_request(int64_t offset, int64_t bytes)
{
    if (offset < 0 || bytes < 0) {
        return -EIO;
    }
    if (bytes > BDRV_MAX_LENGTH || offset > BDRV_MAX_LENGTH ||
        offset > BDRV_MAX_LENGTH - bytes) {
        return -EIO;
    }
    return 0;
}

static BlockDriverState *child_bs(BdrvChild *child)
{
    return child ? child->bs : NULL;
}

/* Does every iovec element start and end on the node's memory alignment
 * (and the vector fit max_iov)?  Otherwise the core bounces.  Nodes that
 * take byte-granular requests (no O_DIRECT) never need aligned memory,
 * and neither do nodes with children: only a leaf's driver touches the
 * memory (formats and filters hand it down, and the leaf bounces). */
static bool qiov_is_aligned(BlockDriverState *bs, IOVector *qiov)
{
    size_t align = mem_align(bs);

    if (bs->bl.max_iov > 0 && qiov->niov > bs->bl.max_iov) {
        return false;
    }
    if (align <= 1 || req_align(bs) <= 1 || bs->children->len > 0) {
        return true;
    }
    for (int i = 0; i < qiov->niov; i++) {
        if ((uintptr_t)qiov->iov[i].iov_base % align ||
            qiov->iov[i].iov_len % align) {
            return false;
        }
    }
    return true;
}

bool is_filter(BlockDriverState *bs)
{
    return bs->drv && bs->drv->kind == BDRV_KIND_FILTER;
}

/* The driver's data path group; all-NULL members when it has none. */
const BlockDriverIO *io_of(BlockDriverState *bs)
{
    return bdrv_driver_io(bs->drv);
}

/* ---- tracked requests ---- */

static void tracked_begin(BdrvTrackedRequest *req, BlockDriverState *bs,
                          int64_t offset, int64_t bytes, TrackedType type)
{
    *req = (BdrvTrackedRequest) {
        .bs = bs, .offset = offset, .bytes = bytes, .type = type,
        .overlap_offset = offset, .overlap_bytes = bytes,
    };
    req->next = bs->tracked_head;
    if (bs->tracked_head) {
        bs->tracked_head->prev = req;
    }
    bs->tracked_head = req;
}

static void tracked_end(BdrvTrackedRequest *req)
{
    BlockDriverState *bs = req->bs;

    if (req->prev) {
        req->prev->next = req->next;
    } else {
        bs->tracked_head = req->next;
    }
    if (req->next) {
        req->next->prev = req->prev;
    }
    if (req->serialising) {
        bs->serialising_in_flight--;
    }
    co_queue_restart_all(&bs->tracked_wait);
}

static void make_serialising(BdrvTrackedRequest *req, uint64_t align)
{
    int64_t start = ROUND_DOWN(req->offset, (int64_t)align);
    int64_t end = ROUND_UP(req->offset + req->bytes, (int64_t)align);

    if (!req->serialising) {
        req->bs->serialising_in_flight++;
    }
    req->serialising = true;
    req->overlap_offset = MIN(req->overlap_offset, start);
    req->overlap_bytes = MAX(req->overlap_offset + req->overlap_bytes, end) -
                         req->overlap_offset;
}

static bool tracked_overlap(BdrvTrackedRequest *a, BdrvTrackedRequest *b)
{
    return a->overlap_offset < b->overlap_offset + b->overlap_bytes &&
           b->overlap_offset < a->overlap_offset + a->overlap_bytes;
}

/* An in-flight request we must wait for: both overlap and one of them is
 * serialising.  Requests that are themselves waiting do not count: they
 * wait for us already or will re-check when woken, so waits never cycle.
 * Newer requests count too (as in QEMU): an RMW write woken from its wait
 * lets a newer overlapping request that got going meanwhile finish first. */
static BdrvTrackedRequest *find_conflict(BdrvTrackedRequest *self)
{
    for (BdrvTrackedRequest *r = self->bs->tracked_head; r; r = r->next) {
        if (r == self || r->waiting) {
            continue;
        }
        if ((r->serialising || self->serialising) && tracked_overlap(r, self)) {
            return r;
        }
    }
    return NULL;
}

static void coroutine_fn wait_serialising(BdrvTrackedRequest *self)
{
    /* no conflict possible without a serialising request: skip the scan */
    if (!self->serialising && !self->bs->serialising_in_flight) {
        return;
    }
    while (find_conflict(self)) {
        self->waiting = true;
        co_queue_wait(&self->bs->tracked_wait, NULL);
        self->waiting = false;
    }
}

/* ---- length ---- */

/* Ask the driver (or the filtered child) for the current length and
 * cache it rounded up to whole sectors, as QEMU does. */
static int64_t coroutine_fn refresh_total_bytes(BlockDriverState *bs,
                                                int64_t hint)
{
    int64_t len = hint;

    if (io_of(bs)->co_getlength) {
        len = io_of(bs)->co_getlength(bs);
    } else if (is_filter(bs) && bdrv_filter_child(bs)) {
        len = bdrv_co_getlength(bdrv_filter_child(bs)->bs);
    }
    if (len < 0) {
        return len < -1 ? len : -ENOMEDIUM;
    }
    if (len > BDRV_MAX_LENGTH) {
        return -EFBIG;
    }
    bs->total_bytes = ROUND_UP(len, (int64_t)BDRV_SECTOR_SIZE);
    return bs->total_bytes;
}

int64_t coroutine_fn bdrv_co_getlength(BlockDriverState *bs)
{
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    if (bs->total_bytes >= 0) {
        return ROUND_UP(bs->total_bytes, (int64_t)BDRV_SECTOR_SIZE);
    }
    return refresh_total_bytes(bs, -1);
}

typedef struct LengthQuery {
    BlockDriverState *bs;
    int64_t len;
} LengthQuery;

static void coroutine_fn length_query_entry(void *opaque)
{
    LengthQuery *q = opaque;

    q->len = bdrv_co_getlength(q->bs);
}

int64_t bdrv_getlength(BlockDriverState *bs)
{
    LengthQuery q = { .bs = bs, .len = -EINVAL };

    co_run_sync(length_query_entry, &q);
    return q.len;
}

/* A write that ended past the cached length grew the node. */
static void grow_total_bytes(BlockDriverState *bs, int64_t end)
{
    end = ROUND_UP(end, (int64_t)BDRV_SECTOR_SIZE);
    if (bs->total_bytes >= 0 && end > bs->total_bytes) {
        bs->total_bytes = end;
    }
}

/* ---- layer C: the driver ---- */

static int coroutine_fn driver_preadv(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, IOVector *qiov,
                                      BdrvRequestFlags flags);
static int coroutine_fn driver_pwritev(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, IOVector *qiov,
                                       BdrvRequestFlags flags);

static int coroutine_fn flush_node(BlockDriverState *bs, bool fua);

/* FUA emulation.  The write is not yet counted in write_gen (that
 * happens when the request finishes), so the flush must not be skipped
 * for "nothing written". */
static int coroutine_fn flush_after_write(BlockDriverState *bs)
{
    return flush_node(bs, true);
}

/* Run one read or write through an aligned bounce buffer, in chunks. */
static int coroutine_fn driver_bounce(BlockDriverState *bs, bool write,
                                      int64_t offset, int64_t bytes,
                                      IOVector *qiov, BdrvRequestFlags flags)
{
    int64_t chunk = MAX(ROUND_DOWN((int64_t)MEM_BOUNCE_MAX, req_align(bs)),
                        (int64_t)req_align(bs));
    int64_t done = 0;
    int ret = 0;
    void *buf = bdrv_blockalign(bs, MIN(chunk, bytes));

    if (!buf) {
        return -ENOMEM;
    }
    while (done < bytes && ret == 0) {
        int64_t n = MIN(chunk, bytes - done);
        IOVector v;

        iov_vec_init_buf(&v, buf, n);
        if (write) {
            iov_vec_to_buf(qiov, done, buf, n);
            ret = driver_pwritev(bs, offset + done, n, &v, flags);
        } else {
            ret = driver_preadv(bs, offset + done, n, &v, flags);
            iov_vec_from_buf(qiov, done, buf, n);
        }
        done += n;
    }
    free(buf);
    return ret;
}

static int coroutine_fn driver_preadv(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, IOVector *qiov,
                                      BdrvRequestFlags flags)
{
    const BlockDriverIO *io = io_of(bs);

    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if (!qiov_is_aligned(bs, qiov)) {
        return driver_bounce(bs, false, offset, bytes, qiov, flags);
    }
    if (io->co_preadv) {
        return io->co_preadv(bs, offset, bytes, qiov, flags);
    }
    if (is_filter(bs) && bdrv_filter_child(bs)) {
        return bdrv_co_preadv(bdrv_filter_child(bs), offset, bytes, qiov,
                              flags);
    }
    return -ENOTSUP;
}

/* Dispatch a write to the driver; flags it does not honour are dropped
 * (FUA is then emulated by the caller). */
static int coroutine_fn driver_pwritev_raw(BlockDriverState *bs,
                                           int64_t offset, int64_t bytes,
                                           IOVector *qiov,
                                           BdrvRequestFlags flags)
{
    const BlockDriverIO *io = io_of(bs);

    if (io->co_pwritev) {
        return io->co_pwritev(bs, offset, bytes, qiov,
                              flags & bs->supported_write_flags);
    }
    if (is_filter(bs) && bdrv_filter_child(bs)) {
        return bdrv_co_pwritev(bdrv_filter_child(bs), offset, bytes, qiov,
                               flags);
    }
    return -ENOTSUP;
}

static bool passes_flags(BlockDriverState *bs)
{
    return !io_of(bs)->co_pwritev && is_filter(bs);
}

static int coroutine_fn driver_pwritev(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, IOVector *qiov,
                                       BdrvRequestFlags flags)
{
    bool emulate_fua;
    int ret;

    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if ((flags & BDRV_REQ_WRITE_COMPRESSED) && !passes_flags(bs) &&
        !(bs->supported_write_flags & BDRV_REQ_WRITE_COMPRESSED)) {
        return -ENOTSUP;
    }
    if (!qiov_is_aligned(bs, qiov)) {
        return driver_bounce(bs, true, offset, bytes, qiov, flags);
    }
    /* as QEMU: no flush emulates FUA for a compressed write (writethrough
     * qemu-io -c does not flush after each one) */
    emulate_fua = (flags & BDRV_REQ_FUA) && !passes_flags(bs) &&
                  !(flags & BDRV_REQ_WRITE_COMPRESSED) &&
                  !(bs->supported_write_flags & BDRV_REQ_FUA);
    ret = driver_pwritev_raw(bs, offset, bytes, qiov, flags);
    if (ret == 0 && emulate_fua) {
        ret = flush_after_write(bs);
    }
    return ret;
}

/* ---- layer B: aligned requests ---- */

static int64_t max_transfer(BlockDriverState *bs)
{
    int64_t mt = bs->bl.max_transfer ? (int64_t)bs->bl.max_transfer
                                     : BDRV_REQUEST_MAX_BYTES;

    mt = MIN(mt, (int64_t)BDRV_REQUEST_MAX_BYTES);
    return MAX(ROUND_DOWN(mt, (int64_t)req_align(bs)), (int64_t)req_align(bs));
}

/* Read [offset, offset+bytes) (aligned): zeroes past EOF, split by
 * max_transfer. */
static int coroutine_fn aligned_preadv(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, IOVector *qiov,
                                       BdrvRequestFlags flags)
{
    int64_t total = bdrv_co_getlength(bs);
    int64_t max_bytes, mt = max_transfer(bs), done = 0;

    if (total < 0) {
        return total;
    }
    max_bytes = ROUND_UP(MAX(0, total - offset), (int64_t)req_align(bs));
    while (done < bytes) {
        int64_t n = MIN(bytes - done, MIN(MAX(max_bytes - done, 0), mt));
        IOVector slice;
        int ret;

        if (n <= 0) {
            iov_vec_memset(qiov, done, 0, bytes - done);
            break;
        }
        iov_vec_init_slice(&slice, qiov, done, n);
        ret = driver_preadv(bs, offset + done, n, &slice, flags);
        iov_vec_destroy(&slice);
        if (ret < 0) {
            return ret;
        }
        done += n;
    }
    return 0;
}

static int coroutine_fn aligned_pwritev_data(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             IOVector *qiov,
                                             BdrvRequestFlags flags)
{
    int64_t mt = max_transfer(bs), done = 0;
    int ret = 0;

    while (done < bytes && ret == 0) {
        int64_t n = MIN(bytes - done, mt);
        IOVector slice;

        iov_vec_init_slice(&slice, qiov, done, n);
        ret = driver_pwritev(bs, offset + done, n, &slice,
                             flags & ~BDRV_REQ_ZERO_WRITE);
        iov_vec_destroy(&slice);
        done += n;
    }
    return ret;
}

/* Write zeroes from a zeroed buffer, for drivers without (efficient)
 * write-zeroes support. */
static int coroutine_fn zero_fallback(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags)
{
    int64_t chunk = MIN((int64_t)ZERO_BOUNCE_MAX, max_transfer(bs));
    int64_t done = 0;
    void *buf;
    int ret = 0;

    chunk = MAX(ROUND_DOWN(chunk, (int64_t)req_align(bs)),
                (int64_t)req_align(bs));
    buf = bdrv_blockalign(bs, MIN(chunk, bytes));
    if (!buf) {
        return -ENOMEM;
    }
    memset(buf, 0, MIN(chunk, bytes));
    flags &= ~(BDRV_REQ_ZERO_WRITE | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK);
    while (done < bytes && ret == 0) {
        int64_t n = MIN(chunk, bytes - done);
        IOVector v;

        iov_vec_init_buf(&v, buf, n);
        ret = driver_pwritev(bs, offset + done, n, &v, flags);
        done += n;
    }
    free(buf);
    return ret;
}

/* The next piece of a zero write: unaligned heads and tails go alone so
 * drivers see the bulk aligned to pwrite_zeroes_alignment. */
static int64_t zero_piece(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    int64_t align = bs->bl.pwrite_zeroes_alignment ?
                    (int64_t)bs->bl.pwrite_zeroes_alignment : req_align(bs);
    int64_t maxz = bs->bl.max_pwrite_zeroes ?
                   (int64_t)bs->bl.max_pwrite_zeroes : BDRV_REQUEST_MAX_BYTES;
    int64_t head = offset % align, tail = (offset + bytes) % align;
    int64_t num = bytes;

    maxz = MIN(maxz, (int64_t)BDRV_REQUEST_MAX_BYTES);
    maxz = MAX(ROUND_DOWN(maxz, align), align);
    if (head) {
        num = MIN(bytes, align - head);
    } else if (tail && num > align) {
        num -= tail;
    }
    return MIN(num, maxz);
}

static int coroutine_fn driver_pwrite_zeroes(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes,
                                             BdrvRequestFlags flags)
{
    const BlockDriverIO *io = io_of(bs);
    int ret = -ENOTSUP;

    /* no fallback allowed, and the node cannot promise an efficient way:
     * refuse here rather than let a layer below fall back */
    if ((flags & BDRV_REQ_NO_FALLBACK) &&
        !(bs->supported_zero_flags & BDRV_REQ_NO_FALLBACK)) {
        return -ENOTSUP;
    }
    if (io->co_pwrite_zeroes) {
        ret = io->co_pwrite_zeroes(bs, offset, bytes,
                                   flags & bs->supported_zero_flags);
    } else if (is_filter(bs) && bdrv_filter_child(bs)) {
        return bdrv_co_pwrite_zeroes(bdrv_filter_child(bs), offset, bytes,
                                     flags & ~BDRV_REQ_ZERO_WRITE);
    }
    if (ret == -ENOTSUP && !(flags & BDRV_REQ_NO_FALLBACK)) {
        return zero_fallback(bs, offset, bytes, flags);
    }
    if (ret == 0 && (flags & BDRV_REQ_FUA) &&
        !(bs->supported_zero_flags & BDRV_REQ_FUA)) {
        ret = flush_after_write(bs);
    }
    return ret;
}

static int coroutine_fn aligned_pwrite_zeroes(BlockDriverState *bs,
                                              int64_t offset, int64_t bytes,
                                              BdrvRequestFlags flags)
{
    int ret = 0;

    while (bytes > 0 && ret == 0) {
        int64_t num = zero_piece(bs, offset, bytes);

        ret = driver_pwrite_zeroes(bs, offset, num, flags);
        offset += num;
        bytes -= num;
    }
    return ret;
}

/* detect-zeroes: a buffer of zeroes becomes a write-zeroes request. */
static BdrvRequestFlags detect_zeroes(BlockDriverState *bs, IOVector *qiov,
                                      int64_t bytes, BdrvRequestFlags flags)
{
    if (bs->detect_zeroes == DETECT_ZEROES_OFF || !qiov ||
        (flags & (BDRV_REQ_ZERO_WRITE | BDRV_REQ_WRITE_COMPRESSED)) ||
        !iov_vec_is_zero(qiov, 0, bytes)) {
        return flags;
    }
    flags |= BDRV_REQ_ZERO_WRITE;
    if (bs->detect_zeroes == DETECT_ZEROES_UNMAP &&
        (bs->open_flags & BDRV_O_UNMAP)) {
        flags |= BDRV_REQ_MAY_UNMAP;
    }
    return flags;
}

/* After any modifying request: generation, cache and length bookkeeping. */
static void write_finish(BlockDriverState *bs, int64_t offset, int64_t bytes,
                         TrackedType type, int ret)
{
    bs->write_gen++;
    bsc_invalidate_range(bs, offset, bytes);
    bdrv_dirty_bitmaps_mark(bs, offset, bytes);
    if (ret == 0 && type == TRACKED_WRITE) {
        grow_total_bytes(bs, offset + bytes);
    }
}

static int coroutine_fn aligned_pwritev(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes, IOVector *qiov,
                                        BdrvRequestFlags flags)
{
    int ret;

    flags = detect_zeroes(bs, qiov, bytes, flags);
    bsc_invalidate_range(bs, offset, bytes);
    if (flags & BDRV_REQ_ZERO_WRITE) {
        bdrv_debug_event_node(bs, BLKDBG_PWRITEV_ZERO);
        ret = aligned_pwrite_zeroes(bs, offset, bytes, flags);
    } else {
        if (!(flags & BDRV_REQ_WRITE_COMPRESSED)) {
            bdrv_debug_event_node(bs, BLKDBG_PWRITEV);
        }
        ret = aligned_pwritev_data(bs, offset, bytes, qiov, flags);
    }
    bdrv_debug_event_node(bs, BLKDBG_PWRITEV_DONE);
    write_finish(bs, offset, bytes, TRACKED_WRITE, ret);
    return ret;
}

/* ---- layer A ---- */

/* Padding of an unaligned request to the node's request alignment.  The
 * partially covered first and last blocks share one buffer: two blocks
 * when both ends are partial and the request spans more than one block,
 * else one.  @merged: the padded request is exactly that buffer, so one
 * read fetches both ends (as in QEMU, where this decides which RMW debug
 * events fire). */
typedef struct Padding {
    int64_t start, end;            /* the aligned range */
    int64_t head, tail;            /* bytes added before / after */
    int64_t align, buf_len;
    uint8_t *buf, *tail_buf;
    bool merged;
    IOVector v;                    /* the padded vector */
    IOVector collapsed;            /* caller's elements merged into bounce */
    uint8_t *bounce;
} Padding;

/* Work out the padding of [offset, offset+bytes); false on ENOMEM. */
static bool pad_init(BlockDriverState *bs, Padding *p, int64_t offset,
                     int64_t bytes)
{
    *p = (Padding) { .align = req_align(bs) };
    p->start = ROUND_DOWN(offset, p->align);
    p->end = ROUND_UP(offset + bytes, p->align);
    p->head = offset - p->start;
    p->tail = p->end - (offset + bytes);
    p->buf_len = p->align;
    if (p->head && p->tail && p->end - p->start > p->align) {
        p->buf_len = 2 * p->align;
    }
    p->merged = p->end - p->start == p->buf_len;
    p->buf = bdrv_blockalign(bs, p->buf_len);
    p->tail_buf = p->buf ? p->buf + p->buf_len - p->align : NULL;
    return p->buf != NULL;
}

/* Stand in for the first @count elements of @body with one bounce buffer
 * (holding their data already for a write). */
static int pad_collapse(BlockDriverState *bs, Padding *p, IOVector *body,
                        int count, bool write)
{
    iov_vec_init(&p->collapsed, count);
    for (int i = 0; i < count; i++) {
        iov_vec_add(&p->collapsed, body->iov[i].iov_base,
                    body->iov[i].iov_len);
    }
    p->bounce = bdrv_blockalign(bs, p->collapsed.size);
    if (!p->bounce) {
        return -ENOMEM;
    }
    if (write) {
        iov_vec_to_buf(&p->collapsed, 0, p->bounce, p->collapsed.size);
    }
    iov_vec_add(&p->v, p->bounce, p->collapsed.size);
    return 0;
}

/* The padded vector: head pad + the caller's [0, bytes) + tail pad.
 * preadv/pwritev take at most IOV_MAX elements, so when the pads push a
 * full vector over that, the fewest leading elements that make it fit
 * are merged into a bounce buffer (copied back by pad_finish on reads). */
static int pad_build_vector(BlockDriverState *bs, Padding *p, IOVector *qiov,
                            int64_t bytes, bool write)
{
    int extra = (p->head > 0) + (p->tail > 0);
    int skip = 0, ret = 0;
    IOVector body;

    iov_vec_init_slice(&body, qiov, 0, bytes);
    iov_vec_init(&p->v, MIN(body.niov + extra, IOV_MAX));
    if (p->head) {
        iov_vec_add(&p->v, p->buf, p->head);
    }
    if (body.niov + extra > IOV_MAX) {
        skip = body.niov + extra - IOV_MAX + 1;
        ret = pad_collapse(bs, p, &body, skip, write);
    }
    for (int i = skip; i < body.niov && ret == 0; i++) {
        iov_vec_add(&p->v, body.iov[i].iov_base, body.iov[i].iov_len);
    }
    if (p->tail) {
        iov_vec_add(&p->v, p->tail_buf + (p->align - p->tail), p->tail);
    }
    iov_vec_destroy(&body);
    return ret;
}

/* @read_done: a read succeeded, hand the bounced part to the caller. */
static void pad_finish(Padding *p, bool read_done)
{
    if (p->bounce && read_done) {
        iov_vec_from_buf(&p->collapsed, 0, p->bounce, p->collapsed.size);
    }
    free(p->bounce);
    free(p->buf);
    iov_vec_destroy(&p->collapsed);
    iov_vec_destroy(&p->v);
}

/* An unaligned read: the partial first and last blocks go to the pad
 * buffer, the caller's own buffer takes the middle (no copy, no
 * allocation the size of the request). */
static int coroutine_fn preadv_padded(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, IOVector *qiov,
                                      BdrvRequestFlags flags)
{
    Padding p;
    int ret = -ENOMEM;

    if (pad_init(bs, &p, offset, bytes)) {
        ret = pad_build_vector(bs, &p, qiov, bytes, false);
    }
    if (ret == 0) {
        ret = aligned_preadv(bs, p.start, p.end - p.start, &p.v, flags);
    }
    pad_finish(&p, ret == 0);
    return ret;
}

/* ---- copy-on-read ---- */

/* Copy-on-read copies at most this much at a time (the reference's bound
 * on its bounce buffer). */
#define COR_CHUNK_MAX       (16 * MiB)

/* Copy-on-read copies whole clusters (subclusters where the format has
 * them): the format allocates no less. */
static int64_t cor_align(BlockDriverState *bs)
{
    BlockDriverInfo bdi;
    int64_t align = req_align(bs);

    if (bdrv_get_info(bs, &bdi) == 0 && bdi.cluster_size > 0) {
        align = MAX(align, (int64_t)(bdi.subcluster_size ?
                                     bdi.subcluster_size : bdi.cluster_size));
    }
    return align;
}

/* A read of the node's own view at any alignment. */
static int coroutine_fn read_any(BlockDriverState *bs, int64_t offset,
                                 int64_t bytes, IOVector *qiov,
                                 BdrvRequestFlags flags)
{
    uint32_t align = req_align(bs);

    if (IS_ALIGNED(offset, align) && IS_ALIGNED(bytes, align)) {
        return aligned_preadv(bs, offset, bytes, qiov, flags);
    }
    return preadv_padded(bs, offset, bytes, qiov, flags);
}

/* Data of an unallocated range: read through the node (its driver takes
 * it from the backing chain) and write it back as the node's own, zeroes
 * as a zero write where the driver has one.  The write is part of the
 * caller's tracked read, which serialises against overlapping writes. */
static int coroutine_fn cor_copy(BlockDriverState *bs, int64_t offset,
                                 int64_t bytes, uint8_t *buf)
{
    uint32_t align = req_align(bs);
    BdrvRequestFlags wflags = 0;
    IOVector v;
    int ret;

    iov_vec_init_buf(&v, buf, bytes);
    ret = read_any(bs, offset, bytes, &v, 0);
    if (ret == 0 && IS_ALIGNED(offset, align) && IS_ALIGNED(bytes, align)) {
        if (bdrv_driver_io(bs->drv)->co_pwrite_zeroes && iov_vec_is_zero(&v, 0, bytes)) {
            wflags = BDRV_REQ_ZERO_WRITE;
        }
        bdrv_debug_event_node(bs, BLKDBG_COR_WRITE);
        ret = aligned_pwritev(bs, offset, bytes, &v, wflags);
    }
    iov_vec_destroy(&v);
    return ret;
}

typedef struct CorRead {
    BlockDriverState *bs;
    IOVector *qiov;
    int64_t bytes;           /* the caller's request ... */
    int64_t skip;            /* ... starts this far into the next piece */
    int64_t progress;        /* bytes of it done */
    bool prefetch;
    BdrvRequestFlags flags;
    uint8_t *bounce;
} CorRead;

/* One piece [start, start+pnum) of the cluster-aligned range: copied when
 * unallocated, read directly when allocated; the caller's part of it
 * lands in the caller's vector. */
static int coroutine_fn cor_piece(CorRead *c, int64_t start, int64_t pnum,
                                  bool allocated)
{
    int64_t n = c->skip < pnum ? MIN(pnum - c->skip, c->bytes - c->progress)
                               : 0;
    int ret = 0;

    if (!allocated) {
        ret = cor_copy(c->bs, start, pnum, c->bounce);
        if (ret == 0 && !c->prefetch && n > 0) {
            iov_vec_from_buf(c->qiov, c->progress, c->bounce + c->skip, n);
        }
    } else if (!c->prefetch && n > 0) {
        IOVector slice;
        iov_vec_init_slice(&slice, c->qiov, c->progress, n);
        ret = read_any(c->bs, start + c->skip, n, &slice, c->flags);
        iov_vec_destroy(&slice);
    }
    c->progress += MAX(n, 0);
    c->skip = MAX(c->skip - pnum, 0);
    return ret;
}

/* A copy-on-read request, the reference's way: the range grows to whole
 * clusters; pieces not allocated in this node are copied into it; past
 * the end of the image the caller reads zeroes. */
static int coroutine_fn cor_preadv(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, IOVector *qiov,
                                   BdrvRequestFlags flags)
{
    int64_t align = cor_align(bs);
    int64_t start = ROUND_DOWN(offset, align);
    int64_t end = ROUND_UP(offset + bytes, align);
    CorRead c = {
        .bs = bs, .qiov = qiov, .bytes = bytes, .skip = offset - start,
        .prefetch = flags & BDRV_REQ_PREFETCH,
        .flags = flags & ~(BDRV_REQ_COPY_ON_READ | BDRV_REQ_PREFETCH),
    };
    int ret = 0;

    c.bounce = bdrv_blockalign(bs, MIN(end - start, COR_CHUNK_MAX));
    if (!c.bounce) {
        return -ENOMEM;
    }
    while (start < end && ret == 0) {
        int64_t pnum;
        int alloc = bdrv_co_is_allocated(bs, start,
                                         MIN(end - start, COR_CHUNK_MAX),
                                         &pnum);
        if (alloc < 0) {
            /* the read will fail with a better error, if at all */
            pnum = MIN(end - start, COR_CHUNK_MAX);
            alloc = 0;
        }
        if (pnum == 0) {
            break;          /* the image ends inside the last cluster */
        }
        ret = cor_piece(&c, start, pnum, alloc > 0);
        start += pnum;
    }
    if (ret == 0 && !c.prefetch && c.progress < bytes) {
        iov_vec_memset(qiov, c.progress, 0, bytes - c.progress);
    }
    free(c.bounce);
    return ret;
}

int coroutine_fn bdrv_co_preadv(BdrvChild *child, int64_t offset, int64_t bytes,
                                IOVector *qiov, BdrvRequestFlags flags)
{
    BlockDriverState *bs = child_bs(child);
    uint32_t align;
    BdrvTrackedRequest req;
    int ret;

    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    ret = check_request(offset, bytes);
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    align = req_align(bs);
    bdrv_inc_in_flight(bs);
    tracked_begin(&req, bs, offset, bytes, TRACKED_READ);
    if (flags & BDRV_REQ_SERIALISING) {
        make_serialising(&req, align);
    }
    if (bs->open_flags & BDRV_O_COPY_ON_READ) {
        flags |= BDRV_REQ_COPY_ON_READ;
    }
    if (flags & BDRV_REQ_COPY_ON_READ) {
        /* no write may slip between reading a cluster and copying it */
        make_serialising(&req, cor_align(bs));
    }
    /* even a plain read waits for an overlapping read-modify-write, so it
     * never sees the block half updated */
    wait_serialising(&req);
    flags &= ~BDRV_REQ_SERIALISING;
    if (flags & BDRV_REQ_COPY_ON_READ) {
        ret = cor_preadv(bs, offset, bytes, qiov, flags);
    } else if (IS_ALIGNED(offset, align) && IS_ALIGNED(bytes, align)) {
        ret = aligned_preadv(bs, offset, bytes, qiov, flags);
    } else {
        ret = preadv_padded(bs, offset, bytes, qiov, flags);
    }
    tracked_end(&req);
    bdrv_dec_in_flight(bs);
    return ret;
}

static int coroutine_fn pad_read_at(BlockDriverState *bs, int64_t offset,
                                    uint8_t *buf, int64_t len)
{
    IOVector v;

    iov_vec_init_buf(&v, buf, len);
    return aligned_preadv(bs, offset, len, &v, 0);
}

/* Read the partial first/last blocks before a write.  The pwritev_rmw_*
 * events bracket each read, as in QEMU: a merged padding is one read
 * inside both pairs. */
static int coroutine_fn pad_rmw_read(BlockDriverState *bs, Padding *p)
{
    bool tail_too = p->merged && p->tail;
    int ret;

    if (p->head || p->merged) {
        if (p->head) {
            bdrv_debug_event_node(bs, BLKDBG_PWRITEV_RMW_HEAD);
        }
        if (tail_too) {
            bdrv_debug_event_node(bs, BLKDBG_PWRITEV_RMW_TAIL);
        }
        ret = pad_read_at(bs, p->start, p->buf,
                          p->merged ? p->buf_len : p->align);
        if (ret < 0) {
            return ret;
        }
        if (p->head) {
            bdrv_debug_event_node(bs, BLKDBG_PWRITEV_RMW_AFTER_HEAD);
        }
        if (tail_too) {
            bdrv_debug_event_node(bs, BLKDBG_PWRITEV_RMW_AFTER_TAIL);
        }
        if (p->merged) {
            return 0;
        }
    }
    if (!p->tail) {
        return 0;
    }
    bdrv_debug_event_node(bs, BLKDBG_PWRITEV_RMW_TAIL);
    ret = pad_read_at(bs, p->end - p->align, p->tail_buf, p->align);
    if (ret == 0) {
        bdrv_debug_event_node(bs, BLKDBG_PWRITEV_RMW_AFTER_TAIL);
    }
    return ret;
}

/* Unaligned data write: padded vector = head part + data + tail part. */
static int coroutine_fn pad_write_data(BlockDriverState *bs, Padding *p,
                                       int64_t bytes, IOVector *qiov,
                                       BdrvRequestFlags flags)
{
    int ret = pad_build_vector(bs, p, qiov, bytes, true);

    if (ret == 0) {
        ret = aligned_pwritev(bs, p->start, p->end - p->start, &p->v, flags);
    }
    return ret;
}

static int coroutine_fn pad_write_block(BlockDriverState *bs, int64_t offset,
                                        uint8_t *buf, int64_t len,
                                        BdrvRequestFlags flags)
{
    IOVector v;

    iov_vec_init_buf(&v, buf, len);
    return aligned_pwritev(bs, offset, len, &v, flags);
}

/* Unaligned zero write: the padding blocks, zeroed where the request
 * covers them, are written as data (both in one write when merged), the
 * aligned middle as zeroes. */
static int coroutine_fn pad_write_zeroes(BlockDriverState *bs, Padding *p,
                                         int64_t offset, int64_t bytes,
                                         BdrvRequestFlags flags)
{
    int64_t end = offset + bytes, mid_end = ROUND_DOWN(end, p->align);
    BdrvRequestFlags dflags = flags & ~(BDRV_REQ_ZERO_WRITE |
                                        BDRV_REQ_MAY_UNMAP |
                                        BDRV_REQ_NO_FALLBACK);
    int ret = 0;

    if (p->head || p->merged) {
        int64_t len = p->merged ? p->buf_len : p->align;

        memset(p->buf + p->head, 0, MIN(end, p->start + len) - offset);
        ret = pad_write_block(bs, p->start, p->buf, len, dflags);
        if (ret < 0 || p->merged) {
            return ret;
        }
        offset = p->start + p->align;
    }
    if (mid_end > offset) {
        ret = aligned_pwritev(bs, offset, mid_end - offset, NULL, flags);
    }
    if (ret == 0 && p->tail) {
        memset(p->tail_buf, 0, p->align - p->tail);
        ret = pad_write_block(bs, p->end - p->align, p->tail_buf, p->align,
                              dflags);
    }
    return ret;
}

/* NO_FALLBACK zero writes cannot be padded (padding writes data). */
static int coroutine_fn pwritev_unaligned(BlockDriverState *bs,
                                          BdrvTrackedRequest *req,
                                          int64_t offset, int64_t bytes,
                                          IOVector *qiov,
                                          BdrvRequestFlags flags)
{
    Padding p;
    int ret = -ENOMEM;

    if ((flags & BDRV_REQ_ZERO_WRITE) && (flags & BDRV_REQ_NO_FALLBACK)) {
        return -ENOTSUP;
    }
    if (pad_init(bs, &p, offset, bytes)) {
        make_serialising(req, p.align);
        wait_serialising(req);
        ret = pad_rmw_read(bs, &p);
    }
    if (ret == 0 && (flags & BDRV_REQ_ZERO_WRITE)) {
        ret = pad_write_zeroes(bs, &p, offset, bytes, flags);
    } else if (ret == 0) {
        ret = pad_write_data(bs, &p, bytes, qiov, flags);
    }
    pad_finish(&p, false);
    return ret;
}

static int write_check(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    if (bs->read_only) {
        return -EPERM;
    }
    return check_request(offset, bytes);
}

/* Can a compressed write reach a node that stores it compressed? */
static bool can_compress(BlockDriverState *bs)
{
    while (bs && bs->drv && passes_flags(bs) && bdrv_filter_child(bs)) {
        bs = bdrv_filter_child(bs)->bs;
    }
    return bs && (bs->supported_write_flags & BDRV_REQ_WRITE_COMPRESSED);
}

/* An empty compressed write goes to the node that compresses: after a
 * stream of compressed writes it may tidy up (qcow2 aligns the end of its
 * file to a sector, as QEMU's does). */
static int coroutine_fn compressed_end(BlockDriverState *bs, IOVector *qiov)
{
    while (passes_flags(bs) && bdrv_filter_child(bs)) {
        bs = bdrv_filter_child(bs)->bs;
    }
    return bdrv_driver_io(bs->drv)->co_pwritev(bs, 0, 0, qiov, BDRV_REQ_WRITE_COMPRESSED);
}

int coroutine_fn bdrv_co_pwritev(BdrvChild *child, int64_t offset,
                                 int64_t bytes, IOVector *qiov,
                                 BdrvRequestFlags flags)
{
    BlockDriverState *bs = child_bs(child);
    uint32_t align;
    BdrvTrackedRequest req;
    int ret = write_check(bs, offset, bytes);

    if (ret == 0 && bytes == 0 && (flags & BDRV_REQ_WRITE_COMPRESSED)) {
        /* even an empty compressed write fails where nothing compresses,
         * as QEMU; where something does, it is the end-of-stream mark */
        return can_compress(bs) ? compressed_end(bs, qiov) : -ENOTSUP;
    }
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    align = req_align(bs);
    bdrv_inc_in_flight(bs);
    tracked_begin(&req, bs, offset, bytes, TRACKED_WRITE);
    if (flags & BDRV_REQ_SERIALISING) {
        make_serialising(&req, align);
    }
    flags &= ~BDRV_REQ_SERIALISING;
    if (IS_ALIGNED(offset, align) && IS_ALIGNED(bytes, align)) {
        wait_serialising(&req);
        ret = aligned_pwritev(bs, offset, bytes, qiov, flags);
    } else {
        ret = pwritev_unaligned(bs, &req, offset, bytes, qiov, flags);
    }
    tracked_end(&req);
    bdrv_dec_in_flight(bs);
    return ret;
}

int coroutine_fn bdrv_co_pwrite_zeroes(BdrvChild *child, int64_t offset,
                                       int64_t bytes, BdrvRequestFlags flags)
{
    BlockDriverState *bs = child_bs(child);

    if (bs && !(bs->open_flags & BDRV_O_UNMAP)) {
        flags &= ~BDRV_REQ_MAY_UNMAP;
    }
    return bdrv_co_pwritev(child, offset, bytes, NULL,
                           flags | BDRV_REQ_ZERO_WRITE);
}

/* ---- discard ---- */

/*
 * The next discard piece.  Discard is advisory, but a driver may still
 * honour a piece below its granularity (a file punches any byte range),
 * so everything goes down, cut so that the bulk is aligned to the
 * discard granularity: the unaligned head alone (its part below the
 * request alignment first), the bulk, then the tail (likewise), each at
 * most max_pdiscard.
 */
static int64_t discard_piece(BlockDriverState *bs, int64_t offset,
                             int64_t bytes)
{
    int64_t ra = req_align(bs);
    int64_t align = MAX((int64_t)bs->bl.pdiscard_alignment, ra);
    int64_t maxd = bs->bl.max_pdiscard ? (int64_t)bs->bl.max_pdiscard
                                       : BDRV_MAX_LENGTH;
    int64_t head = offset % align, tail = (offset + bytes) % align;
    int64_t num = bytes;

    maxd = MAX(ROUND_DOWN(maxd, align), align);
    if (head) {
        num = MIN(bytes, align - head);
        if (num % ra) {
            num %= ra;
        }
    } else if (tail && num > align) {
        num -= tail;
    } else if (tail % ra && tail > ra) {
        num -= tail % ra;
    }
    return MIN(num, maxd);
}

static int coroutine_fn driver_pdiscard(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes)
{
    int ret = -ENOTSUP;

    if (io_of(bs)->co_pdiscard) {
        ret = io_of(bs)->co_pdiscard(bs, offset, bytes);
    } else if (is_filter(bs) && bdrv_filter_child(bs)) {
        ret = bdrv_co_pdiscard(bdrv_filter_child(bs), offset, bytes);
    }
    return ret == -ENOTSUP ? 0 : ret;
}

int coroutine_fn bdrv_co_pdiscard(BdrvChild *child, int64_t offset,
                                  int64_t bytes)
{
    BlockDriverState *bs = child_bs(child);
    BdrvTrackedRequest req;
    int64_t off = offset, left = bytes;
    int ret = write_check(bs, offset, bytes);

    if (ret < 0 || bytes == 0 || !(bs->open_flags & BDRV_O_UNMAP)) {
        return ret;
    }
    bdrv_inc_in_flight(bs);
    tracked_begin(&req, bs, offset, bytes, TRACKED_DISCARD);
    wait_serialising(&req);
    bsc_invalidate_range(bs, offset, bytes);
    while (left > 0 && ret == 0) {
        int64_t num = discard_piece(bs, off, left);

        ret = driver_pdiscard(bs, off, num);
        off += num;
        left -= num;
    }
    write_finish(bs, offset, bytes, TRACKED_DISCARD, ret);
    tracked_end(&req);
    bdrv_dec_in_flight(bs);
    return ret;
}

/* ---- flush ---- */

/* Flush every child (a read-only child returns at once). */
static int coroutine_fn flush_children(BlockDriverState *bs)
{
    int ret = 0;

    for (unsigned i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        int r = bdrv_co_flush(c->bs);

        if (ret == 0) {
            ret = r;
        }
    }
    return ret;
}

/* This node's own flush: to the OS always, to disk unless cache=unsafe
 * or nothing was written since the last successful flush.  The debug
 * events go to the primary child, where a blkdebug node may listen; as in
 * QEMU, flush_to_disk fires only if counted writes are unflushed, so a
 * FUA-emulating flush (@force) does not fire it for the write it covers. */
static int coroutine_fn flush_self(BlockDriverState *bs, uint64_t gen,
                                   bool force)
{
    const BlockDriverIO *io = io_of(bs);
    BdrvChild *primary = bs->file ? bs->file : bdrv_filter_child(bs);
    int ret = 0;

    bdrv_debug_event(primary, BLKDBG_FLUSH_TO_OS);
    if (io->co_flush_to_os) {
        ret = io->co_flush_to_os(bs);
        if (ret < 0) {
            return ret;
        }
    }
    if (bs->open_flags & BDRV_O_NO_FLUSH) {
        return 0;
    }
    if (bs->flushed_gen != gen) {
        bdrv_debug_event(primary, BLKDBG_FLUSH_TO_DISK);
    } else if (!force) {
        return 0;
    }
    return io->co_flush_to_disk ? io->co_flush_to_disk(bs) : 0;
}

/* Flush @bs and its children.  @fua: called right after a write that is
 * not yet counted in write_gen; flush even if the counters say clean. */
static int coroutine_fn flush_node(BlockDriverState *bs, bool fua)
{
    uint64_t gen;
    int ret;

    if (!bs || !bs->drv || bs->read_only) {
        return 0;
    }
    bdrv_inc_in_flight(bs);
    while (bs->flush_active) {
        co_queue_wait(&bs->flush_queue, NULL);
    }
    bs->flush_active = true;
    gen = bs->write_gen;
    if (io_of(bs)->co_flush) {
        ret = io_of(bs)->co_flush(bs);
    } else {
        ret = flush_self(bs, gen, fua);
        if (ret == 0) {
            ret = flush_children(bs);
        }
    }
    if (ret == 0 && gen > bs->flushed_gen) {
        bs->flushed_gen = gen;
    }
    bs->flush_active = false;
    co_queue_next(&bs->flush_queue);
    bdrv_dec_in_flight(bs);
    return ret;
}

int coroutine_fn bdrv_co_flush(BlockDriverState *bs)
{
    return flush_node(bs, false);
}

/* ---- truncate ---- */

static BdrvRequestFlags truncate_zero_flag(BlockDriverState *bs,
                                           int64_t old_size, int64_t offset)
{
    int64_t backing_len;

    if (offset <= old_size || !bs->backing) {
        return 0;
    }
    backing_len = bdrv_co_getlength(bs->backing->bs);
    return backing_len > old_size ? BDRV_REQ_ZERO_WRITE : 0;
}

static int coroutine_fn truncate_driver(BlockDriverState *bs, int64_t offset,
                                        bool exact, PreallocMode prealloc,
                                        BdrvRequestFlags flags, Error **errp)
{
    const BlockDriverIO *io = io_of(bs);

    if (io->co_truncate) {
        if (flags & ~bs->supported_truncate_flags) {
            error_setg(errp, "Block driver does not support requested flags");
            return -ENOTSUP;
        }
        return io->co_truncate(bs, offset, exact, prealloc, flags, errp);
    }
    if (is_filter(bs) && bdrv_filter_child(bs)) {
        return bdrv_co_truncate(bdrv_filter_child(bs), offset, exact,
                                prealloc, flags, errp);
    }
    error_setg(errp, "Image format driver does not support resize");
    return -ENOTSUP;
}

static int truncate_check(BlockDriverState *bs, int64_t offset, Error **errp)
{
    if (!bs || !bs->drv) {
        error_setg(errp, "No medium inserted");
        return -ENOMEDIUM;
    }
    if (offset < 0) {
        error_setg(errp, "Image size cannot be negative");
        return -EINVAL;
    }
    if (offset > BDRV_MAX_LENGTH) {
        error_setg(errp, "offset(%" PRId64 ") exceeds maximum(%" PRId64 ")",
                   offset, (int64_t)BDRV_MAX_LENGTH);
        return -EIO;
    }
    if (bs->read_only) {
        error_setg(errp, "Image is read-only");
        return -EACCES;
    }
    return 0;
}

int coroutine_fn bdrv_co_truncate(BdrvChild *child, int64_t offset, bool exact,
                                  PreallocMode prealloc, BdrvRequestFlags flags,
                                  Error **errp)
{
    BlockDriverState *bs = child_bs(child);
    BdrvTrackedRequest req;
    int64_t old_size, new_bytes;
    int ret = truncate_check(bs, offset, errp);

    if (ret < 0) {
        return ret;
    }
    old_size = bdrv_co_getlength(bs);
    if (old_size < 0) {
        error_setg_errno(errp, (int)-old_size, "Failed to get old image size");
        return (int)old_size;
    }
    new_bytes = MAX(offset - old_size, 0);
    bdrv_inc_in_flight(bs);
    tracked_begin(&req, bs, offset - new_bytes, new_bytes, TRACKED_TRUNCATE);
    if (new_bytes) {
        make_serialising(&req, 1);
    }
    wait_serialising(&req);
    flags |= truncate_zero_flag(bs, old_size, offset);
    ret = truncate_driver(bs, offset, exact, prealloc, flags, errp);
    if (ret == 0) {
        int64_t r = refresh_total_bytes(bs, offset);
        if (r < 0) {
            error_setg_errno(errp, (int)-r, "Could not refresh total sector count");
            ret = (int)r;
        }
    }
    bdrv_bsc_invalidate(bs);
    if (ret == 0) {
        bdrv_dirty_bitmaps_truncate(bs, bs->total_bytes);
    }
    bs->write_gen++;
    tracked_end(&req);
    bdrv_dec_in_flight(bs);
    return ret;
}

/* ---- allocated file size ---- */

static int64_t coroutine_fn sum_allocated(BlockDriverState *bs)
{
    int64_t sum = 0;

    for (unsigned i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        int64_t n;

        if (!(c->role & (BDRV_CHILD_DATA | BDRV_CHILD_METADATA |
                         BDRV_CHILD_FILTERED))) {
            continue;
        }
        n = bdrv_co_get_allocated_file_size(c->bs);
        if (n < 0) {
            return n;
        }
        sum += n;
    }
    return sum;
}

int64_t coroutine_fn bdrv_co_get_allocated_file_size(BlockDriverState *bs)
{
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    if (io_of(bs)->co_get_allocated_file_size) {
        return io_of(bs)->co_get_allocated_file_size(bs);
    }
    if (bs->drv->kind == BDRV_KIND_PROTOCOL) {
        return -ENOTSUP;
    }
    if (is_filter(bs)) {
        BdrvChild *c = bdrv_filter_child(bs);
        return c ? bdrv_co_get_allocated_file_size(c->bs) : -ENOMEDIUM;
    }
    return sum_allocated(bs);
}

/* ---- copy offload ---- */

static int copy_check(BdrvChild *src, int64_t src_offset, BdrvChild *dst,
                      int64_t dst_offset, int64_t bytes)
{
    int ret;

    if (!child_bs(src) || !src->bs->drv || !child_bs(dst) || !dst->bs->drv) {
        return -ENOMEDIUM;
    }
    ret = check_request(src_offset, bytes);
    if (ret == 0) {
        ret = write_check(dst->bs, dst_offset, bytes);
    }
    if (ret == 0 && bytes > BDRV_REQUEST_MAX_BYTES) {
        ret = -EINVAL;
    }
    return ret;
}

int coroutine_fn bdrv_co_copy_range_from(BdrvChild *src, int64_t src_offset,
                                         BdrvChild *dst, int64_t dst_offset,
                                         int64_t bytes, BdrvRequestFlags rf,
                                         BdrvRequestFlags wf)
{
    BlockDriverState *bs;
    BdrvTrackedRequest req;
    int ret = copy_check(src, src_offset, dst, dst_offset, bytes);

    if (ret < 0 || bytes == 0) {
        return ret;
    }
    bs = src->bs;
    if (!io_of(bs)->co_copy_range_from) {
        /* not even through a filter: it would bypass what the filter does
         * (throttling, error injection), so the caller reads and writes */
        return -ENOTSUP;
    }
    /* a read of the source: it waits for overlapping serialising writes */
    bdrv_inc_in_flight(bs);
    tracked_begin(&req, bs, src_offset, bytes, TRACKED_READ);
    wait_serialising(&req);
    ret = io_of(bs)->co_copy_range_from(bs, src, src_offset, dst,
                                        dst_offset, bytes, rf, wf);
    tracked_end(&req);
    bdrv_dec_in_flight(bs);
    return ret;
}

/* Can @bs take a copy of [offset, offset + bytes) as it takes a write?
 * Only on its request alignment (the core pads writes, not copies). */
static bool copy_to_applies(BlockDriverState *bs, int64_t offset,
                            int64_t bytes)
{
    uint32_t align = req_align(bs);

    return io_of(bs)->co_copy_range_to && IS_ALIGNED(offset, align) &&
           IS_ALIGNED(bytes, align);
}

/* The write half: tracked, serialised, and finished (generation, block
 * status cache, dirty bitmaps, growth) as a write; FUA by a flush. */
int coroutine_fn bdrv_co_copy_range_to(BdrvChild *src, int64_t src_offset,
                                       BdrvChild *dst, int64_t dst_offset,
                                       int64_t bytes, BdrvRequestFlags rf,
                                       BdrvRequestFlags wf)
{
    BlockDriverState *bs;
    BdrvTrackedRequest req;
    int ret = copy_check(src, src_offset, dst, dst_offset, bytes);

    if (ret < 0 || bytes == 0) {
        return ret;
    }
    bs = dst->bs;
    if (!copy_to_applies(bs, dst_offset, bytes)) {
        return -ENOTSUP;    /* as above */
    }
    bdrv_inc_in_flight(bs);
    tracked_begin(&req, bs, dst_offset, bytes, TRACKED_WRITE);
    wait_serialising(&req);
    bsc_invalidate_range(bs, dst_offset, bytes);
    ret = io_of(bs)->co_copy_range_to(bs, src, src_offset, dst, dst_offset,
                                      bytes, rf, wf);
    if (ret == 0 && (wf & BDRV_REQ_FUA)) {
        ret = flush_after_write(bs);    /* no driver copies with FUA */
    }
    write_finish(bs, dst_offset, bytes, TRACKED_WRITE, ret);
    tracked_end(&req);
    bdrv_dec_in_flight(bs);
    return ret;
}

int coroutine_fn bdrv_co_copy_range(BdrvChild *src, int64_t src_offset,
                                    BdrvChild *dst, int64_t dst_offset,
                                    int64_t bytes, BdrvRequestFlags read_flags,
                                    BdrvRequestFlags write_flags)
{
    return bdrv_co_copy_range_from(src, src_offset, dst, dst_offset, bytes,
                                   read_flags, write_flags);
}

int coroutine_fn bdrv_co_compare_range(BlockDriverState *a, int64_t a_offset,
                                       BlockDriverState *b, int64_t b_offset,
                                       int64_t bytes, int64_t unit,
                                       bool *differ, uint8_t *keep_a)
{
    int ret;

    if (!a || !a->drv || !b || !b->drv) {
        return -ENOMEDIUM;
    }
    if (unit <= 0 || bytes <= 0 || bytes % unit ||
        check_request(a_offset, bytes) < 0 ||
        check_request(b_offset, bytes) < 0) {
        return -EINVAL;
    }
    if (!io_of(a)->co_compare_range) {
        return -ENOTSUP;
    }
    bdrv_inc_in_flight(a);
    bdrv_inc_in_flight(b);
    ret = io_of(a)->co_compare_range(a, a_offset, b, b_offset, bytes, unit,
                                     differ, keep_a);
    bdrv_dec_in_flight(b);
    bdrv_dec_in_flight(a);
    return ret;
}
