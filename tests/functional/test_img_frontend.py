"""strata-img front end against the reference qemu-img 10.0: global
options, per-command help, option parsing errors, GNU permutation and
the commands that refuse raw images (check, snapshot, bitmap, amend,
commit, rebase).

Both programs run with the same argv in the same directory; each one's
own path is replaced by 'qemu-img' (the usage hint repeats argv[0]) and
auto-generated node names (#block123) are masked before comparing."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import TOP, make_image, run

COMMANDS = ['amend', 'bench', 'bitmap', 'check', 'commit', 'compare',
            'convert', 'create', 'dd', 'info', 'map', 'measure', 'rebase',
            'resize', 'snapshot']

NODE_NAME = re.compile(r'#block\d+')
# Lines where the reference's help is unfinished ("XXX todo"): we print a
# real description there.
TODO_HELP = re.compile(r'^(  -S, --sparse-size SPARSE_SIZE|  --salvage)\n'
                       r'     .*\n', re.M)


@pytest.fixture
def imgs(tmp_path):
    make_image(tmp_path / 'r.raw', 1 << 20, [(0, b'\xaa' * 4096)])
    make_image(tmp_path / 'b.raw', 1 << 20)
    return tmp_path


def clean(text, prog):
    return NODE_NAME.sub('#blockN', text.replace(prog, 'qemu-img'))


def both(our, ref, args, cwd=None):
    """Run the same arguments on both; return the cleaned results."""
    res = []
    for prog in (our, ref):
        r = run([prog] + args, cwd=cwd, stdin=subprocess.DEVNULL)
        r.out, r.err = clean(r.out, prog), clean(r.err, prog)
        res.append(r)
    return res


def not_implemented(r):
    return 'is not implemented yet' in r.err


def assert_same(our, ref, args, cwd=None):
    o, r = both(our, ref, args, cwd)
    if not_implemented(o):
        pytest.skip(f'{args[0]} is not implemented yet')
    assert (o.rc, o.out, o.err) == (r.rc, r.out, r.err), \
        f'args={args}\nours: {o!r}\nref: {r!r}'


# ---- global options ----

@pytest.mark.parametrize('args', [
    [], ['-x'], ['--bogus'], ['-T'], ['--trace'], ['foo'], ['--help=x'],
    ['-T', 'bdrv_*', 'nosuchcommand'],
])
def test_global_errors(our_qemu_img, ref_qemu_img, args):
    assert_same(our_qemu_img, ref_qemu_img, args)


@pytest.mark.parametrize('opt', ['-V', '--version'])
def test_version(our_qemu_img, ref_qemu_img, opt):
    o, r = both(our_qemu_img, ref_qemu_img, [opt])
    assert o.rc == r.rc == 0
    assert re.match(r'qemu-img version 10\.0\.\d+ ', o.out)
    assert o.out.split(' (')[0] == r.out.split(' (')[0]


@pytest.mark.parametrize('opt', ['-h', '--help'])
def test_global_help(our_qemu_img, ref_qemu_img, opt):
    o, r = both(our_qemu_img, ref_qemu_img, [opt])
    assert o.rc == r.rc == 0
    # same command list and option section; banner and formats differ
    section = re.compile(r'Standard options:\n.*?\n\n', re.S)
    assert section.search(o.out).group(0) == section.search(r.out).group(0)
    cmds = re.compile(r'^  ([a-z]+) - ', re.M)
    assert cmds.findall(o.out) == cmds.findall(r.out) == COMMANDS


def test_trace_accepted(our_qemu_img, ref_qemu_img):
    assert_same(our_qemu_img, ref_qemu_img,
                ['-T', 'bdrv_*', '--trace', 'enable=blk_*', 'check', '--help'])


# ---- -T / --trace: no events here, but the same checks and messages ----

def trace_files(d):
    """Events files: comments, blank lines, CRLF, a last line without its
    newline (the reference drops a line's last character), "help"."""
    (d / 'ev').write_bytes(b'\n#bdrv_x\nno_such_event\r\n-other\nwild*\n\nlast')
    (d / 'ev-help').write_text('foo\nhelp\nbar\n')
    (d / 'ev-long').write_text('a' * 1100 + '\n')


@pytest.mark.parametrize('args', [
    ['-T', 'no_such_event', 'map', 'r.raw'],
    ['--trace', 'enable=no_such*', 'map', 'r.raw'],
    ['-T', '-no_such_event', '-T', 'x,,y', 'map', 'r.raw'],
    ['-T', '-?', 'map', 'r.raw'],
    ['-T', 'events=ev', 'map', 'r.raw'],
    ['-T', 'events=ev-long', 'map', 'r.raw'],
    ['-T', 'events=ev,enable=first', 'map', 'r.raw'],
    ['-T', 'events=nonexistent', '-h'],
    ['-T', 'file=/nonexistent/log'],
    ['-T', 'file=/nonexistent/log', 'nosuchcommand'],
    ['-T', 'file=/nonexistent/log', '-T', 'x', 'map', 'r.raw'],
    ['-T', 'file=', 'map', 'r.raw'],
    ['-T', 'x,help'],
    ['-T', 'x,y=1,help'],
    ['-T', 'x,help,id=1'],
    ['-T', 'x,id=ok', 'map', 'r.raw'],
    ['-T', 'x,nofoo', 'map', 'r.raw'],
    ['-T', 'x,events', 'map', 'r.raw'],
    ['-T', '=x', 'map', 'r.raw'],
])
def test_trace_options(our_qemu_img, ref_qemu_img, imgs, args):
    trace_files(imgs)
    assert_same(our_qemu_img, ref_qemu_img, args, cwd=imgs)


@pytest.mark.parametrize('args', [
    ['-T', 'help', 'map', 'r.raw'], ['-T', 'enable=?'], ['-T', 'events=ev-help'],
])
def test_trace_help_lists_no_events(our_qemu_img, ref_qemu_img, imgs, args):
    """Listing the events exits at once with status 0, as the reference
    (which has hundreds of events; Strata has none)."""
    trace_files(imgs)
    o, r = both(our_qemu_img, ref_qemu_img, args, cwd=imgs)
    assert (o.rc, o.err) == (r.rc, r.err)
    assert o.rc == 0 and o.out == '' and r.out


@pytest.mark.parametrize('args', [['-V', '-T', 'help'], ['-T', 'x', '--version']])
def test_trace_and_version(our_qemu_img, ref_qemu_img, args):
    """Options act in order: -V exits before a later -T help; a -T before
    it warns first."""
    o, r = both(our_qemu_img, ref_qemu_img, args)
    assert (o.rc, o.err) == (r.rc, r.err)
    assert o.out.split(' (')[0] == r.out.split(' (')[0] == 'qemu-img version 10.0.2'


def test_trace_log_file_created(our_qemu_img, ref_qemu_img, tmp_path):
    """file= is created (truncated) by both; the last -T's file= counts."""
    for prog, name in ((our_qemu_img, 'ours'), (ref_qemu_img, 'ref')):
        d = tmp_path / name
        d.mkdir()
        (d / 'log').write_text('old contents\n')
        make_image(d / 'r.raw', 1 << 20)
        r = run([prog, '-T', 'file=other', '-T', 'file=log', 'map', 'r.raw'],
                cwd=d)
        assert r.rc == 0, r
        assert sorted(os.listdir(d)) == ['log', 'r.raw']
        assert (d / 'log').read_text() == ''


# ---- per-command help ----

@pytest.mark.parametrize('cmd', COMMANDS)
@pytest.mark.parametrize('opt', ['--help', '-h'])
def test_command_help(our_qemu_img, ref_qemu_img, cmd, opt):
    o, r = both(our_qemu_img, ref_qemu_img, [cmd, opt])
    assert (o.rc, o.err) == (r.rc, r.err) == (0, '')
    assert TODO_HELP.sub('', o.out) == TODO_HELP.sub('', r.out)


def test_help_todo_replaced(our_qemu_img):
    out = run([our_qemu_img, 'convert', '--help']).out
    assert 'XXX' not in out
    assert TODO_HELP.search(out)


def test_help_program_name(strata_img):
    out = run([strata_img, 'check', '--help']).out
    assert '\n  strata-img check [-f FMT' in out


# ---- parsing errors, common to the commands ----

@pytest.mark.parametrize('cmd', ['check', 'commit', 'snapshot', 'rebase',
                                 'amend', 'bitmap'])
@pytest.mark.parametrize('args', [
    ['-Z'], ['--no-such-option'], ['--help=x'], ['--object'],
    ['--object', 'foo'], ['x', '--object', 'bogus,id=x'],
])
def test_bad_options(our_qemu_img, ref_qemu_img, imgs, cmd, args):
    assert_same(our_qemu_img, ref_qemu_img, [cmd] + args, cwd=imgs)


@pytest.mark.parametrize('args', [
    ['check', '-f'], ['check', '-T'], ['check', '-r'], ['check', '--output'],
    ['check', '--repair'], ['check', '--cache'], ['check', '--format'],
    ['commit', '-t'], ['commit', '-b'], ['commit', '-r'], ['commit', '--base'],
    ['commit', '--rate'], ['commit', '-U', 'r.raw'],
    ['snapshot', '-a'], ['snapshot', '-c'], ['snapshot', '-d'],
    ['snapshot', '--apply=x', 'r.raw'], ['snapshot', '--create=x', 'r.raw'],
    ['rebase', '-b'], ['rebase', '-F'], ['rebase', '-T'], ['rebase', '-t'],
    ['rebase', '--backing'], ['rebase', '--backing-format'],
    ['amend', '-o'], ['amend', '--options'], ['amend', '-U', 'r.raw'],
    ['bitmap', '--merge'], ['bitmap', '-g'], ['bitmap', '-b'],
    ['bitmap', '--format', 'raw', '--add', 'r.raw', 'b'],
    ['bitmap', '-U'],
])
def test_missing_arguments(our_qemu_img, ref_qemu_img, imgs, args):
    assert_same(our_qemu_img, ref_qemu_img, args, cwd=imgs)


# ---- check ----

@pytest.mark.parametrize('args', [
    [], ['a', 'b'], ['r.raw'], ['-f', 'raw', 'r.raw'],
    ['--output=json', '-f', 'raw', 'r.raw'], ['--output', 'human', 'r.raw'],
    ['--output=xml', 'r.raw'], ['--output=xml'], ['-r', 'leaks', 'r.raw'],
    ['-r', 'all', 'r.raw'], ['--repair=all', '-f', 'raw', 'r.raw'],
    ['-r', 'foo', 'r.raw'], ['-r', 'foo', '--output=xml', 'r.raw'],
    ['-r', 'all', '-U', 'r.raw'], ['-U', 'r.raw'], ['--force-share', 'r.raw'],
    ['--force', 'r.raw'], ['-q', 'r.raw'], ['-T', 'none', 'r.raw'],
    ['-T', 'bogus', 'r.raw'], ['-T', 'bogus'], ['nonexist'],
    ['--output=json', 'nonexist'], ['-f', 'raw', '--image-opts', 'r.raw'],
    ['--image-opts', 'driver=raw,file.filename=r.raw'],
    ['-f', 'foo', 'r.raw'],
    ['--object', 'secret,id=s0,data=x', 'r.raw'],
])
def test_check(our_qemu_img, ref_qemu_img, imgs, args):
    assert_same(our_qemu_img, ref_qemu_img, ['check'] + args, cwd=imgs)


def test_check_exit_63(our_qemu_img, imgs):
    r = run([our_qemu_img, 'check', '-f', 'raw', str(imgs / 'r.raw')])
    assert r.rc == 63
    assert r.err == 'qemu-img: This image format does not support checks\n'


# ---- snapshot ----

@pytest.mark.parametrize('args', [
    [], ['a', 'b'], ['r.raw'], ['-l', 'r.raw'], ['--list', 'r.raw'],
    ['-l', '-f', 'raw', 'r.raw'], ['-U', '-l', 'r.raw'],
    ['-c', 's1', 'r.raw'], ['-c', 's1', '-f', 'raw', 'r.raw'],
    ['-a', 's1', 'r.raw'], ['-a', 's1', '-f', 'raw', 'r.raw'],
    ['-d', 's1', 'r.raw'], ['-d', 's1', '-f', 'raw', 'r.raw'],
    ['--apply', 'r.raw'], ['--delete', 'r.raw'], ['--apply', 'x', 'r.raw'],
    ['-c', 's1', '-l', 'r.raw'], ['-l', '-l', 'r.raw'],
    ['-U', '-c', 's1', '-f', 'raw', 'r.raw'],
    ['-U', '-d', 's1', 'r.raw'], ['-q', '-c', 's', 'r.raw'],
    ['-l', 'nonexist'], ['-l', '-f', 'raw', '--image-opts', 'r.raw'],
    ['-l', '--image-opts', 'driver=raw,file.filename=r.raw'],
    ['-l', '-f', 'foo', 'r.raw'],
])
def test_snapshot(our_qemu_img, ref_qemu_img, imgs, args):
    assert_same(our_qemu_img, ref_qemu_img, ['snapshot'] + args, cwd=imgs)


# ---- bitmap ----

@pytest.mark.parametrize('args', [
    ['r.raw', 'b'], ['--add', 'r.raw'], ['--add', 'r.raw', 'b', 'c'],
    ['--add', 'r.raw', 'b'], ['--add', '-f', 'raw', 'r.raw', 'b'],
    ['--remove', '-f', 'raw', 'r.raw', 'b'],
    ['--clear', '-f', 'raw', 'r.raw', 'b'],
    ['--enable', '-f', 'raw', 'r.raw', 'b'],
    ['--disable', '-f', 'raw', 'r.raw', 'b'],
    ['--merge', 'x', '-f', 'raw', 'r.raw', 'b'],
    ['--merge', 'x', '-b', 'b.raw', '-F', 'raw', '-f', 'raw', 'r.raw', 'b'],
    ['--merge', 'x', '-b', 'nonexist', '-f', 'raw', 'r.raw', 'b'],
    ['--merge', 'x', '-b', 'b.raw', '-F', 'foo', '-f', 'raw', 'r.raw', 'b'],
    ['--add', '-g', '64k', '-f', 'raw', 'r.raw', 'b'],
    ['--add', '-g', 'foo', '-f', 'raw', 'r.raw', 'b'],
    ['--add', '-g', '3', '-f', 'raw', 'r.raw', 'b'],
    ['--add', '-g', '0', '-f', 'raw', 'r.raw', 'b'],
    ['--remove', '-g', '64k', 'r.raw'],
    ['--add', '-b', 'x', 'r.raw', 'b'], ['--remove', '-F', 'raw', 'r.raw'],
    ['--add', 'nonexist', 'b'], ['--add', '--remove', '-f', 'raw', 'r.raw', 'b'],
    ['--remove', '--add', '-f', 'raw', 'r.raw', 'b'],
    ['--add', '-f', 'raw', '--image-opts', 'r.raw', 'b'],
    ['--granularity', '1M', '--add', '-f', 'raw', 'r.raw', 'b'],
])
def test_bitmap(our_qemu_img, ref_qemu_img, imgs, args):
    assert_same(our_qemu_img, ref_qemu_img, ['bitmap'] + args, cwd=imgs)


# ---- amend ----

@pytest.mark.parametrize('args', [
    ['r.raw'], ['-o', 'x=y', 'r.raw'], ['-o', 'x=y', '-f', 'raw', 'r.raw'],
    ['-o', 'size=2M', '-f', 'raw', 'r.raw'], ['-o', 'help', 'r.raw'],
    ['-o', 'help', '-f', 'raw', 'r.raw'], ['-o', 'help'],
    ['-o', '?', '-f', 'raw'], ['-o', 'help', '-f', 'foo'],
    ['-o', 'help', '-f', 'file'], ['-o', 'x=y'], ['-o', 'x=y', 'a', 'b'],
    ['-o', 'x=y', '-t', 'bogus', '-f', 'raw', 'r.raw'],
    ['-o', 'x=y', '-t', 'bogus'], ['-o', 'x=y', '-o', 'z=w', 'r.raw'],
    ['-o', 'x=y', 'nonexist'], ['-o', 'x=y', '-f', 'foo', 'r.raw'],
    ['-o', 'x=y', '-q', '-p', '--force', '-f', 'raw', 'r.raw'],
    ['-o', 'x=y', '-f', 'raw', '--image-opts', 'r.raw'],
    ['-o', 'x=y', '--image-opts', 'driver=raw,file.filename=r.raw'],
    ['-o', ',', 'r.raw'], ['-o', '', 'r.raw'], ['-o', 'a=b,,c', 'r.raw'],
    ['-o', 'a,', 'r.raw'], ['--options=x=y', '--progress', 'r.raw'],
])
def test_amend(our_qemu_img, ref_qemu_img, imgs, args):
    assert_same(our_qemu_img, ref_qemu_img, ['amend'] + args, cwd=imgs)


# ---- commit ----

@pytest.mark.parametrize('args', [
    [], ['a', 'b'], ['r.raw'], ['-f', 'raw', 'r.raw'], ['-d', 'r.raw'],
    ['-b', 'x', '-f', 'raw', 'r.raw'], ['--base=x', '--drop', 'r.raw'],
    ['-r', '1M', 'r.raw'], ['-r', 'foo', 'r.raw'], ['-r', '-5', 'r.raw'],
    ['-r', 'foo'], ['-t', 'bogus', 'r.raw'], ['-t', 'bogus'],
    ['-t', 'none', 'r.raw'], ['-q', '-p', 'r.raw'], ['-p', 'r.raw'],
    ['-p', '-b', 'x', 'r.raw'], ['-p', 'nonexist'], ['nonexist'],
    ['-f', 'raw', '--image-opts', 'r.raw'],
    ['--image-opts', 'driver=raw,file.filename=r.raw'],
])
def test_commit(our_qemu_img, ref_qemu_img, imgs, args):
    assert_same(our_qemu_img, ref_qemu_img, ['commit'] + args, cwd=imgs)


# ---- rebase ----

@pytest.mark.parametrize('args', [
    [], ['a', 'b'], ['r.raw'], ['-F', 'raw', 'r.raw'], ['-b', 'b.raw', 'r.raw'],
    ['-b', 'b.raw', '-F', 'raw', 'r.raw'],
    ['-b', 'b.raw', '-F', 'raw', '-f', 'raw', 'r.raw'],
    ['-u', '-b', 'b.raw', '-F', 'raw', 'r.raw'], ['-u', '-f', 'raw', 'r.raw'],
    ['-u', '-b', '', 'r.raw'], ['-b', '', 'r.raw'],
    ['-b', 'nonexist', '-F', 'raw', 'r.raw'],
    ['-c', '-u', '-b', 'b.raw', 'r.raw'], ['-c', '-b', 'b.raw', '-F', 'foo',
                                            'r.raw'],
    ['-U', '-b', 'b.raw', 'r.raw'], ['-U', '-u', '-b', 'b.raw', 'r.raw'],
    ['-t', 'bogus', '-b', 'b.raw', 'r.raw'],
    ['-T', 'bogus', '-b', 'b.raw', 'r.raw'],
    ['-p', '-b', 'b.raw', '-F', 'raw', 'r.raw'],
    ['-p', '-u', '-b', 'b.raw', '-F', 'raw', 'r.raw'],
    ['-p', '-b', 'b.raw', 'nonexist'], ['-q', '-p', '-b', 'b.raw', 'r.raw'],
    ['-b', 'b.raw', '-F', 'foo', 'r.raw'], ['-u', '-F', 'foo', 'r.raw'],
    ['--backing=b.raw', '--backing-format=raw', '--backing-unsafe', 'r.raw'],
    ['-b', 'b.raw', '-f', 'raw', '--image-opts', 'r.raw'],
    ['nonexist', '-b', 'b.raw'],
])
def test_rebase(our_qemu_img, ref_qemu_img, imgs, args):
    assert_same(our_qemu_img, ref_qemu_img, ['rebase'] + args, cwd=imgs)


def test_rebase_backing_relative_to_image(our_qemu_img, ref_qemu_img, imgs):
    # a relative -b names a file next to the image, not in the cwd
    for b in ('b.raw', 'nonexist.raw'):
        assert_same(our_qemu_img, ref_qemu_img,
                    ['rebase', '-b', b, '-F', 'raw', '-f', 'raw',
                     str(imgs / 'r.raw')], cwd='/')


# ---- GNU permutation ----

@pytest.mark.parametrize('args', [
    ['check', 'r.raw', '--output=json', '-f', 'raw'],
    ['check', 'r.raw', '-r', 'foo'],
    ['snapshot', 'r.raw', '-l'],
    ['snapshot', 'r.raw', '-c', 'x', '-f', 'raw'],
    ['commit', 'r.raw', '-f', 'raw', '-d'],
    ['rebase', 'r.raw', '-u', '-f', 'raw'],
    ['amend', 'r.raw', '-o', 'x=y', '-f', 'raw'],
    ['bitmap', 'r.raw', '--add', 'b', '-f', 'raw'],
    ['info', 'r.raw', '--output=json', '-f', 'raw'],
    ['map', 'r.raw', '--output=json', '-f', 'raw'],
    ['check', '-f', 'raw', '--', '-r'],
])
def test_permutation(our_qemu_img, ref_qemu_img, imgs, args):
    assert_same(our_qemu_img, ref_qemu_img, args, cwd=imgs)


# ---- man pages and bash completion ----

COMPLETION = os.path.join(TOP, 'contrib', 'bash-completion', 'strata-img')


def complete(words, cword=None, script=COMPLETION, func='_strata_img'):
    """COMPREPLY of the completion function for @words."""
    if cword is None:
        cword = len(words) - 1
    arr = ' '.join("'%s'" % w for w in words)
    code = (f'source {script}; COMP_WORDS=({arr}); COMP_CWORD={cword}; '
            f'COMP_LINE="{" ".join(words)}"; COMP_POINT=${{#COMP_LINE}}; '
            f'{func} strata-img "${{COMP_WORDS[COMP_CWORD]}}" '
            f'"${{COMP_WORDS[COMP_CWORD-1]}}"; '
            'printf "%s\\n" "${COMPREPLY[@]}"')
    r = run(['bash', '-c', code])
    assert r.rc == 0, r
    return [w for w in r.out.split('\n') if w]


def test_completion_registered():
    r = run(['bash', '-c', f'source {COMPLETION}; complete -p strata-img '
             'qemu-img'])
    assert r.rc == 0, r
    assert '_strata_img' in r.out


def test_completion_commands():
    assert sorted(complete(['strata-img', ''])) == COMMANDS
    assert complete(['strata-img', 'co']) == ['commit', 'compare', 'convert']
    assert complete(['strata-img', '-T', 'x', 're']) == ['rebase', 'resize']


def test_completion_options():
    opts = complete(['strata-img', 'check', '--'])
    for o in ('--output', '--repair', '--force-share', '--image-opts',
              '--object', '--cache', '--format', '--quiet', '--help'):
        assert o in opts
    assert '--merge' in complete(['strata-img', 'bitmap', '--'])
    assert '-U' in complete(['strata-img', 'rebase', '-'])


def test_completion_formats_and_files(tmp_path):
    assert 'raw' in complete(['strata-img', 'info', '-f', ''])
    assert 'raw' in complete(['strata-img', 'convert', '-O', 'r'])
    assert complete(['strata-img', 'check', '--output', '']) == \
        ['human', 'json']
    make_image(tmp_path / 'disk.raw', 512)
    files = complete(['strata-img', 'info', str(tmp_path / 'di')])
    assert files == [str(tmp_path / 'disk.raw')]


def test_io_completion():
    script = os.path.join(TOP, 'contrib', 'bash-completion', 'strata-io')
    opts = complete(['strata-io', '--'], script=script, func='_strata_io')
    for o in ('--cmd', '--format', '--read-only', '--image-opts', '--help'):
        assert o in opts


def test_man_pages_render():
    if not shutil.which('man'):
        pytest.skip('man not installed')
    for page in ('strata-img.1', 'strata-io.1'):
        path = os.path.join(TOP, 'docs', page)
        r = run(['man', '--warnings', '-E', 'UTF-8', '-l', path],
                env=dict(os.environ, MANWIDTH='80', MAN_KEEP_FORMATTING=''))
        assert r.rc == 0, r
        assert 'warning' not in r.err, r.err


def test_man_page_covers_commands():
    text = open(os.path.join(TOP, 'docs', 'strata-img.1')).read()
    for cmd in COMMANDS:
        assert re.search(r'^\.SS .*\b%s\b' % cmd, text, re.M), cmd
