#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_dd(int argc, char **argv)
{
    error_report("'dd' is not implemented yet");
    return 1;
}
