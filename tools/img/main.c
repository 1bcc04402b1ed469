#include "config.h"
/*
 * strata-img: global options (-h, -V, -T) and the command dispatcher.
 */
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
            break;      /* tracing: accepted, nothing to trace into */
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
