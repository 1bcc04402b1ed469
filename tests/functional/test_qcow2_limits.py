"""Hostile qcow2 images under the limits OpenStack puts on `qemu-img info`
(prlimit --as=1GiB --cpu=2): info, check, map and convert must end with
an error or the reference's answer, by an exit status and never a signal,
and never write to the image.  The reference, run under the same limits,
is the oracle wherever it finishes."""
import os
import shutil
import struct

import pytest

from conftest import run, sparse_digest as digest

CS = 65536
RT, RB, L1, L2, DATA = 0x10000, 0x20000, 0x30000, 0x40000, 0x50000
COPIED = 1 << 63
COMPRESSED = 1 << 62
TB = 1 << 40


def sanitized(program):
    with open(os.path.realpath(program), 'rb') as f:
        return b'__asan_init' in f.read()


def limited(program, args):
    """One command under OpenStack's limits (1 GiB of address space, 2 s
    of CPU).  Sanitizer builds reserve terabytes of shadow memory up front
    and run several times slower, so they get no address-space limit and
    5x the CPU: the normal build's run of the same test holds the real
    limits."""
    if sanitized(program):
        lim = ['prlimit', '--cpu=10']
    else:
        lim = ['prlimit', '--cpu=2', '--as=1073741824']
    return run(lim + [program] + args, timeout=60)




@pytest.fixture(scope='module')
def base(tmp_path_factory, ref_qemu_img, ref_qemu_io):
    """1 MiB, 64 KiB clusters, the first cluster written: the header, the
    refcount table, a refcount block, L1, one L2 and a data cluster at the
    fixed offsets above."""
    d = tmp_path_factory.mktemp('limits')
    img = str(d / 'base.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', img,
                '1M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 1 0 64k', img]).rc == 0
    with open(img, 'rb') as f:
        h = f.read(72)
    assert struct.unpack('>QQ', h[40:56]) == (L1, RT)
    return img


def snap_entries(n, extra=0, name=b''):
    """n snapshot table entries, each naming an L1 table at L1."""
    one = struct.pack('>QIHHIIQIIQ', L1, 1, 0, len(name), 0, 0, 0, 0,
                      extra, 0)
    pad = b'\0' * extra + name
    e = one + pad
    return (e + b'\0' * (-len(e) % 8)) * n


def bitmap_ext(nb, dir_size, dir_off):
    return struct.pack('>IIIIQQ', 0x23852875, 24, nb, 0, dir_size, dir_off)


# name: (header and table edits [(offset, format, value)], bytes written
# at an offset [(offset, bytes)], file size to truncate or extend to)
CASES = {
    'l1_size_max': ([(36, 'I', 0xffffffff)], [], None),
    'l1_huge_sparse': ([(24, 'Q', 1 << 52), (36, 'I', 1 << 22)], [],
                       L1 + (1 << 25)),
    'l1_beyond_eof': ([(40, 'Q', TB)], [], None),
    'l1_on_reftable': ([(40, 'Q', RT)], [], None),
    'l1_on_header': ([(40, 'Q', 0)], [], None),
    'reftable_max': ([(56, 'I', 0xffffffff)], [], None),
    'reftable_huge_sparse': ([(56, 'I', 256)], [], RT + 256 * CS),
    'reftable_beyond_eof': ([(48, 'Q', TB)], [], None),
    'reftable_on_l1': ([(48, 'Q', L1)], [], None),
    'refblock_beyond_eof': ([(RT, 'Q', TB)], [], None),
    'refblock_on_header': ([(RT, 'Q', 0)], [], None),
    'cluster_bits_0': ([(20, 'I', 0)], [], None),
    'cluster_bits_max': ([(20, 'I', 0xffffffff)], [], None),
    'cluster_bits_31': ([(20, 'I', 31)], [], None),
    'backing_name_1023': ([(8, 'Q', 0x200), (16, 'I', 1023)],
                          [(0x200, b'b' * 1023)], None),
    'backing_name_1024': ([(8, 'Q', 0x200), (16, 'I', 1024)], [], None),
    'backing_name_max': ([(8, 'Q', 0x200), (16, 'I', 0xffffffff)], [],
                         None),
    'l2_past_eof': ([(L2, 'Q', COPIED | TB), (L2 + 8, 'Q', COPIED | (1 << 55))],
                    [], None),
    'l2_into_metadata': ([(L2, 'Q', COPIED | RT), (L2 + 8, 'Q', COPIED | L1),
                          (L2 + 16, 'Q', COPIED | 0)], [], None),
    'l1_entry_past_eof': ([(L1, 'Q', COPIED | TB)], [], None),
    'l1_entry_on_header': ([(L1, 'Q', COPIED | 0)], [], None),
    'compressed_past_eof': ([(L2, 'Q', COMPRESSED | (TB - 512)),
                             (L2 + 8, 'Q', COMPRESSED | (0xff << 54)
                              | ((1 << 54) - 1))],
                            [], None),
    'compressed_max_sectors': ([(L2, 'Q', COMPRESSED | (0xff << 54) | DATA)],
                               [], None),
    'snapshots_max_beyond_eof': ([(60, 'I', 65536), (64, 'Q', TB)], [],
                                 None),
    'snapshots_max_sparse': ([(60, 'I', 65536), (64, 'Q', 0x60000)],
                             [(0x60000, snap_entries(16, extra=1000))],
                             0x60000 + (64 << 20)),
    'snapshots_too_many': ([(60, 'I', 0xffffffff), (64, 'Q', 0x60000)], [],
                           None),
    'snapshot_l1_huge': ([(60, 'I', 1), (64, 'Q', 0x60000)],
                         [(0x60000, struct.pack('>QI', L1, 0x7fffffff))],
                         0x70000),
    'bitmaps_huge_dir': ([(88, 'Q', 1), (112, 'Q', 0)],
                         [(112, bitmap_ext(65535, 64 << 20, 0x60000)
                           + b'\0' * 8)], 0x60000 + (64 << 20)),
    'bitmaps_dir_beyond_eof': ([(88, 'Q', 1)],
                               [(112, bitmap_ext(1, 1 << 20, TB)
                                 + b'\0' * 8)], None),
    'bitmaps_too_many': ([(88, 'Q', 1)],
                         [(112, bitmap_ext(0xffffffff, 0xffffffffffff,
                                           0x60000) + b'\0' * 8)], None),
    'sparse_4tb': ([(24, 'Q', 4 * TB), (36, 'I', 8192),
                    (L1 + 8 * 8191, 'Q', COPIED | (4 * TB - CS))],
                   [], 4 * TB),
}

COMMANDS = {
    'info': ['info'],
    'info_json': ['info', '--output=json'],
    'check': ['check'],
    'map': ['map', '--output=json'],
    'convert': ['convert', '-O', 'qcow2'],
}


def hostile(base, path, case):
    edits, blobs, size = CASES[case]
    shutil.copy(base, path)
    with open(path, 'r+b') as f:
        for off, blob in blobs:
            f.seek(off)
            f.write(blob)
        for off, fmt, val in edits:
            f.seek(off)
            f.write(struct.pack('>' + fmt, val))
    if size is not None:
        os.truncate(path, size)
    return str(path)


def tool_args(cmd, img, out):
    args = COMMANDS[cmd] + [img]
    return args + [out] if cmd == 'convert' else args


# Cases where we knowingly answer otherwise than the reference (still
# within limits and without writing): none at present.
REFERENCE_GAPS = set()


def same_text(ours, ref, cmd):
    ours = ours.replace('strata-img', 'qemu-img')
    if cmd == 'convert':
        # the reference's parallel requests may each report their failure
        # before it stops; ours stops at the first, one of those
        return set(ours.splitlines()) <= set(ref.splitlines()) and ours
    return ours == ref


@pytest.mark.parametrize('cmd', sorted(COMMANDS))
@pytest.mark.parametrize('case', sorted(CASES))
def test_hostile_within_limits(tmp_path, base, case, cmd, strata_img,
                               ref_qemu_img):
    img = hostile(base, tmp_path / 'h.qcow2', case)
    ref_img = hostile(base, tmp_path / 'r.qcow2', case)
    before = digest(img)
    s = limited(strata_img, tool_args(cmd, img, str(tmp_path / 's.out')))
    assert s.rc >= 0, f'killed by signal {-s.rc}: {s}'
    assert digest(img) == before, 'the source image was written'
    r = limited(ref_qemu_img, tool_args(cmd, ref_img,
                                        str(tmp_path / 'r.out')))
    if r.rc < 0 or case in REFERENCE_GAPS:
        return          # the reference itself went over the limits
    assert s.rc == r.rc, (s, r)
    if r.rc == 1 and cmd != 'check':
        assert same_text(s.err.replace(img, ref_img), r.err, cmd), (s, r)


# Bitmap directory entries the reference refuses at open (or accepts):
# field edits of the one entry (table offset, table size, flags, type,
# granularity bits, name size, extra data size).
ENTRY_FIELDS = {'toff': (0, 'Q'), 'tsize': (8, 'I'), 'flags': (12, 'I'),
                'type': (16, 'B'), 'gran': (17, 'B'), 'name': (18, 'H'),
                'extra': (20, 'I')}
ENTRY_CASES = {
    'as_made': {}, 'table_size_0': {'tsize': 0},
    'table_size_huge': {'tsize': 0x8000001},
    'table_covers_too_much': {'tsize': 0x20001}, 'table_offset_0': {'toff': 0},
    'table_unaligned': {'toff': 0x6001}, 'table_past_eof': {'toff': TB},
    'reserved_flag': {'flags': 8}, 'extra_compatible_flag': {'flags': 4},
    'in_use': {'flags': 1}, 'type_0': {'type': 0}, 'type_2': {'type': 2},
    'granularity_8': {'gran': 8}, 'granularity_32': {'gran': 32},
    'granularity_31': {'gran': 31}, 'name_empty': {'name': 0},
    'name_1024': {'name': 1024}, 'extra_data': {'extra': 8},
}


@pytest.fixture(scope='module')
def bitmap_base(tmp_path_factory, ref_qemu_img):
    d = tmp_path_factory.mktemp('bm')
    img = str(d / 'bm.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'cluster_size=4k', img, '1M']).rc == 0
    assert run([ref_qemu_img, 'bitmap', '--add', img, 'b0']).rc == 0
    with open(img, 'rb') as f:
        ext = f.read(112 + 32)[112:]
    assert struct.unpack('>II', ext[:8]) == (0x23852875, 24)
    return img, struct.unpack('>Q', ext[24:32])[0]


@pytest.mark.parametrize('case', sorted(ENTRY_CASES))
def test_bitmap_entry_like_reference(tmp_path, bitmap_base, case, strata_img,
                                     ref_qemu_img):
    src, dir_off = bitmap_base
    img = str(tmp_path / 'b.qcow2')
    shutil.copy(src, img)
    with open(img, 'r+b') as f:
        for field, val in ENTRY_CASES[case].items():
            off, fmt = ENTRY_FIELDS[field]
            f.seek(dir_off + off)
            f.write(struct.pack('>' + fmt, val))
    before = digest(img)
    s = limited(strata_img, ['info', img])
    r = limited(ref_qemu_img, ['info', img])
    assert digest(img) == before
    assert (s.rc, same_text(s.err, r.err, 'info')) == (r.rc, True), (s, r)
