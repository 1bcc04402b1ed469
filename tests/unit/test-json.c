#include "config.h"
/* JSON parser and writer, including byte-exact qemu-img documents. */
#include <string.h>
#include <glib.h>
#include "qobject/qobject.h"

/* qemu-img 10.0 info --output=json of a fresh 1G qcow2 (captured). */
static const char info_doc[] =
    "{\n"
    "    \"children\": [\n"
    "        {\n"
    "            \"name\": \"file\",\n"
    "            \"info\": {\n"
    "                \"children\": [\n"
    "                ],\n"
    "                \"virtual-size\": 197120,\n"
    "                \"filename\": \"/tmp/qo-a.qcow2\",\n"
    "                \"format\": \"file\",\n"
    "                \"actual-size\": 200704,\n"
    "                \"format-specific\": {\n"
    "                    \"type\": \"file\",\n"
    "                    \"data\": {\n"
    "                    }\n"
    "                },\n"
    "                \"dirty-flag\": false\n"
    "            }\n"
    "        }\n"
    "    ],\n"
    "    \"virtual-size\": 1073741824,\n"
    "    \"filename\": \"/tmp/qo-a.qcow2\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"qcow2\",\n"
    "    \"actual-size\": 200704,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"qcow2\",\n"
    "        \"data\": {\n"
    "            \"compat\": \"1.1\",\n"
    "            \"compression-type\": \"zlib\",\n"
    "            \"lazy-refcounts\": false,\n"
    "            \"refcount-bits\": 16,\n"
    "            \"corrupt\": false,\n"
    "            \"extended-l2\": false\n"
    "        }\n"
    "    },\n"
    "    \"dirty-flag\": false\n"
    "}";

static const char measure_doc[] =
    "{\n"
    "    \"required\": 393216,\n"
    "    \"fully-allocated\": 1074135040\n"
    "}";

static const char check_doc[] =
    "{\n"
    "    \"image-end-offset\": 262144,\n"
    "    \"total-clusters\": 16384,\n"
    "    \"check-errors\": 0,\n"
    "    \"filename\": \"/tmp/qo-a.qcow2\",\n"
    "    \"format\": \"qcow2\"\n"
    "}";

/* Builds an ImageInfo-like dict the way QEMU's QAPI visitor fills it. */
static QDict *build_info(const char *fmt, int64_t vsize, int64_t asize)
{
    QDict *d = qdict_new();
    qdict_put_str(d, "filename", "/tmp/qo-a.qcow2");
    qdict_put_str(d, "format", fmt);
    qdict_put_bool(d, "dirty-flag", false);
    qdict_put_int(d, "actual-size", asize);
    qdict_put_int(d, "virtual-size", vsize);
    return d;
}

static void test_writer_info(void)
{
    g_autoptr(QDict) top = build_info("qcow2", 1073741824, 200704);
    QDict *file = build_info("file", 197120, 200704);
    QDict *fs = qdict_new(), *data = qdict_new(), *child = qdict_new();
    QDict *ffs = qdict_new();
    QList *children = qlist_new();

    qdict_put_int(top, "cluster-size", 65536);
    qdict_put_str(data, "compat", "1.1");
    qdict_put_bool(data, "lazy-refcounts", false);
    qdict_put_bool(data, "corrupt", false);
    qdict_put_int(data, "refcount-bits", 16);
    qdict_put_str(data, "compression-type", "zlib");
    qdict_put_bool(data, "extended-l2", false);
    qdict_put_str(fs, "type", "qcow2");
    qdict_put(fs, "data", data);
    qdict_put(top, "format-specific", fs);
    qdict_put_str(ffs, "type", "file");
    qdict_put(ffs, "data", qdict_new());
    qdict_put(file, "format-specific", ffs);
    qdict_put(file, "children", qlist_new());
    qdict_put_str(child, "name", "file");
    qdict_put(child, "info", file);
    qlist_append(children, child);
    qdict_put(top, "children", children);
    g_autoptr(GString) out = qobject_to_json_pretty(QOBJECT(top), true);
    g_assert_cmpstr(out->str, ==, info_doc);
}

static void test_writer_measure_check(void)
{
    g_autoptr(QDict) m = qdict_new();
    g_autoptr(QDict) c = qdict_new();

    qdict_put_int(m, "required", 393216);
    qdict_put_int(m, "fully-allocated", 1074135040);
    g_autoptr(GString) mo = qobject_to_json_pretty(QOBJECT(m), true);
    g_assert_cmpstr(mo->str, ==, measure_doc);

    qdict_put_str(c, "filename", "/tmp/qo-a.qcow2");
    qdict_put_str(c, "format", "qcow2");
    qdict_put_int(c, "check-errors", 0);
    qdict_put_int(c, "image-end-offset", 262144);
    qdict_put_int(c, "total-clusters", 16384);
    g_autoptr(GString) co = qobject_to_json_pretty(QOBJECT(c), true);
    g_assert_cmpstr(co->str, ==, check_doc);
}

/* Parsing the captured documents and writing them back is the identity. */
static void test_round_trip_docs(void)
{
    const char *docs[] = { info_doc, measure_doc, check_doc };

    for (size_t i = 0; i < G_N_ELEMENTS(docs); i++) {
        g_autoptr(QObject) o = qobject_from_json(docs[i], &error_abort);
        g_autoptr(GString) out = qobject_to_json_pretty(o, true);
        g_assert_cmpstr(out->str, ==, docs[i]);
    }
}

static void test_writer_compact(void)
{
    g_autoptr(QObject) o = qobject_from_json(
        "{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\","
        "\"filename\":\"/tmp/a\"}}", &error_abort);
    g_autofree char *s = qobject_to_json_str(o);
    g_assert_cmpstr(s, ==, "{\"driver\": \"qcow2\", \"file\": {\"driver\": "
                    "\"file\", \"filename\": \"/tmp/a\"}}");
    g_autoptr(QObject) l = qobject_from_json("[1, [], {}, null, -2.5, 18446744073709551615]",
                                             &error_abort);
    g_autofree char *ls = qobject_to_json_str(l);
    g_assert_cmpstr(ls, ==, "[1, [], {}, null, -2.5, 18446744073709551615]");
    g_autoptr(GString) lp = qobject_to_json_pretty(l, true);
    g_assert_cmpstr(lp->str, ==, "[\n    1,\n    [\n    ],\n    {\n    },\n"
                    "    null,\n    -2.5,\n    18446744073709551615\n]");
}

static void test_writer_escapes(void)
{
    g_autoptr(QObject) s = (QObject *)qstring_from_str(
        "q\"b\\/\b\f\n\r\t\x01\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xff");
    g_autofree char *js = qobject_to_json_str(s);
    g_assert_cmpstr(js, ==, "\"q\\\"b\\\\/\\b\\f\\n\\r\\t\\u0001\\u007F"
                    "\\u00E9\\u20AC\\uD83D\\uDE00\\uFFFD\"");
    g_autoptr(QObject) back = qobject_from_json(js, &error_abort);
    g_assert_cmpstr(qstring_get_str(qobject_to_qstring(back)), ==,
                    "q\"b\\/\b\f\n\r\t\x01\x7f\xc3\xa9\xe2\x82\xac"
                    "\xf0\x9f\x98\x80\xef\xbf\xbd");
}

static void test_writer_doubles(void)
{
    g_autoptr(QList) l = qlist_new();
    qlist_append(l, qnum_from_double(0.5));
    qlist_append(l, qnum_from_double(0.1));
    qlist_append(l, qnum_from_double(1e300));
    qlist_append(l, qnum_from_double(3.0));
    g_autofree char *s = qobject_to_json_str(QOBJECT(l));
    g_assert_cmpstr(s, ==, "[0.5, 0.10000000000000001, 1.0000000000000001e+300, 3]");
}

static void test_parser_values(void)
{
    g_autoptr(QObject) o = qobject_from_json(
        " {'a': 'single \\' quote', \"i\": -9223372036854775808,"
        " \"u\": 9223372036854775808, \"d\": 18446744073709551616,"
        " \"e\": 1e2, \"t\": true, \"f\": false, \"n\": null,"
        " \"s\": \"\\u00e9\\ud83d\\ude00\\/\"} ", &error_abort);
    QDict *d = qobject_to_qdict(o);
    uint64_t u;

    g_assert_cmpstr(qdict_get_str(d, "a"), ==, "single ' quote");
    g_assert_cmpint(qdict_get_int(d, "i"), ==, INT64_MIN);
    g_assert_true(qnum_get_try_uint(qobject_to_qnum(qdict_get(d, "u")), &u));
    g_assert_cmpuint(u, ==, 9223372036854775808ull);
    g_assert_false(qnum_get_try_uint(qobject_to_qnum(qdict_get(d, "d")), &u));
    g_assert_cmpfloat(qnum_get_double(qobject_to_qnum(qdict_get(d, "d"))), ==,
                      18446744073709551616.0);
    g_assert_cmpfloat(qnum_get_double(qobject_to_qnum(qdict_get(d, "e"))), ==, 100);
    g_assert_true(qdict_get_bool(d, "t"));
    g_assert_false(qdict_get_bool(d, "f"));
    g_assert_cmpint(qobject_type(qdict_get(d, "n")), ==, QTYPE_QNULL);
    g_assert_cmpstr(qdict_get_str(d, "s"), ==, "\xc3\xa9\xf0\x9f\x98\x80/");
}

/* Error texts as QEMU 10 prints them (captured from qemu-img json:). */
static const struct { const char *in, *msg; } bad_inputs[] = {
    { "{", "JSON parse error, premature EOI" },
    { "{\"a\"", "JSON parse error, premature EOI" },
    { "{\"a\":}", "JSON parse error, expecting value" },
    { "{\"a\" 1}", "JSON parse error, missing : in object pair" },
    { "{1:2}", "JSON parse error, key is not a string in object" },
    { "[1 2]", "JSON parse error, expected separator in list" },
    { "{\"a\":1}x", "Expecting at most one JSON value" },
    { "foo", "JSON parse error, invalid keyword 'foo'" },
    { "{\"a\":tru}", "JSON parse error, invalid keyword 'tru'" },
    { "{\"a\":\"\\ud800\"}",
      "JSON parse error, \\ud800 is not a valid Unicode character" },
    { "\"\\udc00\\ud800\"",
      "JSON parse error, \\udc00 is not a valid Unicode character" },
    { "{\"a\":1,\"a\":2}", "JSON parse error, duplicate key" },
    { "{'a':1,}", "JSON parse error, expecting value" },
    { "{\"a\":01}", "JSON parse error, stray '01'" },
    { "\"abc", "JSON parse error, stray '\"abc'" },
    { "{\"a\":\"b\t\"}", "JSON parse error, stray '\"b\t'" },
    { "{\"a\":-}", "JSON parse error, stray '-}'" },
    { "{\"a\":1.}", "JSON parse error, stray '1.}'" },
    { "{\"a\":[1,]}", "JSON parse error, expecting value" },
    { "{\"a\":\"\\x\"}", "JSON parse error, invalid escape sequence in string" },
    { "{\"a\":\"\xff\"}", "JSON parse error, stray '\"\xff'" },
    { "\"\xc0\xaf\"", "JSON parse error, stray '\"\xc0'" },
    { "\"\xed\xa0\x80\"", "JSON parse error, stray '\"\xed'" },
    { "", "Expecting a JSON value" },
    { "   ", "Expecting a JSON value" },
};

static void test_parser_errors(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(bad_inputs); i++) {
        Error *err = NULL;
        QObject *o = qobject_from_json(bad_inputs[i].in, &err);
        g_assert_null(o);
        g_assert_nonnull(err);
        g_assert_cmpstr(error_get_pretty(err), ==, bad_inputs[i].msg);
        error_free(err);
    }
}

static void test_parser_depth(void)
{
    GString *s = g_string_new(NULL);
    Error *err = NULL;

    for (int i = 0; i < 1024; i++) {
        g_string_append_c(s, '[');
    }
    for (int i = 0; i < 1024; i++) {
        g_string_append_c(s, ']');
    }
    g_autoptr(QObject) ok = qobject_from_json(s->str, &error_abort);
    g_assert_nonnull(ok);
    g_string_prepend_c(s, '[');
    g_string_append_c(s, ']');
    g_assert_null(qobject_from_json(s->str, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "JSON nesting depth limit exceeded");
    error_free(err);
    g_string_free(s, TRUE);
}

static void test_nul_escape(void)
{
    g_autoptr(QObject) o = qobject_from_json("\"a\\u0000b\"", &error_abort);
    g_autofree char *s = qobject_to_json_str(o);
    g_assert_cmpstr(s, ==, "\"a\\u0000b\"");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/json/writer/info", test_writer_info);
    g_test_add_func("/json/writer/measure-check", test_writer_measure_check);
    g_test_add_func("/json/writer/round-trip-docs", test_round_trip_docs);
    g_test_add_func("/json/writer/compact", test_writer_compact);
    g_test_add_func("/json/writer/escapes", test_writer_escapes);
    g_test_add_func("/json/writer/doubles", test_writer_doubles);
    g_test_add_func("/json/parser/values", test_parser_values);
    g_test_add_func("/json/parser/errors", test_parser_errors);
    g_test_add_func("/json/parser/depth", test_parser_depth);
    g_test_add_func("/json/parser/nul-escape", test_nul_escape);
    return g_test_run();
}
