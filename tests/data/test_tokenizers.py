"""genlab.data.tokenizers: characters, byte-level BPE, GPT-2's BPE; saving, loading, documents."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import tiktoken
import tiktoken.load

from genlab.data.tokenizers import (
    TOKENIZER_FILE,
    BPETokenizer,
    CharTokenizer,
    GPT2Tokenizer,
    Tokenizer,
    load_tokenizer,
    train_tokenizer,
)
from genlab.errors import CheckpointError, ConfigError, DataError, UnknownNameError

CORPUS = [
    "To be, or not to be: that is the question:\nWhether 'tis nobler in the mind to suffer\n",
    "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles.\n" * 3,
    "Naïve café owners ate crème brûlée — 3.14 times, 42 ways… 🤖🎭\n\n\tIndented\r\nline   with   spaces  \n",
]
TRICKY = [
    "",
    "a",
    "héllo wörld: naïve café, crème brûlée — “quoted” ‘text’…",
    "emoji 🤖🎭👩‍👩‍👧 and flags 🇬🇧",
    "  leading and trailing  \t\n\n\n   whitespace   runs   \n",
    "\n\n\n",
    "日本語のテキスト and Ελληνικά and русский",
    "it's they're we'll I'd 'S 'LL 123456789 0.5e-3",
    "a literal <|endoftext|> in the text",
]


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def gpt2() -> GPT2Tokenizer:
    return GPT2Tokenizer()


def _round_trip(tok: Tokenizer, tmp_path) -> Tokenizer:
    tok.save(tmp_path)
    assert (tmp_path / TOKENIZER_FILE).is_file()
    loaded = load_tokenizer(tmp_path)
    assert type(loaded) is type(tok) and loaded.vocab_size == tok.vocab_size and loaded.eos_id == tok.eos_id
    return loaded


# --- characters -------------------------------------------------------------------------------------
def test_char_vocabulary_is_the_sorted_characters_plus_newline():
    tok = CharTokenizer.train(["hello", "world"])
    assert tok.chars == "\ndehlorw" and tok.vocab_size == 8 and tok.eos_id is None
    assert tok.encode("hello\n") == [3, 2, 4, 4, 5, 0] and tok.decode([3, 2, 4, 4, 5, 0]) == "hello\n"
    assert tok.start_ids() == [0]


def test_char_round_trips_tricky_text(tmp_path):
    tok = CharTokenizer.train(TRICKY)
    for text in TRICKY:
        ids = tok.encode(text)
        assert tok.decode(ids) == text and tok.decode(np.array(ids)) == text and tok.decode(iter(ids)) == text
    loaded = _round_trip(tok, tmp_path)
    assert all(loaded.encode(text) == tok.encode(text) for text in TRICKY)


def test_char_unknown_characters_are_named():
    tok = CharTokenizer.train(["abc"])
    with pytest.raises(DataError) as info:
        tok.encode("abé€c")
    assert str(info.value) == (
        "the text has characters outside this model's 4-character vocabulary: 'é', '€'; "
        "remove them or train on text that has them."
    )
    with pytest.raises(DataError, match=r"'1', '2', '3', '4', '5' \(and 2 more\)"):
        tok.encode("a1234567")
    with pytest.raises(DataError, match="'🤖'"):  # beyond the highest code point of the vocabulary
        tok.encode("🤖")


def test_char_refuses_bad_ids_and_bad_vocabularies():
    tok = CharTokenizer("ab\n")
    for ids in ([0, 3], [-1]):
        with pytest.raises(DataError, match=r"outside the vocabulary \(0\.\.2\)"):
            tok.decode(ids)
    with pytest.raises(DataError, match="repeated characters"):
        CharTokenizer("aba")
    with pytest.raises(DataError, match="at least one character"):
        CharTokenizer("")


def test_char_documents_are_joined_by_the_separator():
    tok = CharTokenizer.train(["ab", "c"])
    stream = tok.encode_documents(["ab", "c", "a"])
    assert stream.dtype == np.int64
    assert stream.tolist() == tok.encode("ab\n\nc\n\na")
    assert stream.tolist() == Tokenizer.encode_documents(tok, ["ab", "c", "a"]).tolist()
    assert tok.encode_documents([]).tolist() == []


# --- byte-level BPE ---------------------------------------------------------------------------------
def test_bpe_round_trips_any_text(bpe, tmp_path):
    assert bpe.vocab_size == 300 and bpe.eos_id == bpe.tokenizer.token_to_id("<|endoftext|>")
    for text in [*TRICKY, "\x00\x01 unseen bytes: ψ ∑ 🦀"]:
        assert bpe.decode(bpe.encode(text)) == text
    loaded = _round_trip(bpe, tmp_path)
    assert all(loaded.encode(text) == bpe.encode(text) for text in TRICKY)
    assert len(bpe.encode(CORPUS[1])) < len(CORPUS[1].encode()) / 2  # the merges compress what they saw


def test_bpe_training_is_deterministic(bpe):
    again = BPETokenizer.train(CORPUS, vocab_size=300)
    assert again.to_dict() == bpe.to_dict()
    assert BPETokenizer.train(reversed(CORPUS), vocab_size=300).encode(CORPUS[1]) == bpe.encode(CORPUS[1])


def test_bpe_literal_end_of_text_is_text(bpe):
    ids = bpe.encode("<|endoftext|>")
    assert bpe.eos_id not in ids and bpe.decode(ids) == "<|endoftext|>"
    assert bpe.decode([bpe.eos_id]) == "<|endoftext|>"
    assert bpe.start_ids() == [bpe.eos_id]


def test_bpe_documents_each_end_with_eos(bpe):
    docs = ["one document", "", "two\n\nlines"]
    stream = bpe.encode_documents(docs)
    expected = [*bpe.encode(docs[0]), bpe.eos_id, bpe.eos_id, *bpe.encode(docs[2]), bpe.eos_id]
    assert stream.dtype == np.int64 and stream.tolist() == expected
    assert stream.tolist() == Tokenizer.encode_documents(bpe, docs).tolist()


@pytest.mark.parametrize("vocab_size", [257, 100_001])
def test_bpe_vocab_size_outside_the_range(vocab_size):
    with pytest.raises(ConfigError, match=rf"vocab_size={vocab_size} is outside \[258, 100000\]"):
        BPETokenizer.train(CORPUS, vocab_size=vocab_size)


def test_bpe_refuses_bad_ids(bpe):
    with pytest.raises(DataError, match=r"token id 300 is outside the vocabulary \(0\.\.299\)"):
        bpe.decode([1, 300])


def test_bpe_from_hugging_face_folders(bpe, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    bpe.tokenizer.save(str(full / "tokenizer.json"))
    gpt2_layout = tmp_path / "gpt2-layout"
    gpt2_layout.mkdir()
    bpe.tokenizer.model.save(str(gpt2_layout))  # vocab.json + merges.txt
    for folder in (full, gpt2_layout):
        tok = BPETokenizer.from_hf_dir(folder)
        assert all(tok.encode(text) == bpe.encode(text) for text in TRICKY[:-1])
    assert BPETokenizer.from_hf_dir(full).eos_id == bpe.eos_id
    with pytest.raises(CheckpointError, match=r"neither tokenizer.json nor vocab.json \+ merges.txt"):
        BPETokenizer.from_hf_dir(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read the tokenizer in"):
        BPETokenizer.from_hf_dir(tmp_path)


def test_bpe_corrupt_file_is_a_checkpoint_error(tmp_path):
    (tmp_path / TOKENIZER_FILE).write_text(json.dumps({"kind": "bpe", "tokenizer": "{broken"}))
    with pytest.raises(CheckpointError, match="BPE tokenizer file is corrupt"):
        load_tokenizer(tmp_path)


# --- GPT-2 --------------------------------------------------------------------------------------------
def test_gpt2_known_ids(gpt2):
    assert gpt2.vocab_size == 50257 and gpt2.eos_id == 50256
    assert gpt2.encode("hello world") == [31373, 995]
    assert gpt2.encode("!") == [0] and gpt2.encode("\n\n") == [628] and gpt2.encode(" the") == [262]
    assert gpt2.decode([31373, 995, 50256]) == "hello world<|endoftext|>"


def test_gpt2_round_trips_and_keeps_literal_end_of_text_as_text(gpt2, tmp_path):
    for text in TRICKY:
        assert gpt2.decode(gpt2.encode(text)) == text
    assert 50256 not in gpt2.encode("<|endoftext|>")
    loaded = _round_trip(gpt2, tmp_path)
    assert all(loaded.encode(text) == gpt2.encode(text) for text in TRICKY)
    with pytest.raises(DataError, match=r"token id 50257 is outside the vocabulary"):
        gpt2.decode([50257])


def test_gpt2_documents_each_end_with_eos(gpt2):
    assert gpt2.encode_documents(["hello world", "hello"]).tolist() == [31373, 995, 50256, 31373, 50256]


def test_gpt2_pattern_splits_like_the_original_gpt2_regex(gpt2):
    """Our pattern is tiktoken's faster rewrite; the original regex from GPT-2's encoder.py must agree."""
    original = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    reference = tiktoken.Encoding(
        "gpt2-original-regex",
        pat_str=original,
        mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(gpt2.ranks_path)),
        special_tokens={"<|endoftext|>": 50256},
    )
    for text in [*TRICKY, *CORPUS]:
        assert gpt2.encode(text) == reference.encode_ordinary(text)


def test_gpt2_refuses_other_ranks(gpt2, tmp_path):
    (tmp_path / TOKENIZER_FILE).write_text(json.dumps({"kind": "gpt2", "sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match=r"BPE ranks with sha256 0{64}.*openai-whisper"):
        load_tokenizer(tmp_path)


def test_gpt2_without_whisper_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "whisper" else real(name, *a))
    with pytest.raises(DataError) as info:
        GPT2Tokenizer()
    assert str(info.value) == (
        "GPT-2's tokenizer needs its BPE ranks from the openai-whisper package: "
        "pip install --no-deps openai-whisper==20250625."
    )


# --- by kind ------------------------------------------------------------------------------------------
def test_train_tokenizer_by_kind():
    assert isinstance(train_tokenizer("char", CORPUS), CharTokenizer)
    bpe = train_tokenizer("bpe", CORPUS, vocab_size=280)
    assert isinstance(bpe, BPETokenizer) and bpe.vocab_size == 280
    assert isinstance(train_tokenizer("gpt2", []), GPT2Tokenizer)
    with pytest.raises(UnknownNameError, match=r"unknown tokenizer 'bpf'\. Did you mean 'bpe'\?.*bpe, char, gpt2"):
        train_tokenizer("bpf", CORPUS)
