"""strata-img check -r leaks|all on qcow2: damaged images (made by the
reference, then damaged precisely by hand) repaired by both tools on their
own copies.  Stdout, stderr and exit status must match the reference's
(human and JSON); afterwards the reference check finds our repaired image
exactly as it finds its own, and the guest data reads the same."""
import os
import shutil
import struct

import pytest

from conftest import run
from test_qcow2_check import (CS, DAMAGE, EXT_DAMAGE, HEADER_DAMAGE,  # noqa: F401
                              L2, RB, RT, SNAP_DAMAGE, base, ext_l2_image,
                              hdr, rd, snap_image, wr)


def repair_both(tmp_path, ref_img, our_img, src, *args, out=()):
    """Both tools repair their own copy of @src; returns the two paths
    and the two results, which must match."""
    res = {}
    for tool, name in ((ref_img, 'ref'), (our_img, 'our')):
        d = tmp_path / f'{name}{len(out)}'
        d.mkdir(exist_ok=True)
        img = d / 'img.qcow2'
        shutil.copy(src, img)
        res[name] = (str(img), run([tool, 'check', *args, *out, 'img.qcow2'],
                                   cwd=d))
    a, b = res['ref'][1], res['our'][1]
    assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err), \
        f'reference:\n{a}\nours:\n{b}'
    return res['ref'][0], res['our'][0], a


def same_after(ref_qemu_img, ref_path, our_path):
    """The reference sees both repaired images alike, data included."""
    a, b = [run([ref_qemu_img, 'check', '--output=json', 'img.qcow2'],
                cwd=os.path.dirname(p)) for p in (ref_path, our_path)]
    assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err), \
        f'ref:\n{a}\nours:\n{b}'
    r = run([ref_qemu_img, 'compare', '-f', 'qcow2', '-F', 'qcow2',
             ref_path, our_path])
    if r.rc != 0:
        # only data the reference cannot read itself may differ
        own = run([ref_qemu_img, 'compare', ref_path, ref_path])
        assert own.rc == r.rc and r.rc in (2, 3, 4), r
    return b


def damaged(tmp_path, base, case):
    p = str(tmp_path / 'd.qcow2')
    shutil.copy(base, p)
    for off, fmt, v in DAMAGE[case]:
        wr(p, off, fmt, v)
    return p


@pytest.mark.parametrize('mode', ['leaks', 'all'])
@pytest.mark.parametrize('case', sorted(DAMAGE))
def test_repair_damaged(tmp_path, base, ref_qemu_img, our_qemu_img, case,
                        mode):
    p = damaged(tmp_path, base, case)
    ref_path, our_path, r = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        p, '-r', mode)
    same_after(ref_qemu_img, ref_path, our_path)
    _, _, j = repair_both(tmp_path, ref_qemu_img, our_qemu_img, p, '-r',
                          mode, out=('--output=json',))
    assert j.rc == r.rc


def test_repair_leaks_clean_afterwards(tmp_path, base, ref_qemu_img,
                                       our_qemu_img):
    """A leak repaired: reported, counted, gone; the data unchanged."""
    p = damaged(tmp_path, base, 'leak')
    d = tmp_path / 'x'
    d.mkdir()
    img = str(d / 'img.qcow2')
    shutil.copy(p, img)
    r = run([our_qemu_img, 'check', '-r', 'leaks', img])
    assert r.rc == 0, r
    assert 'Repairing cluster 9 refcount=2 reference=1\n' in r.err
    assert r.out.startswith('The following inconsistencies were found and '
                            'repaired:\n\n    1 leaked clusters\n    0 '
                            'corruptions\n\nDouble checking the fixed image '
                            'now...\nNo errors were found on the image.\n')
    assert run([ref_qemu_img, 'check', img]).rc == 0
    assert run([ref_qemu_img, 'compare', base, img]).rc == 0


def test_rebuild_wiped_refcounts(tmp_path, base, ref_qemu_img,
                                 our_qemu_img):
    """Refcount block and table wiped: only a rebuild from the L1/L2
    tables can give them back; no guest data is lost."""
    p = damaged(tmp_path, base, 'clean')
    with open(p, 'r+b') as f:
        f.seek(RB)
        f.write(bytes(CS))
        f.seek(RT)
        f.write(bytes(CS))
    ref_path, our_path, r = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        p, '-r', 'all')
    assert r.rc == 0 and 'Rebuilding refcount structure' in r.err
    same_after(ref_qemu_img, ref_path, our_path)
    assert run([ref_qemu_img, 'compare', base, our_path]).rc == 0
    assert open(ref_path, 'rb').read() == open(our_path, 'rb').read()


def test_rebuild_needs_all(tmp_path, base, ref_qemu_img, our_qemu_img):
    p = damaged(tmp_path, base, 'refcount_zero')
    _, our_path, r = repair_both(tmp_path, ref_qemu_img, our_qemu_img, p,
                                 '-r', 'leaks')
    assert r.rc == 1
    assert 'ERROR need to rebuild refcount structures' in r.err


def test_corrupt_bit_cleared(tmp_path, base, ref_qemu_img, our_qemu_img):
    """A corrupt image opens read-write only for its repair, which clears
    the bit once nothing is left to repair."""
    p = damaged(tmp_path, base, 'refcount_too_large')
    wr(p, 72, '>Q', 2)
    ref_path, our_path, r = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        p, '-r', 'all')
    assert r.rc == 0
    assert rd(our_path, 72, '>Q') == 0
    same_after(ref_qemu_img, ref_path, our_path)


def test_made_by_reference_many(tmp_path, ref_qemu_img, ref_qemu_io,
                                our_qemu_img):
    """A fuller image (compressed, zero, discarded clusters, snapshot)
    with its refcount block wiped and leaks added: rebuilt identically."""
    p = str(tmp_path / 'm.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'cluster_size=4k', p, '8M']).rc == 0
    r = run([ref_qemu_io, '-c', 'write -P 1 0 1M', '-c', 'write -c -P 2 1M 64k',
             '-c', 'write -z 2M 64k', '-c', 'discard 100k 20k', p])
    assert r.rc == 0, r
    assert run([ref_qemu_img, 'snapshot', '-c', 's1', p]).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 3 512k 64k', p]).rc == 0
    h = hdr(p)
    rb = rd(p, h['rt_off'], '>Q')
    with open(p, 'r+b') as f:
        f.seek(rb)
        f.write(bytes(4096))
    ref_path, our_path, r = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        p, '-r', 'all')
    assert r.rc == 0, r
    same_after(ref_qemu_img, ref_path, our_path)


# the snapshot table rewritten by -r all (entries completed, extra data
# or overhanging entries dropped) is not implemented yet
SNAPSHOT_TABLE_REWRITE = pytest.mark.xfail(
    reason='check -r all does not rewrite the snapshot table yet',
    strict=True)


def snap_case(case, mode):
    rewrite = {'extra_data_too_large', 'table_past_eof', 'one_more_entry'}
    if mode == 'all' and case in rewrite:
        return pytest.param(case, mode, marks=SNAPSHOT_TABLE_REWRITE)
    return pytest.param(case, mode)


@pytest.mark.parametrize('case,mode', [
    snap_case(c, m) for c in sorted(SNAP_DAMAGE) +
    ['table_past_eof', 'one_more_entry'] for m in ('leaks', 'all')])
def test_repair_snapshot_damaged(tmp_path, snap_image, ref_qemu_img,
                                 our_qemu_img, case, mode):
    p = str(tmp_path / 'd.qcow2')
    shutil.copy(snap_image, p)
    sn = hdr(p)['sn_off']
    if case == 'table_past_eof':
        wr(p, 64, '>Q', 0x10000000)
    elif case == 'one_more_entry':
        wr(p, 60, '>I', 3)
    for off, fmt, v in SNAP_DAMAGE.get(case, []):
        if isinstance(v, str):
            v = rd(p, sn + off, fmt) + int(v[1:], 16)
        wr(p, sn + off, fmt, v)
    ref_path, our_path, _ = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        p, '-r', mode)
    same_after(ref_qemu_img, ref_path, our_path)


@pytest.mark.parametrize('case,mode', [
    pytest.param(c, m, marks=SNAPSHOT_TABLE_REWRITE)
    if (c, m) == ('too_many_snapshots', 'all') else pytest.param(c, m)
    for c in sorted(HEADER_DAMAGE) + ['truncated', 'truncated_at_l2']
    for m in ('leaks', 'all')])
def test_repair_header_and_file_damaged(tmp_path, base, ref_qemu_img,
                                        our_qemu_img, case, mode):
    p = str(tmp_path / 'd.qcow2')
    shutil.copy(base, p)
    for off, fmt, v in HEADER_DAMAGE.get(case, []):
        wr(p, off, fmt, v)
    if case == 'truncated':
        os.truncate(p, 0x48000)
    elif case == 'truncated_at_l2':
        os.truncate(p, L2)
    ref_path, our_path, _ = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        p, '-r', mode)
    same_after(ref_qemu_img, ref_path, our_path)


@pytest.mark.parametrize('case', sorted(EXT_DAMAGE))
def test_repair_extended_l2_damaged(tmp_path, ref_qemu_img, ref_qemu_io,
                                    our_qemu_img, case):
    p, l2 = ext_l2_image(tmp_path, ref_qemu_img, ref_qemu_io)
    for idx, (entry, bitmap) in EXT_DAMAGE[case].items():
        off = l2 + 16 * idx
        if entry is not None:
            e = rd(p, off, '>Q')
            e = e + int(entry[1:], 16) if entry[0] == '+' else \
                e | int(entry[1:], 16)
            wr(p, off, '>Q', e)
        if bitmap is not None:
            wr(p, off + 8, '>Q', bitmap)
    ref_path, our_path, _ = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        p, '-r', 'all')
    same_after(ref_qemu_img, ref_path, our_path)
