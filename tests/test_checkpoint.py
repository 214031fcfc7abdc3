"""Safe, atomic checkpoints: safetensors + JSON only, optimiser state round trip, pruning."""

from __future__ import annotations

import json

import pytest
import torch

from genlab.checkpoint import (
    _flatten_optimizer,
    _unflatten_optimizer,
    list_checkpoints,
    load_checkpoint,
    load_model,
    read_run_config,
    save_checkpoint,
)
from genlab.errors import CheckpointError


def _trained_optimizer():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
    return model, opt


def test_optimizer_state_round_trip_is_exact():
    model, opt = _trained_optimizer()
    tensors, meta = _flatten_optimizer("model", opt.state_dict())
    meta = json.loads(json.dumps(meta))  # what is written to trainer.json
    restored = torch.optim.AdamW(model.parameters(), lr=1.0)
    restored.load_state_dict(_unflatten_optimizer("model", tensors, meta))
    a, b = opt.state_dict(), restored.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for idx in a["state"]:
        for key, value in a["state"][idx].items():
            assert torch.equal(value, b["state"][idx][key])


def test_save_checkpoint_is_complete_and_pruned(tmp_path):
    model, opt = _trained_optimizer()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, model=model, ema=None, optimizers={"model": opt},
                        rng={"cpu": torch.get_rng_state()}, state={"step": step}, keep=2)  # fmt: skip
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    ckpt = load_checkpoint(list_checkpoints(tmp_path)[-1])
    assert ckpt.state["step"] == 3 and torch.equal(ckpt.rng["cpu"], torch.get_rng_state())
    assert (tmp_path / "model.safetensors").exists()
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_interrupted_checkpoint_directory_is_ignored_and_cleaned(tmp_path):
    model, opt = _trained_optimizer()
    (tmp_path / "checkpoints" / ".tmp-step-00000009").mkdir(parents=True)  # a write killed midway
    assert list_checkpoints(tmp_path) == []
    save_checkpoint(tmp_path, model=model, ema=None, optimizers={"model": opt}, rng={}, state={"step": 1})
    assert not (tmp_path / "checkpoints" / ".tmp-step-00000009").exists()


def test_run_config_checks(tmp_path, vae_run):
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        read_run_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model": {}}))
    with pytest.raises(CheckpointError, match="not a genlab run config"):
        read_run_config(tmp_path)
    record = read_run_config(vae_run)
    record["format_version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="newer genlab"):
        read_run_config(tmp_path)


def test_weights_from_another_model_are_refused(tmp_path, vae_run, ae_run):
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(vae_run, mixed)
    shutil.copy(ae_run / "model.safetensors", mixed / "model.safetensors")
    with pytest.raises(CheckpointError, match="do not fit this model"):
        load_model(mixed)


def test_pickles_are_never_loaded(tmp_path, vae_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(vae_run, run)
    torch.save({"x": torch.ones(1)}, run / "model.safetensors")  # a pickle under a safetensors name
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(run)
