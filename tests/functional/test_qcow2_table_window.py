"""Snapshot tables and snapshot L1 tables that run past the end of the
file.  What lies past the end reads as zeroes: the engine reads only what
the file holds (a windowed table reader, L1 tables cut at the end of the
file), and every command must still answer as the reference does:
exit status, output, messages, and for check -r the repaired image."""
import os
import shutil
import struct

import pytest

from conftest import io_args, run


def put(path, off, fmt, *values):
    with open(path, 'r+b') as f:
        f.seek(off)
        f.write(struct.pack(fmt, *values))


def snapshot_table(path):
    with open(path, 'rb') as f:
        f.seek(60)
        return struct.unpack('>IQ', f.read(12))


@pytest.fixture(scope='module')
def base_image(tmp_path_factory, ref_qemu_img, ref_qemu_io):
    """512-byte clusters, some data, two snapshots."""
    path = tmp_path_factory.mktemp('window') / 'base.qcow2'
    assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o',
                'cluster_size=512', str(path), '1M']).rc == 0
    assert run([ref_qemu_io, *io_args(['write -P 7 0 8k']),
                str(path)]).rc == 0
    for name in ('s1', 's2'):
        assert run([ref_qemu_img, 'snapshot', '-c', name, str(path)]).rc == 0
    return path


def table_past_eof(img):
    """300 entries, all past the end of the file (zeroes: v3 entries
    without their required extra data)."""
    end = os.path.getsize(img)
    put(img, 60, '>IQ', 300, (end + 511) // 512 * 512 + 4096)


def table_overrunning(img):
    """The real table, counted as 200 entries: the rest of the file and
    then zeroes."""
    put(img, 60, '>I', 200)


def l1_overrunning(img):
    """Snapshot 1's L1 table grown to the largest size allowed: what
    follows it in the file is read as L1 entries, the rest is zeroes."""
    _, off = snapshot_table(img)
    put(img, off + 8, '>I', 0x400000)


CASES = {
    'table_past_eof': table_past_eof,
    'table_overrunning': table_overrunning,
    'l1_overrunning': l1_overrunning,
}


def outcome(prog, ref_qemu_img, img, args):
    r = run([prog, *args, img], timeout=120)
    after = run([ref_qemu_img, 'check', img])
    return r.rc, r.out, r.err.replace(prog, 'qemu-img'), after.rc, after.out


@pytest.mark.parametrize('args', [['check'], ['check', '-r', 'all'],
                                  ['snapshot', '-l'], ['info']],
                         ids=['check', 'repair', 'list', 'info'])
@pytest.mark.parametrize('case', sorted(CASES))
def test_like_reference(tmp_path, base_image, our_qemu_img, ref_qemu_img,
                        case, args):
    damaged = str(tmp_path / 'd.qcow2')
    shutil.copy(base_image, damaged)
    CASES[case](damaged)
    res = []
    for prog in (our_qemu_img, ref_qemu_img):
        img = str(tmp_path / 'w.qcow2')
        shutil.copy(damaged, img)
        res.append(outcome(prog, ref_qemu_img, img, args))
    assert res[0] == res[1]
