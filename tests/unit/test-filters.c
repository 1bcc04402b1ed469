#include "config.h"
/*
 * Filter drivers: throttle (limits hold, groups share their budget, bad
 * configs are rejected, drain releases queued requests), preallocate
 * (the file grows in preallocated steps and is trimmed on close) and
 * blkdebug (rules, states, breakpoints, delays).
 *
 * blkdebug events come from a small test filter ("evtop") that fires
 * read_aio / write_aio before passing requests down, so these tests do
 * not depend on the raw driver.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib.h>
#include "block/debug.h"
#include "block/driver.h"
#include "block/filter/throttle-groups.h"
#include "util/cutils.h"

/* ---- the event-firing test filter ---- */

static int evtop_open(BlockDriverState *bs, QDict *options, int flags,
                      Error **errp)
{
    return bdrv_open_child(NULL, options, "file", bs,
                           BDRV_CHILD_DATA | BDRV_CHILD_FILTERED |
                           BDRV_CHILD_PRIMARY, false, errp) ? 0 : -EINVAL;
}

static int coroutine_fn evtop_preadv(BlockDriverState *bs, int64_t offset,
                                     int64_t bytes, IOVector *qiov,
                                     BdrvRequestFlags flags)
{
    bdrv_debug_event(bs->file, BLKDBG_READ_AIO);
    return bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn evtop_pwritev(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, IOVector *qiov,
                                      BdrvRequestFlags flags)
{
    bdrv_debug_event(bs->file, BLKDBG_WRITE_AIO);
    return bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
}

static const BlockDriverIO evtop_io = {
    .co_preadv = evtop_preadv,
    .co_pwritev = evtop_pwritev,
};

static const BlockDriver bdrv_evtop = {
    .format_name = "evtop",
    .kind = BDRV_KIND_FILTER,
    .open = evtop_open,
    .io = &evtop_io,
};

/* ---- helpers ---- */

static BlockBackend *open_json(const char *json, Error **errp)
{
    QObject *obj = qobject_from_json(json, NULL);
    QDict *opts = qobject_to_qdict(obj);

    g_assert(opts);
    return blk_new_open(NULL, NULL, opts, BDRV_O_RDWR, errp);
}

static BlockBackend *open_ok(const char *json)
{
    Error *err = NULL;
    BlockBackend *blk = open_json(json, &err);

    if (!blk) {
        g_printerr("open failed: %s\n", error_get_pretty(err));
    }
    g_assert(blk);
    return blk;
}

/* Opening must fail with exactly @msg. */
static void open_fails(const char *json, const char *msg)
{
    Error *err = NULL;
    BlockBackend *blk = open_json(json, &err);

    g_assert(!blk);
    g_assert(err);
    g_assert_cmpstr(error_get_pretty(err), ==, msg);
    error_free(err);
}

static double seconds_since(int64_t t0)
{
    return (clock_ns() - t0) / 1e9;
}

static int do_read(BlockBackend *blk, int64_t off, int64_t len)
{
    g_autofree void *buf = g_malloc0(len);

    return blk_pread(blk, off, len, buf, 0);
}

static int do_write(BlockBackend *blk, int64_t off, int64_t len)
{
    g_autofree void *buf = g_malloc(len);

    memset(buf, 0xa5, len);
    return blk_pwrite(blk, off, len, buf, 0);
}

/* ---- throttle ---- */

static void make_group(const char *id, const char *key, const char *val)
{
    g_autoptr(QDict) opts = qdict_new();
    Error *err = NULL;

    qdict_put_str(opts, "id", id);
    qdict_put_str(opts, key, val);
    if (!throttle_group_create_from_opts(opts, &err)) {
        g_printerr("%s\n", error_get_pretty(err));
        g_assert_not_reached();
    }
}

static BlockBackend *open_throttled(const char *group)
{
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"throttle\", \"throttle-group\": \"%s\", "
        "\"file\": {\"driver\": \"null-co\", \"size\": 67108864}}", group);

    return open_ok(json);
}

/* The throttled runs below need about two seconds at their limit; allow
 * generous slack above for slow machines. */
static void assert_throttled_since(int64_t t0)
{
    double took = seconds_since(t0);

    g_assert_cmpfloat(took, >=, 1.5);
    g_assert_cmpfloat(took, <=, 6.0);
}

static void test_throttle_bps(void)
{
    BlockBackend *blk;
    int64_t t0;

    make_group("tg-bps", "x-bps-write", "1048576");
    blk = open_throttled("tg-bps");
    t0 = clock_ns();
    for (int i = 0; i < 3; i++) {
        g_assert_cmpint(do_write(blk, i * MiB, MiB), ==, 0);
    }
    assert_throttled_since(t0);
    /* reads are not limited by a write limit */
    t0 = clock_ns();
    for (int i = 0; i < 8; i++) {
        g_assert_cmpint(do_read(blk, i * MiB, MiB), ==, 0);
    }
    g_assert_cmpfloat(seconds_since(t0), <, 1.0);
    blk_unref(blk);
    g_assert(throttle_group_delete("tg-bps"));
}

static void test_throttle_iops(void)
{
    BlockBackend *blk;
    int64_t t0;

    make_group("tg-iops", "x-iops-total", "10");
    blk = open_throttled("tg-iops");
    t0 = clock_ns();
    for (int i = 0; i < 25; i++) {
        g_assert_cmpint(do_read(blk, i * 4 * KiB, 4 * KiB), ==, 0);
    }
    assert_throttled_since(t0);
    blk_unref(blk);
    g_assert(throttle_group_delete("tg-iops"));
}

static void test_throttle_shared_group(void)
{
    BlockBackend *a, *b;
    int64_t t0;

    make_group("tg-shared", "x-bps-write", "1048576");
    a = open_throttled("tg-shared");
    b = open_throttled("tg-shared");
    t0 = clock_ns();
    g_assert_cmpint(do_write(a, 0, MiB), ==, 0);
    g_assert_cmpint(do_write(b, 0, MiB), ==, 0);
    g_assert_cmpint(do_write(a, MiB, MiB), ==, 0);
    /* one node alone would have needed < 1 s for its two writes */
    g_assert_cmpfloat(seconds_since(t0), >=, 1.5);
    blk_unref(a);
    blk_unref(b);
    g_assert(throttle_group_delete("tg-shared"));
}

typedef struct BgWrite {
    BlockBackend *blk;
    int64_t offset;
    bool done;
    int ret;
} BgWrite;

static void coroutine_fn bg_write_entry(void *opaque)
{
    BgWrite *w = opaque;
    g_autofree void *buf = g_malloc0(MiB);

    w->ret = blk_co_pwrite(w->blk, w->offset, MiB, buf, 0);
    w->done = true;
}

/* Queued requests go at once when the node is drained. */
static void test_throttle_drain(void)
{
    BgWrite w[5];
    BlockBackend *blk;
    int64_t t0;

    make_group("tg-drain", "x-bps-write", "1048576");
    blk = open_throttled("tg-drain");
    for (int i = 0; i < 5; i++) {
        w[i] = (BgWrite) { .blk = blk, .offset = i * MiB };
        co_enter(co_create(bg_write_entry, &w[i]));
    }
    g_assert(!w[4].done);
    t0 = clock_ns();
    bdrv_drained_begin(blk_bs(blk));
    g_assert_cmpfloat(seconds_since(t0), <, 1.0);
    for (int i = 0; i < 5; i++) {
        g_assert(w[i].done);
        g_assert_cmpint(w[i].ret, ==, 0);
    }
    bdrv_drained_end(blk_bs(blk));
    blk_unref(blk);
    g_assert(throttle_group_delete("tg-drain"));
}

static void group_fails(const char *key, const char *val, const char *key2,
                        const char *val2, const char *msg)
{
    g_autoptr(QDict) opts = qdict_new();
    Error *err = NULL;

    qdict_put_str(opts, "id", "tg-bad");
    qdict_put_str(opts, key, val);
    if (key2) {
        qdict_put_str(opts, key2, val2);
    }
    g_assert(!throttle_group_create_from_opts(opts, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, msg);
    error_free(err);
    g_assert(!throttle_group_exists("tg-bad"));
}

static void test_throttle_bad_config(void)
{
    group_fails("x-bps-total", "100", "x-bps-read", "10",
                "bps/iops/max total values and read/write values cannot be "
                "used at the same time");
    group_fails("x-bps-total", "abc", NULL, NULL,
                "Parameter 'x-bps-total' expects integer");
    group_fails("x-bps-total", "-1", NULL, NULL,
                "Property values cannot be negative");
    group_fails("x-bogus", "1", NULL, NULL, "Parameter 'x-bogus' is unexpected");
    group_fails("x-bps-total-max", "100", NULL, NULL,
                "bps_max/iops_max require corresponding bps/iops values");
    group_fails("x-iops-size", "100", NULL, NULL,
                "iops size requires an iops value to be set");
    make_group("tg-dup", "limits.bps-total", "1000");
    {
        g_autoptr(QDict) opts = qdict_new();
        Error *err = NULL;

        qdict_put_str(opts, "id", "tg-dup");
        g_assert(!throttle_group_create_from_opts(opts, &err));
        g_assert_cmpstr(error_get_pretty(err), ==, "attempt to add duplicate "
                        "property 'tg-dup' to object (type 'container')");
        error_free(err);
    }
    g_assert(throttle_group_delete("tg-dup"));
    open_fails("{\"driver\": \"throttle\", \"file\": {\"driver\": "
               "\"null-co\"}}", "Please specify a throttle group");
    open_fails("{\"driver\": \"throttle\", \"throttle-group\": \"nope\", "
               "\"file\": {\"driver\": \"null-co\"}}",
               "Throttle group 'nope' does not exist");
}

/* ---- preallocate ---- */

static char *make_temp_file(const char *content, size_t len)
{
    char *path = NULL;
    GError *gerr = NULL;
    int fd = g_file_open_tmp("strata-flt-XXXXXX", &path, &gerr);

    g_assert_no_error(gerr);
    g_assert_cmpint(write(fd, content, len), ==, (ssize_t)len);
    close(fd);
    return path;
}

static int64_t file_size(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return st.st_size;
}

static BlockBackend *open_prealloc(const char *path)
{
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"preallocate\", \"prealloc-size\": \"1M\", "
        "\"prealloc-align\": \"64k\", "
        "\"file\": {\"driver\": \"file\", \"filename\": \"%s\"}}", path);
    BlockBackend *blk = open_ok(json);

    blk_set_allow_write_beyond_eof(blk, true);
    return blk;
}

static void test_prealloc_grow_and_trim(void)
{
    g_autofree char *path = make_temp_file("", 0);
    g_autofree uint8_t *buf = g_malloc(64 * KiB);
    BlockBackend *blk = open_prealloc(path);

    g_assert_cmpint(do_write(blk, 0, 4 * KiB), ==, 0);
    g_assert_cmpint(file_size(path), ==, MiB + 64 * KiB);
    g_assert_cmpint(blk_getlength(blk), ==, 4 * KiB);
    /* inside the preallocated tail: no growth, data end moves */
    g_assert_cmpint(do_write(blk, 512 * KiB, 4 * KiB), ==, 0);
    g_assert_cmpint(file_size(path), ==, MiB + 64 * KiB);
    g_assert_cmpint(blk_getlength(blk), ==, 516 * KiB);
    /* the gap reads as zeroes */
    g_assert_cmpint(blk_pread(blk, 64 * KiB, 64 * KiB, buf, 0), ==, 0);
    g_assert(buffer_is_zero(buf, 64 * KiB));
    /* past the preallocated end: grows again */
    g_assert_cmpint(do_write(blk, MiB + 60 * KiB, 8 * KiB), ==, 0);
    g_assert_cmpint(file_size(path), ==, 2 * MiB + 128 * KiB);
    blk_unref(blk);
    g_assert_cmpint(file_size(path), ==, MiB + 68 * KiB);
    unlink(path);
}

static void test_prealloc_truncate(void)
{
    g_autofree char *path = make_temp_file("", 0);
    BlockBackend *blk = open_prealloc(path);

    g_assert_cmpint(do_write(blk, 0, 4 * KiB), ==, 0);
    g_assert_cmpint(blk_truncate(blk, 600 * KiB, false, PREALLOC_MODE_OFF, 0,
                                 NULL), ==, 0);
    g_assert_cmpint(blk_getlength(blk), ==, 600 * KiB);
    g_assert_cmpint(file_size(path), ==, MiB + 64 * KiB);
    g_assert_cmpint(blk_truncate(blk, 2 * KiB, false, PREALLOC_MODE_OFF, 0,
                                 NULL), ==, 0);
    g_assert_cmpint(blk_getlength(blk), ==, 2 * KiB);
    g_assert_cmpint(file_size(path), ==, 2 * KiB);
    blk_unref(blk);
    g_assert_cmpint(file_size(path), ==, 2 * KiB);
    unlink(path);
}

static void test_prealloc_bad_align(void)
{
    open_fails("{\"driver\": \"preallocate\", \"prealloc-align\": 3, "
               "\"file\": {\"driver\": \"null-co\"}}",
               "prealloc-align parameter of preallocate filter is not "
               "aligned to 512");
}

/* ---- blkdebug ---- */

/* evtop over blkdebug over null-co with these blkdebug options. */
static char *bd_json(const char *blkdebug_opts)
{
    return g_strdup_printf(
        "{\"driver\": \"evtop\", \"file\": {\"driver\": \"blkdebug\", %s%s"
        "\"image\": {\"driver\": \"null-co\", \"size\": 1048576, "
        "\"read-zeroes\": true}}}",
        blkdebug_opts, *blkdebug_opts ? ", " : "");
}

static BlockBackend *open_bd(const char *blkdebug_opts)
{
    g_autofree char *json = bd_json(blkdebug_opts);

    return open_ok(json);
}

static void bd_fails(const char *blkdebug_opts, const char *msg)
{
    g_autofree char *json = bd_json(blkdebug_opts);

    open_fails(json, msg);
}

static void test_blkdebug_event_rule(void)
{
    BlockBackend *blk = open_bd("\"inject-error\": [{\"event\": \"read_aio\"}]");

    g_assert_cmpint(do_write(blk, 0, 512), ==, 0);     /* not armed yet */
    g_assert_cmpint(do_read(blk, 0, 512), ==, -EIO);
    g_assert_cmpint(do_write(blk, 0, 512), ==, -EIO);  /* stays armed */
    blk_unref(blk);
}

static void test_blkdebug_iotype_once(void)
{
    BlockBackend *blk = open_bd(
        "\"inject-error\": [{\"event\": \"read_aio\", \"iotype\": \"write\", "
        "\"errno\": 28, \"once\": true}]");

    g_assert_cmpint(do_read(blk, 0, 512), ==, 0);
    g_assert_cmpint(do_write(blk, 0, 512), ==, -ENOSPC);
    g_assert_cmpint(do_write(blk, 0, 512), ==, 0);
    g_assert_cmpint(do_read(blk, 0, 512), ==, 0);
    g_assert_cmpint(do_write(blk, 0, 512), ==, 0);
    blk_unref(blk);
}

static void test_blkdebug_sector(void)
{
    BlockBackend *blk = open_bd(
        "\"inject-error\": [{\"event\": \"read_aio\", \"sector\": 8}]");

    g_assert_cmpint(do_read(blk, 0, 4 * KiB), ==, 0);
    g_assert_cmpint(do_read(blk, 8 * KiB, 512), ==, 0);
    g_assert_cmpint(do_read(blk, 4 * KiB, 512), ==, -EIO);
    g_assert_cmpint(do_read(blk, 2 * KiB, 4 * KiB), ==, -EIO);
    blk_unref(blk);
}

static void test_blkdebug_set_state(void)
{
    BlockBackend *blk = open_bd(
        "\"inject-error\": [{\"event\": \"read_aio\", \"state\": 2}], "
        "\"set-state\": [{\"event\": \"write_aio\", \"new_state\": 2}]");

    g_assert_cmpint(do_read(blk, 0, 512), ==, 0);
    g_assert_cmpint(do_write(blk, 0, 512), ==, 0);
    g_assert_cmpint(do_read(blk, 0, 512), ==, -EIO);
    blk_unref(blk);
}

static void test_blkdebug_none_immediately(void)
{
    BlockBackend *blk = open_bd(
        "\"inject-error\": [{\"event\": \"none\", \"immediately\": true, "
        "\"iotype\": \"write\"}, {\"event\": \"read_aio\", \"iotype\": "
        "\"read\", \"once\": true}]");

    g_assert_cmpint(do_write(blk, 0, 512), ==, -EIO);
    g_assert_cmpint(do_read(blk, 0, 512), ==, -EIO);
    /* the read_aio event replaced the armed set */
    g_assert_cmpint(do_write(blk, 0, 512), ==, 0);
    g_assert_cmpint(do_read(blk, 0, 512), ==, 0);
    blk_unref(blk);
}

static void test_blkdebug_config_file(void)
{
    static const char cfg[] =
        "# test\n[inject-error]\nevent = \"read_aio\"\nerrno = \"28\"\n\n"
        "[set-state]\nevent = \"write_aio\"\nnew_state = \"2\"\n";
    g_autofree char *path = make_temp_file(cfg, strlen(cfg));
    g_autofree char *opts = g_strdup_printf("\"config\": \"%s\"", path);
    BlockBackend *blk = open_bd(opts);

    g_assert_cmpint(do_read(blk, 0, 512), ==, -ENOSPC);
    blk_unref(blk);
    unlink(path);
}

static void test_blkdebug_bad_options(void)
{
    bd_fails("\"inject-error\": [{\"event\": \"nosuch\"}]",
             "invalid parameter value: nosuch");
    bd_fails("\"inject-error\": [{\"event\": \"read_aio\", \"bogus\": 1}]",
             "[inject-error] section doesn't support the option 'bogus'");
    bd_fails("\"inject-error\": [{\"event\": \"read_aio\", "
             "\"iotype\": [\"read\"]}]",
             "[inject-error] section doesn't support the option 'iotype.0'");
    bd_fails("\"inject-error\": [{\"iotype\": \"read\"}]",
             "Missing event name for rule");
    bd_fails("\"inject-error\": [{\"event\": \"read_aio\", \"errno\": \"x\"}]",
             "Parameter 'errno' expects a number");
    bd_fails("\"align\": 3", "Cannot meet constraints with align 3");
    bd_fails("\"align\": 512, \"max-transfer\": 1000",
             "Cannot meet constraints with max-transfer 1000");
    bd_fails("\"config\": \"/nonexistent/x.ini\"",
             "Could not read blkdebug config file: No such file or directory");
}

typedef struct BgRead {
    BlockBackend *blk;
    bool done;
    int ret;
} BgRead;

static void coroutine_fn bg_read_entry(void *opaque)
{
    BgRead *r = opaque;
    uint8_t buf[512];

    r->ret = blk_co_pread(r->blk, 0, 512, buf, 0);
    r->done = true;
}

static void blkdebug_breakpoint_run(void)
{
    BlockBackend *blk = open_bd("");
    BlockDriverState *bs = blk_bs(blk);
    BgRead r = { .blk = blk };

    g_assert_cmpint(bdrv_debug_breakpoint(bs, "nosuch", "A"), ==, -ENOENT);
    g_assert_cmpint(bdrv_debug_resume(bs, "A"), ==, -ENOENT);
    g_assert_cmpint(bdrv_debug_remove_breakpoint(bs, "A"), ==, -ENOENT);
    g_assert_cmpint(bdrv_debug_breakpoint(bs, "read_aio", "A"), ==, 0);
    co_enter(co_create(bg_read_entry, &r));
    for (int i = 0; i < 10; i++) {
        aio_poll(aio_get_default(), false);
    }
    g_assert(!r.done);
    g_assert(bdrv_debug_is_suspended(bs, "A"));
    g_assert_cmpint(bdrv_debug_resume(bs, "A"), ==, 0);
    AIO_WAIT_WHILE(aio_get_default(), !r.done);
    g_assert_cmpint(r.ret, ==, 0);
    g_assert(!bdrv_debug_is_suspended(bs, "A"));
    /* one-shot: the next read is not suspended */
    g_assert_cmpint(do_read(blk, 0, 512), ==, 0);
    g_assert_cmpint(bdrv_debug_breakpoint(bs, "write_aio", "B"), ==, 0);
    g_assert_cmpint(bdrv_debug_remove_breakpoint(bs, "B"), ==, 0);
    g_assert_cmpint(do_write(blk, 0, 512), ==, 0);
    blk_unref(blk);
}

/* Suspending and resuming print the reference's lines on stdout: run in a
 * subprocess, so they are checked instead of mixed into the TAP stream. */
static void test_blkdebug_breakpoint(void)
{
    if (g_test_subprocess()) {
        blkdebug_breakpoint_run();
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_passed();
    g_test_trap_assert_stdout("blkdebug: Suspended request 'A'\n"
                              "blkdebug: Resuming request 'A'\n");
    g_test_trap_assert_stderr("");
}

static void test_blkdebug_delay(void)
{
    BlockBackend *blk = open_bd(
        "\"inject-delay\": [{\"event\": \"none\", \"iotype\": \"read\", "
        "\"delay-ns\": 200000000}, {\"event\": \"write_aio\", "
        "\"delay-ns\": 150000000, \"once\": true}]");
    int64_t t0 = clock_ns();

    g_assert_cmpint(do_read(blk, 0, 512), ==, 0);
    g_assert_cmpfloat(seconds_since(t0), >=, 0.2);
    t0 = clock_ns();
    g_assert_cmpint(do_write(blk, 0, 512), ==, 0);
    g_assert_cmpfloat(seconds_since(t0), >=, 0.15);
    t0 = clock_ns();
    g_assert_cmpint(do_write(blk, 0, 512), ==, 0);
    g_assert_cmpfloat(seconds_since(t0), <, 0.15);
    blk_unref(blk);
}

static void test_blkdebug_limits(void)
{
    BlockBackend *blk = open_bd("\"align\": 4096, \"max-transfer\": 65536, "
                                "\"opt-discard\": 8192");
    BlockDriverState *bs = blk_bs(blk)->file->bs;

    g_assert_cmpint(bs->bl.request_alignment, ==, 4096);
    g_assert_cmpint(bs->bl.max_transfer, ==, 65536);
    g_assert_cmpint(bs->bl.pdiscard_alignment, ==, 8192);
    g_assert_cmpint(do_read(blk, 1, 512), ==, 0);
    blk_unref(blk);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    bdrv_init();
    bdrv_register(&bdrv_evtop);
    g_test_add_func("/filters/throttle/bps", test_throttle_bps);
    g_test_add_func("/filters/throttle/iops", test_throttle_iops);
    g_test_add_func("/filters/throttle/shared-group",
                    test_throttle_shared_group);
    g_test_add_func("/filters/throttle/drain", test_throttle_drain);
    g_test_add_func("/filters/throttle/bad-config", test_throttle_bad_config);
    g_test_add_func("/filters/preallocate/grow-and-trim",
                    test_prealloc_grow_and_trim);
    g_test_add_func("/filters/preallocate/truncate", test_prealloc_truncate);
    g_test_add_func("/filters/preallocate/bad-align", test_prealloc_bad_align);
    g_test_add_func("/filters/blkdebug/event-rule", test_blkdebug_event_rule);
    g_test_add_func("/filters/blkdebug/iotype-once", test_blkdebug_iotype_once);
    g_test_add_func("/filters/blkdebug/sector", test_blkdebug_sector);
    g_test_add_func("/filters/blkdebug/set-state", test_blkdebug_set_state);
    g_test_add_func("/filters/blkdebug/none-immediately",
                    test_blkdebug_none_immediately);
    g_test_add_func("/filters/blkdebug/config-file", test_blkdebug_config_file);
    g_test_add_func("/filters/blkdebug/bad-options", test_blkdebug_bad_options);
    g_test_add_func("/filters/blkdebug/breakpoint", test_blkdebug_breakpoint);
    g_test_add_func("/filters/blkdebug/delay", test_blkdebug_delay);
    g_test_add_func("/filters/blkdebug/limits", test_blkdebug_limits);
    return g_test_run();
}
