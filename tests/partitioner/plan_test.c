#include "plan_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

brg_topology *brg_test_cpu_node(int n, uint64_t memory, double bandwidth) {
    brg_topology *t = NULL;
    brg_error err = {0};
    if (brg_topology_create_custom(&t, 1, n, "cpu", &err) != BRG_OK) return NULL;
    for (int d = 0; d < n; d++) {
        brg_device_info info;
        brg_topology_device_info(t, d, &info);
        info.memory_bytes = memory;
        info.peak_flops[BRG_PRECISION_FP32] = 5e10;
        info.memory_bandwidth = 1e10;
        brg_topology_set_device(t, d, &info);
    }
    for (int a = 0; bandwidth > 0 && a < n; a++)
        for (int b = a + 1; b < n; b++) {
            brg_link l = {BRG_LINK_SHARED_MEMORY, bandwidth, 1e-6};
            brg_topology_set_link(t, a, b, &l);
        }
    brg_topology_finalize(t);
    return t;
}

brg_topology *brg_test_cluster(const char *preset, int nodes) {
    char json[160];
    snprintf(json, sizeof json, "{\"version\": 1, \"node_groups\": [{\"preset\": \"%s\", \"count\": %d}]}", preset, nodes);
    brg_topology *t = NULL;
    brg_error err = {0};
    if (brg_topology_load_cluster_string(&t, json, NULL, NULL, &err) != BRG_OK) fprintf(stderr, "%s\n", err.message);
    return t;
}

char *brg_test_edited(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    if (!at) return NULL;
    size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return out;
}

int brg_test_next_permutation(int *perm, int n) {
    int i = n - 2;
    while (i >= 0 && perm[i] >= perm[i + 1]) i--;
    int more = i >= 0;
    if (more) {
        int j = n - 1;
        while (perm[j] <= perm[i]) j--;
        int x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    for (int a = i + 1, b = n - 1; a < b; a++, b--) { /* the rest ascending */
        int x = perm[a];
        perm[a] = perm[b];
        perm[b] = x;
    }
    return more;
}

void brg_test_expect_plan_load_error(const char *json, brg_status status, const char *needle) {
    if (!json) {
        CU_FAIL("the edit did not apply");
        return;
    }
    brg_plan *plan = NULL;
    brg_error err = {0};
    BRG_ASSERT_STATUS(brg_plan_load_string(json, "plan.json", &plan, &err), status);
    BRG_ASSERT_CONTAINS(err.message, needle);
    CU_ASSERT(plan == NULL);
    brg_plan_destroy(plan);
}
