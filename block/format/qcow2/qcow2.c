#include "config.h"
/*
 * The qcow2 format driver: probe, open options, open/close and the driver
 * table.  The rest lives beside it (see qcow2.h for the map).
 */
#include <sys/mman.h>
#include "qcow2.h"

#define MIN_L2_CACHE_ENTRIES 2
#define MIN_REFCOUNT_CACHE_ENTRIES 4

static const BlockOptDesc qcow2_open_opts[] = {
    { "lazy-refcounts", OPT_BOOL, "Postpone refcount updates", NULL },
    { "pass-discard-request", OPT_BOOL,
      "Pass guest discard requests to the layer below", NULL },
    { "pass-discard-snapshot", OPT_BOOL, "Generate discard requests when "
      "snapshot related space is freed", NULL },
    { "pass-discard-other", OPT_BOOL,
      "Generate discard requests when other clusters are freed", NULL },
    { "discard-no-unref", OPT_BOOL, "Do not unreference discarded clusters",
      NULL },
    { "overlap-check", OPT_STRING, "Selects which overlap checks to perform "
      "from a range of templates (none, constant, cached, all)", NULL },
    { "overlap-check.template", OPT_STRING, "Selects which overlap checks "
      "to perform from a range of templates (none, constant, cached, all)",
      NULL },
    { "overlap-check.main-header", OPT_BOOL, "Check for unintended writes "
      "into the main qcow2 header", NULL },
    { "overlap-check.active-l1", OPT_BOOL, "Check for unintended writes "
      "into the active L1 table", NULL },
    { "overlap-check.active-l2", OPT_BOOL, "Check for unintended writes "
      "into an active L2 table", NULL },
    { "overlap-check.refcount-table", OPT_BOOL, "Check for unintended writes "
      "into the refcount table", NULL },
    { "overlap-check.refcount-block", OPT_BOOL, "Check for unintended writes "
      "into a refcount block", NULL },
    { "overlap-check.snapshot-table", OPT_BOOL, "Check for unintended writes "
      "into the snapshot table", NULL },
    { "overlap-check.inactive-l1", OPT_BOOL, "Check for unintended writes "
      "into an inactive L1 table", NULL },
    { "overlap-check.inactive-l2", OPT_BOOL, "Check for unintended writes "
      "into an inactive L2 table", NULL },
    { "overlap-check.bitmap-directory", OPT_BOOL, "Check for unintended "
      "writes into the bitmap directory", NULL },
    { "cache-size", OPT_SIZE, "Maximum combined metadata (L2 tables and "
      "refcount blocks) cache size", NULL },
    { "l2-cache-size", OPT_SIZE, "Maximum L2 table cache size", NULL },
    { "l2-cache-entry-size", OPT_SIZE, "Size of each entry in the L2 cache",
      NULL },
    { "refcount-cache-size", OPT_SIZE, "Maximum refcount block cache size",
      NULL },
    { "cache-clean-interval", OPT_NUMBER, "Clean unused cache entries after "
      "this time (in seconds)", NULL },
    { NULL },
};

/* QFI\xfb, version 2 or 3. */
static int qcow2_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    if (buf_size >= 8 && q_ld32(buf) == QCOW_MAGIC && q_ld32(buf + 4) >= 2) {
        return 100;
    }
    return 0;
}

int coroutine_fn qcow2_read_table(BlockDriverState *bs, uint64_t offset,
                                  uint64_t bytes, void *buf)
{
    int64_t len;
    uint64_t n;

    if (bytes == 0) {
        return 0;       /* an empty table: @buf may be NULL */
    }
    len = bdrv_co_getlength(bs->file->bs);
    if (len < 0) {
        return len;
    }
    n = (int64_t)offset < len ? MIN(bytes, (uint64_t)len - offset) : 0;
    memset((uint8_t *)buf + n, 0, bytes - n);
    return n ? q_pread(bs->file, offset, n, buf) : 0;
}

int64_t coroutine_fn qcow2_read_table64(BlockDriverState *bs, uint64_t offset,
                                       uint32_t n, uint64_t *out)
{
    int64_t len = bdrv_co_getlength(bs->file->bs);
    uint64_t bytes;
    int ret;

    if (len < 0) {
        return len;
    }
    bytes = offset < (uint64_t)len ?
            MIN((uint64_t)n * 8, (uint64_t)len - offset) : 0;
    ret = bytes ? q_pread(bs->file, offset, bytes, out) : 0;
    if (ret < 0) {
        return ret;
    }
    for (uint64_t i = 0; i < DIV_ROUND_UP(bytes, 8); i++) {
        out[i] = GUINT64_FROM_BE(out[i]);
    }
    return DIV_ROUND_UP(bytes, 8);
}

/* Refill @w at @off with what the file holds there (at least @len
 * bytes, zero-padded), allocating the buffer once at the size the file
 * can fill. */
static int coroutine_fn window_fill(Qcow2Window *w, uint64_t off,
                                    size_t len, uint64_t in_file)
{
    size_t want = MAX(len, (size_t)MIN(in_file, (uint64_t)w->max));
    int ret;

    if (want > w->size) {
        uint8_t *p = g_try_realloc(w->buf, want);

        if (!p) {
            return -ENOMEM;
        }
        w->buf = p;
        w->size = want;
    }
    w->len = 0;
    ret = qcow2_read_table(w->bs, off, want, w->buf);
    if (ret < 0) {
        return ret;
    }
    w->off = off;
    w->len = want;
    return 0;
}

int coroutine_fn qcow2_window_read(Qcow2Window *w, uint64_t off,
                                   size_t len, void *buf)
{
    int64_t file_len;
    int ret;

    if (!len) {
        return 0;
    }
    if (w->len && off >= w->off && off - w->off <= w->len &&
        len <= w->len - (off - w->off)) {
        memcpy(buf, w->buf + (off - w->off), len);
        return 0;
    }
    file_len = bdrv_co_getlength(w->bs->file->bs);
    if (file_len < 0) {
        return file_len;
    }
    if (off >= (uint64_t)file_len) {
        memset(buf, 0, len);
        return 0;
    }
    if (len > w->max) {
        return qcow2_read_table(w->bs, off, len, buf);
    }
    ret = window_fill(w, off, len, (uint64_t)file_len - off);
    if (ret == -ENOMEM) {
        return qcow2_read_table(w->bs, off, len, buf);
    }
    if (ret < 0) {
        return ret;
    }
    memcpy(buf, w->buf, len);
    return 0;
}

void qcow2_window_free(Qcow2Window *w)
{
    g_clear_pointer(&w->buf, g_free);
    w->len = w->size = 0;
}

/* ---- options ---- */

/* Remove "@name" and "@name.*" (a child we do not open). */
static void drop_child_opts(QDict *d, const char *name)
{
    g_autofree char *prefix = g_strdup_printf("%s.", name);
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);

    for (const QDictEntry *e = qdict_first(d); e; e = qdict_next(d, e)) {
        if (g_str_has_prefix(qdict_entry_key(e), prefix)) {
            g_ptr_array_add(keys, g_strdup(qdict_entry_key(e)));
        }
    }
    for (guint i = 0; i < keys->len; i++) {
        qdict_del(d, g_ptr_array_index(keys, i));
    }
    qdict_del(d, name);
}

/* overlap-check.<kind>=on|off: refine the template per kind. */
static int parse_overlap_bits(QDict *opts, int *mask, Error **errp)
{
    static const char *const kinds[] = {
        "main-header", "active-l1", "active-l2", "refcount-table",
        "refcount-block", "snapshot-table", "inactive-l1", "inactive-l2",
        "bitmap-directory",
    };
    Error *e = NULL;

    for (size_t i = 0; i < G_N_ELEMENTS(kinds); i++) {
        g_autofree char *key = g_strdup_printf("overlap-check.%s", kinds[i]);
        bool on;

        if (!qdict_haskey(opts, key)) {
            continue;
        }
        on = bdrv_opt_bool(opts, key, false, &e);
        if (e) {
            error_propagate(errp, e);
            return -EINVAL;
        }
        *mask = on ? *mask | (1 << i) : *mask & ~(1 << i);
    }
    return 0;
}

/* overlap-check: a template name to the set of checks. */
static int parse_overlap(QDict *opts, int *mask, Error **errp)
{
    const char *a = bdrv_opt_str(opts, "overlap-check", NULL);
    const char *b = bdrv_opt_str(opts, "overlap-check.template", NULL);
    const char *v = a ? a : b ? b : "cached";

    if (a && b && strcmp(a, b)) {
        error_setg(errp, "Conflicting values for qcow2 options "
                   "'overlap-check' ('%s') and 'overlap-check.template' "
                   "('%s')", a, b);
        return -EINVAL;
    }
    if (!strcmp(v, "none")) {
        *mask = 0;
    } else if (!strcmp(v, "constant")) {
        *mask = QCOW2_OL_CONSTANT;
    } else if (!strcmp(v, "cached")) {
        *mask = QCOW2_OL_CACHED;
    } else if (!strcmp(v, "all")) {
        *mask = QCOW2_OL_ALL;
    } else {
        error_setg(errp, "Unsupported value '%s' for qcow2 option "
                   "'overlap-check'. Allowed are any of the following: "
                   "none, constant, cached, all", v);
        return -EINVAL;
    }
    return parse_overlap_bits(opts, mask, errp);
}

/* Combined cache-size split as the reference splits it. */
static int split_cache_size(BDRVQcow2State *s, QDict *opts, uint64_t max_l2,
                            uint64_t min_rc, uint64_t l2_setting, Error **errp)
{
    Error *e = NULL;
    uint64_t combined = bdrv_opt_size(opts, "cache-size", 0, &e);
    bool l2_set = qdict_haskey(opts, "l2-cache-size");
    bool rc_set = qdict_haskey(opts, "refcount-cache-size");

    if (e) {
        error_propagate(errp, e);
        return -EINVAL;
    }
    if (l2_set && rc_set) {
        error_setg(errp, "cache-size, l2-cache-size and refcount-cache-size "
                   "may not be set at the same time");
        return -EINVAL;
    }
    if (l2_set && l2_setting > combined) {
        error_setg(errp, "l2-cache-size may not exceed cache-size");
        return -EINVAL;
    }
    if (rc_set && s->refcount_cache_bytes > combined) {
        error_setg(errp, "refcount-cache-size may not exceed cache-size");
        return -EINVAL;
    }
    if (l2_set) {
        s->refcount_cache_bytes = combined - s->l2_cache_bytes;
    } else if (rc_set) {
        s->l2_cache_bytes = combined - s->refcount_cache_bytes;
    } else {
        s->l2_cache_bytes = MIN(max_l2, combined > min_rc ? combined - min_rc : 0);
        s->refcount_cache_bytes = combined - s->l2_cache_bytes;
    }
    return 0;
}

/* Cache sizes (qcow2-cache.txt): by default enough L2 to map the whole
 * disk up to 32 MiB, four clusters of refcount blocks. */
static int read_cache_sizes(BDRVQcow2State *s, QDict *opts, Error **errp)
{
    Error *e = NULL;
    uint64_t max_l2 = ROUND_UP(DIV_ROUND_UP(s->h.size, s->cluster_size) *
                               s->l2_entry_size, s->cluster_size);
    uint64_t min_rc = 4 * s->cluster_size;
    uint64_t l2_setting = bdrv_opt_size(opts, "l2-cache-size",
                                        QCOW2_MAX_L2_CACHE_DEFAULT, &e);

    /* never more L2 cache than the whole disk's tables, whatever asked */
    s->l2_cache_bytes = MIN(max_l2, l2_setting);
    if (!e) {
        s->refcount_cache_bytes = bdrv_opt_size(opts, "refcount-cache-size",
                                                0, &e);
    }
    if (!e) {
        s->l2_entry_bytes = bdrv_opt_size(opts, "l2-cache-entry-size",
                                          s->cluster_size, &e);
    }
    if (e) {
        error_propagate(errp, e);
        return -EINVAL;
    }
    if (qdict_haskey(opts, "cache-size")) {
        if (split_cache_size(s, opts, max_l2, min_rc, l2_setting, errp) < 0) {
            return -EINVAL;
        }
    } else if (!qdict_haskey(opts, "refcount-cache-size")) {
        s->refcount_cache_bytes = min_rc;
    }
    if (s->l2_entry_bytes < 512 || s->l2_entry_bytes > s->cluster_size ||
        !QEMU_IS_POW2(s->l2_entry_bytes)) {
        error_setg(errp, "L2 cache entry size must be a power of two "
                   "between %d and the cluster size (%" PRIu64 ")", 512,
                   s->cluster_size);
        return -EINVAL;
    }
    return 0;
}

/* Would the reference get @bytes of cache memory in one block?  It
 * allocates the refcount cache at once (strata fills it lazily), so a
 * size the kernel refuses to map fails its open or reopen.  Probed with
 * an unused mapping, only for sizes where that can happen. */
static bool cache_mappable(uint64_t bytes)
{
    void *p;

    if (bytes <= (1ULL << 30)) {
        return true;
    }
    if (bytes > SIZE_MAX) {
        return false;
    }
    p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return false;
    }
    munmap(p, bytes);
    return true;
}

/* The refcount cache's memory, after the count checks. */
static int check_cache_memory(BDRVQcow2State *s, Error **errp)
{
    if (!cache_mappable(s->refcount_cache_bytes)) {
        error_setg(errp, "Could not allocate metadata caches");
        return -ENOMEM;
    }
    return 0;
}

/* Entry counts from the byte sizes; tables are cached whole, so the
 * number of entries is bounded by the bytes over the cluster size. */
static int init_caches(BDRVQcow2State *s, Error **errp)
{
    uint64_t l2 = s->l2_cache_bytes / s->l2_entry_bytes;
    uint64_t rc = s->refcount_cache_bytes / s->cluster_size;

    if (l2 > INT_MAX) {
        error_setg(errp, "L2 cache size too big");
        return -EINVAL;
    }
    if (rc > INT_MAX) {
        error_setg(errp, "Refcount cache size too big");
        return -EINVAL;
    }
    if (check_cache_memory(s, errp) < 0) {
        return -ENOMEM;
    }
    l2 = MAX(MIN(l2, s->l2_cache_bytes / s->cluster_size), MIN_L2_CACHE_ENTRIES);
    rc = MAX(rc, MIN_REFCOUNT_CACHE_ENTRIES);
    qcow2_cache_init(&s->l2_cache, l2, s->cluster_size, QCOW2_OL_ACTIVE_L2);
    qcow2_cache_init(&s->refcount_cache, rc, s->cluster_size,
                     QCOW2_OL_REFCOUNT_BLOCK);
    return 0;
}

/* The boolean options and where they go. */
static int read_bool_opts(BlockDriverState *bs, QDict *opts, int flags,
                          Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    const struct {
        const char *name;
        bool def;
        bool *field;
    } bools[] = {
        { "lazy-refcounts",
          s->h.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS,
          &s->use_lazy_refcounts },
        { "pass-discard-request", flags & BDRV_O_UNMAP,
          &s->discard_passthrough_request },
        { "pass-discard-snapshot", true, &s->discard_passthrough_snapshot },
        { "pass-discard-other", false, &s->discard_passthrough_other },
        { "discard-no-unref", false, &s->discard_no_unref },
    };
    Error *e = NULL;

    for (size_t i = 0; i < G_N_ELEMENTS(bools) && !e; i++) {
        *bools[i].field = bdrv_opt_bool(opts, bools[i].name, bools[i].def, &e);
    }
    if (e) {
        error_propagate(errp, e);
        return -EINVAL;
    }
    return 0;
}

/* Everything besides caches: discard passthrough, lazy refcounts,
 * overlap checks, cache cleaning. */
static int read_runtime_opts(BlockDriverState *bs, QDict *opts, int flags,
                             Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    Error *e = NULL;

    if (read_bool_opts(bs, opts, flags, errp) < 0) {
        return -EINVAL;
    }
    s->cache_clean_interval = bdrv_opt_number(opts, "cache-clean-interval",
                                              600, &e);
    if (e) {
        error_propagate(errp, e);
        return -EINVAL;
    }
    if (s->use_lazy_refcounts && s->h.version < 3) {
        error_setg(errp, "Lazy refcounts require a qcow2 image with at least "
                   "qemu 1.1 compatibility level");
        return -EINVAL;
    }
    if (s->discard_no_unref && s->h.version < 3) {
        error_setg(errp, "discard-no-unref is only supported since qcow2 "
                   "version 3");
        return -EINVAL;
    }
    if (s->cache_clean_interval > UINT32_MAX) {
        error_setg(errp, "Cache clean interval too big");
        return -EINVAL;
    }
    return parse_overlap(opts, &s->overlap_check, errp);
}

/* ---- open ---- */

/* The active L1 table (entries past EOF read as zero). */
static int coroutine_fn read_l1(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t in_file;

    s->l1_size = s->h.l1_size;
    s->l1_table = g_try_new0(uint64_t, s->l1_size + 1);
    if (!s->l1_table) {
        error_setg(errp, "Could not allocate L1 table");
        return -ENOMEM;
    }
    in_file = qcow2_read_table64(bs, s->h.l1_table_offset, s->l1_size,
                                 s->l1_table);
    if (in_file < 0) {
        error_setg_errno(errp, -in_file, "Could not read L1 table");
        return in_file;
    }
    for (int64_t i = 0; i < in_file; i++) {
        if (s->l1_table[i]) {
            qcow2_note_l1(s, i);
        }
    }
    return 0;
}

/* The external data file: opened only when the image has one, from the
 * user's data-file option or, for I/O, the name the image records
 * (never for metadata-only opens such as info: CVE-2024-4467). */
static int open_data_file(BlockDriverState *bs, QDict *opts, int flags,
                          Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    bool has = s->h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE;
    Error *e = NULL;

    if (flags & BDRV_O_NO_IO) {
        drop_child_opts(opts, "data-file");
        s->data_file = has ? NULL : bs->file;
        return 0;
    }
    s->data_file = bdrv_open_child(NULL, opts, "data-file", bs,
                                   BDRV_CHILD_DATA, true, &e);
    if (!e && has && !s->data_file && s->image_data_file) {
        s->data_file = bdrv_open_child(s->image_data_file, opts, "data-file",
                                       bs, BDRV_CHILD_DATA, false, &e);
    }
    if (!e && has && !s->data_file) {
        error_setg(&e, "'data-file' is required for this image");
    }
    if (!e && !has && s->data_file) {
        error_setg(&e, "'data-file' can only be set for images with an "
                   "external data file");
    }
    if (!e && !has && (s->h.autoclear_features & QCOW2_AUTOCLEAR_DATA_RAW)) {
        error_setg(&e, "data-file-raw requires a data file");
    }
    if (e) {
        error_propagate(errp, e);
        return -EINVAL;
    }
    if (!has) {
        s->data_file = bs->file;
    }
    return 0;
}

/* The encryption method, checked with the options as the reference
 * does (it prints the 32-bit field signed). */
static int check_crypt_method(BDRVQcow2State *s, Error **errp)
{
    if (s->h.crypt_method > QCOW2_CRYPT_LUKS) {
        error_setg(errp, "Unsupported encryption method %d",
                   (int32_t)s->h.crypt_method);
        return -EINVAL;
    }
    return 0;
}

/* An encrypted image's encrypt.* options: only key-secret is known to
 * either method's key options (the reference's words for the rest). */
static int check_crypt_keys(QDict *opts, Error **errp)
{
    for (const QDictEntry *e = qdict_first(opts); e; e = qdict_next(opts, e)) {
        const char *key = qdict_entry_key(e);

        if (g_str_has_prefix(key, "encrypt.") &&
            strcmp(key, "encrypt.format") && strcmp(key, "encrypt.key-secret")) {
            error_setg(errp, "Parameter '%s' is unexpected",
                       key + strlen("encrypt."));
            return -EINVAL;
        }
    }
    return 0;
}

/* encrypt.* open options: the format named must be the header's (an
 * unencrypted image takes none); the options are the encryption's, so
 * they are consumed here and never count as unknown. */
static int check_crypt_opts(BDRVQcow2State *s, QDict *opts, Error **errp)
{
    static const char *const names[] = { NULL, "aes", "luks" };
    const char *fmt = qdict_get_try_str(opts, "encrypt.format");
    int ret = check_crypt_method(s, errp);

    if (ret == 0 && fmt && !s->h.crypt_method) {
        error_setg(errp, "No encryption in image header, but options "
                   "specified format '%s'", fmt);
        ret = -EINVAL;
    } else if (ret == 0 && fmt && strcmp(fmt, names[s->h.crypt_method])) {
        error_setg(errp, "Header reported '%s' encryption format but "
                   "options specify '%s'", names[s->h.crypt_method], fmt);
        ret = -EINVAL;
    } else if (ret == 0 && s->h.crypt_method) {
        ret = check_crypt_keys(opts, errp);
    }
    return ret;
}

/* The encrypt.* options are the encryption's (consumed, never unknown);
 * without encrypt.key-secret no data can be read. */
static bool take_crypt_opts(BDRVQcow2State *s, QDict *opts)
{
    bool has_key = qdict_haskey(opts, "encrypt.key-secret");
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);

    for (const QDictEntry *e = qdict_first(opts); e; e = qdict_next(opts, e)) {
        if (g_str_has_prefix(qdict_entry_key(e), "encrypt.")) {
            g_ptr_array_add(keys, g_strdup(qdict_entry_key(e)));
        }
    }
    for (guint i = 0; i < keys->len; i++) {
        qdict_del(opts, g_ptr_array_index(keys, i));
    }
    return has_key || !s->h.crypt_method;
}

/* Encrypted images: the reference decrypts them; we refuse data I/O
 * (after the reference's own first complaint, a missing key). */
static int check_encryption(BlockDriverState *bs, QDict *opts, int flags,
                            Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    bool has_key = take_crypt_opts(s, opts);

    if (!s->h.crypt_method || (flags & BDRV_O_NO_IO)) {
        return 0;
    }
    if (s->h.crypt_method == QCOW2_CRYPT_LUKS && !s->has_crypto_ext) {
        error_setg(errp, "Missing CRYPTO header for crypt method %d",
                   QCOW2_CRYPT_LUKS);
        return -EINVAL;
    }
    if (!has_key) {
        error_setg(errp, "Parameter 'encrypt.key-secret' is required for "
                   "cipher");
        return -EINVAL;
    }
    error_setg(errp, "qcow2: encrypted images (%s encryption) are not "
               "supported", s->h.crypt_method == 1 ? "AES" : "LUKS");
    return -ENOTSUP;
}

/* Read-write opens clear autoclear bits for features we do not keep up
 * to date (bitmaps, unknown ones), as the spec asks of such programs. */
static int coroutine_fn clear_autoclear(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t keep = s->h.autoclear_features & (QCOW2_AUTOCLEAR_DATA_RAW |
        (qcow2_keeps_bitmaps(s) ? QCOW2_AUTOCLEAR_BITMAPS : 0));

    if (!(bs->open_flags & BDRV_O_RDWR) || s->h.version < 3 ||
        keep == s->h.autoclear_features) {
        return 0;
    }
    s->h.autoclear_features = keep;
    return qcow2_update_header(bs);
}

/* cache-clean-interval: free the memory of cache entries unused since
 * the last tick (not while a request is in the metadata). */
static void cache_clean_tick(void *opaque)
{
    BlockDriverState *bs = opaque;
    BDRVQcow2State *s = bs->opaque;

    if (!co_mutex_is_locked(&s->lock)) {
        qcow2_cache_clean_unused(&s->l2_cache);
        qcow2_cache_clean_unused(&s->refcount_cache);
    }
    aio_timer_mod(s->cache_clean_timer,
                  clock_ns() + (int64_t)s->cache_clean_interval * 1000000000);
}

static void start_cache_clean_timer(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    if (!s->cache_clean_interval) {
        return;
    }
    s->cache_clean_timer = aio_timer_new(aio_get_default(), cache_clean_tick,
                                         bs);
    aio_timer_mod(s->cache_clean_timer,
                  clock_ns() + (int64_t)s->cache_clean_interval * 1000000000);
}

typedef struct OpenCo {
    BlockDriverState *bs;
    QDict *opts;
    int flags;
    Error **errp;
    int ret;
} OpenCo;

/*
 * The open validates in the reference's order, so that a hostile image
 * gets the reference's first error: header fields and feature bits,
 * table fields, the L1 table, options (and the encryption method), the
 * refcount table, the header extensions, the data file, the backing
 * name, snapshots, bitmaps, then what writers need.
 */

/* Open step 1: the header, its table fields, the active L1 table. */
static int coroutine_fn open_metadata(BlockDriverState *bs, int64_t flen,
                                      Error **errp)
{
    int ret = qcow2_read_header(bs, errp);

    if (ret == 0) {
        ret = qcow2_check_header_tables(bs, flen, errp);
    }
    if (ret == 0) {
        ret = read_l1(bs, errp);
    }
    return ret;
}

/* The type of one option's value (a malformed one sets @errp). */
static void check_opt_type(QDict *opts, const BlockOptDesc *d, Error **errp)
{
    switch (d->type) {
    case OPT_BOOL:
        bdrv_opt_bool(opts, d->name, false, errp);
        break;
    case OPT_SIZE:
        bdrv_opt_size(opts, d->name, 0, errp);
        break;
    case OPT_NUMBER:
        bdrv_opt_number(opts, d->name, 0, errp);
        break;
    default:
        break;
    }
}

/* Every option's value has its type before any is used, the first bad
 * one in the dictionary's order reported, as the reference parses all
 * of them before it looks at one (the last bad value then wins no
 * matter which check it would have failed later). */
static int check_opt_types(QDict *opts, Error **errp)
{
    for (const QDictEntry *e = qdict_first(opts); e; e = qdict_next(opts, e)) {
        for (const BlockOptDesc *d = qcow2_open_opts; d->name; d++) {
            Error *err = NULL;

            if (strcmp(d->name, qdict_entry_key(e))) {
                continue;
            }
            check_opt_type(opts, d, &err);
            if (err) {
                error_propagate(errp, err);
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* Open step 2: options and the caches they size. */
static int open_options(BlockDriverState *bs, QDict *opts, int flags,
                        Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = check_opt_types(opts, errp);

    if (ret == 0) {
        ret = read_cache_sizes(s, opts, errp);
    }

    if (ret == 0) {
        ret = read_runtime_opts(bs, opts, flags, errp);
    }
    if (ret == 0) {
        ret = check_crypt_opts(s, opts, errp);
    }
    if (ret == 0) {
        ret = init_caches(s, errp);
    }
    return ret;
}

/* Open step 3: refcount table, header extensions, the data file,
 * encryption, the backing name. */
static int coroutine_fn open_tables(BlockDriverState *bs, QDict *opts,
                                    int flags, Error **errp)
{
    int ret = qcow2_refcount_read_table(bs, errp);

    if (ret == 0) {
        ret = qcow2_read_header_exts(bs, errp);
    }
    if (ret == 0) {
        ret = open_data_file(bs, opts, flags, errp);
    }
    if (ret == 0) {
        ret = check_encryption(bs, opts, flags, errp);
    }
    if (ret == 0) {
        ret = qcow2_read_backing_name(bs, errp);
    }
    return ret;
}

/* A dirty image (lazy refcounts, writer killed) opened read-write is
 * checked and repaired first, as the reference does; check -r itself
 * (BDRV_O_CHECK) repairs later, meanwhile allocating past the end. */
static int coroutine_fn open_dirty(BlockDriverState *bs, int64_t flen,
                                   int flags, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    BlockCheckResult res = { 0 };
    int ret;

    if (flags & BDRV_O_CHECK) {
        s->refcounts_stale = true;
        s->free_cluster_index = DIV_ROUND_UP((uint64_t)flen, s->cluster_size);
        return 0;
    }
    ret = qcow2_check_repair(bs, &res, BDRV_FIX_ERRORS | BDRV_FIX_LEAKS);
    if (ret < 0 || res.check_errors) {
        ret = ret < 0 ? ret : -EIO;
        error_setg_errno(errp, -ret, "Could not repair dirty image");
    }
    return ret;
}

/* Open step 4: state for writing (dirty images, autoclear bits). */
static int coroutine_fn open_for_writes(BlockDriverState *bs, int64_t flen,
                                        int flags, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if ((flags & BDRV_O_RDWR) &&
        (s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
        ret = open_dirty(bs, flen, flags, errp);
        if (ret < 0) {
            return ret;
        }
    }
    ret = clear_autoclear(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not update qcow2 header");
    }
    return ret;
}

/* Header, tables, options, children: every step checked. */
static int coroutine_fn qcow2_do_open(BlockDriverState *bs, QDict *opts,
                                      int flags, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t flen = bdrv_co_getlength(bs->file->bs);
    int ret;

    co_mutex_init(&s->lock);
    co_queue_init(&s->inflight_wait);
    s->inflight = g_array_new(false, false, sizeof(Qcow2InFlight));
    co_queue_init(&s->cw_queue);
    co_queue_init(&s->aw_queue);
    if (flen < 0) {
        error_setg_errno(errp, -flen, "Could not read qcow2 header");
        return flen;
    }
    ret = open_metadata(bs, flen, errp);
    if (ret == 0) {
        ret = open_options(bs, opts, flags, errp);
    }
    if (ret == 0) {
        ret = open_tables(bs, opts, flags, errp);
    }
    if (ret == 0) {
        /* check-mode opens must get through a broken table */
        ret = qcow2_read_snapshots(bs, flags & BDRV_O_CHECK, errp);
    }
    if (ret == 0) {
        ret = qcow2_read_bitmap_list(bs, errp);
    }
    if (ret == 0) {
        ret = open_for_writes(bs, flen, flags, errp);
    }
    return ret;
}

static void coroutine_fn open_entry(void *opaque)
{
    OpenCo *o = opaque;

    o->ret = qcow2_do_open(o->bs, o->opts, o->flags, o->errp);
}

static void qcow2_free_state(BDRVQcow2State *s)
{
    if (s->cache_clean_timer) {
        aio_timer_free(s->cache_clean_timer);
        s->cache_clean_timer = NULL;
    }
    qcow2_cache_destroy(&s->l2_cache);
    qcow2_cache_destroy(&s->refcount_cache);
    g_clear_pointer(&s->l1_table, g_free);
    g_clear_pointer(&s->refcount_table, g_free);
    g_clear_pointer(&s->discards, g_array_unref);
    if (s->inflight) {
        g_array_free(s->inflight, true);
        s->inflight = NULL;
    }
    qcow2_zread_free(s);
    if (s->inactive_l1) {
        g_array_free(s->inactive_l1, true);
        s->inactive_l1 = NULL;
    }
    qcow2_inactive_l1_changed(s);
    qcow2_free_snapshots(s);
    qcow2_free_bitmaps(s);
    qcow2_free_header_exts(s);
}

static int qcow2_open(BlockDriverState *bs, QDict *options, int flags,
                      Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    OpenCo o = { bs, options, flags, errp, 0 };

    bs->file = bdrv_open_child(NULL, options, "file", bs,
                               BDRV_CHILD_DATA | BDRV_CHILD_METADATA |
                               BDRV_CHILD_PRIMARY, false, errp);
    if (!bs->file) {
        return -EINVAL;
    }
    co_run_sync(open_entry, &o);
    if (o.ret < 0) {
        if (s->data_file && s->data_file != bs->file) {
            bdrv_unref_child(bs, s->data_file);
        }
        s->data_file = NULL;
        qcow2_free_state(s);
        return o.ret;
    }
    start_cache_clean_timer(bs);
    bs->supported_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK;
    bs->supported_write_flags = BDRV_REQ_WRITE_COMPRESSED |
                                BDRV_REQ_ALLOC_IN_ORDER;
    /* v2 too: the reference fails later, when it zeroes clusters */
    bs->supported_truncate_flags = BDRV_REQ_ZERO_WRITE;
    return 0;
}

/* One cache written back and the file flushed, as the reference's close
 * does for each; failures are reported with its messages. */
static int coroutine_fn close_flush_cache(BlockDriverState *bs,
                                          Qcow2Cache *c, const char *what)
{
    int ret = qcow2_cache_write(bs, c);

    if (ret == 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    if (ret < 0) {
        error_report("Failed to flush the %s cache: %s", what, strerror(-ret));
    }
    return ret;
}

/* The persistent bitmaps written back (close, reopen read-only); a
 * failure loses them with the reference's warning, the image stays
 * valid (they are in-use there, so inconsistent next time). */
static void coroutine_fn store_bitmaps(BlockDriverState *bs)
{
    Error *err = NULL;

    if (qcow2_store_bitmaps(bs, &err) < 0) {
        error_reportf_err(err, "Lost persistent bitmaps during inactivation "
                          "of node '%s': ", bdrv_get_node_name(bs));
    }
}

/* check -r leaves a dirty image clean at close whatever the check
 * found, as the reference's close does: the whole header is written
 * from memory (a snapshot table the check could not read is dropped
 * from it, check.c). */
static void coroutine_fn check_mode_mark_clean(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    if (!(s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
        return;
    }
    s->h.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
    if (qcow2_co_flush_to_os(bs) == 0) {
        qcow2_update_header(bs);
    }
}

/* Writeback of the caches and, if we set it, the dirty bit cleared. */
static void coroutine_fn close_entry(void *opaque)
{
    BlockDriverState *bs = opaque;
    BDRVQcow2State *s = bs->opaque;
    int ret;

    /* (an image with a data file opened without I/O has none: its
     * metadata, bitmaps included, is still written back) */
    if (!(bs->open_flags & BDRV_O_RDWR) || s->broken ||
        (!s->data_file && !(bs->open_flags & BDRV_O_NO_IO))) {
        return;
    }
    /* the reference's generic close flushes the node first and ignores
     * the result: an error injected once is used up there, silently */
    bdrv_co_flush(bs);
    if (s->broken) {
        return;             /* marked corrupt by that write-back */
    }
    s->closing = true;
    store_bitmaps(bs);
    ret = close_flush_cache(bs, &s->l2_cache, "L2 table");
    if (close_flush_cache(bs, &s->refcount_cache, "refcount block") < 0) {
        ret = -EIO;
    }
    if (ret == 0 && (bs->open_flags & BDRV_O_CHECK)) {
        check_mode_mark_clean(bs);
    } else if (ret == 0 && s->dirty_set && !s->refcounts_stale) {
        qcow2_mark_clean(bs);
    }
}

static void qcow2_close(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    if (s->l1_table) {
        co_run_sync(close_entry, bs);
    }
    qcow2_free_state(s);
}

static void qcow2_refresh_limits(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;

    bs->bl.request_alignment = 1;
    bs->bl.pwrite_zeroes_alignment = s->extended_l2 ? s->subcluster_size :
                                     s->cluster_size;
    bs->bl.pdiscard_alignment = s->cluster_size;
}

/* Whole sectors: a header size that is not a multiple of 512 (only a
 * hand-made image has one) is cut down to one, as the reference does. */
static int64_t coroutine_fn qcow2_co_getlength(BlockDriverState *bs)
{
    return ROUND_DOWN(((BDRVQcow2State *)bs->opaque)->h.size,
                      (uint64_t)BDRV_SECTOR_SIZE);
}

static int64_t coroutine_fn qcow2_co_get_allocated_file_size(
    BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t a = bdrv_co_get_allocated_file_size(bs->file->bs), b;

    if (a < 0 || !s->data_file || s->data_file == bs->file) {
        return a;
    }
    b = bdrv_co_get_allocated_file_size(s->data_file->bs);
    return b < 0 ? b : a + b;
}

/* ---- reopen ---- */

typedef struct ReopenRoCo {
    BlockDriverState *bs;
    int ret;
} ReopenRoCo;

/* The option values a reopen may change, kept to undo a failed one. */
typedef struct Qcow2Tunables {
    uint64_t l2_cache_bytes, l2_entry_bytes, refcount_cache_bytes;
    uint64_t cache_clean_interval;
    int overlap_check;
    bool discard_passthrough_request, discard_passthrough_snapshot,
         discard_passthrough_other, discard_no_unref, use_lazy_refcounts;
} Qcow2Tunables;

static void tunables_save(BDRVQcow2State *s, Qcow2Tunables *t)
{
    *t = (Qcow2Tunables) {
        s->l2_cache_bytes, s->l2_entry_bytes, s->refcount_cache_bytes,
        s->cache_clean_interval, s->overlap_check,
        s->discard_passthrough_request, s->discard_passthrough_snapshot,
        s->discard_passthrough_other, s->discard_no_unref,
        s->use_lazy_refcounts,
    };
}

static void tunables_restore(BDRVQcow2State *s, const Qcow2Tunables *t)
{
    s->l2_cache_bytes = t->l2_cache_bytes;
    s->l2_entry_bytes = t->l2_entry_bytes;
    s->refcount_cache_bytes = t->refcount_cache_bytes;
    s->cache_clean_interval = t->cache_clean_interval;
    s->overlap_check = t->overlap_check;
    s->discard_passthrough_request = t->discard_passthrough_request;
    s->discard_passthrough_snapshot = t->discard_passthrough_snapshot;
    s->discard_passthrough_other = t->discard_passthrough_other;
    s->discard_no_unref = t->discard_no_unref;
    s->use_lazy_refcounts = t->use_lazy_refcounts;
}

/* Whether an old value of @key gives way to the new options: a new
 * overlap-check template replaces every old overlap-check choice, a new
 * cache-size the old split of the cache and a new split the old total. */
static bool reopen_old_replaced(QDict *opts, const char *key)
{
    bool new_template = qdict_haskey(opts, "overlap-check") ||
                        qdict_haskey(opts, "overlap-check.template");

    if (new_template && (!strcmp(key, "overlap-check") ||
                         g_str_has_prefix(key, "overlap-check."))) {
        return true;
    }
    if (!strcmp(key, "cache-size")) {
        return qdict_haskey(opts, "l2-cache-size") ||
               qdict_haskey(opts, "refcount-cache-size");
    }
    return qdict_haskey(opts, "cache-size") &&
           (!strcmp(key, "l2-cache-size") ||
            !strcmp(key, "refcount-cache-size"));
}

/* The runtime options of @opts, over those the node was opened (or last
 * reopened) with: the reference keeps the old values of options not
 * given, except those the new ones replace.  NULL when @opts names none
 * of them, nor discard (the default of pass-discard-request). */
static QDict *reopen_merged_opts(BlockDriverState *bs, QDict *opts)
{
    QDict *merged = qdict_new();
    bool given = qdict_haskey(opts, "discard");

    for (const BlockOptDesc *d = qcow2_open_opts; d->name; d++) {
        QDict *from = opts;

        if (qdict_haskey(opts, d->name)) {
            given = true;
        } else if (bs->options && qdict_haskey(bs->options, d->name) &&
                   !reopen_old_replaced(opts, d->name)) {
            from = bs->options;
        } else {
            continue;
        }
        qdict_put_obj(merged, d->name, qobject_ref(qdict_get(from, d->name)));
    }
    if (!given) {
        qobject_unref(merged);
        return NULL;
    }
    return merged;
}

/* The cache entry counts @s's sizes give, checked as at open. */
static int check_cache_counts(BDRVQcow2State *s, Error **errp)
{
    if (s->l2_cache_bytes / s->l2_entry_bytes > INT_MAX) {
        error_setg(errp, "L2 cache size too big");
        return -EINVAL;
    }
    if (s->refcount_cache_bytes / s->cluster_size > INT_MAX) {
        error_setg(errp, "Refcount cache size too big");
        return -EINVAL;
    }
    return check_cache_memory(s, errp);
}

/* The node's flags once a reopen with @opts is done (the generic
 * options were checked before). */
static int reopen_flags(BlockDriverState *bs, QDict *opts)
{
    const char *discard = qdict_get_try_str(opts, "discard");
    int flags = bs->open_flags;

    if (discard) {
        bdrv_parse_discard_flags(discard, &flags);
    }
    return flags;
}

/* Reopen with new runtime options (caches, discard handling, lazy
 * refcounts, overlap checks, cache cleaning): parsed and checked as at
 * open into the state, the old values saved for commit (which resizes
 * the caches) or abort (which puts them back). */
static int qcow2_reopen_prepare(BlockDriverState *bs, QDict *opts,
                                Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    g_autoptr(QDict) merged = reopen_merged_opts(bs, opts);
    Qcow2Tunables old;
    int ret;

    if (!merged || s->reopen_old) {
        return 0;
    }
    tunables_save(s, &old);
    ret = read_cache_sizes(s, merged, errp);
    if (ret == 0) {
        ret = read_runtime_opts(bs, merged, reopen_flags(bs, opts), errp);
    }
    if (ret == 0) {
        ret = check_cache_counts(s, errp);
    }
    if (ret < 0) {
        tunables_restore(s, &old);
        return ret;
    }
    for (const BlockOptDesc *d = qcow2_open_opts; d->name; d++) {
        qdict_del(opts, d->name);
    }
    s->reopen_old = g_memdup2(&old, sizeof(old));
    s->reopen_opts = qobject_ref(merged);
    return 0;
}

/* Commit step in a coroutine: write back what the old caches hold before
 * they are resized, and leave the dirty state lazy refcounts no longer
 * cover. */
static void coroutine_fn reopen_commit_entry(void *opaque)
{
    BlockDriverState *bs = opaque;
    BDRVQcow2State *s = bs->opaque;
    const Qcow2Tunables *old = s->reopen_old;

    if ((bs->open_flags & BDRV_O_RDWR) && old->use_lazy_refcounts &&
        !s->use_lazy_refcounts) {
        qcow2_mark_clean(bs);
    }
    if (old->l2_cache_bytes != s->l2_cache_bytes ||
        old->l2_entry_bytes != s->l2_entry_bytes ||
        old->refcount_cache_bytes != s->refcount_cache_bytes) {
        qcow2_co_flush_to_os(bs);
        qcow2_cache_destroy(&s->l2_cache);
        qcow2_cache_destroy(&s->refcount_cache);
        init_caches(s, NULL);
    }
    /* write ordering follows use_lazy_refcounts at each refcount update
     * (refcount.c: refcount_order()) */
}

static void qcow2_reopen_commit(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    if (!s->reopen_old) {
        return;
    }
    co_run_sync(reopen_commit_entry, bs);
    if (s->cache_clean_timer) {
        aio_timer_free(s->cache_clean_timer);
        s->cache_clean_timer = NULL;
    }
    start_cache_clean_timer(bs);
    for (const BlockOptDesc *d = qcow2_open_opts; d->name; d++) {
        qdict_del(bs->options, d->name);   /* some gave way to new ones */
    }
    qdict_join(bs->options, s->reopen_opts, true);
    g_clear_pointer(&s->reopen_old, g_free);
    qobject_unref(s->reopen_opts);
    s->reopen_opts = NULL;
}

static void qcow2_reopen_abort(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;

    if (!s->reopen_old) {
        return;
    }
    tunables_restore(s, s->reopen_old);
    g_clear_pointer(&s->reopen_old, g_free);
    qobject_unref(s->reopen_opts);
    s->reopen_opts = NULL;
}

/* Switching to read-only: what the caches hold goes to the file and an
 * image we made dirty (lazy refcounts) is marked clean, as at close: the
 * reference leaves it consistent for other readers. */
static void coroutine_fn reopen_ro_entry(void *opaque)
{
    ReopenRoCo *o = opaque;
    BDRVQcow2State *s = o->bs->opaque;

    store_bitmaps(o->bs);
    o->ret = qcow2_co_flush_to_os(o->bs);
    if (o->ret == 0 && s->dirty_set && !s->refcounts_stale) {
        o->ret = qcow2_mark_clean(o->bs);
        s->dirty_set = o->ret < 0;
    }
}

/* Switching to read-write: the bitmaps marked in-use before any write
 * (the file below is writable already). */
static void coroutine_fn reopen_rw_entry(void *opaque)
{
    ReopenRoCo *o = opaque;

    o->ret = qcow2_bitmaps_reopen_rw(o->bs);
}

static int qcow2_reopen_read_only(BlockDriverState *bs, bool read_only,
                                  Error **errp)
{
    ReopenRoCo o = { bs, 0 };

    if (!read_only && !(bs->open_flags & BDRV_O_RDWR)) {
        co_run_sync(reopen_rw_entry, &o);
        if (o.ret < 0) {
            error_setg_errno(errp, -o.ret, "Can't update bitmap directory");
        }
        return o.ret;
    }
    if (!read_only || !(bs->open_flags & BDRV_O_RDWR)) {
        return 0;
    }
    co_run_sync(reopen_ro_entry, &o);
    if (o.ret < 0) {
        error_setg_errno(errp, -o.ret, "Could not flush qcow2 metadata");
    }
    return o.ret;
}

static const BlockDriverReopenOps qcow2_reopen_ops = {
    .read_only = qcow2_reopen_read_only,
    .prepare = qcow2_reopen_prepare,
    .commit = qcow2_reopen_commit,
    .abort = qcow2_reopen_abort,
};

/* ---- a node marked corrupt while writable (s->broken) takes no more
 * requests, as the reference's node without a driver: ENOMEDIUM, and
 * flushes succeed with nothing to write ---- */

static bool broken(BlockDriverState *bs)
{
    return ((BDRVQcow2State *)bs->opaque)->broken;
}

static int coroutine_fn io_preadv(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, IOVector *qiov,
                                  BdrvRequestFlags flags)
{
    return broken(bs) ? -ENOMEDIUM
                      : qcow2_co_preadv(bs, offset, bytes, qiov, flags);
}

static int coroutine_fn io_pwritev(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, IOVector *qiov,
                                   BdrvRequestFlags flags)
{
    return broken(bs) ? -ENOMEDIUM
                      : qcow2_co_pwritev(bs, offset, bytes, qiov, flags);
}

static int coroutine_fn io_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes, BdrvRequestFlags flags)
{
    return broken(bs) ? -ENOMEDIUM
                      : qcow2_co_pwrite_zeroes(bs, offset, bytes, flags);
}

static int coroutine_fn io_pdiscard(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes)
{
    return broken(bs) ? -ENOMEDIUM : qcow2_co_pdiscard(bs, offset, bytes);
}

static int coroutine_fn io_flush_to_os(BlockDriverState *bs)
{
    return broken(bs) ? 0 : qcow2_co_flush_user(bs);
}

static int coroutine_fn io_block_status(BlockDriverState *bs, bool want_zero,
                                        int64_t offset, int64_t bytes,
                                        int64_t *pnum, int64_t *map,
                                        BlockDriverState **file)
{
    if (broken(bs)) {
        return -ENOMEDIUM;
    }
    return qcow2_co_block_status(bs, want_zero, offset, bytes, pnum, map,
                                 file);
}

static int coroutine_fn io_copy_range_from(BlockDriverState *bs,
                                           BdrvChild *src, int64_t offset,
                                           BdrvChild *dst, int64_t dst_offset,
                                           int64_t bytes, BdrvRequestFlags rf,
                                           BdrvRequestFlags wf)
{
    if (broken(bs)) {
        return -ENOMEDIUM;
    }
    return qcow2_co_copy_range_from(bs, src, offset, dst, dst_offset, bytes,
                                    rf, wf);
}

static int coroutine_fn io_copy_range_to(BlockDriverState *bs,
                                         BdrvChild *src, int64_t src_offset,
                                         BdrvChild *dst, int64_t offset,
                                         int64_t bytes, BdrvRequestFlags rf,
                                         BdrvRequestFlags wf)
{
    if (broken(bs)) {
        return -ENOMEDIUM;
    }
    return qcow2_co_copy_range_to(bs, src, src_offset, dst, offset, bytes,
                                  rf, wf);
}

static int coroutine_fn io_truncate(BlockDriverState *bs, int64_t offset,
                                    bool exact, PreallocMode prealloc,
                                    BdrvRequestFlags flags, Error **errp)
{
    if (broken(bs)) {
        error_setg_errno(errp, ENOMEDIUM, "Failed to resize qcow2 image");
        return -ENOMEDIUM;
    }
    return qcow2_co_truncate(bs, offset, exact, prealloc, flags, errp);
}

static const BlockDriverIO qcow2_io = {
    .co_preadv = io_preadv,
    .co_pwritev = io_pwritev,
    .co_pwrite_zeroes = io_pwrite_zeroes,
    .co_pdiscard = io_pdiscard,
    .co_flush_to_os = io_flush_to_os,
    .co_block_status = io_block_status,
    .co_copy_range_from = io_copy_range_from,
    .co_copy_range_to = io_copy_range_to,
    .co_truncate = io_truncate,
    .co_getlength = qcow2_co_getlength,
    .co_get_allocated_file_size = qcow2_co_get_allocated_file_size,
};

static const BlockDriverMeasureOps qcow2_measure_ops = {
    .measure = qcow2_measure,
};

static const BlockDriverBackingOps qcow2_backing_ops = {
    .change_backing_file = qcow2_change_backing_file,
    .make_empty = qcow2_co_make_empty,
};

/* The key changes what the node reads: it stays in a json: name. */
static const char *const qcow2_strong_opts[] = { "encrypt.key-secret", NULL };

static const BlockDriverNamingOps qcow2_naming_ops = {
    .strong_opts = qcow2_strong_opts,
};

const BlockDriver bdrv_qcow2 = {
    .format_name = "qcow2",
    .kind = BDRV_KIND_FORMAT,
    .instance_size = sizeof(BDRVQcow2State),
    .open_opts = qcow2_open_opts,
    .create_opts = qcow2_create_opts,
    .supports_backing = true,
    .supports_compression = true,
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .co_create_opts = qcow2_co_create_opts,
    .refresh_limits = qcow2_refresh_limits,
    .io = &qcow2_io,
    .info = &qcow2_info_ops,
    .measure = &qcow2_measure_ops,
    .naming = &qcow2_naming_ops,
    .backing = &qcow2_backing_ops,
    .check = &qcow2_check_ops,
    .snapshot = &qcow2_snapshot_ops,
    .bitmaps = &qcow2_bitmap_ops,
    .reopen = &qcow2_reopen_ops,
    .amend = &qcow2_amend_ops,
};
