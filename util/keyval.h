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

#endif
