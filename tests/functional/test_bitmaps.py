"""Persistent dirty bitmaps: `bitmap`, `convert --bitmaps`, `measure`,
`info`/`check` of the qcow2 bitmaps extension, against the reference
qemu-img / qemu-io 10.0.

A scenario runs the same steps with the reference tools in one directory
and with ours (under the reference's names) in another, from the same
images; every step must print the same and exit alike, and afterwards the
bitmaps read straight from the two files (names, granularities, flags and
every dirty granule) must be equal, the reference's check must find ours
clean and its compare identical to its own."""
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time

import pytest

from conftest import normalize, run

BITMAPS_MAGIC = 0x23852875
NODE = re.compile(r"#block\d+")


def bitmaps_of(path):
    """{name: (granularity, flags, [dirty granules])} of a qcow2 image,
    parsed from the file (qcow2.txt: bitmaps extension, directory, tables,
    data clusters with the first granule in the least significant bit)."""
    with open(path, 'rb') as f:
        hdr = f.read(112)
        csize = 1 << struct.unpack('>I', hdr[20:24])[0]
        vsize = struct.unpack('>Q', hdr[24:32])[0]
        hlen = struct.unpack('>I', hdr[100:104])[0]
        f.seek(0)
        h = f.read(csize)
        ext, off = None, hlen
        while off + 8 <= csize:
            magic, length = struct.unpack('>II', h[off:off + 8])
            if magic == 0:
                break
            if magic == BITMAPS_MAGIC:
                ext = struct.unpack('>IIQQ', h[off + 8:off + 32])
            off += 8 + ((length + 7) & ~7)
        if ext is None:
            return {}
        nb, _, dsize, doff = ext
        f.seek(doff)
        d = f.read(dsize)
        out, p = {}, 0
        for _ in range(nb):
            toff, tsize, flags, _, gb, nsize, esize = struct.unpack(
                '>QIIBBHI', d[p:p + 24])
            name = d[p + 24 + esize:p + 24 + esize + nsize].decode()
            p += (24 + esize + nsize + 7) & ~7
            f.seek(toff)
            table = struct.unpack('>%dQ' % tsize, f.read(8 * tsize))
            ngran = -(-vsize // (1 << gb))
            bits = []
            for i, e in enumerate(table):
                base, data_off = i * csize * 8, e & 0x00fffffffffffe00
                if data_off:
                    f.seek(data_off)
                    data = f.read(csize)
                    bits += [base + j * 8 + b for j, byte in enumerate(data)
                             if byte for b in range(8)
                             if byte >> b & 1 and base + j * 8 + b < ngran]
                elif e & 1:
                    bits += range(base, min(base + csize * 8, ngran))
            out[name] = (1 << gb, flags, bits)
        return out


def set_flags(path, index, flags):
    """Overwrite the flags of directory entry @index."""
    with open(path, 'r+b') as f:
        doff = _dir_offset(f)
        f.seek(doff)
        d = f.read(1 << 20)
        p = 0
        for _ in range(index):
            nsize, esize = struct.unpack('>HI', d[p + 18:p + 24])
            p += (24 + nsize + esize + 7) & ~7
        f.seek(doff + p + 12)
        f.write(struct.pack('>I', flags))


def _dir_offset(f):
    f.seek(0)
    h = f.read(65536)
    off = struct.unpack('>I', h[100:104])[0]
    while True:
        magic, length = struct.unpack('>II', h[off:off + 8])
        assert magic, 'no bitmaps extension'
        if magic == BITMAPS_MAGIC:
            return struct.unpack('>Q', h[off + 24:off + 32])[0]
        off += 8 + ((length + 7) & ~7)


def poke(path, offset, fmt, value):
    with open(path, 'r+b') as f:
        f.seek(offset)
        f.write(struct.pack('>' + fmt, value))


class Tools:
    def __init__(self, img, io, d):
        self.img, self.io, self.dir = img, io, d

    def run(self, step):
        kind, args = step
        prog = self.img if kind == 'img' else self.io
        r = run([prog] + list(args), cwd=self.dir)
        name = os.path.basename(prog)
        clean = lambda s: NODE.sub('#node', normalize(
            s.replace(prog, name)))
        return r.rc, clean(r.out), clean(r.err)


@pytest.fixture
def pair(tmp_path, our_qemu_img, our_qemu_io, ref_qemu_img, ref_qemu_io):
    """The reference's tools and ours, each with a directory of its own."""
    ref = Tools(ref_qemu_img, ref_qemu_io, str(tmp_path / 'ref'))
    our = Tools(our_qemu_img, our_qemu_io, str(tmp_path / 'our'))
    os.mkdir(ref.dir)
    os.mkdir(our.dir)
    return ref, our


def both(pair, steps):
    """Run @steps with both; every step prints the same."""
    ref, our = pair
    for step in steps:
        assert our.run(step) == ref.run(step), step


def create(pair, name, size='10M', opts=None):
    """The same image in both directories, made by the reference."""
    ref, our = pair
    args = ['create', '-f', 'qcow2'] + (['-o', opts] if opts else [])
    assert run([ref.img] + args + [name, size], cwd=ref.dir).rc == 0
    shutil.copyfile(os.path.join(ref.dir, name), os.path.join(our.dir, name))


def copy_in(pair, name):
    ref, our = pair
    shutil.copyfile(os.path.join(ref.dir, name), os.path.join(our.dir, name))


def assert_same_images(pair, name, ref_qemu_img):
    ref, our = pair
    ours, theirs = os.path.join(our.dir, name), os.path.join(ref.dir, name)
    assert bitmaps_of(ours) == bitmaps_of(theirs)
    chk = run([ref_qemu_img, 'check', ours])
    assert chk.rc == 0, chk
    assert run([ref_qemu_img, 'compare', ours, theirs]).rc == 0
    info = [json.loads(run([ref_qemu_img, 'info', '--output=json', name],
                           cwd=d).out) for d in (our.dir, ref.dir)]
    assert info[0]['format-specific'] == info[1]['format-specific']


def img(*a):
    return ('img', a)


def io(name, *cmds):
    return ('io', sum((['-c', c] for c in cmds), []) + [name])


# ---- operations, compared with the reference ----

def test_add_write_merge(pair, ref_qemu_img):
    create(pair, 'a.qcow2')
    both(pair, [
        img('bitmap', '--add', 'a.qcow2', 'b1'),
        img('bitmap', '--add', '-g', '128k', '--disable', 'a.qcow2', 'b2'),
        io('a.qcow2', 'write 0 1M', 'write 5M 100k', 'discard 8M 64k'),
        img('bitmap', '--add', '-g', '512', 'a.qcow2', 'b3'),
        io('a.qcow2', 'write 4000 1000', 'write -z 9M 512'),
        img('bitmap', '--merge', 'b1', 'a.qcow2', 'b2'),
        img('info', 'a.qcow2'),
        img('check', 'a.qcow2'),
    ])
    assert_same_images(pair, 'a.qcow2', ref_qemu_img)
    assert len(bitmaps_of(os.path.join(pair[1].dir, 'a.qcow2'))['b3'][2]) == 4


def test_several_actions_in_order(pair, ref_qemu_img):
    create(pair, 'a.qcow2', '4M')
    both(pair, [
        img('bitmap', '--add', '--disable', 'a.qcow2', 'x'),
        io('a.qcow2', 'write 0 64k'),
        img('bitmap', '--enable', '--add', 'a.qcow2', 'x'),   # add fails
        io('a.qcow2', 'write 1M 64k'),
        img('bitmap', '--disable', '--add', 'a.qcow2', 'y'),  # not found
        img('bitmap', '--add', '--clear', '--disable', 'a.qcow2', 'y'),
        io('a.qcow2', 'write 2M 64k'),
        img('bitmap', '--clear', '--enable', 'a.qcow2', 'x'),
        io('a.qcow2', 'write 3M 64k'),
        img('bitmap', '--add', '-g', '1M', 'a.qcow2', 'z', '--remove'),
        img('bitmap', '--remove', 'a.qcow2', 'z'),
        img('info', 'a.qcow2'),
    ])
    assert_same_images(pair, 'a.qcow2', ref_qemu_img)


@pytest.mark.parametrize('args', [
    ['--add', 'a.qcow2', ''],
    ['--add', '-g', '1000', 'a.qcow2', 'b'],
    ['--add', '-g', '256', 'a.qcow2', 'b'],
    ['--add', '-g', '4G', 'a.qcow2', 'b'],
    ['--add', 'a.qcow2', 'n' * 1024],
    ['--add', 'a.qcow2', 'n' * 1023],
    ['--add', '-g', '2G', 'a.qcow2', 'big'],
    ['--remove', 'a.qcow2', 'nope'],
    ['--clear', 'a.qcow2', 'nope'],
    ['--enable', 'a.qcow2', 'nope'],
    ['--disable', 'a.qcow2', 'nope'],
    ['--merge', 'b0', 'a.qcow2', 'nope'],
    ['--merge', 'nope', 'a.qcow2', 'b0'],
    ['--merge', 'b0', '-b', 'missing.qcow2', 'a.qcow2', 'b0'],
    ['--add', 'v2.qcow2', 'b'],
    ['--add', '-f', 'raw', 'r.raw', 'b'],
    ['--remove', '-f', 'raw', 'r.raw', 'b'],
])
def test_errors(pair, ref_qemu_img, args):
    create(pair, 'a.qcow2', '4M')
    create(pair, 'v2.qcow2', '4M', 'compat=0.10')
    for d in (pair[0].dir, pair[1].dir):
        open(os.path.join(d, 'r.raw'), 'wb').truncate(1 << 20)
    both(pair, [img('bitmap', '--add', 'a.qcow2', 'b0'),
                img('bitmap', *args), img('info', 'a.qcow2')])
    assert_same_images(pair, 'a.qcow2', ref_qemu_img)


def test_size_limits(pair):
    """The largest bitmap the format takes (512 MiB of bits) and one
    granule more."""
    create(pair, 'big.qcow2', '2T', 'cluster_size=2M')
    both(pair, [img('bitmap', '--add', '-g', '512', 'big.qcow2', 'b1'),
                img('resize', 'big.qcow2', '+512'),
                img('bitmap', '--add', '-g', '512', 'big.qcow2', 'b2'),
                img('info', 'big.qcow2'),
                img('measure', '-O', 'qcow2', 'big.qcow2')])


def test_default_granularity(pair):
    for cs in ('512', '4k', '64k', '2M'):
        create(pair, f'c{cs}.qcow2', '4M', f'cluster_size={cs}')
        both(pair, [img('bitmap', '--add', f'c{cs}.qcow2', 'b'),
                    img('info', f'c{cs}.qcow2')])


def test_merge_across_images(pair, ref_qemu_img):
    create(pair, 'a.qcow2', '8M')
    create(pair, 'src.qcow2', '8M')
    create(pair, 'other.qcow2', '16M')
    both(pair, [
        img('bitmap', '--add', 'a.qcow2', 'dst'),
        img('bitmap', '--add', '-g', '4k', 'src.qcow2', 's'),
        img('bitmap', '--add', 'other.qcow2', 'o'),
        io('src.qcow2', 'write 100k 8k', 'write 7M 1M'),
        io('a.qcow2', 'write 3M 64k'),
        img('bitmap', '--merge', 's', '-b', 'src.qcow2', '-F', 'qcow2',
            'a.qcow2', 'dst'),
        img('bitmap', '--merge', 'o', '-b', 'other.qcow2', 'a.qcow2', 'dst'),
        img('bitmap', '--merge', 'nope', '-b', 'src.qcow2', 'a.qcow2', 'dst'),
    ])
    for name in ('a.qcow2', 'src.qcow2', 'other.qcow2'):
        assert_same_images(pair, name, ref_qemu_img)


def test_reopen(pair, ref_qemu_img):
    """Opened read-only, reopened read-write: bitmaps marked in-use, the
    bits on disk kept and the new ones added; back to read-only: stored."""
    create(pair, 'a.qcow2', '4M')
    both(pair, [img('bitmap', '--add', 'a.qcow2', 'b'),
                io('a.qcow2', 'write 0 64k'),
                ('io', ['-r', '-c', 'reopen -w', '-c', 'write 1M 64k', '-c',
                        'reopen -r', '-c', 'read 0 4k', 'a.qcow2']),
                img('info', '-U', 'a.qcow2'),
                ('io', ['-r', '-c', 'reopen -w', '-c', 'write 2M 64k',
                        'a.qcow2'])])
    assert_same_images(pair, 'a.qcow2', ref_qemu_img)


def test_resize(pair, ref_qemu_img):
    """Bitmaps follow the image's size, growing and shrinking."""
    create(pair, 'a.qcow2', '4M')
    both(pair, [img('bitmap', '--add', '-g', '4k', 'a.qcow2', 'b'),
                io('a.qcow2', 'write 3M 1M'),
                img('resize', 'a.qcow2', '9M'),
                io('a.qcow2', 'write 8M 64k'),
                img('resize', '--shrink', 'a.qcow2', '3584k'),
                io('a.qcow2', 'write 1M 4k'),
                img('info', 'a.qcow2')])
    assert_same_images(pair, 'a.qcow2', ref_qemu_img)


def _random_steps(rng, n):
    """@n random bitmap actions and writes on r.qcow2 (8 MiB)."""
    names = ['a', 'b', 'c']
    steps = []
    for _ in range(n):
        k = rng.randrange(8)
        name = rng.choice(names)
        if k == 0:
            g = rng.choice(['512', '4k', '64k', '1M'])
            steps.append(img('bitmap', '--add', '-g', g, 'r.qcow2', name))
        elif k == 1:
            steps.append(img('bitmap', rng.choice(['--remove', '--clear']),
                             'r.qcow2', name))
        elif k == 2:
            steps.append(img('bitmap', rng.choice(['--enable', '--disable']),
                             'r.qcow2', name))
        elif k == 3:
            steps.append(img('bitmap', '--merge', rng.choice(names),
                             'r.qcow2', name))
        else:
            cmds = []
            for _ in range(rng.randrange(1, 4)):
                off = rng.randrange(8 << 20)
                ln = rng.randrange(1, 300 << 10)
                ln = min(ln, (8 << 20) - off)
                op = rng.choice(['write', 'write -z', 'discard'])
                cmds.append(f'{op} {off} {ln}')
            steps.append(io('r.qcow2', *cmds))
    return steps


@pytest.mark.parametrize('seed', [1, 2, 3])
def test_random_sequences(pair, ref_qemu_img, seed):
    import random
    rng = random.Random(seed)
    create(pair, 'r.qcow2', '8M')
    both(pair, _random_steps(rng, 24) + [img('info', 'r.qcow2'),
                                         img('check', 'r.qcow2')])
    assert_same_images(pair, 'r.qcow2', ref_qemu_img)


# ---- inconsistent bitmaps ----

@pytest.fixture
def inuse(pair):
    """b1 marked in-use in the image (as a crash leaves it), b2 fine."""
    create(pair, 'i.qcow2', '4M')
    both(pair, [img('bitmap', '--add', 'i.qcow2', 'b1'),
                img('bitmap', '--add', '-g', '128k', 'i.qcow2', 'b2'),
                io('i.qcow2', 'write 64k 64k')])
    for t in pair:
        set_flags(os.path.join(t.dir, 'i.qcow2'), 0, 3)
    return pair


@pytest.mark.parametrize('args', [
    ['info', 'i.qcow2'], ['info', '--output=json', 'i.qcow2'],
    ['check', 'i.qcow2'], ['check', '--output=json', 'i.qcow2'],
    ['bitmap', '--clear', 'i.qcow2', 'b1'],
    ['bitmap', '--enable', 'i.qcow2', 'b1'],
    ['bitmap', '--disable', 'i.qcow2', 'b1'],
    ['bitmap', '--merge', 'b2', 'i.qcow2', 'b1'],
    ['bitmap', '--merge', 'b1', 'i.qcow2', 'b2'],
    ['convert', '--bitmaps', '-O', 'qcow2', 'i.qcow2', 'o.qcow2'],
    ['convert', '--bitmaps', '--skip-broken-bitmaps', '-O', 'qcow2',
     'i.qcow2', 'o.qcow2'],
    ['measure', '-O', 'qcow2', 'i.qcow2'],
])
def test_inconsistent(inuse, ref_qemu_img, args):
    both(inuse, [img(*args), img('info', 'i.qcow2')])
    assert_same_images(inuse, 'i.qcow2', ref_qemu_img)
    if os.path.exists(os.path.join(inuse[0].dir, 'o.qcow2')):
        assert_same_images(inuse, 'o.qcow2', ref_qemu_img)


def test_inconsistent_kept_then_removed(inuse, ref_qemu_img):
    both(inuse, [io('i.qcow2', 'write 1M 64k'),
                 img('info', 'i.qcow2'),
                 img('bitmap', '--remove', 'i.qcow2', 'b1'),
                 img('info', 'i.qcow2'), img('check', 'i.qcow2')])
    assert_same_images(inuse, 'i.qcow2', ref_qemu_img)


def test_all_inconsistent(inuse, ref_qemu_img):
    """Only inconsistent bitmaps: a writer leaves the directory alone."""
    for t in inuse:
        set_flags(os.path.join(t.dir, 'i.qcow2'), 1, 1)
    both(inuse, [io('i.qcow2', 'write 2M 64k'), img('info', 'i.qcow2'),
                 img('check', 'i.qcow2'),
                 img('bitmap', '--add', 'i.qcow2', 'new'),
                 img('info', 'i.qcow2')])
    assert_same_images(inuse, 'i.qcow2', ref_qemu_img)


def test_reference_order(pair, ref_qemu_img):
    """Bitmaps are walked newest first, as the reference does: which
    inconsistent one convert names first, the order of its warnings, and
    where new bitmaps land in the directory."""
    create(pair, 'o.qcow2', '10M')
    both(pair, [img('bitmap', '--add', '-g', '512k', 'o.qcow2', 'b1'),
                img('bitmap', '--add', '--disable', 'o.qcow2', 'b2'),
                img('bitmap', '--add', '--disable', 'o.qcow2', 'b0'),
                io('o.qcow2', 'write 3M 1M')])
    for t in pair:
        for i in range(3):
            set_flags(os.path.join(t.dir, 'o.qcow2'), i, 1)
    both(pair, [img('bitmap', '--add', 'o.qcow2', 'b4'),
                img('bitmap', '--remove', 'o.qcow2', 'b1'),
                img('info', 'o.qcow2'),
                img('convert', '--bitmaps', '-O', 'qcow2', 'o.qcow2',
                    'c.qcow2'),
                img('convert', '--bitmaps', '--skip-broken-bitmaps', '-O',
                    'qcow2', 'o.qcow2', 'c.qcow2'),
                img('info', 'c.qcow2'),
                img('bitmap', '--remove', 'o.qcow2', 'b0'),
                img('bitmap', '--remove', '--add', 'o.qcow2', 'b2'),
                img('convert', '--bitmaps', '-O', 'qcow2', 'o.qcow2',
                    'd.qcow2'),
                img('info', 'd.qcow2')])
    for name in ('o.qcow2', 'c.qcow2', 'd.qcow2'):
        assert_same_images(pair, name, ref_qemu_img)


def test_autoclear_cleared(pair, ref_qemu_img):
    """A program without bitmap support cleared the autoclear bit: the
    bitmaps are ignored with a warning, then dropped by a writer."""
    create(pair, 'a.qcow2', '4M')
    both(pair, [img('bitmap', '--add', 'a.qcow2', 'b1'),
                io('a.qcow2', 'write 0 64k')])
    for t in pair:
        poke(os.path.join(t.dir, 'a.qcow2'), 88, 'Q', 0)
    both(pair, [img('info', 'a.qcow2'), img('check', 'a.qcow2'),
                io('a.qcow2', 'write 1M 64k'), img('info', 'a.qcow2'),
                img('check', 'a.qcow2'),
                img('bitmap', '--add', 'a.qcow2', 'n'),
                img('info', 'a.qcow2')])
    assert bitmaps_of(os.path.join(pair[1].dir, 'a.qcow2')) == \
        bitmaps_of(os.path.join(pair[0].dir, 'a.qcow2'))


# ---- convert --bitmaps and measure ----

@pytest.fixture
def marked(pair):
    create(pair, 'm.qcow2', '12M')
    both(pair, [img('bitmap', '--add', 'm.qcow2', 'one'),
                img('bitmap', '--add', '-g', '1k', '--disable', 'm.qcow2',
                    'two'),
                io('m.qcow2', 'write 0 3M', 'write 11M 5k'),
                img('bitmap', '--enable', 'm.qcow2', 'two'),
                io('m.qcow2', 'write 6M 1k')])
    return pair


@pytest.mark.parametrize('args', [
    ['-O', 'qcow2'], ['-O', 'qcow2', '-o', 'cluster_size=4k'],
    ['-O', 'qcow2', '-c'], ['-O', 'raw'], ['-O', 'qcow2', '-o',
                                           'compat=0.10'],
])
def test_convert_bitmaps(marked, ref_qemu_img, args):
    both(marked, [img('convert', '--bitmaps', *args, 'm.qcow2', 'o.img'),
                  img('info', 'o.img')])
    ref, our = marked
    if args[1] == 'qcow2' and 'compat=0.10' not in args:
        assert_same_images(marked, 'o.img', ref_qemu_img)
        assert set(bitmaps_of(os.path.join(our.dir, 'o.img'))) == \
            {'one', 'two'}


def test_convert_bitmaps_from_raw(pair):
    for t in pair:
        open(os.path.join(t.dir, 'r.raw'), 'wb').truncate(1 << 20)
    both(pair, [img('convert', '--bitmaps', '-O', 'qcow2', 'r.raw',
                    'o.qcow2')])


def test_interop(marked, ref_qemu_img, our_qemu_img):
    """The reference copies our bitmaps, we copy the reference's."""
    ref, our = marked
    for prog, src_dir, name in ((ref_qemu_img, our.dir, 'x1.qcow2'),
                                (our_qemu_img, ref.dir, 'x2.qcow2')):
        out = os.path.join(src_dir, name)
        r = run([prog, 'convert', '--bitmaps', '-O', 'qcow2',
                 os.path.join(src_dir, 'm.qcow2'), out])
        assert r.rc == 0, r
        assert bitmaps_of(out) == bitmaps_of(os.path.join(ref.dir, 'm.qcow2'))
        assert run([ref_qemu_img, 'check', out]).rc == 0


@pytest.mark.parametrize('opts', ['', 'cluster_size=4k',
                                  'cluster_size=2M', 'compat=0.10',
                                  'compat=1.1,cluster_size=2M'])
def test_measure(marked, opts):
    extra = ['-o', opts] if opts else []
    both(marked, [img('measure', '-O', 'qcow2', *extra, 'm.qcow2'),
                  img('measure', '--output=json', '-O', 'qcow2', *extra,
                      'm.qcow2'),
                  img('measure', '-O', 'raw', 'm.qcow2')])


# ---- hostile directories and tables ----

def _entry(pair, name):
    """(directory offset, table offset) of the first bitmap."""
    with open(os.path.join(pair[0].dir, name), 'rb') as f:
        doff = _dir_offset(f)
        f.seek(doff)
        return doff, struct.unpack('>Q', f.read(8))[0]


HOSTILE = {
    'table_all_ones': lambda d, t: [(t, 'Q', 1)],
    'tables_shared': lambda d, t: [(d + 32, 'Q', t)],
    'table_is_l1': lambda d, t: [(d, 'Q', 0x30000)],
    'table_is_refcount_block': lambda d, t: [(d, 'Q', 0x20000)],
    'data_is_refcount_table': lambda d, t: [(t, 'Q', 0x10000)],
    'data_is_directory': lambda d, t: [(t, 'Q', d)],
    'table_reserved_bits': lambda d, t: [(t, 'Q', 0x50002)],
    'table_unaligned': lambda d, t: [(t, 'Q', 0x50200)],
    'table_all_ones_with_offset': lambda d, t: [(t, 'Q', 0x50001)],
    'table_beyond_eof': lambda d, t: [(t, 'Q', 1 << 40)],
    'table_size_mismatch': lambda d, t: [(d + 8, 'I', 2)],
    'table_too_small': lambda d, t: [(d + 17, 'B', 9)],
    'table_size_zero': lambda d, t: [(d + 8, 'I', 0)],
    'table_size_huge': lambda d, t: [(d + 8, 'I', 0x8000001)],
    'table_offset_zero': lambda d, t: [(d, 'Q', 0)],
    'table_offset_unaligned': lambda d, t: [(d, 'Q', t + 8)],
    'unknown_flag': lambda d, t: [(d + 12, 'I', 4)],
    'bad_type': lambda d, t: [(d + 16, 'B', 2)],
    'granularity_small': lambda d, t: [(d + 17, 'B', 8)],
    'granularity_large': lambda d, t: [(d + 17, 'B', 32)],
    'extra_data': lambda d, t: [(d + 20, 'I', 8)],
    'name_too_long': lambda d, t: [(d + 18, 'H', 1024)],
    'name_past_dir': lambda d, t: [(d + 18, 'H', 200)],
}


@pytest.mark.parametrize('case', sorted(HOSTILE))
def test_hostile_directory(pair, case):
    create(pair, 'h.qcow2', '4M')
    both(pair, [img('bitmap', '--add', 'h.qcow2', 'b1'),
                img('bitmap', '--add', 'h.qcow2', 'b2'),
                io('h.qcow2', 'write 0 64k')])
    doff, toff = _entry(pair, 'h.qcow2')
    for t in pair:
        for off, fmt, val in HOSTILE[case](doff, toff):
            poke(os.path.join(t.dir, 'h.qcow2'), off, fmt, val)
    both(pair, [img('info', 'h.qcow2'), img('check', 'h.qcow2'),
                img('convert', '--bitmaps', '-O', 'qcow2', 'h.qcow2',
                    'o.qcow2'),
                io('h.qcow2', 'write 1M 64k'), img('check', 'h.qcow2')])
    if os.path.exists(os.path.join(pair[0].dir, 'o.qcow2')):
        assert bitmaps_of(os.path.join(pair[1].dir, 'o.qcow2')) == \
            bitmaps_of(os.path.join(pair[0].dir, 'o.qcow2'))


@pytest.mark.parametrize('field,value,autoclear', [
    (0, 3, 1), (0, 1, 1), (8, 64, 1), (-4, 16, 1), (-4, 16, 0), (-4, 32, 0),
    (0, 0, 1), (4, 1, 1), (0, 65536, 1), (8, 0, 1), (8, 1 << 30, 1),
    (16, 0x10200, 1)])
def test_hostile_counts(pair, field, value, autoclear):
    """The extension's length, count or directory size or offset
    disagreeing with the directory or out of range, with the autoclear bit
    set or clear."""
    create(pair, 'h.qcow2', '4M')
    both(pair, [img('bitmap', '--add', 'h.qcow2', 'b1'),
                img('bitmap', '--add', 'h.qcow2', 'b2')])
    for t in pair:
        path = os.path.join(t.dir, 'h.qcow2')
        with open(path, 'rb') as f:
            h = f.read(65536)
        off = struct.unpack('>I', h[100:104])[0]
        while struct.unpack('>I', h[off:off + 4])[0] != BITMAPS_MAGIC:
            off += 8 + ((struct.unpack('>I', h[off + 4:off + 8])[0] + 7) & ~7)
        poke(path, off + 8 + field, 'Q' if field in (8, 16) else 'I', value)
        poke(path, 88, 'Q', autoclear)
    both(pair, [img('info', 'h.qcow2'), img('check', 'h.qcow2')])


def test_hostile_shared_huge_tables(tmp_path, our_qemu_img, our_qemu_io):
    """Many entries naming one table of the largest size a 2 TiB image
    with 4 KiB clusters allows (512 MiB of bits each): info ends within
    OpenStack's limits (1 GiB, 2 s CPU)."""
    path = str(tmp_path / 'h.qcow2')
    assert run([our_qemu_img, 'create', '-f', 'qcow2', '-o',
                'cluster_size=4k', path, '2T']).rc == 0
    nb = 4000
    ents = b''.join(struct.pack('>QIIBBHI', 1 << 20, 1 << 17, 2, 1, 9, 5, 0)
                    + b'%05d' % i + b'\0' * 3 for i in range(nb))
    with open(path, 'r+b') as f:
        f.seek(2 << 20)
        f.write(ents)
        f.seek(88)
        f.write(struct.pack('>Q', 1))
        f.seek(112)
        f.write(struct.pack('>II', BITMAPS_MAGIC, 24) +
                struct.pack('>IIQQ', nb, 0, len(ents), 2 << 20) +
                b'\0' * 8)
    lim = ['prlimit', '--cpu=2']
    with open(os.path.realpath(our_qemu_img), 'rb') as f:
        if b'__asan_init' not in f.read():
            lim.append('--as=1073741824')
    t0 = time.time()
    r = run(lim + [our_qemu_img, 'info', path], timeout=60)
    assert r.rc in (0, 1) and time.time() - t0 < 10, r
    # a writer opens it too: the bits of all-clear tables take no memory
    r = run(lim + [our_qemu_io, '-c', 'read 0 512', path], timeout=60)
    assert r.rc in (0, 1) and 'Cannot allocate memory' in r.err, r


@pytest.mark.parametrize('event,errno', [('cluster_alloc', 28),
                                         ('pwritev', 5)])
def test_store_fails(pair, ref_qemu_img, event, errno):
    """Writing the bitmaps fails (blkdebug): the reference's messages and
    exit status, and an image its check finds clean."""
    create(pair, 'e.qcow2', '4M')
    for t in pair:
        with open(os.path.join(t.dir, 'bd.conf'), 'w') as f:
            f.write(f'[inject-error]\nevent = "{event}"\n'
                    f'errno = "{errno}"\n')
    both(pair, [img('bitmap', '--add', 'e.qcow2', 'keep'),
                img('bitmap', '--add', 'blkdebug:bd.conf:e.qcow2', 'b'),
                img('info', 'e.qcow2'), img('check', 'e.qcow2')])


# ---- crashes ----

def _start_io(prog, path):
    return subprocess.Popen([prog, path], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_sigkill_while_open(tmp_path, our_qemu_io, our_qemu_img,
                            ref_qemu_img, ref_qemu_io):
    """A writer killed with bitmaps open leaves them in-use (inconsistent)
    and the image clean for the reference's check; the data written is
    there; the bitmaps can then be removed."""
    path = str(tmp_path / 'k.qcow2')
    assert run([ref_qemu_img, 'create', '-f', 'qcow2', path, '4M']).rc == 0
    assert run([our_qemu_img, 'bitmap', '--add', path, 'b']).rc == 0
    p = _start_io(our_qemu_io, path)
    p.stdin.write('write -P 7 0 64k\nflush\nread 0 512\n')
    p.stdin.flush()
    deadline = time.time() + 60
    line = ''
    while 'read 512/512' not in line and time.time() < deadline:
        line = p.stdout.readline()      # the flush is done after this
    p.send_signal(signal.SIGKILL)
    p.wait()
    chk = run([ref_qemu_img, 'check', path])
    assert chk.rc in (0, 3), chk
    info = run([ref_qemu_img, 'info', path])
    assert 'in-use' in info.out
    assert run([our_qemu_img, 'info', path]).out == info.out
    assert run([ref_qemu_io, '-c', 'read -P 7 0 64k', path]).rc == 0
    assert run([our_qemu_img, 'bitmap', '--remove', path, 'b']).rc == 0
    assert bitmaps_of(path) == {}
    assert run([ref_qemu_img, 'check', path]).rc in (0, 3)


def test_sigkill_during_bitmap_ops(tmp_path, our_qemu_img, ref_qemu_img):
    """strata-img bitmap killed at varying moments: the image stays valid
    for the reference (leaks allowed), and a bitmap is either as before,
    in-use, or as after."""
    base = str(tmp_path / 'base.qcow2')
    assert run([ref_qemu_img, 'create', '-f', 'qcow2', base, '64G']).rc == 0
    assert run([ref_qemu_img, 'bitmap', '--add', '-g', '512', base,
                'big']).rc == 0
    path = str(tmp_path / 'k.qcow2')
    argv = [our_qemu_img, 'bitmap', '--add', path, 'n']
    shutil.copyfile(base, path)
    t0 = time.time()
    assert run(argv).rc == 0
    took = time.time() - t0
    for i in range(12):
        shutil.copyfile(base, path)
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(took * i / 12)        # from its start to its end
        p.send_signal(signal.SIGKILL)
        p.wait()
        chk = run([ref_qemu_img, 'check', path])
        assert chk.rc in (0, 3), chk
        info = run([ref_qemu_img, 'info', '--output=json', path])
        assert info.rc == 0, info
        names = set(bitmaps_of(path))
        assert names in ({'big'}, {'big', 'n'}), names


def _point_first_l2_entry_at_bitmap_dir(path):
    """Corrupt @path: its first data cluster's L2 entry (COPIED) now names
    the bitmap directory's cluster."""
    with open(path, 'r+b') as f:
        d = f.read()
        l1 = struct.unpack('>Q', d[40:48])[0]
        l2 = struct.unpack('>Q', d[l1:l1 + 8])[0] & 0x00fffffffffffe00
        o = struct.unpack('>I', d[100:104])[0]
        while True:
            magic, length = struct.unpack('>II', d[o:o + 8])
            assert magic != 0
            if magic == 0x23852875:
                doff = struct.unpack('>Q', d[o + 24:o + 32])[0]
                break
            o += 8 + ((length + 7) & ~7)
        f.seek(l2)
        f.write(struct.pack('>Q', (1 << 63) | doff))


def test_overlap_check_guards_bitmap_directory(tmp_path, strata_io,
                                               ref_qemu_img, ref_qemu_io):
    """A guest write that would land on the bitmap directory is refused
    and the image marked corrupt, with the reference's message."""
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', r, '4M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 1 0 64k', r]).rc == 0
    assert run([ref_qemu_img, 'bitmap', '--add', r, 'b']).rc == 0
    _point_first_l2_entry_at_bitmap_dir(r)
    shutil.copy(r, s)
    rr = run([ref_qemu_io, '-c', 'write -P 2 0 4k', r])
    ss = run([strata_io, '-c', 'write -P 2 0 4k', s])
    assert 'overlaps with bitmap directory' in rr.err, rr
    assert (ss.rc, ss.out, ss.err.replace('strata-io', 'qemu-io')) == \
        (rr.rc, rr.out, rr.err)
    with open(r, 'rb') as a, open(s, 'rb') as b:
        assert a.read() == b.read()
