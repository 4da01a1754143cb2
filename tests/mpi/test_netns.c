/* Two "hosts" on one machine: Linux network namespaces joined by a veth pair (198.18.0.1 and 198.18.0.2,
 * of the benchmarking range), mpirun started in the first with --host for both and a launch agent that
 * enters the second namespace where ssh would log in. With the TCP transport alone, the pipeline's
 * transfers cross TCP between two network stacks, as between nodes: the run must match the in-process
 * run bitwise, and the veth's counters show the bytes crossed. The namespaces are removed at the end;
 * where they cannot be made (no root, no iproute2) the suite skips (77) and says why. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define MODEL "gpt:layers=4,hidden=32,heads=2,vocab=64,seq=32"

static char ns_a[32], ns_b[32], veth_a[16], veth_b[16], agent[512], out_path[512];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

static void remove_hosts(void) {
    sh("ip netns del %s 2>/dev/null", ns_a); /* takes the veth pair with it */
    sh("ip netns del %s 2>/dev/null", ns_b);
}

/* Makes both namespaces; a message on failure. */
static int make_hosts(char *why, size_t size) {
    int id = (int)getpid() % 100000;
    snprintf(ns_a, sizeof ns_a, "brg-host-a-%d", id);
    snprintf(ns_b, sizeof ns_b, "brg-host-b-%d", id);
    snprintf(veth_a, sizeof veth_a, "brgva%d", id);
    snprintf(veth_b, sizeof veth_b, "brgvb%d", id);
    if (geteuid() != 0) return snprintf(why, size, "network namespaces need root (running as uid %d)", (int)geteuid()), 1;
    if (sh("command -v ip >/dev/null 2>&1") != 0) return snprintf(why, size, "no 'ip' command (iproute2)"), 1;
    if (sh("ip netns add %s 2>/dev/null", ns_a) != 0)
        return snprintf(why, size, "'ip netns add' failed: no permission to make network namespaces here"), 1;
    int rc = sh("ip netns add %s && ip link add %s type veth peer name %s && ip link set %s netns %s && "
                "ip link set %s netns %s && ip -n %s addr add 198.18.0.1/24 dev %s && "
                "ip -n %s addr add 198.18.0.2/24 dev %s && ip -n %s link set %s up && ip -n %s link set %s up && "
                "ip -n %s link set lo up && ip -n %s link set lo up",
                ns_b, veth_a, veth_b, veth_a, ns_a, veth_b, ns_b, ns_a, veth_a, ns_b, veth_b, ns_a, veth_a, ns_b,
                veth_b, ns_a, ns_b);
    if (rc != 0) {
        remove_hosts();
        return snprintf(why, size, "joining the namespaces by a veth pair failed (veth support missing?)"), 1;
    }
    return 0;
}

/* The launch agent mpirun calls as it would call ssh: "agent HOST COMMAND...". */
static int write_agent(void) {
    brg_test_tmp_path(agent, sizeof agent, "netns-agent.sh");
    FILE *f = fopen(agent, "w");
    if (!f) return 1;
    fprintf(f,
            "#!/bin/sh\n"
            "# mpirun's launch agent for the namespace hosts: enters the host's namespace instead of logging in.\n"
            "host=$1; shift\n"
            "case \"$host\" in\n"
            "  198.18.0.1) ns=%s ;;\n"
            "  198.18.0.2) ns=%s ;;\n"
            "  *) echo \"netns agent: no namespace for host $host\" >&2; exit 1 ;;\n"
            "esac\n"
            "exec ip netns exec \"$ns\" sh -c \"$*\"\n",
            ns_a, ns_b);
    fclose(f);
    return chmod(agent, 0755);
}

static long long veth_bytes(const char *ns, const char *dev, const char *dir) {
    char path[64];
    snprintf(path, sizeof path, "/sys/class/net/%s/statistics/%s_bytes", dev, dir);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ip netns exec %s cat %s", ns, path);
    FILE *p = popen(cmd, "r");
    long long v = -1;
    if (p && fscanf(p, "%lld", &v) != 1) v = -1;
    if (p) pclose(p);
    return v;
}

static void fingerprint_of(const char *text, char hex[17]) {
    const char *p = text ? strstr(text, "params fingerprint: ") : NULL;
    hex[0] = '\0';
    if (p) snprintf(hex, 17, "%.16s", p + strlen("params fingerprint: "));
}

static void test_pipeline_across_hosts(void) {
    const brg_test_run *r = brg_test_run_brigade((const char *[]){"train", "--model", MODEL, "--pp", "2", "--steps",
                                                                   "3", "--micro-batches", "4", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    char threads[17], hosts[17];
    fingerprint_of(r->out, threads);
    long long rx0 = veth_bytes(ns_b, veth_b, "rx"), tx0 = veth_bytes(ns_b, veth_b, "tx");
    brg_test_tmp_path(out_path, sizeof out_path, "netns-run.out");
    int rc = sh("timeout 120 ip netns exec %s mpirun --oversubscribe --host 198.18.0.1:1,198.18.0.2:1 -np 2 "
                "--mca plm_rsh_agent %s --mca btl tcp,self --mca btl_tcp_if_include 198.18.0.0/24 "
                "--mca oob_tcp_if_include 198.18.0.0/24 %s train --model %s --pp 2 --steps 3 --micro-batches 4 "
                "> %s 2>&1",
                ns_a, agent, getenv("BRG_BIN"), MODEL, out_path);
    char *out = brg_test_slurp(out_path);
    if (rc != 0) fprintf(stderr, "mpirun across the namespaces exited %d:\n%s\n", rc, out ? out : "");
    BRG_ASSERT_EQ_INT(rc, 0);
    fingerprint_of(out, hosts);
    if (strcmp(hosts, threads) != 0) fprintf(stderr, "fingerprint across hosts '%s', in threads '%s'\n", hosts, threads);
    CU_ASSERT(threads[0] && strcmp(hosts, threads) == 0);
    CU_ASSERT(out && strstr(out, "job: 2 processes launched by mpirun"));
    /* Rank 1 ran in the second namespace: the activations in (4 micro-batches of 4 x 32 x 32 floats a step,
     * 3 steps: 192 KiB) and their gradients out crossed its veth. */
    long long rx = veth_bytes(ns_b, veth_b, "rx") - rx0, tx = veth_bytes(ns_b, veth_b, "tx") - tx0;
    printf("\n  veth of host b: %lld bytes in, %lld bytes out during the run\n", rx, tx);
    CU_ASSERT(rx >= 3 * 4 * 16384 && tx >= 3 * 4 * 16384);
    free(out);
    unlink(out_path);
}

int main(int argc, char **argv) {
    char why[256] = "";
    if (make_hosts(why, sizeof why) != 0) {
        printf("netns: skipped: %s\n", why);
        return BRG_TEST_SKIP;
    }
    if (write_agent() != 0) {
        remove_hosts();
        printf("netns: skipped: could not write the launch agent\n");
        return BRG_TEST_SKIP;
    }
    static const brg_test_case cases[] = {
        {"pipeline_across_hosts", test_pipeline_across_hosts},
        {NULL, NULL},
    };
    int rc = brg_test_main(argc, argv, "netns", cases);
    remove_hosts();
    unlink(agent);
    return rc;
}
