#include <stdio.h>

#include "cli.h"

int brg_cmd_train(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "brigade train: not built yet\n");
    return BRG_EXIT_FAILURE;
}
