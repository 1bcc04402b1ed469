/*
 * Create options shared by create and measure.
 */
#ifndef STRATA_TOOLS_IMG_CREATE_H
#define STRATA_TOOLS_IMG_CREATE_H

#include "block/block.h"

/* Check -o options against @drv's create options merged with @proto's
 * (may be NULL): "Invalid parameter 'x'" or a value error.  Size and
 * number values are normalised to decimal strings in @opts. */
bool img_check_create_opts(QDict *opts, const BlockDriver *drv,
                           const BlockDriver *proto, Error **errp);

/* -o syntax as qemu-img parses it (no deprecation warnings for short
 * booleans: "x" = x=on, "nox" = x=off); later keys win. */
bool img_parse_create_opts(QDict *d, const char *str);

/* Both at once, element by element in command-line order, so that the
 * first bad element is the one reported; parsed options go into @opts. */
bool img_parse_check_create_opts(QDict *opts, const char *str,
                                 const BlockDriver *drv,
                                 const BlockDriver *proto, Error **errp);

/* The same against one schema (amend's options); sizes and numbers are
 * stored back normalised. */
bool img_parse_check_opts(QDict *opts, const char *str,
                          const BlockOptDesc *schema, Error **errp);

#endif
