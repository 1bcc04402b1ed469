"""Node names in strata-io, differential against the reference qemu-io.

qemu-io shows a node's name where probing guessed raw ("Image format was
not specified for '<name of the file node>'"): a plain filename where one
opens the same node, else "json:{...}" of the options that change what it
reads.  Its info command follows the reference's driver-info rules (raw
over a protocol without info fails; empty format-specific data prints
nothing)."""
import pytest

from conftest import normalize, run
from test_img_info import files

FILE = '{"driver":"file","filename":"s.raw"}'
TG = ['--object', 'throttle-group,id=tg0,x-bps-total=100000000']


def cmds(*cs):
    argv = []
    for c in cs:
        argv += ['-c', c]
    return argv


def run_io(prog, d, args):
    files(str(d))
    r = run([prog] + args, cwd=str(d))
    return r.rc, normalize(r.out), r.err.replace(prog, 'qemu-io')


def diff_io(our, ref, tmp_path, args):
    got = []
    for name, prog in (('ref', ref), ('our', our)):
        d = tmp_path / name
        d.mkdir()
        got.append(run_io(prog, d, args))
    assert got[1] == got[0]


WRITE = cmds('write 0 512')

CASES = [
    # probed raw: the warning names the protocol node
    WRITE + ['s.raw'],
    WRITE + ['file:s.raw'],
    WRITE + ['null-co://'],
    WRITE + ['json:{"file":{"driver":"null-co","size":4096}}'],
    WRITE + ['json:{"file":{"driver":"null-co","read-zeroes":true}}'],
    WRITE + ['json:{"file":{"driver":"null-co","latency-ns":10}}'],
    WRITE + ['json:{"file":%s}' % FILE],
    WRITE + ['blkdebug::s.raw'],
    WRITE + ['blkdebug:bd.conf:s.raw'],
    WRITE + ['--image-opts', 'file.driver=null-co'],
    WRITE + ['--image-opts', 'file.driver=null-aio,file.size=1M'],
    WRITE + ['--image-opts', 'file.driver=file,file.filename=s.raw,'
             'file.aio=threads,file.locking=off'],
    WRITE + ['--image-opts',
             'file.driver=blkdebug,file.image.filename=s.raw,file.align=512'],
    WRITE + ['--image-opts',
             'file.driver=blkdebug,file.config=bd.conf,file.image.filename=s.raw'],
    WRITE + ['--image-opts', 'file.driver=blkdebug,file.image.driver=null-co,'
             'file.image.read-zeroes=on'],
    WRITE + ['--image-opts', 'file.driver=raw,file.offset=512,'
             'file.file.driver=file,file.file.filename=s.raw'],
    WRITE + ['--image-opts', 'file.driver=raw,file.file.filename=s.raw'],
    WRITE + ['--image-opts', 'file.driver=preallocate,file.file.filename=s.raw'],
    WRITE + ['json:{"file":{"driver":"blkdebug","inject-error":[{"event":'
             '"read_aio","errno":5}],"image":%s}}' % FILE],
    TG + WRITE + ['--image-opts', 'file.driver=throttle,'
                  'file.throttle-group=tg0,file.file.filename=s.raw'],
    # read-only opens do not warn; reopening read-write does not either
    cmds('write 0 1') + ['-r', 'json:{"file":{"driver":"null-co","size":4096}}'],
    cmds('reopen -w', 'write 0 1') + [
        '-r', 'json:{"file":{"driver":"null-co","size":4096}}'],
    # the open command
    cmds('open json:{"file":{"driver":"null-co","size":4096}}', 'write 0 512'),
    cmds('open -r json:{"file":{"driver":"null-co","size":4096}}', 'read 0 1'),
    cmds('open -o file.driver=null-co,file.read-zeroes=on', 'write 0 512'),
    cmds('open -o driver=raw,file.driver=null-co', 'info', 'close',
         'open -o file.driver=null-co,file.size=4k', 'write 0 1'),
    cmds('open json:{"driver":"raw","file":{"driver":"blkdebug","align":4096,'
         '"image":{"driver":"null-co"}}}', 'write 0 4096', 'info'),
    cmds('open -o file.driver=blkdebug,file.align=4096,'
         'file.image.driver=null-co', 'write 0 4096'),
    # info: driver info comes from the protocol below raw and filters
    cmds('info') + ['-f', 'raw', 's.raw'],
    cmds('info') + ['-f', 'file', 's.raw'],
    cmds('info') + ['null-co://'],
    cmds('info') + ['-f', 'null-co', 'null-co://'],
    cmds('info') + ['json:{"driver":"null-co","size":1024}'],
    cmds('info') + ['json:{"driver":"raw","offset":512,"file":'
                    '{"driver":"null-co","size":4096}}'],
    cmds('info') + ['--image-opts', 'driver=raw,file.driver=raw,'
                    'file.file.driver=null-co'],
    cmds('info') + ['blkdebug::s.raw'],
    cmds('info') + ['-f', 'blkdebug', 'blkdebug::s.raw'],
    cmds('info') + ['--image-opts',
                    'driver=blkdebug,align=4096,image.driver=null-co'],
    cmds('info') + ['--image-opts',
                    'driver=raw,file.driver=blkdebug,file.image.driver=null-co'],
    cmds('info') + ['--image-opts', 'driver=preallocate,file.filename=s.raw'],
    TG + cmds('info') + ['--image-opts', 'driver=throttle,'
                         'throttle-group=tg0,file.filename=s.raw'],
]


def case_id(args):
    return ' '.join(a if len(a) < 80 else a[:50] + '...' for a in args)


@pytest.mark.parametrize('args', CASES, ids=case_id)
def test_io_names(our_qemu_io, ref_qemu_io, tmp_path, args):
    diff_io(our_qemu_io, ref_qemu_io, tmp_path, args)
