"""Feature extractors for the image metrics, and the cache of real-data features.

Two extractors, each named with the hash of its weights in every result:

1. ``inception``: the standard FID Inception-v3 (:mod:`genlab.metrics.inception`), 2048-d pool
   features and 1008 logits, weights from a local file (``--inception-weights`` or
   ``$GENLAB_INCEPTION_WEIGHTS``); genlab never downloads them.
2. ``domain``: a small CNN classifier per bundled dataset (:class:`DomainNet`), trained by
   ``scripts/train_feature_nets.py`` and shipped in ``genlab/metrics/weights/`` as safetensors whose
   metadata records the script, seed, data hash and validation accuracy. 128-d features (global
   average of the last conv block, after ReLU, as Inception's pool3) and one logit per class.

Images are prepared the same way for both (clean-fid's "clean" policy): uint8 in, resized per
channel with PIL's bicubic filter in float ("F" mode, no re-quantisation) when the size differs,
grey replicated to RGB (or RGB to luma for a grey network), scaled to [0, 1].
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from genlab.data.datasets import ImageData, cache_dir
from genlab.errors import CheckpointError, ConfigError, DataError
from genlab.io import atomic_path, file_sha256
from genlab.metrics.image import GaussianStats

WEIGHTS_DIR = Path(__file__).parent / "weights"
RESIZE_POLICY = "PIL bicubic per channel in float from uint8 (clean-fid)"


# --- preparing images ---------------------------------------------------------------------------
def check_images(images: Any, what: str = "images") -> np.ndarray:
    """uint8 (N, H, W, C) with C in {1, 3}, or a one-line error."""
    images = np.asarray(images)
    if images.ndim == 3:  # (N, H, W) grey
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{what} must be (N, H, W, C) with 1 or 3 channels; got shape {images.shape}.")
    if images.dtype != np.uint8:
        raise DataError(
            f"{what} must be uint8 (0–255) so every tool quantises them the same way; got {images.dtype}. "
            "Convert with genlab.data.images.to_uint8 or np.clip(x * 255, 0, 255).round().astype(np.uint8)."
        )
    if len(images) == 0:
        raise DataError(f"{what}: no images were given.")
    return images


def prepare_images(images: np.ndarray, size: tuple[int, int], channels: int) -> Tensor:
    """uint8 (N, H, W, C) → float32 (N, channels, *size) in [0, 1], resized as ``RESIZE_POLICY``."""
    x = images.astype(np.float32)
    if x.shape[-1] != channels:
        x = np.repeat(x, 3, axis=-1) if channels == 3 else x @ np.array([[0.299], [0.587], [0.114]], np.float32)
    if x.shape[1:3] != tuple(size):
        h, w = size
        out = np.empty((len(x), h, w, channels), np.float32)
        for i in range(len(x)):
            for c in range(channels):
                plane = Image.fromarray(x[i, :, :, c], mode="F").resize((w, h), Image.Resampling.BICUBIC)
                out[i, :, :, c] = np.asarray(plane)
        x = np.clip(out, 0.0, 255.0)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))) / 255.0


# --- the domain network ------------------------------------------------------------------------
class DomainNet(nn.Module):
    """A small CNN classifier whose pooled conv features serve as the feature space.

    Three stages of 3×3 conv + BatchNorm + ReLU (``widths``; the later ones stride 2), global
    average pooling → features, dropout + linear → logits. Input: (B, C, H, W) in [0, 1].
    """

    def __init__(self, channels: int = 1, num_classes: int = 10, widths: tuple[int, ...] = (32, 64, 128),
                 dropout: float = 0.2) -> None:  # fmt: skip
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, 1 if i == 0 else 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if i < len(widths) - 1:
                layers += [nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x * 2 - 1).mean(dim=(2, 3))
        return features, self.head(self.dropout(features))


def _shift(x: Tensor, pad: int, generator: torch.Generator) -> Tensor:
    """Random translation by up to ``pad`` pixels (pad by edge values, random crop back)."""
    if pad == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    cropped = padded.gather(2, rows.to(x.device))
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(n, x.shape[1], h, w)
    return cropped.gather(3, cols.to(x.device))


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, *, seed: int,
                     epochs: int | None = None, steps: int | None = None, batch_size: int = 128, lr: float = 2e-3,
                     shift: int | None = None, device: str | torch.device = "cpu") -> DomainNet:  # fmt: skip
    """Train a :class:`DomainNet` on uint8 images for ``epochs`` passes or ``steps`` batches: AdamW,
    one-cycle learning rate, random shifts. The same fixed recipe trains the shipped feature
    networks and the classifiers of TSTR (which fix ``steps``, so every training set gets equal compute).
    """
    if (epochs is None) == (steps is None):
        raise ConfigError("give the classifier's budget as epochs or as steps (one of them).")
    images = check_images(images)
    x = prepare_images(images, images.shape[1:3], images.shape[-1]).to(device)
    y = torch.as_tensor(labels, dtype=torch.long, device=device)
    torch.manual_seed(seed)
    net = DomainNet(images.shape[-1], num_classes).to(device)
    total = steps if steps is not None else epochs * math.ceil(len(x) / batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
    g = torch.Generator().manual_seed(seed)
    pad = shift if shift is not None else max(1, images.shape[1] // 14)
    net.train()
    done = 0
    while done < total:
        order = torch.randperm(len(x), generator=g).to(device)
        for start in range(0, len(x), batch_size):
            if done == total:
                break
            done += 1
            idx = order[start : start + batch_size]
            _, logits = net(_shift(x[idx], pad, g))
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def classifier_accuracy(net: nn.Module, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 512) -> float:
    """Share of ``images`` (uint8 NHWC at the network's size) that ``net`` labels correctly."""
    device = next(net.parameters()).device
    correct = 0
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        x = prepare_images(chunk, chunk.shape[1:3], chunk.shape[-1]).to(device)
        pred = net(x)[1].argmax(1).cpu().numpy()
        correct += int((pred == labels[start : start + batch_size]).sum())
    return correct / len(images)


# --- extractors ------------------------------------------------------------------------------------
@dataclass
class Extractor:
    """A feature network with its provenance. Call it on uint8 images → (features, logits), float32."""

    name: str
    network: nn.Module  # forward(x (B, C, H, W) in [0, 1]) → (features, logits)
    weights_sha256: str
    feature_dim: int
    num_classes: int
    input_size: tuple[int, int]  # (H, W)
    channels: int
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def describe(self, image_size: tuple[int, int] | None = None) -> dict[str, Any]:
        """The provenance recorded with every result."""
        resized = image_size is not None and tuple(image_size) != self.input_size
        return {
            "name": self.name,
            "weights_sha256": self.weights_sha256,
            "feature_dim": self.feature_dim,
            "input_size": list(self.input_size),
            "channels": self.channels,
            "resize": RESIZE_POLICY if resized else "none (images are at the extractor's size)",
            "quantisation": "uint8",
            **{k: self.card[k] for k in ("val_accuracy", "dataset", "seed", "script") if k in self.card},
        }

    def batches(self, images: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        images = check_images(images)
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = prepare_images(images[start : start + batch_size], self.input_size, self.channels)
                features, logits = self.network(x.to(self.device))
                yield features.float().cpu().numpy(), logits.float().cpu().numpy()

    def __call__(self, images: np.ndarray, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        parts = list(self.batches(images, batch_size))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def domain_weights_path(dataset: str) -> Path:
    return WEIGHTS_DIR / f"domain-{dataset}.safetensors"


def shipped_domain_datasets() -> list[str]:
    return sorted(p.stem.removeprefix("domain-") for p in WEIGHTS_DIR.glob("domain-*.safetensors"))


def save_domain_net(net: DomainNet, path: Path, card: dict[str, Any]) -> None:
    """Weights as safetensors with the card (JSON) in the file's metadata, written atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"genlab_card": json.dumps(card, sort_keys=True)})


def load_domain_net(path: str | Path, *, device: str | torch.device = "cpu") -> Extractor:
    """A :class:`DomainNet` feature extractor from a safetensors file written by :func:`save_domain_net`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no domain feature network at {path}; train one with scripts/train_feature_nets.py.")
    try:
        with safe_open(str(path), "pt") as f:
            card = json.loads((f.metadata() or {})["genlab_card"])
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, KeyError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a genlab domain feature network ({exc}).") from None
    net = DomainNet(card["channels"], card["num_classes"], tuple(card["widths"]))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(f"{path} does not match its card's architecture: {first}") from None
    net.to(device).eval()
    return Extractor(
        name=f"domain:{card['dataset']}", network=net, weights_sha256=file_sha256(path),
        feature_dim=card["widths"][-1], num_classes=card["num_classes"],
        input_size=(card["height"], card["width"]), channels=card["channels"], card=card,
    )  # fmt: skip


def load_extractor(kind: str, *, dataset: str | None = None, inception_weights: str | Path | None = None,
                   device: str | torch.device = "cpu") -> Extractor:  # fmt: skip
    """``kind`` "domain" (the shipped network of ``dataset``) or "inception" (weights from a local file)."""
    if kind == "inception":
        from genlab.metrics import inception

        path = inception.inception_weights_path(inception_weights)
        if path is None:
            raise CheckpointError(
                "the Inception extractor needs its weights: pass --inception-weights PATH (or set "
                "GENLAB_INCEPTION_WEIGHTS) to pytorch-fid's pt_inception-2015-12-05-6726825d.pth; genlab never "
                "downloads them. Or use --extractor domain."
            )
        net, sha = inception.load_inception(path, device=device)
        size = (inception.INPUT_SIZE, inception.INPUT_SIZE)
        return Extractor("inception-v3-fid", net, sha, inception.FEATURE_DIM, inception.NUM_CLASSES, size, 3,
                         {"weights_file": str(path)})  # fmt: skip
    if kind != "domain":
        raise DataError(f"unknown extractor {kind!r}; choose 'domain' or 'inception'.")
    if os.environ.get("GENLAB_DOMAIN_WEIGHTS"):
        return load_domain_net(os.environ["GENLAB_DOMAIN_WEIGHTS"], device=device)
    shipped = shipped_domain_datasets()
    if dataset not in shipped:
        raise DataError(
            f"no domain feature network ships for {dataset!r} (they exist for {', '.join(shipped) or 'none'}); "
            "use --extractor inception with --inception-weights PATH, or train one with "
            "scripts/train_feature_nets.py --data PATH and set GENLAB_DOMAIN_WEIGHTS to its file."
        )
    return load_domain_net(domain_weights_path(dataset), device=device)


# --- cached real features ------------------------------------------------------------------------
@dataclass(frozen=True)
class RealFeatures:
    """Features, logits and Gaussian statistics of a real dataset under one extractor."""

    features: np.ndarray  # float32 (N, D)
    logits: np.ndarray  # float32 (N, K)
    stats: GaussianStats  # float64


def real_features(extractor: Extractor, data: ImageData, *, batch_size: int = 256) -> RealFeatures:
    """:class:`RealFeatures` of ``data``, computed once per (extractor weights, data content) and
    cached under ``$GENLAB_CACHE/features/`` as an .npz (read back without pickle)."""
    key = hashlib.sha256(f"{extractor.weights_sha256}:{data.content_hash()}:{RESIZE_POLICY}".encode()).hexdigest()
    path = cache_dir() / "features" / f"{key[:32]}.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            stats = GaussianStats(f["mean"], f["cov"], int(f["n"]))
            return RealFeatures(f["features"], f["logits"], stats)
    except (OSError, ValueError, KeyError):
        pass
    features, logits = extractor(data.images, batch_size=batch_size)
    stats = GaussianStats.of(features)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=features, logits=logits, mean=stats.mean, cov=stats.cov, n=stats.n)
    except OSError:  # a read-only cache only costs the speed-up
        pass
    return RealFeatures(features, logits, stats)
