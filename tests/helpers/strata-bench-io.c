/*
 * Request-rate benchmark through the full stack: BlockBackend -> raw ->
 * file, @depth coroutines each issuing @size requests at sequential
 * offsets (as "qemu-img bench" does), until @count requests completed.
 *
 * Usage: strata-bench-io [-w] [-n] [-i ENGINE] [-d DEPTH] [-c COUNT]
 *                        [-s SIZE] FILE
 * Prints "Run completed in S seconds." and "IOPS: N".
 */
#include "config.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include "block/block.h"
#include "util/cutils.h"

typedef struct Bench {
    BlockBackend *blk;
    int64_t image_size;
    int64_t size;
    int64_t next_offset;
    uint64_t issued, completed, count;
    int in_flight;
    bool write;
    int ret;
} Bench;

/* One worker: keeps one request in flight until the count is reached. */
static void coroutine_fn bench_worker(void *opaque)
{
    Bench *b = opaque;
    void *buf;

    if (posix_memalign(&buf, 4096, b->size)) {
        abort();
    }
    memset(buf, 0x5a, b->size);
    while (b->issued < b->count && b->ret == 0) {
        int64_t off = b->next_offset;
        b->next_offset = (off + b->size + b->size > b->image_size) ? 0 : off + b->size;
        b->issued++;
        int r = b->write ? blk_co_pwrite(b->blk, off, b->size, buf, 0)
                         : blk_co_pread(b->blk, off, b->size, buf, 0);
        if (r < 0) {
            b->ret = r;
        }
        b->completed++;
    }
    free(buf);
    b->in_flight--;
}

/* Open @file as raw over file with the chosen engine and cache mode. */
static BlockBackend *open_image(const char *file, const char *engine,
                                bool nocache, bool write)
{
    Error *err = NULL;
    QDict *opts = qdict_new();
    qdict_put_str(opts, "driver", "raw");
    qdict_put_str(opts, "file.driver", "file");
    qdict_put_str(opts, "file.filename", file);
    qdict_put_str(opts, "file.aio", engine);
    qdict_put_str(opts, "cache.direct", nocache ? "on" : "off");
    BlockBackend *blk = blk_new_open(NULL, NULL, opts,
                                     write ? BDRV_O_RDWR : 0, &err);
    if (!blk) {
        error_report_err(err);
        exit(1);
    }
    return blk;
}

int main(int argc, char **argv)
{
    Bench b = { .size = 4096, .count = 200000 };
    const char *engine = "io_uring";
    bool nocache = false;
    int depth = 64, c;
    uint64_t v;

    error_set_progname(argv[0]);
    while ((c = getopt(argc, argv, "wni:d:c:s:")) != -1) {
        switch (c) {
        case 'w': b.write = true; break;
        case 'n': nocache = true; break;
        case 'i': engine = optarg; break;
        case 'd': depth = atoi(optarg); break;
        case 'c': b.count = strtoull(optarg, NULL, 0); break;
        case 's':
            if (size_parse(optarg, NULL, &v) < 0) {
                error_report("bad size");
                return 1;
            }
            b.size = v;
            break;
        default:
            return 2;
        }
    }
    if (optind != argc - 1 || depth < 1) {
        fprintf(stderr, "usage: %s [-w] [-n] [-i ENGINE] [-d DEPTH] [-c COUNT] [-s SIZE] FILE\n",
                argv[0]);
        return 2;
    }
    bdrv_init();
    b.blk = open_image(argv[optind], engine, nocache, b.write);
    b.image_size = blk_getlength(b.blk);
    int64_t t0 = clock_ns();
    for (int i = 0; i < depth; i++) {
        b.in_flight++;
        co_enter(co_create(bench_worker, &b));
    }
    AIO_WAIT_WHILE(aio_get_default(), b.in_flight > 0);
    double secs = (clock_ns() - t0) / 1e9;
    if (b.ret < 0) {
        error_report("request failed: %s", strerror(-b.ret));
        return 1;
    }
    printf("Run completed in %3.3f seconds.\nIOPS: %.0f\n", secs, b.completed / secs);
    blk_unref(b.blk);
    bdrv_close_all();
    return 0;
}
