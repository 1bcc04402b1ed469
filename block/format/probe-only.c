#include "config.h"
/*
 * Formats Strata recognises but cannot open yet: a probe and nothing else.
 *
 * Each entry is a format driver with only a name and the reference's
 * probe (same signature checks, same scores), flagged not_yet_supported.
 * Registered as drivers, they take part in probing like any format, so a
 * vmdk or luks image is never guessed to be raw (nor written as raw), and
 * "-f vmdk", "driver=vmdk" and a probe all meet the same refusal in the
 * open path (block/open.c) and in the tools.  They are registered after
 * every real driver, so a real driver of the same name shadows its entry.
 *
 * Why one table file rather than a file per format: an entry is a dozen
 * lines, and when a format gets its driver (block/format/<fmt>.c), the
 * probe moves there and the entry and its probe are deleted here; one
 * place lists what is still missing.
 *
 * The reference probes a 2048-byte buffer (the image's head, zero-padded
 * past its end); offsets below are into that buffer.
 */
#include <string.h>
#include "block/drivers.h"

/* Header fields, at any alignment. */
static uint32_t get_be32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_BE(v);
}

static uint32_t get_le32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_LE(v);
}

/* @len bytes at @offset are @magic (which may hold NULs), within @buf. */
static bool has_magic(const uint8_t *buf, int buf_size, int offset,
                      const char *magic, int len)
{
    return buf_size >= offset + len && !memcmp(buf + offset, magic, len);
}

/* ---- qcow, qcow2: "QFI\xfb", then the version (be32 at 4) ---- */

/* The version of a qcow-family header, 0 if there is no such header
 * (the reference wants a whole qcow header: 48 bytes). */
static uint32_t qcow_family_version(const uint8_t *buf, int buf_size)
{
    if (buf_size < 48 || !has_magic(buf, buf_size, 0, "QFI\xfb", 4)) {
        return 0;
    }
    return get_be32(buf + 4);
}

static int qcow_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    return qcow_family_version(buf, buf_size) == 1 ? 100 : 0;
}

/* ---- qed: "QED\0" (le32 magic) in a 64-byte header ---- */

static int qed_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    return buf_size >= 64 && has_magic(buf, buf_size, 0, "QED", 4) ? 100 : 0;
}

/* ---- vmdk: a sparse extent, or a text descriptor ---- */

/* A descriptor's "version=1..3" line, LF or CRLF, starting at @p. */
static bool vmdk_version_line(const char *p, const char *end)
{
    size_t left = end - p;

    if (left < strlen("version=X\n") || strncmp(p, "version=", 8) ||
        p[8] < '1' || p[8] > '3') {
        return false;
    }
    return p[9] == '\n' || (left >= strlen("version=X\r\n") &&
                            p[9] == '\r' && p[10] == '\n');
}

/* Descriptor files: "version=" must be the first line that is neither a
 * '#' comment nor made of spaces (a truly empty line does not count as
 * blank for the reference, which then gives up). */
static int vmdk_descriptor_probe(const char *p, const char *end)
{
    while (p < end) {
        if (*p == '#') {
            p = memchr(p, '\n', end - p);
            if (!p) {
                return 0;
            }
            p++;
        } else if (*p == ' ') {
            while (p < end && *p == ' ') {
                p++;
            }
            p += p < end && *p == '\r';
            if (p == end || *p != '\n') {
                return 0;
            }
            p++;
        } else {
            return vmdk_version_line(p, end) ? 100 : 0;
        }
    }
    return 0;
}

/* Sparse extents start "KDMV" (VMDK4) or "COWD" (VMDK3). */
static int vmdk_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    if (has_magic(buf, buf_size, 0, "KDMV", 4) ||
        has_magic(buf, buf_size, 0, "COWD", 4)) {
        return 100;
    }
    return vmdk_descriptor_probe((const char *)buf,
                                 (const char *)buf + buf_size);
}

/* ---- vhdx: the file type identifier "vhdxfile" at 0 ---- */

static int vhdx_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    return has_magic(buf, buf_size, 0, "vhdxfile", 8) ? 100 : 0;
}

/* ---- vdi: signature 0xbeda107f (le32 at 0x40) in a 512-byte header ---- */

static int vdi_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    return buf_size >= 512 && get_le32(buf + 0x40) == 0xbeda107f ? 100 : 0;
}

/* ---- vpc: the footer copy at offset 0, cookie "conectix" ----
 * Dynamic and differencing images start with it; a fixed image has its
 * only footer at the end, which the reference's probe does not look at
 * (it guesses raw, and so do we). */

static int vpc_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    return has_magic(buf, buf_size, 0, "conectix", 8) ? 100 : 0;
}

/* ---- parallels: one of two 16-byte magics, version 2 (le32 at 16) ---- */

static int parallels_probe(const uint8_t *buf, int buf_size,
                           const char *filename)
{
    if (buf_size < 64) {
        return 0;
    }
    if (!has_magic(buf, buf_size, 0, "WithoutFreeSpace", 16) &&
        !has_magic(buf, buf_size, 0, "WithouFreSpacExt", 16)) {
        return 0;
    }
    return get_le32(buf + 16) == 2 ? 100 : 0;
}

/* ---- bochs: NUL-terminated strings in fixed fields of a 512-byte
 * header: magic[32], type[16], subtype[16], then version (le32 at 64),
 * 0x00010000 or 0x00020000 ---- */

static int bochs_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    uint32_t version;

    if (buf_size < 512 ||
        !has_magic(buf, buf_size, 0, "Bochs Virtual HD Image", 23) ||
        !has_magic(buf, buf_size, 32, "Redolog", 8) ||
        !has_magic(buf, buf_size, 48, "Growing", 8)) {
        return 0;
    }
    version = get_le32(buf + 64);
    return version == 0x00010000 || version == 0x00020000 ? 100 : 0;
}

/* ---- cloop: the V2.0 shell preamble; a weak score (2), as the
 * reference gives it: it is only text ---- */

static int cloop_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    static const char magic[] =
        "#!/bin/sh\n#V2.0 Format\n"
        "modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";
    int len = MIN((int)strlen(magic), buf_size);

    return !memcmp(buf, magic, len) ? 2 : 0;
}

/* ---- dmg: the reference goes by the name alone (score 2: any signature
 * wins over it); its open then looks for the "koly" trailer at the end.
 * So a file named *.dmg is dmg unless its head says otherwise. ---- */

static int dmg_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    size_t len = filename ? strlen(filename) : 0;

    return len > 4 && !strcmp(filename + len - 4, ".dmg") ? 2 : 0;
}

/* ---- luks: "LUKS\xba\xbe", version 1 (be16 at 6); LUKS2 is not the
 * reference's luks ---- */

static int luks_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    if (buf_size < 8 || !has_magic(buf, buf_size, 0, "LUKS\xba\xbe", 6)) {
        return 0;
    }
    return buf[6] == 0 && buf[7] == 1 ? 100 : 0;
}

/* The table: delete an entry (and its probe above) when its driver lands. */
const BlockDriver bdrv_probe_only_formats[] = {
    { .format_name = "bochs", .kind = BDRV_KIND_FORMAT,
      .probe = bochs_probe, .not_yet_supported = true },
    { .format_name = "cloop", .kind = BDRV_KIND_FORMAT,
      .probe = cloop_probe, .not_yet_supported = true },
    { .format_name = "dmg", .kind = BDRV_KIND_FORMAT,
      .probe = dmg_probe, .not_yet_supported = true },
    { .format_name = "luks", .kind = BDRV_KIND_FORMAT,
      .probe = luks_probe, .not_yet_supported = true },
    { .format_name = "parallels", .kind = BDRV_KIND_FORMAT,
      .probe = parallels_probe, .not_yet_supported = true },
    { .format_name = "qcow", .kind = BDRV_KIND_FORMAT,
      .probe = qcow_probe, .not_yet_supported = true },
    { .format_name = "qed", .kind = BDRV_KIND_FORMAT,
      .probe = qed_probe, .not_yet_supported = true },
    { .format_name = "vdi", .kind = BDRV_KIND_FORMAT,
      .probe = vdi_probe, .not_yet_supported = true },
    { .format_name = "vhdx", .kind = BDRV_KIND_FORMAT,
      .probe = vhdx_probe, .not_yet_supported = true },
    { .format_name = "vmdk", .kind = BDRV_KIND_FORMAT,
      .probe = vmdk_probe, .not_yet_supported = true },
    { .format_name = "vpc", .kind = BDRV_KIND_FORMAT,
      .probe = vpc_probe, .not_yet_supported = true },
    { .format_name = NULL },
};
