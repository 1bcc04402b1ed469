"""Randomized differential test of strata-io against the reference qemu-io.

A seeded generator builds command sequences (valid and malformed) over a
small raw image and over a few --image-opts graphs (raw with offset/size,
blkdebug with an alignment, null-co, throttle).  Each sequence runs through
both programs, either as -c options or fed on stdin to the prompt; stdout,
stderr (timing figures, node names and prompts normalised), exit status and
the image's resulting bytes must match.

The generator keeps at most one aio request in flight and always follows
it with aio_flush: the reference prints concurrent completions in an
order that depends on thread scheduling.  Cases where the reference dies
on a signal are not imitated; they are skipped (REF_CRASHES lists the
known ones).

Run as a script for a long exploration:
    python3 test_io_random_diff.py REF OUR FIRST COUNT [OUT.json]
"""
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import normalize  # noqa: E402

SIZE = 64 * 1024
TIMEOUT = 30

# aio_write -z reports a duration from an unset start time (both tools):
# "0:30:11.53 (0.282635 bytes/sec and 0.0006 ops/sec)"
ODD_TIMING = re.compile(r'^(.*, \d+ ops); [0-9:.]+ \([0-9.]+ '
                        r'(?:[KMGTPE]iB|bytes)/sec and [0-9.]+ ops/sec\)$', re.M)

# Graphs the sequences run on: (qemu-io options, image argument).
TARGETS = {
    'raw': (['-f', 'raw'], 't.raw'),
    'plain': ([], 't.raw'),
    'offset': (['--image-opts'], 'driver=raw,offset=4096,size=32768,'
               'file.driver=file,file.filename=t.raw'),
    'align512': (['--image-opts'], 'driver=raw,file.driver=blkdebug,'
                 'file.align=512,file.image.driver=file,'
                 'file.image.filename=t.raw'),
    'align4k': (['--image-opts'], 'driver=raw,file.driver=blkdebug,'
                'file.align=4096,file.image.driver=file,'
                'file.image.filename=t.raw'),
    'null': (['--image-opts'], 'driver=null-co,size=65536,read-zeroes=on'),
    'throttle': (['--object', 'throttle-group,id=tg0,x-iops-total=100000,'
                  'x-bps-total=1000000000', '--image-opts'],
                 'driver=throttle,throttle-group=tg0,file.driver=raw,'
                 'file.file.driver=file,file.file.filename=t.raw'),
}

# Sequences on which the reference qemu-io dies on a signal; not imitated.
# Strata must survive them.
REF_CRASHES = [
    # registered buffers with aio: assertion in bdrv_graph_rdlock_main_loop
    ('raw', ['aio_read -r 0 512', 'aio_flush']),
    ('raw', ['aio_write -r 0 512', 'aio_flush']),
    # unaligned discard under blkdebug align=: assertion in blkdebug
    ('align512', ['discard 1 100']),
    ('align4k', ['discard 0 16']),
    # zero-length vector element with O_DIRECT padding: assertion in
    # bdrv_create_padded_qiov
    ('raw', ['reopen -c none', 'aio_read 512 0 512', 'aio_flush']),
    ('align512', ['writev 512 0 32']),
    # the same, with a write padded to protect a probed raw's first sector
    ('plain', ['writev -f 1 0 16 513']),
]

# Differences whose cause lies outside tools/io (block layer); the
# generator avoids them:
# - 'open -C -r' / 'qemu-io -C -r': the reference refuses copy-on-read on
#   a read-only node ("Can't use copy-on-read on read-only device").
# - 'open -o bogus=1 t.raw' without a format: the reference prints the
#   raw-probing warning before the unknown-option error.
# - 'open -s' and driver=qcow2: no qcow2 driver for temporary overlays.
# - 'write -n -z' on null-co: the reference fails with ENOTSUP (no
#   efficient zero write and no fallback allowed).
# - 'open -o driver=raw,offset=x' without a file: the reference checks
#   the offset's value before asking for the file.
OUTSIDE = [
    ('null', ['write -n -z 0 4096']),
    ('raw', ['close', 'open -o driver=raw,offset=x']),
    ('raw', ['close', 'open -C -r t.raw', 'read 0 1']),
    ('raw', ['close', 'open -o bogus=1 t.raw']),
]


def norm(text):
    text = text.replace('qemu-io> ', 'qemu-io> \n')
    text = ODD_TIMING.sub(r'\1; TIME', text)
    return re.sub(r'#block\d+', '#blockN', normalize(text))


# ---- generator ----

GOOD_NUMS = ['0', '1', '511', '512', '513', '4095', '4096', '4097', '8k',
             '32k', '32767', '32768', '60k', '63k', '64k', '65535', '65536',
             '65537', '0x200', '0x1000', '1k', '0.5k', '1.5k', '2k']
HUGE_NUMS = ['1M', '2G', '3G', '4G', '1T', '16E', '8E', '9223372036854775807',
             '9223372036854775808', '0x7fffffffffffffff', '18446744073709551615',
             '2147483136', '2147483647', '2147483648', '4294967296']
BAD_NUMS = ['-1', '-512', 'x', '0x', '1kk', '1.5', '1e3', '+5', '1b',
            '0x1.8k', '1.k', '.5k', '010', '5q', '1B', '-0', '--1', '1,2']
PATTERNS = ['0', '1', '0xff', '0xab', '255', '256', '0x100', '-1', 'a', '0x',
            '1k', '077', '']
ODD_FLAGS = ['-p', '-x', '-z', '-u', '-Z', '-?', '-h', '--', '-']


def rnd_num(r, size=SIZE):
    c = r.random()
    if c < 0.45:
        return r.choice(GOOD_NUMS)
    if c < 0.6:
        return str(r.randrange(0, size + 1))
    if c < 0.7:
        return hex(r.randrange(0, size + 1))
    if c < 0.82:
        return r.choice(HUGE_NUMS)
    return r.choice(BAD_NUMS)


def rnd_len(r):
    c = r.random()
    if c < 0.6:
        return r.choice(['1', '16', '32', '100', '512', '513', '1k', '4k',
                         '4095', '8k', str(r.randrange(1, 5000))])
    return rnd_num(r)


def rnd_flags(r, letters, p=0.18):
    out = [f'-{x}' for x in letters if r.random() < p]
    if r.random() < 0.05:
        out.append(r.choice(ODD_FLAGS))
    r.shuffle(out)
    return out


def rnd_pattern_opt(r):
    return ['-P', r.choice(PATTERNS)] if r.random() < 0.45 else []


def rnd_offlen(r, vec):
    args = [rnd_num(r)]
    n = r.choice([0, 1, 1, 1, 2, 3]) if vec else r.choice([0, 1, 1, 1, 1, 2])
    args += [rnd_len(r) for _ in range(n)]
    return args


def cmd_read(r):
    a = ['read'] + rnd_flags(r, 'abCqrv')
    if r.random() < 0.45:
        a += ['-P', r.choice(PATTERNS)]
        if r.random() < 0.4:
            a += ['-s', r.choice(['0', '1', '16', '100', '600', 'x', '-1'])]
        if r.random() < 0.4:
            a += ['-l', r.choice(['0', '1', '16', '100', '600', 'x', '-1'])]
    elif r.random() < 0.05:
        a += ['-s', '4']
    return a + rnd_offlen(r, False)


def cmd_write(r):
    a = ['write'] + rnd_flags(r, 'bcCfnqruz')
    c = r.random()
    if c < 0.4:
        a += ['-P', r.choice(PATTERNS)]
    elif c < 0.5:
        a += ['-s', r.choice(['src.bin', 'src.bin', 'nosuch', 't.raw', ''])]
        if r.random() < 0.1:
            a += ['-P', '5']
    return a + rnd_offlen(r, False)


def cmd_vec(r):
    name, letters = r.choice([('readv', 'Cqrv'), ('writev', 'Cfqr')])
    return [name] + rnd_flags(r, letters) + rnd_pattern_opt(r) + \
        rnd_offlen(r, True)


def cmd_aio(r):
    # -r (registered buffer) is left out: the reference aborts on it.
    name, letters = r.choice([('aio_read', 'Ciqv'), ('aio_write', 'Cfiquz')])
    a = [name] + rnd_flags(r, letters) + rnd_pattern_opt(r) + \
        rnd_offlen(r, True)
    return [' '.join(a), 'aio_flush']


def cmd_misc(r, target):
    c = r.randrange(8)
    if c == 0 and target.startswith('align'):
        # Unaligned discards abort the reference under blkdebug align=.
        return ['discard'] + rnd_flags(r, 'Cq') + \
            [str(r.randrange(16) * 4096), str(r.randrange(1, 4) * 4096)]
    if c in (0, 5) and target.startswith('align'):
        return ['discard', str(r.randrange(16) * 4096), '4096']
    if c == 0:
        return ['discard'] + rnd_flags(r, 'Cq') + rnd_offlen(r, False)
    if c == 1:
        return ['alloc'] + rnd_offlen(r, False)
    if c == 2:
        a = ['truncate']
        if r.random() < 0.3:
            a += ['-m', r.choice(['off', 'full', 'falloc', 'metadata',
                                  'bogus', ''])]
        if r.random() < 0.7:
            a.append(r.choice(['64k', '32k', '100000', '1M', '0', '513', '4k',
                               '2M', rnd_num(r)]))
        return a
    if c == 3:
        return [r.choice(['map', 'length', 'info', 'flush', 'aio_flush'])]
    if c == 4:
        return [r.choice(['map x', 'length 1', 'info x', 'flush 1',
                          'bogus', 'help', 'help read', 'help bogus', '?',
                          'r 0 1', 'w 0 1', 'sleep 1', 'sleep x', 'sleep',
                          '# comment', '', 'quit', 'q', 'help write',
                          'help open', 'help ?', 'exit', 'READ 0 1'])]
    if c == 5:
        return ['discard', rnd_num(r), rnd_len(r)]
    if c == 6:
        return ['alloc', rnd_num(r)]
    return ['truncate', rnd_num(r)]


OPEN_OPTS = ['driver=raw', 'driver=file', 'driver=raw,offset=1024',
             'driver=raw,offset=1024,size=4k', 'driver=raw,size=512',
             'driver=raw,bogus=1', 'driver=nosuch',
             'read-only=on', 'discard=unmap', 'detect-zeroes=on',
             'detect-zeroes=unmap', 'file.locking=off', 'cache.direct=on',
             'driver=raw,offset=65536', 'driver=raw,offset=70000',
             'auto-read-only=on', 'driver=blkdebug,align=4096',
             'driver=blkdebug,align=3']


def cmd_open(r):
    c = r.randrange(10)
    if c == 0:
        return ['close']
    if c < 6:
        # Not -s (no qcow2 for the temporary overlay) nor -C with -r
        # (see OUTSIDE).
        a = ['open'] + rnd_flags(r, r.choice(['rnkU', 'CnkU']), 0.12)
        if r.random() < 0.15:
            a += ['-t', r.choice(['none', 'writeback', 'writethrough',
                                  'unsafe', 'directsync', 'bogus'])]
        if r.random() < 0.1:
            a += ['-d', r.choice(['unmap', 'ignore', 'on', 'off', 'bogus'])]
        if r.random() < 0.3:
            a += ['-o', r.choice(OPEN_OPTS)]
        if r.random() < 0.9:
            a.append(r.choice(['t.raw'] * 6 + ['nosuch', 'src.bin', '']))
        if r.random() < 0.05:
            a.append('t.raw')
        return a
    a = ['reopen']
    for _ in range(r.randrange(3)):
        k = r.randrange(5)
        if k == 0:
            a.append(r.choice(['-r', '-w']))
        elif k == 1:
            a += ['-c', r.choice(['none', 'writeback', 'writethrough',
                                  'unsafe', 'directsync', 'bogus'])]
        elif k == 2:
            a += ['-o', r.choice(['auto-read-only=on', 'read-only=on',
                                  'discard=unmap', 'detect-zeroes=on',
                                  'bogus=1', 'file.locking=off',
                                  'cache.direct=on', 'cache.no-flush=on',
                                  'driver=raw', 'offset=512', ''])]
        elif k == 3:
            a.append(r.choice(ODD_FLAGS + ['x', '-c']))
        else:
            a.append('-r')
    return a


def cmd_debug(r):
    # A breakpoint left set would suspend a later synchronous request
    # forever, in both tools: remove it at once.
    if r.random() < 0.3:
        return [r.choice(['break read_aio a', 'break write_aio a']),
                'remove_break a']
    return [r.choice(['break bogus a', 'remove_break a', 'remove_break x',
                      'resume x', 'break', 'resume', 'wait_break',
                      'break read_aio'])]


def no_empty_elements(words, target):
    """Zero-length vector elements abort the reference when requests
    are padded to an alignment."""
    if not target.startswith('align'):
        return words
    return [w if w not in ('0', '0x0', '-0') else '1' for w in words]


def rnd_command(r, target):
    k = r.randrange(20)
    if k < 4:
        return [' '.join(cmd_read(r))]
    if k < 8:
        a = cmd_write(r)
        if target == 'null':
            # null-co: see OUTSIDE (write -n -z)
            a = [w for w in a if w != '-n']
        return [' '.join(a)]
    if k < 10:
        return [' '.join(no_empty_elements(cmd_vec(r), target))]
    if k < 12:
        c = cmd_aio(r)
        c[0] = ' '.join(no_empty_elements(c[0].split(' '), target))
        return c
    if k < 16:
        return [' '.join(cmd_misc(r, target))]
    if k < 19:
        return [' '.join(cmd_open(r))]
    if target.startswith('align'):
        return cmd_debug(r)
    return [' '.join(cmd_read(r))]


def gen(seed):
    """One case: target name, command list, stdin mode."""
    r = random.Random(seed)
    target = r.choice(['raw'] * 5 + ['plain'] + sorted(TARGETS)[:-1] +
                      ['throttle'])
    cmds = []
    for _ in range(r.randrange(2, 12)):
        cmds += rnd_command(r, target)
    return {'seed': seed, 'target': target, 'cmds': cmds,
            'stdin': r.random() < 0.35}


# ---- runner ----

def image_chunks(seed):
    r = random.Random(seed)
    head = bytes(r.randrange(256) for _ in range(64)) * 256
    return [(0, head), (32768, bytes([r.randrange(256)]) * 4096)]


def digest(path):
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        if size <= (16 << 20):
            h.update(f.read())
        else:
            h.update(f.read(1 << 20))
            f.seek(size - (1 << 20))
            h.update(f.read())
    return size, h.hexdigest()


def run_one(prog, case, workdir):
    path = os.path.join(workdir, 't.raw')
    with open(path, 'wb') as f:
        f.truncate(SIZE)
        for off, data in image_chunks(case['seed']):
            f.seek(off)
            f.write(data)
    with open(os.path.join(workdir, 'src.bin'), 'wb') as f:
        f.write(bytes(range(256)) * 32)
    opts, target = TARGETS[case['target']]
    argv = [prog] + opts
    stdin = None
    if case['stdin']:
        stdin = ('\n'.join(case['cmds']) + '\n').encode()
    else:
        for c in case['cmds']:
            argv += ['-c', c]
    argv.append(target)
    try:
        res = subprocess.run(argv, cwd=workdir, input=stdin,
                             capture_output=True, timeout=TIMEOUT,
                             env=dict(os.environ, TMPDIR=workdir))
    except subprocess.TimeoutExpired:
        return 'timeout'
    out = norm(res.stdout.decode(errors='replace'))
    err = norm(res.stderr.decode(errors='replace'))
    return out, err, res.returncode, digest(path)


def run_pair(ref, our, case, base=None):
    """(expected, actual); expected is 'crash'/'timeout' where the
    reference misbehaves."""
    got = []
    for prog in (ref, our):
        d = tempfile.mkdtemp(prefix='strata-rdiff-', dir=base)
        try:
            got.append(run_one(prog, case, d))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    exp, act = got
    if exp != 'timeout' and exp[2] < 0:
        exp = 'crash'
    return exp, act


def check(ref, our, case, base):
    exp, act = run_pair(ref, our, case, base)
    if exp in ('crash', 'timeout'):
        pytest.skip(f'reference {exp}s on {case!r}')
    assert act != 'timeout', case
    ctx = repr(case)
    assert act[0] == exp[0], ctx
    assert act[1] == exp[1], ctx
    assert act[2] == exp[2], ctx
    assert act[3] == exp[3], ctx


@pytest.fixture(scope='module')
def base_dir():
    # A real disk: O_DIRECT (cache.direct, -t none) fails on tmpfs.
    d = tempfile.mkdtemp(prefix='strata-rdiff-', dir='/var/tmp')
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize('seed', range(600))
def test_random_sequence(seed, our_qemu_io, ref_qemu_io, base_dir):
    check(ref_qemu_io, our_qemu_io, gen(seed), base_dir)


# ---- explicit cases for differences found by the generator ----

FIXED = [
    # -r with -z: no buffer to register (after the numbers are checked)
    ('raw', ['write -z -r 0x200 4095'], False),
    ('raw', ['write -r -z 64k 6860', 'write -z -r -c 0 1'], True),
    # -r with -b: vmstate reads cannot use a registered buffer
    ('raw', ['read -r -b 0x1000 8k', 'read -b -r 0 0'], False),
    # discard's limit is byte-exact
    ('raw', ['discard 0 2147483647', 'discard 0 2147483137'], False),
    # reopen: -c with cache.* options, -r/-w with read-only, reported
    # before any option value is looked at
    ('raw', ['reopen -o cache.direct=on -c none'], False),
    ('raw', ['reopen -c unsafe -o cache.no-flush=off', 'write 0 1'], False),
    ('raw', ['reopen -c none -o cache.direct=x'], True),
    ('raw', ['reopen -r -o read-only=on,discard=bogus', 'write 0 1'], False),
    # reopen: auto-read-only may be set on any node
    ('raw', ['reopen -o auto-read-only=on', 'reopen -o file.auto-read-only=off',
             'write 0 1'], False),
    # a failed reopen changes nothing (read-only stays off)
    ('raw', ['reopen -r -o bogus=1', 'write 64k 100', 'write 0 1'], False),
    ('throttle', ['reopen -o driver=raw -r', 'write 32767 1.k'], False),
    ('raw', ['reopen -w -o discard=unmap,bogus=1', 'reopen -r',
             'reopen -o bogus=1 -w', 'write 0 1'], True),
    # reopen: an option that cannot change is reported before a
    # permission conflict
    ('raw', ['reopen -o read-only=on -o file.locking=off'], False),
    ('null', ['reopen -o file.locking=off -o read-only=on'], True),
]


@pytest.mark.parametrize('target,cmds,stdin', FIXED,
                         ids=[';'.join(c[1])[:50] for c in FIXED])
def test_fixed_difference(target, cmds, stdin, our_qemu_io, ref_qemu_io,
                          base_dir):
    check(ref_qemu_io, our_qemu_io,
          {'seed': 0, 'target': target, 'cmds': cmds, 'stdin': stdin},
          base_dir)


@pytest.mark.parametrize('target,cmds', REF_CRASHES,
                         ids=[';'.join(c[1])[:50] for c in REF_CRASHES])
def test_reference_crash_survived(target, cmds, our_qemu_io, base_dir):
    """The reference aborts here; Strata must finish normally."""
    case = {'seed': 0, 'target': target, 'cmds': cmds, 'stdin': False}
    d = tempfile.mkdtemp(prefix='strata-rdiff-', dir=base_dir)
    try:
        res = run_one(our_qemu_io, case, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert res != 'timeout'
    assert res[2] >= 0, res


# ---- exploration driver ----

def explore(ref, our, first, count, out_path):
    base = tempfile.mkdtemp(prefix='strata-rdiff-', dir='/var/tmp')
    diffs, crashes = [], []
    try:
        for seed in range(first, first + count):
            case = gen(seed)
            exp, act = run_pair(ref, our, case, base)
            if exp in ('crash', 'timeout'):
                crashes.append({'case': case, 'ref': exp})
            elif act != exp:
                diffs.append({'case': case, 'ref': exp, 'our': act})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    with open(out_path, 'w') as f:
        json.dump({'diffs': diffs, 'crashes': crashes}, f, indent=1)
    print(f'{len(diffs)} differences, {len(crashes)} reference crashes')


if __name__ == '__main__':
    explore(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
            sys.argv[5] if len(sys.argv) > 5 else 'rdiff.json')
