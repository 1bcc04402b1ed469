"""qemu-img and qemu-io commands on qcow2 images: differential against the
reference.

Every case runs the same argv with the reference and with ours, each in a
directory of its own holding the same input images (written once by the
reference tools and copied); stdout, stderr and the exit status
must match.  Images the commands write are then compared: the reference's
'check' must pass on ours, 'compare' must find them identical to the
reference's, and 'map --output=json' must be the same (clusters laid out
alike)."""
import os
import shutil
import subprocess

import pytest

from conftest import normalize, run

SRC_CHUNKS = [
    (0, b'\x11' * 65536 * 3),            # data
    (600 * 1024, os.urandom(100000)),     # incompressible, unaligned
    (1 << 20, b'hello qcow2 ' * 30000),   # compressible, crosses clusters
    (2 << 20, b'\0' * 65536),             # explicit zeroes
    (3 << 20, b'\x22' * 4096),            # a partial cluster
    ((4 << 20) - 512, b'\x33' * 512),     # the last sector
]


def _write_raw(path, size, chunks):
    with open(path, 'wb') as f:
        f.truncate(size)
        for off, data in chunks:
            f.seek(off)
            f.write(data)


def _ref(tool, *args, cwd):
    subprocess.run([tool] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL)


@pytest.fixture(scope='module')
def inputs(tmp_path_factory, ref_qemu_img, ref_qemu_io):
    """The input images, made once by the reference tools."""
    d = str(tmp_path_factory.mktemp('qcow2-inputs'))
    img = lambda *a: _ref(ref_qemu_img, *a, cwd=d)
    io = lambda name, *cmds: _ref(ref_qemu_io, *sum((['-c', c] for c in cmds),
                                                   []), name, cwd=d)
    _write_raw(os.path.join(d, 'src.raw'), 4 << 20, SRC_CHUNKS)
    img('create', '-f', 'qcow2', 'q.qcow2', '8M')
    io('q.qcow2', 'write -P 1 0 128k', 'write -c -P 2 1M 128k',
       'write -z 2M 128k', 'write -z -u 3M 64k', 'write -P 3 3200k 4k',
       'discard 0 64k')
    img('convert', '-c', '-O', 'qcow2', 'src.raw', 'c.qcow2')
    img('create', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=128k,'
        'compression_type=zstd,lazy_refcounts=on,refcount_bits=8',
        'x.qcow2', '8M')
    io('x.qcow2', 'write -P 4 0 40k', 'write -c -P 5 1M 128k',
       'write -z 100k 8k')
    img('create', '-f', 'qcow2', '-o', 'compat=0.10', 'v2.qcow2', '8M')
    io('v2.qcow2', 'write -P 6 64k 64k', 'write -c 1M 64k')
    img('create', '-f', 'qcow2', '-o', 'data_file=d.data', 'd.qcow2', '4M')
    io('d.qcow2', 'write -P 7 0 128k', 'write -P 8 1M 4k')
    img('create', '-f', 'qcow2', 'e.qcow2', '8M')
    img('create', '-f', 'qcow2', 'b.qcow2', '6M')
    io('b.qcow2', 'write -P 9 0 2M')
    shutil.copy(os.path.join(d, 'q.qcow2'), os.path.join(d, 'dirty.qcow2'))
    shutil.copy(os.path.join(d, 'q.qcow2'), os.path.join(d, 'corrupt.qcow2'))
    for name, bit in (('dirty.qcow2', 1), ('corrupt.qcow2', 2)):
        with open(os.path.join(d, name), 'r+b') as f:
            f.seek(79)      # low byte of the incompatible features
            f.write(bytes([bit]))
    return d


def _populate(src, dst):
    # plain copies: sparse ones would make the files' allocation (which
    # qcow2's guess at metadata preallocation looks at) differ from what
    # the writing tools left
    os.mkdir(dst)
    for name in os.listdir(src):
        shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))


def _same(our, ref, tmp_path, inputs, args, filt=lambda s: s):
    """Run @args in two copies of the inputs; compare what they print."""
    results = []
    for name, prog in (('ref', ref), ('our', our)):
        d = str(tmp_path / name)
        _populate(inputs, d)
        r = run([prog] + args, cwd=d)
        r.out = filt(r.out.replace(prog, os.path.basename(ref)))
        r.err = filt(r.err.replace(prog, os.path.basename(ref)))
        results.append(r)
    ref_r, our_r = results
    assert (our_r.rc, our_r.out, our_r.err) == (ref_r.rc, ref_r.out, ref_r.err)
    return str(tmp_path / 'ref'), str(tmp_path / 'our')


def _check_image(ref_qemu_img, ref_dir, our_dir, name):
    """Our @name passes the reference's check, equals the reference's and
    maps the same.  (Commands run in the image's directory: the data file
    of d.qcow2 is named relative to it.)"""
    ours = os.path.join(our_dir, name)
    theirs = os.path.join(ref_dir, name)
    if not os.path.exists(theirs):
        assert not os.path.exists(ours)
        return
    if open(theirs, 'rb').read(4) == b'QFI\xfb':
        chk = run([ref_qemu_img, 'check', name], cwd=our_dir)
        assert chk.rc == 0, chk
    if name == 'd.qcow2':
        theirs, ours = (os.path.join(d, 'd.data') for d in (ref_dir, our_dir))
    cmp = run([ref_qemu_img, 'compare', theirs, ours])
    assert cmp.rc == 0, cmp
    maps = [run([ref_qemu_img, 'map', '--output=json', name], cwd=d).out
            for d in (ref_dir, our_dir)]
    assert maps[1] == maps[0]


# --- convert ------------------------------------------------------------

CONVERT = [
    ['-O', 'qcow2', 'src.raw', 'o.qcow2'],
    ['-c', '-O', 'qcow2', 'src.raw', 'o.qcow2'],
    ['-c', '-m', '16', '-O', 'qcow2', 'src.raw', 'o.qcow2'],
    ['-c', '-O', 'qcow2', '-o', 'cluster_size=4k', 'src.raw', 'o.qcow2'],
    ['-c', '-O', 'qcow2', '-o', 'compression_type=zstd', 'src.raw',
     'o.qcow2'],
    ['-c', '-S', '0', '-O', 'qcow2', 'src.raw', 'o.qcow2'],
    ['-O', 'qcow2', '-S', '0', 'src.raw', 'o.qcow2'],
    ['-O', 'qcow2', '-S', '64k', 'src.raw', 'o.qcow2'],
    ['-O', 'qcow2', '-o', 'cluster_size=2M', 'src.raw', 'o.qcow2'],
    ['-O', 'qcow2', '-o', 'extended_l2=on', 'src.raw', 'o.qcow2'],
    ['-O', 'qcow2', '-o', 'compat=0.10', 'src.raw', 'o.qcow2'],
    ['-O', 'qcow2', '-o', 'preallocation=metadata', 'src.raw', 'o.qcow2'],
    ['-O', 'raw', 'c.qcow2', 'o.qcow2'],
    ['-O', 'qcow2', 'q.qcow2', 'o.qcow2'],
    ['-c', '-O', 'qcow2', 'q.qcow2', 'o.qcow2'],
    ['-O', 'qcow2', 'x.qcow2', 'o.qcow2'],
    ['-O', 'raw', 'v2.qcow2', 'o.qcow2'],
    ['-O', 'qcow2', 'd.qcow2', 'o.qcow2'],
    ['-O', 'qcow2', 'src.raw', 'c.qcow2', 'o.qcow2'],
    ['-c', '-O', 'qcow2', 'src.raw', 'v2.qcow2', 'o.qcow2'],
    ['-B', 'b.qcow2', '-F', 'qcow2', '-O', 'qcow2', 'src.raw', 'o.qcow2'],
    ['-c', '-B', 'b.qcow2', '-F', 'qcow2', '-O', 'qcow2', 'src.raw',
     'o.qcow2'],
    ['-n', '-O', 'qcow2', 'src.raw', 'q.qcow2'],
    ['-n', '--target-is-zero', '-O', 'qcow2', 'src.raw', 'b.qcow2'],
    ['-n', '-c', '-O', 'qcow2', 'src.raw', 'b.qcow2'],
    # refusals
    ['-c', '-O', 'raw', 'src.raw', 'o.qcow2'],
    ['-c', '-n', '-O', 'raw', 'src.raw', 'b.qcow2'],
    ['-B', 'b.qcow2', '-O', 'qcow2', 'src.raw', 'o.qcow2'],
    ['-o', 'backing_file=b.qcow2', '-O', 'qcow2', 'src.raw', 'o.qcow2'],
    ['-B', 'b.qcow2', '-F', 'qcow2', '-O', 'raw', 'src.raw', 'o.qcow2'],
    ['-F', 'qcow2', '-O', 'qcow2', 'src.raw', 'o.qcow2'],
    ['-F', 'qcow2', '-O', 'raw', 'src.raw', 'o.qcow2'],
    ['-B', 'b.qcow2', '-F', 'qcow2', '-O', 'qcow2', 'src.raw', 'src.raw',
     'o.qcow2'],
    ['-B', 'b.qcow2', '-F', 'qcow2', '-n', '--target-is-zero', '-O', 'qcow2',
     'src.raw', 'q.qcow2'],
    ['-c', '-O', 'qcow2', '-o', 'preallocation=falloc', 'src.raw',
     'o.qcow2'],
    ['-c', '-O', 'qcow2', '-o', 'encryption=on', 'src.raw', 'o.qcow2'],
    ['-c', '-n', '-O', 'qcow2', 'src.raw', 'q.qcow2'],
    ['-O', 'qcow2', '-o', 'cluster_size=3k', 'src.raw', 'o.qcow2'],
]


@pytest.mark.parametrize('args', CONVERT, ids=lambda a: ' '.join(a))
def test_convert(our_qemu_img, ref_qemu_img, tmp_path, inputs, args):
    ref_dir, our_dir = _same(our_qemu_img, ref_qemu_img, tmp_path, inputs,
                             ['convert'] + args)
    if args[0] == '-c' and args[1] == '-n':
        # failed part way (a cluster is allocated): with several clusters
        # in flight ours may have written more of the others than the
        # reference, which goes one at a time; both must stay consistent
        for d in (ref_dir, our_dir):
            assert run([ref_qemu_img, 'check', args[-1]], cwd=d).rc == 0
        return
    _check_image(ref_qemu_img, ref_dir, our_dir, args[-1])


def test_convert_compressed_is_the_references(our_qemu_img, ref_qemu_img,
                                              tmp_path):
    """Many clusters compressing at once (-m 16) still land in guest order:
    the file is the reference's, byte for byte (same zlib settings)."""
    src = str(tmp_path / 's.raw')
    chunks = [(i * 65536, (b'%d ' % i) * 20000 + os.urandom(i * 97 % 8000))
              for i in range(0, 96, 3)]
    _write_raw(src, 8 << 20, [(o, d[:65536 * 2]) for o, d in chunks])
    outs = []
    for name, prog in (('r.qcow2', ref_qemu_img), ('o.qcow2', our_qemu_img)):
        out = str(tmp_path / name)
        r = run([prog, 'convert', '-c', '-m', '16', '-O', 'qcow2', src, out])
        assert r.rc == 0, r
        outs.append(open(out, 'rb').read())
    assert len(outs[1]) <= len(outs[0]) * 1.02
    assert outs[1] == outs[0]


@pytest.mark.parametrize('cluster', ['512', '4k', '8k'])
def test_create_header_is_the_references(our_qemu_img, ref_qemu_img,
                                         tmp_path, cluster):
    """The feature name table is left out of small-cluster images."""
    heads = []
    for name, prog in (('r.qcow2', ref_qemu_img), ('o.qcow2', our_qemu_img)):
        out = str(tmp_path / name)
        r = run([prog, 'create', '-q', '-f', 'qcow2', '-o',
                 'cluster_size=' + cluster, out, '1M'])
        assert r.rc == 0, r
        heads.append(open(out, 'rb').read())
    assert heads[1] == heads[0]


# --- info, map, measure, compare, dd, resize, bench ---------------------

IMAGES = ['q.qcow2', 'c.qcow2', 'x.qcow2', 'v2.qcow2', 'd.qcow2',
          'dirty.qcow2', 'corrupt.qcow2']

READ_ONLY = (
    [['info', i] for i in IMAGES] +
    [['info', '--output=json', i] for i in IMAGES] +
    [['map', i] for i in IMAGES] +
    [['map', '--output=json', i] for i in IMAGES] +
    [['measure', '-O', 'qcow2', i] for i in ('q.qcow2', 'x.qcow2')] +
    [
        ['measure', '-O', 'qcow2', '--size', '1G'],
        ['measure', '-O', 'qcow2', '-o', 'cluster_size=4k,preallocation=full',
         '--size', '100M'],
        ['measure', '-O', 'qcow2', '-o', 'extended_l2=on,refcount_bits=1',
         'src.raw'],
        ['measure', '-O', 'qcow2', '-o', 'preallocation=metadata', 'c.qcow2'],
        ['measure', '--output=json', '-O', 'qcow2', 'src.raw'],
        ['measure', '-O', 'raw', 'q.qcow2'],
        ['measure', '-O', 'qcow2', '-o', 'backing_file=b.qcow2,'
         'backing_fmt=qcow2', 'q.qcow2'],
        ['measure', '-O', 'qcow2', 'v2.qcow2'],
        ['compare', 'c.qcow2', 'src.raw'],
        ['compare', 'q.qcow2', 'c.qcow2'],
        ['compare', '-s', 'q.qcow2', 'q.qcow2'],
        ['compare', '-f', 'qcow2', '-F', 'raw', 'c.qcow2', 'src.raw'],
        ['bench', '-c', '50', '-s', '64k', 'c.qcow2'],
        ['bench', '-f', 'qcow2', '-c', '20', '-d', '4', 'q.qcow2'],
    ]
)


@pytest.mark.parametrize('args', READ_ONLY, ids=lambda a: ' '.join(a))
def test_read_only(our_qemu_img, ref_qemu_img, tmp_path, inputs, args):
    filt = lambda s: s
    if args[0] == 'bench':
        filt = lambda s: s.split('Run completed')[0]
    _same(our_qemu_img, ref_qemu_img, tmp_path, inputs, args, filt)


WRITING = [
    (['resize', 'q.qcow2', '+1M'], 'q.qcow2'),
    (['resize', 'q.qcow2', '--shrink', '4M'], 'q.qcow2'),
    (['resize', 'q.qcow2', '4M'], 'q.qcow2'),
    (['resize', 'q.qcow2', '--shrink', '1M'], 'q.qcow2'),
    (['resize', '--preallocation=metadata', 'q.qcow2', '+1M'], 'q.qcow2'),
    (['resize', '--preallocation=metadata', 'b.qcow2', '+1M'], 'b.qcow2'),
    (['resize', 'q.qcow2', '+1000'], 'q.qcow2'),
    (['resize', 'v2.qcow2', '--shrink', '2M'], 'v2.qcow2'),
    (['dd', '-O', 'qcow2', 'if=c.qcow2', 'of=o.qcow2', 'bs=1M', 'skip=1',
      'count=2'], 'o.qcow2'),
    (['dd', '-f', 'qcow2', '-O', 'raw', 'if=q.qcow2', 'of=o.raw', 'bs=64k'],
     'o.raw'),
    (['bench', '-w', '-c', '40', '-s', '64k', 'b.qcow2'], 'b.qcow2'),
    (['bench', '-w', '-c', '40', '-s', '4k', '-S', '128k', '-d', '8',
      'e.qcow2'], 'e.qcow2'),
]


@pytest.mark.parametrize('args,image', WRITING, ids=lambda a: str(a))
def test_writing(our_qemu_img, ref_qemu_img, tmp_path, inputs, args, image):
    filt = lambda s: s
    if args[0] == 'bench':
        filt = lambda s: s.split('Run completed')[0]
    ref_dir, our_dir = _same(our_qemu_img, ref_qemu_img, tmp_path, inputs,
                             args, filt)
    _check_image(ref_qemu_img, ref_dir, our_dir, image)


def test_bench_preallocated(our_qemu_img, ref_qemu_img, tmp_path):
    """bench -w over a preallocated image writes in place."""
    results = []
    for name, prog in (('r.qcow2', ref_qemu_img), ('o.qcow2', our_qemu_img)):
        img = str(tmp_path / name)
        run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
             'preallocation=metadata', img, '16M'])
        r = run([prog, 'bench', '-w', '-c', '64', '-s', '64k', img])
        assert r.rc == 0, r
        results.append(run([ref_qemu_img, 'map', '--output=json', img]).out)
    assert results[1] == results[0]


# --- qemu-io ------------------------------------------------------------

IO = [
    ('q.qcow2', ['write -c 0 64k']),
    ('q.qcow2', ['write -c -P 5 4M 256k', 'read -P 5 4M 256k']),
    ('q.qcow2', ['write -c 512 64k']),
    ('q.qcow2', ['write -c 128k 64k']),          # over a data cluster
    ('b.qcow2', ['write -c 0 1000']),
    ('q.qcow2', ['write -z 100 1000', 'write -z -u 5M 60k']),
    ('q.qcow2', ['write -z -u 0 256k', 'write -z 1M 64k']),
    ('x.qcow2', ['write -z 2M 40k', 'write -z -u 0 32k', 'write -c 2M 128k']),
    ('v2.qcow2', ['write -z 64k 64k', 'write -z -u 0 4k', 'write -z 3M 1M']),
    ('q.qcow2', ['discard 0 64k', 'discard 2M 64k', 'discard 1k 64k']),
    ('q.qcow2', ['map', 'alloc 0 1M', 'alloc 1M 64k', 'info']),
    ('c.qcow2', ['map', 'alloc 0 4M', 'info', 'read -v 3M 16']),
    ('x.qcow2', ['map', 'info']),
    ('v2.qcow2', ['map', 'info']),
    ('d.qcow2', ['map', 'info', 'write -c 0 64k']),
    ('q.qcow2', ['aio_write -c 6M 64k', 'aio_flush', 'writev -c 7M 32k 32k']),
]


@pytest.mark.parametrize('image,cmds', IO, ids=lambda a: str(a))
def test_io(our_qemu_io, ref_qemu_io, ref_qemu_img, tmp_path, inputs, image,
            cmds):
    argv = sum((['-c', c] for c in cmds), []) + [image]
    ref_dir, our_dir = _same(our_qemu_io, ref_qemu_io, tmp_path, inputs, argv,
                             normalize)
    _check_image(ref_qemu_img, ref_dir, our_dir, image)


def test_convert_backing_leaves_backing_data_out(our_qemu_img, ref_qemu_img,
                                                 ref_qemu_io, tmp_path):
    """convert -B base of an overlay of base: what the overlay does not
    hold stays unallocated (the target reads it from base), zeroes it
    holds become zero clusters, zeroes past base's end are left out."""
    d = str(tmp_path)
    _ref(ref_qemu_img, 'create', '-f', 'qcow2', 'base.qcow2', '4M', cwd=d)
    _ref(ref_qemu_io, '-c', 'write -P 1 0 4M', 'base.qcow2', cwd=d)
    _ref(ref_qemu_img, 'create', '-f', 'qcow2', '-b', 'base.qcow2', '-F',
         'qcow2', 'top.qcow2', '6M', cwd=d)
    _ref(ref_qemu_io, '-c', 'write -P 2 1M 128k', '-c', 'write -z 2M 64k',
         '-c', 'write -P 3 5M 64k', '-c', 'write -z 5200k 64k', 'top.qcow2',
         cwd=d)
    probe = run([our_qemu_img, 'map', '--output=json', 'top.qcow2'], cwd=d)
    if '"depth": 1' not in probe.out:
        pytest.skip('backing files are not opened yet')
    for prog, out in ((ref_qemu_img, 'r.qcow2'), (our_qemu_img, 'o.qcow2')):
        r = run([prog, 'convert', '-B', 'base.qcow2', '-F', 'qcow2', '-O',
                 'qcow2', 'top.qcow2', out], cwd=d)
        assert r.rc == 0, r
    assert run([ref_qemu_img, 'check', 'o.qcow2'], cwd=d).rc == 0
    assert run([ref_qemu_img, 'compare', 'r.qcow2', 'o.qcow2'], cwd=d).rc == 0
    maps = [run([ref_qemu_img, 'map', '--output=json', n], cwd=d).out
            for n in ('r.qcow2', 'o.qcow2')]
    assert maps[1] == maps[0]


@pytest.mark.parametrize('size', ['64k', '128k', '192k', '1M'])
@pytest.mark.parametrize('refcount_bits', ['1', '16'])
def test_map_metadata_preallocated_holes(our_qemu_img, ref_qemu_img,
                                         tmp_path, size, refcount_bits):
    """preallocation=metadata leaves the data clusters as holes of the
    file; whether map looks into the file for them rests on the same
    guess as the reference's (clusters referenced against clusters the
    file stores), including at its threshold: one 64 KiB cluster."""
    img = str(tmp_path / 'p.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'preallocation=metadata,refcount_bits=' + refcount_bits,
                img, size]).rc == 0
    ref = run([ref_qemu_img, 'map', '--output=json', img])
    ours = run([our_qemu_img, 'map', '--output=json', img])
    assert ref.rc == ours.rc == 0
    assert ours.out == ref.out


@pytest.mark.parametrize('size', ['64k', '1M', '1G'])
def test_map_raw_data_file(our_qemu_img, ref_qemu_img, ref_qemu_io, tmp_path,
                           size):
    """A raw external data file (data_file_raw=on): its clusters are data,
    holes of the data file or not, unless the metadata looks preallocated
    (the same guess as for any image)."""
    img = str(tmp_path / 'd.qcow2')
    # the data file is named relative to the working directory
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'data_file=d.data,data_file_raw=on', img, size],
               cwd=tmp_path).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 1 0 4k', '-c',
                'write -z 8k 8k', img], cwd=tmp_path).rc == 0
    for fmt in ('human', 'json'):
        ref = run([ref_qemu_img, 'map', '--output=' + fmt, img], cwd=tmp_path)
        ours = run([our_qemu_img, 'map', '--output=' + fmt, img],
                   cwd=tmp_path)
        assert ref.rc == ours.rc == 0
        assert ours.out == ref.out
