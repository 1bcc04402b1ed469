#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_convert(int argc, char **argv)
{
    error_report("'convert' is not implemented yet");
    return 1;
}
