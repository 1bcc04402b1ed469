#include "config.h"
/*
 * Copies between two file/host_device nodes, below the formats:
 *
 * - copy offload (convert -C): copy_file_range(), which lets the file
 *   system share or clone the data;
 * - sparse copy (BDRV_REQ_SKIP_ZERO_BLOCKS): read, look for zero blocks
 *   and write the rest, all on one worker, between files on memory file
 *   systems.  See raw_sparse_copy() for why;
 * - compare (rebase): read two ranges a piece at a time on one worker and
 *   compare each piece while it is in that core's cache.  See
 *   raw_co_compare_range() for why.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "block/protocol/file-posix-internal.h"
#include "util/cutils.h"

#define SPARSE_COPY_BLOCK 4096          /* the zero grid (-S 4k) */
#define SPARSE_COPY_PIECE (512 * 1024)  /* stays in a core's L2 cache */

static bool is_posix_node(BlockDriverState *bs)
{
    return bs && (bs->drv == &bdrv_file || bs->drv == &bdrv_host_device);
}

/* ---- copy offload ---- */

typedef struct CopyOp {
    int fd_in, fd_out;
    int64_t in, out, bytes;
} CopyOp;

/* Worker: copy_file_range until done; -ENOTSUP/-EXDEV let the core
 * fall back to read + write. */
static int copy_range_worker(void *opaque)
{
    CopyOp *op = opaque;
    loff_t in = op->in, out = op->out;
    int64_t left = op->bytes;

    while (left > 0) {
        ssize_t n = copy_file_range(op->fd_in, &in, op->fd_out, &out, left, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == ENOSYS || errno == EXDEV || errno == EOPNOTSUPP ||
                errno == EINVAL || errno == EBADF || errno == ETXTBSY) {
                return -ENOTSUP;
            }
            return -errno;
        }
        if (n == 0) {
            return -EIO;        /* source shrank under us */
        }
        left -= n;
    }
    return 0;
}

/* ---- sparse copy ---- */

/* pread/pwrite all of @len; -errno, -EIO for a source that ends early,
 * -ENOSPC for a target that takes nothing. */
static int rw_full(bool write, int fd, uint8_t *buf, int64_t len,
                   int64_t offset)
{
    while (len > 0) {
        ssize_t n = write ? pwrite(fd, buf, len, offset)
                          : pread(fd, buf, len, offset);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : write ? -ENOSPC : -EIO;
        }
        buf += n;
        len -= n;
        offset += n;
    }
    return 0;
}

/* Write the blocks of @buf (@len bytes for target offset @out) that are
 * not all zero; blocks lie on the target's 4 KiB grid, cut at the ends. */
static int write_nonzero(int fd, uint8_t *buf, int64_t len, int64_t out)
{
    int64_t pos = 0;

    while (pos < len) {
        int64_t start = pos;
        bool zero = false;

        do {
            int64_t end = MIN(len, ROUND_DOWN(out + pos, SPARSE_COPY_BLOCK) +
                                   SPARSE_COPY_BLOCK - out);
            bool z = buffer_is_zero(buf + pos, end - pos);

            if (pos > start && z != zero) {
                break;
            }
            zero = z;
            pos = end;
        } while (pos < len);
        if (!zero) {
            int ret = rw_full(true, fd, buf + start, pos - start, out + start);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

/* Each worker's buffer, kept for its next copy (freed when the worker
 * exits): a fresh one would cost a page fault per page on every request. */
static pthread_key_t sparse_copy_key;

static void sparse_copy_key_init(void)
{
    pthread_key_create(&sparse_copy_key, free);
}

static uint8_t *sparse_copy_buffer(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    void *buf;

    pthread_once(&once, sparse_copy_key_init);
    buf = pthread_getspecific(sparse_copy_key);
    if (!buf && posix_memalign(&buf, SPARSE_COPY_BLOCK, SPARSE_COPY_PIECE)) {
        return NULL;
    }
    pthread_setspecific(sparse_copy_key, buf);
    return buf;
}

/* Worker: the copy, a piece at a time through the worker's buffer. */
static int sparse_copy_worker(void *opaque)
{
    CopyOp *op = opaque;
    uint8_t *buf = sparse_copy_buffer();
    int64_t done = 0;

    if (!buf) {
        return -ENOMEM;
    }
    while (done < op->bytes) {
        /* pieces end on the grid, so no block is split between two */
        int64_t n = MIN(op->bytes - done,
                        ROUND_DOWN(op->out + done, SPARSE_COPY_PIECE) +
                        SPARSE_COPY_PIECE - (op->out + done));
        int ret = rw_full(false, op->fd_in, buf, n, op->in + done);

        if (ret == 0) {
            ret = write_nonzero(op->fd_out, buf, n, op->out + done);
        }
        if (ret < 0) {
            return ret;
        }
        done += n;
    }
    return 0;
}

static bool sparse_copy_fits(const BDRVRawState *s)
{
    return s->mem_fs && !(s->open_flags & O_DIRECT);
}

/*
 * Between files on tmpfs/ramfs, I/O is only the CPU copying through the
 * page cache, and the kernel runs one buffered write to a file at a time
 * (the inode lock).  A reader and a writer on different cores hand each
 * chunk over cold; the copy runs fastest when a worker reads a piece,
 * scans it and writes it while it is still in that core's cache, and a
 * second worker does the same with the next request: one writes while the
 * other reads.  The lane's width of two gives exactly that; more would
 * only queue on the inode lock.
 */
static int coroutine_fn raw_sparse_copy(BlockDriverState *bs,
                                        BDRVRawState *ss, int64_t src_offset,
                                        int64_t dst_offset, int64_t bytes,
                                        BdrvRequestFlags wf)
{
    BDRVRawState *s = bs->opaque;
    CopyOp op = { .fd_in = ss->fd, .in = src_offset, .fd_out = s->fd,
                  .out = dst_offset, .bytes = bytes };

    if (wf != BDRV_REQ_SKIP_ZERO_BLOCKS || !sparse_copy_fits(s) ||
        !sparse_copy_fits(ss)) {
        return -ENOTSUP;
    }
    raw_ext_invalidate(s);
    return thread_pool_run_lane(raw_ctx(bs), &s->copy_lane,
                                sparse_copy_worker, &op);
}

/* ---- compare ---- */

typedef struct CompareOp {
    int fd_a, fd_b;
    int64_t a, b, bytes, unit;
    bool *differ;
    uint8_t *keep;
} CompareOp;

/* The units of a piece (@n bytes at @done of the range; side a at @a,
 * side b at @b): which differ, and side a's data of those kept. */
static void compare_piece(CompareOp *op, int64_t done, int64_t n,
                          const uint8_t *a, const uint8_t *b)
{
    for (int64_t u = 0; u < n; u += op->unit) {
        int64_t len = MIN(op->unit, n - u);
        bool differ = memcmp(a + u, b + u, len) != 0;

        op->differ[(done + u) / op->unit] = differ;
        if (differ && op->keep) {
            memcpy(op->keep + done + u, a + u, len);
        }
    }
}

/* Worker: both sides of a piece into the two halves of the worker's
 * buffer, then their units compared at once. */
static int compare_worker(void *opaque)
{
    CompareOp *op = opaque;
    uint8_t *buf = sparse_copy_buffer();
    int64_t half = ROUND_DOWN(SPARSE_COPY_PIECE / 2, op->unit);

    if (!buf) {
        return -ENOMEM;
    }
    for (int64_t done = 0; done < op->bytes; done += half) {
        int64_t n = MIN(half, op->bytes - done);
        int ret = rw_full(false, op->fd_a, buf, n, op->a + done);

        if (ret == 0) {
            ret = rw_full(false, op->fd_b, buf + half, n, op->b + done);
        }
        if (ret < 0) {
            return ret;
        }
        compare_piece(op, done, n, buf, buf + half);
    }
    return 0;
}

/*
 * Comparing two images' data (rebase) through the request path copies
 * both into the caller's buffers on whichever worker reads them and
 * compares them later on the loop thread, out of cache.  On a memory
 * file system the read is only that copy: one worker reading both sides
 * in pieces that fit its core's cache and comparing each piece at once
 * halves the memory traffic, and two such requests in flight keep two
 * cores busy.  Elsewhere (a disk) the request path's engines read better.
 */
int coroutine_fn raw_co_compare_range(BlockDriverState *bs, int64_t offset,
                                      BlockDriverState *other,
                                      int64_t other_offset, int64_t bytes,
                                      int64_t unit, bool *differ,
                                      uint8_t *keep)
{
    BDRVRawState *s = bs->opaque, *so;
    CompareOp op;

    if (!is_posix_node(other) || unit > SPARSE_COPY_PIECE / 2) {
        return -ENOTSUP;
    }
    so = other->opaque;
    if (!sparse_copy_fits(s) || !sparse_copy_fits(so) ||
        offset + bytes > raw_fd_getlength(s) ||
        other_offset + bytes > raw_fd_getlength(so)) {
        return -ENOTSUP;    /* past EOF: the request path zero-fills */
    }
    op = (CompareOp) { .fd_a = s->fd, .a = offset, .fd_b = so->fd,
                       .b = other_offset, .bytes = bytes, .unit = unit,
                       .differ = differ, .keep = keep };
    return thread_pool_run(raw_ctx(bs), compare_worker, &op);
}

/* ---- driver entry points ---- */

int coroutine_fn raw_co_copy_range_from(BlockDriverState *bs, BdrvChild *src,
                                        int64_t src_offset, BdrvChild *dst,
                                        int64_t dst_offset, int64_t bytes,
                                        BdrvRequestFlags rf,
                                        BdrvRequestFlags wf)
{
    return bdrv_co_copy_range_to(src, src_offset, dst, dst_offset, bytes,
                                 rf, wf);
}

int coroutine_fn raw_co_copy_range_to(BlockDriverState *bs, BdrvChild *src,
                                      int64_t src_offset, BdrvChild *dst,
                                      int64_t dst_offset, int64_t bytes,
                                      BdrvRequestFlags rf,
                                      BdrvRequestFlags wf)
{
    BDRVRawState *s = bs->opaque;
    BDRVRawState *ss;
    CopyOp op;

    if (!is_posix_node(src->bs)) {
        return -ENOTSUP;
    }
    ss = src->bs->opaque;
    if (src_offset + bytes > raw_fd_getlength(ss)) {
        return -ENOTSUP;    /* past source EOF: read + write zero-fills */
    }
    if (wf & BDRV_REQ_SKIP_ZERO_BLOCKS) {
        return raw_sparse_copy(bs, ss, src_offset, dst_offset, bytes, wf);
    }
    if (!s->has_copy_range) {
        return -ENOTSUP;
    }
    op = (CopyOp) { .fd_in = ss->fd, .in = src_offset, .fd_out = s->fd,
                    .out = dst_offset, .bytes = bytes };
    raw_ext_invalidate(s);
    return thread_pool_run(raw_ctx(bs), copy_range_worker, &op);
}
