"""Hostile qcow2 snapshot tables: counts, offsets and sizes out of range,
overlong entries, broken snapshot L1 tables.  Every command must answer
as the reference does (exit status, messages, and what its check says
of the image afterwards), and info must stay within 1 GiB of address
space and 2 s of CPU."""
import shutil
import struct

import pytest

from conftest import io_args, run
from test_qcow2_limits import limited

MiB = 1 << 20


def header_table(f):
    f.seek(60)
    return struct.unpack('>IQ', f.read(12))


def put(f, off, fmt, value):
    f.seek(off)
    f.write(struct.pack(fmt, value))


# name -> function(file, table offset) that damages a two-snapshot image
CASES = {
    'extra_too_big': lambda f, so: put(f, so + 36, '>I', 1025),
    'extra_max': lambda f, so: put(f, so + 36, '>I', 1024),
    'extra_short': lambda f, so: put(f, so + 36, '>I', 8),
    'count_over_max': lambda f, so: put(f, 60, '>I', 65537),
    'count_past_table': lambda f, so: put(f, 60, '>I', 50),
    'offset_unaligned': lambda f, so: put(f, 64, '>Q', so + 3),
    'offset_past_eof': lambda f, so: put(f, 64, '>Q', 1 << 40),
    'offset_huge': lambda f, so: put(f, 64, '>Q', 0xfffffffffff0000),
    'offset_zero': lambda f, so: put(f, 64, '>Q', 0),
    'name_len_max': lambda f, so: put(f, so + 14, '>H', 0xffff),
    'id_len_max': lambda f, so: put(f, so + 12, '>H', 0xffff),
    'l1_unaligned': lambda f, so: put(f, so, '>Q', 0x12345),
    'l1_size_huge': lambda f, so: put(f, so + 8, '>I', 0xffffffff),
    'l1_past_eof': lambda f, so: put(f, so, '>Q', 1 << 50),
    'clock_max': lambda f, so: put(f, so + 24, '>Q', (1 << 64) - 1),
    'date_max': lambda f, so: put(f, so + 16, '>I', 0xffffffff),
    'vm_size_max': lambda f, so: put(f, so + 40, '>Q', (1 << 64) - 1),
    'disk_size_small': lambda f, so: put(f, so + 48, '>Q', 4096),
}

# 65536 (mostly empty) entries: legal, but the reference needs seconds
# per command, so only the resource limits are tested with it
LARGE = dict(CASES, count_max=lambda f, so: put(f, 60, '>I', 65536))

COMMANDS = [
    ['info', '--output=json', '-f', 'qcow2', 'IMG'],
    ['snapshot', '-l', 'IMG'],
    ['convert', '-l', 's1', '-O', 'raw', 'IMG', 'OUT'],
    ['snapshot', '-a', 's1', 'IMG'],
    ['snapshot', '-d', 's2', 'IMG'],
    ['snapshot', '-c', 's3', 'IMG'],
]


@pytest.fixture(scope='module')
def base_image(tmp_path_factory, ref_qemu_img, ref_qemu_io):
    path = tmp_path_factory.mktemp('hostile') / 'base.qcow2'
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', str(path),
                '16M']).rc == 0
    assert run([ref_qemu_io, *io_args(['write -P 1 0 64k']),
                str(path)]).rc == 0
    for name in ('s1', 's2'):
        assert run([ref_qemu_img, 'snapshot', '-c', name, str(path)]).rc == 0
    return path


def outcome(prog, ref_img, img, out, argv):
    args = [img if a == 'IMG' else out if a == 'OUT' else a for a in argv]
    r = run([prog] + args, timeout=60)
    c = run([ref_img, 'check', img])
    return r.rc, r.out, r.err.replace(prog, 'qemu-img'), c.rc


@pytest.mark.parametrize('case', sorted(CASES))
def test_hostile_table_like_reference(tmp_path, base_image, our_qemu_img,
                                      ref_qemu_img, case):
    damaged = tmp_path / 'd.qcow2'
    shutil.copy(base_image, damaged)
    with open(damaged, 'r+b') as f:
        _, so = header_table(f)
        CASES[case](f, so)
    img, out = str(tmp_path / 'w.qcow2'), str(tmp_path / 'o.raw')
    for argv in COMMANDS:
        res = []
        for prog in (our_qemu_img, ref_qemu_img):
            shutil.copy(damaged, img)
            res.append(outcome(prog, ref_qemu_img, img, out, argv))
        assert res[0] == res[1], argv


def oversized_table(path, base_image):
    """1000 entries of 1 KiB extra data and 64 KiB strings each (sparse):
    the table passes 64 MiB at entry 508."""
    shutil.copy(base_image, path)
    with open(path, 'r+b') as f:
        f.seek(60)
        f.write(struct.pack('>IQ', 1000, MiB))
        off = MiB
        for _ in range(1000):
            f.seek(off + 12)
            f.write(struct.pack('>HH', 0xffff, 0xffff))
            put(f, off + 36, '>I', 1024)
            off = (off + 40 + 1024 + 2 * 0xffff + 7) & ~7
    return str(path)


def test_table_too_big_like_reference(tmp_path, base_image, our_qemu_img,
                                      ref_qemu_img):
    img = oversized_table(tmp_path / 'big.qcow2', base_image)
    for args in (['info'], ['snapshot', '-l']):
        a = run([our_qemu_img] + args + [img])
        b = run([ref_qemu_img] + args + [img])
        assert (a.rc, a.out, a.err) == (b.rc, b.out, b.err)
    assert 'Snapshot table is too big' in a.err


@pytest.mark.parametrize('case', ['oversized', 'count_max', 'name_len_max'])
def test_info_within_limits(tmp_path, base_image, strata_img, case):
    """Under prlimit (1 GiB address space, 2 s CPU) info answers."""
    if case == 'oversized':
        img = oversized_table(tmp_path / 'big.qcow2', base_image)
    else:
        img = str(tmp_path / 'x.qcow2')
        shutil.copy(base_image, img)
        with open(img, 'r+b') as f:
            _, so = header_table(f)
            LARGE[case](f, so)
    r = limited(strata_img, ['info', '--output=json', img])
    assert r.rc in (0, 1), r
    assert r.rc == 0 or r.err.startswith('strata-img: Could not')


def test_inactive_l2_overlap_check(tmp_path, base_image, our_qemu_io,
                                   ref_qemu_io, ref_qemu_img):
    """overlap-check=all reads the snapshots' L1 tables: writes into an
    image with snapshots go on (COW of shared clusters); a snapshot L1
    table out of bounds makes allocating writes fail, as in the
    reference (the cache named in its message may differ)."""
    cmds = ['write 0 4k', 'write 1M 4k']
    for damage, want in ((None, 'wrote 4096/4096 bytes at offset 1048576'),
                         (0x12345, 'write failed: Invalid argument')):
        outs = []
        for prog in (our_qemu_io, ref_qemu_io):
            img = str(tmp_path / 'w.qcow2')
            shutil.copy(base_image, img)
            if damage:
                with open(img, 'r+b') as f:
                    _, so = header_table(f)
                    put(f, so, '>Q', damage)
            r = run([prog, '-c', f'open -o overlap-check=all {img}'] +
                    io_args(cmds))
            outs.append([ln for ln in r.out.splitlines()
                         if ln.startswith(('wrote', 'write failed'))])
            if not damage:
                assert run([ref_qemu_img, 'check', img]).rc == 0
        assert outs[0] == outs[1] and want in outs[0]


@pytest.mark.parametrize('op', [['-a', 's1'], ['-d', 's1'], ['-c', 's3']])
def test_snapshot_naming_active_l1(tmp_path, base_image, strata_img,
                                   ref_qemu_img, op):
    """A snapshot whose L1 table is the active one with another size (the
    reference asserts on delete): a clean exit, an image the reference
    can still open."""
    img = str(tmp_path / 'x.qcow2')
    shutil.copy(base_image, img)
    with open(img, 'r+b') as f:
        f.seek(40)
        l1 = struct.unpack('>Q', f.read(8))[0]
        _, so = header_table(f)
        put(f, so, '>Q', l1)
        put(f, so + 8, '>I', 5000)
    r = run([strata_img, 'snapshot', *op, img])
    assert r.rc in (0, 1), r
    assert run([ref_qemu_img, 'info', img]).rc == 0
