/*
 * blkdebug internals shared by blkdebug.c (the driver) and
 * blkdebug-rules.c (rule parsing from options and config files).
 */
#ifndef STRATA_BLKDEBUG_INT_H
#define STRATA_BLKDEBUG_INT_H

#include <glib.h>
#include "block/debug.h"
#include "qobject/qobject.h"
#include "util/error.h"

typedef enum {
    BLKDBG_IO_READ, BLKDBG_IO_WRITE, BLKDBG_IO_WRITE_ZEROES,
    BLKDBG_IO_DISCARD, BLKDBG_IO_FLUSH, BLKDBG_IO_BLOCK_STATUS,
    BLKDBG_IO_MAX,
} BlkdebugIOType;

/* Rules without an iotype apply to every type but block-status. */
#define BLKDBG_IO_DEFAULT_MASK \
    ((1u << BLKDBG_IO_MAX) - 1 - (1u << BLKDBG_IO_BLOCK_STATUS))

typedef enum {
    BLKDBG_RULE_INJECT_ERROR,
    BLKDBG_RULE_SET_STATE,
    BLKDBG_RULE_DELAY,         /* Strata extension: inject-delay */
    BLKDBG_RULE_SUSPEND,       /* breakpoints */
} BlkdebugRuleKind;

typedef struct BlkdebugRule {
    BlkdebugRuleKind kind;
    BlkdebugEvent event;
    int64_t state;             /* 0 = in any state */
    /* inject-error and inject-delay */
    unsigned iotype_mask;
    int64_t offset;            /* byte offset of "sector"; -1 = any */
    bool once;
    int64_t error;             /* errno */
    bool immediately;
    int64_t delay_ns;
    /* set-state */
    int64_t new_state;
    /* suspend */
    char *tag;
} BlkdebugRule;

void blkdebug_rule_free(gpointer rule);
/* Rules from "<section>.N.key" options (removed from @options), appended
 * to @rules in index order.  @section: inject-error, set-state,
 * inject-delay. */
int blkdebug_rules_from_options(QDict *options, const char *section,
                                GPtrArray *rules, Error **errp);
/* Rules from an ini-style config file ([inject-error], [set-state] and
 * [inject-delay] sections of key = "value" lines). */
int blkdebug_rules_from_file(const char *filename, GPtrArray *rules,
                             Error **errp);

#endif
