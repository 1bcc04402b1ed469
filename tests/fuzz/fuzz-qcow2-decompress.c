#include "config.h"
/*
 * Fuzz target: qcow2 compressed-cluster payloads, which come from
 * untrusted images.  Input: one byte choosing the codec (bit 0: zlib or
 * zstd) and the cluster size (bits 1-7: 512 B << (n % 13), up to 2 MiB),
 * then the payload as found at the descriptor's offset.  The destination
 * is exactly one cluster, so ASan catches any write past it; what
 * decompresses is compressed again and must round-trip.
 *
 * Seeds (corpus/qcow2-decompress) are real clusters written by QEMU 10.0
 * (`qemu-img convert -c`, zlib and zstd, several cluster sizes), taken
 * with tests/interop/qcow2_clusters.py, plus variants with trailing
 * bytes and cut short.
 */
#include <errno.h>
#include <string.h>
#include <glib.h>
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
    if (ret == 0) {
        check_roundtrip(type, out, cs);
    }
    return 0;
}
