#include "config.h"
/*
 * strata-qcow2-codec: the qcow2 cluster codecs on stdin/stdout, for the
 * interop tests.
 *
 *   strata-qcow2-codec compress zlib|zstd DEST_SIZE < cluster > payload
 *   strata-qcow2-codec decompress zlib|zstd CLUSTER_SIZE < payload > cluster
 *
 * Exit status: 0 done, 2 does not fit (compress: -ENOMEM), 1 otherwise
 * (usage, -EIO).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>
#include "block/format/qcow2/compress.h"

/* All of stdin. */
static GByteArray *read_stdin(void)
{
    GByteArray *a = g_byte_array_new();
    guint8 buf[65536];
    size_t n;

    while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0) {
        g_byte_array_append(a, buf, n);
    }
    return a;
}

/* Run one operation; returns the exit status. */
static int run(bool compress, Qcow2CompressionType type, size_t size)
{
    g_autoptr(GByteArray) in = read_stdin();
    g_autofree guint8 *out = g_malloc(size ? size : 1);
    ssize_t ret;

    if (compress) {
        ret = qcow2_compress_buf(type, out, size, in->data, in->len);
    } else {
        ret = qcow2_decompress_buf(type, out, size, in->data, in->len);
        ret = ret < 0 ? ret : (ssize_t)size;
    }
    if (ret < 0) {
        fprintf(stderr, "strata-qcow2-codec: %s\n", strerror(-ret));
        return ret == -ENOMEM ? 2 : 1;
    }
    fwrite(out, 1, ret, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    Qcow2CompressionType type;

    if (argc != 4 || (strcmp(argv[1], "compress") &&
                      strcmp(argv[1], "decompress")) ||
        (strcmp(argv[2], "zlib") && strcmp(argv[2], "zstd"))) {
        fprintf(stderr, "usage: strata-qcow2-codec compress|decompress "
                "zlib|zstd SIZE\n");
        return 1;
    }
    type = strcmp(argv[2], "zlib") ? QCOW2_COMPRESSION_ZSTD
                                   : QCOW2_COMPRESSION_ZLIB;
    return run(!strcmp(argv[1], "compress"), type,
               strtoull(argv[3], NULL, 0));
}
