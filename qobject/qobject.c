#include "config.h"
/*
 * QObject base: reference counting, type checks, scalars and QList.
 */
#include <string.h>
#include "qobject/qobject-int.h"

void qobject_init_(QObject *obj, QType type)
{
    obj->type = type;
    obj->refcnt = 1;
}

QObject *qobject_ref_impl(QObject *obj)
{
    if (obj) {
        g_assert(obj->refcnt > 0);
        obj->refcnt++;
    }
    return obj;
}

/* Frees the type-specific payload once the last reference is gone. */
static void qobject_destroy(QObject *obj)
{
    switch (obj->type) {
    case QTYPE_QSTRING:
        g_free(((QString *)obj)->str);
        break;
    case QTYPE_QDICT:
        qdict_destroy_((QDict *)obj);
        break;
    case QTYPE_QLIST:
        qlist_destroy_((QList *)obj);
        break;
    default:
        break;
    }
    g_free(obj);
}

void qobject_unref_impl(QObject *obj)
{
    if (!obj) {
        return;
    }
    g_assert(obj->refcnt > 0);
    if (--obj->refcnt == 0) {
        qobject_destroy(obj);
    }
}

QType qobject_type(const QObject *obj)
{
    return obj ? obj->type : QTYPE_NONE;
}

QDict *qobject_to_qdict(const QObject *obj)
{
    return qobject_type(obj) == QTYPE_QDICT ? (QDict *)obj : NULL;
}

QList *qobject_to_qlist(const QObject *obj)
{
    return qobject_type(obj) == QTYPE_QLIST ? (QList *)obj : NULL;
}

QString *qobject_to_qstring(const QObject *obj)
{
    return qobject_type(obj) == QTYPE_QSTRING ? (QString *)obj : NULL;
}

QNum *qobject_to_qnum(const QObject *obj)
{
    return qobject_type(obj) == QTYPE_QNUM ? (QNum *)obj : NULL;
}

QBool *qobject_to_qbool(const QObject *obj)
{
    return qobject_type(obj) == QTYPE_QBOOL ? (QBool *)obj : NULL;
}

/* ---- scalars ---- */

QNull *qnull(void)
{
    QNull *n = g_new0(QNull, 1);
    qobject_init_(&n->base, QTYPE_QNULL);
    return n;
}

QString *qstring_from_substr(const char *s, size_t start, size_t end)
{
    QString *qs = g_new0(QString, 1);

    g_assert(start <= end);
    qobject_init_(&qs->base, QTYPE_QSTRING);
    qs->len = end - start;
    qs->str = g_strndup(s + start, qs->len);
    return qs;
}

QString *qstring_from_str(const char *s)
{
    return qstring_from_substr(s, 0, strlen(s));
}

const char *qstring_get_str(const QString *s)
{
    return s->str;
}

/* Allocates a QNum of the given kind; the caller fills in the value. */
static QNum *qnum_alloc(QNumKind kind)
{
    QNum *n = g_new0(QNum, 1);
    qobject_init_(&n->base, QTYPE_QNUM);
    n->kind = kind;
    return n;
}

QNum *qnum_from_int(int64_t v)
{
    QNum *n = qnum_alloc(QNUM_I64);
    n->u.i64 = v;
    return n;
}

QNum *qnum_from_uint(uint64_t v)
{
    QNum *n = qnum_alloc(QNUM_U64);
    n->u.u64 = v;
    return n;
}

QNum *qnum_from_double(double v)
{
    QNum *n = qnum_alloc(QNUM_DOUBLE);
    n->u.dbl = v;
    return n;
}

bool qnum_get_try_int(const QNum *n, int64_t *v)
{
    switch (n->kind) {
    case QNUM_I64:
        *v = n->u.i64;
        return true;
    case QNUM_U64:
        if (n->u.u64 > INT64_MAX) {
            return false;
        }
        *v = (int64_t)n->u.u64;
        return true;
    default:
        return false;
    }
}

bool qnum_get_try_uint(const QNum *n, uint64_t *v)
{
    switch (n->kind) {
    case QNUM_I64:
        if (n->u.i64 < 0) {
            return false;
        }
        *v = (uint64_t)n->u.i64;
        return true;
    case QNUM_U64:
        *v = n->u.u64;
        return true;
    default:
        return false;
    }
}

int64_t qnum_get_int(const QNum *n)
{
    int64_t v = 0;
    bool ok = qnum_get_try_int(n, &v);
    g_assert(ok);
    return v;
}

uint64_t qnum_get_uint(const QNum *n)
{
    uint64_t v = 0;
    bool ok = qnum_get_try_uint(n, &v);
    g_assert(ok);
    return v;
}

double qnum_get_double(const QNum *n)
{
    switch (n->kind) {
    case QNUM_I64:
        return (double)n->u.i64;
    case QNUM_U64:
        return (double)n->u.u64;
    default:
        return n->u.dbl;
    }
}

QBool *qbool_from_bool(bool v)
{
    QBool *b = g_new0(QBool, 1);
    qobject_init_(&b->base, QTYPE_QBOOL);
    b->value = v;
    return b;
}

bool qbool_get_bool(const QBool *b)
{
    return b->value;
}

/* ---- QList ---- */

QList *qlist_new(void)
{
    QList *l = g_new0(QList, 1);
    qobject_init_(&l->base, QTYPE_QLIST);
    return l;
}

void qlist_destroy_(QList *l)
{
    QListEntry *e = l->head;

    while (e) {
        QListEntry *next = e->next;
        qobject_unref(e->value);
        g_free(e);
        e = next;
    }
}

void qlist_append_obj(QList *l, QObject *obj)
{
    QListEntry *e = g_new0(QListEntry, 1);

    e->value = obj;
    if (l->tail) {
        l->tail->next = e;
    } else {
        l->head = e;
    }
    l->tail = e;
    l->size++;
}

void qlist_append_str(QList *l, const char *s)
{
    qlist_append(l, qstring_from_str(s));
}

void qlist_append_int(QList *l, int64_t v)
{
    qlist_append(l, qnum_from_int(v));
}

void qlist_append_bool(QList *l, bool v)
{
    qlist_append(l, qbool_from_bool(v));
}

size_t qlist_size(const QList *l)
{
    return l->size;
}

bool qlist_empty(const QList *l)
{
    return l->size == 0;
}

QObject *qlist_peek(const QList *l)
{
    return l->head ? l->head->value : NULL;
}

QObject *qlist_pop(QList *l)
{
    QListEntry *e = l->head;
    QObject *obj;

    if (!e) {
        return NULL;
    }
    l->head = e->next;
    if (!l->head) {
        l->tail = NULL;
    }
    l->size--;
    obj = e->value;
    g_free(e);
    return obj;
}

QListEntry *qlist_first(const QList *l)
{
    return l->head;
}

QListEntry *qlist_next(const QListEntry *e)
{
    return e->next;
}

QObject *qlist_entry_obj(const QListEntry *e)
{
    return e->value;
}

/* ---- equality ---- */

/* Numbers compare by value whatever their representation, like QEMU. */
static bool qnum_is_equal(const QNum *a, const QNum *b)
{
    int64_t ia, ib;
    uint64_t ua, ub;

    if (a->kind == QNUM_DOUBLE || b->kind == QNUM_DOUBLE) {
        if (a->kind != b->kind) {
            return false;
        }
        return a->u.dbl == b->u.dbl;
    }
    if (qnum_get_try_int(a, &ia) && qnum_get_try_int(b, &ib)) {
        return ia == ib;
    }
    if (qnum_get_try_uint(a, &ua) && qnum_get_try_uint(b, &ub)) {
        return ua == ub;
    }
    return false;
}

static bool qlist_is_equal(const QList *a, const QList *b)
{
    const QListEntry *ea = a->head, *eb = b->head;

    for (; ea && eb; ea = ea->next, eb = eb->next) {
        if (!qobject_is_equal(ea->value, eb->value)) {
            return false;
        }
    }
    return !ea && !eb;
}

bool qobject_is_equal(const QObject *a, const QObject *b)
{
    if (a == b) {
        return true;
    }
    if (!a || !b || a->type != b->type) {
        return false;
    }
    switch (a->type) {
    case QTYPE_QNULL:
        return true;
    case QTYPE_QBOOL:
        return ((QBool *)a)->value == ((QBool *)b)->value;
    case QTYPE_QSTRING:
        return !strcmp(((QString *)a)->str, ((QString *)b)->str);
    case QTYPE_QNUM:
        return qnum_is_equal((QNum *)a, (QNum *)b);
    case QTYPE_QLIST:
        return qlist_is_equal((QList *)a, (QList *)b);
    case QTYPE_QDICT:
        return qdict_is_equal_((QDict *)a, (QDict *)b);
    default:
        return false;
    }
}
