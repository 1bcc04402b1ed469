"""qemu-img convert against the real environment: a full file system
(ENOSPC on a small tmpfs, root only), O_DIRECT on disk, and a result the
reference accepts."""
import os
import subprocess

import pytest

from conftest import make_image, run

MiB = 1 << 20


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (needs root)."""
    if os.geteuid() != 0:
        pytest.skip('mounting a tmpfs needs root')
    d = tmp_path / 'small'
    d.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs',
                       str(d)]).returncode != 0:
        pytest.skip('cannot mount tmpfs')
    yield d
    subprocess.run(['umount', str(d)])


@pytest.mark.parametrize('args', [[], ['-W'], ['-o', 'preallocation=full']])
def test_enospc_like_reference(our_qemu_img, ref_qemu_img, tmp_path, small_fs,
                               args):
    s = make_image(tmp_path / 's.raw', 4 * MiB, [(0, os.urandom(4 * MiB))])
    before = open(s, 'rb').read()
    res = []
    for prog in (our_qemu_img, ref_qemu_img):
        t = small_fs / 't'
        r = run([prog, 'convert', '-f', 'raw', '-O', 'raw'] + args + [s, str(t)])
        if t.exists():
            t.unlink()
        res.append((r.rc, r.err.replace(prog, 'qemu-img')))
    if args == ['-W']:
        # out of order: which writes fail first depends on timing
        assert res[0][0] == res[1][0] == 1
        assert 'No space left on device' in res[0][1]
    else:
        assert res[0] == res[1]
    assert open(s, 'rb').read() == before


@pytest.mark.parametrize('args', [[], ['-m', '1'], ['-n', '--target-is-zero']])
def test_enospc_from_tmpfs_like_reference(our_qemu_img, ref_qemu_img, small_fs,
                                          args):
    """tmpfs to tmpfs: the sparse copy fails, and the chunk is redone by
    reads and writes, which report the failing offset as the reference."""
    import shutil
    import tempfile
    d = tempfile.mkdtemp(dir='/dev/shm', prefix='strata-test-')
    try:
        s = make_image(os.path.join(d, 's.raw'), 4 * MiB,
                       [(0, os.urandom(3 * MiB)), (3 * MiB + 4096, b'x' * 4096)])
        before = open(s, 'rb').read()
        res = []
        for prog in (our_qemu_img, ref_qemu_img):
            t = small_fs / 't'
            if '-n' in args:
                with open(t, 'wb') as f:
                    f.truncate(4 * MiB)
            r = run([prog, 'convert', '-f', 'raw', '-O', 'raw'] + args +
                    [s, str(t)])
            if t.exists():
                t.unlink()
            res.append((r.rc, r.err.replace(prog, 'qemu-img')))
        assert res[0] == res[1]
        assert 'No space left on device' in res[0][1]
        assert open(s, 'rb').read() == before
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_direct_io_on_disk(our_qemu_img, ref_qemu_img, disk_dir):
    s = make_image(os.path.join(disk_dir, 's.raw'), 64 * MiB,
                   [(MiB, os.urandom(3 * MiB)), (40 * MiB, os.urandom(MiB + 512))])
    t = os.path.join(disk_dir, 't.raw')
    r = run([our_qemu_img, 'convert', '-t', 'none', '-T', 'none', '-f', 'raw',
             '-O', 'raw', s, t])
    assert (r.rc, r.err) == (0, ''), r
    cmp = run([ref_qemu_img, 'compare', '-f', 'raw', '-F', 'raw', s, t])
    assert cmp.rc == 0, cmp
    assert open(s, 'rb').read() == open(t, 'rb').read()


def test_reference_reads_our_output_info(our_qemu_img, ref_qemu_img, tmp_path):
    s = make_image(tmp_path / 's.raw', 8 * MiB, [(MiB, b'x' * 4096)])
    t = str(tmp_path / 't.raw')
    assert run([our_qemu_img, 'convert', '-p', '-f', 'raw', s, t]).rc == 0
    info = run([ref_qemu_img, 'info', '-f', 'raw', '--output=json', t])
    assert '"virtual-size": 8388608' in info.out
