"""Differential inspection and repair of qcow2 images left by a killed
writer.

A seed picks a writer (the reference qemu-img/qemu-io 10.0, or the
system's older 7.2 from /usr/bin, where users' images also come from),
image options (512 B to 2 MiB clusters, extended L2, compat=0.10,
refcount widths 1 to 64, lazy refcounts, zstd, a backing file, an
external data file, preallocation=metadata), a few complete steps and
one last step the writer is killed in: qemu-io writes (plain,
compressed, zero, discard, unaligned; cache none or writeback),
convert (-c, -W, -o preallocation), commit, rebase, resize (also
--shrink), amend (compat, refcount_bits), snapshot -c/-d, bitmap
--add/--merge or check -r all.  The kill is a SIGKILL after a seeded
delay, or at the Nth pwrite of a thread (strace -e inject=
pwrite64:signal=KILL:when=N+; QEMU's worker threads count their own
writes, so the point is the same from run to run only where one thread
writes).

On copies of what was left both tools run info (human and JSON),
check (human and JSON), convert to raw (the data either tool reads),
check -r leaks, check -r all and a read-write open (qemu-io write, the
repair of a dirty lazy-refcounts image).  Exit status and output must
match; the files each leaves must be byte-identical, or else check the
same under the reference and compare equal under it.

Run as a script for a long exploration:
    python3 test_crash_check_diff.py REFDIR OURDIR FIRST COUNT [OUT.json]
(OURDIR holds qemu-img and qemu-io: copies of the built tools;
CRASHDIFF_KEEP=DIR keeps what the writer left for each differing seed).
"""
import hashlib
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
import difftools  # noqa: E402
from conftest import normalize  # noqa: E402
from difftools import judge, settle  # noqa: E402

OLD_BIN = '/usr/bin'
TIMEOUT = 30
SIZE = 4 << 20
FILES = ['img.qcow2', 'back.qcow2', 'df.raw', 'src.raw', 'back2.qcow2']

# ---- the cases ----


def rnd_opts(r, writer):
    """qcow2 creation options for @writer ('ref' or 'old')."""
    cs = r.choice([512, 4096, 65536, 65536, 65536, 2 << 20])
    o = {'cluster_size': str(cs)}
    if r.random() < 0.15:
        o['compat'] = '0.10'
        return o
    if cs >= 16384 and r.random() < 0.25:
        o['extended_l2'] = 'on'
    o['refcount_bits'] = str(r.choice([1, 2, 4, 8, 16, 16, 16, 32, 64]))
    if r.random() < 0.3:
        o['lazy_refcounts'] = 'on'
    if writer == 'ref' and r.random() < 0.25:
        o['compression_type'] = 'zstd'
    if r.random() < 0.15:
        o['data_file'] = 'df.raw'
    return o


def rnd_range(r, cs, aligned):
    """(offset, length) inside the image; cluster-aligned if @aligned."""
    if aligned:
        n = SIZE // cs
        first = r.randrange(n)
        count = r.randint(1, max(1, min(n - first, (256 << 10) // cs)))
        return first * cs, count * cs
    off = r.randrange(0, SIZE - 4096)
    return off, r.randint(1, min(SIZE - off, 300000))


def io_cmds(r, im):
    """A qemu-io command list: plain, compressed, zero, discard and
    unaligned writes, sometimes a flush between them."""
    cs = int(im['opts']['cluster_size'])
    out = []
    for _ in range(r.randint(1, 6)):
        k = r.choice(['w', 'w', 'wu', 'c', 'z', 'zu', 'd', 'f'])
        if k == 'c' and ('data_file' in im['opts'] or cs > 65536):
            k = 'w'
        off, n = rnd_range(r, cs, k in ('w', 'c', 'z', 'd'))
        p = r.randint(1, 255)
        out.append({'w': f'write -P {p} {off} {n}',
                    'wu': f'write -P {p} {off} {n}',
                    'c': f'write -c -P {p} {off} {min(n, 4 * cs)}',
                    'z': f'write -z {off} {n}', 'zu': f'write -z {off} {n}',
                    'd': f'discard {off} {n}', 'f': 'flush'}[k])
    return out


def step_io(r, im):
    cache = r.choice(['writeback', 'writeback', 'none'])
    return ['io', cache, io_cmds(r, im)]


def step_resize(r, im):
    if r.random() < 0.5:
        return ['img', 'resize', '-f', 'qcow2', 'img.qcow2', '+1M']
    return ['img', 'resize', '-f', 'qcow2', '--shrink', 'img.qcow2',
            str(r.choice([2 << 20, 3 << 20, (3 << 20) + 65536]))]


def step_amend(r, im):
    o = im['opts']
    if o.get('compat') == '0.10':
        return ['img', 'amend', '-f', 'qcow2', '-o', 'compat=1.1',
                'img.qcow2']
    if r.random() < 0.5 and 'extended_l2' not in o and \
            'data_file' not in o and 'compression_type' not in o:
        return ['img', 'amend', '-f', 'qcow2', '-o', 'compat=0.10',
                'img.qcow2']
    if o.get('refcount_bits') in ('1', '2', '4') or \
            int(o['cluster_size']) > 65536:
        # the reference's amend of refcounts narrower than a byte, or
        # of 2 MiB clusters, does not end in 30 s (it spins at full CPU;
        # 10.0.2 and 7.2 alike)
        return step_snapshot(r, im)
    bits = r.choice([1, 2, 4, 8, 16, 32, 64])
    o['refcount_bits'] = str(bits)
    return ['img', 'amend', '-f', 'qcow2', '-o', f'refcount_bits={bits}',
            'img.qcow2']


def step_snapshot(r, im):
    if r.random() < 0.6 or not im.get('snaps'):
        im.setdefault('snaps', []).append(f's{len(im["snaps"])}')
        return ['img', 'snapshot', '-c', im['snaps'][-1], 'img.qcow2']
    return ['img', 'snapshot', '-d', im['snaps'].pop(0), 'img.qcow2']


def step_bitmap(r, im):
    if im['opts'].get('compat') == '0.10':
        return step_snapshot(r, im)
    if not im.get('bitmaps') or r.random() < 0.5:
        im.setdefault('bitmaps', []).append(f'b{len(im["bitmaps"])}')
        return ['img', 'bitmap', '--add', 'img.qcow2', im['bitmaps'][-1]]
    a, b = r.choice(im['bitmaps']), r.choice(im['bitmaps'])
    return ['img', 'bitmap', '--merge', a, 'img.qcow2', b]


def step_check(r, im):
    return ['img', 'check', '-r', 'all', 'img.qcow2']


def step_rebase(r, im):
    if im['back'] and r.random() < 0.6:
        return ['img', 'rebase', '-f', 'qcow2', '-b', 'back2.qcow2', '-F',
                'qcow2', 'img.qcow2']
    if im['back']:
        im['back'] = False
        return ['img', 'rebase', '-f', 'qcow2', '-b', '', 'img.qcow2']
    return step_io(r, im)


def step_commit(r, im):
    if not im['back']:
        return step_io(r, im)
    return ['img', 'commit', '-f', 'qcow2', 'img.qcow2']


STEPS = [step_io, step_io, step_io, step_resize, step_amend, step_snapshot,
         step_bitmap, step_check, step_rebase, step_commit]


def convert_step(r, im):
    """The image made by a killed convert from src.raw."""
    opts = ','.join(f'{k}={v}' for k, v in im['opts'].items()
                    if k != 'data_file')
    args = ['img', 'convert', '-f', 'raw', '-O', 'qcow2', '-o', opts]
    if r.random() < 0.4 and int(im['opts']['cluster_size']) <= 65536:
        args.append('-c')
    elif r.random() < 0.3:
        args += ['-o', 'preallocation=metadata']
    if r.random() < 0.4:
        args.append('-W')
    return args + ['src.raw', 'img.qcow2']


TIGHT = 2000


def gen(seed):
    r = random.Random(seed)
    writer = r.choice(['ref', 'ref', 'old'])
    im = {'opts': rnd_opts(r, writer), 'snaps': [], 'bitmaps': []}
    im['back'] = 'data_file' not in im['opts'] and r.random() < 0.3
    if r.random() < 0.12 and 'data_file' not in im['opts'] and \
            (not im['back'] or 'extended_l2' in im['opts']):
        im['prealloc'] = True
    case = {'seed': seed, 'writer': writer,
            'image': dict(im, opts=dict(im['opts']))}
    if r.random() < 0.12:
        im['opts'].pop('data_file', None)
        case['image'] = dict(im, opts=dict(im['opts']))
        case['convert'] = True
        steps = [convert_step(r, im)]
    else:
        steps = [r.choice(STEPS)(r, im) for _ in range(r.randint(1, 4))]
    case['steps'] = steps
    # from TIGHT on, kill points where most writers are still at work
    # (a small image's writer ends in 0.1 to 0.5 s)
    tight = seed >= TIGHT
    if r.random() < 0.5:
        case['kill'] = ['delay', round(r.uniform(0.0, 0.06 if tight
                                                  else 0.25), 3)]
    else:
        case['kill'] = ['nth', r.randint(1, 5 if tight else 12)]
    return case


# ---- making what the writer left ----


def tools(writer, ref_dir):
    d = ref_dir if writer == 'ref' else OLD_BIN
    return os.path.join(d, 'qemu-img'), os.path.join(d, 'qemu-io')


def sh(argv, d, check=True):
    res = subprocess.run(argv, cwd=d, capture_output=True, text=True,
                         timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    if check and res.returncode:
        raise RuntimeError(f'{argv}: {res.returncode} {res.stderr}')
    return res


def create(img, d, name, im, backing=False):
    opts = ','.join(f'{k}={v}' for k, v in im['opts'].items())
    if im.get('prealloc'):
        opts += ',preallocation=metadata'
    back = ['-b', 'back.qcow2', '-F', 'qcow2'] if backing else []
    sh([img, 'create', '-q', '-f', 'qcow2', '-o', opts, *back, name,
        str(SIZE)], d)


def setup_files(img, io, d, case):
    """The files before the steps: backing files, a raw source."""
    im = case['image']
    if case.get('convert'):
        sh([img, 'create', '-q', '-f', 'raw', 'src.raw', str(SIZE)], d)
        sh([io, '-f', 'raw', '-c', 'write -P 0x5a 0 1M', '-c',
            'write -P 0x6b 2M 512k', 'src.raw'], d)
        return
    if im['back']:
        b = {'opts': {k: v for k, v in im['opts'].items()
                      if k != 'data_file'}}
        create(img, d, 'back.qcow2', b)
        sh([io, '-c', 'write -P 0x21 0 3M', 'back.qcow2'], d)
        sh([img, 'create', '-q', '-f', 'qcow2', 'back2.qcow2', str(SIZE)], d)
        sh([io, '-c', 'write -P 0x31 1M 1M', 'back2.qcow2'], d)
    create(img, d, 'img.qcow2', im, im['back'])
    sh([io, '-c', 'write -P 0x11 0 512k', '-c', 'write -P 0x12 3M 256k',
        'img.qcow2'], d)


def step_argv(img, io, step):
    if step[0] == 'io':
        argv = [io, '-t', step[1]]
        for c in step[2]:
            argv += ['-c', c]
        return argv + ['img.qcow2']
    return [img] + step[1:]


def killed_run(argv, d, kill):
    """@argv run in @d and killed as @kill says; its exit status.  The
    writer has a process group of its own, killed whole (strace and the
    program it traces) when the delay or the time limit is over."""
    wait = kill[1] if kill[0] == 'delay' else TIMEOUT
    if kill[0] == 'nth':
        argv = ['strace', '-f', '-qq', '-o', '/dev/null', '-e',
                'trace=pwrite64,pwritev,pwritev2', '-e',
                f'inject=pwrite64,pwritev,pwritev2:signal=KILL:when='
                f'{kill[1]}+'] + argv
    p = subprocess.Popen(argv, cwd=d, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        p.wait(wait)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        if kill[0] == 'nth':
            raise RuntimeError(f'{argv}: not done in {TIMEOUT} s')
    return p.wait(TIMEOUT)


def leave_image(ref_dir, d, case):
    """The writer's files in @d, its last step killed."""
    img, io = tools(case['writer'], ref_dir)
    setup_files(img, io, d, case)
    for step in case['steps'][:-1]:
        sh(step_argv(img, io, step), d, check=False)
    return killed_run(step_argv(img, io, case['steps'][-1]), d,
                      case['kill'])


# ---- inspecting it with both tools ----

ALLOC = re.compile(r'((?:disk size: |"actual-size": ))'
                   r'(?:\d+(?:\.\d+)? [KMGT]iB|\d+ B|\d+)')
BLOCK = re.compile(r"'?#block\d+'?")


def norm(text, d):
    text = BLOCK.sub('#block', ALLOC.sub(r'\1A', text.replace(d, 'DIR')))
    return normalize(text)


def targets(case):
    """The qcow2 files the writer changed."""
    if case['steps'][-1][:2] == ['img', 'commit']:
        return ['img.qcow2', 'back.qcow2']
    return ['img.qcow2']


def digest(path):
    if not os.path.exists(path):
        return None
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def inspections(t):
    """(name, argv after the program, changes files) for target @t."""
    return [('info', ['img', 'info', t], False),
            ('info json', ['img', 'info', '--output=json', t], False),
            ('check', ['img', 'check', t], False),
            ('check json', ['img', 'check', '--output=json', t], False),
            ('read', ['img', 'convert', '-O', 'raw', t, 'out.bin'], False),
            ('check -r leaks', ['img', 'check', '-r', 'leaks', t], True),
            ('check -r all', ['img', 'check', '-r', 'all', '--output=json',
                              t], True),
            ('open rw', ['io', '-c', 'write -P 1 0 512', '-c',
                         'read -P 1 0 512', t], True)]


def run_tool(bindir, argv, d):
    prog = os.path.join(bindir, 'qemu-img' if argv[0] == 'img'
                        else 'qemu-io')
    settle(d, FILES)
    try:
        res = subprocess.run([prog] + argv[1:], cwd=d, capture_output=True,
                             timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return ('timeout',)
    return (res.returncode, norm(res.stdout.decode(errors='replace'), d),
            norm(res.stderr.decode(errors='replace'), d))


def copy_dir(src, dst):
    shutil.rmtree(dst, ignore_errors=True)
    os.mkdir(dst)
    for f in os.listdir(src):
        subprocess.run(['cp', '--sparse=always', os.path.join(src, f), dst],
                       check=True)


def files_of(d):
    return {f: digest(os.path.join(d, f)) for f in FILES + ['out.bin']}


def relaxed(ref_dir, rd, od, t, diff):
    """Problems, if the files left differ beyond a layout the reference
    accepts: a check result and the data under its compare."""
    img = os.path.join(ref_dir, 'qemu-img')
    if any(not f.endswith('.qcow2') for f in diff):
        return ['bytes', diff]
    out = []
    for f in diff:
        a, b = (sh([img, 'check', '-U', f], x, check=False) for x in (rd, od))
        if (a.returncode, a.stdout) != (b.returncode, b.stdout):
            out.append(['ref check', f, a.returncode, a.stdout,
                        b.returncode, b.stdout])
        c = sh([img, 'compare', '-U', os.path.join(rd, f),
                os.path.join(od, f)], rd, check=False)
        if c.returncode:
            out.append(['ref compare', f, c.returncode, c.stdout, c.stderr])
    return out


def bitmaps_snapshots(path):
    """(has a bitmaps extension, internal snapshot count) of the qcow2
    file @path."""
    with open(path, 'rb') as f:
        h = f.read(65536)
    if len(h) < 104 or h[:4] != b'QFI\xfb':
        return False, 0
    nb_sn, = struct.unpack_from('>I', h, 60)
    pos = struct.unpack_from('>I', h, 100)[0] if h[7] >= 3 else 72
    while pos + 8 <= len(h):
        magic, n = struct.unpack_from('>II', h, pos)
        if magic == 0:
            break
        if magic == 0x23852875:
            return True, nb_sn
        pos += 8 + (n + 7 & ~7)
    return False, nb_sn


def bitmaps_and_snapshots(path):
    bitmaps, snapshots = bitmaps_snapshots(path)
    return bitmaps and snapshots > 0


FREE_FAILED = 'qcow2_free_clusters failed: Invalid argument\n'


def failed_check_store(ref_dir, left, t, name, a, b, od):
    """A check -r that fails or leaves corruptions (its refcounts stay
    wrong) on an image with bitmaps: closing stores the bitmaps with
    refcounts known to be wrong.  The reference then takes clusters
    counted free that still hold guest data for the bitmap, and frees
    its new bitmap table again as the old data cluster (one failed
    free); ours allocates past the
    end, keeps the guest data, and reports every free that fails.
    Accepted where only those lines differ and ours reads as the image
    left did."""
    if not name.startswith('check -r') or a[0] not in (1, 2) or \
            not bitmaps_snapshots(os.path.join(left, t))[0] or \
            a[:2] != b[:2] or \
            a[2].replace(FREE_FAILED, '') != b[2].replace(FREE_FAILED, ''):
        return False
    img = os.path.join(ref_dir, 'qemu-img')
    return sh([img, 'compare', '-U', os.path.join(left, t), t], od,
              check=False).returncode == 0


def deliberate(ref_dir, left, t, name, od):
    """The reference's check -r of an image with persistent bitmaps
    drops every internal snapshot (docs/conformance.md); ours keeps
    them.  Accepted where the left image has both and ours leaves an
    image the reference checks clean."""
    if not name.startswith('check -r') or \
            not bitmaps_and_snapshots(os.path.join(left, t)):
        return False
    img = os.path.join(ref_dir, 'qemu-img')
    return sh([img, 'check', t], od, check=False).returncode == 0


def inspect(ref_dir, our_dir, left, work, case):
    """Both tools on copies of @left: (verdict, info)."""
    relax = []
    for t in targets(case):
        if not os.path.exists(os.path.join(left, t)):
            continue
        for name, argv, changes in inspections(t):
            rd, od = os.path.join(work, 'r'), os.path.join(work, 'o')
            copy_dir(left, rd)
            copy_dir(left, od)
            a = run_tool(ref_dir, argv, rd)
            b = run_tool(our_dir, argv, od)
            if a[0] == 'timeout' or a[0] < 0:
                return 'refcrash', [name, a]
            if b[0] == 'timeout' or b[0] < 0:
                return 'ourcrash', [name, b]
            fa, fb = files_of(rd), files_of(od)
            diff = [f for f in fa if fa[f] != fb[f]]
            if (a != b or diff) and deliberate(ref_dir, left, t, name, od):
                relax.append([t, name, 'snapshots kept'])
                continue
            if (a != b or diff) and failed_check_store(ref_dir, left, t,
                                                       name, a, b, od):
                relax.append([t, name, 'bitmaps stored past the end'])
                continue
            if a != b:
                return 'output', [t, name, a, b]
            if not diff:
                continue
            problems = relaxed(ref_dir, rd, od, t, diff)
            if problems:
                return 'image', [t, name, problems]
            relax.append([t, name, diff])
    return ('relaxed', relax) if relax else ('same', None)


def run_case(ref_dir, our_dir, case, base=None):
    top = tempfile.mkdtemp(prefix='strata-crashdiff-', dir=base)
    try:
        left = os.path.join(top, 'left')
        os.mkdir(left)
        rc = leave_image(ref_dir, left, case)
        keep = os.environ.get('CRASHDIFF_KEEP')
        if keep:
            shutil.copytree(left, os.path.join(top, 'kept'))
        verdict, info = inspect(ref_dir, our_dir, left, top, case)
        if keep and verdict not in difftools.OK:
            # what the writer left, for a look by hand (timed kills vary)
            dst = os.path.join(keep, str(case['seed']))
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(os.path.join(top, 'kept'), dst)
        return verdict, {'writer rc': rc, 'info': info}
    finally:
        shutil.rmtree(top, ignore_errors=True)


# ---- pytest part ----


@pytest.fixture(scope='module')
def dirs(bindir):
    if not os.access('/usr/bin/strace', os.X_OK):
        pytest.skip('no strace')
    yield from difftools.scratch_dirs(bindir, 'strata-crashdiff-', 'qemu-img')


def case_runs(case):
    """Whether this machine has what @case needs (the older writer)."""
    return case['writer'] == 'ref' or os.access(
        os.path.join(OLD_BIN, 'qemu-io'), os.X_OK)


# a spread of writers, options, steps and kill kinds; then what the
# exploration found: a killed snapshot -c under bitmaps (the reference's
# check -r drops the snapshots), a killed snapshot -d of a compat=0.10
# image (an L1 entry without COPIED, fixed); two of the tighter kills
SEEDS = list(range(0, 10)) + [111, 153, 2000, 2001]


@pytest.mark.parametrize('seed', SEEDS)
def test_crash_left_image(seed, dirs):
    ref, our, base = dirs
    case = gen(seed)
    if not case_runs(case):
        pytest.skip('no qemu 7.2 in /usr/bin')
    judge(case, *run_case(ref, our, case, base))


# ---- what explored seeds found, made by hand ----


def clear_l1_copied(d):
    """An interrupted snapshot deletion: the L1 entry lost COPIED while
    its table's refcount is 1 again (seed 153)."""
    with open(os.path.join(d, 'img.qcow2'), 'r+b') as f:
        h = f.read(48)
        l1, = struct.unpack_from('>Q', h, 40)
        f.seek(l1)
        e, = struct.unpack('>Q', f.read(8))
        f.seek(l1)
        f.write(struct.pack('>Q', e & ~(1 << 63)))


def set_dirty(d):
    """A lazy-refcounts writer killed before it marked its bitmaps in
    use (seed 1224): the dirty bit alone."""
    with open(os.path.join(d, 'img.qcow2'), 'r+b') as f:
        f.seek(72)
        v, = struct.unpack('>Q', f.read(8))
        f.seek(72)
        f.write(struct.pack('>Q', v | 1))


FIXED = {
    # check -r of a dirty image in check mode: once its refcounts hold,
    # the bitmaps stored at close take the first free clusters (the
    # hole the discard left), as the reference's do
    'dirty-bitmap-hole': ('cluster_size=4096,lazy_refcounts=on',
                          ['BITMAP', 'write -P 1 0 1M', 'discard 64k 64k'],
                          set_dirty),
    # a write under an L1 entry without COPIED copies the L2 table first
    # and then writes the data cluster in place, as the reference does
    'l1-not-copied': ('cluster_size=65536', ['write -P 7 0 128k'],
                      clear_l1_copied),
    'l1-not-copied-512': ('cluster_size=512,compat=0.10',
                          ['write -P 7 0 8k'], clear_l1_copied),
}


@pytest.mark.parametrize('name', sorted(FIXED))
def test_fixed_left_image(name, dirs, tmp_path):
    ref, our, base = dirs
    opts, cmds, damage = FIXED[name]
    left = str(tmp_path / 'left')
    os.mkdir(left)
    img, io = tools('ref', ref)
    sh([img, 'create', '-q', '-f', 'qcow2', '-o', opts, 'img.qcow2',
        str(SIZE)], left)
    for c in cmds:
        if c == 'BITMAP':
            sh([img, 'bitmap', '--add', 'img.qcow2', 'b0'], left)
        else:
            sh([io, '-c', c, 'img.qcow2'], left)
    damage(left)
    case = {'seed': name, 'steps': [['io', 'writeback', cmds]]}
    judge(case, *inspect(ref, our, left, str(tmp_path), case))


# ---- exploration driver ----


if __name__ == '__main__':
    difftools.explore_main('strata-crashdiff-', gen, run_case,
                           'crashdiff.json')
