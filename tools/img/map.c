#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_map(int argc, char **argv)
{
    error_report("'map' is not implemented yet");
    return 1;
}
