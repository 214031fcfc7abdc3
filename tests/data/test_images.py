"""genlab.data.images: reading files and folders, coercing arrays, ranges, grids and writing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data.images import (
    as_uint8_images,
    load_image_folder,
    make_grid,
    read_image,
    resize_images,
    save_image,
    to_tensor,
    to_uint8,
)
from genlab.errors import DataError


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _write(path, array: np.ndarray, **save_kwargs):
    """Write uint8 (H, W) or (H, W, 3) with Pillow, the suffix picking the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_kwargs)
    return path


def _bands(height: int = 10) -> np.ndarray:
    """A 3:1 grey image: black | white | black thirds (H, 3H)."""
    image = np.zeros((height, 3 * height), dtype=np.uint8)
    image[:, height : 2 * height] = 255
    return image


# --- read_image --------------------------------------------------------------------------------
def test_read_grey_png_exactly(tmp_path):
    pixels = _rng().integers(0, 256, (6, 5), dtype=np.uint8)
    image = read_image(_write(tmp_path / "g.png", pixels))
    assert image.shape == (6, 5, 1) and image.dtype == np.uint8
    assert np.array_equal(image[..., 0], pixels)


def test_read_rgb_png_exactly(tmp_path):
    pixels = _rng().integers(0, 256, (4, 7, 3), dtype=np.uint8)
    image = read_image(_write(tmp_path / "c.png", pixels))
    assert image.shape == (4, 7, 3)
    assert np.array_equal(image, pixels)


def test_read_jpeg_grey_and_rgb(tmp_path):
    grey = np.full((16, 16), 120, dtype=np.uint8)
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    image = read_image(_write(tmp_path / "g.jpg", grey, quality=95))
    assert image.shape == (16, 16, 1) and np.abs(image.astype(int) - 120).max() <= 2
    image = read_image(_write(tmp_path / "c.jpeg", rgb, quality=95))
    assert image.shape == (16, 16, 3)
    assert np.abs(image.astype(int) - [200, 0, 0]).max() <= 4


def test_read_converts_channels(tmp_path):
    rgb = _rng().integers(0, 256, (5, 5, 3), dtype=np.uint8)
    path = _write(tmp_path / "c.png", rgb)
    grey = read_image(path, channels=1)
    assert grey.shape == (5, 5, 1)
    assert np.array_equal(grey[..., 0], np.asarray(Image.fromarray(rgb).convert("L")))
    again = read_image(_write(tmp_path / "g.png", grey[..., 0]), channels=3)
    assert again.shape == (5, 5, 3)
    assert np.array_equal(again[..., 0], grey[..., 0]) and np.array_equal(again[..., 2], grey[..., 0])


def test_read_resize_crop_keeps_centre_resize_squashes(tmp_path):
    path = _write(tmp_path / "bands.png", _bands(10))  # 10 high, 30 wide
    cropped = read_image(path, size=(10, 10), resize="crop")
    assert cropped.shape == (10, 10, 1)
    assert cropped.min() >= 250  # only the white centre third survives the crop
    squashed = read_image(path, size=(10, 10), resize="resize")
    assert squashed.shape == (10, 10, 1)
    assert squashed[:, 0].max() <= 5 and squashed[:, -1].max() <= 5 and squashed[:, 5].min() >= 250


def test_read_crop_to_non_square_size(tmp_path):
    path = _write(tmp_path / "c.png", _rng().integers(0, 256, (20, 40, 3), dtype=np.uint8))
    assert read_image(path, size=(6, 4)).shape == (6, 4, 3)
    assert read_image(path, size=(6, 4), resize="resize").shape == (6, 4, 3)


def test_read_unknown_resize_mode(tmp_path):
    path = _write(tmp_path / "g.png", _bands(4))
    with pytest.raises(DataError, match="resize mode 'stretch' is not one of 'crop', 'resize'"):
        read_image(path, size=(4, 4), resize="stretch")


def test_corrupt_image_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(DataError, match=r"cannot read image .*broken\.png.*Remove or replace the file"):
        read_image(bad)
    good = _write(tmp_path / "cut.png", _rng().integers(0, 256, (64, 64, 3), dtype=np.uint8))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match=r"truncated\.png"):
        read_image(truncated)


# --- load_image_folder -------------------------------------------------------------------------
def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(3):
        _write(tmp_path / f"{i}.png", np.full((4, 4), 10 * i, dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    images, labels, names = load_image_folder(tmp_path)
    assert images.shape == (3, 4, 4, 1) and labels is None and names == []
    assert sorted(images[:, 0, 0, 0].tolist()) == [0, 10, 20]


def test_class_subfolders_are_labelled_by_name(tmp_path):
    counts = {"cat": 2, "dog": 3, "ant": 1}
    for name, count in counts.items():
        for i in range(count):
            value = {"ant": 0, "cat": 100, "dog": 200}[name]
            _write(tmp_path / name / f"{i}.png", np.full((4, 4), value, dtype=np.uint8))
    images, labels, names = load_image_folder(tmp_path)
    assert names == ["ant", "cat", "dog"]
    assert images.shape == (6, 4, 4, 1) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [1, 2, 3]
    for image, label in zip(images, labels, strict=True):  # each label names the folder the image came from
        assert image[0, 0, 0] == [0, 100, 200][label]


def test_folder_with_one_rgb_image_loads_as_rgb(tmp_path):
    _write(tmp_path / "a.png", np.zeros((4, 4), dtype=np.uint8))
    _write(tmp_path / "b.png", np.full((4, 4, 3), 50, dtype=np.uint8))
    images, _, _ = load_image_folder(tmp_path)
    assert images.shape == (2, 4, 4, 3)
    images, _, _ = load_image_folder(tmp_path, channels=1)
    assert images.shape == (2, 4, 4, 1)


def test_empty_folder_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"holds no images \(\.png.*put your images there"):
        load_image_folder(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "missing")


def test_mixed_sizes_error_suggests_image_size(tmp_path):
    _write(tmp_path / "a.png", np.zeros((4, 4), dtype=np.uint8))
    _write(tmp_path / "b.png", np.zeros((6, 5), dtype=np.uint8))
    with pytest.raises(DataError, match=r"different sizes.*--image-size"):
        load_image_folder(tmp_path)
    images, _, _ = load_image_folder(tmp_path, size=(4, 4))
    assert images.shape == (2, 4, 4, 1)


def test_corrupt_file_in_folder_is_named(tmp_path):
    _write(tmp_path / "a.png", np.zeros((4, 4), dtype=np.uint8))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 nonsense")
    with pytest.raises(DataError, match=r"bad\.jpg"):
        load_image_folder(tmp_path)


# --- as_uint8_images ---------------------------------------------------------------------------
def test_uint8_nhw_gets_a_channel():
    array = _rng().integers(0, 256, (2, 5, 4), dtype=np.uint8)
    out = as_uint8_images(array, source="x")
    assert out.shape == (2, 5, 4, 1) and np.array_equal(out[..., 0], array)


@pytest.mark.parametrize("channels", [1, 3])
def test_uint8_nhwc_kept_and_nchw_transposed(channels):
    nhwc = _rng().integers(0, 256, (2, 5, 4, channels), dtype=np.uint8)
    assert np.array_equal(as_uint8_images(nhwc, source="x"), nhwc)
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    assert np.array_equal(as_uint8_images(nchw, source="x"), nhwc)


def test_float_unit_range_scales_to_255():
    array = np.array([0.0, 0.5, 1.0, 0.2]).reshape(1, 2, 2)
    out = as_uint8_images(array, source="x")
    assert out.dtype == np.uint8 and out.reshape(-1).tolist() == [0, 128, 255, 51]


def test_float_255_range_is_rounded_not_scaled():
    array = np.array([0.0, 12.4, 200.6, 255.0], dtype=np.float32).reshape(1, 1, 2, 2)  # NCHW with one channel
    out = as_uint8_images(array, source="x")
    assert out.shape == (1, 2, 2, 1) and out.reshape(-1).tolist() == [0, 12, 201, 255]


@pytest.mark.parametrize("bad", [-0.5, 256.0])
def test_out_of_range_error_gives_the_range(bad):
    array = np.zeros((1, 2, 2))
    array[0, 0, 0] = bad
    with pytest.raises(DataError, match=r"arr\.npy: pixel values span .*expected \[0, 1\] or \[0, 255\]"):
        as_uint8_images(array, source="arr.npy")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_error(bad):
    array = np.full((1, 2, 2), 0.5)
    array[0, 1, 1] = bad
    with pytest.raises(DataError, match=r"arr\.npy: images contain NaN or infinite values"):
        as_uint8_images(array, source="arr.npy")


def test_bad_shapes_and_dtypes():
    with pytest.raises(DataError, match=r"expected images of shape \(N, H, W\[, C\]\), got \(4, 4\)"):
        as_uint8_images(np.zeros((4, 4)), source="x")
    with pytest.raises(DataError, match="need 1 or 3 channels"):
        as_uint8_images(np.zeros((2, 5, 5, 4)), source="x")
    with pytest.raises(DataError, match="must be numbers"):
        as_uint8_images(np.full((1, 2, 2), "a"), source="x")
    with pytest.raises(DataError, match="holds no images"):
        as_uint8_images(np.zeros((0, 4, 4), dtype=np.uint8), source="x")


# --- resize_images, to_tensor / to_uint8 -------------------------------------------------------
def test_resize_images_shape_and_identity():
    images = _rng().integers(0, 256, (3, 8, 6, 3), dtype=np.uint8)
    assert resize_images(images, (4, 4)).shape == (3, 4, 4, 3)
    assert resize_images(images[..., :1], (16, 12), "resize").shape == (3, 16, 12, 1)
    assert resize_images(images, (8, 6)) is images


@pytest.mark.parametrize("data_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_to_tensor_to_uint8_round_trip_is_exact(data_range):
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    images = np.concatenate([images, images[:, ::-1]])  # (2, 16, 16, 3), every value 0..255
    x = to_tensor(images, data_range)
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    assert float(x.min()) == data_range[0] and float(x.max()) == data_range[1]
    back = to_uint8(x, data_range)
    assert back.dtype == np.uint8 and np.array_equal(back, images)


def test_to_uint8_clips_out_of_range():
    x = torch.tensor([-0.5, 0.0, 1.0, 1.7]).reshape(1, 1, 2, 2)
    assert to_uint8(x).reshape(-1).tolist() == [0, 0, 255, 255]


# --- make_grid / save_image --------------------------------------------------------------------
def test_make_grid_shape_and_placement():
    images = np.zeros((5, 4, 3, 1), dtype=np.uint8)
    grid = make_grid(images)  # 3 columns, 2 rows, 2-pixel white gaps
    assert grid.shape == (2 * (4 + 2) + 2, 3 * (3 + 2) + 2, 1)
    assert grid[2:6, 2:5].max() == 0 and grid[0].min() == 255
    grid = make_grid(np.zeros((5, 4, 3, 3), dtype=np.uint8), ncol=5, pad=0, scale=2)
    assert grid.shape == (8, 30, 3)


def test_save_image_round_trip_and_no_temp_files(tmp_path):
    image = _rng().integers(0, 256, (6, 7, 3), dtype=np.uint8)
    path = save_image(image, tmp_path / "sub" / "out.png")
    assert path == tmp_path / "sub" / "out.png"
    assert np.array_equal(read_image(path), image)
    grey = image[..., :1]
    save_image(grey, path)  # overwrite in place
    assert np.array_equal(read_image(path), grey)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.png"]


def test_save_image_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = save_image(np.zeros((4, 4, 1), dtype=np.uint8), tmp_path / "out.jpg")
    before = path.read_bytes()
    with pytest.raises(OSError):
        save_image(np.zeros((4, 4, 2), dtype=np.uint8), path)  # JPEG cannot hold grey + alpha
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jpg"]


def test_save_image_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match=r"unknown image suffix '\.img2'; use \.png"):
        save_image(np.zeros((4, 4, 1), dtype=np.uint8), tmp_path / "out.img2")
    assert list(tmp_path.iterdir()) == []
