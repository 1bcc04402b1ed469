"""strata-img rebase in safe mode: the overlay rebased by the reference
and by Strata reads the same (reference `compare`), passes `check`, keeps
the guest's view of the disk, and the output is the reference's; faults
and SIGKILL leave the overlay consistent, reading what it read before."""
import json
import os
import random
import shutil
import signal
import subprocess
import time

import pytest

from conftest import ref_create, ref_qio, run, twin_dirs

MiB = 1 << 20


def view(ref_img, path, out):
    """The guest's view of @path (its whole chain) as a raw file."""
    assert run([ref_img, 'convert', '-O', 'raw', path, out]).rc == 0


def same_view(ref_img, raw, path):
    return run([ref_img, 'compare', '-f', 'raw', raw, path]).rc == 0


def layout(d, ref_img, ref_io, old_opts=None, new_opts=None, top_opts=None,
           new_fmt='qcow2', size=4 * MiB):
    """old (data) <- top (some data); new differs from old in places."""
    ref_create(ref_img, os.path.join(d, 'old.qcow2'), size, opts=old_opts)
    ref_qio(ref_io, os.path.join(d, 'old.qcow2'), 'write -P 1 0 2M',
            'write -P 2 3M 68k', 'write -z 2M 512k')
    new = os.path.join(d, 'new.' + ('raw' if new_fmt == 'raw' else 'qcow2'))
    ref_create(ref_img, new, size, new_fmt, opts=new_opts)
    ref_qio(ref_io, new, 'write -P 1 0 1M', 'write -P 3 1M 4k',
            'write -P 2 3M 4k', 'write -P 9 3584k 512k', fmt=new_fmt)
    if size > 4 * MiB:
        # beyond what the overlay allocates: whole (large) clusters of the
        # overlay are compared
        ref_qio(ref_io, os.path.join(d, 'old.qcow2'), 'write -P 4 4M 3M')
        ref_qio(ref_io, new, 'write -P 4 4M 1M', 'write -P 5 5M 4k',
                'write -P 6 6M 2M', fmt=new_fmt)
    top = os.path.join(d, 'top.qcow2')
    ref_create(ref_img, top, size, 'qcow2', 'old.qcow2', 'qcow2', opts=top_opts)
    ref_qio(ref_io, top, 'write -P 7 1536k 64k', 'write -P 8 3M 4k')
    return os.path.basename(new)


def both(rd, sd, ref_img, strata_img, args):
    rr = run([ref_img, 'rebase', *args, 'top.qcow2'], cwd=rd)
    ss = run([strata_img, 'rebase', *args, 'top.qcow2'], cwd=sd)
    assert (ss.rc, ss.out, ss.err.replace('strata-img', 'qemu-img')) == \
        (rr.rc, rr.out, rr.err)
    return rr


def check_clean(ref_img, path):
    r = run([ref_img, 'check', path])
    assert r.rc == 0, r


def rebase_keeps_view(tmp_path, rd, sd, ref_img, strata_img, args):
    """Both tools rebase their top.qcow2 with @args alike; ours stays
    clean and reads as the reference's did before.  Returns our path."""
    before = str(tmp_path / 'before.raw')
    view(ref_img, os.path.join(rd, 'top.qcow2'), before)
    both(rd, sd, ref_img, strata_img, args)
    s = os.path.join(sd, 'top.qcow2')
    check_clean(ref_img, s)
    assert same_view(ref_img, before, s)
    return s


@pytest.mark.parametrize('old_opts,new_opts,top_opts,new_fmt,size', [
    (None, None, 'cluster_size=2M', 'qcow2', 8 * MiB),
    ('cluster_size=4096', None, 'cluster_size=1M', 'raw', 8 * MiB),
    (None, 'cluster_size=2M', 'extended_l2=on', 'qcow2', 8 * MiB),
    (None, None, None, 'qcow2', 4 * MiB),
    (None, None, None, 'raw', 4 * MiB),
    ('cluster_size=4096', 'cluster_size=2M', None, 'qcow2', 4 * MiB),
    ('cluster_size=2M', 'cluster_size=512', 'cluster_size=4096', 'qcow2', 4 * MiB),
    (None, None, 'cluster_size=2M', 'qcow2', 4 * MiB),
    (None, None, 'extended_l2=on', 'qcow2', 4 * MiB),
    ('extended_l2=on,cluster_size=128k', None, 'extended_l2=on,'
     'cluster_size=1M', 'qcow2', 4 * MiB),
])
def test_rebase_like_reference(tmp_path, strata_img, ref_qemu_img,
                               ref_qemu_io, old_opts, new_opts, top_opts,
                               new_fmt, size):
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        new = layout(d, ref_qemu_img, ref_qemu_io, old_opts, new_opts,
                     top_opts, new_fmt, size)
    view(ref_qemu_img, os.path.join(rd, 'top.qcow2'),
         str(tmp_path / 'before.raw'))
    both(rd, sd, ref_qemu_img, strata_img, ['-b', new, '-F', new_fmt])
    r, s = os.path.join(rd, 'top.qcow2'), os.path.join(sd, 'top.qcow2')
    check_clean(ref_qemu_img, s)
    assert run([ref_qemu_img, 'compare', r, s]).rc == 0
    assert same_view(ref_qemu_img, str(tmp_path / 'before.raw'), s)
    info = json.loads(run([ref_qemu_img, 'info', '--output=json', s]).out)
    assert info['backing-filename'] == new
    # the overlay allocates the same clusters, in the same (disk) order
    assert run([ref_qemu_img, 'map', 'top.qcow2'], cwd=sd).out == \
        run([ref_qemu_img, 'map', 'top.qcow2'], cwd=rd).out


def allocated(ref_img, path):
    """Bytes the image itself allocates (depth 0 of map)."""
    out = run([ref_img, 'map', '--output=json', path]).out
    return sum(e['length'] for e in json.loads(out)
               if e['depth'] == 0 and e['present'])


def test_rebase_copies_only_what_differs(tmp_path, strata_img, ref_qemu_img,
                                         ref_qemu_io):
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        layout(d, ref_qemu_img, ref_qemu_io)
    both(rd, sd, ref_qemu_img, strata_img,
         ['-b', 'new.qcow2', '-F', 'qcow2'])
    s = os.path.join(sd, 'top.qcow2')
    assert allocated(ref_qemu_img, s) == \
        allocated(ref_qemu_img, os.path.join(rd, 'top.qcow2'))


def test_rebase_flatten(tmp_path, strata_img, ref_qemu_img, ref_qemu_io):
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        layout(d, ref_qemu_img, ref_qemu_io)
    view(ref_qemu_img, os.path.join(rd, 'top.qcow2'),
         str(tmp_path / 'before.raw'))
    both(rd, sd, ref_qemu_img, strata_img, ['-b', ''])
    s = os.path.join(sd, 'top.qcow2')
    check_clean(ref_qemu_img, s)
    info = json.loads(run([ref_qemu_img, 'info', '--output=json', s]).out)
    assert 'backing-filename' not in info
    assert same_view(ref_qemu_img, str(tmp_path / 'before.raw'), s)
    assert run([ref_qemu_img, 'compare', os.path.join(rd, 'top.qcow2'),
                s]).rc == 0


def test_rebase_onto_chain_member(tmp_path, strata_img, ref_qemu_img,
                                  ref_qemu_io):
    """top -> mid -> base rebased onto base: mid's extents move up (also
    where mid is shorter than base and reads zeroes)."""
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        os.mkdir(os.path.join(d, 'sub'))
        ref_create(ref_qemu_img, os.path.join(d, 'sub', 'base.qcow2'), 4 * MiB)
        ref_qio(ref_qemu_io, os.path.join(d, 'sub', 'base.qcow2'),
                'write -P 1 0 4M')
        ref_create(ref_qemu_img, os.path.join(d, 'sub', 'mid.qcow2'), 3 * MiB,
                   'qcow2', 'base.qcow2', 'qcow2')
        ref_qio(ref_qemu_io, os.path.join(d, 'sub', 'mid.qcow2'),
                'write -P 2 512k 1M', 'write -z 2M 64k')
        ref_create(ref_qemu_img, os.path.join(d, 'top.qcow2'), 4 * MiB, 'qcow2',
                   'sub/mid.qcow2', 'qcow2')
        ref_qio(ref_qemu_io, os.path.join(d, 'top.qcow2'), 'write -P 3 0 64k')
    s = rebase_keeps_view(tmp_path, rd, sd, ref_qemu_img, strata_img,
                          ['-b', 'sub/base.qcow2', '-F', 'qcow2'])
    assert allocated(ref_qemu_img, s) == \
        allocated(ref_qemu_img, os.path.join(rd, 'top.qcow2'))


def test_rebase_compressed(tmp_path, strata_img, ref_qemu_img, ref_qemu_io):
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        layout(d, ref_qemu_img, ref_qemu_io)
    s = rebase_keeps_view(tmp_path, rd, sd, ref_qemu_img, strata_img,
                          ['-c', '-b', 'new.qcow2', '-F', 'qcow2'])
    out = json.loads(run([ref_qemu_img, 'map', '--output=json', s]).out)
    assert any(e['compressed'] for e in out)


def test_rebase_diff_recipe(tmp_path, strata_img, ref_qemu_img, ref_qemu_io):
    """The manual's recipe: an overlay of the modified image rebased onto
    the original holds only the difference."""
    d = str(tmp_path)
    base, mod = os.path.join(d, 'base.img'), os.path.join(d, 'mod.img')
    ref_create(ref_qemu_img, base, 8 * MiB, 'raw')
    ref_qio(ref_qemu_io, base, 'write -P 1 0 8M', fmt='raw')
    shutil.copy(base, mod)
    ref_qio(ref_qemu_io, mod, 'write -P 2 1M 64k', 'write -z 5M 128k', fmt='raw')
    diff = os.path.join(d, 'diff.qcow2')
    ref_create(ref_qemu_img, diff, 8 * MiB, 'qcow2', 'mod.img', 'raw')
    r = run([strata_img, 'rebase', '-b', 'base.img', '-F', 'raw', diff])
    assert (r.rc, r.out, r.err) == (0, '', '')
    check_clean(ref_qemu_img, diff)
    assert allocated(ref_qemu_img, diff) == 192 * 1024
    assert run([ref_qemu_img, 'compare', '-F', 'raw', diff, mod]).rc == 0


@pytest.mark.parametrize('args', [
    ['-b', 'new.qcow2'],                     # no -F: copies, then fails
    ['-b', 'nonexistent.qcow2', '-F', 'qcow2'],
    ['-b', 'new.qcow2', '-F', 'qcow2', '-q'],
    ['-b', 'new.qcow2', '-F', 'nosuchfmt'],
    ['-b', 'new.qcow2', '-F', 'qcow2', '-T', 'bogus'],
    ['-b', 'new.qcow2', '-F', 'qcow2', '-U'],
    ['-b', 'new.qcow2', '-F', 'qcow2', '-t', 'none'],
    ['-u', '-b', 'new.qcow2', '-F', 'qcow2'],
])
def test_rebase_output(tmp_path, strata_img, ref_qemu_img, ref_qemu_io,
                       args):
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        layout(d, ref_qemu_img, ref_qemu_io)
    both(rd, sd, ref_qemu_img, strata_img, args)
    r, s = os.path.join(rd, 'top.qcow2'), os.path.join(sd, 'top.qcow2')
    check_clean(ref_qemu_img, s)
    assert run([ref_qemu_img, 'compare', r, s]).rc == 0


def test_rebase_progress(tmp_path, strata_img, ref_qemu_img, ref_qemu_io):
    d = str(tmp_path)
    layout(d, ref_qemu_img, ref_qemu_io)
    r = run([strata_img, 'rebase', '-p', '-b', '', 'top.qcow2'], cwd=d)
    assert r.rc == 0 and r.err == ''
    # text mode reads the '\r' of each line as a line end
    assert r.out.startswith('    (0.00/100%)\n')
    assert r.out.endswith('    (100.00/100%)\n')


def test_rebase_old_backing_missing_unsafe(tmp_path, strata_img,
                                           ref_qemu_img, ref_qemu_io):
    d = str(tmp_path)
    layout(d, ref_qemu_img, ref_qemu_io)
    os.unlink(os.path.join(d, 'old.qcow2'))
    r = run([strata_img, 'rebase', '-u', '-b', 'new.qcow2', '-F', 'qcow2',
             'top.qcow2'], cwd=d)
    assert (r.rc, r.out, r.err) == (0, '', '')
    check_clean(ref_qemu_img, os.path.join(d, 'top.qcow2'))


@pytest.mark.parametrize('errno_,text', [(5, 'Input/output error'),
                                         (28, 'No space left on device')])
def test_rebase_overlay_write_error(tmp_path, strata_img, ref_qemu_img,
                                    ref_qemu_io, errno_, text):
    d = str(tmp_path)
    layout(d, ref_qemu_img, ref_qemu_io)
    top = os.path.join(d, 'top.qcow2')
    view(ref_qemu_img, top, os.path.join(d, 'before.raw'))
    with open(os.path.join(d, 'bd.conf'), 'w') as f:
        f.write(f'[inject-error]\nevent = "pwritev"\nerrno = "{errno_}"\n')
    spec = {'driver': 'qcow2', 'file': {
        'driver': 'blkdebug', 'config': os.path.join(d, 'bd.conf'),
        'image': {'driver': 'file', 'filename': top}}}
    r = run([strata_img, 'rebase', '-b', '', 'json:' + json.dumps(spec)])
    assert r.rc == 1
    assert f'strata-img: Error while writing to COW image: {text}' in \
        r.err.splitlines()
    # the reference names neither the image nor the offset
    assert not any('at byte' in ln for ln in r.err.splitlines()), r.err
    assert run([ref_qemu_img, 'check', top]).rc in (0, 3)
    info = json.loads(run([ref_qemu_img, 'info', '--output=json', top]).out)
    assert info['backing-filename'] == 'old.qcow2'
    assert same_view(ref_qemu_img, os.path.join(d, 'before.raw'), top)


def test_rebase_sigkill(tmp_path, strata_img, ref_qemu_img, ref_qemu_io):
    """Killed at random moments: the overlay passes check (leaks allowed)
    and reads what it read before, whichever backing file it names."""
    rng = random.Random(8)
    for i in range(4):
        d = str(tmp_path / str(i))
        os.mkdir(d)
        ref_create(ref_qemu_img, os.path.join(d, 'old.qcow2'), 32 * MiB)
        ref_qio(ref_qemu_io, os.path.join(d, 'old.qcow2'), 'write -P 1 0 32M')
        ref_create(ref_qemu_img, os.path.join(d, 'new.qcow2'), 32 * MiB)
        top = os.path.join(d, 'top.qcow2')
        ref_create(ref_qemu_img, top, 32 * MiB, 'qcow2', 'old.qcow2', 'qcow2')
        ref_qio(ref_qemu_io, top, 'write -P 2 4M 1M')
        view(ref_qemu_img, top, os.path.join(d, 'before.raw'))
        p = subprocess.Popen([strata_img, 'rebase', '-b', 'new.qcow2', '-F',
                              'qcow2', 'top.qcow2'], cwd=d,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.15))
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert run([ref_qemu_img, 'check', top]).rc in (0, 3)
        assert same_view(ref_qemu_img, os.path.join(d, 'before.raw'), top)


@pytest.mark.parametrize('opts,mid_opts,size,writes,args', [
    # iotest 271's shape: the old backing allocates subclusters, so what
    # is unchanged below the new backing ends inside an overlay cluster
    ('cluster_size=1M,extended_l2=on', None, 3 * MiB,
     ['write -P 0x22 992k 32k', 'write -P 0x33 2M 32k'], ['-c']),
    # the old backing's clusters are smaller than the overlay's
    ('cluster_size=64k', 'cluster_size=4096', 1 * MiB,
     ['write -P 5 60k 4k', 'write -P 6 200k 8k'], ['-c']),
    ('cluster_size=64k', 'cluster_size=4096', 1 * MiB,
     ['write -P 5 60k 4k', 'write -P 6 200k 8k'], []),
    # an odd-sized chain: the last overlay cluster is partial
    ('cluster_size=64k', 'cluster_size=4096', 1 * MiB - 1536,
     ['write -P 7 1016k 4k'], ['-c']),
])
def test_rebase_prefix_inside_unit(tmp_path, strata_img, ref_qemu_img,
                                   ref_qemu_io, opts, mid_opts, size, writes,
                                   args):
    """top -> mid -> base rebased onto base, where mid allocates less than
    an overlay cluster: the overlay gets whole clusters (compressed with
    -c), as the reference writes them."""
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        base, mid = os.path.join(d, 'base.qcow2'), os.path.join(d, 'mid.qcow2')
        ref_create(ref_qemu_img, base, size, opts=opts)
        ref_qio(ref_qemu_io, base, 'write -P 0x11 %d 64k' % (size // 2 & ~511))
        ref_create(ref_qemu_img, mid, size, 'qcow2', 'base.qcow2', 'qcow2',
               mid_opts or opts)
        ref_qio(ref_qemu_io, mid, *writes)
        ref_create(ref_qemu_img, os.path.join(d, 'top.qcow2'), size, 'qcow2',
               'mid.qcow2', 'qcow2', opts)
    view(ref_qemu_img, os.path.join(rd, 'top.qcow2'),
         str(tmp_path / 'before.raw'))
    both(rd, sd, ref_qemu_img, strata_img,
         [*args, '-b', 'base.qcow2', '-F', 'qcow2'])
    r, s = os.path.join(rd, 'top.qcow2'), os.path.join(sd, 'top.qcow2')
    check_clean(ref_qemu_img, s)
    assert run([ref_qemu_img, 'compare', r, s]).rc == 0
    assert same_view(ref_qemu_img, str(tmp_path / 'before.raw'), s)
    maps = [run([ref_qemu_img, 'map', '--output=json', 'top.qcow2'],
                cwd=d).out for d in (rd, sd)]
    assert maps[1] == maps[0]


@pytest.mark.parametrize('old_size,writes', [
    # a differing run that starts at the old backing file's end, inside
    # the piece that crosses it: the reference writes zero clusters there
    ('64k', ['write -P 7 64k 64k']),
    # one that crosses the end is data, its part past the end too
    ('64k', ['write -P 7 32k 64k']),
    # both in one piece, with an equal run between them
    ('96k', ['write -P 7 32k 32k', 'write -P 8 128k 32k']),
])
def test_rebase_run_past_old_end(tmp_path, strata_img, ref_qemu_img,
                                 ref_qemu_io, old_size, writes):
    rd, sd = twin_dirs(tmp_path)
    for d in (rd, sd):
        ref_create(ref_qemu_img, os.path.join(d, 'old.qcow2'), old_size)
        ref_create(ref_qemu_img, os.path.join(d, 'new.qcow2'), '192k')
        ref_qio(ref_qemu_io, os.path.join(d, 'new.qcow2'), *writes)
        ref_create(ref_qemu_img, os.path.join(d, 'top.qcow2'), '192k',
                   'qcow2', 'old.qcow2', 'qcow2')
    both(rd, sd, ref_qemu_img, strata_img, ['-b', 'new.qcow2', '-F', 'qcow2'])
    r, s = os.path.join(rd, 'top.qcow2'), os.path.join(sd, 'top.qcow2')
    check_clean(ref_qemu_img, s)
    assert open(r, 'rb').read() == open(s, 'rb').read()


def test_rebase_compressed_data_file_error(tmp_path, our_qemu_img,
                                           ref_qemu_img, ref_qemu_io):
    """qemu-iotests 314 with an external data file: compressed writes are
    not supported there, and the reference reports the failed rebase in
    one line, naming neither the image nor the offset."""
    res = []
    for tool, sub in ((ref_qemu_img, 'r'), (our_qemu_img, 's')):
        d = tmp_path / sub
        d.mkdir()
        img = lambda *a: run([ref_qemu_img, *a], cwd=d)  # noqa: E731
        assert img('create', '-q', '-f', 'qcow2', '-o', 'data_file=b.data',
                   'b.qcow2', '1M').rc == 0
        assert img('create', '-q', '-f', 'qcow2', '-o', 'data_file=t.data',
                   '-b', 'b.qcow2', '-F', 'qcow2', 't.qcow2', '1M').rc == 0
        assert run([ref_qemu_io, '-c', 'write -P 1 0 64k', 'b.qcow2'],
                   cwd=d).rc == 0
        r = run([tool, 'rebase', '-c', '-f', 'qcow2', '-b', '', 't.qcow2'],
                cwd=d)
        info = json.loads(img('info', '--output=json', 't.qcow2').out)
        res.append((r.rc, r.out, r.err, info.get('backing-filename')))
    assert res[0][0] == 1
    assert res[1] == res[0]
