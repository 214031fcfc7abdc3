"""Image I/O with numpy and Pillow (no torchvision): reading folders and arrays, resizing,
converting between uint8 and model ranges, and writing grids.

Images travel through genlab as ``uint8`` arrays of shape (N, H, W, C), C = 1 (grey) or 3 (RGB),
the format anyone's tools read; models see float tensors (N, C, H, W) in their data range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from genlab.errors import DataError
from genlab.io import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


# --- single images -----------------------------------------------------------------------------
def _fit(img: Image.Image, size: tuple[int, int] | None, mode: str) -> Image.Image:
    """Resize the shorter side to fit ``size`` (bicubic), centre-crop the rest; ``mode``: 'crop'|'resize'."""
    if size is None or img.size == (size[1], size[0]):
        return img
    height, width = size
    if mode == "resize":
        return img.resize((width, height), Image.Resampling.BICUBIC)
    if mode != "crop":
        raise DataError(f"resize mode {mode!r} is not one of 'crop', 'resize'.")
    scale = max(width / img.width, height / img.height)
    new = (max(width, round(img.width * scale)), max(height, round(img.height * scale)))
    img = img.resize(new, Image.Resampling.BICUBIC)
    left, top = (new[0] - width) // 2, (new[1] - height) // 2
    return img.crop((left, top, left + width, top + height))


def read_image(
    path: str | Path, *, channels: int | None = None, size: tuple[int, int] | None = None, resize: str = "crop"
) -> np.ndarray:
    """Read one image file → uint8 (H, W, C). ``channels`` 1 or 3 converts; None keeps grey as grey."""
    try:
        with Image.open(path) as img:
            img.load()
            if channels is None:
                channels = 1 if img.mode in ("L", "1", "I", "I;16", "F", "LA") else 3
            img = img.convert("L" if channels == 1 else "RGB")
            img = _fit(img, size, resize)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}. Remove or replace the file.") from None
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def list_image_files(folder: Path) -> list[Path]:
    """Every image file below ``folder``, sorted: the item order of a folder dataset."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_image_folder(
    folder: str | Path, *, channels: int | None = None, size: tuple[int, int] | None = None, resize: str = "crop"
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Every image below ``folder`` → (uint8 (N, H, W, C), labels or None, class names).

    Images in sub-folders are labelled by the sub-folder name (``folder/cat/1.png`` → class
    ``cat``), as torchvision's ImageFolder does; images directly in ``folder`` are unlabelled.
    Without ``size`` all images must already share one size (the error says how to fix it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist.")
    files = list_image_files(folder)
    if not files:
        raise DataError(f"data folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); put your images there.")
    if channels is None:  # colour if any image is colour, so one RGB file is not squashed to grey
        channels = 1 if all(_is_grey(p) for p in files) else 3
    images = [read_image(p, channels=channels, size=size, resize=resize) for p in files]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"images in {folder} have different sizes {sorted(s[:2] for s in shapes)[:3]}…; "
            "pass --image-size N to resize them all."
        )
    rel_dirs = [p.parent.relative_to(folder).parts for p in files]
    if all(len(parts) >= 1 for parts in rel_dirs):
        class_names = sorted({parts[0] for parts in rel_dirs})
        index = {name: i for i, name in enumerate(class_names)}
        labels = np.array([index[parts[0]] for parts in rel_dirs], dtype=np.int64)
        return np.stack(images), labels, class_names
    return np.stack(images), None, []


def _is_grey(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            return img.mode in ("L", "1", "I", "I;16", "F", "LA")
    except (UnidentifiedImageError, OSError):
        return True  # read_image reports the bad file with its name


def as_uint8_images(array: np.ndarray, *, source: str) -> np.ndarray:
    """Coerce a user array (N, H, W), (N, H, W, C) or (N, C, H, W) of uint8 / [0, 1] / [0, 255] floats
    to uint8 (N, H, W, C)."""
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise DataError(f"{source}: expected images of shape (N, H, W[, C]), got {array.shape}.")
    if array.shape[-1] not in (1, 3) and array.shape[1] in (1, 3):
        array = array.transpose(0, 2, 3, 1)  # NCHW → NHWC
    if array.shape[-1] not in (1, 3):
        raise DataError(f"{source}: images need 1 or 3 channels, got shape {array.shape}.")
    if array.shape[0] == 0:
        raise DataError(f"{source} holds no images.")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{source}: images must be numbers, got dtype {array.dtype}.")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise DataError(f"{source}: images contain NaN or infinite values.")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise DataError(f"{source}: pixel values span [{low:g}, {high:g}]; expected [0, 1] or [0, 255].")
    scale = 255.0 if high <= 1.0 else 1.0
    return np.clip(np.rint(array * scale), 0, 255).astype(np.uint8)


def resize_images(images: np.ndarray, size: tuple[int, int], resize: str = "crop") -> np.ndarray:
    """Resize uint8 (N, H, W, C) images with Pillow bicubic."""
    if images.shape[1:3] == tuple(size):
        return images
    channels = images.shape[-1]
    out = []
    for im in images:
        pil = Image.fromarray(im[..., 0] if channels == 1 else im)
        out.append(np.asarray(_fit(pil, size, resize), dtype=np.uint8).reshape(size[0], size[1], channels))
    return np.stack(out)


# --- ranges ------------------------------------------------------------------------------------
def to_tensor(images: np.ndarray, data_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """uint8 (N, H, W, C) → float32 (N, C, H, W) scaled to ``data_range``."""
    low, high = data_range
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return x * (high - low) + low


def to_uint8(x: torch.Tensor, data_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """float (N, C, H, W) in ``data_range`` → uint8 (N, H, W, C), rounded and clipped."""
    low, high = data_range
    x = ((x.detach().float().cpu() - low) / (high - low)).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


# --- output ------------------------------------------------------------------------------------
def make_grid(images: np.ndarray, *, ncol: int | None = None, pad: int = 2, scale: int = 1) -> np.ndarray:
    """uint8 (N, H, W, C) → one uint8 (H', W', C) image with ``ncol`` columns and ``pad`` pixel gaps."""
    n, h, w, c = images.shape
    ncol = ncol or max(1, int(np.ceil(np.sqrt(n))))
    nrow = int(np.ceil(n / ncol))
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = im
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return grid


def grid_scale(height: int) -> int:
    """Upscale factor that makes small images (8×8 digits) visible in a grid."""
    return max(1, 64 // max(height, 1))


def save_image(image: np.ndarray, path: str | Path) -> Path:
    """Write one uint8 (H, W, C) image atomically; the suffix picks the format."""
    path = Path(path)
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot write {path}: unknown image suffix {path.suffix!r}; use .png.")
    with atomic_path(path) as tmp:
        pil.save(tmp, format=fmt)
    return path


def save_grid(images: np.ndarray, path: str | Path, *, ncol: int | None = None) -> Path:
    return save_image(make_grid(images, ncol=ncol, scale=grid_scale(images.shape[1])), path)
