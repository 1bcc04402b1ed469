"""qemu-img convert write ordering: in-order (window), strict and -W modes
on images with many small extents, buffered and O_DIRECT, every worker
count.  The result must equal the source byte for byte and have the same
allocation map as the reference's convert of the same source; a hang
(a chunk waiting for a turn that never comes) fails on the timeout."""
import os
import random
import subprocess

import pytest

from conftest import make_image

KiB = 1 << 10
MiB = 1 << 20


def fragmented(path, size=48 * MiB, seed=7):
    """Data, written zeroes and holes in runs of 4 KiB to 3 MiB, so that
    chunks are data, zero or mixed, and zero chunks come in long rows."""
    rnd = random.Random(seed)
    chunks, off = [], 0
    while off < size:
        n = min(rnd.choice([4 * KiB, 64 * KiB, 512 * KiB, 3 * MiB]),
                size - off)
        kind = rnd.choice(['data', 'data', 'zero', 'hole', 'hole'])
        if kind == 'data':
            chunks.append((off, rnd.randbytes(n)))
        elif kind == 'zero':
            chunks.append((off, bytes(n)))
        off += n
    return make_image(path, size, chunks)


def direct_ok(d):
    try:
        fd = os.open(os.path.join(d, '.direct'), os.O_CREAT | os.O_WRONLY |
                     os.O_DIRECT, 0o644)
    except OSError:
        return False
    os.close(fd)
    return True


def convert(prog, args, src, dst):
    if os.path.exists(dst):
        os.unlink(dst)
    subprocess.run([prog, 'convert'] + args + ['-f', 'raw', '-O', 'raw',
                                               src, dst],
                   check=True, timeout=60, capture_output=True)


def alloc_map(ref_img, path):
    return subprocess.run([ref_img, 'map', '--output=json', '-f', 'raw',
                           path], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    d = tmp_path_factory.mktemp('order')
    src = fragmented(d / 's.raw')
    return d, src


@pytest.mark.parametrize('cache', ['writeback', 'none'])
@pytest.mark.parametrize('extra', [[], ['-W'], ['-S', '64k'], ['-S', '0']],
                         ids=['in-order', 'W', 'S64k', 'S0'])
@pytest.mark.parametrize('workers', [1, 2, 8, 16])
def test_convert_order(strata_img, ref_qemu_img, image, cache, extra,
                       workers):
    d, src = image
    if cache == 'none' and not direct_ok(str(d)):
        pytest.skip('no O_DIRECT here')
    args = ['-m', str(workers), '-t', cache, '-T', cache] + extra
    ours, ref = str(d / 'ours.raw'), str(d / 'ref.raw')
    convert(strata_img, args, src, ours)
    convert(ref_qemu_img, args, src, ref)
    with open(src, 'rb') as a, open(ours, 'rb') as b:
        assert a.read() == b.read()
    assert alloc_map(ref_qemu_img, ours) == alloc_map(ref_qemu_img, ref)


def test_convert_order_existing_target(strata_img, ref_qemu_img, image):
    """-n onto a target full of data: zero runs must be written (strict
    order does not apply, the window does)."""
    d, src = image
    ours = str(d / 'full.raw')
    with open(ours, 'wb') as f:
        f.write(b'\xff' * os.path.getsize(src))
    subprocess.run([strata_img, 'convert', '-n', '-f', 'raw', '-O', 'raw',
                    src, ours], check=True, timeout=60)
    with open(src, 'rb') as a, open(ours, 'rb') as b:
        assert a.read() == b.read()


def sector_mix(path, seed, size=None):
    """Data, written zeroes and holes in runs of 512 bytes to 300 KiB, so
    that zero runs start and end off every -S boundary."""
    rnd = random.Random(seed)
    size = size or rnd.choice([1, 3]) * MiB
    chunks, off = [], 0
    while off < size:
        n = min(rnd.choice([512, 1024, 3584, 4096, 8192, 20480, 65536,
                            69632, 299520]), size - off)
        kind = rnd.choice(['data', 'zero', 'hole', 'hole'])
        if kind != 'hole':
            chunks.append((off, rnd.randbytes(n) if kind == 'data'
                           else bytes(n)))
        off += n
    return make_image(path, size, chunks)


@pytest.mark.parametrize('sparse', ['512', '1k', '3k', '4k', '6k', '8k', '12k',
                                    '64k', '0'])
@pytest.mark.parametrize('seed', range(6))
def test_convert_sparse_runs(strata_img, ref_qemu_img, tmp_path, sparse,
                             seed):
    """-S: which zero runs are left unallocated, as the reference."""
    src = sector_mix(tmp_path / 's.raw', seed)
    ours, ref = str(tmp_path / 'o.raw'), str(tmp_path / 'r.raw')
    convert(strata_img, ['-S', sparse], src, ours)
    convert(ref_qemu_img, ['-S', sparse], src, ref)
    with open(src, 'rb') as a, open(ours, 'rb') as b:
        assert a.read() == b.read()
    assert alloc_map(ref_qemu_img, ours) == alloc_map(ref_qemu_img, ref)


@pytest.fixture
def shm_dir():
    """A scratch directory on tmpfs (reads there run inline, without the
    worker pool), or skip."""
    import shutil
    import tempfile
    if not os.path.isdir('/dev/shm'):
        pytest.skip('no /dev/shm')
    d = tempfile.mkdtemp(dir='/dev/shm', prefix='strata-test-')
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize('size', [3 * MiB + 1234, 5 * MiB])
@pytest.mark.parametrize('extra', [[], ['-W'], ['-m', '1']])
def test_convert_on_tmpfs(strata_img, ref_qemu_img, shm_dir, size, extra):
    """Source and target on tmpfs, odd sizes (EOF inside a request)."""
    src = sector_mix(os.path.join(shm_dir, 's.raw'), 1, size)
    with open(src, 'r+b') as f:
        f.seek(size - 1000)
        f.write(os.urandom(1000))
    ours = os.path.join(shm_dir, 'o.raw')
    ref = os.path.join(shm_dir, 'r.raw')
    convert(strata_img, extra, src, ours)
    convert(ref_qemu_img, extra, src, ref)
    with open(src, 'rb') as a, open(ours, 'rb') as b:
        data = a.read()
        out = b.read()
    # the target is rounded up to whole sectors, as the reference's
    assert len(out) == os.path.getsize(ref)
    assert out[:len(data)] == data and not any(out[len(data):])
    assert alloc_map(ref_qemu_img, ours) == alloc_map(ref_qemu_img, ref)
    r = subprocess.run([ref_qemu_img, 'compare', '-f', 'raw', '-F', 'raw',
                        src, ours], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize('layout', [[(0, 1000)], [(4900, 100)],
                                    [(0, 700), (3000, 1500)]])
@pytest.mark.parametrize('extra', [['-n', '--target-is-zero'], ['-n'], []])
def test_convert_partial_last_sector(strata_img, ref_qemu_img, tmp_path,
                                     layout, extra):
    """A source ending inside a sector: its data tail is written in whole
    sectors (zero padded) as the reference does, also over a target full
    of other data."""
    size = max(off + n for off, n in layout)
    src = make_image(tmp_path / 's.raw', size,
                     [(off, os.urandom(n)) for off, n in layout])
    outs = []
    for prog, name in ((ref_qemu_img, 'r.raw'), (strata_img, 'o.raw')):
        dst = str(tmp_path / name)
        if '-n' in extra:
            with open(dst, 'wb') as f:
                f.write(b'x' * 8192)
        elif os.path.exists(dst):
            os.unlink(dst)
        subprocess.run([prog, 'convert'] + extra + ['-f', 'raw', '-O', 'raw',
                                                    src, dst],
                       check=True, timeout=60, capture_output=True)
        with open(dst, 'rb') as f:
            outs.append(f.read())
    assert outs[1] == outs[0]
