"""strata-img bench against the reference qemu-img: options, output lines
(run time masked) and error messages; plus the --output=json extension.
Small request counts keep the suite fast."""
import json
import os
import re

import pytest

from conftest import make_image, run

MiB = 1 << 20
RUN_TIME = re.compile(r'^Run completed in [0-9.]+ seconds\.$', re.M)


def prepare(d):
    make_image(d / 'a.raw', MiB, [(0, b'x' * 8192)])


CASES = [
    # the engine reaches file nodes below as an open flag; others ignore it
    ('aio-native-null', ['-c', '4', '-i', 'native', '--image-opts', 'driver=null-co']),
    ('aio-native-json-file', ['-c', '4', '-n', 'json:{"driver":"file","filename":"a.raw"}']),
    ('aio-native-no-direct', ['-c', '4', '-n', '-f', 'raw', 'a.raw']),
    ('aio-given-wins', ['-c', '4', '-i', 'native', '--image-opts',
                        'driver=raw,file.filename=a.raw,file.aio=threads']),
    ('defaults-probed', ['-c', '10', 'a.raw']),
    ('probed-write', ['-w', '-c', '3', 'a.raw']),
    ('write', ['-f', 'raw', '-w', '-c', '10', 'a.raw']),
    ('write-pattern', ['-f', 'raw', '-w', '--pattern', '0x10', '-c', '3', 'a.raw']),
    ('read-pattern', ['-f', 'raw', '--pattern', '5', '-c', '3', 'a.raw']),
    ('depth-size-step-offset', ['-f', 'raw', '-d', '4', '-s', '1.5k', '-S', '8k',
                                '-o', '1k', '-c', '20', 'a.raw']),
    ('step-zero', ['-f', 'raw', '-o', '1k', '-S', '0', '-c', '3', 'a.raw']),
    ('hex-numbers', ['-f', 'raw', '-c', '0x10', '-s', '0x10', 'a.raw']),
    ('wrap-around', ['-f', 'raw', '-s', '64k', '-c', '100', 'a.raw']),
    ('flush', ['-f', 'raw', '-w', '-d', '2', '--flush-interval', '2', '-c', '10', 'a.raw']),
    ('flush-no-drain', ['-f', 'raw', '-w', '-d', '2', '--flush-interval', '2',
                        '--no-drain', '-c', '10', 'a.raw']),
    ('flush-equal-depth', ['-q', '-f', 'raw', '-w', '--flush-interval', '64', '-c', '3',
                           'a.raw']),
    ('flush-zero', ['-f', 'raw', '-w', '--flush-interval', '0', '-c', '10', 'a.raw']),
    ('no-drain-read', ['-f', 'raw', '--no-drain', '-c', '10', 'a.raw']),
    ('quiet', ['-q', '-f', 'raw', '-c', '5', 'a.raw']),
    ('cache-writethrough', ['-f', 'raw', '-t', 'writethrough', '-w', '-c', '3', 'a.raw']),
    ('aio-threads', ['-f', 'raw', '-i', 'threads', '-c', '3', 'a.raw']),
    ('aio-io-uring', ['-f', 'raw', '-i', 'io_uring', '-c', '3', 'a.raw']),
    ('force-share', ['-U', '-f', 'raw', '-c', '3', 'a.raw']),
    ('force-share-write', ['-U', '-w', '-f', 'raw', '-c', '3', 'a.raw']),
    ('image-opts', ['--image-opts', '-c', '3', 'driver=raw,file.filename=a.raw']),
    ('long-options', ['--format', 'raw', '--count', '4', '--depth', '2', '--buffer-size',
                      '512', '--offset', '512', '--step-size', '1024', '--write',
                      '--aio', 'threads', 'a.raw']),
    ('flush-without-write', ['-f', 'raw', '--flush-interval', '2', '-c', '10', 'a.raw']),
    ('flush-below-depth', ['-f', 'raw', '-w', '--flush-interval', '2', '-c', '10', 'a.raw']),
    ('flush-bad', ['-f', 'raw', '-w', '--flush-interval', 'x', 'a.raw']),
    ('flush-suffix', ['-f', 'raw', '-w', '--flush-interval', '1k', 'a.raw']),
    ('flush-negative', ['-f', 'raw', '-w', '--flush-interval', '-1', 'a.raw']),
    ('pattern-range', ['-f', 'raw', '-w', '--pattern', '300', 'a.raw']),
    ('pattern-bad', ['-f', 'raw', '-w', '--pattern', 'x', 'a.raw']),
    ('count-bad', ['-f', 'raw', '-c', 'x', 'a.raw']),
    ('count-zero', ['-f', 'raw', '-c', '0', 'a.raw']),
    ('count-negative', ['-f', 'raw', '-c', '-1', 'a.raw']),
    ('count-too-big', ['-f', 'raw', '-c', '2147483648', 'a.raw']),
    ('count-fraction', ['-f', 'raw', '-c', '1.5k', 'a.raw']),
    ('depth-zero', ['-f', 'raw', '-d', '0', 'a.raw']),
    ('depth-bad', ['-f', 'raw', '-d', 'x', 'a.raw']),
    ('depth-suffix', ['-f', 'raw', '-d', '1k', 'a.raw']),
    ('size-bad', ['-f', 'raw', '-s', 'x', 'a.raw']),
    ('size-zero', ['-f', 'raw', '-s', '0', 'a.raw']),
    ('size-too-big', ['-f', 'raw', '-s', '2G', 'a.raw']),
    ('step-bad', ['-f', 'raw', '-S', 'x', 'a.raw']),
    ('step-negative', ['-f', 'raw', '-S', '-1', 'a.raw']),
    ('offset-bad', ['-f', 'raw', '-o', 'x', 'a.raw']),
    ('offset-negative', ['-f', 'raw', '-o', '-1', 'a.raw']),
    ('request-beyond-end', ['-f', 'raw', '-s', '1M', '-o', '512k', '-c', '3', 'a.raw']),
    ('aio-bad', ['-f', 'raw', '-i', 'foo', 'a.raw']),
    ('aio-native-without-direct', ['-f', 'raw', '-i', 'native', 'a.raw']),
    ('native-flag-without-direct', ['-i', 'threads', '-n', '-c', '3', '-f', 'raw', 'a.raw']),
    ('cache-bad', ['-t', 'foo', 'a.raw']),
    ('image-opts-and-format', ['--image-opts', '-f', 'raw', '-c', '3', 'a.raw']),
    ('missing-file', ['-c', '3', 'nonexist']),
    ('no-file', []),
    ('two-files', ['a.raw', 'b.raw']),
    ('object-not-accepted', ['--object', 'foo', 'a.raw']),
    ('bad-option', ['-x']),
    ('missing-argument', ['-c']),
    # offsets wrap modulo the image size: a request may then run past the
    # end and fail the run
    ('wrap-past-end', ['-f', 'raw', '-c', '3', '-d', '1', '-o', '1020k', '-S', '3k',
                       'a.raw']),
    # -t is checked when it is met, before later options and the file name
    ('cache-bad-first', ['-t', 'foo', '-c', '0', 'a.raw']),
    ('cache-bad-no-file', ['-t', 'foo']),
    # "--o" still abbreviates --offset (--output is our extension)
    ('offset-abbreviated', ['--o', 'x', 'a.raw']),
]

# O_DIRECT needs a real file system: these run in disk_dir
DIRECT_CASES = [
    ('cache-none', ['-t', 'none', '-f', 'raw', '-c', '3', 'a.raw']),
    ('native-direct', ['-n', '-t', 'none', '-f', 'raw', '-c', '3', 'a.raw']),
    ('aio-native-direct', ['-i', 'native', '-t', 'none', '-w', '-f', 'raw', '-c', '3',
                           'a.raw']),
    ('io-uring-direct', ['-i', 'io_uring', '-t', 'none', '-f', 'raw', '-c', '3', 'a.raw']),
]


def run_in(prog, d, argv):
    r = run([prog] + argv, cwd=d)
    mask = lambda s: RUN_TIME.sub('Run completed in TIME seconds.', s.replace(prog, 'qemu-img'))
    return (r.rc, mask(r.out), mask(r.err))


def check(d, argv, ours_prog, ref_prog):
    prepare(d)
    ref = run_in(ref_prog, d, ['bench'] + argv)
    ours = run_in(ours_prog, d, ['bench'] + argv)
    assert ours == ref


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_bench_as_reference(case, tmp_path, our_qemu_img, ref_qemu_img):
    check(tmp_path, case[1], our_qemu_img, ref_qemu_img)


@pytest.mark.parametrize('case', DIRECT_CASES, ids=[c[0] for c in DIRECT_CASES])
def test_bench_direct_as_reference(case, disk_dir, our_qemu_img, ref_qemu_img):
    from pathlib import Path
    check(Path(disk_dir), case[1], our_qemu_img, ref_qemu_img)


def test_bench_buffers_overflow(tmp_path, our_qemu_img, ref_qemu_img):
    """DEPTH * BUFFER_SIZE overflowing an int: the reference prints its
    allocation failure and aborts (SIGABRT); ours prints the same and
    exits with status 1 instead of crashing (a documented difference)."""
    argv = ['-f', 'raw', '-d', '2', '-s', '1G', 'a.raw']
    prepare(tmp_path)
    ref = run_in(ref_qemu_img, tmp_path, ['bench'] + argv)
    ours = run_in(our_qemu_img, tmp_path, ['bench'] + argv)
    assert ref[0] < 0 and ours[0] == 1
    assert ours[1:] == ref[1:]


def test_bench_writes_pattern(tmp_path, our_qemu_img):
    prepare(tmp_path)
    r = run([our_qemu_img, 'bench', '-f', 'raw', '-w', '--pattern', '0xab', '-s', '4k',
             '-c', '4', '-d', '2', '-o', '8k', 'a.raw'], cwd=tmp_path)
    assert r.rc == 0, r
    data = (tmp_path / 'a.raw').read_bytes()
    assert data[8192:8192 + 16384] == b'\xab' * 16384
    assert data[:8192] == b'x' * 8192


def test_bench_json(tmp_path, our_qemu_img):
    """Extension: exactly one JSON document on stdout, stderr empty."""
    prepare(tmp_path)
    r = run([our_qemu_img, 'bench', '--output=json', '-f', 'raw', '-c', '1000',
             '-d', '8', '-s', '512', 'a.raw'], cwd=tmp_path)
    assert (r.rc, r.err) == (0, '')
    doc = json.loads(r.out)
    assert doc['requests'] == 1000 and doc['bytes'] == 512000
    assert doc['operation'] == 'read' and doc['depth'] == 8
    assert doc['seconds'] > 0 and doc['iops'] > 0 and doc['mib-per-second'] > 0
    lat = doc['latency-ns']
    assert 0 < lat['p50'] <= lat['p90'] <= lat['p99'] <= lat['p99.9'] <= lat['max']


def test_bench_json_write_and_bad_output(tmp_path, our_qemu_img):
    prepare(tmp_path)
    r = run([our_qemu_img, 'bench', '--output', 'json', '-w', '-f', 'raw', '-c', '50',
             '-d', '4', '--flush-interval', '10', 'a.raw'], cwd=tmp_path)
    assert (r.rc, r.err) == (0, '')
    assert json.loads(r.out)['operation'] == 'write'
    r = run([our_qemu_img, 'bench', '--output=xml', 'a.raw'], cwd=tmp_path)
    assert r.rc == 1 and r.out == ''
    assert "--output expects 'human' or 'json' not 'xml'" in r.err
