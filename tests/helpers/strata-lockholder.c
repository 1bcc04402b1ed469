/*
 * Test helper: hold an image open through the block layer with chosen
 * permissions and sharing, until killed.  Lets interop tests show that
 * Strata's locks exclude the reference tools in roles strata-io never takes.
 *
 * Usage: strata-lockholder IMAGE PERMS SHARED
 *   PERMS, SHARED: comma-separated permission names (consistent-read,
 *   write, write-unchanged, resize) or "none" / "all".
 */
#include "config.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "block/block.h"

static const struct { const char *name; uint64_t bit; } perm_names[] = {
    { "consistent-read", BLK_PERM_CONSISTENT_READ },
    { "write", BLK_PERM_WRITE },
    { "write-unchanged", BLK_PERM_WRITE_UNCHANGED },
    { "resize", BLK_PERM_RESIZE },
};

/* Parse a comma list of permission names; false on an unknown name. */
static bool parse_perms(const char *list, uint64_t *out)
{
    g_auto(GStrv) parts = g_strsplit(list, ",", -1);
    *out = 0;
    if (!strcmp(list, "all")) {
        *out = BLK_PERM_ALL;
        return true;
    }
    for (int i = 0; parts[i]; i++) {
        size_t j;
        for (j = 0; j < G_N_ELEMENTS(perm_names); j++) {
            if (!strcmp(parts[i], perm_names[j].name)) {
                *out |= perm_names[j].bit;
                break;
            }
        }
        if (j == G_N_ELEMENTS(perm_names) && strcmp(parts[i], "none")) {
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    uint64_t perm, shared;
    Error *err = NULL;

    error_set_progname(argv[0]);
    if (argc != 4 || !parse_perms(argv[2], &perm) || !parse_perms(argv[3], &shared)) {
        fprintf(stderr, "usage: %s IMAGE PERMS SHARED\n", argv[0]);
        return 2;
    }
    bdrv_init();
    QDict *opts = qdict_new();
    qdict_put_str(opts, "driver", "raw");
    BlockDriverState *bs = bdrv_open(argv[1], NULL, opts,
                                     (perm & (BLK_PERM_WRITE | BLK_PERM_RESIZE))
                                     ? BDRV_O_RDWR : 0, &err);
    if (!bs) {
        error_report_err(err);
        return 1;
    }
    BlockBackend *blk = blk_new(perm, shared);
    if (blk_insert_bs(blk, bs, &err) < 0) {
        error_report_err(err);
        return 1;
    }
    bdrv_unref(bs);
    for (;;) {
        pause();
    }
}
