#include "config.h"
/*
 * Protocol drivers (file, host_device, null-co) and the raw format,
 * exercised through BlockBackends on real files under /var/tmp (disk
 * backed, so O_DIRECT works).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>
#include "block/driver.h"
#include "util/cutils.h"

static char *tmpdir;

static char *tmp_path(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

/* Makes @path @size bytes long, filled with @fill (0: sparse). */
static void make_file(const char *path, int64_t size, int fill)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    if (fill) {
        g_autofree uint8_t *buf = g_malloc(size);
        memset(buf, fill, size);
        g_assert_cmpint(pwrite(fd, buf, size, 0), ==, size);
    }
    close(fd);
}

/* "k=v,k=v" into a flat options dict. */
static QDict *parse_opts(const char *kv)
{
    QDict *opts = qdict_new();
    g_auto(GStrv) pairs = g_strsplit(kv, ",", -1);

    for (int i = 0; pairs[i]; i++) {
        g_auto(GStrv) p = g_strsplit(pairs[i], "=", 2);
        qdict_put_str(opts, p[0], p[1] ? p[1] : "");
    }
    return opts;
}

static BlockBackend *open_opts(const char *kv, int flags, Error **errp)
{
    return blk_new_open(NULL, NULL, parse_opts(kv), flags, errp);
}

/* Open driver=file on @path with extra options. */
static BlockBackend *open_file(const char *path, const char *extra, int flags)
{
    g_autofree char *kv = g_strdup_printf("driver=file,filename=%s%s%s",
                                          path, extra ? "," : "",
                                          extra ? extra : "");
    BlockBackend *blk = open_opts(kv, flags, &error_abort);

    g_assert(blk);
    return blk;
}

/* Open, expecting failure with message @msg. */
static void open_fails(const char *kv, int flags, const char *msg)
{
    Error *err = NULL;
    BlockBackend *blk = open_opts(kv, flags, &err);

    g_assert_null(blk);
    g_assert_nonnull(err);
    if (strcmp(error_get_pretty(err), msg)) {
        g_printerr("got: %s\nwant: %s\n", error_get_pretty(err), msg);
        g_assert_not_reached();
    }
    error_free(err);
}

static void fill_pattern(uint8_t *buf, size_t len, int seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 7 + seed);
    }
}

/* ---- file: round trip per engine ---- */

static void rw_round_trip(const char *engine, bool direct)
{
    g_autofree char *path = tmp_path("rw.img");
    g_autofree char *extra = g_strdup_printf("aio=%s%s", engine,
                                             direct ? ",cache.direct=on" : "");
    g_autofree uint8_t *wbuf = g_malloc(256 * KiB);
    g_autofree uint8_t *rbuf = g_malloc(256 * KiB);
    BlockBackend *blk;

    make_file(path, MiB, 0);
    blk = open_file(path, extra, BDRV_O_RDWR);
    fill_pattern(wbuf, 256 * KiB, 3);
    g_assert_cmpint(blk_pwrite(blk, 64 * KiB, 256 * KiB, wbuf, 0), ==, 0);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    g_assert_cmpint(blk_pread(blk, 64 * KiB, 256 * KiB, rbuf, 0), ==, 0);
    g_assert(memcmp(wbuf, rbuf, 256 * KiB) == 0);
    /* unaligned: the core's read-modify-write under O_DIRECT */
    g_assert_cmpint(blk_pwrite(blk, 1001, 3000, wbuf + 5, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 1001, 3000, rbuf, 0), ==, 0);
    g_assert(memcmp(wbuf + 5, rbuf, 3000) == 0);
    g_assert_cmpint(blk_getlength(blk), ==, MiB);
    blk_unref(blk);
}

static void test_rw_engines(void)
{
    static const char *const names[] = { "threads", "io_uring", "native" };

    for (int i = 0; i < 3; i++) {
        AioEngineType t;
        g_assert(aio_engine_parse(names[i], &t));
        if (!aio_engine_available(t)) {
            g_test_message("engine %s not available", names[i]);
            continue;
        }
        if (t != AIO_ENGINE_NATIVE) {
            rw_round_trip(names[i], false);
        }
        rw_round_trip(names[i], true);
    }
}

/* A file whose length is not a multiple of the O_DIRECT alignment: the
 * tail past EOF of the aligned read must come back as zeroes. */
static void test_direct_short_tail(void)
{
    g_autofree char *path = tmp_path("tail.img");
    uint8_t buf[1000];
    BlockBackend *blk;

    make_file(path, 1000, 0x5a);
    blk = open_file(path, "cache.direct=on", 0);
    g_assert_cmpint(blk_bs(blk)->bl.request_alignment, >=, 512);
    g_assert_cmpint(blk_pread(blk, 0, 1000, buf, 0), ==, 0);
    for (int i = 0; i < 1000; i++) {
        g_assert_cmpint(buf[i], ==, 0x5a);
    }
    blk_unref(blk);
}

/* ---- zeroes, discard, block status ---- */

static int status_of(BlockBackend *blk, int64_t off, int64_t bytes,
                     int64_t *pnum)
{
    int64_t map = -1;
    BlockDriverState *file = NULL;
    int ret = blk_block_status(blk, false, off, bytes, pnum, &map, &file,
                               NULL);

    g_assert_cmpint(ret, >=, 0);
    if (ret & BDRV_BLOCK_OFFSET_VALID) {
        g_assert_cmpint(map, ==, off);
        g_assert(file == blk_bs(blk));
    }
    return ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID);
}

static void test_zeroes_punch(void)
{
    g_autofree char *path = tmp_path("zero.img");
    BlockBackend *blk;
    uint8_t buf[4096];
    struct stat st;
    int64_t pnum;

    make_file(path, MiB, 0xff);
    blk = open_file(path, NULL, BDRV_O_RDWR | BDRV_O_UNMAP);
    g_assert_cmpint(status_of(blk, 0, MiB, &pnum), ==,
                    BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 256 * KiB, 256 * KiB,
                                      BDRV_REQ_MAY_UNMAP), ==, 0);
    g_assert_cmpint(status_of(blk, 256 * KiB, 256 * KiB, &pnum), ==,
                    BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, 256 * KiB);
    g_assert_cmpint(status_of(blk, 0, MiB, &pnum), ==,
                    BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, 256 * KiB);
    g_assert_cmpint(blk_pread(blk, 300 * KiB, 4096, buf, 0), ==, 0);
    g_assert(buffer_is_zero(buf, 4096));
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_blocks * 512, <=, 768 * KiB + 64 * KiB);
    /* without unmap: ZERO_RANGE, reads back as zeroes too */
    g_assert_cmpint(blk_pwrite_zeroes(blk, 0, 8192, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 0, 4096, buf, 0), ==, 0);
    g_assert(buffer_is_zero(buf, 4096));
    /* discard punches a hole */
    g_assert_cmpint(blk_pdiscard(blk, 768 * KiB, 256 * KiB), ==, 0);
    g_assert_cmpint(status_of(blk, 768 * KiB, 256 * KiB, &pnum), ==,
                    BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID);
    blk_unref(blk);
}

static void test_seek_data(void)
{
    g_autofree char *path = tmp_path("sparse.img");
    uint8_t buf[4096];
    BlockBackend *blk;
    int64_t pnum;
    int fd;

    make_file(path, MiB, 0);
    fd = open(path, O_WRONLY);
    memset(buf, 1, sizeof(buf));
    g_assert_cmpint(pwrite(fd, buf, 4096, 64 * KiB), ==, 4096);
    close(fd);
    blk = open_file(path, NULL, 0);
    g_assert_cmpint(status_of(blk, 0, MiB, &pnum), ==,
                    BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, 64 * KiB);
    g_assert_cmpint(status_of(blk, 64 * KiB, MiB - 64 * KiB, &pnum), ==,
                    BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, 4096);
    g_assert_cmpint(status_of(blk, 68 * KiB, MiB - 68 * KiB, &pnum), ==,
                    BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, MiB - 68 * KiB);
    /* inside the cached hole extent */
    g_assert_cmpint(status_of(blk, 4096, 4096, &pnum), ==,
                    BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(pnum, ==, 4096);
    blk_unref(blk);
}

/* ---- truncate and create ---- */

static int64_t file_size(const char *path, int64_t *allocated)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    if (allocated) {
        *allocated = st.st_blocks * 512;
    }
    return st.st_size;
}

static void test_truncate(void)
{
    g_autofree char *path = tmp_path("trunc.img");
    BlockBackend *blk;
    Error *err = NULL;
    int64_t alloc;

    make_file(path, MiB, 0);
    blk = open_file(path, NULL, BDRV_O_RDWR);
    g_assert_cmpint(blk_truncate(blk, 2 * MiB, true, PREALLOC_MODE_OFF, 0,
                                 &error_abort), ==, 0);
    g_assert_cmpint(file_size(path, NULL), ==, 2 * MiB);
    g_assert_cmpint(blk_getlength(blk), ==, 2 * MiB);
    g_assert_cmpint(blk_truncate(blk, 512 * KiB, true, PREALLOC_MODE_OFF, 0,
                                 &error_abort), ==, 0);
    g_assert_cmpint(file_size(path, NULL), ==, 512 * KiB);
    g_assert_cmpint(blk_truncate(blk, MiB, true, PREALLOC_MODE_FALLOC, 0,
                                 &error_abort), ==, 0);
    g_assert_cmpint(file_size(path, &alloc), ==, MiB);
    g_assert_cmpint(alloc, >=, 512 * KiB);
    g_assert_cmpint(blk_truncate(blk, 2 * MiB, true, PREALLOC_MODE_FULL, 0,
                                 &error_abort), ==, 0);
    g_assert_cmpint(file_size(path, &alloc), ==, 2 * MiB);
    g_assert_cmpint(alloc, >=, MiB);
    g_assert_cmpint(blk_truncate(blk, 3 * MiB, true, PREALLOC_MODE_METADATA,
                                 0, &err), <, 0);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Unsupported preallocation mode: metadata");
    error_free(err);
    blk_unref(blk);
}

static int create_file(const char *path, const char *kv, Error **errp)
{
    g_autoptr(QDict) opts = parse_opts(kv);

    return bdrv_create(bdrv_find_format("file"), path, opts, errp);
}

static void test_create(void)
{
    g_autofree char *path = tmp_path("create.img");
    g_autofree char *bad = tmp_path("nodir/x.img");
    g_autofree char *msg = NULL;
    Error *err = NULL;
    int64_t alloc;

    make_file(path, 8192, 0x11);
    g_assert_cmpint(create_file(path, "size=1000", &error_abort), ==, 0);
    g_assert_cmpint(file_size(path, NULL), ==, 1024);
    {
        uint8_t buf[1024];
        int fd = open(path, O_RDONLY);
        g_assert_cmpint(read(fd, buf, 1024), ==, 1024);
        close(fd);
        g_assert(buffer_is_zero(buf, 1024));
    }
    g_assert_cmpint(create_file(path, "size=1M,preallocation=full",
                                &error_abort), ==, 0);
    g_assert_cmpint(file_size(path, &alloc), ==, MiB);
    g_assert_cmpint(alloc, >=, MiB);
    g_assert_cmpint(create_file(path, "size=1M,preallocation=metadata",
                                &err), <, 0);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Unsupported preallocation mode: metadata");
    error_free(err);
    err = NULL;
    g_assert_cmpint(create_file(path, "size=1M,preallocation=bogus", &err),
                    <, 0);
    g_assert_cmpstr(error_get_pretty(err), ==, "invalid parameter value: bogus");
    error_free(err);
    err = NULL;
    g_assert_cmpint(create_file(bad, "size=1M", &err), <, 0);
    msg = g_strdup_printf("Could not create '%s': No such file or directory",
                          bad);
    g_assert_cmpstr(error_get_pretty(err), ==, msg);
    error_free(err);
}

/* ---- open errors ---- */

static void test_open_errors(void)
{
    g_autofree char *missing = tmp_path("missing.img");
    g_autofree char *path = tmp_path("plain.img");
    g_autofree char *kv = NULL;
    g_autofree char *msg = NULL;

    kv = g_strdup_printf("driver=file,filename=%s", missing);
    msg = g_strdup_printf("Could not open '%s': No such file or directory",
                          missing);
    open_fails(kv, 0, msg);
    g_free(kv);
    g_free(msg);
    kv = g_strdup_printf("driver=file,filename=%s", tmpdir);
    msg = g_strdup_printf("Could not open '%s': Is a directory", tmpdir);
    open_fails(kv, BDRV_O_RDWR, msg);
    g_free(msg);
    msg = g_strdup_printf("'file' driver requires '%s' to be a regular file",
                          tmpdir);
    open_fails(kv, 0, msg);
    g_free(kv);
    make_file(path, 4096, 0);
    kv = g_strdup_printf("driver=file,filename=%s,aio=native", path);
    open_fails(kv, 0, "aio=native was specified, but it requires "
               "cache.direct=on, which was not specified.");
    g_free(kv);
    kv = g_strdup_printf("driver=file,filename=%s,locking=maybe", path);
    open_fails(kv, 0, "invalid parameter value: maybe");
    g_free(kv);
    g_free(msg);
    kv = g_strdup_printf("driver=host_device,filename=%s", path);
    msg = g_strdup_printf("'host_device' driver requires '%s' to be either "
                          "a character or block device", path);
    open_fails(kv, 0, msg);
}

/* ---- locking ---- */

/* Which of bytes 100..103 and 200..203 does anyone hold on @path? */
static unsigned locked_bytes(const char *path)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    struct stat st;
    unsigned mask = 0;

    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert(g_file_get_contents("/proc/locks", &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    for (int i = 0; lines[i]; i++) {
        unsigned long ino;
        long long start, end;
        char *p = strstr(lines[i], "OFDLCK");
        if (!p || sscanf(strrchr(p, ':') + 1, "%lu %lld %lld", &ino, &start,
                         &end) != 3 || ino != st.st_ino) {
            continue;
        }
        for (long long b = start; b <= end; b++) {
            mask |= (b >= 100 && b < 104) ? 1u << (b - 100) : 0;
            mask |= (b >= 200 && b < 204) ? 1u << (b - 200 + 4) : 0;
        }
    }
    return mask;
}

static void test_locking(void)
{
    g_autofree char *path = tmp_path("lock.img");
    g_autofree char *kv = NULL;
    g_autofree char *hint = NULL;
    uint64_t rw = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE;
    uint64_t excl = BLK_PERM_ALL & ~(BLK_PERM_WRITE | BLK_PERM_RESIZE);
    BlockBackend *a, *b;
    Error *err = NULL;

    make_file(path, MiB, 0);
    /* as qemu-io: read + write held, everything shared */
    a = open_file(path, NULL, BDRV_O_RDWR);
    g_assert_cmphex(locked_bytes(path), ==, 0x3);
    b = open_file(path, NULL, BDRV_O_RDWR);
    g_assert_cmpint(blk_set_perm(b, rw, excl, &err), <, 0);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Failed to get shared \"write\" lock");
    hint = g_strdup_printf("Is another process using the image [%s]?\n", path);
    g_assert_cmpstr(error_get_hint(err), ==, hint);
    error_free(err);
    err = NULL;
    blk_unref(b);
    g_assert_cmphex(locked_bytes(path), ==, 0x3);
    /* a writer refusing to share write and resize: 100, 101, 201, 203 */
    g_assert_cmpint(blk_set_perm(a, rw, excl, &error_abort), ==, 0);
    g_assert_cmphex(locked_bytes(path), ==, 0x3 | (0xa << 4));
    kv = g_strdup_printf("driver=file,filename=%s", path);
    b = open_opts(kv, BDRV_O_RDWR, &err);
    g_assert_null(b);
    g_assert_cmpstr(error_get_pretty(err), ==, "Failed to get \"write\" lock");
    g_assert_cmpstr(error_get_hint(err), ==, hint);
    error_free(err);
    /* readers sharing everything still get in */
    b = open_file(path, NULL, 0);
    blk_unref(b);
    b = open_file(path, NULL, BDRV_O_FORCE_SHARE);
    blk_unref(b);
    g_assert_cmphex(locked_bytes(path), ==, 0x3 | (0xa << 4));
    /* commit of a smaller set releases bytes */
    g_assert_cmpint(blk_set_perm(a, BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL,
                                 &error_abort), ==, 0);
    g_assert_cmphex(locked_bytes(path), ==, 0x1);
    blk_unref(a);
    g_assert_cmphex(locked_bytes(path), ==, 0);
    /* locking=off takes nothing and sees nothing */
    a = open_file(path, "locking=off", BDRV_O_RDWR);
    g_assert_cmpint(blk_set_perm(a, rw, excl, &error_abort), ==, 0);
    g_assert_cmphex(locked_bytes(path), ==, 0);
    b = open_file(path, NULL, BDRV_O_RDWR);
    blk_unref(b);
    blk_unref(a);
}

#define QEMU_IO_REF "/opt/qemu-ref/usr/bin/qemu-io"

/* Run the reference qemu-io writing to @path; its stderr in *err. */
static int ref_write(const char *path, char **err)
{
    char *argv[] = { (char *)QEMU_IO_REF, (char *)"-f", (char *)"raw",
                     (char *)"-c", (char *)"write 0 512", (char *)path, NULL };
    int status = -1;

    g_assert(g_spawn_sync(NULL, argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL,
                          NULL, NULL, err, &status, NULL));
    return status;
}

/* Strata and the reference QEMU must exclude each other. */
static void test_locking_interop(void)
{
    g_autofree char *path = tmp_path("interop.img");
    g_autofree char *err_text = NULL;
    uint64_t rw = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE;
    uint64_t excl = BLK_PERM_ALL & ~(BLK_PERM_WRITE | BLK_PERM_RESIZE);
    char *argv[] = { (char *)QEMU_IO_REF, (char *)"-f", (char *)"raw",
                     (char *)"-c", (char *)"sleep 1500", NULL, NULL };
    BlockBackend *a;
    Error *err = NULL;
    GPid pid;
    int status;

    if (access(QEMU_IO_REF, X_OK)) {
        g_test_skip("reference qemu-io not installed");
        return;
    }
    make_file(path, MiB, 0);
    a = open_file(path, NULL, BDRV_O_RDWR);
    g_assert_cmpint(blk_set_perm(a, rw, excl, &error_abort), ==, 0);
    g_assert_cmpint(ref_write(path, &err_text), !=, 0);
    g_assert_nonnull(strstr(err_text, "Failed to get \"write\" lock"));
    blk_unref(a);
    argv[5] = path;
    g_assert(g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD |
                           G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, &pid,
                           NULL));
    for (int i = 0; i < 500 && locked_bytes(path) != 0x3; i++) {
        g_usleep(2000);
    }
    g_assert_cmphex(locked_bytes(path), ==, 0x3);
    a = open_file(path, NULL, BDRV_O_RDWR);
    g_assert_cmpint(blk_set_perm(a, rw, excl, &err), <, 0);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Failed to get shared \"write\" lock");
    error_free(err);
    blk_unref(a);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_spawn_close_pid(pid);
}

/* ---- null-co ---- */

static void test_null(void)
{
    uint8_t buf[64];
    BlockBackend *blk = open_opts("driver=null-co", 0, &error_abort);

    g_assert_cmpint(blk_getlength(blk), ==, GiB);
    memset(buf, 0xab, sizeof(buf));
    g_assert_cmpint(blk_pread(blk, 0, 64, buf, 0), ==, 0);
    g_assert_cmpint(buf[0], ==, 0xab);
    blk_unref(blk);
    blk = open_opts("driver=null-co,size=1M,read-zeroes=on,latency-ns=1000",
                    BDRV_O_RDWR, &error_abort);
    g_assert_cmpint(blk_getlength(blk), ==, MiB);
    g_assert_cmpint(blk_pread(blk, 0, 64, buf, 0), ==, 0);
    g_assert(buffer_is_zero(buf, 64));
    g_assert_cmpint(blk_pwrite(blk, 0, 64, buf, 0), ==, 0);
    blk_unref(blk);
    open_fails("driver=null-co,latency-ns=-1", 0, "latency-ns is invalid");
}

/* ---- raw ---- */

static void test_raw_window(void)
{
    g_autofree char *path = tmp_path("window.img");
    g_autofree char *kv = NULL;
    g_autofree uint8_t *data = g_malloc(MiB);
    uint8_t buf[4096];
    BlockBackend *blk;
    Error *err = NULL;
    int64_t pnum, map;
    BlockDriverState *file;
    int fd;

    fill_pattern(data, MiB, 9);
    make_file(path, MiB, 0);
    fd = open(path, O_WRONLY);
    g_assert_cmpint(pwrite(fd, data, MiB, 0), ==, MiB);
    close(fd);
    kv = g_strdup_printf("driver=raw,file.driver=file,file.filename=%s,"
                         "offset=4096,size=8192", path);
    blk = open_opts(kv, BDRV_O_RDWR, &error_abort);
    g_assert_cmpint(blk_getlength(blk), ==, 8192);
    /* as the reference: a window does not share resize (byte 203) */
    g_assert_cmphex(locked_bytes(path), ==, 0x3 | (0x8 << 4));
    g_assert_cmpint(blk_pread(blk, 0, 4096, buf, 0), ==, 0);
    g_assert(memcmp(buf, data + 4096, 4096) == 0);
    g_assert_cmpint(blk_pwrite(blk, 8192, 512, buf, 0), <, 0);
    g_assert_cmpint(blk_block_status(blk, false, 512, 1024, &pnum, &map,
                                     &file, NULL) & BDRV_BLOCK_OFFSET_VALID,
                    !=, 0);
    g_assert_cmpint(map, ==, 4096 + 512);
    g_assert_cmpint(blk_truncate(blk, 4096, true, PREALLOC_MODE_OFF, 0, &err),
                    <, 0);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Cannot resize fixed-size raw disks");
    error_free(err);
    blk_unref(blk);
    g_free(kv);
    kv = g_strdup_printf("driver=raw,file.driver=file,file.filename=%s,"
                         "offset=2M", path);
    open_fails(kv, 0, "Offset (2097152) cannot be greater than size of the "
               "containing file (1048576)");
    g_free(kv);
    kv = g_strdup_printf("driver=raw,file.driver=file,file.filename=%s,"
                         "offset=512K,size=1M", path);
    open_fails(kv, 0, "The sum of offset (524288) and size (1048576) has to "
               "be smaller or equal to the  actual size of the containing "
               "file (1048576)");
    g_free(kv);
    kv = g_strdup_printf("driver=raw,file.driver=file,file.filename=%s,"
                         "size=100", path);
    open_fails(kv, 0, "Specified size is not multiple of 512");
}

/* A format whose probe recognises a magic, to test probed-raw writes. */
static int magic_probe(const uint8_t *buf, int len, const char *fn)
{
    return len >= 8 && !memcmp(buf, "STRATAMG", 8) ? 100 : 0;
}

static const BlockDriver bdrv_magic = {
    .format_name = "testmagic",
    .kind = BDRV_KIND_FORMAT,
    .probe = magic_probe,
};

static void raw_probed_run(void)
{
    g_autofree char *path = tmp_path("probed.img");
    uint8_t buf[512] = { 0 };
    BlockBackend *blk;
    QDict *opts = qdict_new();

    make_file(path, 64 * KiB, 0);
    qdict_put_str(opts, "file.driver", "file");
    qdict_put_str(opts, "file.filename", path);
    blk = blk_new_open(NULL, NULL, opts, BDRV_O_RDWR, &error_abort);
    g_assert(blk_bs(blk)->probed);
    g_assert_cmpstr(bdrv_get_format_name(blk_bs(blk)), ==, "raw");
    g_assert_cmphex(locked_bytes(path), ==, 0x3);
    memcpy(buf, "STRATAMG", 8);
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, -EPERM);
    g_assert_cmpint(blk_pwrite(blk, 512, 512, buf, 0), ==, 0);
    memcpy(buf, "harmless", 8);
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, 0);
    blk_unref(blk);
}

/* The probed-raw warning goes to stderr: a subprocess captures and checks
 * it, so the test prints nothing besides its TAP lines. */
static void test_raw_probed(void)
{
    if (g_test_subprocess()) {
        raw_probed_run();
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_passed();
    g_test_trap_assert_stdout("");
    g_test_trap_assert_stderr("WARNING: Image format was not specified for "
                              "'*/probed.img' and probing guessed raw.\n*");
}

/* ---- copy offload ---- */

typedef struct CopyCo {
    BlockBackend *src, *dst;
    int ret;
} CopyCo;

static void coroutine_fn copy_entry(void *opaque)
{
    CopyCo *c = opaque;
    c->ret = blk_co_copy_range(c->src, 0, c->dst, 4096, 64 * KiB, 0, 0);
}

static void test_copy_range(void)
{
    g_autofree char *sp = tmp_path("csrc.img");
    g_autofree char *dp = tmp_path("cdst.img");
    g_autofree uint8_t *a = g_malloc(64 * KiB);
    g_autofree uint8_t *b = g_malloc(64 * KiB);
    CopyCo c;

    make_file(sp, MiB, 0x33);
    make_file(dp, MiB, 0);
    c.src = open_file(sp, NULL, 0);
    c.dst = open_file(dp, NULL, BDRV_O_RDWR);
    co_run_sync(copy_entry, &c);
    g_assert_cmpint(c.ret, ==, 0);
    g_assert_cmpint(blk_pread(c.src, 0, 64 * KiB, a, 0), ==, 0);
    g_assert_cmpint(blk_pread(c.dst, 4096, 64 * KiB, b, 0), ==, 0);
    g_assert(memcmp(a, b, 64 * KiB) == 0);
    blk_unref(c.src);
    blk_unref(c.dst);
}

/* ---- compare offload ---- */

typedef struct CompareCo {
    BlockBackend *a, *b;
    int64_t a_off, b_off, bytes, unit;
    bool *differ;
    uint8_t *keep;
    int ret;
} CompareCo;

static void coroutine_fn compare_entry(void *opaque)
{
    CompareCo *c = opaque;

    c->ret = bdrv_co_compare_range(blk_bs(c->a), c->a_off, blk_bs(c->b),
                                   c->b_off, c->bytes, c->unit, c->differ,
                                   c->keep);
}

/* Change one byte of @path at each of @offs (-1 ends the list). */
static void poke(const char *path, const int64_t *offs)
{
    int fd = open(path, O_RDWR);

    g_assert_cmpint(fd, >=, 0);
    for (int i = 0; offs[i] >= 0; i++) {
        g_assert_cmpint(pwrite(fd, "\xee", 1, offs[i]), ==, 1);
    }
    close(fd);
}

/* Differing units of two files on tmpfs, across the worker's pieces,
 * with the first side's data kept; the argument checks; past EOF and
 * off a memory file system the caller is told to read instead. */
static void test_compare_range(void)
{
    g_autofree char *dir = g_strdup("/dev/shm/strata-cmp-XXXXXX");
    g_autofree char *ap = NULL, *bp = NULL, *dp = tmp_path("cmp-disk.img");
    static const int64_t offs[] = { 3 * 4096 + 17, 300 * KiB, 301 * KiB,
                                    -1 };
    g_autofree bool *differ = g_new0(bool, 160);
    g_autofree uint8_t *keep = g_malloc(640 * KiB);
    g_autofree uint8_t *want = g_malloc(640 * KiB);
    CompareCo c = { .a_off = 4096, .b_off = 0, .bytes = 640 * KiB,
                    .unit = 4096, .differ = differ, .keep = keep };

    if (!g_mkdtemp(dir)) {
        g_test_skip("no /dev/shm");
        return;
    }
    ap = g_build_filename(dir, "a.img", NULL);
    bp = g_build_filename(dir, "b.img", NULL);
    make_file(ap, MiB, 0x5a);
    make_file(bp, MiB, 0x5a);
    poke(bp, offs);
    c.a = open_file(ap, NULL, 0);
    c.b = open_file(bp, NULL, 0);
    co_run_sync(compare_entry, &c);
    g_assert_cmpint(c.ret, ==, 0);
    for (int i = 0; i < 160; i++) {
        g_assert_cmpint(differ[i], ==, i == 3 || i == 75);
    }
    memset(want, 0x5a, 4096);
    g_assert(memcmp(keep + 3 * 4096, want, 4096) == 0);
    g_assert(memcmp(keep + 75 * 4096, want, 4096) == 0);
    c.bytes = 640 * KiB + 512;
    co_run_sync(compare_entry, &c);
    g_assert_cmpint(c.ret, ==, -EINVAL);
    c.bytes = MiB;                              /* a: 4 KiB past its end */
    co_run_sync(compare_entry, &c);
    g_assert_cmpint(c.ret, ==, -ENOTSUP);
    blk_unref(c.b);
    make_file(dp, MiB, 0x5a);
    c.b = open_file(dp, NULL, 0);               /* /var/tmp: a disk */
    c.bytes = 64 * KiB;
    co_run_sync(compare_entry, &c);
    g_assert_cmpint(c.ret, ==, -ENOTSUP);
    blk_unref(c.a);
    blk_unref(c.b);
    unlink(ap);
    unlink(bp);
    rmdir(dir);
}

/* ---- host_device on a loop device ---- */

static char *losetup_attach(const char *path)
{
    g_autofree char *cmd = g_strdup_printf("losetup -f --show %s", path);
    char *out = NULL;
    int status;

    if (getuid() != 0 ||
        !g_spawn_command_line_sync(cmd, &out, NULL, &status, NULL) ||
        status != 0) {
        g_free(out);
        return NULL;
    }
    return g_strstrip(out);
}

static void test_host_device(void)
{
    g_autofree char *path = tmp_path("loop.img");
    g_autofree char *dev = NULL;
    g_autofree char *kv = NULL;
    g_autofree char *detach = NULL;
    uint8_t buf[4096], rbuf[4096];
    BlockBackend *blk;

    make_file(path, 4 * MiB, 0x77);
    dev = losetup_attach(path);
    if (!dev) {
        g_test_skip("losetup not available (needs root and loop devices)");
        return;
    }
    g_assert_cmpint(bdrv_find_format("host_device")->probe_device(dev), ==,
                    100);
    kv = g_strdup_printf("driver=host_device,filename=%s", dev);
    blk = open_opts(kv, BDRV_O_RDWR | BDRV_O_UNMAP, &error_abort);
    g_assert_cmpint(blk_getlength(blk), ==, 4 * MiB);
    fill_pattern(buf, sizeof(buf), 1);
    g_assert_cmpint(blk_pwrite(blk, 8192, 4096, buf, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 8192, 4096, rbuf, 0), ==, 0);
    g_assert(memcmp(buf, rbuf, 4096) == 0);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 8192, 4096, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 8192, 4096, rbuf, 0), ==, 0);
    g_assert(buffer_is_zero(rbuf, 4096));
    blk_unref(blk);
    detach = g_strdup_printf("losetup -d %s", dev);
    g_spawn_command_line_sync(detach, NULL, NULL, NULL, NULL);
}

/* Remove the scratch directory and what the tests left in it. */
static void cleanup_tmpdir(void)
{
    GDir *d = g_dir_open(tmpdir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *p = tmp_path(name);
        unlink(p);
    }
    if (d) {
        g_dir_close(d);
    }
    rmdir(tmpdir);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    bdrv_init();
    bdrv_register(&bdrv_magic);
    tmpdir = g_strdup("/var/tmp/strata-drivers-XXXXXX");
    g_assert_nonnull(g_mkdtemp(tmpdir));
    g_test_add_func("/drivers/file/rw-engines", test_rw_engines);
    g_test_add_func("/drivers/file/direct-short-tail", test_direct_short_tail);
    g_test_add_func("/drivers/file/zeroes-punch", test_zeroes_punch);
    g_test_add_func("/drivers/file/seek-data", test_seek_data);
    g_test_add_func("/drivers/file/truncate", test_truncate);
    g_test_add_func("/drivers/file/create", test_create);
    g_test_add_func("/drivers/file/open-errors", test_open_errors);
    g_test_add_func("/drivers/file/locking", test_locking);
    g_test_add_func("/drivers/file/locking-interop", test_locking_interop);
    g_test_add_func("/drivers/file/copy-range", test_copy_range);
    g_test_add_func("/drivers/file/compare-range", test_compare_range);
    g_test_add_func("/drivers/host_device/loop", test_host_device);
    g_test_add_func("/drivers/null-co", test_null);
    g_test_add_func("/drivers/raw/window", test_raw_window);
    g_test_add_func("/drivers/raw/probed", test_raw_probed);
    ret = g_test_run();
    cleanup_tmpdir();
    return ret;
}
