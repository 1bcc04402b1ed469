"""The interactive prompt on a terminal: same prompt, same answers.

The reference echoes typed characters through its own line editor (with
cursor escapes); what users act on is the prompt and the lines printed
between prompts, so those are compared."""
import os
import pty
import re
import select
import time

from conftest import make_image, normalize

ESCAPES = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
PROMPT = 'qemu-io> '


def tty_session(prog, img, lines, settle=0.4):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(prog, [prog, '-f', 'raw', img])
    out = bytearray()

    def drain():
        end = time.monotonic() + settle
        while time.monotonic() < end:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    out.extend(os.read(fd, 65536))
                except OSError:
                    return
    drain()
    for line in lines:
        os.write(fd, (line + '\n').encode())
        drain()
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors='replace'), os.waitstatus_to_exitcode(status)


def answers(text):
    """Prompts and output lines, without the echo of typed commands."""
    text = ESCAPES.sub('', text).replace('\r\n', '\n')
    result = []
    for line in text.split('\n'):
        if line.startswith(PROMPT):
            result.append(PROMPT)     # the echoed command is dropped
        elif line:
            result.append(line)
    return normalize('\n'.join(result))


def test_prompt_and_answers_match_reference(tmp_path, our_qemu_io, ref_qemu_io):
    cmds = ['write -P 5 0 512', 'read -P 5 0 512', 'read -P 6 0 512',
            'bogus', 'length', 'help length', 'quit']
    got = {}
    for name, prog in (('ref', ref_qemu_io), ('our', our_qemu_io)):
        img = make_image(tmp_path / f'{name}.raw', 1 << 20)
        got[name] = tty_session(prog, img, cmds)
    assert answers(got['our'][0]) == answers(got['ref'][0])
    assert got['our'][1] == got['ref'][1]
    assert answers(got['our'][0]).count(PROMPT) == len(cmds)
