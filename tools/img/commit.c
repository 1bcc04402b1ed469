#include "config.h"
/* placeholder while the command is being written */
#include "tools/img/img.h"

int img_commit(int argc, char **argv)
{
    error_report("'commit' is not implemented yet");
    return 1;
}
