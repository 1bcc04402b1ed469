"""qemu-img measure for raw targets: differential against the reference."""
import pytest

from test_img_create import diff, sparse

CASES = [
    ['measure', '--size', '1G', '-O', 'raw'],
    ['measure', '--size', '1G'],
    ['measure', '--size', '1000'],
    ['measure', '--size', '0'],
    ['measure', '--output=json', '--size', '1G', '-O', 'raw'],
    ['measure', '--target-format', 'raw', '--size', '1M', '--output', 'human'],
    ['measure', '-O', 'raw', '-o', 'preallocation=full', '--size', '1M'],
    ['measure', '-O', 'raw', '-o', 'preallocation=bogus', '--size', '1M'],
    ['measure', '-O', 'raw', '-o', 'size=5M', '--size', '1M'],
    ['measure', '-o', 'nocow=on', '-o', 'extent_size_hint=0', '--size', '1M'],
    ['measure', '-f', 'raw', '-O', 'raw', 's.raw'],
    ['measure', '--output=json', 's.raw'],
    ['measure', '-U', 's.raw'],
    ['measure', '--force-share', '--format', 'file', 's.raw'],
    ['measure', '--image-opts', 'driver=raw,file.filename=s.raw'],
    ['measure', 'json:{"driver":"null-co","size":1024}'],
    ['measure', '--object', 'secret,id=sec0,data=x', '--size', '1k'],
    ['measure', '--help'],
    # errors
    ['measure'],
    ['measure', '--size', '1G', 's.raw'],
    ['measure', 'a', 'b'],
    ['measure', '-O', 'foo', '--size', '1G'],
    ['measure', '-O', 'file', '--size', '1M'],
    ['measure', '-O', 'null-co', '--size', '1M'],
    ['measure', '-O', 'raw', '-o', 'help'],
    ['measure', '-O', 'raw', '-o', 'help', '--size', '1M'],
    ['measure', '-o', '?', 's.raw'],
    ['measure', '-O', 'raw', '-o', 'foo=bar', '--size', '1M'],
    ['measure', '-o', 'size=foo', '--size', '1M'],
    ['measure', '-o', ',x', '--size', '1M'],
    ['measure', '--size', '1x'],
    ['measure', '--size', '-1'],
    ['measure', '-l', 'snap', '-f', 'raw', 's.raw'],
    ['measure', '--size', '1G', '-f', 'raw'],
    ['measure', '--image-opts', '--size', '1M'],
    ['measure', '--output=xml', '--size', '1M'],
    ['measure', 'nonexistent'],
    ['measure', '--bogus'],
]


@pytest.mark.parametrize('args', CASES, ids=lambda a: ' '.join(a))
def test_measure(our_qemu_img, ref_qemu_img, tmp_path, args):
    diff(our_qemu_img, ref_qemu_img, tmp_path, args, sparse)
