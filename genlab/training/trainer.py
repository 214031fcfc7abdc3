"""The one trainer: every genlab model trains through :func:`fit`.

One step is: learning rate → for each phase of the model (one for a VAE; discriminator then
generator for a GAN): accumulate gradients over micro-batches → clip → optimiser step; then EMA,
logging, evaluation, samples and checkpoints at their intervals.

Resuming is exact on CPU with a fixed seed: the data order is a pure function of (seed, epoch),
the learning rate a pure function of the step, and the checkpoint holds the weights, optimiser
moments, EMA and the RNG state, so a run killed at any point and resumed ends with the same
weights as one never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from genlab.checkpoint import list_checkpoints, load_checkpoint, load_state_into, save_checkpoint
from genlab.config import check, validate
from genlab.errors import ConfigError, DataError, TrainingError
from genlab.io import write_text
from genlab.models.base import Batch, GenerativeModel, Phase
from genlab.training import distributed
from genlab.training.distributed import World
from genlab.training.ema import EMA
from genlab.training.items import Items

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    steps: int | None = 2000  # optimiser steps (the schedule's length); None: max_minutes alone ends the run
    max_minutes: float | None = None  # stop after this much wall time; the schedule then follows the clock
    batch_size: int = 128  # items per optimiser step, across all micro-batches
    grad_accum: int = 1  # micro-batches per step (batch_size must divide by it)
    lr: float = 1e-3
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # the schedule ends at lr · min_lr_ratio
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0  # max global gradient norm per phase; 0 turns clipping off
    ema_decay: float = 0.0  # 0 = no EMA; e.g. 0.999 keeps an average used for sampling
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 = autocast on CPU or CUDA
    val_fraction: float = 0.1
    split_seed: int = 0  # the train/validation split (kept apart from the training seed)
    seed: int = 0
    log_every: int = 25
    eval_every: int = 250
    eval_batches: int = 20  # validation batches per evaluation; 0 = the whole split
    sample_every: int = 500  # 0 = only at the end
    checkpoint_every: int = 500  # 0 = only at the end
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        validate(self)
        check(self.steps is None or self.steps >= 1, f"steps={self.steps} must be at least 1.")
        check(self.steps is not None or self.max_minutes is not None, "give steps or max_minutes (or both).")
        check(self.max_minutes is None or self.max_minutes > 0, f"max_minutes={self.max_minutes} must be > 0.")
        check(self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be at least 1.")
        check(
            self.batch_size % self.grad_accum == 0,
            f"batch_size={self.batch_size} must divide by grad_accum={self.grad_accum}.",
        )
        check(self.lr > 0, f"lr={self.lr} must be > 0.")
        check(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio={self.min_lr_ratio} must be in [0, 1].")
        check(0 <= self.ema_decay < 1, f"ema_decay={self.ema_decay} must be in [0, 1).")
        check(0 <= self.val_fraction < 1, f"val_fraction={self.val_fraction} must be in [0, 1).")
        check(self.grad_clip >= 0 and self.weight_decay >= 0, "grad_clip and weight_decay must be ≥ 0.")
        for name in ("warmup_steps", "log_every", "eval_every", "sample_every", "checkpoint_every", "eval_batches"):
            check(getattr(self, name) >= 0, f"{name}={getattr(self, name)} must be ≥ 0.")


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup_steps``, then the schedule over ``progress`` ∈ [0, 1]."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    floor = config.lr * config.min_lr_ratio
    p = min(max(progress, 0.0), 1.0)
    if config.lr_schedule == "cosine":
        return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * p))
    if config.lr_schedule == "linear":
        return config.lr - (config.lr - floor) * p
    if config.lr_schedule == "constant":
        return config.lr
    raise ConfigError(f"lr_schedule {config.lr_schedule!r} is not one of 'cosine', 'linear', 'constant'.")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively (oneDNN's check: AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA if present, else Apple MPS, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto.")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ConfigError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N, mps.")
    return torch.device(name)


class BatchStream:
    """Micro-batches of a set of items, in an order that is a pure function of (seed, epoch):
    micro-batch ``m`` is the same on every run, so resuming needs only ``m``."""

    def __init__(self, items: Items, batch_size: int, seed: int, shard: World = World()) -> None:
        if len(items) == 0:
            raise DataError("the training data has no items (a token stream shorter than one window?).")
        self.items = items
        self.batch_size = min(batch_size, len(items))
        self.per_epoch = len(items) // self.batch_size  # the remainder is dropped each epoch
        self.seed = seed
        self.shard = shard  # under torch.distributed each process takes every size-th item of a batch
        self._epoch, self._order = -1, None

    def batch(self, m: int) -> Batch:
        epoch, i = divmod(m, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(len(self.items), generator=g)
        idx = self._order[i * self.batch_size : (i + 1) * self.batch_size][self.shard.rank :: self.shard.size]
        return self.items.batch(idx)


def eval_batches(items: Items, batch_size: int, limit: int) -> Iterator[Batch]:
    """The validation pass: ``items.eval_index()`` in order, at most ``limit`` batches (0 = all)."""
    index = items.eval_index()
    n = len(index) if limit == 0 else min(len(index), limit * batch_size)
    for start in range(0, n, batch_size):
        yield items.batch(index[start : start + batch_size])


@dataclass
class TrainState:
    step: int = 0
    microbatch: int = 0
    elapsed_s: float = 0.0
    last_metrics: dict[str, float] = field(default_factory=dict)
    last_val: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """What the trainer reports to its caller's ``on_event`` (progress bars live in the CLI)."""

    kind: Literal["start", "log", "eval", "checkpoint", "warning", "end"]
    step: int
    total_steps: int | None  # None when a time budget alone ends the run
    metrics: dict[str, float]
    elapsed_s: float
    message: str = ""  # a "warning" event's text (from the model's diagnose)


#: training log records passed to ``model.diagnose``
HISTORY = 20


def _freeze_other_phases(phases: dict[str, Phase], active: str | None) -> None:
    """Only the active phase's parameters take gradients (all do again when ``active`` is None)."""
    if len(phases) == 1:
        return
    for name, phase in phases.items():
        for p in phase.params:
            p.requires_grad_(active is None or name == active)


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def _isolated_rng(seed: int, device: torch.device):
    """Evaluation and previews draw from their own seeded RNG, leaving training's stream untouched."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint (they will be written again)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    write_text(path, "".join(line + "\n" for line in kept))


def fit(
    model: GenerativeModel,
    config: TrainConfig,
    *,
    train_data: Items,
    val_data: Items | None,
    run_dir: Path,
    device: torch.device,
    resume: bool = False,
    on_event: Callable[[Event], None] | None = None,
    on_sample: Callable[[GenerativeModel, int], None] | None = None,
    world: World | None = None,
) -> TrainState:
    """Train ``model`` in place on tensors already scaled to its data range; see the module doc.

    ``train_data``/``val_data`` are :class:`~genlab.training.items.Items` (images, or windows of a
    token stream) already scaled to the model's data range. Checkpoints go to ``run_dir``;
    with ``resume`` the latest one there is loaded first. ``on_sample(model, step)`` is called at
    ``sample_every`` and at the end with the EMA weights swapped in when EMA is on.

    Under ``torchrun`` (see :mod:`genlab.training.distributed`) each process trains on its slice of
    every batch with gradients averaged across processes; only process 0 writes or reports anything.
    """
    w = world or distributed.world()
    on_event = (on_event or (lambda event: None)) if w.is_main else (lambda event: None)
    micro_size = config.batch_size // config.grad_accum
    if micro_size % w.size:
        raise ConfigError(
            f"batch_size/grad_accum = {micro_size} must divide by the {w.size} processes; change batch_size."
        )
    model.to(device).train()
    stream = BatchStream(train_data.to(device), micro_size, config.seed, shard=w)
    val_data = None if val_data is None else val_data.to(device)  # once, not at every evaluation
    phases = model.phases()
    optimizers = {
        name: torch.optim.AdamW(phase.params, lr=config.lr * phase.lr_scale, betas=(config.beta1, config.beta2),
                                weight_decay=config.weight_decay)
        for name, phase in phases.items()
    }  # fmt: skip
    ema = EMA(model, config.ema_decay) if config.ema_decay > 0 else None
    state = TrainState()
    torch.manual_seed(config.seed + w.rank)  # model noise (VAE ε, dropout) differs between data shards
    metrics_path = run_dir / "metrics.jsonl"
    checkpoints = list_checkpoints(run_dir) if resume else []
    if checkpoints:
        ckpt = load_checkpoint(checkpoints[-1], device=device)
        load_state_into(model, ckpt.model, ckpt.path)
        for name, opt in optimizers.items():
            opt.load_state_dict(ckpt.optimizers[name])
        if ema is not None and ckpt.ema is not None:
            ema.load_state_dict(ckpt.ema, ckpt.state["ema_updates"])
        _set_rng_state(ckpt.rng, device)  # process 0's stream; the others restart theirs from (seed, rank, step)
        if not w.is_main:
            torch.manual_seed(config.seed + w.rank + 1_000_003 * ckpt.state["step"])
        state = TrainState(**{k: ckpt.state[k] for k in TrainState.__dataclass_fields__ if k in ckpt.state})
        if w.is_main:
            _truncate_metrics(metrics_path, state.step)
        log.info("resumed from %s at step %d", ckpt.path, state.step)
    distributed.broadcast_parameters(model, w)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    if config.precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        message = ("precision=bf16 on a CPU without native bf16 (AVX-512 BF16 or AMX): PyTorch emulates it and "
                   "training runs several times slower than fp32; use precision=fp32 here.")  # fmt: skip
        log.warning(message)
        on_event(Event("warning", state.step, config.steps, {}, state.elapsed_s, message=message))

    saved_step = -1

    def checkpoint() -> None:
        nonlocal saved_step
        if not w.is_main:
            return
        saved_step = state.step
        save_checkpoint(
            run_dir, model=model, ema=None if ema is None else ema.state_dict(), optimizers=optimizers,
            rng=_rng_state(device), keep=config.keep_checkpoints,
            state={**state.__dict__, "ema_updates": 0 if ema is None else ema.num_updates},
        )  # fmt: skip
        _plot_losses(run_dir)
        on_event(Event("checkpoint", state.step, config.steps, {}, state.elapsed_s))

    def evaluate() -> dict[str, float]:
        if val_data is None or len(val_data) == 0 or not w.is_main:
            return {}
        model.eval()
        sums: dict[str, float] = {}
        count = 0
        with torch.no_grad(), _isolated_rng(config.seed, device), autocast:
            for batch in eval_batches(val_data, stream.batch_size, config.eval_batches):
                for name in phases:
                    for k, v in model.loss(batch, phase=name).items().items():
                        key = k if len(phases) == 1 else f"{name}_{k}"
                        sums[key] = sums.get(key, 0.0) + v * len(batch)
                count += len(batch)
        model.train()
        means = {k: v / count for k, v in sums.items()}
        return {**means, **val_data.summarize(means)}

    def preview() -> None:
        if on_sample is None or not w.is_main:
            return
        model.eval()
        with _isolated_rng(config.seed, device):
            if ema is None:
                on_sample(model, state.step)
            else:
                backup = {k: v.clone() for k, v in model.state_dict().items()}
                ema.copy_to(model)
                on_sample(model, state.step)
                model.load_state_dict(backup)
        model.train()

    running: dict[str, Any] = {}

    def _phase_step(name: str, phase: Phase, opt: torch.optim.Optimizer, micro: list[Batch], lr: float,
                    *, scale: float) -> None:  # fmt: skip
        """Accumulate gradients over the micro-batches → average across processes → clip → step."""
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        bad_value = None
        for batch in micro:
            with autocast:
                loss = model.loss(batch, phase=name)
            if not torch.isfinite(loss.total):
                bad_value = float(loss.total.detach())
                break
            (loss.total / config.grad_accum).backward()
            for k, v in loss.tensors().items():  # summed on the device; floats only when logging
                key = k if len(phases) == 1 else f"{name}_{k}"
                running[key] = running.get(key, 0.0) + v * (scale / config.grad_accum)
        # one all-reduce averages the gradients and tells every process if any loss went bad
        if distributed.average_gradients(phase.params, w, flag=bad_value is not None):
            last = list_checkpoints(run_dir)
            if last:
                kept = f"the last good checkpoint ({last[-1].name}) is kept: continue with --resume and a lower"
            else:
                kept = "no checkpoint was written: train again with a lower"
            value = bad_value if bad_value is not None else "non-finite in another process"
            raise TrainingError(
                f"the {name} loss became {value} at step {state.step}; {kept} lr (now {config.lr:g}) "
                f"or grad_clip (now {config.grad_clip:g})."
            )
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(phase.params, config.grad_clip)
        opt.step()

    on_event(Event("start", state.step, config.steps, {}, state.elapsed_s))
    history: list[dict[str, float]] = []  # recent training log records, for model.diagnose
    running_n = 0
    items_since, time_since = 0, time.perf_counter()
    budget_s = None if config.max_minutes is None else config.max_minutes * 60
    wall_start, elapsed_before = time.perf_counter(), state.elapsed_s  # elapsed_s is wall time, resumes add up

    def finished() -> bool:
        done = (config.steps is not None and state.step >= config.steps) or (
            budget_s is not None and state.elapsed_s >= budget_s
        )
        if budget_s is not None:  # clocks differ between processes: process 0 decides for all
            done = distributed.agree(done, w)
        return done

    done = finished()
    while not done:
        progress = 0.0 if config.steps is None else state.step / config.steps
        if budget_s is not None:
            progress = max(progress, state.elapsed_s / budget_s)
        lr = learning_rate(config, state.step, progress)
        micro = [stream.batch(state.microbatch + i) for i in range(config.grad_accum)]
        state.microbatch += config.grad_accum
        for name, phase in phases.items():
            _freeze_other_phases(phases, name)
            for repeat in range(phase.repeats):
                if repeat:  # a repeated phase (a WGAN critic) sees a fresh batch each time; the next phase the last
                    micro = [stream.batch(state.microbatch + i) for i in range(config.grad_accum)]
                    state.microbatch += config.grad_accum
                _phase_step(name, phase, optimizers[name], micro, lr * phase.lr_scale, scale=1 / phase.repeats)
        _freeze_other_phases(phases, None)
        running_n += 1
        if ema is not None:
            ema.update(model)
        state.step += 1
        state.elapsed_s = elapsed_before + time.perf_counter() - wall_start
        items_since += sum(len(b) for b in micro)
        done = finished()
        if config.log_every and (state.step % config.log_every == 0 or done):
            now = time.perf_counter()
            state.last_metrics = {k: float(v) / running_n for k, v in running.items()}
            throughput = items_since / max(now - time_since, 1e-9)
            record = {"step": state.step, "split": "train", **state.last_metrics, "lr": lr,
                      "items_per_s": throughput, "elapsed_s": state.elapsed_s}  # fmt: skip
            if w.is_main:
                _append_jsonl(metrics_path, record)
            on_event(Event("log", state.step, config.steps, record, state.elapsed_s))
            history = [*history[-(HISTORY - 1) :], {"step": state.step, **state.last_metrics}]
            warning = model.diagnose(history)
            if warning:
                log.warning("step %d: %s", state.step, warning)
                on_event(Event("warning", state.step, config.steps, {}, state.elapsed_s, message=warning))
            running, running_n, items_since, time_since = {}, 0, 0, now
        if (config.eval_every and state.step % config.eval_every == 0) or done:
            state.last_val = evaluate()
            if state.last_val:
                _append_jsonl(metrics_path, {"step": state.step, "split": "val", **state.last_val})
                on_event(Event("eval", state.step, config.steps, state.last_val, state.elapsed_s))
        if config.sample_every and state.step % config.sample_every == 0 and not done:
            preview()
        if (config.checkpoint_every and state.step % config.checkpoint_every == 0) or done:
            checkpoint()
    if saved_step != state.step:
        checkpoint()  # e.g. resuming a run that had already finished
    preview()
    on_event(Event("end", state.step, config.steps, {**state.last_metrics, **state.last_val}, state.elapsed_s))
    return state


def _plot_losses(run_dir: Path) -> None:
    """loss.png: training and validation loss against step, from metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genlab.io import atomic_path

    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    keys = sorted({k for r in rows for k in r if k == "loss" or k.endswith("_loss")})  # a GAN logs one per phase
    for split, style in (("train", "-"), ("val", "o-")):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if r["split"] == split and key in r]
            if pts:
                label = split if key == "loss" else f"{split} {key.removesuffix('_loss')}"
                ax.plot(*zip(*pts, strict=False), style, label=label, markersize=3)
    if all(r.get(k, 1.0) > 0 for r in rows for k in keys):
        ax.set_yscale("log")  # the first steps' loss would otherwise flatten the rest of the curve
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(run_dir / "loss.png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
