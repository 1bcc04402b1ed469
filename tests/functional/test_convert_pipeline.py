"""convert without -W onto qcow2 keeps several chunks' writes in flight
(BDRV_REQ_ALLOC_IN_ORDER: qcow2 allocates them in the order they arrive),
and a failed write names its chunk as the reference names it.  What the
target ends up holding, and where, stays what strictly ordered writes
give: the reference's image, byte for byte where the reference's is
deterministic."""
import os
import random

import pytest

from conftest import run

KiB = 1 << 10
MiB = 1 << 20


def source(path, size=24 * MiB, seed=5):
    """Data runs of varied lengths with holes and zero blocks between
    (some shorter than a cluster, some inside chunks)."""
    rng = random.Random(seed)
    with open(path, 'wb') as f:
        f.truncate(size)
        pos = 0
        while pos < size:
            n = min(rng.choice([4, 12, 64, 200, 1024, 3000]) * KiB,
                    size - pos)
            if rng.random() < 0.6:
                f.seek(pos)
                f.write(bytes([rng.randrange(1, 256)]) * n)
            pos += n + rng.choice([0, 0, 4, 64, 512]) * KiB
    return path


def convert_both(tools, tmp_path, src, opts):
    """Convert the raw @src to qcow2 with each of @tools (the reference
    first) and the same @opts; the two targets' paths."""
    outs = []
    for tool in tools:
        dst = str(tmp_path / f'{len(outs)}.qcow2')
        r = run([tool, 'convert', *opts, '-f', 'raw', '-O', 'qcow2', src,
                 dst])
        assert r.rc == 0, r
        outs.append(dst)
    return outs


def same_bytes(a, b):
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        return fa.read() == fb.read()


@pytest.mark.parametrize('opts', [[], ['-S', '0'], ['-S', '64k'],
                                  ['-m', '1'], ['-m', '16'],

                                  ['-o', 'cluster_size=4096'],
                                  ['-o', 'cluster_size=2M'],
                                  ['-o', 'extended_l2=on']])
def test_qcow2_target_is_the_references(tmp_path, strata_img, ref_qemu_img,
                                        opts):
    src = source(str(tmp_path / 's.raw'))
    outs = convert_both((ref_qemu_img, strata_img), tmp_path, src, opts)
    r = run([ref_qemu_img, 'check', outs[1]])
    assert r.rc == 0, r
    r = run([ref_qemu_img, 'compare', '-f', 'raw', '-F', 'qcow2', src,
             outs[1]])
    assert r.rc == 0, r
    with open(outs[0], 'rb') as a, open(outs[1], 'rb') as b:
        assert a.read() == b.read()


def failing_target(d, fmt, sector):
    conf = os.path.join(d, 'b.conf')
    with open(conf, 'w') as f:
        f.write('[inject-error]\nevent = "pwritev"\nerrno = "5"\n'
                f'sector = "{sector}"\nonce = "off"\n')
    return ('json:{"driver": "' + fmt + '", "file": {"driver": "blkdebug", '
            '"config": "' + conf + '", "image": {"driver": "file", '
            '"filename": "' + os.path.join(d, 't.' + fmt) + '"}}}')


@pytest.mark.parametrize('fmt', ['raw', 'qcow2'])
@pytest.mark.parametrize('m', ['1', '8'])
def test_failed_write_names_its_chunk(tmp_path, strata_img, ref_qemu_img,
                                      fmt, m):
    """A chunk written as several runs (a zero gap inside it) whose second
    run fails: the message names the chunk's start, as the reference's."""
    src = str(tmp_path / 's.raw')
    data = bytearray(b'\x11' * 4 * MiB)
    data[2 * MiB + 64 * KiB:2 * MiB + 128 * KiB] = bytes(64 * KiB)
    with open(src, 'wb') as f:
        f.write(data)
    outs = []
    for tool in (ref_qemu_img, strata_img):
        tgt = str(tmp_path / f't.{fmt}')
        if os.path.exists(tgt):
            os.unlink(tgt)
        r = run([ref_qemu_img, 'create', '-q', '-f', fmt, tgt, '4M'])
        assert r.rc == 0, r
        # raw: the guest offset; qcow2: past the metadata, in the data
        sector = (3 * MiB if fmt == 'raw' else 3 * MiB + 512 * KiB) // 512
        r = run([tool, 'convert', '-n', '-m', m, '-f', 'raw', '-O', fmt,
                 src, failing_target(str(tmp_path), fmt, sector)])
        outs.append((r.rc, r.err.replace(os.path.basename(tool) + ':',
                                         'TOOL:')))
    assert outs[0][0] == 1
    assert outs[1] == outs[0]


@pytest.mark.parametrize('ctype', ['zstd', 'zlib'])
def test_compressed_with_W_is_laid_out_in_order(tmp_path, strata_img,
                                                ref_qemu_img, ctype):
    """-c -W: compressed writes are submitted in guest order anyway (it
    costs no waiting), so the output is the reference's -c output byte
    for byte, not an order that depends on timing."""
    src = source(str(tmp_path / 's.raw'), size=8 * MiB, seed=9)
    outs = []
    for tool, w in ((ref_qemu_img, []), (strata_img, ['-W'])):
        dst = str(tmp_path / f'{len(outs)}.qcow2')
        r = run([tool, 'convert', '-c', *w, '-o',
                 f'compression_type={ctype}', '-f', 'raw', '-O', 'qcow2',
                 src, dst])
        assert r.rc == 0, r
        outs.append(open(dst, 'rb').read())
    assert outs[1] == outs[0]


def sector_source(path, size=2 * MiB, seed=9):
    """Data and zero runs of a few 512-byte sectors each."""
    rng = random.Random(seed)
    with open(path, 'wb') as f:
        f.truncate(size)
        pos = 0
        while pos < size:
            n = min(rng.choice([1, 2, 3, 5, 8, 17]) * 512, size - pos)
            if rng.random() < 0.5:
                f.seek(pos)
                f.write(bytes([rng.randrange(1, 256)]) * n)
            pos += n
    return path


@pytest.mark.parametrize('sparse', ['512', '1k', '2k', '3k', '6k'])
@pytest.mark.parametrize('target', ['cluster_size=512', 'cluster_size=1k',
                                    'extended_l2=on,cluster_size=16k'])
def test_small_sparse_units(tmp_path, strata_img, ref_qemu_img, sparse,
                            target):
    """-S under 4 KiB: zero runs are found in units of -S rounded down to
    a power of two, as the reference finds them; targets whose allocation
    unit is that small show it (512-byte clusters, 512-byte subclusters)."""
    src = sector_source(str(tmp_path / 's.raw'))
    outs = convert_both((ref_qemu_img, strata_img), tmp_path, src,
                        ['-S', sparse, '-o', target])
    assert same_bytes(*outs)


def zero_blocks_source(path, size=4 * MiB, seed=3):
    """Data written everywhere (no holes), with runs of zero bytes inside
    it: the zero runs are found in the data, not by block status."""
    rng = random.Random(seed)
    data = bytearray()
    while len(data) < size:
        n = rng.choice([4, 8, 12, 64, 100]) * KiB
        data += (bytes(n) if rng.random() < 0.4 else
                 bytes([rng.randrange(1, 256)]) * n)
    with open(path, 'wb') as f:
        f.write(data[:size])
    return path


@pytest.mark.parametrize('opts', [['-m', '1', '-W'],
                                  ['-m', '1', '-W', '-o', 'cluster_size=4k']])
def test_one_coroutine_out_of_order_is_in_order(tmp_path, strata_img,
                                                ref_qemu_img, opts):
    """-W with -m 1: qemu-img's one coroutine still writes a chunk's data
    runs one after another, so a target allocating as it goes holds them
    where the reference's does, byte for byte."""
    src = zero_blocks_source(str(tmp_path / 's.raw'))
    outs = convert_both((ref_qemu_img, strata_img), tmp_path, src, opts)
    assert same_bytes(*outs)
