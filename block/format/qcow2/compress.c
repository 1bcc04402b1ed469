#include "config.h"
/*
 * Temporary synchronous (de)compression for qcow2 compressed clusters;
 * the worker-pool version replaces this file.
 */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>
#include "compress.h"

/* Raw deflate, 12 window bits, as the qcow2 spec requires. */
static ssize_t zlib_compress(void *dest, size_t dest_size, const void *src,
                             size_t src_size)
{
    z_stream z = { 0 };
    ssize_t ret;

    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        return -EIO;
    }
    z.next_in = (Bytef *)src;
    z.avail_in = src_size;
    z.next_out = dest;
    z.avail_out = dest_size;
    ret = deflate(&z, Z_FINISH);
    if (ret == Z_STREAM_END) {
        ret = dest_size - z.avail_out;
    } else {
        ret = ret == Z_OK || ret == Z_BUF_ERROR ? -ENOMEM : -EIO;
    }
    deflateEnd(&z);
    return ret;
}

/* The stream may end before @src does (sector rounding); the output must
 * be filled exactly. */
static int zlib_decompress(void *dest, size_t dest_size, const void *src,
                           size_t src_size)
{
    z_stream z = { 0 };
    int ret;

    if (inflateInit2(&z, -12) != Z_OK) {
        return -EIO;
    }
    z.next_in = (Bytef *)src;
    z.avail_in = src_size;
    z.next_out = dest;
    z.avail_out = dest_size;
    ret = inflate(&z, Z_FINISH);
    if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && z.avail_out == 0) {
        ret = 0;
    } else {
        ret = -EIO;
    }
    inflateEnd(&z);
    return ret;
}

static ssize_t zstd_compress(void *dest, size_t dest_size, const void *src,
                             size_t src_size)
{
    size_t n = ZSTD_compress(dest, dest_size, src, src_size, 1);

    if (ZSTD_isError(n)) {
        return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ?
               -ENOMEM : -EIO;
    }
    return n;
}

/* Streaming decompression: trailing bytes after the frame are ignored. */
static int zstd_decompress(void *dest, size_t dest_size, const void *src,
                           size_t src_size)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    ZSTD_inBuffer in = { src, src_size, 0 };
    ZSTD_outBuffer out = { dest, dest_size, 0 };
    int ret = 0;

    if (!dctx) {
        return -EIO;
    }
    while (out.pos < out.size) {
        size_t r = ZSTD_decompressStream(dctx, &out, &in);

        if (ZSTD_isError(r)) {
            ret = -EIO;
            break;
        }
        if (out.pos < out.size && (r == 0 || in.pos == in.size)) {
            ret = -EIO;     /* the frame or the input ended early */
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    return ret;
}

ssize_t coroutine_fn qcow2_co_compress(Qcow2CompressionType type, void *dest,
                                       size_t dest_size, const void *src,
                                       size_t src_size)
{
    switch (type) {
    case QCOW2_COMPRESSION_ZLIB:
        return zlib_compress(dest, dest_size, src, src_size);
    case QCOW2_COMPRESSION_ZSTD:
        return zstd_compress(dest, dest_size, src, src_size);
    default:
        return -EINVAL;
    }
}

int coroutine_fn qcow2_co_decompress(Qcow2CompressionType type, void *dest,
                                     size_t dest_size, const void *src,
                                     size_t src_size)
{
    switch (type) {
    case QCOW2_COMPRESSION_ZLIB:
        return zlib_decompress(dest, dest_size, src, src_size);
    case QCOW2_COMPRESSION_ZSTD:
        return zstd_decompress(dest, dest_size, src, src_size);
    default:
        return -EIO;
    }
}
