#include "config.h"
/*
 * The "quorum" driver: N children ("children.0" ... "children.N-1") hold
 * the same data.  Writes, zero writes and flushes go to every child and
 * succeed when at least vote-threshold children succeed; the error of a
 * failed request is the one most children returned.
 *
 * Reads (read-pattern "quorum", the default) read every child and vote
 * on the content: the version with the most identical copies wins if it
 * has at least vote-threshold of them, else the read fails with -EIO.
 * With rewrite-corrupted the children that read another version get the
 * winner written back.  With blkverify (two children, threshold 2) a
 * difference is fatal: the reference prints where and exits with 1.
 * read-pattern "fifo" reads the children in order and takes the first
 * that succeeds.
 *
 * Like the reference this is neither a filter nor a format of one file:
 * it has no primary child, so its name is always json:{...} with the
 * children's names in one "children" list, and a relative backing file
 * name of a format above it cannot be resolved.  The reference reports
 * QUORUM_* events over QMP; we have no QMP and only keep the results.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "block/drivers.h"

#define QUORUM_CHILD_PREFIX "children."

typedef struct QuorumNode {
    GPtrArray *children;          /* BdrvChild *, in index order */
    int threshold;
    bool blkverify;
    bool rewrite_corrupted;
    bool fifo;                    /* read-pattern=fifo */
} QuorumNode;

static const BlockOptDesc quorum_opts[] = {
    { "vote-threshold", OPT_NUMBER,
      "Identical copies a read needs, successful children a write needs",
      NULL },
    { "blkverify", OPT_BOOL,
      "Two children that must agree: a difference ends the program", NULL },
    { "rewrite-corrupted", OPT_BOOL,
      "Write the winning version back to children that read another",
      NULL },
    { "read-pattern", OPT_STRING,
      "quorum (read all children and vote, the default) or fifo (the "
      "first child that reads)", NULL },
    { NULL },
};

/* What a json: name must keep to open the same node. */
static const char *const quorum_strong_opts[] = {
    "vote-threshold", "blkverify", "rewrite-corrupted", "read-pattern", NULL,
};

/* ---- options ---- */

/* The index a "children." key names (its part up to the next dot), or
 * -1 when that part is not a plain decimal number. */
static long child_key_index(const char *rest)
{
    size_t len = strcspn(rest, ".");
    long idx = 0;

    if (len == 0 || len > 9 || (len > 1 && rest[0] == '0')) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (rest[i] < '0' || rest[i] > '9') {
            return -1;
        }
        idx = idx * 10 + (rest[i] - '0');
    }
    return idx;
}

/* The number of children given as "children.0" ... "children.N-1" (a
 * flattened JSON list or dotted keys), or -1 when the keys under
 * "children." do not form such a list. */
static long count_children(QDict *options)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(NULL, NULL);
    size_t plen = strlen(QUORUM_CHILD_PREFIX);
    long max = -1;

    for (const QDictEntry *e = qdict_first(options); e;
         e = qdict_next(options, e)) {
        const char *key = qdict_entry_key(e);
        long idx;

        if (strncmp(key, QUORUM_CHILD_PREFIX, plen)) {
            continue;
        }
        idx = child_key_index(key + plen);
        if (idx < 0) {
            return -1;
        }
        g_hash_table_add(seen, GINT_TO_POINTER(idx + 1));
        max = MAX(max, idx);
    }
    return (long)g_hash_table_size(seen) == max + 1 ? max + 1 : -1;
}

/* vote-threshold as the reference stores it: a C int, so a JSON -1 is
 * -1 and larger values wrap (4294967297 is 1). */
static int threshold_opt(QDict *options, int *out, Error **errp)
{
    QNum *n = qobject_to_qnum(qdict_get(options, "vote-threshold"));
    Error *local_err = NULL;
    int64_t i;
    uint64_t u;

    if (n && qnum_get_try_int(n, &i)) {
        *out = (int)(uint32_t)i;
        return 0;
    }
    if (n && qnum_get_try_uint(n, &u)) {
        *out = (int)(uint32_t)u;
        return 0;
    }
    u = bdrv_opt_number(options, "vote-threshold", 0, &local_err);
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    *out = (int)(uint32_t)u;
    return 0;
}

/* The typed options (a bad value fails before any range check). */
static int parse_typed(QuorumNode *s, QDict *options, bool *blkverify,
                       bool *rewrite, Error **errp)
{
    Error *local_err = NULL;

    if (threshold_opt(options, &s->threshold, errp) < 0) {
        return -EINVAL;
    }
    *blkverify = bdrv_opt_bool(options, "blkverify", false, &local_err);
    if (!local_err) {
        *rewrite = bdrv_opt_bool(options, "rewrite-corrupted", false,
                                 &local_err);
    }
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    return 0;
}

/* 1 <= vote-threshold <= the number of children. */
static int check_threshold(QuorumNode *s, int nchildren, Error **errp)
{
    if (s->threshold < 1) {
        error_setg(errp, "Parameter 'vote-threshold' expects a value >= 1");
        return -EINVAL;
    }
    if (s->threshold > nchildren) {
        error_setg(errp, "threshold may not exceed children count");
        return -EINVAL;
    }
    return 0;
}

/* read-pattern: "quorum" (the default) or "fifo", nothing else. */
static int parse_pattern(QuorumNode *s, QDict *options, Error **errp)
{
    QObject *pattern = qdict_get(options, "read-pattern");
    QString *ps = qobject_to_qstring(pattern);
    const char *name = ps ? qstring_get_str(ps) : NULL;

    if (pattern && (!name || (strcmp(name, "quorum") &&
                              strcmp(name, "fifo")))) {
        error_setg(errp, "Please set read-pattern as fifo or quorum");
        return -EINVAL;
    }
    s->fifo = name && !strcmp(name, "fifo");
    return 0;
}

/* The options in the order the reference checks them; blkverify and
 * rewrite-corrupted count only when reads vote. */
static int parse_values(QuorumNode *s, QDict *options, int nchildren,
                        Error **errp)
{
    bool blkverify = false, rewrite = false;

    if (parse_typed(s, options, &blkverify, &rewrite, errp) < 0 ||
        check_threshold(s, nchildren, errp) < 0 ||
        parse_pattern(s, options, errp) < 0) {
        return -EINVAL;
    }
    if (!s->fifo) {
        s->blkverify = blkverify;
        s->rewrite_corrupted = rewrite;
    }
    return 0;
}

/* blkverify needs two children that must agree; it cannot repair. */
static int check_modes(QuorumNode *s, int nchildren, Error **errp)
{
    if (s->blkverify && (nchildren != 2 || s->threshold != 2)) {
        error_setg(errp, "blkverify=on can only be set if there are "
                   "exactly two files and vote-threshold is 2");
        return -EINVAL;
    }
    if (s->rewrite_corrupted && s->blkverify) {
        error_setg(errp, "rewrite-corrupted=on cannot be used with "
                   "blkverify=on");
        return -EINVAL;
    }
    return 0;
}

/* Zero-write flags every child honours pass on.  Writes never take FUA:
 * as in the reference, the core emulates it with a flush of the whole
 * node, so a writethrough write fails when the vote on the children's
 * flushes fails. */
static void quorum_request_flags(BlockDriverState *bs)
{
    QuorumNode *s = bs->opaque;
    uint64_t zf = BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK;

    for (guint i = 0; i < s->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(s->children, i);
        zf &= c->bs->supported_zero_flags;
    }
    bs->supported_write_flags = 0;
    bs->supported_zero_flags = zf;
}

/* Children open in index order; the first that fails fails the open. */
static int open_children(BlockDriverState *bs, QDict *options, int n,
                         Error **errp)
{
    QuorumNode *s = bs->opaque;

    for (int i = 0; i < n; i++) {
        g_autofree char *name = g_strdup_printf(QUORUM_CHILD_PREFIX "%d", i);
        BdrvChild *c = bdrv_open_child(NULL, options, name, bs,
                                       BDRV_CHILD_DATA, false, errp);
        if (!c) {
            return -EINVAL;
        }
        g_ptr_array_add(s->children, c);
    }
    quorum_request_flags(bs);
    return 0;
}

static int quorum_open(BlockDriverState *bs, QDict *options, int flags,
                       Error **errp)
{
    QuorumNode *s = bs->opaque;
    long n = count_children(options);

    s->children = g_ptr_array_new();
    if (n < 0) {
        error_setg(errp, "Option children is not a valid array");
        return -EINVAL;
    }
    if (n < 1) {
        error_setg(errp, "Number of provided children must be 1 or more");
        return -EINVAL;
    }
    if (parse_values(s, options, (int)n, errp) < 0 ||
        check_modes(s, (int)n, errp) < 0) {
        return -EINVAL;
    }
    return open_children(bs, options, (int)n, errp);
}

/* The children themselves belong to the node (bdrv_unref_child by the
 * core); only our list of them goes. */
static void quorum_close(BlockDriverState *bs)
{
    QuorumNode *s = bs->opaque;

    g_clear_pointer(&s->children, g_ptr_array_unref);
}

/* ---- permissions, length, naming ---- */

/* Pass on what our users need (plus write when we repair), and never
 * let others write or resize a child: the copies would differ. */
static void quorum_child_perm(BlockDriverState *bs, BdrvChild *c,
                              BdrvChildRole role, uint64_t perm,
                              uint64_t shared, uint64_t *nperm,
                              uint64_t *nshared)
{
    QuorumNode *s = bs->opaque;

    *nperm = perm & DEFAULT_PERM_PASSTHROUGH;
    if (s->rewrite_corrupted) {
        *nperm |= BLK_PERM_WRITE;
    }
    *nshared = (shared & (BLK_PERM_CONSISTENT_READ |
                          BLK_PERM_WRITE_UNCHANGED)) | DEFAULT_PERM_UNCHANGED;
}

/* The children's common length; children of different lengths make
 * the length unknown (-EIO), as the reference has it. */
static int64_t coroutine_fn quorum_co_getlength(BlockDriverState *bs)
{
    QuorumNode *s = bs->opaque;
    int64_t len = -EIO;

    for (guint i = 0; s->children && i < s->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(s->children, i);
        int64_t l = bdrv_co_getlength(c->bs);

        if (l < 0) {
            return l;
        }
        if (i > 0 && l != len) {
            return -EIO;
        }
        len = l;
    }
    return len;
}

/* The reference names the children by position in one list, not by
 * their child names. */
static void quorum_gather_children(BlockDriverState *bs, QDict *full)
{
    QuorumNode *s = bs->opaque;
    QList *list = qlist_new();

    for (guint i = 0; s->children && i < s->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(s->children, i);
        QDict *opts = c->bs->full_options;

        qlist_append_obj(list, opts ? qobject_ref(QOBJECT(opts))
                                    : QOBJECT(qdict_new()));
    }
    qdict_put_obj(full, "children", QOBJECT(list));
}

/* No plain filename describes several files. */
static char *quorum_plain_filename(BlockDriverState *bs, QDict *full)
{
    return NULL;
}

/* ---- running one request on every child ---- */

typedef enum { QUORUM_READ, QUORUM_WRITE, QUORUM_ZERO } QuorumOp;

typedef struct QuorumReq {
    QuorumNode *s;
    QuorumOp op;
    int64_t offset, bytes;
    IOVector *qiov;               /* writes: the caller's data */
    BdrvRequestFlags flags;
    uint8_t **bufs;               /* reads: one buffer per child */
    int *rets;                    /* per child: 0 or -errno */
    int pending;
    Coroutine *waiter;
} QuorumReq;

typedef struct QuorumSub {
    QuorumReq *req;
    int idx;
} QuorumSub;

/* One child's part of a request. */
static int coroutine_fn child_request(QuorumReq *r, int idx)
{
    BdrvChild *c = g_ptr_array_index(r->s->children, idx);
    IOVector v;
    int ret;

    switch (r->op) {
    case QUORUM_READ:
        iov_vec_init_buf(&v, r->bufs[idx], r->bytes);
        ret = bdrv_co_preadv(c, r->offset, r->bytes, &v, r->flags);
        iov_vec_destroy(&v);
        return ret;
    case QUORUM_WRITE:
        return bdrv_co_pwritev(c, r->offset, r->bytes, r->qiov, r->flags);
    default:
        return bdrv_co_pwrite_zeroes(c, r->offset, r->bytes, r->flags);
    }
}

/* A child's coroutine: its result, then wake the waiting request. */
static void coroutine_fn child_entry(void *opaque)
{
    QuorumSub *sub = opaque;
    QuorumReq *r = sub->req;

    r->rets[sub->idx] = child_request(r, sub->idx);
    if (--r->pending == 0 && r->waiter) {
        co_wake_later(r->waiter);
    }
}

/* Run the request on every child at once and wait for all of them. */
static void coroutine_fn run_on_children(QuorumReq *r)
{
    int n = (int)r->s->children->len;
    g_autofree QuorumSub *subs = g_new(QuorumSub, n);

    r->pending = n;
    r->waiter = NULL;
    for (int i = 0; i < n; i++) {
        subs[i] = (QuorumSub) { .req = r, .idx = i };
        co_enter(co_create(child_entry, &subs[i]));
    }
    r->waiter = co_self();
    while (r->pending) {
        co_yield();
    }
    r->waiter = NULL;
}

/* ---- votes ---- */

/* One version in a vote: the first child that had it and how many. */
typedef struct QuorumVersion {
    int first;
    int votes;
} QuorumVersion;

/* The winner among @n versions in the order they were first seen: the
 * most votes; on a tie the version seen last, as the reference's list
 * (newest first, first maximum kept) decides. */
static const QuorumVersion *vote_winner(const QuorumVersion *v, int n)
{
    const QuorumVersion *best = NULL;

    for (int i = n - 1; i >= 0; i--) {
        if (!best || v[i].votes > best->votes) {
            best = &v[i];
        }
    }
    return best;
}

/* The error most failed children returned (0 if none failed). */
static int error_vote(const int *rets, int n)
{
    g_autofree QuorumVersion *v = g_new0(QuorumVersion, n);
    int nv = 0;

    for (int i = 0; i < n; i++) {
        int k = 0;

        if (rets[i] == 0) {
            continue;
        }
        while (k < nv && rets[v[k].first] != rets[i]) {
            k++;
        }
        if (k == nv) {
            v[nv++].first = i;
        }
        v[k].votes++;
    }
    return nv ? rets[vote_winner(v, nv)->first] : 0;
}

/* How many children succeeded. */
static int count_success(const int *rets, int n)
{
    int ok = 0;

    for (int i = 0; i < n; i++) {
        ok += rets[i] == 0;
    }
    return ok;
}

/* A write-like result: enough children succeeded, or the errors' vote. */
static int write_result(QuorumReq *r)
{
    int n = (int)r->s->children->len;

    if (count_success(r->rets, n) >= r->s->threshold) {
        return 0;
    }
    return error_vote(r->rets, n);
}

/* ---- reads ---- */

/* blkverify: the two copies must be equal; the reference stops the
 * whole program on the first difference. */
static void blkverify_check(QuorumReq *r, int a, int b)
{
    const uint8_t *x = r->bufs[a], *y = r->bufs[b];
    int64_t i = 0;

    while (i < r->bytes && x[i] == y[i]) {
        i++;
    }
    if (i < r->bytes) {
        fprintf(stderr, "quorum: offset=%" PRId64 " bytes=%" PRId64
                " contents mismatch at offset %" PRId64 "\n",
                r->offset, r->bytes, r->offset + i);
        /* exit(1) as the reference, without the at-exit handlers: we
         * are deep inside a request, whose buffers a leak checker
         * would report */
        fflush(NULL);
        _exit(1);
    }
}

/* Do all children that read successfully agree with child @first? */
static bool all_agree(QuorumReq *r, int first)
{
    int n = (int)r->s->children->len;

    for (int j = first + 1; j < n; j++) {
        if (r->rets[j]) {
            continue;
        }
        if (r->s->blkverify) {
            blkverify_check(r, first, j);
        } else if (memcmp(r->bufs[first], r->bufs[j], r->bytes)) {
            return false;
        }
    }
    return true;
}

/* Group the successful reads into versions; returns how many.  @of[i]
 * is child i's version (-1 if its read failed). */
static int count_versions(QuorumReq *r, QuorumVersion *v, int *of)
{
    int n = (int)r->s->children->len;
    int nv = 0;

    for (int i = 0; i < n; i++) {
        int k = 0;

        of[i] = -1;
        if (r->rets[i]) {
            continue;
        }
        while (k < nv && memcmp(r->bufs[v[k].first], r->bufs[i], r->bytes)) {
            k++;
        }
        if (k == nv) {
            v[nv++] = (QuorumVersion) { .first = i };
        }
        v[k].votes++;
        of[i] = k;
    }
    return nv;
}

/* rewrite-corrupted: children that read another version get the
 * winner; their errors change nothing about the read. */
static void coroutine_fn rewrite_losers(BlockDriverState *bs, QuorumReq *r,
                                        const int *of, int winner)
{
    uint8_t *good = r->bufs[winner];
    int n = (int)r->s->children->len;

    for (int i = 0; i < n; i++) {
        BdrvChild *c = g_ptr_array_index(r->s->children, i);
        IOVector v;

        if (of[i] < 0 || of[i] == of[winner]) {
            continue;
        }
        iov_vec_init_buf(&v, good, r->bytes);
        bdrv_co_pwritev(c, r->offset, r->bytes, &v, 0);
        iov_vec_destroy(&v);
    }
    bdrv_bsc_invalidate(bs);
}

/* The outcome of a voting read; the winner's data goes to @qiov. */
static int coroutine_fn vote_read(BlockDriverState *bs, QuorumReq *r,
                                  IOVector *qiov)
{
    int n = (int)r->s->children->len;
    g_autofree QuorumVersion *v = g_new0(QuorumVersion, n);
    g_autofree int *of = g_new(int, n);
    const QuorumVersion *win;
    int first = 0;

    if (count_success(r->rets, n) < r->s->threshold) {
        return error_vote(r->rets, n);
    }
    while (r->rets[first]) {
        first++;
    }
    if (all_agree(r, first)) {
        iov_vec_from_buf(qiov, 0, r->bufs[first], r->bytes);
        return 0;
    }
    win = vote_winner(v, count_versions(r, v, of));
    if (win->votes < r->s->threshold) {
        return -EIO;
    }
    iov_vec_from_buf(qiov, 0, r->bufs[win->first], r->bytes);
    if (r->s->rewrite_corrupted) {
        rewrite_losers(bs, r, of, win->first);
    }
    return 0;
}

/* Buffers for every child's copy of the request, or false. */
static bool alloc_bufs(QuorumReq *r, int n)
{
    r->bufs = g_new0(uint8_t *, n);
    for (int i = 0; i < n; i++) {
        r->bufs[i] = g_try_malloc(r->bytes);
        if (!r->bufs[i]) {
            return false;
        }
    }
    return true;
}

static void free_bufs(uint8_t **bufs, int n)
{
    for (int i = 0; bufs && i < n; i++) {
        g_free(bufs[i]);
    }
    g_free(bufs);
}

/* read-pattern=quorum: read every child, then vote. */
static int coroutine_fn quorum_read_vote(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes, IOVector *qiov,
                                         BdrvRequestFlags flags)
{
    QuorumNode *s = bs->opaque;
    int n = (int)s->children->len;
    g_autofree int *rets = g_new0(int, n);
    QuorumReq r = {
        .s = s, .op = QUORUM_READ, .offset = offset, .bytes = bytes,
        .flags = flags, .rets = rets,
    };
    int ret = -ENOMEM;

    if (alloc_bufs(&r, n)) {
        run_on_children(&r);
        ret = vote_read(bs, &r, qiov);
    }
    free_bufs(r.bufs, n);
    return ret;
}

/* read-pattern=fifo: the first child that reads successfully. */
static int coroutine_fn quorum_read_fifo(QuorumNode *s, int64_t offset,
                                         int64_t bytes, IOVector *qiov,
                                         BdrvRequestFlags flags)
{
    int ret = -EIO;

    for (guint i = 0; i < s->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(s->children, i);

        ret = bdrv_co_preadv(c, offset, bytes, qiov, flags);
        if (ret == 0) {
            break;
        }
    }
    return ret;
}

static int coroutine_fn quorum_co_preadv(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes, IOVector *qiov,
                                         BdrvRequestFlags flags)
{
    QuorumNode *s = bs->opaque;

    if (s->fifo) {
        return quorum_read_fifo(s, offset, bytes, qiov, flags);
    }
    return quorum_read_vote(bs, offset, bytes, qiov, flags);
}

/* ---- writes, zero writes, flush ---- */

/* Write (@op) on every child; the result as the threshold decides. */
static int coroutine_fn quorum_write(BlockDriverState *bs, QuorumOp op,
                                     int64_t offset, int64_t bytes,
                                     IOVector *qiov, BdrvRequestFlags flags)
{
    QuorumNode *s = bs->opaque;
    g_autofree int *rets = g_new0(int, s->children->len);
    QuorumReq r = {
        .s = s, .op = op, .offset = offset, .bytes = bytes, .qiov = qiov,
        .flags = flags, .rets = rets,
    };

    run_on_children(&r);
    return write_result(&r);
}

static int coroutine_fn quorum_co_pwritev(BlockDriverState *bs, int64_t offset,
                                          int64_t bytes, IOVector *qiov,
                                          BdrvRequestFlags flags)
{
    return quorum_write(bs, QUORUM_WRITE, offset, bytes, qiov, flags);
}

static int coroutine_fn quorum_co_pwrite_zeroes(BlockDriverState *bs,
                                                int64_t offset, int64_t bytes,
                                                BdrvRequestFlags flags)
{
    return quorum_write(bs, QUORUM_ZERO, offset, bytes, NULL, flags);
}

/* The whole flush of the node: each child in turn, then the threshold
 * decides (a child that failed does not fail the flush by itself). */
static int coroutine_fn quorum_co_flush(BlockDriverState *bs)
{
    QuorumNode *s = bs->opaque;
    int n = (int)s->children->len;
    g_autofree int *rets = g_new0(int, n);

    for (int i = 0; i < n; i++) {
        BdrvChild *c = g_ptr_array_index(s->children, i);
        rets[i] = bdrv_co_flush(c->bs);
    }
    return count_success(rets, n) >= s->threshold ? 0 : error_vote(rets, n);
}

/* ---- block status ---- */

/* Zero only where every child reads zeroes, data as soon as one does
 * not; no offset (the data lives in several places).  A child that
 * fails makes the whole range data. */
static int coroutine_fn quorum_co_block_status(BlockDriverState *bs,
                                               bool want_zero, int64_t offset,
                                               int64_t bytes, int64_t *pnum,
                                               int64_t *map,
                                               BlockDriverState **file)
{
    QuorumNode *s = bs->opaque;
    int64_t zero_len = bytes, data_len = 0;

    for (guint i = 0; i < s->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(s->children, i);
        int64_t n;
        int ret = bdrv_co_block_status_above(c->bs, NULL, offset, bytes, &n,
                                             NULL, NULL, NULL);
        if (ret < 0) {
            data_len = bytes;
            break;
        }
        if (ret & BDRV_BLOCK_ZERO) {
            zero_len = MIN(zero_len, n);
        } else {
            data_len = MAX(data_len, n);
        }
    }
    *file = NULL;
    *pnum = data_len ? data_len : zero_len;
    return data_len ? BDRV_BLOCK_DATA : BDRV_BLOCK_ZERO;
}

static const BlockDriverIO quorum_io = {
    .co_preadv = quorum_co_preadv,
    .co_pwritev = quorum_co_pwritev,
    .co_pwrite_zeroes = quorum_co_pwrite_zeroes,
    .co_block_status = quorum_co_block_status,
    .co_getlength = quorum_co_getlength,
    .co_flush = quorum_co_flush,
};

static const BlockDriverPermOps quorum_perm = {
    .child_perm = quorum_child_perm,
};

static const BlockDriverNamingOps quorum_naming = {
    .strong_opts = quorum_strong_opts,
    .plain_filename = quorum_plain_filename,
    .gather_children = quorum_gather_children,
};

const BlockDriver bdrv_quorum = {
    .format_name = "quorum",
    .kind = BDRV_KIND_FORMAT,
    .instance_size = sizeof(QuorumNode),
    .open_opts = quorum_opts,
    .open = quorum_open,
    .close = quorum_close,
    .io = &quorum_io,
    .perm = &quorum_perm,
    .naming = &quorum_naming,
};
