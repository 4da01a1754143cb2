#include <stdio.h>

#include "cli.h"

int brg_cmd_topo(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "brigade topo: not built yet\n");
    return BRG_EXIT_FAILURE;
}
