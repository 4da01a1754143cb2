#!/usr/bin/env python3
"""GPT-2 training throughput in PyTorch, measured the way `brigade bench` measures brigade.

The reference point for brigade's GPU figures: the same model (GPT-2 small by default: 12 layers, 768 wide,
12 heads, 1024 positions, vocabulary padded to 50304), the same batch, sequence length and element type,
random tokens, AdamW, forward + backward + optimizer step per iteration. Attention is
F.scaled_dot_product_attention (causal; FlashAttention on Hopper), the optimizer torch's fused AdamW;
--compile adds torch.compile. bf16 is autocast over fp32 master weights, as brigade keeps them; fp32
disables TF32, as brigade's fp32 GEMMs do.

Model FLOPs per token are counted as brigade and llm.c count them: 6 x parameters + 6 x layers x width x
sequence (attention), recomputation not counted; MFU is their rate over --peak-tflops.

    python3 bench/torch_gpt2.py --dtype bf16 --micro-batch 16 --steps 10 --json out.json
"""
import argparse
import json
import math
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="steps run first and not timed")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu, to try the script without a GPU")
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="dense peak to measure MFU against (default: 989 bf16 / 67 fp32 on H100/H200)")
    p.add_argument("--json", help="also write the figures here")
    a = p.parse_args(argv)
    for name in ("layers", "hidden", "heads", "vocab", "seq", "micro_batch", "steps"):
        if getattr(a, name) < 1:
            p.error("--%s must be at least 1" % name.replace("_", "-"))
    if a.hidden % a.heads:
        p.error("--hidden must be a multiple of --heads")
    return a


def build_model(torch, a):
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(a.hidden)
            self.c_attn = nn.Linear(a.hidden, 3 * a.hidden)
            self.c_proj = nn.Linear(a.hidden, a.hidden)
            self.ln_2 = nn.LayerNorm(a.hidden)
            self.c_fc = nn.Linear(a.hidden, 4 * a.hidden)
            self.mlp_proj = nn.Linear(4 * a.hidden, a.hidden)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)  # (B, T, C) each
            q = q.view(B, T, a.heads, C // a.heads).transpose(1, 2)  # (B, NH, T, HS)
            k = k.view(B, T, a.heads, C // a.heads).transpose(1, 2)
            v = v.view(B, T, a.heads, C // a.heads).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, NH, T, HS)
            x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(a.vocab, a.hidden)
            self.wpe = nn.Embedding(a.seq, a.hidden)
            self.h = nn.ModuleList(Block() for _ in range(a.layers))
            self.ln_f = nn.LayerNorm(a.hidden)
            self.register_buffer("positions", torch.arange(a.seq), persistent=False)
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

        def forward(self, tokens, targets):
            x = self.wte(tokens) + self.wpe(self.positions[: tokens.shape[1]])  # (B, T, C)
            for block in self.h:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.t()  # tied head, (B, T, V)
            return F.cross_entropy(logits.float().view(-1, a.vocab), targets.view(-1))

    return GPT()


def main(argv):
    a = parse_args(argv)
    try:
        import torch
    except ImportError as e:
        print("torch_gpt2: PyTorch is not installed: %s" % e, file=sys.stderr)
        return 2
    if a.device == "cuda" and not torch.cuda.is_available():
        print("torch_gpt2: no CUDA device visible to PyTorch", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(a.device)
    model = build_model(torch, a).to(dev)
    params = sum(p.numel() for p in model.parameters())
    fused = a.device == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0,
                            fused=fused)
    step_model = model
    compile_seconds = None
    if a.compile:
        t0 = time.perf_counter()
        step_model = torch.compile(model)
    gen = torch.Generator(device=dev).manual_seed(1)
    tokens = torch.randint(0, a.vocab, (a.micro_batch, a.seq), device=dev, generator=gen)
    targets = torch.randint(0, a.vocab, (a.micro_batch, a.seq), device=dev, generator=gen)

    def step():
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            loss = step_model(tokens, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    if a.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    first = None
    for i in range(max(a.warmup, 1)):
        loss = step()
        if i == 0:
            first = float(loss)
            if a.compile:
                compile_seconds = time.perf_counter() - t0
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync()
    seconds = time.perf_counter() - t0
    last = float(loss)
    tokens_per_step = a.micro_batch * a.seq
    tok_s = tokens_per_step * a.steps / seconds
    flops_per_token = 6.0 * params + 6.0 * a.layers * a.hidden * a.seq
    peak = a.peak_tflops * 1e12 if a.peak_tflops > 0 else (989e12 if a.dtype == "bf16" else 67e12)
    mfu = tok_s * flops_per_token / peak
    peak_bytes = torch.cuda.max_memory_allocated() if a.device == "cuda" else 0
    figures = {
        "framework": "pytorch " + torch.__version__,
        "device": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
        "dtype": a.dtype, "compiled": a.compile, "compile_seconds": compile_seconds,
        "parameters": params, "micro_batch": a.micro_batch, "seq": a.seq, "steps": a.steps,
        "step_seconds": seconds / a.steps, "tokens_per_second": tok_s,
        "model_flops_per_token": flops_per_token, "tflops": tok_s * flops_per_token / 1e12,
        "peak_tflops": peak / 1e12, "mfu": mfu, "peak_bytes": peak_bytes,
        "loss_first": first, "loss_last": last,
    }
    print("pytorch %s %s b=%d T=%d%s: %.0f tokens/s, %.1f TFLOP/s, MFU %.1f%%, %.2f ms/step, peak %.2f GiB, "
          "loss %.4f -> %.4f" % (figures["device"], a.dtype, a.micro_batch, a.seq, " compiled" if a.compile else "",
                                 tok_s, figures["tflops"], 100 * mfu, 1e3 * seconds / a.steps,
                                 peak_bytes / 2**30, first, last))
    if not math.isfinite(last):
        print("torch_gpt2: the loss is not finite", file=sys.stderr)
        return 1
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
