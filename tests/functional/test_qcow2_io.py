"""qcow2 data path: the same qemu-io commands run by strata-io on an image
strata-img made and by the reference on its own image must leave images
that the reference finds clean, reads identically and maps identically;
images the reference writes read back identically in strata-io."""
import json
import os

import pytest

from conftest import io_args, run

OPS = [
    'write -P 0xaa 0 64k',
    'write -P 0xbb 100k 3k',
    'write -P 0xcc 1000 1',
    'write -z 512k 128k',
    'write -z -u 128k 64k',
    'discard 2M 64k',
    'write -P 1 2M 200k',
    'write -c -P 7 3M 64k',
    'write -P 5 3M 4k',
    'write -z 8k 8k',
    'write -P 0x11 5k 70k',
    'discard 0 64k',
    'write -P 0x22 3500k 33k',
]

VARIANTS = [
    'compat=1.1', 'compat=0.10', 'extended_l2=on', 'compression_type=zstd',
    'lazy_refcounts=on', 'cluster_size=4k,refcount_bits=1',
    'extended_l2=on,cluster_size=16k', 'cluster_size=512,refcount_bits=64',
]


def qmap(ref_img, path):
    r = run([ref_img, 'map', '--output=json', path])
    assert r.rc == 0, r
    return json.loads(r.out)


def clean(ref_img, path):
    r = run([ref_img, 'check', path])
    assert r.rc == 0, r


def make_pair(tmp_path, strata_img, ref_img, opts, size='4M'):
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    assert run([ref_img, 'create', '-q', '-f', 'qcow2', '-o', opts, r,
                size]).rc == 0
    assert run([strata_img, 'create', '-q', '-f', 'qcow2', '-o', opts, s,
                size]).rc == 0
    return r, s


@pytest.mark.parametrize('opts', VARIANTS)
def test_writes_match_reference(tmp_path, strata_img, strata_io,
                                ref_qemu_img, ref_qemu_io, opts):
    r, s = make_pair(tmp_path, strata_img, ref_qemu_img, opts)
    for op in OPS:
        rr = run([ref_qemu_io, '-c', op, r])
        ss = run([strata_io, '-c', op, s])
        assert (rr.rc, 'failed' in rr.out) == (ss.rc, 'failed' in ss.out), \
            (op, rr, ss)
    clean(ref_qemu_img, s)
    assert run([ref_qemu_img, 'compare', r, s]).rc == 0
    if 'cluster_size=512' not in opts:
        assert qmap(ref_qemu_img, s) == qmap(ref_qemu_img, r)
        assert os.path.getsize(s) == os.path.getsize(r)


@pytest.mark.parametrize('opts', ['compat=1.1', 'compat=0.10',
                                  'extended_l2=on', 'compression_type=zstd'])
def test_reference_writes_strata_reads(tmp_path, strata_img, strata_io,
                                       ref_qemu_img, ref_qemu_io, opts):
    img = str(tmp_path / 'r.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o', opts, img,
                '4M']).rc == 0
    assert run([ref_qemu_io, *io_args(OPS), img]).rc == 0
    # block status as the reference reports it
    ours = run([strata_img, 'map', '--output=json', img])
    assert ours.rc == 0, ours
    assert json.loads(ours.out) == qmap(ref_qemu_img, img)
    assert run([ref_qemu_io, '-c', 'write -c -P 0x33 1M 128k', img]).rc == 0
    reads = ['read -P 0 0 64k', 'read -P 0x11 64k 11k', 'read -P 0xbb 100k 3k',
             'read -P 0x33 1M 128k', 'read -P 0 512k 128k',
             'read -P 1 2M 200k', 'read -P 5 3M 4k', 'read -P 7 3076k 60k',
             'read -P 0x22 3500k 33k']
    for cmd in reads:
        s = run([strata_io, '-c', cmd, img])
        assert s.rc == 0 and 'failed' not in s.out, (cmd, s)


def test_strata_image_reads_in_reference(tmp_path, strata_img, strata_io,
                                         ref_qemu_img, ref_qemu_io):
    img = str(tmp_path / 's.qcow2')
    assert run([strata_img, 'create', '-q', '-f', 'qcow2', img, '8M']).rc == 0
    cmds = ['write -P 0x41 0 1M', 'write -P 0x42 1000 3000',
            'write -c -P 0x43 2M 64k', 'write -P 0x44 7M 1M']
    assert run([strata_io, *io_args(cmds), img]).rc == 0
    checks = ['read -P 0x41 0 1000', 'read -P 0x42 1000 3000',
              'read -P 0x41 4000 1044576', 'read -P 0x43 2M 64k',
              'read -P 0 3M 4M', 'read -P 0x44 7M 1M']
    r = run([ref_qemu_io, *io_args(checks), img])
    assert r.rc == 0 and 'failed' not in r.out, r
    clean(ref_qemu_img, img)


def test_many_clusters_grow_refcount_table(tmp_path, strata_img, strata_io,
                                           ref_qemu_img, ref_qemu_io):
    """512-byte clusters with 64-bit refcounts: one refcount block covers
    32 KiB, the table 32 blocks: writing 3 MiB grows the table."""
    img = str(tmp_path / 'g.qcow2')
    assert run([strata_img, 'create', '-q', '-f', 'qcow2', '-o',
                'cluster_size=512,refcount_bits=64', img, '4M']).rc == 0
    assert run([strata_io, '-c', 'write -P 0x5a 0 3M', img]).rc == 0
    clean(ref_qemu_img, img)
    r = run([ref_qemu_io, '-c', 'read -P 0x5a 0 3M', img])
    assert r.rc == 0 and 'failed' not in r.out, r


def test_compressed_fallback_when_incompressible(tmp_path, strata_img,
                                                 strata_io, ref_qemu_img,
                                                 ref_qemu_io):
    img = str(tmp_path / 'c.qcow2')
    data = str(tmp_path / 'rand')
    with open(data, 'wb') as f:
        f.write(os.urandom(65536))
    assert run([strata_img, 'create', '-q', '-f', 'qcow2', img, '1M']).rc == 0
    r = run([strata_io, '-c', f'write -c -s {data} 0 64k',
             '-c', 'write -c -P 3 64k 64k', img])
    assert r.rc == 0, r
    clean(ref_qemu_img, img)
    m = qmap(ref_qemu_img, img)
    assert not m[0]['compressed'] and m[0]['data']
    assert m[1]['compressed'] and m[1]['start'] == 65536
    r = run([ref_qemu_io, '-c', 'read -P 3 64k 64k', img])
    assert r.rc == 0 and 'failed' not in r.out, r


def test_lazy_refcounts_dirty_bit_cleared_on_close(tmp_path, strata_img,
                                                   strata_io, ref_qemu_img):
    img = str(tmp_path / 'l.qcow2')
    assert run([strata_img, 'create', '-q', '-f', 'qcow2', '-o',
                'lazy_refcounts=on', img, '1M']).rc == 0
    assert run([strata_io, '-c', 'write 0 64k', img]).rc == 0
    info = json.loads(run([ref_qemu_img, 'info', '--output=json',
                           img]).out)
    assert info['dirty-flag'] is False
    clean(ref_qemu_img, img)


@pytest.mark.parametrize('raw', ['off', 'on'])
def test_external_data_file(tmp_path, strata_img, strata_io, ref_qemu_img,
                            ref_qemu_io, raw):
    """Guest offset = host offset in the data file; with data_file_raw
    the data file reads as the guest disk."""
    rd, sd = tmp_path / 'r', tmp_path / 's'
    rd.mkdir()
    sd.mkdir()
    opts = f'data_file=d.raw,data_file_raw={raw}'
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o', opts,
                'i.qcow2', '4M'], cwd=rd).rc == 0
    assert run([strata_img, 'create', '-q', '-f', 'qcow2', '-o', opts,
                'i.qcow2', '4M'], cwd=sd).rc == 0
    ops = ['write -P 1 0 1M', 'write -P 2 100k 3k', 'write -z 512k 64k',
           'discard 768k 64k', 'write -z -u 2M 64k', 'write -P 3 3M 100k']
    assert run([ref_qemu_io, *io_args(ops), 'i.qcow2'], cwd=rd).rc == 0
    assert run([strata_io, *io_args(ops), 'i.qcow2'], cwd=sd).rc == 0
    assert run([ref_qemu_img, 'check', 'i.qcow2'], cwd=sd).rc == 0
    assert (rd / 'd.raw').read_bytes() == (sd / 'd.raw').read_bytes()
    rm = run([ref_qemu_img, 'map', '--output=json', 'i.qcow2'], cwd=rd)
    sm = run([ref_qemu_img, 'map', '--output=json', 'i.qcow2'], cwd=sd)
    assert json.loads(sm.out) == json.loads(rm.out)


def backing_opened(strata_img, img):
    r = run([strata_img, 'info', img])
    return 'backing file:' in r.out


def test_backing_chain_reads_and_cow(tmp_path, strata_img, strata_io,
                                     ref_qemu_img, ref_qemu_io):
    """Unallocated clusters read from the backing file (zeroes past its
    end); partial writes copy the rest of the cluster from it."""
    base = str(tmp_path / 'base.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', base,
                '2M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 0x55 0 2M', base]).rc == 0
    imgs = []
    for name in ('r.qcow2', 's.qcow2'):
        p = str(tmp_path / name)
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-b',
                    'base.qcow2', '-F', 'qcow2', '-o', 'extended_l2=on', p,
                    '4M']).rc == 0
        imgs.append(p)
    if not backing_opened(strata_img, imgs[1]):
        pytest.skip('the core does not open backing files yet')
    ops = ['write -P 1 100k 1k', 'write -z 1M 64k', 'write -P 2 1900k 300k',
           'write -z 3M 4k', 'discard 64k 64k']
    assert run([ref_qemu_io, *io_args(ops), imgs[0]]).rc == 0
    assert run([strata_io, *io_args(ops), imgs[1]]).rc == 0
    assert run([ref_qemu_img, 'compare', imgs[0], imgs[1]]).rc == 0
    assert run([ref_qemu_img, 'check', imgs[1]]).rc == 0
    r = run([strata_io, '-c', 'read -P 0x55 0 64k', '-c',
             'read -P 0 2200k 1800k', imgs[1]])
    assert r.rc == 0 and 'failed' not in r.out, r


def test_external_data_file_cluster_at_offset_zero(tmp_path, strata_img,
                                                   strata_io, ref_qemu_img,
                                                   ref_qemu_io):
    """With an external data file, guest cluster 0 lives at host offset 0:
    its L2 entry has no offset bits, only COPIED, and is still data."""
    img = str(tmp_path / 'x.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                f'data_file={tmp_path}/x.data', img, '4M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 0x11 0 192k', img]).rc == 0
    r = run([strata_io, '-c', 'read -P 0x11 0 192k', img])
    assert 'failed' not in r.out and r.rc == 0, r
    assert run([strata_img, 'map', '--output=json', img]).out == \
        run([ref_qemu_img, 'map', '--output=json', img]).out


@pytest.mark.parametrize('opts', ['cluster_size=512', 'cluster_size=4096',
                                  'cluster_size=16k,extended_l2=on'])
def test_long_unallocated_runs_across_l2_ranges(tmp_path, strata_img,
                                                strata_io, ref_qemu_img,
                                                ref_qemu_io, opts):
    """Block status answers unallocated runs through L1 entries without a
    table in one go; data after long gaps, at and around L2 range
    boundaries, still maps and reads as the reference's."""
    img = str(tmp_path / 'g.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o', opts,
                img, '64M']).rc == 0
    writes = [('0x21', '0', '512'), ('0x22', '32256', '1024'),
              ('0x23', '5M', '4k'), ('0x24', '33554432', '512'),
              ('0x25', '67108352', '512')]
    cmds = [f'write -P {p} {o} {n}' for p, o, n in writes]
    assert run([ref_qemu_io, *io_args(cmds), img]).rc == 0
    assert run([ref_qemu_io, '-c', 'write -z 40M 1M', img]).rc == 0
    assert run([strata_img, 'map', '--output=json', img]).out == \
        run([ref_qemu_img, 'map', '--output=json', img]).out
    reads = [f'read -P {p} {o} {n}' for p, o, n in writes] + \
        ['read -P 0 512 31744', 'read -P 0 6M 26M', 'read -P 0 40M 1M']
    r = run([strata_io, *io_args(reads), img])
    assert r.rc == 0 and 'failed' not in r.out, r


def compressed_after_failure(tmp_path, img_tool, io_tool, failing):
    """A compressed write of 16 512-byte clusters whose cluster @failing
    (and no other) is already allocated: it fails with EIO; how many
    clusters after the failing one were written all the same."""
    p = str(tmp_path / 'c.qcow2')
    assert run([img_tool, 'create', '-q', '-f', 'qcow2', '-o',
                'cluster_size=512', p, '1M']).rc == 0
    assert run([io_tool, '-c', f'write -P 1 {failing * 512} 512', p]).rc == 0
    r = run([io_tool, '-c', 'write -c -P 9 0 8k', p])
    assert r.rc == 1 and 'write failed: Input/output error' in r.out, r
    m = json.loads(run([img_tool, 'map', '--output=json', p]).out)
    if failing:
        assert m[0] == {'start': 0, 'length': failing * 512, 'depth': 0,
                        'present': True, 'zero': False, 'data': True,
                        'compressed': True}
        m = m[1:]
    assert not m[0]['compressed'] and m[0]['length'] == 512
    return m[1]['length'] // 512 if m[1]['compressed'] else 0


@pytest.mark.parametrize('failing,after', [(0, 8), (1, 7), (4, 7)])
def test_compressed_write_stops_after_failure(tmp_path, strata_img, strata_io,
                                              ref_qemu_img, ref_qemu_io,
                                              failing, after):
    """The reference runs 8 clusters' compressions at a time and starts
    no new one once it has seen a failure; how many after the failing one
    had started varies with their timing (runs here: 8 when the first
    cluster fails; mostly 7 after the second or the fifth, between 4 and
    11 under load).  Both fail alike, keep the clusters before the
    failing one and leave it alone (compressed_after_failure()); strata
    writes the reference's most frequent count."""
    compressed_after_failure(tmp_path, ref_qemu_img, ref_qemu_io, failing)
    ours = compressed_after_failure(tmp_path, strata_img, strata_io, failing)
    assert ours == after

