"""Differential tests of image opening and driver option validation:
our qemu-io and the reference must print the same and exit alike."""
import os

import pytest

from conftest import normalize, run

R = ['-c', 'read 0 512', '-c', 'length']
B = 'driver=raw,file.driver=file,file.filename=img'
D = 'driver=blkdebug,image.driver=file,image.filename=img'
BD = 'json:{"driver":"blkdebug","image":{"driver":"file","filename":"img"},'

# (id, argv after the program name), run in a directory holding "img"
# (1 MiB), "a:b/img" (64 KiB) and "proc" -> /proc/self/status.
CASES = [
    # JSON numbers with a fraction go through their string form (1e3 is
    # 1000, 1.5 a bad size with the suffix hint)
    ('json-size-fraction', R + ['json:{"driver":"raw","offset":1.5,'
                                '"file":{"driver":"file","filename":"img"}}']),
    ('json-size-exponent', R + ['json:{"driver":"raw","offset":5e2,'
                                '"file":{"driver":"file","filename":"img"}}']),
    ('json-size-neg-fraction', R + ['json:{"driver":"raw","offset":-1.5}']),
    ('json-size-exponent-nofile', R + ['json:{"driver":"raw","size":1e3}']),
    ('json-align-fraction', R + [BD + '"align":1.5}']),
    # filenames
    ('file-colon-path', R + ['file:a:b/img']),
    ('file-empty', R + ['file:']),
    ('empty-name', ['-f', 'raw'] + R + ['']),
    ('f-file-json-no-filename', ['-f', 'file'] + R + ['json:{"a":1}']),
    ('f-file-json-nested', ['-f', 'file'] + R + ['json:{"file":{"filename":"img"}}']),
    ('null-aio', ['-f', 'raw'] + R + ['null-aio://']),
    ('null-aio-bad-name', R + ['null-aio://x']),
    ('unlengthable-file', ['-f', 'raw'] + R + ['proc']),
    # generic options: QEMU's order of checks
    ('image-opts-empty-filename', ['--image-opts'] + R + [B + ',file.filename=']),
    ('file-no-filename', ['--image-opts'] + R + ['driver=file,file.filename=img']),
    ('filename-before-node-name', ['--image-opts'] + R + ['driver=file,node-name=a b']),
    ('child-error-before-discard', ['--image-opts'] + R +
     ['driver=raw,file.filename=nonexist,discard=bad']),
    ('force-share-before-discard', ['--image-opts'] + R +
     ['driver=raw,file.filename=img,force-share=on,discard=bad']),
    ('child-locking-before-discard', ['--image-opts'] + R +
     ['driver=raw,file.filename=img,file.locking=bad,discard=bad']),
    ('inherited-read-only-bad', ['--image-opts'] + R +
     ['driver=raw,file.filename=nonexist,read-only=maybe']),
    ('overridden-read-only-bad', ['--image-opts'] + R +
     ['driver=raw,file.filename=nonexist,read-only=maybe,file.read-only=on']),
    ('raw-filename-option', ['--image-opts'] + R + [B + ',filename=img']),
    ('null-filename-option', ['--image-opts'] + R + ['driver=null-co,filename=x']),
    # numbers parse like strtoull()
    ('aio-max-batch-negative', ['--image-opts'] + R + [B + ',file.aio-max-batch=-1']),
    ('aio-max-batch-hex', ['--image-opts'] + R + [B + ',file.aio-max-batch=0x10']),
    ('aio-max-batch-too-large', ['--image-opts'] + R +
     [B + ',file.aio-max-batch=18446744073709551616']),
    ('aio-max-batch-suffix', ['--image-opts'] + R + [B + ',file.aio-max-batch=1k']),
    ('null-latency-negative', ['--image-opts'] + R + ['driver=null-co,latency-ns=-1']),
    ('null-latency-wraps', ['--image-opts'] + R +
     ['driver=null-co,latency-ns=-18446744073709551615']),
    # null-co lengths QEMU cannot represent
    ('null-max-length', ['--image-opts'] + R + ['driver=null-co,size=9223372035781033984']),
    ('null-too-large', ['--image-opts'] + R + ['driver=null-co,size=9223372035781033985']),
    ('null-minus-one', ['--image-opts'] + R + ['driver=null-co,size=18446744073709551615']),
    ('null-minus-two-raw', ['--image-opts'] + R +
     ['driver=raw,file.driver=null-co,file.size=18446744073709551614']),
    ('null-low-bits-positive', ['--image-opts'] + R +
     ['driver=null-co,size=9223372036854775813']),
    ('null-int-min', ['--image-opts'] + R + ['driver=null-co,size=9223372039002259456']),
    # blkdebug rule sections
    ('blkdebug-single-section', ['--image-opts'] + R + [D + ',inject-error.event=read_aio']),
    ('blkdebug-single-set-state', ['--image-opts'] + R +
     [D + ',set-state.event=read_aio,set-state.new_state=2']),
    ('blkdebug-unused', ['--image-opts'] + R + [D + ',inject-error.1.event=read_aio']),
    ('blkdebug-unused-first', ['--image-opts'] + R +
     [D + ',inject-error.x.event=read_aio,inject-error.0.event=nosuch']),
    ('blkdebug-unknown-mixed', ['--image-opts'] + R +
     [D + ',inject-error.event=read_aio,inject-error.0.event=read_aio']),
    ('blkdebug-not-keys', ['--image-opts'] + R + [D + ',inject-error.0=x']),
    ('blkdebug-leading-zero', ['--image-opts'] + R + [D + ',inject-error.01.event=read_aio']),
    ('blkdebug-foo', ['--image-opts'] + R + [D + ',inject-error.foo=1']),
    ('blkdebug-entry-foo', ['--image-opts'] + R +
     [D + ',inject-error.0.event=read_aio,inject-error.0.foo=1']),
    ('blkdebug-json-dict', R + [BD + '"inject-error":{"event":"read_aio"}}']),
    ('blkdebug-json-list-bad', R + [BD + '"inject-error":[1]}']),
    ('blkdebug-json-list-empty', R + [BD + '"inject-error":[]}']),
    ('blkdebug-json-list', R + [BD + '"inject-error":[{"event":"read_aio"}]}']),
]


@pytest.fixture
def workdir(tmp_path):
    with open(tmp_path / 'img', 'wb') as f:
        f.truncate(1 << 20)
    os.mkdir(tmp_path / 'a:b')
    with open(tmp_path / 'a:b' / 'img', 'wb') as f:
        f.truncate(65536)
    os.symlink('/proc/self/status', tmp_path / 'proc')
    return tmp_path


def outcome(prog, argv, cwd):
    r = run([prog] + argv, cwd=cwd, timeout=30)
    return r.rc, normalize(r.out), r.err


# raw_fd_getlength() (file-io.c) takes st_size for regular files where QEMU
# lseeks to the end, which fails on procfs.
XFAIL = {}


def params():
    for name, argv in CASES:
        marks = [pytest.mark.xfail(reason=XFAIL[name])] if name in XFAIL else []
        yield pytest.param(argv, id=name, marks=marks)


@pytest.mark.parametrize('argv', params())
def test_open_matches_reference(argv, workdir, our_qemu_io, ref_qemu_io):
    ref = outcome(ref_qemu_io, argv, workdir)
    ours = outcome(our_qemu_io, argv, workdir)
    assert ours == ref
