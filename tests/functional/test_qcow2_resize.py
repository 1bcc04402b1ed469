"""qcow2 resize: grow, shrink and preallocated growth leave images the
reference finds clean, identical in content and info to its own."""
import json
import shutil

import pytest

from conftest import run


def info(ref_img, path):
    d = json.loads(run([ref_img, 'info', '--output=json', path]).out)
    d.pop('actual-size')
    d.pop('filename')
    d['children'] = len(d.get('children', []))
    return d


@pytest.mark.parametrize('args', [
    ['+10M'], ['--shrink', '1M'], ['2G'], ['3000000'],
    ['--shrink', '1000K'], ['--preallocation=metadata', '9M'],
    ['--shrink', '2M', '--preallocation=full'],
])
def test_resize_matches_reference(tmp_path, strata_img, ref_qemu_img,
                                  ref_qemu_io, args):
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', r, '4M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 1 0 3M', r]).rc == 0
    shutil.copy(r, s)
    rr = run([ref_qemu_img, 'resize', '-f', 'qcow2', r, *args])
    ss = run([strata_img, 'resize', '-f', 'qcow2', s, *args])
    assert (ss.rc, ss.out, ss.err.replace('strata-img', 'qemu-img')) == \
        (rr.rc, rr.out, rr.err.replace(r, s))
    assert run([ref_qemu_img, 'check', s]).rc == 0
    assert run([ref_qemu_img, 'compare', r, s]).rc == 0
    assert info(ref_qemu_img, s) == info(ref_qemu_img, r)


@pytest.mark.parametrize('opts', ['compat=1.1', 'extended_l2=on'])
def test_grow_over_longer_backing_reads_zeroes(tmp_path, strata_img,
                                               ref_qemu_img, ref_qemu_io,
                                               opts):
    base = str(tmp_path / 'b.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', base,
                '4M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 0x55 0 4M', base]).rc == 0
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    for p in (r, s):
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-b',
                    'b.qcow2', '-F', 'qcow2', '-o', opts, p,
                    '1000k']).rc == 0
    if 'backing file:' not in run([strata_img, 'info', s]).out:
        pytest.skip('the core does not open backing files yet')
    assert run([ref_qemu_img, 'resize', r, '3M']).rc == 0
    assert run([strata_img, 'resize', s, '3M']).rc == 0
    assert run([ref_qemu_img, 'compare', r, s]).rc == 0
    assert run([ref_qemu_img, 'check', s]).rc == 0
    out = run([ref_qemu_io, '-c', 'read -P 0 1000k 2072k', s]).out
    assert 'failed' not in out
