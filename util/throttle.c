#include "config.h"

#include <string.h>

#include "util/throttle.h"

#define THROTTLE_VALUE_MAX 1000000000000000LL
#define NS_PER_SEC 1000000000.0

void throttle_config_init(ThrottleConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (int i = 0; i < THROTTLE_BUCKETS_COUNT; i++) {
        cfg->buckets[i].burst_length = 1;
    }
}

/* A total limit excludes read/write limits of the same kind. */
static bool total_and_rw_conflict(const ThrottleConfig *cfg, int total)
{
    return cfg->buckets[total].avg &&
           (cfg->buckets[total + 1].avg || cfg->buckets[total + 2].avg);
}

/* Per-bucket range and combination checks, in QEMU's order. */
static bool bucket_is_valid(const ThrottleBucket *b, Error **errp)
{
    if (b->avg < 0 || b->max < 0 ||
        b->avg > THROTTLE_VALUE_MAX || b->max > THROTTLE_VALUE_MAX) {
        error_setg(errp, "bps/iops/max values must be within [0, %lld]",
                   THROTTLE_VALUE_MAX);
        return false;
    }
    if (!b->burst_length) {
        error_setg(errp, "the burst length cannot be 0");
        return false;
    }
    if (b->burst_length > 1 && !b->max) {
        error_setg(errp, "burst length set without burst rate");
        return false;
    }
    if (b->max && b->burst_length > THROTTLE_VALUE_MAX / b->max) {
        error_setg(errp, "burst length too high for this burst rate");
        return false;
    }
    if (b->max && !b->avg) {
        error_setg(errp, "bps_max/iops_max require corresponding bps/iops values");
        return false;
    }
    if (b->max && b->max < b->avg) {
        error_setg(errp, "bps_max/iops_max cannot be lower than bps/iops");
        return false;
    }
    return true;
}

bool throttle_config_is_valid(const ThrottleConfig *cfg, Error **errp)
{
    if (total_and_rw_conflict(cfg, THROTTLE_BPS_TOTAL) ||
        total_and_rw_conflict(cfg, THROTTLE_OPS_TOTAL)) {
        error_setg(errp, "bps/iops/max total values and read/write values"
                   " cannot be used at the same time");
        return false;
    }
    if (cfg->op_size && !cfg->buckets[THROTTLE_OPS_TOTAL].avg &&
        !cfg->buckets[THROTTLE_OPS_READ].avg &&
        !cfg->buckets[THROTTLE_OPS_WRITE].avg) {
        error_setg(errp, "iops size requires an iops value to be set");
        return false;
    }
    for (int i = 0; i < THROTTLE_BUCKETS_COUNT; i++) {
        if (!bucket_is_valid(&cfg->buckets[i], errp)) {
            return false;
        }
    }
    return true;
}

bool throttle_config_enabled(const ThrottleConfig *cfg)
{
    for (int i = 0; i < THROTTLE_BUCKETS_COUNT; i++) {
        if (cfg->buckets[i].avg > 0) {
            return true;
        }
    }
    return false;
}

void throttle_state_init(ThrottleState *ts, const ThrottleConfig *cfg, int64_t now_ns)
{
    ts->cfg = *cfg;
    for (int i = 0; i < THROTTLE_BUCKETS_COUNT; i++) {
        ts->cfg.buckets[i].level = 0;
        ts->cfg.buckets[i].burst_level = 0;
        if (!ts->cfg.buckets[i].burst_length) {
            ts->cfg.buckets[i].burst_length = 1;
        }
    }
    ts->previous_leak = now_ns;
}

/* Drain one bucket by what it leaked in @delta_ns. */
static void bucket_leak(ThrottleBucket *b, int64_t delta_ns)
{
    double leak = b->avg * (double)delta_ns / NS_PER_SEC;

    b->level = MAX(b->level - leak, 0);
    if (b->burst_length > 1) {
        leak = b->max * (double)delta_ns / NS_PER_SEC;
        b->burst_level = MAX(b->burst_level - leak, 0);
    }
}

void throttle_leak(ThrottleState *ts, int64_t now_ns)
{
    int64_t delta = now_ns - ts->previous_leak;

    if (delta <= 0) {
        return;
    }
    ts->previous_leak = now_ns;
    for (int i = 0; i < THROTTLE_BUCKETS_COUNT; i++) {
        bucket_leak(&ts->cfg.buckets[i], delta);
    }
}

/* ns needed to drain @extra units at @rate units/s. */
static int64_t wait_for_extra(double rate, double extra)
{
    return (int64_t)(extra / rate * NS_PER_SEC) + 1;
}

/*
 * Wait imposed by one bucket.  Without a burst rate the bucket still
 * holds avg/10 (100 ms of I/O) so a steady stream of small requests is
 * not serialised; with one, it holds max*burst_length and the burst
 * bucket caps the rate at max during the burst.
 */
static int64_t bucket_wait(const ThrottleBucket *b)
{
    double max, size, burst_size, extra;

    if (!b->avg) {
        return 0;
    }
    max = b->max ? b->max : b->avg / 10;
    size = max * b->burst_length;
    burst_size = max / 10;
    extra = b->level - size;
    if (extra > 0) {
        return wait_for_extra(b->avg, extra);
    }
    if (b->burst_length > 1) {
        extra = b->burst_level - burst_size;
        if (extra > 0) {
            return wait_for_extra(max, extra);
        }
    }
    return 0;
}

int64_t throttle_compute_wait(ThrottleState *ts, bool is_write, int64_t now_ns)
{
    static const ThrottleBucketType rd[] = {
        THROTTLE_BPS_TOTAL, THROTTLE_BPS_READ, THROTTLE_OPS_TOTAL, THROTTLE_OPS_READ,
    };
    static const ThrottleBucketType wr[] = {
        THROTTLE_BPS_TOTAL, THROTTLE_BPS_WRITE, THROTTLE_OPS_TOTAL, THROTTLE_OPS_WRITE,
    };
    const ThrottleBucketType *list = is_write ? wr : rd;
    int64_t wait = 0;

    throttle_leak(ts, now_ns);
    for (int i = 0; i < 4; i++) {
        wait = MAX(wait, bucket_wait(&ts->cfg.buckets[list[i]]));
    }
    return wait;
}

/* Add @units to a bucket (and to its burst bucket when bursts last > 1 s). */
static void bucket_add(ThrottleBucket *b, double units)
{
    if (!b->avg) {
        return;
    }
    b->level += units;
    if (b->burst_length > 1) {
        b->burst_level += units;
    }
}

void throttle_account(ThrottleState *ts, bool is_write, uint64_t bytes)
{
    ThrottleBucket *bk = ts->cfg.buckets;
    double ops = 1;

    if (ts->cfg.op_size && bytes > ts->cfg.op_size) {
        ops = (double)bytes / ts->cfg.op_size;
    }
    bucket_add(&bk[THROTTLE_BPS_TOTAL], bytes);
    bucket_add(&bk[is_write ? THROTTLE_BPS_WRITE : THROTTLE_BPS_READ], bytes);
    bucket_add(&bk[THROTTLE_OPS_TOTAL], ops);
    bucket_add(&bk[is_write ? THROTTLE_OPS_WRITE : THROTTLE_OPS_READ], ops);
}
