"""strata-img commit: the same chain committed by the reference and by
Strata gives images the reference `compare` finds equal and `check` finds
clean, the same overlay state, and the reference's output; failures (an
I/O error on the base, SIGKILL) leave every image consistent and the
chain reading what it read before."""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import ref_create, ref_qio, run, twin_dirs

MiB = 1 << 20


def chain(d, ref_img, ref_io, base_fmt='qcow2', base_size=4 * MiB,
          top_size=4 * MiB, mid=False):
    """base (data everywhere) <- [mid] <- top, with data, zeroes and
    holes in the upper layers.  Returns the top's path."""
    ext = 'raw' if base_fmt == 'raw' else 'qcow2'
    base = os.path.join(d, 'base.' + ext)
    ref_create(ref_img, base, base_size, base_fmt)
    ref_qio(ref_io, base, f'write -P 0x11 0 {base_size}', fmt=base_fmt)
    below, below_fmt = 'base.' + ext, base_fmt
    if mid:
        ref_create(ref_img, os.path.join(d, 'mid.qcow2'), base_size, 'qcow2',
                   below, below_fmt)
        ref_qio(ref_io, os.path.join(d, 'mid.qcow2'), 'write -P 0x22 512k 1M',
                'write -z 3M 128k')
        below, below_fmt = 'mid.qcow2', 'qcow2'
    top = os.path.join(d, 'top.qcow2')
    ref_create(ref_img, top, top_size, 'qcow2', below, below_fmt)
    ref_qio(ref_io, top, 'write -P 0x33 0 64k', 'write -P 0x44 1M 1M',
            'write -z 2560k 256k', f'write -P 0x55 {top_size - 64 * 1024} 64k')
    return top


def strip_offsets(map_json):
    """map's extents without host offsets, neighbours with the same
    state merged (where data lives in the file is not compared)."""
    out = []
    for e in json.loads(map_json):
        e = {k: v for k, v in e.items() if k != 'offset'}
        prev = out[-1] if out else None
        if prev and all(prev[k] == e[k] for k in e
                        if k not in ('start', 'length')):
            prev['length'] += e['length']
        else:
            out.append(e)
    return out


def image_map(ref_img, path):
    r = run([ref_img, 'map', '--output=json', path])
    assert r.rc == 0, r
    return strip_offsets(r.out)


def assert_same_results(ref_img, rd, sd, names):
    for n in names:
        r, s = os.path.join(rd, n), os.path.join(sd, n)
        assert run([ref_img, 'compare', r, s]).rc == 0, n
        if n.endswith('.qcow2'):
            assert run([ref_img, 'check', s]).rc == 0, n
        assert image_map(ref_img, r) == image_map(ref_img, s), n


CASES = [
    # (base format, base size, top size, mid layer, commit args, files)
    ('qcow2', 4 * MiB, 4 * MiB, False, [], ['base.qcow2', 'top.qcow2']),
    ('raw', 4 * MiB, 4 * MiB, False, [], ['base.raw', 'top.qcow2']),
    ('qcow2', 4 * MiB, 4 * MiB, False, ['-d'], ['base.qcow2', 'top.qcow2']),
    ('qcow2', 2 * MiB, 6 * MiB, False, [], ['base.qcow2', 'top.qcow2']),
    ('raw', 2 * MiB, 6 * MiB, False, [], ['base.raw', 'top.qcow2']),
    ('qcow2', 4 * MiB, 4 * MiB, True, [],
     ['base.qcow2', 'mid.qcow2', 'top.qcow2']),
    ('qcow2', 4 * MiB, 4 * MiB, True, ['-b', 'base.qcow2'],
     ['base.qcow2', 'mid.qcow2', 'top.qcow2']),
    ('raw', 4 * MiB, 4 * MiB, True, ['-b', 'base.raw'],
     ['base.raw', 'mid.qcow2', 'top.qcow2']),
]


@pytest.mark.parametrize('fmt,bsize,tsize,mid,args,files', CASES)
def test_commit_like_reference(tmp_path, strata_img, ref_qemu_img,
                               ref_qemu_io, fmt, bsize, tsize, mid, args,
                               files):
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        chain(d, ref_qemu_img, ref_qemu_io, fmt, bsize, tsize, mid)
    rr = run([ref_qemu_img, 'commit', *args, 'top.qcow2'], cwd=rd)
    ss = run([strata_img, 'commit', *args, 'top.qcow2'], cwd=sd)
    assert (ss.rc, ss.out, ss.err) == (rr.rc, rr.out, rr.err)
    assert ss.out == 'Image committed.\n'
    assert_same_results(ref_qemu_img, rd, sd, files)
    # the overlay (emptied, or kept with -d/-b) is byte for byte the
    # reference's
    with open(os.path.join(rd, 'top.qcow2'), 'rb') as r, \
            open(os.path.join(sd, 'top.qcow2'), 'rb') as s:
        assert r.read() == s.read()


def test_commit_relative_backing_in_subdir(tmp_path, strata_img,
                                           ref_qemu_img, ref_qemu_io):
    """Backing names recorded relative to the overlay's directory."""
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        os.mkdir(os.path.join(d, 'sub'))
        chain(os.path.join(d, 'sub'), ref_qemu_img, ref_qemu_io, mid=True)
    for tool, d in ((ref_qemu_img, rd), (strata_img, sd)):
        r = run([tool, 'commit', '-q', '-b', 'base.qcow2', 'sub/top.qcow2'],
                cwd=d)
        assert (r.rc, r.out, r.err) == (0, '', '')
    assert_same_results(ref_qemu_img, rd, sd, [
        'sub/base.qcow2', 'sub/mid.qcow2', 'sub/top.qcow2'])


def test_commit_sparse_base_stays_sparse(tmp_path, strata_img, ref_qemu_img,
                                         ref_qemu_io):
    """Zeroes in the overlay are written as zeroes, not as data."""
    d = str(tmp_path)
    ref_create(ref_qemu_img, os.path.join(d, 'base.raw'), 64 * MiB, 'raw')
    top = os.path.join(d, 'top.qcow2')
    ref_create(ref_qemu_img, top, 64 * MiB, 'qcow2', 'base.raw', 'raw')
    ref_qio(ref_qemu_io, top, 'write -z 0 64M', 'write -P 1 0 64k')
    assert run([strata_img, 'commit', '-q', top]).rc == 0
    assert os.stat(os.path.join(d, 'base.raw')).st_blocks * 512 < 4 * MiB


@pytest.mark.parametrize('args,setup', [
    ([], 'nobacking'),
    (['-b', 'nope.qcow2'], 'chain'),
    (['-r', '-5'], 'chain'),
    (['-r', '1x'], 'chain'),
    (['-t', 'foo'], 'chain'),
    (['-q'], 'chain'),
    (['-p'], 'empty'),
])
def test_commit_output(tmp_path, strata_img, ref_qemu_img, ref_qemu_io,
                       args, setup):
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        if setup == 'nobacking':
            ref_create(ref_qemu_img, os.path.join(d, 'top.qcow2'), MiB)
        elif setup == 'empty':
            ref_create(ref_qemu_img, os.path.join(d, 'b.qcow2'), MiB)
            ref_create(ref_qemu_img, os.path.join(d, 'top.qcow2'), MiB, 'qcow2',
                       'b.qcow2', 'qcow2')
        else:
            chain(d, ref_qemu_img, ref_qemu_io)
    rr = run([ref_qemu_img, 'commit', *args, 'top.qcow2'], cwd=rd)
    ss = run([strata_img, 'commit', *args, 'top.qcow2'], cwd=sd)
    assert (ss.rc, ss.err.replace('strata-img', 'qemu-img')) == \
        (rr.rc, rr.err)
    if '-p' in args:
        # (text mode reads '\r' as a line end) the last progress line and
        # the message; how many lines come before depends on timing
        assert ss.out.startswith('    (0.00/100%)\n')
        assert ss.out.endswith('    (100.00/100%)\nImage committed.\n')
        assert rr.out.endswith('    (100.00/100%)\nImage committed.\n')
    else:
        assert ss.out == rr.out


def test_commit_rate_limit(tmp_path, strata_img, ref_qemu_img, ref_qemu_io):
    """-r paces the copy: 4 MiB at 4 MiB/s takes about a second."""
    d = str(tmp_path)
    ref_create(ref_qemu_img, os.path.join(d, 'base.qcow2'), 8 * MiB)
    top = os.path.join(d, 'top.qcow2')
    ref_create(ref_qemu_img, top, 8 * MiB, 'qcow2', 'base.qcow2', 'qcow2')
    ref_qio(ref_qemu_io, top, 'write -P 7 0 4M')
    t0 = time.monotonic()
    assert run([strata_img, 'commit', '-q', '-r', '4M', top]).rc == 0
    elapsed = time.monotonic() - t0
    assert 0.7 < elapsed < 6, elapsed
    assert run([ref_qemu_img, 'compare', top,
                os.path.join(d, 'base.qcow2')]).rc == 0


def blkdebug_base(d, ref_img, errno_):
    """top's backing file is base.qcow2 behind a blkdebug that fails
    every write with @errno_."""
    with open(os.path.join(d, 'bd.conf'), 'w') as f:
        f.write(f'[inject-error]\nevent = "pwritev"\nerrno = "{errno_}"\n')
    spec = {'driver': 'qcow2', 'file': {
        'driver': 'blkdebug', 'config': os.path.join(d, 'bd.conf'),
        'image': {'driver': 'file',
                  'filename': os.path.join(d, 'base.qcow2')}}}
    assert run([ref_img, 'rebase', '-u', '-b', 'json:' + json.dumps(spec),
                '-F', 'qcow2', 'top.qcow2'], cwd=d).rc == 0


def snapshot_view(ref_img, path, out):
    assert run([ref_img, 'convert', '-O', 'raw', path, out]).rc == 0


@pytest.mark.parametrize('errno_,text', [(5, 'Input/output error'),
                                         (28, 'No space left on device')])
def test_commit_base_write_error(tmp_path, strata_img, ref_qemu_img,
                                 ref_qemu_io, errno_, text):
    d = str(tmp_path)
    top = chain(d, ref_qemu_img, ref_qemu_io)
    snapshot_view(ref_qemu_img, top, os.path.join(d, 'view.raw'))
    blkdebug_base(d, ref_qemu_img, errno_)
    r = run([strata_img, 'commit', 'top.qcow2'], cwd=d)
    assert r.rc == 1 and r.out == ''
    # the reference (qemu-iotests 020) names neither image nor offset; it
    # prints its cache flush errors twice and before the job's line,
    # strata once, after it: the same lines (the reference adds
    # "qcow2_free_clusters failed" in some runs, not in others)
    ref_dir = tmp_path / 'ref'
    ref_dir.mkdir()
    chain(str(ref_dir), ref_qemu_img, ref_qemu_io)
    blkdebug_base(str(ref_dir), ref_qemu_img, errno_)
    rr = run([ref_qemu_img, 'commit', 'top.qcow2'], cwd=str(ref_dir))
    assert f'qemu-img: Block job failed: {text}' in rr.err.splitlines()

    def lines(err):
        return {ln.replace('strata-img:', 'qemu-img:')
                for ln in err.splitlines()
                if not ln.startswith('qcow2_free_clusters failed')}
    assert lines(r.err) == lines(rr.err)
    for img in ('base.qcow2', 'top.qcow2'):
        assert run([ref_qemu_img, 'check', os.path.join(d, img)]).rc in (0, 3)
    assert run([ref_qemu_img, 'compare', '-f', 'raw', '-F', 'qcow2',
                os.path.join(d, 'view.raw'), top]).rc == 0


def run_killed(argv, delay, cwd):
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()


def test_commit_sigkill(tmp_path, strata_img, ref_qemu_img, ref_qemu_io):
    """Killed at random moments of a paced commit: every image passes
    check (leaks allowed) and the top reads what it read before."""
    rng = random.Random(10)
    for i in range(4):
        d = str(tmp_path / str(i))
        os.mkdir(d)
        ref_create(ref_qemu_img, os.path.join(d, 'base.qcow2'), 16 * MiB)
        ref_qio(ref_qemu_io, os.path.join(d, 'base.qcow2'), 'write -P 1 0 16M')
        top = os.path.join(d, 'top.qcow2')
        ref_create(ref_qemu_img, top, 16 * MiB, 'qcow2', 'base.qcow2', 'qcow2')
        ref_qio(ref_qemu_io, top, 'write -P 2 0 6M', 'write -z 8M 2M',
                'write -P 3 12M 1M')
        snapshot_view(ref_qemu_img, top, os.path.join(d, 'view.raw'))
        run_killed([strata_img, 'commit', '-r', '16M', 'top.qcow2'],
                   rng.uniform(0.05, 0.6), d)
        for img in ('base.qcow2', 'top.qcow2'):
            assert run([ref_qemu_img, 'check',
                        os.path.join(d, img)]).rc in (0, 3), img
        assert run([ref_qemu_img, 'compare', '-f', 'raw', '-F', 'qcow2',
                    os.path.join(d, 'view.raw'), top]).rc == 0


@pytest.mark.parametrize('opts', ['compat=0.10', 'cluster_size=4096',
                                  'extended_l2=on', 'lazy_refcounts=on'])
def test_commit_empties_other_layouts(tmp_path, strata_img, ref_qemu_img,
                                      ref_qemu_io, opts):
    """Overlays not laid out as create leaves them (v2; refcount table
    grown by many small clusters) are emptied cluster by cluster."""
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        ref_create(ref_qemu_img, os.path.join(d, 'base.qcow2'), 4 * MiB)
        ref_qio(ref_qemu_io, os.path.join(d, 'base.qcow2'), 'write -P 1 0 4M')
        top = os.path.join(d, 'top.qcow2')
        ref_create(ref_qemu_img, top, 4 * MiB, 'qcow2', 'base.qcow2', 'qcow2',
                   opts)
        ref_qio(ref_qemu_io, top, 'write -P 2 0 3M', 'write -z 3M 64k')
    for tool, d in ((ref_qemu_img, rd), (strata_img, sd)):
        r = run([tool, 'commit', 'top.qcow2'], cwd=d)
        assert (r.rc, r.out, r.err) == (0, 'Image committed.\n', '')
    assert_same_results(ref_qemu_img, rd, sd, ['base.qcow2', 'top.qcow2'])


def test_commit_base_name_relative_to_overlay(tmp_path, strata_img,
                                              ref_qemu_img, ref_qemu_io):
    """-b names a file relative to the overlay's directory, not to the
    working directory: both tools refuse 'sub/mid.qcow2' for
    sub/top.qcow2 and accept 'mid.qcow2'."""
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        os.mkdir(os.path.join(d, 'sub'))
        chain(os.path.join(d, 'sub'), ref_qemu_img, ref_qemu_io, mid=True)
    for args in (['-b', 'sub/mid.qcow2'], ['-b', 'mid.qcow2']):
        rr = run([ref_qemu_img, 'commit', *args, 'sub/top.qcow2'], cwd=rd)
        ss = run([strata_img, 'commit', *args, 'sub/top.qcow2'], cwd=sd)
        assert (ss.rc, ss.out, ss.err.replace('strata-img', 'qemu-img')) \
            == (rr.rc, rr.out, rr.err)
    assert_same_results(ref_qemu_img, rd, sd, [
        'sub/base.qcow2', 'sub/mid.qcow2', 'sub/top.qcow2'])


@pytest.mark.parametrize('event', ['l1_update', 'empty_image_prepare',
                                   'reftable_update', 'refblock_alloc'])
def test_commit_make_empty_fails(tmp_path, strata_img, ref_qemu_img,
                                 ref_qemu_io, event):
    """An I/O error while the overlay is emptied: the reference's message,
    and every step leaves the overlay consistent (leaks at worst) and
    reading what it read before."""
    d = str(tmp_path)
    top = chain(d, ref_qemu_img, ref_qemu_io)
    snapshot_view(ref_qemu_img, top, os.path.join(d, 'view.raw'))
    conf = os.path.join(d, 'bd.conf')
    with open(conf, 'w') as f:
        f.write(f'[inject-error]\nevent = "{event}"\n')
    r = run([strata_img, 'commit', f'blkdebug:{conf}:{top}'])
    assert r.rc == 1 and r.out == ''
    assert r.err.splitlines()[0] == \
        f'strata-img: Failed to empty blkdebug:{conf}:{top}: ' \
        'Input/output error'
    assert run([ref_qemu_img, 'check', top]).rc in (0, 3)
    assert run([ref_qemu_img, 'compare', '-f', 'raw', '-F', 'qcow2',
                os.path.join(d, 'view.raw'), top]).rc == 0


def test_commit_sigusr1_progress(tmp_path, strata_img, ref_qemu_img,
                                 ref_qemu_io):
    """Without -p, SIGUSR1 prints the progress once on stderr."""
    d = str(tmp_path)
    ref_create(ref_qemu_img, os.path.join(d, 'base.qcow2'), 8 * MiB)
    top = os.path.join(d, 'top.qcow2')
    ref_create(ref_qemu_img, top, 8 * MiB, 'qcow2', 'base.qcow2', 'qcow2')
    ref_qio(ref_qemu_io, top, 'write -P 7 0 4M')
    p = subprocess.Popen([strata_img, 'commit', '-r', '4M', top],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(0.5)
    p.send_signal(signal.SIGUSR1)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and out == 'Image committed.\n'
    assert re.fullmatch(r'    \(\d+\.\d\d/100%\)\n', err), err


def test_commit_overlay_with_snapshot(tmp_path, strata_img, ref_qemu_img,
                                      ref_qemu_io):
    """An overlay whose L2 tables an internal snapshot shares is emptied
    without touching the snapshot."""
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        top = chain(d, ref_qemu_img, ref_qemu_io)
        assert run([ref_qemu_img, 'snapshot', '-c', 'snap1', top]).rc == 0
        ref_qio(ref_qemu_io, top, 'write -P 0x66 512k 1M')
    for tool, d in ((ref_qemu_img, rd), (strata_img, sd)):
        r = run([tool, 'commit', 'top.qcow2'], cwd=d)
        assert (r.rc, r.out, r.err) == (0, 'Image committed.\n', '')
    assert_same_results(ref_qemu_img, rd, sd, ['base.qcow2', 'top.qcow2'])
    views = []
    for d in (rd, sd):
        out = os.path.join(d, 'snap.raw')
        assert run([ref_qemu_img, 'convert', '-l', 'snap1', '-O', 'raw',
                    os.path.join(d, 'top.qcow2'), out]).rc == 0
        with open(out, 'rb') as f:
            views.append(f.read())
    assert views[0] == views[1]
