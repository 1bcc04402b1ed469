"""strata-img resize against the reference qemu-img: every option, size
syntax and error message, and the resulting image size and content."""
import hashlib
import os
import subprocess
import time

import pytest

from conftest import make_image, run

MiB = 1 << 20


def prepare_raw(d):
    make_image(d / 'r.raw', 8 * MiB, [(4096, b'abc' * 100)])


def prepare_ro(d):
    prepare_raw(d)
    os.chmod(d / 'r.raw', 0o444)


# (id, setup, argv after "resize")
CASES = [
    ('probe-grow', prepare_raw, ['r.raw', '9M']),
    ('grow-plus', prepare_raw, ['-f', 'raw', 'r.raw', '+1M']),
    ('shrink-needs-flag', prepare_raw, ['-f', 'raw', 'r.raw', '-1M']),
    ('shrink-abs-needs-flag', prepare_raw, ['-f', 'raw', 'r.raw', '1M']),
    ('shrink-delta', prepare_raw, ['-f', 'raw', '--shrink', 'r.raw', '-1M']),
    ('shrink-abs', prepare_raw, ['--shrink', '-f', 'raw', 'r.raw', '1000']),
    ('shrink-delta-after-option', prepare_raw, ['-f', 'raw', 'r.raw', '--shrink', '-1M']),
    ('shrink-double-dash', prepare_raw, ['r.raw', '--shrink', '-f', 'raw', '--', '-1M']),
    ('shrink-options-after', prepare_raw, ['--shrink', 'r.raw', '-1M', '-f', 'raw']),
    ('negative-result', prepare_raw, ['-f', 'raw', '--shrink', 'r.raw', '-10M']),
    ('zero', prepare_raw, ['-f', 'raw', 'r.raw', '0']),
    ('plus-zero', prepare_raw, ['-f', 'raw', 'r.raw', '+0']),
    ('minus-zero', prepare_raw, ['-f', 'raw', 'r.raw', '-0']),
    ('bad-size', prepare_raw, ['-f', 'raw', 'r.raw', 'x']),
    ('bad-delta', prepare_raw, ['-f', 'raw', 'r.raw', '+x']),
    ('bad-negative-suffix', prepare_raw, ['--shrink', 'r.raw', '-1x']),
    ('dash-letter', prepare_raw, ['--shrink', '-f', 'raw', 'r.raw', '-x']),
    ('fraction-no-suffix', prepare_raw, ['--shrink', '-f', 'raw', 'r.raw', '1.5']),
    ('fraction-suffix', prepare_raw, ['-f', 'raw', 'r.raw', '8.5M']),
    ('hex', prepare_raw, ['-f', 'raw', 'r.raw', '0x1000000']),
    ('out-of-range', prepare_raw, ['-f', 'raw', 'r.raw', '99999999999999999999']),
    ('overflow-delta', prepare_raw, ['-f', 'raw', 'r.raw', '+9E']),
    ('overflow-abs', prepare_raw, ['-f', 'raw', 'r.raw', '8E']),
    ('too-large', prepare_raw, ['-f', 'raw', 'r.raw', '7E']),
    ('no-size', prepare_raw, ['-f', 'raw', 'r.raw']),
    ('no-args', prepare_raw, []),
    ('only-format', prepare_raw, ['-f', 'raw']),
    ('extra-arg', prepare_raw, ['r.raw', '1M', 'extra']),
    ('quiet', prepare_raw, ['-q', '-f', 'raw', 'r.raw', '10M']),
    ('prealloc-full', prepare_raw, ['-f', 'raw', '--preallocation=full', 'r.raw', '9M']),
    ('prealloc-falloc', prepare_raw, ['-f', 'raw', '--preallocation', 'falloc', 'r.raw', '9M']),
    ('prealloc-metadata', prepare_raw, ['-f', 'raw', '--preallocation=metadata', 'r.raw', '9M']),
    ('prealloc-off', prepare_raw, ['-f', 'raw', '--preallocation=off', 'r.raw', '9M']),
    ('prealloc-bad', prepare_raw, ['-f', 'raw', '--preallocation=foo', 'r.raw', '9M']),
    ('prealloc-shrink', prepare_raw, ['-f', 'raw', '--shrink', '--preallocation=full',
                                    'r.raw', '1M']),
    ('prealloc-shrink-noflag', prepare_raw, ['-f', 'raw', '--preallocation=full', 'r.raw', '1M']),
    ('image-opts', prepare_raw, ['--image-opts', 'driver=raw,file.filename=r.raw', '10M']),
    ('image-opts-and-format', prepare_raw, ['--image-opts', '-f', 'raw', 'r.raw', '1M']),
    ('missing-file', prepare_raw, ['nonexist', '1M']),
    ('missing-file-bad-size', prepare_raw, ['nonexist', 'x']),
    ('bad-format', prepare_raw, ['-f', 'foo', 'r.raw', '1M']),
    ('force-share-not-accepted', prepare_raw, ['-U', 'r.raw', '1M']),
    ('bad-option', prepare_raw, ['-x', 'r.raw', '1M']),
    ('bad-object', prepare_raw, ['--object', 'foo', 'r.raw', '1M']),
    ('read-only-file', prepare_ro, ['-f', 'raw', 'r.raw', '9M']),
    # a negative number or one past 2^64 followed by more characters is
    # malformed, not out of range
    ('negative-delta-suffix', prepare_raw, ['-f', 'raw', '--', 'r.raw', '+-1k']),
    ('huge-delta-suffix', prepare_raw, ['-f', 'raw', 'r.raw', '+99999999999999999999k']),
    # the largest length is INT64_MAX rounded down to 1 GiB
    ('past-max-length', prepare_raw, ['-f', 'raw', 'r.raw', '9223372035781033985']),
    ('int64-max', prepare_raw, ['-f', 'raw', 'r.raw', '9223372036854775807']),
    # devices are resized exactly or not at all
    ('device', prepare_raw, ['-f', 'raw', '/dev/null', '1M']),
    # a third operand is refused before a later option is looked at
    ('extra-before-bad-option', prepare_raw, ['r.raw', '1M', 'extra', '--preallocation=x']),
    ('extra-after-dashdash', prepare_raw, ['-f', 'raw', 'r.raw', '--', '1M', 'x']),
    # the size is parsed before --image-opts and -f are found exclusive
    ('bad-size-before-exclusive', prepare_raw, ['--image-opts', '-f', 'raw', 'r.raw', 'x']),
]


def state(d):
    """Name, size and content hash of every file of @d."""
    out = []
    for name in sorted(os.listdir(d)):
        with open(d / name, 'rb') as f:
            out.append((name, os.path.getsize(d / name),
                        hashlib.sha256(f.read()).hexdigest()))
    return out


def run_in(prog, d, argv):
    r = run([prog] + argv, cwd=d)
    return (r.rc, r.out.replace(prog, 'qemu-img'), r.err.replace(prog, 'qemu-img'))


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_resize_as_reference(case, tmp_path, our_qemu_img, ref_qemu_img):
    _, setup, argv = case
    if setup is prepare_ro and os.geteuid() == 0:
        pytest.skip('root ignores file permissions')
    results = []
    for name, prog in (('ref', ref_qemu_img), ('ours', our_qemu_img)):
        d = tmp_path / name
        d.mkdir()
        setup(d)
        results.append((run_in(prog, d, ['resize'] + argv), state(d)))
    assert results[1] == results[0]


def test_resize_locked_by_reference_qemu_io(tmp_path, our_qemu_img, ref_qemu_img):
    """An image held open for writing by a reference qemu-io: the same
    answer as the reference's (qemu-io shares the resize permission)."""
    prepare_raw(tmp_path)
    ref_io = os.path.join(os.path.dirname(ref_qemu_img), 'qemu-io')
    holder = subprocess.Popen([ref_io, '-f', 'raw', str(tmp_path / 'r.raw')],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        time.sleep(0.5)
        ref = run_in(ref_qemu_img, tmp_path, ['resize', '-f', 'raw', 'r.raw', '9M'])
        ours = run_in(our_qemu_img, tmp_path, ['resize', '-f', 'raw', 'r.raw', '9M'])
    finally:
        holder.communicate(b'quit\n', timeout=10)
    assert ours == ref


def test_resize_permission_conflict_is_open_error(tmp_path, our_qemu_img, ref_qemu_img,
                                                  strata_lockholder):
    """Another process shares reading only: the resize permission is taken
    when the image is opened, so the conflict is an open error."""
    prepare_raw(tmp_path)
    holder = subprocess.Popen([strata_lockholder, str(tmp_path / 'r.raw'),
                               'consistent-read', 'consistent-read'],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        ref = run_in(ref_qemu_img, tmp_path, ['resize', '-f', 'raw', 'r.raw', '9M'])
        ours = run_in(our_qemu_img, tmp_path, ['resize', '-f', 'raw', 'r.raw', '9M'])
    finally:
        holder.kill()
        holder.wait()
    assert ref[0] == 1 and 'Could not open' in ref[2]
    assert ours == ref
