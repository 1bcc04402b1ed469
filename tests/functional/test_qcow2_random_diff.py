"""Randomized differential test of strata-io and strata-img on qcow2.

qemu-io layer: the reference qemu-img creates a small qcow2 image with a
random option set (compat, cluster_size, extended_l2, refcount_bits,
lazy_refcounts, preallocation, compression_type, a qcow2 or raw backing
file, an external data file) and writes a few chunks into it; a copy of
that directory is given to each qemu-io, with a seeded command sequence
(write/read with -P, -z with and without -u, discard, write -c, aio_write
+ aio_flush, map, alloc, truncate, flush, reopen, length, info), run on
the image either by name or through an --image-opts qcow2 graph (cache
sizes, discard-no-unref, pass-discard-*, overlap-check,
cache-clean-interval, qcow2 over blkdebug align=).  stdout, stderr (as
normalised by the raw test) and exit status must match.  Then the images:

- byte-identical files (qcow2, data file) are the target and what most
  sequences get;
- where the bytes differ, what must hold is: the reference `qemu-img
  compare` finds both results equal, the reference `qemu-img check`
  finds ours clean (leaks included), and `qemu-img map --output=json`
  matches on every field but the host offsets ("offset" and the
  host-file "filename" are dropped).  BYTE_RELAXED says when a byte
  difference is accepted; any other is reported.

qemu-img layer: random `create -f qcow2 -o ...` option sets (valid and
invalid) must give the same output and the same bytes; `info`, `map`,
`check` (human and JSON) and `measure` on those images and `convert`
with random options between raw/qcow2 pairs give the same output, and
the converted images compare equal and check clean.

Cases where the reference dies on a signal are skipped: qcow2 with
512-byte clusters over blkdebug align=4096 kills the reference with
SIGFPE in many sequences.  Left (rare in explorations): byte differences
with 512-byte clusters after shrinks with lazy refcounts or metadata
preallocation; in the qemu-img layer, see
img_known_difference().

Run as a script for a long exploration:
    python3 test_qcow2_random_diff.py REFDIR OURDIR FIRST COUNT [OUT.json]
        [io|io2|img|img2]
where REFDIR/OURDIR hold qemu-io and qemu-img.  io2 and img2 are the
extended generators (L2 table ends, discard options; resize and amend
in place): see gen2() and gen_img2().
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_io_random_diff import (  # noqa: E402
    norm, rnd_flags, GOOD_NUMS, PATTERNS, digest)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import difftools  # noqa: E402
from difftools import OK, judge, ref_img, settle  # noqa: E402

SIZE = 64 * 1024
TIMEOUT = 30

# ---- image set-up ----


def rnd_create_opts(r):
    """A valid option set for the reference's qcow2 create."""
    o = {}
    compat = r.choice(['1.1', '1.1', '0.10'])
    o['compat'] = compat
    cs = r.choice(['512', '4k', '4k', '64k', '64k', '16k'])
    if r.random() < 0.8:
        o['cluster_size'] = cs
    if compat == '1.1':
        if r.random() < 0.25 and cs in ('16k', '64k'):
            o['extended_l2'] = 'on'
        if r.random() < 0.2:
            o['lazy_refcounts'] = 'on'
        if r.random() < 0.2:
            o['compression_type'] = 'zstd'
    if r.random() < 0.25:
        o['refcount_bits'] = r.choice(['1', '2', '4', '8', '32', '64'] if
                                      compat == '1.1' else ['16'])
    back = r.choice([None, None, None, 'qcow2', 'raw'])
    if compat == '1.1' and back is None and r.random() < 0.15:
        o['data_file'] = 't.data'
        if r.random() < 0.5:
            o['data_file_raw'] = 'on'
    if back is None and 'data_file_raw' not in o and r.random() < 0.15:
        o['preallocation'] = r.choice(['metadata', 'falloc', 'full'])
    return o, back


def setup_dir(ref_dir, d, case):
    """The starting images, written by the reference tools."""
    img = os.path.join(ref_dir, 'qemu-img')
    io = os.path.join(ref_dir, 'qemu-io')
    opts = dict(case['opts'])
    back = case['back']
    r = random.Random(case['seed'] * 7 + 1)

    size = case.get('size', SIZE)

    def sh(argv):
        res = subprocess.run(argv, cwd=d, capture_output=True, timeout=60)
        assert res.returncode == 0, (argv, res)
    if back:
        bfile = 'b.' + back
        sh([img, 'create', '-q', '-f', back, bfile, str(size)])
        sh([io, '-f', back, '-c', f'write -P 0x{r.randrange(1, 256):x} '
            f'{r.randrange(0, 4) * 4096} {r.randrange(1, 12) * 4096}',
            '-c', f'write -P 0x5b 512 1024', bfile])
        opts['backing_file'] = bfile
        opts['backing_fmt'] = back
    o = ','.join(f'{k}={v}' for k, v in opts.items())
    sh([img, 'create', '-q', '-f', 'qcow2', '-o', o, 't.qcow2', str(size)])
    if 'setup' in case:
        # a refused write (compressed onto data) only leaves its part out
        for c in case['setup']:
            subprocess.run([io, '-c', c, 't.qcow2'], cwd=d,
                           capture_output=True, timeout=60)
        return
    pre = []
    cs = {'512': 512, '4k': 4096, '16k': 16384}.get(opts.get('cluster_size'),
                                                    65536)
    if r.random() < 0.3 and 'data_file' not in opts and cs <= 16384 and \
            'preallocation' not in opts:
        # compressed writes go to unallocated clusters, whole ones
        pre += ['-c', f'write -c -P 0x33 32k {cs}']
    pre += ['-c', f'write -P 0x{r.randrange(1, 256):x} 0 4k']
    if r.random() < 0.5:
        pre += ['-c', f'write -P 0x77 {r.randrange(8, 14) * 4096} 5000']
    if r.random() < 0.2:
        pre += ['-c', 'write -z 16k 8k']
    sh([io] + pre + ['t.qcow2'])
    with open(os.path.join(d, 'src.bin'), 'wb') as f:
        f.write(bytes(range(256)) * 32)


# Graphs: qemu-io options and image argument.
TARGETS = {
    'plain': ([], 't.qcow2'),
    'fmt': (['-f', 'qcow2'], 't.qcow2'),
    'l2cache': (['--image-opts'], 'driver=qcow2,l2-cache-size=4k,'
                'refcount-cache-size=8k,file.filename=t.qcow2'),
    'cachesize': (['--image-opts'], 'driver=qcow2,cache-size=256k,'
                  'l2-cache-entry-size=1k,file.filename=t.qcow2'),
    'nounref': (['--image-opts'], 'driver=qcow2,discard-no-unref=on,'
                'file.filename=t.qcow2'),
    'passdisc': (['--image-opts'], 'driver=qcow2,pass-discard-request=on,'
                 'pass-discard-other=on,pass-discard-snapshot=off,'
                 'discard=unmap,file.filename=t.qcow2'),
    'overlap': (['--image-opts'], 'driver=qcow2,overlap-check=all,'
                'cache-clean-interval=1,file.filename=t.qcow2'),
    'overlapnone': (['--image-opts'], 'driver=qcow2,overlap-check=none,'
                    'lazy-refcounts=on,file.filename=t.qcow2'),
    'align512': (['--image-opts'], 'driver=qcow2,file.driver=blkdebug,'
                 'file.align=512,file.image.driver=file,'
                 'file.image.filename=t.qcow2'),
    'align4k': (['--image-opts'], 'driver=qcow2,file.driver=blkdebug,'
                'file.align=4096,file.image.driver=file,'
                'file.image.filename=t.qcow2'),
}

# ---- generator ----


def rnd_off(r):
    c = r.random()
    if c < 0.5:
        return str(r.randrange(0, 16) * 4096)
    if c < 0.8:
        return r.choice(GOOD_NUMS)
    if c < 0.95:
        return str(r.randrange(0, SIZE))
    return r.choice(['1M', '-1', 'x', '128k'])


def rnd_len(r):
    c = r.random()
    if c < 0.5:
        return str(r.randrange(1, 9) * 4096)
    if c < 0.8:
        return r.choice(['1', '512', '513', '1k', '4095', '4097', '64k',
                         '100', str(r.randrange(1, 20000))])
    return r.choice(['0', '128k', '60k', '1M', 'x'])


def aligned(target, words):
    """blkdebug align= aborts the reference on unaligned discards."""
    return target.startswith('align')


def cmd_write(r):
    a = ['write'] + rnd_flags(r, 'fq', 0.1)
    c = r.random()
    if c < 0.45:
        a += ['-P', r.choice(PATTERNS[:5] + ['0x5b', '0xee'])]
    elif c < 0.65:
        a += ['-z'] + (['-u'] if r.random() < 0.5 else [])
    elif c < 0.8:
        a += ['-c'] + (['-P', '0x9'] if r.random() < 0.6 else [])
    elif c < 0.85:
        a += ['-z', '-c']
    return a + [rnd_off(r), rnd_len(r)]


def cmd_read(r):
    a = ['read'] + rnd_flags(r, 'q', 0.2)
    if r.random() < 0.4:
        a += ['-P', r.choice(['0', '0x5b', '0x77', '0x9', '0xee'])]
    return a + [rnd_off(r), rnd_len(r)]


def cmd_discard(r, target):
    if target.startswith('align'):
        return ['discard', str(r.randrange(16) * 4096),
                str(r.randrange(1, 4) * 4096)]
    return ['discard'] + rnd_flags(r, 'q', 0.1) + [rnd_off(r), rnd_len(r)]


def cmd_aio(r):
    a = ['aio_write'] + rnd_flags(r, 'q', 0.1)
    c = r.random()
    if c < 0.5:
        a += ['-P', r.choice(['0x1', '0xee'])]
    elif c < 0.7:
        a += ['-z'] + (['-u'] if r.random() < 0.5 else [])
    return [' '.join(a + [rnd_off(r), rnd_len(r)]), 'aio_flush']


def cmd_misc(r):
    c = r.randrange(6)
    if c == 0:
        return ['map']
    if c == 1:
        return ['alloc', rnd_off(r)] + ([rnd_len(r)] if r.random() < 0.7
                                        else [])
    if c == 2:
        a = ['truncate']
        if r.random() < 0.3:
            a += ['-m', r.choice(['off', 'metadata', 'falloc', 'full'])]
        return a + [r.choice(['64k', '32k', '96k', '100000', '128k', '1M',
                              '4k', '0', '65000', '513'])]
    if c == 3:
        return [r.choice(['flush', 'length', 'info', 'aio_flush'])]
    if c == 4:
        return ['length']
    return ['info']


def cmd_reopen(r):
    a = ['reopen']
    k = r.randrange(6)
    if k == 0:
        a.append(r.choice(['-r', '-w']))
    elif k == 1:
        a += ['-c', r.choice(['writeback', 'writethrough', 'unsafe', 'none'])]
    else:
        a += ['-o', r.choice([
            'l2-cache-size=8k', 'l2-cache-size=1M', 'cache-size=128k',
            'refcount-cache-size=4k', 'lazy-refcounts=on',
            'lazy-refcounts=off', 'pass-discard-request=on',
            'pass-discard-other=off', 'discard-no-unref=on',
            'overlap-check=none', 'overlap-check=all',
            'overlap-check.template=cached', 'cache-clean-interval=0',
            'cache-clean-interval=5', 'discard=unmap', 'detect-zeroes=on',
            'l2-cache-entry-size=512', 'bogus=1', 'data-file=x',
            'read-only=on', 'driver=raw'])]
    return [' '.join(a)]


def rnd_command(r, target):
    k = r.randrange(22)
    if k < 7:
        return [' '.join(cmd_write(r))]
    if k < 10:
        return [' '.join(cmd_read(r))]
    if k < 12:
        return [' '.join(cmd_discard(r, target))]
    if k < 14:
        return cmd_aio(r)
    if k < 19:
        return [' '.join(cmd_misc(r))]
    if k < 21:
        return cmd_reopen(r)
    return [r.choice(['write -P 3 0 64k', 'read -P 0 64k 1', 'map'])]


def gen(seed):
    r = random.Random(seed)
    opts, back = rnd_create_opts(r)
    target = r.choice(['plain'] * 4 + ['fmt'] * 2 + sorted(TARGETS))
    if 'data_file' in opts and target not in ('plain', 'fmt') and \
            r.random() < 0.5:
        target = 'plain'
    cmds = []
    for _ in range(r.randrange(2, 14)):
        cmds += rnd_command(r, target)
    if r.random() < 0.3:
        cmds.append('map')
    return {'seed': seed, 'opts': opts, 'back': back, 'target': target,
            'cmds': cmds, 'stdin': r.random() < 0.25}


# ---- extended generator (layer io2) ----
#
# Larger images whose L2 tables end inside the guest range (512-byte,
# 1 KiB and 4 KiB clusters; 16 KiB extended L2), requests at odd offsets
# and lengths around those ends, compressed writes on extended L2, and
# graphs opened with discard / detect-zeroes options.  Sparse copies keep
# the larger files cheap.

# cluster size, extended L2, virtual size: the L2 table span is
# cluster_size ** 2 / entry size (8 bytes, 16 with extended L2)
GEOMETRIES = [('512', False, 96 << 10), ('1k', False, 300 << 10),
              ('4k', False, (4 << 20) + (40 << 10)),
              ('16k', True, (16 << 20) + (200 << 10)),
              ('16k', False, 200 << 10), ('64k', True, 1 << 20)]

TARGETS2 = {
    'dunmap': (['-d', 'unmap'], 't.qcow2'),
    'dignore': (['-d', 'ignore', '-f', 'qcow2'], 't.qcow2'),
    'dzunmap': (['--image-opts'], 'driver=qcow2,discard=unmap,'
                'detect-zeroes=unmap,file.filename=t.qcow2'),
    'dzon': (['--image-opts'], 'driver=qcow2,detect-zeroes=on,'
             'file.filename=t.qcow2'),
    'dpass': (['--image-opts'], 'driver=qcow2,discard=unmap,'
              'pass-discard-request=on,file.discard=unmap,'
              'file.filename=t.qcow2'),
    'dnounref': (['-d', 'unmap', '--image-opts'],
                 'driver=qcow2,discard-no-unref=on,file.filename=t.qcow2'),
    'nocache': (['-t', 'none', '-f', 'qcow2'], 't.qcow2'),
}
# graphs of explicit cases only (the generators' choices stay as they were)
TARGETS_FIXED = {
    'nounrefkeep': (['--image-opts'], 'driver=qcow2,discard-no-unref=on,'
                    'pass-discard-request=off,discard=unmap,'
                    'file.filename=t.qcow2'),
}


def l2_span(cs, ext):
    return cs * cs // (16 if ext else 8)


def rnd_off2(r, g):
    """An offset near an L2 table's end (or a cluster's), often odd."""
    cs, span, size = g['cs'], g['span'], g['size']
    c = r.random()
    if c < 0.6 and span < size:
        base = r.randrange(1, size // span + 1) * span
    elif c < 0.85:
        base = r.randrange(0, size // cs) * cs
    else:
        return str(r.randrange(0, size))
    d = r.choice([0, 0, -cs, cs, -1, 1, -511, 513, -4096, 4096, -3 * cs,
                  r.randrange(-2 * cs, 2 * cs)])
    return str(min(max(base + d, 0), size - 1))


def rnd_len2(r, g):
    cs = g['cs']
    c = r.random()
    if c < 0.4:
        return str(r.randrange(1, 5) * cs)
    if c < 0.8:
        return str(r.randrange(1, 3 * cs + 2))
    return r.choice(['1', '511', '513', '4097', '64k', '129k', '1M', '0'])


def cmd_write2(r, g):
    a = ['write'] + rnd_flags(r, 'q', 0.1)
    c = r.random()
    if c < 0.4:
        a += ['-P', r.choice(['0x5b', '0xee', '0x1', '0xc3'])]
    elif c < 0.6:
        a += ['-z'] + (['-u'] if r.random() < 0.5 else [])
    elif c < 0.85:
        # compressed: whole clusters mostly (others are refused)
        a += ['-c', '-P', '0x9']
        if r.random() < 0.7:
            n = r.randrange(1, 4)
            off = r.randrange(0, g['size'] // g['cs'] - n + 1) * g['cs']
            if r.random() < 0.5 and g['span'] < g['size']:
                off = max(0, g['span'] - r.randrange(0, 3) * g['cs'])
            return a + [str(off), str(n * g['cs'])]
    return a + [rnd_off2(r, g), rnd_len2(r, g)]


def rnd_command2(r, g, target):
    k = r.randrange(20)
    if k < 8:
        return [' '.join(cmd_write2(r, g))]
    if k < 11:
        a = ['read'] + (['-P', r.choice(['0', '0x9', '0x5b'])]
                        if r.random() < 0.4 else [])
        return [' '.join(a + [rnd_off2(r, g), rnd_len2(r, g)])]
    if k < 14:
        if g['align']:
            off = int(rnd_off2(r, g)) // 4096 * 4096
            return [f'discard {off} {r.randrange(1, 5) * 4096}']
        return [f'discard {rnd_off2(r, g)} {rnd_len2(r, g)}']
    if k < 16:
        a = ['aio_write'] + (['-P', '0xee'] if r.random() < 0.6 else
                             ['-z'] + (['-u'] if r.random() < 0.5 else []))
        return [' '.join(a + [rnd_off2(r, g), rnd_len2(r, g)]), 'aio_flush']
    if k < 17:
        return [f'alloc {rnd_off2(r, g)} {rnd_len2(r, g)}']
    if k < 18:
        size = g['size']
        n = r.choice([size - g['cs'], size + g['cs'], g['span'],
                      g['span'] + 512, size // 2, size - 1000])
        a = ['truncate'] + (['-m', r.choice(['metadata', 'falloc', 'full'])]
                            if r.random() < 0.3 else [])
        return [' '.join(a + [str(max(n, 512))])]
    return [r.choice(['map', 'flush', 'info', 'reopen -c writethrough',
                      'reopen -o discard=unmap', 'reopen -o discard=ignore',
                      'reopen -o detect-zeroes=unmap'])]


def rnd_setup2(r, g):
    """The reference qemu-io's first writes: data around the ends."""
    out = []
    for _ in range(r.randrange(1, 6)):
        k = r.random()
        if k < 0.6:
            out.append(f'write -P 0x{r.randrange(1, 256):x} '
                       f'{rnd_off2(r, g)} {r.randrange(1, 3 * g["cs"])}')
        elif k < 0.8:
            out.append(f'write -z {r.randrange(0, g["size"] // 4096) * 4096} '
                       f'{r.randrange(1, 4) * 4096}')
        else:
            off = r.randrange(0, g['size'] // g['cs']) * g['cs']
            out.append(f'write -c -P 0x33 {off} {g["cs"]}')
    return out


def gen2(seed):
    r = random.Random(seed)
    csname, ext, size = r.choice(GEOMETRIES)
    cs = qnum(csname)
    opts = {'compat': '1.1' if ext or r.random() < 0.8 else '0.10',
            'cluster_size': csname}
    if ext:
        opts['extended_l2'] = 'on'
    if opts['compat'] == '1.1':
        if r.random() < 0.15:
            opts['lazy_refcounts'] = 'on'
        if r.random() < 0.2:
            opts['compression_type'] = 'zstd'
        if r.random() < 0.2:
            opts['refcount_bits'] = r.choice(['1', '8', '64'])
    back = r.choice([None, None, 'qcow2', 'raw']) if size <= (5 << 20) \
        else None
    target = r.choice(['plain', 'plain', 'fmt', 'l2cache', 'cachesize',
                       'passdisc', 'align4k'] + sorted(TARGETS2) * 2)
    g = {'cs': cs, 'span': l2_span(cs, ext), 'size': size,
         'align': target.startswith('align')}
    cmds = []
    for _ in range(r.randrange(2, 12)):
        cmds += rnd_command2(r, g, target)
    if r.random() < 0.5:
        cmds.append('map')
    return {'seed': seed, 'opts': opts, 'back': back, 'target': target,
            'cmds': cmds, 'stdin': r.random() < 0.2, 'size': size,
            'setup': rnd_setup2(r, g)}


# ---- runner ----

FILES = ['t.qcow2', 't.data', 'b.qcow2', 'b.raw']


def run_io(bindir, case, d):
    opts, target = {**TARGETS, **TARGETS2, **TARGETS_FIXED}[case['target']]
    argv = [os.path.join(bindir, 'qemu-io')] + opts
    stdin = None
    if case['stdin']:
        stdin = ('\n'.join(case['cmds']) + '\n').encode()
    else:
        for c in case['cmds']:
            argv += ['-c', c]
    argv.append(target)
    try:
        res = subprocess.run(argv, cwd=d, input=stdin, capture_output=True,
                             timeout=TIMEOUT, env=dict(os.environ, TMPDIR=d))
    except subprocess.TimeoutExpired:
        return 'timeout'
    out = norm(res.stdout.decode(errors='replace'))
    err = norm(res.stderr.decode(errors='replace'))
    files = {f: digest(os.path.join(d, f)) for f in FILES}
    return out, err, res.returncode, files



def map_shape(ref_dir, d):
    rc, out, err = ref_img(ref_dir, d, 'map', '--output=json', 't.qcow2')
    if rc:
        return (rc, err)
    m = json.loads(out)
    for e in m:
        e.pop('offset', None)
        e.pop('filename', None)
        if e['data']:
            # whether the file holds a hole there: ext4 answers for
            # written zeroes in a copied (sparse) file as it goes
            e['zero'] = None
    # merge neighbours that only differed by offset
    merged = []
    for e in m:
        if merged and all(merged[-1][k] == e[k] for k in e
                          if k not in ('start', 'length')) and \
                merged[-1]['start'] + merged[-1]['length'] == e['start']:
            merged[-1]['length'] += e['length']
        else:
            merged.append(e)
    return merged


def compare_images(ref_dir, rd, od):
    """Problems found between the reference's result (rd) and ours."""
    problems = []
    rc, out, err = ref_img(ref_dir, od, 'check', 't.qcow2')
    # the reference's own result may fail its check (compressed writes
    # into a 512-byte cluster it had handed out as data): the same
    # findings are what is expected then
    if rc and (rc, out, err) != ref_img(ref_dir, rd, 'check', 't.qcow2'):
        problems.append(('check', rc, out, err))
    cmp_ = ref_img(ref_dir, od, 'compare', 't.qcow2',
                   os.path.join(rd, 't.qcow2'))
    if cmp_[0]:
        problems.append(('compare',) + cmp_)
    mr, mo = map_shape(ref_dir, rd), map_shape(ref_dir, od)
    if mr != mo:
        problems.append(('map', mr, mo))
    return problems


SUFFIX = {'': 1, 'k': 1 << 10, 'K': 1 << 10, 'm': 1 << 20, 'M': 1 << 20}


def qnum(word):
    """A qemu-io size argument, or None."""
    m = re.fullmatch(r'(0x[0-9a-fA-F]+|\d+(?:\.\d+)?)([kKmM]?)', word)
    if not m:
        return None
    v = int(m.group(1), 16) if m.group(1).startswith('0x') else \
        float(m.group(1))
    return int(v * SUFFIX[m.group(2)])


def cluster_bytes(case):
    return qnum(case['opts'].get('cluster_size', '64k'))


def byte_relaxed(case):
    """Where the reference's file layout is not deterministic, or follows
    an algorithm we do not imitate, a byte difference is accepted (the
    image still has to compare equal, check clean and map the same):

    - a compressed write of more than one cluster: the reference
      compresses clusters in parallel threads and stores each when its
      compression ends, in an order that changes from run to run;
    """
    cs = cluster_bytes(case)
    for c in case['cmds']:
        w = c.split()
        if w[0] in ('write', 'aio_write') and '-c' in w:
            n = qnum(w[-1])
            if n is None or n > cs or (qnum(w[-2]) or 0) % cs + n > cs:
                return True
    return False


def copy_tree(src, dst, sparse):
    if sparse:
        subprocess.run(['cp', '-a', '--sparse=always', src, dst], check=True)
    else:
        shutil.copytree(src, dst)


def compressed_failure_varies(case, exp):
    """A compressed write of several clusters that fails part-way (one
    is allocated already): how many clusters after the failing one the
    reference writes depends on which of its compression jobs end
    first, and changes from run to run (docs/conformance.md)."""
    cs = cluster_bytes(case)
    multi = any(w[0] == 'write' and '-c' in w and (qnum(w[-1]) or 0) > cs
                for w in (c.split() for c in case['cmds']))
    return multi and 'write failed: Input/output error' in exp[0]


def run_pair(ref_dir, our_dir, case, base=None):
    """Runs both; returns (verdict, details)."""
    top = tempfile.mkdtemp(prefix='strata-q2diff-', dir=base)
    try:
        seed_dir = os.path.join(top, 'seed')
        os.mkdir(seed_dir)
        setup_dir(ref_dir, seed_dir, case)
        rd, od = os.path.join(top, 'r'), os.path.join(top, 'o')
        copy_tree(seed_dir, rd, 'size' in case)
        copy_tree(seed_dir, od, 'size' in case)
        exp = run_io(ref_dir, case, rd)
        act = run_io(our_dir, case, od)
        if exp == 'timeout' or exp[2] < 0:
            return 'refcrash', exp
        if act == 'timeout' or act[2] < 0:
            return 'ourcrash', act
        if exp[:3] != act[:3]:
            if compressed_failure_varies(case, exp) or \
                    'Could not write zeros for preallocation: Invalid ' \
                    'argument' in exp[1]:
                # full preallocation under O_DIRECT: the reference writes
                # from a heap buffer the kernel refuses; strata's is
                # aligned and the growth works (a deliberate difference)
                return 'known', None
            return 'output', (exp[:3], act[:3])
        if exp[3] == act[3]:
            return 'same', None
        problems = compare_images(ref_dir, rd, od)
        if problems and compressed_failure_varies(case, exp):
            return 'known', problems
        if problems:
            return 'image', problems
        if byte_relaxed(case):
            return 'relaxed', None
        diff = {f: (exp[3][f], act[3][f]) for f in FILES
                if exp[3][f] != act[3][f]}
        return 'bytes', diff
    finally:
        shutil.rmtree(top, ignore_errors=True)


# ---- qemu-img layer ----

CREATE_KEYS = {
    'compat': ['0.10', '1.1', 'v2', 'v3', '1.0', 'x'],
    'cluster_size': ['512', '1k', '4k', '64k', '2M', '256', '3k', '4M', 'x'],
    'extended_l2': ['on', 'off', 'x'],
    'refcount_bits': ['1', '2', '16', '64', '3', '128', '0'],
    'lazy_refcounts': ['on', 'off'],
    'preallocation': ['off', 'metadata', 'falloc', 'full', 'bogus'],
    'compression_type': ['zlib', 'zstd', 'lz4'],
    'encryption': ['off', 'on'],
    'backing_file': ['b.raw', 'b.qcow2', 'nosuch'],
    'backing_fmt': ['raw', 'qcow2', 'vmdk'],
    'data_file': ['d.data'],
    'data_file_raw': ['on', 'off'],
    'size': ['1M', '0', '513'],
    'bogus': ['1'],
}


def gen_create(r):
    keys = r.sample(sorted(CREATE_KEYS), r.randrange(1, 5))
    opts = ','.join(f'{k}={r.choice(CREATE_KEYS[k])}' for k in keys)
    size = r.choice(['1M', '64k', '1G', '100000', '0', '513', None, 'x'])
    return opts, size


def img_cmds(r, opts, size):
    cmds = [['create', '-f', 'qcow2', '-o', opts, 'n.qcow2'] +
            ([size] if size else [])]
    for _ in range(r.randrange(1, 4)):
        k = r.randrange(6)
        if k == 0:
            cmds.append(['info'] + r.choice([[], ['--output=json'],
                                             ['--backing-chain']]) +
                        ['n.qcow2'])
        elif k == 1:
            cmds.append(['map'] + r.choice([[], ['--output=json']]) +
                        ['n.qcow2'])
        elif k == 2:
            cmds.append(['check'] + r.choice([[], ['--output=json']]) +
                        ['n.qcow2'])
        elif k == 3:
            cmds.append(['measure', '-O', 'qcow2'] +
                        r.choice([[], ['--output=json']]) +
                        r.choice([['-o', opts], []]) +
                        r.choice([['n.qcow2'], ['--size', '1M'],
                                  ['-f', 'raw', 'b.raw']]))
        elif k == 4:
            fmt = r.choice(['qcow2', 'raw'])
            src = r.choice(['n.qcow2', 'b.qcow2', 'b.raw'])
            a = ['convert', '-O', fmt]
            if fmt == 'qcow2' and r.random() < 0.5:
                a += ['-o', r.choice(['cluster_size=4k', 'compat=0.10',
                                      'extended_l2=on', 'refcount_bits=1',
                                      'compression_type=zstd',
                                      'preallocation=metadata',
                                      'cluster_size=512,lazy_refcounts=on'])]
            if fmt == 'qcow2' and r.random() < 0.3:
                a.append('-c')
            if r.random() < 0.3:
                a.append('-S' + r.choice(['0', '4k', '512', '64k']))
            if r.random() < 0.2:
                a.append('-n') if False else None
            cmds.append(a + [src, 'out.' + fmt])
            cmds.append(['compare', src, 'out.' + fmt])
            if fmt == 'qcow2':
                cmds.append(['check', 'out.qcow2'])
                cmds.append(['map', '--output=json', 'out.qcow2'])
        else:
            cmds.append(['info', '-U', 'n.qcow2'])
    return cmds


def setup_img_dir(ref_dir, d, seed):
    img = os.path.join(ref_dir, 'qemu-img')
    io = os.path.join(ref_dir, 'qemu-io')
    r = random.Random(seed)
    for fmt in ('raw', 'qcow2'):
        p = os.path.join(d, 'b.' + fmt)
        subprocess.run([img, 'create', '-q', '-f', fmt, p, '1M'], check=True)
        subprocess.run([io, '-f', fmt, '-c',
                        f'write -P 0x{r.randrange(1, 256):x} '
                        f'{r.randrange(0, 200) * 4096} 70k',
                        '-c', 'write -z 300k 64k', p],
                       check=True, capture_output=True)



SMALL_DISK = re.compile(r'(disk size: )(?:\d+(?:\.\d+)? KiB|\d+ B)$|'
                        r'("actual-size": )(?:\d{1,4}|[1-5]\d{4}|6[0-4]\d{3})'
                        r'(?=,?$)',
                        re.M)


def small_disk(text):
    """Allocations under 64 KiB: ext4 reports one block more or less
    for a small file truncated a moment ago, whichever tool did it."""
    return SMALL_DISK.sub(lambda m: (m.group(1) or m.group(2)) + 'SMALL',
                          text)


def run_img(bindir, cmds, d):
    outs = []
    for c in cmds:
        if c[0] in ('info', 'check', 'measure'):
            settle(d, ('n.qcow2', 'd.data', 'out.qcow2', 'out.raw'))
        try:
            res = subprocess.run([os.path.join(bindir, 'qemu-img')] + c,
                                 cwd=d, capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            outs.append('timeout')
            break
        o = small_disk(res.stdout.decode(errors='replace').replace(d, 'DIR'))
        e = res.stderr.decode(errors='replace').replace(d, 'DIR')
        outs.append((c, o, e, res.returncode))
    files = {f: digest(os.path.join(d, f))
             for f in ('n.qcow2', 'd.data', 'out.raw')}
    return outs, files


def img_known_difference(case):
    """Differences of the qemu-img layer found and not fixed yet (the
    reason), or None.  They stay in the exploration's report under
    'known'; the pytest part expects them to fail."""
    for c in case['cmds']:
        o = dict(kv.split('=', 1) for kv in
                 (c[c.index('-o') + 1].split(',') if '-o' in c else []))
        if c[0] == 'create' and o.get('backing_file') == 'nosuch' and \
                'backing_fmt' not in o:
            return ('create: the reference opens a missing backing file '
                    'before it asks for its format')
    return None


def gen_img(seed):
    r = random.Random(seed)
    opts, size = gen_create(r)
    return {'seed': seed, 'cmds': img_cmds(r, opts, size)}


def run_img_pair(ref_dir, our_dir, case, base=None):
    top = tempfile.mkdtemp(prefix='strata-q2img-', dir=base)
    try:
        seed_dir = os.path.join(top, 'seed')
        os.mkdir(seed_dir)
        setup_img_dir(ref_dir, seed_dir, case['seed'])
        if 'image' in case:
            setup_img2_image(ref_dir, seed_dir, case['image'])
        rd, od = os.path.join(top, 'r'), os.path.join(top, 'o')
        shutil.copytree(seed_dir, rd)
        shutil.copytree(seed_dir, od)
        exp = run_img(ref_dir, case['cmds'], rd)
        act = run_img(our_dir, case['cmds'], od)
        for e, a in zip(exp[0], act[0]):
            if e != a:
                if e == 'timeout' or e[3] < 0:
                    return 'refcrash', e
                return 'output', (e, a)
        if len(exp[0]) != len(act[0]):
            return 'output', (exp[0], act[0])
        if exp[1] != act[1]:
            return 'bytes', (exp[1], act[1])
        if os.path.exists(os.path.join(od, 'out.qcow2')):
            rc, out, err = ref_img(ref_dir, od, 'check', 'out.qcow2')
            if rc:
                return 'image', (out, err)
            if digest(os.path.join(od, 'out.qcow2')) != \
                    digest(os.path.join(rd, 'out.qcow2')):
                return 'convbytes', None
        return 'same', None
    finally:
        shutil.rmtree(top, ignore_errors=True)


# ---- qemu-img layer, extended (layer img2) ----
#
# An existing image changed in place: resize (grow, --shrink, negative
# deltas, --preallocation) and amend (compat levels both ways, lazy
# refcounts, refcount width, size, data file, backing file), with
# info / check / map after each step.

RESIZE_SIZES = ['+1M', '-512k', '2M', '512k', '1536k', '+100000', '-1',
                '3M', '1M', '+0', '64k', '2049k']
AMEND_OPTS = ['compat=0.10', 'compat=1.1', 'compat=v3', 'lazy_refcounts=on',
              'lazy_refcounts=off', 'refcount_bits=1', 'refcount_bits=8',
              'refcount_bits=64', 'refcount_bits=16', 'size=2M',
              'size=512k', 'cluster_size=4k', 'extended_l2=on',
              'data_file=d.data', 'data_file_raw=on',
              'backing_file=b.raw,backing_fmt=raw', 'backing_fmt=qcow2',
              'compression_type=zstd', 'encryption=on', 'preallocation=full']


def rnd_img2_image(r):
    opts, back = rnd_create_opts(r)
    opts.pop('data_file', None)
    opts.pop('data_file_raw', None)
    writes = [f'write -P 0x{r.randrange(1, 256):x} '
              f'{r.randrange(0, 256) * 4096} {r.randrange(1, 40) * 4096}'
              for _ in range(r.randrange(0, 4))]
    if r.random() < 0.3:
        writes.append(f'write -z {r.randrange(0, 64) * 16384} 64k')
    if r.random() < 0.2 and 'preallocation' not in opts:
        writes.append('write -c -P 0x21 512k 64k')
    return {'opts': opts, 'back': back, 'writes': writes,
            'snapshot': r.random() < 0.15, 'bitmap': r.random() < 0.1}


def setup_img2_image(ref_dir, d, image):
    img = os.path.join(ref_dir, 'qemu-img')
    io = os.path.join(ref_dir, 'qemu-io')
    opts = dict(image['opts'])
    if image['back']:
        opts['backing_file'] = 'b.' + image['back']
        opts['backing_fmt'] = image['back']
    o = ','.join(f'{k}={v}' for k, v in opts.items())
    subprocess.run([img, 'create', '-q', '-f', 'qcow2', '-o', o, 'n.qcow2',
                    '1M'], cwd=d, check=True, capture_output=True)
    for w in image['writes']:
        subprocess.run([io, '-c', w, 'n.qcow2'], cwd=d, capture_output=True)
    if image['snapshot']:       # refused with refcount_bits=1
        subprocess.run([img, 'snapshot', '-c', 'sn1', 'n.qcow2'], cwd=d,
                       capture_output=True)
    if image['bitmap']:
        subprocess.run([img, 'bitmap', '--add', 'n.qcow2', 'bm0'], cwd=d,
                       capture_output=True)


def img2_step(r):
    k = r.randrange(10)
    if k < 4:
        a = ['resize', '-f', 'qcow2']
        if r.random() < 0.4:
            a.append('--shrink')
        if r.random() < 0.3:
            a.append('--preallocation=' + r.choice(
                ['off', 'metadata', 'falloc', 'full', 'x']))
        if r.random() < 0.1:
            a.append('-q')
        return a + ['n.qcow2', r.choice(RESIZE_SIZES)]
    if k < 7:
        o = ','.join(r.sample(AMEND_OPTS, r.randrange(1, 3)))
        a = ['amend', '-f', 'qcow2', '-o', o]
        if r.random() < 0.15:
            a.append('-p')
        if r.random() < 0.1:
            a.append('--force')
        return a + ['n.qcow2']
    if k < 8:
        return ['info', '--output=json', 'n.qcow2']
    if k < 9:
        return ['check'] + r.choice([[], ['--output=json']]) + ['n.qcow2']
    return ['map', '--output=json', 'n.qcow2']


def gen_img2(seed):
    r = random.Random(seed)
    image = rnd_img2_image(r)
    cmds = [img2_step(r) for _ in range(r.randrange(1, 5))]
    cmds += [['info', 'n.qcow2'], ['check', 'n.qcow2']]
    return {'seed': seed, 'image': image, 'cmds': cmds}


# ---- pytest part ----

@pytest.fixture(scope='module')
def dirs(bindir):
    yield from difftools.scratch_dirs(bindir, 'strata-q2diff-', 'qemu-io')


@pytest.mark.parametrize('seed', range(120))
def test_random_io_sequence(seed, dirs):
    ref, our, base = dirs
    case = gen(seed)
    judge(case, *run_pair(ref, our, case, base))


@pytest.mark.parametrize('seed', range(40))
def test_random_img_commands(seed, dirs):
    ref, our, base = dirs
    case = gen_img(seed)
    known = img_known_difference(case)
    if known:
        pytest.xfail(known)
    judge(case, *run_img_pair(ref, our, case, base))


@pytest.mark.parametrize('seed', range(50000, 50024))
def test_random_io2_sequence(seed, dirs):
    ref, our, base = dirs
    case = gen2(seed)
    judge(case, *run_pair(ref, our, case, base),
          known='the reference varies (compressed write failing '
                'part-way) or differs deliberately')


@pytest.mark.parametrize('seed', range(50000, 50012))
def test_random_img2_commands(seed, dirs):
    ref, our, base = dirs
    case = gen_img2(seed)
    judge(case, *run_img_pair(ref, our, case, base))


# ---- explicit cases for differences found by the generator (the seed
# only drives the images' set-up) ----

def _case(seed, opts, back, target, cmds, stdin=False):
    return {'seed': seed, 'opts': opts, 'back': back, 'target': target,
            'cmds': cmds, 'stdin': stdin}


FIXED = [
    # reopen -o takes the qcow2 runtime options, old ones replaced
    _case(3, {'compat': '0.10', 'cluster_size': '4k'}, None, 'overlap',
          ['reopen -o l2-cache-size=8k', 'reopen -o lazy-refcounts=on',
           'reopen -o overlap-check.template=cached',
           'reopen -o cache-size=1k', 'write -P 1 0 8k']),
    # discard on a v2 image with a backing file leaves the clusters
    _case(120, {'compat': '0.10', 'cluster_size': '4k'}, 'raw', 'passdisc',
          ['discard 40960 12288', 'write -P 1 12288 16384']),
    # a shrink frees the L2 tables past the end and trims the file
    _case(39, {'compat': '1.1', 'cluster_size': '4k'}, None, 'plain',
          ['write -P 3 0 64k', 'truncate -m off 0']),
    _case(71, {'compat': '1.1', 'cluster_size': '64k', 'extended_l2': 'on',
               'data_file': 't.data'}, None, 'plain', ['truncate 0']),
    _case(270, {'compat': '1.1', 'compression_type': 'zstd',
                'data_file': 't.data'}, None, 'cachesize', ['truncate 4k']),
    _case(94, {'compat': '0.10', 'cluster_size': '4k'}, 'qcow2', 'plain',
          ['truncate 4k', 'write 24576 64k']),
    # replaced compressed clusters are not discarded, nor reused at once
    _case(48, {'compat': '0.10', 'cluster_size': '4k'}, None, 'align4k',
          ['aio_write 28672 12288', 'aio_flush',
           'reopen -o lazy-refcounts=off']),
    _case(386, {'compat': '0.10', 'cluster_size': '4k'}, 'qcow2', 'plain',
          ['write -P 255 36864 24576', 'write -P 3 0 64k']),
    # new clusters continue the host range of the write
    _case(12, {'compat': '1.1', 'cluster_size': '4k'}, None, 'plain',
          ['write -P 1 24576 24576', 'write -q -P 0xab 14749 4426',
           'discard 20480 12288', 'discard 45056 12288',
           'aio_write -P 0xee 20480 28672', 'aio_flush']),
    # a new refcount block goes after the run that needs it
    _case(568, {'compat': '1.1', 'cluster_size': '512',
                'refcount_bits': '64'}, None, 'l2cache',
          ['write -P 3 0 64k']),
    # exact L1 growth
    _case(581, {'compat': '0.10', 'cluster_size': '512'}, 'qcow2', 'plain',
          ['truncate 96k', 'truncate 1M']),
    # a compressed write goes on past a failing cluster
    _case(387, {'compat': '1.1', 'cluster_size': '4k',
                'compression_type': 'zstd'}, None, 'plain',
          ['write -c -P 0x9 0 4096', 'write -c -P 0x9 0 8192']),
    # reopen -r writes the caches back and marks the image clean
    _case(363, {'compat': '1.1', 'cluster_size': '512',
                'lazy_refcounts': 'on'}, 'qcow2', 'fmt',
          ['write -P 0xff 0x1000 32768', 'reopen -r']),
    _case(393, {'compat': '1.1', 'cluster_size': '4k', 'refcount_bits': '2',
                'preallocation': 'metadata'}, None, 'align512',
          ['discard 20480 12288', 'reopen -r']),
    # detect-zeroes=unmap needs discard=unmap, after a reopen too
    _case(50030, {'compat': '1.1', 'cluster_size': '1k'}, None, 'dzunmap',
          ['reopen -o discard=ignore', 'write -z 0 4k',
           'reopen -o discard=unmap', 'write -P 0 8k 4k', 'map']),
    _case(50094, {'compat': '1.1', 'cluster_size': '512'}, None, 'dignore',
          ['reopen -o detect-zeroes=unmap', 'write -P 0 0 4k',
           'reopen -o detect-zeroes=unmap,discard=unmap', 'write -P 0 0 8k',
           'map']),
    # reopen -o discard=unmap turns pass-discard-request's default on
    _case(50406, {'compat': '1.1', 'cluster_size': '1k'}, 'qcow2', 'dignore',
          ['write -P 1 0 8k', 'reopen -o discard=unmap', 'discard 0 4k',
           'reopen -o discard=ignore', 'discard 4k 4k']),
    # discard-no-unref: a discarded cluster stays as it is when discarded
    # again; the data goes down only with pass-discard-request
    _case(51251, {'compat': '1.1', 'cluster_size': '1k'}, 'qcow2', 'dnounref',
          ['write -P 1 0 8k', 'discard 0 4k', 'discard 0 8k']),
    _case(51252, {'compat': '1.1', 'cluster_size': '4k'}, None, 'nounrefkeep',
          ['write -P 1 0 16k', 'discard 0 8k', 'write -z -u 8k 4k']),
    # under O_DIRECT an L1 entry is written as a sector of the table in
    # memory: the new table's cluster held compressed data before
    dict(_case(50707, {'compat': '0.10', 'cluster_size': '16k'}, None,
               'nocache', ['aio_write -P 0xee 110592 4273', 'aio_flush',
                           'truncate 33554944', 'truncate 102400']),
         size=204800, setup=['write -z 176128 8192',
                             'write -c -P 0x33 98304 16384']),
    # a zero write over the last cluster from its start to the image's
    # end zeroes the subclusters past the end too (convert gen2 52598)
    _case(52598, {'compat': '1.1', 'cluster_size': '2M',
                  'extended_l2': 'on'}, None, 'plain',
          ['write -z 32k 32k', 'write -z 0 64k', 'map']),
    _case(52599, {'compat': '1.1', 'cluster_size': '2M',
                  'extended_l2': 'on'}, None, 'fmt',
          ['write -P 1 0 64k', 'write -z -u 0 64k', 'map']),
    # v2 over a longer backing file: a growth preallocated with zeroes
    # has nothing to zero, and succeeds (io seed 50487)
    _case(50487, {'compat': '0.10', 'cluster_size': '16k'}, 'raw', 'plain',
          ['truncate 32k', 'truncate -m full 128k', 'read -P 0 32k 96k',
           'map']),
    _case(50488, {'compat': '0.10', 'cluster_size': '4k'}, 'qcow2', 'fmt',
          ['truncate 16k', 'truncate -m falloc 96k', 'read -P 0 16k 80k',
           'map']),
    # any reopen after reopen -c none probes the O_DIRECT alignment again,
    # through the O_DIRECT descriptor this time (io seed 50429)
    _case(50429, {'compat': '0.10', 'cluster_size': '512'}, 'raw', 'l2cache',
          ['reopen -c none', 'reopen -o cache-size=128k',
           'aio_write 49152 12288', 'aio_flush']),
    _case(50430, {'compat': '1.1', 'cluster_size': '512'}, None, 'plain',
          ['reopen -c none', 'write -P 1 8k 512', 'reopen -w',
           'write -P 2 12k 512']),
]


@pytest.mark.parametrize('case', FIXED,
                         ids=[';'.join(c['cmds'])[:50] for c in FIXED])
def test_fixed_difference(case, dirs):
    ref, our, base = dirs
    verdict, info = run_pair(ref, our, case, base)
    assert verdict in OK, (case, verdict, info)


# seeds of long explorations that differed: a shrink's temporary L2
# tables (541, 887), write -z -u with discard-no-unref (601), metadata
# preallocation placement after a shrink (1782), the alignment after
# reopen -c none (710507), freed clusters discarded as merged runs over
# a file taking only 4 KiB-aligned discards (712778)
@pytest.mark.parametrize('seed', [541, 601, 887, 1782, 710507, 712778])
def test_former_difference_seed(seed, dirs):
    ref, our, base = dirs
    case = gen(seed)
    judge(case, *run_pair(ref, our, case, base))


# ---- exploration driver ----

def explore(ref, our, first, count, out_path, layer='io'):
    make = {'io': gen, 'io2': gen2, 'img': gen_img, 'img2': gen_img2}[layer]
    fn = run_img_pair if layer.startswith('img') else run_pair

    def relabel(case, verdict):
        if layer.startswith('img') and verdict not in OK and \
                img_known_difference(case):
            return 'known'
        return verdict
    difftools.explore_pairs('strata-q2diff-', make, fn, ref, our, first,
                            count, out_path, relabel)


if __name__ == '__main__':
    explore(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
            sys.argv[5] if len(sys.argv) > 5 else 'q2diff.json',
            sys.argv[6] if len(sys.argv) > 6 else 'io')
