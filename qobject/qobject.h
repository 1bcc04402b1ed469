/*
 * Refcounted typed values and JSON.
 *
 * Ownership: the _new and _from_ constructors return a new reference;
 * qdict_put... and qlist_append... take over the reference passed in;
 * qdict_get... and qlist_peek return borrowed pointers.  qobject_unref(NULL) is a no-op.
 *
 * QDict iteration order (qdict_first/qdict_next) is QEMU's: 512 buckets by
 * tdb_hash(key) % 512 (see COMPAT.md), within a bucket the most recently
 * inserted key first.  The JSON writer iterates in that order, so its output
 * is byte-identical to qemu-img's.
 */
#ifndef STRATA_QOBJECT_H
#define STRATA_QOBJECT_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include "util/error.h"

typedef enum {
    QTYPE_NONE, QTYPE_QNULL, QTYPE_QNUM, QTYPE_QSTRING,
    QTYPE_QDICT, QTYPE_QLIST, QTYPE_QBOOL,
} QType;

typedef struct QObject { QType type; unsigned refcnt; } QObject;
typedef struct QDict QDict;
typedef struct QList QList;
typedef struct QString QString;
typedef struct QNum QNum;
typedef struct QBool QBool;
typedef struct QNull QNull;
typedef struct QDictEntry QDictEntry;
typedef struct QListEntry QListEntry;

#define QOBJECT(x) ((QObject *)(x))

QObject *qobject_ref_impl(QObject *obj);
void qobject_unref_impl(QObject *obj);
#define qobject_ref(x)   ((__typeof__(x))qobject_ref_impl(QOBJECT(x)))
#define qobject_unref(x) qobject_unref_impl(QOBJECT(x))
QType qobject_type(const QObject *obj);
bool qobject_is_equal(const QObject *a, const QObject *b);
/* Checked downcasts: NULL if @obj is NULL or of another type. */
QDict *qobject_to_qdict(const QObject *obj);
QList *qobject_to_qlist(const QObject *obj);
QString *qobject_to_qstring(const QObject *obj);
QNum *qobject_to_qnum(const QObject *obj);
QBool *qobject_to_qbool(const QObject *obj);

/* Scalars */
QNull *qnull(void);
QString *qstring_from_str(const char *s);
QString *qstring_from_substr(const char *s, size_t start, size_t end);
const char *qstring_get_str(const QString *s);
QNum *qnum_from_int(int64_t v);
QNum *qnum_from_uint(uint64_t v);
QNum *qnum_from_double(double v);
bool qnum_get_try_int(const QNum *n, int64_t *v);
bool qnum_get_try_uint(const QNum *n, uint64_t *v);
int64_t qnum_get_int(const QNum *n);     /* asserts representable */
uint64_t qnum_get_uint(const QNum *n);
double qnum_get_double(const QNum *n);
QBool *qbool_from_bool(bool v);
bool qbool_get_bool(const QBool *b);

/* QList */
QList *qlist_new(void);
void qlist_append_obj(QList *l, QObject *obj);
#define qlist_append(l, obj) qlist_append_obj((l), QOBJECT(obj))
void qlist_append_str(QList *l, const char *s);
void qlist_append_int(QList *l, int64_t v);
void qlist_append_bool(QList *l, bool v);
size_t qlist_size(const QList *l);
bool qlist_empty(const QList *l);
QObject *qlist_peek(const QList *l);      /* first element or NULL */
QObject *qlist_pop(QList *l);             /* removes first, caller owns */
QListEntry *qlist_first(const QList *l);
QListEntry *qlist_next(const QListEntry *e);
QObject *qlist_entry_obj(const QListEntry *e);
#define QLIST_FOREACH_ENTRY(l, e) \
    for ((e) = qlist_first(l); (e); (e) = qlist_next(e))

/* QDict */
QDict *qdict_new(void);
size_t qdict_size(const QDict *d);
void qdict_put_obj(QDict *d, const char *key, QObject *value);
#define qdict_put(d, key, obj) qdict_put_obj((d), (key), QOBJECT(obj))
void qdict_put_str(QDict *d, const char *key, const char *v);
void qdict_put_int(QDict *d, const char *key, int64_t v);
void qdict_put_uint(QDict *d, const char *key, uint64_t v);
void qdict_put_double(QDict *d, const char *key, double v);
void qdict_put_bool(QDict *d, const char *key, bool v);
void qdict_put_null(QDict *d, const char *key);
QObject *qdict_get(const QDict *d, const char *key);
bool qdict_haskey(const QDict *d, const char *key);
void qdict_del(QDict *d, const char *key);
/* Typed getters: NULL/def when absent or of another type.  A QString
 * holding "on"/"off"/"true"/"false" or a number also satisfies the bool
 * and int getters (options from the command line are strings). */
const char *qdict_get_try_str(const QDict *d, const char *key);
const char *qdict_get_str(const QDict *d, const char *key);   /* asserts present */
int64_t qdict_get_try_int(const QDict *d, const char *key, int64_t def);
int64_t qdict_get_int(const QDict *d, const char *key);
bool qdict_get_try_bool(const QDict *d, const char *key, bool def);
bool qdict_get_bool(const QDict *d, const char *key);
QDict *qdict_get_qdict(const QDict *d, const char *key);
QList *qdict_get_qlist(const QDict *d, const char *key);

const QDictEntry *qdict_first(const QDict *d);
const QDictEntry *qdict_next(const QDict *d, const QDictEntry *e);
const char *qdict_entry_key(const QDictEntry *e);
QObject *qdict_entry_value(const QDictEntry *e);

QDict *qdict_clone_shallow(const QDict *src);
/* Move every "prefix"-ed key of @src into a new dict *dst, prefix removed. */
void qdict_extract_subqdict(QDict *src, QDict **dst, const char *prefix);
/* Nested dicts (and lists, as .0 .1 ...) to dotted keys, in place. */
void qdict_flatten(QDict *d);
/* Dotted keys to nested dicts; NULL + error on conflicts ("a=1,a.b=2"). */
QObject *qdict_crumple(const QDict *src, Error **errp);
/* Copy entries of @src missing from @dst into @dst. */
void qdict_join(QDict *dst, QDict *src, bool overwrite);

/* JSON.  Parser: strict RFC 8259 plus QEMU's extensions that matter for
 * json: filenames (single-quoted strings); UTF-8 validated; nesting depth
 * limit 1024, input size limit 64 MiB; numbers: integers that fit int64 or
 * uint64 become ints, others doubles.  Errors name the problem and never
 * crash. */
QObject *qobject_from_json(const char *json, Error **errp);
/* Writer: @pretty=true is qemu-img's --output=json layout (4-space indent,
 * no trailing newline -- the caller prints "\n"); false is compact. */
GString *qobject_to_json_pretty(const QObject *obj, bool pretty);
char *qobject_to_json_str(const QObject *obj);   /* compact, g_free() */

static inline void qdict_unref_(QDict *d) { qobject_unref_impl(QOBJECT(d)); }
static inline void qlist_unref_(QList *l) { qobject_unref_impl(QOBJECT(l)); }
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QDict, qdict_unref_)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QList, qlist_unref_)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QObject, qobject_unref_impl)

#endif
