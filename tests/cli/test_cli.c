/* The brigade command from outside: training results, determinism, and errors for bad input. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brigade.h"
#include "harness.h"

#define SMALL_GPT "gpt:layers=2,hidden=64,heads=4,vocab=64,seq=32"

typedef brg_test_run run_result;

static const run_result *run_brigade(const char *const *args) { return brg_test_run_brigade(args); }

static void read_file(const char *path, char *buf, size_t size) {
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* The value after "params fingerprint: " in out, or "" when absent. */
static void fingerprint_of(const char *out, char fp[17]) {
    fp[0] = '\0';
    const char *p = strstr(out, "params fingerprint: ");
    if (p) snprintf(fp, 17, "%s", p + strlen("params fingerprint: "));
}

/* The losses of every printed step line, in order; returns how many. */
static int losses_of(const char *out, double *losses, int max) {
    int n = 0;
    for (const char *p = strstr(out, "| loss "); p && n < max; p = strstr(p + 1, "| loss "))
        losses[n++] = strtod(p + strlen("| loss "), NULL);
    return n;
}

static void expect_usage_error(const char *const *args, const char *needle) {
    const run_result *r = run_brigade(args);
    if (r->exit_code != 2) fprintf(stderr, "exit %d, stderr: %s\n", r->exit_code, r->err);
    BRG_ASSERT_EQ_INT(r->exit_code, 2);
    BRG_ASSERT_CONTAINS(r->err, needle);
    CU_ASSERT(strstr(r->out, "params fingerprint") == NULL);
}

static void test_help(void) {
    const run_result *r = run_brigade((const char *[]){"--help", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    BRG_ASSERT_CONTAINS(r->out, "train");
    r = run_brigade((const char *[]){"train", "--help", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    const char *flags[] = {"--model", "--steps", "--micro-batch", "--micro-batches", "--lr", "--seed",
                           "--data", "--stats", "--threads", "--grad-clip", "--weight-decay", "gpt2-small"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) BRG_ASSERT_CONTAINS(r->out, flags[i]);
    r = run_brigade((const char *[]){NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 2);
    BRG_ASSERT_CONTAINS(r->err, "usage");
    r = run_brigade((const char *[]){"frobnicate", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 2);
    BRG_ASSERT_CONTAINS(r->err, "unknown command 'frobnicate'");
}

/* The synthetic task is learned: the last loss is below 30% of the first; the same command twice
 * gives the same losses and fingerprint; another seed gives another fingerprint. */
static void test_train_learns_and_repeats(void) {
    const char *args[] = {"train", "--model", SMALL_GPT, "--steps", "300", "--log-every", "1", NULL};
    const run_result *r = run_brigade(args);
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    static double first[400], second[400];
    int n1 = losses_of(r->out, first, 400);
    char fp1[17], fp2[17], fp3[17];
    fingerprint_of(r->out, fp1);
    BRG_ASSERT_EQ_INT(n1, 300);
    BRG_ASSERT_EQ_INT(strlen(fp1), 16);
    if (n1 == 300) {
        fprintf(stderr, "synthetic task: loss %.4f -> %.4f\n", first[0], first[299]);
        CU_ASSERT(first[299] < 0.3 * first[0]);
    }
    r = run_brigade(args);
    int n2 = losses_of(r->out, second, 400);
    fingerprint_of(r->out, fp2);
    BRG_ASSERT_EQ_INT(n2, n1);
    for (int i = 0; i < n1 && i < n2; i++) CU_ASSERT(first[i] == second[i]);
    CU_ASSERT_STRING_EQUAL(fp1, fp2);
    r = run_brigade((const char *[]){"train", "--model", SMALL_GPT, "--steps", "3", "--seed", "7", NULL});
    fingerprint_of(r->out, fp3);
    BRG_ASSERT_EQ_INT(strlen(fp3), 16);
    CU_ASSERT_STRING_NOT_EQUAL(fp1, fp3);
}

static void test_stats_file(void) {
    char path[512];
    brg_test_tmp_path(path, sizeof path, "stats.json");
    const run_result *r = run_brigade((const char *[]){"train", "--model", "mlp:layers=2,hidden=32,vocab=16,seq=8",
                                                 "--steps", "4", "--micro-batches", "2", "--stats", path, NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    static char json[1 << 16];
    read_file(path, json, sizeof json);
    char fp[17], quoted[32];
    fingerprint_of(r->out, fp);
    snprintf(quoted, sizeof quoted, "\"%s\"", fp);
    BRG_ASSERT_CONTAINS(json, "\"params_fingerprint\"");
    BRG_ASSERT_CONTAINS(json, quoted);
    BRG_ASSERT_CONTAINS(json, "\"tokens_per_second\"");
    /* four step records */
    int steps = 0;
    for (const char *p = strstr(json, "\"loss\""); p; p = strstr(p + 1, "\"loss\"")) steps++;
    BRG_ASSERT_EQ_INT(steps, 4);
    unlink(path);
}

static void test_bad_flags(void) {
    expect_usage_error((const char *[]){"train", "--model", SMALL_GPT, "--stpes", "3", NULL}, "unknown flag '--stpes'");
    expect_usage_error((const char *[]){"train", "--steps", "3", NULL}, "--model is required");
    expect_usage_error((const char *[]){"train", "--model", NULL}, "--model needs a value");
    expect_usage_error((const char *[]){"train", "--model", SMALL_GPT, "--steps", "ten", NULL},
                       "--steps takes a whole number");
    expect_usage_error((const char *[]){"train", "--model", SMALL_GPT, "--steps", "0", NULL},
                       "--steps takes a whole number from 1");
    expect_usage_error((const char *[]){"train", "--model", SMALL_GPT, "--lr", "-1", NULL}, "--lr takes a number");
    expect_usage_error((const char *[]){"train", "--model", SMALL_GPT, "--lr", "nan", NULL}, "--lr takes a number");
    expect_usage_error((const char *[]){"train", "--model", SMALL_GPT, "stray", NULL}, "unknown argument 'stray'");
}

static void test_bad_model_spec(void) {
    expect_usage_error((const char *[]){"train", "--model", "gpt:layers=2,hiden=64", NULL}, "hiden");
    expect_usage_error((const char *[]){"train", "--model", "gpt:layers=two", NULL}, "two");
    expect_usage_error((const char *[]){"train", "--model", "transformer:layers=2", NULL}, "transformer");
    expect_usage_error((const char *[]){"train", "--model", "gpt2-tiny", NULL}, "gpt2-tiny");
    expect_usage_error((const char *[]){"train", "--model", "gpt:hidden=64,heads=5", NULL}, "heads");
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fwrite(data, 1, n, f);
    fclose(f);
}

static void test_bad_data_file(void) {
    char missing[512], truncated[512], good[512];
    brg_test_tmp_path(missing, sizeof missing, "no-such-shard.bin");
    expect_usage_error((const char *[]){"train", "--model", SMALL_GPT, "--data", missing, NULL}, missing);

    /* a header cut short */
    brg_test_tmp_path(truncated, sizeof truncated, "truncated.bin");
    int32_t header[256] = {20240520, 1, 1000};
    write_bytes(truncated, header, 100);
    expect_usage_error((const char *[]){"train", "--model", SMALL_GPT, "--data", truncated, NULL}, truncated);

    /* a header promising more tokens than the file holds */
    static unsigned char buf[1024 + 2 * 100];
    memcpy(buf, header, sizeof header);
    write_bytes(truncated, buf, sizeof buf);
    expect_usage_error((const char *[]){"train", "--model", SMALL_GPT, "--data", truncated, NULL}, truncated);
    unlink(truncated);

    /* a good shard trains */
    brg_test_tmp_path(good, sizeof good, "good.bin");
    static int32_t tokens[4096];
    for (int i = 0; i < 4096; i++) tokens[i] = (i * 7 + i / 5) % 64;
    brg_error err;
    BRG_ASSERT_OK(brg_data_write_bin(good, tokens, 4096, &err), err.message);
    const run_result *r = run_brigade((const char *[]){"train", "--model", SMALL_GPT, "--data", good, "--steps", "3", NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    BRG_ASSERT_CONTAINS(r->out, "params fingerprint: ");
    unlink(good);
}

static void test_unwritable_stats(void) {
    expect_usage_error((const char *[]){"train", "--model", SMALL_GPT, "--stats", "/nonexistent-dir/s.json", NULL},
                       "cannot write --stats file '/nonexistent-dir/s.json'");
}

/* The pipeline from outside: every schedule gives pp=1's fingerprint; bad pipeline requests fail early. */
static void test_pipeline_flags(void) {
    const char *model = "gpt:layers=4,hidden=32,heads=2,vocab=32,seq=16";
    const char *configs[][8] = {
        {"--pp", "1", NULL},
        {"--pp", "2", "--schedule", "1f1b", NULL},
        {"--pp", "4", "--schedule", "gpipe", "--recompute", "full", NULL},
        {"--pp", "2", "--schedule", "interleaved", NULL},
        {"--pp", "3", "--schedule", "zb-h1", "--recompute", "selective", NULL},
        {"--pp", "2", "--split", "3", NULL},
    };
    char first[17] = "";
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        const char *args[32] = {"train", "--model", model, "--steps", "3", "--micro-batches", "4", "--threads", "1"};
        int n = 9;
        for (int k = 0; configs[c][k]; k++) args[n++] = configs[c][k];
        args[n] = NULL;
        const run_result *r = run_brigade(args);
        if (r->exit_code != 0) fprintf(stderr, "config %zu: %s\n", c, r->err);
        BRG_ASSERT_EQ_INT(r->exit_code, 0);
        BRG_ASSERT_CONTAINS(r->out, "bubble");
        char fp[17];
        fingerprint_of(r->out, fp);
        if (c == 0) memcpy(first, fp, sizeof fp);
        if (strcmp(fp, first) != 0) fprintf(stderr, "config %zu: fingerprint %s, pp=1 %s\n", c, fp, first);
        CU_ASSERT_STRING_EQUAL(fp, first);
    }
    expect_usage_error((const char *[]){"train", "--model", model, "--pp", "9", NULL}, "only 8 layers");
    expect_usage_error((const char *[]){"train", "--model", model, "--pp", "2", "--schedule", "interleaved",
                                        "--micro-batches", "3", NULL},
                       "multiple");
    expect_usage_error((const char *[]){"train", "--model", model, "--schedule", "pipedream", NULL},
                       "--schedule takes gpipe, 1f1b, interleaved or zb-h1, not 'pipedream'");
    expect_usage_error((const char *[]){"train", "--model", model, "--recompute", "some", NULL},
                       "--recompute takes none, full or selective");
    expect_usage_error((const char *[]){"train", "--model", model, "--pp", "2", "--split", "a,b", NULL},
                       "--split takes ascending layer indices");
    expect_usage_error((const char *[]){"train", "--model", model, "--pp", "3", "--split", "2", NULL},
                       "3 virtual stages need 2");
    expect_usage_error((const char *[]){"train", "--model", model, "--trace", "/nonexistent-dir/t.json", NULL},
                       "cannot write --trace file '/nonexistent-dir/t.json'");
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"help", test_help},
        {"train_learns_and_repeats", test_train_learns_and_repeats},
        {"stats_file", test_stats_file},
        {"bad_flags", test_bad_flags},
        {"bad_model_spec", test_bad_model_spec},
        {"bad_data_file", test_bad_data_file},
        {"unwritable_stats", test_unwritable_stats},
        {"pipeline_flags", test_pipeline_flags},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "cli", cases);
}
