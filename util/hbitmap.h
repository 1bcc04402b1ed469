/*
 * Hierarchical bitmap: a bit per 2^granularity units of a 64-bit range,
 * with upper levels summarising lower ones so that finding the next set
 * (or clear) bit is O(log n) in sparse bitmaps.  Used for dirty tracking
 * and extent caches.  Not thread-safe.
 */
#ifndef STRATA_HBITMAP_H
#define STRATA_HBITMAP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct HBitmap HBitmap;

HBitmap *hbitmap_alloc(uint64_t size, int granularity);
void hbitmap_free(HBitmap *hb);
void hbitmap_truncate(HBitmap *hb, uint64_t size);
int hbitmap_granularity(const HBitmap *hb);
uint64_t hbitmap_size(const HBitmap *hb);
/* Ranges are in units (not bits); partially covered granules count. */
void hbitmap_set(HBitmap *hb, uint64_t start, uint64_t count);
void hbitmap_reset(HBitmap *hb, uint64_t start, uint64_t count);
void hbitmap_reset_all(HBitmap *hb);
bool hbitmap_get(const HBitmap *hb, uint64_t item);
bool hbitmap_is_empty(const HBitmap *hb);
/* Number of set units (granule-rounded). */
uint64_t hbitmap_count(const HBitmap *hb);
/* First set/clear unit >= @start and < @start+@count; -1 if none. */
int64_t hbitmap_next_dirty(const HBitmap *hb, uint64_t start, uint64_t count);
int64_t hbitmap_next_zero(const HBitmap *hb, uint64_t start, uint64_t count);

#endif
