#include "config.h"
/*
 * "key=value,..." option strings (QEMU's keyval syntax) and the older,
 * more lenient QemuOpts syntax that --image-opts uses.
 */
#include <string.h>
#include "qobject/keyval.h"

#define KEY_FRAGMENT_MAX 127

typedef struct {
    QDict *root;
    const char *implied_key;   /* cleared after the first element */
    bool help;
    bool flat;
} KeyvalParser;

/* "help" or "?" spanning exactly @len bytes. */
static bool is_help_element(const char *s, size_t len)
{
    return (len == 1 && s[0] == '?') || (len == 4 && !strncmp(s, "help", 4));
}

/* Length of a QAPI name at @s ("__RFQDN_" downstream prefix allowed);
 * 0 if there is none. */
static size_t qapi_name_len(const char *s, const char *end)
{
    const char *p = s;

    if (end - p > 2 && p[0] == '_' && p[1] == '_') {
        for (p += 2; p < end && (g_ascii_isalnum(*p) || *p == '-' || *p == '.'); p++) {
        }
        if (p >= end || *p != '_') {
            return 0;
        }
        p++;
    }
    if (p >= end || !g_ascii_isalpha(*p)) {
        return 0;
    }
    while (p < end && (g_ascii_isalnum(*p) || *p == '-' || *p == '_')) {
        p++;
    }
    return p - s;
}

/* Length of a decimal list index at @s ending at '.' or @end, else 0. */
static size_t index_len(const char *s, const char *end)
{
    const char *p = s;

    while (p < end && g_ascii_isdigit(*p)) {
        p++;
    }
    if (p == s || (p < end && *p != '.') || p - s > 9) {
        return 0;
    }
    return p - s;
}

/* Length of the key fragment at @s: a list index (not first) or a name. */
static size_t fragment_len(const char *key, const char *s, const char *end)
{
    size_t len = s != key ? index_len(s, end) : 0;
    return len ? len : qapi_name_len(s, end);
}

/* Checks every dot-separated fragment of the key [key, end). */
static bool check_key(const char *key, const char *end, Error **errp)
{
    const char *s = key;

    for (;;) {
        size_t len = fragment_len(key, s, end);
        if (!len || (s + len < end && s[len] != '.')) {
            error_setg(errp, "Invalid parameter '%.*s'", (int)(end - key), key);
            return false;
        }
        if (len > KEY_FRAGMENT_MAX) {
            error_setg(errp, "Parameter%s '%.*s' is too long",
                       s != key || s + len != end ? " fragment" : "",
                       (int)len, s);
            return false;
        }
        s += len;
        if (s == end) {
            return true;
        }
        s++;
    }
}

/* Reads a value up to a single ',' (",," is a literal comma); returns
 * the position after the terminating comma. */
static const char *read_value(const char *s, GString *val)
{
    for (;;) {
        if (!*s) {
            return s;
        }
        if (*s == ',') {
            s++;
            if (*s != ',') {
                return s;
            }
        }
        g_string_append_c(val, *s++);
    }
}

/* Returns the dict under @name in @cur, creating it; NULL if @name holds
 * a string.  @key..@cursor names the prefix for the error message. */
static QDict *descend(QDict *cur, const char *name, const char *key,
                      const char *cursor, Error **errp)
{
    QObject *old = qdict_get(cur, name);
    QDict *d;

    if (old) {
        d = qobject_to_qdict(old);
        if (!d) {
            error_setg(errp, "Parameters '%.*s.*' used inconsistently",
                       (int)(cursor - key), key);
        }
        return d;
    }
    d = qdict_new();
    qdict_put(cur, name, d);
    return d;
}

/* Stores @val under the dotted key [key, end) into nested dicts. */
static bool put_nested(QDict *root, const char *key, const char *end,
                       const char *val, Error **errp)
{
    QDict *cur = root;
    const char *s = key;
    const char *dot;

    /* Fragments as check_key() saw them ("__a.b_x" names contain dots). */
    while ((dot = s + fragment_len(key, s, end)) < end) {
        g_autofree char *name = g_strndup(s, dot - s);
        cur = descend(cur, name, key, dot, errp);
        if (!cur) {
            return false;
        }
        s = dot + 1;
    }
    g_autofree char *name = g_strndup(s, end - s);
    if (qobject_to_qdict(qdict_get(cur, name))) {
        error_setg(errp, "Parameters '%.*s.*' used inconsistently",
                   (int)(end - key), key);
        return false;
    }
    qdict_put_str(cur, name, val);
    return true;
}

/* Stores one key/value pair, nested or flat. */
static bool store(KeyvalParser *p, const char *key, const char *end,
                  const char *val, Error **errp)
{
    if (p->flat) {
        g_autofree char *k = g_strndup(key, end - key);
        qdict_put_str(p->root, k, val);
        return true;
    }
    return put_nested(p->root, key, end, val, errp);
}

/* Parses one element at @s; returns the start of the next or NULL. */
static const char *parse_element(KeyvalParser *p, const char *s, Error **errp)
{
    size_t len = strcspn(s, "=,");
    const char *implied = p->implied_key;
    g_autoptr(GString) val = g_string_new(NULL);

    p->implied_key = NULL;
    if (len && s[len] != '=') {
        if (is_help_element(s, len)) {
            p->help = true;
            return s[len] ? s + len + 1 : s + len;
        }
        if (implied) {
            g_string_append_len(val, s, len);
            if (!store(p, implied, implied + strlen(implied), val->str, errp)) {
                return NULL;
            }
            return s[len] ? s + len + 1 : s + len;
        }
    }
    if (!check_key(s, s + len, errp)) {
        return NULL;
    }
    if (s[len] != '=') {
        error_setg(errp, "Expected '=' after parameter '%.*s'", (int)len, s);
        return NULL;
    }
    const char *next = read_value(s + len + 1, val);
    return store(p, s, s + len, val->str, errp) ? next : NULL;
}

static QObject *listify(QDict *cur, GString *path, Error **errp);

/* Listifies the dict values of @cur, replacing them in place. */
static bool listify_children(QDict *cur, GString *path, Error **errp)
{
    for (const QDictEntry *e = qdict_first(cur); e; e = qdict_next(cur, e)) {
        QDict *sub = qobject_to_qdict(qdict_entry_value(e));
        size_t oldlen = path->len;
        QObject *v;

        if (!sub) {
            continue;
        }
        g_string_append_printf(path, "%s.", qdict_entry_key(e));
        v = listify(sub, path, errp);
        g_string_truncate(path, oldlen);
        if (!v) {
            return false;
        }
        if (v != qdict_entry_value(e)) {
            /* Replacing keeps the entry, so iteration stays valid. */
            qdict_put_obj(cur, qdict_entry_key(e), v);
        } else {
            qobject_unref(v);
        }
    }
    return true;
}

/* Numeric value of a list-index key, or -1. */
static int64_t key_index(const char *key)
{
    size_t len = strlen(key);
    return index_len(key, key + len) == len ? atoll(key) : -1;
}

/* Builds the list from an all-index dict; reports the first hole. */
static QObject *dict_to_list(QDict *cur, GString *path, Error **errp)
{
    size_t n = qdict_size(cur);
    g_autofree QObject **elt = g_new0(QObject *, n);
    QList *l;

    for (const QDictEntry *e = qdict_first(cur); e; e = qdict_next(cur, e)) {
        int64_t i = key_index(qdict_entry_key(e));
        if (i < (int64_t)n) {
            elt[i] = qdict_entry_value(e);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!elt[i]) {
            error_setg(errp, "Parameter '%s%zu' missing", path->str, i);
            return NULL;
        }
    }
    l = qlist_new();
    for (size_t i = 0; i < n; i++) {
        qlist_append_obj(l, qobject_ref(elt[i]));
    }
    return QOBJECT(l);
}

/* Turns dicts whose keys are all list indexes into lists, recursively.
 * Returns a new reference (@cur itself when it stays a dict). */
static QObject *listify(QDict *cur, GString *path, Error **errp)
{
    bool has_index = false, has_member = false;

    if (!listify_children(cur, path, errp)) {
        return NULL;
    }
    for (const QDictEntry *e = qdict_first(cur); e; e = qdict_next(cur, e)) {
        if (key_index(qdict_entry_key(e)) >= 0) {
            has_index = true;
        } else {
            has_member = true;
        }
    }
    if (has_index && has_member) {
        error_setg(errp, "Parameters '%s*' used inconsistently", path->str);
        return NULL;
    }
    if (!has_index) {
        return qobject_ref(QOBJECT(cur));
    }
    return dict_to_list(cur, path, errp);
}

/* Shared driver of keyval_parse and keyval_parse_flat. */
static QDict *parse_all(const char *params, const char *implied_key,
                        bool *help, bool flat, Error **errp)
{
    KeyvalParser p = { .root = qdict_new(), .implied_key = implied_key,
                       .flat = flat };
    const char *s = params;

    while (s && *s) {
        s = parse_element(&p, s, errp);
    }
    if (s && !flat) {
        g_autoptr(GString) path = g_string_new(NULL);
        if (!listify_children(p.root, path, errp)) {
            s = NULL;
        }
    }
    if (s && p.help && !help) {
        error_setg(errp, "Help is not available for this option");
        s = NULL;
    }
    if (!s) {
        qobject_unref(p.root);
        return NULL;
    }
    if (help) {
        *help = p.help;
    }
    return p.root;
}

QDict *keyval_parse(const char *params, const char *implied_key, bool *help,
                    Error **errp)
{
    return parse_all(params, implied_key, help, false, errp);
}

QDict *keyval_parse_flat(const char *params, const char *implied_key,
                         bool *help, Error **errp)
{
    return parse_all(params, implied_key, help, true, errp);
}

bool keyval_has_help_option(const char *params)
{
    const char *s = params;

    while (*s) {
        g_autoptr(GString) elem = g_string_new(NULL);
        s = read_value(s, elem);
        if (is_help_element(elem->str, elem->len)) {
            return true;
        }
    }
    return false;
}

/* ---- QemuOpts syntax ---- */

/* QEMU's identifier rule for "id": a letter, then alnum, '-', '.', '_'. */
bool keyval_id_wellformed(const char *id)
{
    if (!g_ascii_isalpha(*id)) {
        return false;
    }
    for (const char *p = id + 1; *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr("-._", *p)) {
            return false;
        }
    }
    return true;
}

/* A bare "name" is name=on ("noname" is name=off), with QEMU's warning. */
static void opts_put_flag(QDict *d, const char *name, bool warn)
{
    bool is_help = !strcmp(name, "help") || !strcmp(name, "?");
    bool off = !is_help && g_str_has_prefix(name, "no");
    const char *key = off ? name + 2 : name;

    if (warn && !is_help) {
        warn_report("short-form boolean option '%s' deprecated\n"
                    "Please use %s=%s instead", name, key, off ? "off" : "on");
    }
    qdict_put_str(d, key, off ? "off" : "on");
}

/* Parses one QemuOpts element into @d; returns the next element. */
static const char *opts_element(QDict *d, const char *s, const char *implied,
                                bool warn)
{
    size_t len = strcspn(s, "=,");
    g_autoptr(GString) val = g_string_new(NULL);

    if (s[len] != '=') {
        if (implied) {
            const char *next = read_value(s, val);
            qdict_put_str(d, implied, val->str);
            return next;
        }
        g_autofree char *name = g_strndup(s, len);
        opts_put_flag(d, name, warn);
        return s[len] ? s + len + 1 : s + len;
    }
    g_autofree char *name = g_strndup(s, len);
    const char *next = read_value(s + len + 1, val);
    qdict_put_str(d, name, val->str);
    return next;
}

QDict *qemu_opts_parse_flat(const char *params, const char *implied_key,
                            bool warn_flags, Error **errp)
{
    QDict *d = qdict_new();
    const char *id;

    for (const char *s = params; *s; implied_key = NULL) {
        s = opts_element(d, s, implied_key, warn_flags);
    }
    id = qdict_get_try_str(d, "id");
    if (id && !keyval_id_wellformed(id)) {
        error_setg(errp, "Parameter 'id' expects an identifier");
        error_append_hint(errp, "Identifiers consist of letters, digits, "
                          "'-', '.', '_', starting with a letter.\n");
        qobject_unref(d);
        return NULL;
    }
    return d;
}
