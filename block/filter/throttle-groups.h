/*
 * Throttle groups: named sets of I/O limits shared by every throttle node
 * that names the group, process-wide.
 *
 * A group is created from the options of "--object throttle-group,...":
 * @opts holds everything but qom-type, i.e. "id" (required) and the limits,
 * either as x-<limit>=N or as limits.<limit>=N (flat "limits.bps-total" keys
 * or a nested "limits" dict).  <limit> is one of bps-total, bps-read,
 * bps-write, iops-total, iops-read, iops-write, each optionally with a
 * -max or -max-length suffix, and iops-size.  Values are integers (strings
 * or numbers).
 *
 * Requests that must wait sleep on the group (a timer per direction wakes
 * the oldest waiter), FIFO per direction; bytes and ops are charged when a
 * request is dispatched.
 */
#ifndef STRATA_THROTTLE_GROUPS_H
#define STRATA_THROTTLE_GROUPS_H

#include <stdbool.h>
#include <stdint.h>
#include "coroutine/coroutine.h"
#include "qobject/qobject.h"
#include "util/error.h"
#include "util/throttle.h"

typedef struct ThrottleGroup ThrottleGroup;

/* Create and register a group; false with errp set on a bad config, a
 * missing id or a duplicate id (messages as the reference). */
bool throttle_group_create_from_opts(QDict *opts, Error **errp);
/* Drop the registry's reference of group @id (nodes using it keep it
 * alive).  False if there is no such group. */
bool throttle_group_delete(const char *id);
bool throttle_group_exists(const char *id);

/* A new reference to group @id, NULL if none. */
ThrottleGroup *throttle_group_ref(const char *id);
void throttle_group_unref(ThrottleGroup *tg);
const char *throttle_group_name(const ThrottleGroup *tg);
/* The group's configured limits (for tests and info output). */
void throttle_group_get_config(const ThrottleGroup *tg, ThrottleConfig *cfg);

/* Wait until a request of @bytes in this direction may go, then charge
 * it.  Returns at once while limits are suspended for a drain. */
void coroutine_fn throttle_group_co_intercept(ThrottleGroup *tg, bool is_write,
                                              uint64_t bytes);
/* Drain support: while at least one drained section is open, queued
 * requests are released and new ones are not throttled. */
void throttle_group_limits_suspend(ThrottleGroup *tg);
void throttle_group_limits_resume(ThrottleGroup *tg);

#endif
