"""Snapshot creation and amend on a qcow2 image left dirty by lazy
refcounts, its refcounts stale: both tools repair the image on the
read-write open, then do the operation.  Output, exit status, the
reference's check and the guest data must match."""
import json
import shutil
import struct

import pytest

from conftest import run

CS = 65536


def dirty_stale(path, ref_qemu_img, ref_qemu_io):
    """1 MiB image, one data cluster (cluster 5) whose refcount is lost,
    dirty bit set: what a writer killed with lazy refcounts leaves."""
    run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
         'lazy_refcounts=on', path, '1M'])
    assert run([ref_qemu_io, '-c', 'write -P 7 0 64k', path]).rc == 0
    with open(path, 'r+b') as f:
        f.seek(72)
        v = struct.unpack('>Q', f.read(8))[0]
        f.seek(72)
        f.write(struct.pack('>Q', v | 1))
        f.seek(2 * CS + 2 * 5)
        assert struct.unpack('>H', f.read(2))[0] == 1
        f.seek(2 * CS + 2 * 5)
        f.write(b'\0\0')


def timeless(info):
    """info JSON without the snapshots' creation times."""
    d = json.loads(info)
    for sn in d.get('snapshots', []):
        sn.pop('date-sec')
        sn.pop('date-nsec')
    return d


@pytest.mark.parametrize('op', [
    ['snapshot', '-c', 's1'],
    ['amend', '-o', 'compat=0.10'],
    ['amend', '-o', 'lazy_refcounts=off'],
    ['amend', '-o', 'refcount_bits=8'],
])
def test_dirty_stale_op(tmp_path, ref_qemu_img, ref_qemu_io, our_qemu_img,
                        op):
    src = str(tmp_path / 'src.qcow2')
    dirty_stale(src, ref_qemu_img, ref_qemu_io)
    res = {}
    for tool, name in ((ref_qemu_img, 'ref'), (our_qemu_img, 'our')):
        d = tmp_path / name
        d.mkdir()
        shutil.copy(src, d / 'img.qcow2')
        res[name] = run([tool, *op, 'img.qcow2'], cwd=d)
    a, b = res['ref'], res['our']
    assert a.rc == 0
    assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err)
    chk = [run([ref_qemu_img, 'check', '--output=json', 'img.qcow2'],
               cwd=tmp_path / n) for n in ('ref', 'our')]
    assert chk[1].rc == chk[0].rc == 0
    assert chk[1].out == chk[0].out
    inf = [timeless(run([ref_qemu_img, 'info', '--output=json',
                         'img.qcow2'], cwd=tmp_path / n).out)
           for n in ('ref', 'our')]
    assert inf[1] == inf[0]
    cmp = run([ref_qemu_img, 'compare', str(tmp_path / 'ref/img.qcow2'),
               str(tmp_path / 'our/img.qcow2')])
    assert cmp.rc == 0, cmp


def failed_lazy_write(d, img, io):
    """qemu-iotests 080 with lazy refcounts: a snapshot whose L1 offset is
    unaligned makes the inactive-L2 overlap check fail the data write and
    the refcount flush at close.  Returns the outputs of the commands after
    the failed write."""
    path = str(d / 'img.qcow2')
    run([img, 'create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on',
         path, '64M'])
    assert run([io, '-c', 'write 0 512', path]).rc == 0
    assert run([img, 'snapshot', '-c', 'test', path]).rc == 0
    with open(path, 'r+b') as f:
        f.seek(0x70000)         # the first snapshot table entry: l1 offset
        f.write(struct.pack('>Q', 0x400200))
    w = run([io, '-c', 'open -o overlap-check.inactive-l2=on ' + path,
             '-c', 'write 0 4k'])
    with open(path, 'rb') as f:
        f.seek(72)
        incompat = struct.unpack('>Q', f.read(8))[0]
    apply = run([img, 'snapshot', '-a', 'test', path])
    chk = run([img, 'check', path])
    return w, incompat, apply, chk


def test_failed_lazy_write_leaves_clean(tmp_path, ref_qemu_img, ref_qemu_io,
                                        our_qemu_img, our_qemu_io):
    """The reference sets the dirty bit when it links the new clusters, so
    a write that fails before (and a close that cannot flush) leaves the
    image clean: the next read-write open does not repair it."""
    res = []
    for name, img, io in (('ref', ref_qemu_img, ref_qemu_io),
                          ('our', our_qemu_img, our_qemu_io)):
        (tmp_path / name).mkdir()
        res.append(failed_lazy_write(tmp_path / name, img, io))
    ref, our = res
    assert ref[0].rc == 1 and 'write failed' in ref[0].out
    assert ref[1] == 0
    assert (our[0].rc, our[0].out) == (ref[0].rc, ref[0].out)
    assert our[1] == ref[1]
    for a, b in zip(ref[2:], our[2:]):
        assert (b.rc, b.out, b.err.replace('/our/', '/ref/')) == \
            (a.rc, a.out, a.err)
