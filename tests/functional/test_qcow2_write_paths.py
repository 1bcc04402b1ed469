"""qcow2 write paths the reference's iotests 026, 060, 066, 217 and 271
exercise, each against the reference qemu-io / qemu-img: the same
messages, exit status and (where the test looks) image contents.

- vmstate writes (`write -b`) flush in writethrough mode, so a failed L2
  write fails the write itself (026);
- a snapshot deletion whose cluster_free fails leaves no dirty cache for
  close to complain about (217);
- an extended L2 entry with an impossible subcluster bitmap is invalid
  as a whole, on reads and on writes, over the part of a write the
  reference handles in one go (271);
- copy-on-write fires cow_read / cow_write where the reference copies,
  and cluster_alloc_space where it zeroes instead (060);
- own clusters contiguous in the host are one data write (066)."""
import os
import struct

import pytest

from conftest import io_args, normalize, run

def both_sides(tmp_path, ref_tools, our_tools, body):
    """@body(d, img, io) run once with each tool pair, each in its own
    directory; returns {'ref': ..., 'ours': ...}."""
    out = {}
    for side, (img, io) in (('ref', ref_tools), ('ours', our_tools)):
        d = tmp_path / side
        d.mkdir()
        out[side] = body(str(d), img, io)
    return out


def result(r, d):
    return (r.rc, normalize(r.out), r.err.replace(d, 'D'))


@pytest.fixture
def tools(ref_qemu_img, ref_qemu_io, our_qemu_img, our_qemu_io):
    return (ref_qemu_img, ref_qemu_io), (our_qemu_img, our_qemu_io)


def blkdebug_conf(d, event, errno=5, once=True):
    with open(os.path.join(d, 'blkdebug.conf'), 'w') as f:
        f.write(f'[inject-error]\nevent = "{event}"\nerrno = "{errno}"\n'
                f'once = "{"on" if once else "off"}"\n')


# ---- 026: vmstate writes and L2 write errors ----

@pytest.mark.parametrize('cache', ['writethrough', 'writeback'])
@pytest.mark.parametrize('errno,once', [(5, True), (5, False), (28, True),
                                        (28, False)])
def test_vmstate_write_l2_update_error(tmp_path, tools, ref_qemu_img, cache,
                                       errno, once):
    def body(d, img, io):
        assert run([img, 'create', '-q', '-f', 'qcow2', 'img.qcow2', '1G'],
                   cwd=d).rc == 0
        assert run([io, '-c', 'write -b 0 512', 'img.qcow2'], cwd=d).rc == 0
        blkdebug_conf(d, 'l2_update', errno, once)
        r = run([io, '-t', cache, '-c', 'write -b 0 128k',
                 'blkdebug:blkdebug.conf:img.qcow2'], cwd=d)
        c = run([ref_qemu_img, 'check', 'img.qcow2'], cwd=d)
        return result(r, d), c.rc, c.out
    res = both_sides(tmp_path, *tools, body)
    assert res['ours'] == res['ref']


# ---- 217: snapshot deletion with a failing cluster_free ----

def test_snapshot_delete_cluster_free_error(tmp_path, tools, ref_qemu_img):
    def body(d, img, io):
        assert run([img, 'create', '-q', '-f', 'qcow2', 'img.qcow2', '64M'],
                   cwd=d).rc == 0
        assert run([io, '-c', 'write 0 64k', 'img.qcow2'], cwd=d).rc == 0
        assert run([img, 'snapshot', '-c', 'foo', 'img.qcow2'], cwd=d).rc == 0
        blkdebug_conf(d, 'cluster_free', once=False)
        r = run([img, 'snapshot', '-d', 'foo',
                 'blkdebug:blkdebug.conf:img.qcow2'], cwd=d)
        c = run([ref_qemu_img, 'check', 'img.qcow2'], cwd=d)
        return result(r, d), c.rc, c.out, c.err
    res = both_sides(tmp_path, *tools, body)
    assert 'Failed to flush' not in res['ours'][0][2]
    assert res['ours'] == res['ref']


# ---- 271: impossible subcluster bitmaps ----

L2_OFFSET = 0x40000     # 1 MiB image, 64 KiB clusters: header, reftable,
                        # refblock, L1, then the first L2 table


def poke_l2(path, pokes):
    with open(path, 'r+b') as f:
        for idx, (entry, bitmap) in pokes.items():
            f.seek(L2_OFFSET + 16 * idx)
            if entry is not None:
                f.write(struct.pack('>Q', entry))
            f.seek(L2_OFFSET + 16 * idx + 8)
            f.write(struct.pack('>Q', bitmap))


def l2_entries(path, n=4):
    with open(path, 'rb') as f:
        f.seek(L2_OFFSET)
        return f.read(16 * n).hex()


# (setup write, {L2 index: (entry or None, bitmap)}, command)
SUBCLUSTER_CASES = {
    # cluster 1 allocated, one subcluster both allocated and zero
    'normal-in-cluster': ('write -q 32k 128k', {1: (None, 0x1ffffffff)},
                          'write 72k 4k'),
    'normal-untouched': ('write -q 32k 128k', {1: (None, 0x1ffffffff)},
                         'write 0 64k'),
    'normal-last-of-part': ('write -q 32k 128k', {1: (None, 0x1ffffffff)},
                            'write 0 128k'),
    'normal-middle': ('write -q 32k 128k', {1: (None, 0x1ffffffff)},
                      'write 0 192k'),
    'normal-read-other-subcluster': ('write -q 32k 128k',
                                     {1: (None, 0x1ffffffff)},
                                     'read 72k 4k'),
    'own-then-invalid': ('write -q 0 128k', {1: (None, 0x1ffffffff)},
                         'write 32k 64k'),
    # unallocated clusters with an 'allocated' bit
    'unallocated-alloc-bit': ('write -q 256k 1k', {0: (None, 0x1)},
                              'write 0 1k'),
    'unallocated-second': ('write -q 256k 1k', {1: (None, 0x1)},
                           'write 0 128k'),
    'unallocated-untouched': ('write -q 256k 1k', {1: (None, 0x1)},
                              'write 4k 4k'),
    'unallocated-then-normal-invalid': ('write -q 64k 64k',
                                        {1: (None, 0x1ffffffff)},
                                        'write 0 128k'),
    'unallocated-zero-and-alloc': ('write -q 256k 1k',
                                   {1: (None, 0x100000001)}, 'write 0 192k'),
}


@pytest.mark.parametrize('name', SUBCLUSTER_CASES)
def test_invalid_subcluster_bitmap(name, tmp_path, tools, ref_qemu_img,
                                   ref_qemu_io):
    setup, pokes, cmd = SUBCLUSTER_CASES[name]

    def body(d, img, io):
        path = os.path.join(d, 'img.qcow2')
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    'extended_l2=on', path, '1M']).rc == 0
        assert run([ref_qemu_io, '-c', setup, path]).rc == 0
        poke_l2(path, pokes)
        r = run([io, '-c', cmd, path])
        return result(r, d), l2_entries(path)
    res = both_sides(tmp_path, *tools, body)
    assert res['ours'] == res['ref']


# ---- 060: copy-on-write events ----

def backing_pair(d, img, io, extended):
    opts = 'extended_l2=on' if extended else 'extended_l2=off'
    assert run([img, 'create', '-q', '-f', 'qcow2', 'base.qcow2', '4M'],
               cwd=d).rc == 0
    # data at 0, a zero cluster at 3M, zeroes written as data at 3M + 64k
    assert run([io, '-c', 'write -P 0x11 0 1M', '-c', 'write -z 3M 64k',
                '-c', 'write -P 0 3136k 64k', 'base.qcow2'], cwd=d).rc == 0
    assert run([img, 'create', '-q', '-f', 'qcow2', '-o', opts, '-b',
                'base.qcow2', '-F', 'qcow2', 'img.qcow2'], cwd=d).rc == 0


# (event, commands after the backing pair): which writes copy and which
# zero their COW areas decides whether the injected error hits
COW_CASES = [
    ('cow_read', ['write -P 1 4k 4k']),                 # backing data: copy
    ('cow_read', ['write -P 1 2M 4k']),                 # nothing: zeroes
    ('cow_read', ['write -P 1 1M-4k 8k']),              # half and half
    ('cow_read', ['write -P 1 0 60k', 'write -P 2 128k 8k']),  # small middle
    ('cow_read', ['write -z 2M 64k', 'write -P 1 2M 4k']),     # zero cluster
    ('cow_read', ['write -P 1 3M 4k']),                 # backing zero cluster
    ('cow_read', ['write -P 1 3136k 4k']),              # backing zero data
    ('cow_read', ['write -P 1 5000 3000']),             # inside subclusters
    ('cow_read', ['write -P 1 2098152 1000']),
    ('cow_write', ['write -P 1 4k 4k']),
    ('cow_write', ['write -P 1 2M 4k']),
    ('cluster_alloc_space', ['write -P 1 2M 4k']),
    ('cluster_alloc_space', ['write -P 1 4k 4k']),
    ('cow_read', ['write -P 1 64k 64k', 'write -P 2 70k 4k']),  # own cluster
]


@pytest.mark.parametrize('extended', [False, True], ids=['l2', 'extl2'])
@pytest.mark.parametrize('event,cmds', COW_CASES,
                         ids=[f'{e}-{i}' for i, (e, _) in enumerate(COW_CASES)])
def test_cow_events(event, cmds, extended, tmp_path, tools, ref_qemu_img):
    def body(d, img, io):
        backing_pair(d, img, io, extended)
        blkdebug_conf(d, event, once=True)
        r = run([io] + io_args(cmds + ['read -P 0x11 0 4k']) +
                ['blkdebug:blkdebug.conf:img.qcow2'], cwd=d)
        c = run([ref_qemu_img, 'check', 'img.qcow2'], cwd=d)
        return result(r, d), c.rc
    res = both_sides(tmp_path, *tools, body)
    assert res['ours'] == res['ref']


def test_cow_read_break_while_image_breaks(tmp_path, tools):
    """A COW write suspended at cow_read; meanwhile another write trips
    the overlap check (the second L2 table marked free); the resumed
    write then fails with ENOMEDIUM (the node is unusable)."""
    def body(d, img, io):
        assert run([img, 'create', '-q', '-f', 'qcow2', 'base.qcow2', '1G'],
                   cwd=d).rc == 0
        assert run([io, '-c', 'write 0 64k', 'base.qcow2'], cwd=d).rc == 0
        assert run([img, 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2',
                    '-F', 'qcow2', 'img.qcow2', '1G'], cwd=d).rc == 0
        assert run([io, '-c', 'write 0 64k', '-c', 'write 512M 64k',
                    'img.qcow2'], cwd=d).rc == 0
        with open(os.path.join(d, 'img.qcow2'), 'r+b') as f:
            f.seek(0x40000)                  # L2 entry 0: free the cluster
            f.write(bytes(8))
            f.seek(0x20000 + 10)             # its refcount
            f.write(bytes(2))
            f.seek(0x20000 + 12)             # the second L2 table's
            f.write(bytes(2))
        script = ('open -o file.driver=blkdebug img.qcow2\n'
                  'break cow_read 0\naio_write 0k 1k\nwait_break 0\n'
                  'write 64k 64k\nresume 0\n')
        r = run([io], input=script, cwd=d, timeout=30)
        return r.rc, normalize(r.out), r.err
    res = both_sides(tmp_path, *tools, body)
    assert 'No medium found' in res['ours'][1]
    assert res['ours'] == res['ref']


# ---- 066: one data write over own contiguous clusters ----

def test_own_clusters_one_write(tmp_path, tools, ref_qemu_img):
    """Data, a preallocated zero cluster and data again, contiguous in the
    host: one write, so an error armed for the second write_aio never
    fires, and the clusters are reused in place."""
    spec = ("json:{'driver': 'qcow2', 'file': {'driver': 'blkdebug', "
            "'image.filename': 'img.qcow2', "
            "'set-state': [{'event': 'write_aio', 'new_state': 2}], "
            "'inject-error': [{'event': 'write_aio', 'state': 2}]}}")

    def body(d, img, io):
        assert run([img, 'create', '-q', '-f', 'qcow2', 'img.qcow2', '192k'],
                   cwd=d).rc == 0
        assert run([io, '-c', 'write -P 42 0 192k', 'img.qcow2'], cwd=d).rc == 0
        assert run([io, '-c', 'write -z 64k 64k', 'img.qcow2'], cwd=d).rc == 0
        r = run([io, '-c', 'write -P 43 0 192k', spec], cwd=d)
        m = run([ref_qemu_img, 'map', '--output=json', 'img.qcow2'], cwd=d)
        c = run([ref_qemu_img, 'check', 'img.qcow2'], cwd=d)
        return result(r, d), m.out, c.rc
    res = both_sides(tmp_path, *tools, body)
    assert res['ours'][0][0] == 0
    assert res['ours'] == res['ref']


@pytest.mark.parametrize('cmds', [
    ['write -P 7 16k 160k'],               # partial own edges, zero middle
    ['write -z -u 64k 64k', 'write -P 7 32k 64k'],
    ['write -P 7 100k 4k'],                 # inside the zero cluster
], ids=['edges', 'discarded-middle', 'in-zero'])
def test_own_clusters_mixed_contents(cmds, tmp_path, tools, ref_qemu_img,
                                     ref_qemu_io):
    """Writes over own data and preallocated zero clusters: the same
    contents and the same host layout as the reference."""
    def body(d, img, io):
        assert run([img, 'create', '-q', '-f', 'qcow2', 'img.qcow2', '1M'],
                   cwd=d).rc == 0
        assert run([io, '-c', 'write -P 42 0 192k', '-c', 'write -z 64k 64k',
                    'img.qcow2'], cwd=d).rc == 0
        r = run([io] + io_args(cmds) + ['img.qcow2'], cwd=d)
        m = run([ref_qemu_img, 'map', '--output=json', 'img.qcow2'], cwd=d)
        c = run([ref_qemu_img, 'check', 'img.qcow2'], cwd=d)
        return result(r, d), m.out, c.rc
    res = both_sides(tmp_path, *tools, body)
    assert res['ours'] == res['ref']
    r = run([ref_qemu_img, 'compare', str(tmp_path / 'ref' / 'img.qcow2'),
             str(tmp_path / 'ours' / 'img.qcow2')])
    assert r.rc == 0, r


# ---- 060: own clusters at unaligned host offsets ----

@pytest.mark.parametrize('entry', ['8000000000002a01', '8000000000052a00'],
                         ids=['prealloc-zero-in-header', 'data'])
@pytest.mark.parametrize('cmd', ['write 0 64k', 'write 4k 4k'])
def test_write_to_unaligned_own_cluster(entry, cmd, tmp_path, tools,
                                        ref_qemu_img):
    """The write is refused as corruption before anything is written (the
    preallocated zero cluster here lies in the header)."""
    def body(d, img, io):
        assert run([img, 'create', '-q', '-f', 'qcow2', 'img.qcow2', '64M'],
                   cwd=d).rc == 0
        assert run([io, '-c', 'write 0 64k', '-c', 'discard 0 64k',
                    'img.qcow2'], cwd=d).rc == 0
        with open(os.path.join(d, 'img.qcow2'), 'r+b') as f:
            f.seek(L2_OFFSET)
            f.write(bytes.fromhex(entry))
        r = run([io, '-c', cmd, '-c', 'read 0 4k', 'img.qcow2'], cwd=d)
        c = run([ref_qemu_img, 'check', '-r', 'all', 'img.qcow2'], cwd=d)
        return result(r, d), c.rc, c.out, c.err
    res = both_sides(tmp_path, *tools, body)
    assert res['ours'] == res['ref']


# ---- 060: non-fatal corruption when freeing ----

@pytest.mark.parametrize('cmds', [
    ['discard 0 64k'],
    ['discard 0 64k', 'read 64k 64k'],       # non-fatal, then fatal
    ['write -z -u 0 64k', 'write 0 4k'],
], ids=['discard', 'then-fatal', 'zero-unmap'])
def test_free_unaligned_cluster(cmds, tmp_path, tools, ref_qemu_img):
    """A data cluster at an unaligned host offset is not freed: reported
    once as non-fatal corruption (the image is not marked), a leak; a
    fatal corruption afterwards is still reported and marks it."""
    def body(d, img, io):
        assert run([img, 'create', '-q', '-f', 'qcow2', 'img.qcow2', '64M'],
                   cwd=d).rc == 0
        assert run([io, '-c', 'write 0 128k', 'img.qcow2'], cwd=d).rc == 0
        with open(os.path.join(d, 'img.qcow2'), 'r+b') as f:
            f.seek(L2_OFFSET)
            f.write(bytes.fromhex('8000000000052a00' '8000000000062a00'))
        r = run([io] + io_args(cmds) + ['img.qcow2'], cwd=d)
        c = run([ref_qemu_img, 'check', 'img.qcow2'], cwd=d)
        return result(r, d), c.rc, c.out, c.err
    res = both_sides(tmp_path, *tools, body)
    assert res['ours'] == res['ref']


# ---- 271: copy-on-write of shared and compressed clusters ----

def active_l2(path, n):
    """The first @n entries (and bitmaps) of the active L2 table."""
    with open(path, 'rb') as f:
        f.seek(40)
        l1 = struct.unpack('>Q', f.read(8))[0]
        f.seek(l1)
        l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
        f.seek(l2)
        return f.read(16 * n).hex()


def test_cow_of_shared_cluster_keeps_subclusters(tmp_path, tools):
    """A cluster shared with a snapshot is copied from its first to its
    last allocated subcluster (at least): the others keep their zero or
    unallocated state in the new entry."""
    writes = ['write -q -P 0xf0 30k 1k', 'write -q -P 0xf1 84k 1k',
              'write -q -P 0xf2 168k 1k', 'write -q -z 218k 1k',
              'write -q -P 0xf5 321k 1k']

    def body(d, img, io):
        assert run([img, 'create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on',
                    'img.qcow2', '1M'], cwd=d).rc == 0
        for c in range(6):
            assert run([io, '-c', f'write -q -z {64 * c + 14}k 2k',
                        '-c', f'write -q -P {0xd0 + c} {64 * c + 26}k 2k',
                        '-c', f'write -q -P {0xe0 + c} {64 * c + 36}k 2k',
                        'img.qcow2'], cwd=d).rc == 0
        assert run([img, 'snapshot', '-c', 'snap1', 'img.qcow2'], cwd=d).rc == 0
        r = run([io] + io_args(writes) + ['img.qcow2'], cwd=d)
        return result(r, d), active_l2(os.path.join(d, 'img.qcow2'), 6)
    res = both_sides(tmp_path, *tools, body)
    assert res['ours'] == res['ref']
    r = run([tools[0][0], 'compare', str(tmp_path / 'ref' / 'img.qcow2'),
             str(tmp_path / 'ours' / 'img.qcow2')])
    assert r.rc == 0, r


@pytest.mark.parametrize('extended', ['off', 'on'])
@pytest.mark.parametrize('cmd', ['write -P 7 65k 126k', 'write -z -u 65k 126k'])
def test_compressed_clusters_one_allocation(extended, cmd, tmp_path, tools,
                                            ref_qemu_img):
    """Partial writes over two compressed clusters take two new clusters
    together, as the reference does: not a one-cluster hole left by a
    discard."""
    def body(d, img, io):
        assert run([img, 'create', '-q', '-f', 'qcow2', '-o',
                    f'extended_l2={extended}', 'img.qcow2', '1M'], cwd=d).rc == 0
        assert run([io, '-c', 'write -c -P 2 64k 64k', '-c',
                    'write -c -P 3 128k 64k', '-c', 'write -P 1 320k 192k',
                    '-c', 'discard 384k 64k', 'img.qcow2'], cwd=d).rc == 0
        r = run([io, '-c', cmd, 'img.qcow2'], cwd=d)
        m = run([ref_qemu_img, 'map', '--output=json', 'img.qcow2'], cwd=d)
        c = run([ref_qemu_img, 'check', 'img.qcow2'], cwd=d)
        return result(r, d), m.out, c.rc, active_l2(
            os.path.join(d, 'img.qcow2'), 4)
    res = both_sides(tmp_path, *tools, body)
    assert res['ours'] == res['ref']


# ---- concurrent writes into one cluster ----

@pytest.mark.parametrize('extended', ['off', 'on'])
@pytest.mark.parametrize('cmds', [
    ['aio_write -P 3 64k 4k', 'aio_write -z 68k 60k'],
    ['aio_write -P 3 66k 1k', 'aio_write -z 64k 2k', 'aio_write -z 67k 1k'],
    ['aio_write -P 3 64k 4k', 'aio_write -z -u 68k 60k'],
], ids=['tail', 'both-sides', 'unmap'])
def test_partial_zero_write_beside_allocating_write(cmds, extended, tmp_path,
                                                    tools, ref_qemu_img):
    """A zero write of part of a cluster that another request is still
    allocating: the rest of the cluster seemed unallocated, but the data
    written beside it stays (convert -W -n wrote nothing over such
    clusters).  The completions may come in another order."""
    def body(d, img, io):
        assert run([img, 'create', '-q', '-f', 'qcow2', '-o',
                    f'extended_l2={extended}', 'img.qcow2', '1M'],
                   cwd=d).rc == 0
        r = run([io] + io_args(cmds + ['aio_flush']) + ['img.qcow2'], cwd=d)
        m = run([ref_qemu_img, 'map', '--output=json', 'img.qcow2'], cwd=d)
        c = run([ref_qemu_img, 'check', 'img.qcow2'], cwd=d)
        rc, out, err = result(r, d)
        return (rc, sorted(out.splitlines()), err), m.out, c.rc
    res = both_sides(tmp_path, *tools, body)
    assert res['ours'] == res['ref']
    r = run([ref_qemu_img, 'compare', str(tmp_path / 'ref' / 'img.qcow2'),
             str(tmp_path / 'ours' / 'img.qcow2')])
    assert r.rc == 0, r


# ---- discard-no-unref over a cluster a snapshot shares ----

def test_discard_no_unref_keeps_snapshot_data(tmp_path, tools, ref_qemu_img,
                                              ref_qemu_io):
    """The entry keeps its (shared) cluster with the zero flag, as the
    reference's; but the discard is not passed down to a cluster the
    snapshot still uses, where the reference's empties the snapshot."""
    spec = ('driver=qcow2,discard-no-unref=on,pass-discard-request=on,'
            'file.filename=img.qcow2')

    def body(d, img, io):
        assert run([img, 'create', '-q', '-f', 'qcow2', 'img.qcow2', '1M'],
                   cwd=d).rc == 0
        assert run([io, '-c', 'write -P 7 0 128k', 'img.qcow2'], cwd=d).rc == 0
        assert run([img, 'snapshot', '-c', 's1', 'img.qcow2'], cwd=d).rc == 0
        r = run([io, '-d', 'unmap', '--image-opts', '-c', 'discard 0 64k',
                 '-c', 'discard 64k 64k', spec], cwd=d)
        m = run([ref_qemu_img, 'map', '--output=json', 'img.qcow2'], cwd=d)
        c = run([ref_qemu_img, 'check', 'img.qcow2'], cwd=d)
        return result(r, d), m.out, c.rc
    res = both_sides(tmp_path, *tools, body)
    assert res['ours'] == res['ref']
    ours = str(tmp_path / 'ours')
    assert run([ref_qemu_img, 'snapshot', '-a', 's1', 'img.qcow2'],
               cwd=ours).rc == 0
    r = run([ref_qemu_io, '-c', 'read -P 7 0 128k', 'img.qcow2'], cwd=ours)
    assert 'verification failed' not in r.out, r
