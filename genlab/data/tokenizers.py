"""Tokenizers saved with a run: text ↔ token ids.

Every tokenizer is a :class:`Tokenizer`: ``encode(text) -> list[int]``, ``decode(ids) -> str``,
``vocab_size``, an optional end-of-text id that separates documents, and a JSON form written to
``tokenizer.json`` in the run directory (nothing pickled). Kinds register themselves by name in
:data:`TOKENIZERS`; :func:`load_tokenizer` reads any of them back.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from genlab.errors import CheckpointError, ConfigError, DataError, unknown
from genlab.io import file_sha256, write_json

TOKENIZER_FILE = "tokenizer.json"
#: kind → class; filled by @register_tokenizer
TOKENIZERS: dict[str, type[Tokenizer]] = {}


def register_tokenizer(cls: type[Tokenizer]) -> type[Tokenizer]:
    TOKENIZERS[cls.kind] = cls
    return cls


class Tokenizer:
    """Base class. Subclasses set ``kind`` and implement the four abstract members."""

    kind: ClassVar[str] = ""
    #: text put between documents when the tokenizer has no end-of-text token
    separator: ClassVar[str] = "\n\n"

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def eos_id(self) -> int | None:
        """The end-of-text id that ends each document (and starts generation), if the kind has one."""
        return None

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state, without the ``kind`` key (added by :meth:`save`)."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError

    # --- shared behaviour -------------------------------------------------------------------
    def encode_documents(self, documents: Sequence[str]) -> np.ndarray:
        """One int64 token stream: each document followed by ``eos_id``, or documents joined by
        :attr:`separator` when the kind has no end-of-text token."""
        parts: list[list[int]] = []
        sep = [] if self.eos_id is not None else self.encode(self.separator)
        for i, doc in enumerate(documents):
            if i and sep:
                parts.append(sep)
            parts.append(self.encode(doc))
            if self.eos_id is not None:
                parts.append([self.eos_id])
        return np.fromiter((t for p in parts for t in p), dtype=np.int64)

    def start_ids(self) -> list[int]:
        """What generation starts from when no prompt is given: end-of-text, or a newline."""
        return [self.eos_id] if self.eos_id is not None else self.encode("\n")

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as JSON (atomically); ``path`` is a file or a run directory."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        return write_json(path, {"kind": self.kind, **self.to_dict()})


def _load_all() -> None:
    import genlab.data.music  # noqa: F401  (registers the music tokenizer)


def tokenizer_class(kind: str) -> type[Tokenizer]:
    if kind not in TOKENIZERS:  # music's tokenizer registers itself when genlab.data.music is imported
        _load_all()
    if kind not in TOKENIZERS:
        raise unknown("tokenizer", kind, TOKENIZERS)
    return TOKENIZERS[kind]


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read ``tokenizer.json`` (``path`` is the file or a run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.exists():
        raise CheckpointError(f"{path} is missing; this run has no tokenizer (train it again).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt ({exc}).") from None
    if not isinstance(data, dict) or "kind" not in data:
        raise CheckpointError(f"{path} is not a genlab tokenizer file (no 'kind').")
    kind = data.pop("kind")
    return tokenizer_class(kind).from_dict(data)


def check_ids(ids: Iterable[int], vocab_size: int) -> list[int]:
    """Token ids as a list, refusing any outside [0, vocab_size)."""
    out = [int(i) for i in ids]
    bad = [i for i in out if not 0 <= i < vocab_size]
    if bad:
        raise DataError(f"token id {bad[0]} is outside the vocabulary (0..{vocab_size - 1}).")
    return out


# --- characters ---------------------------------------------------------------------------------
@register_tokenizer
class CharTokenizer(Tokenizer):
    """One id per character: the vocabulary is the sorted set of characters of the training text.

    Encoding looks code points up in a table (numpy): millions of characters take milliseconds.
    """

    kind: ClassVar[str] = "char"

    def __init__(self, chars: str) -> None:
        if not chars:
            raise DataError("a character tokenizer needs at least one character in its vocabulary.")
        if len(set(chars)) != len(chars):
            raise DataError("a character tokenizer's vocabulary has repeated characters; give each once.")
        self.chars = chars
        self._codes = _code_points(chars)
        # code point → id (-1: not in the vocabulary), up to the highest code point: 1 MB for emoji
        self._ids = np.full(int(self._codes.max()) + 1, -1, dtype=np.int64)
        self._ids[self._codes] = np.arange(len(chars))

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        """The characters of ``texts``, sorted, plus "\\n" (part of the separator between documents)."""
        chars: set[str] = {"\n"}
        for text in texts:
            chars.update(text)
        return cls("".join(sorted(chars)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        return self._encode_array(text).tolist()

    def _encode_array(self, text: str) -> np.ndarray:
        codes = _code_points(text)
        ids = np.take(self._ids, codes, mode="clip")  # code points past the table: caught just below
        unknown_chars = (ids < 0) | (codes >= len(self._ids))
        if unknown_chars.any():
            unseen = [chr(c) for c in dict.fromkeys(codes[unknown_chars].tolist())]  # in order of appearance
            more = f" (and {len(unseen) - 5} more)" if len(unseen) > 5 else ""
            listing = ", ".join(repr(c) for c in unseen[:5])
            raise DataError(
                f"the text has characters outside this model's {self.vocab_size}-character vocabulary: "
                f"{listing}{more}; remove them or train on text that has them."
            )
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = np.asarray(ids if isinstance(ids, (np.ndarray, list, tuple)) else list(ids), dtype=np.int64)
        outside = (ids < 0) | (ids >= self.vocab_size)
        if outside.any():
            check_ids(ids[outside][:1], self.vocab_size)  # raises the standard error
        return self._codes[ids].tobytes().decode("utf-32-le", "surrogatepass")

    def encode_documents(self, documents: Sequence[str]) -> np.ndarray:
        # the base class's semantics (documents joined by the separator), in one vectorised pass
        return self._encode_array(self.separator.join(documents))

    def to_dict(self) -> dict[str, Any]:
        return {"chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        chars = data.get("chars")
        if not isinstance(chars, str):
            raise CheckpointError("the character tokenizer file has no 'chars' string; train the run again.")
        return cls(chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def _code_points(text: str) -> np.ndarray:
    """Unicode code points of ``text`` as little-endian uint32 (lone surrogates kept)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


# --- byte-level BPE (Hugging Face tokenizers) -----------------------------------------------------
END_OF_TEXT = "<|endoftext|>"
BPE_MIN_VOCAB = 256 + 1 + 1  # every byte, the end-of-text token and at least one merge
BPE_MAX_VOCAB = 100_000


@register_tokenizer
class BPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2's scheme) trained on the corpus with Hugging Face ``tokenizers``.

    Any text can be encoded (every byte is in the vocabulary). A literal "<|endoftext|>" in the text
    is encoded as ordinary text, never as the end-of-text id.
    """

    kind: ClassVar[str] = "bpe"

    def __init__(self, tokenizer: HFTokenizer) -> None:
        self.tokenizer = tokenizer
        tokenizer.encode_special_tokens = True  # special tokens in the text are text, not control ids
        self._eos_id = tokenizer.token_to_id(END_OF_TEXT)

    @classmethod
    def train(cls, texts: Iterable[str], *, vocab_size: int) -> BPETokenizer:
        """Learn merges from ``texts`` up to ``vocab_size`` ids (deterministic for the same texts)."""
        if not BPE_MIN_VOCAB <= vocab_size <= BPE_MAX_VOCAB:
            raise ConfigError(
                f"vocab_size={vocab_size} is outside [{BPE_MIN_VOCAB}, {BPE_MAX_VOCAB}] for a BPE tokenizer "
                "(256 byte ids and the end-of-text id come first)."
            )
        tokenizer = HFTokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[END_OF_TEXT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(tokenizer)

    @classmethod
    def from_hf_dir(cls, path: str | Path) -> BPETokenizer:
        """A Hugging Face tokenizer from a folder with ``tokenizer.json``, or GPT-2's ``vocab.json`` +
        ``merges.txt``."""
        path = Path(path)
        try:
            if (path / "tokenizer.json").is_file():
                return cls(HFTokenizer.from_file(str(path / "tokenizer.json")))
            if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
                tokenizer = HFTokenizer(models.BPE.from_file(str(path / "vocab.json"), str(path / "merges.txt")))
                tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
                tokenizer.decoder = decoders.ByteLevel()
                return cls(tokenizer)
        except Exception as exc:  # tokenizers raises bare Exceptions for bad files
            raise CheckpointError(f"cannot read the tokenizer in {path}: {exc}.") from None
        raise CheckpointError(
            f"{path} has neither tokenizer.json nor vocab.json + merges.txt; give the folder of a Hugging Face "
            "tokenizer."
        )

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def eos_id(self) -> int | None:
        return self._eos_id

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(check_ids(ids, self.vocab_size), skip_special_tokens=False)

    def encode_documents(self, documents: Sequence[str]) -> np.ndarray:
        # the base class's semantics, with the documents encoded in parallel
        if self.eos_id is None:
            return super().encode_documents(documents)
        encodings = self.tokenizer.encode_batch_fast(list(documents), add_special_tokens=False)
        parts = [np.array([*e.ids, self.eos_id], dtype=np.int64) for e in encodings]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_str()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BPETokenizer:
        try:
            return cls(HFTokenizer.from_str(data["tokenizer"]))
        except Exception as exc:  # KeyError, TypeError, or the bare Exception of a bad JSON string
            raise CheckpointError(f"the BPE tokenizer file is corrupt ({exc!r}); train the run again.") from None

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


# --- GPT-2's exact BPE (tiktoken) -----------------------------------------------------------------
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"  # = tiktoken's r50k_base
GPT2_EOS_ID = 50256
# tiktoken's r50k pattern: GPT-2's r"""'s|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
# rewritten with possessive quantifiers; the same pieces, faster (tiktoken_ext/openai_public.py)
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
_WHISPER_HINT = "pip install --no-deps openai-whisper==20250625."


@register_tokenizer
class GPT2Tokenizer(Tokenizer):
    """GPT-2's tokenizer, exactly (50,257 ids; "<|endoftext|>" = 50256), offline through ``tiktoken``.

    The BPE ranks come from the file openai-whisper ships (``whisper/assets/gpt2.tiktoken``), read
    without importing whisper. A literal "<|endoftext|>" in the text is encoded as ordinary text.
    """

    kind: ClassVar[str] = "gpt2"

    def __init__(self) -> None:
        self.ranks_path = _gpt2_ranks_path()
        self.encoding = _gpt2_encoding(str(self.ranks_path))

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def eos_id(self) -> int | None:
        return GPT2_EOS_ID

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)  # = encode(text, disallowed_special=())

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode(check_ids(ids, self.vocab_size))

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": _file_sha256(str(self.ranks_path))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPT2Tokenizer:
        tokenizer = cls()
        saved, found = data.get("sha256"), _file_sha256(str(tokenizer.ranks_path))
        if saved != found:
            raise CheckpointError(
                f"this run's GPT-2 tokenizer had BPE ranks with sha256 {saved}, but {tokenizer.ranks_path} has "
                f"{found}; reinstall the ranks: {_WHISPER_HINT}"
            )
        return tokenizer

    def __repr__(self) -> str:
        return "GPT2Tokenizer()"


def _gpt2_ranks_path() -> Path:
    spec = importlib.util.find_spec("whisper")
    path = Path(spec.origin).parent / "assets" / "gpt2.tiktoken" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise DataError(f"GPT-2's tokenizer needs its BPE ranks from the openai-whisper package: {_WHISPER_HINT}")
    return path


@functools.cache
def _file_sha256(path: str) -> str:  # cached: the ranks file is checked on every tokenizer load
    return file_sha256(path)


@functools.cache
def _gpt2_encoding(path: str):
    """tiktoken's Encoding for GPT-2, built once per process (reading the ranks takes ~0.1-0.3 s)."""
    import tiktoken
    import tiktoken.load

    if _file_sha256(path) != GPT2_RANKS_SHA256:
        raise DataError(f"{path} is not GPT-2's BPE ranks file (its sha256 differs); {_WHISPER_HINT}")
    return tiktoken.Encoding(
        "gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=tiktoken.load.load_tiktoken_bpe(path),
        special_tokens={END_OF_TEXT: GPT2_EOS_ID},
    )


# --- building one by kind -------------------------------------------------------------------------
def train_tokenizer(kind: str, texts: Sequence[str], *, vocab_size: int = 1024) -> Tokenizer:
    """A tokenizer of ``kind`` for ``texts``: "char" and "bpe" (``vocab_size`` ids) learn from them,
    "gpt2" and "music" have fixed vocabularies and ignore them."""
    if kind == "music":
        from genlab.data.music import MusicTokenizer  # music21 is heavy: only for music

        return MusicTokenizer()
    builders = {
        "char": lambda: CharTokenizer.train(texts),
        "bpe": lambda: BPETokenizer.train(texts, vocab_size=vocab_size),
        "gpt2": GPT2Tokenizer,
    }
    if kind not in builders:
        raise unknown("tokenizer", kind, [*builders, "music"])
    return builders[kind]()
