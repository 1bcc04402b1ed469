/*
 * What block/io.c (the data side of the request path) and
 * block/io-status.c (its block-status side) share; nothing else
 * includes this.
 */
#ifndef STRATA_BLOCK_IO_INTERNAL_H
#define STRATA_BLOCK_IO_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include "block/driver.h"

/* The node's request alignment, at least 1. */
uint32_t req_align(BlockDriverState *bs);
/* Is @bs a filter (one child, passes requests through)? */
bool is_filter(BlockDriverState *bs);
/* The driver's data path group; all-NULL members when it has none. */
const BlockDriverIO *io_of(BlockDriverState *bs);
/* A write to [@offset, +@bytes) of @bs: drop what the block-status
 * caches say about it. */
void bsc_invalidate_range(BlockDriverState *bs, int64_t offset,
                          int64_t bytes);

#endif
