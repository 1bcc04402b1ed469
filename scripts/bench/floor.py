#!/usr/bin/env python3
"""The floor of a convert on this machine: read every data extent of SRC
(SEEK_DATA/SEEK_HOLE) and write the bytes one after the other into a new
file DST, 2 MiB at a time, a reader thread and a writer thread running at
once with four buffers between them.  No format, no zero detection, no
metadata: what is left is the kernel's copies and page-cache work, which
every converter pays for the same bytes (os.preadv/os.pwrite release the
interpreter lock, so the two threads overlap as a C program's would).

Usage: scripts/bench/floor.py SRC DST"""
import os
import queue
import sys
import threading

CHUNK = 2 << 20


def extents(fd):
    """(offset, length) of each data extent of @fd, in CHUNK pieces."""
    end = os.fstat(fd).st_size
    off = 0
    while off < end:
        try:
            data = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            return
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        for o in range(data, hole, CHUNK):
            yield o, min(CHUNK, hole - o)
        off = hole


def main():
    src, dst = sys.argv[1:3]
    fin = os.open(src, os.O_RDONLY)
    fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    free, full = queue.Queue(), queue.Queue()
    for _ in range(4):
        free.put(bytearray(CHUNK))

    def writer():
        pos = 0
        while True:
            item = full.get()
            if item is None:
                return
            buf, n = item
            os.pwrite(fout, memoryview(buf)[:n], pos)
            pos += n
            free.put(buf)

    t = threading.Thread(target=writer)
    t.start()
    for off, n in extents(fin):
        buf = free.get()
        os.preadv(fin, [memoryview(buf)[:n]], off)
        full.put((buf, n))
    full.put(None)
    t.join()
    os.close(fout)
    os.close(fin)


if __name__ == '__main__':
    main()
