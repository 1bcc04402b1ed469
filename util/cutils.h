/* Small string and number helpers shared by the tools and the engine. */
#ifndef STRATA_CUTILS_H
#define STRATA_CUTILS_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <glib.h>

#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define TiB (1ULL << 40)
#define PiB (1ULL << 50)
#define EiB (1ULL << 60)

#define ROUND_UP(n, d)       (((n) + (d) - 1) / (d) * (d))
#define ROUND_DOWN(n, d)     ((n) / (d) * (d))
#define DIV_ROUND_UP(n, d)   (((n) + (d) - 1) / (d))
#define IS_ALIGNED(n, a)     (((n) % (a)) == 0)
#define QEMU_IS_POW2(n)      ((n) && !((n) & ((n) - 1)))

/*
 * Size parsing as qemu-img does it: decimal (with optional fraction, only
 * when a suffix follows) or hex (0x.., no suffix, no fraction); suffixes
 * k/K M G T P E are powers of 1024, b/B = bytes.  @default_unit is the
 * multiplier used when no suffix is given (1 for bytes).  @end may be NULL:
 * then trailing garbage is an error.  Returns 0, -EINVAL (not a size /
 * trailing garbage) or -ERANGE (does not fit in 64 bits; also negative).
 */
int size_parse(const char *str, const char **end, uint64_t *result);
int size_parse_unit(const char *str, const char **end, uint64_t default_unit,
                    uint64_t *result);
/* Metric variant (k = 1000), used by a few options. */
int size_parse_metric(const char *str, const char **end, uint64_t *result);

/* "1 GiB", "512 B", "1.5 MiB": %0.3g with IEC units switching at >= 1000. */
char *size_to_str(uint64_t val);

/* Strict integer parsers: whole string, base auto (0) or given; 0/-errno. */
int parse_int64(const char *s, int base, int64_t *out);
int parse_uint64(const char *s, int base, uint64_t *out);
int parse_int(const char *s, int base, int *out);

/* Overflow-checked arithmetic: true on overflow. */
static inline bool add_overflow_u64(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_add_overflow(a, b, r);
}
static inline bool add_overflow_i64(int64_t a, int64_t b, int64_t *r)
{
    return __builtin_add_overflow(a, b, r);
}
static inline bool mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_mul_overflow(a, b, r);
}

/* True if @buf (any length, any alignment) is all zero bytes.  Fast. */
bool buffer_is_zero(const void *buf, size_t len);

/* Monotonic clock in ns. */
int64_t clock_ns(void);
/* Wall clock in ns since the epoch. */
int64_t clock_realtime_ns(void);

#endif
