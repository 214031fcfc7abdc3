"""Model families. Importing this package registers every family with :mod:`genlab.registry`."""

from genlab.models.autoencoder import Autoencoder, AutoencoderConfig
from genlab.models.base import Batch, GenerativeModel, Loss
from genlab.models.vae import VAE, VAEConfig

__all__ = ["VAE", "Autoencoder", "AutoencoderConfig", "Batch", "GenerativeModel", "Loss", "VAEConfig"]
