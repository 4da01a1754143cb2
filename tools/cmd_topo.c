/* brigade topo: the devices and links of this machine, an hwloc XML file, or a cluster description. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brigade.h"
#include "cli.h"

static const char *const command = "topo";

typedef enum output_format { FORMAT_TEXT, FORMAT_JSON } output_format;

typedef struct topo_args {
    const char *xml;
    const char *cluster;
    output_format format;
    brg_topology_options options;
    int list_presets;
} topo_args;

static void usage(FILE *f) {
    fprintf(f,
            "usage: brigade topo [--xml FILE | --cluster FILE] [--format text|json] [flags]\n"
            "\n"
            "Shows the devices a plan can use and the links between them: each device's node, NUMA node,\n"
            "memory, peak FLOP/s and memory bandwidth; the link between every pair (kind, bandwidth per\n"
            "direction, latency); the network interfaces and the devices nearest each.\n"
            "Without --xml or --cluster it looks at this machine: its CUDA GPUs where there are any,\n"
            "else its CPU cores (the CPU backend's devices).\n"
            "\n"
            "flags:\n"
            "  --xml FILE         an hwloc XML topology (lstopo --of xml) of one machine\n"
            "  --cluster FILE     a cluster description in JSON: node groups, each an hwloc XML file or a\n"
            "                     node preset, with a count (see docs/cluster.md)\n"
            "  --format FORMAT    text (the default: a summary for people) or json (every figure, for tools)\n"
            "  --cpu-group GROUP  how CPU devices are formed: core (default), numa or package\n"
            "  --cpu              make CPU devices even where there are GPUs\n"
            "  --probe            measure this machine's CPU peak with a short sgemm and a memory copy\n"
            "                     (under a second) instead of estimating it from the core count\n"
            "  --list-presets     list the device and node presets and exit\n"
            "  -h, --help         show this help\n"
            "\n"
            "Units: bandwidth in bytes/s per direction (GB = 1e9 bytes), latency in seconds (us in text),\n"
            "memory in bytes, compute in FLOP/s, dense.\n"
            "Exit status: 0 success, 1 this machine could not be read, 2 bad flags or input files.\n");
}

static int parse_format(const char *text, output_format *out) {
    if (strcmp(text, "text") == 0) *out = FORMAT_TEXT;
    else if (strcmp(text, "json") == 0) *out = FORMAT_JSON;
    else {
        fprintf(stderr, "brigade topo: --format takes text or json, not '%s'\n", text);
        return BRG_EXIT_USAGE;
    }
    return 0;
}

static int parse_cpu_group(const char *text, brg_cpu_grouping *out) {
    if (strcmp(text, "core") == 0) *out = BRG_CPU_PER_CORE;
    else if (strcmp(text, "numa") == 0) *out = BRG_CPU_PER_NUMA_NODE;
    else if (strcmp(text, "package") == 0) *out = BRG_CPU_PER_PACKAGE;
    else {
        fprintf(stderr, "brigade topo: --cpu-group takes core, numa or package, not '%s'\n", text);
        return BRG_EXIT_USAGE;
    }
    return 0;
}

/* A flag that takes a value: its value, or NULL (an error already printed). */
static const char *flag_value(int argc, char **argv, int *i) { return brg_cli_value(command, argc, argv, i); }

static int parse_flag(int argc, char **argv, int *i, topo_args *a) {
    const char *flag = argv[*i], *value;
    if (strcmp(flag, "--xml") == 0) return (a->xml = flag_value(argc, argv, i)) ? 0 : BRG_EXIT_USAGE;
    if (strcmp(flag, "--cluster") == 0) return (a->cluster = flag_value(argc, argv, i)) ? 0 : BRG_EXIT_USAGE;
    if (strcmp(flag, "--format") == 0)
        return (value = flag_value(argc, argv, i)) ? parse_format(value, &a->format) : BRG_EXIT_USAGE;
    if (strcmp(flag, "--cpu-group") == 0)
        return (value = flag_value(argc, argv, i)) ? parse_cpu_group(value, &a->options.cpu_grouping) : BRG_EXIT_USAGE;
    if (strcmp(flag, "--cpu") == 0) a->options.flags |= BRG_TOPOLOGY_IGNORE_GPUS;
    else if (strcmp(flag, "--probe") == 0) a->options.flags |= BRG_TOPOLOGY_PROBE_CPU;
    else if (strcmp(flag, "--list-presets") == 0) a->list_presets = 1;
    else return brg_cli_unknown_flag(command, flag);
    return 0;
}

static int parse_args(int argc, char **argv, topo_args *a) {
    for (int i = 1; i < argc; i++) {
        int rc = parse_flag(argc, argv, &i, a);
        if (rc) return rc;
    }
    if (a->xml && a->cluster) {
        fprintf(stderr, "brigade topo: give --xml or --cluster, not both\n");
        return BRG_EXIT_USAGE;
    }
    if ((a->xml || a->cluster) && (a->options.flags & BRG_TOPOLOGY_PROBE_CPU)) {
        fprintf(stderr, "brigade topo: --probe measures this machine, so it goes without --xml and --cluster\n");
        return BRG_EXIT_USAGE;
    }
    return 0;
}

static void list_presets(void) {
    printf("device presets (dense peaks; memory in GB = 1e9 bytes; bandwidth per direction):\n");
    printf("  %-15s %-28s %7s %9s %9s %9s %9s %11s  %s\n", "name", "model", "memory", "fp32", "tf32", "bf16",
           "fp16", "memory bw", "peer link");
    for (int i = 0; i < brg_device_preset_count(); i++) {
        const brg_device_preset *p = brg_device_preset_at(i);
        printf("  %-15s %-28s %5.0fGB %7.1fT %7.1fT %7.1fT %7.1fT %7.0fGB/s  %s %.0f GB/s\n", p->name, p->model,
               (double)p->memory_bytes / 1e9, p->peak_flops[0] / 1e12, p->peak_flops[1] / 1e12,
               p->peak_flops[2] / 1e12, p->peak_flops[3] / 1e12, p->memory_bandwidth / 1e9,
               brg_link_kind_name(p->peer_link), p->peer_bandwidth / 1e9);
    }
    printf("\nnode presets (for \"preset\" in a cluster description):\n");
    for (int i = 0; i < brg_node_preset_count(); i++) {
        const brg_node_preset *p = brg_node_preset_at(i);
        printf("  %-10s %s\n", p->name, p->description);
    }
}

static int load(const topo_args *a, brg_topology **t) {
    brg_error err = {0};
    brg_status s;
    if (a->xml) s = brg_topology_load_xml(t, a->xml, &a->options, &err);
    else if (a->cluster) s = brg_topology_load_cluster(t, a->cluster, &a->options, &err);
    else s = brg_topology_load_live(t, &a->options, &err);
    if (s == BRG_OK) return 0;
    fprintf(stderr, "brigade topo: %s\n", err.message[0] ? err.message : brg_status_string(s));
    return a->xml || a->cluster ? BRG_EXIT_USAGE : BRG_EXIT_FAILURE;
}

static int print_topology(const brg_topology *t, output_format format) {
    char *text = NULL;
    brg_status s = format == FORMAT_JSON ? brg_topology_to_json(t, &text) : brg_topology_summary(t, &text);
    if (s != BRG_OK) {
        fprintf(stderr, "brigade topo: %s\n", brg_status_string(s));
        return BRG_EXIT_FAILURE;
    }
    fputs(text, stdout);
    if (format == FORMAT_JSON) fputc('\n', stdout);
    free(text);
    return BRG_EXIT_OK;
}

/* The parse step: -1 when the help was printed, else 0 or an exit code. */
static int parse_command(int argc, char **argv, topo_args *a) {
    for (int i = 1; i < argc; i++)
        if (brg_cli_is_help(argv[i])) {
            usage(stdout);
            return -1;
        }
    *a = (topo_args){.format = FORMAT_TEXT, .options = BRG_TOPOLOGY_OPTIONS_INIT};
    return parse_args(argc, argv, a);
}

int brg_cmd_topo_parse(int argc, char **argv) {
    topo_args a;
    int rc = parse_command(argc, argv, &a);
    return rc < 0 ? BRG_EXIT_OK : rc;
}

int brg_cmd_topo(int argc, char **argv) {
    topo_args a;
    int rc = parse_command(argc, argv, &a);
    if (rc) return rc < 0 ? BRG_EXIT_OK : rc;
    if (a.list_presets) {
        list_presets();
        return BRG_EXIT_OK;
    }
    brg_topology *t = NULL;
    rc = load(&a, &t);
    if (rc) return rc;
    rc = print_topology(t, a.format);
    brg_topology_destroy(t);
    return rc;
}
