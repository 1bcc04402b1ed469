"""Backing chains of qcow2 images made by the reference: info (human,
JSON, --backing-chain), reads through the chain, the open errors, the
locks on a backing file and copy-on-read, each compared with the
reference's tools on the same files.

Every test here needs strata's qcow2 driver: while strata cannot create a
qcow2 image they skip (the unit test tests/unit/test-backing.c covers the
core with a test-only format meanwhile)."""
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import normalize, run, lock_bytes


@pytest.fixture(scope='module')
def have_qcow2(strata_img, tmp_path_factory):
    d = tmp_path_factory.mktemp('qcow2-probe')
    r = run([strata_img, 'create', '-q', '-f', 'qcow2',
             str(d / 'p.qcow2'), '1M'])
    if r.rc != 0:
        pytest.skip('strata has no qcow2 driver yet')


@pytest.fixture
def chain(tmp_path, ref_qemu_img, ref_qemu_io, have_qcow2):
    """Images made by the reference in tmp_path:
      base.qcow2 (1M, 0x11 at 0..64k)
      d/base.qcow2 (1M, 0x22 at 64k..128k)
      d/top.qcow2 -> "base.qcow2", which is d/base.qcow2 (relative to the
        overlay's directory, not to the working directory)
      sub/mid.qcow2 -> ../d/top.qcow2 (0x33 at 128k..192k)
      sub/top.qcow2 -> mid.qcow2
      abs.qcow2 -> <tmp_path>/base.qcow2 (absolute)
      short.qcow2 (2M) -> base.qcow2 (1M)
    """
    def img(*args):
        r = run([ref_qemu_img] + list(args), cwd=str(tmp_path))
        assert r.rc == 0, r

    def io(path, cmd):
        r = run([ref_qemu_io, '-c', cmd, path], cwd=str(tmp_path))
        assert r.rc == 0, r

    os.mkdir(tmp_path / 'd')
    os.mkdir(tmp_path / 'sub')
    img('create', '-q', '-f', 'qcow2', 'base.qcow2', '1M')
    io('base.qcow2', 'write -P 0x11 0 64k')
    img('create', '-q', '-f', 'qcow2', 'd/base.qcow2', '1M')
    io('d/base.qcow2', 'write -P 0x22 64k 64k')
    img('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2',
        'd/top.qcow2')
    img('create', '-q', '-f', 'qcow2', '-b', '../d/top.qcow2', '-F', 'qcow2',
        'sub/mid.qcow2')
    io('sub/mid.qcow2', 'write -P 0x33 128k 64k')
    img('create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2',
        'sub/top.qcow2')
    img('create', '-q', '-f', 'qcow2', '-b', str(tmp_path / 'base.qcow2'),
        '-F', 'qcow2', 'abs.qcow2')
    img('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2',
        'short.qcow2', '2M')
    return tmp_path


def both(prog_pair, argv, cwd, name):
    """(rc, out, err) of the reference and of strata for the same argv,
    program names and the directory normalised."""
    results = []
    for prog in prog_pair:
        r = run([prog] + argv, cwd=str(cwd))
        out = normalize(r.out).replace(prog, name).replace(str(cwd), 'DIR')
        err = r.err.replace(prog, name).replace(str(cwd), 'DIR')
        results.append((r.rc, out, err))
    return results


def same_img(ref, our, argv, cwd):
    ref_r, our_r = both((ref, our), argv, cwd, 'qemu-img')
    assert our_r == ref_r
    return ref_r


def same_io(ref, our, argv, cwd):
    ref_r, our_r = both((ref, our), argv, cwd, 'qemu-io')
    assert 'verification failed' not in ref_r[1], 'a wrong test case'
    assert our_r == ref_r
    return ref_r


JSON_TOP = ('json:{"driver":"qcow2","file":{"driver":"file",'
            '"filename":"d/top.qcow2"}}')

INFO_CASES = [
    ['info', 'd/top.qcow2'],
    ['info', '--output=json', 'd/top.qcow2'],
    ['info', '-f', 'qcow2', 'sub/top.qcow2'],
    ['info', '--backing-chain', 'd/top.qcow2'],
    ['info', '--backing-chain', '--output=json', 'd/top.qcow2'],
    ['info', '--backing-chain', 'sub/top.qcow2'],
    ['info', '--backing-chain', '--output=json', '-f', 'qcow2',
     'sub/top.qcow2'],
    ['info', 'abs.qcow2'],
    ['info', '--output=json', '--backing-chain', 'abs.qcow2'],
    ['info', '--backing-chain', 'short.qcow2'],
    ['info', JSON_TOP],
    ['info', '--backing-chain', JSON_TOP],
    ['info', '--output=json', JSON_TOP],
    ['info', 'file:d/top.qcow2'],
    ['info', '--backing-chain', 'file:d/top.qcow2'],
    ['info', '--backing-chain', 'blkdebug::d/top.qcow2'],
    ['info', '--image-opts', 'driver=qcow2,file.filename=d/top.qcow2'],
    ['info', '--backing-chain', '--image-opts',
     'driver=qcow2,file.filename=d/top.qcow2'],
    ['info', '-U', '--backing-chain', 'd/top.qcow2'],
    # nothing opens the backing file: backing options are left over
    ['info', '--image-opts',
     'driver=qcow2,file.filename=d/top.qcow2,backing.file.filename=base.qcow2'],
]


@pytest.mark.parametrize('argv', INFO_CASES, ids=lambda a: ' '.join(a))
def test_info(chain, our_qemu_img, ref_qemu_img, argv):
    same_img(ref_qemu_img, our_qemu_img, argv, chain)


def test_info_json_fields(chain, our_qemu_img, ref_qemu_img):
    """The fields consumers read, spelled out (beyond the byte compare)."""
    rc, out, _ = same_img(ref_qemu_img, our_qemu_img,
                          ['info', '--output=json', 'sub/top.qcow2'], chain)
    info = json.loads(out)
    assert info['backing-filename'] == 'mid.qcow2'
    assert info['full-backing-filename'] == 'sub/mid.qcow2'
    assert info['backing-filename-format'] == 'qcow2'


def test_info_chain_errors(chain, our_qemu_img, ref_qemu_img):
    """A missing backing file: info alone is fine, the chain fails (also
    in the middle of a chain)."""
    os.rename(chain / 'd/top.qcow2', chain / 'd/top2.qcow2')
    for argv in (['info', 'sub/mid.qcow2'],
                 ['info', '--backing-chain', 'sub/top.qcow2'],
                 ['info', '--backing-chain', '--output=json',
                  'sub/mid.qcow2']):
        same_img(ref_qemu_img, our_qemu_img, argv, chain)
    os.rename(chain / 'd/top2.qcow2', chain / 'd/top.qcow2')
    os.rename(chain / 'd/base.qcow2', chain / 'd/gone.qcow2')
    # below a filter, info's "no backing file" does not apply
    filtered = ('json:{"driver":"blkdebug","image":{"driver":"qcow2",'
                '"file":{"driver":"file","filename":"d/top.qcow2"}}}')
    for argv in (['info', 'd/top.qcow2'],
                 ['info', '--backing-chain', 'd/top.qcow2'],
                 ['info', filtered]):
        same_img(ref_qemu_img, our_qemu_img, argv, chain)


def rebase_unsafe(ref_qemu_img, cwd, img, backing, fmt):
    r = run([ref_qemu_img, 'rebase', '-u', '-b', backing, '-F', fmt, img],
            cwd=str(cwd))
    assert r.rc == 0, r


def unknown_format_image(ref_qemu_img, cwd):
    """unk.qcow2 -> base.qcow2 recorded with the unknown format "qcowX"
    (the reference refuses to write one: the header is patched)."""
    run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2',
         '-F', 'qcow2', 'unk.qcow2'], cwd=str(cwd))
    with open(cwd / 'unk.qcow2', 'r+b') as f:
        head = bytearray(f.read(4096))
        i = head.find(b'qcow2\0')
        assert i > 0
        head[i:i + 5] = b'qcowX'
        f.seek(0)
        f.write(head)


def test_unknown_backing_format(chain, our_qemu_img, ref_qemu_img,
                                our_qemu_io, ref_qemu_io):
    unknown_format_image(ref_qemu_img, chain)
    for argv in (['info', 'unk.qcow2'],
                 ['info', '--backing-chain', 'unk.qcow2']):
        same_img(ref_qemu_img, our_qemu_img, argv, chain)
    same_io(ref_qemu_io, our_qemu_io, ['-c', 'read 0 1', 'unk.qcow2'], chain)


def test_info_loops_and_wrong_format(chain, our_qemu_img, ref_qemu_img,
                                     ref_qemu_io):
    run([ref_qemu_img, 'create', '-q', '-f', 'raw', 'r.raw', '1M'],
        cwd=str(chain))
    for name in ('self.qcow2', 'a.qcow2', 'b.qcow2', 'wrong.qcow2'):
        r = run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', name, '1M'],
                cwd=str(chain))
        assert r.rc == 0, r
    rebase_unsafe(ref_qemu_img, chain, 'self.qcow2', 'self.qcow2', 'qcow2')
    rebase_unsafe(ref_qemu_img, chain, 'a.qcow2', 'b.qcow2', 'qcow2')
    rebase_unsafe(ref_qemu_img, chain, 'b.qcow2', 'a.qcow2', 'qcow2')
    rebase_unsafe(ref_qemu_img, chain, 'wrong.qcow2', 'r.raw', 'qcow2')
    for argv in (['info', 'self.qcow2'],
                 ['info', '--backing-chain', 'self.qcow2'],
                 ['info', '--backing-chain', 'a.qcow2'],
                 ['info', '--backing-chain', '--output=json', 'b.qcow2'],
                 ['info', 'wrong.qcow2'],
                 ['info', '--backing-chain', 'wrong.qcow2']):
        same_img(ref_qemu_img, our_qemu_img, argv, chain)


# ---- qemu-io: reading through the chain, open errors ----

IO_CASES = [
    ['-r', '-c', 'read -P 0 0 64k', '-c', 'read -P 0x22 64k 64k',
     'd/top.qcow2'],
    ['-r', '-c', 'read -P 0 0 64k', '-c', 'read -P 0x22 64k 64k',
     '-c', 'read -P 0x33 128k 64k', '-c', 'read -P 0 192k 64k',
     'sub/top.qcow2'],
    ['-c', 'read -P 0x11 0 64k', '-c', 'read -P 0 1M 1M', 'short.qcow2'],
    ['-c', 'read -P 0x11 0 64k', 'abs.qcow2'],
    ['-c', 'read -P 0 64k 64k',
     'json:{"driver":"qcow2","backing":null,'
     '"file":{"driver":"file","filename":"d/top.qcow2"}}'],
    ['--image-opts', '-c', 'read -P 0 64k 64k',
     'driver=qcow2,file.filename=d/top.qcow2,backing='],
    # backing options name files relative to the working directory
    ['--image-opts', '-c', 'read -P 0x11 0 64k', '-c', 'read -P 0 64k 64k',
     'driver=qcow2,file.filename=d/top.qcow2,'
     'backing.file.filename=base.qcow2'],
    ['--image-opts', '-c', 'read 0 512',
     'driver=qcow2,file.filename=d/top.qcow2,backing=nonode'],
    ['--image-opts', '-c', 'read 0 512',
     'driver=qcow2,file.filename=d/top.qcow2,'
     'backing.file.filename=nonexistent'],
    ['--image-opts', '-c', 'read 0 512', '-c', 'read -P 0 900k 64k',
     'driver=qcow2,file.filename=d/top.qcow2,backing.driver=raw'],
    ['-c', 'read -P 0x22 64k 512', 'blkdebug::d/top.qcow2'],
    ['-c', 'read -P 0x22 64k 512', 'file:d/top.qcow2'],
]


@pytest.mark.parametrize('argv', IO_CASES, ids=lambda a: ' '.join(a))
def test_io(chain, our_qemu_io, ref_qemu_io, argv):
    same_io(ref_qemu_io, our_qemu_io, argv, chain)


def test_io_open_errors(chain, our_qemu_io, ref_qemu_io, ref_qemu_img):
    run([ref_qemu_img, 'create', '-q', '-f', 'raw', 'r.raw', '1M'],
        cwd=str(chain))
    for name in ('self.qcow2', 'wrong.qcow2'):
        run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', name, '1M'],
            cwd=str(chain))
    rebase_unsafe(ref_qemu_img, chain, 'self.qcow2', 'self.qcow2', 'qcow2')
    rebase_unsafe(ref_qemu_img, chain, 'wrong.qcow2', 'r.raw', 'qcow2')
    os.rename(chain / 'base.qcow2', chain / 'gone.qcow2')
    # (read-only, the reference opens self.qcow2 forever: not compared)
    for argv in (['-c', 'read 0 512', 'd/top.qcow2'],
                 ['-c', 'read 0 512', 'self.qcow2'],
                 ['-c', 'read 0 512', 'wrong.qcow2']):
        same_io(ref_qemu_io, our_qemu_io, argv, chain)


def test_io_self_loop_read_only(chain, our_qemu_io, ref_qemu_img):
    """The reference's qemu-io opens such an image until memory runs out;
    strata stops at the loop."""
    run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', 'self.qcow2', '1M'],
        cwd=str(chain))
    rebase_unsafe(ref_qemu_img, chain, 'self.qcow2', 'self.qcow2', 'qcow2')
    r = run([our_qemu_io, '-r', '-c', 'read 0 512', 'self.qcow2'],
            cwd=str(chain), timeout=20)
    assert r.rc == 1
    assert r.err == ("qemu-io: can't open device self.qcow2: Could not open "
                     "backing file: Backing file 'self.qcow2' creates an "
                     "infinite loop.\n")


# ---- locks on the backing file ----


def held_locks(prog, argv, cwd, paths):
    p = subprocess.Popen([prog] + argv, cwd=str(cwd),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the locks once the open has settled: the same in three samples
        # (while it opens, a probe's descriptor may hold them twice)
        deadline = time.time() + 10
        seen = []
        while time.time() < deadline:
            locks = [lock_bytes(cwd / p) for p in paths]
            seen = seen[-2:] + [locks] if locks[0] else []
            if len(seen) == 3 and seen[0] == seen[1] == seen[2]:
                break
            time.sleep(0.1)
        return seen[-1] if seen else []
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize('mode', [[], ['-r']], ids=['rw', 'ro'])
def test_backing_locks(chain, our_qemu_io, ref_qemu_io, mode):
    argv = mode + ['-c', 'sleep 2000', 'd/top.qcow2']
    paths = ['d/top.qcow2', 'd/base.qcow2']
    ref = held_locks(ref_qemu_io, argv, chain, paths)
    our = held_locks(our_qemu_io, argv, chain, paths)
    assert ref[1], 'the reference locks its backing file'
    assert our == ref


# ---- copy-on-read ----

def cor_case(chain, prog, argv, ref_qemu_img):
    """Run @argv on a fresh copy of the chain; the top's map after it."""
    work = chain / ('cor-' + os.path.basename(prog))
    shutil.copytree(chain, work, ignore=shutil.ignore_patterns('cor-*'))
    r = run([prog] + argv, cwd=str(work))
    m = run([ref_qemu_img, 'map', '--output=json', '-f', 'qcow2',
             'sub/top.qcow2'], cwd=str(work))
    # where the clusters landed is the qcow2 driver's business: compare
    # what is allocated where in the chain, not host offsets
    extents = [{k: v for k, v in e.items() if k != 'offset'}
               for e in json.loads(m.out)]
    c = run([ref_qemu_img, 'check', 'sub/top.qcow2'], cwd=str(work))
    shutil.rmtree(work)
    return normalize(r.out), r.err, r.rc, extents, c.rc


COR_CASES = [
    ['-C', '-c', 'read -P 0x22 68k 512', 'sub/top.qcow2'],
    ['-C', '-c', 'read -P 0x33 130k 1k', '-c', 'read -P 0 200k 4k',
     'sub/top.qcow2'],
    ['-c', 'read -P 0x22 64k 64k', '-c', 'read -P 0x33 128k 36k',
     'json:{"driver":"copy-on-read","file":{"driver":"qcow2",'
     '"file":{"driver":"file","filename":"sub/top.qcow2"}}}'],
    ['-C', '-r', '-c', 'read 0 512', 'sub/top.qcow2'],
]


@pytest.mark.parametrize('argv', COR_CASES, ids=lambda a: ' '.join(a))
def test_copy_on_read(chain, our_qemu_io, ref_qemu_io, ref_qemu_img, argv):
    ref = cor_case(chain, ref_qemu_io, argv, ref_qemu_img)
    our = cor_case(chain, our_qemu_io, argv, ref_qemu_img)
    ours = (our[0].replace(our_qemu_io, 'qemu-io'),
            our[1].replace(our_qemu_io, 'qemu-io')) + our[2:]
    refs = (ref[0].replace(ref_qemu_io, 'qemu-io'),
            ref[1].replace(ref_qemu_io, 'qemu-io')) + ref[2:]
    assert ours == refs


def test_copy_on_read_copies_subclusters(tmp_path, strata_io, ref_qemu_img,
                                         ref_qemu_io):
    # qemu-iotests 197: with extended L2 entries copy-on-read copies the
    # subclusters the read touches, not the whole cluster.
    base = str(tmp_path / 'base.raw')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'raw', base,
                '64K']).rc == 0
    assert run([ref_qemu_io, '-f', 'raw', '-c', 'write -P 0xaa 0 64k',
                base]).rc == 0
    maps = []
    for tool, name in ((ref_qemu_io, 'r'), (strata_io, 's')):
        p = str(tmp_path / name)
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    'extended_l2=on', '-F', 'raw', '-b', base, p]).rc == 0
        assert run([ref_qemu_io, '-c', 'write -P 0xbb 28K 2K', '-c',
                    'write -P 0xcc 34K 2K', p]).rc == 0
        r = run([tool, '-C', '-c', 'read -P 0xaa 30K 4K', p])
        assert r.rc == 0 and 'failed' not in r.out
        maps.append(run([ref_qemu_io, '-c', 'map', p]).out)
        assert run([ref_qemu_img, 'check', p]).rc == 0
    assert maps[1] == maps[0]


@pytest.mark.parametrize('top', ['d/image:top.qcow2', 'file:image:top.qcow2'])
def test_backing_path_with_colon_in_name(tmp_path, strata_img, ref_qemu_img,
                                         top):
    # qemu-iotests 126: a colon after a slash is part of the file name,
    # not a protocol prefix, when the backing path is combined.
    (tmp_path / 'd').mkdir()
    back = './image:base.qcow2' if top.startswith('d/') else 'base.qcow2'
    where = tmp_path / ('d' if top.startswith('d/') else '')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2',
                str(where / back), '1M']).rc == 0
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-F', 'qcow2',
                '-b', back, top], cwd=tmp_path).rc == 0
    r = run([ref_qemu_img, 'info', top], cwd=tmp_path)
    s = run([strata_img, 'info', top], cwd=tmp_path)
    assert r.rc == 0 and s.rc == 0
    line = [ln for ln in r.out.splitlines() if ln.startswith('backing file:')]
    assert line and line[0] in s.out.splitlines()
