"""Randomized differential of strata-img convert against the reference.

A seeded generator makes a qcow2 source with the reference's tools (its
cluster size, extended L2, compat and compression type drawn; sometimes
over a raw backing file; data, zero, compressed and discarded ranges;
sometimes an internal snapshot or a persistent bitmap) and a convert
command line from qemu-img's options (-O raw/qcow2, -o, -c, -S, -m, -W,
-t/-T none, -C, --salvage, -U, -q, -p, --target-is-zero with -n, -r,
--bitmaps, -l, -B/-F, --skip-broken-bitmaps).  Both tools run on copies
of the same directory.  Exit status, stdout and stderr must match; then
the targets: byte-identical, except where the reference's own result is
not fixed (-W with several coroutines: the order writes land in):
there the reference's compare must find
them equal, its check ours clean and the maps equal but for host
offsets.

Run as a script for a long exploration:
    python3 test_convert_random_diff.py OURDIR FIRST COUNT
where OURDIR holds strata-img as qemu-img (a copy, not the build tree
being rebuilt).
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import pytest

REF = os.environ.get('STRATA_REF_BIN', '/opt/qemu-ref/usr/bin')
TIMEOUT = 120

SOURCE_OPTS = ['cluster_size=64k', 'cluster_size=4k', 'extended_l2=on',
               'compat=0.10', 'cluster_size=512', 'compression_type=zstd']
SOURCE_WRITES = ['write -P 1 0 64k', 'write -z 64k 64k',
                 'write -c -P 2 128k 64k', 'write -P 3 300k 5000',
                 'discard 0 4k', 'write -P 0 512k 64k',
                 'write -z -u 1M 128k', 'write -P 5 1900k 4k']
TARGET_OPTS = ['cluster_size=4k', 'compat=0.10', 'extended_l2=on',
               'preallocation=metadata', 'preallocation=falloc',
               'refcount_bits=1', 'cluster_size=2M', 'compression_type=zstd']
FLAGS = [['-S', '0'], ['-S', '64k'], ['-S', '512'], ['-m', '1'],
         ['-m', '16'], ['-W'], ['-t', 'none'], ['-T', 'none'], ['-C'],
         ['--salvage'], ['-U'], ['-q'], ['-p'], ['--target-is-zero'],
         ['-r', '100M'], ['--bitmaps'], ['-l', 'snap'],
         ['-l', 'snapshot.name=snap'], ['-B', 'base.raw', '-F', 'raw'],
         ['-n'], ['--skip-broken-bitmaps']]


def sh(argv, d):
    r = subprocess.run(argv, cwd=d, capture_output=True, text=True,
                       timeout=TIMEOUT)
    prog = os.path.dirname(argv[0]) + '/'
    err = r.stderr.replace(prog, '').replace('strata-img', 'qemu-img')
    return r.returncode, r.stdout.replace('strata-img', 'qemu-img'), err


def gen(seed):
    r = random.Random(seed)
    src = {'opts': r.choice(SOURCE_OPTS), 'backing': r.random() < 0.4,
           'size': r.choice(['2M', '1536k', '2049k']),
           'writes': [r.choice(SOURCE_WRITES)
                      for _ in range(r.randrange(1, 6))],
           'snapshot': r.random() < 0.3, 'bitmap': r.random() < 0.3}
    fmt = r.choice(['qcow2', 'qcow2', 'raw'])
    cmd = ['convert', '-O', fmt]
    if r.random() < 0.3:
        cmd += ['-f', 'qcow2']
    if fmt == 'qcow2' and r.random() < 0.5:
        cmd += ['-o', r.choice(TARGET_OPTS)]
    if fmt == 'qcow2' and r.random() < 0.25:
        cmd.append('-c')
    for f in FLAGS:
        if r.random() < 0.12:
            cmd += f
    return {'seed': seed, 'src': src, 'cmd': cmd + ['s.qcow2', 'out.' + fmt]}


def make_source(d, src):
    img, io = os.path.join(REF, 'qemu-img'), os.path.join(REF, 'qemu-io')
    sh([img, 'create', '-q', '-f', 'raw', 'base.raw', '2M'], d)
    sh([io, '-f', 'raw', '-c', 'write -P 7 0 1M', 'base.raw'], d)
    back = ['-b', 'base.raw', '-F', 'raw'] if src['backing'] else []
    sh([img, 'create', '-q', '-f', 'qcow2', '-o', src['opts'], *back,
        's.qcow2', src['size']], d)
    cmds = []
    for w in src['writes']:
        cmds += ['-c', w]
    sh([io, *cmds, 's.qcow2'], d)
    if src['snapshot']:
        sh([img, 'snapshot', '-c', 'snap', 's.qcow2'], d)
        sh([io, '-c', 'write -P 9 0 4k', 's.qcow2'], d)
    if src['bitmap']:
        sh([img, 'bitmap', '--add', 's.qcow2', 'bm0'], d)


def relaxed(case):
    """Targets whose bytes the reference does not fix."""
    cmd = case['cmd']
    several = '-m' not in cmd or cmd[cmd.index('-m') + 1] != '1'
    return '-W' in cmd and several


def target_map(d, path, drop_offsets):
    m = json.loads(sh([os.path.join(REF, 'qemu-img'), 'map',
                       '--output=json', path], d)[1])
    if not drop_offsets:
        return m
    merged = []
    for e in m:
        e.pop('offset', None)
        last = merged[-1] if merged else None
        if last and {k: v for k, v in last.items()
                     if k not in ('start', 'length')} == \
                {k: v for k, v in e.items() if k not in ('start', 'length')}:
            last['length'] += e['length']     # apart only in the file
        else:
            merged.append(e)
    return merged


def compare_targets(case, top):
    cmd = case['cmd']
    out = cmd[-1]
    ra, rb = os.path.join(top, 'r', out), os.path.join(top, 'o', out)
    with open(ra, 'rb') as a, open(rb, 'rb') as b:
        if a.read() == b.read():
            return 'same', None
    c = sh([os.path.join(REF, 'qemu-img'), 'compare', ra, rb], top)
    if c[0]:
        return 'image', c
    if out.endswith('.qcow2'):
        k = sh([os.path.join(REF, 'qemu-img'), 'check', rb], top)
        if k[0]:
            return 'check', k
        loose = relaxed(case)
        if target_map(top, ra, loose) != target_map(top, rb, loose):
            return 'map', None
    return ('relaxed', None) if relaxed(case) else ('bytes', None)


def run_pair(our_dir, case, base):
    top = tempfile.mkdtemp(prefix='strata-cdiff-', dir=base)
    try:
        os.mkdir(os.path.join(top, 'seed'))
        make_source(os.path.join(top, 'seed'), case['src'])
        cmd, outs = case['cmd'], []
        for name, bindir in (('r', REF), ('o', our_dir)):
            d = os.path.join(top, name)
            shutil.copytree(os.path.join(top, 'seed'), d)
            if '-n' in cmd:
                sh([os.path.join(REF, 'qemu-img'), 'create', '-q', '-f',
                    cmd[2], cmd[-1], '3M'], d)
            rc, out, err = sh([os.path.join(bindir, 'qemu-img')] + cmd, d)
            outs.append((rc, '' if '-p' in cmd else out, err))
        if outs[0] != outs[1]:
            return 'output', outs
        if outs[0][0] != 0:
            return 'same', None
        return compare_targets(case, top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


OK = ('same', 'relaxed')


@pytest.fixture(scope='module')
def base():
    if not os.access(os.path.join(REF, 'qemu-img'), os.X_OK):
        pytest.skip('no reference')
    d = tempfile.mkdtemp(prefix='strata-cdiff-', dir='/var/tmp')
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize('seed', range(30))
def test_random_convert(seed, base, bindir):
    case = gen(seed)
    verdict, info = run_pair(str(bindir), case, base)
    assert verdict in OK, (case, verdict, info)


# seeds of explorations that differed: -C with -S refused (1, 71), -W
# with -m 1 writing a chunk's runs in order (234), -C given up by an
# earlier chunk while a later one waited its turn (3955), which a chunk
# handed out before that still tries (50193), -W -n: a zero run beside
# data still being allocated in its cluster zeroed the data (50191)
@pytest.mark.parametrize('seed', [1, 71, 234, 3955, 50191, 50193])
def test_former_difference_seed(seed, base, bindir):
    case = gen(seed)
    verdict, info = run_pair(str(bindir), case, base)
    assert verdict in OK, (case, verdict, info)


def explore(our_dir, first, count):
    d = tempfile.mkdtemp(prefix='strata-cdiff-', dir='/var/tmp')
    found = {}
    try:
        for seed in range(first, first + count):
            case = gen(seed)
            verdict = run_pair(our_dir, case, d)[0]
            found[verdict] = found.get(verdict, 0) + 1
            if verdict not in OK:
                print(seed, verdict, case['cmd'], flush=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(found)


if __name__ == '__main__':
    explore(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
