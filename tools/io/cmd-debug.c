#include "config.h"
/*
 * strata-io: blkdebug breakpoints (break, remove_break, resume,
 * wait_break).  They reach the first blkdebug node below the root
 * through the core's debug hooks (block/debug.h).
 */
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/io/io.h"
#include "util/aio.h"

static int break_f(BlockBackend *blk, int argc, char **argv)
{
    int ret = bdrv_debug_breakpoint(blk_bs(blk), argv[1], argv[2]);

    if (ret < 0) {
        printf("Could not set breakpoint: %s\n", strerror(-ret));
    }
    return ret;
}

static int remove_break_f(BlockBackend *blk, int argc, char **argv)
{
    int ret = bdrv_debug_remove_breakpoint(blk_bs(blk), argv[1]);

    if (ret < 0) {
        printf("Could not remove breakpoint %s: %s\n", argv[1],
               strerror(-ret));
    }
    return ret;
}

static int resume_f(BlockBackend *blk, int argc, char **argv)
{
    int ret = bdrv_debug_resume(blk_bs(blk), argv[1]);

    if (ret < 0) {
        printf("Could not resume request: %s\n", strerror(-ret));
    }
    return ret;
}

/* As the reference: polls until the tagged request is suspended, forever
 * if it never is. */
static int wait_break_f(BlockBackend *blk, int argc, char **argv)
{
    while (!bdrv_debug_is_suspended(blk_bs(blk), argv[1])) {
        aio_poll(aio_get_default(), true);
    }
    return 0;
}

const IoCmd io_debug_cmds[] = {
    { "break", NULL, break_f, 2, 2, 0, 0, "event tag",
      "sets a breakpoint on event and tags the stopped request as tag", NULL },
    { "remove_break", NULL, remove_break_f, 1, 1, 0, 0, "tag",
      "remove a breakpoint by tag", NULL },
    { "resume", NULL, resume_f, 1, 1, 0, 0, "tag",
      "resumes the request tagged as tag", NULL },
    { "wait_break", NULL, wait_break_f, 1, 1, 0, 0, "tag",
      "waits for the suspension of a request", NULL },
    { NULL },
};
