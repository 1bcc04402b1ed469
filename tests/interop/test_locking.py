"""Image locking: Strata takes exactly the OFD lock bytes the reference
takes in the same role, and each refuses what the other holds."""
import os
import subprocess
import time

import pytest

from conftest import make_image, run

MiB = 1 << 20


def lock_ranges(path):
    """The (start, end, type) OFD locks on @path's inode, from /proc/locks."""
    st = os.stat(path)
    tag = f'{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} '
    out = set()
    with open('/proc/locks') as f:
        for line in f:
            if tag in line:
                parts = line.split()
                out.add((int(parts[-2]), parts[-1], parts[3]))
    return out


class Holder:
    """A process holding an image open (qemu-io -c 'sleep ...')."""

    def __init__(self, argv, img, settle=5.0):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.img = img
        deadline = time.monotonic() + settle
        # Wait until the holder's locks appear (or it dies).
        while time.monotonic() < deadline and self.proc.poll() is None:
            if lock_ranges(img):
                time.sleep(0.2)   # let it finish taking all of them
                return
            time.sleep(0.05)

    def locks(self):
        return lock_ranges(self.img)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def hold(prog, opts, img):
    return Holder([prog, '-f', 'raw'] + opts + ['-c', 'sleep 30000', img], img)


ROLES = [('read-write', []), ('read-only', ['-r']), ('force-share', ['-r', '-U'])]


@pytest.mark.parametrize('role', ROLES, ids=[r[0] for r in ROLES])
def test_same_lock_bytes_as_reference(role, tmp_path, strata_io, ref_qemu_io):
    img = make_image(tmp_path / 'l.raw', 1 * MiB)
    ref = hold(ref_qemu_io, role[1], img)
    try:
        ref_locks = ref.locks()
    finally:
        ref.stop()
    assert ref_locks, 'reference took no locks?'
    ours = hold(strata_io, role[1], img)
    try:
        assert ours.proc.poll() is None, ours.proc.stderr.read()
        assert ours.locks() == ref_locks
    finally:
        ours.stop()


def test_locking_off_takes_no_locks(tmp_path, strata_io):
    img = make_image(tmp_path / 'n.raw', 1 * MiB)
    argv = [strata_io, '--image-opts', '-c', 'sleep 1500',
            f'driver=raw,file.driver=file,file.filename={img},file.locking=off']
    proc = subprocess.Popen(argv)
    time.sleep(0.7)
    try:
        assert proc.poll() is None
        assert lock_ranges(img) == set()
    finally:
        proc.terminate()
        proc.wait()


def test_nbd_refusing_resize_stops_strata_truncate(tmp_path, our_qemu_io,
                                                   ref_qemu_io, ref_qemu_nbd):
    img = make_image(tmp_path / 'r.raw', 1 * MiB)
    nbd = Holder([ref_qemu_nbd, '-f', 'raw', '-t', img], img)
    try:
        assert any(start == 203 for start, _, _ in nbd.locks())
        ref = run([ref_qemu_io, '-f', 'raw', '-c', 'truncate 2M', img])
        ours = run([our_qemu_io, '-f', 'raw', '-c', 'truncate 2M', img])
        assert ref.rc != 0 and 'Failed to get "resize" lock' in ref.err
        assert (ours.rc, ours.out, ours.err) == (ref.rc, ref.out, ref.err)
        assert os.path.getsize(img) == 1 * MiB
        # writing is shared by qemu-nbd: allowed for both
        assert run([our_qemu_io, '-f', 'raw', '-c', 'write 0 512', img]).rc == 0
    finally:
        nbd.stop()


def test_strata_refusing_sharing_stops_reference(tmp_path, strata_lockholder,
                                                 ref_qemu_io):
    """A Strata process that does not share "write" makes the reference's
    writer fail with its own message, and shows in /proc/locks as QEMU's
    bytes (101 taken, 201 unshared)."""
    img = make_image(tmp_path / 's.raw', 1 * MiB)
    h = Holder([strata_lockholder, img, 'write', 'consistent-read'], img)
    try:
        assert h.proc.poll() is None, h.proc.stderr.read()
        assert {101, 201} <= {s for s, _, _ in h.locks()}
        ref = run([ref_qemu_io, '-f', 'raw', '-c', 'write 0 512', img])
        assert ref.rc == 1
        assert 'Failed to get "write" lock' in ref.err
        assert 'Is another process using the image' in ref.err
    finally:
        h.stop()



def hold_ofd_byte(path, byte):
    """Another process's way of unsharing a permission, done by hand: an
    OFD read lock on QEMU's byte 200+i (here held by this test process)."""
    import fcntl
    import struct
    fd = os.open(path, os.O_RDWR)
    # struct flock: l_type, l_whence (short), l_start, l_len (off_t), l_pid
    lk = struct.pack('hhqqi4x', fcntl.F_RDLCK, os.SEEK_SET, byte, 1, 0)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lk)
    return fd


@pytest.mark.parametrize('cmd', [['info'], ['info', '--output=json'],
                                 ['map', '--output=json']])
def test_metadata_commands_and_unshared_read(tmp_path, our_qemu_img,
                                             ref_qemu_img, cmd):
    """Someone unshares consistent read (byte 200): info opens without
    I/O and takes no lock, so it still works, as the reference's; map
    reads, so both refuse with the same message."""
    img = make_image(tmp_path / 'x.raw', 1 * MiB)
    fd = hold_ofd_byte(img, 200)
    try:
        res = []
        for prog in (ref_qemu_img, our_qemu_img):
            r = run([prog] + cmd + ['-f', 'raw', img])
            res.append((r.rc, r.out, r.err.replace(prog, 'qemu-img')))
        assert res[1] == res[0]
    finally:
        os.close(fd)
