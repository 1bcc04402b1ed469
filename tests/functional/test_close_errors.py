"""Persistent bitmaps that cannot be stored when an image closes
(qemu-iotests qemu-img-close-errors): a base whose file is capped by a
raw node (a json: backing name) runs out of space while its bitmaps are
written back.  commit and bitmap report it as the reference does
("Lost persistent bitmaps during inactivation ...", then "Error while
closing the image", exit 1), and a failed store gives back the clusters
it took, so the next attempt fails on the same bitmap.  Both tools run
the same steps in their own directories; each step's output must match."""
import os
import re

import pytest

from conftest import normalize, run, twin_dirs

NODE = re.compile(r"node '#block\d+'")


def steps(n_bitmaps):
    """The test's commands; DIR is the run's directory, BASE the json:
    name of the base capped at 128 MiB."""
    out = [('img', 'create', '-q', '-f', 'qcow2', 'DIR/t.qcow2.base', '1G')]
    out += [('img', 'bitmap', '--add', 'DIR/t.qcow2.base', f'stale-{i}')
            for i in range(1, n_bitmaps + 1)]
    out += [
        ('io', '-f', 'raw', '-c', 'truncate 128M', 'DIR/t.qcow2.base'),
        ('img', 'create', '-q', '-f', 'qcow2', '-b', 'BASE', '-F', 'qcow2',
         'DIR/t.qcow2'),
        ('img', 'bitmap', '--add', 'DIR/t.qcow2', 'good-bitmap'),
        ('io', '-f', 'qcow2', '-c', 'write 0 126m', 'DIR/t.qcow2'),
        ('img', 'commit', '-d', 'DIR/t.qcow2'),
        ('img', 'bitmap', '--add', 'BASE', 'good-bitmap'),
        ('img', 'bitmap', '--merge', 'good-bitmap', '-b', 'DIR/t.qcow2',
         'BASE', 'good-bitmap'),
    ]
    return out


def base_name(d):
    return ('json:{"driver": "qcow2", "file": {"driver": "raw", '
            '"size": 134217728, "file": {"driver": "file", '
            '"filename": "%s/t.qcow2.base"}}}' % d)


def run_step(tools, d, step):
    tool = tools[step[0]]
    argv = [a.replace('BASE', base_name(d)).replace('DIR', d)
            for a in step[1:]]
    r = run([tool] + argv, cwd=d)
    return (r.rc, normalize(r.out), NODE.sub("node 'NODE'", r.err))


@pytest.mark.parametrize('n_bitmaps,failing', [(6, 'merge'), (7, 'commit')])
def test_bitmaps_lost_at_close(tmp_path, ref_qemu_img, ref_qemu_io,
                               our_qemu_img, our_qemu_io, n_bitmaps,
                               failing):
    rd, sd = twin_dirs(tmp_path)
    ref = {'img': ref_qemu_img, 'io': ref_qemu_io}
    ours = {'img': our_qemu_img, 'io': our_qemu_io}
    seen = []
    for step in steps(n_bitmaps):
        r = run_step(ref, rd, step)
        s = run_step(ours, sd, step)
        assert s == r, step
        seen.append((step[1] if step[1] != 'bitmap' else step[2], r))
    # the case the parameters name did fail, twice, as in the reference
    name, (rc, _, err) = [x for x in seen
                          if x[0] == {'merge': '--merge',
                                      'commit': 'commit'}[failing]][0]
    assert rc == 1 and err.count('Lost persistent bitmaps') == 2
    assert 'Error while closing the image: Invalid argument' in err
    r = run([ref_qemu_img, 'check', os.path.join(sd, 't.qcow2.base')])
    assert r.rc == 0, r
