/* Limits on sizes read from files and given by callers: every count, size and product from a cluster
 * description, a plan file, an hwloc XML file, a graph shape or a training option is bounded and checked
 * before it sizes an allocation or a loop. Each case gives the input that once overflowed, the largest
 * legal value and the first illegal one, and checks for a clear error naming the file, the field and the
 * limit (the suite runs under ASan and UBSan, so a wrap or an overflow fails it too). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "brigade.h"
#include "graph/graph_internal.h"
#include "harness.h"

#define SMALL_GPT "gpt:layers=2,hidden=64,heads=4,vocab=64,seq=32"

static const char *write_file(const char *name, const char *text) {
    static char path[8][512];
    static int next;
    char *p = path[next++ % 8];
    brg_test_tmp_path(p, 512, name);
    FILE *f = fopen(p, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
    return p;
}

/* Loads the cluster description `json` from a file; expects `status` and, when not OK, each needle. */
static void expect_cluster(const char *json, brg_status status, const char *needle1, const char *needle2) {
    const char *path = write_file("cluster.json", json);
    brg_topology *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_STATUS(brg_topology_load_cluster(&t, path, NULL, &err), status);
    if (status != BRG_OK) {
        CU_ASSERT(t == NULL);
        BRG_ASSERT_CONTAINS(err.message, "cluster.json:1:");
        if (needle1) BRG_ASSERT_CONTAINS(err.message, needle1);
        if (needle2) BRG_ASSERT_CONTAINS(err.message, needle2);
    }
    brg_topology_destroy(t);
}

static char *cluster_json(const char *group) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "{\"version\":1,\"node_groups\":[%s]}", group);
    return buf;
}

/* ---- cluster descriptions ---------------------------------------------------------------------------- */

static void test_cluster_node_count(void) {
    /* Once: 2305843009213693953 * 8 devices wrapped to 8, and 8 devices' worth was written past. */
    expect_cluster(cluster_json("{\"preset\":\"dgx-h100\",\"count\":2305843009213693953}"), BRG_ERR_PARSE,
                   "node_groups[0].count", "at most 8192");
    expect_cluster(cluster_json("{\"preset\":\"dgx-h100\",\"count\":9223372036854775807}"), BRG_ERR_PARSE,
                   "node_groups[0].count", "at most 8192");
    expect_cluster(cluster_json("{\"preset\":\"dgx-h100\",\"count\":8193}"), BRG_ERR_PARSE, "node_groups[0].count",
                   "at most 8192");
    /* The largest count passes the field's bound; the devices then bind. */
    expect_cluster(cluster_json("{\"preset\":\"dgx-h100\",\"count\":8192}"), BRG_ERR_PARSE, "node_groups[0].count",
                   "more than 8192 devices");
    expect_cluster(cluster_json("{\"preset\":\"dgx-h100\",\"count\":1025}"), BRG_ERR_PARSE, "more than 8192 devices",
                   NULL);
    /* Two groups whose sum passes the limit: the error is on the group that crosses it. */
    expect_cluster(cluster_json("{\"name\":\"a\",\"preset\":\"dgx-h100\",\"count\":1000},"
                                "{\"name\":\"b\",\"preset\":\"dgx-h100\",\"count\":25}"),
                   BRG_ERR_PARSE, "node_groups[1].count", "more than 8192 devices");
}

static void test_cluster_largest(void) {
    /* 1024 DGX H100 nodes are 8192 devices, the most a topology holds. */
    const char *path = write_file("largest.json", cluster_json("{\"preset\":\"dgx-h100\",\"count\":1024}"));
    brg_topology *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_topology_load_cluster(&t, path, NULL, &err), err.message);
    BRG_ASSERT_EQ_INT(brg_topology_device_count(t), BRG_TOPOLOGY_MAX_DEVICES);
    BRG_ASSERT_EQ_INT(brg_topology_node_count(t), 1024);
    brg_topology_destroy(t);
}

static void test_cluster_nic_count(void) {
    char group[256];
    /* 64 NICs on a node is the most; 65 and the values that a cast to int once turned into 8, or into
     * "use the preset's NICs" (2147483648 -> negative), are errors. */
    snprintf(group, sizeof group, "{\"preset\":\"dgx-h100\",\"count\":2,\"nics\":{\"count\":%d}}",
             BRG_TOPOLOGY_MAX_NICS_PER_NODE);
    const char *path = write_file("nics.json", cluster_json(group));
    brg_topology *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_topology_load_cluster(&t, path, NULL, &err), err.message);
    BRG_ASSERT_EQ_INT(brg_topology_nic_count(t), 2 * BRG_TOPOLOGY_MAX_NICS_PER_NODE);
    brg_topology_destroy(t);
    const char *bad[] = {"65", "4294967304", "2147483648", "100000000", "9223372036854775807"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(group, sizeof group, "{\"preset\":\"dgx-h100\",\"count\":2,\"nics\":{\"count\":%s}}", bad[i]);
        expect_cluster(cluster_json(group), BRG_ERR_PARSE, "node_groups[0].nics.count", "at most 64");
    }
    /* An XML group may ask for NICs its file lacks: the same bound. */
    snprintf(group, sizeof group, "{\"xml\":\"%s/topologies/nvidiaDGX2.xml\",\"count\":1,\"nics\":{\"count\":65}}",
             brg_test_fixtures());
    expect_cluster(cluster_json(group), BRG_ERR_PARSE, "nics.count", "at most 64");
}

static void test_cluster_node_without_nics(void) {
    /* A node without NICs: its NIC array may be NULL, and joining it once did memcpy from NULL. */
    char group[256];
    snprintf(group, sizeof group, "{\"xml\":\"%s/topologies/nvidiaDGX2.xml\",\"count\":1}", brg_test_fixtures());
    const char *path = write_file("no-nics.json", cluster_json(group));
    brg_topology *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_topology_load_cluster(&t, path, NULL, &err), err.message);
    BRG_ASSERT_EQ_INT(brg_topology_device_count(t), 16);
    BRG_ASSERT_EQ_INT(brg_topology_nic_count(t), 0);
    brg_topology_destroy(t);
}

static void test_add_nic_bound(void) {
    brg_topology *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_topology_create_custom(&t, 1, 2, "cpu", &err), err.message);
    brg_nic_info nic = {.node = 0, .numa_node = -1, .bandwidth = 1e9};
    for (int k = 0; k < BRG_TOPOLOGY_MAX_NICS_PER_NODE; k++) BRG_ASSERT_OK(brg_topology_add_nic(t, &nic, NULL), "");
    BRG_ASSERT_STATUS(brg_topology_add_nic(t, &nic, NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_EQ_INT(brg_topology_nic_count(t), BRG_TOPOLOGY_MAX_NICS_PER_NODE);
    brg_topology_destroy(t);
}

/* ---- hwloc XML figures ------------------------------------------------------------------------------- */

/* The POWER8 fixture with every CUDAGlobalMemorySize set to `value`, loaded. */
static brg_status load_power8_with_memory(const char *value, brg_topology **t, brg_error *err) {
    char src[512];
    snprintf(src, sizeof src, "%s/topologies/power8gpudistances.xml", brg_test_fixtures());
    FILE *f = fopen(src, "r");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1), *out = malloc((size_t)size * 2 + 4096);
    CU_ASSERT_FATAL(text && out && fread(text, 1, (size_t)size, f) == (size_t)size);
    text[size] = '\0';
    fclose(f);
    const char *key = "name=\"CUDAGlobalMemorySize\" value=\"";
    char *w = out;
    for (const char *r = text; *r;) {
        const char *at = strstr(r, key);
        if (!at) {
            w += sprintf(w, "%s", r);
            break;
        }
        at += strlen(key);
        memcpy(w, r, (size_t)(at - r));
        w += at - r;
        w += sprintf(w, "%s", value);
        r = strchr(at, '"');
    }
    const char *path = write_file("power8-memory.xml", out);
    free(text);
    free(out);
    brg_status s = brg_topology_load_xml(t, path, NULL, err);
    return s;
}

static void test_xml_gpu_memory(void) {
    brg_topology *t = NULL;
    brg_error err = {0};
    /* 2^40 KiB (1 PiB) is the largest memory a GPU may claim. */
    BRG_ASSERT_OK(load_power8_with_memory("1099511627776", &t, &err), err.message);
    brg_device_info info;
    BRG_ASSERT_OK(brg_topology_device_info(t, 0, &info), "");
    CU_ASSERT(info.memory_bytes == (UINT64_C(1) << 50));
    brg_topology_destroy(t);
    const char *bad[] = {"1099511627777", "1e30", "inf", "nan", "-5", "18446744073709551616", "12abc", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = NULL;
        memset(&err, 0, sizeof err);
        BRG_ASSERT_STATUS(load_power8_with_memory(bad[i], &t, &err), BRG_ERR_PARSE);
        CU_ASSERT(t == NULL);
        BRG_ASSERT_CONTAINS(err.message, "power8-memory.xml");
        BRG_ASSERT_CONTAINS(err.message, "CUDAGlobalMemorySize");
        BRG_ASSERT_CONTAINS(err.message, "0..1099511627776");
    }
}

/* ---- plan files -------------------------------------------------------------------------------------- */

static brg_graph *build(const char *spec) {
    brg_model_config cfg;
    brg_graph *g = NULL;
    brg_error err = {0};
    if (brg_model_parse(spec, &cfg, &err) != BRG_OK || brg_model_build(&cfg, &g, &err) != BRG_OK)
        fprintf(stderr, "building %s: %s\n", spec, err.message);
    return g;
}

/* A node of two CPU devices with figures the planner can cost. */
static brg_topology *cpu_pair(void) {
    brg_topology *t = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_topology_create_custom(&t, 1, 2, "cpu", &err), err.message);
    for (int d = 0; d < 2; d++) {
        brg_device_info info;
        brg_topology_device_info(t, d, &info);
        info.memory_bytes = 8000000000ULL;
        info.peak_flops[BRG_PRECISION_FP32] = 5e10;
        info.memory_bandwidth = 1e10;
        brg_topology_set_device(t, d, &info);
    }
    brg_topology_finalize(t);
    return t;
}

/* A plan for SMALL_GPT on two CPU devices, as JSON. */
static json_t *good_plan(brg_graph *g) {
    brg_topology *t = cpu_pair();
    brg_error err = {0};
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    o.global_batch = 16;
    o.pipeline_stages = 2;
    o.model_name = SMALL_GPT;
    brg_plan *plan = NULL;
    BRG_ASSERT_OK(brg_plan_search(g, t, &o, &plan, &err), err.message);
    char *text = NULL;
    BRG_ASSERT_OK(brg_plan_to_json(plan, &text), "");
    json_t *root = json_loads(text, 0, NULL);
    CU_ASSERT_FATAL(root != NULL);
    free(text);
    brg_plan_destroy(plan);
    brg_topology_destroy(t);
    return root;
}

/* The plan with its batch fields set (as raw JSON numbers), loaded. */
static brg_status load_batch(json_t *good, const char *global, const char *micro, const char *count, brg_plan **out,
                             brg_error *err) {
    char *text = json_dumps(good, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    CU_ASSERT_FATAL(text != NULL);
    /* Edit the text, so values past jansson's integers reach the loader as written. */
    const char *fields[3][2] = {{"\"global_batch\": ", global}, {"\"micro_batch\": ", micro},
                                {"\"micro_batches\": ", count}};
    for (int k = 0; k < 3; k++) {
        char *at = strstr(text, fields[k][0]);
        CU_ASSERT_FATAL(at != NULL);
        at += strlen(fields[k][0]);
        char *end = at + strspn(at, "0123456789");
        size_t n = strlen(text) - (size_t)(end - at) + strlen(fields[k][1]) + 1;
        char *edited = malloc(n);
        snprintf(edited, n, "%.*s%s%s", (int)(at - text), text, fields[k][1], end);
        free(text);
        text = edited;
    }
    brg_status s = brg_plan_load_string(text, "plan.json", out, err);
    free(text);
    return s;
}

static void expect_plan_error(json_t *good, const char *global, const char *micro, const char *count,
                              const char *needle1, const char *needle2) {
    brg_plan *plan = NULL;
    brg_error err = {0};
    BRG_ASSERT_STATUS(load_batch(good, global, micro, count, &plan, &err), BRG_ERR_PARSE);
    CU_ASSERT(plan == NULL);
    BRG_ASSERT_CONTAINS(err.message, "plan.json:");
    BRG_ASSERT_CONTAINS(err.message, needle1);
    if (needle2) BRG_ASSERT_CONTAINS(err.message, needle2);
}

static void test_plan_batch_overflow(void) {
    brg_graph *g = build(SMALL_GPT);
    json_t *good = good_plan(g);
    /* Once: 4611686018427387905 * 16 wrapped to 16 and passed the global-batch check. */
    expect_plan_error(good, "16", "4611686018427387905", "16", "micro_batch", "out of range (1..16)");
    expect_plan_error(good, "16", "17", "1", "micro_batch", "out of range (1..16)");
    /* Each factor within its range, their product past the limit: named, not wrapped. */
    expect_plan_error(good, "1073741824", "1073741824", "65535", "global_batch",
                      "1 x 1073741824 x 65535 = more than the limit 1073741824");
    expect_plan_error(good, "1073741825", "1", "1", "global_batch", "out of range (1..1073741824)");
    expect_plan_error(good, "9223372036854775807", "1", "1", "global_batch", "out of range (1..1073741824)");
    expect_plan_error(good, "16", "1", "65536", "micro_batches", "out of range (1..65535)");
    /* The largest global batch loads, and its report counts 2^30 x 32 tokens without overflow. */
    brg_plan *plan = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(load_batch(good, "1073741824", "32768", "32768", &plan, &err), err.message);
    CU_ASSERT_FATAL(plan != NULL);
    char *report = NULL;
    BRG_ASSERT_OK(brg_plan_report_text(plan, &report), "");
    BRG_ASSERT_CONTAINS(report, "34,359,738,368 tokens");
    free(report);
    /* A micro-batch of 32768 fits this model's tensors; the plan then checks against it. */
    BRG_ASSERT_OK(brg_plan_check(plan, g, NULL, &err), err.message);
    brg_plan_destroy(plan);
    plan = NULL;
    /* A micro-batch so large that a tensor would pass BRG_MAX_TENSOR_ELEMENTS loads (it is the file's
     * business), and is refused against the model, by name. */
    BRG_ASSERT_OK(load_batch(good, "1073741824", "1073741824", "1", &plan, &err), err.message);
    CU_ASSERT_FATAL(plan != NULL);
    BRG_ASSERT_STATUS(brg_plan_check(plan, g, NULL, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "micro_batch");
    BRG_ASSERT_CONTAINS(err.message, "1073741824 samples");
    BRG_ASSERT_CONTAINS(err.message, "at most");
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    int split[8];
    brg_recompute policy[8];
    BRG_ASSERT_STATUS(brg_plan_train_options(plan, g, &o, split, 8, policy, 8, &err), BRG_ERR_INVALID_ARGUMENT);
    brg_plan_destroy(plan);
    json_decref(good);
    brg_graph_destroy(g);
}

static void test_plan_option_limits(void) {
    brg_graph *g = build(SMALL_GPT);
    brg_topology *t = cpu_pair();
    brg_error err = {0};
    brg_plan_options o = BRG_PLAN_OPTIONS_INIT;
    brg_plan *plan = NULL;
    o.global_batch = BRG_PLAN_MAX_GLOBAL_BATCH + 1;
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "global_batch must be 1..1073741824");
    o.global_batch = 64;
    o.micro_batch = 65;
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "micro_batch");
    /* The largest global batch with a micro-batch the model's tensors cannot hold: no plan, and the
     * reason names the tensor. */
    o.global_batch = BRG_PLAN_MAX_GLOBAL_BATCH;
    o.micro_batch = BRG_PLAN_MAX_GLOBAL_BATCH;
    o.pipeline_stages = 2;
    BRG_ASSERT_STATUS(brg_plan_search(g, t, &o, &plan, &err), BRG_ERR_INFEASIBLE);
    BRG_ASSERT_CONTAINS(err.message, "more than 1099511627776 elements");
    CU_ASSERT(plan == NULL);
    brg_topology_destroy(t);
    brg_graph_destroy(g);
}

/* ---- graphs and the trainer -------------------------------------------------------------------------- */

static void test_graph_shape_limits(void) {
    brg_graph *g = NULL;
    brg_graph_create(&g);
    /* 2^20 x 2^20 elements per sample is the most; one more dimension unit is not. */
    CU_ASSERT(brg_input(g, "x", BRG_F32, 3, (int64_t[]){BRG_BATCH, INT64_C(1) << 20, INT64_C(1) << 20}) != NULL);
    BRG_ASSERT_EQ_INT(brg_graph_status(g), BRG_OK);
    CU_ASSERT(brg_input(g, "y", BRG_F32, 3, (int64_t[]){BRG_BATCH, (INT64_C(1) << 20) + 1, INT64_C(1) << 20}) == NULL);
    BRG_ASSERT_EQ_INT(brg_graph_status(g), BRG_ERR_SHAPE);
    BRG_ASSERT_CONTAINS(brg_graph_last_error(g), "tensor 'y' (B, 1048577, 1048576) would hold more than 1099511627776 "
                                                 "elements per sample");
    brg_graph_destroy(g);

    /* Products that wrap int64 itself. */
    brg_graph_create(&g);
    CU_ASSERT(brg_param(g, "w", 3, (int64_t[]){INT64_C(1) << 31, INT64_C(1) << 31, INT64_C(1) << 31}, (brg_init){BRG_INIT_ZEROS, 0}) ==
              NULL);
    BRG_ASSERT_EQ_INT(brg_graph_status(g), BRG_ERR_SHAPE);
    BRG_ASSERT_CONTAINS(brg_graph_last_error(g), "tensor 'w'");
    brg_graph_destroy(g);

    /* Attention's scores are (heads, T, T) per sample: 2^40 is the most. */
    brg_graph_create(&g);
    brg_tensor *qkv = brg_input(g, "qkv", BRG_F32, 3, (int64_t[]){BRG_BATCH, INT64_C(1) << 20, 3});
    CU_ASSERT(brg_causal_attention(g, qkv, 1, "attn") != NULL);
    brg_tensor *qkv2 = brg_input(g, "qkv2", BRG_F32, 3, (int64_t[]){BRG_BATCH, (INT64_C(1) << 20) + 1, 3});
    CU_ASSERT(brg_causal_attention(g, qkv2, 1, "attn2") == NULL);
    BRG_ASSERT_EQ_INT(brg_graph_status(g), BRG_ERR_SHAPE);
    BRG_ASSERT_CONTAINS(brg_graph_last_error(g), "attention scores pass 1099511627776 elements per sample");
    brg_graph_destroy(g);
}

static void test_trainer_micro_batch_limit(void) {
    brg_graph *g = build(SMALL_GPT);
    CU_ASSERT_FATAL(g != NULL);
    const char *binding = NULL;
    int64_t most = brg__graph_max_batch(g, &binding);
    CU_ASSERT(most > 1 && most < BRG_MAX_TENSOR_ELEMENTS);
    CU_ASSERT(binding != NULL);
    char msg[BRG_ERROR_MESSAGE_MAX];
    BRG_ASSERT_OK(brg__graph_check_batch(g, most, msg, sizeof msg), msg);
    BRG_ASSERT_STATUS(brg__graph_check_batch(g, most + 1, msg, sizeof msg), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(msg, binding);
    const int64_t bad[] = {most + 1, INT64_C(4611686018427387905), INT64_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
        o.micro_batch = bad[i];
        brg_trainer *tr = NULL;
        brg_error err = {0};
        BRG_ASSERT_STATUS(brg_trainer_create(&tr, g, &o, &err), BRG_ERR_INVALID_ARGUMENT);
        CU_ASSERT(tr == NULL);
        BRG_ASSERT_CONTAINS(err.message, "micro_batch");
        BRG_ASSERT_CONTAINS(err.message, "more than 1099511627776 elements");
    }
    brg_graph_destroy(g);
}

static void test_data_batch_limit(void) {
    brg_data *d = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, 64, 32, 1, &err), err.message);
    int32_t tokens[32];
    BRG_ASSERT_STATUS(brg_data_batch(d, 0, INT64_C(1) << 62, tokens, NULL), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(brg_data_last_error(d), "more tokens than a buffer can hold");
    BRG_ASSERT_OK(brg_data_batch(d, 0, 1, tokens, NULL), brg_data_last_error(d));
    brg_data_destroy(d);
}

/* ---- from the command line --------------------------------------------------------------------------- */

static void test_cli_errors(void) {
    const char *path = write_file("cli-cluster.json", cluster_json("{\"preset\":\"dgx-h100\",\"count\":2305843009213693953}"));
    const brg_test_run *r = brg_test_run_brigade((const char *const[]){"topo", "--cluster", path, NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 2);
    BRG_ASSERT_CONTAINS(r->err, "cli-cluster.json:1:");
    BRG_ASSERT_CONTAINS(r->err, "node_groups[0].count: must be at most 8192");
    path = write_file("cli-nics.json", cluster_json("{\"preset\":\"dgx-h100\",\"count\":2,\"nics\":{\"count\":4294967304}}"));
    r = brg_test_run_brigade((const char *const[]){"topo", "--cluster", path, NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 2);
    BRG_ASSERT_CONTAINS(r->err, "nics.count: must be at most 64");
    r = brg_test_run_brigade((const char *const[]){"train", "--model", SMALL_GPT, "--micro-batch", "4611686018427387905",
                                                   "--steps", "1", NULL});
    CU_ASSERT(r->exit_code != 0 && r->exit_code < 128);
    BRG_ASSERT_CONTAINS(r->err, "micro");
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"cluster_node_count", test_cluster_node_count},
        {"cluster_largest", test_cluster_largest},
        {"cluster_nic_count", test_cluster_nic_count},
        {"cluster_node_without_nics", test_cluster_node_without_nics},
        {"add_nic_bound", test_add_nic_bound},
        {"xml_gpu_memory", test_xml_gpu_memory},
        {"plan_batch_overflow", test_plan_batch_overflow},
        {"plan_option_limits", test_plan_option_limits},
        {"graph_shape_limits", test_graph_shape_limits},
        {"trainer_micro_batch_limit", test_trainer_micro_batch_limit},
        {"data_batch_limit", test_data_batch_limit},
        {"cli_errors", test_cli_errors},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "limits", cases);
}
