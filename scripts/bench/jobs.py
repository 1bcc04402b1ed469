#!/usr/bin/env python3
"""Block jobs (PERF.md W7, W8), strata-img against qemu-img 10.0,
interleaved A B A B per round after a warm-up round.

Workloads (pick with --only, comma-separated; default: all):
  w7        commit of an overlay holding 25 % rewritten data (scattered
            1 MiB runs) over a fully written --size GiB qcow2 base
  w7rate    the same commit with -r (--rate MiB/s): the achieved rate
            over the run and over each second (from -p's progress lines)
  w8        safe rebase of an overlay from a fully written base onto a
            copy of it that differs in 10 % (scattered 1 MiB runs)

Each run starts from fresh copies of the images (copied outside the
timing).  The warm-up round checks the results: the bases both tools
committed into are equal under the reference `compare` and pass its
`check`; the rebased overlay reads as before.  Reports per contender the
median wall seconds, the median per-round ratios strata/reference of
wall time and of CPU time (user + system: less disturbed by a busy
machine), and peak RSS.

--before PATH adds a third contender, another strata-img binary (e.g. a
copy of the build before a change), run interleaved with the other two.

Usage: scripts/bench/jobs.py [--rounds N] [--only w7,w8] [--dir DIR]
                             [--size GiB] [--rate MiB/s] [--before PATH]"""
import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

from common import QEMU, REF_BIN, TOOLS, run

MiB = 1 << 20
GiB = 1 << 30
QEMU_IO = os.path.join(REF_BIN, 'qemu-io')


def timed(argv, cwd):
    """(wall s, cpu s, peak RSS KiB) of one run of @argv."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode()
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f'failed: {" ".join(argv)}\n{err}')
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def qemu_io(path, cmds):
    for i in range(0, len(cmds), 400):
        run([QEMU_IO, '-f', 'qcow2', path] + cmds[i:i + 400])


def full_image(path, size):
    """A qcow2 image with every cluster written (a pattern per GiB)."""
    run([QEMU, 'create', '-q', '-f', 'qcow2', path, str(size)])
    cmds = []
    for off in range(0, size, GiB // 2):
        n = min(GiB // 2, size - off)
        cmds += ['-c', f'write -q -P 0x{(off // GiB) % 250 + 1:02x} {off} {n}']
    qemu_io(path, cmds)


def rewrite(path, size, share, seed):
    """Rewrite @share of @path in scattered distinct 1 MiB runs."""
    rng = random.Random(seed)
    runs = rng.sample(range(size // MiB), int(size // MiB * share))
    cmds = []
    for r in sorted(runs):
        cmds += ['-c', f'write -q -P 0x{rng.randrange(1, 255):02x} '
                 f'{r * MiB} 1M']
    qemu_io(path, cmds)


def fresh(d, templates):
    """Copy the templates, and write the copies back before the timed
    run: else its final flush also waits for the copy's dirty pages."""
    for src, dst in templates:
        shutil.copyfile(os.path.join(d, src), os.path.join(d, dst))
    os.sync()


def report(title, wall, cpu, rss):
    bw, bc = wall['qemu-img 10.0'], cpu['qemu-img 10.0']
    print(f'\n### {title}\n')
    print('| contender | median wall s | wall / qemu-img (median) '
          '| median CPU s | CPU / qemu-img (median) | peak RSS MiB |')
    print('|---|---|---|---|---|---|')
    for n in wall:
        rw = statistics.median(w / b for w, b in zip(wall[n], bw))
        rc = statistics.median(c / b for c, b in zip(cpu[n], bc))
        print(f'| {n} | {statistics.median(wall[n]):.2f} | {rw:.2f}x | '
              f'{statistics.median(cpu[n]):.2f} | {rc:.2f}x | '
              f'{rss[n] / 1024:.1f} |')
    sys.stdout.flush()


def rounds_of(a, d, templates, argv_of, verify):
    wall = {n: [] for n in TOOLS}
    cpu = {n: [] for n in TOOLS}
    rss = {n: 0 for n in TOOLS}
    for r in range(a.rounds + 1):         # round 0: warm-up, checked
        for name, tool in TOOLS.items():
            fresh(d, templates)
            w, c, m = timed(argv_of(tool), d)
            if r == 0:
                verify(name)
                continue
            wall[name].append(w)
            cpu[name].append(c)
            rss[name] = max(rss[name], m)
    return wall, cpu, rss


def w7_setup(a, d):
    size = int(a.size * GiB)
    if not os.path.exists(os.path.join(d, 'w7-base.tpl')):
        full_image(os.path.join(d, 'w7-base.tpl'), size)
        fresh(d, [('w7-base.tpl', 'base.qcow2')])
        run([QEMU, 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F',
             'qcow2', os.path.join(d, 'w7-top.tpl'), str(size)])
        rewrite(os.path.join(d, 'w7-top.tpl'), size, 0.25, 7)
    return [('w7-base.tpl', 'base.qcow2'), ('w7-top.tpl', 'top.qcow2')]


def w7(a, d):
    templates = w7_setup(a, d)

    def verify(name):
        base = os.path.join(d, 'base.qcow2')
        if run([QEMU, 'check', base], check=False).returncode != 0:
            sys.exit(f'{name}: base fails check')
        if name == 'qemu-img 10.0':
            os.replace(base, os.path.join(d, 'w7-ref-result.qcow2'))
            return
        ref = os.path.join(d, 'w7-ref-result.qcow2')
        if os.path.exists(ref):
            p = run([QEMU, 'compare', ref, base], check=False)
            if p.returncode != 0:
                sys.exit(f'{name}: committed base differs: {p.stdout}')
    tools = dict(TOOLS)
    # the reference's result first, so that strata's can be compared
    TOOLS.clear()
    TOOLS.update(sorted(tools.items(), key=lambda t: t[0] != 'qemu-img 10.0'))
    report(f'W7 commit: overlay with 25 % rewritten over a {a.size:g} GiB '
           f'base ({d})',
           *rounds_of(a, d, templates,
                      lambda t: [t, 'commit', '-q', 'top.qcow2'], verify))
    TOOLS.clear()
    TOOLS.update(tools)
    ref = os.path.join(d, 'w7-ref-result.qcow2')
    if os.path.exists(ref):
        os.unlink(ref)


def progress_rates(argv, cwd, total):
    """Run @argv (with -p) and read its progress lines as they come:
    (wall s, [(t, bytes done)])."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    samples, buf = [], b''
    while True:
        ch = p.stdout.read(1)
        if not ch:
            break
        if ch == b'\r':
            m = re.search(rb'\(([0-9.]+)/100%\)', buf)
            if m:
                samples.append((time.monotonic() - t0,
                                float(m.group(1)) / 100 * total))
            buf = b''
        else:
            buf += ch
    p.wait()
    return time.monotonic() - t0, samples


def windows(samples, width=1.0):
    """Rates (bytes/s) over consecutive @width-second windows."""
    out, start = [], (0.0, 0.0)
    for t, b in samples:
        if t - start[0] >= width:
            out.append((b - start[1]) / (t - start[0]))
            start = (t, b)
    return out


def w7rate(a, d):
    templates = w7_setup(a, d)
    rate = a.rate * MiB
    total = int(a.size * GiB * 0.25)
    print(f'\n### W7 commit -r {a.rate} MiB/s ({total // MiB} MiB to copy)\n')
    print('| contender | wall s | achieved / target | per-second windows: '
          'min / max vs target |')
    print('|---|---|---|---|')
    for name, tool in TOOLS.items():
        fresh(d, templates)
        wall, samples = progress_rates([tool, 'commit', '-p', '-r',
                                        f'{a.rate}M', 'top.qcow2'], d, total)
        win = windows(samples)
        # the copy itself: up to the last progress line below 100 %
        copy_t = max((t for t, b in samples if b < total), default=wall)
        got = total / max(copy_t, 1e-9)
        wmin = min(win) / rate if win else float('nan')
        wmax = max(win) / rate if win else float('nan')
        print(f'| {name} | {wall:.2f} | {got / rate:.3f} | '
              f'{wmin:.2f} / {wmax:.2f} |')
    sys.stdout.flush()


def w8(a, d):
    size = int(a.size * GiB)
    if not os.path.exists(os.path.join(d, 'w8-new.qcow2')):
        full_image(os.path.join(d, 'w8-old.qcow2'), size)
        shutil.copyfile(os.path.join(d, 'w8-old.qcow2'),
                        os.path.join(d, 'w8-new.qcow2'))
        rewrite(os.path.join(d, 'w8-new.qcow2'), size, 0.10, 8)
        run([QEMU, 'create', '-q', '-f', 'qcow2', '-b', 'w8-old.qcow2', '-F',
             'qcow2', os.path.join(d, 'w8-top.tpl'), str(size)])
        rewrite(os.path.join(d, 'w8-top.tpl'), size, 0.01, 9)
    templates = [('w8-top.tpl', 'top.qcow2')]

    def verify(name):
        top = os.path.join(d, 'top.qcow2')
        p = run([QEMU, 'compare', os.path.join(d, 'w8-top.tpl'), top],
                check=False)
        if p.returncode != 0 or run([QEMU, 'check', top],
                                    check=False).returncode != 0:
            sys.exit(f'{name}: rebased overlay differs: {p.stdout}')
    report(f'W8 safe rebase onto a base differing in 10 % ({a.size:g} GiB, '
           f'{d})',
           *rounds_of(a, d, templates,
                      lambda t: [t, 'rebase', '-q', '-b', 'w8-new.qcow2',
                                 '-F', 'qcow2', 'top.qcow2'], verify))


WORKLOADS = {'w7': w7, 'w7rate': w7rate, 'w8': w8}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--only', default='w7,w7rate,w8')
    ap.add_argument('--dir', default='/var/tmp/strata-jobs-bench')
    ap.add_argument('--size', type=float, default=4)
    ap.add_argument('--rate', type=int, default=128)
    ap.add_argument('--keep', action='store_true',
                    help='keep the images for the next run')
    ap.add_argument('--before', help='another strata-img to compare')
    a = ap.parse_args()
    if a.before:
        TOOLS['strata-img (before)'] = os.path.abspath(a.before)
    os.makedirs(a.dir, exist_ok=True)
    try:
        for w in a.only.split(','):
            WORKLOADS[w](a, a.dir)
    finally:
        if not a.keep:
            shutil.rmtree(a.dir, ignore_errors=True)


if __name__ == '__main__':
    main()
