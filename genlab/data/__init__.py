"""Data: bundled datasets, the user's own files, image I/O."""

from genlab.data.datasets import DATASETS, DatasetInfo, ImageData, load_images
from genlab.data.images import make_grid, save_grid, save_image, to_tensor, to_uint8

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "ImageData",
    "load_images",
    "make_grid",
    "save_grid",
    "save_image",
    "to_tensor",
    "to_uint8",
]
