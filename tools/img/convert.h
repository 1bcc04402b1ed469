/*
 * strata-img convert: the copy engine's interface (convert-engine.c),
 * shared with the option handling in convert.c.
 */
#ifndef STRATA_TOOLS_IMG_CONVERT_H
#define STRATA_TOOLS_IMG_CONVERT_H

#include <stdbool.h>
#include <stdint.h>
#include "block/block.h"
#include "util/ratelimit.h"

#define CONVERT_MAX_COROUTINES 16
#define CONVERT_MAX_SPARSE     (16 * 1024 * 1024)

typedef struct ConvertParams {
    BlockBackend **src;       /* sources, concatenated in order */
    int64_t *src_len;
    int src_num;
    BlockBackend *dst;
    int64_t sparse;           /* -S bytes; 0 = fully allocate */
    bool target_zero;         /* skip zero runs: target reads as zeroes */
    bool in_order;            /* !-W */
    bool copy_range;          /* -C */
    bool salvage;             /* --salvage */
    bool quiet;               /* -q */
    int coroutines;           /* -m */
    uint64_t rate;            /* -r bytes/s; 0 = unlimited */
    bool compressed;          /* -c: whole clusters, compressed writes */
    int64_t cluster_size;     /* the target's (0: none) */
    bool target_backing;      /* -B: leave what the source's backing
                               * provides unallocated */
    int64_t target_backing_len;   /* its length; < 0: unknown */
} ConvertParams;

/* Copy the concatenated sources to the target; errors are reported.
 * Returns 0 or -errno. */
int convert_run(const ConvertParams *p);

/* convert --bitmaps (convert-bitmaps.c); false after printing the
 * reference's error.  Before the target is created: the source can hold
 * bitmaps and (without @skip_broken) none is inconsistent. */
bool convert_bitmaps_check_source(BlockBackend *src, bool skip_broken);
/* Once the target is open: it can hold bitmaps. */
bool convert_bitmaps_check_target(BlockBackend *dst);
/* After the copy: every persistent bitmap of @src added to @dst. */
bool convert_bitmaps_copy(BlockBackend *src, BlockBackend *dst,
                          bool skip_broken);

#endif
