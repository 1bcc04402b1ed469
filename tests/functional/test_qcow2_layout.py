"""qcow2 allocation layout and resize rules matched to the reference:
the same operations give the same file, and resize allows or refuses
exactly what the reference does, with its messages."""
import pytest

from conftest import run


def prepare(ref_img, ref_io, path, compat):
    assert run([ref_img, 'create', '-q', '-f', 'qcow2', '-o',
                'compat=' + compat, path, '10M']).rc == 0
    assert run([ref_io, '-c', 'write -P 1 0 1M', '-c', 'write -P 2 8M 1M',
                path]).rc == 0
    assert run([ref_img, 'snapshot', '-c', 's1', path]).rc == 0
    assert run([ref_io, '-c', 'write -P 3 8M 64k', path]).rc == 0


@pytest.mark.parametrize('compat', ['1.1', '0.10'])
def test_shrink_with_snapshots(tmp_path, strata_img, ref_qemu_img,
                               ref_qemu_io, compat):
    """v3 records each snapshot's size, so the reference shrinks an image
    with snapshots (v2 refuses any resize); the snapshot keeps its data."""
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    for p in (r, s):
        prepare(ref_qemu_img, ref_qemu_io, p, compat)
    rr = run([ref_qemu_img, 'resize', '--shrink', r, '4M'])
    ss = run([strata_img, 'resize', '--shrink', s, '4M'])
    assert (ss.rc, ss.out, ss.err.replace('strata-img', 'qemu-img')) == \
        (rr.rc, rr.out, rr.err.replace(r, s))
    assert run([ref_qemu_img, 'check', s]).rc == 0
    assert run([ref_qemu_img, 'compare', r, s]).rc == 0
    with open(r, 'rb') as f, open(s, 'rb') as g:
        assert len(f.read()) == len(g.read())
    for p in (r, s):
        assert run([ref_qemu_img, 'snapshot', '-a', 's1', p]).rc == 0
    assert run([ref_qemu_img, 'compare', r, s]).rc == 0
    out = run([ref_qemu_io, '-c', 'read -P 2 8M 1M', s]).out
    assert 'failed' not in out and 'Pattern' not in out
