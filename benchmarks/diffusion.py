"""genlab's DDPM against diffusers: the same UNet size, data, training loop and time budget.

    .venv-bench/bin/python benchmarks/diffusion.py             # 6 min of training per model, about 25 minutes in all
    .venv-bench/bin/python benchmarks/diffusion.py --quick     # smoke test, about a minute; RESULTS.md left alone

Two sides, each built from its library's public API:

* genlab: ``Diffusion(DiffusionConfig)`` with the ``ddpm-mnist`` recipe's network, unconditional
  (``num_classes=0``); ``model.loss(Batch(x))`` to train, ``model.sample(..., sampler="ddim", num_steps=50)``.
* diffusers: ``UNet2DModel`` with the same levels (16, 32, 64 channels at 28, 14, 7 px, one residual block a
  level on the way down and two on the way up, 4-head self-attention at 7 px and in the middle), which gives
  exactly genlab's parameter count; ``DDPMScheduler(beta_schedule="linear")`` makes the training noise
  (``add_noise``, ε-MSE), and ``DDIMScheduler.from_config`` of it samples with the standard loop.

One hand-written loop trains both (the recipe's AdamW, lr, warm-up + cosine over the time budget, gradient
clipping, batch 64 and EMA of the weights), and the two are interleaved step by step, the side that has used
less of its budget stepping next, so whatever else runs on the machine slows both alike. Step k of either
side sees the same batch and the same t and ε draws (common random numbers), so only the network and the
library code differ. Speed: training images/s over timed steps and sampling images/s of 64 images at 50
DDIM steps, both sides interleaved in this process. Quality: FID of samples (50 DDIM steps, the same initial
noise for both) against the training images, in the 128-d features of genlab's shipped ``domain:mnist``
network (the default extractor of ``genlab eval``); and genlab's model with DPM-Solver++(2M) at 20 steps,
DDIM at 50 and ancestral DDPM at 250 on a common subset. Writes the "## Diffusion: genlab DDPM vs diffusers"
section of benchmarks/RESULTS.md (``--no-write`` only prints it) and every number to
benchmarks/results/diffusion.json.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import vae  # the sibling benchmark: its machine, command-line and RESULTS.md helpers
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from genlab import registry
from genlab.data.datasets import load_images
from genlab.data.images import to_tensor, to_uint8
from genlab.metrics.features import Extractor, load_extractor
from genlab.metrics.image import GaussianStats, frechet_distance
from genlab.models.base import Batch
from genlab.models.diffusion import Diffusion
from genlab.training import EMA, TrainConfig, learning_rate

ROOT = Path(__file__).resolve().parent.parent
JSON_OUT = ROOT / "benchmarks" / "results" / "diffusion.json"
SECTION = "## Diffusion: genlab DDPM vs diffusers"
RECIPE = "ddpm-mnist"
WITHIN = 0.10  # the fast solver's FID may exceed 250-step DDPM's by this fraction
QUICK = {"minutes": 1 / 6, "samples": 32, "sampler_samples": 16, "timed_steps": 3, "sample_repeats": 1,
         "wait_idle": 0.0}  # fmt: skip
DEFAULTS = {"minutes": 6.0, "samples": 1000, "sampler_samples": 500, "timed_steps": 20, "sample_repeats": 4,
            "wait_idle": 60.0}  # fmt: skip


@dataclasses.dataclass
class Side:
    """One library's model as the shared loop sees it: a builder of the module and two pure functions of it."""

    name: str
    build: Callable[[], nn.Module]  # a freshly initialised network, from the global RNG
    loss: Callable[[nn.Module, Tensor], Tensor]  # (model, x_0 (B, 1, 28, 28) in [-1, 1]) → scalar ε-MSE
    sample: Callable[[nn.Module, int, torch.Generator, int], Tensor]  # (model, n, generator, DDIM steps) → images


@dataclasses.dataclass
class Run:
    """A side being trained: its optimiser, EMA and the clock of its own steps."""

    side: Side
    model: nn.Module
    optimiser: torch.optim.Optimizer
    ema: EMA
    steps: int = 0
    loop_s: float = 0.0  # wall seconds inside this side's steps: what the budget limits
    cpu_s: float = 0.0  # process CPU seconds inside them (all threads)
    losses: list[float] = dataclasses.field(default_factory=list)


# --- data --------------------------------------------------------------------------------------
def load_split(cfg: TrainConfig) -> tuple[Tensor, Tensor]:
    """genlab's MNIST and its seeded split: (train images, val images), float32 (N, 1, 28, 28) in [-1, 1],
    the diffusion models' data range."""
    train, val = load_images("mnist").split(val_fraction=cfg.val_fraction, seed=cfg.split_seed)
    return to_tensor(train.images, (-1.0, 1.0)), to_tensor(val.images, (-1.0, 1.0))


def batch_at(step: int, x: Tensor, batch_size: int, seed: int) -> Tensor:
    """The batch of training step ``step``: a fresh seeded permutation per epoch, the remainder dropped."""
    per_epoch = len(x) // batch_size
    epoch, i = divmod(step, per_epoch)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 10_007 + epoch))
    return x[order[i * batch_size : (i + 1) * batch_size]]


# --- the two sides -----------------------------------------------------------------------------
def genlab_side() -> Side:
    cfg = dataclasses.replace(registry.recipe(RECIPE).model, num_classes=0)

    def loss(model: nn.Module, x0: Tensor) -> Tensor:
        return model.loss(Batch(x0)).total

    def sample(model: nn.Module, n: int, generator: torch.Generator, num_steps: int) -> Tensor:
        return model.sample(n, generator=generator, num_steps=num_steps, sampler="ddim")

    return Side("genlab", lambda: Diffusion(cfg), loss, sample)


def diffusers_unet() -> nn.Module:
    """genlab's ddpm-mnist UNet in diffusers' blocks. One ``norm_num_groups`` serves every GroupNorm
    (genlab uses gcd(32, channels) groups: 16, 32, 32), and 16 is the most that divides 16 channels."""
    from diffusers import UNet2DModel

    base, mults = 16, registry.recipe(RECIPE).model.channel_mults
    return UNet2DModel(
        sample_size=28, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=tuple(base * m for m in mults),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),  # attention at 7×7, like genlab
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=16, norm_num_groups=16,  # 64 channels / 16 = genlab's 4 heads
    )  # fmt: skip


def diffusers_side() -> Side:
    from diffusers import DDIMScheduler, DDPMScheduler

    noise = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")  # ᾱ equal to genlab's to 3e-7

    def loss(model: nn.Module, x0: Tensor) -> Tensor:
        # drawn in genlab's order (t, then ε) so that the same seed gives both sides the same noise
        t = torch.randint(noise.config.num_train_timesteps, (x0.shape[0],))
        eps = torch.randn_like(x0)
        return F.mse_loss(model(noise.add_noise(x0, eps, t), t).sample, eps)

    @torch.no_grad()
    def sample(model: nn.Module, n: int, generator: torch.Generator, num_steps: int) -> Tensor:
        scheduler = DDIMScheduler.from_config(noise.config)  # a fresh one: schedulers keep per-run state
        scheduler.set_timesteps(num_steps)  # default "leading" spacing: 980, 960, …, 0
        x = torch.randn((n, 1, 28, 28), generator=generator)
        for t in scheduler.timesteps:
            x = scheduler.step(model(x, t).sample, t, x).prev_sample  # η = 0
        return x

    return Side("diffusers", diffusers_unet, loss, sample)


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- the one training loop ---------------------------------------------------------------------
def new_run(side: Side, cfg: TrainConfig, *, seed: int) -> Run:
    torch.manual_seed(seed)  # each library's own initialisation, from the same seed
    model = side.build().train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                  weight_decay=cfg.weight_decay)  # fmt: skip
    return Run(side, model, optimiser, EMA(model, cfg.ema_decay))


def train_step(run: Run, x_train: Tensor, cfg: TrainConfig, *, progress: float, seed: int) -> float:
    """One optimiser step of ``run``; returns its wall seconds. Batch and noise depend only on the step."""
    start, cpu = time.perf_counter(), time.process_time()
    for group in run.optimiser.param_groups:
        group["lr"] = learning_rate(cfg, run.steps, progress)
    x0 = batch_at(run.steps, x_train, cfg.batch_size, seed)
    torch.manual_seed(seed * 1_000_003 + run.steps)  # step k's t and ε: the same for both sides
    loss = run.side.loss(run.model, x0)
    run.optimiser.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.optimiser.step()
    run.ema.update(run.model)
    run.steps += 1
    run.losses.append(float(loss.detach()))
    elapsed = time.perf_counter() - start
    run.loop_s += elapsed
    run.cpu_s += time.process_time() - cpu
    return elapsed


def train_interleaved(runs: list[Run], x_train: Tensor, cfg: TrainConfig, *, seconds: float, seed: int) -> None:
    """Step whichever run has used less of its ``seconds`` until both have used them all."""
    while pending := [r for r in runs if r.loop_s < seconds]:
        run = min(pending, key=lambda r: r.loop_s)
        train_step(run, x_train, cfg, progress=run.loop_s / seconds, seed=seed)


def averaged(run: Run) -> nn.Module:
    """A copy of the run's model holding its EMA weights, in eval mode: what both sides sample from."""
    model = copy.deepcopy(run.model)
    run.ema.copy_to(model)
    return model.eval()


# --- speed -------------------------------------------------------------------------------------
def training_speed(sides: list[Side], x_train: Tensor, cfg: TrainConfig, *, steps: int, seed: int) -> dict:
    """Seconds per training step of each side (fresh copies), interleaved, the order swapped each round."""
    runs = [new_run(side, cfg, seed=seed) for side in sides]
    for _ in range(3):  # warm-up: allocator, oneDNN kernel choice
        for run in runs:
            train_step(run, x_train, cfg, progress=0.0, seed=seed)
    times: dict[str, list[float]] = {s.name: [] for s in sides}
    for i in range(steps):
        for run in runs if i % 2 == 0 else runs[::-1]:
            times[run.side.name].append(train_step(run, x_train, cfg, progress=0.0, seed=seed))
    return times


def sampling_speed(sides: list[Side], *, repeats: int, seed: int, n: int = 64, num_steps: int = 50) -> dict:
    """Seconds per call drawing ``n`` images with ``num_steps`` DDIM steps, sides interleaved."""
    models = {s.name: s.build().eval() for s in sides}
    for side in sides:  # warm-up
        side.sample(models[side.name], n, torch.Generator().manual_seed(seed), 2)
    times: dict[str, list[float]] = {s.name: [] for s in sides}
    for i in range(repeats):
        for side in sides if i % 2 == 0 else sides[::-1]:
            start = time.perf_counter()
            side.sample(models[side.name], n, torch.Generator().manual_seed(seed), num_steps)
            times[side.name].append(time.perf_counter() - start)
    return times


def measured(fn: Callable[[], Any], wait_s: float) -> tuple[Any, float | None]:
    """``fn()`` after waiting (at most ``wait_s``) for an idle CPU, and the CPU seconds others took meanwhile."""
    if wait_s > 0:
        vae.wait_for_idle(wait_s)
    busy, own = vae.system_busy_s(), time.process_time()
    result = fn()
    if busy is None:
        return result, None
    return result, max(0.0, vae.system_busy_s() - busy - (time.process_time() - own))


def top_ops(sides: list[Side], x_train: Tensor, cfg: TrainConfig, *, seed: int, rows: int = 10) -> dict:
    """Self CPU ms per op (torch.profiler) in 3 training steps and in drawing 64 images with 5 DDIM steps,
    for each side: {"train" | "sample": [(op, {side: ms})]}, the ``rows`` ops either side spends most on."""
    spent: dict[str, dict[str, dict[str, float]]] = {"train": {}, "sample": {}}
    for side in sides:
        run = new_run(side, cfg, seed=seed)
        train_step(run, x_train, cfg, progress=0.0, seed=seed)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                train_step(run, x_train, cfg, progress=0.0, seed=seed)
        spent["train"][side.name] = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}
        model = run.model.eval()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            side.sample(model, 64, torch.Generator().manual_seed(seed), 5)
        spent["sample"][side.name] = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}
    out = {}
    for phase, by_side in spent.items():
        largest = {op: max(ms.get(op, 0.0) for ms in by_side.values()) for ms in by_side.values() for op in ms}
        ops = sorted(largest, key=largest.get, reverse=True)[:rows]
        out[phase] = [(op, {s: by_side[s].get(op, 0.0) for s in by_side}) for op in ops]
        out[phase].append(("(all ops)", {s: sum(by_side[s].values()) for s in by_side}))
    return out


# --- FID in the shipped domain network's feature space -------------------------------------------------
def features_of(extractor: Extractor, x: Tensor) -> np.ndarray:
    """(N, 1, 28, 28) in [-1, 1] → float64 (N, 128) features, through uint8 as ``genlab eval`` sees images."""
    return extractor(to_uint8(x, (-1.0, 1.0)))[0].astype(np.float64)


def draw(fns: dict[str, Callable[..., Tensor]], n: int, *, seed: int,
         batch_size: int = 250) -> dict[str, tuple[Tensor, float]]:  # fmt: skip
    """``n`` images from each ``fn(batch, generator=…)``, each with its own generator seeded ``seed``, a batch
    of each in turn so machine load hits all alike; rounded to uint8 like saved images. Returns each
    name's images and the wall seconds its calls took."""
    generators = {name: torch.Generator().manual_seed(seed) for name in fns}
    images: dict[str, list[Tensor]] = {name: [] for name in fns}
    seconds = dict.fromkeys(fns, 0.0)
    for size in [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else []):
        for name, fn in fns.items():
            start = time.perf_counter()
            x = fn(size, generator=generators[name])
            seconds[name] += time.perf_counter() - start
            images[name].append(to_tensor(to_uint8(x, (-1.0, 1.0)), (-1.0, 1.0)))
    return {name: (torch.cat(images[name]), seconds[name]) for name in fns}


def fid_with_sd(features: np.ndarray, ref: GaussianStats, *, seed: int, rounds: int = 50) -> tuple[float, float]:
    """FID of ``features`` against the reference statistics, and its bootstrap standard deviation over
    resamples of the generated set (the reference held fixed): how much of a difference is sampling noise."""
    fid = frechet_distance(GaussianStats.of(features), ref)
    rng = np.random.default_rng(seed)
    boot = [frechet_distance(GaussianStats.of(features[rng.integers(0, len(features), len(features))]), ref)
            for _ in range(rounds)]  # fmt: skip
    return fid, float(np.std(boot))


# --- report ------------------------------------------------------------------------------------
def speed_rows(r: dict) -> list[str]:
    g, d = r["sides"]["genlab"], r["sides"]["diffusers"]
    rows = [
        ("trainable parameters", f"{g['parameters']:,}", f"{d['parameters']:,}", g["parameters"] / d["parameters"]),
        (f"training images/s (batch 64, median of {r['timed_steps']} steps)", f"{g['train_images_per_s']:.1f}",
         f"{d['train_images_per_s']:.1f}", r["speed_ratio"]["train"][0]),
        (f"sampling images/s (64 images, 50 DDIM steps, median of {r['sample_repeats']})",
         f"{g['sample_images_per_s']:.1f}", f"{d['sample_images_per_s']:.1f}", r["speed_ratio"]["sample"][0]),
        (f"budget: loop wall s (CPU s), {r['minutes']:.3g} min each", f"{g['loop_s']:.0f} ({g['cpu_s']:.0f})",
         f"{d['loop_s']:.0f} ({d['cpu_s']:.0f})", g["loop_s"] / d["loop_s"]),
        ("optimiser steps in the budget", f"{g['steps']:,}", f"{d['steps']:,}", g["steps"] / d["steps"]),
        ("training loss, mean of the last 100 steps", f"{g['final_loss']:.4f}", f"{d['final_loss']:.4f}",
         g["final_loss"] / d["final_loss"]),
        (f"**FID ↓**, {r['samples']:,} samples, 50 DDIM steps (± bootstrap s.d.)",
         f"**{g['fid']:.2f}** ± {g['fid_sd']:.2f}", f"**{d['fid']:.2f}** ± {d['fid_sd']:.2f}", g["fid"] / d["fid"]),
    ]  # fmt: skip
    return [
        "| | genlab `Diffusion` | diffusers `UNet2DModel` + `DDPMScheduler`/`DDIMScheduler` | genlab ÷ diffusers |",
        "|---|--:|--:|--:|",
        *[f"| {a} | {b} | {c} | {ratio:.2f} |" for a, b, c, ratio in rows],
    ]


def sampler_rows(r: dict) -> list[str]:
    lines = [
        f"| model | sampler | steps (network evaluations) | images/s (batches of 250) "
        f"| FID ↓ ({r['sampler_samples']:,} samples) |",
        "|---|---|--:|--:|--:|",
    ]
    for s in r["samplers"]:
        lines.append(f"| {s['model']} | {s['sampler']} | {s['steps']} | {s['images_per_s']:.1f} "
                     f"| {s['fid']:.2f} ± {s['fid_sd']:.2f} |")  # fmt: skip
    lines.append(f"| training images, 3×3 box blur ({r['sampler_samples']}) | — | — | — | {r['blur_fid']:.2f} |")
    lines.append(f"| real validation images ({r['val_images']}) | — | — | — | {r['floor_fid']:.2f} |")
    return lines


def profile_rows(ops: dict) -> list[str]:
    lines = []
    for phase, title in (("train", "3 training steps"), ("sample", "64 images × 5 DDIM steps")):
        lines += [f"| op ({title}) | genlab self CPU ms | diffusers self CPU ms |", "|---|--:|--:|"]
        lines += [f"| `{op}` | {ms['genlab']:.0f} | {ms['diffusers']:.0f} |" for op, ms in ops[phase]]
        lines.append("")
    return lines


def speed_words(median: float, q1: float, q3: float) -> str:
    spread = f"×{median:.2f} ({q1:.2f}–{q3:.2f})"
    if q1 <= 1 <= q3:
        return f"{spread}, the same within the noise"
    return f"{spread}, {'faster' if median > 1 else '**slower**'}"


def verdict(r: dict) -> list[str]:
    g, d, check = r["sides"]["genlab"], r["sides"]["diffusers"], r["fast_solver_check"]
    train, sample = (speed_words(*r["speed_ratio"][k]) for k in ("train", "sample"))
    quality = ("as good or better" if g["fid"] <= d["fid"] else
               "worse, within the bootstrap noise" if g["fid"] - d["fid"] <= 2 * max(g["fid_sd"], d["fid_sd"])
               else "**worse**")  # fmt: skip
    return [
        f"- Speed at equal parameters, genlab's images/s over diffusers' (median of per-round ratios, quartiles): "
        f"training {train}; sampling {sample}.",
        f"- Quality at an equal budget: genlab's FID is {quality} ({g['fid']:.2f} against {d['fid']:.2f}).",
        f"- Fast solver: DPM-Solver++(2M) at 20 steps scores {check['dpm']:.2f}, 250-step DDPM {check['ddpm']:.2f}: "
        f"{'**within**' if check['passed'] else '**not within**'} {WITHIN:.0%} "
        f"(ratio {check['dpm'] / check['ddpm']:.3f}, limit {1 + WITHIN:.2f}; the difference, "
        f"{check['dpm'] - check['ddpm']:+.1f}, is {abs(check['dpm'] - check['ddpm']) / check['difference_sd']:.1f} "
        "bootstrap s.d.).",
    ]


def section(r: dict, notes: list[str]) -> str:
    out = [
        SECTION,
        "",
        f"Command (from the repository root): `{r['command']}`  ",
        f"Date: {r['date']}  ",
        f"Machine: {r['machine']}; load average {r['load_start']} at the start, {r['load_end']} at the end  ",
        f"genlab: {r['revision'] or 'not a git checkout'}",
        "",
        "genlab's `ddpm-mnist` UNet, unconditional, against diffusers' `UNet2DModel` with the same levels and "
        "exactly the same parameter count, trained by one hand-written loop (the recipe's AdamW, warm-up + cosine "
        f"over the budget, clipping, batch {r['batch_size']}, EMA {r['ema_decay']}), interleaved step by step for "
        f"{r['minutes']:.3g} minutes of loop time each, the same batches and the same t, ε draws at every step. "
        f"Data: genlab's MNIST, {r['train_images']:,} training and {r['val_images']} validation images in [-1, 1]. "
        f"FID against the training images, in the {r['extractor']['feature_dim']}-d features of genlab's shipped "
        f"`{r['extractor']['name']}` network (weights {r['extractor']['weights_sha256'][:12]}, validation accuracy "
        f"{r['extractor']['val_accuracy']:.1%}), the default extractor of `genlab eval`; "
        "samples rounded to 8 bits like saved images; both sides sample from their EMA weights and the same "
        "initial noise.",
        "",
        *speed_rows(r),
        "",
        "genlab's model under its three samplers, and diffusers' DDIM, on the first "
        f"{r['sampler_samples']:,} images of each draw (FID has a small-sample bias, so compare within this table):",
        "",
        *sampler_rows(r),
        "",
        *verdict(r),
        "",
    ]
    if r.get("profile"):
        out += ["torch.profiler (run when genlab's median speed ratio is below 1 on either measure, or with "
                "`--profile`), self CPU time per op on fresh models, the ten largest on either side; the two sides "
                "are profiled one after the other, so load can skew them:", "",
                *profile_rows(r["profile"])]  # fmt: skip
    out += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--minutes", type=float, help=f"training budget per model, loop wall minutes ({DEFAULTS['minutes']:g})"
    )
    p.add_argument("--samples", type=int, help=f"images per model for the FID comparison ({DEFAULTS['samples']})")
    p.add_argument("--sampler-samples", type=int,
                   help=f"images per sampler for genlab's sampler table ({DEFAULTS['sampler_samples']})")  # fmt: skip
    p.add_argument("--timed-steps", type=int, help=f"timed training steps per side ({DEFAULTS['timed_steps']})")
    p.add_argument("--sample-repeats", type=int, help=f"timed sampling calls per side ({DEFAULTS['sample_repeats']})")
    p.add_argument(
        "--wait-idle",
        type=float,
        metavar="SECONDS",
        help=f"before each timed section, wait at most this long for an idle CPU ({DEFAULTS['wait_idle']:g})",
    )
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (the machine's CPUs)")
    p.add_argument("--seed", type=int, default=0, help="weights, batches, noise and sampling (0)")
    p.add_argument("--profile", action="store_true", help="profile both sides even when genlab is the faster")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny budget, few samples; implies --no-write")
    p.add_argument("--results", type=Path, default=vae.RESULTS, help="Markdown file to update (RESULTS.md)")
    p.add_argument(
        "--json", type=Path, help="where to write every number (results/diffusion.json; --quick: a temporary file)"
    )
    p.add_argument("--no-write", action="store_true", help="print the section, leave RESULTS.md alone")
    args = p.parse_args()
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.no_write = args.no_write or args.quick
    # a smoke test's numbers mean nothing: keep them out of the repository
    args.json = args.json or (Path(tempfile.gettempdir()) / "genlab-diffusion-quick.json" if args.quick else JSON_OUT)
    return args


def median_rate(times: list[float], n: int) -> float:
    return n / statistics.median(times)


def paired_ratio(genlab_s: list[float], diffusers_s: list[float]) -> tuple[float, float, float]:
    """genlab's speed over diffusers' from times taken in the same rounds: the median and quartiles of the
    per-round ratios, which cancel load that drifts between rounds."""
    ratios = [d / g for g, d in zip(genlab_s, diffusers_s, strict=True)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return median, q1, q3


def genlab_revision() -> str:
    """The commit this checkout is at, flagged when genlab/ has changes beside it; '' outside git."""
    try:
        git = partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, check=True)
        head = git(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = git(["git", "status", "--porcelain", "--", "genlab"]).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f"git {head}{' + uncommitted changes in genlab/' if dirty else ''}"


def loadavg() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def quality(runs: list[Run], extractor: Extractor, x_train: Tensor, x_val: Tensor, args: argparse.Namespace) -> dict:
    """FIDs: each side at 50 DDIM steps; genlab's three samplers and diffusers' DDIM on a common subset."""
    ref = GaussianStats.of(features_of(extractor, x_train))
    models = {run.side.name: averaged(run) for run in runs}
    floor = frechet_distance(GaussianStats.of(features_of(extractor, x_val)), ref)
    out: dict[str, Any] = {"floor_fid": floor, "samplers": []}
    subset = min(args.sampler_samples, args.samples)
    real = x_train[torch.randperm(len(x_train), generator=torch.Generator().manual_seed(args.seed))[:subset]]
    blurred = F.avg_pool2d(real, 3, stride=1, padding=1, count_include_pad=False)  # a scale for the FIDs below
    out["blur_fid"] = frechet_distance(GaussianStats.of(features_of(extractor, blurred)), ref)
    print(f"sampling {args.samples} images from each side (50 DDIM steps) ...", flush=True)
    ddim = {run.side.name: partial(run.side.sample, models[run.side.name], num_steps=50) for run in runs}
    for name, (images, seconds) in draw(ddim, args.samples, seed=args.seed).items():
        feats = features_of(extractor, images)
        out[name] = dict(zip(("fid", "fid_sd"), fid_with_sd(feats, ref, seed=args.seed), strict=True))
        out[name]["sample_s"] = seconds
        out["samplers"].append({"model": name, "sampler": "ddim", "steps": 50, "images_per_s": args.samples / seconds,
                                "fid_features": feats[:subset]})  # fmt: skip
    print(f"sampling {subset} images from genlab with dpm++2m (20 steps) and ddpm (250 steps) ...", flush=True)
    steps = {"dpm++2m": 20, "ddpm": 250}
    fast = {sampler: partial(models["genlab"].sample, sampler=sampler, num_steps=k) for sampler, k in steps.items()}
    for sampler, (images, seconds) in draw(fast, subset, seed=args.seed).items():
        out["samplers"].append({"model": "genlab", "sampler": sampler, "steps": steps[sampler],
                                "images_per_s": subset / seconds,
                                "fid_features": features_of(extractor, images)})  # fmt: skip
    for row in out["samplers"]:
        row["fid"], row["fid_sd"] = fid_with_sd(row.pop("fid_features"), ref, seed=args.seed)
    out["samplers"].sort(key=lambda s: (s["model"] != "genlab", s["steps"]))
    by = {s["sampler"]: s for s in out["samplers"] if s["model"] == "genlab"}
    dpm, ddpm = by["dpm++2m"], by["ddpm"]
    out["fast_solver_check"] = {"dpm": dpm["fid"], "ddpm": ddpm["fid"],
                                "passed": dpm["fid"] <= (1 + WITHIN) * ddpm["fid"],
                                "difference_sd": float(np.hypot(dpm["fid_sd"], ddpm["fid_sd"]))}  # fmt: skip
    return out


def notes_for(r: dict) -> list[str]:
    others, check = r["others_cpu_s"], r["fast_solver_check"]
    notes = [
        f"Threads: `torch.set_num_threads({r['threads']})` on {os.cpu_count()} logical CPUs. CPU seconds other "
        f"processes used meanwhile (0 on an idle machine): training-speed section {others['train_speed']:.0f}, "
        f"sampling-speed section {others['sample_speed']:.0f}, budget training {others['budget']:.0f} "
        f"(against our {r['sides']['genlab']['cpu_s'] + r['sides']['diffusers']['cpu_s']:.0f}). Both sides ran "
        "interleaved in one process, so load slows both alike and the ratios hold; the absolute images/s do not.",
        "Timesteps: genlab's DDIM visits 999, 979, …, 20, 0 (both ends, `linspace(T−1, 0, 50)`); diffusers' "
        '`DDIMScheduler` its default "leading" spacing 980, 960, …, 20, 0 with `set_alpha_to_one=True`. Both clip '
        "x̂_0 to [-1, 1] (`clip_denoised` / `clip_sample`).",
        "Architecture: the same blocks and the same 686,769-parameter count, but genlab's GroupNorms have "
        "gcd(32, C) groups (16, 32, 32) where diffusers takes one `norm_num_groups` (16); genlab's attention "
        "projects q, k, v and the output with 1×1 convolutions, diffusers with Linear layers on the flattened "
        "positions; genlab zero-initialises each residual branch's last conv, the attention output and the "
        "output conv, diffusers keeps PyTorch's default init.",
        f"Training steps count the batch, noise, loss, backward, clipping at {r['grad_clip']:g}, AdamW step and "
        "EMA update of each side, nothing else. Both EMAs use genlab's `EMA` class with the same decay and warm-up.",
        f"FID scale: the {r['val_images']} validation images against the training images score "
        f"{r['floor_fid']:.2f}, {r['sampler_samples']} training images blurred by a 3×3 box filter "
        f"{r['blur_fid']:.2f}: this feature space punishes stroke shape far more than pixel noise. FID shrinks "
        "with more samples, so numbers from different sample counts (the two tables) do not compare.",
    ]
    if not check["passed"]:
        notes.append(
            "The 20-step solver misses the 10 % mark in this run. The models are far from converged at this budget "
            "(FID ≫ the floor); ancestral DDPM draws fresh noise at every step, which can hide errors of the "
            "network that a deterministic ODE solver follows all the way. Whether the gap closes with longer "
            "training is not measured here (`--minutes`)."
        )
    return notes


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    vae.warm_up_torch()
    load_start, revision, cfg = loadavg(), genlab_revision(), registry.recipe(RECIPE).train
    x_train, x_val = load_split(cfg)
    sides = [genlab_side(), diffusers_side()]
    r: dict[str, Any] = {"sides": {s.name: {"parameters": parameters(s.build())} for s in sides}, "others_cpu_s": {}}
    counts = ", ".join(f"{name} {side['parameters']:,}" for name, side in r["sides"].items())
    print(f"load average {load_start}; trainable parameters: {counts}", flush=True)

    print(f"timing {args.timed_steps} training steps per side ...", flush=True)
    train_t, r["others_cpu_s"]["train_speed"] = measured(
        lambda: training_speed(sides, x_train, cfg, steps=args.timed_steps, seed=args.seed), args.wait_idle
    )
    print(f"timing {args.sample_repeats} sampling calls per side ...", flush=True)
    sample_t, r["others_cpu_s"]["sample_speed"] = measured(
        lambda: sampling_speed(sides, repeats=args.sample_repeats, seed=args.seed), args.wait_idle
    )
    for s in sides:
        r["sides"][s.name] |= {"train_images_per_s": median_rate(train_t[s.name], cfg.batch_size),
                               "sample_images_per_s": median_rate(sample_t[s.name], 64)}  # fmt: skip
    r["speed_ratio"] = {"train": paired_ratio(train_t["genlab"], train_t["diffusers"]),
                        "sample": paired_ratio(sample_t["genlab"], sample_t["diffusers"])}  # fmt: skip
    slower = any(median < 1 for median, _, _ in r["speed_ratio"].values())
    if slower or args.profile:
        print("profiling both sides ...", flush=True)
        r["profile"] = top_ops(sides, x_train, cfg, seed=args.seed)

    extractor = load_extractor("domain", dataset="mnist")
    r["extractor"] = extractor.describe()

    print(f"training both sides, interleaved, {args.minutes:g} min of loop time each ...", flush=True)
    runs = [new_run(s, cfg, seed=args.seed) for s in sides]
    _, r["others_cpu_s"]["budget"] = measured(
        lambda: train_interleaved(runs, x_train, cfg, seconds=60 * args.minutes, seed=args.seed), 0.0
    )
    for run in runs:
        r["sides"][run.side.name] |= {"steps": run.steps, "loop_s": run.loop_s, "cpu_s": run.cpu_s,
                                      "final_loss": statistics.fmean(run.losses[-100:])}  # fmt: skip
    q = quality(runs, extractor, x_train, x_val, args)
    for s in sides:
        r["sides"][s.name] |= q.pop(s.name)
    r |= q | {
        "command": vae.command_line(), "date": f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "machine": vae.machine_note(args.threads, ("diffusers",)), "revision": revision,
        "load_start": load_start, "load_end": loadavg(),
        "threads": args.threads, "minutes": args.minutes, "samples": args.samples,
        "sampler_samples": min(args.sampler_samples, args.samples),
        "timed_steps": args.timed_steps, "sample_repeats": args.sample_repeats, "seed": args.seed,
        "batch_size": cfg.batch_size, "ema_decay": cfg.ema_decay,
        "grad_clip": cfg.grad_clip, "train_images": len(x_train), "val_images": len(x_val),
        "train_step_s": train_t, "sample_call_s": sample_t,
    }  # fmt: skip
    text = section(r, notes_for(r))
    print()
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(r, indent=2, default=float) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    if not args.no_write:
        vae.write_section(args.results, text)
        print(f"wrote the {SECTION!r} section of {args.results}")


if __name__ == "__main__":
    main()
