"""An independent GPT-2 for the checkpoint tests: NumPy and the `safetensors` package only, no brigade code.

  hf_gpt2.py make DIR           random GPT-2 weights as Hugging Face publishes them (unprefixed names,
                                Conv1D weights (in, out), attn.bias / attn.masked_bias buffers), config.json,
                                and a token shard DIR/tokens.bin in llm.c's format
  hf_gpt2.py loss DIR SHARD FIRST B   the mean cross-entropy of samples FIRST..FIRST+B-1 of SHARD
                                (brigade's sampling: sample i is the window at (i * T) mod (N - T)) under the
                                weights in DIR (a model.safetensors, or shards and their index; either
                                spelling of the names), printed with %.9g
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

LAYERS, C, HEADS, VOCAB, POSITIONS, T = 2, 32, 2, 64, 24, 16


def make(d):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(2024)
    w = {}
    normal = lambda *shape: (0.02 * rng.standard_normal(shape)).astype(np.float32)
    w["wte.weight"] = normal(VOCAB, C)
    w["wpe.weight"] = normal(POSITIONS, C)
    for l in range(LAYERS):
        p = "h.%d." % l
        for ln in ("ln_1", "ln_2"):
            w[p + ln + ".weight"] = (1.0 + 0.1 * rng.standard_normal(C)).astype(np.float32)
            w[p + ln + ".bias"] = normal(C)
        w[p + "attn.c_attn.weight"] = normal(C, 3 * C)
        w[p + "attn.c_attn.bias"] = normal(3 * C)
        w[p + "attn.c_proj.weight"] = normal(C, C)
        w[p + "attn.c_proj.bias"] = normal(C)
        w[p + "mlp.c_fc.weight"] = normal(C, 4 * C)
        w[p + "mlp.c_fc.bias"] = normal(4 * C)
        w[p + "mlp.c_proj.weight"] = normal(4 * C, C)
        w[p + "mlp.c_proj.bias"] = normal(C)
        w[p + "attn.bias"] = np.tril(np.ones((POSITIONS, POSITIONS), np.float32))[None, None]
        w[p + "attn.masked_bias"] = np.array(-1e4, np.float32)
    w["ln_f.weight"] = (1.0 + 0.1 * rng.standard_normal(C)).astype(np.float32)
    w["ln_f.bias"] = normal(C)
    save_file(w, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    config = {"model_type": "gpt2", "n_embd": C, "n_layer": LAYERS, "n_head": HEADS, "vocab_size": VOCAB,
              "n_positions": POSITIONS, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f)
    tokens = rng.integers(0, VOCAB, 4096).astype(np.uint16)
    header = np.zeros(256, np.int32)
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    with open(os.path.join(d, "tokens.bin"), "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.tobytes())


def load_weights(d):
    files = [f for f in sorted(os.listdir(d)) if f.startswith("model") and f.endswith(".safetensors")]
    w = {}
    for f in files:
        for k, v in load_file(os.path.join(d, f)).items():
            w[k[len("transformer."):] if k.startswith("transformer.") else k] = v.astype(np.float64)
    return w


def layernorm(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * g + b


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def forward_loss(w, tokens, targets):
    B, T_ = tokens.shape
    h = w["wte.weight"][tokens] + w["wpe.weight"][:T_]
    hd = C // HEADS
    mask = np.tril(np.ones((T_, T_), bool))
    for l in range(LAYERS):
        p = "h.%d." % l
        x = layernorm(h, w[p + "ln_1.weight"], w[p + "ln_1.bias"])
        qkv = x @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = np.split(qkv, 3, axis=-1)
        q, k, v = (a.reshape(B, T_, HEADS, hd).transpose(0, 2, 1, 3) for a in (q, k, v))
        att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
        att = np.where(mask, att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T_, C)
        h = h + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        x = layernorm(h, w[p + "ln_2.weight"], w[p + "ln_2.bias"])
        x = gelu(x @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        h = h + x @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    h = layernorm(h, w["ln_f.weight"], w["ln_f.bias"])
    logits = h @ w["wte.weight"].T
    logits -= logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], -1).mean()


def loss(d, shard, first, batch):
    raw = np.fromfile(shard, np.uint16, offset=1024)
    n = len(raw)
    starts = [(i * T) % (n - T) for i in range(first, first + batch)]
    tokens = np.stack([raw[s:s + T] for s in starts]).astype(np.int64)
    targets = np.stack([raw[s + 1:s + T + 1] for s in starts]).astype(np.int64)
    print("%.9g" % forward_loss(load_weights(d), tokens, targets))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        loss(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
