"""Text and sequence metrics: reference overlap, diversity, memorisation and perplexity.

Every function is pure (same inputs, same numbers) and returns plain JSON-ready values. The
definitions used:

- **BLEU** (Papineni et al. 2002) and **chrF / chrF++** (Popović 2015, 2017): computed by
  ``sacrebleu`` (Post 2018), whose signature string is returned with the score so that numbers can be
  compared across papers.
- **Self-BLEU** (Zhu et al. 2018, Texygen): each text is scored by sentence BLEU with all the *other*
  texts as references; the mean over texts. Higher means the texts resemble each other: less diverse.
- **Distinct-n** (Li et al. 2016): distinct n-grams ÷ n-grams, pooled over all texts.
- **N-gram overlap**: a memorisation audit, the share of a sample's word n-grams found in the
  training text and its longest span copied word for word (verbatim copying as in the
  training-data extraction audits of Carlini et al. 2021).
- **Perplexity**: exp of the mean next-token negative log-likelihood, in non-overlapping windows of
  the model's context or in a sliding window (the Hugging Face "perplexity of fixed-length models"
  guide).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from sacrebleu.metrics import BLEU, CHRF

from genlab.errors import ConfigError, DataError

if TYPE_CHECKING:
    from genlab.models.sequence import SequenceModel

Tokenize = Callable[[str], Sequence[str]]


# --- input checks -------------------------------------------------------------------------------
def _texts(texts: Sequence[str], what: str) -> list[str]:
    """``texts`` as a non-empty list of strings, or a one-line error."""
    if isinstance(texts, str):
        raise ConfigError(f"{what} must be a list of strings, not one string; wrap it in a list: [text].")
    texts = list(texts)
    if not texts:
        raise DataError(f"{what} is empty; give at least one text.")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise ConfigError(f"{what}[{bad}] is a {type(texts[bad]).__name__}, not a string; give texts as strings.")
    return texts


def _reference_streams(references: Sequence[str] | Sequence[Sequence[str]], count: int) -> list[list[str]]:
    """sacrebleu's layout: a list of streams, each one reference per hypothesis."""
    if isinstance(references, str):
        raise ConfigError("references must be a list of strings (or of streams), not one string; wrap it: [text].")
    references = list(references)
    if not references:
        raise DataError("references is empty; give one reference per hypothesis.")
    if all(isinstance(r, str) for r in references):
        streams = [references]
    else:
        streams = [_texts(stream, f"references stream {i}") for i, stream in enumerate(references)]
    for i, stream in enumerate(streams):
        if len(stream) != count:
            which = "references" if len(streams) == 1 else f"references stream {i}"
            raise DataError(
                f"got {count} hypotheses but {len(stream)} in {which}; give one reference per hypothesis "
                f"(several references each: a list of streams, each of {count})."
            )
    return streams


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a whole number ≥ 1.")
    return value


# --- BLEU and chrF ------------------------------------------------------------------------------
def bleu(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    tokenize: str | None = None,
    lowercase: bool = False,
) -> dict[str, Any]:
    """Corpus BLEU (Papineni et al. 2002) by ``sacrebleu.metrics.BLEU``, on its 0–100 scale.

    ``references``: one string per hypothesis, or several reference streams (a list of lists, each
    one reference per hypothesis, as sacrebleu takes them). ``tokenize``: a sacrebleu tokenizer name
    (None: sacrebleu's default, ``13a``). Returns ``score``, the sacrebleu ``signature``, the
    modified n-gram ``precisions`` (1- to 4-grams, %), the brevity penalty ``bp`` and the
    hypothesis and (effective) reference lengths in tokens.
    """
    hypotheses = _texts(hypotheses, "hypotheses")
    streams = _reference_streams(references, len(hypotheses))
    if tokenize is not None and tokenize not in BLEU.TOKENIZERS:
        raise ConfigError(f"unknown BLEU tokenize={tokenize!r}; valid: {', '.join(BLEU.TOKENIZERS)}.")
    metric = BLEU(tokenize=tokenize, lowercase=lowercase)
    result = metric.corpus_score(hypotheses, streams)
    return {
        "score": float(result.score),
        "signature": str(metric.get_signature()),
        "precisions": [float(p) for p in result.precisions],
        "bp": float(result.bp),
        "hyp_len": int(result.sys_len),
        "ref_len": int(result.ref_len),
    }


def chrf(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    word_order: int = 0,
    char_order: int = 6,
    beta: int = 2,
    lowercase: bool = False,
) -> dict[str, Any]:
    """Corpus chrF (Popović 2015) by ``sacrebleu.metrics.CHRF``, on its 0–100 scale.

    The character n-gram F-score (orders 1..``char_order``, recall weighted ``beta`` times precision);
    ``word_order=2`` adds word uni- and bigrams: chrF++ (Popović 2017). ``references`` as for
    :func:`bleu`. Returns ``score`` and the sacrebleu ``signature``.
    """
    hypotheses = _texts(hypotheses, "hypotheses")
    streams = _reference_streams(references, len(hypotheses))
    if isinstance(word_order, bool) or not isinstance(word_order, int) or word_order < 0:
        raise ConfigError(f"word_order={word_order!r} must be a whole number ≥ 0 (2 gives chrF++).")
    metric = CHRF(char_order=_positive(char_order, "char_order"), word_order=word_order, beta=beta, lowercase=lowercase)
    result = metric.corpus_score(hypotheses, streams)
    return {"score": float(result.score), "signature": str(metric.get_signature())}


# --- diversity ----------------------------------------------------------------------------------
def self_bleu(texts: Sequence[str], *, max_order: int = 4, max_texts: int | None = None, seed: int = 0) -> float:
    """Self-BLEU (Zhu et al. 2018, Texygen), 0–100: the mean over texts of each text's sentence BLEU
    with all the other texts as references. Higher = the texts repeat each other (less diverse).

    Sentence scores are sacrebleu's BLEU up to ``max_order``-grams with ``effective_order=True`` (orders
    longer than the text are left out) and its default ``exp`` smoothing and ``13a`` tokenizer; Texygen
    used NLTK's smoothing ``method1``, so values differ slightly from Texygen's. The cost is
    O(n²) in the number of texts: ``max_texts`` scores a random subset of that many texts (drawn with
    ``seed``) among themselves.
    """
    texts = _texts(texts, "texts")
    _positive(max_order, "max_order")
    if max_texts is not None and (_positive(max_texts, "max_texts") < 2):
        raise ConfigError(f"max_texts={max_texts} must be ≥ 2 (self-BLEU compares texts with each other).")
    if len(texts) < 2:
        raise DataError(f"self-BLEU needs at least 2 texts; got {len(texts)}.")
    if max_texts is not None and len(texts) > max_texts:
        chosen = sorted(random.Random(seed).sample(range(len(texts)), max_texts))
        texts = [texts[i] for i in chosen]
    metric = BLEU(max_ngram_order=max_order, effective_order=True)
    scores = [metric.sentence_score(text, texts[:i] + texts[i + 1 :]).score for i, text in enumerate(texts)]
    return float(math.fsum(scores) / len(scores))


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int, *, tokenize: Tokenize = str.split) -> float:
    """Distinct-n (Li et al. 2016): distinct n-grams ÷ n-grams, pooled over all ``texts`` (in 0..1).

    N-grams do not cross text boundaries. The denominator is the number of n-grams, as most
    implementations have it (Li et al. wrote "divided by the total number of generated tokens";
    the two agree for n = 1). When no text has ``n`` words there are no n-grams and the result is 0.0
    (no diversity shown), not an error.
    """
    texts = _texts(texts, "texts")
    _positive(n, "n")
    grams = [gram for text in texts for gram in _ngrams(list(tokenize(text)), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


# --- memorisation -------------------------------------------------------------------------------
_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)  # an odd 64-bit multiplier (2⁶⁴ / golden ratio)


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """(L,) int64 word ids → (L - n + 1,) uint64 polynomial hashes of every n-gram (mod 2⁶⁴)."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    words = ids.astype(np.uint64)  # unseen words (-1) wrap to 2⁶⁴ - 1: never equal to a real id
    hashes = np.zeros(count, dtype=np.uint64)
    for k in range(n):
        hashes = hashes * _HASH_BASE + words[k : k + count]  # numpy arrays wrap silently
    return hashes


def _copied_lengths(ids: np.ndarray, train: np.ndarray, hashes: np.ndarray, positions: np.ndarray, n: int):
    """For each start i of an n-gram of ``ids``: the length of the longest run ``ids[i:i+k]`` that
    occurs verbatim in ``train`` (0 when k < n), and where it occurs.

    Candidates come from the hash index; each is checked word by word, so hash collisions cannot
    report a false copy, and a chain of matched n-grams from different places in the training text
    is not mistaken for one long copy.
    """
    query = _ngram_hashes(ids, n)
    lo, hi = np.searchsorted(hashes, query, "left"), np.searchsorted(hashes, query, "right")
    lengths = np.zeros(len(query), dtype=np.int64)
    where = np.zeros(len(query), dtype=np.int64)
    for i in np.flatnonzero(hi > lo):
        rest = ids[i:]
        for p in positions[lo[i] : hi[i]]:
            span = train[p : p + len(rest)]
            differ = np.flatnonzero(span != rest[: len(span)])
            length = int(differ[0]) if len(differ) else len(span)
            if length >= n and length > lengths[i]:
                lengths[i], where[i] = length, p
    return lengths, where


def ngram_overlap(
    samples: Sequence[str],
    training_text: str,
    *,
    n: int = 8,
    copy_words: int = 20,
    top: int = 5,
    tokenize: Tokenize = str.split,
) -> dict[str, Any]:
    """How much of each sample is copied from the training text, in words (``tokenize``).

    Per sample: ``overlap``, the share of its word n-grams that occur in the training text (None
    when the sample has fewer than ``n`` words), and ``longest_copy``, the length of its longest
    span found verbatim in the training text (0 unless ≥ ``n`` words). Summary: ``mean_overlap``
    over samples that have n-grams (None if none has), ``near_copy_share``, the share of samples
    whose longest copy is ≥ ``copy_words``, and ``top_copies``, the ``top`` longest copies (sample
    index, length, the span's words joined by spaces, its word offset in the training text).

    The training n-grams are hashed into a sorted array (O(W log W) for W training words, about a
    second for Shakespeare's 900k words); each hash hit is then extended word by word against the
    training text, so spans are exact.
    """
    samples = _texts(samples, "samples")
    _positive(n, "n")
    _positive(copy_words, "copy_words")
    _positive(top, "top")
    vocab: dict[str, int] = {}
    train_words = list(tokenize(training_text))
    train = np.fromiter((vocab.setdefault(w, len(vocab)) for w in train_words), np.int64, len(train_words))
    if len(train) < n:
        raise DataError(f"the training text has {len(train)} words, fewer than n={n}; give more text or a smaller n.")
    train_hashes = _ngram_hashes(train, n)
    order = np.argsort(train_hashes, kind="stable")
    sorted_hashes = train_hashes[order]

    rows, copies = [], []
    for index, sample in enumerate(samples):
        words = list(tokenize(sample))
        ids = np.fromiter((vocab.get(w, -1) for w in words), np.int64, len(words))
        lengths, where = _copied_lengths(ids, train, sorted_hashes, order, n)
        overlap = float(np.mean(lengths > 0)) if len(lengths) else None
        longest = int(lengths.max()) if len(lengths) else 0
        rows.append({"index": index, "ngrams": len(lengths), "overlap": overlap, "longest_copy": longest})
        if longest:
            start = int(np.argmax(lengths))
            text = " ".join(words[start : start + longest])
            copies.append({"index": index, "length": longest, "text": text, "training_offset": int(where[start])})

    overlaps = [r["overlap"] for r in rows if r["overlap"] is not None]
    copies.sort(key=lambda c: (-c["length"], c["index"]))
    return {
        "n": n,
        "copy_words": copy_words,
        "training_words": len(train),
        "mean_overlap": float(np.mean(overlaps)) if overlaps else None,
        "near_copy_share": sum(r["longest_copy"] >= copy_words for r in rows) / len(rows),
        "samples": rows,
        "top_copies": copies[:top],
    }


# --- perplexity ---------------------------------------------------------------------------------
def _windows(num_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, scored) per window: the model reads ids[start:end], and of the targets
    ids[start + 1 : end + 1] only the last ``scored`` count, so every token after the first is
    scored exactly once. The first window scores all its targets; each later one moves ``stride``
    tokens on and scores those, each seeing up to ``context`` tokens before it."""
    end = min(context, num_tokens - 1)
    windows = [(0, end, end)]
    while end < num_tokens - 1:
        new_end = min(end + stride, num_tokens - 1)
        windows.append((max(0, new_end - context), new_end, new_end - end))
        end = new_end
    return windows


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def _total_nll(model: torch.nn.Module, tokens: torch.Tensor, windows: list[tuple[int, int, int]],
               batch_size: int) -> float:  # fmt: skip
    """Sum of the scored tokens' negative log-likelihoods, in nats (float64)."""
    total = torch.zeros((), dtype=torch.float64, device=tokens.device)
    for b in range(0, len(windows), batch_size):
        chunk = windows[b : b + batch_size]
        length = chunk[0][1] - chunk[0][0]  # one window, or all of them `context` long
        offsets = torch.arange(length, device=tokens.device)
        starts = torch.tensor([w[0] for w in chunk], device=tokens.device)
        inputs = tokens[starts[:, None] + offsets]  # (B, T)
        targets = tokens[starts[:, None] + offsets + 1]  # (B, T)
        logits = model(inputs)  # (B, T, V)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
        scored = torch.tensor([w[2] for w in chunk], device=tokens.device)
        keep = offsets[None, :] >= length - scored[:, None]  # (B, T): the last `scored` targets
        total += nll.view(len(chunk), length)[keep].double().sum()
    return float(total)


def perplexity(
    model: SequenceModel,
    text: str,
    *,
    stride: int | None = None,
    batch_size: int = 16,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Perplexity of a genlab token model (GPT, LSTM/GRU) on ``text``: exp of the mean negative
    log-likelihood of each token given the ones before it, in nats.

    The text is encoded by ``model.tokenizer``; its first token is not scored (nothing precedes it),
    so ``tokens`` = encoded length - 1. The model reads at most its context (``model.max_length``, or
    ``config.context_length`` for models without a limit, whose windows start from a fresh state).
    ``stride=None`` (= the context) scores the text in non-overlapping windows, each token predicted
    from the earlier tokens of its window only: the standard "non-overlapping chunks" estimate, the
    same as genlab's validation perplexity, which overestimates perplexity because tokens early in a
    window see little context. A smaller ``stride`` slides the window ``stride`` tokens at a time and
    scores only the last ``stride`` tokens of each window after the first, so every token sees at
    least ``context - stride + 1`` tokens when it can (Hugging Face's sliding-window guide); it costs
    about context/stride times more.

    Runs under ``torch.no_grad()`` with the model in eval mode (its train/eval mode is restored
    afterwards), on ``device`` (the model is moved there in place; None: where it is), summing in
    float64. Returns ``nll_per_token`` (nats), ``perplexity``, ``bits_per_token``,
    ``bits_per_char`` (total bits ÷ all characters of ``text``, the first token's included),
    ``tokens``, ``characters``, ``context_length`` and ``stride``.
    """
    if getattr(model, "modality", None) != "tokens":
        raise ConfigError(f"perplexity needs a token model (GPT, LSTM/GRU); got {type(model).__name__}.")
    if model.tokenizer is None:
        raise ConfigError("this model has no tokenizer; load it with genlab.load(RUN_DIR).")
    if not isinstance(text, str):
        raise ConfigError(f"text must be a string; got {type(text).__name__}.")
    context = model.max_length or model.config.context_length
    stride = context if stride is None else _positive(stride, "stride")
    if stride > context:
        raise ConfigError(f"stride={stride} exceeds the model's context of {context} tokens; give 1..{context}.")
    _positive(batch_size, "batch_size")
    ids = model.tokenizer.encode(text)
    if len(ids) < 2:
        raise DataError(f"perplexity needs a text of at least 2 tokens (one to predict from); got {len(ids)}.")

    if device is not None:
        model.to(device)
    tokens = torch.tensor(ids, dtype=torch.long, device=_model_device(model))
    was_training = model.training
    model.eval()
    try:
        total = _total_nll(model, tokens, _windows(len(ids), context, stride), batch_size)
    finally:
        model.train(was_training)
    count = len(ids) - 1
    nll = total / count
    return {
        "nll_per_token": nll,
        "perplexity": math.exp(nll) if nll < 709.0 else math.inf,
        "bits_per_token": nll / math.log(2),
        "bits_per_char": total / math.log(2) / len(text),
        "tokens": count,
        "characters": len(text),
        "context_length": context,
        "stride": stride,
    }
