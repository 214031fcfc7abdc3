"""genlab.models.vae: shapes, the ELBO's terms against torch.distributions, the IWAE bound against an
exact log-likelihood, seeded sampling and the conditional VAE."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal, kl_divergence

from genlab.errors import ConfigError
from genlab.models.base import Batch
from genlab.models.vae import VAE, VAEConfig

TINY = {
    "mlp-28": VAEConfig(latent_dim=3, hidden_dims=(16,)),
    "mlp-8": VAEConfig(height=8, width=8, latent_dim=2, hidden_dims=(16, 8)),
    "conv-28": VAEConfig(latent_dim=3, architecture="conv", conv_channels=(4, 8), hidden_dims=(16,)),
    "conv-8": VAEConfig(channels=3, height=8, width=8, latent_dim=2, architecture="conv", conv_channels=(4,),
                        hidden_dims=(), likelihood="gaussian"),
    "cvae-8": VAEConfig(height=8, width=8, latent_dim=2, hidden_dims=(16,), num_classes=3),
}  # fmt: skip


def _images(config: VAEConfig, n: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, config.channels, config.height, config.width, generator=g)


def _labels(config: VAEConfig, n: int = 5) -> torch.Tensor | None:
    return torch.arange(n) % config.num_classes if config.num_classes else None


def _model(config: VAEConfig, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(config)


# --- shapes and gradients ----------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TINY))
def test_shapes_and_ranges(name):
    config = TINY[name]
    model = _model(config)
    x, y = _images(config), _labels(config)
    mean, log_var = model.posterior(x, y)
    assert mean.shape == log_var.shape == (5, config.latent_dim)
    z = model.encode(x, y)
    assert torch.equal(z, mean)
    decoded = model.decode(z, y)
    assert decoded.shape == x.shape and decoded.min() >= 0 and decoded.max() <= 1
    assert model.reconstruct(x, y).shape == x.shape
    assert model.anomaly_score(x, y).shape == (5,)
    assert model.log_prob(x, y).shape == (5,)
    loss = model.loss(Batch(x, y))
    assert loss.total.shape == () and torch.isfinite(loss.total)
    assert set(loss.items()) == {"loss", "recon", "kl", "nelbo", "bits_per_dim", "mse"}
    assert all(math.isfinite(v) for v in loss.items().values())
    assert model.sample(4, generator=torch.Generator().manual_seed(0)).shape == (4, *x.shape[1:])


@pytest.mark.parametrize("name", list(TINY))
def test_loss_backpropagates(name):
    config = TINY[name]
    model = _model(config)
    model.loss(Batch(_images(config), _labels(config))).total.backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    # only the Gaussian decoder has a (learned) scale; a Bernoulli VAE carries no dead parameter
    assert ("log_scale" in dict(model.named_parameters())) == (config.likelihood == "gaussian")


def test_conv_size_check():
    with pytest.raises(ConfigError, match=r"divisible by 4, got 30×30; resize the data \(--image-size 32\)"):
        VAEConfig(height=30, width=30, architecture="conv", conv_channels=(4, 8))


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"beta": -1.0}, "beta=-1.0 must be ≥ 0"), ({"num_classes": -2}, "num_classes=-2 must be ≥ 0"),
     ({"likelihood": "poisson"}, "'bernoulli', 'gaussian'"), ({"channels": 0}, "channels=0 must be at least 1")],
)  # fmt: skip
def test_config_range_errors(changes, match):
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(TINY["mlp-8"], **changes)


# --- the ELBO's terms against references -------------------------------------------------------
def test_kl_closed_form_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(6, 4, generator=g, dtype=torch.float64) * 2
    log_var = torch.randn(6, 4, generator=g, dtype=torch.float64) * 3
    reference = kl_divergence(Normal(mean, torch.exp(0.5 * log_var)), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(VAE.kl_divergence(mean, log_var), reference, rtol=1e-12, atol=1e-12)
    assert torch.equal(VAE.kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_kl_closed_form_matches_monte_carlo():
    mean, log_var = torch.tensor([[0.5, -1.0]], dtype=torch.float64), torch.tensor([[-0.7, 0.4]], dtype=torch.float64)
    q = Normal(mean, torch.exp(0.5 * log_var))
    z = q.sample((200_000,))  # (S, 1, 2)
    estimate = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).mean(0)
    assert float(VAE.kl_divergence(mean, log_var)) == pytest.approx(float(estimate), abs=0.01)


def test_bernoulli_nll_matches_torch_distributions():
    config = TINY["mlp-8"]
    model = _model(config)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 1, 8, 8, generator=g) * 3
    binary = (torch.rand(4, 1, 8, 8, generator=g) > 0.5).float()
    reference = -Bernoulli(logits=logits).log_prob(binary).flatten(1).sum(1)
    torch.testing.assert_close(model.reconstruction_nll(binary, logits), reference)
    grey = torch.rand(4, 1, 8, 8, generator=g)  # pixels in [0, 1] as Bernoulli means (continuous targets)
    reference = -Bernoulli(logits=logits, validate_args=False).log_prob(grey).flatten(1).sum(1)
    torch.testing.assert_close(model.reconstruction_nll(grey, logits), reference)


def test_gaussian_nll_matches_torch_distributions():
    config = dataclasses.replace(TINY["mlp-8"], likelihood="gaussian")
    model = _model(config)
    with torch.no_grad():
        model.log_scale.fill_(-1.3)
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 1, 8, 8, generator=g)
    x = torch.rand(4, 1, 8, 8, generator=g)
    reference = -Normal(torch.sigmoid(logits), math.exp(-1.3)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(model.reconstruction_nll(x, logits), reference)


def test_loss_terms_relations():
    config = dataclasses.replace(TINY["mlp-8"], beta=4.0)
    model = _model(config)
    items = model.loss(Batch(_images(config, n=8))).items()
    assert items["nelbo"] == pytest.approx(items["recon"] + items["kl"], rel=1e-6)
    assert items["loss"] == pytest.approx(items["recon"] + 4.0 * items["kl"], rel=1e-6)
    assert items["bits_per_dim"] == pytest.approx(items["nelbo"] / (64 * math.log(2)), rel=1e-6)
    assert items["kl"] > 0 and items["recon"] > 0


# --- log_prob: ELBO and IWAE against the exact likelihood -----------------------------------------
@pytest.fixture(scope="module")
def one_dim_vae():
    """A VAE with a 1-d latent, so log p(x) = log ∫ p(x|z) p(z) dz is exact by quadrature.

    q(z|x) is fixed to N(0.3, e) (wider than the posterior: well-behaved importance weights) and the
    decoder is made sharply z-dependent, so the ELBO is several nats below log p(x)."""
    torch.manual_seed(0)
    model = VAE(VAEConfig(height=4, width=4, latent_dim=1, hidden_dims=(16,))).eval()
    with torch.no_grad():
        last = model.encoder.head[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.3, 1.0]))  # (mean, log-variance)
        model.decoder.head[0].weight.mul_(8.0)
    x = (torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    z = torch.linspace(-12.0, 12.0, 4801, dtype=torch.float64)
    with torch.no_grad():
        logits = model.decoder(z[:, None].float()).flatten(1).double()  # (G, 16)
    log_px_z = -F.binary_cross_entropy_with_logits(  # (B, G)
        logits[None].expand(8, -1, -1), x.flatten(1).double()[:, None].expand(-1, len(z), -1), reduction="none"
    ).sum(2)
    log_pz = Normal(0.0, 1.0).log_prob(z)
    exact = torch.logsumexp(log_px_z + log_pz, 1) + math.log(float(z[1] - z[0]))
    return model, x, exact.float()


def test_iwae_bound_approaches_exact_log_likelihood(one_dim_vae):
    model, x, exact = one_dim_vae
    torch.manual_seed(0)
    elbo = torch.stack([model.log_prob(x, num_samples=1) for _ in range(200)]).mean(0)
    iwae_10 = torch.stack([model.log_prob(x, num_samples=10) for _ in range(50)]).mean(0)
    iwae_2000 = model.log_prob(x, num_samples=2000)
    assert (elbo < exact - 0.5).all()  # a loose bound for this q
    assert (iwae_10 > elbo + 0.5).all()  # tighter with more samples (Burda et al. 2016, theorem 1)
    assert iwae_10.mean() < exact.mean() and (iwae_10 < exact + 0.15).all()  # still below, up to MC noise
    assert abs(float((iwae_2000 - exact).mean())) < 0.075  # converges to log p(x) as K grows
    torch.testing.assert_close(iwae_2000, exact, atol=0.2, rtol=0)


def test_iwae_is_at_least_elbo_on_average():
    config = TINY["mlp-8"]
    model = _model(config).eval()
    x = _images(config, n=16).round()
    torch.manual_seed(0)
    elbo = torch.stack([model.log_prob(x, num_samples=1) for _ in range(100)]).mean()
    iwae = torch.stack([model.log_prob(x, num_samples=8) for _ in range(100)]).mean()
    assert iwae > elbo


def test_single_sample_log_prob_is_unbiased_for_minus_nelbo():
    config = TINY["mlp-8"]
    model = _model(config).eval()
    x = _images(config, n=16)
    torch.manual_seed(0)
    log_prob = torch.stack([model.log_prob(x) for _ in range(300)]).mean()
    nelbo = torch.tensor([model.loss(Batch(x)).items()["nelbo"] for _ in range(300)]).mean()
    assert float(log_prob) == pytest.approx(-float(nelbo), abs=0.05)  # nats; a missing log 2π would be 1.8


# --- sampling ----------------------------------------------------------------------------------
def test_sample_is_deterministic_under_a_generator():
    config = TINY["conv-8"]
    model = _model(config).eval()
    a = model.sample(6, generator=torch.Generator().manual_seed(5))
    b = model.sample(6, generator=torch.Generator().manual_seed(5))
    c = model.sample(6, generator=torch.Generator().manual_seed(6))
    assert a.shape == (6, 3, 8, 8) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # each item has its own latent


def test_sample_with_generator_leaves_global_rng_alone():
    model = _model(TINY["cvae-8"]).eval()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    model.sample(4, generator=torch.Generator().manual_seed(0))  # labels drawn too
    assert torch.equal(torch.rand(3), expected)


# --- conditional VAE ---------------------------------------------------------------------------
def test_conditional_sample_with_labels():
    model = _model(TINY["cvae-8"]).eval()
    assert model.num_classes == 3
    for labels in (torch.tensor(2), 2, [2], torch.tensor([0, 1, 2, 0, 1]), None):
        out = model.sample(5, generator=torch.Generator().manual_seed(0), labels=labels)
        assert out.shape == (5, 1, 8, 8)
    same_class = model.sample(2, generator=torch.Generator().manual_seed(0), labels=torch.tensor([1, 1]))
    other_class = model.sample(2, generator=torch.Generator().manual_seed(0), labels=torch.tensor([1, 2]))
    assert torch.equal(same_class[0], other_class[0]) and not torch.equal(same_class[1], other_class[1])


@pytest.mark.parametrize("bad", [3, -1, [0, 1, 7]])
def test_conditional_label_out_of_range_lists_known_labels(bad):
    model = _model(TINY["cvae-8"])
    with pytest.raises(ConfigError, match=r"label -?\d+ was never seen in training; this model knows labels 0\.\.2"):
        model.sample(3, labels=torch.tensor(bad))


def test_conditional_label_count_must_match():
    model = _model(TINY["cvae-8"])
    with pytest.raises(ConfigError, match="got 2 labels for 4 samples; give one label or one per sample"):
        model.sample(4, labels=[0, 1])


def test_conditional_model_needs_labels_to_encode():
    config = TINY["cvae-8"]
    model = _model(config)
    with pytest.raises(ConfigError, match="conditioned on 3 classes; give a label per item"):
        model.loss(Batch(_images(config)))


def test_labels_on_unconditional_model():
    model = _model(TINY["mlp-8"])
    with pytest.raises(ConfigError, match="unconditional; drop the label"):
        model.sample(2, labels=torch.tensor([1, 1]))


# --- training signal ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp-8", "cvae-8", "conv-8"])
def test_optimizer_steps_lower_the_loss(name):
    config = TINY[name]
    model = _model(config)
    prototypes = (_images(config, n=2) > 0.5).float()  # two binary images, eight copies each
    batch = Batch(prototypes.repeat(8, 1, 1, 1), _labels(config, n=16))

    def average_loss() -> float:  # the loss is stochastic (one z per item): average a few draws
        torch.manual_seed(0)
        with torch.no_grad():
            return sum(model.loss(batch).items()["loss"] for _ in range(8)) / 8

    before = average_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(1)
    for _ in range(40):
        optimizer.zero_grad()
        model.loss(batch).total.backward()
        optimizer.step()
    assert average_loss() < 0.75 * before
