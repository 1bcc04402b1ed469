#include "config.h"
/*
 * Fuzz target: an untrusted image file, opened read-only with format
 * probing as `info`, `map` and `convert` open one, then walked: length,
 * block status over the whole image, reads at its start, middle and end,
 * the bits of its dirty bitmaps, then the format's metadata check
 * (strata-img check) where it has one, then each internal snapshot
 * (qcow2) loaded as convert -l loads it and read the same way: the
 * snapshot table and its L1 tables are parsed.
 * A qcow2 input is then repaired on a second scratch copy as `check -r
 * all` does it (read-write, then checked again), and opened read-write
 * once more as a writer would (a dirty image is repaired at that open).
 * Every format driver is reached through the probe, so each new image
 * parser is covered here as soon as it is registered.  No file named by
 * the input is opened: no backing file, and the input itself stands for
 * a qcow2 external data file.  Errors are the expected outcome for most
 * inputs; crashes, sanitizer reports and hangs are the findings.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "block/block.h"
#include "block/driver.h"
#include "tests/fuzz/fuzz-main.h"

#define FUZZ_READ_SIZE   (64 * 1024)
#define FUZZ_MAX_EXTENTS 4096    /* a walk that long means no progress */

/* The check prints a line per damaged entry (a hostile table makes
 * that tens of thousands): unbuffered, each would be a write(2).  The
 * harness's stderr goes fully buffered and is flushed after each input;
 * sanitizer reports do not go through stdio. */
static void buffer_stderr(void)
{
    static char buf[64 * 1024];

    setvbuf(stderr, buf, _IOFBF, sizeof(buf));
}

/* One scratch file for every input: the harness runs millions. */
static const char *scratch_path(int *pfd)
{
    static char *path;
    static int fd = -1;

    if (fd < 0) {
        fd = g_file_open_tmp(NULL, &path, NULL);
        g_assert(fd >= 0);
        bdrv_init();
        buffer_stderr();
    }
    *pfd = fd;
    return path;
}

/* The copy repairs may write to. */
static const char *repair_path(int *pfd)
{
    static char *path;
    static int fd = -1;

    if (fd < 0) {
        fd = g_file_open_tmp(NULL, &path, NULL);
        g_assert(fd >= 0);
    }
    *pfd = fd;
    return path;
}

static bool write_input(int fd, const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) < 0) {
        return false;
    }
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n <= 0) {
            return false;
        }
        data += n;
        size -= n;
    }
    return lseek(fd, 0, SEEK_SET) == 0;
}

/* Block status from start to end; each answer must move forward. */
static void walk_extents(BlockBackend *blk, int64_t len)
{
    int64_t off = 0;

    for (int i = 0; i < FUZZ_MAX_EXTENTS && off < len; i++) {
        int64_t pnum = 0;
        int ret = blk_block_status(blk, true, off, len - off, &pnum, NULL,
                                   NULL, NULL);
        if (ret < 0) {
            return;
        }
        g_assert(pnum > 0 && pnum <= len - off);
        off += pnum;
    }
}

static void read_around(BlockBackend *blk, int64_t len)
{
    static uint8_t buf[FUZZ_READ_SIZE];
    int64_t n = MIN(len, FUZZ_READ_SIZE);
    int64_t at[] = { 0, len / 2 - n / 2, len - n };

    for (size_t i = 0; i < G_N_ELEMENTS(at); i++) {
        blk_pread(blk, at[i], n, buf, 0);
    }
}

/* The metadata check reads every table the image points at: its own
 * parser of hostile input. */
static void check_image(BlockBackend *blk)
{
    BlockCheckResult res;

    bdrv_check(blk_bs(blk), &res, 0);
}

/* The bits of every dirty bitmap the image holds (qcow2: its bitmap
 * tables and data clusters), read as convert --bitmaps reads them. */
static void load_bitmaps(BlockBackend *blk)
{
    BdrvDirtyBitmap *bm;

    for (unsigned i = 0; (bm = bdrv_dirty_bitmap_at(blk_bs(blk), i)); i++) {
        Error *err = NULL;

        if (bdrv_dirty_bitmap_load(bm, &err) < 0) {
            error_free(err);
        }
    }
}

/* A qcow2 v3 header whose incompatible bit 2 says the guest data lives
 * in an external file named by the image.  The open would reach that
 * host file: the input itself is given as the data file instead. */
static bool names_data_file(const uint8_t *data, size_t size)
{
    static const uint8_t magic[4] = { 'Q', 'F', 'I', 0xfb };

    return size >= 80 && memcmp(data, magic, 4) == 0 &&
           data[7] >= 3 && data[4] == 0 && data[5] == 0 && data[6] == 0 &&
           (data[79] & 4);
}

/* Every snapshot the table lists, read through its own L1 table (the
 * node is read-only: loading one replaces what it reads). */
static void walk_snapshots(BlockBackend *blk)
{
    g_autofree BdrvSnapshotInfo *tab = NULL;
    int n = bdrv_snapshot_list(blk_bs(blk), &tab);

    for (int i = 0; i < n && i < 8; i++) {
        Error *err = NULL;
        int64_t len;

        if (bdrv_snapshot_load_tmp(blk_bs(blk), tab[i].id, NULL, &err) < 0) {
            error_free(err);
            continue;
        }
        len = blk_getlength(blk);
        if (len > 0) {
            walk_extents(blk, len);
            read_around(blk, len);
        }
    }
}

/* Open @path (the input written there) with @flags; NULL on error. */
static BlockBackend *open_input(const char *path, const char *format,
                                bool data_file, int flags)
{
    QDict *opts = qdict_new();
    BlockBackend *blk;
    Error *err = NULL;

    if (format) {
        qdict_put_str(opts, "driver", format);
    }
    qdict_put_str(opts, "file.driver", "file");
    qdict_put_str(opts, "file.filename", path);
    if (data_file) {
        qdict_put_str(opts, "data-file.driver", "file");
        qdict_put_str(opts, "data-file.filename", path);
    }
    /* a backing file name in the input would reach files of the host:
     * the fuzzed image alone is opened, as qemu-img info does */
    blk = blk_new_open(NULL, NULL, opts, BDRV_O_NO_BACKING | flags, &err);
    if (!blk) {
        error_free(err);
    }
    return blk;
}

/* check -r all on a copy, then the check after it; then a plain
 * read-write open (the dirty-image repair) and one write. */
static void repair_copy(const uint8_t *data, size_t size, bool data_file)
{
    static uint8_t buf[4096];
    int fd;
    const char *path = repair_path(&fd);
    BlockBackend *blk;
    BlockCheckResult res;

    if (!write_input(fd, data, size)) {
        return;
    }
    /* a scratch copy: flushes to the disk would only cost time */
    blk = open_input(path, "qcow2", data_file,
                     BDRV_O_RDWR | BDRV_O_CHECK | BDRV_O_NO_FLUSH);
    if (blk) {
        if (bdrv_check(blk_bs(blk), &res, BDRV_FIX_LEAKS | BDRV_FIX_ERRORS)
            == 0 && (res.leaks_fixed || res.corruptions_fixed)) {
            bdrv_check(blk_bs(blk), &res, 0);
        }
        blk_unref(blk);
    }
    blk = open_input(path, "qcow2", data_file,
                     BDRV_O_RDWR | BDRV_O_NO_FLUSH);
    if (blk) {
        blk_pwrite(blk, 0, sizeof(buf), buf, 0);
        blk_unref(blk);
    }
}

/* The repair prints what the check printed, several times over (a
 * hostile refcount table makes that a million lines): its stderr goes
 * to /dev/null.  A crash there still leaves its input as an artifact,
 * whose replay shows the report. */
static void repair_quietly(const uint8_t *data, size_t size, bool data_file)
{
    int saved = dup(STDERR_FILENO);
    int null = open("/dev/null", O_WRONLY);

    if (saved >= 0 && null >= 0) {
        fflush(stderr);
        dup2(null, STDERR_FILENO);
    }
    repair_copy(data, size, data_file);
    if (saved >= 0 && null >= 0) {
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
    }
    if (saved >= 0) {
        close(saved);
    }
    if (null >= 0) {
        close(null);
    }
}

/* The walk of one input, on its scratch copies. */
static void run_input(const uint8_t *data, size_t size)
{
    int fd;
    const char *path = scratch_path(&fd);
    bool data_file = names_data_file(data, size);
    BlockBackend *blk;
    bool qcow2;
    int64_t len;

    if (!write_input(fd, data, size)) {
        return;
    }
    blk = open_input(path, NULL, data_file, 0);
    if (!blk) {
        return;
    }
    len = blk_getlength(blk);
    if (len > 0) {
        walk_extents(blk, len);
        read_around(blk, len);
    }
    load_bitmaps(blk);
    check_image(blk);
    walk_snapshots(blk);
    qcow2 = !strcmp(bdrv_get_format_name(blk_bs(blk)), "qcow2");
    blk_unref(blk);
    if (qcow2) {
        repair_quietly(data, size, data_file);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_input(data, size);
    fflush(stderr);
    return 0;
}
