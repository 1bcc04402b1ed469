#include "config.h"
/*
 * Fuzz target: qcow2 compressed-cluster payloads, which come from
 * untrusted images.  Input: one byte choosing the codec (bit 0: zlib or
 * zstd) and the cluster size (bits 1-7: 512 B << (n % 13), up to 2 MiB),
 * then the payload as found at the descriptor's offset.  The destination
 * is exactly one cluster, so ASan catches any write past it; what
 * decompresses is compressed again and must round-trip; verdicts (and
 * bytes) must match those of the decoders QEMU uses: zstd's streaming
 * decoder, and zlib's inflate called once with windowBits -12.  Ours
 * tries libdeflate first, which also takes the few codes RFC 1951
 * reserves and codes zlib finds incomplete (compress.c): only those
 * streams may read where zlib refuses them.
 *
 * Seeds (corpus/qcow2-decompress) are real clusters written by QEMU 10.0
 * (`qemu-img convert -c`, zlib and zstd, several cluster sizes), taken
 * with tests/interop/qcow2_clusters.py, plus variants with trailing
 * bytes and cut short.
 */
#include <errno.h>
#include <string.h>
#include <glib.h>
#include <zlib.h>
#include <zstd.h>
#include "block/format/qcow2/compress.h"
#include "tests/fuzz/fuzz-main.h"

/* A cluster that decoded must survive compress + decompress unchanged. */
static void check_roundtrip(Qcow2CompressionType type, const guint8 *data,
                            size_t cs)
{
    g_autofree guint8 *z = g_malloc(cs);
    g_autofree guint8 *back = g_malloc(cs);
    ssize_t n = qcow2_compress_buf(type, z, cs - 1, data, cs);

    g_assert(n > 0 || n == -ENOMEM);
    if (n > 0) {
        g_assert(qcow2_decompress_buf(type, back, cs, z, n) == 0);
        g_assert(memcmp(back, data, cs) == 0);
    }
}

/* zstd the way QEMU reads it: streaming until the cluster is full, which
 * must end a frame exactly.  Our one-shot frame walk must agree with it
 * (same verdict, same bytes), except on pre-1.0 legacy frames, which
 * only the streaming decoder accepts. */
static int zstd_streaming(guint8 *dest, size_t cs, const guint8 *src,
                          size_t len)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_outBuffer out = { dest, cs, 0 };
    ZSTD_inBuffer in = { src, len, 0 };
    size_t ret = 1;

    while (out.pos < out.size) {
        size_t ip = in.pos, op = out.pos;

        ret = ZSTD_decompressStream(d, &out, &in);
        if (ZSTD_isError(ret) || (in.pos == ip && out.pos == op)) {
            ret = 1;
            break;
        }
    }
    ZSTD_freeDCtx(d);
    return ret ? -EIO : 0;
}

static bool has_legacy_magic(const guint8 *p, size_t len)
{
    return len >= 4 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd &&
           p[0] >= 0x1e && p[0] <= 0x27;
}

/* Compare with the streaming decoder (only for small clusters: cost). */
static void check_zstd_like_streaming(const guint8 *out, int ret, size_t cs,
                                      const guint8 *src, size_t len)
{
    g_autofree guint8 *ref = NULL;
    int ref_ret;

    if (cs > 65536 || has_legacy_magic(src, len)) {
        return;
    }
    ref = g_malloc(cs);
    ref_ret = zstd_streaming(ref, cs, src, len);
    g_assert(ref_ret == ret);
    g_assert(ret != 0 || memcmp(ref, out, cs) == 0);
}

/* What zlib refuses and libdeflate takes: reserved length/distance
 * symbols used or declared, and Huffman codes zlib finds incomplete. */
static const char *const zlib_strict_only[] = {
    "invalid literal/length code", "invalid distance code",
    "too many length or distance symbols", "invalid code lengths set",
    "invalid literal/lengths set", "invalid distances set",
};

static bool zlib_strict_reason(const char *msg)
{
    for (size_t i = 0; msg && i < G_N_ELEMENTS(zlib_strict_only); i++) {
        if (!strcmp(msg, zlib_strict_only[i])) {
            return true;
        }
    }
    return false;
}

/* zlib the way QEMU reads it: one inflate call until the cluster is
 * full; a stream that ends early or breaks is an error (*@strict: one
 * of the errors above). */
static int zlib_once(guint8 *dest, size_t cs, const guint8 *src, size_t len,
                     bool *strict)
{
    z_stream z = { 0 };
    int ret;

    g_assert(inflateInit2(&z, -12) == Z_OK);
    z.next_in = (Bytef *)src;
    z.avail_in = len;
    z.next_out = dest;
    z.avail_out = cs;
    ret = inflate(&z, Z_FINISH);
    ret = (ret == Z_STREAM_END || ret == Z_BUF_ERROR || ret == Z_OK) &&
          z.avail_out == 0 ? 0 : -EIO;
    *strict = ret < 0 && zlib_strict_reason(z.msg);
    inflateEnd(&z);
    return ret;
}

/* The libdeflate fast path must give zlib's verdict and bytes, but for
 * the streams only zlib is strict about. */
static void check_zlib_like_qemu(const guint8 *out, int ret, size_t cs,
                                 const guint8 *src, size_t len)
{
    g_autofree guint8 *ref = g_malloc(cs);
    bool strict;
    int ref_ret = zlib_once(ref, cs, src, len, &strict);

    g_assert(ref_ret == ret || (ret == 0 && strict));
    g_assert(ret != 0 || ref_ret != 0 || memcmp(ref, out, cs) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Qcow2CompressionType type;
    g_autofree guint8 *out = NULL;
    size_t cs;
    int ret;

    if (size < 1) {
        return 0;
    }
    type = data[0] & 1 ? QCOW2_COMPRESSION_ZSTD : QCOW2_COMPRESSION_ZLIB;
    cs = (size_t)512 << ((data[0] >> 1) % 13);
    out = g_malloc(cs);
    ret = qcow2_decompress_buf(type, out, cs, data + 1, size - 1);
    g_assert(ret == 0 || ret == -EIO);
    if (type == QCOW2_COMPRESSION_ZSTD) {
        check_zstd_like_streaming(out, ret, cs, data + 1, size - 1);
    } else {
        check_zlib_like_qemu(out, ret, cs, data + 1, size - 1);
    }
    if (ret == 0) {
        check_roundtrip(type, out, cs);
    }
    return 0;
}
