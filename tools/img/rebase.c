#include "config.h"
/*
 * strata-img rebase: change the backing file of an image.
 *
 * Unsafe mode (-u) only rewrites the name in the header.  Safe mode first
 * makes the overlay independent of the difference: a block job
 * (block/job.h) walks what the overlay does not allocate, skips what
 * neither the old nor the new backing chain allocates (both read zeroes)
 * and, when the new backing file is in the old chain, what the layers
 * between them do not allocate; the rest is compared in the overlay's
 * (sub)cluster units (in the files where both chains keep the data
 * verbatim and the file driver can, else read from both chains), and
 * what differs is written into the overlay with the old chain's content
 * (compressed with -c).  Only then is the backing file changed, so the guest sees the same
 * disk before and after, and a crash in between leaves the old chain
 * readable as before.
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

/* The reference's piece (its buffer): what -p's steps are made of. */
#define REBASE_BUF_SIZE (2 * 1024 * 1024)
/* Our job: four workers of 1 MiB keep both cores busy comparing (two
 * of 2 MiB left one idle while the other waited on its hand-offs: W8
 * 0.77x against 0.63-0.67x, docs/benchmarks.md) in the same buffer
 * memory, so peak RSS stays at the reference's. */
#define REBASE_CHUNK    (1024 * 1024)
#define REBASE_WORKERS  4
/* The reference's rebase prints a line per 2 % moved (commit's per 1 %). */
#define REBASE_PROGRESS_SKIP 2.0f

typedef struct RebaseArgs {
    ImgCommonOpts common;
    const char *cache;
    const char *backing;      /* -b; "" for none */
    const char *backing_fmt;
    const char *backing_cache;
    bool progress;
    bool unsafe;
    bool compress;
} RebaseArgs;

static const struct option rebase_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "quiet", no_argument, NULL, 'q' },
    { "progress", no_argument, NULL, 'p' },
    { "force-share", no_argument, NULL, 'U' },
    { "format", required_argument, NULL, 'f' },
    { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
    { "cache", required_argument, NULL, 't' },
    { "backing", required_argument, NULL, 'b' },
    { "backing-format", required_argument, NULL, 'F' },
    { "backing-cache", required_argument, NULL, 'T' },
    { "backing-unsafe", no_argument, NULL, 'u' },
    { "compress", no_argument, NULL, 'c' },
    { "object", required_argument, NULL, OPTION_OBJECT },
    { NULL, 0, NULL, 0 },
};

/* Options that only set a flag; false if @c is not one of them. */
static bool rebase_flag(int c, RebaseArgs *a)
{
    switch (c) {
    case 'p':
        a->progress = true;
        return true;
    case 'u':
        a->unsafe = true;
        return true;
    case 'c':
        a->compress = true;
        return true;
    default:
        return false;
    }
}

/* One option; returns -1 to go on, else the exit status. */
static int rebase_option(int c, void *opaque)
{
    RebaseArgs *a = opaque;

    if (rebase_flag(c, a)) {
        return -1;
    }
    switch (c) {
    case 't':
        a->cache = optarg;
        return -1;
    case 'b':
        a->backing = optarg;
        return -1;
    case 'F':
        a->backing_fmt = optarg;
        return -1;
    case 'T':
        a->backing_cache = optarg;
        return -1;
    default:
        return img_common_option(c, "rebase", &a->common);
    }
}

/* A relative backing name is relative to the image's directory; a
 * json: or protocol name stays as it is. */
static char *backing_path(const char *image, const char *backing)
{
    Error *err = NULL;
    char *path = bdrv_combine_backing_name(image, backing, &err);

    if (!path) {
        error_reportf_err(err, "Could not resolve backing filename: ");
    }
    return path;
}

/* What the job's callbacks need. */
typedef struct RebaseJob {
    BlockDriverState *top;      /* the overlay (filters skipped) */
    BlockBackend *blk;          /* writes into the overlay */
    BlockBackend *old_blk;      /* the old backing chain; NULL: none */
    BlockBackend *new_blk;      /* the new one; NULL: none (-b "") */
    BlockDriverState *prefix;   /* the new backing node if in the old chain */
    int64_t old_len, new_len;
    /* The reference's piece that crosses the old chain's end, compared
     * whole: up to here the old side past that end is data (zeroes),
     * written as data; from a piece starting past the end, as zero
     * writes.  0: no such piece. */
    int64_t eof_piece_end;
    /* Where the reference's pieces start and end (ascending): it writes
     * each differing run of a piece with one request, so a run is cut
     * there (the overlay allocates each request's clusters together). */
    GArray *cuts;
    int64_t align;              /* compare and write unit */
    int64_t chunk;              /* largest chunk: each half of a buffer */
    BdrvRequestFlags write_flags;
    ProgressPlan plan;          /* the reference's -p lines */
} RebaseJob;

/* Open the new backing file read-only with its whole chain. */
static BlockBackend *open_new_backing(const RebaseArgs *a, const char *path,
                                      int flags)
{
    QDict *opts = qdict_new();
    Error *err = NULL;
    BlockBackend *blk;

    if (a->backing_fmt) {
        qdict_put_str(opts, "driver", a->backing_fmt);
    }
    if (a->common.force_share) {
        flags |= BDRV_O_FORCE_SHARE;
    }
    blk = blk_new_open(path, NULL, opts, flags, &err);
    if (!blk) {
        error_reportf_err(err, "Could not open new backing file '%s': ",
                          a->backing);
    }
    return blk;
}

/* The node of @top's backing chain that is the file @path, or NULL. */
static BlockDriverState *find_in_chain(BlockDriverState *top,
                                       const char *path)
{
    g_autofree char *want = realpath(path, NULL);

    for (BlockDriverState *b = bdrv_backing_bs(top); want && b;
         b = bdrv_backing_bs(b)) {
        g_autofree char *have = realpath(bdrv_get_filename(b), NULL);

        if (have && !strcmp(want, have)) {
            return b;
        }
    }
    return NULL;
}

/* A read-only handle on a node already in the graph. */
static BlockBackend *blk_on(BlockDriverState *bs)
{
    BlockBackend *blk = blk_new(BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL);
    Error *err = NULL;

    if (blk_insert_bs(blk, bs, &err) < 0) {
        error_report_err(err);
        blk_unref(blk);
        return NULL;
    }
    return blk;
}

/* Handles on the old and the new backing chains for the safe mode. */
static bool open_chains(RebaseJob *j, const RebaseArgs *a, int backing_flags)
{
    BlockDriverState *old = bdrv_backing_bs(j->top);
    g_autofree char *path = NULL;

    if (old && !(j->old_blk = blk_on(old))) {
        return false;
    }
    if (!a->backing[0]) {
        return true;
    }
    path = backing_path(bdrv_get_filename(j->top), a->backing);
    if (!path) {
        return false;
    }
    j->prefix = find_in_chain(j->top, path);
    if (j->prefix) {
        j->new_blk = blk_on(j->prefix);
    } else {
        j->new_blk = open_new_backing(a, path, backing_flags);
    }
    return j->new_blk != NULL;
}

/* The length of @blk's disk (0 without one); false (reported) on error. */
static bool chain_length(BlockBackend *blk, const char *name, int64_t *len)
{
    *len = blk ? blk_getlength(blk) : 0;
    if (*len < 0) {
        error_report("Could not get size of '%s': %s", name,
                     strerror((int)-*len));
        return false;
    }
    return true;
}

/* Does @blk's chain read zeroes at @off?  *pnum: for how long. */
static int coroutine_fn chain_reads_zero(BlockBackend *blk, int64_t len,
                                         int64_t off, int64_t bytes,
                                         int64_t *pnum)
{
    int depth = 0;
    int ret;

    if (!blk || off >= len) {
        *pnum = bytes;
        return 1;
    }
    bytes = MIN(bytes, len - off);
    ret = bdrv_co_block_status_above(blk_bs(blk), NULL, off, bytes, pnum,
                                     NULL, NULL, &depth);
    if (ret < 0) {
        return ret;
    }
    return !depth || (ret & BDRV_BLOCK_ZERO);
}

/* Is [off, +*pnum) unchanged between the old chain and the new backing
 * file, because nothing between them allocates it?  *depth: how many
 * layers the walk asked (0: all, or none when there was no walk). */
static int coroutine_fn prefix_unchanged_at(RebaseJob *j, int64_t off,
                                            int64_t *pnum, int *depth)
{
    int ret;

    *depth = 0;
    if (!j->prefix || !j->old_blk) {
        return 0;
    }
    if (blk_bs(j->old_blk) == j->prefix) {
        return 1;       /* the same backing file: nothing in between */
    }
    if (off >= j->old_len) {
        return 0;
    }
    ret = bdrv_co_block_status_above(blk_bs(j->old_blk), j->prefix, off,
                                     MIN(*pnum, j->old_len - off), pnum,
                                     NULL, NULL, depth);
    return ret < 0 ? ret : !*depth;
}

/* As prefix_unchanged_at(), for callers that need no depth. */
static int coroutine_fn prefix_unchanged(RebaseJob *j, int64_t off,
                                         int64_t *pnum)
{
    int depth;

    return prefix_unchanged_at(j, off, pnum, &depth);
}

/* Where the overlay first allocates something in [off, +bytes) (the
 * end if nowhere, or on an error, which the job meets again). */
static int64_t coroutine_fn first_allocated(RebaseJob *j, int64_t off,
                                            int64_t bytes)
{
    int64_t pos = off, end = MIN(off + bytes, bdrv_getlength(j->top));

    while (pos < end) {
        int64_t pnum = 0;
        int ret = bdrv_co_is_allocated(j->top, pos, end - pos, &pnum);

        if (ret > 0) {
            return pos;
        }
        if (ret < 0 || pnum <= 0) {
            break;
        }
        pos += pnum;
    }
    return off + bytes;
}

/* Round a planned extent (@off is a unit boundary) to the compare unit:
 * skipped extents end at a unit boundary (what is cut off is compared
 * instead, which is always correct), compared ones are widened to whole
 * units.  Never into what the overlay allocates itself: with -c and
 * extended L2 entries the unit (a cluster) is larger than what the
 * overlay allocates (a subcluster); the reference passes such a unit
 * over (or, comparing, fails an assertion), and the overlay's own data
 * must stay. */
static int64_t coroutine_fn align_extent(RebaseJob *j, int64_t off,
                                         int64_t n, int *kind)
{
    int64_t end = off + n, up = ROUND_UP(end, j->align), mine;

    if (*kind == BLOCK_JOB_SKIP && ROUND_DOWN(end, j->align) > off) {
        return ROUND_DOWN(end, j->align) - off;
    }
    if (end % j->align == 0) {
        return n;
    }
    mine = first_allocated(j, end, up - end);
    if (*kind == BLOCK_JOB_SKIP && mine < up) {
        return n;
    }
    *kind = BLOCK_JOB_DATA;     /* the widening is not known to be zero */
    return mine - off;
}

/* One extent of the plan: skip what the overlay allocates and what reads as
 * zeroes in both chains (or is unchanged below the new backing file);
 * compare the rest, knowing whether the old side reads zeroes. */
static int coroutine_fn plan_one(RebaseJob *j, int64_t off, int64_t bytes,
                                 int64_t *pnum, BlockJobFailure *f)
{
    int64_t n_new = bytes;
    int old_zero, new_zero, kind, ret;

    ret = bdrv_co_is_allocated(j->top, off, bytes, pnum);
    if (ret != 0) {
        return ret < 0 ? block_job_fail(f, ret, off, j->top, false)
                       : BLOCK_JOB_SKIP;
    }
    ret = prefix_unchanged(j, off, pnum);
    if (ret < 0) {
        return block_job_fail(f, ret, off, j->top, false);
    }
    if (ret > 0) {
        /* the old backing's units may be smaller than the overlay's: a
         * skip ending inside a unit would make the next write partial */
        kind = BLOCK_JOB_SKIP;
        *pnum = align_extent(j, off, *pnum, &kind);
        return kind;
    }
    old_zero = chain_reads_zero(j->old_blk, j->old_len, off, *pnum, pnum);
    if (old_zero < 0) {
        return block_job_fail(f, old_zero, off, blk_bs(j->old_blk), false);
    }
    if (off >= j->old_len && off < j->eof_piece_end) {
        *pnum = MIN(*pnum, j->eof_piece_end - off);
        old_zero = 0;   /* compared and written as data (see write_run) */
    }
    new_zero = chain_reads_zero(j->new_blk, j->new_len, off, *pnum, &n_new);
    if (new_zero < 0) {
        return block_job_fail(f, new_zero, off, blk_bs(j->new_blk), false);
    }
    *pnum = MIN(*pnum, n_new);
    kind = old_zero && new_zero ? BLOCK_JOB_SKIP :
           old_zero ? BLOCK_JOB_ZERO : BLOCK_JOB_DATA;
    *pnum = align_extent(j, off, *pnum, &kind);
    return kind;
}

/* Does a piece of the reference's end at @pos?  At the old chain's end
 * unless a piece crosses it: past the end, a piece of its own writes
 * zero clusters (see write_run()). */
static bool ends_old_piece(const RebaseJob *j, int64_t pos)
{
    return pos == j->old_len && j->eof_piece_end <= j->old_len;
}

/* The job's plan: consecutive extents to compare are one, as the
 * reference compares a whole piece and writes each differing run with
 * one request (a run over two extents must not become two writes: the
 * overlay allocates a run's clusters together). */
static int coroutine_fn rebase_plan(void *opaque, int64_t off, int64_t bytes,
                                    int64_t *pnum, BlockJobFailure *f)
{
    RebaseJob *j = opaque;
    int kind = plan_one(j, off, bytes, pnum, f);

    while (kind > BLOCK_JOB_SKIP && *pnum < bytes &&
           !ends_old_piece(j, off + *pnum)) {
        BlockJobFailure f2 = { 0 };
        int64_t more = 0;
        int next = plan_one(j, off + *pnum, bytes - *pnum, &more, &f2);

        if (next <= BLOCK_JOB_SKIP || more <= 0) {
            break;          /* a failure is met again, and reported, next */
        }
        if (next != kind) {
            kind = BLOCK_JOB_DATA;
        }
        *pnum += more;
    }
    return kind;
}

/* Read [off, +len) of a chain of length @clen into @buf (zeroes past its
 * end, or everywhere without a chain). */
static int coroutine_fn read_chain(BlockBackend *blk, int64_t clen,
                                   int64_t off, int64_t len, uint8_t *buf,
                                   BlockJobFailure *f)
{
    int64_t n = blk ? MIN(len, MAX(clen - off, 0)) : 0;
    int ret = 0;

    memset(buf + n, 0, len - n);
    if (n > 0) {
        ret = blk_co_pread(blk, off, n, buf, 0);
    }
    return block_job_fail(f, ret, off, blk ? blk_bs(blk) : NULL, false);
}

/* The new chain's read of a chunk, run beside the old chain's. */
typedef struct SideRead {
    RebaseJob *j;
    int64_t off, len;
    uint8_t *buf;
    BlockJobFailure f;
    int ret;
    bool done;
    Coroutine *waiter;
} SideRead;

static void coroutine_fn side_read_co(void *opaque)
{
    SideRead *r = opaque;

    r->ret = read_chain(r->j->new_blk, r->j->new_len, r->off, r->len, r->buf,
                        &r->f);
    r->done = true;
    if (r->waiter) {
        co_wake_later(r->waiter);
    }
}

/* Read both chains' view of a chunk at once (each file is then read as
 * one sequential stream, as the reference reads them). */
static int coroutine_fn read_both(RebaseJob *j, BlockJobExtent kind,
                                  int64_t off, int64_t len, uint8_t *old,
                                  uint8_t *new, BlockJobFailure *f)
{
    SideRead r = { .j = j, .off = off, .len = len, .buf = new };
    int ret;

    co_enter(co_create(side_read_co, &r));
    ret = read_chain(kind == BLOCK_JOB_ZERO ? NULL : j->old_blk, j->old_len,
                     off, len, old, f);
    while (!r.done) {
        r.waiter = co_self();
        co_yield();
    }
    if (ret == 0 && r.ret < 0) {
        *f = r.f;
        ret = r.ret;
    }
    return ret;
}

/* Bytes from the start of @a and @b that are equal (@differ false) or
 * differ (true), in whole units of @unit (the last may be short). */
static int64_t same_run(const uint8_t *a, const uint8_t *b, int64_t len,
                        int64_t unit, bool differ)
{
    int64_t pos = 0;

    while (pos < len) {
        int64_t n = MIN(unit, len - pos);

        if ((memcmp(a + pos, b + pos, n) != 0) != differ) {
            break;
        }
        pos += n;
    }
    return pos;
}

/* Write one request of a differing run: as data, or as zeroes when it
 * starts at or past the old backing file's end (the reference's choice,
 * which decides how the overlay allocates: a run that crosses the end is
 * data, also in its part past the end; one after it in the same piece
 * is zeroes). */
static int coroutine_fn write_request(RebaseJob *j, int64_t off, int64_t len,
                                      const uint8_t *old, BlockJobFailure *f)
{
    int ret;

    if (off >= j->old_len) {
        ret = blk_co_pwrite_zeroes(j->blk, off, len, 0);
    } else {
        ret = blk_co_pwrite(j->blk, off, len, old, j->write_flags);
    }
    return block_job_fail(f, ret, off, j->top, true);
}

/* The first piece boundary after @off (or INT64_MAX). */
static int64_t next_cut(const RebaseJob *j, int64_t off)
{
    guint lo = 0, hi = j->cuts ? j->cuts->len : 0;

    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;

        if (g_array_index(j->cuts, int64_t, mid) <= off) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return j->cuts && lo < j->cuts->len ?
           g_array_index(j->cuts, int64_t, lo) : INT64_MAX;
}

/* Write the old chain's view of a differing run into the overlay, one
 * request per piece of the reference's that it touches. */
static int coroutine_fn write_run(RebaseJob *j, int64_t off, int64_t len,
                                  const uint8_t *old, BlockJobFailure *f)
{
    int ret = 0;

    for (int64_t pos = 0; ret == 0 && pos < len;) {
        int64_t n = MIN(len - pos, next_cut(j, off + pos) - (off + pos));

        ret = write_request(j, off + pos, n, old + pos, f);
        pos += n;
    }
    return ret;
}

/* Where @blk's chain keeps [off, +bytes) verbatim: the protocol node
 * *file at *map, for *pnum bytes; -ENOTSUP if it does not (zeroes,
 * compressed, past its end, no chain). */
static int coroutine_fn host_extent(BlockBackend *blk, int64_t clen,
                                    int64_t off, int64_t bytes, int64_t *pnum,
                                    int64_t *map, BlockDriverState **file)
{
    int ret;

    if (!blk || off + bytes > clen) {
        return -ENOTSUP;
    }
    *file = NULL;
    ret = bdrv_co_block_status_above(blk_bs(blk), NULL, off, bytes, pnum,
                                     map, file, NULL);
    if (ret < 0) {
        return ret;
    }
    ret &= BDRV_BLOCK_OFFSET_VALID | BDRV_BLOCK_ZERO;
    return ret == BDRV_BLOCK_OFFSET_VALID && *file ? 0 : -ENOTSUP;
}

/* Compare both chains' data in [off, +len) where it lies in the files,
 * without reading it all into our buffers (see bdrv_co_compare_range()):
 * differ[] per unit, and the old chain's data of those that differ in
 * @old.  Data that both chains keep at the same place cannot differ.  Any failure: the caller reads and compares instead
 * (and reports a read error as such). */
static int coroutine_fn compare_in_place(RebaseJob *j, int64_t off,
                                         int64_t len, bool *differ,
                                         uint8_t *old)
{
    for (int64_t pos = 0; pos < len;) {
        BlockDriverState *fa, *fb;
        int64_t na, nb, ma, mb, n;
        int ret;

        ret = host_extent(j->old_blk, j->old_len, off + pos, len - pos, &na,
                          &ma, &fa);
        if (ret == 0) {
            ret = host_extent(j->new_blk, j->new_len, off + pos, len - pos,
                              &nb, &mb, &fb);
        }
        n = ROUND_DOWN(MIN(na, nb), j->align);
        if (ret < 0 || n <= 0) {
            return ret < 0 ? ret : -ENOTSUP;
        }
        if (fa == fb && ma == mb) {
            memset(differ + pos / j->align, 0, n / j->align);
        } else {
            ret = bdrv_co_compare_range(fa, ma, fb, mb, n, j->align,
                                        differ + pos / j->align, old + pos);
            if (ret < 0) {
                return ret;
            }
        }
        pos += n;
    }
    return 0;
}

/* Units of @differ from @first equal to differ[first]; at most @count. */
static int64_t unit_run(const bool *differ, int64_t first, int64_t count)
{
    int64_t i = first + 1;

    while (i < count && differ[i] == differ[first]) {
        i++;
    }
    return i - first;
}

/* Write the old chain's view of the units @differ marks, which @old
 * holds at their place, into the overlay. */
static int coroutine_fn write_differing(RebaseJob *j, int64_t off,
                                        int64_t len, const bool *differ,
                                        uint8_t *old, BlockJobFailure *f)
{
    int64_t units = len / j->align;
    int ret = 0;

    for (int64_t u = 0; ret == 0 && u < units;) {
        int64_t n = unit_run(differ, u, units);
        int64_t at = off + u * j->align, bytes = n * j->align;

        if (differ[u]) {
            ret = write_run(j, at, bytes, old + u * j->align, f);
        }
        u += n;
    }
    return ret;
}

/* The fast path of a data chunk: compare in place, then write what
 * differs; -ENOTSUP (nothing written) when the chunk cannot take it. */
static int coroutine_fn run_in_place(RebaseJob *j, int64_t off, int64_t len,
                                     uint8_t *old, BlockJobTurn *turn,
                                     BlockJobFailure *f)
{
    g_autofree bool *differ = NULL;

    if (len % j->align) {
        return -ENOTSUP;
    }
    differ = g_new(bool, len / j->align);
    if (compare_in_place(j, off, len, differ, old) < 0) {
        return -ENOTSUP;
    }
    block_job_wait_turn(turn);      /* clusters allocated in disk order */
    return write_differing(j, off, len, differ, old, f);
}

/* The job's run: compare both chains and keep the old view where they
 * differ.  The overlay's (sub)clusters are the unit, so a write never
 * has to copy the rest of one from the old chain. */
static int coroutine_fn rebase_run_chunk(void *opaque, BlockJobExtent kind,
                                         int64_t off, int64_t len, void *buf,
                                         BlockJobTurn *turn,
                                         BlockJobFailure *f)
{
    RebaseJob *j = opaque;
    uint8_t *old = buf, *new = (uint8_t *)buf + j->chunk;
    int64_t pos = 0;
    int ret;

    if (kind == BLOCK_JOB_DATA) {
        ret = run_in_place(j, off, len, old, turn, f);
        if (ret != -ENOTSUP) {
            return ret;
        }
    }
    ret = read_both(j, kind, off, len, old, new, f);
    block_job_wait_turn(turn);      /* clusters allocated in disk order */
    while (ret == 0 && pos < len) {
        int64_t same = same_run(old + pos, new + pos, len - pos, j->align,
                                false);
        int64_t diff = same_run(old + pos + same, new + pos + same,
                                len - pos - same, j->align, true);

        if (diff > 0) {
            ret = write_run(j, off + pos + same, diff, old + pos + same, f);
        }
        pos += same + diff;
    }
    return ret;
}

static const BlockJobDriver rebase_job_driver = {
    .plan = rebase_plan,
    .run = rebase_run_chunk,
};

/* The job's progress, as -p and SIGUSR1 print it: the reference's
 * lines, shown as the job gets through its share of the work. */
static void rebase_progress(void *opaque, double percent)
{
    RebaseJob *j = opaque;

    progress_plan_reach(&j->plan, percent / 100);
}

/* How the reference's copy loop advances: it looks at the image in
 * pieces of at most REBASE_BUF_SIZE, cut where the overlay's allocation
 * changes (and, with the new backing file in the old chain, where the
 * layers between them do); a piece the overlay allocates, or that those
 * layers leave alone, is passed over silently; every other one moves
 * the bar by 100 / (size / pieces of REBASE_BUF_SIZE) percent (integer
 * division), capped at 100. */
typedef struct RebaseModel {
    RebaseJob *j;
    int64_t size;
} RebaseModel;

/* Does the reference's loop look at [off, +*n) (0/1; *n cut)?  Each
 * layer's answer ends at its L2 table's end, as the reference's do, in
 * the overlay and in the layers its walk down to the new backing file
 * asks; past the old chain's end the piece is looked at whole. */
static int coroutine_fn model_piece(RebaseJob *j, int64_t off, int64_t *n)
{
    int depth, ret;

    img_cut_at_tables(j->top, NULL, 1, off, n);
    ret = bdrv_co_is_allocated(j->top, off, *n, n);
    if (ret != 0) {
        return ret < 0 ? ret : 0;
    }
    ret = prefix_unchanged_at(j, off, n, &depth);
    if (ret < 0) {
        return ret;
    }
    if (j->old_blk && j->prefix) {
        img_cut_at_tables(blk_bs(j->old_blk), j->prefix, depth, off, n);
    }
    return !ret;
}

/* Do the chains differ in [off, +len) (a read failure: no; the job
 * meets it and reports it)? */
static bool coroutine_fn chains_differ(RebaseJob *j, int64_t off,
                                       int64_t len)
{
    g_autofree uint8_t *a = g_malloc(len);
    g_autofree uint8_t *b = g_malloc(len);
    BlockJobFailure f = { 0 };

    return read_chain(j->old_blk, j->old_len, off, len, a, &f) == 0 &&
           read_chain(j->new_blk, j->new_len, off, len, b, &f) == 0 &&
           memcmp(a, b, len) != 0;
}

/* With extended L2 the reference writes whole subclusters, and a data
 * write gives a cluster without one its host cluster: a later piece
 * that starts in that cluster then ends at the cluster's end (the rest
 * are unallocated subclusters of an allocated cluster).  Cut *n so when
 * the pieces before @off in its cluster wrote data (the chains differ
 * where the overlay leaves them visible, before the old backing file's
 * end). */
static void coroutine_fn cut_after_write(RebaseJob *j, int64_t off,
                                         int64_t *n)
{
    BlockDriverInfo bdi;
    int64_t cs, x, pn = 0, map = 0;
    int ret;

    if (bdrv_get_info(j->top, &bdi) < 0 || !bdi.subcluster_size ||
        bdi.subcluster_size >= bdi.cluster_size || !j->old_blk) {
        return;
    }
    cs = bdi.cluster_size;
    x = ROUND_DOWN(off, cs);
    ret = bdrv_co_block_status(j->top, off, 1, &pn, &map, NULL);
    if (x == off || ret < 0 || (ret & BDRV_BLOCK_OFFSET_VALID)) {
        return;         /* a cluster boundary, or a host cluster already */
    }
    for (; x < MIN(off, j->old_len); x += pn) {
        ret = bdrv_co_is_allocated(j->top, x, off - x, &pn);
        if (ret < 0 || pn <= 0) {
            return;
        }
        if (!ret && chains_differ(j, x, MIN(pn, j->old_len - x))) {
            *n = MIN(*n, ROUND_DOWN(off, cs) + cs - off);
            return;
        }
    }
}

/* A piece the reference looks at is widened to whole write units (its
 * start rounded down, its end up, capped at @size) before it is
 * compared, and its loop goes on from the widened end: a piece cut
 * short by a lower layer's extent still takes the rest of its unit. */
static int64_t widen_piece(const RebaseJob *j, int64_t *off, int64_t n,
                           int64_t size)
{
    int64_t start = ROUND_DOWN(*off, j->align);
    int64_t end = MIN(ROUND_UP(*off + n, j->align), size);

    *off = start;
    return end - start;
}

/* Note a piece boundary at @pos (they come in ascending order). */
static void add_cut(RebaseJob *j, int64_t pos)
{
    guint n = j->cuts->len;

    if (!n || g_array_index(j->cuts, int64_t, n - 1) < pos) {
        g_array_append_val(j->cuts, pos);
    }
}

static void coroutine_fn model_co(void *opaque)
{
    RebaseModel *m = opaque;
    int64_t size = m->size, n;
    float step = 0, cur = 0;

    if (size > 0) {
        step = (float)100 / (size / MIN(size, (int64_t)REBASE_BUF_SIZE));
    }
    for (int64_t off = 0; off < size; off += n) {
        int ret;

        n = MIN((int64_t)REBASE_BUF_SIZE, size - off);
        cut_after_write(m->j, off, &n);
        ret = model_piece(m->j, off, &n);
        if (ret < 0 || n <= 0) {
            return;         /* the job meets the error and reports it */
        }
        if (ret) {
            n = widen_piece(m->j, &off, n, size);
            add_cut(m->j, off);
            add_cut(m->j, off + n);
            cur = MIN(cur + step / 100 * 100, 100.f);
            progress_plan_step(&m->j->plan, cur);
            if (off < m->j->old_len && off + n > m->j->old_len) {
                m->j->eof_piece_end = off + n;
            }
        }
    }
}

/* The compare unit: the overlay's subcluster or cluster (whole clusters
 * when compressing), at least 512 bytes. */
static int64_t compare_unit(const BlockDriverInfo *bdi, bool compress)
{
    int64_t unit = bdi->cluster_size;

    if (!compress && bdi->subcluster_size) {
        unit = bdi->subcluster_size;
    }
    return unit >= 512 ? unit : 512;
}

/* The reference's one line for the failure (it names neither the image
 * nor the offset). */
static void report_job_failure(const RebaseJob *j, const BlockJobFailure *f)
{
    if (f->write) {
        error_report("Error while writing to COW image: %s",
                     strerror(-f->ret));
    } else if (j->old_blk && f->image &&
               !strcmp(f->image, bdrv_get_filename(blk_bs(j->old_blk)))) {
        error_report("error while reading from old backing file");
    } else if (j->new_blk && f->image &&
               !strcmp(f->image, bdrv_get_filename(blk_bs(j->new_blk)))) {
        error_report("error while reading from new backing file");
    } else {
        error_report("error while reading image metadata: %s",
                     strerror(-f->ret));
    }
}

/* Safe mode: make the overlay independent of what differs. */
static bool rebase_copy(RebaseJob *j, BlockBackend *blk, const char *image,
                        const RebaseArgs *a)
{
    BlockJobFailure f = { 0 };
    int64_t len = blk_getlength(blk);
    BlockJobParams p = {
        .drv = &rebase_job_driver, .opaque = j, .length = len,
        .chunk = REBASE_CHUNK, .align = j->align,
        .buf_size = 2 * REBASE_CHUNK, .target = j->top,
        .workers = REBASE_WORKERS, .in_order = true,
        .progress = rebase_progress,
    };

    if (len < 0) {
        error_report("Could not get size of '%s': %s", image,
                     strerror((int)-len));
        return false;
    }
    if (!chain_length(j->old_blk, bdrv_get_backing_filename(j->top) ?: "",
                      &j->old_len) ||
        !chain_length(j->new_blk, a->backing, &j->new_len)) {
        return false;
    }
    if (j->align > REBASE_CHUNK) {
        p.chunk = j->align;
        p.buf_size = 2 * j->align;
    }
    j->chunk = p.chunk;
    co_run_sync(model_co, &(RebaseModel){ .j = j, .size = len });
    if (block_job_run(&p, &f) < 0) {
        report_job_failure(j, &f);
        return false;
    }
    progress_plan_finish(&j->plan);
    return true;
}

/* Checks on the open image, then (safe mode) the copy. */
static bool rebase_prepare(BlockBackend *blk, const RebaseArgs *a,
                           const char *image, int backing_flags)
{
    RebaseJob j = { .blk = blk, .top = bdrv_skip_filters(blk_bs(blk)) };
    BlockDriverInfo bdi;
    bool ok;

    if (a->compress && !bdrv_can_write_compressed(j.top)) {
        error_report("Compression not supported for this file format");
        return false;
    }
    if (a->backing_fmt && !bdrv_find_format(a->backing_fmt)) {
        error_report("Invalid format name: '%s'", a->backing_fmt);
        return false;
    }
    /* the reference asks for the cluster size even in unsafe mode: a
     * node that cannot tell (null-co) fails here */
    if (bdrv_get_info(blk_bs(blk), &bdi) < 0) {
        error_report("could not get block driver info");
        return false;
    }
    if (a->unsafe) {
        return true;
    }
    j.align = compare_unit(&bdi, a->compress);
    progress_plan_init(&j.plan, REBASE_PROGRESS_SKIP);
    j.cuts = g_array_new(false, false, sizeof(int64_t));
    j.write_flags = a->compress ? BDRV_REQ_WRITE_COMPRESSED : 0;
    ok = open_chains(&j, a, backing_flags) &&
         rebase_copy(&j, blk, image, a);
    if (j.old_blk) {
        blk_unref(j.old_blk);
    }
    if (j.new_blk) {
        blk_unref(j.new_blk);
    }
    progress_plan_free(&j.plan);
    g_array_unref(j.cuts);
    return ok;
}

/* Record the new backing file in the image's metadata. */
static bool change_backing(BlockBackend *blk, const RebaseArgs *a)
{
    const char *name = a->backing ? a->backing : "(null)";
    bool none = !a->backing || !a->backing[0];
    Error *err = NULL;
    int ret;

    if (!none && !a->backing_fmt) {
        error_report("Could not change the backing file to '%s': backing "
                     "format must be specified", name);
        return false;
    }
    ret = bdrv_change_backing_file(blk_bs(blk), none ? NULL : a->backing,
                                   none ? NULL : a->backing_fmt, &err);
    error_free(err);
    if (ret == -ENOSPC) {
        error_report("Could not change the backing file to '%s': No space "
                     "left in the file header", name);
    } else if (ret < 0) {
        error_report("Could not change the backing file to '%s': %s", name,
                     strerror(-ret));
    }
    return ret == 0;
}

/* Cache modes of the image and of the backing files (flags out). */
static bool rebase_cache_modes(const RebaseArgs *a, int *flags,
                               bool *writethrough, int *backing_flags)
{
    bool backing_wt;

    if (!img_parse_cache(a->cache, flags, writethrough)) {
        return false;
    }
    if (bdrv_parse_cache_mode(a->backing_cache, backing_flags,
                              &backing_wt) < 0) {
        error_report("Invalid source cache option: %s", a->backing_cache);
        return false;
    }
    return true;
}

/* Everything after the arguments were checked; returns the status. */
static int rebase_run(RebaseArgs *a, const char *image)
{
    int flags = BDRV_O_RDWR | (a->unsafe ? BDRV_O_NO_BACKING : 0);
    int backing_flags = 0;
    bool writethrough, ok = false;
    BlockBackend *blk = NULL;

    progress_init(a->progress, REBASE_PROGRESS_SKIP);
    progress_print(0, 100);
    if (!rebase_cache_modes(a, &flags, &writethrough, &backing_flags)) {
        goto out;
    }
    blk = img_open_checked(a->common.image_opts, image, a->common.fmt, flags,
                           writethrough, a->common.quiet, false);
    if (blk && rebase_prepare(blk, a, image, backing_flags)) {
        /* nothing may be in flight while the header changes */
        bdrv_drained_begin(blk_bs(blk));
        ok = change_backing(blk, a);
        bdrv_drained_end(blk_bs(blk));
        progress_print(100, 0);
    }
out:
    progress_end();
    if (blk) {
        blk_unref(blk);
    }
    return ok ? 0 : 1;
}

int img_rebase(int argc, char **argv)
{
    RebaseArgs a = { .cache = "writeback", .backing_cache = "writeback" };
    int ret;

    ret = img_getopt_loop(argc, argv, "rebase", "hf:F:b:upt:T:qUc",
                          rebase_longopts, rebase_option, &a);
    if (ret >= 0) {
        return ret;
    }
    a.progress = a.progress && !a.common.quiet;
    if (!img_expect_one_file("rebase", argc)) {
        return 1;
    }
    if (!a.unsafe && !a.backing) {
        return img_usage_error("rebase", "Must specify backing file (-b) or "
                               "use unsafe mode (-u)");
    }
    return rebase_run(&a, argv[optind]);
}
