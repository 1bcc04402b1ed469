"""convert -p and --salvage as the reference reports them: progress is
the share of the chunks that are read (data; zeroes too with -S 0), sized
by a first block-status walk; block-status failures under --salvage are
retried on shorter ranges down to a sector and reported, in both walks."""
import os
import subprocess

import pytest

from conftest import make_image

KiB = 1 << 10
MiB = 1 << 20


def convert(prog, args, srcs, dst):
    if os.path.exists(dst):
        os.unlink(dst)
    return subprocess.run([prog, 'convert'] + args + srcs + [dst],
                          capture_output=True, text=True, timeout=60)


LAYOUTS = {
    'four-extents': (128 * MiB, [(o, b'\x11' * MiB) for o in
                                 (0, 2 * MiB, 4 * MiB, 32 * MiB)]),
    'empty': (64 * MiB, []),
    'small-runs': (9 * MiB + 512,
                   [(o, b'\x22' * 12 * KiB) for o in range(0, 9 * MiB, 300 * KiB)]),
    'all-data': (5 * MiB, [(0, b'\x33' * 5 * MiB)]),
}


# (not -W: chunks then finish in whatever order they do, in both tools)
@pytest.mark.parametrize('extra', [[], ['-S', '0'], ['-m', '1'],
                                   ['-S', '64k', '-m', '16']])
@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_progress_like_reference(strata_img, ref_qemu_img, tmp_path, layout,
                                 extra):
    size, chunks = LAYOUTS[layout]
    src = make_image(tmp_path / 's.raw', size, chunks)
    args = ['-p', '-f', 'raw', '-O', 'raw'] + extra
    ours = convert(strata_img, args, [src], str(tmp_path / 'o.raw'))
    ref = convert(ref_qemu_img, args, [src], str(tmp_path / 'r.raw'))
    assert (ours.returncode, ours.stdout) == (ref.returncode, ref.stdout)


def test_progress_several_sources(strata_img, ref_qemu_img, tmp_path):
    srcs = [make_image(tmp_path / ('s%d.raw' % i), (i + 2) * MiB,
                       [(i * 512 * KiB, b'\x44' * 700 * KiB)]) for i in range(3)]
    args = ['-p', '-f', 'raw', '-O', 'raw']
    ours = convert(strata_img, args, srcs, str(tmp_path / 'o.raw'))
    ref = convert(ref_qemu_img, args, srcs, str(tmp_path / 'r.raw'))
    assert (ours.returncode, ours.stdout) == (ref.returncode, ref.stdout)


def blkdebug_source(path, status_errors, read_errors):
    rules = [{'event': 'none', 'iotype': 'block-status', 'errno': 5,
              'sector': o // 512} for o in status_errors]
    rules += [{'event': 'none', 'iotype': 'read', 'errno': 5,
               'sector': o // 512} for o in read_errors]
    import json
    return 'json:' + json.dumps({
        'driver': 'blkdebug', 'inject-error': rules,
        'image': {'driver': 'raw',
                  'file': {'driver': 'file', 'filename': str(path)}}})


@pytest.mark.parametrize('extra', [[], ['-m', '4'], ['-p'], ['-q']])
def test_salvage_block_status_like_reference(our_qemu_img, ref_qemu_img,
                                             tmp_path, extra):
    """Failing block status and reads, some at the same sector and some in
    a row: the same warnings in the same order, and the same image."""
    src = make_image(tmp_path / 's.raw', 40 * MiB, [(0, b'\x2a' * 40 * MiB)])
    status = [16 * MiB + 8192, 33 * MiB + 512]
    reads = [32 * MiB - 64 * KiB, 33 * MiB + 512, 34 * MiB, 34 * MiB + 512]
    spec = blkdebug_source(src, status, reads)
    res = []
    for prog, name in ((our_qemu_img, 'o.raw'), (ref_qemu_img, 'r.raw')):
        r = convert(prog, ['--salvage', '-O', 'raw'] + extra, [spec],
                    str(tmp_path / name))
        res.append((r.returncode, r.stdout,
                    r.stderr.replace(prog, 'qemu-img')))
    assert res[0] == res[1]
    if '-q' not in extra:
        assert res[0][2].count('error while reading block status') == 4
    with open(tmp_path / 'o.raw', 'rb') as a, open(tmp_path / 'r.raw', 'rb') as b:
        assert a.read() == b.read()


def test_block_status_error_without_salvage(our_qemu_img, ref_qemu_img,
                                            tmp_path):
    src = make_image(tmp_path / 's.raw', 4 * MiB, [(0, b'\x2a' * 4 * MiB)])
    spec = blkdebug_source(src, [MiB], [])
    res = []
    for prog, name in ((our_qemu_img, 'o.raw'), (ref_qemu_img, 'r.raw')):
        r = convert(prog, ['-O', 'raw'], [spec], str(tmp_path / name))
        res.append((r.returncode, r.stdout,
                    r.stderr.replace(prog, 'qemu-img')))
    assert res[0] == res[1]
    assert res[0][0] == 1
