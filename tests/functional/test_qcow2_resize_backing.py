"""Growing a qcow2 image that has a longer backing file, with every
preallocation mode, with and without extended L2 entries: the grown area
must read as zeroes (never the backing file's data), and the result must
match the image the reference qemu-img writes (contents, check, map,
file length)."""
import json
import os

import pytest

from conftest import io_args, make_image, pattern, run

KiB = 1 << 10
MODES = ['off', 'metadata', 'falloc', 'full']
# (old size, new size, backing size): unaligned and cluster-aligned old
# ends over a longer backing file, and a backing file shorter than the
# old size (no zeroing needed)
SIZES = [(503 * KiB, 1013 * KiB, 1024 * KiB),
         (512 * KiB, 1027 * KiB, 1024 * KiB),
         (503 * KiB, 3072 * KiB, 1024 * KiB),
         (503 * KiB, 1013 * KiB, 256 * KiB),
         (503 * KiB, 510 * KiB, 1024 * KiB),     # inside one cluster
         (1023 * KiB, 1025 * KiB, 1024 * KiB)]   # into the next one


def build(img, d, name, ext, mode, old, new):
    path = str(d / name)
    r = run([img, 'create', '-q', '-f', 'qcow2', '-o',
             f'extended_l2={ext}', '-F', 'raw', '-b', 'base', path,
             str(old)], cwd=d)
    assert r.rc == 0, r
    r = run([img, 'resize', '-q', f'--preallocation={mode}', path,
             str(new)], cwd=d)
    assert r.rc == 0, r
    return path


def image_map(img, path):
    r = run([img, 'map', '--output=json', path])
    assert r.rc == 0, r
    return json.loads(r.out)


@pytest.mark.parametrize('sizes', SIZES,
                         ids=[f'{o // KiB}k-{n // KiB}k-b{b // KiB}k'
                              for o, n, b in SIZES])
@pytest.mark.parametrize('ext', ['on', 'off'])
@pytest.mark.parametrize('mode', MODES)
def test_grow_over_backing(tmp_path, strata_img, strata_io, ref_qemu_img,
                           ref_qemu_io, mode, ext, sizes):
    old, new, back = sizes
    make_image(tmp_path / 'base', back, [(0, pattern(0xff, back))])
    ours = build(strata_img, tmp_path, 'ours.qcow2', ext, mode, old, new)
    ref = build(ref_qemu_img, tmp_path, 'ref.qcow2', ext, mode, old, new)

    kept = min(old, back)
    cmds = [f'read -P 0xff 0 {kept}', f'read -P 0 {kept} {new - kept}']
    for io, path in ((strata_io, ours), (ref_qemu_io, ours),
                     (ref_qemu_io, ref)):
        r = run([io] + io_args(cmds) + [path])
        assert r.rc == 0 and 'verification failed' not in r.out, r

    r = run([ref_qemu_img, 'check', ours])
    assert r.rc == 0, r
    r = run([ref_qemu_img, 'compare', ours, ref])
    assert r.rc == 0 and r.out == 'Images are identical.\n', r

    assert os.path.getsize(ours) == os.path.getsize(ref)
    theirs = image_map(ref_qemu_img, ref)
    assert image_map(strata_img, ours) == theirs
    assert image_map(ref_qemu_img, ours) == theirs
    # whatever the layout, nothing past the old end comes from the backing
    for e in image_map(strata_img, ours):
        if e['start'] + e['length'] > kept:
            assert e['depth'] == 0, e
