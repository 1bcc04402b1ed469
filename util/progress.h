/*
 * qemu-img style progress: with -p, "    (%3.2f/100%)\r" on stdout, flushed
 * on every printed change of at least @min_skip percent, and a final "\n"
 * from progress_end().  Without -p (enabled=false) nothing is printed but
 * SIGUSR1 prints the current line once, terminated by "\n", on stderr.
 */
#ifndef STRATA_PROGRESS_H
#define STRATA_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

void progress_init(bool enabled, float min_skip);
/* Advance by @delta percent of a task that is @max percent of the whole
 * (qemu-img's semantics: progress_print(100, 0) sets 100%). */
void progress_print(float delta, int max);
/* Set the absolute position (0..100). */
void progress_set(float percent);
/* Prints only the terminating "\n" (with -p).  Like qemu-img, callers
 * print the final 100.00 line themselves with progress_print(100, 0). */
void progress_end(void);

/*
 * A sequence of progress values worked out before the work starts (the
 * reference's steps: one per loop iteration or job request), so that -p
 * prints the same lines however the work is really cut and ordered.
 * progress_plan_step() adds the position after one more step (percent,
 * kept only if the -p filter would print it); progress_plan_reach()
 * shows the steps up to a fraction (0..1) of the work done, in order;
 * progress_plan_finish() the rest.  Memory: one entry per printed
 * value, runs of equal values at consecutive steps share one.
 */
typedef struct ProgressPlan {
    GArray *lines;          /* ProgressPlanLine, in step order */
    int64_t steps;          /* steps added */
    int64_t shown;          /* steps shown */
    guint next;             /* first line not fully shown */
    float min_skip;
    float last_print;       /* the filter's state while adding */
} ProgressPlan;

void progress_plan_init(ProgressPlan *plan, float min_skip);
void progress_plan_step(ProgressPlan *plan, float percent);
void progress_plan_reach(ProgressPlan *plan, double fraction);
void progress_plan_finish(ProgressPlan *plan);
void progress_plan_free(ProgressPlan *plan);

#endif
