/*
 * Control-path errors.  Error **errp may be NULL (error ignored),
 * &error_abort (abort on error) or &error_fatal (print and exit(1)).
 * An Error is set at most once; the function's return value also tells
 * failure.  Messages carry context and have no final period.
 *
 * Reporting: error_report*() print "<prog>: message" on stderr, where
 * <prog> is what error_set_progname() was given (basename of argv[0]).
 */
#ifndef STRATA_ERROR_H
#define STRATA_ERROR_H

#include <glib.h>
#include <stdarg.h>
#include <stdbool.h>

typedef struct Error Error;

extern Error *error_abort;
extern Error *error_fatal;

void error_setg(Error **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Appends ": strerror(os_errno)" (os_errno positive). */
void error_setg_errno(Error **errp, int os_errno, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
void error_prepend(Error **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* A hint printed after the message on its own line(s), by error_report_err. */
void error_append_hint(Error **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void error_propagate(Error **dst, Error *local);
void error_propagate_prepend(Error **dst, Error *local, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
const char *error_get_pretty(const Error *err);
const char *error_get_hint(const Error *err);   /* NULL if none */
Error *error_copy(const Error *err);
void error_free(Error *err);
void error_free_or_abort(Error **errp);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Error, error_free)

void error_set_progname(const char *argv0);
const char *error_get_progname(void);

/* "<prog>: msg[\nhint]" on stderr, then frees @err. */
void error_report_err(Error *err);
void error_reportf_err(Error *err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void error_report(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
void error_vreport(const char *fmt, va_list ap);
void warn_report(const char *fmt, ...) G_GNUC_PRINTF(1, 2);   /* "<prog>: warning: " */
void warn_report_err(Error *err);
void info_report(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

#endif
