"""qemu-io 'reopen -o offset=...,size=...' on a raw node: the window moves
when the new values fit the file (checked as at open, options not given
keep their value), a failed reopen keeps the old window, and later I/O,
'length' and 'map' use the new one.  Compared with the reference qemu-io:
stdout, stderr, exit status and the image bytes afterwards."""
import os
import re

import pytest

from conftest import make_image, normalize, run

SIZE = 4096

# The raw node over t.raw, as iotest 171 opens it.
JSON = ('json:{"driver":"raw","offset":512,"size":512,'
        '"file":{"driver":"file","filename":"t.raw"}}')
JSON_NO_SIZE = ('json:{"driver":"raw","offset":"512",'
                '"file":{"driver":"file","filename":"t.raw"}}')
OPTS = 'driver=raw,offset=512,size=512,file.driver=file,file.filename=t.raw'

# After each reopen: what the guest sees and where writes land.
AFTER = ['length', 'write -P 0xb 0 512', 'write -P 0xc 1000 24', 'map']


def cmds(*reopen):
    argv = []
    for c in list(reopen) + AFTER:
        argv += ['-c', c]
    return argv


def reopen(opts):
    return cmds('reopen -o ' + opts)


# (id, argv after the program name)
CASES = [
    # the window moves
    ('offset-and-size', reopen('offset=1536,size=1024') + [JSON]),
    ('with-driver', reopen('driver=raw,offset=1536,size=1024') + [JSON]),
    ('size-only-keeps-offset', reopen('size=1024') + [JSON]),
    ('offset-only-keeps-size', reopen('offset=3584') + [JSON]),
    ('offset-suffix', reopen('offset=1k') + [JSON]),
    ('offset-zero', reopen('offset=0') + [JSON]),
    ('offset-unaligned', reopen('offset=10') + [JSON]),
    ('size-zero', reopen('size=0') + [JSON]),
    ('no-size-follows-file', reopen('offset=2048') + [JSON_NO_SIZE]),
    ('image-opts', ['--image-opts'] + reopen('offset=1536,size=1024') + [OPTS]),
    ('plain-open-gets-window', ['-f', 'raw'] + reopen('offset=512,size=1024')
     + ['t.raw']),
    ('twice', cmds('reopen -o offset=1024,size=1024', 'reopen -o offset=2048')
     + [JSON]),
    ('read-only-too', cmds('reopen -r -o size=1024') + [JSON]),
    ('cache-mode-too', cmds('reopen -c none -o offset=1024') + [JSON]),
    # refused: the old window stays
    ('offset-past-file', reopen('offset=4097') + [JSON]),
    ('window-past-file', reopen('offset=4096') + [JSON]),
    ('size-past-file', reopen('size=3585') + [JSON]),
    ('size-unaligned', reopen('offset=1536,size=100') + [JSON]),
    ('offset-not-a-size', reopen('offset=abc') + [JSON]),
    ('size-empty', reopen('size=') + [JSON]),
    ('offset-negative', reopen('offset=-1') + [JSON]),
    ('both-bad-offset-first', reopen('size=abc,offset=abc') + [JSON]),
    ('window-checked-before-driver', reopen('offset=4097,driver=file') + [JSON]),
    ('then-driver-refused', reopen('offset=1024,driver=file') + [JSON]),
    ('then-child-option-refused', reopen('offset=1024,file.filename=x') + [JSON]),
    ('then-unknown-refused', reopen('offset=1024,bogus=1') + [JSON]),
    ('child-offset-is-not-raws', reopen('file.offset=3') + [JSON]),
    ('generic-value-first', reopen('offset=4097,detect-zeroes=bad') + [JSON]),
    ('discard-value-first', reopen('discard=bad,offset=4097') + [JSON]),
    ('generic-values-in-order',
     reopen('read-only=bad,cache.no-flush=bad,offset=4097') + [JSON]),
    ('window-before-read-only', reopen('offset=4097,read-only=on') + [JSON]),
    ('read-only-conflict-keeps-window', reopen('offset=1024,read-only=on')
     + [JSON]),
    ('bad-window-keeps-read-write', cmds('reopen -r -o offset=4097') + [JSON]),
]


def image_bytes():
    """A file whose every sector says where it is, to see placement."""
    return b''.join(bytes([0x10 + i]) * 512 for i in range(SIZE // 512))


def run_in(prog, workdir, argv):
    os.makedirs(workdir)
    img = make_image(os.path.join(workdir, 't.raw'), SIZE,
                     [(0, image_bytes())])
    res = run([prog] + argv, cwd=workdir, stdin=open(os.devnull))
    with open(img, 'rb') as f:
        return res, f.read()


def same_err(err, prog):
    # node names are generated ("#block123"); the rest must match
    return re.sub(r'#block\d+', '#blockN', err.replace(prog, 'qemu-io'))


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_raw_reopen_same_as_reference(case, tmp_path, our_qemu_io,
                                      ref_qemu_io):
    _, argv = case
    ref, ref_img = run_in(ref_qemu_io, str(tmp_path / 'ref'), argv)
    ours, our_img = run_in(our_qemu_io, str(tmp_path / 'our'), argv)
    assert normalize(ours.out) == normalize(ref.out), ours
    assert same_err(ours.err, our_qemu_io) == \
        same_err(ref.err, ref_qemu_io), ours
    assert ours.rc == ref.rc, ours
    assert our_img == ref_img


def test_iotest_171_reopen(tmp_path, our_qemu_io, ref_qemu_io):
    """The reopen case of iotest 171, commands on stdin."""
    script = ('write -P 0x0a 0 512\nwrite -P 0x0a 511 1\n'
              'write -P 0x0a 512 1\n'
              'reopen -o driver=raw,offset=1536,size=1024\n'
              'write -P 0x0a 0 1024\nwrite -P 0x0a 1023 1\n'
              'write -P 0x0a 1024 1\n')
    results = []
    for prog, name in ((ref_qemu_io, 'ref'), (our_qemu_io, 'our')):
        d = tmp_path / name
        d.mkdir()
        img = make_image(d / 't.raw', SIZE)
        res = run([prog, JSON], cwd=str(d), input=script)
        with open(img, 'rb') as f:
            results.append((normalize(res.out).replace('qemu-io> ', ''),
                            res.err.replace(prog, 'qemu-io'), res.rc,
                            f.read()))
    assert results[1] == results[0]
    data = results[1][3]
    # the second window got the pattern, the bytes between stay zero
    assert data[1536:2560] == b'\x0a' * 1024
    assert data[1024:1536] == bytes(512)


@pytest.mark.parametrize('reopen', ['reopen', 'reopen -r', 'reopen -o bogus=1',
                                    'reopen -c none'])
def test_reopen_reads_length_again(our_qemu_io, ref_qemu_io, tmp_path, reopen):
    """A file another program grew is seen after a reopen, as the
    reference re-reads the lengths of its nodes."""
    import subprocess
    outs = []
    for prog in (our_qemu_io, ref_qemu_io):
        img = tmp_path / 'g.raw'
        with open(img, 'wb') as f:
            f.truncate(1 << 20)
        p = subprocess.Popen([prog, '-f', 'raw', str(img)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        p.stdin.write('length\n')
        p.stdin.flush()
        first = p.stdout.readline()     # "qemu-io> 1 MiB"
        with open(img, 'r+b') as f:
            f.truncate(2 << 20)
        out, _ = p.communicate('%s\nlength\n' % reopen, timeout=30)
        outs.append((p.returncode, first + out))
    assert outs[0] == outs[1]


def direct_io_supported(path):
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
        return True
    except OSError:
        return False


@pytest.mark.parametrize('opts', [[], ['-n']])
def test_reopen_to_direct_alignment(tmp_path, our_qemu_io, ref_qemu_io,
                                    ref_qemu_img, opts):
    """reopen -c none from a buffered open: the reference ends up with
    4 KiB requests (it probes the alignment through the old descriptor),
    so a write at the end grows the file to a multiple of 4 KiB; opened
    with -n (already direct) it stays at 512 bytes."""
    files = []
    for tool in (ref_qemu_io, our_qemu_io):
        p = str(tmp_path / f'{len(files)}.qcow2')
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    'cluster_size=512', p, '64k']).rc == 0
        if not direct_io_supported(p):
            pytest.skip('no O_DIRECT on this file system')
        r = run([tool, *opts, '-c', 'reopen -c none', '-c',
                 'write -P 0xee 34852 20480', p])
        assert r.rc == 0, r
        files.append(p)
    sizes = [os.path.getsize(f) for f in files]
    assert sizes[0] == sizes[1]
    assert (sizes[0] % 4096 == 0) == (not opts)
    with open(files[0], 'rb') as a, open(files[1], 'rb') as b:
        assert a.read() == b.read()
