/* Checkpoints: a run saved at step k and resumed continues bitwise as the run that never stopped, for
 * every pipeline depth and schedule, and across layouts (saved with pp 2, resumed with pp 1 and 3); damaged
 * or foreign checkpoints are refused naming the file and what is wrong; a full disk leaves the previous
 * step intact; and kill -9 at random moments, saves included, never leaves a torn step. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "brigade.h"
#include "brigade/checkpoint.h"
#include "harness.h"
#include "io/safetensors.h"

extern char **environ;

#define SPEC "gpt:layers=4,hidden=32,heads=2,vocab=64,seq=16"

#define build brg_test_build

static brg_train_options options(int pp, brg_schedule_kind kind) {
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.micro_batch = 2;
    o.micro_batches = 6;
    o.blas_threads = 1;
    o.lr = 3e-3f;
    o.stages = pp;
    o.schedule = kind;
    o.chunks = kind == BRG_SCHEDULE_INTERLEAVED_1F1B ? 2 : 1;
    o.timeout_seconds = 60;
    return o;
}

typedef struct outcome {
    uint64_t fingerprint;
    double loss[8]; /* of steps 1..8 */
} outcome;

/* Trains steps [from, to]: after resuming from dir when from > 1; saving at step save_at (0: never). */
static outcome train(const brg_graph *g, const brg_model_config *cfg, const brg_train_options *o, int from, int to,
                     const char *dir, int save_at) {
    outcome r;
    memset(&r, 0, sizeof r);
    brg_error err = {0};
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg->vocab, cfg->seq, 5, &err), err.message);
    BRG_ASSERT_OK(brg_trainer_create(&t, g, o, &err), err.message);
    if (!t) return r;
    brg_checkpoint_options co = BRG_CHECKPOINT_OPTIONS_INIT;
    co.model = cfg;
    if (from > 1) {
        int64_t at = -1;
        BRG_ASSERT_OK(brg_checkpoint_resume(t, dir, &co, &at, &err), err.message);
        BRG_ASSERT_EQ_INT(at, from - 1);
    }
    for (int s = from; s <= to; s++) {
        brg_step_stats st;
        BRG_ASSERT_OK(brg_trainer_step(t, d, &st), brg_trainer_last_error(t));
        BRG_ASSERT_EQ_INT(st.step, s);
        r.loss[s - 1] = st.loss;
        if (s == save_at) BRG_ASSERT_OK(brg_checkpoint_save(t, dir, &co, &err), err.message);
    }
    BRG_ASSERT_OK(brg_trainer_fingerprint(t, &r.fingerprint), "fingerprint");
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    return r;
}

static void scratch_dir(char *buf, size_t size, const char *name) {
    brg_test_tmp_path(buf, size, name);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", buf);
    CU_ASSERT(system(cmd) == 0);
}

/* Save at 2, resume, go on to 5: bitwise the 5-step run, for pp 1, 2, 3 and every schedule. */
static void test_resume_is_bitwise(void) {
    brg_model_config cfg;
    brg_graph *g = build(SPEC, &cfg);
    brg_train_options o = options(1, BRG_SCHEDULE_1F1B);
    outcome whole = train(g, &cfg, &o, 1, 5, NULL, 0);
    const brg_schedule_kind kinds[] = {BRG_SCHEDULE_GPIPE, BRG_SCHEDULE_1F1B, BRG_SCHEDULE_INTERLEAVED_1F1B,
                                       BRG_SCHEDULE_ZB_H1};
    char dir[1024];
    for (int pp = 1; pp <= 3; pp++)
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            if (pp * (kinds[k] == BRG_SCHEDULE_INTERLEAVED_1F1B ? 2 : 1) > 8) continue;
            scratch_dir(dir, sizeof dir, "ckpt-bitwise");
            o = options(pp, kinds[k]);
            outcome first = train(g, &cfg, &o, 1, 2, dir, 2);
            outcome rest = train(g, &cfg, &o, 3, 5, dir, 0);
            int same = first.loss[0] == whole.loss[0] && first.loss[1] == whole.loss[1] && rest.loss[2] == whole.loss[2] &&
                       rest.loss[4] == whole.loss[4] && rest.fingerprint == whole.fingerprint;
            if (!same)
                fprintf(stderr, "pp %d %s: fingerprint %016llx vs %016llx, loss 5 %.9g vs %.9g\n", pp,
                        brg_schedule_kind_name(kinds[k]), (unsigned long long)rest.fingerprint,
                        (unsigned long long)whole.fingerprint, rest.loss[4], whole.loss[4]);
            CU_ASSERT(same);
        }
    brg_graph_destroy(g);
}

/* Saved by a 2-stage pipeline, resumed by one stage and by three: the same parameters in the end. */
static void test_resume_in_another_layout(void) {
    brg_model_config cfg;
    brg_graph *g = build(SPEC, &cfg);
    brg_train_options o = options(1, BRG_SCHEDULE_1F1B);
    outcome whole = train(g, &cfg, &o, 1, 4, NULL, 0);
    char dir[1024];
    scratch_dir(dir, sizeof dir, "ckpt-layout");
    o = options(2, BRG_SCHEDULE_1F1B);
    train(g, &cfg, &o, 1, 2, dir, 2);
    for (int pp = 1; pp <= 3; pp += 2) {
        o = options(pp, pp == 3 ? BRG_SCHEDULE_GPIPE : BRG_SCHEDULE_1F1B);
        outcome rest = train(g, &cfg, &o, 3, 4, dir, 0);
        CU_ASSERT(rest.fingerprint == whole.fingerprint);
        CU_ASSERT(rest.loss[3] == whole.loss[3]);
    }
    /* The files follow Hugging Face's GPT-2: prefixed names, Conv1D weights (in, out), one index. */
    char path[1200];
    /* One process: one file (one per process under mpirun), whatever the pipeline depth. */
    snprintf(path, sizeof path, "%s/step-000002/model-00001-of-00001.safetensors", dir);
    brg__st_file *f = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(brg__st_open(path, &f, msg), msg);
    const brg__st_tensor *x = f ? brg__st_find(f, "transformer.h.0.attn.c_attn.weight") : NULL;
    CU_ASSERT(x != NULL);
    if (x) {
        BRG_ASSERT_EQ_INT(x->shape[0], 32);
        BRG_ASSERT_EQ_INT(x->shape[1], 96);
    }
    CU_ASSERT(f && brg__st_find(f, "transformer.wte.weight") != NULL);
    CU_ASSERT(f && brg__st_metadata(f, "format") && strcmp(brg__st_metadata(f, "format"), "pt") == 0);
    brg__st_close(f);
    snprintf(path, sizeof path, "%s/step-000002/config.json", dir);
    char *config = brg_test_slurp(path);
    BRG_ASSERT_CONTAINS(config, "\"n_embd\": 32");
    BRG_ASSERT_CONTAINS(config, "GPT2LMHeadModel");
    free(config);
    brg_graph_destroy(g);
}

/* The learning rate: a linear warm-up, then cosine or linear down to min_lr by total_steps; a resumed run
 * goes on along the same schedule, bitwise. */
static void test_lr_schedule(void) {
    brg_train_options o = options(1, BRG_SCHEDULE_1F1B);
    o.lr = 1e-3f;
    o.min_lr = 1e-4f;
    o.warmup_steps = 4;
    o.total_steps = 14;
    o.lr_schedule = BRG_LR_COSINE;
    BRG_ASSERT_NEAR(brg_lr_at(&o, 1), 2.5e-4, 1e-9);
    BRG_ASSERT_NEAR(brg_lr_at(&o, 4), 1e-3, 1e-9);
    BRG_ASSERT_NEAR(brg_lr_at(&o, 9), 1e-4 + 0.5 * 9e-4, 1e-9); /* half way: cos(pi / 2) = 0 */
    BRG_ASSERT_NEAR(brg_lr_at(&o, 14), 1e-4, 1e-9);
    BRG_ASSERT_NEAR(brg_lr_at(&o, 100), 1e-4, 1e-9);
    o.lr_schedule = BRG_LR_LINEAR;
    BRG_ASSERT_NEAR(brg_lr_at(&o, 9), 5.5e-4, 1e-9);
    o.lr_schedule = BRG_LR_CONSTANT;
    BRG_ASSERT_NEAR(brg_lr_at(&o, 9), 1e-3, 1e-9);
    /* Bad schedules are refused. */
    brg_model_config cfg;
    brg_graph *g = build(SPEC, &cfg);
    brg_trainer *t = NULL;
    brg_error err = {0};
    brg_train_options bad = o;
    bad.lr_schedule = BRG_LR_COSINE;
    bad.total_steps = 4;
    BRG_ASSERT_STATUS(brg_trainer_create(&t, g, &bad, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "total_steps must exceed warmup_steps");
    bad = o;
    bad.min_lr = 1.0f;
    BRG_ASSERT_STATUS(brg_trainer_create(&t, g, &bad, &err), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(err.message, "min_lr must be in [0, lr]");
    /* Resumed at step 3 (inside the warm-up) and continued to 6 along the cosine. */
    o = options(2, BRG_SCHEDULE_1F1B);
    o.warmup_steps = 2;
    o.total_steps = 6;
    o.min_lr = 1e-4f;
    o.lr_schedule = BRG_LR_COSINE;
    outcome whole = train(g, &cfg, &o, 1, 6, NULL, 0);
    char dir[1024];
    scratch_dir(dir, sizeof dir, "ckpt-lr");
    train(g, &cfg, &o, 1, 3, dir, 3);
    outcome rest = train(g, &cfg, &o, 4, 6, dir, 0);
    CU_ASSERT(rest.fingerprint == whole.fingerprint && rest.loss[5] == whole.loss[5]);
    brg_train_options flat = options(2, BRG_SCHEDULE_1F1B);
    outcome constant = train(g, &cfg, &flat, 1, 6, NULL, 0);
    CU_ASSERT(constant.fingerprint != whole.fingerprint); /* the schedule took effect */
    brg_graph_destroy(g);
}

/* A safetensors file in memory: the 8-byte length, the header, then `data` bytes of zeros. */
static brg_status open_crafted(const char *header, size_t data, char *msg) {
    size_t n = strlen(header);
    unsigned char *buf = calloc(8 + n + data + 1, 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(((uint64_t)n >> (8 * i)) & 0xff);
    memcpy(buf + 8, header, n);
    brg__st_file *f = NULL;
    brg_status s = brg__st_open_memory(buf, 8 + n + data, "crafted.safetensors", &f, msg);
    for (int64_t i = 0; s == BRG_OK && i < brg__st_count(f); i++) { /* reading what it says must be safe */
        const brg__st_tensor *x = brg__st_get(f, i);
        float *dst = malloc((size_t)(x->count ? x->count : 1) * sizeof(float));
        char ignored[BRG_ERROR_MESSAGE_MAX];
        brg__st_read_f32(f, x, dst, x->count, ignored);
        free(dst);
    }
    brg__st_close(f);
    free(buf);
    return s;
}

/* Every field of a safetensors header is checked before any data is read, each error naming the file,
 * the tensor and the numbers; F16 and BF16 convert exactly. */
static void test_safetensors_reader(void) {
    char msg[BRG_ERROR_MESSAGE_MAX];
    struct {
        const char *header;
        size_t data;
        brg_status status;
        const char *needle;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, BRG_OK, ""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, BRG_ERR_PARSE, "reach past the 4 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[5,6],\"data_offsets\":[0,100]}}", 100, BRG_ERR_PARSE,
         "tensor 'a': data_offsets [0, 100] hold 100 bytes, but F32 [5, 6] needs 120"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, BRG_ERR_PARSE, "overlaps"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, BRG_ERR_PARSE,
         "bytes [0, 4) of the data belong to no tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, BRG_ERR_PARSE,
         "4 bytes after the last tensor"},
        {"{\"a\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, BRG_ERR_PARSE, "unknown dtype 'Q7'"},
        {"{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, BRG_ERR_UNSUPPORTED, "sub-byte"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, BRG_ERR_PARSE, "dimension 0"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
         BRG_ERR_PARSE, "overflows 64 bits"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, BRG_ERR_PARSE, "begin <= end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, BRG_ERR_PARSE, "lacks \"data_offsets\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, BRG_ERR_PARSE, "unknown key 'x'"},
        {"{\"a\":1,\"a\":2}", 0, BRG_ERR_PARSE, "duplicate"},
        {"{\"__metadata__\":{\"k\":3}}", 0, BRG_ERR_PARSE, "__metadata__ 'k' is not a string"},
        {"[1, 2]", 0, BRG_ERR_PARSE, "not a JSON object"},
        {"{\"a\":", 0, BRG_ERR_PARSE, "crafted.safetensors: header:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msg[0] = '\0';
        brg_status s = open_crafted(cases[i].header, cases[i].data, msg);
        if (s != cases[i].status || !strstr(msg, cases[i].needle))
            fprintf(stderr, "case %zu: %s: %s\n", i, brg_status_name(s), msg);
        BRG_ASSERT_STATUS(s, cases[i].status);
        BRG_ASSERT_CONTAINS(msg, cases[i].needle);
    }
    /* The length word: too short a file, and a header said to reach past the end. */
    brg__st_file *f = NULL;
    BRG_ASSERT_STATUS(brg__st_open_memory("\x08\0\0", 3, "short.safetensors", &f, msg), BRG_ERR_PARSE);
    BRG_ASSERT_CONTAINS(msg, "too short");
    unsigned char big[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    BRG_ASSERT_STATUS(brg__st_open_memory(big, 10, "long.safetensors", &f, msg), BRG_ERR_PARSE);
    BRG_ASSERT_CONTAINS(msg, "reaches past the end of the file");
    /* F16 (subnormal, infinity) and BF16 read as float32. */
    const char *h = "{\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[6,8]}}";
    size_t n = strlen(h);
    unsigned char buf[512] = {0};
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(((uint64_t)n >> (8 * i)) & 0xff);
    memcpy(buf + 8, h, n);
    unsigned char vals[8] = {0x00, 0x3c, 0x01, 0x00, 0x00, 0x7c, 0x49, 0x40}; /* 1.0, 2^-24, +inf; bf16 3.140625 */
    memcpy(buf + 8 + n, vals, 8);
    BRG_ASSERT_OK(brg__st_open_memory(buf, 8 + n + 8, "halves.safetensors", &f, msg), msg);
    float out[3] = {0};
    BRG_ASSERT_OK(brg__st_read_f32(f, brg__st_find(f, "h"), out, 3, msg), msg);
    CU_ASSERT(out[0] == 1.0f && out[1] == ldexpf(1.0f, -24) && isinf(out[2]));
    BRG_ASSERT_OK(brg__st_read_f32(f, brg__st_find(f, "b"), out, 1, msg), msg);
    CU_ASSERT(out[0] == 3.140625f);
    BRG_ASSERT_STATUS(brg__st_read_f32(f, brg__st_find(f, "b"), out, 2, msg), BRG_ERR_SHAPE);
    brg__st_close(f);
    /* A dtype brigade does not read as weights: named. */
    const char *ints = "{\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    n = strlen(ints);
    memset(buf, 0, sizeof buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(((uint64_t)n >> (8 * i)) & 0xff);
    memcpy(buf + 8, ints, n);
    BRG_ASSERT_OK(brg__st_open_memory(buf, 8 + n + 8, "ints.safetensors", &f, msg), msg);
    BRG_ASSERT_STATUS(brg__st_read_f32(f, brg__st_find(f, "i"), out, 2, msg), BRG_ERR_UNSUPPORTED);
    BRG_ASSERT_CONTAINS(msg, "ints.safetensors: tensor 'i' is I32");
    brg__st_close(f);
    /* The fuzz corpus (tests/fuzz/corpus/safetensors, tools/fuzz.sh): valid and broken files, each opened
     * from its path (the fuzz target opens them from memory) and read without a crash. */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/../fuzz/corpus/safetensors", brg_test_fixtures());
    DIR *d = opendir(dir);
    CU_ASSERT(d != NULL);
    int files = 0, opened = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        brg__st_file *cf = NULL;
        files++;
        if (brg__st_open(path, &cf, msg) != BRG_OK) {
            CU_ASSERT(strstr(msg, e->d_name) != NULL); /* the error names the file */
            continue;
        }
        opened++;
        for (int64_t i = 0; i < brg__st_count(cf); i++) {
            const brg__st_tensor *x = brg__st_get(cf, i);
            float *dst = malloc((size_t)(x->count ? x->count : 1) * sizeof(float));
            brg__st_read_f32(cf, x, dst, x->count, msg);
            free(dst);
        }
        brg__st_close(cf);
    }
    if (d) closedir(d);
    CU_ASSERT(files >= 6 && opened >= 3);
    /* A write to a full device fails naming it. */
    brg__st_writer *w = NULL;
    BRG_ASSERT_OK(brg__st_writer_create(&w, msg), msg);
    float x[4] = {1, 2, 3, 4};
    BRG_ASSERT_OK(brg__st_writer_add(w, "x", BRG__ST_F32, 1, (int64_t[]){4}, x, msg), msg);
    BRG_ASSERT_STATUS(brg__st_writer_add(w, "x", BRG__ST_F32, 1, (int64_t[]){4}, x, msg), BRG_ERR_NAME);
    BRG_ASSERT_STATUS(brg__st_writer_write(w, "/dev/full", msg), BRG_ERR_IO);
    BRG_ASSERT_CONTAINS(msg, "No space left on device");
    brg__st_writer_destroy(w);
}

/* Runs the independent GPT-2 (tests/runtime/hf_gpt2.py: NumPy and the safetensors package); its stdout's
 * first number, or NAN. */
static double python_reference(const char *args) {
    char cmd[4096], script[1024];
    snprintf(script, sizeof script, "%s/../runtime/hf_gpt2.py", brg_test_fixtures());
    snprintf(cmd, sizeof cmd, "python3 '%s' %s", script, args);
    FILE *p = popen(cmd, "r");
    double v = NAN;
    if (!p || fscanf(p, "%lf", &v) != 1) v = NAN;
    int rc = p ? pclose(p) : -1;
    if (rc != 0) {
        fprintf(stderr, "'%s' failed (exit %d): python3 with numpy and safetensors is installed by tools/deps.sh\n", cmd, rc);
        v = NAN;
    }
    return v;
}

/* The loss of step `step` in a --stats file. */
static double stats_loss(const char *path, int step) {
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    json_t *steps = root ? json_object_get(root, "steps") : NULL;
    double v = NAN;
    for (size_t i = 0; i < json_array_size(steps); i++) {
        json_t *s = json_array_get(steps, i);
        if (json_integer_value(json_object_get(s, "step")) == step) v = json_real_value(json_object_get(s, "loss"));
    }
    json_decref(root);
    return v;
}

/* Hugging Face GPT-2 both ways, against an independent NumPy GPT-2: random weights written by Python as
 * the published files are (unprefixed, Conv1D, mask buffers) load with --init-from and give its loss; the
 * checkpoint brigade writes (prefixed names, an index) gives Python's loss for the next step, and loads
 * with --init-from too. */
static void test_hugging_face_round_trip(void) {
    char hf[1024], ckpt[1100], stats[1100], args[4096];
    scratch_dir(hf, sizeof hf, "hf-gpt2");
    snprintf(ckpt, sizeof ckpt, "%s-ckpt", hf);
    snprintf(stats, sizeof stats, "%s-stats.json", hf);
    snprintf(args, sizeof args, "make '%s'", hf);
    python_reference(args);
    char shard[1100];
    snprintf(shard, sizeof shard, "%s/tokens.bin", hf);
    const char *model = "gpt:layers=2,hidden=32,heads=2,vocab=64,seq=16";
    const brg_test_run *r = brg_test_run_brigade((const char *[]){"train", "--model", model, "--init-from", hf, "--data",
                                                                   shard, "--steps", "3", "--micro-batch", "4",
                                                                   "--checkpoint-dir", ckpt, "--stats", stats, NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    if (r->exit_code) fprintf(stderr, "%s", r->err);
    snprintf(args, sizeof args, "loss '%s' '%s' 0 4", hf, shard);
    double want = python_reference(args), got = stats_loss(stats, 1);
    if (!(fabs(got - want) <= 1e-5 * fabs(want))) fprintf(stderr, "imported: brigade %.9g, NumPy %.9g\n", got, want);
    CU_ASSERT(fabs(got - want) <= 1e-5 * fabs(want));
    /* Export: step 3's checkpoint under Python, on step 4's samples (12..15), against brigade's step 4. */
    r = brg_test_run_brigade((const char *[]){"train", "--model", model, "--data", shard, "--steps", "4", "--micro-batch",
                                              "4", "--resume", ckpt, "--stats", stats, NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    char step_dir[1200];
    snprintf(step_dir, sizeof step_dir, "%s/step-000003", ckpt);
    snprintf(args, sizeof args, "loss '%s' '%s' 12 4", step_dir, shard);
    want = python_reference(args);
    got = stats_loss(stats, 4);
    if (!(fabs(got - want) <= 1e-5 * fabs(want))) fprintf(stderr, "exported: brigade %.9g, NumPy %.9g\n", got, want);
    CU_ASSERT(fabs(got - want) <= 1e-5 * fabs(want));
    /* The prefixed, indexed spelling imports too. */
    r = brg_test_run_brigade((const char *[]){"train", "--model", model, "--init-from", step_dir, "--data", shard,
                                              "--steps", "1", "--micro-batch", "4", "--stats", stats, NULL});
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    snprintf(args, sizeof args, "loss '%s' '%s' 0 4", step_dir, shard);
    want = python_reference(args);
    got = stats_loss(stats, 1);
    CU_ASSERT(fabs(got - want) <= 1e-5 * fabs(want));
    /* Another shape than config.json says, and a tensor missing. */
    r = brg_test_run_brigade((const char *[]){"train", "--model", "gpt:layers=2,hidden=64,heads=2,vocab=64,seq=16",
                                              "--init-from", hf, "--steps", "1", NULL});
    CU_ASSERT(r->exit_code != 0);
    BRG_ASSERT_CONTAINS(r->err, "config.json: n_embd is 32, but the model");
    r = brg_test_run_brigade((const char *[]){"train", "--model", "gpt:layers=3,hidden=32,heads=2,vocab=64,seq=16",
                                              "--init-from", step_dir, "--steps", "1", NULL});
    CU_ASSERT(r->exit_code != 0);
    BRG_ASSERT_CONTAINS(r->err, "n_layer is 2");
    snprintf(args, sizeof args, "rm -rf '%s' '%s' '%s'", hf, ckpt, stats);
    CU_ASSERT(system(args) == 0);
}

/* Validation: forward passes through the pipeline give, on the step's own samples, bitwise the loss the
 * step reports, for every depth and schedule; the parameters do not move; bad requests are refused. */
static void test_evaluate(void) {
    brg_model_config cfg;
    brg_graph *g = build(SPEC, &cfg);
    const brg_schedule_kind kinds[] = {BRG_SCHEDULE_GPIPE, BRG_SCHEDULE_1F1B, BRG_SCHEDULE_INTERLEAVED_1F1B,
                                       BRG_SCHEDULE_ZB_H1};
    double first_eval = NAN;
    for (int pp = 1; pp <= 3; pp++)
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            brg_train_options o = options(pp, kinds[k]);
            brg_error err = {0};
            brg_data *d = NULL;
            brg_trainer *t = NULL;
            BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 5, &err), err.message);
            BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
            uint64_t before = 0, after = 1;
            BRG_ASSERT_OK(brg_trainer_fingerprint(t, &before), "fingerprint");
            double eval = NAN;
            BRG_ASSERT_OK(brg_trainer_evaluate(t, d, o.micro_batches, &eval), brg_trainer_last_error(t));
            BRG_ASSERT_OK(brg_trainer_fingerprint(t, &after), "fingerprint");
            CU_ASSERT(before == after);
            brg_step_stats st;
            BRG_ASSERT_OK(brg_trainer_step(t, d, &st), brg_trainer_last_error(t));
            if (eval != st.loss) fprintf(stderr, "pp %d %s: evaluated %.17g, trained %.17g\n", pp,
                                         brg_schedule_kind_name(kinds[k]), eval, st.loss);
            CU_ASSERT(eval == st.loss);
            if (isnan(first_eval)) first_eval = eval;
            CU_ASSERT(eval == first_eval);
            double again = NAN;
            BRG_ASSERT_OK(brg_trainer_evaluate(t, d, 9, &again), brg_trainer_last_error(t)); /* more than fit a step */
            CU_ASSERT(isfinite(again));
            BRG_ASSERT_STATUS(brg_trainer_evaluate(t, d, 0, &again), BRG_ERR_INVALID_ARGUMENT);
            BRG_ASSERT_OK(brg_trainer_step(t, d, &st), brg_trainer_last_error(t)); /* training goes on after */
            brg_trainer_destroy(t);
            brg_data_destroy(d);
        }
    brg_graph_destroy(g);
}

/* Resumes dir into a fresh trainer; the status and message. */
static brg_status try_resume(const brg_graph *g, const brg_model_config *cfg, const char *dir, char *message) {
    brg_train_options o = options(1, BRG_SCHEDULE_1F1B);
    brg_error err = {0};
    brg_trainer *t = NULL;
    BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
    brg_checkpoint_options co = BRG_CHECKPOINT_OPTIONS_INIT;
    co.model = cfg;
    brg_status s = brg_checkpoint_resume(t, dir, &co, NULL, &err);
    snprintf(message, BRG_ERROR_MESSAGE_MAX, "%s", err.message);
    brg_trainer_destroy(t);
    return s;
}

static void sh(const char *fmt, const char *a, const char *b) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    CU_ASSERT(system(cmd) == 0);
}

/* Damaged and foreign checkpoints: each refused, naming the file and what is wrong. */
static void test_bad_checkpoints(void) {
    brg_model_config cfg, other_cfg;
    brg_graph *g = build(SPEC, &cfg);
    brg_graph *other = build("gpt:layers=4,hidden=32,heads=4,vocab=64,seq=16", &other_cfg);
    char dir[1024], good[1024], msg[BRG_ERROR_MESSAGE_MAX];
    scratch_dir(good, sizeof good, "ckpt-good");
    brg_train_options o = options(2, BRG_SCHEDULE_1F1B);
    train(g, &cfg, &o, 1, 1, good, 1);
    BRG_ASSERT_OK(try_resume(g, &cfg, good, msg), msg);
    /* Nothing there yet: not a failure, a run from scratch. */
    scratch_dir(dir, sizeof dir, "ckpt-bad");
    BRG_ASSERT_STATUS(try_resume(g, &cfg, dir, msg), BRG_ERR_NOT_FOUND);
    BRG_ASSERT_CONTAINS(msg, "no complete step");
    struct {
        const char *damage; /* a shell command run in the copy's step directory */
        brg_status status;
        const char *needle;
    } cases[] = {
        {"echo step-000009 > ../latest", BRG_ERR_IO, "names"},
        {"echo ../../etc > ../latest", BRG_ERR_PARSE, "is not a step directory name"},
        {"truncate -s 100 model-00001-of-00001.safetensors", BRG_ERR_PARSE, "model-00001-of-00001.safetensors"},
        {"rm model-00001-of-00001.safetensors", BRG_ERR_IO, "names 'model-00001-of-00001.safetensors', which is missing"},
        {"sed -i 's/model-00001-of-00001/..\\/x/' model.safetensors.index.json", BRG_ERR_PARSE, "not a file of the step"},
        {"sed -i 's/transformer.wpe.weight/transformer.wpe.gone/' model.safetensors.index.json", BRG_ERR_PARSE,
         "has no file for tensor 'transformer.wpe.weight'"},
        {"sed -i 's/\"model_hash\": \"/\"model_hash\": \"f/' trainer.json", BRG_ERR_INVALID_ARGUMENT,
         "is a checkpoint of another model"},
        {"echo '{' > trainer.json", BRG_ERR_PARSE, "trainer.json:"},
        {"sed -i 's/\"next_sample\": [0-9]*/\"next_sample\": 5/' trainer.json", BRG_ERR_INVALID_ARGUMENT,
         "data position 5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        scratch_dir(dir, sizeof dir, "ckpt-bad");
        sh("cp -r '%s' '%s'", good, dir);
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "cd '%s/step-000001' && %s", dir, cases[i].damage);
        CU_ASSERT(system(cmd) == 0);
        brg_status s = try_resume(g, &cfg, dir, msg);
        if (s != cases[i].status || !strstr(msg, cases[i].needle))
            fprintf(stderr, "damage '%s': %s: %s\n", cases[i].damage, brg_status_name(s), msg);
        BRG_ASSERT_STATUS(s, cases[i].status);
        BRG_ASSERT_CONTAINS(msg, cases[i].needle);
    }
    /* Another model's checkpoint. */
    BRG_ASSERT_STATUS(try_resume(other, &other_cfg, good, msg), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(msg, "checkpoint of another model");
    /* A tensor of another shape (a file rewritten with wpe cut short). */
    scratch_dir(dir, sizeof dir, "ckpt-bad");
    sh("cp -r '%s' '%s'", good, dir);
    char path[1200];
    snprintf(path, sizeof path, "%s/step-000001/model-00001-of-00001.safetensors", dir);
    brg__st_file *f = NULL;
    BRG_ASSERT_OK(brg__st_open(path, &f, msg), msg);
    brg__st_writer *w = NULL;
    BRG_ASSERT_OK(brg__st_writer_create(&w, msg), msg);
    float *bufs[64] = {0};
    for (int64_t i = 0; f && w && i < brg__st_count(f) && i < 64; i++) {
        const brg__st_tensor *x = brg__st_get(f, i);
        bufs[i] = malloc((size_t)x->count * sizeof(float));
        BRG_ASSERT_OK(brg__st_read_f32(f, x, bufs[i], x->count, msg), msg);
        int64_t shape[8];
        memcpy(shape, x->shape, sizeof shape);
        if (strcmp(x->name, "transformer.wpe.weight") == 0) shape[0] = 8; /* (8, 32): half the positions */
        BRG_ASSERT_OK(brg__st_writer_add(w, x->name, BRG__ST_F32, x->ndim, shape, bufs[i], msg), msg);
    }
    brg__st_close(f);
    BRG_ASSERT_OK(brg__st_writer_write(w, path, msg), msg);
    brg__st_writer_destroy(w);
    for (int i = 0; i < 64; i++) free(bufs[i]);
    BRG_ASSERT_STATUS(try_resume(g, &cfg, dir, msg), BRG_ERR_SHAPE);
    BRG_ASSERT_CONTAINS(msg, "tensor 'transformer.wpe.weight' is [8, 32], the model's is [16, 32]");
    sh("rm -rf '%s' '%s'", dir, good);
    brg_graph_destroy(g);
    brg_graph_destroy(other);
}

/* A full disk (a 1 MiB tmpfs): the save fails naming the file, and the previous step stays latest and
 * resumable. Needs root to mount; says so otherwise. */
static void test_full_disk_keeps_previous_step(void) {
    char dir[1024];
    scratch_dir(dir, sizeof dir, "ckpt-full");
    CU_ASSERT(mkdir(dir, 0755) == 0);
    if (mount("brigade-test", dir, "tmpfs", 0, "size=1m") != 0) {
        printf("\n  (no tmpfs: %s; run as root to check a full disk)\n", strerror(errno));
        rmdir(dir);
        return;
    }
    brg_model_config cfg;
    brg_graph *g = build("gpt:layers=2,hidden=32,heads=2,vocab=64,seq=16", &cfg); /* a step: about 330 KiB */
    brg_train_options o = options(1, BRG_SCHEDULE_1F1B);
    brg_error err = {0};
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    BRG_ASSERT_OK(brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 5, &err), err.message);
    BRG_ASSERT_OK(brg_trainer_create(&t, g, &o, &err), err.message);
    brg_checkpoint_options co = BRG_CHECKPOINT_OPTIONS_INIT;
    co.model = &cfg;
    brg_step_stats st;
    BRG_ASSERT_OK(brg_trainer_step(t, d, &st), brg_trainer_last_error(t));
    BRG_ASSERT_OK(brg_checkpoint_save(t, dir, &co, &err), err.message);
    /* Fill the disk, then try the next step's save. */
    char filler[1200];
    snprintf(filler, sizeof filler, "dd if=/dev/zero of='%s/filler' bs=4k count=256 2>/dev/null; true", dir);
    CU_ASSERT(system(filler) == 0);
    BRG_ASSERT_OK(brg_trainer_step(t, d, &st), brg_trainer_last_error(t));
    BRG_ASSERT_STATUS(brg_checkpoint_save(t, dir, &co, &err), BRG_ERR_IO);
    BRG_ASSERT_CONTAINS(err.message, "No space left on device");
    char latest[1200];
    snprintf(latest, sizeof latest, "%s/latest", dir);
    char *text = brg_test_slurp(latest);
    BRG_ASSERT_CONTAINS(text, "step-000001");
    free(text);
    brg_trainer_destroy(t);
    char msg[BRG_ERROR_MESSAGE_MAX];
    BRG_ASSERT_OK(try_resume(g, &cfg, dir, msg), msg);
    brg_data_destroy(d);
    brg_graph_destroy(g);
    umount(dir);
    rmdir(dir);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* brigade train with a checkpoint every step, killed (-9) after a random delay, started again with
 * --resume, until it finishes: every restart resumes from a complete step, and the end is the
 * uninterrupted run's fingerprint. */
static void test_kill_and_resume(void) {
    char dir[1024], out[1100];
    scratch_dir(dir, sizeof dir, "ckpt-kill");
    snprintf(out, sizeof out, "%s.out", dir);
    const char *flags[] = {"train", "--model", SPEC, "--pp", "2", "--micro-batches", "4", "--steps", "200", NULL};
    const brg_test_run *r = brg_test_run_brigade(flags);
    BRG_ASSERT_EQ_INT(r->exit_code, 0);
    const char *p = strstr(r->out, "params fingerprint: ");
    char want[17] = "";
    if (p) snprintf(want, sizeof want, "%.16s", p + 20);
    srand(12345);
    int kills = 0, finished = 0;
    for (int attempt = 0; attempt < 200 && !finished; attempt++) {
        const char *argv[] = {getenv("BRG_BIN"), "train", "--model", SPEC, "--pp", "2", "--micro-batches", "4",
                              "--steps", "200", "--checkpoint-dir", dir, "--resume", dir, "--save-every", "1",
                              "--keep", "2", NULL};
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_addopen(&fa, 2, out, O_WRONLY | O_CREAT | O_APPEND, 0644);
        pid_t pid;
        CU_ASSERT(posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) == 0);
        posix_spawn_file_actions_destroy(&fa);
        double deadline = now_seconds() + 0.02 + 0.2 * (double)rand() / RAND_MAX, start = now_seconds();
        int status = 0, done = 0;
        while (!done && now_seconds() < start + 120) {
            done = waitpid(pid, &status, WNOHANG) == pid;
            if (!done && now_seconds() > deadline && attempt < 150) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                kills++;
                done = 2;
            }
            if (!done) usleep(2000);
        }
        char *text = brg_test_slurp(out);
        /* Whatever moment the last run died at, this one resumed (or started) cleanly. */
        CU_ASSERT(!strstr(text, "--resume:"));
        if (strstr(text, "--resume:")) fprintf(stderr, "%s\n", text);
        if (done == 1) {
            BRG_ASSERT_EQ_INT(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
            const char *q = strstr(text, "params fingerprint: ");
            char got[17] = "";
            if (q) snprintf(got, sizeof got, "%.16s", q + 20);
            if (strcmp(got, want) != 0) fprintf(stderr, "after %d kills: fingerprint %s, uninterrupted %s\n", kills, got, want);
            CU_ASSERT(strcmp(got, want) == 0);
            finished = 1;
        }
        free(text);
    }
    CU_ASSERT(finished);
    CU_ASSERT(kills >= 5);
    printf("\n  killed %d times, resumed each time\n", kills);
    char cmd[2300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, out);
    CU_ASSERT(system(cmd) == 0);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"resume_is_bitwise", test_resume_is_bitwise},
        {"resume_in_another_layout", test_resume_in_another_layout},
        {"bad_checkpoints", test_bad_checkpoints},
        {"lr_schedule", test_lr_schedule},
        {"safetensors_reader", test_safetensors_reader},
        {"hugging_face_round_trip", test_hugging_face_round_trip},
        {"evaluate", test_evaluate},
        {"full_disk_keeps_previous_step", test_full_disk_keeps_previous_step},
        {"kill_and_resume", test_kill_and_resume},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "checkpoint", cases);
}
