"""strata-io against the reference qemu-io, command by command.

Each case runs the same command sequence on two identical copies of an
image: once with the reference qemu-io, once with strata-io invoked as
qemu-io.  Standard output and error (timing figures masked), the exit status
and the image's resulting bytes must be identical."""
import os
import shutil

import pytest

from conftest import io_args, make_image, normalize, pattern, run

MiB = 1 << 20

# (id, image size, pre-written chunks, extra options, commands)
CASES = [
    ('write-read', 4 * MiB, [], ['-f', 'raw'],
     ['write -P 0xab 0 64k', 'read -P 0xab 0 64k', 'read -P 0xac 0 512']),
    ('sizes', 4 * MiB, [], ['-f', 'raw'],
     ['write 0 1', 'write 1k 1023', 'write 0x1000 0x200', 'write 1M 1.5k',
      'read 3M 1M', 'read 4M 0']),
    ('read-v', 1 * MiB, [(0, bytes(range(256)) * 4)], ['-f', 'raw'],
     ['read -v 0 40', 'read -v 5 17', 'read -v 250 300']),
    ('read-quiet-and-count', 1 * MiB, [(0, pattern(7, 8192))], ['-f', 'raw'],
     ['read -q -P 7 0 8k', 'read -C 0 4k', 'read -l 512 -s 100 -P 7 0 8k']),
    ('write-zero', 2 * MiB, [(0, pattern(0xff, 2 * MiB))], ['-f', 'raw'],
     ['write -z 64k 64k', 'read -P 0 64k 64k', 'read -P 0xff 0 64k',
      'write -z -u 1M 128k', 'read -P 0 1M 128k']),
    ('write-fua', 1 * MiB, [], ['-f', 'raw'],
     ['write -f -P 3 0 4k', 'read -P 3 0 4k']),
    ('writev-readv', 2 * MiB, [], ['-f', 'raw'],
     ['writev -P 0x5a 512 1k 4k 512', 'readv -P 0x5a 512 2k 3k 512',
      'readv -v 512 16 16']),
    # one request in flight at a time: the reference prints concurrent
    # completions in a random order (tests/interop covers concurrency)
    ('aio', 2 * MiB, [], ['-f', 'raw'],
     ['aio_write -P 1 0 64k', 'aio_flush', 'aio_write -P 2 64k 64k',
      'aio_flush', 'aio_read -P 1 0 64k', 'aio_flush', 'read -P 2 64k 64k',
      'aio_read -P 3 0 512', 'aio_flush']),
    ('alloc-map', 8 * MiB, [(0, pattern(1, 65536)), (4 * MiB, pattern(2, 4096))],
     ['-f', 'raw'], ['alloc 0 1M', 'alloc 4M 4k', 'map', 'length']),
    ('discard-flush', 2 * MiB, [(0, pattern(9, 2 * MiB))], ['-f', 'raw'],
     ['discard 0 64k', 'flush', 'read -P 0 0 64k', 'read -P 9 64k 64k']),
    ('truncate', 1 * MiB, [], ['-f', 'raw'],
     ['truncate 2M', 'length', 'truncate 512k', 'length', 'read 600k 512']),
    ('info', 1 * MiB, [], ['-f', 'raw'], ['info']),
    ('help', 1 * MiB, [], ['-f', 'raw'], ['help']),
    ('help-cmds', 1 * MiB, [], ['-f', 'raw'],
     ['help read', 'help write', 'help aio_read', 'help map', 'help nosuch']),
    ('bad-args', 1 * MiB, [], ['-f', 'raw'],
     ['read', 'read x 512', 'read 0 y', 'read -P 0 512', 'write -P 0x1ff 0 512',
      'read -1 512', 'write 0', 'nosuchcmd', 'read -b 1 512', 'write -c 0 64k',
      'write -u 0 512', 'truncate', 'alloc x', 'discard 0', 'write -c 0 0']),
    ('beyond-eof', 1 * MiB, [], ['-f', 'raw'],
     ['read 1M 512', 'write 1023k 2k', 'read 2M 1', 'alloc 2M 512']),
    ('zone', 1 * MiB, [], ['-f', 'raw'],
     ['zone_report 0 1', 'zone_open 0 64k', 'zone_reset 0 64k']),
    ('close-reopen', 1 * MiB, [], ['-f', 'raw'],
     ['write -P 4 0 512', 'close', 'read 0 512', 'open -o driver=raw t.raw',
      'read -P 4 0 512']),
    ('readonly', 1 * MiB, [], ['-f', 'raw', '-r'],
     ['read 0 512', 'write 0 512', 'discard 0 512', 'truncate 2M']),
    ('image-opts', 1 * MiB, [(0, pattern(6, 512))],
     ['--image-opts'], ['read -P 6 0 512', 'info']),
    ('probe-raw', 1 * MiB, [], [], ['read 0 512', 'write -P 1 512 512']),
    ('nocache', 1 * MiB, [], ['-f', 'raw', '-n'],
     ['write -P 8 0 4k', 'read -P 8 0 4k', 'write -P 9 100 3', 'read -v 96 12']),
    ('cache-modes', 1 * MiB, [], ['-f', 'raw', '-t', 'writethrough'],
     ['write -P 8 0 4k', 'read -P 8 0 4k']),
    ('engine-threads', 1 * MiB, [], ['-f', 'raw', '-i', 'threads'],
     ['write -P 8 0 4k', 'read -P 8 0 4k']),
    ('engine-io_uring', 1 * MiB, [], ['-f', 'raw', '-i', 'io_uring'],
     ['write -P 8 0 4k', 'read -P 8 0 4k']),
    ('engine-native', 1 * MiB, [], ['-f', 'raw', '-n', '-i', 'native'],
     ['write -P 8 0 4k', 'read -P 8 0 4k']),
    ('native-needs-direct', 1 * MiB, [], ['-f', 'raw', '-i', 'native'],
     ['read 0 512']),
    ('sleep', 1 * MiB, [], ['-f', 'raw'], ['sleep 10', 'read 0 1']),
    ('fraction-sizes', 1 * MiB, [], ['-f', 'raw'],
     ['read 0 1.0015k', 'read 0 0.7k', 'read 0 1.000488k', 'read 0 1.00048828125k']),
    ('prealloc-shrink', 64 * 1024, [], ['-f', 'raw'],
     ['truncate -m full 32k', 'truncate -m falloc 32k', 'truncate -m metadata 32k',
      'length', 'truncate -m falloc 128k', 'length']),
    ('direct-reopen-cache', 1 * MiB, [], ['-f', 'raw'],
     ['reopen -c none', 'write -P 3 1 100', 'read -P 3 1 100',
      'reopen -c writeback', 'write 5 7', 'read -v 0 16', 'truncate -m full 2M',
      'length']),
    ('direct-reopen-option', 1 * MiB, [], ['-f', 'raw'],
     ['reopen -o cache.direct=on', 'write -P 4 3 4k', 'read -P 4 3 4k',
      'reopen -o cache.direct=off', 'read -P 4 3 4k']),
    ('reopen-ro-after-resize', 1 * MiB, [], ['-f', 'raw'],
     ['truncate 2M', 'reopen -r', 'truncate 3M', 'write 0 1', 'length',
      'reopen -w', 'truncate 3M', 'length']),
]

IMAGE_OPTS = 'driver=raw,file.driver=file,file.filename=t.raw'


def run_case(prog, workdir, size, chunks, opts, cmds):
    make_image(os.path.join(workdir, 't.raw'), size, chunks)
    target = IMAGE_OPTS if '--image-opts' in opts else 't.raw'
    res = run([prog] + opts + io_args(cmds) + [target], cwd=workdir)
    with open(os.path.join(workdir, 't.raw'), 'rb') as f:
        data = f.read()
    return res, data


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_same_as_reference(case, tmp_path, our_qemu_io, ref_qemu_io):
    name, size, chunks, opts, cmds = case
    # O_DIRECT cases need a real disk, not tmpfs.
    base = '/var/tmp' if ('-n' in opts or name.startswith('direct-')) \
        else str(tmp_path)
    ref_dir = os.path.join(base, f'ref-{name}-{os.getpid()}')
    our_dir = os.path.join(base, f'our-{name}-{os.getpid()}')
    for d in (ref_dir, our_dir):
        os.makedirs(d, exist_ok=True)
    try:
        ref, ref_data = run_case(ref_qemu_io, ref_dir, size, chunks, opts, cmds)
        our, our_data = run_case(our_qemu_io, our_dir, size, chunks, opts, cmds)
    finally:
        shutil.rmtree(ref_dir, ignore_errors=True)
        shutil.rmtree(our_dir, ignore_errors=True)
    assert normalize(our.out) == normalize(ref.out), our
    assert our.err == ref.err, our
    assert our.rc == ref.rc, our
    assert our_data == ref_data
