/*
 * qemu-img style progress: with -p, "    (%3.2f/100%)\r" on stdout, flushed
 * on every printed change of at least @min_skip percent, and a final "\n"
 * from progress_end().  Without -p (enabled=false) nothing is printed but
 * SIGUSR1 prints the current line once, terminated by "\n", on stderr.
 */
#ifndef STRATA_PROGRESS_H
#define STRATA_PROGRESS_H

#include <stdbool.h>

void progress_init(bool enabled, float min_skip);
/* Advance by @delta percent of a task that is @max percent of the whole
 * (qemu-img's semantics: progress_print(100, 0) sets 100%). */
void progress_print(float delta, int max);
/* Set the absolute position (0..100). */
void progress_set(float percent);
/* Prints only the terminating "\n" (with -p).  Like qemu-img, callers
 * print the final 100.00 line themselves with progress_print(100, 0). */
void progress_end(void);

#endif
