#include "config.h"
/*
 * Block jobs: a walk over a disk by worker coroutines (contract in
 * block/job.h).
 *
 * The walk keeps one cursor and the extent the driver last planned; a
 * worker takes the next chunk under the walk lock, waits for its turn
 * under the rate limit, and runs it.  A first walk with the same cutting
 * and no run() sums up the chunks that do work, which is what the
 * progress bar's 100 % means.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "block/job.h"
#include "util/cutils.h"
#include "util/ratelimit.h"

#define JOB_DEFAULT_CHUNK   (2 * 1024 * 1024)
#define JOB_DEFAULT_ALIGN   (64 * 1024)
#define JOB_DEFAULT_WORKERS 8
#define JOB_MAX_WORKERS     64
#define JOB_BUF_ALIGN       4096

typedef struct Job {
    const BlockJobParams *p;
    int64_t chunk;
    int64_t align;
    CoMutex walk_lock;
    int64_t cursor;
    int64_t ext_end;        /* the planned extent: [cursor, ext_end) */
    BlockJobExtent ext_kind;
    int64_t total;          /* bytes of the chunks that do work */
    int64_t done;
    RateLimit rl;
    int running;
    BlockJobFailure fail;
    /* in_order: chunks numbered as handed out; the one whose number is
     * seq_turn may write */
    uint64_t seq_next;
    uint64_t seq_turn;
    CoQueue turn_q;
} Job;

struct BlockJobTurn {
    Job *job;
    uint64_t seq;
};

void coroutine_fn block_job_wait_turn(BlockJobTurn *t)
{
    Job *j = t->job;

    while (j->p->in_order && j->seq_turn != t->seq) {
        co_queue_wait(&j->turn_q, NULL);
    }
}

/* The chunk is done (or failed): the next one may write. */
static void coroutine_fn pass_turn(BlockJobTurn *t)
{
    Job *j = t->job;

    block_job_wait_turn(t);
    j->seq_turn++;
    co_queue_restart_all(&j->turn_q);
}

int block_job_fail(BlockJobFailure *f, int ret, int64_t offset,
                   BlockDriverState *bs, bool write)
{
    if (ret < 0 && f->ret == 0) {
        f->ret = ret;
        f->offset = offset;
        f->image = bs ? bdrv_get_filename(bs) : NULL;
        f->write = write;
    }
    return ret;
}

/* Keep only the first failure of all workers. */
static void job_failed(Job *j, const BlockJobFailure *f)
{
    if (j->fail.ret == 0) {
        j->fail = *f;
    }
}

/* A slice's quota caps the chunk so that -r never bursts. */
static int64_t pick_chunk(const BlockJobParams *p, int64_t align)
{
    int64_t chunk = p->chunk ? p->chunk : JOB_DEFAULT_CHUNK;
    int64_t quota;

    if (p->rate) {
        quota = (int64_t)MIN(p->rate / 10, (uint64_t)chunk);
        chunk = MAX(ROUND_DOWN(quota, align), align);
    }
    return MAX(ROUND_DOWN(chunk, align), align);
}

/* Ask the driver about the extent at the cursor (walk lock held). */
static int coroutine_fn plan_extent(Job *j)
{
    BlockJobFailure f = { 0 };
    int64_t pnum = 0;
    int ret;

    ret = j->p->drv->plan(j->p->opaque, j->cursor, j->p->length - j->cursor,
                          &pnum, &f);
    if (ret < 0) {
        job_failed(j, &f);
        return block_job_fail(&j->fail, ret, j->cursor, NULL, false);
    }
    if (pnum <= 0) {
        /* a driver that cannot say treats the rest as data */
        pnum = j->p->length - j->cursor;
        ret = BLOCK_JOB_DATA;
    }
    j->ext_kind = ret;
    j->ext_end = j->cursor + MIN(pnum, j->p->length - j->cursor);
    return 0;
}

/* The next chunk to work on; false at the end or after a failure. */
static bool coroutine_fn next_chunk(Job *j, int64_t *off, int64_t *len,
                                    BlockJobExtent *kind, uint64_t *seq)
{
    bool ok = false;

    co_mutex_lock(&j->walk_lock);
    while (j->fail.ret == 0 && j->cursor < j->p->length) {
        int64_t end;

        if (j->cursor >= j->ext_end && plan_extent(j) < 0) {
            break;
        }
        end = MIN(ROUND_DOWN(j->cursor, j->align) + j->chunk, j->ext_end);
        *off = j->cursor;
        *len = end - j->cursor;
        *kind = j->ext_kind;
        j->cursor = end;
        if (*kind != BLOCK_JOB_SKIP) {
            *seq = j->seq_next++;
            ok = true;
            break;
        }
    }
    co_mutex_unlock(&j->walk_lock);
    return ok;
}

/* -r: account @bytes about to go, sleeping while over the rate. */
static void coroutine_fn rate_wait(Job *j, int64_t bytes)
{
    int64_t delay;

    if (!j->p->rate) {
        return;
    }
    delay = ratelimit_calculate_delay(&j->rl, bytes);
    if (delay > 0) {
        co_sleep_ns(delay);
    }
}

/* A chunk is done: report the share of the total. */
static void job_progress(Job *j, int64_t bytes)
{
    j->done += bytes;
    if (j->p->progress && j->total > 0) {
        j->p->progress(j->p->opaque, (double)j->done * 100 / j->total);
    }
}

/* Worker of the counting walk: sums up what the copy will do. */
static void coroutine_fn count_worker(void *opaque)
{
    Job *j = opaque;
    BlockJobExtent kind;
    int64_t off, len;
    uint64_t seq;

    while (next_chunk(j, &off, &len, &kind, &seq)) {
        j->total += len;
    }
    j->running--;
}

/* Worker of the real walk: each chunk paced, run, counted. */
static void coroutine_fn job_worker(void *opaque)
{
    Job *j = opaque;
    void *buf = NULL;
    BlockJobTurn turn = { .job = j };
    BlockJobExtent kind;
    int64_t off, len;

    if (posix_memalign(&buf, JOB_BUF_ALIGN,
                       MAX(j->p->buf_size, j->chunk))) {
        abort();
    }
    while (next_chunk(j, &off, &len, &kind, &turn.seq)) {
        BlockJobFailure f = { 0 };
        int ret;

        rate_wait(j, len);
        ret = j->p->drv->run(j->p->opaque, kind, off, len, buf, &turn, &f);
        pass_turn(&turn);
        if (ret < 0) {
            job_failed(j, &f);
            block_job_fail(&j->fail, ret, off, NULL, false);
            break;
        }
        job_progress(j, len);
    }
    free(buf);
    j->running--;
}

/* Start @n coroutines running @fn and wait until all have ended. */
static void run_workers(Job *j, CoroutineEntry *fn, int n)
{
    j->cursor = j->ext_end = 0;
    j->seq_next = j->seq_turn = 0;
    j->running = n;
    for (int i = 0; i < n; i++) {
        co_enter(co_create(fn, j));
    }
    AIO_WAIT_WHILE(aio_get_default(), j->running > 0);
}

/* Flush the target in a coroutine (the job's last request). */
static void coroutine_fn flush_entry(void *opaque)
{
    Job *j = opaque;
    BlockDriverState *t = j->p->target;

    block_job_fail(&j->fail, bdrv_co_flush(t), -1, t, true);
}

static void job_flush(Job *j)
{
    if (j->p->target) {
        co_run_sync(flush_entry, j);
    }
}

int block_job_run(const BlockJobParams *p, BlockJobFailure *f)
{
    int workers = p->workers > 0 ? MIN(p->workers, JOB_MAX_WORKERS)
                                 : JOB_DEFAULT_WORKERS;
    Job j = { .p = p };

    j.align = p->align > 0 ? p->align : JOB_DEFAULT_ALIGN;
    j.chunk = pick_chunk(p, j.align);
    co_mutex_init(&j.walk_lock);
    co_queue_init(&j.turn_q);
    ratelimit_set_speed(&j.rl, p->rate, 0);
    run_workers(&j, count_worker, 1);
    if (j.fail.ret == 0) {
        run_workers(&j, job_worker, workers);
    }
    if (j.fail.ret == 0) {
        job_flush(&j);
    }
    *f = j.fail;
    return j.fail.ret;
}
