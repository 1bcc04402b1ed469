"""Data written by one tool reads back identically in the other."""
import os

import pytest

from conftest import io_args, make_image, run

MiB = 1 << 20

# (offset, length, pattern byte): varied sizes and alignments.
EXTENTS = [(0, 512, 0x11), (4096, 65536, 0x22), (1 * MiB + 7, 3000, 0x33),
           (3 * MiB, 1 * MiB, 0x44), (8 * MiB - 512, 512, 0x55)]

WRITE_MODES = [
    ('default', []),
    ('threads', ['-i', 'threads']),
    ('io_uring', ['-i', 'io_uring']),
    ('nocache', ['-n']),
    ('native', ['-n', '-i', 'native']),
    ('writethrough', ['-t', 'writethrough']),
    ('unsafe', ['-t', 'unsafe']),
]


def writes(extents):
    return [f'write -P {p} {o} {n}' for o, n, p in extents]


def reads(extents):
    return [f'read -P {p} {o} {n}' for o, n, p in extents]


def check(res):
    assert res.rc == 0, res
    assert 'verification failed' not in res.out, res


@pytest.mark.parametrize('mode', WRITE_MODES, ids=[m[0] for m in WRITE_MODES])
def test_strata_writes_reference_reads(mode, disk_dir, strata_io, ref_qemu_io):
    img = make_image(os.path.join(disk_dir, 'a.raw'), 8 * MiB)
    check(run([strata_io, '-f', 'raw'] + mode[1] + io_args(writes(EXTENTS)) + [img]))
    check(run([ref_qemu_io, '-f', 'raw'] + io_args(reads(EXTENTS)) + [img]))
    # untouched areas still read as zeroes
    check(run([ref_qemu_io, '-f', 'raw', '-c', 'read -P 0 5M 1M', img]))


@pytest.mark.parametrize('mode', WRITE_MODES, ids=[m[0] for m in WRITE_MODES])
def test_reference_writes_strata_reads(mode, disk_dir, strata_io, ref_qemu_io):
    img = make_image(os.path.join(disk_dir, 'b.raw'), 8 * MiB)
    check(run([ref_qemu_io, '-f', 'raw'] + io_args(writes(EXTENTS)) + [img]))
    check(run([strata_io, '-f', 'raw'] + mode[1] + io_args(reads(EXTENTS)) + [img]))


def test_aio_writes_in_parallel_read_back(disk_dir, strata_io, ref_qemu_io):
    img = make_image(os.path.join(disk_dir, 'c.raw'), 16 * MiB)
    cmds = [f'aio_write -P {i + 1} {i * 256}k 256k' for i in range(64)]
    check(run([strata_io, '-f', 'raw'] + io_args(cmds + ['aio_flush']) + [img]))
    check(run([ref_qemu_io, '-f', 'raw'] +
              io_args([f'read -P {i + 1} {i * 256}k 256k' for i in range(64)]) + [img]))


def test_zero_and_discard_read_as_zero_in_reference(disk_dir, strata_io, ref_qemu_io):
    img = make_image(os.path.join(disk_dir, 'd.raw'), 4 * MiB,
                     [(0, b'\xff' * (4 * MiB))])
    check(run([strata_io, '-f', 'raw', '-c', 'write -z 0 1M', '-c',
               'write -z -u 1M 1M', '-c', 'discard 2M 1M', img]))
    check(run([ref_qemu_io, '-f', 'raw', '-c', 'read -P 0 0 2M', '-c',
               'read -P 0xff 3M 1M', img]))
    # discard on raw/file punches a hole: the reference sees zeroes there too
    check(run([ref_qemu_io, '-f', 'raw', '-c', 'read -P 0 2M 1M', img]))


def test_map_matches_reference(tmp_path, our_qemu_io, ref_qemu_io):
    img = make_image(tmp_path / 'm.raw', 32 * MiB,
                     [(0, b'a' * 65536), (5 * MiB, b'b' * (1 * MiB)),
                      (31 * MiB, b'c' * 4096)])
    ours = run([our_qemu_io, '-f', 'raw', '-c', 'map', img])
    ref = run([ref_qemu_io, '-f', 'raw', '-c', 'map', img])
    assert ours.out == ref.out and ours.rc == ref.rc == 0, ours
