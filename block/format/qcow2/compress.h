/*
 * Compression of qcow2 compressed clusters.  zlib clusters are raw deflate
 * streams (12 window bits), zstd clusters are zstd frames.
 */
#ifndef STRATA_QCOW2_COMPRESS_H
#define STRATA_QCOW2_COMPRESS_H

#include <stddef.h>
#include <sys/types.h>
#include "coroutine/coroutine.h"

typedef enum { QCOW2_COMPRESSION_ZLIB = 0, QCOW2_COMPRESSION_ZSTD = 1 } Qcow2CompressionType;
/* Compress @src_size bytes of @src into @dest (capacity @dest_size).
 * Returns the compressed length, -ENOMEM if the result does not fit in
 * @dest_size (the caller then writes the cluster uncompressed), or another
 * -errno.  May run the work on the worker pool. */
ssize_t coroutine_fn qcow2_co_compress(Qcow2CompressionType type, void *dest, size_t dest_size, const void *src, size_t src_size);
/* Decompress @src (@src_size bytes; may carry trailing bytes past the end of
 * the compressed stream, since the descriptor's size is rounded to sectors)
 * into exactly @dest_size bytes of @dest.  0 or -EIO. */
int coroutine_fn qcow2_co_decompress(Qcow2CompressionType type, void *dest, size_t dest_size, const void *src, size_t src_size);

#endif
