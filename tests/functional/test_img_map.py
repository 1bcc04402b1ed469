"""qemu-img map on raw: differential against the reference qemu-img."""
import os

import pytest

from test_img_create import diff, sparse


def layouts(d):
    sparse(d)
    with open(os.path.join(d, 's.raw'), 'r+b') as f:
        f.seek(5 << 20)
        f.write(b'b' * 4096)
    open(os.path.join(d, 'z.raw'), 'wb').close()
    with open(os.path.join(d, 'd.raw'), 'wb') as f:
        f.write(os.urandom(70000))


CASES = [
    ['map', '-f', 'raw', 's.raw'],
    ['map', 's.raw'],
    ['map', '--output=json', '-f', 'raw', 's.raw'],
    ['map', 's.raw', '--output', 'json'],
    ['map', '--output=json', '--start-offset', '1M', '--max-length', '100000',
     's.raw'],
    ['map', '-s', '1M', '-l', '100000', 's.raw'],
    ['map', '--start-offset=1114112', 's.raw'],
    ['map', '--start-offset=20M', 's.raw'],
    ['map', '--output=json', '--start-offset=20M', 's.raw'],
    ['map', '--max-length=1k', 's.raw'],
    ['map', '--output=json', '--max-length=0', 's.raw'],
    ['map', '--output=json', '--max-length=64M', 's.raw'],
    ['map', '-U', '--output=json', 's.raw'],
    ['map', '--force-share', 's.raw'],
    ['map', '--image-opts', 'driver=raw,file.filename=s.raw'],
    ['map', '-f', 'file', '--output=json', '-s', '5M', 's.raw'],
    ['map', 'z.raw'],
    ['map', '--output=json', 'z.raw'],
    ['map', 'd.raw'],
    ['map', '--output=json', 'd.raw'],
    ['map', '--output=json', 'json:{"driver":"null-co","size":1024}'],
    ['map', '--output=json',
     'json:{"driver":"null-co","size":1024,"read-zeroes":true}'],
    ['map', 'json:{"driver":"null-co","size":1024}'],
    ['map', '--help'],
    # start + length wraps past INT64_MAX: nothing is mapped
    ['map', '--output=json', '--start-offset', '1', '--max-length',
     '9223372036854775807', 's.raw'],
    ['map', '-s', '1M', '-l', '9223372036854775807', 's.raw'],
    # blkdebug takes a plain file name as its image
    ['map', '-f', 'blkdebug', 's.raw'],
    ['map', '--output=json', '-f', 'blkdebug', 'd.raw'],
    # errors
    ['map', '--start-offset=-1', 's.raw'],
    ['map', '--start-offset=abc', 's.raw'],
    ['map', '--max-length=-5', 's.raw'],
    ['map', '--max-length=1x', 's.raw'],
    ['map', '--output=xml', 's.raw'],
    ['map'],
    ['map', 'a', 'b'],
    ['map', 'nonexistent'],
    ['map', '-f', 'raw', '--image-opts', 's.raw'],
    ['map', '--bogus', 's.raw'],
]


@pytest.mark.parametrize('args', CASES, ids=lambda a: ' '.join(a))
def test_map(our_qemu_img, ref_qemu_img, tmp_path, args):
    diff(our_qemu_img, ref_qemu_img, tmp_path, args, layouts)
