"""Run directories and checkpoints that are safe to load and safe to interrupt.

A run directory holds::

    config.json                 family, recipe, model + training config, data provenance (JSON)
    model.safetensors           the latest weights (ema.safetensors too when EMA is on)
    checkpoints/step-00000500/  everything needed to resume exactly:
        model.safetensors  ema.safetensors  trainer.safetensors (optimiser moments, RNG states)
        trainer.json       (step, data position, elapsed time, optimiser hyper-parameters)
    metrics.jsonl  loss.png  samples/

Nothing is pickled: tensors go to safetensors, everything else to JSON. Every file is written to a
temporary name and renamed, and a checkpoint directory is built under a temporary name and renamed
whole, so a process killed at any instant leaves either the old checkpoint or the new one.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genlab import __version__
from genlab.config import from_dict
from genlab.errors import CheckpointError, GenlabError
from genlab.io import atomic_path, read_json, write_json

RUN_FORMAT = "genlab-run"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


# --- config.json -----------------------------------------------------------------------------
def write_run_config(run_dir: Path, record: dict[str, Any]) -> None:
    write_json(run_dir / "config.json", {"format": RUN_FORMAT, "format_version": FORMAT_VERSION,
                                         "genlab_version": __version__, **record})  # fmt: skip


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config.json, checked to be a genlab run of a format this version reads."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise CheckpointError(
            f"run directory {run_dir} does not exist; train one with `genlab train RECIPE --out DIR`."
        )
    if not path.exists():
        raise CheckpointError(f"{run_dir} is not a genlab run directory (it has no config.json).")
    try:
        record = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt ({exc}); the run cannot be loaded.") from None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        raise CheckpointError(f'{path} is not a genlab run config (no "format": "{RUN_FORMAT}").')
    if record.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{run_dir} was written by a newer genlab ({record.get('genlab_version')}); upgrade genlab."
        )
    return record


# --- weights ---------------------------------------------------------------------------------
def save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomic safetensors write (contiguous CPU copies; shared storage is copied apart)."""
    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), metadata=metadata)


def load_tensors(path: Path) -> dict[str, Tensor]:
    if not path.exists():
        raise CheckpointError(f"{path} is missing; the run was not saved completely. Train or resume it again.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is corrupt or not a safetensors file ({exc}).") from None


def load_state_into(module: nn.Module, state: dict[str, Tensor], source: Path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or extra or wrong:
        detail = (
            f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra else f"wrong shape {wrong[:3]}"
        )
        raise CheckpointError(
            f"weights in {source} do not fit this model ({detail}); the file is corrupt or from another run."
        )
    module.load_state_dict(state)


# --- optimiser state ---------------------------------------------------------------------------
def _flatten_optimizer(name: str, state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{name}.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(name: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim.{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, field = key[len(prefix) :].split(".", 1)
            state.setdefault(int(idx), {})[field] = value
    for idx, entry in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# --- checkpoints -------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """A loaded training checkpoint."""

    path: Path
    model: dict[str, Tensor]
    ema: dict[str, Tensor] | None
    optimizers: dict[str, dict[str, Any]]
    rng: dict[str, Tensor]
    state: dict[str, Any]  # step, microbatch, elapsed_s, ema_updates, ...


def save_checkpoint(
    run_dir: Path,
    *,
    model: nn.Module,
    ema: dict[str, Tensor] | None,
    optimizers: dict[str, torch.optim.Optimizer],
    rng: dict[str, Tensor],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write a complete checkpoint directory atomically, refresh the top-level weights, prune old ones."""
    root = run_dir / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a process killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step-{state['step']:08d}"
    tmp = root / f".tmp-{final.name}"
    tmp.mkdir()
    meta = {"family": getattr(model, "family", ""), "step": str(state["step"])}
    save_tensors(tmp / "model.safetensors", model.state_dict(), meta)
    if ema is not None:
        save_tensors(tmp / "ema.safetensors", ema, meta)
    trainer_tensors: dict[str, Tensor] = {f"rng.{k}": v for k, v in rng.items()}
    optim_meta = {}
    for name, opt in optimizers.items():
        tensors, optim_meta[name] = _flatten_optimizer(name, opt.state_dict())
        trainer_tensors.update(tensors)
    save_tensors(tmp / "trainer.safetensors", trainer_tensors)
    write_json(tmp / "trainer.json", {**state, "optimizers": optim_meta})
    if final.exists():  # re-saving the same step (e.g. the final save right after a periodic one)
        shutil.rmtree(final)
    tmp.rename(final)
    for name in ("model.safetensors", "ema.safetensors") if ema is not None else ("model.safetensors",):
        with atomic_path(run_dir / name) as weights:  # the weights users load
            shutil.copyfile(final / name, weights)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))


def load_checkpoint(path: Path, *, device: torch.device | str = "cpu") -> Checkpoint:
    try:
        state = read_json(path / "trainer.json")
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt ({exc}); delete it to resume from an earlier one."
        ) from None
    trainer = load_tensors(path / "trainer.safetensors")
    optim_meta = state.pop("optimizers")
    on_device = {k: v.to(device) for k, v in trainer.items() if k.startswith("optim.")}
    optimizers = {name: _unflatten_optimizer(name, on_device, meta) for name, meta in optim_meta.items()}
    rng = {k[len("rng.") :]: v for k, v in trainer.items() if k.startswith("rng.")}  # stay on the CPU
    ema_path = path / "ema.safetensors"
    return Checkpoint(
        path=path,
        model=load_tensors(path / "model.safetensors"),
        ema=load_tensors(ema_path) if ema_path.exists() else None,
        optimizers=optimizers,
        rng=rng,
        state=state,
    )


# --- loading a trained model -----------------------------------------------------------------
def build_model(record: dict[str, Any]) -> nn.Module:
    """The (untrained) model described by a run config record."""
    from genlab import registry

    try:
        fam = registry.family(record["family"])
        config = from_dict(fam.config_class, record["model"])
    except KeyError as exc:
        raise CheckpointError(f"run config lacks or mis-names {exc}; it was not written by this genlab.") from None
    except GenlabError as exc:
        raise CheckpointError(f"run config does not describe a valid model: {exc}") from None
    return fam.model_class(config)


def last_metrics(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The last row of each split ("train", "val") in the run's metrics.jsonl; {} before any."""
    path = run_dir / "metrics.jsonl"
    last: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                last[row["split"]] = row
    return last


def weights_path(run_dir: Path, *, use_ema: bool = True) -> Path:
    """The weights file a trained run is loaded from: the EMA weights when kept (and wanted)."""
    path = run_dir / "ema.safetensors"
    return path if use_ema and path.exists() else run_dir / "model.safetensors"


def load_model(run_dir: str | Path, *, device: str | torch.device = "cpu", use_ema: bool = True) -> nn.Module:
    """Load a trained model from a run directory, in eval mode on ``device``.

    The EMA weights are used when the run kept them and ``use_ema`` is true.
    """
    run_dir = Path(run_dir)
    record = read_run_config(run_dir)
    model = build_model(record)
    path = weights_path(run_dir, use_ema=use_ema)
    load_state_into(model, load_tensors(path), path)
    model.run_record = record  # provenance: data shape/range, recipe, training config
    if getattr(model, "modality", "image") == "tokens":
        from genlab.data.tokenizers import load_tokenizer

        model.tokenizer = load_tokenizer(run_dir)
    return model.to(device).eval()
