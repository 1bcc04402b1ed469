#include "config.h"
/*
 * Backing files and copy-on-read, through a tiny test-only format "tbk"
 * over real files (the core resolves names against directories and locks
 * files, so the images are files in a temporary directory).
 *
 * tbk image layout:
 *   [0, 8)      magic "TBKIMG01"
 *   [8, 16)     virtual size, little endian
 *   [16, 216)   backing file name, NUL-terminated ("" = none)
 *   [216, 248)  backing format, NUL-terminated ("" = none recorded)
 *   [512, ...)  one byte per 4 KiB cluster: 1 = allocated in this image
 *   [4096 + guest offset]  the data of allocated clusters
 * Unallocated clusters read from bs->backing (zeroes past its end, or
 * without one).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>
#include "block/driver.h"
#include "util/cutils.h"

#define TBK_CLUSTER   4096
#define TBK_MAP       512
#define TBK_DATA      4096
#define TBK_MAX_SIZE  (1 << 20)
#define TBK_NAME_LEN  200
#define TBK_FMT_LEN   32

typedef struct TbkState {
    int64_t size;
    uint8_t map[TBK_MAX_SIZE / TBK_CLUSTER];
} TbkState;

static const char tbk_magic[8] = "TBKIMG01";

/* Calls of the driver's block status (the chain-walk cost test). */
static unsigned tbk_status_calls;

/* ---- the driver ---- */

static int tbk_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    return buf_size >= 8 && !memcmp(buf, tbk_magic, 8) ? 100 : 0;
}

typedef struct TbkHeaderRead {
    BlockDriverState *bs;
    uint8_t *buf;
    int ret;
} TbkHeaderRead;

static void coroutine_fn tbk_read_header_entry(void *opaque)
{
    TbkHeaderRead *h = opaque;
    IOVector v;

    iov_vec_init_buf(&v, h->buf, TBK_DATA);
    h->ret = bdrv_co_preadv(h->bs->file, 0, TBK_DATA, &v, 0);
    iov_vec_destroy(&v);
}

/* Header fields into the node: size, map, backing name and format. */
static int tbk_parse(BlockDriverState *bs, const uint8_t *buf, Error **errp)
{
    TbkState *s = bs->opaque;
    char name[TBK_NAME_LEN + 1] = "", fmt[TBK_FMT_LEN + 1] = "";

    if (memcmp(buf, tbk_magic, 8)) {
        error_setg(errp, "Image is not in tbk format");
        return -EINVAL;
    }
    memcpy(&s->size, buf + 8, 8);
    s->size = GINT64_FROM_LE(s->size);
    if (s->size < 0 || s->size > TBK_MAX_SIZE) {
        error_setg(errp, "bad tbk size");
        return -EINVAL;
    }
    memcpy(s->map, buf + TBK_MAP, sizeof(s->map));
    memcpy(name, buf + 16, TBK_NAME_LEN);
    memcpy(fmt, buf + 16 + TBK_NAME_LEN, TBK_FMT_LEN);
    bs->backing_file = *name ? g_strdup(name) : NULL;
    bs->backing_format = *fmt ? g_strdup(fmt) : NULL;
    return 0;
}

static int tbk_open(BlockDriverState *bs, QDict *opts, int flags,
                    Error **errp)
{
    g_autofree uint8_t *buf = g_malloc0(TBK_DATA);
    TbkHeaderRead h = { .bs = bs, .buf = buf };

    if (!bdrv_open_child(NULL, opts, "file", bs,
                         BDRV_CHILD_DATA | BDRV_CHILD_METADATA |
                         BDRV_CHILD_PRIMARY, false, errp)) {
        return -EINVAL;
    }
    co_run_sync(tbk_read_header_entry, &h);
    if (h.ret < 0) {
        error_setg_errno(errp, -h.ret, "Could not read tbk header");
        return h.ret;
    }
    return tbk_parse(bs, buf, errp);
}

/* Unallocated data: the backing file's, zeroes past its end. */
static int coroutine_fn tbk_read_below(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, IOVector *qiov,
                                       size_t qoff)
{
    int64_t blen = bs->backing ? bdrv_co_getlength(bs->backing->bs) : 0;
    int64_t n = MAX(0, MIN(bytes, blen - offset));
    IOVector slice;
    int ret = 0;

    if (n > 0) {
        iov_vec_init_slice(&slice, qiov, qoff, n);
        ret = bdrv_co_preadv(bs->backing, offset, n, &slice, 0);
        iov_vec_destroy(&slice);
    }
    if (ret == 0 && n < bytes) {
        iov_vec_memset(qiov, qoff + n, 0, bytes - n);
    }
    return ret;
}

static int coroutine_fn tbk_preadv(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, IOVector *qiov,
                                   BdrvRequestFlags flags)
{
    TbkState *s = bs->opaque;
    int64_t done = 0;

    while (done < bytes) {
        int64_t off = offset + done;
        int64_t n = MIN(bytes - done, TBK_CLUSTER - off % TBK_CLUSTER);
        IOVector slice;
        int ret;

        if (s->map[off / TBK_CLUSTER]) {
            iov_vec_init_slice(&slice, qiov, done, n);
            ret = bdrv_co_preadv(bs->file, TBK_DATA + off, n, &slice, 0);
            iov_vec_destroy(&slice);
        } else {
            ret = tbk_read_below(bs, off, n, qiov, done);
        }
        if (ret < 0) {
            return ret;
        }
        done += n;
    }
    return 0;
}

/* Whole clusters only (the core pads to bl.request_alignment). */
static int coroutine_fn tbk_pwritev(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes, IOVector *qiov,
                                    BdrvRequestFlags flags)
{
    TbkState *s = bs->opaque;
    int64_t first = offset / TBK_CLUSTER, count = bytes / TBK_CLUSTER;
    IOVector v;
    int ret;

    ret = bdrv_co_pwritev(bs->file, TBK_DATA + offset, bytes, qiov, 0);
    if (ret < 0) {
        return ret;
    }
    memset(s->map + first, 1, count);
    iov_vec_init_buf(&v, s->map + first, count);
    ret = bdrv_co_pwritev(bs->file, TBK_MAP + first, count, &v, 0);
    iov_vec_destroy(&v);
    return ret;
}

static int coroutine_fn tbk_block_status(BlockDriverState *bs, bool want_zero,
                                         int64_t offset, int64_t bytes,
                                         int64_t *pnum, int64_t *map,
                                         BlockDriverState **file)
{
    TbkState *s = bs->opaque;
    uint8_t a = s->map[offset / TBK_CLUSTER];
    int64_t end = offset;

    tbk_status_calls++;
    while (end < offset + bytes && s->map[end / TBK_CLUSTER] == a) {
        end = ROUND_DOWN(end, TBK_CLUSTER) + TBK_CLUSTER;
    }
    *pnum = MIN(end, offset + bytes) - offset;
    if (!a) {
        return 0;
    }
    *map = TBK_DATA + offset;
    *file = bs->file->bs;
    return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
}

static int64_t coroutine_fn tbk_getlength(BlockDriverState *bs)
{
    return ((TbkState *)bs->opaque)->size;
}

static void tbk_refresh_limits(BlockDriverState *bs, Error **errp)
{
    bs->bl.request_alignment = TBK_CLUSTER;
}

static int tbk_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    bdi->cluster_size = TBK_CLUSTER;
    return 0;
}

static const BlockDriverInfoOps tbk_info_ops = {
    .get_info = tbk_get_info,
};

typedef struct TbkHeaderWrite {
    BlockDriverState *bs;
    uint8_t buf[TBK_NAME_LEN + TBK_FMT_LEN];
    int ret;
} TbkHeaderWrite;

static void coroutine_fn tbk_write_names_entry(void *opaque)
{
    TbkHeaderWrite *h = opaque;
    IOVector v;

    iov_vec_init_buf(&v, h->buf, sizeof(h->buf));
    h->ret = bdrv_co_pwritev(h->bs->file, 16, sizeof(h->buf), &v, 0);
    iov_vec_destroy(&v);
}

static int tbk_change_backing_file(BlockDriverState *bs, const char *file,
                                   const char *fmt)
{
    TbkHeaderWrite h = { .bs = bs };

    if ((file && strlen(file) > TBK_NAME_LEN) ||
        (fmt && strlen(fmt) > TBK_FMT_LEN)) {
        return -EINVAL;
    }
    if (file) {
        memcpy(h.buf, file, strlen(file));
    }
    if (fmt) {
        memcpy(h.buf + TBK_NAME_LEN, fmt, strlen(fmt));
    }
    co_run_sync(tbk_write_names_entry, &h);
    return h.ret;
}

static const BlockDriverBackingOps tbk_backing_ops = {
    .change_backing_file = tbk_change_backing_file,
};

static const BlockDriverIO tbk_io = {
    .co_preadv = tbk_preadv,
    .co_pwritev = tbk_pwritev,
    .co_block_status = tbk_block_status,
    .co_getlength = tbk_getlength,
};

static const BlockDriver bdrv_tbk = {
    .format_name = "tbk",
    .kind = BDRV_KIND_FORMAT,
    .instance_size = sizeof(TbkState),
    .supports_backing = true,
    .probe = tbk_probe,
    .open = tbk_open,
    .refresh_limits = tbk_refresh_limits,
    .io = &tbk_io,
    .info = &tbk_info_ops,
    .backing = &tbk_backing_ops,
};

/* ---- fixtures ---- */

static char *tmpdir;

/* A tbk image @path (relative to the test directory) of @size bytes
 * recording @backing/@fmt, with the clusters in @alloc (a string of
 * '0'/'1' per cluster) allocated and filled with @pattern. */
static void make_image(const char *path, int64_t size, const char *backing,
                       const char *fmt, const char *alloc, uint8_t pattern)
{
    g_autofree uint8_t *img = g_malloc0(TBK_DATA + size);
    int64_t le = GINT64_TO_LE(size);

    memcpy(img, tbk_magic, 8);
    memcpy(img + 8, &le, 8);
    if (backing) {
        strncpy((char *)img + 16, backing, TBK_NAME_LEN);
    }
    if (fmt) {
        strncpy((char *)img + 16 + TBK_NAME_LEN, fmt, TBK_FMT_LEN);
    }
    for (int i = 0; alloc && alloc[i]; i++) {
        if (alloc[i] == '1') {
            img[TBK_MAP + i] = 1;
            memset(img + TBK_DATA + i * TBK_CLUSTER, pattern, TBK_CLUSTER);
        }
    }
    g_assert(g_file_set_contents(path, (char *)img, TBK_DATA + size, NULL));
}

static BlockBackend *open_img(const char *name, QDict *opts, int flags,
                              Error **errp)
{
    return blk_new_open(name, NULL, opts, flags, errp);
}

/* Opening must fail with exactly @msg. */
static void assert_open_error(const char *name, QDict *opts, int flags,
                              const char *msg)
{
    Error *err = NULL;
    BlockBackend *blk = open_img(name, opts, flags, &err);

    g_assert_null(blk);
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, msg);
    error_free(err);
}

static uint8_t read_byte(BlockBackend *blk, int64_t offset)
{
    uint8_t b = 0xee;

    g_assert_cmpint(blk_pread(blk, offset, 1, &b, 0), ==, 0);
    return b;
}

/* ---- tests: opening ---- */

static void test_relative_to_overlay_dir(void)
{
    BlockBackend *blk;
    BlockDriverState *top;
    g_autofree char *full = NULL;

    g_mkdir("rel", 0755);
    make_image("rel/base.tbk", 64 * 1024, NULL, NULL, "11", 0xbb);
    make_image("rel/top.tbk", 64 * 1024, "base.tbk", "tbk", "01", 0x77);
    blk = open_img("rel/top.tbk", NULL, 0, &error_abort);
    top = blk_bs(blk);
    g_assert_cmpstr(bdrv_get_backing_filename(top), ==, "base.tbk");
    g_assert_cmpstr(bdrv_get_backing_format(top), ==, "tbk");
    full = bdrv_get_full_backing_filename(top, &error_abort);
    g_assert_cmpstr(full, ==, "rel/base.tbk");
    g_assert_nonnull(bdrv_backing_bs(top));
    g_assert_cmpstr(bdrv_get_filename(bdrv_backing_bs(top)), ==,
                    "rel/base.tbk");
    /* an implicitly opened backing file leaves the plain name alone */
    g_assert_cmpstr(bdrv_get_filename(top), ==, "rel/top.tbk");
    g_assert_cmpint(read_byte(blk, 0), ==, 0xbb);
    g_assert_cmpint(read_byte(blk, 4096), ==, 0x77);
    g_assert_cmpint(read_byte(blk, 8192), ==, 0);   /* base unallocated */
    blk_unref(blk);
}

static void test_absolute_and_protocol_names(void)
{
    g_autofree char *abs = g_build_filename(tmpdir, "abs-base.tbk", NULL);
    BlockBackend *blk;
    g_autofree char *full = NULL;

    make_image("abs-base.tbk", 8192, NULL, NULL, "1", 0x31);
    make_image("abs-top.tbk", 8192, abs, "tbk", "", 0);
    blk = open_img("abs-top.tbk", NULL, 0, &error_abort);
    full = bdrv_get_full_backing_filename(blk_bs(blk), &error_abort);
    g_assert_cmpstr(full, ==, abs);
    g_assert_cmpint(read_byte(blk, 0), ==, 0x31);
    blk_unref(blk);

    /* "file:" names are taken as they are, not relative to anything */
    g_mkdir("proto", 0755);
    make_image("proto/top.tbk", 8192, "file:abs-base.tbk", "tbk", "", 0);
    blk = open_img("proto/top.tbk", NULL, 0, &error_abort);
    g_clear_pointer(&full, g_free);
    full = bdrv_get_full_backing_filename(blk_bs(blk), &error_abort);
    g_assert_cmpstr(full, ==, "file:abs-base.tbk");
    g_assert_cmpint(read_byte(blk, 0), ==, 0x31);
    blk_unref(blk);
}

/* A name given for an image (create -b, rebase -b): protocol and json:
 * names as they are, relative ones in the image's directory, none
 * relative to an image named by json:. */
static void test_combine_backing_name(void)
{
    static const char *const cases[][3] = {
        { "d/top.qcow2", "base.qcow2", "d/base.qcow2" },
        { "top.qcow2", "base.qcow2", "base.qcow2" },
        { "/a/b/top", "../base", "/a/b/../base" },
        { "d/top", "/abs/base", "/abs/base" },
        { "d/top", "json:{\"driver\": \"file\"}",
          "json:{\"driver\": \"file\"}" },
        { "d/top", "nbd://host/x", "nbd://host/x" },
        { "file:d/top", "base", "file:d/base" },
        { "file:top", "base", "file:base" },
        { "d:x/top", "base", "d:x/base" },
        { "d/top", "", "" },
    };
    Error *err = NULL;
    char *name;

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        name = bdrv_combine_backing_name(cases[i][0], cases[i][1],
                                         &error_abort);
        g_assert_cmpstr(name, ==, cases[i][2]);
        g_free(name);
    }
    name = bdrv_combine_backing_name("json:{\"driver\": \"qcow2\"}", "b",
                                     &err);
    g_assert_null(name);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Cannot use relative backing file names for "
                    "'json:{\"driver\": \"qcow2\"}'");
    error_free(err);
    name = bdrv_combine_backing_name("json:{}", "/abs", &error_abort);
    g_assert_cmpstr(name, ==, "/abs");
    g_free(name);
}

static void test_format_probed_when_not_recorded(void)
{
    BlockBackend *blk;

    make_image("probe-base.tbk", 8192, NULL, NULL, "1", 0x42);
    make_image("probe-top.tbk", 8192, "probe-base.tbk", NULL, "", 0);
    blk = open_img("probe-top.tbk", NULL, 0, &error_abort);
    g_assert_null(bdrv_get_backing_format(blk_bs(blk)));
    g_assert_cmpstr(bdrv_get_format_name(bdrv_backing_bs(blk_bs(blk))), ==,
                    "tbk");
    g_assert_cmpint(read_byte(blk, 0), ==, 0x42);
    blk_unref(blk);
}

static void test_no_backing(void)
{
    BlockBackend *blk;
    QDict *opts;

    make_image("nb-base.tbk", 8192, NULL, NULL, "1", 0x42);
    make_image("nb-top.tbk", 8192, "nb-base.tbk", "tbk", "", 0);
    blk = open_img("nb-top.tbk", NULL, BDRV_O_NO_BACKING, &error_abort);
    g_assert_null(bdrv_backing_bs(blk_bs(blk)));
    /* the recorded name is still there for info */
    g_assert_cmpstr(bdrv_get_backing_filename(blk_bs(blk)), ==,
                    "nb-base.tbk");
    g_assert_cmpint(read_byte(blk, 0), ==, 0);
    blk_unref(blk);

    /* "backing": null: no backing file, and the name says so */
    blk = open_img("json:{\"driver\": \"tbk\", \"backing\": null, "
                   "\"file\": {\"driver\": \"file\", "
                   "\"filename\": \"nb-top.tbk\"}}", NULL, 0, &error_abort);
    g_assert_null(bdrv_backing_bs(blk_bs(blk)));
    g_assert_cmpint(read_byte(blk, 0), ==, 0);
    g_assert_cmpstr(bdrv_get_filename(blk_bs(blk)), ==,
                    "json:{\"backing\": null, \"driver\": \"tbk\", \"file\": "
                    "{\"driver\": \"file\", \"filename\": \"nb-top.tbk\"}}");
    blk_unref(blk);

    /* the same under BDRV_O_NO_IO (qemu-img info): not overridden */
    opts = qdict_new();
    qdict_put_obj(opts, "backing", QOBJECT(qnull()));
    blk = open_img("nb-top.tbk", opts, BDRV_O_NO_IO, &error_abort);
    g_assert_cmpstr(bdrv_get_filename(blk_bs(blk)), ==, "nb-top.tbk");
    blk_unref(blk);
}

static void test_backing_options_and_reference(void)
{
    BlockBackend *blk, *base;
    QDict *opts = qdict_new();
    g_autofree char *name = NULL;

    make_image("opt-base.tbk", 8192, NULL, NULL, "1", 0x11);
    make_image("opt-other.tbk", 8192, NULL, NULL, "1", 0x22);
    make_image("opt-top.tbk", 8192, "opt-base.tbk", "tbk", "", 0);
    qdict_put_str(opts, "driver", "tbk");
    qdict_put_str(opts, "file.filename", "opt-top.tbk");
    qdict_put_str(opts, "backing.file.filename", "opt-other.tbk");
    blk = open_img(NULL, opts, 0, &error_abort);
    g_assert_cmpint(read_byte(blk, 0), ==, 0x22);
    name = g_strdup(bdrv_get_filename(blk_bs(blk)));
    g_assert_true(g_str_has_prefix(name, "json:{"));
    g_assert_nonnull(strstr(name, "\"backing\": {\"driver\": \"tbk\", "
                                  "\"file\": {\"driver\": \"file\", "
                                  "\"filename\": \"opt-other.tbk\"}}"));
    blk_unref(blk);

    /* "backing": "<node-name>" takes an existing node */
    opts = qdict_new();
    qdict_put_str(opts, "node-name", "other");
    base = open_img("opt-other.tbk", opts, 0, &error_abort);
    opts = qdict_new();
    qdict_put_str(opts, "backing", "other");
    blk = open_img("opt-top.tbk", opts, 0, &error_abort);
    g_assert_true(bdrv_backing_bs(blk_bs(blk)) == blk_bs(base));
    g_assert_cmpint(read_byte(blk, 0), ==, 0x22);
    blk_unref(blk);
    blk_unref(base);

    opts = qdict_new();
    qdict_put_str(opts, "backing", "nosuchnode");
    assert_open_error("opt-top.tbk", opts, 0, "Could not open backing file: "
                      "Cannot find device='nosuchnode' nor "
                      "node-name='nosuchnode'");
}

static void test_open_errors(void)
{
    QDict *opts;

    make_image("err-missing.tbk", 8192, "gone.tbk", "tbk", "", 0);
    assert_open_error("err-missing.tbk", NULL, 0,
                      "Could not open backing file: Could not open "
                      "'gone.tbk': No such file or directory");
    make_image("err-fmt.tbk", 8192, "err-missing.tbk", "nosuchfmt", "", 0);
    assert_open_error("err-fmt.tbk", NULL, 0, "Could not open backing file: "
                      "Unknown driver 'nosuchfmt'");
    /* nothing opened: the leftover option is refused */
    opts = qdict_new();
    qdict_put_str(opts, "backing.file.filename", "gone.tbk");
    assert_open_error("err-missing.tbk", opts, BDRV_O_NO_BACKING,
                      "Block format 'tbk' does not support the option "
                      "'backing.file.filename'");
    /* raw has no backing files */
    g_assert(g_file_set_contents("err.raw", "abc", 3, NULL));
    opts = qdict_new();
    qdict_put_str(opts, "driver", "raw");
    qdict_put_str(opts, "backing.file.filename", "gone.tbk");
    assert_open_error("err.raw", opts, 0,
                      "Driver doesn't support backing files");
}

static void test_loops(void)
{
    make_image("self.tbk", 8192, "self.tbk", "tbk", "", 0);
    assert_open_error("self.tbk", NULL, 0, "Could not open backing file: "
                      "Backing file 'self.tbk' creates an infinite loop.");
    /* writable: the backing file's lock conflicts first, as the
     * reference's */
    assert_open_error("self.tbk", NULL, BDRV_O_RDWR,
                      "Could not open backing file: Failed to get shared "
                      "\"write\" lock");
    make_image("cyc-a.tbk", 8192, "cyc-b.tbk", "tbk", "", 0);
    make_image("cyc-b.tbk", 8192, "./cyc-a.tbk", "tbk", "", 0);
    assert_open_error("cyc-a.tbk", NULL, 0, "Could not open backing file: "
                      "Could not open backing file: Backing file "
                      "'./cyc-a.tbk' creates an infinite loop.");
}

static void test_backing_perms(void)
{
    BlockBackend *blk;
    BlockDriverState *bfile;

    make_image("perm-base.tbk", 8192, NULL, NULL, "1", 1);
    make_image("perm-top.tbk", 8192, "perm-base.tbk", "tbk", "", 0);
    blk = open_img("perm-top.tbk", NULL, BDRV_O_RDWR, &error_abort);
    g_assert_true(bdrv_is_read_only(bdrv_backing_bs(blk_bs(blk))));
    bfile = bdrv_file_bs(bdrv_backing_bs(blk_bs(blk)));
    /* lock bytes 100, 201, 203 as the reference's qemu-io takes */
    g_assert_cmpint(bfile->perm, ==, BLK_PERM_CONSISTENT_READ);
    g_assert_cmpint(bfile->shared_perm & (BLK_PERM_WRITE | BLK_PERM_RESIZE),
                    ==, 0);
    g_assert_cmpint(bfile->shared_perm & BLK_PERM_CONSISTENT_READ, !=, 0);
    blk_unref(blk);
}

/* ---- tests: the chain's data ---- */

static void test_chain_status_and_short_backing(void)
{
    BlockBackend *blk;
    int64_t pnum;
    int depth, ret;

    /* base 8 KiB: cluster 0 data; mid 16 KiB: cluster 1; top 32 KiB */
    make_image("ch-base.tbk", 8192, NULL, NULL, "1", 0xaa);
    make_image("ch-mid.tbk", 16384, "ch-base.tbk", "tbk", "01", 0xbb);
    make_image("ch-top.tbk", 32768, "ch-mid.tbk", "tbk", "0001", 0xcc);
    blk = open_img("ch-top.tbk", NULL, 0, &error_abort);
    ret = blk_block_status(blk, true, 0, 32768, &pnum, NULL, NULL, &depth);
    g_assert_cmpint(ret & BDRV_BLOCK_DATA, !=, 0);
    g_assert_cmpint(pnum, ==, 4096);
    g_assert_cmpint(depth, ==, 3);
    ret = blk_block_status(blk, true, 4096, 32768, &pnum, NULL, NULL, &depth);
    g_assert_cmpint(depth, ==, 2);
    /* past mid's end: zeroes */
    ret = blk_block_status(blk, true, 16384, 8192, &pnum, NULL, NULL, &depth);
    g_assert_cmpint(ret & BDRV_BLOCK_ZERO, !=, 0);
    g_assert_cmpint(pnum, ==, 8192);
    ret = blk_block_status(blk, true, 12288, 4096, &pnum, NULL, NULL, &depth);
    g_assert_cmpint(ret & BDRV_BLOCK_DATA, !=, 0);
    g_assert_cmpint(depth, ==, 1);
    g_assert_cmpint(read_byte(blk, 0), ==, 0xaa);
    g_assert_cmpint(read_byte(blk, 4096), ==, 0xbb);
    g_assert_cmpint(read_byte(blk, 8192), ==, 0);     /* base ends */
    g_assert_cmpint(read_byte(blk, 12288), ==, 0xcc);
    g_assert_cmpint(read_byte(blk, 20000), ==, 0);    /* mid ends */
    blk_unref(blk);
}

/* Walk [0, len) of @blk merged over its chain: the depth of each
 * cluster (0: unallocated everywhere) into @depths. */
static void walk_depths(BlockBackend *blk, int64_t len, int *depths)
{
    for (int64_t off = 0; off < len;) {
        int64_t pnum;
        int depth;
        int ret = blk_block_status(blk, true, off, len - off, &pnum, NULL,
                                   NULL, &depth);

        g_assert_cmpint(ret, >=, 0);
        g_assert_cmpint(pnum, >, 0);
        for (int64_t c = off / TBK_CLUSTER; c * TBK_CLUSTER < off + pnum; c++) {
            depths[c] = depth;
        }
        off += pnum;
    }
}

/* A chain of CHAIN_LAYERS layers, layer i (0 = base) allocating cluster
 * i: walking it costs each layer's driver a few calls (its own extents),
 * not one per extent of the layers above (quadratic).  Writes to the top
 * and an explicit invalidation are seen by the next walk. */
#define CHAIN_LAYERS 100
static void test_deep_chain_status_cost(void)
{
    int64_t len = CHAIN_LAYERS * TBK_CLUSTER;
    int depths[CHAIN_LAYERS];
    BlockBackend *blk;
    uint8_t buf[TBK_CLUSTER];

    for (int i = 0; i < CHAIN_LAYERS; i++) {
        g_autofree char *name = g_strdup_printf("deep%03d.tbk", i);
        g_autofree char *back = g_strdup_printf("deep%03d.tbk", i - 1);
        g_autofree char *alloc = g_strnfill(i + 1, '0');

        alloc[i] = '1';
        make_image(name, len, i ? back : NULL, i ? "tbk" : NULL, alloc,
                   0x10 + i);
    }
    blk = open_img("deep099.tbk", NULL, BDRV_O_RDWR, &error_abort);
    tbk_status_calls = 0;
    walk_depths(blk, len, depths);
    for (int i = 0; i < CHAIN_LAYERS; i++) {
        g_assert_cmpint(depths[i], ==, CHAIN_LAYERS - i);
    }
    /* each layer: unallocated / its cluster / unallocated */
    g_assert_cmpint(tbk_status_calls, <=, 3 * CHAIN_LAYERS);
    g_assert_cmpint(read_byte(blk, 5 * TBK_CLUSTER), ==, 0x15);

    memset(buf, 0x77, sizeof(buf));
    g_assert_cmpint(blk_pwrite(blk, 5 * TBK_CLUSTER, TBK_CLUSTER, buf, 0),
                    ==, 0);
    walk_depths(blk, len, depths);
    g_assert_cmpint(depths[5], ==, 1);
    g_assert_cmpint(depths[6], ==, CHAIN_LAYERS - 6);

    /* a mapping changed behind the core's back: the driver says so */
    ((TbkState *)blk_bs(blk)->opaque)->map[7] = 1;
    bdrv_bsc_invalidate(blk_bs(blk));
    walk_depths(blk, len, depths);
    g_assert_cmpint(depths[7], ==, 1);
    blk_unref(blk);
}

static void test_change_backing_file(void)
{
    BlockBackend *blk;
    Error *err = NULL;
    QDict *opts;

    make_image("chg-a.tbk", 8192, NULL, NULL, "1", 0xa1);
    make_image("chg-b.tbk", 8192, NULL, NULL, "1", 0xb2);
    make_image("chg-top.tbk", 8192, "chg-a.tbk", "tbk", "", 0);
    blk = open_img("chg-top.tbk", NULL, BDRV_O_RDWR | BDRV_O_NO_BACKING,
                   &error_abort);
    g_assert_cmpint(bdrv_change_backing_file(blk_bs(blk), "chg-b.tbk", NULL,
                                             &error_abort), ==, 0);
    g_assert_cmpstr(bdrv_get_backing_filename(blk_bs(blk)), ==, "chg-b.tbk");
    g_assert_null(bdrv_get_backing_format(blk_bs(blk)));
    blk_unref(blk);
    blk = open_img("chg-top.tbk", NULL, 0, &error_abort);
    g_assert_cmpint(read_byte(blk, 0), ==, 0xb2);
    blk_unref(blk);

    /* a format without the operation */
    g_assert(g_file_set_contents("chg.raw", "abc", 3, NULL));
    opts = qdict_new();
    qdict_put_str(opts, "driver", "raw");
    blk = open_img("chg.raw", opts, BDRV_O_RDWR, NULL);
    g_assert_nonnull(blk);
    g_assert_cmpint(bdrv_change_backing_file(blk_bs(blk), "x", "raw", &err),
                    ==, -ENOTSUP);
    g_assert_cmpstr(error_get_pretty(err), ==, "Could not change the backing "
                    "file to 'x': Operation not supported");
    error_free(err);
    blk_unref(blk);
}

/* ---- tests: copy-on-read ---- */

static bool top_allocated(BlockBackend *blk, int64_t offset)
{
    int64_t pnum;

    return blk_is_allocated(blk, offset, 1, &pnum) == 1;
}

static void test_copy_on_read_flag(void)
{
    BlockBackend *blk;
    uint8_t buf[100];

    make_image("cor-base.tbk", 12288, NULL, NULL, "111", 0x5c);
    make_image("cor-top.tbk", 16384, "cor-base.tbk", "tbk", "1", 0x11);
    blk = open_img("cor-top.tbk", NULL, BDRV_O_RDWR | BDRV_O_COPY_ON_READ,
                   &error_abort);
    g_assert_false(top_allocated(blk, 4096));
    /* a read inside cluster 1 copies the whole cluster */
    g_assert_cmpint(blk_pread(blk, 5000, sizeof(buf), buf, 0), ==, 0);
    for (size_t i = 0; i < sizeof(buf); i++) {
        g_assert_cmpint(buf[i], ==, 0x5c);
    }
    g_assert_true(top_allocated(blk, 4096));
    g_assert_true(top_allocated(blk, 8191));
    g_assert_false(top_allocated(blk, 8192));
    /* past the backing file's end: zeroes are copied too */
    g_assert_cmpint(read_byte(blk, 13000), ==, 0);
    g_assert_true(top_allocated(blk, 12288));
    blk_unref(blk);

    /* the copies are the top image's own now */
    blk = open_img("cor-top.tbk", NULL, BDRV_O_NO_BACKING, &error_abort);
    g_assert_cmpint(read_byte(blk, 0), ==, 0x11);
    g_assert_cmpint(read_byte(blk, 4096), ==, 0x5c);
    g_assert_cmpint(read_byte(blk, 8191), ==, 0x5c);
    g_assert_cmpint(read_byte(blk, 8192), ==, 0);
    blk_unref(blk);
}

static void test_copy_on_read_filter(void)
{
    BlockBackend *blk;
    const char *json = "json:{\"driver\": \"copy-on-read\", \"file\": "
                       "{\"driver\": \"tbk\", \"node-name\": \"t\", \"file\": "
                       "{\"driver\": \"file\", \"filename\": \"corf-top.tbk\"}}}";

    make_image("corf-base.tbk", 8192, NULL, NULL, "11", 0x6d);
    make_image("corf-top.tbk", 8192, "corf-base.tbk", "tbk", "", 0);
    blk = open_img(json, NULL, BDRV_O_RDWR, &error_abort);
    g_assert_cmpint(read_byte(blk, 4100), ==, 0x6d);
    blk_unref(blk);
    blk = open_img("corf-top.tbk", NULL, BDRV_O_NO_BACKING, &error_abort);
    g_assert_cmpint(read_byte(blk, 4100), ==, 0x6d);
    g_assert_cmpint(read_byte(blk, 0), ==, 0);       /* not read: not copied */
    blk_unref(blk);
    /* the filter writes: a read-only node refuses it */
    assert_open_error(json, NULL, 0, "Block node is read-only");
}

/* Overlapping writes wait for the copy: the guest's write is never
 * overwritten by the older data copy-on-read copies. */
typedef struct CorRace {
    BlockBackend *blk;
    int done;
} CorRace;

static void coroutine_fn race_read_entry(void *opaque)
{
    CorRace *r = opaque;
    uint8_t buf[512];

    g_assert_cmpint(blk_co_pread(r->blk, 0, sizeof(buf), buf, 0), ==, 0);
    r->done++;
}

static void coroutine_fn race_write_entry(void *opaque)
{
    CorRace *r = opaque;
    uint8_t buf[4096];

    memset(buf, 0x99, sizeof(buf));
    g_assert_cmpint(blk_co_pwrite(r->blk, 0, sizeof(buf), buf, 0), ==, 0);
    r->done++;
}

static void test_copy_on_read_serialises(void)
{
    CorRace r;
    Coroutine *rd, *wr;

    make_image("race-base.tbk", 8192, NULL, NULL, "1", 0x44);
    make_image("race-top.tbk", 8192, "race-base.tbk", "tbk", "", 0);
    r.blk = open_img("race-top.tbk", NULL,
                     BDRV_O_RDWR | BDRV_O_COPY_ON_READ, &error_abort);
    r.done = 0;
    rd = co_create(race_read_entry, &r);
    wr = co_create(race_write_entry, &r);
    co_enter(rd);
    co_enter(wr);
    while (r.done < 2) {
        aio_poll(aio_get_default(), true);
    }
    g_assert_cmpint(read_byte(r.blk, 0), ==, 0x99);
    g_assert_cmpint(read_byte(r.blk, 4095), ==, 0x99);
    blk_unref(r.blk);
}

int main(int argc, char **argv)
{
    g_autofree char *rm_cmd = NULL;
    int ret;

    g_test_init(&argc, &argv, NULL);
    bdrv_init();
    bdrv_register(&bdrv_tbk);
    tmpdir = g_dir_make_tmp("strata-backing-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);
    g_assert_cmpint(chdir(tmpdir), ==, 0);
    g_test_add_func("/backing/relative", test_relative_to_overlay_dir);
    g_test_add_func("/backing/absolute-protocol",
                    test_absolute_and_protocol_names);
    g_test_add_func("/backing/combine-name", test_combine_backing_name);
    g_test_add_func("/backing/probe", test_format_probed_when_not_recorded);
    g_test_add_func("/backing/no-backing", test_no_backing);
    g_test_add_func("/backing/options", test_backing_options_and_reference);
    g_test_add_func("/backing/errors", test_open_errors);
    g_test_add_func("/backing/loops", test_loops);
    g_test_add_func("/backing/perms", test_backing_perms);
    g_test_add_func("/backing/chain", test_chain_status_and_short_backing);
    g_test_add_func("/backing/change", test_change_backing_file);
    g_test_add_func("/backing/deep-chain-cost", test_deep_chain_status_cost);
    g_test_add_func("/backing/cor-flag", test_copy_on_read_flag);
    g_test_add_func("/backing/cor-filter", test_copy_on_read_filter);
    g_test_add_func("/backing/cor-serialise", test_copy_on_read_serialises);
    ret = g_test_run();
    rm_cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
    g_assert_cmpint(system(rm_cmd), ==, 0);
    return ret;
}
