"""qcow2 internal snapshots: snapshot -c/-a/-d/-l, info's snapshot list,
convert -l, compared with the reference qemu-img 10.0.  Images Strata
changes must pass the reference check after every operation, read back
like the images the reference changed the same way, and each tool must
read the other's snapshots."""
import os
import re
import shutil
import struct

import pytest

from conftest import io_args, normalize, run

MiB = 1 << 20
DATE = re.compile(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d')


def sh(prog, *args):
    return run([prog] + [str(a) for a in args])


def same(res_a, res_b):
    assert (res_a.rc, res_a.out, res_a.err) == (res_b.rc, res_b.out, res_b.err)


def new_image(ref_img, ref_io, path, size='64M', writes=()):
    assert sh(ref_img, 'create', '-q', '-f', 'qcow2', path, size).rc == 0
    if writes:
        assert sh(ref_io, *io_args(writes), path).rc == 0
    return str(path)


def check_clean(ref_img, path):
    r = sh(ref_img, 'check', path)
    assert r.rc == 0, r


def listing(prog, path):
    """snapshot -l with the dates masked (two images made at different
    moments list differently only there)."""
    r = sh(prog, 'snapshot', '-l', path)
    assert r.rc == 0, r
    return DATE.sub('DATE', r.out)


# Each step: (tool arguments or qemu-io commands, kind).
LIFECYCLE = [
    (['-c', 's1'], 'snap'),
    (['write -P 2 0 64k', 'write -c -P 3 1M 64k', 'write -z 2M 64k'], 'io'),
    (['-c', 's2'], 'snap'),
    (['write -P 4 32k 64k', 'discard 1M 64k'], 'io'),
    (['-a', 's1'], 'snap'),
    (['write -P 5 8M 4k'], 'io'),
    (['-c', ''], 'snap'),
    (['-a', '2'], 'snap'),
    (['-d', 's1'], 'snap'),
    (['-c', 's2'], 'snap'),
    (['-a', 's2'], 'snap'),
    (['-d', 's2'], 'snap'),
    (['-a', '3'], 'snap'),
    (['-d', ''], 'snap'),
    (['-d', 's2'], 'snap'),
]


def test_lifecycle_like_reference(tmp_path, our_qemu_img, ref_qemu_img,
                                  ref_qemu_io):
    """The same steps by Strata and by the reference: same exit status and
    messages, same guest data and snapshot listing, clean checks, and each
    tool lists the other's image identically."""
    writes = ['write -P 1 0 128k', 'write -c -P 7 4M 64k']
    ours = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'o.qcow2',
                     writes=writes)
    refs = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'r.qcow2',
                     writes=writes)
    for args, kind in LIFECYCLE:
        if kind == 'io':
            for img in (ours, refs):
                assert sh(ref_qemu_io, *io_args(args), img).rc == 0
        else:
            a = sh(our_qemu_img, 'snapshot', *args, ours)
            b = sh(ref_qemu_img, 'snapshot', *args, refs)
            same(a, b)
        check_clean(ref_qemu_img, ours)
        assert sh(ref_qemu_img, 'compare', ours, refs).rc == 0
        assert listing(our_qemu_img, ours) == listing(ref_qemu_img, refs)
        assert sh(our_qemu_img, 'snapshot', '-l', ours).out == \
            sh(ref_qemu_img, 'snapshot', '-l', ours).out


def test_snapshots_read_across_tools(tmp_path, our_qemu_img, ref_qemu_img,
                                     ref_qemu_io):
    """Snapshots one tool made read back through the other's convert -l
    (by name, by ID, by option list) as the state they captured."""
    img = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'x.qcow2',
                    writes=['write -P 1 0 1M'])
    assert sh(our_qemu_img, 'snapshot', '-c', 'one', img).rc == 0
    assert sh(ref_qemu_io, '-c', 'write -P 2 64k 64k', img).rc == 0
    assert sh(ref_qemu_img, 'snapshot', '-c', 'two', img).rc == 0
    assert sh(ref_qemu_io, '-c', 'write -P 3 0 4k', img).rc == 0
    expect = {'one': ['read -P 1 0 1M'],
              'two': ['read -P 2 64k 64k', 'read -P 1 0 64k']}
    for name, sid in (('one', '1'), ('two', '2')):
        for prog in (our_qemu_img, ref_qemu_img):
            for param in (name, sid, 'snapshot.name=' + name,
                          f'snapshot.id={sid},snapshot.name={name}'):
                out = str(tmp_path / 'out.raw')
                r = sh(prog, 'convert', '-l', param, '-O', 'raw', img, out)
                assert r.rc == 0, r
                r = sh(ref_qemu_io, '-f', 'raw', *io_args(expect[name]), out)
                assert r.rc == 0 and 'failed' not in r.out, r
                os.unlink(out)
    check_clean(ref_qemu_img, img)


@pytest.mark.parametrize('param', ['nope', 'snapshot.id=7',
                                   'snapshot.id=1,snapshot.name=two',
                                   'snapshot.id', ''])
def test_convert_snapshot_errors(tmp_path, our_qemu_img, ref_qemu_img,
                                 ref_qemu_io, param):
    img = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'x.qcow2')
    assert sh(ref_qemu_img, 'snapshot', '-c', 'one', img).rc == 0
    res = []
    for prog in (our_qemu_img, ref_qemu_img):
        out = tmp_path / 'out.raw'
        r = sh(prog, 'convert', '-l', param, '-O', 'raw', img, out)
        res.append((r.rc, r.out, r.err))
        if out.exists():
            out.unlink()
    assert res[0] == res[1]


def patch(path, off, fmt, value):
    with open(path, 'r+b') as f:
        f.seek(off)
        f.write(struct.pack(fmt, value))


def table_offset(path):
    with open(path, 'rb') as f:
        h = f.read(72)
    return struct.unpack('>I', h[60:64])[0], struct.unpack('>Q', h[64:72])[0]


def test_list_and_info_identical(tmp_path, our_qemu_img, ref_qemu_img,
                                 ref_qemu_io):
    """snapshot -l, info and info --output=json print the table like the
    reference, with VM state sizes, guest clocks and missing icounts."""
    img = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'x.qcow2',
                    writes=['write -P 1 0 64k'])
    for name in ('a', 'a-much-longer-name-than-the-column', 'a'):
        assert sh(ref_qemu_img, 'snapshot', '-c', name, img).rc == 0
    nb, off = table_offset(img)
    # first entry: 1.5 GiB of VM state, 100 hours of guest clock, no icount
    patch(img, off + 24, '>Q', 360000 * 10**9 + 123456789)
    patch(img, off + 40, '>Q', 3 << 29)
    patch(img, off + 56, '>Q', (1 << 64) - 1)
    patch(img, off + 16, '>I', 0)
    for args in (['snapshot', '-l'], ['info'], ['info', '--output=json'],
                 ['info', '-U', '--output=json', '-f', 'qcow2']):
        same(sh(our_qemu_img, *args, img), sh(ref_qemu_img, *args, img))


def test_no_snapshots_prints_nothing(tmp_path, our_qemu_img, ref_qemu_img,
                                     ref_qemu_io):
    img = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'x.qcow2')
    for args in (['snapshot', '-l'], ['info', '--output=json']):
        same(sh(our_qemu_img, *args, img), sh(ref_qemu_img, *args, img))


@pytest.mark.parametrize('args', [
    ['-a', 'nope'], ['-d', 'nope'], ['-d', '1'], ['-a', '1'], ['-c', 'x', '-U'],
    ['-l', '-U'], ['-a', 'one'], ['-c', 'n' * 300], ['-d', 'one'],
])
def test_errors_like_reference(tmp_path, our_qemu_img, ref_qemu_img,
                               ref_qemu_io, args):
    """Missing snapshots (delete looks up names only, apply IDs too),
    read-only shared opens, names cut to 255 bytes."""
    base = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'b.qcow2',
                     writes=['write -P 1 0 64k'])
    assert sh(ref_qemu_img, 'snapshot', '-c', 'one', base).rc == 0
    res = []
    for prog in (our_qemu_img, ref_qemu_img):
        img = tmp_path / 'w.qcow2'
        shutil.copy(base, img)
        r = sh(prog, 'snapshot', *args, img)
        res.append((r.rc, r.out, r.err.replace(prog, 'qemu-img'),
                    listing(ref_qemu_img, img)))
        check_clean(ref_qemu_img, img)
    assert res[0] == res[1]


def test_too_many_snapshots(tmp_path, our_qemu_img, ref_qemu_img,
                            ref_qemu_io):
    """At 65536 snapshots a new one is refused (File too large)."""
    img = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'x.qcow2')
    assert sh(ref_qemu_img, 'snapshot', '-c', 'one', img).rc == 0
    patch(img, 60, '>I', 65536)     # the rest read as empty entries
    res = []
    for prog in (our_qemu_img, ref_qemu_img):
        w = tmp_path / 'w.qcow2'
        shutil.copy(img, w)
        r = sh(prog, 'snapshot', '-c', 'more', w)
        res.append((r.rc, r.out, r.err.replace(prog, 'qemu-img')))
    assert res[0] == res[1]
    assert 'File too large' in res[0][2]


def test_snapshot_apply_resizes(tmp_path, our_qemu_img, ref_qemu_img,
                                ref_qemu_io):
    """A snapshot taken at another disk size brings that size back."""
    res = []
    for prog in (our_qemu_img, ref_qemu_img):
        img = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'x.qcow2',
                        size='16M', writes=['write -P 1 0 64k'])
        assert sh(prog, 'snapshot', '-c', 'small', img).rc == 0
        assert sh(ref_qemu_img, 'resize', img, '32M').rc == 0
        assert sh(ref_qemu_io, '-c', 'write -P 2 20M 64k', img).rc == 0
        assert sh(prog, 'snapshot', '-c', 'big', img).rc == 0
        r1 = sh(prog, 'snapshot', '-a', 'small', img)
        info1 = sh(ref_qemu_img, 'info', '--output=json', img).out
        check_clean(ref_qemu_img, img)
        r2 = sh(prog, 'snapshot', '-a', 'big', img)
        check_clean(ref_qemu_img, img)
        data = sh(ref_qemu_io, '-c', 'read -P 2 20M 64k', img)
        res.append((r1.rc, r2.rc, '"virtual-size": 16777216' in info1,
                    data.rc, 'failed' in data.out))
        os.unlink(img)
    assert res[0] == res[1] == [(0, 0, True, 0, False)][0]


def test_vmstate_like_reference(tmp_path, our_qemu_io, ref_qemu_io,
                                ref_qemu_img):
    """read -b / write -b: the VM state after the guest disk, the image
    byte-identical to the reference's; raw has none."""
    cmds = ['write -b -P 5 0 64k', 'write -b -P 6 100M 4k',
            'read -b -P 5 0 64k', 'read -b -P 6 100M 4k',
            'read -b -P 0 200M 512', 'read -b -v 0 512', 'write -b 1 512']
    out = []
    for prog in (our_qemu_io, ref_qemu_io):
        img = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'v.qcow2', '10M')
        r = sh(prog, *io_args(cmds), img)
        with open(img, 'rb') as f:
            out.append((r.rc, normalize(r.out), r.err, f.read()))
        check_clean(ref_qemu_img, img)
        os.unlink(img)
    assert out[0] == out[1]
    raw = tmp_path / 'r.raw'
    raw.write_bytes(b'\0' * MiB)
    a = sh(our_qemu_io, '-f', 'raw', *io_args(cmds[:1] + cmds[2:3]), raw)
    b = sh(ref_qemu_io, '-f', 'raw', *io_args(cmds[:1] + cmds[2:3]), raw)
    same(a, b)


def test_snapshot_keeps_vmstate_apart(tmp_path, our_qemu_img, ref_qemu_img,
                                      our_qemu_io, ref_qemu_io):
    """VM state written before a snapshot belongs to that snapshot: after
    applying another one it is gone, after applying it again it is back."""
    img = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'x.qcow2', '8M')
    assert sh(our_qemu_img, 'snapshot', '-c', 'empty', img).rc == 0
    assert sh(our_qemu_io, '-c', 'write -b -P 9 0 64k', img).rc == 0
    assert sh(our_qemu_img, 'snapshot', '-c', 'state', img).rc == 0
    assert sh(our_qemu_img, 'snapshot', '-a', 'empty', img).rc == 0
    r = sh(ref_qemu_io, '-c', 'read -b -P 0 0 64k', img)
    assert 'failed' not in r.out, r
    assert sh(our_qemu_img, 'snapshot', '-a', 'state', img).rc == 0
    r = sh(ref_qemu_io, '-c', 'read -b -P 9 0 64k', img)
    assert 'failed' not in r.out, r
    check_clean(ref_qemu_img, img)


def test_measure_snapshot_like_reference(tmp_path, our_qemu_img, ref_qemu_img,
                                         ref_qemu_io):
    """measure -l sizes the snapshot's data, not the current state."""
    img = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'x.qcow2',
                    writes=['write 0 1M'])
    assert sh(our_qemu_img, 'snapshot', '-c', 'a', img).rc == 0
    assert sh(ref_qemu_io, '-c', 'write 4M 3M', img).rc == 0
    for args in (['-l', 'a', '-O', 'qcow2'],
                 ['-l', 'snapshot.name=a', '-O', 'raw'],
                 ['--output=json', '-l', '1', '-O', 'qcow2'],
                 ['-l', 'zz', '-O', 'raw']):
        a = sh(our_qemu_img, 'measure', *args, img)
        b = sh(ref_qemu_img, 'measure', *args, img)
        assert (a.rc, a.out, a.err.replace(our_qemu_img, 'qemu-img')) == \
            (b.rc, b.out, b.err.replace(ref_qemu_img, 'qemu-img'))


@pytest.mark.parametrize('opts', ['cluster_size=65536', 'extended_l2=on',
                                  'compat=0.10', 'cluster_size=512',
                                  'refcount_bits=64'])
def test_layout_identical_to_reference(tmp_path, our_qemu_img, ref_qemu_img,
                                       ref_qemu_io, opts):
    """Once every snapshot is gone again (dates no longer in the file),
    Strata's image is byte for byte the reference's: same clusters chosen
    for tables, same refcounts, same header."""
    files = []
    for prog in (our_qemu_img, ref_qemu_img):
        img = str(tmp_path / f'{len(files)}')
        assert sh(ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o', opts,
                  img, '64M').rc == 0
        # (no compressed writes: the reference places those in the order
        # its parallel requests finish)
        assert sh(ref_qemu_io, *io_args(['write -P 1 0 1M',
                                         'write -P 2 8M 64k']),
                  img).rc == 0
        for step in (['-c', 'a'], 'write -P 3 0 64k', ['-c', 'b'],
                     ['-a', 'a'], 'write -P 4 8M 4k', ['-d', 'b'],
                     ['-d', 'a']):
            if isinstance(step, str):
                assert sh(ref_qemu_io, '-c', step, img).rc == 0
            else:
                assert sh(prog, 'snapshot', *step, img).rc == 0
        files.append(open(img, 'rb').read())
    assert files[0] == files[1]


def full_table(path, target):
    """A snapshot table of @target bytes at 1 MiB, entries with long IDs
    and names (64 KiB each at most); returns the entry count."""
    def entry(n, strlen):
        idb = (b'%d' % n).ljust(min(strlen // 2, 65535), b'i')
        name = b'n' * (strlen - len(idb))
        return (struct.pack('>QIHHIIQII', 0, 0, len(idb), len(name), 0, 0,
                            0, 0, 24) + struct.pack('>QQQ', 0, 64 * MiB, 0) +
                idb + name)
    buf, n = bytearray(), 0
    while True:
        start = (len(buf) + 7) & ~7
        rest = target - start - 64
        take = rest if rest <= 2 * 65535 else min(2 * 65535, rest - 200)
        buf += b'\0' * (start - len(buf)) + entry(n + 1, take)
        n += 1
        if take == rest:
            break
    with open(path, 'r+b') as f:
        f.seek(MiB)
        f.write(buf)
        f.seek(60)
        f.write(struct.pack('>IQ', n, MiB))
    return n


def test_table_size_limit_on_create(tmp_path, our_qemu_img, ref_qemu_img,
                                    ref_qemu_io):
    """A table 16 bytes short of 64 MiB opens; one more snapshot would
    pass the limit and is refused (File too large), the raised counts
    left as leaks, as the reference leaves them."""
    base = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'b.qcow2')
    full_table(base, 64 * MiB - 16)
    res = []
    for prog in (our_qemu_img, ref_qemu_img):
        img = tmp_path / 'w.qcow2'
        shutil.copy(base, img)
        r = sh(prog, 'snapshot', '-c', 'new', img)
        c = sh(ref_qemu_img, 'check', img)
        res.append((r.rc, r.out, r.err.replace(prog, 'qemu-img'), c.rc,
                    c.out))
        img.unlink()
    assert res[0] == res[1]
    assert 'File too large' in res[0][2]


@pytest.mark.parametrize('seed', range(
    20 if os.environ.get('STRATA_SLOW') == '1' else 3))
def test_random_mix_like_reference(tmp_path, our_qemu_img, ref_qemu_img,
                                   our_qemu_io, ref_qemu_io, seed):
    """Seeded random writes, zero writes, discards and compressed writes
    (by each tool's own qemu-io) between snapshot operations: the guest
    data, the snapshots' data and the listing stay the reference's, and
    every check is clean."""
    import random
    rnd = random.Random(seed)
    imgs = {}
    for prog in ('ours', 'ref'):
        imgs[prog] = new_image(ref_qemu_img, ref_qemu_io,
                               tmp_path / f'{prog}.qcow2', '8M')
    names = []
    for step in range(24):
        kind = rnd.choice(['io', 'io', 'c', 'a', 'd'])
        if kind == 'io':
            cmds = []
            for _ in range(rnd.randrange(1, 5)):
                off = rnd.randrange(0, 128) * 64 * 1024
                ln = rnd.choice([4096, 65536, 131072])
                cmds.append(rnd.choice([
                    f'write -P {rnd.randrange(1, 250)} {off} {ln}',
                    f'write -z {off} {ln}', f'write -z -u {off} {ln}',
                    f'discard {off} {ln}',
                    f'write -c -P {rnd.randrange(1, 250)} {off} 65536']))
            res = []
            for prog, io in (('ours', our_qemu_io), ('ref', ref_qemu_io)):
                r = sh(io, *io_args(cmds), imgs[prog])
                res.append((r.rc, normalize(r.out)))
            # (compressed writes fail on allocated clusters in both)
            assert res[0] == res[1]
            continue
        if kind == 'c':
            names.append(f's{step}')
            args = ['-c', names[-1]]
        elif not names:
            continue
        else:
            args = [f'-{kind}', rnd.choice(names)]
            if kind == 'd':
                names.remove(args[1])
        a = sh(our_qemu_img, 'snapshot', *args, imgs['ours'])
        b = sh(ref_qemu_img, 'snapshot', *args, imgs['ref'])
        assert (a.rc, a.err.replace(our_qemu_img, 'qemu-img')) == \
            (b.rc, b.err.replace(ref_qemu_img, 'qemu-img'))
        check_clean(ref_qemu_img, imgs['ours'])
        assert sh(ref_qemu_img, 'compare', imgs['ours'], imgs['ref']).rc == 0
    assert listing(our_qemu_img, imgs['ours']) == \
        listing(ref_qemu_img, imgs['ref'])
    for n in names:
        outs = []
        for prog in ('ours', 'ref'):
            out = str(tmp_path / f'{prog}-{n}.raw')
            assert sh(ref_qemu_img, 'convert', '-l', n, '-O', 'raw',
                      imgs[prog], out).rc == 0
            outs.append(out)
        assert sh(ref_qemu_img, 'compare', '-f', 'raw', '-F', 'raw',
                  *outs).rc == 0


def test_backing_chain_info_lists_each_layers_snapshots(
        tmp_path, our_qemu_img, ref_qemu_img, ref_qemu_io):
    """info --backing-chain shows every layer's own snapshot list."""
    base = new_image(ref_qemu_img, ref_qemu_io, tmp_path / 'base.qcow2',
                     writes=['write -P 1 0 64k'])
    assert sh(our_qemu_img, 'snapshot', '-c', 'in-base', base).rc == 0
    top = str(tmp_path / 'top.qcow2')
    assert sh(ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-b', base, '-F',
              'qcow2', top).rc == 0
    assert sh(our_qemu_img, 'snapshot', '-c', 'in-top', top).rc == 0
    for args in (['info', '--backing-chain'],
                 ['info', '--backing-chain', '--output=json']):
        same(sh(our_qemu_img, *args, top), sh(ref_qemu_img, *args, top))
