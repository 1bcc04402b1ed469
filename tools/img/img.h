/*
 * strata-img: a drop-in for qemu-img 10.0.  One file per command
 * (tools/img/<command>.c, entry point img_<command>), shared helpers in
 * common.c, the dispatcher and global options in main.c.
 *
 * Conventions for command entry points:
 *  - called with argc/argv where argv[0] is the command name; parse with
 *    getopt_long (GNU permutation: options may follow operands; reset
 *    with optind = 0 is done by the dispatcher);
 *  - return the process exit status (0/1, or the command's own codes:
 *    check 0..3/63, compare 0..4);
 *  - errors go through error_report() ("qemu-img: msg"); usage errors
 *    through img_usage_error() (adds "Try '<argv0> CMD --help' for more
 *    info");
 *  - "--help"/"-h" prints the command's help (img_cmd_help()) and
 *    returns 0.
 * Program name: whatever argv[0] of the process was (basename), so a
 * symlink named qemu-img makes every message say qemu-img.
 */
#ifndef STRATA_TOOLS_IMG_H
#define STRATA_TOOLS_IMG_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include "block/block.h"
#include "qobject/qobject.h"
#include "tools/common/common.h"
#include "util/error.h"

typedef int ImgCmdFunc(int argc, char **argv);

typedef struct ImgCmd {
    const char *name;
    ImgCmdFunc *func;
    const char *summary;      /* "Create and format new image file" */
} ImgCmd;

/* The 15 commands, sorted by name (main.c). */
extern const ImgCmd img_cmds[];

int img_amend(int argc, char **argv);
int img_bench(int argc, char **argv);
int img_bitmap(int argc, char **argv);
int img_check(int argc, char **argv);
int img_commit(int argc, char **argv);
int img_compare(int argc, char **argv);
int img_convert(int argc, char **argv);
int img_create(int argc, char **argv);
int img_dd(int argc, char **argv);
int img_info(int argc, char **argv);
int img_map(int argc, char **argv);
int img_measure(int argc, char **argv);
int img_rebase(int argc, char **argv);
int img_resize(int argc, char **argv);
int img_snapshot(int argc, char **argv);

/* ---- messages (common.c) ---- */
/* argv[0] as invoked (the usage hint repeats it in full). */
void img_set_argv0(const char *argv0);
const char *img_argv0(void);
/* "<prog>: msg" then "Try '<argv0> [@cmd ]--help' for more info" (the
 * reference's exact hint); @cmd may be NULL; returns 1 (exit status). */
int img_usage_error(const char *cmd, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Per-command help: "Usage: ..." layout of qemu-img 10.0 (help.c). */
void img_cmd_help(const char *cmd);

/* ---- common options (common.c) ---- */
/* Long options every command shares; terminate your own table with
 * these appended via IMG_COMMON_LONGOPTS. */
enum {
    OPTION_OBJECT = 256, OPTION_IMAGE_OPTS, OPTION_TARGET_IMAGE_OPTS,
    OPTION_OUTPUT, OPTION_BACKING_CHAIN, OPTION_SIZE, OPTION_SALVAGE,
    OPTION_TARGET_IS_ZERO, OPTION_BITMAPS, OPTION_SKIP_BROKEN,
    OPTION_FLUSH_INTERVAL, OPTION_NO_DRAIN, OPTION_PATTERN,
    OPTION_START_OFFSET, OPTION_MAX_LENGTH, OPTION_SHRINK,
    OPTION_PREALLOCATION, OPTION_FORCE, OPTION_ADD, OPTION_REMOVE,
    OPTION_CLEAR, OPTION_ENABLE, OPTION_DISABLE, OPTION_MERGE,
    OPTION_LIMITS,
};

/* --output=human|json */
typedef enum { OFORMAT_HUMAN, OFORMAT_JSON } OutputFormat;
/* false + usage error printed for anything else ("--output expects
 * 'human' or 'json' not 'xml'"). */
bool img_parse_output(const char *cmd, const char *arg, OutputFormat *out);
/* -l of convert and measure: "snapshot.id=...,snapshot.name=..." is an
 * option list whose keys are checked when the option is parsed; anything
 * else is a snapshot name.  False (reported) for an unknown key. */
bool img_check_snapshot_param(const char *arg);
/* Load snapshot @snapshot (NULL: none; an option list or an ID or name)
 * of @blk's read-only image for reading instead of its current state;
 * false (reported as the reference does) when it cannot. */
bool img_load_snapshot(BlockBackend *blk, const char *snapshot);

/* --object: returns false (error printed) on failure. */
bool img_object_add(const char *def);

/* -o accumulation: "a=b" then "c=d" -> "a=b,c=d" (g_free the result). */
char *img_opts_accumulate(char *acc, const char *arg);
/* Does an -o string ask for help ("help" or "?" element)? */
bool img_opts_is_help(const char *opts);
/* "Supported options:" list for @fmt's create options (-o help);
 * returns the exit status. */
/* The driver of format @fmt if it can create images; else NULL, reported
 * ("Unknown file format", "does not support image creation"). */
const BlockDriver *img_creating_format(const char *fmt);
int img_print_create_opts_help(const char *fmt);

/* -t / -T cache modes: "none", "writeback", ... -> flags/writethrough.
 * false + "Invalid cache option: %s" on error. */
bool img_parse_cache(const char *mode, int *flags, bool *writethrough);

/*
 * Open an image as qemu-img does.
 *  @image_opts: @name is an option string (--image-opts), else a filename;
 *  @fmt: -f value or NULL (probe; raw guess warns);
 *  @flags: BDRV_O_*; @writethrough: backend write cache off;
 *  @quiet: suppress the probing warning? (qemu-img never does: false);
 *  @force_share: -U.
 * Errors are printed as "<prog>: Could not open 'x': ..." and NULL
 * returned.
 */
BlockBackend *img_open(bool image_opts, const char *name, const char *fmt,
                       int flags, bool writethrough, bool quiet,
                       bool force_share);

/* Sizes on the command line, with qemu-img's messages; false if bad
 * (message printed: "Invalid image size specified. ..."). */
bool img_parse_image_size(const char *arg, int64_t *out);

/* Print a QObject as qemu-img --output=json does, followed by "\n". */
void img_print_json(const QObject *obj);

/* Human sizes as info prints them ("1 GiB"). */
char *img_size_str(uint64_t bytes);

/* ---- appended helpers (common.c) ---- */
/* getopt reports errors as "<argv0> <cmd>: ..." like the reference: point
 * argv[0] at that name before parsing a command's options. */
void img_getopt_argv0(char **argv, const char *cmd);
/* A non-negative number with optional suffix; false + "Invalid @what
 * specified..." (the reference's cvtnum messages) if bad. */
bool img_cvtnum(const char *what, const char *arg, int64_t *out);
/* An -o argument qemu-img accepts (not empty, no leading ',', no odd
 * trailing ','); false + "Invalid option list: x" otherwise. */
bool img_opts_list_valid(const char *arg);

/* A size with optional suffix within [@min, @max]; false + the reference's
 * "Invalid @what specified: 'x'." / "... Must be between MIN and MAX."
 * (cvtnum_full) if bad. */
bool img_cvtnum_full(const char *what, const char *arg, int64_t min,
                     int64_t max, int64_t *out);
/* The same for a plain integer (decimal, 0x hex, no suffix). */
bool img_strtonum_full(const char *what, const char *arg, int64_t min,
                       int64_t max, int64_t *out);

/* After getopt printed its own message (it returned '?' or ':'): the
 * reference's "Try '<argv0> CMD --help' for more info"; returns 1. */
int img_getopt_fail(const char *cmd);
/* img_open() preceded by the reference's "--image-opts and --format are
 * mutually exclusive" check. */
BlockBackend *img_open_checked(bool image_opts, const char *name,
                               const char *fmt, int flags, bool writethrough,
                               bool quiet, bool force_share);
/* The guest bytes one L2 table of a qcow2 node maps (the most the
 * reference's qcow2 answers one block-status query with), or 0 for a
 * node of another format. */
int64_t img_qcow2_table_span(BlockDriverState *bs);
/* Cut *pnum (an extent at @off from a block-status walk down @top's
 * chain, stopping above @base) where the reference's walk ends it: at the
 * end of the L2 table mapping @off in each qcow2 layer the walk asked,
 * the first @depth layers (depth <= 0: every layer down to @base or to
 * the first one shorter than @off). */
void img_cut_at_tables(BlockDriverState *top, BlockDriverState *base,
                       int depth, int64_t off, int64_t *pnum);

/* -p progress as qemu-img prints it: "    (12.50/100%)\r", and the final
 * newline; both do nothing unless @enabled. */
void img_progress_print(bool enabled, double percent);
void img_progress_end(bool enabled);

/* ---- appended: option-loop scaffolding (common.c) ---- */
/* -f, -q, -U, --image-opts: the options most commands share. */
typedef struct ImgCommonOpts {
    const char *fmt;
    bool image_opts;
    bool force_share;
    bool quiet;
} ImgCommonOpts;

/* The common cases of an option loop: -h/--help (prints @cmd's help,
 * returns 0), -f, -q, -U, --image-opts (recorded in @o), --object, and
 * anything else as a getopt failure (img_getopt_fail()).  Call it from a
 * command's default branch; returns -1 to go on, else the exit status. */
int img_common_option(int c, const char *cmd, ImgCommonOpts *o);

/* One option of a command; returns -1 to go on, else the exit status. */
typedef int ImgOptionFunc(int c, void *opaque);
/* img_getopt_argv0() then getopt_long() over all options, calling @fn for
 * each; returns the first status @fn returns (>= 0), else -1. */
int img_getopt_loop(int argc, char **argv, const char *cmd,
                    const char *shortopts, const struct option *longopts,
                    ImgOptionFunc *fn, void *opaque);
/* Exactly one operand left after the options?  If not, the usage error
 * "Expecting one image file name" is printed and false returned. */
bool img_expect_one_file(const char *cmd, int argc);
/* -o: img_opts_list_valid(), then accumulated into *@acc. */
bool img_opts_add(char **acc, const char *arg);
/* img_open_checked() with the common options' -f, --image-opts, -q, -U. */
BlockBackend *img_open_common(const ImgCommonOpts *o, const char *name,
                              int flags, bool writethrough);

#endif
