/*
 * Private layout of the QObject types, shared by the qobject/ sources only.
 */
#ifndef STRATA_QOBJECT_INT_H
#define STRATA_QOBJECT_INT_H

#include "qobject/qobject.h"

#define QDICT_BUCKETS 512

typedef enum { QNUM_I64, QNUM_U64, QNUM_DOUBLE } QNumKind;

struct QNull { QObject base; };
struct QBool { QObject base; bool value; };
struct QString { QObject base; char *str; size_t len; };

struct QNum {
    QObject base;
    QNumKind kind;
    union { int64_t i64; uint64_t u64; double dbl; } u;
};

struct QListEntry {
    QObject *value;
    QListEntry *next;
};

struct QList {
    QObject base;
    QListEntry *head;
    QListEntry *tail;
    size_t size;
};

struct QDictEntry {
    char *key;
    QObject *value;
    QDictEntry *next;
};

/* Each bucket's chain.  A dict using few buckets keeps only those, as
 * (bucket, chain) pairs sorted by bucket; past QDICT_SMALL_BUCKETS it
 * gets the full table.  A full table in every dict cost 4 KiB per dict:
 * info's output of an image with 60,000 snapshots held 180 MB. */
#define QDICT_SMALL_BUCKETS 32

typedef struct QDictSlot {
    unsigned bucket;
    QDictEntry *head;
} QDictSlot;

struct QDict {
    QObject base;
    size_t size;
    unsigned nslots;            /* slots used (small form) */
    unsigned slots_cap;
    QDictSlot *slots;           /* sorted by bucket; NULL once table is */
    QDictEntry **table;         /* QDICT_BUCKETS chains (large form) */
};

void qobject_init_(QObject *obj, QType type);
void qdict_destroy_(QDict *d);
void qlist_destroy_(QList *l);
bool qdict_is_equal_(const QDict *a, const QDict *b);
unsigned qdict_bucket_(const char *key);

/* json-utf8.c: decode one UTF-8 sequence at @s; -1 for malformed,
 * overlong or surrogate sequences.  *@len: the bytes it spans, or on
 * failure the bytes up to the first bad one (at least 1). */
int32_t json_utf8_decode(const unsigned char *s, size_t *len);

#endif
