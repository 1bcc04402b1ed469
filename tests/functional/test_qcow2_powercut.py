"""Host crashes under qcow2: the crash-sim filter between the qcow2
driver and its file cuts the power at a chosen flush boundary (or
between two flushes), dropping every change the file got since the last
completed flush, or a seeded random subset of them as a disk's volatile
cache may.  Unlike a SIGKILL this loses writes the kernel already held,
so the qcow2 ordering rules (refcounts before the L2 entries that use
them, L2 before L1, data before the metadata that points at it, the
header last) are what keeps the image consistent.

Workloads as in test_qcow2_crash: strata-io sessions of random plain,
partial, compressed, zero and discard writes (sequential and
concurrent), refcount growth, convert to qcow2, resize.  After each cut
the reference qemu-img check must find no corruption (leaks are
allowed) and what a completed flush covered must read back (reference
qemu-io).  The default run samples crash points; STRATA_SLOW=1 runs every
flush boundary of every session (at most 250 per session, spread)."""
import os
import random

import pytest

from conftest import run
import test_qcow2_crash
from test_qcow2_crash import (BACKING_BYTE, KiB, MiB, SEED, SIZE, SLOW,
                              aio_script, completed_commands, durable_model,
                              grow_script, make_target, random_script,
                              ref_check, ref_verify, repair_lazy)

CRASH_EXIT = 86             # crash-sim's exit status after the power cut
slow = pytest.mark.skipif(not SLOW, reason='long variant: set STRATA_SLOW=1')


def target(img, **opts):
    """--image-opts for qcow2 over crash-sim over the file @img."""
    extra = ''.join(f',file.{k.replace("_", "-")}={v}' for k, v in opts.items())
    return f'driver=qcow2,file.driver=crash-sim{extra},file.file.filename={img}'


def counts(err):
    """(changes, flushes) from crash-sim's report=on line."""
    line = [x for x in err.splitlines() if x.startswith('crash-sim: no power cut')]
    assert line, err
    words = line[0].replace('(', ' ').split()
    return int(words[4]), int(words[6])


SLOW_MAX_POINTS = 250


def crash_points(rng, total, default_n):
    """A spread sample of range(@total): @default_n points, or with
    @default_n None (slow) every point up to SLOW_MAX_POINTS."""
    if default_n is None:
        default_n = SLOW_MAX_POINTS
    if total <= default_n:
        return list(range(total))
    step = total / default_n
    return sorted({min(total - 1, int(i * step + rng.uniform(0, step)))
                   for i in range(default_n)})


def check_clean(ref_qemu_img, img, d, lazy):
    if lazy:
        repair_lazy(ref_qemu_img, img, d)
    return ref_check(ref_qemu_img, img, d)


# ---- strata-io sessions ----

VARIANTS = [
    # name, create options, backing
    ('plain', 'cluster_size=64k', False),
    ('lazy', 'cluster_size=64k,lazy_refcounts=on', False),
    ('small-backing', 'cluster_size=4k', True),
    ('v2', 'compat=0.10,cluster_size=16k', False),
    ('refcount1', 'cluster_size=16k,refcount_bits=1', False),
    ('refcount64-backing', 'cluster_size=64k,refcount_bits=64', True),
    ('aio', 'cluster_size=64k', False),
    ('aio-small-backing', 'cluster_size=4k', True),
    ('grow-tiny-rc64', 'cluster_size=512,refcount_bits=64', False),
]


def session_ops(name, opts, rng):
    size_opt = opts.split('cluster_size=')[1].split(',')[0]
    cluster = int(size_opt[:-1]) * KiB if size_opt.endswith('k') else int(size_opt)
    script = (aio_script if name.startswith('aio') else
              grow_script if name.startswith('grow') else random_script)
    ops = script(rng, cluster, 6, 8) if script is random_script else \
        script(rng, cluster)
    if 'compat=0.10' in opts:       # v2: no zero clusters, no discard
        ops = [(c.replace('-u ', ''), e) if not c.startswith('discard') else
               (c.replace('discard', 'write -z'), e) for c, e in ops]
    return ops


def io_session(strata_io, ops, d, **crash):
    argv = [strata_io, '-t', 'writeback']
    for cmd, _ in ops:
        argv += ['-c', cmd]
    return run(argv + ['--image-opts', target('img.qcow2', **crash)], cwd=d)


def io_cut(variant, d, tools, ops, **crash):
    """One session cut by @crash, then the reference's verdicts."""
    strata_img, strata_io, ref_qemu_img, ref_qemu_io = tools
    name, opts, backing = variant
    make_target(strata_img, ref_qemu_img, ref_qemu_io, d, opts, backing)
    r = io_session(strata_io, ops, d, **crash)
    assert r.rc in (0, CRASH_EXIT), r
    assert 'error' not in r.out.lower(), r
    model = durable_model(ops, completed_commands(r.out),
                          BACKING_BYTE if backing else 0)
    check_clean(ref_qemu_img, 'img.qcow2', d, 'lazy_refcounts=on' in opts)
    ref_verify(ref_qemu_io, 'img.qcow2', model, d)
    return r


def io_powercuts(variant, d, tools, default_n):
    name, opts, backing = variant
    rng = random.Random(f'{SEED}-powercut-{name}')
    ops = session_ops(name, opts, rng)
    r = io_cut(variant, d, tools, ops, report='on')
    assert r.rc == 0, r
    changes, flushes = counts(r.err)
    assert flushes > 2, r.err
    # every (sampled) flush boundary, everything unflushed lost
    for n in crash_points(rng, flushes, default_n):
        r = io_cut(variant, d, tools, ops, after_flushes=n)
        # concurrent requests may take another path each run
        assert r.rc == CRASH_EXIT or name.startswith('aio'), r
    # between flushes, a random part of the unflushed changes kept; not
    # with lazy refcounts: there (as in the reference) an L2 table may
    # reach the disk before the new data cluster it points at, without a
    # flush between them, and the dirty bit only covers refcounts
    if 'lazy_refcounts=on' in opts:
        return
    for n in crash_points(rng, changes, default_n):
        r = io_cut(variant, d, tools, ops, after_writes=n, drop='random',
                   seed=rng.randrange(1 << 30))
        assert r.rc == CRASH_EXIT or name.startswith('aio'), r


@pytest.fixture
def tools(strata_img, strata_io, ref_qemu_img, ref_qemu_io):
    return strata_img, strata_io, ref_qemu_img, ref_qemu_io


@pytest.mark.parametrize('variant', VARIANTS, ids=[v[0] for v in VARIANTS])
def test_io_powercut(variant, tmp_path, tools):
    io_powercuts(variant, str(tmp_path), tools, 5)


@pytest.mark.slow
@slow
@pytest.mark.parametrize('variant', VARIANTS, ids=[v[0] for v in VARIANTS])
def test_io_powercut_every_flush(variant, tmp_path, tools):
    io_powercuts(variant, str(tmp_path), tools, None)


# ---- the filter itself ----

def raw_target(img, **opts):
    return target(img, **opts).replace('driver=qcow2', 'driver=raw', 1)


RAW_OPS = ['write -P 0x11 0 64k', 'flush', 'write -P 0x22 1M 64k',
           'write -P 0x33 0 4k']


@pytest.mark.parametrize('seed', [None, 1, 2, 3, 4])
def test_crash_sim_drops_unflushed(seed, tmp_path, strata_io, ref_qemu_io):
    """Over raw (every write reaches the filter as it is): what the flush
    covered stays, what came after is lost (all of it, or with a seed
    each change on its own).  A test of the filter the others rely on."""
    d = str(tmp_path)
    with open(os.path.join(d, 'img.raw'), 'wb') as f:
        f.truncate(8 * MiB)
    crash = {'after_flushes': 1} if seed is None else \
        {'after_flushes': 1, 'drop': 'random', 'seed': seed}
    argv = [strata_io]
    for cmd in RAW_OPS:
        argv += ['-c', cmd]
    r = run(argv + ['--image-opts', raw_target('img.raw', **crash)], cwd=d)
    assert r.rc == CRASH_EXIT and 'crash-sim: power cut before a flush' in r.err, r
    kept = int(r.err.split(' kept')[0].split()[-1])
    with open(os.path.join(d, 'img.raw'), 'rb') as f:
        data = f.read()
    second = data[MiB:MiB + 64 * KiB]
    third = data[:4 * KiB]
    assert data[4 * KiB:64 * KiB] == b'\x11' * (60 * KiB)
    assert second in (b'\x22' * (64 * KiB), bytes(64 * KiB))
    assert third in (b'\x33' * (4 * KiB), b'\x11' * (4 * KiB))
    assert kept == (second[0] == 0x22) + (third[0] == 0x33)
    if seed is None:
        assert kept == 0


def test_crash_sim_fail_mode(tmp_path, strata_io):
    """on-crash=fail: the power stays off, every request fails."""
    d = str(tmp_path)
    with open(os.path.join(d, 'img.raw'), 'wb') as f:
        f.truncate(8 * MiB)
    argv = [strata_io]
    for cmd in RAW_OPS[:3] + ['read 0 4k']:
        argv += ['-c', cmd]
    r = run(argv + ['--image-opts',
                    raw_target('img.raw', after_writes=1, on_crash='fail')], cwd=d)
    assert r.rc == 1, r
    assert 'write failed: Input/output error' in r.out, r
    assert 'read failed: Input/output error' in r.out, r
    with open(os.path.join(d, 'img.raw'), 'rb') as f:
        assert f.read(64 * KiB) == b'\x11' * (64 * KiB)


def test_crash_sim_bad_option(tmp_path, strata_io):
    open(os.path.join(str(tmp_path), 'x.qcow2'), 'wb').close()
    r = run([strata_io, '-c', 'read 0 512', '--image-opts',
             target('x.qcow2', drop='some')], cwd=str(tmp_path))
    assert r.rc == 1 and "Parameter 'drop' expects 'random' or 'all'" in r.err, r


def test_crash_sim_not_listed(strata_img):
    """A test device: usable when named, never offered in help."""
    r = run([strata_img, '--help'])
    assert 'crash-sim' not in r.out


# ---- convert ----

def make_source(d, rng, mib=8):
    return test_qcow2_crash.make_source(d, rng, mib, 256 * KiB)


def convert_cut(d, tools, create_opts, extra, **crash):
    strata_img, _, ref_qemu_img, _ = tools
    r = run([strata_img, 'create', '-q', '-f', 'qcow2', '-o', create_opts,
             'out.qcow2', str(8 * MiB)], cwd=d)
    assert r.rc == 0, r
    # -t writeback: convert's default cache=unsafe never flushes, so it
    # promises nothing about a power cut (as the reference's)
    r = run([strata_img, 'convert', '-t', 'writeback', '-n'] + extra +
            ['--target-image-opts', 'src.raw', target('out.qcow2', **crash)], cwd=d)
    assert r.rc in (0, CRASH_EXIT), r
    ref_check(ref_qemu_img, 'out.qcow2', d)
    return r


CONVERTS = [('plain', 'cluster_size=64k', []),
            ('compressed', 'cluster_size=64k', ['-c']),
            ('zstd-4k', 'cluster_size=4k,compression_type=zstd', ['-c']),
            ('4k-rc64', 'cluster_size=4k,refcount_bits=64', [])]


def convert_powercuts(case, d, tools, default_n):
    name, create_opts, extra = case
    rng = random.Random(f'{SEED}-powercut-convert-{name}')
    make_source(d, rng)
    r = convert_cut(d, tools, create_opts, extra, report='on')
    assert r.rc == 0, r
    r2 = run([tools[2], 'compare', 'src.raw', 'out.qcow2'], cwd=d)
    assert r2.rc == 0, r2
    changes, flushes = counts(r.err)
    for n in crash_points(rng, flushes, default_n):
        r = convert_cut(d, tools, create_opts, extra, after_flushes=n)
        assert r.rc == CRASH_EXIT, r
    for n in crash_points(rng, changes, default_n):
        r = convert_cut(d, tools, create_opts, extra, after_writes=n,
                        drop='random', seed=rng.randrange(1 << 30))
        assert r.rc == CRASH_EXIT, r


@pytest.mark.parametrize('case', CONVERTS, ids=[c[0] for c in CONVERTS])
def test_convert_powercut(case, tmp_path, tools):
    convert_powercuts(case, str(tmp_path), tools, 4)


@pytest.mark.slow
@slow
@pytest.mark.parametrize('case', CONVERTS, ids=[c[0] for c in CONVERTS])
def test_convert_powercut_every_flush(case, tmp_path, tools):
    convert_powercuts(case, str(tmp_path), tools, None)


# ---- resize ----

RESIZES = [
    # name, create options, new size, resize options
    ('grow-l1', 'cluster_size=512', '64M', []),
    ('grow-rc64', 'cluster_size=512,refcount_bits=64', '48M', []),
    ('grow-prealloc', 'cluster_size=4k', '24M', ['--preallocation=metadata']),
    ('shrink', 'cluster_size=4k', '2M', ['--shrink']),
]


def resize_cut(d, tools, case, **crash):
    """Data at 0..3M (flushed by the reference's qemu-io before the
    resize), then the resize cut by @crash.  The old data must stay."""
    strata_img, _, ref_qemu_img, ref_qemu_io = tools
    _, create_opts, size, extra = case
    r = run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o', create_opts,
             'img.qcow2', '4M'], cwd=d)
    assert r.rc == 0, r
    r = run([ref_qemu_io, '-c', 'write -P 0x5a 0 1M', '-c', 'write -P 0x5b 1M 1M',
             '-c', 'write -z 2M 512k', 'img.qcow2'], cwd=d)
    assert r.rc == 0, r
    r = run([strata_img, 'resize'] + extra +
            ['--image-opts', target('img.qcow2', **crash), size], cwd=d)
    assert r.rc in (0, CRASH_EXIT), r
    ref_check(ref_qemu_img, 'img.qcow2', d)
    reads = ['-c', 'read -P 0x5a 0 1M', '-c', 'read -P 0x5b 1M 1M']
    if '--shrink' not in extra:
        reads += ['-c', 'read -P 0 2M 512k']
    r2 = run([ref_qemu_io, '-r'] + reads + ['img.qcow2'], cwd=d)
    assert r2.rc == 0 and 'verification failed' not in r2.out, r2
    return r


def resize_powercuts(case, d, tools, default_n):
    rng = random.Random(f'{SEED}-powercut-resize-{case[0]}')
    r = resize_cut(d, tools, case, report='on')
    assert r.rc == 0, r
    changes, flushes = counts(r.err)
    for n in crash_points(rng, flushes, default_n):
        r = resize_cut(d, tools, case, after_flushes=n)
        assert r.rc == CRASH_EXIT, r
    for n in crash_points(rng, changes, default_n):
        resize_cut(d, tools, case, after_writes=n, drop='random',
                   seed=rng.randrange(1 << 30))


@pytest.mark.parametrize('case', RESIZES, ids=[c[0] for c in RESIZES])
def test_resize_powercut(case, tmp_path, tools):
    resize_powercuts(case, str(tmp_path), tools, 4)


@pytest.mark.slow
@slow
@pytest.mark.parametrize('case', RESIZES, ids=[c[0] for c in RESIZES])
def test_resize_powercut_every_flush(case, tmp_path, tools):
    resize_powercuts(case, str(tmp_path), tools, None)
