#include "config.h"
/* placeholder while the help texts are being written */
#include <stdio.h>
#include "tools/img/img.h"

void img_cmd_help(const char *cmd)
{
    printf("Usage: %s %s [OPTIONS]\n", img_argv0(), cmd);
}
