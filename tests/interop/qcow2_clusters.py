"""Reading and patching compressed-cluster descriptors of a qcow2 image
(version 2/3, standard L2 entries), for codec interop tests and for
extracting fuzz seeds from reference-made images."""
import struct

QCOW_OFLAG_COMPRESSED = 1 << 62
L2_OFFSET_MASK = 0x00fffffffffffe00


def header(f):
    f.seek(0)
    h = f.read(48)
    magic, version, _bf_off, _bf_size, cluster_bits, size, _crypt, \
        l1_size, l1_off = struct.unpack('>IIQIIQIIQ', h[:48])
    assert magic == 0x514649fb, 'not a qcow2 image'
    return cluster_bits, size, l1_size, l1_off


def compressed_clusters(path):
    """Yield (guest_offset, l2_entry_file_offset, host_offset, nbytes) for
    every compressed cluster; nbytes runs to the end of the descriptor's
    last sector (so it may include bytes past the stream)."""
    with open(path, 'rb') as f:
        cluster_bits, size, l1_size, l1_off = header(f)
        csize = 1 << cluster_bits
        x = 62 - (cluster_bits - 8)
        per_l2 = csize // 8
        f.seek(l1_off)
        l1 = struct.unpack(f'>{l1_size}Q', f.read(8 * l1_size))
        for i, l1e in enumerate(l1):
            l2_off = l1e & L2_OFFSET_MASK
            if not l2_off:
                continue
            f.seek(l2_off)
            l2 = struct.unpack(f'>{per_l2}Q', f.read(csize))
            for j, e in enumerate(l2):
                if not e & QCOW_OFLAG_COMPRESSED:
                    continue
                desc = e & ((1 << 62) - 1)
                host = desc & ((1 << x) - 1)
                nsec = (desc >> x) & ((1 << (62 - x)) - 1)
                nbytes = (nsec + 1) * 512 - (host & 511)
                guest = (i * per_l2 + j) * csize
                yield guest, l2_off + 8 * j, host, nbytes


def read_payload(path, host, nbytes):
    with open(path, 'rb') as f:
        f.seek(host)
        return f.read(nbytes)


def append_payload(path, l2_entry_pos, payload):
    """Place @payload at the (sector-aligned) end of the file and point
    the compressed descriptor at @l2_entry_pos to it.  Refcounts are left
    alone: the image reads correctly but `check` would find leaks."""
    with open(path, 'r+b') as f:
        cluster_bits = header(f)[0]
        x = 62 - (cluster_bits - 8)
        f.seek(0, 2)
        host = (f.tell() + 511) & ~511
        f.seek(host)
        f.write(payload)
        nsec = (len(payload) + 511) // 512 - 1
        assert nsec < 1 << (62 - x)
        f.seek(l2_entry_pos)
        f.write(struct.pack('>Q', QCOW_OFLAG_COMPRESSED | (nsec << x) | host))
