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
