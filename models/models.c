/* Model configurations: specifications, presets, analytic counts, and brg_model_build. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "models/models_internal.h"

/* ---- families and keys -------------------------------------------------------------------------- */

static const char *const family_names[BRG_MODEL_FAMILY_COUNT] = {"gpt", "mlp", "skipnet"};

const char *brg_model_family_name(brg_model_family family) {
    return (unsigned)family < BRG_MODEL_FAMILY_COUNT ? family_names[family] : "unknown";
}

typedef struct model_key {
    const char *name;
    size_t offset; /* of the int64_t field in brg_model_config */
    int64_t max;
    unsigned families; /* bit per brg_model_family */
} model_key;

#define FAMILY_BIT(f) (1u << (f))
#define ALL_FAMILIES (FAMILY_BIT(BRG_MODEL_GPT) | FAMILY_BIT(BRG_MODEL_MLP) | FAMILY_BIT(BRG_MODEL_SKIPNET))

static const model_key model_keys[] = {
    {"layers", offsetof(brg_model_config, layers), BRG_MODEL_MAX_LAYERS, ALL_FAMILIES},
    {"hidden", offsetof(brg_model_config, hidden), BRG_MODEL_MAX_HIDDEN, ALL_FAMILIES},
    {"heads", offsetof(brg_model_config, heads), BRG_MODEL_MAX_HEADS, FAMILY_BIT(BRG_MODEL_GPT)},
    {"vocab", offsetof(brg_model_config, vocab), BRG_MODEL_MAX_VOCAB, ALL_FAMILIES},
    {"seq", offsetof(brg_model_config, seq), BRG_MODEL_MAX_SEQ, ALL_FAMILIES},
};
enum { KEY_COUNT = sizeof model_keys / sizeof model_keys[0] };

static int64_t *key_field(brg_model_config *cfg, const model_key *k) {
    return (int64_t *)(void *)((char *)cfg + k->offset);
}

static int64_t key_value(const brg_model_config *cfg, const model_key *k) {
    return *(const int64_t *)(const void *)((const char *)cfg + k->offset);
}

static int key_applies(const model_key *k, brg_model_family family) {
    return (k->families & FAMILY_BIT(family)) != 0;
}

/* Defaults per family: small enough to train on a CPU in seconds. */
static brg_model_config family_defaults(brg_model_family family) {
    brg_model_config cfg = BRG_MODEL_CONFIG_INIT;
    if (family == BRG_MODEL_MLP)
        cfg = (brg_model_config){.family = BRG_MODEL_MLP, .layers = 4, .hidden = 128, .vocab = 64, .seq = 32};
    else if (family == BRG_MODEL_SKIPNET)
        cfg = (brg_model_config){.family = BRG_MODEL_SKIPNET, .layers = 3, .hidden = 64, .vocab = 64, .seq = 32};
    brg_model_format(&cfg, cfg.name, sizeof cfg.name);
    return cfg;
}

/* ---- presets ------------------------------------------------------------------------------------ */

typedef struct model_preset {
    const char *name;
    const char *description;
    int64_t layers, hidden, heads, vocab, seq;
} model_preset;

#define GPT_VOCAB 50257 /* GPT-2's BPE vocabulary, also GPT-3's */

static const model_preset presets[] = {
    /* GPT-2 (Radford et al. 2019), sequence 1024. */
    {"gpt2-small", "GPT-2 small, 124M parameters (Radford et al. 2019)", 12, 768, 12, GPT_VOCAB, 1024},
    {"gpt2-medium", "GPT-2 medium, 355M parameters", 24, 1024, 16, GPT_VOCAB, 1024},
    {"gpt2-large", "GPT-2 large, 774M parameters", 36, 1280, 20, GPT_VOCAB, 1024},
    {"gpt2-xl", "GPT-2 XL, 1.5B parameters", 48, 1600, 25, GPT_VOCAB, 1024},
    /* GPT-3 (Brown et al. 2020, Table 2.1), sequence 2048, GPT-2's vocabulary. */
    {"gpt3-small", "GPT-3 Small, 125M parameters (Brown et al. 2020, Table 2.1)", 12, 768, 12, GPT_VOCAB, 2048},
    {"gpt3-medium", "GPT-3 Medium, 350M parameters", 24, 1024, 16, GPT_VOCAB, 2048},
    {"gpt3-large", "GPT-3 Large, 760M parameters", 24, 1536, 16, GPT_VOCAB, 2048},
    /* The paper gives 24 heads of 128 for d_model 2048, which 24 heads do not divide: the head size
     * 128 is kept, so 16 heads. */
    {"gpt3-xl", "GPT-3 XL, 1.3B parameters (16 heads of 128; the paper's 24 do not divide 2048)", 24, 2048, 16,
     GPT_VOCAB, 2048},
    {"gpt3-2.7b", "GPT-3 2.7B", 32, 2560, 32, GPT_VOCAB, 2048},
    {"gpt3-6.7b", "GPT-3 6.7B", 32, 4096, 32, GPT_VOCAB, 2048},
    /* The paper gives d_model 5140 with 40 heads of 128; 40 x 128 = 5120, and 5140 is not a multiple
     * of 128 (nor of 40 heads of equal size): the head count and head size are kept, so 5120. */
    {"gpt3-13b", "GPT-3 13B (hidden 5120 = 40 heads of 128; the paper's 5140 is not divisible by them)", 40,
     5120, 40, GPT_VOCAB, 2048},
    {"gpt3-175b", "GPT-3 175B", 96, 12288, 96, GPT_VOCAB, 2048},
};
enum { PRESET_COUNT = sizeof presets / sizeof presets[0] };

static brg_model_config preset_config(const model_preset *p) {
    brg_model_config cfg = BRG_MODEL_CONFIG_INIT;
    cfg.family = BRG_MODEL_GPT;
    cfg.layers = p->layers, cfg.hidden = p->hidden, cfg.heads = p->heads, cfg.vocab = p->vocab, cfg.seq = p->seq;
    snprintf(cfg.name, sizeof cfg.name, "%s", p->name);
    return cfg;
}

int brg_model_preset_count(void) { return PRESET_COUNT; }

brg_status brg_model_preset_get(int index, brg_model_config *cfg, const char **description) {
    if (index < 0 || index >= PRESET_COUNT) return BRG_ERR_NOT_FOUND;
    if (cfg) *cfg = preset_config(&presets[index]);
    if (description) *description = presets[index].description;
    return BRG_OK;
}

/* "gpt2-small, gpt2-medium, ..." into buf. */
static const char *preset_list(char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < PRESET_COUNT && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", presets[i].name);
    return buf;
}

/* "layers, hidden, heads, vocab, seq" for the family. */
static const char *key_list(brg_model_family family, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < KEY_COUNT && used < size; i++)
        if (key_applies(&model_keys[i], family))
            used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? ", " : "", model_keys[i].name);
    return buf;
}

/* ---- validation and formatting ------------------------------------------------------------------ */

brg_status brg_model_validate(const brg_model_config *cfg, brg_error *err) {
    if (!cfg) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "model config is NULL");
    if ((unsigned)cfg->family >= BRG_MODEL_FAMILY_COUNT)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "model config: unknown family %d (gpt, mlp, skipnet)",
                              (int)cfg->family);
    const char *family = brg_model_family_name(cfg->family);
    for (int i = 0; i < KEY_COUNT; i++) {
        const model_key *k = &model_keys[i];
        int64_t v = key_value(cfg, k);
        if (key_applies(k, cfg->family) && (v < 1 || v > k->max))
            return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "%s model: %s %lld is out of range (1 to %lld)",
                                  family, k->name, (long long)v, (long long)k->max);
    }
    if (cfg->family == BRG_MODEL_GPT && cfg->hidden % cfg->heads != 0)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                              "gpt model: hidden %lld is not divisible by heads %lld (each head gets hidden / heads "
                              "channels)",
                              (long long)cfg->hidden, (long long)cfg->heads);
    return BRG_OK;
}

int brg_model_format(const brg_model_config *cfg, char *buf, int64_t size) {
    char local[1];
    if (!buf || size <= 0) buf = local, size = 0;
    if (!cfg) return snprintf(buf, (size_t)size, "%s", "");
    int used = snprintf(buf, (size_t)size, "%s:", brg_model_family_name(cfg->family));
    int first = 1;
    for (int i = 0; i < KEY_COUNT; i++) {
        const model_key *k = &model_keys[i];
        if (!key_applies(k, cfg->family)) continue;
        size_t at = (int64_t)used < size ? (size_t)used : (size_t)size;
        used += snprintf(size ? buf + at : buf, size ? (size_t)size - at : 0, "%s%s=%lld", first ? "" : ",",
                         k->name, (long long)key_value(cfg, k));
        first = 0;
    }
    return used;
}

/* ---- parsing ------------------------------------------------------------------------------------ */

/* Which family or preset `head` (len bytes) names. Returns 1 and fills *cfg, or 0. */
static int lookup_model(const char *head, size_t len, brg_model_config *cfg) {
    for (int f = 0; f < BRG_MODEL_FAMILY_COUNT; f++)
        if (strlen(family_names[f]) == len && strncmp(head, family_names[f], len) == 0) {
            *cfg = family_defaults((brg_model_family)f);
            return 1;
        }
    for (int i = 0; i < PRESET_COUNT; i++)
        if (strlen(presets[i].name) == len && strncmp(head, presets[i].name, len) == 0) {
            *cfg = preset_config(&presets[i]);
            return 1;
        }
    return 0;
}

/* Parses a value of key k: decimal digits only, 1 to k->max. */
static brg_status parse_value(const char *spec, const model_key *k, const char *text, size_t len, int64_t *out,
                              brg_error *err) {
    int64_t v = 0;
    int too_large = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return brg__error_set(err, BRG_ERR_PARSE,
                                  "model '%s': value '%.*s' of key '%s' is not a positive whole number", spec,
                                  (int)len, text, k->name);
        if (v > (k->max - (text[i] - '0')) / 10)
            too_large = 1;
        else
            v = v * 10 + (text[i] - '0');
    }
    if (too_large)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "model '%s': %s=%.*s is too large (at most %lld)", spec,
                              k->name, (int)len, text, (long long)k->max);
    if (v < 1)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "model '%s': %s=%.*s must be positive (1 to %lld)",
                              spec, k->name, (int)len, text, (long long)k->max);
    *out = v;
    return BRG_OK;
}

/* Parses one "key=value" item (len bytes) into cfg; `given` marks the keys seen. */
static brg_status parse_item(const char *spec, const char *item, size_t len, brg_model_config *cfg,
                             int given[KEY_COUNT], brg_error *err) {
    if (len == 0)
        return brg__error_set(err, BRG_ERR_PARSE, "model '%s': empty item in the key=value list", spec);
    const char *eq = memchr(item, '=', len);
    if (!eq)
        return brg__error_set(err, BRG_ERR_PARSE, "model '%s': '%.*s' has no '=' (expected key=value)", spec,
                              (int)len, item);
    size_t key_len = (size_t)(eq - item), value_len = len - key_len - 1;
    const char *family = brg_model_family_name(cfg->family);
    int found = -1;
    for (int i = 0; i < KEY_COUNT; i++)
        if (key_applies(&model_keys[i], cfg->family) && strlen(model_keys[i].name) == key_len &&
            strncmp(item, model_keys[i].name, key_len) == 0)
            found = i;
    if (found < 0) {
        char keys[128];
        return brg__error_set(err, BRG_ERR_NAME, "model '%s': unknown key '%.*s' for the %s family (keys: %s)", spec,
                              (int)key_len, item, family, key_list(cfg->family, keys, sizeof keys));
    }
    const model_key *k = &model_keys[found];
    if (given[found])
        return brg__error_set(err, BRG_ERR_NAME, "model '%s': key '%s' is given twice", spec, k->name);
    given[found] = 1;
    if (value_len == 0)
        return brg__error_set(err, BRG_ERR_PARSE, "model '%s': key '%s' has no value (expected %s=N)", spec, k->name,
                              k->name);
    return parse_value(spec, k, eq + 1, value_len, key_field(cfg, k), err);
}

brg_status brg_model_parse(const char *spec, brg_model_config *cfg, brg_error *err) {
    if (!spec || !cfg)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_model_parse: %s is NULL", spec ? "cfg" : "spec");
    char presets_text[256];
    if (!spec[0])
        return brg__error_set(err, BRG_ERR_PARSE,
                              "empty model specification (give a preset: %s; or family[:key=value,...] with "
                              "family gpt, mlp or skipnet)",
                              preset_list(presets_text, sizeof presets_text));
    const char *colon = strchr(spec, ':');
    size_t head_len = colon ? (size_t)(colon - spec) : strlen(spec);
    brg_model_config parsed;
    if (!lookup_model(spec, head_len, &parsed)) {
        if (colon)
            return brg__error_set(err, BRG_ERR_NAME,
                                  "model '%s': unknown family '%.*s' (families: gpt, mlp, skipnet; or a preset: %s)",
                                  spec, (int)head_len, spec, preset_list(presets_text, sizeof presets_text));
        return brg__error_set(err, BRG_ERR_NAME,
                              "unknown model preset '%s' (presets: %s; or a family: gpt, mlp, skipnet, optionally "
                              "with :key=value,...)",
                              spec, preset_list(presets_text, sizeof presets_text));
    }
    if (colon) {
        int given[KEY_COUNT] = {0};
        const char *item = colon + 1;
        if (!*item)
            return brg__error_set(err, BRG_ERR_PARSE, "model '%s': nothing after ':' (expected key=value,...)", spec);
        for (;;) {
            const char *comma = strchr(item, ',');
            size_t len = comma ? (size_t)(comma - item) : strlen(item);
            BRG__CHECK(parse_item(spec, item, len, &parsed, given, err));
            if (!comma) break;
            item = comma + 1;
        }
    }
    brg_error detail;
    if (brg_model_validate(&parsed, &detail) != BRG_OK)
        return brg__error_set(err, detail.status, "model '%s': %s", spec, detail.message);
    /* A bare preset keeps its name; anything else is named by its canonical specification. */
    if (colon) brg_model_format(&parsed, parsed.name, sizeof parsed.name);
    *cfg = parsed;
    return BRG_OK;
}

/* ---- analytic counts ---------------------------------------------------------------------------- */

int64_t brg_model_param_count(const brg_model_config *cfg) {
    if (brg_model_validate(cfg, NULL) != BRG_OK) return -1;
    int64_t V = cfg->vocab, C = cfg->hidden, T = cfg->seq, L = cfg->layers;
    switch (cfg->family) {
    case BRG_MODEL_GPT:
        /* wte, wpe; per block ln_1 2C, c_attn 3C^2 + 3C, c_proj C^2 + C, ln_2 2C, c_fc 4C^2 + 4C,
         * mlp.c_proj 4C^2 + C; ln_f 2C; the head is wte. */
        return V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C;
    case BRG_MODEL_MLP:
        return V * C + L * (C * C + C) + C * V + V;
    case BRG_MODEL_SKIPNET:
        return V * C + (2 * L + 1) * (C * C + C) + C * V + V;
    default:
        return -1;
    }
}

double brg_model_flops_per_token(const brg_model_config *cfg) {
    int64_t n = brg_model_param_count(cfg);
    if (n < 0) return -1;
    double flops = 6.0 * (double)n;
    if (cfg->family == BRG_MODEL_GPT) flops += 6.0 * (double)cfg->layers * (double)cfg->hidden * (double)cfg->seq;
    return flops;
}

/* ---- building ----------------------------------------------------------------------------------- */

void brg__model_init_normal(brg_graph *g, float std, const char *fmt, ...) {
    char name[BRG_MAX_NAME];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (brg_graph_status(g) != BRG_OK) return;
    brg_tensor *param = brg_graph_param(g, name);
    if (param) brg_param_set_init(g, param, (brg_init){BRG_INIT_NORMAL, std});
}

brg_tensor *brg__model_linear_relu(brg_graph *g, brg_tensor *x, int64_t hidden, const char *layer) {
    brg_tensor_info info = {0};
    if (brg_tensor_get_info(x, &info) != BRG_OK || info.ndim < 1) return brg_linear(g, x, hidden, "linear");
    int64_t fan_in = info.shape[info.ndim - 1];
    brg_tensor *h = brg_linear(g, x, hidden, "linear");
    brg__model_init_normal(g, sqrtf(2.0f / (float)fan_in), "%s.linear.weight", layer);
    return brg_relu(g, h, "relu");
}

void brg__model_head(brg_graph *g, brg_tensor *x, brg_tensor *targets, int64_t vocab) {
    brg_layer_begin(g, "head");
    brg_tensor *logits = brg_linear(g, x, vocab, "linear"); // (B, T, V)
    brg_cross_entropy(g, logits, targets, "loss");          // (B, T)
    brg_layer_end(g);
}

brg_status brg_model_build(const brg_model_config *cfg, brg_graph **out, brg_error *err) {
    if (out) *out = NULL;
    if (!out) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_model_build: out is NULL");
    BRG__CHECK(brg_model_validate(cfg, err));
    brg_graph *g = NULL;
    brg_status status = brg_graph_create(&g);
    if (status != BRG_OK)
        return brg__error_set(err, status, "model '%s': cannot create its graph: %s", cfg->name,
                              brg_status_string(status));
    switch (cfg->family) {
    case BRG_MODEL_GPT:
        brg__model_add_gpt(g, cfg);
        break;
    case BRG_MODEL_MLP:
        brg__model_add_mlp(g, cfg);
        break;
    case BRG_MODEL_SKIPNET:
        brg__model_add_skipnet(g, cfg);
        break;
    default:
        break;
    }
    status = brg_graph_finalize(g);
    if (status != BRG_OK) {
        brg__error_set(err, status, "model '%s': %s", cfg->name, brg_graph_last_error(g));
        brg_graph_destroy(g);
        return status;
    }
    *out = g;
    return BRG_OK;
}
