#include "config.h"
/*
 * strata-io: synchronous data commands: read, readv, write, writev.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "tools/io/io.h"

typedef struct ReadOpts {
    bool cflag, qflag, vflag, bflag, pflag, lflag, sflag, rflag;
    int pattern;
    int64_t pattern_offset, pattern_count;
} ReadOpts;

typedef struct WriteOpts {
    bool cflag, qflag, bflag, pflag, sflag, zflag, rflag, compressed;
    int pattern;
    int flags;
    const char *file_name;
} WriteOpts;

typedef struct VecOpts {
    bool cflag, qflag, vflag, pflag;
    int pattern;
    int flags;
} VecOpts;

static const IoCmd *io_rw_cmd(const char *name)
{
    return io_find_command(name);
}

static int io_usage(const char *name)
{
    io_command_usage(io_rw_cmd(name));
    return -EINVAL;
}

static int io_check_sector_aligned(int64_t offset, int64_t count)
{
    if (offset % BDRV_SECTOR_SIZE) {
        printf("%" PRId64 " is not a sector-aligned value for 'offset'\n",
               offset);
        return -EINVAL;
    }
    if (count % BDRV_SECTOR_SIZE) {
        printf("%" PRId64 " is not a sector-aligned value for 'count'\n",
               count);
        return -EINVAL;
    }
    return 0;
}

/* readv and writev take the same options but for one letter each (which
 * @optstring admits), so one parser serves both. */
static int vec_parse_opts(int argc, char **argv, const char *name,
                          const char *optstring, VecOpts *o)
{
    int c;

    while ((c = getopt(argc, argv, optstring)) != -1) {
        switch (c) {
        case 'C': o->cflag = true; break;
        case 'f': o->flags |= BDRV_REQ_FUA; break;
        case 'q': o->qflag = true; break;
        case 'r': break;
        case 'v': o->vflag = true; break;
        case 'P':
            o->pflag = true;
            o->pattern = io_parse_pattern(optarg);
            if (o->pattern < 0) {
                return -EINVAL;
            }
            break;
        default:
            return io_usage(name);
        }
    }
    if (optind > argc - 2) {
        return io_usage(name);
    }
    return 0;
}

/* ---- read ---- */

static void read_help(void)
{
    printf(
"\n"
" reads a range of bytes from the given offset\n"
"\n"
" Example:\n"
" 'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file\n"
"\n"
" Reads a segment of the currently open file, optionally dumping it to the\n"
" standard output stream (with -v option) for subsequent inspection.\n"
" -b, -- read from the VM state rather than the virtual disk\n"
" -C, -- report statistics in a machine parsable format\n"
" -l, -- length for pattern verification (only with -P)\n"
" -p, -- ignored for backwards compatibility\n"
" -P, -- use a pattern to verify read data\n"
" -q, -- quiet mode, do not show I/O statistics\n"
" -r, -- register I/O buffer\n"
" -s, -- start offset for pattern verification (only with -P)\n"
" -v, -- dump buffer to standard output\n"
"\n");
}

static int read_parse_opt(int c, ReadOpts *o)
{
    switch (c) {
    case 'b': o->bflag = true; return 0;
    case 'C': o->cflag = true; return 0;
    case 'p': return 0;
    case 'r': o->rflag = true; return 0;
    case 'q': o->qflag = true; return 0;
    case 'v': o->vflag = true; return 0;
    case 'l':
        o->lflag = true;
        o->pattern_count = io_num_arg(optarg);
        return o->pattern_count < 0 ? (int)o->pattern_count : 0;
    case 's':
        o->sflag = true;
        o->pattern_offset = io_num_arg(optarg);
        return o->pattern_offset < 0 ? (int)o->pattern_offset : 0;
    case 'P':
        o->pflag = true;
        o->pattern = io_parse_pattern(optarg);
        return o->pattern < 0 ? -EINVAL : 0;
    default:
        return io_usage("read");
    }
}

static int read_check_pattern_range(ReadOpts *o, int64_t count)
{
    if (!o->pflag && (o->lflag || o->sflag)) {
        return io_usage("read");
    }
    if (!o->lflag) {
        o->pattern_count = count - o->pattern_offset;
    }
    if (o->pattern_count < 0 ||
        o->pattern_count + o->pattern_offset > count) {
        printf("pattern verification range exceeds end of read data\n");
        return -EINVAL;
    }
    return 0;
}

static int64_t io_parse_length(const char *arg, bool no_fallback_hint)
{
    int64_t count = io_num_arg(arg);

    if (count >= 0 && count > BDRV_REQUEST_MAX_BYTES) {
        printf("length cannot exceed %" PRIu64 "%s, given %s\n",
               (uint64_t)BDRV_REQUEST_MAX_BYTES,
               no_fallback_hint ? " without -n" : "", arg);
        return -EINVAL;
    }
    return count;
}

static int read_finish(ReadOpts *o, uint8_t *buf, int64_t offset,
                       int64_t count, struct timespec t)
{
    int ret = 0;

    if (o->pflag &&
        !io_check_pattern(buf + o->pattern_offset, o->pattern,
                          o->pattern_count)) {
        printf("Pattern verification failed at offset %" PRId64 ", %"
               PRId64 " bytes\n", offset + o->pattern_offset,
               o->pattern_count);
        ret = -EINVAL;
    }
    if (o->qflag) {
        return ret;
    }
    if (o->vflag) {
        io_dump_buffer(buf, offset, count);
    }
    io_print_report("read", &t, offset, count, count, 1, o->cflag);
    return ret;
}

static int read_f(BlockBackend *blk, int argc, char **argv)
{
    ReadOpts o = { 0 };
    int64_t offset, count;
    struct timespec t1, t2;
    uint8_t *buf;
    int c, ret;

    while ((c = getopt(argc, argv, "bCl:pP:qrs:v")) != -1) {
        ret = read_parse_opt(c, &o);
        if (ret < 0) {
            return ret;
        }
    }
    if (optind != argc - 2) {
        return io_usage("read");
    }
    offset = io_num_arg(argv[optind]);
    if (offset < 0) {
        return offset;
    }
    count = io_parse_length(argv[optind + 1], false);
    if (count < 0) {
        return count;
    }
    ret = read_check_pattern_range(&o, count);
    if (ret < 0) {
        return ret;
    }
    if (o.bflag && io_check_sector_aligned(offset, count) < 0) {
        return -EINVAL;
    }
    /* The reference refuses before reading, even for zero bytes. */
    if (o.bflag && o.rflag) {
        printf("I/O buffer registration is not supported when reading "
               "from vmstate\n");
        return -EINVAL;
    }

    buf = io_alloc(count, 0xab);
    t1 = io_now();
    ret = o.bflag ? bdrv_load_vmstate(blk_bs(blk), buf, offset, count)
                  : blk_pread(blk, offset, count, buf, 0);
    t2 = io_now();
    if (ret < 0) {
        printf("read failed: %s\n", strerror(-ret));
    } else {
        ret = read_finish(&o, buf, offset, count, io_tsub(t2, t1));
    }
    io_free(buf);
    return ret;
}

/* ---- readv ---- */

static void readv_help(void)
{
    printf(
"\n"
" reads a range of bytes from the given offset into multiple buffers\n"
"\n"
" Example:\n"
" 'readv -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file\n"
"\n"
" Reads a segment of the currently open file, optionally dumping it to the\n"
" standard output stream (with -v option) for subsequent inspection.\n"
" Uses multiple iovec buffers if more than one byte range is specified.\n"
" -C, -- report statistics in a machine parsable format\n"
" -P, -- use a pattern to verify read data\n"
" -q, -- quiet mode, do not show I/O statistics\n"
" -r, -- register I/O buffer\n"
" -v, -- dump buffer to standard output\n"
"\n");
}

static int readv_f(BlockBackend *blk, int argc, char **argv)
{
    VecOpts v = { 0 };
    IOVector qiov;
    struct timespec t1, t2;
    int64_t offset;
    void *buf;
    int ret = vec_parse_opts(argc, argv, "readv", "CP:qrv", &v);

    if (ret == 0) {
        ret = io_parse_iovec_args(argc, argv, 0xab, &offset, &qiov, &buf);
    }
    if (ret < 0) {
        return ret;
    }
    t1 = io_now();
    ret = blk_preadv(blk, offset, qiov.size, &qiov, 0);
    t2 = io_now();
    if (ret < 0) {
        printf("readv failed: %s\n", strerror(-ret));
    } else {
        ReadOpts o = { .cflag = v.cflag, .qflag = v.qflag, .vflag = v.vflag,
                       .pflag = v.pflag, .pattern = v.pattern,
                       .pattern_count = qiov.size };
        ret = read_finish(&o, buf, offset, qiov.size, io_tsub(t2, t1));
    }
    iov_vec_destroy(&qiov);
    io_free(buf);
    return ret;
}

/* ---- write ---- */

static void write_help(void)
{
    printf(
"\n"
" writes a range of bytes from the given offset\n"
"\n"
" Example:\n"
" 'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file\n"
"\n"
" Writes into a segment of the currently open file, using a buffer\n"
" filled with a set pattern (0xcdcdcdcd).\n"
" -b, -- write to the VM state rather than the virtual disk\n"
" -c, -- write compressed data with blk_write_compressed\n"
" -C, -- report statistics in a machine parsable format\n"
" -f, -- use Force Unit Access semantics\n"
" -n, -- with -z, don't allow slow fallback\n"
" -p, -- ignored for backwards compatibility\n"
" -P, -- use different pattern to fill file\n"
" -q, -- quiet mode, do not show I/O statistics\n"
" -r, -- register I/O buffer\n"
" -s, -- use a pattern file to fill the write buffer\n"
" -u, -- with -z, allow unmapping\n"
" -z, -- write zeroes using blk_pwrite_zeroes\n"
"\n");
}

static int write_parse_opt(int c, WriteOpts *o)
{
    switch (c) {
    case 'b': o->bflag = true; return 0;
    case 'c': o->compressed = true; return 0;
    case 'C': o->cflag = true; return 0;
    case 'f': o->flags |= BDRV_REQ_FUA; return 0;
    case 'n': o->flags |= BDRV_REQ_NO_FALLBACK; return 0;
    case 'p': return 0;
    case 'r': o->rflag = true; return 0;
    case 'q': o->qflag = true; return 0;
    case 's': o->sflag = true; o->file_name = optarg; return 0;
    case 'u': o->flags |= BDRV_REQ_MAY_UNMAP; return 0;
    case 'z': o->zflag = true; return 0;
    case 'P':
        o->pflag = true;
        o->pattern = io_parse_pattern(optarg);
        return o->pattern < 0 ? -EINVAL : 0;
    default:
        return io_usage("write");
    }
}

static int write_check_flags(WriteOpts *o)
{
    const char *msg = NULL;

    if (o->bflag && o->zflag) {
        msg = "-b and -z cannot be specified at the same time";
    } else if ((o->flags & BDRV_REQ_FUA) && (o->bflag || o->compressed)) {
        msg = "-f and -b or -c cannot be specified at the same time";
    } else if ((o->flags & BDRV_REQ_NO_FALLBACK) && !o->zflag) {
        msg = "-n requires -z to be specified";
    } else if ((o->flags & BDRV_REQ_MAY_UNMAP) && !o->zflag) {
        msg = "-u requires -z to be specified";
    } else if (o->zflag + o->pflag + o->sflag > 1) {
        msg = "Only one of -z, -P, and -s can be specified at the same time";
    }
    if (msg) {
        printf("%s\n", msg);
        return -EINVAL;
    }
    return 0;
}

/* -n lifts the request size limit that io_parse_length() enforces. */
static int64_t write_parse_count(WriteOpts *o, const char *arg)
{
    if (o->flags & BDRV_REQ_NO_FALLBACK) {
        return io_num_arg(arg);
    }
    return io_parse_length(arg, true);
}

static int write_do(BlockBackend *blk, WriteOpts *o, void *buf,
                    int64_t offset, int64_t count)
{
    if (o->bflag) {
        return blk_save_vmstate(blk, buf, offset, count);
    }
    if (o->zflag) {
        return blk_pwrite_zeroes(blk, offset, count, o->flags);
    }
    if (o->compressed) {
        return blk_pwrite(blk, offset, count, buf,
                          o->flags | BDRV_REQ_WRITE_COMPRESSED);
    }
    return blk_pwrite(blk, offset, count, buf, o->flags);
}

static int write_parse_opts(int argc, char **argv, WriteOpts *o)
{
    int c, ret;

    o->pattern = 0xcd;
    while ((c = getopt(argc, argv, "bcCfnpP:qrs:uz")) != -1) {
        ret = write_parse_opt(c, o);
        if (ret < 0) {
            return ret;
        }
    }
    if (optind != argc - 2) {
        return io_usage("write");
    }
    return write_check_flags(o);
}

static int write_f(BlockBackend *blk, int argc, char **argv)
{
    WriteOpts o = { 0 };
    int64_t offset, count;
    struct timespec t1, t2;
    void *buf = NULL;
    int ret = write_parse_opts(argc, argv, &o);

    if (ret < 0) {
        return ret;
    }
    offset = io_num_arg(argv[optind]);
    if (offset < 0) {
        return offset;
    }
    count = write_parse_count(&o, argv[optind + 1]);
    if (count < 0) {
        return count;
    }
    if ((o.bflag || o.compressed) &&
        io_check_sector_aligned(offset, count) < 0) {
        return -EINVAL;
    }
    /* A zero write has no buffer to register; checked once the numbers
     * are known, as the reference does. */
    if (o.zflag && o.rflag) {
        printf("cannot combine zero write with registered I/O buffer\n");
        return -EINVAL;
    }
    if (o.sflag) {
        buf = io_alloc_from_file(count, o.file_name);
        if (!buf) {
            return -EINVAL;
        }
    } else if (!o.zflag) {
        buf = io_alloc(count, o.pattern);
    }

    t1 = io_now();
    ret = write_do(blk, &o, buf, offset, count);
    t2 = io_now();
    io_free(buf);
    if (ret < 0) {
        printf("write failed: %s\n", strerror(-ret));
        return ret;
    }
    if (!o.qflag) {
        t2 = io_tsub(t2, t1);
        io_print_report("wrote", &t2, offset, count, count, 1, o.cflag);
    }
    return 0;
}

/* ---- writev ---- */

static void writev_help(void)
{
    printf(
"\n"
" writes a range of bytes from the given offset source from multiple buffers\n"
"\n"
" Example:\n"
" 'writev 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file\n"
"\n"
" Writes into a segment of the currently open file, using a buffer\n"
" filled with a set pattern (0xcdcdcdcd).\n"
" -C, -- report statistics in a machine parsable format\n"
" -f, -- use Force Unit Access semantics\n"
" -P, -- use different pattern to fill file\n"
" -q, -- quiet mode, do not show I/O statistics\n"
" -r, -- register I/O buffer\n"
"\n");
}

static int writev_f(BlockBackend *blk, int argc, char **argv)
{
    VecOpts v = { .pattern = 0xcd };
    IOVector qiov;
    struct timespec t1, t2;
    int64_t offset;
    void *buf;
    int ret = vec_parse_opts(argc, argv, "writev", "CfqrP:", &v);

    if (ret == 0) {
        ret = io_parse_iovec_args(argc, argv, v.pattern, &offset, &qiov,
                                  &buf);
    }
    if (ret < 0) {
        return ret;
    }
    t1 = io_now();
    ret = blk_pwritev(blk, offset, qiov.size, &qiov, v.flags);
    t2 = io_now();
    if (ret < 0) {
        printf("writev failed: %s\n", strerror(-ret));
    } else if (!v.qflag) {
        t2 = io_tsub(t2, t1);
        io_print_report("wrote", &t2, offset, qiov.size, qiov.size, 1,
                        v.cflag);
    }
    iov_vec_destroy(&qiov);
    io_free(buf);
    return ret < 0 ? ret : 0;
}

const IoCmd io_rw_cmds[] = {
    { "read", "r", read_f, 2, -1, 0, 0,
      "[-abCqrv] [-P pattern [-s off] [-l len]] off len",
      "reads a number of bytes at a specified offset", read_help },
    { "readv", NULL, readv_f, 2, -1, 0, 0,
      "[-Cqrv] [-P pattern] off len [len..]",
      "reads a number of bytes at a specified offset", readv_help },
    { "write", "w", write_f, 2, -1, 0, BLK_PERM_WRITE,
      "[-bcCfnqruz] [-P pattern | -s source_file] off len",
      "writes a number of bytes at a specified offset", write_help },
    { "writev", NULL, writev_f, 2, -1, 0, BLK_PERM_WRITE,
      "[-Cfqr] [-P pattern] off len [len..]",
      "writes a number of bytes at a specified offset", writev_help },
    { NULL },
};
