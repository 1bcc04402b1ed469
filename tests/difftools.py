"""What the randomized differentials against the reference share: the
scratch directory of a module, the verdict of one case, the exploration
loop run from the command line, and small helpers of their runs."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

OK = ('same', 'relaxed')


def scratch_dirs(bindir, prefix, probe):
    """(reference bin dir, our bin dir, scratch dir) for a module's
    fixture; skips when the reference's @probe tool is missing."""
    ref = os.environ.get('STRATA_REF_BIN', '/opt/qemu-ref/usr/bin')
    if not os.access(os.path.join(ref, probe), os.X_OK):
        pytest.skip('no reference')
    base = tempfile.mkdtemp(prefix=prefix, dir='/var/tmp')
    yield ref, str(bindir), base
    shutil.rmtree(base, ignore_errors=True)


def judge(case, verdict, info, skip=('refcrash',), known=None):
    """A seed's verdict as a test outcome: the reference misbehaving is
    a skip, a difference the reference itself makes vary is an expected
    failure (@known says why), anything else not OK fails."""
    if verdict in skip:
        pytest.skip(f'reference misbehaves on {case!r}')
    if known and verdict == 'known':
        pytest.xfail(known)
    assert verdict in OK, (case, verdict, info)


def explore(prefix, seeds, attempt, out_path):
    """Run attempt(seed, scratch dir) -> (case, verdict, info) over
    @seeds; the cases not OK go to @out_path as JSON by verdict."""
    base = tempfile.mkdtemp(prefix=prefix, dir='/var/tmp')
    found = {}
    try:
        for seed in seeds:
            case, verdict, info = attempt(seed, base)
            found['explored'] = found.get('explored', 0) + 1
            if verdict not in OK:
                found.setdefault(verdict, []).append(
                    {'case': case, 'info': info})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    with open(out_path, 'w') as f:
        json.dump(found, f, indent=1, default=repr)
    print({k: v if isinstance(v, int) else len(v) for k, v in found.items()})


def attempt(make, run, seed, base):
    """One exploration step: case = make(seed), then run(case, base) ->
    (verdict, info); an exception there is reported as verdict 'setup'
    (the reference's set-up failing).  Returns (case, verdict, info)."""
    case = make(seed)
    try:
        verdict, info = run(case, base)
    except Exception as exc:  # set-up failures: report them
        verdict, info = 'setup', repr(exc)
    return case, verdict, info


def explore_pairs(prefix, make, run_pair, ref, our, first, count, out_path,
                  relabel=None):
    """explore() over seeds @first.. (@count of them) with the cases of
    make(seed) run by run_pair(ref, our, case, base); relabel(case,
    verdict), if given, names the verdicts a differential accepts."""
    def step(seed, base):
        case, verdict, info = attempt(
            make, lambda c, b: run_pair(ref, our, c, b), seed, base)
        if relabel:
            verdict = relabel(case, verdict)
        return case, verdict, info
    explore(prefix, range(first, first + count), step, out_path)


def explore_main(prefix, make, run_pair, default_out, relabel=None):
    """The command line of a differential: REF_DIR OUR_DIR FIRST COUNT
    [OUT.json], run by explore_pairs()."""
    a = sys.argv
    explore_pairs(prefix, make, run_pair, a[1], a[2], int(a[3]), int(a[4]),
                  a[5] if len(a) > 5 else default_out, relabel)


def ref_img(ref_dir, d, *args):
    """The reference's qemu-img with @args in directory @d: (exit status,
    stdout, stderr)."""
    res = subprocess.run([os.path.join(ref_dir, 'qemu-img')] + list(args),
                         cwd=d, capture_output=True, text=True, timeout=60)
    return res.returncode, res.stdout, res.stderr


def settle(d, names):
    """The blocks of the files @names in @d allocated, so that 'disk size'
    counts what the file system holds and not its delayed-allocation
    reservations (they linger after a truncation, for a time that
    varies)."""
    for f in names:
        try:
            fd = os.open(os.path.join(d, f), os.O_RDONLY)
        except OSError:
            continue
        os.fsync(fd)
        os.close(fd)
