"""strata-img dd against the reference qemu-img: operands, options,
messages and the created output; plus the stdin/stdout extension."""
import hashlib
import os
import subprocess

import pytest

from conftest import make_image, run

MiB = 1 << 20


def prepare(d):
    make_image(d / 'h.raw', MiB, [(0, b'hello world'), (9000, b'abc' * 5000)])


CASES = [
    ('probe', ['if=h.raw', 'of=o.raw']),
    ('bs-count', ['if=h.raw', 'of=o.raw', 'bs=4k', 'count=2']),
    ('bs-count-skip', ['-f', 'raw', 'if=h.raw', 'of=o.raw', 'bs=4k', 'count=2', 'skip=1']),
    ('skip-only', ['-f', 'raw', 'if=h.raw', 'of=o.raw', 'bs=1k', 'skip=3']),
    ('bs-odd', ['-f', 'raw', 'if=h.raw', 'of=o.raw', 'bs=3000']),
    ('bs-fraction', ['-f', 'raw', 'if=h.raw', 'of=o.raw', 'bs=1.5k', 'count=7']),
    ('bs-repeated', ['if=h.raw', 'of=o.raw', 'bs=1k', 'bs=2k', 'count=3']),
    ('hex-count-skip', ['if=h.raw', 'of=o.raw', 'count=0x10', 'skip=0x2']),
    ('count-zero', ['-f', 'raw', 'if=h.raw', 'of=o.raw', 'count=0']),
    ('count-huge', ['if=h.raw', 'of=o.raw', 'count=9223372036854775807', 'bs=4k']),
    ('skip-beyond', ['-f', 'raw', 'if=h.raw', 'of=o.raw', 'skip=10000']),
    ('skip-huge', ['if=h.raw', 'of=o.raw', 'skip=9223372036854775807', 'bs=4k']),
    ('output-raw', ['-O', 'raw', 'if=h.raw', 'of=o.raw', 'bs=1M']),
    ('force-share', ['-U', '-f', 'raw', 'if=h.raw', 'of=o.raw', 'count=1']),
    ('image-opts', ['--image-opts', 'if=driver=raw,file.filename=h.raw', 'of=o.raw']),
    ('overwrite', ['-f', 'raw', 'if=h.raw', 'of=h2.raw', 'count=4']),
    ('bs-zero', ['bs=0', 'if=h.raw', 'of=o.raw']),
    ('bs-bad', ['bs=x', 'if=h.raw', 'of=o.raw']),
    ('bs-empty', ['if=h.raw', 'of=o.raw', 'bs=']),
    ('bs-too-big', ['-f', 'raw', 'if=h.raw', 'of=o.raw', 'bs=2G']),
    ('count-bad', ['count=x', 'if=h.raw', 'of=o.raw']),
    ('count-suffix', ['-f', 'raw', 'if=h.raw', 'of=o.raw', 'count=1G']),
    ('count-negative', ['count=-1', 'if=h.raw', 'of=o.raw']),
    ('skip-bad', ['skip=x', 'if=h.raw', 'of=o.raw']),
    ('skip-suffix', ['-f', 'raw', 'if=h.raw', 'of=o.raw', 'bs=1k', 'skip=1G']),
    ('unknown-operand', ['foo=1', 'if=h.raw', 'of=o.raw']),
    ('operand-no-value', ['xx']),
    ('operand-empty-key', ['if=h.raw', 'of=o.raw', '=3']),
    ('missing-input-file', ['if=nonex', 'of=o.raw']),
    ('image-opts-and-format', ['--image-opts', '-f', 'raw', 'if=h.raw', 'of=o.raw']),
    ('bad-output-format', ['-O', 'foo', 'if=h.raw', 'of=o.raw']),
    ('create-fails', ['if=h.raw', '-f', 'raw', 'of=/nonexistent-dir/x']),
    ('empty-if', ['if=', 'of=o.raw']),
    ('empty-of', ['if=h.raw', 'of=']),
    ('bad-option', ['-x']),
    ('missing-argument', ['if=h.raw', 'of=o.raw', '-O']),
    # skip= past the end is reported once the output exists, so not at all
    # when creating it fails
    ('skip-beyond-create-fails', ['-f', 'raw', 'if=h.raw', 'of=nodir/o.raw', 'skip=10000']),
    # the output's protocol must create files, checked before creating
    ('output-protocol-cannot-create', ['-f', 'raw', 'if=h.raw', 'of=null-co://']),
    ('output-protocol-unknown', ['-f', 'raw', 'if=h.raw', 'of=json:{"driver":"file"}']),
    ('output-format-and-protocol', ['-O', 'null-co', 'if=h.raw', 'of=null-co://']),
]


def run_bytes(argv, **kw):
    """run() for binary stdin/stdout."""
    kw.pop('text', None)
    p = subprocess.run(argv, capture_output=True, timeout=60, **kw)
    p.rc, p.out, p.err = p.returncode, p.stdout, p.stderr
    return p


def state(d):
    out = []
    for name in sorted(os.listdir(d)):
        with open(d / name, 'rb') as f:
            out.append((name, os.path.getsize(d / name),
                        hashlib.sha256(f.read()).hexdigest()))
    return out


def run_in(prog, d, argv, **kw):
    r = run([prog] + argv, cwd=d, **kw)
    return (r.rc, r.out.replace(prog, 'qemu-img'), r.err.replace(prog, 'qemu-img'))


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_dd_as_reference(case, tmp_path, our_qemu_img, ref_qemu_img):
    _, argv = case
    results = []
    for name, prog in (('ref', ref_qemu_img), ('ours', our_qemu_img)):
        d = tmp_path / name
        d.mkdir()
        prepare(d)
        make_image(d / 'h2.raw', 3 * MiB, [(0, b'old')])
        results.append((run_in(prog, d, ['dd'] + argv), state(d)))
    assert results[1] == results[0]


def test_dd_stdout(tmp_path, our_qemu_img):
    """Extension: without of= (or of=-) the raw data goes to stdout."""
    prepare(tmp_path)
    data = (tmp_path / 'h.raw').read_bytes()
    for argv in (['if=h.raw'], ['if=h.raw', 'of=-']):
        r = run_bytes([our_qemu_img, 'dd', '-f', 'raw', 'bs=4k', 'count=3', 'skip=1'] + argv,
                cwd=tmp_path, text=False)
        assert (r.rc, r.err) == (0, b'')
        assert r.out == data[4096:12288]


def test_dd_stdin(tmp_path, our_qemu_img):
    """Extension: without if= (or if=-) the input is read from stdin."""
    data = os.urandom(300000)
    for argv in (['of=o.raw'], ['if=-', 'of=o.raw']):
        r = run_bytes([our_qemu_img, 'dd', 'bs=1k', 'skip=2', 'count=100'] + argv,
                cwd=tmp_path, input=data, text=False)
        assert (r.rc, r.out, r.err) == (0, b'', b'')
        assert (tmp_path / 'o.raw').read_bytes() == data[2048:102400]
    r = run_bytes([our_qemu_img, 'dd', 'of=all.raw'], cwd=tmp_path, input=data, text=False)
    assert r.rc == 0 and (tmp_path / 'all.raw').read_bytes() == data


def test_dd_pipe_through(tmp_path, our_qemu_img):
    """stdin to stdout, and a non-raw output format refused for stdout."""
    data = os.urandom(10000)
    r = run_bytes([our_qemu_img, 'dd', 'bs=100', 'count=50'], input=data, text=False)
    assert (r.rc, r.out) == (0, data[:5000])
    r = run_bytes([our_qemu_img, 'dd', '-O', 'qcow2', 'if=-'], input=data, text=False)
    assert r.rc == 1 and r.out == b''
    for opt in (['-f', 'qcow2'], ['--image-opts']):
        r = run_bytes([our_qemu_img, 'dd'] + opt + ['of=-'], input=data, text=False)
        assert (r.rc, r.out) == (1, b'')
        assert r.err.endswith(b'Input format must be raw when reading from stdin\n')
    r = run_bytes([our_qemu_img, 'dd', '-f', 'raw', 'bs=100', 'count=1'], input=data,
                  text=False)
    assert (r.rc, r.out) == (0, data[:100])


def allocated(path):
    return os.stat(path).st_blocks * 512


def test_dd_output_allocation_as_reference(tmp_path, our_qemu_img, ref_qemu_img):
    """Every block is written, zeroes too: the output is as allocated as
    the reference's, not left sparse where the input reads as zeroes."""
    results = []
    for name, prog in (('ref', ref_qemu_img), ('ours', our_qemu_img)):
        d = tmp_path / name
        d.mkdir()
        make_image(d / 'z.raw', MiB, [(512 * 1024, b'x')])
        r = run_in(prog, d, ['dd', '-f', 'raw', 'if=z.raw', 'of=o.raw', 'bs=64k'])
        results.append((r, (d / 'o.raw').read_bytes() == (d / 'z.raw').read_bytes(),
                        allocated(d / 'o.raw') >= MiB))
    assert results[0][2], 'the reference writes every block'
    assert results[1] == results[0]


# ---- Proxmox VE's dd extensions (osize=, isize=, -n, -l) ----

def test_dd_proxmox_cloudinit_stream(tmp_path, our_qemu_img):
    """As Proxmox writes a cloud-init ISO: stdin into an existing volume,
    `-n isize=0 osize=SIZE`: the data lands at the start, the rest of the
    volume keeps its size and contents, nothing is printed."""
    iso = os.urandom(100000)
    vol = tmp_path / 'vol.raw'
    vol.write_bytes(b'\x77' * (4 * MiB))
    r = run_bytes([our_qemu_img, 'dd', '-n', '-f', 'raw', '-O', 'raw', 'isize=0',
                   f'osize={4 * MiB}', 'of=vol.raw'], cwd=tmp_path, input=iso, text=False)
    assert (r.rc, r.out, r.err) == (0, b'', b'')
    data = vol.read_bytes()
    assert len(data) == 4 * MiB and data[:100000] == iso
    assert data[100000:] == b'\x77' * (4 * MiB - 100000)


def test_dd_osize_creates_output_of_that_size(tmp_path, our_qemu_img, ref_qemu_img):
    """osize= sizes a created output; the copy stops there; the image
    passes the reference's compare against the input's first bytes."""
    prepare(tmp_path)
    data = (tmp_path / 'h.raw').read_bytes()
    r = run_bytes([our_qemu_img, 'dd', '-f', 'raw', 'osize=2M', 'if=h.raw', 'of=big.raw'],
                  cwd=tmp_path, text=False)
    assert r.rc == 0
    big = (tmp_path / 'big.raw').read_bytes()
    assert len(big) == 2 * MiB and big[:MiB] == data and big[MiB:] == bytes(MiB)
    r = run_bytes([our_qemu_img, 'dd', '-f', 'raw', 'osize=12k', 'if=h.raw', 'of=small.raw'],
                  cwd=tmp_path, text=False)
    assert r.rc == 0 and (tmp_path / 'small.raw').read_bytes() == data[:12288]
    r = run_bytes([ref_qemu_img, 'compare', '-f', 'raw', '-F', 'raw', 'big.raw', 'h.raw'],
                  cwd=tmp_path, text=False)
    assert r.rc == 0, r.out


def test_dd_osize_pads_stdout(tmp_path, our_qemu_img):
    """A stream to stdout is exactly osize bytes: cut, or padded with zeroes."""
    prepare(tmp_path)
    data = (tmp_path / 'h.raw').read_bytes()
    r = run_bytes([our_qemu_img, 'dd', '-f', 'raw', 'osize=3M', 'if=h.raw'],
                  cwd=tmp_path, text=False)
    assert r.rc == 0 and r.out == data + bytes(2 * MiB)
    r = run_bytes([our_qemu_img, 'dd', 'bs=1000', 'osize=2500'], input=b'\x01' * 9000,
                  text=False)
    assert r.rc == 0 and r.out == b'\x01' * 2500


def test_dd_isize_early_end_is_an_error(tmp_path, our_qemu_img):
    """isize= says how much stdin holds: less is an error naming both
    figures; exactly that much, or isize=0, is fine."""
    data = os.urandom(5000)
    r = run_bytes([our_qemu_img, 'dd', 'isize=8000', 'of=o.raw'], cwd=tmp_path,
                  input=data, text=False)
    assert r.rc == 1 and b'input ended after 5000 of 8000 bytes' in r.err
    for isize in ('5000', '0'):
        r = run_bytes([our_qemu_img, 'dd', f'isize={isize}', 'of=o.raw'], cwd=tmp_path,
                      input=data, text=False)
        assert (r.rc, r.err) == (0, b'') and (tmp_path / 'o.raw').read_bytes()[:5000] == data
    r = run_bytes([our_qemu_img, 'dd', 'isize=3000', 'of=-'], input=data, text=False)
    assert r.rc == 0 and r.out == data[:3000]


def test_dd_no_create_needs_the_output(tmp_path, our_qemu_img):
    """-n opens an existing output in the -O format and never grows it."""
    prepare(tmp_path)
    r = run_bytes([our_qemu_img, 'dd', '-n', 'if=h.raw', 'of=missing.raw'], cwd=tmp_path,
                  text=False)
    assert r.rc == 1 and b"Could not open 'missing.raw'" in r.err
    (tmp_path / 'small.raw').write_bytes(bytes(4096))
    r = run_bytes([our_qemu_img, 'dd', '-n', '-f', 'raw', 'if=h.raw', 'of=small.raw'],
                  cwd=tmp_path, text=False)
    assert r.rc == 1 and os.path.getsize(tmp_path / 'small.raw') == 4096
    r = run_bytes([our_qemu_img, 'dd', '-n', 'of=small.raw'], cwd=tmp_path,
                  input=b'\x05' * 6000, text=False)
    assert r.rc == 1 and os.path.getsize(tmp_path / 'small.raw') == 4096


def test_dd_snapshot_and_bad_sizes(tmp_path, our_qemu_img, ref_qemu_img):
    """-l on raw fails as convert -l does in the reference; osize=/isize=
    take sizes with suffixes and refuse anything else."""
    prepare(tmp_path)
    ours = run_bytes([our_qemu_img, 'dd', '-l', 'snap', 'if=h.raw', 'of=o.raw'],
                     cwd=tmp_path, text=False)
    ref = run_bytes([ref_qemu_img, 'convert', '-l', 'snap', 'h.raw', 'o2.raw'],
                    cwd=tmp_path, text=False)
    assert ours.rc == ref.rc == 1
    assert ours.err.split(b': ', 1)[1] == ref.err.split(b': ', 1)[1]
    assert not (tmp_path / 'o.raw').exists()
    r = run_bytes([our_qemu_img, 'dd', '-l', 'snapshot.bad=1', 'if=h.raw', 'of=o.raw'],
                  cwd=tmp_path, text=False)
    assert r.rc == 1 and b"Invalid parameter 'snapshot.bad'" in r.err
    for arg, msg in (('osize=-1', b'Invalid osize specified. Must be between 0'),
                     ('isize=1x', b"Invalid isize specified: '1x'.")):
        r = run_bytes([our_qemu_img, 'dd', arg, 'if=h.raw', 'of=o.raw'], cwd=tmp_path,
                      text=False)
        assert r.rc == 1 and msg in r.err, r.err
