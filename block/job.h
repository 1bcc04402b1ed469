/*
 * Block jobs (block/job.c): one pass over the virtual disk [0, length)
 * of an image, done by several coroutines with requests in flight.
 *
 * The job knows nothing of what it copies.  Its driver, given by the
 * caller (commit, rebase), answers two questions:
 *  - plan: what to do with the extent at an offset (skip it, write zeroes,
 *    or handle data), usually from block status, so that only allocated
 *    extents are ever read;
 *  - run: do it for one chunk (at most BlockJobParams.chunk bytes, cut at
 *    multiples of .align unless an extent ends elsewhere).
 * The core walks the disk once without data to learn the total (progress),
 * then again with .workers coroutines, paces the chunks to .rate bytes per
 * second in 100 ms slices (a chunk is never larger than one slice's quota,
 * so the rate neither bursts nor stalls), stops at the first failure and
 * flushes .target when everything succeeded.
 *
 * Threading: block_job_run() is called from plain code on the main loop
 * thread and polls the loop until the job is done; the callbacks run in
 * the job's coroutines, one at a time (plan under the walk lock, in disk
 * order; run concurrently with other chunks' run).
 */
#ifndef STRATA_BLOCK_JOB_H
#define STRATA_BLOCK_JOB_H

#include <stdint.h>
#include "block/block.h"

typedef enum {
    BLOCK_JOB_SKIP,         /* nothing to do for this extent */
    BLOCK_JOB_ZERO,         /* the driver's meaning: e.g. "reads as zeroes" */
    BLOCK_JOB_DATA,         /* the driver's meaning: e.g. "copy data" */
} BlockJobExtent;

/* Where a job failed: the first failure wins. */
typedef struct BlockJobFailure {
    int ret;                /* -errno; 0 if none */
    int64_t offset;         /* guest offset of the failed request */
    const char *image;      /* filename of the image that failed (borrowed) */
    bool write;             /* writing (else reading) */
} BlockJobFailure;

/* A chunk's place in the order of writes (see BlockJobParams.in_order). */
typedef struct BlockJobTurn BlockJobTurn;

/* With .in_order: wait until every earlier chunk's run() has returned.
 * run() calls it before its first write (reads may go on concurrently);
 * the core calls it after run() in any case.  No-op otherwise. */
void coroutine_fn block_job_wait_turn(BlockJobTurn *turn);

typedef struct BlockJobDriver {
    /* BlockJobExtent of the first *pnum (> 0) bytes of [offset, offset +
     * bytes), or -errno with @f filled. */
    int coroutine_fn (*plan)(void *opaque, int64_t offset, int64_t bytes,
                             int64_t *pnum, BlockJobFailure *f);
    /* Handle one chunk, with @buf (.buf_size bytes, 4 KiB aligned, the
     * worker's own); 0 or -errno with @f filled. */
    int coroutine_fn (*run)(void *opaque, BlockJobExtent kind, int64_t offset,
                            int64_t bytes, void *buf, BlockJobTurn *turn,
                            BlockJobFailure *f);
} BlockJobDriver;

typedef struct BlockJobParams {
    const BlockJobDriver *drv;
    void *opaque;
    int64_t length;         /* bytes of the disk the job walks */
    int64_t chunk;          /* largest chunk (0: 2 MiB) */
    int64_t align;          /* chunk boundaries (0: 64 KiB); divides chunk */
    int64_t buf_size;       /* each worker's buffer (0: .chunk bytes) */
    int workers;            /* coroutines (0: 8) */
    uint64_t rate;          /* bytes per second; 0: unlimited */
    /* Chunks write in disk order (block_job_wait_turn()), so that a
     * target allocating as it is written is laid out in that order. */
    bool in_order;
    BlockDriverState *target;  /* flushed on success (may be NULL) */
    /* Progress in percent (0..100), called as chunks complete (may be
     * NULL; not called when nothing is to be done: the caller prints the
     * final 100 %). */
    void (*progress)(void *opaque, double percent);
} BlockJobParams;

/* Run the job to its end.  0, or -errno with *@f saying where it failed
 * (a flush failure: offset -1). */
int block_job_run(const BlockJobParams *p, BlockJobFailure *f);

/* Record a failure in @f (if none yet); returns @ret. */
int block_job_fail(BlockJobFailure *f, int ret, int64_t offset,
                   BlockDriverState *bs, bool write);

#endif
