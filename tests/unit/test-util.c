#include "config.h"

#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/cutils.h"
#include "util/error.h"
#include "util/iov.h"
#include "util/progress.h"
#include "util/ratelimit.h"

/* ---- size_parse ---- */

typedef struct {
    const char *str;
    int ret;
    uint64_t val;
} SizeCase;

/* Accepted/rejected strings, checked against qemu-img 10.0 create. */
static const SizeCase size_cases[] = {
    { "0", 0, 0 },
    { "1", 0, 1 },
    { "1k", 0, 1024 },
    { "1K", 0, 1024 },
    { "1b", 0, 1 },
    { "1B", 0, 1 },
    { "1m", 0, 1048576 },
    { "1M", 0, 1048576 },
    { "1g", 0, 1073741824 },
    { "1T", 0, 1099511627776ULL },
    { "1P", 0, 1125899906842624ULL },
    { "1E", 0, 1152921504606846976ULL },
    { "1.5G", 0, 1610612736 },
    { "1.5e", 0, 1729382256910270464ULL },
    { ".5k", 0, 512 },
    { "1.k", 0, 1024 },
    { "1.", 0, 1 },
    { "1.0", 0, 1 },
    { "1.0b", 0, 1 },
    { "1.00k", 0, 1024 },
    { "0.0001k", 0, 0 },
    { "1.1234567890123456789k", 0, 1150 },
    { "0.9999999999999999999999k", 0, 1024 },
    { "7.99999999999E", 0, 9223372036843246592ULL },
    { "8191P", 0, 9222246136947933184ULL },
    { "0x100", 0, 256 },
    { "0X10", 0, 16 },
    { "077", 0, 77 },
    { " 1k", 0, 1024 },
    { "+1k", 0, 1024 },
    { "18446744073709551615", 0, UINT64_MAX },
    { "0xffffffffffffffff", 0, UINT64_MAX },
    { "16E", -ERANGE, 0 },
    { "16.0E", -ERANGE, 0 },
    { "15.99999999999999999999E", -ERANGE, 0 },
    { "15.5E", 0, 17870283321406128128ULL },
    { "18446744073709551616", -ERANGE, 0 },
    { "99999999999999999999", -ERANGE, 0 },
    { "0x10000000000000000", -ERANGE, 0 },
    { "9007199254740993P", -ERANGE, 0 },
    { "-1", -ERANGE, 0 },
    { " -1", -ERANGE, 0 },
    { "-0", -ERANGE, 0 },
    { "1.5", -EINVAL, 0 },
    { "0.5", -EINVAL, 0 },
    { "1.5b", -EINVAL, 0 },
    { "1.5B", -EINVAL, 0 },
    { "0x100k", -EINVAL, 0 },
    { "0x1.8", -EINVAL, 0 },
    { "0x10.0", -EINVAL, 0 },
    { "0x", -EINVAL, 0 },
    { "0x-1", -EINVAL, 0 },
    { "00x10", -EINVAL, 0 },
    { "", -EINVAL, 0 },
    { ".", -EINVAL, 0 },
    { "k", -EINVAL, 0 },
    { "1e3", -EINVAL, 0 },
    { "1.e3", -EINVAL, 0 },
    { "1 k", -EINVAL, 0 },
    { "1k ", -EINVAL, 0 },
    { "1kk", -EINVAL, 0 },
    { "1KiB", -EINVAL, 0 },
    { "1x", -EINVAL, 0 },
    { "1..5k", -EINVAL, 0 },
    { "1.-5k", -EINVAL, 0 },
    { "1,5k", -EINVAL, 0 },
    { "nan", -EINVAL, 0 },
    { "inf", -EINVAL, 0 },
    /* fractions round to the nearest byte, halves up (qemu-io 10.0) */
    { "0.7k", 0, 717 },
    { "1.0015k", 0, 1026 },
    { "1.000488k", 0, 1024 },
    { "1.00048828125k", 0, 1025 },
};

static void test_size_parse_table(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(size_cases); i++) {
        const SizeCase *c = &size_cases[i];
        uint64_t val = 0xdead;
        int ret = size_parse(c->str, NULL, &val);

        if (ret != c->ret || (ret == 0 && val != c->val)) {
            g_test_message("'%s': ret %d val %" G_GUINT64_FORMAT, c->str, ret, val);
        }
        g_assert_cmpint(ret, ==, c->ret);
        if (ret == 0) {
            g_assert_cmpuint(val, ==, c->val);
        }
    }
}

static void test_size_parse_end(void)
{
    const char *end;
    uint64_t val;

    g_assert_cmpint(size_parse("64k,rest", &end, &val), ==, 0);
    g_assert_cmpuint(val, ==, 65536);
    g_assert_cmpstr(end, ==, ",rest");
    g_assert_cmpint(size_parse("12 x", &end, &val), ==, 0);
    g_assert_cmpuint(val, ==, 12);
    g_assert_cmpstr(end, ==, " x");
    g_assert_cmpint(size_parse("1.5,x", &end, &val), ==, -EINVAL);
}

static void test_size_parse_unit_metric(void)
{
    uint64_t val;

    g_assert_cmpint(size_parse_unit("3", NULL, MiB, &val), ==, 0);
    g_assert_cmpuint(val, ==, 3 * MiB);
    g_assert_cmpint(size_parse_unit("1.5", NULL, MiB, &val), ==, 0);
    g_assert_cmpuint(val, ==, 3 * MiB / 2);
    g_assert_cmpint(size_parse_unit("3k", NULL, MiB, &val), ==, 0);
    g_assert_cmpuint(val, ==, 3 * KiB);
    g_assert_cmpint(size_parse_metric("2k", NULL, &val), ==, 0);
    g_assert_cmpuint(val, ==, 2000);
    g_assert_cmpint(size_parse_metric("1.5M", NULL, &val), ==, 0);
    g_assert_cmpuint(val, ==, 1500000);
}

/* ---- size_to_str ---- */

/* Expected strings are what qemu-img info prints for those sizes. */
static void test_size_to_str(void)
{
    static const struct { uint64_t v; const char *s; } t[] = {
        { 0, "0 B" }, { 512, "512 B" }, { 999, "999 B" },
        { 1000, "0.977 KiB" }, { 1024, "1 KiB" }, { 1536, "1.5 KiB" },
        { 1024000, "0.977 MiB" }, { 1048576, "1 MiB" },
        { 10485760, "10 MiB" }, { 123457024, "118 MiB" },
        { 1073741824, "1 GiB" }, { 1610612736, "1.5 GiB" },
        { 5000000000ULL, "4.66 GiB" }, { 1099511627776ULL, "1 TiB" },
        { 1152921504606846976ULL, "1 EiB" }, { UINT64_MAX, "16 EiB" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(t); i++) {
        g_autofree char *s = size_to_str(t[i].v);
        g_assert_cmpstr(s, ==, t[i].s);
    }
}

static void test_parse_int(void)
{
    int64_t i64;
    uint64_t u64;
    int i;

    g_assert_cmpint(parse_int64("-42", 0, &i64), ==, 0);
    g_assert_cmpint(i64, ==, -42);
    g_assert_cmpint(parse_int64("0x10", 0, &i64), ==, 0);
    g_assert_cmpint(i64, ==, 16);
    g_assert_cmpint(parse_int64("12a", 10, &i64), ==, -EINVAL);
    g_assert_cmpint(parse_int64("", 10, &i64), ==, -EINVAL);
    g_assert_cmpint(parse_int64("9223372036854775808", 10, &i64), ==, -ERANGE);
    g_assert_cmpint(parse_uint64("18446744073709551615", 10, &u64), ==, 0);
    g_assert_cmpuint(u64, ==, UINT64_MAX);
    g_assert_cmpint(parse_uint64("-1", 10, &u64), ==, -ERANGE);
    g_assert_cmpint(parse_int("2147483648", 10, &i), ==, -ERANGE);
    g_assert_cmpint(parse_int("-7", 10, &i), ==, 0);
    g_assert_cmpint(i, ==, -7);
}

/* ---- buffer_is_zero ---- */

static void test_buffer_is_zero(void)
{
    enum { N = 1024 };
    unsigned char *buf = g_malloc0(N + 16);

    for (size_t off = 0; off < 9; off++) {
        for (size_t len = 0; len < 300; len += (len < 70 ? 1 : 17)) {
            g_assert_true(buffer_is_zero(buf + off, len));
            for (size_t pos = 0; pos < len; pos += (len < 70 ? 1 : 7)) {
                buf[off + pos] = 1;
                g_assert_false(buffer_is_zero(buf + off, len));
                buf[off + pos] = 0;
            }
            /* a non-zero byte just outside the range does not count */
            buf[off + len] = 0xff;
            g_assert_true(buffer_is_zero(buf + off, len));
            buf[off + len] = 0;
            if (off) {
                buf[off - 1] = 0xff;
                g_assert_true(buffer_is_zero(buf + off, len));
                buf[off - 1] = 0;
            }
        }
    }
    g_free(buf);
}

/* One non-zero byte at every position, at unaligned starts, for sizes
 * around the 16-byte vector and 64-byte block boundaries. */
static void test_buffer_is_zero_every_byte(void)
{
    static const size_t sizes[] = {
        1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65,
        79, 80, 95, 127, 128, 129, 191, 255, 256, 257, 1000, 4095, 4096, 4097,
    };
    enum { GUARD = 32, MAXOFF = 17 };
    unsigned char *buf = g_malloc(4097 + MAXOFF + 2 * GUARD);

    for (size_t s = 0; s < G_N_ELEMENTS(sizes); s++) {
        size_t len = sizes[s];

        for (size_t off = 0; off < MAXOFF; off++) {
            unsigned char *p = buf + GUARD + off;

            /* non-zero guards on both sides must not leak in */
            memset(buf, 0xff, 4097 + MAXOFF + 2 * GUARD);
            memset(p, 0, len);
            g_assert_true(buffer_is_zero(p, len));
            for (size_t pos = 0; pos < len; pos++) {
                p[pos] = (pos & 1) ? 0x80 : 0x01;
                g_assert_false(buffer_is_zero(p, len));
                p[pos] = 0;
            }
            g_assert_true(buffer_is_zero(p, len));
        }
    }
    g_free(buf);
}

/* Large unaligned heads and tails: the first/last bytes and the bytes
 * right next to every 16-byte boundary in a 2 MiB buffer. */
static void test_buffer_is_zero_large(void)
{
    enum { LEN = 2 * 1024 * 1024 };
    unsigned char *buf = g_malloc0(LEN + 64);

    for (size_t off = 0; off < 16; off += 5) {
        for (size_t trim = 0; trim < 16; trim += 3) {
            unsigned char *p = buf + off;
            size_t len = LEN - trim;
            static const size_t probe[] = { 0, 1, 15, 16, 63, 64 };

            g_assert_true(buffer_is_zero(p, len));
            for (size_t i = 0; i < G_N_ELEMENTS(probe); i++) {
                p[probe[i]] = 1;
                g_assert_false(buffer_is_zero(p, len));
                p[probe[i]] = 0;
                p[len - 1 - probe[i]] = 1;
                g_assert_false(buffer_is_zero(p, len));
                p[len - 1 - probe[i]] = 0;
            }
            p[len / 2 + 7] = 1;
            g_assert_false(buffer_is_zero(p, len));
            p[len / 2 + 7] = 0;
        }
    }
    g_free(buf);
}

static void test_clock(void)
{
    int64_t a = clock_ns(), b;

    g_usleep(2000);
    b = clock_ns();
    g_assert_cmpint(b - a, >=, 2000000);
    g_assert_cmpint(clock_realtime_ns(), >, 1500000000LL * 1000000000LL);
}

/* ---- error ---- */

static void test_error_basic(void)
{
    Error *err = NULL;

    error_setg(&err, "thing %d failed", 7);
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, "thing 7 failed");
    g_assert_null(error_get_hint(err));
    /* first error wins */
    error_setg(&err, "second");
    g_assert_cmpstr(error_get_pretty(err), ==, "thing 7 failed");
    error_free_or_abort(&err);
    g_assert_null(err);

    error_setg_errno(&err, ENOENT, "Could not open '%s'", "x");
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Could not open 'x': No such file or directory");
    error_free(err);
    error_setg(NULL, "ignored");
}

static void test_error_propagate(void)
{
    Error *err = NULL, *local = NULL, *copy;

    error_setg(&local, "inner");
    error_prepend(&local, "middle: ");
    error_append_hint(&local, "try %s\n", "harder");
    error_propagate_prepend(&err, local, "outer %d: ", 1);
    g_assert_cmpstr(error_get_pretty(err), ==, "outer 1: middle: inner");
    g_assert_cmpstr(error_get_hint(err), ==, "try harder\n");

    copy = error_copy(err);
    g_assert_cmpstr(error_get_pretty(copy), ==, "outer 1: middle: inner");
    g_assert_cmpstr(error_get_hint(copy), ==, "try harder\n");

    /* a second propagation into a set Error is dropped */
    error_propagate(&err, copy);
    g_assert_cmpstr(error_get_pretty(err), ==, "outer 1: middle: inner");
    error_propagate(&err, NULL);
    error_free(err);
    local = NULL;
    error_setg(&local, "dropped");
    error_propagate(NULL, local);
}

static void test_error_report_subprocess(void)
{
    Error *err = NULL;

    error_report("plain %s", "message");
    error_set_progname("/usr/bin/qemu-img");
    g_assert_cmpstr(error_get_progname(), ==, "qemu-img");
    error_report("after progname");
    warn_report("careful");
    info_report("fyi");
    error_setg(&err, "with hint");
    error_append_hint(&err, "Hint line\n");
    error_report_err(err);
    err = NULL;
    error_setg(&err, "base");
    error_reportf_err(err, "ctx: ");
    err = NULL;
    error_setg(&err, "soft");
    warn_report_err(err);
}

static void test_error_report(void)
{
    g_test_trap_subprocess("/util/error/report/subprocess", 0, 0);
    g_test_trap_assert_passed();
    g_test_trap_assert_stdout("");
    g_test_trap_assert_stderr("strata: plain message\n"
                              "qemu-img: after progname\n"
                              "qemu-img: warning: careful\n"
                              "qemu-img: info: fyi\n"
                              "qemu-img: with hint\nHint line\n"
                              "qemu-img: ctx: base\n"
                              "qemu-img: warning: soft\n");
}

static void test_error_fatal_subprocess(void)
{
    error_set_progname("tool");
    error_setg(&error_fatal, "fatal %s", "thing");
}

static void test_error_fatal(void)
{
    g_test_trap_subprocess("/util/error/fatal/subprocess", 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("tool: fatal thing\n");
}

/* The exit status itself is not exposed by the GTest trap API: fork. */
static void test_error_fatal_status(void)
{
    int status;
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) {
            _exit(43);
        }
        error_setg(&error_fatal, "x");
        _exit(42);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
}

static void test_error_abort_subprocess(void)
{
    Error *local = NULL;

    error_setg(&local, "boom");
    error_propagate(&error_abort, local);
}

static void test_error_abort(void)
{
    g_test_trap_subprocess("/util/error/abort/subprocess", 0,
                           0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*boom*");
}

/* ---- iov ---- */

static void fill_pattern(unsigned char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (unsigned char)(i * 7 + seed);
    }
}

static void test_iov_basic(void)
{
    unsigned char a[10], b[20], c[5], out[35], in[35];
    IOVector v;

    iov_vec_init(&v, 1);
    iov_vec_add(&v, a, sizeof(a));
    iov_vec_add(&v, b, sizeof(b));
    iov_vec_add(&v, c, sizeof(c));
    g_assert_cmpint(v.niov, ==, 3);
    g_assert_cmpuint(v.size, ==, 35);
    g_assert_cmpuint(iov_size(v.iov, v.niov), ==, 35);

    fill_pattern(in, sizeof(in), 3);
    g_assert_cmpuint(iov_vec_from_buf(&v, 0, in, 35), ==, 35);
    g_assert_cmpmem(a, 10, in, 10);
    g_assert_cmpmem(b, 20, in + 10, 20);
    g_assert_cmpmem(c, 5, in + 30, 5);
    memset(out, 0, sizeof(out));
    g_assert_cmpuint(iov_vec_to_buf(&v, 7, out, 100), ==, 28);
    g_assert_cmpmem(out, 28, in + 7, 28);
    g_assert_cmpuint(iov_vec_to_buf(&v, 40, out, 5), ==, 0);

    g_assert_cmpuint(iov_vec_memset(&v, 8, 0, 24), ==, 24);
    g_assert_true(iov_vec_is_zero(&v, 8, 24));
    g_assert_false(iov_vec_is_zero(&v, 7, 24));
    g_assert_false(iov_vec_is_zero(&v, 8, 25));
    g_assert_cmpuint(a[7], ==, in[7]);
    g_assert_cmpuint(c[2], ==, in[32]);

    iov_vec_reset(&v);
    g_assert_cmpint(v.niov, ==, 0);
    g_assert_cmpuint(v.size, ==, 0);
    iov_vec_destroy(&v);
}

static void test_iov_slice(void)
{
    unsigned char a[16], b[16], c[16], out[48];
    IOVector v, s, cat;

    fill_pattern(a, 16, 0);
    fill_pattern(b, 16, 100);
    fill_pattern(c, 16, 200);
    iov_vec_init(&v, 3);
    iov_vec_add(&v, a, 16);
    iov_vec_add(&v, b, 16);
    iov_vec_add(&v, c, 16);

    iov_vec_init_slice(&s, &v, 12, 24);
    g_assert_cmpint(s.niov, ==, 3);
    g_assert_cmpuint(s.size, ==, 24);
    g_assert_true(s.iov[0].iov_base == a + 12);
    g_assert_cmpuint(s.iov[0].iov_len, ==, 4);
    g_assert_cmpuint(s.iov[2].iov_len, ==, 4);

    /* slices share memory with the parent */
    memset(out, 0xaa, 24);
    iov_vec_from_buf(&s, 0, out, 24);
    g_assert_cmpuint(a[12], ==, 0xaa);
    g_assert_cmpuint(b[5], ==, 0xaa);
    g_assert_cmpuint(c[3], ==, 0xaa);
    g_assert_cmpuint(c[4], !=, 0xaa);

    iov_vec_init(&cat, 0);
    iov_vec_concat(&cat, &v, 32, 16);
    iov_vec_concat(&cat, &v, 0, 4);
    g_assert_cmpuint(cat.size, ==, 20);
    g_assert_cmpuint(iov_vec_to_buf(&cat, 0, out, 20), ==, 20);
    g_assert_cmpmem(out, 16, c, 16);
    g_assert_cmpmem(out + 16, 4, a, 4);

    iov_vec_destroy(&cat);
    iov_vec_destroy(&s);
    iov_vec_destroy(&v);
}

static void test_iov_buf_external(void)
{
    char buf[64] = { 0 }, extra[8] = { 1 };
    struct iovec ext[2] = { { buf, 32 }, { buf + 32, 32 } };
    IOVector v;

    iov_vec_init_buf(&v, buf, sizeof(buf));
    g_assert_true(v.iov == &v.local);
    g_assert_cmpint(v.niov, ==, 1);
    g_assert_true(iov_vec_is_zero(&v, 0, 64));
    /* adding to a single-buffer vector switches to an owned array */
    iov_vec_add(&v, extra, sizeof(extra));
    g_assert_cmpint(v.niov, ==, 2);
    g_assert_cmpuint(v.size, ==, 72);
    g_assert_false(iov_vec_is_zero(&v, 0, 72));
    iov_vec_destroy(&v);

    iov_vec_init_external(&v, ext, 2);
    g_assert_true(v.iov == ext);
    g_assert_cmpuint(v.size, ==, 64);
    buf[40] = 5;
    g_assert_true(iov_vec_is_zero(&v, 0, 40));
    g_assert_false(iov_vec_is_zero(&v, 0, 41));
    iov_vec_destroy(&v);
}

/* ---- progress ---- */

static void test_progress_subprocess(void)
{
    progress_init(true, 1.0);
    progress_print(0, 100);
    progress_print(0.5, 100);      /* below min_skip: not printed */
    progress_print(50, 100);
    progress_print(16.17, 100);
    progress_print(100, 0);
    progress_end();
}

static void test_progress(void)
{
    g_test_trap_subprocess("/util/progress/enabled/subprocess", 0, 0);
    g_test_trap_assert_passed();
    g_test_trap_assert_stdout("    (0.00/100%)\r"
                              "    (50.50/100%)\r"
                              "    (66.67/100%)\r"
                              "    (100.00/100%)\r\n");
    g_test_trap_assert_stderr("");
}

static void test_progress_sigusr1_subprocess(void)
{
    progress_init(false, 1.0);
    progress_print(0, 100);
    progress_print(25, 100);
    raise(SIGUSR1);
    progress_print(0.5, 100);
    progress_print(10, 100);
    progress_print(100, 0);
    progress_end();
}

static void test_progress_sigusr1(void)
{
    g_test_trap_subprocess("/util/progress/sigusr1/subprocess", 0, 0);
    g_test_trap_assert_passed();
    g_test_trap_assert_stdout("");
    g_test_trap_assert_stderr("    (25.50/100%)\n");
}

/* ---- ratelimit ---- */

static void test_ratelimit(void)
{
    RateLimit rl = { 0 };
    int64_t d;

    ratelimit_set_speed(&rl, 0, 100000000);
    g_assert_cmpint(ratelimit_calculate_delay(&rl, 1 << 30), ==, 0);

    /* 1000 units/s with 100 ms slices: 100 per slice */
    ratelimit_set_speed(&rl, 1000, 100000000);
    g_assert_cmpuint(rl.slice_quota, ==, 100);
    g_assert_cmpint(ratelimit_calculate_delay(&rl, 50), ==, 0);
    g_assert_cmpint(ratelimit_calculate_delay(&rl, 49), ==, 0);
    /* now 150: the slice stretches to 150 ms */
    d = ratelimit_calculate_delay(&rl, 51);
    g_assert_cmpint(d, >, 100000000);
    g_assert_cmpint(d, <=, 150000000);
    /* another 150 on top: 300 dispatched -> 300 ms from slice start */
    d = ratelimit_calculate_delay(&rl, 150);
    g_assert_cmpint(d, >, 250000000);
    g_assert_cmpint(d, <=, 300000000);
}

static void test_ratelimit_new_slice(void)
{
    RateLimit rl = { 0 };

    ratelimit_set_speed(&rl, 2000, 50000000);   /* 100 per 50 ms slice */
    g_assert_cmpint(ratelimit_calculate_delay(&rl, 99), ==, 0);
    g_usleep(120000);
    /* the old slice is over: the count starts again */
    g_assert_cmpint(ratelimit_calculate_delay(&rl, 99), ==, 0);
    g_assert_cmpint(ratelimit_calculate_delay(&rl, 1), >, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/util/size/parse", test_size_parse_table);
    g_test_add_func("/util/size/parse-end", test_size_parse_end);
    g_test_add_func("/util/size/unit-metric", test_size_parse_unit_metric);
    g_test_add_func("/util/size/to-str", test_size_to_str);
    g_test_add_func("/util/parse-int", test_parse_int);
    g_test_add_func("/util/buffer-is-zero", test_buffer_is_zero);
    g_test_add_func("/util/buffer-is-zero/every-byte",
                    test_buffer_is_zero_every_byte);
    g_test_add_func("/util/buffer-is-zero/large", test_buffer_is_zero_large);
    g_test_add_func("/util/clock", test_clock);
    g_test_add_func("/util/error/basic", test_error_basic);
    g_test_add_func("/util/error/propagate", test_error_propagate);
    g_test_add_func("/util/error/report", test_error_report);
    g_test_add_func("/util/error/report/subprocess", test_error_report_subprocess);
    g_test_add_func("/util/error/fatal", test_error_fatal);
    g_test_add_func("/util/error/fatal/subprocess", test_error_fatal_subprocess);
    g_test_add_func("/util/error/fatal-status", test_error_fatal_status);
    g_test_add_func("/util/error/abort", test_error_abort);
    g_test_add_func("/util/error/abort/subprocess", test_error_abort_subprocess);
    g_test_add_func("/util/iov/basic", test_iov_basic);
    g_test_add_func("/util/iov/slice", test_iov_slice);
    g_test_add_func("/util/iov/buf-external", test_iov_buf_external);
    g_test_add_func("/util/progress/enabled", test_progress);
    g_test_add_func("/util/progress/enabled/subprocess", test_progress_subprocess);
    g_test_add_func("/util/progress/sigusr1", test_progress_sigusr1);
    g_test_add_func("/util/progress/sigusr1/subprocess",
                    test_progress_sigusr1_subprocess);
    g_test_add_func("/util/ratelimit/delay", test_ratelimit);
    g_test_add_func("/util/ratelimit/new-slice", test_ratelimit_new_slice);
    return g_test_run();
}
