"""qcow2 backing-file change (`rebase -u`): the header the driver rewrites
is byte for byte the reference's, and failures leave the image as is."""
import json
import shutil

import pytest

from conftest import run


def make(ref_img, path, *opts):
    assert run([ref_img, 'create', '-q', '-f', 'qcow2', *opts, path,
                '1M']).rc == 0


def both(tmp_path, ref_img, strata_img, src, args):
    """Run the reference and strata on copies of @src; (rr, ss, r, s)."""
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    shutil.copy(src, r)
    shutil.copy(src, s)
    rr = run([ref_img, 'rebase', '-u', *args, r])
    ss = run([strata_img, 'rebase', '-u', *args, s])
    assert (ss.rc, ss.out, ss.err.replace('strata-img', 'qemu-img')) == \
        (rr.rc, rr.out, rr.err)
    return r, s


@pytest.mark.parametrize('opts', [
    [], ['-b', 'old.qcow2', '-F', 'qcow2'], ['-o', 'compat=0.10'],
    ['-o', 'extended_l2=on,compression_type=zstd'],
    ['-o', 'cluster_size=512', '-b', 'old.qcow2', '-F', 'qcow2'],
    ['-o', 'cluster_size=4096'], ['-o', 'cluster_size=8192'],
])
@pytest.mark.parametrize('args', [
    ['-b', 'new.img', '-F', 'raw'], ['-b', ''], ['-b', 'new.qcow2'],
    ['-b', 'a/much/longer/path/to/the/new/base.qcow2', '-F', 'qcow2'],
    ['-b', 'x' * 1100, '-F', 'raw'], ['-b', 'y' * 400, '-F', 'raw'],
])
def test_rebase_unsafe_same_bytes(tmp_path, strata_img, ref_qemu_img,
                                  opts, args):
    make(ref_qemu_img, str(tmp_path / 'old.qcow2'))
    src = str(tmp_path / 'src.qcow2')
    make(ref_qemu_img, src, *opts)
    r, s = both(tmp_path, ref_qemu_img, strata_img, src, args)
    assert open(r, 'rb').read() == open(s, 'rb').read()
    spec = {'driver': 'qcow2', 'backing': None,
            'file': {'driver': 'file', 'filename': s}}
    assert run([ref_qemu_img, 'check', 'json:' + json.dumps(spec)]).rc == 0


def test_rebase_unsafe_raw_data_file_refused(tmp_path, strata_img,
                                             ref_qemu_img):
    src = str(tmp_path / 'src.qcow2')
    make(ref_qemu_img, src, '-o',
         f'data_file={tmp_path}/d.raw,data_file_raw=on')
    r, s = both(tmp_path, ref_qemu_img, strata_img, src,
                ['-b', 'n.qcow2', '-F', 'qcow2'])
    assert open(r, 'rb').read() == open(s, 'rb').read()


def test_rebase_unsafe_data_still_reads(tmp_path, strata_img, ref_qemu_img,
                                        ref_qemu_io):
    base = str(tmp_path / 'new.raw')
    with open(base, 'wb') as f:
        f.write(b'\x33' * (1 << 20))
    src = str(tmp_path / 'src.qcow2')
    make(ref_qemu_img, src)
    assert run([ref_qemu_io, '-c', 'write -P 0x44 0 64k', src]).rc == 0
    assert run([strata_img, 'rebase', '-u', '-b', 'new.raw', '-F', 'raw',
                src]).rc == 0
    for cmd in ('read -P 0x44 0 64k', 'read -P 0x33 64k 960k'):
        assert 'failed' not in run([ref_qemu_io, '-c', cmd, src]).out
    assert run([ref_qemu_img, 'check', src]).rc == 0
