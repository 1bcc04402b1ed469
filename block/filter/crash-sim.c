#include "config.h"
/*
 * The "crash-sim" filter: a power cut for tests.  It sits between a
 * format driver and its file and keeps a journal of every change that
 * reached the file since the last completed flush (write, write-zeroes,
 * discard, truncate: the bytes before and after the change).  A
 * completed flush empties the journal: what it covered is durable.  At
 * the configured point the power fails: the unflushed changes are
 * dropped (all of them, or a seeded random subset, as a disk's volatile
 * cache may keep some), so the file is left as a host crash would leave
 * it, and then the process exits at once (status 86) or every further
 * request fails with EIO.  Without a crash point it only passes through.
 *
 * Options (all optional):
 *   after-writes=N    cut the power just before the (N+1)-th change would
 *                     reach the file (N changes went through);
 *   after-flushes=N   just before the (N+1)-th flush reaches the file;
 *   at-offset=X       just before the first change covering byte X;
 *   drop=all|random   unflushed changes lost: every one (default) or each
 *                     with probability 1/2;
 *   seed=S            random source for drop=random (default 0);
 *   on-crash=exit|fail  _exit(86) after printing one line on stderr
 *                     (default), or fail every later request with EIO;
 *   journal-max=SIZE  bytes of journal kept at most (default 256M); a
 *                     change that would pass it fails with ENOMEM;
 *   report=on|off     at close, say on stderr how many changes and
 *                     flushes went through (tests find their crash
 *                     points with it).
 *
 * Only changes are serialised (one at a time, so that "before" and
 * "after" are exact); reads pass concurrently.  FUA is not passed on:
 * the core emulates it with a flush, which this filter sees.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "block/drivers.h"

#define CRASH_SIM_EXIT_STATUS 86

/* One change since the last completed flush: [offset, offset + bytes)
 * before (clipped to old_len) and after (clipped to new_len). */
typedef struct CrashChange {
    int64_t offset, bytes;
    int64_t old_len, new_len;
    uint8_t *before, *after;
} CrashChange;

typedef struct CrashNode {
    int64_t after_writes, after_flushes, at_offset;   /* -1: not set */
    bool drop_random, exit_on_crash, report;
    uint64_t seed, journal_max;
    uint64_t writes, flushes, journal_bytes;
    GPtrArray *journal;           /* CrashChange * */
    CoMutex lock;                 /* one change or flush at a time */
    bool crashed;
} CrashNode;

static const BlockOptDesc crash_opts[] = {
    { "after-writes", OPT_NUMBER, "Power cut before change N+1", NULL },
    { "after-flushes", OPT_NUMBER, "Power cut before flush N+1", NULL },
    { "at-offset", OPT_SIZE, "Power cut before the first change of this "
      "byte", NULL },
    { "drop", OPT_STRING, "Unflushed changes lost: all or random", "all" },
    { "seed", OPT_NUMBER, "Seed for drop=random", "0" },
    { "on-crash", OPT_STRING, "After the power cut: exit or fail", "exit" },
    { "journal-max", OPT_SIZE, "Most bytes kept in the journal", "256M" },
    { "report", OPT_BOOL, "Print the counts of changes and flushes at close",
      "off" },
    { NULL },
};

static const char *const crash_strong_opts[] = {
    "after-writes", "after-flushes", "at-offset", "drop", "seed",
    "on-crash", NULL,
};

static void crash_change_free(gpointer p)
{
    CrashChange *c = p;

    g_free(c->before);
    g_free(c->after);
    g_free(c);
}

/* A trigger option: -1 when absent. */
static int64_t crash_opt_point(QDict *options, const char *name, bool size,
                               Error **errp)
{
    if (!qdict_haskey(options, name)) {
        return -1;
    }
    if (size) {
        return bdrv_opt_size(options, name, 0, errp);
    }
    return bdrv_opt_number(options, name, 0, errp);
}

/* One of two words, or an error naming the option. */
static bool crash_opt_choice(QDict *options, const char *name,
                             const char *yes, const char *no, bool *out,
                             Error **errp)
{
    const char *v = bdrv_opt_str(options, name, no);

    if (strcmp(v, yes) && strcmp(v, no)) {
        error_setg(errp, "Parameter '%s' expects '%s' or '%s'", name, yes, no);
        return false;
    }
    *out = !strcmp(v, yes);
    return true;
}

static int crash_parse(CrashNode *s, QDict *options, Error **errp)
{
    Error *err = NULL;
    bool fail;

    s->after_writes = crash_opt_point(options, "after-writes", false, &err);
    if (!err) {
        s->after_flushes = crash_opt_point(options, "after-flushes", false,
                                           &err);
    }
    if (!err) {
        s->at_offset = crash_opt_point(options, "at-offset", true, &err);
    }
    if (!err) {
        s->seed = bdrv_opt_number(options, "seed", 0, &err);
    }
    if (!err) {
        s->journal_max = bdrv_opt_size(options, "journal-max", 256 << 20,
                                       &err);
    }
    if (!err) {
        s->report = bdrv_opt_bool(options, "report", false, &err);
    }
    if (err) {
        error_propagate(errp, err);
        return -EINVAL;
    }
    if (!crash_opt_choice(options, "drop", "random", "all", &s->drop_random,
                          errp) ||
        !crash_opt_choice(options, "on-crash", "fail", "exit", &fail, errp)) {
        return -EINVAL;
    }
    s->exit_on_crash = !fail;
    return 0;
}

static int crash_open(BlockDriverState *bs, QDict *options, int flags,
                      Error **errp)
{
    CrashNode *s = bs->opaque;
    int ret = crash_parse(s, options, errp);

    if (ret < 0) {
        return ret;
    }
    if (!bdrv_open_filtered_child(bs, NULL, options, "file", errp)) {
        return -EINVAL;
    }
    /* a FUA write would be durable without a flush we can see */
    bs->supported_write_flags &= ~BDRV_REQ_FUA;
    bs->supported_zero_flags &= ~BDRV_REQ_FUA;
    s->journal = g_ptr_array_new_with_free_func(crash_change_free);
    co_mutex_init(&s->lock);
    return 0;
}

static void crash_close(BlockDriverState *bs)
{
    CrashNode *s = bs->opaque;

    if (s->report && !s->crashed) {
        fprintf(stderr, "crash-sim: no power cut (%" PRIu64 " changes, %"
                PRIu64 " flushes)\n", s->writes, s->flushes);
    }
    g_clear_pointer(&s->journal, g_ptr_array_unref);
}

/* ---- the journal ---- */

/* The file's bytes in [offset, offset + bytes) that lie below @len
 * (NULL when none do); *@n says how many. */
static int coroutine_fn crash_read(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, int64_t len,
                                   uint8_t **buf)
{
    int64_t n = MIN(bytes, len - offset);
    IOVector v;
    int ret;

    *buf = NULL;
    if (n <= 0) {
        return 0;
    }
    *buf = g_malloc(n);
    iov_vec_init_buf(&v, *buf, n);
    ret = bdrv_co_preadv(bs->file, offset, n, &v, 0);
    iov_vec_destroy(&v);
    return ret;
}

/* The file's length (in whole sectors, as the core keeps it: qcow2
 * files always are). */
static int64_t coroutine_fn crash_file_len(BlockDriverState *bs)
{
    return bdrv_co_getlength(bs->file->bs);
}

/* Open a journal entry for a change of [offset, offset + bytes). */
static int coroutine_fn crash_begin(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes, CrashChange **out)
{
    CrashNode *s = bs->opaque;
    g_autofree CrashChange *c = g_new0(CrashChange, 1);
    int ret;

    if (s->journal_bytes + 2 * (uint64_t)bytes > s->journal_max) {
        fprintf(stderr, "crash-sim: journal-max (%" PRIu64 " bytes) "
                "reached\n", s->journal_max);
        return -ENOMEM;
    }
    c->offset = offset;
    c->bytes = bytes;
    c->old_len = crash_file_len(bs);
    if (c->old_len < 0) {
        return c->old_len;
    }
    ret = crash_read(bs, offset, bytes, c->old_len, &c->before);
    if (ret < 0) {
        g_free(c->before);
        return ret;
    }
    *out = g_steal_pointer(&c);
    return 0;
}

/* Close it once the change went through (or drop it if it failed:
 * the bytes may have changed all the same, so they are still read). */
static int coroutine_fn crash_end(BlockDriverState *bs, CrashChange *c)
{
    CrashNode *s = bs->opaque;
    int ret;

    c->new_len = crash_file_len(bs);
    if (c->new_len < 0) {
        crash_change_free(c);
        return c->new_len;
    }
    ret = crash_read(bs, c->offset, c->bytes, c->new_len, &c->after);
    if (ret < 0) {
        crash_change_free(c);
        return ret;
    }
    s->journal_bytes += 2 * c->bytes;
    g_ptr_array_add(s->journal, c);
    s->writes++;
    return 0;
}

/* Put back one side of a change: its bytes and the file length. */
static void coroutine_fn crash_apply(BlockDriverState *bs, CrashChange *c,
                                     bool after)
{
    int64_t len = after ? c->new_len : c->old_len;
    int64_t n = MIN(c->bytes, len - c->offset);
    IOVector v;

    if (c->old_len != c->new_len) {
        bdrv_co_truncate(bs->file, len, true, PREALLOC_MODE_OFF, 0, NULL);
    }
    if (n > 0) {
        iov_vec_init_buf(&v, after ? c->after : c->before, n);
        bdrv_co_pwritev(bs->file, c->offset, n, &v, 0);
        iov_vec_destroy(&v);
    }
}

/* The power fails: every unflushed change is undone, newest first, and
 * with drop=random the survivors are then redone in their order. */
static void coroutine_fn crash_now(BlockDriverState *bs, const char *why)
{
    CrashNode *s = bs->opaque;
    g_autoptr(GRand) rand = g_rand_new_with_seed((guint32)s->seed);
    guint n = s->journal->len, kept = 0;
    g_autofree bool *keep = g_new0(bool, n + 1);

    for (guint i = 0; i < n; i++) {
        keep[i] = s->drop_random && g_rand_boolean(rand);
    }
    for (guint i = n; i-- > 0;) {
        crash_apply(bs, g_ptr_array_index(s->journal, i), false);
    }
    for (guint i = 0; i < n; i++) {
        if (keep[i]) {
            crash_apply(bs, g_ptr_array_index(s->journal, i), true);
            kept++;
        }
    }
    bdrv_co_flush(bs->file->bs);
    fprintf(stderr, "crash-sim: power cut %s (%" PRIu64 " changes, %" PRIu64
            " flushes; %u unflushed changes, %u kept)\n", why, s->writes,
            s->flushes, n, kept);
    s->crashed = true;
    g_ptr_array_set_size(s->journal, 0);
    if (s->exit_on_crash) {
        fflush(NULL);
        _exit(CRASH_SIM_EXIT_STATUS);
    }
}

/* Is the power to fail before a change of [offset, offset + bytes)? */
static bool crash_point_write(CrashNode *s, int64_t offset, int64_t bytes)
{
    if (s->after_writes >= 0 && s->writes >= (uint64_t)s->after_writes) {
        return true;
    }
    return s->at_offset >= offset && s->at_offset - offset < bytes;
}

/* ---- requests ---- */

typedef enum { CHANGE_WRITE, CHANGE_ZEROES, CHANGE_DISCARD } CrashKind;

typedef struct CrashReq {
    CrashKind kind;
    int64_t offset, bytes;
    IOVector *qiov;
    BdrvRequestFlags flags;
} CrashReq;

static int coroutine_fn crash_pass(BlockDriverState *bs, CrashReq *r)
{
    switch (r->kind) {
    case CHANGE_WRITE:
        return bdrv_co_pwritev(bs->file, r->offset, r->bytes, r->qiov,
                               r->flags);
    case CHANGE_ZEROES:
        return bdrv_co_pwrite_zeroes(bs->file, r->offset, r->bytes, r->flags);
    default:
        return bdrv_co_pdiscard(bs->file, r->offset, r->bytes);
    }
}

/* Every change: maybe the power cut first, then journal, pass, journal. */
static int coroutine_fn crash_change(BlockDriverState *bs, CrashReq *r)
{
    CrashNode *s = bs->opaque;
    CrashChange *c = NULL;
    int ret;

    co_mutex_lock(&s->lock);
    if (!s->crashed && crash_point_write(s, r->offset, r->bytes)) {
        crash_now(bs, r->kind == CHANGE_WRITE ? "before a write" :
                  r->kind == CHANGE_ZEROES ? "before a write-zeroes" :
                  "before a discard");
    }
    ret = s->crashed ? -EIO : crash_begin(bs, r->offset, r->bytes, &c);
    if (ret == 0) {
        ret = crash_pass(bs, r);
        int ret2 = crash_end(bs, c);
        ret = ret < 0 ? ret : ret2;
    }
    co_mutex_unlock(&s->lock);
    return ret;
}

static int coroutine_fn crash_co_pwritev(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes, IOVector *qiov,
                                         BdrvRequestFlags flags)
{
    CrashReq r = { CHANGE_WRITE, offset, bytes, qiov, flags };

    return crash_change(bs, &r);
}

static int coroutine_fn crash_co_pwrite_zeroes(BlockDriverState *bs,
                                               int64_t offset, int64_t bytes,
                                               BdrvRequestFlags flags)
{
    CrashReq r = { CHANGE_ZEROES, offset, bytes, NULL, flags };

    return crash_change(bs, &r);
}

static int coroutine_fn crash_co_pdiscard(BlockDriverState *bs,
                                          int64_t offset, int64_t bytes)
{
    CrashReq r = { CHANGE_DISCARD, offset, bytes, NULL, 0 };

    return crash_change(bs, &r);
}

static int coroutine_fn crash_co_preadv(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes, IOVector *qiov,
                                        BdrvRequestFlags flags)
{
    CrashNode *s = bs->opaque;

    if (s->crashed) {
        return -EIO;
    }
    return bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

/* A truncate is a change of the bytes between the old and new ends. */
static int coroutine_fn crash_co_truncate(BlockDriverState *bs,
                                          int64_t offset, bool exact,
                                          PreallocMode prealloc,
                                          BdrvRequestFlags flags,
                                          Error **errp)
{
    CrashNode *s = bs->opaque;
    CrashChange *c = NULL;
    int64_t len;
    int ret;

    co_mutex_lock(&s->lock);
    len = crash_file_len(bs);
    ret = len < 0 ? (int)len : 0;
    if (ret == 0 && !s->crashed &&
        crash_point_write(s, MIN(len, offset), ABS(len - offset))) {
        crash_now(bs, "before a truncate");
    }
    ret = ret < 0 ? ret : s->crashed ? -EIO :
          crash_begin(bs, MIN(len, offset), MAX(ABS(len - offset), 1), &c);
    if (ret == 0) {
        ret = bdrv_co_truncate(bs->file, offset, exact, prealloc, flags,
                               errp);
        int ret2 = crash_end(bs, c);
        ret = ret < 0 ? ret : ret2;
    } else if (errp && !*errp) {
        error_setg_errno(errp, -ret, "Could not resize the file");
    }
    co_mutex_unlock(&s->lock);
    return ret;
}

/* A completed flush of the file makes every journalled change durable;
 * the changes that went through while it ran stay in the journal. */
static int coroutine_fn crash_co_flush_to_disk(BlockDriverState *bs)
{
    CrashNode *s = bs->opaque;
    guint covered;
    int ret;

    co_mutex_lock(&s->lock);
    if (!s->crashed && s->after_flushes >= 0 &&
        s->flushes >= (uint64_t)s->after_flushes) {
        crash_now(bs, "before a flush");
    }
    if (s->crashed) {
        co_mutex_unlock(&s->lock);
        return -EIO;
    }
    covered = s->journal->len;
    co_mutex_unlock(&s->lock);
    ret = bdrv_co_flush(bs->file->bs);
    co_mutex_lock(&s->lock);
    if (ret == 0 && !s->crashed) {
        for (guint i = 0; i < covered; i++) {
            CrashChange *c = g_ptr_array_index(s->journal, i);
            s->journal_bytes -= 2 * c->bytes;
        }
        g_ptr_array_remove_range(s->journal, 0, covered);
        s->flushes++;
    }
    co_mutex_unlock(&s->lock);
    return s->crashed ? -EIO : ret;
}

static const BlockDriverIO crash_io = {
    .co_preadv = crash_co_preadv,
    .co_pwritev = crash_co_pwritev,
    .co_pwrite_zeroes = crash_co_pwrite_zeroes,
    .co_pdiscard = crash_co_pdiscard,
    .co_flush_to_disk = crash_co_flush_to_disk,
    .co_truncate = crash_co_truncate,
};

static const BlockDriverNamingOps crash_naming = {
    .strong_opts = crash_strong_opts,
};

const BlockDriver bdrv_crash_sim = {
    .format_name = "crash-sim",
    .kind = BDRV_KIND_FILTER,
    .instance_size = sizeof(CrashNode),
    .open_opts = crash_opts,
    .open = crash_open,
    .close = crash_close,
    .io = &crash_io,
    .naming = &crash_naming,
    .test_only = true,
};
