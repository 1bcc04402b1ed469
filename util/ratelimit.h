/* Rate limiting by time slices (block jobs, convert -r). */
#ifndef STRATA_RATELIMIT_H
#define STRATA_RATELIMIT_H

#include <stdint.h>

typedef struct RateLimit {
    int64_t slice_start_ns;
    int64_t slice_end_ns;
    uint64_t slice_quota;   /* units per slice; 0 = unlimited */
    uint64_t slice_ns;
    uint64_t dispatched;
} RateLimit;

/* @speed: units per second (0 = unlimited); @slice_ns: accounting slice
 * (0 = 100 ms).  The quota per slice is at least 1 unit.  Uses clock_ns(). */
void ratelimit_set_speed(RateLimit *rl, uint64_t speed, uint64_t slice_ns);
/* Account @n units dispatched now; returns ns the caller should sleep
 * before dispatching more (0 = go on). */
int64_t ratelimit_calculate_delay(RateLimit *rl, uint64_t n);

#endif
