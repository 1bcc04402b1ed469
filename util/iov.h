/*
 * I/O vectors.  IOVector is the one buffer description on the data path:
 * a list of struct iovec plus its total size.  Slices share memory with
 * the parent; only the iovec array is allocated.
 */
#ifndef STRATA_IOV_H
#define STRATA_IOV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef struct IOVector {
    struct iovec *iov;
    int niov;
    int nalloc;          /* -1: iov points to 'local' or external memory */
    size_t size;
    struct iovec local;  /* storage for the single-buffer case */
} IOVector;

void iov_vec_init(IOVector *v, int alloc_hint);
/* Single buffer, no allocation: v->iov = &v->local. */
void iov_vec_init_buf(IOVector *v, void *buf, size_t len);
/* Wraps an external iovec array (not copied, not freed). */
void iov_vec_init_external(IOVector *v, struct iovec *iov, int niov);
void iov_vec_add(IOVector *v, void *base, size_t len);
/* Append [offset, offset+len) of @src to @dst (dst must be init'ed). */
void iov_vec_concat(IOVector *dst, const IOVector *src, size_t offset, size_t len);
/* dst = [offset, offset+len) of src (dst is initialised here). */
void iov_vec_init_slice(IOVector *dst, const IOVector *src, size_t offset, size_t len);
void iov_vec_reset(IOVector *v);   /* drop elements, keep allocation */
void iov_vec_destroy(IOVector *v);

size_t iov_from_buf(const struct iovec *iov, int niov, size_t offset,
                    const void *buf, size_t bytes);
size_t iov_to_buf(const struct iovec *iov, int niov, size_t offset,
                  void *buf, size_t bytes);
size_t iov_memset(const struct iovec *iov, int niov, size_t offset,
                  int fillc, size_t bytes);
size_t iov_size(const struct iovec *iov, int niov);
bool iov_vec_is_zero(const IOVector *v, size_t offset, size_t bytes);

static inline size_t iov_vec_from_buf(IOVector *v, size_t off, const void *buf, size_t n)
{
    return iov_from_buf(v->iov, v->niov, off, buf, n);
}
static inline size_t iov_vec_to_buf(const IOVector *v, size_t off, void *buf, size_t n)
{
    return iov_to_buf(v->iov, v->niov, off, buf, n);
}
static inline size_t iov_vec_memset(IOVector *v, size_t off, int c, size_t n)
{
    return iov_memset(v->iov, v->niov, off, c, n);
}

#endif
