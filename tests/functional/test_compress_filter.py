"""The "compress" filter (qemu-iotests 214): every data write through it
reaches the qcow2 below as a compressed write of whole clusters (the
core pads an unaligned one with what it reads), reads, zero writes and
discards pass through, `write -c` through it is refused, and a child
that cannot store compressed clusters is refused at open.  Each case
runs the reference qemu-io and strata's on copies of the same image and
compares what they print, the map of the image they leave, and that the
reference finds it clean and equal."""
import os
import shutil

import pytest

from conftest import io_args, normalize, run, twin_dirs


def opts(path, fmt='qcow2'):
    return f'driver=compress,file.driver={fmt},file.file.filename={path}'


def both_io(tools, dirs, *args):
    """qemu-io with @args (DIR: the run's directory) by each tool."""
    res = []
    for tool, d in zip(tools, dirs):
        r = run([tool] + [a.replace('DIR', d) for a in args], cwd=d)
        res.append((r.rc, normalize(r.out).replace(d, 'DIR'),
                    r.err.replace(d, 'DIR')))
    return res


@pytest.fixture
def env(tmp_path, ref_qemu_img, ref_qemu_io, our_qemu_io):
    dirs = twin_dirs(tmp_path)

    class Env:
        pass
    e = Env()
    e.dirs = dirs
    e.ref_img = ref_qemu_img
    e.ref_io = ref_qemu_io

    def setup(name, *args, cmds=()):
        """The reference makes DIR/@name (create @args, the size last) in
        the first directory, writes @cmds; the second gets a copy."""
        path = os.path.join(dirs[0], name)
        argv = ['create', '-q', *args[:-1], path, args[-1]]
        assert run([ref_qemu_img, *argv]).rc == 0
        if cmds:
            assert run([ref_qemu_io, *io_args(cmds), path]).rc == 0
        shutil.copy(path, os.path.join(dirs[1], name))
    e.setup = setup
    e.io = lambda *a: both_io((ref_qemu_io, our_qemu_io), dirs, *a)
    return e


def same(pair):
    assert pair[1] == pair[0]
    return pair[0]


def assert_same_images(e, name):
    """Both copies: same map, clean, same contents."""
    maps = []
    for d in e.dirs:
        path = os.path.join(d, name)
        r = run([e.ref_img, 'check', path])
        assert r.rc == 0, r
        maps.append(run([e.ref_img, 'map', '--output=json', path]).out)
    assert maps[1] == maps[0]
    assert run([e.ref_img, 'compare', *(os.path.join(d, name)
                                       for d in e.dirs)]).rc == 0
    return maps[0]


def test_214_multi_cluster_writes(env):
    """214's last part: unaligned multi-cluster writes, by --image-opts
    and by a json: name, become compressed clusters."""
    env.setup('t.qcow2', '-f', 'qcow2', '-o', 'cluster_size=65536', '2M')
    res = same(env.io('-c', 'write -P 0xbb 0 212992',
                      '--image-opts', opts('DIR/t.qcow2')))
    assert res[0] == 0 and 'wrote 212992/212992' in res[1]
    name = ('json:{"driver": "compress", "file": {"driver": "qcow2", '
            '"file": {"driver": "file", "filename": "DIR/t.qcow2"}}}')
    res = same(env.io('-c', 'write -P 0xcc 278528 212992', name))
    assert res[0] == 0
    m = assert_same_images(env, 't.qcow2')
    assert '"compressed": true' in m
    r = run([env.ref_img, 'check', '--output=json',
             os.path.join(env.dirs[1], 't.qcow2')])
    assert '"compressed-clusters": 8' in r.out


def test_passthrough_and_refusals(env):
    """Unaligned data write, write -c (refused: the filter stores no
    compressed writes itself), write -z, discard, reads, map, info."""
    env.setup('c.qcow2', '-f', 'qcow2', '1M')
    res = same(env.io('--image-opts', opts('DIR/c.qcow2'),
                      '-c', 'write -P 1 1k 3k', '-c', 'write -c 64k 64k',
                      '-c', 'write -z 128k 64k', '-c', 'discard 192k 64k',
                      '-c', 'read -P 1 1k 3k', '-c', 'read -P 0 0 1k',
                      '-c', 'map', '-c', 'info'))
    assert 'write failed: Operation not supported' in res[1]
    assert 'format name: compress' in res[1]
    m = assert_same_images(env, 'c.qcow2')
    assert m.count('"compressed": true') == 1


def test_padding_reads_backing(env):
    """A partial-cluster write over a backing file: the padding comes
    from the backing file, the cluster is stored compressed."""
    env.setup('b.qcow2', '-f', 'qcow2', '1M', cmds=['write -P 9 0 1M'])
    for d in env.dirs:
        assert run([env.ref_img, 'create', '-q', '-f', 'qcow2', '-b',
                    os.path.join(d, 'b.qcow2'), '-F', 'qcow2',
                    os.path.join(d, 't.qcow2')]).rc == 0
    res = same(env.io('--image-opts', opts('DIR/t.qcow2'),
                      '-c', 'write -P 4 70k 2k', '-c', 'read -P 9 64k 6k',
                      '-c', 'read -P 4 70k 2k', '-c', 'read -P 9 72k 56k',
                      '-c', 'write -z 200k 1k', '-c', 'read -P 0 200k 1k',
                      '-c', 'read -P 9 201k 1k'))
    assert res[0] == 0 and 'failed' not in res[1]
    m = assert_same_images(env, 't.qcow2')
    assert m.count('"compressed": true') == 2


@pytest.mark.parametrize('child', ['driver=compress,file.driver=raw,'
                                   'file.file.filename=DIR/r.raw',
                                   'driver=compress,file.filename=DIR/r.raw'])
def test_child_without_compression(env, child):
    env.setup('r.raw', '-f', 'raw', '1M')
    res = same(env.io('--image-opts', child, '-c', 'read 0 1k'))
    assert res[0] == 1 and 'Compression is not supported for underlying ' \
        'format' in res[2]


def test_data_file_write_refused(env):
    for d in env.dirs:
        assert run([env.ref_img, 'create', '-q', '-f', 'qcow2', '-o',
                    f'data_file={d}/d.raw', f'{d}/dd.qcow2', '1M']).rc == 0
    res = same(env.io('--image-opts', opts('DIR/dd.qcow2'),
                      '-c', 'write -P 3 0 64k'))
    assert 'write failed: Operation not supported' in res[1]


def test_size_not_cluster_multiple(env):
    """A 100 KiB image cannot be written through the filter: its size is
    not a multiple of the filter's alignment (one cluster)."""
    env.setup('c.qcow2', '-f', 'qcow2', '100k')
    res = same(env.io('--image-opts', opts('DIR/c.qcow2'),
                      '-c', 'write -P 3 10k 80k'))
    assert res[0] == 1 and "Cannot get 'write' permission" in res[2]
    res = same(env.io('-r', '--image-opts', opts('DIR/c.qcow2'),
                      '-c', 'read -P 0 0 100k'))
    assert res[0] == 0


def test_info_on_filter(env, our_qemu_img):
    env.setup('c.qcow2', '-f', 'qcow2', '1M', cmds=['write -c 0 64k'])
    for args in ([], ['--output=json']):
        outs = []
        for tool, d in zip((env.ref_img, our_qemu_img), env.dirs):
            r = run([tool, 'info', *args, '--image-opts',
                     opts(os.path.join(d, 'c.qcow2'))])
            outs.append((r.rc, '\n'.join(
                ln.replace(d, 'DIR') for ln in r.out.splitlines()
                if 'disk size' not in ln and 'actual-size' not in ln),
                r.err))
        assert outs[1] == outs[0]
        assert 'compress' in outs[0][1]
