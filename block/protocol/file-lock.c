#include "config.h"
/*
 * Image locking for the file protocol, byte-compatible with QEMU so that
 * both exclude each other: an open file description holds a shared OFD
 * lock on byte 100+i while it holds permission bit i and on byte 200+i
 * while it refuses to share bit i.  Conflicts are found by probing with a
 * write lock (F_OFD_GETLK): our own description never conflicts with
 * itself, every other description (even in this process) does.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include "block/protocol/file-posix-internal.h"

/* One F_OFD_SETLK on a single byte; 0 or -errno. */
static int lock_byte(int fd, int64_t byte, short type)
{
    struct flock fl = {
        .l_whence = SEEK_SET, .l_start = byte, .l_len = 1, .l_type = type,
    };

    if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
        return -errno;
    }
    return 0;
}

/* Would an exclusive lock on @byte conflict with another holder? */
static int test_byte(int fd, int64_t byte)
{
    struct flock fl = {
        .l_whence = SEEK_SET, .l_start = byte, .l_len = 1, .l_type = F_WRLCK,
    };

    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    return fl.l_type == F_UNLCK ? 0 : -EAGAIN;
}

bool raw_has_ofd_lock(void)
{
    struct flock fl = {
        .l_whence = SEEK_SET, .l_start = 0, .l_len = 0, .l_type = F_RDLCK,
    };
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    bool ok;

    if (fd < 0) {
        return false;
    }
    ok = fcntl(fd, F_OFD_GETLK, &fl) == 0;
    close(fd);
    return ok;
}

/* EAGAIN is the normal "someone else holds it" answer: no errno text. */
static void lock_error(Error **errp, int err, const char *what, int byte)
{
    if (err == -EAGAIN || err == -EACCES) {
        error_setg(errp, "Failed to %s byte %d", what, byte);
    } else {
        error_setg_errno(errp, -err, "Failed to %s byte %d", what, byte);
    }
}

/* Bring one byte in line with @want; *held tracks the bit.  @unlock
 * allows releasing a byte no longer wanted. */
static int apply_one(int fd, int byte, uint64_t bit, bool want, bool unlock,
                     uint64_t *held, Error **errp)
{
    int ret;

    if (want && !(*held & bit)) {
        ret = lock_byte(fd, byte, F_RDLCK);
        if (ret < 0) {
            lock_error(errp, ret, "lock", byte);
            return ret;
        }
        *held |= bit;
    } else if (unlock && !want && (*held & bit)) {
        ret = lock_byte(fd, byte, F_UNLCK);
        if (ret < 0) {
            lock_error(errp, ret, "unlock", byte);
            return ret;
        }
        *held &= ~bit;
    }
    return 0;
}

/*
 * Take the bytes for @perm_bits (100+i) and @unshared_bits (200+i).  With
 * @unlock, also drop held bytes not in those sets.  @s may be NULL (image
 * creation: nothing is tracked).
 */
int raw_apply_lock_bytes(BDRVRawState *s, int fd, uint64_t perm_bits,
                         uint64_t unshared_bits, bool unlock, Error **errp)
{
    uint64_t dummy_p = 0, dummy_s = 0;
    uint64_t *held_p = s ? &s->locked_perm : &dummy_p;
    uint64_t *held_s = s ? &s->locked_shared : &dummy_s;

    for (int i = 0; i < RAW_LOCK_NPERMS; i++) {
        uint64_t bit = 1ULL << i;
        int ret = apply_one(fd, RAW_LOCK_PERM_BASE + i, bit,
                            perm_bits & bit, unlock, held_p, errp);
        if (ret < 0) {
            return ret;
        }
        ret = apply_one(fd, RAW_LOCK_SHARED_BASE + i, bit,
                        unshared_bits & bit, unlock, held_s, errp);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Reports one conflicting byte as QEMU words it. */
static void conflict_error(Error **errp, int err, bool shared, uint64_t bit)
{
    const char *name = bdrv_perm_name(bit);
    const char *kind = shared ? "shared " : "";

    if (err == -EAGAIN) {
        error_setg(errp, "Failed to get %s\"%s\" lock", kind, name);
    } else {
        error_setg_errno(errp, -err, "Failed to get %s\"%s\" lock", kind,
                         name);
    }
}

/*
 * Does anyone else refuse to share something in @perm (byte 200+i), or
 * hold something we refuse to share (byte 100+i)?
 */
int raw_check_lock_bytes(int fd, uint64_t perm, uint64_t shared, Error **errp)
{
    for (int i = 0; i < RAW_LOCK_NPERMS; i++) {
        uint64_t bit = 1ULL << i;
        if (perm & bit) {
            int ret = test_byte(fd, RAW_LOCK_SHARED_BASE + i);
            if (ret < 0) {
                conflict_error(errp, ret, false, bit);
                return ret;
            }
        }
    }
    for (int i = 0; i < RAW_LOCK_NPERMS; i++) {
        uint64_t bit = 1ULL << i;
        if (!(shared & bit)) {
            int ret = test_byte(fd, RAW_LOCK_PERM_BASE + i);
            if (ret < 0) {
                conflict_error(errp, ret, true, bit);
                return ret;
            }
        }
    }
    return 0;
}

/* Go back to exactly the committed state's bytes (errors ignored). */
static void raw_revert_locks(BDRVRawState *s)
{
    raw_apply_lock_bytes(s, s->fd, s->perm, ~s->shared_perm, true, NULL);
}

/*
 * Prepare: lock the union of the old and the new bytes (so nothing is
 * given up before the transaction commits), then look for conflicts with
 * the new state.  On failure the node is back in its committed state.
 */
int raw_check_perm(BlockDriverState *bs, uint64_t perm, uint64_t shared,
                   Error **errp)
{
    BDRVRawState *s = bs->opaque;
    int ret;

    if (!s->use_lock) {
        return 0;
    }
    if ((s->perm | perm) == s->perm &&
        (s->shared_perm & shared) == s->shared_perm) {
        return 0;   /* only releasing: cannot conflict */
    }
    ret = raw_apply_lock_bytes(s, s->fd, s->perm | perm,
                               ~s->shared_perm | ~shared, false, errp);
    if (ret == 0) {
        ret = raw_check_lock_bytes(s->fd, perm, shared, errp);
        if (ret == 0) {
            return 0;
        }
        error_append_hint(errp, "Is another process using the image [%s]?\n",
                          bs->filename ? bs->filename : s->path);
    }
    raw_revert_locks(s);
    return ret;
}

/* Commit: hold exactly the new bytes. */
void raw_set_perm(BlockDriverState *bs, uint64_t perm, uint64_t shared)
{
    BDRVRawState *s = bs->opaque;

    if (s->use_lock) {
        raw_apply_lock_bytes(s, s->fd, perm, ~shared, true, NULL);
    }
    s->perm = perm;
    s->shared_perm = shared;
}

void raw_abort_perm_update(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;

    if (s->use_lock) {
        raw_revert_locks(s);
    }
}
