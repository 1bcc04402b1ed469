#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_check(int argc, char **argv)
{
    error_report("'check' is not implemented yet");
    return 1;
}
