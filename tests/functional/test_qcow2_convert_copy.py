"""convert from qcow2 through copy offloading (the driver's copy_range
'from' half): data clusters go below the formats, zero and unallocated
ones become holes, unallocated ones over a backing file are the backing
node's copy; compressed clusters fall back to reads and writes.  Output
and allocation match the reference's."""
import os
import shutil
import tempfile

import pytest

from conftest import run


@pytest.fixture
def shm_dir():
    """tmpfs, where convert uses the file driver's sparse copy."""
    if not os.path.isdir('/dev/shm'):
        pytest.skip('no /dev/shm')
    d = tempfile.mkdtemp(dir='/dev/shm', prefix='strata-test-')
    yield d
    shutil.rmtree(d, ignore_errors=True)


LAYOUT = [
    'write -P 0x11 0 192k', 'write -z 64k 64k', 'write -P 0 256k 64k',
    'write -P 0x22 1M 3k', 'write -P 0x33 1200k 4k', 'write -z 2M 1M',
    'write -P 0x44 3M 130k', 'write -P 0x55 4095k 1k',
]


def make_src(ref_img, ref_io, path, opts, extra=()):
    assert run([ref_img, 'create', '-q', '-f', 'qcow2', '-o', opts, path,
                '4M']).rc == 0
    args = []
    for c in LAYOUT + list(extra):
        args += ['-c', c]
    assert run([ref_io, '-f', 'qcow2', *args, path]).rc == 0


def same_outputs(strata_img, ref_img, d, src, args):
    r, s = os.path.join(d, 'r.raw'), os.path.join(d, 's.raw')
    assert run([ref_img, 'convert', *args, '-O', 'raw', src, r]).rc == 0
    ss = run([strata_img, 'convert', *args, '-O', 'raw', src, s])
    assert ss.rc == 0, ss
    assert open(r, 'rb').read() == open(s, 'rb').read()
    rm = run([ref_img, 'map', '--output=json', '-f', 'raw', r]).out
    sm = run([ref_img, 'map', '--output=json', '-f', 'raw', s]).out
    assert sm == rm


@pytest.mark.parametrize('opts', [
    'cluster_size=65536', 'cluster_size=4096', 'cluster_size=512',
    'extended_l2=on', 'extended_l2=on,cluster_size=16k',
])
@pytest.mark.parametrize('args', [[], ['-C'], ['-S', '64k']])
def test_convert_to_raw_matches_reference(shm_dir, strata_img, ref_qemu_img,
                                          ref_qemu_io, opts, args):
    src = os.path.join(shm_dir, 'src.qcow2')
    make_src(ref_qemu_img, ref_qemu_io, src, opts)
    same_outputs(strata_img, ref_qemu_img, shm_dir, src, args)


def test_compressed_clusters_fall_back(shm_dir, strata_img, ref_qemu_img,
                                       ref_qemu_io):
    src = os.path.join(shm_dir, 'src.qcow2')
    make_src(ref_qemu_img, ref_qemu_io, src, 'cluster_size=65536',
             ['write -c -P 0x66 1536k 64k'])
    same_outputs(strata_img, ref_qemu_img, shm_dir, src, [])


def test_backing_data(shm_dir, strata_img, ref_qemu_img,
                                 ref_qemu_io):
    base = os.path.join(shm_dir, 'base.qcow2')
    make_src(ref_qemu_img, ref_qemu_io, base, 'cluster_size=65536',
             ['write -P 0x77 512k 256k'])
    top = os.path.join(shm_dir, 'top.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-b', base,
                '-F', 'qcow2', top]).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 0x88 600k 8k', top]).rc == 0
    same_outputs(strata_img, ref_qemu_img, shm_dir, top, [])


def test_external_data_file(shm_dir, strata_img, ref_qemu_img, ref_qemu_io):
    src = os.path.join(shm_dir, 'src.qcow2')
    make_src(ref_qemu_img, ref_qemu_io, src,
             'data_file=' + os.path.join(shm_dir, 'src.data'))
    same_outputs(strata_img, ref_qemu_img, shm_dir, src, [])
