#include "config.h"
/*
 * Drained sections.  Draining a node quiesces it and everything above it
 * (as QEMU does): backends over it queue new requests, drivers' drain
 * hooks release requests they hold, and drained_begin polls the loop
 * until no request is in flight on the node, its ancestors or the
 * backends above.
 *
 * Only the drained node's quiesce_counter is touched; "is this backend
 * quiesced" is computed by looking down its graph, so graph changes
 * during a drained section cannot unbalance counters.
 *
 * Backends are above the core: they are reached only through the hooks
 * block/backend.c registers (BdrvRootParentOps), never called by name.
 */
#include <glib.h>
#include "block/driver.h"

/* Number of open drained sections anywhere: lets the fast path skip
 * graph walks when nothing is drained. */
static unsigned drained_sections;
/* The backend layer's hooks (NULL: no backend was ever created). */
static const BdrvRootParentOps *root_parent_ops;

void bdrv_set_root_parent_ops(const BdrvRootParentOps *ops)
{
    root_parent_ops = ops;
}

/* Walk @bs and its ancestors once each, calling @fn. */
static void walk_up(BlockDriverState *bs, GHashTable *seen,
                    void (*fn)(BlockDriverState *bs, void *opaque),
                    void *opaque)
{
    if (!bs || !g_hash_table_add(seen, bs)) {
        return;
    }
    fn(bs, opaque);
    for (unsigned i = 0; i < bs->parents->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->parents, i);
        walk_up(c->parent, seen, fn, opaque);
    }
}

static void for_each_up(BlockDriverState *bs,
                        void (*fn)(BlockDriverState *bs, void *opaque),
                        void *opaque)
{
    GHashTable *seen = g_hash_table_new(NULL, NULL);

    walk_up(bs, seen, fn, opaque);
    g_hash_table_destroy(seen);
}

static bool subtree_quiesced(BlockDriverState *bs, unsigned depth)
{
    if (bs->quiesce_counter > 0) {
        return true;
    }
    if (depth > 64) {
        return false;
    }
    for (unsigned i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        if (subtree_quiesced(c->bs, depth + 1)) {
            return true;
        }
    }
    return false;
}

bool bdrv_subtree_quiesced(BlockDriverState *bs)
{
    return bs && drained_sections > 0 && subtree_quiesced(bs, 0);
}

static void call_begin_hook(BlockDriverState *bs, void *opaque)
{
    if (bs->drv && bs->drv->drain && bs->drv->drain->drained_begin) {
        bs->drv->drain->drained_begin(bs);
    }
}

static void call_end_hook(BlockDriverState *bs, void *opaque)
{
    if (bs->drv && bs->drv->drain && bs->drv->drain->drained_end) {
        bs->drv->drain->drained_end(bs);
    }
}

/* Sets *busy if @bs or a backend directly on it has requests in flight. */
static void check_busy(BlockDriverState *bs, void *opaque)
{
    bool *busy = opaque;

    if (bs->in_flight > 0) {
        *busy = true;
    }
    for (unsigned i = 0; i < bs->parents->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->parents, i);
        if (c->parent_blk && root_parent_ops &&
            root_parent_ops->in_flight(c->parent_blk) > 0) {
            *busy = true;
        }
    }
}

static bool drain_busy(BlockDriverState *bs)
{
    bool busy = false;

    for_each_up(bs, check_busy, &busy);
    return busy;
}

static void drained_begin_plain(BlockDriverState *bs)
{
    bs->quiesce_counter++;
    drained_sections++;
    for_each_up(bs, call_begin_hook, NULL);
    AIO_WAIT_WHILE(aio_get_default(), drain_busy(bs));
}

static void drained_end_plain(BlockDriverState *bs)
{
    g_assert(bs->quiesce_counter > 0);
    for_each_up(bs, call_end_hook, NULL);
    bs->quiesce_counter--;
    drained_sections--;
    if (bs->quiesce_counter == 0 && root_parent_ops) {
        root_parent_ops->restart_queued();
    }
}

typedef struct DrainCo {
    Coroutine *co;
    BlockDriverState *bs;
    bool begin;
    bool done;
} DrainCo;

/* Polling must not happen inside a coroutine: do the work from a bottom
 * half and wake the coroutine afterwards. */
static void drain_bh(void *opaque)
{
    DrainCo *d = opaque;

    if (d->begin) {
        drained_begin_plain(d->bs);
    } else {
        drained_end_plain(d->bs);
    }
    d->done = true;
    aio_co_schedule(aio_get_default(), d->co);
}

static void drain_from_coroutine(BlockDriverState *bs, bool begin)
{
    DrainCo d = { .co = co_self(), .bs = bs, .begin = begin };

    aio_bh_schedule_oneshot(aio_get_default(), drain_bh, &d);
    while (!d.done) {
        co_yield();
    }
}

void bdrv_drained_begin(BlockDriverState *bs)
{
    if (co_in_coroutine()) {
        drain_from_coroutine(bs, true);
    } else {
        drained_begin_plain(bs);
    }
}

void bdrv_drained_end(BlockDriverState *bs)
{
    /* ending never polls, so it is safe in a coroutine too */
    drained_end_plain(bs);
}

void bdrv_drain_all(void)
{
    if (root_parent_ops) {
        root_parent_ops->drain_all();
    }
}

int bdrv_flush_all(void)
{
    return root_parent_ops ? root_parent_ops->flush_all() : 0;
}
