#include "config.h"
/*
 * Snapshot mode (BDRV_O_SNAPSHOT, strata-io -s): the image the user named
 * is opened read-only and a temporary qcow2 overlay is put on top of it;
 * reads see the base, writes land in the overlay, and the overlay goes
 * away with the process.
 *
 * As the reference does: the overlay is "vl.XXXXXX" in $TMPDIR (or
 * /var/tmp when that is unset or "/tmp": temporary disks can be large and
 * /tmp is often in memory), created with the base's length and no backing
 * file name in its header, opened with cache.direct=off and
 * cache.no-flush=on (its contents are thrown away anyway), and unlinked
 * as soon as it is open, so that no exit path, not even SIGKILL, leaves
 * it behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "block/drivers.h"

/* The directory temporary disks go to. */
static const char *temp_dir(void)
{
    const char *dir = getenv("TMPDIR");

    if (!dir || !*dir || !strcmp(dir, "/tmp")) {
        return "/var/tmp";
    }
    return dir;
}

/* A new empty file named after the reference's pattern; the name, or
 * NULL with errp set. */
static char *create_temp_file(Error **errp)
{
    char *name = g_strdup_printf("%s/vl.XXXXXX", temp_dir());
    int fd = g_mkstemp_full(name, O_RDWR, 0600);

    if (fd < 0) {
        error_setg_errno(errp, errno, "Could not open temporary file '%s'",
                         name);
        g_free(name);
        return NULL;
    }
    close(fd);
    return name;
}

/* A qcow2 image of @size in @name. */
static int create_overlay(const char *name, int64_t size, Error **errp)
{
    const BlockDriver *qcow2 = bdrv_find_format("qcow2");
    g_autoptr(QDict) opts = qdict_new();

    if (!qcow2) {
        error_setg(errp, "Temporary snapshots need the qcow2 driver");
        return -ENOTSUP;
    }
    qdict_put_int(opts, "size", size);
    return bdrv_create(qcow2, name, opts, errp);
}

/* Opens the overlay in @name with the user's read-only/aio flags. */
static BlockDriverState *open_overlay(const char *name, int flags,
                                      Error **errp)
{
    QDict *opts = qdict_new();
    int keep = BDRV_O_RDWR | BDRV_O_AIO_MASK | BDRV_O_UNMAP;

    qdict_put_str(opts, "driver", "qcow2");
    qdict_put_str(opts, "file.driver", "file");
    qdict_put_str(opts, "file.filename", name);
    return bdrv_open_inherit(NULL, opts,
                             (flags & keep) | BDRV_O_NO_FLUSH |
                             BDRV_O_NO_BACKING, NULL, 0, errp);
}

/* Puts a new temporary overlay over @base (whose reference it takes). */
static BlockDriverState *append_overlay(BlockDriverState *base, int flags,
                                        Error **errp)
{
    int64_t size = bdrv_getlength(base);
    g_autofree char *name = NULL;
    BlockDriverState *top = NULL;

    if (size < 0) {
        error_setg_errno(errp, -size, "Could not get image size");
    } else if ((name = create_temp_file(errp))) {
        if (create_overlay(name, size, errp) >= 0) {
            top = open_overlay(name, flags, errp);
        }
        unlink(name);
    }
    if (!top) {
        bdrv_unref(base);
        return NULL;
    }
    if (!bdrv_attach_child(top, base, "backing", BDRV_CHILD_COW, errp)) {
        bdrv_unref(top);
        return NULL;
    }
    bdrv_refresh_limits(top, NULL);
    return top;
}

BlockDriverState *bdrv_open_temp_snapshot(const char *filename,
                                          QDict *options, int flags,
                                          Error **errp)
{
    BlockDriverState *base;

    flags &= ~BDRV_O_SNAPSHOT;
    if (options) {
        qdict_del(options, "read-only");
    }
    base = bdrv_open_inherit(filename, options, flags & ~BDRV_O_RDWR,
                             NULL, 0, errp);
    return base ? append_overlay(base, flags, errp) : NULL;
}
