/* hwloc XML files through brigade's loader (brg_topology_load_xml): the guard of topology/xml_guard.c
 * (libxml2 checks, the canonical document, the probe in a child process), hwloc's import, and brigade's
 * reading of the hwloc topology (GPUs, NVLink distances, PCI tree, NICs). What loads is serialized. */
#include <stdlib.h>

#include "brigade.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = brg_fuzz_file(data, size);
    if (!path) return 0;
    brg_topology_options opts = BRG_TOPOLOGY_OPTIONS_INIT;
    brg_topology *t = NULL;
    brg_error err = {0};
    brg_status s = brg_topology_load_xml(&t, path, &opts, &err);
    brg_fuzz_check_error(s, err.message, "brg_topology_load_xml");
    if (s == BRG_OK) {
        char *text = NULL;
        if (brg_topology_to_json(t, &text) == BRG_OK) free(text);
        text = NULL;
        if (brg_topology_summary(t, &text) == BRG_OK) free(text);
    }
    brg_topology_destroy(t);
    return 0;
}
