/*
 * The internal snapshot table as qemu-img prints it: `snapshot -l`, the
 * "Snapshot list:" of human info, and info's JSON "snapshots".
 */
#ifndef STRATA_TOOLS_IMG_SNAPSHOT_DUMP_H
#define STRATA_TOOLS_IMG_SNAPSHOT_DUMP_H

#include "block/block.h"
#include "qobject/qobject.h"

/* The column titles, without a newline. */
void snapshot_dump_header(void);
/* One row, without a newline (dates in local time). */
void snapshot_dump_row(const BdrvSnapshotInfo *sn);
/* info's "snapshots" list of @bs, NULL when it has none. */
QList *snapshot_info_list(BlockDriverState *bs);
/* The row of one element of that list (human info). */
void snapshot_dump_qdict(QDict *d);

#endif
