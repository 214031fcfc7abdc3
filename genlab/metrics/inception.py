"""The Inception-v3 network that FID and the Inception Score are defined with, in plain torch.

FID as published (Heusel et al., 2017) uses the TensorFlow "2015-12-05" Inception-v3 graph. pytorch-fid
(github.com/mseitzer/pytorch-fid, ``src/pytorch_fid/inception.py``) ports it onto torchvision's ``Inception3``
(``torchvision/models/inception.py``) with four patched blocks and a 1008-class classifier, and ships the
converted weights as ``pt_inception-2015-12-05-6726825d.pth``. This file rebuilds that network without
torchvision, with the same module names, so the state dict keys and shapes are those of pytorch-fid's file:

- ``FIDInceptionA``/``FIDInceptionC`` and ``FIDInceptionE(pool="avg")`` (pytorch-fid's ``FIDInceptionE_1``)
  average-pool with ``count_include_pad=False``: TensorFlow leaves the padded zeros out of the mean.
- ``FIDInceptionE(pool="max")`` (pytorch-fid's ``FIDInceptionE_2``, Mixed_7c) max-pools its pool branch.
- no AuxLogits (pytorch-fid builds ``Inception3(num_classes=1008, aux_logits=False)``) and ``fc`` is 2048 → 1008.

genlab never downloads the weights: the caller passes the file (``--inception-weights PATH`` or the
``GENLAB_INCEPTION_WEIGHTS`` environment variable), and it is loaded without unpickling any Python object.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genlab.errors import CheckpointError, ConfigError
from genlab.io import atomic_path, file_sha256

FEATURE_DIM = 2048  # pool3: the global average pool after Mixed_7c, what FID compares
NUM_CLASSES = 1008  # the 2015-12-05 graph's classifier (1000 ImageNet classes + 8 unused)
INPUT_SIZE = 299
WEIGHTS_ENV_VAR = "GENLAB_INCEPTION_WEIGHTS"
WEIGHTS_FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid's release asset "fid_weights"
_WEIGHTS_HINT = (
    f"pass --inception-weights PATH or set {WEIGHTS_ENV_VAR} to pytorch-fid's {WEIGHTS_FILE_NAME} "
    "(genlab never downloads it)"
)


# --- blocks (torchvision's Inception3 names, pytorch-fid's FID patches) -----------------------------------
class BasicConv2d(nn.Module):
    """Conv (no bias) → BatchNorm (eps 0.001, TensorFlow's) → ReLU, as torchvision's ``BasicConv2d``."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: Tensor) -> Tensor:
    # TensorFlow's 3×3 "SAME" average pool divides by the number of real pixels under the window.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """Mixed_5b/5c/5d: torchvision's ``InceptionA`` with the TensorFlow average pool. (B, C, 35, 35) in and out."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], dim=1)  # 224 + pool_features


class InceptionB(nn.Module):
    """Mixed_6a, unpatched: (B, 288, 35, 35) → (B, 768, 17, 17)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), branch3x3dbl, branch_pool], dim=1)


class FIDInceptionC(nn.Module):
    """Mixed_6b–6e: torchvision's ``InceptionC`` (factorised 7×7) with the TensorFlow average pool. 768 → 768."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        branch_pool = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], dim=1)


class InceptionD(nn.Module):
    """Mixed_7a, unpatched: (B, 768, 17, 17) → (B, 1280, 8, 8)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = layer(branch7x7x3)
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], dim=1)


class FIDInceptionE(nn.Module):
    """Mixed_7b (``pool="avg"``, pytorch-fid's ``FIDInceptionE_1``) and Mixed_7c (``pool="max"``, ``FIDInceptionE_2``).

    torchvision's ``InceptionE`` average-pools its pool branch; the 2015-12-05 graph max-pools it in Mixed_7c
    and uses the TensorFlow average pool in Mixed_7b. (B, C, 8, 8) → (B, 2048, 8, 8).
    """

    def __init__(self, in_channels: int, *, pool: Literal["avg", "max"]) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ConfigError(f"unknown Inception-E pool {pool!r}; valid pools: 'avg', 'max'.")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], dim=1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], dim=1)
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _tf_avg_pool(x)
        branch_pool = self.branch_pool(pooled)
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, branch_pool], dim=1)  # 320+768+768+192


# --- the network ------------------------------------------------------------------------------------------
class FIDInceptionV3(nn.Module):
    """pytorch-fid's ``fid_inception_v3()`` network: images → (pool3 features, 1008-class logits).

    The dropout before ``fc`` is left out: it is the identity in eval mode, the only mode this network is for.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    @torch.no_grad()
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, 299, 299) floats in [0, 1] → (features (B, 2048), logits (B, 1008)), without gradients.

        The caller resizes to 299×299 and replicates grey images to 3 channels. Features are pool3, what FID
        compares; logits are ``fc(features)``, what the Inception Score uses.
        """
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE) or not x.is_floating_point():
            raise ConfigError(
                f"the FID Inception-v3 takes float images of shape (B, 3, {INPUT_SIZE}, {INPUT_SIZE}) in [0, 1], "
                f"got {x.dtype} {tuple(x.shape)}; resize to {INPUT_SIZE}×{INPUT_SIZE} and repeat grey images "
                "to 3 channels (x.expand(-1, 3, -1, -1)) first."
            )
        x = 2 * x - 1  # [0, 1] → [-1, 1], pytorch-fid's normalize_input=True
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (B, 64, 147, 147)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.maxpool1(x)))  # (B, 192, 71, 71)
        x = self.maxpool2(x)  # (B, 192, 35, 35)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a):
            x = block(x)  # → (B, 768, 17, 17)
        for block in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a):
            x = block(x)  # → (B, 1280, 8, 8)
        x = self.Mixed_7c(self.Mixed_7b(x))  # (B, 2048, 8, 8)
        features = torch.flatten(self.avgpool(x), 1)  # (B, 2048)
        return features, self.fc(features)


# --- weights ----------------------------------------------------------------------------------------------
def inception_weights_path(explicit: str | Path | None) -> Path | None:
    """The weights file to use: ``explicit`` if given, else ``$GENLAB_INCEPTION_WEIGHTS``, else None."""
    if explicit is not None:
        return Path(explicit)
    from_env = os.environ.get(WEIGHTS_ENV_VAR)
    return Path(from_env) if from_env else None


def load_inception(path: str | Path | None, *, device: str | torch.device = "cpu") -> tuple[FIDInceptionV3, str]:
    """The eval-mode FID Inception-v3 with the weights in ``path`` and the file's sha256 (hex).

    ``path`` is a ``.safetensors`` file or a ``.pth``/``.pt`` state dict (pytorch-fid's ``WEIGHTS_FILE_NAME``),
    read with ``weights_only=True``. ``None`` (nothing configured) raises the same error as a missing file.
    """
    if path is None or not Path(path).is_file():
        where = "no Inception weights file was given" if path is None else f"Inception weights not found at {path}"
        raise CheckpointError(f"{where}; {_WEIGHTS_HINT}.")
    path = Path(path)
    state = _strip_prefix(_read_state_dict(path), "module.")
    model = FIDInceptionV3()
    _check_state_dict(state, model.state_dict(), path)
    # BatchNorm's num_batches_tracked is unused in eval mode and absent from files saved by older PyTorch.
    state = {**{k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}, **state}
    model.load_state_dict(state)
    model.requires_grad_(False)
    return model.eval().to(device), file_sha256(path)


def save_inception(model: FIDInceptionV3, path: str | Path) -> None:
    """Write the network's state dict as ``.safetensors`` (convert pytorch-fid's ``.pth`` once, load it faster)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"save_inception writes safetensors; name the file *.safetensors, not {path.name!r}.")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def _read_state_dict(path: Path) -> Mapping[str, Tensor]:
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".pth", ".pt"):
        raise CheckpointError(f"Inception weights {path} must be .safetensors, .pth or .pt, not {suffix!r}.")
    try:
        if suffix == ".safetensors":
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # every reader failure (zip, pickle, safetensors header) means the same to the user
        pickled = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))  # weights_only refused a class
        if pickled:
            raise CheckpointError(
                f"Inception weights {path} hold pickled Python objects ({pickled.group(1)}), which genlab does not "
                "unpickle; re-save them as a plain state dict of tensors (torch.save(model.state_dict(), path)) "
                "or as .safetensors."
            ) from None
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        if "Weights only load failed" in reason:  # torch's text goes on to suggest weights_only=False: never
            reason = "not a torch.save file"
        raise CheckpointError(
            f"cannot read Inception weights {path} ({type(exc).__name__}: {reason}); the file is corrupt or "
            f"truncated: fetch pytorch-fid's {WEIGHTS_FILE_NAME} again."
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        found = type(state).__name__ if not isinstance(state, Mapping) else "a dict with non-tensor values"
        raise CheckpointError(
            f"Inception weights {path} are not a state dict of tensors (found {found}); "
            f"use pytorch-fid's {WEIGHTS_FILE_NAME} or a file written by save_inception."
        )
    return state


def _strip_prefix(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    # nn.DataParallel saves every key as "module.<name>".
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def _check_state_dict(state: Mapping[str, Tensor], expected: Mapping[str, Tensor], path: Path) -> None:
    foreign = ""
    fc = state.get("fc.weight")
    if any(k.startswith("AuxLogits.") for k in state) or (fc is not None and fc.shape[0] != NUM_CLASSES):
        foreign = (
            " — this looks like torchvision's ImageNet Inception-v3, not the FID network "
            f"(the TensorFlow 2015-12-05 graph with {NUM_CLASSES} classes)"
        )
    required = {k for k in expected if not k.endswith("num_batches_tracked")}
    missing = sorted(required - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = [f"{_count(missing, 'missing')} ({_first(missing)})"] if missing else []
        parts += [f"{_count(unexpected, 'unexpected')} ({_first(unexpected)})"] if unexpected else []
        raise CheckpointError(
            f"Inception weights {path} do not fit the FID Inception-v3: {' and '.join(parts)}{foreign}; "
            f"use pytorch-fid's {WEIGHTS_FILE_NAME}."
        )
    for key, reference in expected.items():
        if key in state and state[key].shape != reference.shape:
            raise CheckpointError(
                f"Inception weights {path}: {key} has shape {tuple(state[key].shape)}, the FID Inception-v3 "
                f"needs {tuple(reference.shape)}{foreign}; use pytorch-fid's {WEIGHTS_FILE_NAME}."
            )


def _count(keys: list[str], kind: str) -> str:
    return f"{len(keys)} {kind} key" + ("" if len(keys) == 1 else "s")


def _first(keys: list[str], count: int = 3) -> str:
    return ", ".join(keys[:count]) + (", …" if len(keys) > count else "")
