#include "config.h"

#include <glib.h>
#include <string.h>

#include "util/hbitmap.h"

/*
 * Reference model: one bool per granule.  Every operation is applied to
 * both and every query compared.
 */
typedef struct {
    HBitmap *hb;
    bool *bits;
    uint64_t size;
    int gran;
} Model;

static uint64_t model_granules(uint64_t size, int gran)
{
    return (size + (1ULL << gran) - 1) >> gran;
}

static void model_init(Model *m, uint64_t size, int gran)
{
    m->hb = hbitmap_alloc(size, gran);
    m->bits = g_new0(bool, model_granules(size, gran) + 1);
    m->size = size;
    m->gran = gran;
}

static void model_free(Model *m)
{
    hbitmap_free(m->hb);
    g_free(m->bits);
}

static void model_change(Model *m, uint64_t start, uint64_t count, bool set)
{
    uint64_t end = MIN(start + count, m->size);

    for (uint64_t u = start; u < end; u++) {
        m->bits[u >> m->gran] = set;
    }
    if (set) {
        hbitmap_set(m->hb, start, count);
    } else {
        hbitmap_reset(m->hb, start, count);
    }
}

static uint64_t model_count(const Model *m)
{
    uint64_t n = 0;

    for (uint64_t g = 0; g < model_granules(m->size, m->gran); g++) {
        n += m->bits[g];
    }
    return n << m->gran;
}

/* First unit in [start, start+count) whose granule bit equals @want. */
static int64_t model_next(const Model *m, uint64_t start, uint64_t count, bool want)
{
    uint64_t end = MIN(start + count, m->size);

    for (uint64_t u = start; u < end; u++) {
        if (m->bits[u >> m->gran] == want) {
            return u;
        }
    }
    return -1;
}

static void model_check_queries(const Model *m, GRand *r)
{
    g_assert_cmpuint(hbitmap_count(m->hb), ==, model_count(m));
    g_assert_cmpint(hbitmap_is_empty(m->hb), ==, model_count(m) == 0);
    for (int i = 0; i < 20; i++) {
        uint64_t start = g_rand_int_range(r, 0, m->size + 2);
        uint64_t count = g_rand_int_range(r, 1, m->size + 2);

        g_assert_cmpint(hbitmap_get(m->hb, start), ==,
                        start < m->size && m->bits[start >> m->gran]);
        g_assert_cmpint(hbitmap_next_dirty(m->hb, start, count), ==,
                        model_next(m, start, count, true));
        g_assert_cmpint(hbitmap_next_zero(m->hb, start, count), ==,
                        model_next(m, start, count, false));
    }
}

/* Mostly short ranges, sometimes long ones spanning many words. */
static void model_random_op(Model *m, GRand *r)
{
    uint64_t start = g_rand_int_range(r, 0, m->size);
    uint64_t count = g_rand_boolean(r) ? g_rand_int_range(r, 1, 200)
                                       : g_rand_int_range(r, 1, m->size + 100);

    model_change(m, start, count, g_rand_int_range(r, 0, 3) != 0 ? true : false);
    if (g_rand_int_range(r, 0, 4) == 0) {
        /* make resets frequent enough to create holes */
        start = g_rand_int_range(r, 0, m->size);
        model_change(m, start, g_rand_int_range(r, 1, 5000), false);
    }
}

static void run_random(uint64_t size, int gran, guint32 seed)
{
    GRand *r = g_rand_new_with_seed(seed);
    Model m;

    model_init(&m, size, gran);
    model_check_queries(&m, r);
    for (int op = 0; op < 300; op++) {
        model_random_op(&m, r);
        model_check_queries(&m, r);
    }
    hbitmap_reset_all(m.hb);
    memset(m.bits, 0, model_granules(size, gran));
    model_check_queries(&m, r);
    model_free(&m);
    g_rand_free(r);
}

static void test_random_g0(void)
{
    run_random(70000, 0, 1);
    run_random(64, 0, 2);
    run_random(4097, 0, 3);
}

static void test_random_gran(void)
{
    run_random(300000, 3, 4);
    run_random(12345, 9, 5);
    run_random(1000, 12, 6);
}

static void test_basic(void)
{
    HBitmap *hb = hbitmap_alloc(1 << 20, 9);

    g_assert_cmpint(hbitmap_granularity(hb), ==, 9);
    g_assert_cmpuint(hbitmap_size(hb), ==, 1 << 20);
    g_assert_true(hbitmap_is_empty(hb));
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 1 << 20), ==, -1);
    g_assert_cmpint(hbitmap_next_zero(hb, 100, 1 << 20), ==, 100);

    /* partially covered granules count */
    hbitmap_set(hb, 1000, 10);
    g_assert_cmpuint(hbitmap_count(hb), ==, 512);
    g_assert_true(hbitmap_get(hb, 512));
    g_assert_true(hbitmap_get(hb, 1023));
    g_assert_false(hbitmap_get(hb, 1024));
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 1 << 20), ==, 512);
    g_assert_cmpint(hbitmap_next_dirty(hb, 700, 10), ==, 700);
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 512), ==, -1);
    g_assert_cmpint(hbitmap_next_zero(hb, 512, 1 << 20), ==, 1024);

    /* far away bit: found through the upper levels */
    hbitmap_set(hb, (1 << 20) - 1, 1);
    g_assert_cmpint(hbitmap_next_dirty(hb, 1024, 1 << 20), ==, (1 << 20) - 512);
    hbitmap_reset(hb, 0, 1 << 20);
    g_assert_true(hbitmap_is_empty(hb));
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 1 << 20), ==, -1);
    hbitmap_free(hb);
}

static void test_large(void)
{
    uint64_t size = 1ULL << 40;     /* 1 TiB at 64 KiB granularity */
    HBitmap *hb = hbitmap_alloc(size, 16);

    hbitmap_set(hb, size - 1, 1);
    hbitmap_set(hb, 5ULL << 30, 1);
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, size), ==, 5LL << 30);
    g_assert_cmpint(hbitmap_next_dirty(hb, (5ULL << 30) + 65536, size), ==,
                    (int64_t)(size - 65536));
    g_assert_cmpuint(hbitmap_count(hb), ==, 2 * 65536);
    hbitmap_set(hb, 0, size);
    g_assert_cmpuint(hbitmap_count(hb), ==, size);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, size), ==, -1);
    hbitmap_reset(hb, 3ULL << 35, 1);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, size), ==, 3LL << 35);
    hbitmap_free(hb);
}

static void test_truncate(void)
{
    HBitmap *hb = hbitmap_alloc(1000, 0);

    hbitmap_set(hb, 0, 1000);
    hbitmap_truncate(hb, 100);
    g_assert_cmpuint(hbitmap_size(hb), ==, 100);
    g_assert_cmpuint(hbitmap_count(hb), ==, 100);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, 1000), ==, -1);
    g_assert_false(hbitmap_get(hb, 100));

    /* growing exposes clear bits, not the old ones */
    hbitmap_truncate(hb, 100000);
    g_assert_cmpuint(hbitmap_count(hb), ==, 100);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, 100000), ==, 100);
    g_assert_cmpint(hbitmap_next_dirty(hb, 100, 100000), ==, -1);
    hbitmap_set(hb, 99999, 1);
    g_assert_cmpint(hbitmap_next_dirty(hb, 100, 100000), ==, 99999);

    /* shrink across several levels, then grow again */
    hbitmap_truncate(hb, 10);
    g_assert_cmpuint(hbitmap_count(hb), ==, 10);
    hbitmap_truncate(hb, 1 << 22);
    g_assert_cmpint(hbitmap_next_dirty(hb, 10, 1 << 22), ==, -1);
    g_assert_cmpuint(hbitmap_count(hb), ==, 10);
    hbitmap_truncate(hb, 0);
    g_assert_true(hbitmap_is_empty(hb));
    g_assert_cmpint(hbitmap_next_zero(hb, 0, 10), ==, -1);
    hbitmap_free(hb);
}

/* Random ops interleaved with truncations, against the model. */
static void test_random_truncate(void)
{
    GRand *r = g_rand_new_with_seed(7);
    Model m;

    model_init(&m, 5000, 2);
    for (int round = 0; round < 30; round++) {
        uint64_t nsize = g_rand_int_range(r, 1, 20000);
        uint64_t ng = model_granules(nsize, m.gran);
        uint64_t og = model_granules(m.size, m.gran);

        for (int op = 0; op < 20; op++) {
            model_random_op(&m, r);
        }
        model_check_queries(&m, r);
        m.bits = g_renew(bool, m.bits, ng + 1);
        if (ng > og) {
            memset(m.bits + og, 0, ng - og);
        }
        m.size = nsize;
        hbitmap_truncate(m.hb, nsize);
        model_check_queries(&m, r);
    }
    model_free(&m);
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/hbitmap/basic", test_basic);
    g_test_add_func("/hbitmap/large", test_large);
    g_test_add_func("/hbitmap/truncate", test_truncate);
    g_test_add_func("/hbitmap/random/gran0", test_random_g0);
    g_test_add_func("/hbitmap/random/granularity", test_random_gran);
    g_test_add_func("/hbitmap/random/truncate", test_random_truncate);
    return g_test_run();
}
