"""Encoders and decoders for images, shared by the autoencoder and VAE families.

Both come in two architectures: ``mlp`` (flatten → dense layers, the textbook 784→64→784) and
``conv`` (stride-2 convolutions that halve the image per stage, mirrored by transposed
convolutions). A class label, when given, enters as a one-hot vector concatenated to the flat
features of the encoder and to the code of the decoder (Sohn et al. 2015, conditional VAE).
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import ConfigError

Activation = Literal["relu", "silu", "gelu", "leaky_relu"]
Architecture = Literal["mlp", "conv"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ConfigError(f"activation {name!r} is not one of {', '.join(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]()


def mlp(sizes: list[int], act: str) -> nn.Sequential:
    """Dense layers ``sizes[0] → … → sizes[-1]`` with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


def check_conv_size(height: int, width: int, stages: int) -> None:
    """A conv encoder halves the image ``stages`` times: both sides must divide by 2**stages."""
    factor = 2**stages
    if height % factor or width % factor or height < factor or width < factor:
        raise ConfigError(
            f"a conv model with {stages} stages needs image sides divisible by {factor}, got {height}×{width}; "
            f"resize the data (--image-size {max(factor, round(height / factor) * factor)}) "
            "or change conv_channels (one entry per stage)."
        )


def one_hot(labels: Tensor | None, num_classes: int, batch: int, device: torch.device) -> Tensor | None:
    if num_classes == 0:
        return None
    if labels is None:
        raise ConfigError(f"this model is conditioned on {num_classes} classes; give a label per item.")
    return F.one_hot(labels.long(), num_classes).float().to(device)


def _cat(x: Tensor, cond: Tensor | None) -> Tensor:
    return x if cond is None else torch.cat([x, cond], dim=1)


class ImageEncoder(nn.Module):
    """(B, C, H, W) [+ one-hot (B, K)] → (B, out_dim) features (no activation on the output)."""

    def __init__(
        self,
        *,
        channels: int,
        height: int,
        width: int,
        architecture: str,
        hidden_dims: tuple[int, ...],
        conv_channels: tuple[int, ...],
        act: str,
        out_dim: int,
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        self.architecture = architecture
        if architecture == "mlp":
            self.body = nn.Identity()
            flat = channels * height * width
            self.head = mlp([flat + cond_dim, *hidden_dims, out_dim], act)
        elif architecture == "conv":
            check_conv_size(height, width, len(conv_channels))
            layers: list[nn.Module] = []
            c_in = channels
            for c in conv_channels:  # each stage halves H and W
                layers += [nn.Conv2d(c_in, c, kernel_size=4, stride=2, padding=1), activation(act)]
                c_in = c
            self.body = nn.Sequential(*layers)
            factor = 2 ** len(conv_channels)
            flat = c_in * (height // factor) * (width // factor)
            self.head = mlp([flat + cond_dim, *hidden_dims, out_dim], act)
        else:
            raise ConfigError(f"architecture {architecture!r} is not one of 'mlp', 'conv'.")

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.body(x).flatten(1)  # (B, flat)
        return self.head(_cat(h, cond))


class ImageDecoder(nn.Module):
    """(B, in_dim) [+ one-hot (B, K)] → (B, C, H, W) unbounded outputs (logits or means before
    the output link)."""

    def __init__(
        self,
        *,
        channels: int,
        height: int,
        width: int,
        architecture: str,
        hidden_dims: tuple[int, ...],
        conv_channels: tuple[int, ...],
        act: str,
        in_dim: int,
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        self.shape = (channels, height, width)
        if architecture == "mlp":
            self.head = mlp([in_dim + cond_dim, *reversed(hidden_dims), channels * height * width], act)
            self.body = None
        elif architecture == "conv":
            check_conv_size(height, width, len(conv_channels))
            factor = 2 ** len(conv_channels)
            self.start = (conv_channels[-1], height // factor, width // factor)
            flat = conv_channels[-1] * self.start[1] * self.start[2]
            self.head = nn.Sequential(mlp([in_dim + cond_dim, *reversed(hidden_dims), flat], act), activation(act))
            chans = [*reversed(conv_channels), conv_channels[0]]
            layers: list[nn.Module] = []
            for a, b in itertools.pairwise(chans):  # each stage doubles H and W
                layers += [nn.ConvTranspose2d(a, b, kernel_size=4, stride=2, padding=1), activation(act)]
            layers.append(nn.Conv2d(conv_channels[0], channels, kernel_size=3, padding=1))
            self.body = nn.Sequential(*layers)
        else:
            raise ConfigError(f"architecture {architecture!r} is not one of 'mlp', 'conv'.")

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.head(_cat(z, cond))
        if self.body is None:
            return h.view(-1, *self.shape)
        return self.body(h.view(-1, *self.start))


def image_coder_kwargs(config) -> dict:
    """The encoder/decoder arguments every image autoencoder config carries."""
    return {
        "channels": config.channels,
        "height": config.height,
        "width": config.width,
        "architecture": config.architecture,
        "hidden_dims": config.hidden_dims,
        "conv_channels": config.conv_channels,
        "act": config.activation,
    }


def check_image_config(config) -> None:
    """Range checks shared by the image autoencoder configs (called from ``__post_init__``)."""
    for name in ("channels", "height", "width", "latent_dim"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name}={getattr(config, name)} must be at least 1.")
    if any(d < 1 for d in (*config.hidden_dims, *config.conv_channels)):
        raise ConfigError("hidden_dims and conv_channels must hold positive sizes.")
    if config.architecture == "conv":
        if not config.conv_channels:
            raise ConfigError("a conv model needs at least one entry in conv_channels, e.g. conv_channels=[32,64].")
        check_conv_size(config.height, config.width, len(config.conv_channels))
