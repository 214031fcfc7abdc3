import json

import pytest
import torch

import genlab
from genlab.errors import ConfigError
from genlab.models.base import Batch
from genlab.models.diffusion import Diffusion, DiffusionConfig
from genlab.nn.unet import UNet, timestep_embedding

TINY = {"height": 8, "width": 8, "base_channels": 8, "channel_mults": (1, 2), "attention_levels": (1,),
        "attention_heads": 2, "num_train_steps": 50}  # fmt: skip


def tiny(**overrides) -> Diffusion:
    torch.manual_seed(0)
    return Diffusion(DiffusionConfig(**{**TINY, **overrides})).eval()


@pytest.mark.parametrize(("channels", "size", "mults"), [(1, 28, (1, 2, 2)), (1, 8, (1, 2)), (3, 32, (1, 2, 2, 2))])
def test_unet_keeps_the_image_shape(channels, size, mults):
    net = UNet(channels=channels, base_channels=8, channel_mults=mults, num_res_blocks=1, attention_levels=(1,),
               attention_heads=2, dropout=0.0, num_classes=3)  # fmt: skip
    x = torch.randn(2, channels, size, size)
    assert net(x, torch.tensor([0, 5]), torch.tensor([1, 3])).shape == x.shape


def test_unet_starts_as_zero_output_and_learns_labels():
    net = UNet(channels=1, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(),
               attention_heads=2, dropout=0.0, num_classes=3)  # fmt: skip
    assert net(torch.randn(2, 1, 8, 8), torch.tensor([1, 2])).abs().max() == 0  # zero-initialised head
    assert net.label_emb.num_embeddings == 4  # three classes and "no label"


def test_timestep_embedding_is_sinusoidal():
    emb = timestep_embedding(torch.tensor([0, 7]), 8)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    assert emb[1, 4].item() == pytest.approx(torch.sin(torch.tensor(7.0)).item())


def test_sizes_that_do_not_halve_are_refused_with_the_ones_that_work():
    with pytest.raises(ConfigError, match=r"divisible by 4, got 30×30: sizes 4, 8, 12.*--image-size"):
        DiffusionConfig(height=30, width=30)
    with pytest.raises(ConfigError, match=r"attention_levels \[5\] are not levels"):
        DiffusionConfig(attention_levels=(5,))


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_loss_is_finite_and_reaches_every_weight(prediction):
    model = tiny(prediction=prediction, num_classes=3).train()
    loss = model.loss(Batch(torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 2, 0])))
    assert torch.isfinite(loss.total) and loss.total > 0
    loss.total.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_v_target_is_the_closed_form():
    """v = √ᾱ ε − √(1−ᾱ) x_0; x̂_0 from a perfect v is x_0 (Salimans & Ho 2022, eq. in §4)."""
    model = tiny(prediction="v")
    ab = model.alphas_cumprod[30].item()
    x0, eps = torch.rand(1, 1, 8, 8) * 2 - 1, torch.randn(1, 1, 8, 8)
    x_t = ab**0.5 * x0 + (1 - ab) ** 0.5 * eps
    v = ab**0.5 * eps - (1 - ab) ** 0.5 * x0
    model.forward = lambda x, t, labels=None: v  # a perfect network
    torch.testing.assert_close(model._predict_x0(None, 1.0)(x_t, 30), x0.clamp(-1, 1))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++2m"])
def test_sampling_is_reproducible_under_a_seed(sampler):
    model = tiny()
    a = model.sample(3, generator=torch.Generator().manual_seed(1), sampler=sampler, num_steps=5)
    b = model.sample(3, generator=torch.Generator().manual_seed(1), sampler=sampler, num_steps=5)
    c = model.sample(3, generator=torch.Generator().manual_seed(2), sampler=sampler, num_steps=5)
    assert a.shape == (3, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1


def test_guidance_scale_one_is_plain_conditional_sampling():
    model = tiny(num_classes=3)
    kw = {"labels": torch.tensor([2, 1]), "num_steps": 4, "sampler": "ddim"}
    plain = model.sample(2, generator=torch.Generator().manual_seed(0), **kw)
    guided = model.sample(2, generator=torch.Generator().manual_seed(0), guidance_scale=1.0, **kw)
    torch.testing.assert_close(plain, guided)


def test_bad_sampling_options_are_one_line_errors():
    unconditional, conditional = tiny(), tiny(num_classes=3)
    with pytest.raises(ConfigError, match="this model is unconditional"):
        unconditional.sample(2, guidance_scale=3.0)
    with pytest.raises(ConfigError, match=r"label 7 was never seen in training; this model knows labels 0\.\.2"):
        conditional.sample(2, labels=torch.tensor(7))
    with pytest.raises(ConfigError, match="sampler 'plms' is not one of"):
        unconditional.sample(2, sampler="plms")
    with pytest.raises(ConfigError, match="num_steps=500 must be between 1 and the model's 50"):
        unconditional.sample(2, num_steps=500)


def test_img2img_strength_bounds_and_zero_strength():
    model = tiny()
    image = torch.rand(2, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(model.img2img(image, strength=0.0), image)
    changed = model.img2img(image, strength=0.6, num_steps=10, generator=torch.Generator().manual_seed(0))
    assert changed.shape == image.shape and not torch.allclose(changed, image)
    with pytest.raises(ConfigError, match=r"strength=1\.5 must be in \[0, 1\]"):
        model.img2img(image, strength=1.5)
    with pytest.raises(ConfigError, match=r"the image is \(1, 9, 9\) \(C, H, W\) but this model makes"):
        model.img2img(torch.zeros(1, 1, 9, 9), strength=0.5)


def test_inpaint_keeps_the_unmasked_pixels():
    model = tiny()
    image = torch.rand(1, 1, 8, 8) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    out = model.inpaint(image, mask, num_steps=5, resample=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out * (1 - mask), image * (1 - mask))
    with pytest.raises(ConfigError, match=r"the mask is \(4, 4\) \(H, W\) but the image is \(8, 8\)"):
        model.inpaint(image, torch.ones(1, 1, 4, 4))


def test_training_lowers_the_loss_and_the_run_samples(ddpm_run):
    rows = [json.loads(line) for line in (ddpm_run / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in rows if r["split"] == "train"]
    assert train[-1] < 0.75 * train[0]
    model = genlab.load(ddpm_run)
    assert model.family == "diffusion" and model.num_classes == 10
    images = genlab.sample(model, 4, seed=3, labels=2, num_steps=5, sampler="ddim", guidance_scale=2.0)
    assert images.shape == (4, 8, 8, 1) and images.dtype.name == "uint8"
    again = genlab.sample(model, 4, seed=3, labels=2, num_steps=5, sampler="ddim", guidance_scale=2.0)
    assert (images == again).all()


def test_the_mnist_recipe_adapts_to_other_data(tmp_path):
    run = genlab.train("ddpm-mnist", data="digits", steps=1, out=tmp_path / "run", device="cpu",
                       overrides=["eval_batches=1"])  # fmt: skip
    model = genlab.load(run)
    assert (model.config.height, model.config.width, model.num_classes) == (8, 8, 10)
    assert (run / "samples").is_dir()
    import numpy as np

    np.savez(tmp_path / "odd.npz", images=np.zeros((20, 30, 30), np.uint8), labels=np.arange(20) % 2)
    with pytest.raises(ConfigError, match=r"divisible by 4, got 30×30.*--image-size"):
        genlab.train("ddpm-mnist", data=tmp_path / "odd.npz", steps=1, out=tmp_path / "odd", device="cpu")
