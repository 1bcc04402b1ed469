"""convert onto a backing file (-B/-F, -o backing_file): what the target
allocates, what it reads, and the errors, each compared with the
reference's on the same sources.

What the reference 10.0 does (and so Strata): with a backing file for the
target, only the source's top layer is copied (its data, and its zero
clusters as zeroes, except past the end of the target's backing file);
what the source reads from its own backing chain is left to the target's
backing file.  It does not compare the data with the new backing file's:
a source without a backing file is copied whole."""
import os

import pytest

from conftest import raw_under_qcow2, ref_run, ref_tools, run


@pytest.fixture(scope='module')
def src(tmp_path_factory, ref_qemu_img, ref_qemu_io):
    """base.raw (1M) <- d/mid.qcow2 (2M) <- top.qcow2 (3M), as in
    test_chain_reading (top also zeroes mid's data at 1536k and writes
    0x05 at 2560k), plus flat.qcow2 (top.qcow2 flattened) and
    short.qcow2 (512k, qcow2, no backing)."""
    d = tmp_path_factory.mktemp('cvb')
    img, io = ref_tools(ref_qemu_img, ref_qemu_io, d)
    os.mkdir(d / 'sub')
    raw_under_qcow2(d, img, io)
    io('top.qcow2', 'write -P 4 192k 32k', 'write -z 1536k 64k',
       'write -z 2M 64k', 'write -P 5 2560k 4k')
    img('convert', '-O', 'qcow2', 'top.qcow2', 'flat.qcow2')
    img('create', '-q', '-f', 'qcow2', 'short.qcow2', '512k')
    io('short.qcow2', 'write -P 6 0 64k')
    return d


def convert_both(ref, our, cwd, args, out_name='out.qcow2'):
    """Run the same convert with each tool into ref-<out> / our-<out>;
    returns the (rc, stderr) pairs with the target names normalised."""
    results = []
    for tool, prefix in ((ref, 'ref-'), (our, 'our-')):
        target = os.path.join(os.path.dirname(out_name),
                              prefix + os.path.basename(out_name))
        if os.path.exists(cwd / target):
            os.unlink(cwd / target)
        r = run([tool, 'convert'] + args + [target], cwd=str(cwd))
        err = r.err.replace(tool, 'qemu-img').replace(prefix, '')
        results.append((r.rc, r.out, err))
    return results


def targets(out_name):
    d, b = os.path.dirname(out_name), os.path.basename(out_name)
    return os.path.join(d, 'ref-' + b), os.path.join(d, 'our-' + b)


CASES = {
    # the source's own backing file: only top.qcow2's clusters copied
    'own-backing': ['-O', 'qcow2', '-B', 'd/mid.qcow2', '-F', 'qcow2',
                    'top.qcow2'],
    # a backing file further down (raw), shorter than the source
    'raw-backing': ['-O', 'qcow2', '-B', 'base.raw', '-F', 'raw',
                    'top.qcow2'],
    # a source without backing file: copied whole, zeroes as zeroes up to
    # the backing file's end
    'flat-source': ['-O', 'qcow2', '-B', 'd/mid.qcow2', '-F', 'qcow2',
                    'flat.qcow2'],
    'raw-source': ['-O', 'qcow2', '-B', 'd/mid.qcow2', '-F', 'qcow2', '-f',
                   'raw', 'base.raw'],
    'short-source': ['-O', 'qcow2', '-B', 'top.qcow2', '-F', 'qcow2',
                     'short.qcow2'],
    'create-opts': ['-O', 'qcow2', '-o',
                    'backing_file=d/mid.qcow2,backing_fmt=qcow2',
                    'top.qcow2'],
    '-B-over-o': ['-O', 'qcow2', '-B', 'd/mid.qcow2', '-F', 'qcow2', '-o',
                  'backing_file=base.raw', 'top.qcow2'],
    'long-opts': ['-O', 'qcow2', '--backing', 'd/mid.qcow2',
                  '--backing-format', 'qcow2', 'top.qcow2'],
    'sparse-0': ['-O', 'qcow2', '-B', 'd/mid.qcow2', '-F', 'qcow2', '-S',
                 '0', 'top.qcow2'],
    'small-clusters': ['-O', 'qcow2', '-B', 'd/mid.qcow2', '-F', 'qcow2',
                       '-o', 'cluster_size=4k', 'top.qcow2'],
    'compat-0.10': ['-O', 'qcow2', '-B', 'base.raw', '-F', 'raw', '-o',
                    'compat=0.10', 'top.qcow2'],
    'compressed': ['-O', 'qcow2', '-c', '-B', 'd/mid.qcow2', '-F', 'qcow2',
                   'top.qcow2'],
    'wrong-fmt': ['-O', 'qcow2', '-B', 'd/mid.qcow2', '-F', 'raw',
                  'top.qcow2'],
}


@pytest.mark.parametrize('name', CASES)
def test_convert_onto_backing(src, ref_qemu_img, our_qemu_img, name):
    """Same messages, the same allocation (the reference's map of both
    targets, host offsets included), the same content, a clean check."""
    ref_r, our_r = convert_both(ref_qemu_img, our_qemu_img, src, CASES[name])
    assert our_r == ref_r
    assert ref_r[0] == 0
    ref_t, our_t = targets('out.qcow2')
    maps = [ref_run(ref_qemu_img, src, 'map', '--output=json', t).out
            for t in (ref_t, our_t)]
    assert maps[0] == maps[1]
    infos = [ref_run(ref_qemu_img, src, 'info', '--backing-chain', t).out
             for t in (ref_t, our_t)]
    assert infos[0].replace('ref-', '') == infos[1].replace('our-', '')
    ref_run(ref_qemu_img, src, 'compare', '-s', ref_t, our_t)
    r = run([ref_qemu_img, 'check', our_t], cwd=str(src))
    assert r.rc == 0, r


def test_own_backing_reads_as_source(src, ref_qemu_img, our_qemu_img):
    """Onto the source's own backing file the target reads exactly as the
    source and allocates only what the top layer holds: its data, its zero
    cluster over mid's data, not its zero cluster past mid's end (the
    target reads zeroes there anyway)."""
    convert_both(ref_qemu_img, our_qemu_img, src, CASES['own-backing'])
    _, our_t = targets('out.qcow2')
    ref_run(ref_qemu_img, src, 'compare', 'top.qcow2', our_t)
    import json
    entries = json.loads(ref_run(ref_qemu_img, src, 'map', '--output=json',
                                 our_t).out)
    own = [(e['start'], e['length']) for e in entries if e['depth'] == 0
           and e['present']]
    assert own == [(192 * 1024, 64 * 1024), (1536 * 1024, 64 * 1024),
                   (2560 * 1024, 64 * 1024)]


def test_relative_backing_name(src, ref_qemu_img, our_qemu_img):
    """-B is relative to the target's directory, as the backing file name
    it records."""
    args = ['-O', 'qcow2', '-B', '../d/mid.qcow2', '-F', 'qcow2',
            'top.qcow2']
    ref_r, our_r = convert_both(ref_qemu_img, our_qemu_img, src, args,
                                'sub/out.qcow2')
    assert our_r == ref_r and ref_r[0] == 0
    ref_t, our_t = targets('sub/out.qcow2')
    maps = [ref_run(ref_qemu_img, src, 'map', '--output=json', t).out
            for t in (ref_t, our_t)]
    assert maps[0] == maps[1]
    ref_run(ref_qemu_img, src, 'compare', 'top.qcow2', our_t)


ERROR_CASES = {
    'no-format': ['-O', 'qcow2', '-B', 'd/mid.qcow2', 'top.qcow2'],
    'opts-no-format': ['-O', 'qcow2', '-o', 'backing_file=d/mid.qcow2',
                       'top.qcow2'],
    'raw-target': ['-O', 'raw', '-B', 'd/mid.qcow2', '-F', 'qcow2',
                   'top.qcow2'],
    'two-sources': ['-O', 'qcow2', '-B', 'd/mid.qcow2', '-F', 'qcow2',
                    'top.qcow2', 'flat.qcow2'],
    'target-is-zero': ['-O', 'qcow2', '-B', 'd/mid.qcow2', '-F', 'qcow2',
                       '--target-is-zero', '-n', 'top.qcow2'],
    'format-only': ['-O', 'qcow2', '-F', 'qcow2', 'top.qcow2'],
    'missing-backing': ['-O', 'qcow2', '-B', 'nonexistent.qcow2', '-F',
                        'qcow2', 'top.qcow2'],
    'relative-missing': ['-O', 'qcow2', '-B', 'd/mid.qcow2', '-F', 'qcow2',
                         'top.qcow2'],
}


@pytest.mark.parametrize('name', ERROR_CASES)
def test_convert_backing_errors(src, ref_qemu_img, our_qemu_img, name):
    out = 'sub/out.qcow2' if name == 'relative-missing' else 'out.qcow2'
    ref_r, our_r = convert_both(ref_qemu_img, our_qemu_img, src,
                                ERROR_CASES[name], out)
    assert our_r == ref_r
    assert ref_r[0] != 0 or ref_r[2]


@pytest.mark.parametrize('with_backing', [True, False],
                         ids=['target-has-backing', 'target-standalone'])
def test_convert_backing_existing_target(src, ref_qemu_img, our_qemu_img,
                                         with_backing):
    """-n -B into an existing image: the target's own backing file (if
    any) is what the skipped clusters read; allocation as the
    reference's."""
    maps = []
    for tool, target in ((ref_qemu_img, 'ref-n.qcow2'),
                         (our_qemu_img, 'our-n.qcow2')):
        if os.path.exists(src / target):
            os.unlink(src / target)
        opts = ['-b', 'd/mid.qcow2', '-F', 'qcow2'] if with_backing else []
        ref_run(ref_qemu_img, src, 'create', '-q', '-f', 'qcow2', *opts,
                target, '3M')
        ref_run(tool, src, 'convert', '-n', '-O', 'qcow2', '-B',
                'd/mid.qcow2', '-F', 'qcow2', 'top.qcow2', target)
        maps.append(ref_run(ref_qemu_img, src, 'map', '--output=json',
                            target).out)
    assert maps[0] == maps[1]
    ref_run(ref_qemu_img, src, 'compare', 'ref-n.qcow2', 'our-n.qcow2')
    if with_backing:
        ref_run(ref_qemu_img, src, 'compare', 'top.qcow2', 'our-n.qcow2')
