/*
 * Shared state of the "file" and "host_device" protocol drivers.
 * file-posix.c: open/close/create and the driver tables;
 * file-io.c: the data path; file-lock.c: image locking (OFD byte locks
 * compatible with QEMU: byte 100+i = holds permission i, 200+i = does not
 * share permission i).
 */
#ifndef STRATA_FILE_POSIX_INTERNAL_H
#define STRATA_FILE_POSIX_INTERNAL_H

#include "block/driver.h"

#define RAW_LOCK_PERM_BASE   100
#define RAW_LOCK_SHARED_BASE 200
#define RAW_LOCK_NPERMS      4      /* BLK_PERM_ALL has 4 bits */
#define RAW_COPY_WIDTH       2      /* see raw_sparse_copy() */

typedef struct BDRVRawState {
    int fd;
    int open_flags;               /* O_* flags the fd was opened with */
    char *path;                   /* the filename option */
    bool is_device;               /* host_device driver */
    bool is_blockdev;             /* S_ISBLK */
    bool is_cdrom;                /* host_cdrom: opened O_NONBLOCK */

    AioEngineType engine_type;
    AioEngine *engine;
    ThreadPoolLane write_lane;    /* buffered writes to a regular file */
    bool mem_fs;                  /* on tmpfs/ramfs: no device behind */
    ThreadPoolLane copy_lane;     /* sparse copies into this file */

    /* capabilities discovered at run time */
    bool has_write_zeroes;        /* FALLOC_FL_ZERO_RANGE works */
    bool has_discard;             /* PUNCH_HOLE / BLKDISCARD works */
    bool has_fallocate;           /* plain fallocate works */
    bool has_copy_range;
    bool has_blkzeroout;
    size_t buf_align;             /* buffer alignment O_DIRECT needs */
    uint32_t req_align;           /* request alignment O_DIRECT needs */

    /* locking */
    bool use_lock;
    uint64_t perm, shared_perm;   /* committed */
    uint64_t locked_perm;         /* bits whose byte 100+i we hold */
    uint64_t locked_shared;       /* bits whose byte 200+i we hold */

    /* last extent seen by SEEK_DATA/SEEK_HOLE */
    struct {
        bool valid;
        bool data;
        int64_t start, end;
    } ext;
} BDRVRawState;

extern const BlockDriver bdrv_file;
extern const BlockDriver bdrv_host_device;
extern const BlockDriver bdrv_host_cdrom;

/* file-lock.c */
int raw_apply_lock_bytes(BDRVRawState *s, int fd, uint64_t perm_bits,
                         uint64_t unshared_bits, bool unlock, Error **errp);
int raw_check_lock_bytes(int fd, uint64_t perm, uint64_t shared, Error **errp);
int raw_check_perm(BlockDriverState *bs, uint64_t perm, uint64_t shared,
                   Error **errp);
void raw_set_perm(BlockDriverState *bs, uint64_t perm, uint64_t shared);
void raw_abort_perm_update(BlockDriverState *bs);
bool raw_has_ofd_lock(void);

/* The cached extent may be stale once the file is written. */
static inline void raw_ext_invalidate(BDRVRawState *s)
{
    s->ext.valid = false;
}

/* file-io.c */
AioContext *raw_ctx(BlockDriverState *bs);
bool raw_fd_on_mem_fs(int fd);
int coroutine_fn raw_co_preadv(BlockDriverState *bs, int64_t offset,
                               int64_t bytes, IOVector *qiov,
                               BdrvRequestFlags flags);
int coroutine_fn raw_co_pwritev(BlockDriverState *bs, int64_t offset,
                                int64_t bytes, IOVector *qiov,
                                BdrvRequestFlags flags);
int coroutine_fn raw_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags);
int coroutine_fn raw_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                 int64_t bytes);
int coroutine_fn raw_co_flush_to_disk(BlockDriverState *bs);
int coroutine_fn raw_co_block_status(BlockDriverState *bs, bool want_zero,
                                     int64_t offset, int64_t bytes,
                                     int64_t *pnum, int64_t *map,
                                     BlockDriverState **file);
int coroutine_fn raw_co_truncate(BlockDriverState *bs, int64_t offset,
                                 bool exact, PreallocMode prealloc,
                                 BdrvRequestFlags flags, Error **errp);
int64_t raw_fd_getlength(BDRVRawState *s);
int64_t coroutine_fn raw_co_getlength(BlockDriverState *bs);
int64_t coroutine_fn raw_co_get_allocated_file_size(BlockDriverState *bs);
/* Blocking helper shared by truncate and create (worker thread only). */
int raw_regular_truncate(int fd, int64_t offset, PreallocMode prealloc,
                         Error **errp);

/* file-copy.c */
int coroutine_fn raw_co_copy_range_from(BlockDriverState *bs, BdrvChild *src,
                                        int64_t src_offset, BdrvChild *dst,
                                        int64_t dst_offset, int64_t bytes,
                                        BdrvRequestFlags rf,
                                        BdrvRequestFlags wf);
int coroutine_fn raw_co_copy_range_to(BlockDriverState *bs, BdrvChild *src,
                                      int64_t src_offset, BdrvChild *dst,
                                      int64_t dst_offset, int64_t bytes,
                                      BdrvRequestFlags rf,
                                      BdrvRequestFlags wf);
int coroutine_fn raw_co_compare_range(BlockDriverState *bs, int64_t offset,
                                      BlockDriverState *other,
                                      int64_t other_offset, int64_t bytes,
                                      int64_t unit, bool *differ,
                                      uint8_t *keep);

#endif
