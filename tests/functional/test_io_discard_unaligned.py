"""Discards below the request alignment still reach the file driver, which
punches any byte range (zeroes inside a block), as the reference's do:
with O_DIRECT (alignment 512 or more) as without."""
import hashlib
import subprocess

import pytest

from conftest import make_image


def discard(prog, img, cache, rng):
    args = [prog, '-f', 'raw'] + (['-t', cache] if cache else [])
    r = subprocess.run(args + ['-c', 'discard %d %d' % rng, img],
                       capture_output=True, text=True)
    with open(img, 'rb') as f:
        return r.returncode, hashlib.sha256(f.read()).hexdigest()


@pytest.mark.parametrize('rng', [(4094, 2), (4000, 200), (1, 8190),
                                 (513, 1023), (0, 1), (511, 2), (4095, 4097),
                                 (100, 16000)])
@pytest.mark.parametrize('cache', ['none', None])
def test_unaligned_discard_like_reference(strata_io, ref_qemu_io, tmp_path,
                                          disk_dir, rng, cache):
    import os
    res = []
    for prog, name in ((strata_io, 'o.raw'), (ref_qemu_io, 'r.raw')):
        img = make_image(os.path.join(disk_dir, name), 16384,
                         [(0, b'\x0a' * 16384)])
        res.append(discard(prog, img, cache, rng))
    assert res[0] == res[1]


@pytest.mark.parametrize('cmd', ['write -z -u 4096 512', 'write -z -u 0 4608',
                                 'write -z 4096 512', 'discard 4096 512',
                                 'write -z -u 4000 608'])
def test_zeroes_in_last_partial_sector_like_reference(strata_io, ref_qemu_io,
                                                       tmp_path, cmd):
    """A file of 4097 bytes is an image of 4608: zeroes with unmap there
    punch without growing the file, plain zero writes grow it."""
    import os
    res = []
    for prog, name in ((strata_io, 'o.raw'), (ref_qemu_io, 'r.raw')):
        img = make_image(tmp_path / name, 4097, [(0, b'\x11' * 4097)])
        r = subprocess.run([prog, '-f', 'raw', '-c', cmd, img],
                           capture_output=True, text=True)
        with open(img, 'rb') as f:
            res.append((r.returncode, os.path.getsize(img),
                        hashlib.sha256(f.read()).hexdigest()))
    assert res[0] == res[1]
