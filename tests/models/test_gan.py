"""genlab.models.gan: sizes, the three losses against closed forms, the gradient penalty against a
hand computation, seeded and conditional sampling, the phases, diagnose, and short training runs."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import genlab
from genlab.errors import ConfigError
from genlab.models.base import Batch
from genlab.models.gan import (
    GAN,
    GANConfig,
    conv_stages,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
)

TINY = {
    "bce-28": GANConfig(latent_dim=4, base_channels=4),
    "bce-8": GANConfig(height=8, width=8, latent_dim=4, base_channels=4),
    "wgan-32": GANConfig(channels=3, height=32, width=32, latent_dim=4, base_channels=2, loss="wgan-gp",
                         d_norm="layer", n_critic=3),
    "hinge-sn-8": GANConfig(height=8, width=8, latent_dim=4, base_channels=4, loss="hinge", spectral_norm=True,
                            d_norm="none"),
    "cgan-8": GANConfig(height=8, width=8, latent_dim=4, base_channels=4, loss="hinge", spectral_norm=True,
                        d_norm="none", num_classes=3),
}  # fmt: skip


def _model(config: GANConfig, seed: int = 0) -> GAN:
    torch.manual_seed(seed)
    return GAN(config)


def _batch(config: GANConfig, n: int = 6, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, config.channels, config.height, config.width, generator=g) * 2 - 1
    return Batch(x, torch.arange(n) % config.num_classes if config.num_classes else None)


def _freeze_all_but(model: GAN, phase: str) -> None:
    """What the trainer does during a phase: only that phase's parameters take gradients."""
    for name, p in model.phases().items():
        for param in p.params:
            param.requires_grad_(name == phase)


# --- sizes -------------------------------------------------------------------------------------
SIZES = [((28, 28), 2, (7, 7)), ((8, 8), 2, (2, 2)), ((32, 32), 3, (4, 4)), ((64, 64), 4, (4, 4)),
         ((12, 12), 2, (3, 3)), ((28, 32), 2, (7, 8))]  # fmt: skip


@pytest.mark.parametrize(("size", "stages", "start"), SIZES)
def test_stages_follow_the_image_size(size, stages, start):
    assert conv_stages(*size) == stages
    config = GANConfig(height=size[0], width=size[1], latent_dim=2, base_channels=2)
    model = _model(config)
    assert model.generator.start[1:] == start
    images = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, *size)
    assert model.discriminator(images).shape == (3,)


@pytest.mark.parametrize("name", list(TINY))
def test_shapes_ranges_and_finite_losses(name):
    config = TINY[name]
    model = _model(config)
    batch = _batch(config)
    images = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert images.shape == (5, config.channels, config.height, config.width)
    assert images.min() >= -1 and images.max() <= 1
    expected = {"bce": {"d_real", "d_fake"}, "hinge": {"d_real", "d_fake"}, "wgan-gp": {"d_real", "d_fake", "gp",
                "wasserstein"}}[config.loss]  # fmt: skip
    d_loss = model.loss(batch, phase="discriminator")
    assert set(d_loss.terms) == expected
    assert set(model.loss(batch, phase="generator").terms) == set()
    for phase in ("discriminator", "generator"):
        assert all(math.isfinite(v) for v in model.loss(batch, phase=phase).items().values())
    if config.loss == "bce":
        assert 0 < d_loss.items()["d_real"] < 1 and 0 < d_loss.items()["d_fake"] < 1


@pytest.mark.parametrize("size", [(30, 30), (6, 6), (10, 10), (28, 30)])
def test_impossible_size_names_sizes_that_work(size):
    with pytest.raises(ConfigError, match=rf"cannot make {size[0]}×{size[1]} images.*divide by 4.*--image-size 32"):
        GANConfig(height=size[0], width=size[1])


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"loss": "lsgan"}, "'bce', 'wgan-gp', 'hinge'"), ({"n_critic": 0}, "n_critic=0 must be at least 1"),
     ({"d_lr_scale": 0.0}, "d_lr_scale=0.0 must be > 0"), ({"num_classes": -1}, "num_classes=-1 must be ≥ 0"),
     ({"loss": "wgan-gp", "gp_weight": 0.0}, "needs gp_weight > 0"), ({"d_norm": "group"}, "'batch', 'layer', 'none'"),
     ({"loss": "wgan-gp"}, "cannot use d_norm='batch'.*set d_norm=none or layer"),
     ({"base_channels": 0}, "base_channels=0 must be at least 1")],
)  # fmt: skip
def test_config_errors(changes, match):
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(TINY["bce-8"], **changes)


def test_unknown_phase_and_missing_labels():
    model = _model(TINY["cgan-8"])
    with pytest.raises(ConfigError, match="phase 'model' is not one of 'discriminator', 'generator'"):
        model.loss(_batch(TINY["cgan-8"]), phase="model")
    with pytest.raises(ConfigError, match="conditioned on 3 classes; the data needs labels"):
        model.loss(Batch(_batch(TINY["cgan-8"]).x), phase="generator")


# --- losses against closed forms ----------------------------------------------------------------
REAL, FAKE = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])


def test_bce_losses_match_binary_cross_entropy():
    p_real, p_fake = torch.sigmoid(REAL), torch.sigmoid(FAKE)
    reference = F.binary_cross_entropy(p_real, torch.ones(2)) + F.binary_cross_entropy(p_fake, torch.zeros(2))
    torch.testing.assert_close(discriminator_loss("bce", REAL, FAKE), reference)
    torch.testing.assert_close(generator_loss("bce", FAKE), -torch.log(p_fake).mean())  # non-saturating


def test_hinge_and_wasserstein_losses_by_hand():
    # D: mean(max(0, 1 − [2, −1])) + mean(max(0, 1 + [0.5, −3])) = (0 + 2)/2 + (1.5 + 0)/2
    assert float(discriminator_loss("hinge", REAL, FAKE)) == pytest.approx(1.75)
    assert float(generator_loss("hinge", FAKE)) == pytest.approx(1.25)
    assert float(discriminator_loss("wgan-gp", REAL, FAKE)) == pytest.approx(-1.25 - 0.5)
    assert float(generator_loss("wgan-gp", FAKE)) == pytest.approx(1.25)
    with pytest.raises(ConfigError, match="'bce', 'wgan-gp', 'hinge'"):
        discriminator_loss("ls", REAL, FAKE)


class _Quadratic(torch.nn.Module):
    """D(x) = ½ a ‖x‖²: ∇D(x) = a x, so the penalty is E[(a ‖x̂‖ − 1)²]."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a))

    def forward(self, x, labels=None):
        return 0.5 * self.a * x.pow(2).flatten(1).sum(1)


def test_gradient_penalty_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(4, 1, 2, 2, generator=g), torch.randn(4, 1, 2, 2, generator=g)
    torch.manual_seed(7)
    eps = torch.rand(4, 1, 1, 1)
    x_hat = eps * real + (1 - eps) * fake
    expected = (0.3 * x_hat.flatten(1).norm(dim=1) - 1).pow(2).mean()
    critic = _Quadratic(0.3)
    torch.manual_seed(7)
    gp = gradient_penalty(critic, real, fake)
    torch.testing.assert_close(gp, expected)
    gp.backward()  # the penalty is differentiable w.r.t. the critic: d/da E[(a‖x̂‖ − 1)²]
    n = x_hat.flatten(1).norm(dim=1)
    torch.testing.assert_close(critic.a.grad, (2 * (0.3 * n - 1) * n).mean())
    with torch.no_grad():  # evaluation runs under no_grad: the penalty must still be computed
        torch.manual_seed(7)
        torch.testing.assert_close(gradient_penalty(critic, real, fake), expected)


def test_gradient_penalty_of_a_linear_critic_is_the_weight_norm():
    critic = torch.nn.Linear(8, 1)
    net = lambda x, labels=None: critic(x.flatten(1)).squeeze(1)  # noqa: E731
    real, fake = torch.randn(5, 2, 2, 2), torch.randn(5, 2, 2, 2)
    expected = (critic.weight.norm() - 1).pow(2)
    torch.testing.assert_close(gradient_penalty(net, real, fake), expected)


# --- gradients flow only where the phase says -----------------------------------------------------
@pytest.mark.parametrize("name", list(TINY))
def test_each_phase_updates_only_its_network(name):
    config = TINY[name]
    for phase, trained, other in (("discriminator", "discriminator", "generator"),
                                  ("generator", "generator", "discriminator")):  # fmt: skip
        model = _model(config)
        _freeze_all_but(model, phase)
        model.loss(_batch(config), phase=phase).total.backward()
        for pname, p in getattr(model, trained).named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (phase, pname)
        assert all(p.grad is None for p in getattr(model, other).parameters()), phase


def test_discriminator_phase_needs_no_freezing_of_the_generator():
    model = _model(TINY["bce-8"])  # G runs under no_grad in the D phase even when it is not frozen
    model.loss(_batch(TINY["bce-8"]), phase="discriminator").total.backward()
    assert all(p.grad is None for p in model.generator.parameters())


def test_phases_carry_n_critic_and_lr_scale():
    config = dataclasses.replace(TINY["wgan-32"], d_lr_scale=0.5)
    model = _model(config)
    phases = model.phases()
    assert list(phases) == ["discriminator", "generator"]
    assert phases["discriminator"].repeats == 3 and phases["discriminator"].lr_scale == 0.5
    assert phases["generator"].repeats == 1 and phases["generator"].lr_scale == 1.0
    ids = [{id(p) for p in phase.params} for phase in phases.values()]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == {id(p) for p in model.parameters()}


def test_spectral_norm_bounds_the_discriminator_layers():
    model = _model(TINY["hinge-sn-8"])
    x = _batch(TINY["hinge-sn-8"]).x
    for _ in range(30):  # power iterations run on each training-mode forward pass
        model.discriminator(x)
    for module in model.discriminator.modules():
        if isinstance(module, torch.nn.Conv2d):
            sigma = torch.linalg.matrix_norm(module.weight.detach().flatten(1), ord=2)
            assert float(sigma) == pytest.approx(1.0, abs=0.02)


# --- sampling ----------------------------------------------------------------------------------
def test_sample_is_deterministic_and_leaves_training_mode_and_statistics_alone():
    model = _model(TINY["bce-28"]).train()
    stats = model.generator.norm0.running_mean.clone()
    a = model.sample(6, generator=torch.Generator().manual_seed(5))
    b = model.sample(6, generator=torch.Generator().manual_seed(5))
    c = model.sample(6, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a[0], a[1])
    assert a.min() >= -1 and a.max() <= 1
    assert model.generator.training and torch.equal(model.generator.norm0.running_mean, stats)
    # eval-mode BatchNorm: an image depends on its own noise only, not on the batch it is drawn in
    torch.testing.assert_close(model.sample(2, generator=torch.Generator().manual_seed(5)), a[:2], atol=2e-3, rtol=0)


def test_conditional_sampling_honours_labels():
    model = _model(TINY["cgan-8"]).eval()
    for labels in (2, torch.tensor(2), [0, 1, 2, 0], None):
        assert model.sample(4, generator=torch.Generator().manual_seed(0), labels=labels).shape == (4, 1, 8, 8)
    same = model.sample(2, generator=torch.Generator().manual_seed(0), labels=torch.tensor([1, 1]))
    other = model.sample(2, generator=torch.Generator().manual_seed(0), labels=torch.tensor([1, 2]))
    assert torch.equal(same[0], other[0]) and not torch.equal(same[1], other[1])
    with pytest.raises(ConfigError, match=r"label 3 was never seen in training; this model knows labels 0\.\.2"):
        model.sample(2, labels=3)
    with pytest.raises(ConfigError, match="got 2 labels for 4 samples"):
        model.sample(4, labels=[0, 1])
    with pytest.raises(ConfigError, match="unconditional; drop the label"):
        _model(TINY["bce-8"]).sample(2, labels=1)


# --- diagnose ----------------------------------------------------------------------------------
def _history(**series: list[float]) -> list[dict[str, float]]:
    n = len(next(iter(series.values())))
    return [{"step": 25.0 * (i + 1), **{k: v[i] for k, v in series.items()}} for i in range(n)]


def test_diagnose_fires_when_the_discriminator_has_won():
    model = _model(TINY["bce-8"])
    collapsed = _history(discriminator_d_real=[0.7] * 3 + [0.99] * 5, discriminator_d_fake=[0.3] * 3 + [0.01] * 5,
                         generator_loss=[1.5] * 3 + [5.0] * 5)  # fmt: skip
    message = model.diagnose(collapsed)
    assert message and "discriminator has won" in message and "d_lr_scale" in message and "spectral_norm" in message
    assert model.diagnose(collapsed[:7]) is None  # four bad records are not yet a trend


def test_diagnose_stays_quiet_on_a_healthy_run():
    model = _model(TINY["bce-8"])
    g = torch.Generator().manual_seed(0)
    noise = (torch.rand(20, generator=g) - 0.5).tolist()
    healthy = _history(discriminator_d_real=[0.75 + 0.1 * e for e in noise],
                       discriminator_d_fake=[0.25 + 0.1 * e for e in noise],
                       generator_loss=[1.4 + 0.8 * e for e in noise])  # fmt: skip
    assert model.diagnose(healthy) is None
    assert model.diagnose([]) is None and model.diagnose(healthy[:1]) is None


def test_diagnose_fires_when_the_generator_loss_explodes():
    model = _model(TINY["bce-8"])
    history = _history(discriminator_d_real=[0.7] * 8, discriminator_d_fake=[0.3] * 8,
                       generator_loss=[1.5] * 7 + [40.0])  # fmt: skip
    assert "generator loss jumped to 40" in model.diagnose(history)
    history[-1]["generator_loss"] = 9.0  # 6× the median: a bad patch, not a blow-up
    assert model.diagnose(history) is None


def test_diagnose_for_hinge_and_wgan():
    hinge = _model(TINY["hinge-sn-8"])
    assert "hinge loss is ≈ 0" in hinge.diagnose(_history(discriminator_loss=[0.001] * 5, generator_loss=[2.0] * 5))
    assert hinge.diagnose(_history(discriminator_loss=[1.2] * 5, generator_loss=[0.4] * 5)) is None
    wgan = _model(TINY["wgan-32"])
    drifting = _history(discriminator_wasserstein=[1.0, 0.8, 1.2, 0.9, 1.1, 30.0], generator_loss=[-50.0] * 6)
    assert "Wasserstein estimate jumped" in wgan.diagnose(drifting)
    drifting[-1]["discriminator_wasserstein"] = 1.3  # a large generator loss alone is a harmless critic offset
    assert wgan.diagnose(drifting) is None


# --- training runs -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    return genlab.train("gan-tiny", out=tmp_path_factory.mktemp("runs") / "gan", device="cpu")


def test_training_writes_a_reproducible_model(gan_run):
    assert (gan_run / "model.safetensors").exists()
    rows = [json.loads(line) for line in (gan_run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert train_rows[-1]["step"] == 30
    assert {"discriminator_loss", "discriminator_d_real", "discriminator_d_fake", "generator_loss"} <= set(rows[-1])
    a, b = genlab.sample(gan_run, 8, seed=0), genlab.sample(gan_run, 8, seed=0)
    assert a.dtype == np.uint8 and a.shape == (8, 8, 8, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, genlab.sample(gan_run, 8, seed=1))


def test_conditional_spectral_norm_run_round_trips(tmp_path):
    overrides = ["num_classes=10", "loss=hinge", "spectral_norm=true", "steps=6", "checkpoint_every=3"]
    run = genlab.train("gan-tiny", out=tmp_path / "cgan", device="cpu", overrides=overrides)
    model = genlab.load(run)
    assert model.num_classes == 10 and model.config.spectral_norm
    threes = genlab.sample(run, 4, seed=0, labels=3)
    assert np.array_equal(threes, genlab.sample(model, 4, seed=0, labels=3))
    with pytest.raises(ConfigError, match="label 10 was never seen"):
        genlab.sample(model, 2, labels=10)


def test_cli_train_then_sample(tmp_path):
    from genlab.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "gan-tiny", "--out", str(run), "--steps", "10", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["sample", str(run), "--out", str(tmp_path / "x.png"), "--n", "16"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.png").stat().st_size > 0


def test_mnist_recipe_on_digits_builds_an_eight_pixel_model(tmp_path):
    run = genlab.train("dcgan-mnist", data="digits", steps=2, out=tmp_path / "dc", device="cpu",
                       overrides=["eval_batches=1", "ema_decay=0"])  # fmt: skip
    model = genlab.load(run)
    assert (model.config.height, model.config.width) == (8, 8)
    assert model.generator.start[1:] == (2, 2)
    assert genlab.sample(model, 3, seed=0).shape == (3, 8, 8, 1)
