"""qcow2 growth with preallocation (qemu-iotests 125's subject): the same
start image grown by strata and by the reference must come out the same
file, byte for byte, with the same length, the same host allocation
(disk usage), the same map, and the same check report.

With falloc/full the reference writes a new refcount area past the last
used cluster, reserves one run of data clusters after it for every guest
cluster from the one the old end lies in, and moves a last cluster cut by
the old end to its new host cluster (its head copied, the old one freed);
the new clusters then read as the old data below the old end and zeroes
above it, also over a longer backing file."""
import fcntl
import json
import os
import shutil
import struct

import pytest

from conftest import io_args, run

KiB = 1 << 10
MiB = 1 << 20
FS_IOC_FIEMAP = 0xC020660B


def allocated(path):
    """Bytes of host storage the file's extents hold (FIEMAP: unlike
    st_blocks it leaves out the file system's own extent-tree blocks,
    which vary with fragmentation); st_blocks where FIEMAP is missing."""
    total, start, n = 0, 0, 64
    with open(path, 'rb') as f:
        while True:
            buf = bytearray(struct.pack('=QQIIII', start, 2**64 - 1 - start,
                                        1, 0, n, 0) + bytes(56 * n))
            try:
                fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, buf)
            except OSError:
                return os.stat(path).st_blocks * 512
            mapped = struct.unpack_from('=I', buf, 20)[0]
            last = mapped == 0
            for i in range(mapped):
                lo, _, ln, _, _, fl = struct.unpack_from('=QQQQQI', buf,
                                                         32 + 56 * i)
                total += ln
                start = lo + ln
                last = last or bool(fl & 1)
            if last:
                return total


def image_map(img, path):
    r = run([img, 'map', '--output=json', path])
    assert r.rc == 0, r
    return json.loads(r.out)


def start_image(ref_img, ref_io, d, cs, ext, old, create, data, backing):
    """The start image, made by the reference: @old bytes, the cluster
    size, extended L2 and preallocation given, over a raw backing file of
    @backing bytes of 0xff (0: none), the last 3 KiB before @old written
    when @data."""
    b = []
    if backing:
        with open(d / 'base', 'wb') as f:
            f.write(b'\xff' * backing)
        b = ['-b', 'base', '-F', 'raw']
    path = str(d / 'start')
    r = run([ref_img, 'create', '-q', '-f', 'qcow2', '-o',
             f'cluster_size={cs},extended_l2={ext},preallocation={create}',
             *b, path, str(old)], cwd=d)
    assert r.rc == 0, r
    if data:
        off = max(0, old - 3 * KiB)
        r = run([ref_io, '-c', f'write -P 0x5a {off} {old - off}', path])
        assert r.rc == 0, r
    return path


def grow(img, d, name, mode, new):
    shutil.copyfile(d / 'start', d / name)
    path = str(d / name)
    r = run([img, 'resize', '-f', 'qcow2', f'--preallocation={mode}', path,
             str(new)], cwd=d)
    return path, (r.rc, r.out, r.err.replace(img, 'qemu-img'))


def assert_same(ref_img, ours, ref, our_img):
    assert os.path.getsize(ours) == os.path.getsize(ref)
    assert allocated(ours) == allocated(ref)
    theirs = image_map(ref_img, ref)
    assert image_map(our_img, ours) == theirs
    assert image_map(ref_img, ours) == theirs
    cr, co = run([ref_img, 'check', ref]), run([ref_img, 'check', ours])
    assert (co.rc, co.out) == (cr.rc, cr.out), co
    r = run([ref_img, 'compare', ours, ref])
    assert r.rc == 0 and r.out == 'Images are identical.\n', r
    with open(ours, 'rb') as a, open(ref, 'rb') as b:
        assert a.read() == b.read()


# (cluster size, extended_l2, old size, new size, create mode, data in
# the last cluster, backing file size): aligned and unaligned old ends,
# growth inside the last cluster, into a new L2 table, past an L1 entry
CASES = [
    (512, 'off', 2048000, 2064384, 'off', True, 0),       # 125's (1)
    (512, 'off', 2048000, 2097152, 'metadata', True, 0),  # 125's (2)
    (512, 'off', 2048000, 2129920, 'falloc', False, 0),   # 125's (3)
    (16 * KiB, 'on', 41472, 41984, 'metadata', True, 0),
    (512, 'off', 32768, 2 * MiB, 'off', False, 3 * MiB),
    (16 * KiB, 'on', 41472, 2 * MiB, 'off', True, 3 * MiB),
    (64 * KiB, 'off', 2048000, 2064384, 'falloc', False, 0),
    (64 * KiB, 'off', 2048000, 2129920, 'metadata', True, 0),
    (64 * KiB, 'off', 1 * MiB, 1 * MiB + 64 * KiB, 'off', False, 0),
    (64 * KiB, 'on', 1000 * KiB, 1100 * KiB, 'metadata', True, 0),
    (64 * KiB, 'on', 1000 * KiB, 1010 * KiB, 'falloc', True, 0),
    (64 * KiB, 'off', 503 * KiB, 3 * MiB, 'off', True, 1 * MiB),
    (64 * KiB, 'on', 503 * KiB, 510 * KiB, 'metadata', True, 1 * MiB),
    (2 * MiB, 'off', 3 * MiB, 5 * MiB, 'metadata', True, 0),
    (2 * MiB, 'on', 3 * MiB + 512, 4 * MiB, 'off', True, 8 * MiB),
    (2 * MiB, 'off', 2 * MiB, 2 * MiB + 64 * KiB, 'falloc', False, 0),
]


@pytest.mark.parametrize('case', CASES, ids=[
    f'{c[0] // 512}s-l2{c[1]}-{c[2]}-{c[3]}-{c[4]}{"-data" if c[5] else ""}'
    f'{"-b" if c[6] else ""}' for c in CASES])
@pytest.mark.parametrize('mode', ['metadata', 'falloc', 'full'])
def test_growth_matches_reference(tmp_path, strata_img, ref_qemu_img,
                                  ref_qemu_io, mode, case):
    cs, ext, old, new, create, data, backing = case
    if backing and create != 'off' and ext == 'off':
        pytest.skip('the reference refuses preallocation over a backing '
                    'file without extended L2')
    start_image(ref_qemu_img, ref_qemu_io, tmp_path, cs, ext, old, create,
                data, backing)
    ours, ro = grow(strata_img, tmp_path, 'ours.qcow2', mode, new)
    ref, rr = grow(ref_qemu_img, tmp_path, 'ref.qcow2', mode, new)
    assert ro == rr
    assert_same(ref_qemu_img, ours, ref, strata_img)


@pytest.mark.parametrize('cs', [512, 64 * KiB, 2 * MiB])
@pytest.mark.parametrize('ext', ['off', 'on'])
@pytest.mark.parametrize('mode', ['falloc', 'full'])
def test_create_matches_reference(tmp_path, strata_img, ref_qemu_img, cs,
                                  ext, mode):
    """create with falloc/full goes the same way (a growth from 0)."""
    if ext == 'on' and cs < 16 * KiB:
        cs = 16 * KiB   # the smallest extended L2 allows
    size = 5 * MiB + 512 if cs == 2 * MiB else 2048000
    paths = []
    for img in (strata_img, ref_qemu_img):
        p = str(tmp_path / f'{len(paths)}.qcow2')
        r = run([img, 'create', '-q', '-f', 'qcow2', '-o',
                 f'cluster_size={cs},extended_l2={ext},preallocation={mode}',
                 p, str(size)])
        assert r.rc == 0, r
        paths.append(p)
    assert_same(ref_qemu_img, paths[0], paths[1], strata_img)


@pytest.mark.parametrize('mode', ['falloc', 'full'])
def test_moved_cluster_keeps_data(tmp_path, strata_img, strata_io,
                                  ref_qemu_io, mode):
    """The cut last cluster moves: its data below the old end is copied,
    the rest reads as zeroes, writes into the preallocated area leave the
    file's length and allocation alone (125's own check), and the old
    host cluster is free again (no leak)."""
    p = str(tmp_path / 'i.qcow2')
    assert run([strata_img, 'create', '-q', '-f', 'qcow2', '-o',
                'preallocation=metadata', p, '1000k']).rc == 0
    assert run([strata_io, '-c', 'write -P 0x33 960k 40k', p]).rc == 0
    before = image_map(strata_img, p)[-1]
    assert run([strata_img, 'resize', f'--preallocation={mode}', p,
                '1100k']).rc == 0
    after = [e for e in image_map(strata_img, p) if e['start'] <= 960 * KiB
             < e['start'] + e['length']][0]
    assert after['offset'] != before['offset']
    length, usage = os.path.getsize(p), allocated(p)
    cmds = ['read -P 0x33 960k 40k', 'read -P 0 1000k 100k']
    for io in (strata_io, ref_qemu_io):
        r = run([io] + io_args(cmds) + [p])
        assert r.rc == 0 and 'failed' not in r.out, r
    assert run([strata_io, '-c', 'write -P 0x44 1000k 100k', p]).rc == 0
    assert (os.path.getsize(p), allocated(p)) == (length, usage)
    r = run([strata_img, 'check', p])
    assert r.rc == 0 and 'No errors were found' in r.out, r


@pytest.mark.parametrize('mode', ['falloc', 'full'])
def test_truncate_to_same_size(tmp_path, strata_io, ref_qemu_img,
                               ref_qemu_io, mode):
    """qemu-io's truncate with falloc/full to the current size still
    moves the refcount table past the used clusters, as the reference's
    (the random differential found it)."""
    paths = []
    for io in (strata_io, ref_qemu_io):
        p = str(tmp_path / f'{len(paths)}.qcow2')
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    'cluster_size=4k', p, '64k']).rc == 0
        assert run([ref_qemu_io, '-c', 'write -P 1 33815 1', p]).rc == 0
        r = run([io, '-c', f'truncate -m {mode} 64k', p])
        assert r.rc == 0 and r.out == '', r
        paths.append(p)
    assert_same(ref_qemu_img, paths[0], paths[1], ref_qemu_img)


@pytest.mark.parametrize('mode', ['falloc', 'full'])
def test_growth_over_backing_through_blkdebug(tmp_path, strata_io,
                                              ref_qemu_img, ref_qemu_io,
                                              mode):
    """A blkdebug filter between the qcow2 node and its file passes a
    truncate through to the file, zero-write flag included, as the
    reference's (which has no truncate of its own there): a growth over
    a longer backing file then gets data clusters the file grew with
    zeroes, not zero clusters (the random differential's seed 61852)."""
    paths = []
    for io in (strata_io, ref_qemu_io):
        d = tmp_path / str(len(paths))
        d.mkdir()
        b, p = str(d / 'b.qcow2'), str(d / 'n.qcow2')
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', b,
                    '4235264']).rc == 0
        assert run([ref_qemu_io, '-c', 'write -P 0x56 4182016 1016',
                    b]).rc == 0
        # the same relative backing name in both headers
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    'cluster_size=4k', '-b', 'b.qcow2', '-F', 'qcow2', p],
                   cwd=str(d)).rc == 0
        assert run([ref_qemu_io, '-c', 'write -P 0x7d 2097152 9042',
                    p]).rc == 0
        spec = json.dumps({'driver': 'qcow2', 'file': {
            'driver': 'blkdebug', 'align': 4096,
            'image': {'driver': 'file', 'filename': p}}})
        r = run([io, '-c', 'truncate 2097664', '-c',
                 f'truncate -m {mode} 4231168', 'json:' + spec])
        assert r.rc == 0 and r.out == '', r
        paths.append(p)
    assert_same(ref_qemu_img, paths[0], paths[1], ref_qemu_img)
    data = [e for e in image_map(ref_qemu_img, paths[0])
            if e['start'] >= 2097152]
    assert all(e['data'] for e in data), data


@pytest.mark.parametrize('size', ['1M', '+0', '1000k'])
def test_resize_refuses_no_growth(tmp_path, our_qemu_img, ref_qemu_img,
                                  size):
    """qemu-img resize with preallocation refuses a size that is not
    larger, the same size included."""
    out = []
    for img in (our_qemu_img, ref_qemu_img):
        p = str(tmp_path / f'{len(out)}.qcow2')
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', p,
                    '1M']).rc == 0
        r = run([img, 'resize', '--preallocation=full', p, size])
        out.append((r.rc, r.out, r.err))
    assert out[0] == out[1]
    assert out[0][0] == 1


@pytest.mark.parametrize('ext', ['off', 'on'])
@pytest.mark.parametrize('mode', ['metadata', 'falloc', 'full'])
@pytest.mark.parametrize('backing', [False, True])
def test_growth_with_data_file(tmp_path, strata_img, ref_qemu_img,
                               ref_qemu_io, ext, mode, backing):
    """With an external data file the reference preallocates through its
    allocator: the cut last cluster's tail is copied on write (the
    backing file's bytes, also past the new end) before the data file
    is extended with the mode, and with extended L2 the data file ends
    at the last subcluster."""
    if backing:
        with open(tmp_path / 'base', 'wb') as f:
            f.write(b'\xff' * (3 * MiB))
    b = ['-b', '../base', '-F', 'raw'] if backing else []
    files = []
    for img in (strata_img, ref_qemu_img):
        d = tmp_path / str(len(files))
        d.mkdir()
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    f'data_file=i.d,extended_l2={ext}', *b, 'i',
                    '1000k'], cwd=d).rc == 0
        assert run([ref_qemu_io, '-c', 'write -P 0x5a 998k 2k', 'i'],
                   cwd=d).rc == 0
        r = run([img, 'resize', '-q', f'--preallocation={mode}', 'i',
                 '2100k'], cwd=d)
        assert r.rc == 0, r
        files.append(d)
    for name in ('i', 'i.d'):
        ours, ref = files[0] / name, files[1] / name
        assert allocated(ours) == allocated(ref)
        assert ours.read_bytes() == ref.read_bytes()
