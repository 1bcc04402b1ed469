#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_measure(int argc, char **argv)
{
    error_report("'measure' is not implemented yet");
    return 1;
}
