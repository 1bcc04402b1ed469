#include "config.h"
/*
 * Driver registry and node lifecycle: registration, lookup by name and
 * protocol prefix, probing, node names, references and accessors.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include "block/drivers.h"

static GPtrArray *drivers;        /* const BlockDriver * */
static GList *all_nodes;          /* BlockDriverState *, named nodes */
static uint64_t node_name_counter;

void bdrv_register(const BlockDriver *drv)
{
    if (!drivers) {
        drivers = g_ptr_array_new();
    }
    for (unsigned i = 0; i < drivers->len; i++) {
        if (g_ptr_array_index(drivers, i) == drv) {
            return;
        }
    }
    g_ptr_array_add(drivers, (gpointer)drv);
}

/* Declared here: drivers.h belongs to the driver list owners. */
extern const BlockDriver bdrv_null_aio;

void bdrv_init(void)
{
    bdrv_register(&bdrv_file);
    bdrv_register(&bdrv_host_device);
    bdrv_register(&bdrv_host_cdrom);
    bdrv_register(&bdrv_null_co);
    bdrv_register(&bdrv_null_aio);
    bdrv_register(&bdrv_raw);
    bdrv_register(&bdrv_qcow2);
    bdrv_register(&bdrv_throttle);
    bdrv_register(&bdrv_preallocate);
    bdrv_register(&bdrv_blkdebug);
    bdrv_register(&bdrv_copy_on_read);
    bdrv_register(&bdrv_crash_sim);
    bdrv_register(&bdrv_compress);
    bdrv_register(&bdrv_quorum);
    /* last: a real driver registered above shadows its entry (lookups
     * and probes take the first of equals) */
    for (const BlockDriver *d = bdrv_probe_only_formats; d->format_name;
         d++) {
        bdrv_register(d);
    }
}

const BlockDriver *bdrv_driver_at(unsigned i)
{
    if (!drivers || i >= drivers->len) {
        return NULL;
    }
    return g_ptr_array_index(drivers, i);
}

const BlockDriver *bdrv_find_format(const char *name)
{
    const BlockDriver *drv;

    for (unsigned i = 0; name && (drv = bdrv_driver_at(i)); i++) {
        if (!strcmp(drv->format_name, name)) {
            return drv;
        }
    }
    return NULL;
}

const char *bdrv_driver_name(const BlockDriver *drv)
{
    return drv ? drv->format_name : NULL;
}

/* Device nodes are claimed by the driver whose probe_device scores best,
 * even when the name contains a colon. */
static const BlockDriver *find_hdev_driver(const char *filename)
{
    const BlockDriver *drv, *best = NULL;
    int score, best_score = 0;

    for (unsigned i = 0; (drv = bdrv_driver_at(i)); i++) {
        if (drv->probe_device) {
            score = drv->probe_device(filename);
            if (score > best_score) {
                best_score = score;
                best = drv;
            }
        }
    }
    return best;
}

/* "proto:rest" has a protocol unless a '/' comes before the first ':'. */
static bool path_has_protocol(const char *path)
{
    const char *p = path + strcspn(path, ":/");

    return *p == ':';
}

const BlockDriver *bdrv_find_protocol(const char *filename, bool allow_prefix,
                                      Error **errp)
{
    const BlockDriver *drv;
    g_autofree char *proto = NULL;

    drv = find_hdev_driver(filename);
    if (drv) {
        return drv;
    }
    if (!path_has_protocol(filename) || !allow_prefix) {
        return &bdrv_file;
    }
    proto = g_strndup(filename, strchr(filename, ':') - filename);
    for (unsigned i = 0; (drv = bdrv_driver_at(i)); i++) {
        if (drv->protocol_name && !strcmp(drv->protocol_name, proto)) {
            return drv;
        }
    }
    error_setg(errp, "Unknown protocol '%s'", proto);
    return NULL;
}

static gint compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void bdrv_iterate_format(void (*fn)(void *opaque, const char *name),
                         void *opaque, bool read_only_too)
{
    const BlockDriver *drv;
    g_autoptr(GPtrArray) names = g_ptr_array_new();

    for (unsigned i = 0; (drv = bdrv_driver_at(i)); i++) {
        if ((!read_only_too && drv->read_only_driver) ||
            drv->not_yet_supported || drv->test_only) {
            continue;
        }
        g_ptr_array_add(names, (gpointer)drv->format_name);
    }
    g_ptr_array_sort(names, compare_names);
    for (unsigned i = 0; i < names->len; i++) {
        fn(opaque, g_ptr_array_index(names, i));
    }
}

bool bdrv_not_yet_supported_error(const BlockDriver *drv, Error **errp)
{
    if (!drv || !drv->not_yet_supported) {
        return false;
    }
    error_setg(errp, "The '%s' format is not supported by this build yet",
               drv->format_name);
    return true;
}

const BlockDriver *bdrv_probe_format(const uint8_t *buf, int buf_size,
                                     const char *filename)
{
    const BlockDriver *drv, *best = NULL;
    int score, best_score = 0;

    for (unsigned i = 0; (drv = bdrv_driver_at(i)); i++) {
        if (drv->probe) {
            score = drv->probe(buf, buf_size, filename);
            if (score > best_score) {
                best_score = score;
                best = drv;
            }
        }
    }
    return best;
}

/* ---- nodes ---- */

BlockDriverState *bdrv_new(void)
{
    BlockDriverState *bs = g_new0(BlockDriverState, 1);

    bs->refcnt = 1;
    bs->total_bytes = -1;
    bs->children = g_ptr_array_new();
    bs->parents = g_ptr_array_new();
    bs->ctx = aio_get_default();
    bs->bl.request_alignment = 1;
    co_queue_init(&bs->tracked_wait);
    co_queue_init(&bs->flush_queue);
    co_mutex_init(&bs->flush_lock);
    return bs;
}

/* Node names follow QEMU's id rules: a letter, then letters, digits,
 * '-', '.' and '_'. */
static bool node_name_wellformed(const char *name)
{
    if (!g_ascii_isalpha(name[0])) {
        return false;
    }
    for (const char *p = name + 1; *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr("-._", *p)) {
            return false;
        }
    }
    return true;
}

int bdrv_assign_node_name(BlockDriverState *bs, const char *name, Error **errp)
{
    if (!name) {
        bs->node_name = g_strdup_printf("#block%" G_GUINT64_FORMAT "%02d",
                                        node_name_counter++,
                                        g_random_int_range(0, 100));
    } else if (!node_name_wellformed(name)) {
        error_setg(errp, "Invalid node-name: '%s'", name);
        return -EINVAL;
    } else if (bdrv_find_node(name)) {
        error_setg(errp, "Duplicate nodes with node-name='%s'", name);
        return -EINVAL;
    } else if (strlen(name) >= 32) {
        error_setg(errp, "Node name too long");
        return -EINVAL;
    } else {
        bs->node_name = g_strdup(name);
    }
    all_nodes = g_list_append(all_nodes, bs);
    return 0;
}

BlockDriverState *bdrv_find_node(const char *node_name)
{
    for (GList *l = all_nodes; l && node_name; l = l->next) {
        BlockDriverState *bs = l->data;
        if (!strcmp(bs->node_name, node_name)) {
            return bs;
        }
    }
    return NULL;
}

/* Children go first (they may be shared), then the driver state. */
static void bdrv_close(BlockDriverState *bs)
{
    if (bs->drv && bs->drv->close && bs->opaque) {
        bs->drv->close(bs);
    }
    bdrv_release_all_dirty_bitmaps(bs);
    while (bs->children->len) {
        bdrv_unref_child(bs, g_ptr_array_index(bs->children,
                                               bs->children->len - 1));
    }
    g_clear_pointer(&bs->opaque, g_free);
}

void bdrv_delete(BlockDriverState *bs)
{
    g_assert(bs->parents->len == 0);
    bdrv_close(bs);
    all_nodes = g_list_remove(all_nodes, bs);
    g_ptr_array_unref(bs->children);
    g_ptr_array_unref(bs->parents);
    qobject_unref(bs->options);
    qobject_unref(bs->explicit_options);
    qobject_unref(bs->full_options);
    g_free(bs->node_name);
    g_free(bs->filename);
    g_free(bs->exact_filename);
    g_free(bs->probed_format_hint);
    g_free(bs->backing_file);
    g_free(bs->backing_format);
    g_free(bs->auto_backing_file);
    g_free(bs);
}

void bdrv_ref(BlockDriverState *bs)
{
    bs->refcnt++;
}

void bdrv_unref(BlockDriverState *bs)
{
    if (!bs) {
        return;
    }
    g_assert(bs->refcnt > 0);
    if (--bs->refcnt == 0) {
        bdrv_delete(bs);
    }
}

/* Nodes nobody else holds are the roots: dropping them closes the rest. */
void bdrv_close_all(void)
{
    bool progress = true;

    while (all_nodes && progress) {
        progress = false;
        for (GList *l = all_nodes; l; l = l->next) {
            BlockDriverState *bs = l->data;
            if (bs->parents->len == 0) {
                bdrv_unref(bs);
                progress = true;
                break;
            }
        }
    }
}

/* ---- accessors ---- */

const char *bdrv_get_format_name(const BlockDriverState *bs)
{
    return bs && bs->drv ? bs->drv->format_name : NULL;
}

const char *bdrv_get_node_name(const BlockDriverState *bs)
{
    return bs->node_name ? bs->node_name : "";
}

/* bs->filename: during open what the node was opened from, afterwards
 * the name bdrv_refresh_filename() gave it. */
const char *bdrv_get_filename(const BlockDriverState *bs)
{
    return bs->filename ? bs->filename : "";
}

/* Forget the cached length of @bs and every node below it: the next
 * query asks the drivers (after a reopen, as the reference re-reads). */
void bdrv_forget_lengths(BlockDriverState *bs)
{
    if (!bs) {
        return;
    }
    bs->total_bytes = -1;
    for (unsigned i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);

        bdrv_forget_lengths(c->bs);
    }
}

/* A medium in @bs and every node below it? */
bool bdrv_is_inserted(BlockDriverState *bs)
{
    if (!bs || !bs->drv) {
        return false;
    }
    if (bs->drv->media && bs->drv->media->is_inserted &&
        !bs->drv->media->is_inserted(bs)) {
        return false;
    }
    for (unsigned i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);

        if (!bdrv_is_inserted(c->bs)) {
            return false;
        }
    }
    return true;
}

bool bdrv_is_read_only(const BlockDriverState *bs)
{
    return bs->read_only;
}

BlockDriverState *bdrv_file_bs(const BlockDriverState *bs)
{
    return bs->file ? bs->file->bs : NULL;
}

BlockDriverState *bdrv_backing_bs(const BlockDriverState *bs)
{
    return bs->backing ? bs->backing->bs : NULL;
}

BdrvChild *bdrv_child_by_role(const BlockDriverState *bs,
                              BdrvChildRole role)
{
    for (guint i = 0; i < bs->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->children, i);
        if (c->role & role) {
            return c;
        }
    }
    return NULL;
}

BdrvChild *bdrv_filter_child(const BlockDriverState *bs)
{
    if (!bs || !bs->drv || bs->drv->kind != BDRV_KIND_FILTER) {
        return NULL;
    }
    if (bs->drv->is_filter_for_backing) {
        return bs->backing;
    }
    return bs->file ? bs->file : bdrv_child_by_role(bs, BDRV_CHILD_FILTERED);
}

const BlockDriverIO *bdrv_driver_io(const BlockDriver *drv)
{
    static const BlockDriverIO none;

    return drv && drv->io ? drv->io : &none;
}

int bdrv_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    const BlockDriverInfoOps *ops = bs && bs->drv ? bs->drv->info : NULL;
    BdrvChild *c;

    memset(bdi, 0, sizeof(*bdi));
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    if (ops && ops->get_info) {
        return ops->get_info(bs, bdi);
    }
    c = bs->drv->kind == BDRV_KIND_FILTER
        ? bdrv_child_by_role(bs, BDRV_CHILD_FILTERED) : NULL;
    return c ? bdrv_get_info(c->bs, bdi) : -ENOTSUP;
}

typedef struct CheckCo {
    BlockDriverState *bs;
    BlockCheckResult *res;
    int fix;
    int ret;
} CheckCo;

static void coroutine_fn check_entry(void *opaque)
{
    CheckCo *c = opaque;

    c->ret = c->bs->drv->check->co_check(c->bs, c->res, c->fix);
}

bool bdrv_format_supports_compression(const BlockDriver *drv)
{
    return drv && drv->supports_compression;
}

bool bdrv_can_write_compressed(const BlockDriverState *bs)
{
    return bs && (bs->supported_write_flags & BDRV_REQ_WRITE_COMPRESSED);
}

bool bdrv_allocates_in_order(const BlockDriverState *bs)
{
    return bs && (bs->supported_write_flags & BDRV_REQ_ALLOC_IN_ORDER);
}

bool bdrv_can_check(const BlockDriverState *bs)
{
    return bs && bs->drv && bs->drv->check && bs->drv->check->co_check;
}

int bdrv_check(BlockDriverState *bs, BlockCheckResult *res, int fix)
{
    CheckCo c = { bs, res, fix, 0 };

    memset(res, 0, sizeof(*res));
    if (!bs || !bs->drv) {
        return -ENOMEDIUM;
    }
    if (!bdrv_can_check(bs)) {
        return -ENOTSUP;
    }
    co_run_sync(check_entry, &c);
    return c.ret;
}

const BlockOptDesc *bdrv_amend_opts(const BlockDriver *drv)
{
    return drv && drv->amend && drv->amend->amend ? drv->amend->opts : NULL;
}

int bdrv_amend_options(BlockDriverState *bs, QDict *opts,
                       BlockAmendStatusCB *cb, void *cb_opaque, bool force,
                       Error **errp)
{
    if (!bs || !bs->drv) {
        error_setg(errp, "Node is ejected");
        return -ENOMEDIUM;
    }
    if (!bdrv_amend_opts(bs->drv)) {
        error_setg(errp, "Block driver '%s' does not support option "
                   "amendment", bs->drv->format_name);
        return -ENOTSUP;
    }
    return bs->drv->amend->amend(bs, opts, cb, cb_opaque, force, errp);
}

BlockDriverState *bdrv_skip_filters(BlockDriverState *bs)
{
    BdrvChild *c;

    while (bs && (c = bdrv_filter_child(bs))) {
        bs = c->bs;
    }
    return bs;
}

const char *bdrv_strip_protocol_prefix(const char *filename, const char *proto)
{
    size_t len = strlen(proto);

    if (!strncmp(filename, proto, len) && filename[len] == ':') {
        return filename + len + 1;
    }
    return filename;
}

/* ---- what tools may ask of drivers and nodes (block.h) ---- */

const BlockOptDesc *bdrv_create_opts(const BlockDriver *drv)
{
    return drv ? drv->create_opts : NULL;
}

bool bdrv_supports_backing(const BlockDriver *drv)
{
    return drv && drv->supports_backing;
}

int bdrv_measure(const BlockDriver *drv, QDict *opts, BlockDriverState *in_bs,
                 BlockMeasureInfo *info, Error **errp)
{
    if (!drv->measure || !drv->measure->measure) {
        error_setg(errp, "Block driver '%s' does not support size measurement",
                   drv->format_name);
        return -ENOTSUP;
    }
    return drv->measure->measure(opts, in_bs, info, errp);
}

QDict *bdrv_get_specific_info(BlockDriverState *bs, Error **errp)
{
    const BlockDriverInfoOps *ops = bs && bs->drv ? bs->drv->info : NULL;

    if (!ops || !ops->get_specific_info) {
        return NULL;
    }
    return ops->get_specific_info(bs, errp);
}

const char *bdrv_get_protocol_name(const BlockDriverState *bs)
{
    return bs && bs->drv ? bs->drv->protocol_name : NULL;
}

bool bdrv_format_probed(const BlockDriverState *bs)
{
    return bs->probed;
}

const BlockLimits *bdrv_get_limits(const BlockDriverState *bs)
{
    return &bs->bl;
}

BlockDriverState *bdrv_child_at(const BlockDriverState *bs, unsigned i,
                                const char **name)
{
    BdrvChild *c;

    if (!bs->children || i >= bs->children->len) {
        return NULL;
    }
    c = g_ptr_array_index(bs->children, i);
    if (name) {
        *name = c->name;
    }
    return c->bs;
}

QDict *bdrv_get_options(const BlockDriverState *bs)
{
    return bs->options;
}

int bdrv_get_flags(const BlockDriverState *bs)
{
    return bs->open_flags;
}

DetectZeroes bdrv_get_detect_zeroes(const BlockDriverState *bs)
{
    return bs->detect_zeroes;
}

void bdrv_reopen_set_flags(BlockDriverState *bs, int flags, DetectZeroes dz)
{
    const int kept = BDRV_O_RDWR | BDRV_O_NOCACHE;

    bs->open_flags = (flags & ~kept) | (bs->open_flags & kept);
    bs->detect_zeroes = dz;
}
