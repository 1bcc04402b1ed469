"""Creating on host_device (a target that must exist): create, convert and
dd onto /dev/null, /dev/zero and, as root with loop devices, a loop
device, against the reference."""
import os
import shutil
import subprocess

import pytest

from test_img_create import diff, sparse

DEV_CASES = [
    ['create', '/dev/null', '0'],
    ['create', '/dev/null', '1M'],
    ['create', '-f', 'raw', '/dev/zero', '1M'],
    ['create', '-o', 'preallocation=full', '/dev/null', '0'],
    ['create', '-o', 'preallocation=falloc', '/dev/null', '0'],
    ['create', '-o', 'preallocation=bogus', '/dev/null', '0'],
    ['create', '-o', 'nocow=on', '/dev/null', '0'],
    ['create', '-o', 'extent_size_hint=4G', '/dev/null', '0'],
    ['create', '-o', 'help', '-f', 'raw', 'host_device:/dev/null'],
    ['create', 'host_device:s.raw', '1M'],
    ['create', 'host_device:/nonexistent', '0'],
    ['dd', 'if=s.raw', 'of=/dev/null'],
    ['dd', 'if=s.raw', 'of=/dev/zero', 'bs=512', 'count=1'],
    ['convert', '-O', 'raw', 's.raw', '/dev/null'],
    ['convert', '-O', 'raw', '-o', 'preallocation=full', 's.raw',
     '/dev/null'],
]


@pytest.mark.parametrize('args', DEV_CASES, ids=' '.join)
def test_host_device_create(our_qemu_img, ref_qemu_img, tmp_path, args):
    diff(our_qemu_img, ref_qemu_img, tmp_path, args, sparse)


@pytest.fixture
def loop_dev(tmp_path):
    """A 4 MiB loop device full of 0x77, or skip."""
    if os.getuid() != 0 or not shutil.which('losetup'):
        pytest.skip('needs root and losetup')
    back = tmp_path / 'back.img'
    back.write_bytes(b'\x77' * (4 << 20))
    r = subprocess.run(['losetup', '-f', '--show', str(back)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip('no loop device: ' + r.stderr.strip())
    dev = r.stdout.strip()
    yield dev
    subprocess.run(['losetup', '-d', dev])


@pytest.mark.parametrize('size', ['1M', '4M', '5M'])
def test_host_device_create_loop(our_qemu_img, ref_qemu_img, loop_dev, size):
    """The first sector is zeroed, the rest kept; growing fails."""
    results = []
    for prog in (ref_qemu_img, our_qemu_img):
        with open(loop_dev, 'r+b') as f:
            f.write(b'\x77' * 4096)
        r = subprocess.run([prog, 'create', '-f', 'raw', loop_dev, size],
                           capture_output=True, text=True)
        with open(loop_dev, 'rb') as f:
            head = f.read(4096)
        results.append((r.returncode, r.stdout,
                        r.stderr.replace(prog, 'qemu-img'), head))
    assert results[1] == results[0]


@pytest.mark.parametrize('hint', ['4G', '4294967295', '4294967296', '0'])
def test_file_extent_size_hint_limit(our_qemu_img, ref_qemu_img, tmp_path,
                                     hint):
    """A hint beyond 32 bits is refused before the file is created."""
    ref_dir, our_dir = diff(our_qemu_img, ref_qemu_img, tmp_path,
                            ['create', '-o', 'extent_size_hint=' + hint,
                             'o.raw', '64k'])
    assert (ref_dir / 'o.raw').exists() == (our_dir / 'o.raw').exists()


@pytest.mark.parametrize('driver', ['file', 'host_device', 'host_cdrom'])
@pytest.mark.parametrize('target', ['DIR', '/dev/null', '/dev/zero'])
@pytest.mark.parametrize('ro', [True, False])
def test_protocol_open_kinds(our_qemu_io, ref_qemu_io, tmp_path, driver,
                             target, ro):
    """Each posix protocol driver on a directory and on character devices:
    the same refusals (or silence) as the reference."""
    d = tmp_path / 'd'
    d.mkdir(exist_ok=True)
    name = str(d) if target == 'DIR' else target
    cmd = 'open %s-o driver=%s,filename=%s%s' % (
        '-r ' if ro else '', driver, name,
        '' if target == 'DIR' else ',locking=off')
    res = []
    for prog in (our_qemu_io, ref_qemu_io):
        r = subprocess.run([prog, '-c', cmd], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        res.append((r.returncode, r.stdout, r.stderr.replace(prog, 'qemu-io')))
    assert res[0] == res[1]


def test_host_cdrom_in_format_list(strata_img):
    out = subprocess.run([strata_img, '--help'], capture_output=True,
                         text=True).stdout
    assert 'host_cdrom' in out.split('Supported image formats:')[1].split()


NO_MEDIUM_IO = [['read 0 512'], ['write 0 512'], ['length'], ['discard 0 512'],
                ['flush'], ['map'], ['alloc 0 512'], ['write -z 0 512'],
                ['aio_read 0 512', 'aio_flush'], ['truncate 0'],
                ['aio_write 0 512', 'aio_flush'], ['writev 0 512']]


@pytest.mark.parametrize('ro', ['-r ', ''])
@pytest.mark.parametrize('cmds', NO_MEDIUM_IO, ids=lambda c: ' '.join(c))
def test_host_cdrom_without_medium_io(our_qemu_io, ref_qemu_io, cmds, ro):
    """/dev/zero answers no CD-ROM status: no medium, as the reference
    sees it (requests, length and flushes fail with "No medium found")."""
    import re
    res = []
    for prog in (our_qemu_io, ref_qemu_io):
        argv = [prog, '-c', 'open %s-o driver=host_cdrom,filename=/dev/zero,'
                'locking=off' % ro]
        for c in cmds:
            argv += ['-c', c]
        r = subprocess.run(argv, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        out = re.sub(r'; [0-9:.]+ \(.*\)$', '', r.stdout, flags=re.M)
        res.append((r.returncode, out, r.stderr.replace(prog, 'qemu-io')))
    assert res[0] == res[1]


@pytest.mark.parametrize('args', [
    ['map', '-f', 'raw', 'host_cdrom:/dev/null'],
    ['map', '--output=json', '-f', 'raw', 'host_cdrom:/dev/null'],
    ['compare', 'host_cdrom:/dev/null', 'host_cdrom:/dev/null'],
    ['convert', '-O', 'raw', 'host_cdrom:/dev/zero', 'OUT'],
    ['info', 'host_cdrom:/dev/null']], ids=' '.join)
def test_host_cdrom_without_medium_img(our_qemu_img, ref_qemu_img, tmp_path,
                                       args):
    res = []
    for prog in (our_qemu_img, ref_qemu_img):
        out = tmp_path / 'out.raw'
        argv = [str(out) if a == 'OUT' else a for a in args]
        r = subprocess.run([prog] + argv, capture_output=True, text=True)
        if out.exists():
            out.unlink()
        res.append((r.returncode, r.stdout, r.stderr.replace(prog, 'qemu-img')))
    assert res[0] == res[1]
