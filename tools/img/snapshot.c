#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_snapshot(int argc, char **argv)
{
    error_report("'snapshot' is not implemented yet");
    return 1;
}
