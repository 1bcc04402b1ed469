"""commit -p and rebase -p print the reference's progress lines.

rebase: the reference's loop moves the bar by a fixed step for each piece
of the image it compares (pieces of at most 2 MiB, cut where the overlay's
allocation changes), with a line per 2 % moved: the whole output is fixed
by the image and must be identical.

commit: the reference runs a mirror job whose requests (whole granules of
the base's cluster size, data requests at most 1 MiB) complete
concurrently; it prints the job's progress whenever its event loop
wakes, so it repeats lines and sometimes sees two completions at once or
out of order.  Strata prints one of its sequences, always the same: the
copies completing one at a time in issue order, zero writes done as soon
as they are issued, over the total the job has at that moment (a partial
granule at the end of the disk counts whole until it is issued); every
line the reference prints must be reachable from the same requests."""
import os
import shutil
import struct
import subprocess

import pytest

KiB = 1 << 10
MiB = 1 << 20


def qimg(ref_img, *args):
    subprocess.run([ref_img] + list(args), check=True, capture_output=True)


def qio(ref_io, path, *cmds):
    argv = [ref_io]
    for c in cmds:
        argv += ['-c', c]
    subprocess.run(argv + [path], check=True, capture_output=True)


def create(ref_img, path, size, backing=None, cluster=None):
    args = ['create', '-q', '-f', 'qcow2']
    if backing and cluster:
        args += ['-o', 'cluster_size=%d' % cluster]
        cluster = None
    if backing:
        args += ['-b', os.path.basename(backing), '-F', 'qcow2']
    if cluster:
        args += ['-o', 'cluster_size=%d' % cluster]
    qimg(ref_img, *(args + [path, str(size)] if size else args + [path]))


def lines(out):
    """The progress values printed, in order, and the rest of stdout."""
    head, sep, rest = out.partition('\n')
    vals = [v.strip() for v in head.split('\r') if v.strip()]
    return vals, rest


def dedup(vals):
    return [v for i, v in enumerate(vals) if i == 0 or vals[i - 1] != v]


def is_subsequence(small, big):
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def twin(src_dir, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(src_dir, dst)
    return dst


class Out:
    """stdout and stderr as str, with their \r kept."""
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stdout = proc.stdout.decode()
        self.stderr = proc.stderr.decode()


def run_in(prog, d, *args):
    return Out(subprocess.run([prog] + list(args), cwd=d,
                              capture_output=True, timeout=60))


# ---- rebase: identical output ----

def rebase_chain(d, ref_img, ref_io, size, writes, old_size=None):
    create(ref_img, str(d / 'old.qcow2'), old_size or size)
    qio(ref_io, str(d / 'old.qcow2'), 'write -P 7 0 %d' % (old_size or size))
    create(ref_img, str(d / 'top.qcow2'), size, backing=d / 'old.qcow2')
    qio(ref_io, str(d / 'top.qcow2'), *writes)
    create(ref_img, str(d / 'new.qcow2'), size)


SPARSE = ['write -P 3 %d 64k' % o for o in range(0, 6 * MiB, 256 * KiB)]

REBASE_CASES = {
    'even': (8 * MiB, ['write -P 1 1M 1M', 'write -P 2 5M 512k'], None),
    'odd-size': (13 * MiB, ['write -P 1 1M 1M', 'write -P 2 5M 512k'], None),
    'one-piece': (3 * MiB, ['write -P 1 1M 1M'], None),
    'sparse-top': (6 * MiB, SPARSE, None),
    'empty-top': (120 * MiB, [], None),     # 60 pieces: each < 2 %
    'short-old': (8 * MiB, ['write -P 1 1M 1M'], 3 * MiB),
}


@pytest.mark.parametrize('mode', [[], ['-u']], ids=['safe', 'unsafe'])
@pytest.mark.parametrize('case', sorted(REBASE_CASES))
def test_rebase_progress_like_reference(strata_img, ref_qemu_img,
                                        ref_qemu_io, tmp_path, case, mode):
    size, writes, old_size = REBASE_CASES[case]
    src = tmp_path / 'src'
    src.mkdir()
    rebase_chain(src, ref_qemu_img, ref_qemu_io, size, writes, old_size)
    args = ['rebase', '-p'] + mode + ['-b', 'new.qcow2', '-F', 'qcow2',
                                      'top.qcow2']
    ours = run_in(strata_img, twin(src, tmp_path, 'o'), *args)
    ref = run_in(ref_qemu_img, twin(src, tmp_path, 'r'), *args)
    assert (ours.returncode, ours.stdout, ours.stderr) == \
        (ref.returncode, ref.stdout, ref.stderr)


def test_rebase_progress_in_chain_and_to_none(strata_img, ref_qemu_img,
                                              ref_qemu_io, tmp_path):
    """The new backing file in the old chain: pieces the layers between
    leave alone are passed over silently; -b "" compares every piece."""
    src = tmp_path / 'src'
    src.mkdir()
    create(ref_qemu_img, str(src / 'b.qcow2'), 10 * MiB)
    qio(ref_qemu_io, str(src / 'b.qcow2'), 'write -P 9 0 10M')
    create(ref_qemu_img, str(src / 'm.qcow2'), None, backing=src / 'b.qcow2')
    qio(ref_qemu_io, str(src / 'm.qcow2'), 'write -P 4 3M 1M',
        'write -P 5 7M 64k')
    create(ref_qemu_img, str(src / 't.qcow2'), None, backing=src / 'm.qcow2')
    qio(ref_qemu_io, str(src / 't.qcow2'), 'write -P 1 1M 1M')
    for args in (['-b', 'b.qcow2', '-F', 'qcow2'], ['-b', '']):
        argv = ['rebase', '-p'] + args + ['t.qcow2']
        ours = run_in(strata_img, twin(src, tmp_path, 'o%d' % len(args)),
                      *argv)
        ref = run_in(ref_qemu_img, twin(src, tmp_path, 'r%d' % len(args)),
                     *argv)
        assert (ours.returncode, ours.stdout) == (ref.returncode, ref.stdout)


def test_rebase_progress_subclusters_over_short_chain(
        strata_img, ref_qemu_img, ref_qemu_io, tmp_path):
    """Subclusters and a middle layer shorter than the overlay: the pieces
    follow the overlay's allocation whole (a length answered earlier for
    a shorter question must not cut them), past the middle layer's end
    every piece is compared."""
    src = tmp_path / 'src'
    src.mkdir()
    img, io = ref_qemu_img, ref_qemu_io
    qimg(img, 'create', '-q', '-f', 'qcow2', str(src / 'b.qcow2'), '4M')
    qimg(img, 'create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2',
         str(src / 'm.qcow2'), '9M')
    qio(io, str(src / 'm.qcow2'), 'write 1M 1M')
    qimg(img, 'create', '-q', '-f', 'qcow2', '-o',
         'extended_l2=on,cluster_size=128k', '-b', 'm.qcow2', '-F', 'qcow2',
         str(src / 'x.qcow2'), '12M')
    qio(io, str(src / 'x.qcow2'), 'write 0 20k', 'write 3M 100k',
        'write 7M 4k')
    argv = ['rebase', '-p', '-b', 'b.qcow2', '-F', 'qcow2', 'x.qcow2']
    ours = run_in(strata_img, twin(src, tmp_path, 'o'), *argv)
    ref = run_in(ref_qemu_img, twin(src, tmp_path, 'r'), *argv)
    assert (ours.returncode, ours.stdout) == (ref.returncode, ref.stdout)
    assert lines(ours.stdout)[0] == ['(0.00/100%)', '(16.67/100%)',
                                     '(33.33/100%)', '(50.00/100%)',
                                     '(100.00/100%)']


@pytest.mark.parametrize('cluster', ['4k', '64k'])
def test_rebase_progress_pieces_end_at_l2_tables(strata_img, ref_qemu_img,
                                                 tmp_path, cluster):
    """With 4 KiB clusters an L2 table maps 2 MiB: the reference's pieces
    end there even where nothing is allocated on either side."""
    src = tmp_path / 'src'
    src.mkdir()
    opts = ['-o', 'cluster_size=' + cluster]
    qimg(ref_qemu_img, 'create', '-q', '-f', 'qcow2', *opts,
         str(src / 'b.qcow2'), '1536k')
    qimg(ref_qemu_img, 'create', '-q', '-f', 'qcow2', *opts, '-b', 'b.qcow2',
         '-F', 'qcow2', str(src / 'm.qcow2'), '1536k')
    qimg(ref_qemu_img, 'create', '-q', '-f', 'qcow2', *opts, '-b', 'm.qcow2',
         '-F', 'qcow2', str(src / 't.qcow2'), '3M')
    argv = ['rebase', '-p', '-b', 'b.qcow2', '-F', 'qcow2', 't.qcow2']
    ours = run_in(strata_img, twin(src, tmp_path, 'o'), *argv)
    ref = run_in(ref_qemu_img, twin(src, tmp_path, 'r'), *argv)
    assert (ours.returncode, ours.stdout) == (ref.returncode, ref.stdout)


# ---- commit: the sequence of one completion at a time ----
# Each case builds a chain and names the reference's requests (bytes, in
# the order they complete: copies as issued, zero writes at once); strata
# prints their running total, one
# line per completion, and every line the reference prints must be the
# total of some of them (completions overlap in any order).

def pct(v):
    return '(%.2f/100%%)' % v


def expected_lines(ops):
    total, done, out = sum(ops), 0, [pct(0)]
    for n in ops:
        done += n
        out.append(pct(100.0 * done / total))
    return out if ops else [pct(0), pct(100)]


def reachable(ops):
    sums = {0}
    for n in ops:
        sums |= {s + n for s in sums}
    return {pct(100.0 * s / sum(ops)) for s in sums} if ops else \
        {pct(0), pct(100)}


def two_layers(d, img, io, size, *writes, cluster=None):
    create(img, str(d / 'base.qcow2'), size, cluster=cluster)
    create(img, str(d / 'top.qcow2'), None, backing=d / 'base.qcow2',
           cluster=cluster)
    if writes:
        qio(io, str(d / 'top.qcow2'), *writes)
    return ['top.qcow2']


def commit_full(d, img, io):
    return two_layers(d, img, io, 4 * MiB, 'write -P 1 0 4M'), [MiB] * 4


def commit_sparse(d, img, io):
    w = ['write -P 2 %d 64k' % o for o in range(0, 4 * MiB, 256 * KiB)]
    return two_layers(d, img, io, 4 * MiB, *w), [64 * KiB] * 16


def commit_small_clusters(d, img, io):
    # 4 KiB clusters, so 4 KiB granules: the 8 KiB hole is not copied
    return (two_layers(d, img, io, 2 * MiB, 'write -P 3 0 32k',
                       'write -P 3 40k 24k', 'write -P 3 1M 64k',
                       cluster=4096),
            [32 * KiB, 24 * KiB, 64 * KiB])


def commit_zeroes(d, img, io):
    # a 3 MiB zero extent is one request, data ones are cut at 1 MiB;
    # the zero write only changes the base's metadata and is done before
    # the copies issued ahead of it complete
    return (two_layers(d, img, io, 8 * MiB, 'write -P 1 0 2M',
                       'write -z 2M 3M'),
            [3 * MiB, MiB, MiB])


def three_layers(d, img, io):
    create(img, str(d / 'base.qcow2'), 4 * MiB)
    qio(io, str(d / 'base.qcow2'), 'write -P 9 0 4M')
    create(img, str(d / 'mid.qcow2'), None, backing=d / 'base.qcow2')
    qio(io, str(d / 'mid.qcow2'), 'write -P 4 0 2M')
    create(img, str(d / 'top.qcow2'), None, backing=d / 'mid.qcow2')
    qio(io, str(d / 'top.qcow2'), 'write -P 5 3M 1M')


def commit_into_mid(d, img, io):
    three_layers(d, img, io)
    return ['-b', 'mid.qcow2', 'top.qcow2'], [MiB]


def commit_into_base(d, img, io):
    three_layers(d, img, io)
    return ['-b', 'base.qcow2', 'top.qcow2'], [MiB] * 3


def commit_nothing(d, img, io):
    return two_layers(d, img, io, 4 * MiB), []


COMMIT_CASES = [commit_full, commit_sparse, commit_small_clusters,
                commit_zeroes, commit_into_mid, commit_into_base,
                commit_nothing]


@pytest.mark.parametrize('case', COMMIT_CASES, ids=lambda f: f.__name__)
def test_commit_progress_like_reference(strata_img, ref_qemu_img,
                                        ref_qemu_io, tmp_path, case):
    src = tmp_path / 'src'
    src.mkdir()
    args, ops = case(src, ref_qemu_img, ref_qemu_io)
    argv = ['commit', '-p'] + args
    ours = run_in(strata_img, twin(src, tmp_path, 'o'), *argv)
    assert ours.returncode == 0, ours.stderr
    vals, rest = lines(ours.stdout)
    assert dedup(vals) == expected_lines(ops)
    assert vals.count(pct(100)) == (2 if ops else 1)
    for i in range(3):
        ref = run_in(ref_qemu_img, twin(src, tmp_path, 'r%d' % i), *argv)
        rvals, rrest = lines(ref.stdout)
        assert (ref.returncode, rrest, rvals[0], rvals[-1]) == \
            (0, rest, vals[0], vals[-1])
        assert set(rvals) <= reachable(ops), (rvals, ops)
    again = run_in(strata_img, twin(src, tmp_path, 'o2'), *argv)
    assert again.stdout == ours.stdout


# ---- commit: the job's total, and requests cut where the reference's are ----
# The reference's total is done + in flight + still marked, refreshed
# between its iterations (runs of at most 16 MiB of marked granules): a
# marked granule at the end of a disk that is not a multiple of the
# granule counts whole until its iteration has been issued.  With at
# most 16 requests in flight, the lines printed before that use the
# larger total.  Each case names the requests (bytes, in issue order),
# how many leading lines are printed over the larger total, and by how
# much it is larger.  (As above: in the order they complete, zero writes
# as soon as they are issued.)

def f32(x):
    return struct.unpack('f', struct.pack('f', x))[0]


def filtered(vals):
    """The -p filter of both tools: a line when the value moves by more
    than 1 (in float), and always at 0 and 100."""
    out, last = [], None
    for v in vals:
        if last is None or v > f32(last + 1) or v < f32(last - 1) or \
                v in (0, 100):
            out.append(pct(v))
            last = v
    return dedup(out)


def size(op):
    """A request's bytes, or a group's that complete between two lines
    (a tuple: the reference may still see them one by one)."""
    return sum(op) if isinstance(op, tuple) else op


def flat(ops):
    return [n for op in ops for n in (op if isinstance(op, tuple) else
                                      (op,))]


def lines_over(ops, stale=0, over=0):
    total, done, vals = sum(flat(ops)), 0, [0.0]
    for i, op in enumerate(ops):
        done += size(op)
        t = total + (over if i < stale else 0)
        vals.append(f32(f32(f32(done) / f32(t)) * 100))
    return filtered(vals)


def reachable_over(ops, over):
    sums = {0}
    for n in ops:
        sums |= {s + n for s in sums}
    return {pct(100.0 * s / t) for s in sums
            for t in (sum(ops), sum(ops) + over)}


def tail_granule(d, img, io):
    # 20000000 bytes (20000256 as qcow2 keeps it), 64 KiB granules: 21
    # requests, the last one the cut granule at the end, issued after
    # four completions
    size = 20000000
    two_layers(d, img, io, size, 'write -P 1 0 %d' % size)
    return [MiB] * 19 + [64 * KiB, 11776], 4, 53760


def big_base_clusters(d, img, io):
    # 2 MiB base clusters: the zeroes do not start on one, so they are
    # copied through the 16 MiB buffer (one iteration each); the first
    # completion lets the second iteration go before the first line
    size = 39967903
    create(img, str(d / 'base.qcow2'), size, cluster=2 * MiB)
    create(img, str(d / 'top.qcow2'), None, backing=d / 'base.qcow2',
           cluster=512 * KiB)
    qio(io, str(d / 'top.qcow2'), 'write -z 15627772 24340131')
    # (the end granule, 56832 bytes, counts whole until then: 8704 more)
    return [16 * MiB, 7929856, 56832], 0, 8704


def small_top_clusters(d, img, io):
    # 1 KiB overlay clusters: an L2 table maps 128 KiB and the reference
    # asks block status one table at a time; partly marked 8 KiB granules
    # at the edges are copied whole
    size = 12140648
    create(img, str(d / 'base.qcow2'), size, cluster=8 * KiB)
    create(img, str(d / 'top.qcow2'), None, backing=d / 'base.qcow2',
           cluster=KiB)
    qio(io, str(d / 'top.qcow2'), 'write -z 12104499 32821',
        'write -z 7081780 2129521', 'write -P 3 11245861 199072')
    # all requests are issued at once; the zero writes (120k, 15 of 128k,
    # 32k, 24k) are done by the first line, then the copies complete
    zeroes = (120 * KiB,) + (128 * KiB,) * 15 + (32 * KiB, 24 * KiB)
    copies = [8 * KiB, 8 * KiB, 8 * KiB, 24 * KiB, 128 * KiB, 40 * KiB,
              8 * KiB, 8 * KiB, 8 * KiB]
    return [zeroes] + copies, 0, 0


@pytest.mark.parametrize('case', [tail_granule, big_base_clusters,
                                  small_top_clusters],
                         ids=lambda f: f.__name__)
def test_commit_progress_total_and_cuts(strata_img, ref_qemu_img,
                                        ref_qemu_io, tmp_path, case):
    src = tmp_path / 'src'
    src.mkdir()
    ops, stale, over = case(src, ref_qemu_img, ref_qemu_io)
    argv = ['commit', '-p', 'top.qcow2']
    ours = run_in(strata_img, twin(src, tmp_path, 'o'), *argv)
    assert ours.returncode == 0, ours.stderr
    vals, rest = lines(ours.stdout)
    assert dedup(vals) == lines_over(ops, stale, over)
    can = reachable_over(flat(ops), over)
    for i in range(3):
        ref = run_in(ref_qemu_img, twin(src, tmp_path, 'r%d' % i), *argv)
        rvals, rrest = lines(ref.stdout)
        assert (ref.returncode, rrest) == (0, rest)
        assert set(rvals) <= can, (rvals, ops)


def test_rebase_progress_subclusters_of_separate_clusters(
        strata_img, ref_qemu_img, ref_qemu_io, tmp_path):
    """Unallocated subclusters of two allocated clusters that are not
    next to each other in the file: the reference's block status ends
    at the first cluster's end, and so does its piece (one line more)."""
    src = tmp_path / 'src'
    src.mkdir()
    img, io = ref_qemu_img, ref_qemu_io
    size = 10788864
    qimg(img, 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k',
         str(src / 'old.qcow2'), '2777088')
    qimg(img, 'create', '-q', '-f', 'qcow2', str(src / 'new.qcow2'),
         str(size))
    qimg(img, 'create', '-q', '-f', 'qcow2', '-o',
         'extended_l2=on,cluster_size=2M', '-b', 'old.qcow2', '-F', 'qcow2',
         str(src / 'top.qcow2'), str(size))
    # the last write allocates cluster 5 before cluster 4 in the file
    qio(io, str(src / 'top.qcow2'), 'write -z 2682708 555196',
        'write -P 3 10556077 215451', 'write -P 3 7302996 2656791')
    argv = ['rebase', '-p', '-b', 'new.qcow2', '-F', 'qcow2', 'top.qcow2']
    ours = run_in(strata_img, twin(src, tmp_path, 'o'), *argv)
    ref = run_in(ref_qemu_img, twin(src, tmp_path, 'r'), *argv)
    assert (ours.returncode, ours.stdout) == (ref.returncode, ref.stdout)
    assert lines(ours.stdout)[0].count(pct(100)) == 4


def test_rebase_progress_piece_after_a_write_in_its_cluster(
        strata_img, ref_qemu_img, ref_qemu_io, tmp_path):
    """2 MiB clusters with subclusters, pieces shifted off the cluster
    boundaries by an allocated run: the piece before the last writes the
    old backing file's data into a cluster that had no host cluster, so
    the reference's last piece ends at that cluster's end and one more
    starts there (one more 100.00 line)."""
    src = tmp_path / 'src'
    src.mkdir()
    img, io = ref_qemu_img, ref_qemu_io
    size = 12601856
    qimg(img, 'create', '-q', '-f', 'qcow2', str(src / 'old.qcow2'),
         str(size))
    qio(io, str(src / 'old.qcow2'), 'write -P 1 11152937 388209')
    qimg(img, 'create', '-q', '-f', 'qcow2', str(src / 'new.qcow2'),
         str(size))
    qimg(img, 'create', '-q', '-f', 'qcow2', '-o',
         'extended_l2=on,cluster_size=2M', '-b', 'old.qcow2', '-F', 'qcow2',
         str(src / 'top.qcow2'), str(size))
    qio(io, str(src / 'top.qcow2'), 'write -z 3395168 226681')
    argv = ['rebase', '-p', '-b', 'new.qcow2', '-F', 'qcow2', 'top.qcow2']
    ours = run_in(strata_img, twin(src, tmp_path, 'o'), *argv)
    ref = run_in(ref_qemu_img, twin(src, tmp_path, 'r'), *argv)
    assert (ours.returncode, ours.stdout) == (ref.returncode, ref.stdout)
    assert lines(ours.stdout)[0].count(pct(100)) == 4
