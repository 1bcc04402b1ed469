"""Differential check / check -r of randomly damaged qcow2 images.

Small images made by the reference (data, zero and compressed clusters,
snapshots, a backing file, extended L2, refcount widths 1/16/64, 512 B
and 2 MiB clusters) are damaged in one targeted way each, chosen by a
seed: bits of L1/L2 entries, refcount table entries and refcount block
entries, header fields, OFLAG_COPIED, entries pointing past the end or
into metadata, tables overlapping; from seed 40000 on mostly what a
host crash or a bad tool leaves (a file cut short, a zeroed 4 KiB page,
shared clusters and tables, a cluster past a 2 GiB hole, header counts
and bits that lie, garbage feature names).  On each image both tools run
`check` (human and JSON), then `check -r leaks` and `check -r all` on
their own copies; output and exit status must match, and afterwards the
reference's check must see both repaired copies alike, with the same
data.

The test runs a fixed set of seeds.  Run more by hand:

    STRATA_BUILD=build STRATA_REF_BIN=/opt/qemu-ref/usr/bin \\
        python3 tests/functional/test_qcow2_check_diff.py 0 500
    (or --seeds 3,17,42)

prints one line per differing seed (and `-v` what differed).
"""
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from conftest import run  # noqa: E402

# (name, create options, qemu-io commands; SNAP takes a snapshot, BITMAP
# adds a persistent bitmap, ABORT kills a writer)
BASES = [
    ('plain', 'cluster_size=65536', ['write -P 1 0 192k', 'write -z 256k 64k',
                                     'write -P 2 1M 64k', 'discard 192k 64k']),
    ('compressed', 'cluster_size=65536', ['write -c -P 3 0 64k',
                                          'write -c -P 4 64k 64k',
                                          'write -P 5 128k 64k']),
    ('snapshot', 'cluster_size=65536', ['write -P 6 0 128k', 'SNAP',
                                        'write -P 7 64k 128k']),
    ('extl2', 'extended_l2=on', ['write -P 8 0 4k', 'write -P 9 40k 8k',
                                 'write -z 128k 64k']),
    ('rc1', 'refcount_bits=1', ['write -P 10 0 128k']),
    ('rc64', 'refcount_bits=64', ['write -P 11 0 128k', 'SNAP']),
    ('c512', 'cluster_size=512', ['write -P 12 0 8k', 'write -c -P 13 8k 2k',
                                  'write -z 16k 1k']),
    ('c2m', 'cluster_size=2M', ['write -P 14 0 64k', 'write -z 2M 2M']),
    ('backing', 'cluster_size=65536', ['write -P 15 64k 64k']),
    ('lazy', 'lazy_refcounts=on', ['write -P 16 0 128k', 'ABORT']),
    ('v2', 'compat=0.10', ['write -P 17 0 64k', 'SNAP',
                           'write -P 18 0 64k']),
    ('bitmap', 'cluster_size=65536', ['BITMAP', 'write -P 19 0 64k']),
]
# more bases, for the seeds from 30000 on (the earlier seeds keep the
# images they had): an external data file (also raw), a dirty
# lazy-refcounts image with a snapshot, two bitmaps with 4 KiB clusters,
# compressed clusters under two snapshots, extended L2 under a snapshot
BASES2 = BASES + [
    ('datafile', 'data_file=df.raw', ['write -P 21 0 128k',
                                      'write -z 256k 64k']),
    ('datafileraw', 'data_file=dfr.raw,data_file_raw=on',
     ['write -P 22 0 128k']),
    ('lazysnap', 'lazy_refcounts=on', ['write -P 23 0 128k', 'SNAP',
                                       'write -P 24 64k 64k', 'ABORT']),
    ('bitmap2', 'cluster_size=4096', ['BITMAP', 'BITMAP2',
                                      'write -P 25 0 64k',
                                      'write -P 26 1M 8k']),
    ('snapcomp', 'cluster_size=65536', ['write -c -P 27 0 128k', 'SNAP',
                                        'write -P 28 0 64k', 'SNAP2',
                                        'write -c -P 29 192k 64k']),
    ('extl2snap', 'extended_l2=on', ['write -P 30 0 8k', 'SNAP',
                                     'write -P 31 4k 4k',
                                     'write -z 64k 32k']),
]
# files an image of a base needs beside it
EXTRA_FILES = {'backing': 'back.qcow2', 'datafile': 'df.raw',
               'datafileraw': 'dfr.raw'}
SIZE = '4M'
REF_BIN = os.environ.get('STRATA_REF_BIN', '/opt/qemu-ref/usr/bin')


def make_bases(d, ref_img, ref_io):
    """The base images in directory @d, by the reference."""
    out = {}
    backing = os.path.join(d, 'back.qcow2')
    run([ref_img, 'create', '-q', '-f', 'qcow2', backing, SIZE])
    run([ref_io, '-c', 'write -P 0x21 0 1M', backing])
    for name, opts, cmds in BASES2:
        p = os.path.join(d, f'{name}.qcow2')
        extra = (['-b', 'back.qcow2', '-F', 'qcow2']
                 if name == 'backing' else [])
        r = run([ref_img, 'create', '-q', '-f', 'qcow2', '-o', opts, *extra,
                 p, SIZE], cwd=d)
        assert r.rc == 0, r
        for c in cmds:
            if c in ('SNAP', 'SNAP2'):
                r = run([ref_img, 'snapshot', '-c',
                         's1' if c == 'SNAP' else 's2', p])
            elif c == 'BITMAP':
                r = run([ref_img, 'bitmap', '--add', p, 'b0'])
            elif c == 'BITMAP2':
                r = run([ref_img, 'bitmap', '--add', '-g', '8k', p, 'b1'])
            elif c == 'ABORT':
                # a writer killed with lazy refcounts: a dirty image
                run([ref_io, '-c', 'write -P 20 1M 64k', '-c', 'abort', p])
                continue
            else:
                r = run([ref_io, '-c', c, p], cwd=d)
            assert r.rc == 0, r
        out[name] = p
    return out


class Image:
    """The metadata of a qcow2 file in memory, enough to damage it."""

    def __init__(self, data):
        self.d = bytearray(data)
        # (offset, bytes) written past the end of d, leaving a hole
        self.far = []
        (self.cbits,) = struct.unpack_from('>I', self.d, 20)
        self.cs = 1 << self.cbits
        self.l1_off, = struct.unpack_from('>Q', self.d, 40)
        self.l1_size, = struct.unpack_from('>I', self.d, 36)
        self.rt_off, self.rt_clusters = struct.unpack_from('>QI', self.d, 48)
        self.nb_sn, self.sn_off = struct.unpack_from('>IQ', self.d, 60)
        incompat, = struct.unpack_from('>Q', self.d, 72)
        self.ext_l2 = bool(incompat & 16)
        self.rc_order, = struct.unpack_from('>I', self.d, 96)
        self.entry = 16 if self.ext_l2 else 8

    def q(self, off):
        return struct.unpack_from('>Q', self.d, off)[0] \
            if off + 8 <= len(self.d) else 0

    def setq(self, off, v):
        if off + 8 <= len(self.d):
            struct.pack_into('>Q', self.d, off, v & (2 ** 64 - 1))

    def l1_slots(self):
        return [self.l1_off + 8 * i for i in range(self.l1_size)
                if self.q(self.l1_off + 8 * i)]

    def l2_tables(self):
        tabs = [self.q(s) & 0x00fffffffffffe00 for s in self.l1_slots()]
        for sl1, n in self.snapshot_l1s():
            tabs += [self.q(sl1 + 8 * i) & 0x00fffffffffffe00
                     for i in range(n) if self.q(sl1 + 8 * i)]
        return sorted(set(t for t in tabs if t and t < len(self.d)))

    def l2_slots(self):
        out = []
        for t in self.l2_tables():
            for i in range(self.cs // self.entry):
                o = t + i * self.entry
                if o + 8 <= len(self.d) and self.q(o):
                    out.append(o)
        return out

    def snapshot_l1s(self):
        out, pos = [], self.sn_off
        for _ in range(min(self.nb_sn, 8)):
            if pos + 40 > len(self.d):
                break
            l1, n, il, nl = struct.unpack_from('>QIHH', self.d, pos)
            extra, = struct.unpack_from('>I', self.d, pos + 36)
            out.append((l1, min(n, 64)))
            pos = (pos + 40 + extra + il + nl + 7) & ~7
        return out

    def rt_slots(self):
        return [self.rt_off + 8 * i
                for i in range(self.rt_clusters * self.cs // 8)
                if self.rt_off + 8 * i + 8 <= len(self.d) and
                self.q(self.rt_off + 8 * i)]

    def refblock_entry(self, cluster):
        """(file offset of the refcount entry of @cluster, bits) or None."""
        bits = 1 << self.rc_order
        per = self.cs * 8 // bits
        ti, i = divmod(cluster, per)
        rb = self.q(self.rt_off + 8 * ti) & ~0x1ff
        if not rb or rb + self.cs > len(self.d):
            return None
        return rb, i, bits

    def set_refcount(self, cluster, v):
        e = self.refblock_entry(cluster)
        if not e:
            return False
        rb, i, bits = e
        if bits >= 8:
            n = bits // 8
            v &= (1 << bits) - 1
            self.d[rb + i * n:rb + (i + 1) * n] = v.to_bytes(n, 'big')
        else:
            byte, sh = rb + i * bits // 8, (i * bits) % 8
            m = ((1 << bits) - 1) << sh
            self.d[byte] = (self.d[byte] & ~m) | ((v << sh) & m)
        return True

    def snapshot_l1_slots(self):
        return [l1 + 8 * i for l1, n in self.snapshot_l1s()
                for i in range(n) if self.q(l1 + 8 * i)]

    def snapshot_entries(self):
        """File offsets of the snapshot table entries."""
        out, pos = [], self.sn_off
        for _ in range(min(self.nb_sn, 8)):
            if pos + 40 > len(self.d):
                break
            il, nl = struct.unpack_from('>HH', self.d, pos + 12)
            extra, = struct.unpack_from('>I', self.d, pos + 36)
            out.append(pos)
            pos = (pos + 40 + extra + il + nl + 7) & ~7
        return out

    def ext(self, magic):
        """File offset of the data of header extension @magic, or None."""
        hlen, = struct.unpack_from('>I', self.d, 100)
        pos = hlen if self.d[4:8] == b'\0\0\0\x03' else 72
        while pos + 8 <= min(self.cs, len(self.d)):
            m, n = struct.unpack_from('>II', self.d, pos)
            if m == 0:
                return None
            if m == magic:
                return pos + 8
            pos += 8 + (n + 7 & ~7)
        return None

    def bitmap_entries(self):
        """(entry offset, table offset, table entries) of each bitmap."""
        e = self.ext(0x23852875)
        if e is None:
            return []
        nb, _, dsize, doff = struct.unpack_from('>IIQQ', self.d, e)
        out, pos = [], doff
        for _ in range(min(nb, 8)):
            if pos + 24 > len(self.d):
                break
            toff, tsize, _, _, _, nl, extra = struct.unpack_from(
                '>QIIBBHI', self.d, pos)
            out.append((pos, toff, min(tsize, 64)))
            pos = (pos + 24 + extra + nl + 7) & ~7
        return out

    def bitmap_table_slots(self):
        return [t + 8 * i for _, t, n in self.bitmap_entries()
                for i in range(n) if self.q(t + 8 * i)]

    def compressed_slots(self):
        return [o for o in self.l2_slots() if self.q(o) >> 62 & 1]

    def metadata_offsets(self):
        return [0, self.l1_off, self.rt_off, self.sn_off] + \
            [self.q(s) & ~0x1ff for s in self.rt_slots()] + self.l2_tables()

    def all_metadata(self):
        """metadata_offsets() with bitmap tables and snapshot L1 tables
        (the damages of the later seeds)."""
        return self.metadata_offsets() + \
            [t for _, t, _ in self.bitmap_entries() if t] + \
            [l1 for l1, _ in self.snapshot_l1s() if l1]


def applies(test, img):
    """Whether a damage applies to @img (a file cut short may lack what
    the test reads)."""
    try:
        return test(img)
    except struct.error:
        return False


def damage(img, rng, table):
    """One targeted damage from @table; returns its description."""
    kinds = [k for k in table if applies(table[k][0], img)]
    kind = rng.choice(kinds)
    return kind + ': ' + table[kind][1](img, rng)


# seeds from here on use BASES2 and the damages of DAMAGES2 too
SEEDS2 = 30000


def flip(img, rng, slots, lo=0, hi=63):
    o = rng.choice(slots)
    bit = rng.randint(lo, hi)
    img.setq(o, img.q(o) ^ (1 << bit))
    return f'{o:#x} bit {bit}'


def set_to(img, rng, slots, values):
    o = rng.choice(slots)
    v = rng.choice(values)
    img.setq(o, v)
    return f'{o:#x} = {v:#x}'


def entry_target(img, rng, keep_flags):
    """A value for an entry: past the end, into metadata, unaligned."""
    end = len(img.d)
    targets = [end + img.cs, (end + 10 * img.cs) & ~(img.cs - 1),
               rng.choice(img.metadata_offsets()),
               rng.choice(img.metadata_offsets()) + 512, 1 << 50]
    return (rng.choice(targets) & 0x00fffffffffffe00) | keep_flags


def l2_point(img, rng):
    o = rng.choice(img.l2_slots())
    v = entry_target(img, rng, img.q(o) & 0xc000000000000000)
    img.setq(o, v)
    return f'{o:#x} = {v:#x}'


def l1_point(img, rng):
    o = rng.choice(img.l1_slots())
    v = entry_target(img, rng, img.q(o) & (1 << 63))
    img.setq(o, v)
    return f'{o:#x} = {v:#x}'


def rt_point(img, rng):
    o = rng.choice(img.rt_slots())
    v = entry_target(img, rng, 0)
    if rng.random() < 0.3:
        v = 0
    img.setq(o, v)
    return f'{o:#x} = {v:#x}'


def refcount_change(img, rng):
    n = len(img.d) // img.cs + 2
    k = rng.randrange(n)
    bits = 1 << img.rc_order
    v = rng.choice([0, 1, 2, 3, (1 << bits) - 1] if bits > 1 else [0, 1])
    if not img.set_refcount(k, v):
        return f'cluster {k} has no refcount block'
    return f'refcount of cluster {k} = {v}'


def header_field(img, rng):
    fields = [(36, '>I', [0, img.l1_size + 1, max(img.l1_size - 1, 0),
                          0x7fffffff]),
              (56, '>I', [0, img.rt_clusters + 1, 0xffffff]),
              (48, '>Q', [img.rt_off + img.cs, img.l1_off, 512]),
              (40, '>Q', [img.rt_off, img.l1_off + 512, 1 << 40]),
              (60, '>I', [img.nb_sn + 1, 0, 65537]),
              (64, '>Q', [img.l1_off, img.sn_off + 8, 1 << 45]),
              (72, '>Q', [1, 2])]
    off, fmt, values = rng.choice(fields)
    v = rng.choice(values)
    struct.pack_into(fmt, img.d, off, v)
    return f'header {off} = {v:#x}'


def copied_flag(img, rng):
    slots = img.l1_slots() + img.l2_slots()
    o = rng.choice(slots)
    img.setq(o, img.q(o) ^ (1 << 63))
    return f'{o:#x} COPIED toggled'


def overlap(img, rng):
    """An L2 table or refcount block moved onto another table."""
    slots = img.l1_slots() + img.rt_slots()
    o = rng.choice(slots)
    v = rng.choice(img.metadata_offsets()) & ~(img.cs - 1)
    img.setq(o, (img.q(o) & (1 << 63)) | v)
    return f'{o:#x} -> {v:#x}'


def sn_entry(img, rng):
    pos = img.sn_off
    fields = [(0, '>Q', [0, img.l1_off, 512, len(img.d) + img.cs]),
              (8, '>I', [0, 100, 0x7fffffff]), (36, '>I', [0, 8, 5000])]
    off, fmt, values = rng.choice(fields)
    v = rng.choice(values)
    struct.pack_into(fmt, img.d, pos + off, v)
    return f'snapshot field {off} = {v:#x}'


def target2(img, rng, keep_flags):
    """entry_target() over all the metadata, plus unaligned values."""
    end = len(img.d)
    targets = [end + img.cs, (end + 10 * img.cs) & ~(img.cs - 1),
               rng.choice(img.all_metadata()),
               rng.choice(img.all_metadata()) + 512, 1 << 50]
    return (rng.choice(targets) & 0x00fffffffffffe00) | keep_flags


def point(img, rng, slots, keep_mask):
    o = rng.choice(slots)
    v = target2(img, rng, img.q(o) & keep_mask)
    img.setq(o, v)
    return f'{o:#x} = {v:#x}'


def sn_field2(img, rng):
    pos = rng.choice(img.snapshot_entries())
    fields = [(0, '>Q', [0, len(img.d) + img.cs, img.rt_off, 1 << 50]),
              (8, '>I', [0, 1, 0x2000000, 0xffffffff]),
              (12, '>H', [0, 0xffff]), (14, '>H', [0, 0xffff]),
              (32, '>I', [1, 0xffffffff]),
              (36, '>I', [0, 16, 24, 1024, 0xffffffff]),
              (40, '>Q', [1 << 40]), (48, '>Q', [0, 1 << 62, 512])]
    off, fmt, values = rng.choice(fields)
    v = rng.choice(values)
    if pos + off + struct.calcsize(fmt) <= len(img.d):
        struct.pack_into(fmt, img.d, pos + off, v)
    return f'snapshot at {pos:#x} field {off} = {v:#x}'


def bm_entry(img, rng):
    pos, toff, _ = rng.choice(img.bitmap_entries())
    fields = [(0, '>Q', [len(img.d) + img.cs, toff + 512, 0, img.l1_off,
                         img.rt_off, 1 << 50]),
              (8, '>I', [0, 1, 2, 0x10000000]),
              (12, '>I', [1, 2, 3, 4, 0x80]),
              (16, '>B', [0, 2]), (17, '>B', [8, 31, 64]),
              (18, '>H', [0, 2000]), (20, '>I', [8, 1 << 20])]
    off, fmt, values = rng.choice(fields)
    v = rng.choice(values)
    struct.pack_into(fmt, img.d, pos + off, v)
    return f'bitmap entry at {pos:#x} field {off} = {v:#x}'


def bm_ext(img, rng):
    e = img.ext(0x23852875)
    fields = [(0, '>I', [0, 2, 3, 65536]), (8, '>Q', [0, 8, 64, 1 << 30]),
              (16, '>Q', [len(img.d) + img.cs, img.l1_off, img.rt_off, 0,
                          img.cs + 8])]
    off, fmt, values = rng.choice(fields)
    v = rng.choice(values)
    struct.pack_into(fmt, img.d, e + off, v)
    return f'bitmaps extension field {off} = {v:#x}'


def bm_table(img, rng):
    o = rng.choice(img.bitmap_table_slots())
    v = rng.choice([target2(img, rng, 0), 1, target2(img, rng, 1),
                    img.q(o) | 0x100, img.q(o) | (1 << 60)])
    img.setq(o, v)
    return f'bitmap table {o:#x} = {v:#x}'


def compressed_point(img, rng):
    o = rng.choice(img.compressed_slots())
    x = 62 - (img.cbits - 8)
    e = img.q(o)
    host, nsec = e & ((1 << x) - 1), (e >> x) & ((1 << (62 - x)) - 1)
    end = len(img.d)
    what = rng.choice(['past-end', 'metadata', 'sectors', 'tail'])
    if what == 'past-end':
        host = end + img.cs + rng.choice([0, 512, 1000])
    elif what == 'metadata':
        host = rng.choice(img.all_metadata()) + rng.choice([0, 100])
    elif what == 'sectors':
        nsec = (1 << (62 - x)) - 1
    else:
        host = end - rng.choice([100, 512, 4000])
    host &= (1 << x) - 1
    v = (e & (3 << 62)) | (nsec << x) | host
    img.setq(o, v)
    return f'compressed {o:#x} = {v:#x} ({what})'


def rb_on_l2(img, rng):
    o = rng.choice(img.rt_slots())
    v = rng.choice(img.l2_tables())
    img.setq(o, v)
    return f'refcount block {o:#x} -> L2 table {v:#x}'


def l2_on_rb(img, rng):
    o = rng.choice(img.l1_slots())
    v = rng.choice([img.q(s) & ~0x1ff for s in img.rt_slots()])
    img.setq(o, (img.q(o) & (1 << 63)) | v)
    return f'L1 {o:#x} -> refcount block {v:#x}'


def extl2_bitmap(img, rng):
    t = rng.choice(img.l2_tables())
    i = rng.randrange(min(img.cs // 16, 64))
    o = t + 16 * i
    bit = 1 << rng.randrange(32)
    v = rng.choice([bit | bit << 32, bit, bit << 32, 0xffffffff,
                    0xffffffff00000000, (1 << 64) - 1])
    img.setq(o + 8, v)
    return f'extended L2 bitmap {o + 8:#x} = {v:#x} (entry {img.q(o):#x})'


DAMAGES2 = {
    'sn-l1-bit': (lambda i: i.snapshot_l1_slots(),
                  lambda i, r: flip(i, r, i.snapshot_l1_slots())),
    'sn-l1-point': (lambda i: i.snapshot_l1_slots(),
                    lambda i, r: point(i, r, i.snapshot_l1_slots(),
                                       1 << 63)),
    'sn-l1-copied': (lambda i: i.snapshot_l1_slots(),
                     lambda i, r: flip(i, r, i.snapshot_l1_slots(), 63,
                                       63)),
    'sn-field': (lambda i: i.snapshot_entries(), sn_field2),
    'bm-entry': (lambda i: i.bitmap_entries(), bm_entry),
    'bm-ext': (lambda i: i.ext(0x23852875) is not None, bm_ext),
    'bm-table': (lambda i: i.bitmap_table_slots(), bm_table),
    'compressed-point': (lambda i: i.compressed_slots(), compressed_point),
    'extl2-bitmap': (lambda i: i.ext_l2 and i.l2_tables(), extl2_bitmap),
}
# later damages any base takes
DAMAGES3 = {
    'rb-on-l2': (lambda i: i.rt_slots() and i.l2_tables(), rb_on_l2),
    'l2-on-rb': (lambda i: i.l1_slots() and i.rt_slots(), l2_on_rb),
}


# Crash and bad-tool damages, for the seeds from 40000 on
SEEDS4 = 40000


def data_slots(img):
    """L2 entries of allocated data clusters (not compressed)."""
    return [o for o in img.l2_slots()
            if not img.q(o) >> 62 & 1 and img.q(o) & 0x00fffffffffffe00]


def truncate(img, rng):
    """The file cut short, as by a host crash before the data reached
    the disk: inside the last data cluster, an L2 table, a refcount
    block, or right after the header."""
    where = []
    if data_slots(img):
        last = max(img.q(o) & 0x00fffffffffffe00 for o in data_slots(img))
        where.append(('data', last))
    if img.l2_tables():
        where.append(('l2', rng.choice(img.l2_tables())))
    if img.rt_slots():
        where.append(('refblock', img.q(rng.choice(img.rt_slots())) &
                      ~0x1ff))
    where.append(('header', 0))
    what, base = rng.choice(where)
    if what == 'header':
        n = rng.choice([img.cs, 512, 104 + 8 * rng.randrange(4)])
    else:
        n = base + rng.choice([0, 8, 512, img.cs // 2, img.cs - 8])
    if n < len(img.d):
        del img.d[n:]
    return f'truncated to {n:#x} ({what})'


def zero_page(img, rng):
    """A 4 KiB page zeroed (a lost write): of some metadata or of any
    place in the file."""
    if rng.random() < 0.6:
        o = rng.choice(img.all_metadata()) + \
            rng.randrange(max(img.cs // 4096, 1)) * 4096
    else:
        o = rng.randrange(max(len(img.d) // 4096, 1)) * 4096
    o = o & ~4095
    n = max(0, min(4096, len(img.d) - o))
    img.d[o:o + n] = bytes(n)
    return f'4 KiB zeroed at {o:#x}'


def rt_size_past_end(img, rng):
    n = (len(img.d) - img.rt_off) // img.cs + rng.choice([1, 2, 16])
    struct.pack_into('>I', img.d, 56, n)
    return f'refcount table clusters = {n}'


def shared_data(img, rng):
    """Two L2 entries (of two tables if there are) on one data cluster
    whose refcount stays 1."""
    slots = data_slots(img)
    a = rng.choice(slots)
    others = [o for o in slots if o != a and
              (o // img.cs != a // img.cs or rng.random() < 0.3)] or \
        [o for o in slots if o != a]
    if not others:
        return 'no second data entry'
    b = rng.choice(others)
    v = (img.q(b) & ~0x00fffffffffffe00) | (img.q(a) & 0x00fffffffffffe00)
    img.setq(b, v)
    return f'{b:#x} shares the data cluster of {a:#x}'


def shared_l2(img, rng):
    """A snapshot's L1 entry on the active L2 table, with or without
    OFLAG_COPIED on the active entry."""
    a = rng.choice(img.l1_slots())
    b = rng.choice(img.snapshot_l1_slots())
    l2 = img.q(a) & 0x00fffffffffffe00
    img.setq(b, l2)
    copied = rng.random() < 0.5
    img.setq(a, l2 | (1 << 63 if copied else 0))
    return f'snapshot L1 {b:#x} on L2 table {l2:#x}, copied {copied}'


def far_cluster(img, rng):
    """A data cluster past a 2 GiB hole (a sparse file), referenced by
    an L2 entry or only leaked; its refcount is not recorded."""
    off = ((len(img.d) + (2 << 30)) // img.cs + 1) * img.cs
    img.far.append((off, bytes([0x5a]) * img.cs))
    slots = data_slots(img)
    if slots and rng.random() < 0.7:
        o = rng.choice(slots)
        img.setq(o, (img.q(o) & ~0x00fffffffffffe00) | off)
        return f'{o:#x} -> cluster at {off:#x} past a hole'
    return f'unreferenced cluster at {off:#x} past a hole'


def nb_snapshots(img, rng):
    if img.nb_sn:
        v = rng.choice([0, 0, img.nb_sn + 1])
        struct.pack_into('>I', img.d, 60, v)
        return f'nb_snapshots = {v} (table at {img.sn_off:#x})'
    off = rng.choice([0, img.l1_off, (len(img.d) + img.cs - 1) &
                      ~(img.cs - 1), img.rt_off + img.cs])
    struct.pack_into('>IQ', img.d, 60, 1, off)
    return f'nb_snapshots = 1, table at {off:#x}'


def feature_names(img, rng):
    """The feature name table with garbage names, sometimes one naming
    an unknown incompatible bit the header sets."""
    e = img.ext(0x6803f857)
    n, = struct.unpack_from('>I', img.d, e - 4)
    chars = [c for c in range(32, 127)] + [9, 10, 0]
    for pos in range(e, e + n - n % 48, 48):
        if rng.random() < 0.6:
            k = rng.choice([46, rng.randrange(1, 46)])
            name = bytes(rng.choice(chars) for _ in range(k))
            img.d[pos + 2:pos + 48] = name.ljust(46, b'\0')
    what = 'garbage feature names'
    if rng.random() < 0.5:
        pos = e + 48 * rng.randrange(max(n // 48, 1))
        bit = rng.choice([5, 9, 30, 63])
        img.d[pos] = 0
        img.d[pos + 1] = bit
        incompat, = struct.unpack_from('>Q', img.d, 72)
        struct.pack_into('>Q', img.d, 72, incompat | (1 << bit))
        what += f', incompatible bit {bit} set and named'
    return what


def header_bits(img, rng):
    compat, = struct.unpack_from('>Q', img.d, 80) \
        if len(img.d) >= 88 and img.d[7] == 3 else (0,)
    incompat, = struct.unpack_from('>Q', img.d, 72)
    bit = rng.choice([1, 2]) if not compat & 1 else 2
    struct.pack_into('>Q', img.d, 72, incompat | bit)
    return f'incompatible features |= {bit} (lazy {bool(compat & 1)})'


DAMAGES4 = {
    'truncate': (lambda i: True, truncate),
    'zero-page': (lambda i: True, zero_page),
    'rt-size-past-end': (lambda i: True, rt_size_past_end),
    'shared-data': (lambda i: len(data_slots(i)) > 1, shared_data),
    'shared-l2': (lambda i: i.l1_slots() and i.snapshot_l1_slots(),
                  shared_l2),
    'far-cluster': (lambda i: True, far_cluster),
    'nb-snapshots': (lambda i: i.d[7] == 3, nb_snapshots),
    'feature-names': (lambda i: i.d[7] == 3 and i.ext(0x6803f857),
                      feature_names),
    'header-bits': (lambda i: i.d[7] == 3, header_bits),
}


DAMAGES = {
    'l1-bit': (lambda i: i.l1_slots(),
               lambda i, r: flip(i, r, i.l1_slots())),
    'l2-bit': (lambda i: i.l2_slots(),
               lambda i, r: flip(i, r, i.l2_slots())),
    'l2-bit-low': (lambda i: i.l2_slots(),
                   lambda i, r: flip(i, r, i.l2_slots(), 0, 12)),
    'l2-point': (lambda i: i.l2_slots(), l2_point),
    'l1-point': (lambda i: i.l1_slots(), l1_point),
    'rt-bit': (lambda i: i.rt_slots(),
               lambda i, r: flip(i, r, i.rt_slots(), 0, 40)),
    'rt-point': (lambda i: i.rt_slots(), rt_point),
    'refcount': (lambda i: True, refcount_change),
    'header': (lambda i: True, header_field),
    'copied': (lambda i: i.l1_slots() or i.l2_slots(), copied_flag),
    'overlap': (lambda i: i.l1_slots() or i.rt_slots(), overlap),
    'snapshot': (lambda i: i.nb_sn > 0, sn_entry),
    'l2-zero-alloc': (lambda i: i.l2_slots() and not i.ext_l2,
                      lambda i, r: set_to(i, r, i.l2_slots(), [
                          (i.q(i.l2_slots()[0]) | 1)])),
}


def damaged_image(bases, seed, d):
    """The image of @seed in directory @d and what was done to it."""
    rng = random.Random(seed)
    names = [n for n, _, _ in (BASES if seed < SEEDS2 else BASES2)]
    name = rng.choice(sorted(names))
    with open(bases[name], 'rb') as f:
        img = Image(f.read())
    table = DAMAGES
    if seed >= SEEDS2:
        # mostly the later damages, where the base has what they need
        new = any(DAMAGES2[k][0](img) for k in DAMAGES2)
        table = DAMAGES2 if new and rng.random() < 0.6 else \
            {**DAMAGES, **DAMAGES2, **DAMAGES3}
    if seed >= SEEDS4:
        # mostly the crash damages, sometimes with an earlier one
        table = DAMAGES4 if rng.random() < 0.7 else \
            {**DAMAGES, **DAMAGES2, **DAMAGES3, **DAMAGES4}
    what = damage(img, rng, table)
    if rng.random() < 0.25:
        what += '; ' + damage(img, rng, table)
    p = os.path.join(d, 'img.qcow2')
    with open(p, 'wb') as f:
        f.write(img.d)
        for off, data in img.far:
            f.seek(off)
            f.write(data)
    if name in EXTRA_FILES:
        shutil.copy(os.path.join(os.path.dirname(bases[name]),
                                 EXTRA_FILES[name]), d)
    return p, f'{name} {what}'


def copy_sparse(src, dst):
    """A copy keeping holes (images past a 2 GiB hole)."""
    subprocess.run(['cp', '--sparse=always', src, dst], check=True)


def res(r):
    # the reference names nodes with a random part ('#block118')
    return (r.rc, r.out, re.sub(r"'#block\d+'", "'#block'", r.err))


def header_info(r):
    """What info says of the header (dirty, corrupt, snapshots), not of
    the file's size."""
    return (r.rc, [line for line in r.out.splitlines()
                   if 'disk size' not in line and 'file length' not in line],
            r.err)


def compare_seed(bases, seed, ours, ref, work):
    """The differences between the tools on @seed's image (a list of
    (what, reference result, ours))."""
    diffs = []
    dirs = {}
    for who in ('ref', 'our'):
        dirs[who] = os.path.join(work, who)
        shutil.rmtree(dirs[who], ignore_errors=True)
        os.makedirs(dirs[who])
        src, what = damaged_image(bases, seed, dirs[who])
    tools = {'ref': ref, 'our': ours}
    for args in ([], ['--output=json']):
        a, b = (run([tools[w], 'check', *args, 'img.qcow2'], cwd=dirs[w],
                    timeout=30) for w in ('ref', 'our'))
        if res(a) != res(b):
            diffs.append((f'check {args}', a, b))
    for mode in ('leaks', 'all'):
        for args in ([], ['--output=json']):
            for w in ('ref', 'our'):
                copy_sparse(os.path.join(dirs[w], 'img.qcow2'),
                            os.path.join(dirs[w], 'fix.qcow2'))
            a, b = (run([tools[w], 'check', '-r', mode, *args, 'fix.qcow2'],
                        cwd=dirs[w], timeout=30) for w in ('ref', 'our'))
            if res(a) != res(b):
                diffs.append((f'check -r {mode} {args}', a, b))
            if args:
                continue
            a, b = (run([ref, 'check', 'fix.qcow2'], cwd=dirs[w],
                        timeout=30) for w in ('ref', 'our'))
            if res(a) != res(b):
                diffs.append((f'ref check after -r {mode}', a, b))
            a, b = (run([ref, 'info', '-U', 'fix.qcow2'], cwd=dirs[w],
                        timeout=30) for w in ('ref', 'our'))
            if header_info(a) != header_info(b):
                diffs.append((f'ref info after -r {mode}', a, b))
            c = run([ref, 'compare', '-f', 'qcow2', '-F', 'qcow2',
                     os.path.join(dirs['ref'], 'fix.qcow2'),
                     os.path.join(dirs['our'], 'fix.qcow2')], timeout=30)
            if c.rc != 0:
                own = run([ref, 'compare', '-f', 'qcow2', '-F', 'qcow2',
                           os.path.join(dirs['ref'], 'fix.qcow2'),
                           os.path.join(dirs['ref'], 'fix.qcow2')],
                          timeout=30)
                if own.rc != c.rc:
                    diffs.append((f'compare after -r {mode}', own, c))
    return what, accepted(diffs)


def efbig_free(a, b):
    """A table 1 PiB or 32 TiB past the end (a bitmap table, a snapshot
    table) freed after a repair: the reference's refcount update grows
    refcount structures out there and fails with EFBIG ('File too
    large'; the clusters leak, its double check may report them); ours
    refuses that free ('qcow2_free_clusters failed' with another errno)
    and ends clean.  Whether @a (reference) and @b (ours) differ only
    so."""
    def strip(r):
        out = r.out.split('Double checking')[0]
        try:
            out = json.loads(out)
            out.pop('leaks', None)
        except ValueError:
            pass
        err, freed = [], False
        for line in res(r)[2].splitlines():
            freed |= 'qcow2_free_clusters failed' in line
            if not ('qcow2_free_clusters failed' in line or
                    'Failed to flush the refcount block cache' in line or
                    (freed and line.startswith('Leaked cluster'))):
                err.append(line)
        return out, err
    return ('qcow2_free_clusters failed: File too large' in a.err and
            'File too large' not in b.err and
            (a.rc == b.rc or (a.rc == 3 and b.rc == 0)) and
            strip(a) == strip(b))


def drops_snapshots(what, diffs):
    """Likely the deliberate difference: the reference's check -r of an
    image with bitmaps drops its snapshots (docs/conformance.md); only
    flagged, never accepted."""
    return what.startswith('bitmap') and \
        re.search(r'snapshot|header 6[04] ', what) is not None and \
        all(w.startswith(('check -r', 'ref ', 'compare')) for w, _, _ in diffs)


def accepted(diffs):
    """@diffs without the differences a known reference bug explains
    (efbig_free(), and the leaks it leaves for the reference's check)."""
    efbig = {w.split()[2] for w, a, b in diffs
             if w.startswith('check -r') and efbig_free(a, b)}
    out = []
    for w, a, b in diffs:
        mode = w.split()[-1] if w.startswith('ref check after') else None
        if w.startswith('check -r') and efbig_free(a, b):
            continue
        if mode in efbig and b.rc == 0 and a.rc == 3 and \
                'ERROR' not in a.err:
            continue
        out.append((w, a, b))
    return out


# seeds the test runs: differences found and fixed (an L1 entry into
# its own table's cluster, unaligned or not; a lazy-refcounts image
# with too many snapshots; the L1 table on the refcount table; a 64-bit
# refcount of all ones), then a spread of bases and damage kinds
# From 30000 (more bases and damages): found and fixed (a data file
# name without its feature bit kept in a rewritten header; close-time
# write-backs checked against active L2 tables; a snapshot's extra data
# size near 4 GiB; a bitmap table entry with reserved bits fails the
# check; OFLAG_COPIED repaired under -r leaks beside a damaged snapshot
# table; a header allocation refused before a refcount block write the
# overlap check refuses too), then compressed descriptors, snapshot L1 tables,
# bitmap tables and entries, extended L2 bitmaps, a raw external data
# file, a dirty lazy-refcounts image with a snapshot
# Sixth session: a check after a rebuild on a node marked corrupt (the
# bitmap directory does not load); a dirty image's free clusters used
# again after check -r (also when corruptions remain); bitmap clusters
# refused by the overlap check freed; old bitmap clusters freed in the
# reference's order; the reference's EFBIG free accepted (efbig_free());
# the in-place bitmap directory update refused by the overlap check;
# the snapshot count and offset read from the file for each check (a
# double check after the old table was freed with the header cluster
# it sat on)
SEEDS = [40, 50, 44, 409, 392, 2, 21, 28,
         30034, 30048, 30345, 30920, 30786, 30630,
         30003, 30006, 30007, 30020, 30028, 30035, 30056, 30004,
         31695, 31004, 30342, 31311, 32530, 30856, 40007, 40618, 41437,
         41962]


@pytest.fixture(scope='module')
def bases(tmp_path_factory, ref_qemu_img, ref_qemu_io):
    return make_bases(str(tmp_path_factory.mktemp('bases')), ref_qemu_img,
                      ref_qemu_io)


@pytest.mark.parametrize('seed', SEEDS)
def test_damaged_image_check_and_repair(tmp_path, bases, our_qemu_img,
                                        ref_qemu_img, seed):
    what, diffs = compare_seed(bases, seed, our_qemu_img, ref_qemu_img,
                               str(tmp_path))
    assert not diffs, f'{what}\n' + '\n'.join(
        f'{w}:\nreference: {a}\nours: {b}' for w, a, b in diffs)


def main(argv):
    verbose = '-v' in argv
    argv = [a for a in argv if a != '-v']
    if argv[0] == '--seeds':
        seeds = [int(x) for x in argv[1].split(',')]
    else:
        seeds = range(int(argv[0]), int(argv[1]))
    build = os.environ.get('STRATA_BUILD', 'build')
    work = tempfile.mkdtemp(prefix='qcow2-check-diff-')
    bindir = os.path.join(work, 'bin')
    os.makedirs(bindir)
    # a copy: a rebuild during a long run does not pull it away
    shutil.copy(os.path.join(build, 'tools/img/strata-img'),
                os.path.join(bindir, 'qemu-img'))
    ref = os.path.join(REF_BIN, 'qemu-img')
    bases = make_bases(work, ref, os.path.join(REF_BIN, 'qemu-io'))
    bad = 0
    for seed in seeds:
        try:
            what, diffs = compare_seed(bases, seed,
                                       os.path.join(bindir, 'qemu-img'),
                                       ref, os.path.join(work, 'run'))
        except subprocess.TimeoutExpired as e:
            # a repair growing the file without end (either tool)
            what, diffs = 'timeout', [(' '.join(e.cmd[-4:]), None, None)]
        if diffs:
            bad += 1
            print(f'seed {seed}: {what}: ' +
                  ', '.join(w for w, _, _ in diffs) +
                  (' (snapshots dropped?)' if drops_snapshots(what, diffs)
                   else ''), flush=True)
            if verbose:
                for w, a, b in diffs:
                    print(f'  {w}:\n  reference: {a}\n  ours: {b}')
    print(f'{len(seeds)} images, {bad} differ')
    shutil.rmtree(work)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
