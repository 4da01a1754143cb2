/* Checkpoints (include/brigade/checkpoint.h): each process writes the parameters it owns, and their AdamW
 * state, as safetensors files of its own; rank 0 writes the index, config.json and trainer.json, renames
 * the finished directory into place and points `latest` at it. A resume reads, for every parameter this
 * process holds (tied copies included), the file the index names: any layout loads any checkpoint. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "brigade/checkpoint.h"
#include "graph/graph_internal.h"
#include "io/safetensors.h"
#include "json.h"
#include "runtime/hosting.h"
#include "runtime/trainer_internal.h"

#define PATH_MAX_LEN 4096
#define ROOT_MAX_LEN 3000 /* a checkpoint root's length, checked at entry: every path below fits PATH_MAX_LEN */
/* A path into buf (PATH_MAX_LEN bytes): the entry check on the root's length keeps it whole. */
BRG__PRINTF(2, 3)
static void pathf(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, PATH_MAX_LEN, fmt, ap);
    va_end(ap);
}
#define PATHF pathf

/* ---- names and layouts -------------------------------------------------------------------------- */

static int is_gpt(const brg_checkpoint_options *o) { return o && o->model && o->model->family == BRG_MODEL_GPT; }

static int ends_with(const char *s, const char *tail) {
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

/* Hugging Face's GPT-2 keeps its linear layers as Conv1D: weights (in, out), brigade's (out, in). */
static int is_conv1d(const brg_checkpoint_options *o, const char *name) {
    return is_gpt(o) && ends_with(name, ".weight") &&
           (strstr(name, ".attn.c_attn.") || strstr(name, ".attn.c_proj.") || strstr(name, ".mlp.c_fc.") ||
            strstr(name, ".mlp.c_proj."));
}

static void file_name_of(const char *brigade_name, const brg_checkpoint_options *o, char *buf, size_t size) {
    snprintf(buf, size, "%s%s", is_gpt(o) ? "transformer." : "", brigade_name);
}

/* (rows, cols) -> (cols, rows) */
static void transpose(const float *src, float *dst, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
}

/* The shape of parameter x as stored (Conv1D weights transposed). */
static int stored_shape(const brg_tensor *x, const brg_checkpoint_options *o, int64_t *shape) {
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    if (x->ndim == 2 && is_conv1d(o, x->name)) {
        shape[0] = x->shape[1];
        shape[1] = x->shape[0];
    }
    return x->ndim;
}

/* ---- files ---------------------------------------------------------------------------------------- */

static brg_status io_error(char *msg, const char *what, const char *path) {
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_IO, "%s '%s': %s", what, path, strerror(errno));
}

static brg_status fsync_path(const char *path, char *msg) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return io_error(msg, "opening", path);
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? BRG_OK : io_error(msg, "syncing", path);
}

/* Writes text to path atomically (brg__write_text_file: a temporary name, fsync, rename). */
static brg_status write_text(const char *path, const char *text, char *msg) {
    brg_error e = {0};
    brg_status s = brg__write_text_file(path, text, &e);
    if (s != BRG_OK) brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, s, "%s", e.message);
    return s;
}

/* root built since `mark` (brg__json_build_begin): a tree that lost a member is not written. */
static brg_status write_json(const char *path, json_t *root, uint64_t mark, char *msg) {
    char *text = brg__json_dump(root, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17), mark);
    if (!text) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    brg_status s = write_text(path, text, msg);
    free(text);
    return s;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int mkdir_p(const char *path) {
    char buf[PATH_MAX_LEN];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static void shard_name(char *buf, size_t size, const char *kind, int rank, int ranks) {
    snprintf(buf, size, "%s-%05d-of-%05d.safetensors", kind, rank + 1, ranks);
}

/* ---- save ----------------------------------------------------------------------------------------- */

/* This process's two files: its owned parameters (stored names and layouts) and their AdamW state. */
static brg_status write_shards(brg_trainer *t, const brg_graph *g, const brg_checkpoint_options *o, const char *dir,
                               char *msg) {
    int rank = brg__trainer_process_rank(t), ranks = brg__trainer_process_count(t);
    brg__st_writer *model = NULL, *optim = NULL;
    float **buffers = brg__calloc((size_t)(3 * g->n_params + 1), sizeof *buffers);
    brg_status s = buffers ? brg__st_writer_create(&model, msg) : BRG_ERR_OUT_OF_MEMORY;
    if (s == BRG_OK) s = brg__st_writer_create(&optim, msg);
    if (s == BRG_OK) s = brg__st_writer_metadata(model, "format", "pt", msg);
    for (int64_t p = 0; p < g->n_params && s == BRG_OK; p++) {
        if (!brg__trainer_owns_param(t, p)) continue;
        const brg_tensor *x = g->params[p];
        int64_t n = brg__tensor_numel(x, 1), shape[BRG_MAX_DIMS];
        float *value = brg__malloc((size_t)n * sizeof(float)), *m = brg__malloc((size_t)n * sizeof(float)),
              *v = brg__malloc((size_t)n * sizeof(float));
        buffers[3 * p] = value;
        buffers[3 * p + 1] = m;
        buffers[3 * p + 2] = v;
        if (!value || !m || !v) {
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory saving '%s'", x->name);
            break;
        }
        s = brg__trainer_read_param_state(t, p, value, m, v);
        int ndim = stored_shape(x, o, shape);
        if (s == BRG_OK && is_conv1d(o, x->name)) {
            float *stored = brg__malloc((size_t)n * sizeof(float));
            if (!stored) {
                s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
                break;
            }
            transpose(value, stored, x->shape[0], x->shape[1]);
            free(value);
            buffers[3 * p] = value = stored;
        }
        char name[BRG_MAX_NAME + 32];
        file_name_of(x->name, o, name, sizeof name);
        if (s == BRG_OK) s = brg__st_writer_add(model, name, BRG__ST_F32, ndim, shape, value, msg);
        snprintf(name, sizeof name, "%s.exp_avg", x->name);
        if (s == BRG_OK) s = brg__st_writer_add(optim, name, BRG__ST_F32, x->ndim, x->shape, m, msg);
        snprintf(name, sizeof name, "%s.exp_avg_sq", x->name);
        if (s == BRG_OK) s = brg__st_writer_add(optim, name, BRG__ST_F32, x->ndim, x->shape, v, msg);
    }
    char path[PATH_MAX_LEN], file[64];
    shard_name(file, sizeof file, "model", rank, ranks);
    PATHF(path, "%s/%s", dir, file);
    if (s == BRG_OK) s = brg__st_writer_write(model, path, msg);
    shard_name(file, sizeof file, "optimizer", rank, ranks);
    PATHF(path, "%s/%s", dir, file);
    if (s == BRG_OK) s = brg__st_writer_write(optim, path, msg);
    brg__st_writer_destroy(model);
    brg__st_writer_destroy(optim);
    for (int64_t i = 0; buffers && i < 3 * g->n_params; i++) free(buffers[i]);
    free(buffers);
    if (s == BRG_ERR_OUT_OF_MEMORY && !msg[0]) brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, s, "out of memory");
    return s;
}

static json_t *gpt_config(const brg_model_config *m) {
    json_t *c = json_object();
    brg__json_set(c, "architectures", json_pack("[s]", "GPT2LMHeadModel"));
    brg__json_set(c, "model_type", json_string("gpt2"));
    brg__json_set(c, "n_embd", json_integer(m->hidden));
    brg__json_set(c, "n_layer", json_integer(m->layers));
    brg__json_set(c, "n_head", json_integer(m->heads));
    brg__json_set(c, "vocab_size", json_integer(m->vocab));
    brg__json_set(c, "n_positions", json_integer(m->seq));
    brg__json_set(c, "n_ctx", json_integer(m->seq));
    brg__json_set(c, "n_inner", json_null());
    brg__json_set(c, "layer_norm_epsilon", json_real(1e-5));
    brg__json_set(c, "activation_function", json_string("gelu_new")); /* the tanh approximation */
    brg__json_set(c, "initializer_range", json_real(0.02));
    brg__json_set(c, "resid_pdrop", json_real(0.0));
    brg__json_set(c, "embd_pdrop", json_real(0.0));
    brg__json_set(c, "attn_pdrop", json_real(0.0));
    brg__json_set(c, "tie_word_embeddings", json_true());
    /* GPT-2's end-of-text token is the last of its 50257; a model of another vocabulary has none. */
    json_t *eos = m->vocab == 50257 ? json_integer(50256) : json_null();
    brg__json_set(c, "bos_token_id", json_incref(eos));
    brg__json_set(c, "eos_token_id", eos);
    brg__json_set(c, "torch_dtype", json_string("float32"));
    return c;
}

/* Rank 0: the index (every parameter's file, from the layout), config.json and trainer.json. */
static brg_status write_descriptions(brg_trainer *t, const brg_graph *g, const brg_checkpoint_options *o,
                                     const char *dir, uint64_t fp, char *msg) {
    int ranks = brg__trainer_process_count(t);
    uint64_t mark = brg__json_build_begin();
    json_t *map = json_object(), *index = json_object();
    int64_t total = 0;
    for (int64_t p = 0; p < g->n_params; p++) {
        int owner = brg__trainer_param_owner_process(t, p);
        if (owner < 0) continue;
        char name[BRG_MAX_NAME + 32], file[64];
        file_name_of(g->params[p]->name, o, name, sizeof name);
        shard_name(file, sizeof file, "model", owner, ranks);
        brg__json_set(map, name, json_string(file));
        total += brg__tensor_numel(g->params[p], 1) * (int64_t)sizeof(float);
    }
    brg__json_set(index, "metadata", json_pack("{sI}", "total_size", (json_int_t)total));
    brg__json_set(index, "weight_map", map);
    char path[PATH_MAX_LEN];
    PATHF(path, "%s/model.safetensors.index.json", dir);
    brg_status s = write_json(path, index, mark, msg);
    json_decref(index);
    if (s == BRG_OK && is_gpt(o)) {
        json_t *c = gpt_config(o->model);
        PATHF(path, "%s/config.json", dir);
        s = write_json(path, c, mark, msg);
        json_decref(c);
    }
    char hex[17], hash[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, fp);
    snprintf(hash, sizeof hash, "%016" PRIx64, brg__graph_hash(g));
    json_t *tr = json_pack("{ss si sI sI ss ss ss si}", "format", "brigade-checkpoint", "version", 1, "step",
                           (json_int_t)brg__trainer_steps_done(t), "next_sample",
                           (json_int_t)brg__trainer_next_sample(t), "model", o && o->model ? o->model->name : "",
                           "model_hash", hash, "params_fingerprint", hex, "ranks", ranks);
    PATHF(path, "%s/trainer.json", dir);
    if (s == BRG_OK) s = write_json(path, tr, mark, msg);
    json_decref(tr);
    return s;
}

static int is_step_name(const char *name) {
    if (strncmp(name, "step-", 5) != 0 || !name[5]) return 0;
    for (const char *p = name + 5; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Removes complete steps beyond the `keep` newest (names sort by step: fixed width). */
static void prune(const char *root, int keep) {
    DIR *d = opendir(root);
    if (!d || keep <= 0) {
        if (d) closedir(d);
        return;
    }
    char **names = NULL;
    int n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_step_name(e->d_name)) continue;
        if (n == cap) {
            char **grown = brg__realloc(names, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *names);
            if (!grown) break;
            names = grown;
        }
        if (!(names[n] = brg__strdup(e->d_name))) break;
        n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, compare_strings);
    for (int i = 0; i < n; i++) {
        if (i < n - keep) {
            char path[PATH_MAX_LEN];
            PATHF(path, "%s/%s", root, names[i]);
            remove_tree(path);
        }
        free(names[i]);
    }
    free(names);
}

brg_status brg_checkpoint_save(brg_trainer *t, const char *root, const brg_checkpoint_options *o, brg_error *err) {
    if (!t || !root || !*root || strlen(root) > ROOT_MAX_LEN)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_checkpoint_save: %s",
                              !t ? "the trainer is NULL" : !root || !*root ? "no directory" : "the directory's path is too long");
    const brg_graph *g = brg__trainer_graph(t);
    int rank = brg__trainer_process_rank(t);
    char msg[BRG_ERROR_MESSAGE_MAX] = "", step_name[32], dir[PATH_MAX_LEN], final[PATH_MAX_LEN];
    snprintf(step_name, sizeof step_name, "step-%06lld", (long long)brg__trainer_steps_done(t));
    PATHF(dir, "%s/.%s.partial", root, step_name);
    PATHF(final, "%s/%s", root, step_name);
    brg_status s = BRG_OK;
    if (rank == 0) {
        if (mkdir_p(root) != 0) s = io_error(msg, "creating the checkpoint directory", root);
        if (s == BRG_OK && remove_tree(dir) != 0) s = io_error(msg, "removing the unfinished", dir);
        if (s == BRG_OK && mkdir(dir, 0755) != 0) s = io_error(msg, "creating", dir);
    }
    s = brg__trainer_agree(t, s, msg);
    /* ZeRO-1: the moments, split across the replicas, whole again for the owners that save them. */
    if (s == BRG_OK) s = brg__trainer_agree(t, brg__trainer_gather_moments(t, msg), msg);
    if (s == BRG_OK) s = brg__trainer_agree(t, write_shards(t, g, o, dir, msg), msg);
    brg__trainer_release_moments(t);
    uint64_t fp = 0;
    if (s == BRG_OK && (s = brg_trainer_fingerprint(t, &fp)) != BRG_OK) /* collective */
        brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, s, "computing the fingerprint failed");
    if (s == BRG_OK && rank == 0) {
        s = write_descriptions(t, g, o, dir, fp, msg);
        if (s == BRG_OK) s = fsync_path(dir, msg);
        /* The same step saved again (a resumed run): the new copy replaces the old one. */
        if (s == BRG_OK && remove_tree(final) != 0) s = io_error(msg, "replacing", final);
        if (s == BRG_OK && rename(dir, final) != 0) s = io_error(msg, "renaming into place", final);
        if (s == BRG_OK) s = fsync_path(root, msg);
        char latest[PATH_MAX_LEN], text[40];
        PATHF(latest, "%s/latest", root);
        snprintf(text, sizeof text, "%s\n", step_name);
        if (s == BRG_OK) s = write_text(latest, text, msg);
        if (s == BRG_OK) s = fsync_path(root, msg);
        if (s == BRG_OK) prune(root, o ? o->keep : 0);
        if (s != BRG_OK) remove_tree(dir);
    }
    s = brg__trainer_agree(t, s, msg);
    return s == BRG_OK ? BRG_OK : brg__error_set(err, s, "saving a checkpoint in %s: %s", root, msg);
}

/* ---- resume --------------------------------------------------------------------------------------- */

/* The step directory `latest` points at, or BRG_ERR_NOT_FOUND. */
static brg_status find_latest(const char *root, char *dir, size_t size, char *msg) {
    char path[PATH_MAX_LEN];
    PATHF(path, "%s/latest", root);
    char *text = NULL;
    size_t n = 0;
    if (access(path, F_OK) != 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_NOT_FOUND, "%s holds no complete step (no 'latest')",
                                root);
    brg_error e = {0};
    brg_status s = brg__read_file(path, "", 256, &text, &n, &e);
    if (s != BRG_OK) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, s, "%s", e.message);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) text[--n] = '\0';
    if (!is_step_name(text)) {
        s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_PARSE, "%s: '%s' is not a step directory name", path, text);
    } else {
        PATHF(dir, "%s/%s", root, text);
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_IO, "%s names %s, which is missing", path, dir);
    }
    free(text);
    return s;
}

static json_t *load_json(const char *path, char *msg, brg_status *s) {
    brg_error err = {0};
    char *text = NULL;
    size_t size = 0;
    *s = brg__read_file(path, "", INT64_C(1) << 26, &text, &size, &err);
    if (*s != BRG_OK) {
        brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, *s, "%s", err.message);
        return NULL;
    }
    json_error_t je;
    json_t *j = brg__json_parse(text, size, JSON_REJECT_DUPLICATES, &je, s);
    free(text);
    if (!j && *s == BRG_ERR_OUT_OF_MEMORY)
        brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, *s, "%s: out of memory", path);
    else if (!j)
        *s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_PARSE, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    else if (!json_is_object(j)) {
        *s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_PARSE, "%s: not a JSON object", path);
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* Open files of the step, by name. */
typedef struct open_files {
    char **names;
    brg__st_file **files;
    int n, cap;
} open_files;

static brg_status open_shard(open_files *of, const char *dir, const char *name, brg__st_file **out, char *msg) {
    for (int i = 0; i < of->n; i++)
        if (strcmp(of->names[i], name) == 0) return (*out = of->files[i]), BRG_OK;
    if (!*name || strchr(name, '/') || strcmp(name, "..") == 0 || strcmp(name, ".") == 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_PARSE,
                                "%s/model.safetensors.index.json names the file '%s', which is not a file of the step",
                                dir, name);
    if (of->n == of->cap) {
        int cap = of->cap ? 2 * of->cap : 8;
        char **names = brg__realloc(of->names, (size_t)cap * sizeof *names);
        if (names) of->names = names;
        brg__st_file **files = brg__realloc(of->files, (size_t)cap * sizeof *files);
        if (files) of->files = files;
        if (!names || !files) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
        of->cap = cap;
    }
    char path[PATH_MAX_LEN];
    PATHF(path, "%s/%s", dir, name);
    if (access(path, F_OK) != 0)
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_IO,
                                "%s/model.safetensors.index.json names '%s', which is missing", dir, name);
    brg__st_file *f = NULL;
    BRG__CHECK(brg__st_open(path, &f, msg));
    of->names[of->n] = brg__strdup(name);
    of->files[of->n] = f;
    if (!of->names[of->n]) {
        brg__st_close(f);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    }
    of->n++;
    *out = f;
    return BRG_OK;
}

static void close_all(open_files *of) {
    for (int i = 0; i < of->n; i++) {
        brg__st_close(of->files[i]);
        free(of->names[i]);
    }
    free(of->names);
    free(of->files);
}

/* Reads tensor `name` of file f into dst, checking its shape. */
static brg_status read_tensor(brg__st_file *f, const char *file, const char *name, int ndim, const int64_t *shape,
                              float *dst, int64_t count, char *msg) {
    const brg__st_tensor *x = brg__st_find(f, name);
    if (!x) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_PARSE, "%s has no tensor '%s'", file, name);
    int same = x->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = x->shape[d] == shape[d];
    if (!same) {
        char want[96] = "", got[96] = "";
        for (int d = 0; d < ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "", (long long)shape[d]);
        for (int d = 0; d < x->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)x->shape[d]);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_SHAPE, "%s: tensor '%s' is [%s], the model's is [%s]",
                                file, name, got, want);
    }
    return brg__st_read_f32(f, x, dst, count, msg);
}

static brg_status load_params(brg_trainer *t, const brg_graph *g, const brg_checkpoint_options *o, const char *dir,
                              json_t *map, char *msg) {
    open_files of = {0};
    brg_status s = BRG_OK;
    for (int64_t p = 0; p < g->n_params && s == BRG_OK; p++) {
        if (!brg__trainer_holds_param(t, p)) continue;
        const brg_tensor *x = g->params[p];
        char name[BRG_MAX_NAME + 32];
        file_name_of(x->name, o, name, sizeof name);
        const char *file = json_string_value(json_object_get(map, name));
        if (!file) {
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_PARSE,
                                 "%s/model.safetensors.index.json has no file for tensor '%s'", dir, name);
            break;
        }
        int64_t n = brg__tensor_numel(x, 1), shape[BRG_MAX_DIMS];
        int ndim = stored_shape(x, o, shape);
        float *value = brg__malloc((size_t)n * sizeof(float)), *m = brg__malloc((size_t)n * sizeof(float)),
              *v = brg__malloc((size_t)n * sizeof(float)), *tmp = is_conv1d(o, x->name) ? brg__malloc((size_t)n * sizeof(float)) : NULL;
        brg__st_file *model = NULL, *optim = NULL;
        if (!value || !m || !v || (is_conv1d(o, x->name) && !tmp))
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory loading '%s'", x->name);
        if (s == BRG_OK) s = open_shard(&of, dir, file, &model, msg);
        if (s == BRG_OK) s = read_tensor(model, file, name, ndim, shape, tmp ? tmp : value, n, msg);
        if (s == BRG_OK && tmp) transpose(tmp, value, x->shape[1], x->shape[0]);
        /* The optimizer shard beside the model shard: "model-X-of-Y" -> "optimizer-X-of-Y". */
        char optim_file[96];
        snprintf(optim_file, sizeof optim_file, "optimizer%s", strncmp(file, "model", 5) == 0 ? file + 5 : file);
        if (s == BRG_OK) s = open_shard(&of, dir, optim_file, &optim, msg);
        char moment[BRG_MAX_NAME + 32];
        snprintf(moment, sizeof moment, "%s.exp_avg", x->name);
        if (s == BRG_OK) s = read_tensor(optim, optim_file, moment, x->ndim, x->shape, m, n, msg);
        snprintf(moment, sizeof moment, "%s.exp_avg_sq", x->name);
        if (s == BRG_OK) s = read_tensor(optim, optim_file, moment, x->ndim, x->shape, v, n, msg);
        if (s == BRG_OK) s = brg__trainer_write_param_state(t, p, value, m, v);
        free(value);
        free(m);
        free(v);
        free(tmp);
    }
    close_all(&of);
    return s;
}

brg_status brg_checkpoint_resume(brg_trainer *t, const char *root, const brg_checkpoint_options *o, int64_t *step,
                                 brg_error *err) {
    if (!t || !root || !*root || strlen(root) > ROOT_MAX_LEN)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_checkpoint_resume: %s",
                              !t ? "the trainer is NULL" : !root || !*root ? "no directory" : "the directory's path is too long");
    const brg_graph *g = brg__trainer_graph(t);
    char msg[BRG_ERROR_MESSAGE_MAX] = "", dir[PATH_MAX_LEN], path[PATH_MAX_LEN];
    brg_status s = find_latest(root, dir, sizeof dir, msg);
    json_t *tr = NULL, *index = NULL;
    int64_t at = 0, next = 0;
    if (s == BRG_OK) {
        PATHF(path, "%s/trainer.json", dir);
        tr = load_json(path, msg, &s);
    }
    if (s == BRG_OK) {
        char hash[17];
        snprintf(hash, sizeof hash, "%016" PRIx64, brg__graph_hash(g));
        const char *format = json_string_value(json_object_get(tr, "format"));
        const char *saved_hash = json_string_value(json_object_get(tr, "model_hash"));
        const char *saved_model = json_string_value(json_object_get(tr, "model"));
        json_t *js = json_object_get(tr, "step"), *jn = json_object_get(tr, "next_sample");
        if (!format || strcmp(format, "brigade-checkpoint") != 0)
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_PARSE, "%s: not a brigade checkpoint (\"format\")", path);
        else if (!json_is_integer(js) || !json_is_integer(jn) || json_integer_value(js) < 0 || json_integer_value(jn) < 0)
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_PARSE,
                                 "%s: \"step\" and \"next_sample\" must be whole numbers >= 0", path);
        else if (!saved_hash || strcmp(saved_hash, hash) != 0)
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                 "%s is a checkpoint of another model (%s, hash %s; this model's hash is %s)", path,
                                 saved_model && *saved_model ? saved_model : "unnamed", saved_hash ? saved_hash : "none", hash);
        at = json_integer_value(js);
        next = json_integer_value(jn);
    }
    if (s == BRG_OK) {
        PATHF(path, "%s/model.safetensors.index.json", dir);
        index = load_json(path, msg, &s);
    }
    json_t *map = index ? json_object_get(index, "weight_map") : NULL;
    if (s == BRG_OK && !json_is_object(map))
        s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_PARSE, "%s: no \"weight_map\" object", path);
    if (s == BRG_OK) s = load_params(t, g, o, dir, map, msg);
    if (s == BRG_OK && brg__trainer_set_progress(t, at, next) != BRG_OK)
        s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                             "%s/trainer.json: data position %lld is not a whole number of this run's steps (%lld samples "
                             "each): resume with the global batch that saved it",
                             dir, (long long)next, (long long)brg__trainer_step_samples(t));
    json_decref(tr);
    json_decref(index);
    /* Every rank agrees, so that none trains on while another could not load. No step at all (NOT_FOUND,
     * seen alike by every rank of a shared file system) is no failure: the run starts from scratch. */
    int none = s == BRG_ERR_NOT_FOUND;
    brg_status agreed = brg__trainer_agree(t, none ? BRG_OK : s, msg);
    if (none && agreed == BRG_OK) return brg__error_set(err, BRG_ERR_NOT_FOUND, "%s", msg);
    if (agreed != BRG_OK) return brg__error_set(err, agreed, "resuming from %s: %s", root, msg);
    if (step) *step = at;
    return BRG_OK;
}

/* ---- Hugging Face import ---------------------------------------------------------------------------- */

/* The files of a Hugging Face GPT-2 model at path: a .safetensors file, or a directory with
 * model.safetensors or a sharded index. `dir` receives the directory (config.json's place). */
static brg_status hf_files(const char *path, open_files *of, char *dir, char *msg) {
    struct stat st;
    if (stat(path, &st) != 0) return io_error(msg, "reading", path);
    brg__st_file *f = NULL;
    if (S_ISREG(st.st_mode)) {
        const char *slash = strrchr(path, '/');
        if (slash)
            PATHF(dir, "%.*s", (int)(slash - path), path);
        else
            PATHF(dir, ".");
        return open_shard(of, dir, slash ? slash + 1 : path, &f, msg);
    }
    PATHF(dir, "%s", path);
    char index[PATH_MAX_LEN];
    PATHF(index, "%s/model.safetensors.index.json", path);
    if (access(index, F_OK) != 0) return open_shard(of, dir, "model.safetensors", &f, msg);
    brg_status s = BRG_OK;
    json_t *root = load_json(index, msg, &s);
    json_t *map = root ? json_object_get(root, "weight_map") : NULL;
    if (s == BRG_OK && !json_is_object(map)) s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_PARSE, "%s: no \"weight_map\" object", index);
    const char *key;
    json_t *value;
    if (s == BRG_OK) json_object_foreach(map, key, value) {
        if (!json_is_string(value)) {
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_PARSE, "%s: the file of '%s' is not a string", index, key);
            break;
        }
        if ((s = open_shard(of, dir, json_string_value(value), &f, msg)) != BRG_OK) break;
    }
    json_decref(root);
    return s;
}

/* config.json (when there is one) against the model. */
static brg_status hf_check_config(const char *dir, const brg_model_config *m, char *msg) {
    char path[PATH_MAX_LEN];
    PATHF(path, "%s/config.json", dir);
    if (access(path, F_OK) != 0) return BRG_OK;
    brg_status s = BRG_OK;
    json_t *c = load_json(path, msg, &s);
    if (!c) return s;
    struct {
        const char *key;
        int64_t want;
        int at_least;
    } fields[] = {{"n_embd", m->hidden, 0}, {"n_layer", m->layers, 0}, {"n_head", m->heads, 0},
                  {"vocab_size", m->vocab, 0}, {"n_positions", m->seq, 1}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0] && s == BRG_OK; i++) {
        json_t *v = json_object_get(c, fields[i].key);
        if (!v) continue;
        json_int_t got = json_integer_value(v);
        if (!json_is_integer(v) || (fields[i].at_least ? got < fields[i].want : got != fields[i].want))
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                 "%s: %s is %lld, but the model %s has %s%lld", path, fields[i].key, (long long)got,
                                 m->name, fields[i].at_least ? "seq " : "", (long long)fields[i].want);
    }
    json_decref(c);
    return s;
}

/* The tensor for brigade's parameter `name` in any of the files, with or without the prefix. */
static const brg__st_tensor *hf_find(open_files *of, const char *name, brg__st_file **file, const char **file_name) {
    char prefixed[BRG_MAX_NAME + 32];
    snprintf(prefixed, sizeof prefixed, "transformer.%s", name);
    for (int i = 0; i < of->n; i++) {
        const brg__st_tensor *x = brg__st_find(of->files[i], prefixed);
        if (!x) x = brg__st_find(of->files[i], name);
        if (x) {
            *file = of->files[i];
            *file_name = of->names[i];
            return x;
        }
    }
    return NULL;
}

brg_status brg_checkpoint_import_hf(brg_trainer *t, const char *path, const brg_model_config *model, brg_error *err) {
    if (!t || !path || !model || strlen(path) > ROOT_MAX_LEN)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_checkpoint_import_hf: NULL argument or too long a path");
    char msg[BRG_ERROR_MESSAGE_MAX] = "", dir[PATH_MAX_LEN] = "";
    brg_status s = model->family == BRG_MODEL_GPT
                       ? BRG_OK
                       : brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                                          "Hugging Face GPT-2 weights load into gpt models, not %s", model->name);
    brg_checkpoint_options o = {model, 0};
    open_files of = {0};
    if (s == BRG_OK) s = hf_files(path, &of, dir, msg);
    if (s == BRG_OK) s = hf_check_config(dir, model, msg);
    const brg_graph *g = brg__trainer_graph(t);
    for (int64_t p = 0; p < g->n_params && s == BRG_OK; p++) {
        if (!brg__trainer_holds_param(t, p)) continue;
        const brg_tensor *x = g->params[p];
        brg__st_file *f = NULL;
        const char *file = NULL;
        const brg__st_tensor *st = hf_find(&of, x->name, &f, &file);
        if (!st) {
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_PARSE, "%s: no tensor '%s' (or 'transformer.%s')", path,
                                 x->name, x->name);
            break;
        }
        int64_t n = brg__tensor_numel(x, 1), shape[BRG_MAX_DIMS];
        int ndim = stored_shape(x, &o, shape);
        int is_wpe = strcmp(x->name, "wpe.weight") == 0;
        /* wpe: the file may hold more positions (n_positions) than the model's seq: the first seq rows. */
        if (is_wpe && st->ndim == 2 && st->shape[1] == shape[1] && st->shape[0] > shape[0]) shape[0] = st->shape[0];
        int64_t stored = 1;
        for (int d = 0; d < ndim; d++) stored *= shape[d];
        float *buf = brg__malloc((size_t)stored * sizeof(float)), *value = brg__malloc((size_t)n * sizeof(float)),
              *zeros = brg__calloc((size_t)n, sizeof(float));
        if (!buf || !value || !zeros)
            s = brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory loading '%s'", x->name);
        char where[PATH_MAX_LEN];
        PATHF(where, "%s/%s", dir, file);
        if (s == BRG_OK) s = read_tensor(f, where, st->name, ndim, shape, buf, stored, msg);
        if (s == BRG_OK) {
            if (is_conv1d(&o, x->name))
                transpose(buf, value, x->shape[1], x->shape[0]);
            else
                memcpy(value, buf, (size_t)n * sizeof(float)); /* wpe: its first seq rows */
            s = brg__trainer_write_param_state(t, p, value, zeros, zeros);
        }
        free(buf);
        free(value);
        free(zeros);
    }
    close_all(&of);
    s = brg__trainer_agree(t, s, msg);
    return s == BRG_OK ? BRG_OK : brg__error_set(err, s, "importing %s: %s", path, msg);
}
