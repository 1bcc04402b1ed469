#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_info(int argc, char **argv)
{
    error_report("'info' is not implemented yet");
    return 1;
}
