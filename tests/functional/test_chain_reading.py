"""Reading across backing chains of three and more layers: map (human and
JSON, depth/present, --start-offset/--max-length), compare of images with
different chains and formats, info --backing-chain with relative names,
and a 200-layer chain.  The images are made by the reference tools; every
output is compared with the reference's on the same files."""
import os
import shutil
import struct

import pytest

from conftest import raw_under_qcow2, ref_run, ref_tools, run


@pytest.fixture(scope='module')
def chains(tmp_path_factory, ref_qemu_img, ref_qemu_io):
    """In one directory (names relative to each overlay's directory):

    chain 1, raw at the bottom, each layer longer than the one below:
      base.raw (1M): 0x01 at [0, 256k), zeroes written at [512k, 576k)
      d/mid.qcow2 (2M) -> ../base.raw: 0x02 at 64k, a zero cluster at
        128k, 0x03 at 1536k, a zero cluster at 1600k
      top.qcow2 (3M) -> d/mid.qcow2: 0x04 at [192k, 224k), zero at 2M
    chain 2, four qcow2 layers, zero clusters in the middle layers, one
    with subclusters:
      q/base.qcow2 (4M): 0x11 at [0, 1M)
      q/m1.qcow2 -> base.qcow2: zero clusters at [256k, 512k), 0x12 at 2M
      q/m2.qcow2 (extended_l2) -> m1.qcow2: 0x13 at [36k, 40k), zeroes
        at [300k, 304k)
      top4.qcow2 -> q/m2.qcow2: 0x14 at [3M, 3M+64k)
    flat.qcow2: top.qcow2 converted by the reference (same content, no
    backing); other.qcow2 (3M) -> flat.qcow2 with 0x09 at [300k, 304k).
    """
    d = tmp_path_factory.mktemp('chains')
    img, io = ref_tools(ref_qemu_img, ref_qemu_io, d)
    os.mkdir(d / 'q')
    raw_under_qcow2(d, img, io)
    io('top.qcow2', 'write -P 4 192k 32k', 'write -z 2M 64k')

    img('create', '-q', '-f', 'qcow2', 'q/base.qcow2', '4M')
    io('q/base.qcow2', 'write -P 0x11 0 1M')
    img('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2',
        'q/m1.qcow2')
    io('q/m1.qcow2', 'write -z 256k 256k', 'write -P 0x12 2M 64k')
    img('create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', '-b',
        'm1.qcow2', '-F', 'qcow2', 'q/m2.qcow2')
    io('q/m2.qcow2', 'write -P 0x13 36k 4k', 'write -z 300k 4k')
    img('create', '-q', '-f', 'qcow2', '-b', 'q/m2.qcow2', '-F', 'qcow2',
        'top4.qcow2')
    io('top4.qcow2', 'write -P 0x14 3M 64k')

    img('convert', '-O', 'qcow2', 'top.qcow2', 'flat.qcow2')
    img('create', '-q', '-f', 'qcow2', '-b', 'flat.qcow2', '-F', 'qcow2',
        'other.qcow2')
    io('other.qcow2', 'write -P 9 300k 4k')
    return d


def outputs(tool, argv, cwd):
    r = run([tool] + argv, cwd=str(cwd))
    name = os.path.basename(tool)
    return r.rc, r.out, r.err.replace(tool, name)


def same(ref, our, argv, cwd):
    """Our qemu-img (a symlink of that name) prints what the reference
    prints, with the same exit status."""
    expected = outputs(ref, argv, cwd)
    assert outputs(our, argv, cwd) == expected
    return expected


MAP_CASES = [
    ['map', 'top.qcow2'],
    ['map', '--output=json', 'top.qcow2'],
    ['map', '--output=json', 'd/mid.qcow2'],
    ['map', '--output=json', '-f', 'qcow2', 'top.qcow2'],
    ['map', '--output', 'json', '-s', '100000', '-l', '1000000', 'top.qcow2'],
    ['map', '--output=json', '--start-offset=1M', 'top.qcow2'],
    ['map', '--output=json', '--start-offset=1000k', '--max-length=600k',
     'top.qcow2'],
    ['map', '--start-offset=64k', '--max-length=1M', 'top.qcow2'],
    ['map', '--output=json', '--image-opts',
     'driver=qcow2,file.filename=top.qcow2'],
    ['map', 'top4.qcow2'],
    ['map', '--output=json', 'top4.qcow2'],
    ['map', '--output=json', 'q/m2.qcow2'],
    ['map', '--output=json', '-s', '32k', '-l', '300k', 'top4.qcow2'],
    ['map', '--output=json', '--max-length=0', 'top4.qcow2'],
    ['map', '--output=json', 'other.qcow2'],
]


@pytest.mark.parametrize('argv', MAP_CASES, ids=' '.join)
def test_map(chains, ref_qemu_img, our_qemu_img, argv):
    rc, out, _ = same(ref_qemu_img, our_qemu_img, argv, chains)
    assert rc == 0


def test_map_depths(chains, ref_qemu_img, our_qemu_img):
    """The depths are those of the layers that hold each range (a format
    invariant checked directly, besides the reference's output)."""
    import json
    out = run([our_qemu_img, 'map', '--output=json', 'top4.qcow2'],
              cwd=str(chains)).out
    by_start = {e['start']: e for e in json.loads(out)}
    assert by_start[0]['depth'] == 3              # q/base.qcow2 data
    assert by_start[36 * 1024]['depth'] == 1      # m2's subcluster
    assert by_start[256 * 1024]['depth'] == 2     # m1's zero clusters
    assert by_start[256 * 1024]['zero']
    assert by_start[3 << 20]['depth'] == 0        # top4's own data


COMPARE_CASES = [
    ['compare', 'top.qcow2', 'flat.qcow2'],
    ['compare', '-s', 'top.qcow2', 'flat.qcow2'],
    ['compare', 'top.qcow2', 'other.qcow2'],
    ['compare', '-s', 'other.qcow2', 'top.qcow2'],
    ['compare', '-f', 'qcow2', '-F', 'raw', 'top.qcow2', 'base.raw'],
    ['compare', '-s', 'top.qcow2', 'base.raw'],
    ['compare', 'd/mid.qcow2', 'top.qcow2'],
    ['compare', '-s', 'd/mid.qcow2', 'top.qcow2'],
    ['compare', 'q/m1.qcow2', 'q/m2.qcow2'],
    ['compare', '-s', 'q/m1.qcow2', 'q/m2.qcow2'],
    ['compare', 'top4.qcow2', 'q/base.qcow2'],
    ['compare', '-s', 'top4.qcow2', 'top.qcow2'],
    ['compare', '-U', 'top4.qcow2', 'top4.qcow2'],
    ['compare', '-f', 'raw', 'top.qcow2', 'flat.qcow2'],
]


@pytest.mark.parametrize('argv', COMPARE_CASES, ids=' '.join)
def test_compare(chains, ref_qemu_img, our_qemu_img, argv):
    same(ref_qemu_img, our_qemu_img, argv, chains)


INFO_CASES = [
    ['info', '--backing-chain', 'top.qcow2'],
    ['info', '--backing-chain', '--output=json', 'top.qcow2'],
    ['info', '--backing-chain', 'top4.qcow2'],
    ['info', '--backing-chain', '--output=json', 'top4.qcow2'],
    ['info', '--backing-chain', '-U', 'q/m2.qcow2'],
    ['info', '--backing-chain', '--output=json', 'other.qcow2'],
]


@pytest.mark.parametrize('argv', INFO_CASES, ids=' '.join)
def test_info_backing_chain(chains, ref_qemu_img, our_qemu_img, argv):
    rc, _, _ = same(ref_qemu_img, our_qemu_img, argv, chains)
    assert rc == 0


def test_info_backing_chain_from_other_dir(chains, ref_qemu_img,
                                           our_qemu_img):
    """Relative backing names resolve against each overlay's directory,
    whatever the working directory."""
    argv = ['info', '--backing-chain', str(chains / 'top4.qcow2')]
    same(ref_qemu_img, our_qemu_img, argv, chains / 'd')


# ---- a deep chain ----

DEEP = 200
CLUSTER = 65536


def set_backing_name(path, name):
    """Rewrite the backing file name in a qcow2 header in place (the same
    length as the one it replaces: header bytes 8..19 give where and how
    long)."""
    with open(path, 'r+b') as f:
        hdr = f.read(20)
        off, size = struct.unpack('>QI', hdr[8:20])
        assert size == len(name)
        f.seek(off)
        f.write(name.encode())


@pytest.fixture(scope='module')
def deep_chain(tmp_path_factory, ref_qemu_img, strata_io):
    """deep000.qcow2 .. deep199.qcow2, each the backing file of the next;
    layer i holds byte i+1 in cluster 2i, and every tenth layer also a
    zero cluster at 2i+1 over the base's data.  The layers are one
    template created by the reference, copied with the backing name
    rewritten, and written with the chain cut (backing: null), so that
    building it costs no chain opens."""
    d = tmp_path_factory.mktemp('deep')
    size = str(2 * DEEP * CLUSTER)
    ref_run(ref_qemu_img, d, 'create', '-q', '-f', 'qcow2', 'deep000.qcow2',
            size)
    ref_run(ref_qemu_img, d, 'create', '-q', '-f', 'qcow2', '-u', '-b',
            'deep000.qcow2', '-F', 'qcow2', 'template.qcow2', size)
    cmds = ['-c', 'open json:{"driver":"qcow2","file":{"driver":"file",'
            '"filename":"deep000.qcow2"}}',
            '-c', f'write -P 0xee 0 {2 * DEEP * CLUSTER}']
    for i in range(1, DEEP):
        name = f'deep{i:03d}.qcow2'
        shutil.copy(d / 'template.qcow2', d / name)
        set_backing_name(d / name, f'deep{i - 1:03d}.qcow2')
    for i in range(DEEP):
        name = f'deep{i:03d}.qcow2'
        opened = (f'open json:{{"driver":"qcow2","file":{{"driver":"file",'
                  f'"filename":"{name}"}},"backing":null}}')
        cmds += ['-c', 'close', '-c', opened,
                 '-c', f'write -P {i % 250 + 1} {2 * i * CLUSTER} {CLUSTER}']
        if i % 10 == 5:
            cmds += ['-c', f'write -z {(2 * i + 1) * CLUSTER} {CLUSTER}']
    r = run([strata_io] + cmds, cwd=str(d))
    assert r.rc == 0 and 'error' not in r.out + r.err, r
    return d


@pytest.mark.parametrize('argv', [
    ['map', f'deep{DEEP - 1:03d}.qcow2'],
    ['map', '--output=json', f'deep{DEEP - 1:03d}.qcow2'],
    ['map', '--output=json', '-s', '1M', '-l', '7M', 'deep150.qcow2'],
    ['info', '--backing-chain', '--output=json', f'deep{DEEP - 1:03d}.qcow2'],
], ids=' '.join)
def test_deep_chain_output(deep_chain, ref_qemu_img, our_qemu_img, argv):
    rc, out, _ = same(ref_qemu_img, our_qemu_img, argv, deep_chain)
    assert rc == 0 and out.count('\n') > DEEP / 2


def test_deep_chain_convert_and_compare(deep_chain, ref_qemu_img,
                                        our_qemu_img):
    """A flattened copy reads as the chain, maps as the reference's copy,
    and compares equal to the chain (both tools agree)."""
    top = f'deep{DEEP - 1:03d}.qcow2'
    for tool, out in ((ref_qemu_img, 'ref.qcow2'), (our_qemu_img, 'our.qcow2')):
        ref_run(tool, deep_chain, 'convert', '-O', 'qcow2', top, out)
    maps = [ref_run(ref_qemu_img, deep_chain, 'map', '--output=json', f).out
            for f in ('ref.qcow2', 'our.qcow2')]
    assert maps[0] == maps[1]
    ref_run(ref_qemu_img, deep_chain, 'check', 'our.qcow2')
    same(ref_qemu_img, our_qemu_img, ['compare', top, 'our.qcow2'],
         deep_chain)
