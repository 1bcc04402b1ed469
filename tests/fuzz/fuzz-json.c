#include "config.h"
/* Fuzz target: JSON parser, and writer round trip on what parses. */
#include <string.h>
#include "qobject/qobject.h"
#include "tests/fuzz/fuzz-main.h"

/* Whatever parses must write, re-parse and compare equal.  Exception, as
 * in QEMU: an out-of-range number becomes an infinite double, written as
 * "inf", which is not JSON. */
static void check_round_trip(QObject *obj)
{
    g_autofree char *compact = qobject_to_json_str(obj);
    g_autoptr(GString) pretty = qobject_to_json_pretty(obj, true);
    g_autoptr(QObject) again = qobject_from_json(compact, NULL);
    g_autoptr(QObject) again2 = NULL;
    g_autofree char *compact2 = NULL;

    if (!again) {
        g_assert_nonnull(strstr(compact, "inf"));
        return;
    }
    again2 = qobject_from_json(pretty->str, &error_abort);
    compact2 = qobject_to_json_str(again);

    g_assert_cmpstr(compact, ==, compact2);
    g_assert_true(qobject_is_equal(again, again2));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *s = g_strndup((const char *)data, size);
    Error *err = NULL;
    QObject *obj = qobject_from_json(s, &err);

    g_assert(!obj != !err);
    if (obj) {
        check_round_trip(obj);
        qobject_unref(obj);
    }
    error_free(err);
    return 0;
}
