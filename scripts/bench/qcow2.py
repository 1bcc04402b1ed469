#!/usr/bin/env python3
"""qcow2 workloads (PERF.md W2-W6, W10, bench on qcow2), strata-img against
qemu-img 10.0, interleaved A B A B per round after a warm-up round.

Workloads (pick with --only, comma-separated; default: all but direct):
  w2        convert raw -> qcow2 of a real ext4 filesystem image
  w3        convert qcow2 -> raw, qcow2 -> qcow2, qcow2 -> qcow2 -B base
  w3b       only W3's qcow2 -> qcow2 -B base
  chain     map, convert and convert -B of chains of --layers qcow2 layers
            (default 10,50,200: the cost per layer should stay flat)
  w4        convert -c (zstd and zlib), without and with -W; output sizes
  w5        convert compressed qcow2 (zstd, zlib) -> raw
  w6        convert raw -> qcow2 with -t none -T none on disk (--dir)
  w10       info / map / check of a 1 TiB qcow2 with ~100k scattered
            clusters; convert of an empty 8 TiB qcow2
  bench     bench -w 4 KiB depth 64 on a fresh qcow2 and on a preallocated
            one (IOPS)

W2 and W3 also time floor.py (read the source's data extents, write
them to a new file, two threads at once) as the machine's floor.

The filesystem image is made once with `mke2fs -t ext4 -d DIR` (--data,
default /usr/lib) in a --fs-size GiB image.  Every output is checked
against the source with the reference `qemu-img compare` in the warm-up
round.  Reports per contender the median seconds, the median of per-round
ratios strata/reference (lower is better) and peak RSS.

Usage: scripts/bench/qcow2.py [--rounds N] [--only w2,w3] [--dir DIR]
                              [--data DIR] [--fs-size GiB] [--layers N,N]"""
import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import time

from common import QEMU, REF_BIN, TOOLS, run

GiB = 1 << 30


def timed(argv):
    """(seconds, peak RSS KiB, stdout) of one run of @argv."""
    t0 = time.monotonic()
    p = subprocess.run(['/usr/bin/time', '-f', 'RSS %M'] + argv,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    secs = time.monotonic() - t0
    if p.returncode not in (0, 3):       # check: 3 = leaks only
        sys.exit(f'failed: {" ".join(argv)}\n{p.stderr}')
    rss = int(p.stderr.strip().splitlines()[-1].split()[1])
    return secs, rss, p.stdout


def make_fs_image(path, data, size_gib):
    if os.path.exists(path):
        return
    print(f'making an ext4 image of {data} ({size_gib} GiB)...',
          file=sys.stderr)
    run(['mke2fs', '-q', '-F', '-t', 'ext4', '-d', data, path,
         f'{int(size_gib * 1024)}M'])


def rounds_of(cases, rounds, verify=None):
    """cases: {name: (argv, output or None)}.  Returns ({name: [secs]},
    {name: rss}, {name: stdout of the last run})."""
    times = {n: [] for n in cases}
    rss = {n: 0 for n in cases}
    outs = {}
    for r in range(rounds + 1):           # round 0: warm-up, checked
        for name, (argv, out) in cases.items():
            if out and os.path.exists(out):
                os.unlink(out)
            secs, kib, stdout = timed(argv)
            outs[name] = stdout
            if r == 0:
                if verify:
                    verify(name)
                continue
            times[name].append(secs)
            rss[name] = max(rss[name], kib)
    return times, rss, outs


def report(title, times, rss, extra=None):
    base = times['qemu-img 10.0']
    print(f'\n### {title}\n')
    print('| contender | median s | time / qemu-img time (median of rounds) '
          '| peak RSS MiB |' + (' ' + extra[0] + ' |' if extra else ''))
    print('|---|---|---|---|' + ('---|' if extra else ''))
    for name, vals in times.items():
        ratios = [v / b for v, b in zip(vals, base)]
        row = (f'| {name} | {statistics.median(vals):.3f} | '
               f'{statistics.median(ratios):.2f}x | {rss[name] / 1024:.1f} |')
        if extra:
            row += f' {extra[1][name]} |'
        print(row)
    sys.stdout.flush()


def compare_with(src, src_fmt, dst, dst_fmt):
    def verify(name):
        p = run([QEMU, 'compare', '-f', src_fmt, '-F', dst_fmt, src, dst],
                check=False)
        if p.returncode != 0:
            sys.exit(f'{name}: output differs from the source: {p.stdout}'
                     f'{p.stderr}')
        if dst_fmt == 'qcow2':
            c = run([QEMU, 'check', dst], check=False)
            if c.returncode not in (0, 3):
                sys.exit(f'{name}: qemu-img check failed:\n{c.stdout}')
    return verify


def convert_cases(args_fn, dst):
    return {name: (args_fn(tool), dst) for name, tool in TOOLS.items()}


FLOOR = 'floor.py'
HERE = os.path.dirname(os.path.abspath(__file__))


def with_floor(cases, src, a):
    """Add the machine's floor as a contender: floor.py reading the data
    extents of @src and writing them to a new file, a reader and a writer
    thread at once (see its docstring).  Its ratio to qemu-img bounds the
    ratio any converter can reach here."""
    dst = os.path.join(a.dir, 'floor.out')
    cases[FLOOR] = ([sys.executable, os.path.join(HERE, 'floor.py'), src,
                     dst], dst)
    return cases


def skip_floor(verify):
    return lambda name: None if name == FLOOR else verify(name)


def w2(a, fs):
    dst = os.path.join(a.dir, 'w2.qcow2')
    c = with_floor(convert_cases(lambda t: [t, 'convert', '-f', 'raw', '-O',
                                            'qcow2', fs, dst], dst), fs, a)
    report('W2 convert raw -> qcow2 (ext4 image)',
           *rounds_of(c, a.rounds,
                      skip_floor(compare_with(fs, 'raw', dst, 'qcow2')))[:2])


def w3(a, fs):
    src = os.path.join(a.dir, 'w3-src.qcow2')
    run([QEMU, 'convert', '-f', 'raw', '-O', 'qcow2', fs, src])
    for fmt in ('raw', 'qcow2'):
        dst = os.path.join(a.dir, 'w3-dst.' + fmt)
        c = with_floor(convert_cases(lambda t: [t, 'convert', '-f', 'qcow2',
                                                '-O', fmt, src, dst], dst),
                       src, a)
        report(f'W3 convert qcow2 -> {fmt}',
               *rounds_of(c, a.rounds,
                          skip_floor(compare_with(src, 'qcow2', dst,
                                                  fmt)))[:2])
    w3_backing(a, fs, src)


def w3_backing(a, fs, src=None):
    """W3's qcow2 -> qcow2 -B: an overlay converted onto its own backing
    file (only the overlay's clusters are copied).  Alone: --only w3b."""
    if src is None:
        src = os.path.join(a.dir, 'w3-src.qcow2')
        run([QEMU, 'convert', '-f', 'raw', '-O', 'qcow2', fs, src])
    top = os.path.join(a.dir, 'w3-top.qcow2')
    make_overlay(src, top)
    dst = os.path.join(a.dir, 'w3-dst-b.qcow2')
    c = convert_cases(lambda t: [t, 'convert', '-f', 'qcow2', '-O', 'qcow2',
                                 '-B', src, '-F', 'qcow2', top, dst], dst)
    report('W3 convert qcow2 -> qcow2 -B base (overlay: 10 % rewritten)',
           *rounds_of(c, a.rounds,
                      compare_with(top, 'qcow2', dst, 'qcow2'))[:2])
    for p in (src, top, dst):
        if os.path.exists(p):
            os.unlink(p)


def make_chain(d, layers, size):
    """@layers qcow2 images chain0 <- chain1 <- ...; layer i writes 1 MiB
    at a seeded offset, the base is full.  Returns the top's path."""
    io = os.path.join(REF_BIN, 'qemu-io')
    rng = random.Random(11)
    prev = None
    for i in range(layers):
        path = os.path.join(d, f'chain{i}.qcow2')
        opts = ['-b', prev, '-F', 'qcow2'] if prev else []
        run([QEMU, 'create', '-q', '-f', 'qcow2'] + opts + [path, str(size)])
        if prev is None:
            run([io, '-f', 'qcow2', '-c', f'write -q -P 1 0 {size}', path])
        else:
            off = rng.randrange(0, size >> 20) << 20
            run([io, '-f', 'qcow2', '-c',
                 f'write -q -P 0x{i % 250 + 2:02x} {off} 1M', path])
        prev = path
    return prev


def w_chain(a, fs):
    """Deep chains (--layers, comma-separated): map, convert to a flat
    qcow2 and convert -B onto the top's backing file, per chain depth."""
    size = 256 << 20
    for layers in (int(n) for n in a.layers.split(',')):
        d = os.path.join(a.dir, f'chain-{layers}')
        os.makedirs(d, exist_ok=True)
        top = make_chain(d, layers, size)
        below = os.path.join(d, f'chain{layers - 2}.qcow2')
        dst = os.path.join(d, 'dst.qcow2')
        cases = [('map --output=json', lambda t: ([t, 'map', '--output=json',
                                                   top], None), None),
                 ('convert -O qcow2', lambda t: ([t, 'convert', '-O', 'qcow2',
                                                  top, dst], dst),
                  compare_with(top, 'qcow2', dst, 'qcow2')),
                 ('convert -O qcow2 -B', lambda t: ([t, 'convert', '-O',
                                                     'qcow2', '-B', below,
                                                     '-F', 'qcow2', top, dst],
                                                    dst),
                  compare_with(top, 'qcow2', dst, 'qcow2'))]
        for title, fn, verify in cases:
            c = {n: fn(t) for n, t in TOOLS.items()}
            report(f'chain of {layers} qcow2 layers: {title}',
                   *rounds_of(c, a.rounds, verify)[:2])
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


def make_overlay(base, top):
    """An overlay rewriting ~10 % of the base in scattered 1 MiB runs."""
    run([QEMU, 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top])
    size = os.path.getsize(base)
    rng = random.Random(3)
    cmds = []
    for _ in range(max(1, size // (10 << 20))):
        off = rng.randrange(0, size >> 20) << 20
        cmds += ['-c', f'write -P 0x{rng.randrange(1, 255):02x} {off} 1M']
    for i in range(0, len(cmds), 200):
        run([os.path.join(REF_BIN, 'qemu-io'), '-f', 'qcow2', top]
            + cmds[i:i + 200])


def w4(a, fs):
    for ctype in ('zstd', 'zlib'):
        for par in ([], ['-W']):
            dst = os.path.join(a.dir, 'w4.qcow2')
            sizes = {}

            def verify(name, dst=dst):
                sizes[name] = os.path.getsize(dst)
                compare_with(fs, 'raw', dst, 'qcow2')(name)
            c = convert_cases(lambda t: [t, 'convert', '-c', '-f', 'raw',
                                         '-O', 'qcow2', '-o',
                                         'compression_type=' + ctype] + par
                              + [fs, dst], dst)
            times, rss, _ = rounds_of(c, a.rounds, verify)
            ref = sizes['qemu-img 10.0']
            col = {n: f'{s / 1e6:.0f} MB ({s / ref:.3f}x)'
                   for n, s in sizes.items()}
            report(f'W4 convert -c {ctype} {" ".join(par)}'.strip(), times,
                   rss, ('output size', col))


def w5(a, fs):
    for ctype in ('zstd', 'zlib'):
        src = os.path.join(a.dir, f'w5-{ctype}.qcow2')
        run([QEMU, 'convert', '-c', '-W', '-f', 'raw', '-O', 'qcow2', '-o',
             'compression_type=' + ctype, fs, src])
        dst = os.path.join(a.dir, 'w5.raw')
        c = convert_cases(lambda t: [t, 'convert', '-f', 'qcow2', '-O', 'raw',
                                     src, dst], dst)
        report(f'W5 convert compressed ({ctype}) qcow2 -> raw',
               *rounds_of(c, a.rounds,
                          compare_with(src, 'qcow2', dst, 'raw'))[:2])
        os.unlink(src)


def w6(a, fs):
    dst = os.path.join(a.dir, 'w6.qcow2')
    c = convert_cases(lambda t: [t, 'convert', '-t', 'none', '-T', 'none',
                                 '-f', 'raw', '-O', 'qcow2', fs, dst], dst)
    report(f'W6 convert raw -> qcow2 -t none -T none ({a.dir})',
           *rounds_of(c, a.rounds, compare_with(fs, 'raw', dst, 'qcow2'))[:2])


def make_fragmented(path, clusters):
    """1 TiB qcow2, @clusters scattered 64 KiB clusters written (seeded),
    made by the reference's qemu-io in batches."""
    run([QEMU, 'create', '-q', '-f', 'qcow2', path, '1T'])
    rng = random.Random(7)
    offs = sorted(rng.sample(range(1 << 24), clusters))
    io = os.path.join(REF_BIN, 'qemu-io')
    for i in range(0, len(offs), 5000):
        cmds = []
        for o in offs[i:i + 5000]:
            cmds += ['-c', f'write -q -P 0x{(o % 254) + 1:02x} {o << 16} 64k']
        run([io, '-f', 'qcow2', path] + cmds)


def w10(a, fs):
    frag = os.path.join(a.dir, 'w10-frag.qcow2')
    make_fragmented(frag, a.clusters)
    for cmd in (['info'], ['info', '--output=json'], ['map', '--output=json'],
                ['check']):
        c = {n: ([t] + cmd + ['-f', 'qcow2', frag], None)
             for n, t in TOOLS.items()}
        times, rss, outs = rounds_of(c, a.rounds)
        report(f'W10 {" ".join(cmd)} of a 1 TiB qcow2 with {a.clusters} '
               'scattered clusters', times, rss)
    empty = os.path.join(a.dir, 'w10-empty.qcow2')
    run([QEMU, 'create', '-q', '-f', 'qcow2', empty, '8T'])
    dst = os.path.join(a.dir, 'w10-dst.qcow2')
    c = convert_cases(lambda t: [t, 'convert', '-f', 'qcow2', '-O', 'qcow2',
                                 empty, dst], dst)
    report('W10 convert of an empty 8 TiB qcow2', *rounds_of(c, a.rounds)[:2])
    for p in (frag, empty, dst):
        if os.path.exists(p):
            os.unlink(p)


def bench_iops(a, fs):
    img = os.path.join(a.dir, 'bench.qcow2')
    for prealloc in ('off', 'metadata'):
        def prepare():
            run([QEMU, 'create', '-q', '-f', 'qcow2', '-o',
                 'preallocation=' + prealloc, img, '1G'])
        iops = {n: [] for n in TOOLS}
        for r in range(a.rounds + 1):
            for name, tool in TOOLS.items():
                prepare()
                _, _, out = timed([tool, 'bench', '-w', '-t', 'none', '-c',
                                   '200000', '-d', '64', '-s', '4k', '-S',
                                   '4k', '-f', 'qcow2', img])
                secs = float(re.search(r'completed in ([0-9.]+)', out)
                             .group(1))
                if r:
                    iops[name].append(200000 / secs)
        base = iops['qemu-img 10.0']
        print(f'\n### bench -w 4 KiB depth 64, qcow2 preallocation={prealloc}'
              f' ({a.dir})\n')
        print('| contender | median IOPS | IOPS / qemu-img IOPS |')
        print('|---|---|---|')
        for name, vals in iops.items():
            ratios = [v / b for v, b in zip(vals, base)]
            print(f'| {name} | {statistics.median(vals):,.0f} | '
                  f'{statistics.median(ratios):.2f}x |')
    os.unlink(img)


WORKLOADS = {'w2': w2, 'w3': w3, 'w4': w4, 'w5': w5, 'w6': w6, 'w10': w10,
             'bench': bench_iops, 'w3b': w3_backing, 'chain': w_chain}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--only', default='w2,w3,w4,w5,w10,bench')
    ap.add_argument('--dir', default='/dev/shm')
    ap.add_argument('--data', default='/usr/lib')
    ap.add_argument('--fs-size', type=float, default=6)
    ap.add_argument('--clusters', type=int, default=100000)
    ap.add_argument('--layers', default='10,50,200',
                    help='chain depths for --only chain')
    ap.add_argument('--keep-fs', action='store_true',
                    help='keep the ext4 image for the next run')
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)     # a fresh --dir is created
    fs = os.path.join(a.dir, 'strata-qcow2-bench-fs.raw')
    only = a.only.split(',')
    try:
        if set(only) & {'w2', 'w3', 'w3b', 'w4', 'w5', 'w6'}:
            make_fs_image(fs, a.data, a.fs_size)
        for w in only:
            WORKLOADS[w](a, fs)
    finally:
        if not a.keep_fs and os.path.exists(fs):
            os.unlink(fs)


if __name__ == '__main__':
    main()
