#!/usr/bin/env python3
"""Section 9 of the engine issue: 4 KiB requests at depth 64 through the
full stack (BlockBackend -> raw -> file, O_DIRECT) with each I/O engine,
against `qemu-img bench` and fio's same job, interleaved in one run.

Usage: scripts/bench/engines.py [--rounds N] [--count N] [--dir DIR]
                                [--base-build DIR] [--no-fio]
--base-build adds a second strata build (e.g. the previous commit's) as
a contender, for before/after figures in the same interleaved run.
Files: a 1 GiB sparse file and a 1 GiB fully written file in DIR
(default /var/tmp: O_DIRECT needs a real file system, not tmpfs)."""
import argparse
import json
import os
import re
import shutil
import subprocess

from common import BUILD, REF_BIN, interleave, report, run_timed

GiB = 1 << 30


def ours(path, engine, write, count, build=BUILD):
    exe = os.path.join(build, 'tests', 'helpers', 'strata-bench-io')
    argv = [exe, '-n', '-i', engine, '-d', '64', '-s', '4k', '-c', str(count)]
    argv += ['-w'] if write else []
    out, _, _ = run_timed(argv + [path])
    return float(re.search(r'IOPS: ([0-9.]+)', out).group(1))


def qemu_img(path, engine, write, count):
    argv = [os.path.join(REF_BIN, 'qemu-img'), 'bench', '-f', 'raw', '-t', 'none',
            '-i', engine, '-d', '64', '-s', '4k', '-c', str(count)]
    argv += ['-w'] if write else []
    out, _, _ = run_timed(argv + [path])
    secs = float(re.search(r'Run completed in ([0-9.]+) seconds', out).group(1))
    return count / secs


def fio(path, engine, write, count, extra=()):
    argv = ['fio', '--name=j', f'--filename={path}', '--direct=1',
            f'--rw={"write" if write else "read"}', '--bs=4k', '--iodepth=64',
            f'--ioengine={engine}', f'--number_ios={count}', '--size=1g',
            '--output-format=json'] + list(extra)
    out, _, _ = run_timed(argv)
    # synchronous engines print a queue-depth note before the JSON
    job = json.loads(out[out.index('{'):])['jobs'][0]
    return job['write' if write else 'read']['iops']


def make_files(d):
    sparse, full = os.path.join(d, 'bench-sparse.raw'), os.path.join(d, 'bench-full.raw')
    with open(sparse, 'wb') as f:
        f.truncate(GiB)
    if not os.path.exists(full) or os.path.getsize(full) != GiB:
        subprocess.run(['dd', 'if=/dev/zero', f'of={full}', 'bs=4M', 'count=256',
                        'oflag=direct', 'status=none'], check=True)
    return {'sparse': sparse, 'full': full}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--count', type=int, default=400000)
    ap.add_argument('--dir', default='/var/tmp')
    ap.add_argument('--engines', default='io_uring,native,threads')
    ap.add_argument('--base-build', help='another build dir to compare with')
    ap.add_argument('--no-fio', action='store_true')
    ap.add_argument('--files', default='sparse,full',
                    help='which files to measure (sparse: reads only)')
    a = ap.parse_args()
    files = make_files(a.dir)
    fio_engine = {'io_uring': 'io_uring', 'native': 'libaio', 'threads': 'psync'}
    for fname, path in files.items():
        if fname not in a.files.split(','):
            continue
        for write in (False, True):
            if write and fname == 'sparse':
                continue      # writes fill the sparse file: measure on 'full'
            kind = 'write' if write else 'read'
            for eng in a.engines.split(','):
                c = {
                    f'strata {eng}': lambda e=eng: ours(path, e, write, a.count),
                    f'qemu-img {eng}': lambda e=eng: qemu_img(path, e, write, a.count),
                }
                if a.base_build:
                    c[f'strata-base {eng}'] = lambda e=eng: ours(
                        path, e, write, a.count, a.base_build)
                if not a.no_fio:
                    c[f'fio {fio_engine[eng]}'] = lambda e=eng: fio(
                        path, fio_engine[e], write, a.count)
                if eng == 'io_uring' and not a.no_fio:
                    c['fio io_uring fixedbufs+regfiles'] = lambda: fio(
                        path, 'io_uring', write, a.count,
                        ['--fixedbufs=1', '--registerfiles=1'])
                figs = interleave(c, a.rounds)
                report(f'{kind}, {fname} file, engine {eng}, 4 KiB, depth 64, O_DIRECT',
                       figs, f'qemu-img {eng}', 'IOPS')
    os.unlink(files['sparse'])


if __name__ == '__main__':
    main()
