#include "config.h"
/*
 * strata-io: zone_* commands.  None of the drivers is zoned, so after
 * checking their arguments they fail as on any non-zoned device.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "tools/io/io.h"

/* ---- zoned devices: none of our drivers is zoned ---- */

static int zone_range_args(char **argv, int64_t *offset, int64_t *len)
{
    *offset = io_num_arg(argv[1]);
    if (*offset < 0) {
        return *offset;
    }
    *len = io_num_arg(argv[2]);
    return *len < 0 ? *len : 0;
}

static int zone_fail_errno(const char *what, int err)
{
    printf("zone %s failed: %s\n", what, strerror(err));
    return -err;
}

static int zone_fail(const char *what)
{
    return zone_fail_errno(what, ENOTSUP);
}

/* Zone management: a range beyond the end fails the backend's byte
 * request check (EIO) before the driver can say it is not zoned. */
static int zone_mgmt(BlockBackend *blk, char **argv, const char *what)
{
    int64_t offset, len = 0, size;
    int ret = zone_range_args(argv, &offset, &len);

    if (ret < 0) {
        return ret;
    }
    size = blk_getlength(blk);
    if (size < 0) {
        return zone_fail_errno(what, -size);
    }
    if (offset > size || size - offset < len) {
        return zone_fail_errno(what, EIO);
    }
    return zone_fail(what);
}

static int zone_report_f(BlockBackend *blk, int argc, char **argv)
{
    int64_t offset, nr = 0;
    int ret = zone_range_args(argv, &offset, &nr);

    if (ret < 0) {
        return ret;
    }
    if (nr > UINT32_MAX) {
        printf("Number of zones must be less than 2^32\n");
        return -ERANGE;
    }
    return zone_fail("report");
}

static int zone_open_f(BlockBackend *blk, int argc, char **argv)
{
    return zone_mgmt(blk, argv, "open");
}

static int zone_close_f(BlockBackend *blk, int argc, char **argv)
{
    return zone_mgmt(blk, argv, "close");
}

static int zone_finish_f(BlockBackend *blk, int argc, char **argv)
{
    return zone_mgmt(blk, argv, "finish");
}

static int zone_reset_f(BlockBackend *blk, int argc, char **argv)
{
    return zone_mgmt(blk, argv, "reset");
}

static int zone_append_f(BlockBackend *blk, int argc, char **argv)
{
    IOVector qiov;
    int64_t offset;
    void *buf;
    int ret;

    getopt(argc, argv, "p");
    ret = io_parse_iovec_args(argc, argv, 0xa5, &offset, &qiov, &buf);
    if (ret < 0) {
        return ret;
    }
    iov_vec_destroy(&qiov);
    io_free(buf);
    return zone_fail("append");
}

const IoCmd io_zone_cmds[] = {
    { "zone_report", "zrp", zone_report_f, 2, 2, 0, 0, "offset number",
      "report zone information", NULL },
    { "zone_open", "zo", zone_open_f, 2, 2, 0, 0, "offset len",
      "explicit open a range of zones in zone block device", NULL },
    { "zone_close", "zc", zone_close_f, 2, 2, 0, 0, "offset len",
      "close a range of zones in zone block device", NULL },
    { "zone_finish", "zf", zone_finish_f, 2, 2, 0, 0, "offset len",
      "finish a range of zones in zone block device", NULL },
    { "zone_reset", "zrs", zone_reset_f, 2, 2, 0, 0, "offset len",
      "reset a zone write pointer in zone block device", NULL },
    { "zone_append", "zap", zone_append_f, 3, 4, 0, 0, "offset len [len..]",
      "append write a number of bytes at a specified offset", NULL },
    { NULL },
};
