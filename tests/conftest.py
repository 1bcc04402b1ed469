"""Shared fixtures for the functional and interop suites.

STRATA_BUILD names the build tree under test (default: build/);
STRATA_REF_BIN the directory of the reference qemu-utils 10.0 tools
(default /opt/qemu-ref/usr/bin)."""
import hashlib
import os
import re
import shutil
import subprocess

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get('STRATA_BUILD', os.path.join(TOP, 'build'))
REF_BIN = os.environ.get('STRATA_REF_BIN', '/opt/qemu-ref/usr/bin')

# "64 KiB, 1 ops; 00.00 sec (55.789 MiB/sec and 892.6292 ops/sec)"; from
# a second on the time reads "0:00:01.23", without "sec"
TIMING = re.compile(r'^(.*, \d+ ops); [0-9:.]+(?: sec)? '
                    r'\([0-9.]+ (?:[KMGTPE]iB|bytes)/sec and [0-9.]+ ops/sec\)$', re.M)


# -C (terse): "4096,1,0:00:00.00,21707792.758,5299.754"
TERSE = re.compile(r'^(\d+),(\d+),[0-9:.]+,[0-9.]+,[0-9.]+$', re.M)


def normalize(text):
    """Replace the timing part of qemu-io's statistics lines."""
    return TERSE.sub(r'\1,\2,TIME', TIMING.sub(r'\1; TIME', text))


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return f'rc={self.rc}\n--stdout--\n{self.out}\n--stderr--\n{self.err}'


def run(argv, **kw):
    kw.setdefault('timeout', 120)
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    return Result(proc)


def sanitized(program):
    """Whether @program is an ASan build (its shadow memory makes address
    space and RSS limits meaningless)."""
    with open(os.path.realpath(program), 'rb') as f:
        return b'__asan_init' in f.read()


def built(*parts):
    """Path of a program of the build tree under test; it must exist."""
    path = os.path.join(BUILD, *parts)
    assert os.access(path, os.X_OK), f'{path} not built'
    return path


def reference(name, missing='not installed (scripts/reference-qemu)'):
    """Path of a reference tool; skips the test where it is missing."""
    path = os.path.join(REF_BIN, name)
    if not os.access(path, os.X_OK):
        pytest.skip(f'reference {name} {missing}')
    return path


@pytest.fixture(scope='session')
def strata_io():
    return built('tools', 'io', 'strata-io')


@pytest.fixture(scope='session')
def strata_lockholder():
    return built('tests', 'helpers', 'strata-lockholder')


@pytest.fixture(scope='session')
def strata_img():
    return built('tools', 'img', 'strata-img')


@pytest.fixture(scope='session')
def bindir(tmp_path_factory, strata_io, strata_img):
    """A directory where our tools are reachable under the reference's
    names (qemu-io, qemu-img), so that messages carry the same program
    name."""
    d = tmp_path_factory.mktemp('bin')
    os.symlink(strata_io, d / 'qemu-io')
    os.symlink(strata_img, d / 'qemu-img')
    return d


@pytest.fixture(scope='session')
def our_qemu_img(bindir):
    return str(bindir / 'qemu-img')


@pytest.fixture(scope='session')
def our_qemu_io(bindir):
    return str(bindir / 'qemu-io')


@pytest.fixture(scope='session')
def ref_qemu_io():
    return reference('qemu-io')


@pytest.fixture(scope='session')
def ref_qemu_img():
    return reference('qemu-img')


@pytest.fixture(scope='session')
def ref_qemu_nbd():
    return reference('qemu-nbd', 'not installed')


@pytest.fixture
def disk_dir(tmp_path):
    """A directory on a real disk (O_DIRECT works there, not on tmpfs)."""
    base = '/var/tmp'
    d = tempfile_dir(base)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def tempfile_dir(base):
    import tempfile
    return tempfile.mkdtemp(prefix='strata-test-', dir=base)


def make_image(path, size, chunks=()):
    """A sparse raw file of @size with (offset, bytes) chunks written."""
    with open(path, 'wb') as f:
        f.truncate(size)
        for off, data in chunks:
            f.seek(off)
            f.write(data)
    return str(path)


def pattern(byte, n):
    return bytes([byte]) * n


def io_args(cmds):
    argv = []
    for c in cmds:
        argv += ['-c', c]
    return argv


def ref_run(tool, cwd, *args):
    """@tool (a reference binary) run in @cwd; it must succeed."""
    r = run([tool] + list(args), cwd=str(cwd))
    assert r.rc == 0, r
    return r


def ref_tools(ref_qemu_img, ref_qemu_io, d):
    """img(*args) and io(path, *cmds): the reference qemu-img and qemu-io
    run in @d, each required to succeed."""
    def img(*args):
        return ref_run(ref_qemu_img, d, *args)

    def io(path, *cmds):
        return ref_run(ref_qemu_io, d, *io_args(cmds), path)
    return img, io


def raw_under_qcow2(d, img, io):
    """In @d: base.raw (1M) <- d/mid.qcow2 (2M) <- an empty top.qcow2
    (3M), made by the reference: the bottom of the chains that the chain
    reading and convert-onto-backing tests share."""
    os.mkdir(os.path.join(d, 'd'))
    img('create', '-q', '-f', 'raw', 'base.raw', '1M')
    io('base.raw', 'write -P 1 0 256k', 'write -z 512k 64k')
    img('create', '-q', '-f', 'qcow2', '-b', '../base.raw', '-F', 'raw',
        'd/mid.qcow2', '2M')
    io('d/mid.qcow2', 'write -P 2 64k 64k', 'write -z 128k 64k',
       'write -P 3 1536k 64k', 'write -z 1600k 64k')
    img('create', '-q', '-f', 'qcow2', '-b', 'd/mid.qcow2', '-F', 'qcow2',
        'top.qcow2', '3M')


def ref_qio(ref_io, path, *cmds, fmt=None):
    """The reference qemu-io runs @cmds on @path; none may fail."""
    argv = [ref_io] + (['-f', fmt] if fmt else [])
    r = run(argv + io_args(cmds) + [path])
    assert r.rc == 0 and 'failed' not in r.out, r


def ref_create(ref_img, path, size, fmt='qcow2', backing=None, bfmt=None,
               opts=None):
    """The reference qemu-img creates @path, over @backing when given."""
    argv = [ref_img, 'create', '-q', '-f', fmt]
    if backing is not None:
        argv += ['-b', backing, '-F', bfmt]
    if opts:
        argv += ['-o', opts]
    assert run(argv + [path, str(size)]).rc == 0


def twin_dirs(tmp_path):
    """Two fresh directories, r and s: one for each tool's copy."""
    r, s = tmp_path / 'r', tmp_path / 's'
    r.mkdir()
    s.mkdir()
    return str(r), str(s)


def lock_bytes(path):
    """The (type, start, end) OFD locks held on @path's inode, sorted, from
    /proc/locks."""
    ino = os.stat(path).st_ino
    found = []
    with open('/proc/locks') as f:
        for line in f:
            fields = line.split()
            if fields[1] == 'OFDLCK' and fields[5].endswith(f':{ino}'):
                found.append((fields[3], fields[6], fields[7]))
    return sorted(found)


def data_extents(path):
    """The file's data ranges [(start, end)] as SEEK_DATA/SEEK_HOLE report
    them (a file system without them reports one range)."""
    out, fd = [], os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            pos = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, pos))
    finally:
        os.close(fd)
    return out


def sparse_digest(path):
    """Hash of the file's size and the contents of its data ranges: a
    sparse multi-TB image is not read through its holes."""
    h = hashlib.sha256(str(os.path.getsize(path)).encode())
    with open(path, 'rb') as f:
        for start, end in data_extents(path):
            f.seek(start)
            pos = start
            while pos < end:
                chunk = f.read(min(end - pos, 1 << 20))
                if not chunk:
                    break
                h.update(pos.to_bytes(8, 'little') + chunk)
                pos += len(chunk)
    return h.hexdigest()
