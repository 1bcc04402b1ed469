#include "config.h"
/*
 * strata-img bench: COUNT requests of SIZE bytes, DEPTH of them in
 * flight, at offsets OFFSET, OFFSET+STEP, ... (wrapping inside the
 * image), optionally with a flush every INTERVAL write requests.
 * Extension: --output=json prints requests, bytes, seconds, IOPS, MiB/s
 * and latency percentiles as one JSON document.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include "tools/img/img.h"
#include "util/cutils.h"

/* Latency histogram: exact below 64 ns, then 32 buckets per power of 2. */
#define LAT_SUB_BITS 5
#define LAT_LINEAR   64
#define LAT_BUCKETS  (LAT_LINEAR + 58 * (1 << LAT_SUB_BITS))

typedef enum { AIO_DEFAULT, AIO_THREADS, AIO_NATIVE, AIO_IO_URING } BenchAio;

typedef struct BenchArgs {
    const char *fmt, *filename;
    int64_t count, depth, bufsize, offset, step, flush_interval, pattern;
    int cache_flags;        /* -t, BDRV_O_NOCACHE / BDRV_O_NO_FLUSH */
    bool image_opts, quiet, write, native, drain, force_share, writethrough;
    BenchAio aio;
    OutputFormat output;
} BenchArgs;

typedef struct Bench {
    const BenchArgs *a;
    BlockBackend *blk;
    uint8_t *buf;
    int64_t image_size;
    int64_t next_offset;
    int64_t issued;         /* requests started */
    int64_t in_flight;      /* data requests submitted, not completed */
    int workers;            /* coroutines still running */
    int ret;
    bool flushing;          /* a draining flush is waiting or running */
    CoQueue flush_wait;     /* workers held back by a draining flush */
    CoQueue drained;        /* the flusher waiting for in_flight == 0 */
    uint64_t *lat;          /* histogram (JSON output only) */
    uint64_t lat_max;
} Bench;

/* A number option into @field; false after the reference's message. */
static bool bench_num(const char *what, const char *arg, bool size,
                      int64_t min, int64_t max, int64_t *field)
{
    return size ? img_cvtnum_full(what, arg, min, max, field)
                : img_strtonum_full(what, arg, min, max, field);
}

/* -i: threads, native, io_uring. */
static bool bench_parse_aio(BenchArgs *a, const char *arg)
{
    if (!strcmp(arg, "threads")) {
        a->aio = AIO_THREADS;
    } else if (!strcmp(arg, "native")) {
        a->aio = AIO_NATIVE;
    } else if (!strcmp(arg, "io_uring")) {
        a->aio = AIO_IO_URING;
    } else {
        error_report("Invalid aio option: %s", arg);
        return false;
    }
    return true;
}

/* Options with a numeric argument; -1 if @c is not one of them. */
static int bench_num_option(BenchArgs *a, int c)
{
    bool ok;

    switch (c) {
    case 'c':
        ok = bench_num("request count", optarg, false, 1, INT_MAX, &a->count);
        break;
    case 'd':
        ok = bench_num("queue depth", optarg, false, 1, INT_MAX, &a->depth);
        break;
    case 's':
        ok = bench_num("buffer size", optarg, true, 1, INT_MAX, &a->bufsize);
        break;
    case 'S':
        ok = bench_num("step size", optarg, true, 0, INT_MAX, &a->step);
        break;
    case 'o':
        ok = bench_num("offset", optarg, true, 0, INT64_MAX, &a->offset);
        break;
    case OPTION_PATTERN:
        ok = bench_num("pattern byte", optarg, false, 0, 255, &a->pattern);
        break;
    case OPTION_FLUSH_INTERVAL:
        ok = bench_num("flush interval", optarg, false, 0, INT_MAX,
                       &a->flush_interval);
        break;
    default:
        return -1;
    }
    return ok ? 2 : 1;
}

/* One option; returns -1 to go on, else the exit status. */
static int bench_option(BenchArgs *a, int c)
{
    int ret = bench_num_option(a, c);

    if (ret >= 0) {
        return ret == 2 ? -1 : ret;
    }
    switch (c) {
    case 'h':
        img_cmd_help("bench");
        return 0;
    case 'f': a->fmt = optarg; return -1;
    case 't':
        /* checked at once: a bad mode wins over later options' errors */
        if (bdrv_parse_cache_mode(optarg, &a->cache_flags,
                                  &a->writethrough) < 0) {
            error_report("Invalid cache mode");
            return 1;
        }
        return -1;
    case 'i': return bench_parse_aio(a, optarg) ? -1 : 1;
    case 'n': a->native = true; return -1;
    case 'q': a->quiet = true; return -1;
    case 'w': a->write = true; return -1;
    case 'U': a->force_share = true; return -1;
    case OPTION_NO_DRAIN: a->drain = false; return -1;
    case OPTION_IMAGE_OPTS: a->image_opts = true; return -1;
    case OPTION_OUTPUT:
        return img_parse_output("bench", optarg, &a->output) ? -1 : 1;
    default:
        fprintf(stderr, "Try '%s bench --help' for more info\n", img_argv0());
        return 1;
    }
}

/* Checks that need every option; -1 if the run can start. */
static int bench_check(BenchArgs *a, int argc, char **argv)
{
    if (optind != argc - 1) {
        return img_usage_error("bench", "Expecting one image file name");
    }
    a->filename = argv[optind];
    if (!a->write && a->flush_interval) {
        error_report("--flush-interval is only available in write tests");
        return 1;
    }
    if (a->flush_interval && a->flush_interval < a->depth) {
        error_report("Flush interval can't be smaller than depth");
        return 1;
    }
    if (a->image_opts && a->fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return 1;
    }
    if (!a->step) {
        a->step = a->bufsize;
    }
    return -1;
}

/* getopt over the command line; -1 when the run can start. */
static int bench_parse(BenchArgs *a, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "cache", required_argument, NULL, 't' },
        { "count", required_argument, NULL, 'c' },
        { "buffer-size", required_argument, NULL, 's' },
        { "depth", required_argument, NULL, 'd' },
        { "offset", required_argument, NULL, 'o' },
        { "step-size", required_argument, NULL, 'S' },
        { "aio", required_argument, NULL, 'i' },
        { "native", no_argument, NULL, 'n' },
        { "write", no_argument, NULL, 'w' },
        { "flush-interval", required_argument, NULL, OPTION_FLUSH_INTERVAL },
        { "force-share", no_argument, NULL, 'U' },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "pattern", required_argument, NULL, OPTION_PATTERN },
        { "no-drain", no_argument, NULL, OPTION_NO_DRAIN },
        /* same val as --offset, so that "--o" still means --offset as in
         * the reference (getopt calls equal entries no ambiguity); told
         * apart by the index getopt reports */
        { "output", required_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 },
    };
    const int output_index = G_N_ELEMENTS(longopts) - 2;
    int c, ret, index = -1;

    img_getopt_argv0(argv, "bench");
    while ((c = getopt_long(argc, argv, "hc:d:f:ni:o:qs:S:t:wU", longopts,
                            &index)) != -1) {
        if (c == 'o' && index == output_index) {
            c = OPTION_OUTPUT;
        }
        index = -1;
        ret = bench_option(a, c);
        if (ret >= 0) {
            return ret;
        }
    }
    return bench_check(a, argc, argv);
}

/* The engine asked for, as open flags that file nodes below take (other
 * nodes ignore them, as the reference's do). */
static int aio_flags(const BenchArgs *a)
{
    if (a->native || a->aio == AIO_NATIVE) {
        return BDRV_O_AIO_NATIVE;
    }
    return a->aio == AIO_IO_URING ? BDRV_O_AIO_IO_URING
         : a->aio == AIO_THREADS ? BDRV_O_AIO_THREADS : 0;
}

/* Open options: the format, or --image-opts. */
static QDict *bench_open_options(const BenchArgs *a)
{
    QDict *opts = qdict_new();

    if (a->image_opts) {
        if (!tool_opts_parse_implied(opts, a->filename, "file")) {
            qobject_unref(opts);
            return NULL;
        }
    } else if (a->fmt) {
        qdict_put_str(opts, "driver", a->fmt);
    }
    return opts;
}

/* The image, as img_open() but with the engine choice. */
static BlockBackend *bench_open(const BenchArgs *a)
{
    int flags = a->cache_flags | (a->write ? BDRV_O_RDWR : 0) | aio_flags(a);
    Error *err = NULL;
    BlockBackend *blk;
    QDict *opts;

    opts = bench_open_options(a);
    if (!opts) {
        return NULL;
    }
    if (a->force_share) {
        flags |= BDRV_O_FORCE_SHARE;
    }
    blk = blk_new_open(a->image_opts ? NULL : a->filename, NULL, opts, flags,
                       &err);
    if (!blk) {
        error_reportf_err(err, "Could not open '%s': ", a->filename);
        return NULL;
    }
    blk_set_enable_write_cache(blk, !a->writethrough);
    return blk;
}

/* Histogram bucket of a latency in ns. */
static int lat_bucket(uint64_t ns)
{
    int msb;

    if (ns < LAT_LINEAR) {
        return (int)ns;
    }
    msb = 63 - __builtin_clzll(ns);
    return LAT_LINEAR + (msb - 6) * (1 << LAT_SUB_BITS) +
           (int)((ns >> (msb - LAT_SUB_BITS)) & ((1 << LAT_SUB_BITS) - 1));
}

/* Smallest latency a bucket holds. */
static uint64_t lat_bucket_value(int idx)
{
    int msb, sub;

    if (idx < LAT_LINEAR) {
        return idx;
    }
    msb = (idx - LAT_LINEAR) / (1 << LAT_SUB_BITS) + 6;
    sub = (idx - LAT_LINEAR) % (1 << LAT_SUB_BITS);
    return (1ULL << msb) + ((uint64_t)sub << (msb - LAT_SUB_BITS));
}

static void lat_record(Bench *b, int64_t t0)
{
    uint64_t ns = clock_ns() - t0;

    b->lat[lat_bucket(ns)]++;
    b->lat_max = MAX(b->lat_max, ns);
}

/* Offset of the next request.  The reference wraps modulo the image
 * size, not the last offset a whole request fits at: a request that
 * then runs past the end fails the run with EIO, as there. */
static int64_t bench_next_offset(Bench *b)
{
    int64_t off = b->next_offset;
    int64_t next = off + b->a->step;

    b->next_offset = b->image_size ? next % b->image_size : 0;
    return off;
}

/* A draining flush: hold the other workers, wait, flush, release. */
static void coroutine_fn bench_drain_flush(Bench *b)
{
    int ret;

    b->flushing = true;
    while (b->in_flight > 0) {
        co_queue_wait(&b->drained, NULL);
    }
    ret = blk_co_flush(b->blk);
    if (ret < 0 && !b->ret) {
        b->ret = ret;
    }
    b->flushing = false;
    co_queue_restart_all(&b->flush_wait);
}

/* Is a flush due before request number @n (0-based)?  The reference
 * counts down: after its first DEPTH requests, a flush whenever the
 * requests not yet issued are a multiple of the interval (which only
 * shows in the image when a later request fails: it exits unflushed). */
static bool flush_due(const Bench *b, int64_t n)
{
    int64_t iv = b->a->flush_interval;

    return iv && n > 0 && n >= b->a->depth && (b->a->count - n) % iv == 0;
}

/* One flush point: draining or not. */
static void coroutine_fn bench_flush(Bench *b)
{
    int ret;

    if (b->a->drain) {
        bench_drain_flush(b);
        return;
    }
    ret = blk_co_flush(b->blk);
    if (ret < 0 && !b->ret) {
        b->ret = ret;
    }
}

/* One data request at @off from @buf. */
static void coroutine_fn bench_request(Bench *b, int64_t off, uint8_t *buf)
{
    int64_t t0 = b->lat ? clock_ns() : 0;
    int64_t n = b->a->bufsize;
    int ret;

    b->in_flight++;
    ret = b->a->write ? blk_co_pwrite(b->blk, off, n, buf, 0)
                      : blk_co_pread(b->blk, off, n, buf, 0);
    b->in_flight--;
    if (ret < 0 && !b->ret) {
        b->ret = ret;
    }
    if (b->lat) {
        lat_record(b, t0);
    }
    if (b->flushing && b->in_flight == 0) {
        co_queue_next(&b->drained);
    }
}

/* A worker: one request in flight at a time until COUNT were issued. */
static void coroutine_fn bench_worker(void *opaque)
{
    Bench *b = opaque;
    int slot = b->workers++;
    uint8_t *buf = b->buf + (size_t)slot * b->a->bufsize;

    while (b->issued < b->a->count && !b->ret) {
        int64_t n;

        while (b->flushing) {
            co_queue_wait(&b->flush_wait, NULL);
        }
        if (b->issued >= b->a->count || b->ret) {
            break;
        }
        n = b->issued++;
        if (flush_due(b, n)) {
            bench_flush(b);
        }
        bench_request(b, bench_next_offset(b), buf);
    }
    b->workers--;
}

/* The reference sizes its buffers as DEPTH * BUFFER_SIZE in int
 * arithmetic and aborts when that comes out negative (after the header,
 * which a pipe then loses unflushed).  Same message and the same point,
 * but a plain failure exit: bad arguments never crash this tool. */
static void bench_check_buffer_product(const BenchArgs *a)
{
    int32_t len = (int32_t)(uint32_t)((uint64_t)a->depth * a->bufsize);

    if (len < 0) {
        fprintf(stderr, "qemu_memalign: failed to allocate %zu bytes at "
                "alignment 4096: Cannot allocate memory\n", (size_t)len);
        _exit(EXIT_FAILURE);
    }
}

/* Buffers for every slot, filled with the pattern byte. */
static bool bench_alloc(Bench *b)
{
    int64_t slots = MIN(b->a->depth, b->a->count);
    size_t len = (size_t)slots * b->a->bufsize;

    if (posix_memalign((void **)&b->buf, 4096, MAX(len, 4096))) {
        error_report("Could not allocate buffers");
        return false;
    }
    memset(b->buf, (int)b->a->pattern, len);
    return true;
}

/* Start the workers and wait for them; the run time in seconds. */
static double bench_run(Bench *b)
{
    int64_t slots = MIN(b->a->depth, b->a->count);
    int64_t t0 = clock_ns();

    for (int64_t i = 0; i < slots; i++) {
        co_enter(co_create(bench_worker, b));
    }
    AIO_WAIT_WHILE(aio_get_default(), b->workers > 0);
    return (clock_ns() - t0) / 1e9;
}

/* The latency at percentile @p (0..100). */
static uint64_t lat_percentile(const Bench *b, uint64_t total, double p)
{
    uint64_t want = (uint64_t)(total * p / 100.0 + 0.5), seen = 0;

    want = MAX(want, 1);
    for (int i = 0; i < LAT_BUCKETS; i++) {
        seen += b->lat[i];
        if (seen >= want) {
            return MIN(lat_bucket_value(i), b->lat_max);
        }
    }
    return b->lat_max;
}

/* --output=json: one document on stdout. */
static void bench_print_json(const Bench *b, double secs)
{
    const BenchArgs *a = b->a;
    QDict *d = qdict_new(), *lat = qdict_new();
    double bytes = (double)a->count * a->bufsize;

    qdict_put_str(d, "operation", a->write ? "write" : "read");
    qdict_put_int(d, "requests", a->count);
    qdict_put_int(d, "buffer-size", a->bufsize);
    qdict_put_int(d, "depth", a->depth);
    qdict_put_int(d, "bytes", (int64_t)bytes);
    qdict_put_double(d, "seconds", secs);
    qdict_put_double(d, "iops", secs > 0 ? a->count / secs : 0);
    qdict_put_double(d, "mib-per-second", secs > 0 ? bytes / MiB / secs : 0);
    qdict_put_int(lat, "p50", lat_percentile(b, a->count, 50));
    qdict_put_int(lat, "p90", lat_percentile(b, a->count, 90));
    qdict_put_int(lat, "p99", lat_percentile(b, a->count, 99));
    qdict_put_int(lat, "p99.9", lat_percentile(b, a->count, 99.9));
    qdict_put_int(lat, "max", b->lat_max);
    qdict_put(d, "latency-ns", lat);
    img_print_json(QOBJECT(d));
    qobject_unref(d);
}

/* The header lines of the human output. */
static void bench_print_header(const BenchArgs *a)
{
    printf("Sending %" PRId64 " %s requests, %" PRId64 " bytes each, %"
           PRId64 " in parallel (starting at offset %" PRId64
           ", step size %" PRId64 ")\n", a->count,
           a->write ? "write" : "read", a->bufsize, a->depth, a->offset,
           a->step);
    if (a->flush_interval) {
        printf("Sending flush every %" PRId64 " requests\n",
               a->flush_interval);
    }
}

/* Open, run, report. */
static int bench_main(const BenchArgs *a)
{
    Bench b = { .a = a, .next_offset = a->offset };
    double secs;
    int ret = 1;

    b.blk = bench_open(a);
    if (!b.blk) {
        return 1;
    }
    co_queue_init(&b.flush_wait);
    co_queue_init(&b.drained);
    b.image_size = blk_getlength(b.blk);
    if (b.image_size < 0) {
        goto out;
    }
    if (a->output == OFORMAT_JSON) {
        b.lat = g_new0(uint64_t, LAT_BUCKETS);
    } else {
        bench_print_header(a);
    }
    bench_check_buffer_product(a);
    if (!bench_alloc(&b)) {
        goto out;
    }
    secs = bench_run(&b);
    if (b.ret < 0) {
        /* the reference exits on the spot: what the format driver
         * still caches (new L2 entries, refcounts) is never written, and
         * the image keeps its metadata as of the last flush */
        fflush(stdout);
        error_report("Failed request: %s", strerror(-b.ret));
        fflush(stderr);
        _exit(EXIT_FAILURE);
    }
    if (a->output == OFORMAT_JSON) {
        bench_print_json(&b, secs);
    } else {
        printf("Run completed in %3.3f seconds.\n", secs);
    }
    ret = 0;
out:
    g_free(b.lat);
    free(b.buf);
    blk_unref(b.blk);
    return ret;
}

int img_bench(int argc, char **argv)
{
    BenchArgs a = { .count = 75000, .depth = 64, .bufsize = 4096,
                    .drain = true, .output = OFORMAT_HUMAN };
    int ret = bench_parse(&a, argc, argv);

    return ret >= 0 ? ret : bench_main(&a);
}
