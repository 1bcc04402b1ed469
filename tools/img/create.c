#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_create(int argc, char **argv)
{
    error_report("'create' is not implemented yet");
    return 1;
}
