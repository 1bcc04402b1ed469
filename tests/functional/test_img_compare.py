"""strata-img compare against the reference qemu-img: results, messages,
progress output and exit codes (0 same, 1 differ, 2 open error)."""
import os

import pytest

from conftest import make_image, run

MiB = 1 << 20


def prepare(d):
    make_image(d / 'a.raw', MiB, [(4096, b'data' * 1000)])
    make_image(d / 'same.raw', MiB, [(4096, b'data' * 1000)])
    make_image(d / 'diff.raw', MiB, [(4096, b'data' * 1000), (70000, b'x')])
    make_image(d / 'zero-data.raw', MiB, [(4096, b'data' * 1000), (300000, bytes(8192))])
    make_image(d / 'big.raw', 2 * MiB, [(4096, b'data' * 1000)])
    make_image(d / 'big-tail.raw', 2 * MiB, [(4096, b'data' * 1000), (1500000, b'y')])
    make_image(d / 'empty.raw', MiB)
    make_image(d / 'first-sector.raw', MiB, [(0, b'z'), (4096, b'data' * 1000)])
    # holes larger than the 2 MiB read chunk
    sparse = [(MiB, b'a' * 65536), (5 * MiB, b'b' * 65536)]
    make_image(d / 'sp1.raw', 10 * MiB, sparse)
    make_image(d / 'sp2.raw', 10 * MiB, sparse)
    make_image(d / 'sp-tail.raw', 20 * MiB, sparse + [(15 * MiB, b'c')])


CASES = [
    ('identical', ['a.raw', 'same.raw']),
    ('identical-formats', ['-f', 'raw', '-F', 'raw', 'a.raw', 'same.raw']),
    ('explicit-zeroes', ['-f', 'raw', '-F', 'raw', 'a.raw', 'zero-data.raw']),
    ('differ', ['a.raw', 'diff.raw']),
    ('differ-sector-zero', ['-f', 'raw', '-F', 'raw', 'a.raw', 'first-sector.raw']),
    ('differ-vs-empty', ['-f', 'raw', '-F', 'raw', 'empty.raw', 'a.raw']),
    ('differ-quiet', ['-q', 'a.raw', 'diff.raw']),
    ('size-mismatch-zero-tail', ['-f', 'raw', '-F', 'raw', 'a.raw', 'big.raw']),
    ('size-mismatch-reversed', ['-f', 'raw', '-F', 'raw', 'big.raw', 'a.raw']),
    ('size-mismatch-data-tail', ['-f', 'raw', '-F', 'raw', 'a.raw', 'big-tail.raw']),
    ('size-mismatch-data-tail-rev', ['-f', 'raw', '-F', 'raw', 'big-tail.raw', 'a.raw']),
    ('size-mismatch-quiet', ['-q', '-f', 'raw', '-F', 'raw', 'a.raw', 'big.raw']),
    ('strict-size', ['-s', '-f', 'raw', '-F', 'raw', 'a.raw', 'big.raw']),
    ('strict-size-quiet', ['-q', '-s', '-f', 'raw', '-F', 'raw', 'a.raw', 'big.raw']),
    ('strict-identical', ['-s', '-f', 'raw', '-F', 'raw', 'a.raw', 'same.raw']),
    ('strict-long', ['--strict', '--a-format', 'raw', '--b-format', 'raw',
                     'a.raw', 'diff.raw']),
    ('progress-identical', ['-p', 'a.raw', 'same.raw']),
    ('progress-differ', ['-p', 'a.raw', 'diff.raw']),
    ('progress-size-mismatch', ['-p', '-f', 'raw', '-F', 'raw', 'a.raw', 'big-tail.raw']),
    ('progress-quiet', ['-p', '-q', 'a.raw', 'same.raw']),
    # progress moves by whole zero extents, reads by 2 MiB
    ('progress-holes', ['-p', 'sp1.raw', 'sp2.raw']),
    ('progress-holes-tail', ['-p', 'sp1.raw', 'sp-tail.raw']),
    ('progress-holes-strict', ['-p', '-s', 'sp2.raw', 'sp1.raw']),
    ('cache-none', ['-T', 'none', '-f', 'raw', '-F', 'raw', 'a.raw', 'same.raw']),
    ('cache-bad', ['-T', 'foo', 'a.raw', 'same.raw']),
    ('force-share', ['-U', 'a.raw', 'diff.raw']),
    ('image-opts', ['--image-opts', 'driver=raw,file.filename=a.raw',
                    'driver=raw,file.filename=diff.raw']),
    ('image-opts-and-format', ['--image-opts', '-f', 'raw', 'a.raw', 'same.raw']),
    # -F is refused only when the second image is opened
    ('image-opts-and-b-format', ['--image-opts', '-F', 'raw',
                                 'driver=raw,file.filename=a.raw',
                                 'driver=raw,file.filename=same.raw']),
    ('image-opts-and-b-format-bad-first', ['--image-opts', '-F', 'raw',
                                           'driver=raw,file.filename=none.raw',
                                           'driver=raw,file.filename=same.raw']),
    ('null-co-vs-zeroes', ['-s', 'json:{"driver":"null-co","size":1048576,'
                           '"read-zeroes":true}', 'empty.raw']),
    ('bad-object', ['--object', 'foo', 'a.raw', 'same.raw']),
    ('one-file', ['a.raw']),
    ('three-files', ['a.raw', 'same.raw', 'diff.raw']),
    ('bad-option', ['-x', 'a.raw', 'same.raw']),
    ('missing-argument', ['a.raw', 'same.raw', '-f']),
]


def run_in(prog, d, argv):
    r = run([prog] + argv, cwd=d)
    return (r.rc, r.out.replace(prog, 'qemu-img'), r.err.replace(prog, 'qemu-img'))


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_compare_as_reference(case, tmp_path, our_qemu_img, ref_qemu_img):
    _, argv = case
    prepare(tmp_path)
    ref = run_in(ref_qemu_img, tmp_path, ['compare'] + argv)
    ours = run_in(our_qemu_img, tmp_path, ['compare'] + argv)
    assert ours == ref


def test_compare_image_opts_with_b_format(tmp_path, our_qemu_img, ref_qemu_img):
    prepare(tmp_path)
    argv = ['compare', '--image-opts', '-F', 'raw', 'a.raw', 'same.raw']
    assert run_in(our_qemu_img, tmp_path, argv) == run_in(ref_qemu_img, tmp_path, argv)


def test_compare_large_sparse_is_fast(tmp_path, our_qemu_img):
    """Holes are skipped by block status: a 64 GiB sparse pair with a few
    data blocks compares in well under a few seconds."""
    big = 64 << 30
    chunks = [(i * (1 << 30), b'q' * 65536) for i in range(0, 64, 7)]
    make_image(tmp_path / 'x.raw', big, chunks)
    make_image(tmp_path / 'y.raw', big, chunks)
    r = run([our_qemu_img, 'compare', '-f', 'raw', '-F', 'raw', 'x.raw', 'y.raw'],
            cwd=tmp_path, timeout=20)
    assert (r.rc, r.out, r.err) == (0, 'Images are identical.\n', '')
    make_image(tmp_path / 'y.raw', big, chunks + [(50 << 30, b'w')])
    r = run([our_qemu_img, 'compare', '-f', 'raw', '-F', 'raw', 'x.raw', 'y.raw'],
            cwd=tmp_path, timeout=20)
    assert (r.rc, r.out) == (1, f'Content mismatch at offset {50 << 30}!\n')


@pytest.fixture
def no_direct_dir(tmp_path):
    """A directory on ramfs, which refuses O_DIRECT (mounted here: needs
    root; skipped elsewhere)."""
    d = tmp_path / 'ramfs'
    d.mkdir()
    if os.geteuid() != 0 or run(['mount', '-t', 'ramfs', 'ramfs', str(d)]).rc:
        pytest.skip('cannot mount a ramfs')
    try:
        try:
            os.close(os.open(d / 'probe', os.O_CREAT | os.O_RDWR | os.O_DIRECT))
            pytest.skip('this ramfs accepts O_DIRECT')
        except OSError:
            pass
        os.unlink(d / 'probe')
        yield d
    finally:
        run(['umount', str(d)])


@pytest.mark.parametrize('argv', [
    ['-T', 'none', 'a.raw', 'same.raw'],
    ['-T', 'directsync', '-f', 'raw', 'a.raw', 'same.raw'],
    ['-T', 'writeback', 'a.raw', 'same.raw'],
])
def test_compare_without_o_direct(no_direct_dir, our_qemu_img, ref_qemu_img,
                                  argv):
    """The reference's message when the file system has no O_DIRECT."""
    prepare(no_direct_dir)
    ref = run_in(ref_qemu_img, no_direct_dir, ['compare'] + argv)
    ours = run_in(our_qemu_img, no_direct_dir, ['compare'] + argv)
    assert ours == ref
