#include "config.h"
/*
 * The "throttle" filter: every request passes through the limits of a
 * throttle group (block/filter/throttle-groups.c) before it reaches the
 * "file" child.  Discards and zero writes count as writes.
 */
#include <errno.h>
#include "block/drivers.h"
#include "block/filter/throttle-groups.h"

typedef struct ThrottleNode {
    ThrottleGroup *tg;
    int drained;               /* our drained sections open on the group */
} ThrottleNode;

static const BlockOptDesc throttle_opts[] = {
    { "throttle-group", OPT_STRING, "Name of the throttle group", NULL },
    { NULL },
};

/* The group decides the timing only, but a json: name must open the same
 * graph: the reference keeps it. */
static const char *const throttle_strong_opts[] = { "throttle-group", NULL };

/* Look the group up by name, with the reference's messages. */
static int throttle_attach_group(BlockDriverState *bs, QDict *options,
                                 Error **errp)
{
    ThrottleNode *s = bs->opaque;
    const char *name = bdrv_opt_str(options, "throttle-group", NULL);

    if (!name) {
        error_setg(errp, "Please specify a throttle group");
        return -EINVAL;
    }
    s->tg = throttle_group_ref(name);
    if (!s->tg) {
        error_setg(errp, "Throttle group '%s' does not exist", name);
        return -EINVAL;
    }
    return 0;
}

static int throttle_open(BlockDriverState *bs, QDict *options, int flags,
                         Error **errp)
{
    if (!bdrv_open_filtered_child(bs, NULL, options, "file", errp)) {
        return -EINVAL;
    }
    return throttle_attach_group(bs, options, errp);
}

static void throttle_close(BlockDriverState *bs)
{
    ThrottleNode *s = bs->opaque;

    while (s->drained > 0) {
        throttle_group_limits_resume(s->tg);
        s->drained--;
    }
    throttle_group_unref(s->tg);
    s->tg = NULL;
}

static void coroutine_fn throttle_wait(BlockDriverState *bs, bool is_write,
                                       int64_t bytes)
{
    ThrottleNode *s = bs->opaque;

    throttle_group_co_intercept(s->tg, is_write, bytes);
}

static int coroutine_fn throttle_co_preadv(BlockDriverState *bs,
                                           int64_t offset, int64_t bytes,
                                           IOVector *qiov,
                                           BdrvRequestFlags flags)
{
    throttle_wait(bs, false, bytes);
    return bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn throttle_co_pwritev(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            IOVector *qiov,
                                            BdrvRequestFlags flags)
{
    throttle_wait(bs, true, bytes);
    return bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn throttle_co_pwrite_zeroes(BlockDriverState *bs,
                                                  int64_t offset,
                                                  int64_t bytes,
                                                  BdrvRequestFlags flags)
{
    throttle_wait(bs, true, bytes);
    return bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int coroutine_fn throttle_co_pdiscard(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes)
{
    throttle_wait(bs, true, bytes);
    return bdrv_co_pdiscard(bs->file, offset, bytes);
}

/* Draining must not wait for the limits: queued requests go at once. */
static void throttle_drained_begin(BlockDriverState *bs)
{
    ThrottleNode *s = bs->opaque;

    if (s->tg) {
        s->drained++;
        throttle_group_limits_suspend(s->tg);
    }
}

static void throttle_drained_end(BlockDriverState *bs)
{
    ThrottleNode *s = bs->opaque;

    if (s->tg && s->drained > 0) {
        s->drained--;
        throttle_group_limits_resume(s->tg);
    }
}

static const BlockDriverIO throttle_io = {
    .co_preadv = throttle_co_preadv,
    .co_pwritev = throttle_co_pwritev,
    .co_pwrite_zeroes = throttle_co_pwrite_zeroes,
    .co_pdiscard = throttle_co_pdiscard,
};

static const BlockDriverNamingOps throttle_naming_ops = {
    .strong_opts = throttle_strong_opts,
};

static const BlockDriverDrainOps throttle_drain_ops = {
    .drained_begin = throttle_drained_begin,
    .drained_end = throttle_drained_end,
};

const BlockDriver bdrv_throttle = {
    .format_name = "throttle",
    .kind = BDRV_KIND_FILTER,
    .instance_size = sizeof(ThrottleNode),
    .open_opts = throttle_opts,
    .open = throttle_open,
    .close = throttle_close,
    .io = &throttle_io,
    .naming = &throttle_naming_ops,
    .drain = &throttle_drain_ops,
};
