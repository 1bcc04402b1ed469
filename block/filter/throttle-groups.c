#include "config.h"
/*
 * Throttle groups: the process-wide registry of named I/O limits and the
 * queueing of requests that exceed them (see throttle-groups.h).
 */
#include <errno.h>
#include <string.h>
#include "block/filter/throttle-groups.h"
#include "util/aio.h"
#include "util/cutils.h"

typedef struct ThrottleGroupDir {
    ThrottleGroup *tg;
    bool is_write;
    AioTimer *timer;           /* wakes the oldest waiter */
    CoQueue queue;             /* requests waiting, FIFO */
    unsigned pending;          /* waiters not yet dispatched */
} ThrottleGroupDir;

struct ThrottleGroup {
    char *name;
    int refcnt;
    ThrottleConfig cfg;
    ThrottleState ts;
    ThrottleGroupDir dir[2];   /* [0] reads, [1] writes */
    int suspended;             /* open drained sections */
};

static GHashTable *groups;     /* name -> ThrottleGroup (registry's ref) */

typedef enum { LIM_AVG, LIM_MAX, LIM_LEN } LimitField;

typedef struct LimitName {
    const char *name;
    ThrottleBucketType bucket;
    LimitField field;
} LimitName;

static const LimitName limit_names[] = {
    { "bps-total", THROTTLE_BPS_TOTAL, LIM_AVG },
    { "bps-total-max", THROTTLE_BPS_TOTAL, LIM_MAX },
    { "bps-total-max-length", THROTTLE_BPS_TOTAL, LIM_LEN },
    { "bps-read", THROTTLE_BPS_READ, LIM_AVG },
    { "bps-read-max", THROTTLE_BPS_READ, LIM_MAX },
    { "bps-read-max-length", THROTTLE_BPS_READ, LIM_LEN },
    { "bps-write", THROTTLE_BPS_WRITE, LIM_AVG },
    { "bps-write-max", THROTTLE_BPS_WRITE, LIM_MAX },
    { "bps-write-max-length", THROTTLE_BPS_WRITE, LIM_LEN },
    { "iops-total", THROTTLE_OPS_TOTAL, LIM_AVG },
    { "iops-total-max", THROTTLE_OPS_TOTAL, LIM_MAX },
    { "iops-total-max-length", THROTTLE_OPS_TOTAL, LIM_LEN },
    { "iops-read", THROTTLE_OPS_READ, LIM_AVG },
    { "iops-read-max", THROTTLE_OPS_READ, LIM_MAX },
    { "iops-read-max-length", THROTTLE_OPS_READ, LIM_LEN },
    { "iops-write", THROTTLE_OPS_WRITE, LIM_AVG },
    { "iops-write-max", THROTTLE_OPS_WRITE, LIM_MAX },
    { "iops-write-max-length", THROTTLE_OPS_WRITE, LIM_LEN },
    { "iops-size", THROTTLE_BUCKETS_COUNT, LIM_AVG },
    { NULL },
};

/* ---- parsing ---- */

/* Map "x-bps-total" / "limits.bps-total" to its table entry. */
static const LimitName *find_limit(const char *key)
{
    if (g_str_has_prefix(key, "x-")) {
        key += 2;
    } else if (g_str_has_prefix(key, "limits.")) {
        key += 7;
    } else {
        return NULL;
    }
    for (const LimitName *l = limit_names; l->name; l++) {
        if (!strcmp(l->name, key)) {
            return l;
        }
    }
    return NULL;
}

/* Integer property values: typed numbers or decimal strings, >= 0. */
static bool parse_limit_value(const char *key, QObject *v, uint64_t *out,
                              Error **errp)
{
    QNum *n = qobject_to_qnum(v);
    QString *s = qobject_to_qstring(v);
    int64_t i;

    if (n && qnum_get_try_int(n, &i)) {
        /* fall through to the sign check */
    } else if (!s || parse_int64(qstring_get_str(s), 10, &i) < 0) {
        error_setg(errp, "Parameter '%s' expects integer", key);
        return false;
    }
    if (i < 0) {
        error_setg(errp, "Property values cannot be negative");
        return false;
    }
    *out = i;
    return true;
}

static void apply_limit(ThrottleConfig *cfg, const LimitName *l, uint64_t v)
{
    if (l->bucket == THROTTLE_BUCKETS_COUNT) {
        cfg->op_size = v;
    } else if (l->field == LIM_AVG) {
        cfg->buckets[l->bucket].avg = v;
    } else if (l->field == LIM_MAX) {
        cfg->buckets[l->bucket].max = v;
    } else {
        cfg->buckets[l->bucket].burst_length = v;
    }
}

/* Fill @cfg from every limit key of the flattened @flat. */
static bool parse_limits(QDict *flat, ThrottleConfig *cfg, Error **errp)
{
    throttle_config_init(cfg);
    for (const QDictEntry *e = qdict_first(flat); e; e = qdict_next(flat, e)) {
        const char *key = qdict_entry_key(e);
        const LimitName *l = find_limit(key);
        uint64_t v;

        if (!strcmp(key, "id") || !strcmp(key, "qom-type")) {
            continue;
        }
        if (!l) {
            error_setg(errp, "Parameter '%s' is unexpected", key);
            return false;
        }
        if (!parse_limit_value(key, qdict_entry_value(e), &v, errp)) {
            return false;
        }
        apply_limit(cfg, l, v);
    }
    return true;
}

/* ---- groups ---- */

static void group_timer_cb(void *opaque)
{
    ThrottleGroupDir *d = opaque;

    co_queue_next(&d->queue);
}

static ThrottleGroup *group_new(const char *id, const ThrottleConfig *cfg)
{
    ThrottleGroup *tg = g_new0(ThrottleGroup, 1);

    tg->name = g_strdup(id);
    tg->refcnt = 1;
    tg->cfg = *cfg;
    throttle_state_init(&tg->ts, cfg, clock_ns());
    for (int i = 0; i < 2; i++) {
        ThrottleGroupDir *d = &tg->dir[i];
        d->tg = tg;
        d->is_write = i;
        co_queue_init(&d->queue);
        d->timer = aio_timer_new(aio_get_default(), group_timer_cb, d);
    }
    return tg;
}

bool throttle_group_create_from_opts(QDict *opts, Error **errp)
{
    g_autoptr(QDict) flat = qdict_clone_shallow(opts);
    const char *id = qdict_get_try_str(opts, "id");
    ThrottleConfig cfg;

    qdict_flatten(flat);
    if (!parse_limits(flat, &cfg, errp)) {
        return false;
    }
    if (!id) {
        error_setg(errp, "Parameter 'id' is missing");
        return false;
    }
    if (!throttle_config_is_valid(&cfg, errp)) {
        return false;
    }
    if (throttle_group_exists(id)) {
        error_setg(errp, "attempt to add duplicate property '%s' to object "
                   "(type 'container')", id);
        return false;
    }
    if (!groups) {
        groups = g_hash_table_new(g_str_hash, g_str_equal);
    }
    ThrottleGroup *tg = group_new(id, &cfg);
    g_hash_table_insert(groups, tg->name, tg);
    return true;
}

bool throttle_group_exists(const char *id)
{
    return groups && g_hash_table_lookup(groups, id);
}

bool throttle_group_delete(const char *id)
{
    ThrottleGroup *tg = groups ? g_hash_table_lookup(groups, id) : NULL;

    if (!tg) {
        return false;
    }
    g_hash_table_remove(groups, id);
    throttle_group_unref(tg);
    return true;
}

ThrottleGroup *throttle_group_ref(const char *id)
{
    ThrottleGroup *tg = groups ? g_hash_table_lookup(groups, id) : NULL;

    if (tg) {
        tg->refcnt++;
    }
    return tg;
}

void throttle_group_unref(ThrottleGroup *tg)
{
    if (!tg || --tg->refcnt > 0) {
        return;
    }
    for (int i = 0; i < 2; i++) {
        aio_timer_del(tg->dir[i].timer);
        aio_timer_free(tg->dir[i].timer);
    }
    g_free(tg->name);
    g_free(tg);
}

const char *throttle_group_name(const ThrottleGroup *tg)
{
    return tg->name;
}

void throttle_group_get_config(const ThrottleGroup *tg, ThrottleConfig *cfg)
{
    *cfg = tg->cfg;
}

/* ---- queueing ---- */

static int64_t group_wait_ns(ThrottleGroup *tg, bool is_write)
{
    return throttle_compute_wait(&tg->ts, is_write, clock_ns());
}

/* Arm the direction's timer for when the oldest waiter may go. */
static void arm_timer(ThrottleGroupDir *d)
{
    if (!aio_timer_pending(d->timer)) {
        aio_timer_mod(d->timer, clock_ns() + group_wait_ns(d->tg, d->is_write));
    }
}

/* After a dispatch: let the next waiter go now or when the buckets allow. */
static void schedule_next(ThrottleGroupDir *d)
{
    if (!d->pending) {
        return;
    }
    if (d->tg->suspended || group_wait_ns(d->tg, d->is_write) == 0) {
        co_queue_next(&d->queue);
    } else {
        arm_timer(d);
    }
}

void coroutine_fn throttle_group_co_intercept(ThrottleGroup *tg, bool is_write,
                                              uint64_t bytes)
{
    ThrottleGroupDir *d = &tg->dir[is_write];

    if (!tg->suspended &&
        (d->pending > 0 || group_wait_ns(tg, is_write) > 0)) {
        d->pending++;
        arm_timer(d);
        co_queue_wait(&d->queue, NULL);
        d->pending--;
    }
    if (!tg->suspended) {
        throttle_account(&tg->ts, is_write, bytes);
    }
    schedule_next(d);
}

void throttle_group_limits_suspend(ThrottleGroup *tg)
{
    tg->suspended++;
    for (int i = 0; i < 2; i++) {
        co_queue_restart_all(&tg->dir[i].queue);
    }
}

void throttle_group_limits_resume(ThrottleGroup *tg)
{
    g_assert(tg->suspended > 0);
    tg->suspended--;
}
