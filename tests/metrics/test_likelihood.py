"""genlab.metrics.likelihood: the VAE bound against a hand-computed ELBO, IWAE ≤ ELBO, the diffusion
bound against closed forms under an oracle network, the unbiased timestep subsampling, and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from genlab.errors import ConfigError, DataError
from genlab.metrics.likelihood import bits_per_dim, diffusion_vlb_term
from genlab.models.autoencoder import Autoencoder, AutoencoderConfig
from genlab.models.diffusion import Diffusion, DiffusionConfig
from genlab.models.gan import GAN, GANConfig
from genlab.models.vae import VAE, VAEConfig
from genlab.sampling.schedules import betas

T = 50
DIFFUSION = {"height": 8, "width": 8, "base_channels": 8, "channel_mults": (1, 2), "attention_levels": (1,),
             "attention_heads": 2, "num_train_steps": T}  # fmt: skip
D = 64  # 1 × 8 × 8


def _images(n: int, seed: int = 0) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    images[0, 0, :2, 0] = (0, 255)  # both edge bins of the discretised decoder
    return images


def _vae(likelihood: str = "bernoulli") -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(height=8, width=8, latent_dim=4, hidden_dims=(32,), likelihood=likelihood)).eval()


def _diffusion(**overrides) -> Diffusion:
    torch.manual_seed(0)
    return Diffusion(DiffusionConfig(**{**DIFFUSION, **overrides})).eval()


def _x0(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255 * 2 - 1


# --- VAE -------------------------------------------------------------------------------------------
def _hand_elbo(model: VAE, images: np.ndarray, seed: int) -> torch.Tensor:
    """log p(x|z) + log p(z) − log q(z|x) at one z per image, ε from the seeded global RNG (nats, (N,))."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        mean, log_var = model.posterior(x)
        torch.manual_seed(seed)
        eps = torch.randn(mean.shape)
        z = mean + torch.exp(0.5 * log_var) * eps
        log_px_z = -model.reconstruction_nll(x, model.decoder(z, None))
    log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
    log_qz = -0.5 * (eps.pow(2) + math.log(2 * math.pi) + log_var).sum(1)
    return (log_px_z + log_pz - log_qz).double()


@pytest.mark.parametrize(("likelihood", "bin_bits"), [("bernoulli", 0.0), ("gaussian", math.log2(255))])
def test_vae_elbo_in_bits_per_dim_matches_a_hand_computed_elbo(likelihood, bin_bits):
    model, images = _vae(likelihood), _images(8)
    expected = -_hand_elbo(model, images, seed=3).mean().item() / (D * math.log(2)) + bin_bits
    result = bits_per_dim(model, images, seed=3)
    assert result["bits_per_dim"] == pytest.approx(expected, rel=1e-6)
    assert result["terms"]["discretisation"] == bin_bits
    assert result["bound"] == "elbo" and result["n"] == 8 and result["num_timesteps"] is None
    if likelihood == "bernoulli":
        assert result["likelihood"] == "bernoulli (on grey levels in [0, 1]; not a discrete 256-level likelihood)"
    json.dumps(result)


def test_vae_iwae_is_tighter_and_seeded_runs_agree():
    model, images = _vae("gaussian"), _images(32)
    with torch.no_grad():
        model.log_scale.fill_(math.log(0.05))  # a sharp decoder: the weights p(x, z)/q(z|x) vary a lot
    torch.manual_seed(11)
    before = torch.rand(1)
    torch.manual_seed(11)
    elbo = [bits_per_dim(model, images, seed=s)["bits_per_dim"] for s in range(3)]
    assert torch.equal(torch.rand(1), before)  # the caller's RNG is untouched
    iwae = bits_per_dim(model, images, num_samples=64, seed=0)
    assert iwae["bound"] == "iwae-64"
    assert iwae["bits_per_dim"] < min(elbo)
    assert bits_per_dim(model, images, seed=1)["bits_per_dim"] == elbo[1]
    assert elbo[0] != elbo[1]


# --- diffusion -------------------------------------------------------------------------------------
def _oracle(model: Diffusion, x0: torch.Tensor, quality: float = 1.0) -> None:
    """Make the network predict the true ε (or v) for the known x_0, scaled by ``quality``."""
    ab_all = model.alphas_cumprod

    def forward(x_t, t, labels=None):
        ab = ab_all[t].view(-1, 1, 1, 1)
        eps = (x_t.double() - ab.sqrt() * x0) / (1 - ab).sqrt()
        out = eps if model.config.prediction == "eps" else ab.sqrt() * eps - (1 - ab).sqrt() * x0
        return quality * out

    model.forward = forward


def _closed_forms(variance: str) -> tuple[float, float, float]:
    """(prior, decoder, Σ L_t) in nats per image under a perfect network, from the schedule alone."""
    beta = betas("linear", T).numpy()
    ab = np.cumprod(1 - beta)
    ab_prev = np.append(1.0, ab[:-1])
    tilde = beta * (1 - ab_prev) / (1 - ab)  # β̃_t; β̃_0 = 0
    model_var = tilde if variance == "posterior" else beta
    kl_t = 0.5 * (-1 + np.log(model_var[1:]) - np.log(tilde[1:]) + tilde[1:] / model_var[1:])  # same means
    return ab[-1], math.sqrt(tilde[1]), D * kl_t.sum()


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_diffusion_bound_under_an_oracle_network_is_the_closed_form(prediction, variance):
    images = _images(3)
    x0 = _x0(images)
    model = _diffusion(prediction=prediction)
    _oracle(model, x0)
    ab_last, sigma, sum_kl = _closed_forms(variance)
    prior = 0.5 * (-1 - math.log(1 - ab_last) + (1 - ab_last) + ab_last * x0.pow(2)).flatten(1).sum(1)
    half = 1 / 255  # half of the bin width 2/255
    edge = (x0 == -1) | (x0 == 1)
    mass = np.where(edge.numpy(), norm.cdf(half / sigma), norm.cdf(half / sigma) - norm.cdf(-half / sigma))
    decoder = -np.log(mass).reshape(3, -1).sum(1)
    to_bits = 1 / (D * math.log(2))

    result = bits_per_dim(model, images, variance=variance)
    terms = result["terms"]
    assert terms["prior"] == pytest.approx(prior.mean().item() * to_bits, rel=1e-12)
    assert terms["decoder"] == pytest.approx(decoder.mean() * to_bits, rel=1e-9)
    assert terms["denoising"] == pytest.approx(sum_kl * to_bits, rel=1e-9, abs=1e-10)
    assert result["bits_per_dim"] == pytest.approx(sum(terms.values()), rel=1e-12)
    assert result["bound"] == "vlb" and result["num_timesteps"] == T - 1
    if variance == "posterior":  # every L_t, t ≥ 1, is zero whatever the noise
        noise = torch.randn(x0.shape, dtype=torch.float64)
        for t in range(1, T):
            assert diffusion_vlb_term(model, x0, t, noise).abs().max() < 1e-10


def test_subsampled_timesteps_estimate_the_full_bound_without_bias():
    images = _images(2)
    model = _diffusion()
    _oracle(model, _x0(images), quality=0.9)  # an imperfect network: the L_t differ from t to t
    full = bits_per_dim(model, images, num_timesteps=T - 1)
    assert full == bits_per_dim(model, images)  # all T − 1 terms: the full bound, number for number
    # Each seed's noise is the same in both runs, so sub − full is only the error of picking k of T − 1 terms.
    diffs = []
    for seed in range(150):
        sub = bits_per_dim(model, images, num_timesteps=5, seed=seed)
        assert sub["terms"]["prior"] == full["terms"]["prior"] and sub["num_timesteps"] == 5
        diffs.append(sub["bits_per_dim"] - bits_per_dim(model, images, seed=seed)["bits_per_dim"])
    diffs = np.array(diffs)
    assert diffs.std() > 1e-3  # the subsets really differ
    assert abs(diffs.mean()) < 4 * diffs.std(ddof=1) / math.sqrt(len(diffs))  # unbiased: within 4 standard errors


def test_diffusion_runs_are_seeded_and_conditional_models_score_without_labels():
    model = _diffusion(num_classes=3)
    with torch.no_grad():  # move off the zero-initialised output layers, which make the network ignore labels
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    images = _images(3)
    a = bits_per_dim(model, images, num_timesteps=3, seed=4)
    assert a == bits_per_dim(model, images, num_timesteps=3, seed=4, batch_size=3)
    assert a["bits_per_dim"] != bits_per_dim(model, images, num_timesteps=3, seed=5)["bits_per_dim"]
    assert a["conditioned_on_labels"] is False
    labelled = bits_per_dim(model, images, labels=[0, 1, 2], num_timesteps=3, seed=4)
    assert labelled["conditioned_on_labels"] is True and labelled["bits_per_dim"] != a["bits_per_dim"]
    no_label = torch.full((3,), 3)  # the "no label" embedding, given explicitly
    model.forward = lambda x_t, t, labels=None: Diffusion.forward(model, x_t, t, no_label[: len(x_t)])
    assert bits_per_dim(model, images, num_timesteps=3, seed=4)["bits_per_dim"] == a["bits_per_dim"]


# --- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "family"),
    [(Autoencoder(AutoencoderConfig(height=8, width=8, latent_dim=3, hidden_dims=(16,))), "ae"),
     (GAN(GANConfig(height=8, width=8, latent_dim=4, base_channels=4)), "gan")],
)  # fmt: skip
def test_models_without_a_likelihood_are_refused_in_one_line(model, family):
    with pytest.raises(ConfigError, match=rf"^{family} models define no likelihood; bits/dim needs a vae or diffusion"):
        bits_per_dim(model, _images(2))


def test_wrong_images_and_options_are_one_line_errors():
    vae, diffusion = _vae(), _diffusion()
    wrong = np.zeros((2, 9, 9, 1), np.uint8)
    with pytest.raises(DataError, match=r"images are \(2, 9, 9, 1\) but this diffusion model takes \(N, 8, 8, 1\)"):
        bits_per_dim(diffusion, wrong)
    with pytest.raises(DataError, match=r"images are \(2, 9, 9, 1\) but this vae model takes \(N, 8, 8, 1\)"):
        bits_per_dim(vae, wrong)
    with pytest.raises(DataError, match="must be uint8"):
        bits_per_dim(vae, _images(2).astype(np.float32) / 255)
    with pytest.raises(ConfigError, match=r"num_timesteps=50 must be between 1 and 49"):
        bits_per_dim(diffusion, _images(2), num_timesteps=50)
    with pytest.raises(ConfigError, match=r"variance='learned' is not one of 'posterior', 'beta'"):
        bits_per_dim(diffusion, _images(2), variance="learned")
    with pytest.raises(ConfigError, match="num_samples applies to vae models"):
        bits_per_dim(diffusion, _images(2), num_samples=4)
    with pytest.raises(ConfigError, match="num_timesteps and variance apply to diffusion models"):
        bits_per_dim(vae, _images(2), num_timesteps=4)
    with pytest.raises(ConfigError, match="this vae model is unconditional; drop the label"):
        bits_per_dim(vae, _images(2), labels=[0, 1])
