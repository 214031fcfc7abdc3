"""Data: bundled datasets, the user's own files, image I/O, text and music, tokenizers."""

from genlab.data.datasets import DATASETS, DatasetInfo, ImageData, load_images
from genlab.data.images import make_grid, save_grid, save_image, to_tensor, to_uint8
from genlab.data.text import TextData, load_text
from genlab.data.tokenizers import Tokenizer, load_tokenizer

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "ImageData",
    "TextData",
    "Tokenizer",
    "load_images",
    "load_text",
    "load_tokenizer",
    "make_grid",
    "save_grid",
    "save_image",
    "to_tensor",
    "to_uint8",
]
