#include "config.h"
/*
 * qcow2 cluster codecs: round trips for both types and every cluster
 * size, the -ENOMEM contract, hostile payloads (truncated, corrupt,
 * wrong size, trailing bytes) and many coroutines at once on the pool.
 */
#include <errno.h>
#include <string.h>
#include <glib.h>
#include <zstd.h>

#include "block/format/qcow2/compress.h"
#include "tests/unit/test-co.h"

#define GUARD 64
#define GUARD_BYTE 0xa5

static const Qcow2CompressionType types[] = {
    QCOW2_COMPRESSION_ZLIB, QCOW2_COMPRESSION_ZSTD,
};

/* Compressible, text-like data: words from a small vocabulary with some
 * runs of zeroes, different for each @seed. */
static guint8 *make_data(size_t size, guint32 seed)
{
    static const char *words[] = {
        "cluster ", "refcount ", "table ", "offset ", "qcow2 ", "L2 ",
        "entry ", "0x00fffffffffffe00 ", "snapshot ", "\n", "image ",
    };
    g_autoptr(GRand) r = g_rand_new_with_seed(seed);
    guint8 *p = g_malloc(size);
    size_t i = 0;

    while (i < size) {
        const char *w = words[g_rand_int_range(r, 0, G_N_ELEMENTS(words))];
        size_t n = MIN(strlen(w), size - i);

        if (g_rand_int_range(r, 0, 50) == 0) {
            size_t run = g_rand_int_range(r, 1, 300);

            n = MIN(run, size - i);
            memset(p + i, 0, n);
        } else {
            memcpy(p + i, w, n);
        }
        i += n;
    }
    return p;
}

static guint8 *make_random(size_t size, guint32 seed)
{
    g_autoptr(GRand) r = g_rand_new_with_seed(seed);
    guint8 *p = g_malloc(size);

    for (size_t i = 0; i < size; i++) {
        p[i] = g_rand_int(r);
    }
    return p;
}

/* A destination with guard bytes after @size, to catch overruns. */
static guint8 *guarded(size_t size)
{
    guint8 *p = g_malloc(size + GUARD);

    memset(p, GUARD_BYTE, size + GUARD);
    return p;
}

static void assert_guard(const guint8 *p, size_t size)
{
    for (size_t i = 0; i < GUARD; i++) {
        g_assert_cmphex(p[size + i], ==, GUARD_BYTE);
    }
}

/* Compress one cluster as the qcow2 driver does (into cluster - 1). */
static guint8 *compress_cluster(Qcow2CompressionType t, const guint8 *data,
                                size_t cs, size_t *len)
{
    guint8 *out = g_malloc(cs);
    ssize_t n = qcow2_compress_buf(t, out, cs - 1, data, cs);

    g_assert_cmpint(n, >, 0);
    g_assert_cmpint(n, <, cs - 1);
    *len = n;
    return out;
}

/* Every cluster size 512 B .. 2 MiB, both types, both entry points. */
static void test_roundtrip(void)
{
    for (size_t cs = 512; cs <= 2 * 1024 * 1024; cs *= 2) {
        g_autofree guint8 *data = make_data(cs, cs);

        for (int t = 0; t < 2; t++) {
            size_t len;
            g_autofree guint8 *z = compress_cluster(types[t], data, cs, &len);
            g_autofree guint8 *back = guarded(cs);

            g_assert_cmpint(qcow2_decompress_buf(types[t], back, cs, z, len),
                            ==, 0);
            g_assert_cmpmem(back, cs, data, cs);
            assert_guard(back, cs);
        }
    }
}

/* The stream QEMU writes: zstd with the content size in the header. */
static void test_zstd_frame_has_content_size(void)
{
    size_t cs = 65536, len;
    g_autofree guint8 *data = make_data(cs, 7);
    g_autofree guint8 *z = compress_cluster(QCOW2_COMPRESSION_ZSTD, data,
                                            cs, &len);

    g_assert_cmpuint(ZSTD_getFrameContentSize(z, len), ==, cs);
    g_assert_cmpuint(ZSTD_findFrameCompressedSize(z, len), ==, len);
}

/* Data that does not shrink, or a destination too small: -ENOMEM. */
static void test_incompressible(void)
{
    for (size_t cs = 512; cs <= 2 * 1024 * 1024; cs *= 4) {
        g_autofree guint8 *data = make_random(cs, 1);
        g_autofree guint8 *out = guarded(cs);

        for (int t = 0; t < 2; t++) {
            g_assert_cmpint(qcow2_compress_buf(types[t], out, cs - 1, data, cs),
                            ==, -ENOMEM);
            assert_guard(out, cs - 1 + 1);
        }
    }
    for (int t = 0; t < 2; t++) {
        g_autofree guint8 *data = make_data(65536, 2);
        guint8 small[8];

        g_assert_cmpint(qcow2_compress_buf(types[t], small, sizeof(small),
                                           data, 65536), ==, -ENOMEM);
    }
}

/* Bytes after the stream (the rest of the last sector, the next
 * cluster's stream, junk) are ignored. */
static void test_trailing_bytes(void)
{
    size_t cs = 65536, len, len2;
    g_autofree guint8 *data = make_data(cs, 3);
    g_autofree guint8 *data2 = make_data(cs, 4);
    g_autofree guint8 *junk = make_random(1024, 5);

    for (int t = 0; t < 2; t++) {
        g_autofree guint8 *z = compress_cluster(types[t], data, cs, &len);
        g_autofree guint8 *z2 = compress_cluster(types[t], data2, cs, &len2);
        g_autoptr(GByteArray) a = g_byte_array_new();
        g_autofree guint8 *back = guarded(cs);

        g_byte_array_append(a, z, len);
        g_byte_array_append(a, z2, len2);
        g_byte_array_append(a, junk, 1024);
        g_assert_cmpint(qcow2_decompress_buf(types[t], back, cs, a->data,
                                             a->len), ==, 0);
        g_assert_cmpmem(back, cs, data, cs);
        g_assert_cmpint(qcow2_decompress_buf(types[t], back, cs, a->data,
                                             len + 1024), ==, 0);
        g_assert_cmpmem(back, cs, data, cs);
    }
}

/* Every truncation of the stream fails: zstd always; zlib unless only
 * the end marker is missing and the cluster came out whole (QEMU too
 * stops once it has a full cluster). */
static void test_truncated(void)
{
    size_t cs = 16384, len;
    g_autofree guint8 *data = make_data(cs, 6);

    for (int t = 0; t < 2; t++) {
        g_autofree guint8 *z = compress_cluster(types[t], data, cs, &len);
        g_autofree guint8 *back = guarded(cs);

        for (size_t cut = 0; cut < len; cut++) {
            int ret = qcow2_decompress_buf(types[t], back, cs, z, cut);

            assert_guard(back, cs);
            if (types[t] == QCOW2_COMPRESSION_ZSTD || cut < len - 8) {
                g_assert_cmpint(ret, ==, -EIO);
            } else if (ret == 0) {
                g_assert_cmpmem(back, cs, data, cs);
            }
        }
    }
}

/* Random byte flips: 0 or -EIO, never a write past the destination. */
static void test_corrupt(void)
{
    size_t cs = 4096, len;
    g_autofree guint8 *data = make_data(cs, 8);
    g_autoptr(GRand) r = g_rand_new_with_seed(9);

    for (int t = 0; t < 2; t++) {
        g_autofree guint8 *z = compress_cluster(types[t], data, cs, &len);
        g_autofree guint8 *bad = g_malloc(len);
        g_autofree guint8 *back = guarded(cs);
        int failed = 0;

        for (int i = 0; i < 2000; i++) {
            int ret;

            memcpy(bad, z, len);
            for (int k = g_rand_int_range(r, 1, 4); k > 0; k--) {
                bad[g_rand_int_range(r, 0, len)] ^= 1 << g_rand_int_range(r, 0, 8);
            }
            ret = qcow2_decompress_buf(types[t], back, cs, bad, len);
            g_assert_true(ret == 0 || ret == -EIO);
            failed += ret == -EIO;
            assert_guard(back, cs);
        }
        g_assert_cmpint(failed, >, 0);
    }
}

/* A stream for another cluster size: a larger one is cut for zlib (as
 * QEMU's inflate does) and refused by zstd (the frame does not fit); a
 * smaller one is -EIO for both.  Junk, empty input, empty output: -EIO. */
static void test_wrong_size(void)
{
    size_t cs = 65536, len;
    g_autofree guint8 *data = make_data(cs, 10);
    g_autofree guint8 *junk = make_random(4096, 11);

    for (int t = 0; t < 2; t++) {
        g_autofree guint8 *z = compress_cluster(types[t], data, cs, &len);
        g_autofree guint8 *back = guarded(2 * cs);
        int half = qcow2_decompress_buf(types[t], back, cs / 2, z, len);

        assert_guard(back, cs / 2);
        if (types[t] == QCOW2_COMPRESSION_ZLIB) {
            g_assert_cmpint(half, ==, 0);
            g_assert_cmpmem(back, cs / 2, data, cs / 2);
        } else {
            g_assert_cmpint(half, ==, -EIO);
        }
        g_assert_cmpint(qcow2_decompress_buf(types[t], back, 2 * cs, z, len),
                        ==, -EIO);
        assert_guard(back, 2 * cs);
        g_assert_cmpint(qcow2_decompress_buf(types[t], back, cs, junk, 4096),
                        ==, -EIO);
        g_assert_cmpint(qcow2_decompress_buf(types[t], back, cs, z, 0),
                        ==, -EIO);
        g_assert_cmpint(qcow2_decompress_buf(types[t], back, 0, z, len),
                        ==, -EIO);
    }
}

/* zstd: a cluster may be spread over several frames (and skippable
 * frames), as long as they add up to the cluster exactly. */
static void test_zstd_frames(void)
{
    size_t cs = 65536, h = cs / 2;
    g_autofree guint8 *data = make_data(cs, 12);
    g_autofree guint8 *buf = g_malloc(2 * ZSTD_compressBound(h) + 16);
    g_autofree guint8 *back = guarded(cs);
    /* skippable frame: magic 0x184D2A50, 4-byte size, payload */
    static const guint8 skip[] = { 0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0,
                                   's', 'k', 'i', 'p' };
    size_t n = sizeof(skip);

    memcpy(buf, skip, n);

    n += ZSTD_compress(buf + n, ZSTD_compressBound(h), data, h, 1);
    n += ZSTD_compress(buf + n, ZSTD_compressBound(h), data + h, h, 19);
    g_assert_cmpint(qcow2_decompress_buf(QCOW2_COMPRESSION_ZSTD, back, cs,
                                         buf, n), ==, 0);
    g_assert_cmpmem(back, cs, data, cs);
}

/* A frame of unknown size (written in two steps) with window @wlog. */
static size_t zstd_frame_window(guint8 *dst, size_t cap, const guint8 *src,
                                size_t n, int wlog)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_outBuffer out = { dst, cap, 0 };
    ZSTD_inBuffer in = { src, n / 2, 0 };

    g_assert(!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, wlog)));
    g_assert(!ZSTD_isError(ZSTD_compressStream2(c, &out, &in, ZSTD_e_continue)));
    in.size = n;
    g_assert(ZSTD_compressStream2(c, &out, &in, ZSTD_e_end) == 0);
    ZSTD_freeCCtx(c);
    g_assert_cmpuint(ZSTD_getFrameContentSize(dst, out.pos), ==,
                     ZSTD_CONTENTSIZE_UNKNOWN);
    return out.pos;
}

/* Frames asking for a window over 128 MiB fail, as in QEMU's streaming
 * decoder (libzstd's default limit), though we could decode them. */
static void test_zstd_window_limit(void)
{
    size_t cs = 65536, cap = ZSTD_compressBound(cs), n;
    g_autofree guint8 *data = make_data(cs, 14);
    g_autofree guint8 *z = g_malloc(cap);
    g_autofree guint8 *back = guarded(cs);

    n = zstd_frame_window(z, cap, data, cs, 27);
    g_assert_cmpint(qcow2_decompress_buf(QCOW2_COMPRESSION_ZSTD, back, cs,
                                         z, n), ==, 0);
    g_assert_cmpmem(back, cs, data, cs);
    n = zstd_frame_window(z, cap, data, cs, 28);
    g_assert_cmpint(qcow2_decompress_buf(QCOW2_COMPRESSION_ZSTD, back, cs,
                                         z, n), ==, -EIO);
    assert_guard(back, cs);
}

static void test_bad_type(void)
{
    guint8 in[4096] = { 0 }, out[4096];

    g_assert_cmpint(qcow2_compress_buf(7, out, sizeof(out), in, sizeof(in)),
                    ==, -EINVAL);
    g_assert_cmpint(qcow2_decompress_buf(7, out, sizeof(out), in, sizeof(in)),
                    ==, -EIO);
}

/* One coroutine's cluster: compress on the pool, decompress, compare. */
typedef struct CoCluster {
    Qcow2CompressionType type;
    size_t cs;
    guint8 *data;
    bool done;
} CoCluster;

static void coroutine_fn co_cluster_entry(void *opaque)
{
    CoCluster *c = opaque;
    g_autofree guint8 *z = g_malloc(c->cs);
    g_autofree guint8 *back = g_malloc(c->cs);
    ssize_t n = qcow2_co_compress(c->type, z, c->cs - 1, c->data, c->cs);
    g_autofree guint8 *ref = g_malloc(c->cs);

    g_assert_cmpint(n, >, 0);
    g_assert_cmpint(qcow2_compress_buf(c->type, ref, c->cs - 1, c->data,
                                       c->cs), ==, n);
    g_assert_cmpmem(z, n, ref, n);
    g_assert_cmpint(qcow2_co_decompress(c->type, back, c->cs, z, n), ==, 0);
    g_assert_cmpmem(back, c->cs, c->data, c->cs);
    c->done = true;
}

/* 96 coroutines at once, mixed types and sizes (some inline, most on
 * the pool): every result right. */
static void test_concurrent(void)
{
    enum { N = 96 };
    CoCluster c[N];
    int left;

    for (int i = 0; i < N; i++) {
        size_t cs = (size_t)2048 << (i % 6);

        c[i] = (CoCluster) { .type = types[i % 2], .cs = cs,
                             .data = make_data(cs, 100 + i) };
        co_enter(co_create(co_cluster_entry, &c[i]));
    }
    do {
        left = 0;
        for (int i = 0; i < N; i++) {
            left += !c[i].done;
        }
        if (left) {
            aio_poll(aio_get_default(), true);
        }
    } while (left);
    for (int i = 0; i < N; i++) {
        g_free(c[i].data);
    }
    /* the main thread's contexts and those of the pool's workers (idle
     * workers live on for a while) */
    g_assert_cmpuint(qcow2_compress_live_contexts(), >=, 2);
}

static gpointer thread_compress(gpointer opaque)
{
    g_autofree guint8 *data = make_data(65536, 13);
    g_autofree guint8 *out = g_malloc(65536);

    for (int t = 0; t < 2; t++) {
        g_assert_cmpint(qcow2_compress_buf(types[t], out, 65535, data, 65536),
                        >, 0);
    }
    return NULL;
}

/* A thread's contexts go away with it, and on request. */
static void test_thread_exit_frees(void)
{
    unsigned before;

    qcow2_compress_thread_cleanup();
    before = qcow2_compress_live_contexts();
    g_thread_join(g_thread_new("compress", thread_compress, NULL));
    g_assert_cmpuint(qcow2_compress_live_contexts(), ==, before);
    thread_compress(NULL);
    g_assert_cmpuint(qcow2_compress_live_contexts(), ==, before + 1);
    qcow2_compress_thread_cleanup();
    g_assert_cmpuint(qcow2_compress_live_contexts(), ==, before);
}

/* A batch: @n clusters of @cs bytes compressed with @type, item @bad
 * (-1: none) corrupted; decompressed in one call. */
typedef struct Batch {
    Qcow2CompressionType type;
    size_t cs;
    int n, bad;
    int ret;
    bool done;
    guint8 *data, *z, *out;
    Qcow2DecompressItem items[16];
} Batch;

static void batch_prepare(Batch *b)
{
    b->data = make_data(b->cs * b->n, 500 + b->n);
    b->z = g_malloc(b->cs * b->n);
    b->out = g_malloc0(b->cs * b->n);
    for (int i = 0; i < b->n; i++) {
        ssize_t len = qcow2_compress_buf(b->type, b->z + i * b->cs, b->cs - 1,
                                         b->data + i * b->cs, b->cs);

        g_assert_cmpint(len, >, 16);
        if (i == b->bad) {
            memset(b->z + i * b->cs + len / 2, 0xff, 8);
        }
        b->items[i] = (Qcow2DecompressItem) {
            .dest = b->out + i * b->cs, .src = b->z + i * b->cs,
            .src_size = len,
        };
    }
}

/* Every good item decoded to its data, whatever the bad one did. */
static void batch_check(Batch *b)
{
    g_assert_cmpint(b->ret, ==, b->bad < 0 ? 0 : -EIO);
    for (int i = 0; i < b->n; i++) {
        if (i != b->bad) {
            g_assert_cmpmem(b->out + i * b->cs, b->cs, b->data + i * b->cs,
                            b->cs);
        }
    }
    g_free(b->data);
    g_free(b->z);
    g_free(b->out);
}

static void coroutine_fn batch_entry(void *opaque)
{
    Batch *b = opaque;

    b->ret = qcow2_co_decompress_many(b->type, b->items, b->n, b->cs);
    b->done = true;
}

/* In a coroutine (split over the pool) and outside one (inline), for
 * both types, with and without a corrupt cluster among the others. */
static void test_decompress_many(void)
{
    for (int t = 0; t < 2; t++) {
        for (int bad = -1; bad < 16; bad += 9) {
            Batch b = { .type = types[t], .cs = 65536, .n = 13, .bad = bad };

            batch_prepare(&b);
            co_enter(co_create(batch_entry, &b));
            while (!b.done) {
                aio_poll(aio_get_default(), true);
            }
            batch_check(&b);
            b = (Batch) { .type = types[t], .cs = 512, .n = 3, .bad = bad };
            b.bad = bad < 3 ? bad : 2;
            batch_prepare(&b);
            b.ret = qcow2_co_decompress_many(b.type, b.items, b.n, b.cs);
            batch_check(&b);
        }
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qcow2-compress/roundtrip", test_roundtrip);
    g_test_add_func("/qcow2-compress/zstd-content-size",
                    test_zstd_frame_has_content_size);
    g_test_add_func("/qcow2-compress/incompressible", test_incompressible);
    g_test_add_func("/qcow2-compress/trailing-bytes", test_trailing_bytes);
    g_test_add_func("/qcow2-compress/truncated", test_truncated);
    g_test_add_func("/qcow2-compress/corrupt", test_corrupt);
    g_test_add_func("/qcow2-compress/wrong-size", test_wrong_size);
    g_test_add_func("/qcow2-compress/zstd-frames", test_zstd_frames);
    g_test_add_func("/qcow2-compress/zstd-window-limit", test_zstd_window_limit);
    g_test_add_func("/qcow2-compress/bad-type", test_bad_type);
    g_test_add_func("/qcow2-compress/concurrent", test_concurrent);
    g_test_add_func("/qcow2-compress/decompress-many", test_decompress_many);
    g_test_add_func("/qcow2-compress/thread-exit", test_thread_exit_frees);
    return g_test_run();
}
