#include "config.h"
/*
 * "-o" and --image-opts strings of the tools, parsed the way qemu-io's
 * and qemu-img's option lists do it: "name=value" elements separated by ','.  A name
 * ends at '=' or ','; in a value ",," is a literal comma.  A bare "name"
 * means name=on and "noname" name=off, both with a deprecation warning.
 * Later keys override earlier ones.  "id" is refused in option lists;
 * --image-opts (a QemuOpts group in the reference) takes it as the
 * group's identifier and passes it on, so the driver refuses it then.
 */
#include <stdio.h>
#include <string.h>
#include "tools/common/common.h"
#include "qobject/keyval.h"

/* Value starting at *p up to an unescaped ',' (consumed). */
static char *opts_value(const char **p)
{
    GString *s = g_string_new(NULL);
    const char *c = *p;

    for (; *c; c++) {
        if (*c == ',' && c[1] == ',') {
            g_string_append_c(s, ',');
            c++;
        } else if (*c == ',') {
            c++;
            break;
        } else {
            g_string_append_c(s, *c);
        }
    }
    *p = c;
    return g_string_free(s, false);
}

const char *tool_opts_bare_key(const char *name, const char **value)
{
    bool neg = g_str_has_prefix(name, "no");
    const char *key = neg ? name + 2 : name;

    *value = neg ? "off" : "on";
    warn_report("short-form boolean option '%s' deprecated", name);
    fprintf(stderr, "Please use %s=%s instead\n", key, *value);
    return key;
}

static void opts_put_bare(QDict *d, const char *name)
{
    const char *value;
    const char *key = tool_opts_bare_key(name, &value);

    qdict_put_str(d, key, value);
}

/* "id" of --image-opts: must be an identifier. */
static bool opts_check_id(const char *value)
{
    if (keyval_id_wellformed(value)) {
        return true;
    }
    Error *err = NULL;

    error_setg(&err, "Parameter 'id' expects an identifier");
    error_append_hint(&err, "Identifiers consist of letters, digits, "
                      "'-', '.', '_', starting with a letter.\n");
    error_report_err(err);
    return false;
}

static bool opts_parse(QDict *d, const char *str, bool keep_id)
{
    const char *p = str;

    while (*p) {
        size_t len = strcspn(p, "=,");
        char *name = g_strndup(p, len);

        p += len;
        if (*p == '=') {
            char *value;

            p++;
            value = opts_value(&p);
            qdict_put_str(d, name, value);
            g_free(value);
        } else {
            p += *p == ',';
            opts_put_bare(d, name);
        }
        if (!strcmp(name, "id") &&
            !(keep_id && opts_check_id(qdict_get_str(d, "id")))) {
            if (!keep_id) {
                error_report("Invalid parameter 'id'");
            }
            g_free(name);
            return false;
        }
        g_free(name);
    }
    return true;
}

bool tool_opts_parse_into(QDict *d, const char *str)
{
    return opts_parse(d, str, false);
}

bool tool_image_opts_parse(QDict *d, const char *str)
{
    return opts_parse(d, str, true);
}

bool tool_opts_parse_implied(QDict *d, const char *str, const char *implied)
{
    const char *p = str;
    size_t len = strcspn(p, "=,");

    if (*str && p[len] != '=') {
        char *value = opts_value(&p);

        qdict_put_str(d, implied, value);
        g_free(value);
    }
    return opts_parse(d, p, true);
}
