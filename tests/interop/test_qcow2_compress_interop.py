"""The qcow2 cluster codecs against QEMU 10.0, at the buffer level (the
qcow2 driver is tested on its own): clusters the reference compresses
decompress with ours, ours are byte-identical to its own (same levels,
window and parameters, hence the same image sizes), and clusters we
compress, placed in a reference-made image, read back in the reference."""
import os
import shutil

import pytest

from conftest import built, run
import qcow2_clusters

KiB = 1024
MiB = 1024 * KiB

# cluster size -> bytes of test data (a few clusters each)
SIZES = {512: 64 * KiB, 64 * KiB: 2 * MiB, 2 * MiB: 4 * MiB}


def corpus(n, skip=0):
    """@n bytes of real, mixed content: the machine's shared libraries,
    in a fixed order, starting @skip bytes in."""
    out = bytearray()
    top = '/usr/lib/x86_64-linux-gnu'
    for d, dirs, files in sorted(os.walk(top)):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(d, f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            with open(p, 'rb') as fh:
                out += fh.read(4 * MiB)
            if len(out) >= n + skip:
                return bytes(out[skip:skip + n])
    pytest.skip('not enough files under ' + top)


def make_data(cs):
    """Real content, plus one cluster of random bytes (stored
    uncompressed) and one of zeroes (not stored)."""
    n = SIZES[cs]
    data = bytearray(corpus(n))
    data[cs:2 * cs] = os.urandom(cs)
    data[2 * cs:3 * cs] = bytes(cs)
    return bytes(data)


@pytest.fixture(scope='module')
def codec():
    return built('tests', 'helpers', 'strata-qcow2-codec')


def ref_compressed_image(ref_qemu_img, tmp_path, ctype, cs, data):
    raw = tmp_path / 'src.raw'
    raw.write_bytes(data)
    img = str(tmp_path / 'ref.qcow2')
    r = run([ref_qemu_img, 'convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o',
             f'compression_type={ctype},cluster_size={cs}', str(raw), img])
    assert r.rc == 0, r
    return img


def codec_run(codec, op, ctype, size, data):
    import subprocess
    p = subprocess.run([codec, op, ctype, str(size)], input=data,
                       capture_output=True, timeout=60)
    return p.returncode, p.stdout


@pytest.mark.parametrize('cs', sorted(SIZES))
@pytest.mark.parametrize('ctype', ['zlib', 'zstd'])
def test_reference_clusters_decode_and_match(codec, ref_qemu_img, tmp_path,
                                             ctype, cs):
    data = make_data(cs)
    img = ref_compressed_image(ref_qemu_img, tmp_path, ctype, cs, data)
    found = {}
    for guest, _l2, host, nbytes in qcow2_clusters.compressed_clusters(img):
        payload = qcow2_clusters.read_payload(img, host, nbytes)
        cluster = data[guest:guest + cs]
        rc, out = codec_run(codec, 'decompress', ctype, cs, payload)
        assert rc == 0 and out == cluster, f'cluster at {guest}'
        rc, ours = codec_run(codec, 'compress', ctype, cs - 1, cluster)
        assert rc == 0
        # ours is the same stream; the payload runs on to the sector end
        assert payload[:len(ours)] == ours, f'cluster at {guest}'
        assert len(payload) - len(ours) < 512
        found[guest] = len(ours)
    assert cs not in found and 2 * cs not in found
    assert len(found) >= len(data) // cs // 2
    # the same compressed-or-not decision: what the reference stored
    # as is (not zero), ours finds does not fit (-ENOMEM: exit 2)
    for guest in range(0, len(data), cs):
        cluster = data[guest:guest + cs]
        if guest not in found and cluster != bytes(cs):
            assert codec_run(codec, 'compress', ctype, cs - 1,
                             cluster)[0] == 2, f'cluster at {guest}'


@pytest.mark.parametrize('cs', sorted(SIZES))
@pytest.mark.parametrize('ctype', ['zlib', 'zstd'])
def test_reference_reads_our_clusters(codec, ref_qemu_img, tmp_path, ctype,
                                      cs):
    data = make_data(cs)
    img = ref_compressed_image(ref_qemu_img, tmp_path, ctype, cs, data)
    # other content for every compressed cluster, compressed by us and
    # put in place of the reference's stream
    other = bytearray(data)
    new = corpus(len(data), skip=len(data) + 12345)
    patched = 0
    for guest, l2, _host, _n in list(qcow2_clusters.compressed_clusters(img)):
        rc, ours = codec_run(codec, 'compress', ctype, cs - 1,
                             new[guest:guest + cs])
        if rc == 2:
            continue
        assert rc == 0
        # a sector of junk after the stream, as the next cluster's data
        qcow2_clusters.append_payload(img, l2, ours + os.urandom(100))
        other[guest:guest + cs] = new[guest:guest + cs]
        patched += 1
    assert patched >= len(data) // cs - 3
    expect = tmp_path / 'expect.raw'
    expect.write_bytes(bytes(other))
    r = run([ref_qemu_img, 'compare', '-f', 'qcow2', '-F', 'raw', img,
             str(expect)])
    assert r.rc == 0, r


@pytest.mark.parametrize('wlog', [27, 28])
def test_zstd_window_limit_like_reference(codec, ref_qemu_img, ref_qemu_io,
                                          tmp_path, wlog):
    """A zstd frame of unknown size asking for a 2^28 window: QEMU's
    streaming decoder refuses it (libzstd's default limit), so do we;
    2^27 reads in both."""
    zstd = shutil.which('zstd')
    if not zstd:
        pytest.skip('zstd command not installed')
    import subprocess
    cs = 64 * KiB
    cluster = corpus(cs)
    frame = subprocess.run([zstd, '-q', '-c', f'--zstd=wlog={wlog}'],
                           input=cluster, capture_output=True,
                           check=True).stdout   # from a pipe: size unknown
    img = str(tmp_path / 'w.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'compression_type=zstd', img, '1M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -c -P 0x5a 0 64k', img]).rc == 0
    (_g, l2, _h, _n), = qcow2_clusters.compressed_clusters(img)
    qcow2_clusters.append_payload(img, l2, frame)
    expect = tmp_path / 'expect.raw'
    expect.write_bytes(cluster + bytes(MiB - cs))
    r = run([ref_qemu_img, 'compare', '-f', 'qcow2', '-F', 'raw', img,
             str(expect)])
    rc, out = codec_run(codec, 'decompress', 'zstd', cs, frame)
    if wlog <= 27:
        assert r.rc == 0, r
        assert rc == 0 and out == cluster
    else:
        assert 'Input/output error' in r.err, r
        assert rc == 1
