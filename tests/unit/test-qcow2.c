#include "config.h"
/*
 * qcow2 on-disk encodings: refcount entries of every width, compressed
 * cluster descriptors, subcluster types of extended L2 entries, and the
 * (de)compression round trip of both algorithms.
 */
#include <glib.h>
#include "block/format/qcow2/qcow2.h"

/* Every width packs and unpacks without touching its neighbours. */
static void test_refcount_entries(void)
{
    for (int order = 0; order <= 6; order++) {
        BDRVQcow2State s = { .refcount_order = order,
                             .refcount_bits = 1 << order };
        uint8_t block[512] = { 0 };
        uint64_t max = order == 6 ? UINT64_MAX : (1ULL << (1 << order)) - 1;
        uint64_t n = sizeof(block) * 8 >> order;

        for (uint64_t i = 0; i < n; i++) {
            qcow2_set_refcount_entry(&s, block, i, (i * 7 + 1) & max);
        }
        for (uint64_t i = 0; i < n; i++) {
            g_assert_cmpuint(qcow2_get_refcount_entry(&s, block, i), ==,
                             (i * 7 + 1) & max);
        }
        qcow2_set_refcount_entry(&s, block, 3, 0);
        g_assert_cmpuint(qcow2_get_refcount_entry(&s, block, 2), ==,
                         15 & max);
        g_assert_cmpuint(qcow2_get_refcount_entry(&s, block, 4), ==,
                         29 & max);
    }
}

/* 16-bit refcounts are big-endian, 1-bit ones LSB first (the spec). */
static void test_refcount_layout(void)
{
    BDRVQcow2State s16 = { .refcount_order = 4, .refcount_bits = 16 };
    BDRVQcow2State s1 = { .refcount_order = 0, .refcount_bits = 1 };
    uint8_t b[4] = { 0 };

    qcow2_set_refcount_entry(&s16, b, 1, 0x0102);
    g_assert_cmpuint(b[2], ==, 1);
    g_assert_cmpuint(b[3], ==, 2);
    memset(b, 0, sizeof(b));
    qcow2_set_refcount_entry(&s1, b, 0, 1);
    qcow2_set_refcount_entry(&s1, b, 9, 1);
    g_assert_cmpuint(b[0], ==, 0x01);
    g_assert_cmpuint(b[1], ==, 0x02);
}

/* Descriptor: offset in the low 62 - (cluster_bits - 8) bits, then the
 * number of additional 512-byte sectors. */
static void test_compressed_descriptor(void)
{
    BDRVQcow2State s = { .cluster_bits = 16 };
    int x = 62 - 8;
    uint64_t host, len;
    uint64_t l2e = QCOW_OFLAG_COMPRESSED | 0x12345 | (3ULL << x);

    qcow2_parse_compressed(&s, l2e, &host, &len);
    g_assert_cmpuint(host, ==, 0x12345);
    g_assert_cmpuint(len, ==, 4 * 512 - (0x12345 & 511));
}

/* Extended L2: alloc bits low, zero bits high, both set is invalid. */
static void test_subcluster_types(void)
{
    BDRVQcow2State s = { .extended_l2 = true, .cluster_bits = 16 };
    uint64_t data = 0x50000 | QCOW_OFLAG_COPIED;

    g_assert_cmpint(qcow2_subcluster_type(&s, data, 1, 0), ==,
                    QCOW2_SC_NORMAL);
    g_assert_cmpint(qcow2_subcluster_type(&s, data, 1, 1), ==,
                    QCOW2_SC_UNALLOC_ALLOC);
    g_assert_cmpint(qcow2_subcluster_type(&s, data, 1ULL << 33, 1), ==,
                    QCOW2_SC_ZERO_ALLOC);
    g_assert_cmpint(qcow2_subcluster_type(&s, 0, 1ULL << 32, 0), ==,
                    QCOW2_SC_ZERO_PLAIN);
    g_assert_cmpint(qcow2_subcluster_type(&s, 0, 1, 0), ==,
                    QCOW2_SC_INVALID);
    g_assert_cmpint(qcow2_subcluster_type(&s, data, 1 | (1ULL << 32), 0),
                    ==, QCOW2_SC_INVALID);
}

typedef struct {
    Qcow2CompressionType type;
    int ret;
} RoundTrip;

static void coroutine_fn round_trip_entry(void *opaque)
{
    RoundTrip *rt = opaque;
    g_autofree uint8_t *src = g_malloc(65536);
    g_autofree uint8_t *dst = g_malloc(65536);
    g_autofree uint8_t *out = g_malloc(65536);
    ssize_t n;

    for (int i = 0; i < 65536; i++) {
        src[i] = (i / 100) & 0xff;
    }
    n = qcow2_co_compress(rt->type, dst, 65535, src, 65536);
    g_assert_cmpint(n, >, 0);
    memset(dst + n, 0xaa, 65536 - n);   /* trailing sector garbage */
    rt->ret = qcow2_co_decompress(rt->type, out, 65536, dst,
                                  ROUND_UP(n, 512));
    g_assert_cmpint(rt->ret, ==, 0);
    g_assert(memcmp(src, out, 65536) == 0);
    g_assert_cmpint(qcow2_co_decompress(rt->type, out, 65536, dst, n / 2),
                    ==, -EIO);
    /* random data does not fit: -ENOMEM */
    for (int i = 0; i < 65536; i++) {
        src[i] = g_random_int();
    }
    g_assert_cmpint(qcow2_co_compress(rt->type, dst, 65535, src, 65536), ==,
                    -ENOMEM);
}

static void test_compress_round_trip(void)
{
    for (int t = 0; t <= 1; t++) {
        RoundTrip rt = { .type = t };
        co_run_sync(round_trip_entry, &rt);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    bdrv_init();
    g_test_add_func("/qcow2/refcount-entries", test_refcount_entries);
    g_test_add_func("/qcow2/refcount-layout", test_refcount_layout);
    g_test_add_func("/qcow2/compressed-descriptor",
                    test_compressed_descriptor);
    g_test_add_func("/qcow2/subcluster-types", test_subcluster_types);
    g_test_add_func("/qcow2/compress-round-trip", test_compress_round_trip);
    return g_test_run();
}
