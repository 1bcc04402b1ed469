#include "config.h"
/*
 * bench-coroutine: nanoseconds per co_enter() + co_yield() round trip.
 *
 * Usage: bench-coroutine [iterations] [runs]   (default 10000000, 5)
 * Prints the best (lowest) of the runs.
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "coroutine/coroutine.h"

/* Yield forever; the counter keeps the loop observable. */
static void coroutine_fn spin(void *opaque)
{
    volatile unsigned long *count = opaque;

    for (;;) {
        (*count)++;
        co_yield();
    }
}

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* One timed run of @iters round trips into @co; returns ns per trip. */
static double run_once(Coroutine *co, long iters)
{
    double t0 = now_ns();

    for (long i = 0; i < iters; i++) {
        co_enter(co);
    }
    return (now_ns() - t0) / iters;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 10000000;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    volatile unsigned long count = 0;
    Coroutine *co = co_create(spin, (void *)&count);
    double best = 1e300;

    if (iters <= 0 || runs <= 0) {
        fprintf(stderr, "usage: %s [iterations > 0] [runs > 0]\n", argv[0]);
        return 2;
    }
    co_enter(co);                   /* warm up: first entry, stack pages */
    for (int r = 0; r < runs; r++) {
        double ns = run_once(co, iters);
        printf("run %d: %.2f ns per enter+yield\n", r + 1, ns);
        best = MIN(best, ns);
    }
    if (count != (unsigned long)iters * runs + 1) {
        fprintf(stderr, "bench-coroutine: lost switches\n");
        return 1;
    }
    printf("best of %d x %ld: %.2f ns per enter+yield round trip\n",
           runs, iters, best);
    return 0;
}
