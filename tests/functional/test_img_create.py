"""qemu-img create on raw: differential against the reference qemu-img."""
import os

import pytest

from conftest import run


def sparse(d):
    with open(os.path.join(d, 's.raw'), 'wb') as f:
        f.truncate(10 << 20)
        f.seek(1 << 20)
        f.write(b'a' * 65536)


def existing(d):
    with open(os.path.join(d, 'x.raw'), 'wb') as f:
        f.write(b'old data' * 1000)


def subdir(d):
    os.mkdir(os.path.join(d, 'dd'))


def diff(our, ref, tmp_path, args, setup=None):
    """Run the same argv in two directories; compare everything."""
    results = []
    for name, prog in (('ref', ref), ('our', our)):
        d = tmp_path / name
        d.mkdir()
        if setup:
            setup(str(d))
        r = run([prog] + args, cwd=str(d))
        r.out = r.out.replace(prog, 'qemu-img')
        r.err = r.err.replace(prog, 'qemu-img')
        results.append(r)
    ref_r, our_r = results
    assert (our_r.rc, our_r.out, our_r.err) == (ref_r.rc, ref_r.out, ref_r.err)
    return tmp_path / 'ref', tmp_path / 'our'


CASES = [
    ['create', 'a.raw', '1G'],
    ['create', '-f', 'raw', 'a.raw', '1536k'],
    ['create', '--format=raw', 'a.raw', '0x10'],
    ['create', 'a.raw', '0'],
    ['create', '-q', 'a.raw', '1M'],
    ['create', '--quiet', 'a.raw', '1M'],
    ['create', '-o', 'size=2M', 'a.raw'],
    ['create', '-o', 'size=1k,size=2k', 'a.raw'],
    ['create', '-o', 'size=2M', '-o', 'preallocation=full', 'a.raw'],
    ['create', '-o', 'preallocation=falloc', 'a.raw', '1M'],
    ['create', '-o', 'preallocation=off', 'a.raw', '1M'],
    ['create', '--options', 'preallocation=falloc,nocow=on,extent_size_hint=0',
     'a.raw', '1M'],
    ['create', '-o', 'extent_size_hint=1M,preallocation=off', 'a.raw', '1k'],
    ['create', '-o', 'nocow=yes', 'a.raw', '1k'],
    ['create', '-o', 'nocow', 'a.raw', '1k'],
    ['create', '-u', 'a.raw', '1k'],
    ['create', '-f', 'file', 'a.raw', '1k'],
    ['create', 'a.raw', '1k', '-f', 'raw'],
    # -o help
    ['create', '-o', 'help'],
    ['create', '-f', 'raw', '-o', 'help'],
    ['create', '-o', '?', 'x'],
    ['create', '-f', 'raw', '-o', 'help', 'x.raw'],
    ['create', '-o', 'help,size=1M', 'x.raw'],
    ['create', '-o', 'size=1M,help', 'x.raw'],
    ['create', '-o', 'help', '-f', 'foo'],
    ['create', '--help'],
    ['create', '-h'],
    # errors
    ['create', '-o', 'preallocation=metadata', 'x.raw', '1k'],
    ['create', '-o', 'preallocation=bogus', 'x.raw', '1k'],
    ['create', '-o', 'foo=bar', 'x.raw', '1k'],
    ['create', '-o', 'nocow=maybe', 'x.raw', '1k'],
    ['create', '-o', 'extent_size_hint=-1', 'x.raw', '1k'],
    ['create', '-o', 'size=foo', 'x.raw'],
    ['create', '-o', 'size=2M', 'x.raw', '3M'],
    ['create', '-o', ',size=1k', 'x.raw'],
    ['create', '-o', 'size=1k,', 'x.raw'],
    ['create', '-o', 'size=1k,,', 'x.raw'],
    ['create', '-o', '', 'x.raw'],
    ['create', '-o', 'preallocation=full,,x', 'x.raw', '1k'],
    ['create', 'x.raw'],
    ['create', 'x.raw', '1x'],
    ['create', 'x.raw', '-1'],
    ['create', 'x.raw', '1.5'],
    ['create', 'x.raw', '99999999999999999999'],
    ['create', 'x.raw', '9E'],
    ['create', 'x.raw', '8E'],
    ['create', 'x.raw', '1k', 'extra'],
    ['create', '-f', 'foo', 'x.raw', '1k'],
    ['create', '-f', 'null-co', 'x', '1k'],
    ['create', '-b', 'a.raw', 'x.raw', '1k'],
    ['create', '-b', 'a.raw', '-F', 'raw', 'x.raw', '1k'],
    ['create', '-f', 'raw', '-b', 'a.raw', '-F', 'raw', 'x.raw'],
    ['create', '-F', 'raw', 'x.raw', '1k'],
    ['create', '/nonexistent-dir/x', '1k'],
    ['create'],
    ['create', '--bogus'],
    ['create', '-f'],
]


@pytest.mark.parametrize('args', CASES, ids=lambda a: ' '.join(a))
def test_create(our_qemu_img, ref_qemu_img, tmp_path, args):
    ref_d, our_d = diff(our_qemu_img, ref_qemu_img, tmp_path, args)
    ref_files = sorted(os.listdir(ref_d))
    assert sorted(os.listdir(our_d)) == ref_files
    for f in ref_files:
        assert os.path.getsize(our_d / f) == os.path.getsize(ref_d / f)


def test_create_overwrites(our_qemu_img, ref_qemu_img, tmp_path):
    ref_d, our_d = diff(our_qemu_img, ref_qemu_img, tmp_path,
                        ['create', 'x.raw', '4k'], existing)
    assert open(our_d / 'x.raw', 'rb').read() == bytes(4096)


def test_create_directory(our_qemu_img, ref_qemu_img, tmp_path):
    diff(our_qemu_img, ref_qemu_img, tmp_path, ['create', 'dd', '1k'], subdir)


@pytest.mark.parametrize('mode,alloc', [('off', False), ('falloc', True),
                                        ('full', True)])
def test_create_preallocation(our_qemu_img, ref_qemu_img, tmp_path, mode,
                              alloc):
    ref_d, our_d = diff(our_qemu_img, ref_qemu_img, tmp_path,
                        ['create', '-o', 'preallocation=' + mode, 'p.raw',
                         '1M'])
    blocks = os.stat(our_d / 'p.raw').st_blocks * 512
    assert (blocks >= 1 << 20) == alloc


def test_create_unwritable(our_qemu_img, ref_qemu_img, tmp_path):
    if os.geteuid() == 0:
        pytest.skip('root can write anywhere')

    def ro(d):
        os.mkdir(os.path.join(d, 'ro'), 0o500)
    diff(our_qemu_img, ref_qemu_img, tmp_path, ['create', 'ro/x', '1k'], ro)
