"""Hostile qcow2 headers: crafted images give the reference's error text
and exit status (never a crash), on info and on qemu-io opens; headers we
rewrite keep unknown extensions and drop unknown autoclear bits."""
import json
import os
import resource
import shutil
import struct

import pytest

from conftest import run, sanitized


@pytest.fixture(scope='module')
def base(tmp_path_factory, ref_qemu_img, ref_qemu_io):
    d = tmp_path_factory.mktemp('hostile')
    img = str(d / 'base.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', img,
                '1M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 1 0 64k', img]).rc == 0
    return img


def patched(base, path, edits):
    shutil.copy(base, path)
    with open(path, 'r+b') as f:
        for off, fmt, val in edits:
            f.seek(off)
            f.write(struct.pack('>' + fmt, val))
    return str(path)


def feature_table(entries):
    return b''.join(struct.pack('>BB', t, b) + n.encode().ljust(46, b'\0')
                    for t, b, n in entries)


def with_exts(base, path, exts, backing=None, incompat=0, edits=()):
    """Replace the extensions after the 112-byte v3 header (then apply
    @edits as patched() does)."""
    shutil.copy(base, path)
    blob = b''
    for magic, data in exts:
        blob += struct.pack('>II', magic, len(data)) + data
        blob += b'\0' * (-len(data) % 8)
    blob += struct.pack('>II', 0, 0)
    with open(path, 'r+b') as f:
        f.seek(112)
        f.write(blob)
        if backing is not None:
            f.write(backing)
            f.seek(8)
            f.write(struct.pack('>QI', 112 + len(blob), len(backing)))
        if incompat:
            f.seek(72)
            f.write(struct.pack('>Q', incompat))
        for off, fmt, val in edits:
            f.seek(off)
            f.write(struct.pack('>' + fmt, val))
    return str(path)


HEADER_CASES = {
    'bad_magic': [(0, 'I', 0x514649fa)],
    'version4': [(4, 'I', 4)],
    'cluster_bits_8': [(20, 'I', 8)],
    'cluster_bits_22': [(20, 'I', 22)],
    'header_length_short': [(100, 'I', 100)],
    'header_length_huge': [(100, 'I', 70000)],
    'l1_size_huge': [(36, 'I', 0x10000000)],
    'l1_too_small': [(24, 'Q', 1 << 40)],
    'l1_unaligned': [(40, 'Q', 0x30001)],
    'l1_beyond_eof': [(40, 'Q', 1 << 40)],
    'reftable_unaligned': [(48, 'Q', 0x10008)],
    'reftable_beyond_eof': [(48, 'Q', 1 << 40)],
    'reftable_huge': [(56, 'I', 0x1000000)],
    'reftable_none': [(56, 'I', 0)],
    'reftable_over_header': [(48, 'Q', 0)],
    'l1_over_header': [(40, 'Q', 0)],
    'refcount_order_7': [(96, 'I', 7)],
    'unknown_incompat': [(72, 'Q', 1 << 20)],
    'corrupt_and_unknown': [(72, 'Q', 1 << 1 | 1 << 20 | 1 << 5)],
    'crypt_method_3': [(32, 'I', 3)],
    'snapshots_too_many': [(60, 'I', 70000)],
    'snapshots_unaligned': [(60, 'I', 1), (64, 'Q', 0x123)],
    'backing_offset_beyond_cluster': [(8, 'Q', 0x20000), (16, 'I', 10)],
    'backing_name_too_long': [(8, 'Q', 0x1000), (16, 'I', 2000)],
    'compression_type_unknown': [(104, 'B', 5)],
    'compression_bit_missing': [(104, 'B', 1)],
    'l2_entry_past_eof': [(0x30000, 'Q', (1 << 63) | (1 << 45))],
    'extension_too_large': [(0x74, 'I', 0x100000)],
    'size_too_big': [(24, 'Q', 1 << 62)],
    # qemu-iotests 080 with cluster_size=512: the L1 offset is checked
    # before the table's size against the disk size
    'l1_too_small_and_unaligned': [(24, 'Q', 1 << 40), (40, 'Q', 0x30001)],
    'size_too_big_and_l1_unaligned': [(24, 'Q', 1 << 62),
                                      (40, 'Q', 0x30001)],
    # qemu-iotests 080: an extension header crossing the extensions' end
    'extension_header_crosses_end': [(8, 'Q', 116), (112, 'I', 0x12345678),
                                     (116, 'I', 0x7fffffff)],
    # the reference's order: compression type, unknown features, corrupt,
    # subcluster size, refcount width, refcount/snapshot/L1 table fields,
    # the L1 table, the encryption method, and only then the extensions
    # and the backing name (fuzz corpus images)
    'compression_bit_and_unknown': [(72, 'Q', 1 << 3 | 1 << 20)],
    'extl2_subclusters_too_small': [(72, 'Q', 1 << 4), (20, 'I', 13)],
    'extl2_subclusters_and_refcount_order': [(72, 'Q', 1 << 4),
                                             (20, 'I', 12), (96, 'I', 9)],
    'reftable_none_and_extension_too_large': [(56, 'I', 0),
                                              (0x74, 'I', 0x100000)],
    'refcount_order_and_extension_too_large': [(96, 'I', 8),
                                               (0x74, 'I', 0x100000)],
    'l1_too_small_and_backing_name_too_long': [(24, 'Q', 1 << 40),
                                               (8, 'Q', 0x1000),
                                               (16, 'I', 2000)],
    'crypt_method_all_ones': [(32, 'I', 0xffffffff)],
    'crypt_method_and_extension_too_large': [(32, 'I', 7),
                                             (0x74, 'I', 0x100000)],
}


def same_outcome(ref, ours, tool):
    assert ours.rc == ref.rc, (ref, ours)
    assert ours.err.replace('strata-' + tool, 'qemu-' + tool) == ref.err
    return True


@pytest.mark.parametrize('name', sorted(HEADER_CASES))
def test_header_like_reference(tmp_path, base, name, strata_img, strata_io,
                               ref_qemu_img, ref_qemu_io):
    img = patched(base, tmp_path / 'h.qcow2', HEADER_CASES[name])
    same_outcome(run([ref_qemu_img, 'info', img]),
                 run([strata_img, 'info', img]), 'img')
    r = run([ref_qemu_io, '-c', 'read 0 64k', img])
    s = run([strata_io, '-c', 'read 0 64k', img])
    same_outcome(r, s, 'io')
    assert ('read 65536/65536' in s.out) == ('read 65536/65536' in r.out)


EXT_CASES = {
    'backing_format_too_long': ([(0xe2792aca, b'x' * 20)], None, 0),
    'feature_names': ([(0x6803f857, feature_table([(0, 40, 'shiny thing'),
                                                   (0, 41, 'other')]))],
                      None, (1 << 40) | (1 << 41) | (1 << 50)),
    # qemu-iotests 036: a short (14-byte) table still names its feature
    'feature_names_short': ([(0x6803f857, b'\x00\x3fTest feature')], None,
                            (1 << 63) | (1 << 62)),
    'feature_names_stop_at_empty': ([(0x6803f857, feature_table(
        [(0, 40, 'one'), (0, 41, ''), (0, 42, 'three')]))], None,
        (1 << 40) | (1 << 41) | (1 << 42)),
    'crypto_ext_without_luks': ([(0x0537be77, b'\0' * 16)], None, 0),
    'backing_name_1100': ([], b'b' * 1100, 0),
    # unknown features are named from the table only when it comes
    # before the first extension the reference refuses; a crypto
    # extension is refused then whatever the encryption method
    'unknown_feature_table_after_crypto': (
        [(0x0537be77, b'\0' * 16), (0x6803f857, feature_table(
            [(0, 40, 'shiny thing')]))], None, 1 << 40, [(32, 'I', 2)]),
    'unknown_feature_table_before_bad_crypto': (
        [(0x6803f857, feature_table([(0, 40, 'shiny thing')])),
         (0x0537be77, b'\0' * 384)], None, 1 << 40),
    'unknown_feature_and_stale_bitmaps': (
        [(0x23852875, b'\0' * 24)], None, 1 << 40),
    'crypto_ext_size_with_luks': ([(0x0537be77, b'\0' * 8)], None, 0,
                                  [(32, 'I', 2)]),
    'crypto_ext_offset_unaligned': (
        [(0x0537be77, struct.pack('>QQ', 0x1234, 4096))], None, 0,
        [(32, 'I', 2)]),
    # bitmaps extension fields in the reference's order
    'bitmaps_reserved_and_count': (
        [(0x23852875, struct.pack('>IIQQ', 0, 1, 0, 0))], None, 0,
        [(88, 'Q', 1)]),
    'bitmaps_count_and_offset': (
        [(0x23852875, struct.pack('>IIQQ', 70000, 0, 1 << 40, 0x123))],
        None, 0, [(88, 'Q', 1)]),
    'bitmaps_offset_and_dir_size': (
        [(0x23852875, struct.pack('>IIQQ', 1, 0, 1 << 40, 0x123))],
        None, 0, [(88, 'Q', 1)]),
    # the bitmap directory is loaded after the backing name and snapshots
    'bitmaps_dir_size_zero_and_backing_name': (
        [(0x23852875, struct.pack('>IIQQ', 1, 0, 0, 0x30000))], b'b' * 1100,
        0, [(88, 'Q', 1)]),
    'bitmaps_dir_size_zero': (
        [(0x23852875, struct.pack('>IIQQ', 1, 0, 0, 0x30000))], None, 0,
        [(88, 'Q', 1)]),
    'stale_bitmaps_and_backing_name': (
        [(0x23852875, b'\0' * 24)], b'b' * 1100, 0),
}


@pytest.mark.parametrize('name', sorted(EXT_CASES))
def test_extensions_like_reference(tmp_path, base, name, strata_img,
                                   ref_qemu_img):
    exts, backing, incompat, *edits = EXT_CASES[name]
    img = with_exts(base, tmp_path / 'e.qcow2', exts, backing, incompat,
                    *edits)
    r = run([ref_qemu_img, 'info', img])
    s = run([strata_img, 'info', img])
    same_outcome(r, s, 'img')
    assert s.rc == 1


def test_corrupt_opens_read_only_only(tmp_path, base, strata_io,
                                      ref_qemu_io):
    img = patched(base, tmp_path / 'c.qcow2', [(72, 'Q', 2)])
    same_outcome(run([ref_qemu_io, '-c', 'read 0 4k', img]),
                 run([strata_io, '-c', 'read 0 4k', img]), 'io')
    r = run([strata_io, '-r', '-c', 'read -P 1 0 4k', img])
    assert r.rc == 0 and 'failed' not in r.out, r


def test_unknown_extension_kept_autoclear_cleared(tmp_path, base, strata_io,
                                                  ref_qemu_img):
    img = with_exts(base, tmp_path / 'u.qcow2',
                    [(0x12345678, b'keep me!')])
    with open(img, 'r+b') as f:
        f.seek(88)
        f.write(struct.pack('>Q', 1 << 7))      # unknown autoclear bit
    assert run([strata_io, '-c', 'write -P 9 64k 4k', img]).rc == 0
    data = open(img, 'rb').read(65536)
    assert struct.unpack('>Q', data[88:96])[0] == 0
    assert b'keep me!' in data
    assert struct.pack('>I', 0x12345678) in data
    assert run([ref_qemu_img, 'check', img]).rc == 0


def test_overlapping_l2_is_refused_and_marks_corrupt(tmp_path, base,
                                                     strata_io, ref_qemu_img,
                                                     ref_qemu_io):
    """An L2 entry pointing at the refcount table: a write there would
    destroy metadata; the reference's overlap check refuses it."""
    img = patched(base, tmp_path / 'o.qcow2',
                  [(0x40000 + 8, 'Q', (1 << 63) | 0x10000)])
    ref = patched(base, tmp_path / 'r.qcow2',
                  [(0x40000 + 8, 'Q', (1 << 63) | 0x10000)])
    r = run([strata_io, '-c', 'write -P 7 64k 4k', img])
    rr = run([ref_qemu_io, '-c', 'write -P 7 64k 4k', ref])
    assert (r.rc, r.out, r.err) == (rr.rc, rr.out, rr.err)
    assert 'Preventing invalid write on metadata (overlaps with refcount ' \
           'table)' in r.err, r
    assert run([ref_qemu_img, 'info', '--output=json', img]).out.count(
        '"corrupt": true') == 1


def test_data_file_not_opened_by_info(tmp_path, strata_img, ref_qemu_img):
    """CVE-2024-4467: info must not open files an untrusted image names."""
    img = str(tmp_path / 'd.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'data_file=/nonexistent/secret', img, '1M']).rc == 1 or True
    raw = str(tmp_path / 'data.raw')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                f'data_file={raw}', img, '1M']).rc == 0
    import os
    os.unlink(raw)
    r = run([ref_qemu_img, 'info', img])
    s = run([strata_img, 'info', img])
    assert r.rc == s.rc == 0
    assert 'data file: ' + raw in s.out


def test_snapshot_table_protected(tmp_path, strata_io, ref_qemu_img,
                                  ref_qemu_io):
    """A data cluster entry pointing at the snapshot table is refused like
    the reference refuses it, and snapshots survive our writes."""
    imgs = []
    for name in ('r.qcow2', 's.qcow2'):
        p = str(tmp_path / name)
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', p,
                    '4M']).rc == 0
        assert run([ref_qemu_io, '-c', 'write -P 1 0 2M', p]).rc == 0
        assert run([ref_qemu_img, 'snapshot', '-c', 's1', p]).rc == 0
        imgs.append(p)
    # snapshots survive copy-on-write of shared clusters and L2 tables
    ops = ['write -P 3 100k 5k', 'write -z 512k 64k', 'discard 1M 128k',
           'write -P 4 3M 4k']
    r = run([strata_io, *sum((['-c', o] for o in ops), []), imgs[1]])
    assert r.rc == 0, r
    assert run([ref_qemu_img, 'check', imgs[1]]).rc == 0
    assert run([ref_qemu_img, 'snapshot', '-a', 's1', imgs[1]]).rc == 0
    r = run([ref_qemu_io, '-c', 'read -P 1 0 2M', '-c', 'read -P 0 2M 2M',
             imgs[1]])
    assert r.rc == 0 and 'failed' not in r.out, r
    # an L2 entry aimed at the snapshot table
    with open(imgs[0], 'rb') as f:
        hdr = f.read(72)
    so = struct.unpack('>Q', hdr[64:72])[0]
    l1 = struct.unpack('>Q', hdr[40:48])[0]
    for p in (imgs[0], str(tmp_path / 'c.qcow2')):
        if p != imgs[0]:
            shutil.copy(imgs[0], p)
        with open(p, 'r+b') as f:
            f.seek(l1)
            l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
            f.seek(l2 + 8 * 40)
            f.write(struct.pack('>Q', (1 << 63) | so))
    r = run([ref_qemu_io, '-c', 'write -P 3 2560k 4k', imgs[0]])
    s = run([strata_io, '-c', 'write -P 3 2560k 4k',
             str(tmp_path / 'c.qcow2')])
    assert (s.rc, s.out, s.err) == (r.rc, r.out, r.err)
    assert 'overlaps with snapshot table' in s.err


def test_overlap_with_far_l2_table_is_refused(tmp_path, strata_io,
                                              ref_qemu_img, ref_qemu_io):
    """The overlap check sees L2 tables of every L1 entry, also one far
    from the written area (the scan stops only past the last used one)."""
    src = str(tmp_path / 'src.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', src,
                '8G']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 1 0 128k',
                '-c', 'write -P 2 6G 64k', src]).rc == 0
    with open(src, 'rb') as f:
        hdr = f.read(48)
        l1_off = struct.unpack('>Q', hdr[40:48])[0]
        f.seek(l1_off)
        l1 = struct.unpack('>16Q', f.read(128))
    far_l2 = l1[12] & 0x00fffffffffffe00
    l2_0 = l1[0] & 0x00fffffffffffe00
    edit = [(l2_0 + 8, 'Q', (1 << 63) | far_l2)]
    img = patched(src, tmp_path / 'o.qcow2', edit)
    ref = patched(src, tmp_path / 'r.qcow2', edit)
    r = run([strata_io, '-c', 'write -P 7 64k 4k', img])
    rr = run([ref_qemu_io, '-c', 'write -P 7 64k 4k', ref])
    assert (r.rc, r.out, r.err) == (rr.rc, rr.out, rr.err)
    assert 'overlaps with active L2 table' in r.err, r


def test_invalid_subcluster_bits_on_read(tmp_path, strata_io, ref_qemu_img,
                                         ref_qemu_io):
    # qemu-iotests 271: both the zero and the allocated bit of a
    # subcluster set is corruption, reported with the reference's text.
    errs = []
    for tool in (ref_qemu_io, strata_io):
        img = str(tmp_path / 'x.qcow2')
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    'extended_l2=on', img, '1M']).rc == 0
        assert run([ref_qemu_io, '-c', 'write 0 64k', img]).rc == 0
        with open(img, 'r+b') as f:
            f.seek(40)
            l1 = struct.unpack('>Q', f.read(8))[0]
            f.seek(l1)
            l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
            f.seek(l2 + 8)
            f.write(struct.pack('>Q', 0x00000002ffffffff))
        r = run([tool, '-c', 'read 0 64k', img])
        errs.append((r.rc, r.out.strip(), r.err))
    assert errs[1] == errs[0]


@pytest.mark.parametrize('size', [140, 1000, (1 << 20) + 300])
def test_size_not_sector_multiple(tmp_path, base, size, strata_img,
                                  ref_qemu_img):
    """A header size that is not a multiple of 512 (hand-made): the
    reference cuts it down to whole sectors; info says the same."""
    img = patched(base, tmp_path / 's.qcow2', [(24, 'Q', size)])
    ref = run([ref_qemu_img, 'info', '--output=json', img])
    ours = run([strata_img, 'info', '--output=json', img])
    assert ref.rc == 0 and ours.rc == 0
    assert json.loads(ours.out)['virtual-size'] == size // 512 * 512
    assert json.loads(ours.out) == json.loads(ref.out)


def test_many_snapshots_info_memory(tmp_path, base, strata_img,
                                    ref_qemu_img):
    """A header claiming 65,535 snapshots whose entries lie past the end
    of the file (read as zeroes, as the reference reads them): info lists
    them all as the reference does, in bounded memory (each snapshot's
    dictionary of the output used to take 4 KiB: 350 MB here)."""
    img = patched(base, tmp_path / 'n.qcow2',
                  [(60, 'I', 65535), (64, 'Q', 0x100000)])
    for fmt in ('human', 'json'):
        ref = run([ref_qemu_img, 'info', '--output=' + fmt, img])
        ours = run([strata_img, 'info', '--output=' + fmt, img])
        assert ours.rc == ref.rc == 0
        assert ours.out == ref.out
    if not sanitized(strata_img):
        # a child's peak RSS would count the pytest process it was forked
        # from: its address space is limited instead, to 256 MiB (about
        # 140 needed; 4 KiB per output dictionary took over 350)
        def limit():
            resource.setrlimit(resource.RLIMIT_AS, (256 << 20, 256 << 20))
        r = run([strata_img, 'info', '--output=json', img], preexec_fn=limit)
        assert r.rc == 0, r.err
