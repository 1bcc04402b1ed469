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


KILLED_OPS = [
    ['write -c -P 3 1M 64k'],
    ['write -z 0 64k'],
    ['write -z -u 0 64k'],
    ['discard 0 128k'],
    ['write -P 4 128k 4k'],
    ['write -c -P 5 1M 64k', 'write -c -P 6 3M 8k', 'write -z -u 64k 64k'],
]


@pytest.mark.parametrize('cs', ['512', '64k'])
@pytest.mark.parametrize('ops', KILLED_OPS, ids=lambda o: '+'.join(o))
def test_killed_lazy_writer(tmp_path, ref_qemu_img, ref_qemu_io,
                            our_qemu_img, our_qemu_io, ops, cs):
    """A writer killed (qemu-io `sigraise 9`) after the operations, with
    lazy refcounts: the reference sets the dirty bit only for the data
    clusters a normal write links; compressed writes (their refcounts
    written first), zero writes and discards (references only dropped)
    leave a clean image.  The dirty bits must agree, the files be
    byte-identical (compressed writes aside), and the reference's check
    must find no corruption in a clean one."""
    files = []
    for name, img, io in (('ref', ref_qemu_img, ref_qemu_io),
                          ('our', our_qemu_img, our_qemu_io)):
        path = str(tmp_path / f'{name}.qcow2')
        run([img, 'create', '-q', '-f', 'qcow2', '-o',
             f'lazy_refcounts=on,cluster_size={cs}', path, '4M'])
        assert run([io, '-c', 'write -P 1 0 128k', path]).rc == 0
        cmds = [a for op in ops for a in ('-c', op)]
        r = run([io, *cmds, '-c', 'sigraise 9', path])
        assert r.rc == -9
        with open(path, 'rb') as f:
            files.append(f.read())
        if not files[-1][79] & 1:
            # a dirty image's refcounts are stale until it is repaired
            chk = run([ref_qemu_img, 'check', path])
            assert chk.rc in (0, 3), chk
    assert files[1][79] & 1 == files[0][79] & 1
    if not any('-c' in op.split() for op in ops):
        # the reference compresses clusters in parallel: which of their
        # L2 entries were on disk at the kill varies from run to run
        assert files[1] == files[0]
