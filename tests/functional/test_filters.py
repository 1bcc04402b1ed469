"""Filters driven from strata-io: throttle limits hold, blkdebug errors
surface as the reference's messages and exit codes."""
import json
import os
import time

import pytest

from conftest import io_args, make_image, normalize, run

MiB = 1 << 20


def blkdebug_json(img, rules, extra=None):
    d = {'driver': 'raw',
         'file': {'driver': 'blkdebug', 'inject-error': rules,
                  'image': {'driver': 'file', 'filename': img}}}
    if extra:
        d['file'].update(extra)
    return 'json:' + json.dumps(d)


BLKDEBUG_CASES = [
    ('read-eio', [{'event': 'read_aio', 'errno': 5}],
     ['read 0 512', 'write 0 512', 'read 4k 4k']),
    ('write-enospc-once', [{'event': 'write_aio', 'errno': 28, 'once': True}],
     ['write 0 512', 'write 512 512', 'aio_write 0 512', 'aio_flush']),
    ('flush-error', [{'event': 'flush_to_disk', 'errno': 5}],
     ['write 0 512', 'flush']),
    ('sector-filter', [{'event': 'read_aio', 'errno': 5, 'sector': 8}],
     ['read 0 4k', 'read 0 512', 'read 8k 512']),
    ('immediately', [{'event': 'none', 'errno': 5, 'immediately': True,
                      'iotype': 'write'}],
     ['read 0 512', 'write 0 512']),
    ('discard', [{'event': 'none', 'errno': 95, 'immediately': True,
                  'iotype': 'discard'}],
     ['discard 0 64k', 'read 0 512']),
    ('bad-option', [{'event': 'read_aio', 'errno': 5, 'bogus': 1}], ['read 0 512']),
    ('bad-event', [{'event': 'no_such_event', 'errno': 5}], ['read 0 512']),
]


@pytest.mark.parametrize('case', BLKDEBUG_CASES, ids=[c[0] for c in BLKDEBUG_CASES])
def test_blkdebug_same_as_reference(case, tmp_path, our_qemu_io, ref_qemu_io):
    name, rules, cmds = case
    results = []
    for prog in (ref_qemu_io, our_qemu_io):
        d = tmp_path / ('ref' if prog == ref_qemu_io else 'our')
        d.mkdir()
        make_image(d / 'f.raw', 1 * MiB)
        res = run([prog] + io_args(cmds) + [blkdebug_json('f.raw', rules)], cwd=d)
        results.append(res)
    ref, ours = results
    assert normalize(ours.out) == normalize(ref.out), ours
    assert ours.err == ref.err, ours
    assert ours.rc == ref.rc, ours


def test_blkdebug_prefix_syntax(tmp_path, our_qemu_io, ref_qemu_io):
    img = make_image(tmp_path / 'f.raw', 1 * MiB)
    ours = run([our_qemu_io, '-f', 'raw', '-c', 'read 0 512', f'blkdebug::{img}'])
    ref = run([ref_qemu_io, '-f', 'raw', '-c', 'read 0 512', f'blkdebug::{img}'])
    assert (ours.rc, normalize(ours.out), ours.err) == \
        (ref.rc, normalize(ref.out), ref.err)


def throttled(strata_io, img, limits, cmds):
    opts = ','.join(f'x-{k}={v}' for k, v in limits.items())
    t0 = time.monotonic()
    res = run([strata_io, '--object', f'throttle-group,id=tg0,{opts}',
               '--image-opts'] + io_args(cmds) +
              [f'driver=throttle,throttle-group=tg0,file.driver=raw,'
               f'file.file.filename={img}'])
    return res, time.monotonic() - t0


def test_throttle_bps_write_limit_holds(tmp_path, strata_io):
    img = make_image(tmp_path / 't.raw', 8 * MiB)
    cmds = [f'write {i}M 1M' for i in range(4)]
    res, took = throttled(strata_io, img, {'bps-write': MiB}, cmds)
    assert res.rc == 0, res
    # 4 MiB at 1 MiB/s: the first second's worth may pass at once
    assert took >= 2.5, took
    assert took < 20


def test_throttle_does_not_limit_other_direction(tmp_path, strata_io):
    img = make_image(tmp_path / 't.raw', 8 * MiB)
    cmds = [f'read {i}M 1M' for i in range(8)]
    res, took = throttled(strata_io, img, {'bps-write': 64 * 1024}, cmds)
    assert res.rc == 0, res
    assert took < 2.0, took


def test_throttle_iops_limit_holds(tmp_path, strata_io):
    img = make_image(tmp_path / 't.raw', 1 * MiB)
    cmds = [f'aio_read {i * 4}k 4k' for i in range(30)] + ['aio_flush']
    res, took = throttled(strata_io, img, {'iops-total': 10}, cmds)
    assert res.rc == 0, res
    assert took >= 1.5, took


def test_throttle_bad_config_is_rejected(tmp_path, our_qemu_io, ref_qemu_io):
    img = make_image(tmp_path / 't.raw', 1 * MiB)
    out = []
    for prog in (ref_qemu_io, our_qemu_io):
        out.append(run([prog, '--object',
                        'throttle-group,id=tg0,x-bps-total=100,x-bps-read=10',
                        '--image-opts', '-c', 'read 0 512',
                        f'driver=throttle,throttle-group=tg0,file.driver=raw,'
                        f'file.file.filename={img}']))
    assert out[1].rc == out[0].rc != 0
    assert out[1].err == out[0].err
