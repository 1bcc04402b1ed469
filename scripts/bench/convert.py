#!/usr/bin/env python3
"""W1: convert raw -> raw of a 2 GiB VM-shaped sparse image.

Contenders, interleaved A B C D per round after a warm-up round:
strata-img convert, qemu-img 10.0 convert (-f raw -O raw), nbdcopy and
`cp --sparse=always` (the kernel floor), all on tmpfs (/dev/shm).  With
--direct: strata vs qemu-img with `-t none -T none` on disk (/var/tmp).

Reports median seconds, the median of per-round ratios against strata,
each contender's peak RSS (per process, from wait4), and checks that
every output equals the source.

Usage: scripts/bench/convert.py [--rounds N] [--size GiB] [--direct]
                                [--dir DIR] [--seed N] [--base-build DIR]
--base-build adds a second strata build (e.g. the previous commit's,
from `git worktree add`) as contender strata-base."""
import argparse
import filecmp
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

from common import BUILD, REF_BIN

MiB = 1 << 20
GiB = 1 << 30


def make_vm_image(path, size, seed):
    """Seeded VM-shaped disk: runs of data / written zeroes / holes with
    log-uniform sizes (64 KiB .. 64 MiB); ~25 % data, ~8 % written zeroes."""
    rng = random.Random(seed)
    pool = rng.randbytes(16 * MiB)
    with open(path, 'wb') as f:
        f.truncate(size)
        off = 0
        while off < size:
            run = min(int(2 ** rng.uniform(16, 26)) & ~4095 or 4096, size - off)
            kind = rng.choices(['data', 'zero', 'hole'], [25, 8, 67])[0]
            if kind != 'hole':
                f.seek(off)
                write_run(f, rng, pool, run, kind == 'zero')
            off += run
    return path


def write_run(f, rng, pool, run, zero):
    """Data runs carry some zero 4 KiB blocks, as real disks do."""
    done = 0
    while done < run:
        n = min(run - done, 1 * MiB)
        if zero:
            f.write(bytes(n))
        else:
            start = rng.randrange(0, len(pool) - n) & ~4095
            buf = bytearray(pool[start:start + n])
            for _ in range(rng.randrange(0, 4)):
                z = rng.randrange(0, n) & ~4095
                buf[z:z + 4096] = bytes(min(4096, n - z))
            f.write(buf)
        done += n


def timed(argv):
    """Run @argv; (seconds, peak RSS KiB of that process).  The RSS comes
    from /usr/bin/time: a child forked from Python would count Python's
    own pages in its high-water mark."""
    t0 = time.monotonic()
    p = subprocess.run(['/usr/bin/time', '-f', 'RSS %M'] + argv,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    secs = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f'failed: {" ".join(argv)}\n{p.stderr}')
    return secs, int(p.stderr.strip().splitlines()[-1].split()[1])


def contender(argv_fn, dst, prepare=None):
    def run():
        if os.path.exists(dst):
            os.unlink(dst)
        if prepare:
            prepare()
        return timed(argv_fn())
    return run


def sized_target(src, dst):
    """nbdcopy writes into an existing file of the right size (untimed)."""
    def prepare():
        with open(dst, 'wb') as f:
            f.truncate(os.path.getsize(src))
    return prepare


def contenders(src, dst, direct, base_build=None):
    ref = os.path.join(REF_BIN, 'qemu-img')
    cache = ['-t', 'none', '-T', 'none'] if direct else []

    def strata(build):
        prog = os.path.join(build, 'tools', 'img', 'strata-img')
        return contender(lambda: [prog, 'convert', '-f', 'raw', '-O', 'raw']
                         + cache + [src, dst], dst)
    c = {'strata-img': strata(BUILD)}
    if base_build:
        c['strata-base'] = strata(base_build)
    c['qemu-img 10.0'] = contender(lambda: [ref, 'convert', '-f', 'raw',
                                            '-O', 'raw'] + cache + [src, dst],
                                   dst)
    if not direct:
        if shutil.which('nbdcopy'):
            c['nbdcopy'] = contender(lambda: ['nbdcopy', src, dst], dst,
                                     sized_target(src, dst))
        c['cp --sparse=always'] = contender(
            lambda: ['cp', '--sparse=always', src, dst], dst)
    return c


def run_rounds(c, rounds, src, dst):
    times = {n: [] for n in c}
    rss = {n: 0 for n in c}
    for r in range(rounds + 1):           # round 0: warm-up
        for name, fn in c.items():
            secs, kib = fn()
            if r == 0:
                check_output(name, src, dst)
                continue
            times[name].append(secs)
            rss[name] = max(rss[name], kib)
    return times, rss


def check_output(name, src, dst):
    if not filecmp.cmp(src, dst, shallow=False):
        sys.exit(f'{name}: output differs from the source')
    blocks = os.stat(dst).st_blocks * 512 // MiB
    print(f'{name}: output ok, {blocks} MiB allocated', file=sys.stderr)


def report(title, times, rss, base):
    print(f'\n### {title}\n')
    print(f'| contender | median s | {base} time / contender time '
          f'(median of rounds) | peak RSS MiB |')
    print('|---|---|---|---|')
    for name, vals in times.items():
        ratios = [b / v for v, b in zip(vals, times[base])]
        print(f'| {name} | {statistics.median(vals):.3f} | '
              f'{statistics.median(ratios):.2f}x | {rss[name] / 1024:.1f} |')
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=7)
    ap.add_argument('--size', type=float, default=2)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--direct', action='store_true')
    ap.add_argument('--dir', default=None)
    ap.add_argument('--base-build', help='another build dir (e.g. the '
                    "previous commit's) to run as contender strata-base")
    a = ap.parse_args()
    d = a.dir or ('/var/tmp' if a.direct else '/dev/shm')
    src = os.path.join(d, 'strata-w1-src.raw')
    dst = os.path.join(d, 'strata-w1-dst.raw')
    make_vm_image(src, int(a.size * GiB), a.seed)
    used = os.stat(src).st_blocks * 512 / 1e9
    print(f'source: {a.size} GiB virtual, {used:.2f} GB allocated, in {d}',
          file=sys.stderr)
    try:
        c = contenders(src, dst, a.direct, a.base_build)
        times, rss = run_rounds(c, a.rounds, src, dst)
        title = ('W1 convert raw->raw, -t none -T none, ' + d if a.direct
                 else 'W1 convert raw->raw, ' + d)
        report(title, times, rss, 'strata-img')
    finally:
        for p in (src, dst):
            if os.path.exists(p):
                os.unlink(p)


if __name__ == '__main__':
    main()
