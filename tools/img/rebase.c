#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_rebase(int argc, char **argv)
{
    error_report("'rebase' is not implemented yet");
    return 1;
}
