#include "config.h"
/*
 * strata-img per-command help, in the layout of qemu-img 10.0:
 *
 *   Usage:
 *   <summary>.  Usage:
 *
 *     <prog> <command><synopsis>
 *
 *   Arguments:
 *   <argument descriptions>
 *
 * The program name is the one we were invoked under (basename), so the
 * qemu-img symlink prints exactly what the reference prints.
 */
#include <stdio.h>
#include <string.h>
#include "tools/img/img.h"

typedef struct ImgHelp {
    const char *cmd;
    const char *summary;
    const char *synopsis;     /* follows "<prog> <cmd>" */
    const char *arguments;
} ImgHelp;

static const ImgHelp img_help[] = {
    {
        "amend", "Update format-specific options of the image",
        " [-f FMT | --image-opts] [t CACHE] [--force] [-p] [-q]\n"
        "        [--object OBJDEF -o OPTIONS FILENAME",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -q, --quiet\n"
        "     quiet operation\n"
        "  -p, --progres\n"
        "     show progress\n"
        "  -f, --format FMT\n"
        "     specify FILENAME format explicitly\n"
        "  --image-opts\n"
        "     indicates that FILENAME is a complete image specification\n"
        "   instead of a file name (incompatible with --format)\n"
        "  -t, --cache CACHE\n"
        "     cache mode for FILENAME (writeback)\n"
        "  --force\n"
        "     allow certain unsafe operations\n",
    },
    {
        "bench", "Run simple image benchmark",
        " [-f FMT | --image-opts] [-t CACHE] [-c COUNT] [-d DEPTH]\n"
        "        [-o OFFSET] [-s BUFFER_SIZE] [-S STEP_SIZE] [-i AIO] [-n]\n"
        "        [-w [--pattern PATTERN] [--flush-interval INTERVAL [--no-drain]]]",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -q, --quiet\n"
        "     quiet operations\n"
        "  -f, --format FMT\n"
        "     specify FILENAME format explicitly\n"
        "  --image-opts\n"
        "     indicates that FILENAME is a complete image specification\n"
        "     instead of a file name (incompatible with --format)\n"
        "  -t, --cache CACHE\n"
        "     cache mode for FILENAME (writeback)\n"
        "  -c, --count COUNT\n"
        "     number of I/O requests to perform\n"
        "  -s, --buffer-size BUFFER_SIZE\n"
        "     size of each I/O request\n"
        "  -d, --depth DEPTH\n"
        "     number of requests to perform in parallel\n"
        "  -o, --offset OFFSET\n"
        "     start first request at this OFFSET\n"
        "  -S, --step-size STEP_SIZE\n"
        "     each next request offset increment\n"
        "  -i, --aio AIO\n"
        "     async-io backend (threads, native, io_uring)\n"
        "  -n, --native\n"
        "     use native AIO backend if possible\n"
        "  -w, --write\n"
        "     perform write test (default is read)\n"
        "  --pattern PATTERN\n"
        "     write this pattern byte instead of zero\n"
        "  --flush-interval FLUSH_INTERVAL\n"
        "     issue flush after this number of requests\n"
        "  --no-drain\n"
        "     do not wait when flushing pending requests\n"
        "  -U, --force-share\n"
        "     open images in shared mode for concurrent access\n",
    },
    {
        "bitmap", "Perform modifications of the persistent bitmap in the image",
        " ( --merge SOURCE | --add | --remove | --clear |\n"
        "                --enable | --disable ).. [-f FMT | --image-opts]\n"
        "        [ -b SRC_FILENAME [-F SOURCE_FMT]] [-g SIZE[KMGTPE]] [--object OBJDEF]\n"
        "        FILENAME BITMAP",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -f, --format FMT\n"
        "     specify FILENAME format explicitly\n"
        "  --image-opts\n"
        "     indicates that FILENAME is a complete image specification\n"
        "     instead of a file name (incompatible with --format)\n"
        "  --add\n"
        "     creates BITMAP, enables to record future edits\n"
        "   -g, --granularity SIZE[KMGTPE]\n"
        "     sets non-default bitmap granularity for --add to this size\n"
        "  --remove\n"
        "     removes BITMAP\n"
        "  --clear\n"
        "     clears BITMAP\n"
        "  --enable, --disable\n"
        "     starts and stops recording future edits to BITMAP\n"
        "  --merge SRC_FILENAME\n"
        "     merges contents of SRC_FILENAME bitmap into BITMAP\n"
        "   -b, --source-file SRC_FILENAME\n"
        "     select alternative source file for --merge\n"
        "   -F, --source-format SRC_FMT\n"
        "     specify format for SRC_FILENAME explicitly\n",
    },
    {
        "check", "Check basic image integrity",
        " [-f FMT | --image-opts] [-T CACHE_MODE] [-r] [-u]\n"
        "        [--output human|json] [--object OBJDEF] FILENAME",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -q, --quiet\n"
        "     quiet operations\n"
        "  -f, --format FMT\n"
        "     specifies format of the image explicitly\n"
        "  --image-opts\n"
        "     indicates that FILENAME is a complete image specification\n"
        "     instead of a file name (incompatible with --format)\n"
        "  -T, --cache CACHE_MODE\n"
        "     image cache mode (writeback)\n"
        "  -U, --force-share\n"
        "     open image in shared mode for concurrent access\n"
        "  --output human|json\n"
        "     output format\n"
        "  -r, --repair leaks|all\n"
        "     repair particular aspect of the image\n"
        "     (image will be open in read-write mode, incompatible with --force-share)\n"
        "  --object OBJDEF\n"
        "     QEMU user-creatable object (eg encryption key)\n"
        "  FILENAME\n"
        "     the image file (or image specification) to operate on\n",
    },
    {
        "commit", "Commit image to its backing file",
        " [-f FMT | --image-opts] [-t CACHE_MODE] [-b BASE_IMG] [-d]\n"
        "        [-r RATE] [--object OBJDEF] FILENAME",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -q, --quiet\n"
        "     quiet operations\n"
        "  -p, --progress\n"
        "     show operation progress\n"
        "  -f, --format FMT\n"
        "     specify FILENAME image format explicitly\n"
        "  --image-opts\n"
        "     indicates that FILENAME is a complete image specification\n"
        "     instead of a file name (incompatible with --format)\n"
        "  -t, --cache CACHE_MODE image cache mode (writeback)\n"
        "  -d, --drop\n"
        "     skip emptying FILENAME on completion\n"
        "  -b, --base BASE_IMG\n"
        "     image in the backing chain to which to commit changes\n"
        "     instead of the previous one (implies --drop)\n"
        "  -r, --rate RATE\n"
        "     I/O rate limit\n"
        "  --object OBJDEF\n"
        "     QEMU user-creatable object (eg encryption key)\n"
        "  FILENAME\n"
        "     name of the image file to operate on\n",
    },
    {
        "compare", "Check if two images have the same contents",
        " [--image-opts | [-f FMT] [-F FMT]] [-s]\n"
        "        [-T CACHE] [-U] [--object OBJDEF] FILENAME1 FILENAME2",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -q, --quiet\n"
        "     quiet operation\n"
        "  -p, --progress\n"
        "     show operation progress\n"
        "  -f, --a-format FMT\n"
        "     specify FILENAME1 image format explicitly\n"
        "  -F, --b-format FMT\n"
        "     specify FILENAME2 image format explicitly\n"
        "  --image-opts\n"
        "     indicates that FILENAMEs are complete image specifications\n"
        "     instead of file names (incompatible with --a-format and --b-format)\n"
        "  -s, --strict\n"
        "     strict mode, also check if sizes are equal\n"
        "  -T, --cache CACHE_MODE\n"
        "     images caching mode (writeback)\n"
        "  -U, --force-share\n"
        "     open images in shared mode for concurrent access\n"
        "  --object OBJDEF\n"
        "     QEMU user-creatable object (eg encryption key)\n"
        "  FILENAME1, FILENAME2\n"
        "     image files (or specifications) to compare\n",
    },
    {
        "convert", "Copy one image to another with optional format conversion",
        " [-f SRC_FMT|--image-opts] [-T SRC_CACHE] [--bitmaps [--skip-broken-bitmaps]]\n"
        "        [-o TGT_OPTS|--target-image-opts] [-t TGT_CACHE] [-n]\n"
        "        [-B BACKING_FILENAME [-F BACKING_FMT]]\n"
        "        SRC_FILENAME [SRC_FILENAME2 [...]] TGT_FILENAME",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -q, --quiet\n"
        "     quiet operations\n"
        "  -p, --progress\n"
        "     show operation progress\n"
        "  -f, --source-format SRC_FMT\n"
        "     specify SRC_FILENAME source image format explicitly\n"
        "  --source-image-opts\n"
        "     indicates that SRC_FILENAME is a complete image specification\n"
        "     instead of a file name (incompatible with --source-format)\n"
        "  -l, --source-snapshot SNAPSHOT_PARAMS\n"
        "     specify source snapshot parameters\n"
        "  -T, --source-cache SRC_CACHE\n"
        "     source image(s) cache mode (writeback)\n"
        "  -O, --target-format TGT_FMT\n"
        "     specify TGT_FILENAME image format (default is raw)\n"
        "  --target-image-opts\n"
        "     indicates that TGT_FILENAME is a complete image specification\n"
        "     instead of a file name (incompatible with --output-format)\n"
        "  -o, --target-options TGT_OPTS\n"
        "     TARGET_FMT-specific options\n"
        "  -c, --compress\n"
        "     create compressed output image (qcow and qcow2 format only)\n"
        "  -t, --target-cache TGT_CACHE\n"
        "     cache mode when opening output image (unsafe)\n"
        "  -B, --backing BACKING_FILENAME\n"
        "     create output to be a CoW on top of BACKING_FILENAME\n"
        "  -F, --backing-format BACKING_FMT\n"
        "     specify BACKING_FILENAME image format explicitly\n"
        "  -n, --no-create\n"
        "     omit target volume creation (eg on rbd)\n"
        "  --target-is-zero\n"
        "  -S, --sparse-size SPARSE_SIZE\n"
        "     minimum run of zero bytes to leave unallocated in the target (default 4k)\n"
        "  --bitmaps\n"
        "     also copy any persistent bitmaps present in source\n"
        "  --skip-broken-bitmaps\n"
        "     skip (do not error out) any broken bitmaps\n"
        "  -U, --force-share\n"
        "     open images in shared mode for concurrent access\n"
        "  -r, --rate RATE\n"
        "     I/O rate limit\n"
        "  -m, --parallel NUM_COROUTINES\n"
        "     specify parallelism (default 8)\n"
        "  -C, --copy-range-offloading\n"
        "     use copy_range offloading\n"
        "  --salvage\n"
        "     continue past read errors, writing zeroes for unreadable areas\n"
        "  -W, --oob-writes\n"
        "     enable out-of-order writes to improve performance\n"
        "  --object OBJDEF\n"
        "     QEMU user-creatable object (eg encryption key)\n"
        "  SRC_FILENAME\n"
        "     source image file name (or specification with --image-opts)\n"
        "  TGT_FILENAME\n"
        "     target (output) image file name\n",
    },
    {
        "create", "Create and format new image file",
        " [-f FMT] [-o FMT_OPTS] [-b BACKING_FILENAME [-F BACKING_FMT]]\n"
        "        [--object OBJDEF] [-u] FILENAME [SIZE[bkKMGTPE]]",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -q, --quiet\n"
        "     quiet operations\n"
        "  -f, --format FMT\n"
        "     specifies format of the new image, default is raw\n"
        "  -o, --options FMT_OPTS\n"
        "     format-specific options ('-o list' for list)\n"
        "  -b, --backing BACKING_FILENAME\n"
        "     stack new image on top of BACKING_FILENAME\n"
        "     (for formats which support stacking)\n"
        "  -F, --backing-format BACKING_FMT\n"
        "     specify format of BACKING_FILENAME\n"
        "  -u, --backing-unsafe\n"
        "     do not fail if BACKING_FMT can not be read\n"
        "  --object OBJDEF\n"
        "     QEMU user-creatable object (eg encryption key)\n"
        "  FILENAME\n"
        "     image file to create.  It will be overridden if exists\n"
        "  SIZE\n"
        "     image size with optional suffix (multiplies in 1024)\n"
        "     SIZE is required unless BACKING_IMG is specified,\n"
        "     in which case it will be the same as size of BACKING_IMG\n",
    },
    {
        "dd", "Copy input to output with optional format conversion",
        " [-f FMT|--image-opts] [-O OUTPUT_FMT] [-U]\n"
        "        [bs=BLOCK_SIZE] [count=BLOCKS] if=INPUT of=OUTPUT",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -f, --format FMT\n"
        "     specify format for INPUT explicitly\n"
        "  --image-opts\n"
        "     indicates that INPUT is a complete image specification\n"
        "     instead of a file name (incompatible with --format)\n"
        "  -O, --output-format OUTPUT_FMT\n"
        "     format of the OUTPUT (default raw)\n"
        "  -U, --force-share\n"
        "     open images in shared mode for concurrent access\n"
        "  bs=BLOCK_SIZE[kKMGTP]\n"
        "     size of I/O block (default 512)\n"
        "  count=COUNT\n"
        "     number of blocks to convert (default whole INPUT)\n"
        "  if=INPUT\n"
        "     input file name (or image specification with --image-opts)\n"
        "  of=OUTPUT\n"
        "     output file name to create\n",
    },
    {
        "info", "Display information about image",
        " [-f FMT | --image-opts] [-b] [-U] [--object OBJDEF]\n"
        "        [--output human|json] FILENAME",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -f, --format FMT\n"
        "     specify FILENAME image format explicitly\n"
        "  --image-opts\n"
        "     indicates that FILENAME is a complete image specification\n"
        "     instead of a file name (incompatible with --format)\n"
        "  -b, --backing-chain\n"
        "     display information about backing chaing\n"
        "  (in case the image is stacked\n"
        "  -U, --force-share\n"
        "     open image in shared mode for concurrent access\n"
        "  --object OBJDEF\n"
        "     QEMU user-creatable object (eg encryption key)\n"
        "  --output human|json\n"
        "     specify output format name (default human)\n"
        "  FILENAME\n"
        "     image file name (or specification with --image-opts)\n",
    },
    {
        "map", "Dump image metadata",
        " [-f FMT | --image-opts] [--object OBJDEF] [--output human|json]\n"
        "        [--start-offset OFFSET] [--max-length LENGTH] [-U] FILENAME",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -f, --format FMT\n"
        "     specify FILENAME image format explicitly\n"
        "  --image-opts\n"
        "     indicates that FILENAME is a complete image specification\n"
        "     instead of a file name (incompatible with --format)\n"
        "  --start-offset OFFSET\n"
        "  --max-length LENGTH\n"
        "  --output human|json\n"
        "     specify output format name (default human)\n"
        "  -U, --force-share\n"
        "     open image in shared mode for concurrent access\n"
        "  --object OBJDEF\n"
        "     QEMU user-creatable object (eg encryption key)\n"
        "  FILENAME\n"
        "     image file name (or specification with --image-opts)\n",
    },
    {
        "measure", "Calculate file size requred for a new image",
        " [-f FMT|--image-opts] [-o OPTIONS] [-O OUTPUT_FMT]\n"
        "       [--output OFMT] [--object OBJDEF] [-l SNAPSHOT_PARAM]\n"
        "       (--size SIZE | FILENAME)",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -O, --target-format FMT\n"
        "     desired target/output image format (default raw)\n"
        "  -s, --size SIZE\n"
        "     measure file size for given image size\n"
        "  FILENAME\n"
        "     measure file size required to convert from FILENAME\n"
        "  -f, --format\n"
        "     specify format of FILENAME explicitly\n"
        "  --image-opts\n"
        "     indicates that FILENAME is a complete image specification\n"
        "     instead of a file name (incompatible with --format)\n"
        "  -l, --snapshot SNAPSHOT\n"
        "     use this snapshot in FILENAME as source\n"
        "  --output human|json\n"
        "     output format\n"
        "  -U, --force-share\n"
        "     open images in shared mode for concurrent access\n",
    },
    {
        "rebase", "Change backing file of the image",
        " [-f FMT | --image-opts] [-t CACHE] [-q] [-U] [-p]\n"
        "        [-b BACKING_FILENAME [-F BACKING_FMT] [-T BACKING_CACHE]] [-u]\n"
        "        [--object OBJDEF] [-c] FILENAME\n"
        "Rebases FILENAME on top of BACKING_FILENAME or no backing file",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -q, --quiet\n"
        "     quiet operation\n"
        "  -p, --progress\n"
        "     show progress indicator\n"
        "  -f, --format FMT\n"
        "     specify FILENAME format explicitly\n"
        "  --image-opts\n"
        "     indicates that FILENAME is a complete image specification\n"
        "     instead of a file name (incompatible with --format)\n"
        "  -t, --cache CACHE\n"
        "     cache mode for FILENAME (writeback)\n"
        "  -b, --backing BACKING_FILENAME|\"\"\n"
        "     rebase onto this file (or no backing file)\n"
        "  -F, --backing-format BACKING_FMT\n"
        "     specify format for BACKING_FILENAME\n"
        "  -T, --backing-cache CACHE\n"
        "     BACKING_FILENAME cache mode (writeback)\n"
        "  -u, --backing-unsafe\n"
        "     do not fail if BACKING_FILENAME can not be read\n"
        "  -c, --compress\n"
        "     compress image (when image supports this)\n"
        "  -U, --force-share\n"
        "     open image in shared mode for concurrent access\n"
        "  --object OBJDEF\n"
        "     QEMU user-creatable object (eg encryption key)\n"
        "  FILENAME\n"
        "     image file name (or specification with --image-opts)\n",
    },
    {
        "resize", "Resize the image to the new size",
        " [-f FMT | --image-opts] [--preallocation PREALLOC] [--shrink]\n"
        "        [--object OBJECTDEF] [-q] FILENAME [+-]SIZE[bkKMGTPE]",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -q, --quiet\n"
        "     quiet operation\n"
        "  -f, --format FMT\n"
        "     specify FILENAME format explicitly\n"
        "  --image-opts\n"
        "     indicates that FILENAME is a complete image specification\n"
        "   instead of a file name (incompatible with --format)\n"
        "  --shrink\n"
        "     allow operation when new size is smaller than original\n"
        "  --preallocation PREALLOC\n"
        "     specify preallocation type for the new areas\n"
        "  --object OBJDEF\n"
        "     QEMU user-creatable object (eg encryption key)\n"
        "  FILENAME\n"
        "     image file (specification) to resize\n"
        "  [+-]SIZE[bkKMGTPE]\n"
        "     new image size or amount by which to shrink/grow,\n"
        "     with optional suffix (1024-based multiplies)\n",
    },
    {
        "snapshot", "List or manipulate snapshots within image",
        " [-f FMT | --image-opts] [-l | -a|-c|-d SNAPSHOT]\n"
        "        [-U] [--object OBJDEF] FILENAME",
        "  -h, --help\n"
        "     print this help and exit\n"
        "  -q, --quiet\n"
        "      quiet operations\n"
        "  -f, --format FMT\n"
        "      specify FILENAME format explicitly\n"
        "  --image-opts\n"
        "      indicates that FILENAME is a complete image specification\n"
        "   instead of a file name (incompatible with --format)\n"
        "  -U, --force-share\n"
        "      open image in shared mode for concurrent access\n"
        "  --object OBJDEF\n"
        "      QEMU user-creatable object (eg encryption key)\n"
        "  Operation, one of:\n"
        "    -l, --list\n"
        "       list snapshots in FILENAME (the default)\n"
        "    -c, --create SNAPSHOT\n"
        "       create named snapshot\n"
        "    -a, --apply SNAPSHOT\n"
        "       apply named snapshot to the base\n"
        "    -d, --delete SNAPSHOT\n"
        "       delete named snapshot\n"
        "  FILENAME - image file name (or specification with --image-opts)\n",
    },
    { NULL },
};

static const ImgHelp *find_help(const char *cmd)
{
    for (const ImgHelp *h = img_help; h->cmd; h++) {
        if (!strcmp(h->cmd, cmd)) {
            return h;
        }
    }
    return NULL;
}

void img_cmd_help(const char *cmd)
{
    const ImgHelp *h = find_help(cmd);

    if (!h) {
        printf("Usage: %s %s [OPTIONS]\n", error_get_progname(), cmd);
        return;
    }
    printf("Usage:\n%s.  Usage:\n\n  %s %s%s\n\nArguments:\n%s\n",
           h->summary, error_get_progname(), h->cmd, h->synopsis,
           h->arguments);
}
