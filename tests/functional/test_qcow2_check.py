"""strata-img check on qcow2: images made by the reference (and by us),
damaged precisely, compared with the reference's check (stdout, stderr,
exit status; human and JSON).  The expected text comes from running the
reference at test time on the same damaged file; each tool gets its own
copy, and check must not modify it."""
import os
import shutil
import struct

import pytest

from conftest import run, sanitized, sparse_digest as digest

CS = 65536


def hdr(path):
    with open(path, 'rb') as f:
        b = f.read(104)
    f = struct.unpack('>IIQIIQIIQQIIQ', b[:72])
    return {'version': f[1], 'cluster_bits': f[4], 'size': f[5],
            'l1_size': f[7], 'l1_off': f[8], 'rt_off': f[9],
            'rt_clusters': f[10], 'nb_snapshots': f[11], 'sn_off': f[12]}


def rd(path, off, fmt):
    with open(path, 'rb') as f:
        f.seek(off)
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]


def wr(path, off, fmt, v):
    with open(path, 'r+b') as f:
        f.seek(off)
        f.write(struct.pack(fmt, v))




def compare_check(tmp_path, ref_img, our_img, src, *args):
    """Both tools check their own copy of @src; all outputs must match and
    neither copy may change."""
    results = []
    for tool, name in ((ref_img, 'ref'), (our_img, 'our')):
        for out in ([], ['--output=json']):
            d = tmp_path / name
            d.mkdir(exist_ok=True)
            img = d / 'img.qcow2'
            if img.exists():
                img.unlink()
            assert run(['cp', '--sparse=always', src, str(img)]).rc == 0
            before = digest(img)
            cwd = os.getcwd()
            os.chdir(d)
            try:
                r = run([tool, 'check', *args, *out, 'img.qcow2'])
            finally:
                os.chdir(cwd)
            assert digest(img) == before, f'{name} modified the image'
            results.append((name, out, r))
    ref = [r for n, _, r in results if n == 'ref']
    our = [r for n, _, r in results if n == 'our']
    for a, b in zip(ref, our):
        assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err), \
            f'reference:\n{a}\nours:\n{b}'
    return ref[0]


@pytest.fixture(scope='module')
def base(tmp_path_factory, ref_qemu_img, ref_qemu_io):
    """64 MiB image: 4 data clusters at 0, one at 10 MiB (clusters 5..9),
    L2 table at cluster 4, refcount block at cluster 2."""
    d = tmp_path_factory.mktemp('base')
    p = str(d / 'b.qcow2')
    run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', p, '64M'])
    r = run([ref_qemu_io, '-c', 'write 0 256k', '-c', 'write 10M 64k', p])
    assert r.rc == 0
    h = hdr(p)
    assert h['l1_off'] == 3 * CS and rd(p, h['rt_off'], '>Q') == 2 * CS
    return p


L1 = 3 * CS
RB = 2 * CS
RT = CS
L2 = 4 * CS

DAMAGE = {
    'clean': [],
    'leak': [(RB + 2 * 9, '>H', 2)],
    'refcount_too_large': [(RB + 2 * 5, '>H', 2)],
    'refcount_zero': [(RB + 2 * 5, '>H', 0)],
    'l2_reserved_bits': [(L2 + 8, '>Q', 0x8000000000060100)],
    'l2_unaligned': [(L2 + 8, '>Q', 0x8000000000060200)],
    'l2_past_eof': [(L2 + 8, '>Q', 0x8000000010000000)],
    'l2_at_eof': [(L2 + 8, '>Q', 0x80000000000a0000)],
    'l2_copied_cleared': [(L2 + 8, '>Q', 0x60000)],
    'l2_zero_alloc': [(L2 + 8, '>Q', 0x8000000000060001)],
    'l2_zero_alloc_unaligned': [(L2 + 8, '>Q', 0x8000000000060201)],
    'l2_zero_plain': [(L2 + 8, '>Q', 1)],
    'l2_compressed_copied': [(L2 + 8, '>Q', 0xc000000000060000)],
    'l2_duplicate': [(L2 + 8, '>Q', 0x8000000000050000)],
    'l1_copied_cleared': [(L1, '>Q', 0x40000)],
    'l1_unaligned': [(L1, '>Q', 0x8000000000040200)],
    'l1_reserved_bits': [(L1, '>Q', 0x8000000000040001)],
    'l1_past_eof': [(L1, '>Q', 0x8000000001000000)],
    'l1_points_to_header': [(L1, '>Q', 0x8000000000000000)],
    'reftable_reserved_bits': [(RT, '>Q', 0x20001)],
    'reftable_unaligned': [(RT, '>Q', 0x20200)],
    'reftable_past_eof': [(RT, '>Q', 0x1000000)],
    'reftable_second_entry': [(RT + 8, '>Q', 0x30000)],
    'refblock_is_data': [(RT, '>Q', 0x50000)],
    'l2_entry_is_l1_table': [(L2 + 8, '>Q', 0x8000000000000000 | L1)],
    'l2_entry_is_refblock': [(L2 + 8, '>Q', 0x8000000000000000 | RB)],
    'l1_entry_is_reftable': [(L1, '>Q', 0x8000000000000000 | RT)],
    'compressed_into_header': [(L2 + 8, '>Q', 0x4000000000000100)],
}


@pytest.mark.parametrize('case', sorted(DAMAGE))
def test_damaged(tmp_path, base, ref_qemu_img, our_qemu_img, case):
    p = str(tmp_path / 'd.qcow2')
    shutil.copy(base, p)
    for off, fmt, v in DAMAGE[case]:
        wr(p, off, fmt, v)
    compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)


def test_quiet(tmp_path, base, ref_qemu_img, our_qemu_img):
    p = str(tmp_path / 'd.qcow2')
    shutil.copy(base, p)
    wr(p, RB + 2 * 5, '>H', 2)
    r = compare_check(tmp_path, ref_qemu_img, our_qemu_img, p, '-q')
    assert r.rc == 2 and r.out == ''


def test_force_share_and_cache(tmp_path, base, ref_qemu_img, our_qemu_img):
    compare_check(tmp_path, ref_qemu_img, our_qemu_img, base, '-U',
                  '-T', 'none')
    compare_check(tmp_path, ref_qemu_img, our_qemu_img, base,
                  '--force-share', '-f', 'qcow2')


def test_corrupt_bit(tmp_path, base, ref_qemu_img, our_qemu_img):
    p = str(tmp_path / 'd.qcow2')
    shutil.copy(base, p)
    wr(p, 72, '>Q', 2)
    wr(p, RB + 2 * 5, '>H', 0)
    compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)


def made(tmp_path, ref_qemu_img, ref_qemu_io, opts, size, *cmds):
    p = str(tmp_path / 'm.qcow2')
    r = run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o', opts, p,
             size])
    assert r.rc == 0, r
    if cmds:
        argv = [ref_qemu_io]
        for c in cmds:
            argv += ['-c', c]
        r = run(argv + [p])
        assert r.rc == 0, r
    return p


IMAGES = {
    'compressed': ('compat=1.1', '16M', 'write -c 0 64k',
                   'write -c -P 7 128k 64k', 'write 1M 64k'),
    'zero_clusters': ('compat=1.1', '16M', 'write 0 256k',
                      'write -z 64k 64k', 'write -z 1M 64k'),
    'extended_l2': ('extended_l2=on', '16M', 'write 0 4k', 'write 100k 8k',
                    'write -z 2M 64k', 'write -c 4M 64k'),
    'refcount_bits_1': ('refcount_bits=1', '16M', 'write 0 256k',
                        'write 5M 64k'),
    'refcount_bits_64': ('refcount_bits=64', '16M', 'write 0 256k',
                         'write 5M 64k'),
    'v2': ('compat=0.10', '16M', 'write 0 256k', 'write -z 64k 64k',
           'write 3M 4k'),
    'small_clusters': ('cluster_size=512', '4M', 'write 0 64k',
                       'write 1M 4k', 'write 3M 512'),
    'big_clusters': ('cluster_size=2M', '64M', 'write 0 4k',
                     'write 10M 4k'),
}


@pytest.mark.parametrize('kind', sorted(IMAGES))
def test_made_by_reference(tmp_path, ref_qemu_img, ref_qemu_io,
                           our_qemu_img, kind):
    p = made(tmp_path, ref_qemu_img, ref_qemu_io, *IMAGES[kind])
    r = compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)
    assert r.rc == 0


def test_many_clusters(tmp_path, ref_qemu_img, ref_qemu_io, our_qemu_img):
    cmds = [f'write -P {i % 250 + 1} {i * 3 * 65536 + 4096} 4k'
            for i in range(400)]
    p = made(tmp_path, ref_qemu_img, ref_qemu_io, 'cluster_size=64k', '1G',
             *cmds)
    r = compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)
    assert r.rc == 0 and '400/16384' in r.out


def test_snapshot(tmp_path, ref_qemu_img, ref_qemu_io, our_qemu_img):
    p = made(tmp_path, ref_qemu_img, ref_qemu_io, 'compat=1.1', '16M',
             'write 0 256k')
    assert run([ref_qemu_img, 'snapshot', '-c', 'snap1', p]).rc == 0
    assert run([ref_qemu_io, '-c', 'write 64k 64k', p]).rc == 0
    compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)


def test_refcount_overflow(tmp_path, ref_qemu_img, ref_qemu_io,
                           our_qemu_img):
    """refcount_bits=1: a cluster referenced twice overflows."""
    p = made(tmp_path, ref_qemu_img, ref_qemu_io, 'refcount_bits=1', '16M',
             'write 0 128k')
    l2 = rd(p, hdr(p)['l1_off'], '>Q') & 0x00fffffffffffe00
    first = rd(p, l2, '>Q')
    wr(p, l2 + 8, '>Q', first)
    r = compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)
    assert r.rc == 2


def test_made_by_strata(tmp_path, strata_img, strata_io, ref_qemu_img,
                        our_qemu_img):
    p = str(tmp_path / 's.qcow2')
    assert run([strata_img, 'create', '-q', '-f', 'qcow2', p, '32M']).rc == 0
    r = run([strata_io, '-c', 'write 0 300k', '-c', 'write -c 8M 64k',
             '-c', 'write -z 16M 64k', p])
    assert r.rc == 0, r
    r = compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)
    assert r.rc == 0


def test_raw_not_supported(tmp_path, our_qemu_img):
    p = tmp_path / 'r.raw'
    p.write_bytes(b'\0' * 4096)
    r = run([our_qemu_img, 'check', '-f', 'raw', str(p)])
    assert r.rc == 63
    assert 'This image format does not support checks' in r.err


def test_bitmaps(tmp_path, ref_qemu_img, ref_qemu_io, our_qemu_img):
    """Persistent bitmaps: directory, tables and data clusters count."""
    p = made(tmp_path, ref_qemu_img, ref_qemu_io, 'compat=1.1', '64M',
             'write 0 1M')
    for args in (['b0'], ['-g', '512', 'b1']):
        assert run([ref_qemu_img, 'bitmap', '--add', p, *args]).rc == 0
    assert run([ref_qemu_io, '-c', 'write 0 1M', p]).rc == 0
    r = compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)
    assert r.rc == 0


def test_data_file(tmp_path, ref_qemu_img, ref_qemu_io, our_qemu_img):
    """External data file: data clusters are not counted (offset 0 with
    COPIED is allocated); compressed clusters are corruptions."""
    p = made(tmp_path, ref_qemu_img, ref_qemu_io,
             f'data_file={tmp_path}/df.raw', '16M', 'write 0 1M')
    r = compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)
    assert r.rc == 0
    l2 = rd(p, hdr(p)['l1_off'], '>Q') & 0x00fffffffffffe00
    wr(p, l2 + 8 * 20, '>Q', 0x4000000000010000)
    wr(p, l2 + 8 * 21, '>Q', 0x8000000000000000)
    wr(p, l2 + 8 * 22, '>Q', 0x0000000000050000)
    r = compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)
    assert r.rc == 2


def ext_l2_image(tmp_path, ref_qemu_img, ref_qemu_io):
    p = made(tmp_path, ref_qemu_img, ref_qemu_io, 'extended_l2=on', '64M',
             'write 0 4k', 'write 128k 64k', 'write -c 1M 64k',
             'write -z 2M 64k')
    return p, rd(p, hdr(p)['l1_off'], '>Q') & 0x00fffffffffffe00


EXT_DAMAGE = {
    # entry index: (L2 entry or None to keep, bitmap or None to keep)
    'alloc_and_zero': {0: (None, 0x0000000100000001)},
    'unallocated_with_bitmap': {5: (None, 1)},
    'compressed_with_bitmap': {16: (None, 1)},
    'unaligned_preallocated': {0: ('+0x200', 0)},
    'unaligned_data': {0: ('+0x200', None)},
    'zero_flag_ignored': {0: ('|1', None)},
    'reserved_bits': {0: ('|0x100', None)},
}


def ext_l2_damaged(tmp_path, ref_qemu_img, ref_qemu_io, case):
    """An extended-L2 image with the L2 entries of EXT_DAMAGE[@case]
    changed ('+N' adds to the entry, '|N' sets bits); returns its path."""
    p, l2 = ext_l2_image(tmp_path, ref_qemu_img, ref_qemu_io)
    for idx, (entry, bitmap) in EXT_DAMAGE[case].items():
        off = l2 + 16 * idx
        if entry is not None:
            e = rd(p, off, '>Q')
            e = e + int(entry[1:], 16) if entry[0] == '+' else \
                e | int(entry[1:], 16)
            wr(p, off, '>Q', e)
        if bitmap is not None:
            wr(p, off + 8, '>Q', bitmap)
    return p


@pytest.mark.parametrize('case', sorted(EXT_DAMAGE))
def test_extended_l2_damaged(tmp_path, ref_qemu_img, ref_qemu_io,
                             our_qemu_img, case):
    p = ext_l2_damaged(tmp_path, ref_qemu_img, ref_qemu_io, case)
    r = compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)
    assert r.rc == (0 if case == 'zero_flag_ignored' else 2)


@pytest.fixture(scope='module')
def snap_image(tmp_path_factory, ref_qemu_img, ref_qemu_io):
    d = tmp_path_factory.mktemp('snap')
    p = str(d / 's.qcow2')
    run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', p, '64M'])
    assert run([ref_qemu_io, '-c', 'write 0 256k', p]).rc == 0
    assert run([ref_qemu_img, 'snapshot', '-c', 's1', p]).rc == 0
    assert run([ref_qemu_io, '-c', 'write 64k 64k', p]).rc == 0
    assert run([ref_qemu_img, 'snapshot', '-c', 'second', p]).rc == 0
    return p


SNAP_DAMAGE = {
    'l1_unaligned': [(0, '>Q', '+0x200')],
    'l1_too_large': [(8, '>I', 0x1000000)],
    'l1_past_eof': [(0, '>Q', 0x10000000)],
    'l1_size_grown': [(8, '>I', 2)],
    'extra_data_too_large': [(36, '>I', 5000)],
}


def snapshot_damaged(tmp_path, snap_image, case):
    """A copy of @snap_image with its snapshot table damaged as @case
    says ('+N' adds to a field); returns its path."""
    p = str(tmp_path / 'd.qcow2')
    shutil.copy(snap_image, p)
    sn = hdr(p)['sn_off']
    if case == 'table_past_eof':
        wr(p, 64, '>Q', 0x10000000)
    elif case == 'one_more_entry':
        wr(p, 60, '>I', 3)
    for off, fmt, v in SNAP_DAMAGE.get(case, []):
        if isinstance(v, str):
            v = rd(p, sn + off, fmt) + int(v[1:], 16)
        wr(p, sn + off, fmt, v)
    return p


@pytest.mark.parametrize('case', sorted(SNAP_DAMAGE) +
                         ['table_past_eof', 'one_more_entry'])
def test_snapshot_damaged(tmp_path, snap_image, ref_qemu_img, our_qemu_img,
                          case):
    p = snapshot_damaged(tmp_path, snap_image, case)
    compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)


HEADER_DAMAGE = {
    'dirty_bit': [(72, '>Q', 1)],
    'corrupt_without_reftable': [(72, '>Q', 2), (56, '>I', 0)],
    'l1_size_grown': [(36, '>I', 100000)],
    'reftable_grown': [(56, '>I', 128)],
    'virtual_size_huge': [(24, '>Q', 1 << 50), (36, '>I', 32768)],
    'no_reftable': [(56, '>I', 0)],
    'snapshot_table_unaligned': [(64, '>Q', 0x200)],
    'snapshot_table_offset_overflows': [(64, '>Q', 0x7ffffffffffff000),
                                        (60, '>I', 1)],
    'too_many_snapshots': [(60, '>I', 70000)],
}


def header_damaged(tmp_path, base, case):
    """A copy of @base with its header fields damaged, or the file cut
    short, as @case says; returns its path."""
    p = str(tmp_path / 'd.qcow2')
    shutil.copy(base, p)
    for off, fmt, v in HEADER_DAMAGE.get(case, []):
        wr(p, off, fmt, v)
    if case == 'truncated':
        os.truncate(p, 0x48000)
    elif case == 'truncated_at_l2':
        os.truncate(p, L2)
    return p


@pytest.mark.parametrize('case', sorted(HEADER_DAMAGE) +
                         ['truncated', 'truncated_at_l2'])
def test_header_and_file_damaged(tmp_path, base, ref_qemu_img, our_qemu_img,
                                 case):
    p = header_damaged(tmp_path, base, case)
    compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)


def test_hostile_sparse_file(tmp_path, ref_qemu_img, ref_qemu_io,
                             our_qemu_img):
    """A sparse file of almost 2^31 512-byte clusters whose L2 entries
    point all over it: the reference allocates counts for the whole file
    (GiBs); ours follow the references.  Same output, run under a 1 GiB
    address-space limit."""
    import random
    import resource
    p = made(tmp_path, ref_qemu_img, ref_qemu_io, 'cluster_size=512', '1G',
             'write 0 512')
    h = hdr(p)
    l2 = rd(p, h['l1_off'], '>Q') & 0x00fffffffffffe00
    n = (1 << 31) - 1
    os.truncate(p, n * 512)
    rng = random.Random(1)
    for i in range(64):
        wr(p, l2 + 8 * i, '>Q', (1 << 63) | (rng.randrange(n - 10) * 512))
    for i in range(1, 200):
        wr(p, h['l1_off'] + 8 * i, '>Q', (1 << 63) | l2)

    def limit():
        # sanitizer builds reserve terabytes of shadow memory up front
        if not sanitized(our_qemu_img):
            resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    r = run([our_qemu_img, 'check', p], preexec_fn=limit)
    assert r.rc == 2
    assert '12800/2097152 = 0.61% allocated' in r.out
    assert r.err.count('Leaked cluster') + r.err.count('ERROR') > 12800


def test_metadata_preallocated_damaged(tmp_path, ref_qemu_img, ref_qemu_io,
                                       our_qemu_img):
    """preallocation=metadata: every cluster is referenced (a sparse
    file), 512 Ki L2 entries, more than check keeps from its first pass, so
    the OFLAG_COPIED pass reads the tables again."""
    p = made(tmp_path, ref_qemu_img, ref_qemu_io,
             'preallocation=metadata,cluster_size=4k', '2G')
    h = hdr(p)
    last = rd(p, h['l1_off'] + 8 * (h['l1_size'] - 1), '>Q')
    last &= 0x00fffffffffffe00
    e = rd(p, last + 8 * 100, '>Q')
    wr(p, last + 8 * 100, '>Q', e & ~(1 << 63))
    rt = rd(p, h['rt_off'], '>Q')
    wr(p, rt + 2 * 40, '>H', 2)
    r = compare_check(tmp_path, ref_qemu_img, our_qemu_img, p)
    assert r.rc == 2


def test_size_not_whole_sectors(tmp_path, ref_qemu_img, our_qemu_img):
    # a virtual size with a partial last sector (a hostile or foreign
    # header): the reference counts whole sectors, so a last cluster
    # holding only that part is not in total-clusters
    p = str(tmp_path / 'i.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'cluster_size=512', p, '64k']).rc == 0
    wr(p, 24, '>Q', 65536 - 512 + 100)
    for args in ([], ['--output=json']):
        a = run([ref_qemu_img, 'check', *args, p])
        b = run([our_qemu_img, 'check', *args, p])
        assert (b.rc, b.out, b.err) == (a.rc, a.out, a.err)
