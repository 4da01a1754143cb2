/* Helpers shared by the brigade subcommands: strict number parsing and flag errors.
 * Every helper prints "brigade <command>: ..." to stderr on failure and returns non-zero. */
#ifndef BRIGADE_CLI_H
#define BRIGADE_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "brigade/schedule.h"

/* Exit codes: 0 success, 1 a run that failed, 2 bad usage (flags, specs, files given). */
enum { BRG_EXIT_OK = 0, BRG_EXIT_FAILURE = 1, BRG_EXIT_USAGE = 2 };

/* Each subcommand: int cmd(int argc, char **argv), argv[0] being the subcommand's name. */
int brg_cmd_train(int argc, char **argv);
int brg_cmd_topo(int argc, char **argv);
int brg_cmd_plan(int argc, char **argv);
int brg_cmd_profile(int argc, char **argv);
int brg_cmd_bench(int argc, char **argv);

/* Each command's parse step alone: its flags, and its model specification where it takes one, read into
 * the command's options and checked as the command checks them before its work starts, and nothing more:
 * no file is opened or written, no machine is read, nothing is trained, planned or timed. Returns 0 when
 * the command would go on to its work, BRG_EXIT_USAGE after printing "brigade <command>: ..." otherwise;
 * -h or --help prints the usage and returns BRG_EXIT_OK. The commands above run this step first. */
int brg_cmd_train_parse(int argc, char **argv);
int brg_cmd_topo_parse(int argc, char **argv);
int brg_cmd_plan_parse(int argc, char **argv);
int brg_cmd_profile_parse(int argc, char **argv);
int brg_cmd_bench_parse(int argc, char **argv);

/* The dense peak FLOP/s of the devices a training run with these options uses (tools/cmd_bench.c): for
 * CUDA the GPUs' presets (or estimates) at the run's precision, each GPU counted once; for the CPU the
 * sgemm rate measured on every core (under a second). 0 when unknown. `what` (size bytes) says where the
 * figure comes from. */
struct brg_train_options;
double brg_cli_peak_flops(const struct brg_train_options *opts, char *what, size_t size);

/* Parses `text` as a whole integer in [min, max] for flag `flag` of `command`. */
int brg_cli_int64(const char *command, const char *flag, const char *text, int64_t min, int64_t max,
                  int64_t *out);
/* Parses `text` as a whole finite number in [min, max]. */
int brg_cli_double(const char *command, const char *flag, const char *text, double min, double max,
                   double *out);
/* Matches text against names[0..count-1] for flag `flag`; *out receives the index. Otherwise prints
 * "brigade <command>: <flag> takes a, b or c, not '<text>'" and returns 2. */
int brg_cli_choice(const char *command, const char *flag, const char *text, const char *const *names, int count,
                   int *out);

/* Parses a schedule name (gpipe, 1f1b, interleaved, zb-h1; brg_schedule_kind_from_name) for `flag`;
 * otherwise prints what it takes ("auto" listed first when with_auto, for commands that accept it) and
 * returns 2. */
int brg_cli_schedule(const char *command, const char *flag, const char *text, int with_auto, brg_schedule_kind *out);

/* The names of --device (brg_backend_kind order), --dtype (fp32, bf16) and --recompute (brg_recompute order). */
extern const char *const brg_cli_device_names[2];
extern const char *const brg_cli_dtype_names[2];
extern const char *const brg_cli_recompute_names[3];

/* The value following flag argv[*i]; advances *i. Prints an error when it is missing. */
const char *brg_cli_value(const char *command, int argc, char **argv, int *i);
/* Prints "brigade <command>: unknown flag '<flag>' (see 'brigade <command> --help')" and returns 2. */
int brg_cli_unknown_flag(const char *command, const char *flag);
/* Whether arg is -h or --help. */
int brg_cli_is_help(const char *arg);

#endif
