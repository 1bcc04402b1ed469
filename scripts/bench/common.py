"""Shared helpers for the interleaved benchmarks in scripts/bench/.

Every benchmark runs the contenders A B C A B C ... after one warm-up
round, and reports per contender the median figure and, against a chosen
baseline, the median of the per-round ratios (rounds run back to back, so
machine noise hits both sides of a ratio alike)."""
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get('STRATA_BUILD', os.path.join(TOP, 'build'))
REF_BIN = os.environ.get('STRATA_REF_BIN', '/opt/qemu-ref/usr/bin')

STRATA = os.path.join(BUILD, 'tools', 'img', 'strata-img')
QEMU = os.path.join(REF_BIN, 'qemu-img')
TOOLS = {'strata-img': STRATA, 'qemu-img 10.0': QEMU}   # ours, reference


def run(argv, check=True):
    """Run @argv (not timed); with @check, leave on failure, showing its
    output."""
    p = subprocess.run(argv, capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit(f'failed: {" ".join(argv)}\n{p.stdout}{p.stderr}')
    return p


def run_timed(argv, env=None):
    """Run @argv; return (stdout, seconds, peak RSS KiB of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, env=env)
    secs = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f'benchmark command failed: {" ".join(argv)}\n{p.stderr}')
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return p.stdout, secs, max(rss, before)


def interleave(contenders, rounds):
    """contenders: {name: callable() -> figure}.  Returns {name: [figures]}."""
    for fn in contenders.values():
        fn()                      # warm-up, not counted
    figures = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            figures[name].append(fn())
    return figures


def report(title, figures, baseline, unit, higher_is_better=True):
    print(f'\n### {title}\n')
    print(f'| contender | median {unit} | ratio vs {baseline} (median of rounds) |')
    print('|---|---|---|')
    base = figures[baseline]
    for name, vals in figures.items():
        ratios = [v / b for v, b in zip(vals, base)]
        print(f'| {name} | {statistics.median(vals):,.0f} | {statistics.median(ratios):.2f}x |')
    sys.stdout.flush()
