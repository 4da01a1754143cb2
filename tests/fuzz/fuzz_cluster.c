/* Cluster descriptions (topology/cluster.c): any text as brg_topology_load_cluster_string, with the
 * cluster fixtures' directory as the base of relative "xml" paths (so hwloc XML groups load the fixture
 * machines through the XML guard), and what loads is serialized and summarized. */
#include <stdio.h>
#include <stdlib.h>

#include "brigade.h"
#include "fuzz.h"

/* Serializing is quadratic in the devices (the link matrix); a cluster past this is loaded, not printed. */
#define PRINT_MAX_DEVICES 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = brg_fuzz_string(data, size);
    if (!json) return 0;
    char base[4096];
    snprintf(base, sizeof base, "%s/clusters", brg_fuzz_fixtures());
    brg_topology_options opts = BRG_TOPOLOGY_OPTIONS_INIT;
    brg_topology *t = NULL;
    brg_error err = {0};
    brg_status s = brg_topology_load_cluster_string(&t, json, base, &opts, &err);
    brg_fuzz_check_error(s, err.message, "brg_topology_load_cluster_string");
    if (s == BRG_OK && brg_topology_device_count(t) <= PRINT_MAX_DEVICES) {
        char *text = NULL;
        if (brg_topology_to_json(t, &text) == BRG_OK) free(text);
        text = NULL;
        if (brg_topology_summary(t, &text) == BRG_OK) free(text);
        (void)brg_topology_fingerprint(t);
    }
    brg_topology_destroy(t);
    free(json);
    return 0;
}
