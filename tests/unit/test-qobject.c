#include "config.h"
/* QObject, QList and QDict: refcounts, types, order, option helpers. */
#include <stdarg.h>
#include <string.h>
#include <glib.h>
#include "qobject/qobject.h"

/* Most dicts here hold strings only: build one from NULL-terminated
 * key, value pairs (in insertion order). */
static QDict *str_dict(const char *key, ...)
{
    QDict *d = qdict_new();
    va_list ap;

    va_start(ap, key);
    for (; key; key = va_arg(ap, const char *)) {
        qdict_put_str(d, key, va_arg(ap, const char *));
    }
    va_end(ap);
    return d;
}

/* Independent copy of QEMU's bucket function, from its description. */
static unsigned ref_bucket(const char *key)
{
    uint32_t v = 0x238F13AFu * (uint32_t)strlen(key);

    for (uint32_t i = 0; key[i]; i++) {
        v = v + ((uint32_t)(uint8_t)key[i] << (i * 5 % 24));
    }
    return (1103515243u * v + 12345u) % 512;
}

static void test_refcount(void)
{
    QString *s = qstring_from_str("abc");
    QList *l = qlist_new();

    g_assert_cmpuint(QOBJECT(s)->refcnt, ==, 1);
    qlist_append(l, qobject_ref(s));
    g_assert_cmpuint(QOBJECT(s)->refcnt, ==, 2);
    qobject_unref(l);
    g_assert_cmpuint(QOBJECT(s)->refcnt, ==, 1);
    qobject_unref(s);
    qobject_unref(NULL);
}

static void test_scalars(void)
{
    g_autoptr(QObject) i = QOBJECT(qnum_from_int(-5));
    g_autoptr(QObject) u = QOBJECT(qnum_from_uint(UINT64_MAX));
    g_autoptr(QObject) d = QOBJECT(qnum_from_double(1.5));
    g_autoptr(QObject) b = QOBJECT(qbool_from_bool(true));
    g_autoptr(QObject) n = QOBJECT(qnull());
    g_autoptr(QObject) s = QOBJECT(qstring_from_substr("hello", 1, 3));
    int64_t iv;
    uint64_t uv;

    g_assert_cmpint(qnum_get_int(qobject_to_qnum(i)), ==, -5);
    g_assert_false(qnum_get_try_uint(qobject_to_qnum(i), &uv));
    g_assert_false(qnum_get_try_int(qobject_to_qnum(u), &iv));
    g_assert_cmpuint(qnum_get_uint(qobject_to_qnum(u)), ==, UINT64_MAX);
    g_assert_false(qnum_get_try_int(qobject_to_qnum(d), &iv));
    g_assert_cmpfloat(qnum_get_double(qobject_to_qnum(d)), ==, 1.5);
    g_assert_cmpfloat(qnum_get_double(qobject_to_qnum(i)), ==, -5.0);
    g_assert_true(qbool_get_bool(qobject_to_qbool(b)));
    g_assert_cmpint(qobject_type(n), ==, QTYPE_QNULL);
    g_assert_cmpstr(qstring_get_str(qobject_to_qstring(s)), ==, "el");
    g_assert_null(qobject_to_qdict(s));
    g_assert_null(qobject_to_qlist(s));
    g_assert_null(qobject_to_qnum(s));
    g_assert_null(qobject_to_qbool(s));
    g_assert_null(qobject_to_qstring(NULL));
    g_assert_cmpint(qobject_type(NULL), ==, QTYPE_NONE);
}

static void test_equal(void)
{
    g_autoptr(QObject) a = QOBJECT(qnum_from_int(7));
    g_autoptr(QObject) b = QOBJECT(qnum_from_uint(7));
    g_autoptr(QObject) c = QOBJECT(qnum_from_double(7.5));
    g_autoptr(QDict) d1 = qdict_new();
    g_autoptr(QDict) d2 = qdict_new();

    g_assert_true(qobject_is_equal(a, b));
    g_assert_false(qobject_is_equal(a, c));
    qdict_put_int(d1, "x", 1);
    qdict_put_str(d1, "y", "z");
    qdict_put_str(d2, "y", "z");
    g_assert_false(qobject_is_equal(QOBJECT(d1), QOBJECT(d2)));
    qdict_put_int(d2, "x", 1);
    g_assert_true(qobject_is_equal(QOBJECT(d1), QOBJECT(d2)));
}

static void test_list(void)
{
    g_autoptr(QList) l = qlist_new();
    QListEntry *e;
    int n = 0;

    g_assert_true(qlist_empty(l));
    g_assert_null(qlist_peek(l));
    g_assert_null(qlist_pop(l));
    qlist_append_int(l, 1);
    qlist_append_str(l, "two");
    qlist_append_bool(l, false);
    g_assert_cmpuint(qlist_size(l), ==, 3);
    QLIST_FOREACH_ENTRY(l, e) {
        n++;
        g_assert_nonnull(qlist_entry_obj(e));
    }
    g_assert_cmpint(n, ==, 3);
    QObject *first = qlist_pop(l);
    g_assert_cmpint(qnum_get_int(qobject_to_qnum(first)), ==, 1);
    qobject_unref(first);
    g_assert_cmpuint(qlist_size(l), ==, 2);
}

/* Many keys: iteration must be bucket order, newest first per bucket. */
static void test_dict_order(void)
{
    g_autoptr(QDict) d = qdict_new();
    GPtrArray *expect[512];
    const QDictEntry *e;
    int n = 0;

    for (int b = 0; b < 512; b++) {
        expect[b] = g_ptr_array_new_with_free_func(g_free);
    }
    for (int i = 0; i < 3000; i++) {
        char *key = g_strdup_printf("key-%d", i);
        qdict_put_int(d, key, i);
        g_ptr_array_insert(expect[ref_bucket(key)], 0, key);
    }
    qdict_put_int(d, "key-17", -1);   /* replace keeps the position */
    e = qdict_first(d);
    for (int b = 0; b < 512; b++) {
        for (guint j = 0; j < expect[b]->len; j++, n++) {
            g_assert_nonnull(e);
            g_assert_cmpstr(qdict_entry_key(e), ==, expect[b]->pdata[j]);
            e = qdict_next(d, e);
        }
        g_ptr_array_unref(expect[b]);
    }
    g_assert_null(e);
    g_assert_cmpint(n, ==, 3000);
    g_assert_cmpuint(qdict_size(d), ==, 3000);
    g_assert_cmpint(qdict_get_int(d, "key-17"), ==, -1);
}

static void test_dict_basic(void)
{
    g_autoptr(QDict) d = qdict_new();

    qdict_put_str(d, "s", "v");
    qdict_put_int(d, "i", 3);
    qdict_put_uint(d, "u", 4);
    qdict_put_double(d, "f", 0.25);
    qdict_put_bool(d, "b", true);
    qdict_put_null(d, "n");
    qdict_put(d, "d", qdict_new());
    qdict_put(d, "l", qlist_new());
    g_assert_cmpuint(qdict_size(d), ==, 8);
    g_assert_cmpstr(qdict_get_str(d, "s"), ==, "v");
    g_assert_null(qdict_get_try_str(d, "i"));
    g_assert_true(qdict_haskey(d, "n"));
    g_assert_nonnull(qdict_get_qdict(d, "d"));
    g_assert_nonnull(qdict_get_qlist(d, "l"));
    g_assert_null(qdict_get_qdict(d, "l"));
    qdict_del(d, "n");
    qdict_del(d, "missing");
    g_assert_false(qdict_haskey(d, "n"));
    g_assert_cmpuint(qdict_size(d), ==, 7);
}

static void test_dict_typed_getters(void)
{
    g_autoptr(QDict) d = str_dict("on", "on", "off", "off", "yes", "yes",
                                  "false", "false", "junk", "maybe",
                                  "num", "-42", "bad", "12x", NULL);

    qdict_put_bool(d, "b", false);
    qdict_put_int(d, "i", 9);
    qdict_put_uint(d, "big", UINT64_MAX);
    g_assert_true(qdict_get_bool(d, "on"));
    g_assert_false(qdict_get_try_bool(d, "off", true));
    g_assert_true(qdict_get_try_bool(d, "yes", false));
    g_assert_false(qdict_get_try_bool(d, "false", true));
    g_assert_true(qdict_get_try_bool(d, "junk", true));
    g_assert_false(qdict_get_bool(d, "b"));
    g_assert_true(qdict_get_try_bool(d, "absent", true));
    g_assert_cmpint(qdict_get_int(d, "num"), ==, -42);
    g_assert_cmpint(qdict_get_try_int(d, "bad", 5), ==, 5);
    g_assert_cmpint(qdict_get_try_int(d, "i", 0), ==, 9);
    g_assert_cmpint(qdict_get_try_int(d, "big", 1), ==, 1);
    g_assert_cmpint(qdict_get_try_int(d, "b", 2), ==, 2);
}

static void test_clone_join_extract(void)
{
    g_autoptr(QDict) d = str_dict("file.filename", "x", "file.driver", "file",
                                  "driver", "raw", NULL);
    g_autoptr(QDict) src = str_dict("driver", "qcow2", "new", "1", NULL);
    QDict *sub = NULL;

    g_autoptr(QDict) clone = qdict_clone_shallow(d);
    g_assert_true(qobject_is_equal(QOBJECT(clone), QOBJECT(d)));
    qdict_extract_subqdict(d, &sub, "file.");
    g_assert_cmpuint(qdict_size(d), ==, 1);
    g_assert_cmpstr(qdict_get_str(sub, "filename"), ==, "x");
    g_assert_cmpstr(qdict_get_str(sub, "driver"), ==, "file");
    qobject_unref(sub);
    qdict_extract_subqdict(clone, NULL, "file.");
    g_assert_cmpuint(qdict_size(clone), ==, 1);

    qdict_join(d, src, false);
    g_assert_cmpstr(qdict_get_str(d, "driver"), ==, "raw");
    g_assert_cmpstr(qdict_get_str(d, "new"), ==, "1");
    g_assert_true(qdict_haskey(src, "driver"));
    g_assert_false(qdict_haskey(src, "new"));
    qdict_join(d, src, true);
    g_assert_cmpstr(qdict_get_str(d, "driver"), ==, "qcow2");
    g_assert_cmpuint(qdict_size(src), ==, 0);
}

static void test_flatten(void)
{
    g_autoptr(QObject) obj = qobject_from_json(
        "{\"a\": {\"b\": 1, \"c\": {\"d\": \"x\"}}, \"l\": [1, {\"e\": true}],"
        " \"empty\": {}, \"el\": [], \"top\": null}", &error_abort);
    QDict *d = qobject_to_qdict(obj);

    qdict_flatten(d);
    g_assert_cmpuint(qdict_size(d), ==, 7);
    g_assert_cmpint(qdict_get_int(d, "a.b"), ==, 1);
    g_assert_cmpstr(qdict_get_str(d, "a.c.d"), ==, "x");
    g_assert_cmpint(qdict_get_int(d, "l.0"), ==, 1);
    g_assert_true(qdict_get_bool(d, "l.1.e"));
    g_assert_nonnull(qdict_get_qdict(d, "empty"));
    g_assert_nonnull(qdict_get_qlist(d, "el"));
    g_assert_true(qdict_haskey(d, "top"));
}

static void test_crumple(void)
{
    g_autoptr(QDict) d = str_dict("driver", "qcow2", "file.driver", "file",
                                  "file.filename", "/x", "l.0", "a",
                                  "l.1.k", "b", "a..b", "dot", NULL);
    g_autoptr(QDict) bad = str_dict("a", "1", "a.b", "2", NULL);
    g_autoptr(QDict) mixed = str_dict("a.0", "1", "a.x", "2", NULL);
    Error *err = NULL;

    g_autoptr(QObject) c = qdict_crumple(d, &error_abort);
    g_autoptr(QObject) want = qobject_from_json(
        "{\"driver\": \"qcow2\", \"file\": {\"driver\": \"file\","
        " \"filename\": \"/x\"}, \"l\": [\"a\", {\"k\": \"b\"}],"
        " \"a.b\": \"dot\"}", &error_abort);
    g_assert_true(qobject_is_equal(c, want));

    g_assert_null(qdict_crumple(bad, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Cannot mix scalar and non-scalar keys");
    error_free(err);
    err = NULL;
    g_assert_null(qdict_crumple(mixed, &err));
    g_assert_nonnull(err);
    error_free(err);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qobject/refcount", test_refcount);
    g_test_add_func("/qobject/scalars", test_scalars);
    g_test_add_func("/qobject/equal", test_equal);
    g_test_add_func("/qobject/list", test_list);
    g_test_add_func("/qdict/order", test_dict_order);
    g_test_add_func("/qdict/basic", test_dict_basic);
    g_test_add_func("/qdict/typed-getters", test_dict_typed_getters);
    g_test_add_func("/qdict/clone-join-extract", test_clone_join_extract);
    g_test_add_func("/qdict/flatten", test_flatten);
    g_test_add_func("/qdict/crumple", test_crumple);
    return g_test_run();
}
