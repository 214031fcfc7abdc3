"""Named recipes: ``<family>-<dataset>`` → ready model and training configs.

Each recipe trains in a few CPU minutes on data that ships with the install. ``--data`` trains a
recipe on another dataset: the image shape (and the class count of conditional models) then
follows the data.
"""

from __future__ import annotations

import dataclasses

from genlab.models.autoencoder import AutoencoderConfig
from genlab.models.diffusion import DiffusionConfig
from genlab.models.gan import GANConfig
from genlab.models.gpt import GPTConfig
from genlab.models.rnn import RNNConfig
from genlab.models.vae import VAEConfig
from genlab.registry import Recipe, register_recipe
from genlab.training.trainer import TrainConfig

_MNIST_TRAIN = TrainConfig(steps=3000, batch_size=128, lr=2e-3, warmup_steps=100, eval_every=500,
                           sample_every=1000, checkpoint_every=1000)  # fmt: skip
_DIGITS_TRAIN = TrainConfig(steps=2000, batch_size=64, lr=2e-3, warmup_steps=50, eval_every=250,
                            sample_every=500, checkpoint_every=500)  # fmt: skip
_DIGITS = {"height": 8, "width": 8}

RECIPES = [
    # autoencoders
    Recipe("ae-mnist", "ae", AutoencoderConfig(latent_dim=64), _MNIST_TRAIN, "mnist",
           "dense autoencoder 784→64→784 (the textbook one)"),
    Recipe("ae-digits", "ae", AutoencoderConfig(**_DIGITS, latent_dim=16, hidden_dims=(64,)), _DIGITS_TRAIN,
           "digits", "dense autoencoder on 8×8 digits"),
    Recipe("conv-ae-mnist", "ae", AutoencoderConfig(architecture="conv", latent_dim=32), _MNIST_TRAIN, "mnist",
           "convolutional autoencoder, two stride-2 stages"),
    Recipe("dae-mnist", "ae", AutoencoderConfig(latent_dim=64, hidden_dims=(256,), noise_std=0.3, mask_prob=0.2),
           _MNIST_TRAIN, "mnist", "denoising autoencoder (Gaussian + masking noise)"),
    # variational autoencoders
    Recipe("vae-mnist", "vae", VAEConfig(latent_dim=16, hidden_dims=(512, 256)), _MNIST_TRAIN, "mnist",
           "VAE, Bernoulli decoder, 16-d latent (the default recipe)"),
    Recipe("vae-digits", "vae", VAEConfig(**_DIGITS, latent_dim=8, hidden_dims=(128, 64)), _DIGITS_TRAIN,
           "digits", "VAE on 8×8 digits"),
    Recipe("conv-vae-mnist", "vae", VAEConfig(architecture="conv", latent_dim=16, hidden_dims=(256,)),
           _MNIST_TRAIN, "mnist", "convolutional VAE"),
    Recipe("beta-vae-mnist", "vae", VAEConfig(latent_dim=10, beta=4.0), _MNIST_TRAIN, "mnist",
           "β-VAE (β=4): smoother, more disentangled latents, blurrier samples"),
    Recipe("cvae-mnist", "vae", VAEConfig(latent_dim=16, num_classes=10), _MNIST_TRAIN, "mnist",
           "conditional VAE: sample --label 3 draws a three"),
    Recipe("vae-fashion-mnist", "vae", VAEConfig(architecture="conv", latent_dim=32, hidden_dims=(256,)),
           TrainConfig(steps=3000, batch_size=128, lr=2e-3, eval_every=500, sample_every=1000,
                       checkpoint_every=1000), "fashion-mnist",
           "convolutional VAE on full Fashion-MNIST, ~6 min on 2 cores (needs the Debian package)"),
    # diffusion
    Recipe("ddpm-mnist", "diffusion",
           DiffusionConfig(num_classes=10, base_channels=16, channel_mults=(1, 2, 4), attention_levels=(2,)),
           TrainConfig(steps=1000, batch_size=64, lr=2e-3, warmup_steps=100, ema_decay=0.995, eval_every=250,
                       sample_every=500, checkpoint_every=500), "mnist",
           "class-conditional DDPM, small UNet; sample --label 3 --guidance-scale 2 (~6 min on 2 cores)"),
    Recipe("ddpm-digits", "diffusion",
           DiffusionConfig(height=8, width=8, base_channels=32, channel_mults=(1, 2), attention_levels=(1,)),
           TrainConfig(steps=1500, batch_size=64, lr=2e-3, warmup_steps=100, ema_decay=0.995, eval_every=250,
                       sample_every=500, checkpoint_every=500), "digits", "unconditional DDPM on 8×8 digits"),
    # tiny ones for tests and smoke checks (seconds)
    Recipe("vae-tiny", "vae", VAEConfig(**_DIGITS, latent_dim=4, hidden_dims=(32,)),
           TrainConfig(steps=30, batch_size=32, lr=3e-3, warmup_steps=5, log_every=5, eval_every=10,
                       eval_batches=2, sample_every=0, checkpoint_every=10), "digits", "tiny VAE for tests"),
    Recipe("ae-tiny", "ae", AutoencoderConfig(**_DIGITS, latent_dim=4, hidden_dims=(32,)),
           TrainConfig(steps=30, batch_size=32, lr=3e-3, warmup_steps=5, log_every=5, eval_every=10,
                       eval_batches=2, sample_every=0, checkpoint_every=10), "digits", "tiny autoencoder for tests"),
    Recipe("ddpm-tiny", "diffusion",
           DiffusionConfig(height=8, width=8, num_classes=10, base_channels=8, channel_mults=(1, 2),
                           attention_levels=(1,), attention_heads=2, num_train_steps=100),
           TrainConfig(steps=30, batch_size=32, lr=3e-3, warmup_steps=5, log_every=5, eval_every=10,
                       eval_batches=2, sample_every=0, checkpoint_every=10), "digits", "tiny DDPM for tests"),
]  # fmt: skip

# GANs: Adam(β₁=0.5) at a constant lr (5e-4: 2.5× DCGAN's 2e-4, which gave blobs rather than digits in this
# budget), no gradient clipping, an EMA of the weights for sampling (it also averages D, which sampling never uses).
# Times: one thread on the 2-core CI machine while another job was running.
_GAN_TRAIN = TrainConfig(steps=2000, batch_size=64, lr=5e-4, lr_schedule="constant", warmup_steps=0, beta1=0.5,
                         beta2=0.999, grad_clip=0.0, ema_decay=0.999, log_every=25, eval_every=500,
                         eval_batches=5, sample_every=500, checkpoint_every=500)  # fmt: skip
RECIPES += [
    Recipe("dcgan-mnist", "gan", GANConfig(base_channels=32), _GAN_TRAIN, "mnist",
           "DCGAN (non-saturating BCE loss), ~4 min on 2 cores"),
    Recipe("wgan-gp-mnist", "gan", GANConfig(base_channels=32, loss="wgan-gp", d_norm="none", n_critic=5),
           dataclasses.replace(_GAN_TRAIN, steps=1000, batch_size=32, beta1=0.5, beta2=0.9), "mnist",
           "WGAN-GP: gradient-penalty critic, 5 critic steps per generator step (~6 min on 2 cores)"),
    Recipe("cgan-mnist", "gan", GANConfig(base_channels=32, num_classes=10), _GAN_TRAIN, "mnist",
           "conditional DCGAN, projection discriminator: sample --label 3 draws a three (~3.5 min)"),
    Recipe("sngan-mnist", "gan", GANConfig(base_channels=32, loss="hinge", spectral_norm=True, d_norm="none"),
           _GAN_TRAIN, "mnist", "SN-GAN: hinge loss, spectral norm on every discriminator layer (~3.5 min)"),
    Recipe("gan-tiny", "gan", GANConfig(**_DIGITS, latent_dim=8, base_channels=4),
           TrainConfig(steps=30, batch_size=32, lr=2e-4, lr_schedule="constant", warmup_steps=0, beta1=0.5,
                       grad_clip=0.0, log_every=5, eval_every=10, eval_batches=2, sample_every=0,
                       checkpoint_every=10), "digits", "tiny GAN for tests"),
]  # fmt: skip

# Language models: text (Shakespeare) and music (Bach chorales). AdamW with β₂ = 0.99 and weight decay 0.1 as
# nanoGPT's small models. Times: 2 threads on the 2-core CI machine (README table).
_LM_TRAIN = TrainConfig(steps=1000, batch_size=32, lr=2e-3, warmup_steps=100, beta2=0.99, weight_decay=0.1,
                        grad_clip=1.0, log_every=25, eval_every=250, eval_batches=10, sample_every=500,
                        checkpoint_every=250)  # fmt: skip
_TINY_LM_TRAIN = TrainConfig(steps=30, batch_size=8, lr=3e-3, warmup_steps=5, log_every=5, eval_every=10,
                             eval_batches=2, sample_every=0, checkpoint_every=10)  # fmt: skip
_SMALL_GPT = GPTConfig(context_length=128, num_layers=4, num_heads=4, embed_dim=192)
RECIPES += [
    Recipe("gpt-shakespeare", "gpt", _SMALL_GPT, _LM_TRAIN, "shakespeare",
           "character-level GPT (4 layers, 192 wide, context 128), ~10 min on 2 cores"),
    Recipe("gpt-bpe-shakespeare", "gpt", dataclasses.replace(_SMALL_GPT, tokenizer="bpe", bpe_vocab_size=2048),
           _LM_TRAIN, "shakespeare", "GPT on a 2,048-token byte-level BPE trained on the corpus, ~10 min"),
    Recipe("lstm-shakespeare", "rnn", RNNConfig(context_length=128, embed_dim=384, hidden_dim=384, num_layers=2,
                                                dropout=0.1), _LM_TRAIN, "shakespeare",
           "character-level 2-layer LSTM (384 units, tied embeddings), ~10 min"),
    Recipe("gpt-chorales", "gpt",
           dataclasses.replace(_SMALL_GPT, context_length=256, dropout=0.2, tokenizer="music"),
           dataclasses.replace(_LM_TRAIN, batch_size=16), "chorales",
           "GPT on Bach chorales as note events, ~10 min; generate --out piece.mid"),
    Recipe("gpt-tiny", "gpt",
           GPTConfig(context_length=32, num_layers=2, num_heads=2, embed_dim=32, positions="rotary"),
           _TINY_LM_TRAIN, "shakespeare", "tiny character-level GPT for tests"),
    Recipe("lstm-tiny", "rnn", RNNConfig(context_length=32, embed_dim=32, hidden_dim=48, num_layers=1, dropout=0.0),
           _TINY_LM_TRAIN, "shakespeare", "tiny character-level LSTM for tests"),
]  # fmt: skip

for _recipe in RECIPES:
    register_recipe(_recipe)
