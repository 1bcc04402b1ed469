#include "config.h"
/*
 * strata-io: --object definitions.  Only the checks qemu-io makes are
 * done; secrets are kept (by id) for the engine to look up later.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tools/common/common.h"
#include "block/block.h"
#include "qobject/keyval.h"

static GHashTable *tool_objects;   /* id -> QDict of properties */

/*
 * The object types the reference's tools know, in the order of their
 * checks: the type, then "id", then a property the type cannot do
 * without (@required), then the form of the id, then what creating it
 * takes (@refused: the tools are built without it; @needs_dir: TLS
 * credentials read their files from a directory).  Only secrets and
 * throttle groups do anything here; the others are accepted and kept.
 */
typedef struct ToolObjectType {
    const char *name;
    const char *required;
    bool refused;
    bool needs_dir;
} ToolObjectType;

static const ToolObjectType tool_object_types[] = {
    { "authz-list" },
    { "authz-listfile", .required = "filename", .refused = true },
    { "authz-simple", .required = "identity" },
    { "iothread", .refused = true },
    { "main-loop" },
    { "pr-manager-helper", .required = "path" },
    { "secret" },
    { "secret_keyring", .required = "serial" },
    { "thread-context" },
    { "throttle-group" },
    { "tls-creds-anon" },
    { "tls-creds-psk", .needs_dir = true },
    { "tls-creds-x509", .needs_dir = true },
    { NULL },
};

static const ToolObjectType *tool_object_type(const char *name)
{
    for (const ToolObjectType *t = tool_object_types; t->name; t++) {
        if (!strcmp(t->name, name)) {
            return t;
        }
    }
    return NULL;
}

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
    const ToolObjectType *t;

    if (!type) {
        error_setg(errp, "Parameter 'qom-type' is missing");
        return false;
    }
    t = tool_object_type(type);
    if (!t) {
        error_setg(errp, "Parameter 'qom-type' does not accept value '%s'",
                   type);
        return false;
    }
    if (!id) {
        error_setg(errp, "Parameter 'id' is missing");
        return false;
    }
    if (t->required && !qdict_haskey(d, t->required)) {
        error_setg(errp, "Parameter '%s' is missing", t->required);
        return false;
    }
    if (!keyval_id_wellformed(id)) {
        error_setg(errp, "Parameter 'id' expects an identifier");
        error_append_hint(errp, "Identifiers consist of letters, digits, "
                          "'-', '.', '_', starting with a letter.\n");
        return false;
    }
    if (t->refused) {
        error_setg(errp, "invalid object type: %s", type);
        return false;
    }
    if (t->needs_dir && !qdict_haskey(d, "dir")) {
        error_setg(errp, "Missing 'dir' property value");
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


/* Property lists printed by "--object TYPE,help", as the reference does. */
static const char *const tool_object_help[][2] = {
    { "authz-list", "policy=<QAuthZListPolicy>\0rules=<QAuthZListRule>\0" },
    { "authz-list-file", "filename=<string>\0refresh=<bool>\0" },
    { "authz-simple", "identity=<string>\0" },
    { "main-loop", "aio-max-batch=<int>\0thread-pool-max=<int>\0"
      "thread-pool-min=<int>\0" },
    { "pr-manager-helper", "path=<string>\0" },
    { "secret", "data=<string>\0file=<string>\0"
      "format=<QCryptoSecretFormat>\0iv=<string>\0keyid=<string>\0" },
    { "secret_keyring", "format=<QCryptoSecretFormat>\0iv=<string>\0"
      "keyid=<string>\0serial=<int32_t>\0" },
    { "thread-context", "cpu-affinity=<int>\0node-affinity=<int>\0" },
    { "throttle-group", "limits=<ThrottleLimits>\0"
      "x-bps-read-max-length=<int>\0x-bps-read-max=<int>\0x-bps-read=<int>\0"
      "x-bps-total-max-length=<int>\0x-bps-total-max=<int>\0"
      "x-bps-total=<int>\0x-bps-write-max-length=<int>\0"
      "x-bps-write-max=<int>\0x-bps-write=<int>\0"
      "x-iops-read-max-length=<int>\0x-iops-read-max=<int>\0"
      "x-iops-read=<int>\0x-iops-size=<int>\0"
      "x-iops-total-max-length=<int>\0x-iops-total-max=<int>\0"
      "x-iops-total=<int>\0x-iops-write-max-length=<int>\0"
      "x-iops-write-max=<int>\0x-iops-write=<int>\0" },
    { "tls-creds-anon", "dir=<string>\0endpoint=<QCryptoTLSCredsEndpoint>\0"
      "priority=<string>\0verify-peer=<bool>\0" },
    { "tls-creds-psk", "dir=<string>\0endpoint=<QCryptoTLSCredsEndpoint>\0"
      "priority=<string>\0username=<string>\0verify-peer=<bool>\0" },
    { "tls-creds-x509", "dir=<string>\0endpoint=<QCryptoTLSCredsEndpoint>\0"
      "passwordid=<string>\0priority=<string>\0sanity-check=<bool>\0"
      "verify-peer=<bool>\0" },
};

/* "--object help" (or an unknown type with help): the type list, or one
 * type's properties; the reference then exits successfully. */
static void tool_object_print_help(const char *type)
{
    size_t n = G_N_ELEMENTS(tool_object_help);

    for (size_t i = 0; type && i < n; i++) {
        if (!strcmp(type, tool_object_help[i][0])) {
            printf("%s options:\n", type);
            for (const char *p = tool_object_help[i][1]; *p;
                 p += strlen(p) + 1) {
                printf("  %s\n", p);
            }
            return;
        }
    }
    printf("List of user creatable objects:\n");
    for (size_t i = 0; i < n; i++) {
        printf("  %s\n", tool_object_help[i][0]);
    }
}

/* "{...}": the object as JSON (no help there), else key=value,... */
static QDict *tool_object_parse(const char *def, bool *help, Error **errp)
{
    QObject *obj;
    QDict *d;

    if (def[0] != '{') {
        return keyval_parse_flat(def, "qom-type", help, errp);
    }
    obj = qobject_from_json(def, errp);
    if (!obj) {
        return NULL;
    }
    d = qobject_to_qdict(obj);
    if (!d) {
        qobject_unref(obj);
        error_setg(errp, "Invalid JSON object given");
        return NULL;
    }
    qdict_flatten(d);
    return d;
}

bool tool_object_add(const char *def)
{
    Error *err = NULL;
    bool help = false;
    QDict *d = tool_object_parse(def, &help, &err);
    const char *id;

    if (d && help) {
        tool_object_print_help(qdict_get_try_str(d, "qom-type"));
        exit(0);
    }

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
