#include "config.h"
/*
 * The "blkdebug" filter: fault injection and request suspension for
 * tests, over its "image" child.  Filename syntax:
 * "blkdebug:[CONFIG_FILE]:IMAGE".
 *
 * Rules (options inject-error.N.*, set-state.N.*, or a config file):
 *  - an event (fired by the node above through bdrv_debug_event) arms
 *    every inject-error rule for that event whose state matches; the
 *    armed set is replaced each time an event arms something.  Rules of
 *    the pseudo-event "none" are armed from the start.
 *  - each request checks the armed rules: the first one matching its
 *    iotype (and covering "sector", if given) fails it with -errno;
 *    "once" rules are removed when they fire.  Without "immediately" the
 *    error is reported after a trip through the event loop.
 *  - set-state rules switch the node's state (initially 1) after the
 *    event's rules have been looked at.
 *  - breakpoints ("break EVENT TAG") suspend the next request firing EVENT
 *    until "resume TAG".
 *
 * Strata extension, not in QEMU: inject-delay.N.{event,state,iotype,
 * sector,once,delay-ns} sleeps delay-ns when the event fires, or, for
 * event "none", before every request of a matching iotype/sector.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include "block/drivers.h"
#include "block/filter/blkdebug-int.h"
#include "util/cutils.h"

typedef struct BlkdebugSuspended {
    Coroutine *co;
    char *tag;
    bool resumed;
} BlkdebugSuspended;

typedef struct BlkdebugNode {
    BdrvChild *image;
    int64_t state;
    GPtrArray *rules;          /* BlkdebugRule *, owned, definition order */
    GPtrArray *armed;          /* inject-error rules armed by an event */
    GList *suspended;          /* BlkdebugSuspended * */
    uint64_t align, max_transfer, opt_write_zero, max_write_zero;
    uint64_t opt_discard, max_discard;
    uint64_t take_perms, unshare_perms;
} BlkdebugNode;

static const BlockOptDesc blkdebug_opts[] = {
    { "config", OPT_STRING, "Path to the configuration file", NULL },
    { "x-image", OPT_STRING, "[internal use only, will be removed]", NULL },
    { "align", OPT_SIZE, "Required alignment in bytes", NULL },
    { "max-transfer", OPT_SIZE, "Maximum transfer size in bytes", NULL },
    { "opt-write-zero", OPT_SIZE, "Optimum write zero alignment in bytes",
      NULL },
    { "max-write-zero", OPT_SIZE, "Maximum write zero size in bytes", NULL },
    { "opt-discard", OPT_SIZE, "Optimum discard alignment in bytes", NULL },
    { "max-discard", OPT_SIZE, "Maximum discard size in bytes", NULL },
    { NULL },
};

/* ---- filename and options ---- */

/* Options that change what the guest sees (errors, limits); "x." stands
 * for every rule key.  Permission tweaks are not among them. */
static const char *const blkdebug_strong_opts[] = {
    "config", "align", "max-transfer", "opt-write-zero", "max-write-zero",
    "opt-discard", "max-discard", "inject-error.", "set-state.", NULL,
};

/* "blkdebug:CONFIG:IMAGE" while nothing but a config file and an image
 * with a plain name describe the node. */
static char *blkdebug_plain_filename(BlockDriverState *bs, QDict *full)
{
    BlkdebugNode *s = bs->opaque;
    const char *image = s->image ? s->image->bs->exact_filename : NULL;
    const char *config = qdict_get_try_str(full, "config");

    for (const QDictEntry *e = qdict_first(full); e; e = qdict_next(full, e)) {
        const char *key = qdict_entry_key(e);
        if (strcmp(key, "config") && strcmp(key, "image") &&
            strcmp(key, "driver")) {
            return NULL;
        }
    }
    if (!image || !*image) {
        return NULL;
    }
    return g_strdup_printf("blkdebug:%s:%s", config ? config : "", image);
}

/* "blkdebug:[CONFIG]:IMAGE" -> config, x-image; a name without the
 * prefix (-f blkdebug FILE) is just the image, as in QEMU. */
static void blkdebug_parse_filename(const char *filename, QDict *options,
                                    Error **errp)
{
    const char *rest, *colon;

    if (!g_str_has_prefix(filename, "blkdebug:")) {
        qdict_put_str(options, "x-image", filename);
        return;
    }
    rest = filename + strlen("blkdebug:");
    colon = strchr(rest, ':');
    if (!colon) {
        error_setg(errp, "blkdebug requires both config file and image path");
        return;
    }
    if (colon != rest) {
        g_autofree char *cfg = g_strndup(rest, colon - rest);
        qdict_put_str(options, "config", cfg);
    }
    if (colon[1]) {
        qdict_put_str(options, "x-image", colon + 1);
    }
}

/* "consistent-read" etc. as QAPI's BlockPermission. */
static bool parse_perm_name(const char *name, uint64_t *perm)
{
    static const char *const names[] = {
        "consistent-read", "write", "write-unchanged", "resize",
    };

    for (int i = 0; i < 4; i++) {
        if (!strcmp(name, names[i])) {
            *perm |= 1ULL << i;
            return true;
        }
    }
    return false;
}

/* take-child-perms.N / unshare-child-perms.N, removed from @options. */
static int parse_perm_list(QDict *options, const char *list, uint64_t *perm,
                           Error **errp)
{
    g_autofree char *prefix = g_strdup_printf("%s.", list);
    g_autoptr(QDict) sub = NULL;

    qdict_del(options, list);          /* an empty list stays unflattened */
    qdict_extract_subqdict(options, &sub, prefix);
    for (const QDictEntry *e = qdict_first(sub); e; e = qdict_next(sub, e)) {
        QString *s = qobject_to_qstring(qdict_entry_value(e));
        const char *v = s ? qstring_get_str(s) : "";
        if (!parse_perm_name(v, perm)) {
            error_setg(errp, "Parameter 'null' does not accept value '%s'", v);
            return -EINVAL;
        }
    }
    return 0;
}

/* Rules from the config file first, then from the option lists. */
static int blkdebug_load_rules(BlkdebugNode *s, QDict *options, Error **errp)
{
    const char *cfg = bdrv_opt_str(options, "config", NULL);
    static const char *const lists[] = {
        "inject-error", "set-state", "inject-delay",
    };

    if (cfg && blkdebug_rules_from_file(cfg, s->rules, errp) < 0) {
        return -EINVAL;
    }
    for (int i = 0; i < 3; i++) {
        if (blkdebug_rules_from_options(options, lists[i], s->rules,
                                        errp) < 0) {
            return -EINVAL;
        }
    }
    return 0;
}

/* One size option; false with errp set when malformed. */
static bool get_limit(QDict *options, const char *name, uint64_t *out,
                      Error **errp)
{
    Error *local_err = NULL;

    *out = bdrv_opt_size(options, name, 0, &local_err);
    if (local_err) {
        error_propagate(errp, local_err);
        return false;
    }
    return true;
}

/* A limit must be a multiple of @unit and fit a request. */
static bool limit_ok(const char *name, uint64_t v, uint64_t unit,
                     Error **errp)
{
    if (v && (v > INT_MAX || v % MAX(unit, 1))) {
        error_setg(errp, "Cannot meet constraints with %s %" PRIu64, name, v);
        return false;
    }
    return true;
}

static int blkdebug_parse_limits(BlkdebugNode *s, QDict *options,
                                 Error **errp)
{
    if (!get_limit(options, "align", &s->align, errp) ||
        !get_limit(options, "max-transfer", &s->max_transfer, errp) ||
        !get_limit(options, "opt-write-zero", &s->opt_write_zero, errp) ||
        !get_limit(options, "max-write-zero", &s->max_write_zero, errp) ||
        !get_limit(options, "opt-discard", &s->opt_discard, errp) ||
        !get_limit(options, "max-discard", &s->max_discard, errp)) {
        return -EINVAL;
    }
    if (s->align && (s->align >= INT_MAX || (s->align & (s->align - 1)))) {
        error_setg(errp, "Cannot meet constraints with align %" PRIu64,
                   s->align);
        return -EINVAL;
    }
    if (!limit_ok("max-transfer", s->max_transfer, s->align, errp) ||
        !limit_ok("opt-write-zero", s->opt_write_zero, s->align, errp) ||
        !limit_ok("max-write-zero", s->max_write_zero,
                  MAX(s->opt_write_zero, s->align), errp) ||
        !limit_ok("opt-discard", s->opt_discard, s->align, errp) ||
        !limit_ok("max-discard", s->max_discard,
                  MAX(s->opt_discard, s->align), errp)) {
        return -EINVAL;
    }
    return 0;
}

/* Rules of the pseudo-event "none" are armed from the start. */
static void blkdebug_arm_none_rules(BlkdebugNode *s)
{
    for (unsigned i = 0; i < s->rules->len; i++) {
        BlkdebugRule *r = g_ptr_array_index(s->rules, i);
        if (r->kind == BLKDBG_RULE_INJECT_ERROR && r->event == BLKDBG_NONE &&
            (!r->state || r->state == s->state)) {
            g_ptr_array_add(s->armed, r);
        }
    }
}

static int blkdebug_open(BlockDriverState *bs, QDict *options, int flags,
                         Error **errp)
{
    BlkdebugNode *s = bs->opaque;

    s->state = 1;
    s->rules = g_ptr_array_new_with_free_func(blkdebug_rule_free);
    s->armed = g_ptr_array_new();
    if (blkdebug_load_rules(s, options, errp) < 0 ||
        parse_perm_list(options, "take-child-perms", &s->take_perms,
                        errp) < 0 ||
        parse_perm_list(options, "unshare-child-perms", &s->unshare_perms,
                        errp) < 0) {
        goto fail;
    }
    s->image = bdrv_open_filtered_child(bs,
                                        bdrv_opt_str(options, "x-image", NULL),
                                        options, "image", errp);
    if (!s->image || blkdebug_parse_limits(s, options, errp) < 0) {
        goto fail;
    }
    blkdebug_arm_none_rules(s);
    return 0;

fail:
    g_ptr_array_unref(s->armed);
    g_ptr_array_unref(s->rules);
    s->armed = s->rules = NULL;
    return -EINVAL;
}

static void blkdebug_close(BlockDriverState *bs)
{
    BlkdebugNode *s = bs->opaque;

    g_clear_pointer(&s->armed, g_ptr_array_unref);
    g_clear_pointer(&s->rules, g_ptr_array_unref);
}

static void blkdebug_refresh_limits(BlockDriverState *bs, Error **errp)
{
    BlkdebugNode *s = bs->opaque;

    if (s->align) {
        bs->bl.request_alignment = s->align;
    }
    if (s->max_transfer) {
        bs->bl.max_transfer = s->max_transfer;
    }
    if (s->opt_write_zero) {
        bs->bl.pwrite_zeroes_alignment = s->opt_write_zero;
    }
    if (s->max_write_zero) {
        bs->bl.max_pwrite_zeroes = s->max_write_zero;
    }
    if (s->opt_discard) {
        bs->bl.pdiscard_alignment = s->opt_discard;
    }
    if (s->max_discard) {
        bs->bl.max_pdiscard = s->max_discard;
    }
}

/* Pass-through, plus what the user asked to take or not to share. */
static void blkdebug_child_perm(BlockDriverState *bs, BdrvChild *c,
                                BdrvChildRole role, uint64_t perm,
                                uint64_t shared, uint64_t *nperm,
                                uint64_t *nshared)
{
    BlkdebugNode *s = bs->opaque;

    bdrv_default_child_perm(bs, c, role, perm, shared, nperm, nshared);
    *nperm |= s->take_perms;
    *nshared &= ~s->unshare_perms;
}

/* ---- rules at run time ---- */

static void blkdebug_remove_rule(BlkdebugNode *s, BlkdebugRule *r)
{
    g_ptr_array_remove(s->armed, r);
    g_ptr_array_remove(s->rules, r);
}

/* Does the rule's sector fall inside the request? */
static bool rule_covers(const BlkdebugRule *r, int64_t offset, int64_t bytes)
{
    return r->offset < 0 ||
           (bytes > 0 && r->offset >= offset && r->offset < offset + bytes);
}

/* Sleep for the "none" delay rules matching a request (extension). */
static void coroutine_fn blkdebug_request_delays(BlkdebugNode *s,
                                                 int64_t offset,
                                                 int64_t bytes,
                                                 BlkdebugIOType type)
{
    int64_t delay = 0;

    for (unsigned i = 0; i < s->rules->len; i++) {
        BlkdebugRule *r = g_ptr_array_index(s->rules, i);
        if (r->kind != BLKDBG_RULE_DELAY || r->event != BLKDBG_NONE ||
            !(r->iotype_mask & (1u << type)) ||
            (r->state && r->state != s->state) ||
            !rule_covers(r, offset, bytes)) {
            continue;
        }
        delay += r->delay_ns;
        if (r->once) {
            blkdebug_remove_rule(s, r);
            i--;
        }
    }
    if (delay > 0) {
        co_sleep_ns(delay);
    }
}

/* The armed rule that fails this request, if any. */
static BlkdebugRule *find_armed(BlkdebugNode *s, int64_t offset,
                                int64_t bytes, BlkdebugIOType type)
{
    for (unsigned i = 0; i < s->armed->len; i++) {
        BlkdebugRule *r = g_ptr_array_index(s->armed, i);
        if ((r->iotype_mask & (1u << type)) && rule_covers(r, offset, bytes)) {
            return r;
        }
    }
    return NULL;
}

/* Every request starts here: delays, then injected errors. */
static int coroutine_fn blkdebug_check(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, BlkdebugIOType type)
{
    BlkdebugNode *s = bs->opaque;
    BlkdebugRule *r;
    int64_t err;
    bool immediately;

    blkdebug_request_delays(s, offset, bytes, type);
    r = find_armed(s, offset, bytes, type);
    if (!r) {
        return 0;
    }
    err = r->error;
    immediately = r->immediately;
    if (r->once) {
        blkdebug_remove_rule(s, r);
    }
    if (!immediately) {
        co_yield_to_loop();
    }
    return err > 0 ? -(int)err : 0;
}

/* ---- the data path ---- */

static int coroutine_fn blkdebug_co_preadv(BlockDriverState *bs,
                                           int64_t offset, int64_t bytes,
                                           IOVector *qiov,
                                           BdrvRequestFlags flags)
{
    BlkdebugNode *s = bs->opaque;
    int ret = blkdebug_check(bs, offset, bytes, BLKDBG_IO_READ);

    return ret ? ret : bdrv_co_preadv(s->image, offset, bytes, qiov, flags);
}

static int coroutine_fn blkdebug_co_pwritev(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            IOVector *qiov,
                                            BdrvRequestFlags flags)
{
    BlkdebugNode *s = bs->opaque;
    int ret = blkdebug_check(bs, offset, bytes, BLKDBG_IO_WRITE);

    return ret ? ret : bdrv_co_pwritev(s->image, offset, bytes, qiov, flags);
}

/* Requests smaller than the zero alignment (the unaligned head and tail
 * the core splits off) are refused before any rule, as the reference's
 * blkdebug does, so the core's fallback to written zeroes gets tested. */
static int coroutine_fn blkdebug_co_pwrite_zeroes(BlockDriverState *bs,
                                                  int64_t offset,
                                                  int64_t bytes,
                                                  BdrvRequestFlags flags)
{
    BlkdebugNode *s = bs->opaque;
    uint64_t align = MAX(bs->bl.request_alignment,
                         bs->bl.pwrite_zeroes_alignment);
    int ret;

    if ((uint64_t)bytes < align) {
        return -ENOTSUP;
    }
    ret = blkdebug_check(bs, offset, bytes, BLKDBG_IO_WRITE_ZEROES);

    return ret ? ret : bdrv_co_pwrite_zeroes(s->image, offset, bytes, flags);
}

/* A discard smaller than the request alignment is refused before any
 * rule, as the reference's blkdebug does (discard is advisory). */
static int coroutine_fn blkdebug_co_pdiscard(BlockDriverState *bs,
                                             int64_t offset, int64_t bytes)
{
    BlkdebugNode *s = bs->opaque;
    int ret;

    if ((uint64_t)bytes < bs->bl.request_alignment) {
        return -ENOTSUP;
    }
    ret = blkdebug_check(bs, offset, bytes, BLKDBG_IO_DISCARD);

    return ret ? ret : bdrv_co_pdiscard(s->image, offset, bytes);
}

/* The core flushes the image itself after this. */
static int coroutine_fn blkdebug_co_flush_to_disk(BlockDriverState *bs)
{
    return blkdebug_check(bs, 0, 0, BLKDBG_IO_FLUSH);
}

/* Data lives at the same offset in the image. */
static int coroutine_fn blkdebug_co_block_status(BlockDriverState *bs,
                                                 bool want_zero,
                                                 int64_t offset, int64_t bytes,
                                                 int64_t *pnum, int64_t *map,
                                                 BlockDriverState **file)
{
    BlkdebugNode *s = bs->opaque;
    int ret = blkdebug_check(bs, offset, bytes, BLKDBG_IO_BLOCK_STATUS);

    if (ret < 0) {
        return ret;
    }
    *pnum = bytes;
    *map = offset;
    *file = s->image->bs;
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
}

static int64_t coroutine_fn blkdebug_co_getlength(BlockDriverState *bs)
{
    BlkdebugNode *s = bs->opaque;

    return bdrv_co_getlength(s->image->bs);
}

/* Like any driver named by a protocol prefix, blkdebug knows no
 * allocation of its own: the reference's info says "disk size:
 * unavailable" for it and for formats above it. */
static int64_t coroutine_fn blkdebug_co_allocated(BlockDriverState *bs)
{
    return -ENOTSUP;
}

/* ---- events and breakpoints ---- */

/* Sleep until "resume TAG" (or remove_break) wakes us. */
static void coroutine_fn blkdebug_suspend(BlkdebugNode *s, const char *tag)
{
    BlkdebugSuspended req = { .co = co_self(), .tag = g_strdup(tag) };

    s->suspended = g_list_append(s->suspended, &req);
    printf("blkdebug: Suspended request '%s'\n", tag);
    while (!req.resumed) {
        co_yield();
    }
    s->suspended = g_list_remove(s->suspended, &req);
    printf("blkdebug: Resuming request '%s'\n", tag);
    g_free(req.tag);
}

/* Breakpoints on @ev fire once each, in the order they were set. */
static void coroutine_fn blkdebug_breakpoints(BlkdebugNode *s,
                                              BlkdebugEvent ev)
{
    for (unsigned i = 0; i < s->rules->len; i++) {
        BlkdebugRule *r = g_ptr_array_index(s->rules, i);
        if (r->kind == BLKDBG_RULE_SUSPEND && r->event == ev) {
            g_autofree char *tag = g_steal_pointer(&r->tag);
            blkdebug_remove_rule(s, r);
            blkdebug_suspend(s, tag);
            i = -1;        /* the list may have changed meanwhile */
        }
    }
}

/* Arm inject rules and apply set-state rules for @ev; returns the
 * delay (ns) that delay rules ask for. */
static int64_t blkdebug_apply_rules(BlkdebugNode *s, BlkdebugEvent ev)
{
    int64_t new_state = s->state, delay = 0;
    bool armed = false;

    for (unsigned i = 0; i < s->rules->len; i++) {
        BlkdebugRule *r = g_ptr_array_index(s->rules, i);
        if (r->event != ev || r->kind == BLKDBG_RULE_SUSPEND ||
            (r->state && r->state != s->state)) {
            continue;
        }
        if (r->kind == BLKDBG_RULE_INJECT_ERROR) {
            if (!armed) {
                g_ptr_array_set_size(s->armed, 0);
                armed = true;
            }
            g_ptr_array_add(s->armed, r);
        } else if (r->kind == BLKDBG_RULE_SET_STATE) {
            new_state = r->new_state;
        } else {
            delay += r->delay_ns;
            if (r->once) {
                blkdebug_remove_rule(s, r);
                i--;
            }
        }
    }
    s->state = new_state;
    return delay;
}

static void coroutine_fn blkdebug_event(BlockDriverState *bs,
                                        BlkdebugEvent ev)
{
    BlkdebugNode *s = bs->opaque;
    int64_t delay;

    if (!s->rules) {
        return;
    }
    delay = blkdebug_apply_rules(s, ev);
    if (delay > 0) {
        co_sleep_ns(delay);
    }
    blkdebug_breakpoints(s, ev);
}

static int blkdebug_breakpoint(BlockDriverState *bs, const char *event,
                               const char *tag)
{
    BlkdebugNode *s = bs->opaque;
    BlkdebugRule *r;
    BlkdebugEvent ev;

    if (!blkdebug_event_parse(event, &ev)) {
        return -ENOENT;
    }
    r = g_new0(BlkdebugRule, 1);
    r->kind = BLKDBG_RULE_SUSPEND;
    r->event = ev;
    r->tag = g_strdup(tag);
    g_ptr_array_add(s->rules, r);
    return 0;
}

/* Wake every request suspended under @tag; how many were woken. */
static int blkdebug_wake_tag(BlkdebugNode *s, const char *tag, bool all)
{
    int n = 0;

    for (GList *l = s->suspended; l; l = l->next) {
        BlkdebugSuspended *req = l->data;
        if (!req->resumed && !strcmp(req->tag, tag)) {
            req->resumed = true;
            co_wake_later(req->co);
            n++;
            if (!all) {
                break;
            }
        }
    }
    return n;
}

static int blkdebug_resume(BlockDriverState *bs, const char *tag)
{
    return blkdebug_wake_tag(bs->opaque, tag, false) ? 0 : -ENOENT;
}

/* Resumes requests under @tag; succeeds only if a breakpoint was still
 * set (as the reference reports). */
static int blkdebug_remove_breakpoint(BlockDriverState *bs, const char *tag)
{
    BlkdebugNode *s = bs->opaque;
    int ret = -ENOENT;

    blkdebug_wake_tag(s, tag, true);
    for (unsigned i = 0; i < s->rules->len; i++) {
        BlkdebugRule *r = g_ptr_array_index(s->rules, i);
        if (r->kind == BLKDBG_RULE_SUSPEND && !strcmp(r->tag, tag)) {
            blkdebug_remove_rule(s, r);
            i--;
            ret = 0;
        }
    }
    return ret;
}

static bool blkdebug_is_suspended(BlockDriverState *bs, const char *tag)
{
    BlkdebugNode *s = bs->opaque;

    for (GList *l = s->suspended; l; l = l->next) {
        BlkdebugSuspended *req = l->data;
        if (!req->resumed && !strcmp(req->tag, tag)) {
            return true;
        }
    }
    return false;
}

static const BlockDriverDebugOps blkdebug_debug_ops = {
    .event = blkdebug_event,
    .breakpoint = blkdebug_breakpoint,
    .remove_breakpoint = blkdebug_remove_breakpoint,
    .resume = blkdebug_resume,
    .is_suspended = blkdebug_is_suspended,
};

static const BlockDriverIO blkdebug_io = {
    .co_preadv = blkdebug_co_preadv,
    .co_pwritev = blkdebug_co_pwritev,
    .co_pwrite_zeroes = blkdebug_co_pwrite_zeroes,
    .co_pdiscard = blkdebug_co_pdiscard,
    .co_flush_to_disk = blkdebug_co_flush_to_disk,
    .co_block_status = blkdebug_co_block_status,
    .co_getlength = blkdebug_co_getlength,
    .co_get_allocated_file_size = blkdebug_co_allocated,
};

static const BlockDriverPermOps blkdebug_perm_ops = {
    .child_perm = blkdebug_child_perm,
};

static const BlockDriverNamingOps blkdebug_naming_ops = {
    .strong_opts = blkdebug_strong_opts,
    .plain_filename = blkdebug_plain_filename,
};

const BlockDriver bdrv_blkdebug = {
    .format_name = "blkdebug",
    .kind = BDRV_KIND_FILTER,
    .protocol_name = "blkdebug",
    .instance_size = sizeof(BlkdebugNode),
    .open_opts = blkdebug_opts,
    .parse_filename = blkdebug_parse_filename,
    .open = blkdebug_open,
    .close = blkdebug_close,
    .refresh_limits = blkdebug_refresh_limits,
    .debug = &blkdebug_debug_ops,
    .io = &blkdebug_io,
    .perm = &blkdebug_perm_ops,
    .naming = &blkdebug_naming_ops,
};
