/*
 * strata-io internals shared by the command files.
 */
#ifndef STRATA_TOOLS_IO_H
#define STRATA_TOOLS_IO_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "block/block.h"
#include "qobject/qobject.h"
#include "util/error.h"
#include "tools/common/common.h"

/* Command flags */
enum {
    CMD_NOFILE_OK = 0x01,   /* runs without an open image */
};

typedef int IoCmdFunc(BlockBackend *blk, int argc, char **argv);
typedef void IoHelpFunc(void);

typedef struct IoCmd {
    const char *name;
    const char *altname;
    IoCmdFunc *func;
    int argmin;
    int argmax;             /* -1: unlimited */
    int flags;
    uint64_t perm;          /* extra permissions the command needs */
    const char *args;       /* NULL: none shown */
    const char *oneline;
    IoHelpFunc *help;
} IoCmd;

/* ---- global state (main.c) ---- */
extern BlockBackend *io_blk;
extern bool io_quit;
extern bool io_misalign;

/* Open an image as the current one; prints errors; 0 or 1. */
int io_open_image(const char *name, int flags, bool writethrough,
                  bool force_share, QDict *opts);
/* Add the AIO engine option for @engine ("native", "io_uring", ...). */
int io_aio_flags(int flags, AioEngineType engine);

extern bool io_image_opts;   /* --image-opts: open's path is an option string */

/* ---- dispatcher (commands.c) ---- */
const IoCmd *io_find_command(const char *name);
/* Runs one command line; <0 on failure. */
int io_run_command_line(const char *line);
void io_command_usage(const IoCmd *ct);
void io_help_all(void);
void io_help_one(const char *typed, const IoCmd *ct);

/* Command tables, one per file. */
extern const IoCmd io_rw_cmds[];
extern const IoCmd io_aio_cmds[];
extern const IoCmd io_misc_cmds[];
extern const IoCmd io_info_cmds[];
extern const IoCmd io_zone_cmds[];
extern const IoCmd io_open_cmds[];
extern const IoCmd io_reopen_cmds[];
extern const IoCmd io_debug_cmds[];

/* ---- reporting helpers (report.c) ---- */
/* qemu-io's number parser: size suffixes; -EINVAL / -ERANGE on error. */
int64_t io_cvtnum(const char *s);
void io_print_cvtnum_err(int64_t rc, const char *arg);
/* io_cvtnum() that prints the error; <0 on failure. */
int64_t io_num_arg(const char *arg);
/* Pattern byte 0..255 or -1 (message printed). */
int io_parse_pattern(const char *arg);
/* "64 KiB", "1.500 KiB", "1000 bytes" into @buf. */
void io_cvtstr(double value, char *buf, size_t size);
void io_dump_buffer(const void *buf, int64_t offset, int64_t len);
struct timespec io_tsub(struct timespec t2, struct timespec t1);
struct timespec io_now(void);
void io_print_report(const char *op, struct timespec *t, int64_t offset,
                     int64_t count, int64_t total, int cnt, bool cflag);
/* Buffer of @len bytes filled with @pattern (misaligned with -m). */
void *io_alloc(size_t len, int pattern);
void io_free(void *buf);
/* Buffer filled with the contents of @file_name, repeated; NULL on error. */
void *io_alloc_from_file(size_t len, const char *file_name);
/* Build an I/O vector from size arguments; NULL on error (printed). */
void *io_create_iovec(IOVector *qiov, char **argv, int nr_iov, int pattern);
/* "off len [len..]" from argv[optind] on: *@offset, and @qiov over the
 * new buffer *@buf filled with @pattern.  0 or -errno (printed). */
int io_parse_iovec_args(int argc, char **argv, int pattern, int64_t *offset,
                        IOVector *qiov, void **buf);
bool io_check_pattern(const void *buf, int pattern, size_t len);

/* Wait for every aio_read/aio_write in flight (cmd-aio.c). */
void io_aio_drain(void);

/* getopt reset between commands */
void io_reset_getopt(void);

/* "Format specific information" dump (cmd-misc.c) */
void io_dump_qobject(int indent, QObject *obj);

#endif
