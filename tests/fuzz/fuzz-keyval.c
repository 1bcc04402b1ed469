#include "config.h"
/* Fuzz target: keyval (nested and flat) and QemuOpts-style parsing. */
#include "qobject/keyval.h"
#include "tests/fuzz/fuzz-main.h"

/* Parses one string every way; results are checked for consistency. */
static void parse_all_ways(const char *s)
{
    Error *err = NULL;
    bool help = false;
    QDict *nested = keyval_parse(s, "qom-type", &help, &err);
    QDict *flat = keyval_parse_flat(s, NULL, NULL, NULL);
    QDict *opts = qemu_opts_parse_flat(s, "file", false, NULL);

    g_assert(!nested != !err);
    if (nested) {
        QDict *copy = qdict_clone_shallow(nested);
        qdict_flatten(copy);
        qobject_unref(copy);
    }
    keyval_has_help_option(s);
    error_free(err);
    qobject_unref(nested);
    qobject_unref(flat);
    qobject_unref(opts);
}

/* Crumpling a flat parse must not crash either. */
static void crumple_flat(const char *s)
{
    QDict *flat = keyval_parse_flat(s, NULL, NULL, NULL);
    Error *err = NULL;

    if (flat) {
        QObject *c = qdict_crumple(flat, &err);
        g_assert(!c != !err);
        qobject_unref(c);
        error_free(err);
        qobject_unref(flat);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *s = g_strndup((const char *)data, size);

    parse_all_ways(s);
    crumple_flat(s);
    return 0;
}
