#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_bench(int argc, char **argv)
{
    error_report("'bench' is not implemented yet");
    return 1;
}
