#include "config.h"
/*
 * Printing internal snapshots (snapshot-dump.h): the reference's column
 * layout, clock as hours:minutes:seconds.milliseconds, "--" without an
 * instruction count.
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include "tools/img/img.h"
#include "tools/img/snapshot-dump.h"

void snapshot_dump_header(void)
{
    printf("%-7s %-16s %8s %19s %15s %10s", "ID", "TAG", "VM_SIZE", "DATE",
           "VM_CLOCK", "ICOUNT");
}

void snapshot_dump_row(const BdrvSnapshotInfo *sn)
{
    time_t t = sn->date_sec;
    struct tm tm;
    char date_str[64] = "";
    g_autofree char *size = img_size_str(sn->vm_state_size);
    g_autofree char *icount = sn->icount == UINT64_MAX ? g_strdup("--") :
        g_strdup_printf("%" PRId64, (int64_t)sn->icount);
    int64_t secs = (int64_t)(sn->vm_clock_nsec / 1000000000);
    char clock[128];

    /* localtime_r: the zone is looked up once, not per row */
    if (localtime_r(&t, &tm)) {
        strftime(date_str, sizeof(date_str), "%Y-%m-%d %H:%M:%S", &tm);
    }
    /* the reference narrows each field to int */
    snprintf(clock, sizeof(clock), "%04d:%02d:%02d.%03d", (int)(secs / 3600),
             (int)((secs / 60) % 60), (int)(secs % 60),
             (int)((sn->vm_clock_nsec / 1000000) % 1000));
    printf("%-7s %-16s %8s %19s %15s %10s", sn->id, sn->name, size, date_str,
           clock, icount);
}

/* One snapshot as info's JSON has it (SnapshotInfo's key order). */
static QDict *snapshot_qdict(const BdrvSnapshotInfo *sn)
{
    QDict *d = qdict_new();

    qdict_put_str(d, "id", sn->id);
    qdict_put_str(d, "name", sn->name);
    qdict_put_int(d, "vm-state-size", (int64_t)sn->vm_state_size);
    qdict_put_int(d, "date-sec", sn->date_sec);
    qdict_put_int(d, "date-nsec", sn->date_nsec);
    qdict_put_int(d, "vm-clock-sec", sn->vm_clock_nsec / 1000000000);
    qdict_put_int(d, "vm-clock-nsec", sn->vm_clock_nsec % 1000000000);
    if (sn->icount != UINT64_MAX) {
        qdict_put_int(d, "icount", (int64_t)sn->icount);
    }
    return d;
}

QList *snapshot_info_list(BlockDriverState *bs)
{
    g_autofree BdrvSnapshotInfo *tab = NULL;
    int n = bdrv_snapshot_list(bs, &tab);
    QList *list;

    if (n <= 0) {
        return NULL;
    }
    list = qlist_new();
    for (int i = 0; i < n; i++) {
        qlist_append_obj(list, QOBJECT(snapshot_qdict(&tab[i])));
    }
    return list;
}

void snapshot_dump_qdict(QDict *d)
{
    BdrvSnapshotInfo sn = {
        .vm_state_size = qdict_get_int(d, "vm-state-size"),
        .date_sec = qdict_get_int(d, "date-sec"),
        .date_nsec = qdict_get_int(d, "date-nsec"),
        .vm_clock_nsec = qdict_get_int(d, "vm-clock-sec") * 1000000000ULL +
                         qdict_get_int(d, "vm-clock-nsec"),
        .icount = qdict_haskey(d, "icount") ?
                  (uint64_t)qdict_get_int(d, "icount") : UINT64_MAX,
    };

    g_strlcpy(sn.id, qdict_get_str(d, "id"), sizeof(sn.id));
    g_strlcpy(sn.name, qdict_get_str(d, "name"), sizeof(sn.name));
    snapshot_dump_row(&sn);
}
