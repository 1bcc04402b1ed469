"""strata-img check -r leaks|all on qcow2: damaged images (made by the
reference, then damaged precisely by hand) repaired by both tools on their
own copies.  Stdout, stderr and exit status must match the reference's
(human and JSON); afterwards the reference check finds our repaired image
exactly as it finds its own, and the guest data reads the same."""
import os
import re
import shutil
import struct

import pytest

from conftest import run
from test_qcow2_check import (  # noqa: F401 (base, snap_image: fixtures)
    CS, DAMAGE, EXT_DAMAGE, HEADER_DAMAGE, L2, RB, RT, SNAP_DAMAGE, base,
    ext_l2_damaged, hdr, header_damaged, rd, snap_image, snapshot_damaged,
    wr)


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
    r = run([ref_qemu_io, '-c', 'write -P 1 0 1M', '-c',
             'write -c -P 2 1M 64k', '-c', 'write -z 2M 64k', '-c',
             'discard 100k 20k', p])
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


@pytest.mark.parametrize('mode', ['leaks', 'all'])
@pytest.mark.parametrize('case', sorted(SNAP_DAMAGE) +
                         ['table_past_eof', 'one_more_entry'])
def test_repair_snapshot_damaged(tmp_path, snap_image, ref_qemu_img,
                                 our_qemu_img, case, mode):
    p = snapshot_damaged(tmp_path, snap_image, case)
    ref_path, our_path, _ = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        p, '-r', mode)
    same_after(ref_qemu_img, ref_path, our_path)


# l1_size_grown is left out: half a million lines of output per run,
# 40 s for both modes, and nothing the other cases do not reach
@pytest.mark.parametrize('mode', ['leaks', 'all'])
@pytest.mark.parametrize('case', sorted(set(HEADER_DAMAGE) -
                                        {'l1_size_grown'}) +
                         ['truncated', 'truncated_at_l2'])
def test_repair_header_and_file_damaged(tmp_path, base, ref_qemu_img,
                                        our_qemu_img, case, mode):
    p = header_damaged(tmp_path, base, case)
    ref_path, our_path, _ = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        p, '-r', mode)
    same_after(ref_qemu_img, ref_path, our_path)


@pytest.mark.parametrize('case', sorted(EXT_DAMAGE))
def test_repair_extended_l2_damaged(tmp_path, ref_qemu_img, ref_qemu_io,
                                    our_qemu_img, case):
    p = ext_l2_damaged(tmp_path, ref_qemu_img, ref_qemu_io, case)
    ref_path, our_path, _ = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        p, '-r', 'all')
    same_after(ref_qemu_img, ref_path, our_path)


# ---- lazy refcounts: a writer killed leaves the image dirty ----

@pytest.fixture
def aborted_lazy(tmp_path, ref_qemu_img, ref_qemu_io):
    """A lazy-refcounts image whose writer (the reference) aborted after
    its writes: dirty, refcounts of the new clusters missing."""
    p = str(tmp_path / 'lazy.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'lazy_refcounts=on', p, '64M']).rc == 0
    r = run([ref_qemu_io, '-c', 'write -P 1 0 1M', '-c', 'write -P 2 5M 64k',
             '-c', 'abort', p])
    assert r.rc != 0
    assert rd(p, 72, '>Q') & 1, 'dirty bit not set'
    return p


def both_io(tmp_path, ref_qemu_io, our_qemu_io, src, *cmds):
    """Both tools run the same qemu-io commands on their own copy of @src;
    outputs (timings aside) and the resulting files must match."""
    res = {}
    argv = [c for cmd in cmds for c in ('-c', cmd)]
    for tool, name in ((ref_qemu_io, 'ref'), (our_qemu_io, 'our')):
        d = tmp_path / f'io-{name}'
        d.mkdir(exist_ok=True)
        img = d / 'img.qcow2'
        if not img.exists():
            shutil.copy(src, img)
        res[name] = (str(img), run([tool, *argv, 'img.qcow2'], cwd=d))
    a, b = res['ref'][1], res['our'][1]
    from conftest import normalize
    assert (b.rc, normalize(b.out), b.err) == \
        (a.rc, normalize(a.out), a.err), f'reference:\n{a}\nours:\n{b}'
    return res['ref'][0], res['our'][0], a


def test_dirty_lazy_checked_as_reference(tmp_path, aborted_lazy,
                                         ref_qemu_img, our_qemu_img):
    for args in ([], ['--output=json']):
        d = {}
        for tool, name in ((ref_qemu_img, 'ref'), (our_qemu_img, 'our')):
            d[name] = run([tool, 'check', *args, aborted_lazy])
        assert (d['our'].rc, d['our'].out, d['our'].err) == \
            (d['ref'].rc, d['ref'].out, d['ref'].err)
        assert d['ref'].rc == 2


def test_dirty_lazy_repaired_on_open(tmp_path, aborted_lazy, ref_qemu_img,
                                     ref_qemu_io, our_qemu_io):
    """Opened read-write, the dirty image is checked and repaired first
    (its lines on stderr), the dirty bit cleared, the data intact."""
    ref_path, our_path, r = both_io(tmp_path, ref_qemu_io, our_qemu_io,
                                    aborted_lazy, 'read -P 1 0 1M',
                                    'read -P 2 5M 64k')
    assert r.rc == 0 and 'Rebuilding refcount structure' in r.err
    assert open(ref_path, 'rb').read() == open(our_path, 'rb').read()
    assert rd(our_path, 72, '>Q') & 1 == 0
    c = run([ref_qemu_img, 'check', our_path])
    assert c.rc == 0, c


def test_dirty_lazy_read_only_untouched(tmp_path, aborted_lazy,
                                        our_qemu_io):
    """Read-only opens do not repair: the image stays as it was."""
    before = open(aborted_lazy, 'rb').read()
    r = run([our_qemu_io, '-r', '-c', 'read -P 1 0 1M', aborted_lazy])
    assert r.rc == 0 and r.err == '', r
    assert open(aborted_lazy, 'rb').read() == before


def test_dirty_lazy_check_repair(tmp_path, aborted_lazy, ref_qemu_img,
                                 our_qemu_img):
    ref_path, our_path, r = repair_both(tmp_path, ref_qemu_img,
                                        our_qemu_img, aborted_lazy, '-r',
                                        'all')
    assert r.rc == 0
    assert rd(our_path, 72, '>Q') == 0
    same_after(ref_qemu_img, ref_path, our_path)


def test_dirty_killed_strata_writer(tmp_path, our_qemu_img, our_qemu_io,
                                    ref_qemu_img, ref_qemu_io):
    """Our own lazy writer aborted: our next read-write open repairs the
    image so that the reference finds it clean, data intact."""
    p = str(tmp_path / 'ours.qcow2')
    assert run([our_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'lazy_refcounts=on', p, '64M']).rc == 0
    r = run([our_qemu_io, '-c', 'write -P 3 0 512k', '-c', 'write -P 4 9M 4k',
             '-c', 'abort', p])
    assert r.rc != 0 and rd(p, 72, '>Q') & 1
    r = run([our_qemu_io, '-c', 'write -P 5 2M 64k', p])
    assert r.rc == 0, r
    c = run([ref_qemu_img, 'check', p])
    assert c.rc == 0, c
    r = run([ref_qemu_io, '-r', '-c', 'read -P 3 0 512k', '-c',
             'read -P 4 9M 4k', '-c', 'read -P 5 2M 64k', p])
    assert r.rc == 0 and 'fail' not in r.out, r



@pytest.mark.parametrize('cmds', [
    ['write -P 0x5a 0 512'],
    ['write -P 1 0 1M', 'flush', 'write -P 2 5M 64k', 'flush',
     'discard 0 64k']])
def test_lazy_refcounts_deferred_like_reference(tmp_path, ref_qemu_img,
                                                ref_qemu_io, our_qemu_io,
                                                our_qemu_img, cmds):
    """Lazy refcounts (qemu-iotests 039): while the dirty bit is on disk
    a flush writes L2 tables but leaves refcount updates cached, as the
    reference does.  Killed, our writer leaves the same file as the
    reference's (dirty bit set, the new data clusters uncounted), which
    check reports and check -r all / a read-write open repair alike."""
    src = str(tmp_path / 'src.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'lazy_refcounts=on', src, '128M']).rc == 0
    argv = [c for cmd in cmds + ['sigraise 9'] for c in ('-c', cmd)]
    paths = {}
    for tool, name in ((ref_qemu_io, 'ref'), (our_qemu_io, 'our')):
        paths[name] = str(tmp_path / f'{name}.qcow2')
        shutil.copy(src, paths[name])
        r = run([tool, *argv, paths[name]])
        assert r.rc == -9, r
        assert rd(paths[name], 72, '>Q') & 1, 'dirty bit not set'
    assert open(paths['our'], 'rb').read() == \
        open(paths['ref'], 'rb').read()
    c = run([our_qemu_img, 'check', paths['our']])
    assert c.rc == 2 and 'refcount=0 reference=1' in c.err, c
    _, our_path, r = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                 paths['our'], '-r', 'all')
    assert r.rc == 0 and 'Rebuilding refcount structure' in r.err
    assert rd(our_path, 72, '>Q') & 1 == 0
    _, our_path, r = both_io(tmp_path, ref_qemu_io, our_qemu_io,
                             paths['our'], 'read -P 0x5a 0 512'
                             if len(cmds) == 1 else 'read -P 2 5M 64k')
    assert 'Rebuilding refcount structure' in r.err
    assert run([ref_qemu_img, 'check', our_path]).rc == 0

# ---- corruption found during I/O ----

def test_corruption_during_io(tmp_path, base, ref_qemu_img, ref_qemu_io,
                              our_qemu_img, our_qemu_io):
    """An L2 entry pointing at the refcount table: the write is refused,
    the image marked corrupt and the node unusable (ENOMEDIUM) as the
    reference's; afterwards only read-only opens work until check -r all
    repairs the image and clears the bit."""
    p = str(tmp_path / 'o.qcow2')
    shutil.copy(base, p)
    wr(p, L2 + 8, '>Q', (1 << 63) | RT)
    ref_path, our_path, r = both_io(tmp_path, ref_qemu_io, our_qemu_io, p,
                                    'write -P 7 64k 4k', 'write -P 8 512k 4k',
                                    'read 0 4k', 'flush')
    assert 'Marking image as corrupt: Preventing invalid write on ' \
           'metadata (overlaps with refcount table)' in r.err
    assert 'No medium found' in r.out
    assert open(ref_path, 'rb').read() == open(our_path, 'rb').read()
    assert rd(our_path, 72, '>Q') & 2
    # read-write refused, read-only fine
    _, _, r = both_io(tmp_path, ref_qemu_io, our_qemu_io, p, 'read 0 4k')
    assert r.rc == 1 and 'Image is corrupt; cannot be opened read/write' \
        in r.err
    q = run([our_qemu_io, '-r', '-c', 'read 0 4k', our_path])
    assert q.rc == 0 and 'read 4096/4096' in q.out, q
    ref_path, our_path, r = repair_both(tmp_path, ref_qemu_img,
                                        our_qemu_img, our_path, '-r', 'all')
    assert r.rc == 0 and rd(our_path, 72, '>Q') == 0
    same_after(ref_qemu_img, ref_path, our_path)
    q = run([our_qemu_io, '-c', 'write -P 9 512k 4k', our_path])
    assert q.rc == 0 and q.err == '', q
    assert run([ref_qemu_img, 'check', our_path]).rc == 0




def test_repair_extra_data_and_rebuild(tmp_path, ref_qemu_img,
                                       our_qemu_img):
    """Too much extra data in the last snapshot entry, spilling into a
    cluster nothing counts (qemu-iotests 261): -r all drops the data and
    rebuilds the refcounts; the snapshot's corruption is counted once,
    not again as one the rebuild fixed."""
    p = str(tmp_path / 'x.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', p,
                '64M']).rc == 0
    for n in ('sn0', 'sn1', 'sn2', 'sn3'):
        assert run([ref_qemu_img, 'snapshot', '-c', n, p]).rc == 0
    off = rd(p, 64, '>Q')
    for _ in range(3):
        ex = rd(p, off + 36, '>I')
        idl, nl = rd(p, off + 12, '>H'), rd(p, off + 14, '>H')
        off += -(-(40 + ex + idl + nl) // 8) * 8
    wr(p, off + 36, '>I', 65536)
    ref_path, our_path, r = repair_both(tmp_path, ref_qemu_img,
                                        our_qemu_img, p, '-r', 'all')
    assert r.rc == 0 and '    2 corruptions\n' in r.out
    same_after(ref_qemu_img, ref_path, our_path)
    _, _, j = repair_both(tmp_path, ref_qemu_img, our_qemu_img, p, '-r',
                          'all', out=('--output=json',))
    assert '"corruptions-fixed": 2' in j.out

@pytest.mark.parametrize('case,cmd,what', [
    ('l2', 'write -P 7 32M 4k', 'allocation of L2 table at offset 0'),
    ('data', 'write -P 7 512k 4k',
     'write on metadata (overlaps with qcow2_header)'),
    ('compressed', 'write -c -P 7 512k 64k',
     'allocation of compressed cluster at offset 0'),
    ('reftable', 'write -P 7 512k 4k',
     'write on metadata (overlaps with refcount table)')])
def test_header_refcount_zero(tmp_path, base, ref_qemu_img, ref_qemu_io,
                              our_qemu_io, case, cmd, what):
    """The header's cluster counted free (qemu-iotests 137): the
    allocation that finds it is refused with the reference's message for
    that kind of cluster, and the image is marked corrupt alike."""
    p = str(tmp_path / 'h.qcow2')
    if case == 'l2':
        p = str(tmp_path / 'fresh.qcow2')
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', p,
                    '64M']).rc == 0
        wr(p, RB, '>Q', 0)
    else:
        shutil.copy(base, p)
        wr(p, *((RT, '>Q') if case == 'reftable' else (RB, '>H')), 0)
    ref_path, our_path, r = both_io(tmp_path, ref_qemu_io, our_qemu_io, p,
                                    cmd)
    assert r.err == 'qcow2: Marking image as corrupt: Preventing invalid ' \
        f'{what}; further corruption events will be suppressed\n'
    assert 'write failed: Input/output error' in r.out
    assert rd(our_path, 72, '>Q') & 2
    assert rd(our_path, 0, '>I') == 0x514649fb

NODE = re.compile(r"node '#block\d+'")


@pytest.mark.parametrize('args', [
    ['resize', '-f', 'qcow2', 'img.qcow2', '2G'],       # L1 table grows
    ['resize', '-f', 'qcow2', 'img.qcow2', '100M'],     # no new L1
    ['bitmap', '--add', '-f', 'qcow2', 'img.qcow2', 'b0'],
    ['amend', '-f', 'qcow2', '-o', 'refcount_bits=8', 'img.qcow2'],
    ['amend', '-f', 'qcow2', '-o', 'refcount_bits=64', 'img.qcow2'],
    ['snapshot', '-c', 's1', 'img.qcow2']],
    ids=['resize-l1', 'resize-small', 'bitmap-add', 'amend-rc8',
         'amend-rc64', 'snapshot'])
def test_header_refcount_zero_commands(tmp_path, base, ref_qemu_img,
                                       our_qemu_img, args):
    """qemu-img commands on an image whose header cluster is counted
    free: where the reference's metadata allocation lands on the header
    its overlap check refuses the write (image marked corrupt, the
    header's refcount left written as 1) with the command's own message;
    amend's refcount rewrite allocates past it and succeeds.  Messages,
    status and the resulting file as the reference's; node names aside
    (the reference's vary from run to run)."""
    res = {}
    for tool, name in ((ref_qemu_img, 'ref'), (our_qemu_img, 'our')):
        d = tmp_path / name
        d.mkdir()
        shutil.copy(base, d / 'img.qcow2')
        wr(str(d / 'img.qcow2'), RB, '>H', 0)
        r = run([tool] + args, cwd=d)
        chk = run([ref_qemu_img, 'check', '-f', 'qcow2', 'img.qcow2'], cwd=d)
        res[name] = (r.rc, r.out, NODE.sub("node 'N'", r.err), chk.rc,
                     open(d / 'img.qcow2', 'rb').read())
    assert res['our'][:4] == res['ref'][:4]
    assert res['our'][4] == res['ref'][4]


def test_refcount_underflow_is_a_leak(tmp_path, base, ref_qemu_io,
                                      our_qemu_io):
    """Freeing a cluster whose refcount is already 0: the reference
    reports it and goes on (no corrupt bit); so do we."""
    p = str(tmp_path / 'u.qcow2')
    shutil.copy(base, p)
    wr(p, RB + 2 * 5, '>H', 0)
    ref_path, our_path, r = both_io(tmp_path, ref_qemu_io, our_qemu_io, p,
                                    'discard 0 64k', 'write -P 8 512k 4k',
                                    'read -P 0 0 4k')
    assert r.err == 'qcow2_free_clusters failed: Invalid argument\n'
    assert open(ref_path, 'rb').read() == open(our_path, 'rb').read()


@pytest.mark.parametrize('opts', ['refcount_bits=1,cluster_size=4k',
                                  'refcount_bits=8,cluster_size=16k',
                                  'refcount_bits=64,cluster_size=512',
                                  'refcount_bits=16,cluster_size=2M',
                                  'extended_l2=on,cluster_size=64k',
                                  'compat=0.10'])
def test_rebuild_formats(tmp_path, ref_qemu_img, ref_qemu_io, our_qemu_img,
                         opts):
    """Refcount table wiped (and a refcount zeroed) in images of every
    refcount width and several cluster sizes: the rebuilt structure is
    the reference's, byte for byte."""
    p = str(tmp_path / 'f.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o', opts, p,
                '32M']).rc == 0
    cs = 1 << hdr(p)['cluster_bits']
    r = run([ref_qemu_io, '-c', 'write -P 1 0 300k', '-c',
             'write -P 2 7M 64k', '-c', f'write -c -P 3 20M {max(cs, 65536)}',
             p])
    assert r.rc == 0, r
    h = hdr(p)
    wr(p, h['rt_off'] + 8 * (h['rt_clusters'] * cs // 8 - 1), '>Q', 0)
    with open(p, 'r+b') as f:
        f.seek(h['rt_off'])
        f.write(bytes(8))
    ref_path, our_path, r = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        p, '-r', 'all')
    assert r.rc == 0, r
    same_after(ref_qemu_img, ref_path, our_path)
    assert open(ref_path, 'rb').read() == open(our_path, 'rb').read()


CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), 'fuzz', 'corpus', 'image')


# The reference's check -r opens an image with persistent bitmaps
# read-write and rewrites its header from a state without the snapshots
# it skipped reading: the snapshot table is lost.  We keep it.
REF_DROPS_SNAPSHOTS = {'qcow2-snapshot-bitmap.img'}
# A refcount block two billion clusters past the end: the reference grows
# the file to 1 TB, counts 2^31 clusters in 4 GB of memory for over a
# minute; we stop once the file would outgrow 2^28 clusters (below).
GROWS_FAR = 'qcow2-repair-grows-file-far.img'


@pytest.mark.parametrize('name', sorted(
    n for n in os.listdir(CORPUS)
    if n.startswith('qcow2-') and
    n not in REF_DROPS_SNAPSHOTS | {GROWS_FAR}))
def test_repair_fuzz_corpus(tmp_path, ref_qemu_img, our_qemu_img, name):
    """Hostile images of the fuzz corpus: -r all does what the reference
    does to them, output and file alike."""
    src = os.path.join(CORPUS, name)
    ref_path, our_path, _ = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        src, '-f', 'qcow2', '-r', 'all')
    assert open(ref_path, 'rb').read() == open(our_path, 'rb').read()


def test_repair_keeps_snapshots_with_bitmaps(tmp_path, ref_qemu_img,
                                             our_qemu_img):
    p = str(tmp_path / 'sb.qcow2')
    shutil.copy(os.path.join(CORPUS, 'qcow2-snapshot-bitmap.img'), p)
    r = run([our_qemu_img, 'check', '-f', 'qcow2', '-r', 'all', p])
    assert r.rc == 0, r
    assert hdr(p)['nb_snapshots'] == 1
    c = run([ref_qemu_img, 'check', p])
    assert c.rc == 0, c


@pytest.mark.parametrize('mode', ['leaks', 'all'])
def test_repair_l1_past_eof(tmp_path, ref_qemu_img, ref_qemu_io,
                            our_qemu_img, mode):
    """An active L1 table grown past the end of the file is not counted:
    its cluster is a leak, freed (and discarded) by -r leaks, so the
    second check reads the table from the file as zeroes; -r all then
    trips over the L1 table when it rewrites an L2 table, and the node
    breaks with its refcount repairs unwritten.  Both as the reference."""
    p = str(tmp_path / 'g.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', p,
                '64M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 0 0 256k', p]).rc == 0
    wr(p, 36, '>I', 73728)
    ref_path, our_path, _ = repair_both(tmp_path, ref_qemu_img, our_qemu_img,
                                        p, '-r', mode)
    assert open(ref_path, 'rb').read() == open(our_path, 'rb').read()


def test_repair_refblock_far_past_eof(tmp_path, our_qemu_img):
    """Repair may grow the file, but not beyond what its counts can
    follow: the check stops, an internal error, quickly."""
    p = str(tmp_path / 'far.qcow2')
    shutil.copy(os.path.join(CORPUS, GROWS_FAR), p)
    r = run([our_qemu_img, 'check', '-f', 'qcow2', '-r', 'all', p],
            timeout=20)
    assert r.rc == 1 and r.out == '', r
    assert r.err.endswith('Repairing refcount block 2 is outside image\n'
                          'qemu-img: Check failed: Cannot allocate memory\n')


@pytest.mark.parametrize('mode', ['leaks', 'all'])
def test_repair_keeps_snapshots_of_images_with_bitmaps(tmp_path, strata_img,
                                                       ref_qemu_img,
                                                       ref_qemu_io, mode):
    # A deliberate difference.  The reference's check-mode open skips
    # the snapshot table (nb_snapshots 0 in memory); marking the bitmaps
    # in use on a read-write open rewrites the header from memory, so
    # its check -r drops every snapshot and then repairs their clusters
    # as leaks (fuzz corpus 0016d747...: '6 leaked clusters').  Ours
    # keeps them: the active data and the snapshots survive, and the
    # reference finds the image clean.
    src = str(tmp_path / 'src.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', src,
                '1M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 1 0 64k', src]).rc == 0
    assert run([ref_qemu_img, 'snapshot', '-c', 's1', src]).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 2 0 64k', src]).rc == 0
    assert run([ref_qemu_img, 'bitmap', '--add', src, 'b0']).rc == 0
    ref, our = str(tmp_path / 'ref.qcow2'), str(tmp_path / 'our.qcow2')
    shutil.copy(src, ref)
    shutil.copy(src, our)
    r = run([ref_qemu_img, 'check', '-r', mode, ref])
    assert 'leaked clusters' in r.out and 's1' not in \
        run([ref_qemu_img, 'snapshot', '-l', ref]).out
    o = run([strata_img, 'check', '-r', mode, our])
    assert (o.rc, o.err) == (0, '')
    assert o.out.startswith('No errors were found on the image.')
    assert run([ref_qemu_img, 'check', our]).rc == 0
    assert 's1' in run([ref_qemu_img, 'snapshot', '-l', our]).out
    assert run([ref_qemu_img, 'compare', src, our]).rc == 0
    assert run([ref_qemu_img, 'compare', ref, our]).rc == 0
    assert 'b0' in run([ref_qemu_img, 'info', our]).out


def test_corrupt_bit_rewrites_the_header_cluster(tmp_path, our_qemu_img,
                                                 ref_qemu_img):
    # fuzz corpus image with bytes past the header extensions: the
    # repair's overlap refusal marks it corrupt, and the reference writes
    # the whole header cluster for that (the bytes become zeroes), not
    # only the feature bits; both copies end byte for byte the same
    src = os.path.join(os.path.dirname(__file__), '..', 'fuzz', 'corpus',
                       'image', '0115a32067c4025197385484b645aa13904ada27')
    res = []
    for who, tool in (('ref', ref_qemu_img), ('our', our_qemu_img)):
        d = tmp_path / who
        d.mkdir()
        shutil.copy(src, d / 'img.qcow2')
        r = run([tool, 'check', '-r', 'all', 'img.qcow2'], cwd=d)
        res.append((r.rc, r.out, r.err, (d / 'img.qcow2').read_bytes()))
    assert res[1] == res[0]
