"""Reads of many compressed clusters at once (block/format/qcow2/
read-compressed.c): a read over a run of compressed clusters takes their
bytes in one file read and inflates them together.  Whatever the run's
shape (cluster size, partial clusters at its edges, plain and zero
clusters between, vectors that split a cluster, descriptors that are not
packed in order), what is read is what the reference reads."""
import os
import random
import struct

import pytest

from conftest import run


def ref_compressed(ref_qemu_img, d, raw_name, name, data, cluster, ctype):
    """@data written to @raw_name in @d, then converted by the reference
    into the compressed qcow2 @name; returns its path."""
    raw = os.path.join(d, raw_name)
    with open(raw, 'wb') as f:
        f.write(data)
    img = os.path.join(d, name)
    r = run([ref_qemu_img, 'convert', '-c', '-f', 'raw', '-O', 'qcow2',
             '-o', f'cluster_size={cluster},compression_type={ctype}',
             raw, img])
    assert r.rc == 0, r
    return img


def ref_image(d, ref_qemu_img, ref_qemu_io, cluster, ctype='zstd'):
    """c.qcow2: compressed clusters of distinct data, with a plain
    cluster, a zero cluster and a hole among them; raw.img: its data."""
    rng = random.Random(cluster)
    size = 40 * cluster
    data = bytearray()
    for i in range(40):
        # compressible but distinct per cluster
        data += bytes(rng.randrange(0, 8) for _ in range(64)) * (cluster // 64)
    img = ref_compressed(ref_qemu_img, d, 'raw.img', 'c.qcow2', data, cluster,
                         ctype)
    r = run([ref_qemu_io, '-f', 'qcow2',
             '-c', f'write -P 0x5a {7 * cluster} {cluster}',
             '-c', f'write -z {13 * cluster} {cluster}',
             '-c', f'discard {20 * cluster} {cluster}', img])
    assert r.rc == 0, r
    return img, size


def to_raw(tool, src, dst, *opts):
    r = run([tool, 'convert', *opts, '-f', 'qcow2', '-O', 'raw', src, dst])
    assert r.rc == 0, r
    with open(dst, 'rb') as f:
        return f.read()


@pytest.mark.parametrize('cluster', [512, 4096, 65536, 2 * 1024 * 1024])
@pytest.mark.parametrize('ctype', ['zstd', 'zlib'])
def test_convert_reads_what_the_reference_reads(tmp_path, strata_img,
                                                ref_qemu_img, ref_qemu_io,
                                                cluster, ctype):
    if cluster == 2 * 1024 * 1024 and ctype == 'zlib':
        pytest.skip('one large-cluster codec is enough')
    img, _ = ref_image(str(tmp_path), ref_qemu_img, ref_qemu_io, cluster,
                       ctype)
    ours = to_raw(strata_img, img, str(tmp_path / 'o.raw'))
    theirs = to_raw(ref_qemu_img, img, str(tmp_path / 'r.raw'))
    assert ours == theirs


@pytest.mark.parametrize('cluster', [512, 65536])
def test_unaligned_reads_and_vectors(tmp_path, strata_io, ref_qemu_img,
                                     ref_qemu_io, cluster):
    img, size = ref_image(str(tmp_path), ref_qemu_img, ref_qemu_io, cluster)
    rng = random.Random(7)
    cmds = []
    for _ in range(12):
        off = rng.randrange(0, size - 1)
        n = rng.randrange(1, min(size - off, 9 * cluster) + 1)
        cmds += ['-c', f'read -v {off} {n}']
    # a vector whose elements split clusters (the bounce path)
    cmds += ['-c', f'readv -v {cluster // 2} {cluster} 1000 {cluster + 24}']
    outs = [run([tool, '-r', '-f', 'qcow2', *cmds, img])
            for tool in (ref_qemu_io, strata_io)]
    assert outs[1].rc == outs[0].rc == 0
    strip = [[ln for ln in o.out.splitlines() if 'ops/sec' not in ln]
             for o in outs]
    assert strip[1] == strip[0]


def l2_entries(path):
    """(file offset of the first L2 table, its entries) of a small image."""
    with open(path, 'rb') as f:
        hdr = f.read(48)
        cluster = 1 << struct.unpack('>I', hdr[20:24])[0]
        l1 = struct.unpack('>Q', hdr[40:48])[0]
        f.seek(l1)
        l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
        f.seek(l2)
        return l2, list(struct.unpack(f'>{cluster // 8}Q', f.read(cluster)))


def put_entry(path, l2, idx, value):
    with open(path, 'r+b') as f:
        f.seek(l2 + idx * 8)
        f.write(struct.pack('>Q', value))


@pytest.mark.parametrize('shape', ['repeat', 'backwards', 'corrupt'])
def test_descriptors_out_of_order(tmp_path, strata_img, ref_qemu_img,
                                  ref_qemu_io, shape):
    """Descriptors a writer never makes (the same bytes twice, a cluster
    stored before the one preceding it, a stream that does not decode)
    read as the reference reads them, or fail as it fails."""
    img, _ = ref_image(str(tmp_path), ref_qemu_img, ref_qemu_io, 4096)
    l2, e = l2_entries(img)
    if shape == 'repeat':
        put_entry(img, l2, 3, e[2])
    elif shape == 'backwards':
        put_entry(img, l2, 4, e[1])
        put_entry(img, l2, 5, e[0])
    else:
        with open(img, 'r+b') as f:
            host = e[5] & ((1 << 58) - 1)
            f.seek(host)
            f.write(b'\xff' * 16)
    outs = []
    for tool in (ref_qemu_img, strata_img):
        dst = str(tmp_path / 'out.raw')
        r = run([tool, 'convert', '-f', 'qcow2', '-O', 'raw', img, dst])
        data = open(dst, 'rb').read() if r.rc == 0 else None
        err = r.err.replace(os.path.basename(tool) + ':', 'TOOL:')
        outs.append((r.rc, err, data))
    assert outs[1][:2] == outs[0][:2]
    assert outs[1][2] == outs[0][2]


def mixed_source(d, ref_qemu_img, cluster=65536, ctype='zstd'):
    """m.qcow2: compressed clusters of which some are partly zero (half,
    one 4 KiB block, all but one block), so that where convert cuts its
    chunks decides which zero runs -S leaves out."""
    rng = random.Random(11)
    data = bytearray()
    for i in range(96):
        kind = rng.randrange(5)
        c = bytearray(bytes(rng.randrange(1, 8) for _ in range(64)) *
                      (cluster // 64))
        if kind == 1:
            c[cluster // 2:] = bytes(cluster // 2)
        elif kind == 2:
            c[8192:12288] = bytes(4096)
        elif kind == 3:
            c[4096:] = bytes(cluster - 4096)
        elif kind == 4 and i % 3 == 0:
            c = bytearray(cluster)
        data += c
    img = ref_compressed(ref_qemu_img, d, 'm.raw', 'm.qcow2', data, cluster,
                         ctype)
    return img


def map_json(ref_qemu_img, path, fmt):
    r = run([ref_qemu_img, 'map', '--output=json', '-f', fmt, path])
    assert r.rc == 0, r
    return r.out


@pytest.mark.parametrize('fmt', ['raw', 'qcow2'])
@pytest.mark.parametrize('extra', [[], ['-S', '0'], ['-S', '64k'],
                                   ['-S', '100k'], ['-S', '1M'],
                                   ['-m', '1', '-S', '8k'], ['-W']])
def test_convert_of_compressed_runs_like_reference(tmp_path, strata_img,
                                                   ref_qemu_img, fmt, extra):
    """Convert gathers the one-cluster extents of a compressed source
    into larger reads; what it writes (data, holes, zero clusters, the
    target's layout) and the progress it prints stay the reference's."""
    src = mixed_source(str(tmp_path), ref_qemu_img)
    outs = []
    for tool in (ref_qemu_img, strata_img):
        dst = str(tmp_path / f'out.{fmt}')
        if os.path.exists(dst):
            os.unlink(dst)
        r = run([tool, 'convert', '-p', *extra, '-f', 'qcow2', '-O', fmt,
                 src, dst])
        assert r.rc == 0, r
        outs.append((r.out, map_json(ref_qemu_img, dst, fmt),
                     open(dst, 'rb').read() if fmt == 'raw' else None))
        if fmt == 'qcow2':
            c = run([ref_qemu_img, 'compare', '-f', 'qcow2', '-F', 'qcow2',
                     src, dst])
            assert c.rc == 0, c
    if '-W' in extra:
        # progress and the target's layout follow completion order
        outs = [o[2:] for o in outs]
    assert outs[1] == outs[0]


@pytest.mark.parametrize('fmt', ['raw', 'qcow2'])
@pytest.mark.parametrize('nth', [0, 5, 17])
def test_read_error_inside_a_gathered_chunk(tmp_path, strata_img,
                                            ref_qemu_img, nth, fmt):
    """A compressed cluster that cannot be read, inside a run of them,
    fails the convert as the reference does: the same message, naming
    that cluster's chunk, and the clusters before it written."""
    src = mixed_source(str(tmp_path), ref_qemu_img)
    l2, e = l2_entries(src)
    comp = [x for x in e if x & (1 << 62)]
    host = comp[nth] & ((1 << 54) - 1)
    conf = tmp_path / 'b.conf'
    conf.write_text('[inject-error]\nevent = "read_compressed"\n'
                    f'errno = "5"\nsector = "{host // 512}"\nonce = "off"\n')
    outs = []
    for tool in (ref_qemu_img, strata_img):
        dst = str(tmp_path / f'out-{len(outs)}.{fmt}')
        # one coroutine: with more, what is written after a failure
        # depends on which chunks were in flight (window order)
        r = run([tool, 'convert', '-m', '1', '-O', fmt, 'json:{"driver": '
                 '"qcow2", "file": {"driver": "blkdebug", "config": "'
                 + str(conf) + '", "image": {"driver": "file", '
                 '"filename": "' + src + '"}}}', dst])
        err = r.err.replace(os.path.basename(tool) + ':', 'TOOL:')
        outs.append((r.rc, err))
    assert outs[0][0] == 1
    assert outs[1] == outs[0]
    a, b = (str(tmp_path / f'out-{i}.{fmt}') for i in (0, 1))
    r = run([ref_qemu_img, 'compare', '-f', fmt, '-F', fmt, a, b])
    assert r.rc == 0, r
    if fmt == 'qcow2':
        r = run([ref_qemu_img, 'check', b])
        assert r.rc == 0, r
