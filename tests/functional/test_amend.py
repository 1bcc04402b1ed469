"""strata-img amend on qcow2 against the reference qemu-img amend.

Every scenario starts from one image written by the reference tools,
copied twice: the reference amends one copy, we amend the other.  After
each step both runs must agree (exit code, stdout with -p progress,
stderr), the reference's `info --output=json` of both images must be
equal (actual-size aside: it is the file system's business), the
reference `check` must find our image clean, and the reference `compare`
must find its guest content unchanged.  Then: EIO/ENOSPC injected with
blkdebug (the reference's messages, a consistent image); amend killed
with SIGKILL at random (seeded) moments (the reference `check` finds the
image consistent, leaks allowed, content unchanged, and a second amend
completes); garbled metadata (a clean failure, never a crash).

STRATA_SLOW=1 runs more kill and garbling iterations; STRATA_AMEND_SEED
changes the seed."""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import time

import pytest

from conftest import run, tempfile_dir
from test_qcow2_check import sanitized

SEED = int(os.environ.get('STRATA_AMEND_SEED', '20261207'))
SLOW = os.environ.get('STRATA_SLOW') == '1'

# Images, as reference qemu-img / qemu-io commands run in a fresh
# directory ("img" = qemu-img, "io" = qemu-io); the image is x.qcow2.
# 64 KiB clusters (the default): the reference takes seconds to change
# their refcount width (it visits every entry its table could address),
# so the refcount round trips use 4 KiB clusters (MIXED_4K).
MIXED = [
    ('img', 'create -f qcow2 x.qcow2 64M'),
    ('io', '-c "write -P 1 0 1M" -c "write -z 2M 1M" '
           '-c "write -c -P 3 4M 64k" -c "write -c -P 4 4160k 64k" '
           '-c "write -P 5 8M 64k" -c "write -z 8M 64k" '
           '-c "write -z -u 9M 64k" -c "write -P 7 20M 4k" x.qcow2'),
]
MIXED_4K = [('img', 'create -f qcow2 -o cluster_size=4k x.qcow2 64M'),
            MIXED[1]]
SMALL_CLUSTERS = [
    ('img', 'create -f qcow2 -o cluster_size=512 x.qcow2 8M'),
    ('io', '-c "write -P 1 0 1M" -c "write -z 2M 100k" '
           '-c "write -P 5 5M 512k" -c "write -z 5M 64k" '
           '-c "write -P 7 7M 4k" x.qcow2'),
]
BACKED = [
    ('img', 'create -f qcow2 b.qcow2 8M'),
    ('io', '-c "write -P 9 0 8M" b.qcow2'),
    ('img', 'create -f qcow2 -b b.qcow2 -F qcow2 x.qcow2'),
    ('io', '-c "write -P 1 0 1M" -c "write -z 0 256k" '
           '-c "write -z -u 512k 128k" -c "write -z 2M 1M" '
           '-c "write -c -P 2 4M 64k" x.qcow2'),
]
SNAPSHOT = [
    ('img', 'create -f qcow2 x.qcow2 8M'),
    ('io', '-c "write -P 1 0 1M" -c "write -z 2M 1M" x.qcow2'),
    ('img', 'snapshot -c s1 x.qcow2'),
    ('io', '-c "write -P 2 0 64k" -c "write -z -u 64k 64k" '
           '-c "write -z 4M 1M" x.qcow2'),
]
V2 = [
    ('img', 'create -f qcow2 -o compat=0.10,cluster_size=4k x.qcow2 8M'),
    ('io', '-c "write -P 1 0 1M" -c "write -c -P 2 2M 64k" x.qcow2'),
]
V2_SNAPSHOT = [
    ('img', 'create -f qcow2 -o compat=0.10 x.qcow2 32M'),
    ('io', '-c "write -P 42 24M 64k" x.qcow2'),
    ('img', 'snapshot -c foo x.qcow2'),
]
BIG_CLUSTERS = [
    ('img', 'create -f qcow2 -o cluster_size=2M x.qcow2 16M'),
    ('io', '-c "write -P 1 0 3M" -c "write -z 6M 2M" '
           '-c "write -c -P 3 10M 2M" x.qcow2'),
]
SCENARIOS = {'mixed': MIXED, 'mixed-4k': MIXED_4K,
             'big-clusters': BIG_CLUSTERS,
             'small-clusters': SMALL_CLUSTERS,
             'backed': BACKED, 'snapshot': SNAPSHOT, 'v2': V2,
             'v2-snapshot': V2_SNAPSHOT}


def build(tools, steps, cwd):
    for tool, args in steps:
        r = subprocess.run(f'{tools[tool]} {args}', shell=True, cwd=cwd,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (args, r.stderr)


@pytest.fixture
def ref_tools(ref_qemu_img, ref_qemu_io):
    return {'img': ref_qemu_img, 'io': ref_qemu_io}


@pytest.fixture
def work(tmp_path):
    return tmp_path


def prepare(tools, scenario, top):
    """base/ (kept as it was), ref/ and ours/ copies of the scenario."""
    base = top / 'base'
    base.mkdir()
    build(tools, SCENARIOS[scenario], base)
    for d in ('ref', 'ours'):
        shutil.copytree(base, top / d)
    return base


def info_json(ref_qemu_img, d):
    r = run([ref_qemu_img, 'info', '--output=json', 'x.qcow2'], cwd=d)
    assert r.rc == 0, r
    info = json.loads(r.out)
    info.pop('actual-size', None)
    for child in info.get('children', []):
        child['info'].pop('actual-size', None)
    return info


def amend_both(our_qemu_img, ref_qemu_img, top, args):
    """Amend ref/x.qcow2 with the reference, ours/x.qcow2 with ours; the
    results must agree.  Returns our result."""
    ref = run([ref_qemu_img, 'amend'] + args + ['x.qcow2'],
              cwd=top / 'ref')
    ours = run([our_qemu_img, 'amend'] + args + ['x.qcow2'],
               cwd=top / 'ours')
    assert (ours.rc, ours.out, ours.err) == (ref.rc, ref.out, ref.err), \
        f'args {args}\nref: {ref}\nours: {ours}'
    assert info_json(ref_qemu_img, top / 'ours') == \
        info_json(ref_qemu_img, top / 'ref')
    return ours


def assert_sound(ref_qemu_img, top, leaks_ok=False):
    """Reference check clean; guest content as in base/."""
    ours = str(top / 'ours' / 'x.qcow2')
    r = run([ref_qemu_img, 'check', ours])
    assert r.rc in ((0, 3) if leaks_ok else (0,)), r
    r = run([ref_qemu_img, 'compare', str(top / 'base' / 'x.qcow2'), ours])
    assert r.rc == 0, r


# ---- round trips ----

ROUND_TRIPS = [
    ('mixed', [['-o', 'compat=0.10'], ['-o', 'compat=1.1']]),
    ('mixed', [['-p', '-o', 'lazy_refcounts=on'],
               ['-o', 'lazy_refcounts=off,size=128M'],
               ['-p', '-o', 'compat=0.10,size=64M'], ['-o', 'compat=v3']]),
    ('mixed-4k', [['-o', 'refcount_bits=8'], ['-o', 'refcount_bits=64'],
                  ['-o', 'refcount_bits=16']]),
    ('mixed-4k', [['-p', '-o', 'refcount_bits=8,lazy_refcounts=on'],
                  ['-o', 'lazy_refcounts=off,refcount_bits=16'],
                  ['-p', '-o', 'compat=0.10']]),
    ('small-clusters', [['-o', 'refcount_bits=1'], ['-p', '-o',
                        'refcount_bits=16'], ['-o', 'refcount_bits=64'],
                        ['-p', '-o', 'refcount_bits=16,compat=0.10'],
                        ['-o', 'compat=v3']]),
    ('small-clusters', [['-o', 'refcount_bits=32,size=16M'],
                        ['-o', 'refcount_bits=16,size=8M']]),
    ('backed', [['-p', '-o', 'compat=0.10'], ['-o', 'compat=1.1']]),
    ('backed', [['-o', 'backing_file=b.qcow2,backing_fmt=qcow2'],
                ['-o', 'compat=0.10,size=8M']]),
    ('snapshot', [['-o', 'compat=0.10'], ['-o', 'compat=1.1']]),
    ('v2-snapshot', [['-o', 'compat=1.1,size=32M']]),
    ('v2', [['-p', '-o', 'compat=1.1,refcount_bits=8'],
            ['-o', 'refcount_bits=16,compat=0.10'], ['-o', 'compat=v3'],
            ['-o', 'lazy_refcounts=on'], ['-o', 'compat=v2']]),
]


@pytest.mark.parametrize('scenario,steps', ROUND_TRIPS,
                         ids=[f'{s}-{i}' for i, (s, _) in
                              enumerate(ROUND_TRIPS)])
def test_round_trip(our_qemu_img, ref_qemu_img, ref_tools, work, scenario,
                    steps):
    prepare(ref_tools, scenario, work)
    for args in steps:
        r = amend_both(our_qemu_img, ref_qemu_img, work, args)
        assert r.rc == 0, r
        assert_sound(ref_qemu_img, work)


def test_result_is_byte_identical(our_qemu_img, ref_qemu_img, ref_tools,
                                  work):
    """The same allocation order as the reference: the same file."""
    prepare(ref_tools, 'small-clusters', work)
    for args in (['-o', 'refcount_bits=2'], ['-o', 'refcount_bits=16'],
                 ['-o', 'compat=0.10']):
        amend_both(our_qemu_img, ref_qemu_img, work, args)
    with open(work / 'ref' / 'x.qcow2', 'rb') as a, \
            open(work / 'ours' / 'x.qcow2', 'rb') as b:
        assert a.read() == b.read()


def test_refcount_width_of_big_clusters(our_qemu_img, ref_qemu_img,
                                        ref_tools, work):
    """2 MiB clusters: a refcount block covers up to 2^24 clusters and
    the one-cluster table 2^18 blocks, nearly all absent.  The reference
    takes over a minute per width change there (it visits every entry
    the table could address), so ours is checked alone: the reference's
    check finds it clean and the guest data unchanged after each step
    (it once cleared every absent block's 2 MiB buffer: 3.6 s a step)."""
    prepare(ref_tools, 'big-clusters', work)
    for bits in (8, 1, 64, 16):
        r = run([our_qemu_img, 'amend', '-o', f'refcount_bits={bits}',
                 'x.qcow2'], cwd=work / 'ours', timeout=60)
        assert r.rc == 0, r
        assert_sound(ref_qemu_img, work)
        info = info_json(ref_qemu_img, work / 'ours')
        assert info['format-specific']['data']['refcount-bits'] == bits


def test_reference_reads_back_our_downgrade(our_qemu_img, ref_qemu_img,
                                            ref_qemu_io, ref_tools, work):
    """Zero clusters of a backed image still read as zeroes in v2."""
    prepare(ref_tools, 'backed', work)
    assert run([our_qemu_img, 'amend', '-o', 'compat=0.10', 'x.qcow2'],
               cwd=work / 'ours').rc == 0
    r = run([ref_qemu_io, '-c', 'read -P 0 0 256k', '-c',
             'read -P 0 2M 1M', '-c', 'read -P 9 1M 1M', 'x.qcow2'],
            cwd=work / 'ours')
    assert r.rc == 0 and 'Pattern verification failed' not in r.out, r


def test_downgrade_keeps_snapshot_data(our_qemu_img, ref_qemu_img,
                                       ref_tools, work):
    """A preallocated zero cluster the active L2 table shares with a
    snapshot (zeroed after the snapshot, without unmapping) gets a fresh
    zeroed cluster: the reference zeroes the shared one and so changes
    the snapshot (and leaves a refcount error); we keep both right."""
    steps = [step for step in SNAPSHOT]
    steps[-1] = ('io', '-c "write -z 64k 64k" x.qcow2')
    (work / 'base').mkdir()
    build(ref_tools, steps, work / 'base')
    shutil.copytree(work / 'base', work / 'ours')
    assert run([our_qemu_img, 'amend', '-o', 'compat=0.10', 'x.qcow2'],
               cwd=work / 'ours').rc == 0
    assert_sound(ref_qemu_img, work)
    for d in ('base', 'ours'):
        r = run([ref_qemu_img, 'convert', '-l', 's1', '-O', 'raw',
                 'x.qcow2', 's1.raw'], cwd=work / d)
        assert r.rc == 0, r
    with open(work / 'base' / 's1.raw', 'rb') as a, \
            open(work / 'ours' / 's1.raw', 'rb') as b:
        assert a.read() == b.read()


# ---- refusals and messages ----

ERRORS = [
    ('mixed-4k', ['-o', 'refcount_bits=1']),
    ('mixed', ['-o', 'cluster_size=4k']),
    ('mixed', ['-o', 'preallocation=full']),
    ('mixed', ['-o', 'encrypt.format=luks']),
    ('mixed', ['-o', 'foo=bar,cluster_size=4k']),
    ('mixed', ['-o', 'compat=0.9']),
    ('mixed', ['-o', 'refcount_bits=3,compat=0.9']),
    ('mixed', ['-o', 'refcount_bits=128']),
    ('mixed', ['-o', 'refcount_bits=-1']),
    ('mixed', ['-o', 'refcount_bits=abc']),
    ('mixed', ['-o', 'lazy_refcounts=x']),
    ('mixed', ['-o', 'size=1x']),
    ('mixed', ['-o', 'encrypt.state=active,compat=0.9']),
    ('mixed', ['-o', 'data_file=y.raw']),
    ('mixed', ['-o', 'data_file_raw=on']),
    ('mixed', ['-o', 'backing_file=b.qcow2']),
    ('mixed', ['-o', 'compat=0.10,refcount_bits=8']),
    ('mixed', ['-o', 'compat=0.10,lazy_refcounts=on']),
    ('mixed', ['-o', 'compat=', '-p']),
    ('backed', ['-o', 'backing_file=b.qcow2']),
    ('backed', ['-o', 'compat=0.10,backing_file=c.qcow2']),
    ('small-clusters', ['-o', 'refcount_bits=1,compat=0.10']),
    ('snapshot', ['-o', 'compat=0.10,size=16M']),
    ('v2-snapshot', ['-o', 'size=64M']),
    ('v2', ['-o', 'refcount_bits=8']),
    ('v2', ['-o', 'lazy_refcounts=on']),
]


@pytest.mark.parametrize('scenario,args', ERRORS,
                         ids=[' '.join(a) for _, a in ERRORS])
def test_refusal(our_qemu_img, ref_qemu_img, ref_tools, work, scenario,
                 args):
    prepare(ref_tools, scenario, work)
    r = amend_both(our_qemu_img, ref_qemu_img, work, args)
    assert r.rc == 1 and r.err, r
    assert_sound(ref_qemu_img, work)


FEATURE_REFUSALS = [
    ('create -f qcow2 -o extended_l2=on x.qcow2 8M', ['-o', 'compat=0.10']),
    ('create -f qcow2 -o data_file=x.raw x.qcow2 8M', ['-o', 'compat=0.10']),
    ('create -f qcow2 -o data_file=x.raw x.qcow2 8M',
     ['-o', 'data_file_raw=on']),
    ('create -f qcow2 -o data_file=x.raw,data_file_raw=on x.qcow2 8M',
     ['-o', 'data_file_raw=off']),
    ('create -f qcow2 -o data_file=x.raw x.qcow2 8M',
     ['-o', 'data_file=x.raw']),
    ('create -f qcow2 -o refcount_bits=1 x.qcow2 8M', ['-o', 'compat=0.10']),
    ('create -f qcow2 -o compression_type=zstd x.qcow2 8M',
     ['-o', 'compat=0.10']),
]


@pytest.mark.parametrize('create,args', FEATURE_REFUSALS,
                         ids=[c.split(' -o ')[1].split()[0] + ' ' +
                              ' '.join(a) for c, a in FEATURE_REFUSALS])
def test_features(our_qemu_img, ref_qemu_img, work, create, args):
    """What v2 cannot hold, and the data file options."""
    (work / 'base').mkdir()
    assert run([ref_qemu_img] + create.split(), cwd=work / 'base').rc == 0
    for d in ('ref', 'ours'):
        shutil.copytree(work / 'base', work / d)
    amend_both(our_qemu_img, ref_qemu_img, work, args)


def test_zstd_compressed_refuses_downgrade(our_qemu_img, ref_qemu_img,
                                           ref_qemu_io, work):
    (work / 'base').mkdir()
    assert run([ref_qemu_img, 'create', '-f', 'qcow2', '-o',
                'compression_type=zstd', 'x.qcow2', '8M'],
               cwd=work / 'base').rc == 0
    assert run([ref_qemu_io, '-c', 'write -c -P 1 0 64k', 'x.qcow2'],
               cwd=work / 'base').rc == 0
    for d in ('ref', 'ours'):
        shutil.copytree(work / 'base', work / d)
    r = amend_both(our_qemu_img, ref_qemu_img, work, ['-o', 'compat=0.10'])
    assert 'zstd' in r.err


@pytest.mark.parametrize('args', [
    ['-f', 'qcow2', '-o', 'help'], ['-o', 'help', 'x.qcow2'],
    ['-o', 'compat=1.1,help', 'x.qcow2'], ['-o', '?', '-f', 'qcow2'],
    ['-f', 'raw', '-o', 'compat=1.1', 'x.qcow2'],
    ['--image-opts', '-o', 'compat=0.10',
     'driver=qcow2,file.filename=x.qcow2'],
    ['--object', 'secret,id=s0,data=x', '-t', 'none', '-o', 'compat=0.10',
     'x.qcow2'],
    ['-q', '-p', '--force', '-o', 'compat=0.10', 'x.qcow2'],
    ['-o', 'compat=0.10', '-o', 'compat=1.1', 'x.qcow2'],
    ['-o', 'lazy_refcounts', 'x.qcow2'],
])
def test_command_line(our_qemu_img, ref_qemu_img, ref_tools, work, args):
    prepare(ref_tools, 'mixed', work)
    ref = run([ref_qemu_img, 'amend'] + args, cwd=work / 'ref')
    ours = run([our_qemu_img, 'amend'] + args, cwd=work / 'ours')
    assert (ours.rc, ours.out, ours.err) == (ref.rc, ref.out, ref.err), \
        f'ref: {ref}\nours: {ours}'
    assert info_json(ref_qemu_img, work / 'ours') == \
        info_json(ref_qemu_img, work / 'ref')
    assert_sound(ref_qemu_img, work)


# ---- I/O errors (blkdebug) during amend ----

FAULT_IMAGE = [
    ('img', 'create -f qcow2 -o cluster_size=4k x.qcow2 8M'),
    ('io', '-c "write -P 1 0 1M" -c "write -z 2M 1M" -c "write -z 1M 64k" '
           'x.qcow2'),
]
FAULTS = [(ev, once, errno, op)
          for ev in ('refblock_alloc', 'refblock_update_part', 'l2_update',
                     'cluster_alloc', 'pwritev_zero', 'write_aio')
          for once, errno in (('on', 5), ('off', 28))
          for op in ('refcount_bits=1', 'compat=0.10')]


@pytest.mark.parametrize('event,once,errno,op', FAULTS,
                         ids=['-'.join(map(str, f)) for f in FAULTS])
def test_fault(our_qemu_img, ref_qemu_img, ref_tools, work, event, once,
               errno, op):
    """The reference's message and exit code; a consistent image with its
    content unchanged."""
    (work / 'base').mkdir()
    build(ref_tools, FAULT_IMAGE, work / 'base')
    for d in ('ref', 'ours'):
        shutil.copytree(work / 'base', work / d)
    (work / 'bd.conf').write_text(
        f'[inject-error]\nevent = "{event}"\nerrno = "{errno}"\n'
        f'once = "{once}"\n')
    spec = ('driver=qcow2,file.driver=blkdebug,'
            f'file.config={work}/bd.conf,file.image.filename=x.qcow2')
    args = ['amend', '--image-opts', '-o', op, spec]
    ref = run([ref_qemu_img] + args, cwd=work / 'ref')
    ours = run([our_qemu_img] + args, cwd=work / 'ours')
    assert (ours.rc, ours.out, ours.err) == (ref.rc, ref.out, ref.err), \
        f'ref: {ref}\nours: {ours}'
    assert_sound(ref_qemu_img, work, leaks_ok=True)


# ---- SIGKILL during amend ----

KILL_STEPS = [
    ['-o', 'refcount_bits=64'], ['-o', 'refcount_bits=2'],
    ['-o', 'compat=0.10'], ['-o', 'refcount_bits=8,lazy_refcounts=on'],
]
KILL_IMAGE = [
    ('img', 'create -f qcow2 -o cluster_size=512 x.qcow2 16M'),
    ('io', '-c "write -P 1 0 4M" -c "write -z 1M 2M" '
           '-c "write -z -u 3M 512k" -c "write -P 3 8M 3M" '
           '-c "write -z 12M 1M" x.qcow2'),
]


@pytest.fixture
def disk_work():
    """On a real disk, so that flushes take the time they take."""
    d = tempfile_dir('/var/tmp')
    yield d
    shutil.rmtree(d, ignore_errors=True)


def timed_amend(our_qemu_img, args, path):
    start = time.monotonic()
    r = run([our_qemu_img, 'amend'] + args + [path])
    assert r.rc == 0, r
    return time.monotonic() - start


def kill_amend(our_qemu_img, args, path, delay):
    proc = subprocess.Popen([our_qemu_img, 'amend'] + args + [path],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode


@pytest.mark.parametrize('args', KILL_STEPS,
                         ids=[a[1] for a in KILL_STEPS])
def test_sigkill(our_qemu_img, ref_qemu_img, ref_tools, disk_work, args):
    base = os.path.join(disk_work, 'base')
    os.mkdir(base)
    build(ref_tools, KILL_IMAGE, base)
    orig = os.path.join(base, 'x.qcow2')
    img = os.path.join(disk_work, 'x.qcow2')
    shutil.copy(orig, img)
    full = timed_amend(our_qemu_img, args, img)
    shutil.copy(orig, img)
    full = min(full, timed_amend(our_qemu_img, args, img))
    rng = random.Random(f'{SEED}-{args}')
    killed = 0
    for _ in range(40 if SLOW else 6):
        shutil.copy(orig, img)
        rc = kill_amend(our_qemu_img, args, img,
                        rng.uniform(0.1, 0.9) * full)
        killed += rc == -signal.SIGKILL
        if rc != -signal.SIGKILL:
            full *= 0.7         # it finished first: aim earlier
        r = run([ref_qemu_img, 'check', img])
        assert r.rc in (0, 3), f'{args} {r}'
        r = run([ref_qemu_img, 'compare', orig, img])
        assert r.rc == 0, f'{args} {r}'
        # and the amend can be run again to its end
        assert run([our_qemu_img, 'amend'] + args + [img]).rc == 0
        assert run([ref_qemu_img, 'check', img]).rc in (0, 3)
    assert killed > 0


# ---- hostile images ----

HOSTILE_IMAGE = [
    ('img', 'create -f qcow2 -o cluster_size=4k x.qcow2 4M'),
    ('io', '-c "write -P 1 0 512k" -c "write -z 600k 64k" '
           '-c "write -z -u 700k 64k" -c "write -c -P 3 1M 64k" x.qcow2'),
    ('img', 'snapshot -c s x.qcow2'),
    ('io', '-c "write -z 0 64k" x.qcow2'),
]


def test_hostile(our_qemu_img, ref_tools, work):
    """Metadata bytes garbled at random (seeded): amend fails cleanly or
    succeeds, never crashes or hangs (the ASan run checks memory)."""
    build(ref_tools, HOSTILE_IMAGE, work)
    base = (work / 'x.qcow2').read_bytes()
    rng = random.Random(SEED)
    ops = ['compat=0.10', 'refcount_bits=1', 'refcount_bits=64',
           'lazy_refcounts=on', 'compat=0.10,size=2M']
    for _ in range(150 if SLOW else 25):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            off = rng.randrange(min(len(data), 40960))
            data[off] = rng.randrange(256)
        (work / 'f.qcow2').write_bytes(data)
        r = run([our_qemu_img, 'amend', '-o', rng.choice(ops), 'f.qcow2'],
                cwd=work, timeout=30)
        assert r.rc in (0, 1), r
        assert 'Sanitizer' not in r.err and 'runtime error' not in r.err, r


def strip_snapshot_extra(path):
    """Rewrite the snapshot table in place with no extra data in any
    entry (what old writers of v2 images left)."""
    with open(path, 'r+b') as f:
        f.seek(60)
        nb, off = struct.unpack('>IQ', f.read(12))
        f.seek(off)
        data = f.read(65536)
        out, p = b'', 0
        for _ in range(nb):
            h = bytearray(data[p:p + 40])
            idl, nl = struct.unpack('>HH', h[12:16])
            ex = struct.unpack('>I', h[36:40])[0]
            h[36:40] = bytes(4)
            e = bytes(h) + data[p + 40 + ex:p + 40 + ex + idl + nl]
            out += e + bytes(-len(e) % 8)
            p += 40 + ex + idl + nl
            p += -p % 8
        f.seek(off)
        f.write(out + bytes(len(data) - len(out)))


def test_upgrade_v2_snapshots_without_extra(tmp_path, ref_qemu_img,
                                            ref_qemu_io, our_qemu_img):
    """compat=1.1 on a v2 image whose snapshot entries lack the extra
    data: the table is rewritten with it, as the reference does; the
    two results are byte-identical."""
    src = str(tmp_path / 'v2.qcow2')
    run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o', 'compat=0.10',
         src, '1M'])
    for pat, name in ((3, 'a'), (4, 'bb')):
        assert run([ref_qemu_io, '-c', f'write -P {pat} 0 64k', src]).rc == 0
        assert run([ref_qemu_img, 'snapshot', '-c', name, src]).rc == 0
    strip_snapshot_extra(src)
    assert run([ref_qemu_img, 'check', src]).rc == 0
    res = []
    for tool, name in ((ref_qemu_img, 'r'), (our_qemu_img, 's')):
        p = str(tmp_path / f'{name}.qcow2')
        shutil.copy(src, p)
        res.append((p, run([tool, 'amend', '-o', 'compat=1.1', p])))
    (rp, a), (sp, b) = res
    assert a.rc == 0
    assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err)
    assert run([ref_qemu_img, 'check', sp]).rc == 0
    with open(rp, 'rb') as f1, open(sp, 'rb') as f2:
        assert f1.read() == f2.read()


BITMAPS = [
    ('img', 'create -f qcow2 x.qcow2 8M'),
    ('img', 'bitmap --add x.qcow2 b1'),
    ('io', '-c "write -P 1 1M 128k" x.qcow2'),
    ('img', 'bitmap --add -g 4k x.qcow2 b2'),
]


def test_downgrade_with_bitmaps(our_qemu_img, ref_qemu_img, ref_tools,
                                work):
    """The reference does not refuse compat=0.10 with persistent bitmaps:
    it stores them once more on close and a v2 image cannot vouch for
    them (a warning on the next open, their clusters leaked).  The same
    messages, the same file, the same check verdict."""
    base = work / 'base'
    base.mkdir()
    build(ref_tools, BITMAPS, base)
    for d in ('ref', 'ours'):
        shutil.copytree(base, work / d)
    r = amend_both(our_qemu_img, ref_qemu_img, work, ['-o', 'compat=0.10'])
    assert r.rc == 0, r
    with open(work / 'ref' / 'x.qcow2', 'rb') as a, \
            open(work / 'ours' / 'x.qcow2', 'rb') as b:
        assert a.read() == b.read()
    checks = [(r.rc, r.out, r.err) for r in
              (run([ref_qemu_img, 'check', 'x.qcow2'], cwd=work / d)
               for d in ('ref', 'ours'))]
    assert checks[0][0] == 3 and 'leaked' in checks[0][1], checks[0]
    assert checks[1] == checks[0]
    assert run([ref_qemu_img, 'compare', str(base / 'x.qcow2'),
                str(work / 'ours' / 'x.qcow2')]).rc == 0


@pytest.mark.parametrize('tool', ['amend', 'write'])
def test_v2_with_stale_bitmaps_opened_read_write(our_qemu_img, ref_qemu_img,
                                                 ref_qemu_io, our_qemu_io,
                                                 ref_tools, work, tool):
    """A v2 image still holding a bitmap extension (downgraded by the
    reference) drops it on a read-write open, as the reference does: the
    same messages and the same file after an upgrade or a write."""
    base = work / 'base'
    base.mkdir()
    build(ref_tools, BITMAPS, base)
    build(ref_tools, [('img', 'amend -o compat=0.10 x.qcow2')], base)
    for d in ('ref', 'ours'):
        shutil.copytree(base, work / d)
    if tool == 'amend':
        amend_both(our_qemu_img, ref_qemu_img, work, ['-o', 'compat=1.1'])
    else:
        res = [run([t, '-c', 'write -P 9 0 64k', 'x.qcow2'], cwd=work / d)
               for t, d in ((ref_qemu_io, 'ref'), (our_qemu_io, 'ours'))]
        assert res[0].rc == 0 and res[1].rc == 0
        assert res[1].err.replace('strata-io', 'qemu-io') == res[0].err
    with open(work / 'ref' / 'x.qcow2', 'rb') as a, \
            open(work / 'ours' / 'x.qcow2', 'rb') as b:
        assert a.read() == b.read()


@pytest.mark.parametrize('damage,msg', [
    ('offset', 'Snapshot L1 table offset invalid'),
    ('size', 'Snapshot L1 table too large')])
def test_downgrade_bad_snapshot_l1(tmp_path, ref_tools, our_qemu_img,
                                   our_qemu_io, ref_qemu_img, damage, msg):
    """compat=0.10 with a snapshot whose L1 offset is unaligned or whose
    L1 size is absurd (qemu-iotests 080): the snapshot's own error comes
    first, then the zero-cluster expansion fails with its errno; nothing
    is read from the bad table (a 2 GiB one under the 1 GiB limit of
    hostile-image runs).  A later write with inactive-l2 overlap checks
    fails alike, with the same messages at close."""
    build(ref_tools, [('img', 'create -f qcow2 x.qcow2 64M'),
                      ('io', '-c "write 0 512" x.qcow2'),
                      ('img', 'snapshot -c test x.qcow2')], tmp_path)
    src = tmp_path / 'x.qcow2'
    with open(src, 'r+b') as f:
        f.seek(64)
        sn = struct.unpack('>Q', f.read(8))[0]
        if damage == 'offset':
            f.seek(sn)
            f.write(struct.pack('>Q', 0x400200))
        else:
            f.seek(sn + 8)
            f.write(struct.pack('>I', 0x10000000))
    res = {}
    for name, img, io in (('ref', ref_qemu_img, ref_tools['io']),
                          ('ours', our_qemu_img, our_qemu_io)):
        d = tmp_path / name
        d.mkdir()
        shutil.copy(src, d / 'x.qcow2')
        lim = [] if name == 'ref' or sanitized(img) else \
            ['prlimit', '--as=1073741824']
        a = run(lim + [img, 'amend', '-o', 'compat=0.10', 'x.qcow2'], cwd=d)
        w = run([io, '-c', 'open -o overlap-check.inactive-l2=on x.qcow2',
                 '-c', 'write 0 4k'], cwd=d)
        res[name] = [(r.rc, r.out, r.err) for r in (a, w)]
    assert res['ours'] == res['ref']
    errno = 'Invalid argument' if damage == 'offset' else 'File too large'
    assert res['ref'][0][2] == f'qemu-img: {msg}\nqemu-img: Failed to ' \
        f'turn zero into data clusters: {errno}\n'
    assert res['ref'][1][2] == 'qemu-io: Failed to flush the refcount ' \
        f'block cache: {errno}\n'
    c = [run([ref_qemu_img, 'check', 'x.qcow2'], cwd=tmp_path / n)
         for n in ('ref', 'ours')]
    assert (c[1].rc, c[1].out, c[1].err) == (c[0].rc, c[0].out, c[0].err)
