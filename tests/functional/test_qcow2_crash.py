"""Crash consistency of qcow2: SIGKILL at random (seeded) moments during
write-heavy strata-io sessions and strata-img convert -O qcow2 [-c].
Afterwards the reference qemu-img check must find no corruption (leaked
clusters are allowed: exit 0 or 3), and everything written before the
last completed flush must read back (reference qemu-io read -P).

The default run does a few iterations per variant; STRATA_SLOW=1 also
runs the long variant (marked slow).  STRATA_CRASH_SEED changes the
seed."""
import os
import random
import select
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import run, tempfile_dir

KiB = 1 << 10
MiB = 1 << 20
SEED = int(os.environ.get('STRATA_CRASH_SEED', '20261207'))
SLOW = os.environ.get('STRATA_SLOW') == '1'
SECTOR = 512
SIZE = 8 * MiB
BACKING_BYTE = 0xbb

slow = pytest.mark.skipif(not SLOW, reason='long variant: set STRATA_SLOW=1')


@pytest.fixture
def work_dir():
    """On a real disk: cache=none needs O_DIRECT (not on tmpfs)."""
    d = tempfile_dir('/var/tmp')
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ---- the model: one known byte value per sector, or None ----

class Model:
    def __init__(self, initial):
        self.sectors = [initial] * (SIZE // SECTOR)

    def set(self, off, length, value):
        for s in range(off // SECTOR, (off + length) // SECTOR):
            self.sectors[s] = value

    def segments(self):
        """(offset, length, byte) runs of known sectors."""
        out, start = [], 0
        for i in range(1, len(self.sectors) + 1):
            if i == len(self.sectors) or self.sectors[i] != self.sectors[start]:
                if self.sectors[start] is not None:
                    out.append((start * SECTOR, (i - start) * SECTOR,
                                self.sectors[start]))
                start = i
        return out


COMPRESSED_AREA = 1 * MiB     # at the end; nothing else writes there


def random_op(rng, cluster, fresh):
    """One command and its effect (offset, length, byte read back).
    Compressed writes go to @fresh clusters only: like the reference,
    the driver refuses to compress over an allocated cluster (EIO)."""
    kinds = ['write', 'write', 'partial', 'partial', 'zero', 'zero-unmap',
             'zero-partial', 'discard', 'compressed', 'compressed']
    kind = rng.choice(kinds)
    area = SIZE - COMPRESSED_AREA
    nclusters = area // cluster
    c = rng.randrange(nclusters)
    n = min(rng.randint(1, 4), nclusters - c)
    off, length = c * cluster, n * cluster
    if kind in ('partial', 'zero-partial'):
        off = rng.randrange(area // SECTOR - 1) * SECTOR
        length = min(rng.randint(1, 3 * cluster // SECTOR) * SECTOR, area - off)
    p = rng.randint(1, 255)
    if kind == 'compressed' and fresh:
        off = fresh.pop() * cluster
        return f'write -c -P {p} {off} {cluster}', (off, cluster, p)
    if kind in ('write', 'partial', 'compressed'):
        return f'write -P {p} {off} {length}', (off, length, p)
    if kind in ('zero', 'zero-partial'):
        return f'write -z {off} {length}', (off, length, 0)
    if kind == 'zero-unmap':
        return f'write -z -u {off} {length}', (off, length, 0)
    return f'discard {off} {length}', (off, length, 0)


def random_script(rng, cluster, blocks=12, per_block=10):
    """Blocks of random data commands, each followed by a flush."""
    fresh = list(range((SIZE - COMPRESSED_AREA) // cluster, SIZE // cluster))
    rng.shuffle(fresh)
    ops = []
    for _ in range(blocks):
        ops += [random_op(rng, cluster, fresh) for _ in range(per_block)]
        ops.append(('flush', None))
    return ops


def aio_script(rng, cluster, blocks=10, per_block=12):
    """Blocks of concurrent requests on distinct clusters (so that their
    order does not matter), each block ended by aio_flush and flush."""
    nclusters = (SIZE - COMPRESSED_AREA) // cluster
    ops = []
    for _ in range(blocks):
        for c in rng.sample(range(nclusters), per_block):
            off, length = c * cluster, cluster
            if rng.random() < 0.4:      # a part of the cluster
                start = rng.randrange(cluster // SECTOR) * SECTOR
                off, length = off + start, rng.randint(1, (cluster - start) // SECTOR) * SECTOR
            p = rng.randint(1, 255)
            kind = rng.choice(['data', 'data', 'data', 'zero', 'zero-unmap'])
            if kind == 'data':
                ops.append((f'aio_write -P {p} {off} {length}', (off, length, p)))
            elif kind == 'zero' or length != cluster:
                ops.append((f'aio_write -z {off} {length}', (off, length, 0)))
            else:
                ops.append((f'aio_write -z -u {off} {length}', (off, length, 0)))
        ops += [('aio_flush', None), ('flush', None)]
    return ops


def grow_script(rng, cluster, chunk=64 * KiB):
    """Sequential 64 KiB writes over 3 MiB: with tiny clusters and wide
    refcounts this allocates many refcount blocks and grows the refcount
    table more than once."""
    ops = []
    for i, off in enumerate(range(0, 3 * MiB, chunk)):
        p = rng.randint(1, 255)
        ops.append((f'write -P {p} {off} {chunk}', (off, chunk, p)))
        if i % 6 == 5:
            ops.append(('flush', None))
    return ops


def durable_model(ops, completed, initial):
    """What must read back when @completed data commands finished: the
    effects up to the last flush known to be done (a data command after
    it finished); what any later command touches is unknown."""
    last_flush = -1
    flush_idx = [i for i, (_, e) in enumerate(ops) if e is None]
    data_idx = [i for i, (_, e) in enumerate(ops) if e is not None]
    done_upto = data_idx[completed - 1] if completed else -1
    for f in flush_idx:
        if f < done_upto:
            last_flush = f
    model = Model(initial)
    for i, (_, effect) in enumerate(ops):
        if effect is None:
            continue
        off, length, value = effect
        model.set(off, length, value if i < last_flush else None)
    return model


# ---- running a program and killing it ----

def run_killed(argv, delay, cwd):
    """Runs @argv with stdout on a pty (line-buffered, so what was
    printed before the kill is seen), SIGKILLs it after @delay seconds
    (None: lets it finish); (stdout, returncode)."""
    master, slave = os.openpty()
    p = subprocess.Popen(argv, stdout=slave, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, cwd=cwd)
    os.close(slave)
    chunks = []

    def reader():
        while True:
            try:
                r, _, _ = select.select([master], [], [], 0.5)
                if not r:
                    if p.poll() is not None:
                        break
                    continue
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    t = threading.Thread(target=reader)
    t.start()
    try:
        p.wait(timeout=delay if delay is not None else 120)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
    t.join()
    os.close(master)
    return b''.join(chunks).decode(errors='replace').replace('\r\n', '\n'), p.returncode


def wait_unlocked(path):
    """A killed process's locks can outlive it briefly (its io_uring
    releases the file asynchronously)."""
    if not os.path.exists(path):
        return
    ino = os.stat(path).st_ino
    deadline = time.time() + 5
    while time.time() < deadline:
        with open('/proc/locks') as f:
            if not any(line.split()[5].endswith(f':{ino}') for line in f
                       if len(line.split()) > 5):
                return
        time.sleep(0.01)


def completed_commands(out):
    return sum(1 for line in out.splitlines()
               if line.startswith(('wrote ', 'discard ')))


# ---- checks with the reference ----

def ref_check(ref_qemu_img, img, cwd):
    wait_unlocked(os.path.join(cwd, img))
    r = run([ref_qemu_img, 'check', img], cwd=cwd)
    assert r.rc in (0, 3), f'reference check found corruption:\n{r}'
    assert 'ERROR' not in r.out and 'corruptions' not in r.out.replace(
        'No errors', ''), r
    return r


def ref_verify(ref_qemu_io, img, model, cwd):
    cmds = []
    for off, length, value in model.segments():
        cmds += ['-c', f'read -P {value} {off} {length}']
    for i in range(0, len(cmds), 400):
        r = run([ref_qemu_io, '-r', '-f', 'qcow2'] + cmds[i:i + 400] + [img], cwd=cwd)
        assert r.rc == 0 and 'verification failed' not in r.out, \
            f'data lost after a completed flush:\n{r.out[:3000]}\n{r.err}'


def repair_lazy(ref_qemu_img, img, cwd):
    """A dirty image with lazy refcounts is repaired on its next
    read-write open (refcounts are allowed to be stale until then); a
    clean one must be consistent as it is."""
    wait_unlocked(os.path.join(cwd, img))
    with open(os.path.join(cwd, img), 'rb') as f:
        if len(f.read(80)) < 80:
            return
        f.seek(79)
        if not f.read(1)[0] & 1:
            return
    r = run([ref_qemu_img, 'check', '-r', 'all', img], cwd=cwd)
    assert r.rc in (0, 3), r


# ---- strata-io sessions ----

VARIANTS = [
    # name, create options, cache, backing
    ('plain-writeback', 'cluster_size=64k', 'writeback', False),
    ('plain-none', 'cluster_size=64k', 'none', False),
    ('lazy-writeback', 'cluster_size=64k,lazy_refcounts=on', 'writeback', False),
    ('backing-none', 'cluster_size=64k', 'none', True),
    ('small-lazy-backing', 'cluster_size=4k,lazy_refcounts=on', 'writeback', True),
    ('v2', 'compat=0.10,cluster_size=16k', 'writeback', False),
    ('refcount1', 'cluster_size=16k,refcount_bits=1', 'none', False),
    ('refcount64-backing', 'cluster_size=64k,refcount_bits=64', 'writeback', True),
    # concurrent requests: allocations racing each other's data writes
    ('aio-writeback', 'cluster_size=64k', 'writeback', False),
    ('aio-small-none-backing', 'cluster_size=4k', 'none', True),
    # refcount blocks and table growth (2 MiB of host file per table cluster)
    ('grow-tiny-rc64', 'cluster_size=512,refcount_bits=64', 'writeback', False),
]


def make_target(strata_img, ref_qemu_img, ref_qemu_io, d, opts, backing):
    if backing and not os.path.exists(os.path.join(d, 'base.qcow2')):
        run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', 'base.qcow2', str(SIZE)], cwd=d)
        r = run([ref_qemu_io, '-c', f'write -P {BACKING_BYTE} 0 {SIZE}', 'base.qcow2'], cwd=d)
        assert r.rc == 0, r
    argv = [strata_img, 'create', '-q', '-f', 'qcow2', '-o', opts]
    if backing:
        argv += ['-b', 'base.qcow2', '-F', 'qcow2']
    r = run(argv + ['img.qcow2', str(SIZE)], cwd=d)
    assert r.rc == 0, r


def session(strata_io, ops, cache, delay, d):
    argv = [strata_io, '-f', 'qcow2', '-t', cache]
    for cmd, _ in ops:
        argv += ['-c', cmd]
    return run_killed(argv + ['img.qcow2'], delay, d)


def crash_iterations(variant, iterations, strata_img, strata_io, ref_qemu_img,
                     ref_qemu_io, d):
    name, opts, cache, backing = variant
    rng = random.Random(f'{SEED}-{name}')
    size_opt = opts.split('cluster_size=')[1].split(',')[0]
    cluster = int(size_opt[:-1]) * KiB if size_opt.endswith('k') else int(size_opt)
    lazy = 'lazy_refcounts=on' in opts
    initial = BACKING_BYTE if backing else 0
    v2 = 'compat=0.10' in opts
    script = (aio_script if name.startswith('aio') else
              grow_script if name.startswith('grow') else random_script)
    # control run: the model is right when nothing is killed
    ops = script(rng, cluster)
    if v2:
        ops = [(c.replace('-u ', ''), e) if not c.startswith('discard') else
               (c.replace('discard', 'write -z'), e) for c, e in ops]
    make_target(strata_img, ref_qemu_img, ref_qemu_io, d, opts, backing)
    t0 = time.monotonic()
    out, rc = session(strata_io, ops, cache, None, d)
    full = time.monotonic() - t0
    assert rc == 0, out[-2000:]
    ref_check(ref_qemu_img, 'img.qcow2', d)
    ref_verify(ref_qemu_io, 'img.qcow2', durable_model(ops, len(
        [o for o in ops if o[1] is not None]), initial), d)
    for _ in range(iterations):
        ops = script(rng, cluster)
        if v2:
            ops = [(c.replace('-u ', ''), e) if not c.startswith('discard') else
                   (c.replace('discard', 'write -z'), e) for c, e in ops]
        make_target(strata_img, ref_qemu_img, ref_qemu_io, d, opts, backing)
        out, rc = session(strata_io, ops, cache, rng.uniform(0.02, full), d)
        assert 'error' not in out.lower(), out[-2000:]
        model = durable_model(ops, completed_commands(out), initial)
        if lazy:
            repair_lazy(ref_qemu_img, 'img.qcow2', d)
        ref_check(ref_qemu_img, 'img.qcow2', d)
        ref_verify(ref_qemu_io, 'img.qcow2', model, d)


@pytest.mark.parametrize('variant', VARIANTS, ids=[v[0] for v in VARIANTS])
def test_io_crash(variant, work_dir, strata_img, strata_io, ref_qemu_img, ref_qemu_io):
    crash_iterations(variant, 3, strata_img, strata_io, ref_qemu_img,
                     ref_qemu_io, work_dir)


@pytest.mark.slow
@slow
@pytest.mark.parametrize('variant', VARIANTS, ids=[v[0] for v in VARIANTS])
def test_io_crash_long(variant, work_dir, strata_img, strata_io, ref_qemu_img,
                       ref_qemu_io):
    crash_iterations(variant, 40, strata_img, strata_io, ref_qemu_img,
                     ref_qemu_io, work_dir)


# ---- convert ----

def make_source(d, rng, mib=48, chunk=MiB):
    """A raw source of @mib MiB: random, repeated and zero stretches of
    @chunk bytes."""
    path = os.path.join(d, 'src.raw')
    with open(path, 'wb') as f:
        for _ in range(mib * MiB // chunk):
            kind = rng.randrange(3)
            if kind == 0:
                f.write(rng.randbytes(chunk))
            elif kind == 1:
                f.write(bytes([rng.randint(1, 255)]) * chunk)
            else:
                f.seek(chunk, 1)
        f.truncate(mib * MiB)
    return path


def check_after_kill(ref_qemu_img, d, name='out.qcow2'):
    """The reference checks what a killed convert left of @name in @d;
    False when nothing was left to check (killed before or inside create)."""
    path = os.path.join(d, name)
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return False    # killed before the image was created
    wait_unlocked(path)
    with open(path, 'rb') as f:
        if f.read(4) != b'QFI\xfb':
            # killed inside create, before its last write (the header)
            assert os.path.getsize(path) <= 3 * 64 * KiB, path
            return False
    r = run([ref_qemu_img, 'check', name], cwd=d)
    if r.rc == 1 and 'Could not open' in r.err:
        # killed inside create, before the header was complete
        assert os.path.getsize(path) < 4 * 64 * KiB, r
        return False
    ref_check(ref_qemu_img, name, d)
    return True


def convert_iterations(extra, iterations, strata_img, ref_qemu_img, d):
    rng = random.Random(f'{SEED}-convert-{extra}')
    make_source(d, rng)
    argv = [strata_img, 'convert', '-O', 'qcow2'] + extra + ['src.raw', 'out.qcow2']
    t0 = time.monotonic()
    out, rc = run_killed(argv, None, d)
    full = time.monotonic() - t0
    if 'Compression not supported' in out:
        pytest.skip('strata-img convert -c is not there yet')
    assert rc == 0, out
    ref_check(ref_qemu_img, 'out.qcow2', d)
    r = run([ref_qemu_img, 'compare', 'src.raw', 'out.qcow2'], cwd=d)
    assert r.rc == 0, r
    for _ in range(iterations):
        if os.path.exists(os.path.join(d, 'out.qcow2')):
            os.unlink(os.path.join(d, 'out.qcow2'))
        out, rc = run_killed(argv, rng.uniform(0.0, full), d)
        if rc == 0:
            ref_check(ref_qemu_img, 'out.qcow2', d)
            continue
        check_after_kill(ref_qemu_img, d)


CONVERTS = [[], ['-c'], ['-c', '-o', 'compression_type=zstd,cluster_size=4k'],
            ['-o', 'cluster_size=4k,refcount_bits=64']]


@pytest.mark.parametrize('extra', CONVERTS, ids=['plain', 'compressed', 'zstd-4k', '4k-rc64'])
def test_convert_crash(extra, work_dir, strata_img, ref_qemu_img):
    convert_iterations(extra, 3, strata_img, ref_qemu_img, work_dir)


@pytest.mark.slow
@slow
@pytest.mark.parametrize('extra', CONVERTS, ids=['plain', 'compressed', 'zstd-4k', '4k-rc64'])
def test_convert_crash_long(extra, work_dir, strata_img, ref_qemu_img):
    convert_iterations(extra, 30, strata_img, ref_qemu_img, work_dir)
