#include "config.h"
/*
 * strata-img commit: write an overlay's data down into a backing file.
 *
 * As the reference: the base is the overlay's backing file, or the image
 * -b names further down the chain (then the overlay is kept, as with -d).
 * A block job (block/job.h) copies what the overlay and the layers above
 * the base allocate, in the base's coordinates: data as data, extents
 * that read as zeroes as zero writes (so a sparse base stays sparse).
 * The base grows first when the overlay is larger, and is flushed before
 * anything is said to have worked; then, without -d, the overlay is
 * emptied so that it reads through to the base again.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "block/block.h"
#include "tools/img/img.h"
#include "util/cutils.h"
#include "util/progress.h"

typedef struct CommitArgs {
    ImgCommonOpts common;
    const char *cache;
    const char *base;
    bool progress;
    bool drop;
    int64_t rate;
} CommitArgs;

/* What the job's callbacks need. */
typedef struct CommitJob {
    BlockBackend *top;          /* reads the whole chain */
    BlockDriverState *base;
    BlockBackend *base_blk;     /* writes into the base */
    bool copy_offload;          /* still trying copy offload */
    ProgressPlan plan;          /* the reference's -p lines */
    GArray *ops;                /* the reference's requests (CommitOp), or
                                 * NULL: plan from block status */
} CommitJob;

/* One request of the reference's job (see commit_model()). */
typedef struct CommitOp {
    int64_t off, bytes;
    int32_t chunks;             /* buffer granules a copy holds; 0 else */
    int32_t iter;               /* the iteration that issues it */
} CommitOp;

/* The reference's commit is a mirror job; these are its request sizes. */
#define MIRROR_MAX_IO   (1024 * 1024)       /* a data request */
#define MIRROR_BUF_SIZE (16 * 1024 * 1024)  /* a run of dirty granules */

static const struct option commit_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "quiet", no_argument, NULL, 'q' },
    { "progress", no_argument, NULL, 'p' },
    { "format", required_argument, NULL, 'f' },
    { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
    { "cache", required_argument, NULL, 't' },
    { "drop", no_argument, NULL, 'd' },
    { "base", required_argument, NULL, 'b' },
    { "rate", required_argument, NULL, 'r' },
    { "object", required_argument, NULL, OPTION_OBJECT },
    { NULL, 0, NULL, 0 },
};

/* One option; returns -1 to go on, else the exit status. */
static int commit_option(int c, void *opaque)
{
    CommitArgs *a = opaque;

    switch (c) {
    case 't':
        a->cache = optarg;
        return -1;
    case 'b':
        a->base = optarg;
        a->drop = true;         /* -b implies -d */
        return -1;
    case 'd':
        a->drop = true;
        return -1;
    case 'p':
        a->progress = true;
        return -1;
    case 'r':
        return img_cvtnum("rate limit", optarg, &a->rate) ? -1 : 1;
    default:
        return img_common_option(c, "commit", &a->common);
    }
}

/* @name relative to the directory of @image, as backing names are. */
static char *path_beside(const char *image, const char *name)
{
    const char *slash = strrchr(image, '/');

    if (name[0] == '/' || !slash) {
        return g_strdup(name);
    }
    return g_strdup_printf("%.*s%s", (int)(slash - image + 1), image, name);
}

/* Does @name have a "proto:" prefix (json:, nbd:, ...)? */
static bool has_protocol(const char *name)
{
    size_t n = strcspn(name, ":/");

    return n > 0 && name[n] == ':';
}

/* Does -b @name mean the backing file of @overlay?  As the reference: a
 * name with a protocol prefix is compared as it is with the recorded
 * and the resolved backing name; a file name, relative to @overlay's
 * directory, must be the same file as the resolved backing name. */
static bool base_matches(BlockDriverState *overlay, const char *name)
{
    const char *recorded = bdrv_get_backing_filename(overlay);
    g_autofree char *full = bdrv_get_full_backing_filename(overlay, NULL);
    g_autofree char *want = NULL;
    g_autofree char *path = NULL;
    g_autofree char *have = NULL;

    if (!recorded || !full) {
        return false;
    }
    if (has_protocol(name) || has_protocol(recorded)) {
        return !strcmp(name, recorded) || !strcmp(name, full);
    }
    path = path_beside(bdrv_get_filename(overlay), name);
    want = realpath(path, NULL);
    have = realpath(full, NULL);
    return want && have && !strcmp(want, have);
}

/* The node -b names in the backing chain below @bs, or NULL. */
static BlockDriverState *find_base(BlockDriverState *bs, const char *name)
{
    for (BlockDriverState *b = bdrv_backing_bs(bs); b;
         bs = b, b = bdrv_backing_bs(b)) {
        if (base_matches(bs, name)) {
            return b;
        }
    }
    return NULL;
}

/* Find the commit target; NULL (error printed) if there is none. */
static BlockDriverState *commit_target(BlockBackend *blk, const CommitArgs *a,
                                       const char *filename)
{
    BlockDriverState *bs = blk_bs(blk), *base;

    if (a->base) {
        base = find_base(bs, a->base);
        if (!base) {
            error_report("Did not find '%s' in the backing chain of '%s'",
                         a->base, filename);
        }
        return base;
    }
    base = bdrv_backing_bs(bs);
    if (!base) {
        error_report("Image does not have a backing file");
    }
    return base;
}

/* The first of @ops ending after @offset (ops are sorted, disjoint). */
static guint op_at(GArray *ops, int64_t offset)
{
    guint lo = 0, hi = ops->len;

    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        CommitOp *op = &g_array_index(ops, CommitOp, mid);

        if (op->off + op->bytes <= offset) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* The plan as the reference's requests make it: a copy request copies
 * its whole granules (zeroes included: its base gets data clusters
 * there), a zero request writes zeroes, the rest is skipped. */
static int plan_from_ops(GArray *ops, int64_t offset, int64_t bytes,
                         int64_t *pnum)
{
    guint i = op_at(ops, offset);
    CommitOp *op = i < ops->len ? &g_array_index(ops, CommitOp, i) : NULL;

    if (!op) {
        *pnum = bytes;
        return BLOCK_JOB_SKIP;
    }
    if (op->off > offset) {
        *pnum = MIN(op->off - offset, bytes);
        return BLOCK_JOB_SKIP;
    }
    *pnum = MIN(op->off + op->bytes - offset, bytes);
    return op->chunks ? BLOCK_JOB_DATA : BLOCK_JOB_ZERO;
}

/* The job's plan: what the layers above the base allocate is copied,
 * as zeroes where it reads as zeroes; in the reference's requests when
 * they are known. */
static int coroutine_fn commit_plan(void *opaque, int64_t offset,
                                    int64_t bytes, int64_t *pnum,
                                    BlockJobFailure *f)
{
    CommitJob *c = opaque;
    int depth = 0;
    int ret;

    if (c->ops) {
        return plan_from_ops(c->ops, offset, bytes, pnum);
    }
    ret = bdrv_co_block_status_above(blk_bs(c->top), c->base, offset, bytes,
                                     pnum, NULL, NULL, &depth);
    if (ret < 0) {
        return block_job_fail(f, ret, offset, blk_bs(c->top), false);
    }
    if (!depth) {
        return BLOCK_JOB_SKIP;
    }
    return (ret & BDRV_BLOCK_ZERO) ? BLOCK_JOB_ZERO : BLOCK_JOB_DATA;
}

/* Does the whole chain read @bytes at @offset as data?  Offload writes
 * zeroes where the source reads as zeroes; the reference's copy writes
 * data there (its base gets data clusters), so such chunks are read and
 * written. */
static bool coroutine_fn chain_all_data(CommitJob *c, int64_t offset,
                                        int64_t bytes)
{
    while (bytes > 0) {
        int64_t pnum = 0;
        int ret = bdrv_co_block_status_above(blk_bs(c->top), NULL, offset,
                                             bytes, &pnum, NULL, NULL, NULL);

        if (ret < 0 || pnum <= 0 || !(ret & BDRV_BLOCK_DATA) ||
            (ret & BDRV_BLOCK_ZERO)) {
            return false;
        }
        offset += pnum;
        bytes -= pnum;
    }
    return true;
}

/*
 * Copy offload of a data chunk (copy_file_range below the formats: one
 * in-kernel copy instead of a read and a write).  Whatever fails (a
 * layer that cannot, data in an intermediate image, compressed
 * clusters, an I/O error) turns offload off for the rest of the job and
 * the chunk goes through reads and writes, which also say which image
 * failed where.
 */
static bool coroutine_fn commit_copy_offload(CommitJob *c, int64_t offset,
                                             int64_t bytes)
{
    if (!c->copy_offload || !chain_all_data(c, offset, bytes)) {
        return false;
    }
    if (blk_co_copy_range(c->top, offset, c->base_blk, offset, bytes, 0,
                          0) == 0) {
        return true;
    }
    c->copy_offload = false;
    return false;
}

/* The job's run: one chunk from the chain into the base. */
static int coroutine_fn commit_run(void *opaque, BlockJobExtent kind,
                                   int64_t offset, int64_t bytes, void *buf,
                                   BlockJobTurn *turn, BlockJobFailure *f)
{
    CommitJob *c = opaque;
    int ret;

    (void)turn;
    if (kind == BLOCK_JOB_ZERO) {
        ret = blk_co_pwrite_zeroes(c->base_blk, offset, bytes,
                                   BDRV_REQ_MAY_UNMAP);
        return block_job_fail(f, ret, offset, c->base, true);
    }
    if (commit_copy_offload(c, offset, bytes)) {
        return 0;
    }
    ret = blk_co_pread(c->top, offset, bytes, buf, 0);
    if (ret < 0) {
        return block_job_fail(f, ret, offset, blk_bs(c->top), false);
    }
    ret = blk_co_pwrite(c->base_blk, offset, bytes, buf, 0);
    return block_job_fail(f, ret, offset, c->base, true);
}

static const BlockJobDriver commit_job_driver = {
    .plan = commit_plan,
    .run = commit_run,
};

/* The cluster size of @bs, or 0. */
static int64_t cluster_of(BlockDriverState *bs)
{
    BlockDriverInfo bdi;

    return bdrv_get_info(bs, &bdi) == 0 ? bdi.cluster_size : 0;
}

/* The job's progress, as -p and SIGUSR1 print it: the reference's
 * lines, shown as the job gets through its share of the work. */
static void commit_progress(void *opaque, double percent)
{
    CommitJob *c = opaque;

    progress_plan_reach(&c->plan, percent / 100);
}

/*
 * The lines the reference prints.  Its job marks what the layers above
 * the base allocate in a bitmap of @gran-byte granules (the base's
 * cluster size within 4 KiB..64 KiB, else 64 KiB); it then takes runs of
 * marked granules (at most MIRROR_BUF_SIZE, one "iteration" each) from
 * the start and cuts each into requests where the chain's block status
 * changes, data requests at most MIRROR_MAX_IO, all whole granules (the
 * last one cut at the end of the disk).  At most MIRROR_IN_FLIGHT
 * requests are in flight, and copies hold granule-sized pieces of a
 * MIRROR_BUF_SIZE buffer.  Progress is the bytes of the completed
 * requests over a total the job refreshes between iterations as
 * done + in flight + marked: the marked granule at the end of the disk
 * counts whole until its iteration has been issued, which lowers the
 * early lines of a disk that is not a multiple of @gran.
 *
 * The reference's requests complete concurrently, so it sometimes sees
 * several at once (and prints fewer lines) or out of order; strata
 * prints the sequence of one completion at a time, in issue order, with
 * the job issuing whenever it can before the next completion.  Zero
 * writes, which only change the base's metadata, are taken as done when
 * issued (what it prints most often; with small base clusters they may
 * also wait for metadata I/O).  Copies waiting for buffer space are
 * taken to hold up the ones behind them.  Memory: 16 bytes a request.
 */
#define MIRROR_IN_FLIGHT 16

typedef struct CommitModel {
    CommitJob *c;
    int64_t len, gran;
    int64_t target_align;       /* zero writes need this alignment */
    GArray *runs;               /* int64_t pairs: marked [start, end) */
    GArray *ops;                /* CommitOp, in issue order */
    int64_t total;              /* bytes of all requests */
    int32_t iter;
    bool failed;                /* block status failed: no plan */
} CommitModel;

/* Mark the granules of what the layers above the base allocate. */
static int coroutine_fn model_mark(CommitModel *m)
{
    int64_t off = 0, pnum, g = m->gran;

    while (off < m->len) {
        int depth = 0;
        int ret = bdrv_co_block_status_above(blk_bs(m->c->top), m->c->base,
                                             off, m->len - off, &pnum,
                                             NULL, NULL, &depth);

        if (ret < 0 || pnum <= 0) {
            return -1;
        }
        if (depth) {
            int64_t s = ROUND_DOWN(off, g), e = ROUND_UP(off + pnum, g);
            int64_t *last = m->runs->len ?
                &g_array_index(m->runs, int64_t, m->runs->len - 1) : NULL;

            if (last && *last >= s) {
                *last = MAX(*last, e);
            } else {
                g_array_append_val(m->runs, s);
                g_array_append_val(m->runs, e);
            }
        }
        off += pnum;
    }
    return 0;
}

/* The reference's request at @off within @bytes: its size, and whether
 * it copies (a zero or discard request needs no buffer: whole granules
 * of a non-data extent that the base can zero in whole units). */
static CommitOp coroutine_fn model_request(CommitModel *m, int64_t off,
                                           int64_t bytes)
{
    int64_t io = 0, a = m->target_align;
    int depth = 0;
    int ret = bdrv_co_block_status_above(blk_bs(m->c->top), NULL, off,
                                         MIN(bytes, m->len - off), &io,
                                         NULL, NULL, &depth);
    bool copy = true;

    if (ret >= 0) {
        /* each qcow2 layer's answer ends with its L2 table */
        img_cut_at_tables(blk_bs(m->c->top), NULL, depth, off, &io);
    }
    if (ret < 0 || io <= 0) {
        io = MIN(bytes, MIRROR_MAX_IO);
    } else if (ret & BDRV_BLOCK_DATA) {
        io = MIN(io, MIRROR_MAX_IO);
    }
    io -= io % m->gran;
    if (io < m->gran) {
        io = m->gran;
    } else if (ret >= 0 && !(ret & BDRV_BLOCK_DATA)) {
        copy = a > 1 && (off % a || io % a);
    }
    io = MIN(io, m->len - off);
    return (CommitOp) {
        .off = off, .bytes = io, .iter = m->iter,
        .chunks = copy ? (int32_t)DIV_ROUND_UP(io, m->gran) : 0,
    };
}

/* Cut one run of marked granules into the job's requests: iterations of
 * at most MIRROR_BUF_SIZE, each cut into requests. */
static void coroutine_fn model_run(CommitModel *m, int64_t start,
                                   int64_t end)
{
    int64_t off = start, win_end = start;

    while (off < end && off < m->len) {
        CommitOp op;

        if (off >= win_end) {
            win_end = MIN(off + MIRROR_BUF_SIZE, end);
            m->iter++;
        }
        op = model_request(m, off, win_end - off);
        g_array_append_val(m->ops, op);
        m->total += op.bytes;
        off += op.bytes;
    }
}

static void coroutine_fn commit_model_co(void *opaque)
{
    CommitModel *m = opaque;

    if (model_mark(m) < 0) {
        m->failed = true;   /* the job meets the error and reports it */
        return;
    }
    for (guint i = 0; i < m->runs->len; i += 2) {
        model_run(m, g_array_index(m->runs, int64_t, i),
                  g_array_index(m->runs, int64_t, i + 1));
    }
}

/* The job's state while its run is replayed. */
typedef struct CommitReplay {
    CommitModel *m;
    guint next, oldest;         /* next op to issue, oldest copy in flight */
    int in_flight;
    int64_t buf_free, done, total;
    int32_t eof_iter;           /* iteration of the end granule, or -1 */
    bool eof_issued;
} CommitReplay;

/* The job waits for its oldest copy: the reference prints a line (the
 * job ran until this wait since the last one), then the copy
 * completes. */
static void replay_wait(CommitReplay *r)
{
    CommitOp *op;

    progress_plan_step(&r->m->c->plan,
                       (float)r->done / (float)r->total * 100.f);
    while (g_array_index(r->m->ops, CommitOp, r->oldest).chunks == 0) {
        r->oldest++;            /* a zero write, done when issued */
    }
    op = &g_array_index(r->m->ops, CommitOp, r->oldest++);
    r->done += op->bytes;
    r->buf_free += op->chunks;
    r->in_flight--;
}

/* The job's total between iterations: the marked end granule whole
 * until its iteration has been issued. */
static int64_t replay_total(const CommitReplay *r)
{
    int64_t over = ROUND_UP(r->m->len, r->m->gran) - r->m->len;

    return r->m->total + (r->eof_iter >= 0 && !r->eof_issued ? over : 0);
}

/* Issue the requests of one iteration, waiting for the oldest copies
 * while no slot or no buffer space is free.  A zero write only changes
 * metadata, which the base has at hand: it is done before the job goes
 * on.  (After an iteration the job sleeps for 0 ns, which its event
 * loop runs at once: no line in between.) */
static void replay_iteration(CommitReplay *r)
{
    GArray *ops = r->m->ops;
    int32_t iter = g_array_index(ops, CommitOp, r->next).iter;

    while (r->next < ops->len &&
           g_array_index(ops, CommitOp, r->next).iter == iter) {
        CommitOp *op = &g_array_index(ops, CommitOp, r->next);

        if (r->in_flight >= MIRROR_IN_FLIGHT ||
            (op->chunks && r->buf_free < op->chunks)) {
            replay_wait(r);
            continue;
        }
        if (op->chunks) {
            r->buf_free -= op->chunks;
            r->in_flight++;
        } else {
            r->done += op->bytes;
        }
        r->next++;
    }
    r->eof_issued |= iter == r->eof_iter;
}

/* Replay the job: its lines as progress_plan_step()s. */
static void commit_replay(CommitModel *m)
{
    CommitReplay r = {
        .m = m, .buf_free = MIRROR_BUF_SIZE / m->gran, .eof_iter = -1,
    };
    CommitOp *last = m->ops->len ?
        &g_array_index(m->ops, CommitOp, m->ops->len - 1) : NULL;

    if (last && m->len % m->gran &&
        ROUND_UP(m->len, m->gran) == g_array_index(m->runs, int64_t,
                                                   m->runs->len - 1)) {
        r.eof_iter = last->iter;
    }
    while (r.next < m->ops->len || r.in_flight > 0) {
        r.total = replay_total(&r);
        if (r.in_flight >= MIRROR_IN_FLIGHT || r.buf_free <= 0 ||
            (r.next == m->ops->len && r.in_flight > 0)) {
            replay_wait(&r);
        } else {
            replay_iteration(&r);
        }
    }
    progress_plan_step(&m->c->plan, 100.f);
}

/* The zero writes of the reference's job must cover whole allocation
 * units of the base (else it copies): 1 when it has none. */
static int64_t zero_align(BlockDriverState *base)
{
    BlockDriverInfo bdi;

    if (bdrv_get_info(base, &bdi) < 0) {
        return 1;
    }
    if (bdi.subcluster_size > 0) {
        return bdi.subcluster_size;
    }
    return bdi.cluster_size > 0 ? bdi.cluster_size : 1;
}

/* Work out the reference's requests and -p lines for committing @c. */
static void commit_model(CommitJob *c, int64_t len)
{
    int64_t cl = cluster_of(c->base);
    CommitModel m = {
        .c = c, .len = len,
        .gran = cl > 0 ? MIN(MAX(cl, 4096), 65536) : 65536,
        .target_align = zero_align(c->base),
        .runs = g_array_new(false, false, sizeof(int64_t)),
        .ops = g_array_new(false, false, sizeof(CommitOp)),
    };

    co_run_sync(commit_model_co, &m);
    if (m.total > 0) {
        commit_replay(&m);
    }
    g_array_free(m.runs, true);
    if (m.failed) {
        g_array_free(m.ops, true);
    } else {
        c->ops = m.ops;
    }
}

/* A write handle on the base, reopened read-write; grown to @len. */
static BlockBackend *open_base(BlockDriverState *base, int64_t len,
                               Error **errp)
{
    BlockBackend *blk;
    int64_t base_len;

    if (bdrv_reopen_set_read_only(base, false, errp) < 0) {
        return NULL;
    }
    /* zero writes may unmap, as into the overlay: a sparse base stays
     * sparse */
    bdrv_reopen_set_flags(base, bdrv_get_flags(base) | BDRV_O_UNMAP,
                          bdrv_get_detect_zeroes(base));
    blk = blk_new(BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE | BLK_PERM_RESIZE,
                  BLK_PERM_ALL);
    if (blk_insert_bs(blk, base, errp) < 0) {
        blk_unref(blk);
        return NULL;
    }
    base_len = blk_getlength(blk);
    if (base_len >= 0 && base_len < len) {
        /* the reference's job grows the base and keeps only the errno */
        int ret = blk_truncate(blk, len, false, PREALLOC_MODE_OFF, 0, NULL);

        if (ret < 0) {
            error_setg(errp, "Block job failed: %s", strerror(-ret));
            blk_unref(blk);
            return NULL;
        }
    }
    return blk;
}

/* The reference names only the error: not the image, not the offset. */
static void report_failure(const BlockJobFailure *f)
{
    error_report("Block job failed: %s", strerror(-f->ret));
}

/* Copy the chain above @base into it; false (reported) on failure. */
static bool commit_copy(BlockBackend *top, BlockDriverState *base,
                        const CommitArgs *a)
{
    CommitJob c = { .top = top, .base = base, .copy_offload = true };
    BlockJobFailure f = { 0 };
    Error *err = NULL;
    int64_t len = blk_getlength(top);
    BlockJobParams p = {
        .drv = &commit_job_driver, .opaque = &c, .length = len,
        .align = MAX(MAX(cluster_of(blk_bs(top)), cluster_of(base)), 65536),
        .rate = (uint64_t)a->rate, .progress = commit_progress,
    };

    if (len < 0) {
        error_report("Block job failed: %s", strerror((int)-len));
        return false;
    }
    c.base_blk = open_base(base, len, &err);
    if (!c.base_blk) {
        error_report_err(err);
        return false;
    }
    p.target = base;
    progress_plan_init(&c.plan, 1.0f);
    commit_model(&c, len);
    if (block_job_run(&p, &f) < 0) {
        report_failure(&f);
    } else {
        progress_plan_finish(&c.plan);
        progress_set(100);
    }
    progress_plan_free(&c.plan);
    if (c.ops) {
        g_array_free(c.ops, true);
    }
    blk_unref(c.base_blk);
    return f.ret == 0;
}

/* Without -d: empty the overlay so that it reads through again. */
static bool commit_make_empty(BlockBackend *blk)
{
    int ret;

    if (!bdrv_can_make_empty(blk_bs(blk))) {
        return true;
    }
    ret = bdrv_make_empty(blk_bs(blk));
    if (ret == 0) {
        ret = blk_flush(blk);
    }
    if (ret < 0) {
        error_report("Failed to empty %s: %s", bdrv_get_filename(blk_bs(blk)),
                     strerror(-ret));
    }
    return ret == 0;
}

/* The whole command after the image is open; false (reported) on error. */
static bool commit_run_all(BlockBackend *blk, const CommitArgs *a,
                           const char *filename)
{
    BlockDriverState *base = commit_target(blk, a, filename);

    if (!base || !commit_copy(blk, base, a)) {
        return false;
    }
    return a->drop || commit_make_empty(blk);
}

/* The reference inactivates the chain before closing it so that it
 * learns whether the persistent bitmaps could be stored: now, top down,
 * up to the first failure (reported; close then tries once more). */
static bool commit_store_bitmaps(BlockBackend *blk)
{
    for (BlockDriverState *bs = bdrv_skip_filters(blk_bs(blk)); bs;
         bs = bdrv_skip_filters(bdrv_backing_bs(bs))) {
        Error *err = NULL;

        if (bdrv_store_persistent_dirty_bitmaps(bs, &err) < 0) {
            error_reportf_err(err, "Lost persistent bitmaps during "
                              "inactivation of node '%s': ",
                              bdrv_get_node_name(bs));
            return false;
        }
    }
    return true;
}

int img_commit(int argc, char **argv)
{
    CommitArgs a = { .cache = "writeback" };
    int ret, flags = BDRV_O_RDWR | BDRV_O_UNMAP;
    bool writethrough, ok, stored;
    BlockBackend *blk;

    ret = img_getopt_loop(argc, argv, "commit", "f:ht:b:dpqr:",
                          commit_longopts, commit_option, &a);
    if (ret >= 0) {
        return ret;
    }
    if (!img_expect_one_file("commit", argc)) {
        return 1;
    }
    if (!img_parse_cache(a.cache, &flags, &writethrough)) {
        return 1;
    }
    blk = img_open_common(&a.common, argv[optind], flags, writethrough);
    if (!blk) {
        return 1;
    }
    a.progress = a.progress && !a.common.quiet;
    progress_init(a.progress, 1.0);
    progress_print(0, 100);
    ok = commit_run_all(blk, &a, argv[optind]);
    progress_end();
    stored = commit_store_bitmaps(blk);
    blk_unref(blk);
    if (ok && !stored) {
        error_report("Error while closing the image: %s", strerror(EINVAL));
        ok = false;
    }
    if (ok && !a.common.quiet) {
        printf("Image committed.\n");
    }
    return ok ? 0 : 1;
}
