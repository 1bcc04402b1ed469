#include "config.h"
/*
 * The "file", "host_device" and "host_cdrom" protocol drivers: open/close, options,
 * O_DIRECT alignment probing, reopen, image creation and the driver
 * tables.  Data path in file-io.c, locking in file-lock.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/cdrom.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "block/drivers.h"
#include "block/protocol/file-posix-internal.h"
#include "util/cutils.h"

#define MAX_BLOCKSIZE 4096

static const BlockOptDesc raw_open_opts[] = {
    { "filename", OPT_STRING, "File name of the image", NULL },
    { "aio", OPT_STRING, "host AIO implementation (threads, native, io_uring)",
      NULL },
    { "aio-max-batch", OPT_NUMBER, "AIO max batch size (0 = auto)", "0" },
    { "locking", OPT_STRING, "file locking mode (on/off/auto, default: auto)",
      "auto" },
    { "pr-manager", OPT_STRING, "id of persistent reservation manager object",
      NULL },
    { "drop-cache", OPT_BOOL, "invalidate page cache during live migration",
      "on" },
    { "x-check-cache-dropped", OPT_BOOL,
      "check that page cache was dropped on live migration", "off" },
    { NULL },
};

static const BlockOptDesc raw_create_opts[] = {
    { "extent_size_hint", OPT_SIZE,
      "Extent size hint for the image file, 0 to disable", NULL },
    { "nocow", OPT_BOOL, "Turn off copy-on-write (valid only on btrfs)",
      NULL },
    { "preallocation", OPT_STRING,
      "Preallocation mode (allowed values: off, falloc, full)", NULL },
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { NULL },
};

/* ---- option parsing ---- */

typedef struct RawOpenOpts {
    const char *filename;
    bool aio_given;
    AioEngineType aio;
    int locking;                  /* 0 off, 1 on, 2 auto */
} RawOpenOpts;

/* on/off/auto as QEMU's OnOffAuto enum; -1 if invalid. */
static int parse_on_off_auto(const char *v)
{
    if (!strcmp(v, "off")) {
        return 0;
    }
    if (!strcmp(v, "on")) {
        return 1;
    }
    return !strcmp(v, "auto") ? 2 : -1;
}

/* Validates the driver options in the reference's order. */
static int raw_parse_opts(QDict *options, RawOpenOpts *o, Error **errp)
{
    Error *local_err = NULL;
    const char *v;

    o->filename = bdrv_opt_str(options, "filename", NULL);
    if (!o->filename) {
        error_setg(errp, "Parameter 'filename' is missing");
        return -EINVAL;
    }
    v = bdrv_opt_str(options, "aio", NULL);
    o->aio_given = v != NULL;
    o->aio = aio_engine_default();
    if (v && !aio_engine_parse(v, &o->aio)) {
        error_setg(errp, "invalid parameter value: %s", v);
        return -EINVAL;
    }
    bdrv_opt_number(options, "aio-max-batch", 0, &local_err);
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    v = bdrv_opt_str(options, "locking", "auto");
    o->locking = parse_on_off_auto(v);
    if (o->locking < 0) {
        error_setg(errp, "invalid parameter value: %s", v);
        return -EINVAL;
    }
    v = bdrv_opt_str(options, "pr-manager", NULL);
    if (v) {
        error_setg(errp, "No persistent reservation manager with id '%s'", v);
        return -EINVAL;
    }
    bdrv_opt_bool(options, "drop-cache", true, &local_err);
    if (!local_err) {
        bdrv_opt_bool(options, "x-check-cache-dropped", false, &local_err);
    }
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    return 0;
}

/* ---- O_DIRECT alignment probing ---- */

/* Linux fails misaligned O_DIRECT reads with EINVAL; other errors (a
 * broken disk) say nothing about alignment. */
static bool raw_is_io_aligned(int fd, void *buf, size_t len)
{
    ssize_t ret = pread(fd, buf, len, 0);
    return ret >= 0 || errno != EINVAL;
}

/* Smallest of 1, 512, 1024, ... for which reads succeed: @vary_buf
 * probes buffer alignment, otherwise request length.  When even 1 works
 * the read proved nothing (a hole, or the end of the file, needs no
 * device I/O), so the safe @max_align is taken, as QEMU takes it. */
static size_t probe_align(int fd, uint8_t *buf, size_t max_align,
                          bool vary_buf)
{
    for (size_t align = 1; align <= max_align;
         align = align == 1 ? 512 : align << 1) {
        bool ok = vary_buf ? raw_is_io_aligned(fd, buf + align, max_align)
                           : raw_is_io_aligned(fd, buf, align);
        if (ok) {
            return align == 1 ? max_align : align;
        }
    }
    return 0;
}

/* Find request and memory alignment for O_DIRECT (1 without it). */
static int raw_probe_alignment(BDRVRawState *s, Error **errp)
{
    size_t max_align = MAX(MAX_BLOCKSIZE, sysconf(_SC_PAGESIZE));
    unsigned int sector = 0;
    void *buf = NULL;

    if (!(s->open_flags & O_DIRECT)) {
        s->req_align = 1;
        s->buf_align = 1;
        return 0;
    }
    if (s->is_blockdev && ioctl(s->fd, BLKSSZGET, &sector) < 0) {
        sector = 0;
    }
    if (posix_memalign(&buf, max_align, 2 * max_align)) {
        error_setg(errp, "Could not allocate alignment probe buffer");
        return -ENOMEM;
    }
    s->req_align = sector ? sector : probe_align(s->fd, buf, max_align, false);
    s->buf_align = probe_align(s->fd, buf, max_align, true);
    free(buf);
    if (!s->buf_align || !s->req_align) {
        error_setg(errp, "Could not find working O_DIRECT alignment");
        error_append_hint(errp, "Try cache.direct=off\n");
        return -EINVAL;
    }
    return 0;
}

/* ---- open / close ---- */

/* Did open(2) fail with EINVAL only because of O_DIRECT?  The file opens
 * without it: the file system has no direct I/O (ramfs, some FUSE). */
static bool raw_direct_unsupported(const char *filename, int oflags)
{
    int fd;

    if (errno != EINVAL || !(oflags & O_DIRECT)) {
        return false;
    }
    fd = open(filename, (oflags & ~O_DIRECT) | O_CLOEXEC);
    if (fd < 0) {
        errno = EINVAL;
        return false;
    }
    close(fd);
    errno = EINVAL;
    return true;
}

/* open(2) with EINTR retry; the reference's message on failure. */
static int raw_open_fd(const char *filename, int oflags, Error **errp)
{
    int fd;

    do {
        fd = open(filename, oflags | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0 && raw_direct_unsupported(filename, oflags)) {
        error_setg(errp, "Could not open '%s': filesystem does not support "
                   "O_DIRECT", filename);
        return -EINVAL;
    }
    if (fd < 0) {
        error_setg_errno(errp, errno, "Could not open '%s'", filename);
        return errno == EROFS ? -EACCES : -errno;
    }
    return fd;
}

static int raw_oflags(int bdrv_flags)
{
    int oflags = (bdrv_flags & BDRV_O_RDWR) ? O_RDWR : O_RDONLY;

    if (bdrv_flags & BDRV_O_NOCACHE) {
        oflags |= O_DIRECT;
    }
    return oflags;
}

/* Read-only block devices still open O_RDWR; writes would fail later. */
static int check_hdev_writable(int fd, Error **errp)
{
    struct stat st;
    int ro = 0;

    if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode)) {
        return 0;
    }
    if (ioctl(fd, BLKROGET, &ro) < 0) {
        error_setg_errno(errp, errno, "The device is not writable");
        return -errno;
    }
    if (ro) {
        error_setg_errno(errp, EACCES, "The device is not writable");
        return -EACCES;
    }
    return 0;
}

/* Pick and attach the I/O engine (native AIO needs O_DIRECT). */
/* The engine when none was asked for.  Buffered I/O on regular files
 * gains nothing from io_uring: the kernel punts it to io-wq workers, which
 * serialise writes to one file, so the worker pool (qemu's default too) is
 * faster there; io_uring is the default for O_DIRECT. */
static AioEngineType raw_default_engine(const BDRVRawState *s)
{
    return (s->open_flags & O_DIRECT) ? aio_engine_default()
                                      : AIO_ENGINE_THREADS;
}

static int raw_setup_engine(BDRVRawState *s, const RawOpenOpts *o,
                            Error **errp)
{
    Error *local_err = NULL;
    AioEngineType type = o->aio_given ? o->aio : raw_default_engine(s);

    s->engine_type = type;
    if (type == AIO_ENGINE_NATIVE && !(s->open_flags & O_DIRECT)) {
        error_setg(errp, "aio=native was specified, but it requires "
                   "cache.direct=on, which was not specified.");
        return -EINVAL;
    }
    if (o->aio_given && !aio_engine_available(type)) {
        error_setg(errp, "aio=%s was specified, but is not supported in this "
                   "build.", aio_engine_name(type));
        return -EINVAL;
    }
    s->engine = aio_engine_get(aio_get_default(), type, &local_err);
    if (!s->engine && !o->aio_given && type != AIO_ENGINE_THREADS) {
        /* the default engine failed at run time: fall back quietly */
        error_free(local_err);
        local_err = NULL;
        s->engine_type = AIO_ENGINE_THREADS;
        s->engine = aio_engine_get(aio_get_default(), AIO_ENGINE_THREADS,
                                   &local_err);
    }
    if (!s->engine) {
        error_propagate_prepend(errp, local_err, "Unable to use %s: ",
                                type == AIO_ENGINE_NATIVE ? "native AIO"
                                                          : "io_uring");
        return -EINVAL;
    }
    aio_engine_register_fd(s->engine, s->fd);
    return 0;
}

/* The file kind must match the driver. */
static int raw_check_type(BlockDriverState *bs, BDRVRawState *s,
                          Error **errp)
{
    const char *name = bs->filename && *bs->filename ? bs->filename : s->path;
    struct stat st;

    if (fstat(s->fd, &st) < 0) {
        error_setg_errno(errp, errno, "Could not stat file");
        return -errno;
    }
    if (!s->is_device && !S_ISREG(st.st_mode)) {
        error_setg(errp, "'%s' driver requires '%s' to be a regular file",
                   bs->drv->format_name, name);
        return -EINVAL;
    }
    if (s->is_device && !S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) {
        error_setg(errp, "'%s' driver requires '%s' to be either "
                   "a character or block device", bs->drv->format_name, name);
        return -EINVAL;
    }
    s->is_blockdev = S_ISBLK(st.st_mode);
    if (S_ISREG(st.st_mode)) {
        /* a regular file grows with zeroes */
        bs->supported_truncate_flags = BDRV_REQ_ZERO_WRITE;
    }
    return 0;
}

/* Capabilities, limits and locking mode once the fd is known good. */
static void raw_init_state(BlockDriverState *bs, BDRVRawState *s, int locking)
{
    thread_pool_lane_init(&s->write_lane, 1);
    thread_pool_lane_init(&s->copy_lane, RAW_COPY_WIDTH);
    s->mem_fs = !s->is_device && raw_fd_on_mem_fs(s->fd);
    s->has_discard = true;
    s->has_write_zeroes = !s->is_device;
    s->has_fallocate = !s->is_device;
    s->has_blkzeroout = s->is_blockdev;
    s->has_copy_range = true;
    s->perm = 0;
    s->shared_perm = BLK_PERM_ALL;
    if (locking == 1) {
        s->use_lock = true;
        if (!raw_has_ofd_lock()) {
            warn_report("File lock requested but OFD locking syscall is "
                        "unavailable, falling back to POSIX file locks");
        }
    } else {
        s->use_lock = locking == 2 && raw_has_ofd_lock();
    }
    bs->supported_write_flags = BDRV_REQ_FUA;
    bs->supported_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK;
}

static void raw_close(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;

    if (s->fd >= 0) {
        if (s->engine) {
            aio_engine_unregister_fd(s->engine, s->fd);
        }
        close(s->fd);
        s->fd = -1;
    }
    g_clear_pointer(&s->path, g_free);
}

/* Everything after the options are parsed; closes on failure. */
static int raw_open_fd_state(BlockDriverState *bs, BDRVRawState *s,
                             const RawOpenOpts *o, int flags, Error **errp)
{
    int ret;

    s->open_flags = raw_oflags(flags) | (s->is_cdrom ? O_NONBLOCK : 0);
    s->fd = raw_open_fd(o->filename, s->open_flags, errp);
    if (s->fd < 0) {
        ret = s->fd;
        s->fd = -1;
        raw_close(bs);
        return ret;
    }
    ret = (s->open_flags & O_RDWR) ? check_hdev_writable(s->fd, errp) : 0;
    if (ret == 0) {
        ret = raw_setup_engine(s, o, errp);
    }
    if (ret == 0) {
        ret = raw_check_type(bs, s, errp);
    }
    if (ret == 0) {
        ret = raw_probe_alignment(s, errp);
    }
    if (ret < 0) {
        raw_close(bs);
    }
    return ret;
}

/* Without aio=, an engine the opener asked for in the flags counts as
 * given (with the same checks). */
static void raw_engine_from_flags(RawOpenOpts *o, int flags)
{
    if (o->aio_given || !(flags & BDRV_O_AIO_MASK)) {
        return;
    }
    o->aio_given = true;
    o->aio = (flags & BDRV_O_AIO_NATIVE) ? AIO_ENGINE_NATIVE
           : (flags & BDRV_O_AIO_IO_URING) ? AIO_ENGINE_IO_URING
           : AIO_ENGINE_THREADS;
}

/* Shared open for both drivers. */
static int raw_open_common(BlockDriverState *bs, QDict *options, int flags,
                           bool device, Error **errp)
{
    BDRVRawState *s = bs->opaque;
    RawOpenOpts o = { 0 };
    int ret;

    s->fd = -1;
    s->is_device = device;
    ret = raw_parse_opts(options, &o, errp);
    if (ret < 0) {
        return ret;
    }
    raw_engine_from_flags(&o, flags);
    s->path = g_strdup(o.filename);
    ret = raw_open_fd_state(bs, s, &o, flags, errp);
    if (ret < 0) {
        return ret;
    }
    raw_init_state(bs, s, o.locking);
    return 0;
}

static int raw_open(BlockDriverState *bs, QDict *options, int flags,
                    Error **errp)
{
    return raw_open_common(bs, options, flags, false, errp);
}

static int hdev_open(BlockDriverState *bs, QDict *options, int flags,
                     Error **errp)
{
    return raw_open_common(bs, options, flags, true, errp);
}

/* Is there a disc in the drive?  Asked of the drive each time: a disc
 * comes and goes without telling us. */
static bool cdrom_is_inserted(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;

    return ioctl(s->fd, CDROM_DRIVE_STATUS, CDSL_CURRENT) == CDS_DISC_OK;
}

/* O_NONBLOCK: opening a drive with no disc in it must not fail. */
static int cdrom_open(BlockDriverState *bs, QDict *options, int flags,
                      Error **errp)
{
    BDRVRawState *s = bs->opaque;

    s->is_cdrom = true;
    return raw_open_common(bs, options, flags, true, errp);
}

static void raw_refresh_limits(BlockDriverState *bs, Error **errp)
{
    BDRVRawState *s = bs->opaque;
    size_t page = sysconf(_SC_PAGESIZE);

    bs->bl.request_alignment = MAX(s->req_align, 1);
    bs->bl.min_mem_alignment = MAX(s->buf_align, 1);
    bs->bl.opt_mem_alignment = MAX(s->buf_align, page);
    bs->bl.max_transfer = 0;
}

/* Reopen the file with @oflags; locks move to the new description before
 * the old one (and its locks) goes away.  On failure nothing changed. */
static int raw_reopen_oflags(BDRVRawState *s, int oflags, Error **errp)
{
    uint64_t lp = s->locked_perm, ls = s->locked_shared;
    int fd, ret;

    fd = raw_open_fd(s->path, oflags, errp);
    if (fd < 0) {
        return fd;
    }
    s->locked_perm = s->locked_shared = 0;
    ret = raw_apply_lock_bytes(s, fd, lp, ls, false, errp);
    if (ret < 0) {
        close(fd);
        s->locked_perm = lp;
        s->locked_shared = ls;
        return ret;
    }
    aio_engine_unregister_fd(s->engine, s->fd);
    close(s->fd);
    s->fd = fd;
    s->open_flags = oflags;
    aio_engine_register_fd(s->engine, s->fd);
    return 0;
}

/* Switch the fd's access mode. */
static int raw_reopen_read_only(BlockDriverState *bs, bool read_only,
                                Error **errp)
{
    BDRVRawState *s = bs->opaque;
    int oflags = (s->open_flags & ~O_ACCMODE) | (read_only ? O_RDONLY : O_RDWR);

    return oflags == s->open_flags ? 0 : raw_reopen_oflags(s, oflags, errp);
}

/* Buffered -> O_DIRECT: the reference probes the alignment of the new
 * descriptor through the old, buffered one, where reads of any size
 * succeed, so it settles on its safe maximum (a block device's logical
 * block size still comes from the ioctl).  The same alignment here makes
 * the same requests reach the file: a write then rounds out to 4 KiB and
 * the file grows to a multiple of it, as it does under the reference. */
static void raw_reopen_alignment(BDRVRawState *s)
{
    unsigned int sector = 0;

    if (s->is_blockdev && ioctl(s->fd, BLKSSZGET, &sector) < 0) {
        sector = 0;
    }
    s->req_align = sector ? sector : MAX(MAX_BLOCKSIZE,
                                         sysconf(_SC_PAGESIZE));
    s->buf_align = s->req_align;
}

/* Switch O_DIRECT on or off; alignment is probed again for the new fd
 * (the core refreshes the limits afterwards), and for the same O_DIRECT
 * fd (it corrects the first probe's guess: see raw_reopen_alignment()).
 * Linux AIO needs O_DIRECT. */
static int raw_reopen_direct(BlockDriverState *bs, bool direct, Error **errp)
{
    BDRVRawState *s = bs->opaque;
    int oflags = direct ? s->open_flags | O_DIRECT : s->open_flags & ~O_DIRECT;
    int old = s->open_flags;
    size_t req_align = s->req_align, buf_align = s->buf_align;

    if (oflags == s->open_flags) {
        if (direct && raw_probe_alignment(s, NULL) < 0) {
            s->req_align = req_align;
            s->buf_align = buf_align;
        }
        return 0;
    }
    if (!direct && s->engine_type == AIO_ENGINE_NATIVE) {
        error_setg(errp, "aio=native was specified, but it requires "
                   "cache.direct=on, which was not specified.");
        return -EINVAL;
    }
    if (raw_reopen_oflags(s, oflags, errp) < 0) {
        return -EINVAL;
    }
    if (direct && !(old & O_DIRECT)) {
        raw_reopen_alignment(s);
        return 0;
    }
    if (raw_probe_alignment(s, errp) < 0) {
        raw_reopen_oflags(s, old, NULL);
        raw_probe_alignment(s, NULL);
        return -EINVAL;
    }
    return 0;
}

/* ---- filenames and probing ---- */

/* Strips "@proto:"; a rest that would look like a protocol prefix
 * itself ("file:a:b") becomes "./a:b", as in QEMU. */
static void put_stripped_filename(const char *filename, const char *proto,
                                  QDict *options)
{
    const char *rest = bdrv_strip_protocol_prefix(filename, proto);
    g_autofree char *dotted = NULL;

    if (rest != filename && rest[strcspn(rest, ":/")] == ':') {
        dotted = g_strconcat("./", rest, NULL);
        rest = dotted;
    }
    qdict_put_str(options, "filename", rest);
}

/* "file:" prefixes are stripped; the rest is the path. */
static void raw_parse_filename(const char *filename, QDict *options,
                               Error **errp)
{
    put_stripped_filename(filename, "file", options);
}

static void hdev_parse_filename(const char *filename, QDict *options,
                                Error **errp)
{
    put_stripped_filename(filename, "host_device", options);
}

static void cdrom_parse_filename(const char *filename, QDict *options,
                                 Error **errp)
{
    put_stripped_filename(filename, "host_cdrom", options);
}

/* /dev/cd* or a device that answers the CD-ROM drive status ioctl. */
static int cdrom_probe_device(const char *filename)
{
    int fd, ret;

    if (!strncmp(filename, "/dev/cd", 7)) {
        return 100;
    }
    fd = open(filename, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    ret = ioctl(fd, CDROM_DRIVE_STATUS, CDSL_CURRENT) >= 0 ? 100 : 0;
    close(fd);
    return ret;
}

/* Block and character devices belong to host_device; /dev/cdrom is left
 * for host_cdrom. */
static int hdev_probe_device(const char *filename)
{
    struct stat st;

    if (!strncmp(filename, "/dev/cdrom", 10)) {
        return 50;
    }
    if (stat(filename, &st) == 0 &&
        (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) {
        return 100;
    }
    return 0;
}

/* ---- image creation ---- */

typedef struct RawCreate {
    const char *filename;
    uint64_t size;
    PreallocMode prealloc;
    bool nocow;
    Error *err;
} RawCreate;

/* Best effort: btrfs and friends only. */
static void raw_set_nocow(int fd)
{
    int attr;

    if (ioctl(fd, FS_IOC_GETFLAGS, &attr) == 0) {
        attr |= FS_NOCOW_FL;
        ioctl(fd, FS_IOC_SETFLAGS, &attr);
    }
}

/* Worker: lock like a writer that refuses resizes, empty the file, then
 * size (and preallocate) it. */
static int raw_create_worker(void *opaque)
{
    RawCreate *c = opaque;
    uint64_t perm = BLK_PERM_WRITE | BLK_PERM_RESIZE;
    uint64_t shared = BLK_PERM_ALL & ~BLK_PERM_RESIZE;
    int fd, ret;

    fd = open(c->filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        error_setg_errno(&c->err, errno, "Could not create '%s'", c->filename);
        return -errno;
    }
    ret = raw_apply_lock_bytes(NULL, fd, perm, ~shared, false, &c->err);
    if (ret == 0) {
        ret = raw_check_lock_bytes(fd, perm, shared, &c->err);
        if (ret < 0) {
            error_append_hint(&c->err, "Is another process using the image "
                              "[%s]?\n", c->filename);
        }
    }
    if (ret == 0) {
        ret = raw_regular_truncate(fd, 0, PREALLOC_MODE_OFF, &c->err);
    }
    if (ret == 0 && c->prealloc == PREALLOC_MODE_METADATA) {
        /* as the reference: the file exists (emptied) before the refusal */
        error_setg(&c->err, "Unsupported preallocation mode: metadata");
        ret = -ENOTSUP;
    }
    if (ret == 0 && c->nocow) {
        raw_set_nocow(fd);
    }
    if (ret == 0) {
        ret = raw_regular_truncate(fd, c->size, c->prealloc, &c->err);
    }
    if (close(fd) < 0 && ret == 0) {
        error_setg_errno(&c->err, errno, "Could not close the new file");
        ret = -errno;
    }
    return ret;
}

/* Reads the create options; -EINVAL with errp set on bad values. */
static int raw_create_parse(QDict *opts, RawCreate *c, Error **errp)
{
    Error *local_err = NULL;
    const char *p = bdrv_opt_str(opts, "preallocation", "off");
    uint64_t hint = 0;

    c->size = ROUND_UP(bdrv_opt_size(opts, "size", 0, &local_err),
                       BDRV_SECTOR_SIZE);
    if (!local_err) {
        c->nocow = bdrv_opt_bool(opts, "nocow", false, &local_err);
    }
    if (!local_err) {
        hint = bdrv_opt_size(opts, "extent_size_hint", MiB, &local_err);
    }
    if (local_err) {
        error_propagate(errp, local_err);
        return -EINVAL;
    }
    if (hint > UINT32_MAX) {
        /* the file system takes a 32-bit hint; refused before creating */
        error_setg(errp, "Extent size hint is too large");
        return -EINVAL;
    }
    if (!prealloc_mode_parse(p, &c->prealloc)) {
        error_setg(errp, "invalid parameter value: %s", p);
        return -EINVAL;
    }
    return 0;    /* metadata: refused by the worker, after emptying the file */
}

static int coroutine_fn raw_co_create_opts(const BlockDriver *drv,
                                           const char *filename, QDict *opts,
                                           Error **errp)
{
    RawCreate c = { .filename = bdrv_strip_protocol_prefix(filename, "file") };
    int ret = raw_create_parse(opts, &c, errp);

    if (ret < 0) {
        return ret;
    }
    ret = thread_pool_run(aio_get_default(), raw_create_worker, &c);
    if (c.err) {
        error_propagate(errp, c.err);
    }
    return ret;
}

/* ---- info ---- */

static int raw_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    return 0;
}

/* "format-specific": {"type": "file", "data": {}} as the reference. */
static QDict *raw_get_specific_info(BlockDriverState *bs, Error **errp)
{
    QDict *spec = qdict_new();

    qdict_put_str(spec, "type", "file");
    qdict_put_obj(spec, "data", QOBJECT(qdict_new()));
    return spec;
}

static const BlockDriverInfoOps raw_info_ops = {
    .get_info = raw_get_info,
    .get_specific_info = raw_get_specific_info,
};

/* ---- driver tables ---- */

static const BlockDriverIO raw_io = {
    .co_preadv = raw_co_preadv,
    .co_pwritev = raw_co_pwritev,
    .co_pwrite_zeroes = raw_co_pwrite_zeroes,
    .co_pdiscard = raw_co_pdiscard,
    .co_flush_to_disk = raw_co_flush_to_disk,
    .co_block_status = raw_co_block_status,
    .co_truncate = raw_co_truncate,
    .co_getlength = raw_co_getlength,
    .co_get_allocated_file_size = raw_co_get_allocated_file_size,
    .co_copy_range_from = raw_co_copy_range_from,
    .co_copy_range_to = raw_co_copy_range_to,
    .co_compare_range = raw_co_compare_range,
};

static const BlockDriverPermOps raw_perm_ops = {
    .check_perm = raw_check_perm,
    .set_perm = raw_set_perm,
    .abort_perm_update = raw_abort_perm_update,
};

static const BlockDriverReopenOps raw_reopen_ops = {
    .read_only = raw_reopen_read_only,
    .direct = raw_reopen_direct,
};

static const BlockDriverMediaOps cdrom_media_ops = {
    .is_inserted = cdrom_is_inserted,
};

/* What the three drivers share: everything but naming, opening and
 * creating. */
#define RAW_POSIX_DRIVER_OPS                                        \
    .kind = BDRV_KIND_PROTOCOL,                                     \
    .instance_size = sizeof(BDRVRawState),                          \
    .open_opts = raw_open_opts,                                     \
    .close = raw_close,                                             \
    .refresh_limits = raw_refresh_limits,                           \
    .io = &raw_io,                                                  \
    .info = &raw_info_ops,                                          \
    .perm = &raw_perm_ops,                                          \
    .reopen = &raw_reopen_ops

const BlockDriver bdrv_file = {
    RAW_POSIX_DRIVER_OPS,
    .format_name = "file",
    .protocol_name = "file",
    .create_opts = raw_create_opts,
    .parse_filename = raw_parse_filename,
    .open = raw_open,
    .co_create_opts = raw_co_create_opts,
};

const BlockDriver bdrv_host_device = {
    RAW_POSIX_DRIVER_OPS,
    .format_name = "host_device",
    .protocol_name = "host_device",
    .probe_device = hdev_probe_device,
    .parse_filename = hdev_parse_filename,
    .open = hdev_open,
    .create_opts = bdrv_create_simple_opts,
    .co_create_opts = bdrv_co_create_opts_simple,
};

/* A CD-ROM drive is a host device that may hold no disc. */
const BlockDriver bdrv_host_cdrom = {
    RAW_POSIX_DRIVER_OPS,
    .format_name = "host_cdrom",
    .protocol_name = "host_cdrom",
    .probe_device = cdrom_probe_device,
    .parse_filename = cdrom_parse_filename,
    .open = cdrom_open,
    .media = &cdrom_media_ops,
    .create_opts = bdrv_create_simple_opts,
    .co_create_opts = bdrv_co_create_opts_simple,
};
