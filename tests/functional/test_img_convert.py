"""qemu-img convert: options and errors against the reference, content
and sparseness of the result (raw -> raw)."""
import os
import subprocess
import time

import pytest

from conftest import make_image, pattern, run
from test_img_compare import no_direct_dir  # noqa: F401 (fixture)

MiB = 1 << 20


def norm(text, prog):
    return text.replace(prog, 'qemu-img')


def both(our, ref, args, cwd):
    """Run ours and the reference in @cwd; the target 't' is removed
    before each run.  Returns (ours, reference)."""
    res = []
    for prog in (our, ref):
        t = os.path.join(cwd, 't')
        if os.path.exists(t):
            os.unlink(t)
        r = run([prog, 'convert'] + args, cwd=cwd)
        r.err = norm(r.err, prog)
        r.target = os.path.getsize(t) if os.path.exists(t) else None
        res.append(r)
    return res


@pytest.fixture
def src(tmp_path):
    """10 MiB: data at 1 MiB and 5 MiB, zeroes written at 3 MiB."""
    return make_image(tmp_path / 's.raw', 10 * MiB,
                      [(MiB, pattern(0xa5, 64 * 1024)),
                       (3 * MiB, bytes(MiB)),
                       (5 * MiB, os.urandom(MiB + 4096))])


ERROR_CASES = [
    [],
    ['s.raw'],
    ['-f'],
    ['-X', 's.raw', 't'],
    ['--bogus', 's.raw', 't'],
    ['-m', '0', 's.raw', 't'],
    ['-m', '17', 's.raw', 't'],
    ['-m', 'x', 's.raw', 't'],
    ['-S', '1', 's.raw', 't'],
    ['-S', '17M', 's.raw', 't'],
    ['-S', 'x', 's.raw', 't'],
    ['-r', 'x', 's.raw', 't'],
    ['-r', '-1', 's.raw', 't'],
    ['-r', '-1k', 's.raw', 't'],
    ['-r', '-', 's.raw', 't'],
    ['-r', '-.5k', 's.raw', 't'],
    ['-r', '8E', 's.raw', 't'],
    ['--target-is-zero', 's.raw', 't'],
    ['-c', '-O', 'raw', 's.raw', 't'],
    ['-C', '-c', 's.raw', 't'],
    ['-C', '--salvage', 's.raw', 't'],
    ['-B', 'b.raw', 's.raw', 't'],
    ['-F', 'raw', 's.raw', 't'],
    ['-O', 'foo', 's.raw', 't'],
    ['-t', 'bad', 's.raw', 't'],
    ['-T', 'bad', 's.raw', 't'],
    ['--bitmaps', 's.raw', 't'],
    ['--bitmaps', 's.raw', 's.raw', 't'],
    ['--skip-broken-bitmaps', 's.raw', 't'],
    ['-l', 'x', 's.raw', 't'],
    ['-l', 'x', 's.raw', 's.raw', 't'],
    ['-O', 'raw', '-o', 'preallocation=bad', 's.raw', 't'],
    ['-O', 'raw', '-o', 'foo=1', 's.raw', 't'],
    ['-n', 's.raw', 'nonexist'],
    ['missing.raw', 't'],
    ['--image-opts', '-f', 'raw', 's.raw', 't'],
    ['--target-image-opts', 's.raw', 't'],
    ['-n', '-o', 'size=1M', 's.raw', 'small.raw'],
    ['-n', 's.raw', 'small.raw'],
    ['-o', 'help'],
    ['-o', 'help', 's.raw', 't'],
    # value checks: a size first, then the option's own range
    ['-S', '-1', 's.raw', 't'],
    ['-S', '8E', 's.raw', 't'],
    ['-m', '0x10', 's.raw', 't'],
    ['-m', '08', 's.raw', 't'],
    ['-m', '99999999999999999999', 's.raw', 't'],
    # -o: the list syntax when given, then element by element in order
    ['-o', '', 's.raw', 't'],
    ['-o', 'a,', 's.raw', 't'],
    ['-o', 'foo=1,bar=2', 's.raw', 't'],
    ['-o', 'size=x,foo=1', 's.raw', 't'],
    ['-o', 'preallocation=bad,foo=1', 's.raw', 't'],
    ['-c', '-o', 'foo=1', 's.raw', 't'],
    # the order of the checks
    ['-n', '-o', 'help'],
    ['-n', '-o', 'x', '--skip-broken-bitmaps'],
    ['--image-opts', '-f', 'raw'],
    ['--bitmaps', '-c', 's.raw', 't'],
    ['--bitmaps', '-n', 's.raw', 'nonexist'],
    ['-n', '-c', 's.raw', 'small.raw'],
    # -C with -c, any -S (even 0) or --salvage
    ['-C', '-S', '0', 's.raw', 't'],
    ['-C', '-S', '4k', '--salvage', 's.raw', 't'],
    ['-C', '-S', '4k', '-c', '-O', 'qcow2', 's.raw', 't'],
    ['-C', '--salvage', 's.raw', 't'],
    ['-n', '--target-image-opts', '-O', 'raw', 's.raw',
     'driver=raw,file.filename=small.raw'],
    # drivers and protocols that cannot create
    ['-O', 'null-co', 's.raw', 't'],
    ['-O', 'null-co', '-o', 'help'],
    ['s.raw', 'null-co://'],
    ['s.raw', 'json:{"driver":"file","filename":"t"}'],
    ['-o', 'help', 'null-co://'],
    ['-o', 'help', 's.raw', 'null-co://'],
    # abbreviations resolve against qemu-img's own table first
    ['--p', '2', 's.raw', 't'],
    ['--c', 's.raw', 't'],
    ['--so', 'raw', 's.raw', 't'],
    ['--ta', 's.raw', 't'],
    # the source does not share "write" with the target
    ['-n', 's.raw', 's.raw'],
    ['s.raw', 's.raw'],
]


@pytest.mark.parametrize('args', ERROR_CASES, ids=' '.join)
def test_messages_match_reference(our_qemu_img, ref_qemu_img, src, tmp_path,
                                  args):
    make_image(tmp_path / 'small.raw', MiB)
    ours, ref = both(our_qemu_img, ref_qemu_img, args, str(tmp_path))
    assert (ours.rc, ours.err, ours.out) == (ref.rc, ref.err, ref.out)
    assert ours.target == ref.target       # created (or not) alike


@pytest.mark.parametrize('args', [
    [], ['-W'], ['-m', '1'], ['-m', '16', '-W'], ['-S', '0'], ['-S', '64k'],
    ['-C'], ['-t', 'writeback', '-T', 'none'], ['--parallel', '3'],
    ['--oob-writes', '--copy-range-offloading'], ['-q'], ['-U'],
])
def test_content(our_qemu_img, ref_qemu_img, src, tmp_path, args):
    t = str(tmp_path / 't')
    r = run([our_qemu_img, 'convert', '-f', 'raw', '-O', 'raw'] + args + [src, t])
    assert (r.rc, r.err, r.out) == (0, '', '')
    assert open(t, 'rb').read() == open(src, 'rb').read()
    cmp = run([ref_qemu_img, 'compare', '-f', 'raw', '-F', 'raw', src, t])
    assert cmp.rc == 0, cmp


def allocated(path):
    return os.stat(path).st_blocks * 512


@pytest.mark.parametrize('args', [[], ['-S', '64k'], ['-S', '0']])
def test_sparseness_like_reference(our_qemu_img, ref_qemu_img, src, tmp_path,
                                   args):
    sizes = []
    for prog, name in ((our_qemu_img, 'a'), (ref_qemu_img, 'b')):
        t = str(tmp_path / name)
        r = run([prog, 'convert', '-f', 'raw', '-O', 'raw'] + args + [src, t])
        assert r.rc == 0, r
        sizes.append(allocated(t))
    assert abs(sizes[0] - sizes[1]) <= 64 * 1024, sizes
    if args == ['-S', '0']:
        assert sizes[0] >= 10 * MiB        # fully allocated


def test_zero_runs_skipped(our_qemu_img, src, tmp_path):
    t = str(tmp_path / 't')
    assert run([our_qemu_img, 'convert', '-f', 'raw', src, t]).rc == 0
    # the written zeroes at 3 MiB and the holes are not allocated
    assert allocated(t) < 2 * MiB + 256 * 1024


def test_no_create_zeroes_stale_target(our_qemu_img, src, tmp_path):
    t = make_image(tmp_path / 't', 12 * MiB, [(0, pattern(0x11, 12 * MiB))])
    r = run([our_qemu_img, 'convert', '-n', '-f', 'raw', '-O', 'raw', src, t])
    assert r.rc == 0, r
    data = open(t, 'rb').read()
    assert data[:10 * MiB] == open(src, 'rb').read()
    assert data[10 * MiB:] == pattern(0x11, 2 * MiB)    # tail untouched


def test_target_is_zero(our_qemu_img, src, tmp_path):
    t = make_image(tmp_path / 't', 10 * MiB)
    r = run([our_qemu_img, 'convert', '-n', '--target-is-zero', '-f', 'raw',
             '-O', 'raw', src, t])
    assert r.rc == 0, r
    assert open(t, 'rb').read() == open(src, 'rb').read()


def test_concatenation(our_qemu_img, ref_qemu_img, src, tmp_path):
    b = make_image(tmp_path / 'b.raw', 3 * MiB, [(MiB - 7, b'tail' * 100)])
    outs = []
    for prog, name in ((our_qemu_img, 'a'), (ref_qemu_img, 'r')):
        t = str(tmp_path / name)
        assert run([prog, 'convert', '-f', 'raw', src, b, src, t]).rc == 0
        outs.append(open(t, 'rb').read())
    assert outs[0] == outs[1]
    assert len(outs[0]) == 23 * MiB


def blkdebug(path, once=False):
    rule = '{"event":"read_aio","errno":5%s}' % (',"once":true' if once else '')
    return ('json:{"driver":"raw","file":{"driver":"blkdebug",'
            '"inject-error":[%s],"image":{"driver":"file","filename":"%s"}}}'
            % (rule, path))


@pytest.mark.parametrize('args', [[], ['--salvage'], ['--salvage', '-q']])
def test_read_errors_like_reference(our_qemu_img, ref_qemu_img, tmp_path,
                                    args):
    d = make_image(tmp_path / 'd.raw', 4 * MiB, [(0, os.urandom(4 * MiB))])
    before = open(d, 'rb').read()
    res = []
    for prog, name in ((our_qemu_img, 'a'), (ref_qemu_img, 'b')):
        r = run([prog, 'convert'] + args + [blkdebug(d), str(tmp_path / name)])
        res.append((r.rc, sorted(r.err.splitlines())))
    assert res[0] == res[1]
    assert open(d, 'rb').read() == before         # source untouched


def test_salvage_zeroes_bad_sectors(our_qemu_img, tmp_path):
    d = make_image(tmp_path / 'd.raw', MiB, [(0, pattern(0x77, MiB))])
    t = str(tmp_path / 't')
    r = run([our_qemu_img, 'convert', '-q', '--salvage', blkdebug(d), t])
    assert r.rc == 0, r
    assert open(t, 'rb').read() == bytes(MiB)


def test_progress_format(our_qemu_img, src, tmp_path):
    p = subprocess.run([our_qemu_img, 'convert', '-p', '-f', 'raw', src,
                        str(tmp_path / 't')], capture_output=True)
    assert p.returncode == 0
    r = run(['true'])
    r.out = p.stdout.decode()
    assert r.out.startswith('    (0.00/100%)\r')
    assert r.out.endswith('    (100.00/100%)\r\n')
    for line in r.out.rstrip('\n').split('\r')[:-1]:
        assert line.startswith('    (') and line.endswith('/100%)')
    r = run([our_qemu_img, 'convert', '-p', '-q', '-f', 'raw', src,
             str(tmp_path / 'u')])
    assert (r.rc, r.out) == (0, '')


def test_rate_limit(our_qemu_img, tmp_path):
    s = make_image(tmp_path / 's.raw', 4 * MiB, [(0, pattern(1, 4 * MiB))])
    t0 = time.monotonic()
    r = run([our_qemu_img, 'convert', '-r', '8M', '-f', 'raw', s,
             str(tmp_path / 't')])
    secs = time.monotonic() - t0
    assert r.rc == 0, r
    assert 0.25 < secs < 5


def test_help(our_qemu_img, ref_qemu_img):
    assert run([our_qemu_img, 'convert', '--help']).rc == 0


def map_json(ref_qemu_img, path):
    r = run([ref_qemu_img, 'map', '--output=json', '-f', 'raw', path])
    assert r.rc == 0, r
    return r.out


@pytest.mark.parametrize('args', [['-n'], ['-n', '-S', '0']])
def test_no_create_allocation_like_reference(our_qemu_img, ref_qemu_img, src,
                                             tmp_path, args):
    """-n into a stale target: zero ranges are punched as holes (the
    target is opened with discard), unless -S 0 asks for allocation."""
    maps = []
    for prog, name in ((our_qemu_img, 'a'), (ref_qemu_img, 'b')):
        t = make_image(tmp_path / name, 10 * MiB, [(0, pattern(0x11, 10 * MiB))])
        r = run([prog, 'convert'] + args + [src, t])
        assert (r.rc, r.err) == (0, ''), r
        assert open(t, 'rb').read() == open(src, 'rb').read()
        maps.append(map_json(ref_qemu_img, t))
    assert maps[0] == maps[1]


@pytest.mark.parametrize('args', [[], ['-U'], ['-n']])
def test_source_held_by_writer(our_qemu_img, ref_qemu_img, strata_lockholder,
                               src, tmp_path, args):
    """A source another process writes is refused (the copy would not be
    consistent) unless -U."""
    holder = subprocess.Popen([strata_lockholder, src, 'write',
                               'consistent-read,write'])
    try:
        time.sleep(0.5)
        assert holder.poll() is None
        make_image(tmp_path / 'small.raw', 20 * MiB)
        target = 'small.raw' if '-n' in args else 't'
        ours, ref = both(our_qemu_img, ref_qemu_img, args + ['s.raw', target],
                         str(tmp_path))
        assert (ours.rc, ours.err, ours.out) == (ref.rc, ref.err, ref.out)
        assert ours.target == ref.target
    finally:
        holder.terminate()
        holder.wait()


@pytest.mark.parametrize('args', [['-t', 'none'], ['-T', 'none'],
                                  ['-n', '-t', 'directsync']])
def test_without_o_direct(our_qemu_img, ref_qemu_img, no_direct_dir, args):
    """On a file system without O_DIRECT: the reference's message."""
    make_image(no_direct_dir / 's.raw', MiB, [(0, b'x' * 4096)])
    make_image(no_direct_dir / 'small.raw', MiB)
    target = 'small.raw' if '-n' in args else 't'
    ours, ref = both(our_qemu_img, ref_qemu_img, args + ['s.raw', target],
                     str(no_direct_dir))
    assert (ours.rc, ours.err, ours.out) == (ref.rc, ref.err, ref.out)
    assert ours.target == ref.target
