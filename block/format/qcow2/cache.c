#include "config.h"
/*
 * A small write-back cache of metadata tables (L2 tables, refcount
 * blocks), one cluster per entry, LRU replacement.  Callers hold s->lock.
 * Entry buffers are allocated on first use, so a large configured cache
 * costs memory only when the image is that big.
 *
 * Ordering: a cache may depend on the other one, whose dirty entries are
 * then written and flushed to the file before any of its own are written.
 * The direction changes with what was last done: a new reference needs
 * its refcount on disk before the L2 entry using it (L2 depends on
 * refcount blocks), a dropped reference needs the L2 entry gone from the
 * disk before the lowered refcount lets the cluster be reused (refcount
 * blocks depend on L2).  Switching direction flushes the other cache.
 */
#include "qcow2.h"

void qcow2_cache_init(Qcow2Cache *c, int entries, size_t table_size,
                      int overlap_kind)
{
    c->entries = g_new0(Qcow2CacheEntry, entries);
    c->size = entries;
    c->table_size = table_size;
    c->overlap_kind = overlap_kind;
}

void qcow2_cache_destroy(Qcow2Cache *c)
{
    for (int i = 0; i < c->size; i++) {
        g_free(c->entries[i].table);
    }
    g_free(c->entries);
    c->entries = NULL;
    c->size = 0;
}

/* Write one dirty entry back (after the overlap check). */
static int coroutine_fn entry_writeback(BlockDriverState *bs, Qcow2Cache *c,
                                        Qcow2CacheEntry *e)
{
    int ret;

    if (!e->dirty || !e->offset) {
        return 0;
    }
    ret = qcow2_pre_write_overlap_check(bs, c->overlap_kind, e->offset,
                                        c->table_size);
    if (ret < 0) {
        return ret;
    }
    /* the reference's events for a table written back */
    bdrv_debug_event(bs->file, c->overlap_kind == QCOW2_OL_ACTIVE_L2 ?
                     BLKDBG_L2_UPDATE : BLKDBG_REFBLOCK_UPDATE_PART);
    ret = q_pwrite(bs->file, e->offset, c->table_size, e->table);
    if (ret == 0) {
        e->dirty = false;
    }
    return ret;
}

static bool cache_has_dirty(Qcow2Cache *c)
{
    for (int i = 0; i < c->size; i++) {
        if (c->entries[i].dirty) {
            return true;
        }
    }
    return false;
}

/* Write every dirty entry (dependency first); no flush of the file. */
int coroutine_fn qcow2_cache_write(BlockDriverState *bs, Qcow2Cache *c)
{
    int ret, result = 0;

    if (c->depends && cache_has_dirty(c)) {
        ret = qcow2_cache_flush(bs, c->depends);
        if (ret < 0) {
            return ret;
        }
        c->depends = NULL;
    }
    if (c->depends_on_flush && cache_has_dirty(c)) {
        ret = bdrv_co_flush(bs->file->bs);
        if (ret < 0) {
            return ret;
        }
        c->depends_on_flush = false;
    }
    for (int i = 0; i < c->size; i++) {
        ret = entry_writeback(bs, c, &c->entries[i]);
        if (ret < 0 && result == 0) {
            result = ret;
        }
    }
    return result;
}

bool coroutine_fn qcow2_cache_writeback_refused(BlockDriverState *bs,
                                                Qcow2Cache *c)
{
    for (int i = 0; i < c->size; i++) {
        Qcow2CacheEntry *e = &c->entries[i];

        if (e->dirty && e->offset &&
            qcow2_check_metadata_overlap(bs, c->overlap_kind, e->offset,
                                         c->table_size) != 0) {
            return true;
        }
    }
    return false;
}

/* Write back and make it stable (when anything was written). */
int coroutine_fn qcow2_cache_flush(BlockDriverState *bs, Qcow2Cache *c)
{
    bool dirty = cache_has_dirty(c);
    int ret = qcow2_cache_write(bs, c);

    if (ret == 0 && dirty) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    return ret;
}

int coroutine_fn qcow2_cache_set_dependency(BlockDriverState *bs,
                                            Qcow2Cache *c, Qcow2Cache *dep)
{
    int ret;

    if (c->depends == dep) {
        return 0;
    }
    if (dep->depends) {
        /* the other direction is pending: settle it first */
        ret = qcow2_cache_flush(bs, dep->depends);
        if (ret < 0) {
            return ret;
        }
        dep->depends = NULL;
    }
    c->depends = dep;
    return 0;
}

void qcow2_cache_depends_on_flush(Qcow2Cache *c)
{
    c->depends_on_flush = true;
}

static Qcow2CacheEntry *cache_find(Qcow2Cache *c, uint64_t offset)
{
    for (int i = 0; i < c->size; i++) {
        if (c->entries[i].offset == offset) {
            return &c->entries[i];
        }
    }
    return NULL;
}

/* The least recently used unreferenced entry, written back if dirty. */
static int coroutine_fn cache_victim(BlockDriverState *bs, Qcow2Cache *c,
                                     Qcow2CacheEntry **out)
{
    Qcow2CacheEntry *best = NULL;
    int ret;

    for (int i = 0; i < c->size; i++) {
        Qcow2CacheEntry *e = &c->entries[i];
        if (e->ref == 0 && (!best || !e->offset ||
                            (best->offset && e->lru < best->lru))) {
            best = e;
            if (!e->offset) {
                break;
            }
        }
    }
    if (!best) {
        return -ENOSPC;     /* every entry in use: a bug */
    }
    if (best->dirty) {
        if (c->depends) {
            ret = qcow2_cache_flush(bs, c->depends);
            if (ret < 0) {
                return ret;
            }
            c->depends = NULL;
        }
        ret = entry_writeback(bs, c, best);
        if (ret < 0) {
            return ret;
        }
    }
    best->offset = 0;
    *out = best;
    return 0;
}

/* Shared part of get / get_empty. */
static int coroutine_fn cache_do_get(BlockDriverState *bs, Qcow2Cache *c,
                                     uint64_t offset, void **table,
                                     bool read)
{
    Qcow2CacheEntry *e;
    int ret;

    if (offset == 0) {
        return -EIO;        /* no table lives in the header cluster */
    }
    e = cache_find(c, offset);
    if (!e) {
        ret = cache_victim(bs, c, &e);
        if (ret < 0) {
            return ret;
        }
        if (!e->table) {
            e->table = g_malloc(c->table_size);
        }
        if (read) {
            if (c->overlap_kind == QCOW2_OL_ACTIVE_L2) {
                /* the reference: on L2 misses only (refcount blocks
                 * fire theirs on each update, refcount.c) */
                bdrv_debug_event(bs->file, BLKDBG_L2_LOAD);
            }
            ret = q_pread(bs->file, offset, c->table_size, e->table);
            if (ret < 0) {
                return ret;
            }
        } else {
            memset(e->table, 0, c->table_size);
        }
        e->offset = offset;
    }
    e->ref++;
    e->lru = ++c->lru_counter;
    *table = e->table;
    return 0;
}

int coroutine_fn qcow2_cache_get(BlockDriverState *bs, Qcow2Cache *c,
                                 uint64_t offset, void **table)
{
    return cache_do_get(bs, c, offset, table, true);
}

/* A table that is about to be written whole (new allocation). */
int coroutine_fn qcow2_cache_get_empty(BlockDriverState *bs, Qcow2Cache *c,
                                       uint64_t offset, void **table)
{
    return cache_do_get(bs, c, offset, table, false);
}

static Qcow2CacheEntry *entry_of(Qcow2Cache *c, void *table)
{
    for (int i = 0; i < c->size; i++) {
        if (c->entries[i].table == table) {
            return &c->entries[i];
        }
    }
    g_assert_not_reached();
}

void qcow2_cache_put(Qcow2Cache *c, void **table)
{
    Qcow2CacheEntry *e = entry_of(c, *table);

    g_assert(e->ref > 0);
    e->ref--;
    *table = NULL;
}

void qcow2_cache_mark_dirty(Qcow2Cache *c, void *table)
{
    entry_of(c, table)->dirty = true;
}

const void *qcow2_cache_peek(Qcow2Cache *c, uint64_t offset)
{
    Qcow2CacheEntry *e = offset ? cache_find(c, offset) : NULL;

    return e ? e->table : NULL;
}

/* A cluster that is no longer a table (freed): forget it unwritten. */
void qcow2_cache_discard(Qcow2Cache *c, uint64_t offset)
{
    Qcow2CacheEntry *e = cache_find(c, offset);

    if (e && e->ref == 0) {
        e->offset = 0;
        e->dirty = false;
    }
}

/* cache-clean-interval: drop clean unused entries' memory. */
void qcow2_cache_clean_unused(Qcow2Cache *c)
{
    for (int i = 0; i < c->size; i++) {
        Qcow2CacheEntry *e = &c->entries[i];
        if (e->ref == 0 && !e->dirty) {
            e->offset = 0;
            g_clear_pointer(&e->table, g_free);
        }
    }
}
