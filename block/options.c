#include "config.h"
/*
 * Typed option access for drivers, the generic option set, cache and
 * discard mode parsing, preallocation mode names and -o help output.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "block/drivers.h"
#include "util/cutils.h"

static const char *const generic_opts[] = {
    "driver", "node-name", "read-only", "auto-read-only", "cache.direct",
    "cache.no-flush", "discard", "detect-zeroes", "force-share",
    NULL,
};

bool bdrv_opt_is_generic(const char *key)
{
    for (int i = 0; generic_opts[i]; i++) {
        if (!strcmp(generic_opts[i], key)) {
            return true;
        }
    }
    return false;
}

/* Exact-key lookup in a driver's option table. */
static bool schema_has(const BlockOptDesc *schema, const char *key)
{
    for (; schema && schema->name; schema++) {
        if (!strcmp(schema->name, key)) {
            return true;
        }
    }
    return false;
}

const char *bdrv_opts_first_unknown(QDict *opts, const BlockOptDesc *schema)
{
    for (const QDictEntry *e = qdict_first(opts); e; e = qdict_next(opts, e)) {
        const char *key = qdict_entry_key(e);
        if (!bdrv_opt_is_generic(key) && !schema_has(schema, key)) {
            return key;
        }
    }
    return NULL;
}

const char *bdrv_opt_str(QDict *opts, const char *name, const char *def)
{
    const char *s = opts ? qdict_get_try_str(opts, name) : NULL;

    return s ? s : def;
}

/* Accepts the spellings QEMU's boolean parser does. */
static int parse_bool_str(const char *s, bool *out)
{
    static const char *const yes[] = { "on", "yes", "true", "y", NULL };
    static const char *const no[] = { "off", "no", "false", "n", NULL };

    for (int i = 0; yes[i]; i++) {
        if (!strcmp(s, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcmp(s, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

bool bdrv_opt_bool(QDict *opts, const char *name, bool def, Error **errp)
{
    QObject *v = opts ? qdict_get(opts, name) : NULL;
    QString *s;
    bool b;

    if (!v) {
        return def;
    }
    if (qobject_to_qbool(v)) {
        return qbool_get_bool(qobject_to_qbool(v));
    }
    s = qobject_to_qstring(v);
    if (s && parse_bool_str(qstring_get_str(s), &b) == 0) {
        return b;
    }
    error_setg(errp, "Parameter '%s' expects 'on' or 'off'", name);
    return def;
}

/* JSON numbers arrive typed; the size/number getters accept them too. */
static bool qnum_as_u64(QObject *v, const char *name, uint64_t *out,
                        Error **errp)
{
    QNum *n = qobject_to_qnum(v);
    int64_t i;

    if (qnum_get_try_uint(n, out)) {
        return true;
    }
    if (qnum_get_try_int(n, &i)) {
        error_setg(errp, "Value '%" G_GINT64_FORMAT "' is out of range for "
                   "parameter '%s'", i, name);
    } else {
        error_setg(errp, "Parameter '%s' expects a non-negative number "
                   "below 2^64", name);
    }
    return false;
}

/* A JSON number that is not an integer (1.5, 1e3 as parsed). */
static bool qnum_is_fraction(QNum *n)
{
    int64_t i;
    uint64_t u;

    return !qnum_get_try_int(n, &i) && !qnum_get_try_uint(n, &u);
}

/* A string option's parser and the error it reports for @str. */
typedef int OptStrParser(const char *str, uint64_t *out);
typedef void OptStrError(Error **errp, const char *name, const char *str,
                         int ret);

/* Size and number options look up and convert JSON numbers alike; only
 * their string syntax and its error messages differ. */
static uint64_t opt_u64(QDict *opts, const char *name, uint64_t def,
                        OptStrParser *parse, OptStrError *fail, Error **errp)
{
    QObject *v = opts ? qdict_get(opts, name) : NULL;
    QString *qs;
    uint64_t val;
    int ret;

    if (!v) {
        return def;
    }
    if (qobject_to_qnum(v) && !qnum_is_fraction(qobject_to_qnum(v))) {
        return qnum_as_u64(v, name, &val, errp) ? val : def;
    }
    if (qobject_to_qnum(v)) {
        /* a JSON number with a fraction goes through its string form
         * ("%.17g"), as the reference's options do: 1e3 is 1000 */
        g_autofree char *str = g_strdup_printf(
            "%.17g", qnum_get_double(qobject_to_qnum(v)));

        ret = parse(str, &val);
        if (ret < 0) {
            fail(errp, name, str, ret);
        }
        return ret < 0 ? def : val;
    }
    qs = qobject_to_qstring(v);
    ret = qs ? parse(qstring_get_str(qs), &val) : -EINVAL;
    if (ret == 0) {
        return val;
    }
    fail(errp, name, qs ? qstring_get_str(qs) : "", ret);
    return def;
}

/* Sizes take a unit suffix (k, M, G, ...). */
static int parse_size_str(const char *str, uint64_t *out)
{
    return size_parse(str, NULL, out);
}

/* bdrv_opt_size()'s messages, with the suffix hint for bad syntax. */
static void size_error(Error **errp, const char *name, const char *str,
                       int ret)
{
    if (ret == -ERANGE) {
        error_setg(errp, "Value '%s' is out of range for parameter '%s'",
                   str, name);
        return;
    }
    error_setg(errp, "Parameter '%s' expects a non-negative number "
               "below 2^64", name);
    error_append_hint(errp, "Optional suffix k, M, G, T, P or E means "
                      "kilo-, mega-, giga-, tera-, peta-\n"
                      "and exabytes, respectively.\n");
}

uint64_t bdrv_opt_size(QDict *opts, const char *name, uint64_t def,
                       Error **errp)
{
    return opt_u64(opts, name, def, parse_size_str, size_error, errp);
}

/* QEMU's number options follow strtoull(): base prefixes, leading
 * blanks and a sign (negative values wrap around). */
static int parse_number_str(const char *str, uint64_t *out)
{
    char *end;

    errno = 0;
    *out = strtoull(str, &end, 0);
    if (end == str || *end) {
        return -EINVAL;
    }
    return errno == ERANGE ? -ERANGE : 0;
}

/* bdrv_opt_number()'s messages. */
static void number_error(Error **errp, const char *name, const char *str,
                         int ret)
{
    if (ret == -ERANGE) {
        error_setg(errp, "Value '%s' is too large for parameter '%s'",
                   str, name);
    } else {
        error_setg(errp, "Parameter '%s' expects a number", name);
    }
}

uint64_t bdrv_opt_number(QDict *opts, const char *name, uint64_t def,
                         Error **errp)
{
    return opt_u64(opts, name, def, parse_number_str, number_error, errp);
}

QDict *bdrv_opts_take(QDict *opts, const BlockOptDesc *schema)
{
    QDict *taken = qdict_new();

    for (; schema && schema->name; schema++) {
        QObject *v = qdict_get(opts, schema->name);
        if (v) {
            qdict_put_obj(taken, schema->name, qobject_ref(v));
            qdict_del(opts, schema->name);
        }
    }
    return taken;
}

/* The type hint -o help shows in angle brackets. */
static const char *opt_type_name(BlockOptType type)
{
    switch (type) {
    case OPT_BOOL:
        return "bool (on/off)";
    case OPT_NUMBER:
        return "num";
    case OPT_SIZE:
        return "size";
    default:
        return "str";
    }
}

static gint compare_desc(gconstpointer a, gconstpointer b)
{
    const BlockOptDesc *x = *(const BlockOptDesc *const *)a;
    const BlockOptDesc *y = *(const BlockOptDesc *const *)b;

    return strcmp(x->name, y->name);
}

/* One help line, aligned like QEMU's qemu_opts_print_help(). */
static void print_opt_help(const BlockOptDesc *desc)
{
    g_autofree char *head = g_strdup_printf("  %s=<%s>", desc->name,
                                            opt_type_name(desc->type));

    printf("%-24s", head);
    if (desc->help) {
        printf(" - %s", desc->help);
    }
    printf("\n");
}

void bdrv_opts_print_help(const char *fmt, const BlockOptDesc *schema)
{
    g_autofree char *title = fmt ? g_strdup_printf("Supported %s options:",
                                                   fmt)
                                 : g_strdup("Supported options:");

    /* no format: the merged format + protocol list */
    bdrv_opts_print_help_titled(title, schema);
}

void bdrv_opts_print_help_titled(const char *title, const BlockOptDesc *schema)
{
    g_autoptr(GPtrArray) sorted = g_ptr_array_new();

    for (; schema && schema->name; schema++) {
        g_ptr_array_add(sorted, (gpointer)schema);
    }
    g_ptr_array_sort(sorted, compare_desc);
    printf("%s\n", title);
    for (unsigned i = 0; i < sorted->len; i++) {
        print_opt_help(g_ptr_array_index(sorted, i));
    }
}

int bdrv_parse_cache_mode(const char *mode, int *flags, bool *writethrough)
{
    *flags &= ~(BDRV_O_NOCACHE | BDRV_O_NO_FLUSH);
    if (!strcmp(mode, "off") || !strcmp(mode, "none")) {
        *writethrough = false;
        *flags |= BDRV_O_NOCACHE;
    } else if (!strcmp(mode, "directsync")) {
        *writethrough = true;
        *flags |= BDRV_O_NOCACHE;
    } else if (!strcmp(mode, "writeback")) {
        *writethrough = false;
    } else if (!strcmp(mode, "unsafe")) {
        *writethrough = false;
        *flags |= BDRV_O_NO_FLUSH;
    } else if (!strcmp(mode, "writethrough")) {
        *writethrough = true;
    } else {
        return -1;
    }
    return 0;
}

int bdrv_parse_discard_flags(const char *mode, int *flags)
{
    *flags &= ~BDRV_O_UNMAP;
    if (!strcmp(mode, "off") || !strcmp(mode, "ignore")) {
        return 0;
    }
    if (!strcmp(mode, "on") || !strcmp(mode, "unmap")) {
        *flags |= BDRV_O_UNMAP;
        return 0;
    }
    return -1;
}

static const char *const prealloc_names[] = {
    [PREALLOC_MODE_OFF] = "off",
    [PREALLOC_MODE_METADATA] = "metadata",
    [PREALLOC_MODE_FALLOC] = "falloc",
    [PREALLOC_MODE_FULL] = "full",
};

bool prealloc_mode_parse(const char *s, PreallocMode *mode)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(prealloc_names); i++) {
        if (s && !strcmp(s, prealloc_names[i])) {
            *mode = i;
            return true;
        }
    }
    return false;
}

const char *prealloc_mode_name(PreallocMode mode)
{
    if ((unsigned)mode >= G_N_ELEMENTS(prealloc_names)) {
        return NULL;
    }
    return prealloc_names[mode];
}
