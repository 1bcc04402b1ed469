/*
 * Plain-program driver for the fuzz harnesses: without libFuzzer, run
 * LLVMFuzzerTestOneInput on every file named on the command line (or every
 * file in a directory named there), so the corpus doubles as a test.
 */
#ifndef STRATA_FUZZ_MAIN_H
#define STRATA_FUZZ_MAIN_H

#include <glib.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef STRATA_LIBFUZZER
/* Feeds one file to the harness; false if it cannot be read. */
static bool fuzz_run_file(const char *path)
{
    g_autofree char *buf = NULL;
    gsize len;

    if (!g_file_get_contents(path, &buf, &len, NULL)) {
        fprintf(stderr, "cannot read %s\n", path);
        return false;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
    return true;
}

/* Runs a file, or each regular file inside a directory. */
static bool fuzz_run_path(const char *path)
{
    GDir *dir = g_dir_open(path, 0, NULL);
    const char *name;
    bool ok = true;

    if (!dir) {
        return fuzz_run_file(path);
    }
    while ((name = g_dir_read_name(dir))) {
        g_autofree char *full = g_build_filename(path, name, NULL);
        ok &= fuzz_run_file(full);
    }
    g_dir_close(dir);
    return ok;
}

int main(int argc, char **argv)
{
    bool ok = true;

    for (int i = 1; i < argc; i++) {
        ok &= fuzz_run_path(argv[i]);
    }
    printf("%s\n", ok ? "ok" : "failed");
    return ok ? 0 : 1;
}
#endif

#endif
