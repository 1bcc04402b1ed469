#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_bitmap(int argc, char **argv)
{
    error_report("'bitmap' is not implemented yet");
    return 1;
}
