/*
 * Human-readable "qemu-img info" output from the JSON-shaped info dict.
 */
#ifndef STRATA_TOOLS_IMG_INFO_HUMAN_H
#define STRATA_TOOLS_IMG_INFO_HUMAN_H

#include "qobject/qobject.h"

/* Dump one node's info (BlockGraphInfo as a QDict) at @indent spaces;
 * @path names the node for its children ("" at the top, "/file", ...). */
void info_human_dump(QDict *info, const char *path, int indent);

#endif
