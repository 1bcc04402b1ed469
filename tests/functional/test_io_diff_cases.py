"""strata-io against the reference qemu-io: option letters, number parsing,
stdin mode, argument-count and closed-device errors, and seeded random
command sequences.

Each case runs on two identical copies of a small raw image (or another
target), once per program; stdout, stderr (timing figures, node names and
prompts normalised), exit status and the image's bytes must match.  At most
one aio request is in flight at a time: the reference prints concurrent
completions in a random order."""
import os
import random
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import normalize

SIZE = 64 * 1024
NULL_CO = 'json:{"driver":"null-co","size":1048576}'
BLKDEBUG = 'blkdebug::t.raw'

# aio_write -z reports a duration from an unset start time, in the
# reference as here: "0:30:11.53 (0.282635 bytes/sec and 0.0006 ops/sec)"
ODD_TIMING = re.compile(r'^(.*, \d+ ops); [0-9:.]+ \([0-9.]+ '
                        r'(?:[KMGTPE]iB|bytes)/sec and [0-9.]+ ops/sec\)$', re.M)


def norm(text):
    text = text.replace('qemu-io> ', 'qemu-io> \n')
    text = ODD_TIMING.sub(r'\1; TIME', text)
    return re.sub(r'#block\d+', '#blockN', normalize(text))


def image_bytes(seed):
    r = random.Random(seed)
    head = bytes(r.randrange(256) for _ in range(16)) * 1024
    return [(0, head), (32768, b'\x42' * 4096)]


def run_one(prog, workdir, chunks, opts, cmds, stdin, target):
    path = os.path.join(workdir, 't.raw')
    with open(path, 'wb') as f:
        f.truncate(SIZE)
        for off, data in chunks:
            f.seek(off)
            f.write(data)
    argv = [prog] + opts
    for c in cmds:
        argv += ['-c', c]
    if target:
        argv.append(target)
    res = subprocess.run(argv, cwd=workdir, input=stdin, capture_output=True,
                         timeout=60)
    out = res.stdout.decode(errors='replace')
    err = res.stderr.decode(errors='replace')
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        data = f.read() if size < (64 << 20) else size
    return norm(out), norm(err), res.returncode, data


def compare(our, ref, cmds, opts=('-f', 'raw'), stdin=None,
            target='t.raw', chunks=None):
    chunks = image_bytes(0) if chunks is None else chunks
    got = []
    for prog in (ref, our):
        d = tempfile.mkdtemp(prefix='strata-diff-')
        try:
            got.append(run_one(prog, d, chunks, list(opts), cmds, stdin,
                               target))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    exp, act = got
    ctx = f'cmds={cmds!r} stdin={stdin!r}'
    assert act[0] == exp[0], ctx
    assert act[1] == exp[1], ctx
    assert act[2] == exp[2], ctx
    assert act[3] == exp[3], ctx


# ---- table of single-command-line cases (each runs alone) ----

NUMBERS = ['0', '512', '0x200', '0X200', '0x', '010', '1k', '1K', '1m', '1M',
           '1g', '1t', '1p', '1e', '8E', '16E', '1b', '1B', '1kb', '1.5k',
           '1.5', '.5k', '1.k', '1e3', '-1', '+1', ' 1', '1kk', 'x', '',
           '9223372036854775807', '9223372036854775808', '0xffffffffffffffff',
           '0x1.8k', '0x10k', '1.5b']

NUMBER_CMDS = [t.format(n) for n in NUMBERS for t in
               ('read 0 {}', 'read {} 1', 'alloc {} 1', 'write -P {} 0 1',
                'read -P 0 -s {} 0 16', 'writev 0 {}')]

OPTION_CMDS = [
    'read -a 0 512', 'read -b 0 512', 'read -b 0 1', 'read -r 0 512',
    'read -p 0 512', 'read -z 0 512', 'read -s 10 0 512', 'read -l 10 0 512',
    'read -P 0 -s 600 0 512', 'read -P 0 -l 600 0 512',
    'read -P 0 -s 500 -l 20 0 512', 'read -P 0 -l 0 0 512', 'read -v -q 0 32',
    'read -C -q 0 512', 'read -C -v 0 16', 'read -P 0x100 0 1',
    'read -P -1 0 1', 'read -P a 0 1', 'read 0 0', 'read 64k 0', 'read 64k 1',
    'read 0 2G', 'read 0 2147483136', 'read 0 2 3', 'read 0', 'read',
    'read -v 1 33', 'read -v 15 1', 'read -v 0 0', 'read -v 65530 6',
    'readv 0', 'readv 0 0', 'readv 0 1 0', 'readv -v 3 5 7 9',
    'readv -C 0 512 512', 'readv 64k 1', 'readv 0 1G 1G 1G', 'readv -s 1 0 1',
    'write -b 0 512', 'write -c 0 512', 'write -n 0 512', 'write -z -P 1 0 512',
    'write -z -f 0 512', 'write -u 0 512', 'write -z -u 0 512',
    'write -n -P 1 0 512', 'write -c -P 5 0 64k', 'write -c 0 1k',
    'write -s nosuch 0 512', 'write -s t.raw 100 5000', 'write -s t.raw -P 1 0 1',
    'write -P 1 -z 0 512', 'write -z 0 0', 'write 0 0', 'write 64k 1',
    'write 63k 2k', 'write 0 2G', 'write 0 3G', 'write -z 0 3G',
    'write -n -z 0 3G', 'write -b -z 0 512', 'write -b 1 512',
    'writev 0 0', 'writev -P 7 1 2 3 4', 'writev -f 0 512', 'writev -z 0 512',
    'writev 64k 1', 'alloc', 'alloc 0 0', 'alloc 64k', 'alloc 0 128k',
    'alloc 0 1 2', 'map x', 'discard', 'discard 0 0', 'discard -q 0 512',
    'discard -C 0 512', 'discard 64k 1', 'discard -z 0 1',
    'truncate 1M 2', 'truncate -m full', 'truncate -mfull', 'truncate -- -m',
    'truncate -m full x', 'truncate -m full 16E', 'truncate -m full -5',
    'truncate 2M -m off', 'truncate -m bogus 2M', 'truncate -m',
    'truncate -m metadata 1M', 'length 1', 'sleep x', 'sleep -1', 'sleep 1k',
    'sigraise x', 'sigraise 0', 'sigraise 7', 'sigraise 10', 'sigraise 13',
    'sigraise 14', 'sigraise 29', 'sigraise 65', 'help read x',
    'zone_report 0 4G', 'zone_report 0 4294967296', 'zone_report 0 1',
    'zone_open 65536 1', 'zone_open 65536 0', 'zone_close 0 65537',
    'zone_finish 70000 1', 'zone_reset 65535 4096', 'zone_reset 0 64k',
    'zone_append 70000 1', 'zone_open -1 1',
]

AIO_CMDS = [
    'aio_read -v 3 17', 'aio_read -q 0 512', 'aio_read -C 0 512',
    'aio_read -i 0 512', 'aio_read 0 1 2 3', 'aio_read 64k 1', 'aio_read 3G 1',
    'aio_read 0 0', 'aio_read -P 0x100 0 1', 'aio_read 0 2G',
    'aio_write -P 5 0 512', 'aio_write -z 0 512', 'aio_write -z -u 0 512',
    'aio_write -u 0 512', 'aio_write -f -z 0 512', 'aio_write -z -P 1 0 512',
    'aio_write -i 0 512', 'aio_write 0 0', 'aio_write 64k 1',
    'aio_write -z 64k 1', 'aio_write -z 0 1 2', 'aio_write -c 0 512',
    'aio_write -z 0 3G', 'aio_write 0 3G',
]

SEQUENCES = [
    ['close', 'close'], ['close', 'read 0 1'], ['close', 'alloc 0'],
    ['close', 'aio_flush'], ['close', 'open -r t.raw', 'write 0 1'],
    ['open t.raw'], ['close', 'open'], ['close', 'open t.raw t.raw'],
    ['close', 'open -o driver=raw,offset=1024,size=4k t.raw', 'read -v 0 16',
     'length', 'read 4k 1'],
    ['reopen -r', 'write 0 1'], ['reopen -r -w'], ['reopen x'],
    ['truncate 1M', 'reopen -r'],
    ['truncate 1M', 'reopen -r', 'truncate 2M', 'length', 'write 0 1',
     'discard 0 512', 'reopen -w', 'truncate 3M', 'length', 'write 0 1'],
    ['aio_read 3G 1', 'length', 'aio_flush', 'aio_read 3G 1', 'read 0 1',
     'aio_read 3G 1', 'info', 'aio_read 3G 1'],
    ['quit', 'read 0 1'], ['bogus', 'read 0 1'], ['read x 1', 'read 0 1'],
    ['r 0 1', 'w 0 1', 'd 0 1', 'f', 't 1M', '? r', 'help w', 'help ?'],
    ['write -P 1 0 4k', 'write -s t.raw 8k 4k', 'read -v 8k 16'],
]


@pytest.mark.parametrize('cmd', NUMBER_CMDS + OPTION_CMDS)
def test_single_command(cmd, our_qemu_io, ref_qemu_io):
    compare(our_qemu_io, ref_qemu_io, [cmd])


@pytest.mark.parametrize('cmd', AIO_CMDS)
def test_aio_command(cmd, our_qemu_io, ref_qemu_io):
    compare(our_qemu_io, ref_qemu_io, [cmd, 'aio_flush'])


@pytest.mark.parametrize('cmds', SEQUENCES, ids=lambda c: ';'.join(c)[:60])
def test_sequence(cmds, our_qemu_io, ref_qemu_io):
    compare(our_qemu_io, ref_qemu_io, cmds)


# ---- stdin (no -c): prompts, 1023-byte line chunks, deferred aio ----

STDIN = [
    b'', b'\n', b'read 0 1', b'\n\n\nread 0 1\n\n', b'# c\nread 0 1\n',
    b'  read   0   1  \n', b'read\t0 1\n', b'read 0 1\r\n',
    b'read 0 1\nquit\nread 0 2\n', b'bogus\nread 0 1\n', b'read 0 1\nbogus',
    b'read 0 1\x00 2\n', b'close\nread 0 1\nopen t.raw\nread 0 1\n',
    b'aio_read 3G 1\naio_flush\nlength\n', b'aio_write -z 3G 1\nlength\n',
    b'x' * 1022 + b'\n', b'x' * 1023 + b'\n', b'x' * 1024 + b'\n',
    b'x' * 5000 + b'\n', b'read 0 1' + b' ' * 1015 + b'\nread 0 2\n',
    b'x' * 2046,
]


@pytest.mark.parametrize('data', STDIN, ids=lambda d: repr(d[:24]))
def test_stdin(data, our_qemu_io, ref_qemu_io):
    compare(our_qemu_io, ref_qemu_io, [], stdin=data)


def test_stdin_without_image(our_qemu_io, ref_qemu_io):
    compare(our_qemu_io, ref_qemu_io, [], stdin=b'read 0 1\nhelp\nopen t.raw\n'
            b'read 0 1\n', target=None)


def test_image_opts_refuses_open_o(our_qemu_io, ref_qemu_io):
    compare(our_qemu_io, ref_qemu_io,
            ['open -o driver=raw file.filename=t.raw', 'read 0 1'],
            opts=['--image-opts'], target=None)


@pytest.mark.parametrize('cmds', [
    ['read 0 512', 'write 0 512', 'map', 'alloc 0 1M', 'info', 'length',
     'truncate 2M', 'discard 0 512', 'write -z 0 512', 'flush', 'read 1M 1',
     'zone_open 2M 1', 'zone_open 0 1'],
], ids=['null-co'])
def test_null_co(cmds, our_qemu_io, ref_qemu_io):
    compare(our_qemu_io, ref_qemu_io, cmds, opts=[], target=NULL_CO)


@pytest.mark.parametrize('cmds', [
    ['break read_aio a', 'aio_read 0 512', 'wait_break a', 'resume a',
     'aio_flush'],
    ['break read_aio a', 'remove_break a', 'remove_break a', 'resume a',
     'break bogus a', 'read 0 512'],
], ids=['break-resume', 'break-errors'])
def test_blkdebug(cmds, our_qemu_io, ref_qemu_io):
    compare(our_qemu_io, ref_qemu_io, cmds, target=BLKDEBUG)


# ---- seeded random sequences ----

def rnd_num(r):
    c = r.random()
    if c < 0.5:
        return str(r.choice([0, 1, 511, 512, 513, 4095, 4096, 65535, 65536,
                             65537, r.randrange(0, 70000)]))
    if c < 0.6:
        return hex(r.randrange(0, 70000))
    if c < 0.75:
        return r.choice(['1k', '4k', '63k', '64k', '65k', '0.5k', '1.5k',
                         '1M', '2G', '3G', '16E'])
    if c < 0.85:
        return r.choice(['-1', 'x', '', '0x', '1.5', '1b', '1kk', '+5'])
    return str(r.randrange(0, 1024))


def rnd_flags(r, letters):
    s = ''.join(x for x in letters if r.random() < 0.2)
    return f'-{s} ' if s else ''


def rnd_pattern(r):
    return r.choice(['0', '0xff', '0x100', '-1', 'a', str(r.randrange(256))])


def rnd_io(r, name, letters):
    s = name + ' ' + rnd_flags(r, letters)
    if r.random() < 0.4:
        s += f'-P {rnd_pattern(r)} '
    if name.endswith('v') or name.startswith('aio'):
        return s + ' '.join(rnd_num(r) for _ in range(r.randrange(1, 5)))
    return s + f'{rnd_num(r)} {rnd_num(r)}'


def rnd_command(r):
    k = r.randrange(14)
    if k < 6:
        name, letters = r.choice([('read', 'bCqv'), ('readv', 'Cqv'),
                                  ('write', 'bcCfnquz'), ('writev', 'Cfq')])
        return [rnd_io(r, name, letters)]
    if k < 8:
        name, letters = r.choice([('aio_read', 'Cqv'), ('aio_write', 'Cfquz')])
        return [rnd_io(r, name, letters), 'aio_flush']
    if k == 8:
        return ['read -P %d -s %d -l %d %d %d' % (
            r.randrange(256), r.randrange(40), r.randrange(40),
            r.randrange(65536), r.randrange(60))]
    if k == 9:
        return [r.choice(['alloc', 'discard ' + rnd_flags(r, 'Cq'),
                          'zone_open', 'zone_report']) + ' ' +
                ' '.join(rnd_num(r) for _ in range(r.randrange(0, 3)))]
    if k == 10:
        return ['truncate ' + r.choice(['64k', '32k', '100000', rnd_num(r)])]
    if k == 11:
        return [r.choice(['map', 'length', 'info', 'flush', 'bogus', '',
                          '# x', 'help', 'help read', 'sleep 1'])]
    if k == 12:
        return [r.choice(['close', 'open t.raw', 'open -r t.raw',
                          'open -o driver=raw,offset=1024 t.raw'])]
    return [r.choice(['reopen', 'reopen -r', 'reopen -w',
                      'reopen -c writeback', 'reopen -c unsafe'])]


def rnd_sequence(seed):
    r = random.Random(seed)
    cmds = []
    for _ in range(r.randrange(3, 12)):
        cmds += rnd_command(r)
    return cmds


@pytest.mark.parametrize('seed', range(60))
def test_random_sequence(seed, our_qemu_io, ref_qemu_io):
    cmds = rnd_sequence(seed)
    chunks = image_bytes(seed)
    if seed % 2:
        compare(our_qemu_io, ref_qemu_io, cmds, chunks=chunks)
    else:
        stdin = ('\n'.join(cmds) + '\n').encode()
        compare(our_qemu_io, ref_qemu_io, [], stdin=stdin, chunks=chunks)
