#include "config.h"
/*
 * strata-img: global options (-h, -V, -T) and the command dispatcher.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "tools/img/img.h"

const ImgCmd img_cmds[] = {
    { "amend", img_amend, "Update format-specific options of the image" },
    { "bench", img_bench, "Run simple image benchmark" },
    { "bitmap", img_bitmap, "Perform modifications of the persistent bitmap in the image" },
    { "check", img_check, "Check basic image integrity" },
    { "commit", img_commit, "Commit image to its backing file" },
    { "compare", img_compare, "Check if two images have the same contents" },
    { "convert", img_convert, "Copy one image to another with optional format conversion" },
    { "create", img_create, "Create and format new image file" },
    { "dd", img_dd, "Copy input to output with optional format conversion" },
    { "info", img_info, "Display information about image" },
    { "map", img_map, "Dump image metadata" },
    { "measure", img_measure, "Calculate the file size required for a new image" },
    { "rebase", img_rebase, "Change backing file of the image" },
    { "resize", img_resize, "Resize the image to the new size" },
    { "snapshot", img_snapshot, "List or manipulate snapshots within image" },
    { NULL },
};

/* The version banner: consumers match "^qemu-img version ([0-9.]*)". */
static void print_version(void)
{
    const char *prog = error_get_progname();

    if (!strcmp(prog, "qemu-img")) {
        printf("qemu-img version " STRATA_QEMU_COMPAT_VERSION " (strata "
               STRATA_VERSION ")\n");
    } else {
        printf("%s version " STRATA_VERSION " (compatible with qemu-img "
               STRATA_QEMU_COMPAT_VERSION ")\n", prog);
    }
    printf("Strata block-image tools, GPL-2.0-or-later\n");
}

static void print_format(void *opaque, const char *name)
{
    printf(" %s", name);
}

/* Global help: the reference's layout, our formats. */
static void print_help(void)
{
    const char *prog = error_get_progname();

    print_version();
    printf("Disk image utility.  Usage:\n\n"
           "  %s [standard options] COMMAND [--help | command options]\n\n"
           "Standard options:\n"
           "  -h, --help\n"
           "     display this help and exit\n"
           "  -V, --version\n"
           "     display version info and exit\n"
           "  -T,--trace TRACE\n"
           "     specify tracing options:\n"
           "        [[enable=]<pattern>][,events=<file>][,file=<file>]\n\n"
           "Recognized commands (run %s COMMAND --help for command-specific help):\n\n",
           prog, prog);
    for (const ImgCmd *c = img_cmds; c->name; c++) {
        printf("  %s - %s\n", c->name, c->summary);
    }
    printf("\nSupported image formats:\n\n ");
    bdrv_iterate_format(print_format, NULL, true);
    printf("\n\nSee the strata-img(1) manual page for details.\n");
}

/* ---- -T / --trace ----
 *
 * Strata has no trace events, but -T is checked as the reference checks
 * it: "[enable=]PATTERN,events=FILE,file=FILE" (QemuOpts syntax, checked
 * element by element), a plain event name that matches nothing warns,
 * "help" lists the events (none) and exits, an events file is read line
 * by line, and the log file is created once the command line is parsed.
 */

#define TRACE_LINE_MAX 1024     /* events file lines, as the reference */

static char *trace_log_file;    /* file= of the last -T */

typedef struct TraceOpts {
    char *enable, *events, *file;       /* NULL: not given */
} TraceOpts;

static bool trace_is_help(const char *s)
{
    return !strcmp(s, "help") || !strcmp(s, "?");
}

/* A value up to an unescaped ',' (",," is a comma); consumes the ','. */
static char *trace_value(const char **p)
{
    GString *v = g_string_new(NULL);
    const char *c = *p;

    for (; *c && (*c != ',' || c[1] == ','); c++) {
        c += *c == ',';
        g_string_append_c(v, *c);
    }
    *p = *c ? c + 1 : c;
    return g_string_free(v, false);
}

/* One element at *p: "name=value", or a bare "name" (*value NULL); a
 * first element without '=' is the value of "enable". */
static void trace_element(const char **p, bool first, char **name,
                          char **value)
{
    size_t len = strcspn(*p, "=,");

    if ((*p)[len] == '=') {
        *name = g_strndup(*p, len);
        *p += len + 1;
        *value = trace_value(p);
    } else if (first) {
        *name = g_strdup("enable");
        *value = trace_value(p);
    } else {
        *name = g_strndup(*p, len);
        *value = NULL;
        *p += len + ((*p)[len] == ',');
    }
}

/* QEMU's identifier rule: a letter, then letters, digits, '-', '.', '_'. */
static bool trace_id_ok(const char *id)
{
    if (!g_ascii_isalpha(*id)) {
        return false;
    }
    for (id++; *id; id++) {
        if (!g_ascii_isalnum(*id) && !strchr("-._", *id)) {
            return false;
        }
    }
    return true;
}

/* The first "id=" is checked before anything else of the option. */
static bool trace_check_id(const char *arg)
{
    for (const char *p = arg; *p;) {
        g_autofree char *name = NULL, *value = NULL;

        trace_element(&p, p == arg, &name, &value);
        if (value && !strcmp(name, "id")) {
            if (trace_id_ok(value)) {
                return true;
            }
            error_report("Parameter 'id' expects an identifier");
            fprintf(stderr, "Identifiers consist of letters, digits, '-', "
                    "'.', '_', starting with a letter.\n");
            return false;
        }
    }
    return true;
}

/* A bare "name" means name=on ("noname": name=off), with a warning. */
static char *trace_bare(char **name)
{
    bool off = g_str_has_prefix(*name, "no");
    char *key = g_strdup(*name + (off ? 2 : 0));

    warn_report("short-form boolean option '%s' deprecated", *name);
    fprintf(stderr, "Please use %s=%s instead\n", key, off ? "off" : "on");
    g_free(*name);
    *name = key;
    return g_strdup(off ? "off" : "on");
}

/* Store one element; -1 to go on, else the exit status. */
static int trace_store(TraceOpts *t, char *name, char *value)
{
    char **slot = !strcmp(name, "enable") ? &t->enable
                : !strcmp(name, "events") ? &t->events
                : !strcmp(name, "file") ? &t->file : NULL;

    if (!strcmp(name, "id")) {
        g_free(value);
        return -1;
    }
    if (!slot) {
        error_report("Invalid parameter '%s'", name);
        g_free(value);
        return 1;
    }
    g_free(*slot);
    *slot = value;
    return -1;
}

/* Parse one -T argument into @t; -1 to go on, else the exit status. */
static int trace_parse(const char *arg, TraceOpts *t)
{
    int status = -1;

    if (!trace_check_id(arg)) {
        return 1;
    }
    for (const char *p = arg; *p && status < 0;) {
        char *name, *value;

        trace_element(&p, p == arg, &name, &value);
        if (!value && trace_is_help(name)) {
            printf("trace options:\n  enable=<str>\n  events=<str>\n"
                   "  file=<str>\n");
            status = 1;
        } else {
            value = value ? value : trace_bare(&name);
            status = trace_store(t, name, value);
        }
        g_free(name);
    }
    return status;
}

/* Enable a pattern ("-" prefix: disable); events file lines carry their
 * place.  -1 to go on, 0 after listing the (no) events for "help". */
static int trace_pattern(const char *pattern, const char *file, int line)
{
    const char *name = pattern + (pattern[0] == '-');

    if (trace_is_help(pattern)) {
        return 0;
    }
    if (strchr(name, '*')) {
        return -1;      /* a pattern may match nothing */
    }
    if (file) {
        fprintf(stderr, "%s:%s:%d: warning: trace event '%s' does not "
                "exist\n", error_get_progname(), file, line, name);
    } else {
        warn_report("trace event '%s' does not exist", name);
    }
    return -1;
}

/* events=FILE: one pattern a line; blank lines and '#' comments skipped;
 * the last character of a line (its newline) is dropped. */
static int trace_events_file(const char *file)
{
    char buf[TRACE_LINE_MAX];
    FILE *f = fopen(file, "r");
    int line = 0, status = -1;

    if (!f) {
        fprintf(stderr, "%s:%s: %s\n", error_get_progname(), file,
                strerror(errno));
        return 1;
    }
    while (status < 0 && fgets(buf, sizeof(buf), f)) {
        size_t len = strlen(buf);

        line++;
        if (len > 1) {
            buf[len - 1] = '\0';
            status = buf[0] == '#' ? -1 : trace_pattern(buf, file, line);
        }
    }
    fclose(f);
    return status;
}

/* One -T option; -1 to go on, else the exit status. */
static int trace_option(const char *arg)
{
    TraceOpts t = { 0 };
    int status = trace_parse(arg, &t);

    if (status < 0 && t.enable) {
        status = trace_pattern(t.enable, NULL, 0);
    }
    if (status < 0 && t.events) {
        status = trace_events_file(t.events);
    }
    g_free(trace_log_file);
    trace_log_file = g_steal_pointer(&t.file);
    g_free(t.enable);
    g_free(t.events);
    return status;
}

/* file=: created (empty: no events to log) before the command runs. */
static bool trace_open_log(void)
{
    FILE *f;

    if (!trace_log_file) {
        return true;
    }
    f = fopen(trace_log_file, "w");
    if (!f) {
        error_report("Error opening logfile %s: %s", trace_log_file,
                     strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

static const ImgCmd *find_command(const char *name)
{
    for (const ImgCmd *c = img_cmds; c->name; c++) {
        if (!strcmp(c->name, name)) {
            return c;
        }
    }
    return NULL;
}

/* Global options; returns the index of the command word, or -1 when
 * the process should exit with *status. */
static int parse_global(int argc, char **argv, int *status)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "trace", required_argument, NULL, 'T' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    /* "+": stop at the command word; its options are its own.  getopt
     * prints its own messages (with the full argv[0], as the reference). */
    while ((c = getopt_long(argc, argv, "+hVT:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            print_help();
            *status = 0;
            return -1;
        case 'V':
            print_version();
            *status = 0;
            return -1;
        case 'T':
            *status = trace_option(optarg);
            if (*status >= 0) {
                return -1;
            }
            break;
        default:
            fprintf(stderr, "Try '%s --help' for more info\n", img_argv0());
            *status = 1;
            return -1;
        }
    }
    if (optind >= argc) {
        *status = img_usage_error(NULL, "Not enough arguments");
        return -1;
    }
    if (!trace_open_log()) {
        *status = 1;
        return -1;
    }
    return optind;
}

int main(int argc, char **argv)
{
    const ImgCmd *cmd;
    int status = 0, first;

    error_set_progname(argv[0]);
    img_set_argv0(argv[0]);
    bdrv_init();
    first = parse_global(argc, argv, &status);
    if (first < 0) {
        return status;
    }
    cmd = find_command(argv[first]);
    if (!cmd) {
        return img_usage_error(NULL, "Command not found: %s", argv[first]);
    }
    optind = 0;     /* full getopt reset for the command's own parsing */
    status = cmd->func(argc - first, argv + first);
    bdrv_close_all();
    return status;
}
