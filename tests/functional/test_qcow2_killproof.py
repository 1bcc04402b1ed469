"""SIGKILL proof at scale: many short runs killed at random (seeded)
moments, each followed by the reference qemu-img check (no corruption;
leaked clusters allowed) and a reference read of everything a completed
flush covered.  Workloads: strata-io sessions of random plain, partial,
compressed, zero and discard writes; convert to qcow2 (plain and
compressed); resize (grow with metadata preallocation, shrink).

The default run does a few hundred iterations in all (about half a
minute); STRATA_SLOW=1 runs well over 1,000 (marked slow).
test_qcow2_crash keeps the longer sessions and the cache=none variants."""
import json
import os
import random
import shutil
import time

import pytest

from conftest import run
from test_qcow2_crash import (KiB, MiB, SEED, SLOW, check_after_kill,
                              completed_commands, durable_model, random_op,
                              ref_check, ref_verify, repair_lazy, run_killed)
import test_qcow2_crash

SIZE = test_qcow2_crash.SIZE            # the model's image size (8 MiB)
slow = pytest.mark.skipif(not SLOW, reason='long variant: set STRATA_SLOW=1')


def short_script(rng, cluster, blocks=3, per_block=6):
    """A few blocks of random commands (any kind), each ended by a flush."""
    fresh = list(range((SIZE - test_qcow2_crash.COMPRESSED_AREA) // cluster,
                       SIZE // cluster))
    rng.shuffle(fresh)
    ops = []
    for _ in range(blocks):
        ops += [random_op(rng, cluster, fresh) for _ in range(per_block)]
        ops.append(('flush', None))
    return ops


def template(d, strata_img, opts):
    """A fresh image made once and copied for every iteration."""
    path = os.path.join(d, f'template-{opts}.qcow2')
    if not os.path.exists(path):
        r = run([strata_img, 'create', '-q', '-f', 'qcow2', '-o', opts, path,
                 str(SIZE)])
        assert r.rc == 0, r
    return path


def fresh_copy(src, d, name):
    dst = os.path.join(d, name)
    if os.path.exists(dst):
        os.unlink(dst)
    shutil.copyfile(src, dst)
    return dst


IO_CASES = [
    # name, create options, cache
    ('io-64k', 'cluster_size=64k', 'writeback'),
    ('io-4k-rc1', 'cluster_size=4k,refcount_bits=1', 'writeback'),
    ('io-16k-lazy', 'cluster_size=16k,lazy_refcounts=on', 'writeback'),
    ('io-512-rc64', 'cluster_size=512,refcount_bits=64', 'writethrough'),
]


def io_iterations(case, n, d, strata_img, strata_io, ref_qemu_img, ref_qemu_io):
    name, opts, cache = case
    rng = random.Random(f'{SEED}-killproof-{name}')
    cluster = {'64k': 64 * KiB, '4k': 4 * KiB, '16k': 16 * KiB,
               '512': 512}[opts.split('cluster_size=')[1].split(',')[0]]
    tpl = template(d, strata_img, opts)
    full = None
    for i in range(n + 1):
        ops = short_script(rng, cluster)
        fresh_copy(tpl, d, 'img.qcow2')
        argv = [strata_io, '-f', 'qcow2', '-t', cache]
        for cmd, _ in ops:
            argv += ['-c', cmd]
        t0 = time.monotonic()
        out, rc = run_killed(argv + ['img.qcow2'],
                             None if full is None else rng.uniform(0, full), d)
        if full is None:            # the first run is not killed: timing
            assert rc == 0, out
            full = time.monotonic() - t0
        assert 'error' not in out.lower(), out[-2000:]
        if 'lazy_refcounts=on' in opts:
            repair_lazy(ref_qemu_img, 'img.qcow2', d)
        ref_check(ref_qemu_img, 'img.qcow2', d)
        ref_verify(ref_qemu_io, 'img.qcow2',
                   durable_model(ops, completed_commands(out), 0), d)


@pytest.mark.parametrize('case', IO_CASES, ids=[c[0] for c in IO_CASES])
def test_io_kill(case, tmp_path, strata_img, strata_io, ref_qemu_img, ref_qemu_io):
    io_iterations(case, 50, str(tmp_path), strata_img, strata_io,
                  ref_qemu_img, ref_qemu_io)


@pytest.mark.slow
@slow
@pytest.mark.parametrize('case', IO_CASES, ids=[c[0] for c in IO_CASES])
def test_io_kill_long(case, tmp_path, strata_img, strata_io, ref_qemu_img,
                      ref_qemu_io):
    io_iterations(case, 220, str(tmp_path), strata_img, strata_io,
                  ref_qemu_img, ref_qemu_io)


# ---- convert ----

def make_source(d, rng, mib=6):
    return test_qcow2_crash.make_source(d, rng, mib, 256 * KiB)


CONVERTS = [('plain-64k', ['-o', 'cluster_size=64k']),
            ('compressed', ['-c']),
            ('plain-4k-rc64', ['-o', 'cluster_size=4k,refcount_bits=64'])]


def convert_iterations(case, n, d, strata_img, ref_qemu_img):
    name, extra = case
    rng = random.Random(f'{SEED}-killproof-convert-{name}')
    make_source(d, rng)
    argv = [strata_img, 'convert', '-O', 'qcow2'] + extra + ['src.raw', 'out.qcow2']
    path = os.path.join(d, 'out.qcow2')
    t0 = time.monotonic()
    out, rc = run_killed(argv, None, d)
    full = time.monotonic() - t0
    assert rc == 0, out
    r = run([ref_qemu_img, 'compare', 'src.raw', 'out.qcow2'], cwd=d)
    assert r.rc == 0, r
    for _ in range(n):
        if os.path.exists(path):
            os.unlink(path)
        out, rc = run_killed(argv, rng.uniform(0, full), d)
        if not check_after_kill(ref_qemu_img, d):
            continue
        if rc == 0:             # finished: acknowledged, so all there
            r = run([ref_qemu_img, 'compare', 'src.raw', 'out.qcow2'], cwd=d)
            assert r.rc == 0, r


@pytest.mark.parametrize('case', CONVERTS, ids=[c[0] for c in CONVERTS])
def test_convert_kill(case, tmp_path, strata_img, ref_qemu_img):
    convert_iterations(case, 25, str(tmp_path), strata_img, ref_qemu_img)


@pytest.mark.slow
@slow
@pytest.mark.parametrize('case', CONVERTS, ids=[c[0] for c in CONVERTS])
def test_convert_kill_long(case, tmp_path, strata_img, ref_qemu_img):
    convert_iterations(case, 100, str(tmp_path), strata_img, ref_qemu_img)


# ---- resize ----

RESIZES = [
    # name, create options, new size, resize options
    ('grow-prealloc-512', 'cluster_size=512', '12M', ['--preallocation=metadata']),
    ('grow-rc64-512', 'cluster_size=512,refcount_bits=64', '1G', []),
    ('shrink-4k', 'cluster_size=4k', '2M', ['--shrink']),
]


def resize_iterations(case, n, d, strata_img, ref_qemu_img, ref_qemu_io):
    """Data at 0..2.5M written (and flushed, the writer exited) before
    the resize; the resize killed at random.  The data must stay and the
    size be the old or the new one."""
    name, opts, size, extra = case
    rng = random.Random(f'{SEED}-killproof-resize-{name}')
    tpl = os.path.join(d, 'template.qcow2')
    run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o', opts, tpl, '4M'])
    r = run([ref_qemu_io, '-c', 'write -P 0x5a 0 1M', '-c', 'write -P 0x5b 1M 1M',
             '-c', 'write -z 2M 512k', tpl])
    assert r.rc == 0, r
    argv = [strata_img, 'resize'] + extra + ['img.qcow2', size]
    fresh_copy(tpl, d, 'img.qcow2')
    t0 = time.monotonic()
    out, rc = run_killed(argv, None, d)
    full = time.monotonic() - t0
    assert rc == 0, out
    reads = ['-c', 'read -P 0x5a 0 1M', '-c', 'read -P 0x5b 1M 1M']
    for _ in range(n):
        fresh_copy(tpl, d, 'img.qcow2')
        out, rc = run_killed(argv, rng.uniform(0, full * 1.2), d)
        ref_check(ref_qemu_img, 'img.qcow2', d)
        r = run([ref_qemu_io, '-r'] + reads + ['img.qcow2'], cwd=d)
        assert r.rc == 0 and 'verification failed' not in r.out, r
        r = run([ref_qemu_img, 'info', '--output=json', 'img.qcow2'], cwd=d)
        assert r.rc == 0, r
        vsize = json.loads(r.out)['virtual-size']
        new = {'12M': 12 * MiB, '1G': 1 << 30, '2M': 2 * MiB}[size]
        assert vsize in ((4 * MiB, new) if rc != 0 else (new,)), (vsize, out)


@pytest.mark.parametrize('case', RESIZES, ids=[c[0] for c in RESIZES])
def test_resize_kill(case, tmp_path, strata_img, ref_qemu_img, ref_qemu_io):
    resize_iterations(case, 20, str(tmp_path), strata_img, ref_qemu_img,
                      ref_qemu_io)


@pytest.mark.slow
@slow
@pytest.mark.parametrize('case', RESIZES, ids=[c[0] for c in RESIZES])
def test_resize_kill_long(case, tmp_path, strata_img, ref_qemu_img, ref_qemu_io):
    resize_iterations(case, 80, str(tmp_path), strata_img, ref_qemu_img,
                      ref_qemu_io)


def test_resize_run_past_missing_refblocks(tmp_path, strata_img, ref_qemu_img):
    """A new L1 table longer than a refcount block covers (512-byte
    clusters, 64-bit refcounts) whose refcount block would land where no
    block counts yet: once an endless retry; now as the reference (the
    same file, clean)."""
    d = str(tmp_path)
    for name in ('ours.qcow2', 'ref.qcow2'):
        r = run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                 'cluster_size=512,refcount_bits=64', name, '4M'], cwd=d)
        assert r.rc == 0, r
    r = run([strata_img, 'resize', 'ours.qcow2', '256M'], cwd=d, timeout=30)
    assert r.rc == 0, r
    r = run([ref_qemu_img, 'resize', 'ref.qcow2', '256M'], cwd=d)
    assert r.rc == 0, r
    r = run([ref_qemu_img, 'check', 'ours.qcow2'], cwd=d)
    assert r.rc == 0, r
    assert os.path.getsize(os.path.join(d, 'ours.qcow2')) == \
        os.path.getsize(os.path.join(d, 'ref.qcow2'))
