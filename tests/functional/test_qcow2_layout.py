"""qcow2 allocation layout and resize rules matched to the reference:
the same operations give the same file, and resize allows or refuses
exactly what the reference does, with its messages."""
import pytest

from conftest import run


def prepare(ref_img, ref_io, path, compat):
    assert run([ref_img, 'create', '-q', '-f', 'qcow2', '-o',
                'compat=' + compat, path, '10M']).rc == 0
    assert run([ref_io, '-c', 'write -P 1 0 1M', '-c', 'write -P 2 8M 1M',
                path]).rc == 0
    assert run([ref_img, 'snapshot', '-c', 's1', path]).rc == 0
    assert run([ref_io, '-c', 'write -P 3 8M 64k', path]).rc == 0


@pytest.mark.parametrize('compat', ['1.1', '0.10'])
def test_shrink_with_snapshots(tmp_path, strata_img, ref_qemu_img,
                               ref_qemu_io, compat):
    """v3 records each snapshot's size, so the reference shrinks an image
    with snapshots (v2 refuses any resize); the snapshot keeps its data."""
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    for p in (r, s):
        prepare(ref_qemu_img, ref_qemu_io, p, compat)
    rr = run([ref_qemu_img, 'resize', '--shrink', r, '4M'])
    ss = run([strata_img, 'resize', '--shrink', s, '4M'])
    assert (ss.rc, ss.out, ss.err.replace('strata-img', 'qemu-img')) == \
        (rr.rc, rr.out, rr.err.replace(r, s))
    assert run([ref_qemu_img, 'check', s]).rc == 0
    assert run([ref_qemu_img, 'compare', r, s]).rc == 0
    with open(r, 'rb') as f, open(s, 'rb') as g:
        assert len(f.read()) == len(g.read())
    for p in (r, s):
        assert run([ref_qemu_img, 'snapshot', '-a', 's1', p]).rc == 0
    assert run([ref_qemu_img, 'compare', r, s]).rc == 0
    out = run([ref_qemu_io, '-c', 'read -P 2 8M 1M', s]).out
    assert 'failed' not in out and 'Pattern' not in out


@pytest.mark.parametrize('cmds', [
    # a new refcount block for the run's first cluster: the search starts
    # again from that cluster, not past the new block
    ['write 0 30208', 'write 100k 512'],
    # a refcount block placed in a range with no block of its own: that
    # range's block comes next to it, the table does not grow
    ['write 0 1M'],
    ['write 0 1M', 'write 2M 64k', 'write 3M 512'],
    ['write 0 30208', 'write 100k 512', 'write 1M 200k'],
    # the table grows (it covers 2 MiB of host clusters): new blocks and
    # the table (half as many entries again) past the blocks in use, the
    # old table's clusters taken again by the data that follows
    ['write 0 3M'],
    ['write 0 1M', 'write 3M 1M', 'write 1M 1M'],
])
def test_refblock_placement_matches_reference(tmp_path, strata_io,
                                              ref_qemu_img, ref_qemu_io,
                                              cmds):
    """512 B clusters with 64-bit refcounts (64 clusters per refcount
    block): the same writes give a byte-identical file."""
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    for p in (r, s):
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    'cluster_size=512,refcount_bits=64', p, '4M']).rc == 0
    args = [a for c in cmds for a in ('-c', c)]
    assert run([ref_qemu_io, *args, r]).rc == 0
    assert run([strata_io, *args, s]).rc == 0
    assert run([ref_qemu_img, 'check', s]).rc == 0
    with open(r, 'rb') as f, open(s, 'rb') as g:
        assert f.read() == g.read()


def test_reftable_load_event_on_open(tmp_path, strata_io, ref_qemu_img,
                                     ref_qemu_io):
    """Open reads the refcount table under the reftable_load event: an
    error injected there fails the open with the reference's message."""
    img = str(tmp_path / 'e.qcow2')
    conf = tmp_path / 'bd.conf'
    conf.write_text('[inject-error]\nevent = "reftable_load"\n'
                    'errno = "5"\n')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', img,
                '1M']).rc == 0
    spec = f'blkdebug:{conf}:{img}'
    rr = run([ref_qemu_io, '-c', 'read 0 512', spec])
    ss = run([strata_io, '-c', 'read 0 512', spec])
    assert rr.rc == 1 and 'refcount handling' in rr.err
    assert (ss.rc, ss.out, ss.err.replace('strata-io', 'qemu-io')) == \
        (rr.rc, rr.out, rr.err)


def test_shrink_ends_file_on_a_cluster(tmp_path, strata_io, ref_qemu_img,
                                       ref_qemu_io):
    """Growing moves a small L1 table to the end of the file, written only
    to its own length; a shrink then leaves the file ending exactly after
    its last used cluster, as the reference does."""
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    cmds = ['write -P 0x5b 60k 32k', 'truncate 1M', 'truncate 96k']
    args = [a for c in cmds for a in ('-c', c)]
    for p in (r, s):
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    'cluster_size=512', p, '96k']).rc == 0
    assert run([ref_qemu_io, *args, r]).rc == 0
    assert run([strata_io, *args, s]).rc == 0
    assert run([ref_qemu_img, 'check', s]).rc == 0
    with open(r, 'rb') as f, open(s, 'rb') as g:
        assert f.read() == g.read()


@pytest.mark.parametrize('opts,size,cmds', [
    # the freed old L1 cluster takes a temporary L2 table during the
    # shrink's discard, and reads as zeroes afterwards
    ('cluster_size=512', '96k',
     ['write -P 0x5b 60k 32k', 'truncate 1M', 'truncate 96k']),
    # the kept last L1 entry gets an (empty) L2 table of its own
    ('cluster_size=512', '200k', ['write -P 0x5b 0 512', 'truncate 100k']),
    ('cluster_size=4k', '2M',
     ['write -P 0x5b 0 512', 'write 1M 64k', 'truncate 100k']),
    # a file ending inside its last used cluster is not grown to its end
    ('cluster_size=512,preallocation=metadata', '96k',
     ['write -P 0x5b 60k 32k', 'truncate 1M', 'truncate 50k']),
])
def test_shrink_discard_layout(tmp_path, strata_io, ref_qemu_img,
                               ref_qemu_io, opts, size, cmds):
    """A shrink discards the cropped range through L2 tables as the
    reference does: the same file, byte for byte."""
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    args = [a for c in cmds for a in ('-c', c)]
    for p in (r, s):
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    opts, p, size]).rc == 0
    assert run([ref_qemu_io, *args, r]).rc == 0
    assert run([strata_io, *args, s]).rc == 0
    assert run([ref_qemu_img, 'check', s]).rc == 0
    with open(r, 'rb') as f, open(s, 'rb') as g:
        assert f.read() == g.read()


def test_cow_of_shared_cluster_keeps_subclusters(tmp_path, strata_io,
                                                 ref_qemu_img, ref_qemu_io):
    """Extended L2: a write into a cluster shared with a snapshot copies
    from the first to the last allocated subcluster only (or the write's
    ends); zero and unallocated subclusters outside stay so (iotest 271).
    The same file, byte for byte."""
    base = str(tmp_path / 'b.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'extended_l2=on', base, '1M']).rc == 0
    for c in range(6):
        k = 64 * c
        assert run([ref_qemu_io, '-c', f'write -q -z {k + 14}k 2k',
                    '-c', f'write -q -P {0xd0 + c} {k + 26}k 2k',
                    '-c', f'write -q -P {0xe0 + c} {k + 36}k 2k',
                    base]).rc == 0
    assert run([ref_qemu_img, 'snapshot', '-c', 'snap1', base]).rc == 0
    # inside the span, before it, after it, over the zero subcluster, at
    # the cluster's start, and two clusters in one write
    cmds = ['write -q -P 0xf0 30k 1k', 'write -q -P 0xf1 84k 1k',
            'write -q -P 0xf2 168k 1k', 'write -q -P 0xf4 270k 1k',
            'write -q -P 0xf5 257k 1k', 'write -q -P 0xf6 316k 16k']
    args = [a for c in cmds for a in ('-c', c)]
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    for p in (r, s):
        with open(base, 'rb') as f, open(p, 'wb') as g:
            g.write(f.read())
    assert run([ref_qemu_io, *args, r]).rc == 0
    assert run([strata_io, *args, s]).rc == 0
    assert run([ref_qemu_img, 'check', s]).rc == 0
    with open(r, 'rb') as f, open(s, 'rb') as g:
        assert f.read() == g.read()


@pytest.mark.parametrize('cmd', ['write -z 2M 2M', 'discard 3000001 2M'])
def test_blkdebug_unaligned_zero_parts(tmp_path, strata_io, ref_qemu_img,
                                       ref_qemu_io, cmd):
    """Through blkdebug with non-power-of-2 zero/discard limits, the
    pieces smaller than the alignment are refused by blkdebug (written as
    zeroes, or not discarded), as in the reference (iotest 204): the same
    file, byte for byte."""
    base = str(tmp_path / 'b.qcow2')
    top = str(tmp_path / 't.qcow2')
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'cluster_size=64k', base, '8M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 11 0 8M', base]).rc == 0
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'cluster_size=64k', '-b', base, '-F', 'qcow2', top,
                '8M']).rc == 0
    assert run([ref_qemu_io, '-c', 'write -P 22 0 7M', top]).rc == 0
    opts = ('driver=blkdebug,image.driver=qcow2,align=512,'
            'opt-write-zero=960k,max-write-zero=960k,'
            'opt-discard=960k,max-discard=960k')
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    for p in (r, s):
        with open(top, 'rb') as f, open(p, 'wb') as g:
            g.write(f.read())
    for tool, p in ((ref_qemu_io, r), (strata_io, s)):
        assert run([tool, '-c', f'open -o {opts} blkdebug::{p}',
                    '-c', cmd]).rc == 0
    assert run([ref_qemu_img, 'check', s]).rc == 0
    with open(r, 'rb') as f, open(s, 'rb') as g:
        assert f.read() == g.read()


def test_write_over_compressed_clusters_allocates_one_run(
        tmp_path, strata_io, ref_qemu_img, ref_qemu_io):
    """A write over several compressed clusters gets one run of new
    clusters, as the reference allocates it (a single free cluster
    before it is left for later; iotest 271's entries #25 to #27)."""
    cmds = ['write -P 1 256k 128k', 'write -c -P 2 0 64k',
            'write -c -P 3 64k 64k', 'write -c -P 4 128k 64k',
            'discard 256k 64k', 'write -P 5 32k 128k', 'write -P 6 448k 4k']
    args = [a for c in cmds for a in ('-c', c)]
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    for p in (r, s):
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    'cluster_size=64k', p, '1M']).rc == 0
    assert run([ref_qemu_io, *args, r]).rc == 0
    assert run([strata_io, *args, s]).rc == 0
    assert run([ref_qemu_img, 'check', s]).rc == 0
    with open(r, 'rb') as f, open(s, 'rb') as g:
        assert f.read() == g.read()


@pytest.mark.parametrize('opts,cmds', [
    # the shrink's L2 table for the first entry, the grown L1 table in a
    # freed cluster: the old L1's cluster stays behind the free hint
    ('cluster_size=512', ['truncate 4k', 'truncate -m metadata 1M',
                          'aio_write 4097 1k', 'aio_flush']),
    ('cluster_size=512,refcount_bits=64', ['truncate -m metadata 4M']),
    ('cluster_size=4k', ['write 0 8k', 'truncate -m metadata 40M']),
])
def test_metadata_preallocation_layout(tmp_path, strata_io, ref_qemu_img,
                                       ref_qemu_io, opts, cmds):
    """Metadata preallocation places each run from the free hint the last
    one left, as the reference: the same file, byte for byte."""
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    args = [a for c in cmds for a in ('-c', c)]
    for p in (r, s):
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    opts, p, '64k']).rc == 0
    assert run([ref_qemu_io, *args, r]).rc == 0
    assert run([strata_io, *args, s]).rc == 0
    assert run([ref_qemu_img, 'check', s]).rc == 0
    with open(r, 'rb') as f, open(s, 'rb') as g:
        assert f.read() == g.read()


@pytest.mark.parametrize('opts', ['discard-no-unref=on',
                                  'discard-no-unref=on,discard=unmap'])
def test_zero_unmap_keeps_cluster_with_discard_no_unref(
        tmp_path, strata_io, ref_qemu_img, ref_qemu_io, opts):
    """write -z -u with discard-no-unref keeps the image's own clusters
    allocated (zero flag set), as the reference: the same file."""
    r, s = str(tmp_path / 'r.qcow2'), str(tmp_path / 's.qcow2')
    for p in (r, s):
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                    'cluster_size=16k', p, '128k']).rc == 0
    args = ['-c', 'write -P 0x5b 4097 64k', '-c', 'write -z -u 0 60k',
            '-c', 'write -P 1 1k 512']
    for tool, p in ((ref_qemu_io, r), (strata_io, s)):
        assert run([tool, *args, '--image-opts',
                    f'driver=qcow2,file.filename={p},{opts}']).rc == 0
    assert run([ref_qemu_img, 'check', s]).rc == 0
    with open(r, 'rb') as f, open(s, 'rb') as g:
        assert f.read() == g.read()

