/* The command line of every brigade command (tools/cmd_*.c): the input, one argument per line, is a
 * command name and its flags, given to that command's parse step (brg_cmd_<name>_parse), which reads
 * and checks them and stops where the work would start: nothing is trained, planned, timed or written. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fuzz.h"

#define MAX_ARGS 64

typedef struct command {
    const char *name;
    int (*parse)(int argc, char **argv);
} command;

static const command commands[] = {
    {"train", brg_cmd_train_parse}, {"topo", brg_cmd_topo_parse},   {"plan", brg_cmd_plan_parse},
    {"profile", brg_cmd_profile_parse}, {"bench", brg_cmd_bench_parse},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *argv[MAX_ARGS + 1], *storage = NULL;
    int argc = brg_fuzz_split_lines(data, size, argv, MAX_ARGS, &storage);
    argv[argc] = NULL;
    for (size_t i = 0; argc > 0 && i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[0], commands[i].name) == 0) {
            int rc = commands[i].parse(argc, argv);
            if (rc != BRG_EXIT_OK && rc != BRG_EXIT_USAGE) brg_fuzz_fail("a parse step returned another exit code");
        }
    free(storage);
    return 0;
}
