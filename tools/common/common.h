/*
 * What strata-img and strata-io share: --object definitions and the
 * option-string syntax of -o / --image-opts.
 */
#ifndef STRATA_TOOLS_COMMON_H
#define STRATA_TOOLS_COMMON_H

#include <stdbool.h>
#include "qobject/qobject.h"
#include "util/error.h"

/* --object TYPE,id=ID,...: secret (kept for lookup) and throttle-group
 * (created in the engine).  false: error reported. */
bool tool_object_add(const char *def);
/* The data of secret @id, NULL if none. */
const char *tool_secret_lookup(const char *id);

/* The lenient option-list syntax of -o and --image-opts merged into @d
 * (later keys win; bare "x" = x=on, "nox" = x=off with a warning; "id"
 * refused).  false on error (reported). */
bool tool_opts_parse_into(QDict *d, const char *str);
/* A bare "name" (name=on) or "noname" (name=off) in an option list: warns
 * that the form is deprecated; returns the key, *value "on" or "off". */
const char *tool_opts_bare_key(const char *name, const char **value);
/* --image-opts: the same, but "id" (an identifier) is kept in @d. */
bool tool_image_opts_parse(QDict *d, const char *str);
/* --image-opts, where a first element without '=' is the value of
 * @implied (as qemu-img takes "NAME" for file=NAME). */
bool tool_opts_parse_implied(QDict *d, const char *str, const char *implied);

#endif
