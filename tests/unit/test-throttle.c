#include "config.h"

#include <glib.h>
#include <string.h>

#include "util/throttle.h"

#define SEC 1000000000LL

/*
 * Simulate a client that issues @req_size requests whenever the throttle
 * lets it, for @duration ns of simulated time; returns units admitted.
 */
static uint64_t simulate(ThrottleState *ts, bool is_write, uint64_t req_size,
                         int64_t start, int64_t duration)
{
    int64_t now = start;
    uint64_t done = 0;

    while (now < start + duration) {
        int64_t wait;

        g_assert_cmpuint(done, <, (uint64_t)1 << 40);   /* never unthrottled */
        wait = throttle_compute_wait(ts, is_write, now);
        if (wait) {
            now += wait;
            continue;
        }
        throttle_account(ts, is_write, req_size);
        done += req_size;
    }
    return done;
}

static void test_config_init(void)
{
    ThrottleConfig cfg;

    throttle_config_init(&cfg);
    g_assert_false(throttle_config_enabled(&cfg));
    g_assert_true(throttle_config_is_valid(&cfg, &error_abort));
    for (int i = 0; i < THROTTLE_BUCKETS_COUNT; i++) {
        g_assert_cmpuint(cfg.buckets[i].burst_length, ==, 1);
    }
    cfg.buckets[THROTTLE_OPS_READ].avg = 10;
    g_assert_true(throttle_config_enabled(&cfg));
}

static void test_no_limit(void)
{
    ThrottleConfig cfg;
    ThrottleState ts;

    throttle_config_init(&cfg);
    throttle_state_init(&ts, &cfg, 0);
    for (int i = 0; i < 1000; i++) {
        g_assert_cmpint(throttle_compute_wait(&ts, i & 1, 0), ==, 0);
        throttle_account(&ts, i & 1, 1 << 20);
    }
}

/* A 1 MB/s bucket admits about 1 MB per simulated second. */
static void test_bps_average(void)
{
    ThrottleConfig cfg;
    ThrottleState ts;
    uint64_t done;

    throttle_config_init(&cfg);
    cfg.buckets[THROTTLE_BPS_TOTAL].avg = 1000000;
    g_assert_true(throttle_config_is_valid(&cfg, &error_abort));
    throttle_state_init(&ts, &cfg, 5 * SEC);
    done = simulate(&ts, false, 4096, 5 * SEC, 10 * SEC);
    /* 10 s at 1 MB/s, plus the initial 100 ms allowance and one request */
    g_assert_cmpuint(done, >=, 10000000);
    g_assert_cmpuint(done, <=, 10000000 + 100000 + 2 * 4096);
    /* the steady state is still 1 MB/s */
    done = simulate(&ts, true, 65536, 15 * SEC, 5 * SEC);
    g_assert_cmpuint(done, >=, 5000000 - 65536);
    g_assert_cmpuint(done, <=, 5000000 + 65536);
}

/* The wait computed for an over-full bucket drains exactly the overflow. */
static void test_wait_value(void)
{
    ThrottleConfig cfg;
    ThrottleState ts;
    int64_t wait;

    throttle_config_init(&cfg);
    cfg.buckets[THROTTLE_BPS_TOTAL].avg = 1000000;
    throttle_state_init(&ts, &cfg, 0);
    g_assert_cmpint(throttle_compute_wait(&ts, false, 0), ==, 0);
    throttle_account(&ts, false, 600000);
    /* level 600000, allowance avg/10 = 100000: 0.5 s of overflow */
    wait = throttle_compute_wait(&ts, false, 0);
    g_assert_cmpint(wait, >=, SEC / 2);
    g_assert_cmpint(wait, <=, SEC / 2 + 1000);
    g_assert_cmpint(throttle_compute_wait(&ts, false, wait), ==, 0);
}

/* Read and write buckets are independent; total applies to both. */
static void test_read_write_split(void)
{
    ThrottleConfig cfg;
    ThrottleState ts;

    throttle_config_init(&cfg);
    cfg.buckets[THROTTLE_BPS_READ].avg = 1000;
    g_assert_true(throttle_config_is_valid(&cfg, &error_abort));
    throttle_state_init(&ts, &cfg, 0);
    throttle_account(&ts, false, 100000);
    g_assert_cmpint(throttle_compute_wait(&ts, false, 0), >, 0);
    g_assert_cmpint(throttle_compute_wait(&ts, true, 0), ==, 0);
    for (int i = 0; i < 100; i++) {
        g_assert_cmpint(throttle_compute_wait(&ts, true, 0), ==, 0);
        throttle_account(&ts, true, 1 << 20);
    }
}

/* Bursts: max*burst_length go at up to max, then avg again. */
static void test_burst(void)
{
    ThrottleConfig cfg;
    ThrottleState ts;
    uint64_t done;

    throttle_config_init(&cfg);
    cfg.buckets[THROTTLE_OPS_TOTAL].avg = 10;
    cfg.buckets[THROTTLE_OPS_TOTAL].max = 100;
    cfg.buckets[THROTTLE_OPS_TOTAL].burst_length = 5;
    g_assert_true(throttle_config_is_valid(&cfg, &error_abort));
    throttle_state_init(&ts, &cfg, 0);

    /* first second: limited by the burst rate (100/s) */
    done = simulate(&ts, false, 1, 0, SEC);
    g_assert_cmpuint(done, >=, 100);
    g_assert_cmpuint(done, <=, 115);
    /* by 6 s the burst (500 + 6 s of leak at avg) is spent */
    done += simulate(&ts, false, 1, SEC, 5 * SEC);
    g_assert_cmpuint(done, >=, 500);
    g_assert_cmpuint(done, <=, 500 + 60 + 2);
    /* afterwards: avg (10/s) */
    done = simulate(&ts, false, 1, 6 * SEC, 10 * SEC);
    g_assert_cmpuint(done, >=, 99);
    g_assert_cmpuint(done, <=, 101);
}

/* max with burst_length 1: a one-off allowance of max units. */
static void test_max_one_second(void)
{
    ThrottleConfig cfg;
    ThrottleState ts;
    uint64_t done;

    throttle_config_init(&cfg);
    cfg.buckets[THROTTLE_OPS_WRITE].avg = 10;
    cfg.buckets[THROTTLE_OPS_WRITE].max = 50;
    throttle_state_init(&ts, &cfg, 0);
    done = simulate(&ts, true, 1, 0, 1);
    g_assert_cmpuint(done, ==, 51);
    done = simulate(&ts, true, 1, 1, 10 * SEC);
    g_assert_cmpuint(done, >=, 99);
    g_assert_cmpuint(done, <=, 101);
}

/* iops-size: a big request counts as several operations. */
static void test_iops_size(void)
{
    ThrottleConfig cfg;
    ThrottleState ts;

    throttle_config_init(&cfg);
    cfg.buckets[THROTTLE_OPS_TOTAL].avg = 100;
    cfg.op_size = 4096;
    g_assert_true(throttle_config_is_valid(&cfg, &error_abort));
    throttle_state_init(&ts, &cfg, 0);
    /* 64 KiB = 16 ops each: ~100 ops/s -> about 6 requests per second */
    g_assert_cmpuint(simulate(&ts, false, 65536, 0, 10 * SEC) / 65536, <=, 64);
    g_assert_cmpuint(simulate(&ts, false, 65536, 10 * SEC, 10 * SEC) / 65536,
                     >=, 60);
    /* small requests count as one op */
    throttle_state_init(&ts, &cfg, 0);
    g_assert_cmpuint(simulate(&ts, false, 512, 0, 10 * SEC) / 512, >=, 1000);
}

typedef struct {
    void (*setup)(ThrottleConfig *cfg);
    const char *msg;
} InvalidCase;

static void inv_total_rw(ThrottleConfig *c)
{
    c->buckets[THROTTLE_BPS_TOTAL].avg = 1;
    c->buckets[THROTTLE_BPS_WRITE].avg = 1;
}
static void inv_ops_total_rw(ThrottleConfig *c)
{
    c->buckets[THROTTLE_OPS_TOTAL].avg = 1;
    c->buckets[THROTTLE_OPS_READ].avg = 1;
}
static void inv_op_size(ThrottleConfig *c)
{
    c->op_size = 4096;
    c->buckets[THROTTLE_BPS_TOTAL].avg = 1;
}
static void inv_range(ThrottleConfig *c)
{
    c->buckets[THROTTLE_BPS_READ].avg = 1e15 + 1;
}
static void inv_zero_len(ThrottleConfig *c)
{
    c->buckets[THROTTLE_OPS_WRITE].burst_length = 0;
}
static void inv_len_no_max(ThrottleConfig *c)
{
    c->buckets[THROTTLE_BPS_TOTAL].avg = 10;
    c->buckets[THROTTLE_BPS_TOTAL].burst_length = 2;
}
static void inv_len_too_high(ThrottleConfig *c)
{
    c->buckets[THROTTLE_BPS_TOTAL].avg = 1e14;
    c->buckets[THROTTLE_BPS_TOTAL].max = 1e15;
    c->buckets[THROTTLE_BPS_TOTAL].burst_length = 2;
}
static void inv_max_no_avg(ThrottleConfig *c)
{
    c->buckets[THROTTLE_OPS_READ].max = 10;
}
static void inv_max_lower(ThrottleConfig *c)
{
    c->buckets[THROTTLE_OPS_READ].avg = 10;
    c->buckets[THROTTLE_OPS_READ].max = 5;
}

static void test_invalid(void)
{
    static const InvalidCase cases[] = {
        { inv_total_rw, "bps/iops/max total values and read/write values "
                        "cannot be used at the same time" },
        { inv_ops_total_rw, "bps/iops/max total values and read/write values "
                            "cannot be used at the same time" },
        { inv_op_size, "iops size requires an iops value to be set" },
        { inv_range, "bps/iops/max values must be within [0, 1000000000000000]" },
        { inv_zero_len, "the burst length cannot be 0" },
        { inv_len_no_max, "burst length set without burst rate" },
        { inv_len_too_high, "burst length too high for this burst rate" },
        { inv_max_no_avg, "bps_max/iops_max require corresponding bps/iops values" },
        { inv_max_lower, "bps_max/iops_max cannot be lower than bps/iops" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        ThrottleConfig cfg;
        Error *err = NULL;

        throttle_config_init(&cfg);
        cases[i].setup(&cfg);
        g_assert_false(throttle_config_is_valid(&cfg, &err));
        g_assert_nonnull(err);
        g_assert_cmpstr(error_get_pretty(err), ==, cases[i].msg);
        error_free(err);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/throttle/config-init", test_config_init);
    g_test_add_func("/throttle/no-limit", test_no_limit);
    g_test_add_func("/throttle/bps-average", test_bps_average);
    g_test_add_func("/throttle/wait-value", test_wait_value);
    g_test_add_func("/throttle/read-write", test_read_write_split);
    g_test_add_func("/throttle/burst", test_burst);
    g_test_add_func("/throttle/max-one-second", test_max_one_second);
    g_test_add_func("/throttle/iops-size", test_iops_size);
    g_test_add_func("/throttle/invalid", test_invalid);
    return g_test_run();
}
