"""Command-line options and bad input: same messages and exit codes as
the reference qemu-io, and the image is never modified."""
import hashlib
import os

import pytest

from conftest import make_image, normalize, run

MiB = 1 << 20

# (id, argv after the program name); "IMG" is replaced by the image path
# relative to the working directory, "DIR" by a directory.
CASES = [
    ('missing-file', ['-f', 'raw', '-c', 'read 0 1', 'nonexistent.raw']),
    ('directory', ['-f', 'raw', '-c', 'read 0 1', 'DIR']),
    ('unknown-format', ['-f', 'nosuchfmt', '-c', 'read 0 1', 'IMG']),
    ('unknown-protocol', ['-c', 'read 0 1', 'nosuch:IMG']),
    ('unknown-option', ['--image-opts', '-c', 'read 0 1',
                        'driver=raw,file.driver=file,file.filename=IMG,foo=1']),
    ('unknown-file-option', ['--image-opts', '-c', 'read 0 1',
                             'driver=raw,file.driver=file,file.filename=IMG,file.foo=1']),
    ('unknown-driver-opts', ['--image-opts', '-c', 'read 0 1', 'driver=nosuch']),
    ('image-opts-and-f', ['--image-opts', '-f', 'raw', '-c', 'read 0 1',
                          'driver=raw,file.filename=IMG']),
    ('bad-json', ['-c', 'read 0 1', 'json:{"driver": "raw",']),
    ('json-not-dict', ['-c', 'read 0 1', 'json:[1]']),
    ('json-ok', ['-c', 'read 0 1',
                 'json:{"driver": "raw", "file": {"driver": "file", "filename": "IMG"}}']),
    ('json-file-filename', ['-c', 'read 0 1', 'json:{"file.filename": "IMG"}']),
    ('file-prefix', ['-f', 'raw', '-c', 'read 0 1', 'file:IMG']),
    ('bad-cache', ['-f', 'raw', '-t', 'sometimes', '-c', 'read 0 1', 'IMG']),
    ('bad-aio', ['-f', 'raw', '-i', 'magic', '-c', 'read 0 1', 'IMG']),
    ('bad-discard', ['-f', 'raw', '-d', 'always', '-c', 'read 0 1', 'IMG']),
    # --aio / -k are open flags that only file nodes take
    ('aio-threads-null-co', ['--aio', 'threads', '-c', 'read 0 512', 'null-co://']),
    ('aio-io_uring-blkdebug', ['--aio', 'io_uring', '--image-opts', '-c',
                               'read -P 0x61 4096 4096',
                               'driver=blkdebug,image.driver=file,image.filename=IMG']),
    ('aio-native-needs-direct', ['--aio', 'native', '-f', 'raw', '-c', 'read 0 1', 'IMG']),
    ('k-needs-direct', ['-k', '-f', 'raw', '-c', 'read 0 1', 'IMG']),
    ('aio-native-direct', ['--aio', 'native', '-n', '-f', 'raw', '-c', 'read 0 512',
                           'IMG']),
    ('aio-native-file-aio-wins', ['--aio', 'native', '--image-opts', '-c', 'read 0 512',
                                  'driver=raw,file.filename=IMG,file.aio=threads']),
    ('open-i-native', ['-c', 'open -i native -f raw IMG', '-c', 'read 0 512']),
    ('open-k-direct-null', ['-c', 'open -k -n null-co://', '-c', 'read 0 512']),
    # raw's offset/size are read before it asks for a file; an existing
    # file child opens first
    ('raw-offset-bad-no-file', ['-c', 'open -o driver=raw,offset=x']),
    ('raw-size-bad-no-file', ['-c', 'open -o driver=raw,size=x']),
    ('raw-offset-bad-missing-file', ['-c', 'open -o driver=raw,offset=x,'
                                     'file.filename=nonexistent.raw']),
    ('raw-offset-bad-file', ['-c', 'open -o driver=raw,offset=x IMG']),
    # the probed-raw warning comes from the driver's open, before leftovers
    # are refused
    ('probed-unknown-option', ['-c', 'open -o bogus=1 IMG']),
    # copy-on-read needs somewhere to write
    ('cor-read-only', ['-C', '-r', '-f', 'raw', '-c', 'read 0 512', 'IMG']),
    ('cor-read-only-probed-null', ['-C', '-r', '-c', 'read 0 512', 'null-co://']),
    ('cor-read-only-missing', ['-C', '-r', '-c', 'read 0 512', 'nonexistent.raw']),
    ('cor-rw', ['-C', '-f', 'raw', '-c', 'read -P 0x61 4096 512', 'IMG']),
    # zero writes without fallback (-n): only where a node can promise them
    ('zero-nofallback-null', ['-c', 'write -n -z 0 4096', 'null-co://']),
    ('zero-nofallback-raw-null', ['--image-opts', '-c', 'write -n -z 0 4096',
                                  'driver=raw,file.driver=null-co']),
    ('zero-nofallback-blkdebug-null', ['--image-opts', '-c', 'write -n -z 0 4096',
                                       'driver=blkdebug,image.driver=null-co']),
    ('zero-nofallback-file', ['-f', 'raw', '-c', 'write -n -z 0 4096', '-c',
                              'read -P 0 0 4096', 'IMG']),
    ('discard-unmap', ['-f', 'raw', '-d', 'unmap', '-c', 'discard 0 64k', 'IMG']),
    ('force-share-rw', ['-f', 'raw', '-U', '-c', 'read 0 1', 'IMG']),
    ('detect-zeroes-unmap-no-discard', ['--image-opts', '-c', 'write -z 0 512',
                                       'driver=raw,file.filename=IMG,detect-zeroes=unmap']),
    ('detect-zeroes-on', ['--image-opts', '-c', 'write -P 0 0 64k',
                          'driver=raw,file.filename=IMG,detect-zeroes=on']),
    ('raw-offset-size', ['--image-opts', '-c', 'read -P 0x61 0 4k', '-c', 'length',
                         'driver=raw,offset=4096,size=8192,file.filename=IMG']),
    ('raw-size-too-big', ['--image-opts', '-c', 'length',
                          'driver=raw,offset=4096,size=2M,file.filename=IMG']),
    ('raw-unaligned-size', ['--image-opts', '-c', 'length',
                            'driver=raw,size=1000,file.filename=IMG']),
    ('null-co', ['-c', 'read -P 0 0 4k', '-c', 'length',
                 'json:{"driver": "null-co", "read-zeroes": true, "size": 65536}']),
    ('null-co-uri', ['-c', 'length', 'null-co://']),
    ('null-co-probed-unaligned', ['-c', 'read -v 4096 16', '-c', 'read -v 100 1000',
                                  'null-co://']),
    ('no-image', ['-c', 'read 0 1']),
    ('no-image-open-later', ['-c', 'open -f raw IMG', '-c', 'read 0 1']),
    ('two-images', ['-f', 'raw', 'IMG', 'IMG']),
    ('unknown-short-option', ['-Z', 'IMG']),
    ('unknown-long-option', ['--nosuch', 'IMG']),
    ('help', ['-h']),
    ('snapshot-readonly-cmd', ['-f', 'raw', '-r', '-c', 'write 0 1', 'IMG']),
    ('object-bad', ['--object', 'nosuchtype,id=x', '-f', 'raw', '-c', 'read 0 1', 'IMG']),
    ('object-secret', ['--object', 'secret,id=s0,data=abc', '-f', 'raw',
                       '-c', 'read 0 1', 'IMG']),
]


def digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_in(prog, workdir, argv):
    os.makedirs(os.path.join(workdir, 'DIR'), exist_ok=True)
    img = make_image(os.path.join(workdir, 'IMG'), 1 * MiB,
                     [(4096, b'a' * 8192)])
    before = digest(img)
    res = run([prog] + argv, cwd=workdir, stdin=open(os.devnull))
    return res, before, digest(img)


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_options_same_as_reference(case, tmp_path, our_qemu_io, ref_qemu_io):
    name, argv = case
    ref, _, ref_after = run_in(ref_qemu_io, str(tmp_path / 'ref'), argv)
    ours, before, our_after = run_in(our_qemu_io, str(tmp_path / 'our'), argv)
    assert our_after == ref_after
    if name in ('help',):
        assert ours.rc == ref.rc == 0
        assert 'Usage:' in ours.out or 'usage:' in ours.out.lower()
        return
    assert normalize(ours.out) == normalize(ref.out), ours
    # getopt names the program by its full path: compare from the name on
    assert ours.err.replace(our_qemu_io, 'qemu-io') == \
        ref.err.replace(ref_qemu_io, 'qemu-io'), ours
    assert ours.rc == ref.rc, ours


def test_version_through_symlink(our_qemu_io):
    res = run([our_qemu_io, '-V'])
    assert res.rc == 0
    assert res.out.startswith('qemu-io version 10.0.2 (strata ')


def test_hostile_inputs_never_crash(tmp_path, strata_io):
    """Malformed filenames and options: a clear error, never a signal."""
    img = make_image(tmp_path / 'h.raw', 1 * MiB)
    nasty = ['json:', 'json:{', 'json:{"driver":', 'json:{"driver": 5}',
             'json:{"driver": "raw", "file": 7}', 'json:{"a":' * 2000,
             'json:"\\ud800"', 'json:{"driver": "raw", "file": {"driver": "raw"}}',
             'json:{"driver":"raw","file":{"driver":"file","filename":"%s","aio":"x"}}' % img,
             'null-co://?size=-1', 'file:', '', 'driver=', ',,,']
    for name in nasty:
        res = run([strata_io, '-c', 'read 0 512', name])
        assert res.rc == 1, (name, res)
        assert res.err.startswith('strata-io: '), (name, res)


def test_snapshot_mode_leaves_the_image_alone(tmp_path, strata_io):
    """-s writes go to a temporary qcow2 overlay, never into the image
    (more in test_io_snapshot_mode.py)."""
    img = make_image(tmp_path / 's.raw', 1 * MiB)
    before = digest(img)
    res = run([strata_io, '-f', 'raw', '-s', '-c', 'write -P 7 0 512',
               '-c', 'read -P 7 0 512', img])
    assert res.rc == 0 and 'verification failed' not in res.out, res
    assert digest(img) == before


def test_full_preallocation_with_direct_io(disk_dir, strata_io, ref_qemu_io):
    """truncate -m full writes its zeroes from an aligned buffer, so it
    works on an O_DIRECT file (the reference's result depends on where
    its allocator puts the buffer)."""
    img = make_image(os.path.join(disk_dir, 'd.raw'), 1 * MiB,
                     [(0, b'x' * 4096)])
    res = run([strata_io, '-f', 'raw', '-n', '-c', 'truncate -m full 3M',
               '-c', 'length', img])
    assert res.rc == 0 and res.out == '3 MiB\n', res
    assert os.path.getsize(img) == 3 * MiB
    assert os.stat(img).st_blocks * 512 >= 2 * MiB    # really allocated
    check = run([ref_qemu_io, '-f', 'raw', '-c', 'read -P 0 1M 2M',
                 '-c', 'read -P 0x78 0 4k', img])
    assert check.rc == 0 and 'verification failed' not in check.out
