"""Text metrics against sacrebleu and direct computations; perplexity on a tiny GPT and a uniform stub."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from genlab.data.tokenizers import CharTokenizer
from genlab.errors import ConfigError, DataError
from genlab.metrics.text import bleu, chrf, distinct_n, ngram_overlap, perplexity, self_bleu
from genlab.models.sequence import SequenceModel

HYPOTHESES = ["the cat sat on the mat", "a quick brown fox jumps over the dog", "it is raining today in paris"]
REFERENCES = ["the cat is on the mat", "the quick brown fox jumps over the lazy dog", "today it rains in paris"]
SECOND = ["there is a cat on the mat", "a fast brown fox leaps over the lazy dog", "it rains in paris today"]
SPEECH = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n"
)


# --- BLEU and chrF ------------------------------------------------------------------------------
def test_bleu_matches_sacrebleu_one_and_several_references():
    for streams in ([REFERENCES], [REFERENCES, SECOND]):
        expected = sacrebleu.corpus_bleu(HYPOTHESES, streams)
        got = bleu(HYPOTHESES, streams if len(streams) > 1 else REFERENCES)
        assert got["score"] == pytest.approx(expected.score, abs=1e-12)
        assert got["precisions"] == pytest.approx(expected.precisions, abs=1e-12)
        assert got["bp"] == pytest.approx(expected.bp, abs=1e-12)
        assert got["signature"].startswith(f"nrefs:{len(streams)}|") and "tok:13a" in got["signature"]
    assert bleu(REFERENCES, REFERENCES)["score"] == pytest.approx(100.0)


def test_chrf_matches_sacrebleu_and_chrf_plus_plus():
    for word_order in (0, 2):
        expected = sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES, SECOND], word_order=word_order)
        got = chrf(HYPOTHESES, [REFERENCES, SECOND], word_order=word_order)
        assert got["score"] == pytest.approx(expected.score, abs=1e-12)
        assert f"nw:{word_order}" in got["signature"]
    assert chrf(REFERENCES, REFERENCES, word_order=2)["score"] == pytest.approx(100.0)


def test_reference_errors_are_one_line():
    with pytest.raises(DataError, match=r"got 3 hypotheses but 2 in references; give one reference per hypothesis"):
        bleu(HYPOTHESES, REFERENCES[:2])
    with pytest.raises(DataError, match=r"but 1 in references stream 1"):
        chrf(HYPOTHESES, [REFERENCES, SECOND[:1]])
    with pytest.raises(DataError, match=r"^hypotheses is empty; give at least one text\.$"):
        bleu([], [])
    with pytest.raises(ConfigError, match="not one string"):
        bleu("the cat", ["the cat"])
    with pytest.raises(ConfigError, match="unknown BLEU tokenize='nope'"):
        bleu(HYPOTHESES, REFERENCES, tokenize="nope")


# --- self-BLEU and distinct-n -------------------------------------------------------------------
def test_self_bleu_extremes_and_direct_computation():
    assert self_bleu(["the cat sat on the mat"] * 3) == pytest.approx(100.0)
    assert self_bleu(["a b c d e", "f g h i j", "k l m n o"]) == pytest.approx(0.0, abs=1e-9)
    direct = [
        sacrebleu.sentence_bleu(text, HYPOTHESES[:i] + HYPOTHESES[i + 1 :], use_effective_order=True).score
        for i, text in enumerate(HYPOTHESES)
    ]
    assert self_bleu(HYPOTHESES) == pytest.approx(sum(direct) / 3, abs=1e-12)
    assert 0.0 < self_bleu(HYPOTHESES) < 100.0


def test_self_bleu_subsample_is_seeded_and_scores_the_subset():
    texts = HYPOTHESES + REFERENCES + SECOND
    chosen = sorted(random.Random(3).sample(range(len(texts)), 4))
    assert self_bleu(texts, max_texts=4, seed=3) == pytest.approx(self_bleu([texts[i] for i in chosen]))
    assert self_bleu(texts, max_texts=len(texts)) == pytest.approx(self_bleu(texts))
    with pytest.raises(DataError, match=r"^self-BLEU needs at least 2 texts; got 1\.$"):
        self_bleu(["one text"])
    with pytest.raises(ConfigError, match="max_texts=1 must be ≥ 2"):
        self_bleu(texts, max_texts=1)


def test_distinct_n_by_hand():
    texts = ["a b a b", "a c"]  # words a b a b | a c; n-grams never cross the two texts
    assert distinct_n(texts, 1) == pytest.approx(3 / 6)  # {a, b, c} of 6
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # {ab, ba, ac} of ab ba ab ac
    assert distinct_n(texts, 3) == pytest.approx(2 / 2)  # aba, bab
    assert distinct_n(texts, 5) == 0.0  # no 5-grams at all
    assert distinct_n(["A,B a"], 1, tokenize=lambda t: t.lower().replace(",", " ").split()) == pytest.approx(2 / 3)
    with pytest.raises(DataError, match=r"^texts is empty"):
        distinct_n([], 2)
    with pytest.raises(ConfigError, match=r"^n=0 must be a whole number ≥ 1\.$"):
        distinct_n(texts, 0)


# --- n-gram overlap -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus() -> list[str]:
    rng = np.random.default_rng(0)
    return [f"w{i}" for i in rng.integers(0, 2000, size=50_000)]


def test_ngram_overlap_finds_an_inserted_copy(corpus):
    novel = [f"new{i}" for i in range(20)]
    copy = corpus[1000:1025]
    sample = " ".join(novel[:10] + copy + novel[10:])  # 45 words, 38 8-grams, 18 of them copied
    unseen = " ".join(novel)
    result = ngram_overlap([sample, unseen, "too short"], " ".join(corpus), n=8, copy_words=20)
    first, second, third = result["samples"]
    assert first == {"index": 0, "ngrams": 38, "overlap": pytest.approx(18 / 38), "longest_copy": 25}
    assert second == {"index": 1, "ngrams": 13, "overlap": 0.0, "longest_copy": 0}
    assert third == {"index": 2, "ngrams": 0, "overlap": None, "longest_copy": 0}
    assert result["mean_overlap"] == pytest.approx((18 / 38 + 0.0) / 2)
    assert result["near_copy_share"] == pytest.approx(1 / 3)
    assert result["top_copies"] == [{"index": 0, "length": 25, "text": " ".join(copy), "training_offset": 1000}]
    assert result["training_words"] == len(corpus)


def test_ngram_overlap_does_not_chain_copies_from_two_places(corpus):
    # every 8-gram inside each half occurs, but the 40 words never occur together
    sample = " ".join(corpus[100:120] + corpus[30_000:30_020])
    result = ngram_overlap([sample], " ".join(corpus), n=8, copy_words=30)
    row = result["samples"][0]
    assert row["longest_copy"] == 20
    assert row["overlap"] == pytest.approx(26 / 33)  # 13 + 13 of 33; the 7 straddling the seam are new
    assert result["near_copy_share"] == 0.0


def test_ngram_overlap_errors():
    with pytest.raises(DataError, match=r"^samples is empty"):
        ngram_overlap([], "some training text")
    with pytest.raises(DataError, match=r"^the training text has 3 words, fewer than n=8; give more text"):
        ngram_overlap(["a sample"], "only three words")


# --- perplexity ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt(gpt_run):
    import genlab

    return genlab.load(gpt_run)


def _direct_nll(model, ids: list[int], start: int, end: int, scored: int) -> float:
    """Summed cross-entropy of the last ``scored`` targets when the model reads ids[start:end]."""
    inputs = torch.tensor([ids[start:end]])
    targets = torch.tensor(ids[start + 1 : end + 1])
    with torch.no_grad():
        nll = F.cross_entropy(model(inputs)[0].double(), targets, reduction="none")
    return float(nll[-scored:].sum())


def test_perplexity_of_one_window_is_exp_cross_entropy(gpt):
    text = SPEECH[:30]  # < context (32) tokens: one window
    ids = gpt.tokenizer.encode(text)
    with torch.no_grad():
        expected = F.cross_entropy(gpt(torch.tensor([ids[:-1]]))[0], torch.tensor(ids[1:]))
    result = perplexity(gpt, text)
    assert result["tokens"] == len(ids) - 1 and result["characters"] == len(text)
    assert result["perplexity"] == pytest.approx(math.exp(float(expected)), rel=1e-5)
    assert result["bits_per_token"] == pytest.approx(float(expected) / math.log(2), rel=1e-5)
    assert result["bits_per_char"] == pytest.approx(float(expected) / math.log(2) * (len(ids) - 1) / len(text))


def test_perplexity_windows_match_direct_computation(gpt):
    ids = gpt.tokenizer.encode(SPEECH)
    context, last = gpt.max_length, len(ids) - 1
    # non-overlapping: windows start every `context` tokens and score all their targets
    starts = range(0, last, context)
    chunked = sum(_direct_nll(gpt, ids, s, min(s + context, last), min(s + context, last) - s) for s in starts) / last
    # stride 1: after the first window, each token is scored with the full context before it
    sliding = _direct_nll(gpt, ids, 0, context, context)
    sliding += sum(_direct_nll(gpt, ids, end - context, end, 1) for end in range(context + 1, last + 1))
    full = sliding / last

    default = perplexity(gpt, SPEECH)
    assert default["nll_per_token"] == pytest.approx(chunked, rel=1e-5)
    assert perplexity(gpt, SPEECH, stride=context, batch_size=1) == pytest.approx(default, rel=1e-9)
    assert perplexity(gpt, SPEECH, stride=1, batch_size=7)["nll_per_token"] == pytest.approx(full, rel=1e-5)
    assert default["tokens"] == last and default["stride"] == context


def test_perplexity_restores_mode_and_checks_inputs(gpt):
    gpt.train()
    perplexity(gpt, SPEECH[:10])
    assert gpt.training
    gpt.eval()
    with pytest.raises(DataError, match=r"^perplexity needs a text of at least 2 tokens .*; got 1\.$"):
        perplexity(gpt, "F")
    with pytest.raises(ConfigError, match=r"^stride=33 exceeds the model's context of 32 tokens; give 1\.\.32\.$"):
        perplexity(gpt, SPEECH, stride=33)


class UniformModel(SequenceModel):
    """Equal logits for every token: the perplexity of any text is the vocabulary size."""

    def __init__(self, chars: str, context_length: int) -> None:
        super().__init__(SimpleNamespace(vocab_size=len(chars), context_length=context_length))
        self.tokenizer = CharTokenizer(chars)

    def forward(self, ids, mask=None):
        return torch.zeros(*ids.shape, self.config.vocab_size)


def test_uniform_model_has_perplexity_equal_to_vocab_size():
    model = UniformModel("abcdefghijklmnopqrstuvwxyz ", context_length=8)
    text = "the quick brown fox jumps over the lazy dog"
    for stride in (None, 3):
        result = perplexity(model, text, stride=stride)
        assert result["perplexity"] == pytest.approx(27.0, rel=1e-6)
        assert result["bits_per_token"] == pytest.approx(math.log2(27), rel=1e-6)
        assert result["bits_per_char"] == pytest.approx(math.log2(27) * (len(text) - 1) / len(text), rel=1e-6)
    model.tokenizer = None
    with pytest.raises(ConfigError, match="this model has no tokenizer"):
        perplexity(model, text)
