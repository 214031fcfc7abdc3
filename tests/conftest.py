"""Shared fixtures: tiny trained runs, made once per test session."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GENLAB_CACHE", os.path.join(tempfile.gettempdir(), "genlab-test-cache"))
torch.set_num_threads(1)  # reproducible and fast on the 2-core CI machine


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``genlab ARGS`` in-process through the real entry point → (exit code, stdout, stderr)."""
    from genlab.cli import main

    def run(*args: str | Path) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["genlab", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def vae_run(tmp_path_factory):
    """A tiny VAE trained for 30 steps on digits (seconds)."""
    import genlab

    return genlab.train("vae-tiny", out=tmp_path_factory.mktemp("runs") / "vae", device="cpu")


@pytest.fixture(scope="session")
def ae_run(tmp_path_factory):
    import genlab

    return genlab.train("ae-tiny", out=tmp_path_factory.mktemp("runs") / "ae", device="cpu")


@pytest.fixture(scope="session")
def cvae_run(tmp_path_factory):
    import genlab

    overrides = ["num_classes=10", "steps=20"]
    return genlab.train("vae-tiny", out=tmp_path_factory.mktemp("runs") / "cvae", device="cpu", overrides=overrides)


@pytest.fixture(scope="session")
def ddpm_run(tmp_path_factory):
    """A tiny class-conditional DDPM (8×8 digits, T = 100) trained for 30 steps."""
    import genlab

    return genlab.train("ddpm-tiny", out=tmp_path_factory.mktemp("runs") / "ddpm", device="cpu")


@pytest.fixture(scope="session")
def gpt_run(tmp_path_factory):
    """A tiny character-level GPT (rotary positions, context 32) trained for 30 steps on Shakespeare."""
    import genlab

    return genlab.train("gpt-tiny", out=tmp_path_factory.mktemp("runs") / "gpt", device="cpu")


@pytest.fixture(scope="session")
def lstm_run(tmp_path_factory):
    import genlab

    return genlab.train("lstm-tiny", out=tmp_path_factory.mktemp("runs") / "lstm", device="cpu")
