"""qcow2 create, info and measure: differential against the reference.

Images made by strata-img and by the reference with the same options must
print the same Formatting line, have the same length, pass the reference's
check with the same numbers and show the same info (JSON)."""
import json
import os

import pytest

from conftest import run


def json_info(tool, path, *extra):
    r = run([tool, 'info', '--output=json', *extra, path],
            cwd=os.path.dirname(path))
    assert r.rc == 0, r
    d = json.loads(r.out)
    d.pop('actual-size', None)
    for c in d.get('children', []):
        c['info'].pop('actual-size', None)
        c['info']['filename'] = 'X'
    d['filename'] = 'X'
    return d


def check_json(ref_img, path):
    r = run([ref_img, 'check', '--output=json', path],
            cwd=os.path.dirname(path))
    assert r.rc == 0, r
    d = json.loads(r.out)
    d['filename'] = 'X'
    return d


OPTS = [
    'compat=1.1',
    'compat=0.10',
    'compat=v2',
    'extended_l2=on',
    'compression_type=zstd',
    'lazy_refcounts=on',
    'cluster_size=4k,refcount_bits=1',
    'cluster_size=512,refcount_bits=64',
    'cluster_size=2M',
    'refcount_bits=8',
    'preallocation=metadata',
    'preallocation=falloc',
    'preallocation=full',
    'data_file=data.raw',
    'data_file=data.raw,data_file_raw=on',
    'extended_l2=on,cluster_size=16k,preallocation=metadata',
]


@pytest.mark.parametrize('opts', OPTS)
def test_create_matches_reference(tmp_path, strata_img, ref_qemu_img, opts):
    rd, sd = tmp_path / 'r', tmp_path / 's'
    rd.mkdir()
    sd.mkdir()
    r = run([ref_qemu_img, 'create', '-f', 'qcow2', '-o', opts, 'img', '5M'],
            cwd=rd)
    s = run([strata_img, 'create', '-f', 'qcow2', '-o', opts, 'img', '5M'],
            cwd=sd)
    assert (s.rc, s.out, s.err.replace('strata-img', 'qemu-img')) == \
        (r.rc, r.out, r.err), (r, s)
    rp, sp = str(rd / 'img'), str(sd / 'img')
    assert os.path.getsize(sp) == os.path.getsize(rp)
    assert check_json(ref_qemu_img, sp) == check_json(ref_qemu_img, rp)
    assert json_info(ref_qemu_img, sp) == json_info(ref_qemu_img, rp)
    assert json_info(strata_img, sp) == json_info(ref_qemu_img, rp)


def test_create_default_layout_is_byte_identical(tmp_path, strata_img,
                                                 ref_qemu_img):
    r = run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', str(tmp_path / 'r'),
             '1G'])
    s = run([strata_img, 'create', '-q', '-f', 'qcow2', str(tmp_path / 's'),
             '1G'])
    assert r.rc == s.rc == 0
    assert (tmp_path / 'r').read_bytes() == (tmp_path / 's').read_bytes()


def test_option_help_identical(strata_img, ref_qemu_img):
    r = run([ref_qemu_img, 'create', '-f', 'qcow2', '-o', 'help', 'x'])
    s = run([strata_img, 'create', '-f', 'qcow2', '-o', 'help', 'x'])
    assert (s.rc, s.out) == (r.rc, r.out)


BAD = [
    ['-o', 'compat=0.9'],
    ['-o', 'cluster_size=1000'],
    ['-o', 'cluster_size=4M'],
    ['-o', 'refcount_bits=3'],
    ['-o', 'compat=0.10,refcount_bits=8'],
    ['-o', 'compat=0.10,lazy_refcounts=on'],
    ['-o', 'compat=0.10,compression_type=zstd'],
    ['-o', 'compression_type=lz'],
    ['-o', 'compat=0.10,data_file=d'],
    ['-o', 'data_file_raw=on'],
    ['-o', 'extended_l2=on,cluster_size=8k'],
    ['-o', 'compat=0.10,extended_l2=on'],
    ['-o', 'preallocation=foo'],
    ['-o', 'lazy_refcounts=x'],
    ['-o', 'encryption=on,encrypt.format=luks'],
    ['-o', 'data_file=d,data_file_raw=on,backing_file=b,backing_fmt=raw'],
]


@pytest.mark.parametrize('args', BAD, ids=lambda a: a[-1])
def test_create_errors(tmp_path, strata_img, ref_qemu_img, args):
    r = run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', *args, 'y', '1M'],
            cwd=tmp_path)
    s = run([strata_img, 'create', '-q', '-f', 'qcow2', *args, 'y', '1M'],
            cwd=tmp_path)
    assert r.rc == 1 and s.rc == 1
    assert s.err.replace('strata-img', 'qemu-img') == r.err


LEFT_BEHIND = [
    ['-o', 'extended_l2=on,cluster_size=4k'],
    ['-o', 'compat=0.42'],
    ['-o', 'preallocation=foo'],
    ['-o', 'data_file=d.raw,extended_l2=on,cluster_size=4k'],
    ['-o', 'data_file=/nonexistent/d'],
    ['-o', 'foo=bar'],                          # refused before the driver
    ['-b', 'missing.qcow2', '-F', 'qcow2'],     # likewise
]


@pytest.mark.parametrize('args', LEFT_BEHIND, ids=lambda a: a[1])
def test_failed_create_leaves_what_reference_leaves(tmp_path, strata_img,
                                                    ref_qemu_img, args):
    """iotests 029, 112, 290 with extended_l2=on: a create the driver
    refuses removes the file it made, so an image that was there before
    is gone (the test then finds no image, as with the reference)."""
    listings = []
    for tool, sub in ((ref_qemu_img, 'r'), (strata_img, 's')):
        d = tmp_path / sub
        d.mkdir()
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', 'y',
                    '1M'], cwd=d).rc == 0
        r = run([tool, 'create', '-q', '-f', 'qcow2', *args, 'y', '1M'],
                cwd=d)
        listings.append((r.rc, sorted(os.listdir(d))))
    assert listings[1] == listings[0]


ORDER = {'A': 'cluster_size=3k', 'B': 'lazy_refcounts=on',
         'C': 'refcount_bits=3', 'D': 'refcount_bits=64',
         'E': 'data_file=d.raw', 'F': 'backing_fmt=raw',
         'G': 'data_file_raw=on', 'H': 'compression_type=zstd',
         'I': 'extended_l2=on', 'J': 'extended_l2=on,cluster_size=4k'}


@pytest.mark.parametrize('pair', ['IA', 'JA', 'AF', 'FB', 'BC', 'DE', 'EG',
                                  'GH', 'JF', 'HI', 'JD'])
def test_create_error_order(tmp_path, strata_img, ref_qemu_img, pair):
    """With two bad options the reference's first check wins (iotest 112
    with extended_l2=on: the extended L2 message, not the refcount one)."""
    for compat in ('0.10', '1.1'):
        o = ','.join(['compat=' + compat] + [ORDER[k] for k in pair])
        r = run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o', o, 'y',
                 '1M'], cwd=tmp_path)
        s = run([strata_img, 'create', '-q', '-f', 'qcow2', '-o', o, 'y',
                 '1M'], cwd=tmp_path)
        assert (s.rc, s.err.replace('strata-img', 'qemu-img')) == \
            (r.rc, r.err)


@pytest.mark.parametrize('opts', [
    'compat=0.10,data_file=d,data_file_raw=on,backing_file=b.raw',
    'compat=0.10,data_file_raw=on,backing_file=b.raw',
    'compat=0.10,data_file=d,backing_file=b.raw',
])
def test_create_data_file_raw_first(tmp_path, strata_img, ref_qemu_img,
                                    opts):
    """data-file-raw's checks come before the data file's compat check
    (convert differential gen2, seed 50235)."""
    assert run([ref_qemu_img, 'create', '-q', '-f', 'raw', 'b.raw', '1M'],
               cwd=tmp_path).rc == 0
    res = []
    for tool in (ref_qemu_img, strata_img):
        r = run([tool, 'create', '-q', '-f', 'qcow2', '-o',
                 opts + ',backing_fmt=raw', 'y', '1M'], cwd=tmp_path)
        res.append((r.rc, r.err.replace('strata-img', 'qemu-img')))
    assert res[1] == res[0]


def test_backing_options(tmp_path, strata_img, ref_qemu_img):
    base = str(tmp_path / 'base.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', base,
                '3M']).rc == 0
    for args in (['-b', 'base.qcow2'], ['-b', 'nonexistent', '-F', 'qcow2'],
                 ['-b', 'base.qcow2', '-F', 'qcow2'],
                 ['-b', 'base.qcow2', '-F', 'raw'],
                 ['-u', '-b', 'nonexistent', '-F', 'qcow2', '1G']):
        r = run([ref_qemu_img, 'create', '-f', 'qcow2', *args, 'r.qcow2'],
                cwd=tmp_path)
        s = run([strata_img, 'create', '-f', 'qcow2', *args, 's.qcow2'],
                cwd=tmp_path)
        assert s.rc == r.rc, (args, r, s)
        assert s.out.replace('s.qcow2', 'r.qcow2') == r.out
        assert s.err.replace('strata-img', 'qemu-img').replace(
            's.qcow2', 'r.qcow2') == r.err
        if r.rc == 0:
            ri = json_info(ref_qemu_img, str(tmp_path / 'r.qcow2'))
            si = json_info(ref_qemu_img, str(tmp_path / 's.qcow2'))
            assert si == ri


@pytest.mark.parametrize('args', [
    ['--size', '1G'], ['--size', '1G', '-o', 'preallocation=full'],
    ['--size', '7M', '-o', 'cluster_size=4k,extended_l2=on'],
    ['--size', '1T', '-o', 'refcount_bits=64,cluster_size=512'],
    # measure does not ask for compat=1.1 where create would
    ['--size', '1M', '-o', 'extended_l2=on,compat=0.10'],
    ['--size', '1M', '-o', 'extended_l2=on,compat=0.10,cluster_size=4k'],
    ['--size', '1M', '-o', 'compat=0.10,refcount_bits=8'],
    # nor a backing file without preallocation
    ['--size', '1M', '-o', 'backing_file=b.raw,preallocation=full'],
])
def test_measure(strata_img, ref_qemu_img, args):
    r = run([ref_qemu_img, 'measure', '-O', 'qcow2', '--output=json', *args])
    s = run([strata_img, 'measure', '-O', 'qcow2', '--output=json', *args])
    assert (s.rc, s.out) == (r.rc, r.out)
    assert s.err.replace('strata-img', 'qemu-img') == r.err


def test_measure_image(tmp_path, strata_img, ref_qemu_img, ref_qemu_io):
    img = str(tmp_path / 'm.qcow2')
    run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', img, '8M'])
    run([ref_qemu_io, '-c', 'write 1M 100k', '-c', 'write -z 4M 1M', img])
    r = run([ref_qemu_img, 'measure', '-O', 'qcow2', '--output=json', img])
    s = run([strata_img, 'measure', '-O', 'qcow2', '--output=json', img])
    assert (s.rc, s.out) == (r.rc, r.out)


def test_info_lists_bitmaps(tmp_path, strata_img, ref_qemu_img):
    img = str(tmp_path / 'bm.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', img,
                '4M']).rc == 0
    for args in (['b0'], ['-g', '128k', 'second'], ['--disable', 'off']):
        assert run([ref_qemu_img, 'bitmap', '--add', img, *args[:-1],
                    args[-1]] if args[0] != 'b0' else
                   [ref_qemu_img, 'bitmap', '--add', img, 'b0']).rc == 0
    for extra in ([], ['--output=json']):
        r = run([ref_qemu_img, 'info', *extra, img])
        s = run([strata_img, 'info', *extra, img])
        assert (s.rc, s.out) == (r.rc, r.out)


@pytest.mark.parametrize('args', [
    ['-f', 'qcow2'], ['-f', 'qcow2', '-o', 'cluster_size=512'],
    ['-f', 'raw'],
], ids=lambda a: a[-1])
def test_too_large_hint(tmp_path, strata_img, ref_qemu_img, args):
    # qemu-iotests 054: formats with a cluster size get a hint.
    r = run([ref_qemu_img, 'create', '-q', *args, 'y', '1048576T'],
            cwd=tmp_path)
    s = run([strata_img, 'create', '-q', *args, 'y', '1048576T'],
            cwd=tmp_path)
    assert r.rc == 1 and s.rc == 1
    assert s.err.replace('strata-img', 'qemu-img') == r.err


def test_metadata_prealloc_huge_clusters(tmp_path, strata_img, ref_qemu_img):
    # qemu-iotests 079: with 2 MiB clusters one L2 table maps the whole
    # 4 GiB disk; the allocation is split below 2 GiB as the reference
    # does (it failed with an overflowed error code).
    maps = []
    for tool, name in ((ref_qemu_img, 'r'), (strata_img, 's')):
        p = str(tmp_path / name)
        assert run([tool, 'create', '-q', '-f', 'qcow2', '-o',
                    'preallocation=metadata,cluster_size=2M', p,
                    '4G']).rc == 0
        maps.append(run([ref_qemu_img, 'map', '--output=json', p]).out)
        assert run([ref_qemu_img, 'check', p]).rc == 0
    assert maps[0] == maps[1]
    assert os.path.getsize(tmp_path / 's') == os.path.getsize(tmp_path / 'r')


@pytest.mark.parametrize('args', [
    ['-b', 'nonex'], ['-b', 'nonex', '1M'], ['-u', '-b', 'nonex'],
    ['-u', '-b', 'nonex', '1M'], ['-b', 'base'], ['-u', '-b', 'base', '1M'],
], ids=lambda a: '_'.join(a))
def test_backing_without_format(tmp_path, strata_img, ref_qemu_img, args):
    # qemu-iotests 111: without -u the backing file is opened first and
    # its failure is reported before the missing backing format.
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2',
                str(tmp_path / 'base'), '1M']).rc == 0
    size = args[-1:] if args[-1] == '1M' else []
    a = ['create', '-q', '-f', 'qcow2', *args[:len(args) - len(size)], 'y',
         *size]
    r = run([ref_qemu_img, *a], cwd=tmp_path)
    s = run([strata_img, *a], cwd=tmp_path)
    assert (s.rc, s.err.replace('strata-img', 'qemu-img')) == (r.rc, r.err)


@pytest.mark.parametrize('mode', ['metadata', 'falloc', 'full'])
def test_data_file_preallocation_allocates(tmp_path, strata_img,
                                           ref_qemu_img, mode):
    # qemu-iotests 243: falloc/full preallocation allocates the external
    # data file too, not only its length.
    used = []
    for tool, name in ((ref_qemu_img, 'r'), (strata_img, 's')):
        img, data = tmp_path / f'{name}.qcow2', tmp_path / f'{name}.data'
        assert run([tool, 'create', '-q', '-f', 'qcow2', '-o',
                    f'data_file={data},preallocation={mode},'
                    'extent_size_hint=0', str(img), '16M']).rc == 0
        assert os.path.getsize(data) == 16 << 20
        used.append(os.stat(data).st_blocks * 512 >= 16 << 20)
        assert run([ref_qemu_img, 'check', str(img)]).rc == 0
    assert used[1] == used[0]


# Option sets that each fail create on their own, with a message of their
# own; two of them together show which check the reference makes first.
CREATE_FAULTS = {
    'cluster_size': {'cluster_size': '3k'},
    'lazy_v2': {'compat': '0.10', 'lazy_refcounts': 'on'},
    'refcount_width': {'refcount_bits': '3'},
    'refcount_too_wide': {'refcount_bits': '128'},
    'refcount_v2': {'compat': '0.10', 'refcount_bits': '8'},
    'data_file_v2': {'compat': '0.10', 'data_file': 'd.data'},
    'backing_fmt_alone': {'backing_fmt': 'qcow2'},
    'data_file_raw_alone': {'data_file_raw': 'on'},
    'data_file_raw_backing': {'data_file': 'd.data', 'data_file_raw': 'on',
                              'backing_file': 'b.raw'},
    'zstd_v2': {'compat': '0.10', 'compression_type': 'zstd'},
    'extended_l2_v2': {'compat': '0.10', 'extended_l2': 'on'},
    'extended_l2_small': {'extended_l2': 'on', 'cluster_size': '4k'},
    'compat': {'compat': 'bogus'},
    'compression_type': {'compression_type': 'lz4'},
    'preallocation': {'preallocation': 'bogus'},
    'encryption': {'encryption': 'on'},
    'lazy_value': {'lazy_refcounts': 'maybe'},
    'cluster_size_value': {'cluster_size': 'abc'},
    'backing_preallocated': {'backing_file': 'b.raw', 'backing_fmt': 'raw',
                             'preallocation': 'full'},
}


def fault_pairs():
    names = sorted(CREATE_FAULTS)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            A, B = CREATE_FAULTS[a], CREATE_FAULTS[b]
            if all(B.get(k, v) == v for k, v in A.items()):
                yield a, b


def test_create_check_order(tmp_path, strata_img, ref_qemu_img):
    """Every pair of faulty option sets: the same first error (and no
    image) as the reference's, whatever order the options are given in."""
    (tmp_path / 'b.raw').write_bytes(bytes(65536))
    diffs = []
    for a, b in fault_pairs():
        A, B = CREATE_FAULTS[a], CREATE_FAULTS[b]
        for opts in ({**A, **B}, {**B, **A}):
            o = ','.join(f'{k}={v}' for k, v in opts.items())
            out = []
            for tool in (ref_qemu_img, strata_img):
                r = run([tool, 'create', '-q', '-f', 'qcow2', '-o', o,
                         'n.qcow2', '64k'], cwd=tmp_path)
                out.append((r.rc, r.err.replace('strata-img', 'qemu-img'),
                            (tmp_path / 'n.qcow2').exists()))
                for f in ('n.qcow2', 'd.data'):
                    (tmp_path / f).unlink(missing_ok=True)
            if out[0] != out[1]:
                diffs.append((a, b, o, out))
    assert not diffs


@pytest.mark.parametrize('opts', ['', ',cluster_size=4k', ',compat=0.10',
                                  ',extended_l2=on',
                                  ',extended_l2=on,cluster_size=32k'])
@pytest.mark.parametrize('size', ['513', '100000', '1M'])
def test_metadata_prealloc_edges(tmp_path, strata_img, ref_qemu_img, opts,
                                 size):
    """preallocation=metadata writes the last cluster's tail past the
    virtual end (the reference's copy on write: zeroes), and with
    extended L2 the file ends with the last subcluster: the same bytes,
    the same file length and the same blocks of the file allocated
    (which the metadata-preallocation guess of block status reads)."""
    files = []
    for tool in (ref_qemu_img, strata_img):
        p = str(tmp_path / f'{len(files)}.qcow2')
        assert run([tool, 'create', '-q', '-f', 'qcow2', '-o',
                    'preallocation=metadata' + opts, p, size]).rc == 0
        files.append(p)
    with open(files[0], 'rb') as a, open(files[1], 'rb') as b:
        assert a.read() == b.read()
    assert os.stat(files[0]).st_blocks == os.stat(files[1]).st_blocks
    maps = [run([ref_qemu_img, 'map', '--output=json', f]).out
            for f in files]
    assert maps[0] == maps[1]


@pytest.mark.parametrize('old', ['1000', '65536', '70000'])
@pytest.mark.parametrize('opts', ['', ',extended_l2=on'])
def test_metadata_prealloc_resize_edges(tmp_path, strata_img, ref_qemu_img,
                                        old, opts):
    """resize --preallocation=metadata from a size inside a cluster: the
    head of the first new cluster is copied on write too."""
    files = []
    for tool in (ref_qemu_img, strata_img):
        p = str(tmp_path / f'{len(files)}.qcow2')
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    'cluster_size=64k' + opts, p, old]).rc == 0
        assert run([tool, 'resize', '-q', '--preallocation=metadata', p,
                    '100352']).rc == 0
        files.append(p)
    with open(files[0], 'rb') as a, open(files[1], 'rb') as b:
        assert a.read() == b.read()
    assert os.stat(files[0]).st_blocks == os.stat(files[1]).st_blocks


def test_failed_data_file_size_leaves_nothing(tmp_path, our_qemu_img,
                                              ref_qemu_img):
    """iotests 105 with an external data file: a disk size the file system
    refuses for the data file (16 TiB on ext4) fails the create, and the
    reference leaves neither file behind.  (Where the size fits, both
    succeed and leave both files.)"""
    listings = []
    for tool, sub in ((ref_qemu_img, 'r'), (our_qemu_img, 's')):
        d = tmp_path / sub
        d.mkdir()
        r = run([tool, 'create', '-q', '-f', 'qcow2', '-o',
                 'data_file=d.raw', 'y', '16T'], cwd=d)
        listings.append((r.rc, r.err, sorted(os.listdir(d))))
    assert listings[1] == listings[0]


@pytest.mark.parametrize('names', [
    ('file:a:b.qcow2', 'file:a:b.qcow2.data'),
    ('file:a:b.qcow2', 'file:./a:b.qcow2.data'),
    ('c:d.qcow2', 'file:c:d.qcow2.data'),
], ids=lambda n: n[1])
def test_data_file_protocol_prefix(tmp_path, our_qemu_img, ref_qemu_img,
                                   names):
    """iotests 126 with an external data file: the header stores the data
    file's name as its protocol parsed it ("file:" gone, "./" before a
    name that would look like a protocol prefix), as the reference, so
    the image opens again."""
    img, data = names
    out = []
    for tool, sub in ((ref_qemu_img, 'r'), (our_qemu_img, 's')):
        d = tmp_path / sub
        d.mkdir()
        r = run([tool, 'create', '-q', '-f', 'qcow2', '-o',
                 'data_file=' + data, img, '1M'], cwd=d)
        i = run([tool, 'info', '--output=json', img], cwd=d)
        c = run([tool, 'check', img], cwd=d)
        out.append((r.rc, r.err, i.rc, i.err, c.rc, c.out, c.err,
                    sorted(os.listdir(d))))
        if i.rc == 0:
            spec = json.loads(i.out)['format-specific']['data']
            out[-1] += (spec['data-file'],)
    assert out[1] == out[0]


@pytest.mark.parametrize('opts', [
    'data_file=d.raw,data_file_raw=on,backing_file=b.raw,backing_fmt=raw',
    'data_file=d.raw,compat=0.42',
    'data_file=d.raw,preallocation=foo',
    'data_file=d.raw,compat=0.10',
    'data_file=d.raw,cluster_size=3k',
    'data_file=d.raw,lazy_refcounts=foo',      # refused before the driver
    'data_file=d.raw,preallocation=falloc',
])
def test_refused_create_removes_data_file(tmp_path, our_qemu_img,
                                          ref_qemu_img, opts):
    """qemu-iotests 043 with data_file_raw: the reference creates the data
    file before it checks the qcow2 options, so a refused create removes
    a data file that was there (another image's) as well."""
    out = []
    for tool, sub in ((ref_qemu_img, 'r'), (our_qemu_img, 's')):
        d = tmp_path / sub
        d.mkdir()
        (d / 'd.raw').write_bytes(b'other image\n')
        (d / 'b.raw').write_bytes(bytes(65536))
        r = run([tool, 'create', '-q', '-f', 'qcow2', '-o', opts, 'x.qcow2',
                 '1M'], cwd=d)
        files = {n: os.path.getsize(d / n) for n in sorted(os.listdir(d))}
        out.append((r.rc, r.err, files))
    assert out[1] == out[0]
