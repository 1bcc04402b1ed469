#!/usr/bin/env python3
"""W9: `strata-img bench` 4 KiB requests at depth 64, raw, `-t none`, read
and write, with each I/O engine, against `qemu-img bench` (QEMU 10.0) and
fio's same job, interleaved (A B C A B C ... after a warm-up round).

Usage: scripts/bench/img_bench.py [--rounds N] [--count N] [--dir DIR]
                                  [--engines io_uring,native,threads]
                                  [--files sparse,full] [--no-fio]
Reads are measured on a 1 GiB sparse file (the software path: the kernel
answers from the extent map) and on a fully written 1 GiB file (device
bound); writes on the fully written file.  DIR must be a real file system
(O_DIRECT), default /var/tmp.  Figures: IOPS = count / run time as the
tools print it ("Run completed in S seconds."); fio's own IOPS."""
import argparse
import os
import re

from common import BUILD, REF_BIN, interleave, report, run_timed
from engines import fio, make_files


def img_bench(exe, path, engine, write, count):
    argv = [exe, 'bench', '-f', 'raw', '-t', 'none', '-i', engine,
            '-d', '64', '-s', '4k', '-c', str(count)]
    argv += ['-w'] if write else []
    out, _, _ = run_timed(argv + [path])
    secs = float(re.search(r'Run completed in ([0-9.]+) seconds', out).group(1))
    return count / max(secs, 1e-6)


def contenders(a, path, eng, write):
    ours = os.path.join(BUILD, 'tools', 'img', 'strata-img')
    ref = os.path.join(REF_BIN, 'qemu-img')
    fio_engine = {'io_uring': 'io_uring', 'native': 'libaio', 'threads': 'psync'}
    c = {
        f'strata-img {eng}': lambda: img_bench(ours, path, eng, write, a.count),
        f'qemu-img {eng}': lambda: img_bench(ref, path, eng, write, a.count),
    }
    if not a.no_fio and eng != 'threads':
        c[f'fio {fio_engine[eng]}'] = lambda: fio(path, fio_engine[eng], write,
                                                  a.count)
    if not a.no_fio and eng == 'io_uring':
        c['fio io_uring fixedbufs+regfiles'] = lambda: fio(
            path, 'io_uring', write, a.count,
            ['--fixedbufs=1', '--registerfiles=1'])
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--count', type=int, default=300000)
    ap.add_argument('--dir', default='/var/tmp')
    ap.add_argument('--engines', default='io_uring,native,threads')
    ap.add_argument('--files', default='sparse,full')
    ap.add_argument('--no-fio', action='store_true')
    a = ap.parse_args()
    files = make_files(a.dir)
    for fname, path in files.items():
        if fname not in a.files.split(','):
            continue
        for write in (False, True):
            if write and fname == 'sparse':
                continue      # writes would fill the sparse file
            kind = 'write' if write else 'read'
            for eng in a.engines.split(','):
                figs = interleave(contenders(a, path, eng, write), a.rounds)
                report(f'W9 bench {kind}, {fname} file, {eng}, 4 KiB, depth 64, -t none',
                       figs, f'qemu-img {eng}', 'IOPS')
    os.unlink(files['sparse'])


if __name__ == '__main__':
    main()
