#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_amend(int argc, char **argv)
{
    error_report("'amend' is not implemented yet");
    return 1;
}
