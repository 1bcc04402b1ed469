"""Randomized differential of qemu-img commands on qcow2 images that
the other layers do not reach: dd, map with --start-offset and
--max-length, compare with -s/-f/-F/-U, measure with snapshots and -o
options, info/check/map through --image-opts and json: names carrying
qcow2 open options (valid and invalid values), snapshot listings and
changes, and bench.

The reference qemu-img/qemu-io build a directory per seed: a qcow2
image a.qcow2 of a random kind (plain, extended L2, compat=0.10, 512 B
to 2 MiB clusters, compressed and zero clusters, a backing file,
internal snapshots with odd names and patched VM-state sizes, bitmaps,
an external data file), a second image b.qcow2 that differs from it at
one seeded place, a raw copy a.raw and an odd-sized raw file r.raw.
Both programs run the same seeded command list on copies of that
directory; stdout, stderr (directory, timing and dates normalised),
exit status and every file's bytes must match.  Where a command makes
the bytes depend on the clock or on thread timing (snapshot -c, bench
-w with more than one request in flight), an image must instead
compare equal, check clean and map the same under the reference.

Run as a script for a long exploration:
    python3 test_cmd_random_diff.py REFDIR OURDIR FIRST COUNT [OUT.json]
"""
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_io_random_diff import digest  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import difftools  # noqa: E402
from difftools import OK, judge, ref_img, settle  # noqa: E402

TIMEOUT = 60
FILES = ['a.qcow2', 'b.qcow2', 'a.raw', 'r.raw', 'a.data', 'base.qcow2',
         'base.raw', 'o.raw', 'o.qcow2', 'o.bin']

# ---- the images ----

KINDS = {
    'plain': {},
    'extl2': {'extended_l2': 'on'},
    'extl2_2m': {'extended_l2': 'on', 'cluster_size': '2M'},
    'v2': {'compat': '0.10'},
    'c512': {'cluster_size': '512'},
    'c4k': {'cluster_size': '4k'},
    'c2m': {'cluster_size': '2M'},
    'extl2_16k': {'extended_l2': 'on', 'cluster_size': '16k'},
    'v2_512': {'compat': '0.10', 'cluster_size': '512'},
    'data': {'data_file': 'a.data'},
    'dataraw': {'data_file': 'a.data', 'data_file_raw': 'on'},
    'zstd': {'compression_type': 'zstd', 'cluster_size': '4k'},
}


def cluster_of(opts):
    return {'512': 512, '4k': 4096, '16k': 16384, '2M': 2 << 20}.get(
        opts.get('cluster_size'), 65536)


def rnd_image(r):
    kind = r.choice(sorted(KINDS))
    opts = dict(KINDS[kind])
    cs = cluster_of(opts)
    # sizes past an L2 table's end for small clusters, odd ones too
    size = r.choice([1 << 20, (1 << 20) + 512, 3 << 19, 100352, 65536 * 5 - 512,
                     (2 << 20) + 4096 if cs <= 4096 else 1 << 20])
    back = None
    if 'data_file' not in opts and r.random() < 0.3:
        back = r.choice(['qcow2', 'raw'])
    writes = []
    for _ in range(r.randrange(1, 5)):
        off = r.randrange(0, size // 512) * 512
        n = min(r.choice([512, 4096, 65536, 3000 * 512 // 512 * 1,
                          r.randrange(1, 300) * 512]), size - off)
        k = r.random()
        if k < 0.6:
            writes.append(f'write -P 0x{r.randrange(1, 256):x} {off} {n}')
        elif k < 0.8:
            writes.append(f'write -z {off} {n}')
        else:
            writes.append(f'discard {off} {n}')
    if 'data_file' not in opts and r.random() < 0.35:
        c = r.randrange(0, max(1, size // cs)) * cs
        writes.append(f'write -c -P 0x{r.randrange(1, 256):x} {c} '
                      f'{min(cs, size - c)}')
    snaps = []
    if 'data_file' not in opts and r.random() < 0.35:
        for i in range(r.randrange(1, 6)):
            snaps.append(r.choice(['s', 'snap' + str(i), 'x' * r.randrange(
                1, 40), 'name with spaces', '1', str(i + 2), 'sn-' + 'y' * 17,
                'ä', '']))
    patch = None
    if snaps and r.random() < 0.5:
        patch = {'vm': r.choice([0, 1, 1000, 1 << 20, 5 << 30, 123456789]),
                 'clock': r.randrange(0, 1 << 45), 'icount': r.choice(
                     [None, 0, 77, 1 << 40])}
    bitmaps = r.randrange(0, 3) if r.random() < 0.25 and \
        opts.get('compat') != '0.10' else 0
    after = [f'write -P 0x{r.randrange(1, 256):x} {r.randrange(0, size // 4096) * 4096} 4096'
             for _ in range(r.randrange(0, 2))] if snaps else []
    diff = r.choice(['none', 'data', 'zero', 'size', 'tail', 'compressed'])
    doff = r.randrange(0, size // 512) * 512 + r.choice([0, 0, 1, 100])
    return {'opts': opts, 'kind': kind, 'size': size, 'back': back,
            'writes': writes, 'snaps': snaps, 'patch': patch,
            'bitmaps': bitmaps, 'after': after, 'diff': diff,
            'doff': min(doff, size - 1), 'rsize': r.choice(
                [100000, 65536, 1, 0, 4097, 1 << 20, 12345])}


def patch_snapshots(path, patch):
    """Odd VM-state sizes and clocks in the snapshot table, which
    qemu-img itself never writes."""
    with open(path, 'r+b') as f:
        hdr = f.read(72)
        nb, off = struct.unpack('>IQ', hdr[60:72])
        for _ in range(nb):
            f.seek(off)
            e = f.read(40)
            id_len, name_len = struct.unpack('>HH', e[12:16])
            extra = struct.unpack('>I', e[36:40])[0]
            f.seek(off + 24)
            f.write(struct.pack('>QI', patch['clock'], patch['vm'] & 0xffffffff))
            if extra >= 16:
                f.seek(off + 40)
                f.write(struct.pack('>Q', patch['vm']))
            if extra >= 24:
                f.seek(off + 56)
                f.write(struct.pack('>Q', 0xffffffffffffffff
                                    if patch['icount'] is None
                                    else patch['icount']))
            n = 40 + extra + id_len + name_len
            off += (n + 7) & ~7


def setup_dir(ref_dir, d, im):
    img = os.path.join(ref_dir, 'qemu-img')
    io = os.path.join(ref_dir, 'qemu-io')

    def sh(argv, check=True):
        res = subprocess.run(argv, cwd=d, capture_output=True, timeout=60)
        assert res.returncode == 0 or not check, (argv, res)
    size = im['size']
    opts = dict(im['opts'])
    if im['back']:
        b = 'base.' + im['back']
        sh([img, 'create', '-q', '-f', im['back'], b, str(size)])
        sh([io, '-f', im['back'], '-c', 'write -P 0x5a 0 64k', '-c',
            f'write -P 0x6b {size // 2} 4096', b])
        opts.update(backing_file=b, backing_fmt=im['back'])
    o = ','.join(f'{k}={v}' for k, v in opts.items())
    sh([img, 'create', '-q', '-f', 'qcow2'] + (['-o', o] if o else []) +
       ['a.qcow2', str(size)])
    for w in im['writes']:
        sh([io, '-f', 'qcow2', '-c', w, 'a.qcow2'], check=False)
    for s in im['snaps']:
        sh([img, 'snapshot', '-c', s, 'a.qcow2'], check=False)
    if im['patch']:
        patch_snapshots(os.path.join(d, 'a.qcow2'), im['patch'])
    for w in im['after']:
        sh([io, '-f', 'qcow2', '-c', w, 'a.qcow2'], check=False)
    for i in range(im['bitmaps']):
        sh([img, 'bitmap', '--add', '-g', '64k' if i else '512k', 'a.qcow2',
            f'bm{i}'], check=False)
    sh([img, 'convert', '-f', 'qcow2', '-O', 'raw', 'a.qcow2', 'a.raw'])
    shutil.copy(os.path.join(d, 'a.qcow2'), os.path.join(d, 'b.qcow2'))
    if 'data_file' in opts:
        # b.qcow2 would share a.data: give it its own copy as raw
        os.remove(os.path.join(d, 'b.qcow2'))
        sh([img, 'convert', '-O', 'qcow2', 'a.qcow2', 'b.qcow2'])
    diff, doff = im['diff'], im['doff']
    if diff == 'data':
        sh([io, '-f', 'qcow2', '-c', f'write -P 0xc3 {doff} 1', 'b.qcow2'])
    elif diff == 'zero':
        sh([io, '-f', 'qcow2', '-c', f'write -z {doff // 512 * 512} 512',
            'b.qcow2'])
    elif diff == 'size':
        # (refused for a v2 image with snapshots)
        sh([img, 'resize', '-q', '-f', 'qcow2', 'b.qcow2', '+64k'],
           check=False)
        sh([io, '-f', 'qcow2', '-c', f'write -P {doff % 2} {size} 512',
            'b.qcow2'], check=False)
    elif diff == 'tail':
        sh([img, 'resize', '-q', '-f', 'qcow2', '--shrink', 'b.qcow2',
            str(size - 512 * (1 + doff % 7))], check=False)
    elif diff == 'compressed':
        sh([io, '-f', 'qcow2', '-c', 'write -c -P 0x3c 0 64k', 'b.qcow2'],
           check=False)
    with open(os.path.join(d, 'r.raw'), 'wb') as f:
        f.write((bytes(range(256)) * (im['rsize'] // 256 + 1))[:im['rsize']])


# ---- the commands ----

def nums(im):
    """Offsets and lengths around the image's interesting edges."""
    cs = cluster_of(im['opts'])
    l2 = cs // (16 if im['opts'].get('extended_l2') else 8) * cs
    sub = cs // 32
    size = im['size']
    return [0, 1, 511, 512, 513, 4096, cs - 1, cs, cs + 1, cs + sub, sub,
            sub * 3 - 1, l2 - 512, l2, l2 + 512, l2 - 1, size - 1, size,
            size + 1, size - 4096, size // 2 + 7, 2 * size, 1 << 62]


def rnd_num(r, im, bad=0.05):
    if r.random() < bad:
        return r.choice(['-1', 'x', '1k', '0x200', '1.5k', '1M', '9E',
                         '9223372036854775807', ''])
    return str(r.choice(nums(im)))


def rnd_source(r, im):
    """An image argument: (options, filename) naming a.qcow2 or b.qcow2
    in one of the ways qemu-img takes."""
    f = r.choice(['a.qcow2', 'a.qcow2', 'b.qcow2'])
    c = r.random()
    if c < 0.4:
        return [], f
    if c < 0.7:
        return ['-f', 'qcow2'], f
    if c < 0.85:
        return ['--image-opts'], f'driver=qcow2,file.filename={f}'
    return [], 'json:{"driver": "qcow2", "file": {"driver": "file", ' \
        f'"filename": "{f}"}}}}'


def cmd_dd(r, im):
    a = ['dd']
    src = r.choice(['a.qcow2', 'a.qcow2', 'r.raw', 'b.qcow2', 'a.raw',
                    'nosuch'])
    if r.random() < 0.6:
        a += ['-f', 'raw' if src.endswith('raw') and r.random() < 0.9
              else 'qcow2']
    elif r.random() < 0.2:
        a += ['--image-opts']
        src = f'driver=qcow2,file.filename={src}'
    out_fmt = r.choice([None, 'raw', 'qcow2', 'qcow2', 'bogus'])
    if out_fmt:
        a += ['-O', out_fmt]
    if r.random() < 0.2:
        a.append('-U')
    args = []
    if r.random() < 0.8:
        args.append('bs=' + r.choice(['512', '1', '4k', '64k', '65537',
                                      '1M', '3000', '0', 'x', '2G', '4k',
                                      str(cluster_of(im['opts']))]))
    if r.random() < 0.5 or 'bs=1' in args:
        # (byte-sized blocks over a whole image take minutes)
        args.append('count=' + r.choice(['0', '1', '3', '100', '7', '-1',
                                         'x'] + ([] if 'bs=1' in args
                                                 else ['100000'])))
    if r.random() < 0.3:
        args.append('skip=' + r.choice(['0', '1', '5', '2048', '-1',
                                        '100000', 'x']))
    if r.random() < 0.03:
        args.append(r.choice(['osize=1M', 'bogus=1', 'if', 'bs=1=2']))
    if r.random() < 0.97:
        args.append('if=' + src)
    if r.random() < 0.97:
        args.append('of=o.' + ('bin' if r.random() < 0.1 else
                               'qcow2' if out_fmt == 'qcow2' else 'raw'))
    r.shuffle(args)
    return a + args


def cmd_map(r, im):
    o, f = rnd_source(r, im)
    a = ['map'] + o
    if r.random() < 0.5:
        a.append('--output=json')
    if r.random() < 0.8:
        a += ['--start-offset', rnd_num(r, im)]
    if r.random() < 0.7:
        a += ['--max-length', rnd_num(r, im)]
    if r.random() < 0.1:
        a.append('-U')
    return a + [f]


def cmd_compare(r, im):
    names = ['a.qcow2', 'b.qcow2', 'a.raw', 'r.raw', 'base.qcow2', 'nosuch']
    x, y = r.choice(names[:4]), r.choice(names)
    a = ['compare']
    if r.random() < 0.4:
        a.append('-s')
    fx = 'raw' if x.endswith('raw') else 'qcow2'
    fy = 'raw' if y.endswith('raw') else 'qcow2'
    if r.random() < 0.4:
        a += ['-f', fx if r.random() < 0.9 else 'raw']
    if r.random() < 0.4:
        a += ['-F', fy if r.random() < 0.9 else 'qcow2']
    if r.random() < 0.2:
        a.append('-U')
    if r.random() < 0.1:
        a.append('-q')
    return a + [x, y]


MEASURE_O = ['cluster_size=512', 'cluster_size=2M', 'cluster_size=4k',
             'extended_l2=on', 'compat=0.10', 'compat=1.1',
             'preallocation=metadata', 'preallocation=full',
             'preallocation=falloc', 'data_file=x.data',
             'data_file=x.data,data_file_raw=on', 'refcount_bits=1',
             'refcount_bits=64', 'lazy_refcounts=on', 'cluster_size=3k',
             'extended_l2=on,cluster_size=16k', 'bogus=1',
             'backing_file=a.qcow2', 'encrypt.format=luks']


def cmd_measure(r, im):
    a = ['measure']
    if r.random() < 0.85:
        a += ['-O', r.choice(['qcow2', 'qcow2', 'raw', 'bogus'])]
    if r.random() < 0.5:
        a += ['-o', ','.join(r.sample(MEASURE_O, r.randrange(1, 3)))]
    if r.random() < 0.4:
        a.append('--output=json')
    c = r.random()
    if c < 0.2:
        return a + ['--size', r.choice(['1M', '0', '513', '1G', '-1', 'x',
                                        '8E', str(im['size'])])]
    if c < 0.3 and im['snaps']:
        # a snapshot by ID, by name, in -l's snapshot.id=... form
        s = r.choice(im['snaps'])
        a += ['-l', r.choice([s, '1', f'snapshot.name={s}', 'snapshot.id=1',
                              'nosuch', 'snapshot.id=1,snapshot.name=x'])]
    elif c < 0.35:
        a += ['--snapshot', r.choice(['1', 'snap0', 's'])]
    o, f = rnd_source(r, im)
    if r.random() < 0.1:
        o, f = ['-f', 'raw'], 'r.raw'
    return a + o + [f]


OPEN_OPTS = {
    'l2-cache-size': ['4k', '1M', '0', '512', 'x', '-1', '1T', '65536'],
    'refcount-cache-size': ['8k', '0', '1M', 'x'],
    'cache-size': ['256k', '0', '1', 'x', '64M'],
    'l2-cache-entry-size': ['1k', '512', '4k', '256', '3k', '2M', 'x'],
    'cache-clean-interval': ['0', '1', '10', '-1', 'x', '4294967296'],
    'overlap-check': ['all', 'none', 'cached', 'constant', 'bogus'],
    'overlap-check.template': ['all', 'none', 'x'],
    'overlap-check.main-header': ['on', 'off', 'x'],
    'discard': ['unmap', 'ignore', 'on', 'x'],
    'lazy-refcounts': ['on', 'off', 'x'],
    'pass-discard-request': ['on', 'off', 'x'],
    'pass-discard-other': ['on', 'off'],
    'discard-no-unref': ['on', 'off', 'x'],
    'read-only': ['on', 'off'],
    'bogus-option': ['1'],
    'encrypt.format': ['aes', 'luks'],
    'data-file': ['a.data', 'nosuch'],
    'backing': ['null'],
}


def cmd_open_opts(r, im):
    w = r.choice(['info', 'info', 'check', 'map'])
    f = r.choice(['a.qcow2', 'b.qcow2'])
    keys = r.sample(sorted(OPEN_OPTS), r.randrange(1, 3))
    kv = [(k, r.choice(OPEN_OPTS[k])) for k in keys]
    a = [w]
    if w != 'map' and r.random() < 0.4:
        a.append('--output=json')
    if r.random() < 0.6:
        spec = ','.join(['driver=qcow2', f'file.filename={f}'] +
                        [f'{k}={v}' for k, v in kv])
        return a + ['--image-opts', spec]
    d = {'driver': 'qcow2', 'file': {'driver': 'file', 'filename': f}}
    for k, v in kv:
        d[k] = int(v) if v.isdigit() and r.random() < 0.5 else v
    return a + ['json:' + json.dumps(d)]


def cmd_snapshot(r, im):
    names = im['snaps'] + ['1', '2', 'nosuch', 's', '']
    k = r.random()
    if k < 0.35:
        return ['snapshot', '-l'] + r.choice([[], ['-U'], ['-f', 'qcow2']]) + \
            ['a.qcow2']
    if k < 0.45:
        return ['info'] + r.choice([[], ['--output=json']]) + ['a.qcow2']
    if k < 0.65:
        return ['snapshot', '-c', r.choice(names)] + \
            r.choice([[], ['-q']]) + ['a.qcow2']
    if k < 0.85:
        return ['snapshot', '-d', r.choice(names), 'a.qcow2']
    return ['snapshot', '-a', r.choice(names), 'a.qcow2']


def cmd_bench(r, im):
    a = ['bench']
    if r.random() < 0.6:
        a += ['-f', 'qcow2']
    a += ['-c', r.choice(['1', '2', '5', '16', '0', 'x', '-1', '33'])]
    if r.random() < 0.5:
        a += ['-d', r.choice(['1', '2', '4', '0', 'x', '65'])]
    if r.random() < 0.6:
        a += ['-s', r.choice(['512', '4k', '1', '64k', '0', 'x', '3000',
                              str(cluster_of(im['opts']))])]
    if r.random() < 0.4:
        a += ['-S', r.choice(['0', '512', '4k', '64k', '1', 'x'])]
    if r.random() < 0.4:
        a += ['-o', rnd_num(r, im)]
    if r.random() < 0.5:
        a.append('-w')
        if r.random() < 0.4:
            a += ['--pattern', r.choice(['0', '1', '255', '256', 'x',
                                         '0x41', '-1'])]
        if r.random() < 0.3:
            a += ['--flush-interval', r.choice(['1', '2', '0', 'x'])]
            if r.random() < 0.5:
                a.append('--no-drain')
    elif r.random() < 0.05:
        a += ['--pattern', '1']
    if r.random() < 0.15:
        a.append('-n')
    if r.random() < 0.2:
        a += ['-i', r.choice(['threads', 'io_uring', 'native', 'x'])]
    if r.random() < 0.2:
        a += ['-t', r.choice(['none', 'writeback', 'unsafe', 'x'])]
    if r.random() < 0.1:
        a.append('-q')
    if r.random() < 0.1:
        a.append('-U')
    return a + [r.choice(['a.qcow2', 'a.qcow2', 'b.qcow2'])]


STEPS = [cmd_dd, cmd_map, cmd_map, cmd_compare, cmd_measure,
         cmd_open_opts, cmd_snapshot, cmd_bench]


def gen(seed):
    r = random.Random(seed)
    im = rnd_image(r)
    cmds = [r.choice(STEPS)(r, im) for _ in range(r.randrange(1, 5))]
    if any(c[0] == 'dd' for c in cmds) and r.random() < 0.5:
        cmds.append(['info', r.choice(['o.raw', 'o.qcow2'])])
    return {'seed': seed, 'image': im, 'cmds': cmds}


# ---- running ----

DATE = re.compile(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d')
JDATE = re.compile(r'("date-(?:n?sec)": )\d+')
DISK = re.compile(r'(disk size: ).*$', re.M)
TIMING = re.compile(r'Run completed in \d+\.\d+ seconds\.')


def clocked(cmds):
    """Whether a command's result depends on the clock or on thread
    timing: a snapshot's date, or writes in flight in parallel."""
    for c in cmds:
        if c[:2] == ['snapshot', '-c']:
            return True
        if c[0] == 'bench' and '-w' in c:
            if '-d' not in c or c[c.index('-d') + 1] not in ('1',):
                return True
    return False



ALLOC = re.compile(r'((?:disk size: |"actual-size": ))'
                   r'(?:\d+(?:\.\d+)? [KMG]iB|\d+ B|\d+)')


def norm(text, d, dates):
    # allocated sizes: how ext4 lays out a copied or freshly written file
    # (one extent-tree block more or less) is no tool's doing
    text = ALLOC.sub(r'\1A', text)
    text = TIMING.sub('Run completed in T seconds.', text.replace(d, 'DIR'))
    if dates:
        text = JDATE.sub(r'\1N', DATE.sub('DATE', text))
    return text


STDIO_REFUSED = 'qemu-img: Must specify both input and output files\n'


def deliberate(exp):
    """dd without if= or of=, or with osize=/isize=: the reference
    refuses them, strata reads stdin / writes stdout and takes Proxmox
    VE's size operands (deliberate differences, COMPAT.md)."""
    c = exp[0]
    if c[0] != 'dd':
        return False
    if re.fullmatch(r'qemu-img: unrecognized operand [io]size\n', exp[2]):
        return True
    return exp[2] == STDIO_REFUSED and not (
        any(a.startswith('if=') for a in c) and
        any(a.startswith('of=') for a in c))


def run_cmds(bindir, cmds, d):
    outs = []
    dates = clocked(cmds)
    for c in cmds:
        settle(d, FILES)
        try:
            res = subprocess.run([os.path.join(bindir, 'qemu-img')] + c,
                                 cwd=d, capture_output=True, timeout=TIMEOUT,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            outs.append('timeout')
            break
        out = res.stdout.decode(errors='replace')
        if c[0] == 'info' and c[-1].startswith('o.'):
            # how many blocks ext4 gives a file written in small pieces
            out = DISK.sub(r'\1N', out)
        outs.append((c, norm(out, d, dates),
                     norm(res.stderr.decode(errors='replace'), d, dates),
                     res.returncode))
    files = {f: digest(os.path.join(d, f)) for f in FILES}
    return outs, files



def map_shape(ref_dir, d, f):
    rc, out, err = ref_img(ref_dir, d, 'map', '--output=json', f)
    if rc:
        return rc, err
    merged = []
    for e in json.loads(out):
        e.pop('offset', None)
        e.pop('filename', None)
        last = merged[-1] if merged else None
        if last and all(last[k] == e[k] for k in e
                        if k not in ('start', 'length')) and \
                last['start'] + last['length'] == e['start']:
            last['length'] += e['length']
        else:
            merged.append(e)
    return merged


def image_problems(ref_dir, rd, od, f):
    """A clocked image: ours must check clean, compare equal to the
    reference's result and map the same (host offsets aside)."""
    problems = []
    rc = ref_img(ref_dir, od, 'check', f)
    if rc[0] and rc != ref_img(ref_dir, rd, 'check', f):
        problems.append(('check',) + rc)
    c = ref_img(ref_dir, od, 'compare', f, os.path.join(rd, f))
    if c[0]:
        problems.append(('compare',) + c)
    mr, mo = map_shape(ref_dir, rd, f), map_shape(ref_dir, od, f)
    if mr != mo:
        problems.append(('map', mr, mo))
    sr = ref_img(ref_dir, rd, 'snapshot', '-l', f)
    so = ref_img(ref_dir, od, 'snapshot', '-l', f)
    if DATE.sub('D', sr[1]) != DATE.sub('D', so[1]):
        problems.append(('snapshots', sr, so))
    return problems


def bench_stopped(c, res):
    """bench -w failing with more than one request in flight."""
    return c[0] == 'bench' and '-w' in c and len(res) > 1 and \
        'Failed request' in res[1] and \
        ('-d' not in c or c[c.index('-d') + 1] != '1')


def unfixed_bytes(case, outs):
    """Why the images' bytes may differ where the reference's own are
    not worth imitating (ours must still check clean), or None:

    - bench -w failing with more writes in flight: the reference exits
      at the first failed request, the others stopped wherever they
      were (cluster allocated, data not written yet);
    - check of an image with bitmaps and snapshots opened read-write
      (read-only=off): the reference loses the snapshot table (its
      check reports the snapshots' clusters as leaks; strata prints the
      same report but keeps the table).
    """
    im = case['image']
    for c, *res in outs:
        if bench_stopped(c, res):
            return 'bench stopped with writes in flight'
        if c[0] == 'check' and 'read-only=off' in c[-1].replace(
                '"read-only": "off"', 'read-only=off') and \
                im['bitmaps'] and im['snaps']:
            return 'read-write check loses the snapshot table'
    return None


def run_pair(ref_dir, our_dir, case, base=None):
    top = tempfile.mkdtemp(prefix='strata-cmddiff-', dir=base)
    try:
        seed_dir = os.path.join(top, 'seed')
        os.mkdir(seed_dir)
        setup_dir(ref_dir, seed_dir, case['image'])
        rd, od = os.path.join(top, 'r'), os.path.join(top, 'o')
        shutil.copytree(seed_dir, rd)
        shutil.copytree(seed_dir, od)
        exp = run_cmds(ref_dir, case['cmds'], rd)
        act = run_cmds(our_dir, case['cmds'], od)
        skip = set()        # what a deliberately different dd wrote
        for e, a in zip(exp[0], act[0]):
            if e == 'timeout' or e[3] < 0:
                return 'refcrash', e
            if a == 'timeout' or a[3] < 0:
                return 'ourcrash', a
            if deliberate(e):
                skip |= {w[3:] for w in e[0] if w.startswith('of=')}
            elif e != a and not any(f in w for f in skip for w in e[0]):
                return 'output', (e, a)
            if bench_stopped(e[0], e[1:]):
                skip.add(e[0][-1])      # its image: see unfixed_bytes()
        if len(exp[0]) != len(act[0]):
            return 'output', (exp[0], act[0])
        diff = [f for f in FILES if exp[1][f] != act[1][f] and f not in skip]
        if not diff:
            return 'same', None
        why = unfixed_bytes(case, exp[0])
        if why and all(f.endswith(('.qcow2', '.data')) for f in diff):
            problems = [p for f in diff if f.endswith('.qcow2')
                        for p in ref_img(ref_dir, od, 'check', f)[:1] if p]
            return ('image', problems) if problems else ('deliberate', why)
        if not clocked(case['cmds']) or \
                any(not f.endswith('.qcow2') for f in diff):
            return 'bytes', diff
        problems = [p for f in diff for p in image_problems(ref_dir, rd,
                                                             od, f)]
        return ('image', problems) if problems else ('relaxed', None)
    finally:
        shutil.rmtree(top, ignore_errors=True)


# ---- pytest part ----

def accept(result):
    """A deliberate difference (unfixed_bytes()) passes."""
    verdict, info = result
    return ('same', info) if verdict == 'deliberate' else (verdict, info)


@pytest.fixture(scope='module')
def dirs(bindir):
    yield from difftools.scratch_dirs(bindir, 'strata-cmddiff-', 'qemu-img')


@pytest.mark.parametrize('seed', range(1000, 1020))
def test_random_commands(seed, dirs):
    ref, our, base = dirs
    case = gen(seed)
    judge(case, *accept(run_pair(ref, our, case, base)))


def _image(kind='plain', snaps=(), bitmaps=0, **kw):
    im = {'opts': dict(KINDS[kind]), 'kind': kind, 'size': 1 << 20,
          'back': None, 'writes': ['write -P 0x11 0 64k'],
          'snaps': list(snaps), 'patch': None, 'bitmaps': bitmaps,
          'after': [], 'diff': 'data', 'doff': 4096, 'rsize': 100000}
    im.update(kw)
    return im


# Differences the generator found, fixed (seed in the comment).
FIXED = [
    # encrypt.format on an unencrypted image names the mismatch (1037);
    # encrypt.key-secret is taken and kept in the json: name
    (_image(), [['info', '--image-opts', 'driver=qcow2,file.filename='
                 'a.qcow2,cache-clean-interval=1,encrypt.format=aes'],
                ['map', 'json:{"driver": "qcow2", "file": {"driver": '
                 '"file", "filename": "a.qcow2"}, "encrypt.format": "luks"}'],
                ['info', '--image-opts', 'driver=qcow2,file.filename='
                 'a.qcow2,encrypt.key-secret=s9'],
                ['info', '--image-opts', 'driver=qcow2,file.filename='
                 'a.qcow2,encrypt=1']]),
    # snapshot -a on an image with a data file: ENOTSUP before the
    # search (1111)
    (_image('dataraw'), [['snapshot', '-a', '2', 'a.qcow2'],
                         ['snapshot', '-a', 's', 'a.qcow2']]),
    # every option's type is checked before any value is used (1220, 1305)
    (_image(), [['check', '--image-opts', 'driver=qcow2,file.filename='
                 'b.qcow2,l2-cache-entry-size=2M,discard-no-unref=x'],
                ['check', '--image-opts', 'driver=qcow2,file.filename='
                 'b.qcow2,overlap-check.main-header=x,'
                 'overlap-check.template=x'],
                ['info', '--image-opts', 'driver=qcow2,file.filename='
                 'a.qcow2,cache-clean-interval=y,l2-cache-size=x']]),
    # measure with LUKS encryption: the key is asked for (1373); the
    # header's size counts
    (_image('c2m'), [['measure', '-O', 'qcow2', '-o', 'encrypt.format=luks',
                      '--output=json', '-f', 'qcow2', 'a.qcow2'],
                     ['measure', '--object', 'secret,id=s0,data=x', '-O',
                      'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret'
                      '=s0,cluster_size=512', '--size', '1M'],
                     ['measure', '--object', 'secret,id=s0,data=x', '-O',
                      'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret'
                      '=s0,encrypt.cipher-alg=aes-128', 'a.qcow2'],
                     ['measure', '-O', 'qcow2', '-o', 'encrypt.format=aes',
                      '--size', '1M']]),
    # an l2-cache-size beyond the disk's tables is cut to them (2614)
    (_image('c512', size=100352), [
        ['info', 'json:{"driver": "qcow2", "file": {"driver": "file", '
         '"filename": "a.qcow2"}, "l2-cache-size": "1T", "read-only": "off"}'],
        ['map', '--image-opts', 'driver=qcow2,file.filename=a.qcow2,'
         'l2-cache-size=1P'],
        ['check', '--image-opts', 'driver=qcow2,file.filename=a.qcow2,'
         'l2-cache-size=1T,cache-size=1M'],
        ['check', '--image-opts', 'driver=qcow2,file.filename=a.qcow2,'
         'cache-size=1M,l2-cache-size=512k']]),
    # info opening an image with a data file and bitmaps read-write (no
    # data file without I/O): the bitmaps are written back at close (3002)
    (_image('data', bitmaps=1),
     [['info', '--output=json', '--image-opts', 'driver=qcow2,'
       'file.filename=a.qcow2,read-only=off,cache-size=256k'],
      ['info', 'a.qcow2']]),
    # a run continuing the host range into a refcount block not made
    # yet: the block goes at its boundary, the run stops there (7481)
    (_image('c512', snaps=['a', 'b'], writes=[
        'write -P 0x36 429568 512', 'write -c -P 0x5d 662016 512']),
     [['bench', '-c', '33', '-d', '1', '-s', '4k', '-o', '511', '-w',
       'a.qcow2'], ['map', '--output=json', 'a.qcow2']]),
    # bench failing part-way exits without writing the driver's caches
    # back; flushes come when the requests left are a multiple of the
    # interval (9635)
    (_image(), [['bench', '-f', 'qcow2', '-c', '33', '-d', '1', '-s', '64k',
                 '-o', '513', '-w', 'a.qcow2'], ['map', 'a.qcow2']]),
    (_image(), [['bench', '-c', '33', '-d', '1', '-s', '64k', '-o', '513',
                 '-w', '--flush-interval', '5', 'a.qcow2'],
                ['map', 'a.qcow2']]),
    (_image(), [['bench', '-c', '33', '-d', '1', '-s', '64k', '-o', '513',
                 '-w', '--flush-interval', '2', 'a.qcow2'],
                ['bench', '-c', '20', '-d', '2', '-s', '4k', '-w',
                 '--flush-interval', '3', '--pattern', '7', 'b.qcow2']]),
    # a read-write open marks the bitmaps in-use, and info shows it (1474)
    (_image('c4k', bitmaps=2),
     [['info', '--output=json', 'json:{"driver": "qcow2", "file": {"driver":'
       ' "file", "filename": "a.qcow2"}, "read-only": "off"}']]),
]


@pytest.mark.parametrize('image,cmds', FIXED,
                         ids=[' '.join(c[0][:2]) for _, c in FIXED])
def test_fixed_difference(image, cmds, dirs):
    ref, our, base = dirs
    case = {'seed': 0, 'image': image, 'cmds': cmds}
    verdict, info = run_pair(ref, our, case, base)
    assert verdict in OK, (case, verdict, info)


def run_both(ref, our, d, argv):
    outs = []
    for b in (ref, our):
        r = subprocess.run([os.path.join(b, 'qemu-img')] + argv, cwd=d,
                           capture_output=True, text=True, timeout=60)
        outs.append((DISK.sub('', r.stdout), r.stderr.replace(d, 'DIR'),
                     r.returncode))
    return outs


@pytest.mark.parametrize('method', ['aes', 'luks'])
def test_encrypted_image_open_options(method, dirs):
    """encrypt.* options on encrypted images: a format other than the
    header's, key options neither method knows, a missing key; info's
    "encrypted" and (AES) "encrypt" lines."""
    ref, our, base = dirs
    d = tempfile.mkdtemp(dir=base)
    subprocess.run([os.path.join(ref, 'qemu-img'), 'create', '-q', '-f',
                    'qcow2', '--object', 'secret,id=s0,data=abc', '-o',
                    f'encrypt.format={method},encrypt.key-secret=s0',
                    'e.qcow2', '1M'], cwd=d, check=True)
    for o in ['encrypt.format=luks', 'encrypt.format=aes',
              'encrypt.format=bogus', 'encrypt.foo=1', 'encrypt=1',
              'encrypt.key-secret=s9', 'encryption=on', '']:
        for cmd in ('info', 'map'):
            if cmd == 'map' and o == 'encrypt.key-secret=s9':
                # the reference looks the secret up and decrypts;
                # strata has no secrets in the block layer yet
                continue
            spec = 'driver=qcow2,file.filename=e.qcow2' + (',' + o if o
                                                            else '')
            exp, act = run_both(ref, our, d, [cmd, '--image-opts', spec])
            # (info does not describe a LUKS header yet: there only the
            # outcome and the messages are compared)
            n = 0 if method == 'aes' else 1
            assert exp[n:] == act[n:], (cmd, o)


# ---- exploration driver ----

if __name__ == '__main__':
    difftools.explore_main(
        'strata-cmddiff-', gen, run_pair, 'cmddiff.json',
        lambda case, v: 'relaxed' if v == 'deliberate' else v)
