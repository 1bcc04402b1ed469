#include "config.h"
/*
 * strata-io: --object definitions.  Only the checks qemu-io makes are
 * done; secrets are kept (by id) for the engine to look up later.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include "tools/common/common.h"
#include "block/block.h"
#include "util/keyval.h"

static GHashTable *tool_objects;   /* id -> QDict of properties */

static const char *const tool_object_types[] = {
    "secret", "throttle-group", "iothread", "tls-creds-anon",
    "tls-creds-psk", "tls-creds-x509", "authz-simple", NULL,
};

static const char *const tool_secret_keys[] = {
    "qom-type", "id", "data", "file", "format", "keyid", "iv", "loaded",
    NULL,
};

static bool tool_str_in(const char *s, const char *const *list)
{
    for (; *list; list++) {
        if (!strcmp(s, *list)) {
            return true;
        }
    }
    return false;
}

static bool tool_id_valid(const char *id)
{
    if (!isalpha((unsigned char)id[0])) {
        return false;
    }
    for (const char *p = id; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("-._", *p)) {
            return false;
        }
    }
    return true;
}

static bool tool_check_secret(QDict *d, Error **errp)
{
    const char *file = qdict_get_try_str(d, "file");
    g_autoptr(GError) gerr = NULL;
    char *data;

    for (const QDictEntry *e = qdict_first(d); e; e = qdict_next(d, e)) {
        if (!tool_str_in(qdict_entry_key(e), tool_secret_keys)) {
            error_setg(errp, "Parameter '%s' is unexpected",
                       qdict_entry_key(e));
            return false;
        }
    }
    if (!file && !qdict_haskey(d, "data")) {
        error_setg(errp, "Either 'file' or 'data' must be provided");
        return false;
    }
    if (file) {
        if (!g_file_get_contents(file, &data, NULL, &gerr)) {
            error_setg(errp, "Unable to read %s: %s", file, gerr->message);
            return false;
        }
        qdict_put_str(d, "data", data);
        g_free(data);
    }
    return true;
}

static bool tool_check_object(QDict *d, Error **errp)
{
    const char *type = qdict_get_try_str(d, "qom-type");
    const char *id = qdict_get_try_str(d, "id");

    if (!type) {
        error_setg(errp, "Parameter 'qom-type' is missing");
        return false;
    }
    if (!tool_str_in(type, tool_object_types)) {
        error_setg(errp, "Parameter 'qom-type' does not accept value '%s'",
                   type);
        return false;
    }
    if (!id) {
        error_setg(errp, "Parameter 'id' is missing");
        return false;
    }
    if (!tool_id_valid(id)) {
        error_setg(errp, "Parameter 'id' expects an identifier");
        error_append_hint(errp, "Identifiers consist of letters, digits, "
                          "'-', '.', '_', starting with a letter.\n");
        return false;
    }
    return strcmp(type, "secret") || tool_check_secret(d, errp);
}

/* Objects the engine itself implements are created here; the others
 * (secrets) are only kept for lookup. */
static bool tool_realize_object(QDict *d, Error **errp)
{
    if (strcmp(qdict_get_str(d, "qom-type"), "throttle-group")) {
        return true;
    }
    g_autoptr(QDict) opts = qdict_clone_shallow(d);
    qdict_del(opts, "qom-type");
    return throttle_group_create_from_opts(opts, errp);
}

bool tool_object_add(const char *def)
{
    Error *err = NULL;
    QDict *d = keyval_parse_flat(def, "qom-type", NULL, &err);
    const char *id;

    if (!d || !tool_check_object(d, &err)) {
        error_report_err(err);
        qobject_unref(d);
        return false;
    }
    if (!tool_objects) {
        tool_objects = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                           (GDestroyNotify)qobject_unref_impl);
    }
    id = qdict_get_str(d, "id");
    if (g_hash_table_contains(tool_objects, id)) {
        error_report("attempt to add duplicate property '%s' to object "
                     "(type 'container')", id);
        qobject_unref(d);
        return false;
    }
    if (!tool_realize_object(d, &err)) {
        error_report_err(err);
        qobject_unref(d);
        return false;
    }
    g_hash_table_insert(tool_objects, g_strdup(id), d);
    return true;
}

const char *tool_secret_lookup(const char *id)
{
    QDict *d = tool_objects ? g_hash_table_lookup(tool_objects, id) : NULL;

    return d ? qdict_get_try_str(d, "data") : NULL;
}
