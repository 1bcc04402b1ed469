"""commit -p and rebase -p print the reference's progress lines.

rebase: the reference's loop moves the bar by a fixed step for each piece
of the image it compares (pieces of at most 2 MiB, cut where the overlay's
allocation changes), with a line per 2 % moved: the whole output is fixed
by the image and must be identical.

commit: the reference runs a mirror job whose requests (whole granules of
the base's cluster size, data requests at most 1 MiB) complete
concurrently; it prints the job's progress whenever its event loop
wakes, so it repeats lines and sometimes sees two completions at once.
What it prints is always a part of the line sequence of one completion at
a time, which is what strata prints, always the same."""
import os
import shutil
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
# the order they are issued); strata prints their running total, one
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
    # a 3 MiB zero extent is one request, data ones are cut at 1 MiB
    return (two_layers(d, img, io, 8 * MiB, 'write -P 1 0 2M',
                       'write -z 2M 3M'),
            [MiB, MiB, 3 * MiB])


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
