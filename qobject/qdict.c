#include "config.h"
/*
 * QDict: a string-keyed hash table whose iteration order matches QEMU's
 * (512 buckets keyed by tdb_hash, newest entry first within a bucket), plus
 * the flatten/crumple/extract helpers the block layer uses on options.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "qobject/qobject-int.h"

/* The Samba tdb hash QEMU uses; its value fixes the iteration order. */
static uint32_t tdb_hash(const char *key)
{
    size_t len = strlen(key);
    uint32_t value = 0x238F13AFu * (uint32_t)len;

    for (size_t i = 0; i < len; i++) {
        value += (uint32_t)(unsigned char)key[i] << (i * 5 % 24);
    }
    return 1103515243u * value + 12345u;
}

unsigned qdict_bucket_(const char *key)
{
    return tdb_hash(key) % QDICT_BUCKETS;
}

QDict *qdict_new(void)
{
    QDict *d = g_new0(QDict, 1);
    qobject_init_(&d->base, QTYPE_QDICT);
    return d;
}

static void qdict_entry_free(QDictEntry *e)
{
    qobject_unref(e->value);
    g_free(e->key);
    g_free(e);
}

static void qdict_chain_free(QDictEntry *e)
{
    while (e) {
        QDictEntry *next = e->next;
        qdict_entry_free(e);
        e = next;
    }
}

void qdict_destroy_(QDict *d)
{
    if (d->table) {
        for (unsigned b = 0; b < QDICT_BUCKETS; b++) {
            qdict_chain_free(d->table[b]);
        }
    }
    for (unsigned i = 0; i < d->nslots; i++) {
        qdict_chain_free(d->slots[i].head);
    }
    g_free(d->table);
    g_free(d->slots);
}

/* Index of the first small-form slot whose bucket is >= @bucket. */
static unsigned slot_search(const QDict *d, unsigned bucket)
{
    unsigned lo = 0, hi = d->nslots;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (d->slots[mid].bucket < bucket) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* The small form outgrown: every chain moves into the full table. */
static void qdict_grow_table(QDict *d)
{
    d->table = g_new0(QDictEntry *, QDICT_BUCKETS);
    for (unsigned i = 0; i < d->nslots; i++) {
        d->table[d->slots[i].bucket] = d->slots[i].head;
    }
    g_clear_pointer(&d->slots, g_free);
    d->nslots = d->slots_cap = 0;
}

/* A new slot for @bucket at index @i of the small form. */
static QDictEntry **slot_insert(QDict *d, unsigned i, unsigned bucket)
{
    if (d->nslots == d->slots_cap) {
        d->slots_cap = d->slots_cap ? d->slots_cap * 2 : 4;
        d->slots = g_renew(QDictSlot, d->slots, d->slots_cap);
    }
    memmove(&d->slots[i + 1], &d->slots[i],
            (d->nslots - i) * sizeof(d->slots[0]));
    d->slots[i] = (QDictSlot){ .bucket = bucket, .head = NULL };
    d->nslots++;
    return &d->slots[i].head;
}

/* Where @bucket's chain starts; NULL when it has none and !@create. */
static QDictEntry **bucket_head(QDict *d, unsigned bucket, bool create)
{
    unsigned i;

    if (d->table) {
        return &d->table[bucket];
    }
    i = slot_search(d, bucket);
    if (i < d->nslots && d->slots[i].bucket == bucket) {
        return &d->slots[i].head;
    }
    if (!create) {
        return NULL;
    }
    if (d->nslots == QDICT_SMALL_BUCKETS) {
        qdict_grow_table(d);
        return &d->table[bucket];
    }
    return slot_insert(d, i, bucket);
}

size_t qdict_size(const QDict *d)
{
    return d->size;
}

static QDictEntry *qdict_find(const QDict *d, const char *key, unsigned bucket)
{
    QDictEntry **head = bucket_head((QDict *)d, bucket, false);

    for (QDictEntry *e = head ? *head : NULL; e; e = e->next) {
        if (!strcmp(e->key, key)) {
            return e;
        }
    }
    return NULL;
}

void qdict_put_obj(QDict *d, const char *key, QObject *value)
{
    unsigned bucket = qdict_bucket_(key);
    QDictEntry *e = qdict_find(d, key, bucket);
    QDictEntry **head;

    g_assert(value);
    if (e) {
        /* Replacing keeps the entry's place in the iteration order. */
        qobject_unref(e->value);
        e->value = value;
        return;
    }
    head = bucket_head(d, bucket, true);
    e = g_new0(QDictEntry, 1);
    e->key = g_strdup(key);
    e->value = value;
    e->next = *head;
    *head = e;
    d->size++;
}

void qdict_put_str(QDict *d, const char *key, const char *v)
{
    qdict_put(d, key, qstring_from_str(v));
}

void qdict_put_int(QDict *d, const char *key, int64_t v)
{
    qdict_put(d, key, qnum_from_int(v));
}

void qdict_put_uint(QDict *d, const char *key, uint64_t v)
{
    qdict_put(d, key, qnum_from_uint(v));
}

void qdict_put_double(QDict *d, const char *key, double v)
{
    qdict_put(d, key, qnum_from_double(v));
}

void qdict_put_bool(QDict *d, const char *key, bool v)
{
    qdict_put(d, key, qbool_from_bool(v));
}

void qdict_put_null(QDict *d, const char *key)
{
    qdict_put(d, key, qnull());
}

QObject *qdict_get(const QDict *d, const char *key)
{
    QDictEntry *e = qdict_find(d, key, qdict_bucket_(key));
    return e ? e->value : NULL;
}

bool qdict_haskey(const QDict *d, const char *key)
{
    return qdict_get(d, key) != NULL;
}

void qdict_del(QDict *d, const char *key)
{
    QDictEntry **pp = bucket_head(d, qdict_bucket_(key), false);

    for (; pp && *pp; pp = &(*pp)->next) {
        if (!strcmp((*pp)->key, key)) {
            QDictEntry *e = *pp;
            *pp = e->next;
            qdict_entry_free(e);
            d->size--;
            return;
        }
    }
}

/* ---- typed getters ---- */

const char *qdict_get_try_str(const QDict *d, const char *key)
{
    QString *s = qobject_to_qstring(qdict_get(d, key));
    return s ? qstring_get_str(s) : NULL;
}

const char *qdict_get_str(const QDict *d, const char *key)
{
    const char *s = qdict_get_try_str(d, key);
    g_assert(s);
    return s;
}

/* Option strings from the command line carry numbers as text. */
static bool parse_int_str(const char *s, int64_t *v)
{
    char *end;
    long long r;

    if (!*s || g_ascii_isspace(*s)) {
        return false;
    }
    errno = 0;
    r = strtoll(s, &end, 10);
    if (errno || *end) {
        return false;
    }
    *v = r;
    return true;
}

/* Shared by the int getters: true and *v when @obj reads as an int64. */
static bool obj_to_int(const QObject *obj, int64_t *v)
{
    QNum *n = qobject_to_qnum(obj);
    QString *s = qobject_to_qstring(obj);

    if (n) {
        return qnum_get_try_int(n, v);
    }
    return s && parse_int_str(s->str, v);
}

int64_t qdict_get_try_int(const QDict *d, const char *key, int64_t def)
{
    int64_t v;
    return obj_to_int(qdict_get(d, key), &v) ? v : def;
}

int64_t qdict_get_int(const QDict *d, const char *key)
{
    int64_t v = 0;
    bool ok = obj_to_int(qdict_get(d, key), &v);
    g_assert(ok);
    return v;
}

/* Accepts QBool or the boolean spellings QEMU's option parser knows. */
static bool obj_to_bool(const QObject *obj, bool *v)
{
    static const char *const yes[] = { "on", "true", "yes", NULL };
    static const char *const no[] = { "off", "false", "no", NULL };
    QBool *b = qobject_to_qbool(obj);
    QString *s = qobject_to_qstring(obj);

    if (b) {
        *v = b->value;
        return true;
    }
    if (!s) {
        return false;
    }
    if (g_strv_contains(yes, s->str)) {
        *v = true;
        return true;
    }
    if (g_strv_contains(no, s->str)) {
        *v = false;
        return true;
    }
    return false;
}

bool qdict_get_try_bool(const QDict *d, const char *key, bool def)
{
    bool v;
    return obj_to_bool(qdict_get(d, key), &v) ? v : def;
}

bool qdict_get_bool(const QDict *d, const char *key)
{
    bool v = false;
    bool ok = obj_to_bool(qdict_get(d, key), &v);
    g_assert(ok);
    return v;
}

QDict *qdict_get_qdict(const QDict *d, const char *key)
{
    return qobject_to_qdict(qdict_get(d, key));
}

QList *qdict_get_qlist(const QDict *d, const char *key)
{
    return qobject_to_qlist(qdict_get(d, key));
}

/* ---- iteration ---- */

static const QDictEntry *first_from_bucket(const QDict *d, unsigned bucket)
{
    if (!d->table) {
        /* a deleted entry may leave a slot's chain empty */
        for (unsigned i = slot_search(d, bucket); i < d->nslots; i++) {
            if (d->slots[i].head) {
                return d->slots[i].head;
            }
        }
        return NULL;
    }
    for (unsigned b = bucket; b < QDICT_BUCKETS; b++) {
        if (d->table[b]) {
            return d->table[b];
        }
    }
    return NULL;
}

const QDictEntry *qdict_first(const QDict *d)
{
    return first_from_bucket(d, 0);
}

const QDictEntry *qdict_next(const QDict *d, const QDictEntry *e)
{
    if (e->next) {
        return e->next;
    }
    return first_from_bucket(d, qdict_bucket_(e->key) + 1);
}

const char *qdict_entry_key(const QDictEntry *e)
{
    return e->key;
}

QObject *qdict_entry_value(const QDictEntry *e)
{
    return e->value;
}

bool qdict_is_equal_(const QDict *a, const QDict *b)
{
    if (a->size != b->size) {
        return false;
    }
    for (const QDictEntry *e = qdict_first(a); e; e = qdict_next(a, e)) {
        if (!qobject_is_equal(e->value, qdict_get(b, e->key))) {
            return false;
        }
    }
    return true;
}

/* ---- helpers ---- */

/* Collects the keys of @d in iteration order, so @d may change meanwhile. */
static char **qdict_keys(const QDict *d)
{
    char **keys = g_new0(char *, d->size + 1);
    size_t i = 0;

    for (const QDictEntry *e = qdict_first(d); e; e = qdict_next(d, e)) {
        keys[i++] = g_strdup(e->key);
    }
    return keys;
}

QDict *qdict_clone_shallow(const QDict *src)
{
    QDict *dst = qdict_new();

    for (const QDictEntry *e = qdict_first(src); e; e = qdict_next(src, e)) {
        qdict_put_obj(dst, e->key, qobject_ref(e->value));
    }
    return dst;
}

void qdict_extract_subqdict(QDict *src, QDict **dst, const char *prefix)
{
    g_auto(GStrv) keys = qdict_keys(src);
    size_t plen = strlen(prefix);

    if (dst) {
        *dst = qdict_new();
    }
    for (char **k = keys; *k; k++) {
        if (strncmp(*k, prefix, plen)) {
            continue;
        }
        if (dst) {
            qdict_put_obj(*dst, *k + plen, qobject_ref(qdict_get(src, *k)));
        }
        qdict_del(src, *k);
    }
}

void qdict_join(QDict *dst, QDict *src, bool overwrite)
{
    g_auto(GStrv) keys = qdict_keys(src);

    for (char **k = keys; *k; k++) {
        if (!overwrite && qdict_haskey(dst, *k)) {
            continue;
        }
        qdict_put_obj(dst, *k, qobject_ref(qdict_get(src, *k)));
        qdict_del(src, *k);
    }
}

static void flatten_into(QObject *obj, QDict *target, const char *prefix);

/* Puts @value under @key in @target, expanding non-empty containers. */
static void flatten_value(QObject *value, QDict *target, const char *key)
{
    QDict *d = qobject_to_qdict(value);
    QList *l = qobject_to_qlist(value);

    if ((d && qdict_size(d)) || (l && !qlist_empty(l))) {
        flatten_into(value, target, key);
    } else {
        qdict_put_obj(target, key, qobject_ref(value));
    }
}

/* Writes every leaf of dict/list @obj as "prefix.key" into @target. */
static void flatten_into(QObject *obj, QDict *target, const char *prefix)
{
    QDict *d = qobject_to_qdict(obj);

    if (d) {
        for (const QDictEntry *e = qdict_first(d); e; e = qdict_next(d, e)) {
            g_autofree char *key = g_strdup_printf("%s.%s", prefix, e->key);
            flatten_value(e->value, target, key);
        }
        return;
    }
    size_t i = 0;
    for (QListEntry *e = qlist_first((QList *)obj); e; e = e->next, i++) {
        g_autofree char *key = g_strdup_printf("%s.%zu", prefix, i);
        flatten_value(e->value, target, key);
    }
}

void qdict_flatten(QDict *d)
{
    g_auto(GStrv) keys = qdict_keys(d);

    for (char **k = keys; *k; k++) {
        QObject *v = qdict_get(d, *k);
        QDict *sub = qobject_to_qdict(v);
        QList *l = qobject_to_qlist(v);

        if ((sub && qdict_size(sub)) || (l && !qlist_empty(l))) {
            qobject_ref(v);
            qdict_del(d, *k);
            flatten_into(v, d, *k);
            qobject_unref(v);
        }
    }
}

/* ---- crumple ---- */

/* Splits @key at the first single '.'; ".." in the prefix stands for '.'.
 * *suffix is NULL if there is no separator. */
static char *split_flat_key(const char *key, const char **suffix)
{
    GString *prefix = g_string_new(NULL);
    const char *p = key;

    *suffix = NULL;
    for (; *p; p++) {
        if (*p == '.' && p[1] == '.') {
            g_string_append_c(prefix, '.');
            p++;
        } else if (*p == '.') {
            *suffix = p + 1;
            break;
        } else {
            g_string_append_c(prefix, *p);
        }
    }
    return g_string_free(prefix, FALSE);
}

/* Step one of crumpling: one level of nesting, leaves keep dotted rest. */
static bool crumple_put(QDict *two, const char *key, QObject *value,
                        Error **errp)
{
    const char *suffix;
    g_autofree char *prefix = split_flat_key(key, &suffix);
    QObject *child = qdict_get(two, prefix);
    QDict *child_dict = qobject_to_qdict(child);

    if (child && (!child_dict || !suffix)) {
        error_setg(errp, "Cannot mix scalar and non-scalar keys");
        return false;
    }
    if (!suffix) {
        /* A copy, so that merging dotted keys never touches @src. */
        qdict_put_obj(two, prefix, qobject_to_qdict(value)
                      ? QOBJECT(qdict_new()) : qobject_ref(value));
        return true;
    }
    if (!child_dict) {
        child_dict = qdict_new();
        qdict_put(two, prefix, child_dict);
    }
    qdict_put_obj(child_dict, suffix, qobject_ref(value));
    return true;
}

/* -1 unless @key is a canonical decimal list index. */
static int64_t list_index(const char *key)
{
    int64_t v;

    if (!g_ascii_isdigit(key[0]) || (key[0] == '0' && key[1])) {
        return -1;
    }
    if (!parse_int_str(key, &v) || v > G_MAXINT) {
        return -1;
    }
    return v;
}

/* A dict whose keys are exactly 0..n-1 becomes a list; mixed is an error. */
static QObject *maybe_listify(QDict *d, Error **errp)
{
    size_t n = qdict_size(d), indexes = 0;

    for (const QDictEntry *e = qdict_first(d); e; e = qdict_next(d, e)) {
        indexes += list_index(e->key) >= 0;
    }
    if (indexes == 0) {
        return qobject_ref(QOBJECT(d));
    }
    if (indexes != n) {
        error_setg(errp, "Cannot mix list and non-list keys");
        return NULL;
    }
    QList *l = qlist_new();
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof(key), "%zu", i);
        QObject *v = qdict_get(d, key);
        if (!v) {
            error_setg(errp, "Unable to find '%zu' key in list", i);
            qobject_unref(l);
            return NULL;
        }
        qlist_append_obj(l, qobject_ref(v));
    }
    return QOBJECT(l);
}

/* Crumples every dict made by step one, in place. */
static bool crumple_children(QDict *two, Error **errp)
{
    g_auto(GStrv) keys = qdict_keys(two);

    for (char **k = keys; *k; k++) {
        QDict *child = qobject_to_qdict(qdict_get(two, *k));
        if (child && qdict_size(child)) {
            QObject *c = qdict_crumple(child, errp);
            if (!c) {
                return false;
            }
            qdict_put_obj(two, *k, c);
        }
    }
    return true;
}

QObject *qdict_crumple(const QDict *src, Error **errp)
{
    QDict *two = qdict_new();
    QObject *result = NULL;

    for (const QDictEntry *e = qdict_first(src); e; e = qdict_next(src, e)) {
        QDict *dv = qobject_to_qdict(e->value);
        QList *lv = qobject_to_qlist(e->value);
        if ((dv && qdict_size(dv)) || (lv && !qlist_empty(lv))) {
            error_setg(errp, "Value %s is not flat", e->key);
            goto out;
        }
        if (!crumple_put(two, e->key, e->value, errp)) {
            goto out;
        }
    }
    if (crumple_children(two, errp)) {
        result = maybe_listify(two, errp);
    }
out:
    qobject_unref(two);
    return result;
}
