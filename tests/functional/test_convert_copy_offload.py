"""convert -C onto qcow2 (the driver's copy_range 'to' half) and between
qcow2 images: clusters are allocated, copied-on-write and linked as a
write would, the data moved with copy_file_range.  The target files are
byte-identical to the reference's made with the same command, pass the
reference's check, and (where strace is installed) the data really went
through copy_file_range rather than a quiet fallback."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import run, sanitized


@pytest.fixture
def shm_dir():
    if not os.path.isdir('/dev/shm'):
        pytest.skip('no /dev/shm')
    d = tempfile.mkdtemp(dir='/dev/shm', prefix='strata-test-')
    yield d
    shutil.rmtree(d, ignore_errors=True)


# data runs off the cluster grid (partial clusters: COW head and tail),
# a zero run, and a run up to an end that is not cluster aligned
LAYOUT = ['write -P 0x11 0 192k', 'write -P 0x22 1M 100k',
          'write -z 1600k 128k', 'write -P 0x33 2052k 8k',
          'write -P 0x44 3M 700k', 'write -P 0x55 4000000 96000']
SIZE = '4096000'


def ref_image(ref_img, ref_io, path, fmt, opts='', extra=()):
    args = ['create', '-q', '-f', fmt] + (['-o', opts] if opts else [])
    assert run([ref_img, *args, path, SIZE]).rc == 0
    cmds = []
    for c in LAYOUT + list(extra):
        cmds += ['-c', c]
    assert run([ref_io, '-f', fmt, *cmds, path]).rc == 0


def copy_calls(argv):
    """Run @argv; how many copy_file_range calls it made (None: not
    counted: no strace, or a sanitizer build, whose leak check cannot run
    under ptrace; the normal build's run counts them)."""
    if not shutil.which('strace') or sanitized(argv[0]):
        r = run(argv)
        assert r.rc == 0, r
        return None
    log = tempfile.mktemp(prefix='strata-strace-')
    p = subprocess.run(['strace', '-f', '-qq', '-e', 'trace=copy_file_range',
                        '-o', log, *argv], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    with open(log) as f:
        n = sum('copy_file_range(' in line for line in f)
    os.unlink(log)
    return n


def convert_both(strata_img, ref_img, d, args, src, target_setup=None):
    """Same convert by both tools; the two targets' paths."""
    outs = []
    for tool, name in ((ref_img, 'r.out'), (strata_img, 's.out')):
        out = os.path.join(d, name)
        if target_setup:
            target_setup(out)
        n = copy_calls([tool, 'convert', *args, src, out])
        if tool == strata_img and n is not None:
            assert n > 0, 'no copy offload'
        outs.append(out)
    return outs


def assert_same_qcow2(ref_img, r, s):
    assert open(r, 'rb').read() == open(s, 'rb').read()
    assert run([ref_img, 'check', s]).rc == 0


@pytest.mark.parametrize('opts', [
    '', 'cluster_size=4096', 'cluster_size=2M', 'extended_l2=on',
    'extended_l2=on,cluster_size=128k',
])
def test_raw_to_qcow2(shm_dir, strata_img, ref_qemu_img, ref_qemu_io, opts):
    src = os.path.join(shm_dir, 'src.raw')
    ref_image(ref_qemu_img, ref_qemu_io, src, 'raw')
    args = ['-C', '-f', 'raw', '-O', 'qcow2'] + (['-o', opts] if opts else [])
    r, s = convert_both(strata_img, ref_qemu_img, shm_dir, args, src)
    assert_same_qcow2(ref_qemu_img, r, s)


@pytest.mark.parametrize('opts', ['', 'extended_l2=on', 'cluster_size=4096'])
def test_qcow2_to_qcow2(shm_dir, strata_img, ref_qemu_img, ref_qemu_io, opts):
    src = os.path.join(shm_dir, 'src.qcow2')
    ref_image(ref_qemu_img, ref_qemu_io, src, 'qcow2', 'cluster_size=65536')
    args = ['-C', '-f', 'qcow2', '-O', 'qcow2'] + (['-o', opts] if opts else [])
    r, s = convert_both(strata_img, ref_qemu_img, shm_dir, args, src)
    assert_same_qcow2(ref_qemu_img, r, s)


def test_qcow2_to_raw(shm_dir, strata_img, ref_qemu_img, ref_qemu_io):
    src = os.path.join(shm_dir, 'src.qcow2')
    ref_image(ref_qemu_img, ref_qemu_io, src, 'qcow2', 'extended_l2=on')
    r, s = convert_both(strata_img, ref_qemu_img, shm_dir,
                        ['-C', '-f', 'qcow2', '-O', 'raw'], src)
    assert open(r, 'rb').read() == open(s, 'rb').read()
    maps = [run([ref_qemu_img, 'map', '--output=json', '-f', 'raw', x]).out
            for x in (r, s)]
    assert maps[0] == maps[1]


def test_onto_existing_target_with_backing(shm_dir, strata_img, ref_qemu_img,
                                           ref_qemu_io):
    """-n onto a qcow2 over a backing file: partial clusters copy the
    backing data on write, clusters already allocated are overwritten in
    place."""
    src = os.path.join(shm_dir, 'src.raw')
    ref_image(ref_qemu_img, ref_qemu_io, src, 'raw')
    base = os.path.join(shm_dir, 'base.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', base,
                SIZE]).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 0x99 0 ' + SIZE, base]).rc == 0

    def setup(out):
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-b', base,
                    '-F', 'qcow2', out]).rc == 0
        assert run([ref_qemu_io, '-c', 'write -P 0x12 1M 64k', out]).rc == 0

    r, s = convert_both(strata_img, ref_qemu_img, shm_dir,
                        ['-C', '-n', '-f', 'raw', '-O', 'qcow2'], src, setup)
    assert_same_qcow2(ref_qemu_img, r, s)
    assert run([ref_qemu_img, 'compare', src, s]).rc == 0


def test_compressed_source_falls_back(shm_dir, strata_img, ref_qemu_img,
                                      ref_qemu_io):
    """A compressed cluster cannot be copied below the format: the rest
    goes through reads and writes, the result is still the reference's."""
    src = os.path.join(shm_dir, 'src.qcow2')
    ref_image(ref_qemu_img, ref_qemu_io, src, 'qcow2', '',
              ['write -c -P 0x66 2560k 64k'])
    outs = []
    for tool, name in ((ref_qemu_img, 'r.out'), (strata_img, 's.out')):
        out = os.path.join(shm_dir, name)
        assert run([tool, 'convert', '-C', '-f', 'qcow2', '-O', 'qcow2',
                    src, out]).rc == 0
        outs.append(out)
    assert_same_qcow2(ref_qemu_img, *outs)


def test_writethrough_target(shm_dir, strata_img, ref_qemu_img, ref_qemu_io):
    """-t writethrough: every copy is followed by a flush (FUA emulated);
    same image."""
    src = os.path.join(shm_dir, 'src.raw')
    ref_image(ref_qemu_img, ref_qemu_io, src, 'raw')
    r, s = convert_both(strata_img, ref_qemu_img, shm_dir,
                        ['-C', '-t', 'writethrough', '-f', 'raw', '-O',
                         'qcow2'], src)
    assert_same_qcow2(ref_qemu_img, r, s)


def test_copy_marks_target_bitmaps(shm_dir, strata_img, ref_qemu_img,
                                   ref_qemu_io):
    """-C -n onto a qcow2 with an enabled persistent bitmap: the copies
    mark it as the reference's writes do."""
    from test_bitmaps import bitmaps_of
    src = os.path.join(shm_dir, 'src.raw')
    ref_image(ref_qemu_img, ref_qemu_io, src, 'raw')

    def setup(out):
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', out,
                    SIZE]).rc == 0
        assert run([ref_qemu_img, 'bitmap', '--add', '-g', '64k', out,
                    'b0']).rc == 0

    r, s = convert_both(strata_img, ref_qemu_img, shm_dir,
                        ['-C', '-n', '-f', 'raw', '-O', 'qcow2'], src, setup)
    assert bitmaps_of(r)['b0'][2], 'nothing marked'
    assert bitmaps_of(s) == bitmaps_of(r)
    assert run([ref_qemu_img, 'check', s]).rc == 0


@pytest.mark.parametrize('opts', ['cluster_size=65536', 'extended_l2=on'])
def test_source_ending_inside_a_sector(shm_dir, strata_img, ref_qemu_img,
                                       opts):
    """A raw source whose file ends inside the image's last sector: the
    copy past its end is refused after clusters were allocated for it,
    the write that replaces it leaves the image as the reference's."""
    src = os.path.join(shm_dir, 'odd.raw')
    with open(src, 'wb') as f:
        f.write(os.urandom(5000001))
    r, s = convert_both(strata_img, ref_qemu_img, shm_dir,
                        ['-C', '-f', 'raw', '-O', 'qcow2', '-o', opts], src)
    assert_same_qcow2(ref_qemu_img, r, s)
