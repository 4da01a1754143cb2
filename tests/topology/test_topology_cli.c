/* `brigade topo`: this machine, each XML fixture, a cluster, JSON output, help, and bad flags and files. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "brigade.h"
#include "brigade_config.h"
#include "harness.h"

/* What a malformed XML file is called: libxml2's check finds it first where brigade was built with it. */
#define XML_REFUSED (BRG_HAVE_LIBXML2 ? "malformed XML" : "not a valid hwloc XML")

typedef struct run_result {
    int status; /* exit status, or -1 when the command did not run */
    char *out;  /* stdout and stderr together (malloc'd) */
} run_result;

/* Runs `brigade <args>` (args already quoted for the shell), capturing its output. */
static run_result run_brigade(const char *args) {
    run_result r = {-1, NULL};
    const char *bin = getenv("BRG_BIN");
    char command[4096];
    snprintf(command, sizeof command, "'%s' %s 2>&1", bin ? bin : "brigade", args);
    FILE *p = popen(command, "r");
    if (!p) return r;
    size_t size = 0, capacity = 1 << 16;
    r.out = malloc(capacity);
    for (size_t n; r.out && (n = fread(r.out + size, 1, capacity - size - 1, p)) > 0;) {
        size += n;
        if (size + 1 == capacity) {
            char *grown = realloc(r.out, capacity *= 2);
            if (!grown) free(r.out);
            r.out = grown;
        }
    }
    if (r.out) r.out[size] = '\0';
    int status = pclose(p);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

static run_result run_fmt(const char *fmt, const char *a) {
    char args[2048];
    snprintf(args, sizeof args, fmt, a);
    return run_brigade(args);
}

static void expect(run_result r, int status, const char *needle) {
    if (r.status != status) fprintf(stderr, "output was:\n%s\n", r.out ? r.out : "(none)");
    BRG_ASSERT_EQ_INT(r.status, status);
    BRG_ASSERT_CONTAINS(r.out, needle);
}

static const char *fixtures(void) { return brg_test_fixtures(); }

/* `brigade topo` on this machine prints its CPU topology (or its GPUs where there are some). */
static void test_cli_live(void) {
    run_result r = run_brigade("topo");
    expect(r, 0, "topology: live");
    BRG_ASSERT_CONTAINS(r.out, "links by kind");
    BRG_ASSERT_CONTAINS(r.out, r.out && strstr(r.out, "(0 GPUs") ? "cpu0" : "gpu0");
    free(r.out);
    r = run_brigade("topo --cpu --cpu-group numa");
    expect(r, 0, "cpu0");
    free(r.out);
}

static void test_cli_live_json(void) {
    run_result r = run_brigade("topo --format json");
    expect(r, 0, "\"devices\"");
    json_error_t je;
    json_t *root = r.out ? json_loads(r.out, 0, &je) : NULL;
    CU_ASSERT_FATAL(root != NULL);
    json_t *devices = json_object_get(root, "devices");
    CU_ASSERT(json_array_size(devices) >= 1);
    for (size_t i = 0; i < json_array_size(devices); i++) {
        json_t *d = json_array_get(devices, i);
        const char *kind = json_string_value(json_object_get(d, "kind"));
        CU_ASSERT(kind && (strcmp(kind, "gpu") == 0 || strcmp(kind, "cpu") == 0));
        CU_ASSERT(json_is_integer(json_object_get(d, "node")));
        CU_ASSERT(json_integer_value(json_object_get(d, "memory_bytes")) > 0);
    }
    CU_ASSERT(json_is_object(json_object_get(root, "links")));
    json_decref(root);
    free(r.out);
}

/* Each fixture prints its GPUs and links. */
static void test_cli_xml_fixtures(void) {
    const struct {
        const char *file, *links;
        int gpus;
    } cases[] = {{"nvidiaDGX2.xml", "nvswitch        150.0 GB/s", 16},
                 {"power8gpudistances.xml", "nvlink           40.0 GB/s", 4},
                 {"32em64t-2n8c2t-pci-normalio.xml", "(one device: no links)", 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char args[2048], header[64];
        snprintf(args, sizeof args, "topo --xml '%s/topologies/%s'", fixtures(), cases[c].file);
        run_result r = run_brigade(args);
        snprintf(header, sizeof header, "(%d GPU%s, 0 CPU)", cases[c].gpus, cases[c].gpus == 1 ? "" : "s");
        expect(r, 0, header);
        BRG_ASSERT_CONTAINS(r.out, "gpu0");
        BRG_ASSERT_CONTAINS(r.out, cases[c].links);
        free(r.out);
        snprintf(args, sizeof args, "topo --format json --xml '%s/topologies/%s'", fixtures(), cases[c].file);
        r = run_brigade(args);
        expect(r, 0, "\"kind\": \"gpu\"");
        json_error_t je;
        json_t *root = r.out ? json_loads(r.out, 0, &je) : NULL;
        CU_ASSERT_FATAL(root != NULL);
        BRG_ASSERT_EQ_INT(json_array_size(json_object_get(root, "devices")), cases[c].gpus);
        json_decref(root);
        free(r.out);
    }
}

static void test_cli_power8_links(void) {
    run_result r = run_fmt("topo --xml '%s/topologies/power8gpudistances.xml'", fixtures());
    expect(r, 0, "2 pairs: 0-1 2-3");
    BRG_ASSERT_CONTAINS(r.out, "cross-socket     10.0 GB/s");
    BRG_ASSERT_CONTAINS(r.out, "NV    40");
    free(r.out);
}

static void test_cli_cluster(void) {
    run_result r = run_fmt("topo --cluster '%s/clusters/dgx-h100-16.json'", fixtures());
    expect(r, 0, "16 nodes, 128 devices (128 GPUs, 0 CPU), 128 NICs");
    BRG_ASSERT_CONTAINS(r.out, "network          50.0 GB/s");
    BRG_ASSERT_CONTAINS(r.out, "nvswitch        450.0 GB/s");
    free(r.out);
}

static void test_cli_help(void) {
    run_result r = run_brigade("topo --help");
    const char *flags[] = {"--xml", "--cluster", "--format", "--cpu-group", "--cpu ", "--probe", "--list-presets",
                           "--help"};
    expect(r, 0, "usage: brigade topo");
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) BRG_ASSERT_CONTAINS(r.out, flags[i]);
    free(r.out);
    r = run_brigade("topo --list-presets");
    expect(r, 0, "h100-sxm");
    BRG_ASSERT_CONTAINS(r.out, "dgx-h100");
    BRG_ASSERT_CONTAINS(r.out, "pcie-8gpu");
    free(r.out);
}

static void test_cli_bad_flags(void) {
    const struct {
        const char *args, *needle;
    } cases[] = {
        {"topo --bogus", "'--bogus'"},
        {"topo stray", "'stray'"},
        {"topo --format yaml", "'yaml'"},
        {"topo --cpu-group socket", "'socket'"},
        {"topo --xml", "--xml needs a value"},
        {"topo --cluster", "--cluster needs a value"},
        {"topo --xml a.xml --cluster b.json", "not both"},
        {"topo --probe --xml a.xml", "--probe"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        run_result r = run_brigade(cases[c].args);
        expect(r, 2, cases[c].needle);
        free(r.out);
    }
}

static void test_cli_bad_files(void) {
    const struct {
        const char *args, *needle;
    } cases[] = {
        {"topo --xml '%s/topologies/missing.xml'", "missing.xml: cannot open"},
        {"topo --xml '%s/clusters/bad-topology.xml'", XML_REFUSED},
        {"topo --cluster '%s/clusters/missing.json'", "missing.json: cannot open"},
        {"topo --cluster '%s/clusters/bad-syntax.json'", "bad-syntax.json:4:33: malformed JSON"},
        {"topo --cluster '%s/clusters/bad-zero-count.json'", "bad-zero-count.json:5:37: node_groups[1].count"},
        {"topo --cluster '%s/clusters/bad-negative-bandwidth.json'", "nics.gbps: must be a number greater than 0"},
        {"topo --cluster '%s/clusters/bad-unknown-preset.json'", "unknown node preset 'dgx-h900'"},
        {"topo --cluster '%s/clusters/bad-missing-count.json'", "node_groups[0].count: missing field"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        run_result r = run_fmt(cases[c].args, fixtures());
        expect(r, 2, cases[c].needle);
        BRG_ASSERT_CONTAINS(r.out, "brigade topo: ");
        free(r.out);
    }
}

static const brg_test_case cases[] = {
    {"cli_live", test_cli_live},
    {"cli_live_json", test_cli_live_json},
    {"cli_xml_fixtures", test_cli_xml_fixtures},
    {"cli_power8_links", test_cli_power8_links},
    {"cli_cluster", test_cli_cluster},
    {"cli_help", test_cli_help},
    {"cli_bad_flags", test_cli_bad_flags},
    {"cli_bad_files", test_cli_bad_files},
    {NULL, NULL},
};

int main(int argc, char **argv) { return brg_test_main(argc, argv, "topology-cli", cases); }
