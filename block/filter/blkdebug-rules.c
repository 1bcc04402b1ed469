#include "config.h"
/*
 * blkdebug rules: parsing inject-error / set-state / inject-delay rules
 * from flat block options ("inject-error.0.event" ...) and from ini-style
 * config files, with the reference's error messages.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "block/driver.h"
#include "block/filter/blkdebug-int.h"
#include "util/cutils.h"

typedef struct SectionDesc {
    const char *name;
    BlkdebugRuleKind kind;
    const char *const *keys;
} SectionDesc;

static const char *const inject_keys[] = {
    "event", "state", "iotype", "errno", "sector", "once", "immediately", NULL,
};
static const char *const set_state_keys[] = {
    "event", "state", "new_state", NULL,
};
static const char *const delay_keys[] = {
    "event", "state", "iotype", "sector", "once", "delay-ns", NULL,
};

static const SectionDesc sections[] = {
    { "inject-error", BLKDBG_RULE_INJECT_ERROR, inject_keys },
    { "set-state", BLKDBG_RULE_SET_STATE, set_state_keys },
    { "inject-delay", BLKDBG_RULE_DELAY, delay_keys },
    { NULL },
};

static const char *const iotype_names[BLKDBG_IO_MAX] = {
    [BLKDBG_IO_READ] = "read",
    [BLKDBG_IO_WRITE] = "write",
    [BLKDBG_IO_WRITE_ZEROES] = "write-zeroes",
    [BLKDBG_IO_DISCARD] = "discard",
    [BLKDBG_IO_FLUSH] = "flush",
    [BLKDBG_IO_BLOCK_STATUS] = "block-status",
};

void blkdebug_rule_free(gpointer rule)
{
    BlkdebugRule *r = rule;

    if (r) {
        g_free(r->tag);
        g_free(r);
    }
}

static const SectionDesc *find_section(const char *name)
{
    for (const SectionDesc *d = sections; d->name; d++) {
        if (!strcmp(d->name, name)) {
            return d;
        }
    }
    return NULL;
}

static bool key_allowed(const SectionDesc *d, const char *key)
{
    for (int i = 0; d->keys[i]; i++) {
        if (!strcmp(d->keys[i], key)) {
            return true;
        }
    }
    return false;
}

/* Option lists and config files word unknown keys differently. */
static bool check_keys(const SectionDesc *d, QDict *sect, bool from_file,
                       Error **errp)
{
    for (const QDictEntry *e = qdict_first(sect); e; e = qdict_next(sect, e)) {
        const char *key = qdict_entry_key(e);
        if (key_allowed(d, key)) {
            continue;
        }
        if (from_file) {
            error_setg(errp, "Invalid parameter '%s'", key);
        } else {
            error_setg(errp, "[%s] section doesn't support the option '%s'",
                       d->name, key);
        }
        return false;
    }
    return true;
}

/* Signed numbers (sector may be -1): typed or as a string. */
static bool get_int(QDict *sect, const char *key, int64_t def, int64_t *out,
                    Error **errp)
{
    QObject *v = qdict_get(sect, key);
    QNum *n = v ? qobject_to_qnum(v) : NULL;
    QString *s = v ? qobject_to_qstring(v) : NULL;

    *out = def;
    if (!v) {
        return true;
    }
    if (n && qnum_get_try_int(n, out)) {
        return true;
    }
    if (s && parse_int64(qstring_get_str(s), 0, out) == 0) {
        return true;
    }
    error_setg(errp, "Parameter '%s' expects a number", key);
    return false;
}

static bool parse_event(QDict *sect, BlkdebugRule *r, Error **errp)
{
    const char *name = qdict_get_try_str(sect, "event");

    if (!name) {
        error_setg(errp, "Missing event name for rule");
        return false;
    }
    if (!blkdebug_event_parse(name, &r->event)) {
        error_setg(errp, "invalid parameter value: %s", name);
        return false;
    }
    return true;
}

static bool parse_iotype(QDict *sect, BlkdebugRule *r, Error **errp)
{
    const char *name = qdict_get_try_str(sect, "iotype");

    r->iotype_mask = BLKDBG_IO_DEFAULT_MASK;
    if (!name) {
        return true;
    }
    for (int i = 0; i < BLKDBG_IO_MAX; i++) {
        if (!strcmp(name, iotype_names[i])) {
            r->iotype_mask = 1u << i;
            return true;
        }
    }
    error_setg(errp, "invalid parameter value: %s", name);
    return false;
}

/* Fields of inject-error and inject-delay rules. */
static bool parse_io_fields(QDict *sect, BlkdebugRule *r, Error **errp)
{
    Error *local_err = NULL;
    int64_t sector;

    if (!parse_iotype(sect, r, errp) ||
        !get_int(sect, "errno", EIO, &r->error, errp) ||
        !get_int(sect, "sector", -1, &sector, errp) ||
        !get_int(sect, "delay-ns", 0, &r->delay_ns, errp)) {
        return false;
    }
    r->offset = sector < 0 ? -1 : sector * (int64_t)BDRV_SECTOR_SIZE;
    r->once = bdrv_opt_bool(sect, "once", false, &local_err);
    if (!local_err) {
        r->immediately = bdrv_opt_bool(sect, "immediately", false, &local_err);
    }
    if (local_err) {
        error_propagate(errp, local_err);
        return false;
    }
    return true;
}

/* One rule from one section's key/value dict. */
static BlkdebugRule *parse_rule(const SectionDesc *d, QDict *sect,
                                bool from_file, Error **errp)
{
    g_autofree BlkdebugRule *r = g_new0(BlkdebugRule, 1);

    r->kind = d->kind;
    if (!check_keys(d, sect, from_file, errp) ||
        !parse_event(sect, r, errp) ||
        !get_int(sect, "state", 0, &r->state, errp)) {
        return NULL;
    }
    if (d->kind == BLKDBG_RULE_SET_STATE) {
        if (!get_int(sect, "new_state", 0, &r->new_state, errp)) {
            return NULL;
        }
    } else if (!parse_io_fields(sect, r, errp)) {
        return NULL;
    }
    return g_steal_pointer(&r);
}

/* Moves the keys a section knows from @sub into a new dict (QEMU's
 * qemu_opts_absorb_qdict on the section's option list). */
static QDict *absorb_known_keys(const SectionDesc *d, QDict *sub)
{
    QDict *taken = qdict_new();

    for (int i = 0; d->keys[i]; i++) {
        QObject *v = qdict_get(sub, d->keys[i]);
        if (v) {
            qdict_put_obj(taken, d->keys[i], qobject_ref(v));
            qdict_del(sub, d->keys[i]);
        }
    }
    return taken;
}

/* Entry @i of an enumerated section: "i" itself or the "i." keys; NULL
 * at the end of the list (qdict_array_split). */
static QObject *take_array_entry(QDict *sub, int i)
{
    g_autofree char *key = g_strdup_printf("%d", i);
    g_autofree char *prefix = g_strdup_printf("%d.", i);
    QObject *v = qdict_get(sub, key);
    QDict *sect = NULL;

    if (v) {
        qobject_ref(v);
        qdict_del(sub, key);
        return v;
    }
    qdict_extract_subqdict(sub, &sect, prefix);
    if (!qdict_size(sect)) {
        qobject_unref(sect);
        return NULL;
    }
    return QOBJECT(sect);
}

static int add_rule_from(const SectionDesc *d, QDict *sect, GPtrArray *rules,
                         Error **errp)
{
    BlkdebugRule *r = parse_rule(d, sect, false, errp);

    if (!r) {
        return -EINVAL;
    }
    g_ptr_array_add(rules, r);
    return 0;
}

/* "S.0.key", "S.1.key"...: every entry must be a dict of known keys. */
static int rules_from_list(const SectionDesc *d, QDict *sub, GPtrArray *rules,
                           Error **errp)
{
    g_autoptr(GPtrArray) list =
        g_ptr_array_new_with_free_func((GDestroyNotify)qobject_unref_impl);
    QObject *v;

    while ((v = take_array_entry(sub, list->len))) {
        g_ptr_array_add(list, v);
    }
    if (qdict_size(sub)) {
        error_setg(errp, "Unused option '%s' for [%s]",
                   qdict_entry_key(qdict_first(sub)), d->name);
        return -EINVAL;
    }
    for (unsigned i = 0; i < list->len; i++) {
        QDict *sect = qobject_to_qdict(g_ptr_array_index(list, i));
        if (!sect) {
            error_setg(errp, "[%s] section (index %u) does not consist of "
                       "keys", d->name, i);
            return -EINVAL;
        }
        if (add_rule_from(d, sect, rules, errp) < 0) {
            return -EINVAL;
        }
    }
    return 0;
}

int blkdebug_rules_from_options(QDict *options, const char *section,
                                GPtrArray *rules, Error **errp)
{
    const SectionDesc *d = find_section(section);
    g_autofree char *prefix = g_strdup_printf("%s.", section);
    g_autoptr(QDict) sub = NULL;
    g_autoptr(QDict) single = NULL;
    size_t orig;

    qdict_extract_subqdict(options, &sub, prefix);
    orig = qdict_size(sub);
    if (!orig) {
        return 0;
    }
    single = absorb_known_keys(d, sub);
    if (qdict_size(sub) && qdict_size(sub) < orig) {
        error_setg(errp, "Unknown option '%s' for [%s]",
                   qdict_entry_key(qdict_first(sub)), section);
        return -EINVAL;
    }
    if (!qdict_size(sub)) {            /* one rule: "S.event" etc. */
        return add_rule_from(d, single, rules, errp);
    }
    return rules_from_list(d, sub, rules, errp);
}

/* ---- config files ---- */

typedef struct IniState {
    const SectionDesc *section;   /* current section, NULL before one */
    QDict *values;
    GPtrArray *rules;
} IniState;

/* The section being read is complete: turn it into a rule. */
static int ini_finish_section(IniState *st, Error **errp)
{
    BlkdebugRule *r;

    if (!st->section) {
        return 0;
    }
    r = parse_rule(st->section, st->values, true, errp);
    qobject_unref(st->values);
    st->values = NULL;
    st->section = NULL;
    if (!r) {
        return -EINVAL;
    }
    g_ptr_array_add(st->rules, r);
    return 0;
}

/* "[name]" starts a section. */
static int ini_section_line(IniState *st, char *line, Error **errp)
{
    char *end = strchr(line, ']');
    const SectionDesc *d;

    if (!end) {
        error_setg(errp, "parse error");
        return -EINVAL;
    }
    *end = '\0';
    if (ini_finish_section(st, errp) < 0) {
        return -EINVAL;
    }
    d = find_section(g_strstrip(line + 1));
    if (!d) {
        error_setg(errp, "There is no option group '%s'", line + 1);
        return -EINVAL;
    }
    st->section = d;
    st->values = qdict_new();
    return 0;
}

/* 'key = "value"' (quotes optional) inside a section. */
static int ini_value_line(IniState *st, char *line, Error **errp)
{
    char *eq = strchr(line, '=');
    char *key, *val;
    size_t len;

    if (!eq || !st->section) {
        error_setg(errp, "parse error");
        return -EINVAL;
    }
    *eq = '\0';
    key = g_strstrip(line);
    val = g_strstrip(eq + 1);
    len = strlen(val);
    if (len >= 2 && val[0] == '"' && val[len - 1] == '"') {
        val[len - 1] = '\0';
        val++;
    }
    qdict_put_str(st->values, key, val);
    return 0;
}

static int ini_line(IniState *st, char *line, Error **errp)
{
    line = g_strstrip(line);
    if (!*line || *line == '#') {
        return 0;
    }
    if (*line == '[') {
        return ini_section_line(st, line, errp);
    }
    return ini_value_line(st, line, errp);
}

int blkdebug_rules_from_file(const char *filename, GPtrArray *rules,
                             Error **errp)
{
    IniState st = { .rules = rules };
    FILE *f = fopen(filename, "r");
    char *line = NULL;
    size_t cap = 0;
    int ret = 0;

    if (!f) {
        int err = errno;
        error_setg_errno(errp, err, "Could not read blkdebug config file");
        return -err;
    }
    while (ret == 0 && getline(&line, &cap, f) >= 0) {
        ret = ini_line(&st, line, errp);
    }
    if (ret == 0) {
        ret = ini_finish_section(&st, errp);
    }
    qobject_unref(st.values);
    free(line);
    fclose(f);
    return ret;
}
