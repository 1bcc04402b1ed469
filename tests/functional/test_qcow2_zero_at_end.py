"""qcow2 zero writes that reach the image's end: with extended L2
entries the reference marks every subcluster of the last cluster zero
(those past the end too) when the write holds the cluster's start, and
only the covered ones when it starts inside the cluster.  The bytes of
the image must be the reference's (found by the chain differential,
seed 22262: convert -B of a raw file that is not sparse)."""
import pytest

from conftest import io_args, run

SIZE = 131584          # two 64 KiB clusters and one 512-byte sector


@pytest.mark.parametrize('cmds', [
    ['write -z 131072 512'],                    # the last cluster alone
    ['write -z 65536 66048'],                   # from a whole cluster on
    ['write -z 129024 2560'],                   # from inside the one before
    ['write -P 1 131072 512', 'write -z 131072 512'],   # over data
    ['write -z 0 131584'],                      # the whole image
])
@pytest.mark.parametrize('opts', ['extended_l2=on', 'cluster_size=65536'])
def test_zero_write_to_end(tmp_path, ref_qemu_img, ref_qemu_io, our_qemu_io,
                           cmds, opts):
    images = []
    for side, io in (('ref', ref_qemu_io), ('ours', our_qemu_io)):
        path = str(tmp_path / f'{side}.qcow2')
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o', opts,
                    path, str(SIZE)]).rc == 0
        r = run([io] + io_args(cmds) + [path])
        assert r.rc == 0 and 'failed' not in r.out, r
        images.append(open(path, 'rb').read())
    assert images[1] == images[0]
    assert run([ref_qemu_img, 'check', str(tmp_path / 'ours.qcow2')]).rc == 0


def test_convert_onto_backing_non_sparse(tmp_path, ref_qemu_img,
                                         our_qemu_img):
    """convert -B of a raw file of zeroes, allocated in the file: the
    zeroes up to the end are zero writes, the last cluster's whole."""
    src = tmp_path / 's.raw'
    src.write_bytes(b'\0' * SIZE)
    base = str(tmp_path / 'b.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'extended_l2=on', base, '64k']).rc == 0
    images = []
    for side, img in (('ref', ref_qemu_img), ('ours', our_qemu_img)):
        out = str(tmp_path / f'{side}.qcow2')
        r = run([img, 'convert', '-f', 'raw', '-O', 'qcow2', '-B', base,
                 '-F', 'qcow2', '-o', 'extended_l2=on', str(src), out])
        assert r.rc == 0, r
        images.append(open(out, 'rb').read())
    assert images[1] == images[0]
