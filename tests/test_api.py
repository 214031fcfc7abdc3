"""The Python API the CLI calls: load, sample, reconstruct, interpolate, score, info."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import genlab
from genlab.api import save_samples, slerp
from genlab.errors import ConfigError
from genlab.models.vae import VAE


def test_load_returns_eval_model_with_frozen_config(vae_run):
    model = genlab.load(vae_run)
    assert isinstance(model, VAE) and not model.training
    assert model.device == torch.device("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.config.latent_dim = 3


def test_sample_is_uint8_nhwc_and_seeded(vae_run):
    model = genlab.load(vae_run)
    a = genlab.sample(model, 5, seed=7)
    assert a.dtype == np.uint8 and a.shape == (5, 8, 8, 1)
    assert np.array_equal(a, genlab.sample(vae_run, 5, seed=7))
    assert not np.array_equal(a, genlab.sample(model, 5, seed=8))


def test_conditional_sample_follows_labels(cvae_run):
    model = genlab.load(cvae_run)
    assert model.num_classes == 10
    a = genlab.sample(model, 4, seed=0, labels=[1, 2, 3, 4])
    b = genlab.sample(model, 4, seed=0, labels=[1, 2, 3, 5])
    assert np.array_equal(a[:3], b[:3]) and not np.array_equal(a[3], b[3])


def test_save_samples_npz_and_png(tmp_path, vae_run):
    images = genlab.sample(vae_run, 6)
    save_samples(images, tmp_path / "s.npz")
    assert np.array_equal(np.load(tmp_path / "s.npz")["samples"], images)
    save_samples(images, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0
    with pytest.raises(ConfigError, match=r"\.png"):
        save_samples(images, tmp_path / "s.gif2")


def test_reconstruct_and_interpolate_shapes(vae_run):
    originals, recon = genlab.reconstruct(vae_run, 6)
    assert originals.shape == recon.shape == (6, 8, 8, 1)
    walks = genlab.interpolate(vae_run, steps=5, pairs=3)
    assert walks.shape == (15, 8, 8, 1)
    with pytest.raises(ConfigError, match="steps"):
        genlab.interpolate(vae_run, steps=1)


def test_slerp_ends_and_norm():
    a, b = torch.randn(4, 16), torch.randn(4, 16)
    t = torch.tensor([[0.0], [1.0]]).unsqueeze(0)  # (1, 2, 1)
    out = slerp(a[:, None], b[:, None], t)
    torch.testing.assert_close(out[:, 0], a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 1], b, atol=1e-5, rtol=1e-5)
    # for equal-norm ends the path stays on the sphere
    a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    mid = slerp(a_n, b_n, torch.tensor(0.5))
    torch.testing.assert_close(mid.norm(dim=1), torch.ones(4), atol=1e-5, rtol=1e-5)


def test_score_flags_unusual_items(ae_run):
    scores, data = genlab.score(ae_run, "digits")
    assert scores.shape == (len(data),) and (scores >= 0).all()


def test_info_reports_run(vae_run):
    info = genlab.info(vae_run)
    assert info["recipe"] == "vae-tiny" and info["steps_trained"] == 30
    assert info["parameters"] == genlab.load(vae_run).num_parameters()
    assert info["data"]["name"] == "digits" and len(info["data"]["sha256"]) == 64
