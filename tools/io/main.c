#include "config.h"
/*
 * strata-io: a qemu-io compatible disk exerciser.  Options, opening the
 * image and the command loop (-c commands, or stdin with a prompt).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "block/block.h"
#include "tools/io/io.h"
#include "util/aio.h"


BlockBackend *io_blk;
bool io_quit;
bool io_misalign;
bool io_image_opts;

enum {
    OPTION_OBJECT = 256,
    OPTION_IMAGE_OPTS = 257,
};

typedef struct IoMainOpts {
    int flags;
    bool readonly, writethrough, force_share, image_opts;
    const char *format;
    GPtrArray *cmds;
} IoMainOpts;

static void usage(void)
{
    const char *prog = error_get_progname();

    printf(
"Usage: %s [OPTIONS]... [-c STRING]... [file]\n"
"QEMU Disk exerciser\n"
"\n"
"  --object OBJECTDEF   define an object such as 'secret' for\n"
"                       passwords and/or encryption keys\n"
"  --image-opts         treat file as option string\n"
"  -c, --cmd STRING     execute command with its arguments\n"
"                       from the given string\n"
"  -f, --format FMT     specifies the block driver to use\n"
"  -r, --read-only      export read-only\n"
"  -s, --snapshot       use snapshot file\n"
"  -n, --nocache        disable host cache, short for -t none\n"
"  -C, --copy-on-read   enable copy-on-read\n"
"  -m, --misalign       misalign allocations for O_DIRECT\n"
"  -k, --native-aio     use kernel AIO implementation\n"
"                       (Linux only, prefer use of -i)\n"
"  -i, --aio=MODE       use AIO mode (threads, native or io_uring)\n"
"  -t, --cache=MODE     use the given cache mode for the image\n"
"  -d, --discard=MODE   use the given discard mode for the image\n"
"  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]\n"
"                       specify tracing options\n"
"                       see qemu-img(1) man page for full description\n"
"  -U, --force-share    force shared permissions\n"
"  -h, --help           display this help and exit\n"
"  -V, --version        output version information and exit\n"
"\n"
"See '%s -c help' for information on available commands.\n"
"\n"
"See <https://qemu.org/contribute/report-a-bug> for how to report bugs.\n"
"More information on the QEMU project at <https://qemu.org>.\n",
           prog, prog);
}

static void version(void)
{
    const char *prog = error_get_progname();

    if (strstr(prog, "qemu")) {
        printf("%s version %s (strata %s)\n", prog,
               STRATA_QEMU_COMPAT_VERSION, STRATA_VERSION);
    } else {
        printf("%s version %s (compatible with qemu-io %s)\n", prog,
               STRATA_VERSION, STRATA_QEMU_COMPAT_VERSION);
    }
    printf("Copyright (c) 2025 The Strata authors\n");
}

/* -T: there are no trace events; warn for names that cannot match. */
static void trace_opt(const char *arg)
{
    char **parts = g_strsplit(arg, ",", -1);

    for (char **p = parts; *p; p++) {
        const char *pat = *p;

        if (g_str_has_prefix(pat, "events=") || g_str_has_prefix(pat, "file=")) {
            continue;
        }
        if (g_str_has_prefix(pat, "enable=")) {
            pat += strlen("enable=");
        }
        if (*pat && !strpbrk(pat, "*?")) {
            warn_report("trace event '%s' does not exist", pat);
        }
    }
    g_strfreev(parts);
}

/*
 * -k / -i ENGINE: open flags, as the reference's -i, not options: file
 * nodes below take them (with aio=native still needing cache.direct=on)
 * and every other node ignores them, so `--aio threads` works on
 * blkdebug, null-co and the rest.
 */
int io_aio_flags(int flags, AioEngineType engine)
{
    flags &= ~BDRV_O_AIO_MASK;
    return flags | (engine == AIO_ENGINE_NATIVE ? BDRV_O_AIO_NATIVE
                    : engine == AIO_ENGINE_IO_URING ? BDRV_O_AIO_IO_URING
                    : BDRV_O_AIO_THREADS);
}

static bool io_apply_force_share(QDict **opts)
{
    const char *fs;

    if (!*opts) {
        *opts = qdict_new();
    }
    fs = qdict_get_try_str(*opts, "force-share");
    if (fs && strcmp(fs, "on")) {
        error_report("-U conflicts with image options");
        return false;
    }
    qdict_put_str(*opts, "force-share", "on");
    return true;
}

int io_open_image(const char *name, int flags, bool writethrough,
                  bool force_share, QDict *opts)
{
    Error *err = NULL;

    if (io_blk) {
        error_report("file open already, try 'help close'");
        qobject_unref(opts);
        return 1;
    }
    if (force_share && !io_apply_force_share(&opts)) {
        qobject_unref(opts);
        return 1;
    }
    io_blk = blk_new_open(name, NULL, opts, flags, &err);
    if (!io_blk) {
        error_reportf_err(err, "can't open%s%s: ", name ? " device " : "",
                          name ? name : "");
        return 1;
    }
    blk_set_enable_write_cache(io_blk, !writethrough);
    return 0;
}

/* ---- option parsing ---- */

static void parse_mode_opt(int c, const char *arg, IoMainOpts *o)
{
    AioEngineType engine;

    if (c == 'd' && bdrv_parse_discard_flags(arg, &o->flags) < 0) {
        error_report("Invalid discard option: %s", arg);
        exit(1);
    }
    if (c == 't') {
        o->flags &= ~(BDRV_O_NOCACHE | BDRV_O_NO_FLUSH);
        if (bdrv_parse_cache_mode(arg, &o->flags, &o->writethrough) < 0) {
            error_report("Invalid cache option: %s", arg);
            exit(1);
        }
    }
    if (c == 'i') {
        if (!aio_engine_parse(arg, &engine)) {
            error_report("Invalid aio option: %s", arg);
            exit(1);
        }
        o->flags = io_aio_flags(o->flags, engine);
    }
}

static void parse_opt(int c, const char *arg, IoMainOpts *o)
{
    switch (c) {
    case 's': o->flags |= BDRV_O_SNAPSHOT; break;
    case 'n': o->flags |= BDRV_O_NOCACHE; o->writethrough = false; break;
    case 'C': o->flags |= BDRV_O_COPY_ON_READ; break;
    case 'f': o->format = arg; break;
    case 'c': g_ptr_array_add(o->cmds, (gpointer)arg); break;
    case 'r': o->readonly = true; break;
    case 'm': io_misalign = true; break;
    case 'k': o->flags = io_aio_flags(o->flags, AIO_ENGINE_NATIVE); break;
    case 'U': o->force_share = true; break;
    case 'T': trace_opt(arg); break;
    case 'd': case 't': case 'i': parse_mode_opt(c, arg, o); break;
    case 'V': version(); exit(0);
    case 'h': usage(); exit(0);
    case OPTION_IMAGE_OPTS: o->image_opts = io_image_opts = true; break;
    case OPTION_OBJECT:
        if (!tool_object_add(arg)) {
            exit(1);
        }
        break;
    default: usage(); exit(1);
    }
}

static void parse_args(int argc, char **argv, IoMainOpts *o)
{
    static const struct option lopt[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "cmd", required_argument, NULL, 'c' },
        { "format", required_argument, NULL, 'f' },
        { "read-only", no_argument, NULL, 'r' },
        { "snapshot", no_argument, NULL, 's' },
        { "nocache", no_argument, NULL, 'n' },
        { "copy-on-read", no_argument, NULL, 'C' },
        { "misalign", no_argument, NULL, 'm' },
        { "native-aio", no_argument, NULL, 'k' },
        { "aio", required_argument, NULL, 'i' },
        { "discard", required_argument, NULL, 'd' },
        { "cache", required_argument, NULL, 't' },
        { "trace", required_argument, NULL, 'T' },
        { "object", required_argument, NULL, OPTION_OBJECT },
        { "image-opts", no_argument, NULL, OPTION_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    while ((c = getopt_long(argc, argv, "hVc:d:f:rsnCmki:t:T:U", lopt,
                            NULL)) != -1) {
        parse_opt(c, optarg, o);
    }
    if (argc - optind > 1) {
        usage();
        exit(1);
    }
    if (o->format && o->image_opts) {
        error_report("--image-opts and -f are mutually exclusive");
        exit(1);
    }
}

static QDict *image_opts_parse(const char *str)
{
    QDict *opts = qdict_new();

    if (!tool_image_opts_parse(opts, str)) {
        exit(1);
    }
    return opts;
}

static void open_initial(const char *arg, IoMainOpts *o)
{
    QDict *opts = NULL;
    const char *name = arg;

    if (o->image_opts) {
        opts = image_opts_parse(arg);
        name = NULL;
    } else if (o->format) {
        opts = qdict_new();
        qdict_put_str(opts, "driver", o->format);
    }
    if (io_open_image(name, o->flags, o->writethrough, o->force_share, opts)) {
        exit(1);
    }
}

/* ---- command loop ---- */

typedef struct StdinReader {
    GString *buf;
    bool eof, readable;
    bool pollable;       /* pipe, socket or tty: wait in the event loop */
} StdinReader;

static void stdin_ready(void *opaque)
{
    StdinReader *r = opaque;
    char chunk[4096];
    ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));

    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return;
    }
    if (n <= 0) {
        r->eof = true;
    } else {
        g_string_append_len(r->buf, chunk, n);
    }
    r->readable = true;
}

static bool stdin_is_pollable(void)
{
    struct stat st;

    if (isatty(STDIN_FILENO)) {
        return true;
    }
    return fstat(STDIN_FILENO, &st) == 0 &&
           (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

static void stdin_wait(StdinReader *r)
{
    AioContext *ctx = aio_get_default();

    if (!r->pollable) {
        stdin_ready(r);
        return;
    }
    r->readable = false;
    aio_set_fd_handler(ctx, STDIN_FILENO, stdin_ready, NULL, r);
    AIO_WAIT_WHILE(ctx, !r->readable);
    aio_set_fd_handler(ctx, STDIN_FILENO, NULL, NULL, NULL);
}

/* qemu-io reads stdin with fgets() into a 1024-byte buffer. */
#define IO_LINE_MAX 1023

/* Take @n bytes off the front of the buffer, @skip more dropped. */
static char *stdin_take(StdinReader *r, size_t n, size_t skip)
{
    char *line = g_strndup(r->buf->str, n);

    g_string_erase(r->buf, 0, n + skip);
    return line;
}

/* Next line without its newline (at most IO_LINE_MAX bytes, the rest
 * comes as the following line), or NULL at end of input. */
static char *stdin_fetch_line(StdinReader *r)
{
    char *nl;

    while (!(nl = memchr(r->buf->str, '\n', MIN(r->buf->len, IO_LINE_MAX)))
           && r->buf->len < IO_LINE_MAX && !r->eof) {
        stdin_wait(r);
    }
    if (nl) {
        return stdin_take(r, nl - r->buf->str, 1);
    }
    if (r->buf->len) {
        return stdin_take(r, MIN(r->buf->len, IO_LINE_MAX), 0);
    }
    return NULL;
}

static int stdin_loop(void)
{
    StdinReader r = { .buf = g_string_new(NULL),
                      .pollable = stdin_is_pollable() };
    int ret, last_error = 0;
    char *line;

    while (!io_quit) {
        printf("%s> ", error_get_progname());
        fflush(stdout);
        /* the reference turns its main loop once per prompt */
        while (aio_poll(aio_get_default(), false)) {
        }
        line = stdin_fetch_line(&r);
        if (!line) {
            break;
        }
        ret = io_run_command_line(line);
        g_free(line);
        if (ret < 0) {
            last_error = ret;
        }
    }
    g_string_free(r.buf, true);
    return last_error;
}

static int command_loop(GPtrArray *cmds)
{
    int ret, last_error = 0;

    if (!cmds->len) {
        return stdin_loop();
    }
    for (guint i = 0; !io_quit && i < cmds->len; i++) {
        ret = io_run_command_line(g_ptr_array_index(cmds, i));
        if (ret < 0) {
            last_error = ret;
        }
    }
    return last_error;
}

/* qemu-io ignores SIGPIPE and blocks the main loop's signals. */
static void io_setup_signals(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGIO);
    sigaddset(&set, SIGALRM);
    sigaddset(&set, SIGBUS);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int main(int argc, char **argv)
{
    /* qemu-io opens with discard=unmap unless -d says otherwise */
    IoMainOpts o = { .flags = BDRV_O_UNMAP, .writethrough = true,
                     .cmds = g_ptr_array_new() };
    int ret;

    io_setup_signals();
    error_set_progname(argv[0]);
    g_set_prgname(error_get_progname());
    parse_args(argc, argv, &o);
    bdrv_init();
    if (!o.readonly) {
        o.flags |= BDRV_O_RDWR;
    }
    if (argc - optind == 1) {
        open_initial(argv[optind], &o);
    }
    ret = command_loop(o.cmds);

    io_aio_drain();
    if (io_blk) {
        blk_unref(io_blk);
        io_blk = NULL;
    }
    bdrv_close_all();
    g_ptr_array_free(o.cmds, true);
    return ret < 0 ? 1 : 0;
}
