"""rebase on a memory file system, where both chains' data is compared in
the files (the file driver's compare offload) instead of being read into
the tool: the rebased overlay matches the reference's (compare, map,
check) and reads as before, for every way the chains may map the data
(raw and qcow2 backing files, clusters smaller than a page, a new
backing file shorter than the overlay, zero clusters with host space,
the same file on both sides)."""
import json
import os
import pathlib
import shutil
import tempfile

import pytest

from conftest import ref_create, ref_qio, run, twin_dirs
from test_rebase import both, check_clean, layout, same_view, view

MiB = 1 << 20


@pytest.fixture
def shm_path():
    """A directory on tmpfs, where rebase compares in place."""
    if not os.path.isdir('/dev/shm'):
        pytest.skip('no /dev/shm')
    d = tempfile.mkdtemp(dir='/dev/shm', prefix='strata-test-')
    yield d
    shutil.rmtree(d, ignore_errors=True)


def rebase_like_reference(d, ref_img, strata_img, new, new_fmt):
    """Both tools rebase their copy of top.qcow2 onto @new: same output,
    same overlay (compare, map), ours clean and reading as before."""
    rd, sd = os.path.join(d, 'r'), os.path.join(d, 's')
    before = os.path.join(d, 'before.raw')
    view(ref_img, os.path.join(rd, 'top.qcow2'), before)
    both(rd, sd, ref_img, strata_img, ['-b', new, '-F', new_fmt])
    r, s = os.path.join(rd, 'top.qcow2'), os.path.join(sd, 'top.qcow2')
    check_clean(ref_img, s)
    assert run([ref_img, 'compare', r, s]).rc == 0
    assert same_view(ref_img, before, s)
    assert run([ref_img, 'map', 'top.qcow2'], cwd=sd).out == \
        run([ref_img, 'map', 'top.qcow2'], cwd=rd).out


@pytest.mark.parametrize('old_opts,new_opts,top_opts,new_fmt,size', [
    (None, None, None, 'qcow2', 8 * MiB),
    (None, None, None, 'raw', 8 * MiB),
    ('cluster_size=512', 'cluster_size=1024', 'cluster_size=512', 'qcow2',
     4 * MiB),
    ('cluster_size=4096', 'cluster_size=2M', 'extended_l2=on', 'qcow2',
     8 * MiB),
    (None, 'cluster_size=2M', 'cluster_size=2M', 'qcow2', 8 * MiB),
])
def test_rebase_in_place_like_reference(shm_path, strata_img, ref_qemu_img,
                                        ref_qemu_io, old_opts, new_opts,
                                        top_opts, new_fmt, size):
    twin_dirs(pathlib.Path(shm_path))
    for d in ('r', 's'):
        new = layout(os.path.join(shm_path, d), ref_qemu_img, ref_qemu_io,
                     old_opts, new_opts, top_opts, new_fmt, size)
    rebase_like_reference(shm_path, ref_qemu_img, strata_img, new, new_fmt)


def scattered(d, ref_img, ref_io, new_size):
    """A fully written old base, a new one differing in scattered runs
    (some inside a cluster, some zeroed with host space kept) and maybe
    shorter, and an overlay owning a few clusters."""
    old, new = os.path.join(d, 'old.qcow2'), os.path.join(d, 'new.qcow2')
    ref_create(ref_img, old, 8 * MiB)
    ref_qio(ref_io, old, 'write -P 1 0 4M', 'write -P 2 4M 4M')
    ref_create(ref_img, new, new_size)
    ref_qio(ref_io, new, 'write -P 1 0 4M', 'write -P 2 4M %d' %
            (new_size - 4 * MiB), 'write -P 5 1M 512', 'write -P 6 2M 1M',
            'write -P 7 2560k 64k', 'write -z 3M 128k',
            'write -P 8 4608k 4k')
    top = os.path.join(d, 'top.qcow2')
    ref_create(ref_img, top, 8 * MiB, 'qcow2', 'old.qcow2', 'qcow2')
    ref_qio(ref_io, top, 'write -P 9 2M 64k', 'write -P 9 5M 64k')


@pytest.mark.parametrize('new_size', [8 * MiB, 6 * MiB + 4096])
def test_rebase_in_place_scattered(shm_path, strata_img, ref_qemu_img,
                                   ref_qemu_io, new_size):
    """Differences of every size at every place, and a new backing file
    ending inside the disk (compared the other way past its end)."""
    twin_dirs(pathlib.Path(shm_path))
    for d in ('r', 's'):
        scattered(os.path.join(shm_path, d), ref_qemu_img, ref_qemu_io,
                  new_size)
    rebase_like_reference(shm_path, ref_qemu_img, strata_img, 'new.qcow2',
                          'qcow2')


def test_rebase_in_place_same_file(shm_path, strata_img, ref_qemu_img,
                                   ref_qemu_io):
    """The new backing file is the old one under another name: nothing
    differs, nothing is written."""
    d = shm_path
    ref_create(ref_qemu_img, os.path.join(d, 'old.qcow2'), 4 * MiB)
    ref_qio(ref_qemu_io, os.path.join(d, 'old.qcow2'), 'write -P 1 0 4M')
    os.link(os.path.join(d, 'old.qcow2'), os.path.join(d, 'same.qcow2'))
    ref_create(ref_qemu_img, os.path.join(d, 'top.qcow2'), 4 * MiB, 'qcow2',
               'old.qcow2', 'qcow2')
    r = run([strata_img, 'rebase', '-b', 'same.qcow2', '-F', 'qcow2',
             'top.qcow2'], cwd=d)
    assert (r.rc, r.out, r.err) == (0, '', '')
    check_clean(ref_qemu_img, os.path.join(d, 'top.qcow2'))
    out = run([ref_qemu_img, 'map', '--output=json', 'top.qcow2'], cwd=d).out
    assert '"depth": 0' not in out



def test_rebase_in_place_compressed(shm_path, strata_img, ref_qemu_img,
                                    ref_qemu_io):
    """-c writes the kept old data of the differing clusters compressed."""
    d = shm_path
    scattered(d, ref_qemu_img, ref_qemu_io, 8 * MiB)
    before = os.path.join(d, 'before.raw')
    view(ref_qemu_img, os.path.join(d, 'top.qcow2'), before)
    r = run([strata_img, 'rebase', '-c', '-b', 'new.qcow2', '-F', 'qcow2',
             'top.qcow2'], cwd=d)
    assert (r.rc, r.out, r.err) == (0, '', '')
    top = os.path.join(d, 'top.qcow2')
    check_clean(ref_qemu_img, top)
    assert same_view(ref_qemu_img, before, top)
    out = json.loads(run([ref_qemu_img, 'map', '--output=json', top]).out)
    assert any(e['compressed'] for e in out)


def test_rebase_in_place_backing_cut_short(shm_path, strata_img,
                                           ref_qemu_img, ref_qemu_io):
    """A new backing file whose last data clusters lie past its end (cut
    short): those read as zeroes through the request path, as the
    reference reads them, and differ from the old ones."""
    twin_dirs(pathlib.Path(shm_path))
    for d in ('r', 's'):
        sub = os.path.join(shm_path, d)
        scattered(sub, ref_qemu_img, ref_qemu_io, 8 * MiB)
        new = os.path.join(sub, 'new.qcow2')
        os.truncate(new, os.path.getsize(new) - 1 * MiB - 4096)
    rebase_like_reference(shm_path, ref_qemu_img, strata_img, 'new.qcow2',
                          'qcow2')
