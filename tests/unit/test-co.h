/*
 * Test helper shared by the util/ unit tests: run a coroutine function to
 * completion from plain test code, polling the default AioContext.
 * (util/aio.c's co_run_sync() does the same; these tests keep their own
 * so that a bug there does not hide behind the helper.)
 */
#ifndef STRATA_TEST_CO_H
#define STRATA_TEST_CO_H

#include <stdbool.h>
#include "coroutine/coroutine.h"
#include "util/aio.h"

typedef struct CoRun {
    CoroutineEntry *fn;
    void *opaque;
    bool done;
} CoRun;

/* Coroutine body for run_in_coroutine(). */
static void coroutine_fn co_run_entry(void *opaque)
{
    CoRun *r = opaque;

    r->fn(r->opaque);
    r->done = true;
}

/* Run @fn in a coroutine and poll until it has returned. */
static inline void run_in_coroutine(CoroutineEntry *fn, void *opaque)
{
    CoRun r = { .fn = fn, .opaque = opaque };

    co_enter(co_create(co_run_entry, &r));
    AIO_WAIT_WHILE(aio_get_default(), !r.done);
}

#endif
