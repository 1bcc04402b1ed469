#include "config.h"
/*
 * strata-img snapshot: list, create, apply or delete internal snapshots.
 *
 * Formats without internal snapshots list nothing and fail the other
 * operations with the reference's messages (raw and the like).
 *
 * As in qemu-img 10.0, the long forms --apply/--create/--delete take no
 * argument (only -a/-c/-d do); without a name the messages say "(null)"
 * (where the reference crashes, create and delete fail cleanly).
 * Deletion looks the snapshot up by name, application by ID or name.
 */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include "block/block.h"
#include "tools/img/img.h"
#include "tools/img/snapshot-dump.h"

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

/* "Snapshot list:" and the table, nothing without snapshots. */
static int snapshot_list(BlockDriverState *bs)
{
    g_autofree BdrvSnapshotInfo *tab = NULL;
    int n = bdrv_snapshot_list(bs, &tab);

    if (n <= 0) {
        return 0;
    }
    printf("Snapshot list:\n");
    snapshot_dump_header();
    printf("\n");
    for (int i = 0; i < n; i++) {
        snapshot_dump_row(&tab[i]);
        printf("\n");
    }
    return 0;
}

static int snapshot_create(BlockDriverState *bs, const char *name)
{
    BdrvSnapshotInfo sn = { 0 };
    struct timeval tv;
    int ret;

    if (!name) {
        error_report("Could not create snapshot '(null)': %s",
                     strerror(EINVAL));
        return 1;
    }
    g_strlcpy(sn.name, name, sizeof(sn.name));
    gettimeofday(&tv, NULL);
    sn.date_sec = tv.tv_sec;
    sn.date_nsec = tv.tv_usec * 1000;
    ret = bdrv_snapshot_create(bs, &sn);
    if (ret < 0) {
        error_report("Could not create snapshot '%s': %s", name,
                     strerror(-ret));
        return 1;
    }
    return 0;
}

static int snapshot_apply(BlockDriverState *bs, const char *name)
{
    Error *err = NULL;

    if (!bdrv_can_snapshot(bs)) {
        reopen_warning(bs);
        error_report("Could not apply snapshot '%s': Block driver does not "
                     "support snapshots", name ? name : "(null)");
        return 1;
    }
    if (bdrv_snapshot_goto(bs, name ? name : "(null)", &err) < 0) {
        error_reportf_err(err, "Could not apply snapshot '%s': ",
                          name ? name : "(null)");
        return 1;
    }
    return 0;
}

static int snapshot_delete(BlockDriverState *bs, const char *name)
{
    BdrvSnapshotInfo sn;
    Error *err = NULL;

    if (!name || bdrv_snapshot_find(bs, &sn, name) < 0) {
        error_report("Could not delete snapshot '%s': snapshot not found",
                     name ? name : "(null)");
        return 1;
    }
    if (bdrv_snapshot_delete(bs, sn.id, sn.name, &err) < 0) {
        error_reportf_err(err, "Could not delete snapshot '%s': ", name);
        return 1;
    }
    return 0;
}

/* Carry out the action on the open image; returns the exit status. */
static int snapshot_run(BlockBackend *blk, const SnapshotArgs *a)
{
    switch (a->action) {
    case SNAPSHOT_CREATE:
        return snapshot_create(blk_bs(blk), a->name);
    case SNAPSHOT_APPLY:
        return snapshot_apply(blk_bs(blk), a->name);
    case SNAPSHOT_DELETE:
        return snapshot_delete(blk_bs(blk), a->name);
    default:
        return snapshot_list(blk_bs(blk));
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
