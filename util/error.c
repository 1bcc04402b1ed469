#include "config.h"
#include <limits.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

struct Error {
    char *msg;
    GString *hint;
};

Error *error_abort;
Error *error_fatal;

static char *progname;

void error_set_progname(const char *argv0)
{
    g_free(progname);
    progname = argv0 ? g_path_get_basename(argv0) : NULL;
}

const char *error_get_progname(void)
{
    return progname ? progname : "strata";
}

/* Write the hint text so that it always ends on its own line. */
static void print_hint(const GString *hint)
{
    if (!hint || !hint->len) {
        return;
    }
    fputs(hint->str, stderr);
    if (hint->str[hint->len - 1] != '\n') {
        fputc('\n', stderr);
    }
}

/* Common printer: "<prog>: <kind><msg>\n". */
static void report_line(const char *kind, const char *msg)
{
    fprintf(stderr, "%s: %s%s\n", error_get_progname(), kind, msg);
    fflush(stderr);
}

/* Terminates the process for the &error_abort / &error_fatal sentinels. */
static void error_handle_sentinel(Error **errp, Error *err)
{
    if (errp == &error_abort) {
        report_line("", err->msg);
        print_hint(err->hint);
        fflush(stderr);
        abort();
    }
    if (errp == &error_fatal) {
        error_report_err(err);
        exit(1);
    }
}

/* Install @err in @errp following the once-only rule. */
static void error_install(Error **errp, Error *err)
{
    if (!errp) {
        error_free(err);
        return;
    }
    error_handle_sentinel(errp, err);
    if (*errp) {
        error_free(err);     /* first error wins */
        return;
    }
    *errp = err;
}

void error_setg(Error **errp, const char *fmt, ...)
{
    va_list ap;
    Error *err;

    if (!errp) {
        return;
    }
    err = g_new0(Error, 1);
    va_start(ap, fmt);
    err->msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    error_install(errp, err);
}

void error_setg_errno(Error **errp, int os_errno, const char *fmt, ...)
{
    va_list ap;
    Error *err;
    char *msg;

    if (!errp) {
        return;
    }
    err = g_new0(Error, 1);
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (os_errno < 0) {
        /* INT_MIN has no positive counterpart: strerror says "Unknown" */
        os_errno = os_errno == INT_MIN ? INT_MAX : -os_errno;
    }
    err->msg = g_strdup_printf("%s: %s", msg, g_strerror(os_errno));
    g_free(msg);
    error_install(errp, err);
}

/* Prepend pre-formatted text to an existing error. */
static void error_vprepend(Error *err, const char *fmt, va_list ap)
{
    char *prefix = g_strdup_vprintf(fmt, ap);
    char *msg = g_strconcat(prefix, err->msg, NULL);

    g_free(prefix);
    g_free(err->msg);
    err->msg = msg;
}

void error_prepend(Error **errp, const char *fmt, ...)
{
    va_list ap;

    if (!errp || !*errp || errp == &error_abort || errp == &error_fatal) {
        return;
    }
    va_start(ap, fmt);
    error_vprepend(*errp, fmt, ap);
    va_end(ap);
}

void error_append_hint(Error **errp, const char *fmt, ...)
{
    va_list ap;
    Error *err;

    if (!errp || errp == &error_abort || errp == &error_fatal || !*errp) {
        return;
    }
    err = *errp;
    if (!err->hint) {
        err->hint = g_string_new(NULL);
    }
    va_start(ap, fmt);
    g_string_append_vprintf(err->hint, fmt, ap);
    va_end(ap);
}

void error_propagate(Error **dst, Error *local)
{
    if (!local) {
        return;
    }
    error_install(dst, local);
}

void error_propagate_prepend(Error **dst, Error *local, const char *fmt, ...)
{
    va_list ap;

    if (!local) {
        return;
    }
    if (dst) {
        va_start(ap, fmt);
        error_vprepend(local, fmt, ap);
        va_end(ap);
    }
    error_install(dst, local);
}

const char *error_get_pretty(const Error *err)
{
    return err->msg;
}

const char *error_get_hint(const Error *err)
{
    return err->hint ? err->hint->str : NULL;
}

Error *error_copy(const Error *err)
{
    Error *copy = g_new0(Error, 1);

    copy->msg = g_strdup(err->msg);
    if (err->hint) {
        copy->hint = g_string_new(err->hint->str);
    }
    return copy;
}

void error_free(Error *err)
{
    if (!err) {
        return;
    }
    g_free(err->msg);
    if (err->hint) {
        g_string_free(err->hint, TRUE);
    }
    g_free(err);
}

void error_free_or_abort(Error **errp)
{
    g_assert(errp && *errp);
    error_free(*errp);
    *errp = NULL;
}

void error_report_err(Error *err)
{
    report_line("", err->msg);
    print_hint(err->hint);
    fflush(stderr);
    error_free(err);
}

void error_reportf_err(Error *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_vprepend(err, fmt, ap);
    va_end(ap);
    error_report_err(err);
}

/* error, warning and info reports differ only in their prefix. */
static void report_vprefixed(const char *prefix, const char *fmt, va_list ap)
{
    char *msg = g_strdup_vprintf(fmt, ap);

    report_line(prefix, msg);
    g_free(msg);
}

void error_vreport(const char *fmt, va_list ap)
{
    report_vprefixed("", fmt, ap);
}

void error_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_vreport(fmt, ap);
    va_end(ap);
}

void warn_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report_vprefixed("warning: ", fmt, ap);
    va_end(ap);
}

void warn_report_err(Error *err)
{
    report_line("warning: ", err->msg);
    print_hint(err->hint);
    fflush(stderr);
    error_free(err);
}

void info_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report_vprefixed("info: ", fmt, ap);
    va_end(ap);
}
