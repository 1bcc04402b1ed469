"""blkdebug events of the generic write path, and padding of full-size
vectored requests, against the reference qemu-io.

The core raises, on the node a write goes to: pwritev (or pwritev_zero)
and pwritev_done around every write that reaches the driver, and
pwritev_rmw_head/_after_head/_tail/_after_tail around the padding reads
of a read-modify-write.  qemu-iotests 077 suspends requests on them; an
event that never comes makes wait_break hang, one that comes when it
should not makes aio_flush hang, so every script here runs under a
timeout.

Padding a request of IOV_MAX (1024) elements to the node's alignment must
not hand more than IOV_MAX elements to preadv/pwritev (qemu-iotests
iov-padding).

Each case runs on two identical images, once per program; stdout, stderr,
exit status and the image's bytes must match."""
import os
import re
import subprocess

import pytest

from conftest import normalize, run

SIZE = 1024 * 1024
TIMEOUT = 5
# a blkdebug node with 4 KiB request alignment straight over the file
TOP = ['--image-opts',
       'driver=blkdebug,align=4096,image.driver=file,image.filename=t.raw']
# qemu-iotests 077's graph: raw over blkdebug over file, file.align=4k
OPEN_077 = 'open -o driver=raw,file.align=4k blkdebug::t.raw\n'

# "wrote ..." of aio_write -z reports a duration from an unset start
# time, in the reference as here: "0:30:11.53 (0.28 bytes/sec and ...)"
ODD_TIMING = re.compile(r'^(.*, \d+ ops); [0-9:.]+ \([0-9.]+ '
                        r'(?:[KMGTPE]iB|bytes)/sec and [0-9.]+ ops/sec\)$',
                        re.M)


def norm(text):
    text = text.replace('qemu-io> ', 'qemu-io> \n')
    return normalize(ODD_TIMING.sub(r'\1; TIME', text))


def init_image(path):
    """A patterned image, so that the padding read matters."""
    with open(path, 'wb') as f:
        f.write(bytes(range(256)) * (SIZE // 256))


def run_one(prog, workdir, args, script=None):
    path = os.path.join(workdir, 't.raw')
    init_image(path)
    try:
        res = subprocess.run([prog] + args, cwd=workdir, input=script,
                             capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return ('hung', None, None, None)
    with open(path, 'rb') as f:
        data = f.read()
    return (norm(res.stdout), res.stderr, res.returncode, data)


def compare(tmp_path, ours, ref, args, script=None):
    results = []
    for name, prog in (('ref', ref), ('ours', ours)):
        d = tmp_path / name
        d.mkdir()
        results.append(run_one(prog, str(d), args, script))
    ref_res, our_res = results
    assert ref_res[0] != 'hung', 'the reference hung: wrong expectation'
    assert our_res[:3] == ref_res[:3]
    assert our_res[3] == ref_res[3], 'image contents differ'
    return our_res


def break_script(event, cmd, fires):
    """Suspend @cmd on @event.  @fires: the reference raises it (then
    wait_break returns); otherwise aio_flush returns and the breakpoint is
    still there to remove."""
    if fires:
        return f'break {event} A\n{cmd}\nwait_break A\nresume A\naio_flush\n'
    return f'break {event} A\n{cmd}\naio_flush\nremove_break A\n'


RMW_EVENTS = ('pwritev_rmw_head', 'pwritev_rmw_after_head',
              'pwritev_rmw_tail', 'pwritev_rmw_after_tail')

# (command, events the reference raises on the blkdebug node besides
# pwritev_done, which every write raises)
WRITE_CASES = [
    # one block, head and tail padding: one read, both event pairs
    ('aio_write -P 10 0x1200 0x200', RMW_EVENTS + ('pwritev',)),
    # two blocks, head and tail: still one (merged) read
    ('aio_write -P 10 0x1200 0x1000', RMW_EVENTS + ('pwritev',)),
    # three blocks: separate head and tail reads
    ('aio_write -P 10 0x1200 0x2000', RMW_EVENTS + ('pwritev',)),
    # tail padding only, and head padding only
    ('aio_write -P 10 0x1000 0x200',
     ('pwritev_rmw_tail', 'pwritev_rmw_after_tail', 'pwritev')),
    ('aio_write -P 10 0x1200 0xe00',
     ('pwritev_rmw_head', 'pwritev_rmw_after_head', 'pwritev')),
    # aligned: no padding
    ('aio_write -P 10 0x1000 0x1000', ('pwritev',)),
    # zero writes: padding blocks go as data, the middle as zeroes
    ('aio_write -z 0x1200 0x200', RMW_EVENTS + ('pwritev',)),
    ('aio_write -z 0x1200 0x3000', RMW_EVENTS + ('pwritev', 'pwritev_zero')),
    ('aio_write -z 0x1000 0x2000', ('pwritev_zero',)),
]
ALL_EVENTS = RMW_EVENTS + ('pwritev', 'pwritev_zero', 'pwritev_done',
                           'read_aio')


def write_params():
    for cmd, fired in WRITE_CASES:
        for ev in ALL_EVENTS:
            fires = ev in fired or ev == 'pwritev_done'
            yield pytest.param(cmd, ev, fires, id=f'{cmd[10:]}-{ev}')


@pytest.mark.parametrize('cmd,event,fires', write_params())
def test_write_path_event(tmp_path, our_qemu_io, ref_qemu_io, cmd, event,
                          fires):
    compare(tmp_path, our_qemu_io, ref_qemu_io, TOP,
            break_script(event, cmd, fires))


def test_077_graph_rmw_event_reaches_blkdebug(tmp_path, our_qemu_io,
                                            ref_qemu_io):
    """The reproducer of qemu-iotests 077's hang."""
    script = OPEN_077 + break_script('pwritev_rmw_head',
                                     'aio_write -P 10 0x1200 0x200', True)
    compare(tmp_path, our_qemu_io, ref_qemu_io, [], script)


def test_077_graph_rmw_read_fires_no_read_aio(tmp_path, our_qemu_io,
                                              ref_qemu_io):
    script = OPEN_077 + break_script('read_aio', 'aio_write -P 10 0x1200 0x200',
                                     False)
    compare(tmp_path, our_qemu_io, ref_qemu_io, [], script)


# 077's "overlapping multiple requests": A waits at a breakpoint, C (RMW
# over A's block and the next) waits for A, B (RMW in the next block)
# must not wait for C, which is waiting itself.  077 sleeps 100 ms for A
# to finish before B resumes; 500 here, so that a loaded machine (ASan,
# a parallel build) does not print A's completion after "Resuming B".
OVERLAP_077 = """\
break pwritev_rmw_after_tail A
aio_write -P 10 0xa000 0x200
wait_break A
aio_write -P 11 0xa800 0x1000
break pwritev_rmw_after_head B
aio_write -P 10 0xbe00 0x200
wait_break B
resume A
sleep 500
resume B
aio_flush
"""


def test_rmw_request_does_not_wait_for_a_waiting_one(tmp_path, our_qemu_io,
                                                     ref_qemu_io):
    compare(tmp_path, our_qemu_io, ref_qemu_io, TOP, OVERLAP_077)


def test_read_waits_for_overlapping_rmw(tmp_path, our_qemu_io, ref_qemu_io):
    script = ('break pwritev_rmw_after_head A\n'
              'aio_write -P 10 0x1200 0x200\nwait_break A\n'
              'aio_read -P 10 0x1200 0x200\nsleep 50\nresume A\naio_flush\n')
    compare(tmp_path, our_qemu_io, ref_qemu_io, TOP, script)


@pytest.mark.parametrize('event,fires', [('pwritev_zero', True),
                                         ('pwritev', False)])
def test_detect_zeroes_sees_the_padded_request(tmp_path, our_qemu_io,
                                               ref_qemu_io, event, fires):
    """detect-zeroes looks at the padded request: zeroes written into
    zeroes become one zero write of the whole aligned range."""
    args = ['--image-opts', 'driver=blkdebug,align=4096,detect-zeroes=on,'
            'image.driver=file,image.filename=t.raw']
    script = 'write -z 0 0x10000\n' + break_script(
        event, 'aio_write -P 0 0x1200 0x200', fires)
    compare(tmp_path, our_qemu_io, ref_qemu_io, args, script)


@pytest.mark.parametrize('event,cmds', [
    ('pwritev', ['write -P 1 0 4096']),
    ('pwritev', ['write -P 1 512 512']),
    ('pwritev_zero', ['write -z 0 4096']),
    ('pwritev_done', ['write -P 1 0 4096', 'write -P 2 0 4096']),
    ('pwritev_rmw_after_head', ['write -P 1 512 512', 'write -P 2 0 512']),
], ids=['pwritev', 'pwritev-rmw', 'pwritev_zero', 'pwritev_done',
        'rmw_after_head'])
def test_inject_error_on_write_event(tmp_path, our_qemu_io, ref_qemu_io,
                                     event, cmds):
    opts = ('driver=blkdebug,align=4096,inject-error.0.event=' + event +
            ',inject-error.0.errno=5,image.driver=file,image.filename=t.raw')
    args = ['--image-opts', opts]
    for c in cmds:
        args += ['-c', c]
    compare(tmp_path, our_qemu_io, ref_qemu_io, args)


def test_one_pwritev_event_per_split_write(tmp_path, our_qemu_io,
                                           ref_qemu_io):
    """A write split by max-transfer raises pwritev once."""
    args = ['--image-opts', 'driver=blkdebug,max-transfer=4096,'
            'image.driver=file,image.filename=t.raw']
    script = (break_script('pwritev', 'aio_write -P 3 0 64k', True) +
              break_script('pwritev', 'aio_write -P 4 0 64k', True))
    compare(tmp_path, our_qemu_io, ref_qemu_io, args, script)


@pytest.mark.parametrize('event', ['read_backing_aio', 'read_compressed',
                                   'write_compressed', 'vmstate_load',
                                   'vmstate_save', 'cow_read', 'cow_write',
                                   'pwritev_zero', 'no_such_event'])
def test_event_names(tmp_path, our_qemu_io, ref_qemu_io, event):
    script = f'break {event} A\nremove_break A\n'
    compare(tmp_path, our_qemu_io, ref_qemu_io, TOP, script)


def vector(start, last):
    """writev/readv arguments: 1023 512-byte elements and one of @last."""
    return f'{start} ' + ' '.join(['512'] * 1023) + f' {last}'


@pytest.mark.parametrize('aio', [[], ['--aio', 'threads']], ids=['', 'threads'])
@pytest.mark.parametrize('start,last', [(4096, 512), (4096, 4096),
                                        (512, 512), (512, 4096), (0, 4096),
                                        (1000, 700)])
def test_iov_max_request_with_padding(tmp_path, our_qemu_io, ref_qemu_io,
                                      start, last, aio):
    vec = vector(start, last)
    length = 1023 * 512 + last
    args = aio + TOP + ['-c', f'writev -P 2 {vec}',
                        '-c', f'readv -P 2 {vec}',
                        '-c', f'read -P 2 {start} {length}']
    out = compare(tmp_path, our_qemu_io, ref_qemu_io, args)
    assert 'failed' not in out[0] + out[1]


@pytest.mark.parametrize('opts', ['compat=1.1', 'extended_l2=on'])
@pytest.mark.parametrize('cmd', ['write -z -u 2M 2M', 'write -z 2M 2M',
                                 'write -z 2M 32k'])
def test_zero_write_on_zeroes_leaves_l2_clean(tmp_path, strata_io,
                                              ref_qemu_img, ref_qemu_io,
                                              opts, cmd):
    # qemu-iotests 179: zeroing what already reads as zero clusters does
    # not rewrite the L2 table (an error injected on l2_update stays
    # unseen, as with the reference).
    img = str(tmp_path / 'z.qcow2')
    conf = tmp_path / 'b.conf'
    conf.write_text('[inject-error]\nevent = "l2_update"\nerrno = "5"\n'
                    'immediately = "on"\nonce = "off"\n')
    outs = []
    for tool in (ref_qemu_io, strata_io):
        assert run([ref_qemu_img, 'create', '-q', '-f', 'qcow2', '-o', opts,
                    img, '8M']).rc == 0
        assert run([ref_qemu_io, '-c', 'write -z 2M 2M', img]).rc == 0
        r = run([tool, '-c', cmd, f'blkdebug:{conf}:{img}'])
        outs.append((r.rc, 'failed' in r.out, r.err.count('Failed')))
    assert outs[1] == outs[0]
