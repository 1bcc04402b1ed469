"""The fault matrix: every blkdebug event the reference defines for qcow2,
injected once and for good (once=on/off), with EIO and ENOSPC, during a
strata-io session that allocates, copies on write from a backing file,
compresses, grows the refcount table, discards, zeroes and resizes, and
during convert.  For every cell:

- the failure is reported (a failed command, a non-zero status), never
  a crash;
- the reference qemu-img check finds no corruption (leaks allowed);
- what was written before the session, and every write acknowledged and
  then covered by a successful flush, reads back (reference qemu-io).

The convert cells also compare the exit status with the reference
qemu-img's; known differences are xfail (strict) with their reason.
test_qcow2_faults compares smaller sessions with the reference in full.
Default: EIO once for every event; STRATA_SLOW=1: the whole matrix."""
import os

import pytest

from conftest import normalize, run

EVENTS = [
    'l1_update', 'l1_grow_alloc_table', 'l1_grow_write_table',
    'l1_grow_activate_table', 'l1_shrink_write_table',
    'l1_shrink_free_l2_clusters', 'l2_load', 'l2_update',
    'l2_update_compressed', 'l2_alloc_cow_read', 'l2_alloc_write',
    'read_aio', 'read_backing_aio', 'read_compressed', 'write_aio',
    'write_compressed', 'cow_read', 'cow_write', 'reftable_load',
    'reftable_grow', 'reftable_update', 'refblock_load', 'refblock_update',
    'refblock_update_part', 'refblock_alloc', 'refblock_alloc_hookup',
    'refblock_alloc_write', 'refblock_alloc_write_blocks',
    'refblock_alloc_write_table', 'refblock_alloc_switch_table',
    'cluster_alloc', 'cluster_alloc_bytes', 'cluster_alloc_space',
    'cluster_free', 'flush_to_os', 'flush_to_disk',
]

# (command, (offset, length, byte) it writes or None)
SESSION = [
    # (the first half is discarded below: only the second is checked)
    ('write -P 0x31 8M 64k', ((8 << 20) + (32 << 10), 32 << 10, 0x31)),
    ('flush', None),
    # a partial cluster over the backing file: copy on write
    ('write -P 0x32 1000 3000', None), ('flush', None),
    ('write -c -P 0x33 16M 512', (16 << 20, 512, 0x33)), ('flush', None),
    ('read -P 0x33 16M 512', None),
    # 3 MiB of 512-byte clusters with 64-bit refcounts: new refcount
    # blocks and a larger refcount table
    ('write -P 0x34 40M 3M', (40 << 20, 3 << 20, 0x34)), ('flush', None),
    ('discard 8M 32k', None), ('flush', None),
    ('write -z 4M 4k', None), ('flush', None),
    ('read -P 0x11 64k 512', None),
    ('truncate 160M', None), ('flush', None),
    ('truncate 100M', None), ('flush', None),
]


def config(event, once, errno):
    return (f'[inject-error]\nevent = "{event}"\nerrno = "{errno}"\n'
            f'once = "{"on" if once else "off"}"\n')


def prepare(d, ref_qemu_img, ref_qemu_io, cfg):
    """base.qcow2 full of 0x11 (first 2M); img.qcow2 over it, 512-byte
    clusters, 64-bit refcounts, 0x21 at 4M..4M+64k flushed; the blkdebug
    configuration."""
    for argv in (
            [ref_qemu_img, 'create', '-q', '-f', 'qcow2', 'base.qcow2', '64M'],
            [ref_qemu_io, '-c', 'write -P 0x11 0 2M', 'base.qcow2'],
            [ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2',
             '-F', 'qcow2', '-o', 'cluster_size=512,refcount_bits=64',
             'img.qcow2', '64M'],
            [ref_qemu_io, '-c', 'write -P 0x21 4M 64k', 'img.qcow2']):
        r = run(argv, cwd=d)
        assert r.rc == 0, r
    with open(os.path.join(d, 'blkdebug.conf'), 'w') as f:
        f.write(cfg)


def io_session(prog, d):
    argv = [prog]
    for cmd, _ in SESSION:
        argv += ['-c', cmd]
    return run(argv + ['blkdebug:blkdebug.conf:img.qcow2'], cwd=d)


def durable_writes(out):
    """Writes of SESSION reported done and followed by a flush that did
    not fail (strata-io prints nothing for a flush that worked)."""
    lines = [x for x in out.splitlines()
             if x.startswith(('wrote ', 'write failed', 'flush failed'))]
    durable, pending = [], []
    for cmd, effect in SESSION:
        if cmd.startswith('write'):
            ok = bool(lines) and lines.pop(0).startswith('wrote ')
            if ok and effect:
                pending.append(effect)
        elif cmd == 'flush':
            if lines and lines[0].startswith('flush failed'):
                lines.pop(0)
                pending = []
            else:
                durable += pending
                pending = []
    return durable


def check_after(d, out, ref_qemu_img, ref_qemu_io):
    r = run([ref_qemu_img, 'check', 'img.qcow2'], cwd=d)
    assert r.rc in (0, 3), f'corrupted by a failed request:\n{r}'
    # (the session zeroes the first 4k of the 0x21 area)
    reads = [f'read -P 0x21 {(4 << 20) + 4096} 60k', 'read -P 0x11 64k 512']
    for off, length, byte in durable_writes(out):
        if off < (100 << 20):
            reads.append(f'read -P {byte} {off} {length}')
    argv = [ref_qemu_io, '-r']
    for c in reads:
        argv += ['-c', c]
    r = run(argv + ['img.qcow2'], cwd=d)
    assert r.rc == 0 and 'verification failed' not in r.out, \
        f'acknowledged data lost:\n{out}\n{r}'


SLOW = os.environ.get('STRATA_SLOW') == '1'
slow = pytest.mark.skipif(not SLOW, reason='full matrix: set STRATA_SLOW=1')


def cell(event, once, errno):
    """EIO once always; the three other cells of each event with
    STRATA_SLOW=1."""
    marks = [] if (once, errno) == (True, 5) else [pytest.mark.slow, slow]
    return pytest.param(event, once, errno, marks=marks,
                        id=f'{event}-{"once" if once else "always"}-{errno}')


CASES = [cell(e, once, errno) for e in EVENTS for once in (True, False)
         for errno in (5, 28)]


@pytest.mark.parametrize('event,once,errno', CASES)
def test_fault_invariants(event, once, errno, tmp_path, our_qemu_io,
                          ref_qemu_img, ref_qemu_io):
    d = str(tmp_path)
    prepare(d, ref_qemu_img, ref_qemu_io, config(event, once, errno))
    r = io_session(our_qemu_io, d)
    assert r.rc in (0, 1), r
    assert 'Aborted' not in r.err and 'Segmentation' not in r.err, r
    if r.rc == 1:       # the failure is said with its cause
        text = r.out + r.err
        assert ('Input/output error' in text or
                'No space left on device' in text), r
    check_after(d, r.out, ref_qemu_img, ref_qemu_io)


# ---- convert ----

def convert(prog, d, extra=()):
    return run([prog, 'convert', '-n', '-t', 'writeback'] + list(extra) +
               ['--target-image-opts', 'src.raw',
                'driver=qcow2,file.driver=blkdebug,file.config=blkdebug.conf,'
                'file.image.filename=out.qcow2'], cwd=d)


CONVERT_EVENTS = ['write_aio', 'write_compressed', 'l2_update',
                  'l2_update_compressed', 'l2_alloc_write', 'l1_update',
                  'refblock_alloc', 'refblock_update_part',
                  'refblock_alloc_write', 'refblock_alloc_hookup',
                  'refblock_alloc_write_blocks', 'refblock_alloc_switch_table',
                  'cluster_alloc', 'cluster_alloc_bytes', 'flush_to_disk',
                  'flush_to_os']


CONVERT_KNOWN = {
    'flush_to_disk': 'a failed final flush fails our convert (exit 1); the '
                     'reference ignores it (exit 0)',
    'flush_to_os': 'a failed final flush fails our convert (exit 1); the '
                   'reference ignores it (exit 0)',
}


def convert_cell(event, once, errno, compressed):
    marks = [] if once else [pytest.mark.slow, slow]
    if event in CONVERT_KNOWN and (compressed or event.startswith('flush')):
        marks.append(pytest.mark.xfail(reason=CONVERT_KNOWN[event], strict=True))
    return pytest.param(event, once, errno, compressed, marks=marks,
                        id=f'{event}-{"once" if once else "always"}-{errno}-'
                           f'{"compressed" if compressed else "plain"}')


@pytest.mark.parametrize('event,once,errno,compressed', [
    convert_cell(e, once, errno, c) for e in CONVERT_EVENTS
    for once, errno in ((True, 5), (False, 28)) for c in (False, True)])
def test_convert_fault(event, once, errno, compressed, tmp_path, strata_img,
                       ref_qemu_img):
    """A failed convert says why and exits 1, the target stays
    consistent (a finished one equals the source); the exit status is
    the reference's (the xfail cells say where it is not)."""
    results = {}
    for side, prog in (('ref', ref_qemu_img), ('ours', strata_img)):
        d = tmp_path / side
        d.mkdir()
        with open(d / 'src.raw', 'wb') as f:
            for i in range(96):
                f.write(bytes([i + 1]) * 65536 if i % 3 else bytes(65536))
        with open(d / 'blkdebug.conf', 'w') as f:
            f.write(config(event, once, errno))
        r = run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                 'cluster_size=512', 'out.qcow2', '6M'], cwd=d)
        assert r.rc == 0, r
        r = convert(prog, str(d), ['-c'] if compressed else [])
        results[side] = r.rc
        if side == 'ours':
            assert r.rc in (0, 1), r
            if r.rc == 1:
                assert 'error' in r.err.lower() or 'No space' in r.err, r
            c = run([ref_qemu_img, 'check', 'out.qcow2'], cwd=d)
            assert c.rc in (0, 3), f'convert left a corrupted target:\n{c}'
            if r.rc == 0:
                c = run([ref_qemu_img, 'compare', 'src.raw', 'out.qcow2'], cwd=d)
                assert c.rc == 0, c
    assert results['ours'] == results['ref']
