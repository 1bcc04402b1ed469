"""-U (force-share) opens of qcow2 images that another process holds open
read-write: the reference lets read-only force-share opens through (the
open shares every permission down the whole graph) and refuses the same
open without -U; Strata must match its output and exit codes."""
import subprocess

import pytest

from conftest import run, normalize


@pytest.fixture
def chain(tmp_path, ref_qemu_img, ref_qemu_io):
    """base.qcow2 <- top.qcow2 with data in both; plain.qcow2 alone."""
    base, top = tmp_path / 'base.qcow2', tmp_path / 'top.qcow2'
    plain = tmp_path / 'plain.qcow2'
    for argv in ([ref_qemu_img, 'create', '-q', '-f', 'qcow2', str(base),
                  '1M'],
                 [ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-b',
                  'base.qcow2', '-F', 'qcow2', str(top), '1M'],
                 [ref_qemu_img, 'create', '-q', '-f', 'qcow2', str(plain),
                  '1M'],
                 [ref_qemu_io, '-c', 'write -P 0x11 0 128k', str(base)],
                 [ref_qemu_io, '-c', 'write -P 0x22 64k 64k', str(top)],
                 [ref_qemu_io, '-c', 'write -P 0x33 256k 4k', str(plain)]):
        assert run(argv).rc == 0
    return tmp_path


@pytest.fixture(params=['ref', 'ours'])
def writer(request, ref_qemu_io, our_qemu_io):
    """Hold images open read-write in qemu-io (the reference's or ours)
    until the end of the test.  The answer to a first command proves the
    image is open and locked."""
    tool = ref_qemu_io if request.param == 'ref' else our_qemu_io
    procs = []

    def hold(img):
        p = subprocess.Popen([tool, img], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        procs.append(p)
        p.stdin.write('read 0 512\n')
        p.stdin.flush()
        assert 'read 512/512 bytes at offset 0' in p.stdout.readline()
    yield hold
    for p in procs:
        p.stdin.close()
        p.wait(timeout=10)


def same(ours, ref, argv, cwd):
    a = run([ours] + argv, cwd=cwd)
    b = run([ref] + argv, cwd=cwd)
    assert (a.rc, normalize(a.out), a.err) == (b.rc, normalize(b.out),
                                               b.err), argv
    return a


IMG_CMDS = [
    ['info', '-U', '{img}'],
    ['info', '-U', '--backing-chain', '{img}'],
    ['map', '-U', '{img}'],
    ['map', '-U', '--output=json', '{img}'],
    ['check', '-U', '{img}'],
    ['compare', '-U', '{img}', '{img}'],
    ['info', '{img}'],
    ['map', '{img}'],
    ['check', '{img}'],
    ['compare', '{img}', '{img}'],
]


@pytest.mark.parametrize('name', ['plain.qcow2', 'top.qcow2'])
def test_img_commands_while_held(chain, writer, our_qemu_img, ref_qemu_img,
                                 name):
    writer(str(chain / name))
    for cmd in IMG_CMDS:
        argv = [a.format(img=name) for a in cmd]
        r = same(our_qemu_img, ref_qemu_img, argv, chain)
        if '-U' in cmd:
            assert r.rc == 0, (argv, r)
        else:
            assert 'Failed to get shared "write" lock' in r.err, (argv, r)


@pytest.mark.parametrize('name', ['plain.qcow2', 'top.qcow2'])
def test_convert_while_held(chain, writer, our_qemu_img, ref_qemu_img, name):
    writer(str(chain / name))
    for tool, out in ((our_qemu_img, 'ours.raw'), (ref_qemu_img, 'ref.raw')):
        r = run([tool, 'convert', '-U', '-O', 'raw', name, out], cwd=chain)
        assert (r.rc, r.out, r.err) == (0, '', ''), r
    assert (chain / 'ours.raw').read_bytes() == (chain / 'ref.raw').read_bytes()
    same(our_qemu_img, ref_qemu_img,
         ['convert', '-O', 'raw', name, 'nolock.raw'], chain)


@pytest.mark.parametrize('name', ['plain.qcow2', 'top.qcow2'])
def test_io_force_share_while_held(chain, writer, our_qemu_io, ref_qemu_io,
                                   name):
    writer(str(chain / name))
    for argv in (['-U', '-r', '-c', 'read 64k 64k', '-c',
                  'read -v 0 16', '-c', 'map', name],
                 ['-r', '-c', 'read 0 4k', name],
                 ['-c', 'read 0 4k', name]):
        r = same(our_qemu_io, ref_qemu_io, argv, chain)
        if '-U' in argv:
            assert r.rc == 0 and 'lock' not in r.err, r
