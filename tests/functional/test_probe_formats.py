"""Probing knows every format the reference knows.  A format Strata
cannot open yet is refused by name, whether probed or named with -f or
driver=, and its image is never read or written as raw."""
import hashlib
import json
import os
import re
import struct

import pytest

from conftest import run

KNOWN = ['bochs', 'cloop', 'dmg', 'luks', 'parallels', 'qcow', 'qed', 'vdi',
         'vhdx', 'vmdk', 'vpc']
# Formats with a driver: probed, opened (or refused by their own driver's
# checks of the header), never guessed raw.
OPENED = ['qcow2']
MSG = "The '{}' format is not supported by this build yet"
REFUSED = re.compile(r"The '([a-z0-9]+)' format is not supported by this "
                     r"build yet$", re.M)
SECRET = ['--object', 'secret,id=s0,data=x']

# Images the reference writes: file name, format, create options.
REF_IMAGES = [
    ('a.qcow', 'qcow', []),
    ('a.qed', 'qed', []),
    ('sparse.vmdk', 'vmdk', []),
    ('stream.vmdk', 'vmdk', ['-o', 'subformat=streamOptimized']),
    ('flat.vmdk', 'vmdk', ['-o', 'subformat=monolithicFlat']),
    ('split.vmdk', 'vmdk', ['-o', 'subformat=twoGbMaxExtentSparse']),
    ('split-s001.vmdk', 'vmdk', None),     # an extent of split.vmdk
    ('dynamic.vhdx', 'vhdx', []),
    ('fixed.vhdx', 'vhdx', ['-o', 'subformat=fixed']),
    ('a.vdi', 'vdi', []),
    ('dynamic.vpc', 'vpc', []),
    ('a.parallels', 'parallels', []),
    ('a.luks', 'luks', SECRET + ['-o', 'key-secret=s0']),
]


def bochs_image():
    """A growing redolog, v2 header, one catalog entry (unallocated)."""
    h = bytearray(512)
    h[0:23] = b'Bochs Virtual HD Image\0'
    h[32:40] = b'Redolog\0'
    h[48:56] = b'Growing\0'
    struct.pack_into('<IIIII', h, 64, 0x00020000, 512, 1, 512, 4096)
    struct.pack_into('<Q', h, 88, 4096)
    return bytes(h) + b'\xff' * 4


CLOOP_MAGIC = (b'#!/bin/sh\n#V2.0 Format\n'
               b'modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n')


def cloop_image():
    """V2.0 preamble; 512-byte blocks, one block, an offset table."""
    h = CLOOP_MAGIC.ljust(128, b'\0') + struct.pack('>II', 512, 1)
    return h + struct.pack('>QQ', 152, 152)


def koly_trailer():
    t = bytearray(512)
    t[0:4] = b'koly'
    struct.pack_into('>II', t, 4, 4, 512)
    return bytes(t)


VMDK_DESC = (b'# Disk DescriptorFile\r\n   \r\n  \n# comment\n'
             b'version=3\r\nCID=fffffffe\r\n')

# Images made by hand from the public formats: name, format, bytes.
CRAFTED = [
    ('a.bochs', 'bochs', bochs_image()),
    ('a.cloop', 'cloop', cloop_image()),
    ('zeros.dmg', 'dmg', bytes(65536)),
    ('koly.dmg', 'dmg', bytes(4096) + koly_trailer()),
    ('cowd.vmdk', 'vmdk', b'COWD' + bytes(2044)),
    ('crlf-desc', 'vmdk', VMDK_DESC),
    ('luks-named.dmg', 'luks', None),      # a.luks's bytes, a dmg's name
    ('short.vdi', 'vdi', None),            # a.vdi's first 100 bytes
]

ALL = [(n, f) for n, f, _ in REF_IMAGES] + [(n, f) for n, f, _ in CRAFTED]


def digest(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


@pytest.fixture(scope='module')
def images(tmp_path_factory, ref_qemu_img):
    d = tmp_path_factory.mktemp('probe')
    for name, fmt, opts in REF_IMAGES:
        if opts is not None:
            r = run([ref_qemu_img, 'create', '-q', '-f', fmt] + opts +
                    [str(d / name), '1M'])
            assert r.rc == 0, r
    for name, _, data in CRAFTED:
        if data is not None:
            (d / name).write_bytes(data)
    (d / 'luks-named.dmg').write_bytes((d / 'a.luks').read_bytes())
    (d / 'short.vdi').write_bytes((d / 'a.vdi').read_bytes()[:100])
    (d / 'plain.raw').write_bytes(os.urandom(65536))
    return d


def ref_format(ref_qemu_img, path):
    """The reference's probed format, or None when that format's driver
    refused the image (then it did not guess raw either)."""
    r = run([ref_qemu_img, 'info', '--output=json'] + SECRET + [path])
    return json.loads(r.out)['format'] if r.rc == 0 else None


def our_format(strata_img, path):
    """Our probed format: opened, or refused by name; None when a driver
    we have refused the image's header (as the reference's did)."""
    r = run([strata_img, 'info', '--output=json', path])
    if r.rc == 0:
        return json.loads(r.out)['format']
    m = REFUSED.search(r.err)
    assert m or 'raw' not in r.err, r
    return m.group(1) if m else None


@pytest.mark.parametrize('name,fmt', ALL, ids=[n for n, _ in ALL])
def test_reference_probes_the_same(images, ref_qemu_img, strata_img, name,
                                   fmt):
    """The test images are what they claim for the reference (opened as
    that format, or refused by its driver), and we probe them alike."""
    path = str(images / name)
    assert ref_format(ref_qemu_img, path) in (fmt, None)
    assert our_format(strata_img, path) == fmt


def check_refused(res, path, fmt, rc=1):
    assert res.rc == rc, res
    assert res.out == '', res
    assert MSG.format(fmt) in res.err, res
    if path:
        assert f"Could not open '{path}': {MSG.format(fmt)}" in res.err, res


@pytest.mark.parametrize('name,fmt', ALL, ids=[n for n, _ in ALL])
def test_probed_format_refused(images, strata_img, strata_io, name, fmt):
    path = str(images / name)
    before = digest(path)
    out = str(images / f'{name}.out')
    r = run([strata_img, 'info', path])
    assert r.err == f"strata-img: Could not open '{path}': {MSG.format(fmt)}\n"
    assert (r.rc, r.out) == (1, '')
    check_refused(run([strata_img, 'info', '--output=json', path]), path, fmt)
    check_refused(run([strata_img, 'convert', '-O', 'raw', path, out]), path,
                  fmt)
    assert not os.path.exists(out)
    check_refused(run([strata_img, 'map', path]), path, fmt)
    check_refused(run([strata_img, 'check', path]), path, fmt)
    check_refused(run([strata_img, 'compare', path,
                       str(images / 'plain.raw')]), path, fmt, rc=2)
    for cmd in ('write 0 512', 'read 0 512'):
        r = run([strata_io, '-c', cmd, path])
        assert r.err == (f'strata-io: can\'t open device {path}: '
                         f'{MSG.format(fmt)}\n'), r
        assert (r.rc, r.out) == (1, '')
    assert digest(path) == before


@pytest.mark.parametrize('fmt', KNOWN)
def test_named_format_refused(images, strata_img, strata_io, fmt):
    """-f NAME, driver=NAME and json: all refuse, even on a raw image."""
    path = str(images / 'plain.raw')
    before = digest(path)
    check_refused(run([strata_img, 'info', '-f', fmt, path]), path, fmt)
    check_refused(run([strata_img, 'info', '--output=json', '-f', fmt, path]),
                  path, fmt)
    check_refused(run([strata_io, '-f', fmt, '-c', 'write 0 512', path]),
                  None, fmt)
    check_refused(run([strata_io, '-c', 'write 0 512', '--image-opts',
                       f'driver={fmt},file.filename={path}']), None, fmt)
    spec = json.dumps({'driver': fmt, 'file': {'driver': 'file',
                                                'filename': path}})
    check_refused(run([strata_img, 'info', 'json:' + spec]), None, fmt)
    assert digest(path) == before


@pytest.mark.parametrize('fmt', KNOWN)
def test_creating_refused(images, strata_img, fmt):
    out = str(images / f'new-{fmt}')
    check_refused(run([strata_img, 'create', '-f', fmt, out, '1M']), None,
                  fmt)
    check_refused(run([strata_img, 'convert', '-f', 'raw', '-O', fmt,
                       str(images / 'plain.raw'), out]), None, fmt)
    check_refused(run([strata_img, 'measure', '-O', fmt, '--size', '1M']),
                  None, fmt)
    assert not os.path.exists(out)


def test_help_lists_only_what_opens(strata_img):
    r = run([strata_img, '--help'])
    listed = r.out.split('Supported image formats:')[1].split('\n\n')[1]
    names = listed.split()
    assert 'raw' in names
    assert not set(names) & set(KNOWN), names


MAGICS = [b'QFI\xfb\0\0\0\3', b'QFI\xfb\0\0\0\1', b'QED\0', b'KDMV', b'COWD',
          b'version=1\n', b'vhdxfile', b'conectix', b'WithoutFreeSpace\2\0\0\0',
          b'LUKS\xba\xbe\0\1', CLOOP_MAGIC, bochs_image()[:72]]


@pytest.mark.parametrize('offset', [2048, 4096, 65536])
def test_magic_past_the_probe_is_raw(tmp_path, ref_qemu_img, strata_img,
                                     offset):
    """Only the first 2048 bytes are probed: a raw image that merely
    contains a format's signature later stays raw, for both tools."""
    for i, magic in enumerate(MAGICS):
        path = tmp_path / f'later{i}.raw'
        data = bytearray(offset + 4096)
        data[offset:offset + len(magic)] = magic
        data[offset + 0x40:offset + 0x44] = struct.pack('<I', 0xbeda107f)
        path.write_bytes(bytes(data))
        assert ref_format(ref_qemu_img, str(path)) == 'raw'
        assert our_format(strata_img, str(path)) == 'raw'


DIFF_CASES = [
    # the reference's vmdk probe gives up at a truly empty line
    ('empty-line.vmdk', b'\nversion=1\n'),
    ('tab-line.vmdk', b'\t\nversion=1\n'),
    ('version4.vmdk', b'version=4\n'),
    ('desc.dmg', b'# x\nversion=2\n'),
    # the name test is case-sensitive
    ('UPPER.DMG', bytes(4096)),
    ('x.dmg.raw', bytes(4096)),
    # cloop's preamble, cut short, is raw (the probe sees zeros after it)
    ('cut.cloop', CLOOP_MAGIC[:20]),
    ('bochs-v3', bochs_image()[:64] + b'\0\0\3\0' + bochs_image()[68:]),
    ('parallels-v1', b'WithouFreSpacExt\1\0\0\0'.ljust(64, b'\0')),
    ('luks2', b'LUKS\xba\xbe\0\2'.ljust(4096, b'\0')),
    ('qcow-v0', b'QFI\xfb\0\0\0\0'.ljust(512, b'\0')),
    ('vhd-footer-only', bytes(4096) + b'conectix'.ljust(512, b'\0')),
]


@pytest.mark.parametrize('name,data', DIFF_CASES,
                         ids=[n for n, _ in DIFF_CASES])
def test_probe_edges_like_reference(tmp_path, ref_qemu_img, strata_img, name,
                                    data):
    """Near-misses of each probe: raw where the reference says raw, the
    same format where it picks one."""
    path = str(tmp_path / name)
    with open(path, 'wb') as f:
        f.write(data)
    ref = ref_format(ref_qemu_img, path)
    ours = our_format(strata_img, path)
    if ref == 'raw':
        assert ours == 'raw'
    else:
        assert ours in KNOWN + OPENED + [None] and ref in (ours, None)


SECTOR0 = [
    ('vmdk-desc', b'# Disk DescriptorFile\nversion=1\n'),
    ('qcow2', b'QFI\xfb\0\0\0\3'),
    ('luks', b'LUKS\xba\xbe\0\1'),
    ('vdi', bytes(0x40) + struct.pack('<I', 0xbeda107f)),
    ('vpc', b'conectix'),
    ('cloop', CLOOP_MAGIC),
]


@pytest.mark.parametrize('name,head', SECTOR0, ids=[n for n, _ in SECTOR0])
def test_probed_raw_keeps_sector0_raw(tmp_path, strata_io, ref_qemu_io, name,
                                      head):
    """A probed raw image refuses a write that would make it probe as
    another format, as the reference does."""
    src = tmp_path / 'src'
    src.write_bytes(head.ljust(512, b'\0'))
    results = []
    for tool in (strata_io, ref_qemu_io):
        img = tmp_path / 'img.raw'
        img.write_bytes(bytes(65536))
        r = run([tool, '-c', f'write -s {src} 0 512', str(img)])
        results.append((r.out, img.read_bytes() == bytes(65536)))
    assert results[0] == results[1] == ('write failed: Operation not '
                                        'permitted\n', True)
