#include "config.h"
/*
 * strata-io: open, close, reopen, quit.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "block/block.h"
#include "tools/io/io.h"
#include "util/aio.h"

typedef struct OpenOpts {
    int flags;
    bool readonly, writethrough, force_share;
    QDict *opts;
} OpenOpts;

/* Merge one "-o" string into *opts; false on error (reported). */
static bool open_merge_opts(QDict **opts, const char *str)
{
    if (!*opts) {
        *opts = qdict_new();
    }
    return tool_opts_parse_into(*opts, str);
}

static void open_help(void)
{
    printf(
"\n"
" opens a new file in the requested mode\n"
"\n"
" Example:\n"
" 'open -n -o driver=raw /tmp/data' - opens raw data file read-write, uncached\n"
"\n"
" Opens a file for subsequent use by all of the other qemu-io commands.\n"
" -r, -- open file read-only\n"
" -s, -- use snapshot file\n"
" -C, -- use copy-on-read\n"
" -n, -- disable host cache, short for -t none\n"
" -U, -- force shared permissions\n"
" -k, -- use kernel AIO implementation (Linux only, prefer use of -i)\n"
" -i, -- use AIO mode (threads, native or io_uring)\n"
" -t, -- use the given cache mode for the image\n"
" -d, -- use the given discard mode for the image\n"
" -o, -- options to be given to the block driver"
"\n");
}

static int open_opt_mode(int c, const char *arg, OpenOpts *o)
{
    AioEngineType engine;

    switch (c) {
    case 't':
        o->flags &= ~(BDRV_O_NOCACHE | BDRV_O_NO_FLUSH);
        if (bdrv_parse_cache_mode(arg, &o->flags, &o->writethrough) < 0) {
            error_report("Invalid cache option: %s", arg);
            return -EINVAL;
        }
        return 0;
    case 'd':
        if (bdrv_parse_discard_flags(arg, &o->flags) < 0) {
            error_report("Invalid discard option: %s", arg);
            return -EINVAL;
        }
        return 0;
    default: /* 'i' */
        if (!aio_engine_parse(arg, &engine)) {
            error_report("Invalid aio option: %s", arg);
            return -EINVAL;
        }
        o->flags = io_aio_flags(o->flags, engine);
        return 0;
    }
}

static int open_opt(int c, const char *arg, OpenOpts *o)
{
    switch (c) {
    case 's': o->flags |= BDRV_O_SNAPSHOT; return 0;
    case 'n': o->flags |= BDRV_O_NOCACHE; o->writethrough = false; return 0;
    case 'C': o->flags |= BDRV_O_COPY_ON_READ; return 0;
    case 'r': o->readonly = true; return 0;
    case 'U': o->force_share = true; return 0;
    case 'k': o->flags = io_aio_flags(o->flags, AIO_ENGINE_NATIVE); return 0;
    case 'o':
        if (io_image_opts) {
            printf("--image-opts and 'open -o' are mutually exclusive\n");
            return -EINVAL;
        }
        return open_merge_opts(&o->opts, arg) ? 0 : -EINVAL;
    case 't': case 'd': case 'i': return open_opt_mode(c, arg, o);
    default:
        io_command_usage(io_find_command("open"));
        return -EINVAL;
    }
}

static int open_f(BlockBackend *blk, int argc, char **argv)
{
    OpenOpts o = { .flags = BDRV_O_UNMAP, .writethrough = true };
    const char *name = NULL;
    int c, ret;

    while ((c = getopt(argc, argv, "snCro:ki:t:d:U")) != -1) {
        ret = open_opt(c, optarg, &o);
        if (ret < 0) {
            qobject_unref(o.opts);
            return ret;
        }
    }
    if (!o.readonly) {
        o.flags |= BDRV_O_RDWR;
    }
    if (io_image_opts && optind == argc - 1) {
        if (!open_merge_opts(&o.opts, argv[optind++])) {
            qobject_unref(o.opts);
            return -EINVAL;
        }
    }
    if (optind == argc - 1) {
        name = argv[optind];
    } else if (optind != argc) {
        qobject_unref(o.opts);
        io_command_usage(io_find_command("open"));
        return -EINVAL;
    }
    ret = io_open_image(name, o.flags, o.writethrough, o.force_share, o.opts);
    return ret ? -EINVAL : 0;
}

static int close_f(BlockBackend *blk, int argc, char **argv)
{
    io_aio_drain();
    blk_unref(io_blk);
    io_blk = NULL;
    return 0;
}

static int quit_f(BlockBackend *blk, int argc, char **argv)
{
    io_quit = true;
    return 0;
}

const IoCmd io_open_cmds[] = {
    { "open", "o", open_f, 1, -1, CMD_NOFILE_OK, 0,
      "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
      "open the file specified by path", open_help },
    { "close", "c", close_f, 0, 0, 0, 0, NULL,
      "close the current open file", NULL },
    { "quit", "q", quit_f, 0, -1, CMD_NOFILE_OK, 0, NULL,
      "exit the program", NULL },
    { NULL },
};
