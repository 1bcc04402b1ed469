#include "config.h"
/*
 * Graph tests: driver lookup, opening (plain names, json:, dotted options),
 * option validation, node names, probing, permissions and the option
 * helpers.  Uses null-co and raw plus two mock drivers defined here.
 */
#include <errno.h>
#include <string.h>
#include <glib.h>
#include "block/drivers.h"

/* ---- mock drivers: a protocol that logs permission calls, a format ---- */

static struct {
    int checks, sets, aborts;
    uint64_t last_perm, last_shared;
    int fail_next;              /* this many check_perm calls fail */
} mock;

static int mock_proto_open(BlockDriverState *bs, QDict *options, int flags,
                           Error **errp)
{
    return 0;
}

static int mock_check_perm(BlockDriverState *bs, uint64_t perm,
                           uint64_t shared, Error **errp)
{
    mock.checks++;
    if (mock.fail_next > 0) {
        mock.fail_next--;
        error_setg(errp, "mock refuses");
        return -EPERM;
    }
    return 0;
}

static void mock_set_perm(BlockDriverState *bs, uint64_t perm, uint64_t shared)
{
    mock.sets++;
    mock.last_perm = perm;
    mock.last_shared = shared;
}

static void mock_abort_perm(BlockDriverState *bs)
{
    mock.aborts++;
}

static const BlockOptDesc mock_proto_opts[] = {
    { .name = "knob", .type = OPT_NUMBER },
    { NULL }
};

static const BlockDriverPermOps mock_proto_perm_ops = {
    .check_perm = mock_check_perm,
    .set_perm = mock_set_perm,
    .abort_perm_update = mock_abort_perm,
};

static const BlockDriver mock_proto = {
    .format_name = "mockproto",
    .kind = BDRV_KIND_PROTOCOL,
    .protocol_name = "mockproto",
    .open_opts = mock_proto_opts,
    .open = mock_proto_open,
    .perm = &mock_proto_perm_ops,
};

static int mock_fmt_open(BlockDriverState *bs, QDict *options, int flags,
                         Error **errp)
{
    BdrvChild *c = bdrv_open_child(NULL, options, "file", bs,
                                   BDRV_CHILD_DATA | BDRV_CHILD_METADATA |
                                   BDRV_CHILD_PRIMARY, false, errp);
    return c ? 0 : -EINVAL;
}

static const BlockDriver mock_fmt = {
    .format_name = "mockfmt",
    .kind = BDRV_KIND_FORMAT,
    .open = mock_fmt_open,
};

static void setup(void)
{
    bdrv_init();
    bdrv_register(&mock_proto);
    bdrv_register(&mock_fmt);
    memset(&mock, 0, sizeof(mock));
}

static QDict *opts_of(const char *const *kv)
{
    QDict *d = qdict_new();

    for (; kv[0]; kv += 2) {
        qdict_put_str(d, kv[0], kv[1]);
    }
    return d;
}

/* Opens @kv and expects failure with exactly @msg. */
static void expect_open_error(const char *filename, const char *const *kv,
                              int flags, const char *msg)
{
    Error *err = NULL;
    BlockDriverState *bs = bdrv_open(filename, NULL, kv ? opts_of(kv) : NULL,
                                     flags, &err);

    g_assert_null(bs);
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, msg);
    error_free(err);
}

/* ---- driver registry ---- */

static void test_find(void)
{
    Error *err = NULL;

    setup();
    g_assert(bdrv_find_format("raw") == &bdrv_raw);
    g_assert(bdrv_find_format("null-co") == &bdrv_null_co);
    g_assert_null(bdrv_find_format("nope"));
    g_assert(bdrv_find_protocol("/tmp/x", true, &error_abort) == &bdrv_file);
    g_assert(bdrv_find_protocol("a/b:c", true, &error_abort) == &bdrv_file);
    g_assert(bdrv_find_protocol("null-co://", true, &error_abort)
             == &bdrv_null_co);
    g_assert(bdrv_find_protocol("foo:bar", false, &error_abort) == &bdrv_file);
    g_assert_null(bdrv_find_protocol("foo:bar", true, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Unknown protocol 'foo'");
    error_free(err);
}

/* ---- opening ---- */

static void test_open_plain(void)
{
    BlockDriverState *bs;

    setup();
    bs = bdrv_open("null-co://", NULL, NULL, 0, &error_abort);
    g_assert_cmpstr(bdrv_get_format_name(bs), ==, "raw");
    g_assert_true(bs->probed);
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_cmpstr(bdrv_get_format_name(bdrv_file_bs(bs)), ==, "null-co");
    g_assert_true(bdrv_file_bs(bs)->read_only);
    bdrv_unref(bs);
}

static void test_open_json(void)
{
    BlockDriverState *bs;

    setup();
    bs = bdrv_open("json:{\"driver\": \"raw\", \"node-name\": \"top\", "
                   "\"file\": {\"driver\": \"null-co\", \"size\": 4096}}",
                   NULL, NULL, BDRV_O_RDWR, &error_abort);
    g_assert_cmpstr(bdrv_get_format_name(bs), ==, "raw");
    g_assert_false(bs->probed);
    g_assert_false(bdrv_is_read_only(bs));
    g_assert(bdrv_find_node("top") == bs);
    g_assert_cmpstr(bdrv_get_format_name(bdrv_file_bs(bs)), ==, "null-co");
    bdrv_unref(bs);
    g_assert_null(bdrv_find_node("top"));
}

static void test_open_dotted(void)
{
    static const char *const kv[] = {
        "driver", "mockfmt", "node-name", "fmt", "file.driver", "mockproto",
        "file.node-name", "proto", "file.knob", "7", NULL,
    };
    BlockDriverState *bs;

    setup();
    bs = bdrv_open(NULL, NULL, opts_of(kv), BDRV_O_RDWR, &error_abort);
    g_assert_cmpstr(bdrv_get_node_name(bs), ==, "fmt");
    g_assert_cmpstr(bdrv_get_node_name(bdrv_file_bs(bs)), ==, "proto");
    g_assert(bdrv_skip_filters(bs) == bs);
    g_assert_null(bdrv_filter_child(bs));
    bdrv_unref(bs);
    g_assert_null(bdrv_find_node("proto"));
}

static void test_open_errors(void)
{
    static const char *const fmt_foo[] = {
        "driver", "raw", "file.driver", "null-co", "foo", "1", NULL,
    };
    static const char *const proto_foo[] = {
        "driver", "null-co", "foo", "1", NULL,
    };
    static const char *const bad_driver[] = { "driver", "nope", NULL };
    static const char *const no_file[] = { "driver", "raw", NULL };
    static const char *const fs_rw[] = {
        "driver", "null-co", "force-share", "on", NULL,
    };
    static const char *const dz[] = {
        "driver", "null-co", "detect-zeroes", "unmap", NULL,
    };
    static const char *const ro[] = {
        "driver", "null-co", "read-only", "maybe", NULL,
    };

    setup();
    expect_open_error(NULL, fmt_foo, 0,
                      "Block format 'raw' does not support the option 'foo'");
    expect_open_error(NULL, proto_foo, 0,
                      "Block protocol 'null-co' doesn't support the option "
                      "'foo'");
    expect_open_error(NULL, bad_driver, 0, "Unknown driver 'nope'");
    expect_open_error(NULL, no_file, 0,
                      "A block device must be specified for \"file\"");
    expect_open_error(NULL, fs_rw, BDRV_O_RDWR,
                      "force-share=on can only be used with read-only images");
    expect_open_error(NULL, dz, 0,
                      "setting detect-zeroes to unmap is not allowed without "
                      "setting discard operation to unmap");
    expect_open_error(NULL, ro, 0,
                      "Parameter 'read-only' expects 'on' or 'off'");
    expect_open_error("json:[1]", NULL, 0, "Invalid JSON object given");
    expect_open_error("json:{\"filename\": \"x\"}", NULL, 0,
                      "Must specify either driver or file");
    expect_open_error("foo:bar", NULL, 0, "Unknown protocol 'foo'");
}

static void test_json_parse_error(void)
{
    Error *err = NULL;

    setup();
    g_assert_null(bdrv_open("json:{", NULL, NULL, 0, &err));
    g_assert_true(g_str_has_prefix(error_get_pretty(err),
                                   "Could not parse the JSON options: "));
    error_free(err);
}

static void test_node_names(void)
{
    static const char *const named[] = {
        "driver", "null-co", "node-name", "n1", NULL,
    };
    static const char *const bad[] = {
        "driver", "null-co", "node-name", "1a", NULL,
    };
    static const char *const dup[] = {
        "driver", "raw", "node-name", "d", "file.driver", "null-co",
        "file.node-name", "d", NULL,
    };
    BlockDriverState *a, *b;

    setup();
    a = bdrv_open(NULL, NULL, opts_of(named), 0, &error_abort);
    expect_open_error(NULL, named, 0, "Duplicate nodes with node-name='n1'");
    expect_open_error(NULL, bad, 0, "Invalid node-name: '1a'");
    expect_open_error(NULL, dup, 0, "Duplicate nodes with node-name='d'");
    b = bdrv_open("null-co://", NULL, NULL, BDRV_O_PROTOCOL, &error_abort);
    g_assert_true(g_str_has_prefix(bdrv_get_node_name(b), "#block"));
    g_assert(bdrv_open(NULL, "n1", NULL, 0, &error_abort) == a);
    g_assert_cmpint(a->refcnt, ==, 2);
    bdrv_unref(a);
    bdrv_unref(a);
    bdrv_unref(b);
}

/* Writable probed raw prints QEMU's three-line warning. */
static void test_probe_warning(void)
{
    if (g_test_subprocess()) {
        BlockDriverState *bs;
        setup();
        bs = bdrv_open("null-co://", NULL, NULL, BDRV_O_RDWR, &error_abort);
        g_assert_true(bs->probed);
        bdrv_unref(bs);
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr(
        "WARNING: Image format was not specified for 'null-co://' and "
        "probing guessed raw.\n"
        "         Automatically detecting the format is dangerous for raw "
        "images, write operations on block 0 will be restricted.\n"
        "         Specify the 'raw' format explicitly to remove the "
        "restrictions.\n");
}

/* ---- permissions ---- */

static BlockDriverState *open_mock_stack(int flags)
{
    static const char *const kv[] = {
        "driver", "mockfmt", "file.driver", "mockproto", NULL,
    };

    return bdrv_open(NULL, NULL, opts_of(kv), flags, &error_abort);
}

static void test_perm_default(void)
{
    BlockDriverState *bs;
    BdrvChild *root;

    setup();
    bs = open_mock_stack(BDRV_O_RDWR);
    root = bdrv_root_attach_child(bs, "root", NULL, BLK_PERM_CONSISTENT_READ,
                                  BLK_PERM_ALL, &error_abort);
    /* a writable format needs write + resize on its file, shares neither */
    g_assert_cmphex(mock.last_perm, ==, BLK_PERM_CONSISTENT_READ |
                    BLK_PERM_WRITE | BLK_PERM_RESIZE);
    g_assert_cmphex(mock.last_shared, ==, BLK_PERM_CONSISTENT_READ |
                    BLK_PERM_WRITE_UNCHANGED);
    bdrv_root_unref_child(root);
}

static void test_perm_conflict(void)
{
    BlockDriverState *bs;
    BdrvChild *a, *b;
    Error *err = NULL;

    setup();
    bs = bdrv_open("null-co://", NULL, NULL, BDRV_O_PROTOCOL | BDRV_O_RDWR,
                   &error_abort);
    a = bdrv_root_attach_child(bs, "root", NULL,
                               BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                               BLK_PERM_ALL & ~BLK_PERM_WRITE, &error_abort);
    bdrv_ref(bs);
    b = bdrv_root_attach_child(bs, "root", NULL,
                               BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                               BLK_PERM_ALL, &err);
    g_assert_null(b);
    g_assert_nonnull(strstr(error_get_pretty(err), "Permission conflict on "
                            "node"));
    g_assert_nonnull(strstr(error_get_pretty(err), "permissions 'write'"));
    error_free(err);
    /* a reader is fine */
    b = bdrv_root_attach_child(bs, "root", NULL, BLK_PERM_CONSISTENT_READ,
                               BLK_PERM_ALL, &error_abort);
    g_assert_cmphex(bs->perm, ==, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE);
    g_assert_cmphex(bs->shared_perm, ==, BLK_PERM_ALL & ~BLK_PERM_WRITE);
    /* and now it cannot start writing: nothing changes */
    g_assert_cmpint(bdrv_child_try_set_perm(b, BLK_PERM_WRITE, BLK_PERM_ALL,
                                            NULL), <, 0);
    g_assert_cmphex(b->perm, ==, BLK_PERM_CONSISTENT_READ);
    bdrv_root_unref_child(a);
    g_assert_cmphex(bs->perm, ==, BLK_PERM_CONSISTENT_READ);
    bdrv_root_unref_child(b);
}

/* Two backends of one node: a writer that does not share write excludes
 * a second writer, but not a reader. */
static void test_perm_backends(void)
{
    uint64_t rw = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE;
    BlockBackend *w1 = blk_new(rw, BLK_PERM_ALL & ~BLK_PERM_WRITE);
    BlockBackend *w2 = blk_new(rw, BLK_PERM_ALL);
    BlockBackend *r = blk_new(BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL);
    BlockDriverState *bs;
    Error *err = NULL;

    setup();
    bs = bdrv_open("null-co://", NULL, NULL, BDRV_O_PROTOCOL | BDRV_O_RDWR,
                   &error_abort);
    g_assert_cmpint(blk_insert_bs(w1, bs, &error_abort), ==, 0);
    g_assert_cmpint(blk_insert_bs(w2, bs, &err), <, 0);
    g_assert_nonnull(strstr(error_get_pretty(err), "permissions 'write'"));
    error_free(err);
    g_assert_cmpint(blk_insert_bs(r, bs, &error_abort), ==, 0);
    bdrv_unref(bs);
    blk_unref(w1);
    blk_unref(w2);
    blk_unref(r);
}

static void test_perm_abort(void)
{
    BlockDriverState *bs;
    BdrvChild *root;
    Error *err = NULL;

    setup();
    bs = open_mock_stack(BDRV_O_RDWR);
    root = bdrv_root_attach_child(bs, "root", NULL, BLK_PERM_CONSISTENT_READ,
                                  BLK_PERM_ALL, &error_abort);
    mock.fail_next = 1;
    mock.sets = 0;
    g_assert_cmpint(bdrv_child_try_set_perm(root, BLK_PERM_CONSISTENT_READ,
                                            0, &err), <, 0);
    g_assert_cmpstr(error_get_pretty(err), ==, "mock refuses");
    error_free(err);
    g_assert_cmpint(mock.aborts, ==, 0);
    g_assert_cmpint(mock.sets, ==, 1);     /* the old values reapplied */
    g_assert_cmphex(mock.last_shared, ==, BLK_PERM_CONSISTENT_READ |
                    BLK_PERM_WRITE_UNCHANGED);
    g_assert_cmphex(root->perm, ==, BLK_PERM_CONSISTENT_READ);
    g_assert_cmphex(bs->shared_perm, ==, BLK_PERM_ALL);
    bdrv_root_unref_child(root);
}

static void test_perm_read_only(void)
{
    BlockDriverState *bs;
    Error *err = NULL;

    setup();
    bs = bdrv_open("null-co://", NULL, NULL, BDRV_O_PROTOCOL, &error_abort);
    g_assert_null(bdrv_root_attach_child(bs, "root", NULL, BLK_PERM_WRITE,
                                         BLK_PERM_ALL, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Block node is read-only");
    error_free(err);
    bdrv_unref(bs);
}

static void test_perm_names(void)
{
    g_autofree char *all = bdrv_perm_names(BLK_PERM_ALL);

    g_assert_cmpstr(bdrv_perm_name(BLK_PERM_WRITE), ==, "write");
    g_assert_cmpstr(all, ==, "consistent read, write, write unchanged, resize");
}

/* ---- options ---- */

static void test_options(void)
{
    g_autoptr(QDict) d = qdict_new();
    Error *err = NULL;
    PreallocMode pm;
    int flags = 0;
    bool wt;

    qdict_put_str(d, "s", "1k");
    qdict_put_str(d, "bad", "x");
    qdict_put_str(d, "b", "yes");
    qdict_put_int(d, "neg", -1);
    g_assert_cmpuint(bdrv_opt_size(d, "s", 0, &error_abort), ==, 1024);
    g_assert_cmpuint(bdrv_opt_size(d, "none", 5, &error_abort), ==, 5);
    g_assert_true(bdrv_opt_bool(d, "b", false, &error_abort));
    bdrv_opt_size(d, "bad", 0, &err);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Parameter 'bad' expects a non-negative number below 2^64");
    error_free(err);
    err = NULL;
    bdrv_opt_size(d, "neg", 0, &err);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Value '-1' is out of range for parameter 'neg'");
    error_free(err);
    err = NULL;
    bdrv_opt_number(d, "s", 0, &err);
    g_assert_cmpstr(error_get_pretty(err), ==, "Parameter 's' expects a number");
    error_free(err);
    g_assert_true(prealloc_mode_parse("falloc", &pm));
    g_assert_cmpint(pm, ==, PREALLOC_MODE_FALLOC);
    g_assert_false(prealloc_mode_parse("nope", &pm));
    g_assert_cmpstr(prealloc_mode_name(PREALLOC_MODE_FULL), ==, "full");
    g_assert_cmpint(bdrv_parse_cache_mode("none", &flags, &wt), ==, 0);
    g_assert_cmpint(flags, ==, BDRV_O_NOCACHE);
    g_assert_false(wt);
    g_assert_cmpint(bdrv_parse_cache_mode("bogus", &flags, &wt), <, 0);
    g_assert_cmpint(bdrv_parse_discard_flags("unmap", &flags), ==, 0);
    g_assert_true(flags & BDRV_O_UNMAP);
}

static void test_opts_take(void)
{
    g_autoptr(QDict) d = qdict_new();
    g_autoptr(QDict) t = NULL;

    qdict_put_str(d, "knob", "1");
    qdict_put_str(d, "other", "2");
    t = bdrv_opts_take(d, mock_proto_opts);
    g_assert_true(qdict_haskey(t, "knob"));
    g_assert_false(qdict_haskey(d, "knob"));
    g_assert_true(qdict_haskey(d, "other"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/block/graph/find", test_find);
    g_test_add_func("/block/graph/open-plain", test_open_plain);
    g_test_add_func("/block/graph/open-json", test_open_json);
    g_test_add_func("/block/graph/open-dotted", test_open_dotted);
    g_test_add_func("/block/graph/open-errors", test_open_errors);
    g_test_add_func("/block/graph/json-parse-error", test_json_parse_error);
    g_test_add_func("/block/graph/node-names", test_node_names);
    g_test_add_func("/block/graph/probe-warning", test_probe_warning);
    g_test_add_func("/block/graph/perm-default", test_perm_default);
    g_test_add_func("/block/graph/perm-conflict", test_perm_conflict);
    g_test_add_func("/block/graph/perm-backends", test_perm_backends);
    g_test_add_func("/block/graph/perm-abort", test_perm_abort);
    g_test_add_func("/block/graph/perm-read-only", test_perm_read_only);
    g_test_add_func("/block/graph/perm-names", test_perm_names);
    g_test_add_func("/block/graph/options", test_options);
    g_test_add_func("/block/graph/opts-take", test_opts_take);
    return g_test_run();
}
