/* brigade: the command-line tool. One subcommand per job; `brigade --help` lists them. */
#include <stdio.h>
#include <string.h>

#include "brigade.h"
#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"train", brg_cmd_train, "train a model (single device, or through a pipeline of stages)"},
    {"topo", brg_cmd_topo, "show the devices and links of this machine, an hwloc XML file or a cluster"},
    {"plan", brg_cmd_plan, "search how to split a model over devices; write the plan and its review report"},
    {"profile", brg_cmd_profile, "time every layer of a model on this machine, for brigade plan --profile"},
    {"bench", brg_cmd_bench, "train a few steps on a device and report tokens/s, TFLOP/s and MFU"},
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: brigade <command> [flags]\n"
            "\n"
            "brigade %s: a pipeline model-parallel training engine.\n"
            "\n"
            "commands:\n",
            brg_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\n"
            "'brigade <command> --help' explains each command's flags.\n"
            "'brigade --version' prints the version.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return BRG_EXIT_USAGE;
    }
    if (brg_cli_is_help(argv[1])) {
        usage(stdout);
        return BRG_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("brigade %s\n", brg_version());
        return BRG_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "brigade: unknown command '%s' (see 'brigade --help')\n", argv[1]);
    return BRG_EXIT_USAGE;
}
