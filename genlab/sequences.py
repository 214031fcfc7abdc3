"""The workflow of token models (GPT, LSTM/GRU) behind :mod:`genlab.api`: text or music documents
→ tokenizer → windows of a token stream for training; text prompts → generated text or MIDI.

The tokenizer is part of the run: trained on the data when a run starts (a character vocabulary
from all the text, or a byte-level BPE from the training split), saved as ``tokenizer.json`` and
read back on resume and load, so ids mean the same thing for the life of the run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genlab.data.text import TextData, load_text
from genlab.data.tokenizers import TOKENIZER_FILE, Tokenizer, load_tokenizer, train_tokenizer
from genlab.errors import CheckpointError, ConfigError, DataError
from genlab.io import write_text
from genlab.models.base import GeneratorGroup
from genlab.models.sequence import SequenceModel
from genlab.sampling.decoding import DecodingOptions, beam_search, generate_stream
from genlab.training.items import TokenWindows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedTokens:
    """What training a token model needs, resolved from the recipe and the data."""

    model_config: Any
    tokenizer: Tokenizer
    train: TokenWindows
    val: TokenWindows | None
    record: dict[str, Any]  # the run's "data" entry


def _tokenizer_kind(config: Any, text: TextData, recipe: str) -> str:
    """Music data takes the music tokenizer whatever the recipe says; text cannot take it."""
    if text.kind == "music":
        return "music"
    if config.tokenizer == "music":
        raise DataError(
            f"{recipe} reads music but {text.name!r} is text; give --data chorales or MIDI files, "
            "or train a text recipe such as gpt-shakespeare (or set tokenizer=char|bpe)."
        )
    return config.tokenizer


def prepare(config: Any, spec: str, *, val_fraction: float, split_seed: int, recipe: str,
            run_dir: Path, stored: dict[str, Any] | None) -> PreparedTokens:  # fmt: skip
    """Load ``spec``, split it, make (or on resume, read) the tokenizer and the token streams."""
    text = load_text(spec)
    if stored is not None and stored["data"]["sha256"] != text.content_hash():
        raise CheckpointError(f"the data at {spec!r} changed since this run started; resume needs the same data.")
    train, val = text.split(val_fraction=val_fraction, seed=split_seed)
    kind = _tokenizer_kind(config, text, recipe)
    if stored is not None:
        tokenizer = load_tokenizer(run_dir / TOKENIZER_FILE)
    elif kind == "char":  # every character of the data, so validation text never fails to encode
        tokenizer = train_tokenizer("char", text.documents)
    else:
        tokenizer = train_tokenizer(kind, train.documents, vocab_size=config.bpe_vocab_size)
    config = dataclasses.replace(config, vocab_size=tokenizer.vocab_size, tokenizer=kind)
    length = config.context_length + 1
    train_tokens = torch.from_numpy(tokenizer.encode_documents(train.documents))
    if len(train_tokens) < length:
        raise DataError(
            f"the training text has {len(train_tokens)} tokens, fewer than one window of {length} "
            f"(context_length + 1); give more text or lower context_length "
            f"(e.g. context_length={max(len(train_tokens) // 2, 1)})."
        )
    val_items = None
    record_counts: dict[str, Any] = {"train_tokens": len(train_tokens), "val_tokens": 0}
    if len(val):
        val_tokens = torch.from_numpy(tokenizer.encode_documents(val.documents))
        chars_per_token = val.num_chars / max(len(val_tokens), 1) if text.kind == "text" else None
        val_items = TokenWindows.fit(val_tokens, length, chars_per_token) if len(val_tokens) >= 2 else None
        record_counts.update(val_tokens=len(val_tokens), chars_per_token=chars_per_token)
    record = {**text.describe(), "spec": spec, "val_fraction": val_fraction, "split_seed": split_seed,
              "train_count": len(train), "val_count": len(val), "tokenizer": kind,
              "vocab_size": tokenizer.vocab_size, **record_counts}  # fmt: skip
    return PreparedTokens(config, tokenizer, TokenWindows(train_tokens, length), val_items, record)


# --- generation ---------------------------------------------------------------------------------
def _tokenizer_of(model: SequenceModel) -> Tokenizer:
    if model.tokenizer is None:
        raise ConfigError("this model has no tokenizer; load it with genlab.load(RUN_DIR) or give token ids.")
    return model.tokenizer


def encode_prompt(model: SequenceModel, prompt: str | None) -> list[int]:
    """A text prompt as ids (the tokenizer's start when empty); characters outside a character
    vocabulary are an error naming them."""
    tok = _tokenizer_of(model)
    if not prompt:
        return tok.start_ids()
    ids = tok.encode(prompt)
    if not ids:
        return tok.start_ids()
    return ids


def _stop_at(text: str, stop: Sequence[str]) -> int | None:
    """Where the first stop string begins in ``text``, or None."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


def generate_text(
    model: SequenceModel,
    prompts: Sequence[str | None],
    options: DecodingOptions,
    *,
    n: int = 1,
    stop: Sequence[str] = (),
    seed: int = 0,
    use_cache: bool = True,
    generator: GeneratorGroup | None = None,
) -> list[list[str]]:
    """For each prompt, ``n`` continuations (the new text only, cut before any stop string).
    ``generator`` (one part per group of rows) replaces ``seed``: the service's batched requests."""
    tok = _tokenizer_of(model)
    encoded = [encode_prompt(model, p) for p in prompts]  # decoding fits them to the context
    if options.num_beams > 1:
        if n > options.num_beams:
            raise ConfigError(f"beam search returns at most --beam {options.num_beams} sequences; got --n {n}.")
        beams = [beam_search(model, ids, options, eos_id=tok.eos_id, num_return=n, use_cache=use_cache)
                 for ids in encoded]  # fmt: skip
        return [[_cut(tok.decode(ids), stop) for ids in row] for row in beams]
    rows = [ids for ids in encoded for _ in range(n)]
    new: list[list[int]] = [[] for _ in rows]
    should_stop = None
    if stop:
        should_stop = lambda row, ids: _stop_at(tok.decode(ids), stop) is not None  # noqa: E731
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    for row, token in generate_stream(model, rows, options, generator=generator, eos_id=tok.eos_id,
                                      should_stop=should_stop, use_cache=use_cache):  # fmt: skip
        new[row].append(token)
    texts = [_cut(tok.decode(ids), stop) for ids in new]
    return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]


def _cut(text: str, stop: Sequence[str]) -> str:
    at = _stop_at(text, stop) if stop else None
    return text if at is None else text[:at]


def stream_text(
    model: SequenceModel, prompt: str | None, options: DecodingOptions, *, stop: Sequence[str] = (), seed: int = 0
) -> Iterator[str]:
    """One continuation of ``prompt`` as it is generated: pieces of text, in order. Bytes of a
    character split across BPE tokens are held back until the character is complete; a stop string
    ends the stream before it is printed."""
    if options.num_beams > 1:
        raise ConfigError("streaming shows one sampled sequence; drop --beam or --stream.")
    tok = _tokenizer_of(model)
    ids = encode_prompt(model, prompt)
    new: list[int] = []
    shown = 0
    generator = torch.Generator().manual_seed(seed)
    longest_stop = max((len(s) for s in stop), default=0)
    for _, token in generate_stream(model, [ids], options, generator=generator, eos_id=tok.eos_id):
        new.append(token)
        text = tok.decode(new)
        at = _stop_at(text, stop) if stop else None
        if at is not None:
            if at > shown:
                yield text[shown:at]
            return
        ready = len(text) - max(longest_stop - 1, 0)  # a stop string may still be forming at the end
        if text.endswith("\ufffd"):  # an incomplete UTF-8 character
            ready = min(ready, len(text) - 1)
        if ready > shown:
            yield text[shown:ready]
            shown = ready
    text = tok.decode(new)
    if len(text) > shown:
        yield text[shown:]


def join(prompt: str | None, continuation: str, *, kind: str) -> str:
    """Prompt + continuation as one text; music event words are separated by a space."""
    if not prompt:
        return continuation
    if kind == "music" and continuation:
        return f"{prompt.rstrip()} {continuation.lstrip()}"
    return prompt + continuation


# --- files ---------------------------------------------------------------------------------------
def save_texts(texts: Sequence[str], out: str | Path, *, kind: str, prompts: Sequence[str] | None = None) -> list[Path]:
    """Write generations: ``.txt`` (samples separated by a header line), ``.jsonl`` (one object per
    sample), or for music ``.mid`` (one file, or FILE-0.mid, FILE-1.mid… for several)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in (".mid", ".midi"):
        if kind != "music":
            raise ConfigError(f"{out}: only music models write MIDI; use a .txt or .jsonl file name.")
        from genlab.data.music import events_to_midi

        # strict=False: a model's output may hold a malformed event (a duration with no note); skip it
        if len(texts) == 1:
            return [events_to_midi(texts[0], out, strict=False)]
        return [events_to_midi(t, out.with_name(f"{out.stem}-{i}{out.suffix}"), strict=False)
                for i, t in enumerate(texts)]  # fmt: skip
    if suffix == ".jsonl":
        lines = [json.dumps({"index": i, **({"prompt": prompts[i]} if prompts else {}), "text": t})
                 for i, t in enumerate(texts)]  # fmt: skip
        return [write_text(out, "\n".join(lines) + "\n")]
    if suffix == ".txt":
        if len(texts) == 1:
            return [write_text(out, texts[0] + "\n")]
        parts = [f"=== sample {i} ===\n{t}\n" for i, t in enumerate(texts)]
        return [write_text(out, "\n".join(parts))]
    music = " or .mid" if kind == "music" else ""
    raise ConfigError(f"cannot write generations to {out}: use a .txt or .jsonl file name{music}.")


def write_preview(model: SequenceModel, stem: Path, *, seed: int, kind: str, count: int = 4,
                  max_new_tokens: int = 200) -> None:  # fmt: skip
    """Training previews: a few samples as ``stem.txt`` (and ``stem.mid`` for music)."""
    options = DecodingOptions(max_new_tokens=max_new_tokens, temperature=0.8)
    texts = generate_text(model, [None], options, n=count, seed=seed)[0]
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_texts(texts, stem.with_suffix(".txt"), kind=kind)
    if kind == "music":
        try:
            save_texts(texts[:1], stem.with_suffix(".mid"), kind=kind)
        except DataError as exc:  # an untrained model's events may not make a piece yet
            log.info("no MIDI preview at %s: %s", stem, exc)
