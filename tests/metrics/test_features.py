"""Extractors: image preparation, the shipped domain networks, loading, and the real-feature cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data.datasets import load_images
from genlab.errors import CheckpointError, DataError
from genlab.io import file_sha256
from genlab.metrics import features as ft


def test_prepare_images_resizes_like_pil_bicubic_in_float_and_handles_grey():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    x = ft.prepare_images(images, (299, 299), 3)  # tiny grey images into the Inception size: no crash
    assert x.shape == (2, 3, 299, 299) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    expected = np.asarray(Image.fromarray(images[1, :, :, 0].astype(np.float32), mode="F").resize((299, 299), 3))
    np.testing.assert_allclose(x[1, 0].numpy(), np.clip(expected, 0, 255) / 255.0, rtol=0, atol=1e-6)
    assert torch.equal(x[:, 0], x[:, 2])  # grey replicated to RGB
    same = ft.prepare_images(images, (8, 8), 1)  # no resize: exactly the pixels / 255
    np.testing.assert_array_equal(same.numpy()[:, 0] * 255, images[..., 0].astype(np.float32))


def test_check_images_errors():
    with pytest.raises(DataError, match="must be uint8"):
        ft.check_images(np.zeros((2, 8, 8, 1), np.float32))
    with pytest.raises(DataError, match="1 or 3 channels"):
        ft.check_images(np.zeros((2, 8, 8, 4), np.uint8))
    with pytest.raises(DataError, match="no images"):
        ft.check_images(np.zeros((0, 8, 8, 1), np.uint8))


def test_domain_net_round_trip_and_corrupt_files(tmp_path):
    torch.manual_seed(0)
    net = ft.DomainNet(1, 10).eval()
    card = {"dataset": "toy", "channels": 1, "num_classes": 10, "widths": [32, 64, 128], "height": 8, "width": 8,
            "val_accuracy": 0.5, "seed": 0, "script": "test"}  # fmt: skip
    path = tmp_path / "toy.safetensors"
    ft.save_domain_net(net, path, card)
    extractor = ft.load_domain_net(path)
    assert extractor.name == "domain:toy" and extractor.feature_dim == 128 and extractor.input_size == (8, 8)
    assert extractor.weights_sha256 == file_sha256(path)
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    feats, logits = extractor(images, batch_size=2)
    with torch.no_grad():
        ref_feats, _ = net(ft.prepare_images(images, (8, 8), 1))
    np.testing.assert_allclose(feats, ref_feats.numpy(), rtol=1e-5, atol=1e-6)
    assert logits.shape == (5, 10) and (feats >= 0).all()
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="is not a genlab domain feature network"):
        ft.load_domain_net(tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="no domain feature network at"):
        ft.load_domain_net(tmp_path / "missing.safetensors")


def test_extractor_choice_errors(monkeypatch):
    monkeypatch.delenv("GENLAB_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("GENLAB_DOMAIN_WEIGHTS", raising=False)
    with pytest.raises(DataError, match="no domain feature network ships for 'faces'"):
        ft.load_extractor("domain", dataset="faces")
    with pytest.raises(CheckpointError, match="--inception-weights PATH"):
        ft.load_extractor("inception")
    with pytest.raises(DataError, match="unknown extractor 'clip'"):
        ft.load_extractor("clip")


@pytest.mark.parametrize("dataset", ["digits", "mnist", "fashion-mnist"])
def test_shipped_domain_networks_match_their_cards(dataset):
    """The weights in the package give the validation accuracy their card records (re-measured here)."""
    if dataset not in ft.shipped_domain_datasets():
        pytest.skip(f"no shipped network for {dataset}")
    extractor = ft.load_extractor("domain", dataset=dataset)
    card = extractor.card
    try:
        data = load_images(dataset)
    except DataError as exc:  # Fashion-MNIST comes from a Debian package that may be missing
        pytest.skip(str(exc))
    assert card["dataset_sha256"] == data.content_hash()
    _, val = data.split(val_fraction=0.1, seed=0)
    accuracy = ft.classifier_accuracy(extractor.network, val.images, val.labels)
    # another CPU's float rounding may flip a borderline image or two
    assert accuracy == pytest.approx(card["val_accuracy"], abs=3 / len(val) + 1e-4)
    assert accuracy > 0.9


def test_real_features_are_computed_once_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    torch.manual_seed(0)
    card = {"dataset": "toy", "channels": 1, "num_classes": 10, "widths": [32, 64, 128], "height": 8, "width": 8}
    ft.save_domain_net(ft.DomainNet(1, 10), tmp_path / "net.safetensors", card)
    extractor = ft.load_domain_net(tmp_path / "net.safetensors")
    data = load_images("digits")
    data = data.subset(np.arange(300))
    calls = []
    original = ft.Extractor.__call__
    monkeypatch.setattr(ft.Extractor, "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    first = ft.real_features(extractor, data)
    second = ft.real_features(extractor, data)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.stats.cov, second.stats.cov)
    assert first.stats.n == 300 and first.stats.cov.dtype == np.float64


def test_inception_extractor_from_a_local_file_on_small_grey_images(tmp_path, monkeypatch):
    """The FID network loads from a user's file (weights made here) and scores 8×8 grey images."""
    from genlab.metrics.inception import FIDInceptionV3

    torch.manual_seed(0)
    path = tmp_path / "inception.pth"
    torch.save(FIDInceptionV3().state_dict(), path)
    monkeypatch.setenv("GENLAB_INCEPTION_WEIGHTS", str(path))
    extractor = ft.load_extractor("inception")
    assert extractor.name == "inception-v3-fid" and extractor.weights_sha256 == file_sha256(path)
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    features, logits = extractor(images)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008) and np.isfinite(features).all()
    described = extractor.describe((8, 8))
    assert described["resize"].startswith("PIL bicubic") and described["input_size"] == [299, 299]
