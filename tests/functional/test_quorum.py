"""The "quorum" driver (qemu-iotests 110 opens a qcow2 on one): option
checks and their messages, voting reads (children that differ in one,
two or all copies, thresholds 1 to 3), read-pattern=fifo,
rewrite-corrupted (what the children hold afterwards), blkverify's
fatal mismatch, writes, zero writes and flushes with children failing
through blkdebug, length, block status, and the json: name and info of
a node with several children.  Each case runs the reference and strata
on their own copies of the same children and compares what they print,
their exit codes and the files they leave."""
import hashlib
import json
import os
import shutil

import pytest

from conftest import normalize, run, twin_dirs

MIB = 1 << 20


def file_child(name):
    return {'driver': 'file', 'filename': 'DIR/' + name}


def blkdebug_child(name, errno, iotype=None, event='none'):
    rule = {'event': event, 'errno': errno, 'immediately': True}
    if iotype:
        rule['iotype'] = iotype
    return {'driver': 'blkdebug', 'inject-error': [rule],
            'image': file_child(name)}


def quorum(children, threshold=None, **opts):
    d = {'driver': 'quorum', 'children': children}
    if threshold is not None:
        d['vote-threshold'] = threshold
    d.update(opts)
    return 'json:' + json.dumps(d)


def digest(path):
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


@pytest.fixture
def env(tmp_path, ref_qemu_img, ref_qemu_io, our_qemu_img, our_qemu_io):
    class Env:
        pass
    e = Env()
    e.dirs = twin_dirs(tmp_path)
    e.ref_img, e.ref_io = ref_qemu_img, ref_qemu_io

    def raw(name, *cmds, size=MIB, fmt='raw'):
        """The reference makes DIR/@name and writes @cmds, in each
        directory (the same allocation in both)."""
        for d in e.dirs:
            path = os.path.join(d, name)
            assert run([ref_qemu_img, 'create', '-q', '-f', fmt, path,
                        str(size)]).rc == 0
            for c in cmds:
                assert run([ref_qemu_io, '-f', fmt, '-c', c, path]).rc == 0
    e.raw = raw

    def both(tools, *args):
        """(rc, stdout, stderr) of each tool, DIR for its directory and
        the tool's own name for qemu-img/qemu-io."""
        res = []
        for tool, d in zip(tools, e.dirs):
            r = run([tool] + [a.replace('DIR', d) for a in args], cwd=d)
            res.append((r.rc, normalize(r.out).replace(d, 'DIR'),
                        r.err.replace(d, 'DIR')))
        assert res[1] == res[0]
        return res[0]
    e.io = lambda *a: both((ref_qemu_io, our_qemu_io), *a)
    e.img = lambda *a: both((ref_qemu_img, our_qemu_img), *a)

    def files(*names):
        """Each file's digest, the same in both directories."""
        sums = [[digest(os.path.join(d, n)) for n in names] for d in e.dirs]
        assert sums[1] == sums[0]
        return sums[0]
    e.files = files
    return e


C = [file_child('c0'), file_child('c1'), file_child('c2')]


@pytest.mark.parametrize('children,threshold,opts', [
    ([], None, {}),
    (None, 1, {}),
    (C[:1], None, {}),
    (C[:1], 0, {}),
    (C[:1], -1, {}),
    (C[:1], 2, {}),
    (C[:1], 'x', {}),
    (C[:1], 1.5, {}),
    (C[:1], 99999999999, {}),
    (C[:1], 4294967297, {}),          # an int in the reference: 1
    (C[:2], 1, {'blkverify': True}),
    (C, 2, {'blkverify': True}),
    (C[:2], 2, {'blkverify': True, 'rewrite-corrupted': True}),
    (C[:2], 2, {'read-pattern': 'x'}),
    (C[:2], None, {'read-pattern': 'fifo'}),
    (C[:2], 1, {'read-pattern': 'fifo', 'blkverify': True}),
    (C[:2], 1, {'read-pattern': 'fifo', 'rewrite-corrupted': True}),
    (C[:1], 1, {'blkverify': 'x'}),
    (C[:2], 1, {'foo': 1}),
    ({'0': C[0], '2': C[1]}, 1, {}),
    (C[0], 1, {}),
    ([C[0], file_child('nope')], 1, {}),
    (['nonode'], 1, {}),
])
def test_open_options(env, children, threshold, opts):
    """Option checks in the reference's order, with its messages."""
    env.raw('c0')
    env.raw('c1')
    env.raw('c2')
    d = {'driver': 'quorum'}
    if children is not None:
        d['children'] = children
    if threshold is not None:
        d['vote-threshold'] = threshold
    d.update(opts)
    env.io('-c', 'read 0 512', 'json:' + json.dumps(d))


def test_open_dotted_options(env):
    """--image-opts: children.N.*, a gap in the list, a node reference."""
    env.raw('c0')
    env.raw('c1')
    base = 'driver=quorum,vote-threshold=2,'
    kids = ('children.0.driver=file,children.0.filename=DIR/c0,'
            'children.{}.driver=file,children.{}.filename=DIR/c1')
    rc, _, _ = env.io('-c', 'read 0 512', '--image-opts',
                      base + kids.format(1, 1) + ',blkverify=yes')
    assert rc == 0
    assert env.io('-c', 'read 0 512', '--image-opts',
                  base + kids.format(2, 2))[0] == 1
    assert env.io('-c', 'read 0 512', '--image-opts',
                  'driver=quorum,vote-threshold=1,children.0=DIR/c0')[0] == 1


def three_versions(env):
    """c0 and c1 agree but at 4k (0xcc in c1), c2 differs everywhere."""
    env.raw('c0', 'write -P 0xaa 0 64k')
    env.raw('c1', 'write -P 0xaa 0 64k', 'write -P 0xcc 4k 4k')
    env.raw('c2', 'write -P 0xbb 0 64k')


@pytest.mark.parametrize('threshold', [1, 2, 3])
def test_vote(env, threshold):
    """One child differs (0), all differ (4k), all agree (64k), a read
    across them; the winner's data or EIO."""
    three_versions(env)
    rc, out, err = env.io('-c', 'read -v 0 16', '-c', 'read -v 4k 16',
                          '-c', 'read -v 64k 16', '-c', 'read 0 128k',
                          quorum(C, threshold))
    if threshold == 1:
        assert '00001000:  bb bb' in out      # a tie: the last version
    if threshold >= 2:
        assert 'read failed: Input/output error' in out
    assert env.files('c0', 'c1', 'c2')


def test_vote_two_of_four(env):
    """Two versions with two copies each: both reach the threshold, the
    one seen last wins."""
    env.raw('c0', 'write -P 0x11 0 4k')
    env.raw('c1', 'write -P 0x22 0 4k')
    env.raw('c2', 'write -P 0x11 0 4k')
    env.raw('c3', 'write -P 0x22 0 4k')
    kids = C + [file_child('c3')]
    _, out, _ = env.io('-c', 'read -v 0 16', quorum(kids, 2))
    assert '00000000:  22 22' in out


def test_fifo(env):
    """read-pattern=fifo: the first child's data, whatever the others
    hold; the threshold still counts for writes."""
    three_versions(env)
    _, out, _ = env.io('-c', 'read -v 4k 16', '-c', 'read -P 0xaa 0 4k',
                       quorum([C[1], C[2]], 2, **{'read-pattern': 'fifo'}))
    assert '00001000:  cc cc' in out


@pytest.mark.parametrize('threshold', [1, 2, 3])
def test_rewrite_corrupted(env, threshold):
    """rewrite-corrupted: the losers get the winner's data (the files
    are the same as the reference leaves them); no winner, no rewrite."""
    three_versions(env)
    env.io('-c', 'read 0 4k', '-c', 'read 0 64k',
           quorum(C, threshold, **{'rewrite-corrupted': True}))
    env.files('c0', 'c1', 'c2')


def test_rewrite_corrupted_read_only(env):
    """rewrite-corrupted needs to write the children."""
    three_versions(env)
    q = quorum(C, 2, **{'rewrite-corrupted': True})
    assert env.io('-r', '-c', 'read 0 4k', q)[0] == 1
    assert 'Block node is read-only' in env.img('info', q)[2]


def test_read_only_child(env):
    """A read-only child refuses a read-write quorum node (the node
    needs to write every child); read-only, it reads."""
    env.raw('c0', 'write -P 0x5a 0 4k')
    env.raw('c1', 'write -P 0x5a 0 4k')
    kids = [C[0], dict(C[1], **{'read-only': True})]
    rc, out, err = env.io('-c', 'write 0 4k', quorum(kids, 1))
    assert rc == 1 and 'Block node is read-only' in err
    assert env.io('-r', '-c', 'read -P 0x5a 0 4k', quorum(kids, 2))[0] == 0


def test_blkverify_mismatch(env):
    """blkverify: equal reads pass, the first difference ends the
    program with exit code 1 and the reference's message."""
    three_versions(env)
    q = quorum(C[:2], 2, blkverify=True)
    rc, out, err = env.io('-c', 'read 0 4k', '-c', 'read 0 8k',
                          '-c', 'read 0 4k', q)
    assert rc == 1
    assert err == ('quorum: offset=0 bytes=8192 contents mismatch at '
                   'offset 4096\n')
    assert out.count('read 4096/4096') == 1
    assert env.img('compare', q, 'DIR/c0')[0] == 1


@pytest.mark.parametrize('threshold', [1, 2, 3])
@pytest.mark.parametrize('errs', [(None, None, 5), (None, 5, 5),
                                  (5, 5, 5), (5, 28, 28), (28, 5, None),
                                  (5, 28, 1)])
def test_write_failures(env, threshold, errs):
    """Writes and zero writes succeed when vote-threshold children do;
    otherwise the error most children returned."""
    kids = []
    for i, err in enumerate(errs):
        env.raw(f'c{i}')
        kids.append(file_child(f'c{i}') if err is None else
                    blkdebug_child(f'c{i}', err, event='pwritev'))
    env.io('-c', 'write -P 0x11 0 4k', '-c', 'write -z 8k 4k',
           '-c', 'read -P 0x11 0 4k', quorum(kids, threshold))
    env.files('c0', 'c1', 'c2')


@pytest.mark.parametrize('threshold', [1, 2, 3])
@pytest.mark.parametrize('errs', [(None, None, 5), (None, 5, 5),
                                  (5, 28, 28)])
def test_flush_failures(env, threshold, errs):
    """Flushes vote like writes; a writethrough write fails with its
    flush (quorum takes no FUA), a writeback one does not."""
    kids = []
    for i, err in enumerate(errs):
        env.raw(f'c{i}')
        kids.append(file_child(f'c{i}') if err is None else
                    blkdebug_child(f'c{i}', err, iotype='flush'))
    q = quorum(kids, threshold)
    env.io('-c', 'write -P 0x11 0 4k', '-c', 'flush', q)
    env.io('-t', 'writeback', '-c', 'write -P 0x22 0 4k', '-c', 'flush',
           '-c', 'write -z -u 0 4k', q)


@pytest.mark.parametrize('threshold', [1, 2, 3])
@pytest.mark.parametrize('errs', [(None, None, 5), (None, 5, 5),
                                  (5, 28, 28), (5, 28, None)])
def test_read_failures(env, threshold, errs):
    """Failed reads count against the threshold; fifo takes the first
    child that reads."""
    kids = []
    for i, err in enumerate(errs):
        env.raw(f'c{i}', 'write -P 0x5a 0 4k')
        kids.append(file_child(f'c{i}') if err is None else
                    blkdebug_child(f'c{i}', err, iotype='read'))
    env.io('-c', 'read -P 0x5a 0 4k', quorum(kids, threshold))
    env.io('-c', 'read -P 0x5a 0 4k',
           quorum(kids, threshold, **{'read-pattern': 'fifo'}))


def test_info_and_name(env):
    """info (human and JSON): the json: name lists the children in one
    "children" list; children are shown as /children.N."""
    env.raw('c0')
    env.raw('c1')
    kids = [{'driver': 'raw', 'file': C[0]}, C[1]]
    _, out, _ = env.img('info', quorum(kids, 2))
    assert out.startswith('image: json:{"children": [{"driver": "raw", '
                          '"file": {"driver": "file", "filename": '
                          '"DIR/c0"}}, {"driver": "file", "filename": '
                          '"DIR/c1"}], "driver": "quorum", '
                          '"vote-threshold": 2}\n')
    assert "Child node '/children.1':" in out
    env.img('info', '--output=json', quorum(kids, 2))
    env.img('info', '--image-opts', 'driver=quorum,vote-threshold=1,'
            'read-pattern=fifo,children.0.driver=file,'
            'children.0.filename=DIR/c0')


def test_block_status_and_unsupported(env):
    """map: zero only where every child reads zeroes, no offsets; no
    resize, no check; different lengths cannot open."""
    env.raw('q0', 'write -P 1 0 64k', 'write -z 128k 64k',
            'write -P 2 256k 64k', fmt='qcow2')
    env.raw('q1', 'write -P 1 0 64k', 'write -P 3 128k 64k',
            'write -z 256k 64k', 'write -z 512k 64k', fmt='qcow2')
    env.raw('c3', size=2 * MIB)
    env.raw('c0')
    kids = [{'driver': 'qcow2', 'file': file_child('q0')},
            {'driver': 'qcow2', 'file': file_child('q1')}]
    q = quorum(kids, 1)
    _, out, _ = env.img('map', '--output=json', q)
    assert '"start": 131072, "length": 65536, "depth": 0, "present": ' \
           'true, "zero": false, "data": true' in out
    assert env.img('map', q)[0] == 1
    assert env.img('resize', q, '2M')[0] == 1
    assert env.img('check', q)[0] == 63
    env.io('-c', 'discard 0 64k', '-c', 'length', q)
    env.img('compare', q, 'DIR/q0')
    env.img('measure', '-O', 'qcow2', q)
    rc, _, err = env.io('-c', 'read 0 512', quorum([C[0], file_child('c3')], 1))
    assert 'Could not refresh total sector count: Input/output error' in err


def test_qcow2_on_quorum(env):
    """iotest 110's last case: a relative backing file of a qcow2 on a
    quorum node cannot be resolved; writes through it reach every copy,
    which the reference finds clean and equal."""
    dirs = env.dirs
    env.raw('base', fmt='qcow2')
    for d in dirs:
        top = os.path.join(d, 'top')
        assert run([env.ref_img, 'create', '-q', '-f', 'qcow2', '-b', 'base',
                    '-F', 'qcow2', top]).rc == 0
        shutil.copy(top, os.path.join(d, 'top2'))
    q = {'driver': 'qcow2',
         'file': json.loads(quorum([file_child('top'), file_child('top2')],
                                   1)[5:])}
    _, out, _ = env.img('info', 'json:' + json.dumps(q))
    assert 'backing file: base (cannot determine actual path)\n' in out
    env.img('info', '--output=json', 'json:' + json.dumps(q))
    assert env.io('-c', 'read 0 4k', 'json:' + json.dumps(q))[0] == 1
    q['backing'] = None
    env.io('-c', 'write -P 7 0 64k', '-c', 'write -z 64k 64k',
           '-c', 'read -P 7 0 64k', 'json:' + json.dumps(q))
    for d in dirs:
        for name in ('top', 'top2'):
            assert run([env.ref_img, 'check', os.path.join(d, name)]).rc == 0
        assert run([env.ref_img, 'compare', os.path.join(d, 'top'),
                    os.path.join(d, 'top2')]).rc == 0
    assert run([env.ref_img, 'compare', os.path.join(dirs[0], 'top'),
                os.path.join(dirs[1], 'top')]).rc == 0
