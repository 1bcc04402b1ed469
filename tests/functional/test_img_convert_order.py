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


# Between files on tmpfs, with -S 4k onto a new (or --target-is-zero)
# target, a chunk is one sparse copy on the worker pool (the file driver
# reads, scans and writes it there).  The result must still be the
# reference's, byte for byte and block for block.

def tmpfs_convert_pair(strata_img, ref_qemu_img, d, extra, srcs, prepare=None):
    """Convert @srcs with both tools into @d; (ours, ref) paths."""
    outs = []
    for prog, name in ((strata_img, 'o.raw'), (ref_qemu_img, 'r.raw')):
        dst = os.path.join(d, name)
        if os.path.exists(dst):
            os.unlink(dst)
        if prepare:
            prepare(dst)
        subprocess.run([prog, 'convert'] + extra + ['-f', 'raw', '-O', 'raw']
                       + srcs + [dst], check=True, timeout=60,
                       capture_output=True)
        outs.append(dst)
    return outs


def same_file(a, b):
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        return fa.read() == fb.read()


@pytest.mark.parametrize('extra', [[], ['-m', '1'], ['-m', '16'], ['-W'],
                                   ['-S', '4k'], ['-S', '8k'], ['-S', '0']])
@pytest.mark.parametrize('seed', range(3))
def test_tmpfs_sparse_copy_like_reference(strata_img, ref_qemu_img, shm_dir,
                                          extra, seed):
    src = fragmented(os.path.join(shm_dir, 's.raw'), 20 * MiB + 4096 * seed,
                     seed)
    ours, ref = tmpfs_convert_pair(strata_img, ref_qemu_img, shm_dir, extra,
                                   [src])
    assert same_file(src, ours)
    assert alloc_map(ref_qemu_img, ours) == alloc_map(ref_qemu_img, ref)


@pytest.mark.parametrize('extra', [[], ['-W']])
def test_tmpfs_sparse_copy_sources_concatenated(strata_img, ref_qemu_img,
                                                shm_dir, extra):
    """Sources of odd sizes: chunks start off the 4 KiB grid."""
    srcs = [sector_mix(os.path.join(shm_dir, 's%d.raw' % i), i,
                       MiB * (i + 1) + 512 * (2 * i + 1)) for i in range(3)]
    ours, ref = tmpfs_convert_pair(strata_img, ref_qemu_img, shm_dir, extra,
                                   srcs)
    data = b''.join(open(s, 'rb').read() for s in srcs)
    assert open(ours, 'rb').read() == data
    assert alloc_map(ref_qemu_img, ours) == alloc_map(ref_qemu_img, ref)


@pytest.mark.parametrize('extra,fill', [(['-n', '--target-is-zero'], None),
                                        (['-n'], b'\xa5')])
def test_tmpfs_sparse_copy_existing_target(strata_img, ref_qemu_img, shm_dir,
                                           extra, fill):
    """Onto an existing target: skipped zero blocks only when it is known
    to read as zeroes; else they are zeroed."""
    src = fragmented(os.path.join(shm_dir, 's.raw'), 12 * MiB, 5)
    size = os.path.getsize(src)

    def prepare(dst):
        with open(dst, 'wb') as f:
            if fill:
                f.write(fill * size)
            else:
                f.truncate(size)
    ours, ref = tmpfs_convert_pair(strata_img, ref_qemu_img, shm_dir, extra,
                                   [src], prepare)
    assert same_file(src, ours)
    assert alloc_map(ref_qemu_img, ours) == alloc_map(ref_qemu_img, ref)


@pytest.mark.parametrize('extra,sparse_copy', [([], True), (['-W'], True),
                                               (['-S', '8k'], False),
                                               (['-r', '1G'], False)])
def test_tmpfs_sparse_copy_is_used(strata_img, shm_dir, extra, sparse_copy):
    """The sparse copy writes with pwrite(); the read-and-write path with
    pwritev().  -S other than 4k and -r need the latter.  (Creating the
    image writes its first block with pwrite() either way.)"""
    import re
    import shutil
    if not shutil.which('strace'):
        pytest.skip('needs strace')
    src = fragmented(os.path.join(shm_dir, 's.raw'), 8 * MiB, 2)
    dst = os.path.join(shm_dir, 'o.raw')
    log = os.path.join(shm_dir, 'strace.log')
    # LeakSanitizer cannot run under ptrace
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get('ASAN_OPTIONS', '') +
               ':detect_leaks=0')
    subprocess.run(['strace', '-f', '-qq', '-o', log, '-e',
                    'trace=pwrite64,pwritev', strata_img, 'convert'] + extra
                   + ['-f', 'raw', '-O', 'raw', src, dst], check=True,
                   timeout=60, capture_output=True, env=env)
    calls = open(log).read().splitlines()
    pwrites = [m.groups() for m in
               (re.search(r'pwrite64\(.*, (\d+), (\d+)\) += ', c)
                for c in calls) if m]
    assert ('4096', '0') in pwrites
    assert (len(pwrites) > 1) == sparse_copy
    assert any('pwritev(' in c for c in calls) != sparse_copy
    assert same_file(src, dst)
