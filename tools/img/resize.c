#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_resize(int argc, char **argv)
{
    error_report("'resize' is not implemented yet");
    return 1;
}
