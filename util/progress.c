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

/* ---- progress plans ---- */

typedef struct ProgressPlanLine {
    float value;
    int64_t first;          /* the step that prints it first */
    int64_t count;          /* at steps first .. first + count - 1 */
} ProgressPlanLine;

void progress_plan_init(ProgressPlan *plan, float min_skip)
{
    memset(plan, 0, sizeof(*plan));
    plan->lines = g_array_new(false, false, sizeof(ProgressPlanLine));
    plan->min_skip = min_skip;
}

/* The same test as progress_update(), on the plan's own filter state. */
static bool plan_would_print(ProgressPlan *plan, float v)
{
    return v > plan->last_print + plan->min_skip ||
           v < plan->last_print - plan->min_skip || v == 0 || v == 100;
}

void progress_plan_step(ProgressPlan *plan, float percent)
{
    ProgressPlanLine *last = plan->lines->len ?
        &g_array_index(plan->lines, ProgressPlanLine, plan->lines->len - 1) :
        NULL;
    ProgressPlanLine line = { .value = MIN(percent, 100.f), .count = 1 };

    line.first = ++plan->steps;
    if (!plan_would_print(plan, line.value)) {
        return;
    }
    plan->last_print = line.value;
    if (last && last->value == line.value &&
        last->first + last->count == line.first) {
        last->count++;
        return;
    }
    g_array_append_val(plan->lines, line);
}

/* Show every planned line printed at a step up to @step. */
static void plan_show_until(ProgressPlan *plan, int64_t step)
{
    while (plan->next < plan->lines->len) {
        ProgressPlanLine *l = &g_array_index(plan->lines, ProgressPlanLine,
                                             plan->next);
        int64_t from = MAX(plan->shown + 1, l->first);
        int64_t to = MIN(step, l->first + l->count - 1);

        for (int64_t s = from; s <= to; s++) {
            progress_set(l->value);
        }
        if (to < l->first + l->count - 1) {
            break;
        }
        plan->next++;
    }
    plan->shown = MAX(plan->shown, MIN(step, plan->steps));
}

void progress_plan_reach(ProgressPlan *plan, double fraction)
{
    fraction = fraction < 0 ? 0 : fraction > 1 ? 1 : fraction;
    plan_show_until(plan, (int64_t)(fraction * plan->steps));
}

void progress_plan_finish(ProgressPlan *plan)
{
    plan_show_until(plan, plan->steps);
}

void progress_plan_free(ProgressPlan *plan)
{
    if (plan->lines) {
        g_array_free(plan->lines, true);
        plan->lines = NULL;
    }
}
