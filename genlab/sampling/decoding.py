"""Decoding for autoregressive models: logits processing, sampling, streaming and beam search.

The network is apart from the decoding (STYLE #3): a sequence model gives two functions,

* ``prefill(ids (B, T), mask (B, T) | None) -> (logits (B, V) at each row's last position, cache)``
* ``step(ids (B,), cache) -> logits (B, V)`` — feeds one token per row and extends the cache,

and everything here — temperature, top-k, top-p, repetition penalty, stop conditions, beams —
is a pure function of logits or a loop over those two calls. The cache belongs to one call of
:func:`generate_stream`, never to the model, so one model serves concurrent requests.

Prompts of different lengths share a batch by left padding: ``mask`` marks the real tokens, and
the model gives each row positions that start at its first real token.

**Context window.** A model with a fixed context (``max_length``, a GPT's ``context_length``)
keeps at most that many tokens: a longer prompt keeps its last ``max_length - 1`` tokens (with a
warning); when generation fills the window, the oldest half is dropped and the cache rebuilt
from the newer half. The uncached path (``use_cache=False``) applies exactly the same policy,
so cached and uncached generation give the same tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from genlab.config import check, validate
from genlab.models.base import Generator, GeneratorGroup

log = logging.getLogger(__name__)


class Cache(Protocol):
    length: int  # positions held, left padding included

    def select(self, index: Tensor) -> None:
        """Keep rows ``index`` (in that order): drops finished rows, reorders beams."""
        ...


class Decoder(Protocol):
    max_length: int | None  # the context window, or None (an RNN carries state without limit)

    def prefill(self, ids: Tensor, mask: Tensor | None) -> tuple[Tensor, Cache]: ...
    def step(self, ids: Tensor, cache: Cache) -> Tensor: ...
    def __call__(self, ids: Tensor, mask: Tensor | None = None) -> Tensor: ...


@dataclass(frozen=True)
class DecodingOptions:
    """How to pick each next token. ``temperature=0`` is greedy decoding (the most likely token)."""

    max_new_tokens: int = 200
    temperature: float = 1.0
    top_k: int | None = None  # keep the k most likely tokens
    top_p: float | None = None  # keep the smallest set of tokens whose probability reaches p (nucleus)
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the text (Keskar et al. 2019)
    num_beams: int = 1  # > 1: beam search (deterministic; no temperature, top_k or top_p)
    length_penalty: float = 1.0  # beam scores are divided by length ** length_penalty

    def __post_init__(self) -> None:
        validate(self)
        check(self.max_new_tokens >= 1, f"max_new_tokens={self.max_new_tokens} must be at least 1.")
        check(self.temperature >= 0, f"temperature={self.temperature} must be ≥ 0 (0 means greedy decoding).")
        check(self.top_k is None or self.top_k >= 1, f"top_k={self.top_k} must be at least 1.")
        check(self.top_p is None or 0 < self.top_p <= 1, f"top_p={self.top_p} must be in (0, 1].")
        check(self.repetition_penalty > 0, f"repetition_penalty={self.repetition_penalty} must be > 0 (1 = off).")
        check(self.num_beams >= 1, f"num_beams={self.num_beams} must be at least 1.")
        if self.num_beams > 1:
            check(
                self.top_k is None and self.top_p is None and self.temperature in (0.0, 1.0),
                "beam search is deterministic: drop temperature, top_k and top_p, or use num_beams=1 to sample.",
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


# --- logits processing: pure functions of (B, V) logits ------------------------------------------
def apply_repetition_penalty(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """CTRL's penalty: the logit of a token already seen is divided by ``penalty`` when positive,
    multiplied when negative (so the token always becomes less likely for penalty > 1)."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Set all but the ``k`` largest logits of each row to -inf."""
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering (Holtzman et al. 2020): keep the most likely tokens until their probability
    reaches ``p``; the most likely token is always kept."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs  # probability mass of the tokens ranked above each one
    remove_sorted = before >= p
    remove_sorted[..., 0] = False
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def process_logits(logits: Tensor, seen: Tensor | None, options: DecodingOptions) -> Tensor:
    """Repetition penalty → temperature → top-k → top-p, as Hugging Face orders them."""
    logits = logits.float()
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, options.repetition_penalty)
    if options.greedy or options.num_beams > 1:
        return logits
    if options.temperature != 1.0:
        logits = logits / options.temperature
    if options.top_k is not None:
        logits = top_k_filter(logits, options.top_k)
    if options.top_p is not None:
        logits = top_p_filter(logits, options.top_p)
    return logits


def pick(logits: Tensor, options: DecodingOptions, generator: Generator | None) -> Tensor:
    """(B, V) processed logits → (B,) next tokens: argmax when greedy, else a draw from the softmax.

    The draw is argmax(p / E) with E ~ Exponential(1) per token, which picks token i with
    probability p_i exactly (the exponential-race form of the Gumbel-max trick): one cheap kernel
    instead of ``torch.multinomial``'s validation and cumulative sums, for the same distribution.
    A :class:`GeneratorGroup` draws each slice of rows from its own generator.
    """
    if options.greedy:
        return logits.argmax(-1)
    probs = logits.softmax(-1)
    if isinstance(generator, GeneratorGroup):
        race = generator.draw(lambda s, g: torch.empty(s, device=g.device).exponential_(generator=g), probs.shape)
        race = race.to(probs.device)
    elif generator is not None and generator.device != probs.device:
        race = torch.empty(probs.shape, device=generator.device).exponential_(generator=generator).to(probs.device)
    else:
        race = torch.empty_like(probs).exponential_(generator=generator)
    race.clamp_(min=torch.finfo(race.dtype).tiny)  # exponential_ can return 0: 0/0 would be NaN, and NaN wins argmax
    return (probs / race).argmax(-1)


# --- batching prompts -------------------------------------------------------------------------
def left_pad(rows: Sequence[Sequence[int]], device: torch.device, pad_id: int = 0) -> tuple[Tensor, Tensor | None]:
    """(B, T) ids right-aligned and the (B, T) mask of real tokens (None when no row is padded)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        if len(r):
            ids[i, width - len(r) :] = torch.as_tensor(list(r), dtype=torch.long)
            mask[i, width - len(r) :] = True
    return ids.to(device), (None if bool(mask.all()) else mask.to(device))


class _Recompute:
    """The uncached 'cache': keeps the ids and runs the whole window through the model each step."""

    def __init__(self, model: Decoder, ids: Tensor, mask: Tensor | None) -> None:
        self.model, self.ids = model, ids
        self.mask = mask if mask is not None else torch.ones_like(ids, dtype=torch.bool)
        self.length = ids.shape[1]

    def logits(self) -> Tensor:
        mask = None if bool(self.mask.all()) else self.mask
        return self.model(self.ids, mask)[:, -1]

    def step(self, tok: Tensor) -> Tensor:
        self.ids = torch.cat([self.ids, tok[:, None]], 1)
        self.mask = torch.cat([self.mask, torch.ones_like(tok[:, None], dtype=torch.bool)], 1)
        self.length += 1
        return self.logits()

    def select(self, index: Tensor) -> None:
        self.ids, self.mask = self.ids[index], self.mask[index]


def _start(model: Decoder, rows: list[list[int]], device: torch.device, use_cache: bool) -> tuple[Tensor, Any]:
    ids, mask = left_pad(rows, device)
    if use_cache:
        return model.prefill(ids, mask)
    state = _Recompute(model, ids, mask)
    return state.logits(), state


def _advance(model: Decoder, state: Any, tok: Tensor, use_cache: bool) -> Tensor:
    return model.step(tok, state) if use_cache else state.step(tok)


def fit_prompt(prompt: Sequence[int], max_length: int | None) -> list[int]:
    """The prompt, cut to the context window's last ``max_length - 1`` tokens (with a warning)."""
    prompt = list(prompt)
    if max_length is not None and len(prompt) > max_length - 1:
        log.warning(
            "the prompt has %d tokens, more than the model's context of %d; keeping its last %d",
            len(prompt), max_length, max_length - 1,
        )  # fmt: skip
        prompt = prompt[-(max_length - 1) :]
    return prompt


def generate_stream(
    model: Decoder,
    prompts: Sequence[Sequence[int]],
    options: DecodingOptions,
    *,
    generator: Generator | None = None,
    eos_id: int | None = None,
    should_stop: Callable[[int, list[int]], bool] | None = None,
    use_cache: bool = True,
    device: torch.device | None = None,
) -> Iterator[tuple[int, int]]:
    """Sample or greedily decode continuations of every prompt, yielding ``(row, token)`` as each
    token is chosen (a row's tokens arrive in order). A row ends at ``eos_id`` (not yielded), when
    ``should_stop(row, new_tokens)`` says so, or after ``options.max_new_tokens``.

    With a :class:`GeneratorGroup` (consecutive rows per generator, as the service batches
    requests), each generator draws for its own rows that are still going, exactly as it would for
    those rows decoded alone.
    """
    if options.num_beams > 1:
        raise ValueError("generate_stream samples; use beam_search for num_beams > 1")
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (the tokenizer's start_ids)")
    device = device or next(model.parameters()).device  # type: ignore[attr-defined]
    window = model.max_length
    history = [fit_prompt(p, window) for p in prompts]
    new: list[list[int]] = [[] for _ in prompts]
    vocab = None
    with torch.inference_mode():
        logits, state = _start(model, history, device, use_cache)
        vocab = logits.shape[-1]
        seen = None
        if options.repetition_penalty != 1.0:
            seen = torch.zeros(len(history), vocab, dtype=torch.bool, device=device)
            for i, h in enumerate(history):
                seen[i, torch.as_tensor(h, device=device)] = True
        active = list(range(len(history)))
        owners = _owners(generator, len(history))
        for step in range(options.max_new_tokens):
            tok = pick(process_logits(logits, seen, options), options, generator)
            tokens = tok.tolist()
            keep = []
            for r, (row, t) in enumerate(zip(active, tokens, strict=True)):
                if eos_id is not None and t == eos_id:
                    continue
                history[row].append(t)
                new[row].append(t)
                yield row, t
                if should_stop is None or not should_stop(row, new[row]):
                    keep.append(r)
            if not keep or step == options.max_new_tokens - 1:
                return
            if len(keep) < len(active):
                index = torch.as_tensor(keep, device=device)
                state.select(index)
                tok = tok[index]
                seen = None if seen is None else seen[index]
                active = [active[r] for r in keep]
                if isinstance(generator, GeneratorGroup):
                    generator = _regroup(generator, owners, active)
            if seen is not None:
                seen[torch.arange(len(active), device=device), tok] = True
            if window is not None and state.length + 1 > window:
                # the window is full: keep the newer half of every row and rebuild the cache
                logits, state = _start(model, [history[row][-(window // 2) :] for row in active], device, use_cache)
            else:
                logits = _advance(model, state, tok, use_cache)


def _owners(generator: Generator | None, rows: int) -> list[int] | None:
    """Which part of a generator group each row draws from (None without a group)."""
    if not isinstance(generator, GeneratorGroup):
        return None
    if generator.total != rows:
        raise ValueError(f"a generator group of {generator.total} rows for {rows} rows")
    return [part for part, (_, count) in enumerate(generator.parts) for _ in range(count)]


def _regroup(group: GeneratorGroup, owners: list[int], active: list[int]) -> GeneratorGroup:
    """The group for the rows still going: each generator with its remaining row count."""
    counts = [0] * len(group.parts)
    for row in active:
        counts[owners[row]] += 1
    return GeneratorGroup([(g, c) for (g, _), c in zip(group.parts, counts, strict=True) if c])


def generate(
    model: Decoder, prompts: Sequence[Sequence[int]], options: DecodingOptions, **kwargs: Any
) -> list[list[int]]:
    """The new tokens of every prompt's continuation (see :func:`generate_stream`)."""
    out: list[list[int]] = [[] for _ in prompts]
    for row, token in generate_stream(model, prompts, options, **kwargs):
        out[row].append(token)
    return out


def beam_search(
    model: Decoder,
    prompt: Sequence[int],
    options: DecodingOptions,
    *,
    eos_id: int | None = None,
    num_return: int = 1,
    use_cache: bool = True,
    device: torch.device | None = None,
) -> list[list[int]]:
    """The ``num_return`` best continuations of one prompt by beam search, best first.

    Each step expands every live beam by its 2·num_beams best tokens, sets aside hypotheses that
    end in ``eos_id``, and keeps the num_beams best of the rest. Scores are summed log-probabilities
    divided by ``length ** length_penalty``. Stops when ``max_new_tokens`` is reached or when no
    live beam can still beat the worst of ``num_beams`` finished ones.
    """
    beams = options.num_beams
    if num_return > beams:
        raise ValueError(f"num_return={num_return} is more than num_beams={beams}")
    device = device or next(model.parameters()).device  # type: ignore[attr-defined]
    window = model.max_length
    start = fit_prompt(prompt, window)

    def normalised(score: float, length: int) -> float:
        return score / max(length, 1) ** options.length_penalty

    finished: list[tuple[float, list[int]]] = []
    with torch.inference_mode():
        logits, state = _start(model, [start], device, use_cache)
        state.select(torch.zeros(beams, dtype=torch.long, device=device))
        logits = logits.expand(beams, -1)
        scores = torch.zeros(beams, device=device)
        scores[1:] = float("-inf")  # the beams start identical: expand only the first at step 0
        seqs: list[list[int]] = [[] for _ in range(beams)]
        for step in range(options.max_new_tokens):
            seen = None
            if options.repetition_penalty != 1.0:
                seen = torch.zeros_like(logits, dtype=torch.bool)
                for b, s in enumerate(seqs):
                    seen[b, torch.as_tensor(start + s, device=device)] = True
            logprobs = process_logits(logits, seen, options).log_softmax(-1)  # (beams, V)
            total = (scores[:, None] + logprobs).view(-1)
            top_scores, top_index = torch.topk(total, 2 * beams)
            vocab = logprobs.shape[-1]
            next_beams: list[tuple[float, int, int]] = []  # (score, parent beam, token)
            for score, index in zip(top_scores.tolist(), top_index.tolist(), strict=True):
                parent, token = divmod(index, vocab)
                if score == float("-inf"):
                    break
                if eos_id is not None and token == eos_id:
                    finished.append((normalised(score, len(seqs[parent]) + 1), seqs[parent]))
                    continue
                next_beams.append((score, parent, token))
                if len(next_beams) == beams:
                    break
            finished.sort(key=lambda f: -f[0])
            finished = finished[:beams]
            if not next_beams:
                break
            best_live = max(normalised(s, len(seqs[p]) + 1) for s, p, _ in next_beams)
            if len(finished) >= beams and finished[-1][0] >= best_live and options.length_penalty >= 0:
                break
            while len(next_beams) < beams:  # pad with a copy of the last (its score is worse, it never wins)
                next_beams.append((float("-inf"), next_beams[-1][1], next_beams[-1][2]))
            parents = torch.as_tensor([p for _, p, _ in next_beams], device=device)
            tok = torch.as_tensor([t for _, _, t in next_beams], device=device)
            scores = torch.as_tensor([s for s, _, _ in next_beams], device=device)
            seqs = [seqs[p] + [t] for _, p, t in next_beams]
            if step == options.max_new_tokens - 1:
                break
            state.select(parents)
            if window is not None and state.length + 1 > window:
                logits, state = _start(model, [(start + s)[-(window // 2) :] for s in seqs], device, use_cache)
            else:
                logits = _advance(model, state, tok, use_cache)
        for s, seq in zip(scores.tolist(), seqs, strict=True):
            if s > float("-inf"):
                finished.append((normalised(s, len(seq)), seq))
    finished.sort(key=lambda f: -f[0])
    return [seq for _, seq in finished[:num_return]]
