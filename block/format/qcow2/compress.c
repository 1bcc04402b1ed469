#include "config.h"
/*
 * qcow2 cluster compression (see compress.h for the formats and the
 * threading contract).
 *
 * Sections: per-thread codec contexts; zlib; zstd; dispatch by type;
 * coroutine entry points (worker pool); batches of clusters.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <glib.h>
#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "block/format/qcow2/compress.h"
#include "util/aio.h"

/* deflate parameters of QEMU's qcow2: raw stream, 4 KiB window. */
#define QCOW2_ZLIB_WINDOW_BITS (-12)
#define QCOW2_ZLIB_MEM_LEVEL 9

/* ---- Per-thread codec contexts ---- */

/* One thread's reusable contexts; each is created on first use. */
typedef struct CodecCtx {
    z_stream deflater;
    z_stream inflater;
    bool deflater_ready;
    bool inflater_ready;
    struct libdeflate_decompressor *fast_inflater;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
} CodecCtx;

static pthread_once_t codec_once = PTHREAD_ONCE_INIT;
static pthread_key_t codec_key;
/* Every live CodecCtx, so that those of threads alive at exit (idle pool
 * workers, the main thread) stay reachable. */
static GMutex codec_lock;
static GPtrArray *codec_registry;
/* All pool work of the codecs: at most one job per CPU at a time (more
 * would only switch between them and keep more contexts warm), handed
 * from job to job by the worker itself. */
static ThreadPoolLane codec_lane;
/* A batch is split into at most this many parts (one per CPU). */
#define QCOW2_BATCH_MAX_PARTS 8

/* Thread exit (pthread key destructor) or explicit cleanup: free all. */
static void codec_ctx_free(void *opaque)
{
    CodecCtx *c = opaque;

    g_mutex_lock(&codec_lock);
    g_ptr_array_remove_fast(codec_registry, c);
    g_mutex_unlock(&codec_lock);
    if (c->deflater_ready) {
        deflateEnd(&c->deflater);
    }
    if (c->inflater_ready) {
        inflateEnd(&c->inflater);
    }
    libdeflate_free_decompressor(c->fast_inflater);
    ZSTD_freeCCtx(c->cctx);
    ZSTD_freeDCtx(c->dctx);
    g_free(c);
}

/* Once per process: the registry, the thread key and the lane. */
static void codec_key_init(void)
{
    codec_registry = g_ptr_array_new();
    pthread_key_create(&codec_key, codec_ctx_free);
    thread_pool_lane_init(&codec_lane, MAX(1, g_get_num_processors()));
}

/* The calling thread's contexts, registered on first use. */
static CodecCtx *codec_ctx(void)
{
    CodecCtx *c;

    pthread_once(&codec_once, codec_key_init);
    c = pthread_getspecific(codec_key);
    if (!c) {
        c = g_new0(CodecCtx, 1);
        g_mutex_lock(&codec_lock);
        g_ptr_array_add(codec_registry, c);
        g_mutex_unlock(&codec_lock);
        pthread_setspecific(codec_key, c);
    }
    return c;
}

void qcow2_compress_thread_cleanup(void)
{
    CodecCtx *c;

    pthread_once(&codec_once, codec_key_init);
    c = pthread_getspecific(codec_key);
    if (c) {
        pthread_setspecific(codec_key, NULL);
        codec_ctx_free(c);
    }
}

unsigned qcow2_compress_live_contexts(void)
{
    unsigned n;

    pthread_once(&codec_once, codec_key_init);
    g_mutex_lock(&codec_lock);
    n = codec_registry->len;
    g_mutex_unlock(&codec_lock);
    return n;
}

/* ---- zlib: raw deflate with a 4 KiB window ---- */

/* The thread's deflate stream, fresh for a new cluster (reset, not
 * reallocated: same output as a new stream); NULL if out of memory. */
static z_stream *zlib_deflater(CodecCtx *c)
{
    if (c->deflater_ready) {
        return deflateReset(&c->deflater) == Z_OK ? &c->deflater : NULL;
    }
    memset(&c->deflater, 0, sizeof(c->deflater));
    if (deflateInit2(&c->deflater, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                     QCOW2_ZLIB_WINDOW_BITS, QCOW2_ZLIB_MEM_LEVEL,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        return NULL;
    }
    c->deflater_ready = true;
    return &c->deflater;
}

/* As zlib_deflater(), for inflating. */
static z_stream *zlib_inflater(CodecCtx *c)
{
    if (c->inflater_ready) {
        return inflateReset(&c->inflater) == Z_OK ? &c->inflater : NULL;
    }
    memset(&c->inflater, 0, sizeof(c->inflater));
    if (inflateInit2(&c->inflater, QCOW2_ZLIB_WINDOW_BITS) != Z_OK) {
        return NULL;
    }
    c->inflater_ready = true;
    return &c->inflater;
}

/* One deflate call with Z_FINISH: the whole stream or no room. */
static ssize_t zlib_compress(CodecCtx *c, void *dest, size_t dest_size,
                             const void *src, size_t src_size)
{
    z_stream *z = zlib_deflater(c);
    int ret;

    if (!z) {
        return -ENOMEM;
    }
    z->next_in = (Bytef *)src;
    z->avail_in = src_size;
    z->next_out = dest;
    z->avail_out = dest_size;
    ret = deflate(z, Z_FINISH);
    if (ret == Z_STREAM_END) {
        return dest_size - z->avail_out;
    }
    /* Z_OK / Z_BUF_ERROR: the output buffer filled up first */
    return ret == Z_OK || ret == Z_BUF_ERROR ? -ENOMEM : -EIO;
}

/* Inflate until @dest is full.  As in QEMU, a stream that would go on
 * past the cluster is cut there (decompression "stops when it has
 * produced a cluster"); one that ends short of it, or breaks, is -EIO. */
static int zlib_inflate(CodecCtx *c, void *dest, size_t dest_size,
                        const void *src, size_t src_size)
{
    z_stream *z = zlib_inflater(c);
    int ret;

    if (!z) {
        return -EIO;
    }
    z->next_in = (Bytef *)src;
    z->avail_in = src_size;
    z->next_out = dest;
    z->avail_out = dest_size;
    ret = inflate(z, Z_FINISH);
    if (ret != Z_STREAM_END && ret != Z_BUF_ERROR && ret != Z_OK) {
        return -EIO;
    }
    return z->avail_out == 0 ? 0 : -EIO;
}

/*
 * Decompress a "zlib" cluster.  libdeflate inflates about twice as fast
 * as zlib, but it only succeeds on a stream that ends exactly where the
 * cluster does (the trailing bytes of the last sector are allowed);
 * zlib's inflate, as QEMU calls it, also accepts a stream cut off where
 * the cluster is full.  Anything libdeflate does not take goes through
 * zlib, so such streams and broken ones get the reference's verdict.
 */
static int zlib_decompress(CodecCtx *c, void *dest, size_t dest_size,
                           const void *src, size_t src_size)
{
    size_t used;

    if (!c->fast_inflater) {
        c->fast_inflater = libdeflate_alloc_decompressor();
    }
    if (c->fast_inflater &&
        libdeflate_deflate_decompress_ex(c->fast_inflater, src, src_size,
                                         dest, dest_size, &used, NULL) ==
        LIBDEFLATE_SUCCESS) {
        return 0;
    }
    return zlib_inflate(c, dest, dest_size, src, src_size);
}

/* ---- zstd ---- */

/* The thread's compression context at QEMU's level, between frames. */
static ZSTD_CCtx *zstd_cctx(CodecCtx *c)
{
    if (!c->cctx) {
        c->cctx = ZSTD_createCCtx();
        if (!c->cctx || ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx,
                                ZSTD_c_compressionLevel, ZSTD_CLEVEL_DEFAULT))) {
            ZSTD_freeCCtx(c->cctx);
            c->cctx = NULL;
            return NULL;
        }
    }
    ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_only);
    return c->cctx;
}

/* One frame with the content size in its header (as QEMU writes it: a
 * single ZSTD_e_end call over the whole cluster). */
static ssize_t zstd_compress(CodecCtx *c, void *dest, size_t dest_size,
                             const void *src, size_t src_size)
{
    ZSTD_CCtx *cctx = zstd_cctx(c);
    size_t ret;

    if (!cctx) {
        return -ENOMEM;
    }
    ret = ZSTD_compress2(cctx, dest, dest_size, src, src_size);
    if (!ZSTD_isError(ret)) {
        return ret;
    }
    return ZSTD_getErrorCode(ret) == ZSTD_error_dstSize_tooSmall ? -ENOMEM
                                                                 : -EIO;
}

/* The largest window a frame may ask for: libzstd's default limit for
 * streaming decoders (ZSTD_WINDOWLOG_LIMIT_DEFAULT), which QEMU reads
 * with.  Our one-shot decoding needs no window buffer and would accept
 * more; refusing it keeps the verdicts the same as QEMU's. */
#define QCOW2_ZSTD_WINDOW_MAX (1ULL << 27)

/* A frame header's window descriptor (zstd format: exponent in the top
 * five bits over a base of 1 KiB, eighths of it in the low three) within
 * the limit; single-segment frames have none and are bounded by their
 * content size, which must fit the cluster anyway. */
static bool zstd_window_ok(const guint8 *p, size_t len)
{
    guint64 base, size;

    if (len < 6 || (p[4] & 0x20)) {
        return true;    /* too short fails in the decoder */
    }
    base = 1ULL << (10 + (p[5] >> 3));
    size = base + (base >> 3) * (p[5] & 7);
    return size <= QCOW2_ZSTD_WINDOW_MAX;
}

/* Only frames of the zstd format (and skippable ones): libzstd may also
 * decode the pre-1.0 "legacy" formats, which no qcow2 writer produces and
 * whose decoders are a surface an untrusted image need not reach. */
static bool zstd_frame_ok(const guint8 *p, size_t len)
{
    guint32 magic;

    if (len < 4) {
        return false;
    }
    magic = p[0] | p[1] << 8 | p[2] << 16 | (guint32)p[3] << 24;
    if ((magic & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START) {
        return true;
    }
    return magic == ZSTD_MAGICNUMBER && zstd_window_ok(p, len);
}

/* A zstd-format frame whose header has a window descriptor (not
 * "single segment"): its blocks are bounded by that window, which only
 * the streaming decoder enforces. */
static bool zstd_frame_windowed(const guint8 *p, size_t len)
{
    return len >= 5 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f &&
           p[3] == 0xfd && !(p[4] & 0x20);
}

/* The rest of the cluster the way QEMU decodes all of it: the streaming
 * decoder, until @dest is full, which must also end a frame. */
static int zstd_decompress_stream(CodecCtx *c, void *dest, size_t dest_size,
                                  const void *src, size_t src_size)
{
    ZSTD_outBuffer out = { dest, dest_size, 0 };
    ZSTD_inBuffer in = { src, src_size, 0 };
    size_t ret = 1;

    ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_only);
    while (out.pos < out.size) {
        size_t ip = in.pos, op = out.pos;

        ret = ZSTD_decompressStream(c->dctx, &out, &in);
        if (ZSTD_isError(ret) || (in.pos == ip && out.pos == op)) {
            return -EIO;
        }
    }
    return ret ? -EIO : 0;
}

/* Decode the frames at the start of @src one by one, each straight into
 * @dest (one-shot decoding needs no window buffer, whatever window the
 * frame asks for), until @dest is full; bytes after that are ignored.  A
 * frame that would overflow @dest, a broken or truncated one, or input
 * ending before @dest is full is -EIO.  Writers put the whole cluster in
 * one single-segment frame; from a frame with a window descriptor on,
 * the streaming decoder takes over, so that a block larger than its
 * window fails as it does in QEMU. */
static int zstd_decompress(CodecCtx *c, void *dest, size_t dest_size,
                           const void *src, size_t src_size)
{
    size_t in = 0, out = 0;

    if (!c->dctx && !(c->dctx = ZSTD_createDCtx())) {
        return -EIO;
    }
    while (out < dest_size) {
        const guint8 *p = (const guint8 *)src + in;
        size_t frame = ZSTD_findFrameCompressedSize(p, src_size - in);
        size_t n;

        if (ZSTD_isError(frame) || !zstd_frame_ok(p, src_size - in)) {
            return -EIO;
        }
        if (zstd_frame_windowed(p, src_size - in)) {
            return zstd_decompress_stream(c, (char *)dest + out,
                                          dest_size - out, p, src_size - in);
        }
        n = ZSTD_decompressDCtx(c->dctx, (char *)dest + out, dest_size - out,
                                p, frame);
        if (ZSTD_isError(n)) {
            return -EIO;
        }
        in += frame;
        out += n;
    }
    return 0;
}

/* ---- Dispatch ---- */

ssize_t qcow2_compress_buf(Qcow2CompressionType type,
                           void *dest, size_t dest_size,
                           const void *src, size_t src_size)
{
    if (src_size > UINT_MAX || dest_size > UINT_MAX) {
        return -EINVAL;
    }
    switch (type) {
    case QCOW2_COMPRESSION_ZLIB:
        return zlib_compress(codec_ctx(), dest, dest_size, src, src_size);
    case QCOW2_COMPRESSION_ZSTD:
        return zstd_compress(codec_ctx(), dest, dest_size, src, src_size);
    }
    return -EINVAL;
}

int qcow2_decompress_buf(Qcow2CompressionType type,
                         void *dest, size_t dest_size,
                         const void *src, size_t src_size)
{
    if (src_size > UINT_MAX || dest_size > UINT_MAX || dest_size == 0) {
        return -EIO;
    }
    switch (type) {
    case QCOW2_COMPRESSION_ZLIB:
        return zlib_decompress(codec_ctx(), dest, dest_size, src, src_size);
    case QCOW2_COMPRESSION_ZSTD:
        return zstd_decompress(codec_ctx(), dest, dest_size, src, src_size);
    }
    return -EIO;
}

/* ---- Coroutine entry points ---- */

/* One request handed to a worker; the caller's coroutine waits on it. */
typedef struct CodecJob {
    Qcow2CompressionType type;
    bool decompress;
    void *dest;
    size_t dest_size;
    const void *src;
    size_t src_size;
    ssize_t ret;
} CodecJob;

/* Worker side: run the request on this worker's contexts. */
static int codec_job_run(void *opaque)
{
    CodecJob *j = opaque;

    if (j->decompress) {
        j->ret = qcow2_decompress_buf(j->type, j->dest, j->dest_size,
                                      j->src, j->src_size);
    } else {
        j->ret = qcow2_compress_buf(j->type, j->dest, j->dest_size,
                                    j->src, j->src_size);
    }
    return 0;
}

/* Worth a hand-over to the pool?  Measured (strata-bench-compress): a
 * worker pays off from 4 KiB up, and for zlib compression (~40-60 MiB/s
 * a core, the slow one) at every cluster size. */
static bool codec_offload(const CodecJob *j, size_t work)
{
    if (!j->decompress && j->type == QCOW2_COMPRESSION_ZLIB) {
        return true;
    }
    return work >= QCOW2_COMPRESS_INLINE_MAX;
}

/* Small buffers and callers outside coroutines run in place; the rest
 * go to the pool, on the codecs' lane. */
static ssize_t coroutine_fn codec_co_run(CodecJob *j, size_t work)
{
    if (!codec_offload(j, work) || !co_self()) {
        codec_job_run(j);
    } else {
        pthread_once(&codec_once, codec_key_init);
        thread_pool_run_lane(aio_get_default(), &codec_lane, codec_job_run, j);
    }
    return j->ret;
}

ssize_t coroutine_fn qcow2_co_compress(Qcow2CompressionType type,
                                       void *dest, size_t dest_size,
                                       const void *src, size_t src_size)
{
    CodecJob j = {
        .type = type, .dest = dest, .dest_size = dest_size,
        .src = src, .src_size = src_size,
    };

    return codec_co_run(&j, src_size);
}

int coroutine_fn qcow2_co_decompress(Qcow2CompressionType type,
                                     void *dest, size_t dest_size,
                                     const void *src, size_t src_size)
{
    CodecJob j = {
        .type = type, .decompress = true, .dest = dest,
        .dest_size = dest_size, .src = src, .src_size = src_size,
    };

    return codec_co_run(&j, dest_size);
}

/* ---- Batches ---- */

/* A batch's share for one worker, and the coroutine that waits for it. */
typedef struct BatchPart {
    Qcow2CompressionType type;
    Qcow2DecompressItem *items;
    int n;
    size_t dest_size;
    int ret;
    int *pending;
    Coroutine *const *waiter;
} BatchPart;

/* Worker side: every item of the part (a failure does not stop the
 * others: the caller fails the whole read anyway). */
static int batch_part_run(void *opaque)
{
    BatchPart *p = opaque;

    p->ret = 0;
    for (int i = 0; i < p->n; i++) {
        Qcow2DecompressItem *it = &p->items[i];

        if (qcow2_decompress_buf(p->type, it->dest, p->dest_size, it->src,
                                 it->src_size) < 0) {
            p->ret = -EIO;
        }
    }
    return 0;
}

/* A part after the first: its own coroutine, so that the parts queue on
 * the lane together; the last one to finish wakes the caller. */
static void coroutine_fn batch_part_co(void *opaque)
{
    BatchPart *p = opaque;

    thread_pool_run_lane(aio_get_default(), &codec_lane, batch_part_run, p);
    if (--*p->pending == 0 && *p->waiter) {
        co_wake_later(*p->waiter);
    }
}

/* Cut @n items into @nparts nearly equal parts. */
static void batch_split(BatchPart *parts, int nparts,
                        Qcow2CompressionType type,
                        Qcow2DecompressItem *items, int n, size_t dest_size)
{
    for (int i = 0, first = 0; i < nparts; i++) {
        int cnt = (n - first) / (nparts - i);

        parts[i] = (BatchPart) {
            .type = type, .items = items + first, .n = cnt,
            .dest_size = dest_size,
        };
        first += cnt;
    }
}

int coroutine_fn qcow2_co_decompress_many(Qcow2CompressionType type,
                                          Qcow2DecompressItem *items, int n,
                                          size_t dest_size)
{
    BatchPart parts[QCOW2_BATCH_MAX_PARTS];
    Coroutine *waiter = NULL;
    int nparts, pending = 0, ret = 0;

    if (n <= 0) {
        return 0;
    }
    if (!co_self() || (size_t)n * dest_size < QCOW2_COMPRESS_INLINE_MAX) {
        batch_split(parts, 1, type, items, n, dest_size);
        batch_part_run(&parts[0]);
        return parts[0].ret;
    }
    pthread_once(&codec_once, codec_key_init);
    nparts = MIN(MIN(n, codec_lane.width), QCOW2_BATCH_MAX_PARTS);
    batch_split(parts, nparts, type, items, n, dest_size);
    for (int i = 1; i < nparts; i++) {
        parts[i].pending = &pending;
        parts[i].waiter = &waiter;
        pending++;
        co_enter(co_create(batch_part_co, &parts[i]));
    }
    thread_pool_run_lane(aio_get_default(), &codec_lane, batch_part_run,
                         &parts[0]);
    if (pending) {
        waiter = co_self();
        co_yield();
    }
    for (int i = 0; i < nparts; i++) {
        ret = parts[i].ret < 0 ? parts[i].ret : ret;
    }
    return ret;
}
