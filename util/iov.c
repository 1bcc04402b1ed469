#include "config.h"

#include <glib.h>
#include <string.h>

#include "util/cutils.h"
#include "util/iov.h"

void iov_vec_init(IOVector *v, int alloc_hint)
{
    memset(v, 0, sizeof(*v));
    if (alloc_hint < 1) {
        alloc_hint = 1;
    }
    v->iov = g_new(struct iovec, alloc_hint);
    v->nalloc = alloc_hint;
}

void iov_vec_init_buf(IOVector *v, void *buf, size_t len)
{
    memset(v, 0, sizeof(*v));
    v->local.iov_base = buf;
    v->local.iov_len = len;
    v->iov = &v->local;
    v->niov = 1;
    v->nalloc = -1;
    v->size = len;
}

void iov_vec_init_external(IOVector *v, struct iovec *iov, int niov)
{
    memset(v, 0, sizeof(*v));
    v->iov = iov;
    v->niov = niov;
    v->nalloc = -1;
    v->size = iov_size(iov, niov);
}

/* Make room for one more element; a fixed (local/external) array is
 * first copied into an owned one so that adding always works. */
static void iov_vec_grow(IOVector *v)
{
    if (v->nalloc == -1) {
        struct iovec *owned = g_new(struct iovec, v->niov + 4);

        memcpy(owned, v->iov, v->niov * sizeof(*owned));
        v->iov = owned;
        v->nalloc = v->niov + 4;
    }
    if (v->niov == v->nalloc) {
        v->nalloc = v->nalloc ? v->nalloc * 2 : 4;
        v->iov = g_renew(struct iovec, v->iov, v->nalloc);
    }
}

void iov_vec_add(IOVector *v, void *base, size_t len)
{
    iov_vec_grow(v);
    v->iov[v->niov].iov_base = base;
    v->iov[v->niov].iov_len = len;
    v->niov++;
    v->size += len;
}

void iov_vec_concat(IOVector *dst, const IOVector *src, size_t offset, size_t len)
{
    g_assert(offset <= src->size && len <= src->size - offset);
    for (int i = 0; i < src->niov && len > 0; i++) {
        size_t elen = src->iov[i].iov_len;
        size_t n;

        if (offset >= elen) {
            offset -= elen;
            continue;
        }
        n = MIN(elen - offset, len);
        iov_vec_add(dst, (char *)src->iov[i].iov_base + offset, n);
        offset = 0;
        len -= n;
    }
}

void iov_vec_init_slice(IOVector *dst, const IOVector *src, size_t offset, size_t len)
{
    iov_vec_init(dst, MAX(src->niov, 1));
    iov_vec_concat(dst, src, offset, len);
}

void iov_vec_reset(IOVector *v)
{
    if (v->nalloc == -1) {
        /* nothing owned: becomes an empty growable vector */
        iov_vec_init(v, 1);
        return;
    }
    v->niov = 0;
    v->size = 0;
}

void iov_vec_destroy(IOVector *v)
{
    if (v->nalloc != -1) {
        g_free(v->iov);
    }
    memset(v, 0, sizeof(*v));
}

/* Called on each piece of a walked range: @base points into the vector,
 * @done counts the range's bytes before it.  false stops the walk. */
typedef bool IovPieceFn(char *base, size_t done, size_t n, void *opaque);

/* The one walk behind the copy, fill and zero-test helpers: visit
 * [@offset, @offset + @bytes) of the vector piece by piece.  Returns the
 * bytes visited (fewer when the vector ends first or @fn stops). */
static size_t iov_walk(const struct iovec *iov, int niov, size_t offset,
                       size_t bytes, IovPieceFn *fn, void *opaque)
{
    size_t done = 0;

    for (int i = 0; i < niov && done < bytes; i++) {
        size_t n;

        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        n = MIN(iov[i].iov_len - offset, bytes - done);
        if (!fn((char *)iov[i].iov_base + offset, done, n, opaque)) {
            break;
        }
        done += n;
        offset = 0;
    }
    return done;
}

/* iov_from_buf(): copy the next piece of the buffer into the vector. */
static bool piece_from_buf(char *base, size_t done, size_t n, void *buf)
{
    memcpy(base, (const char *)buf + done, n);
    return true;
}

/* iov_to_buf(): copy a piece of the vector into the buffer. */
static bool piece_to_buf(char *base, size_t done, size_t n, void *buf)
{
    memcpy((char *)buf + done, base, n);
    return true;
}

/* iov_memset(): fill a piece with the byte *@fillc points to. */
static bool piece_memset(char *base, size_t done, size_t n, void *fillc)
{
    memset(base, *(int *)fillc, n);
    return true;
}

/* iov_vec_is_zero(): stop, clearing *@zero, at the first non-zero piece. */
static bool piece_is_zero(char *base, size_t done, size_t n, void *zero)
{
    *(bool *)zero = buffer_is_zero(base, n);
    return *(bool *)zero;
}

size_t iov_from_buf(const struct iovec *iov, int niov, size_t offset,
                    const void *buf, size_t bytes)
{
    return iov_walk(iov, niov, offset, bytes, piece_from_buf, (void *)buf);
}

size_t iov_to_buf(const struct iovec *iov, int niov, size_t offset,
                  void *buf, size_t bytes)
{
    return iov_walk(iov, niov, offset, bytes, piece_to_buf, buf);
}

size_t iov_memset(const struct iovec *iov, int niov, size_t offset,
                  int fillc, size_t bytes)
{
    return iov_walk(iov, niov, offset, bytes, piece_memset, &fillc);
}

size_t iov_size(const struct iovec *iov, int niov)
{
    size_t size = 0;

    for (int i = 0; i < niov; i++) {
        size += iov[i].iov_len;
    }
    return size;
}

bool iov_vec_is_zero(const IOVector *v, size_t offset, size_t bytes)
{
    bool zero = true;

    iov_walk(v->iov, v->niov, offset, bytes, piece_is_zero, &zero);
    return zero;
}
