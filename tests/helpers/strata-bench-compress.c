#include "config.h"
/*
 * strata-bench-compress: throughput of the qcow2 cluster codecs on a raw
 * image, the way `convert -c` uses them (all-zero clusters skipped, each
 * cluster compressed into cluster_size - 1 bytes).
 *
 *   strata-bench-compress FILE [CLUSTER_SIZE [zlib|zstd [IN_FLIGHT [REPS]]]]
 *
 * Modes, each compressing then decompressing every cluster:
 *   fresh  one new codec context per cluster, serially (QEMU's way)
 *   reuse  qcow2_compress_buf(): per-thread contexts reused, serially
 *   pool   every cluster handed to the worker pool, IN_FLIGHT coroutines
 *   co     qcow2_co_compress()/decompress() (pool, small ones inline)
 * The modes run interleaved REPS times (default 3); the best pass of each
 * is printed: MiB/s of cluster data (non-zero clusters) by wall time and
 * by process CPU time (the cost, whatever else loads the machine), and
 * the total compressed size, which must be the same in every mode.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <glib.h>
#include <zlib.h>
#include <zstd.h>
#include "block/format/qcow2/compress.h"
#include "util/aio.h"

typedef struct Bench {
    Qcow2CompressionType type;
    size_t cs;
    guint8 *data;
    size_t nclusters;
    size_t *todo;           /* indexes of non-zero clusters */
    size_t ntodo;
    guint8 **z;             /* compressed clusters (NULL: stored as is) */
    size_t *zlen;
    guint8 *back;           /* decompression target, per in-flight slot */
    int in_flight;
} Bench;

/* Wall and process CPU time of one pass. */
typedef struct Times {
    double wall, cpu;
} Times;

static double clock_s(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static Times now(void)
{
    return (Times) { clock_s(CLOCK_MONOTONIC),
                     clock_s(CLOCK_PROCESS_CPUTIME_ID) };
}

static Times since(Times t0)
{
    Times t = now();

    return (Times) { t.wall - t0.wall, t.cpu - t0.cpu };
}

/* Keep the best (shortest wall time) of repeated passes. */
static void best(Times *b, Times t)
{
    if (b->wall == 0 || t.wall < b->wall) {
        *b = t;
    }
}

/* ---- fresh: a context per cluster, as the reference does ---- */

static ssize_t fresh_zlib(void *dest, size_t dsize, const void *src, size_t n)
{
    z_stream z = { .next_in = (Bytef *)src, .avail_in = n,
                   .next_out = dest, .avail_out = dsize };
    ssize_t ret = -ENOMEM;

    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        return -ENOMEM;
    }
    if (deflate(&z, Z_FINISH) == Z_STREAM_END) {
        ret = dsize - z.avail_out;
    }
    deflateEnd(&z);
    return ret;
}

static int fresh_unzlib(void *dest, size_t dsize, const void *src, size_t n)
{
    z_stream z = { .next_in = (Bytef *)src, .avail_in = n,
                   .next_out = dest, .avail_out = dsize };
    int ret;

    if (inflateInit2(&z, -12) != Z_OK) {
        return -EIO;
    }
    ret = inflate(&z, Z_FINISH);
    inflateEnd(&z);
    return (ret == Z_STREAM_END || ret == Z_BUF_ERROR) && !z.avail_out ? 0
                                                                       : -EIO;
}

static ssize_t fresh_zstd(void *dest, size_t dsize, const void *src, size_t n)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_outBuffer out = { dest, dsize, 0 };
    ZSTD_inBuffer in = { src, n, 0 };
    size_t ret = ZSTD_compressStream2(c, &out, &in, ZSTD_e_end);

    ZSTD_freeCCtx(c);
    return ZSTD_isError(ret) || ret ? -ENOMEM : (ssize_t)out.pos;
}

static int fresh_unzstd(void *dest, size_t dsize, const void *src, size_t n)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_outBuffer out = { dest, dsize, 0 };
    ZSTD_inBuffer in = { src, n, 0 };
    size_t ret = 1;

    while (out.pos < out.size) {
        size_t ip = in.pos, op = out.pos;

        ret = ZSTD_decompressStream(d, &out, &in);
        if (ZSTD_isError(ret) || (ip == in.pos && op == out.pos)) {
            ret = 1;
            break;
        }
    }
    ZSTD_freeDCtx(d);
    return ret ? -EIO : 0;
}

/* ---- the modes ---- */

/* Record one cluster's compressed stream. */
static void keep(Bench *b, size_t k, guint8 *z, ssize_t n)
{
    g_assert(n > 0 || n == -ENOMEM);
    b->zlen[k] = n > 0 ? n : 0;
    b->z[k] = n > 0 ? z : NULL;
    if (n <= 0) {
        g_free(z);
    }
}

static void check_back(Bench *b, size_t k, const guint8 *back, int ret)
{
    g_assert(ret == 0);
    g_assert(memcmp(back, b->data + b->todo[k] * b->cs, b->cs) == 0);
}

/* Serial compress + decompress with the given functions. */
static void run_serial(Bench *b, bool fresh, Times *tc, Times *td)
{
    Times t0 = now();

    for (size_t k = 0; k < b->ntodo; k++) {
        const guint8 *src = b->data + b->todo[k] * b->cs;
        guint8 *z = g_malloc(b->cs);
        ssize_t n = !fresh ? qcow2_compress_buf(b->type, z, b->cs - 1, src, b->cs)
                  : b->type ? fresh_zstd(z, b->cs - 1, src, b->cs)
                            : fresh_zlib(z, b->cs - 1, src, b->cs);
        keep(b, k, z, n);
    }
    *tc = since(t0);
    t0 = now();
    for (size_t k = 0; k < b->ntodo; k++) {
        int ret;

        if (!b->z[k]) {
            continue;
        }
        ret = !fresh ? qcow2_decompress_buf(b->type, b->back, b->cs, b->z[k],
                                            b->zlen[k])
            : b->type ? fresh_unzstd(b->back, b->cs, b->z[k], b->zlen[k])
                      : fresh_unzlib(b->back, b->cs, b->z[k], b->zlen[k]);
        check_back(b, k, b->back, ret);
    }
    *td = since(t0);
}

/* One in-flight slot of the parallel modes. */
typedef struct Slot {
    Bench *b;
    size_t *next;
    bool decompress;
    bool via_api;
    guint8 *back;
    int running;
    int *left;
} Slot;

typedef struct PoolWork {
    Bench *b;
    size_t k;
    guint8 *dest;
    bool decompress;
    ssize_t ret;
} PoolWork;

static int pool_work(void *opaque)
{
    PoolWork *w = opaque;
    Bench *b = w->b;

    if (w->decompress) {
        w->ret = qcow2_decompress_buf(b->type, w->dest, b->cs, b->z[w->k],
                                      b->zlen[w->k]);
    } else {
        w->ret = qcow2_compress_buf(b->type, w->dest, b->cs - 1,
                                    b->data + b->todo[w->k] * b->cs, b->cs);
    }
    return 0;
}

/* One cluster through the API or straight onto the pool. */
static ssize_t coroutine_fn slot_one(Slot *s, size_t k, guint8 *dest)
{
    Bench *b = s->b;
    PoolWork w = { b, k, dest, s->decompress, 0 };

    if (!s->via_api) {
        thread_pool_run(aio_get_default(), pool_work, &w);
        return w.ret;
    }
    if (s->decompress) {
        return qcow2_co_decompress(b->type, dest, b->cs, b->z[k], b->zlen[k]);
    }
    return qcow2_co_compress(b->type, dest, b->cs - 1,
                             b->data + b->todo[k] * b->cs, b->cs);
}

static void coroutine_fn slot_entry(void *opaque)
{
    Slot *s = opaque;
    Bench *b = s->b;

    while (*s->next < b->ntodo) {
        size_t k = (*s->next)++;

        if (s->decompress) {
            if (b->z[k]) {
                check_back(b, k, s->back, slot_one(s, k, s->back));
            }
        } else {
            guint8 *z = g_malloc(b->cs);
            keep(b, k, z, slot_one(s, k, z));
        }
    }
    (*s->left)--;
}

/* One parallel pass (compress or decompress) over every cluster. */
static Times run_parallel_pass(Bench *b, bool via_api, bool decompress)
{
    g_autofree Slot *slots = g_new0(Slot, b->in_flight);
    size_t next = 0;
    int left = b->in_flight;
    Times t0 = now();

    for (int i = 0; i < b->in_flight; i++) {
        slots[i] = (Slot) { b, &next, decompress, via_api,
                            b->back + (size_t)i * b->cs, 0, &left };
        co_enter(co_create(slot_entry, &slots[i]));
    }
    AIO_WAIT_WHILE(aio_get_default(), left > 0);
    return since(t0);
}

static void free_streams(Bench *b)
{
    for (size_t k = 0; k < b->ntodo; k++) {
        g_free(b->z[k]);
        b->z[k] = NULL;
    }
}

/* Total size of the streams (stored clusters count in full). */
static size_t total_out(Bench *b, size_t *stored)
{
    size_t total = 0;

    *stored = 0;
    for (size_t k = 0; k < b->ntodo; k++) {
        total += b->z[k] ? b->zlen[k] : b->cs;
        *stored += !b->z[k];
    }
    return total;
}

/* MiB/s of wall time (and of CPU time: the cost, whatever the load). */
static void report(Bench *b, const char *mode, Times tc, Times td,
                   size_t total, size_t stored)
{
    double mib = (double)b->ntodo * b->cs / (1 << 20);

    printf("%-6s %s cs=%-7zu compress %7.1f MiB/s (cpu %7.1f)  decompress "
           "%7.1f MiB/s (cpu %7.1f)  out %zu bytes (%zu stored)\n", mode,
           b->type ? "zstd" : "zlib", b->cs, mib / tc.wall, mib / tc.cpu,
           mib / td.wall, mib / td.cpu, total, stored);
}

/* One pass of mode @m (0 fresh, 1 reuse, 2 pool, 3 co). */
static void run_mode(Bench *b, int m, Times *tc, Times *td)
{
    if (m < 2) {
        run_serial(b, m == 0, tc, td);
    } else {
        *tc = run_parallel_pass(b, m == 3, false);
        *td = run_parallel_pass(b, m == 3, true);
    }
}

/* The modes interleaved, @reps rounds, best pass of each reported; the
 * output size must not depend on the mode. */
static void run_all(Bench *b, int reps)
{
    static const char *names[] = { "fresh", "reuse", "pool", "co" };
    Times tc[4] = { 0 }, td[4] = { 0 };
    size_t total[4], stored[4];

    for (int r = 0; r < reps; r++) {
        for (int m = 0; m < 4; m++) {
            Times c, d;

            run_mode(b, m, &c, &d);
            best(&tc[m], c);
            best(&td[m], d);
            total[m] = total_out(b, &stored[m]);
            free_streams(b);
            g_assert(total[m] == total[0]);
        }
    }
    for (int m = 0; m < 4; m++) {
        report(b, names[m], tc[m], td[m], total[m], stored[m]);
    }
}

/* The non-zero clusters of the image. */
static void find_clusters(Bench *b)
{
    static const guint8 zero[4096];

    b->todo = g_new(size_t, b->nclusters);
    for (size_t i = 0; i < b->nclusters; i++) {
        const guint8 *p = b->data + i * b->cs;
        bool z = true;

        for (size_t o = 0; z && o < b->cs; o += MIN(b->cs, sizeof(zero))) {
            z = !memcmp(p + o, zero, MIN(b->cs, sizeof(zero)));
        }
        if (!z) {
            b->todo[b->ntodo++] = i;
        }
    }
}

int main(int argc, char **argv)
{
    Bench b = { 0 };
    gsize len;

    if (argc < 2 || !g_file_get_contents(argv[1], (char **)&b.data, &len, NULL)) {
        fprintf(stderr, "usage: strata-bench-compress FILE [CLUSTER_SIZE "
                "[zlib|zstd [IN_FLIGHT [REPS]]]]\n");
        return 1;
    }
    b.cs = argc > 2 ? strtoull(argv[2], NULL, 0) : 65536;
    b.type = argc > 3 && !strcmp(argv[3], "zstd");
    b.in_flight = argc > 4 ? atoi(argv[4]) : 16;
    b.nclusters = len / b.cs;
    find_clusters(&b);
    b.z = g_new0(guint8 *, b.ntodo);
    b.zlen = g_new0(size_t, b.ntodo);
    b.back = g_malloc((size_t)b.in_flight * b.cs);
    printf("%zu of %zu clusters non-zero (%.1f MiB)\n", b.ntodo, b.nclusters,
           (double)b.ntodo * b.cs / (1 << 20));
    run_all(&b, argc > 5 ? atoi(argv[5]) : 3);
    return 0;
}
