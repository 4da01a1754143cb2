#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int brg_cli_int64(const char *command, const char *flag, const char *text, int64_t min, int64_t max,
                  int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "brigade %s: %s takes a whole number from %" PRId64 " to %" PRId64 ", not '%s'\n",
                command, flag, min, max, text);
        return BRG_EXIT_USAGE;
    }
    *out = v;
    return 0;
}

int brg_cli_double(const char *command, const char *flag, const char *text, double min, double max,
                   double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || !isfinite(v) || v < min || v > max) {
        fprintf(stderr, "brigade %s: %s takes a number from %g to %g, not '%s'\n", command, flag, min, max,
                text);
        return BRG_EXIT_USAGE;
    }
    *out = v;
    return 0;
}

const char *brg_cli_value(const char *command, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "brigade %s: %s needs a value (see 'brigade %s --help')\n", command, argv[*i], command);
        return NULL;
    }
    *i += 1;
    return argv[*i];
}

int brg_cli_unknown_flag(const char *command, const char *flag) {
    fprintf(stderr, "brigade %s: unknown %s '%s' (see 'brigade %s --help')\n", command,
            flag[0] == '-' ? "flag" : "argument", flag, command);
    return BRG_EXIT_USAGE;
}

int brg_cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

const char *const brg_cli_device_names[2] = {"cpu", "cuda"};
const char *const brg_cli_dtype_names[2] = {"fp32", "bf16"};
const char *const brg_cli_recompute_names[3] = {"none", "full", "selective"};

int brg_cli_choice(const char *command, const char *flag, const char *text, const char *const *names, int count,
                   int *out) {
    for (int i = 0; i < count; i++)
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return 0;
        }
    fprintf(stderr, "brigade %s: %s takes ", command, flag);
    for (int i = 0; i < count; i++) fprintf(stderr, "%s%s", names[i], i + 2 < count ? ", " : i + 1 < count ? " or " : "");
    fprintf(stderr, ", not '%s'\n", text);
    return BRG_EXIT_USAGE;
}

int brg_cli_schedule(const char *command, const char *flag, const char *text, int with_auto, brg_schedule_kind *out) {
    if (brg_schedule_kind_from_name(text, out) == BRG_OK) return 0;
    fprintf(stderr, "brigade %s: %s takes %sgpipe, 1f1b, interleaved or zb-h1, not '%s'\n", command, flag,
            with_auto ? "auto, " : "", text);
    return BRG_EXIT_USAGE;
}
