#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "util/progress.h"

static struct {
    bool enabled;
    float min_skip;
    float current;
    float last_print;
} state;

static volatile sig_atomic_t print_pending;

/* SIGUSR1: ask for one status line at the next progress update. */
static void progress_sigusr1(int sig)
{
    print_pending = 1;
}

/* Without -p, SIGUSR1 is how a user asks "how far along are we?". */
static void progress_install_signal(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = progress_sigusr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
}

void progress_init(bool enabled, float min_skip)
{
    state.enabled = enabled;
    state.min_skip = min_skip;
    state.current = 0;
    state.last_print = 0;
    print_pending = 0;
    progress_install_signal();
}

/* Print the line if it moved enough (or hit an end point), or on SIGUSR1. */
static void progress_update(float current)
{
    if (current > 100) {
        current = 100;
    }
    state.current = current;
    if (!state.enabled) {
        if (print_pending) {
            print_pending = 0;
            fprintf(stderr, "    (%3.2f/100%%)\n", state.current);
            fflush(stderr);
        }
        return;
    }
    if (current > state.last_print + state.min_skip ||
        current < state.last_print - state.min_skip ||
        current == 0 || current == 100) {
        state.last_print = current;
        printf("    (%3.2f/100%%)\r", current);
        fflush(stdout);
    }
}

void progress_print(float delta, int max)
{
    if (max == 0) {
        progress_update(delta);
    } else {
        progress_update(state.current + delta / 100 * max);
    }
}

void progress_set(float percent)
{
    progress_update(percent);
}

void progress_end(void)
{
    if (state.enabled) {
        printf("\n");
        fflush(stdout);
    }
}
