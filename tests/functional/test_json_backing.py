"""Backing files named by a json: pseudo-filename (qemu-iotests 020 and
qemu-img-close-errors): create -b 'json:{...}', info on the overlay,
commit through the chain, and rebase (safe and -u) onto such a name.  A
json: name is options, not a file name relative to the overlay's
directory.  Each case runs the reference and strata, each in its own
directory on its own copies, and compares what they print and the
images they leave."""
import os

import pytest

from conftest import normalize, run, twin_dirs


def blkdebug_name(d, errno_=28):
    """A backing name with blkdebug failing the first write to the base."""
    return ("json:{'driver': 'qcow2', 'file': {'driver': 'blkdebug', "
            "'inject-error': [{'event': 'write_aio', 'errno': %d, "
            "'once': true}], 'image': {'driver': 'file', "
            "'filename': '%s/base.qcow2'}}}" % (errno_, d))


def raw_node_name(d, name='b2.qcow2'):
    """A backing name with a raw node between the qcow2 and its file."""
    return ('json:{"driver": "qcow2", "file": {"driver": "raw", "file": '
            '{"driver": "file", "filename": "%s/%s"}}}' % (d, name))


def both(tools, dirs, *args, sub=True):
    """@args run by the reference and by strata, each in its directory;
    their (rc, stdout, stderr) with the directory as DIR and the program
    as PROG."""
    res = []
    for tool, d in zip(tools, dirs):
        r = run([tool] + [a.replace('DIR', d) for a in args], cwd=d)
        text = [normalize(t) for t in (r.out, r.err)]
        if sub:
            text = [t.replace(d, 'DIR') for t in text]
        text = [t.replace(os.path.basename(tool) + ':', 'PROG:')
                for t in text]
        res.append((r.rc, *text))
    return res


@pytest.fixture
def env(tmp_path, ref_qemu_img, ref_qemu_io, our_qemu_img, our_qemu_io):
    """Two directories, each with base.qcow2 (0x11 at 64k) and b2.qcow2
    (0x22 at 0) made by the reference; img/io run a command with both
    tools and return both results."""
    dirs = twin_dirs(tmp_path)
    for d in dirs:
        for name, cmd in (('base.qcow2', 'write -P 0x11 64k 64k'),
                          ('b2.qcow2', 'write -P 0x22 0 64k')):
            assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2',
                        os.path.join(d, name), '1M']).rc == 0
            assert run([ref_qemu_io, '-c', cmd,
                        os.path.join(d, name)]).rc == 0

    class Env:
        pass
    e = Env()
    e.dirs = dirs
    e.img = lambda *a, **kw: both((ref_qemu_img, our_qemu_img), dirs, *a,
                                  **kw)
    e.io = lambda *a: both((ref_qemu_io, our_qemu_io), dirs, *a)
    e.ref_img = ref_qemu_img
    return e


def same(pair):
    """Both results alike; returns the reference's."""
    assert pair[1] == pair[0]
    return pair[0]


def strip_sizes(text):
    """info without the host-dependent disk usage lines."""
    return '\n'.join(ln for ln in text.splitlines()
                     if 'disk size' not in ln and 'actual-size' not in ln)


def assert_images_same(e, *names):
    r, s = e.dirs
    for n in names:
        a, b = os.path.join(r, n), os.path.join(s, n)
        assert run([e.ref_img, 'check', b]).rc == 0
        assert run([e.ref_img, 'compare', '-f', 'qcow2', '-F', 'qcow2',
                    a, b]).rc == 0, n


@pytest.mark.parametrize('name', [blkdebug_name, raw_node_name])
def test_create_info_json_backing(env, name):
    """create -b json:... keeps the name as it is (the create line
    doubles its commas); info prints it as backing file and full backing
    filename, with and without --backing-chain."""
    b = name('DIR')
    res = same(env.img('create', '-f', 'qcow2', '-b', b, '-F', 'qcow2',
                       'DIR/top.qcow2'))
    assert res[0] == 0 and "backing_file=json:{" in res[1]
    assert res[1].count(',,') == b.count(',')
    for args in ([], ['--output=json'], ['--backing-chain'],
                 ['--backing-chain', '--output=json']):
        r, s = env.img('info', *args, 'DIR/top.qcow2')
        assert r[0] == 0 and 'json:{' in r[1]
        assert (s[0], strip_sizes(s[1]), s[2]) == \
            (r[0], strip_sizes(r[1]), r[2])


def test_open_reads_through_json_backing(env):
    same(env.img('create', '-q', '-f', 'qcow2', '-b', raw_node_name('DIR'),
                 '-F', 'qcow2', 'DIR/top.qcow2'))
    res = same(env.io('-c', 'read -P 0x22 0 64k', '-c', 'read -P 0 64k 64k',
                      'DIR/top.qcow2'))
    assert res[0] == 0 and 'failed' not in res[1]


def test_commit_into_failing_json_backing(env):
    """020's "Testing failing commit": the base's first write fails with
    ENOSPC; both print only "Block job failed: ..." and exit 1."""
    same(env.img('create', '-q', '-f', 'qcow2', '-b', blkdebug_name('DIR'),
                 '-F', 'qcow2', 'DIR/top.qcow2'))
    same(env.io('-c', 'writev -P 0x33 0 64k', 'DIR/top.qcow2'))
    res = same(env.img('commit', 'DIR/top.qcow2'))
    assert res == (1, '', 'PROG: Block job failed: No space left on device\n')
    assert_images_same(env, 'base.qcow2', 'top.qcow2')


def test_commit_through_json_backing(env):
    same(env.img('create', '-q', '-f', 'qcow2', '-b', raw_node_name('DIR'),
                 '-F', 'qcow2', 'DIR/top.qcow2'))
    same(env.io('-c', 'write -P 0x33 128k 64k', 'DIR/top.qcow2'))
    res = same(env.img('commit', 'DIR/top.qcow2'))
    assert res[0] == 0 and 'Image committed.' in res[1]
    assert_images_same(env, 'b2.qcow2', 'top.qcow2')


@pytest.mark.parametrize('unsafe', [False, True])
def test_rebase_onto_json_backing(env, unsafe):
    """rebase -b json:... records the name as it is; the safe mode opens
    it (it is not put in the overlay's directory) and copies what
    differs."""
    same(env.img('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2',
                 '-F', 'qcow2', 'DIR/top.qcow2'))
    args = ['-u'] if unsafe else []
    res = same(env.img('rebase', *args, '-f', 'qcow2', '-F', 'qcow2',
                       '-b', raw_node_name('DIR'), 'DIR/top.qcow2'))
    assert res[0] == 0
    r, s = env.img('info', '--output=json', 'DIR/top.qcow2')
    assert '"backing-filename": "json:{' in r[1]
    assert strip_sizes(s[1]) == strip_sizes(r[1])
    assert_images_same(env, 'top.qcow2')


def test_rebase_json_image_relative_backing(env):
    """A relative -b given for an image opened by a json: name is
    relative to the file the name resolves to."""
    os.mkdir(os.path.join(env.dirs[0], 'd'))
    os.mkdir(os.path.join(env.dirs[1], 'd'))
    same(env.img('create', '-q', '-f', 'qcow2', 'DIR/d/top.qcow2', '1M'))
    same(env.img('create', '-q', '-f', 'qcow2', 'DIR/d/nb.qcow2', '1M'))
    top = ('json:{"driver": "qcow2", "file": {"driver": "file", '
           '"filename": "DIR/d/top.qcow2"}}')
    res = same(env.img('rebase', '-f', 'qcow2', '-F', 'qcow2', '-b',
                       'nb.qcow2', top))
    assert res[0] == 0
    r = same(env.img('info', 'DIR/d/top.qcow2'))
    assert 'backing file: nb.qcow2 (actual path: DIR/d/nb.qcow2)' in r[1]


@pytest.mark.parametrize('name', [blkdebug_name, raw_node_name])
def test_create_json_backing_without_format(env, name):
    """Without -F: the hint names the format of the node the json: name
    describes (qcow2), not a probe of that node's guest data."""
    res = same(env.img('create', '-f', 'qcow2', '-b', name('DIR'),
                       'DIR/top.qcow2'))
    assert res[0] == 1 and 'Detected format of qcow2.' in res[2]


def test_convert_onto_json_backing(env):
    same(env.io('-f', 'qcow2', '-c', 'write -P 0x22 0 128k',
                'DIR/base.qcow2'))
    res = same(env.img('convert', '-O', 'qcow2', '-B', raw_node_name('DIR'),
                       '-F', 'qcow2', 'DIR/base.qcow2', 'DIR/top.qcow2'))
    assert res[0] == 0
    same(env.img('map', '--output=json', 'DIR/top.qcow2'))
    r, s = env.img('info', 'DIR/top.qcow2')
    assert 'backing file: json:{' in r[1]
    assert strip_sizes(s[1]) == strip_sizes(r[1])
