"""Data-parallel training: two gloo processes on the CPU follow the one-process trajectory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

import genlab
from genlab.training.distributed import World, average_gradients

OVERRIDES = ["steps=6", "batch_size=32", "warmup_steps=0", "checkpoint_every=3", "eval_every=3", "log_every=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKER = """
import sys, torch, genlab
torch.set_num_threads(1)
genlab.train("ae-tiny", out=sys.argv[1], overrides=sys.argv[2:], device="cpu")
torch.distributed.destroy_process_group()
"""


def test_two_processes_match_one(tmp_path: Path):
    single = genlab.train("ae-tiny", out=tmp_path / "single", overrides=OVERRIDES, device="cpu")
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / "ddp"), *OVERRIDES],
            env={
                **os.environ,
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
                "WORLD_SIZE": "2",
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
            },  # what torchrun sets
            stderr=subprocess.PIPE,
        )
        for rank in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
    a, b = load_file(str(single / "model.safetensors")), load_file(str(tmp_path / "ddp" / "model.safetensors"))
    for key in a:  # the autoencoder's loss is deterministic: the mean of two half-batch means is the batch mean
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    assert genlab.info(tmp_path / "ddp")["steps_trained"] == 6  # process 0 wrote the run


def test_average_gradients_is_identity_alone():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    assert average_gradients([p], World()) is False
    assert average_gradients([p], World(), flag=True) is True
    assert torch.equal(p.grad, torch.full((3,), 2.0))
