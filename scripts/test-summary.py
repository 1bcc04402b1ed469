#!/usr/bin/env python3
"""Sum every suite's results into one closing line and exit status.

Unit tests are TAP programs run by meson: each "ok"/"not ok" line counts
(a program that crashed before printing its plan counts as one failure).
pytest results come from JUnit XML files; fuzz regression from TAP."""
import glob
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

TAP_LINE = re.compile(r'^(not ok|ok)\b(.*)$')


def count_tap(text):
    p = f = s = 0
    for line in text.splitlines():
        m = TAP_LINE.match(line.strip())
        if not m:
            continue
        skip = '# skip' in m.group(2).lower()
        if m.group(1) == 'not ok' and '# todo' not in m.group(2).lower():
            f += 1
        elif skip:
            s += 1
        else:
            p += 1
    return p, f, s


def count_meson(path):
    p = f = s = 0
    with open(path) as fh:
        for line in fh:
            rec = json.loads(line)
            tp, tf, ts = count_tap(rec.get('stdout') or '')
            ok = rec.get('result') in ('OK', 'SKIP', 'EXPECTEDFAIL')
            if ok and tp + tf + ts == 0:
                tp = 1      # a plain (non-TAP) test program that passed
            if not ok and tf == 0:
                tf = 1      # crashed, timed out or failed without a TAP line
                print(f"FAILED: {rec.get('name')} ({rec.get('result')})")
            p, f, s = p + tp, f + tf, s + ts
    return p, f, s


def count_junit(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == 'testsuite' else list(root)
    p = f = s = 0
    for suite in suites:
        tests = int(suite.get('tests', 0))
        fail = int(suite.get('failures', 0)) + int(suite.get('errors', 0))
        skip = int(suite.get('skipped', 0))
        p, f, s = p + tests - fail - skip, f + fail, s + skip
    return p, f, s


def main(results):
    total = [0, 0, 0]
    for path in sorted(glob.glob(os.path.join(results, '*'))):
        if path.endswith('.json'):
            c = count_meson(path)
        elif path.endswith('.xml'):
            c = count_junit(path)
        elif path.endswith('.tap'):
            with open(path) as fh:
                c = count_tap(fh.read())
        else:
            continue
        print(f"{os.path.basename(path)}: {c[0]} passed, {c[1]} failed, {c[2]} skipped")
        total = [a + b for a, b in zip(total, c)]
    expected = ['unit-normal.json', 'unit-asan.json', 'pytest-main.xml', 'pytest-asan.xml']
    missing = [e for e in expected if not os.path.exists(os.path.join(results, e))]
    for m in missing:
        print(f"FAILED: suite result {m} missing")
        total[1] += 1
    print(f"{total[0]} passed, {total[1]} failed, {total[2]} skipped")
    return 1 if total[1] or total[0] == 0 else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
