#include "config.h"
/*
 * BlockBackend: a tool's handle on the root of a graph.  It owns one
 * BdrvChild edge (parent_blk set) on its root node, checks requests
 * against the image length, adds FUA in writethrough mode, counts its
 * requests in flight and queues new ones while its graph is drained.
 */
#include <errno.h>
#include <glib.h>
#include "block/driver.h"

struct BlockBackend {
    int refcnt;
    BdrvChild *root;
    uint64_t perm, shared_perm;
    bool enable_write_cache;
    bool allow_write_beyond_eof;
    bool disable_request_queuing;
    unsigned in_flight;
    int quiesce_counter;          /* blk_drain() in progress */
    CoQueue queued_requests;
};

static GList *all_blks;
/* Installed in the core by the first blk_new() (defined below). */
static const BdrvRootParentOps blk_root_parent_ops;

/* ---- lifecycle ---- */

BlockBackend *blk_new(uint64_t perm, uint64_t shared_perm)
{
    BlockBackend *blk = g_new0(BlockBackend, 1);

    blk->refcnt = 1;
    blk->perm = perm;
    blk->shared_perm = shared_perm;
    blk->enable_write_cache = true;
    co_queue_init(&blk->queued_requests);
    all_blks = g_list_append(all_blks, blk);
    bdrv_set_root_parent_ops(&blk_root_parent_ops);
    return blk;
}

/* The reference's qemu-io/qemu-img backends take read (+ write) and share
 * everything; resize is taken on demand by blk_co_truncate(). */
static void open_perms(int flags, uint64_t *perm, uint64_t *shared)
{
    *perm = BLK_PERM_CONSISTENT_READ;
    if ((flags & BDRV_O_RDWR) && !(flags & BDRV_O_FORCE_SHARE)) {
        *perm |= BLK_PERM_WRITE;
    }
    if ((flags & BDRV_O_RESIZE) && (*perm & BLK_PERM_WRITE)) {
        *perm |= BLK_PERM_RESIZE;
    }
    if (flags & BDRV_O_NO_IO) {
        *perm = 0;      /* metadata only (info): as the reference, no lock */
    }
    *shared = BLK_PERM_ALL;
}

BlockBackend *blk_new_open(const char *filename, const char *reference,
                           QDict *options, int flags, Error **errp)
{
    BlockDriverState *bs;
    BlockBackend *blk;
    uint64_t perm, shared;

    bs = bdrv_open(filename, reference, options, flags, errp);
    if (!bs) {
        return NULL;
    }
    open_perms(flags, &perm, &shared);
    blk = blk_new(perm, shared);
    blk->root = bdrv_root_attach_child(bs, "root", blk, perm, shared, errp);
    if (!blk->root) {
        bdrv_unref(bs);
        blk_unref(blk);
        return NULL;
    }
    if (flags & BDRV_O_CREATE) {
        blk->allow_write_beyond_eof = true;
    }
    return blk;
}

int blk_insert_bs(BlockBackend *blk, BlockDriverState *bs, Error **errp)
{
    g_assert(!blk->root);
    bdrv_ref(bs);
    blk->root = bdrv_root_attach_child(bs, "root", blk, blk->perm,
                                       blk->shared_perm, errp);
    if (!blk->root) {
        bdrv_unref(bs);
        return -EPERM;
    }
    return 0;
}

void blk_remove_bs(BlockBackend *blk)
{
    BdrvChild *root = blk->root;

    if (!root) {
        return;
    }
    blk_drain(blk);
    blk->root = NULL;
    bdrv_root_unref_child(root);
}

void blk_unref(BlockBackend *blk)
{
    if (!blk) {
        return;
    }
    g_assert(blk->refcnt > 0);
    if (--blk->refcnt > 0) {
        return;
    }
    blk_remove_bs(blk);
    all_blks = g_list_remove(all_blks, blk);
    g_free(blk);
}

BlockDriverState *blk_bs(BlockBackend *blk)
{
    return blk && blk->root ? blk->root->bs : NULL;
}

int blk_set_perm(BlockBackend *blk, uint64_t perm, uint64_t shared, Error **errp)
{
    if (blk->root) {
        int ret = bdrv_child_try_set_perm(blk->root, perm, shared, errp);
        if (ret < 0) {
            return ret;
        }
    }
    blk->perm = perm;
    blk->shared_perm = shared;
    return 0;
}

void blk_get_perm(BlockBackend *blk, uint64_t *perm, uint64_t *shared)
{
    *perm = blk->perm;
    *shared = blk->shared_perm;
}

void blk_set_enable_write_cache(BlockBackend *blk, bool wce)
{
    blk->enable_write_cache = wce;
}

bool blk_enable_write_cache(BlockBackend *blk)
{
    return blk->enable_write_cache;
}

void blk_set_allow_write_beyond_eof(BlockBackend *blk, bool allow)
{
    blk->allow_write_beyond_eof = allow;
}

bool blk_is_read_only(BlockBackend *blk)
{
    BlockDriverState *bs = blk_bs(blk);

    return bs ? bdrv_is_read_only(bs) : !(blk->perm & BLK_PERM_WRITE);
}

void blk_set_disable_request_queuing(BlockBackend *blk, bool disable)
{
    blk->disable_request_queuing = disable;
}

/* Call @fn for every BlockBackend (a copy of the list: @fn may drop one). */
static void blk_foreach(void (*fn)(BlockBackend *blk, void *opaque),
                        void *opaque)
{
    GList *copy = g_list_copy(all_blks);

    for (GList *l = copy; l; l = l->next) {
        fn(l->data, opaque);
    }
    g_list_free(copy);
}

/* ---- in flight, drain, queuing ---- */

unsigned blk_in_flight(BlockBackend *blk)
{
    return blk->in_flight;
}

static void blk_inc_in_flight(BlockBackend *blk)
{
    blk->in_flight++;
}

static void blk_dec_in_flight(BlockBackend *blk)
{
    g_assert(blk->in_flight > 0);
    blk->in_flight--;
    aio_notify(aio_get_default());
}

static bool blk_quiesced(BlockBackend *blk)
{
    if (blk->disable_request_queuing) {
        return false;
    }
    return blk->quiesce_counter > 0 || bdrv_subtree_quiesced(blk_bs(blk));
}

/* New requests wait (uncounted) while the backend's graph is drained. */
static void coroutine_fn blk_wait_while_drained(BlockBackend *blk)
{
    while (blk_quiesced(blk)) {
        blk_dec_in_flight(blk);
        co_queue_wait(&blk->queued_requests, NULL);
        blk_inc_in_flight(blk);
    }
}

static void restart_one(BlockBackend *blk, void *opaque)
{
    if (!co_queue_empty(&blk->queued_requests) && !blk_quiesced(blk)) {
        co_queue_restart_all(&blk->queued_requests);
    }
}

static void blk_restart_all_queued(void)
{
    blk_foreach(restart_one, NULL);
}

void blk_drain(BlockBackend *blk)
{
    BlockDriverState *bs = blk_bs(blk);

    if (bs) {
        bdrv_drained_begin(bs);
    }
    blk->quiesce_counter++;
    if (!co_in_coroutine()) {
        AIO_WAIT_WHILE(aio_get_default(), blk->in_flight > 0);
    }
    blk->quiesce_counter--;
    if (bs) {
        bdrv_drained_end(bs);
    }
    restart_one(blk, NULL);
}

static void drain_one_blk(BlockBackend *blk, void *opaque)
{
    blk_drain(blk);
}

static void blk_drain_all(void)
{
    blk_foreach(drain_one_blk, NULL);
}

typedef struct FlushAll {
    int ret;
} FlushAll;

static void flush_one_blk(BlockBackend *blk, void *opaque)
{
    FlushAll *f = opaque;
    int ret = blk_bs(blk) ? blk_flush(blk) : 0;

    if (ret < 0 && f->ret == 0) {
        f->ret = ret;
    }
}

static int blk_flush_all(void)
{
    FlushAll f = { 0 };

    blk_foreach(flush_one_blk, &f);
    return f.ret;
}

/* What the block core's drain asks of the backends above the graph. */
static const BdrvRootParentOps blk_root_parent_ops = {
    .in_flight = blk_in_flight,
    .restart_queued = blk_restart_all_queued,
    .drain_all = blk_drain_all,
    .flush_all = blk_flush_all,
};

/* ---- request checks ---- */

/* A node with its medium in: requests, length and flushes need one. */
bool blk_available(BlockBackend *blk)
{
    return blk_bs(blk) && bdrv_is_inserted(blk_bs(blk));
}

/* Requests on a backend must stay inside the image (unless it may grow). */
static int coroutine_fn blk_check_byte_request(BlockBackend *blk,
                                               int64_t offset, int64_t bytes)
{
    int64_t len;

    if (offset < 0 || bytes < 0) {
        return -EIO;
    }
    if (!blk_available(blk)) {
        return -ENOMEDIUM;
    }
    if (!blk->allow_write_beyond_eof) {
        len = bdrv_co_getlength(blk_bs(blk));
        if (len < 0) {
            return (int)len;
        }
        if (offset > len || len - offset < bytes) {
            return -EIO;
        }
    }
    return 0;
}

static int coroutine_fn blk_check_write(BlockBackend *blk, int64_t offset,
                                        int64_t bytes)
{
    int ret = blk_check_byte_request(blk, offset, bytes);

    if (ret == 0 && !(blk->root->perm & BLK_PERM_WRITE)) {
        ret = -EPERM;
    }
    return ret;
}

static BdrvRequestFlags blk_write_flags(BlockBackend *blk,
                                        BdrvRequestFlags flags)
{
    return blk->enable_write_cache ? flags : flags | BDRV_REQ_FUA;
}

/* ---- coroutine request API ---- */

int coroutine_fn blk_co_preadv(BlockBackend *blk, int64_t offset, int64_t bytes,
                               IOVector *qiov, BdrvRequestFlags flags)
{
    int ret;

    blk_inc_in_flight(blk);
    blk_wait_while_drained(blk);
    ret = blk_check_byte_request(blk, offset, bytes);
    if (ret == 0) {
        ret = bdrv_co_preadv(blk->root, offset, bytes, qiov, flags);
    }
    blk_dec_in_flight(blk);
    return ret;
}

int coroutine_fn blk_co_pwritev(BlockBackend *blk, int64_t offset,
                                int64_t bytes, IOVector *qiov,
                                BdrvRequestFlags flags)
{
    int ret;

    blk_inc_in_flight(blk);
    blk_wait_while_drained(blk);
    ret = blk_check_write(blk, offset, bytes);
    if (ret == 0) {
        ret = bdrv_co_pwritev(blk->root, offset, bytes, qiov,
                              blk_write_flags(blk, flags));
    }
    blk_dec_in_flight(blk);
    return ret;
}

int coroutine_fn blk_co_pread(BlockBackend *blk, int64_t offset, int64_t bytes,
                              void *buf, BdrvRequestFlags flags)
{
    IOVector v;

    if (bytes < 0) {
        return -EIO;
    }
    iov_vec_init_buf(&v, buf, bytes);
    return blk_co_preadv(blk, offset, bytes, &v, flags);
}

int coroutine_fn blk_co_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
                               const void *buf, BdrvRequestFlags flags)
{
    IOVector v;

    if (bytes < 0) {
        return -EIO;
    }
    iov_vec_init_buf(&v, (void *)buf, bytes);
    return blk_co_pwritev(blk, offset, bytes, &v, flags);
}

int coroutine_fn blk_co_pwrite_zeroes(BlockBackend *blk, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags)
{
    int ret;

    blk_inc_in_flight(blk);
    blk_wait_while_drained(blk);
    ret = blk_check_write(blk, offset, bytes);
    if (ret == 0) {
        ret = bdrv_co_pwrite_zeroes(blk->root, offset, bytes,
                                    blk_write_flags(blk, flags));
    }
    blk_dec_in_flight(blk);
    return ret;
}

int coroutine_fn blk_co_pdiscard(BlockBackend *blk, int64_t offset,
                                 int64_t bytes)
{
    int ret;

    blk_inc_in_flight(blk);
    blk_wait_while_drained(blk);
    ret = blk_check_write(blk, offset, bytes);
    if (ret == 0) {
        ret = bdrv_co_pdiscard(blk->root, offset, bytes);
    }
    blk_dec_in_flight(blk);
    return ret;
}

int coroutine_fn blk_co_flush(BlockBackend *blk)
{
    int ret = -ENOMEDIUM;

    blk_inc_in_flight(blk);
    blk_wait_while_drained(blk);
    if (blk_available(blk)) {
        ret = bdrv_co_flush(blk_bs(blk));
    }
    blk_dec_in_flight(blk);
    return ret;
}

/* Truncating needs the resize permission; take it on first use, as the
 * reference's tools do. */
static int blk_want_resize(BlockBackend *blk, Error **errp)
{
    if (blk->root->perm & BLK_PERM_RESIZE) {
        return 0;
    }
    return blk_set_perm(blk, blk->perm | BLK_PERM_RESIZE, blk->shared_perm,
                        errp);
}

int coroutine_fn blk_co_truncate(BlockBackend *blk, int64_t offset, bool exact,
                                 PreallocMode prealloc, BdrvRequestFlags flags,
                                 Error **errp)
{
    int ret;

    if (!blk_available(blk)) {
        error_setg(errp, "No medium inserted");
        return -ENOMEDIUM;
    }
    if (bdrv_is_read_only(blk_bs(blk))) {
        error_setg(errp, "Image is read-only");
        return -EACCES;
    }
    ret = blk_want_resize(blk, errp);
    if (ret < 0) {
        return ret;
    }
    blk_inc_in_flight(blk);
    blk_wait_while_drained(blk);
    ret = bdrv_co_truncate(blk->root, offset, exact, prealloc, flags, errp);
    blk_dec_in_flight(blk);
    return ret;
}

int coroutine_fn blk_co_copy_range(BlockBackend *src, int64_t src_offset,
                                   BlockBackend *dst, int64_t dst_offset,
                                   int64_t bytes, BdrvRequestFlags read_flags,
                                   BdrvRequestFlags write_flags)
{
    int ret;

    blk_inc_in_flight(src);
    blk_inc_in_flight(dst);
    blk_wait_while_drained(src);
    blk_wait_while_drained(dst);
    ret = blk_check_byte_request(src, src_offset, bytes);
    if (ret == 0) {
        ret = blk_check_write(dst, dst_offset, bytes);
    }
    if (ret == 0) {
        ret = bdrv_co_copy_range(src->root, src_offset, dst->root, dst_offset,
                                 bytes, read_flags,
                                 blk_write_flags(dst, write_flags));
    }
    blk_dec_in_flight(dst);
    blk_dec_in_flight(src);
    return ret;
}

/* ---- synchronous wrappers ---- */

typedef enum {
    BLK_OP_READ, BLK_OP_WRITE, BLK_OP_ZEROES, BLK_OP_DISCARD, BLK_OP_FLUSH,
    BLK_OP_TRUNCATE, BLK_OP_LENGTH, BLK_OP_SIZE, BLK_OP_STATUS,
    BLK_OP_STATUS_ABOVE,
    BLK_OP_ALLOCATED,
} BlkOp;

typedef struct BlkSync {
    BlkOp op;
    BlockBackend *blk;
    int64_t offset, bytes;
    IOVector *qiov;
    BdrvRequestFlags flags;
    bool exact;
    PreallocMode prealloc;
    Error **errp;
    int64_t *pnum, *map;
    BlockDriverState **file;
    int *depth;
    int64_t ret;
} BlkSync;

static int coroutine_fn blk_co_status(BlkSync *s)
{
    BlockDriverState *bs = blk_bs(s->blk);
    int ret;

    if (!bs) {
        return -ENOMEDIUM;
    }
    if (s->op == BLK_OP_STATUS_ABOVE) {
        return bdrv_co_block_status_above(bs, NULL, s->offset, s->bytes,
                                          s->pnum, s->map, s->file, s->depth);
    }
    if (s->op == BLK_OP_ALLOCATED) {
        return bdrv_co_is_allocated(bs, s->offset, s->bytes, s->pnum);
    }
    ret = bdrv_co_block_status(bs, s->offset, s->bytes, s->pnum, s->map,
                               s->file);
    if (s->depth) {
        *s->depth = ret >= 0 && (ret & BDRV_BLOCK_ALLOCATED) ? 1 : 0;
    }
    return ret;
}

static int64_t coroutine_fn blk_sync_dispatch(BlkSync *s)
{
    switch (s->op) {
    case BLK_OP_READ:
        return blk_co_preadv(s->blk, s->offset, s->bytes, s->qiov, s->flags);
    case BLK_OP_WRITE:
        return blk_co_pwritev(s->blk, s->offset, s->bytes, s->qiov, s->flags);
    case BLK_OP_ZEROES:
        return blk_co_pwrite_zeroes(s->blk, s->offset, s->bytes, s->flags);
    case BLK_OP_DISCARD:
        return blk_co_pdiscard(s->blk, s->offset, s->bytes);
    case BLK_OP_FLUSH:
        return blk_co_flush(s->blk);
    case BLK_OP_TRUNCATE:
        return blk_co_truncate(s->blk, s->offset, s->exact, s->prealloc,
                               s->flags, s->errp);
    case BLK_OP_LENGTH:
        return blk_available(s->blk) ? bdrv_co_getlength(blk_bs(s->blk))
                                     : -ENOMEDIUM;
    case BLK_OP_SIZE:
        return blk_bs(s->blk) ? bdrv_co_getlength(blk_bs(s->blk)) : -ENOMEDIUM;
    default:
        return blk_co_status(s);
    }
}

static void coroutine_fn blk_sync_entry(void *opaque)
{
    BlkSync *s = opaque;

    s->ret = blk_sync_dispatch(s);
}

static int64_t blk_sync(BlkSync *s)
{
    co_run_sync(blk_sync_entry, s);
    return s->ret;
}

int blk_preadv(BlockBackend *blk, int64_t offset, int64_t bytes,
               IOVector *qiov, BdrvRequestFlags flags)
{
    BlkSync s = { .op = BLK_OP_READ, .blk = blk, .offset = offset,
                  .bytes = bytes, .qiov = qiov, .flags = flags };
    return (int)blk_sync(&s);
}

int blk_pwritev(BlockBackend *blk, int64_t offset, int64_t bytes,
                IOVector *qiov, BdrvRequestFlags flags)
{
    BlkSync s = { .op = BLK_OP_WRITE, .blk = blk, .offset = offset,
                  .bytes = bytes, .qiov = qiov, .flags = flags };
    return (int)blk_sync(&s);
}

int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags)
{
    IOVector v;

    if (bytes < 0) {
        return -EIO;
    }
    iov_vec_init_buf(&v, buf, bytes);
    return blk_preadv(blk, offset, bytes, &v, flags);
}

int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags)
{
    IOVector v;

    if (bytes < 0) {
        return -EIO;
    }
    iov_vec_init_buf(&v, (void *)buf, bytes);
    return blk_pwritev(blk, offset, bytes, &v, flags);
}

int blk_pwrite_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                      BdrvRequestFlags flags)
{
    BlkSync s = { .op = BLK_OP_ZEROES, .blk = blk, .offset = offset,
                  .bytes = bytes, .flags = flags };
    return (int)blk_sync(&s);
}

int blk_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes)
{
    BlkSync s = { .op = BLK_OP_DISCARD, .blk = blk, .offset = offset,
                  .bytes = bytes };
    return (int)blk_sync(&s);
}

int blk_flush(BlockBackend *blk)
{
    BlkSync s = { .op = BLK_OP_FLUSH, .blk = blk };
    return (int)blk_sync(&s);
}

/* The vmstate write bypasses the backend's FUA, so writethrough mode
 * flushes after it: its metadata errors then fail the write itself. */
int blk_save_vmstate(BlockBackend *blk, const void *buf, int64_t pos,
                     int64_t bytes)
{
    int ret = bdrv_save_vmstate(blk_bs(blk), buf, pos, bytes);

    if (ret >= 0 && !blk->enable_write_cache) {
        ret = blk_flush(blk);
    }
    return ret;
}

int blk_truncate(BlockBackend *blk, int64_t offset, bool exact,
                 PreallocMode prealloc, BdrvRequestFlags flags, Error **errp)
{
    BlkSync s = { .op = BLK_OP_TRUNCATE, .blk = blk, .offset = offset,
                  .exact = exact, .prealloc = prealloc, .flags = flags,
                  .errp = errp };
    return (int)blk_sync(&s);
}

int64_t blk_getlength(BlockBackend *blk)
{
    BlkSync s = { .op = BLK_OP_LENGTH, .blk = blk };
    return blk_sync(&s);
}

int64_t blk_size(BlockBackend *blk)
{
    BlkSync s = { .op = BLK_OP_SIZE, .blk = blk };
    return blk_sync(&s);
}

int blk_block_status(BlockBackend *blk, bool above, int64_t offset,
                     int64_t bytes, int64_t *pnum, int64_t *map,
                     BlockDriverState **file, int *depth)
{
    BlkSync s = { .op = above ? BLK_OP_STATUS_ABOVE : BLK_OP_STATUS,
                  .blk = blk, .offset = offset, .bytes = bytes,
                  .pnum = pnum, .map = map, .file = file, .depth = depth };
    return (int)blk_sync(&s);
}

int blk_is_allocated(BlockBackend *blk, int64_t offset, int64_t bytes,
                     int64_t *pnum)
{
    BlkSync s = { .op = BLK_OP_ALLOCATED, .blk = blk, .offset = offset,
                  .bytes = bytes, .pnum = pnum };
    return (int)blk_sync(&s);
}
