"""commit copies the overlay's data into the base with copy offload
(copy_file_range below both qcow2 layers) and falls back to reads and
writes where it cannot (data in an intermediate image).  The committed
base reads as the reference's, passes its check, and allocates the same
guest ranges; where strace exists the offload is seen to be used."""
import json
import os
import time

import pytest

from conftest import run
from test_convert_copy_offload import copy_calls, shm_dir  # noqa: F401


SIZE = '8M'


def qio(ref_io, path, *cmds):
    args = []
    for c in cmds:
        args += ['-c', c]
    assert run([ref_io, *args, path]).rc == 0


def chain(ref_img, ref_io, d, tag, top_opts, mid=False):
    """base (64 KiB clusters, partly written) <- [mid] <- top."""
    base = os.path.join(d, tag + '-base.qcow2')
    assert run([ref_img, 'create', '-q', '-f', 'qcow2', base, SIZE]).rc == 0
    qio(ref_io, base, 'write -P 0x11 0 2M', 'write -P 0x12 5M 1M')
    below = base
    if mid:
        below = os.path.join(d, tag + '-mid.qcow2')
        assert run([ref_img, 'create', '-q', '-f', 'qcow2', '-b', base,
                    '-F', 'qcow2', below]).rc == 0
        qio(ref_io, below, 'write -P 0x33 3M 512k', 'write -P 0x34 100k 8k')
    top = os.path.join(d, tag + '-top.qcow2')
    assert run([ref_img, 'create', '-q', '-f', 'qcow2', '-o', top_opts,
                '-b', below, '-F', 'qcow2', top]).rc == 0
    # 4 KiB pieces inside the base's 64 KiB clusters: written in place
    # where the base has data, allocated with copy-on-write where not
    qio(ref_io, top, 'write -P 0x21 4k 8k', 'write -P 0x22 1M 1100k',
        'write -P 0x23 4100k 4k', 'write -z 5M 64k', 'write -P 0x24 7M 1M',
        'write -P 0x25 3300k 20k')
    return base, top


def allocation(ref_img, path):
    """The map without host offsets (worker order may place clusters
    differently)."""
    out = run([ref_img, 'map', '--output=json', path]).out
    merged = []
    for e in json.loads(out):
        e = {k: v for k, v in e.items() if k != 'offset'}
        last = merged[-1] if merged else None
        if last and all(last[k] == e[k] for k in e
                        if k not in ('start', 'length')):
            last['length'] += e['length']
        else:
            merged.append(e)
    return merged


def commit_both(strata_img, ref_img, ref_io, d, top_opts, mid, args=()):
    bases = []
    for tag, tool in (('r', ref_img), ('s', strata_img)):
        base, top = chain(ref_img, ref_io, d, tag, top_opts, mid)
        argv = [tool, 'commit', '-q', *args]
        if mid:
            argv += ['-b', base]
        n = copy_calls(argv + [top])
        bases.append((base, n))
    (rb, _), (sb, n) = bases
    assert run([ref_img, 'compare', rb, sb]).rc == 0
    assert run([ref_img, 'check', sb]).rc == 0
    assert allocation(ref_img, sb) == allocation(ref_img, rb)
    return n


@pytest.mark.parametrize('top_opts', ['cluster_size=65536',
                                      'cluster_size=4096',
                                      'extended_l2=on'])
def test_commit_uses_copy_offload(shm_dir, strata_img, ref_qemu_img,
                                  ref_qemu_io, top_opts):
    n = commit_both(strata_img, ref_qemu_img, ref_qemu_io, shm_dir,
                    top_opts, False)
    assert n is None or n > 0, 'no copy offload'


def three_layers(ref_img, ref_io, d, tag, mid_size):
    """base (8 MiB, full) <- mid (@mid_size, data at 1-2 MiB) <- top
    (8 MiB, data at 3 MiB): the first data to commit is the mid's."""
    base = os.path.join(d, tag + '-base.qcow2')
    mid = os.path.join(d, tag + '-mid.qcow2')
    top = os.path.join(d, tag + '-top.qcow2')
    assert run([ref_img, 'create', '-q', '-f', 'qcow2', base, '8M']).rc == 0
    qio(ref_io, base, 'write -P 0x11 0 8M')
    assert run([ref_img, 'create', '-q', '-f', 'qcow2', '-b', base,
                '-F', 'qcow2', mid, mid_size]).rc == 0
    qio(ref_io, mid, 'write -P 0x33 1M 1M')
    assert run([ref_img, 'create', '-q', '-f', 'qcow2', '-b', mid,
                '-F', 'qcow2', top, '8M']).rc == 0
    qio(ref_io, top, 'write -P 0x44 3M 64k')
    return base, top


@pytest.mark.parametrize('mid_size', ['8M', '2560k'])
def test_commit_through_intermediate(shm_dir, strata_img, ref_qemu_img,
                                     ref_qemu_io, mid_size):
    """Data in an intermediate image: the overlay forwards the copy to
    its backing node, which copies its own clusters.  A shorter
    intermediate reads as zeroes past its end, committed as the
    reference does."""
    outs = []
    for tag, tool in (('r', ref_qemu_img), ('s', strata_img)):
        base, top = three_layers(ref_qemu_img, ref_qemu_io, shm_dir, tag,
                                 mid_size)
        n = copy_calls([tool, 'commit', '-q', '-b', base, top])
        outs.append(base)
    assert n is None or n > 0, 'no copy offload'
    assert run([ref_qemu_img, 'compare', *outs]).rc == 0
    assert run([ref_qemu_img, 'check', outs[1]]).rc == 0


def test_commit_rate_limited_offload(shm_dir, strata_img, ref_qemu_img,
                                     ref_qemu_io):
    """-r still paces the offloaded chunks: about 2.4 MiB to copy at
    4 MiB/s takes over a third of a second."""
    base, top = chain(ref_qemu_img, ref_qemu_io, shm_dir, 's',
                      'cluster_size=65536')
    t0 = time.monotonic()
    n = copy_calls([strata_img, 'commit', '-q', '-r', '4M', top])
    assert time.monotonic() - t0 > 0.35
    assert n is None or n > 0
    assert run([ref_qemu_img, 'check', base]).rc == 0


def test_commit_offload_marks_base_bitmaps(shm_dir, strata_img, ref_qemu_img,
                                           ref_qemu_io):
    """Offloaded copies are writes to the base: its enabled persistent
    bitmap gets the same dirty granules as with the reference.  (The
    overlay has the base's cluster size: the reference copies whole
    base clusters where the overlay allocates less, we copy less.)"""
    from test_bitmaps import bitmaps_of
    bases = []
    for tag, tool in (('r', ref_qemu_img), ('s', strata_img)):
        base, top = chain(ref_qemu_img, ref_qemu_io, shm_dir, tag,
                          'cluster_size=65536')
        assert run([ref_qemu_img, 'bitmap', '--add', '-g', '16k', base,
                    'b0']).rc == 0
        n = copy_calls([tool, 'commit', '-q', top])
        assert tool != strata_img or n is None or n > 0
        bases.append(base)
    r, s = (bitmaps_of(b) for b in bases)
    assert r['b0'][2], 'nothing marked'
    assert s == r
