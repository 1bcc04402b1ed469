#include "config.h"
/*
 * The block job core (block/job.c) with a fake driver: what it plans,
 * what it runs, in which pieces, how fast, and how it stops.
 */
#include <errno.h>
#include <string.h>
#include <glib.h>
#include "block/block.h"
#include "util/cutils.h"

#define LEN (10 * MiB + 12345)

typedef struct Fake {
    uint8_t seen[LEN];          /* times each byte was run */
    int64_t max_chunk;
    int64_t fail_at;            /* run fails on the chunk holding it */
    int64_t plan_fail_at;
    double last_progress;
    bool progress_down;
    int in_flight, max_in_flight;
    int64_t last_write;
    bool order_broken;
} Fake;

/* Extents of 300 KiB + 1 byte, cycling SKIP, DATA, ZERO. */
static BlockJobExtent kind_at(int64_t off)
{
    return (BlockJobExtent)((off / (300 * KiB + 1)) % 3);
}

static int coroutine_fn fake_plan(void *opaque, int64_t off, int64_t bytes,
                                  int64_t *pnum, BlockJobFailure *f)
{
    Fake *fk = opaque;
    int64_t ext = 300 * KiB + 1;

    if (fk->plan_fail_at >= 0 && off + bytes > fk->plan_fail_at &&
        off <= fk->plan_fail_at) {
        return block_job_fail(f, -EIO, off, NULL, false);
    }
    *pnum = MIN(bytes, ext - off % ext);
    return kind_at(off);
}

static int coroutine_fn fake_run(void *opaque, BlockJobExtent kind,
                                 int64_t off, int64_t bytes, void *buf,
                                 BlockJobTurn *turn, BlockJobFailure *f)
{
    Fake *fk = opaque;

    g_assert_true(kind != BLOCK_JOB_SKIP);
    g_assert_true(buf != NULL);
    memset(buf, 0xa5, bytes);           /* the buffer holds a chunk */
    fk->max_chunk = MAX(fk->max_chunk, bytes);
    if (fk->fail_at >= off && fk->fail_at < off + bytes) {
        return block_job_fail(f, -ENOSPC, off, NULL, true);
    }
    fk->max_in_flight = MAX(fk->max_in_flight, ++fk->in_flight);
    /* every third chunk is slow (the loop may round timers to 1 ms) */
    co_sleep_ns((off / (256 * KiB)) % 3 ? 1000000 : 8000000);
    fk->in_flight--;
    block_job_wait_turn(turn);
    fk->order_broken |= off < fk->last_write;
    fk->last_write = off;
    for (int64_t i = off; i < off + bytes; i++) {
        fk->seen[i]++;
    }
    return 0;
}

static void fake_progress(void *opaque, double percent)
{
    Fake *fk = opaque;

    fk->progress_down |= percent < fk->last_progress;
    fk->last_progress = percent;
}

static const BlockJobDriver fake_driver = {
    .plan = fake_plan,
    .run = fake_run,
};

static Fake *fake_new(void)
{
    Fake *fk = g_new0(Fake, 1);

    fk->fail_at = fk->plan_fail_at = -1;
    return fk;
}

static BlockJobParams params(Fake *fk)
{
    return (BlockJobParams) {
        .drv = &fake_driver, .opaque = fk, .length = LEN,
        .chunk = 256 * KiB, .align = 64 * KiB, .workers = 4,
        .progress = fake_progress,
    };
}

/* Every byte to do is run exactly once, nothing skipped is, in chunks
 * no larger than asked, several at a time; progress only grows. */
static void test_coverage(void)
{
    g_autofree Fake *fk = fake_new();
    BlockJobParams p = params(fk);
    BlockJobFailure f;

    g_assert_cmpint(block_job_run(&p, &f), ==, 0);
    g_assert_cmpint(f.ret, ==, 0);
    for (int64_t i = 0; i < LEN; i++) {
        g_assert_cmpint(fk->seen[i], ==, kind_at(i) == BLOCK_JOB_SKIP ? 0 : 1);
    }
    g_assert_cmpint(fk->max_chunk, <=, 256 * KiB);
    g_assert_cmpint(fk->max_in_flight, >, 1);
    g_assert_false(fk->progress_down);
    g_assert_cmpfloat(fk->last_progress, ==, 100.0);
}

/* in_order: the writes after block_job_wait_turn() come in disk order
 * although some chunks take longer than later ones; without it they do
 * not. */
static void test_in_order(void)
{
    g_autofree Fake *fk = fake_new();
    g_autofree Fake *fk2 = fake_new();
    BlockJobParams p = params(fk);
    BlockJobFailure f;

    p.in_order = true;
    g_assert_cmpint(block_job_run(&p, &f), ==, 0);
    g_assert_false(fk->order_broken);
    g_assert_cmpint(fk->max_in_flight, >, 1);
    p = params(fk2);
    g_assert_cmpint(block_job_run(&p, &f), ==, 0);
    g_assert_true(fk2->order_broken);
}

/* The first failure stops the job and says where it was. */
static void test_run_failure(void)
{
    g_autofree Fake *fk = fake_new();
    BlockJobParams p = params(fk);
    BlockJobFailure f;

    fk->fail_at = 5 * MiB;
    g_assert_cmpint(block_job_run(&p, &f), ==, -ENOSPC);
    g_assert_cmpint(f.ret, ==, -ENOSPC);
    g_assert_true(f.write);
    g_assert_cmpint(f.offset, <=, 5 * MiB);
    g_assert_cmpint(f.offset + 256 * KiB, >, 5 * MiB);
    /* nothing far beyond the failure was started */
    for (int64_t i = 7 * MiB; i < LEN; i++) {
        g_assert_cmpint(fk->seen[i], ==, 0);
    }
}

/* A plan failure (block status) is reported the same way. */
static void test_plan_failure(void)
{
    g_autofree Fake *fk = fake_new();
    BlockJobParams p = params(fk);
    BlockJobFailure f;

    fk->plan_fail_at = 3 * MiB;
    g_assert_cmpint(block_job_run(&p, &f), ==, -EIO);
    g_assert_false(f.write);
    g_assert_cmpint(f.offset, <=, 3 * MiB);
}

/* -r: about 2/3 of 10 MiB at 16 MiB/s takes ~0.4 s, in chunks of at
 * most a slice's quota (1.6 MiB -> 1.5 MiB: 64 KiB units). */
static void test_rate(void)
{
    g_autofree Fake *fk = fake_new();
    BlockJobParams p = params(fk);
    BlockJobFailure f;
    int64_t t0;
    double secs;

    p.chunk = 8 * MiB;
    p.rate = 16 * MiB;
    t0 = g_get_monotonic_time();
    g_assert_cmpint(block_job_run(&p, &f), ==, 0);
    secs = (g_get_monotonic_time() - t0) / 1e6;
    g_assert_cmpint(fk->max_chunk, <=, 16 * MiB / 10);
    g_assert_cmpfloat(secs, >, 0.25);
    g_assert_cmpfloat(secs, <, 3.0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    bdrv_init();
    g_test_add_func("/job/coverage", test_coverage);
    g_test_add_func("/job/in-order", test_in_order);
    g_test_add_func("/job/run-failure", test_run_failure);
    g_test_add_func("/job/plan-failure", test_plan_failure);
    g_test_add_func("/job/rate", test_rate);
    return g_test_run();
}
