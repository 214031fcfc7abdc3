"""Model families. Importing this package registers every family with :mod:`genlab.registry`."""

from genlab.models.autoencoder import Autoencoder, AutoencoderConfig
from genlab.models.base import Batch, GenerativeModel, Loss
from genlab.models.diffusion import Diffusion, DiffusionConfig
from genlab.models.gan import GAN, GANConfig
from genlab.models.gpt import GPT, GPTConfig
from genlab.models.rnn import RNNConfig, RNNLanguageModel
from genlab.models.vae import VAE, VAEConfig

__all__ = [
    "GAN",
    "GPT",
    "VAE",
    "Autoencoder",
    "AutoencoderConfig",
    "Batch",
    "Diffusion",
    "DiffusionConfig",
    "GANConfig",
    "GPTConfig",
    "GenerativeModel",
    "Loss",
    "RNNConfig",
    "RNNLanguageModel",
    "VAEConfig",
]
