/*
 * qcow2 compressed clusters: the two codecs an image may use
 * (header field compression_type), byte-compatible with QEMU's.
 *
 *  - zlib (type 0): raw deflate, no zlib header or checksum, 4 KiB window
 *    (windowBits -12), default level, memLevel 9.  Read by libdeflate
 *    first (about twice as fast), by zlib for what libdeflate refuses.
 *  - zstd (type 1): one zstd frame at the default level (3), with the
 *    content size in its header; on reading, any number of frames whose
 *    output adds up to the cluster.
 *
 * Thread safety: every function may be called from any thread at once.
 * Codec contexts are per thread, created on first use and reused (reset
 * between calls); a thread's contexts are freed when it exits, and the
 * ones of threads still alive at process exit stay reachable from a
 * registry (no leak report).
 *
 * The coroutine variants run the work on the worker pool (completing on
 * the calling thread's default AioContext): several calls at once run in
 * parallel, at most one per CPU (a process-wide lane), the rest queued in
 * order.  Buffers below QCOW2_COMPRESS_INLINE_MAX are cheaper to do in
 * place than to hand over, except for zlib compression, which always
 * goes to the pool.  Called outside a coroutine they run inline.  The
 * caller keeps @src and @dest alive and untouched until the call returns.
 */
#ifndef STRATA_QCOW2_COMPRESS_H
#define STRATA_QCOW2_COMPRESS_H

#include <stddef.h>
#include <sys/types.h>
#include "coroutine/coroutine.h"

typedef enum {
    QCOW2_COMPRESSION_ZLIB = 0,
    QCOW2_COMPRESSION_ZSTD = 1,
} Qcow2CompressionType;

/* Smaller buffers are (de)compressed on the calling thread (but see
 * above for zlib compression). */
#define QCOW2_COMPRESS_INLINE_MAX 4096

/* Compress @src_size bytes of @src into @dest (capacity @dest_size).
 * Returns the compressed length, -ENOMEM if the result does not fit in
 * @dest_size (the caller then writes the cluster uncompressed), or another
 * -errno (-EINVAL: unknown type or sizes over 4 GiB).  May run the work on
 * the worker pool.  The reference compresses a cluster into
 * cluster_size - 1 bytes: pass that as @dest_size to make the same
 * compressed-or-not decision. */
ssize_t coroutine_fn qcow2_co_compress(Qcow2CompressionType type,
                                       void *dest, size_t dest_size,
                                       const void *src, size_t src_size);

/* Decompress @src (@src_size bytes; may carry trailing bytes past the end
 * of the compressed stream, since the descriptor's size is rounded to
 * sectors) into exactly @dest_size bytes of @dest.  0 or -EIO (also for
 * an unknown type).  @src is untrusted: hostile input fails cleanly and
 * nothing is written past @dest_size; on failure @dest holds garbage. */
int coroutine_fn qcow2_co_decompress(Qcow2CompressionType type,
                                     void *dest, size_t dest_size,
                                     const void *src, size_t src_size);

/* One cluster of a batch: @src (@src_size bytes, untrusted) inflates
 * into exactly the batch's dest_size bytes at @dest. */
typedef struct Qcow2DecompressItem {
    void *dest;
    const void *src;
    size_t src_size;
} Qcow2DecompressItem;

/* Decompress @n clusters, as qcow2_co_decompress() each, split over the
 * worker pool's codec lane (one part per CPU, the parts at once): a read
 * of many compressed clusters pays one hand-over per part instead of one
 * per cluster, and uses every core even alone.  0, or -EIO if any item
 * failed (the dests of the others hold their data or garbage). */
int coroutine_fn qcow2_co_decompress_many(Qcow2CompressionType type,
                                          Qcow2DecompressItem *items, int n,
                                          size_t dest_size);

/* The same work on the calling thread (tests, fuzzing, tools). */
ssize_t qcow2_compress_buf(Qcow2CompressionType type,
                           void *dest, size_t dest_size,
                           const void *src, size_t src_size);
int qcow2_decompress_buf(Qcow2CompressionType type,
                         void *dest, size_t dest_size,
                         const void *src, size_t src_size);

/* Free the calling thread's codec contexts now (they are recreated on
 * next use).  Threads that exit do this by themselves. */
void qcow2_compress_thread_cleanup(void);
/* How many threads hold codec contexts (tests). */
unsigned qcow2_compress_live_contexts(void);

#endif
