#include "config.h"
/*
 * qcow2 image creation: the option schema (its order is the order of the
 * "Formatting ..." line), checks with the reference's messages, a minimal
 * image of header + refcount table + refcount block written through the
 * protocol, then the image opened as qcow2 to write the full header, grow
 * the L1 table to the disk size and preallocate.
 */
#include "qcow2.h"

const BlockOptDesc qcow2_create_opts[] = {
    { "encryption", OPT_BOOL, "Encrypt the image with format 'aes'. "
      "(Deprecated in favor of encrypt.format=aes)", NULL },
    { "encrypt.format", OPT_STRING,
      "Encrypt the image, format choices: 'aes', 'luks'", NULL },
    { "encrypt.key-secret", OPT_STRING,
      "ID of secret providing qcow AES key or LUKS passphrase", NULL },
    { "encrypt.cipher-alg", OPT_STRING,
      "Name of encryption cipher algorithm", NULL },
    { "encrypt.cipher-mode", OPT_STRING, "Name of encryption cipher mode",
      NULL },
    { "encrypt.ivgen-alg", OPT_STRING, "Name of IV generator algorithm",
      NULL },
    { "encrypt.ivgen-hash-alg", OPT_STRING,
      "Name of IV generator hash algorithm", NULL },
    { "encrypt.hash-alg", OPT_STRING, "Name of encryption hash algorithm",
      NULL },
    { "encrypt.iter-time", OPT_NUMBER,
      "Time to spend in PBKDF in milliseconds", NULL },
    { "cluster_size", OPT_SIZE, "qcow2 cluster size", "65536" },
    { "extended_l2", OPT_BOOL, "Extended L2 tables", "off" },
    { "preallocation", OPT_STRING, "Preallocation mode (allowed values: off, "
      "metadata, falloc, full)", NULL },
    { "compression_type", OPT_STRING,
      "Compression method used for image cluster compression", "zlib" },
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "compat", OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])",
      NULL },
    { "backing_file", OPT_STRING, "File name of a base image", NULL },
    { "backing_fmt", OPT_STRING, "Image format of the base image", NULL },
    { "data_file", OPT_STRING, "File name of an external data file", NULL },
    { "data_file_raw", OPT_BOOL,
      "The external data file must stay valid as a raw image", NULL },
    { "lazy_refcounts", OPT_BOOL, "Postpone refcount updates", "off" },
    { "refcount_bits", OPT_NUMBER,
      "Width of a reference count entry in bits", "16" },
    { NULL },
};

static const char *v3_needed = "compatibility level 1.1 and above "
                               "(use version=v3 or greater)";

/* compat / preallocation / compression_type: enumerations, in the
 * reference's order. */
static int parse_enums(QDict *opts, Qcow2CreateArgs *a, Error **errp)
{
    const char *compat = bdrv_opt_str(opts, "compat", "1.1");
    const char *ct = bdrv_opt_str(opts, "compression_type", "zlib");
    const char *pa = bdrv_opt_str(opts, "preallocation", "off");

    if (!strcmp(compat, "0.10") || !strcmp(compat, "v2")) {
        a->version = 2;
    } else if (!strcmp(compat, "1.1") || !strcmp(compat, "v3")) {
        a->version = 3;
    } else {
        error_setg(errp, "Parameter 'version' does not accept value '%s'",
                   compat);
        return -EINVAL;
    }
    if (!prealloc_mode_parse(pa, &a->prealloc)) {
        error_setg(errp, "Parameter 'preallocation' does not accept value "
                   "'%s'", pa);
        return -EINVAL;
    }
    if (!strcmp(ct, "zlib")) {
        a->ctype = QCOW2_COMPRESSION_ZLIB;
    } else if (!strcmp(ct, "zstd")) {
        a->ctype = QCOW2_COMPRESSION_ZSTD;
    } else {
        error_setg(errp, "Parameter 'compression-type' does not accept "
                   "value '%s'", ct);
        return -EINVAL;
    }
    return 0;
}

/* Sizes, numbers and booleans. */
static int parse_values(QDict *opts, Qcow2CreateArgs *a, Error **errp)
{
    Error *e = NULL;

    a->size = bdrv_opt_size(opts, "size", 0, &e);
    if (!e) {
        a->cluster_size = bdrv_opt_size(opts, "cluster_size", 65536, &e);
    }
    if (!e) {
        a->refcount_bits = bdrv_opt_number(opts, "refcount_bits", 16, &e);
    }
    if (!e) {
        a->lazy = bdrv_opt_bool(opts, "lazy_refcounts", false, &e);
    }
    if (!e) {
        a->extended_l2 = bdrv_opt_bool(opts, "extended_l2", false, &e);
    }
    if (!e) {
        a->data_file_raw = bdrv_opt_bool(opts, "data_file_raw", false, &e);
    }
    if (e) {
        error_propagate(errp, e);
        return -EINVAL;
    }
    a->backing_file = bdrv_opt_str(opts, "backing_file", NULL);
    a->backing_fmt = bdrv_opt_str(opts, "backing_fmt", NULL);
    a->data_file = bdrv_opt_str(opts, "data_file", NULL);
    return 0;
}

/* Encryption: refused for now, after the reference's own checks. */
static int check_encrypt(QDict *opts, Error **errp)
{
    Error *e = NULL;
    bool enc = bdrv_opt_bool(opts, "encryption", false, &e);
    const char *fmt = bdrv_opt_str(opts, "encrypt.format", NULL);

    if (e) {
        error_propagate(errp, e);
        return -EINVAL;
    }
    if (qdict_haskey(opts, "encryption") && fmt) {
        error_setg(errp, "'encrypt.format' and its alias 'encryption' can't "
                   "be used at the same time");
        return -EINVAL;
    }
    if ((enc || fmt) && !qdict_haskey(opts, "encrypt.key-secret")) {
        /* the reference asks for the key before anything else */
        error_setg(errp, "Parameter 'encrypt.key-secret' is required for "
                   "cipher");
        return -EINVAL;
    }
    if (enc || fmt) {
        error_setg(errp, "Creating encrypted qcow2 images is not supported");
        return -ENOTSUP;
    }
    return 0;
}

/* Extended L2 entries and the cluster size: the reference's first
 * checks, the version one before the cluster size is looked at. */
static int check_cluster_layout(const Qcow2CreateArgs *a, Error **errp)
{
    if (a->extended_l2 && a->version < 3) {
        error_setg(errp, "Extended L2 entries are only supported with %s",
                   v3_needed);
        return -EINVAL;
    }
    if (a->cluster_size < 512 || a->cluster_size > 2 * MiB ||
        !QEMU_IS_POW2(a->cluster_size)) {
        error_setg(errp, "Cluster size must be a power of two between 512 "
                   "and 2048k");
        return -EINVAL;
    }
    if (a->extended_l2 && a->cluster_size < 16384) {
        error_setg(errp, "Extended L2 entries are only supported with "
                   "cluster sizes of at least 16384 bytes");
        return -EINVAL;
    }
    return 0;
}

/* A backing file with preallocation or a format alone. */
static int check_backing(const Qcow2CreateArgs *a, Error **errp)
{
    if (a->backing_file && a->prealloc != PREALLOC_MODE_OFF &&
        !a->extended_l2) {
        /* preallocated clusters would hide the backing file's data */
        error_setg(errp, "Backing file and preallocation can only be used "
                   "at the same time if extended_l2 is on");
        return -EINVAL;
    }
    if (a->backing_fmt && !a->backing_file) {
        error_setg(errp, "Backing format cannot be used without backing "
                   "file");
        return -EINVAL;
    }
    return 0;
}

/* Lazy refcounts and refcount width. */
static int check_refcounts(const Qcow2CreateArgs *a, Error **errp)
{
    if (a->version < 3 && a->lazy) {
        error_setg(errp, "Lazy refcounts only supported with %s", v3_needed);
        return -EINVAL;
    }
    if (a->refcount_bits > 64 || !QEMU_IS_POW2(a->refcount_bits)) {
        error_setg(errp, "Refcount width must be a power of two and may not "
                   "exceed 64 bits");
        return -EINVAL;
    }
    if (a->version < 3 && a->refcount_bits != 16) {
        error_setg(errp, "Different refcount widths than 16 bits require "
                   "compatibility level 1.1 or above (use version=v3 or "
                   "greater)");
        return -EINVAL;
    }
    return 0;
}

/* External data file options (data-file-raw's before the version's). */
static int check_data_file(const Qcow2CreateArgs *a, Error **errp)
{
    if (a->data_file_raw && !a->data_file) {
        error_setg(errp, "data-file-raw requires data-file");
        return -EINVAL;
    }
    if (a->data_file_raw && a->backing_file) {
        error_setg(errp, "Backing file and data-file-raw cannot be used at "
                   "the same time");
        return -EINVAL;
    }
    if (a->version < 3 && a->data_file) {
        error_setg(errp, "External data files are only supported with %s",
                   v3_needed);
        return -EINVAL;
    }
    return 0;
}

/* Compression type. */
static int check_compression(const Qcow2CreateArgs *a, Error **errp)
{
    if (a->version < 3 && a->ctype != QCOW2_COMPRESSION_ZLIB) {
        error_setg(errp, "Non-zlib compression type is only supported with %s",
                   v3_needed);
        return -EINVAL;
    }
    return 0;
}

/* Combinations, in the reference's order of checks (probed pairwise
 * against it: extended L2 with v2 comes even before the cluster size). */
static int check_args(const Qcow2CreateArgs *a, Error **errp)
{
    int (*const checks[])(const Qcow2CreateArgs *, Error **) = {
        check_cluster_layout, check_backing, check_refcounts,
        check_data_file, check_compression,
    };

    for (size_t i = 0; i < G_N_ELEMENTS(checks); i++) {
        int ret = checks[i](a, errp);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* The first three clusters: header (no L1 yet), refcount table,
 * refcount block counting those three. */
static void build_initial(const Qcow2CreateArgs *a, uint8_t *buf)
{
    uint64_t cs = a->cluster_size;
    int order = __builtin_ctzll(a->refcount_bits);
    BDRVQcow2State tmp = { .refcount_bits = a->refcount_bits };

    q_st32(buf, QCOW_MAGIC);
    q_st32(buf + 4, a->version);
    q_st32(buf + 20, __builtin_ctzll(cs));
    q_st64(buf + 48, cs);
    q_st32(buf + 56, 1);
    if (a->version >= 3) {
        q_st64(buf + 72, (a->ctype ? QCOW2_INCOMPAT_COMPRESSION : 0) |
               (a->extended_l2 ? QCOW2_INCOMPAT_EXTL2 : 0) |
               (a->data_file ? QCOW2_INCOMPAT_DATA_FILE : 0));
        q_st64(buf + 80, a->lazy ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0);
        q_st64(buf + 88, a->data_file_raw ? QCOW2_AUTOCLEAR_DATA_RAW : 0);
        q_st32(buf + 96, order);
        q_st32(buf + 100, 112);
        buf[104] = a->ctype;
    }
    q_st64(buf + cs, 2 * cs);
    for (int i = 0; i < 3; i++) {
        qcow2_set_refcount_entry(&tmp, buf + 2 * cs, i, 1);
    }
}

/* The protocol file, made before any option is checked (as the
 * reference makes it: its errors come first). */
static int coroutine_fn create_protocol_file(const char *filename,
                                             QDict *opts, Error **errp)
{
    g_autoptr(QDict) fopts = qdict_new();

    for (const char *const *k = (const char *const[]){ "nocow",
             "extent_size_hint", NULL }; *k; k++) {
        if (qdict_haskey(opts, *k)) {
            qdict_put_str(fopts, *k, qdict_get_try_str(opts, *k));
        }
    }
    return bdrv_create_file(filename, fopts, errp);
}

/* The initial clusters into the new protocol file. */
static int coroutine_fn write_initial(const char *filename,
                                      const Qcow2CreateArgs *a, Error **errp)
{
    g_autofree uint8_t *buf = g_malloc0(3 * a->cluster_size);
    BlockBackend *blk;
    int ret;

    blk = blk_new_open(filename, NULL, NULL, BDRV_O_RDWR | BDRV_O_PROTOCOL,
                       errp);
    if (!blk) {
        return -EIO;
    }
    blk_set_allow_write_beyond_eof(blk, true);
    build_initial(a, buf);
    /* The refcount table and block first, the header last: a create
     * killed in between leaves a file that is not yet a qcow2, never a
     * header pointing at a refcount block the file does not hold (one
     * write can land partly: the kernel stops copying pages for a
     * killed process). */
    ret = blk_co_pwrite(blk, a->cluster_size, 2 * a->cluster_size,
                        buf + a->cluster_size, 0);
    if (ret >= 0) {
        ret = blk_co_pwrite(blk, 0, a->cluster_size, buf, 0);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write qcow2 header");
    }
    blk_unref(blk);
    return ret;
}

/* The external data file, created as a raw image of the disk size; with
 * falloc/full empty, as the reference's: the preallocation then extends
 * it with the mode.  It comes right after the image file, before any
 * qcow2 option is checked, as with the reference (a refused create then
 * removes it too); a preallocation mode that does not parse fails the
 * create later. */
static int coroutine_fn create_data_file(QDict *opts, const char *name,
                                         Error **errp)
{
    g_autoptr(QDict) o = qdict_new();
    PreallocMode mode = PREALLOC_MODE_OFF;
    uint64_t size = bdrv_opt_size(opts, "size", 0, NULL);
    g_autofree char *sz = NULL;

    prealloc_mode_parse(bdrv_opt_str(opts, "preallocation", "off"), &mode);
    if (mode == PREALLOC_MODE_FALLOC || mode == PREALLOC_MODE_FULL ||
        size > INT64_MAX) {
        size = 0;
    }
    sz = g_strdup_printf("%" PRIu64,
                         (uint64_t)ROUND_UP(size, BDRV_SECTOR_SIZE));
    qdict_put_str(o, "size", sz);
    return bdrv_create_file(name, o, errp);
}

/* The name the header stores and the image opens: the reference stores
 * the opened data file node's name, as its protocol parses it ("file:"
 * goes, "file:a:b" becomes "./a:b"). */
static char *data_file_node_name(const char *name)
{
    const BlockDriver *drv = bdrv_find_protocol(name, true, NULL);
    g_autoptr(QDict) o = qdict_new();
    const char *fn;

    if (drv && drv->parse_filename && !strcmp(bdrv_driver_name(drv), "file")) {
        drv->parse_filename(name, o, NULL);
    }
    fn = qdict_get_try_str(o, "filename");
    return g_strdup(fn ? fn : name);
}

/* With metadata preallocation the file grows over each new run at once,
 * before an L2 table pointing into the run can reach the disk (a cache
 * eviction during the next run): a process killed in between leaves no
 * entry past the end of the file, only leaked clusters. */
static int coroutine_fn grow_over_run(BlockDriverState *bs, int64_t end)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t len = bdrv_co_getlength(s->data_file->bs);

    /* never shorter: new refcount blocks may lie past the run */
    if (len < 0 || end <= len) {
        return len < 0 ? (int)len : 0;
    }
    return bdrv_co_truncate(s->data_file, end, false, PREALLOC_MODE_OFF, 0,
                            NULL);
}

/* Where the file must reach for a run of host clusters ending at @host
 * and covering guest bytes up to @end: with extended L2 only the last
 * cluster's subclusters up to @end are allocated, and the reference's
 * file ends with them. */
static int64_t used_end(BDRVQcow2State *s, uint64_t end, int64_t host)
{
    uint64_t in = qcow2_offset_into_cluster(s, end);

    if (!s->extended_l2 || !in) {
        return host;
    }
    return host - s->cluster_size + ROUND_UP(in, s->subcluster_size);
}

/* Host clusters for guest bytes [from, to) (lock taken); where the file
 * must reach for them in *last_end.  @grow (metadata mode): the file is
 * kept covering them (else it is extended later) and zero clusters keep
 * reading as zeroes (else their host clusters do). */
static int coroutine_fn alloc_all(BlockDriverState *bs, uint64_t from,
                                  uint64_t to, int64_t *last_end, bool grow)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t off = from;
    int64_t host;
    int ret = 0;

    co_mutex_lock(&s->lock);
    while (off < to && ret == 0) {
        ret = qcow2_alloc_range(bs, off, to - off, &host, grow);
        if (ret > 0 && host) {
            *last_end = MAX(*last_end, used_end(s, off + ret, host));
        }
        if (ret > 0) {
            off += ret;
            ret = grow ? grow_over_run(bs, *last_end) : 0;
        }
    }
    co_mutex_unlock(&s->lock);
    return ret;
}

/* ---- the edges of a metadata preallocation ---- */

/* The reference allocates metadata preallocation's clusters as writes of
 * [from, to) allocate them, copy on write included: a new cluster (or
 * subcluster, with extended L2) cut by @from or @to gets the guest data
 * around the range written into it (the backing file's, or zeroes),
 * also past the virtual end.  Only the file sees those bytes; they are
 * the same bytes.  PrealloCow: one such edge. */
typedef struct PreallocCow {
    uint64_t guest, len;        /* len 0: none */
} PreallocCow;

static uint64_t prealloc_unit(BDRVQcow2State *s)
{
    return s->extended_l2 ? s->subcluster_size : s->cluster_size;
}

/* Is the cluster at @guest one that preallocation allocates (no host
 * cluster yet)?  Lock taken. */
static bool coroutine_fn prealloc_allocates(BlockDriverState *bs,
                                            uint64_t guest)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cur = 1, host = 0;
    Qcow2SubclusterType type;
    int ret;

    co_mutex_lock(&s->lock);
    ret = qcow2_get_host_offset(bs, guest, &cur, &host, &type);
    co_mutex_unlock(&s->lock);
    /* extended L2: an unallocated subcluster of a cluster that has its
     * host cluster is allocated (and copied on write) all the same */
    return ret == 0 && (type == QCOW2_SC_UNALLOC_PLAIN ||
                        type == QCOW2_SC_ZERO_PLAIN ||
                        type == QCOW2_SC_UNALLOC_ALLOC);
}

/* The file reaches the host position of @to, as the reference extends it
 * after allocating (its copy on write may then go further): also when
 * the last cluster had its host cluster already. */
static int coroutine_fn prealloc_reach(BlockDriverState *bs, uint64_t to)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cur = 1, host = 0;
    Qcow2SubclusterType type;
    int ret;

    co_mutex_lock(&s->lock);
    ret = qcow2_get_host_offset(bs, to - 1, &cur, &host, &type);
    co_mutex_unlock(&s->lock);
    if (ret < 0 || (type != QCOW2_SC_NORMAL &&
                    type != QCOW2_SC_UNALLOC_ALLOC &&
                    type != QCOW2_SC_ZERO_ALLOC)) {
        return ret < 0 ? ret : 0;
    }
    return grow_over_run(bs, host + 1);
}

/* The two edges of [from, to), before anything is allocated. */
static void coroutine_fn prealloc_edges(BlockDriverState *bs, uint64_t from,
                                        uint64_t to, PreallocCow cow[2])
{
    uint64_t unit = prealloc_unit(bs->opaque);
    uint64_t head = from % unit, tail = to % unit;

    cow[0] = (PreallocCow){ 0, 0 };
    cow[1] = (PreallocCow){ 0, 0 };
    if (head && prealloc_allocates(bs, from)) {
        cow[0] = (PreallocCow){ from - head, head };
    }
    if (tail && prealloc_allocates(bs, to - 1)) {
        cow[1] = (PreallocCow){ to, unit - tail };
    }
}

/* Copy one edge into its newly allocated host cluster. */
static int coroutine_fn prealloc_copy_edge(BlockDriverState *bs,
                                           const PreallocCow *c)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *buf = NULL;
    uint64_t cur = c->len, host = 0;
    Qcow2SubclusterType type;
    int64_t blen;
    int ret;

    if (!c->len) {
        return 0;
    }
    co_mutex_lock(&s->lock);
    ret = qcow2_get_host_offset(bs, c->guest, &cur, &host, &type);
    co_mutex_unlock(&s->lock);
    /* extended L2: the host cluster is there, its subclusters are not
     * marked allocated, yet the reference's copy is written */
    if (ret < 0 || (type != QCOW2_SC_NORMAL &&
                    type != QCOW2_SC_UNALLOC_ALLOC) || cur < c->len) {
        return ret < 0 ? ret : 0;
    }
    buf = g_malloc0(c->len);
    blen = bs->backing ? bdrv_co_getlength(bs->backing->bs) : 0;
    if (blen > 0 && c->guest < (uint64_t)blen) {
        ret = q_pread(bs->backing, c->guest,
                      MIN(c->len, (uint64_t)blen - c->guest), buf);
        if (ret < 0) {
            return ret;
        }
    }
    return q_pwrite(s->data_file, host, c->len, buf);
}

/* Preallocation through the allocator: metadata mode, and falloc/full
 * with an external data file.  L2 tables and data clusters for guest
 * bytes [from, to), the new clusters' edges copied as the reference's
 * copy on write copies them, the file extended over them (with @mode,
 * metadata: none); with falloc/full the copy comes first, as the
 * reference's, so that a copy past the file's end leaves nothing for
 * the mode to reserve. */
int coroutine_fn qcow2_preallocate(BlockDriverState *bs, uint64_t from,
                                   uint64_t to, PreallocMode mode,
                                   Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    bool meta = mode == PREALLOC_MODE_METADATA;
    int64_t last_end = 0, old_end = 0;
    PreallocCow cow[2] = { { 0, 0 }, { 0, 0 } };
    int ret;

    prealloc_edges(bs, from, to, cow);
    ret = alloc_all(bs, from, to, &last_end, meta);
    if (ret == 0) {
        ret = qcow2_co_flush_to_os(bs);
    }
    for (int i = 0; i < 2 && ret == 0 && !meta; i++) {
        ret = prealloc_copy_edge(bs, &cow[i]);
    }
    if (ret == 0) {
        old_end = bdrv_co_getlength(s->data_file->bs);
        ret = old_end < 0 ? (int)old_end : 0;
    }
    if (ret == 0 && last_end > old_end) {
        ret = bdrv_co_truncate(s->data_file, last_end, false,
                               meta ? PREALLOC_MODE_OFF : mode, 0, errp);
    }
    if (ret == 0 && meta && to > from) {
        ret = prealloc_reach(bs, to);
    }
    for (int i = 0; i < 2 && ret == 0 && meta; i++) {
        ret = prealloc_copy_edge(bs, &cow[i]);
    }
    if (ret < 0 && errp && !*errp) {
        error_setg_errno(errp, -ret, "Could not preallocate metadata");
    }
    return ret;
}

/* The new image opened as qcow2, writable past its end, no backing. */
static BlockBackend *open_new_image(const char *filename,
                                    const Qcow2CreateArgs *a, Error **errp)
{
    QDict *o = qdict_new();
    BlockBackend *blk;

    qdict_put_str(o, "driver", "qcow2");
    if (a->data_file) {
        qdict_put_str(o, "data-file.filename", a->data_file);
    }
    blk = blk_new_open(filename, NULL, o,
                       BDRV_O_RDWR | BDRV_O_NO_BACKING | BDRV_O_RESIZE, errp);
    if (blk) {
        blk_set_allow_write_beyond_eof(blk, true);
    }
    return blk;
}

/* Full header (extensions, backing file), then the L1 table for the
 * disk size. */
static int coroutine_fn write_header_and_l1(BlockDriverState *bs,
                                            const Qcow2CreateArgs *a,
                                            Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    g_free(bs->backing_file);
    g_free(bs->backing_format);
    bs->backing_file = g_strdup(a->backing_file);
    bs->backing_format = g_strdup(a->backing_fmt);
    s->image_data_file = g_strdup(a->data_file);
    s->h.size = a->size;
    ret = qcow2_update_header(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write qcow2 header");
        return ret;
    }
    co_mutex_lock(&s->lock);
    ret = qcow2_grow_l1_table(bs, qcow2_l1_entries(s->cluster_bits,
                                                   s->l2_bits, a->size), true);
    co_mutex_unlock(&s->lock);
    if (ret == 0) {
        ret = qcow2_update_header(bs);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not resize image");
    }
    return ret;
}

/* Open the new image as qcow2 and finish it; a raw data file needs its
 * mapping preallocated. */
static int coroutine_fn finish_image(const char *filename,
                                     const Qcow2CreateArgs *a, Error **errp)
{
    BlockBackend *blk = open_new_image(filename, a, errp);
    PreallocMode mode = a->prealloc;
    int ret;

    if (!blk) {
        return -EIO;
    }
    ret = write_header_and_l1(blk_bs(blk), a, errp);
    if (a->data_file_raw && mode == PREALLOC_MODE_OFF) {
        mode = PREALLOC_MODE_METADATA;
    }
    if (ret == 0 && !a->data_file && (mode == PREALLOC_MODE_FALLOC ||
                                      mode == PREALLOC_MODE_FULL)) {
        ret = qcow2_grow_preallocated(blk_bs(blk), 0, a->size, mode, NULL,
                                      errp);
    } else if (ret == 0 && mode != PREALLOC_MODE_OFF) {
        ret = qcow2_preallocate(blk_bs(blk), 0, a->size, mode, errp);
    }
    blk_unref(blk);
    return ret;
}

int qcow2_parse_create_args(QDict *opts, Qcow2CreateArgs *a, Error **errp)
{
    int ret = parse_enums(opts, a, errp);

    if (ret == 0) {
        ret = parse_values(opts, a, errp);
    }
    if (ret == 0) {
        ret = check_args(a, errp);
    }
    if (ret == 0) {
        /* the reference sets up encryption after its other checks */
        ret = check_encrypt(opts, errp);
    }
    return ret;
}

int coroutine_fn qcow2_co_create_opts(const BlockDriver *drv,
                                      const char *filename, QDict *opts,
                                      Error **errp)
{
    Qcow2CreateArgs a = { 0 };
    g_autofree char *data_name = NULL;
    const char *data;
    bool data_made = false;
    int ret = create_protocol_file(filename, opts, errp);

    if (ret < 0) {
        return ret;
    }
    data = bdrv_opt_str(opts, "data_file", NULL);
    if (data) {
        ret = create_data_file(opts, data, errp);
        /* a size the file system refuses leaves no data file either,
         * as with the reference */
        data_made = ret == 0 || ret == -EFBIG;
        data_name = data_file_node_name(data);
    }
    if (ret == 0) {
        ret = qcow2_parse_create_args(opts, &a, errp);
    }
    /* the disk size goes up to whole sectors, as the reference stores it */
    a.size = ROUND_UP(a.size, BDRV_SECTOR_SIZE);
    if (data_name) {
        a.data_file = data_name;
    }
    if (ret == 0) {
        ret = write_initial(filename, &a, errp);
    }
    if (ret == 0) {
        ret = finish_image(filename, &a, errp);
    }
    if (ret < 0) {
        /* a failed create leaves no files behind (an image that was
         * there before is gone too), as with the reference */
        bdrv_delete_created_file(filename);
        if (data_made) {
            bdrv_delete_created_file(data_name);
        }
    }
    return ret;
}
