"""Snapshot mode (strata-io -s, open -s): a temporary qcow2 overlay over
the image, against the reference qemu-io: reads see the base, writes go to
the overlay, the base is never written and only read-locked, and the
overlay (vl.XXXXXX in $TMPDIR, /var/tmp for an unset TMPDIR or /tmp) is
unlinked while still open, so nothing is left behind, even after SIGKILL."""
import hashlib
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import io_args, normalize, run, lock_bytes

KiB = 1 << 10


def digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def images(tmp_path, ref_qemu_img, ref_qemu_io):
    """base.qcow2 (0x11 at 0, 0x33 at 192k), top.qcow2 over it (0x22 at
    64k), a raw copy of the data, and an empty TMPDIR."""
    d = tmp_path
    run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', str(d / 'base.qcow2'), '1M'])
    run([ref_qemu_io] + io_args(['write -P 0x11 0 64k', 'write -P 0x33 192k 4k'])
        + [str(d / 'base.qcow2')])
    run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2',
         '-F', 'qcow2', str(d / 'top.qcow2')])
    run([ref_qemu_io, '-c', 'write -P 0x22 64k 64k', str(d / 'top.qcow2')])
    run([ref_qemu_img, 'convert', '-O', 'raw', str(d / 'top.qcow2'), str(d / 'img.raw')])
    (d / 'tmp').mkdir()
    return d


SESSION = ['read -P 0x11 0 64k', 'write -P 0x44 32k 8k', 'read -P 0x44 32k 8k',
           'read -P 0x11 0 32k', 'write -z 192k 4k', 'read -P 0 192k 4k',
           'discard 0 64k', 'write -c -P 0x55 512k 64k', 'read -P 0x55 512k 64k',
           'map', 'info', 'flush']

CASES = [
    ('qcow2', ['-f', 'qcow2'], 'base.qcow2'),
    ('chain', [], 'top.qcow2'),
    ('raw', ['-f', 'raw'], 'img.raw'),
    ('probed-raw', [], 'img.raw'),
]


def session_env(d):
    return dict(os.environ, TMPDIR=str(d / 'tmp'))


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_session_as_reference(images, our_qemu_io, ref_qemu_io, case):
    _, fmt, name = case
    before = {n: digest(images / n) for n in ('base.qcow2', 'top.qcow2', 'img.raw')}
    argv = ['-s'] + fmt + io_args(SESSION) + [name]
    ref = run([ref_qemu_io] + argv, cwd=images, env=session_env(images))
    ours = run([our_qemu_io] + argv, cwd=images, env=session_env(images))
    assert (ours.rc, normalize(ours.out), ours.err) == \
        (ref.rc, normalize(ref.out), ref.err)
    assert 'verification failed' not in ours.out
    after = {n: digest(images / n) for n in before}
    assert after == before, 'snapshot mode wrote to the base'
    assert os.listdir(images / 'tmp') == []


def test_open_command_snapshot(images, our_qemu_io, ref_qemu_io):
    cmds = ['open -s base.qcow2', 'write -P 0x66 0 4k', 'read -P 0x66 0 4k',
            'close', 'open base.qcow2', 'read -P 0x11 0 4k']
    ref = run([ref_qemu_io] + io_args(cmds), cwd=images, env=session_env(images))
    ours = run([our_qemu_io] + io_args(cmds), cwd=images, env=session_env(images))
    assert (ours.rc, normalize(ours.out), ours.err) == \
        (ref.rc, normalize(ref.out), ref.err)
    assert 'verification failed' not in ours.out


@pytest.mark.parametrize('argv', [
    ['-r', '-s', '-c', 'write 0 4k', 'base.qcow2'],
    ['-s', '-c', 'read 0 4k', 'missing.qcow2'],
    ['-s', '-c', 'write 0 4k', '--image-opts', 'driver=qcow2,file.filename=base.qcow2'],
    ['-c', 'write 0 4k', '--image-opts', 'driver=qcow2,file.filename=base.qcow2,snapshot=on'],
    ['-c', 'write 0 4k', 'json:{"driver":"qcow2","file":{"filename":"base.qcow2"},'
                         '"snapshot":true}'],
], ids=['read-only', 'missing', 'image-opts', 'snapshot-option', 'snapshot-json'])
def test_errors_as_reference(images, our_qemu_io, ref_qemu_io, argv):
    before = digest(images / 'base.qcow2')
    ref = run([ref_qemu_io] + argv, cwd=images, env=session_env(images))
    ours = run([our_qemu_io] + argv, cwd=images, env=session_env(images))
    assert (ours.rc, normalize(ours.out), ours.err) == \
        (ref.rc, normalize(ref.out), ref.err)
    assert digest(images / 'base.qcow2') == before
    assert os.listdir(images / 'tmp') == []


def test_unusable_tmpdir_as_reference(images, our_qemu_io, ref_qemu_io):
    env = dict(os.environ, TMPDIR=str(images / 'nonexistent'))
    argv = ['-s', '-c', 'read 0 4k', 'base.qcow2']
    ref = run([ref_qemu_io] + argv, cwd=images, env=env)
    ours = run([our_qemu_io] + argv, cwd=images, env=env)
    mask = re.compile(r'vl\.\w{6}')
    assert (ours.rc, ours.out, mask.sub('vl.X', ours.err)) == \
        (ref.rc, ref.out, mask.sub('vl.X', ref.err))
    assert ours.rc == 1 and 'Could not open temporary file' in ours.err


# ---- while it runs: where the overlay is, and the locks ----


def open_files(pid):
    out = []
    fd_dir = f'/proc/{pid}/fd'
    for fd in os.listdir(fd_dir):
        try:
            out.append(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            pass
    return out


def running(prog, argv, cwd, env, probe):
    """Starts @prog, waits until the base is locked, returns probe(pid)
    and kills it with SIGKILL."""
    p = subprocess.Popen([prog] + argv, cwd=str(cwd), env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline and not lock_bytes(cwd / 'base.qcow2'):
            time.sleep(0.05)
        time.sleep(0.2)
        return probe(p.pid)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()


def overlay_paths(pid):
    return sorted(re.sub(r'vl\.\w{6}', 'vl.XXXXXX', f)
                  for f in open_files(pid) if '/vl.' in f)


@pytest.mark.parametrize('tmpdir', ['own', '/tmp', None], ids=['own', 'tmp', 'unset'])
def test_overlay_deleted_while_open(images, our_qemu_io, ref_qemu_io, tmpdir):
    env = dict(os.environ)
    env.pop('TMPDIR', None)
    if tmpdir:
        env['TMPDIR'] = str(images / 'tmp') if tmpdir == 'own' else tmpdir
    argv = ['-s', '-c', 'write -P 0x77 0 64k', '-c', 'sleep 2000', 'base.qcow2']
    ref = running(ref_qemu_io, argv, images, env, overlay_paths)
    ours = running(our_qemu_io, argv, images, env, overlay_paths)
    assert ref, 'the reference keeps its overlay open'
    assert all(p.endswith(' (deleted)') for p in ref)
    assert ours == ref
    assert os.listdir(images / 'tmp') == []


@pytest.mark.parametrize('mode', [[], ['-r']], ids=['rw', 'ro'])
def test_base_locks_as_reference(images, our_qemu_io, ref_qemu_io, mode):
    argv = ['-s'] + mode + ['-c', 'sleep 2000', 'base.qcow2']
    env = session_env(images)
    ref = running(ref_qemu_io, argv, images, env, lambda pid: lock_bytes(images / 'base.qcow2'))
    ours = running(our_qemu_io, argv, images, env,
                   lambda pid: lock_bytes(images / 'base.qcow2'))
    assert ref
    assert ours == ref


def test_reference_writer_excluded(images, our_qemu_io, ref_qemu_io):
    """The base is only read: another reader may open it, a writer may not
    (it would change what the overlay reads through)."""
    argv = ['-s', '-c', 'sleep 2000', 'base.qcow2']

    def others(pid):
        return (run([ref_qemu_io, '-r', '-c', 'read 0 4k', 'base.qcow2'], cwd=images).rc,
                run([ref_qemu_io, '-c', 'write 0 4k', 'base.qcow2'], cwd=images).rc)
    env = session_env(images)
    assert running(our_qemu_io, argv, images, env, others) == \
        running(ref_qemu_io, argv, images, env, others)


@pytest.mark.parametrize('arg', [
    '--image-opts', 'json'], ids=['image-opts', 'json'])
def test_img_snapshot_option_refused_as_reference(images, our_qemu_img, ref_qemu_img, arg):
    """qemu-img has no snapshot mode: "snapshot" is not an open option."""
    if arg == 'json':
        argv = ['info', 'json:{"driver":"qcow2","file":{"filename":"base.qcow2"},'
                        '"snapshot":true}']
    else:
        argv = ['info', '--image-opts', 'driver=qcow2,file.filename=base.qcow2,snapshot=on']
    ref = run([ref_qemu_img] + argv, cwd=images)
    ours = run([our_qemu_img] + argv, cwd=images)
    assert (ours.rc, ours.out, ours.err) == (ref.rc, ref.out, ref.err)
    assert ours.rc == 1
