/*
 * "a=b,c.d=e" option strings.
 *
 * keyval_parse():  key=value pairs separated by ','; ",," inside a value is
 *   a literal comma; dotted keys build nested dicts ("file.filename=x" ->
 *   {"file": {"filename": "x"}}); a first element without '=' is the value
 *   of @implied_key (if non-NULL).  "help" or "?" as an element sets *help
 *   (if @help is NULL it is an error).  All leaf values are QStrings.
 *   Errors: "Invalid parameter 'k'", "Parameter 'k' is missing" ... (see
 *   keyval.c); never crashes on any input.
 * keyval_parse_flat(): same syntax, but returns a flat dict whose keys keep
 *   their dots ("file.filename" -> "x") -- what the block layer consumes.
 *   Repeated keys: the last one wins.
 * opts_parse_accumulate(): qemu-img "-o" style: several strings joined
 *   with ',' (values accumulate), parsed flat.
 */
#ifndef STRATA_KEYVAL_H
#define STRATA_KEYVAL_H

#include "qobject/qobject.h"
#include "util/error.h"

QDict *keyval_parse(const char *params, const char *implied_key, bool *help,
                    Error **errp);
QDict *keyval_parse_flat(const char *params, const char *implied_key,
                         bool *help, Error **errp);
/* Returns true if @params is exactly "help" or "?" or contains such an element. */
bool keyval_has_help_option(const char *params);
/* QEMU's identifier rule ("id"): a letter, then letters, digits, '-', '.', '_'. */
bool keyval_id_wellformed(const char *id);

/*
 * qemu_opts_parse_flat(): the older QemuOpts syntax that qemu-img and
 * qemu-io use for --image-opts (and qemu-io's "open -o").  Lenient like
 * QEMU: keys are not validated ("a..b", "" are accepted), a bare "name" is
 * name=on and "noname" is name=off (with QEMU's "short-form boolean option"
 * deprecation warning via warn_report() when @warn_flags), "help"/"?" are
 * stored as help=on without warning, a first element without '=' is the
 * value of @implied_key (qemu-img passes "file"; NULL for qemu-io), ",,"
 * is a literal comma in values, the last repeated key wins.  The only error
 * is a malformed "id" ("Parameter 'id' expects an identifier" + hint).
 */
QDict *qemu_opts_parse_flat(const char *params, const char *implied_key,
                            bool warn_flags, Error **errp);

#endif
