"""The one trainer: schedule, loss going down, accumulation, EMA, bf16, NaN handling, exact resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import genlab
from genlab.checkpoint import list_checkpoints
from genlab.errors import ConfigError, TrainingError
from genlab.models.base import Batch, GenerativeModel, Loss
from genlab.training import EMA, TrainConfig, fit, learning_rate
from genlab.training.items import TensorItems


def weights(run_dir: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / name))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# --- schedule ---------------------------------------------------------------------------------
def test_learning_rate_warmup_then_cosine_to_floor():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(cfg, 0, 0.0) == pytest.approx(0.1)
    assert learning_rate(cfg, 9, 0.09) == pytest.approx(1.0)
    assert learning_rate(cfg, 10, 0.0) == pytest.approx(1.0)
    assert learning_rate(cfg, 50, 0.5) == pytest.approx(0.55)
    assert learning_rate(cfg, 100, 1.0) == pytest.approx(0.1)


def test_linear_and_constant_schedules():
    lin = TrainConfig(lr=2.0, warmup_steps=0, lr_schedule="linear", min_lr_ratio=0.0)
    assert learning_rate(lin, 5, 0.25) == pytest.approx(1.5)
    const = TrainConfig(lr=2.0, warmup_steps=0, lr_schedule="constant")
    assert learning_rate(const, 5, 0.9) == 2.0


def test_train_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="grad_accum"):
        TrainConfig(batch_size=30, grad_accum=4)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


# --- training ---------------------------------------------------------------------------------
def test_training_lowers_the_loss_and_writes_the_run(tmp_path):
    run = genlab.train("vae-tiny", out=tmp_path / "run", steps=60, device="cpu")
    rows = read_metrics(run)
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    assert train[-1]["loss"] < train[0]["loss"] * 0.9
    assert val[-1]["loss"] < val[0]["loss"]
    assert {"recon", "kl", "nelbo", "bits_per_dim", "lr", "items_per_s"} <= train[-1].keys()
    for name in ("config.json", "model.safetensors", "loss.png", "metrics.jsonl"):
        assert (run / name).exists(), name
    assert [p.name for p in list_checkpoints(run)] == ["step-00000050", "step-00000060"]  # keep_checkpoints=2
    assert list((run / "samples").glob("*.png"))
    assert not list(run.rglob("*.tmp")) and not list(run.rglob(".tmp-*"))


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    # the autoencoder's loss is deterministic, so 2 × 16 accumulated equals 1 × 32 up to rounding
    common = ["steps=3", "batch_size=32", "warmup_steps=0", "grad_clip=0"]
    a = genlab.train("ae-tiny", out=tmp_path / "a", overrides=[*common, "grad_accum=1"], device="cpu")
    b = genlab.train("ae-tiny", out=tmp_path / "b", overrides=[*common, "grad_accum=2"], device="cpu")
    wa, wb = weights(a), weights(b)
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-6)


def test_ema_weights_are_saved_and_used_by_load(tmp_path):
    run = genlab.train("vae-tiny", out=tmp_path / "run", overrides=["ema_decay=0.9"], steps=20, device="cpu")
    ema, raw = weights(run, "ema.safetensors"), weights(run)
    assert any(not torch.equal(ema[k], raw[k]) for k in raw)
    loaded = genlab.load(run)
    torch.testing.assert_close(loaded.state_dict()["decoder.head.0.weight"], ema["decoder.head.0.weight"])
    raw_model = genlab.load(run, use_ema=False)
    assert torch.equal(raw_model.state_dict()["decoder.head.0.weight"], raw["decoder.head.0.weight"])


def test_ema_update_follows_the_formula():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    before = ema.shadow["weight"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # first update: decay = min(0.5, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.shadow["weight"], d * before + (1 - d) * model.weight)


def test_bf16_autocast_trains(tmp_path):
    run = genlab.train("vae-tiny", out=tmp_path / "run", overrides=["precision=bf16"], steps=20, device="cpu")
    assert math.isfinite(read_metrics(run)[-1]["loss"])


def test_time_budget_stops_training(tmp_path):
    run = genlab.train("vae-tiny", out=tmp_path / "run", minutes=0.02, device="cpu")  # 1.2 s
    info = genlab.info(run)
    assert info["steps_trained"] > 0 and info["steps_planned"] is None
    assert info["last_train"]["elapsed_s"] >= 1.2


# --- NaN handling -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Cfg:
    nan_after: int = 5


class _Exploding(GenerativeModel):
    """Loss becomes NaN after ``nan_after`` calls."""

    def __init__(self, config):
        super().__init__(config)
        self.w = torch.nn.Parameter(torch.ones(3))
        self.calls = 0

    def loss(self, batch: Batch, *, phase: str = "model") -> Loss:
        self.calls += 1
        bad = float("nan") if self.calls > self.config.nan_after else 0.0
        return Loss((self.w * batch.x.mean()).sum() + bad)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    x = torch.rand(64, 1, 2, 2)
    cfg = TrainConfig(steps=20, batch_size=8, checkpoint_every=2, eval_every=0, log_every=1)
    expected = r"loss became nan at step 5; the last good checkpoint \(step-00000004\) is kept: continue with --resume"
    with pytest.raises(TrainingError, match=expected):
        fit(
            _Exploding(_Cfg()),
            cfg,
            train_data=TensorItems(x),
            val_data=None,
            run_dir=tmp_path,
            device=torch.device("cpu"),
        )
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004"]
    assert torch.isfinite(load_file(str(tmp_path / "model.safetensors"))["w"]).all()


# --- exact resume -----------------------------------------------------------------------------
class _Interrupt(Exception):
    pass


def test_resume_after_interrupt_gives_identical_weights(tmp_path):
    overrides = ["ema_decay=0.9", "checkpoint_every=10"]
    full = genlab.train("vae-tiny", out=tmp_path / "full", overrides=overrides, device="cpu")

    def stop_at_step_25(event):
        if event.kind == "log" and event.step == 25:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        genlab.train("vae-tiny", out=tmp_path / "cut", overrides=overrides, device="cpu", on_event=stop_at_step_25)
    assert list_checkpoints(tmp_path / "cut")[-1].name == "step-00000020"
    resumed = genlab.train("vae-tiny", out=tmp_path / "cut", resume=True, device="cpu")
    assert_same_weights(weights(full), weights(resumed))
    assert_same_weights(weights(full, "ema.safetensors"), weights(resumed, "ema.safetensors"))
    steps = [r["step"] for r in read_metrics(resumed) if r["split"] == "train"]
    assert steps == sorted(set(steps))  # lines written after the checkpoint were not duplicated


def test_resume_after_kill_9_gives_identical_weights(tmp_path):
    """A training process killed with SIGKILL at an arbitrary point resumes to the same weights."""
    args = ["vae-tiny", "steps=300", "checkpoint_every=30", "log_every=30", "eval_every=100", "batch_size=16"]
    code = (
        "import sys, torch; torch.set_num_threads(1); from genlab.cli import main; "
        "sys.argv = ['genlab'] + sys.argv[1:]; main()"
    )
    cmd = [sys.executable, "-c", code, "train", *args, "--device", "cpu"]
    subprocess.run([*cmd, "--out", str(tmp_path / "full")], check=True, capture_output=True)

    cut = tmp_path / "cut"
    proc = subprocess.Popen([*cmd, "--out", str(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list_checkpoints(cut) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    time.sleep(0.05)  # land somewhere between checkpoints, possibly mid-write
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    done = list_checkpoints(cut)
    assert done and done[-1].name != "step-00000300"
    subprocess.run([*cmd, "--out", str(cut), "--resume"], check=True, capture_output=True)
    assert_same_weights(weights(tmp_path / "full"), weights(cut))


# --- several phases (the GAN shape of the loop) -----------------------------------------------
class TwoPhase(GenerativeModel):
    """A toy with two optimisers: 'critic' (stepped ``repeats`` times, lr × 0.5) then 'actor'.

    Each loss touches both parameters, so gradients leaking into the frozen phase would show."""

    family = "two-phase-test"

    def __init__(self, repeats: int = 3) -> None:
        super().__init__(None)
        self.critic = torch.nn.Parameter(torch.zeros(()))
        self.actor = torch.nn.Parameter(torch.zeros(()))
        self.repeats = repeats
        self.seen: list[tuple[str, bool, bool, float]] = []  # phase, critic/actor requires_grad, batch sum

    def phases(self):
        from genlab.models.base import Phase

        return {"critic": Phase([self.critic], repeats=self.repeats, lr_scale=0.5), "actor": Phase([self.actor])}

    def loss(self, batch: Batch, *, phase: str = "model") -> Loss:
        if torch.is_grad_enabled():
            self.seen.append((phase, self.critic.requires_grad, self.actor.requires_grad, float(batch.x.sum())))
        value = (self.critic * self.actor - 1) ** 2 + (self.critic if phase == "critic" else self.actor) ** 2
        return Loss(value, {"critic_value": self.critic.detach()})

    def diagnose(self, history):
        return "critic too strong" if history[-1]["critic_loss"] > 100 else None


def test_phases_repeat_with_fresh_batches_and_freeze_each_other(tmp_path):
    model = TwoPhase(repeats=3)
    x = torch.arange(40.0).reshape(40, 1, 1, 1)
    config = TrainConfig(steps=2, batch_size=4, lr=0.1, warmup_steps=0, lr_schedule="constant", log_every=1,
                         eval_every=0, sample_every=0, checkpoint_every=0, val_fraction=0.0)  # fmt: skip
    fit(model, config, train_data=TensorItems(x), val_data=None, run_dir=tmp_path, device=torch.device("cpu"))
    phases = [s[0] for s in model.seen]
    assert phases == ["critic", "critic", "critic", "actor"] * 2
    for phase, critic_grad, actor_grad, _ in model.seen:
        assert (critic_grad, actor_grad) == ((True, False) if phase == "critic" else (False, True))
    sums = [s[3] for s in model.seen]
    assert len(set(sums[0:3])) == 3 and sums[3] == sums[2]  # each critic repeat its own batch; the actor the last
    assert model.critic.requires_grad and model.actor.requires_grad  # unfrozen after training
    record = read_metrics(tmp_path)[0]
    assert {"critic_loss", "actor_loss", "critic_critic_value"} <= record.keys()


def test_phase_lr_scale_sets_each_optimisers_rate(tmp_path):
    model = TwoPhase(repeats=1)
    x = torch.ones(8, 1, 1, 1)
    config = TrainConfig(steps=1, batch_size=4, lr=0.1, warmup_steps=0, lr_schedule="constant", grad_clip=0,
                         beta1=0.0, beta2=0.0, log_every=1, eval_every=0, sample_every=0, checkpoint_every=0,
                         val_fraction=0.0)  # fmt: skip
    with torch.no_grad():
        model.critic.fill_(0.5)
        model.actor.fill_(0.5)
    fit(model, config, train_data=TensorItems(x), val_data=None, run_dir=tmp_path, device=torch.device("cpu"))
    # Adam with β = 0 steps by lr · sign(grad) (ε aside): the critic moves half as far as the actor
    # (both gradients are +0.25 at 0.5, 0.5)
    assert model.critic.item() == pytest.approx(0.5 - 0.05, abs=1e-4)
    assert model.actor.item() == pytest.approx(0.5 - 0.1, abs=1e-4)


def test_diagnose_warnings_reach_the_log_and_the_caller(tmp_path, caplog):
    model = TwoPhase(repeats=1)
    with torch.no_grad():
        model.critic.fill_(50.0)
    events = []
    config = TrainConfig(steps=2, batch_size=4, lr=1e-6, warmup_steps=0, log_every=1, eval_every=0, sample_every=0,
                         checkpoint_every=0, val_fraction=0.0)  # fmt: skip
    with caplog.at_level("WARNING"):
        fit(model, config, train_data=TensorItems(torch.ones(8, 1, 1, 1)), val_data=None, run_dir=tmp_path,
            device=torch.device("cpu"), on_event=events.append)  # fmt: skip
    warnings = [e for e in events if e.kind == "warning"]
    assert warnings and warnings[0].message == "critic too strong"
    assert "critic too strong" in caplog.text


def test_bf16_on_a_cpu_without_native_bf16_warns(tmp_path, monkeypatch):
    from genlab.training import trainer

    monkeypatch.setattr(trainer, "cpu_has_fast_bf16", lambda: False)
    events = []
    genlab.train("vae-tiny", out=tmp_path / "run", steps=2, overrides=["precision=bf16"], on_event=events.append)
    warnings = [e.message for e in events if e.kind == "warning"]
    assert warnings and "emulates it" in warnings[0] and "precision=fp32" in warnings[0]
