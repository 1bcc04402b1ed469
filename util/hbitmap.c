#include "config.h"

#include <glib.h>
#include <string.h>

#include "util/hbitmap.h"

#define HB_MAX_LEVELS 12
#define BITS_PER_WORD 64

struct HBitmap {
    uint64_t size;                      /* in units */
    int granularity;
    uint64_t nbits;                     /* granules in the bottom level */
    int nlevels;                        /* levels[0] is the bottom */
    uint64_t *levels[HB_MAX_LEVELS];
    uint64_t nwords[HB_MAX_LEVELS];
    uint64_t count;                     /* set granules */
};

static inline uint64_t words_for(uint64_t bits)
{
    return bits ? (bits + BITS_PER_WORD - 1) / BITS_PER_WORD : 1;
}

/* Granules needed to cover @size units. */
static uint64_t granules_for(uint64_t size, int granularity)
{
    uint64_t g = size >> granularity;

    if (size & ((1ULL << granularity) - 1)) {
        g++;
    }
    return g;
}

/* Size the level arrays for hb->nbits, reusing (and zero-extending) them. */
static void hb_resize_levels(HBitmap *hb)
{
    uint64_t bits = hb->nbits;
    int i = 0;

    for (;; i++) {
        uint64_t nw = words_for(bits);
        uint64_t old = hb->levels[i] ? hb->nwords[i] : 0;

        g_assert(i < HB_MAX_LEVELS);
        hb->levels[i] = g_renew(uint64_t, hb->levels[i], nw);
        if (nw > old) {
            memset(hb->levels[i] + old, 0, (nw - old) * sizeof(uint64_t));
        }
        hb->nwords[i] = nw;
        if (nw == 1) {
            break;
        }
        bits = nw;
    }
    for (int j = i + 1; j < hb->nlevels; j++) {
        g_free(hb->levels[j]);
        hb->levels[j] = NULL;
    }
    hb->nlevels = i + 1;
}

/* Recompute the summary bits above words [first, last] of @level. */
static void hb_update_upper(HBitmap *hb, int level, uint64_t first, uint64_t last)
{
    for (; level + 1 < hb->nlevels; level++) {
        uint64_t *up = hb->levels[level + 1];

        for (uint64_t w = first; w <= last; w++) {
            uint64_t bit = 1ULL << (w % BITS_PER_WORD);
            if (hb->levels[level][w]) {
                up[w / BITS_PER_WORD] |= bit;
            } else {
                up[w / BITS_PER_WORD] &= ~bit;
            }
        }
        first /= BITS_PER_WORD;
        last /= BITS_PER_WORD;
    }
}

/* Rebuild every upper level from the bottom one. */
static void hb_rebuild(HBitmap *hb)
{
    for (int l = 1; l < hb->nlevels; l++) {
        memset(hb->levels[l], 0, hb->nwords[l] * sizeof(uint64_t));
    }
    hb_update_upper(hb, 0, 0, hb->nwords[0] - 1);
}

HBitmap *hbitmap_alloc(uint64_t size, int granularity)
{
    HBitmap *hb = g_new0(HBitmap, 1);

    g_assert(granularity >= 0 && granularity < 64);
    hb->size = size;
    hb->granularity = granularity;
    hb->nbits = granules_for(size, granularity);
    hb_resize_levels(hb);
    return hb;
}

void hbitmap_free(HBitmap *hb)
{
    if (!hb) {
        return;
    }
    for (int i = 0; i < hb->nlevels; i++) {
        g_free(hb->levels[i]);
    }
    g_free(hb);
}

/* Popcount of the bottom level: used after bulk changes. */
static uint64_t hb_recount(const HBitmap *hb)
{
    uint64_t n = 0;

    for (uint64_t w = 0; w < hb->nwords[0]; w++) {
        n += __builtin_popcountll(hb->levels[0][w]);
    }
    return n;
}

void hbitmap_truncate(HBitmap *hb, uint64_t size)
{
    uint64_t nbits = granules_for(size, hb->granularity);

    if (nbits < hb->nbits) {
        uint64_t *bottom = hb->levels[0];
        uint64_t w = nbits / BITS_PER_WORD;

        /* clear the dropped tail so later growth starts clean */
        if (nbits % BITS_PER_WORD) {
            bottom[w] &= (1ULL << (nbits % BITS_PER_WORD)) - 1;
            w++;
        }
        if (w < hb->nwords[0]) {
            memset(bottom + w, 0, (hb->nwords[0] - w) * sizeof(uint64_t));
        }
    }
    hb->size = size;
    hb->nbits = nbits;
    hb_resize_levels(hb);
    hb_rebuild(hb);
    hb->count = hb_recount(hb);
}

int hbitmap_granularity(const HBitmap *hb)
{
    return hb->granularity;
}

uint64_t hbitmap_size(const HBitmap *hb)
{
    return hb->size;
}

/* Convert a unit range into granule bits [*first, *last]; false if empty. */
static bool hb_range(const HBitmap *hb, uint64_t start, uint64_t count,
                     uint64_t *first, uint64_t *last)
{
    uint64_t end;

    if (!count || start >= hb->size) {
        return false;
    }
    end = (count > hb->size - start) ? hb->size : start + count;
    *first = start >> hb->granularity;
    *last = (end - 1) >> hb->granularity;
    return true;
}

/* Mask of bits [lo, hi] within one word (0 <= lo <= hi < 64). */
static inline uint64_t word_mask(unsigned lo, unsigned hi)
{
    uint64_t upto = hi == 63 ? ~0ULL : (1ULL << (hi + 1)) - 1;

    return upto & ~((1ULL << lo) - 1);
}

/* Set or clear bottom bits [first, last], keeping count and summaries. */
static void hb_change(HBitmap *hb, uint64_t first, uint64_t last, bool set)
{
    uint64_t fw = first / BITS_PER_WORD, lw = last / BITS_PER_WORD;
    uint64_t *bottom = hb->levels[0];

    for (uint64_t w = fw; w <= lw; w++) {
        unsigned lo = w == fw ? first % BITS_PER_WORD : 0;
        unsigned hi = w == lw ? last % BITS_PER_WORD : 63;
        uint64_t mask = word_mask(lo, hi);
        uint64_t old = bottom[w];

        bottom[w] = set ? (old | mask) : (old & ~mask);
        if (set) {
            hb->count += __builtin_popcountll(mask & ~old);
        } else {
            hb->count -= __builtin_popcountll(mask & old);
        }
    }
    hb_update_upper(hb, 0, fw, lw);
}

void hbitmap_set(HBitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t first, last;

    if (hb_range(hb, start, count, &first, &last)) {
        hb_change(hb, first, last, true);
    }
}

void hbitmap_reset(HBitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t first, last;

    if (hb_range(hb, start, count, &first, &last)) {
        hb_change(hb, first, last, false);
    }
}

void hbitmap_reset_all(HBitmap *hb)
{
    for (int l = 0; l < hb->nlevels; l++) {
        memset(hb->levels[l], 0, hb->nwords[l] * sizeof(uint64_t));
    }
    hb->count = 0;
}

bool hbitmap_get(const HBitmap *hb, uint64_t item)
{
    uint64_t bit;

    if (item >= hb->size) {
        return false;
    }
    bit = item >> hb->granularity;
    return (hb->levels[0][bit / BITS_PER_WORD] >> (bit % BITS_PER_WORD)) & 1;
}

bool hbitmap_is_empty(const HBitmap *hb)
{
    return hb->count == 0;
}

uint64_t hbitmap_count(const HBitmap *hb)
{
    return hb->count << hb->granularity;
}

/* First set bit >= @pos at @level, climbing the summaries past empty words. */
static int64_t hb_level_next_set(const HBitmap *hb, int level, uint64_t pos)
{
    uint64_t w = pos / BITS_PER_WORD;
    uint64_t word;
    int64_t up;

    if (w >= hb->nwords[level]) {
        return -1;
    }
    word = hb->levels[level][w] & (~0ULL << (pos % BITS_PER_WORD));
    if (word) {
        return w * BITS_PER_WORD + __builtin_ctzll(word);
    }
    if (level + 1 >= hb->nlevels) {
        return -1;
    }
    up = hb_level_next_set(hb, level + 1, w + 1);
    if (up < 0) {
        return -1;
    }
    return up * BITS_PER_WORD + __builtin_ctzll(hb->levels[level][up]);
}

/* Map a granule index back to a unit offset, not before @start. */
static int64_t hb_result(const HBitmap *hb, uint64_t bit, uint64_t start,
                         uint64_t last)
{
    uint64_t unit;

    if (bit > last) {
        return -1;
    }
    unit = bit << hb->granularity;
    return unit < start ? start : unit;
}

int64_t hbitmap_next_dirty(const HBitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t first, last;
    int64_t bit;

    if (!hb_range(hb, start, count, &first, &last)) {
        return -1;
    }
    bit = hb_level_next_set(hb, 0, first);
    return bit < 0 ? -1 : hb_result(hb, bit, start, last);
}

int64_t hbitmap_next_zero(const HBitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t first, last;
    uint64_t lw;

    if (!hb_range(hb, start, count, &first, &last)) {
        return -1;
    }
    lw = last / BITS_PER_WORD;
    for (uint64_t w = first / BITS_PER_WORD; w <= lw; w++) {
        uint64_t inv = ~hb->levels[0][w];

        if (w == first / BITS_PER_WORD) {
            inv &= ~0ULL << (first % BITS_PER_WORD);
        }
        if (inv) {
            return hb_result(hb, w * BITS_PER_WORD + __builtin_ctzll(inv),
                             start, last);
        }
    }
    return -1;
}
