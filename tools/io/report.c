#include "config.h"
/*
 * strata-io: number parsing, sizes, timing and dump helpers shared by the
 * commands.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tools/io/io.h"
#include "util/cutils.h"

#define IO_MISALIGN_OFFSET 16
#define IO_BUF_ALIGN 4096

int64_t io_cvtnum(const char *s)
{
    uint64_t value;
    int err = size_parse(s, NULL, &value);

    if (err < 0) {
        return err;
    }
    if (value > INT64_MAX) {
        return -ERANGE;
    }
    return value;
}

void io_print_cvtnum_err(int64_t rc, const char *arg)
{
    switch (rc) {
    case -EINVAL:
        printf("Parsing error: non-numeric argument,"
               " or extraneous/unrecognized suffix -- %s\n", arg);
        break;
    case -ERANGE:
        printf("Parsing error: argument too large -- %s\n", arg);
        break;
    default:
        printf("Parsing error: %s\n", arg);
    }
}

int64_t io_num_arg(const char *arg)
{
    int64_t v = io_cvtnum(arg);

    if (v < 0) {
        io_print_cvtnum_err(v, arg);
    }
    return v;
}

int io_parse_pattern(const char *arg)
{
    char *end;
    long pattern = strtol(arg, &end, 0);

    if (pattern < 0 || pattern > UCHAR_MAX || *end != '\0') {
        printf("%s is not a valid pattern byte\n", arg);
        return -1;
    }
    return pattern;
}

static void io_cvt_unit(double value, char *buf, size_t size,
                        const char **suffix)
{
    static const struct { double scale; const char *suffix; } units[] = {
        { (double)EiB, " EiB" }, { (double)PiB, " PiB" },
        { (double)TiB, " TiB" }, { (double)GiB, " GiB" },
        { (double)MiB, " MiB" }, { (double)KiB, " KiB" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(units); i++) {
        if (value >= units[i].scale) {
            snprintf(buf, size - 4, "%.3f", value / units[i].scale);
            *suffix = units[i].suffix;
            return;
        }
    }
    snprintf(buf, size - 6, "%f", value);
    *suffix = " bytes";
}

void io_cvtstr(double value, char *buf, size_t size)
{
    const char *suffix;
    char *trim;

    io_cvt_unit(value, buf, size, &suffix);
    trim = strstr(buf, ".000");
    if (trim) {
        *trim = '\0';
    }
    g_strlcat(buf, suffix, size);
}

void io_dump_buffer(const void *buf, int64_t offset, int64_t len)
{
    const uint8_t *p = buf;

    for (int64_t i = 0; i < len; i += 16) {
        int n = len - i < 16 ? (int)(len - i) : 16;

        printf("%08" PRIx64 ":  ", (uint64_t)(offset + i));
        for (int j = 0; j < n; j++) {
            printf("%02x ", p[i + j]);
        }
        printf(" ");
        for (int j = 0; j < n; j++) {
            putchar(isalnum(p[i + j]) ? p[i + j] : '.');
        }
        printf("\n");
    }
}

struct timespec io_now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t;
}

struct timespec io_tsub(struct timespec t2, struct timespec t1)
{
    t2.tv_sec -= t1.tv_sec;
    t2.tv_nsec -= t1.tv_nsec;
    if (t2.tv_nsec < 0) {
        t2.tv_sec--;
        t2.tv_nsec += 1000000000L;
    }
    return t2;
}

static double io_tdiv(double value, struct timespec t)
{
    return value / ((double)t.tv_sec + t.tv_nsec / 1e9);
}

static void io_timestr(struct timespec *t, char *ts, size_t size, bool fixed)
{
    double frac = t->tv_nsec / 1e9;
    unsigned hours = t->tv_sec / 3600;
    unsigned mins = (t->tv_sec / 60) % 60;
    double secs = (double)(t->tv_sec % 60) + frac;

    if (fixed || t->tv_sec) {
        snprintf(ts, size, "%u:%02u:%05.2f", hours, mins, secs);
    } else {
        snprintf(ts, size, "%05.2f sec", frac);
    }
}

void io_print_report(const char *op, struct timespec *t, int64_t offset,
                     int64_t count, int64_t total, int cnt, bool cflag)
{
    char s1[64], s2[64], ts[64];

    io_timestr(t, ts, sizeof(ts), cflag);
    if (cflag) {
        printf("%" PRId64 ",%d,%s,%.3f,%.3f\n", total, cnt, ts,
               io_tdiv((double)total, *t), io_tdiv((double)cnt, *t));
        return;
    }
    io_cvtstr((double)total, s1, sizeof(s1));
    io_cvtstr(io_tdiv((double)total, *t), s2, sizeof(s2));
    printf("%s %" PRId64 "/%" PRId64 " bytes at offset %" PRId64 "\n",
           op, total, count, offset);
    printf("%s, %d ops; %s (%s/sec and %.4f ops/sec)\n",
           s1, cnt, ts, s2, io_tdiv((double)cnt, *t));
}

void *io_alloc(size_t len, int pattern)
{
    size_t extra = io_misalign ? IO_MISALIGN_OFFSET : 0;
    void *mem;

    if (posix_memalign(&mem, IO_BUF_ALIGN, len + extra ? len + extra : 1)) {
        abort();
    }
    memset(mem, pattern, len + extra);
    return (uint8_t *)mem + extra;
}

void io_free(void *buf)
{
    if (buf) {
        free((uint8_t *)buf - (io_misalign ? IO_MISALIGN_OFFSET : 0));
    }
}

static void io_repeat_fill(uint8_t *buf, size_t len, size_t filled)
{
    size_t done = filled;

    while (done < len) {
        size_t n = MIN(filled, len - done);

        memcpy(buf + done, buf, n);
        done += n;
    }
}

void *io_alloc_from_file(size_t len, const char *file_name)
{
    uint8_t *buf = io_alloc(len, 0);
    FILE *f = fopen(file_name, "r");
    size_t got;

    if (!f) {
        perror(file_name);
        goto fail;
    }
    got = fread(buf, 1, len, f);
    if (ferror(f)) {
        perror(file_name);
        fclose(f);
        goto fail;
    }
    fclose(f);
    if (got == 0) {
        fprintf(stderr, "%s: file is empty\n", file_name);
        goto fail;
    }
    io_repeat_fill(buf, len, got);
    return buf;

fail:
    io_free(buf);
    return NULL;
}

void *io_create_iovec(IOVector *qiov, char **argv, int nr_iov, int pattern)
{
    int64_t *sizes = g_new(int64_t, nr_iov);
    int64_t count = 0;
    uint8_t *buf, *p;

    for (int i = 0; i < nr_iov; i++) {
        int64_t len = io_cvtnum(argv[i]);

        if (len < 0) {
            io_print_cvtnum_err(len, argv[i]);
            goto fail;
        }
        if (len > BDRV_REQUEST_MAX_BYTES) {
            printf("Argument '%s' exceeds maximum size %" PRIu64 "\n",
                   argv[i], (uint64_t)BDRV_REQUEST_MAX_BYTES);
            goto fail;
        }
        if (count > BDRV_REQUEST_MAX_BYTES - len) {
            printf("The total number of bytes exceed the maximum size %"
                   PRIu64 "\n", (uint64_t)BDRV_REQUEST_MAX_BYTES);
            goto fail;
        }
        sizes[i] = len;
        count += len;
    }

    iov_vec_init(qiov, nr_iov);
    buf = p = io_alloc(count, pattern);
    for (int i = 0; i < nr_iov; i++) {
        iov_vec_add(qiov, p, sizes[i]);
        p += sizes[i];
    }
    g_free(sizes);
    return buf;

fail:
    g_free(sizes);
    return NULL;
}

int io_parse_iovec_args(int argc, char **argv, int pattern, int64_t *offset,
                        IOVector *qiov, void **buf)
{
    *offset = io_num_arg(argv[optind]);
    if (*offset < 0) {
        return *offset;
    }
    optind++;
    *buf = io_create_iovec(qiov, &argv[optind], argc - optind, pattern);
    return *buf ? 0 : -EINVAL;
}

bool io_check_pattern(const void *buf, int pattern, size_t len)
{
    const uint8_t *p = buf;

    for (size_t i = 0; i < len; i++) {
        if (p[i] != pattern) {
            return false;
        }
    }
    return true;
}

void io_reset_getopt(void)
{
    optind = 0;
}
