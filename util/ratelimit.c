#include "config.h"

#include "util/cutils.h"
#include "util/ratelimit.h"

void ratelimit_set_speed(RateLimit *rl, uint64_t speed, uint64_t slice_ns)
{
    rl->slice_ns = slice_ns ? slice_ns : 100000000ULL;
    if (!speed) {
        rl->slice_quota = 0;
        return;
    }
    /* at least one unit per slice, or nothing could ever be dispatched */
    rl->slice_quota = MAX((uint64_t)((double)speed * rl->slice_ns / 1e9), 1);
}

int64_t ratelimit_calculate_delay(RateLimit *rl, uint64_t n)
{
    int64_t now = clock_ns();
    double slices;

    if (!rl->slice_quota) {
        return 0;
    }
    if (rl->slice_end_ns < now) {
        /* the (possibly stretched) slice is over: start a fresh one */
        rl->slice_start_ns = now;
        rl->slice_end_ns = now + rl->slice_ns;
        rl->dispatched = 0;
    }
    rl->dispatched += n;
    if (rl->dispatched < rl->slice_quota) {
        return 0;
    }
    /* over quota: stretch the slice so the average rate holds */
    slices = (double)rl->dispatched / rl->slice_quota;
    rl->slice_end_ns = rl->slice_start_ns + (int64_t)(slices * rl->slice_ns);
    return MAX(rl->slice_end_ns - now, 0);
}
