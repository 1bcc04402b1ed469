#include "config.h"
/*
 * strata-io: the command registry, argument splitting, dispatch and help.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tools/io/io.h"

static const IoCmd *const io_tables[] = {
    io_rw_cmds, io_aio_cmds, io_misc_cmds, io_info_cmds, io_zone_cmds,
    io_open_cmds, io_reopen_cmds, io_debug_cmds,
};

static GPtrArray *io_sorted_cmds;

static gint io_cmd_compare(gconstpointer a, gconstpointer b)
{
    const IoCmd *ca = *(const IoCmd *const *)a;
    const IoCmd *cb = *(const IoCmd *const *)b;

    return strcmp(ca->name, cb->name);
}

static GPtrArray *io_commands(void)
{
    if (io_sorted_cmds) {
        return io_sorted_cmds;
    }
    io_sorted_cmds = g_ptr_array_new();
    for (size_t t = 0; t < G_N_ELEMENTS(io_tables); t++) {
        for (const IoCmd *ct = io_tables[t]; ct->name; ct++) {
            g_ptr_array_add(io_sorted_cmds, (gpointer)ct);
        }
    }
    g_ptr_array_sort(io_sorted_cmds, io_cmd_compare);
    return io_sorted_cmds;
}

const IoCmd *io_find_command(const char *name)
{
    GPtrArray *cmds = io_commands();

    for (guint i = 0; i < cmds->len; i++) {
        const IoCmd *ct = g_ptr_array_index(cmds, i);

        if (!strcmp(ct->name, name) ||
            (ct->altname && !strcmp(ct->altname, name))) {
            return ct;
        }
    }
    return NULL;
}

void io_command_usage(const IoCmd *ct)
{
    printf("%s %s -- %s\n", ct->name, ct->args ? ct->args : "(null)",
           ct->oneline);
}

static void io_help_oneline(const char *name, const IoCmd *ct)
{
    printf("%s ", name);
    if (ct->args) {
        printf("%s ", ct->args);
    }
    printf("-- %s\n", ct->oneline);
}

void io_help_all(void)
{
    GPtrArray *cmds = io_commands();

    for (guint i = 0; i < cmds->len; i++) {
        const IoCmd *ct = g_ptr_array_index(cmds, i);

        io_help_oneline(ct->name, ct);
    }
    printf("\nUse 'help commandname' for extended help.\n");
}

void io_help_one(const char *typed, const IoCmd *ct)
{
    io_help_oneline(typed, ct);
    if (ct->help) {
        ct->help();
    }
}

static bool io_check_argc(const IoCmd *ct, const char *typed, int nargs)
{
    if (nargs >= ct->argmin && (ct->argmax == -1 || nargs <= ct->argmax)) {
        return true;
    }
    if (ct->argmax == -1) {
        fprintf(stderr, "bad argument count %d to %s, expected at least %d "
                "arguments\n", nargs, typed, ct->argmin);
    } else if (ct->argmin == ct->argmax) {
        fprintf(stderr, "bad argument count %d to %s, expected %d "
                "arguments\n", nargs, typed, ct->argmin);
    } else {
        fprintf(stderr, "bad argument count %d to %s, expected between %d "
                "and %d arguments\n", nargs, typed, ct->argmin, ct->argmax);
    }
    return false;
}

static int io_request_perm(const IoCmd *ct)
{
    uint64_t perm, shared;
    Error *err = NULL;
    int ret;

    /* with no medium in there is nothing to take: the command then
     * fails on the request itself ("No medium found"), as the
     * reference's does */
    if (!ct->perm || !io_blk || !blk_available(io_blk)) {
        return 0;
    }
    blk_get_perm(io_blk, &perm, &shared);
    if (!(ct->perm & ~perm)) {
        return 0;
    }
    ret = blk_set_perm(io_blk, perm | ct->perm, shared, &err);
    if (ret < 0) {
        error_report_err(err);
    }
    return ret;
}

static int io_dispatch(const IoCmd *ct, int argc, char **argv)
{
    int ret;

    if (!(ct->flags & CMD_NOFILE_OK) && !io_blk) {
        fprintf(stderr, "no file open, try 'help open'\n");
        return -EINVAL;
    }
    if (!io_check_argc(ct, argv[0], argc - 1)) {
        return -EINVAL;
    }
    ret = io_request_perm(ct);
    if (ret < 0) {
        return ret;
    }
    io_reset_getopt();
    return ct->func(io_blk, argc, argv);
}

/* Split on single spaces, dropping empty words (tabs are not separators). */
static char **io_split_line(const char *line, int *argc)
{
    char **words = g_strsplit(line, " ", -1);
    GPtrArray *out = g_ptr_array_new();

    for (char **w = words; *w; w++) {
        if (**w) {
            g_ptr_array_add(out, g_strdup(*w));
        }
    }
    g_strfreev(words);
    *argc = out->len;
    g_ptr_array_add(out, NULL);
    return (char **)g_ptr_array_free(out, false);
}

int io_run_command_line(const char *line)
{
    int argc, ret = 0;
    char **argv = io_split_line(line, &argc);
    const IoCmd *ct;

    if (argc > 0) {
        ct = io_find_command(argv[0]);
        if (ct) {
            ret = io_dispatch(ct, argc, argv);
        } else {
            fprintf(stderr, "command \"%s\" not found\n", argv[0]);
            ret = -EINVAL;
        }
    }
    g_strfreev(argv);
    return ret;
}
