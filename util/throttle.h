/*
 * Token-bucket ("leaky bucket") throttling maths, independent of any I/O.
 *
 * Six buckets: bytes and ops, each for total/read/write.  A bucket has
 * avg (units/s), max (burst units/s, 0 = avg), burst_length (s, >= 1) and
 * a level that leaks at avg per second.  A request may proceed when no
 * relevant bucket is over its allowed level; otherwise throttle_compute_wait
 * tells how long (ns) to wait.  iops_size (bytes, 0 = off) counts a large
 * request as several ops.  Semantics follow QEMU's documented throttling
 * (docs/throttle.txt) so limits behave the same for users.
 */
#ifndef STRATA_THROTTLE_H
#define STRATA_THROTTLE_H

#include <stdbool.h>
#include <stdint.h>
#include "util/error.h"

typedef enum {
    THROTTLE_BPS_TOTAL, THROTTLE_BPS_READ, THROTTLE_BPS_WRITE,
    THROTTLE_OPS_TOTAL, THROTTLE_OPS_READ, THROTTLE_OPS_WRITE,
    THROTTLE_BUCKETS_COUNT,
} ThrottleBucketType;

typedef struct ThrottleBucket {
    double avg;            /* units per second; 0 = unlimited */
    double max;            /* burst rate; 0 = no bursts beyond avg */
    double level;          /* current level, units */
    double burst_level;    /* level of the burst bucket */
    uint64_t burst_length; /* seconds */
} ThrottleBucket;

typedef struct ThrottleConfig {
    ThrottleBucket buckets[THROTTLE_BUCKETS_COUNT];
    uint64_t op_size;      /* iops-size */
} ThrottleConfig;

typedef struct ThrottleState {
    ThrottleConfig cfg;
    int64_t previous_leak; /* ns */
} ThrottleState;

void throttle_config_init(ThrottleConfig *cfg);
/* Checks ranges and combinations; messages match QEMU's for the same
 * throttling.* options (e.g. "bps and bps_rd/bps_wr cannot be used at the
 * same time", "bps_max/iops_max require corresponding bps/iops values"). */
bool throttle_config_is_valid(const ThrottleConfig *cfg, Error **errp);
bool throttle_config_enabled(const ThrottleConfig *cfg);
void throttle_state_init(ThrottleState *ts, const ThrottleConfig *cfg, int64_t now_ns);
/* Leak all buckets up to @now_ns. */
void throttle_leak(ThrottleState *ts, int64_t now_ns);
/* 0 if a request of this direction may go now, else ns to wait. */
int64_t throttle_compute_wait(ThrottleState *ts, bool is_write, int64_t now_ns);
/* Charge a dispatched request of @bytes to the buckets. */
void throttle_account(ThrottleState *ts, bool is_write, uint64_t bytes);

#endif
