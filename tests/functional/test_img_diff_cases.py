"""strata-img against the reference qemu-img 10.0 on raw images: cases
found by a seeded random argument generator (option tables and prefix
abbreviations, --object help, --image-opts with an implied file=, the
order of checks, progress lines on failure).

Each case runs once per program in its own directory holding identical
files; stdout, stderr (program path replaced), exit status and the
resulting files must match."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import make_image, run

NULL_CO = 'json:{"driver":"null-co","size":1048576}'


def setup_files(d):
    with open(os.path.join(d, 'r.raw'), 'wb') as f:
        f.truncate(65536)
        f.seek(4096)
        f.write(b'\x11' * 8192)
    open(os.path.join(d, 'e.raw'), 'wb').close()
    with open(os.path.join(d, 'b.raw'), 'wb') as f:
        f.truncate(1 << 20)
        f.write(b'\x33' * 512)
    os.mkdir(os.path.join(d, 'dir'))


def snapshot(d):
    out = {}
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        if os.path.isfile(p):
            size = os.path.getsize(p)
            with open(p, 'rb') as f:
                out[n] = f.read() if size < (8 << 20) else size
    return out


def run_in(prog, argv):
    d = tempfile.mkdtemp(prefix='strata-imgdiff-')
    try:
        setup_files(d)
        r = subprocess.run([prog] + argv, cwd=d, capture_output=True,
                           timeout=60)
        fix = lambda b: b.decode(errors='replace').replace(prog, 'qemu-img')
        return fix(r.stdout), fix(r.stderr), r.returncode, snapshot(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


CASES = [
    # --object help and TYPE,help print and exit 0
    ['info', '--object', 'help', 'r.raw'],
    ['info', '--object', '?', 'r.raw'],
    ['map', '--object', 'secret,help', 'r.raw'],
    ['dd', '--object=secret,id=s0,help', 'if=r.raw', 'of=o.raw'],
    ['check', '--object', 'throttle-group,help', 'r.raw'],
    ['info', '--object', 'bogus,help', 'r.raw'],
    ['info', '--object', 'tls-creds-x509,help', 'r.raw'],
    ['info', '--object', 'secret,help=on', 'r.raw'],
    ['info', '--object', 'help=on', 'r.raw'],
    # --image-opts: a first element without '=' is file=
    ['info', '--image-opts', 'r.raw'],
    ['info', '--image-opts', 'x,driver=raw'],
    ['info', '--image-opts', ','],
    ['info', '--image-opts', ''],
    ['info', '--image-opts', 'file=r.raw'],
    ['snapshot', '--image-opts', '-l', 'r.raw'],
    ['bench', '-c', '1', '--image-opts', 'r.raw'],
    ['compare', '--image-opts', 'r.raw', 'driver=file,filename=r.raw'],
    # long option tables: names, order of ambiguity lists
    # (convert also takes the long names its --help documents and -b, a
    # superset of the reference's table: prefixes they share are not
    # compared; see test_convert_documented_long_options)
    ['convert', '--o'], ['convert', '--b'],
    ['convert', '--r'], ['convert', '--output'],
    ['convert', '--output-cache=bogus', 'r.raw', 'o.raw'],
    ['convert', '--output-format=bogus', 'r.raw', 'o.raw'],
    ['convert', '--options=bogus', 'r.raw', 'o.raw'],
    ['convert', '--snapshot=-T', 'x', 'r.raw', 'o.raw'],
    ['amend', '--o'], ['create', '--o'], ['dd', '--o'], ['bench', '--f'],
    ['measure', '--f'], ['measure', '--o'], ['measure', '--s'],
    ['rebase', '--f'], ['compare', '--l'], ['compare', '--r'],
    ['compare', '--right-format=bogus', 'r.raw', 'b.raw'],
    ['compare', '--left-format=bogus', 'r.raw', 'b.raw'],
    # order of checks; progress lines printed on failure
    ['convert', '-l', '-T', 'writethrough', 'r.raw', 'r.raw'],
    ['convert', '--bitmaps', 'json:{bad', 'r.raw', 'o.raw'],
    ['convert', '-p', 'm.raw', 'o.raw'],
    ['convert', '-p', '-O', 'bogus', 'r.raw', 'o.raw'],
    ['convert', '-p', '-T', 'bogus', 'r.raw', 'o.raw'],
    ['convert', '-p', '-l', 'x', 'r.raw', 'b.raw', 'o.raw'],
    ['convert', '-p', '--bitmaps', 'r.raw', 'b.raw', 'o.raw'],
    ['convert', '-p', '-o', 'bogus=1', 'r.raw', 'o.raw'],
    ['compare', '-p', 'm.raw', 'r.raw'],
    ['compare', '-p', 'r.raw', 'm.raw'],
    ['compare', '-p', '-T', 'bogus', 'r.raw', 'r.raw'],
    ['compare', '-p', '--image-opts', '-f', 'raw', 'r.raw', 'r.raw'],
    ['compare', '-T', 'bogus', '--image-opts', '-f', 'raw', 'r.raw', 'r.raw'],
    ['compare', '-p', 'r.raw', 'e.raw'],
    ['measure', '-f', 'raw', '--image-opts', 'driver=raw'],
    ['measure', '-f', 'raw', '--image-opts', '-O', 'bogus', 'driver=raw'],
    ['measure', '-f', 'raw', '--image-opts', '--size', '1k'],
    # EFBIG from the file system
    ['create', 'o.raw', '1P'],
    ['create', '-f', 'raw', '-q', 'o.raw', '1E'],
    # sizes: a negative or too large number followed by anything is
    # malformed, alone it is out of range
    ['create', '-f', 'raw', '--', 'o.raw', '-1k'],
    ['create', '-f', 'raw', '--', 'o.raw', '-0x10'],
    ['create', '-f', 'raw', '--', 'o.raw', '-1'],
    ['create', '-f', 'raw', 'o.raw', '99999999999999999999k'],
    # -o: elements checked in order; help is a bare "help" element
    ['create', '-o', 'nocow=x,bogus=1', 'o.raw', '1k'],
    ['create', '-o', 'nocow,,', 'o.raw', '1k'],
    ['create', '-o', 'help,,x', 'o.raw'],
    ['create', '-o', 'size=1M,,help', 'o.raw'],
    ['measure', '-o', 'nocow=x,bogus=1', '--size', '1k'],
    # bitmap --add: the name, then the granularity as a 32-bit number
    ['bitmap', '-f', 'raw', '--add', 'r.raw', ''],
    ['bitmap', '-f', 'raw', '--add', '-g', '4G', 'r.raw', 'bm'],
    # rebase asks the image for its cluster size, also with -u
    ['rebase', '-u', '-b', '', 'json:{"driver":"raw","file":{"driver":"null-co"}}'],
]


@pytest.mark.parametrize('argv', CASES, ids=lambda a: ' '.join(a))
def test_img_diff_case(argv, our_qemu_img, ref_qemu_img):
    exp = run_in(ref_qemu_img, argv)
    act = run_in(our_qemu_img, argv)
    assert act[0] == exp[0]
    assert act[1] == exp[1]
    assert act[2] == exp[2]
    assert act[3] == exp[3]


DOCUMENTED = [
    ['--source-format', 'raw', '--target-format', 'raw'],
    ['-f', 'raw', '--target-options', 'preallocation=off', '-O', 'raw',
     '--target-cache', 'writeback', '--source-snapshot', 'x'],
    ['-f', 'raw', '-O', 'raw', '--no-create', '--target-is-zero'],
    ['-f', 'raw', '-O', 'raw', '--compress'],
    ['-f', 'raw', '-O', 'raw', '-b', 'base.raw'],
]


@pytest.mark.parametrize('opts', DOCUMENTED, ids=[' '.join(o) for o in DOCUMENTED])
def test_convert_documented_long_options(opts, tmp_path, our_qemu_img, ref_qemu_img):
    """The long names convert --help lists (and -b) behave as their short
    forms do in the reference."""
    short = {'--source-format': '-f', '--target-format': '-O', '--progress': '-p',
             '--target-options': '-o', '--target-cache': '-t',
             '--source-snapshot': '-l', '--no-create': '-n', '--compress': '-c',
             '-b': '-B'}
    results = []
    for prog, argv in ((our_qemu_img, opts), (ref_qemu_img, [short.get(a, a) for a in opts])):
        d = tmp_path / ('our' if prog == our_qemu_img else 'ref')
        d.mkdir()
        make_image(d / 'r.raw', 1 << 20, [(0, b'x' * 4096)])
        make_image(d / 'o.raw', 1 << 20)
        res = run([prog, 'convert'] + argv + ['r.raw', 'o.raw'], cwd=d)
        results.append((res.rc, res.out, res.err.replace(prog, 'qemu-img')))
    assert results[0] == results[1]
