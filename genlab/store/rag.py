"""Retrieval-augmented generation for text models: named collections of passages kept in the
store, found by keyword (SQLite FTS5 BM25 / PostgreSQL ``ts_rank``), vector (MiniLM cosine) or
hybrid (the two fused by reciprocal rank fusion) retrieval, and put before a prompt within the
model's context.

>>> from genlab.store import Store, rag
>>> store = Store.open()
>>> rag.add_documents(store, "bees", ["notes/bees.md"])
{'added': 12, 'skipped': 0, 'passages': 12}
>>> texts, used = rag.generate_with_rag(store, "runs/gpt", "what do bees make", collection="bees")

**Passages** (:func:`split_passages`). A text is split into paragraphs at blank lines (whitespace
inside a paragraph collapsed to single spaces), and paragraphs are packed, in order, into passages
of at most ``chunk_chars`` characters, joined by blank lines. A longer paragraph is split on its
own at sentence ends (at spaces inside an over-long sentence, anywhere inside an over-long word),
each piece after the first starting with about the last ``overlap`` characters of the one before
(cut at a word boundary), so that a fact cut in two is whole in one piece. No passage is longer
than ``chunk_chars``.

**Conditioning text** (:func:`rag_prompt`): the passages, best first, then the prompt, each
separated from the next by one blank line, so that the model continues the prompt::

    <passage 1 (the best match)>

    <passage 2>

    <the prompt>
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import column, delete, func, literal_column, select, table, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from genlab.errors import ConfigError, DataError, NotFoundError, StoreError
from genlab.store.records import Document, Generation, ModelInfo, Output
from genlab.store.schema import CollectionRow, DocumentRow, EmbeddingRow

if TYPE_CHECKING:
    from genlab.store.store import Store

logger = logging.getLogger(__name__)

MODES = ("keyword", "vector", "hybrid")
MAX_K = 50
TEXT_SUFFIXES = (".txt", ".md")
SEPARATOR = "\n\n"  # between paragraphs of a passage, between passages, before the prompt
LOCAL_USER = "local"  # the user id of generations recorded from this machine (the CLI)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# --- passages ------------------------------------------------------------------------------------
def split_passages(text: str, *, chunk_chars: int = 800, overlap: int = 100) -> list[str]:
    """``text`` as passages of at most ``chunk_chars`` characters (see the module docstring)."""
    _check_chunking(chunk_chars, overlap)
    passages: list[str] = []
    packed: list[str] = []  # the paragraphs of the passage being filled
    size = 0  # its length, separators included
    for paragraph in _paragraphs(text):
        if len(paragraph) > chunk_chars:
            if packed:
                passages.append(SEPARATOR.join(packed))
                packed, size = [], 0
            passages.extend(_split_paragraph(paragraph, chunk_chars, overlap))
            continue
        added = len(paragraph) + (len(SEPARATOR) if packed else 0)
        if size + added > chunk_chars:
            passages.append(SEPARATOR.join(packed))
            packed, size, added = [], 0, len(paragraph)
        packed.append(paragraph)
        size += added
    if packed:
        passages.append(SEPARATOR.join(packed))
    return passages


def _paragraphs(text: str) -> list[str]:
    return [p for p in (" ".join(block.split()) for block in re.split(r"\n\s*\n", text)) if p]


def _split_paragraph(paragraph: str, chunk_chars: int, overlap: int) -> list[str]:
    """An over-long paragraph as pieces of at most ``chunk_chars``, overlapping by ~``overlap``."""
    units: list[str] = []  # sentences, or the words (or slices of words) of an over-long sentence
    for sentence in _SENTENCE_END.split(paragraph):
        if len(sentence) <= chunk_chars:
            units.append(sentence)
            continue
        for word in sentence.split(" "):
            units.extend(word[i : i + chunk_chars] for i in range(0, len(word), chunk_chars))
    pieces: list[str] = []
    current = ""
    for unit in units:
        joined = f"{current} {unit}" if current else unit
        if len(joined) <= chunk_chars:
            current = joined
            continue
        pieces.append(current)
        carry = _tail(current, overlap)
        current = f"{carry} {unit}" if carry and len(carry) + 1 + len(unit) <= chunk_chars else unit
    pieces.append(current)
    return pieces


def _tail(text: str, size: int) -> str:
    """At most the last ``size`` characters of ``text``, starting at a word."""
    if size <= 0:
        return ""
    if len(text) <= size:
        return text
    tail = text[-size:]
    if not text[-size - 1].isspace():  # cut inside a word: start at the next one
        tail = tail.partition(" ")[2]
    return tail.strip()


def _check_chunking(chunk_chars: int, overlap: int) -> None:
    if not isinstance(chunk_chars, int) or chunk_chars < 20:
        raise ConfigError(f"chunk_chars={chunk_chars!r} must be an integer ≥ 20 (characters per passage, e.g. 800).")
    if not isinstance(overlap, int) or not 0 <= overlap <= chunk_chars // 2:
        raise ConfigError(f"overlap={overlap!r} must be an integer from 0 to chunk_chars/2 = {chunk_chars // 2}.")


def _read_sources(sources: Any) -> list[tuple[str, str]]:
    """(source name, text) of every file, folder (its .txt/.md files) or (source, text) pair."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    items: list[tuple[str, str]] = []
    for source in sources:
        if isinstance(source, tuple):
            if len(source) != 2 or not all(isinstance(part, str) for part in source):
                raise DataError(f"a document pair must be (source, text) strings; got {source!r:.80}.")
            items.append(source)
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
            if not files:
                raise DataError(f"{path} holds no .txt or .md files; give text files or a folder of them.")
        elif not path.exists():
            raise DataError(f"{path} does not exist; give .txt or .md files (or a folder of them).")
        elif path.suffix.lower() not in TEXT_SUFFIXES:
            raise DataError(f"{path} is not a .txt or .md file; convert it to plain text first.")
        else:
            files = [path]
        for file in files:
            try:
                items.append((str(file), file.read_text(encoding="utf-8")))
            except UnicodeDecodeError:
                raise DataError(f"{file} is not UTF-8 text; re-save it as UTF-8.") from None
    if not items:
        raise DataError("no documents given: pass .txt/.md files, folders of them, or (source, text) pairs.")
    return items


# --- collections ---------------------------------------------------------------------------------
def add_documents(
    store: Store,
    collection: str,
    sources: Sequence[str | Path] | Sequence[tuple[str, str]],
    *,
    chunk_chars: int = 800,
    overlap: int = 100,
) -> dict[str, int]:
    """Split ``sources`` (text files, folders of them, or (source, text) pairs) into passages and
    add those not yet in ``collection`` (made if new) with their full-text rows and embeddings, in
    one transaction. Returns counts: ``added``, ``skipped`` (already in the collection, or repeated
    in the input) and ``passages`` (all passages of the input). A store opened with ``embed=False``
    keeps no embeddings, so only keyword retrieval finds those passages."""
    _check_collection_name(collection)
    _check_chunking(chunk_chars, overlap)
    passages: dict[str, tuple[str, str]] = {}  # sha256 → (source, text), first occurrence in the input
    total = 0
    for name, body in _read_sources(sources):
        for i, passage in enumerate(split_passages(body, chunk_chars=chunk_chars, overlap=overlap), start=1):
            total += 1
            passages.setdefault(hashlib.sha256(passage.encode()).hexdigest(), (f"{name}#{i}", passage))
    if total == 0:
        raise DataError("the documents hold no text (only whitespace); nothing to add.")
    with store.session() as s:  # read first: passages already kept are not embedded again
        known = _known_hashes(s, collection)
    new = [(sha, source, passage) for sha, (source, passage) in passages.items() if sha not in known]
    embedder = vectors = None
    if new and store._embed:  # embedding is slow: done before the transaction, not inside it
        from genlab.store.embeddings import text_embedder

        embedder = text_embedder()
        vectors = embedder.embed([passage for _, _, passage in new])
    with store.session() as s:
        row = _get_or_create(s, collection)
        known = _known_hashes(s, collection)  # again, inside the transaction
        keep = [i for i, (sha, _, _) in enumerate(new) if sha not in known]
        docs = [DocumentRow(collection_id=row.id, source=new[i][1], text=new[i][2], sha256=new[i][0]) for i in keep]
        s.add_all(docs)
        s.flush()
        if store.dialect == "sqlite":  # PostgreSQL indexes the column itself (a GIN expression index)
            for doc in docs:
                s.execute(text("INSERT INTO documents_fts(rowid, text) VALUES (:id, :text)"),
                          {"id": doc.id, "text": doc.text})  # fmt: skip
        space = None
        if embedder is not None and docs:
            space = _space(row.id, embedder.name)
            s.add_all(EmbeddingRow(space=space, owner_id=doc.id, vector=vectors[i].astype(np.float32).tobytes())
                      for doc, i in zip(docs, keep, strict=True))  # fmt: skip
        ids = np.array([doc.id for doc in docs], dtype=np.int64)
    if space is not None:  # after the commit: the index never holds uncommitted rows
        store.indexes.add(space, ids, vectors[keep])
    logger.info("collection %s: added %d of %d passages", collection, len(docs), total)
    return {"added": len(docs), "skipped": total - len(docs), "passages": total}


def list_collections(store: Store) -> list[dict[str, Any]]:
    """Every collection: ``name``, ``documents`` (its passages) and ``created_at``, by name."""
    with store.session() as s:
        rows = s.execute(
            select(CollectionRow.name, CollectionRow.created_at, func.count(DocumentRow.id))
            .outerjoin(DocumentRow, DocumentRow.collection_id == CollectionRow.id)
            .group_by(CollectionRow.id, CollectionRow.name, CollectionRow.created_at)
            .order_by(CollectionRow.name)
        )
        return [{"name": name, "documents": int(count), "created_at": at} for name, at, count in rows]


def delete_collection(store: Store, name: str) -> int:
    """Remove collection ``name``: its passages, their full-text rows, embeddings and vector
    index. Returns how many passages were removed."""
    with store.session() as s:
        collection_id = _find_collection(s, name)
        count = s.scalar(select(func.count(DocumentRow.id)).where(DocumentRow.collection_id == collection_id))
        spaces = _spaces_of(collection_id)
        found = list(s.scalars(select(EmbeddingRow.space).distinct().where(EmbeddingRow.space.like(spaces))))
        if store.dialect == "sqlite":
            members = "SELECT id FROM documents WHERE collection_id = :c"
            s.execute(text(f"DELETE FROM documents_fts WHERE rowid IN ({members})"), {"c": collection_id})
        s.execute(delete(EmbeddingRow).where(EmbeddingRow.space.like(spaces)))
        s.execute(delete(DocumentRow).where(DocumentRow.collection_id == collection_id))
        s.execute(delete(CollectionRow).where(CollectionRow.id == collection_id))
    for space in found:
        store.drop_index(space)
    return int(count)


def _check_collection_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"collection name {name!r} must be 1–128 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit (e.g. 'bees-notes').")  # fmt: skip


def _find_collection(s: Session, name: str) -> int:
    collection_id = s.scalar(select(CollectionRow.id).where(CollectionRow.name == name))
    if collection_id is None:
        names = sorted(s.scalars(select(CollectionRow.name)))
        raise NotFoundError(f"no collection {name!r}; collections: {', '.join(names) or 'none'}. "
                            f"Add one with `genlab rag add {name} FILES...` (rag.add_documents).")  # fmt: skip
    return collection_id


def _get_or_create(s: Session, name: str) -> CollectionRow:
    row = s.scalars(select(CollectionRow).where(CollectionRow.name == name)).first()
    if row is None:
        row = CollectionRow(name=name)
        s.add(row)
        try:
            s.flush()
        except IntegrityError:
            raise StoreError(f"collection {name!r} was created by another process at the same time; "
                             "add the documents again.") from None  # fmt: skip
    return row


def _known_hashes(s: Session, name: str) -> set[str]:
    query = select(DocumentRow.sha256).join(CollectionRow).where(CollectionRow.name == name)
    return set(s.scalars(query))


def _space(collection_id: int, embedder_name: str) -> str:
    return f"documents/{collection_id}/{embedder_name}"


def _spaces_of(collection_id: int) -> str:
    """A LIKE pattern for the collection's embedding spaces (one per embedder that was used)."""
    return f"documents/{collection_id}/%"


# --- retrieval -----------------------------------------------------------------------------------
def retrieve(store: Store, collection: str, query: str, *, k: int = 3, mode: str = "hybrid") -> list[Document]:
    """The ``k`` passages of ``collection`` that best match ``query``, best first.

    ``mode``: ``keyword`` ranks by BM25 (SQLite FTS5, Porter-stemmed words; PostgreSQL
    ``ts_rank``); ``vector`` by the cosine similarity of MiniLM embeddings; ``hybrid`` fuses the two
    rankings by reciprocal rank fusion (k=60)."""
    if mode not in MODES:
        raise ConfigError(f"retrieval mode {mode!r} is not one of {MODES}; hybrid fuses keyword and vector.")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise ConfigError(f"k={k!r} must be an integer from 1 to {MAX_K} (passages to retrieve).")
    if not isinstance(query, str) or not query.strip():
        raise DataError("give a query (the prompt) to retrieve passages for.")
    depth = max(50, 5 * k)  # how deep each ranking goes before fusion
    with store.session() as s:
        collection_id = _find_collection(s, collection)
        rankings = []
        if mode in ("keyword", "hybrid"):
            rankings.append(_keyword(store, s, collection_id, query, depth))
        if mode in ("vector", "hybrid"):
            rankings.append(_vector(store, collection_id, query, depth))
        if len(rankings) == 1:
            ranked = rankings[0]
        else:
            from genlab.store.vectors import reciprocal_rank_fusion

            ranked = [i for i, _ in reciprocal_rank_fusion(rankings)]
        # only rows still in this collection: another process's cached index may be stale
        query = select(DocumentRow).where(DocumentRow.id.in_(ranked), DocumentRow.collection_id == collection_id)
        rows = {row.id: row for row in s.scalars(query)}
        docs = [Document(i, collection, rows[i].source, rows[i].text) for i in ranked if i in rows]
    return docs[:k]


def _keyword(store: Store, s: Session, collection_id: int, query: str, limit: int) -> list[int]:
    if store.dialect == "sqlite":
        from genlab.store.search import _match_expression

        fts = table("documents_fts", column("rowid"))
        rank = literal_column("bm25(documents_fts)")  # lower is better
        rows = s.execute(  # a join: `rowid IN (subquery)` is far slower against FTS5 (see search.py)
            select(DocumentRow.id)
            .select_from(fts.join(DocumentRow, DocumentRow.id == fts.c.rowid))
            .where(literal_column("documents_fts").op("MATCH")(_match_expression(query)))
            .where(DocumentRow.collection_id == collection_id)
            .order_by(rank)
            .limit(limit)
        )
        return [int(i) for (i,) in rows]
    if store.dialect == "postgresql":
        tsquery = func.websearch_to_tsquery("english", query)
        document = func.to_tsvector("english", DocumentRow.text)  # matches the GIN index's expression
        rank = func.ts_rank(document, tsquery)
        rows = s.execute(
            select(DocumentRow.id)
            .where(document.op("@@")(tsquery), DocumentRow.collection_id == collection_id)
            .order_by(rank.desc(), DocumentRow.id)
            .limit(limit)
        )
        return [int(i) for (i,) in rows]
    raise ConfigError(f"keyword retrieval needs SQLite or PostgreSQL, not {store.dialect}; use mode='vector'.")


def _vector(store: Store, collection_id: int, query: str, limit: int) -> list[int]:
    from genlab.store.embeddings import text_embedder

    embedder = text_embedder()
    index = store._index(_space(collection_id, embedder.name))
    if len(index) == 0:
        return []
    return [i for i, _ in index.search(embedder.embed([query])[0], limit)[0]]


# --- conditioning and generation -----------------------------------------------------------------
def rag_prompt(passages: Sequence[Document], prompt: str | None, *, max_chars: int) -> tuple[str, list[int]]:
    """The conditioning text: ``passages`` (best first) then ``prompt``, separated by blank lines
    (see the module docstring), in at most ``max_chars`` characters. The prompt is always kept whole
    (when it alone is longer than ``max_chars``, it is returned alone); passages are taken in order
    while they fit, the first that does not is cut at a word boundary and the rest are dropped.
    Returns the text and the ids of the passages in it."""
    if not isinstance(max_chars, int) or max_chars < 0:
        raise ConfigError(f"max_chars={max_chars!r} must be a non-negative integer.")
    tail = f"{SEPARATOR}{prompt}" if prompt else ""
    room = max_chars - len(tail)
    parts: list[str] = []
    ids: list[int] = []
    for doc in passages:
        gap = len(SEPARATOR) if parts else 0
        if gap + len(doc.text) <= room:
            parts.append(doc.text)
            ids.append(doc.id)
            room -= gap + len(doc.text)
            continue
        cut = _cut_at_word(doc.text, room - gap)
        if cut:
            parts.append(cut)
            ids.append(doc.id)
        break
    if not parts:
        return prompt or "", []
    return SEPARATOR.join(parts) + tail, ids


def _cut_at_word(text_: str, size: int) -> str:
    """The longest start of ``text_`` of at most ``size`` characters that ends at a word end."""
    if size <= 0:
        return ""
    if len(text_) <= size:
        return text_
    head = text_[:size]
    if not text_[size].isspace():  # the cut falls inside a word: drop that word
        head = head.rsplit(maxsplit=1)[0] if " " in head.strip() else ""
    return head.rstrip()


def generate_with_rag(
    store: Store,
    model_or_run: Any,
    prompt: str,
    *,
    collection: str,
    k: int = 3,
    mode: str = "hybrid",
    **generate_options: Any,
) -> tuple[list[str], list[Document]]:
    """Continue ``prompt`` conditioned on the ``k`` passages of ``collection`` that best match it.

    The passages and the prompt (:func:`rag_prompt`) are fitted to the model's context less
    ``max_new_tokens``, counted in the model's own tokens (an RNN, which has no fixed context, gets
    its training window). ``generate_options`` are :func:`genlab.api.generate`'s (``n``,
    ``max_new_tokens``, ``temperature``, ``seed``…; not ``stream``). Returns the continuations (new
    text only) and the passages actually put in the context, best first."""
    from genlab import api
    from genlab.models.sequence import SequenceModel

    if "stream" in generate_options:
        raise ConfigError("generate_with_rag returns whole continuations; drop stream=.")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError("retrieval-augmented generation needs a prompt to retrieve passages for; give one.")
    model = model_or_run if isinstance(model_or_run, SequenceModel) else api.load(model_or_run)
    if not isinstance(model, SequenceModel) or model.tokenizer is None:
        raise ConfigError(f"{model.family} models do not generate text; retrieval needs a language model run.")
    default_tokens = inspect.signature(api.generate).parameters["max_new_tokens"].default
    passages = retrieve(store, collection, prompt, k=k, mode=mode)
    conditioning, ids = fit_to_context(model, passages, prompt, generate_options.get("max_new_tokens", default_tokens))
    texts = api.generate(model, conditioning, **generate_options)
    return texts, [doc for doc in passages if doc.id in ids]


def fit_to_context(model: Any, passages: Sequence[Document], prompt: str,
                    max_new_tokens: int) -> tuple[str, list[int]]:  # fmt: skip
    """:func:`rag_prompt` within the context left for the prompt, in tokens: a character budget,
    shrunk in proportion to the token count until the encoded text fits."""
    window = model.config.context_length
    budget = window - max_new_tokens if model.max_length is not None else window
    tokenizer = model.tokenizer
    prompt_tokens = len(tokenizer.encode(prompt))
    if budget <= prompt_tokens:
        raise ConfigError(
            f"no room for retrieved passages: the prompt ({prompt_tokens} tokens) and max_new_tokens={max_new_tokens} "
            f"fill the model's {window}-token context; lower max_new_tokens (below {window - prompt_tokens})."
        )
    max_chars = sum(len(doc.text) + len(SEPARATOR) for doc in passages) + len(prompt)
    while True:
        conditioning, ids = rag_prompt(passages, prompt, max_chars=max_chars)
        try:
            used = len(tokenizer.encode(conditioning))
        except DataError as exc:
            raise DataError(f"the retrieved passages do not suit this model: {exc}") from None
        if used <= budget or not ids:
            return conditioning, ids
        max_chars = min(max_chars - 1, len(conditioning) * budget // used)


# --- recording -----------------------------------------------------------------------------------
def registered_model(store: Store, run_dir: str | Path) -> ModelInfo:
    """The store's entry for the run at ``run_dir`` (same directory and weights), registering it
    under the directory's name if there is none yet."""
    from genlab.checkpoint import weights_path
    from genlab.io import file_sha256

    run_dir = Path(run_dir).resolve()
    weights = weights_path(run_dir)
    sha = file_sha256(weights) if weights.exists() else None
    for info in reversed(store.list_models()):
        if info.path == str(run_dir) and info.weights_sha256 == sha:
            return info
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", run_dir.name).strip("-")[:128] or "model"
    return store.register_model(run_dir, name)


def record_text_generations(
    store: Store,
    model_or_run: ModelInfo | str | Path,
    prompt: str | None,
    texts: Sequence[str],
    *,
    parameters: dict[str, Any],
    seed: int,
    passages: Sequence[Document] = (),
    kind: str = "text",
    user_id: str = LOCAL_USER,
) -> list[Generation]:
    """Record the continuations ``texts`` of ``prompt`` by a registered model, or by the run at a
    path (registered first if needed, see :func:`registered_model`), with the ids of the RAG
    ``passages`` it was conditioned on as each generation's ``context``."""
    model = model_or_run if isinstance(model_or_run, ModelInfo) else registered_model(store, model_or_run)
    outputs = [Output(kind=kind, text=t) for t in texts]
    return store.record_generations(outputs, model=model, user_id=user_id, parameters=parameters, seed=seed,
                                    prompt=prompt, context=[doc.id for doc in passages])  # fmt: skip
