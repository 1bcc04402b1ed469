#include "config.h"
/*
 * strata-img snapshot: list, create, apply or delete internal snapshots.
 *
 * No Strata format stores internal snapshots yet, so listing prints
 * nothing and the other operations fail with the reference's messages
 * for a format without snapshot support (raw and the like).
 *
 * As in qemu-img 10.0, the long forms --apply/--create/--delete take no
 * argument (only -a/-c/-d do); without a name the messages say "(null)".
 */
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/img/img.h"

typedef enum {
    SNAPSHOT_NONE, SNAPSHOT_LIST, SNAPSHOT_APPLY, SNAPSHOT_CREATE,
    SNAPSHOT_DELETE,
} SnapshotAction;

typedef struct SnapshotArgs {
    SnapshotAction action;
    const char *name;
    ImgCommonOpts common;
} SnapshotArgs;

static const struct option snapshot_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "quiet", no_argument, NULL, 'q' },
    { "format", required_argument, NULL, 'f' },
    { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
    { "force-share", no_argument, NULL, 'U' },
    { "object", required_argument, NULL, OPTION_OBJECT },
    { "list", no_argument, NULL, 'l' },
    { "apply", no_argument, NULL, 'a' },
    { "create", no_argument, NULL, 'c' },
    { "delete", no_argument, NULL, 'd' },
    { NULL, 0, NULL, 0 },
};

/* Record -l/-a/-c/-d; only one may be given. */
static bool set_action(SnapshotArgs *a, SnapshotAction action)
{
    if (a->action != SNAPSHOT_NONE) {
        img_usage_error("snapshot", "Cannot mix '-l', '-a', '-c', '-d'");
        return false;
    }
    a->action = action;
    a->name = optarg;
    return true;
}

/* One option; returns -1 to go on, else the exit status. */
static int snapshot_option(int c, void *opaque)
{
    SnapshotArgs *a = opaque;

    switch (c) {
    case 'l':
        return set_action(a, SNAPSHOT_LIST) ? -1 : 1;
    case 'a':
        return set_action(a, SNAPSHOT_APPLY) ? -1 : 1;
    case 'c':
        return set_action(a, SNAPSHOT_CREATE) ? -1 : 1;
    case 'd':
        return set_action(a, SNAPSHOT_DELETE) ? -1 : 1;
    default:
        return img_common_option(c, "snapshot", &a->common);
    }
}

/*
 * Applying a snapshot on a format without snapshots falls through to its
 * file: the format layer is closed and opened again around that attempt,
 * and a guessed raw layer repeats its warning on the second open.
 */
static void reopen_warning(BlockDriverState *bs)
{
    if (!bdrv_format_probed(bs) || bdrv_is_read_only(bs) ||
        !bdrv_file_bs(bs) || strcmp(bdrv_get_format_name(bs), "raw")) {
        return;
    }
    fprintf(stderr,
            "WARNING: Image format was not specified for '%s' and probing "
            "guessed raw.\n"
            "         Automatically detecting the format is dangerous for raw "
            "images, write operations on block 0 will be restricted.\n"
            "         Specify the 'raw' format explicitly to remove the "
            "restrictions.\n",
            bdrv_get_filename(bdrv_file_bs(bs)));
}

/* Carry out the action on the open image; returns the exit status. */
static int snapshot_run(BlockBackend *blk, const SnapshotArgs *a)
{
    const char *name = a->name ? a->name : "(null)";

    switch (a->action) {
    case SNAPSHOT_CREATE:
        error_report("Could not create snapshot '%s': Operation not "
                     "supported", name);
        return 1;
    case SNAPSHOT_APPLY:
        reopen_warning(blk_bs(blk));
        error_report("Could not apply snapshot '%s': Block driver does not "
                     "support snapshots", name);
        return 1;
    case SNAPSHOT_DELETE:
        error_report("Could not delete snapshot '%s': snapshot not found",
                     name);
        return 1;
    default:
        return 0;           /* list: there are none */
    }
}

int img_snapshot(int argc, char **argv)
{
    SnapshotArgs a = { .action = SNAPSHOT_NONE };
    BlockBackend *blk;
    int ret, flags;

    ret = img_getopt_loop(argc, argv, "snapshot", "la:c:d:f:hqU",
                          snapshot_longopts, snapshot_option, &a);
    if (ret >= 0) {
        return ret;
    }
    if (!img_expect_one_file("snapshot", argc)) {
        return 1;
    }
    if (a.action == SNAPSHOT_NONE) {
        a.action = SNAPSHOT_LIST;
    }
    flags = a.action == SNAPSHOT_LIST ? 0 : BDRV_O_RDWR;
    blk = img_open_common(&a.common, argv[optind], flags, false);
    if (!blk) {
        return 1;
    }
    ret = snapshot_run(blk, &a);
    blk_unref(blk);
    return ret;
}
