"""qcow2 open options: accepted values work, bad ones give the reference's
message (qemu-io --image-opts)."""
import pytest

from conftest import run

OPTS = [
    'overlap-check=bogus', 'overlap-check=all', 'overlap-check=none',
    'overlap-check=none,overlap-check.template=all',
    'overlap-check=constant,overlap-check.active-l2=on',
    'l2-cache-entry-size=1000', 'l2-cache-entry-size=1024',
    'cache-size=1M,l2-cache-size=2M', 'cache-size=1M,refcount-cache-size=2M',
    'cache-size=1M,l2-cache-size=200k,refcount-cache-size=100k',
    'cache-size=1M', 'l2-cache-size=0', 'refcount-cache-size=1',
    'lazy-refcounts=on', 'lazy-refcounts=maybe', 'discard-no-unref=on',
    'pass-discard-request=on', 'pass-discard-other=off',
    'cache-clean-interval=5', 'cache-clean-interval=-1',
    'data-file.filename=x.raw',
]


@pytest.mark.parametrize('opts', OPTS)
def test_open_options(tmp_path, strata_img, strata_io, ref_qemu_img,
                      ref_qemu_io, opts):
    img = str(tmp_path / 'o.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'cluster_size=4k', img, '1M']).rc == 0
    argv = ['-c', 'write -P 3 1k 5k', '-c', 'read -P 3 1k 5k',
            '--image-opts', f'driver=qcow2,file.filename={img},{opts}']
    r = run([ref_qemu_io, *argv])
    s = run([strata_io, *argv])
    assert s.rc == r.rc, (r, s)
    assert s.err.replace('strata-io', 'qemu-io') == r.err
    assert ('failed' in s.out) == ('failed' in r.out)


@pytest.mark.parametrize('cmd', ['open -o refcount-cache-size=256T {img}',
                                 'reopen -o refcount-cache-size=256T'])
def test_unmappable_refcount_cache(tmp_path, strata_io, ref_qemu_img,
                                   ref_qemu_io, cmd):
    """iotest 137 with cluster_size=2M: a refcount cache the reference
    cannot allocate (256 TiB in 128 Mi entries, under the count limit)
    fails the open or reopen with its message."""
    img = str(tmp_path / 'c.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'cluster_size=2M', img, '64M']).rc == 0
    c = cmd.format(img=img)
    args = ['-c', c, '-c', 'read 0 512'] + ([] if '{img}' in cmd else [img])
    r, s = run([ref_qemu_io, *args]), run([strata_io, *args])
    assert 'Could not allocate metadata caches' in r.err
    assert (s.rc, s.out.splitlines()[:1],
            s.err.replace('strata-io', 'qemu-io')) == \
        (r.rc, r.out.splitlines()[:1], r.err)
