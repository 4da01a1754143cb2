/* What the partitioner's suites share: small topologies and plan-file edits. */
#ifndef BRIGADE_PLAN_TEST_H
#define BRIGADE_PLAN_TEST_H

#include <stdint.h>

#include "brigade.h"

/* One node of n CPU devices with `memory` bytes each (5e10 FLOP/s, 1e10 bytes/s of memory bandwidth);
 * bandwidth > 0: every pair joined by shared memory of that many bytes/s, else the default links. NULL on
 * failure. */
brg_topology *brg_test_cpu_node(int n, uint64_t memory, double bandwidth);
/* `nodes` nodes of a node preset ("dgx-h100"), through a cluster description. NULL on failure (printed). */
brg_topology *brg_test_cluster(const char *preset, int nodes);
/* text with the first `from` replaced by `to` (malloc'd), NULL when from is not in it. */
char *brg_test_edited(const char *text, const char *from, const char *to);
/* The next permutation of perm[0..n) in lexicographic order; 0 (and perm sorted again) after the last. Starting
 * from 0, 1, ..., n - 1 it visits all n! placements of n devices. */
int brg_test_next_permutation(int *perm, int n);
/* Loading json as a plan fails with `status` and a message holding `needle`; json NULL fails the test
 * (an edit that did not apply). */
void brg_test_expect_plan_load_error(const char *json, brg_status status, const char *needle);

#endif
