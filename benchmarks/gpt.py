"""genlab's GPT against transformers' GPT2LMHeadModel: the same GPT-2, the same weights, the same loop.

    .venv-bench/bin/python benchmarks/gpt.py              # 10 min of training per model, about 25 minutes in all
    .venv-bench/bin/python benchmarks/gpt.py --quick      # smoke test, about a minute; RESULTS.md left alone

Both sides are GPT-2 (6 layers, 6 heads, 384 wide, context 256, tanh GELU, biases, learned positions, tied
output layer) over the character vocabulary of genlab's Shakespeare: genlab's ``GPT(GPTConfig(...))`` and
``transformers.GPT2LMHeadModel(GPT2Config(**genlab.models.hf.hf_config_from_gpt(config)))``, the second given
the first's initial weights through ``genlab.models.hf.state_dict_to_hf`` (checked: the same logits).

1. Training speed: tokens/s of one hand-written loop (batch 16 × 256, AdamW, clipping), the two sides
   interleaved step by step, the order swapped each round; fp32 and under ``torch.autocast("cpu", bfloat16)``
   (few steps: on a CPU without bf16 instructions a bf16 step takes over a minute), and the training GEMM
   in both weight layouts.
2. Generation speed: 200 new tokens from a short prompt at batch 1 and 8, sampling (temperature 1, top-k 50)
   and greedy, and batch-1 sampling on one thread; genlab's ``genlab.sampling.decoding.generate`` against
   transformers' ``generate``, interleaved.
   What limits batch-1 generation: the memory bandwidth this machine reaches, the bytes of weights a token
   streams, and the time of one 384×1536 GEMV in each weight layout; torch.profiler tables when genlab
   misses its goal.
3. Quality at a fixed budget: each side trained for ``--minutes`` of loop time with the gpt-shakespeare
   recipe's optimiser (AdamW 2e-3, β₂ 0.99, weight decay 0.1, 100-step warm-up + cosine over the budget,
   clipping at 1, dropout 0.1), the same batches at every step; validation bits per character on the same
   windows of genlab's validation split, and a 300-character sample from each.

The issue's goals: genlab ≥ 1.5× transformers' training tokens/s with bf16, ≥ 5× its generation tokens/s at
batch 1. Writes the "## GPT: genlab vs transformers" section of benchmarks/RESULTS.md (``--no-write`` only
prints it) and every number to benchmarks/results/gpt.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffusion  # the sibling benchmarks: revision, load average, paired ratios, idle waiting
import torch
import torch.nn.functional as F
import vae
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from genlab import registry
from genlab.data.text import load_shakespeare
from genlab.data.tokenizers import CharTokenizer
from genlab.models.gpt import GPT, GPTConfig
from genlab.models.hf import hf_config_from_gpt, state_dict_to_hf
from genlab.sampling.decoding import DecodingOptions, generate
from genlab.training import TrainConfig, learning_rate

ROOT = Path(__file__).resolve().parent.parent
JSON_OUT = ROOT / "benchmarks" / "results" / "gpt.json"
SECTION = "## GPT: genlab vs transformers"
RECIPE = "gpt-shakespeare"  # its optimiser settings and dropout; the network is the 6 × 384
CONTEXT, BATCH, TOP_K = 256, 16, 50
GOALS = {"train_bf16": 1.5, "generate_1": 5.0}  # genlab ÷ transformers
PROMPT = "ROMEO:"
QUICK = {"minutes": 0.1, "timed_steps": 2, "bf16_steps": 1, "repeats": 1, "new_tokens": 20, "val_windows": 16,
         "sample_chars": 60, "wait_idle": 0.0}  # fmt: skip
DEFAULTS = {"minutes": 10.0, "timed_steps": 12, "bf16_steps": 2, "repeats": 5, "new_tokens": 200, "val_windows": 480,
            "sample_chars": 300, "wait_idle": 300.0}  # fmt: skip
Model = nn.Module


# --- data --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Data:
    tokenizer: CharTokenizer
    train: Tensor  # (N,) int64 token stream of the training plays
    val: Tensor
    chars_per_token: float  # of the validation text (a little under 1: documents are joined by "\n\n")


def load_data(cfg: TrainConfig) -> Data:
    """genlab's Shakespeare, its character vocabulary (from all the text, as genlab trains it) and split."""
    text = load_shakespeare()
    tokenizer = CharTokenizer.train(text.documents)
    train, val = text.split(val_fraction=cfg.val_fraction, seed=cfg.split_seed)
    val_tokens = torch.from_numpy(tokenizer.encode_documents(val.documents))
    return Data(tokenizer, torch.from_numpy(tokenizer.encode_documents(train.documents)), val_tokens,
                val.num_chars / len(val_tokens))  # fmt: skip


def batch_at(tokens: Tensor, step: int, seed: int) -> Tensor:
    """Training step ``step``'s (BATCH, CONTEXT + 1) windows at seeded random offsets: the same on both sides."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    offsets = torch.randint(len(tokens) - CONTEXT, (BATCH,), generator=generator)
    return tokens[offsets[:, None] + torch.arange(CONTEXT + 1)]


# --- the two sides -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Side:
    """One library's model as the shared loops see it."""

    name: str
    logits: Callable[[Model, Tensor], Tensor]  # (model, ids (B, T)) → (B, T, V)
    # (model, prompt, batch, new tokens, greedy, seed) → the new tokens of each of ``batch`` rows
    generate: Callable[[Model, list[int], int, int, bool, int], list[list[int]]]


def genlab_generate(model: Model, prompt: list[int], batch: int, new: int, greedy: bool, seed: int) -> list[list[int]]:
    options = DecodingOptions(max_new_tokens=new, temperature=0 if greedy else 1.0, top_k=None if greedy else TOP_K)
    return generate(model, [prompt] * batch, options, generator=torch.Generator().manual_seed(seed))


def hf_generate(model: Model, prompt: list[int], batch: int, new: int, greedy: bool, seed: int) -> list[list[int]]:
    torch.manual_seed(seed)  # transformers samples from the global generator
    ids = torch.tensor([prompt] * batch)
    sampling = {} if greedy else {"top_k": TOP_K, "temperature": 1.0}
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=not greedy, max_new_tokens=new,
                             min_new_tokens=new, pad_token_id=0, eos_token_id=None, **sampling)  # fmt: skip
    return out[:, len(prompt) :].tolist()


SIDES = [
    Side("genlab", lambda model, ids: model(ids), genlab_generate),
    Side("transformers", lambda model, ids: model(input_ids=ids, use_cache=False).logits, hf_generate),
]


def gpt_config(vocab_size: int, dropout: float) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, context_length=CONTEXT, num_layers=6, num_heads=6, embed_dim=384,
                     dropout=dropout, activation="gelu_tanh", bias=True, positions="learned",
                     tie_weights=True)  # fmt: skip


def build_pair(vocab_size: int, dropout: float, seed: int) -> dict[str, Model]:
    """genlab's GPT from ``seed`` and a transformers GPT-2 holding exactly its weights (in train mode)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = gpt_config(vocab_size, dropout)
    ours = GPT(config)
    theirs = GPT2LMHeadModel(GPT2Config(**hf_config_from_gpt(config)))
    weights = {k.removeprefix("transformer."): v for k, v in state_dict_to_hf(ours.state_dict(), config).items()}
    theirs.transformer.load_state_dict(weights, strict=True)  # lm_head is tied to wte
    ids = torch.randint(vocab_size, (2, 32), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        diff = (ours.eval()(ids) - theirs.eval()(ids).logits).abs().max().item()
    assert diff < 1e-4, f"the two sides disagree by {diff} on the same weights"
    return {"genlab": ours.train(), "transformers": theirs.train()}


def parameters(model: Model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


# --- the one training loop ---------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    side: Side
    model: Model
    optimiser: torch.optim.Optimizer
    steps: int = 0
    loop_s: float = 0.0  # wall seconds inside this side's steps: what the budget limits
    cpu_s: float = 0.0  # process CPU seconds inside them (all threads)
    losses: list[float] = dataclasses.field(default_factory=list)


def new_runs(models: dict[str, Model], cfg: TrainConfig) -> list[Run]:
    return [Run(side, models[side.name], torch.optim.AdamW(models[side.name].parameters(), lr=cfg.lr,
                betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)) for side in SIDES]  # fmt: skip


def train_step(run: Run, tokens: Tensor, cfg: TrainConfig, *, progress: float, seed: int, bf16: bool) -> float:
    """One optimiser step of ``run``; returns its wall seconds. The batch (and the seed of the dropout draws)
    depends only on the step number, so step k is the same work on both sides."""
    start, cpu = time.perf_counter(), time.process_time()
    for group in run.optimiser.param_groups:
        group["lr"] = learning_rate(cfg, run.steps, progress)
    batch = batch_at(tokens, run.steps, seed)
    torch.manual_seed(seed * 7_919 + run.steps)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = run.side.logits(run.model, batch[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
    run.optimiser.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.optimiser.step()
    run.steps += 1
    run.losses.append(float(loss.detach()))
    elapsed = time.perf_counter() - start
    run.loop_s += elapsed
    run.cpu_s += time.process_time() - cpu
    return elapsed


def training_speed(data: Data, cfg: TrainConfig, *, steps: int, seed: int, bf16: bool) -> dict[str, list[float]]:
    """Seconds per training step of each side (dropout 0), interleaved, the order swapped each round. A CPU
    without bf16 instructions takes minutes per bf16 step: there the warm-up is skipped (it is a small part)."""
    runs = new_runs(build_pair(data.tokenizer.vocab_size, 0.0, seed), cfg)
    for _ in range(0 if bf16 and not bf16_hardware() else 2):  # warm-up: allocator, oneDNN kernel choice
        for run in runs:
            train_step(run, data.train, cfg, progress=0.0, seed=seed, bf16=bf16)
    times: dict[str, list[float]] = {s.name: [] for s in SIDES}
    for i in range(steps):
        for run in runs if i % 2 == 0 else runs[::-1]:
            times[run.side.name].append(train_step(run, data.train, cfg, progress=0.0, seed=seed, bf16=bf16))
    return times


def train_interleaved(runs: list[Run], tokens: Tensor, cfg: TrainConfig, *, seconds: float, seed: int) -> None:
    """Step whichever run has used less of its ``seconds`` until both have used them all."""
    while pending := [r for r in runs if r.loop_s < seconds]:
        run = min(pending, key=lambda r: r.loop_s)
        train_step(run, tokens, cfg, progress=run.loop_s / seconds, seed=seed, bf16=False)


# --- generation --------------------------------------------------------------------------------
#: key → (sampling or greedy, batch, torch threads or None for --threads)
GENERATION_CASES = {"sample-1": ("sample", 1, None), "sample-8": ("sample", 8, None), "greedy-1": ("greedy", 1, None),
                    "greedy-8": ("greedy", 8, None), "sample-1-1thread": ("sample", 1, 1)}  # fmt: skip


def generation_speed(models: dict[str, Model], prompt: list[int], *, new: int, repeats: int,
                     seed: int) -> dict[str, dict[str, list[float]]]:  # fmt: skip
    """Seconds per call of ``new`` tokens for each case and side, the sides interleaved."""
    times = {key: {s.name: [] for s in SIDES} for key in GENERATION_CASES}
    threads = torch.get_num_threads()
    for side in SIDES:  # warm-up
        side.generate(models[side.name], prompt, 1, 4, False, seed)
    for i in range(repeats):
        for key, (mode, batch, case_threads) in GENERATION_CASES.items():
            torch.set_num_threads(case_threads or threads)
            for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                start = time.perf_counter()
                out = side.generate(models[side.name], prompt, batch, new, mode == "greedy", seed + i)
                times[key][side.name].append(time.perf_counter() - start)
                assert [len(row) for row in out] == [new] * batch, f"{side.name} stopped early"
    torch.set_num_threads(threads)
    return times


def median_us(fn: Callable[[], Any], repeats: int = 300) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def bf16_hardware() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX-512 BF16 or AMX); without it a bf16 GEMM is emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # unknown: assume so
    return "avx512_bf16" in flags or "amx_bf16" in flags


def memory_limits(model: GPT) -> dict[str, float]:
    """What bounds batch-1 generation here: read bandwidth (a 256 MB tensor, and one the size of the model's
    weights, on one thread and on all of ``torch.get_num_threads()``), the bytes of weights one token
    streams, and a 384×1536 GEMV in each weight layout. The floor takes the faster read."""
    streamed = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if n != "pos_emb.weight")
    big, model_sized = torch.ones(64 * 2**20), torch.ones(streamed // 4)
    threads, reads = torch.get_num_threads(), {}
    with torch.no_grad():
        for n in sorted({1, threads}):
            torch.set_num_threads(n)
            reads[n] = (median_us(big.sum, 9) / 1e6, median_us(model_sized.sum, 50) / 1e6)
        torch.set_num_threads(threads)
        x, w_in_out = torch.randn(1, 384), torch.randn(384, 1536)
        w_out_in, bias = w_in_out.t().contiguous(), torch.zeros(1536)
        in_out = median_us(lambda: torch.addmm(bias, x, w_in_out))
        out_in = median_us(lambda: F.linear(x, w_out_in, bias))
    sized_s = min(sized for _, sized in reads.values())
    return {"bytes_per_token": streamed, "floor_tokens_per_s": 1 / sized_s,
            "reads_gb_s": {f"{n} thread{'s' * (n > 1)}": {"256 MB": big.numel() * 4 / dram / 1e9,
                                                         "model-sized": streamed / sized / 1e9}
                           for n, (dram, sized) in reads.items()},
            "gemv_in_out_us": in_out, "gemv_out_in_us": out_in}  # fmt: skip


def training_gemms(repeats: int) -> dict[str, dict[str, float]]:
    """ms of the training forward's 4096×384 @ 384×1536 product (batch 16×256 into an MLP's first layer)
    with the weight stored (in, out) (``addmm``: genlab's ``Dense``, transformers' ``Conv1D``) and (out, in)
    (``F.linear``: ``nn.Linear``), in fp32 and bf16."""
    out: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for dtype in (torch.float32, torch.bfloat16):
            x, w = torch.randn(BATCH * CONTEXT, 384, dtype=dtype), torch.randn(384, 1536, dtype=dtype)
            w_out_in, bias = w.t().contiguous(), torch.zeros(1536, dtype=dtype)
            out[str(dtype).removeprefix("torch.")] = {
                "in_out_ms": median_us(lambda x=x, w=w, b=bias: torch.addmm(b, x, w), repeats) / 1e3,
                "out_in_ms": median_us(lambda x=x, w=w_out_in, b=bias: F.linear(x, w, b), repeats) / 1e3,
            }
    return out


def profile_generation(models: dict[str, Model], prompt: list[int], *, new: int, rows: int = 10) -> dict[str, Any]:
    """Self CPU ms per op while each side samples ``new`` tokens at batch 1 on one thread (no op waits for a
    second thread), the ``rows`` largest on either side, and the wall ms of the call: the gap between the
    two is time outside PyTorch's ops (Python, the framework)."""
    spent: dict[str, dict[str, float]] = {}
    wall: dict[str, float] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for side in SIDES:
        side.generate(models[side.name], prompt, 1, 4, False, 0)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            side.generate(models[side.name], prompt, 1, new, False, 0)
            wall[side.name] = (time.perf_counter() - start) * 1e3
        spent[side.name] = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}
    largest = {op: max(ms.get(op, 0.0) for ms in spent.values()) for ms in spent.values() for op in ms}
    ops = sorted(largest, key=largest.get, reverse=True)[:rows]
    table = [(op, {s: spent[s].get(op, 0.0) for s in spent}) for op in ops]
    table.append(("(all ops)", {s: sum(spent[s].values()) for s in spent}))
    torch.set_num_threads(threads)
    return {"tokens": new, "ops": table, "wall_ms": wall, "calls": {s: len(spent[s]) for s in spent}}


# --- quality -----------------------------------------------------------------------------------
@torch.no_grad()
def bits_per_char(side: Side, model: Model, data: Data, windows: int) -> float:
    """Mean cross-entropy of the first ``windows`` windows that tile the validation stream (every token
    predicted once), in bits per character; eval mode, fp32."""
    model.eval()
    starts = torch.arange(0, len(data.val) - CONTEXT, CONTEXT)[:windows]
    total, count = 0.0, 0
    for chunk in starts.split(BATCH):
        batch = data.val[chunk[:, None] + torch.arange(CONTEXT + 1)]
        logits = side.logits(model, batch[:, :-1])
        total += float(F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum"))
        count += batch[:, 1:].numel()
    model.train()
    return total / count / math.log(2) / data.chars_per_token


def sample_text(side: Side, model: Model, data: Data, chars: int, seed: int) -> str:
    """``chars`` sampled characters after the prompt. transformers' GPT-2 stops at its context, so both sides
    generate in pieces that fit it, continuing from the newer half of the text when the window is full (the
    policy of genlab's decoding)."""
    model.eval()
    text = data.tokenizer.encode(PROMPT)
    piece = 0
    while len(text) < len(PROMPT) + chars:
        context = text if len(text) < CONTEXT else text[-(CONTEXT // 2) :]
        new = min(len(PROMPT) + chars - len(text), CONTEXT - len(context))
        text += side.generate(model, context, 1, new, False, seed + piece)[0]
        piece += 1
    model.train()
    return data.tokenizer.decode(text)


# --- report ------------------------------------------------------------------------------------
def rate(times: list[float], tokens: int) -> float:
    return tokens / statistics.median(times)


def speed_rows(r: dict) -> list[str]:
    g, t, ratio = r["sides"]["genlab"], r["sides"]["transformers"], r["ratio"]
    rows = [("trainable parameters", f"{g['parameters']:,}", f"{t['parameters']:,}", g["parameters"] / t["parameters"])]
    precisions = (("train-fp32", "fp32", r["timed_steps"]), ("train-bf16", "bf16 autocast", r["bf16_steps"]))
    for key, label, steps in precisions:
        rows.append((f"training tokens/s, {label} (batch {BATCH}×{CONTEXT}, median of {steps} steps)",
                     f"{g[key]:,.1f}", f"{t[key]:,.1f}", ratio[key][0]))  # fmt: skip
    for key, (mode, batch, threads) in GENERATION_CASES.items():
        how = f"sampling (T 1, top-k {TOP_K})" if mode == "sample" else "greedy"
        how += f", {threads} thread" if threads else ""
        rows.append((f"generation tokens/s, batch {batch}, {how}, {r['new_tokens']} new (median of {r['repeats']})",
                     f"{g[key]:,.0f}", f"{t[key]:,.0f}", ratio[key][0]))  # fmt: skip
    rows += [
        (f"budget: loop wall s (CPU s), {r['minutes']:.3g} min each, fp32", f"{g['loop_s']:.0f} ({g['cpu_s']:.0f})",
         f"{t['loop_s']:.0f} ({t['cpu_s']:.0f})", g["loop_s"] / t["loop_s"]),
        ("optimiser steps in the budget", f"{g['steps']:,}", f"{t['steps']:,}", g["steps"] / t["steps"]),
        ("training loss, mean of the last 50 steps (nats/char)", f"{g['final_loss']:.3f}", f"{t['final_loss']:.3f}",
         g["final_loss"] / t["final_loss"]),
        (f"**validation bits/char ↓** ({r['val_chars']:,} characters)", f"**{g['val_bpc']:.3f}**",
         f"**{t['val_bpc']:.3f}**", g["val_bpc"] / t["val_bpc"]),
    ]  # fmt: skip
    return ["| | genlab `GPT` | transformers `GPT2LMHeadModel` | genlab ÷ transformers |", "|---|--:|--:|--:|",
            *[f"| {a} | {b} | {c} | {x:.2f} |" for a, b, c, x in rows]]  # fmt: skip


def goal_words(name: str, ratio: tuple[float, float, float], goal: float) -> str:
    median, q1, q3 = ratio
    met = "**met**" if median >= goal else "**not met**"
    return (f"{name}: genlab ÷ transformers ×{median:.2f} (quartiles of the per-round ratios {q1:.2f}–{q3:.2f}); "
            f"goal ≥ {goal:g}×: {met}.")  # fmt: skip


def limits_lines(r: dict) -> list[str]:
    m = r["limits"]
    fp32, bf16 = r["training_gemms"]["float32"], r["training_gemms"]["bfloat16"]
    floor = m["floor_tokens_per_s"]
    reads = ", ".join(f"{v['model-sized']:.1f} GB/s on {n}" for n, v in m["reads_gb_s"].items())
    reads += " (a 256 MB tensor: " + ", ".join(f"{v['256 MB']:.1f}" for v in m["reads_gb_s"].values()) + " GB/s)"
    best = {name: max(r["sides"][name][k] for k in GENERATION_CASES if k.startswith(("sample-1", "greedy-1")))
            for name in ("genlab", "transformers")}  # fmt: skip
    reach = "within the floor" if 5 * best["transformers"] <= floor else (
        "out of reach of any implementation that streams fp32 weights on this machine")  # fmt: skip
    hardware = "has bf16 instructions" if r["bf16_hardware"] else (
        "has no bf16 instructions (no AVX-512 BF16 or AMX in /proc/cpuinfo), so bf16 GEMMs are emulated")  # fmt: skip
    return [
        f"What limits training: the GEMMs. This CPU {hardware}: the forward's 4096×384 @ 384×1536 product takes "
        f"{fp32['in_out_ms']:.0f} ms in fp32 with the weight stored (in, out) (`addmm`: genlab's `Dense`, "
        f"transformers' GPT-2 `Conv1D`) and {fp32['out_in_ms']:.0f} ms stored (out, in) (`F.linear`: `nn.Linear`); "
        f"in bf16 {bf16['in_out_ms']:,.0f} ms and {bf16['out_in_ms']:,.0f} ms. Both sides store GPT-2's weights "
        "(in, out), so the layout does not tell the two apart; it would matter against `nn.Linear`.",
        "",
        f"What limits batch-1 generation: each token streams {m['bytes_per_token'] / 1e6:.1f} MB of fp32 weights "
        f"(every matrix once; the KV cache adds up to {r['kv_bytes_max'] / 1e6:.1f} MB at {CONTEXT} positions), more "
        f"than this CPU's 32 MB L3. Reading a tensor of that size runs at {reads}, a floor of "
        f"{floor:,.0f} tokens/s for a batch-1 step that did nothing but read its weights once. The best batch-1 "
        f"rates above: genlab {best['genlab']:,.0f} tokens/s ({best['genlab'] / floor:.0%} of the floor), "
        f"transformers {best['transformers']:,.0f} ({best['transformers'] / floor:.0%}). Five times transformers' "
        f"would be {5 * best['transformers']:,.0f} tokens/s, {5 * best['transformers'] / floor:.1f}× the floor: "
        f"{reach}. "
        f"A 384×1536 GEMV takes {m['gemv_in_out_us']:.0f} µs with the weight stored (in, out) (genlab's `Dense`, "
        f"transformers' GPT-2 `Conv1D`) and {m['gemv_out_in_us']:.0f} µs stored (out, in) (`nn.Linear`); both sides "
        "use the (in, out) layout for GPT-2, so what separates them is not the matrix products but what runs "
        "around them.",
    ]


def profile_lines(p: dict) -> list[str]:
    lines = [f"torch.profiler, batch-1 sampling of {p['tokens']} tokens on one thread, self CPU ms per op, the ten "
             f"largest on either side; wall ms of the call: genlab {p['wall_ms']['genlab']:.0f}, transformers "
             f"{p['wall_ms']['transformers']:.0f} (the profiler slows both; wall minus all ops ≈ Python and framework "
             "time):", "", "| op | genlab self CPU ms | transformers self CPU ms |", "|---|--:|--:|"]  # fmt: skip
    lines += [f"| `{op}` | {ms['genlab']:.1f} | {ms['transformers']:.1f} |" for op, ms in p["ops"]]
    ops = dict(p["ops"])
    per_token = {s: (ops["(all ops)"][s] / p["tokens"], (p["wall_ms"][s] - ops["(all ops)"][s]) / p["tokens"],
                     ops.get("aten::addmm", {}).get(s, 0.0) / p["tokens"]) for s in p["wall_ms"]}  # fmt: skip
    lines += ["", "Per token: " + "; ".join(
        f"{s} {ops_ms:.1f} ms in ops ({addmm:.1f} of them in the matrix products) and {outside:.1f} ms outside them"
        for s, (ops_ms, outside, addmm) in per_token.items()) + "."]  # fmt: skip
    return [*lines, ""]


def section(r: dict) -> str:
    ratio = r["ratio"]
    ours, theirs = r["sides"]["genlab"]["val_bpc"], r["sides"]["transformers"]["val_bpc"]
    same, better = round(ours, 3) == round(theirs, 3), ours < theirs
    compared = "the same" if same else "genlab better" if better else "genlab **worse**"
    out = [
        SECTION, "",
        f"Command (from the repository root): `{r['command']}`  ",
        f"Date: {r['date']}  ",
        f"Machine: {r['machine']}; load average {r['load_start']} at the start, {r['load_end']} at the end  ",
        f"genlab: {r['revision'] or 'not a git checkout'}", "",
        f"GPT-2 on both sides (6 layers, 6 heads, 384 wide, context {CONTEXT}, tanh GELU, biases, learned positions, "
        f"tied output layer, {r['vocab_size']}-character vocabulary of genlab's Shakespeare), transformers' model "
        "built from `genlab.models.hf.hf_config_from_gpt` and given genlab's initial weights through "
        "`state_dict_to_hf` (the same logits, checked). Speed runs: dropout 0, one hand-written loop, the sides "
        "interleaved step by step in one process. Budget runs: the gpt-shakespeare recipe's optimiser "
        f"(AdamW {r['lr']:g}, β₂ {r['beta2']:g}, weight decay {r['weight_decay']:g}, {r['warmup_steps']}-step warm-up "
        f"+ cosine to ×{r['min_lr_ratio']:g} over the budget, clipping at {r['grad_clip']:g}), dropout 0.1, fp32, "
        f"batch {BATCH}×{CONTEXT}, the same batches at every step; {r['train_chars']:,} training characters "
        f"(34 plays), validation on the first {r['val_chars']:,} characters of the other 4 (genlab's split, "
        "val_fraction 0.1, seed 0).", "",
        *speed_rows(r), "",
        "- " + goal_words("Training with bf16 autocast", ratio["train-bf16"], GOALS["train_bf16"]) + bf16_caveat(r),
        "- " + goal_words("Generation at batch 1 (sampling)", ratio["sample-1"], GOALS["generate_1"])
        + f" On one thread: ×{ratio['sample-1-1thread'][0]:.2f}; the floor below puts 5× out of reach here.",
        f"- Quality at an equal budget: genlab {ours:.3f} bits/char against transformers' {theirs:.3f} "
        f"({compared}).",
        "", *limits_lines(r), "",
    ]  # fmt: skip
    if r.get("profile"):
        out += profile_lines(r["profile"])
    for side in SIDES:
        owner = f"{side.name}'" if side.name.endswith("s") else f"{side.name}'s"
        out += [f"A sample of {owner} model after the budget (temperature 1, top-k {TOP_K}, seed {r['seed']}):",
                "", "```text", r["sides"][side.name]["sample"], "```", ""]  # fmt: skip
    return "\n".join([*out, "Notes:", "", *[f"- {n}" for n in notes_for(r)], ""])


def bf16_caveat(r: dict) -> str:
    if r["bf16_hardware"]:
        return ""
    fp32, bf16 = r["times_s"]["train-fp32"], r["times_s"]["train-bf16"]
    slower = {name: min(bf16[name]) / min(fp32[name]) for name in fp32}  # fastest steps: the least load
    low, high = min(slower.values()), max(slower.values())
    span = f"about {low:.0f}×" if round(low) == round(high) else f"{low:.0f}–{high:.0f}×"
    return (
        f" This CPU has no bf16 instructions: a bf16 step takes {span} "
        "as long as an fp32 one on both sides, so this row measures emulated bf16 GEMMs, not what either side "
        "does on bf16 hardware."
    )


def training_note(r: dict) -> str:
    """The fp32 training rates compared two ways: medians of each side's steps can fall in different load
    regimes when other processes ran during part of the section; the fastest steps and the paired ratio cannot."""
    t = r["times_s"]["train-fp32"]
    fastest = {name: BATCH * CONTEXT / min(times) for name, times in t.items()}
    return (
        f"Training speed, fp32: the ratio column is the median of per-round ratios (steps run side by side). "
        f"Each side's median step, in the rate columns, can fall in a different load regime when other processes "
        f"ran during part of the section ({r['others_cpu_s']['train_fp32']:.0f} CPU s here); the fastest step of "
        f"each side gives genlab {fastest['genlab']:,.0f} and transformers {fastest['transformers']:,.0f} tokens/s "
        f"(×{fastest['genlab'] / fastest['transformers']:.2f}). Step times in seconds: "
        + "; ".join(f"{name} {', '.join(f'{x:.1f}' for x in times)}" for name, times in t.items())
        + "."
    )


def notes_for(r: dict) -> list[str]:
    others = r["others_cpu_s"]
    return [
        training_note(r),
        f"Threads: `torch.set_num_threads({r['threads']})` on {os.cpu_count()} logical CPUs. CPU seconds other "
        f"processes used meanwhile (0 on an idle machine): training speed {others['train_fp32']:.0f} (fp32) and "
        f"{others['train_bf16']:.0f} (bf16), generation "
        f"speed {others['generation']:.0f}, budget training {others['budget']:.0f}. The sides ran interleaved, so "
        "load slows both alike and the ratios (medians of per-round ratios) hold better than the absolute rates. "
        "With two threads on two cores, a process beside the benchmark also makes every op that splits its work "
        "across both threads wait for the busy core (milliseconds for a small op), which penalises the side with "
        "more such ops; the one-thread generation row is immune to that.",
        "transformers runs its defaults: SDPA attention, `generate` with a `DynamicCache`; the training forward is "
        "called with `use_cache=False` (no cache built during training) and the loss computed outside the model "
        "by the same code as genlab's, so both sides do the same arithmetic.",
        f"Generation: both sides produce exactly {r['new_tokens']} tokens per row (no end-of-text in a character "
        f"vocabulary; transformers with `min_new_tokens`) from the {len(PROMPT)}-character prompt {PROMPT!r}, "
        "the same prompt repeated for batch 8 (no padding).",
        "Quality: one training step of either side is one batch of the same offsets and the same seed for the "
        "dropout draws (the draws fall differently in the two implementations). Bits per character = mean nats "
        "per predicted character / ln 2 × (tokens / characters), as genlab's trainer reports it.",
    ]


# --- main --------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, help=f"training budget per side, loop minutes ({DEFAULTS['minutes']:g})")
    p.add_argument("--timed-steps", type=int, help=f"timed training steps per side ({DEFAULTS['timed_steps']})")
    p.add_argument("--bf16-steps", type=int, help=f"timed bf16 training steps per side ({DEFAULTS['bf16_steps']})")
    p.add_argument("--repeats", type=int, help=f"timed generation calls per side and case ({DEFAULTS['repeats']})")
    p.add_argument("--new-tokens", type=int, help=f"tokens per generation call ({DEFAULTS['new_tokens']})")
    p.add_argument("--val-windows", type=int, help=f"validation windows of {CONTEXT} ({DEFAULTS['val_windows']})")
    p.add_argument("--sample-chars", type=int, help=f"characters of each sample ({DEFAULTS['sample_chars']})")
    p.add_argument(
        "--wait-idle",
        type=float,
        metavar="SECONDS",
        help=f"wait at most this long for an idle CPU before timing ({DEFAULTS['wait_idle']:g})",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (2)")
    p.add_argument("--seed", type=int, default=0, help="weights, batches, dropout and sampling (0)")
    p.add_argument("--profile", action="store_true", help="profile batch-1 generation even when genlab meets its goal")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny budget; implies --no-write")
    p.add_argument("--results", type=Path, default=vae.RESULTS, help="Markdown file to update (RESULTS.md)")
    p.add_argument("--json", type=Path, help="where to write every number (results/gpt.json; --quick: a temp file)")
    p.add_argument("--no-write", action="store_true", help="print the section, leave RESULTS.md alone")
    p.add_argument("--report", type=Path, metavar="JSON", help="measure nothing: write the section from a run's JSON")
    args = p.parse_args()
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.no_write = args.no_write or args.quick
    args.json = args.json or (Path(tempfile.gettempdir()) / "genlab-gpt-quick.json" if args.quick else JSON_OUT)
    return args


def speed(r: dict, data: Data, cfg: TrainConfig, args: argparse.Namespace) -> None:
    """Sections 1 and 2 into ``r``: training and generation rates, ratios, limits and (maybe) profiles."""
    times: dict[str, dict[str, list[float]]] = {}
    for precision, steps in (("fp32", args.timed_steps), ("bf16", args.bf16_steps)):
        print(f"timing {steps} training steps per side, {precision} ...", flush=True)
        times[f"train-{precision}"], r["others_cpu_s"][f"train_{precision}"] = diffusion.measured(
            lambda p=precision, n=steps: training_speed(data, cfg, steps=n, seed=args.seed, bf16=p == "bf16"),
            args.wait_idle,
        )
    models = {name: m.eval() for name, m in build_pair(data.tokenizer.vocab_size, 0.0, args.seed).items()}
    prompt = data.tokenizer.encode(PROMPT)
    print(f"timing generation ({args.repeats} calls per side and case) ...", flush=True)
    generation, r["others_cpu_s"]["generation"] = diffusion.measured(
        lambda: generation_speed(models, prompt, new=args.new_tokens, repeats=args.repeats, seed=args.seed),
        args.wait_idle,
    )
    times |= generation
    for name in r["sides"]:
        for key, t in times.items():
            per_call = BATCH * CONTEXT if key.startswith("train") else GENERATION_CASES[key][1] * args.new_tokens
            r["sides"][name][key] = rate(t[name], per_call)
    r["ratio"] = {key: diffusion.paired_ratio(t["genlab"], t["transformers"]) for key, t in times.items()}
    r["times_s"] = times
    r["limits"] = memory_limits(models["genlab"])
    print("timing the training GEMM in both weight layouts ...", flush=True)
    r["training_gemms"] = training_gemms(1 if args.quick else 3)
    r["kv_bytes_max"] = 2 * 6 * CONTEXT * 384 * 4
    if r["ratio"]["sample-1"][0] < GOALS["generate_1"] or args.profile:
        print("profiling batch-1 generation ...", flush=True)
        r["profile"] = profile_generation(models, prompt, new=min(args.new_tokens, 100))


def quality(r: dict, data: Data, cfg: TrainConfig, args: argparse.Namespace) -> None:
    """Section 3 into ``r``: both sides trained for the budget, interleaved; bits/char and a sample each."""
    print(f"training both sides, interleaved, {args.minutes:g} min of loop time each ...", flush=True)
    runs = new_runs(build_pair(data.tokenizer.vocab_size, 0.1, args.seed), cfg)
    _, r["others_cpu_s"]["budget"] = diffusion.measured(
        lambda: train_interleaved(runs, data.train, cfg, seconds=60 * args.minutes, seed=args.seed), 0.0
    )
    print("scoring both sides on the validation windows ...", flush=True)
    for run in runs:
        r["sides"][run.side.name] |= {
            "steps": run.steps, "loop_s": run.loop_s, "cpu_s": run.cpu_s,
            "final_loss": statistics.fmean(run.losses[-50:]),
            "val_bpc": bits_per_char(run.side, run.model, data, args.val_windows),
            "sample": sample_text(run.side, run.model, data, args.sample_chars, args.seed),
        }  # fmt: skip
    r["val_chars"] = round(min(args.val_windows, (len(data.val) - 1) // CONTEXT) * CONTEXT * data.chars_per_token)


def save(r: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r, indent=2, default=float, ensure_ascii=False) + "\n", encoding="utf-8")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every number of the section, with what produced it."""
    torch.set_num_threads(args.threads)
    vae.warm_up_torch()
    load_start, revision = diffusion.loadavg(), diffusion.genlab_revision()
    cfg = dataclasses.replace(registry.recipe(RECIPE).train, batch_size=BATCH)
    data = load_data(cfg)
    pair = build_pair(data.tokenizer.vocab_size, 0.0, args.seed)
    r: dict[str, Any] = {"sides": {name: {"parameters": parameters(m)} for name, m in pair.items()},
                         "others_cpu_s": {}}  # fmt: skip
    print(f"load average {load_start}; vocabulary {data.tokenizer.vocab_size}; parameters "
          f"{r['sides']['genlab']['parameters']:,}", flush=True)  # fmt: skip
    speed(r, data, cfg, args)
    save(r, args.json)  # a crash later loses nothing measured so far
    quality(r, data, cfg, args)
    return r | {
        "command": vae.command_line(), "date": f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "machine": vae.machine_note(args.threads, ("transformers",)), "revision": revision,
        "load_start": load_start, "load_end": diffusion.loadavg(), "threads": args.threads, "seed": args.seed,
        "minutes": args.minutes, "timed_steps": args.timed_steps, "bf16_steps": args.bf16_steps,
        "repeats": args.repeats, "bf16_hardware": bf16_hardware(),
        "new_tokens": args.new_tokens, "vocab_size": data.tokenizer.vocab_size, "train_chars": len(data.train),
        "goals": GOALS, **{k: getattr(cfg, k) for k in ("lr", "beta2", "weight_decay", "warmup_steps",
                                                       "min_lr_ratio", "grad_clip")},
    }  # fmt: skip


def main() -> None:
    args = parse_args()
    if args.report is not None:  # the section again from a run's numbers
        r = json.loads(args.report.read_text(encoding="utf-8"))
    else:
        r = measure(args)
        save(r, args.json)
        print(f"wrote {args.json}")
    text = section(r)
    print()
    print(text)
    if not args.no_write:
        vae.write_section(args.results, text)
        print(f"wrote the {SECTION!r} section of {args.results}")


if __name__ == "__main__":
    main()
