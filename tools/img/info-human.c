#include "config.h"
/*
 * Human-readable "qemu-img info": the fixed fields, format-specific data as
 * an indented tree ("-" in keys printed as spaces) and child nodes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "tools/img/img.h"
#include "tools/img/snapshot-dump.h"
#include "tools/img/info-human.h"

static void dump_value(int indent, QObject *obj);

/* "key: value" or "key:" and the nested value below it. */
static void dump_qdict(int indent, QDict *dict)
{
    for (const QDictEntry *e = qdict_first(dict); e; e = qdict_next(dict, e)) {
        QObject *v = qdict_entry_value(e);
        QType t = qobject_type(v);
        bool composite = t == QTYPE_QDICT || t == QTYPE_QLIST;
        g_autofree char *key = g_strdup(qdict_entry_key(e));

        g_strdelimit(key, "-", ' ');
        printf("%*s%s:%c", indent, "", key, composite ? '\n' : ' ');
        dump_value(indent + 4, v);
    }
}

/* "[i]: value" per element. */
static void dump_qlist(int indent, QList *list)
{
    int i = 0;

    for (QListEntry *e = qlist_first(list); e; e = qlist_next(e), i++) {
        QObject *v = qlist_entry_obj(e);
        QType t = qobject_type(v);
        bool composite = t == QTYPE_QDICT || t == QTYPE_QLIST;

        printf("%*s[%i]:%c", indent, "", i, composite ? '\n' : ' ');
        dump_value(indent + 4, v);
    }
}

/* A number as the JSON writer prints it. */
static void dump_number(QNum *n)
{
    int64_t i;
    uint64_t u;

    if (qnum_get_try_int(n, &i)) {
        printf("%" PRId64 "\n", i);
    } else if (qnum_get_try_uint(n, &u)) {
        printf("%" PRIu64 "\n", u);
    } else {
        printf("%.17g\n", qnum_get_double(n));
    }
}

static void dump_value(int indent, QObject *obj)
{
    switch (qobject_type(obj)) {
    case QTYPE_QDICT:
        dump_qdict(indent, qobject_to_qdict(obj));
        break;
    case QTYPE_QLIST:
        dump_qlist(indent, qobject_to_qlist(obj));
        break;
    case QTYPE_QSTRING:
        printf("%s\n", qstring_get_str(qobject_to_qstring(obj)));
        break;
    case QTYPE_QBOOL:
        printf("%s\n", qbool_get_bool(qobject_to_qbool(obj)) ? "true" : "false");
        break;
    case QTYPE_QNUM:
        dump_number(qobject_to_qnum(obj));
        break;
    default:
        printf("null\n");
        break;
    }
}

/* "<label>: 1 GiB (1073741824 bytes)" */
static void dump_size_line(int indent, const char *label, int64_t v)
{
    g_autofree char *s = img_size_str(v);

    printf("%*s%s: %s (%" PRId64 " bytes)\n", indent, "", label, s, v);
}

/* disk size, cluster size, encryption and dirty state. */
static void dump_allocation(QDict *info, int indent)
{
    if (qdict_haskey(info, "actual-size")) {
        g_autofree char *s = img_size_str(qdict_get_int(info, "actual-size"));
        printf("%*sdisk size: %s\n", indent, "", s);
    } else {
        printf("%*sdisk size: unavailable\n", indent, "");
    }
    if (qdict_get_try_bool(info, "encrypted", false)) {
        printf("%*sencrypted: yes\n", indent, "");
    }
    if (qdict_haskey(info, "cluster-size")) {
        printf("%*scluster_size: %" PRId64 "\n", indent, "",
               qdict_get_int(info, "cluster-size"));
    }
    if (qdict_get_try_bool(info, "dirty-flag", false)) {
        printf("%*scleanly shut down: no\n", indent, "");
    }
}

/* backing file (+ actual path) and its format. */
static void dump_backing(QDict *info, int indent)
{
    const char *bf = qdict_get_try_str(info, "backing-filename");
    const char *full = qdict_get_try_str(info, "full-backing-filename");
    const char *bfmt = qdict_get_try_str(info, "backing-filename-format");

    if (bf) {
        printf("%*sbacking file: %s", indent, "", bf);
        if (!full) {
            printf(" (cannot determine actual path)");
        } else if (strcmp(full, bf)) {
            printf(" (actual path: %s)", full);
        }
        printf("\n");
    }
    if (bfmt) {
        printf("%*sbacking file format: %s\n", indent, "", bfmt);
    }
}

/* "Snapshot list:" and its table, when there are snapshots. */
static void dump_snapshots(QDict *info, int indent)
{
    QList *list = qdict_get_qlist(info, "snapshots");

    if (!list) {
        return;
    }
    printf("%*sSnapshot list:\n%*s", indent, "", indent, "");
    snapshot_dump_header();
    printf("\n");
    for (QListEntry *e = qlist_first(list); e; e = qlist_next(e)) {
        printf("%*s", indent, "");
        snapshot_dump_qdict(qobject_to_qdict(qlist_entry_obj(e)));
        printf("\n");
    }
}

/* "Format specific information:" unless the data is empty. */
static void dump_specific(QDict *info, int indent)
{
    QDict *spec = qdict_get_qdict(info, "format-specific");
    QObject *data = spec ? qdict_get(spec, "data") : NULL;

    if (!data || (qobject_to_qdict(data) &&
                  qdict_size(qobject_to_qdict(data)) == 0)) {
        return;
    }
    printf("%*sFormat specific information:\n", indent, "");
    dump_value(indent + 4, data);
}

/* "Child node '/file':" and the child's own dump, 4 spaces deeper. */
static void dump_children(QDict *info, const char *path, int indent)
{
    QList *children = qdict_get_qlist(info, "children");

    for (QListEntry *e = children ? qlist_first(children) : NULL; e;
         e = qlist_next(e)) {
        QDict *c = qobject_to_qdict(qlist_entry_obj(e));
        g_autofree char *cpath = g_strdup_printf("%s/%s", path,
                                                 qdict_get_str(c, "name"));

        printf("%*sChild node '%s':\n", indent, "", cpath);
        info_human_dump(qdict_get_qdict(c, "info"), cpath, indent + 4);
    }
}

void info_human_dump(QDict *info, const char *path, int indent)
{
    QList *children = qdict_get_qlist(info, "children");
    bool protocol = indent > 0 && (!children || qlist_empty(children));

    printf("%*s%s: %s\n", indent, "", protocol ? "filename" : "image",
           qdict_get_str(info, "filename"));
    printf("%*s%s: %s\n", indent, "", protocol ? "protocol type" : "file format",
           qdict_get_str(info, "format"));
    dump_size_line(indent, protocol ? "file length" : "virtual size",
                   qdict_get_int(info, "virtual-size"));
    dump_allocation(info, indent);
    dump_backing(info, indent);
    dump_snapshots(info, indent);
    dump_specific(info, indent);
    dump_children(info, path, indent);
}
