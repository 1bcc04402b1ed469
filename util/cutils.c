#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/cutils.h"

/* Multiplier for a size suffix letter, 0 if @c is not a suffix. */
static uint64_t suffix_mul(char c, uint64_t unit)
{
    switch (c) {
    case 'b': case 'B': return 1;
    case 'k': case 'K': return unit;
    case 'm': case 'M': return unit * unit;
    case 'g': case 'G': return unit * unit * unit;
    case 't': case 'T': return unit * unit * unit * unit;
    case 'p': case 'P': return unit * unit * unit * unit * unit;
    case 'e': case 'E': return unit * unit * unit * unit * unit * unit;
    default: return 0;
    }
}

/* Accumulate digits of @base at *@p into *@val; counts digits; -ERANGE on overflow. */
static int parse_digits(const char **p, int base, uint64_t *val, int *ndigits)
{
    uint64_t v = 0;
    int n = 0;
    int overflow = 0;

    for (;; n++) {
        int d = g_ascii_xdigit_value(**p);
        if (d < 0 || d >= base) {
            break;
        }
        if (mul_overflow_u64(v, base, &v) || add_overflow_u64(v, d, &v)) {
            overflow = 1;
        }
        (*p)++;
    }
    *val = v;
    *ndigits = n;
    return overflow ? -ERANGE : 0;
}

/* Parse ".digits" at *@p as a double in [0, 1]; *@p moves past it. */
static double parse_fraction(const char **p, int *ndigits)
{
    const char *s = *p + 1;
    double frac = 0, scale = 0.1;
    int n = 0;
    char buf[64];

    while (g_ascii_isdigit(s[n])) {
        n++;
    }
    *ndigits = n;
    *p = s + n;
    if (n == 0) {
        return 0;
    }
    /* strtod gives correct rounding; fall back for huge digit strings */
    if (n + 3 < (int)sizeof(buf)) {
        buf[0] = '0';
        buf[1] = '.';
        memcpy(buf + 2, s, n);
        buf[n + 2] = '\0';
        return g_ascii_strtod(buf, NULL);
    }
    for (int i = 0; i < n; i++, scale /= 10) {
        frac += (s[i] - '0') * scale;
    }
    return frac;
}

/* Parse the hexadecimal form "0x..." (no fraction, no suffix allowed). */
static int parse_hex_size(const char *p, const char **end, uint64_t *result)
{
    uint64_t val;
    int n, ret;

    p += 2;
    ret = parse_digits(&p, 16, &val, &n);
    if (n == 0 || *p == '.' || suffix_mul(*p, 1024)) {
        return -EINVAL;
    }
    if (ret < 0) {
        return ret;
    }
    if (end) {
        *end = p;
    } else if (*p) {
        return -EINVAL;
    }
    *result = val;
    return 0;
}

/* Combine integer part, fraction and multiplier with overflow checks. */
/* ival * mul + frac * mul; the fraction's bytes round to the nearest
 * byte, halves up, as qemu-img does ("0.7k" = 717, "1.00048828125k" =
 * 1025). */
static int size_combine(uint64_t ival, double frac, uint64_t mul, uint64_t *result)
{
    uint64_t v;
    double extra = frac * (double)mul + 0.5;

    if (mul_overflow_u64(ival, mul, &v)) {
        return -ERANGE;
    }
    if (extra >= 18446744073709551616.0) {
        return -ERANGE;
    }
    if (add_overflow_u64(v, (uint64_t)extra, &v)) {
        return -ERANGE;
    }
    *result = v;
    return 0;
}

/* A number that cannot be a size (negative, or beyond 2^64) stops the
 * parse where its digits end, as qemu-img's does: with nothing after it
 * that is -ERANGE ("-1"), with anything after it a malformed string
 * ("-1k", "-1.5", "99999999999999999999k" are -EINVAL). */
static int size_range_error(const char *p, const char **end)
{
    if (end) {
        *end = p;
        return -ERANGE;
    }
    return *p ? -EINVAL : -ERANGE;
}

/* "-<digits>...": never a size; which error depends on what follows. */
static int negative_size(const char *p, const char **end)
{
    uint64_t ival;
    int nint;

    parse_digits(&p, 10, &ival, &nint);
    return nint ? size_range_error(p, end) : -EINVAL;
}

/* Core of the size parsers: @unit is 1024 or 1000. */
static int do_size_parse(const char *str, const char **end, uint64_t default_unit,
                         uint64_t unit, uint64_t *result)
{
    const char *p = str;
    uint64_t ival, mul;
    double frac = 0;
    int nint, nfrac = 0, ret;
    bool negative = false;

    while (g_ascii_isspace(*p)) {
        p++;
    }
    if (*p == '-' || *p == '+') {
        negative = *p == '-';
        p++;
    }
    if (negative) {
        return negative_size(p, end);
    }
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        return parse_hex_size(p, end, result);
    }
    ret = parse_digits(&p, 10, &ival, &nint);
    if (ret < 0) {
        return size_range_error(p, end);
    }
    if (*p == '.') {
        frac = parse_fraction(&p, &nfrac);
    }
    if (nint == 0 && nfrac == 0) {
        return -EINVAL;
    }
    mul = suffix_mul(*p, unit);
    if (mul) {
        p++;
    } else {
        mul = default_unit;
    }
    if (frac != 0 && mul == 1) {
        return -EINVAL;
    }
    if (end) {
        *end = p;
    } else if (*p) {
        return -EINVAL;
    }
    return size_combine(ival, frac, mul, result);
}

int size_parse(const char *str, const char **end, uint64_t *result)
{
    return do_size_parse(str, end, 1, 1024, result);
}

int size_parse_unit(const char *str, const char **end, uint64_t default_unit,
                    uint64_t *result)
{
    return do_size_parse(str, end, default_unit, 1024, result);
}

int size_parse_metric(const char *str, const char **end, uint64_t *result)
{
    return do_size_parse(str, end, 1, 1000, result);
}

char *size_to_str(uint64_t val)
{
    static const char *const units[] = {
        "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB",
    };
    int i = 0;

    /* switch to the next unit once the value reaches 1000 of the current */
    while (i < 6 && val >= 1000 * (1ULL << (10 * i))) {
        i++;
    }
    return g_strdup_printf("%0.3g %s", (double)val / (double)(1ULL << (10 * i)),
                           units[i]);
}

/* Shared checks for the strict integer parsers: whole string consumed. */
static int check_strict_end(const char *s, const char *endp)
{
    if (endp == s) {
        return -EINVAL;
    }
    if (*endp != '\0') {
        return -EINVAL;
    }
    return 0;
}

int parse_int64(const char *s, int base, int64_t *out)
{
    char *endp;
    long long v;
    int ret;

    if (!s) {
        return -EINVAL;
    }
    errno = 0;
    v = strtoll(s, &endp, base);
    ret = check_strict_end(s, endp);
    if (ret < 0) {
        return ret;
    }
    if (errno == ERANGE) {
        return -ERANGE;
    }
    *out = v;
    return 0;
}

int parse_uint64(const char *s, int base, uint64_t *out)
{
    const char *p = s;
    char *endp;
    unsigned long long v;
    int ret;

    if (!s) {
        return -EINVAL;
    }
    while (g_ascii_isspace(*p)) {
        p++;
    }
    errno = 0;
    v = strtoull(s, &endp, base);
    ret = check_strict_end(s, endp);
    if (ret < 0) {
        return ret;
    }
    if (errno == ERANGE || (*p == '-' && v != 0)) {
        return -ERANGE;
    }
    *out = v;
    return 0;
}

int parse_int(const char *s, int base, int *out)
{
    int64_t v;
    int ret = parse_int64(s, base, &v);

    if (ret < 0) {
        return ret;
    }
    if (v < INT_MIN || v > INT_MAX) {
        return -ERANGE;
    }
    *out = (int)v;
    return 0;
}

/* Byte-wise check, used for tiny buffers. */
static bool bytes_are_zero(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

/* Unaligned 8-byte load (memcpy compiles to a single mov). */
static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/* Buffers shorter than 16 bytes: two overlapping loads where possible. */
static bool small_is_zero(const unsigned char *p, size_t len)
{
    uint32_t a, b;

    if (len >= 8) {
        return (load64(p) | load64(p + len - 8)) == 0;
    }
    if (len >= 4) {
        memcpy(&a, p, 4);
        memcpy(&b, p + len - 4, 4);
        return (a | b) == 0;
    }
    return bytes_are_zero(p, len);
}

#if defined(__GNUC__) && !defined(STRATA_BUFFER_ZERO_PORTABLE)
/*
 * 16-byte vectors via GCC vector extensions: SSE2 on x86-64 (baseline),
 * NEON on aarch64, and generic code elsewhere.  may_alias because the
 * buffer is really bytes.
 */
typedef uint64_t ZVec __attribute__((vector_size(16), may_alias));

#define ZVEC_SIZE sizeof(ZVec)

/* Unaligned 16-byte load. */
static inline ZVec zvec_load(const unsigned char *p)
{
    ZVec v;

    memcpy(&v, p, sizeof(v));
    return v;
}

static inline bool zvec_is_zero(ZVec v)
{
    return (v[0] | v[1]) == 0;
}

/* 16..63 bytes: up to four overlapping unaligned loads. */
static bool medium_is_zero(const unsigned char *p, size_t len)
{
    ZVec t = zvec_load(p) | zvec_load(p + len - ZVEC_SIZE);

    if (len > 2 * ZVEC_SIZE) {
        t |= zvec_load(p + ZVEC_SIZE) | zvec_load(p + len - 2 * ZVEC_SIZE);
    }
    return zvec_is_zero(t);
}

/* Aligned vectors [p, end): OR four per 64-byte block, test per block. */
static bool vec_body_is_zero(const ZVec *p, const ZVec *end)
{
    ZVec t = { 0, 0 };

    for (; end - p >= 4; p += 4) {
        if (!zvec_is_zero(p[0] | p[1] | p[2] | p[3])) {
            return false;
        }
    }
    for (; p < end; p++) {
        t |= *p;
    }
    return zvec_is_zero(t);
}

/* >= 64 bytes: unaligned head and tail vectors, aligned body between. */
static bool large_is_zero(const unsigned char *p, size_t len)
{
    uintptr_t first = ((uintptr_t)p + ZVEC_SIZE - 1) & ~(ZVEC_SIZE - 1);
    uintptr_t last = ((uintptr_t)p + len) & ~(ZVEC_SIZE - 1);

    /* the head/tail loads cover [p, first) and [last, p + len) */
    if (!zvec_is_zero(zvec_load(p) | zvec_load(p + len - ZVEC_SIZE))) {
        return false;
    }
    return vec_body_is_zero((const ZVec *)first, (const ZVec *)last);
}

#else /* portable: 8-byte words */

/* 16..63 bytes: overlapping 8-byte loads. */
static bool medium_is_zero(const unsigned char *p, size_t len)
{
    uint64_t t = load64(p + len - 8);

    for (size_t i = 0; i + 8 <= len; i += 8) {
        t |= load64(p + i);
    }
    return t == 0;
}

/* >= 64 bytes: OR eight words per step; unaligned head and tail words. */
static bool large_is_zero(const unsigned char *p, size_t len)
{
    const unsigned char *end = p + len - 8;
    uint64_t t = load64(end);

    for (; p + 64 <= end; p += 64) {
        if (load64(p) | load64(p + 8) | load64(p + 16) | load64(p + 24) |
            load64(p + 32) | load64(p + 40) | load64(p + 48) |
            load64(p + 56)) {
            return false;
        }
    }
    for (; p < end; p += 8) {
        t |= load64(p);
    }
    return t == 0;
}
#endif

bool buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;

    if (len < 16) {
        return small_is_zero(p, len);
    }
    if (len < 64) {
        return medium_is_zero(p, len);
    }
    return large_is_zero(p, len);
}

int64_t clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t clock_realtime_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
