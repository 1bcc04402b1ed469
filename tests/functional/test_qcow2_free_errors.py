"""Freeing clusters when the refcount update fails: the reference's
'qcow2_free_clusters failed' line for every cause (an unreadable
refcount block as well as an underflow), and none where its free
succeeds although the L2 tables could not be flushed first."""
import shutil

import pytest

from conftest import run


def same(ours, ref, r, s):
    assert (ours.rc, ours.out, ours.err) == \
        (ref.rc, ref.out.replace(r, s), ref.err.replace(r, s))


def test_discard_with_unaligned_refblock(tmp_path, our_qemu_io, our_qemu_img,
                                         ref_qemu_io, ref_qemu_img):
    # qemu-iotests 060: the discard marks the image corrupt, says that
    # the free failed (EIO), then the tail request finds no medium
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', r,
                '64M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write 0 128k', r]).rc == 0
    with open(r, 'r+b') as f:
        f.seek(0x10000)
        f.write(b'\x00\x00\x00\x00\x00\x00\x2a\x00')
    shutil.copy(r, s)
    same(run([our_qemu_io, '-c', 'discard 0 65537', s]),
         run([ref_qemu_io, '-c', 'discard 0 65537', r]), r, s)
    for args in (['-q', '-r', 'all'], ['-r', 'all']):
        same(run([our_qemu_img, 'check', *args, s]),
             run([ref_qemu_img, 'check', *args, r]), r, s)


@pytest.mark.parametrize('once', ['on', 'off'])
def test_failed_data_write_frees_its_cluster(tmp_path, our_qemu_io,
                                             our_qemu_img, ref_qemu_io,
                                             ref_qemu_img, once):
    # qemu-iotests 026 (write_aio): the cluster a failed write allocated
    # goes back without a message, even when the L2 table cache cannot
    # be flushed to order the free after it
    conf = tmp_path / 'blkdebug.conf'
    conf.write_text('[inject-error]\nevent = "write_aio"\nerrno = "5"\n'
                    f'immediately = "off"\nonce ="{once}"\n')
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    for p in (r, s):
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    'cluster_size=1024', p, '1G']).rc == 0
    same(run([our_qemu_io, '-c', 'write 0 128k', f'blkdebug:{conf}:{s}']),
         run([ref_qemu_io, '-c', 'write 0 128k', f'blkdebug:{conf}:{r}']),
         r, s)
    same(run([ref_qemu_img, 'check', s]), run([ref_qemu_img, 'check', r]),
         r, s)
