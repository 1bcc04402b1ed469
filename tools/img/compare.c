#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_compare(int argc, char **argv)
{
    error_report("'compare' is not implemented yet");
    return 1;
}
