#include "config.h"
/*
 * strata-io: maintenance commands (discard, flush, truncate) and process
 * commands (sleep, sigraise, abort, help).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tools/io/io.h"
#include "util/aio.h"
#include "util/cutils.h"

/* ---- discard ---- */

static void discard_help(void)
{
    printf(
"\n"
" discards a range of bytes from the given offset\n"
"\n"
" Example:\n"
" 'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file\n"
"\n"
" Discards a segment of the currently open file.\n"
" -C, -- report statistics in a machine parsable format\n"
" -q, -- quiet mode, do not show I/O statistics\n"
"\n");
}

static int discard_opts(int argc, char **argv, bool *cflag, bool *qflag)
{
    int c;

    while ((c = getopt(argc, argv, "Cq")) != -1) {
        switch (c) {
        case 'C': *cflag = true; break;
        case 'q': *qflag = true; break;
        default:
            io_command_usage(io_find_command("discard"));
            return -EINVAL;
        }
    }
    if (optind != argc - 2) {
        io_command_usage(io_find_command("discard"));
        return -EINVAL;
    }
    return 0;
}

static int discard_f(BlockBackend *blk, int argc, char **argv)
{
    bool cflag = false, qflag = false;
    int64_t offset, bytes;
    struct timespec t1, t2;
    int ret = discard_opts(argc, argv, &cflag, &qflag);

    if (ret < 0) {
        return ret;
    }
    offset = io_num_arg(argv[optind]);
    if (offset < 0) {
        return offset;
    }
    bytes = io_num_arg(argv[optind + 1]);
    if (bytes < 0) {
        return bytes;
    }
    /* byte-exact: 10.0 no longer rounds the limit to whole sectors */
    if (bytes > BDRV_REQUEST_MAX_BYTES) {
        printf("length cannot exceed %" PRIu64 ", given %s\n",
               (uint64_t)BDRV_REQUEST_MAX_BYTES, argv[optind + 1]);
        return -EINVAL;
    }
    t1 = io_now();
    ret = blk_pdiscard(blk, offset, bytes);
    t2 = io_now();
    if (ret < 0) {
        printf("discard failed: %s\n", strerror(-ret));
        return ret;
    }
    if (!qflag) {
        t2 = io_tsub(t2, t1);
        io_print_report("discard", &t2, offset, bytes, bytes, 1, cflag);
    }
    return 0;
}

/* ---- flush, truncate ---- */

static int flush_f(BlockBackend *blk, int argc, char **argv)
{
    return blk_flush(blk);
}

static int truncate_f(BlockBackend *blk, int argc, char **argv)
{
    PreallocMode prealloc = PREALLOC_MODE_OFF;
    Error *err = NULL;
    int64_t offset;
    int c, ret;

    while ((c = getopt(argc, argv, "m:")) != -1) {
        if (c != 'm') {
            io_command_usage(io_find_command("truncate"));
            return -EINVAL;
        }
        if (!prealloc_mode_parse(optarg, &prealloc)) {
            error_report("Invalid preallocation mode '%s'", optarg);
            return -EINVAL;
        }
    }
    /* like qemu-io: extra words are ignored, errors name argv[1] */
    offset = optind < argc ? io_cvtnum(argv[optind]) : -EINVAL;
    if (offset < 0) {
        io_print_cvtnum_err(offset, argv[1]);
        return offset;
    }
    ret = blk_truncate(blk, offset, false, prealloc, 0, &err);
    if (ret < 0) {
        error_report_err(err);
    }
    return ret;
}

/* ---- sleep, sigraise, abort ---- */

static void sleep_done(void *opaque)
{
    *(bool *)opaque = true;
}

static int sleep_f(BlockBackend *blk, int argc, char **argv)
{
    AioContext *ctx = aio_get_default();
    char *end;
    long ms = strtol(argv[1], &end, 0);
    bool done = false;
    AioTimer *timer;

    if (ms < 0 || *end != '\0') {
        printf("%s is not a valid number\n", argv[1]);
        return -EINVAL;
    }
    timer = aio_timer_new(ctx, sleep_done, &done);
    aio_timer_mod(timer, clock_ns() + ms * 1000000LL);
    AIO_WAIT_WHILE(ctx, !done);
    aio_timer_free(timer);
    return 0;
}

static void sigraise_help(void)
{
    printf(
"\n"
" raises the given signal\n"
"\n"
" Example:\n"
" 'sigraise 15' - raises SIGTERM\n"
"\n"
" Invokes raise(signal), where \"signal\" is the mandatory integer argument\n"
" given to sigraise.\n"
"\n");
}

static int sigraise_f(BlockBackend *blk, int argc, char **argv)
{
    int64_t sig = io_num_arg(argv[1]);

    if (sig < 0) {
        return sig;
    }
    if (sig > NSIG) {
        printf("signal argument '%s' is too large to be a valid signal\n",
               argv[1]);
        return -EINVAL;
    }
    fflush(stdout);
    fflush(stderr);
    raise(sig);
    return 0;
}

static int abort_f(BlockBackend *blk, int argc, char **argv)
{
    abort();
}

static int help_f(BlockBackend *blk, int argc, char **argv)
{
    const IoCmd *ct;

    if (argc == 1) {
        io_help_all();
        return 0;
    }
    ct = io_find_command(argv[1]);
    if (!ct) {
        printf("command %s not found\n", argv[1]);
        return -EINVAL;
    }
    io_help_one(argv[1], ct);
    return 0;
}

const IoCmd io_misc_cmds[] = {
    { "discard", "d", discard_f, 2, -1, 0, BLK_PERM_WRITE,
      "[-Cq] off len", "discards a number of bytes at a specified offset",
      discard_help },
    { "flush", "f", flush_f, 0, 0, 0, 0, NULL,
      "flush all in-core file state to disk", NULL },
    { "truncate", "t", truncate_f, 1, 3, 0, BLK_PERM_WRITE | BLK_PERM_RESIZE,
      "[-m prealloc_mode] off",
      "truncates the current file at the given offset", NULL },
    { "sleep", NULL, sleep_f, 1, 1, CMD_NOFILE_OK, 0, NULL,
      "waits for the given value in milliseconds", NULL },
    { "sigraise", NULL, sigraise_f, 1, 1, CMD_NOFILE_OK, 0, "signal",
      "raises a signal", sigraise_help },
    { "abort", NULL, abort_f, 0, 0, CMD_NOFILE_OK, 0, NULL,
      "simulate a program crash using abort(3)", NULL },
    { "help", "?", help_f, 0, 1, CMD_NOFILE_OK, 0, "[command]",
      "help for one or all commands", NULL },
    { NULL },
};
