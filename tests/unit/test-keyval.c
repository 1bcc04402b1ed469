#include "config.h"
/* keyval and QemuOpts-style option strings; error texts match QEMU 10. */
#include <glib.h>
#include "qobject/keyval.h"

/* Parses @s nested and compares the compact JSON of the result. */
static void check_nested(const char *s, const char *implied, const char *json)
{
    g_autoptr(QDict) d = keyval_parse(s, implied, NULL, &error_abort);
    g_autofree char *out = qobject_to_json_str(QOBJECT(d));
    g_autoptr(QObject) want = qobject_from_json(json, &error_abort);

    if (!qobject_is_equal(QOBJECT(d), want)) {
        g_error("%s: got %s want %s", s, out, json);
    }
}

static void test_nested(void)
{
    check_nested("", NULL, "{}");
    check_nested("driver=raw,file.filename=/tmp/x,,y", NULL,
                 "{'driver': 'raw', 'file': {'filename': '/tmp/x,y'}}");
    check_nested("a=1,,2,b=,", NULL, "{'a': '1,2', 'b': ''}");
    check_nested("a.0=x,a.1.k=y", NULL, "{'a': ['x', {'k': 'y'}]}");
    check_nested("secret,id=x", "qom-type",
                 "{'qom-type': 'secret', 'id': 'x'}");
    check_nested("k=1,k=2", NULL, "{'k': '2'}");
    check_nested("a-b_c1=1,__com.example_x=2", NULL,
                 "{'a-b_c1': '1', '__com.example_x': '2'}");
}

/* QEMU 10 messages, captured with qemu-storage-daemon --blockdev. */
static const struct { const char *in, *msg; } bad[] = {
    { "driver=raw,=x", "Invalid parameter ''" },
    { ",driver=raw", "Invalid parameter ''" },
    { "driver=raw,file.filename", "Expected '=' after parameter 'file.filename'" },
    { "driver=raw,file=x,file.filename=y", "Parameters 'file.*' used inconsistently" },
    { "driver=raw,file.filename=y,file=x", "Parameters 'file.*' used inconsistently" },
    { "driver=raw,a..b=1", "Invalid parameter 'a..b'" },
    { "driver=raw,.a=1", "Invalid parameter '.a'" },
    { "driver=raw,a.=1", "Invalid parameter 'a.'" },
    { "driver=raw,a.b.=1", "Invalid parameter 'a.b.'" },
    { "driver=raw,a b=1", "Invalid parameter 'a b'" },
    { "driver=raw,\xc3\xa9=1", "Invalid parameter '\xc3\xa9'" },
    { "driver=raw,1=2", "Invalid parameter '1'" },
    { "driver=raw,a=1,,2,b", "Expected '=' after parameter 'b'" },
    { "driver=raw,a.b=1,a.c.d=2,a.c=3", "Parameters 'a.c.*' used inconsistently" },
    { "driver=raw,a.1=x", "Parameter 'a.0' missing" },
    { "a.0=x,a.2=y", "Parameter 'a.1' missing" },
    { "a.0=x,a.b=y", "Parameters 'a.*' used inconsistently" },
    { "driver=raw,help", "Help is not available for this option" },
    { "?", "Help is not available for this option" },
};

static void test_errors(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        Error *err = NULL;
        g_assert_null(keyval_parse(bad[i].in, NULL, NULL, &err));
        g_assert_nonnull(err);
        g_assert_cmpstr(error_get_pretty(err), ==, bad[i].msg);
        error_free(err);
    }
}

static void test_too_long(void)
{
    g_autofree char *k = g_strnfill(128, 'a');
    g_autofree char *s1 = g_strdup_printf("%s=1", k);
    g_autofree char *s2 = g_strdup_printf("x.%s=1", k);
    g_autofree char *ok = g_strdup_printf("%.127s=1", k);
    Error *err = NULL;

    g_assert_null(keyval_parse(s1, NULL, NULL, &err));
    g_autofree char *want1 = g_strdup_printf("Parameter '%s' is too long", k);
    g_assert_cmpstr(error_get_pretty(err), ==, want1);
    error_free(err);
    err = NULL;
    g_assert_null(keyval_parse(s2, NULL, NULL, &err));
    g_autofree char *want2 = g_strdup_printf("Parameter fragment '%s' is too long", k);
    g_assert_cmpstr(error_get_pretty(err), ==, want2);
    error_free(err);
    g_autoptr(QDict) d = keyval_parse(ok, NULL, NULL, &error_abort);
    g_assert_cmpuint(qdict_size(d), ==, 1);
}

static void test_help(void)
{
    bool help = false;
    g_autoptr(QDict) d = keyval_parse("secret,help", "qom-type", &help, &error_abort);
    g_autoptr(QDict) h = keyval_parse("help", "qom-type", &help, &error_abort);

    g_assert_true(help);
    g_assert_cmpstr(qdict_get_str(d, "qom-type"), ==, "secret");
    g_assert_cmpuint(qdict_size(h), ==, 0);
    g_autoptr(QDict) n = keyval_parse("a=help", NULL, &help, &error_abort);
    g_assert_false(help);
    g_assert_true(keyval_has_help_option("help"));
    g_assert_true(keyval_has_help_option("a=1,?"));
    g_assert_false(keyval_has_help_option("a=help"));
    g_assert_false(keyval_has_help_option("a=1,,help"));
}

static void test_flat(void)
{
    g_autoptr(QDict) d = keyval_parse_flat(
        "driver=qcow2,file.driver=file,file.filename=/a,,b,file.x=1,file.x=2,"
        "l.0=z", NULL, NULL, &error_abort);
    Error *err = NULL;

    g_assert_cmpuint(qdict_size(d), ==, 5);
    g_assert_cmpstr(qdict_get_str(d, "file.filename"), ==, "/a,b");
    g_assert_cmpstr(qdict_get_str(d, "file.x"), ==, "2");
    g_assert_cmpstr(qdict_get_str(d, "l.0"), ==, "z");
    g_autoptr(QDict) f2 = keyval_parse_flat("file=x,file.filename=y", NULL,
                                            NULL, &error_abort);
    g_assert_cmpuint(qdict_size(f2), ==, 2);
    g_assert_null(keyval_parse_flat("driver=raw,=x", NULL, NULL, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Invalid parameter ''");
    error_free(err);
}

/* QemuOpts semantics (qemu-img/qemu-io --image-opts). */
static void test_qemu_opts(void)
{
    g_autoptr(QDict) d = qemu_opts_parse_flat(
        "raw,a..b=1,=x,ro,noauto-read-only,help,v=a,,b", "file", false,
        &error_abort);
    Error *err = NULL;

    g_assert_cmpstr(qdict_get_str(d, "file"), ==, "raw");
    g_assert_cmpstr(qdict_get_str(d, "a..b"), ==, "1");
    g_assert_cmpstr(qdict_get_str(d, ""), ==, "x");
    g_assert_cmpstr(qdict_get_str(d, "ro"), ==, "on");
    g_assert_cmpstr(qdict_get_str(d, "auto-read-only"), ==, "off");
    g_assert_cmpstr(qdict_get_str(d, "help"), ==, "on");
    g_assert_cmpstr(qdict_get_str(d, "v"), ==, "a,b");
    g_autoptr(QDict) e = qemu_opts_parse_flat(",driver=raw", "file", false,
                                              &error_abort);
    g_assert_cmpstr(qdict_get_str(e, "file"), ==, "");
    g_autoptr(QDict) i = qemu_opts_parse_flat("id=a1", NULL, false, &error_abort);
    g_assert_cmpstr(qdict_get_str(i, "id"), ==, "a1");
    g_assert_null(qemu_opts_parse_flat("id=1a", NULL, false, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Parameter 'id' expects an identifier");
    error_free(err);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/keyval/nested", test_nested);
    g_test_add_func("/keyval/errors", test_errors);
    g_test_add_func("/keyval/too-long", test_too_long);
    g_test_add_func("/keyval/help", test_help);
    g_test_add_func("/keyval/flat", test_flat);
    g_test_add_func("/keyval/qemu-opts", test_qemu_opts);
    return g_test_run();
}
