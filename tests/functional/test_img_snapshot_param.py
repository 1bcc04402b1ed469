"""-l of measure and convert: "snapshot.*" option lists are checked when
the option is parsed (unknown keys refused before anything is opened);
other values are snapshot names, which raw cannot load."""
import os

import pytest

from conftest import make_image, run

PARAMS = ['snapshot.foo=bar', 'snapshot.id=1', 'snapshot.name=x,,y',
          'snapshot.id=1,foo=2', 'snapshot.', 'plain', 'snapshot.id',
          'snapshot.id=1,nosnapshot.name', 'snapshot.id=1,nofoo',
          'snapshot.id=a,,b,snapshot.bad=1']


@pytest.mark.parametrize('cmd', [['measure'], ['measure', '-O', 'raw', 'IMG'],
                                 ['convert', '-O', 'raw', 'IMG', 'OUT']])
@pytest.mark.parametrize('param', PARAMS)
def test_snapshot_param_like_reference(our_qemu_img, ref_qemu_img, tmp_path,
                                       cmd, param):
    img = make_image(tmp_path / 'i.raw', 1 << 20)
    out = str(tmp_path / 'o.raw')
    argv = [img if a == 'IMG' else out if a == 'OUT' else a for a in cmd]
    res = []
    for prog in (our_qemu_img, ref_qemu_img):
        r = run([prog, argv[0], '-l', param] + argv[1:])
        res.append((r.rc, r.out, r.err.replace(prog, 'qemu-img')))
        assert not os.path.exists(out)
    assert res[0] == res[1]


def random_params(seed, n):
    import random
    rnd = random.Random(seed)
    parts = ['snapshot.', 'id', 'name', '=', ',', ',,', 'no', 'x', '1',
             'snapshot.id', 'snapshot.name', '=on', '"', ' ', 'nosnapshot.id']
    return ['snapshot.' + ''.join(rnd.choice(parts)
                                  for _ in range(rnd.randrange(0, 9)))
            for _ in range(n)]


@pytest.mark.parametrize('seed', range(4))
def test_snapshot_param_random_like_reference(our_qemu_img, ref_qemu_img,
                                              tmp_path, seed):
    """Random option lists: keys taken in order up to the first bad one,
    with the short-form warnings of those before it, as the reference."""
    img = make_image(tmp_path / 'i.raw', 1 << 20)
    for param in random_params(seed, 30):
        res = []
        for prog in (our_qemu_img, ref_qemu_img):
            r = run([prog, 'measure', '-O', 'raw', '-l', param, img])
            res.append((r.rc, r.out, r.err.replace(prog, 'qemu-img')))
        assert res[0] == res[1], param
