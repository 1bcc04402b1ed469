#include "config.h"
/*
 * strata-io: asynchronous requests (aio_read, aio_write, aio_flush).
 * Each request runs in its own coroutine and reports when it completes;
 * the loop runs them while later commands execute or wait.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "tools/io/io.h"
#include "util/aio.h"

typedef struct AioReq {
    BlockBackend *blk;
    IOVector qiov;
    void *buf;
    int64_t offset;
    int64_t zero_bytes;     /* aio_write -z: length */
    bool write, zflag, cflag, qflag, vflag, pflag;
    bool submitting;        /* inside aio_submit() */
    int pattern;
    int flags;
    int ret;
    struct timespec t1, t2;
} AioReq;

static unsigned io_aio_in_flight;

void io_aio_drain(void)
{
    AIO_WAIT_WHILE(aio_get_default(), io_aio_in_flight > 0);
}

static void aio_req_free(AioReq *r)
{
    if (!r->zflag) {
        iov_vec_destroy(&r->qiov);
    }
    io_free(r->buf);
    g_free(r);
}

static void aio_read_done(AioReq *r, int ret, struct timespec t2)
{
    int64_t size = r->qiov.size;

    if (ret < 0) {
        printf("readv failed: %s\n", strerror(-ret));
        return;
    }
    if (r->pflag && !io_check_pattern(r->buf, r->pattern, size)) {
        printf("Pattern verification failed at offset %" PRId64 ", %"
               PRId64 " bytes\n", r->offset, size);
    }
    if (r->qflag) {
        return;
    }
    if (r->vflag) {
        io_dump_buffer(r->buf, r->offset, size);
    }
    t2 = io_tsub(t2, r->t1);
    io_print_report("read", &t2, r->offset, size, size, 1, r->cflag);
}

static void aio_write_done(AioReq *r, int ret, struct timespec t2)
{
    int64_t size = r->zflag ? r->zero_bytes : (int64_t)r->qiov.size;

    if (ret < 0) {
        printf("aio_write failed: %s\n", strerror(-ret));
        return;
    }
    if (r->qflag) {
        return;
    }
    t2 = io_tsub(t2, r->t1);
    io_print_report("wrote", &t2, r->offset, size, size, 1, r->cflag);
}

/* Report, free and count down one finished request. */
static void aio_req_complete(void *opaque)
{
    AioReq *r = opaque;

    if (r->write) {
        aio_write_done(r, r->ret, r->t2);
    } else {
        aio_read_done(r, r->ret, r->t2);
    }
    aio_req_free(r);
    io_aio_in_flight--;
    aio_notify(aio_get_default());
}

static void coroutine_fn aio_req_entry(void *opaque)
{
    AioReq *r = opaque;

    if (!r->write) {
        r->ret = blk_co_preadv(r->blk, r->offset, r->qiov.size, &r->qiov, 0);
    } else if (r->zflag) {
        r->ret = blk_co_pwrite_zeroes(r->blk, r->offset, r->zero_bytes,
                                      r->flags);
    } else {
        r->ret = blk_co_pwritev(r->blk, r->offset, r->qiov.size, &r->qiov,
                                r->flags);
    }
    r->t2 = io_now();
    /* like blk_aio_*(): never complete before the submission returns */
    if (r->submitting) {
        aio_bh_schedule_oneshot(aio_get_default(), aio_req_complete, r);
    } else {
        aio_req_complete(r);
    }
}

static void aio_submit(AioReq *r)
{
    io_aio_in_flight++;
    r->submitting = true;
    co_enter(co_create(aio_req_entry, r));
    r->submitting = false;
}

/* ---- aio_read ---- */

static void aio_read_help(void)
{
    printf(
"\n"
" asynchronously reads a range of bytes from the given offset\n"
"\n"
" Example:\n"
" 'aio_read -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file\n"
"\n"
" Reads a segment of the currently open file, optionally dumping it to the\n"
" standard output stream (with -v option) for subsequent inspection.\n"
" The read is performed asynchronously and the aio_flush command must be\n"
" used to ensure all outstanding aio requests have been completed.\n"
" Note that due to its asynchronous nature, this command will be\n"
" considered successful once the request is submitted, independently\n"
" of potential I/O errors or pattern mismatches.\n"
" -C, -- report statistics in a machine parsable format\n"
" -i, -- treat request as invalid, for exercising stats\n"
" -P, -- use a pattern to verify read data\n"
" -q, -- quiet mode, do not show I/O statistics\n"
" -r, -- register I/O buffer\n"
" -v, -- dump buffer to standard output\n"
"\n");
}

/* 1: handled (-i), 0: go on, <0: error */
static int aio_read_opts(int argc, char **argv, AioReq *r)
{
    int c;

    while ((c = getopt(argc, argv, "CiP:qrv")) != -1) {
        switch (c) {
        case 'C': r->cflag = true; break;
        case 'q': r->qflag = true; break;
        case 'r': break;
        case 'v': r->vflag = true; break;
        case 'i':
            printf("injecting invalid read request\n");
            return 1;
        case 'P':
            r->pflag = true;
            r->pattern = io_parse_pattern(optarg);
            if (r->pattern < 0) {
                return -EINVAL;
            }
            break;
        default:
            io_command_usage(io_find_command("aio_read"));
            return -EINVAL;
        }
    }
    if (optind > argc - 2) {
        io_command_usage(io_find_command("aio_read"));
        return -EINVAL;
    }
    return 0;
}

static int aio_parse_offset(AioReq *r, const char *arg)
{
    r->offset = io_num_arg(arg);
    return r->offset < 0 ? r->offset : 0;
}

static int aio_read_f(BlockBackend *blk, int argc, char **argv)
{
    AioReq *r = g_new0(AioReq, 1);
    int ret = aio_read_opts(argc, argv, r);

    r->blk = blk;
    if (ret == 0) {
        ret = io_parse_iovec_args(argc, argv, 0xab, &r->offset, &r->qiov,
                                  &r->buf);
    }
    if (ret != 0) {
        g_free(r);
        return ret > 0 ? 0 : ret;
    }
    r->t1 = io_now();
    aio_submit(r);
    return 0;
}

/* ---- aio_write ---- */

static void aio_write_help(void)
{
    printf(
"\n"
" asynchronously writes a range of bytes from the given offset source\n"
" from multiple buffers\n"
"\n"
" Example:\n"
" 'aio_write 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file\n"
"\n"
" Writes into a segment of the currently open file, using a buffer\n"
" filled with a set pattern (0xcdcdcdcd).\n"
" The write is performed asynchronously and the aio_flush command must be\n"
" used to ensure all outstanding aio requests have been completed.\n"
" Note that due to its asynchronous nature, this command will be\n"
" considered successful once the request is submitted, independently\n"
" of potential I/O errors or pattern mismatches.\n"
" -C, -- report statistics in a machine parsable format\n"
" -f, -- use Force Unit Access semantics\n"
" -i, -- treat request as invalid, for exercising stats\n"
" -P, -- use different pattern to fill file\n"
" -q, -- quiet mode, do not show I/O statistics\n"
" -r, -- register I/O buffer\n"
" -u, -- with -z, allow unmapping\n"
" -z, -- write zeroes using blk_aio_pwrite_zeroes\n"
"\n");
}

static int aio_write_opt(int c, AioReq *r)
{
    switch (c) {
    case 'C': r->cflag = true; return 0;
    case 'f': r->flags |= BDRV_REQ_FUA; return 0;
    case 'q': r->qflag = true; return 0;
    case 'r': return 0;
    case 'u': r->flags |= BDRV_REQ_MAY_UNMAP; return 0;
    case 'z': r->zflag = true; return 0;
    case 'i':
        printf("injecting invalid write request\n");
        return 1;
    case 'P':
        r->pattern = io_parse_pattern(optarg);
        return r->pattern < 0 ? -EINVAL : 0;
    default:
        io_command_usage(io_find_command("aio_write"));
        return -EINVAL;
    }
}

static int aio_write_opts(int argc, char **argv, AioReq *r)
{
    int c, ret;

    r->pattern = 0xcd;
    while ((c = getopt(argc, argv, "CfiqrP:uz")) != -1) {
        ret = aio_write_opt(c, r);
        if (ret != 0) {
            return ret;
        }
    }
    if (optind > argc - 2) {
        io_command_usage(io_find_command("aio_write"));
        return -EINVAL;
    }
    if (r->zflag && optind != argc - 2) {
        printf("-z supports only a single length parameter\n");
        return -EINVAL;
    }
    if ((r->flags & BDRV_REQ_MAY_UNMAP) && !r->zflag) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }
    return 0;
}

static int aio_write_buffers(AioReq *r, int argc, char **argv)
{
    if (r->zflag) {
        r->zero_bytes = io_cvtnum(argv[optind]);
        if (r->zero_bytes < 0) {
            io_print_cvtnum_err(r->zero_bytes, argv[optind]);
            return r->zero_bytes;
        }
        return 0;
    }
    r->buf = io_create_iovec(&r->qiov, &argv[optind], argc - optind,
                             r->pattern);
    return r->buf ? 0 : -EINVAL;
}

static int aio_write_f(BlockBackend *blk, int argc, char **argv)
{
    AioReq *r = g_new0(AioReq, 1);
    int ret = aio_write_opts(argc, argv, r);

    r->blk = blk;
    r->write = true;
    if (ret == 0) {
        ret = aio_parse_offset(r, argv[optind]);
    }
    if (ret == 0) {
        optind++;
        ret = aio_write_buffers(r, argc, argv);
    }
    if (ret != 0) {
        g_free(r);
        return ret > 0 ? 0 : ret;
    }
    /* As the reference, a zero write's start time is left unset. */
    if (!r->zflag) {
        r->t1 = io_now();
    }
    aio_submit(r);
    return 0;
}

static int aio_flush_f(BlockBackend *blk, int argc, char **argv)
{
    io_aio_drain();
    blk_drain(blk);
    return 0;
}

const IoCmd io_aio_cmds[] = {
    { "aio_read", NULL, aio_read_f, 2, -1, 0, 0,
      "[-Ciqrv] [-P pattern] off len [len..]",
      "asynchronously reads a number of bytes", aio_read_help },
    { "aio_write", NULL, aio_write_f, 2, -1, 0, BLK_PERM_WRITE,
      "[-Cfiqruz] [-P pattern] off len [len..]",
      "asynchronously writes a number of bytes", aio_write_help },
    { "aio_flush", NULL, aio_flush_f, 0, 0, 0, 0, NULL,
      "completes all outstanding aio requests", NULL },
    { NULL },
};
