"""Files the user may not read or write: the reference's messages and
exit codes.  The tools run as 'nobody' (these tests need root to switch,
as in CI, and skip otherwise)."""
import os
import shutil
import tempfile

import pytest

from conftest import make_image, normalize, run

MiB = 1 << 20
SETPRIV = shutil.which('setpriv')

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not SETPRIV,
                                reason='needs root and setpriv to run as nobody')


@pytest.fixture
def world_dir(strata_io):
    """A directory 'nobody' can enter, holding a copy of ours named
    qemu-io (a copy: the build tree may not be reachable for nobody)."""
    d = tempfile.mkdtemp(prefix='strata-perm-', dir='/var/tmp')
    os.chmod(d, 0o755)
    shutil.copy(strata_io, os.path.join(d, 'qemu-io'))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def as_nobody(argv, cwd):
    return run([SETPRIV, '--reuid=nobody', '--regid=nogroup', '--clear-groups']
               + argv, cwd=cwd)


CASES = [
    ('unreadable', 0o000, ['-f', 'raw', '-c', 'read 0 512']),
    ('unreadable-ro', 0o000, ['-f', 'raw', '-r', '-c', 'read 0 512']),
    ('read-only-file-rw-open', 0o444, ['-f', 'raw', '-c', 'read 0 512']),
    ('read-only-file-ro-open', 0o444, ['-f', 'raw', '-r', '-c', 'read 0 512']),
    ('write-only-file', 0o222, ['-f', 'raw', '-c', 'write 0 512']),
    ('auto-read-only', 0o444, ['--image-opts', '-c', 'read 0 512', '-c', 'write 0 512',
                               'driver=raw,file.filename=img,auto-read-only=on']),
]


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_permission_errors_as_reference(case, world_dir, ref_qemu_io):
    name, mode, argv = case
    img = make_image(os.path.join(world_dir, 'img'), 1 * MiB)
    os.chmod(img, mode)
    target = [] if '--image-opts' in argv else ['img']
    ref = as_nobody([ref_qemu_io] + argv + target, world_dir)
    ours = as_nobody([os.path.join(world_dir, 'qemu-io')] + argv + target, world_dir)
    assert (ours.rc, normalize(ours.out), ours.err) == \
        (ref.rc, normalize(ref.out), ref.err), ours
