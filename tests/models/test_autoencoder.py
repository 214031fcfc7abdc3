"""genlab.models.autoencoder: shapes, the conv size check, denoising corruption, training signal."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from genlab.errors import ConfigError, GenlabError
from genlab.models.autoencoder import Autoencoder, AutoencoderConfig
from genlab.models.base import Batch

TINY = {
    "mlp-28": AutoencoderConfig(latent_dim=4, hidden_dims=(16,)),
    "mlp-8": AutoencoderConfig(height=8, width=8, latent_dim=3, hidden_dims=(16, 8), activation="silu"),
    "conv-28": AutoencoderConfig(latent_dim=4, architecture="conv", conv_channels=(4, 8)),
    "conv-8": AutoencoderConfig(channels=3, height=8, width=8, latent_dim=2, architecture="conv", conv_channels=(4, 8),
                                hidden_dims=(8,), reconstruction="mse"),
}  # fmt: skip


def _images(config: AutoencoderConfig, n: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, config.channels, config.height, config.width, generator=g)


def _model(config: AutoencoderConfig, seed: int = 0) -> Autoencoder:
    torch.manual_seed(seed)
    return Autoencoder(config)


@pytest.mark.parametrize("name", list(TINY))
def test_shapes_and_ranges(name):
    config = TINY[name]
    model = _model(config)
    x = _images(config)
    z = model.encode(x)
    assert z.shape == (5, config.latent_dim)
    decoded = model.decode(z)
    assert decoded.shape == x.shape and decoded.min() >= 0 and decoded.max() <= 1
    assert model.reconstruct(x).shape == x.shape
    loss = model.loss(Batch(x))
    assert loss.total.shape == () and torch.isfinite(loss.total)
    assert set(loss.items()) == {"loss", "mse"}
    score = model.anomaly_score(x)
    assert score.shape == (5,) and (score >= 0).all()


@pytest.mark.parametrize("name", list(TINY))
def test_loss_backpropagates_to_every_parameter(name):
    model = _model(TINY[name])
    model.loss(Batch(_images(TINY[name]))).total.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_anomaly_score_is_mean_squared_reconstruction_error():
    model = _model(TINY["mlp-8"])
    x = _images(TINY["mlp-8"])
    expected = (model.reconstruct(x) - x).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(model.anomaly_score(x), expected)


def test_mse_loss_is_the_mse_term():
    model = _model(TINY["conv-8"])
    loss = model.loss(Batch(_images(TINY["conv-8"])))
    assert loss.items()["loss"] == pytest.approx(loss.items()["mse"])


def test_bce_loss_exceeds_mse_and_is_cross_entropy():
    config = TINY["mlp-8"]
    model = _model(config)
    x = (_images(config) > 0.5).float()  # binary targets: BCE is the Bernoulli NLL per pixel
    loss = model.loss(Batch(x))
    p = model.reconstruct(x)
    expected = -(x * p.log() + (1 - x) * (1 - p).log()).mean()
    assert loss.items()["loss"] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(("height", "stages", "factor"), [(30, 2, 4), (28, 3, 8), (10, 2, 4), (3, 2, 4)])
def test_conv_size_check_says_how_to_fix(height, stages, factor):
    channels = tuple(4 * (i + 1) for i in range(stages))
    with pytest.raises(ConfigError, match=rf"divisible by {factor}, got {height}×{height}.*conv_channels") as info:
        AutoencoderConfig(height=height, width=height, architecture="conv", conv_channels=channels)
    suggest = int(re.search(r"--image-size (\d+)", str(info.value)).group(1))
    assert suggest >= factor and suggest % factor == 0 and abs(suggest - height) <= factor // 2 + 1
    AutoencoderConfig(height=suggest, width=suggest, architecture="conv", conv_channels=channels)  # the fix works
    AutoencoderConfig(height=height, width=height, architecture="mlp", conv_channels=channels)  # mlp: any size


def test_conv_too_small_and_no_stages():
    with pytest.raises(ConfigError, match="divisible by 4, got 2×8"):
        AutoencoderConfig(height=2, width=8, architecture="conv", conv_channels=(4, 8))
    with pytest.raises(ConfigError, match=r"at least one entry in conv_channels, e.g. conv_channels=\[32,64\]"):
        AutoencoderConfig(height=8, width=8, architecture="conv", conv_channels=())


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"noise_std": -0.1}, "noise_std=-0.1 must be ≥ 0"),
        ({"mask_prob": 1.0}, r"mask_prob=1.0 must be in \[0, 1\)"),
        ({"latent_dim": 0}, "latent_dim=0 must be at least 1"),
        ({"hidden_dims": (16, 0)}, "positive sizes"),
        ({"reconstruction": "l1"}, "'bce', 'mse'"),
        ({"activation": "tanh"}, "'relu', 'silu', 'gelu', 'leaky_relu'"),
    ],
)
def test_config_range_errors(changes, match):
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(TINY["mlp-8"], **changes)


# --- denoising ---------------------------------------------------------------------------------
def test_plain_autoencoder_does_not_corrupt():
    config = TINY["mlp-8"]
    model = _model(config)
    x = _images(config)
    assert torch.equal(model.corrupt(x), x)
    batch = Batch(x)
    assert torch.equal(model.loss(batch).total, model.loss(batch).total)  # deterministic: no noise anywhere


def test_gaussian_noise_corrupts_inputs_within_range():
    config = dataclasses.replace(TINY["mlp-8"], noise_std=0.3)
    model = _model(config)
    x = _images(config, n=64)
    noisy = model.corrupt(x)
    assert noisy.shape == x.shape and noisy.min() >= 0 and noisy.max() <= 1
    assert (noisy - x).abs().mean() > 0.1
    batch = Batch(x)
    assert not torch.equal(model.loss(batch).total, model.loss(batch).total)


def test_masking_noise_zeroes_about_mask_prob_of_pixels():
    config = dataclasses.replace(TINY["mlp-8"], mask_prob=0.25)
    model = _model(config)
    x = _images(config, n=64) * 0.9 + 0.05  # no pixel is 0 before masking
    masked = model.corrupt(x)
    zeroed = masked == 0
    assert torch.equal(masked[~zeroed], x[~zeroed])
    assert 0.2 < zeroed.float().mean() < 0.3


def test_denoising_model_encodes_clean_inputs():
    config = dataclasses.replace(TINY["mlp-8"], noise_std=0.5, mask_prob=0.5)
    model = _model(config)
    x = _images(config)
    assert torch.equal(model.encode(x), model.encode(x))
    assert torch.equal(model.reconstruct(x), model.reconstruct(x))


# --- contract ----------------------------------------------------------------------------------
def test_autoencoder_cannot_sample():
    model = _model(TINY["mlp-8"])
    assert not model.can_sample and model.has_latent and model.num_classes == 0
    with pytest.raises(GenlabError, match="no prior to sample from"):
        model.sample(3)


def test_optimizer_steps_lower_the_loss():
    config = dataclasses.replace(TINY["mlp-8"], latent_dim=4)
    model = _model(config)
    batch = Batch((_images(config, n=16) > 0.5).float())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model.loss(batch).items()["loss"]
    for _ in range(30):
        optimizer.zero_grad()
        model.loss(batch).total.backward()
        optimizer.step()
    after = model.loss(batch).items()["loss"]
    assert after < 0.9 * before
