#include "config.h"
/*
 * Data path of the file and host_device protocols.  Reads, writes and
 * flushes go through the node's I/O engine; fallocate, ioctl, ftruncate
 * and copy_file_range run on the worker pool so the loop never blocks.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include "block/protocol/file-posix-internal.h"
#include "util/cutils.h"

AioContext *raw_ctx(BlockDriverState *bs)
{
    return bs->ctx ? bs->ctx : aio_get_default();
}

/* ---- blocking helpers run on the worker pool ---- */

typedef struct RawOp {
    int fd;
    int mode;                 /* fallocate mode / ioctl request */
    int64_t offset, bytes;
    PreallocMode prealloc;
    Error *err;
} RawOp;

static int do_fallocate(int fd, int mode, int64_t offset, int64_t bytes)
{
    int ret;

    do {
        ret = fallocate(fd, mode, offset, bytes);
    } while (ret < 0 && errno == EINTR);
    if (ret == 0) {
        return 0;
    }
    /* EOPNOTSUPP and ENOTSUP are the same on Linux; normalise others */
    return errno == EOPNOTSUPP ? -ENOTSUP : -errno;
}

/* Worker: one fallocate() call. */
static int fallocate_worker(void *opaque)
{
    RawOp *op = opaque;
    return do_fallocate(op->fd, op->mode, op->offset, op->bytes);
}

/* Worker: BLKZEROOUT / BLKDISCARD take a [start, len] u64 pair. */
static int blk_ioctl_worker(void *opaque)
{
    RawOp *op = opaque;
    uint64_t range[2] = { op->offset, op->bytes };

    if (ioctl(op->fd, op->mode, range) == 0) {
        return 0;
    }
    if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL) {
        return -ENOTSUP;
    }
    return -errno;
}

static int coroutine_fn raw_co_fallocate(BlockDriverState *bs, int mode,
                                         int64_t offset, int64_t bytes)
{
    BDRVRawState *s = bs->opaque;
    RawOp op = { .fd = s->fd, .mode = mode, .offset = offset, .bytes = bytes };

    return thread_pool_run(raw_ctx(bs), fallocate_worker, &op);
}

static int coroutine_fn raw_co_blk_ioctl(BlockDriverState *bs,
                                         unsigned long req, int64_t offset,
                                         int64_t bytes)
{
    BDRVRawState *s = bs->opaque;
    RawOp op = { .fd = s->fd, .mode = req, .offset = offset, .bytes = bytes };

    return thread_pool_run(raw_ctx(bs), blk_ioctl_worker, &op);
}

/* ---- read / write / flush ---- */

#define TMPFS_MAGIC_NR 0x01021994
#define RAMFS_MAGIC_NR 0x858458f6

/* Largest buffered read on tmpfs/ramfs done in the loop thread (see
 * raw_read_inline()). */
#define RAW_INLINE_READ_MAX (256 * 1024)

bool raw_fd_on_mem_fs(int fd)
{
    struct statfs st;

    return fstatfs(fd, &st) == 0 &&
           (st.f_type == TMPFS_MAGIC_NR || st.f_type == RAMFS_MAGIC_NR);
}

/* A buffered read of a file on a memory file system is a copy out of
 * the page cache that never waits for a device.  Handing a small one to
 * a worker would cost a wake-up and a context switch more than the copy,
 * and leave the data in another core's cache for the code that looks at
 * it next; so with the threads engine it runs inline (io_uring would
 * punt it to a worker: tmpfs has no non-blocking reads).  A large one
 * (convert's chunks) goes to the pool: its copy dwarfs the hand-off, and
 * the copies of several requests then run at once on every core instead
 * of one after another in the loop thread. */
static bool raw_read_inline(const BDRVRawState *s, int64_t bytes)
{
    return s->mem_fs && !(s->open_flags & O_DIRECT) &&
           s->engine_type == AIO_ENGINE_THREADS &&
           bytes <= RAW_INLINE_READ_MAX;
}

/* preadv until done or EOF; bytes read or -errno. */
static int64_t raw_preadv_sync(int fd, int64_t offset, IOVector *qiov)
{
    g_autofree struct iovec *iov = g_memdup2(qiov->iov,
                                             sizeof(*iov) * qiov->niov);
    int niov = qiov->niov, first = 0;
    int64_t done = 0;

    while (first < niov) {
        ssize_t n = preadv(fd, iov + first, niov - first, offset + done);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : done;
        }
        done += n;
        while (first < niov && (size_t)n >= iov[first].iov_len) {
            n -= iov[first++].iov_len;
        }
        if (first < niov) {
            iov[first].iov_base = (char *)iov[first].iov_base + n;
            iov[first].iov_len -= n;
        }
    }
    return done;
}

/* Buffered writes to a regular file hold the inode lock in the kernel for
 * the whole copy (ext4, xfs, tmpfs alike), so writes in flight together
 * only spin against each other and steal the CPU that reads need.  They
 * go through one lane of the worker pool instead: one at a time, back to
 * back on one worker (engines other than threads ignore the lane). */
static ThreadPoolLane *raw_write_lane(BDRVRawState *s)
{
    return s->is_device || (s->open_flags & O_DIRECT) ? NULL : &s->write_lane;
}

int coroutine_fn raw_co_preadv(BlockDriverState *bs, int64_t offset,
                               int64_t bytes, IOVector *qiov,
                               BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;
    int64_t n = raw_read_inline(s, bytes)
        ? raw_preadv_sync(s->fd, offset, qiov)
        : aio_engine_co_rw(s->engine, s->fd, AIO_OP_READ, offset,
                           qiov->iov, qiov->niov);

    if (n < 0) {
        return n;
    }
    if (n < bytes) {
        /* EOF inside the request: the rest reads as zeroes */
        iov_vec_memset(qiov, n, 0, bytes - n);
    }
    return 0;
}

int coroutine_fn raw_co_pwritev(BlockDriverState *bs, int64_t offset,
                                int64_t bytes, IOVector *qiov,
                                BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;
    int64_t n;

    /* a write turns a cached hole into data; cached data stays data */
    if (s->ext.valid && !s->ext.data &&
        offset < s->ext.end && offset + bytes > s->ext.start) {
        raw_ext_invalidate(s);
    }
    n = aio_engine_co_rw_lane(s->engine, raw_write_lane(s), s->fd,
                              AIO_OP_WRITE, offset, qiov->iov, qiov->niov);
    if (n < 0) {
        return n;
    }
    if (n != bytes) {
        return -ENOSPC;
    }
    /* FUA lands here, at the bottom of the graph, so that the layers
     * above pass it down instead of flushing (and counting as flushed)
     * whole subtrees: the same place QEMU's file driver honours it. */
    return (flags & BDRV_REQ_FUA) ? raw_co_flush_to_disk(bs) : 0;
}

int coroutine_fn raw_co_flush_to_disk(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;
    int64_t ret = aio_engine_co_rw(s->engine, s->fd, AIO_OP_FDATASYNC, 0,
                                   NULL, 0);
    return ret < 0 ? ret : 0;
}

/* ---- zeroes and discard ---- */

/* Regular file zeroing without unmap: ZERO_RANGE, else punch + allocate,
 * else plain allocation when the range is wholly past EOF. */
static int coroutine_fn raw_zero_regular(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes)
{
    BDRVRawState *s = bs->opaque;
    int ret;

    if (s->has_write_zeroes) {
        ret = raw_co_fallocate(bs, FALLOC_FL_ZERO_RANGE, offset, bytes);
        if (ret != -ENOTSUP && ret != -EINVAL) {
            return ret;
        }
        if (ret == -ENOTSUP) {
            s->has_write_zeroes = false;
        }
    }
    if (s->has_discard && s->has_fallocate) {
        ret = raw_co_fallocate(bs, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               offset, bytes);
        if (ret == 0) {
            ret = raw_co_fallocate(bs, 0, offset, bytes);
            if (ret != -ENOTSUP) {
                return ret;
            }
            s->has_fallocate = false;
        } else if (ret == -ENOTSUP) {
            s->has_discard = false;
        } else if (ret != -EINVAL) {
            return ret;
        }
    }
    if (s->has_fallocate && offset >= raw_fd_getlength(s)) {
        ret = raw_co_fallocate(bs, 0, offset, bytes);
        if (ret != -ENOTSUP) {
            return ret;
        }
        s->has_fallocate = false;
    }
    return -ENOTSUP;
}

/* Deallocating zero write: punch a hole (reads back as zeroes). */
static int coroutine_fn raw_zero_unmap(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes)
{
    BDRVRawState *s = bs->opaque;

    if (!s->has_discard) {
        return -ENOTSUP;
    }
    /* KEEP_SIZE, and no growing after it: past EOF (the rest of the last
     * sector of a file whose size is not a multiple of 512) the file
     * already reads as zeroes, and the reference leaves its size alone */
    return raw_co_fallocate(bs, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            offset, bytes);
}

int coroutine_fn raw_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;
    int ret;

    raw_ext_invalidate(s);
    if (s->is_blockdev) {
        if (!s->has_blkzeroout) {
            return -ENOTSUP;
        }
        ret = raw_co_blk_ioctl(bs, BLKZEROOUT, offset, bytes);
        if (ret == -ENOTSUP) {
            s->has_blkzeroout = false;
        }
        return ret;
    }
    if (s->is_device) {
        return -ENOTSUP;
    }
    if (flags & BDRV_REQ_MAY_UNMAP) {
        ret = raw_zero_unmap(bs, offset, bytes);
        if (ret != -ENOTSUP && ret != -EINVAL && ret != -EBUSY) {
            return ret;
        }
    }
    return raw_zero_regular(bs, offset, bytes);
}

int coroutine_fn raw_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                 int64_t bytes)
{
    BDRVRawState *s = bs->opaque;
    int ret;

    if (!s->has_discard) {
        return -ENOTSUP;
    }
    raw_ext_invalidate(s);
    if (s->is_blockdev) {
        ret = raw_co_blk_ioctl(bs, BLKDISCARD, offset, bytes);
    } else if (s->is_device) {
        ret = -ENOTSUP;
    } else {
        ret = raw_co_fallocate(bs, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               offset, bytes);
    }
    if (ret == -ENOTSUP) {
        s->has_discard = false;
    }
    return ret;
}

/* ---- block status ---- */

/*
 * Where does the extent containing @start end?  0 with data and hole set
 * (exactly one of them equals @start), -ENXIO past the last data,
 * other -errno when SEEK_DATA is unusable.  lseek is cheap: done inline.
 */
static int find_allocation(int fd, int64_t start, int64_t *data,
                           int64_t *hole)
{
    off_t offs = lseek(fd, start, SEEK_DATA);

    if (offs < 0) {
        return -errno;
    }
    if (offs < start) {
        return -EIO;
    }
    if (offs > start) {
        *hole = start;
        *data = offs;
        return 0;
    }
    offs = lseek(fd, start, SEEK_HOLE);
    if (offs < 0) {
        return -errno;
    }
    if (offs <= start) {
        return offs < start ? -EIO : -EBUSY;
    }
    *data = start;
    *hole = offs;
    return 0;
}

/* Remember the extent; holes only while nobody else may write. */
static void raw_ext_store(BDRVRawState *s, bool data, int64_t start,
                          int64_t end)
{
    if (!data && (s->shared_perm & BLK_PERM_WRITE)) {
        return;
    }
    s->ext.valid = true;
    s->ext.data = data;
    s->ext.start = start;
    s->ext.end = end;
}

/* Look up (or compute) the extent at @offset: *end is where it stops. */
static int raw_extent_at(BlockDriverState *bs, int64_t offset, int64_t *end)
{
    BDRVRawState *s = bs->opaque;
    int64_t data = 0, hole = 0;
    int ret;

    if (s->ext.valid && offset >= s->ext.start && offset < s->ext.end) {
        *end = s->ext.end;
        return s->ext.data ? BDRV_BLOCK_DATA : BDRV_BLOCK_ZERO;
    }
    ret = find_allocation(s->fd, offset, &data, &hole);
    if (ret == -ENXIO) {
        *end = INT64_MAX;           /* trailing hole */
        raw_ext_store(s, false, offset, INT64_MAX);
        return BDRV_BLOCK_ZERO;
    }
    if (ret < 0) {
        *end = INT64_MAX;           /* no information: all data */
        return BDRV_BLOCK_DATA;
    }
    if (data == offset) {
        *end = hole;
        raw_ext_store(s, true, offset, hole);
        return BDRV_BLOCK_DATA;
    }
    *end = data;
    raw_ext_store(s, false, offset, data);
    return BDRV_BLOCK_ZERO;
}

int coroutine_fn raw_co_block_status(BlockDriverState *bs, bool want_zero,
                                     int64_t offset, int64_t bytes,
                                     int64_t *pnum, int64_t *map,
                                     BlockDriverState **file)
{
    BDRVRawState *s = bs->opaque;
    int64_t end = INT64_MAX;
    int ret = BDRV_BLOCK_DATA;

    if (want_zero && !s->is_device) {
        ret = raw_extent_at(bs, offset, &end);
    }
    *pnum = MIN(bytes, end - offset);
    if (ret == BDRV_BLOCK_DATA && *pnum < bytes) {
        /* a data extent ending in a partial block at EOF */
        uint32_t align = MAX(bs->bl.request_alignment, 1);
        *pnum = MIN(bytes, ROUND_UP(*pnum, align));
    }
    *map = offset;
    *file = bs;
    return ret | BDRV_BLOCK_OFFSET_VALID;
}

/* ---- length and truncation ---- */

int64_t raw_fd_getlength(BDRVRawState *s)
{
    struct stat st;
    uint64_t size;
    off_t end;

    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    if (S_ISBLK(st.st_mode) && ioctl(s->fd, BLKGETSIZE64, &size) == 0) {
        return size;
    }
    /* lseek rather than st_size: pseudo files (/proc) refuse it, and the
     * reference then refuses to open them */
    end = lseek(s->fd, 0, SEEK_END);
    return end < 0 ? -errno : end;
}

int64_t coroutine_fn raw_co_getlength(BlockDriverState *bs)
{
    return raw_fd_getlength(bs->opaque);
}

int64_t coroutine_fn raw_co_get_allocated_file_size(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;
    struct stat st;

    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

/* Write zeroes to the first block so O_DIRECT alignment probing of a new
 * image finds real data (reads of holes succeed at any alignment). */
static void allocate_first_block(int fd, int64_t max_size)
{
    size_t len = max_size < 4096 ? 512 : 4096;
    void *buf = NULL;

    if (posix_memalign(&buf, MAX(4096, sysconf(_SC_PAGESIZE)), len)) {
        return;
    }
    memset(buf, 0, len);
    while (pwrite(fd, buf, len, 0) < 0 && errno == EINTR) {
        /* retry */
    }
    free(buf);
}

/* Preallocation "full": extend, then write real zeroes and sync. */
/* Write zeroes over [pos, end) of @fd from @buf (64 KiB of zeroes). */
static int write_zeroes_loop(int fd, const uint8_t *buf, int64_t pos,
                             int64_t end, Error **errp)
{
    while (pos < end) {
        ssize_t n = pwrite(fd, buf, MIN(end - pos, 64 * KiB), pos);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int err = n < 0 ? errno : ENOSPC;
            error_setg_errno(errp, err,
                             "Could not write zeros for preallocation");
            return -err;
        }
        pos += n;
    }
    return 0;
}

static int truncate_full(int fd, int64_t cur, int64_t offset, Error **errp)
{
    /* page-aligned, so that O_DIRECT files work too (the reference's heap
     * buffer makes that depend on the allocator) */
    uint8_t *buf;
    int ret;

    if (ftruncate(fd, offset) < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not resize file");
        return ret;
    }
    buf = g_aligned_alloc0(64 * KiB, 1, 4096);
    ret = write_zeroes_loop(fd, buf, cur, offset, errp);
    g_aligned_free(buf);
    if (ret == 0 && fsync(fd) < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not flush file to disk");
    }
    return ret;
}

/* Preallocation "falloc": posix_fallocate the new tail. */
static int truncate_falloc(int fd, int64_t cur, int64_t offset, Error **errp)
{
    int ret;

    if (offset == cur) {
        return 0;
    }
    ret = offset < cur ? EINVAL : posix_fallocate(fd, cur, offset - cur);
    if (ret) {
        error_setg_errno(errp, ret, "Could not preallocate new data");
        return -ret;
    }
    if (cur == 0) {
        allocate_first_block(fd, offset);
    }
    return 0;
}

/* Blocking: resize a regular file to exactly @offset.  A failed
 * preallocation restores the old length. */
int raw_regular_truncate(int fd, int64_t offset, PreallocMode prealloc,
                         Error **errp)
{
    struct stat st;
    int ret;

    if (fstat(fd, &st) < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not stat file");
        return ret;
    }
    if (prealloc != PREALLOC_MODE_OFF && offset < st.st_size) {
        error_setg(errp, "Cannot use preallocation for shrinking files");
        return -ENOTSUP;
    }
    switch (prealloc) {
    case PREALLOC_MODE_OFF:
        if (ftruncate(fd, offset) < 0) {
            error_setg_errno(errp, errno, "Could not resize file");
            return -errno;
        }
        if (st.st_size == 0 && offset > 0) {
            allocate_first_block(fd, offset);
        }
        return 0;
    case PREALLOC_MODE_FALLOC:
        ret = truncate_falloc(fd, st.st_size, offset, errp);
        break;
    case PREALLOC_MODE_FULL:
        ret = truncate_full(fd, st.st_size, offset, errp);
        break;
    default:
        error_setg(errp, "Unsupported preallocation mode: %s",
                   prealloc_mode_name(prealloc));
        return -ENOTSUP;
    }
    if (ret < 0 && ftruncate(fd, st.st_size) < 0) {
        error_report("Failed to restore old file length: %s", strerror(errno));
    }
    return ret;
}

/* Worker: truncate a regular file. */
static int truncate_worker(void *opaque)
{
    RawOp *op = opaque;
    return raw_regular_truncate(op->fd, op->offset, op->prealloc, &op->err);
}

/* Devices cannot change size: only "shrinking" to a smaller view works. */
static int raw_device_truncate(BlockDriverState *bs, int64_t offset,
                               bool exact, Error **errp)
{
    int64_t cur = raw_fd_getlength(bs->opaque);

    if (offset != cur && exact) {
        error_setg(errp, "Cannot resize device files");
        return -ENOTSUP;
    }
    if (offset > cur) {
        error_setg(errp, "Cannot grow device files");
        return -EINVAL;
    }
    return 0;
}

int coroutine_fn raw_co_truncate(BlockDriverState *bs, int64_t offset,
                                 bool exact, PreallocMode prealloc,
                                 BdrvRequestFlags flags, Error **errp)
{
    BDRVRawState *s = bs->opaque;
    RawOp op = { .fd = s->fd, .offset = offset, .prealloc = prealloc };
    struct stat st;
    int ret;

    raw_ext_invalidate(s);
    if (fstat(s->fd, &st) < 0) {
        error_setg_errno(errp, errno, "Failed to fstat() the file");
        return -errno;
    }
    if (S_ISREG(st.st_mode)) {
        ret = thread_pool_run(raw_ctx(bs), truncate_worker, &op);
        if (op.err) {
            error_propagate(errp, op.err);
        }
        return ret;
    }
    if (prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Preallocation mode '%s' unsupported for this "
                   "non-regular file", prealloc_mode_name(prealloc));
        return -ENOTSUP;
    }
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
        return raw_device_truncate(bs, offset, exact, errp);
    }
    error_setg(errp, "Resizing this file is not supported");
    return -ENOTSUP;
}
