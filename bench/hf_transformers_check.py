"""Loads a brigade checkpoint step with Hugging Face transformers and compares its loss and logits with
brigade's own figures and with the independent NumPy GPT-2 of the tests (tests/runtime/hf_gpt2.py).
Outside the test suite (transformers and torch are large):
  python3 -m venv v && v/bin/pip install torch transformers safetensors numpy
  v/bin/python bench/hf_transformers_check.py STEP_DIR SHARD FIRST BATCH [BRIGADE_LOSS]
"""
import os
import sys

import numpy as np
import torch
from transformers import GPT2LMHeadModel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "runtime"))
import hf_gpt2  # noqa: E402

step_dir, shard, first, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model = GPT2LMHeadModel.from_pretrained(step_dir).eval()
T = int(os.environ.get("BRG_SEQ", hf_gpt2.T))  # the model's seq: samples are windows of T tokens
raw = np.fromfile(shard, np.uint16, offset=1024)
starts = [(i * T) % (len(raw) - T) for i in range(first, first + batch)]
tokens = np.stack([raw[s:s + T] for s in starts]).astype(np.int64)
targets = np.stack([raw[s + 1:s + T + 1] for s in starts]).astype(np.int64)
with torch.no_grad():
    logits = model(torch.from_numpy(tokens)).logits.double()
loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(targets).reshape(-1))
ref = hf_gpt2.forward_loss(hf_gpt2.load_weights(step_dir), tokens, targets)
print("transformers %s: loss %.9g; NumPy reference %.9g (relative difference %.2e)" %
      (__import__("transformers").__version__, loss.item(), ref, abs(loss.item() - ref) / ref))
if len(sys.argv) > 5:
    b = float(sys.argv[5])
    print("brigade's loss %.9g: relative difference to transformers %.2e" % (b, abs(loss.item() - b) / b))
