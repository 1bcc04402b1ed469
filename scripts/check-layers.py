#!/usr/bin/env python3
"""The engine's layers point one way; fail if anything reaches upward.

Layers, bottom up (a layer may use those below it and itself):

  coroutine   coroutines
  util        event loop, errors, iovecs, bitmaps, throttling
  qobject     QDict & co, JSON, keyval option strings
  block       the block core; block/backend.c (BlockBackend) sits on top
              of the core, drivers (block/protocol, format, filter) beside
              it: the core never calls backend.c by name
  tools       only public headers: block/block.h, util/, qobject/,
              coroutine/ and their own

Checked here:
  1. includes: every #include "dir/x.h" in a layer's sources names a
     directory the table allows (tools: block/block.h only), and
     headers named *-int.h / *-internal.h are included only from their
     own directory;
  2. symbols (with a build directory): each archive's undefined symbols
     are defined only in its own or lower archives, and no object of the
     block core uses a symbol that block/backend.c defines.

Usage: check-layers.py SOURCE_DIR [BUILD_DIR]
"""
import os
import re
import subprocess
import sys

ORDER = ['coroutine', 'util', 'qobject', 'block']
ALLOWED = {
    'coroutine': {'coroutine'},
    'util': {'coroutine', 'util'},
    'qobject': {'coroutine', 'util', 'qobject'},
    'block': {'coroutine', 'util', 'qobject', 'block'},
    'tools': {'coroutine', 'util', 'qobject', 'tools'},
}
TOOLS_BLOCK_HEADERS = {'block/block.h'}
# archive members of block/<dir>/x.c are named <dir>_x.c.o
DRIVER_DIRS = ('protocol_', 'format_', 'filter_')
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def sources(root, layer):
    for d, _, files in os.walk(os.path.join(root, layer)):
        for f in files:
            if f.endswith(('.c', '.h')):
                yield os.path.join(d, f)


def include_errors(root):
    errors = []
    for layer, allowed in ALLOWED.items():
        for path in sources(root, layer):
            with open(path, encoding='utf-8', errors='replace') as f:
                text = f.read()
            for inc in INCLUDE.findall(text):
                if '/' not in inc:
                    continue            # config.h and local headers
                top = inc.split('/')[0]
                if (re.search(r'-int(ernal)?\.h$', inc) and
                        os.path.dirname(inc) !=
                        os.path.relpath(os.path.dirname(path), root)):
                    errors.append('%s: includes "%s", internal to %s/' % (
                        os.path.relpath(path, root), inc,
                        os.path.dirname(inc)))
                    continue
                if top in allowed:
                    continue
                if layer == 'tools' and inc in TOOLS_BLOCK_HEADERS:
                    continue
                errors.append('%s: includes "%s" (%s may use: %s)' % (
                    os.path.relpath(path, root), inc, layer,
                    ', '.join(sorted(allowed))))
    return errors


def nm_members(archive):
    """{member: (defined symbols, undefined symbols)} of a static archive."""
    out = subprocess.run(['nm', '-A', '-g', archive], check=True,
                         capture_output=True, text=True).stdout
    members = {}
    for line in out.splitlines():
        # "lib.a:member.o:<addr> T sym" or "lib.a:member.o: U sym"
        head, _, rest = line.rpartition(':')
        member = os.path.basename(head.split(':')[-1])   # thin archives
        fields = rest.split()
        if len(fields) < 2:
            continue
        d, u = members.setdefault(member, (set(), set()))
        (u if fields[-2] == 'U' else d).add(fields[-1])
    return members


def symbol_errors(build):
    archives = {l: os.path.join(build, l, 'lib%s.a' % l) for l in ORDER}
    if not all(os.path.exists(a) for a in archives.values()):
        return ['archives missing under %s (build first)' % build]
    members = {l: nm_members(a) for l, a in archives.items()}
    defined = {l: set().union(*(d for d, _ in m.values()))
               for l, m in members.items()}
    errors = []
    for i, layer in enumerate(ORDER):
        for above in ORDER[i + 1:]:
            for member, (_, undef) in sorted(members[layer].items()):
                for sym in sorted(undef & defined[above]):
                    errors.append('%s (%s) uses %s from %s' % (
                        member, layer, sym, above))
    block = members['block']
    backend = block.get('backend.c.o', (set(), set()))[0]
    for member, (_, undef) in sorted(block.items()):
        core = (not member.startswith(DRIVER_DIRS) and
                member != 'backend.c.o')
        for sym in sorted(undef & backend) if core else []:
            errors.append('block core %s calls up into backend.c: %s' % (
                member, sym))
    return errors


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    errors = include_errors(sys.argv[1])
    if len(sys.argv) == 3:
        errors += symbol_errors(sys.argv[2])
    for e in errors:
        print('layering: ' + e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
